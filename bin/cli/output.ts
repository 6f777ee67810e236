// Printing resources: a table (columns per kind), YAML or JSON.
import { stringify } from 'yaml';
import type { Kind } from './kinds.js';
import { type Resource, readyCondition } from './types.js';

export type OutputFormat = 'table' | 'yaml' | 'json' | 'name';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'yaml', 'json', 'name'];

/** kubectl-style age: 45s, 12m, 5h, 3d. */
export function age(timestamp: string | undefined, now = Date.now()): string {
  if (!timestamp) return '-';
  const t = Date.parse(timestamp);
  if (Number.isNaN(t)) return '-';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

const status = (r: Resource) => readyCondition(r)?.reason ?? 'Pending';

function buildImage(r: Resource): string {
  if (typeof r.status?.imageReference === 'string') return r.status.imageReference;
  const d = r.spec?.destination;
  return d ? `${d.repository}/${d.imageName}:${d.imageTag}` : '-';
}

type Column = [header: string, value: (r: Resource, now: number) => string];

const COLUMNS: Record<Kind, Column[]> = {
  Repository: [
    ['NAME', (r) => r.metadata.name],
    ['TYPE', (r) => String(r.spec?.type ?? '-')],
    ['REGISTRY', (r) => String(r.spec?.registry ?? '-')],
    ['ACCESS', (r) => String(r.spec?.accessMode ?? 'Read')],
    ['AGE', (r, now) => age(r.metadata.creationTimestamp, now)],
  ],
  ImageBuild: [
    ['NAME', (r) => r.metadata.name],
    ['STATUS', status],
    ['IMAGE', buildImage],
    ['AGE', (r, now) => age(r.metadata.creationTimestamp, now)],
  ],
  ImageExport: [
    ['NAME', (r) => r.metadata.name],
    ['STATUS', status],
    ['BUILD', (r) => String(r.spec?.source?.imageBuildRef ?? '-')],
    ['FORMAT', (r) => String(r.spec?.format ?? '-')],
    ['AGE', (r, now) => age(r.metadata.creationTimestamp, now)],
  ],
};

export function table(kind: Kind, items: Resource[], now = Date.now()): string {
  const cols = COLUMNS[kind];
  const rows = [cols.map(([h]) => h), ...items.map((r) => cols.map(([, v]) => v(r, now)))];
  const widths = cols.map((_, i) => Math.max(...rows.map((row) => (row[i] as string).length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] as number)))
        .join('   ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** One resource (`single`) or a list of them, in the given format. */
export function render(kind: Kind, format: OutputFormat, items: Resource[], single: boolean): string {
  switch (format) {
    case 'table':
      return items.length === 0 && !single ? '' : table(kind, items);
    case 'name':
      return items.map((r) => `${kind.toLowerCase()}/${r.metadata.name}\n`).join('');
    case 'json':
    case 'yaml': {
      const value = single ? items[0] : asList(kind, items);
      return format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : stringify(value);
    }
  }
}

const LIST_API_VERSION: Record<Kind, string> = {
  Repository: 'flightctl.io/v1beta1',
  ImageBuild: 'flightctl.io/v1alpha1',
  ImageExport: 'flightctl.io/v1alpha1',
};

const asList = (kind: Kind, items: Resource[]) => ({
  apiVersion: LIST_API_VERSION[kind],
  kind: `${kind}List`,
  metadata: {},
  items,
});
