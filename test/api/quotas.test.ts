// Quotas (CONTRACT §3) enforced race-free, and the discoverability endpoints.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbQuotaLedger } from '../../functions/commons/adapters/dynamodb-store.js';
import { workflowRef } from '../../functions/commons/domain/image-builds.js';
import { acquireBuildSlot, releaseBuildSlot } from '../../functions/commons/domain/quotas.js';
import { transition } from '../../functions/commons/domain/transitions.js';
import {
  type Client,
  call,
  imageBuild,
  seedRepositories,
  startTestStack,
  type TestStack,
} from '../fixtures/local-stack.js';

let stack: TestStack;
let admin: Client;

beforeAll(async () => {
  stack = await startTestStack({
    settings: {
      quota: { activeBuilds: 10, buildsPerWindow: 15, windowSeconds: 14 * 86400 },
      quotaOverrides: { 'org-big': { activeBuilds: 50 } },
    },
  });
  admin = await stack.as('org-q');
  await seedRepositories(admin);
});
afterAll(() => stack.close());

describe('quotas', () => {
  it('50 concurrent creates under an active quota of 10: exactly 10 accepted, the rest 429 with Retry-After', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => admin.req('POST', '/api/v1/imagebuilds', imageBuild(`q-${i}`))),
    );
    const accepted = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 429);
    expect(accepted).toHaveLength(10);
    expect(refused).toHaveLength(40);
    for (const r of refused) {
      expect(r.body).toMatchObject({ kind: 'Status', code: 429, reason: 'TooManyRequests' });
      expect(r.body.message).toMatch(/active builds/);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    const list = await admin.req('GET', '/api/v1/imagebuilds?limit=1000');
    expect(list.body.items).toHaveLength(10); // no partial writes from the refused ones
    const quota = await admin.req('GET', '/api/v1/quota');
    expect(quota.body).toEqual({
      orgId: 'org-q',
      limits: { activeBuilds: 10, buildsPerWindow: 15, windowDays: 14 },
      usage: { activeBuilds: 10, buildsInWindow: 10 },
    });
  });

  it('a build that ends frees its active slot; the window quota then applies, with Retry-After to the window’s end', async () => {
    const names = (await admin.req('GET', '/api/v1/imagebuilds?limit=1000')).body.items.map(
      (i: { metadata: { name: string } }) => i.metadata.name,
    );
    for (const name of names) {
      const item = await stack.deps.store.get('org-q', 'ImageBuild', name);
      await transition(stack.deps, workflowRef(item!), { reason: 'Failed', message: 'x' });
    }
    expect((await admin.req('GET', '/api/v1/quota')).body.usage).toEqual({
      activeBuilds: 0,
      buildsInWindow: 10,
    });
    const more = [];
    for (let i = 0; i < 6; i++)
      more.push(await admin.req('POST', '/api/v1/imagebuilds', imageBuild(`w-${i}`)));
    expect(more.map((r) => r.status)).toEqual([201, 201, 201, 201, 201, 429]);
    const last = more[5]!;
    expect(last.body.message).toMatch(/15 builds per 14 days/);
    const retryAfter = Number(last.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(14 * 86400 - 120);
    expect(retryAfter).toBeLessThanOrEqual(14 * 86400);
  });

  it('a name conflict does not consume quota; deleting an active build frees its slot; per-org overrides apply', async () => {
    const before = (await admin.req('GET', '/api/v1/quota')).body.usage;
    expect((await admin.req('POST', '/api/v1/imagebuilds', imageBuild('w-0'))).status).toBe(409);
    expect((await admin.req('GET', '/api/v1/quota')).body.usage).toEqual(before);
    await admin.req('DELETE', '/api/v1/imagebuilds/w-0');
    expect((await admin.req('GET', '/api/v1/quota')).body.usage.activeBuilds).toBe(before.activeBuilds - 1);
    const big = await stack.as('org-big');
    expect((await big.req('GET', '/api/v1/quota')).body.limits.activeBuilds).toBe(50);
  });
});

