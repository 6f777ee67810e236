// What a build run does, as data: the builder environment of each architecture (CodeBuild's
// EnvironmentVariablesOverride shape, also used by the local runner) and of the manifest list. Secrets
// appear only as references (Type SECRETS_MANAGER), resolved by CodeBuild or the local runner. With the
// EKS runner each job also gets a Kubernetes Job's view of the same environment (`job`), in which a
// secret is only its ARN (`<NAME>_SECRET_ARN`), resolved inside the pod (functions/builder/eks-job.sh).
import type { StoredResource, WorkflowRef } from '../ports.js';
import type { Architecture, ImageBuild, Repository } from './types.js';

export interface EnvVar {
  Name: string;
  Value: string;
  Type: 'PLAINTEXT' | 'SECRETS_MANAGER';
}

/** Where builder jobs run: privileged CodeBuild projects, or Kubernetes Jobs on an EKS cluster. */
export type Runner = 'codebuild' | 'eks';
export const RUNNERS: readonly Runner[] = ['codebuild', 'eks'];

/** The runner a definition names (`${Runner}`); an unknown one is a deployment error, not a user's. */
export function runnerOf(value: string | undefined): Runner {
  const runner = (value ?? 'codebuild') as Runner;
  if (!RUNNERS.includes(runner)) throw new Error(`unknown builder runner "${value}"`);
  return runner;
}

/** A Kubernetes container environment variable. */
export interface JobEnvVar {
  name: string;
  value: string;
}

/** What a Kubernetes Job of the EKS runner needs besides the manifest in the ASL file. */
export interface JobPlan {
  /** The Job's name (a DNS label, unique per run and part). */
  name: string;
  /** activeDeadlineSeconds: the build timeout. */
  timeoutSeconds: number;
  env: JobEnvVar[];
  /**
   * Object key the job writes its result to (`{"exported":[{Name,Value}]}`, through the presigned PUT
   * `IB_RESULT_URL` in its environment), read by the job-result step.
   */
  resultKey: string;
}

export interface BuildItem {
  arch: Architecture;
  pushRef: string;
  /** CodeBuild's build timeout (5–2160 minutes); the local stand-in uses the settings' seconds. */
  timeoutMinutes: number;
  env: EnvVar[];
  /** Routes the item in the state machine (ChooseProject). */
  runner: Runner;
  /** Builder log stream (prefix) of this job: names the run, so a heartbeat finds its resource. */
  logStream: string;
  /** Present with the EKS runner. */
  job?: JobPlan;
}

export interface BuildPlan {
  contextPrefix: string;
  destination: string;
  multiArch: boolean;
  runner: Runner;
  /** Log stream of the manifest-list job. */
  manifestLogStream: string;
  builds: BuildItem[];
}

/**
 * What a run may read and write in the service bucket, as presigned URLs minted by the trusted step that
 * plans it: the run holds no S3 credentials (README, "Authority of a run").
 */
export interface RunTransfers {
  /** GET of the run's context archive. */
  contextUrl: string;
  /** EKS runner: PUT of each part's result object, by result key. */
  resultUrls?: Record<string, string>;
  /** GET of the run's registry passwords (functions/workflows/run-credentials.ts), when it has any. */
  credentialsUrl?: string;
}

/** The run's registry passwords, `{"SOURCE"?: …, "DEST"?: …}`, under its context prefix. */
export const CREDENTIALS_OBJECT = 'credentials.json';

/** The run's variable that carries its credentials URL (the buildspec reads it). */
export const credentialsEnv = (url: string | undefined): EnvVar[] =>
  url ? [plain('IB_CREDENTIALS_URL', url)] : [];

/** How long a run's presigned URLs live: a queued job plus its timeout (SigV4 allows 7 days at most). */
export const transferSeconds = (buildTimeoutSeconds: number): number =>
  Math.min(7 * 24 * 3600, buildTimeoutSeconds + 9 * 3600);

export interface PlanSettings {
  contextBucket: string;
  buildTimeoutSeconds: number;
  heartbeatSeconds: number;
  /** Layer cache in the destination registry (default on); see Settings.registryLayerCache. */
  registryLayerCache?: boolean;
}

/** Context paths of registry CA bundles (outside ib/, which the Containerfile copies into the image). */
export const caPath = (side: 'SOURCE' | 'DEST') => `.ib-registry/${side.toLowerCase()}-ca.crt`;

