// The export workflow in AWS, one construct per concern:
//   VmImport            the `vmimport` service role VM Import/Export assumes for the `ami` format
//                       (bootc-image-builder's AWS upload: import snapshot, register image)
//   ImageExportWorkflow the step handler, the state machine of statemachines/image-export.asl.json and the
//                       rule that records executions ending outside the definition
// Conversions run on the builders' CodeBuild projects (infra/constructs/build-workflow.ts, `IB_JOB=export`);
// disk images go to the service bucket under `artifacts/`.
import * as path from 'node:path';
import { ArnFormat, Duration, Stack, Validations } from 'aws-cdk-lib';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ApiFunction, PROJECT_ROOT } from './api-function.js';
import {
  ARTIFACT_PREFIX,
  BUILD_HEARTBEAT_SECONDS,
  type BuildContextStore,
  type Builders,
  grantRepositoryPasswordsRead,
} from './build-workflow.js';
import type { DataStore } from './data.js';
import type { EksRunner } from './eks-runner.js';
import type { ServiceEvents } from './events.js';
import { acknowledgeWildcardResource } from './nag.js';
import type { ServiceSecrets } from './secrets.js';
import { grantWorkflowStartStop, workflowMachine } from './workflow-machine.js';

export const IMAGE_EXPORT_ASL = path.join(PROJECT_ROOT, 'statemachines/image-export.asl.json');
/** The role name VM Import/Export uses unless told otherwise (bootc-image-builder does not tell it). */
export const VMIMPORT_ROLE_NAME = 'vmimport';

// ---------------------------------------------------------------------------------------------------

export interface VmImportProps {
  readonly contextStore: BuildContextStore;
  /** Create the account-wide `vmimport` role; false when the account already has one. @default true */
  readonly createRole?: boolean;
}

/**
 * The `ami` format: bootc-image-builder uploads the raw disk to S3, then VM Import/Export (assuming the
 * `vmimport` role) imports it as a snapshot, and the builder registers an AMI from it.
 */
export class VmImport extends Construct {
  /** The `vmimport` role: created here, or the account's existing one. */
  readonly role: iam.IRole;

  constructor(scope: Construct, id: string, props: VmImportProps) {
    super(scope, id);
    const stack = Stack.of(this);
    if (props.createRole === false) {
      this.role = iam.Role.fromRoleName(this, 'Role', VMIMPORT_ROLE_NAME);
      return;
    }
    const bucket = props.contextStore.bucket;
    const snapshots = ec2Arn(stack, 'snapshot/*', false);
    const role = new iam.Role(this, 'Role', {
      roleName: VMIMPORT_ROLE_NAME,
      description: 'VM Import/Export service role: imports the disk images of ImageBuilder ami exports',
      assumedBy: new iam.ServicePrincipal('vmie.amazonaws.com', {
        conditions: { StringEquals: { 'sts:ExternalId': VMIMPORT_ROLE_NAME } },
      }),
    });
    const artifacts = bucket.arnForObjects(`${ARTIFACT_PREFIX}*`);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetBucketLocation', 's3:ListBucket'],
        resources: [bucket.bucketArn],
      }),
    );
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [artifacts] }));
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ec2:ModifySnapshotAttribute', 'ec2:CopySnapshot'],
        resources: [snapshots],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ec2:RegisterImage'],
        resources: [snapshots, ec2Arn(stack, 'image/*', false)],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ec2:DescribeImages', 'ec2:DescribeSnapshots'],
        resources: ['*'],
      }),
    );
    this.role = role;
    acknowledgeWildcardResource(
      role,
      artifacts,
      `VM Import reads the disk image an ami export uploaded under ${ARTIFACT_PREFIX}<org>/<run>/, named at run time; only that prefix of the service bucket.`,
    );
    acknowledgeWildcardResource(
      role,
      snapshots,
      'VM Import creates the snapshot of each imported disk; snapshot ids exist only at run time, and EC2 snapshot ARNs carry no account, so this region is the narrowest scope.',
    );
    acknowledgeWildcardResource(
      role,
      ec2Arn(stack, 'image/*', false),
      'The AMI of an ami export is registered at run time; its id is not known before, so the scope is images of this region.',
    );
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ec2:DescribeImages and ec2:DescribeSnapshots support no resource-level permissions, so their resource is "*"; they only read.',
    });
  }

  /**
   * What bootc-image-builder's AWS upload does with the builders' role: import the snapshot (passing the
   * `vmimport` role and nothing else), follow the import task, register and tag the AMI.
   */
  grantImport(grantee: iam.IGrantable): void {
    const stack = Stack.of(this);
    const snapshots = ec2Arn(stack, 'snapshot/*', false);
    const images = ec2Arn(stack, 'image/*', false);
    const tasks = ec2Arn(stack, 'import-snapshot-task/*', true);
    const principal = grantee.grantPrincipal;
    principal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['ec2:ImportSnapshot'], resources: [tasks, snapshots] }),
    );
    principal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['ec2:RegisterImage'], resources: [images, snapshots] }),
    );
    principal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ec2:CreateTags'],
        resources: [images, snapshots, tasks],
        conditions: {
          StringEquals: { 'ec2:CreateAction': ['ImportSnapshot', 'RegisterImage', 'CreateTags'] },
        },
      }),
    );
    principal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ec2:DescribeImportSnapshotTasks', 'ec2:DescribeImages'],
        resources: ['*'],
      }),
    );
    principal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [this.role.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'vmie.amazonaws.com' } },
      }),
    );
    acknowledgeWildcardResource(
      grantee,
      snapshots,
      'ami exports import one snapshot each, its id known only at run time; EC2 snapshot ARNs carry no account, so this region is the narrowest scope.',
    );
    acknowledgeWildcardResource(
      grantee,
      images,
      'ami exports register one AMI each, its id known only at run time; the scope is images of this region.',
    );
    acknowledgeWildcardResource(
      grantee,
      tasks,
      'Each ami export starts one import-snapshot task, its id known only at run time; the scope is import tasks of this account and region.',
    );
    if (principal instanceof Construct) {
      Validations.of(principal).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'ec2:DescribeImportSnapshotTasks and ec2:DescribeImages (following an ami import) support no resource-level permissions, so their resource is "*"; they only read.',
      });
    }
  }
}