describe('discoverability', () => {
  it('concurrent creates of one name: one 201, the others 409, and exactly one slot taken', async () => {
    const c = await stack.as('org-same-name');
    await seedRepositories(c);
    const results = await Promise.all(
      Array.from({ length: 6 }, () => c.req('POST', '/api/v1/imagebuilds', imageBuild('twin'))),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409, 409]);
    for (const r of results.filter((x) => x.status === 409)) expect(r.body.message).toMatch(/already exists/);
    const quota = await c.req('GET', '/api/v1/quota');
    expect(quota.body.usage).toEqual({ activeBuilds: 1, buildsInWindow: 1 });
    const stored = await stack.deps.store.get('org-same-name', 'ImageBuild', 'twin');
    expect(Object.keys((await stack.deps.quotas.read('org-same-name')).active)).toEqual([
      stored?.doc.metadata.uid,
    ]);
  });

  it('two processes share the ledger: a copy remembered by one never skips a release or refuses a free slot', async () => {
    // Two Lambda containers: each remembers the ledger as it last wrote it.
    const a = { ...stack.deps, quotas: new DynamoDbQuotaLedger(stack.dynamo.client, stack.tableName) };
    const b = { ...stack.deps, quotas: new DynamoDbQuotaLedger(stack.dynamo.client, stack.tableName) };
    const limits = { quota: { activeBuilds: 1, buildsPerWindow: 100, windowSeconds: 3600 } };
    a.settings = { ...a.settings, ...limits };
    b.settings = { ...b.settings, ...limits };
    const org = 'org-two-processes';
    await acquireBuildSlot(a, org, 'u1'); // a remembers {u1}
    await releaseBuildSlot(b, org, 'u1'); // b frees it and remembers {}: a's copy is stale
    await acquireBuildSlot(a, org, 'u2'); // a's copy says full: it must read again, and succeed
    await releaseBuildSlot(b, org, 'u2'); // b's copy lacks u2 ("nothing to release"): it must read again
    expect((await a.quotas.read(org)).active).toEqual({});
    await acquireBuildSlot(a, org, 'u4'); // a's copy holds u2 (full): read again, succeed
    await acquireBuildSlot(b, org, 'u3').then(
      // b's copy is empty: its write fails the condition, and a fresh read refuses
      () => expect.unreachable('b must see u4 and refuse'),
      (err: Error) => expect(err.message).toMatch(/1 of 1 active builds/),
    );
    expect(Object.keys((await b.quotas.read(org)).active)).toEqual(['u4']);
  });

  it('version and the OpenAPI document need no token; capabilities list formats, architectures, limits', async () => {
    const v = await call(stack.url, 'GET', '/api/v1/version', undefined);
    expect(v.status).toBe(200);
    expect(v.body.version).toMatch(/^\d+\.\d+\.\d+/);
    const doc = await call(stack.url, 'GET', '/api/v1/openapi.json', undefined);
    expect(doc.body.openapi).toBe('3.1.0');
    expect(doc.body.components.schemas.ImageBuild).toBeTruthy();
    expect((await call(stack.url, 'GET', '/api/v1/capabilities', undefined)).status).toBe(401);
    const caps = await admin.req('GET', '/api/v1/capabilities');
    expect(caps.body.exportFormats).toEqual(
      expect.arrayContaining(['qcow2', 'vmdk', 'iso', 'qcow2-disk-container', 'ami']),
    );
    expect(caps.body.architectures).toEqual(['x86_64', 'aarch64']);
    expect(caps.body.bindingTypes).toEqual(['early', 'late']);
    expect(caps.body.limits.quota).toEqual({ activeBuilds: 10, buildsPerWindow: 15, windowDays: 14 });
    expect(caps.body.limits.customizations.fileBytes).toBe(262144);
  });
});
