// Property: whatever strings a schema-valid spec carries (quotes, newlines, $(), backticks, heredoc
// markers, `\` continuations, Unicode) in whatever field, the Containerfile a real Dockerfile parser
// reads is exactly the fixed instruction sequence, no spec string reaches it, the scripts of the context
// are the fixed ones, every value is carried verbatim as data, and the output is deterministic.
import { DockerfileParser } from 'dockerfile-ast';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import {
  type BuildContextInput,
  expectedInstructions,
  generateBuildContext,
} from '../../functions/commons/domain/containerfile/index.js';
import { STAGES } from '../../functions/commons/domain/containerfile/scripts.js';
import { PATTERNS } from '../../functions/commons/domain/containerfile/validate.js';
import type { CustomFile, ImageBuildSpec } from '../../functions/commons/domain/types.js';
import { validateImageBuildBody } from '../../functions/commons/domain/validation.js';
import { fakeEnrollment } from '../fixtures/build-specs.js';

const RUNS = 10_000;

/** Pieces that break naive templating: shell, Containerfile and heredoc syntax, odd Unicode. */
const HOSTILE = [
  '"',
  "'",
  '\n',
  '\r\n',
  '\\',
  '\\\n',
  '$(touch /pwned)',
  '`id`',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${...} is the point
  '${HOME}',
  '$((1+1))',
  ';',
  '&&',
  '|',
  '>',
  '<<EOF',
  '<<-"EOF"',
  'EOF',
  '\nRUN touch /pwned\n',
  '\\\nRUN id',
  '# escape=`',
  '\nFROM scratch',
  '%s%n',
  '\t',
  '\u0000',
  '\u2028',
  '\u202e',
  'é',
  '😀',
  '𝕏',
  ' ',
  '*',
  '-rf',
  '~',
];

const fragment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
);
const hostileText = (maxPieces = 8) => fc.array(fragment, { maxLength: maxPieces }).map((p) => p.join(''));
const matching = (re: RegExp, maxLength: number) =>
  fc.stringMatching(re).filter((s) => s.length <= maxLength);

const segment = hostileText(4).map((s) => {
  const clean = s.replace(/[/\0\n\r]/g, '_');
  return clean === '' || clean === '.' || clean === '..' ? `x${clean}` : clean;
});
const filePath = fc
  .tuple(
    fc.constantFrom('/etc', '/opt', '/usr/share', '/var/lib', '/home/someone', '/srv'),
    fc.array(segment, { minLength: 1, maxLength: 3 }),
  )
  .map(([root, parts]) => `${root}/${parts.join('/')}`)
  .filter((p) => p.length <= 1024 && p !== '/etc/flightctl/config.yaml');
const name = matching(PATTERNS.username, 32);

const file: fc.Arbitrary<CustomFile> = fc.record(
  {
    path: filePath,
    content: hostileText(12),
    mode: matching(PATTERNS.mode, 5),
    user: name,
    group: name,
  },
  { requiredKeys: ['path', 'content'] },
);
const base64File: fc.Arbitrary<CustomFile> = fc
  .tuple(filePath, fc.uint8Array({ maxLength: 64 }), fc.boolean())
  .map(([path, bytes, wrap]) => {
    const b64 = Buffer.from(bytes).toString('base64');
    return { path, encoding: 'base64' as const, content: wrap ? b64.replace(/.{1,8}/g, '$&\n') : b64 };
  });

