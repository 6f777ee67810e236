// What an export run does, as data: the exporter's environment (CodeBuild's EnvironmentVariablesOverride
// shape, also used by the local runner), where the disk image goes and what it is called.
import type { StoredResource, WorkflowRef } from '../ports.js';
import {
  credentialsEnv,
  type EnvVar,
  type JobPlan,
  jobFor,
  jobName,
  jobTimeoutMinutes,
  k8sArch,
  logStreamName,
  type Runner,
  registryEnv,
} from './build-plan.js';
import { artifactFor, bibArguments, bibConfigToml } from './export-plan.js';
import type { ImageBuild, ImageExport, Repository } from './types.js';

/**
 * The job's working directory (CodeBuild, EKS and the local sandbox alike): the buildspec's IB_WORK
 * (functions/builder/buildspec.yml), where it writes the bib config and argv and bib writes its output.
 */
export const EXPORT_WORKDIR = '/tmp/ib-export';

export interface ExportPlan {
  arch: string;
  format: string;
  imageRef: string;
  artifactKey: string;
  fileName: string;
  contentType: string;
  timeoutMinutes: number;
  env: EnvVar[];
  /** Routes the conversion in the state machine (ChooseProject). */
  runner: Runner;
  /** The exporter's log stream (prefix): names the run, so a heartbeat finds its resource. */
  logStream: string;
  /** Present with the EKS runner. */
  job?: JobPlan;
}

export const artifactPrefix = (ref: WorkflowRef) => `artifacts/${ref.orgId}/${ref.uid}-${ref.generation}/`;

/** The presigned URLs of an export run: the disk image's PUT and, with EKS, its result object's. */
export interface ExportTransfers {
  artifactUrl: string;
  resultUrl?: string;
  /** GET of the run's registry password, when its repository has one. */
  credentialsUrl?: string;
}

const exportArch = (exp: StoredResource<ImageExport>, build: StoredResource<ImageBuild>) =>
  exp.doc.spec.architecture ?? build.doc.spec.architectures?.[0] ?? 'x86_64';

const fileNameOf = (exp: StoredResource<ImageExport>, build: StoredResource<ImageBuild>) =>
  `${build.name}-${exportArch(exp, build)}.${artifactFor(exp.doc.spec.format).extension}`;

/** The object key of an export run's disk image: `artifacts/<org>/<uid>-<generation>/<build>-<arch>.<ext>`. */
export const artifactKey = (
  ref: WorkflowRef,
  build: StoredResource<ImageBuild>,
  exp: StoredResource<ImageExport>,
) => `${artifactPrefix(ref)}${fileNameOf(exp, build)}`;

const plain = (Name: string, Value: string): EnvVar => ({ Name, Value, Type: 'PLAINTEXT' });

export function planExport(
  ref: WorkflowRef,
  exp: StoredResource<ImageExport>,
  build: StoredResource<ImageBuild>,
  registry: StoredResource<Repository>,
  settings: {
    artifactBucket: string;
    region: string;
    buildTimeoutSeconds: number;
    heartbeatSeconds: number;
    bibImage?: string;
  },
  transfers: ExportTransfers,
  runner: Runner = 'codebuild',
): ExportPlan {
  const arch = exportArch(exp, build);
  const digest = build.doc.status?.architectures?.[arch]?.digest ?? build.doc.status?.manifestDigest ?? '';
  const imageRef = `${registry.doc.spec.registry}/${build.doc.spec.destination.imageName}@${digest}`;
  const format = exp.doc.spec.format;
  const artifact = artifactFor(format);
  const fileName = fileNameOf(exp, build);
  const key = artifactKey(ref, build, exp);
  // ami: bib uploads the raw disk to the bucket, imports it as a snapshot and registers the AMI (the
  // stack's vmimport role); the AMI name is unique per run.
  const bibArgs = bibArguments({
    format,
    imageRef,
    rootfs: 'ext4',
    configPath: `${EXPORT_WORKDIR}/config.toml`,
    outputDir: `${EXPORT_WORKDIR}/out`,
    ...(settings.bibImage ? { bibImage: settings.bibImage } : {}),
    ...(format === 'ami'
      ? {
          awsAmi: {
            bucket: settings.artifactBucket,
            region: settings.region,
            amiName: `imagebuilder-${build.name}-${arch}-${ref.uid.slice(0, 8)}-${ref.generation}`,
          },
        }
      : {}),
  });
  const timeoutMinutes = jobTimeoutMinutes(settings.buildTimeoutSeconds);
  const env: EnvVar[] = [
    plain('IB_JOB', 'export'),
    plain('IB_IMAGE_REF', imageRef),
    plain('IB_ARCH', arch),
    plain('IB_FORMAT', format),
    plain('IB_ARTIFACT_URL', transfers.artifactUrl),
    ...credentialsEnv(transfers.credentialsUrl),
    plain('IB_ARTIFACT_CONTENT_TYPE', artifact.contentType),
    plain('IB_BIB_ARGS', JSON.stringify(bibArgs)),
    plain('IB_BIB_CONFIG', bibConfigToml(build.doc.spec)),
    plain('IB_HEARTBEAT_SECONDS', String(settings.heartbeatSeconds)),
    // No build context here to carry a CA file: custom CAs reach exports with the export issue's CDK.
    ...registryEnv('SOURCE', registry).filter((v) => v.Name !== 'IB_SOURCE_CA_FILE'),
  ];
  return {
    arch,
    format,
    imageRef,
    artifactKey: key,
    fileName,
    contentType: artifact.contentType,
    timeoutMinutes,
    env,
    runner,
    logStream: logStreamName(ref, arch),
    ...jobFor(
      runner,
      jobName('ie', ref, k8sArch(arch)),
      env,
      timeoutMinutes,
      exportResultKey(ref),
      transfers.resultUrl ?? '',
    ),
  };
}

/** Where an export job of the EKS runner leaves its result (beside the disk image, same lifetime). */
export const exportResultKey = (ref: WorkflowRef) => `${artifactPrefix(ref)}result.json`;
