// Benchmarks of the build workflow (issue 4) and Containerfile generation (issue 3):
// - dispatch: create → builder started, through the local gateway, the real state machine file and the
//   local runner (the builder is a stand-in that only records when it started);
// - overhead: a whole local build through the API ÷ a bare `buildah bud && buildah push` of the same
//   Containerfile and context, in the same run (needs buildah and docker-registry);
// - cache: a second build of the same spec ÷ the first.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { generateBuildContext } from '../../functions/commons/domain/containerfile/index.js';
import { ensureBuilderImage } from '../../functions/local/builder-image.js';
import { type LocalStack, startLocalStack } from '../../functions/local/stack.js';
import { buildFixtureBaseImage, hasBuildah, removeImages, sh } from '../fixtures/base-image.js';
import { benchContainerfileGeneration } from '../fixtures/containerfile-bench.js';
import { hasRegistry, pushImage, startRegistry } from '../fixtures/registry.js';
import { fmt, percentile, printTable, timeOne } from './stats.js';

const silent = { info: () => undefined, error: () => undefined };

async function api(stack: LocalStack, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** `runId` goes into a package name, so no layer of an earlier run can serve this run's first build. */
const buildDoc = (name: string, src: string, dst: string, srcImage: string, tag: string, runId = 'x') => ({
  apiVersion: 'flightctl.io/v1alpha1',
  kind: 'ImageBuild',
  metadata: { name },
  spec: {
    source: { repository: src, imageName: srcImage, imageTag: '1' },
    destination: { repository: dst, imageName: 'bench/os', imageTag: tag },
    binding: { type: 'late' },
    customizations: { packages: [`bench-${runId}`], files: [{ path: '/etc/motd', content: 'bench\n' }] },
  },
});

async function waitDone(stack: LocalStack, token: string, name: string) {
  for (;;) {
    const b = await api(stack, token, 'GET', `/api/v1/imagebuilds/${name}`);
    const reason = b.status?.conditions?.[0]?.reason;
    if (reason === 'Completed') return b;
    if (reason === 'Failed' || reason === 'Canceled')
      throw new Error(`${name}: ${b.status.conditions[0].message}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function benchGeneration(): Promise<Record<string, number>> {
  const g = benchContainerfileGeneration(300);
  printTable('Containerfile generation (largest allowed spec)', [
    ['body KB', 'p50 ms', 'p95 ms', 'max ms', 'target'],
    [fmt(g.bodyBytes / 1024, 0), fmt(g.p50Ms), fmt(g.p95Ms), fmt(g.maxMs), '< 5 ms'],
  ]);
  return { 'generation p50 ms': g.p50Ms, 'generation p95 ms': g.p95Ms };
}

export async function benchDispatch(): Promise<Record<string, number>> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ib-bench-dispatch-'));
  const stack = await startLocalStack({
    port: 0,
    dataDir,
    inMemory: true,
    logger: silent,
    builderScript: join(process.cwd(), 'test/fixtures/stamp-builder.sh'),
    settings: { quota: { activeBuilds: 1000, buildsPerWindow: 100_000 } },
  });
  try {
    const token = await stack.token({ org_id: 'bench', roles: ['admin'] });
    for (const [name, mode] of [
      ['src', 'Read'],
      ['dst', 'ReadWrite'],
    ]) {
      await api(stack, token, 'POST', '/api/v1/repositories', {
        apiVersion: 'flightctl.io/v1beta1',
        kind: 'Repository',
        metadata: { name },
        spec: { type: 'oci', registry: 'registry.example.com', accessMode: mode },
      });
    }
    // Baseline in the same run: one bare GetItem on the same DynamoDB Local (the dispatch path makes six
    // table round trips and two object-store ones before the builder starts).
    const bare: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t = await timeOne(() => stack.deps.store.get('bench', 'ImageBuild', 'missing'));
      if (i >= 50) bare.push(t);
    }
    const samples: number[] = [];
    for (let i = 0; i < 60; i++) {
      const tag = `d${i}`;
      const wall0 = Date.now();
      const created = (await api(
        stack,
        token,
        'POST',
        '/api/v1/imagebuilds',
        buildDoc(`d-${i}`, 'src', 'dst', 'centos-bootc/centos-bootc', tag),
      )) as { metadata: { uid: string } };
      await waitDone(stack, token, `d-${i}`);
      const ref = {
        orgId: 'bench',
        kind: 'ImageBuild' as const,
        name: `d-${i}`,
        uid: created.metadata.uid,
        generation: 1,
      };
      const { text } = await stack.deps.logs.read(ref);
      const started = Number((/\[stamp\] started (\d+)/.exec(text)?.[1] ?? '0').slice(0, -6)); // ns → ms
      if (i >= 10) samples.push(started - wall0);
    }
    const bareP50 = percentile(bare, 50);
    printTable('Dispatch: create → builder script started in its sandbox (local runner, 50 builds)', [
      ['', 'p50 ms', 'p99 ms', 'p50 ÷ bare GetItem p50', 'target p99'],
      [
        'create → builder started',
        fmt(percentile(samples, 50)),
        fmt(percentile(samples, 99)),
        fmt(percentile(samples, 50) / bareP50),
        '≤ 50 ms',
      ],
      ['bare GetItem (baseline)', fmt(bareP50), fmt(percentile(bare, 99)), '1.00', ''],
      ['Flight Control polls every', '10 000', '', '', ''],
    ]);
    return {
      'dispatch p50 ms': percentile(samples, 50),
      'dispatch p99 ms': percentile(samples, 99),
      'dispatch p50 ÷ bare GetItem p50': percentile(samples, 50) / bareP50,
    };
  } finally {
    await stack.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

const BUILD_ROUNDS = 3;

export async function benchBuild(): Promise<Record<string, number>> {
  if (!(await hasBuildah()) || !(await hasRegistry())) {
    console.log(
      '\n## Build overhead: skipped (needs buildah and docker-registry; `bash .ci/run` installs them)',
    );
    return {};
  }
  const id = randomBytes(3).toString('hex');
  const registry = await startRegistry();
  const base = `localhost/ib-bench-base:${id}`;
  const dataDir = await mkdtemp(join(tmpdir(), 'ib-bench-build-'));
  const bareDir = await mkdtemp(join(tmpdir(), 'ib-bench-bare-'));
  const cleanupRefs = [base];
  let stack: LocalStack | undefined;
  try {
    await buildFixtureBaseImage(base);
    await pushImage(base, `${registry.host}/fixtures/base:1`);
    const doc = buildDoc('x', 'src', 'dst', 'fixtures/base', 'bare', id);
    // Bare: the same generated Containerfile and context, built and pushed with buildah directly.
    const ctx = generateBuildContext({
      spec: doc.spec as never,
      source: { registry: registry.host },
      settings: {},
    });
    await writeFile(join(bareDir, 'Containerfile'), ctx.containerfile);
    for (const [p, content] of Object.entries(ctx.files)) {
      await mkdir(dirname(join(bareDir, p)), { recursive: true });
      await writeFile(join(bareDir, p), content);
    }
    const bareBuild = (ref: string, extra: string[]) =>
      timeOne(async () => {
        await sh(
          'buildah',
          ['bud', '--isolation', 'chroot', '--layers', '--tls-verify=false', ...extra, '-t', ref, '.'],
          { cwd: bareDir },
        );
        await sh('buildah', ['push', '--tls-verify=false', ref]);
      });
    // The same on empty storage with the registry as layer cache: where every run starts, in a sandbox
    // here as in CodeBuild (nothing of an earlier run is on the machine). Pipeline ÷ this is the cost
    // of the sandbox, dispatch and completion alone.
    const coldBuild = (ref: string, cache: string) =>
      timeOne(async () => {
        const root = await mkdtemp(join(tmpdir(), 'ib-bench-cold-'));
        const storage = ['--root', join(root, 'root'), '--runroot', join(root, 'run')];
        try {
          await sh(
            'buildah',
            [
              ...storage,
              'bud',
              '--isolation',
              'chroot',
              '--layers',
              '--tls-verify=false',
              '--cache-from',
              cache,
              '--cache-to',
              cache,
              '-t',
              ref,
              '.',
            ],
            { cwd: bareDir },
          );
          await sh('buildah', [...storage, 'push', '--tls-verify=false', ref]);
        } finally {
          await sh('buildah', [...storage, 'rmi', '--all', '--force']).catch(() => undefined);
          await rm(root, { recursive: true, force: true }).catch(() => undefined);
        }
      });

    // The builder image is made once per machine (npm start does it at start): not part of a build.
    await ensureBuilderImage();
    stack = await startLocalStack({ port: 0, dataDir, inMemory: true, logger: silent });
    const token = await stack.token({ org_id: 'bench', roles: ['admin'] });
    for (const name of ['src', 'dst']) {
      await api(stack, token, 'POST', '/api/v1/repositories', {
        apiVersion: 'flightctl.io/v1beta1',
        kind: 'Repository',
        metadata: { name },
        spec: { type: 'oci', registry: registry.host, scheme: 'http', accessMode: 'ReadWrite' },
      });
    }
    const s = stack;
    const run = (name: string, tag: string, runId: string) =>
      timeOne(async () => {
        await api(
          s,
          token,
          'POST',
          '/api/v1/imagebuilds',
          buildDoc(name, 'src', 'dst', 'fixtures/base', tag, runId),
        );
        await waitDone(s, token, name);
      });
    // Rounds of: the baseline (issue 10) `buildah bud --layers && buildah push` of the same Containerfile
    // on the host's storage, first (--no-cache) and again (every layer cached); the same on empty storage;
    // the pipeline's first build (a new package name: nothing cached anywhere) and its rebuild. Medians.
    const times: Record<'bare' | 'bareCached' | 'cold' | 'coldCached' | 'first' | 'cached', number[]> = {
      bare: [],
      bareCached: [],
      cold: [],
      coldCached: [],
      first: [],
      cached: [],
    };
    for (let round = 0; round < BUILD_ROUNDS; round++) {
      const r = `${id}-${round}`;
      const ref = (name: string) => `${registry.host}/bench/${name}:${r}`;
      cleanupRefs.push(ref('bare'), ref('bare-cached'), ref('os'));
      times.bare.push(await bareBuild(ref('bare'), ['--no-cache']));
      times.bareCached.push(await bareBuild(ref('bare-cached'), []));
      const cache = `${registry.host}/bench/cold-cache-${r}`;
      times.cold.push(await coldBuild(ref('cold'), cache));
      times.coldCached.push(await coldBuild(ref('cold-cached'), cache));
      times.first.push(await run(`first-${round}`, `first-${r}`, r));
      times.cached.push(await run(`cached-${round}`, `cached-${r}`, r));
    }
    const [bare, bareCached, cold, coldCached, first, cached] = (
      ['bare', 'bareCached', 'cold', 'coldCached', 'first', 'cached'] as const
    ).map((k) => percentile(times[k], 50)) as [number, number, number, number, number, number];
    printTable(
      `Build through the local stack (sandbox, buildspec) vs bare buildah (fixture base image, local registry; median of ${BUILD_ROUNDS})`,
      [
        ['run', 'seconds', 'ratio to bare', 'ratio to bare on empty storage', 'target'],
        ['bare buildah bud --layers + push, first (baseline)', fmt(bare / 1000), '1.00', '', ''],
        ['bare buildah bud --layers + push, cached (baseline)', fmt(bareCached / 1000), '1.00', '', ''],
        ['bare, empty storage + registry cache, first', fmt(cold / 1000), fmt(cold / bare), '1.00', ''],
        [
          'bare, empty storage + registry cache, cached',
          fmt(coldCached / 1000),
          fmt(coldCached / bareCached),
          '1.00',
          '',
        ],
        ['first build (API → Completed)', fmt(first / 1000), fmt(first / bare), fmt(first / cold), '≤ 1.15'],
        [
          'cached rebuild (same spec)',
          fmt(cached / 1000),
          fmt(cached / bareCached),
          fmt(cached / coldCached),
          '≤ 2',
        ],
      ],
    );
    return {
      'first build ÷ bare first': first / bare,
      'cached rebuild ÷ bare cached': cached / bareCached,
      'first build ÷ bare empty-storage first': first / cold,
      'cached rebuild ÷ bare empty-storage cached': cached / coldCached,
      'first build s': first / 1000,
      'cached rebuild s': cached / 1000,
    };
  } finally {
    await stack?.stop();
    await registry.stop();
    await removeImages(...cleanupRefs).catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
    await rm(bareDir, { recursive: true, force: true });
  }
}

/**
 * Export (issue 5): the local export pipeline through the API ÷ the bare exporter command on the same
 * image; multipart upload vs a single PUT (s3rver); presigned download vs reading the file.
 */
export async function benchExport(): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};
  const dataDir = await mkdtemp(join(tmpdir(), 'ib-bench-export-'));
  let stack: LocalStack | undefined;
  const haveTools = (await hasBuildah()) && (await hasRegistry());
  const registry = haveTools ? await startRegistry() : undefined;
  const id = randomBytes(3).toString('hex');
  const base = `localhost/ib-bench-xbase:${id}`;
  try {
    stack = await startLocalStack({ port: 0, dataDir, inMemory: true, logger: silent });
    const s = stack;
    const objects = s.deps.objects;
    // Upload and download throughput on the local S3 API.
    const rows: (string | number)[][] = [
      ['size', 'single PUT MB/s', 'multipart MB/s', 'ratio', 'presigned GET MB/s', 'read file MB/s'],
    ];
    for (const mib of [64, 256]) {
      const data = randomBytes(mib * 1024 * 1024);
      const file = join(dataDir, `blob-${mib}`);
      await writeFile(file, data);
      // The same job done with one PUT: read the file, hash it (the artifact's SHA-256), upload it.
      const single = await timeOne(async () => {
        const body = await readFile(file);
        createHash('sha256').update(body).digest('hex');
        await objects.put(`bench/single-${mib}`, body);
      });
      const multi = await timeOne(() =>
        objects.putFile(`bench/multi-${mib}`, file, 'application/octet-stream'),
      );
      const url = await objects.presignGet(`bench/multi-${mib}`, 900, 'x.bin');
      const get = await timeOne(async () => {
        const res = await fetch(url);
        for await (const _ of res.body as unknown as AsyncIterable<Uint8Array>) void _;
      });
      const read = await timeOne(() => readFile(file));
      const mbps = (ms: number) => mib / 1.048576 / (ms / 1000);
      rows.push([
        `${mib} MiB`,
        fmt(mbps(single), 0),
        fmt(mbps(multi), 0),
        fmt(single / multi),
        fmt(mbps(get), 0),
        fmt(mbps(read), 0),
      ]);
      figures[`multipart vs single ${mib} MiB (× faster)`] = single / multi;
      figures[`presigned GET ${mib} MiB MB/s`] = mbps(get);
    }
    printTable(
      'Object storage on s3rver (single PUT: read, SHA-256, one PUT; multipart: 16 MiB parts, 4 in flight)',
      rows,
    );

    if (!registry) {
      console.log('\n## Export overhead: skipped (needs buildah and docker-registry)');
      return figures;
    }
    await buildFixtureBaseImage(base);
    await pushImage(base, `${registry.host}/fixtures/base:1`);
    const token = await s.token({ org_id: 'bench', roles: ['admin'] });
    await api(s, token, 'POST', '/api/v1/repositories', {
      apiVersion: 'flightctl.io/v1beta1',
      kind: 'Repository',
      metadata: { name: 'reg' },
      spec: { type: 'oci', registry: registry.host, scheme: 'http', accessMode: 'ReadWrite' },
    });
    await api(
      s,
      token,
      'POST',
      '/api/v1/imagebuilds',
      buildDoc('xb', 'reg', 'reg', 'fixtures/base', `x-${id}`),
    );
    const built = await waitDone(s, token, 'xb');
    const imageRef = `${registry.host}/bench/os@${built.status.manifestDigest}`;
    const bare = await timeOne(async () => {
      const { execFile } = await import('node:child_process');
      await new Promise<void>((resolve, reject) =>
        execFile(
          'bash',
          [join(process.cwd(), 'functions/builder/export-image.sh')],
          {
            env: {
              PATH: process.env.PATH ?? '',
              HOME: process.env.HOME ?? '/root',
              TMPDIR: dataDir,
              IB_EXPORTER: 'local',
              IB_IMAGE_REF: imageRef,
              IB_ARCH: 'x86_64',
              IB_FORMAT: 'qcow2',
              IB_OUTPUT_FILE: join(dataDir, 'bare.qcow2'),
              IB_SOURCE_TLS_VERIFY: 'false',
            },
            maxBuffer: 64 * 1024 * 1024,
          },
          (err) => (err ? reject(err) : resolve()),
        ),
      );
    });
    const pipeline = await timeOne(async () => {
      await api(s, token, 'POST', '/api/v1/imageexports', {
        apiVersion: 'flightctl.io/v1alpha1',
        kind: 'ImageExport',
        metadata: { name: 'xe' },
        spec: { source: { type: 'imageBuild', imageBuildRef: 'xb' }, format: 'qcow2' },
      });
      for (;;) {
        const e = await api(s, token, 'GET', '/api/v1/imageexports/xe');
        const reason = e.status?.conditions?.[0]?.reason;
        if (reason === 'Completed') break;
        if (reason === 'Failed') throw new Error(e.status.conditions[0].message);
        await new Promise((r) => setTimeout(r, 25));
      }
    });
    printTable(
      'Export: the local pipeline through the API vs the bare exporter command (same image, qcow2)',
      [
        ['run', 'seconds', 'ratio', 'target'],
        ['bare export-image.sh', fmt(bare / 1000), '1.00', ''],
        ['API → Completed (convert, upload, referrer)', fmt(pipeline / 1000), fmt(pipeline / bare), '≤ 1.15'],
      ],
    );
    figures['export overhead ratio'] = pipeline / bare;
    return figures;
  } finally {
    await stack?.stop();
    await registry?.stop();
    await removeImages(base).catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }
}
