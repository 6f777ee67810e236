// The local stand-in for CodeBuild's StartBuild.sync: resolves the environment (secret references read
// from the local secret store), downloads the build context from object storage as the buildspec does,
// runs the same builder script (functions/builder/build-image.sh) with buildah on this machine in its
// own process group, appends its output to the run's log, and answers in CodeBuild's result shape.
// It also plays CodeBuild's own timeout and watches heartbeats; cancel kills the process group.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTEXT_ARCHIVE, type EnvVar } from '../commons/domain/build-plan.js';
import type { ObjectStore } from '../commons/ports.js';

const BUILDER_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../builder');
export const BUILDER_SCRIPT = join(BUILDER_DIR, 'build-image.sh');
export const EXPORTER_SCRIPT = join(BUILDER_DIR, 'export-image.sh');

export interface StartBuildInput {
  ProjectName: string;
  EnvironmentVariablesOverride: EnvVar[];
  LogsConfigOverride?: { CloudWatchLogs?: { StreamName?: string } };
  TimeoutInMinutesOverride?: number;
}

export interface CodeBuildResult {
  Build: { BuildStatus: 'SUCCEEDED'; ExportedEnvironmentVariables: { Name: string; Value: string }[] };
}

/** The script's `IB_<NAME>: value` result lines (the buildspec exports the same values). */
function resultLines(log: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of log.matchAll(/^IB_([A-Z0-9_]+): (.*)$/gm)) out[`IB_${m[1]}`] = (m[2] as string).trim();
  return out;
}

/** Thrown like Step Functions' .sync integration reports a failed build. */
export class BuildFailedError extends Error {
  override name = 'States.TaskFailed';
}

export interface LocalCodeBuildOptions {
  objects: ObjectStore;
  readSecret(ref: string): Promise<string>;
  /** Where the run's output goes (the same file the log API reads). */
  logFile: string;
  timeoutSeconds: number;
  /** No output for this long (heartbeats included) → killed as timed out. */
  heartbeatTimeoutSeconds: number;
  onHeartbeat?: () => void;
  /** Overrides the builder script (tests of the workflow's failure paths). */
  script?: string;
  /** Overrides the exporter script. */
  exportScript?: string;
}

const hasCommand = (cmd: string) =>
  spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

export class LocalCodeBuild {
  private readonly running = new Set<ChildProcess>();
  private canceled = false;

  constructor(private readonly opts: LocalCodeBuildOptions) {}

  /** Kills every builder process group this run started (cancel). */
  cancel(): void {
    this.canceled = true;
    for (const child of this.running) killGroup(child);
  }

  async startBuildSync(input: StartBuildInput): Promise<CodeBuildResult> {
    if (this.canceled) throw new BuildFailedError('canceled');
    const log = await openLog(this.opts.logFile);
    const env: Record<string, string> = {};
    for (const v of input.EnvironmentVariablesOverride) {
      env[v.Name] = v.Type === 'SECRETS_MANAGER' ? await this.opts.readSecret(v.Value) : v.Value;
    }
    const isExport = env.IB_JOB === 'export';
    const script = isExport
      ? (this.opts.exportScript ?? EXPORTER_SCRIPT)
      : (this.opts.script ?? BUILDER_SCRIPT);
    const needs = isExport ? ['skopeo', 'qemu-img', 'sfdisk', 'mkfs.ext4'] : ['buildah'];
    const custom = isExport ? this.opts.exportScript : this.opts.script;
    const missing = custom ? [] : needs.filter((cmd) => !hasCommand(cmd));
    if (missing.length) {
      log.write(
        `IB_ERROR: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not installed on this machine; install ${
          isExport ? 'skopeo, qemu-utils, fdisk and e2fsprogs' : 'buildah'
        } (Debian/Ubuntu: apt-get install …) and retry\n`,
      );
      await closeLog(log);
      throw new BuildFailedError(`${missing.join(', ')} not installed`);
    }
    const work = await mkdtemp(join(tmpdir(), 'ib-codebuild-'));
    try {
      if (isExport) return await this.runExport(script, env, work, log);
      const contextDir = join(work, 'ctx');
      await this.downloadContext(env.IB_CONTEXT_PREFIX ?? '', contextDir);
      for (const side of ['SOURCE', 'DEST']) {
        const ca = env[`IB_${side}_CA_FILE`];
        if (ca && !isAbsolute(ca)) env[`IB_${side}_CA_FILE`] = join(contextDir, ca);
      }
      const digestFile = join(work, 'digest');
      const { code } = await this.run(
        script,
        { ...env, IB_CONTEXT_DIR: contextDir, IB_DIGEST_FILE: digestFile },
        log,
      );
      if (code !== 0) throw new BuildFailedError(`the builder exited with code ${code}`);
      const digest = (await readFile(digestFile, 'utf8').catch(() => '')).trim();
      return {
        Build: {
          BuildStatus: 'SUCCEEDED',
          ExportedEnvironmentVariables: [{ Name: 'IB_DIGEST', Value: digest }],
        },
      };
    } finally {
      await closeLog(log);
      await rm(work, { recursive: true, force: true });
    }
  }

