// A real build: a Containerfile and context generated from a spec full of hostile strings (every
// customization kind), built with buildah on the fixture base image (test/fixtures/base-image.ts, a
// stand-in for a bootc base), then the resulting image's files compared byte for byte, with modes and
// owners. Skipped, with the reason shown, only when buildah is not installed (CI installs it).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  type BuildContext,
  DEFAULT_AGENT_REPO_URL,
  generateBuildContext,
} from '../../functions/commons/domain/containerfile/index.js';
import type { CustomFile, ImageBuildSpec } from '../../functions/commons/domain/types.js';
import { buildFixtureBaseImage, hasBuildah, removeImages, sh } from '../fixtures/base-image.js';
import { ED25519_KEY, fakeEnrollment, RSA_KEY } from '../fixtures/build-specs.js';

const BUILDAH = await hasBuildah();
const id = randomBytes(4).toString('hex');
const BASE = { name: 'ib-fixture-base', tag: `e2e-${id}` };
const cleanup: { images: string[]; containers: string[]; dirs: string[] } = {
  images: [],
  containers: [],
  dirs: [],
};

const HOSTILE =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${...} is the point
  '"\'`id`$(touch /pwned)${HOME};&&|<<EOF\nEOF\n\\\nRUN touch /pwned\n# escape=`\n\t\u0000é😀\u2028\r\n';
const BINARY = Buffer.concat([
  Buffer.from([0, 1, 2, 255, 254, 10, 13, 0]),
  randomBytes(4096),
  Buffer.from('\n$(x)'),
]);

const FILES: CustomFile[] = [
  {
    path: '/etc/hostile/$(touch /pwned)`id`;\'" \\ <<EOF.conf',
    content: HOSTILE,
    mode: '0640',
    user: 'svc_1',
    group: 'docker',
  },
  {
    path: '/opt/bin/-rf --no-preserve-root',
    content: BINARY.toString('base64').replace(/.{1,76}/g, '$&\n'),
    encoding: 'base64',
    mode: '4755',
  },
  { path: '/usr/share/unicode/ünï😀\t tab.txt', content: 'héllo 😀 \u2028 \u0000 end' },
  { path: '/etc/empty', content: '' },
  { path: '/etc/sub/dir/large', content: 'x\\\n'.repeat(40_000), user: 'bare' },
  { path: '/etc/group-owned', content: 'g', group: 'docker', mode: '2750' },
  { path: '/etc/crlf', content: 'a\r\nb' },
  { path: '/etc/*', content: 'a glob is just a name' },
];

const UNIT =
  '[Unit]\nDescription=$(touch /pwned) `id` "quoted"\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target timers.target\n';

function hostileSpec(binding: 'early' | 'late'): ImageBuildSpec {
  return {
    source: { repository: 'local', imageName: BASE.name, imageTag: BASE.tag },
    destination: { repository: 'dest', imageName: 'out', imageTag: 'v1' },
    binding: { type: binding },
    onboarding: true,
    userConfiguration: { username: 'admin', publickey: ED25519_KEY },
    customizations: {
      packages: ['vim-enhanced', 'gcc-c++', 'python3.11'],
      coprRepos: ['@redhat-et/flightctl', 'owner/proj+x'],
      enableRepos: ['https://example.com/r.repo?x=$(touch$IFS/pwned)&y=;rm', 'http://h/a(b)!*,;=%41'],
      users: [
        {
          name: 'svc_1',
          groups: ['docker', 'wheel'],
          shell: '/usr/bin/zsh',
          passwordHash: '$6$salt$abc./$=,+-XYZ',
          sshKeys: [RSA_KEY, 'ecdsa-sha2-nistp256 AAAAE2VjZHNh= k:=,@'],
        },
        { name: 'bare' },
      ],
      files: FILES,
      systemdUnits: [
        { name: 'a\\x2d:b_c.service', content: UNIT, enabled: true },
        { name: 'off@.timer', content: '[Timer]\nOnCalendar=daily\n', enabled: false },
      ],
      scripts: [
        {
          name: '01-write',
          content: '#!/bin/sh\nid -u > /etc/script-ran\nprintf "%s" "$PWD" > /etc/script-cwd\n',
        },
        { name: '02-no-shebang', content: 'echo no-shebang >> /etc/script-ran\n' },
      ],
      agentConfig: {
        specFetchInterval: '10s',
        statusUpdateInterval: '1m',
        defaultLabels: { on: 'yes', 'example.com/site': 'a-1' },
        systemInfo: ['hostname', 'kernel'],
        logLevel: 'debug',
        tpm: { enabled: true, devicePath: '/dev/tpm0' },
      },
    },
  };
}

