// Wires the ports to their AWS adapters from the Lambda environment, once per cold start. The local
// stack and tests call setDeps() with their own adapters first; the handlers stay the same.
import { AwsJsonClient } from './adapters/aws-json.js';
import { DynamoDbResourceStore } from './adapters/dynamodb-store.js';
import { SecretsManagerSecretStore } from './adapters/secrets-manager.js';
import { StepFunctionsWorkflows } from './adapters/sfn-workflows.js';
import type { Deps, Logger } from './ports.js';

export const jsonLogger: Logger = {
  info: (message, fields) => console.log(JSON.stringify({ level: 'INFO', message, ...fields })),
  error: (message, fields) => console.error(JSON.stringify({ level: 'ERROR', message, ...fields })),
};

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set`);
  return v;
}

function awsDeps(): Deps {
  return {
    store: new DynamoDbResourceStore(new AwsJsonClient({ service: 'dynamodb' }), required('TABLE_NAME')),
    secrets: new SecretsManagerSecretStore(
      new AwsJsonClient({ service: 'secretsmanager' }),
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
