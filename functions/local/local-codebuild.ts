// The local stand-in for CodeBuild's StartBuild.sync. It does what CodeBuild does around a build and
// nothing of the build itself: resolves the environment (SECRETS_MANAGER references from the local
// secret store, only within the run's org), starts the run's own sandbox of the builder image
// (functions/local/sandbox.ts) in which functions/builder/buildspec.yml executes with CodeBuild's
// semantics (functions/builder/codebuild-run.sh), streams its output to the run's log, plays CodeBuild's
// timeout and the heartbeat watchdog, and answers with the exported variables in CodeBuild's result shape.
// Cancel stops the sandbox, and with it everything the run started.
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { IMAGE_BUILDSPEC, loadBuildspec } from '../builder/files.js';
import type { EnvVar } from '../commons/domain/build-plan.js';
import { BuilderImageError, ensureBuilderImage } from './builder-image.js';
import { objectGate } from './object-gate.js';
import {
  type Endpoint,
  SANDBOX_RESULT_DIR,
  SANDBOX_SRC_DIR,
  type Sandbox,
  type SandboxImage,
  SandboxPool,
  type SandboxRun,
  sandboxUnavailable,
} from './sandbox.js';

export interface StartBuildInput {
  ProjectName: string;
  EnvironmentVariablesOverride: EnvVar[];
  LogsConfigOverride?: { CloudWatchLogs?: { StreamName?: string } };
  TimeoutInMinutesOverride?: number;
}

export interface CodeBuildResult {
  Build: { BuildStatus: 'SUCCEEDED'; ExportedEnvironmentVariables: { Name: string; Value: string }[] };
}

/** Thrown like Step Functions' .sync integration reports a failed build. */
export class BuildFailedError extends Error {
  override name = 'States.TaskFailed';
}

/** The local object store as the gate in front of it needs it (functions/local/object-gate.ts). */
export interface LocalObjectEndpoint {
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  region: string;
}

export interface LocalCodeBuildOptions {
  /** The run's org: a secret reference outside it is refused. */
  orgId: string;
  objectStore: LocalObjectEndpoint;
  readSecret(ref: string): Promise<string>;
  /** Where the run's output goes (the same file the log API reads). */
  logFile: string;
  timeoutSeconds: number;
  /** No output for this long (heartbeats included) → killed as timed out. */
  heartbeatTimeoutSeconds: number;
  onHeartbeat?: () => void;
  /** Variables every run of this deployment gets under its own (locally IB_EXPORTER=local). */
  projectEnv?: Record<string, string>;
  /** Replaces build-image.sh in the image (tests of the workflow's failure paths). */
  script?: string;
  /** Replaces export-image.sh in the image. */
  exportScript?: string;
  /** Where the run's sandbox comes from (started ahead of time when it can be); default: started then. */
  sandboxes?: SandboxPool;
}

