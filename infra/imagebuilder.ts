// The public construct: the whole image builder service, ready to put in any CDK app. It composes the
// constructs per concern (data, secrets, identity, events, build workflow, functions, API,
// notifications) and wires their grants.

import type * as cognito from 'aws-cdk-lib/aws-cognito';
import type * as events from 'aws-cdk-lib/aws-events';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { RUNNERS, type Runner } from '../functions/commons/domain/build-plan.js';
import { type ApiFunction as ApiFunctionName, ROUTES } from '../functions/commons/http/routes.js';
import { Api } from './constructs/api.js';
import { ApiFunction } from './constructs/api-function.js';
import {
  BuildContextStore,
  Builders,
  DEFAULT_ARTIFACT_RETENTION_DAYS,
  ImageBuildWorkflow,
} from './constructs/build-workflow.js';
import { type BuilderArch, BuilderImage } from './constructs/builder-image.js';
import { DataStore } from './constructs/data.js';
import { EksRunner, type EksRunnerSettings } from './constructs/eks-runner.js';
import { ServiceEvents } from './constructs/events.js';
import { ImageExportWorkflow, VmImport } from './constructs/export-workflow.js';
import { UserDirectory } from './constructs/identity.js';
import { Notifications } from './constructs/notifications.js';
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
  /** Longest a build may run, in minutes (CodeBuild allows 5–2160). @default 120 */
  readonly buildTimeoutMinutes?: number;
  /**
   * CodeBuild compute type of the builders. The ARM project maps BUILD_GENERAL1_MEDIUM to
   * BUILD_GENERAL1_LARGE (ARM Medium is not offered in every region, ARM Large is).
   * @default BUILD_GENERAL1_MEDIUM
   */
  readonly builderComputeType?: BuilderComputeType;
  /**
   * Complete ARN of a Secrets Manager secret holding the Flight Control enrollment settings (JSON:
   * `apiUrl`, `token`, optional `caPem`…), needed by builds with early binding. Without it, early
   * binding builds fail with a message saying so.
   */
  readonly flightctlSecretArn?: string;
  /** Package repository of the Flight Control agent put into the images (http/https URL). */
  readonly agentRepoUrl?: string;
  /**
   * bootc-image-builder, pinned by digest (`quay.io/centos-bootc/bootc-image-builder@sha256:…`); default:
   * the digest in functions/commons/domain/export-plan.ts.
   */
  readonly bibImage?: string;
  /**
   * Base of the builder image (functions/builder/Containerfile), a Debian 12 image pinned by digest.
   * @default DEFAULT_BUILDER_BASE_IMAGE of infra/constructs/builder-image.ts (Amazon ECR Public)
   */
  readonly builderBaseImage?: string;
  /**
   * aarch64 builders (CodeBuild ARM_CONTAINER). CodeBuild offers ARM only in some regions: deploy with
   * `false` elsewhere; aarch64 builds are then refused with 400. @default true
   */
  readonly aarch64Builders?: boolean;
  /** Email address that receives the terminal events (Completed, Failed, Canceled) of builds and exports. */
  readonly notificationEmail?: string;
  /** HTTPS endpoint that receives the terminal events as JSON (an EventBridge API destination). */
  readonly notificationWebhookUrl?: string;
  /**
   * Complete ARN of the Secrets Manager secret whose value the webhook receives as its `Authorization`
   * header. Required with `notificationWebhookUrl`.
   */
  readonly notificationWebhookSecretArn?: string;
  /**
   * Days a disk image stays in the service bucket (`artifacts/`) before it expires; deleting its export
   * removes it at once. @default 30
   */
  readonly artifactRetentionDays?: number;
  /**
   * Create the account-wide `vmimport` service role the `ami` format needs. Set false when the account
   * already has one (another stage, or an earlier VM Import setup). @default true
   */
  readonly createVmImportRole?: boolean;
  /**
   * Where builds and exports run: `codebuild` (privileged CodeBuild projects) or `eks` (privileged
   * Kubernetes Jobs on an existing cluster, `eks` required). The same scripts and state machines either
   * way. @default codebuild
   */
  readonly runner?: Runner;
  /** The cluster of the `eks` runner. */
  readonly eks?: EksRunnerSettings;
  /**
   * A run whose builder sends no heartbeat for this long (seconds, at least 120) ends Failed "timed
   * out". @default 600
   */
  readonly heartbeatTimeoutSeconds?: number;
}

