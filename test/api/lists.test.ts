import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, repository, startTestStack, type TestStack } from '../fixtures/local-stack.js';

let stack: TestStack;
let orgA: Client;
let orgB: Client;
const TOTAL = 2500;
const names = Array.from({ length: TOTAL }, (_, i) => `repo-${String(i).padStart(5, '0')}`);

/** Bulk-loads repositories through the store port (HTTP creates would only make setup slower). */
async function bulkLoad(org: string, count: number, labelsFor: (i: number) => Record<string, string>) {
  const { store } = stack.deps;
  const batch: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    batch.push(
      store.create({
        orgId: org,
        kind: 'Repository',
        name: names[i] as string,
        version: 1,
        doc: {
          apiVersion: 'flightctl.io/v1beta1',
          kind: 'Repository',
          metadata: { name: names[i] as string, labels: labelsFor(i), uid: `u${i}`, generation: 1 },
          spec: { type: 'oci', registry: 'quay.io' },
        },
      }),
    );
    if (batch.length === 50) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
}

beforeAll(async () => {
  stack = await startTestStack();
  orgA = await stack.as('org-a');
  orgB = await stack.as('org-b');
  await bulkLoad('org-a', TOTAL, (i) => ({
    tier: i % 3 === 0 ? 'gold' : 'silver',
    ...(i % 10 === 0 ? { edge: '' } : {}),
  }));
}, 180_000);
afterAll(() => stack.close());

async function pageAll(c: Client, query: string) {
  const seen: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const sep = query ? '&' : '';
    const res = await c.req(
      'GET',
      `/api/v1/repositories?${query}${token ? `${sep}continue=${encodeURIComponent(token)}` : ''}`,
    );
    expect(res.status).toBe(200);
    seen.push(...res.body.items.map((i: { metadata: { name: string } }) => i.metadata.name));
    token = res.body.metadata.continue;
    pages++;
  } while (token && pages < 1000);
  return { seen, pages };
}

describe('lists', () => {
  it(`pages through ${TOTAL} items with limit=100: each exactly once, in name order`, async () => {
    const { seen, pages } = await pageAll(orgA, 'limit=100');
    expect(seen).toEqual(names);
    expect(pages).toBe(25);
  });

  it('default limit is 100; limit=0 means the default; 1000 is the maximum', async () => {
    expect((await orgA.req('GET', '/api/v1/repositories')).body.items).toHaveLength(100);
    expect((await orgA.req('GET', '/api/v1/repositories?limit=0')).body.items).toHaveLength(100);
    expect((await orgA.req('GET', '/api/v1/repositories?limit=1000')).body.items).toHaveLength(1000);
    for (const bad of ['1001', '-1', 'abc', '1.5']) {
      const res = await orgA.req('GET', `/api/v1/repositories?limit=${bad}`);
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(/^limit: /);
    }
  });

  it('label selectors: =, !=, in, notin, exists, !exists, and', async () => {
    const count = async (sel: string) =>
      (await pageAll(orgA, `limit=1000&labelSelector=${encodeURIComponent(sel)}`)).seen;
    const gold = names.filter((_, i) => i % 3 === 0);
    expect(await count('tier=gold')).toEqual(gold);
    expect(await count('tier==gold')).toEqual(gold);
    expect(await count('tier!=gold')).toEqual(names.filter((_, i) => i % 3 !== 0));
    expect(await count('tier in (gold,bronze)')).toEqual(gold);
    expect(await count('tier notin (gold)')).toEqual(names.filter((_, i) => i % 3 !== 0));
    expect(await count('edge')).toEqual(names.filter((_, i) => i % 10 === 0));
    expect(await count('!edge')).toEqual(names.filter((_, i) => i % 10 !== 0));
    expect(await count('tier=gold,edge')).toEqual(names.filter((_, i) => i % 30 === 0));
    expect(await count('tier=platinum')).toEqual([]);
    const bad = await orgA.req(
      'GET',
      `/api/v1/repositories?labelSelector=${encodeURIComponent('tier in gold')}`,
    );
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^labelSelector: /);
  });

  it('a selective query returns short pages with a token instead of reading the whole org', async () => {
    const res = await orgA.req(
      'GET',
      `/api/v1/repositories?limit=5&fieldSelector=metadata.name=${names[TOTAL - 1]}`,
    );
    expect(res.status).toBe(200);
    expect(res.body.items).toHaveLength(0);
    expect(res.body.metadata.continue).toBeTruthy();
    const all = await pageAll(orgA, `limit=5&fieldSelector=metadata.name=${names[TOTAL - 1]}`);
    expect(all.seen).toEqual([names[TOTAL - 1]]);
  });

  it('field selectors: known keys only', async () => {
    const res = await orgA.req('GET', '/api/v1/repositories?fieldSelector=metadata.name=repo-00007');
    expect(res.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual([
      'repo-00007',
    ]);
    const bad = await orgA.req('GET', '/api/v1/repositories?fieldSelector=spec.registry=quay.io');
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^fieldSelector: unknown field "spec.registry"/);
  });

  it('continue tokens are tamper-proof and bound to org, kind and selector', async () => {
    const first = await orgA.req('GET', '/api/v1/repositories?limit=10');
    const token: string = first.body.metadata.continue;
    const [body, mac] = token.split('.') as [string, string];
    const payload = JSON.parse(Buffer.from(body, 'base64url').toString());
    const forged = `${Buffer.from(JSON.stringify({ ...payload, a: 'repo-02000' })).toString('base64url')}.${mac}`;
    for (const t of [forged, `${body}.AAAA`, 'garbage', `${body}`, '']) {
      if (!t) continue;
      const res = await orgA.req('GET', `/api/v1/repositories?limit=10&continue=${encodeURIComponent(t)}`);
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(/^continue: /);
    }
    // Org B cannot page into org A's list with A's token…
    const cross = await orgB.req(
      'GET',
      `/api/v1/repositories?limit=10&continue=${encodeURIComponent(token)}`,
    );
    expect(cross.status).toBe(400);
    // …nor use it for another kind or another selector.
    expect(
      (await orgA.req('GET', `/api/v1/imagebuilds?limit=10&continue=${encodeURIComponent(token)}`)).status,
    ).toBe(400);
    expect(
      (
        await orgA.req(
          'GET',
          `/api/v1/repositories?limit=10&labelSelector=tier=gold&continue=${encodeURIComponent(token)}`,
        )
      ).status,
    ).toBe(400);
    const ok = await orgA.req('GET', `/api/v1/repositories?limit=10&continue=${encodeURIComponent(token)}`);
    expect(ok.body.items[0].metadata.name).toBe('repo-00010');
  });

  it('org B sees none of org A and can create the same names', async () => {
    expect((await orgB.req('GET', '/api/v1/repositories')).body.items).toEqual([]);
    expect((await orgB.req('GET', `/api/v1/repositories/${names[0]}`)).status).toBe(404);
    expect((await orgB.req('DELETE', `/api/v1/repositories/${names[0]}`)).status).toBe(200);
    expect((await orgA.req('GET', `/api/v1/repositories/${names[0]}`)).status).toBe(200);
    expect((await orgB.req('POST', '/api/v1/repositories', repository(names[0] as string))).status).toBe(201);
    expect((await orgA.req('GET', `/api/v1/repositories/${names[0]}`)).body.metadata.uid).toBe('u0');
  });
});
