// Status transitions of builds and exports, written by the workflows and the API alike: conditional on
// the stored version (retried on a race), idempotent (a repeat of the same transition is a no-op) and
// ordered (nothing leaves a terminal state; a canceling resource only goes to Canceled or a terminal
// state). Each transition that starts or ends a run publishes exactly one event. A run that ends also
// finishes what waited for its end: an export ending without an image drops its disk image, and a build
// or export whose deletion was requested (metadata.deletionTimestamp) is deleted now.
import type { Deps, StoredResource, WorkflowRef } from '../ports.js';
import { ConflictError } from './errors.js';
import { artifactPrefix } from './export-run.js';
import { releaseBuildSlot } from './quotas.js';
import { now, readyCondition, readyReason, workflowRef } from './resources.js';
import { type ImageBuild, type ImageExport, type ObjectMeta, TERMINAL_REASONS } from './types.js';

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
  /** The resource as the caller just read it: saves the first read (a stale copy only costs a retry). */
  current?: StoredResource<AnyRun>;
  /** Applies only while this holds for the stored resource (checked on every attempt). */
  when?: (item: StoredResource<AnyRun>) => boolean;
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
    const item =
      attempt === 0 && req.current
        ? req.current
        : ((await deps.store.get(ref.orgId, ref.kind, ref.name)) as StoredResource<AnyRun> | undefined);
    if (!item || item.doc.metadata.uid !== ref.uid) return undefined;
    if ((item.doc.metadata.generation ?? 1) !== ref.generation) return undefined;
    const current = readyReason(item.doc) ?? 'Pending';
    if (req.from && !req.from.includes(current)) return undefined;
    if (req.when && !req.when(item)) return undefined;
    if (!canTransition(current, req.reason)) return undefined;
    const time = now();
    const status = { ...(item.doc.status ?? {}), ...(req.status ?? {}) } as Record<string, unknown>;
    status.conditions = [{ ...readyCondition(req.reason, req.message), lastTransitionTime: time }];
    status.lastSeen = time; // the same instant: "seen since the transition" means a later heartbeat
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
    if (TERMINAL_REASONS.has(req.reason)) await afterEnd(deps, next, req.reason, current !== 'Pending');
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

// ---- deletion of builds and exports that were still running ----------------------------------------
// DELETE of a build cancels its runs and waits for them (bounded). What has not stopped by then keeps
// `metadata.deletionTimestamp` (Kubernetes' meaning: deletion requested, waiting for something to finish)
// and is deleted here, when its run ends; the build goes last, once none of its exports is left, so no
// export ever names a deleted build.

export const isActive = (item: StoredResource): boolean =>
  !TERMINAL_REASONS.has(readyReason(item.doc) ?? 'Pending');

export const deletionRequested = (item: StoredResource): boolean =>
  Boolean((item.doc.metadata as ObjectMeta & { deletionTimestamp?: string }).deletionTimestamp);

/** Deletes an export and its disk image; the image first, so a failure leaves the row to retry from. */
export async function deleteExportNow(deps: Deps, item: StoredResource): Promise<void> {
  await deps.objects.deletePrefix(artifactPrefix(workflowRef(item)));
  await deps.store.delete(item.orgId, 'ImageExport', item.name);
}

/**
 * Deletes a build whose deletion was requested once it has ended and none of its exports is left.
 * Returns true when the build is gone (also when it already was).
 */
export async function finishBuildDeletion(deps: Deps, orgId: string, buildName: string): Promise<boolean> {
  const build = await deps.store.get(orgId, 'ImageBuild', buildName);
  if (!build) return true;
  if (!deletionRequested(build) || isActive(build)) return false;
  // The by-build index is eventually consistent: what it lists is checked with a consistent read.
  const page = await deps.store.queryPage({ orgId, kind: 'ImageExport', buildRef: buildName, limit: 25 });
  const left = await Promise.all(page.items.map((e) => deps.store.get(orgId, 'ImageExport', e.name)));
  if (page.more || left.some((e) => e !== undefined)) return false;
  await deps.store.delete(orgId, 'ImageBuild', buildName);
  await releaseBuildSlot(deps, orgId, build.doc.metadata.uid as string);
  return true;
}

/**
 * Best effort: the transition is recorded and published already. What fails here is retried by a repeat
 * DELETE, and disk images expire with the bucket's retention rule.
 */
async function afterEnd(deps: Deps, item: StoredResource<AnyRun>, reason: string, ran: boolean) {
  try {
    await cleanUpAfterEnd(deps, item, reason, ran);
  } catch (err) {
    deps.logger.error('clean-up after the end of a run failed', {
      kind: item.kind,
      name: item.name,
      uid: item.doc.metadata.uid,
      error: (err as Error).message,
    });
  }
}

/** `ran`: the run got past Pending, so an export may have left a disk image. */
async function cleanUpAfterEnd(deps: Deps, item: StoredResource<AnyRun>, reason: string, ran: boolean) {
  if (item.kind === 'ImageExport') {
    if (deletionRequested(item)) {
      await deleteExportNow(deps, item);
      if (item.buildRef) await finishBuildDeletion(deps, item.orgId, item.buildRef);
    } else if (ran && reason !== 'Completed') {
      // Only a Completed export can be downloaded: a disk image left by a canceled or failed run (one
      // canceled while Pushing has a whole one) would only cost storage until the retention rule.
      await deps.objects.deletePrefix(artifactPrefix(workflowRef(item)));
    }
  } else if (deletionRequested(item)) {
    await finishBuildDeletion(deps, item.orgId, item.name);
  }
}
