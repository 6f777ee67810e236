import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logStreamName } from '../../functions/commons/domain/build-plan.js';
import { readyCondition, workflowRef } from '../../functions/commons/domain/resources.js';
import { touch } from '../../functions/commons/domain/transitions.js';
import type { StoredResource, WorkflowRef } from '../../functions/commons/ports.js';
import { recordHeartbeats } from '../../functions/workflows/heartbeat.js';
import { heartbeatTimeoutSeconds, reconcileSilent } from '../../functions/workflows/reconciler.js';
import {
  type Client,
  eventTypes,
  imageBuild,
  imageExport,
  repository,
  startTestStack,
  type TestStack,
} from '../fixtures/local-stack.js';

let stack: TestStack;
let admin: Client;
const ORG = 'org-h:tenant'; // a ':' that log stream names cannot hold, so it travels URI-encoded

beforeAll(async () => {
  stack = await startTestStack();
  admin = await stack.as(ORG);
  await admin.req('POST', '/api/v1/repositories', repository('src'));
  await admin.req('POST', '/api/v1/repositories', repository('dst', { accessMode: 'ReadWrite' }));
});
afterAll(() => stack.close());

const ago = (seconds: number) => new Date(Date.now() - seconds * 1000).toISOString();

/** Puts a stored run into `reason` since `since`, last seen at `lastSeen` (as a run in AWS would be). */
async function setRun(
  kind: 'ImageBuild' | 'ImageExport',
  name: string,
  reason: string,
  since: string,
  lastSeen: string,
) {
  const item = (await stack.deps.store.get(ORG, kind, name)) as StoredResource;
  const condition = { ...readyCondition(reason, reason), lastTransitionTime: since };
  const doc = {
    ...item.doc,
    status: { ...(item.doc.status ?? {}), conditions: [condition], lastSeen, startTime: since },
  };
  await stack.deps.store.replace({ ...item, version: item.version + 1, doc } as StoredResource, item.version);
  return workflowRef((await stack.deps.store.get(ORG, kind, name)) as StoredResource);
}

const get = async (kind: 'imagebuilds' | 'imageexports', name: string) =>
  (await admin.req('GET', `/api/v1/${kind}/${name}`)).body;

/** A CloudWatch Logs subscription delivery of these lines of one stream. */
function delivery(logStream: string, lines: string[]) {
  const payload = {
    messageType: 'DATA_MESSAGE',
    owner: '123456789012',
    logGroup: 'imagebuilder-dev-builders',
    logStream,
    subscriptionFilters: ['imagebuilder-heartbeats'],
    logEvents: lines.map((message, i) => ({ id: String(i), timestamp: Date.now(), message })),
  };
  return { awslogs: { data: gzipSync(JSON.stringify(payload)).toString('base64') } };
}

const eventsOf = (uid: string) => eventTypes(stack.dataDir, uid);

