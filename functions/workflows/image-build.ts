// The build state machine's own steps (statemachines/image-build.asl.json): one small handler, invoked
// by Step Functions in AWS and by the local runner locally, with the same events.
import { getDeps } from '../commons/config.js';
import {
  type BuildItem,
  type BuildPlan,
  buildResultKey,
  CONTEXT_ARCHIVE,
  caPath,
  contextPrefix,
  type EnvVar,
  exportedDigest,
  planBuild,
  planManifestJob,
  planManifestList,
  type Runner,
  runnerOf,
  transferSeconds,
} from '../commons/domain/build-plan.js';
import { generateBuildContext } from '../commons/domain/containerfile/index.js';
import { readyReason, workflowRef } from '../commons/domain/resources.js';
import { tarArchive } from '../commons/domain/tar.js';
import { settleWaitingExports, transition, waitingExports } from '../commons/domain/transitions.js';
import type { ImageBuild, Repository } from '../commons/domain/types.js';
import type { Deps, StoredResource, WorkflowRef } from '../commons/ports.js';
import { failureMessage, RunNotActiveError } from './common.js';
import { withEnrollment } from './enrollment.js';
import { readJobResult } from './job-result.js';
import { handCredentials } from './run-credentials.js';

export type BuildStepEvent =
  /** `runner` is the definition's `${Runner}` substitution: where the jobs of this deployment run. */
  | { step: 'prepare'; ref: WorkflowRef; runner?: Runner }
  /** EKS runner: the result a job wrote (CodeBuild returns it with the build instead). */
  | { step: 'job-result'; resultKey: string }
  | { step: 'manifest-plan'; ref: WorkflowRef; plan: BuildPlan; built: BuiltItem[] }
  | {
      step: 'complete';
      ref: WorkflowRef;
      plan: BuildPlan;
      built: BuiltItem[];
      manifest: { exported: Exported };
    }
  | { step: 'fail'; ref: WorkflowRef; error: { Error?: string; Cause?: string } }
  | { step: 'ended'; ref: WorkflowRef; status: 'ABORTED' | 'TIMED_OUT' | 'FAILED'; cause?: string };

type Exported = { Name: string; Value: string }[];
type BuiltItem = BuildItem & { result: { exported: Exported } };

async function load<T extends ImageBuild | Repository>(
  deps: Deps,
  orgId: string,
  kind: string,
  name: string,
) {
  return (await deps.store.get(orgId, kind as 'ImageBuild', name)) as StoredResource<T> | undefined;
}

