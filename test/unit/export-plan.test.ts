// The export plan: the exact bootc-image-builder command line of every format, what each format's file
// is, and bib's config.toml, which no user input can break (parsed back with a strict parser of the
// TOML subset written, and with Python's tomllib when it is installed).
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidError } from '../../functions/commons/domain/errors.js';
import {
  artifactFor,
  BIB_IMAGE,
  type BibArgumentsInput,
  bibArguments,
  bibConfigFor,
  bibConfigToml,
  bibOutputFile,
  tomlString,
} from '../../functions/commons/domain/export-plan.js';
import { EXPORT_FORMATS, type ExportFormat } from '../../functions/commons/domain/types.js';

const REF = `registry.example.com:5000/edge/os@sha256:${'ab'.repeat(32)}`;
const base = (format: ExportFormat, extra: Partial<BibArgumentsInput> = {}): BibArgumentsInput => ({
  format,
  imageRef: REF,
  rootfs: 'xfs',
  configPath: '/work/export/config.toml',
  outputDir: '/work/export/output',
  ...extra,
});

const PODMAN = [
  'podman',
  'run',
  '--rm',
  '--privileged',
  '--pull=missing',
  '--security-opt',
  'label=type:unconfined_t',
  '-v',
  '/var/lib/containers/storage:/var/lib/containers/storage',
  '-v',
  '/work/export/config.toml:/config.toml:ro',
  '-v',
  '/work/export/output:/output',
];
const bib = (type: string) => [
  BIB_IMAGE,
  '--type',
  type,
  '--rootfs',
  'xfs',
  '--local',
  '--config',
  '/config.toml',
  '--output',
  '/output',
];

function invalid(fn: () => unknown): InvalidError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidError);
    return err as InvalidError;
  }
  throw new Error('expected an InvalidError');
}

