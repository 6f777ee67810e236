// Containerfile generation: each feature, early vs late binding, onboarding, and the validation the
// schema cannot express (400 naming the field).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  type BuildContextInput,
  DEFAULT_AGENT_REPO_URL,
  expectedInstructions,
  generateBuildContext,
  renderContainerfile,
} from '../../functions/commons/domain/containerfile/index.js';
import { STAGES } from '../../functions/commons/domain/containerfile/scripts.js';
import { PATTERNS } from '../../functions/commons/domain/containerfile/validate.js';
import { InvalidError } from '../../functions/commons/domain/errors.js';
import type { Customizations, ImageBuildSpec } from '../../functions/commons/domain/types.js';
import {
  ED25519_KEY,
  fakeEnrollment,
  input,
  largestAllowedInput,
  minimalSpec,
  RSA_KEY,
} from '../fixtures/build-specs.js';
import { benchContainerfileGeneration } from '../fixtures/containerfile-bench.js';

const lines = (text: string | undefined) => (text ?? '').split('\n').filter(Boolean);
const withCustomizations = (c: Customizations, extra: Partial<ImageBuildSpec> = {}) =>
  input(minimalSpec({ customizations: c, ...extra }));

function invalid(build: BuildContextInput): InvalidError {
  try {
    generateBuildContext(build);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidError);
    return err as InvalidError;
  }
  throw new Error('expected an InvalidError');
}

describe('Containerfile', () => {
  it('is the fixed instruction sequence FROM the source image, whatever the spec', () => {
    const { containerfile } = generateBuildContext(largestAllowedInput());
    const instructions = containerfile
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(' '));
    expect(instructions.map(([k, ...args]) => [k, args])).toEqual(
      expectedInstructions('quay.io/centos-bootc/centos-bootc:stream9'),
    );
    expect(containerfile).toBe(generateBuildContext(input(minimalSpec())).containerfile);
  });

  it('takes the registry host (and port, or bracketed IPv6) from the source repository', () => {
    const spec = minimalSpec({ source: { repository: 'r', imageName: 'a/b', imageTag: 'v1.2_3' } });
    const cf = (registry: string) =>
      generateBuildContext(input(spec, { source: { registry } })).containerfile;
    expect(cf('registry.local:5000')).toContain('\nFROM registry.local:5000/a/b:v1.2_3\n');
    expect(cf('[fd00::1]:5000')).toContain('\nFROM [fd00::1]:5000/a/b:v1.2_3\n');
  });

  it('checks the FROM reference again and names the field', () => {
    const spec = minimalSpec();
    expect(invalid(input(spec, { source: { registry: 'evil.io/x y' } })).field).toBe(
      'spec.source.repository',
    );
    expect(invalid(input({ ...spec, source: { ...spec.source, imageName: 'A\nRUN id' } })).field).toBe(
      'spec.source.imageName',
    );
    expect(invalid(input({ ...spec, source: { ...spec.source, imageTag: 'x y' } })).field).toBe(
      'spec.source.imageTag',
    );
  });

  it('is what the preview renders, without any enrollment certificate', () => {
    const spec = minimalSpec({ binding: { type: 'early' } });
    const build = generateBuildContext(input(spec, { enrollment: fakeEnrollment() }));
    expect(renderContainerfile(input(spec))).toBe(build.containerfile);
    expect(() =>
      renderContainerfile(
        input(minimalSpec({ customizations: { files: [{ path: '/proc/x', content: '' }] } })),
      ),
    ).toThrow(InvalidError);
  });
});

describe('build context', () => {
  it('ships the same fixed scripts for every spec; spec values only ever land in data files', () => {
    const big = generateBuildContext(largestAllowedInput()).files;
    const small = generateBuildContext(input(minimalSpec())).files;
    for (const stage of STAGES) {
      expect(big[`ib/${stage.name}/run.sh`]).toBe(stage.script);
      expect(small[`ib/${stage.name}/run.sh`]).toBe(stage.script);
    }
    for (const path of Object.keys(big)) {
      expect(path).toMatch(/^ib\/(packages|system|scripts|agent)\/([a-z]+\/)?(\d{4}\/)?[a-z0-9_.-]+$/);
    }
  });

  it('has scripts that are valid POSIX sh', () => {
    for (const stage of STAGES) {
      expect(() => execFileSync('sh', ['-n'], { input: stage.script })).not.toThrow();
    }
  });

  it('is deterministic: same input, byte-identical output, files in sorted order', () => {
    const build = largestAllowedInput();
    const first = generateBuildContext(build);
    const second = generateBuildContext(structuredClone(build));
    expect(JSON.stringify(second)).toBe(JSON.stringify(first));
    expect(Object.keys(first.files)).toEqual(Object.keys(first.files).sort());
  });
});

