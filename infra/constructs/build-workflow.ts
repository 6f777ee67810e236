// The build workflow in AWS, one construct per concern:
//   BuildContextStore  the S3 bucket the step handler writes each run's Containerfile and files to
//   Builders           the builders' log group and two privileged CodeBuild projects (x86_64, aarch64)
//                      running functions/builder/build-image.sh
//   ImageBuildWorkflow the step handler, the state machine of statemachines/image-build.asl.json, the
//                      rule that records executions ending outside the definition, the sweep that
//                      starts runs a crash left Pending and fails runs whose builder went silent, and
//                      the heartbeat handler fed by a subscription filter on the builders' log group
import * as path from 'node:path';
import { ArnFormat, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as logsDestinations from 'aws-cdk-lib/aws-logs-destinations';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { loadBuildspec } from '../../functions/builder/files.js';
import type { BuilderComputeType } from '../imagebuilder.js';
import { ApiFunction, PROJECT_ROOT } from './api-function.js';
import type { BuilderArch, BuilderImage } from './builder-image.js';
import type { DataStore } from './data.js';
import type { EksRunner } from './eks-runner.js';
import type { ServiceEvents } from './events.js';
import type { ImageExportWorkflow } from './export-workflow.js';
import { acknowledge, acknowledgeWildcardResource } from './nag.js';
import type { ServiceSecrets } from './secrets.js';
import { grantWorkflowStartStop, workflowMachine } from './workflow-machine.js';

export const IMAGE_BUILD_ASL = path.join(PROJECT_ROOT, 'statemachines/image-build.asl.json');
/** Key prefix of build contexts (functions/commons/domain/build-plan.ts `contextPrefix`). */
export const CONTEXT_PREFIX = 'contexts/';
/** Key prefix of disk images (functions/commons/domain/export-run.ts `artifactPrefix`). */
export const ARTIFACT_PREFIX = 'artifacts/';
export const DEFAULT_ARTIFACT_RETENTION_DAYS = 30;
export const BUILD_HEARTBEAT_SECONDS = 30;
/**
 * No heartbeat for this long → the run is Failed "timed out". Far above 4 heartbeats: in the cloud the
 * builder script starts only after CodeBuild (or Kubernetes) provisioned the job and installed its tools,
 * minutes in which nothing beats; the run's own timeout still bounds everything.
 */
export const DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 600;
/** The filter pattern of the builders' heartbeat lines (`[heartbeat] <time>`, functions/builder/common.sh). */
export const HEARTBEAT_FILTER_PATTERN = '"[heartbeat]"';

// ---------------------------------------------------------------------------------------------------

export interface BuildContextStoreProps {
  /** Days a disk image stays under `artifacts/` before it expires. @default 30 */
  readonly artifactRetentionDays?: number;
  /** Days the server access logs are kept. @default 30 */
  readonly accessLogRetentionDays?: number;
}

/**
 * The service's one bucket (the functions know it as BUILD_CONTEXT_BUCKET): build contexts under
 * `contexts/` (one prefix per run, deleted at its end, expired as a backstop) and the exporters' disk
 * images under `artifacts/` (deleted with their export, expired after the retention period).
 */
export class BuildContextStore extends Construct {
  readonly bucket: s3.Bucket;
  /** Server access logs of `bucket` (it logs nothing itself). */
  readonly accessLogsBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: BuildContextStoreProps = {}) {
    super(scope, id);
    const artifactDays = props.artifactRetentionDays ?? DEFAULT_ARTIFACT_RETENTION_DAYS;
    // Log delivery through a bucket policy (logging.s3.amazonaws.com, scoped to the source bucket),
    // not the legacy LogDeliveryWrite ACL, whatever the app's feature flags: ACLs stay disabled.
    this.node.setContext(cxapi.S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY, true);
    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      // Server access logging delivers only to buckets encrypted with S3-managed keys.
      encryption: s3.BucketEncryption.S3_MANAGED,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [
        { id: 'expire-access-logs', expiration: Duration.days(props.accessLogRetentionDays ?? 30) },
      ],
    });
    Validations.of(this.accessLogsBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'This bucket receives the server access logs of the service bucket; logging its own accesses would need a third bucket and record only S3 log delivery and the readers of these logs (CloudTrail has those).',
    });
    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: false,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'service-bucket/',
      lifecycleRules: [
        {
          id: 'expire-contexts',
          prefix: CONTEXT_PREFIX,
          expiration: Duration.days(2),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
        {
          // A backstop: deleting an export (or its build) removes its disk image at once.
          id: 'expire-artifacts',
          prefix: ARTIFACT_PREFIX,
          expiration: Duration.days(artifactDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });
  }

  get bucketName(): string {
    return this.bucket.bucketName;
  }

  /** Read and delete: clean-up of a run's context. */
  grantReadDelete(grantee: iam.IGrantable): void {
    this.grant(grantee, CONTEXT_PREFIX, ['s3:GetObject', 's3:DeleteObject']);
  }

  /** Read, write and delete: the step handler that prepares and removes contexts. */
  grantReadWrite(grantee: iam.IGrantable): void {
    this.grant(grantee, CONTEXT_PREFIX, ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']);
  }

  /** s3:PutObject on artifacts/* only: the export step, which presigns each run's disk-image PUT. */
  grantArtifactsWrite(grantee: iam.IGrantable): void {
    const objects = this.bucket.arnForObjects(`${ARTIFACT_PREFIX}*`);
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [objects] }),
    );
    acknowledgeWildcardResource(grantee, objects, ARTIFACTS_REASON);
  }

  /** s3:GetObject on artifacts/* and listing that prefix: the export step, presigned downloads. */
  grantArtifactsRead(grantee: iam.IGrantable): void {
    this.grant(grantee, ARTIFACT_PREFIX, ['s3:GetObject']);
  }

  /** Read and delete disk images: deleting an export (or its build) removes its object. */
  grantArtifactsReadDelete(grantee: iam.IGrantable): void {
    this.grant(grantee, ARTIFACT_PREFIX, ['s3:GetObject', 's3:DeleteObject']);
  }

  private grant(grantee: iam.IGrantable, prefix: string, objectActions: string[]): void {
    const objects = this.bucket.arnForObjects(`${prefix}*`);
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: objectActions, resources: [objects] }),
    );
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [this.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
      }),
    );
    acknowledgeWildcardResource(
      grantee,
      objects,
      prefix === CONTEXT_PREFIX
        ? `Each run's build context is a set of objects under ${CONTEXT_PREFIX}<org>/<run>/ whose names are known only at run time; access is limited to that prefix of this one bucket.`
        : ARTIFACTS_REASON,
    );
  }
}

