import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Client,
  call,
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
  await admin.req('POST', '/api/v1/imagebuilds', imageBuild('b'));
  await admin.req('POST', '/api/v1/imageexports', imageExport('e', 'b'));
});
afterAll(() => stack.close());

const READS = [
  '/api/v1/repositories',
  '/api/v1/repositories/src',
  '/api/v1/imagebuilds',
  '/api/v1/imagebuilds/b',
  '/api/v1/imageexports',
  '/api/v1/imageexports/e',
];

/** Writes that would succeed for an operator; each uses a fresh name so it can run for every role. */
const writes = (n: string): [string, string, unknown][] => [
  ['POST', '/api/v1/repositories', repository(`r-${n}`)],
  ['PUT', '/api/v1/repositories/src', repository('src', { accessMode: 'Read' })],
  ['POST', '/api/v1/imagebuilds', imageBuild(`b-${n}`)],
  ['POST', '/api/v1/imageexports', imageExport(`e-${n}`, 'b')],
  ['DELETE', `/api/v1/imageexports/e-${n}`, undefined],
  ['DELETE', `/api/v1/imagebuilds/b-${n}`, undefined],
  ['DELETE', `/api/v1/repositories/r-${n}`, undefined],
];

describe('authentication', () => {
  it('401 without a token, with a forged or expired one; /healthz needs none', async () => {
    expect((await call(stack.url, 'GET', '/api/v1/repositories', undefined)).status).toBe(401);
    const forged = await new SignJWT({ sub: 'x', org_id: 'org-a', roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode('not-the-secret-not-the-secret-123'));
    const forgedRes = await call(stack.url, 'GET', '/api/v1/repositories', forged);
    expect(forgedRes.status).toBe(401);
    expect(forgedRes.body).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
    const expired = await new SignJWT({ sub: 'x', org_id: 'org-a', roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(new TextEncoder().encode(stack.jwtSecret));
    expect((await call(stack.url, 'GET', '/api/v1/repositories', expired)).status).toBe(401);
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"x","org_id":"org-a","roles":["admin"]}').toString('base64url')}.`;
    expect((await call(stack.url, 'GET', '/api/v1/repositories', none)).status).toBe(401);
    expect((await call(stack.url, 'GET', '/healthz', undefined)).status).toBe(200);
  });

  it('a token without org_id is refused with 403', async () => {
    const token = await new SignJWT({ sub: 'x', roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(stack.jwtSecret));
    const res = await call(stack.url, 'GET', '/api/v1/repositories', token);
    expect(res.status).toBe(403);
    expect(res.body.message).toContain('org_id');
  });
});

describe('role matrix', () => {
  it.each(['viewer', 'installer'])(
    '%s reads everything and writes nothing (403, nothing written)',
    async (role) => {
      const c = await stack.as('org-a', [role]);
      for (const path of READS) expect([path, (await c.req('GET', path)).status]).toEqual([path, 200]);
      for (const [method, path, body] of writes(role)) {
        const res = await c.req(method, path, body);
        expect([method, path, res.status]).toEqual([method, path, 403]);
        expect(res.body).toMatchObject({ kind: 'Status', reason: 'Forbidden' });
      }
      expect((await admin.req('GET', `/api/v1/repositories/r-${role}`)).status).toBe(404);
      expect((await admin.req('GET', `/api/v1/imagebuilds/b-${role}`)).status).toBe(404);
      expect((await admin.req('GET', '/api/v1/repositories/src')).body.metadata.generation).toBe(1);
    },
  );

  it.each(['operator', 'admin'])('%s reads and writes', async (role) => {
    const c = await stack.as('org-a', [role]);
    for (const path of READS) expect((await c.req('GET', path)).status).toBe(200);
    const expected = [201, 200, 201, 201, 200, 200, 200];
    const got = [];
    for (const [method, path, body] of writes(role)) got.push((await c.req(method, path, body)).status);
    expect(got).toEqual(expected);
  });

  it('no role at all is 403 even for reads; roles combine', async () => {
    const nobody = await stack.as('org-a', []);
    expect((await nobody.req('GET', '/api/v1/repositories')).status).toBe(403);
    const both = await stack.as('org-a', ['viewer', 'operator']);
    expect((await both.req('POST', '/api/v1/repositories', repository('combined'))).status).toBe(201);
  });
});

describe('tenancy', () => {
  it('org B cannot see, list, delete or reference org A’s resources', async () => {
    const b = await stack.as('org-b');
    for (const path of READS.filter((p) => p.split('/').length > 4))
      expect((await b.req('GET', path)).status).toBe(404);
    for (const path of READS.filter((p) => p.split('/').length === 4))
      expect((await b.req('GET', path)).body.items).toEqual([]);
    for (const path of ['/api/v1/imageexports/e', '/api/v1/imagebuilds/b', '/api/v1/repositories/src']) {
      expect((await b.req('DELETE', path)).status).toBe(200);
      expect((await admin.req('GET', path)).status).toBe(200);
    }
    // A build in org B cannot use org A's repositories, an export cannot use org A's build.
    const build = await b.req('POST', '/api/v1/imagebuilds', imageBuild('b'));
    expect(build.status).toBe(400);
    expect(build.body.message).toMatch(/^spec\.source\.repository/);
    const exp = await b.req('POST', '/api/v1/imageexports', imageExport('e', 'b'));
    expect(exp.status).toBe(400);
    expect(exp.body.message).toMatch(/^spec\.source\.imageBuildRef/);
    expect((await b.req('GET', '/api/v1/imagebuilds/b?withExports=true')).status).toBe(404);
  });
});
