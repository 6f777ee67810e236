import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Client,
  imageBuild,
  imageExport,
  repository,
  seedRepositories,
  startTestStack,
  type TestStack,
} from '../fixtures/local-stack.js';

let stack: TestStack;
let admin: Client;

beforeAll(async () => {
  stack = await startTestStack();
  admin = await stack.as('org-a');
  await seedRepositories(admin);
});
afterAll(() => stack.close());

describe('ImageBuild', () => {
  it('creates Pending and hands the build to the workflows port exactly once', async () => {
    const before = stack.workflows.starts.length;
    const res = await admin.req('POST', '/api/v1/imagebuilds', imageBuild('b1'));
    expect(res.status).toBe(201);
    expect(res.body.apiVersion).toBe('flightctl.io/v1alpha1');
    expect(res.body.status.conditions).toEqual([
      expect.objectContaining({ type: 'Ready', status: 'False', reason: 'Pending' }),
    ]);
    const starts = stack.workflows.starts.slice(before);
    expect(starts).toEqual([
      { orgId: 'org-a', kind: 'ImageBuild', name: 'b1', uid: res.body.metadata.uid, generation: 1 },
    ]);
  });

  it('accepts the short apiVersion "v1alpha1" and every extension field', async () => {
    const res = await admin.req('POST', '/api/v1/imagebuilds', {
      ...imageBuild('b-ext', {
        binding: { type: 'early' },
        onboarding: true,
        architectures: ['x86_64', 'aarch64'],
        userConfiguration: {
          username: 'edge',
          publickey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB edge@host',
        },
        customizations: {
          packages: ['vim-enhanced'],
          files: [{ path: '/etc/motd', content: 'hello', mode: '0644' }],
          systemdUnits: [{ name: 'hello.service', content: '[Unit]\n', enabled: true }],
          agentConfig: { logLevel: 'debug', specFetchInterval: '30s' },
        },
      }),
      apiVersion: 'v1alpha1',
    });
    expect(res.status).toBe(201);
    expect(res.body.apiVersion).toBe('flightctl.io/v1alpha1');
  });

  it('a failed hand-off still stores the build Pending (the reconciler starts it) and returns 201', async () => {
    stack.workflows.failNextStart = true;
    const res = await admin.req('POST', '/api/v1/imagebuilds', imageBuild('b-fail-start'));
    expect(res.status).toBe(201);
    expect(
      (await admin.req('GET', '/api/v1/imagebuilds/b-fail-start')).body.status.conditions[0].reason,
    ).toBe('Pending');
  });

  it('rejects repositories that are missing, read-only as destination, with 400 naming the field', async () => {
    const missing = await admin.req(
      'POST',
      '/api/v1/imagebuilds',
      imageBuild('b2', { source: { repository: 'nope', imageName: 'a', imageTag: 't' } }),
    );
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/^spec\.source\.repository: /);
    const readOnly = await admin.req(
      'POST',
      '/api/v1/imagebuilds',
      imageBuild('b3', { destination: { repository: 'src', imageName: 'a', imageTag: 't' } }),
    );
    expect(readOnly.status).toBe(400);
    expect(readOnly.body.message).toMatch(/^spec\.destination\.repository: .*ReadWrite/);
    expect((await admin.req('GET', '/api/v1/imagebuilds/b3')).status).toBe(404);
  });

  it('100 concurrent creates of one name: exactly one 201, the rest 409, one hand-off', async () => {
    const before = stack.workflows.starts.length;
    const results = await Promise.all(
      Array.from({ length: 100 }, () => admin.req('POST', '/api/v1/imagebuilds', imageBuild('contended'))),
    );
    const codes = results.map((r) => r.status);
    expect(codes.filter((c) => c === 201)).toHaveLength(1);
    expect(codes.filter((c) => c === 409)).toHaveLength(99);
    expect(stack.workflows.starts.slice(before).filter((s) => s.name === 'contended')).toHaveLength(1);
  });

  it('withExports lists the build’s exports; delete cascades to them and stops active runs', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('parent'));
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('other'));
    for (const n of ['e1', 'e2']) await admin.req('POST', '/api/v1/imageexports', imageExport(n, 'parent'));
    await admin.req('POST', '/api/v1/imageexports', imageExport('e3', 'other'));
    const got = await admin.req('GET', '/api/v1/imagebuilds/parent?withExports=true');
    expect(got.body.imageexports.map((e: { metadata: { name: string } }) => e.metadata.name)).toEqual([
      'e1',
      'e2',
    ]);
    expect((await admin.req('GET', '/api/v1/imagebuilds/parent')).body.imageexports).toBeUndefined();
    const listed = await admin.req(
      'GET',
      '/api/v1/imagebuilds?withExports=true&fieldSelector=metadata.name=parent',
    );
    expect(listed.body.items[0].imageexports).toHaveLength(2);

    const del = await admin.req('DELETE', '/api/v1/imagebuilds/parent');
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ kind: 'Status', status: 'Success' });
    expect((await admin.req('GET', '/api/v1/imageexports/e1')).status).toBe(404);
    expect((await admin.req('GET', '/api/v1/imageexports/e2')).status).toBe(404);
    expect((await admin.req('GET', '/api/v1/imageexports/e3')).status).toBe(200);
    const stopped = stack.workflows.stops.map((s) => `${s.ref.kind}/${s.ref.name}`);
    expect(stopped).toEqual(
      expect.arrayContaining(['ImageExport/e1', 'ImageExport/e2', 'ImageBuild/parent']),
    );
    expect((await admin.req('DELETE', '/api/v1/imagebuilds/parent')).status).toBe(200);
  });
});