export const BUILDER_COMPUTE_TYPES = [
  'BUILD_GENERAL1_SMALL',
  'BUILD_GENERAL1_MEDIUM',
  'BUILD_GENERAL1_LARGE',
  'BUILD_GENERAL1_XLARGE',
  'BUILD_GENERAL1_2XLARGE',
] as const;
export type BuilderComputeType = (typeof BUILDER_COMPUTE_TYPES)[number];

export const DEFAULT_LOG_RETENTION_DAYS = logs.RetentionDays.ONE_MONTH;
export const DEFAULT_THROTTLING = { rateLimit: 50, burstLimit: 100 } as const;
export const DEFAULT_BUILD_TIMEOUT_MINUTES = 120;
export const DEFAULT_BUILDER_COMPUTE_TYPE: BuilderComputeType = 'BUILD_GENERAL1_MEDIUM';

/** A complete secret ARN: `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<6 chars>`. */
/** registry/name[:tag]@sha256:<hex>: an image pinned by digest. */
const PINNED_IMAGE =
  /^[a-z0-9][a-z0-9._-]*(:[0-9]{1,5})?(\/[a-z0-9][a-z0-9._-]*)+(:[\w][\w.-]{0,127})?@sha256:[0-9a-f]{64}$/;
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

const STAGE = /^[a-z][a-z0-9-]{0,31}$/;
const EKS_CLUSTER_NAME = /^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
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
  const timeout = props.buildTimeoutMinutes;
  if (timeout !== undefined && !(Number.isInteger(timeout) && timeout >= 5 && timeout <= 2160)) {
    problems.push(`buildTimeoutMinutes ${JSON.stringify(timeout)} must be an integer from 5 to 2160`);
  }
  if (
    props.builderComputeType !== undefined &&
    !(BUILDER_COMPUTE_TYPES as readonly string[]).includes(props.builderComputeType)
  ) {
    problems.push(
      `builderComputeType ${JSON.stringify(props.builderComputeType)} must be one of ${BUILDER_COMPUTE_TYPES.join(', ')}`,
    );
  }
  for (const key of ['flightctlSecretArn', 'notificationWebhookSecretArn'] as const) {
    const arn = props[key];
    if (arn !== undefined && !(typeof arn === 'string' && SECRET_ARN.test(arn))) {
      problems.push(
        `${key} ${JSON.stringify(arn)} must be the complete ARN of a Secrets Manager secret (ending in -XXXXXX)`,
      );
    }
  }
  if (
    props.bibImage !== undefined &&
    !(
      typeof props.bibImage === 'string' &&
      /^[a-z0-9][a-z0-9._-]*(:[0-9]{1,5})?(\/[a-z0-9][a-z0-9._-]*)+@sha256:[0-9a-f]{64}$/.test(props.bibImage)
    )
  ) {
    problems.push(
      `bibImage ${JSON.stringify(props.bibImage)} must be pinned by digest: registry/name@sha256:<64 hex>`,
    );
  }
  if (
    props.builderBaseImage !== undefined &&
    !(typeof props.builderBaseImage === 'string' && PINNED_IMAGE.test(props.builderBaseImage))
  ) {
    problems.push(
      `builderBaseImage ${JSON.stringify(props.builderBaseImage)} must be pinned by digest: registry/name[:tag]@sha256:<64 hex>`,
    );
  }
  if (props.aarch64Builders !== undefined && typeof props.aarch64Builders !== 'boolean') {
    problems.push(`aarch64Builders ${JSON.stringify(props.aarch64Builders)} must be true or false`);
  }
  if (props.agentRepoUrl !== undefined && !isUrl(props.agentRepoUrl, ['http:', 'https:'])) {
    problems.push(`agentRepoUrl ${JSON.stringify(props.agentRepoUrl)} must be an http:// or https:// URL`);
  }
  if (
    props.notificationEmail !== undefined &&
    !(typeof props.notificationEmail === 'string' && EMAIL.test(props.notificationEmail))
  ) {
    problems.push(`notificationEmail ${JSON.stringify(props.notificationEmail)} must be an email address`);
  }
  if (props.notificationWebhookUrl !== undefined && !isHttpsUrl(props.notificationWebhookUrl)) {
    problems.push(
      `notificationWebhookUrl ${JSON.stringify(props.notificationWebhookUrl)} must be an https:// URL`,
    );
  }
  if ((props.notificationWebhookUrl === undefined) !== (props.notificationWebhookSecretArn === undefined)) {
    problems.push(
      'notificationWebhookUrl and notificationWebhookSecretArn must be given together (the webhook is called with the secret as its Authorization header)',
    );
  }
  const retention = props.artifactRetentionDays;
  if (retention !== undefined && !(Number.isInteger(retention) && retention >= 1)) {
    problems.push(`artifactRetentionDays ${JSON.stringify(retention)} must be an integer >= 1`);
  }
  if (props.createVmImportRole !== undefined && typeof props.createVmImportRole !== 'boolean') {
    problems.push(`createVmImportRole ${JSON.stringify(props.createVmImportRole)} must be true or false`);
  }
  const heartbeat = props.heartbeatTimeoutSeconds;
  if (heartbeat !== undefined && !(Number.isInteger(heartbeat) && heartbeat >= 120 && heartbeat <= 86_400)) {
    problems.push(
      `heartbeatTimeoutSeconds ${JSON.stringify(heartbeat)} must be an integer from 120 to 86400`,
    );
  }
  problems.push(...runnerProblems(props));
  if (problems.length > 0) {
    throw new Error(`Invalid ImageBuilder settings:\n  - ${problems.join('\n  - ')}`);
  }
}

