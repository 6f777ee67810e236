// Benchmarks of the resource API (foundation issue): handler latency through the local gateway against a
// bare GetItem on the same DynamoDB Local, bundle sizes, cold init, and list cost at 100 vs 10 000 builds.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { WorkflowRef, Workflows } from '../../functions/commons/ports.js';
import { startLocalStack } from '../../functions/local/stack.js';
import { fmt, loadTest, percentile, printTable, timeOne } from './stats.js';

const CONCURRENCY = 32;
const ROUNDS = 2000;

const quietWorkflows: Workflows = { start: async (_: WorkflowRef) => undefined, stop: async () => undefined };
const silent = { info: () => undefined, error: () => undefined };

const repo = (name: string) => ({
  apiVersion: 'flightctl.io/v1beta1',
  kind: 'Repository',
  metadata: { name },
  spec: { type: 'oci', registry: 'quay.io', accessMode: 'ReadWrite' },
});
const buildDoc = (name: string) => ({
  apiVersion: 'flightctl.io/v1alpha1',
  kind: 'ImageBuild',
  metadata: { name, labels: { bench: 'yes' } },
  spec: {
    source: { repository: 'src', imageName: 'centos-bootc/centos-bootc', imageTag: 'stream9' },
    destination: { repository: 'src', imageName: 'org/os', imageTag: 'v1' },
    binding: { type: 'late' },
  },
});

