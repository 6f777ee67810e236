// The S3 adapter against s3rver (a real S3 API): multipart upload with SHA-256, presigned download.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../functions/commons/adapters/s3-objects.js';
import { LOCAL_S3_CREDENTIALS, type LocalS3, startS3Local } from '../../functions/local/s3-local.js';

let s3: LocalS3;
let dir: string;
let store: S3ObjectStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ib-s3-'));
  s3 = await startS3Local({ directory: join(dir, 's3'), buckets: ['b'] });
  store = new S3ObjectStore({
    bucket: 'b',
    endpoint: s3.endpoint,
    region: 'us-east-1',
    credentials: LOCAL_S3_CREDENTIALS,
  });
});
afterAll(async () => {
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('S3ObjectStore', () => {
  it('uploads a 40 MiB file in 16 MiB parts; size and SHA-256 match; presigned GET serves it as an attachment', async () => {
    const data = randomBytes(40 * 1024 * 1024 + 123);
    const file = join(dir, 'disk.qcow2');
    await writeFile(file, data);
    const out = await store.putFile('artifacts/o/u/disk.qcow2', file, 'application/x-qemu-disk');
    expect(out).toEqual({ size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    const url = await store.presignGet('artifacts/o/u/disk.qcow2', 900, 'edge-os-x86_64.qcow2');
    expect(new URL(url).searchParams.get('X-Amz-Expires')).toBe('900');
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="edge-os-x86_64.qcow2"');
    expect(Buffer.from(await res.arrayBuffer()).equals(data)).toBe(true);
    // s3rver checks a presigned URL's access key but not its signature; the key is what it can refuse.
    const signed = new URL(url);
    signed.searchParams.set(
      'X-Amz-Credential',
      (signed.searchParams.get('X-Amz-Credential') ?? '').replace('S3RVER', 'NOBODY'),
    );
    expect((await fetch(signed)).status).toBe(403);
    await store.deleteObject('artifacts/o/u/disk.qcow2');
    expect(await store.get('artifacts/o/u/disk.qcow2')).toBeUndefined();
  });

  it('uploads an empty file and a file smaller than one part', async () => {
    for (const size of [0, 1000]) {
      const data = randomBytes(size);
      const file = join(dir, `f${size}`);
      await writeFile(file, data);
      const out = await store.putFile(`k${size}`, file, 'application/octet-stream');
      expect(out.size).toBe(size);
      expect(Buffer.from((await store.get(`k${size}`)) ?? []).equals(data)).toBe(true);
    }
  });
});
