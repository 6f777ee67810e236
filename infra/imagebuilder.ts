// The public construct: the whole image builder service, ready to put in any CDK app. It composes the
// constructs per concern (data, secrets, identity, functions, API) and wires their grants.

import type * as cognito from 'aws-cdk-lib/aws-cognito';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { type ApiFunction as ApiFunctionName, ROUTES } from '../functions/commons/http/routes.js';
import { Api } from './constructs/api.js';
import { ApiFunction } from './constructs/api-function.js';
import { DataStore } from './constructs/data.js';
import { UserDirectory } from './constructs/identity.js';
import { ServiceSecrets } from './constructs/secrets.js';

export interface ImageBuilderThrottling {
  /** Steady-state requests per second. @default 50 */
  readonly rateLimit?: number;
  /** Burst of requests. @default 100 */
  readonly burstLimit?: number;
}

export interface ImageBuilderProps {
  /** Deployment stage (`dev`, `prod`, …): lowercase letters, digits, `-`; names the secrets prefix. */
  readonly stage: string;
  /** Retention of the function and access logs. @default RetentionDays.ONE_MONTH */
  readonly logRetentionDays?: logs.RetentionDays;
  /**
   * Issuer (`iss`, an https URL) of the tokens the API accepts. With `jwtAudience`; when both are
   * absent, a Cognito user pool is created and its issuer and app client are used.
   */
  readonly jwtIssuer?: string;
  /** Accepted audiences (`aud` or `client_id`). */
  readonly jwtAudience?: string[];
  readonly throttling?: ImageBuilderThrottling;
}

export const DEFAULT_LOG_RETENTION_DAYS = logs.RetentionDays.ONE_MONTH;
export const DEFAULT_THROTTLING = { rateLimit: 50, burstLimit: 100 } as const;

const STAGE = /^[a-z][a-z0-9-]{0,31}$/;
const RETENTION_DAYS = new Set<number>(
  Object.values(logs.RetentionDays).filter((v): v is number => typeof v === 'number'),
);

/** Throws one error listing every invalid property, so a bad deployment fails at synth. */
export function validateImageBuilderProps(props: ImageBuilderProps): void {
  const problems: string[] = [];
  if (typeof props.stage !== 'string' || !STAGE.test(props.stage)) {
    problems.push(
      `stage ${JSON.stringify(props.stage)} must be 1-32 characters: a lowercase letter, then lowercase letters, digits or "-"`,
    );
  }
  if (props.logRetentionDays !== undefined && !RETENTION_DAYS.has(props.logRetentionDays)) {
    problems.push(
      `logRetentionDays ${JSON.stringify(props.logRetentionDays)} must be one of CloudWatch Logs' retention periods: ${[...RETENTION_DAYS].join(', ')}`,
    );
  }
  const hasIssuer = props.jwtIssuer !== undefined;
  const hasAudience = props.jwtAudience !== undefined;
  if (hasIssuer !== hasAudience) {
    problems.push(
      'jwtIssuer and jwtAudience must be given together (or neither, to create a Cognito user pool)',
    );
  }
  if (hasIssuer && !isHttpsUrl(props.jwtIssuer)) {
    problems.push(`jwtIssuer ${JSON.stringify(props.jwtIssuer)} must be an https:// URL`);
  }
  if (
    hasAudience &&
    (!Array.isArray(props.jwtAudience) ||
      props.jwtAudience.length === 0 ||
      props.jwtAudience.some((a) => typeof a !== 'string' || a.trim() === ''))
  ) {
    problems.push('jwtAudience must be a non-empty list of non-empty strings');
  }
  const { rateLimit, burstLimit } = props.throttling ?? {};
  if (
    rateLimit !== undefined &&
    !(typeof rateLimit === 'number' && Number.isFinite(rateLimit) && rateLimit > 0)
  ) {
    problems.push(
      `throttling rateLimit ${JSON.stringify(rateLimit)} must be a number > 0 (requests per second)`,
    );
  }
  if (burstLimit !== undefined && !(Number.isInteger(burstLimit) && burstLimit >= 1)) {
    problems.push(`throttling burstLimit ${JSON.stringify(burstLimit)} must be an integer >= 1`);
  }
  if (problems.length > 0) {
    throw new Error(`Invalid ImageBuilder settings:\n  - ${problems.join('\n  - ')}`);
  }
}

