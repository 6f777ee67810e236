// The HTTP API's routes, shared by the CDK app (one API Gateway route each) and the local stack (which
// turns a request into the same API Gateway v2 event, routeKey included). Each route names the handler
// file under functions/api/ that serves it.

export type ApiFunction = 'repositories' | 'image-builds' | 'image-exports' | 'service';

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  fn: ApiFunction;
  /** Routes without authentication (health check, version, the OpenAPI document). */
  public?: boolean;
}

const r = (method: Route['method'], path: string, fn: ApiFunction, pub = false): Route => ({
  method,
  path,
  fn,
  ...(pub ? { public: true } : {}),
});

export const ROUTES: readonly Route[] = [
  r('GET', '/healthz', 'service', true),
  r('GET', '/api/v1/version', 'service', true),
  r('GET', '/api/v1/openapi.json', 'service', true),
  r('GET', '/api/v1/capabilities', 'service'),
  r('GET', '/api/v1/quota', 'service'),
  r('GET', '/api/v1/repositories', 'repositories'),
  r('POST', '/api/v1/repositories', 'repositories'),
  r('GET', '/api/v1/repositories/{name}', 'repositories'),
  r('PUT', '/api/v1/repositories/{name}', 'repositories'),
  r('DELETE', '/api/v1/repositories/{name}', 'repositories'),
  r('GET', '/api/v1/imagebuilds', 'image-builds'),
  r('POST', '/api/v1/imagebuilds', 'image-builds'),
  r('GET', '/api/v1/imagebuilds/{name}', 'image-builds'),
  r('DELETE', '/api/v1/imagebuilds/{name}', 'image-builds'),
  r('PATCH', '/api/v1/imagebuilds/{name}', 'image-builds'),
  r('POST', '/api/v1/imagebuilds/{name}/cancel', 'image-builds'),
  r('POST', '/api/v1/imagebuilds/{name}/newversion', 'image-builds'),
  r('GET', '/api/v1/imagebuilds/{name}/log', 'image-builds'),
  r('POST', '/api/v1/containerfile', 'image-builds'),
  r('GET', '/api/v1/imageexports', 'image-exports'),
  r('POST', '/api/v1/imageexports', 'image-exports'),
  r('GET', '/api/v1/imageexports/{name}', 'image-exports'),
  r('DELETE', '/api/v1/imageexports/{name}', 'image-exports'),
  r('POST', '/api/v1/imageexports/{name}/cancel', 'image-exports'),
  r('GET', '/api/v1/imageexports/{name}/log', 'image-exports'),
  r('GET', '/api/v1/imageexports/{name}/download', 'image-exports'),
];

export const routeKey = (route: Pick<Route, 'method' | 'path'>): string => `${route.method} ${route.path}`;

/** Matches a concrete path against the route templates; used by the local stack. */
export function matchRoute(
  method: string,
  path: string,
): { route: Route; pathParameters: Record<string, string> } | { methodNotAllowed: true } | undefined {
  let pathMatched = false;
  for (const route of ROUTES) {
    const params = matchTemplate(route.path, path);
    if (!params) continue;
    pathMatched = true;
    if (route.method === method) return { route, pathParameters: params };
  }
  return pathMatched ? { methodNotAllowed: true } : undefined;
}

function matchTemplate(template: string, path: string): Record<string, string> | undefined {
  const t = template.split('/');
  const p = path.split('/');
  if (t.length !== p.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < t.length; i++) {
    const seg = t[i] as string;
    const val = p[i] as string;
    if (seg.startsWith('{') && seg.endsWith('}')) {
      if (val === '') return undefined;
      params[seg.slice(1, -1)] = decodePathSegment(val);
    } else if (seg !== val) return undefined;
  }
  return params;
}

/**
 * A path segment decoded as API Gateway decodes path parameters; a malformed escape stays as it is, so
 * the name check rejects it with a 400 naming the parameter instead of a 500.
 */
function decodePathSegment(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