function runnerProblems(props: ImageBuilderProps): string[] {
  const problems: string[] = [];
  const runner = props.runner ?? 'codebuild';
  if (!RUNNERS.includes(runner)) {
    problems.push(`runner ${JSON.stringify(props.runner)} must be one of ${RUNNERS.join(', ')}`);
  }
  const e = props.eks;
  if (runner !== 'eks') {
    if (e !== undefined) problems.push('the eks settings (eksClusterName…) apply only with runner "eks"');
    return problems;
  }
  if (e === undefined) {
    problems.push('runner "eks" needs the cluster: eksClusterName, eksEndpoint, eksCertificateAuthority');
    return problems;
  }
  if (typeof e.clusterName !== 'string' || !EKS_CLUSTER_NAME.test(e.clusterName)) {
    problems.push(`eksClusterName ${JSON.stringify(e.clusterName)} must be an EKS cluster name`);
  }
  if (!isHttpsUrl(e.endpoint)) {
    problems.push(`eksEndpoint ${JSON.stringify(e.endpoint)} must be the cluster's https:// API endpoint`);
  }
  if (typeof e.certificateAuthority !== 'string' || !BASE64.test(e.certificateAuthority)) {
    problems.push('eksCertificateAuthority must be the cluster certificate authority data (base64)');
  }
  if (
    e.builderImage !== undefined &&
    !(typeof e.builderImage === 'string' && PINNED_IMAGE.test(e.builderImage))
  ) {
    problems.push(
      `eksBuilderImage ${JSON.stringify(e.builderImage)} must be pinned by digest: registry/name@sha256:<64 hex>`,
    );
  }
  if (e.namespace !== undefined && !(typeof e.namespace === 'string' && DNS_LABEL.test(e.namespace))) {
    problems.push(`eksNamespace ${JSON.stringify(e.namespace)} must be a Kubernetes namespace name`);
  }
  if (
    e.serviceAccount !== undefined &&
    !(typeof e.serviceAccount === 'string' && DNS_SUBDOMAIN.test(e.serviceAccount))
  ) {
    problems.push(`eksServiceAccount ${JSON.stringify(e.serviceAccount)} must be a service account name`);
  }
  return problems;
}

