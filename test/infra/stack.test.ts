// Template assertions on the CDK app, one stack per scenario built once (bundling the four handlers
// with esbuild is the slow part): the default (a Cognito user pool is created) and an external JWT
// issuer given through context, as `cdk synth -c key=value` would pass it.
import { App, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROUTES } from '../../functions/commons/http/routes.js';
import { imageBuilderPropsFromContext } from '../../infra/config.js';
import { ImageBuilderStack } from '../../infra/stack.js';

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;
type Statement = { Effect: string; Action: string | string[]; Resource: unknown };

function synthesize(context: Record<string, unknown>) {
  const app = new App({ context });
  const props = imageBuilderPropsFromContext(app.node);
  const stack = new ImageBuilderStack(app, `ImageBuilder-${props.stage}`, props);
  // As in infra/app.ts: any unacknowledged cdk-nag finding makes synthesis throw.
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  const template = Template.fromStack(stack);
  return { app, stack, template, resources: template.toJSON().Resources as Resources };
}

function ofType(resources: Resources, type: string) {
  return Object.entries(resources).filter(([, r]) => r.Type === type);
}

function policyStatements(resources: Resources): Statement[] {
  const docs: { Statement: Statement[] }[] = [];
  for (const [, r] of Object.entries(resources)) {
    if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
      docs.push(r.Properties.PolicyDocument as { Statement: Statement[] });
    }
    if (r.Type === 'AWS::IAM::Role') {
      for (const p of (r.Properties.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[]) {
        docs.push(p.PolicyDocument);
      }
    }
  }
  return docs.flatMap((d) => d.Statement);
}

const asArray = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);

/** A CloudFormation value rendered as one string (Fn::Join flattened, Ref/GetAtt as <…>). */
function flat(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if (v['Fn::Join']) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(flat).join(sep);
  }
  if (v.Ref) return `<${v.Ref}>`;
  if (v['Fn::GetAtt']) return `<${(v['Fn::GetAtt'] as string[]).join('.')}>`;
  return JSON.stringify(value);
}

