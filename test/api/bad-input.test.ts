// Every invalid field of CONTRACT §1 → 400 whose message names the field, and nothing is written.
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
  await admin.req('POST', '/api/v1/imagebuilds', imageBuild('existing'));
});
afterAll(() => stack.close());

type Json = Record<string, any>;
const set = (obj: Json, path: string, value: unknown): Json => {
  const copy = structuredClone(obj);
  const keys = path.split('.');
  let cur = copy;
  for (const k of keys.slice(0, -1)) cur = cur[k] ??= {};
  const last = keys[keys.length - 1] as string;
  if (value === undefined) delete cur[last];
  else cur[last] = value;
  return copy;
};

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host';
const longName = 'a'.repeat(254);

const repoCases: [string, string, unknown][] = [
  ['metadata.name', 'metadata.name', 'UpperCase'],
  ['metadata.name', 'metadata.name', longName],
  ['metadata.name', 'metadata.name', 'under_score'],
  ['metadata.name', 'metadata.name', undefined],
  ['metadata.labels', 'metadata.labels', { 'bad key!': 'v' }],
  ['metadata.labels.env', 'metadata.labels', { env: 'has space' }],
  ['metadata.labels.env', 'metadata.labels', { env: 'x'.repeat(64) }],
  ['spec.type', 'spec.type', 'git'],
  ['spec.registry', 'spec.registry', 'https://quay.io'],
  ['spec.registry', 'spec.registry', 'quay.io/path'],
  ['spec.registry', 'spec.registry', undefined],
  ['spec.scheme', 'spec.scheme', 'ftp'],
  ['spec.accessMode', 'spec.accessMode', 'Write'],
  ['spec.ociAuth.authType', 'spec.ociAuth', { authType: 'basic', username: 'u' }],
  ['spec.ociAuth.username', 'spec.ociAuth', { authType: 'docker' }],
  ['spec.skipServerVerification', 'spec.skipServerVerification', 'yes'],
  ['spec.extra', 'spec.extra', 1],
  ['apiVersion', 'apiVersion', 'flightctl.io/v1alpha1'],
  ['kind', 'kind', 'ImageBuild'],
  ['status', 'status', 'x'],
  ['surprise', 'surprise', true],
];

