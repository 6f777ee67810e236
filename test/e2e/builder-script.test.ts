// End-to-end test of functions/builder/build-image.sh, the one builder script the cloud (CodeBuild/EKS)
// and the local runner both run: real buildah builds against two real registries on 127.0.0.1
// (the source without auth, the destination with htpasswd auth), the fixture base image as FROM.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtureBaseImage, hasBuildah } from '../fixtures/base-image.js';
import {
  type Credentials,
  hasRegistry,
  pushImage,
  registryDigest,
  registryManifest,
  startRegistry,
  type TestRegistry,
} from '../fixtures/registry.js';

const exec = promisify(execFile);
const SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../functions/builder/build-image.sh');
const RUN_ID = randomBytes(4).toString('hex');
const LABEL = `ib.test.builder-script=${RUN_ID}`;
const DEST_CREDS: Credentials = { username: 'robot', password: `S3cret-${randomBytes(6).toString('hex')}` };

async function missingTools(): Promise<string> {
  const missing: string[] = [];
  if (!(await hasBuildah())) missing.push('buildah');
  if (!(await hasRegistry())) missing.push('docker-registry');
  try {
    await exec('skopeo', ['--version']);
  } catch {
    missing.push('skopeo');
  }
  return missing.length ? `${missing.join(', ')} not installed` : '';
}

const skipReason = await missingTools();

interface ScriptRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  ms: number;
}

/** Starts the script with a clean environment (only PATH, HOME and the given variables). */
function startScript(env: Record<string, string>): {
  child: ChildProcess;
  done: Promise<ScriptRun>;
  out: () => string;
} {
  const started = Date.now();
  const chunks: string[] = [];
  const child = spawn('bash', [SCRIPT], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, as the local runner starts it
  });
  child.stdout?.on('data', (c: Buffer) => chunks.push(c.toString()));
  child.stderr?.on('data', (c: Buffer) => chunks.push(c.toString()));
  const done = new Promise<ScriptRun>((resolvePromise) => {
    child.on('close', (code, signal) =>
      resolvePromise({ code, signal, out: chunks.join(''), ms: Date.now() - started }),
    );
  });
  return { child, done, out: () => chunks.join('') };
}

const runScript = (env: Record<string, string>) => startScript(env).done;

const lastLine = (out: string) => out.trimEnd().split('\n').at(-1) ?? '';

