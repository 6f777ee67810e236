// The one place where HTTP meets the domain: a middy handler that parses the body, resolves the caller
// from the authorizer's claims, dispatches on the API Gateway routeKey, and maps typed errors to
// Flight Control `Status` bodies. Handlers in functions/api/ only list their routes.
import middy from '@middy/core';
import type { APIGatewayProxyEventV2WithJWTAuthorizer, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { getDeps } from '../config.js';
import { type Principal, principalFromClaims } from '../domain/auth.js';
import {
  ApiError,
  InvalidError,
  NotFoundError,
  PayloadTooLargeError,
  QuotaExceededError,
  UnsupportedMediaTypeError,
} from '../domain/errors.js';
import { apiVersionOfPath, statusBody } from '../domain/resources.js';
import { checkPathName } from '../domain/validation.js';
import type { Deps } from '../ports.js';

export const MAX_BODY_BYTES = 1024 * 1024;

export type ApiEvent = APIGatewayProxyEventV2WithJWTAuthorizer;
export type ApiResult = APIGatewayProxyStructuredResultV2;

export interface ApiRequest {
  event: ApiEvent;
  deps: Deps;
  /** Resolved lazily: public routes never need it. */
  principal(): Principal;
  param(name: string): string;
  query: Record<string, string | undefined>;
  body(): unknown;
}

export interface ApiResponse {
  statusCode: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type RouteHandler = (req: ApiRequest) => Promise<ApiResponse>;

export const json = (statusCode: number, body: unknown): ApiResponse => ({ statusCode, body });

function parseBody(event: ApiEvent): unknown {
  const raw = event.body ?? '';
  const bytes = event.isBase64Encoded ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'utf8');
  if (bytes.length > MAX_BODY_BYTES) {
    throw new PayloadTooLargeError(`request body is larger than ${MAX_BODY_BYTES} bytes`);
  }
  const type = (event.headers?.['content-type'] ?? 'application/json').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json' && type !== 'application/merge-patch+json' && !type?.endsWith('+json')) {
    throw new UnsupportedMediaTypeError(`content-type must be application/json, not "${type}"`);
  }
  if (bytes.length === 0) throw new InvalidError('body', 'request body is required');
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InvalidError('body', `malformed JSON (${(err as Error).message})`);
  }
}

function toResult(res: ApiResponse): ApiResult {
  const isText = typeof res.body === 'string';
  return {
    statusCode: res.statusCode,
    headers: {
      'content-type': isText ? 'text/plain; charset=utf-8' : 'application/json',
      ...res.headers,
    },
    body: res.body === undefined ? '' : isText ? (res.body as string) : JSON.stringify(res.body),
  };
}

/** A failure's `Status` in the API version of the group `path` addresses. */
export const failureBody = (path: string | undefined, code: number, reason: string, message: string) =>
  statusBody(apiVersionOfPath(path), 'Failure', code, reason, message);

export function errorResult(err: unknown, deps?: Pick<Deps, 'logger'>, path?: string): ApiResult {
  if (err instanceof ApiError) {
    const headers: Record<string, string> =
      err instanceof QuotaExceededError ? { 'retry-after': String(err.retryAfterSeconds) } : {};
    return toResult({
      statusCode: err.code,
      body: failureBody(path, err.code, err.reason, err.message),
      headers,
    });
  }
  // Only the error itself is logged: bodies and headers may hold secrets.
  deps?.logger.error('unhandled error', { error: (err as Error)?.message, stack: (err as Error)?.stack });
  return toResult({ statusCode: 500, body: failureBody(path, 500, 'InternalError', 'internal error') });
}

export function apiHandler(routes: Record<string, RouteHandler>) {
  return middy<ApiEvent, ApiResult>().handler(async (event) => {
    const deps = getDeps();
    try {
      const route = routes[event.routeKey];
      // The gateway only sends routes it knows; another function's route means a wiring mistake.
      if (!route) throw new NotFoundError('route', event.routeKey ?? event.rawPath);
      let body: unknown;
      let parsed = false;
      let principal: Principal | undefined;
      const req: ApiRequest = {
        event,
        deps,
        principal: () => {
          principal ??= principalFromClaims(event.requestContext?.authorizer?.jwt?.claims);
          return principal;
        },
        param: (name) => {
          const v = event.pathParameters?.[name];
          if (!v) throw new InvalidError(name, 'missing path parameter');
          return name === 'name' ? checkPathName(name, v) : v;
        },
        query: event.queryStringParameters ?? {},
        body: () => {
          if (!parsed) {
            body = parseBody(event);
            parsed = true;
          }
          return body;
        },
      };
      return toResult(await route(req));
    } catch (err) {
      return errorResult(err, deps, event.rawPath);
    }
  });
}

export const isTrue = (v: string | undefined): boolean => v === 'true' || v === '1';

/** How long `follow=true` waits for more log output in one request; the client continues with the cursor. */
export const LOG_FOLLOW_WAIT_MS = 10_000;

export const logResponse = (out: { text: string; cursor: string; complete: boolean }): ApiResponse => ({
  statusCode: 200,
  body: out.text,
  headers: { 'x-log-cursor': out.cursor, 'x-log-complete': String(out.complete) },
});
