// Wires the ports to their AWS adapters from the Lambda environment, once per cold start. The local
// stack and tests call setDeps() with their own adapters first; the handlers stay the same.

import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { AWS_CLIENT_OPTIONS } from './adapters/aws-clients.js';
import { AwsJsonClient } from './adapters/aws-json.js';
import { CloudWatchBuildLogs } from './adapters/cloudwatch-logs.js';
import { DynamoDbQuotaLedger, DynamoDbResourceStore } from './adapters/dynamodb-store.js';
import { EventBridgePublisher } from './adapters/eventbridge-events.js';
import { S3ObjectStore } from './adapters/s3-objects.js';
import { SecretsManagerSecretStore } from './adapters/secrets-manager.js';
import { StepFunctionsWorkflows } from './adapters/sfn-workflows.js';
import { DEFAULT_DELETE_WAIT_SECONDS } from './domain/image-builds.js';
import type { Deps, Logger, Settings } from './ports.js';

export const jsonLogger: Logger = {
  info: (message, fields) => console.log(JSON.stringify({ level: 'INFO', message, ...fields })),
  error: (message, fields) => console.error(JSON.stringify({ level: 'ERROR', message, ...fields })),
};

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set`);
  return v;
}

const num = (name: string, fallback: number): number => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

/** Deployment settings from the environment; shared by the Lambda functions and the local stack. */
export function settingsFromEnv(defaults: Partial<Settings> = {}): Settings {
  return {
    contextBucket: process.env.BUILD_CONTEXT_BUCKET ?? defaults.contextBucket ?? '',
    buildTimeoutSeconds: num('BUILD_TIMEOUT_SECONDS', defaults.buildTimeoutSeconds ?? 7200),
    heartbeatSeconds: num('BUILD_HEARTBEAT_SECONDS', defaults.heartbeatSeconds ?? 30),
    deleteWaitSeconds: num('DELETE_WAIT_SECONDS', defaults.deleteWaitSeconds ?? DEFAULT_DELETE_WAIT_SECONDS),
    ...(process.env.AGENT_REPO_URL ? { agentRepoUrl: process.env.AGENT_REPO_URL } : {}),
    ...(process.env.BIB_IMAGE ? { bibImage: process.env.BIB_IMAGE } : {}),
    registryLayerCache: process.env.BUILD_REGISTRY_CACHE
      ? process.env.BUILD_REGISTRY_CACHE !== 'false'
      : (defaults.registryLayerCache ?? true),
    quota: {
      ...(process.env.QUOTA_ACTIVE_BUILDS ? { activeBuilds: num('QUOTA_ACTIVE_BUILDS', 10) } : {}),
      ...(process.env.QUOTA_BUILDS_PER_WINDOW
        ? { buildsPerWindow: num('QUOTA_BUILDS_PER_WINDOW', 100) }
        : {}),
      ...(process.env.QUOTA_WINDOW_DAYS ? { windowSeconds: num('QUOTA_WINDOW_DAYS', 14) * 86400 } : {}),
      ...defaults.quota,
    },
    quotaOverrides: parseOverrides(process.env.QUOTA_OVERRIDES),
  };
}

/** QUOTA_OVERRIDES: JSON {"<org>": {"activeBuilds": n, "buildsPerWindow": n, "windowDays": n}}. */
function parseOverrides(raw: string | undefined): Settings['quotaOverrides'] {
  if (!raw) return {};
  const parsed = JSON.parse(raw) as Record<
    string,
    { activeBuilds?: number; buildsPerWindow?: number; windowDays?: number }
  >;
  return Object.fromEntries(
    Object.entries(parsed).map(([org, o]) => [
      org,
      {
        ...(o.activeBuilds ? { activeBuilds: o.activeBuilds } : {}),
        ...(o.buildsPerWindow ? { buildsPerWindow: o.buildsPerWindow } : {}),
        ...(o.windowDays ? { windowSeconds: o.windowDays * 86400 } : {}),
      },
    ]),
  );
}

function awsDeps(): Deps {
  const secretsClient = new AwsJsonClient({ service: 'secretsmanager' });
  const dynamodb = new AwsJsonClient({ service: 'dynamodb' });
  const settings = settingsFromEnv();
  return {
    settings,
    events: new EventBridgePublisher(
      new AwsJsonClient({ service: 'events' }),
      process.env.EVENT_BUS_NAME ?? 'default',
    ),
    objects: new S3ObjectStore({ bucket: settings.contextBucket }),
    logs: new CloudWatchBuildLogs(
      new CloudWatchLogsClient(AWS_CLIENT_OPTIONS),
      process.env.BUILDER_LOG_GROUP ?? '',
    ),
    store: new DynamoDbResourceStore(dynamodb, required('TABLE_NAME')),
    quotas: new DynamoDbQuotaLedger(dynamodb, required('TABLE_NAME')),
    secrets: new SecretsManagerSecretStore(
      secretsClient,
      required('SECRETS_PREFIX'),
      required('TOKEN_KEY_SECRET_ARN'),
    ),
    workflows: new StepFunctionsWorkflows(new AwsJsonClient({ service: 'states' }), {
      ImageBuild: process.env.IMAGE_BUILD_STATE_MACHINE_ARN,
      ImageExport: process.env.IMAGE_EXPORT_STATE_MACHINE_ARN,
    }),
    logger: jsonLogger,
  };
}

let deps: Deps | undefined;

export function getDeps(): Deps {
  deps ??= awsDeps();
  return deps;
}

export function setDeps(d: Deps): void {
  deps = d;
}
