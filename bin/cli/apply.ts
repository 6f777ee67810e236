// `apply -f`: creates each document's resource, or compares it with the stored one. Repositories are
// replaced when they differ (PUT); builds and exports are immutable, so a different spec is a conflict
// (a build whose labels alone differ gets them by merge patch).
import { parseAllDocuments } from 'yaml';
import { type ApiClient, errorFromResponse } from './client.js';
import { CliError, EXIT } from './errors.js';
import { isKind, KINDS, type Kind, refLabel, resourcePath } from './kinds.js';
import type { Resource } from './types.js';

export type ApplyOutcome = 'created' | 'unchanged' | 'configured' | 'conflict';

/** The documents of a YAML or JSON text (`---` separated; a `…List` document contributes its items). */
export function parseDocuments(text: string, source = 'input'): Resource[] {
  const out: Resource[] = [];
  const docs = parseAllDocuments(text);
  const all = Array.isArray(docs) ? docs : [docs];
  all.forEach((doc, i) => {
    const where = `${source}: document ${i + 1}`;
    if (doc.errors.length > 0) throw new CliError(`${where}: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) return;
    const items =
      isObject(value) &&
      typeof value.kind === 'string' &&
      value.kind.endsWith('List') &&
      Array.isArray(value.items)
        ? value.items
        : Array.isArray(value)
          ? value
          : [value];
    for (const item of items) out.push(checkDocument(item, where));
  });
  if (out.length === 0) throw new CliError(`${source}: no documents`);
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function checkDocument(value: unknown, where: string): Resource {
  if (!isObject(value)) throw new CliError(`${where}: expected an object`);
  if (!isKind(value.kind)) {
    throw new CliError(
      `${where}: kind must be Repository, ImageBuild or ImageExport (got ${JSON.stringify(value.kind)})`,
    );
  }
  if (!isObject(value.metadata) || typeof value.metadata.name !== 'string' || !value.metadata.name) {
    throw new CliError(`${where}: metadata.name is required`);
  }
  return value as unknown as Resource;
}

/** JSON with object keys sorted, so that key order does not matter when comparing. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    isObject(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, v[k]]),
        )
      : v,
  );
}

const emptyToUndefined = (m: Record<string, string> | undefined) =>
  m && Object.keys(m).length > 0 ? m : undefined;

/** The part of a document that apply compares: spec and labels (repositories: annotations too). */
export function comparable(kind: Kind, doc: Resource): string {
  let spec = doc.spec;
  // The server shows a stored password only masked (*****), so it cannot be compared.
  if (kind === 'Repository' && isObject(spec?.ociAuth)) {
    const { password: _password, ...ociAuth } = spec.ociAuth;
    spec = { ...spec, ociAuth };
  }
  return canonical({
    spec,
    labels: emptyToUndefined(doc.metadata.labels),
    ...(kind === 'Repository' ? { annotations: emptyToUndefined(doc.metadata.annotations) } : {}),
  });
}

export interface ApplyResult {
  ref: string;
  outcome?: ApplyOutcome;
  error?: CliError;
}

export async function applyDocument(client: ApiClient, doc: Resource): Promise<ApplyResult> {
  const kind = doc.kind as Kind;
  const name = doc.metadata.name;
  const ref = refLabel(kind, name);
  try {
    return { ref, outcome: await applyOne(client, kind, name, doc) };
  } catch (err) {
    if (err instanceof CliError) return { ref, error: err };
    throw err;
  }
}

async function applyOne(client: ApiClient, kind: Kind, name: string, doc: Resource): Promise<ApplyOutcome> {
  const created = await client.raw('POST', KINDS[kind].path, { body: doc });
  if (created.ok) {
    await created.body?.cancel();
    return 'created';
  }
  if (created.status !== 409) throw await errorFromResponse(created);
  await created.body?.cancel();
  const current = await client.json<Resource>('GET', resourcePath(kind, name));
  if (comparable(kind, current) === comparable(kind, doc)) return 'unchanged';
  if (kind === 'Repository') {
    const { resourceVersion: _rv, ...metadata } = doc.metadata;
    await client.json('PUT', resourcePath(kind, name), { body: { ...doc, metadata } });
    return 'configured';
  }
  if (kind === 'ImageBuild' && canonical(current.spec) === canonical(doc.spec)) {
    const labels: Record<string, string | null> = { ...doc.metadata.labels };
    for (const k of Object.keys(current.metadata.labels ?? {})) if (!(k in labels)) labels[k] = null;
    await client.json('PATCH', resourcePath(kind, name), {
      body: { metadata: { labels } },
      headers: { 'content-type': 'application/merge-patch+json' },
    });
    return 'configured';
  }
  return 'conflict';
}

/** Exit code of an apply run: the first error's, else 5 when something conflicted, else 0. */
export function applyExitCode(results: ApplyResult[]): number {
  const failed = results.find((r) => r.error);
  if (failed?.error) return failed.error.exitCode;
  return results.some((r) => r.outcome === 'conflict') ? EXIT.conflict : EXIT.ok;
}