function isHttpsUrl(value: unknown): boolean {
  return isUrl(value, ['https:']);
}

function isUrl(value: unknown, protocols: string[]): boolean {
  if (typeof value !== 'string') return false;
  try {
    return protocols.includes(new URL(value).protocol);
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
  readonly events: ServiceEvents;
  readonly contextStore: BuildContextStore;
  readonly builders: Builders;
  readonly builderImage: BuilderImage;
  /** Present with `runner: 'eks'`. */
  readonly eksRunner?: EksRunner;
  readonly buildWorkflow: ImageBuildWorkflow;
  readonly exportWorkflow: ImageExportWorkflow;
  /** The `vmimport` role of the `ami` format (created, or the account's own). */
  readonly vmImport: VmImport;
  /** Present when `notificationEmail` or `notificationWebhookUrl` is set. */
  readonly notifications?: Notifications;

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

    /** What every function of the service gets. */
    const common = {
      STAGE: props.stage,
      TABLE_NAME: this.data.tableName,
      SECRETS_PREFIX: this.secretsPrefix,
      TOKEN_KEY_SECRET_ARN: this.secrets.tokenKey.secretArn,
      POWERTOOLS_SERVICE_NAME: 'imagebuilder',
    };
    const buildTimeoutMinutes = props.buildTimeoutMinutes ?? DEFAULT_BUILD_TIMEOUT_MINUTES;

    this.events = new ServiceEvents(this, 'Events', { busName: `imagebuilder-${props.stage}` });
    this.contextStore = new BuildContextStore(this, 'BuildContexts', {
      artifactRetentionDays: props.artifactRetentionDays ?? DEFAULT_ARTIFACT_RETENTION_DAYS,
      accessLogRetentionDays: logRetention,
    });
    const architectures: BuilderArch[] = props.aarch64Builders === false ? ['x86_64'] : ['x86_64', 'aarch64'];
    this.builderImage = new BuilderImage(this, 'BuilderImage', {
      architectures,
      logRetention,
      ...(props.builderBaseImage ? { baseImage: props.builderBaseImage } : {}),
    });
    this.builders = new Builders(this, 'Builders', {
      image: this.builderImage,
      architectures,
      computeType: props.builderComputeType ?? DEFAULT_BUILDER_COMPUTE_TYPE,
      timeoutMinutes: buildTimeoutMinutes,
      logRetention,
    });
    this.vmImport = new VmImport(this, 'VmImport', {
      contextStore: this.contextStore,
      ...(props.createVmImportRole !== undefined ? { createRole: props.createVmImportRole } : {}),
    });
    this.vmImport.grantImport(this.builders.role);
    if (props.runner === 'eks' && props.eks) {
      this.eksRunner = new EksRunner(this, 'EksRunner', {
        stage: props.stage,
        settings: props.eks,
        image: this.builderImage,
      });
      this.vmImport.grantImport(this.eksRunner.podRole);
    }
    const eks = this.eksRunner ? { eks: this.eksRunner } : {};
    this.exportWorkflow = new ImageExportWorkflow(this, 'ExportWorkflow', {
      stage: props.stage,
      data: this.data,
      secrets: this.secrets,
      events: this.events,
      contextStore: this.contextStore,
      builders: this.builders,
      environment: common,
      timeoutMinutes: buildTimeoutMinutes,
      logRetention,
      ...(props.bibImage ? { bibImage: props.bibImage } : {}),
      ...eks,
    });
    this.buildWorkflow = new ImageBuildWorkflow(this, 'BuildWorkflow', {
      stage: props.stage,
      data: this.data,
      secrets: this.secrets,
      events: this.events,
      contextStore: this.contextStore,
      builders: this.builders,
      environment: common,
      timeoutMinutes: buildTimeoutMinutes,
      logRetention,
      exportWorkflow: this.exportWorkflow,
      ...eks,
      ...(props.heartbeatTimeoutSeconds !== undefined
        ? { heartbeatTimeoutSeconds: props.heartbeatTimeoutSeconds }
        : {}),
      ...(props.flightctlSecretArn ? { flightctlSecretArn: props.flightctlSecretArn } : {}),
      ...(props.agentRepoUrl ? { agentRepoUrl: props.agentRepoUrl } : {}),
    });

    const environment = {
      ...common,
      IMAGE_BUILD_STATE_MACHINE_ARN: this.buildWorkflow.stateMachineArn,
      IMAGE_EXPORT_STATE_MACHINE_ARN: this.exportWorkflow.stateMachineArn,
      BUILDER_LOG_GROUP: this.builders.logGroup.logGroupName,
      EVENT_BUS_NAME: this.events.busName,
      BUILD_CONTEXT_BUCKET: this.contextStore.bucketName,
      // The quota ledger sizes a slot's lifetime from it (functions/commons/domain/quotas.ts).
      BUILD_TIMEOUT_SECONDS: String(buildTimeoutMinutes * 60),
      ...(props.agentRepoUrl ? { AGENT_REPO_URL: props.agentRepoUrl } : {}),
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
      // Builds and exports: transitions publish events, `GET …/log` reads the builders' log group.
      if (name === 'image-builds' || name === 'image-exports') {
        this.events.grantPutEvents(fn);
        this.builders.grantReadLogs(fn);
      }
      // Create, retry and newversion start runs; cancel and delete stop them and drop their context;
      // deleting a build also stops and deletes its exports, disk images included.
      if (name === 'image-builds') {
        this.buildWorkflow.grantStartStop(fn);
        this.exportWorkflow.grantStartStop(fn);
        this.contextStore.grantReadDelete(fn);
        this.contextStore.grantArtifactsReadDelete(fn);
      }
      // Exports start and stop their runs; downloads are presigned with this role (s3:GetObject);
      // delete removes the disk image.
      if (name === 'image-exports') {
        this.exportWorkflow.grantStartStop(fn);
        this.contextStore.grantArtifactsReadDelete(fn);
      }
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

    if (props.notificationEmail || props.notificationWebhookUrl) {
      this.notifications = new Notifications(this, 'Notifications', {
        events: this.events,
        ...(props.notificationEmail ? { email: props.notificationEmail } : {}),
        ...(props.notificationWebhookUrl ? { webhookUrl: props.notificationWebhookUrl } : {}),
        ...(props.notificationWebhookSecretArn
          ? { webhookSecretArn: props.notificationWebhookSecretArn }
          : {}),
      });
    }
  }

  /** The image build state machine (statemachines/image-build.asl.json). */
  get stateMachine(): sfn.StateMachine {
    return this.buildWorkflow.stateMachine;
  }

  /** The bus every transition of a build or export is published to (source `imagebuilder`). */
  get eventBus(): events.EventBus {
    return this.events.bus;
  }

  /** The image export state machine (statemachines/image-export.asl.json). */
  get exportStateMachine(): sfn.StateMachine {
    return this.exportWorkflow.stateMachine;
  }

  /** Build contexts under `contexts/` (expired after 2 days) and disk images under `artifacts/`. */
  get contextBucket(): s3.Bucket {
    return this.contextStore.bucket;
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
