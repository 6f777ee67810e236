// The `imagebuilder` CLI end to end: each command runs as a child process (`node --import tsx
// bin/imagebuilder.ts`) against the local stack started in this file (workflows are the recording double:
// the test writes a build's log itself and moves it with transition()).
//
// Download: the API's `GET /imageexports/{name}/download` is being built in parallel and the local
// exports cannot complete here, so download is tested against a small fake server in this file that
// implements the contract (CONTRACT §2): `GET /api/v1/imageexports/{name}` (status.artifact with sha256 and
// size), `/download` → 307 to a "presigned" URL, and that URL honouring `Range: bytes=N-`, naming the file
// with Content-Disposition and able to cut the connection mid-body once (a forced interruption).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { workflowRef } from '../../functions/commons/domain/image-builds.js';
import { transition } from '../../functions/commons/domain/transitions.js';
import {
  type Client,
  imageBuild,
  imageExport,
  repository,
  startTestStack,
  type TestStack,
} from '../fixtures/local-stack.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'bin', 'imagebuilder.ts');
const TSX = pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; env replaces the IMAGEBUILDER_* variables (defaults: this file's stack and admin). */
function cli(args: string[], opts: { env?: Record<string, string>; cwd?: string; input?: string } = {}) {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('IMAGEBUILDER_')) env[k] = v;
  Object.assign(env, opts.env ?? defaultEnv);
  return new Promise<Run>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, CLI, ...args], {
      cwd: opts.cwd ?? ROOT,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

let stack: TestStack;
let admin: Client;
let work: string;
let defaultEnv: Record<string, string>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lines = (s: string) => s.trim().split('\n');

async function setReason(name: string, reason: string, kind: 'ImageBuild' | 'ImageExport' = 'ImageBuild') {
  const item = await stack.deps.store.get('org-cli', kind, name);
  if (!item) throw new Error(name);
  await transition(stack.deps, workflowRef(item), { reason, message: `${reason} by the test` });
}

beforeAll(async () => {
  stack = await startTestStack();
  admin = await stack.as('org-cli');
  work = await mkdtemp(join(tmpdir(), 'ib-cli-'));
  defaultEnv = {
    IMAGEBUILDER_URL: stack.url,
    IMAGEBUILDER_TOKEN: admin.token,
    IMAGEBUILDER_CONFIG: join(work, 'none', 'config.json'),
  };
});
afterAll(async () => {
  await stack?.close();
  await rm(work, { recursive: true, force: true });
});

describe('login', () => {
  it('checks the token, then writes server and token to the config file with mode 0600', async () => {
    const config = join(work, 'xdg', 'imagebuilder', 'config.json');
    const env = { XDG_CONFIG_HOME: join(work, 'xdg') };
    const [bad, good] = await Promise.all([
      cli(['login', '--server', stack.url, '--token', 'not-a-jwt'], {
        env: { IMAGEBUILDER_CONFIG: join(work, 'bad.json') },
      }),
      cli(['login', '--server', stack.url, '--token', admin.token], { env }),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: invalid bearer token/);
    await expect(stat(join(work, 'bad.json'))).rejects.toThrow();
    expect(good).toMatchObject({ code: 0, stderr: '' });
    expect((await stat(config)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(config, 'utf8'))).toEqual({ server: stack.url, token: admin.token });
    // Later commands need nothing else.
    const get = await cli(['get', 'repositories'], { env });
    expect(get).toMatchObject({ code: 0, stdout: '', stderr: 'No resources found.\n' });
  });
});

describe('apply', () => {
  const docs = (registry: string, tag: string) => `# two repositories, a build and its export
apiVersion: flightctl.io/v1beta1
kind: Repository
metadata: {name: src}
spec: {type: oci, registry: quay.io}
---
apiVersion: flightctl.io/v1beta1
kind: Repository
metadata: {name: dst, labels: {role: push}}
spec:
  type: oci
  registry: ${registry}
  accessMode: ReadWrite
  ociAuth: {authType: docker, username: robot, password: s3cret}
---
${JSON.stringify(imageBuild('edge-os-v1', { destination: { repository: 'dst', imageName: 'edge/os', imageTag: tag } }, { labels: { fleet: 'stores' } }))}
---
${JSON.stringify(imageExport('edge-os-v1-qcow2', 'edge-os-v1'))}
`;

  it('creates each document, then reports unchanged, configured (repository) and conflict (build)', async () => {
    const file = join(work, 'seed.yaml');
    await writeFile(file, docs('registry.example.com', 'v1'));
    const first = await cli(['apply', '-f', file]);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(lines(first.stdout)).toEqual([
      'repository/src created',
      'repository/dst created',
      'imagebuild/edge-os-v1 created',
      'imageexport/edge-os-v1-qcow2 created',
    ]);

    // From standard input; the password, shown only masked, does not make it differ.
    const again = await cli(['apply', '-f', '-'], { input: docs('registry.example.com', 'v1') });
    expect(again).toMatchObject({ code: 0, stderr: '' });
    expect(lines(again.stdout)).toEqual([
      'repository/src unchanged',
      'repository/dst unchanged',
      'imagebuild/edge-os-v1 unchanged',
      'imageexport/edge-os-v1-qcow2 unchanged',
    ]);

    await writeFile(file, docs('registry2.example.com', 'v2'));
    const changed = await cli(['apply', '-f', file]);
    expect(changed.code).toBe(5);
    expect(lines(changed.stdout)).toEqual([
      'repository/src unchanged',
      'repository/dst configured',
      'imagebuild/edge-os-v1 conflict',
      'imageexport/edge-os-v1-qcow2 unchanged',
    ]);
    expect(changed.stderr).toMatch(/imagebuild\/edge-os-v1: its spec differs/);
    const dst = await admin.req('GET', '/api/v1/repositories/dst');
    expect(dst.body.spec).toMatchObject({
      registry: 'registry2.example.com',
      ociAuth: { username: 'robot' },
    });
    expect((await admin.req('GET', '/api/v1/imagebuilds/edge-os-v1')).body.spec.destination.imageTag).toBe(
      'v1',
    );
  });

  it('reports a document the server refuses with its message, and goes on with the others', async () => {
    const bad = `${JSON.stringify(imageBuild('bad-tag', { source: { repository: 'src', imageName: 'a/b', imageTag: '-x' } }))}\n---\n${JSON.stringify(repository('third'))}`;
    const r = await cli(['apply', '-f', '-'], { input: bad });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('repository/third created\n');
    expect(r.stderr).toMatch(/^imagebuild\/bad-tag: error: spec\.source\.imageTag: /);
  });
});

describe('get', () => {
  it('prints tables, YAML and JSON, pages through everything and filters by selectors', async () => {
    for (let i = 0; i < 7; i++) {
      const r = await admin.req('POST', '/api/v1/repositories', {
        ...repository(`page-${i}`),
        metadata: { name: `page-${i}`, labels: { paging: 'yes' } },
      });
      expect(r.status).toBe(201);
    }
    const [table, yaml, json, paged, selected, one, exports] = await Promise.all([
      cli(['get', 'imagebuilds']),
      cli(['get', 'repo', '-o', 'yaml']),
      cli(['get', 'ib', 'edge-os-v1', '-o', 'json']),
      cli(['get', 'repositories', '--limit', '2', '-o', 'json']),
      cli(['get', 'repositories', '-l', 'paging=yes', '--limit', '3', '-o', 'name']),
      cli(['get', 'ie', 'edge-os-v1-qcow2']),
      cli(['get', 'imageexports', '--field-selector', 'spec.format=qcow2', '-o', 'yaml']),
    ]);
    expect(table.code).toBe(0);
    expect(lines(table.stdout)[0], table.stderr).toMatch(/^NAME\s+STATUS\s+IMAGE\s+AGE$/);
    expect(lines(table.stdout)[1]).toMatch(/^edge-os-v1\s+Pending\s+dst\/edge\/os:v1\s+\d+s$/);

    const repos = parseYaml(yaml.stdout);
    expect(repos.kind).toBe('RepositoryList');
    expect(repos.items.map((r: any) => r.metadata.name)).toEqual(
      expect.arrayContaining(['src', 'dst', 'third', 'page-0', 'page-6']),
    );
    // A stored password is shown masked, as Flight Control shows it, never itself.
    expect(repos.items.find((r: any) => r.metadata.name === 'dst').spec.ociAuth.password).toBe('*****');
    expect(yaml.stdout).not.toContain('s3cret');

    expect(JSON.parse(json.stdout)).toMatchObject({ kind: 'ImageBuild', metadata: { name: 'edge-os-v1' } });
    expect(JSON.parse(paged.stdout).items).toHaveLength(repos.items.length);
    expect(repos.items.length).toBe(10);
    expect(lines(selected.stdout).sort()).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `repository/page-${i}`));
    expect(lines(one.stdout)).toEqual([
      expect.stringMatching(/^NAME\s+STATUS\s+BUILD\s+FORMAT\s+AGE$/),
      expect.stringMatching(/^edge-os-v1-qcow2\s+Pending\s+edge-os-v1\s+qcow2\s+\d+s$/),
    ]);
    expect(parseYaml(exports.stdout).items.map((e: any) => e.metadata.name)).toEqual(['edge-os-v1-qcow2']);
  });

  it('a missing resource: exit 4 with the server message', async () => {
    const r = await cli(['get', 'imagebuild', 'missing']);
    expect(r).toMatchObject({ code: 4, stdout: '', stderr: 'error: ImageBuild "missing" not found\n' });
  });
});

