// Every `Status` the API answers — errors of each kind and the DELETE answers — validated against the
// `Status` schema of Flight Control's own specs (test/fixtures: core v1beta1 for repositories,
// imagebuilder v1alpha1 for builds and exports), which require all six fields and fix the apiVersion.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectFlightctl } from '../fixtures/flightctl-specs.js';
import {
  type Client,
  call,
  imageBuild,
  imageExport,
  repository,
  startTestStack,
  type TestStack,
} from '../fixtures/local-stack.js';

const expectStatus = (api: 'core' | 'imagebuilder', body: unknown) => expectFlightctl(api, 'Status', body);

let stack: TestStack;
let admin: Client;
let viewer: Client;

beforeAll(async () => {
  stack = await startTestStack();
  admin = await stack.as('org-wire');
  viewer = await stack.as('org-wire', ['viewer']);
  for (const name of ['src', 'dst']) {
    await admin.req('POST', '/api/v1/repositories', repository(name, { accessMode: 'ReadWrite' }));
  }
});
afterAll(() => stack.close());

describe('Status bodies read by Flight Control’s generated clients', () => {
  it('core (repositories): 400, 401, 403, 404, 409 and the DELETE answer', async () => {
    const answers = [
      await admin.req('POST', '/api/v1/repositories', { ...repository('bad'), spec: { type: 'oci' } }),
      await call(stack.url, 'GET', '/api/v1/repositories', undefined),
      await viewer.req('POST', '/api/v1/repositories', repository('nope')),
      await admin.req('GET', '/api/v1/repositories/missing'),
      await admin.req('POST', '/api/v1/repositories', repository('src')),
      await admin.req('DELETE', '/api/v1/repositories/dst'),
    ];
    expect(answers.map((a) => a.status)).toEqual([400, 401, 403, 404, 409, 200]);
    for (const a of answers) expectStatus('core', a.body);
    expect(answers.at(-1)?.body).toMatchObject({ status: 'Success', code: 200 });
  });

  it('imagebuilder (builds, exports): 400, 401, 404, 405 and the DELETE answers', async () => {
    await admin.req('POST', '/api/v1/repositories', repository('dst', { accessMode: 'ReadWrite' }));
    const built = await admin.req('POST', '/api/v1/imagebuilds', imageBuild('wire'));
    expect(built.status, built.text).toBe(201);
    const exported = await admin.req('POST', '/api/v1/imageexports', imageExport('wire-x', 'wire'));
    expect(exported.status, exported.text).toBe(201);
    const answers = [
      await admin.req('POST', '/api/v1/imagebuilds', { ...imageBuild('bad'), spec: {} }),
      await call(stack.url, 'GET', '/api/v1/imagebuilds', undefined),
      await admin.req('GET', '/api/v1/imageexports/missing'),
      await admin.req('PUT', '/api/v1/imagebuilds/wire/log', {}),
      await admin.req('DELETE', '/api/v1/imageexports/wire-x'),
      await admin.req('DELETE', '/api/v1/imagebuilds/wire'),
    ];
    expect(answers.map((a) => a.status)).toEqual([400, 401, 404, 405, 200, 200]);
    for (const a of answers) expectStatus('imagebuilder', a.body);
  });
});
