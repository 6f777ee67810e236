// End to end: an ImageBuild created through the local stack's HTTP API becomes a real image in a real
// registry — the same handlers, state machine file and builder script as the cloud, with buildah on this
// machine, docker-registry on 127.0.0.1, the fixture base image as source and a local Flight Control
// CSR server for early binding. The pushed image is read back and checked.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlightctlEnrollmentCertificates } from '../../functions/commons/adapters/flightctl-enrollment.js';
import { buildFixtureBaseImage, hasBuildah, removeImages, sh } from '../fixtures/base-image.js';
import { type CsrServer, startCsrServer } from '../fixtures/flightctl-csr-server.js';
import {
  type Client,
  imageBuild,
  repository,
  startTestStack,
  type TestStack,
  waitForReason,
} from '../fixtures/local-stack.js';
import {
  hasRegistry,
  pushImage,
  registryDigest,
  startRegistry,
  type TestRegistry,
} from '../fixtures/registry.js';

const READY = (await hasBuildah()) && (await hasRegistry());
const id = randomBytes(4).toString('hex');
const DEST_CREDS = { username: 'robot', password: `pw-${randomBytes(8).toString('hex')}` };
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl edge@site';
const UNIT =
  '[Unit]\nDescription=hello "world" $(not a command)\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n';
const MOTD = 'Welcome to `edge`\n$HOME stays literal; "quotes" too\n';

let source: TestRegistry;
let dest: TestRegistry;
let csr: CsrServer;
let stack: TestStack;
let admin: Client;
const cleanup = { images: [] as string[], containers: [] as string[] };

beforeAll(async () => {
  if (!READY) return;
  [source, dest] = await Promise.all([startRegistry(), startRegistry({ auth: DEST_CREDS })]);
  const base = `localhost/ib-e2e-base:${id}`;
  await buildFixtureBaseImage(base);
  cleanup.images.push(base);
  await pushImage(base, `${source.host}/fixtures/bootc-base:1`);
  csr = await startCsrServer({ token: 'fc-token', approval: 'allow' });
  stack = await startTestStack({
    workflows: undefined,
    settings: { buildTimeoutSeconds: 600, heartbeatSeconds: 2 },
    enrollment: new FlightctlEnrollmentCertificates({
      apiUrl: csr.url,
      token: 'fc-token',
      caPem: csr.ca.pem,
      pollIntervalMs: 50,
    }),
  });
  admin = await stack.as('org-e2e');
  await admin.req(
    'POST',
    '/api/v1/repositories',
    repository('src', { registry: source.host, scheme: 'http' }),
  );
  await admin.req(
    'POST',
    '/api/v1/repositories',
    repository('dst', {
      registry: dest.host,
      scheme: 'http',
      accessMode: 'ReadWrite',
      ociAuth: { authType: 'docker', ...DEST_CREDS },
    }),
  );
  await admin.req(
    'POST',
    '/api/v1/repositories',
    repository('dst-wrong', {
      registry: dest.host,
      scheme: 'http',
      accessMode: 'ReadWrite',
      ociAuth: { authType: 'docker', username: 'robot', password: 'not-the-password' },
    }),
  );
}, 300_000);

afterAll(async () => {
  if (!READY) return;
  await stack?.close();
  await Promise.all([source?.stop(), dest?.stop(), csr?.close()]);
  for (const c of cleanup.containers) await sh('buildah', ['rm', c]).catch(() => undefined);
  await removeImages(...cleanup.images).catch(() => undefined);
});

const waitFor = (name: string, timeoutMs = 300_000) =>
  waitForReason(admin, 'imagebuilds', name, ['Completed', 'Failed', 'Canceled'], timeoutMs);

/** Pulls the pushed image and mounts it; returns the root of its filesystem. */
async function mountPushed(ref: string): Promise<string> {
  await sh('buildah', [
    'pull',
    '--quiet',
    '--tls-verify=false',
    '--creds',
    `${DEST_CREDS.username}:${DEST_CREDS.password}`,
    ref,
  ]);
  cleanup.images.push(ref);
  const container = (await sh('buildah', ['from', '--pull=never', ref])).stdout.trim();
  cleanup.containers.push(container);
  return (await sh('buildah', ['mount', container])).stdout.trim();
}

