// ImageBuild: validated, stored Pending, then handed to the build workflow.
import type { Deps, StoredResource } from '../ports.js';
import { authorize, type Principal } from './auth.js';
import {
  DEFAULT_AGENT_CONFIG_PATH,
  renderContainerfile,
  validateBuildSpecExtras,
} from './containerfile/index.js';
import { ConflictError, InvalidError } from './errors.js';
import { acquireBuildSlot, releaseBuildSlot } from './quotas.js';
import { requireRepository } from './repositories.js';
import {
  getOrThrow,
  type ListParams,
  listResources,
  newMetadata,
  now,
  present,
  readyCondition,
  readyReason,
  workflowRef,
} from './resources.js';
import {
  deleteExportNow,
  deletionRequested,
  finishBuildDeletion,
  isActive,
  settleWaitingExports,
  transition,
} from './transitions.js';
import { type ImageBuild, type ImageExport, type ObjectMeta, TERMINAL_REASONS } from './types.js';
import { validateImageBuildBody } from './validation.js';

const KIND = 'ImageBuild';

export { workflowRef };

/** Validation shared by create and the Containerfile preview: schema, then the repositories it names. */
export async function validateImageBuild(deps: Deps, orgId: string, body: unknown) {
  const input = validateImageBuildBody(body);
  // Both lookups at once (each is a store round trip); when both fail, the source's error is the one
  // reported, whichever answer came first.
  const [sourceLookup, destinationLookup] = await Promise.allSettled([
    requireRepository(deps, orgId, input.spec.source.repository, 'spec.source.repository', false),
    requireRepository(deps, orgId, input.spec.destination.repository, 'spec.destination.repository', true),
  ]);
  if (sourceLookup.status === 'rejected') throw sourceLookup.reason;
  if (destinationLookup.status === 'rejected') throw destinationLookup.reason;
  const [source, destination] = [sourceLookup.value, destinationLookup.value];
  // What the schema cannot say (decoded sizes, duplicates, reserved paths…), so a build that would fail
  // in Prepare is a 400 now.
  validateBuildSpecExtras(input.spec, { agentConfigPath: DEFAULT_AGENT_CONFIG_PATH });
  return { input, source, destination };
}

/** POST /containerfile: the Containerfile a build would use; same validation as create, nothing stored. */
export async function previewContainerfile(deps: Deps, p: Principal, body: unknown): Promise<string> {
  authorize(p, 'read');
  const { input, source } = await validateImageBuild(deps, p.orgId, body);
  return renderContainerfile({
    spec: input.spec,
    source: { registry: source.doc.spec.registry },
    settings: deps.settings.agentRepoUrl ? { agentRepoUrl: deps.settings.agentRepoUrl } : {},
  });
}

export async function createImageBuild(deps: Deps, p: Principal, body: unknown) {
  authorize(p, 'write');
  // The name is schema-valid once validateImageBuild resolves; looking it up alongside the repositories
  // saves a round trip, and gives a cheap 409 before a quota slot is taken (the conditional create
  // below still decides races).
  const name = (body as { metadata?: { name?: unknown } } | null)?.metadata?.name;
  const [{ input }, existing] = await Promise.all([
    validateImageBuild(deps, p.orgId, body),
    typeof name === 'string' && /^[a-z0-9][-a-z0-9.]{0,252}$/.test(name)
      ? deps.store.get(p.orgId, KIND, name)
      : undefined,
  ]);
  const item: StoredResource<ImageBuild> = {
    orgId: p.orgId,
    kind: KIND,
    name: input.metadata.name,
    version: 1,
    doc: {
      apiVersion: input.apiVersion,
      kind: KIND,
      metadata: newMetadata(input.metadata),
      spec: input.spec,
      status: { conditions: [readyCondition('Pending', 'Waiting for the build workflow to start')] },
    },
  };
  const uid = item.doc.metadata.uid as string;
  if (existing) {
    throw new ConflictError(`ImageBuild "${item.name}" already exists`, 'AlreadyExists');
  }
  // The slot and the build in one transaction: both are stored or neither.
  await acquireBuildSlot(deps, p.orgId, uid, item);
  await startWorkflow(deps, item);
  return present(item);
}