describe('logs and wait', () => {
  it('logs -f prints until the build ends; wait --for=Completed returns 0 when it does', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('logged'));
    const item = await stack.deps.store.get('org-cli', 'ImageBuild', 'logged');
    const ref = workflowRef(item!);
    const file = (stack.deps.logs as unknown as { pathOf(r: typeof ref): string }).pathOf(ref);
    await mkdir(dirname(file), { recursive: true });
    await appendFile(file, 'STEP 1/3: FROM quay.io/centos-bootc/centos-bootc:stream9\n');

    const started = Date.now();
    const logs = cli(['logs', '-f', 'imagebuild/logged']);
    const waited = cli(['wait', 'ib/logged', '--for=Completed', '--timeout', '1m', '--interval', '200ms']);
    await sleep(1500);
    await setReason('logged', 'Building');
    await appendFile(file, 'STEP 2/3: RUN dnf install -y flightctl-agent\n');
    await sleep(1000);
    await appendFile(file, 'STEP 3/3: COMMIT\n');
    await setReason('logged', 'Completed');
    const [l, w] = await Promise.all([logs, waited]);
    expect(l).toMatchObject({ code: 0, stderr: '' });
    expect(lines(l.stdout)).toEqual([
      'STEP 1/3: FROM quay.io/centos-bootc/centos-bootc:stream9',
      'STEP 2/3: RUN dnf install -y flightctl-agent',
      'STEP 3/3: COMMIT',
    ]);
    expect(w).toMatchObject({ code: 0, stdout: 'imagebuild/logged Completed\n' });
    expect(Date.now() - started).toBeGreaterThan(2500);

    // Without -f: what is there, at once.
    const now = await cli(['logs', 'ib', 'logged']);
    expect(lines(now.stdout)).toHaveLength(3);
  });

  it('wait returns 1 when the run ends otherwise (Failed) and 2 on timeout', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('failing'));
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('stuck'));
    await setReason('failing', 'Failed');
    const [failed, timedOut] = await Promise.all([
      cli(['wait', 'imagebuild/failing', '--for=Completed']),
      cli(['wait', 'imagebuild/stuck', '--for', 'Completed', '--timeout', '1s', '--interval', '300ms']),
    ]);
    expect(failed).toMatchObject({
      code: 1,
      stderr: 'error: imagebuild/failing ended Failed: Failed by the test\n',
    });
    expect(timedOut.code).toBe(2);
    expect(timedOut.stderr).toMatch(
      /timed out after 1s waiting for imagebuild\/stuck to be Completed \(it is Pending\)/,
    );
  });
});