describe.skipIf(!READY)('build through the local stack with buildah and a real registry', () => {
  it('Completed; the pushed image holds the agent config, user, key, files and units', async () => {
    const created = await admin.req(
      'POST',
      '/api/v1/imagebuilds',
      imageBuild('edge-os', {
        source: { repository: 'src', imageName: 'fixtures/bootc-base', imageTag: '1' },
        destination: { repository: 'dst', imageName: 'edge/os', imageTag: 'v1' },
        binding: { type: 'early' },
        userConfiguration: { username: 'edge', publickey: KEY },
        customizations: {
          packages: ['htop'],
          files: [{ path: '/etc/motd', content: MOTD, mode: '0640' }],
          systemdUnits: [{ name: 'hello.service', content: UNIT, enabled: true }],
        },
      }),
    );
    expect(created.status).toBe(201);
    const done = await waitFor('edge-os');
    const log = (await admin.req('GET', '/api/v1/imagebuilds/edge-os/log')).text;
    expect(done.status.conditions[0], log.slice(-3000)).toMatchObject({
      reason: 'Completed',
      status: 'True',
    });
    const ref = `${dest.host}/edge/os:v1`;
    expect(done.status.imageReference).toBe(ref);
    expect(done.status.manifestDigest).toBe(await registryDigest(ref, DEST_CREDS));
    expect(log).toContain('[heartbeat]');
    expect(log).not.toContain(DEST_CREDS.password);

    const root = await mountPushed(ref);
    const config = await readFile(join(root, 'etc/flightctl/config.yaml'), 'utf8');
    expect(config).toContain('enrollment-service');
    expect(config).toContain('client-certificate-data');
    expect((await sh('stat', ['-c', '%a', join(root, 'etc/flightctl/config.yaml')])).stdout.trim()).toBe(
      '600',
    );
    expect(await readFile(join(root, 'etc/passwd'), 'utf8')).toMatch(/^edge:/m);
    expect(await readFile(join(root, 'etc/group'), 'utf8')).toMatch(/^wheel:.*\bedge\b/m);
    expect((await readFile(join(root, 'home/edge/.ssh/authorized_keys'), 'utf8')).trim()).toBe(KEY);
    expect(await readFile(join(root, 'etc/motd'), 'utf8')).toBe(MOTD);
    expect((await sh('stat', ['-c', '%a', join(root, 'etc/motd')])).stdout.trim()).toBe('640');
    expect(await readFile(join(root, 'etc/systemd/system/hello.service'), 'utf8')).toBe(UNIT);
    const wants = (await sh('ls', [join(root, 'etc/systemd/system/multi-user.target.wants')])).stdout;
    expect(wants).toContain('hello.service');
    expect(wants).toContain('flightctl-agent.service');

    // Exactly one Started and one Completed event for this build.
    const events = (await readFile(join(stack.dataDir, 'events.jsonl'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((e) => JSON.parse(e.Detail).uid === created.body.metadata.uid);
    expect(events.map((e) => e.DetailType)).toEqual(['ImageBuild Started', 'ImageBuild Completed']);
    // The build context, enrollment key included, is gone from object storage.
    expect(await stack.deps.objects.list('contexts/org-e2e/')).toEqual([]);
  });

  it('a wrong registry password ends Failed with a message naming the registry', async () => {
    await admin.req(
      'POST',
      '/api/v1/imagebuilds',
      imageBuild('wrong-pw', {
        source: { repository: 'src', imageName: 'fixtures/bootc-base', imageTag: '1' },
        destination: { repository: 'dst-wrong', imageName: 'edge/os', imageTag: 'v2' },
      }),
    );
    const done = await waitFor('wrong-pw');
    expect(done.status.conditions[0].reason).toBe('Failed');
    expect(done.status.conditions[0].message).toContain(dest.host);
    expect(done.status.conditions[0].message).toMatch(/login|credentials|password|unauthorized/i);
  });
});