async function writeContext(ctx: BuildContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ib-context-'));
  cleanup.dirs.push(dir);
  await writeFile(join(dir, 'Containerfile'), ctx.containerfile);
  for (const [path, content] of Object.entries(ctx.files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content, 'utf8');
  }
  return dir;
}

/** Builds the context and mounts the result; returns the root of the image's filesystem. */
async function buildAndMount(ctx: BuildContext, tag: string): Promise<string> {
  const dir = await writeContext(ctx);
  await sh(
    'buildah',
    ['bud', '--isolation', 'chroot', '--pull=never', '-t', tag, '-f', 'Containerfile', '.'],
    { cwd: dir },
  );
  cleanup.images.push(tag);
  const container = (await sh('buildah', ['from', '--pull=never', tag])).stdout.trim();
  cleanup.containers.push(container);
  return (await sh('buildah', ['mount', container])).stdout.trim();
}

function database(text: string): Map<string, string[]> {
  return new Map(
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.split(':')[0] as string, l.split(':')]),
  );
}

describe.skipIf(!BUILDAH)('generated Containerfile, built with buildah on the fixture base image', () => {
  let root = '';
  let ctx: BuildContext;
  let lateRoot = '';
  const enrollment = fakeEnrollment();

  beforeAll(async () => {
    await buildFixtureBaseImage(`localhost/${BASE.name}:${BASE.tag}`);
    cleanup.images.push(`localhost/${BASE.name}:${BASE.tag}`);
    ctx = generateBuildContext({
      spec: hostileSpec('early'),
      source: { registry: 'localhost' },
      settings: {},
      enrollment,
    });
    root = await buildAndMount(ctx, `localhost/ib-e2e-early:${id}`);
    const late = generateBuildContext({
      spec: hostileSpec('late'),
      source: { registry: 'localhost' },
      settings: {},
    });
    lateRoot = await buildAndMount(late, `localhost/ib-e2e-late:${id}`);
  }, 300_000);

  afterAll(async () => {
    for (const c of cleanup.containers) {
      await sh('buildah', ['umount', c]).catch(() => undefined);
      await sh('buildah', ['rm', c]).catch(() => undefined);
    }
    await removeImages(...cleanup.images.reverse());
    for (const d of cleanup.dirs) await rm(d, { recursive: true, force: true });
  });

  it('writes every file byte for byte, with its mode and owner', async () => {
    const passwd = database(await readFile(join(root, 'etc/passwd'), 'utf8'));
    const group = database(await readFile(join(root, 'etc/group'), 'utf8'));
    for (const file of FILES) {
      const path = join(root, file.path);
      const expected =
        file.encoding === 'base64' ? Buffer.from(file.content, 'base64') : Buffer.from(file.content, 'utf8');
      expect(await readFile(path), file.path).toEqual(expected);
      const st = await lstat(path);
      expect(st.isFile(), file.path).toBe(true);
      expect((st.mode & 0o7777).toString(8), file.path).toBe(
        Number.parseInt(file.mode ?? '0644', 8).toString(8),
      );
      expect(String(st.uid), file.path).toBe(file.user ? passwd.get(file.user)?.[2] : '0');
      expect(String(st.gid), file.path).toBe(file.group ? group.get(file.group)?.[2] : '0');
    }
    expect(await readFile(join(root, 'opt/bin/-rf --no-preserve-root'))).toEqual(BINARY);
  });

  it('writes the early-binding agent config, mode 0600, with the enrollment certificate', async () => {
    const path = join(root, 'etc/flightctl/config.yaml');
    expect(await readFile(path, 'utf8')).toBe(ctx.files['ib/agent/config.yaml']);
    const st = await lstat(path);
    expect((st.mode & 0o777).toString(8)).toBe('600');
    expect(st.uid).toBe(0);
    const config = parse(await readFile(path, 'utf8'), { version: '1.1' });
    const auth = config['enrollment-service'].authentication;
    expect(Buffer.from(auth['client-key-data'], 'base64').toString()).toBe(enrollment.clientKeyPem);
    expect(Buffer.from(auth['client-certificate-data'], 'base64').toString()).toBe(
      enrollment.clientCertificatePem,
    );
    expect(config['enrollment-service'].service.server).toBe(enrollment.server);
    expect(config['default-labels']).toEqual({ on: 'yes', 'example.com/site': 'a-1' });
    expect(existsSync(join(root, 'etc/flightctl/conf.d'))).toBe(false);
  });

  it('creates the configured user in wheel with passwordless sudo and authorized_keys 0700/0600', async () => {
    const passwd = database(await readFile(join(root, 'etc/passwd'), 'utf8'));
    const group = database(await readFile(join(root, 'etc/group'), 'utf8'));
    const admin = passwd.get('admin') as string[];
    expect(admin[6]).toBe('/bin/bash');
    expect(group.get('wheel')?.[3]?.split(',')).toContain('admin');
    const sudoers = join(root, 'etc/sudoers.d/admin');
    expect(await readFile(sudoers, 'utf8')).toBe('admin ALL=(ALL) NOPASSWD: ALL\n');
    expect(((await lstat(sudoers)).mode & 0o777).toString(8)).toBe('440');
    const ssh = join(root, 'home/admin/.ssh');
    expect(((await lstat(ssh)).mode & 0o777).toString(8)).toBe('700');
    expect(String((await lstat(ssh)).uid)).toBe(admin[2]);
    expect(await readFile(join(ssh, 'authorized_keys'), 'utf8')).toBe(`${ED25519_KEY}\n`);
    const keys = await lstat(join(ssh, 'authorized_keys'));
    expect((keys.mode & 0o777).toString(8)).toBe('600');
    expect(String(keys.uid)).toBe(admin[2]);
    expect(String(keys.gid)).toBe(admin[3]);
  });

  it('creates customization users with groups, shell, password hash and SSH keys', async () => {
    const passwd = database(await readFile(join(root, 'etc/passwd'), 'utf8'));
    const group = database(await readFile(join(root, 'etc/group'), 'utf8'));
    const shadow = database(await readFile(join(root, 'etc/shadow'), 'utf8'));
    expect(passwd.get('svc_1')?.[6]).toBe('/usr/bin/zsh');
    expect(shadow.get('svc_1')?.slice(1, -7).join(':')).toBe('$6$salt$abc./$=,+-XYZ');
    expect(group.get('docker')?.[3]).toBe('svc_1');
    expect(group.get('wheel')?.[3]?.split(',')).toEqual(['admin', 'svc_1']);
    expect(await readFile(join(root, 'home/svc_1/.ssh/authorized_keys'), 'utf8')).toBe(
      `${RSA_KEY}\necdsa-sha2-nistp256 AAAAE2VjZHNh= k:=,@\n`,
    );
    expect(passwd.has('bare')).toBe(true);
    expect(existsSync(join(root, 'home/bare/.ssh'))).toBe(false);
  });

  it('installs and enables the agent, onboarding and the enabled units (enablement symlinks)', async () => {
    const wants = (target: string, unit: string) =>
      readlink(join(root, 'etc/systemd/system', `${target}.wants`, unit));
    expect(await wants('multi-user.target', 'flightctl-agent.service')).toBe(
      '/usr/lib/systemd/system/flightctl-agent.service',
    );
    expect(await wants('multi-user.target', 'flightctl-onboarding-setup.service')).toBe(
      '/usr/lib/systemd/system/flightctl-onboarding-setup.service',
    );
    const unit = 'a\\x2d:b_c.service';
    expect(await readFile(join(root, 'etc/systemd/system', unit), 'utf8')).toBe(UNIT);
    expect(await wants('multi-user.target', unit)).toBe(`/etc/systemd/system/${unit}`);
    expect(await wants('timers.target', unit)).toBe(`/etc/systemd/system/${unit}`);
    expect(await readFile(join(root, 'etc/systemd/system/off@.timer'), 'utf8')).toBe(
      '[Timer]\nOnCalendar=daily\n',
    );
    expect(existsSync(join(root, 'etc/systemd/system/multi-user.target.wants/off@.timer'))).toBe(false);
  });

  it('passes repositories, COPR projects and packages to dnf as single arguments', async () => {
    const repos = await readFile(join(root, 'etc/yum.repos.d/fixture-added-repos'), 'utf8');
    expect(repos).toBe(
      `${DEFAULT_AGENT_REPO_URL}\n${hostileSpec('early').customizations?.enableRepos?.join('\n')}\n`,
    );
    expect(await readFile(join(root, 'var/lib/fixture-copr'), 'utf8')).toBe(
      '@redhat-et/flightctl\nowner/proj+x\n',
    );
    const calls = (await readFile(join(root, 'var/log/fixture-calls.log'), 'utf8'))
      .split('\n')
      .filter(Boolean);
    expect(calls).toContain(
      [
        'dnf',
        '-y',
        'install',
        'flightctl-agent',
        'flightctl-onboarding',
        'vim-enhanced',
        'gcc-c++',
        'python3.11',
      ].join('\t'),
    );
    expect(calls).toContain(['usermod', '-p', '$6$salt$abc./$=,+-XYZ', 'svc_1'].join('\t'));
    for (const line of calls)
      expect(line.split('\t')[0]).toMatch(/^(dnf|systemctl|useradd|usermod|groupadd)$/);
  });

  it('runs the build scripts in order, from /, with or without a #! line', async () => {
    expect(await readFile(join(root, 'etc/script-ran'), 'utf8')).toBe('0\nno-shebang\n');
    expect(await readFile(join(root, 'etc/script-cwd'), 'utf8')).toBe('/');
  });

  it('executed nothing it was given as data, and left no staging files', async () => {
    for (const r of [root, lateRoot]) {
      expect(existsSync(join(r, 'pwned'))).toBe(false);
      expect(existsSync(join(r, 'tmp/imagebuilder'))).toBe(false);
    }
    expect(existsSync('/pwned')).toBe(false);
  });

  it('late binding: installs ignition, afterburn and cloud-init; agent settings in a conf.d drop-in', async () => {
    const rpms = join(lateRoot, 'var/lib/fixture-rpms');
    for (const pkg of ['flightctl-agent', 'ignition', 'afterburn', 'cloud-init'])
      expect(existsSync(join(rpms, pkg)), pkg).toBe(true);
    expect(existsSync(join(root, 'var/lib/fixture-rpms/ignition'))).toBe(false);
    expect(existsSync(join(lateRoot, 'etc/flightctl/config.yaml'))).toBe(false);
    const dropin = parse(
      await readFile(join(lateRoot, 'etc/flightctl/conf.d/50-imagebuilder.yaml'), 'utf8'),
      { version: '1.1' },
    );
    expect(dropin['log-level']).toBe('debug');
    expect(dropin['enrollment-service']).toBeUndefined();
  });
});

if (!BUILDAH) {
  describe('generated Containerfile, built with buildah', () => {
    it.skip('skipped: buildah is not installed (apt-get install buildah; CI installs it)', () => {});
  });
}