function isHttpsUrl(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    return new URL(value).protocol === 'https:';
  } catch {
    return false;
  }
}

/** The handler file each route names, once each, in route-table order. */
const FUNCTION_NAMES: readonly ApiFunctionName[] = [...new Set(ROUTES.map((r) => r.fn))];

export class ImageBuilder extends Construct {
  readonly stage: string;
  /** `imagebuilder/<stage>`: prefix of every secret of this deployment. */
  readonly secretsPrefix: string;
  readonly data: DataStore;
  readonly secrets: ServiceSecrets;
  readonly api: Api;
  readonly functions: Readonly<Record<ApiFunctionName, ApiFunction>>;
  /** Present when no external issuer was configured. */
  readonly userDirectory?: UserDirectory;
  readonly jwtIssuer: string;
  readonly jwtAudience: string[];

  constructor(scope: Construct, id: string, props: ImageBuilderProps) {
    super(scope, id);
    validateImageBuilderProps(props);

    this.stage = props.stage;
    this.secretsPrefix = `imagebuilder/${props.stage}`;
    const logRetention = props.logRetentionDays ?? DEFAULT_LOG_RETENTION_DAYS;

    this.data = new DataStore(this, 'Data');
    this.secrets = new ServiceSecrets(this, 'Secrets', { prefix: this.secretsPrefix });

    if (props.jwtIssuer && props.jwtAudience) {
      this.jwtIssuer = props.jwtIssuer;
      this.jwtAudience = props.jwtAudience;
    } else {
      this.userDirectory = new UserDirectory(this, 'Identity', { namePrefix: `imagebuilder-${props.stage}` });
      this.jwtIssuer = this.userDirectory.issuer;
      this.jwtAudience = [this.userDirectory.client.userPoolClientId];
    }

    const environment = {
      STAGE: props.stage,
      TABLE_NAME: this.data.tableName,
      SECRETS_PREFIX: this.secretsPrefix,
      TOKEN_KEY_SECRET_ARN: this.secrets.tokenKey.secretArn,
      POWERTOOLS_SERVICE_NAME: 'imagebuilder',
    };
    const functions = {} as Record<ApiFunctionName, ApiFunction>;
    for (const name of FUNCTION_NAMES) {
      const fn = new ApiFunction(this, `Fn-${name}`, {
        entry: `functions/api/${name}.ts`,
        description: `ImageBuilder API: ${name}`,
        environment,
        logRetention,
      });
      if (name === 'service') {
        // The health check never writes, pages or touches secrets.
        this.data.grantReadData(fn);
      } else {
        this.data.grantReadWriteData(fn);
        this.secrets.grantTokenKeyRead(fn);
      }
      // Only the repositories API stores and removes repository passwords.
      if (name === 'repositories') this.secrets.grantRepositorySecrets(fn);
      functions[name] = fn;
    }
    this.functions = functions;

    this.api = new Api(this, 'Api', {
      apiName: `imagebuilder-${props.stage}`,
      routes: ROUTES,
      handlers: Object.fromEntries(FUNCTION_NAMES.map((n) => [n, functions[n].function])) as Record<
        ApiFunctionName,
        ApiFunction['function']
      >,
      jwtIssuer: this.jwtIssuer,
      jwtAudience: this.jwtAudience,
      throttling: {
        rateLimit: props.throttling?.rateLimit ?? DEFAULT_THROTTLING.rateLimit,
        burstLimit: props.throttling?.burstLimit ?? DEFAULT_THROTTLING.burstLimit,
      },
      logRetention,
    });
  }

  /** Base URL of the API (ends with `/`). */
  get apiUrl(): string {
    return this.api.url;
  }

  get userPool(): cognito.UserPool | undefined {
    return this.userDirectory?.userPool;
  }

  get userPoolClient(): cognito.UserPoolClient | undefined {
    return this.userDirectory?.client;
  }
}
