// A small OCI distribution client (distribution spec 1.1), enough for the export's push step:
//   HEAD/POST/PUT  /v2/<name>/blobs/…            blob upload (POST, then one monolithic PUT ?digest=),
//                                                 skipped when HEAD finds the blob
//   GET/PUT        /v2/<name>/manifests/<ref>    manifests and indexes
//   GET            /v2/<name>/referrers/<digest> referrers API, and when a registry has none (404, e.g.
//                                                 docker-registry 2.8) the tag schema fallback: an index
//                                                 at tag `sha256-<hex>` listing the referrers, which
//                                                 pushes keep up to date ("Pushing Manifests with Subject")
// and on top: pushArtifact (an ORAS-style artifact: OCI image manifest with `artifactType`, the empty
// config, one layer, `subject`) and pushContainerDisk (a KubeVirt containerdisk: the disk under /disk/).
//
// Auth: anonymous, basic, or bearer tokens (the WWW-Authenticate challenge's realm/service, the scope of
// the operation, the credentials as basic auth to the token endpoint). HTTP goes through node:http(s)
// rather than the global fetch: TLS options (a CA, skipServerVerification) are not available to fetch
// without undici's Agent, and request bodies are streamed from files or any readable source.
//
// Secrets: the password and tokens never reach an error message.
import { createHash } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type EgressPolicy, egressRefusal, internalAddress } from '../domain/egress.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const MANIFEST_ACCEPT = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(', ');
export const TITLE_ANNOTATION = 'org.opencontainers.image.title';

/** The empty descriptor: config of artifacts that have none (`{}`). */
export const EMPTY_DESCRIPTOR: Descriptor = {
  mediaType: OCI_EMPTY,
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
};

/** Manifests and indexes read are capped (the distribution spec suggests 4 MiB). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const REPOSITORY_RE = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  data?: string;
  platform?: { architecture: string; os: string; variant?: string };
}

export interface OciRegistrySettings {
  /** host[:port], e.g. `quay.io` or `127.0.0.1:5000`. */
  registry: string;
  /** `https` (default) or `http` (plain-http registries). */
  scheme?: 'https' | 'http';
  username?: string;
  password?: string;
  /** PEM CA bundle the registry's certificate chains to, when not a public CA. */
  caPem?: string;
  /** Skip TLS verification (the repository's skipServerVerification). */
  skipServerVerification?: boolean;
  /** Inactivity timeout of each request (default 60 s). */
  timeoutMs?: number;
  userAgent?: string;
  /**
   * Where requests may go (domain/egress.ts): checked for every request — the registry, its token
   * realm, redirects — by URL and, for host names, by each address DNS gives at connect time.
   * Default: anything (tests of the adapter itself).
   */
  egress?: EgressPolicy;
}

/** Content of a blob: a file, bytes, or any source that can be opened more than once. */
export type BlobContent =
  | { path: string }
  | { bytes: Uint8Array | string }
  | { open: () => Readable | Promise<Readable>; size: number; digest: string };

export interface PushArtifactInput {
  repository: string;
  artifactType: string;
  /** The manifest the artifact refers to (the built image). */
  subject: Descriptor;
  file: BlobContent & {
    mediaType: string;
    /** Layer annotations; `org.opencontainers.image.title` defaults to the file's name. */
    annotations?: Record<string, string>;
  };
  /** Manifest annotations (also copied into the referrers index). */
  annotations?: Record<string, string>;
  /** Also tag the artifact (by default it is pushed by digest only). */
  tag?: string;
}

export interface PushedManifest {
  digest: string;
  size: number;
  mediaType: string;
  /** The registry processed `subject` itself (it answered with OCI-Subject). */
  referrersApi: boolean;
  /** Without the referrers API: the tag of the fallback index that lists the manifest. */
  fallbackTag?: string;
}

export class OciRegistryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'OciRegistryError';
  }
}

interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface RequestOptions {
  /** `repository:<name>:pull` or `repository:<name>:pull,push`: the token asked for bearer auth. */
  scope?: string;
  headers?: Record<string, string | number>;
  /** Bytes, or a factory (called again when the request is retried after an auth challenge). */
  body?: Buffer | (() => Readable | Promise<Readable>);
  maxBody?: number;
  /** Follow redirects (GET/HEAD). */
  follow?: boolean;
}

