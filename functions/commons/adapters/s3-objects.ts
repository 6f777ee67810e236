// ObjectStore on S3 (and on s3rver locally: same code, path-style addressing), signed by aws4fetch.
import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { AwsClient } from 'aws4fetch';
import type { ObjectStore } from '../ports.js';
import type { AwsCredentials } from './aws-json.js';

export interface S3Options {
  bucket: string;
  region?: string;
  /** e.g. http://127.0.0.1:4569 for s3rver; path-style addressing is used when set. */
  endpoint?: string;
  credentials?: AwsCredentials;
}

const encodeKey = (key: string) => key.split('/').map(encodeURIComponent).join('/');

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  private client?: AwsClient;
  private readonly base: string;

  constructor(private readonly opts: S3Options) {
    this.bucket = opts.bucket;
    const region = opts.region ?? process.env.AWS_REGION ?? 'us-east-1';
    this.base = opts.endpoint
      ? `${opts.endpoint.replace(/\/$/, '')}/${opts.bucket}`
      : `https://${opts.bucket}.s3.${region}.amazonaws.com`;
  }

  private signer(): AwsClient {
    if (!this.client) {
      const creds = this.opts.credentials ?? {
        accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '',
        secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '',
        ...(process.env.AWS_SESSION_TOKEN ? { sessionToken: process.env.AWS_SESSION_TOKEN } : {}),
      };
      this.client = new AwsClient({
        ...creds,
        service: 's3',
        region: this.opts.region ?? process.env.AWS_REGION ?? 'us-east-1',
        retries: 3,
      });
    }
    return this.client;
  }

  private async request(
    method: string,
    path: string,
    body?: string | Uint8Array,
    headers: Record<string, string> = {},
  ) {
    const res = await this.signer().fetch(`${this.base}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body } : {}),
    });
    return res;
  }

  async put(key: string, body: string | Uint8Array, contentType = 'application/octet-stream'): Promise<void> {
    const res = await this.request('PUT', `/${encodeKey(key)}`, body, { 'content-type': contentType });
    if (!res.ok) throw new Error(`S3 PUT ${key}: ${res.status} ${(await res.text()).slice(0, 300)}`);
    await res.arrayBuffer();
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const res = await this.request('GET', `/${encodeKey(key)}`);
    if (res.status === 404) {
      await res.arrayBuffer();
      return undefined;
    }
    if (!res.ok) throw new Error(`S3 GET ${key}: ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  async openRead(key: string): Promise<NodeJS.ReadableStream> {
    const res = await this.request('GET', `/${encodeKey(key)}`);
    if (!res.ok || !res.body) throw new Error(`S3 GET ${key}: ${res.status}`);
    return Readable.fromWeb(res.body as never);
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const q = new URLSearchParams({
        'list-type': '2',
        prefix,
        ...(token ? { 'continuation-token': token } : {}),
      });
      const res = await this.request('GET', `/?${q}`);
      const xml = await res.text();
      if (!res.ok) throw new Error(`S3 LIST ${prefix}: ${res.status} ${xml.slice(0, 300)}`);
      for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(unescapeXml(m[1] as string));
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml)
        ? unescapeXml(/<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1] ?? '')
        : undefined;
    } while (token);
    return keys;
  }

  /** A presigned GET (SigV4 query signing), valid `expiresSeconds`, with the download's file name. */
  async presignGet(key: string, expiresSeconds: number, fileName?: string): Promise<string> {
    return this.presign('GET', key, expiresSeconds, fileName);
  }

  /** A presigned PUT of one object (SigV4 query signing, unsigned payload), valid `expiresSeconds`. */
  async presignPut(key: string, expiresSeconds: number): Promise<string> {
    return this.presign('PUT', key, expiresSeconds);
  }

  private async presign(method: string, key: string, expiresSeconds: number, fileName?: string) {
    const url = new URL(`${this.base}/${encodeKey(key)}`);
    url.searchParams.set('X-Amz-Expires', String(expiresSeconds));
    if (fileName) {
      url.searchParams.set(
        'response-content-disposition',
        `attachment; filename="${fileName.replace(/["\\]/g, '_')}"`,
      );
    }
    const signed = await this.signer().sign(url.toString(), { method, aws: { signQuery: true } });
    return signed.url;
  }

  /**
   * Uploads a file with S3 multipart upload (parts of `partBytes`, several in flight), or one PUT when it
   * fits in one part, and returns its size and SHA-256, computed while reading, so the file is read once.
   */
  async putFile(
    key: string,
    path: string,
    contentType: string,
    partBytes = 16 * 1024 * 1024,
    concurrency = 4,
  ) {
    // Like `aws s3 cp` (multipart_threshold): a file that fits in one part goes in one PUT, not three
    // requests (create, one part, complete).
    const { size: fileSize } = await stat(path);
    if (fileSize <= partBytes) {
      const body = await readFile(path);
      await this.put(key, body, contentType);
      return { size: body.length, sha256: createHash('sha256').update(body).digest('hex') };
    }
    const created = await this.request('POST', `/${encodeKey(key)}?uploads`, undefined, {
      'content-type': contentType,
    });
    const xml = await created.text();
    if (!created.ok)
      throw new Error(`S3 CreateMultipartUpload ${key}: ${created.status} ${xml.slice(0, 300)}`);
    const uploadId = unescapeXml(/<UploadId>([^<]*)<\/UploadId>/.exec(xml)?.[1] ?? '');
    const hash = createHash('sha256');
    const etags: string[] = [];
    const inFlight = new Set<Promise<void>>();
    let size = 0;
    const fh = await open(path, 'r');
    try {
      for (let part = 1; ; part++) {
        const buf = Buffer.alloc(partBytes);
        const { bytesRead } = await fh.read(buf, 0, partBytes, null);
        if (bytesRead === 0 && part > 1) break;
        const chunk = buf.subarray(0, bytesRead);
        hash.update(chunk);
        size += bytesRead;
        const upload = (async () => {
          const q = `?partNumber=${part}&uploadId=${encodeURIComponent(uploadId)}`;
          const res = await this.request('PUT', `/${encodeKey(key)}${q}`, chunk);
          await res.arrayBuffer();
          if (!res.ok) throw new Error(`S3 UploadPart ${part} of ${key}: ${res.status}`);
          etags[part - 1] = res.headers.get('etag') ?? '';
        })();
        inFlight.add(upload);
        upload.finally(() => inFlight.delete(upload)).catch(() => undefined);
        if (inFlight.size >= concurrency) await Promise.race(inFlight);
        if (bytesRead < partBytes) break;
      }
      await Promise.all(inFlight);
    } catch (err) {
      await this.request('DELETE', `/${encodeKey(key)}?uploadId=${encodeURIComponent(uploadId)}`).then((r) =>
        r.arrayBuffer(),
      );
      throw err;
    } finally {
      await fh.close();
    }
    const body = `<CompleteMultipartUpload>${etags
      .map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`)
      .join('')}</CompleteMultipartUpload>`;
    const done = await this.request(
      'POST',
      `/${encodeKey(key)}?uploadId=${encodeURIComponent(uploadId)}`,
      body,
      {
        'content-type': 'application/xml',
      },
    );
    const doneXml = await done.text();
    if (!done.ok || doneXml.includes('<Error>'))
      throw new Error(`S3 CompleteMultipartUpload ${key}: ${done.status} ${doneXml.slice(0, 300)}`);
    return { size, sha256: hash.digest('hex') };
  }

  async deleteObject(key: string): Promise<void> {
    const res = await this.request('DELETE', `/${encodeKey(key)}`);
    await res.arrayBuffer();
    if (!res.ok && res.status !== 404) throw new Error(`S3 DELETE ${key}: ${res.status}`);
  }

  async deletePrefix(prefix: string): Promise<void> {
    for (const key of await this.list(prefix)) {
      const res = await this.request('DELETE', `/${encodeKey(key)}`);
      await res.arrayBuffer();
      if (!res.ok && res.status !== 404) throw new Error(`S3 DELETE ${key}: ${res.status}`);
    }
  }
}

function unescapeXml(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}
