// The local stand-in for Step Functions' `eks:runJob.sync` (the EKS runner): it checks the Job manifest
// the state machine built (a privileged container on a node of the job's architecture, no secret value
// in its environment), turns it into the local CodeBuild stand-in's input and lets that run the same
// builder script, then does what functions/builder/eks-job.sh does in the pod at the end: writes the
// job's result to object storage at IB_RESULT_URI, where the state machine's job-result step reads it.
import { type EnvVar, envOfJob, type JobEnvVar, k8sArch } from '../commons/domain/build-plan.js';
import { BuildFailedError, type LocalCodeBuild } from './local-codebuild.js';

/** The part of runJob.sync's Parameters the stand-in reads. */
export interface RunJobInput {
  ClusterName: string;
  Namespace: string;
  Job: {
    apiVersion: string;
    kind: string;
    metadata: { name: string };
    spec: {
      backoffLimit?: number;
      activeDeadlineSeconds?: number;
      template: {
        metadata?: { annotations?: Record<string, string> };
        spec: {
          nodeSelector?: Record<string, string>;
          containers: { name: string; env?: JobEnvVar[]; securityContext?: { privileged?: boolean } }[];
        };
      };
    };
  };
}

/** runJob.sync's answer for a Job that succeeded (the state machine discards it: ResultPath null). */
export interface RunJobResult {
  metadata: { name: string; namespace: string };
  status: { succeeded: number };
}

export class LocalEksJob {
  constructor(
    private readonly opts: {
      /** The run's CodeBuild stand-in: the same script runner, watchdog and cancel. */
      codebuild: LocalCodeBuild;
    },
  ) {}

  async runJobSync(input: RunJobInput): Promise<RunJobResult> {
    const job = input.Job;
    if (job.apiVersion !== 'batch/v1' || job.kind !== 'Job') throw new Error('runJob needs a batch/v1 Job');
    const pod = job.spec.template.spec;
    const container = pod.containers[0];
    if (!container || pod.containers.length !== 1) throw new Error('the builder Job has one container');
    // What the builder needs from the cluster; a manifest without it would fail there, so it fails here.
    if (container.securityContext?.privileged !== true) {
      throw new BuildFailedError('the builder container is not privileged (buildah and bib need it)');
    }
    if (job.spec.backoffLimit !== 0) throw new Error('a builder Job must not be retried by Kubernetes');
    const env: EnvVar[] = envOfJob(container.env ?? []);
    const value = (name: string) => env.find((v) => v.Name === name)?.Value;
    const expectedArch = k8sArch(value('IB_ARCH') ?? 'x86_64');
    if (pod.nodeSelector?.['kubernetes.io/arch'] !== expectedArch) {
      throw new Error(
        `the Job of an ${value('IB_ARCH') ?? 'x86_64'} run selects nodes of ${pod.nodeSelector?.['kubernetes.io/arch']}`,
      );
    }
    const resultUrl = value('IB_RESULT_URL') ?? '';
    if (!/^https?:\/\//.test(resultUrl)) throw new Error('the Job has no presigned IB_RESULT_URL');
    const seconds = job.spec.activeDeadlineSeconds ?? 3600;
    const result = await this.opts.codebuild.startBuildSync({
      ProjectName: `eks:${input.ClusterName}/${input.Namespace}/${job.metadata.name}`,
      EnvironmentVariablesOverride: env.filter((v) => v.Name !== 'IB_RESULT_URL'),
      TimeoutInMinutesOverride: Math.ceil(seconds / 60),
    });
    const put = await fetch(resultUrl, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ exported: result.Build.ExportedEnvironmentVariables }),
    });
    await put.arrayBuffer();
    if (!put.ok) throw new Error(`the Job's result could not be stored: ${put.status}`);
    return { metadata: { name: job.metadata.name, namespace: input.Namespace }, status: { succeeded: 1 } };
  }
}
