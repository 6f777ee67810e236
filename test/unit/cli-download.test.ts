// The CLI's download in-process, against a fake API on 127.0.0.1 (the real download endpoint is built
// separately; this fake follows CONTRACT §2: a 307 to a "presigned" URL that honours Range): resume
// of an earlier run's FILE.partial, a server that ignores Range, giving up after 5 attempts, and a
// complete leftover that only needs verifying.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../bin/cli/client.js';
import { downloadExport } from '../../bin/cli/download.js';
import { CliError } from '../../bin/cli/errors.js';

const content = randomBytes(256 * 1024);
const sha256 = createHash('sha256').update(content).digest('hex');
/** name → behaviour of the artifact URL */
const MODES: Record<string, 'range' | 'ignore-range' | 'always-cut'> = {
  ok: 'range',
  norange: 'ignore-range',
  flaky: 'always-cut',
};
let server: Server;
let client: ApiClient;
let dir: string;
const blobRequests: { name: string; range?: string }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ib-cli-dl-'));
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const api = /^\/api\/v1\/imageexports\/([^/]+)(\/download)?$/.exec(url.pathname);
    if (api) {
      const name = api[1]!;
      if (api[2]) {
        // Named like S3 presigned URLs do it (and the product's own presignGet).
        const disposition = encodeURIComponent(`attachment; filename="${name}.raw"`);
        res.writeHead(307, { location: `/blob/${name}?response-content-disposition=${disposition}` });
        return res.end();
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          metadata: { name },
          spec: { source: { type: 'imageBuild', imageBuildRef: 'b' }, format: 'raw' },
          status: { artifact: { size: content.length, sha256: `sha256:${sha256}` } },
        }),
      );
    }
    const name = url.pathname.slice('/blob/'.length);
    blobRequests.push({ name, range: req.headers.range });
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    if (MODES[name] === 'always-cut') {
      // Honours Range, but every response breaks off 1000 bytes in.
      res.writeHead(start > 0 ? 206 : 200, {
        'content-length': content.length - start,
        ...(start > 0 ? { 'content-range': `bytes ${start}-${content.length - 1}/${content.length}` } : {}),
      });
      res.write(content.subarray(start, start + 1000), () => res.socket?.destroy());
      return;
    }
    if (MODES[name] === 'range' && start > 0) {
      res.writeHead(206, { 'content-range': `bytes ${start}-${content.length - 1}/${content.length}` });
      return res.end(content.subarray(start));
    }
    res.writeHead(200, { 'content-length': content.length });
    res.end(content);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  client = new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 't');
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

const notices: string[] = [];
const opts = (file: string) => ({
  file: join(dir, file),
  notice: (m: string) => notices.push(m),
  retryDelayMs: 1,
});

describe('download', () => {
  it("resumes an earlier run's shorter FILE.partial with Range, verifies, renames", async () => {
    await writeFile(join(dir, 'a.raw.partial'), content.subarray(0, 100_000));
    const r = await downloadExport(client, 'ok', opts('a.raw'));
    expect(r).toMatchObject({ size: content.length, sha256, verified: true });
    expect((await readFile(join(dir, 'a.raw'))).equals(content)).toBe(true);
    expect(blobRequests.at(-1)).toEqual({ name: 'ok', range: 'bytes=100000-' });
    expect(notices.at(-1)).toMatch(/^resuming .*a\.raw\.partial at 97\.7 KiB$/);
  });

  it('starts over when the server ignores Range (200)', async () => {
    await writeFile(join(dir, 'b.raw.partial'), Buffer.alloc(5000, 1));
    await downloadExport(client, 'norange', opts('b.raw'));
    expect((await readFile(join(dir, 'b.raw'))).equals(content)).toBe(true);
  });

  it('a complete leftover only needs verifying; without FILE the presigned URL names the file', async () => {
    await writeFile(join(dir, 'c.raw.partial'), content);
    const before = blobRequests.length;
    await downloadExport(client, 'ok', opts('c.raw'));
    expect(blobRequests.length).toBe(before);
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expect((await downloadExport(client, 'ok', { notice: () => undefined })).file).toBe('ok.raw');
    } finally {
      process.chdir(cwd);
    }
  });

  it('gives up after 5 attempts (exit 1), keeping FILE.partial', async () => {
    const before = blobRequests.length;
    const err = await downloadExport(client, 'flaky', opts('d.raw')).catch((e) => e);
    expect(err).toBeInstanceOf(CliError);
    expect(err.exitCode).toBe(1);
    expect(err.message).toMatch(/^download failed after 5 attempts: /);
    // Each attempt asks for the rest of what reached the disk.
    const ranges = blobRequests
      .slice(before)
      .map((r) => Number(/^bytes=(\d+)-$/.exec(r.range ?? '')?.[1] ?? 0));
    expect(ranges).toHaveLength(5);
    expect(ranges[0]).toBe(0);
    expect(ranges).toEqual([...ranges].sort((x, y) => x - y));
    const partial = await readFile(join(dir, 'd.raw.partial'));
    expect(partial.length).toBeLessThanOrEqual(5000);
    expect(partial.equals(content.subarray(0, partial.length))).toBe(true);
    await expect(stat(join(dir, 'd.raw'))).rejects.toThrow();
  });
});
