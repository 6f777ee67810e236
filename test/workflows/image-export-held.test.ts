// The export state machine run locally (same ASL, step handler and CodeBuild stand-in as in
// image-export.test.ts), with the test holding the moments it needs to observe: the referrer push
// (Publish, phase Pushing) blocks until released, and the hand-offs to the runner (start, stop) can be
// held, as a slow StopExecution or a late execution-ended event would in the cloud. Scenarios: happy path
// and waits-for-build (one event per transition), cancel while Pushing, deleting a build while its export
// converts or pushes (the DELETE waits for the cancellations), and the bound of that wait passing.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FileSecretStore } from '../../functions/commons/adapters/file-secrets.js';
import type { WorkflowRef, Workflows } from '../../functions/commons/ports.js';
import type { FileBuildLogs } from '../../functions/local/file-logs.js';
import { LocalStepFunctions } from '../../functions/local/local-workflows.js';
import type { ReferrerPusher } from '../../functions/workflows/image-export.js';
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

const ORG = 'org-held';

/** A gate a test opens; `entered` resolves when something waits at it. */
function gate() {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  const reached = new Promise<void>((r) => {
    entered = r;
  });
  return { open, opened, entered, reached };
}

/** The referrer push of the runner: answers a digest of what it was given, once its export's gate opens. */
class HeldPusher {
  /** Export uid → name, so a push (which sees only its plan) finds its gate. */
  readonly uids = new Map<string, string>();
  private readonly gates = new Map<string, ReturnType<typeof gate>>();
  /** Holds the push of the named export until `release(name)`. */
  hold(exportName: string) {
    const g = gate();
    this.gates.set(exportName, g);
    return g;
  }
  release(exportName: string) {
    this.gates.get(exportName)?.open();
  }
  push: ReferrerPusher = async ({ plan, sha256 }) => {
    for (const [uid, name] of this.uids) {
      const g = this.gates.get(name);
      if (g && plan.artifactKey.includes(`/${uid}-`)) {
        g.entered();
        await g.opened;
      }
    }
    return `sha256:${createHash('sha256').update(`referrer of ${sha256}`).digest('hex')}`;
  };
}

/**
 * The runner behind a door the test can hold: stops (StopExecution accepted, the execution's end not yet
 * reported) and starts (a hand-off still on its way) wait until released.
 */
class HeldWorkflows implements Workflows {
  holdStops = false;
  holdStarts = false;
  private held: (() => Promise<void>)[] = [];
  constructor(readonly runner: LocalStepFunctions) {}
  async start(ref: WorkflowRef) {
    if (this.holdStarts) this.held.push(() => this.runner.start(ref));
    else await this.runner.start(ref);
  }
  async stop(ref: WorkflowRef, reason: string) {
    if (this.holdStops) this.held.push(() => this.runner.stop(ref, reason));
    else await this.runner.stop(ref, reason);
  }
  async release() {
    this.holdStops = false;
    this.holdStarts = false;
    for (const call of this.held.splice(0)) await call();
  }
}

let stack: TestStack;
let admin: Client;
let pusher: HeldPusher;
let workflows: HeldWorkflows;

beforeAll(async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'ib-held-'));
  pusher = new HeldPusher();
  const runner = new LocalStepFunctions({
    deps: () => stack.deps,
    dataDir,
    logFile: (ref) => (stack.deps.logs as FileBuildLogs).pathOf(ref),
    readSecret: (ref) => (stack.deps.secrets as FileSecretStore).readSecret(ref),
    pushReferrer: pusher.push,
    objectStore: () => stack.objectStore,
    builderScript: join(__dirname, '../fixtures/fake-builder.sh'),
    exporterScript: join(__dirname, '../fixtures/fake-exporter.sh'),
  });
  workflows = new HeldWorkflows(runner);
  stack = await startTestStack({
    dataDir,
    workflows,
    settings: { buildTimeoutSeconds: 60, heartbeatSeconds: 1 },
  });
  admin = await stack.as(ORG);
  await admin.req('POST', '/api/v1/repositories', repository('src'));
  await admin.req('POST', '/api/v1/repositories', repository('dst', { accessMode: 'ReadWrite' }));
});
afterAll(async () => {
  await workflows?.release();
  await workflows?.runner.shutdown();
  await stack?.close();
});
afterEach(async () => {
  await workflows.release();
  delete stack.deps.settings.deleteWaitSeconds;
});

