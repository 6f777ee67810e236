// Where the trusted steps' own outbound requests may go (the referrer push, token realms, redirects).
// Registries are named by tenants, so a registry can point the step anywhere: its upload `Location`,
// its token realm, a redirect. In the cloud nothing internal is reachable through them — loopback (the
// Lambda runtime API listens there), link-local (metadata and container credentials endpoints),
// private and shared address space — nor the service's own bucket; and the whole exchange has a
// deadline. The local stack allows internal addresses: its registries are on 127.0.0.1.
import { BlockList, isIP } from 'node:net';

export interface EgressPolicy {
  /** Loopback, link-local, private and shared addresses allowed (local stack only). */
  allowInternal: boolean;
  /** URLs never requested: the service's own bucket. */
  forbiddenUrl?: (url: URL) => boolean;
  /** Epoch milliseconds after which no request starts, and by which a started one ends. */
  deadline?: number;
}

const INTERNAL = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const) {
  INTERNAL.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 127],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['fd00:ec2::', 32],
] as const) {
  INTERNAL.addSubnet(net, bits, 'ipv6');
}

/** True for an address the cloud's trusted steps never connect to. */
export function internalAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return INTERNAL.check(address, 'ipv4');
  if (family !== 6) return true; // not an address: refuse
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return INTERNAL.check(mapped[1] as string, 'ipv4');
  return INTERNAL.check(address, 'ipv6');
}

/**
 * A URL of the bucket: virtual-hosted (`<bucket>.s3….amazonaws.com`), or path-style on any host
 * (`s3.<region>.amazonaws.com/<bucket>/…`, and the local object store's `127.0.0.1:<port>/<bucket>/…`).
 */
export function bucketUrls(bucket: string): (url: URL) => boolean {
  const b = bucket.toLowerCase();
  return (url: URL) => {
    const h = url.hostname.toLowerCase().replace(/\.$/, '');
    if (h === b || h.startsWith(`${b}.s3.`) || h.startsWith(`${b}.s3-`)) return true;
    let first = url.pathname.split('/')[1] ?? '';
    try {
      first = decodeURIComponent(first);
    } catch {
      return true; // not a path any registry answers with: refuse
    }
    return first.toLowerCase() === b;
  };
}

/** Why a URL may not be requested under `policy`, or undefined when it may (its host; DNS is checked at connect). */
export function egressRefusal(url: URL, policy: EgressPolicy, now = Date.now()): string | undefined {
  if (policy.deadline !== undefined && now >= policy.deadline)
    return 'the time allowed for the exchange is over';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (policy.forbiddenUrl?.(url)) return `${host} is the service's own storage`;
  if (!policy.allowInternal && isIP(host) && internalAddress(host)) return `${host} is an internal address`;
  if (!policy.allowInternal && /^localhost$|\.localhost$/i.test(host))
    return `${host} is an internal address`;
  return undefined;
}