type Challenge = { scheme: 'basic' } | { scheme: 'bearer'; realm: string; service?: string; scope?: string };

const sha256 = (data: Uint8Array | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const header = (h: IncomingHttpHeaders, name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/** Parses `Bearer realm="…",service="…",scope="…"` / `Basic realm="…"`. */
export function parseChallenge(value: string | undefined): Challenge | undefined {
  if (!value) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/.exec(value);
  if (!m) return undefined;
  const scheme = (m[1] ?? '').toLowerCase();
  if (scheme === 'basic') return { scheme: 'basic' };
  if (scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of (m[2] ?? '').matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g)) {
    params[(p[1] ?? '').toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  if (!params.realm) return undefined;
  return { scheme: 'bearer', realm: params.realm, service: params.service, scope: params.scope };
}

/** Tag of the referrers fallback index of `digest` (`sha256:abc…` → `sha256-abc…`). */
export const referrersTag = (digest: string) => digest.replace(':', '-');

/** dns.lookup that gives only external addresses (EgressPolicy.allowInternal false). */
export function externalLookup(
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '');
    const external = (addresses as LookupAddress[]).filter((a) => !internalAddress(a.address));
    if (!external.length) {
      const e: NodeJS.ErrnoException = new Error(`${hostname} resolves to internal addresses only: refused`);
      e.code = 'EREFUSED';
      return callback(e, '');
    }
    if (options.all) return callback(null, external);
    const first = external[0] as LookupAddress;
    return callback(null, first.address, first.family);
  });
}

export class OciRegistry {
  private readonly base: URL;
  private readonly agent: HttpAgent | HttpsAgent;
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, { token: string; expires: number }>();

