// End to end, the seed workflow: build → export → download, through the local stack's HTTP API with the
// same state machine files and scripts as the cloud: buildah builds and pushes to a real registry, the
// local exporter (bootc-image-builder cannot run here) writes a real partitioned qcow2 of the image's
// root filesystem to S3 (s3rver), the ORAS referrer goes to the registry, the download is presigned.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OciRegistry } from '../../functions/commons/adapters/oci-registry.js';
import { buildFixtureBaseImage, hasBuildah, removeImages, sh } from '../fixtures/base-image.js';
import {
  type Client,
  eventTypes,
  imageBuild,
  imageExport,
  type RunKind,
  repository,
  startTestStack,
  type TestStack,
  waitForReason,
} from '../fixtures/local-stack.js';
import { hasRegistry, pushImage, startRegistry, type TestRegistry } from '../fixtures/registry.js';

const READY = (await hasBuildah()) && (await hasRegistry());
const id = randomBytes(4).toString('hex');
const MOTD = 'exported by serverless-imagebuilder\n';

let registry: TestRegistry;
let stack: TestStack;
let admin: Client;
let work: string;
const images: string[] = [];

beforeAll(async () => {
  if (!READY) return;
  work = await mkdtemp(join(tmpdir(), 'ib-e2e-export-'));
  registry = await startRegistry();
  const base = `localhost/ib-e2e-export-base:${id}`;
  await buildFixtureBaseImage(base);
  images.push(base);
  await pushImage(base, `${registry.host}/fixtures/bootc-base:1`);
  stack = await startTestStack({
    workflows: undefined,
    settings: { buildTimeoutSeconds: 600, heartbeatSeconds: 2 },
  });
  admin = await stack.as('org-x');
  await admin.req(
    'POST',
    '/api/v1/repositories',
    repository('reg', { registry: registry.host, scheme: 'http', accessMode: 'ReadWrite' }),
  );
}, 300_000);