export const contextPrefix = (ref: WorkflowRef) => `contexts/${ref.orgId}/${ref.uid}-${ref.generation}/`;

/** The run's build context: one tar archive under its prefix (functions/commons/domain/tar.ts). */
export const CONTEXT_ARCHIVE = 'context.tar';

const plain = (Name: string, Value: string): EnvVar => ({ Name, Value, Type: 'PLAINTEXT' });

/** A builder job's timeout in whole minutes, within CodeBuild's bounds (5–2160). */
export const jobTimeoutMinutes = (timeoutSeconds: number): number =>
  Math.min(2160, Math.max(5, Math.ceil(timeoutSeconds / 60)));

/**
 * Log stream (CodeBuild appends `/<build id>`) of one job of a run: `<uid>-<generation>/<part>/<kind>/
 * <org, URI-encoded>/<name>`. It starts with the execution name, which is what the log API filters on,
 * and names the resource, so the heartbeat handler needs no lookup. The org is URI-encoded because org
 * ids may hold `:`, which CloudWatch Logs does not allow in stream names.
 */
export const logStreamName = (ref: WorkflowRef, part: string): string =>
  `${ref.uid}-${ref.generation}/${part}/${ref.kind}/${encodeURIComponent(ref.orgId)}/${ref.name}`;

const LOG_STREAM = /^([0-9A-Za-z-]+)-(\d+)\/[^/]+\/(ImageBuild|ImageExport)\/([^/]+)\/([^/]+)(?:\/.*)?$/;

/** The run a builder log stream belongs to (logStreamName's inverse); undefined for other streams. */
export function runOfLogStream(stream: string): WorkflowRef | undefined {
  const m = LOG_STREAM.exec(stream);
  if (!m) return undefined;
  let orgId: string;
  try {
    orgId = decodeURIComponent(m[4] as string);
  } catch {
    return undefined;
  }
  return {
    uid: m[1] as string,
    generation: Number(m[2]),
    kind: m[3] as WorkflowRef['kind'],
    orgId,
    name: m[5] as string,
  };
}

/** Kubernetes' name for an architecture (the `kubernetes.io/arch` node label). */
export const k8sArch = (arch: string): string => (arch === 'aarch64' ? 'arm64' : 'amd64');

/**
 * The job's environment. No secret and no secret reference goes into a Job spec: a run's registry
 * passwords come through its presigned IB_CREDENTIALS_URL (functions/workflows/run-credentials.ts).
 */
export function jobEnv(env: EnvVar[]): JobEnvVar[] {
  return env.map((v) => {
    if (v.Type !== 'PLAINTEXT') throw new Error(`${v.Name}: a Job spec carries no secret reference`);
    return { name: v.Name, value: v.Value };
  });
}

/** jobEnv's inverse (the local stand-in of a Job hands it to the CodeBuild stand-in). */
export function envOfJob(env: JobEnvVar[]): EnvVar[] {
  return env.map((v) => plain(v.name, v.value));
}

/** A Kubernetes Job name: `<prefix>-<uid>-<generation>-<part>`, lowercase, at most 63 characters. */
export function jobName(prefix: string, ref: WorkflowRef, part: string): string {
  const name = `${prefix}-${ref.uid}-${ref.generation}-${part}`.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  return name.slice(0, 63).replace(/-+$/, '');
}

export function jobPlan(
  name: string,
  env: EnvVar[],
  timeoutMinutes: number,
  resultKey: string,
  resultUrl: string,
): JobPlan {
  return {
    name,
    timeoutSeconds: timeoutMinutes * 60,
    env: [...jobEnv(env), { name: 'IB_RESULT_URL', value: resultUrl }],
    resultKey,
  };
}

/** `{ job }` for the EKS runner, nothing for CodeBuild: spread into a build item or an export plan. */
export const jobFor = (runner: Runner, ...args: Parameters<typeof jobPlan>): { job?: JobPlan } =>
  runner === 'eks' ? { job: jobPlan(...args) } : {};

/** Where a build job of the EKS runner leaves its result (removed with the context at the end). */
export const buildResultKey = (ref: WorkflowRef, part: string) => `${contextPrefix(ref)}results/${part}.json`;