describe('cancel, delete, newversion', () => {
  it('newversion copies with new tags; cancel cancels (409 → exit 5 the second time); delete deletes', async () => {
    const nv = await cli([
      'newversion',
      'imagebuild/edge-os-v1',
      '--name',
      'edge-os-v2',
      '--destination-tag',
      'v2',
    ]);
    expect(nv).toMatchObject({ code: 0, stdout: 'imagebuild/edge-os-v2 created\n' });
    const copy = await admin.req('GET', '/api/v1/imagebuilds/edge-os-v2');
    expect(copy.body.spec.destination.imageTag).toBe('v2');
    expect(copy.body.metadata.annotations['flightctl.io/new-version-from']).toBe('edge-os-v1');

    const [cancel, del] = await Promise.all([
      cli(['cancel', 'imagebuild/edge-os-v2']),
      cli(['delete', 'repository/third']),
    ]);
    expect(cancel).toMatchObject({ code: 0, stdout: 'imagebuild/edge-os-v2 Canceled\n' });
    expect(del).toMatchObject({ code: 0, stdout: 'repository/third deleted\n' });
    expect((await admin.req('GET', '/api/v1/repositories/third')).status).toBe(404);
    const again = await cli(['cancel', 'ib/edge-os-v2']);
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(/^error: .+/);
  });
});

// ---- download, against a fake API implementing the download contract -------------------------------

interface FakeExport {
  content: Buffer;
  sha256: string;
  /** Cut the connection after this many bytes, the first time the artifact is fetched. */
  cutAfter?: number;
}

