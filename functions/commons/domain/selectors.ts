// Kubernetes-style label and field selectors, parsed once per request and matched in memory against
// each page the store returns (the store never scans: it reads one partition in name order).
import { InvalidError } from './errors.js';
import type { AnyResource, Kind } from './types.js';

type Requirement =
  | { key: string; op: 'eq' | 'neq'; value: string }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'notexists' };

const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function checkKey(key: string, param: string): string {
  if (!LABEL_KEY.test(key)) throw new InvalidError(param, `invalid label key "${key}"`);
  return key;
}

function checkValue(value: string, param: string): string {
  if (!LABEL_VALUE.test(value)) throw new InvalidError(param, `invalid label value "${value}"`);
  return value;
}

export function parseLabelSelector(selector: string | undefined): Requirement[] {
  const param = 'labelSelector';
  if (!selector?.trim()) return [];
  return splitTopLevel(selector).map((raw) => {
    const part = raw.trim();
    if (!part) throw new InvalidError(param, 'empty requirement');
    const set = /^(\S+)\s+(in|notin)\s+\(([^()]*)\)$/.exec(part);
    if (set) {
      const values = (set[3] as string).split(',').map((v) => checkValue(v.trim(), param));
      return { key: checkKey(set[1] as string, param), op: set[2] as 'in' | 'notin', values };
    }
    const eq = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part);
    if (eq) {
      return {
        key: checkKey(eq[1] as string, param),
        op: eq[2] === '!=' ? 'neq' : 'eq',
        value: checkValue(eq[3] as string, param),
      };
    }
    if (part.startsWith('!')) return { key: checkKey(part.slice(1).trim(), param), op: 'notexists' };
    return { key: checkKey(part, param), op: 'exists' };
  });
}

export function matchesLabels(labels: Record<string, string> | undefined, reqs: Requirement[]): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'eq':
        return has && v === r.value;
      case 'neq':
        return !has || v !== r.value;
      case 'in':
        return has && r.values.includes(v as string);
      case 'notin':
        return !has || !r.values.includes(v as string);
      case 'exists':
        return has;
      default:
        return !has; // notexists
    }
  });
}

// ---- field selectors ----------------------------------------------------------------------------

type FieldGetter = (r: AnyResource) => string | undefined;

const readyReason: FieldGetter = (r) =>
  (r.status as { conditions?: { type: string; reason: string }[] } | undefined)?.conditions?.find(
    (c) => c.type === 'Ready',
  )?.reason;

const FIELDS: Record<Kind, Record<string, FieldGetter>> = {
  Repository: {
    'metadata.name': (r) => r.metadata.name,
    'spec.type': (r) => (r.spec as { type: string }).type,
  },
  ImageBuild: {
    'metadata.name': (r) => r.metadata.name,
    'status.conditions.ready.reason': readyReason,
  },
  ImageExport: {
    'metadata.name': (r) => r.metadata.name,
    'metadata.owner': (r) => r.metadata.owner,
    'status.conditions.ready.reason': readyReason,
    'spec.source.imageBuildRef': (r) =>
      (r.spec as { source: { imageBuildRef: string } }).source.imageBuildRef,
    'spec.format': (r) => (r.spec as { format: string }).format,
  },
};

export interface FieldRequirement {
  field: string;
  op: 'eq' | 'neq';
  value: string;
}

export function parseFieldSelector(kind: Kind, selector: string | undefined): FieldRequirement[] {
  if (!selector?.trim()) return [];
  return selector.split(',').map((raw) => {
    const m = /^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(raw);
    if (!m) throw new InvalidError('fieldSelector', `invalid requirement "${raw.trim()}"`);
    const field = m[1] as string;
    if (!FIELDS[kind][field]) {
      throw new InvalidError(
        'fieldSelector',
        `unknown field "${field}" for ${kind} (supported: ${Object.keys(FIELDS[kind]).join(', ')})`,
      );
    }
    return { field, op: m[2] === '!=' ? 'neq' : 'eq', value: m[3] as string };
  });
}

export function matchesFields(kind: Kind, r: AnyResource, reqs: FieldRequirement[]): boolean {
  return reqs.every((q) => {
    const v = FIELDS[kind][q.field]?.(r);
    return q.op === 'eq' ? v === q.value : v !== q.value;
  });
}

export interface Selector {
  labels: Requirement[];
  fields: FieldRequirement[];
  /** Canonical text, bound into continue tokens so a token cannot be reused with another selector. */
  canonical: string;
}

export function parseSelectors(kind: Kind, labelSelector?: string, fieldSelector?: string): Selector {
  const labels = parseLabelSelector(labelSelector);
  const fields = parseFieldSelector(kind, fieldSelector);
  return { labels, fields, canonical: JSON.stringify([labels, fields]) };
}

export const matchesSelector = (kind: Kind, r: AnyResource, s: Selector): boolean =>
  matchesLabels(r.metadata.labels, s.labels) && matchesFields(kind, r, s.fields);
