// The build state machine (statemachines/image-build.asl.json) executed by aws-local-stepfunctions with
// the same step handler and the local CodeBuild stand-in; the builder is test/fixtures/fake-builder.sh
// (the real builder script with buildah runs in test/e2e). Scenarios: happy, multi-arch Map, builder
// failure, retried transient failure, cancel in each phase, timeouts, early binding unconfigured.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResourceStore } from '../../functions/commons/ports.js';
import {
  type Client,
  DEST_WITH_LOGIN,
  imageBuild,
  seedRepositories,
  startTestStack,
  type TestStack,
  waitForReason,
} from '../fixtures/local-stack.js';

const FAKE_BUILDER = join(__dirname, '../fixtures/fake-builder.sh');
let stack: TestStack;
let admin: Client;

beforeAll(async () => {
  stack = await startTestStack({
    workflows: undefined,
    builderScript: FAKE_BUILDER,
    heartbeatTimeoutSeconds: 2,
    settings: { buildTimeoutSeconds: 30, heartbeatSeconds: 1 },
  });
  admin = await stack.as('org-a');
  await seedRepositories(admin, { dst: DEST_WITH_LOGIN });
});
afterAll(() => stack.close());

const waitFor = (name: string, reasons: string[], timeoutMs = 30_000) =>
  waitForReason(admin, 'imagebuilds', name, reasons, timeoutMs);

