// The dispatch safety net: a create writes the resource Pending and then starts its execution; if the
// process dies between the two, nothing would ever run it. The reconciler (a scheduled sweep in AWS,
// a timer in the local stack) starts executions for runs Pending longer than a grace period. Execution
// names derive from uid and generation, so starting one that already runs is harmless.
// In AWS it also fails runs whose builder went silent (no heartbeat for the heartbeat timeout): the
// local stack's CodeBuild stand-in watches its builder itself, CodeBuild and Kubernetes do not.
import { getDeps } from '../commons/config.js';
import { workflowRef } from '../commons/domain/image-builds.js';
import { readyReason } from '../commons/domain/resources.js';
import { settleWaitingExports, transition } from '../commons/domain/transitions.js';
import type { ImageExport } from '../commons/domain/types.js';
import type { Deps, StoredResource } from '../commons/ports.js';

export interface ReconcileOptions {
  /** Only runs Pending at least this long (the API's own hand-off gets this much time). */
  graceSeconds: number;
  /** Bound on one sweep. */
  limit?: number;
  now?: Date;
  kinds?: readonly ('ImageBuild' | 'ImageExport')[];
}

export async function reconcilePending(deps: Deps, opts: ReconcileOptions): Promise<{ started: string[] }> {
  const cutoff = new Date((opts.now ?? new Date()).getTime() - opts.graceSeconds * 1000).toISOString();
  const started: string[] = [];
  for (const kind of opts.kinds ?? (['ImageBuild', 'ImageExport'] as const)) {
    for (const item of await deps.store.listInReason(kind, 'Pending', cutoff, opts.limit ?? 100)) {
      // An export waiting for its build is Pending by design: the build's completion starts it.
      if (kind === 'ImageExport' && !(await buildCompleted(deps, item))) continue;
      try {
        await deps.workflows.start(workflowRef(item));
        started.push(`${item.orgId}/${kind}/${item.name}`);
      } catch (err) {
        deps.logger.error('reconciler could not start a run', {
          kind,
          name: item.name,
          error: (err as Error).message,
        });
      }
    }
  }
  if (started.length) deps.logger.info('reconciler started pending runs', { started });
  return { started };
}

async function buildCompleted(deps: Deps, exp: StoredResource): Promise<boolean> {
  const buildName = (exp.doc as ImageExport).spec.source.imageBuildRef;
  const build = await deps.store.get(exp.orgId, 'ImageBuild', buildName);
  return Boolean(build && readyReason(build.doc) === 'Completed');
}

export interface SilenceOptions {
  /** A run whose builder sent nothing for this long is failed. */
  heartbeatTimeoutSeconds: number;
  limit?: number;
  now?: Date;
}

/**
 * The reasons during which a builder job runs and sends heartbeats. Not an export's Pushing: that is
 * the export step's own Lambda (bounded by its timeout and the state machine's Catch), no builder.
 */
const SILENCE_WATCHED: readonly ['ImageBuild' | 'ImageExport', string][] = [
  ['ImageBuild', 'Building'],
  ['ImageBuild', 'Pushing'],
  ['ImageExport', 'Converting'],
];

/**
 * Fails runs whose builder beat and then fell silent (status.lastSeen, set by every transition and every
 * heartbeat, older than the heartbeat timeout), and stops their executions. Only runs that have beaten
 * since entering their state are judged: before its first beat a job may still wait in CodeBuild's queue
 * or for a node, and a runner whose logs carry no heartbeats (EKS without a log agent) must not be failed
 * for it; those are bounded by the build timeout instead. Failed is recorded first, conditional on the
 * stored run still being where it was and still silent (re-checked on the fresh read): a run that moved
 * on or beat meanwhile is left alone, and the execution's ABORTED end, recorded after the stop, can no
 * longer turn the run into Canceled. One transition, so one event, per run.
 */
export async function reconcileSilent(deps: Deps, opts: SilenceOptions): Promise<{ timedOut: string[] }> {
  const now = (opts.now ?? new Date()).getTime();
  const cutoff = new Date(now - opts.heartbeatTimeoutSeconds * 1000).toISOString();
  const timedOut: string[] = [];
  for (const [kind, reason] of SILENCE_WATCHED) {
    // Entered the reason before the cutoff: one that entered later has been seen since (the transition).
    for (const item of await deps.store.listInReason(kind, reason, cutoff, opts.limit ?? 1000)) {
      if (!beatThenFellSilent(item, cutoff)) continue;
      const lastSeen = (item.doc as { status: { lastSeen: string } }).status.lastSeen;
      const ref = workflowRef(item);
      const silentFor = Math.round((now - Date.parse(lastSeen)) / 1000);
      const message = `timed out: no heartbeat from the builder for ${silentFor} s`;
      try {
        const failed = await transition(deps, ref, {
          reason: 'Failed',
          message,
          from: [reason],
          when: (stored) => beatThenFellSilent(stored, cutoff),
        });
        if (!failed) continue;
        timedOut.push(`${item.orgId}/${kind}/${item.name}`);
        if (kind === 'ImageBuild') await settleWaitingExports(deps, ref, 'Failed');
        await deps.workflows.stop(ref, message);
      } catch (err) {
        deps.logger.error('reconciler could not time out a silent run', {
          kind,
          name: item.name,
          error: (err as Error).message,
        });
      }
    }
  }
  if (timedOut.length) deps.logger.info('reconciler timed out silent runs', { timedOut });
  return { timedOut };
}

/** A heartbeat arrived after the run entered its state, and none since `cutoff`. */
function beatThenFellSilent(item: StoredResource, cutoff: string): boolean {
  const status = (
    item.doc as { status?: { lastSeen?: string; conditions?: { lastTransitionTime?: string }[] } }
  ).status;
  const lastSeen = status?.lastSeen;
  const entered = status?.conditions?.[0]?.lastTransitionTime;
  return Boolean(lastSeen && entered && lastSeen > entered && lastSeen < cutoff);
}

/** The heartbeat timeout of this deployment (HEARTBEAT_TIMEOUT_SECONDS, at least 120 s). */
export function heartbeatTimeoutSeconds(deps: Deps, env = process.env): number {
  const configured = Number(env.HEARTBEAT_TIMEOUT_SECONDS);
  return Number.isFinite(configured) && configured > 0
    ? Math.max(120, configured)
    : Math.max(120, deps.settings.heartbeatSeconds * 4);
}

/** Scheduled in AWS (an EventBridge rule, every 2 minutes). */
export const handler = async () => {
  const deps = getDeps();
  const pending = await reconcilePending(deps, { graceSeconds: 60 });
  const silent = await reconcileSilent(deps, { heartbeatTimeoutSeconds: heartbeatTimeoutSeconds(deps) });
  return { ...pending, ...silent };
};
