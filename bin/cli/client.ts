// A small client of the ImageBuilder HTTP API: bearer token, JSON bodies, and errors carrying the
// server's Status message and the matching exit code.
import { CliError, exitCodeForStatus } from './errors.js';

export class ApiError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    readonly reason?: string,
  ) {
    super(message, exitCodeForStatus(status));
    this.name = 'ApiError';
  }
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  redirect?: 'follow' | 'manual' | 'error';
  /** Milliseconds; default 60 s (a followed log waits up to 10 s on the server). */
  timeoutMs?: number;
}

/** The message of an error response: a Status body's message, else the body or the status line. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let message = '';
  let reason: string | undefined;
  try {
    const body = JSON.parse(text) as { message?: unknown; reason?: unknown };
    if (typeof body.message === 'string') message = body.message;
    if (typeof body.reason === 'string') reason = body.reason;
  } catch {
    message = text.trim().slice(0, 500);
  }
  if (!message) message = `HTTP ${res.status} ${res.statusText}`.trim();
  return new ApiError(message, res.status, reason);
}

export class ApiClient {
  constructor(
    readonly server: string,
    readonly token: string,
  ) {}

  url(path: string, query: RequestOptions['query'] = {}): string {
    const url = new URL(`${this.server}/api/v1${path}`);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    return url.toString();
  }

  /** The raw response (any status); only a network failure throws. */
  async raw(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const url = this.url(path, opts.query);
    try {
      return await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'application/json',
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...opts.headers,
        },
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        redirect: opts.redirect ?? 'follow',
        signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new CliError(`cannot reach ${this.server}: ${detail}`);
    }
  }

  /** The JSON body of a 2xx response; anything else throws an ApiError. */
  async json<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.raw(method, path, opts);
    if (!res.ok) throw await errorFromResponse(res);
    return (await res.json()) as T;
  }
}
