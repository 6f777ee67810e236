// The CLI's pure parts (durations, kinds, documents, comparison, tables, file names, config) and its
// usage errors, in-process: no server, no child process.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyExitCode, canonical, comparable, parseDocuments } from '../../bin/cli/apply.js';
import { errorFromResponse } from '../../bin/cli/client.js';
import { configPath, resolveTarget, writeConfig } from '../../bin/cli/config.js';
import { defaultFileName, fileNameFromDisposition } from '../../bin/cli/download.js';
import { parseDuration } from '../../bin/cli/duration.js';
import { CliError } from '../../bin/cli/errors.js';
import { parseKind, parseRef } from '../../bin/cli/kinds.js';
import { run } from '../../bin/cli/main.js';
import { age, render, table } from '../../bin/cli/output.js';
import { parseReason } from '../../bin/cli/wait.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ib-cli-unit-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function runIn(args: string[], env: Record<string, string> = {}) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const chunks = { out: '', err: '' };
  stdout.on('data', (c) => {
    chunks.out += c;
  });
  stderr.on('data', (c) => {
    chunks.err += c;
  });
  const code = await run(args, { stdout, stderr, stdin: new PassThrough(), env });
  return { code, stdout: chunks.out, stderr: chunks.err };
}

describe('durations', () => {
  it('accepts 90s, 5m, 1h, 1h30m, 500ms and bare seconds; rejects the rest', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2')).toBe(2000);
    for (const bad of ['', 'm', '5x', '5m3', '-1s', '1 h'])
      expect(() => parseDuration(bad)).toThrow(/invalid duration/);
  });
});

describe('kinds and references', () => {
  it('knows every alias; KIND/NAME or KIND NAME; refuses other kinds', () => {
    for (const a of ['repositories', 'repository', 'repo', 'Repository'])
      expect(parseKind(a)).toBe('Repository');
    for (const a of ['imagebuilds', 'imagebuild', 'ib', 'ImageBuild'])
      expect(parseKind(a)).toBe('ImageBuild');
    for (const a of ['imageexports', 'imageexport', 'ie']) expect(parseKind(a)).toBe('ImageExport');
    expect(parseRef('ib/edge', undefined)).toEqual({ kind: 'ImageBuild', name: 'edge' });
    expect(parseRef('ie', 'x')).toEqual({ kind: 'ImageExport', name: 'x' });
    expect(() => parseRef('repo/x', undefined, ['ImageBuild'])).toThrow(/unknown kind/);
    expect(() => parseRef('ib', undefined)).toThrow(/KIND\/NAME/);
    try {
      parseKind('pods');
    } catch (err) {
      expect((err as CliError).exitCode).toBe(2);
    }
  });

  it('wait --for takes a status, case-insensitively (Ready = Completed)', () => {
    expect(parseReason('completed')).toBe('Completed');
    expect(parseReason('Ready')).toBe('Completed');
    expect(parseReason('condition=Failed')).toBe('Failed');
    expect(() => parseReason('Done')).toThrow(/--for must be one of/);
  });
});

