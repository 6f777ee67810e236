// The built-in identity provider, created only when the deployment brings no JWT issuer of its own.
// Users are created by an administrator (no self sign-up), each with an immutable `custom:org_id` and
// membership in the groups that carry the roles of CONTRACT §3 (`cognito:groups` in the token).
// Clients send the ID token: only it carries `custom:org_id`, and its `aud` is the app client id.
import { Duration, Validations } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import { Construct } from 'constructs';

export const ROLE_GROUPS = ['viewer', 'installer', 'operator', 'admin'] as const;

export interface UserDirectoryProps {
  /** Prefix of the pool and client names, e.g. `imagebuilder-dev`. */
  readonly namePrefix: string;
}

export class UserDirectory extends Construct {
  readonly userPool: cognito.UserPool;
  readonly client: cognito.UserPoolClient;
  /** The `iss` of the pool's tokens. */
  readonly issuer: string;

  constructor(scope: Construct, id: string, props: UserDirectoryProps) {
    super(scope, id);
    this.userPool = new cognito.UserPool(this, 'UserPool', {
      userPoolName: `${props.namePrefix}-users`,
      selfSignUpEnabled: false,
      signInAliases: { username: true, email: true },
      customAttributes: {
        // Tenancy: set by an administrator at user creation, never changed afterwards.
        org_id: new cognito.StringAttribute({ minLen: 1, maxLen: 128, mutable: false }),
      },
      passwordPolicy: {
        minLength: 12,
        requireLowercase: true,
        requireUppercase: true,
        requireDigits: true,
        requireSymbols: true,
        tempPasswordValidity: Duration.days(3),
      },
      mfa: cognito.Mfa.OPTIONAL,
      mfaSecondFactor: { otp: true, sms: false },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      featurePlan: cognito.FeaturePlan.PLUS,
      standardThreatProtectionMode: cognito.StandardThreatProtectionMode.FULL_FUNCTION,
    });
    Validations.of(this.userPool).acknowledge({
      id: 'AwsSolutions-COG2',
      reason:
        'MFA is optional so that automation accounts (CI pipelines, fleet tooling) can sign in with SRP; people enroll TOTP, and threat protection is enforced. Deployments that must enforce MFA bring their own IdP through jwtIssuer/jwtAudience.',
    });

    for (const group of ROLE_GROUPS) {
      new cognito.UserPoolGroup(this, `Group-${group}`, {
        userPool: this.userPool,
        groupName: group,
        description: `Members have the "${group}" role of the image builder API`,
      });
    }

    this.client = this.userPool.addClient('CliClient', {
      userPoolClientName: `${props.namePrefix}-cli`,
      generateSecret: false,
      // adminUserPassword: operators fetch tokens with their AWS credentials (README, "Deploy").
      authFlows: { userSrp: true, adminUserPassword: true },
      preventUserExistenceErrors: true,
      idTokenValidity: Duration.hours(1),
      accessTokenValidity: Duration.hours(1),
      refreshTokenValidity: Duration.days(30),
      // Users may read their org but never write it: tenancy is an administrator's decision.
      readAttributes: new cognito.ClientAttributes()
        .withStandardAttributes({ email: true, emailVerified: true })
        .withCustomAttributes('org_id'),
      writeAttributes: new cognito.ClientAttributes().withStandardAttributes({ email: true }),
    });

    this.issuer = this.userPool.userPoolProviderUrl;
  }
}
