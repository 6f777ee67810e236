// The whole product on this machine: DynamoDB Local, the file secret store, the local workflows and the
// same handlers behind the local gateway. Used by `npm start`, the tests and the benchmarks.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { DynamoDbResourceStore } from '../commons/adapters/dynamodb-store.js';
import { FileSecretStore } from '../commons/adapters/file-secrets.js';
import { jsonLogger, setDeps } from '../commons/config.js';
import type { Deps, Logger, Workflows } from '../commons/ports.js';
import { ensureTable, type LocalDynamo, startDynamoDbLocal } from './dynamodb-local.js';
import { RecordingWorkflows } from './local-workflows.js';
import { createLocalServer, signLocalToken } from './server.js';

export interface LocalStackOptions {
  port?: number;
  dataDir?: string;
  jwtSecret?: string;
  /** Keep the database in memory (tests); by default it persists under dataDir. */
  inMemory?: boolean;
  /** Reuse a running DynamoDB Local (tests share one per run). */
  dynamo?: LocalDynamo;
  tableName?: string;
  workflows?: Workflows;
  logger?: Logger;
}

export interface LocalStack {
  url: string;
  port: number;
  dataDir: string;
  jwtSecret: string;
  deps: Deps;
  dynamo: LocalDynamo;
  token(claims: { sub?: string; org_id: string; roles: string[] }): Promise<string>;
  stop(): Promise<void>;
}

/** Without LOCAL_JWT_SECRET, a secret is made once and kept in DATA_DIR so tokens survive restarts. */
async function jwtSecretFor(dataDir: string, given?: string): Promise<string> {
  if (given) return given;
  const file = join(dataDir, 'jwt-secret');
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const secret = randomBytes(32).toString('base64url');
    await writeFile(file, secret, { mode: 0o600 });
    return secret;
  }
}

export async function startLocalStack(opts: LocalStackOptions = {}): Promise<LocalStack> {
  const dataDir = resolve(opts.dataDir ?? '.local');
  await mkdir(join(dataDir, 'dynamodb'), { recursive: true });
  const jwtSecret = await jwtSecretFor(dataDir, opts.jwtSecret);
  const ownDynamo = !opts.dynamo;
  const dynamo =
    opts.dynamo ?? (await startDynamoDbLocal(opts.inMemory ? {} : { path: join(dataDir, 'dynamodb') }));
  const tableName = opts.tableName ?? 'imagebuilder';
  await ensureTable(dynamo.client, tableName);
  const deps: Deps = {
    store: new DynamoDbResourceStore(dynamo.client, tableName),
    secrets: new FileSecretStore(join(dataDir, 'secrets')),
    workflows: opts.workflows ?? new RecordingWorkflows(join(dataDir, 'executions.jsonl')),
    logger: opts.logger ?? jsonLogger,
  };
  setDeps(deps);
  const server = createLocalServer({ jwtSecret });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(opts.port ?? 8080, '127.0.0.1', () => res());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dataDir,
    jwtSecret,
    deps,
    dynamo,
    token: (claims) => signLocalToken(jwtSecret, { sub: claims.sub ?? 'local-user', ...claims }),
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((res) => server.close(() => res()));
      if (ownDynamo) await dynamo.stop();
    },
  };
}