/**
 * The resource is already stored Pending; a failure to start is logged, not returned, because the
 * reconciler starts executions for builds left Pending (the execution name makes a repeat harmless).
 */
export async function startWorkflow(deps: Deps, item: StoredResource): Promise<void> {
  try {
    await deps.workflows.start(workflowRef(item));
  } catch (err) {
    deps.logger.error('workflow start failed; the reconciler will retry', {
      kind: item.kind,
      name: item.name,
      uid: item.doc.metadata.uid,
      error: (err as Error).message,
    });
  }
}

async function exportsOf(deps: Deps, orgId: string, build: string): Promise<StoredResource<ImageExport>[]> {
  const out: StoredResource<ImageExport>[] = [];
  let startAfter: string | undefined;
  for (;;) {
    const page = await deps.store.queryPage({
      orgId,
      kind: 'ImageExport',
      buildRef: build,
      limit: 1000,
      ...(startAfter ? { startAfter } : {}),
    });
    out.push(...(page.items as StoredResource<ImageExport>[]));
    if (!page.more || page.items.length === 0) return out;
    startAfter = page.items[page.items.length - 1]?.name;
  }
}

async function withExports(deps: Deps, item: StoredResource<ImageBuild>): Promise<ImageBuild> {
  return { ...present(item), imageexports: (await exportsOf(deps, item.orgId, item.name)).map(present) };
}

export async function getImageBuild(deps: Deps, p: Principal, name: string, includeExports: boolean) {
  authorize(p, 'read');
  const item = await getOrThrow<ImageBuild>(deps, p.orgId, KIND, name);
  return includeExports ? withExports(deps, item) : present(item);
}

export async function listImageBuilds(deps: Deps, p: Principal, params: ListParams, includeExports: boolean) {
  authorize(p, 'read');
  const result = await listResources<ImageBuild>(deps, p.orgId, KIND, params);
  const items = includeExports
    ? await Promise.all(result.items.map((i) => withExports(deps, i)))
    : result.items.map(present);
  return { ...result, presented: items };
}

/**
 * DELETE of a build waits this long for its runs to stop unless settings say otherwise: with the deletions
 * that follow (each export's disk image and row, then the build) it must end within the API Lambda's 29 s
 * and API Gateway's 30 s.
 */
export const DEFAULT_DELETE_WAIT_SECONDS = 20;
/** How often the waiting DELETE reads the runs it stopped. */
const DELETE_POLL_MS = 250;

export interface BuildDeletion {
  /** The build and all its exports are gone. */
  deleted: boolean;
  /** Runs still stopping when the wait ended (`ImageExport/x`, `ImageBuild/y`); deleted when they end. */
  stopping: string[];
}

/**
 * DELETE of a build (CONTRACT §2: it cancels the build if active and deletes its exports, canceling
 * active ones). Everything is marked for deletion first (metadata.deletionTimestamp), so whatever ends
 * from then on is deleted by its own end (transitions.ts) and no export can be added. Running exports
 * and the build go Canceling and their executions are stopped; Pending ones end Canceled at once. Then
 * it waits, bounded by settings.deleteWaitSeconds, for them to end, and deletes the exports (disk
 * images first) and last the build. What is still stopping when the bound passes is deleted when its
 * execution ends; the answer says so. A repeat DELETE stops and waits again, so it finishes the job.
 */
