// The dispatch safety net: a create writes the resource Pending and then starts its execution; if the
// process dies between the two, nothing would ever run it. The reconciler (a scheduled sweep in AWS,
// a timer in the local stack) starts executions for runs Pending longer than a grace period. Execution
// names derive from uid and generation, so starting one that already runs is harmless.
import { getDeps } from '../commons/config.js';
import { workflowRef } from '../commons/domain/image-builds.js';
import { readyReason } from '../commons/domain/resources.js';
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

/** Scheduled in AWS (EventBridge Scheduler, every minute). */
export const handler = () => reconcilePending(getDeps(), { graceSeconds: 60 });
