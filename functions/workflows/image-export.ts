// The export state machine's own steps (statemachines/image-export.asl.json), invoked by Step Functions
// in AWS and by the local runner locally.

import { getDeps } from '../commons/config.js';
import { contextPrefix, type Runner, runnerOf, transferSeconds } from '../commons/domain/build-plan.js';
import { artifactKey, type ExportPlan, exportResultKey, planExport } from '../commons/domain/export-run.js';
import { readyReason } from '../commons/domain/resources.js';
import { transition } from '../commons/domain/transitions.js';
import type { ImageBuild, ImageExport, Repository } from '../commons/domain/types.js';
import type { Deps, StoredResource, WorkflowRef } from '../commons/ports.js';
import { failureMessage, RunNotActiveError } from './common.js';
import { type ExecutionStatusChange, toStepEvent } from './image-build.js';
import { readJobResult } from './job-result.js';
import { handCredentials } from './run-credentials.js';

export type ExportStepEvent =
  /** `runner` is the definition's `${Runner}` substitution. */
  | { step: 'prepare'; ref: WorkflowRef; runner?: Runner }
  /** EKS runner: the result the export job wrote (sha256, size, amiId). */
  | { step: 'job-result'; resultKey: string }
  | {
      step: 'publish';
      ref: WorkflowRef;
      plan: ExportPlan;
      converted: { exported: { Name: string; Value: string }[] };
    }
  | { step: 'fail'; ref: WorkflowRef; error: { Error?: string; Cause?: string } }
  | { step: 'ended'; ref: WorkflowRef; status: 'ABORTED' | 'TIMED_OUT' | 'FAILED'; cause?: string };

/** Pushes the ORAS referrer of a finished disk image; returns the referrer manifest's digest. */
export type ReferrerPusher = (input: {
  deps: Deps;
  registry: StoredResource<Repository>;
  build: StoredResource<ImageBuild>;
  plan: ExportPlan;
  sha256: string;
  size: number;
}) => Promise<string>;

interface Loaded {
  exp: StoredResource<ImageExport>;
  build: StoredResource<ImageBuild>;
  registry: StoredResource<Repository>;
}

async function load(deps: Deps, ref: WorkflowRef): Promise<Loaded> {
  const exp = (await deps.store.get(ref.orgId, 'ImageExport', ref.name)) as
    | StoredResource<ImageExport>
    | undefined;
  if (!exp || exp.doc.metadata.uid !== ref.uid)
    throw new RunNotActiveError(`ImageExport "${ref.name}" was deleted`);
  const buildName = exp.doc.spec.source.imageBuildRef;
  const build = (await deps.store.get(ref.orgId, 'ImageBuild', buildName)) as
    | StoredResource<ImageBuild>
    | undefined;
  if (!build) throw new Error(`ImageBuild "${buildName}" no longer exists`);
  const repoName = build.doc.spec.destination.repository;
  const registry = (await deps.store.get(ref.orgId, 'Repository', repoName)) as
    | StoredResource<Repository>
    | undefined;
  if (!registry) throw new Error(`Repository "${repoName}" (the build's destination) no longer exists`);
  return { exp, build, registry };
}

async function prepare(deps: Deps, ref: WorkflowRef, runner: Runner): Promise<ExportPlan> {
  const { exp, build, registry } = await load(deps, ref);
  if (readyReason(exp.doc) !== 'Pending')
    throw new RunNotActiveError(`ImageExport "${ref.name}" is not Pending`);
  if (readyReason(build.doc) !== 'Completed') {
    throw new RunNotActiveError(`ImageBuild "${build.name}" is not Completed yet; the export waits for it`);
  }
  const seconds = transferSeconds(deps.settings.buildTimeoutSeconds);
  const key = artifactKey(ref, build, exp);
  const [artifactUrl, resultUrl, credentialsUrl] = await Promise.all([
    deps.objects.presignPut(key, seconds),
    runner === 'eks' ? deps.objects.presignPut(exportResultKey(ref), seconds) : undefined,
    handCredentials(deps, ref, { SOURCE: registry }),
  ]);
  const plan = planExport(
    ref,
    exp,
    build,
    registry,
    {
      artifactBucket: deps.objects.bucket,
      region: process.env.AWS_REGION ?? 'us-east-1',
      buildTimeoutSeconds: deps.settings.buildTimeoutSeconds,
      heartbeatSeconds: deps.settings.heartbeatSeconds,
      ...(deps.settings.bibImage ? { bibImage: deps.settings.bibImage } : {}),
    },
    { artifactUrl, ...(resultUrl ? { resultUrl } : {}), ...(credentialsUrl ? { credentialsUrl } : {}) },
    runner,
  );
  const started = await transition(deps, ref, {
    reason: 'Converting',
    message: `Converting ${build.doc.status?.imageReference ?? build.name} to ${plan.format} (${plan.arch})`,
    from: ['Pending'],
  });
  if (!started)
    throw new RunNotActiveError(`ImageExport "${ref.name}" left Pending while it was being prepared`);
  return plan;
}

