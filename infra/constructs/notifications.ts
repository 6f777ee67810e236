// Optional forwarding of the terminal events of builds and exports (Completed, Failed, Canceled) from
// the service's bus to an email address (SNS) and/or an HTTPS webhook (EventBridge API destination).
import { RemovalPolicy, SecretValue, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { EVENT_SOURCE } from '../../functions/commons/adapters/eventbridge-events.js';
import { type ServiceEvents, TARGET_RETRY } from './events.js';

/** The detail-types forwarded: every way a build or export ends. */
export const TERMINAL_DETAIL_TYPES = ['ImageBuild', 'ImageExport'].flatMap((kind) =>
  ['Completed', 'Failed', 'Canceled'].map((end) => `${kind} ${end}`),
);

export interface NotificationsProps {
  readonly events: ServiceEvents;
  readonly email?: string;
  readonly webhookUrl?: string;
  /** Complete ARN of the secret sent as the webhook's `Authorization` header. */
  readonly webhookSecretArn?: string;
}

export class Notifications extends Construct {
  readonly rule: events.Rule;
  readonly topic?: sns.Topic;
  readonly apiDestination?: events.ApiDestination;

  constructor(scope: Construct, id: string, props: NotificationsProps) {
    super(scope, id);
    const retry = { deadLetterQueue: props.events.deadLetterQueue, ...TARGET_RETRY };
    this.rule = new events.Rule(this, 'TerminalEvents', {
      eventBus: props.events.bus,
      description: 'Builds and exports that completed, failed or were canceled',
      eventPattern: { source: [EVENT_SOURCE], detailType: TERMINAL_DETAIL_TYPES },
    });

    if (props.email) {
      // A customer-managed key: EventBridge may publish to an encrypted topic only if it may use the key,
      // and the policy of the AWS-managed alias/aws/sns key cannot grant that.
      const key = new kms.Key(this, 'TopicKey', {
        description: 'Encrypts the image builder notification topic',
        enableKeyRotation: true,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      this.topic = new sns.Topic(this, 'Topic', {
        displayName: 'Image builder notifications',
        masterKey: key,
        enforceSSL: true,
      });
      this.topic.addSubscription(new subscriptions.EmailSubscription(props.email));
      // Through a role of this rule, not a topic policy open to the EventBridge service principal
      // (which any account's rule could use).
      this.rule.addTarget(new targets.SnsTopic(this.topic, { ...retry, authorizeUsingRole: true }));
      Validations.of(this.rule).acknowledge({
        id: 'AwsSolutions-IAM5[Action::kms:GenerateDataKey*]',
        reason:
          "Publishing to the encrypted topic needs the GenerateDataKey family of KMS actions (CDK's topic publish grant); it applies only to the topic's own key.",
      });
    }

    if (props.webhookUrl && props.webhookSecretArn) {
      const connection = new events.Connection(this, 'WebhookConnection', {
        description: 'Authorization of the image builder notification webhook',
        authorization: events.Authorization.apiKey(
          'Authorization',
          SecretValue.secretsManager(props.webhookSecretArn),
        ),
      });
      this.apiDestination = new events.ApiDestination(this, 'Webhook', {
        description: 'Image builder notification webhook',
        connection,
        endpoint: props.webhookUrl,
        httpMethod: events.HttpMethod.POST,
        rateLimitPerSecond: 10,
      });
      this.rule.addTarget(new targets.ApiDestination(this.apiDestination, retry));
    }
  }
}
