// The one Lambda construct every function of the service uses, so runtime, architecture, tracing, log
// retention, source maps and bundling are decided in one place. It owns its role: the default role of
// NodejsFunction carries the AWSLambdaBasicExecutionRole managed policy, which grants log writes to
// every log group in the account; here the role may write only to the function's own log group.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/** The repository root: entries, the lock file and tsconfig are resolved from here, not from the cwd. */
export const PROJECT_ROOT = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

/**
 * Shim for the few bundled CommonJS dependencies that call require() on Node built-ins: an ESM bundle
 * has no require of its own.
 */
const ESM_REQUIRE_SHIM =
  "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

export interface ApiFunctionProps {
  /** TypeScript entry file, absolute or relative to the repository root; it exports `handler`. */
  readonly entry: string;
  /** The exported function to run. @default handler */
  readonly handler?: string;
  readonly description?: string;
  readonly environment?: Record<string, string>;
  /** @default 30 days */
  readonly logRetention?: logs.RetentionDays;
  /** @default 512 */
  readonly memorySize?: number;
  /**
   * @default 29 seconds: the HTTP API gives up on an integration after 30 s, and DELETE of a build waits
   * up to 20 s (DELETE_WAIT_SECONDS) for its runs to stop, then deletes what they leave
   */
  readonly timeout?: Duration;
}

export class ApiFunction extends Construct implements iam.IGrantable {
  readonly function: NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  readonly grantPrincipal: iam.IPrincipal;

  constructor(scope: Construct, id: string, props: ApiFunctionProps) {
    super(scope, id);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
    });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${this.node.path}`,
    });
    this.grantPrincipal = this.role;
    // The log group exists before the function, so CreateLogGroup is not needed.
    this.logGroup.grantWrite(this.role);

    this.function = new NodejsFunction(this, 'Function', {
      entry: path.resolve(PROJECT_ROOT, props.entry),
      handler: props.handler ?? 'handler',
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: path.join(PROJECT_ROOT, 'package-lock.json'),
      description: props.description,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout ?? Duration.seconds(29),
      tracing: lambda.Tracing.ACTIVE,
      role: this.role,
      logGroup: this.logGroup,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node22',
        mainFields: ['module', 'main'],
        minify: true,
        sourceMap: true,
        banner: ESM_REQUIRE_SHIM,
        // The nodejs22.x runtime ships AWS SDK v3; bundling it would only grow the cold start.
        externalModules: ['@aws-sdk/*'],
        forceDockerBundling: false,
        tsconfig: path.join(PROJECT_ROOT, 'tsconfig.json'),
      },
    });

    // cdk-nag findings acknowledged with their reason (cdk-nag v3: CDK's Validations API).
    Validations.of(this.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Active X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions, so their resource is "*".',
    });
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'The runtime is pinned to nodejs22.x on purpose: the bundle targets node22 and the local stack runs the same handlers on Node 20/22; moving to a newer runtime is a deliberate, tested upgrade.',
    });
  }
}