/** The registry host:ports a run's variables name: the only places its sandbox can connect to. */
export function runEndpoints(env: Record<string, string>): Endpoint[] {
  const hosts = new Set<string>();
  for (const name of ['IB_SOURCE_REGISTRY', 'IB_DEST_REGISTRY']) if (env[name]) hosts.add(env[name]);
  const refs = [
    env.IB_PUSH_REF,
    env.IB_IMAGE_REF,
    env.IB_CACHE_REPO,
    ...(env.IB_MANIFEST_SOURCES ?? '').split(' '),
  ];
  for (const ref of refs) {
    const first = ref?.split('/')[0];
    if (
      ref?.includes('/') &&
      first &&
      (first.includes('.') || first.includes(':') || first === 'localhost')
    ) {
      hosts.add(first);
    }
  }
  const endpoints: Endpoint[] = [];
  for (const hostPort of hosts) {
    const m = /^([A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(hostPort);
    if (!m) continue;
    const host = m[1] as string;
    // Without a port: https, or plain http where TLS is off.
    const ports = m[2] ? [Number(m[2])] : [443, 80];
    for (const port of ports) endpoints.push({ host, port });
  }
  return endpoints;
}

const IMAGE_SCRIPTS = '/usr/local/lib/imagebuilder';

/** What one run may write locally (its sandbox's disk), unless the stack says otherwise: 20 GiB. */
export const SANDBOX_DISK_BYTES = 20 * 1024 ** 3;

/** Sandboxes that run the buildspec, `size` of them started ahead of their runs. */
export function codebuildSandboxes(size: number, diskBytes = SANDBOX_DISK_BYTES): SandboxPool {
  return new SandboxPool({
    size,
    diskBytes,
    workRoot: tmpdir(),
    command: ['ib-codebuild-run', IMAGE_BUILDSPEC, `${SANDBOX_RESULT_DIR}/exported.env`],
  });
}
/** The buildspec's own secrets-manager section, read once per process (the file is the image's). */
let buildspecSecrets: Record<string, string> | undefined;

export class LocalCodeBuild {
  private readonly running = new Map<Sandbox, NodeJS.WritableStream>();
  private canceled = false;

  constructor(private readonly opts: LocalCodeBuildOptions) {}

  /** Stops every sandbox this run started (cancel). */
  cancel(): void {
    if (this.canceled) return;
    this.canceled = true;
    for (const [sandbox, log] of this.running) {
      log.write('[local-codebuild] stopped: the run was canceled\n');
      void sandbox.stop();
    }
  }

  /** SECRETS_MANAGER references resolve only inside the run's own org (`<org>/…` in the local store). */
  private async secret(ref: string): Promise<string> {
    if (!ref.startsWith(`${encodeURIComponent(this.opts.orgId)}/`)) {
      throw new BuildFailedError(`the secret reference is outside the run's org: refused`);
    }
    return this.opts.readSecret(ref);
  }

  async startBuildSync(input: StartBuildInput): Promise<CodeBuildResult> {
    if (this.canceled) throw new BuildFailedError('canceled');
    const log = await openLog(this.opts.logFile);
    try {
      const unavailable = await sandboxUnavailable();
      if (unavailable) {
        log.write(`IB_ERROR: ${unavailable}\n`);
        throw new BuildFailedError(unavailable);
      }
      const image = await ensureBuilderImage((line) => log.write(`${line}\n`)).catch((err: Error) => {
        const message = err instanceof BuilderImageError ? err.message : `builder image: ${err.message}`;
        log.write(`IB_ERROR: ${message}\n`);
        throw new BuildFailedError(message);
      });
      const env: Record<string, string> = { ...this.opts.projectEnv };
      for (const v of input.EnvironmentVariablesOverride) {
        env[v.Name] = v.Type === 'SECRETS_MANAGER' ? await this.secret(v.Value) : v.Value;
      }
      // The buildspec's own secrets-manager section, resolved like CodeBuild would (with the run's org).
      buildspecSecrets ??= loadBuildspec().env?.['secrets-manager'] ?? {};
      for (const [name, ref] of Object.entries(buildspecSecrets)) {
        env[name] ??= await this.secret(ref);
      }
      env.CODEBUILD_SRC_DIR = SANDBOX_SRC_DIR;
      env.CODEBUILD_BUILD_ID = `${input.ProjectName}:${randomUUID()}`;
      return await this.runSandbox(image, env, log);
    } finally {
      await closeLog(log);
    }
  }

  private async runSandbox(
    image: SandboxImage,
    env: Record<string, string>,
    log: NodeJS.WritableStream,
  ): Promise<CodeBuildResult> {
    const objects = new URL(this.opts.objectStore.endpoint);
    const overlays: Record<string, string> = {};
    if (this.opts.script) overlays[`${IMAGE_SCRIPTS}/build-image.sh`] = this.opts.script;
    if (this.opts.exportScript) overlays[`${IMAGE_SCRIPTS}/export-image.sh`] = this.opts.exportScript;
    const sandbox = (this.opts.sandboxes ?? codebuildSandboxes(0)).take(image, overlays);
    log.write(`[local-codebuild] ${env.CODEBUILD_BUILD_ID} runs in sandbox ${sandbox.container}\n`);
    const run: SandboxRun = {
      env,
      endpoints: runEndpoints(env),
      served: [
        {
          endpoint: { host: objects.hostname, port: Number(objects.port) },
          server: objectGate(this.opts.objectStore),
        },
      ],
    };
    this.running.set(sandbox, log);
    try {
      if (this.canceled) throw new BuildFailedError('canceled');
      const code = await this.watch(sandbox, run, log);
      const exported = await readExported(join(sandbox.resultDir, 'exported.env'));
      if (code !== 0) throw new BuildFailedError(`the build failed (exit status ${code})`);
      return { Build: { BuildStatus: 'SUCCEEDED', ExportedEnvironmentVariables: exported } };
    } finally {
      this.running.delete(sandbox);
      if (this.opts.sandboxes) this.opts.sandboxes.release(sandbox);
      else await sandbox.remove();
    }
  }

  /** Runs the sandbox to its end under CodeBuild's timeout and the heartbeat watchdog. */
  private async watch(sandbox: Sandbox, run: SandboxRun, log: NodeJS.WritableStream): Promise<number> {
    let lastOutput = Date.now();
    let verdict: string | undefined;
    await sandbox.run(run, (chunk) => {
      lastOutput = Date.now();
      log.write(chunk);
      if (chunk.includes('[heartbeat]')) this.opts.onHeartbeat?.();
    });
    const started = Date.now();
    const watchdog = setInterval(() => {
      const silentFor = (Date.now() - lastOutput) / 1000;
      if ((Date.now() - started) / 1000 > this.opts.timeoutSeconds) {
        verdict = `IB_ERROR: timed out: the build did not finish within ${this.opts.timeoutSeconds} s\n`;
      } else if (silentFor > this.opts.heartbeatTimeoutSeconds) {
        verdict = `IB_ERROR: timed out: no heartbeat from the builder for ${Math.round(silentFor)} s\n`;
      }
      if (verdict) {
        clearInterval(watchdog);
        void sandbox.stop();
      }
    }, 250);
    const { code, signal } = await sandbox.ended;
    clearInterval(watchdog);
    if (verdict) log.write(verdict);
    return verdict || this.canceled ? 143 : (code ?? (signal ? 143 : 1));
  }
}

/** ib-codebuild-run's exported variables: `NAME=<base64>` lines; empty values are not exported. */
async function readExported(file: string): Promise<{ Name: string; Value: string }[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const out: { Name: string; Value: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=([A-Za-z0-9+/=]*)$/.exec(line);
    if (!m) continue;
    const value = Buffer.from(m[2] as string, 'base64').toString('utf8');
    if (value) out.push({ Name: m[1] as string, Value: value });
  }
  return out;
}

async function openLog(file: string) {
  await mkdir(dirname(file), { recursive: true });
  return createWriteStream(file, { flags: 'a' });
}

const closeLog = (s: ReturnType<typeof createWriteStream>) => new Promise<void>((r) => s.end(() => r()));
