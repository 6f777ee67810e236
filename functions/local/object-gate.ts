// The object store as a sandbox sees it: S3's presigned-URL check in front of s3rver, which checks no
// signatures at all. A run holds no credentials, only the URLs its trusted step presigned (its context,
// its disk image, its result); the gate admits a request only when its method, path and query carry a
// valid, unexpired SigV4 query signature of the local stack's credentials, exactly as S3 would, and
// relays it to s3rver. Anything else — another key, a list, a changed method, no signature — is 403.
import { timingSafeEqual } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { AwsV4Signer } from 'aws4fetch';

export interface GateOptions {
  /** s3rver's endpoint, e.g. http://127.0.0.1:4569 */
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  region: string;
  now?: () => number;
}

const ALLOWED = new Set(['GET', 'HEAD', 'PUT']);

/** Why a presigned request is refused, or undefined when S3 would accept its signature. */
export async function presignedRefusal(
  method: string,
  url: URL,
  opts: Pick<GateOptions, 'credentials' | 'region' | 'now'>,
): Promise<string | undefined> {
  if (!ALLOWED.has(method)) return `method ${method} is not allowed`;
  const q = url.searchParams;
  const signature = q.get('X-Amz-Signature');
  const date = q.get('X-Amz-Date') ?? '';
  const expires = Number(q.get('X-Amz-Expires'));
  if (!signature || !/^\d{8}T\d{6}Z$/.test(date) || !Number.isInteger(expires)) return 'not a presigned URL';
  if (q.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return 'unknown signing algorithm';
  if (!q.get('X-Amz-Credential')?.startsWith(`${opts.credentials.accessKeyId}/`)) return 'unknown access key';
  const signedAt = Date.parse(
    `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`,
  );
  if ((opts.now ?? Date.now)() > signedAt + expires * 1000) return 'the presigned URL has expired';
  const unsigned = new URL(url);
  unsigned.searchParams.delete('X-Amz-Signature');
  const expected = await new AwsV4Signer({
    method,
    url: unsigned.toString(),
    ...opts.credentials,
    service: 's3',
    region: opts.region,
    datetime: date,
    signQuery: true,
  }).signature();
  const a = Buffer.from(expected);
  const b = Buffer.from(signature);
  return a.length === b.length && timingSafeEqual(a, b) ? undefined : 'the signature does not match';
}

/** An HTTP server (to listen on a sandbox's Unix socket) that relays presigned requests to s3rver. */
export function objectGate(opts: GateOptions): Server {
  const target = new URL(opts.endpoint);
  return createServer(async (req: IncomingMessage, res) => {
    // The URL as the client signed it: its Host header is the object store's host:port.
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? target.host}`);
    const refusal =
      url.host === target.host ? await presignedRefusal(req.method ?? 'GET', url, opts) : 'unknown host';
    if (refusal) {
      req.resume();
      res.writeHead(403, { 'content-type': 'application/xml' });
      res.end(`<Error><Code>AccessDenied</Code><Message>${refusal}</Message></Error>`);
      return;
    }
    const upstream = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
}
