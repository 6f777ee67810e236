// The OCI registry client (functions/commons/adapters/oci-registry.ts) against real docker-registry 2.8
// servers, which have no referrers API: anonymous over http, basic auth (htpasswd) over http, and bearer
// tokens (a token server here, JWTs signed with a test key) over https with a test CA. A fixture image is
// pushed with skopeo; the client pushes artifacts whose subject is it, lists them through the tag schema
// fallback, and pushes a KubeVirt containerdisk. Blobs are read back and their digests checked.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { importPKCS8, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Descriptor,
  EMPTY_DESCRIPTOR,
  OCI_INDEX,
  OCI_MANIFEST,
  OciRegistry,
  OciRegistryError,
  type OciRegistrySettings,
  parseChallenge,
  referrersTag,
} from '../../functions/commons/adapters/oci-registry.js';
import {
  type Credentials,
  hasRegistry,
  REGISTRY_BIN,
  startRegistry,
  type TestRegistry,
} from '../fixtures/registry.js';

const exec = promisify(execFile);
const CREDS: Credentials = { username: 'robot', password: `S3cret-${randomBytes(6).toString('hex')}` };
const sha256 = (data: Buffer | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function missingTools(): Promise<string> {
  const missing: string[] = [];
  if (!(await hasRegistry())) missing.push('docker-registry');
  for (const tool of ['skopeo', 'openssl'] as const) {
    try {
      await exec(tool, ['--version']).catch(() => exec(tool, ['version']));
    } catch {
      missing.push(tool);
    }
  }
  return missing.length ? `${missing.join(', ')} not installed` : '';
}

const skipReason = await missingTools();

// ---- a docker-registry with token auth over TLS, and its token server --------------------------------

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

interface TokenRegistry extends TestRegistry {
  caPem: string;
  /** Tokens issued, by scope asked. */
  issued: string[];
  token(scope: string): Promise<string>;
}

async function startTokenRegistry(dir: string): Promise<TokenRegistry> {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  await exec('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ]);
  const caPem = await readFile(cert, 'utf8');
  const certDer = Buffer.from(caPem.replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64');
  const signingKey = await importPKCS8(await readFile(key, 'utf8'), 'ES256');
  const service = 'ib-test-registry';
  const issued: string[] = [];
  const sign = (subject: string, scopes: string[]) =>
    new SignJWT({
      access: scopes.map((s) => {
        const [type, name, actions] = s.split(':');
        return { type, name, actions: (actions ?? '').split(',').filter(Boolean) };
      }),
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', x5c: [certDer] })
      .setIssuer('ib-test-issuer')
      .setSubject(subject)
      .setAudience(service)
      .setIssuedAt()
      .setNotBefore('0s')
      .setExpirationTime('5m')
      .setJti(randomUUID())
      .sign(signingKey);
  const tokenServer: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization ?? '';
    const expected = `Basic ${Buffer.from(`${CREDS.username}:${CREDS.password}`).toString('base64')}`;
    if (auth !== expected) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const scopes = url.searchParams.getAll('scope');
    issued.push(scopes.join(' '));
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ token: await sign(CREDS.username, scopes), expires_in: 300 }));
  });
  await new Promise<void>((r) => tokenServer.listen(0, '127.0.0.1', r));
  const tokenPort = (tokenServer.address() as { port: number }).port;

  const lines: string[] = [];
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${JSON.stringify(join(dir, 'data'))}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${host}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
      '  tls:',
      `    certificate: ${JSON.stringify(cert)}`,
      `    key: ${JSON.stringify(key)}`,
      'auth:',
      '  token:',
      `    realm: http://127.0.0.1:${tokenPort}/token`,
      `    service: ${service}`,
      '    issuer: ib-test-issuer',
      `    rootcertbundle: ${JSON.stringify(cert)}`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (c: Buffer) => lines.push(c.toString()));
  child.stderr?.on('data', (c: Buffer) => lines.push(c.toString()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    await new Promise((r) => tokenServer.close(r));
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = httpsRequest(`https://${host}/v2/`, { ca: caPem, timeout: 1_000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
      req.end();
    });
    if (status === 401) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      await stop();
      throw new Error(`token registry did not start:\n${lines.join('')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host,
    caPem,
    issued,
    log: () => lines.join(''),
    stop,
    token: (scope: string) => sign(CREDS.username, [scope]),
  };
}

// ---- the scenarios ---------------------------------------------------------------------------------

interface Scenario {
  name: string;
  start(
    dir: string,
  ): Promise<
    TestRegistry & { caPem?: string; issued?: string[]; token?: (scope: string) => Promise<string> }
  >;
  settings(host: string, caPem?: string): OciRegistrySettings;
  skopeoArgs: string[];
}

const SCENARIOS: Scenario[] = [
  {
    name: 'anonymous, http',
    start: () => startRegistry(),
    settings: (registry) => ({ registry, scheme: 'http' }),
    skopeoArgs: [],
  },
  {
    name: 'basic auth, http',
    start: () => startRegistry({ auth: CREDS }),
    settings: (registry) => ({ registry, scheme: 'http', ...CREDS }),
    skopeoArgs: ['--dest-creds', `${CREDS.username}:${CREDS.password}`],
  },
  {
    name: 'bearer tokens, https with a custom CA',
    start: (dir) => startTokenRegistry(dir),
    settings: (registry, caPem) => ({ registry, ...CREDS, caPem }),
    skopeoArgs: ['--dest-creds', `${CREDS.username}:${CREDS.password}`],
  },
];

describe.skipIf(skipReason !== '')(
  `OCI registry client e2e${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let work: string;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'ib-oci-e2e-'));
    });
    afterAll(async () => {
      if (work) await rm(work, { recursive: true, force: true });
    });

    /** A one-layer image made by hand, pushed with skopeo; returns its manifest descriptor. */
    async function pushFixtureImage(host: string, repo: string, skopeoArgs: string[]): Promise<Descriptor> {
      const dir = await mkdtemp(join(work, 'image-'));
      const blobs = join(dir, 'blobs', 'sha256');
      await mkdir(blobs, { recursive: true });
      const src = join(dir, 'src');
      await mkdir(join(src, 'etc'), { recursive: true });
      await writeFile(
        join(src, 'etc', 'os-release'),
        `ID=fixture\nVARIANT=${randomBytes(4).toString('hex')}\n`,
      );
      const layer = (
        await exec('tar', ['-C', src, '--owner=0', '--group=0', '-cf', '-', 'etc'], { encoding: 'buffer' })
      ).stdout as Buffer;
      const blob = async (data: Buffer | string, mediaType: string) => {
        const digest = sha256(data);
        await writeFile(join(blobs, digest.slice(7)), data);
        return { mediaType, digest, size: Buffer.byteLength(data) };
      };
      const config = await blob(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
        }),
        'application/vnd.oci.image.config.v1+json',
      );
      const manifest = await blob(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config,
          layers: [await blob(layer, 'application/vnd.oci.image.layer.v1.tar')],
        }),
        OCI_MANIFEST,
      );
      await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [manifest] }));
      const digestFile = join(dir, 'digest');
      await exec('skopeo', [
        'copy',
        '--quiet',
        '--preserve-digests',
        '--dest-tls-verify=false',
        ...skopeoArgs,
        '--digestfile',
        digestFile,
        `oci:${dir}`,
        `docker://${host}/${repo}:1`,
      ]);
      expect((await readFile(digestFile, 'utf8')).trim()).toBe(manifest.digest);
      return manifest;
    }

    describe.each(SCENARIOS)('$name', (scenario) => {
      let registry: Awaited<ReturnType<Scenario['start']>>;
      let client: OciRegistry;
      let subject: Descriptor;
      let disk: string;
      let diskBytes: Buffer;
      const repo = 'edge/os';

      /** GET of /v2/<repository>/<rest> with the scenario's auth, bypassing the client (what it stored). */
      async function rawGet(repository: string, rest: string, accept?: string): Promise<Buffer> {
        const headers: Record<string, string> = accept ? { accept } : {};
        if (registry.token) {
          headers.authorization = `Bearer ${await registry.token(`repository:${repository}:pull`)}`;
        } else if (scenario.name.startsWith('basic')) {
          headers.authorization = `Basic ${Buffer.from(`${CREDS.username}:${CREDS.password}`).toString('base64')}`;
        }
        const path = `/v2/${repository}/${rest}`;
        if (!registry.caPem) {
          const res = await fetch(`http://${registry.host}${path}`, { headers });
          if (res.status !== 200) throw new Error(`GET ${path}: ${res.status}`);
          return Buffer.from(await res.arrayBuffer());
        }
        // https with a custom CA: node:https
        return new Promise((resolve, reject) => {
          const req = httpsRequest(
            `https://${registry.host}${path}`,
            { headers, ca: registry.caPem },
            (res) => {
              const chunks: Buffer[] = [];
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () =>
                res.statusCode === 200
                  ? resolve(Buffer.concat(chunks))
                  : reject(new Error(`GET ${path}: ${res.statusCode}`)),
              );
            },
          );
          req.on('error', reject);
          req.end();
        });
      }

      beforeAll(async () => {
        const dir = await mkdtemp(join(work, 'registry-'));
        registry = await scenario.start(dir);
        client = new OciRegistry(scenario.settings(registry.host, registry.caPem));
        subject = await pushFixtureImage(registry.host, repo, scenario.skopeoArgs);
        disk = join(dir, 'edge-os-x86_64.qcow2');
        diskBytes = randomBytes(3 * 1024 * 1024 + 123);
        await writeFile(disk, diskBytes);
      });

      afterAll(async () => {
        client?.close();
        await registry?.stop();
      });

      it('pushes an artifact whose subject is the image, and lists it as a referrer', async () => {
        const pushed = await client.pushArtifact({
          repository: repo,
          artifactType: 'application/vnd.diskimage.qcow2',
          subject,
          file: { path: disk, mediaType: 'application/x-qemu-disk' },
          annotations: { 'io.flightctl.imagebuilder.export': 'edge-os-v1-qcow2' },
        });
        expect(pushed).toMatchObject({
          mediaType: OCI_MANIFEST,
          referrersApi: false,
          fallbackTag: referrersTag(subject.digest),
        });

        // the manifest as stored: artifactType, empty config, one titled layer, subject
        const manifestBytes = await rawGet(repo, `manifests/${pushed.digest}`, OCI_MANIFEST);
        expect(sha256(manifestBytes)).toBe(pushed.digest);
        const manifest = JSON.parse(manifestBytes.toString('utf8'));
        expect(manifest).toEqual({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.diskimage.qcow2',
          config: EMPTY_DESCRIPTOR,
          layers: [
            {
              mediaType: 'application/x-qemu-disk',
              digest: sha256(diskBytes),
              size: diskBytes.length,
              annotations: { 'org.opencontainers.image.title': 'edge-os-x86_64.qcow2' },
            },
          ],
          subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
          annotations: { 'io.flightctl.imagebuilder.export': 'edge-os-v1-qcow2' },
        });
        // the blobs as stored
        const layer = await rawGet(repo, `blobs/${sha256(diskBytes)}`);
        expect(sha256(layer)).toBe(sha256(diskBytes));
        expect(layer.equals(diskBytes)).toBe(true);
        expect((await rawGet(repo, `blobs/${EMPTY_DESCRIPTOR.digest}`)).toString()).toBe('{}');

        // referrers: docker-registry has no API (404), the fallback index at tag sha256-<hex> lists it
        const referrers = await client.referrers(repo, subject.digest);
        expect(referrers).toEqual([
          {
            mediaType: OCI_MANIFEST,
            digest: pushed.digest,
            size: pushed.size,
            artifactType: 'application/vnd.diskimage.qcow2',
            annotations: { 'io.flightctl.imagebuilder.export': 'edge-os-v1-qcow2' },
          },
        ]);
        const index = JSON.parse(
          (await rawGet(repo, `manifests/${referrersTag(subject.digest)}`, OCI_INDEX)).toString('utf8'),
        );
        expect(index.mediaType).toBe(OCI_INDEX);
        expect(index.manifests).toEqual(referrers);
        // with token auth, the client asked the token server for the scopes of each operation
        if (registry.issued) {
          expect(new Set(registry.issued)).toEqual(
            new Set(['repository:edge/os:pull', 'repository:edge/os:pull,push']),
          );
        }
      });

      it('does not duplicate on a second push, and keeps every artifact type apart', async () => {
        const again = await client.pushArtifact({
          repository: repo,
          artifactType: 'application/vnd.diskimage.qcow2',
          subject,
          file: { path: disk, mediaType: 'application/x-qemu-disk' },
          annotations: { 'io.flightctl.imagebuilder.export': 'edge-os-v1-qcow2' },
        });
        expect(await client.referrers(repo, subject.digest)).toHaveLength(1);
        const iso = await client.pushArtifact({
          repository: repo,
          artifactType: 'application/vnd.diskimage.iso',
          subject,
          file: {
            bytes: 'an iso, in a way',
            mediaType: 'application/x-iso9660-image',
            annotations: { 'org.opencontainers.image.title': 'install.iso' },
          },
        });
        const all = await client.referrers(repo, subject.digest);
        expect(all.map((d) => d.digest)).toEqual([again.digest, iso.digest]);
        expect(
          (await client.referrers(repo, subject.digest, 'application/vnd.diskimage.iso')).map(
            (d) => d.digest,
          ),
        ).toEqual([iso.digest]);
        expect(await client.referrers(repo, subject.digest, 'application/vnd.example')).toEqual([]);
        // another image has no referrers
        expect(await client.referrers(repo, sha256('nothing refers to this'))).toEqual([]);
        // the artifact can also be tagged
        const tagged = await client.pushArtifact({
          repository: repo,
          artifactType: 'application/vnd.diskimage.iso',
          subject,
          file: {
            bytes: 'an iso, in a way',
            mediaType: 'application/x-iso9660-image',
            annotations: { 'org.opencontainers.image.title': 'install.iso' },
          },
          tag: 'v1-iso',
        });
        expect(tagged.digest).toBe(iso.digest);
        expect((await client.getManifest(repo, 'v1-iso'))?.digest).toBe(iso.digest);
        expect(await client.referrers(repo, subject.digest)).toHaveLength(2);
      });

      it('pushes a KubeVirt containerdisk (the qcow2 under /disk/, owned by 107) as a referrer', async () => {
        const pushed = await client.pushContainerDisk({
          repository: 'edge/os-disk',
          tag: 'v1',
          disk: { path: disk },
          architecture: 'amd64',
          subject,
        });
        expect(pushed.fallbackTag).toBe(referrersTag(subject.digest));
        const manifest = JSON.parse((await client.getManifest('edge/os-disk', 'v1'))!.body.toString('utf8'));
        expect(manifest.config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
        const layerDigest = manifest.layers[0].digest as string;
        const tar = await rawGet('edge/os-disk', `blobs/${layerDigest}`);
        expect(sha256(tar)).toBe(layerDigest);
        const listing = await new Promise<string>((resolve, reject) => {
          const child = spawn('tar', ['-tv', '--numeric-owner', '-f', '-']);
          let out = '';
          child.stdout.on('data', (c: Buffer) => (out += c.toString()));
          child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`tar exit ${code}`))));
          child.stdin.end(tar);
        });
        const rows = listing
          .trim()
          .split('\n')
          .map((l) => l.split(/\s+/));
        expect(rows.map((r) => [r[0], r[1], r[2], r[5]])).toEqual([
          ['dr-xr-xr-x', '107/107', '0', 'disk/'],
          ['-r--r-----', '107/107', String(diskBytes.length), 'disk/disk.qcow2'],
        ]);
        const inside = tar.subarray(1024, 1024 + diskBytes.length);
        expect(inside.equals(diskBytes)).toBe(true);
        // skopeo reads it as an ordinary amd64 image
        const { stdout } = await exec('skopeo', [
          'inspect',
          '--tls-verify=false',
          ...(scenario.skopeoArgs.length ? ['--creds', `${CREDS.username}:${CREDS.password}`] : []),
          `docker://${registry.host}/edge/os-disk:v1`,
        ]);
        expect(JSON.parse(stdout)).toMatchObject({ Architecture: 'amd64', Os: 'linux' });
        expect((await client.referrers('edge/os-disk', subject.digest)).map((d) => d.digest)).toEqual([
          pushed.digest,
        ]);
      });

      it.skipIf(scenario.name.startsWith('anonymous'))(
        'reports rejected credentials without the password',
        async () => {
          const wrong = `Wr0ng-${randomBytes(4).toString('hex')}`;
          const bad = new OciRegistry({
            ...scenario.settings(registry.host, registry.caPem),
            password: wrong,
          });
          try {
            const err = await bad.referrers(repo, subject.digest).catch((e: unknown) => e);
            expect(err).toBeInstanceOf(OciRegistryError);
            expect((err as OciRegistryError).status).toBe(401);
            expect(String(err)).not.toContain(wrong);
          } finally {
            bad.close();
          }
        },
      );
    });

    it('verifies TLS: an unknown CA fails, skipServerVerification passes', async () => {
      const dir = await mkdtemp(join(work, 'tls-'));
      const registry = await startTokenRegistry(dir);
      try {
        const strict = new OciRegistry({ registry: registry.host, ...CREDS });
        const err = await strict.referrers('edge/os', sha256('x')).catch((e: unknown) => e);
        strict.close();
        expect(err).toBeInstanceOf(OciRegistryError);
        expect(String(err)).toMatch(/self[- ]signed|certificate/i);
        const lax = new OciRegistry({ registry: registry.host, ...CREDS, skipServerVerification: true });
        expect(await lax.referrers('edge/os', sha256('x'))).toEqual([]);
        lax.close();
        expect(registry.issued).toContain('repository:edge/os:pull');
      } finally {
        await registry.stop();
      }
    });
  },
);

describe('parseChallenge', () => {
  it('reads bearer and basic challenges', () => {
    expect(
      parseChallenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull"',
      ),
    ).toEqual({
      scheme: 'bearer',
      realm: 'https://auth.example.com/token',
      service: 'registry.example.com',
      scope: 'repository:a/b:pull',
    });
    expect(parseChallenge('Basic realm="ib-test"')).toEqual({ scheme: 'basic' });
    expect(parseChallenge('Bearer service="x"')).toBeUndefined();
    expect(parseChallenge('Negotiate abc')).toBeUndefined();
    expect(parseChallenge(undefined)).toBeUndefined();
  });
});