  constructor(private readonly settings: OciRegistrySettings) {
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$/.test(settings.registry)) {
      throw new OciRegistryError(`not a registry host[:port]: '${settings.registry}'`);
    }
    const scheme = settings.scheme ?? 'https';
    this.base = new URL(`${scheme}://${settings.registry}`);
    this.agent =
      scheme === 'https'
        ? new HttpsAgent({
            keepAlive: true,
            ca: settings.caPem,
            rejectUnauthorized: !settings.skipServerVerification,
          })
        : new HttpAgent({ keepAlive: true });
  }

  /** Closes idle connections. */
  close(): void {
    this.agent.destroy();
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  private send(method: string, url: URL, options: RequestOptions, body?: Buffer | Readable) {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const sameOrigin = url.origin === this.base.origin;
    const egress = this.settings.egress;
    const refused = egress ? egressRefusal(url, egress) : undefined;
    if (refused) return Promise.reject(new OciRegistryError(`${method} ${url.origin}: refused: ${refused}`));
    const left = egress?.deadline !== undefined ? egress.deadline - Date.now() : Number.POSITIVE_INFINITY;
    const timeout = Math.max(1, Math.min(this.settings.timeoutMs ?? 60_000, left));
    return new Promise<HttpResponse>((resolve, reject) => {
      const deadline = Number.isFinite(left)
        ? setTimeout(() => req.destroy(new OciRegistryError(`${method} ${url.pathname}: out of time`)), left)
        : undefined;
      const done =
        <T>(f: (v: T) => void) =>
        (v: T) => {
          clearTimeout(deadline);
          f(v);
        };
      const req = send(
        url,
        {
          method,
          timeout,
          ...(egress && !egress.allowInternal ? { lookup: externalLookup } : {}),
          // another origin (a token realm, a redirect to object storage) gets its own connection and TLS
          // settings of this registry, but never the registry's Authorization header
          ...(sameOrigin ? { agent: this.agent } : {}),
          ...(url.protocol === 'https:'
            ? { ca: this.settings.caPem, rejectUnauthorized: !this.settings.skipServerVerification }
            : {}),
          headers: {
            'user-agent': this.settings.userAgent ?? 'serverless-imagebuilder',
            ...(options.headers ?? {}),
            ...(Buffer.isBuffer(body) ? { 'content-length': body.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          const max = options.maxBody ?? MAX_MANIFEST_BYTES;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > max) {
              res.destroy(
                new OciRegistryError(`${method} ${url.pathname}: response larger than ${max} bytes`),
              );
              return;
            }
            chunks.push(c);
          });
          res.on(
            'end',
            done(() =>
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
            ),
          );
          res.on('error', done(reject));
        },
      );
      req.on('timeout', () => req.destroy(new OciRegistryError(`${method} ${url.pathname}: timed out`)));
      req.on('error', done(reject));
      if (body === undefined || Buffer.isBuffer(body)) {
        req.end(body);
      } else {
        pipeline(body, req).catch((err: Error) => req.destroy(err));
      }
    });
  }

  private async authorization(scope: string | undefined): Promise<string | undefined> {
    const { username, password } = this.settings;
    const c = this.challenge;
    if (!c) return undefined;
    if (c.scheme === 'basic') {
      if (username === undefined) return undefined;
      return `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
    }
    const key = scope ?? c.scope ?? '';
    const cached = this.tokens.get(key);
    if (cached && cached.expires > Date.now()) return `Bearer ${cached.token}`;
    const url = new URL(c.realm);
    if (c.service) url.searchParams.set('service', c.service);
    if (key) url.searchParams.set('scope', key);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (username !== undefined) {
      headers.authorization = `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
    }
    let res: HttpResponse;
    try {
      res = await this.send('GET', url, { headers, maxBody: 1024 * 1024 });
    } catch (err) {
      throw new OciRegistryError(`token endpoint ${url.origin}${url.pathname}: ${(err as Error).message}`);
    }
    if (res.status !== 200) {
      throw new OciRegistryError(
        `token endpoint ${url.origin}${url.pathname} answered ${res.status}: check the registry credentials`,
        res.status === 401 || res.status === 403 ? 401 : res.status,
      );
    }
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new OciRegistryError(`token endpoint ${url.origin}${url.pathname} did not answer JSON`);
    }
    const token = parsed.token ?? parsed.access_token;
    if (!token) throw new OciRegistryError(`token endpoint ${url.origin}${url.pathname} gave no token`);
    const lifetime = Math.max(30, parsed.expires_in ?? 60);
    this.tokens.set(key, { token, expires: Date.now() + (lifetime - 10) * 1000 });
    return `Bearer ${token}`;
  }

  /** One request with auth: on 401, learns the challenge (or renews the token) and retries once. */
  private async request(
    method: string,
    target: string | URL,
    options: RequestOptions = {},
  ): Promise<HttpResponse> {
    let url = typeof target === 'string' ? new URL(target, this.base) : target;
    for (let attempt = 0, redirects = 0; ; ) {
      const auth = url.origin === this.base.origin ? await this.authorization(options.scope) : undefined;
      const body = typeof options.body === 'function' ? await options.body() : options.body;
      let res: HttpResponse;
      try {
        res = await this.send(
          method,
          url,
          { ...options, headers: { ...(options.headers ?? {}), ...(auth ? { authorization: auth } : {}) } },
          body,
        );
      } catch (err) {
        if (err instanceof OciRegistryError) throw err;
        throw new OciRegistryError(`${method} ${url.origin}${url.pathname}: ${(err as Error).message}`);
      }
      if (res.status === 401 && attempt === 0 && url.origin === this.base.origin) {
        attempt++;
        const challenge = parseChallenge(header(res.headers, 'www-authenticate'));
        if (!challenge) throw this.failure(method, url, res);
        if (challenge.scheme === 'basic' && this.settings.username === undefined)
          throw this.failure(method, url, res);
        this.challenge = challenge;
        this.tokens.delete(options.scope ?? (challenge.scheme === 'bearer' ? (challenge.scope ?? '') : ''));
        continue;
      }
      if (options.follow && [301, 302, 303, 307, 308].includes(res.status) && redirects < 5) {
        const location = header(res.headers, 'location');
        if (!location) return res;
        const next = new URL(location, url);
        if (url.protocol === 'https:' && next.protocol !== 'https:') {
          throw new OciRegistryError(
            `${method} ${url.origin}${url.pathname}: redirect to ${next.protocol} refused`,
          );
        }
        url = next;
        redirects++;
        continue;
      }
      return res;
    }
  }

  private failure(method: string, url: URL, res: HttpResponse, what?: string): OciRegistryError {
    let code: string | undefined;
    let message = '';
    try {
      const parsed = JSON.parse(res.body.toString('utf8')) as {
        errors?: Array<{ code?: string; message?: string }>;
      };
      code = parsed.errors?.[0]?.code;
      message = parsed.errors?.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ') ?? '';
    } catch {
      message = res.body
        .toString('utf8')
        .slice(0, 200)
        .replace(/[^\x20-\x7e]/g, '?');
    }
    const advice =
      res.status === 401
        ? ' (the registry rejected the credentials)'
        : res.status === 403
          ? ' (the credentials are not allowed to do this)'
          : '';
    return new OciRegistryError(
      `${what ?? `${method} ${url.pathname}`}: ${res.status}${message ? ` ${message}` : ''}${advice}`,
      res.status,
      code,
    );
  }

  private path(repository: string, kind: 'blobs' | 'manifests' | 'referrers', ref = ''): string {
    if (!REPOSITORY_RE.test(repository) || repository.length > 255) {
      throw new OciRegistryError(`not a repository name: '${repository}'`);
    }
    return `/v2/${repository}/${kind}/${ref}`;
  }

  private static checkRef(ref: string): void {
    if (!DIGEST_RE.test(ref) && !TAG_RE.test(ref))
      throw new OciRegistryError(`not a tag or digest: '${ref}'`);
  }

  // ---- blobs -----------------------------------------------------------------------------------

  async blobExists(repository: string, digest: string): Promise<boolean> {
    if (!DIGEST_RE.test(digest)) throw new OciRegistryError(`not a sha256 digest: '${digest}'`);
    const url = new URL(this.path(repository, 'blobs', digest), this.base);
    const res = await this.request('HEAD', url, { scope: `repository:${repository}:pull` });
    if (res.status === 200 || (res.status >= 300 && res.status < 400)) return true;
    if (res.status === 404) return false;
    throw this.failure('HEAD', url, res);
  }

  /** Uploads a blob unless the repository has it already; returns its descriptor. */
  async pushBlob(repository: string, content: BlobContent, mediaType: string): Promise<Descriptor> {
    const { digest, size, open } = await describeContent(content);
    const descriptor = { mediaType, digest, size };
    if (await this.blobExists(repository, digest)) return descriptor;
    const scope = `repository:${repository}:pull,push`;
    const start = new URL(this.path(repository, 'blobs', 'uploads/'), this.base);
    const started = await this.request('POST', start, { scope, body: Buffer.alloc(0) });
    const location = header(started.headers, 'location');
    if (started.status !== 202 || !location)
      throw this.failure('POST', start, started, `starting the upload of ${digest}`);
    const url = new URL(location, this.base);
    // The upload goes to the registry itself: a Location elsewhere would make this step write the
    // export's bytes wherever a tenant's registry says (another org's object, an internal service).
    if (url.origin !== this.base.origin) {
      throw new OciRegistryError(
        `starting the upload of ${digest}: the registry's upload location ${url.origin} is not the registry ${this.base.origin}: refused`,
      );
    }
    url.searchParams.set('digest', digest);
    const put = await this.request('PUT', url, {
      scope,
      headers: { 'content-type': 'application/octet-stream', 'content-length': size },
      body: open,
    });
    if (put.status !== 201) throw this.failure('PUT', url, put, `uploading ${digest}`);
    const stored = header(put.headers, 'docker-content-digest');
    if (stored && stored !== digest) {
      throw new OciRegistryError(`uploading ${digest}: the registry stored ${stored} instead`);
    }
    return descriptor;
  }

  // ---- manifests -------------------------------------------------------------------------------

  /** The manifest or index at `reference`; undefined when the registry has none (404). */
  async getManifest(
    repository: string,
    reference: string,
  ): Promise<{ body: Buffer; mediaType: string; digest: string } | undefined> {
    OciRegistry.checkRef(reference);
    const url = new URL(this.path(repository, 'manifests', reference), this.base);
    const res = await this.request('GET', url, {
      scope: `repository:${repository}:pull`,
      headers: { accept: MANIFEST_ACCEPT },
      follow: true,
    });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw this.failure('GET', url, res);
    const digest = sha256(res.body);
    if (DIGEST_RE.test(reference) && digest !== reference) {
      throw new OciRegistryError(`manifest ${reference}: the registry served content of digest ${digest}`);
    }
    let mediaType = (header(res.headers, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
    try {
      mediaType = (JSON.parse(res.body.toString('utf8')) as { mediaType?: string }).mediaType ?? mediaType;
    } catch {
      throw new OciRegistryError(`manifest ${reference} is not JSON`);
    }
    return { body: res.body, mediaType, digest };
  }

  /** PUTs a manifest (by tag or by its digest); returns its digest and whether `subject` was processed. */
  async putManifest(
    repository: string,
    reference: string,
    body: Buffer,
    mediaType: string,
  ): Promise<{ digest: string; subjectProcessed: boolean }> {
    OciRegistry.checkRef(reference);
    const digest = sha256(body);
    if (DIGEST_RE.test(reference) && reference !== digest) {
      throw new OciRegistryError(`manifest PUT by digest ${reference}, but its content is ${digest}`);
    }
    const url = new URL(this.path(repository, 'manifests', reference), this.base);
    const res = await this.request('PUT', url, {
      scope: `repository:${repository}:pull,push`,
      headers: { 'content-type': mediaType },
      body,
    });
    if (res.status !== 201) throw this.failure('PUT', url, res, `pushing manifest ${reference}`);
    const stored = header(res.headers, 'docker-content-digest');
    if (stored && stored !== digest) {
      throw new OciRegistryError(
        `pushing manifest ${reference}: the registry stored ${stored}, not ${digest}`,
      );
    }
    return { digest, subjectProcessed: header(res.headers, 'oci-subject') !== undefined };
  }

  // ---- referrers -------------------------------------------------------------------------------

  /**
   * Manifests whose `subject` is `subjectDigest` (optionally of one artifactType): the referrers API, or
   * when the registry has none (404) the fallback index at tag `sha256-<hex>`.
   */
  async referrers(repository: string, subjectDigest: string, artifactType?: string): Promise<Descriptor[]> {
    if (!DIGEST_RE.test(subjectDigest)) throw new OciRegistryError(`not a sha256 digest: '${subjectDigest}'`);
    const filter = (list: Descriptor[]) =>
      artifactType === undefined ? list : list.filter((d) => d.artifactType === artifactType);
    let url: URL | undefined = new URL(this.path(repository, 'referrers', subjectDigest), this.base);
    if (artifactType !== undefined) url.searchParams.set('artifactType', artifactType);
    const found: Descriptor[] = [];
    for (let page = 0; url && page < 20; page++) {
      const res = await this.request('GET', url, {
        scope: `repository:${repository}:pull`,
        headers: { accept: OCI_INDEX },
        follow: true,
      });
      if (res.status === 404 && page === 0)
        return filter((await this.fallbackIndex(repository, subjectDigest)).manifests);
      if (res.status !== 200)
        throw this.failure('GET', url, res, `listing the referrers of ${subjectDigest}`);
      found.push(...parseIndex(res.body, `referrers of ${subjectDigest}`).manifests);
      const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header(res.headers, 'link') ?? '');
      url = next?.[1] ? new URL(next[1], url) : undefined;
    }
    return filter(found);
  }

  private async fallbackIndex(
    repository: string,
    subjectDigest: string,
  ): Promise<{ manifests: Descriptor[] }> {
    const current = await this.getManifest(repository, referrersTag(subjectDigest));
    if (!current) return { manifests: [] };
    return parseIndex(current.body, `the referrers index ${referrersTag(subjectDigest)}`);
  }

  /** Adds `descriptor` to the fallback index of `subjectDigest` (once; re-read to survive a racing writer). */
  private async addToFallbackIndex(
    repository: string,
    subjectDigest: string,
    descriptor: Descriptor,
  ): Promise<string> {
    const tag = referrersTag(subjectDigest);
    for (let attempt = 0; attempt < 5; attempt++) {
      const index = await this.fallbackIndex(repository, subjectDigest);
      if (index.manifests.some((m) => m.digest === descriptor.digest)) return tag;
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [...index.manifests, descriptor],
        }),
      );
      await this.putManifest(repository, tag, body, OCI_INDEX);
      const check = await this.fallbackIndex(repository, subjectDigest);
      if (check.manifests.some((m) => m.digest === descriptor.digest)) return tag;
      await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
    }
    throw new OciRegistryError(`could not record ${descriptor.digest} in the referrers index ${tag}`);
  }

  /**
   * PUTs a manifest that has a `subject` and, unless the registry processed the subject itself, records
   * it in the fallback referrers index.
   */
  async pushManifestWithSubject(
    repository: string,
    manifest: Record<string, unknown> & { subject: Descriptor; mediaType: string },
    tag?: string,
  ): Promise<PushedManifest> {
    const body = Buffer.from(JSON.stringify(manifest));
    const digest = sha256(body);
    const put = await this.putManifest(repository, tag ?? digest, body, manifest.mediaType);
    const pushed = {
      digest,
      size: body.length,
      mediaType: manifest.mediaType,
      referrersApi: put.subjectProcessed,
    };
    if (put.subjectProcessed) return pushed;
    const descriptor: Descriptor = {
      mediaType: manifest.mediaType,
      digest,
      size: body.length,
      ...(typeof manifest.artifactType === 'string' ? { artifactType: manifest.artifactType } : {}),
      ...(manifest.annotations ? { annotations: manifest.annotations as Record<string, string> } : {}),
    };
    const fallbackTag = await this.addToFallbackIndex(repository, manifest.subject.digest, descriptor);
    return { ...pushed, fallbackTag };
  }

  // ---- artifacts -------------------------------------------------------------------------------

  /** Pushes `file` as an artifact of `artifactType` whose subject is the given manifest (ORAS style). */
  async pushArtifact(input: PushArtifactInput): Promise<PushedManifest> {
    checkDescriptor(input.subject, 'subject');
    if (input.tag !== undefined) OciRegistry.checkRef(input.tag);
    await this.pushBlob(input.repository, { bytes: '{}' }, OCI_EMPTY);
    const layer = await this.pushBlob(input.repository, input.file, input.file.mediaType);
    const title = 'path' in input.file ? basename(input.file.path) : undefined;
    const layerAnnotations = {
      ...(title ? { [TITLE_ANNOTATION]: title } : {}),
      ...(input.file.annotations ?? {}),
    };
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: input.artifactType,
      config: EMPTY_DESCRIPTOR,
      layers: [
        { ...layer, ...(Object.keys(layerAnnotations).length ? { annotations: layerAnnotations } : {}) },
      ],
      subject: subjectOf(input.subject),
      ...(input.annotations && Object.keys(input.annotations).length
        ? { annotations: input.annotations }
        : {}),
    };
    return this.pushManifestWithSubject(input.repository, manifest, input.tag);
  }

  /**
   * Pushes a KubeVirt containerdisk: an image of one uncompressed layer holding `disk/<diskName>` (owned
   * by 107:107, qemu in the virt-launcher) and `tag`; with a subject it is also a referrer of it.
   */
  async pushContainerDisk(input: {
    repository: string;
    tag: string;
    disk: { path: string } | { open: () => Readable | Promise<Readable>; size: number };
    diskName?: string;
    architecture: 'amd64' | 'arm64';
    subject?: Descriptor;
    annotations?: Record<string, string>;
  }): Promise<PushedManifest> {
    OciRegistry.checkRef(input.tag);
    if (input.subject) checkDescriptor(input.subject, 'subject');
    const diskName = input.diskName ?? 'disk.qcow2';
    if (!/^[A-Za-z0-9._-]{1,90}$/.test(diskName))
      throw new OciRegistryError(`not a disk file name: '${diskName}'`);
    const size = 'path' in input.disk ? (await stat(input.disk.path)).size : input.disk.size;
    const openDisk =
      'path' in input.disk ? () => createReadStream((input.disk as { path: string }).path) : input.disk.open;
    const head = Buffer.concat([
      tarHeader({ name: 'disk/', mode: 0o555, uid: 107, gid: 107, size: 0, type: '5' }),
      tarHeader({ name: `disk/${diskName}`, mode: 0o440, uid: 107, gid: 107, size, type: '0' }),
    ]);
    const tail = Buffer.alloc(((512 - (size % 512)) % 512) + 1024);
    const open = async () => concatStreams([head, await openDisk(), tail]);
    const tarSize = head.length + size + tail.length;
    const hash = createHash('sha256');
    for await (const chunk of await open()) hash.update(chunk as Buffer);
    const layerDigest = `sha256:${hash.digest('hex')}`;
    const layer = await this.pushBlob(
      input.repository,
      { open, size: tarSize, digest: layerDigest },
      OCI_LAYER_TAR,
    );
    const config = await this.pushBlob(
      input.repository,
      {
        bytes: JSON.stringify({
          architecture: input.architecture,
          os: 'linux',
          rootfs: { type: 'layers', diff_ids: [layerDigest] },
          config: {},
        }),
      },
      OCI_CONFIG,
    );
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers: [layer],
      ...(input.subject ? { subject: subjectOf(input.subject) } : {}),
      ...(input.annotations && Object.keys(input.annotations).length
        ? { annotations: input.annotations }
        : {}),
    };
    if (input.subject) {
      return this.pushManifestWithSubject(
        input.repository,
        manifest as typeof manifest & { subject: Descriptor },
        input.tag,
      );
    }
    const body = Buffer.from(JSON.stringify(manifest));
    const put = await this.putManifest(input.repository, input.tag, body, OCI_MANIFEST);
    return { digest: put.digest, size: body.length, mediaType: OCI_MANIFEST, referrersApi: false };
  }
}

