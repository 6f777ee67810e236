// End-to-end test of functions/builder/export-image.sh, the one exporter script the cloud (CodeBuild/EKS,
// bootc-image-builder through podman) and the local runner both run.
//  - Local exporter (IB_EXPORTER=local), for real: the fixture base image in a registry with htpasswd auth
//    → qcow2 / raw / vmdk / vhd; the disk is checked with qemu-img, sfdisk and debugfs (no mounts).
//  - A hand-made image whose layers hold whiteouts, an opaque directory and symlinks pointing out of the
//    tree with files written "through" them in the next layer: the result follows OCI layer semantics and
//    nothing is written outside the unpacked tree.
//  - Cloud mode (IB_EXPORTER=bib) with a stand-in `podman` on PATH (bib cannot run here): the argv it
//    runs is exactly bibArguments(), for every format the file is picked up where artifactFor() says.
//  - Errors (exit 2, 10, 50) and termination (143, nothing left behind).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactFor, bibArguments } from '../../functions/commons/domain/export-plan.js';
import { EXPORT_FORMATS, type ExportFormat } from '../../functions/commons/domain/types.js';
import { buildFixtureBaseImage, hasBuildah, removeImages } from '../fixtures/base-image.js';
import {
  type Credentials,
  hasRegistry,
  pushImage,
  startRegistry,
  type TestRegistry,
} from '../fixtures/registry.js';

const exec = promisify(execFile);
const SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../functions/builder/export-image.sh');
const RUN_ID = randomBytes(4).toString('hex');
const CREDS: Credentials = { username: 'robot', password: `S3cret-${randomBytes(6).toString('hex')}` };
const GOARCH = process.arch === 'arm64' ? 'arm64' : 'amd64';
const ARCH = GOARCH === 'arm64' ? 'aarch64' : 'x86_64';
const ROOT_TYPE =
  GOARCH === 'arm64' ? 'B921B045-1DF0-41C3-AF44-4C6F280D3FAE' : '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709';
const LOCAL_BANNER =
  "[exporter] local exporter: a partitioned disk of the image's root filesystem, not a bootc-image-builder image";

async function missingTools(): Promise<string> {
  const missing: string[] = [];
  if (!(await hasBuildah())) missing.push('buildah');
  if (!(await hasRegistry())) missing.push('docker-registry');
  for (const [tool, arg] of [
    ['skopeo', '--version'],
    ['qemu-img', '--version'],
    ['sfdisk', '--version'],
    ['mkfs.ext4', '-V'],
    ['debugfs', '-V'],
    ['jq', '--version'],
  ] as const) {
    try {
      await exec(tool, [arg]);
    } catch {
      missing.push(tool);
    }
  }
  return missing.length ? `${missing.join(', ')} not installed` : '';
}

const skipReason = await missingTools();

