// The local API gateway: turns each HTTP request into the API Gateway HTTP API v2 event (routeKey, path
// parameters, comma-joined query values, JWT authorizer claims flattened as the gateway does) and calls
// the same handlers the cloud runs. Tokens are checked like the gateway's JWT authorizer would, with
// HS256 and LOCAL_JWT_SECRET (signature and exp; iss/aud are not required locally).
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Context } from 'aws-lambda';
import { jwtVerify, SignJWT } from 'jose';
import { handler as imageBuilds } from '../api/image-builds.js';
import { handler as imageExports } from '../api/image-exports.js';
import { handler as repositories } from '../api/repositories.js';
import { handler as service } from '../api/service.js';
import { type ApiEvent, type ApiResult, failureBody, MAX_BODY_BYTES } from '../commons/http/api-handler.js';
import { type ApiFunction, matchRoute, routeKey } from '../commons/http/routes.js';

type Handler = (event: ApiEvent, context: Context) => Promise<ApiResult>;

const HANDLERS: Record<ApiFunction, Handler> = {
  repositories: repositories as Handler,
  'image-builds': imageBuilds as Handler,
  'image-exports': imageExports as Handler,
  service: service as Handler,
};

export async function signLocalToken(
  secret: string,
  claims: { sub: string; org_id: string; roles: string[] },
  expiresIn = '12h',
): Promise<string> {
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));
}

/** The gateway hands array claims to Lambda as "[a b]" strings; do the same so both paths match. */
function flattenClaims(payload: Record<string, unknown>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(payload)) {
    if (Array.isArray(v)) out[k] = `[${v.join(' ')}]`;
    else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[k] = v;
    else out[k] = JSON.stringify(v);
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    // Keep one byte more than the limit, so the handler sees the body is too large, and read no further.
    if (size <= MAX_BODY_BYTES) chunks.push(buf.subarray(0, MAX_BODY_BYTES + 1 - size));
    size += buf.length;
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, result: ApiResult): void {
  res.writeHead(result.statusCode ?? 200, result.headers as Record<string, string>);
  res.end(result.body ?? '');
}

const failure = (path: string, code: number, reason: string, message: string): ApiResult => ({
  statusCode: code,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(failureBody(path, code, reason, message)),
});

export function createLocalServer(opts: { jwtSecret: string }): Server {
  const key = new TextEncoder().encode(opts.jwtSecret);
  return createServer((req, res) => {
    handle(req, key)
      .then((result) => send(res, result))
      .catch((err: Error) => send(res, failure(req.url ?? '/', 500, 'InternalError', err.message)));
  });
}

async function handle(req: IncomingMessage, key: Uint8Array): Promise<ApiResult> {
  const url = new URL(req.url ?? '/', 'http://local');
  const method = (req.method ?? 'GET').toUpperCase();
  const match = matchRoute(method, url.pathname);
  const body = await readBody(req);
  if (!match) return failure(url.pathname, 404, 'NotFound', `no route for ${url.pathname}`);
  if ('methodNotAllowed' in match)
    return failure(url.pathname, 405, 'MethodNotAllowed', `${method} is not allowed on ${url.pathname}`);

  let claims: Record<string, string | number | boolean> | undefined;
  if (!match.route.public) {
    const auth = req.headers.authorization ?? '';
    const token = /^Bearer\s+(\S+)$/i.exec(auth)?.[1];
    if (!token) return failure(url.pathname, 401, 'Unauthorized', 'missing bearer token');
    try {
      const { payload } = await jwtVerify(token, key, { algorithms: ['HS256'] });
      claims = flattenClaims(payload as Record<string, unknown>);
    } catch (err) {
      return failure(url.pathname, 401, 'Unauthorized', `invalid bearer token (${(err as Error).message})`);
    }
  }

  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) query[k] = k in query ? `${query[k]},${v}` : v;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = String(v);
  const now = Date.now();
  const event = {
    version: '2.0',
    routeKey: routeKey(match.route),
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    ...(Object.keys(query).length ? { queryStringParameters: query } : {}),
    ...(Object.keys(match.pathParameters).length ? { pathParameters: match.pathParameters } : {}),
    ...(body.length ? { body: body.toString('utf8'), isBase64Encoded: false } : { isBase64Encoded: false }),
    requestContext: {
      accountId: 'local',
      apiId: 'local',
      domainName: req.headers.host ?? 'localhost',
      domainPrefix: 'local',
      http: {
        method,
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: req.socket.remoteAddress ?? '',
        userAgent: req.headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey: routeKey(match.route),
      stage: '$default',
      time: new Date(now).toISOString(),
      timeEpoch: now,
      ...(claims
        ? { authorizer: { principalId: '', integrationLatency: 0, jwt: { claims, scopes: [] } } }
        : {}),
    },
  } as unknown as ApiEvent;
  return HANDLERS[match.route.fn](event, {} as Context);
}