const ARTIFACTS_REASON = `Each export's disk image is an object under ${ARTIFACT_PREFIX}<org>/<run>/ whose name is known only at run time; access is limited to that prefix of this one bucket.`;

/** Secrets Manager ARN pattern of the repository passwords (`<prefix>/<org>/repositories/<name>-…`). */
export function repositoryPasswordsArn(scope: Construct, secrets: ServiceSecrets): string {
  return Stack.of(scope).formatArn({
    service: 'secretsmanager',
    resource: 'secret',
    resourceName: `${secrets.prefix}/*/repositories/*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}

/** secretsmanager:GetSecretValue on the repository passwords only, not the service's other secrets. */
export function grantRepositoryPasswordsRead(
  grantee: iam.IGrantable,
  scope: Construct,
  secrets: ServiceSecrets,
  who: string,
): void {
  const passwords = repositoryPasswordsArn(scope, secrets);
  grantee.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [passwords] }),
  );
  acknowledgeWildcardResource(
    grantee,
    passwords,
    `${who} log in to registries with repository passwords, secrets created at run time as ${secrets.prefix}/<org>/repositories/<name>/<random>; only those may be read, not the service's other secrets.`,
  );
}

// ---------------------------------------------------------------------------------------------------

export interface BuildersProps {
  /** The image the projects run, pinned by digest. */
  readonly image: BuilderImage;
  /** Architectures with a project; aarch64 needs a region with CodeBuild's ARM_CONTAINER. */
  readonly architectures: BuilderArch[];
  readonly computeType: BuilderComputeType;
  readonly timeoutMinutes: number;
  readonly logRetention: logs.RetentionDays;
}

/**
 * ARM compute of the same size class. ARM Medium exists only in some regions, ARM Large everywhere
 * CodeBuild offers ARM, so Medium becomes Large; the other classes exist for both architectures.
 */
export function armComputeType(computeType: BuilderComputeType): codebuild.ComputeType {
  return computeType === 'BUILD_GENERAL1_MEDIUM'
    ? codebuild.ComputeType.LARGE
    : (computeType as codebuild.ComputeType);
}

/** CodeBuild rejects inline buildspecs longer than this (InvalidInputException, undocumented). */
export const MAX_INLINE_BUILDSPEC_LENGTH = 25_600;

/**
 * The buildspec of every builder job: functions/builder/buildspec.yml, the file the local sandbox and the
 * EKS pods run too (through functions/builder/codebuild-run.sh). Its scripts are in the builder image.
 */
export function builderBuildSpec(): codebuild.BuildSpec {
  return codebuild.BuildSpec.fromObject(loadBuildspec() as unknown as Record<string, unknown>);
}

/** The privileged CodeBuild projects that run the builder script, one per architecture. */
export class Builders extends Construct {
  /** Receives each run as the stream `<execution name>/<arch>` (set by the state machine). */
  readonly logGroup: logs.LogGroup;
  readonly role: iam.Role;
  readonly x86_64: codebuild.Project;
  /** Absent where the region has no ARM_CONTAINER (context `aarch64Builders: false`). */
  readonly aarch64?: codebuild.Project;

  constructor(scope: Construct, id: string, props: BuildersProps) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention });

    // One role for both projects, written here in full: the projects get it without policy updates,
    // so CodeBuild's defaults (report groups, /aws/codebuild/* log groups) are not added to it.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('codebuild.amazonaws.com'),
      description: `Role of the builders of ${this.node.path}`,
    });
    this.logGroup.grantWrite(this.role);
    // The builder image, pulled by CodeBuild with this role.
    props.image.repository.grantPull(this.role);
    // No S3 and no Secrets Manager permission: a run reads its context and its registry passwords and
    // writes its disk image through the URLs its trusted step presigned (README, "Authority of a run").

    const common = {
      buildSpec: builderBuildSpec(),
      role: this.role.withoutPolicyUpdates(),
      timeout: Duration.minutes(props.timeoutMinutes),
      logging: { cloudWatch: { logGroup: this.logGroup } },
    };
    this.x86_64 = new codebuild.Project(this, 'X86_64', {
      ...common,
      description:
        'ImageBuilder: buildah builds and bootc-image-builder exports for x86_64 (functions/builder)',
      environment: {
        buildImage: props.image.buildImage('x86_64'),
        computeType: props.computeType as codebuild.ComputeType,
        privileged: true,
      },
    });
    if (props.architectures.includes('aarch64')) {
      this.aarch64 = new codebuild.Project(this, 'Aarch64', {
        ...common,
        description:
          'ImageBuilder: buildah builds and bootc-image-builder exports for aarch64 (functions/builder)',
        environment: {
          buildImage: props.image.buildImage('aarch64'),
          computeType: armComputeType(props.computeType),
          privileged: true,
        },
      });
    }
    for (const project of this.projects) {
      acknowledge(project, {
        'AwsSolutions-CB5':
          'The projects run the service’s own builder image (functions/builder/Containerfile), built by the stack into its ECR repository and pinned by digest: CodeBuild’s images do not package buildah.',
        'AwsSolutions-CB3':
          'buildah and bootc-image-builder need privileged mode (overlay mounts, chroot isolation of RUN steps, loop devices for disk images); the projects run only the buildspec and scripts of this repository in its builder image.',
        'AwsSolutions-CB4':
          'The projects produce no CodeBuild artifacts (images go to registries, disk images to the service bucket with S3-managed encryption, logs to CloudWatch Logs); CodeBuild encrypts its working data with the AWS-managed key, and a customer-managed key would protect nothing more.',
      });
    }
  }

  get projects(): codebuild.Project[] {
    return this.aarch64 ? [this.x86_64, this.aarch64] : [this.x86_64];
  }

  /** Starting, stopping and following builds of these projects (Step Functions `startBuild.sync`). */
  grantRunBuilds(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['codebuild:StartBuild', 'codebuild:StopBuild', 'codebuild:BatchGetBuilds'],
        resources: this.projects.map((p) => p.projectArn),
      }),
    );
  }

  /** logs:FilterLogEvents on the builders' log group: the `GET …/log` of the API and failure messages. */
  grantReadLogs(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['logs:FilterLogEvents'], resources: [this.logGroup.logGroupArn] }),
    );
  }
}