function exported(converted: { exported: { Name: string; Value: string }[] }, name: string): string {
  const v = converted.exported.find((e) => e.Name === name)?.Value;
  if (!v) throw new Error(`the exporter reported no ${name}`);
  return v;
}

async function publish(deps: Deps, e: Extract<ExportStepEvent, { step: 'publish' }>, push: ReferrerPusher) {
  const sha256 = exported(e.converted, 'IB_SHA256');
  const size = Number(exported(e.converted, 'IB_SIZE'));
  if (!/^[0-9a-f]{64}$/.test(sha256) || !Number.isFinite(size))
    throw new Error('the exporter reported an invalid checksum or size');
  // The exporter has ended: its credentials object goes now (fail and ended remove it on the other ways).
  await deps.objects.deletePrefix(contextPrefix(e.ref));
  // The Pushing transition and the reads the push needs at once: one round trip.
  const [pushing, { build, registry }] = await Promise.all([
    transition(deps, e.ref, {
      reason: 'Pushing',
      message: `Pushing the ${e.plan.format} referrer`,
      from: ['Converting'],
    }),
    load(deps, e.ref),
  ]);
  if (!pushing) throw new RunNotActiveError(`ImageExport "${e.ref.name}" is no longer converting`);
  const manifestDigest = await push({ deps, registry, build, plan: e.plan, sha256, size });
  const amiId = e.converted.exported.find((v) => v.Name === 'IB_AMI_ID')?.Value;
  await transition(deps, e.ref, {
    current: pushing,
    reason: 'Completed',
    message: `${e.plan.fileName} is ready to download`,
    status: {
      manifestDigest,
      artifact: {
        uri: `s3://${deps.objects.bucket}/${e.plan.artifactKey}`,
        size,
        sha256,
        contentType: e.plan.contentType,
      },
      ...(amiId ? { amiId, region: process.env.AWS_REGION ?? 'us-east-1' } : {}),
    },
  });
}

async function fail(deps: Deps, e: Extract<ExportStepEvent, { step: 'fail' }>): Promise<void> {
  await deps.objects.deletePrefix(contextPrefix(e.ref));
  if (e.error.Error === 'RunNotActive') return;
  await transition(deps, e.ref, { reason: 'Failed', message: await failureMessage(deps, e.ref, e.error) });
}

async function ended(deps: Deps, e: Extract<ExportStepEvent, { step: 'ended' }>): Promise<void> {
  await deps.objects.deletePrefix(contextPrefix(e.ref));
  if (e.status === 'ABORTED') await transition(deps, e.ref, { reason: 'Canceled', message: 'Canceled' });
  else
    await transition(deps, e.ref, {
      reason: 'Failed',
      message: e.cause ?? `the export workflow ended ${e.status}`,
    });
}

export async function runExportStep(
  deps: Deps,
  event: ExportStepEvent,
  push: ReferrerPusher,
): Promise<unknown> {
  switch (event.step) {
    case 'prepare':
      return prepare(deps, event.ref, runnerOf(event.runner));
    case 'job-result':
      return readJobResult(deps, event.resultKey);
    case 'publish':
      return publish(deps, event, push);
    case 'fail':
      return fail(deps, event);
    case 'ended':
      return ended(deps, event);
    default:
      throw new Error(`unknown step ${(event as { step: string }).step}`);
  }
}

let deps: Deps | undefined;
/** Step Functions entry: the steps, or the status rule's event for an execution that ended abnormally. */
export const handler = async (event: ExportStepEvent | ExecutionStatusChange) => {
  deps ??= getDeps();
  const { pushDiskReferrer } = await import('./referrer.js');
  return runExportStep(deps, toStepEvent(event) as ExportStepEvent, pushDiskReferrer);
};