describe('ImageBuilderStack (default context: Cognito user pool)', () => {
  let s: ReturnType<typeof synthesize>;
  beforeAll(() => {
    s = synthesize({ stage: 'dev', logRetentionDays: 30 });
  }, 60_000);

  it('has one route per entry of the route table, JWT-authorized except the public ones', () => {
    const routes = ofType(s.resources, 'AWS::ApiGatewayV2::Route');
    expect(routes).toHaveLength(ROUTES.length);
    const [[authorizerId]] = ofType(s.resources, 'AWS::ApiGatewayV2::Authorizer') as [[string, unknown]];
    for (const route of ROUTES) {
      const key = `${route.method} ${route.path}`;
      const found = routes.filter(([, r]) => r.Properties.RouteKey === key);
      expect(found, key).toHaveLength(1);
      const props = (found[0] as [string, { Properties: Record<string, unknown> }])[1].Properties;
      if (route.public) {
        expect(props.AuthorizationType, key).toBe('NONE');
        expect(props.AuthorizerId, key).toBeUndefined();
      } else {
        expect(props.AuthorizationType, key).toBe('JWT');
        expect(props.AuthorizerId, key).toEqual({ Ref: authorizerId });
      }
    }
    expect(ROUTES.filter((r) => r.public).map((r) => `${r.method} ${r.path}`)).toEqual(['GET /healthz']);
  });

  it('integrates each route with the Lambda of its handler file', () => {
    const functions = Object.fromEntries(
      ofType(s.resources, 'AWS::Lambda::Function').map(([id, r]) => [id, r.Properties.Description as string]),
    );
    const integrations = Object.fromEntries(ofType(s.resources, 'AWS::ApiGatewayV2::Integration'));
    for (const [, route] of ofType(s.resources, 'AWS::ApiGatewayV2::Route')) {
      const spec = ROUTES.find((r) => `${r.method} ${r.path}` === route.Properties.RouteKey);
      const integrationId = flat(route.Properties.Target).replace(/^integrations\/<|>$/g, '');
      const uri = integrations[integrationId]?.Properties.IntegrationUri as {
        'Fn::GetAtt': [string, string];
      };
      expect(functions[uri['Fn::GetAtt'][0]]).toBe(`ImageBuilder API: ${spec?.fn}`);
    }
    expect(Object.keys(functions)).toHaveLength(new Set(ROUTES.map((r) => r.fn)).size);
  });

  it('creates a JWT authorizer on the user pool issuer and app client', () => {
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      IdentitySource: ['$request.header.Authorization'],
      JwtConfiguration: {
        Issuer: { 'Fn::GetAtt': [Match.stringLikeRegexp('UserPool'), 'ProviderURL'] },
        Audience: [{ Ref: Match.stringLikeRegexp('CliClient') }],
      },
    });
    s.template.hasResourceProperties('AWS::Cognito::UserPool', {
      UserPoolTier: 'PLUS',
      AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
      Schema: Match.arrayWith([Match.objectLike({ Name: 'org_id', Mutable: false })]),
      Policies: { PasswordPolicy: Match.objectLike({ RequireSymbols: true, RequireUppercase: true }) },
    });
    const groups = ofType(s.resources, 'AWS::Cognito::UserPoolGroup').map(([, r]) => r.Properties.GroupName);
    expect(groups.sort()).toEqual(['admin', 'installer', 'operator', 'viewer']);
    s.template.hasResourceProperties('AWS::Cognito::UserPoolClient', {
      GenerateSecret: false,
      WriteAttributes: Match.not(Match.arrayWith(['custom:org_id'])),
    });
    const outputs = s.template.toJSON().Outputs as Record<string, unknown>;
    expect(Object.keys(outputs).sort()).toEqual([
      'ApiUrl',
      'JwtIssuer',
      'TableName',
      'UserPoolClientId',
      'UserPoolId',
    ]);
  });

  it('logs every request on the $default stage and throttles it (defaults 50/100)', () => {
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      AccessLogSettings: {
        DestinationArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('AccessLogs'), 'Arn'] },
        Format: Match.stringLikeRegexp('\\$context\\.requestId'),
      },
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
    });
  });

  it('never allows an IAM action "*" or "service:*"', () => {
    const statements = policyStatements(s.resources);
    expect(statements.length).toBeGreaterThan(0);
    for (const st of statements) {
      for (const action of asArray(st.Action)) {
        expect(action).not.toBe('*');
        expect(action).not.toMatch(/:\*$/);
      }
    }
  });

  it('gives the Lambda roles no managed policies (log writes only to their own log group)', () => {
    for (const [id, role] of ofType(s.resources, 'AWS::IAM::Role')) {
      expect(role.Properties.ManagedPolicyArns, id).toBeUndefined();
    }
    const logStatements = policyStatements(s.resources).filter((st) =>
      asArray(st.Action).includes('logs:PutLogEvents'),
    );
    expect(logStatements).toHaveLength(4);
    for (const st of logStatements) expect(flat(st.Resource)).toMatch(/^<ImageBuilderFn.*Logs.*\.Arn>$/);
  });

  it('keeps the table durable: PITR, on-demand, SSE, GSI byBuild, stream, retained', () => {
    s.template.resourceCountIs('AWS::DynamoDB::Table', 1);
    s.template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: {
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        SSESpecification: { SSEEnabled: true },
        StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' },
        GlobalSecondaryIndexes: [
          {
            IndexName: 'byBuild',
            KeySchema: [
              { AttributeName: 'gsi1pk', KeyType: 'HASH' },
              { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'ALL' },
          },
        ],
      },
    });
  });

  it('runs every Lambda on nodejs22.x or newer, arm64, active tracing, its own retained log group', () => {
    const logGroups = Object.fromEntries(ofType(s.resources, 'AWS::Logs::LogGroup'));
    const functions = ofType(s.resources, 'AWS::Lambda::Function');
    expect(functions).toHaveLength(4);
    for (const [id, fn] of functions) {
      const p = fn.Properties as Record<string, any>;
      expect(Number(/^nodejs(\d+)\.x$/.exec(p.Runtime)?.[1]), id).toBeGreaterThanOrEqual(22);
      expect(p.Architectures, id).toEqual(['arm64']);
      expect(p.TracingConfig, id).toEqual({ Mode: 'Active' });
      expect(p.Handler, id).toBe('index.handler');
      expect(logGroups[p.LoggingConfig.LogGroup.Ref]?.Properties.RetentionInDays, id).toBe(30);
      expect(p.Environment.Variables, id).toEqual({
        NODE_OPTIONS: '--enable-source-maps',
        STAGE: 'dev',
        TABLE_NAME: { Ref: expect.stringMatching(/DataTable/) },
        SECRETS_PREFIX: 'imagebuilder/dev',
        TOKEN_KEY_SECRET_ARN: { Ref: expect.stringMatching(/ContinueTokenKey/) },
        POWERTOOLS_SERVICE_NAME: 'imagebuilder',
      });
    }
  });

  it('sets a retention on every log group', () => {
    const groups = ofType(s.resources, 'AWS::Logs::LogGroup');
    expect(groups).toHaveLength(5); // four functions + API access logs
    for (const [id, g] of groups) expect(g.Properties.RetentionInDays, id).toBe(30);
  });

  it('scopes Secrets Manager permissions to the token key and the imagebuilder/<stage>/ prefix', () => {
    s.template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Name: 'imagebuilder/dev/continue-token-key',
      GenerateSecretString: Match.objectLike({ PasswordLength: 64 }),
    });
    const secretStatements = policyStatements(s.resources).filter((st) =>
      asArray(st.Action).some((a) => a.startsWith('secretsmanager:')),
    );
    const tokenKeyRef = /^<ImageBuilderSecretsContinueTokenKey[0-9A-F]+>$/;
    const prefixArn =
      /^arn:<AWS::Partition>:secretsmanager:(<AWS::Region>|[a-z0-9-]+):<AWS::AccountId>:secret:imagebuilder\/dev\/\*$/;
    const allows = secretStatements.filter((st) => st.Effect === 'Allow');
    expect(allows.length).toBeGreaterThan(0);
    for (const st of allows) {
      for (const resource of asArray(st.Resource)) {
        const r = flat(resource);
        expect(tokenKeyRef.test(r) || prefixArn.test(r), r).toBe(true);
      }
    }
    // Run-time secret management only for the repositories API, and only on the prefix.
    const create = allows.filter((st) => asArray(st.Action).includes('secretsmanager:CreateSecret'));
    expect(create).toHaveLength(1);
    expect(flat(create[0]?.Resource)).toMatch(prefixArn);
    expect(asArray(create[0]?.Action).sort()).toEqual(
      [
        'secretsmanager:CreateSecret',
        'secretsmanager:DeleteSecret',
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
        'secretsmanager:PutSecretValue',
        'secretsmanager:TagResource',
      ].sort(),
    );
    // The token key is under the prefix, so changing or deleting it is denied explicitly.
    const deny = secretStatements.find((st) => st.Effect === 'Deny');
    expect(flat(deny?.Resource)).toMatch(tokenKeyRef);
  });

  it('passes the cdk-nag AwsSolutions checks with no unacknowledged error or warning', () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(s.stack);
    expect(report.violations.map((v) => `${v.severity} ${v.ruleName}: ${v.description}`)).toEqual([]);
    expect(report.success).toBe(true);
    // cdk-nag 3 reports through CDK policy validation, not annotations; CDK's own must be clean too.
    const annotations = Annotations.fromStack(s.stack);
    expect(annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-.*'))).toEqual([]);
    expect(annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*'))).toEqual([]);
    expect(annotations.findError('*', Match.anyValue())).toEqual([]);
  });

  it('acknowledges each cdk-nag finding on the resource it concerns, never on the stack', () => {
    const key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY;
    const acknowledged = (node: { node: { metadata: { type: string; data: unknown }[] } }) =>
      node.node.metadata.filter((m) => m.type === key);
    expect(acknowledged(s.stack)).toEqual([]);
    expect(acknowledged(s.app)).toEqual([]);
    const acks = s.stack.node
      .findAll()
      .flatMap((c) => acknowledged(c).flatMap((m) => Object.entries(m.data as Record<string, string>)));
    for (const [, reason] of acks) expect(reason.length).toBeGreaterThan(60);
    // A new acknowledgment is a decision: it must be added here, with its reason in the code.
    expect([...new Set(acks.map(([id]) => id.replace(/^annotation::/i, '')))].sort()).toEqual([
      'AwsSolutions-APIG4',
      'AwsSolutions-COG2',
      'AwsSolutions-IAM5[Resource::*]',
      'AwsSolutions-IAM5[Resource::<ImageBuilderDataTable116A8F97.Arn>/index/*]',
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:imagebuilder/dev/*]',
      'AwsSolutions-L1',
      'AwsSolutions-SMG4',
    ]);
  });
});

describe('ImageBuilderStack (external JWT issuer from context)', () => {
  let s: ReturnType<typeof synthesize>;
  beforeAll(() => {
    // Strings, as `cdk synth -c jwtAudience=aud-1,aud-2 -c throttlingRateLimit=10` passes them.
    s = synthesize({
      stage: 'prod',
      logRetentionDays: '7',
      jwtIssuer: 'https://idp.example.com/realms/flightctl',
      jwtAudience: 'aud-1, aud-2',
      throttlingRateLimit: '10',
      throttlingBurstLimit: 20,
    });
  }, 60_000);

  it('uses the given issuer and audience and creates no user pool', () => {
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: { Issuer: 'https://idp.example.com/realms/flightctl', Audience: ['aud-1', 'aud-2'] },
    });
    s.template.resourceCountIs('AWS::Cognito::UserPool', 0);
    s.template.resourceCountIs('AWS::Cognito::UserPoolClient', 0);
    const outputs = s.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs).sort()).toEqual(['ApiUrl', 'JwtIssuer', 'TableName']);
    expect(outputs.JwtIssuer?.Value).toBe('https://idp.example.com/realms/flightctl');
  });

  it('applies stage, log retention and throttling from context', () => {
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      DefaultRouteSettings: { ThrottlingRateLimit: 10, ThrottlingBurstLimit: 20 },
    });
    s.template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    s.template.allResourcesProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ STAGE: 'prod', SECRETS_PREFIX: 'imagebuilder/prod' }) },
    });
    s.template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Name: 'imagebuilder/prod/continue-token-key',
    });
    const routes = ofType(s.resources, 'AWS::ApiGatewayV2::Route');
    expect(routes.filter(([, r]) => r.Properties.AuthorizationType === 'JWT')).toHaveLength(
      ROUTES.length - 1,
    );
  });

  it('passes the cdk-nag AwsSolutions checks', () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(s.stack);
    expect(report.violations.map((v) => `${v.severity} ${v.ruleName}`)).toEqual([]);
  });
});

describe('context validation at synth', () => {
  const propsFrom = (context: Record<string, unknown>) => () =>
    imageBuilderPropsFromContext(new App({ context }).node);

  it('accepts the cdk.json defaults', () => {
    expect(propsFrom({ stage: 'dev', logRetentionDays: 30 })()).toEqual({
      stage: 'dev',
      logRetentionDays: 30,
      throttling: {},
    });
  });

  it.each([
    [{ stage: 'Dev_1' }, /stage "Dev_1"/],
    [{ stage: 'dev', logRetentionDays: 42 }, /logRetentionDays 42/],
    [{ stage: 'dev', logRetentionDays: 'month' }, /logRetentionDays="month" is not a number/],
    [
      { stage: 'dev', jwtIssuer: 'https://idp.example.com' },
      /jwtIssuer and jwtAudience must be given together/,
    ],
    [{ stage: 'dev', jwtAudience: 'x' }, /jwtIssuer and jwtAudience must be given together/],
    [{ stage: 'dev', jwtIssuer: 'http://idp.example.com', jwtAudience: 'x' }, /must be an https:\/\/ URL/],
    [{ stage: 'dev', jwtIssuer: 'https://idp.example.com', jwtAudience: ' , ' }, /jwtAudience must be/],
    [{ stage: 'dev', throttlingRateLimit: 0 }, /rateLimit 0 must be a number > 0/],
    [{ stage: 'dev', throttlingBurstLimit: '2.5' }, /burstLimit 2.5 must be an integer/],
  ])('rejects %j', (context, message) => {
    expect(propsFrom(context)).toThrow(message);
  });
});