describe('documents', () => {
  it('reads several YAML documents, JSON, and List items; skips empty documents', () => {
    const docs = parseDocuments(
      [
        'kind: Repository\nmetadata: {name: a}\nspec: {type: oci, registry: quay.io}',
        '',
        '{"kind":"ImageBuild","metadata":{"name":"b"},"spec":{}}',
        'kind: ImageExportList\nitems:\n- {kind: ImageExport, metadata: {name: c}, spec: {}}',
      ].join('\n---\n'),
    );
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      'Repository/a',
      'ImageBuild/b',
      'ImageExport/c',
    ]);
  });

  it('names the document at fault', () => {
    expect(() =>
      parseDocuments('kind: Repository\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: p}'),
    ).toThrow(/document 2: kind must be/);
    expect(() => parseDocuments('kind: ImageBuild\nmetadata: {}')).toThrow(
      /document 1: metadata.name is required/,
    );
    expect(() => parseDocuments('kind: [unclosed')).toThrow(/document 1/);
    expect(() => parseDocuments('---\n')).toThrow(/no documents/);
  });

  it('compares spec and labels regardless of key order; a repository password is not compared', () => {
    expect(canonical({ b: 1, a: { d: 2, c: [1, { f: 1, e: 2 }] } })).toBe(
      '{"a":{"c":[1,{"e":2,"f":1}],"d":2},"b":1}',
    );
    const repo = (spec: object, labels?: object) =>
      ({ kind: 'Repository', metadata: { name: 'r', labels }, spec }) as any;
    const withPw = repo({ type: 'oci', ociAuth: { authType: 'docker', username: 'u', password: 'p' } });
    const stored = repo({ ociAuth: { username: 'u', authType: 'docker' }, type: 'oci' }, {});
    expect(comparable('Repository', withPw)).toBe(comparable('Repository', stored));
    expect(comparable('Repository', repo({ type: 'oci' }, { a: '1' }))).not.toBe(
      comparable('Repository', repo({ type: 'oci' })),
    );
  });

  it('apply exits with the first error, else 5 on a conflict, else 0', () => {
    expect(
      applyExitCode([
        { ref: 'a', outcome: 'created' },
        { ref: 'b', outcome: 'unchanged' },
      ]),
    ).toBe(0);
    expect(
      applyExitCode([
        { ref: 'a', outcome: 'conflict' },
        { ref: 'b', outcome: 'configured' },
      ]),
    ).toBe(5);
    expect(
      applyExitCode([
        { ref: 'a', outcome: 'conflict' },
        { ref: 'b', error: new CliError('x', 1) },
      ]),
    ).toBe(1);
  });
});

describe('output', () => {
  const now = Date.parse('2026-01-02T00:00:00Z');
  const build = {
    metadata: { name: 'edge-os-v1', creationTimestamp: '2026-01-01T23:55:00Z' },
    spec: { destination: { repository: 'dst', imageName: 'edge/os', imageTag: 'v1' } },
    status: { conditions: [{ type: 'Ready', reason: 'Building' }] },
  };

  it('ages like kubectl', () => {
    expect(age('2026-01-01T23:59:15Z', now)).toBe('45s');
    expect(age('2026-01-01T23:48:00Z', now)).toBe('12m');
    expect(age('2026-01-01T19:00:00Z', now)).toBe('5h');
    expect(age('2025-12-29T00:00:00Z', now)).toBe('4d');
    expect(age(undefined, now)).toBe('-');
  });

  it('tables have kind-specific columns, aligned', () => {
    expect(table('ImageBuild', [build], now)).toBe(
      'NAME         STATUS     IMAGE            AGE\nedge-os-v1   Building   dst/edge/os:v1   5m\n',
    );
    const exp = {
      metadata: { name: 'e' },
      spec: { source: { imageBuildRef: 'edge-os-v1' }, format: 'vmdk' },
    };
    expect(table('ImageExport', [exp], now).split('\n')[1]).toBe('e      Pending   edge-os-v1   vmdk     -');
    expect(render('ImageBuild', 'name', [build], false)).toBe('imagebuild/edge-os-v1\n');
    expect(JSON.parse(render('ImageBuild', 'json', [build], false))).toMatchObject({
      kind: 'ImageBuildList',
      items: [build],
    });
  });
});

describe('download file names', () => {
  it('takes Content-Disposition (filename* first), reduced to a base name; else <build>-<arch>.<ext>', () => {
    expect(fileNameFromDisposition('attachment; filename="edge-os-v1-x86_64.qcow2"')).toBe(
      'edge-os-v1-x86_64.qcow2',
    );
    expect(fileNameFromDisposition("attachment; filename=a.iso; filename*=UTF-8''b%20c.iso")).toBe('b c.iso');
    expect(fileNameFromDisposition('attachment; filename="../../etc/passwd"')).toBe('passwd');
    expect(fileNameFromDisposition('attachment; filename=".."')).toBeUndefined();
    expect(fileNameFromDisposition(null)).toBeUndefined();
    const exp = (format: string, architecture?: string) =>
      ({ metadata: { name: 'x' }, spec: { source: { imageBuildRef: 'edge' }, format, architecture } }) as any;
    expect(defaultFileName(exp('qcow2'))).toBe('edge-x86_64.qcow2');
    expect(defaultFileName(exp('anaconda-iso', 'aarch64'))).toBe('edge-aarch64.iso');
    expect(defaultFileName(exp('gce'))).toBe('edge-x86_64.tar.gz');
  });
});

