// Workflows on AWS Step Functions: one state machine per kind, execution name "<uid>-<generation>", so a
// repeated start (API retry, reconciler) of the same run is harmless and a retry is a new execution.
import type { WorkflowRef, Workflows } from '../ports.js';
import { type AwsJsonClient, isAwsError } from './aws-json.js';

export const executionName = (ref: WorkflowRef): string => `${ref.uid}-${ref.generation}`;

export class StepFunctionsWorkflows implements Workflows {
  constructor(
    private readonly client: AwsJsonClient,
    private readonly stateMachineArns: Record<WorkflowRef['kind'], string | undefined>,
  ) {}

  private arn(kind: WorkflowRef['kind']): string {
    const arn = this.stateMachineArns[kind];
    if (!arn) throw new Error(`no state machine is configured for ${kind}`);
    return arn;
  }

  async start(ref: WorkflowRef): Promise<void> {
    try {
      await this.client.call('StartExecution', {
        stateMachineArn: this.arn(ref.kind),
        name: executionName(ref),
        input: JSON.stringify(ref),
      });
    } catch (err) {
      if (!isAwsError(err, 'ExecutionAlreadyExists')) throw err;
    }
  }

  async stop(ref: WorkflowRef, reason: string): Promise<void> {
    const machine = this.arn(ref.kind);
    const executionArn = `${machine.replace(':stateMachine:', ':execution:')}:${executionName(ref)}`;
    try {
      await this.client.call('StopExecution', { executionArn, cause: reason });
    } catch (err) {
      if (!isAwsError(err, 'ExecutionDoesNotExist')) throw err;
    }
  }
}
