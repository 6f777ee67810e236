// Template assertions on the CDK app, one stack per scenario built once (bundling the handlers with
// esbuild is the slow part): the default (a Cognito user pool is created) and an external JWT issuer
// given through context, as `cdk synth -c key=value` would pass it. The build workflow's resources are
// asserted in build-workflow.test.ts.
import { readFileSync } from 'node:fs';
import { App, Validations } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROUTES } from '../../functions/commons/http/routes.js';
import { imageBuilderPropsFromContext } from '../../infra/config.js';
import { asArray, flat, ofType, policyStatements, synthesize } from './template.js';

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
    // Public by design (CONTRACT §2); anything else public would be a decision to add here.
    expect(ROUTES.filter((r) => r.public).map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /healthz',
      'GET /api/v1/version',
      'GET /api/v1/openapi.json',
    ]);
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
    const apiFunctions = Object.values(functions).filter((d) => d.startsWith('ImageBuilder API: '));
    expect(apiFunctions).toHaveLength(new Set(ROUTES.map((r) => r.fn)).size);
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
      'EventBusName',
      'ImageBuildStateMachineArn',
      'ImageExportStateMachineArn',
      'JwtIssuer',
      'TableName',
      'UserPoolClientId',
      'UserPoolId',
    ]);
  });

  it('creates no notification resources without notification settings', () => {
    for (const type of [
      'AWS::SNS::Topic',
      'AWS::KMS::Key',
      'AWS::Events::ApiDestination',
      'AWS::Events::Connection',
    ]) {
      s.template.resourceCountIs(type, 0);
    }
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

  it('gives the roles no managed policies (log writes only to their own log group)', () => {
    for (const [id, role] of ofType(s.resources, 'AWS::IAM::Role')) {
      expect(role.Properties.ManagedPolicyArns, id).toBeUndefined();
    }
    const logGroups = new Set(ofType(s.resources, 'AWS::Logs::LogGroup').map(([id]) => `<${id}.Arn>`));
    const logStatements = policyStatements(s.resources).filter((st) =>
      asArray(st.Action).includes('logs:PutLogEvents'),
    );
    // Nine functions (four API, the build and export steps, the reconciler, the heartbeat handler, the
    // builder image's custom resource), the builders, and the builder image's two bootstrap projects.
    expect(logStatements).toHaveLength(12);
    for (const st of logStatements) expect(logGroups.has(flat(st.Resource)), flat(st.Resource)).toBe(true);
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
          {
            // Sparse: only runs that have not ended carry rpk; the reconciler queries it.
            IndexName: 'byReason',
            KeySchema: [
              { AttributeName: 'rpk', KeyType: 'HASH' },
              { AttributeName: 'rsk', KeyType: 'RANGE' },
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
    // four API handlers, the build and export steps, the reconciler, the heartbeat handler, the builder
    // image's custom resource
    expect(functions).toHaveLength(9);
    for (const [id, fn] of functions) {
      const p = fn.Properties as Record<string, any>;
      expect(Number(/^nodejs(\d+)\.x$/.exec(p.Runtime)?.[1]), id).toBeGreaterThanOrEqual(22);
      expect(p.Architectures, id).toEqual(['arm64']);
      expect(p.TracingConfig, id).toEqual({ Mode: 'Active' });
      expect(p.Handler, id).toBe('index.handler');
      expect(logGroups[p.LoggingConfig.LogGroup.Ref]?.Properties.RetentionInDays, id).toBe(30);
      // The deploy-time custom resource touches no service data: it gets none of the service's settings.
      if (String(p.Description).startsWith('Builder image custom resource')) {
        expect(p.Environment.Variables, id).toEqual({ NODE_OPTIONS: '--enable-source-maps' });
        continue;
      }
      expect(p.Environment.Variables, id).toMatchObject({
        NODE_OPTIONS: '--enable-source-maps',
        STAGE: 'dev',
        TABLE_NAME: { Ref: expect.stringMatching(/DataTable/) },
        SECRETS_PREFIX: 'imagebuilder/dev',
        TOKEN_KEY_SECRET_ARN: { Ref: expect.stringMatching(/ContinueTokenKey/) },
        POWERTOOLS_SERVICE_NAME: 'imagebuilder',
      });
      if (!String(p.Description).startsWith('ImageBuilder API: ')) continue;
      expect(p.Environment.Variables, id).toEqual({
        NODE_OPTIONS: '--enable-source-maps',
        STAGE: 'dev',
        TABLE_NAME: { Ref: expect.stringMatching(/DataTable/) },
        SECRETS_PREFIX: 'imagebuilder/dev',
        TOKEN_KEY_SECRET_ARN: { Ref: expect.stringMatching(/ContinueTokenKey/) },
        POWERTOOLS_SERVICE_NAME: 'imagebuilder',
        IMAGE_BUILD_STATE_MACHINE_ARN: { Ref: expect.stringMatching(/BuildWorkflowStateMachine/) },
        IMAGE_EXPORT_STATE_MACHINE_ARN: { Ref: expect.stringMatching(/ExportWorkflowStateMachine/) },
        BUILDER_LOG_GROUP: { Ref: expect.stringMatching(/BuildersLogs/) },
        EVENT_BUS_NAME: { Ref: expect.stringMatching(/EventsBus/) },
        BUILD_CONTEXT_BUCKET: { Ref: expect.stringMatching(/BuildContextsBucket/) },
        // Sizes quota slots (2 h default): the API takes them.
        BUILD_TIMEOUT_SECONDS: '7200',
      });
    }
  });

  it('sets a retention on every log group', () => {
    const groups = ofType(s.resources, 'AWS::Logs::LogGroup');
    // Nine functions, API access logs, the builders, the two bootstrap projects, the two state machines.
    expect(groups).toHaveLength(15);
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
    // The builders read repository passwords only (GetSecretValue, not the token key).
    const passwordsArn =
      /^arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:imagebuilder\/dev\/\*\/repositories\/\*$/;
    const allows = secretStatements.filter((st) => st.Effect === 'Allow');
    expect(allows.length).toBeGreaterThan(0);
    for (const st of allows) {
      for (const resource of asArray(st.Resource)) {
        const r = flat(resource);
        if (passwordsArn.test(r)) expect(st.Action).toBe('secretsmanager:GetSecretValue');
        else expect(tokenKeyRef.test(r) || prefixArn.test(r), r).toBe(true);
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
      'AwsSolutions-CB3',
      'AwsSolutions-CB4',
      'AwsSolutions-CB5',
      'AwsSolutions-COG2',
      'AwsSolutions-IAM5[Resource::*]',
      'AwsSolutions-IAM5[Resource::<ImageBuilderBuildContextsBucket30C312FA.Arn>/artifacts/*]',
      'AwsSolutions-IAM5[Resource::<ImageBuilderBuildContextsBucket30C312FA.Arn>/contexts/*]',
      'AwsSolutions-IAM5[Resource::<ImageBuilderDataTable116A8F97.Arn>/index/*]',
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>::image/*]',
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>::snapshot/*]',
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:import-snapshot-task/*]',
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:imagebuilder/dev/*/repositories/*]',
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:imagebuilder/dev/*]',
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:imagebuilder-dev-image-build:*]',
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:imagebuilder-dev-image-export:*]',
      'AwsSolutions-L1',
      'AwsSolutions-S1',
      'AwsSolutions-SMG4',
      'AwsSolutions-SQS3',
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
    expect(Object.keys(outputs).sort()).toEqual([
      'ApiUrl',
      'EventBusName',
      'ImageBuildStateMachineArn',
      'ImageExportStateMachineArn',
      'JwtIssuer',
      'TableName',
    ]);
    expect(outputs.JwtIssuer?.Value).toBe('https://idp.example.com/realms/flightctl');
  });

  it('applies stage, log retention and throttling from context', () => {
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      DefaultRouteSettings: { ThrottlingRateLimit: 10, ThrottlingBurstLimit: 20 },
    });
    s.template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    const service = ofType(s.resources, 'AWS::Lambda::Function').filter(
      ([, f]) => !String(f.Properties.Description).startsWith('Builder image custom resource'),
    );
    expect(service).toHaveLength(8);
    for (const [id, f] of service) {
      expect(f.Properties.Environment.Variables, id).toMatchObject({
        STAGE: 'prod',
        SECRETS_PREFIX: 'imagebuilder/prod',
      });
    }
    s.template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Name: 'imagebuilder/prod/continue-token-key',
    });
    const routes = ofType(s.resources, 'AWS::ApiGatewayV2::Route');
    expect(routes.filter(([, r]) => r.Properties.AuthorizationType === 'JWT')).toHaveLength(
      ROUTES.filter((r) => !r.public).length,
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
    const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
    expect(propsFrom(cdkJson.context)()).toEqual({
      stage: 'dev',
      logRetentionDays: 30,
      throttling: {},
      buildTimeoutMinutes: 120,
      builderComputeType: 'BUILD_GENERAL1_MEDIUM',
      artifactRetentionDays: 30,
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
    [{ stage: 'dev', buildTimeoutMinutes: 3 }, /buildTimeoutMinutes 3 must be an integer from 5 to 2160/],
    [{ stage: 'dev', buildTimeoutMinutes: 'long' }, /buildTimeoutMinutes="long" is not a number/],
    [{ stage: 'dev', builderComputeType: 'BUILD_GENERAL1_HUGE' }, /builderComputeType "BUILD_GENERAL1_HUGE"/],
    [
      { stage: 'dev', flightctlSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:fc' },
      /flightctlSecretArn .* must be the complete ARN/,
    ],
    [{ stage: 'dev', agentRepoUrl: 'ftp://repo.example.com' }, /agentRepoUrl .* must be an http/],
    [
      { stage: 'dev', bibImage: 'quay.io/centos-bootc/bootc-image-builder:latest' },
      /bibImage .* must be pinned by digest/,
    ],
    [{ stage: 'dev', notificationEmail: 'ops' }, /notificationEmail "ops" must be an email address/],
    [
      { stage: 'dev', notificationWebhookUrl: 'https://hooks.example.com' },
      /notificationWebhookUrl and notificationWebhookSecretArn must be given together/,
    ],
    [
      {
        stage: 'dev',
        notificationWebhookUrl: 'http://hooks.example.com',
        notificationWebhookSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:hook-AbCdEf',
      },
      /notificationWebhookUrl .* must be an https:\/\/ URL/,
    ],
  ])('rejects %j', (context, message) => {
    expect(propsFrom(context)).toThrow(message);
  });
});