export async function benchApi(): Promise<Record<string, number>> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ib-bench-'));
  const stack = await startLocalStack({
    port: 0,
    dataDir,
    inMemory: true,
    workflows: quietWorkflows,
    logger: silent,
    // Quotas would stop the load test at 10 active builds; this measures the API, not the quota.
    settings: { quota: { activeBuilds: 1_000_000, buildsPerWindow: 10_000_000 } },
  });
  // 32 clients, one organization each (a tenant's creates take turns on its quota ledger; many tenants
  // at once is what the service sees).
  const tokens = await Promise.all(
    Array.from({ length: CONCURRENCY }, (_, i) => stack.token({ org_id: `bench-${i}`, roles: ['admin'] })),
  );
  const api = async (method: string, path: string, body?: unknown, client = 0) => {
    const res = await fetch(`${stack.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${tokens[client % CONCURRENCY]}`,
        'content-type': 'application/json',
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    await res.arrayBuffer();
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status}`);
  };
  const figures: Record<string, number> = {};
  try {
    for (let c = 0; c < CONCURRENCY; c++) await api('POST', '/api/v1/repositories', repo('src'), c);
    const bareGet = () =>
      stack.dynamo.client.call('GetItem', {
        TableName: 'imagebuilder',
        Key: { pk: { S: 'bench-1#ImageBuild' }, sk: { S: 'warm-1' } },
        ConsistentRead: true,
      });
    // Warm up every path (JIT on both sides, connections), then measure the baseline before and after
    // the API runs and keep the better one: the ratios are never flattered by a slow baseline.
    await loadTest(200, CONCURRENCY, (i) => api('POST', '/api/v1/imagebuilds', buildDoc(`warm-${i}`), i));
    await loadTest(1000, CONCURRENCY, bareGet);
    await loadTest(500, CONCURRENCY, (i) =>
      api('GET', `/api/v1/imagebuilds/warm-${i % 200}`, undefined, i % 200),
    );
    const bareBefore = await loadTest(ROUNDS, CONCURRENCY, bareGet);
    const create = await loadTest(ROUNDS, CONCURRENCY, (i) =>
      api('POST', '/api/v1/imagebuilds', buildDoc(`b-${i}`), i),
    );
    const get = await loadTest(ROUNDS, CONCURRENCY, (i) =>
      api('GET', `/api/v1/imagebuilds/b-${i}`, undefined, i),
    );
    const list = await loadTest(ROUNDS / 4, CONCURRENCY, (i) =>
      api('GET', '/api/v1/imagebuilds?limit=100', undefined, i),
    );
    const bareAfter = await loadTest(ROUNDS, CONCURRENCY, bareGet);
    const bare = percentile(bareBefore, 99) <= percentile(bareAfter, 99) ? bareBefore : bareAfter;
    const bareP99 = percentile(bare, 99);
    const rows: (string | number)[][] = [['operation', 'p50 ms', 'p99 ms', 'p99 ÷ bare GetItem p99']];
    for (const [name, s] of [
      ['bare GetItem', bare],
      ['create', create],
      ['get', get],
      ['list (100)', list],
    ] as const) {
      rows.push([name, fmt(percentile(s, 50)), fmt(percentile(s, 99)), fmt(percentile(s, 99) / bareP99)]);
      figures[`${name} p99 ratio`] = percentile(s, 99) / bareP99;
    }
    printTable(`API latency at ${CONCURRENCY} concurrent, ${ROUNDS} requests each (DynamoDB Local)`, rows);

    // First list page at 100 vs 10 000 stored builds, in a second org so the counts are exact.
    const pageTimes = async (org: string, count: number) => {
      for (let i = 0; i < count; i += 100) {
        await Promise.all(
          Array.from({ length: Math.min(100, count - i) }, (_, j) =>
            stack.deps.store.create({
              orgId: org,
              kind: 'ImageBuild',
              name: `b-${String(i + j).padStart(6, '0')}`,
              version: 1,
              doc: buildDoc(`b-${i + j}`) as never,
            }),
          ),
        );
      }
      const t = await stack.token({ org_id: org, roles: ['viewer'] });
      const samples: number[] = [];
      for (let i = 0; i < 60; i++) {
        samples.push(
          await timeOne(async () => {
            const r = await fetch(`${stack.url}/api/v1/imagebuilds?limit=100`, {
              headers: { authorization: `Bearer ${t}` },
            });
            await r.arrayBuffer();
          }),
        );
      }
      return percentile(samples.slice(10), 50);
    };
    const at100 = await pageTimes('org-100', 100);
    const at10k = await pageTimes('org-10k', 10_000);
    figures['list 10k/100 ratio'] = at10k / at100;
    printTable('First list page (limit=100), median of 50', [
      ['stored builds', 'ms'],
      ['100', fmt(at100)],
      ['10 000', fmt(at10k)],
      ['ratio', fmt(at10k / at100)],
    ]);
  } finally {
    await stack.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
  return figures;
}

/** Bundles each handler as the CDK app does (ESM, minified, SDK external) and measures size and cold init. */
export async function benchBundles(): Promise<Record<string, number>> {
  // Inside the repo so the bundles resolve @aws-sdk/* from node_modules, as Lambda resolves the runtime's.
  const cache = join(process.cwd(), 'node_modules', '.cache');
  await mkdir(cache, { recursive: true });
  const out = await mkdtemp(join(cache, 'ib-bundles-'));
  const figures: Record<string, number> = {};
  const node = (args: string[]) =>
    execFileSync(process.execPath, args, { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'inherit'] });
  const coldMs = (args: string[], runs = 15) => {
    const s: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint();
      node(args);
      s.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return percentile(s, 50);
  };
  try {
    const bare = coldMs(['-e', '']);
    const rows: (string | number)[][] = [['bundle', 'size KB', 'cold init ms', '÷ bare node']];
    rows.push(['(bare node -e "")', '-', fmt(bare), '1.00']);
    for (const fn of ['repositories', 'image-builds', 'image-exports', 'service']) {
      const file = join(out, `${fn}.mjs`);
      await build({
        entryPoints: [`functions/api/${fn}.ts`],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node22',
        minify: true,
        sourcemap: false,
        outfile: file,
        external: ['@aws-sdk/*'],
        banner: {
          js: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);",
        },
        logLevel: 'silent',
      });
      const size = (await stat(file)).size / 1024;
      // Init = load the module, then one invocation on an unknown route, which builds the SDK clients
      // without touching the network: what a Lambda cold start pays before real work (SDK from
      // node_modules, as the runtime provides it).
      const loader = join(out, `${fn}-init.mjs`);
      await writeFile(
        loader,
        `process.env.TABLE_NAME='t';process.env.SECRETS_PREFIX='p';process.env.TOKEN_KEY_SECRET_ARN='a';process.env.AWS_REGION='us-east-1';process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED='true';\nconst m = await import(${JSON.stringify(file)});\nconst r = await m.handler({ routeKey: 'GET /bench-init', rawPath: '/bench-init' }, {});\nif (r.statusCode !== 404) process.exit(1);\n`,
      );
      const cold = coldMs([loader]);
      rows.push([fn, fmt(size, 1), fmt(cold), fmt(cold / bare)]);
      figures[`${fn} KB`] = size;
      figures[`${fn} init ratio`] = cold / bare;
    }
    printTable('Lambda bundles (esbuild ESM, minified, @aws-sdk external)', rows);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
  return figures;
}