describe('config', () => {
  it('is found through IMAGEBUILDER_CONFIG, XDG_CONFIG_HOME or HOME', () => {
    expect(configPath({ IMAGEBUILDER_CONFIG: '/x/c.json', XDG_CONFIG_HOME: '/y' })).toBe('/x/c.json');
    expect(configPath({ XDG_CONFIG_HOME: '/y', HOME: '/h' })).toBe('/y/imagebuilder/config.json');
    expect(configPath({ HOME: '/h' })).toBe('/h/.config/imagebuilder/config.json');
  });

  it('is written with mode 0600 (also over a wider file); flags beat env beat the file', async () => {
    const path = join(dir, 'sub', 'config.json');
    await writeConfig(path, { server: 'http://file:1', token: 'old' });
    await writeFile(path, JSON.stringify({ server: 'http://file:1', token: 'file-token' }), { mode: 0o644 });
    await writeConfig(path, { server: 'http://file:1', token: 'file-token' });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({
      server: 'http://file:1',
      token: 'file-token',
    });
    const env = { IMAGEBUILDER_CONFIG: path };
    expect(await resolveTarget({}, env)).toEqual({ server: 'http://file:1', token: 'file-token' });
    expect(await resolveTarget({}, { ...env, IMAGEBUILDER_URL: 'http://env:2/' })).toEqual({
      server: 'http://env:2',
      token: 'file-token',
    });
    expect(
      await resolveTarget({ server: 'https://flag', token: 't' }, { ...env, IMAGEBUILDER_TOKEN: 'e' }),
    ).toEqual({
      server: 'https://flag',
      token: 't',
    });
    await expect(resolveTarget({}, { IMAGEBUILDER_CONFIG: join(dir, 'none.json') })).rejects.toThrow(
      /no server/,
    );
  });
});

describe('errors and usage', () => {
  it('an error response gives the Status message, else the body, else the status line; 404 → 4, 409 → 5', async () => {
    const status = await errorFromResponse(
      new Response(JSON.stringify({ kind: 'Status', code: 404, message: 'ImageBuild "x" not found' }), {
        status: 404,
      }),
    );
    expect([status.message, status.exitCode]).toEqual(['ImageBuild "x" not found', 4]);
    expect((await errorFromResponse(new Response('{}', { status: 409 }))).exitCode).toBe(5);
    expect((await errorFromResponse(new Response('bad gateway', { status: 502 }))).message).toBe(
      'bad gateway',
    );
    expect((await errorFromResponse(new Response('', { status: 500, statusText: 'Oops' }))).message).toBe(
      'HTTP 500 Oops',
    );
  });

  it('usage errors exit 2; --help exits 0 and documents the exit codes', async () => {
    const env = { IMAGEBUILDER_URL: 'http://127.0.0.1:9', IMAGEBUILDER_TOKEN: 't' };
    const help = await runIn(['--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Exit codes:[\s\S]*3 {2}download: SHA-256 mismatch[\s\S]*5 {2}conflict/);
    expect((await runIn(['get', 'pods'], env)).stderr).toMatch(/unknown kind "pods"/);
    expect((await runIn(['get', 'pods'], env)).code).toBe(2);
    expect((await runIn(['frobnicate'], env)).code).toBe(2);
    expect((await runIn(['get', 'ib', '-o', 'xml'], env)).code).toBe(2);
    expect((await runIn(['apply'], env)).code).toBe(2);
    expect((await runIn(['wait', 'ib/x', '--timeout', 'soon'], env)).code).toBe(2);
    expect((await runIn(['get', 'ib'], { IMAGEBUILDER_CONFIG: join(dir, 'none.json') })).code).toBe(2);
  });

  it('an unreachable server is exit 1 with the address', async () => {
    const r = await runIn(['get', 'ib'], { IMAGEBUILDER_URL: 'http://127.0.0.1:9', IMAGEBUILDER_TOKEN: 't' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9/);
  });
});
