// The EKS runner's path through the real state machines (statemachines/*.asl.json with `${Runner}` =
// eks), executed by aws-local-stepfunctions: the runJob states run the local Job stand-in
// (functions/local/local-eks-job.ts), which checks the Job manifest and runs the same fake builder and
// exporter through the CodeBuild stand-in; the job's result goes through object storage (s3rver) and the
// job-result step, and everything after it is the CodeBuild path's.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalWorkflowOptions } from '../../functions/local/local-workflows.js';
import {
  type Client,
  DEST_WITH_LOGIN,
  imageBuild,
  imageExport,
  type RunKind,
  seedRepositories,
  startTestStack,
  type TestStack,
  waitForReason,
} from '../fixtures/local-stack.js';

let stack: TestStack;
let admin: Client;
const pushed: { sha256: string; size: number; artifactKey: string }[] = [];
/**
 * Result objects presigned for the Jobs (their IB_RESULT_URL): with the digests the runs completed with,
 * which the job-result step read from those objects, proof that the runJob states ran.
 */
const written: string[] = [];

beforeAll(async () => {
  stack = await startTestStack({
    workflows: undefined,
    runner: 'eks',
    builderScript: join(__dirname, '../fixtures/fake-builder.sh'),
    exporterScript: join(__dirname, '../fixtures/fake-exporter.sh'),
    heartbeatTimeoutSeconds: 5,
    settings: { buildTimeoutSeconds: 60, heartbeatSeconds: 1 },
  });
  // The referrer push needs a registry (test/e2e has one); here it is observed instead.
  (stack.runner as unknown as { opts: LocalWorkflowOptions }).opts.pushReferrer = async ({
    plan,
    sha256,
    size,
  }) => {
    pushed.push({ sha256, size, artifactKey: plan.artifactKey });
    return `sha256:${'e'.repeat(64)}`;
  };
  const objects = stack.deps.objects;
  const presignPut = objects.presignPut.bind(objects);
  objects.presignPut = async (key, seconds) => {
    if (/\/results?\/|result\.json$/.test(key)) written.push(key);
    return presignPut(key, seconds);
  };
  admin = await stack.as('org-k');
  await seedRepositories(admin, { dst: DEST_WITH_LOGIN });
});
afterAll(() => stack.close());

const waitFor = (kind: RunKind, name: string, reasons: string[]) =>
  waitForReason(admin, kind, name, reasons, 30_000);

const build = (name: string, tag: string, spec: Record<string, unknown> = {}) =>
  imageBuild(name, { destination: { repository: 'dst', imageName: 'edge/os', imageTag: tag }, ...spec });

describe('EKS runner through the real ASL, locally', () => {
  it('a build runs as a Job and ends Completed with the digest the job wrote', async () => {
    const created = await admin.req('POST', '/api/v1/imagebuilds', build('eks-one', 'v1'));
    expect(created.status).toBe(201);
    const done = await waitFor('imagebuilds', 'eks-one', ['Completed', 'Failed']);
    expect(done.status.conditions[0]).toMatchObject({ reason: 'Completed', status: 'True' });
    expect(done.status.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(done.status.architectures).toEqual({ x86_64: { digest: done.status.manifestDigest } });
    const log = (await admin.req('GET', '/api/v1/imagebuilds/eks-one/log')).text;
    expect(log).toContain('[fake-builder] pushed registry.example.com:5000/edge/os:v1');
    // The password reached the builder from its ARN (the Job carried only that), and is not logged.
    expect(log).toContain(
      'destination password received (17 characters, file mode 600, in the environment: no)',
    );
    expect(log).not.toContain('dest-password-123');
    // The Job's result object was presigned for it, and went with the context at the end.
    const uid = created.body.metadata.uid;
    expect(written).toContain(`contexts/org-k/${uid}-1/results/x86_64.json`);
    expect(await stack.deps.objects.list(`contexts/org-k/${uid}`)).toEqual([]);
  });

  it('multi-arch: a Job per architecture, then the manifest-list Job over their digests', async () => {
    const created = await admin.req(
      'POST',
      '/api/v1/imagebuilds',
      build('eks-multi', 'v2', { architectures: ['x86_64', 'aarch64'] }),
    );
    const done = await waitFor('imagebuilds', 'eks-multi', ['Completed', 'Failed']);
    expect(done.status.conditions[0].reason).toBe('Completed');
    const { x86_64, aarch64 } = done.status.architectures;
    expect(x86_64.digest).not.toBe(aarch64.digest);
    const log = (await admin.req('GET', '/api/v1/imagebuilds/eks-multi/log')).text;
    expect(log).toContain('arch=aarch64 push=registry.example.com:5000/edge/os:v2-aarch64');
    expect(log).toContain(
      `manifest sources: registry.example.com:5000/edge/os@${x86_64.digest} registry.example.com:5000/edge/os@${aarch64.digest}`,
    );
    expect(done.status.manifestDigest).not.toBe(x86_64.digest);
    const prefix = `contexts/org-k/${created.body.metadata.uid}-1/results/`;
    expect(written.filter((k) => k.startsWith(prefix)).sort()).toEqual(
      ['aarch64', 'manifest', 'x86_64'].map((p) => `${prefix}${p}.json`),
    );
  });

  it('a failing Job ends Failed with the builder’s own message', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', build('eks-broken', 'fail'));
    const done = await waitFor('imagebuilds', 'eks-broken', ['Completed', 'Failed']);
    expect(done.status.conditions[0]).toMatchObject({
      reason: 'Failed',
      message: 'build failed: RUN step 3 exited with code 1',
    });
  });

  it('an export runs as a Job; its checksum and size come back through the result object', async () => {
    const created = await admin.req('POST', '/api/v1/imageexports', imageExport('eks-qcow2', 'eks-one'));
    const done = await waitFor('imageexports', 'eks-qcow2', ['Completed', 'Failed']);
    expect(done.status.conditions[0].reason).toBe('Completed');
    const { artifact } = done.status;
    expect(artifact.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(pushed).toContainEqual({
      sha256: artifact.sha256,
      size: artifact.size,
      artifactKey: artifact.uri.replace(/^s3:\/\/[^/]+\//, ''),
    });
    const disk = await stack.deps.objects.get(artifact.uri.replace(/^s3:\/\/[^/]+\//, ''));
    expect(disk?.byteLength).toBe(artifact.size);
    const result = `artifacts/org-k/${created.body.metadata.uid}-1/result.json`;
    expect(written).toContain(result);
    expect(JSON.parse(Buffer.from((await stack.deps.objects.get(result)) ?? []).toString())).toEqual({
      exported: [
        { Name: 'IB_SHA256', Value: artifact.sha256 },
        { Name: 'IB_SIZE', Value: String(artifact.size) },
      ],
    });
  });
});