export async function deleteImageBuild(deps: Deps, p: Principal, name: string): Promise<BuildDeletion> {
  authorize(p, 'write');
  const waitSeconds = deps.settings.deleteWaitSeconds ?? DEFAULT_DELETE_WAIT_SECONDS;
  const deadline = Date.now() + waitSeconds * 1000;
  const build = await markForDeletion(deps, p.orgId, KIND, name);
  const why = `ImageBuild "${name}" deleted`;
  await inBatches(await exportsOf(deps, p.orgId, name), async (exp) => {
    const marked = await markForDeletion(deps, p.orgId, 'ImageExport', exp.name);
    if (marked) await cancelForDeletion(deps, marked, why);
  });
  if (build) await cancelForDeletion(deps, build, why);

  // Wait for the runs that were stopped to end (a Pending one ended already).
  let refs: { kind: 'ImageBuild' | 'ImageExport'; name: string }[] = [
    ...(await exportsOf(deps, p.orgId, name)).map((e) => ({ kind: 'ImageExport' as const, name: e.name })),
    { kind: KIND, name },
  ];
  for (;;) {
    const now = await Promise.all(refs.map((r) => deps.store.get(p.orgId, r.kind, r.name)));
    refs = refs.filter((_, i) => {
      const item = now[i];
      return item !== undefined && isActive(item);
    });
    const left = deadline - Date.now();
    if (refs.length === 0 || left <= 0) break;
    await new Promise((r) => setTimeout(r, Math.min(DELETE_POLL_MS, left)));
  }

  // Exports that ended go now; those still stopping are deleted when they end.
  await inBatches(await exportsOf(deps, p.orgId, name), async (exp) => {
    const fresh = await deps.store.get(p.orgId, 'ImageExport', exp.name);
    if (fresh && !isActive(fresh)) await deleteExportNow(deps, fresh);
  });
  const deleted = await finishBuildDeletion(deps, p.orgId, name);
  if (!deleted) {
    deps.logger.info('ImageBuild deletion continues after its runs end', {
      orgId: p.orgId,
      name,
      stopping: refs.map((r) => `${r.kind}/${r.name}`),
    });
  }
  return { deleted, stopping: deleted ? [] : refs.map((r) => `${r.kind}/${r.name}`) };
}

/** Sets metadata.deletionTimestamp (once); returns the stored item, or undefined when there is none. */
async function markForDeletion(
  deps: Deps,
  orgId: string,
  kind: 'ImageBuild' | 'ImageExport',
  name: string,
): Promise<StoredResource | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const item = await deps.store.get(orgId, kind, name);
    if (!item || deletionRequested(item)) return item;
    const metadata: ObjectMeta & { deletionTimestamp: string } = {
      ...item.doc.metadata,
      deletionTimestamp: now(),
    };
    const next: StoredResource = { ...item, version: item.version + 1, doc: { ...item.doc, metadata } };
    try {
      await deps.store.replace(next, item.version);
      return next;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }
  throw new Error(`could not mark ${kind} "${name}" for deletion: too many concurrent writes`);
}

/** Pending → Canceled at once; running → Canceling; either way its execution is told to stop. */
async function cancelForDeletion(deps: Deps, item: StoredResource, why: string): Promise<void> {
  const ref = workflowRef(item);
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await deps.store.get(item.orgId, item.kind, item.name);
    if (!current || current.doc.metadata.uid !== ref.uid || !isActive(current)) return;
    const reason = readyReason(current.doc) ?? 'Pending';
    const next =
      reason === 'Canceling'
        ? current
        : await transition(
            deps,
            ref,
            reason === 'Pending'
              ? { reason: 'Canceled', message: `Canceled before it started: ${why}`, from: [reason] }
              : { reason: 'Canceling', message: `Canceling: ${why}`, from: [reason] },
          );
    if (next) {
      // Also for a Pending run: its execution may be starting.
      await deps.workflows.stop(ref, why);
      return;
    }
  }
}

/** Runs `fn` over `items`, ten at a time (each is a few store round trips). */
async function inBatches<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 10) await Promise.all(items.slice(i, i + 10).map(fn));
}

export { isActive };

// ---- cancel, retry, new version, logs ------------------------------------------------------------

export const CANCEL_ANNOTATION = 'imagebuilder.flightctl.io/cancel';
export const RETRY_ANNOTATION = 'imagebuilder.flightctl.io/retry';
export const NEW_VERSION_ANNOTATION = 'flightctl.io/new-version-from';

/**
 * Pending → Canceled at once (its execution, if one is starting, is stopped too); a running build →
 * Canceling, then Canceled when its execution has stopped. 409 once it has ended or is canceling.
 */
