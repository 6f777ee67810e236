// `wait KIND/NAME --for=REASON --timeout D`: polls the Ready condition until it has that reason.
import { type ApiClient, ApiError } from './client.js';
import { CliError, EXIT, UsageError } from './errors.js';
import { type Kind, resourcePath } from './kinds.js';
import { type Resource, readyCondition } from './types.js';

export const REASONS = [
  'Pending',
  'Building',
  'Pushing',
  'Converting',
  'Completed',
  'Failed',
  'Canceling',
  'Canceled',
] as const;
const TERMINAL = new Set(['Completed', 'Failed', 'Canceled']);

export function parseReason(arg: string): string {
  const wanted = arg.replace(/^condition=/i, '').toLowerCase();
  if (wanted === 'ready') return 'Completed';
  const reason = REASONS.find((r) => r.toLowerCase() === wanted);
  if (!reason) throw new UsageError(`--for must be one of ${REASONS.join(', ')} (got "${arg}")`);
  return reason;
}

export interface WaitOutcome {
  code: number;
  reason: string;
  message?: string;
}

export async function waitFor(
  client: ApiClient,
  kind: Kind,
  name: string,
  target: string,
  opts: { timeoutMs: number; intervalMs: number; onReason?: (reason: string) => void },
): Promise<WaitOutcome> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = '';
  for (;;) {
    let reason = last || 'Pending';
    let message: string | undefined;
    try {
      const r = await client.json<Resource>('GET', resourcePath(kind, name), { timeoutMs: 30_000 });
      const cond = readyCondition(r);
      reason = cond?.reason ?? 'Pending';
      message = cond?.message;
      if (reason !== last) opts.onReason?.(reason);
      last = reason;
      if (reason === target) return { code: EXIT.ok, reason, message };
      if (TERMINAL.has(reason)) return { code: EXIT.error, reason, message };
    } catch (err) {
      // A long wait outlives a network blip or a 5xx; anything the server refuses ends it.
      const transient = err instanceof ApiError ? err.status >= 500 : err instanceof CliError;
      if (!transient) throw err;
    }
    const left = deadline - Date.now();
    if (left <= 0) return { code: EXIT.timeout, reason, message };
    await new Promise((r) => setTimeout(r, Math.min(opts.intervalMs, left)));
  }
}