describe('Flight Control agent', () => {
  it('adds the public Flight Control repository by default, installs and enables the agent', () => {
    const { files } = generateBuildContext(input(minimalSpec()));
    expect(lines(files['ib/packages/repos'])).toEqual([DEFAULT_AGENT_REPO_URL]);
    expect(lines(files['ib/packages/packages'])[0]).toBe('flightctl-agent');
    expect(lines(files['ib/packages/enable'])).toEqual(['flightctl-agent.service']);
  });

  it('takes the agent repository from the settings', () => {
    const url = 'https://mirror.internal/flightctl/flightctl-epel.repo';
    const { files } = generateBuildContext(input(minimalSpec(), { settings: { agentRepoUrl: url } }));
    expect(lines(files['ib/packages/repos'])).toEqual([url]);
    expect(() =>
      generateBuildContext(input(minimalSpec(), { settings: { agentRepoUrl: 'ftp://x' } })),
    ).toThrow(/agentRepoUrl/);
    expect(() =>
      generateBuildContext(input(minimalSpec(), { settings: { agentConfigPath: '/etc/../x' } })),
    ).toThrow(/agentConfigPath/);
  });

  it('installs flightctl-onboarding and enables its setup service when onboarding', () => {
    const { files } = generateBuildContext(input(minimalSpec({ onboarding: true })));
    expect(lines(files['ib/packages/packages'])).toContain('flightctl-onboarding');
    expect(lines(files['ib/packages/enable'])).toEqual([
      'flightctl-agent.service',
      'flightctl-onboarding-setup.service',
    ]);
  });
});

describe('binding', () => {
  it('early: writes the agent config with the enrollment certificate (secret, mode 0600 by the script)', () => {
    const enrollment = { ...fakeEnrollment(), enrollmentUiEndpoint: 'https://ui.example' };
    const spec = minimalSpec({
      binding: { type: 'early' },
      customizations: {
        agentConfig: {
          specFetchInterval: '30s',
          statusUpdateInterval: '2m',
          defaultLabels: { on: 'yes', 'example.com/zone': '01', a: '' },
          systemInfo: ['hostname', 'kernel'],
          logLevel: 'debug',
          tpm: { enabled: true, devicePath: '/dev/tpmrm0' },
        },
      },
    });
    const { files, secretFiles, containerfile } = generateBuildContext(input(spec, { enrollment }));
    expect(secretFiles).toEqual(['ib/agent/config.yaml']);
    expect(files['ib/agent/config-path']).toBe('/etc/flightctl/config.yaml');
    expect(files['ib/agent/dropin.yaml']).toBeUndefined();
    expect(lines(files['ib/packages/packages'])).not.toContain('ignition');
    const yaml = files['ib/agent/config.yaml'] as string;
    // The agent parses YAML 1.1: check with a 1.1 parser that every value keeps its type.
    expect(parse(yaml, { version: '1.1' })).toEqual({
      'enrollment-service': {
        authentication: {
          'client-certificate-data': Buffer.from(enrollment.clientCertificatePem).toString('base64'),
          'client-key-data': Buffer.from(enrollment.clientKeyPem).toString('base64'),
        },
        'enrollment-ui-endpoint': 'https://ui.example',
        service: {
          'certificate-authority-data': Buffer.from(enrollment.certificateAuthorityPem).toString('base64'),
          server: enrollment.server,
        },
      },
      'spec-fetch-interval': '30s',
      'status-update-interval': '2m',
      'default-labels': { a: '', 'example.com/zone': '01', on: 'yes' },
      'system-info': ['hostname', 'kernel'],
      'log-level': 'debug',
      tpm: { enabled: true, 'device-path': '/dev/tpmrm0' },
    });
    expect(containerfile).not.toContain('BEGIN');
    expect(yaml).not.toContain('BEGIN'); // base64-encoded, as the agent expects *-data fields
  });

  it('early: refuses to build without the enrollment certificate', () => {
    expect(() => generateBuildContext(input(minimalSpec({ binding: { type: 'early' } })))).toThrow(
      /enrollment/,
    );
  });

  it('late: installs ignition, afterburn and cloud-init; agent settings go to a conf.d drop-in', () => {
    const bare = generateBuildContext(input(minimalSpec()));
    expect(lines(bare.files['ib/packages/packages'])).toEqual([
      'flightctl-agent',
      'ignition',
      'afterburn',
      'cloud-init',
    ]);
    expect(bare.files['ib/agent/config.yaml']).toBeUndefined();
    expect(bare.files['ib/agent/dropin.yaml']).toBeUndefined();
    expect(bare.secretFiles).toEqual([]);
    const tuned = generateBuildContext(
      withCustomizations({ agentConfig: { logLevel: 'warn', systemInfo: [] } }),
    );
    expect(parse(tuned.files['ib/agent/dropin.yaml'] as string)).toEqual({
      'log-level': 'warn',
      'system-info': [],
    });
    expect(tuned.files['ib/agent/config.yaml']).toBeUndefined();
  });

  it('takes the agent config path from the settings', () => {
    const build = input(minimalSpec({ binding: { type: 'early' } }), {
      enrollment: fakeEnrollment(),
      settings: { agentConfigPath: '/usr/local/etc/flightctl/agent.yaml' },
    });
    expect(generateBuildContext(build).files['ib/agent/config-path']).toBe(
      '/usr/local/etc/flightctl/agent.yaml',
    );
  });
});