async function buildah(...args: string[]): Promise<string> {
  const { stdout } = await exec('buildah', args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

describe.skipIf(skipReason !== '')(
  `builder script e2e${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let source: TestRegistry;
    let dest: TestRegistry;
    let work: string;
    let baseRef: string;
    let baseId: string;
    let sourceRef: string;
    let appRef: string;
    let amdDigest = '';
    let firstBuildMs = 0;

    const contextDir = (name: string) => join(work, name);
    const destEnv = (): Record<string, string> => ({
      IB_DEST_REGISTRY: dest.host,
      IB_DEST_USERNAME: DEST_CREDS.username,
      IB_DEST_PASSWORD: DEST_CREDS.password,
      IB_DEST_TLS_VERIFY: 'false',
    });
    const buildEnv = (context: string, pushRef: string, extra: Record<string, string> = {}) => ({
      IB_CONTEXT_DIR: contextDir(context),
      IB_ARCH: 'x86_64',
      IB_PUSH_REF: pushRef,
      IB_DIGEST_FILE: join(work, `${context}.digest`),
      IB_SOURCE_REGISTRY: source.host,
      IB_SOURCE_TLS_VERIFY: 'false',
      IB_HEARTBEAT_SECONDS: '1',
      ...destEnv(),
      ...extra,
    });

    async function writeContext(name: string, containerfile: string[], files: Record<string, string> = {}) {
      const dir = contextDir(name);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'Containerfile'), `${containerfile.join('\n')}\n`);
      for (const [file, content] of Object.entries(files)) await writeFile(join(dir, file), content);
    }

    /** Local images of this run (labelled), without the names other tests may share. */
    async function runImageIds(): Promise<string[]> {
      const out = await buildah('images', '-a', '-q', '--no-trunc', '--filter', `label=${LABEL}`);
      return [...new Set(out.split('\n').filter(Boolean))];
    }

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'ib-builder-e2e-'));
      baseRef = await buildFixtureBaseImage(`localhost/ib-builder-e2e-base-${RUN_ID}:1`);
      baseId = (await buildah('inspect', '--type', 'image', '--format', '{{.FromImageID}}', baseRef)).trim();
      [source, dest] = await Promise.all([startRegistry(), startRegistry({ auth: DEST_CREDS })]);
      sourceRef = `${source.host}/fixture/base:1`;
      await pushImage(baseRef, sourceRef);
      appRef = `${dest.host}/edge/os`;
      await writeContext(
        'app',
        [
          `FROM ${sourceRef}`,
          `LABEL ${LABEL}`,
          'RUN echo executing-the-run-step && sleep 2 && echo built-by-run > /built.txt',
          'COPY hello.txt /etc/hello.txt',
        ],
        { 'hello.txt': 'hello from the context\n' },
      );
    });

    /** Removes this run's local images (removing one may take its dangling parents along). */
    async function removeRunImages(): Promise<void> {
      for (const id of await runImageIds()) await buildah('rmi', '-f', id).catch(() => undefined);
    }

    afterAll(async () => {
      try {
        // containers left by a killed build (buildah cannot clean up when terminated) and read-backs
        const containers = (JSON.parse((await buildah('containers', '--json').catch(() => '')) || 'null') ??
          []) as Array<{ id: string; imageid: string }>;
        const ours = new Set([baseId, ...(await runImageIds())].map((id) => id?.replace(/^sha256:/, '')));
        for (const c of containers) {
          if (ours.has(c.imageid)) await buildah('rm', c.id).catch(() => undefined);
        }
        await removeRunImages();
        if (baseId) await buildah('rmi', '-f', baseId).catch(() => undefined);
      } finally {
        await Promise.all([source?.stop(), dest?.stop()]);
        if (work) await rm(work, { recursive: true, force: true });
      }
    });

    it('builds, pushes with auth, records the registry digest, never logs the password', async () => {
      const pushRef = `${appRef}:x86_64`;
      const run = await runScript(buildEnv('app', pushRef, { IB_CACHE_REPO: `${dest.host}/edge/os-cache` }));
      expect(run.code, run.out).toBe(0);
      firstBuildMs = run.ms;
      expect(run.out).toContain('\nexecuting-the-run-step\n');
      amdDigest = (await readFile(join(work, 'app.digest'), 'utf8')).trim();
      expect(amdDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(amdDigest).toBe(await registryDigest(pushRef, DEST_CREDS));
      expect(lastLine(run.out)).toBe(`IB_IMAGE: ${pushRef}@${amdDigest}`);
      expect(run.out).not.toContain(DEST_CREDS.password);
      expect(run.out).toMatch(/^\[heartbeat\] \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/m);
      expect(run.out).toContain(`Pushing cache ${dest.host}/edge/os-cache`);

      // read the image back from the registry: the RUN and the COPY are in it
      const container = (
        await buildah(
          'from',
          '--pull=always',
          '--quiet',
          '--tls-verify=false',
          '--creds',
          `${DEST_CREDS.username}:${DEST_CREDS.password}`,
          `docker://${pushRef}`,
        )
      ).trim();
      try {
        const content = await buildah(
          'run',
          '--isolation',
          'chroot',
          container,
          'cat',
          '/built.txt',
          '/etc/hello.txt',
        );
        expect(content).toBe('built-by-run\nhello from the context\n');
      } finally {
        await buildah('rm', container).catch(() => undefined);
      }
    });

    it('rebuilds from the layer cache, locally and from the cache repository', async () => {
      const pushRef = `${appRef}:x86_64`;
      const env = buildEnv('app', pushRef, { IB_CACHE_REPO: `${dest.host}/edge/os-cache` });
      const cached = await runScript(env);
      expect(cached.code, cached.out).toBe(0);
      // LABEL, RUN and COPY
      expect(cached.out.match(/^--> Using cache [0-9a-f]{64}$/gm)?.length, cached.out).toBe(3);
      expect(cached.out).not.toContain('\nexecuting-the-run-step');
      expect(cached.ms).toBeLessThan(firstBuildMs);
      expect((await readFile(join(work, 'app.digest'), 'utf8')).trim()).toBe(amdDigest);

      // a fresh machine (CodeBuild): no local layers, the cache comes from the registry
      await removeRunImages();
      expect(await runImageIds()).toEqual([]);
      const remote = await runScript(env);
      expect(remote.code, remote.out).toBe(0);
      expect(remote.out.match(/^--> Cache pulled from remote /gm)?.length, remote.out).toBe(3);
      expect(remote.out).not.toContain('\nexecuting-the-run-step');
      expect((await readFile(join(work, 'app.digest'), 'utf8')).trim()).toBe(amdDigest);
      console.info(
        `builder e2e: first build ${firstBuildMs} ms, cached ${cached.ms} ms, remote cache ${remote.ms} ms`,
      );
    });

    it('pushes a multi-arch manifest list of the per-arch images', async () => {
      // a second architecture without emulation: a one-file arm64 image (no RUN) pushed beside the x86_64 one
      await writeFile(join(work, 'arm-marker'), 'arm64\n');
      const c = (await buildah('from', 'scratch')).trim();
      let armId: string;
      try {
        await buildah('config', '--arch', 'arm64', '--os', 'linux', '--label', LABEL, c);
        await buildah('copy', c, join(work, 'arm-marker'), '/marker');
        armId = (await buildah('commit', '--quiet', c)).trim();
      } finally {
        await buildah('rm', c).catch(() => undefined);
      }
      const armDigest = await pushImage(armId, `${appRef}:aarch64`, DEST_CREDS);
      const listRef = `${appRef}:v1`;
      const run = await runScript({
        IB_MODE: 'manifest',
        IB_MANIFEST_SOURCES: `${appRef}@${amdDigest} ${appRef}@${armDigest}`,
        IB_PUSH_REF: listRef,
        IB_DIGEST_FILE: join(work, 'list.digest'),
        IB_HEARTBEAT_SECONDS: '1',
        ...destEnv(),
      });
      expect(run.code, run.out).toBe(0);
      expect(run.out).not.toContain(DEST_CREDS.password);
      const listDigest = (await readFile(join(work, 'list.digest'), 'utf8')).trim();
      expect(listDigest).toBe(await registryDigest(listRef, DEST_CREDS));
      const list = JSON.parse(await registryManifest(listRef, DEST_CREDS)) as {
        manifests: Array<{ digest: string; platform: { architecture: string; os: string } }>;
      };
      expect(
        list.manifests.map((m) => `${m.platform.os}/${m.platform.architecture} ${m.digest}`).sort(),
      ).toEqual([`linux/amd64 ${amdDigest}`, `linux/arm64 ${armDigest}`]);
      expect(await buildah('images', '-q', '--filter', 'reference=localhost/ib-manifest-*')).toBe('');
    });

    it('fails with code 11 and names the registry when the destination password is wrong', async () => {
      const wrong = `Wr0ng-${RUN_ID}`;
      const run = await runScript(
        buildEnv('app', `${appRef}:wrong`, { IB_DEST_PASSWORD: wrong, IB_HEARTBEAT_SECONDS: '30' }),
      );
      expect(run.code, run.out).toBe(11);
      expect(lastLine(run.out)).toMatch(/^IB_ERROR: /);
      expect(lastLine(run.out)).toContain(`destination registry ${dest.host} rejected the credentials`);
      expect(run.out).not.toContain(wrong);
    });

    it('fails with code 10 for the source login, 10 for an unreachable registry, 2 for bad input', async () => {
      const wrongSource = await runScript(
        buildEnv('app', `${appRef}:x`, {
          IB_SOURCE_REGISTRY: dest.host,
          IB_SOURCE_USERNAME: 'robot',
          IB_SOURCE_PASSWORD: 'nope-nope',
        }),
      );
      expect(wrongSource.code, wrongSource.out).toBe(10);
      expect(lastLine(wrongSource.out)).toContain(`source registry ${dest.host} rejected the credentials`);

      await writeFile(join(work, 'password'), 'whatever\n');
      const unreachable = await runScript(
        buildEnv('app', `${appRef}:x`, {
          IB_SOURCE_REGISTRY: '127.0.0.1:9',
          IB_SOURCE_USERNAME: 'robot',
          IB_SOURCE_PASSWORD_FILE: join(work, 'password'),
        }),
      );
      expect(unreachable.code, unreachable.out).toBe(10);
      expect(lastLine(unreachable.out)).toContain('source registry 127.0.0.1:9 cannot be reached');

      const bad = await runScript(buildEnv('app', `${appRef}:x`, { IB_ARCH: 'sparc' }));
      expect(bad.code).toBe(2);
      expect(lastLine(bad.out)).toBe("IB_ERROR: bad input: IB_ARCH must be x86_64 or aarch64, not 'sparc'");
      // A relative CA bundle path is read from the build context (as the build plan names it).
      const relativeCa = await runScript(
        buildEnv('app', `${appRef}:x`, {
          IB_DEST_REGISTRY: dest.host,
          IB_DEST_CA_FILE: 'Containerfile',
        }),
      );
      expect(relativeCa.code).toBe(2);
      expect(lastLine(relativeCa.out)).toMatch(
        /IB_DEST_CA_FILE holds no PEM certificate: '\/.*\/Containerfile'/,
      );
      // The manifest list job too (CodeBuild runs it with the context unpacked, like the builds).
      const relativeCaManifest = await runScript(
        buildEnv('app', `${appRef}:x`, {
          IB_MODE: 'manifest',
          IB_MANIFEST_SOURCES: `${appRef}@sha256:${'a'.repeat(64)}`,
          IB_DEST_REGISTRY: dest.host,
          IB_DEST_CA_FILE: 'Containerfile',
        }),
      );
      expect(relativeCaManifest.code).toBe(2);
      expect(lastLine(relativeCaManifest.out)).toMatch(
        /IB_DEST_CA_FILE holds no PEM certificate: '\/.*\/Containerfile'/,
      );
      const injected = await runScript(buildEnv('app', '--rm ; touch /tmp/pwned'));
      expect(injected.code).toBe(2);
    });

    it('fails with code 20 when a RUN step fails', async () => {
      await writeContext('broken', [
        `FROM ${sourceRef}`,
        `LABEL ${LABEL}`,
        'RUN echo about to fail && exit 3',
      ]);
      const run = await runScript(buildEnv('broken', `${appRef}:broken`));
      expect(run.code, run.out).toBe(20);
      expect(lastLine(run.out)).toMatch(/^IB_ERROR: build failed: .*exit status 3/);
    });

    it.each([
      ['its process group is killed', 'group'],
      ['only the script is killed', 'script'],
    ])('stops everything and exits 143 when %s', async (_, target) => {
      const marker = `ib-kill-${target}-${RUN_ID}`;
      await writeContext(`slow-${target}`, [
        `FROM ${sourceRef}`,
        `LABEL ${LABEL}`,
        `RUN echo ${marker} && sleep 60`,
      ]);
      const { child, done, out } = startScript(buildEnv(`slow-${target}`, `${appRef}:slow`));
      const deadline = Date.now() + 30_000;
      while (!(out().includes(marker) && out().includes('[heartbeat]')) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(out()).toContain('[heartbeat]');
      const pgid = child.pid!;
      const killedAt = Date.now();
      process.kill(target === 'group' ? -pgid : pgid, 'SIGTERM');
      const run = await done;
      const stopMs = Date.now() - killedAt;
      console.info(`builder e2e: ${target} kill → exit in ${stopMs} ms`);
      expect(stopMs).toBeLessThan(5_000);
      expect(run.code, run.out).toBe(143);
      expect(lastLine(run.out)).toMatch(/^IB_ERROR: canceled/);
      // nothing of that run is left running (zombies wait for init to reap them): no process in its
      // group, no RUN process, no heartbeat
      await new Promise((r) => setTimeout(r, 300));
      const { stdout } = await exec('ps', ['-e', '-o', 'pid=,pgid=,stat=,args=']);
      const left = stdout
        .split('\n')
        .filter((l) => l.trim())
        .filter((l) => {
          const [, g, stat] = l.trim().split(/\s+/);
          if (stat?.startsWith('Z')) return false;
          return Number(g) === pgid || (l.includes(marker) && !l.includes('ps -e'));
        });
      expect(left).toEqual([]);
    });
  },
);
