// Durations on the command line: 500ms, 90s, 5m, 1h, 1h30m; a bare number means seconds.
import { UsageError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string): number {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    end = re.lastIndex;
  }
  if (end === 0 || end !== s.length) {
    throw new UsageError(`invalid duration "${text}" (e.g. 90s, 5m, 1h, 1h30m)`);
  }
  return Math.round(total);
}
