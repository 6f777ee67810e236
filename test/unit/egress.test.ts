// The trusted steps' outbound requests (functions/commons/domain/egress.ts, used by the referrer push):
// against a hostile registry on this machine that names another place for the upload, a registry on an
// internal address, and one that never answers. Each server records what reached it, so the
// assertions are on what the step actually sent.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { externalLookup, OciRegistry } from '../../functions/commons/adapters/oci-registry.js';
import { bucketUrls, egressRefusal, internalAddress } from '../../functions/commons/domain/egress.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(() => r(undefined)));
  }
});

async function serve(handler: (req: IncomingMessage, res: import('node:http').ServerResponse) => void) {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { seen, host: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const digest = `sha256:${'ab'.repeat(32)}`;

describe('internalAddress (IANA special-purpose registries; AWS metadata and credentials endpoints)', () => {
  it('refuses loopback, private, shared, link-local and the metadata endpoints; allows public addresses', () => {
    const internal = [
      '127.0.0.1',
      '127.8.9.10',
      '10.0.0.1',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '100.64.0.1', // RFC 6598 shared address space
      '169.254.169.254', // EC2 instance metadata
      '169.254.170.2', // ECS / CodeBuild container credentials
      '0.0.0.0',
      '::1',
      'fe80::1',
      'fd12:3456::1',
      'fd00:ec2::254', // EC2 instance metadata over IPv6
      '::ffff:127.0.0.1',
      '::ffff:169.254.169.254',
      'not-an-address',
    ];
    const external = [
      '8.8.8.8',
      '52.95.110.1',
      '172.32.0.1',
      '192.169.0.1',
      '2600:1f18::1',
      '::ffff:8.8.8.8',
    ];
    expect(internal.filter((a) => !internalAddress(a))).toEqual([]);
    expect(external.filter((a) => internalAddress(a))).toEqual([]);
  });

  it('refuses the service bucket, virtual-hosted or path-style, and anything after the deadline', () => {
    const ours = bucketUrls('ib-bucket');
    for (const u of [
      'https://ib-bucket.s3.eu-west-1.amazonaws.com/artifacts/org-b/x',
      'https://ib-bucket.s3.amazonaws.com/x',
      'https://s3.eu-west-1.amazonaws.com/ib-bucket/artifacts/org-b/x',
      'http://127.0.0.1:4569/ib-bucket/artifacts/org-b/x',
    ]) {
      expect(egressRefusal(new URL(u), { allowInternal: true, forbiddenUrl: ours }), u).toMatch(
        /own storage/,
      );
    }
    expect(
      egressRefusal(new URL('https://quay.io/v2/a/b/blobs/uploads/1'), {
        allowInternal: false,
        forbiddenUrl: ours,
      }),
    ).toBeUndefined();
    expect(
      egressRefusal(new URL('https://quay.io/v2/'), { allowInternal: false, deadline: Date.now() - 1 }),
    ).toMatch(/time/);
    expect(egressRefusal(new URL('http://localhost:5000/v2/'), { allowInternal: false })).toMatch(/internal/);
  });

  it('resolves a host name to its external addresses only', async () => {
    const err = await new Promise<NodeJS.ErrnoException | null>((r) =>
      externalLookup('localhost', {}, (e) => r(e)),
    );
    expect(err?.code).toBe('EREFUSED');
  });
});

describe('the referrer push against hostile registries', () => {
  it('an upload Location on another host:port is refused: the other place receives nothing', async () => {
    const victim = await serve((_req, res) => res.writeHead(200).end());
    const hostile = await serve((req, res) => {
      if (req.method === 'HEAD') return res.writeHead(404).end();
      res
        .writeHead(202, {
          location: `http://${victim.host}/imagebuilder-local/artifacts/org-b/run/disk.qcow2`,
        })
        .end();
    });
    const client = new OciRegistry({
      registry: hostile.host,
      scheme: 'http',
      egress: { allowInternal: true, forbiddenUrl: bucketUrls('imagebuilder-local') },
    });
    await expect(
      client.pushBlob('edge/os', { bytes: 'disk bytes' }, 'application/octet-stream'),
    ).rejects.toThrow(/upload location .* is not the registry .*refused/);
    expect(hostile.seen.map((l) => l.split(' ')[0])).toEqual(['HEAD', 'POST']);
    expect(victim.seen).toEqual([]);
  });

  it('in the cloud, a registry on an internal address is never connected to', async () => {
    const internal = await serve((_req, res) => res.writeHead(200).end());
    const client = new OciRegistry({
      registry: internal.host,
      scheme: 'http',
      egress: { allowInternal: false },
    });
    await expect(client.blobExists('edge/os', digest)).rejects.toThrow(/internal address/);
    expect(internal.seen).toEqual([]);
  });

  it('a registry that never answers ends the exchange by its deadline', async () => {
    const silent = await serve(() => undefined);
    const client = new OciRegistry({
      registry: silent.host,
      scheme: 'http',
      egress: { allowInternal: true, deadline: Date.now() + 400 },
    });
    const started = Date.now();
    await expect(client.blobExists('edge/os', digest)).rejects.toThrow(/out of time|timed out/);
    expect(silent.seen).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
