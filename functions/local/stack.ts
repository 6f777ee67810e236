// The whole product on this machine: DynamoDB Local, the file secret store, the local workflows and the
// same handlers behind the local gateway. Used by `npm start`, the tests and the benchmarks.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { DynamoDbQuotaLedger, DynamoDbResourceStore } from '../commons/adapters/dynamodb-store.js';
import { FileSecretStore } from '../commons/adapters/file-secrets.js';
import { FlightctlEnrollmentCertificates } from '../commons/adapters/flightctl-enrollment.js';
import { S3ObjectStore } from '../commons/adapters/s3-objects.js';
import { jsonLogger, setDeps, settingsFromEnv } from '../commons/config.js';
import type { Runner } from '../commons/domain/build-plan.js';
import type { EnrollmentCertificates } from '../commons/domain/enrollment/index.js';
import { workflowRef } from '../commons/domain/image-builds.js';
import type { Deps, Logger, Settings, Workflows } from '../commons/ports.js';
import { runBuildStep } from '../workflows/image-build.js';
import { reconcilePending } from '../workflows/reconciler.js';
import { pushDiskReferrer } from '../workflows/referrer.js';
import { ensureBuilderImage } from './builder-image.js';
import { ensureTable, type LocalDynamo, startDynamoDbLocal } from './dynamodb-local.js';
import { FileEventPublisher } from './file-events.js';
import { FileBuildLogs } from './file-logs.js';
import type { LocalObjectEndpoint } from './local-codebuild.js';
import { LocalStepFunctions } from './local-workflows.js';
import { LOCAL_S3_CREDENTIALS, startS3Local } from './s3-local.js';
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
  /** Replaces the local Step Functions runner (API tests observe the hand-off with a recording double). */
  workflows?: Workflows;
  /** Builder script override for workflow tests; default functions/builder/build-image.sh. */
  builderScript?: string;
  /** Exporter script override for workflow tests; default functions/builder/export-image.sh. */
  exporterScript?: string;
  heartbeatTimeoutSeconds?: number;
  /** What one run may write locally: its sandbox's disk (default 20 GiB). */
  sandboxDiskBytes?: number;
  /** Where the local workflows run jobs: `codebuild` (default) or `eks` (the Job stand-in, same scripts). */
  runner?: Runner;
  settings?: Partial<Settings>;
  /** Early binding; by default from FLIGHTCTL_API_URL, FLIGHTCTL_TOKEN and FLIGHTCTL_CA_FILE when set. */
  enrollment?: EnrollmentCertificates;
  logger?: Logger;
}

/**
 * After a restart: runs that were Building or Canceling had their builder processes die with the old
 * stack, so they end (Failed or Canceled) with a message saying so; Pending ones are started again.
 */
async function recoverAfterRestart(deps: Deps, runner: LocalStepFunctions): Promise<void> {
  const now = new Date().toISOString();
  for (const reason of ['Building', 'Pushing', 'Canceling']) {
    for (const item of await deps.store.listInReason('ImageBuild', reason, now, 1000)) {
      const ref = workflowRef(item);
      if (runner.isRunning(ref)) continue;
      await runBuildStep(deps, {
        step: 'ended',
        ref,
        status: reason === 'Canceling' ? 'ABORTED' : 'FAILED',
        cause: 'the local stack stopped while this build ran; retry it',
      });
    }
  }
  await reconcilePending(deps, { graceSeconds: 0 });
}

/** The local stack's Flight Control enrollment service, from the environment (README, "Local stack"). */
async function enrollmentFromEnv(): Promise<EnrollmentCertificates | undefined> {
  const apiUrl = process.env.FLIGHTCTL_API_URL;
  const token = process.env.FLIGHTCTL_TOKEN;
  if (!apiUrl || !token) return undefined;
  const caFile = process.env.FLIGHTCTL_CA_FILE;
  return new FlightctlEnrollmentCertificates({
    apiUrl,
    token,
    ...(caFile ? { caPem: await readFile(caFile, 'utf8') } : {}),
  });
}