  /**
   * The exporter job: the local exporter (bootc-image-builder cannot run here), then the disk image to
   * object storage with a multipart upload, as the buildspec's `aws s3 cp` does in the cloud.
   */
  private async runExport(
    script: string,
    env: Record<string, string>,
    work: string,
    log: NodeJS.WritableStream,
  ) {
    const output = join(work, 'disk');
    const { code, text } = await this.run(
      script,
      { ...env, IB_EXPORTER: 'local', IB_OUTPUT_FILE: output, TMPDIR: work },
      log,
    );
    if (code !== 0) throw new BuildFailedError(`the exporter exited with code ${code}`);
    const reported = resultLines(text);
    const uploaded = await this.opts.objects.putFile(
      env.IB_ARTIFACT_KEY ?? '',
      output,
      env.IB_ARTIFACT_CONTENT_TYPE ?? 'application/octet-stream',
    );
    if (reported.IB_SHA256 && reported.IB_SHA256 !== uploaded.sha256) {
      log.write('IB_ERROR: the disk image changed between the exporter and the upload (SHA-256 mismatch)\n');
      throw new BuildFailedError('checksum mismatch');
    }
    log.write(
      `[local-codebuild] uploaded ${uploaded.size} bytes to s3://${env.IB_ARTIFACT_BUCKET}/${env.IB_ARTIFACT_KEY}\n`,
    );
    return {
      Build: {
        BuildStatus: 'SUCCEEDED' as const,
        ExportedEnvironmentVariables: [
          { Name: 'IB_SHA256', Value: uploaded.sha256 },
          { Name: 'IB_SIZE', Value: String(uploaded.size) },
          ...(reported.IB_AMI_ID ? [{ Name: 'IB_AMI_ID', Value: reported.IB_AMI_ID }] : []),
        ],
      },
    };
  }

  /** The build context archive, fetched and unpacked as the buildspec does (`aws s3 cp … | tar -x`). */
  private async downloadContext(prefix: string, dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const archive = await this.opts.objects.get(`${prefix}${CONTEXT_ARCHIVE}`);
    if (!archive) throw new Error(`no build context at ${prefix}${CONTEXT_ARCHIVE}`);
    await new Promise<void>((resolvePromise, reject) => {
      const tar = spawn('tar', ['-x', '-C', dir], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      tar.stderr?.on('data', (c: Buffer) => {
        err += c.toString('utf8');
      });
      tar.on('error', reject);
      tar.on('close', (code) => (code === 0 ? resolvePromise() : reject(new Error(`tar: ${err.trim()}`))));
      tar.stdin?.end(archive);
    });
  }

  private run(
    script: string,
    env: Record<string, string>,
    log: NodeJS.WritableStream,
  ): Promise<{ code: number; text: string }> {
    // Canceled while the context was being fetched: nothing may start any more.
    if (this.canceled) return Promise.resolve({ code: 143, text: '' });
    return new Promise((resolvePromise, reject) => {
      let text = '';
      const child = spawn('bash', [script], {
        detached: true, // its own process group: cancel and timeouts kill everything it started
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
      });
      this.running.add(child);
      let lastOutput = Date.now();
      let verdict: string | undefined;
      const onData = (chunk: Buffer) => {
        lastOutput = Date.now();
        log.write(chunk);
        text = (text + chunk.toString('utf8')).slice(-65536); // the result lines come last
        if (chunk.includes('[heartbeat]')) this.opts.onHeartbeat?.();
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
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
          killGroup(child);
        }
      }, 250);
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearInterval(watchdog);
        this.running.delete(child);
        if (verdict) log.write(verdict);
        else if (this.canceled) log.write('[local-codebuild] stopped: the run was canceled\n');
        resolvePromise({ code: code ?? (signal ? 128 + 15 : 1), text });
      });
    });
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return;
  }
  setTimeout(() => {
    try {
      if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 5000).unref();
}

async function openLog(file: string) {
  await mkdir(dirname(file), { recursive: true });
  return createWriteStream(file, { flags: 'a' });
}

const closeLog = (s: ReturnType<typeof createWriteStream>) => new Promise<void>((r) => s.end(() => r()));