interface ScriptRun {
  code: number | null;
  out: string;
  ms: number;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const lastLine = (out: string) => out.trimEnd().split('\n').at(-1) ?? '';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skipReason !== '')(
  `exporter script e2e${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let registry: TestRegistry;
    let work: string;
    let scriptTmp: string;
    let outDir: string;
    let baseRef = '';
    let fixtureRef: string;
    let craftedRef: string;
    let victim: string;
    const timings: string[] = [];

    /** Starts the script with a clean environment (PATH, HOME, TMPDIR and the given variables). */
    function startScript(
      env: Record<string, string>,
      path = process.env.PATH ?? '/usr/bin:/bin',
    ): { child: ChildProcess; done: Promise<ScriptRun>; out: () => string } {
      const started = Date.now();
      const chunks: string[] = [];
      const child = spawn('bash', [SCRIPT], {
        env: { PATH: path, HOME: process.env.HOME ?? '/root', TMPDIR: scriptTmp, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true, // its own process group, as the local runner starts it
      });
      child.stdout?.on('data', (c: Buffer) => chunks.push(c.toString()));
      child.stderr?.on('data', (c: Buffer) => chunks.push(c.toString()));
      const done = new Promise<ScriptRun>((resolveRun) => {
        child.on('close', (code) => resolveRun({ code, out: chunks.join(''), ms: Date.now() - started }));
      });
      return { child, done, out: () => chunks.join('') };
    }
    const runScript = (env: Record<string, string>, path?: string) => startScript(env, path).done;

    const localEnv = (format: string, extra: Record<string, string> = {}): Record<string, string> => ({
      IB_EXPORTER: 'local',
      IB_IMAGE_REF: fixtureRef,
      IB_ARCH: ARCH,
      IB_FORMAT: format,
      IB_OUTPUT_FILE: join(outDir, `fixture.${format}`),
      IB_SOURCE_USERNAME: CREDS.username,
      IB_SOURCE_PASSWORD: CREDS.password,
      IB_SOURCE_TLS_VERIFY: 'false',
      IB_HEARTBEAT_SECONDS: '1',
      ...extra,
    });

    /** The run succeeded; its checksum and size lines describe the output file. Returns the file. */
    async function expectWritten(run: ScriptRun, file: string): Promise<Buffer> {
      expect(run.code, run.out).toBe(0);
      const lines = run.out.trimEnd().split('\n');
      const data = await readFile(file);
      expect(lines.at(-2)).toBe(`IB_SHA256: ${sha256(data)}`);
      expect(lines.at(-1)).toBe(`IB_SIZE: ${data.length}`);
      expect(run.out).not.toContain(CREDS.password);
      return data;
    }

    /** Nothing of a run is left: no work directory, no partial output file. */
    async function expectNoLeftovers(): Promise<void> {
      expect(await readdir(scriptTmp)).toEqual([]);
      expect((await readdir(outDir)).filter((f) => f.includes('.partial.'))).toEqual([]);
    }

    async function debugfs(disk: string, request: string): Promise<string> {
      const { stdout } = await exec('debugfs', ['-R', request, `${disk}?offset=${2048 * 512}`], {
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout;
    }

    /** The partition table must be GPT with one Linux root partition at 1 MiB; returns it. */
    async function expectRootPartition(raw: string) {
      const { stdout } = await exec('sfdisk', ['--json', raw]);
      const table = JSON.parse(stdout).partitiontable as {
        label: string;
        partitions: Array<{ start: number; size: number; type: string; name?: string }>;
      };
      expect(table.label).toBe('gpt');
      expect(table.partitions).toHaveLength(1);
      expect(table.partitions[0]).toMatchObject({ start: 2048, type: ROOT_TYPE, name: 'root' });
      return table.partitions[0]!;
    }

    async function qemuFormat(file: string): Promise<string> {
      const { stdout } = await exec('qemu-img', ['info', '--output=json', file]);
      return (JSON.parse(stdout) as { format: string }).format;
    }

    /** An image made by hand (OCI layout → registry with skopeo): the layer semantics under test. */
    async function pushCraftedImage(): Promise<string> {
      const dir = join(work, 'crafted');
      const blobs = join(dir, 'layout', 'blobs', 'sha256');
      await mkdir(blobs, { recursive: true });
      victim = join(work, 'victim');
      await mkdir(victim);
      // layer 1: files, a directory to make opaque, symlinks out of the tree (absolute and ../)
      const l1 = join(dir, 'l1');
      await mkdir(join(l1, 'etc'), { recursive: true });
      await mkdir(join(l1, 'opq', 'sub'), { recursive: true });
      await writeFile(join(l1, 'etc', 'keep'), 'kept\n');
      await writeFile(join(l1, 'etc', 'gone'), 'whited out\n');
      await writeFile(join(l1, 'opq', 'old'), 'old\n');
      await writeFile(join(l1, 'opq', 'sub', 'older'), 'older\n');
      await symlink(victim, join(l1, 'evil'));
      await symlink(`${'../'.repeat(24)}${victim.slice(1)}`, join(l1, 'evil-rel'));
      await symlink('/etc/keep', join(l1, 'abs-link'));
      await symlink('../etc/keep', join(l1, 'etc-up'));
      // layer 2: whiteout, opaque marker, and files "under" the outward symlinks (no directory entry)
      const l2 = join(dir, 'l2');
      for (const d of ['etc', 'opq', 'evil', 'evil-rel']) await mkdir(join(l2, d), { recursive: true });
      await writeFile(join(l2, 'etc', '.wh.gone'), '');
      await writeFile(join(l2, 'opq', '.wh..wh..opq'), '');
      await writeFile(join(l2, 'opq', 'new'), 'new\n');
      await writeFile(join(l2, 'evil', 'pwned'), 'through an absolute symlink\n');
      await writeFile(join(l2, 'evil-rel', 'pwned'), 'through a ../ symlink\n');
      const tar = async (src: string, members: string[]) =>
        (
          await exec(
            'tar',
            ['-C', src, '--numeric-owner', '--owner=0', '--group=0', '-cf', '-', ...members],
            {
              encoding: 'buffer',
              maxBuffer: 16 * 1024 * 1024,
            },
          )
        ).stdout as Buffer;
      const layer1 = await tar(l1, ['etc', 'opq', 'evil', 'evil-rel', 'abs-link', 'etc-up']);
      const layer2Tar = await tar(l2, [
        '--no-recursion',
        'etc/.wh.gone',
        'opq/',
        'opq/.wh..wh..opq',
        'opq/new',
        'evil/pwned',
        'evil-rel/pwned',
      ]);
      const layer2 = gzipSync(layer2Tar);
      const blob = async (data: Buffer | string, mediaType: string) => {
        const digest = sha256(data);
        await writeFile(join(blobs, digest), data);
        return { mediaType, digest: `sha256:${digest}`, size: Buffer.byteLength(data) };
      };
      const config = await blob(
        JSON.stringify({
          architecture: GOARCH,
          os: 'linux',
          rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layer1)}`, `sha256:${sha256(layer2Tar)}`] },
          config: {},
        }),
        'application/vnd.oci.image.config.v1+json',
      );
      const manifest = await blob(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config,
          layers: [
            await blob(layer1, 'application/vnd.oci.image.layer.v1.tar'),
            await blob(layer2, 'application/vnd.oci.image.layer.v1.tar+gzip'),
          ],
        }),
        'application/vnd.oci.image.manifest.v1+json',
      );
      await writeFile(join(dir, 'layout', 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(
        join(dir, 'layout', 'index.json'),
        JSON.stringify({ schemaVersion: 2, manifests: [manifest] }),
      );
      const digestFile = join(dir, 'digest');
      await exec('skopeo', [
        'copy',
        '--quiet',
        '--digestfile',
        digestFile,
        '--dest-tls-verify=false',
        '--dest-creds',
        `${CREDS.username}:${CREDS.password}`,
        `oci:${join(dir, 'layout')}`,
        `docker://${registry.host}/crafted/layers:1`,
      ]);
      return `${registry.host}/crafted/layers@${(await readFile(digestFile, 'utf8')).trim()}`;
    }

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'ib-exporter-e2e-'));
      scriptTmp = join(work, 'tmp');
      outDir = join(work, 'out');
      await Promise.all([mkdir(scriptTmp), mkdir(outDir)]);
      const started = Date.now();
      const [base, reg] = await Promise.all([
        buildFixtureBaseImage(`localhost/ib-exporter-e2e-base-${RUN_ID}:1`),
        startRegistry({ auth: CREDS }),
      ]);
      baseRef = base;
      registry = reg;
      const digest = await pushImage(baseRef, `${registry.host}/edge/os:1`, CREDS);
      fixtureRef = `${registry.host}/edge/os@${digest}`;
      craftedRef = await pushCraftedImage();
      timings.push(`setup ${Date.now() - started} ms`);
    });

    afterAll(async () => {
      try {
        if (baseRef) await removeImages(baseRef);
      } finally {
        await registry?.stop();
        if (work) await rm(work, { recursive: true, force: true });
        console.info(`exporter e2e: ${timings.join(', ')}`);
      }
    });

    it('exports qcow2 locally: a GPT disk whose ext4 root partition holds the image', async () => {
      const run = await runScript(localEnv('qcow2'));
      timings.push(`qcow2 ${run.ms} ms`);
      const file = join(outDir, 'fixture.qcow2');
      await expectWritten(run, file);
      expect(run.out.split('\n')[0]).toBe(LOCAL_BANNER);
      expect(await qemuFormat(file)).toBe('qcow2');
      const raw = join(work, 'back.raw');
      await exec('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, raw]);
      const part = await expectRootPartition(raw);
      expect(await debugfs(raw, 'stat /bin/busybox')).toMatch(/Type: regular\s+Mode:\s+0755/);
      expect(await debugfs(raw, 'cat /etc/passwd')).toBe(
        await readFile(
          resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/base-image/rootfs/etc/passwd'),
          'utf8',
        ),
      );
      expect(await debugfs(raw, 'stat /etc/shadow')).toMatch(/Mode:\s+0600/);
      // a busybox applet symlink of the fixture, and the ext4 size rule (rootfs × 1.3 + 64 MiB)
      expect(await debugfs(raw, 'stat /bin/sh')).toMatch(/Type: symlink/);
      const blockCount = Number(/Block count:\s+(\d+)/.exec(await debugfs(raw, 'stats'))?.[1]);
      const blockSize = Number(/Block size:\s+(\d+)/.exec(await debugfs(raw, 'stats'))?.[1]);
      expect(blockCount * blockSize).toBe(part.size * 512);
      expect(part.size * 512).toBeGreaterThanOrEqual(64 * 1024 * 1024);
      await rm(raw);
      await expectNoLeftovers();
    });

    it('exports raw, vmdk and vhd locally, and takes the password from a file', async () => {
      await writeFile(join(work, 'password'), `${CREDS.password}\n`);
      for (const [format, qemu] of [
        ['raw', 'raw'],
        ['vmdk', 'vmdk'],
        ['vhd', 'vpc'],
      ] as const) {
        const file = join(outDir, `fixture.${format}`);
        const run = await runScript(
          localEnv(format, { IB_SOURCE_PASSWORD: '', IB_SOURCE_PASSWORD_FILE: join(work, 'password') }),
        );
        timings.push(`${format} ${run.ms} ms`);
        await expectWritten(run, file);
        expect(await qemuFormat(file)).toBe(qemu);
        if (format === 'raw') {
          await expectRootPartition(file);
          expect(await debugfs(file, 'stat /bin/busybox')).toMatch(/Type: regular/);
        }
        await rm(file);
      }
      await expectNoLeftovers();
    });

    it('unpacks layers like a container runtime and never writes outside the tree', async () => {
      const file = join(outDir, 'crafted.raw');
      const run = await runScript(localEnv('raw', { IB_IMAGE_REF: craftedRef, IB_OUTPUT_FILE: file }));
      await expectWritten(run, file);
      expect(await readdir(victim)).toEqual([]);
      const ls = async (path: string) =>
        (await debugfs(file, `ls -p ${path}`))
          .split('\n')
          .map((l) => l.split('/')[5])
          .filter((n): n is string => !!n && n !== '.' && n !== '..')
          .sort();
      expect(await ls('/etc')).toEqual(['keep']); // .wh.gone removed gone, and is not in the disk itself
      expect(await ls('/opq')).toEqual(['new']); // opaque: old and sub/ of the layer below are gone
      expect(await debugfs(file, 'cat /evil/pwned')).toBe('through an absolute symlink\n');
      expect(await debugfs(file, 'cat /evil-rel/pwned')).toBe('through a ../ symlink\n');
      // outward symlinks nothing was written through are put back as they were
      expect(await debugfs(file, 'stat /abs-link')).toMatch(/Fast link dest: "\/etc\/keep"/);
      expect(await debugfs(file, 'stat /etc-up')).toMatch(/Fast link dest: "\.\.\/etc\/keep"/);
      expect(run.out).toContain('(2 out-of-directory symlink(s) put back)');
      await rm(file);
      await expectNoLeftovers();
    });

    it('fails with 50 for formats that need bootc-image-builder, 2 for bad input, 10 for the registry', async () => {
      for (const format of ['iso', 'anaconda-iso', 'gce', 'ami']) {
        const run = await runScript(localEnv(format));
        expect(run.code, run.out).toBe(50);
        expect(run.out.split('\n')[0]).toBe(LOCAL_BANNER);
        expect(lastLine(run.out)).toBe(
          `IB_ERROR: format ${format} needs bootc-image-builder, which the local exporter cannot run; use qcow2, vmdk, vhd or raw locally`,
        );
      }
      const tagged = await runScript(localEnv('qcow2', { IB_IMAGE_REF: `${registry.host}/edge/os:1` }));
      expect(tagged.code).toBe(2);
      expect(lastLine(tagged.out)).toMatch(
        /^IB_ERROR: bad input: IB_IMAGE_REF must be registry\/name@sha256/,
      );
      const injected = await runScript(
        localEnv('qcow2', { IB_IMAGE_REF: `--rm;touch /tmp/x@sha256:${'a'.repeat(64)}` }),
      );
      expect(injected.code).toBe(2);
      const format = await runScript(localEnv('vdi'));
      expect(format.code).toBe(2);
      expect(lastLine(format.out)).toContain(
        "IB_FORMAT must be one of qcow2, vmdk, iso, qcow2-disk-container, raw, vhd, ami, gce, anaconda-iso, not 'vdi'",
      );

      const wrong = `Wr0ng-${RUN_ID}`;
      const denied = await runScript(localEnv('qcow2', { IB_SOURCE_PASSWORD: wrong }));
      expect(denied.code, denied.out).toBe(10);
      expect(lastLine(denied.out)).toContain(`source registry ${registry.host} rejected the credentials`);
      expect(denied.out).not.toContain(wrong);
      const missing = await runScript(
        localEnv('qcow2', { IB_IMAGE_REF: `${registry.host}/edge/os@sha256:${'0'.repeat(64)}` }),
      );
      expect(missing.code, missing.out).toBe(10);
      expect(lastLine(missing.out)).toMatch(
        /^IB_ERROR: pull of .* failed: source registry .* does not have the image/,
      );
      const unreachable = await runScript(
        localEnv('qcow2', { IB_IMAGE_REF: `127.0.0.1:9/edge/os@sha256:${'0'.repeat(64)}` }),
      );
      expect(unreachable.code, unreachable.out).toBe(10);
      expect(lastLine(unreachable.out)).toContain('source registry 127.0.0.1:9 cannot be reached');
      await expectNoLeftovers();
    });

    /** A stand-in podman: records each call (argv NUL-separated, stdin), `run` writes bib's output file. */
    async function fakePodman(behaviour: 'write' | 'sleep'): Promise<{ path: string; calls: string }> {
      const bin = join(work, `bin-${behaviour}`);
      const calls = join(work, `calls-${behaviour}`);
      await mkdir(bin, { recursive: true });
      await writeFile(
        join(bin, 'podman'),
        [
          '#!/usr/bin/env bash',
          'set -euo pipefail',
          `calls=${JSON.stringify(calls)}`,
          'printf "%s\\0" "$@" >>"$calls"; printf "\\n" >>"$calls"',
          'case "$1" in',
          '  login) printf "stdin:%s\\0\\n" "$(cat)" >>"$calls" ;;',
          '  pull) echo "Writing manifest to image destination" ;;',
          '  run)',
          behaviour === 'sleep'
            ? '    echo "fake-bib-sleeping"; (exec -a fake-bib-sleeping sleep 60) & wait ;;'
            : [
                '    out="" type=""; prev=""',
                '    for a in "$@"; do',
                // biome-ignore lint/suspicious/noTemplateCurlyInString: bash parameter expansion
                '      [[ "$prev" == -v && "$a" == *:/output ]] && out=${a%:/output}',
                '      [[ "$prev" == --type ]] && type=$a',
                '      prev=$a',
                '    done',
                '    case "$type" in',
                '      qcow2) f=qcow2/disk.qcow2 ;; vmdk) f=vmdk/disk.vmdk ;; raw) f=image/disk.raw ;;',
                '      vpc) f=vpc/disk.vhd ;; iso|anaconda-iso) f=bootiso/install.iso ;;',
                '      gce) f=gce/image.tar.gz ;; ami) f=image/disk.raw; echo "AMI registered: ami-0123456789abcdef0" ;;',
                '    esac',
                '    mkdir -p "$out/$(dirname "$f")"; printf "disk of type %s\\n" "$type" >"$out/$f" ;;',
              ].join('\n'),
          'esac',
        ].join('\n'),
      );
      await chmod(join(bin, 'podman'), 0o755);
      return { path: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, calls };
    }

    const readCalls = async (file: string) =>
      (await readFile(file, 'utf8'))
        .split('\0\n')
        .filter(Boolean)
        .map((c) => c.split('\0'));

    it('runs bootc-image-builder with the argv of bibArguments() and picks up its file, for every format', async () => {
      const podman = await fakePodman('write');
      const started = Date.now();
      for (const format of EXPORT_FORMATS as readonly ExportFormat[]) {
        await rm(podman.calls, { force: true });
        const bibOut = join(work, `bib-${format}`);
        const argv = bibArguments({
          format,
          imageRef: fixtureRef,
          rootfs: 'xfs',
          configPath: join(work, 'config.toml'),
          outputDir: bibOut,
          ...(format === 'ami'
            ? { awsAmi: { bucket: 'ib-artifacts', region: 'eu-west-1', amiName: `edge-os ${RUN_ID}` } }
            : {}),
        });
        const argsFile = join(work, `bib-${format}.json`);
        await writeFile(argsFile, JSON.stringify(argv));
        const file = join(outDir, `bib.${artifactFor(format).extension}`);
        const run = await runScript(
          {
            IB_EXPORTER: 'bib',
            IB_IMAGE_REF: fixtureRef,
            IB_ARCH: ARCH,
            IB_FORMAT: format,
            IB_OUTPUT_FILE: file,
            IB_BIB_ARGS_FILE: argsFile,
            IB_SOURCE_USERNAME: CREDS.username,
            IB_SOURCE_PASSWORD: CREDS.password,
            IB_SOURCE_TLS_VERIFY: 'false',
          },
          podman.path,
        );
        const data = await expectWritten(run, file);
        expect(data.toString()).toBe(`disk of type ${artifactFor(format).bibType}\n`);
        expect(run.out).not.toContain(LOCAL_BANNER);
        const calls = await readCalls(podman.calls);
        expect(calls.map((c) => c[0])).toEqual(['login', `stdin:${CREDS.password}`, 'pull', 'run']);
        const login = calls.find((c) => c[0] === 'login')!;
        expect(login).not.toContain(CREDS.password); // only on stdin
        expect(login).toEqual(
          expect.arrayContaining(['--password-stdin', '--tls-verify=false', registry.host]),
        );
        const pull = calls.find((c) => c[0] === 'pull')!;
        expect(pull).toEqual(expect.arrayContaining(['--arch', GOARCH, '--tls-verify=false', fixtureRef]));
        expect(calls.find((c) => c[0] === 'run')).toEqual(argv.slice(1));
        if (format === 'ami') expect(run.out).toContain('\nIB_AMI_ID: ami-0123456789abcdef0\n');
        await rm(file);
      }
      timings.push(`bib stand-in × ${EXPORT_FORMATS.length} ${Date.now() - started} ms`);

      // an argv for another format than IB_FORMAT is refused
      const argsFile = join(work, 'bib-qcow2.json');
      const mismatch = await runScript(
        {
          IB_EXPORTER: 'bib',
          IB_IMAGE_REF: fixtureRef,
          IB_FORMAT: 'vmdk',
          IB_OUTPUT_FILE: join(outDir, 'x.vmdk'),
          IB_BIB_ARGS_FILE: argsFile,
        },
        podman.path,
      );
      expect(mismatch.code).toBe(2);
      expect(lastLine(mismatch.out)).toBe(
        "IB_ERROR: bad input: IB_BIB_ARGS_FILE asks for --type 'qcow2', but format vmdk is bib type vmdk",
      );
      await expectNoLeftovers();
    });

    /** Waits for `waitFor` in the output and a process named `marker`, kills, checks nothing is left. */
    async function expectStopped(
      started: ReturnType<typeof startScript>,
      waitFor: string,
      marker: string,
      target: 'group' | 'script',
    ): Promise<void> {
      const { child, done, out } = started;
      const running = async () => (await exec('ps', ['-e', '-o', 'args='])).stdout.includes(marker);
      const deadline = Date.now() + 30_000;
      while (
        !(out().includes(waitFor) && out().includes('[heartbeat]') && (await running())) &&
        Date.now() < deadline
      ) {
        await sleep(100);
      }
      expect(out()).toContain(waitFor);
      expect(await running()).toBe(true);
      const pgid = child.pid!;
      const killedAt = Date.now();
      process.kill(target === 'group' ? -pgid : pgid, 'SIGTERM');
      const run = await done;
      const stopMs = Date.now() - killedAt;
      timings.push(`${target} kill → exit ${stopMs} ms`);
      expect(stopMs).toBeLessThan(5_000);
      expect(run.code, run.out).toBe(143);
      expect(lastLine(run.out)).toMatch(/^IB_ERROR: canceled: the exporter was terminated while /);
      await sleep(300);
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
      await expectNoLeftovers();
    }

    it('stops everything and exits 143 when its process group is killed during bootc-image-builder', async () => {
      const podman = await fakePodman('sleep');
      const argsFile = join(work, 'bib-sleep.json');
      await writeFile(
        argsFile,
        JSON.stringify(
          bibArguments({
            format: 'qcow2',
            imageRef: fixtureRef,
            rootfs: 'ext4',
            configPath: join(work, 'config.toml'),
            outputDir: join(work, 'bib-sleep'),
          }),
        ),
      );
      const started = startScript(
        {
          IB_EXPORTER: 'bib',
          IB_IMAGE_REF: fixtureRef,
          IB_FORMAT: 'qcow2',
          IB_OUTPUT_FILE: join(outDir, 'killed.qcow2'),
          IB_BIB_ARGS_FILE: argsFile,
          IB_HEARTBEAT_SECONDS: '1',
        },
        podman.path,
      );
      await expectStopped(started, 'fake-bib-sleeping', 'fake-bib-sleeping', 'group');
    });

    it('stops everything and exits 143 when only the script is killed during the local conversion', async () => {
      // qemu-img stands in slow: it announces itself and sleeps
      const bin = join(work, 'bin-slow-qemu');
      await mkdir(bin, { recursive: true });
      const marker = `ib-slow-qemu-${RUN_ID}`;
      await writeFile(join(bin, 'qemu-img'), `#!/usr/bin/env bash\nexec -a ${marker} sleep 60\n`);
      await chmod(join(bin, 'qemu-img'), 0o755);
      const started = startScript(
        localEnv('qcow2', { IB_OUTPUT_FILE: join(outDir, 'killed.qcow2') }),
        `${bin}:${process.env.PATH}`,
      );
      await expectStopped(started, 'made the raw disk', marker, 'script');
      await expect(stat(join(outDir, 'killed.qcow2'))).rejects.toThrow();
    });
  },
);
