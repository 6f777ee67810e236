// Request validation: the generated openapi.yaml validators first, then the rules a schema cannot say.

import { OPENAPI } from '../generated/openapi.js';
import {
  type ValidationError,
  type Validator,
  validateImageBuild,
  validateImageExport,
  validateRepository,
} from '../generated/validators.js';
import { InvalidError } from './errors.js';
import type { ImageBuild, ImageExport, Kind, Repository } from './types.js';

const VALIDATORS: Record<Kind, Validator> = {
  Repository: validateRepository,
  ImageBuild: validateImageBuild,
  ImageExport: validateImageExport,
};

/** `/spec/source/imageTag` → `spec.source.imageTag`; `/spec/files/2/path` → `spec.files[2].path`. */
export function fieldPath(instancePath: string, child?: string): string {
  const parts = instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) parts.push(child);
  let out = '';
  for (const p of parts) {
    if (/^\d+$/.test(p)) out += `[${p}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out;
}

function describe(e: ValidationError): InvalidError {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return new InvalidError(fieldPath(e.instancePath, String(p.additionalProperty)), 'unknown field');
    case 'required':
      return new InvalidError(
        fieldPath(e.instancePath, String(p.missingProperty)),
        'required field is missing',
      );
    case 'enum':
      return new InvalidError(
        fieldPath(e.instancePath),
        `must be one of ${(p.allowedValues as unknown[]).map(String).join(', ')}`,
      );
    case 'const':
      return new InvalidError(fieldPath(e.instancePath), `must be ${JSON.stringify(p.allowedValue)}`);
    case 'pattern':
      return new InvalidError(fieldPath(e.instancePath), `invalid value (must match ${String(p.pattern)})`);
    case 'propertyNames':
      return new InvalidError(fieldPath(e.instancePath, String(p.propertyName)), 'invalid key');
    default:
      return new InvalidError(fieldPath(e.instancePath) || 'body', e.message ?? 'invalid');
  }
}

/** openapi.yaml's ResourceName (every resource's name, in bodies and in paths). */
const RESOURCE_NAME = (
  OPENAPI.components as { schemas: Record<string, { pattern: string; maxLength: number }> }
).schemas.ResourceName as { pattern: string; maxLength: number };
const RESOURCE_NAME_RE = new RegExp(RESOURCE_NAME.pattern);

/** A name in a request path, checked like a body's metadata.name: 400 naming the parameter, never a 5xx. */
export function checkPathName(param: string, value: string): string {
  if (value.length > RESOURCE_NAME.maxLength || !RESOURCE_NAME_RE.test(value)) {
    throw new InvalidError(
      param,
      `not a resource name (an RFC 1123 DNS subdomain of at most ${RESOURCE_NAME.maxLength} characters)`,
    );
  }
  return value;
}

/** Validates a request body against the kind's schema; throws InvalidError naming the first bad field. */
export function validateBody<T>(kind: Kind, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidError('body', `must be a JSON object (a ${kind})`);
  }
  const b = body as Record<string, unknown>;
  if (b.kind !== undefined && b.kind !== kind) throw new InvalidError('kind', `must be "${kind}"`);
  const validate = VALIDATORS[kind];
  if (!validate(body)) {
    const errors = validate.errors ?? [];
    // propertyNames reports twice (the name's own failure, then the wrapper); the wrapper names the key.
    const best = errors.find((e) => e.keyword === 'propertyNames') ?? errors[0];
    throw best ? describe(best) : new InvalidError('body', 'invalid');
  }
  checkLabelKeys(b.metadata as { labels?: Record<string, string> }, 'metadata.labels');
  return body as T;
}

/** Kubernetes label keys: the prefix, when present, is a DNS subdomain of at most 253 characters. */
export function checkLabelKeys(meta: { labels?: Record<string, string> } | undefined, field: string): void {
  for (const key of Object.keys(meta?.labels ?? {})) {
    const slash = key.indexOf('/');
    if (slash > 253) throw new InvalidError(`${field}[${JSON.stringify(key)}]`, 'key prefix longer than 253');
  }
}

export const validateRepositoryBody = (b: unknown) => validateBody<Repository>('Repository', b);
export const validateImageBuildBody = (b: unknown) => validateBody<ImageBuild>('ImageBuild', b);
export const validateImageExportBody = (b: unknown) => validateBody<ImageExport>('ImageExport', b);
