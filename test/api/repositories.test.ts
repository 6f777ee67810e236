import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_AWS } from '../../functions/local/dynamodb-local.js';
import { expectFlightctl } from '../fixtures/flightctl-specs.js';
import { type Client, repository, startTestStack, type TestStack } from '../fixtures/local-stack.js';

let stack: TestStack;
let admin: Client;
const PASSWORD = 'pa55-Secret-value-9f3c';

beforeAll(async () => {
  stack = await startTestStack();
  admin = await stack.as('org-a');
});
afterAll(() => stack.close());

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await allFiles(p)));
    else out.push(p);
  }
  return out;
}

describe('Repository', () => {
  it('creates (201), gets and lists it; the password goes to the secret store only', async () => {
    const created = await admin.req(
      'POST',
      '/api/v1/repositories',
      repository('quay', {
        accessMode: 'ReadWrite',
        ociAuth: { authType: 'docker', username: 'robot', password: PASSWORD },
      }),
    );
    expect(created.status).toBe(201);
    expect(created.body.metadata).toMatchObject({ name: 'quay', generation: 1, resourceVersion: '1' });
    expect(created.body.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    // Flight Control's shape (DockerAuth requires a password): the stored one is shown masked, as
    // Flight Control shows it.
    expect(created.body.spec.ociAuth).toEqual({ authType: 'docker', username: 'robot', password: '*****' });
    expectFlightctl('core', 'Repository', created.body);

    const got = await admin.req('GET', '/api/v1/repositories/quay');
    expect(got.status).toBe(200);
    expect(got.text).not.toContain(PASSWORD);
    const list = await admin.req('GET', '/api/v1/repositories');
    expect(list.body.kind).toBe('RepositoryList');
    expect(list.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(['quay']);
    expect(list.text).not.toContain(PASSWORD);
    expectFlightctl('core', 'Repository', got.body);
    expectFlightctl('core', 'RepositoryList', list.body);

    // Not in the table…
    // Read back with the AWS SDK, independently of the store's own client.
    const sdk = new DynamoDBClient({ ...LOCAL_AWS, endpoint: stack.dynamo.endpoint });
    const scan = await sdk.send(new ScanCommand({ TableName: stack.tableName }));
    expect(JSON.stringify(scan.Items)).not.toContain(PASSWORD);
    // …but in exactly one secret file, mode 0600.
    const files = await allFiles(join(stack.dataDir, 'secrets'));
    const holding = [];
    for (const f of files) if ((await readFile(f, 'utf8')) === PASSWORD) holding.push(f);
    expect(holding).toHaveLength(1);
    expect((await stat(holding[0] as string)).mode & 0o777).toBe(0o600);
  });

  it('409 on the same name, 404 on a missing one, 200 on deleting a missing one', async () => {
    expect((await admin.req('POST', '/api/v1/repositories', repository('dup'))).status).toBe(201);
    const again = await admin.req('POST', '/api/v1/repositories', repository('dup'));
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      code: 409,
      reason: 'AlreadyExists',
    });
    expect((await admin.req('GET', '/api/v1/repositories/nope')).status).toBe(404);
    expect((await admin.req('DELETE', '/api/v1/repositories/nope')).status).toBe(200);
  });

  it('PUT replaces: generation counts spec changes, resourceVersion every write, stale version → 409', async () => {
    await admin.req('POST', '/api/v1/repositories', repository('rep', { registry: 'a.example.com' }));
    const labelsOnly = await admin.req('PUT', '/api/v1/repositories/rep', {
      ...repository('rep', { registry: 'a.example.com' }),
      metadata: { name: 'rep', labels: { env: 'prod' } },
    });
    expect(labelsOnly.status).toBe(200);
    expect(labelsOnly.body.metadata).toMatchObject({
      generation: 1,
      resourceVersion: '2',
      labels: { env: 'prod' },
    });
    const spec = await admin.req(
      'PUT',
      '/api/v1/repositories/rep',
      repository('rep', { registry: 'b.example.com' }),
    );
    expect(spec.body.metadata).toMatchObject({ generation: 2, resourceVersion: '3' });
    expect(spec.body.metadata.uid).toBe(labelsOnly.body.metadata.uid);
    const stale = await admin.req('PUT', '/api/v1/repositories/rep', {
      ...repository('rep'),
      metadata: { name: 'rep', resourceVersion: '1' },
    });
    expect(stale.status).toBe(409);
    const wrongName = await admin.req('PUT', '/api/v1/repositories/rep', repository('other'));
    expect(wrongName.status).toBe(400);
    expect(wrongName.body.message).toContain('metadata.name');
    const created = await admin.req('PUT', '/api/v1/repositories/fresh', repository('fresh'));
    expect(created.status).toBe(201);
  });

  it('PUT keeps the stored password when a GET result is sent back, replaces it when a new one is given', async () => {
    const auth = { authType: 'docker', username: 'robot', password: 'first-password' };
    await admin.req('POST', '/api/v1/repositories', repository('keep', { ociAuth: auth }));
    const secretsBefore = await allFiles(join(stack.dataDir, 'secrets'));
    const got = await admin.req('GET', '/api/v1/repositories/keep');
    expect((await admin.req('PUT', '/api/v1/repositories/keep', got.body)).status).toBe(200);
    expect(await allFiles(join(stack.dataDir, 'secrets'))).toEqual(secretsBefore);
    await admin.req(
      'PUT',
      '/api/v1/repositories/keep',
      repository('keep', { ociAuth: { ...auth, password: 'second' } }),
    );
    const after = await allFiles(join(stack.dataDir, 'secrets'));
    const contents = await Promise.all(after.map((f) => readFile(f, 'utf8')));
    expect(contents).toContain('second');
    expect(contents).not.toContain('first-password');
    // A client that edits something else and sends the masked password back keeps it, stored as it was.
    const masked = (await admin.req('GET', '/api/v1/repositories/keep')).body;
    expect(masked.spec.ociAuth.password).toBe('*****');
    const relabeled = { ...masked, metadata: { ...masked.metadata, labels: { team: 'edge' } } };
    expect((await admin.req('PUT', '/api/v1/repositories/keep', relabeled)).status).toBe(200);
    const kept = await Promise.all(
      (await allFiles(join(stack.dataDir, 'secrets'))).map((f) => readFile(f, 'utf8')),
    );
    expect(kept).toContain('second');
    expect(kept).not.toContain('*****');
    // Where the password would go changes (another host, plain http): it must be sent again.
    const current = (await admin.req('GET', '/api/v1/repositories/keep')).body;
    for (const change of [
      { registry: 'evil.example.com' },
      { scheme: 'http' },
      { skipServerVerification: true },
    ]) {
      const moved = { ...current, spec: { ...current.spec, ...change } };
      const res = await admin.req('PUT', '/api/v1/repositories/keep', moved);
      expect([change, res.status, res.body.message]).toEqual([
        change,
        400,
        expect.stringMatching(/^spec\.ociAuth\.password: .*send the password again/),
      ]);
    }
    // Creating with the mask: there is no stored password it could stand for.
    const bad = await admin.req(
      'POST',
      '/api/v1/repositories',
      repository('masked', { ociAuth: { ...auth, password: '*****' } }),
    );
    expect([bad.status, bad.body.message]).toEqual([400, expect.stringMatching(/^spec\.ociAuth\.password:/)]);
    await admin.req('DELETE', '/api/v1/repositories/keep');
    const left = await Promise.all(
      (await allFiles(join(stack.dataDir, 'secrets'))).map((f) => readFile(f, 'utf8')),
    );
    expect(left).not.toContain('second');
  });

  it('a lost create race leaves no orphaned secret', async () => {
    const body = repository('race', { ociAuth: { authType: 'docker', username: 'u', password: 'race-pw' } });
    const results = await Promise.all(
      Array.from({ length: 10 }, () => admin.req('POST', '/api/v1/repositories', body)),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    const contents = await Promise.all(
      (await allFiles(join(stack.dataDir, 'secrets'))).map((f) => readFile(f, 'utf8')),
    );
    expect(contents.filter((c) => c === 'race-pw')).toHaveLength(1);
  });
});