describe('bibArguments', () => {
  it('pins bootc-image-builder by digest', () => {
    expect(BIB_IMAGE).toMatch(/^quay\.io\/centos-bootc\/bootc-image-builder@sha256:[0-9a-f]{64}$/);
  });

  it('runs the deployment’s bootc-image-builder when it names one, by digest only', () => {
    const mine = `registry.example.com/mirror/bootc-image-builder@sha256:${'b'.repeat(64)}`;
    const argv = bibArguments(base('qcow2', { bibImage: mine }));
    expect(argv).toContain(mine);
    expect(argv).not.toContain(BIB_IMAGE);
    for (const bibImage of [
      'quay.io/centos-bootc/bootc-image-builder:latest',
      `--privileged@sha256:${'b'.repeat(64)}`,
    ]) {
      expect(invalid(() => bibArguments(base('qcow2', { bibImage }))).field).toBe('bibImage');
    }
  });

  it.each([
    ['qcow2', 'qcow2'],
    ['vmdk', 'vmdk'],
    ['iso', 'iso'],
    ['raw', 'raw'],
    ['vhd', 'vpc'],
    ['gce', 'gce'],
    ['anaconda-iso', 'anaconda-iso'],
    ['qcow2-disk-container', 'qcow2'],
  ] as const)('%s → podman run … --type %s', (format, type) => {
    expect(bibArguments(base(format))).toEqual([...PODMAN, ...bib(type), REF]);
  });

  it('ami: bib uploads and registers, with the run’s AWS environment and the host network', () => {
    const argv = bibArguments(
      base('ami', {
        rootfs: 'ext4',
        awsAmi: { bucket: 'ib-artifacts-123', region: 'eu-west-1', amiName: 'edge-os v1 (x86_64)' },
      }),
    );
    expect(argv).toEqual([
      ...PODMAN,
      '--env',
      'AWS_*',
      '--net',
      'host',
      BIB_IMAGE,
      '--type',
      'ami',
      '--rootfs',
      'ext4',
      '--local',
      '--config',
      '/config.toml',
      '--output',
      '/output',
      '--aws-bucket',
      'ib-artifacts-123',
      '--aws-region',
      'eu-west-1',
      '--aws-ami-name',
      'edge-os v1 (x86_64)',
      REF,
    ]);
  });

  it('covers every export format', () => {
    for (const format of EXPORT_FORMATS) {
      const argv = bibArguments(
        base(
          format,
          format === 'ami' ? { awsAmi: { bucket: 'b-1', region: 'us-east-1', amiName: 'x-1' } } : {},
        ),
      );
      expect(argv[argv.indexOf('--type') + 1]).toBe(artifactFor(format).bibType);
      expect(argv.at(-1)).toBe(REF);
    }
  });

  it('refuses values that could be read as options or break a -v mount', () => {
    for (const imageRef of [
      'registry.example.com/edge/os:v1', // a tag, not a digest
      `--rm registry.example.com/edge/os@sha256:${'a'.repeat(64)}`,
      `-v/etc:/x@sha256:${'a'.repeat(64)}`,
      `registry.example.com/Edge/os@sha256:${'a'.repeat(64)}`,
      `registry.example.com/edge/os@sha256:${'a'.repeat(63)}`,
      `os@sha256:${'a'.repeat(64)}`,
    ]) {
      expect(invalid(() => bibArguments(base('qcow2', { imageRef }))).field).toBe('imageRef');
    }
    for (const configPath of ['config.toml', '/a:/b', '/a,ro', '/a/../etc/shadow', '/a b', '/a\nb']) {
      expect(invalid(() => bibArguments(base('qcow2', { configPath }))).field).toBe('configPath');
    }
    expect(invalid(() => bibArguments(base('qcow2', { outputDir: '/out:/etc' }))).field).toBe('outputDir');
    expect(invalid(() => bibArguments(base('qcow2', { rootfs: 'ntfs' as never }))).field).toBe('rootfs');
  });

  it('needs the AMI target with ami only, and checks it', () => {
    expect(invalid(() => bibArguments(base('ami'))).message).toBe('awsAmi: is required for format ami');
    const target = { bucket: 'bucket-1', region: 'eu-west-1', amiName: 'edge-os' };
    expect(invalid(() => bibArguments(base('qcow2', { awsAmi: target }))).message).toBe(
      'awsAmi: is only for format ami',
    );
    const bad = (awsAmi: typeof target) => invalid(() => bibArguments(base('ami', { awsAmi }))).field;
    expect(bad({ ...target, bucket: 'Bucket_1' })).toBe('awsAmi.bucket');
    expect(bad({ ...target, bucket: '--aws-region' })).toBe('awsAmi.bucket');
    expect(bad({ ...target, region: 'europe' })).toBe('awsAmi.region');
    expect(bad({ ...target, amiName: 'a;b' })).toBe('awsAmi.amiName');
    expect(bad({ ...target, amiName: 'ab' })).toBe('awsAmi.amiName');
  });
});

describe('artifactFor', () => {
  it('describes each format’s file', () => {
    const table = Object.fromEntries(
      EXPORT_FORMATS.map((f) => {
        const a = artifactFor(f);
        return [
          f,
          `${a.extension} ${a.contentType} ${a.ociArtifactType} ${a.bibType} ${a.bibOutput}` +
            `${a.containerDisk ? ' containerdisk' : ''}${a.local ? ' local' : ''}`,
        ];
      }),
    );
    expect(table).toEqual({
      qcow2: 'qcow2 application/x-qemu-disk application/vnd.diskimage.qcow2 qcow2 qcow2/disk.qcow2 local',
      vmdk: 'vmdk application/x-vmdk application/vnd.diskimage.vmdk vmdk vmdk/disk.vmdk local',
      iso: 'iso application/x-iso9660-image application/vnd.diskimage.iso iso bootiso/install.iso',
      'qcow2-disk-container':
        'qcow2 application/x-qemu-disk application/vnd.diskimage.qcow2 qcow2 qcow2/disk.qcow2 containerdisk local',
      raw: 'raw application/octet-stream application/vnd.diskimage.raw raw image/disk.raw local',
      vhd: 'vhd application/x-vhd application/vnd.diskimage.vhd vpc vpc/disk.vhd local',
      ami: 'raw application/octet-stream application/vnd.diskimage.ami ami image/disk.raw',
      gce: 'tar.gz application/gzip application/vnd.diskimage.gce gce gce/image.tar.gz',
      'anaconda-iso':
        'iso application/x-iso9660-image application/vnd.diskimage.iso anaconda-iso bootiso/install.iso',
    });
    expect(artifactFor('qcow2').layerMediaType).toBe('application/x-qemu-disk');
    expect(bibOutputFile('vhd', '/out/')).toBe('/out/vpc/disk.vhd');
    expect(invalid(() => artifactFor('vdi' as ExportFormat)).field).toBe('spec.format');
  });

  it('returns a copy', () => {
    artifactFor('qcow2').extension = 'changed';
    expect(artifactFor('qcow2').extension).toBe('qcow2');
  });
});