async function startFakeApi(token: string, exports: Record<string, FakeExport>) {
  const requests: { path: string; range?: string; auth: boolean }[] = [];
  const cut = new Set<string>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({ path: url.pathname, range: req.headers.range, auth: Boolean(req.headers.authorization) });
    const status = (code: number, message: string) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Status', status: 'Failure', code, message }));
    };
    const api = /^\/api\/v1\/imageexports\/([^/]+)(\/download)?$/.exec(url.pathname);
    if (api) {
      if (req.headers.authorization !== `Bearer ${token}`) return status(401, 'missing bearer token');
      const name = api[1]!;
      const exp = exports[name];
      if (!exp) return status(404, `ImageExport "${name}" not found`);
      if (api[2]) {
        res.writeHead(307, { location: `/presigned/${name}?X-Amz-Signature=abc` });
        return res.end();
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          ...imageExport(name, 'edge-os-v1'),
          status: {
            conditions: [{ type: 'Ready', status: 'True', reason: 'Completed' }],
            artifact: { uri: `s3://bucket/${name}`, size: exp.content.length, sha256: exp.sha256 },
          },
        }),
      );
    }
    const blob = /^\/presigned\/([^/]+)$/.exec(url.pathname);
    const exp = blob ? exports[blob[1]!] : undefined;
    if (!blob || !exp || req.headers.authorization) return status(403, 'bad presigned request');
    const headers = {
      'content-type': 'application/octet-stream',
      'content-disposition': 'attachment; filename="edge-os-v1-x86_64.qcow2"',
      'accept-ranges': 'bytes',
    };
    const total = exp.content.length;
    if (exp.cutAfter !== undefined && !cut.has(blob[1]!)) {
      cut.add(blob[1]!);
      res.writeHead(200, { ...headers, 'content-length': total });
      res.write(exp.content.subarray(0, exp.cutAfter), () => setTimeout(() => res.socket?.destroy(), 300));
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (start >= total && range) {
      res.writeHead(416, { 'content-range': `bytes */${total}` });
      return res.end();
    }
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'content-length': total - start,
      ...(range ? { 'content-range': `bytes ${start}-${total - 1}/${total}` } : {}),
    });
    res.end(exp.content.subarray(start));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('download', () => {
  it('resumes with Range after a cut connection and verifies the SHA-256; a mismatch keeps FILE.partial, exit 3', async () => {
    const content = randomBytes(3 * 1024 * 1024);
    const sha256 = createHash('sha256').update(content).digest('hex');
    const fake = await startFakeApi('fake-token', {
      good: { content, sha256, cutAfter: 1024 * 1024 },
      corrupt: { content, sha256: createHash('sha256').update('something else').digest('hex') },
    });
    try {
      const dir = join(work, 'downloads');
      await mkdir(dir);
      const env = {
        IMAGEBUILDER_URL: fake.url,
        IMAGEBUILDER_TOKEN: 'fake-token',
        IMAGEBUILDER_CONFIG: join(dir, 'c.json'),
      };
      const [good, corrupt, missing] = await Promise.all([
        cli(['download', 'imageexport/good'], { env, cwd: dir }),
        cli(['download', 'ie/corrupt', join(dir, 'corrupt.qcow2')], { env }),
        cli(['download', 'imageexport/none'], { env, cwd: dir }),
      ]);

      // Named by Content-Disposition; the second fetch asked for the rest only; quiet without a TTY.
      expect(good.code).toBe(0);
      expect(good.stdout).toBe(
        'imageexport/good saved to edge-os-v1-x86_64.qcow2 (3.0 MiB, sha256 verified)\n',
      );
      expect(good.stderr).toMatch(
        /^download interrupted \(.+\); retrying \(attempt 2 of 5\)\nresuming edge-os-v1-x86_64.qcow2.partial at .+\n$/,
      );
      expect((await readFile(join(dir, 'edge-os-v1-x86_64.qcow2'))).equals(content)).toBe(true);
      await expect(stat(join(dir, 'edge-os-v1-x86_64.qcow2.partial'))).rejects.toThrow();
      const blobs = fake.requests.filter((r) => r.path === '/presigned/good');
      expect(blobs).toHaveLength(2);
      expect(blobs[0]).toEqual({ path: '/presigned/good', range: undefined, auth: false });
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(blobs[1]!.range ?? '')?.[1]);
      expect(resumedAt).toBeGreaterThan(0);
      expect(resumedAt).toBeLessThanOrEqual(1024 * 1024);

      expect(corrupt.code).toBe(3);
      expect(corrupt.stderr).toMatch(
        /^error: checksum mismatch: expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}; the data is kept in .+corrupt\.qcow2\.partial\n$/,
      );
      await expect(stat(join(dir, 'corrupt.qcow2'))).rejects.toThrow();
      expect((await readFile(join(dir, 'corrupt.qcow2.partial'))).equals(content)).toBe(true);

      expect(missing).toMatchObject({ code: 4, stderr: 'error: ImageExport "none" not found\n' });
    } finally {
      await fake.close();
    }
  });
});