const buildCases: [string, string, unknown][] = [
  ['metadata.name', 'metadata.name', '-leading'],
  ['spec.source.imageName', 'spec.source.imageName', 'UPPER/case'],
  ['spec.source.imageName', 'spec.source.imageName', 'a'.repeat(256)],
  ['spec.source.imageName', 'spec.source.imageName', 'double//slash'],
  ['spec.source.imageTag', 'spec.source.imageTag', '-tag'],
  ['spec.source.imageTag', 'spec.source.imageTag', 'x'.repeat(129)],
  ['spec.destination.imageTag', 'spec.destination.imageTag', 'a b'],
  ['spec.source.repository', 'spec.source.repository', undefined],
  ['spec.destination', 'spec.destination', undefined],
  ['spec.binding', 'spec.binding', undefined],
  ['spec.binding.type', 'spec.binding', { type: 'middle' }],
  ['spec.userConfiguration.publickey', 'spec.userConfiguration', { username: 'edge' }],
  ['spec.userConfiguration.username', 'spec.userConfiguration', { username: 'Root', publickey: KEY }],
  ['spec.userConfiguration.username', 'spec.userConfiguration', { username: 'a;b', publickey: KEY }],
  [
    'spec.userConfiguration.publickey',
    'spec.userConfiguration',
    { username: 'edge', publickey: 'ssh-dss AAAA' },
  ],
  [
    'spec.userConfiguration.publickey',
    'spec.userConfiguration',
    { username: 'edge', publickey: `${KEY}\nssh-rsa AAAA` },
  ],
  [
    'spec.userConfiguration.publickey',
    'spec.userConfiguration',
    { username: 'edge', publickey: `${KEY} $(reboot)` },
  ],
  [
    'spec.userConfiguration.publickey',
    'spec.userConfiguration',
    { username: 'edge', publickey: `ssh-rsa ${'A'.repeat(8200)}` },
  ],
  ['spec.onboarding', 'spec.onboarding', 'true'],
  ['spec.architectures[0]', 'spec.architectures', ['s390x']],
  ['spec.architectures', 'spec.architectures', []],
  ['spec.architectures', 'spec.architectures', ['x86_64', 'x86_64']],
  ['spec.customizations.packages[0]', 'spec.customizations', { packages: ['vim; rm -rf /'] }],
  [
    'spec.customizations.files[0].path',
    'spec.customizations',
    { files: [{ path: 'etc/relative', content: '' }] },
  ],
  [
    'spec.customizations.files[0].path',
    'spec.customizations',
    { files: [{ path: '/etc/../shadow', content: '' }] },
  ],
  [
    'spec.customizations.files[0].mode',
    'spec.customizations',
    { files: [{ path: '/etc/x', content: '', mode: '999' }] },
  ],
  [
    'spec.customizations.files[0].encoding',
    'spec.customizations',
    { files: [{ path: '/etc/x', content: '', encoding: 'hex' }] },
  ],
  [
    'spec.customizations.files[0].content',
    'spec.customizations',
    { files: [{ path: '/etc/x', content: 'x'.repeat(262145) }] },
  ],
  [
    'spec.customizations.systemdUnits[0].name',
    'spec.customizations',
    { systemdUnits: [{ name: '../evil.service', content: '' }] },
  ],
  ['spec.customizations.users[0].name', 'spec.customizations', { users: [{ name: '$(id)' }] }],
  [
    'spec.customizations.users[0].passwordHash',
    'spec.customizations',
    { users: [{ name: 'u', passwordHash: 'plaintext' }] },
  ],
  ['spec.customizations.agentConfig.logLevel', 'spec.customizations', { agentConfig: { logLevel: 'loud' } }],
  [
    'spec.customizations.scripts',
    'spec.customizations',
    { scripts: Array.from({ length: 21 }, (_, i) => ({ name: `s${i}`, content: '' })) },
  ],
  ['spec.customizations.nope', 'spec.customizations', { nope: 1 }],
  ['spec.unknown', 'spec.unknown', 1],
  ['apiVersion', 'apiVersion', 'flightctl.io/v1beta1'],
];

const exportCases: [string, string, unknown][] = [
  ['spec.format', 'spec.format', 'docx'],
  ['spec.format', 'spec.format', undefined],
  ['spec.source.type', 'spec.source', { type: 'registry', imageBuildRef: 'existing' }],
  ['spec.source.imageBuildRef', 'spec.source', { type: 'imageBuild' }],
  ['spec.architecture', 'spec.architecture', 'mips'],
  ['metadata.labels', 'metadata.labels', { '/x': 'y' }],
];

async function expect400(path: string, body: unknown, field: string, getPath: string) {
  const res = await admin.req('POST', path, body);
  expect([field, res.status]).toEqual([field, 400]);
  expect(res.body).toMatchObject({
    apiVersion: path.startsWith('/api/v1/repositories') ? 'flightctl.io/v1beta1' : 'flightctl.io/v1alpha1',
    kind: 'Status',
    status: 'Failure',
    code: 400,
    reason: 'BadRequest',
  });
  expect(res.body.message.startsWith(`${field}:`) || res.body.message.startsWith(`${field}[`)).toBe(true);
  // Nothing written: read from the store itself (a name the API refuses in a path cannot be asked for).
  const name = (body as Json).metadata?.name;
  const kind = {
    '/api/v1/repositories': 'Repository',
    '/api/v1/imagebuilds': 'ImageBuild',
    '/api/v1/imageexports': 'ImageExport',
  }[getPath] as 'Repository' | 'ImageBuild' | 'ImageExport';
  if (typeof name === 'string' && name.length < 1000)
    expect(await stack.deps.store.get('org-a', kind, name)).toBeUndefined();
}