describe('userConfiguration', () => {
  it('creates the user in wheel with /bin/bash, passwordless sudo and the authorized key', () => {
    const { files } = generateBuildContext(
      input(minimalSpec({ userConfiguration: { username: 'admin', publickey: ED25519_KEY } })),
    );
    expect(files['ib/system/users/0000/name']).toBe('admin');
    expect(files['ib/system/users/0000/groups']).toBe('wheel\n');
    expect(files['ib/system/users/0000/shell']).toBe('/bin/bash');
    expect(files['ib/system/users/0000/sudoers']).toBe('admin ALL=(ALL) NOPASSWD: ALL\n');
    expect(files['ib/system/users/0000/authorized_keys']).toBe(`${ED25519_KEY}\n`);
  });
});

describe('customizations', () => {
  it('packages, COPR repositories and repository files, deduplicated against the agent packages', () => {
    const { files } = generateBuildContext(
      withCustomizations({
        packages: ['vim-enhanced', 'cloud-init', 'gcc-c++'],
        coprRepos: ['@redhat-et/flightctl', 'owner/project'],
        enableRepos: ['https://example.com/a.repo?x=$(id)&y=;', DEFAULT_AGENT_REPO_URL],
      }),
    );
    expect(lines(files['ib/packages/packages'])).toEqual([
      'flightctl-agent',
      'ignition',
      'afterburn',
      'cloud-init',
      'vim-enhanced',
      'gcc-c++',
    ]);
    expect(lines(files['ib/packages/copr'])).toEqual(['@redhat-et/flightctl', 'owner/project']);
    expect(lines(files['ib/packages/repos'])).toEqual([
      DEFAULT_AGENT_REPO_URL,
      'https://example.com/a.repo?x=$(id)&y=;',
    ]);
  });

  it('users: groups, shell, password hash and SSH keys, after userConfiguration', () => {
    const { files } = generateBuildContext(
      withCustomizations(
        {
          users: [
            {
              name: 'svc',
              groups: ['docker', 'wheel'],
              shell: '/usr/bin/zsh',
              passwordHash: '$6$s$h./',
              sshKeys: [RSA_KEY, ED25519_KEY],
            },
            { name: 'bare' },
          ],
        },
        { userConfiguration: { username: 'admin', publickey: ED25519_KEY } },
      ),
    );
    expect(files['ib/system/users/0001/name']).toBe('svc');
    expect(files['ib/system/users/0001/groups']).toBe('docker\nwheel\n');
    expect(files['ib/system/users/0001/shell']).toBe('/usr/bin/zsh');
    expect(files['ib/system/users/0001/password-hash']).toBe('$6$s$h./');
    expect(files['ib/system/users/0001/authorized_keys']).toBe(`${RSA_KEY}\n${ED25519_KEY}\n`);
    expect(files['ib/system/users/0001/sudoers']).toBeUndefined();
    expect(files['ib/system/users/0002/name']).toBe('bare');
    expect(files['ib/system/users/0002/groups']).toBe('');
    expect(Object.keys(files).filter((k) => k.startsWith('ib/system/users/0002/'))).toEqual([
      'ib/system/users/0002/groups',
      'ib/system/users/0002/name',
    ]);
  });

  it('files: plain or base64 (made canonical), mode (default 0644), owner', () => {
    const { files } = generateBuildContext(
      withCustomizations({
        files: [
          {
            path: '/etc/a b/$(x).conf',
            content: 'x=`id`\n<<EOF\n',
            user: 'svc',
            group: 'docker',
            mode: '600',
          },
          { path: '/usr/bin/tool', content: 'AAEC\nAw==\n', encoding: 'base64', mode: '4755' },
          { path: '/etc/g', content: '', group: 'wheel' },
        ],
      }),
    );
    expect(files['ib/system/files/0000/path']).toBe('/etc/a b/$(x).conf');
    expect(files['ib/system/files/0000/content']).toBe('x=`id`\n<<EOF\n');
    expect(files['ib/system/files/0000/mode']).toBe('600');
    expect(files['ib/system/files/0000/user']).toBe('svc');
    expect(files['ib/system/files/0000/group']).toBe('docker');
    expect(files['ib/system/files/0001/content.b64']).toBe('AAECAw==');
    expect(files['ib/system/files/0001/content']).toBeUndefined();
    expect(files['ib/system/files/0002/mode']).toBe('0644');
    expect(files['ib/system/files/0002/user']).toBeUndefined();
  });

  it('systemd units: content, enabled by default', () => {
    const { files } = generateBuildContext(
      withCustomizations({
        systemdUnits: [
          { name: 'app.service', content: '[Service]\nExecStart=/bin/app "$1"\n' },
          { name: 'job@.timer', content: '[Timer]\n', enabled: false },
        ],
      }),
    );
    expect(files['ib/system/units/0000/name']).toBe('app.service');
    expect(files['ib/system/units/0000/content']).toBe('[Service]\nExecStart=/bin/app "$1"\n');
    expect(files['ib/system/units/0000/enable']).toBe('');
    expect(files['ib/system/units/0001/enable']).toBeUndefined();
  });

  it('build scripts, in order', () => {
    const { files } = generateBuildContext(
      withCustomizations({
        scripts: [
          { name: 'b-second', content: '#!/bin/bash\necho 1\n' },
          { name: 'a-first', content: 'echo 2' },
        ],
      }),
    );
    expect(files['ib/scripts/0000/name']).toBe('b-second');
    expect(files['ib/scripts/0001/content']).toBe('echo 2');
  });
});