// ---- helpers --------------------------------------------------------------------------------------

function checkDescriptor(d: Descriptor, what: string): void {
  if (!DIGEST_RE.test(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0 || !d.mediaType) {
    throw new OciRegistryError(`${what} must be a descriptor {mediaType, sha256 digest, size}`);
  }
}

const subjectOf = (d: Descriptor): Descriptor => ({ mediaType: d.mediaType, digest: d.digest, size: d.size });

function parseIndex(body: Buffer, what: string): { manifests: Descriptor[] } {
  let parsed: { manifests?: unknown };
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new OciRegistryError(`${what} is not JSON`);
  }
  if (!Array.isArray(parsed.manifests)) throw new OciRegistryError(`${what} is not an image index`);
  return { manifests: parsed.manifests as Descriptor[] };
}

/** Digest and size of content, and a way to (re)open it as a stream. */
async function describeContent(
  content: BlobContent,
): Promise<{ digest: string; size: number; open: () => Readable | Promise<Readable> }> {
  if ('bytes' in content) {
    const bytes = Buffer.from(content.bytes);
    return { digest: sha256(bytes), size: bytes.length, open: () => Readable.from([bytes]) };
  }
  if ('path' in content) {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(content.path)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { digest: `sha256:${hash.digest('hex')}`, size, open: () => createReadStream(content.path) };
  }
  if (!DIGEST_RE.test(content.digest) || !Number.isSafeInteger(content.size) || content.size < 0) {
    throw new OciRegistryError('blob content needs a sha256 digest and a size');
  }
  return content;
}

