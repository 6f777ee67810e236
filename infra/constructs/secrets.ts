// Secrets of the service, all under one name prefix `imagebuilder/<stage>`: the key that signs list
// paging tokens (created here) and repository passwords (created by the API at run time, one secret
// per write, named `<prefix>/<org>/repositories/<name>/<random>`).
import { Arn, ArnFormat, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';

export interface ServiceSecretsProps {
  /** Name prefix of every secret of this deployment, e.g. `imagebuilder/dev`. */
  readonly prefix: string;
}

/** What the API does to repository passwords: create, replace, read, delete, and tag on create. */
const REPOSITORY_SECRET_ACTIONS = [
  'secretsmanager:CreateSecret',
  'secretsmanager:PutSecretValue',
  'secretsmanager:GetSecretValue',
  'secretsmanager:DeleteSecret',
  'secretsmanager:DescribeSecret',
  'secretsmanager:TagResource',
];

export class ServiceSecrets extends Construct {
  readonly prefix: string;
  /** Signs the opaque `continue` tokens of list pages. */
  readonly tokenKey: secretsmanager.Secret;
  /** `arn:…:secret:<prefix>/*`: every secret this deployment may create at run time. */
  readonly prefixArn: string;

  constructor(scope: Construct, id: string, props: ServiceSecretsProps) {
    super(scope, id);
    this.prefix = props.prefix;
    this.prefixArn = Arn.format(
      {
        service: 'secretsmanager',
        resource: 'secret',
        resourceName: `${props.prefix}/*`,
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      },
      Stack.of(this),
    );
    this.tokenKey = new secretsmanager.Secret(this, 'ContinueTokenKey', {
      secretName: `${props.prefix}/continue-token-key`,
      description: 'HMAC key that signs the continue tokens of list pages',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    Validations.of(this.tokenKey).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The key only signs opaque list paging tokens and protects no data; rotating it just invalidates in-flight continue tokens, so it is rotated by hand (put a new value) rather than by a rotation Lambda.',
    });
  }

  /** GetSecretValue (and Describe) on the paging-token key. */
  grantTokenKeyRead(grantee: iam.IGrantable): iam.Grant {
    return this.tokenKey.grantRead(grantee);
  }

  /**
   * Create/Put/Get/Delete/Describe/Tag on secrets under this deployment's prefix and nowhere else.
   * The paging-token key sits under the prefix too, so writes and deletes of it are denied explicitly.
   */
  grantRepositorySecrets(grantee: iam.IGrantable): iam.Grant {
    const grant = iam.Grant.addToPrincipal({
      grantee,
      actions: REPOSITORY_SECRET_ACTIONS,
      resourceArns: [this.prefixArn],
    });
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        effect: iam.Effect.DENY,
        actions: ['secretsmanager:PutSecretValue', 'secretsmanager:DeleteSecret'],
        resources: [this.tokenKey.secretArn],
      }),
    );
    const principal = grantee.grantPrincipal;
    if (principal instanceof Construct) {
      const stack = Stack.of(this);
      const prefixPattern = stack.resolve(this.prefixArn);
      Validations.of(principal).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${flatten(prefixPattern)}]`,
        reason: `Repository passwords are secrets created at run time under this service's prefix (${this.prefix}/*); their names are not known at deploy time.`,
      });
    }
    return grant;
  }
}

/** The form cdk-nag gives a resolved ARN in its findings: pseudo parameters as `<AWS::Region>`. */
function flatten(resolved: unknown): string {
  if (typeof resolved === 'string') return resolved;
  const join = (resolved as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
  if (join) return join[1].map(flatten).join(join[0]);
  const ref = (resolved as { Ref?: string }).Ref;
  if (ref) return `<${ref}>`;
  return JSON.stringify(resolved);
}
