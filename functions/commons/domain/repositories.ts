// Repository: an OCI registry that builds read from or push to. Its password lives in the secret store;
// the table keeps a reference to it and responses never show it.
import type { Deps, StoredResource } from '../ports.js';
import { authorize, type Principal } from './auth.js';
import { ConflictError, InvalidError } from './errors.js';
import { getOrThrow, type ListParams, listResources, newMetadata, present } from './resources.js';
import type { Repository } from './types.js';
import { validateRepositoryBody } from './validation.js';

const KIND = 'Repository';

/**
 * What Flight Control answers in place of a stored password, and what its clients send back to keep it
 * (a GET, edited, then PUT): never stored as a password.
 */
export const MASKED_PASSWORD = '*****';

/** Splits the password off the spec; what remains is safe to store and return. The mask is no password. */
function withoutPassword(repo: Repository): { doc: Repository; password?: string } {
  const auth = repo.spec.ociAuth;
  if (!auth || auth.password === undefined) return { doc: repo };
  const { password, ...rest } = auth;
  const doc = { ...repo, spec: { ...repo.spec, ociAuth: rest } };
  return password && password !== MASKED_PASSWORD ? { doc, password } : { doc };
}

/** A repository as the API shows it: Flight Control's shape, the password masked when one is stored. */
export function presentRepository(item: StoredResource<Repository>): Repository {
  const shown = present(item);
  const auth = shown.spec.ociAuth;
  if (!auth) return shown;
  return {
    ...shown,
    spec: { ...shown.spec, ociAuth: { ...auth, password: item.secretRef ? MASKED_PASSWORD : '' } },
  };
}

/** Where a stored password would be sent: a change of any of these needs the password sent again. */
const connection = (r: Repository) =>
  JSON.stringify([
    r.spec.registry,
    r.spec.scheme ?? 'https',
    r.spec.skipServerVerification ?? false,
    r.spec['ca.crt'] ?? '',
    r.spec.ociAuth?.username,
  ]);

export async function createRepository(deps: Deps, p: Principal, body: unknown) {
  authorize(p, 'write');
  const input = validateRepositoryBody(body);
  return presentRepository(await insert(deps, p.orgId, input));
}

async function insert(deps: Deps, orgId: string, input: Repository): Promise<StoredResource<Repository>> {
  if (input.spec.ociAuth?.password === MASKED_PASSWORD) {
    throw new InvalidError(
      'spec.ociAuth.password',
      `"${MASKED_PASSWORD}" stands for a stored password, and this repository has none: send the password`,
    );
  }
  const { doc, password } = withoutPassword(input);
  const item: StoredResource<Repository> = {
    orgId,
    kind: KIND,
    name: input.metadata.name,
    version: 1,
    doc: { apiVersion: doc.apiVersion, kind: KIND, metadata: newMetadata(doc.metadata), spec: doc.spec },
  };
  // Secret first under a fresh name, then the conditional write; a lost race removes only its own secret.
  if (password) item.secretRef = await deps.secrets.putRepositoryPassword(orgId, item.name, password);
  try {
    await deps.store.create(item);
  } catch (err) {
    if (item.secretRef) await deps.secrets.deleteSecret(item.secretRef);
    throw err;
  }
  return item;
}

export async function getRepository(deps: Deps, p: Principal, name: string) {
  authorize(p, 'read');
  return presentRepository(await getOrThrow<Repository>(deps, p.orgId, KIND, name));
}

export async function listRepositories(deps: Deps, p: Principal, params: ListParams) {
  authorize(p, 'read');
  return listResources<Repository>(deps, p.orgId, KIND, params);
}

/** PUT: replaces labels, annotations and spec; creates when missing (201). */
export async function replaceRepository(deps: Deps, p: Principal, name: string, body: unknown) {
  authorize(p, 'write');
  const input = validateRepositoryBody(body);
  if (input.metadata.name !== name) {
    throw new InvalidError('metadata.name', `must match the name in the path ("${name}")`);
  }
  const current = await deps.store.get(p.orgId, KIND, name);
  if (!current) return { created: true, resource: presentRepository(await insert(deps, p.orgId, input)) };
  const old = current as StoredResource<Repository>;
  const requested = input.metadata.resourceVersion;
  if (requested !== undefined && requested !== String(old.version)) {
    throw new ConflictError(
      `Repository "${name}" was modified (resourceVersion ${old.version}, request has ${requested})`,
    );
  }

  const { doc, password } = withoutPassword(input);
  // Sending back a GET result (the masked or no password, same username) keeps the stored password —
  // unless where it would go changed (registry, scheme, TLS settings, user): a password is never sent
  // to a host, or over a transport, that its owner did not send it for.
  const keepSecret = !password && doc.spec.ociAuth !== undefined && old.secretRef !== undefined;
  if (keepSecret && connection(doc) !== connection(old.doc)) {
    throw new InvalidError(
      'spec.ociAuth.password',
      'the registry, its scheme or TLS settings, or the username changed: send the password again',
    );
  }
  const secretRef = password
    ? await deps.secrets.putRepositoryPassword(p.orgId, name, password)
    : keepSecret
      ? old.secretRef
      : undefined;
  const specChanged = JSON.stringify(doc.spec) !== JSON.stringify(old.doc.spec) || Boolean(password);
  const meta = old.doc.metadata;
  const next: StoredResource<Repository> = {
    ...old,
    version: old.version + 1,
    doc: {
      apiVersion: doc.apiVersion,
      kind: KIND,
      metadata: {
        ...meta,
        labels: doc.metadata.labels,
        annotations: doc.metadata.annotations,
        generation: (meta.generation ?? 1) + (specChanged ? 1 : 0),
      },
      spec: doc.spec,
    },
    ...(secretRef ? { secretRef } : { secretRef: undefined }),
  };
  try {
    await deps.store.replace(next, old.version);
  } catch (err) {
    if (password && secretRef) await deps.secrets.deleteSecret(secretRef);
    throw err;
  }
  if (old.secretRef && old.secretRef !== secretRef) await deps.secrets.deleteSecret(old.secretRef);
  return { created: false, resource: presentRepository(next) };
}

export async function deleteRepository(deps: Deps, p: Principal, name: string): Promise<void> {
  authorize(p, 'write');
  const old = await deps.store.delete(p.orgId, KIND, name);
  if (old?.secretRef) await deps.secrets.deleteSecret(old.secretRef);
}

/** Used by builds: the repository must exist and be an OCI repository (with write access if asked). */
export async function requireRepository(
  deps: Deps,
  orgId: string,
  name: string,
  field: string,
  needsWrite: boolean,
): Promise<StoredResource<Repository>> {
  const repo = (await deps.store.get(orgId, KIND, name)) as StoredResource<Repository> | undefined;
  if (!repo) throw new InvalidError(field, `Repository "${name}" does not exist`);
  if (repo.doc.spec.type !== 'oci') throw new InvalidError(field, `Repository "${name}" is not of type oci`);
  if (needsWrite && repo.doc.spec.accessMode !== 'ReadWrite') {
    throw new InvalidError(field, `Repository "${name}" must have accessMode ReadWrite to be a destination`);
  }
  return repo;
}
