// Status transitions of builds and exports, written by the workflows and the API alike: conditional on
// the stored version (retried on a race), idempotent (a repeat of the same transition is a no-op) and
// ordered (nothing leaves a terminal state; a canceling resource only goes to Canceled or a terminal
// state). Each transition that starts or ends a run publishes exactly one event.
import type { Deps, StoredResource, WorkflowRef } from '../ports.js';
import { ConflictError } from './errors.js';
import { releaseBuildSlot } from './quotas.js';
import { now, readyCondition, readyReason, workflowRef } from './resources.js';
import { type ImageBuild, type ImageExport, TERMINAL_REASONS } from './types.js';

/** The reasons whose entry publishes an event, and its detail-type suffix. */
const EVENT_FOR: Record<string, string> = {
  Building: 'Started',
  Converting: 'Started',
  Completed: 'Completed',
  Failed: 'Failed',
  Canceled: 'Canceled',
};

export type AnyRun = ImageBuild | ImageExport;

export interface TransitionRequest {
  reason: string;
  message: string;
  /** Status fields to set besides the condition (imageReference, digests, artifact…). */
  status?: Record<string, unknown>;
  /** Only from these reasons (e.g. cancel: only from active ones). */
  from?: readonly string[];
}

export function canTransition(current: string, next: string): boolean {
  if (current === next) return false;
  if (TERMINAL_REASONS.has(current)) return false;
  if (current === 'Canceling') return next === 'Canceled' || TERMINAL_REASONS.has(next);
  return true;
}

/**
 * Applies a transition to the run `ref` names. Returns the stored result, or undefined when it did not
 * apply (the resource is gone, belongs to another run generation, or is already past that point).
 */
export async function transition(
  deps: Deps,
  ref: WorkflowRef,
  req: TransitionRequest,
): Promise<StoredResource<AnyRun> | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const item = (await deps.store.get(ref.orgId, ref.kind, ref.name)) as StoredResource<AnyRun> | undefined;
    if (!item || item.doc.metadata.uid !== ref.uid) return undefined;
    if ((item.doc.metadata.generation ?? 1) !== ref.generation) return undefined;
    const current = readyReason(item.doc) ?? 'Pending';
    if (req.from && !req.from.includes(current)) return undefined;
    if (!canTransition(current, req.reason)) return undefined;
    const time = now();
    const status = { ...(item.doc.status ?? {}), ...(req.status ?? {}) } as Record<string, unknown>;
    status.conditions = [readyCondition(req.reason, req.message)];
    status.lastSeen = time;
    if (EVENT_FOR[req.reason] === 'Started') status.startTime = time;
    if (TERMINAL_REASONS.has(req.reason)) status.completionTime = time;
    const next: StoredResource<AnyRun> = {
      ...item,
      version: item.version + 1,
      doc: { ...item.doc, status } as AnyRun,
    };
    try {
      await deps.store.replace(next, item.version);
    } catch (err) {
      if (err instanceof ConflictError) continue;
      throw err;
    }
    await publishFor(deps, next, req.reason, req.message);
    if (next.kind === 'ImageBuild' && TERMINAL_REASONS.has(req.reason)) {
      await releaseBuildSlot(deps, next.orgId, next.doc.metadata.uid as string);
    }
    return next;
  }
  throw new Error(`could not record ${ref.kind} "${ref.name}" → ${req.reason}: too many concurrent writes`);
}

async function publishFor(deps: Deps, item: StoredResource<AnyRun>, reason: string, message: string) {
  const suffix = EVENT_FOR[reason];
  if (!suffix) return;
  const s = item.doc.status as Record<string, unknown>;
  await deps.events.publish({
    detailType: `${item.kind} ${suffix}`,
    detail: {
      orgId: item.orgId,
      kind: item.kind,
      name: item.name,
      uid: item.doc.metadata.uid as string,
      reason,
      message,
      ...(s.imageReference ? { imageReference: s.imageReference as string } : {}),
      ...(s.manifestDigest ? { manifestDigest: s.manifestDigest as string } : {}),
      ...(s.artifact ? { artifact: s.artifact } : {}),
    },
  });
}

/** Records a heartbeat: lastSeen only, no transition, no event. */
export async function touch(deps: Deps, ref: WorkflowRef): Promise<void> {
  const item = (await deps.store.get(ref.orgId, ref.kind, ref.name)) as StoredResource<AnyRun> | undefined;
  if (!item || item.doc.metadata.uid !== ref.uid) return;
  const next = {
    ...item,
    version: item.version + 1,
    doc: { ...item.doc, status: { ...item.doc.status, lastSeen: now() } },
  };
  await deps.store.replace(next as StoredResource<AnyRun>, item.version).catch((err) => {
    if (!(err instanceof ConflictError)) throw err;
  });
}

/** Exports of a build still Pending, waiting for it (one page of up to 1000). */
export async function waitingExports(
  deps: Deps,
  buildRef: WorkflowRef,
): Promise<StoredResource<ImageExport>[]> {
  const page = await deps.store.queryPage({
    orgId: buildRef.orgId,
    kind: 'ImageExport',
    buildRef: buildRef.name,
    limit: 1000,
  });
  return (page.items as StoredResource<ImageExport>[]).filter((item) => readyReason(item.doc) === 'Pending');
}

/**
 * Exports waiting for a build that ended without an image: they end too, saying why (CONTRACT §1).
 * Called by the build workflow when the build fails or is canceled.
 */
export async function settleWaitingExports(
  deps: Deps,
  buildRef: WorkflowRef,
  buildReason: 'Failed' | 'Canceled',
) {
  for (const item of await waitingExports(deps, buildRef)) {
    await transition(deps, workflowRef(item), {
      reason: buildReason,
      message: `ImageBuild "${buildRef.name}" ${buildReason === 'Failed' ? 'failed' : 'was canceled'}; there is no image to export`,
      from: ['Pending'],
    });
  }
}