// ---- a strict parser of exactly the TOML subset bibConfigToml writes ---------------------------------

interface ParsedConfig {
  customizations?: { user?: Array<Record<string, string | string[]>>; kernel?: Record<string, string> };
}

/** Parses one basic string at `s[i]` (ASCII only, escapes `\"`, `\\`, `\uXXXX`, `\UXXXXXXXX`). */
function parseBasicString(s: string, start: number): [string, number] {
  if (s[start] !== '"') throw new Error(`expected '"' at ${start}`);
  let out = '';
  let i = start + 1;
  for (;;) {
    const ch = s[i];
    if (ch === undefined) throw new Error('unterminated string');
    const code = ch.charCodeAt(0);
    if (code < 0x20 || code >= 0x7f) throw new Error(`raw character U+${code.toString(16)} in a string`);
    if (ch === '"') return [out, i + 1];
    if (ch !== '\\') {
      out += ch;
      i++;
      continue;
    }
    const esc = s[i + 1];
    if (esc === '"' || esc === '\\') {
      out += esc;
      i += 2;
    } else if (esc === 'u' || esc === 'U') {
      const n = esc === 'u' ? 4 : 8;
      const hex = s.slice(i + 2, i + 2 + n);
      if (!new RegExp(`^[0-9A-F]{${n}}$`).test(hex)) throw new Error(`bad \\${esc} escape`);
      const cp = Number.parseInt(hex, 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new Error('escape is not a scalar value');
      if (esc === 'U' && cp <= 0xffff) throw new Error('\\U used for a BMP character');
      out += String.fromCodePoint(cp);
      i += 2 + n;
    } else {
      throw new Error(`unexpected escape \\${esc}`);
    }
  }
}

function parseValue(s: string): string | string[] {
  if (s.startsWith('"')) {
    const [value, end] = parseBasicString(s, 0);
    if (end !== s.length) throw new Error(`trailing characters after a string: ${s.slice(end)}`);
    return value;
  }
  if (!s.startsWith('[')) throw new Error(`unexpected value ${s}`);
  const values: string[] = [];
  let i = 1;
  while (s[i] !== ']') {
    const [value, end] = parseBasicString(s, i);
    values.push(value);
    i = end;
    if (s.startsWith(', ', i)) i += 2;
    else if (s[i] !== ']') throw new Error(`expected ', ' or ']' at ${i}`);
  }
  if (i !== s.length - 1) throw new Error('trailing characters after an array');
  return values;
}

function parseStrict(toml: string): ParsedConfig {
  const result: ParsedConfig = {};
  let table: Record<string, string | string[]> | undefined;
  const lines = toml.split('\n');
  expect(lines.at(-1)).toBe('');
  for (const line of lines.slice(0, -1)) {
    if (line === '' || line.startsWith('# ')) continue;
    if (line === '[[customizations.user]]') {
      table = {};
      result.customizations ??= {};
      result.customizations.user ??= [];
      result.customizations.user.push(table);
      continue;
    }
    if (line === '[customizations.kernel]') {
      table = {};
      result.customizations ??= {};
      result.customizations.kernel = table as Record<string, string>;
      continue;
    }
    const m = /^(name|key|groups|append) = (.*)$/.exec(line);
    if (!m || !table) throw new Error(`unexpected line: ${line}`);
    if (m[1]! in table) throw new Error(`duplicate key ${m[1]}`);
    table[m[1]!] = parseValue(m[2]!);
  }
  return result;
}

const hasTomllib = (() => {
  try {
    execFileSync('python3', ['-c', 'import tomllib'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Python's tomllib (a full TOML 1.0 parser) on several documents at once. */
function parseWithTomllib(docs: string[]): unknown[] {
  const out = execFileSync(
    'python3',
    ['-c', 'import json, sys, tomllib; print(json.dumps([tomllib.loads(d) for d in json.load(sys.stdin)]))'],
    { input: JSON.stringify(docs), encoding: 'utf8' },
  );
  return JSON.parse(out) as unknown[];
}

const HOSTILE = [
  'alice',
  'a"b',
  'a\\b',
  '\\"',
  'x"\n[customizations.kernel]\nappend = "rd.break',
  '"]\ngroups = ["wheel", "root"]\n#',
  "'''multi'''",
  '"""',
  'tab\there',
  'cr\rlf\r\n',
  '\u0000nul\u0001\u001f\u007f',
  '\\u0041 is not A',
  '\\U0001F600',
  'é ü ß ø',
  'emoji 🚀 and 𝄞',
  '\u2028line\u2029separators\ufeff',
  'ends with backslash\\',
  ' ',
  '',
];

describe('bibConfigToml', () => {
  it('writes the build’s user with its key and group wheel', () => {
    const toml = bibConfigToml({
      userConfiguration: { username: 'alice', publickey: 'ssh-ed25519 AAAAC3Nza alice@example.com' },
    });
    expect(toml).toBe(
      [
        '# bootc-image-builder configuration, written by serverless-imagebuilder',
        '',
        '[[customizations.user]]',
        'name = "alice"',
        'key = "ssh-ed25519 AAAAC3Nza alice@example.com"',
        'groups = ["wheel"]',
        '',
      ].join('\n'),
    );
    expect(bibConfigFor({})).toEqual({});
    expect(parseStrict(bibConfigToml({}))).toEqual({});
  });

  it('writes several users and kernel arguments', () => {
    const toml = bibConfigToml({
      users: [{ name: 'a', key: 'k', groups: ['wheel', 'adm'] }, { name: 'b' }],
      kernelAppend: 'console=ttyS0 quiet',
    });
    expect(parseStrict(toml)).toEqual({
      customizations: {
        user: [{ name: 'a', key: 'k', groups: ['wheel', 'adm'] }, { name: 'b' }],
        kernel: { append: 'console=ttyS0 quiet' },
      },
    });
  });

  it('keeps hostile names, keys and groups inside their strings', () => {
    for (const hostile of HOSTILE) {
      const config = {
        users: [{ name: hostile || 'x', key: hostile, groups: [hostile, 'wheel'] }],
        kernelAppend: hostile || 'x',
      };
      const toml = bibConfigToml(config);
      expect(toml).toMatch(/^[\x20-\x7e\n]*$/); // ASCII, and the only line breaks are ours
      expect(toml.split('\n').filter((l) => l.startsWith('['))).toEqual([
        '[[customizations.user]]',
        '[customizations.kernel]',
      ]);
      expect(parseStrict(toml)).toEqual({
        customizations: { user: [config.users[0]], kernel: { append: config.kernelAppend } },
      });
    }
  });

  it('round-trips any string (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), (a, b) => {
        const config = { users: [{ name: `u${a}`, key: b, groups: [a, b] }], kernelAppend: `k${b}` };
        expect(parseStrict(bibConfigToml(config))).toEqual({
          customizations: { user: [config.users[0]], kernel: { append: config.kernelAppend } },
        });
      }),
      { numRuns: 300 },
    );
  });

  it.skipIf(!hasTomllib)('is read back exactly by a full TOML parser (Python tomllib)', () => {
    const docs = HOSTILE.map((h) =>
      bibConfigToml({ users: [{ name: h || 'x', key: h, groups: [h] }], kernelAppend: h || 'x' }),
    );
    const parsed = parseWithTomllib(docs);
    HOSTILE.forEach((h, i) => {
      expect(parsed[i]).toEqual({
        customizations: { user: [{ name: h || 'x', key: h, groups: [h] }], kernel: { append: h || 'x' } },
      });
    });
  });

  it('refuses what TOML cannot hold, and users without a name', () => {
    expect(() => tomlString('lone \ud800 surrogate')).toThrow(InvalidError);
    expect(() => tomlString('\udc00')).toThrow(/lone UTF-16 surrogate/);
    expect(invalid(() => bibConfigToml({ users: [{ name: '' }] })).field).toBe('users[0].name');
    expect(tomlString('a"b\\c\n\u0000é🚀')).toBe('"a\\"b\\\\c\\u000A\\u0000\\u00E9\\U0001F680"');
  });
});