function ec2Arn(stack: Stack, resource: string, withAccount: boolean): string {
  const [type, name] = resource.split('/') as [string, string];
  return stack.formatArn({
    service: 'ec2',
    resource: type,
    resourceName: name,
    arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    ...(withAccount ? {} : { account: '' }),
  });
}

// ---------------------------------------------------------------------------------------------------

export interface ImageExportWorkflowProps {
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
  /** bootc-image-builder by digest; default: the one pinned in functions/commons/domain/export-plan.ts. */
  readonly bibImage?: string;
  /** Run the jobs as Kubernetes Jobs on this EKS runner instead of on the Builders' CodeBuild projects. */
  readonly eks?: EksRunner;
}

export class ImageExportWorkflow extends Construct {
  /** `imagebuilder-<stage>-image-export`: fixed, so that execution ARNs can be granted without tokens. */
  readonly stateMachineName: string;
  /** The handler of the state machine's own steps (functions/workflows/image-export.ts). */
  readonly stepFunction: ApiFunction;
  readonly stateMachine: sfn.StateMachine;
  readonly logGroup: logs.LogGroup;
  /** Executions that end ABORTED, TIMED_OUT or FAILED → the step handler (`ended`). */
  readonly executionEndedRule: events.Rule;

  constructor(scope: Construct, id: string, props: ImageExportWorkflowProps) {
    super(scope, id);
    const stateMachineName = `imagebuilder-${props.stage}-image-export`;
    this.stateMachineName = stateMachineName;

    this.stepFunction = new ApiFunction(this, 'Steps', {
      entry: 'functions/workflows/image-export.ts',
      description: 'ImageBuilder workflow: steps of the image export state machine',
      // Publish streams the disk image from S3 into the destination registry (the ORAS referrer).
      timeout: Duration.minutes(15),
      memorySize: 1024,
      logRetention: props.logRetention,
      environment: {
        ...props.environment,
        BUILD_CONTEXT_BUCKET: props.contextStore.bucketName,
        EVENT_BUS_NAME: props.events.busName,
        BUILDER_LOG_GROUP: props.builders.logGroup.logGroupName,
        BUILD_TIMEOUT_SECONDS: String(props.timeoutMinutes * 60),
        BUILD_HEARTBEAT_SECONDS: String(BUILD_HEARTBEAT_SECONDS),
        ...(props.bibImage ? { BIB_IMAGE: props.bibImage } : {}),
      },
    });
    const step = this.stepFunction;
    props.data.grantReadWriteData(step);
    // Reads the disk image for the referrer; deletes it when an export ends Canceled or Failed, or is
    // deleted with its build.
    props.contextStore.grantArtifactsReadDelete(step);
    // Presigns the one PUT of each run's disk image (and EKS result): a presigned URL can do what its
    // signer may, so the step, not the builders, holds the write on artifacts/.
    props.contextStore.grantArtifactsWrite(step);
    // The destination registry's password, for the referrer push and for the run (run-credentials.ts),
    // which reads it through a presigned object under contexts/.
    grantRepositoryPasswordsRead(step, this, props.secrets, 'The export steps');
    props.contextStore.grantReadWrite(step);
    props.events.grantPutEvents(step);
    props.builders.grantReadLogs(step);
    const machine = workflowMachine(this, {
      stateMachineName,
      definitionFile: IMAGE_EXPORT_ASL,
      stepPlaceholder: 'ExportStepFunctionArn',
      step,
      builders: props.builders,
      events: props.events,
      logRetention: props.logRetention,
      what: 'Image export',
      ...(props.eks ? { eks: props.eks } : {}),
    });
    this.logGroup = machine.logGroup;
    this.stateMachine = machine.stateMachine;
    this.executionEndedRule = machine.executionEndedRule;
  }

  get stateMachineArn(): string {
    return this.stateMachine.stateMachineArn;
  }

  /** StartExecution on the state machine: the build step starts the exports waiting for its build. */
  grantStart(grantee: iam.IGrantable): void {
    this.stateMachine.grantStartExecution(grantee);
  }

  /** StartExecution on the state machine, StopExecution on its executions (cancel, delete). */
  grantStartStop(grantee: iam.IGrantable): void {
    grantWorkflowStartStop(this.stateMachine, this.stateMachineName, grantee, 'an export');
  }
}
