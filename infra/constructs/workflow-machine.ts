// What the build and export workflows share in AWS: a state machine loaded from its ASL file with the
// step Lambda and the builder projects substituted, logging and tracing on, the permissions a file
// definition needs, and the rule that reports executions ending outside their Catch paths to the step
// Lambda (whose failed asynchronous invocations go to the dead-letter queue).
import { ArnFormat, Stack, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import type { ApiFunction } from './api-function.js';
import type { Builders } from './build-workflow.js';
import { type EksRunner, UNUSED_EKS_SUBSTITUTIONS } from './eks-runner.js';
import { type ServiceEvents, TARGET_RETRY } from './events.js';
import { acknowledgeWildcardResource } from './nag.js';

export interface WorkflowMachineProps {
  readonly stateMachineName: string;
  /** The ASL file (statemachines/*.asl.json). */
  readonly definitionFile: string;
  /** The placeholder the ASL uses for the step Lambda (BuildStepFunctionArn, ExportStepFunctionArn). */
  readonly stepPlaceholder: string;
  readonly step: ApiFunction;
  readonly builders: Builders;
  readonly events: ServiceEvents;
  readonly logRetention: logs.RetentionDays;
  /** "Image build", "Image export": names the rule. */
  readonly what: string;
  /** The EKS runner, when jobs run there (`${Runner}` = eks); else they run on the Builders' projects. */
  readonly eks?: EksRunner;
}

export interface WorkflowMachine {
  readonly stateMachine: sfn.StateMachine;
  readonly logGroup: logs.LogGroup;
  readonly executionEndedRule: events.Rule;
}

export function workflowMachine(scope: Construct, props: WorkflowMachineProps): WorkflowMachine {
  const stack = Stack.of(scope);
  const step = props.step;
  // Invoked asynchronously only by the execution-ended rule: an event that still fails after Lambda's
  // own retries goes to the dead-letter queue rather than being dropped.
  step.function.configureAsyncInvoke({
    onFailure: new destinations.SqsDestination(props.events.deadLetterQueue),
    retryAttempts: 2,
    maxEventAge: TARGET_RETRY.maxEventAge,
  });
  const logGroup = new logs.LogGroup(scope, 'Logs', { retention: props.logRetention });
  const stateMachine = new sfn.StateMachine(scope, 'StateMachine', {
    stateMachineName: props.stateMachineName,
    stateMachineType: sfn.StateMachineType.STANDARD,
    definitionBody: sfn.DefinitionBody.fromFile(props.definitionFile),
    // One definition for both runners: `${Runner}` routes each job to its CodeBuild or its runJob state.
    definitionSubstitutions: {
      [props.stepPlaceholder]: step.function.functionArn,
      BuildProjectX86_64: props.builders.x86_64.projectName,
      // Without aarch64 builders the API refuses aarch64 builds; the state is never entered.
      BuildProjectAarch64: props.builders.aarch64?.projectName ?? 'aarch64-builders-not-deployed',
      BuilderLogGroupName: props.builders.logGroup.logGroupName,
      Runner: props.eks ? 'eks' : 'codebuild',
      ...(props.eks ? props.eks.substitutions : UNUSED_EKS_SUBSTITUTIONS),
    },
    // Execution data stays out of the log: inputs and states name repositories and secret ARNs.
    logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    tracingEnabled: true,
  });
  const machineRole = stateMachine.role;
  // The definition comes from a file, so CDK cannot derive the role's permissions from its tasks.
  machineRole.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [step.function.functionArn] }),
  );
  // Only the runner this deployment uses: the other's states are never entered.
  if (props.eks) {
    props.eks.grantRunJobs(machineRole, props.stepPlaceholder.replace(/FunctionArn$/, ''));
  } else {
    props.builders.grantRunBuilds(machineRole);
    // `codebuild:startBuild.sync` follows the build through a rule that Step Functions manages.
    machineRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [
          stack.formatArn({
            service: 'events',
            resource: 'rule',
            resourceName: 'StepFunctionsGetEventForCodeBuildStartBuildRule',
          }),
        ],
      }),
    );
  }
  Validations.of(machineRole).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'Execution logging and X-Ray tracing: the CloudWatch Logs delivery actions (logs:CreateLogDelivery…) and xray:PutTraceSegments support no resource-level permissions, so their resource is "*".',
  });
  // An execution stopped (cancel, delete), timed out or failed outside its Catch paths still ends the
  // run: the step handler records Canceled/Failed. The execution input is a JSON string in detail.input,
  // which an input transformer cannot parse, so the handler receives the whole event.
  const executionEndedRule = new events.Rule(scope, 'ExecutionEnded', {
    description: `${props.what} executions that end ABORTED, TIMED_OUT or FAILED (${props.stateMachineName})`,
    eventPattern: {
      source: ['aws.states'],
      detailType: ['Step Functions Execution Status Change'],
      detail: { stateMachineArn: [stateMachine.stateMachineArn], status: ['ABORTED', 'TIMED_OUT', 'FAILED'] },
    },
    targets: [
      new targets.LambdaFunction(step.function, {
        deadLetterQueue: props.events.deadLetterQueue,
        ...TARGET_RETRY,
      }),
    ],
  });
  return { stateMachine, logGroup, executionEndedRule };
}

/** StartExecution on a workflow's state machine, StopExecution on its executions (cancel, delete). */
export function grantWorkflowStartStop(
  stateMachine: sfn.StateMachine,
  stateMachineName: string,
  grantee: iam.IGrantable,
  what: string,
): void {
  stateMachine.grantStartExecution(grantee);
  const executions = Stack.of(stateMachine).formatArn({
    service: 'states',
    resource: 'execution',
    resourceName: `${stateMachineName}:*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
  grantee.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ['states:StopExecution'], resources: [executions] }),
  );
  acknowledgeWildcardResource(
    grantee,
    executions,
    `Cancel and delete stop the execution of ${what}, named <uid>-<generation> at run time; StopExecution is limited to executions of this one state machine.`,
  );
}