export async function cancelRun(deps: Deps, p: Principal, kind: 'ImageBuild' | 'ImageExport', name: string) {
  authorize(p, 'write');
  // The run moves on its own (Pending → Building as its workflow starts): a transition that lost to
  // such a step reads the run again and cancels from where it is now; 409 only when it cannot be.
  for (let attempt = 0; ; attempt++) {
    const item = await getOrThrow<ImageBuild | ImageExport>(deps, p.orgId, kind, name);
    const reason = readyReason(item.doc) ?? 'Pending';
    if (TERMINAL_REASONS.has(reason) || reason === 'Canceling') {
      throw new ConflictError(`${kind} "${name}" is ${reason} and cannot be canceled`);
    }
    const ref = workflowRef(item);
    const next =
      reason === 'Pending'
        ? await transition(deps, ref, {
            reason: 'Canceled',
            message: 'Canceled before it started',
            from: ['Pending'],
          })
        : await transition(deps, ref, { reason: 'Canceling', message: 'Canceling', from: [reason] });
    if (!next) {
      if (attempt < CANCEL_ATTEMPTS) continue;
      throw new ConflictError(`${kind} "${name}" kept changing while canceling; read it again`);
    }
    await deps.workflows.stop(ref, 'canceled by user');
    if (kind === 'ImageBuild' && readyReason(next.doc) === 'Canceled')
      await settleWaitingExports(deps, ref, 'Canceled');
    return present(next);
  }
}

/** How often a cancel reads the run again after losing to one of its own steps. */
const CANCEL_ATTEMPTS = 5;

/** Runs a Failed or Canceled build again: a new generation, so a new execution. */
async function retryBuild(deps: Deps, item: StoredResource<ImageBuild>): Promise<StoredResource<ImageBuild>> {
  const reason = readyReason(item.doc) ?? 'Pending';
  if (deletionRequested(item))
    throw new ConflictError(`ImageBuild "${item.name}" is being deleted and cannot be retried`);
  if (reason !== 'Failed' && reason !== 'Canceled') {
    throw new ConflictError(
      `ImageBuild "${item.name}" is ${reason}; only Failed or Canceled builds can be retried`,
    );
  }
  const next: StoredResource<ImageBuild> = {
    ...item,
    version: item.version + 1,
    doc: {
      ...item.doc,
      metadata: { ...item.doc.metadata, generation: (item.doc.metadata.generation ?? 1) + 1 },
      status: {
        conditions: [readyCondition('Pending', 'Retrying: waiting for the build workflow to start')],
      },
    },
  };
  await acquireBuildSlot(deps, item.orgId, item.doc.metadata.uid as string);
  try {
    await deps.store.replace(next, item.version);
  } catch (err) {
    await releaseBuildSlot(deps, item.orgId, item.doc.metadata.uid as string, true);
    throw err;
  }
  await startWorkflow(deps, next);
  return next;
}

type MergePatch = {
  metadata?: {
    labels?: Record<string, string | null> | null;
    annotations?: Record<string, string | null> | null;
  };
};

function mergeMap(
  current: Record<string, string> | undefined,
  patch: Record<string, string | null> | null | undefined,
) {
  if (patch === undefined) return current;
  if (patch === null) return undefined;
  const out = { ...(current ?? {}) };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return Object.keys(out).length ? out : undefined;
}

/**
 * PATCH (JSON merge patch) of metadata.labels/annotations only, for clients of Flight Control's first
 * design: annotation cancel="true" cancels, retry="true" re-runs a Failed/Canceled build; both are
 * actions, so they are not kept.
 */
export async function patchImageBuild(deps: Deps, p: Principal, name: string, body: unknown) {
  authorize(p, 'write');
  const patch = validateMergePatch(body);
  const item = await getOrThrow<ImageBuild>(deps, p.orgId, KIND, name);
  const annotations = mergeMap(item.doc.metadata.annotations, patch.metadata?.annotations);
  const labels = mergeMap(item.doc.metadata.labels, patch.metadata?.labels);
  const cancel = annotations?.[CANCEL_ANNOTATION] === 'true';
  const retry = annotations?.[RETRY_ANNOTATION] === 'true';
  if (annotations) {
    delete annotations[CANCEL_ANNOTATION];
    delete annotations[RETRY_ANNOTATION];
  }
  const validated = validateImageBuildBody({
    ...item.doc,
    metadata: {
      name,
      ...(labels ? { labels } : {}),
      ...(annotations && Object.keys(annotations).length ? { annotations } : {}),
    },
    status: undefined,
  });
  const next: StoredResource<ImageBuild> = {
    ...item,
    version: item.version + 1,
    doc: {
      ...item.doc,
      metadata: {
        ...item.doc.metadata,
        labels: validated.metadata.labels,
        annotations: validated.metadata.annotations,
      },
    },
  };
  await deps.store.replace(next, item.version);
  if (cancel) return cancelRun(deps, p, KIND, name);
  if (retry) return present(await retryBuild(deps, next));
  return present(next);
}

