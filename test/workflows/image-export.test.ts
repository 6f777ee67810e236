import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

let stack: TestStack;
let admin: Client;

beforeAll(async () => {
  stack = await startTestStack({
    workflows: undefined,
    builderScript: join(__dirname, '../fixtures/fake-builder.sh'),
    exporterScript: join(__dirname, '../fixtures/fake-exporter.sh'),
    settings: { buildTimeoutSeconds: 60, heartbeatSeconds: 1 },
  });
  admin = await stack.as('org-e');
  await admin.req('POST', '/api/v1/repositories', repository('src'));
  await admin.req('POST', '/api/v1/repositories', repository('dst', { accessMode: 'ReadWrite' }));
});
afterAll(() => stack.close());

const waitFor = (kind: RunKind, name: string, reasons: string[], timeoutMs?: number) =>
  waitForReason(admin, kind, name, reasons, timeoutMs);

const eventsOf = (uid: string) => eventTypes(stack.dataDir, uid);

const build = (name: string, tag: string) =>
  imageBuild(name, { destination: { repository: 'dst', imageName: 'edge/os', imageTag: tag } });

describe('image-export state machine, locally', () => {
  it('a converter failure ends Failed with the exporter’s message', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', build('b1', 'v1'));
    await waitFor('imagebuilds', 'b1', ['Completed']);
    const x = await admin.req('POST', '/api/v1/imageexports', imageExport('x-vhd', 'b1', { format: 'vhd' }));
    const done = await waitFor('imageexports', 'x-vhd', ['Failed', 'Completed']);
    expect(done.status.conditions[0]).toMatchObject({
      reason: 'Failed',
      message: 'conversion failed: qemu-img exited with code 1',
    });
    expect(await eventsOf(x.body.metadata.uid)).toEqual(['ImageExport Started', 'ImageExport Failed']);
  });

  it('cancel while Converting kills the exporter and ends Canceled', async () => {
    const x = await admin.req(
      'POST',
      '/api/v1/imageexports',
      imageExport('x-long', 'b1', { format: 'vmdk' }),
    );
    await waitFor('imageexports', 'x-long', ['Converting']);
    await new Promise((r) => setTimeout(r, 500));
    const res = await admin.req('POST', '/api/v1/imageexports/x-long/cancel');
    expect(res.body.status.conditions[0].reason).toBe('Canceling');
    const done = await waitFor('imageexports', 'x-long', ['Canceled', 'Failed', 'Completed']);
    expect(done.status.conditions[0].reason).toBe('Canceled');
    await stack.runner?.idle();
    const log = (await admin.req('GET', '/api/v1/imageexports/x-long/log')).text;
    expect(log).toContain('stopped: the run was canceled');
    expect(await eventsOf(x.body.metadata.uid)).toEqual(['ImageExport Started', 'ImageExport Canceled']);
  });

  it('an export waiting for its build ends Canceled when the build is canceled, and Failed when it fails', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', build('b2', 'sleep'));
    const w1 = await admin.req('POST', '/api/v1/imageexports', imageExport('x-wait', 'b2'));
    await waitFor('imagebuilds', 'b2', ['Building']);
    await admin.req('POST', '/api/v1/imagebuilds/b2/cancel');
    const canceled = await waitFor('imageexports', 'x-wait', ['Canceled', 'Failed', 'Completed']);
    expect(canceled.status.conditions[0]).toMatchObject({
      reason: 'Canceled',
      message: 'ImageBuild "b2" was canceled; there is no image to export',
    });

    await admin.req('POST', '/api/v1/imagebuilds', build('b3', 'fail'));
    const w2 = await admin.req('POST', '/api/v1/imageexports', imageExport('x-wait2', 'b3'));
    const failed = await waitFor('imageexports', 'x-wait2', ['Canceled', 'Failed', 'Completed']);
    expect(failed.status.conditions[0]).toMatchObject({
      reason: 'Failed',
      message: 'ImageBuild "b3" failed; there is no image to export',
    });
    // Neither started: the end is their only event.
    expect(await eventsOf(w1.body.metadata.uid)).toEqual(['ImageExport Canceled']);
    expect(await eventsOf(w2.body.metadata.uid)).toEqual(['ImageExport Failed']);
  });

  it('cancel while Pending (waiting for its build) ends Canceled at once; its build ending later leaves it so', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', build('b4', 'sleep'));
    const x = await admin.req('POST', '/api/v1/imageexports', imageExport('x-pending', 'b4'));
    const res = await admin.req('POST', '/api/v1/imageexports/x-pending/cancel');
    expect(res.body.status.conditions[0].reason).toBe('Canceled');
    await waitFor('imagebuilds', 'b4', ['Building']);
    await admin.req('POST', '/api/v1/imagebuilds/b4/cancel');
    await waitFor('imagebuilds', 'b4', ['Canceled']);
    const after = await waitFor('imageexports', 'x-pending', ['Canceled']);
    expect(after.status.conditions[0].message).toBe('Canceled before it started');
    expect(await eventsOf(x.body.metadata.uid)).toEqual(['ImageExport Canceled']);
  });
});
