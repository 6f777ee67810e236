// cancel, PATCH (merge patch of labels/annotations with the cancel/retry annotations), newversion and
// the log endpoint, and DELETE of a build whose runs outlast its wait, through the local gateway with the
// workflows port observed (a recording double: runs end only when the test says so).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cancelRun, workflowRef } from '../../functions/commons/domain/image-builds.js';
import { transition } from '../../functions/commons/domain/transitions.js';
import {
  type Client,
  imageBuild,
  imageExport,
  seedRepositories,
  startTestStack,
  type TestStack,
} from '../fixtures/local-stack.js';

let stack: TestStack;
let admin: Client;
const MERGE = { 'content-type': 'application/merge-patch+json' };

beforeAll(async () => {
  stack = await startTestStack();
  admin = await stack.as('org-a');
  await seedRepositories(admin);
});
afterAll(() => stack.close());

async function setReason(name: string, reason: string, kind: 'ImageBuild' | 'ImageExport' = 'ImageBuild') {
  const item = await stack.deps.store.get('org-a', kind, name);
  if (!item) throw new Error(name);
  await transition(stack.deps, workflowRef(item), { reason, message: reason });
}

describe('cancel', () => {
  it('a cancel that loses to the run’s own step (Pending → Building under it) cancels from there, not 409', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('race'));
    // The cancel reads the build Pending; before it writes, the workflow's Prepare moves it to Building.
    let raced = false;
    const store = stack.deps.store;
    const racing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop !== 'get') return Reflect.get(target, prop, receiver);
        return async (...args: Parameters<typeof store.get>) => {
          const item = await target.get(...args);
          if (item && !raced && args[2] === 'race') {
            raced = true;
            await transition(stack.deps, workflowRef(item), {
              reason: 'Building',
              message: 'Building',
              from: ['Pending'],
            });
          }
          return item;
        };
      },
    });
    const out = await cancelRun(
      { ...stack.deps, store: racing },
      { sub: 'u', orgId: 'org-a', roles: ['admin'] },
      'ImageBuild',
      'race',
    );
    expect(raced).toBe(true);
    expect(out.status?.conditions?.[0]?.reason).toBe('Canceling');
    expect(stack.workflows.stops.map((s) => s.ref.name)).toContain('race');
  });

  it('Pending → Canceled at once; Building → Canceling with the execution stopped; 409 afterwards; 404 missing', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('p'));
    const p = await admin.req('POST', '/api/v1/imagebuilds/p/cancel');
    expect(p.status).toBe(200);
    expect(p.body.status.conditions[0]).toMatchObject({ reason: 'Canceled', status: 'False' });
    expect((await admin.req('POST', '/api/v1/imagebuilds/p/cancel')).status).toBe(409);

    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('b'));
    await setReason('b', 'Building');
    const stopsBefore = stack.workflows.stops.length;
    const b = await admin.req('POST', '/api/v1/imagebuilds/b/cancel');
    expect(b.body.status.conditions[0].reason).toBe('Canceling');
    expect(stack.workflows.stops.slice(stopsBefore)).toEqual([
      { ref: expect.objectContaining({ name: 'b', kind: 'ImageBuild' }), reason: 'canceled by user' },
    ]);
    expect((await admin.req('POST', '/api/v1/imagebuilds/b/cancel')).status).toBe(409);
    expect((await admin.req('POST', '/api/v1/imagebuilds/none/cancel')).status).toBe(404);
    const viewer = await stack.as('org-a', ['viewer']);
    expect((await viewer.req('POST', '/api/v1/imagebuilds/p/cancel')).status).toBe(403);
  });
});