// ---------------------------------------------------------------------------------------------------

export interface ImageBuildWorkflowProps {
  readonly stage: string;
  readonly data: DataStore;
  readonly secrets: ServiceSecrets;
  readonly events: ServiceEvents;
  readonly contextStore: BuildContextStore;
  readonly builders: Builders;
  /** Environment every function of the service gets (table, secrets prefix, stage…). */
  readonly environment: Record<string, string>;
  readonly timeoutMinutes: number;
  readonly logRetention: logs.RetentionDays;
  readonly flightctlSecretArn?: string;
  readonly agentRepoUrl?: string;
  /** Run the jobs as Kubernetes Jobs on this EKS runner instead of on the Builders' CodeBuild projects. */
  readonly eks?: EksRunner;
  /** Exports waiting for a build are started by its step handler (and by the reconciler's sweep). */
  readonly exportWorkflow?: ImageExportWorkflow;
  /** No heartbeat for this long → Failed "timed out" (the reconciler's sweep). @default 600 */
  readonly heartbeatTimeoutSeconds?: number;
}

export class ImageBuildWorkflow extends Construct {
  /** `imagebuilder-<stage>-image-build`: fixed, so that execution ARNs can be granted without tokens. */
  readonly stateMachineName: string;
  /** The handler of the state machine's own steps (functions/workflows/image-build.ts). */
  readonly stepFunction: ApiFunction;
  readonly stateMachine: sfn.StateMachine;
  readonly logGroup: logs.LogGroup;
  /** Executions that end ABORTED, TIMED_OUT or FAILED → the step handler (`ended`). */
  readonly executionEndedRule: events.Rule;
  /** Starts runs left Pending, fails silent ones (functions/workflows/reconciler.ts). */
  readonly reconciler: ApiFunction;
  /** Records the builders' heartbeats as lastSeen (functions/workflows/heartbeat.ts). */
  readonly heartbeat: ApiFunction;
  /** Feeds the heartbeat handler the `[heartbeat]` lines of the builders' log group. */
  readonly heartbeatFilter: logs.SubscriptionFilter;