describe('ImageExport', () => {
  it('requires an existing build (400 naming spec.source.imageBuildRef) and one of its architectures', async () => {
    const missing = await admin.req('POST', '/api/v1/imageexports', imageExport('x1', 'ghost'));
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/^spec\.source\.imageBuildRef: /);
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('arm-only', { architectures: ['aarch64'] }));
    const arch = await admin.req(
      'POST',
      '/api/v1/imageexports',
      imageExport('x2', 'arm-only', { architecture: 'x86_64' }),
    );
    expect(arch.status).toBe(400);
    expect(arch.body.message).toMatch(/^spec\.architecture: /);
  });

  it('creates Pending with owner, waits for its build (no hand-off yet), 409 on repeat', async () => {
    await admin.req('POST', '/api/v1/imagebuilds', imageBuild('src-build'));
    const before = stack.workflows.starts.length;
    const res = await admin.req(
      'POST',
      '/api/v1/imageexports',
      imageExport('disk', 'src-build', { format: 'vmdk' }),
    );
    expect(res.status).toBe(201);
    expect(res.body.metadata.owner).toBe('ImageBuild/src-build');
    expect(res.body.status.conditions[0]).toMatchObject({ reason: 'Pending', status: 'False' });
    expect(res.body.status.conditions[0].message).toContain('src-build');
    // The build is still Pending: the export's workflow starts when the build completes.
    expect(stack.workflows.starts.slice(before)).toEqual([]);
    expect((await admin.req('POST', '/api/v1/imageexports', imageExport('disk', 'src-build'))).status).toBe(
      409,
    );
    const list = await admin.req('GET', '/api/v1/imageexports?fieldSelector=spec.format=vmdk');
    expect(list.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(['disk']);
    expect((await admin.req('DELETE', '/api/v1/imageexports/disk')).status).toBe(200);
    expect((await admin.req('GET', '/api/v1/imageexports/disk')).status).toBe(404);
  });

  it('an export of a Completed build hands off at once; of a Failed build it ends Failed saying why', async () => {
    const { transition } = await import('../../functions/commons/domain/transitions.js');
    const { workflowRef } = await import('../../functions/commons/domain/image-builds.js');
    for (const [name, reason] of [
      ['done-build', 'Completed'],
      ['failed-build', 'Failed'],
    ] as const) {
      await admin.req('POST', '/api/v1/imagebuilds', imageBuild(name));
      const item = await stack.deps.store.get('org-a', 'ImageBuild', name);
      await transition(stack.deps, workflowRef(item!), { reason, message: reason });
    }
    const before = stack.workflows.starts.length;
    const ok = await admin.req('POST', '/api/v1/imageexports', imageExport('from-done', 'done-build'));
    expect(stack.workflows.starts.slice(before)).toEqual([
      expect.objectContaining({ kind: 'ImageExport', name: 'from-done', uid: ok.body.metadata.uid }),
    ]);
    const failed = await admin.req(
      'POST',
      '/api/v1/imageexports',
      imageExport('from-failed', 'failed-build'),
    );
    expect(failed.status).toBe(201);
    expect(failed.body.status.conditions[0]).toMatchObject({
      reason: 'Failed',
      message: 'ImageBuild "failed-build" failed; there is no image to export',
    });
    const dl = await admin.req('GET', '/api/v1/imageexports/from-failed/download');
    expect(dl.status).toBe(400);
    expect(dl.body.message).toMatch(/only a Completed export can be downloaded/);
    expect((await admin.req('GET', '/api/v1/imageexports/nope/download')).status).toBe(404);
    const viewer = await stack.as('org-a', ['viewer']);
    expect((await viewer.req('GET', '/api/v1/imageexports/from-failed/download')).status).toBe(403);
  });

  it('deleting a repository does not touch builds that name it', async () => {
    await admin.req('POST', '/api/v1/repositories', repository('tmp-repo'));
    expect((await admin.req('DELETE', '/api/v1/repositories/tmp-repo')).status).toBe(200);
    expect((await admin.req('GET', '/api/v1/imagebuilds/src-build')).status).toBe(200);
  });
});

describe('Containerfile preview (POST /containerfile)', () => {
  it('answers the Containerfile as text/plain and stores nothing', async () => {
    const res = await admin.req('POST', '/api/v1/containerfile', imageBuild('preview-only'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(res.text).toMatch(/^FROM quay\.io\/centos-bootc\/centos-bootc:stream9$/m);
    expect((await admin.req('GET', '/api/v1/imagebuilds/preview-only')).status).toBe(404);
  });

  it('validates like create: schema, repositories and the rules beyond the schema, naming the field', async () => {
    const dupFiles = imageBuild('dup', {
      customizations: {
        files: [
          { path: '/etc/a', content: 'x' },
          { path: '/etc/a', content: 'y' },
        ],
      },
    });
    for (const path of ['/api/v1/containerfile', '/api/v1/imagebuilds']) {
      const dup = await admin.req('POST', path, dupFiles);
      expect([path, dup.status]).toEqual([path, 400]);
      expect(dup.body.message).toMatch(/^spec\.customizations\.files\[1\]\.path: duplicate/);
      const badB64 = await admin.req(
        'POST',
        path,
        imageBuild('b64', {
          customizations: { files: [{ path: '/etc/b', content: '%%%', encoding: 'base64' }] },
        }),
      );
      expect(badB64.status).toBe(400);
      expect(badB64.body.message).toMatch(/^spec\.customizations\.files\[0\]\.content/);
      const noRepo = await admin.req(
        'POST',
        path,
        imageBuild('x', { source: { repository: 'gone', imageName: 'a', imageTag: 't' } }),
      );
      expect(noRepo.body.message).toMatch(/^spec\.source\.repository/);
    }
    expect((await admin.req('GET', '/api/v1/imagebuilds/dup')).status).toBe(404);
  });
});
