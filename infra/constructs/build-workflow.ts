// The build workflow in AWS, one construct per concern:
//   BuildContextStore  the S3 bucket the step handler writes each run's Containerfile and files to
//   Builders           the builders' log group and two privileged CodeBuild projects (x86_64, aarch64)
//                      running functions/builder/build-image.sh
//   ImageBuildWorkflow the step handler, the state machine of statemachines/image-build.asl.json, the
//                      rule that records executions ending outside the definition, and the sweep that
//                      starts runs a crash left Pending
import * as path from 'node:path';
import { ArnFormat, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { BuilderComputeType } from '../imagebuilder.js';
import { ApiFunction, PROJECT_ROOT } from './api-function.js';
import type { DataStore } from './data.js';
import { type ServiceEvents, TARGET_RETRY } from './events.js';
import { acknowledgeWildcardResource } from './nag.js';
import type { ServiceSecrets } from './secrets.js';

export const BUILDER_SCRIPT = path.join(PROJECT_ROOT, 'functions/builder/build-image.sh');
export const IMAGE_BUILD_ASL = path.join(PROJECT_ROOT, 'statemachines/image-build.asl.json');
/** Key prefix of build contexts (functions/commons/domain/build-plan.ts `contextPrefix`). */
export const CONTEXT_PREFIX = 'contexts/';
const BUILD_HEARTBEAT_SECONDS = 30;

// ---------------------------------------------------------------------------------------------------

/** Build contexts: one prefix per run, deleted by the step handler at the end, expired as a backstop. */
export class BuildContextStore extends Construct {
  readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: false,
      lifecycleRules: [
        {
          id: 'expire-contexts',
          prefix: CONTEXT_PREFIX,
          expiration: Duration.days(2),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });
    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'Build contexts live for one run (deleted at its end, expired after 2 days) and only the step handler, the builders and the image-builds API touch them; object access is audited with CloudTrail data events, which name the IAM principal, rather than best-effort server access logs in a second bucket.',
    });
  }

  get bucketName(): string {
    return this.bucket.bucketName;
  }

  /** s3:GetObject on contexts/* and listing that prefix (`aws s3 cp --recursive`). */
  grantRead(grantee: iam.IGrantable): void {
    this.grant(grantee, ['s3:GetObject']);
  }

  /** Read and delete: clean-up of a run's context. */
  grantReadDelete(grantee: iam.IGrantable): void {
    this.grant(grantee, ['s3:GetObject', 's3:DeleteObject']);
  }

  /** Read, write and delete: the step handler that prepares and removes contexts. */
  grantReadWrite(grantee: iam.IGrantable): void {
    this.grant(grantee, ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']);
  }

  private grant(grantee: iam.IGrantable, objectActions: string[]): void {
    const objects = this.bucket.arnForObjects(`${CONTEXT_PREFIX}*`);
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: objectActions, resources: [objects] }),
    );
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [this.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${CONTEXT_PREFIX}*`] } },
      }),
    );
    acknowledgeWildcardResource(
      grantee,
      objects,
      `Each run's build context is a set of objects under ${CONTEXT_PREFIX}<org>/<run>/ whose names are known only at run time; access is limited to that prefix of this one bucket.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------

export interface BuildersProps {
  readonly contextStore: BuildContextStore;
  readonly secrets: ServiceSecrets;
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
 * The buildspec of both projects. The builder script is an S3 asset (`IB_BUILDER_SCRIPT_S3`, a project
 * variable): embedding it would exceed CodeBuild's inline buildspec limit, and as an asset its content
 * hash is in the template, so a deployment still pins the exact script version.
 */
export function builderBuildSpec(): codebuild.BuildSpec {
  return codebuild.BuildSpec.fromObject({
    version: '0.2',
    env: { shell: 'bash', 'exported-variables': ['IB_DIGEST'] },
    phases: {
      install: {
        commands: [
          'command -v buildah >/dev/null 2>&1 || dnf install -y -q buildah',
          // containers-storage on the build volume: overlay cannot stack on the image's own overlayfs
          // root; if the build volume is overlayfs too, fall back to vfs (slower, always works).
          [
            'IB_GRAPHROOT="$(dirname "$CODEBUILD_SRC_DIR")/containers-storage"',
            'IB_DRIVER=overlay',
            '[ "$(stat -f -c %T "$(dirname "$CODEBUILD_SRC_DIR")")" = overlayfs ] && IB_DRIVER=vfs',
            'mkdir -p /etc/containers "$IB_GRAPHROOT"',
            'printf \'[storage]\\ndriver = "%s"\\ngraphroot = "%s"\\nrunroot = "/run/containers/storage"\\n\' "$IB_DRIVER" "$IB_GRAPHROOT" > /etc/containers/storage.conf',
          ].join('; '),
          'aws s3 cp --only-show-errors "$IB_BUILDER_SCRIPT_S3" /usr/local/bin/ib-build-image && chmod 0755 /usr/local/bin/ib-build-image',
        ],
      },
      pre_build: {
        commands: [
          'mkdir -p "$CODEBUILD_SRC_DIR/ctx"',
          'aws s3 cp --recursive --only-show-errors "s3://$IB_CONTEXT_BUCKET/$IB_CONTEXT_PREFIX" "$CODEBUILD_SRC_DIR/ctx/"',
        ],
      },
      build: {
        commands: [
          'IB_CONTEXT_DIR="$CODEBUILD_SRC_DIR/ctx" IB_DIGEST_FILE="$CODEBUILD_SRC_DIR/ib-digest" ib-build-image',
          'export IB_DIGEST="$(cat "$CODEBUILD_SRC_DIR/ib-digest")"',
        ],
      },
    },
  });
}

/** The privileged CodeBuild projects that run the builder script, one per architecture. */
export class Builders extends Construct {
  /** Receives each run as the stream `<execution name>/<arch>` (set by the state machine). */
  readonly logGroup: logs.LogGroup;
  readonly role: iam.Role;
  /** functions/builder/build-image.sh, downloaded by each build. */
  readonly script: s3assets.Asset;
  readonly x86_64: codebuild.Project;
  readonly aarch64: codebuild.Project;

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
    props.contextStore.grantRead(this.role);
    // Registry passwords, resolved by CodeBuild from the SECRETS_MANAGER variables of each run.
    const passwords = Stack.of(this).formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${props.secrets.prefix}/*/repositories/*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [passwords] }),
    );
    acknowledgeWildcardResource(
      this.role,
      passwords,
      `Builds log in to registries with repository passwords, secrets created at run time as ${props.secrets.prefix}/<org>/repositories/<name>/<random>; the builders may only read those, not the service's other secrets.`,
    );

    this.script = new s3assets.Asset(this, 'Script', { path: BUILDER_SCRIPT });
    // That one object, not the asset bucket (Asset.grantRead would allow s3:List* and s3:GetObject*).
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [this.script.bucket.arnForObjects(this.script.s3ObjectKey)],
      }),
    );

    const common = {
      buildSpec: builderBuildSpec(),
      environmentVariables: { IB_BUILDER_SCRIPT_S3: { value: this.script.s3ObjectUrl } },
      role: this.role.withoutPolicyUpdates(),
      timeout: Duration.minutes(props.timeoutMinutes),
      logging: { cloudWatch: { logGroup: this.logGroup } },
    };
    this.x86_64 = new codebuild.Project(this, 'X86_64', {
      ...common,
      description: 'ImageBuilder: buildah builds for x86_64 (functions/builder/build-image.sh)',
      environment: {
        buildImage: codebuild.LinuxBuildImage.AMAZON_LINUX_2023_5,
        computeType: props.computeType as codebuild.ComputeType,
        privileged: true,
      },
    });
    this.aarch64 = new codebuild.Project(this, 'Aarch64', {
      ...common,
      description: 'ImageBuilder: buildah builds for aarch64 (functions/builder/build-image.sh)',
      environment: {
        buildImage: codebuild.LinuxArmBuildImage.AMAZON_LINUX_2023_STANDARD_3_0,
        computeType: armComputeType(props.computeType),
        privileged: true,
      },
    });
    for (const project of [this.x86_64, this.aarch64]) {
      Validations.of(project).acknowledge({
        id: 'AwsSolutions-CB3',
        reason:
          'buildah needs privileged mode to build and mount container images (overlay mounts, chroot isolation of RUN steps); the project runs only the builder script of this repository on AWS-managed images.',
      });
      Validations.of(project).acknowledge({
        id: 'AwsSolutions-CB4',
        reason:
          'The projects produce no artifacts (images go to registries, logs to CloudWatch Logs); CodeBuild encrypts its working data with the AWS-managed key, and a customer-managed key would protect nothing more.',
      });
    }
  }

  get projects(): codebuild.Project[] {
    return [this.x86_64, this.aarch64];
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
  /** Starts runs left Pending (functions/workflows/reconciler.ts). */
  readonly reconciler: ApiFunction;

  constructor(scope: Construct, id: string, props: ImageBuildWorkflowProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const stateMachineName = `imagebuilder-${props.stage}-image-build`;
    this.stateMachineName = stateMachineName;

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
      },
    });
    const step = this.stepFunction;
    props.data.grantReadWriteData(step);
    props.secrets.grantTokenKeyRead(step);
    props.contextStore.grantReadWrite(step);
    props.events.grantPutEvents(step);
    props.builders.grantReadLogs(step);
    if (props.flightctlSecretArn) {
      secretsmanager.Secret.fromSecretCompleteArn(
        this,
        'FlightctlSecret',
        props.flightctlSecretArn,
      ).grantRead(step);
    }
    // Invoked asynchronously only by the execution-ended rule: an event that still fails after Lambda's
    // own retries goes to the dead-letter queue rather than being dropped.
    step.function.configureAsyncInvoke({
      onFailure: new destinations.SqsDestination(props.events.deadLetterQueue),
      retryAttempts: 2,
      maxEventAge: TARGET_RETRY.maxEventAge,
    });

    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromFile(IMAGE_BUILD_ASL),
      definitionSubstitutions: {
        BuildStepFunctionArn: step.function.functionArn,
        BuildProjectX86_64: props.builders.x86_64.projectName,
        BuildProjectAarch64: props.builders.aarch64.projectName,
        BuilderLogGroupName: props.builders.logGroup.logGroupName,
      },
      // Execution data stays out of the log: inputs and states name repositories and secret ARNs.
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
      tracingEnabled: true,
    });
    const machineRole = this.stateMachine.role;
    // The definition comes from a file, so CDK cannot derive the role's permissions from its tasks.
    machineRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [step.function.functionArn] }),
    );
    props.builders.grantRunBuilds(machineRole);
    // `codebuild:startBuild.sync` follows the build through a rule that Step Functions manages.
    machineRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [
          stack.formatArn({
            service: 'events',
            resource: 'rule',
            resourceName: 'StepFunctionsGetEventsForCodeBuildStartBuildRule',
          }),
        ],
      }),
    );
    Validations.of(machineRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Execution logging and X-Ray tracing: the CloudWatch Logs delivery actions (logs:CreateLogDelivery…) and xray:PutTraceSegments support no resource-level permissions, so their resource is "*".',
    });

    // An execution stopped (cancel, delete), timed out or failed outside its Catch paths still ends the
    // build: the step handler records Canceled/Failed. The execution input is a JSON string in
    // detail.input, which an input transformer cannot parse, so the handler receives the whole event.
    this.executionEndedRule = new events.Rule(this, 'ExecutionEnded', {
      description: `Image build executions that end ABORTED, TIMED_OUT or FAILED (${stateMachineName})`,
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: {
          stateMachineArn: [this.stateMachine.stateMachineArn],
          status: ['ABORTED', 'TIMED_OUT', 'FAILED'],
        },
      },
      targets: [
        new targets.LambdaFunction(step.function, {
          deadLetterQueue: props.events.deadLetterQueue,
          ...TARGET_RETRY,
        }),
      ],
    });

    // The dispatch safety net: a crash between the API's table write and StartExecution leaves a run
    // Pending; this sweep starts it (execution names derive from uid and generation, so a run that
    // already started is not started twice).
    this.reconciler = new ApiFunction(this, 'Reconciler', {
      entry: 'functions/workflows/reconciler.ts',
      description: 'ImageBuilder workflow: starts runs left Pending',
      timeout: Duration.seconds(60),
      logRetention: props.logRetention,
      environment: {
        ...props.environment,
        IMAGE_BUILD_STATE_MACHINE_ARN: this.stateMachine.stateMachineArn,
      },
    });
    props.data.grantReadData(this.reconciler);
    this.stateMachine.grantStartExecution(this.reconciler);
    new events.Rule(this, 'ReconcileSchedule', {
      description: 'Starts image build runs left Pending for more than a minute',
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
    this.stateMachine.grantStartExecution(grantee);
    const executions = Stack.of(this).formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${this.stateMachineName}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['states:StopExecution'], resources: [executions] }),
    );
    acknowledgeWildcardResource(
      grantee,
      executions,
      'Cancel and delete stop the execution of a run, named <uid>-<generation> at run time; StopExecution is limited to executions of this one state machine.',
    );
  }
}
