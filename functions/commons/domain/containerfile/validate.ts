// The rules about an ImageBuild spec that openapi.yaml cannot say (decoded sizes, duplicates, reserved
// paths, unit names that read as options), plus a second check of every value that becomes a command
// argument or the FROM reference. The generated validators enforce the schema at the API; the generator
// checks again because it must be safe whatever it is handed (a stored spec, a test, a future caller).
import { InvalidError } from '../errors.js';
import type { ImageBuildSpec } from '../types.js';

/** Copies of openapi.yaml patterns (a unit test keeps them equal to the schema's). */
export const PATTERNS = {
  registry:
    /^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$/,
  imageName: /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/,
  imageTag: /^[\w][\w.-]{0,127}$/,
  username: /^[a-z_][a-z0-9_-]{0,31}$/,
  groupName: /^[a-z_][a-z0-9_-]{0,31}$/,
  sshPublicKey:
    /^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._+:,= -]*)?$/,
  package: /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/,
  coprRepo: /^@?[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.+-]*$/,
  repoUrl: /^https?:\/\/[A-Za-z0-9._~:/?#@!$&()*+,;=%-]+$/,
  shell: /^\/[A-Za-z0-9._/-]+$/,
  passwordHash: /^\$[A-Za-z0-9]{1,8}\$[A-Za-z0-9./$=,+-]+$/,
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is exactly what a path may not contain
  filePath: /^(\/(?!\.\.?(\/|$))[^/\x00\n\r]+)+$/,
  mode: /^0?[0-7]{3,4}$/,
  unitName:
    /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|socket|timer|path|mount|automount|target|slice|swap)$/,
  scriptName: /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
  interval: /^[0-9]{1,6}(ms|s|m|h)$/,
  labelKey:
    /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/,
  labelValue: /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/,
  systemInfo: /^[A-Za-z][A-Za-z0-9_]{0,63}$/,
  tpmDevicePath: /^\/dev\/[A-Za-z0-9]+$/,
} as const;

/** Limits in bytes of decoded content (the schema counts characters of the JSON string). */
export const LIMITS = {
  fileBytes: 256 * 1024,
  unitBytes: 64 * 1024,
  scriptBytes: 64 * 1024,
  /** All files, units and scripts together: what a 1 MiB request body can carry. */
  totalBytes: 1024 * 1024,
  files: 100,
  units: 50,
  scripts: 20,
  users: 20,
  packages: 200,
  coprRepos: 20,
  enableRepos: 20,
  groupsPerUser: 32,
  sshKeysPerUser: 32,
} as const;

/** Paths a file may not be written under: kernel filesystems, and the build's own staging area. */
export const RESERVED_PATH_PREFIXES = ['/proc', '/sys', '/dev', '/tmp/imagebuilder'] as const;

const LOG_LEVELS = new Set(['debug', 'info', 'warn', 'error']);
const BASE64_WHITESPACE = /[\t\n\r ]/;
const BASE64_WHITESPACE_ALL = /[\t\n\r ]/g;
/** A UTF-16 surrogate not part of a pair: such a string has no UTF-8 form. */
const LONE_SURROGATE = /\p{Cs}/u;

function check(ok: boolean, field: string, detail: string): void {
  if (!ok) throw new InvalidError(field, detail);
}

function checkPattern(value: unknown, pattern: RegExp, field: string, max = Number.POSITIVE_INFINITY): void {
  check(typeof value === 'string' && value.length <= max && pattern.test(value), field, `invalid value`);
}

function checkText(value: unknown, field: string, maxBytes: number): number {
  check(typeof value === 'string', field, 'must be a string');
  const text = value as string;
  check(!LONE_SURROGATE.test(text), field, 'is not valid Unicode (unpaired surrogate)');
  const bytes = Buffer.byteLength(text, 'utf8');
  check(bytes <= maxBytes, field, `is ${bytes} bytes, more than the ${maxBytes} allowed`);
  return bytes;
}

function checkArray(value: unknown, field: string, max: number): unknown[] {
  if (value === undefined) return [];
  check(Array.isArray(value), field, 'must be an array');
  const list = value as unknown[];
  check(list.length <= max, field, `has ${list.length} items, more than the ${max} allowed`);
  return list;
}

function checkUnique(seen: Map<string, string>, key: string, field: string, what: string): void {
  const first = seen.get(key);
  check(first === undefined, field, `duplicate ${what} (also ${first})`);
  seen.set(key, field);
}

/**
 * Canonical base64 of a file's content (line breaks and spaces removed) and its decoded size; throws
 * InvalidError unless it is RFC 4648 base64 with padding. Checked by a decode/encode round trip, which
 * is native code and several times faster than a regular expression on large content.
 */