const sshKey = matching(PATTERNS.sshPublicKey, 8192);
const spec: fc.Arbitrary<ImageBuildSpec> = fc.record(
  {
    source: fc.record({
      repository: fc.constant('src'),
      imageName: matching(PATTERNS.imageName, 255),
      imageTag: matching(PATTERNS.imageTag, 128),
    }),
    destination: fc.constant({ repository: 'dst', imageName: 'out', imageTag: 'v1' }),
    binding: fc.record({ type: fc.constantFrom('early' as const, 'late' as const) }),
    onboarding: fc.boolean(),
    userConfiguration: fc.record({ username: name, publickey: sshKey }),
    customizations: fc.record(
      {
        packages: fc.uniqueArray(matching(PATTERNS.package, 128), { maxLength: 4 }),
        coprRepos: fc.uniqueArray(matching(PATTERNS.coprRepo, 256), { maxLength: 3 }),
        enableRepos: fc.uniqueArray(matching(PATTERNS.repoUrl, 2048), { maxLength: 3 }),
        users: fc.uniqueArray(
          fc.record(
            {
              name,
              groups: fc.uniqueArray(name, { maxLength: 3 }),
              shell: matching(PATTERNS.shell, 255),
              passwordHash: matching(PATTERNS.passwordHash, 1024),
              sshKeys: fc.array(sshKey, { maxLength: 2 }),
            },
            { requiredKeys: ['name'] },
          ),
          { maxLength: 3, selector: (u) => u.name },
        ),
        files: fc.uniqueArray(fc.oneof(file, base64File), { maxLength: 5, selector: (f) => f.path }),
        systemdUnits: fc.uniqueArray(
          fc.record(
            {
              name: matching(PATTERNS.unitName, 255).filter((n) => !/^[-.]/.test(n)),
              content: hostileText(10).map((s) => s.replace(/\0/g, '')),
              enabled: fc.boolean(),
            },
            { requiredKeys: ['name', 'content'] },
          ),
          { maxLength: 3, selector: (u) => u.name },
        ),
        scripts: fc.uniqueArray(
          fc.record({ name: matching(PATTERNS.scriptName, 64), content: hostileText(10) }),
          {
            maxLength: 3,
            selector: (s) => s.name,
          },
        ),
        agentConfig: fc.record(
          {
            specFetchInterval: matching(PATTERNS.interval, 8),
            statusUpdateInterval: matching(PATTERNS.interval, 8),
            defaultLabels: fc.dictionary(
              matching(PATTERNS.labelKey, 317),
              matching(PATTERNS.labelValue, 63),
              {
                maxKeys: 3,
              },
            ),
            systemInfo: fc.uniqueArray(matching(PATTERNS.systemInfo, 64), { maxLength: 3 }),
            logLevel: fc.constantFrom('debug' as const, 'info' as const, 'warn' as const, 'error' as const),
            tpm: fc.record(
              { enabled: fc.boolean(), devicePath: matching(PATTERNS.tpmDevicePath, 64) },
              { requiredKeys: ['enabled'] },
            ),
          },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: ['source', 'destination', 'binding'] },
);

// The userConfiguration user may not also be a customization user (that is a 400, tested elsewhere).
const validSpec = spec.filter(
  (s) => !(s.customizations?.users ?? []).some((u) => u.name === s.userConfiguration?.username),
);
const registry = matching(PATTERNS.registry, 261);

/** Every string value of the spec's userConfiguration and customizations, and the label keys. */
function userStrings(s: ImageBuildSpec): string[] {
  const out: string[] = Object.keys(s.customizations?.agentConfig?.defaultLabels ?? {});
  const walk = (v: unknown) => {
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(s.customizations);
  walk(s.userConfiguration);
  return out;
}

const enrollment = fakeEnrollment();
const CONTEXT_PATH = /^ib\/(packages|system|scripts|agent)\/([a-z]+\/)?(\d{4}\/)?[a-z0-9_.-]+$/;

/** A cheap assertion for the hot loop (vitest's expect costs more than the generation under test). */
function same(actual: unknown, expected: unknown, what: string): void {
  const a = typeof actual === 'string' ? actual : JSON.stringify(actual);
  const e = typeof expected === 'string' ? expected : JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e.slice(0, 500)}, got ${a.slice(0, 500)}`);
}
const FIXED_TEXT = generateBuildContext({
  spec: {
    source: { repository: 'r', imageName: 'n', imageTag: 't' },
    destination: { repository: 'r', imageName: 'n', imageTag: 't' },
    binding: { type: 'late' },
  },
  source: { registry: 'r.io' },
  settings: {},
}).containerfile;

describe('Containerfile generation under hostile input (property)', () => {
  it(`keeps the fixed instruction sequence and carries every value as data (${RUNS} runs)`, () => {
    fc.assert(
      fc.property(validSpec, registry, (s, reg) => {
        // The generated spec is one the API accepts (schema), so these are the inputs that matter.
        validateImageBuildBody({
          apiVersion: 'flightctl.io/v1alpha1',
          kind: 'ImageBuild',
          metadata: { name: 'p' },
          spec: s,
        });
        const build: BuildContextInput = { spec: s, source: { registry: reg }, settings: {}, enrollment };
        const out = generateBuildContext(build);
        const fromRef = `${reg}/${s.source.imageName}:${s.source.imageTag}`;

        // A real Dockerfile parser sees exactly the fixed instructions.
        const parsed = DockerfileParser.parse(out.containerfile);
        const seen = parsed
          .getInstructions()
          .map((i) => [i.getKeyword(), i.getArguments().map((a) => a.getValue())]);
        same(seen, expectedInstructions(fromRef), 'instruction sequence');
        same(parsed.getDirectives().length, 0, 'parser directives');
        // Byte for byte, it is the fixed text with only the FROM reference substituted.
        same(
          out.containerfile,
          FIXED_TEXT.replace('FROM r.io/n:t\n', `FROM ${fromRef}\n`),
          'Containerfile text',
        );
        // No spec value appears anywhere else (short values that happen to be part of the fixed text,
        // such as "RUN", are no evidence either way and are skipped).
        const rest = out.containerfile.replace(`FROM ${fromRef}\n`, '');
        for (const value of userStrings(s)) {
          if (value.length >= 3 && !FIXED_TEXT.includes(value))
            same(rest.includes(value), false, `value ${JSON.stringify(value)}`);
        }

        // The scripts are the fixed ones; names of context files never carry a spec value.
        for (const stage of STAGES)
          same(out.files[`ib/${stage.name}/run.sh`], stage.script, `${stage.name}/run.sh`);
        for (const path of Object.keys(out.files))
          same(CONTEXT_PATH.test(path), true, `context path ${path}`);

        // Values travel verbatim as data.
        (s.customizations?.files ?? []).forEach((f, i) => {
          const d = `ib/system/files/${String(i).padStart(4, '0')}/`;
          same(out.files[`${d}path`], f.path, `${d}path`);
          if (f.encoding === 'base64') {
            const decoded = Buffer.from(out.files[`${d}content.b64`] as string, 'base64');
            same(decoded.equals(Buffer.from(f.content, 'base64')), true, `${d}content.b64`);
          } else same(out.files[`${d}content`], f.content, `${d}content`);
        });
        (s.customizations?.scripts ?? []).forEach((script, i) => {
          same(out.files[`ib/scripts/${String(i).padStart(4, '0')}/content`], script.content, `script ${i}`);
        });
        (s.customizations?.systemdUnits ?? []).forEach((u, i) => {
          same(out.files[`ib/system/units/${String(i).padStart(4, '0')}/content`], u.content, `unit ${i}`);
        });
        // Line-based data files hold validated tokens only: one per line, no space or break inside a value.
        for (const key of [
          'ib/packages/repos',
          'ib/packages/copr',
          'ib/packages/packages',
          'ib/packages/enable',
        ]) {
          same(/^(\S+\n)*$/.test(out.files[key] as string), true, key);
        }

        // Deterministic: the same input again gives byte-identical output.
        same(
          JSON.stringify(generateBuildContext(structuredClone(build))),
          JSON.stringify(out),
          'second generation',
        );
      }),
      { numRuns: RUNS },
    );
  });
});