async function prepare(deps: Deps, ref: WorkflowRef, runner: Runner): Promise<BuildPlan> {
  const build = await load<ImageBuild>(deps, ref.orgId, 'ImageBuild', ref.name);
  if (
    !build ||
    build.doc.metadata.uid !== ref.uid ||
    (build.doc.metadata.generation ?? 1) !== ref.generation
  ) {
    throw new RunNotActiveError(`ImageBuild "${ref.name}" was deleted or replaced`);
  }
  if (readyReason(build.doc) !== 'Pending') {
    throw new RunNotActiveError(`ImageBuild "${ref.name}" is ${readyReason(build.doc)}, not Pending`);
  }
  const spec = build.doc.spec;
  const [source, destination] = await Promise.all([
    load<Repository>(deps, ref.orgId, 'Repository', spec.source.repository),
    load<Repository>(deps, ref.orgId, 'Repository', spec.destination.repository),
  ]);
  if (!source)
    throw new Error(`source Repository "${spec.source.repository}" no longer exists; recreate it and retry`);
  if (!destination) {
    throw new Error(
      `destination Repository "${spec.destination.repository}" no longer exists; recreate it and retry`,
    );
  }
  let enrollment: Awaited<ReturnType<NonNullable<Deps['enrollment']>['issue']>> | undefined;
  if (spec.binding.type === 'early') {
    if (!deps.enrollment) {
      throw new Error(
        'early binding needs a Flight Control enrollment service, and none is configured for this deployment; use binding type "late" or ask the operator to configure one',
      );
    }
    enrollment = await deps.enrollment.issue(ref.uid);
  }
  const context = generateBuildContext({
    spec,
    source: {
      registry: source.doc.spec.registry,
      ...(source.doc.spec.scheme ? { scheme: source.doc.spec.scheme } : {}),
    },
    settings: deps.settings.agentRepoUrl ? { agentRepoUrl: deps.settings.agentRepoUrl } : {},
    ...(enrollment ? { enrollment } : {}),
  });
  const prefix = contextPrefix(ref);
  const files: Record<string, string> = { Containerfile: context.containerfile, ...context.files };
  for (const [side, repo] of [
    ['SOURCE', source],
    ['DEST', destination],
  ] as const) {
    const ca = repo.doc.spec['ca.crt'];
    if (ca) files[caPath(side)] = Buffer.from(ca, 'base64').toString('utf8');
  }
  // Under the run's prefix, like the context: removed with it on every way out.
  const credentialsUrl = await handCredentials(deps, ref, { SOURCE: source, DEST: destination });
  const plan = planBuild(
    ref,
    build,
    source,
    destination,
    deps.settings,
    {
      ...(await runTransfers(deps, ref, spec.architectures ?? ['x86_64'], runner)),
      ...(credentialsUrl ? { credentialsUrl } : {}),
    },
    runner,
  );
  // The context and the Building transition do not depend on each other: one round trip for both. If
  // the upload fails after Building is recorded, the definition's Catch records Failed with its error.
  const [stored, started] = await Promise.allSettled([
    deps.objects.put(`${prefix}${CONTEXT_ARCHIVE}`, tarArchive(files), 'application/x-tar'),
    transition(deps, ref, {
      reason: 'Building',
      message: `Building ${plan.builds.map((b) => b.arch).join(', ')}`,
      from: ['Pending'],
      current: build,
    }),
  ]);
  if (started.status === 'rejected' || !started.value) {
    await deps.objects.deletePrefix(prefix);
    if (started.status === 'rejected') throw started.reason;
    throw new RunNotActiveError(`ImageBuild "${ref.name}" left Pending while it was being prepared`);
  }
  if (stored.status === 'rejected') throw stored.reason;
  return plan;
}

/** The presigned URLs of a run (its context; with EKS, each part's result object). */
async function runTransfers(deps: Deps, ref: WorkflowRef, archs: string[], runner: Runner) {
  const seconds = transferSeconds(deps.settings.buildTimeoutSeconds);
  const contextUrl = await deps.objects.presignGet(`${contextPrefix(ref)}${CONTEXT_ARCHIVE}`, seconds);
  if (runner !== 'eks') return { contextUrl };
  const keys = archs.map((arch) => buildResultKey(ref, arch));
  const urls = await Promise.all(keys.map((key) => deps.objects.presignPut(key, seconds)));
  return { contextUrl, resultUrls: Object.fromEntries(keys.map((key, i) => [key, urls[i] as string])) };
}

function digestsOf(built: BuiltItem[]): Record<string, string> {
  return Object.fromEntries(built.map((b) => [b.arch, exportedDigest(b.result.exported)]));
}

async function complete(deps: Deps, e: Extract<BuildStepEvent, { step: 'complete' }>): Promise<void> {
  const digests = digestsOf(e.built);
  const manifestDigest = e.plan.multiArch
    ? exportedDigest(e.manifest.exported)
    : (Object.values(digests)[0] as string);
  // The context (with any enrollment key) goes first: once the status says Completed, nothing is left.
  await deps.objects.deletePrefix(contextPrefix(e.ref));
  await transition(deps, e.ref, {
    reason: 'Completed',
    message: `Pushed ${e.plan.destination}`,
    status: {
      imageReference: e.plan.destination,
      manifestDigest,
      architecture: e.plan.builds[0]?.arch,
      architectures: Object.fromEntries(Object.entries(digests).map(([a, d]) => [a, { digest: d }])),
    },
  });
  await startWaitingExports(deps, e.ref);
}