export function canonicalBase64(content: string, field: string): { base64: string; bytes: number } {
  let base64 = content;
  let decoded = Buffer.from(base64, 'base64');
  if (decoded.toString('base64') !== base64 && BASE64_WHITESPACE.test(base64)) {
    base64 = base64.replace(BASE64_WHITESPACE_ALL, '');
    decoded = Buffer.from(base64, 'base64');
  }
  check(decoded.toString('base64') === base64, field, 'is not valid base64');
  const bytes = decoded.length;
  check(
    bytes <= LIMITS.fileBytes,
    field,
    `decodes to ${bytes} bytes, more than the ${LIMITS.fileBytes} allowed`,
  );
  return { base64, bytes };
}

export function isReservedPath(path: string): boolean {
  return RESERVED_PATH_PREFIXES.some((prefix) => path === prefix || path.startsWith(`${prefix}/`));
}

/** Checks the source image reference that goes into FROM; throws InvalidError naming the field. */
export function checkImageReference(registry: string, imageName: string, imageTag: string): string {
  checkPattern(registry, PATTERNS.registry, 'spec.source.repository', 261);
  checkPattern(imageName, PATTERNS.imageName, 'spec.source.imageName', 255);
  checkPattern(imageTag, PATTERNS.imageTag, 'spec.source.imageTag', 128);
  return `${registry}/${imageName}:${imageTag}`;
}

export interface ValidatedExtras {
  /** Per index of `customizations.files`: the canonical (whitespace-free) base64 of base64 files. */
  base64Files: Array<string | undefined>;
}

export interface ValidateOptions {
  /** Absolute path of the agent config in the image; files may not be written there. */
  agentConfigPath: string;
}

/**
 * The rules a schema cannot say, and a second check of every value the build scripts pass as an
 * argument. Throws InvalidError naming the field (e.g. `spec.customizations.files[2].content`).
 */