const waitFor = (kind: RunKind, name: string, reasons: string[], timeoutMs?: number) =>
  waitForReason(admin, kind, name, reasons, timeoutMs);

const eventsOf = (uid: string) => eventTypes(stack.dataDir, uid);

/** The runner's record of stop requests for one run. */
async function stopsOf(uid: string): Promise<{ reason: string }[]> {
  const text = await readFile(join(stack.dataDir, 'executions.jsonl'), 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.action === 'stop' && e.uid === uid);
}

/** Waits until the run's job is up (its log shows a heartbeat), so a stop has a process to kill. */
async function heartbeating(ref: WorkflowRef) {
  const deadline = Date.now() + 10_000;
  while (!(await stack.deps.logs.read(ref)).text.includes('[heartbeat]')) {
    if (Date.now() > deadline) throw new Error(`${ref.name} never started its job`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The runner forgets an execution just after recording its end (the end is what DELETE waits for). */
const runnerIdle = () => Promise.race([workflows.runner.idle(), new Promise((r) => setTimeout(r, 5000))]);

const artifactsOf = (uid: string) => stack.deps.objects.list(`artifacts/${ORG}/${uid}-1/`);

const build = (name: string, tag = 'v1') =>
  imageBuild(name, { destination: { repository: 'dst', imageName: 'edge/os', imageTag: tag } });

async function completedBuild(name: string) {
  await admin.req('POST', '/api/v1/imagebuilds', build(name));
  return waitFor('imagebuilds', name, ['Completed']);
}

/** Creates an export of `buildName` whose referrer push is held; resolves once it is Pushing. */
async function exportHeldInPushing(name: string, buildName: string) {
  const g = pusher.hold(name);
  const created = await admin.req('POST', '/api/v1/imageexports', imageExport(name, buildName));
  expect(created.status).toBe(201);
  pusher.uids.set(created.body.metadata.uid, name);
  await g.reached;
  const pushing = await waitFor('imageexports', name, ['Pushing']);
  return { uid: created.body.metadata.uid as string, pushing };
}

describe('image-export with held hand-offs, locally', () => {
  it('happy path, waiting for its build: Pending → Converting → Pushing → Completed, one Started and one Completed event, downloadable', async () => {
    workflows.holdStarts = true; // the build's hand-off is on its way: it stays Pending
    await admin.req('POST', '/api/v1/imagebuilds', build('h-build'));
    const created = await admin.req('POST', '/api/v1/imageexports', imageExport('h-qcow2', 'h-build'));
    expect(created.status).toBe(201);
    expect(created.body.status.conditions[0]).toMatchObject({
      reason: 'Pending',
      message: 'Waiting for ImageBuild "h-build" to complete (it is Pending)',
    });
    const uid = created.body.metadata.uid as string;
    await workflows.release();
    const done = await waitFor('imageexports', 'h-qcow2', ['Completed', 'Failed', 'Canceled']);
    expect(done.status.conditions[0]).toMatchObject({ reason: 'Completed', status: 'True' });
    const built = (await admin.req('GET', '/api/v1/imagebuilds/h-build')).body;
    expect(Date.parse(done.status.startTime)).toBeGreaterThanOrEqual(Date.parse(built.status.completionTime));
    // The exporter converts the build's image by digest.
    const disk = `disk image of quay.io/edge/os@${built.status.manifestDigest}\n`;
    const sha = createHash('sha256').update(disk).digest('hex');
    expect(done.status.artifact).toMatchObject({ sha256: sha, size: disk.length });
    expect(done.status.manifestDigest).toBe(
      `sha256:${createHash('sha256').update(`referrer of ${sha}`).digest('hex')}`,
    );
    const dl = await fetch(`${stack.url}/api/v1/imageexports/h-qcow2/download`, {
      headers: { authorization: `Bearer ${admin.token}` },
      redirect: 'manual',
    });
    expect(dl.status).toBe(307);
    const file = await fetch(dl.headers.get('location') as string);
    expect(file.status).toBe(200);
    expect(await file.text()).toBe(disk);
    expect(await eventsOf(uid)).toEqual(['ImageExport Started', 'ImageExport Completed']);
  });

  it('cancel while Pushing ends Canceled: one Canceled event, no artifact reported, the disk image deleted', async () => {
    await completedBuild('p-build');
    const { uid, pushing } = await exportHeldInPushing('p-push', 'p-build');
    expect(pushing.status.artifact).toBeUndefined();
    expect(await artifactsOf(uid)).toHaveLength(1); // the exporter uploaded it before Publish

    const res = await admin.req('POST', '/api/v1/imageexports/p-push/cancel');
    expect(res.status).toBe(200);
    expect(res.body.status.conditions[0].reason).toBe('Canceling');
    const canceled = await waitFor('imageexports', 'p-push', ['Canceled', 'Completed', 'Failed']);
    expect(canceled.status.conditions[0].reason).toBe('Canceled');
    expect(await stopsOf(uid)).toEqual([expect.objectContaining({ reason: 'canceled by user' })]);

    // The push finishing after the cancel does not bring the export back to Completed.
    pusher.release('p-push');
    await workflows.runner.idle();
    await new Promise((r) => setTimeout(r, 300));
    const after = (await admin.req('GET', '/api/v1/imageexports/p-push')).body;
    expect(after.status.conditions[0].reason).toBe('Canceled');
    expect(after.status.artifact).toBeUndefined();
    expect(after.status.manifestDigest).toBeUndefined();
    expect((await admin.req('GET', '/api/v1/imageexports/p-push/download')).status).toBe(400);
    expect(await artifactsOf(uid)).toEqual([]);
    expect(await eventsOf(uid)).toEqual(['ImageExport Started', 'ImageExport Canceled']);
    expect((await admin.req('POST', '/api/v1/imageexports/p-push/cancel')).status).toBe(409);
  });

  it('deleting a build while its export converts stops the export, waits for it to end, then deletes it, its disk image and the build', async () => {
    const b = await completedBuild('d-build');
    const created = await admin.req(
      'POST',
      '/api/v1/imageexports',
      imageExport('d-vmdk', 'd-build', { format: 'vmdk' }), // the fake exporter runs until killed
    );
    const uid = created.body.metadata.uid as string;
    await waitFor('imageexports', 'd-vmdk', ['Converting']);
    await heartbeating({ orgId: ORG, kind: 'ImageExport', name: 'd-vmdk', uid, generation: 1 });
    // What a conversion has written so far (the real exporter uploads multipart parts as it goes).
    await stack.deps.objects.put(`artifacts/${ORG}/${uid}-1/partial.vmdk`, 'part');

    const started = Date.now();
    const del = await admin.req('DELETE', '/api/v1/imagebuilds/d-build');
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({
      kind: 'Status',
      status: 'Success',
      message: 'ImageBuild "d-build" deleted',
    });
    expect(Date.now() - started).toBeLessThan(20_000);
    // By the time DELETE answered: the execution was stopped and ended, everything is gone.
    expect(await stopsOf(uid)).toEqual([
      expect.objectContaining({ reason: 'ImageBuild "d-build" deleted', running: true }),
    ]);
    await runnerIdle();
    expect(
      workflows.runner.isRunning({ orgId: ORG, kind: 'ImageExport', name: 'd-vmdk', uid, generation: 1 }),
    ).toBe(false);
    expect((await admin.req('GET', '/api/v1/imageexports/d-vmdk')).status).toBe(404);
    expect((await admin.req('GET', '/api/v1/imagebuilds/d-build')).status).toBe(404);
    expect(await artifactsOf(uid)).toEqual([]);
    expect(await eventsOf(uid)).toEqual(['ImageExport Started', 'ImageExport Canceled']);
    expect(await eventsOf(b.metadata.uid)).toEqual(['ImageBuild Started', 'ImageBuild Completed']);
    const log = (
      await stack.deps.logs.read({ orgId: ORG, kind: 'ImageExport', name: 'd-vmdk', uid, generation: 1 })
    ).text;
    expect(log).toContain('stopped: the run was canceled');
  });

  it('deleting a build while its export pushes: Canceled, its disk image and the build gone; a late push changes nothing', async () => {
    await completedBuild('dp-build');
    const { uid } = await exportHeldInPushing('dp-push', 'dp-build');
    expect(await artifactsOf(uid)).toHaveLength(1);
    const del = await admin.req('DELETE', '/api/v1/imagebuilds/dp-build');
    expect(del.body.message).toBe('ImageBuild "dp-build" deleted');
    expect((await admin.req('GET', '/api/v1/imageexports/dp-push')).status).toBe(404);
    expect((await admin.req('GET', '/api/v1/imagebuilds/dp-build')).status).toBe(404);
    expect(await artifactsOf(uid)).toEqual([]);
    pusher.release('dp-push');
    await new Promise((r) => setTimeout(r, 300));
    expect((await admin.req('GET', '/api/v1/imageexports/dp-push')).status).toBe(404);
    expect(await eventsOf(uid)).toEqual(['ImageExport Started', 'ImageExport Canceled']);
  });

  it('deleting a build while it builds, with an export waiting for it: the builder is stopped, the export ends Canceled at once, both are gone', async () => {
    const b = await admin.req('POST', '/api/v1/imagebuilds', build('db-build', 'sleep')); // builds until killed
    const e = await admin.req('POST', '/api/v1/imageexports', imageExport('db-wait', 'db-build'));
    await waitFor('imagebuilds', 'db-build', ['Building']);
    const buildRef = {
      orgId: ORG,
      kind: 'ImageBuild' as const,
      name: 'db-build',
      uid: b.body.metadata.uid,
      generation: 1,
    };
    await heartbeating(buildRef);
    const del = await admin.req('DELETE', '/api/v1/imagebuilds/db-build');
    expect(del.body.message).toBe('ImageBuild "db-build" deleted');
    expect((await admin.req('GET', '/api/v1/imagebuilds/db-build')).status).toBe(404);
    expect((await admin.req('GET', '/api/v1/imageexports/db-wait')).status).toBe(404);
    expect(await stopsOf(b.body.metadata.uid)).toEqual([
      expect.objectContaining({ reason: 'ImageBuild "db-build" deleted', running: true }),
    ]);
    await runnerIdle();
    expect((await stack.deps.logs.read(buildRef)).text).toContain('stopped: the run was canceled');
    // The build waited for went Canceling → Canceled; the export never started.
    expect(await eventsOf(b.body.metadata.uid)).toEqual(['ImageBuild Started', 'ImageBuild Canceled']);
    expect(await eventsOf(e.body.metadata.uid)).toEqual(['ImageExport Canceled']);
    expect((await admin.req('GET', '/api/v1/quota')).body.usage.activeBuilds).toBe(0);
  });

  it('deleting a Completed export removes it and its disk image; its build stays', async () => {
    await completedBuild('x-build');
    const created = await admin.req('POST', '/api/v1/imageexports', imageExport('x-qcow2', 'x-build'));
    const uid = created.body.metadata.uid as string;
    await waitFor('imageexports', 'x-qcow2', ['Completed']);
    expect(await artifactsOf(uid)).toHaveLength(1);
    const del = await admin.req('DELETE', '/api/v1/imageexports/x-qcow2');
    expect(del.body).toMatchObject({ status: 'Success', message: 'ImageExport "x-qcow2" deleted' });
    expect((await admin.req('GET', '/api/v1/imageexports/x-qcow2')).status).toBe(404);
    expect(await artifactsOf(uid)).toEqual([]);
    expect((await admin.req('GET', '/api/v1/imagebuilds/x-build')).status).toBe(200);
  });

  it('when the runs do not stop within the bound: 200 saying deletion continues, no new export accepted, the rest deleted when the export ends', async () => {
    stack.deps.settings.deleteWaitSeconds = 1;
    const b = await completedBuild('t-build');
    const finished = await admin.req('POST', '/api/v1/imageexports', imageExport('t-qcow2', 't-build'));
    const finishedUid = finished.body.metadata.uid as string;
    await waitFor('imageexports', 't-qcow2', ['Completed']);
    const running = await admin.req(
      'POST',
      '/api/v1/imageexports',
      imageExport('t-vmdk', 't-build', { format: 'vmdk' }),
    );
    const uid = running.body.metadata.uid as string;
    await waitFor('imageexports', 't-vmdk', ['Converting']);
    const quotaBefore = (await admin.req('GET', '/api/v1/quota')).body.usage;

    workflows.holdStops = true; // StopExecution accepted, the execution's end not reported yet
    const started = Date.now();
    const del = await admin.req('DELETE', '/api/v1/imagebuilds/t-build');
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(1000); // it waited for the bound…
    expect(took).toBeLessThan(10_000); // …not the default 20 s
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ kind: 'Status', status: 'Success' });
    expect(del.body.message).toBe(
      'ImageBuild "t-build" is being deleted: ImageExport/t-vmdk still stopping; they and the build are deleted when their runs end',
    );
    // The export that had ended is gone with its disk image; the one stopping and the build remain,
    // marked, so nothing names a deleted build.
    expect((await admin.req('GET', '/api/v1/imageexports/t-qcow2')).status).toBe(404);
    expect(await artifactsOf(finishedUid)).toEqual([]);
    const stopping = (await admin.req('GET', '/api/v1/imageexports/t-vmdk')).body;
    expect(stopping.status.conditions[0]).toMatchObject({
      reason: 'Canceling',
      message: 'Canceling: ImageBuild "t-build" deleted',
    });
    expect(stopping.metadata.deletionTimestamp).toBeTruthy();
    const marked = await admin.req('GET', '/api/v1/imagebuilds/t-build');
    expect(marked.status).toBe(200);
    expect(marked.body.metadata.deletionTimestamp).toBeTruthy();
    const late = await admin.req('POST', '/api/v1/imageexports', imageExport('t-late', 't-build'));
    expect(late.status).toBe(409);
    expect(late.body.message).toBe('spec.source.imageBuildRef: ImageBuild "t-build" is being deleted');
    expect((await admin.req('GET', '/api/v1/imageexports/t-late')).status).toBe(404);
    const retry = await admin.req(
      'PATCH',
      '/api/v1/imagebuilds/t-build',
      { metadata: { annotations: { 'imagebuilder.flightctl.io/retry': 'true' } } },
      { 'content-type': 'application/merge-patch+json' },
    );
    expect(retry.status).toBe(409);

    // The execution's end arrives: the export, then the build, are deleted.
    await workflows.release();
    const deadline = Date.now() + 10_000;
    while ((await admin.req('GET', '/api/v1/imagebuilds/t-build')).status !== 404) {
      if (Date.now() > deadline) throw new Error('the build was not deleted after its export ended');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await admin.req('GET', '/api/v1/imageexports/t-vmdk')).status).toBe(404);
    expect(await artifactsOf(uid)).toEqual([]);
    expect(await eventsOf(uid)).toEqual(['ImageExport Started', 'ImageExport Canceled']);
    expect(await eventsOf(b.metadata.uid)).toEqual(['ImageBuild Started', 'ImageBuild Completed']);
    expect((await admin.req('GET', '/api/v1/quota')).body.usage.activeBuilds).toBe(quotaBefore.activeBuilds);
    // A repeat DELETE of what is gone is 200, as always.
    expect((await admin.req('DELETE', '/api/v1/imagebuilds/t-build')).body.message).toBe(
      'ImageBuild "t-build" deleted',
    );
  });
});
