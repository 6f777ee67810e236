// `download imageexport/NAME [FILE]`: asks the API for the artifact (a redirect to a short-lived presigned
// URL), streams it into FILE.partial, resumes with `Range: bytes=N-` after an interruption (a fresh URL
// per attempt, up to 5 attempts), verifies the SHA-256 of status.artifact.sha256 and renames it to FILE.
// A mismatch keeps FILE.partial and exits 3. A later run resumes a shorter FILE.partial.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat, truncate } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { type ApiClient, errorFromResponse } from './client.js';
import { CliError, EXIT } from './errors.js';
import { resourcePath } from './kinds.js';
import type { Resource } from './types.js';

const EXTENSION: Record<string, string> = {
  qcow2: 'qcow2',
  'qcow2-disk-container': 'qcow2',
  vmdk: 'vmdk',
  iso: 'iso',
  'anaconda-iso': 'iso',
  raw: 'raw',
  vhd: 'vhd',
  gce: 'tar.gz',
  ami: 'raw',
};

/** `<build>-<arch>.<ext>`, the name when neither FILE nor Content-Disposition gives one. */
export function defaultFileName(exp: Resource): string {
  const build = String(exp.spec?.source?.imageBuildRef ?? exp.metadata.name);
  const arch = String(exp.spec?.architecture ?? exp.status?.architecture ?? 'x86_64');
  const format = String(exp.spec?.format ?? 'raw');
  return `${build}-${arch}.${EXTENSION[format] ?? format}`;
}

/** The file name of a Content-Disposition value (filename* first), reduced to a safe base name. */
export function fileNameFromDisposition(value: string | null | undefined): string | undefined {
  if (!value) return undefined;
  let name: string | undefined;
  const star = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(value);
  if (star?.[2]) {
    try {
      name = decodeURIComponent(star[2].trim());
    } catch {
      name = undefined;
    }
  }
  if (!name) {
    const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(value);
    name = plain?.[1]?.replace(/\\(.)/g, '$1') ?? plain?.[2];
  }
  if (!name) return undefined;
  const base = basename(name.replace(/\\/g, '/'));
  return base && base !== '.' && base !== '..' ? base : undefined;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

export const humanBytes = (n: number): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
};

interface Progress {
  start(total: number, value: number): void;
  update(value: number): void;
  stop(): void;
}

