// Workflows of the local stack: aws-local-stepfunctions executes the same ASL file the cloud deploys.
// Each Task state is overridden by the code the cloud runs there: the step handler for the Lambda tasks,
// the local CodeBuild stand-in (same builder script) for the CodeBuild tasks. Stop aborts the execution,
// kills the builder's process group and records the end as Step Functions' status-change rule would.
import { readFileSync } from 'node:fs';
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StateMachine } from 'aws-local-stepfunctions';
import { executionName } from '../commons/adapters/sfn-workflows.js';
import type { Runner } from '../commons/domain/build-plan.js';
import { touch } from '../commons/domain/transitions.js';
import type { Deps, WorkflowRef, Workflows } from '../commons/ports.js';
import { type BuildStepEvent, runBuildStep } from '../workflows/image-build.js';
import { type ExportStepEvent, type ReferrerPusher, runExportStep } from '../workflows/image-export.js';
import {
  codebuildSandboxes,
  LocalCodeBuild,
  type LocalObjectEndpoint,
  type StartBuildInput,
} from './local-codebuild.js';
import { LocalEksJob, type RunJobInput } from './local-eks-job.js';
import type { SandboxImage, SandboxPool } from './sandbox.js';

// aws-local-stepfunctions 3 uses Promise.withResolvers (Node 22); Node 20 needs it supplied.
if (!('withResolvers' in Promise)) {
  Object.assign(Promise, {
    withResolvers<T>() {
      let resolveFn!: (v: T) => void;
      let rejectFn!: (e: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolveFn = res;
        rejectFn = rej;
      });
      return { promise, resolve: resolveFn, reject: rejectFn };
    },
  });
}

const STATEMACHINES = resolve(dirname(fileURLToPath(import.meta.url)), '../../statemachines');

/** The values CDK substitutes in the cloud; locally they only need to be well-formed. */
export const LOCAL_SUBSTITUTIONS: Record<string, string> = {
  BuildStepFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:imagebuilder-build-step',
  ExportStepFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:imagebuilder-export-step',
  BuildProjectX86_64: 'imagebuilder-local-x86_64',
  BuildProjectAarch64: 'imagebuilder-local-aarch64',
  BuilderLogGroupName: 'imagebuilder-local-builders',
  Runner: 'codebuild',
  // The EKS runner's cluster and scripts: the local Job stand-in (local-eks-job.ts) needs none of them.
  EksClusterName: 'imagebuilder-local',
  EksEndpoint: 'https://kubernetes.local.invalid',
  EksCertificateAuthority: 'bG9jYWw=',
  EksNamespace: 'imagebuilder',
  EksServiceAccount: 'imagebuilder-builder',
  EksBuilderImageX86_64: 'localhost/imagebuilder-builder:local',
  EksBuilderImageAarch64: 'localhost/imagebuilder-builder:local',
};

export function loadDefinition(file: string, substitutions = LOCAL_SUBSTITUTIONS): Record<string, unknown> {
  const text = readFileSync(join(STATEMACHINES, file), 'utf8').replace(
    /\$\{([A-Za-z0-9_]+)\}/g,
    (m, key: string) => {
      const value = substitutions[key];
      if (value === undefined) throw new Error(`${file}: no substitution for ${m}`);
      return value;
    },
  );
  return JSON.parse(text);
}

export interface LocalWorkflowOptions {
  deps: () => Deps;
  dataDir: string;
  logFile(ref: WorkflowRef): string;
  readSecret(ref: string): Promise<string>;
  /** The local object store, for the gate in front of it that the sandboxes reach. */
  objectStore: () => LocalObjectEndpoint;
  /** Builder script override (workflow tests of failure paths); default: functions/builder/build-image.sh. */
  builderScript?: string;
  exporterScript?: string;
  /** Pushes an export's ORAS referrer (the same code as in the cloud). */
  pushReferrer: ReferrerPusher;
  heartbeatTimeoutSeconds?: number;
  /** Where jobs run: the definitions' `${Runner}` (default codebuild); eks runs them as Job stand-ins. */
  runner?: Runner;
  /** Sandboxes kept started ahead of their runs (default 1; 0: each run starts its own). */
  sandboxPool?: number;
  /** What one run may write (its sandbox's disk; default SANDBOX_DISK_BYTES). */
  sandboxDiskBytes?: number;
}

interface Execution {
  ref: WorkflowRef;
  abort: () => void;
  codebuild: LocalCodeBuild;
  done: Promise<void>;
  stopping?: string;
  /** The stack is shutting down: kill, but record nothing (the next start recovers the run). */
  shuttingDown?: boolean;
}

export class LocalStepFunctions implements Workflows {
  private readonly executions = new Map<string, Execution>();
  private readonly buildMachine: StateMachine;
  private readonly exportMachine: StateMachine;

  private readonly sandboxes: SandboxPool;

  constructor(private readonly opts: LocalWorkflowOptions) {
    this.sandboxes = codebuildSandboxes(opts.sandboxPool ?? 1, opts.sandboxDiskBytes);
    const substitutions = { ...LOCAL_SUBSTITUTIONS, Runner: opts.runner ?? 'codebuild' };
    this.buildMachine = new StateMachine(loadDefinition('image-build.asl.json', substitutions) as never);
    this.exportMachine = new StateMachine(loadDefinition('image-export.asl.json', substitutions) as never);
  }