function validateMergePatch(body: unknown): MergePatch {
  const isMap = (v: unknown) => v === null || (typeof v === 'object' && !Array.isArray(v));
  if (!isMap(body) || body === null) throw new InvalidError('body', 'must be a JSON merge patch object');
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (key !== 'metadata')
      throw new InvalidError(key, 'only metadata.labels and metadata.annotations can be patched');
  }
  const meta = b.metadata;
  if (meta === undefined) return {};
  if (!isMap(meta) || meta === null) throw new InvalidError('metadata', 'must be an object');
  for (const [key, value] of Object.entries(meta as Record<string, unknown>)) {
    if (key !== 'labels' && key !== 'annotations') {
      throw new InvalidError(
        `metadata.${key}`,
        'only metadata.labels and metadata.annotations can be patched',
      );
    }
    if (!isMap(value)) throw new InvalidError(`metadata.${key}`, 'must be an object or null');
    for (const [k, v] of Object.entries((value ?? {}) as Record<string, unknown>)) {
      if (v !== null && typeof v !== 'string')
        throw new InvalidError(`metadata.${key}[${JSON.stringify(k)}]`, 'must be a string or null');
    }
  }
  return b as MergePatch;
}

/** POST newversion: a copy of the spec under a new name, optionally with other image tags. */
export async function newVersion(deps: Deps, p: Principal, name: string, body: unknown) {
  authorize(p, 'write');
  const req = body as { name?: unknown; sourceImageTag?: unknown; destinationImageTag?: unknown } | null;
  if (typeof req !== 'object' || req === null || Array.isArray(req))
    throw new InvalidError('body', 'must be a JSON object');
  for (const key of Object.keys(req)) {
    if (!['name', 'sourceImageTag', 'destinationImageTag'].includes(key))
      throw new InvalidError(key, 'unknown field');
  }
  const from = await getOrThrow<ImageBuild>(deps, p.orgId, KIND, name);
  const spec = structuredClone(from.doc.spec);
  if (req.sourceImageTag !== undefined) spec.source.imageTag = req.sourceImageTag as string;
  if (req.destinationImageTag !== undefined) spec.destination.imageTag = req.destinationImageTag as string;
  const copy = {
    apiVersion: from.doc.apiVersion,
    kind: KIND,
    metadata: {
      name: req.name,
      ...(from.doc.metadata.labels ? { labels: from.doc.metadata.labels } : {}),
      annotations: { ...(from.doc.metadata.annotations ?? {}), [NEW_VERSION_ANNOTATION]: name },
    },
    spec,
  };
  // Errors name the request's fields: metadata.name → name, spec.*.imageTag → *ImageTag.
  try {
    return await createImageBuild(deps, p, copy);
  } catch (err) {
    if (err instanceof InvalidError) {
      const field =
        err.field === 'metadata.name'
          ? 'name'
          : err.field.replace(/^spec\.(source|destination)\.imageTag$/, '$1ImageTag');
      throw new InvalidError(field, err.message.replace(/^[^:]*: /, ''));
    }
    throw err;
  }
}

/** The run's builder output from `cursor` on; with follow, waits (bounded) for more while it runs. */
export async function readLog(
  deps: Deps,
  p: Principal,
  kind: 'ImageBuild' | 'ImageExport',
  name: string,
  opts: { cursor?: string; follow: boolean; waitMs: number },
) {
  authorize(p, 'logs');
  const deadline = Date.now() + (opts.follow ? opts.waitMs : 0);
  for (;;) {
    const item = await getOrThrow<ImageBuild | ImageExport>(deps, p.orgId, kind, name);
    const ended = TERMINAL_REASONS.has(readyReason(item.doc) ?? 'Pending');
    const out = await deps.logs.read(workflowRef(item), opts.cursor);
    if (out.text || ended || Date.now() >= deadline) return { ...out, complete: ended };
    await new Promise((r) => setTimeout(r, 500));
  }
}