/** Exports created while the build ran wait in Pending; their workflows start now. */
async function startWaitingExports(deps: Deps, ref: WorkflowRef): Promise<void> {
  for (const item of await waitingExports(deps, ref)) {
    await deps.workflows
      .start(workflowRef(item))
      .catch((err: Error) =>
        deps.logger.error('export start failed', { name: item.name, error: err.message }),
      );
  }
}

async function fail(deps: Deps, e: Extract<BuildStepEvent, { step: 'fail' }>): Promise<void> {
  await deps.objects.deletePrefix(contextPrefix(e.ref));
  if (e.error.Error !== 'RunNotActive') {
    const failed = await transition(deps, e.ref, {
      reason: 'Failed',
      message: await failureMessage(deps, e.ref, e.error),
    });
    if (failed) await settleWaitingExports(deps, e.ref, 'Failed');
  }
}

/** The execution ended outside the definition's own paths (stopped, timed out, failed hard). */
async function ended(deps: Deps, e: Extract<BuildStepEvent, { step: 'ended' }>): Promise<void> {
  await deps.objects.deletePrefix(contextPrefix(e.ref));
  if (e.status === 'ABORTED') {
    if (await transition(deps, e.ref, { reason: 'Canceled', message: 'Canceled' })) {
      await settleWaitingExports(deps, e.ref, 'Canceled');
    }
  } else {
    const message =
      e.status === 'TIMED_OUT'
        ? 'timed out: the build workflow ran longer than allowed'
        : (e.cause ?? 'the build workflow failed');
    if (await transition(deps, e.ref, { reason: 'Failed', message }))
      await settleWaitingExports(deps, e.ref, 'Failed');
  }
}

export async function runBuildStep(deps: Deps, event: BuildStepEvent): Promise<unknown> {
  switch (event.step) {
    case 'prepare':
      return prepare(deps, event.ref, runnerOf(event.runner));
    case 'job-result':
      return readJobResult(deps, event.resultKey);
    case 'manifest-plan': {
      const env = planManifestList(event.plan, digestsOf(event.built)) satisfies EnvVar[];
      if (event.plan.runner !== 'eks') return { env };
      const resultUrl = await deps.objects.presignPut(
        buildResultKey(event.ref, 'manifest'),
        transferSeconds(deps.settings.buildTimeoutSeconds),
      );
      return { env, job: planManifestJob(event.ref, event.plan, env, resultUrl) };
    }
    case 'complete':
      return complete(deps, event);
    case 'fail':
      return fail(deps, event);
    case 'ended':
      return ended(deps, event);
    default:
      throw new Error(`unknown step ${(event as { step: string }).step}`);
  }
}

/** EventBridge's "Step Functions Execution Status Change" event, as the status rule delivers it. */
export interface ExecutionStatusChange {
  'detail-type': 'Step Functions Execution Status Change';
  detail: { status: string; input: string; cause?: string; error?: string };
}

/** The status rule's event → the `ended` step; everything else is already a step event. */
export function toStepEvent<E extends { step: string }>(
  event: E | ExecutionStatusChange,
): E | Extract<BuildStepEvent, { step: 'ended' }> {
  if (!('detail-type' in event)) return event;
  const { status, input, cause, error } = event.detail;
  if (status !== 'ABORTED' && status !== 'TIMED_OUT' && status !== 'FAILED') {
    throw new Error(`unexpected execution status ${status}`);
  }
  const message = [error, cause].filter(Boolean).join(': ');
  return {
    step: 'ended',
    ref: JSON.parse(input) as WorkflowRef,
    status,
    ...(message ? { cause: message } : {}),
  };
}

let deps: Deps | undefined;
export const handler = (event: BuildStepEvent | ExecutionStatusChange) => {
  deps ??= withEnrollment(getDeps());
  return runBuildStep(deps, toStepEvent(event));
};