  constructor(scope: Construct, id: string, props: ImageBuildWorkflowProps) {
    super(scope, id);
    const stateMachineName = `imagebuilder-${props.stage}-image-build`;
    this.stateMachineName = stateMachineName;
    const exportMachineEnv: Record<string, string> = props.exportWorkflow
      ? { IMAGE_EXPORT_STATE_MACHINE_ARN: props.exportWorkflow.stateMachineArn }
      : {};

    this.stepFunction = new ApiFunction(this, 'Steps', {
      entry: 'functions/workflows/image-build.ts',
      description: 'ImageBuilder workflow: steps of the image build state machine',
      timeout: Duration.seconds(60),
      logRetention: props.logRetention,
      environment: {
        ...props.environment,
        BUILD_CONTEXT_BUCKET: props.contextStore.bucketName,
        EVENT_BUS_NAME: props.events.busName,
        BUILDER_LOG_GROUP: props.builders.logGroup.logGroupName,
        BUILD_TIMEOUT_SECONDS: String(props.timeoutMinutes * 60),
        BUILD_HEARTBEAT_SECONDS: String(BUILD_HEARTBEAT_SECONDS),
        ...(props.flightctlSecretArn ? { FLIGHTCTL_SECRET_ARN: props.flightctlSecretArn } : {}),
        ...(props.agentRepoUrl ? { AGENT_REPO_URL: props.agentRepoUrl } : {}),
        ...exportMachineEnv,
      },
    });
    const step = this.stepFunction;
    props.exportWorkflow?.grantStart(step);
    props.data.grantReadWriteData(step);
    props.secrets.grantTokenKeyRead(step);
    props.contextStore.grantReadWrite(step);
    // The run's repository passwords, handed to it as a presigned object (run-credentials.ts).
    grantRepositoryPasswordsRead(step, this, props.secrets, 'The build steps');
    props.events.grantPutEvents(step);
    props.builders.grantReadLogs(step);
    if (props.flightctlSecretArn) {
      secretsmanager.Secret.fromSecretCompleteArn(
        this,
        'FlightctlSecret',
        props.flightctlSecretArn,
      ).grantRead(step);
    }
    const machine = workflowMachine(this, {
      stateMachineName,
      definitionFile: IMAGE_BUILD_ASL,
      stepPlaceholder: 'BuildStepFunctionArn',
      step,
      builders: props.builders,
      events: props.events,
      logRetention: props.logRetention,
      what: 'Image build',
      ...(props.eks ? { eks: props.eks } : {}),
    });
    this.logGroup = machine.logGroup;
    this.stateMachine = machine.stateMachine;
    this.executionEndedRule = machine.executionEndedRule;

    // The dispatch safety net: a crash between the API's table write and StartExecution leaves a run
    // Pending; this sweep starts it (execution names derive from uid and generation, so a run that
    // already started is not started twice).
    // It also fails runs whose builder sent no heartbeat for the heartbeat timeout, and stops them.
    this.reconciler = new ApiFunction(this, 'Reconciler', {
      entry: 'functions/workflows/reconciler.ts',
      description: 'ImageBuilder workflow: starts runs left Pending, fails runs whose builder went silent',
      timeout: Duration.seconds(60),
      logRetention: props.logRetention,
      environment: {
        ...props.environment,
        IMAGE_BUILD_STATE_MACHINE_ARN: this.stateMachine.stateMachineArn,
        ...exportMachineEnv,
        EVENT_BUS_NAME: props.events.busName,
        BUILD_CONTEXT_BUCKET: props.contextStore.bucketName,
        BUILD_HEARTBEAT_SECONDS: String(BUILD_HEARTBEAT_SECONDS),
        // Sizes the quota slots it drops as leftovers (two builder jobs' worth of the build timeout).
        BUILD_TIMEOUT_SECONDS: String(props.timeoutMinutes * 60),
        HEARTBEAT_TIMEOUT_SECONDS: String(props.heartbeatTimeoutSeconds ?? DEFAULT_HEARTBEAT_TIMEOUT_SECONDS),
      },
    });
    // Failing a run writes it (and its waiting exports, its quota slot), publishes the event, drops a
    // failed export's disk image, and stops the execution.
    props.data.grantReadWriteData(this.reconciler);
    props.events.grantPutEvents(this.reconciler);
    props.contextStore.grantArtifactsReadDelete(this.reconciler);
    this.grantStartStop(this.reconciler);
    props.exportWorkflow?.grantStartStop(this.reconciler);

    this.heartbeat = new ApiFunction(this, 'Heartbeat', {
      entry: 'functions/workflows/heartbeat.ts',
      description: "ImageBuilder workflow: the builders' heartbeats → lastSeen",
      timeout: Duration.seconds(30),
      logRetention: props.logRetention,
      environment: props.environment,
    });
    props.data.grantReadWriteData(this.heartbeat);
    this.heartbeatFilter = new logs.SubscriptionFilter(this, 'HeartbeatFilter', {
      logGroup: props.builders.logGroup,
      destination: new logsDestinations.LambdaDestination(this.heartbeat.function),
      filterPattern: logs.FilterPattern.literal(HEARTBEAT_FILTER_PATTERN),
      filterName: 'imagebuilder-heartbeats',
    });
    new events.Rule(this, 'ReconcileSchedule', {
      description: 'Starts build and export runs left Pending, fails runs whose builder went silent',
      schedule: events.Schedule.rate(Duration.minutes(2)),
      // A missed sweep is covered by the next one: no retries, no dead letters.
      targets: [new targets.LambdaFunction(this.reconciler.function, { retryAttempts: 0 })],
    });
  }

  get stateMachineArn(): string {
    return this.stateMachine.stateMachineArn;
  }

  /** StartExecution on the state machine, StopExecution on its executions (cancel, delete). */
  grantStartStop(grantee: iam.IGrantable): void {
    grantWorkflowStartStop(this.stateMachine, this.stateMachineName, grantee, 'a run');
  }
}