/** The events of one run; waits briefly, since the status write lands just before its event. */
async function events(uid: string, atLeast = 2) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const text = await readFile(join(stack.dataDir, 'events.jsonl'), 'utf8').catch(() => '');
    const found = text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((e) => JSON.parse(e.Detail).uid === uid);
    if (found.length >= atLeast || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const build = (name: string, tag: string, spec: Record<string, unknown> = {}) =>
  imageBuild(name, { destination: { repository: 'dst', imageName: 'edge/os', imageTag: tag }, ...spec });

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('image-build state machine, locally', () => {
  it('happy path: Pending → Building → Completed, digest recorded, one Started and one Completed event', async () => {
    const created = await admin.req('POST', '/api/v1/imagebuilds', build('happy', 'v1'));
    expect(created.status).toBe(201);
    const done = await waitFor('happy', ['Completed', 'Failed']);
    expect(done.status.conditions[0]).toMatchObject({ reason: 'Completed', status: 'True' });
    expect(done.status.imageReference).toBe('registry.example.com:5000/edge/os:v1');
    expect(done.status.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(done.status.architectures).toEqual({ x86_64: { digest: done.status.manifestDigest } });
    expect(done.status.startTime <= done.status.completionTime).toBe(true);
    const ev = await events(created.body.metadata.uid);
    expect(ev.map((e) => e.DetailType)).toEqual(['ImageBuild Started', 'ImageBuild Completed']);
    expect(ev[0]).toMatchObject({ Source: 'imagebuilder' });
    expect(JSON.parse(ev[1].Detail)).toMatchObject({
      orgId: 'org-a',
      kind: 'ImageBuild',
      name: 'happy',
      reason: 'Completed',
      imageReference: 'registry.example.com:5000/edge/os:v1',
      manifestDigest: done.status.manifestDigest,
    });
    // The log holds the builder's output (and the password only as a length), the context is gone.
    const log = await admin.req('GET', '/api/v1/imagebuilds/happy/log');
    expect(log.status).toBe(200);
    expect(log.text).toContain('[fake-builder] pushed registry.example.com:5000/edge/os:v1');
    expect(log.text).toContain(
      'destination password received (17 characters, file mode 600, in the environment: no)',
    );
    expect(log.text).not.toContain('dest-password-123');
    expect(log.headers.get('x-log-complete')).toBe('true');
    expect(await stack.deps.objects.list(`contexts/org-a/${created.body.metadata.uid}`)).toEqual([]);
  });

  it('multi-arch: one build per architecture in the Map, then a manifest list over their digests', async () => {
    const created = await admin.req(
      'POST',
      '/api/v1/imagebuilds',
      build('multi', 'v2', { architectures: ['x86_64', 'aarch64'] }),
    );
    const done = await waitFor('multi', ['Completed', 'Failed']);
    expect(done.status.conditions[0].reason, done.status.conditions[0].message).toBe('Completed');
    const { x86_64, aarch64 } = done.status.architectures;
    expect(x86_64.digest).not.toBe(aarch64.digest);
    const log = (await admin.req('GET', '/api/v1/imagebuilds/multi/log')).text;
    expect(log).toContain('push=registry.example.com:5000/edge/os:v2-x86_64');
    expect(log).toContain('push=registry.example.com:5000/edge/os:v2-aarch64');
    const sources = `registry.example.com:5000/edge/os@${x86_64.digest} registry.example.com:5000/edge/os@${aarch64.digest}`;
    expect(log).toContain(`manifest sources: ${sources}`);
    expect(done.status.manifestDigest).toBe(
      `sha256:${sha(`registry.example.com:5000/edge/os:v2 ${sources}`)}`,
    );
    expect((await events(created.body.metadata.uid)).map((e) => e.DetailType)).toEqual([
      'ImageBuild Started',
      'ImageBuild Completed',
    ]);
  });

  it('a failing builder ends Failed with the builder’s own message', async () => {
    const created = await admin.req('POST', '/api/v1/imagebuilds', build('broken', 'fail'));
    const done = await waitFor('broken', ['Completed', 'Failed']);
    expect(done.status.conditions[0]).toMatchObject({
      reason: 'Failed',
      message: 'build failed: RUN step 3 exited with code 1',
    });
    expect((await events(created.body.metadata.uid)).map((e) => e.DetailType)).toEqual([
      'ImageBuild Started',
      'ImageBuild Failed',
    ]);
  });

  it('a transient failure of a step is retried by the definition’s Retry, then succeeds', async () => {
    const store = stack.deps.store as ResourceStore & { get: ResourceStore['get'] };
    const original = store.get.bind(store);
    let throttled = 0;
    store.get = async (orgId, kind, name) => {
      if (
        name === 'flaky' &&
        kind === 'ImageBuild' &&
        throttled === 0 &&
        new Error().stack?.includes('prepare')
      ) {
        throttled++;
        throw Object.assign(new Error('Rate exceeded'), { name: 'Lambda.TooManyRequestsException' });
      }
      return original(orgId, kind, name);
    };
    try {
      await admin.req('POST', '/api/v1/imagebuilds', build('flaky', 'v3'));
      const done = await waitFor('flaky', ['Completed', 'Failed'], 40_000);
      expect(throttled).toBe(1);
      expect(done.status.conditions[0].reason).toBe('Completed');
    } finally {
      store.get = original;
    }
  });

  it('a context upload that fails after Building was recorded ends Failed with its error: Started, Failed', async () => {
    const objects = stack.deps.objects;
    const original = objects.put.bind(objects);
    objects.put = async (key, body, contentType) => {
      if (key.endsWith('context.tar')) throw new Error('S3 PUT context.tar: 503 SlowDown');
      return original(key, body, contentType);
    };
    try {
      const created = await admin.req('POST', '/api/v1/imagebuilds', build('no-context', 'v9'));
      const done = await waitFor('no-context', ['Completed', 'Failed']);
      expect(done.status.conditions[0].reason).toBe('Failed');
      expect(done.status.conditions[0].message).toContain('503 SlowDown');
      expect((await events(created.body.metadata.uid)).map((e) => e.DetailType)).toEqual([
        'ImageBuild Started',
        'ImageBuild Failed',
      ]);
    } finally {
      objects.put = original;
    }
  });

  it('cancel while Building kills the builder and ends Canceled; a second cancel is 409', async () => {
    const created = await admin.req('POST', '/api/v1/imagebuilds', build('long', 'sleep'));
    await waitFor('long', ['Building']);
    await new Promise((r) => setTimeout(r, 500)); // heartbeats flowing
    const canceled = await admin.req('POST', '/api/v1/imagebuilds/long/cancel');
    expect(canceled.status).toBe(200);
    expect(canceled.body.status.conditions[0].reason).toBe('Canceling');
    const done = await waitFor('long', ['Canceled', 'Failed', 'Completed']);
    expect(done.status.conditions[0].reason).toBe('Canceled');
    expect(done.status.lastSeen).toBeTruthy();
    expect((await admin.req('POST', '/api/v1/imagebuilds/long/cancel')).status).toBe(409);
    await stack.runner?.idle();
    const log = (await admin.req('GET', '/api/v1/imagebuilds/long/log')).text;
    expect(log).toContain('[heartbeat]');
    expect(log).toContain('stopped: the run was canceled');
    expect((await events(created.body.metadata.uid)).map((e) => e.DetailType)).toEqual([
      'ImageBuild Started',
      'ImageBuild Canceled',
    ]);
  });

  it('cancel while Pending ends Canceled at once and the execution does nothing more', async () => {
    const deps = stack.deps;
    const original = deps.workflows.start.bind(deps.workflows);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    deps.workflows.start = async (ref) => {
      await gate; // hold the hand-off so the build is still Pending when canceled
      return original(ref);
    };
    const createdP = admin.req('POST', '/api/v1/imagebuilds', build('early-cancel', 'v4'));
    await new Promise((r) => setTimeout(r, 300));
    const canceled = await admin.req('POST', '/api/v1/imagebuilds/early-cancel/cancel');
    expect(canceled.status).toBe(200);
    expect(canceled.body.status.conditions[0].reason).toBe('Canceled');
    release();
    deps.workflows.start = original;
    const created = await createdP;
    await stack.runner?.idle();
    const after = await admin.req('GET', '/api/v1/imagebuilds/early-cancel');
    expect(after.body.status.conditions[0].reason).toBe('Canceled');
    expect((await events(created.body.metadata.uid)).map((e) => e.DetailType)).toEqual([
      'ImageBuild Canceled',
    ]);
  });

  it('a Completed build cannot be canceled (409)', async () => {
    expect((await admin.req('POST', '/api/v1/imagebuilds/happy/cancel')).status).toBe(409);
  });

  it('a builder that stops sending heartbeats is killed and the build ends Failed "timed out"', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', build('hung', 'silent'));
    const done = await waitFor('hung', ['Failed', 'Completed', 'Canceled'], 30_000);
    expect(done.status.conditions[0].reason).toBe('Failed');
    expect(done.status.conditions[0].message).toMatch(/^timed out: no heartbeat from the builder for \d+ s$/);
  });

  it('early binding without an enrollment service configured fails with a message saying what to do', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', build('early', 'v5', { binding: { type: 'early' } }));
    const done = await waitFor('early', ['Failed', 'Completed']);
    expect(done.status.conditions[0].message).toMatch(
      /early binding needs a Flight Control enrollment service/,
    );
  });

  it('retry annotation re-runs a Failed build as a new generation; the run completes', async () => {
    const res = await admin.req(
      'PATCH',
      '/api/v1/imagebuilds/broken',
      { metadata: { annotations: { 'imagebuilder.flightctl.io/retry': 'true', note: 'x' } } },
      { 'content-type': 'application/merge-patch+json' },
    );
    expect(res.status).toBe(200);
    expect(res.body.metadata.generation).toBe(2);
    expect(res.body.metadata.annotations).toEqual({ note: 'x' });
    expect(res.body.status.conditions[0].reason).toBe('Pending');
    const done = await waitFor('broken', ['Failed', 'Completed']);
    expect(done.status.conditions[0].reason).toBe('Failed'); // the same failing tag fails again, as a new run
    expect(done.metadata.generation).toBe(2);
  });
});