export function validateBuildSpecExtras(spec: ImageBuildSpec, options: ValidateOptions): ValidatedExtras {
  check(
    spec.binding?.type === 'early' || spec.binding?.type === 'late',
    'spec.binding.type',
    'must be early or late',
  );
  const users = new Map<string, string>();
  if (spec.userConfiguration) {
    const f = 'spec.userConfiguration';
    checkPattern(spec.userConfiguration.username, PATTERNS.username, `${f}.username`);
    checkPattern(spec.userConfiguration.publickey, PATTERNS.sshPublicKey, `${f}.publickey`, 8192);
    users.set(spec.userConfiguration.username, `${f}.username`);
  }
  const c = spec.customizations;
  const base64Files: Array<string | undefined> = [];
  if (!c) return { base64Files };
  const f = 'spec.customizations';

  checkArray(c.packages, `${f}.packages`, LIMITS.packages).forEach((p, i) => {
    checkPattern(p, PATTERNS.package, `${f}.packages[${i}]`);
  });
  checkArray(c.coprRepos, `${f}.coprRepos`, LIMITS.coprRepos).forEach((p, i) => {
    checkPattern(p, PATTERNS.coprRepo, `${f}.coprRepos[${i}]`, 256);
  });
  checkArray(c.enableRepos, `${f}.enableRepos`, LIMITS.enableRepos).forEach((p, i) => {
    checkPattern(p, PATTERNS.repoUrl, `${f}.enableRepos[${i}]`, 2048);
  });

  checkArray(c.users, `${f}.users`, LIMITS.users).forEach((raw, i) => {
    const u = raw as NonNullable<typeof c.users>[number];
    const uf = `${f}.users[${i}]`;
    checkPattern(u.name, PATTERNS.username, `${uf}.name`);
    checkUnique(users, u.name, `${uf}.name`, 'user name');
    const groups = new Map<string, string>();
    checkArray(u.groups, `${uf}.groups`, LIMITS.groupsPerUser).forEach((g, j) => {
      checkPattern(g, PATTERNS.groupName, `${uf}.groups[${j}]`);
      checkUnique(groups, g as string, `${uf}.groups[${j}]`, 'group');
    });
    if (u.shell !== undefined) checkPattern(u.shell, PATTERNS.shell, `${uf}.shell`, 255);
    if (u.passwordHash !== undefined)
      checkPattern(u.passwordHash, PATTERNS.passwordHash, `${uf}.passwordHash`, 1024);
    checkArray(u.sshKeys, `${uf}.sshKeys`, LIMITS.sshKeysPerUser).forEach((k, j) => {
      checkPattern(k, PATTERNS.sshPublicKey, `${uf}.sshKeys[${j}]`, 8192);
    });
  });

  let total = 0;
  const paths = new Map<string, string>();
  const agentDir = options.agentConfigPath.slice(0, options.agentConfigPath.lastIndexOf('/'));
  const agentPaths = new Set([options.agentConfigPath, `${agentDir}/conf.d/50-imagebuilder.yaml`]);
  checkArray(c.files, `${f}.files`, LIMITS.files).forEach((raw, i) => {
    const file = raw as NonNullable<typeof c.files>[number];
    const ff = `${f}.files[${i}]`;
    checkPattern(file.path, PATTERNS.filePath, `${ff}.path`, 1024);
    check(!LONE_SURROGATE.test(file.path), `${ff}.path`, 'is not valid Unicode (unpaired surrogate)');
    check(!isReservedPath(file.path), `${ff}.path`, `may not be under ${RESERVED_PATH_PREFIXES.join(', ')}`);
    check(!agentPaths.has(file.path), `${ff}.path`, 'is the agent config, which the build writes');
    checkUnique(paths, file.path, `${ff}.path`, 'file path');
    check(
      file.encoding === undefined || file.encoding === 'plain' || file.encoding === 'base64',
      `${ff}.encoding`,
      'must be plain or base64',
    );
    if (file.encoding === 'base64') {
      check(typeof file.content === 'string', `${ff}.content`, 'must be a string');
      const decoded = canonicalBase64(file.content, `${ff}.content`);
      base64Files[i] = decoded.base64;
      total += decoded.bytes;
    } else {
      total += checkText(file.content, `${ff}.content`, LIMITS.fileBytes);
    }
    if (file.mode !== undefined) checkPattern(file.mode, PATTERNS.mode, `${ff}.mode`);
    if (file.user !== undefined) checkPattern(file.user, PATTERNS.username, `${ff}.user`);
    if (file.group !== undefined) checkPattern(file.group, PATTERNS.groupName, `${ff}.group`);
  });

  const units = new Map<string, string>();
  checkArray(c.systemdUnits, `${f}.systemdUnits`, LIMITS.units).forEach((raw, i) => {
    const unit = raw as NonNullable<typeof c.systemdUnits>[number];
    const uf = `${f}.systemdUnits[${i}]`;
    checkPattern(unit.name, PATTERNS.unitName, `${uf}.name`, 255);
    check(!/^[-.]/.test(unit.name), `${uf}.name`, 'may not start with "-" or "."');
    checkUnique(units, unit.name, `${uf}.name`, 'unit name');
    total += checkText(unit.content, `${uf}.content`, LIMITS.unitBytes);
    check(!unit.content.includes('\0'), `${uf}.content`, 'contains a NUL character');
  });

  const scripts = new Map<string, string>();
  checkArray(c.scripts, `${f}.scripts`, LIMITS.scripts).forEach((raw, i) => {
    const script = raw as NonNullable<typeof c.scripts>[number];
    const sf = `${f}.scripts[${i}]`;
    checkPattern(script.name, PATTERNS.scriptName, `${sf}.name`);
    checkUnique(scripts, script.name, `${sf}.name`, 'script name');
    total += checkText(script.content, `${sf}.content`, LIMITS.scriptBytes);
  });
  check(
    total <= LIMITS.totalBytes,
    f,
    `files, units and scripts add up to ${total} bytes, more than ${LIMITS.totalBytes}`,
  );

  const a = c.agentConfig;
  if (a) {
    const af = `${f}.agentConfig`;
    if (a.specFetchInterval !== undefined)
      checkPattern(a.specFetchInterval, PATTERNS.interval, `${af}.specFetchInterval`);
    if (a.statusUpdateInterval !== undefined)
      checkPattern(a.statusUpdateInterval, PATTERNS.interval, `${af}.statusUpdateInterval`);
    for (const [k, v] of Object.entries(a.defaultLabels ?? {})) {
      const lf = `${af}.defaultLabels[${JSON.stringify(k)}]`;
      checkPattern(k, PATTERNS.labelKey, lf, 317);
      checkPattern(v, PATTERNS.labelValue, lf, 63);
    }
    checkArray(a.systemInfo, `${af}.systemInfo`, 32).forEach((s, i) => {
      checkPattern(s, PATTERNS.systemInfo, `${af}.systemInfo[${i}]`);
    });
    if (a.logLevel !== undefined)
      check(LOG_LEVELS.has(a.logLevel), `${af}.logLevel`, 'must be debug, info, warn or error');
    if (a.tpm?.devicePath !== undefined)
      checkPattern(a.tpm.devicePath, PATTERNS.tpmDevicePath, `${af}.tpm.devicePath`);
  }
  return { base64Files };
}