describe('PATCH /imagebuilds/{name}', () => {
  it('merges labels and annotations (null removes), bumps resourceVersion, keeps the spec', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('m', {}, { labels: { a: '1', b: '2' } }));
    const res = await admin.req(
      'PATCH',
      '/api/v1/imagebuilds/m',
      { metadata: { labels: { b: null, c: '3' }, annotations: { note: 'hi' } } },
      MERGE,
    );
    expect(res.status).toBe(200);
    expect(res.body.metadata.labels).toEqual({ a: '1', c: '3' });
    expect(res.body.metadata.annotations).toEqual({ note: 'hi' });
    expect(res.body.metadata.resourceVersion).toBe('2');
    expect(res.body.metadata.generation).toBe(1);
  });

  it('rejects anything but metadata.labels/annotations, and invalid labels, naming the field', async () => {
    for (const [body, field] of [
      [{ spec: { binding: { type: 'early' } } }, 'spec'],
      [{ metadata: { name: 'x' } }, 'metadata.name'],
      [{ metadata: { labels: { 'bad key': 'v' } } }, 'metadata.labels'],
      [{ metadata: { labels: { k: 5 } } }, 'metadata.labels'],
    ] as const) {
      const res = await admin.req('PATCH', '/api/v1/imagebuilds/m', body, MERGE);
      expect([field, res.status]).toEqual([field, 400]);
      expect(res.body.message.startsWith(field)).toBe(true);
    }
  });

  it('the cancel annotation cancels; the retry annotation re-runs a Canceled build as generation 2', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('r'));
    const canceled = await admin.req(
      'PATCH',
      '/api/v1/imagebuilds/r',
      { metadata: { annotations: { 'imagebuilder.flightctl.io/cancel': 'true' } } },
      MERGE,
    );
    expect(canceled.body.status.conditions[0].reason).toBe('Canceled');
    expect(canceled.body.metadata.annotations).toBeUndefined();
    const startsBefore = stack.workflows.starts.length;
    const retried = await admin.req(
      'PATCH',
      '/api/v1/imagebuilds/r',
      { metadata: { annotations: { 'imagebuilder.flightctl.io/retry': 'true' } } },
      MERGE,
    );
    expect(retried.status).toBe(200);
    expect(retried.body.metadata.generation).toBe(2);
    expect(retried.body.status.conditions[0].reason).toBe('Pending');
    expect(stack.workflows.starts.slice(startsBefore)).toEqual([
      expect.objectContaining({ name: 'r', generation: 2 }),
    ]);
    const again = await admin.req(
      'PATCH',
      '/api/v1/imagebuilds/r',
      { metadata: { annotations: { 'imagebuilder.flightctl.io/retry': 'true' } } },
      MERGE,
    );
    expect(again.status).toBe(409);
  });
});

describe('newversion', () => {
  it('copies the spec under a new name with new tags and the new-version-from annotation', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('v1', {}, { labels: { app: 'os' } }));
    const res = await admin.req('POST', '/api/v1/imagebuilds/v1/newversion', {
      name: 'v2',
      destinationImageTag: 'v2.0.0',
    });
    expect(res.status).toBe(201);
    expect(res.body.metadata).toMatchObject({
      name: 'v2',
      labels: { app: 'os' },
      annotations: { 'flightctl.io/new-version-from': 'v1' },
    });
    expect(res.body.spec.destination.imageTag).toBe('v2.0.0');
    expect(res.body.spec.source.imageTag).toBe('stream9');
    expect((await admin.req('POST', '/api/v1/imagebuilds/v1/newversion', { name: 'v2' })).status).toBe(409);
    expect((await admin.req('POST', '/api/v1/imagebuilds/nope/newversion', { name: 'v3' })).status).toBe(404);
    const bad = await admin.req('POST', '/api/v1/imagebuilds/v1/newversion', {
      name: 'v3',
      sourceImageTag: '-x',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^sourceImageTag: /);
    const badName = await admin.req('POST', '/api/v1/imagebuilds/v1/newversion', { name: 'Bad' });
    expect(badName.body.message).toMatch(/^name: /);
  });
});

