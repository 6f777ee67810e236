// Small helpers for the benchmarks: timing, percentiles, a concurrency pool and a printed table.
export const ms = (ns: bigint): number => Number(ns) / 1e6;

export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] ?? Number.NaN;
}

export async function timeOne(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return ms(process.hrtime.bigint() - t0);
}

/** Runs `total` calls of fn with `concurrency` in flight; returns each call's latency in ms. */
export async function loadTest(total: number, concurrency: number, fn: (i: number) => Promise<unknown>) {
  const samples: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        samples.push(await timeOne(() => fn(i)));
      }
    }),
  );
  return samples;
}

export const fmt = (n: number, digits = 2): string => n.toFixed(digits);

export function printTable(title: string, rows: (string | number)[][]): void {
  console.log(`\n## ${title}`);
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => String(r[c]).length))) ?? [];
  for (const row of rows) console.log(row.map((v, c) => String(v).padEnd(widths[c] ?? 0)).join('  '));
}
