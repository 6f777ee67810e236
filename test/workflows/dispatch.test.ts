// Dispatch must lose nothing: a crash between the table write and the execution start (injected here as
// a failing start), or a local stack that stops mid-build, is repaired by the reconciler and by the
// restart recovery — against the real state machine file, the local runner and the fake builder.
import { copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkflowRef } from '../../functions/commons/ports.js';
import { reconcilePending } from '../../functions/workflows/reconciler.js';
import {
  type Client,
  imageBuild,
  repository,
  startTestStack,
  type TestStack,
  waitForReason,
} from '../fixtures/local-stack.js';

// A copy of the fake builder under a name of this file's own, so process checks see only its runs.
const FAKE_BUILDER = join(tmpdir(), `fake-builder-dispatch-${process.pid}.sh`);
copyFileSync(join(__dirname, '../fixtures/fake-builder.sh'), FAKE_BUILDER);
const options = {
  workflows: undefined,
  builderScript: FAKE_BUILDER,
  exporterScript: join(__dirname, '../fixtures/fake-exporter.sh'),
  settings: { buildTimeoutSeconds: 60, heartbeatSeconds: 1 },
};
let stack: TestStack;
let admin: Client;

beforeAll(async () => {
  stack = await startTestStack(options);
  admin = await stack.as('org-d');
  await admin.req('POST', '/api/v1/repositories', repository('src'));
  await admin.req('POST', '/api/v1/repositories', repository('dst', { accessMode: 'ReadWrite' }));
});
afterAll(() => stack.close());

const waitFor = (c: Client, name: string, reasons: string[], timeoutMs?: number) =>
  waitForReason(c, 'imagebuilds', name, reasons, timeoutMs);

const build = (name: string, tag: string) =>
  imageBuild(name, { destination: { repository: 'dst', imageName: 'edge/os', imageTag: tag } });

describe('dispatch', () => {
  it('a start lost after the table write is recovered by the reconciler, exactly once', async () => {
    const workflows = stack.deps.workflows;
    const realStart = workflows.start.bind(workflows);
    const starts: WorkflowRef[] = [];
    let crash = true;
    workflows.start = async (ref) => {
      if (crash) {
        crash = false;
        throw new Error('injected: process died before StartExecution');
      }
      starts.push(ref);
      return realStart(ref);
    };
    try {
      const created = await admin.req('POST', '/api/v1/imagebuilds', build('lost', 'v1'));
      expect(created.status).toBe(201);
      await new Promise((r) => setTimeout(r, 500));
      expect((await admin.req('GET', '/api/v1/imagebuilds/lost')).body.status.conditions[0].reason).toBe(
        'Pending',
      );

      // Within the grace period nothing is touched; after it, the sweep starts the run. Two sweeps at
      // once still make one execution (its name is the run's uid and generation).
      expect((await reconcilePending(stack.deps, { graceSeconds: 3600 })).started).toEqual([]);
      const sweeps = await Promise.all([
        reconcilePending(stack.deps, { graceSeconds: 0 }),
        reconcilePending(stack.deps, { graceSeconds: 0 }),
      ]);
      expect(sweeps.flatMap((s) => s.started)).toContain('org-d/ImageBuild/lost');
      const done = await waitFor(admin, 'lost', ['Completed', 'Failed']);
      expect(done.status.conditions[0].reason).toBe('Completed');
      const runs = new Set(starts.map((s) => `${s.uid}-${s.generation}`));
      expect(runs.size).toBe(1);
      const log = (await admin.req('GET', '/api/v1/imagebuilds/lost/log')).text;
      expect(log.match(/\[fake-builder\] pushed/g)).toHaveLength(1);
    } finally {
      workflows.start = realStart;
    }
  });

  it('an export whose hand-off was lost is started by the reconciler once its build is Completed, not before', async () => {
    const workflows = stack.deps.workflows;
    const realStart = workflows.start.bind(workflows);
    workflows.start = async (ref) => {
      if (ref.kind === 'ImageExport') throw new Error('injected: process died before StartExecution');
      return realStart(ref);
    };
    try {
      await admin.req('POST', '/api/v1/imagebuilds', build('for-export', 'v2'));
      await admin.req('POST', '/api/v1/imagebuilds', build('still-running', 'sleep'));
      await waitFor(admin, 'for-export', ['Completed']);
      await waitFor(admin, 'still-running', ['Building']);
      await admin.req('POST', '/api/v1/imageexports', {
        apiVersion: 'flightctl.io/v1alpha1',
        kind: 'ImageExport',
        metadata: { name: 'lost-export' },
        spec: { source: { type: 'imageBuild', imageBuildRef: 'for-export' }, format: 'qcow2' },
      });
      await admin.req('POST', '/api/v1/imageexports', {
        apiVersion: 'flightctl.io/v1alpha1',
        kind: 'ImageExport',
        metadata: { name: 'waiting-export' },
        spec: { source: { type: 'imageBuild', imageBuildRef: 'still-running' }, format: 'qcow2' },
      });
    } finally {
      workflows.start = realStart;
    }
    expect(
      (await admin.req('GET', '/api/v1/imageexports/lost-export')).body.status.conditions[0].reason,
    ).toBe('Pending');
    const sweep = await reconcilePending(stack.deps, { graceSeconds: 0 });
    expect(sweep.started).toContain('org-d/ImageExport/lost-export');
    expect(sweep.started).not.toContain('org-d/ImageExport/waiting-export');
    // The run really started: its exporter ran (the referrer push then needs a registry, absent here).
    const deadline = Date.now() + 20_000;
    let log = '';
    while (Date.now() < deadline && !log.includes('[fake-exporter] qcow2')) {
      log = (await admin.req('GET', '/api/v1/imageexports/lost-export/log')).text;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(log).toContain('[fake-exporter] qcow2');
    expect(
      (await admin.req('GET', '/api/v1/imageexports/lost-export')).body.status.conditions[0].reason,
    ).not.toBe('Pending');
    expect(
      (await admin.req('GET', '/api/v1/imageexports/waiting-export')).body.status.conditions[0].reason,
    ).toBe('Pending');
    await admin.req('POST', '/api/v1/imagebuilds/still-running/cancel');
    await waitFor(admin, 'still-running', ['Canceled']);
  });

  it('a stack stopped mid-build kills its builder; on restart the build ends Failed saying so', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', build('interrupted', 'sleep'));
    await waitFor(admin, 'interrupted', ['Building']);
    await stack.stop(); // kills the builder's process group, records nothing
    const { execFileSync } = await import('node:child_process');
    const alive = () => {
      try {
        return execFileSync('pgrep', ['-f', `${FAKE_BUILDER}`])
          .toString()
          .trim();
      } catch {
        return '';
      }
    };
    for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive()).toBe('');
    stack = {
      ...stack,
      ...(await startTestStack({ ...options, dataDir: stack.dataDir, tableName: stack.tableName })),
    };
    admin = await stack.as('org-d');
    const after = await waitFor(admin, 'interrupted', ['Failed', 'Canceled', 'Completed']);
    expect(after.status.conditions[0]).toMatchObject({
      reason: 'Failed',
      message: 'the local stack stopped while this build ran; retry it',
    });
  });
});