export function registryEnv(side: 'SOURCE' | 'DEST', repo: StoredResource<Repository>): EnvVar[] {
  const spec = repo.doc.spec;
  const insecure = spec.scheme === 'http' || spec.skipServerVerification === true;
  return [
    plain(`IB_${side}_REGISTRY`, spec.registry),
    plain(`IB_${side}_TLS_VERIFY`, insecure ? 'false' : 'true'),
    ...(spec.ociAuth ? [plain(`IB_${side}_USERNAME`, spec.ociAuth.username)] : []),
    ...(spec['ca.crt'] ? [plain(`IB_${side}_CA_FILE`, caPath(side))] : []),
  ];
}

export function planBuild(
  ref: WorkflowRef,
  build: StoredResource<ImageBuild>,
  source: StoredResource<Repository>,
  destination: StoredResource<Repository>,
  settings: PlanSettings,
  transfers: RunTransfers,
  runner: Runner = 'codebuild',
): BuildPlan {
  const spec = build.doc.spec;
  const archs = spec.architectures ?? ['x86_64'];
  const multiArch = archs.length > 1;
  const destRepo = `${destination.doc.spec.registry}/${spec.destination.imageName}`;
  const destinationRef = `${destRepo}:${spec.destination.imageTag}`;
  const prefix = contextPrefix(ref);
  const common = [
    plain('IB_CONTEXT_URL', transfers.contextUrl),
    ...credentialsEnv(transfers.credentialsUrl),
    plain('IB_HEARTBEAT_SECONDS', String(settings.heartbeatSeconds)),
    ...registryEnv('SOURCE', source),
    ...registryEnv('DEST', destination),
  ];
  const timeoutMinutes = jobTimeoutMinutes(settings.buildTimeoutSeconds);
  return {
    contextPrefix: prefix,
    destination: destinationRef,
    multiArch,
    runner,
    manifestLogStream: logStreamName(ref, 'manifest'),
    builds: archs.map((arch) => {
      // One architecture pushes the final tag; several push one tag each, joined by the manifest list.
      const pushRef = multiArch ? `${destinationRef}-${arch}` : destinationRef;
      const env = [
        ...common,
        plain('IB_MODE', 'build'),
        plain('IB_ARCH', arch),
        plain('IB_PUSH_REF', pushRef),
        ...(settings.registryLayerCache === false ? [] : [plain('IB_CACHE_REPO', `${destRepo}/buildcache`)]),
      ];
      return {
        arch,
        pushRef,
        timeoutMinutes,
        env,
        runner,
        logStream: logStreamName(ref, arch),
        ...jobFor(
          runner,
          jobName('ib', ref, k8sArch(arch)),
          env,
          timeoutMinutes,
          buildResultKey(ref, arch),
          transfers.resultUrls?.[buildResultKey(ref, arch)] ?? '',
        ),
      };
    }),
  };
}

/** Digest a builder run reported (CodeBuild exported variable IB_DIGEST). */
export function exportedDigest(exported: { Name: string; Value: string }[] | undefined): string {
  const digest = exported?.find((v) => v.Name === 'IB_DIGEST')?.Value ?? '';
  if (!/^sha256:[0-9a-f]{64}$/.test(digest))
    throw new Error(`the builder reported no valid digest ("${digest}")`);
  return digest;
}

export function planManifestList(plan: BuildPlan, digests: Record<string, string>): EnvVar[] {
  const repo = plan.destination.slice(0, plan.destination.lastIndexOf(':'));
  const first = plan.builds[0];
  const common = (first?.env ?? []).filter((v) => /^IB_(DEST_|HEARTBEAT|CREDENTIALS_URL)/.test(v.Name));
  return [
    ...common,
    plain('IB_MODE', 'manifest'),
    plain('IB_PUSH_REF', plan.destination),
    plain('IB_MANIFEST_SOURCES', plan.builds.map((b) => `${repo}@${digests[b.arch]}`).join(' ')),
  ];
}

/** The manifest-list job of the EKS runner (it runs on an amd64 node, like the x86_64 project). */
export function planManifestJob(
  ref: WorkflowRef,
  plan: BuildPlan,
  env: EnvVar[],
  resultUrl: string,
): JobPlan {
  const timeoutMinutes = plan.builds[0]?.timeoutMinutes ?? 60;
  return jobPlan(
    jobName('ib', ref, 'manifest'),
    env,
    timeoutMinutes,
    buildResultKey(ref, 'manifest'),
    resultUrl,
  );
}