describe('validation beyond the schema (400 naming the field)', () => {
  const file = (path: string, content = 'x', extra: object = {}) => ({ path, content, ...extra });
  const cases: Array<[string, Customizations, Partial<ImageBuildSpec>, string, RegExp]> = [
    [
      'base64 that does not decode',
      { files: [file('/a'), file('/b'), file('/c', 'not base64!', { encoding: 'base64' })] },
      {},
      'spec.customizations.files[2].content',
      /not valid base64/,
    ],
    [
      'base64 without padding',
      { files: [file('/a', 'QUJD RA', { encoding: 'base64' })] },
      {},
      'spec.customizations.files[0].content',
      /base64/,
    ],
    [
      'base64 decoding past 256 KiB',
      { files: [file('/a', Buffer.alloc(262145).toString('base64'), { encoding: 'base64' })] },
      {},
      'spec.customizations.files[0].content',
      /262145 bytes, more than the 262144/,
    ],
    [
      'plain content past 256 KiB of UTF-8',
      { files: [file('/a', 'é'.repeat(131073))] },
      {},
      'spec.customizations.files[0].content',
      /262146 bytes/,
    ],
    [
      'content that is not Unicode',
      { files: [file('/a', 'a\ud800b')] },
      {},
      'spec.customizations.files[0].content',
      /surrogate/,
    ],
    [
      'duplicate file paths',
      { files: [file('/etc/x'), file('/etc/y'), file('/etc/x')] },
      {},
      'spec.customizations.files[2].path',
      /duplicate file path/,
    ],
    [
      'a path under /proc',
      { files: [file('/proc/sys/kernel/x')] },
      {},
      'spec.customizations.files[0].path',
      /may not be under/,
    ],
    [
      'a path under /sys',
      { files: [file('/sys')] },
      {},
      'spec.customizations.files[0].path',
      /may not be under/,
    ],
    [
      'a path under /dev',
      { files: [file('/dev/sda')] },
      {},
      'spec.customizations.files[0].path',
      /may not be under/,
    ],
    [
      'a path in the staging area',
      { files: [file('/tmp/imagebuilder/agent/run.sh')] },
      {},
      'spec.customizations.files[0].path',
      /may not be under/,
    ],
    [
      'the agent config path',
      { files: [file('/etc/flightctl/config.yaml')] },
      {},
      'spec.customizations.files[0].path',
      /agent config/,
    ],
    ['a relative path', { files: [file('etc/x')] }, {}, 'spec.customizations.files[0].path', /invalid/],
    ['a .. segment', { files: [file('/etc/../x')] }, {}, 'spec.customizations.files[0].path', /invalid/],
    [
      'a newline in a path',
      { files: [file('/etc/x\ny')] },
      {},
      'spec.customizations.files[0].path',
      /invalid/,
    ],
    ['a NUL in a path', { files: [file('/etc/x\0')] }, {}, 'spec.customizations.files[0].path', /invalid/],
    [
      'a bad mode',
      { files: [file('/a', 'x', { mode: '0999' })] },
      {},
      'spec.customizations.files[0].mode',
      /invalid/,
    ],
    [
      'a bad owner',
      { files: [file('/a', 'x', { user: 'Root' })] },
      {},
      'spec.customizations.files[0].user',
      /invalid/,
    ],
    [
      'duplicate user names',
      { users: [{ name: 'a' }, { name: 'a' }] },
      {},
      'spec.customizations.users[1].name',
      /duplicate user name/,
    ],
    [
      'a user that is also userConfiguration',
      { users: [{ name: 'admin' }] },
      { userConfiguration: { username: 'admin', publickey: ED25519_KEY } },
      'spec.customizations.users[0].name',
      /also spec.userConfiguration.username/,
    ],
    [
      'a user name with shell syntax',
      { users: [{ name: 'a;id' }] },
      {},
      'spec.customizations.users[0].name',
      /invalid/,
    ],
    [
      'duplicate groups',
      { users: [{ name: 'a', groups: ['x', 'x'] }] },
      {},
      'spec.customizations.users[0].groups[1]',
      /duplicate/,
    ],
    [
      'a password in clear',
      { users: [{ name: 'a', passwordHash: 'hunter2' }] },
      {},
      'spec.customizations.users[0].passwordHash',
      /invalid/,
    ],
    [
      'an SSH key with shell syntax',
      { users: [{ name: 'a', sshKeys: ['ssh-rsa AAAA $(id)'] }] },
      {},
      'spec.customizations.users[0].sshKeys[0]',
      /invalid/,
    ],
    [
      'a unit name that is not one',
      { systemdUnits: [{ name: 'app', content: '' }] },
      {},
      'spec.customizations.systemdUnits[0].name',
      /invalid/,
    ],
    [
      'a unit name that reads as an option',
      { systemdUnits: [{ name: '-now.service', content: '' }] },
      {},
      'spec.customizations.systemdUnits[0].name',
      /may not start/,
    ],
    [
      'a hidden unit name',
      { systemdUnits: [{ name: '..service', content: '' }] },
      {},
      'spec.customizations.systemdUnits[0].name',
      /may not start/,
    ],
    [
      'duplicate unit names',
      {
        systemdUnits: [
          { name: 'a.service', content: '' },
          { name: 'a.service', content: '' },
        ],
      },
      {},
      'spec.customizations.systemdUnits[1].name',
      /duplicate unit name/,
    ],
    [
      'a unit past 64 KiB',
      { systemdUnits: [{ name: 'a.service', content: 'x'.repeat(65537) }] },
      {},
      'spec.customizations.systemdUnits[0].content',
      /65537 bytes/,
    ],
    [
      'a NUL in a unit',
      { systemdUnits: [{ name: 'a.service', content: 'a\0' }] },
      {},
      'spec.customizations.systemdUnits[0].content',
      /NUL/,
    ],
    [
      'duplicate script names',
      {
        scripts: [
          { name: 's', content: '' },
          { name: 's', content: '' },
        ],
      },
      {},
      'spec.customizations.scripts[1].name',
      /duplicate script name/,
    ],
    [
      'a script past 64 KiB',
      { scripts: [{ name: 's', content: 'x'.repeat(65537) }] },
      {},
      'spec.customizations.scripts[0].content',
      /65537 bytes/,
    ],
    [
      'a package name with a space',
      { packages: ['vim; id'] },
      {},
      'spec.customizations.packages[0]',
      /invalid/,
    ],
    [
      'a package that reads as an option',
      { packages: ['--nogpgcheck'] },
      {},
      'spec.customizations.packages[0]',
      /invalid/,
    ],
    [
      'a repository URL with a newline',
      { enableRepos: ['https://x/a\nb'] },
      {},
      'spec.customizations.enableRepos[0]',
      /invalid/,
    ],
    ['a COPR name with a space', { coprRepos: ['a/b c'] }, {}, 'spec.customizations.coprRepos[0]', /invalid/],
    [
      'a bad interval',
      { agentConfig: { specFetchInterval: '10 s' } },
      {},
      'spec.customizations.agentConfig.specFetchInterval',
      /invalid/,
    ],
    [
      'a bad label',
      { agentConfig: { defaultLabels: { ok: 'a"b' } } },
      {},
      'spec.customizations.agentConfig.defaultLabels["ok"]',
      /invalid/,
    ],
    [
      'a bad TPM path',
      { agentConfig: { tpm: { enabled: true, devicePath: '/dev/../x' } } },
      {},
      'spec.customizations.agentConfig.tpm.devicePath',
      /invalid/,
    ],
    [
      'too many files',
      { files: Array.from({ length: 101 }, (_, i) => file(`/f${i}`)) },
      {},
      'spec.customizations.files',
      /101 items/,
    ],
  ];
  it.each(cases)('rejects %s', (_name, customizations, extra, field, message) => {
    const err = invalid(withCustomizations(customizations, extra));
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
    expect(err.code).toBe(400);
  });

  it('rejects more than 1 MiB of files, units and scripts in total', () => {
    const content = Buffer.alloc(200 * 1024).toString('base64');
    const err = invalid(
      withCustomizations({
        files: Array.from({ length: 6 }, (_, i) => ({
          path: `/f${i}`,
          content,
          encoding: 'base64' as const,
        })),
      }),
    );
    expect(err.field).toBe('spec.customizations');
  });

  it('keeps its copies of the schema patterns equal to openapi.yaml', () => {
    const doc = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8'));
    const schemas = doc.components.schemas;
    const c = schemas.Customizations.properties;
    const user = c.users.items.properties;
    const fileProps = c.files.items.properties;
    const agent = c.agentConfig.properties;
    const expected: Record<keyof typeof PATTERNS, string> = {
      registry: schemas.RepositorySpec.properties.registry.pattern,
      imageName: schemas.ImageName.pattern,
      imageTag: schemas.ImageTag.pattern,
      username: schemas.Username.pattern,
      groupName: schemas.GroupName.pattern,
      sshPublicKey: schemas.SshPublicKey.pattern,
      package: c.packages.items.pattern,
      coprRepo: c.coprRepos.items.pattern,
      repoUrl: c.enableRepos.items.pattern,
      shell: user.shell.pattern,
      passwordHash: user.passwordHash.pattern,
      filePath: fileProps.path.pattern,
      mode: fileProps.mode.pattern,
      unitName: c.systemdUnits.items.properties.name.pattern,
      scriptName: c.scripts.items.properties.name.pattern,
      interval: agent.specFetchInterval.pattern,
      labelKey: schemas.LabelMap.propertyNames.pattern,
      labelValue: schemas.LabelMap.additionalProperties.pattern,
      systemInfo: agent.systemInfo.items.pattern,
      tpmDevicePath: agent.tpm.properties.devicePath.pattern,
    };
    for (const [name, pattern] of Object.entries(expected)) {
      expect(new RegExp(pattern).source, name).toBe(PATTERNS[name as keyof typeof PATTERNS].source);
    }
  });
});

describe('bench', () => {
  it('generates the largest allowed spec (~1 MB body) in well under 5 ms', () => {
    const result = benchContainerfileGeneration(100);
    expect(result.bodyBytes).toBeGreaterThan(900_000);
    expect(result.bodyBytes).toBeLessThanOrEqual(1024 * 1024);
    // Generous here (shared CI machines); the bench reports the real figure.
    expect(result.p50Ms).toBeLessThan(25);
  });
});
