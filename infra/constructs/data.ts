// The single DynamoDB table holding every resource of every org (single-table design: `pk` names the
// org and kind, `sk` the resource; the `byBuild` index finds a build's exports, the sparse `byReason`
// index the runs in a given phase). Callers get access through the grant helpers, never through
// hand-written IAM.
import { RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

export const BY_BUILD_INDEX = 'byBuild';
/** Sparse: only runs that have not ended carry `rpk` = `<kind>#<reason>`; the reconciler queries it. */
export const BY_REASON_INDEX = 'byReason';

export class DataStore extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // AWS-managed KMS key: encrypted at rest with key usage in CloudTrail, without the monthly cost
      // and key-policy upkeep of a customer-managed key that no other principal needs to share.
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      // The reconciler that follows resource transitions reads this stream.
      stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
      // The table is the system of record: deleting the stack must not delete customers' resources.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: BY_BUILD_INDEX,
      partitionKey: { name: 'gsi1pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'gsi1sk', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: BY_REASON_INDEX,
      partitionKey: { name: 'rpk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'rsk', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
  }

  get tableName(): string {
    return this.table.tableName;
  }

  /** Item reads and writes on the table and queries on its indexes. */
  grantReadWriteData(grantee: iam.IGrantable): iam.Grant {
    const grant = this.table.grantReadWriteData(grantee);
    this.suppressIndexWildcard(grantee);
    return grant;
  }

  /** Item reads on the table and queries on its indexes. */
  grantReadData(grantee: iam.IGrantable): iam.Grant {
    const grant = this.table.grantReadData(grantee);
    this.suppressIndexWildcard(grantee);
    return grant;
  }

  /** Reading the change stream (for a stream consumer such as the reconciler). */
  grantStreamRead(grantee: iam.IGrantable): iam.Grant {
    return this.table.grantStreamRead(grantee);
  }

  /** The grants name `<table ARN>/index/*` so that queries on byBuild (and any later index) work. */
  private suppressIndexWildcard(grantee: iam.IGrantable): void {
    const principal = grantee.grantPrincipal;
    if (!(principal instanceof Construct)) return;
    const stack = Stack.of(this);
    const logicalId = stack.resolve(stack.getLogicalId(this.table.node.defaultChild as dynamodb.CfnTable));
    Validations.of(principal).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${logicalId}.Arn>/index/*]`,
      reason: `Queries on the indexes of table ${this.node.path} (the byBuild and byReason GSIs) need the index ARNs <table>/index/*; scoped to this one table.`,
    });
  }
}