function concatStreams(parts: Array<Buffer | Readable>): Readable {
  return Readable.from(
    (async function* () {
      for (const part of parts) {
        if (Buffer.isBuffer(part)) yield part;
        else for await (const chunk of part) yield chunk as Buffer;
      }
    })(),
  );
}

/** One ustar header block; sizes of 8 GiB and more in base-256 (GNU / POSIX.1-2001 readers accept it). */
export function tarHeader(entry: {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  type: '0' | '5';
  mtime?: number;
}): Buffer {
  const block = Buffer.alloc(512);
  const name = Buffer.from(entry.name, 'utf8');
  if (name.length > 100) throw new OciRegistryError(`tar entry name too long: ${entry.name}`);
  name.copy(block, 0);
  const octal = (value: number, offset: number, width: number) =>
    block.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'ascii');
  octal(entry.mode, 100, 8);
  octal(entry.uid, 108, 8);
  octal(entry.gid, 116, 8);
  if (entry.size < 8 ** 11) {
    octal(entry.size, 124, 12);
  } else {
    block[124] = 0x80;
    let v = BigInt(entry.size);
    for (let i = 135; i > 124; i--) {
      block[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  octal(entry.mtime ?? 0, 136, 12);
  block.write(entry.type, 156, 1, 'ascii');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return block;
}
