// Local object storage: s3rver, a real S3 API on 127.0.0.1 (files under DATA_DIR), so uploads,
// downloads and presigned URLs run the cloud's code.
import { mkdir } from 'node:fs/promises';
import S3rver from 's3rver';

/** s3rver's built-in account: it checks SigV4 signatures against these. */
export const LOCAL_S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface LocalS3 {
  endpoint: string;
  stop(): Promise<void>;
}

export async function startS3Local(opts: {
  directory: string;
  buckets: string[];
  port?: number;
}): Promise<LocalS3> {
  await mkdir(opts.directory, { recursive: true });
  const server = new S3rver({
    port: opts.port ?? 0,
    address: '127.0.0.1',
    silent: true,
    directory: opts.directory,
    configureBuckets: opts.buckets.map((name) => ({ name })),
  });
  const address = (await server.run()) as { port: number };
  return { endpoint: `http://127.0.0.1:${address.port}`, stop: () => server.close() };
}