afterAll(async () => {
  if (!READY) return;
  await stack?.close();
  await registry?.stop();
  await removeImages(...images).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

const waitFor = (kind: RunKind, name: string, timeoutMs = 300_000) =>
  waitForReason(admin, kind, name, ['Completed', 'Failed', 'Canceled'], timeoutMs);

/** The `imagebuilder` CLI against this stack. */
function cli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const loader = pathToFileURL(join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', loader, join(root, 'bin', 'imagebuilder.ts'), ...args],
      {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: work,
          IMAGEBUILDER_URL: stack.url,
          IMAGEBUILDER_TOKEN: admin.token,
          IMAGEBUILDER_CONFIG: join(work, 'no-config.json'),
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

const eventsOf = (uid: string) => eventTypes(stack.dataDir, uid);

describe.skipIf(!READY)('build → export → download through the local stack', () => {
  it('an export created while its build runs waits, then converts, pushes a referrer and downloads as qcow2', async () => {
    const build = await admin.req(
      'POST',
      '/api/v1/imagebuilds',
      imageBuild('edge', {
        source: { repository: 'reg', imageName: 'fixtures/bootc-base', imageTag: '1' },
        destination: { repository: 'reg', imageName: 'edge/os', imageTag: 'v1' },
        customizations: { files: [{ path: '/etc/motd', content: MOTD }] },
      }),
    );
    expect(build.status).toBe(201);
    const exp = await admin.req('POST', '/api/v1/imageexports', imageExport('edge-qcow2', 'edge'));
    expect(exp.body.status.conditions[0].reason).toBe('Pending');
    expect(exp.body.status.conditions[0].message).toMatch(/Waiting for ImageBuild "edge"/);

    const built = await waitFor('imagebuilds', 'edge');
    expect(built.status.conditions[0].reason).toBe('Completed');
    const done = await waitFor('imageexports', 'edge-qcow2');
    const log = (await admin.req('GET', '/api/v1/imageexports/edge-qcow2/log')).text;
    expect(done.status.conditions[0], log.slice(-3000)).toMatchObject({
      reason: 'Completed',
      status: 'True',
    });
    expect(log).toContain('local exporter');
    const { artifact } = done.status;
    expect(artifact).toMatchObject({ contentType: 'application/x-qemu-disk' });
    expect(artifact.uri).toMatch(/^s3:\/\/imagebuilder-local\/artifacts\/org-x\/.+\/edge-x86_64\.qcow2$/);

    // Download: 307 to a presigned URL naming the file; the bytes match size and SHA-256.
    const dl = await fetch(`${stack.url}/api/v1/imageexports/edge-qcow2/download`, {
      headers: { authorization: `Bearer ${admin.token}` },
      redirect: 'manual',
    });
    expect(dl.status).toBe(307);
    const url = new URL(dl.headers.get('location') ?? '');
    expect(Number(url.searchParams.get('X-Amz-Expires'))).toBeLessThanOrEqual(900);
    const file = await fetch(url);
    expect(file.headers.get('content-disposition')).toBe('attachment; filename="edge-x86_64.qcow2"');
    const bytes = Buffer.from(await file.arrayBuffer());
    expect(bytes.length).toBe(artifact.size);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(artifact.sha256);

    // The disk: qcow2, a partition table, an ext4 root holding the build's files (debugfs, no mounts).
    const qcow2 = join(work, 'edge.qcow2');
    const raw = join(work, 'edge.raw');
    await writeFile(qcow2, bytes);
    expect(JSON.parse((await sh('qemu-img', ['info', '--output=json', qcow2])).stdout).format).toBe('qcow2');
    await sh('qemu-img', ['convert', '-O', 'raw', qcow2, raw]);
    const table = JSON.parse((await sh('sfdisk', ['--json', raw])).stdout).partitiontable;
    expect(table.label).toBe('gpt');
    expect(table.partitions).toHaveLength(1);
    const offset = table.partitions[0].start * 512;
    const debugfs = async (request: string) =>
      (await sh('debugfs', ['-R', request, `${raw}?offset=${offset}`])).stdout;
    expect(await debugfs('cat /etc/motd')).toBe(MOTD);
    expect(await debugfs('stat /etc/systemd/system/multi-user.target.wants/flightctl-agent.service')).toMatch(
      /symlink/,
    );

    // The ORAS referrer in the registry names the build's manifest as its subject.
    const client = new OciRegistry({ registry: registry.host, scheme: 'http' });
    try {
      const referrers = await client.referrers('edge/os', built.status.manifestDigest);
      expect(referrers.map((r) => r.digest)).toContain(done.status.manifestDigest);
      expect(referrers.find((r) => r.digest === done.status.manifestDigest)?.artifactType).toBe(
        'application/vnd.diskimage.qcow2',
      );
    } finally {
      client.close();
    }

    // One event per transition: Started and Completed, for the build and for the export.
    expect(await eventsOf(built.metadata.uid)).toEqual(['ImageBuild Started', 'ImageBuild Completed']);
    expect(await eventsOf(done.metadata.uid)).toEqual(['ImageExport Started', 'ImageExport Completed']);

    // The CLI gets the same file through the real download endpoint and checks its SHA-256.
    const cliFile = join(work, 'cli.qcow2');
    const run = await cli(['download', 'imageexport/edge-qcow2', cliFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(
      createHash('sha256')
        .update(await readFile(cliFile))
        .digest('hex'),
    ).toBe(artifact.sha256);
    expect((await cli(['wait', 'imageexport/edge-qcow2', '--for=Completed', '--timeout', '10s'])).code).toBe(
      0,
    );

    // Deleting the build removes the export and its disk image.
    expect((await admin.req('DELETE', '/api/v1/imagebuilds/edge')).status).toBe(200);
    expect((await admin.req('GET', '/api/v1/imageexports/edge-qcow2')).status).toBe(404);
    expect(await stack.deps.objects.list('artifacts/org-x/')).toEqual([]);
  });

  it('a format the local exporter cannot make ends Failed saying so', async () => {
    await admin.req(
      'POST',
      '/api/v1/imagebuilds',
      imageBuild('edge2', {
        source: { repository: 'reg', imageName: 'fixtures/bootc-base', imageTag: '1' },
        destination: { repository: 'reg', imageName: 'edge/os', imageTag: 'v2' },
      }),
    );
    await waitFor('imagebuilds', 'edge2');
    await admin.req('POST', '/api/v1/imageexports', imageExport('edge2-iso', 'edge2', { format: 'iso' }));
    const done = await waitFor('imageexports', 'edge2-iso');
    expect(done.status.conditions[0].reason).toBe('Failed');
    expect(done.status.conditions[0].message).toMatch(/needs bootc-image-builder/);
  });
});