describe('log', () => {
  it('serves the run’s log with a cursor; follow waits for more until the build ends; installer gets 403', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('logged'));
    const item = await stack.deps.store.get('org-a', 'ImageBuild', 'logged');
    const ref = workflowRef(item!);
    const { appendFile, mkdir } = await import('node:fs/promises');
    const { dirname } = await import('node:path');
    const file = (stack.deps.logs as unknown as { pathOf(r: typeof ref): string }).pathOf(ref);
    await mkdir(dirname(file), { recursive: true });
    await appendFile(file, 'line 1\n');
    const first = await admin.req('GET', '/api/v1/imagebuilds/logged/log');
    expect(first.text).toBe('line 1\n');
    expect(first.headers.get('x-log-complete')).toBe('false');
    const cursor = first.headers.get('x-log-cursor');
    const followed = admin.req('GET', `/api/v1/imagebuilds/logged/log?follow=true&cursor=${cursor}`);
    await new Promise((r) => setTimeout(r, 700));
    await appendFile(file, 'line 2\n');
    const second = await followed;
    expect(second.text).toBe('line 2\n');
    const installer = await stack.as('org-a', ['installer']);
    expect((await installer.req('GET', '/api/v1/imagebuilds/logged/log')).status).toBe(403);
    const viewer = await stack.as('org-a', ['viewer']);
    expect((await viewer.req('GET', '/api/v1/imagebuilds/logged/log')).status).toBe(200);
  });
});

describe('DELETE of a build whose runs outlast the wait', () => {
  it('answers 200 saying the deletion continues; the build goes only after its last export has ended and gone', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('slow'));
    await setReason('slow', 'Building');
    await admin.req('POST', '/api/v1/imageexports', imageExport('slow-disk', 'slow'));
    await setReason('slow-disk', 'Converting', 'ImageExport'); // as if it ran (a test of the store only)
    const active = (await admin.req('GET', '/api/v1/quota')).body.usage.activeBuilds;
    stack.deps.settings.deleteWaitSeconds = 0.5;
    try {
      const stopsBefore = stack.workflows.stops.length;
      const del = await admin.req('DELETE', '/api/v1/imagebuilds/slow');
      expect(del.status).toBe(200);
      expect(del.body).toMatchObject({
        kind: 'Status',
        status: 'Success',
        message:
          'ImageBuild "slow" is being deleted: ImageExport/slow-disk, ImageBuild/slow still stopping; they and the build are deleted when their runs end',
      });
      expect(
        stack.workflows.stops.slice(stopsBefore).map((s) => `${s.ref.kind}/${s.ref.name}: ${s.reason}`),
      ).toEqual([
        'ImageExport/slow-disk: ImageBuild "slow" deleted',
        'ImageBuild/slow: ImageBuild "slow" deleted',
      ]);
      const build = (await admin.req('GET', '/api/v1/imagebuilds/slow')).body;
      expect(build.metadata.deletionTimestamp).toBeTruthy();
      expect(build.status.conditions[0].reason).toBe('Canceling');

      // The build's run ends first: it stays, marked, while its export is still there.
      await setReason('slow', 'Canceled');
      const ended = await admin.req('GET', '/api/v1/imagebuilds/slow');
      expect(ended.status).toBe(200);
      expect(ended.body.status.conditions[0].reason).toBe('Canceled');
      expect((await admin.req('GET', '/api/v1/quota')).body.usage.activeBuilds).toBe(active - 1);
      // Then the export's: it goes, and the build with it.
      await setReason('slow-disk', 'Canceled', 'ImageExport');
      expect((await admin.req('GET', '/api/v1/imageexports/slow-disk')).status).toBe(404);
      expect((await admin.req('GET', '/api/v1/imagebuilds/slow')).status).toBe(404);
      expect((await admin.req('GET', '/api/v1/quota')).body.usage.activeBuilds).toBe(active - 1);
    } finally {
      delete stack.deps.settings.deleteWaitSeconds;
    }
  });
});