describe('400 naming the field, nothing written', () => {
  it.each(repoCases)('Repository %s', (field, path, value) =>
    expect400(
      '/api/v1/repositories',
      set(repository('bad-repo'), path, value),
      field,
      '/api/v1/repositories',
    ),
  );
  it.each(buildCases)('ImageBuild %s', (field, path, value) =>
    expect400('/api/v1/imagebuilds', set(imageBuild('bad-build'), path, value), field, '/api/v1/imagebuilds'),
  );
  it.each(exportCases)('ImageExport %s', (field, path, value) =>
    expect400(
      '/api/v1/imageexports',
      set(imageExport('bad-export', 'existing'), path, value),
      field,
      '/api/v1/imageexports',
    ),
  );
});

describe('malformed requests → 4xx Status, never 5xx', () => {
  it.each([
    ['malformed JSON', '{"apiVersion": ', 400],
    ['an array', '[]', 400],
    ['a string', '"x"', 400],
    ['null', 'null', 400],
    ['empty body', '', 400],
  ])('%s', async (_, body, code) => {
    const res = await admin.req('POST', '/api/v1/repositories', body, { 'content-type': 'application/json' });
    expect(res.status).toBe(code);
    expect(res.body.kind).toBe('Status');
    expect(res.body.message).toMatch(/^body: /);
  });

  it('a body over 1 MiB → 413', async () => {
    const big = imageBuild('big', {
      customizations: { files: [{ path: '/a', content: 'x'.repeat(1024 * 1024) }] },
    });
    const res = await admin.req('POST', '/api/v1/imagebuilds', big);
    expect(res.status).toBe(413);
    expect(res.body.reason).toBe('RequestEntityTooLarge');
    expect((await admin.req('GET', '/api/v1/imagebuilds/big')).status).toBe(404);
  });

  it('a spec under the 1 MiB body limit but over what one stored resource may be → 413 naming spec, nothing written', async () => {
    const big = imageBuild('stored-big', {
      // Within every documented limit (256 KiB a file, 1 MiB together): three files of 250 KiB.
      customizations: {
        files: ['/a', '/b', '/c'].map((path) => ({ path, content: 'x'.repeat(250 * 1024) })),
      },
    });
    const res = await admin.req('POST', '/api/v1/imagebuilds', big);
    expect([res.status, res.body.reason, res.body.message.slice(0, 6)]).toEqual([
      413,
      'RequestEntityTooLarge',
      'spec: ',
    ]);
    expect(await stack.deps.store.get('org-a', 'ImageBuild', 'stored-big')).toBeUndefined();
    // Its quota slot was not kept either: the same org can still create.
    expect((await admin.req('POST', '/api/v1/imagebuilds', imageBuild('after-big'))).status).toBe(201);
  });

  it('a non-JSON content type → 415; unknown route → 404; wrong method → 405', async () => {
    const res = await admin.req('POST', '/api/v1/repositories', JSON.stringify(repository('ct')), {
      'content-type': 'text/plain',
    });
    expect(res.status).toBe(415);
    expect((await admin.req('GET', '/api/v1/nothing')).status).toBe(404);
    expect((await admin.req('PATCH', '/api/v1/repositories/x', {})).status).toBe(405);
  });

  it('a name in the path that no resource can have (1 100 characters, a bad % escape, capitals) → 400 naming it', async () => {
    const bad = ['a'.repeat(1100), '%E0%A4%A', 'Upper', 'a%2Fb'];
    for (const kind of ['repositories', 'imagebuilds', 'imageexports']) {
      for (const name of bad) {
        for (const method of ['GET', 'DELETE']) {
          const res = await admin.req(method, `/api/v1/${kind}/${name}`);
          expect([kind, name.slice(0, 12), method, res.status, res.body?.message?.slice(0, 6)]).toEqual([
            kind,
            name.slice(0, 12),
            method,
            400,
            'name: ',
          ]);
        }
      }
    }
    const put = await admin.req('PUT', `/api/v1/repositories/${'a'.repeat(1100)}`, repository('x'));
    expect([put.status, put.body.message.slice(0, 6)]).toEqual([400, 'name: ']);
  });

  it('wrong types in query parameters → 400', async () => {
    expect(
      (await admin.req('GET', '/api/v1/imagebuilds?fieldSelector=status.conditions.ready.reason')).status,
    ).toBe(400);
    expect((await admin.req('GET', '/api/v1/imagebuilds?continue=%%%')).status).toBe(400);
  });
});