export interface LocalStack {
  url: string;
  port: number;
  dataDir: string;
  jwtSecret: string;
  deps: Deps;
  dynamo: LocalDynamo;
  /** The local object store (s3rver) as the sandboxes' gate reaches it. */
  objectStore: LocalObjectEndpoint;
  /** The local Step Functions runner, unless a workflows double was given. */
  runner?: LocalStepFunctions;
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
  // All state, secrets included: the owner's only (0700; files 0600 where they hold secrets).
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  await mkdir(join(dataDir, 'dynamodb'), { recursive: true, mode: 0o700 });
  const jwtSecret = await jwtSecretFor(dataDir, opts.jwtSecret);
  const ownDynamo = !opts.dynamo;
  const dynamo =
    opts.dynamo ?? (await startDynamoDbLocal(opts.inMemory ? {} : { path: join(dataDir, 'dynamodb') }));
  const tableName = opts.tableName ?? 'imagebuilder';
  await ensureTable(dynamo.client, tableName);
  const bucket = 'imagebuilder-local';
  const s3 = await startS3Local({ directory: join(dataDir, 's3'), buckets: [bucket] });
  const objectStore = { endpoint: s3.endpoint, credentials: LOCAL_S3_CREDENTIALS, region: 'us-east-1' };
  const secrets = new FileSecretStore(join(dataDir, 'secrets'));
  const logs = new FileBuildLogs(join(dataDir, 'logs'));
  const settings: Settings = {
    // Each run's sandbox starts with empty storage, as in the cloud: the layer cache is the registry's.
    ...settingsFromEnv({ contextBucket: bucket, registryLayerCache: true }),
    internalRegistries: true,
    ...opts.settings,
    contextBucket: bucket,
  };
  const runner = opts.workflows
    ? undefined
    : new LocalStepFunctions({
        deps: () => deps,
        dataDir,
        logFile: (ref) => logs.pathOf(ref),
        readSecret: (ref) => secrets.readSecret(ref),
        objectStore: () => objectStore,
        pushReferrer: pushDiskReferrer,
        ...(opts.builderScript ? { builderScript: opts.builderScript } : {}),
        ...(opts.exporterScript ? { exporterScript: opts.exporterScript } : {}),
        ...(opts.heartbeatTimeoutSeconds ? { heartbeatTimeoutSeconds: opts.heartbeatTimeoutSeconds } : {}),
        ...(opts.sandboxDiskBytes ? { sandboxDiskBytes: opts.sandboxDiskBytes } : {}),
        ...(opts.runner ? { runner: opts.runner } : {}),
      });
  const enrollment = opts.enrollment ?? (await enrollmentFromEnv());
  const deps: Deps = {
    settings,
    ...(enrollment ? { enrollment } : {}),
    store: new DynamoDbResourceStore(dynamo.client, tableName),
    quotas: new DynamoDbQuotaLedger(dynamo.client, tableName),
    secrets,
    workflows: opts.workflows ?? (runner as LocalStepFunctions),
    events: new FileEventPublisher(join(dataDir, 'events.jsonl')),
    objects: new S3ObjectStore({
      bucket,
      endpoint: s3.endpoint,
      region: 'us-east-1',
      credentials: LOCAL_S3_CREDENTIALS,
    }),
    logs,
    logger: opts.logger ?? jsonLogger,
  };
  setDeps(deps);
  if (runner) {
    // The builder image is made (or found) at start, not on the first build.
    void ensureBuilderImage((line) => (opts.logger ?? jsonLogger).info(line)).then(
      (image) => runner.warm(image),
      (err: Error) => (opts.logger ?? jsonLogger).error('builder image', { error: err.message }),
    );
    await recoverAfterRestart(deps, runner);
  }
  // The reconciler, as the cloud schedules it: runs left Pending by a failed hand-off get started.
  const sweep = runner
    ? setInterval(() => void reconcilePending(deps, { graceSeconds: 30 }).catch(() => undefined), 30_000)
    : undefined;
  sweep?.unref();
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
    objectStore,
    ...(runner ? { runner } : {}),
    token: (claims) => signLocalToken(jwtSecret, { sub: claims.sub ?? 'local-user', ...claims }),
    stop: async () => {
      if (sweep) clearInterval(sweep);
      server.closeAllConnections();
      await new Promise<void>((res) => server.close(() => res()));
      if (runner) await runner.shutdown();
      await s3.stop();
      if (ownDynamo) await dynamo.stop();
    },
  };
}