describe('heartbeat timeout in the cloud (heartbeat handler + reconciler sweep)', () => {
  let silent: WorkflowRef;
  let beating: WorkflowRef;
  let fresh: WorkflowRef;
  let converting: WorkflowRef;
  let pushing: WorkflowRef;

  beforeAll(async () => {
    for (const name of ['silent', 'beating', 'fresh', 'done']) {
      await admin.req(
        'POST',
        '/api/v1/imagebuilds',
        imageBuild(name, { architectures: ['x86_64', 'aarch64'] }),
      );
    }
    // An export waiting for the silent build: it must end with it.
    await admin.req('POST', '/api/v1/imageexports', imageExport('waits', 'silent'));
    for (const name of ['conv', 'push'])
      await admin.req('POST', '/api/v1/imageexports', imageExport(name, 'done'));
    silent = await setRun('ImageBuild', 'silent', 'Building', ago(1200), ago(900));
    beating = await setRun('ImageBuild', 'beating', 'Building', ago(1200), ago(900));
    const entered = ago(30); // entered Building and not heard from since: one instant for both
    fresh = await setRun('ImageBuild', 'fresh', 'Building', entered, entered);
    await setRun('ImageBuild', 'done', 'Completed', ago(1200), ago(1200));
    converting = await setRun('ImageExport', 'conv', 'Converting', ago(1200), ago(700));
    pushing = await setRun('ImageExport', 'push', 'Pushing', ago(1200), ago(700));
  });

  it('a heartbeat delivery names its run through the log stream and updates lastSeen', async () => {
    const before = (await get('imagebuilds', 'beating')).status.lastSeen;
    const silentSeen = (await get('imagebuilds', 'silent')).status.lastSeen;
    const touched = await recordHeartbeats(
      stack.deps,
      delivery(`${logStreamName(beating, 'aarch64')}/4f1c2d3e-build-id`, [
        '[heartbeat] 2026-12-01T13:00:00Z',
      ]),
    );
    expect(touched).toEqual([`${ORG}/ImageBuild/beating`]);
    const after = (await get('imagebuilds', 'beating')).status.lastSeen;
    expect(after > before).toBe(true);
    expect(Date.parse(after)).toBeGreaterThan(Date.now() - 10_000);
    // Other streams and deliveries change nothing.
    expect(await recordHeartbeats(stack.deps, delivery('some/other/stream', ['[heartbeat] x']))).toEqual([]);
    expect(
      await recordHeartbeats(stack.deps, delivery(logStreamName(silent, 'x86_64'), ['no beat'])),
    ).toEqual([]);
    expect((await get('imagebuilds', 'silent')).status.lastSeen).toBe(silentSeen);
  });

  it('fails and stops only the runs silent for longer than the timeout, once', async () => {
    const result = await reconcileSilent(stack.deps, { heartbeatTimeoutSeconds: 600 });
    expect(result.timedOut.sort()).toEqual([`${ORG}/ImageBuild/silent`, `${ORG}/ImageExport/conv`]);
    const failed = await get('imagebuilds', 'silent');
    expect(failed.status.conditions[0]).toMatchObject({ reason: 'Failed' });
    expect(failed.status.conditions[0].message).toMatch(
      /^timed out: no heartbeat from the builder for 9\d\d s$/,
    );
    const conv = await get('imageexports', 'conv');
    expect(conv.status.conditions[0].message).toMatch(
      /^timed out: no heartbeat from the builder for 7\d\d s$/,
    );
    // The waiting export ended with its build; the others are untouched.
    expect((await get('imageexports', 'waits')).status.conditions[0].reason).toBe('Failed');
    expect((await get('imagebuilds', 'beating')).status.conditions[0].reason).toBe('Building');
    expect((await get('imagebuilds', 'fresh')).status.conditions[0].reason).toBe('Building');
    expect((await get('imageexports', 'push')).status.conditions[0].reason).toBe('Pushing');
    // Their executions were stopped, with the message as the cause.
    expect(stack.workflows.stops.map((s) => [s.ref.name, s.reason])).toEqual(
      expect.arrayContaining([
        ['silent', failed.status.conditions[0].message],
        ['conv', conv.status.conditions[0].message],
      ]),
    );
    expect(stack.workflows.stops.map((s) => s.ref.name).sort()).toEqual(['conv', 'silent']);
    expect(stack.workflows.stops.find((s) => s.ref.name === 'silent')?.ref).toEqual(silent);
    expect(stack.workflows.stops.find((s) => s.ref.name === 'conv')?.ref).toEqual(converting);
    // One event for the transition (the build's creation and Pending published none).
    expect(await eventsOf(silent.uid)).toEqual(['ImageBuild Failed']);
    expect(await eventsOf(converting.uid)).toEqual(['ImageExport Failed']);
    // A second sweep finds nothing more to do.
    expect((await reconcileSilent(stack.deps, { heartbeatTimeoutSeconds: 600 })).timedOut).toEqual([]);
    expect(stack.workflows.stops).toHaveLength(2);
    expect(await eventsOf(silent.uid)).toEqual(['ImageBuild Failed']);
    expect(stack.workflows.stops.map((s) => s.ref)).not.toContainEqual(pushing);
  });

  it('a run beating within the timeout survives a later sweep; silence after that fails it', async () => {
    const later = new Date(Date.now() + 300_000);
    expect(
      (await reconcileSilent(stack.deps, { heartbeatTimeoutSeconds: 600, now: later })).timedOut,
    ).toEqual([]);
    const muchLater = new Date(Date.now() + 700_000);
    const { timedOut } = await reconcileSilent(stack.deps, { heartbeatTimeoutSeconds: 600, now: muchLater });
    expect(timedOut).toEqual([`${ORG}/ImageBuild/beating`]);
    // "fresh" never beat since it entered Building (a job still queued, or an EKS pod whose logs reach no
    // subscription): the sweep leaves it to the build timeout.
    expect((await get('imagebuilds', 'fresh')).status.conditions[0].reason).toBe('Building');
    expect(stack.workflows.stops.map((s) => s.ref)).not.toContainEqual(fresh);
    // Once it beats, silence counts.
    await recordHeartbeats(stack.deps, delivery(logStreamName(fresh, 'x86_64'), ['[heartbeat] now']));
    const muchMuchLater = new Date(Date.now() + 700_000);
    const again = await reconcileSilent(stack.deps, { heartbeatTimeoutSeconds: 600, now: muchMuchLater });
    expect(again.timedOut).toEqual([`${ORG}/ImageBuild/fresh`]);
    expect(stack.workflows.stops.map((s) => s.ref)).toContainEqual(fresh);
  });

  it('does not fail a run whose heartbeat lands between the sweep’s list and its write', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('racing'));
    const racing = await setRun('ImageBuild', 'racing', 'Building', ago(1200), ago(900));
    const store = stack.deps.store;
    const list = store.listInReason.bind(store);
    store.listInReason = async (...args) => {
      const items = await list(...args);
      if (items.some((i) => i.name === 'racing')) await touch(stack.deps, racing); // the beat arrives now
      return items;
    };
    try {
      const { timedOut } = await reconcileSilent(stack.deps, { heartbeatTimeoutSeconds: 600 });
      expect(timedOut).not.toContain(`${ORG}/ImageBuild/racing`);
      expect((await get('imagebuilds', 'racing')).status.conditions[0].reason).toBe('Building');
    } finally {
      store.listInReason = list;
    }
  });

  it('takes the timeout from HEARTBEAT_TIMEOUT_SECONDS, never below 120 s, else 4 heartbeat periods', () => {
    const deps = { ...stack.deps, settings: { ...stack.deps.settings, heartbeatSeconds: 30 } };
    expect(heartbeatTimeoutSeconds(deps, { HEARTBEAT_TIMEOUT_SECONDS: '900' })).toBe(900);
    expect(heartbeatTimeoutSeconds(deps, { HEARTBEAT_TIMEOUT_SECONDS: '60' })).toBe(120);
    expect(heartbeatTimeoutSeconds(deps, {})).toBe(120);
    expect(
      heartbeatTimeoutSeconds({ ...deps, settings: { ...deps.settings, heartbeatSeconds: 60 } }, {}),
    ).toBe(240);
  });
});