  /** Starts the pool's sandboxes of the builder image, once it is there. */
  warm(image: SandboxImage): void {
    this.sandboxes.fill(image);
  }

  /** Resolves when every execution started so far has ended (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.executions.size) await Promise.all([...this.executions.values()].map((e) => e.done));
  }

  /** The execution of a run, while it runs. */
  isRunning(ref: WorkflowRef): boolean {
    return this.executions.has(executionName(ref));
  }

  private async record(action: string, ref: WorkflowRef, extra: Record<string, unknown> = {}) {
    const file = join(this.opts.dataDir, 'executions.jsonl');
    await mkdir(dirname(file), { recursive: true });
    await appendFile(
      file,
      `${JSON.stringify({ time: new Date().toISOString(), action, ...ref, ...extra })}\n`,
    );
  }

  async start(ref: WorkflowRef): Promise<void> {
    const name = executionName(ref);
    if (this.executions.has(name)) return; // like ExecutionAlreadyExists: a repeat is harmless
    const deps = this.opts.deps();
    const codebuild = new LocalCodeBuild({
      orgId: ref.orgId,
      objectStore: this.opts.objectStore(),
      // bootc-image-builder cannot run here (README): the local exporter makes the disk images.
      projectEnv: { IB_EXPORTER: 'local' },
      readSecret: this.opts.readSecret,
      sandboxes: this.sandboxes,
      logFile: this.opts.logFile(ref),
      timeoutSeconds: deps.settings.buildTimeoutSeconds,
      heartbeatTimeoutSeconds:
        this.opts.heartbeatTimeoutSeconds ?? Math.max(120, deps.settings.heartbeatSeconds * 4),
      onHeartbeat: () => void touch(deps, ref).catch(() => undefined),
      ...(this.opts.builderScript ? { script: this.opts.builderScript } : {}),
      ...(this.opts.exporterScript ? { exportScript: this.opts.exporterScript } : {}),
    });
    // Task overrides get and give JSON; the casts only cross that boundary.
    type Json = never;
    const step =
      ref.kind === 'ImageBuild'
        ? (input: unknown) => runBuildStep(deps, input as BuildStepEvent) as Promise<Json>
        : (input: unknown) =>
            runExportStep(deps, input as ExportStepEvent, this.opts.pushReferrer) as Promise<Json>;
    const job = (input: unknown) => codebuild.startBuildSync(input as StartBuildInput) as Promise<Json>;
    const eks = new LocalEksJob({ codebuild });
    const eksJob = (input: unknown) => eks.runJobSync(input as RunJobInput) as Promise<Json>;
    const machine = ref.kind === 'ImageBuild' ? this.buildMachine : this.exportMachine;
    const run = machine.run(ref as never, {
      overrides: {
        taskResourceLocalHandlers:
          ref.kind === 'ImageBuild'
            ? {
                Prepare: step,
                PlanManifestList: step,
                RecordCompletion: step,
                RecordFailure: step,
                BuildX86_64: job,
                BuildAarch64: job,
                PushManifestList: job,
                RunJobX86_64: eksJob,
                RunJobAarch64: eksJob,
                RunManifestJob: eksJob,
                CollectJobResult: step,
                CollectManifestResult: step,
              }
            : {
                Prepare: step,
                Publish: step,
                RecordFailure: step,
                ConvertX86_64: job,
                ConvertAarch64: job,
                RunJobX86_64: eksJob,
                RunJobAarch64: eksJob,
                CollectJobResult: step,
              },
      },
      context: {
        Execution: { Id: name, Name: name, Input: ref as Json, StartTime: new Date().toISOString() },
      },
      noThrowOnAbort: true,
    });
    const execution: Execution = { ref, abort: run.abort, codebuild, done: Promise.resolve() };
    execution.done = run.result
      .then(
        async () => {
          if (execution.stopping !== undefined && !execution.shuttingDown) {
            await step({ step: 'ended', ref, status: 'ABORTED' });
          }
        },
        async (err: Error) => {
          // A failure the definition did not catch (it catches its own): record it as the status rule would.
          deps.logger.error('local execution failed', { name, error: err.message });
          await step({
            step: 'ended',
            ref,
            status: err.name === 'ExecutionTimeoutError' ? 'TIMED_OUT' : 'FAILED',
            cause: err.message,
          }).catch(() => undefined);
        },
      )
      .catch((err: Error) =>
        deps.logger.error('recording the end of a local execution failed', { name, error: err.message }),
      )
      .finally(() => this.executions.delete(name));
    this.executions.set(name, execution);
    await this.record('start', ref);
  }

  /** Stack shutdown: builder processes die with it; recoverAfterRestart settles their runs later. */
  async shutdown(): Promise<void> {
    for (const execution of this.executions.values()) {
      execution.shuttingDown = true;
      execution.stopping = 'local stack shutdown';
      execution.codebuild.cancel();
      execution.abort();
    }
    await Promise.race([this.idle(), new Promise((r) => setTimeout(r, 10_000))]);
    await this.sandboxes.close();
  }

  async stop(ref: WorkflowRef, reason: string): Promise<void> {
    const execution = this.executions.get(executionName(ref));
    await this.record('stop', ref, { reason, running: Boolean(execution) });
    if (!execution) return;
    execution.stopping = reason;
    execution.codebuild.cancel();
    execution.abort();
  }
}
