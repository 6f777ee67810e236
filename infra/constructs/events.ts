// The service's own EventBridge bus (one event per transition of a build or export, source
// `imagebuilder`) and the dead-letter queue every rule target of the service shares: an event a target
// could not take after its retries lands there instead of being dropped.
import { Duration, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** How every rule target of the service retries before giving an event to the dead-letter queue. */
export const TARGET_RETRY = { maxEventAge: Duration.hours(1), retryAttempts: 5 } as const;

export interface ServiceEventsProps {
  /** Name of the bus, e.g. `imagebuilder-dev`. */
  readonly busName: string;
}

export class ServiceEvents extends Construct {
  readonly bus: events.EventBus;
  readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: ServiceEventsProps) {
    super(scope, id);
    this.bus = new events.EventBus(this, 'Bus', {
      eventBusName: props.busName,
      description: 'Transitions of image builds and exports (source "imagebuilder")',
    });
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      // SQS-managed keys: EventBridge and Lambda can write without a key policy to maintain.
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is itself the dead-letter queue of the service (EventBridge rule targets and the asynchronous invocations of the step handler); a queue of last resort has no dead-letter queue of its own.',
    });
  }

  get busName(): string {
    return this.bus.eventBusName;
  }

  /** events:PutEvents on this bus only. */
  grantPutEvents(grantee: iam.IGrantable): iam.Grant {
    return this.bus.grantPutEventsTo(grantee);
  }
}