async function progressBar(stream: NodeJS.WritableStream): Promise<Progress> {
  const { SingleBar, Presets } = (await import('cli-progress')).default;
  const bar = new SingleBar(
    {
      stream,
      format: ' {bar} {percentage}% | {done} / {size} | ETA {eta_formatted}',
      hideCursor: true,
      clearOnComplete: false,
    },
    Presets.shades_classic,
  );
  let running = false;
  return {
    start(total, value) {
      const payload = { done: humanBytes(value), size: humanBytes(total) };
      if (running) bar.update(value, payload);
      else bar.start(total, value, payload);
      running = true;
    },
    update(value) {
      if (running) bar.update(value, { done: humanBytes(value) });
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}

export interface DownloadOptions {
  /** FILE; else the name from Content-Disposition, else `<build>-<arch>.<ext>`. */
  file?: string;
  /** Show a progress bar on this stream (the CLI passes stderr when it is a TTY). */
  progressStream?: NodeJS.WritableStream;
  /** Notices (retries, resume) go here. */
  notice: (message: string) => void;
  attempts?: number;
  retryDelayMs?: number;
}

export interface DownloadResult {
  file: string;
  size: number;
  sha256: string;
  verified: boolean;
}

class Retryable extends Error {}

export async function downloadExport(
  client: ApiClient,
  name: string,
  opts: DownloadOptions,
): Promise<DownloadResult> {
  const path = resourcePath('ImageExport', name);
  const exp = await client.json<Resource>('GET', path);
  const artifact = (exp.status?.artifact ?? {}) as { sha256?: unknown; size?: unknown };
  const expectedSha =
    typeof artifact.sha256 === 'string' ? artifact.sha256.replace(/^sha256:/i, '').toLowerCase() : undefined;
  let expectedSize = typeof artifact.size === 'number' ? artifact.size : undefined;
  const attempts = opts.attempts ?? 5;
  const bar = opts.progressStream ? await progressBar(opts.progressStream) : undefined;
  let file = opts.file;
  let checkedLeftover = false;
  let lastError: Error | undefined;

  try {
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) {
        bar?.stop();
        opts.notice(
          `download interrupted (${lastError?.message}); retrying (attempt ${attempt} of ${attempts})`,
        );
        await new Promise((r) => setTimeout(r, (opts.retryDelayMs ?? 500) * (attempt - 1)));
      }
      try {
        // A fresh presigned URL each attempt: the previous one may have expired.
        const api = await client.raw('GET', `${path}/download`, { redirect: 'manual', timeoutMs: 30_000 });
        let location: URL | undefined;
        if (api.status >= 300 && api.status < 400) {
          const loc = api.headers.get('location');
          await api.body?.cancel();
          if (!loc) throw new CliError(`the server redirected without a Location (HTTP ${api.status})`);
          location = new URL(loc, client.server);
          file ??=
            fileNameFromDisposition(api.headers.get('content-disposition')) ??
            fileNameFromDisposition(location.searchParams.get('response-content-disposition'));
        } else if (api.status >= 500) {
          throw new Retryable((await errorFromResponse(api)).message);
        } else if (!api.ok) {
          throw await errorFromResponse(api);
        } else {
          await api.body?.cancel();
          throw new CliError(`expected a redirect to the artifact, got HTTP ${api.status}`);
        }

        // Resume what is already there (from this run, or a shorter leftover of an earlier one).
        let offset = file ? await sizeOf(`${file}.partial`) : 0;
        if (file && !checkedLeftover) {
          checkedLeftover = true;
          if (expectedSize !== undefined && offset >= expectedSize) {
            if (
              offset === expectedSize &&
              expectedSha &&
              (await sha256File(`${file}.partial`)) === expectedSha
            ) {
              return await finish(file, offset, expectedSha, true);
            }
            await truncate(`${file}.partial`, 0);
            offset = 0;
          } else if (offset > 0) {
            opts.notice(`resuming ${file}.partial at ${humanBytes(offset)}`);
          }
        }

        let res: Response;
        try {
          res = await fetch(location, { headers: offset > 0 ? { range: `bytes=${offset}-` } : {} });
        } catch (err) {
          throw new Retryable(networkMessage(err));
        }
        if (res.status === 416 && offset > 0) {
          await res.body?.cancel();
          expectedSize ??= offset;
          lastError = undefined;
          break; // the partial file already holds everything
        }
        if (!res.ok || !res.body) {
          await res.body?.cancel();
          // 403 is what an expired presigned URL answers.
          throw new Retryable(`HTTP ${res.status} from the artifact URL`);
        }
        let start = 0;
        let total: number | undefined;
        if (res.status === 206) {
          const range = /bytes\s+(\d+)-(\d+)\/(\d+|\*)/i.exec(res.headers.get('content-range') ?? '');
          if (!range || Number(range[1]) !== offset) {
            await res.body.cancel();
            if (file) await truncate(`${file}.partial`, 0);
            throw new Retryable(`unexpected Content-Range "${res.headers.get('content-range')}"`);
          }
          start = offset;
          if (range[3] !== '*') total = Number(range[3]);
        } else {
          const length = res.headers.get('content-length');
          if (length && /^\d+$/.test(length)) total = Number(length);
        }
        file ??= fileNameFromDisposition(res.headers.get('content-disposition')) ?? defaultFileName(exp);
        expectedSize ??= total;
        const size = expectedSize ?? total;

        let written = start;
        if (size !== undefined) bar?.start(size, written);
        const counter = new Transform({
          transform(chunk: Buffer, _enc, done) {
            written += chunk.length;
            bar?.update(written);
            done(null, chunk);
          },
        });
        try {
          await pipeline(
            Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
            counter,
            createWriteStream(`${file}.partial`, { flags: start > 0 ? 'a' : 'w' }),
          );
        } catch (err) {
          throw new Retryable(networkMessage(err));
        }
        const have = await sizeOf(`${file}.partial`);
        if (expectedSize !== undefined && have < expectedSize) {
          throw new Retryable(`got ${humanBytes(have)} of ${humanBytes(expectedSize)}`);
        }
        lastError = undefined;
        break;
      } catch (err) {
        if (!(err instanceof Retryable)) throw err;
        lastError = err;
      }
    }
  } finally {
    bar?.stop();
  }
  if (lastError || !file) {
    throw new CliError(`download failed after ${attempts} attempts: ${lastError?.message ?? 'no data'}`);
  }

  const partial = `${file}.partial`;
  const size = await sizeOf(partial);
  const actual = await sha256File(partial);
  if (expectedSha && actual !== expectedSha) {
    throw new CliError(
      `checksum mismatch: expected sha256 ${expectedSha}, got ${actual}; the data is kept in ${partial}`,
      EXIT.checksum,
    );
  }
  if (!expectedSha) opts.notice('the export has no status.artifact.sha256: the download is not verified');
  return finish(file, size, actual, Boolean(expectedSha));
}

async function finish(
  file: string,
  size: number,
  sha256: string,
  verified: boolean,
): Promise<DownloadResult> {
  await rm(file, { force: true });
  await rename(`${file}.partial`, file);
  return { file, size, sha256, verified };
}

function networkMessage(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  return [e.message, e.cause?.code ?? e.cause?.message].filter(Boolean).join(': ');
}
