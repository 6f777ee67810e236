// Template assertions on the build workflow in AWS (infra/constructs/build-workflow.ts, events.ts,
// notifications.ts): one stack synthesized once, with every optional setting given through context as
// `cdk synth -c key=value` passes it (strings).
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as yamlParse } from 'yaml';
import { loadBuildspec } from '../../functions/builder/files.js';
import { imageBuilderPropsFromContext } from '../../infra/config.js';
import {
  armComputeType,
  IMAGE_BUILD_ASL,
  MAX_INLINE_BUILDSPEC_LENGTH,
} from '../../infra/constructs/build-workflow.js';
import { UNUSED_EKS_SUBSTITUTIONS } from '../../infra/constructs/eks-runner.js';
import {
  asArray,
  documentedCodeBuildSyncRule,
  flat,
  ofType,
  policyStatements,
  type Resource,
  type Resources,
  type Statement,
  synthesize,
} from './template.js';

const FLIGHTCTL_SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:flightctl-AbCdEf';
const WEBHOOK_SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:webhook-GhIjKl';

/** The logical id of the only resource of a type whose id matches. */
function idOf(resources: Resources, type: string, pattern: RegExp): string {
  const found = ofType(resources, type).filter(([id]) => pattern.test(id));
  expect(
    found.map(([id]) => id),
    `${type} ${pattern}`,
  ).toHaveLength(1);
  return (found[0] as [string, unknown])[0];
}

function roleOfFunction(resources: Resources, description: RegExp): string {
  const [, fn] = ofType(resources, 'AWS::Lambda::Function').find(([, r]) =>
    description.test(String(r.Properties.Description)),
  ) as [string, { Properties: Record<string, any> }];
  return fn.Properties.Role['Fn::GetAtt'][0];
}

const actionsOf = (statements: Statement[]) => statements.flatMap((st) => asArray(st.Action));

describe('build workflow in AWS', () => {
  let s: ReturnType<typeof synthesize>;
  let bucket: string;
  let builderLogs: string;
  let stepsFunction: string;
  let machine: string;
  beforeAll(() => {
    s = synthesize({
      stage: 'dev',
      logRetentionDays: 30,
      buildTimeoutMinutes: '90',
      builderComputeType: 'BUILD_GENERAL1_MEDIUM',
      flightctlSecretArn: FLIGHTCTL_SECRET,
      agentRepoUrl: 'https://rpm.example.com/flightctl',
      notificationEmail: 'ops@example.com',
      notificationWebhookUrl: 'https://hooks.example.com/imagebuilder',
      notificationWebhookSecretArn: WEBHOOK_SECRET,
      heartbeatTimeoutSeconds: '300',
    });
    bucket = idOf(s.resources, 'AWS::S3::Bucket', /BuildContextsBucket/);
    builderLogs = idOf(s.resources, 'AWS::Logs::LogGroup', /BuildersLogs/);
    stepsFunction = idOf(s.resources, 'AWS::Lambda::Function', /BuildWorkflowSteps/);
    machine = idOf(s.resources, 'AWS::StepFunctions::StateMachine', /BuildWorkflowStateMachine/);
  }, 60_000);

  it('keeps build contexts in a private, TLS-only, encrypted bucket that expires contexts/ after 2 days', () => {
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Prefix: 'contexts/', ExpirationInDays: 2, Status: 'Enabled' }),
        ]),
      },
    });
    expect(s.resources[bucket]?.Properties.VersioningConfiguration).toBeUndefined();
    s.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucket },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('runs the buildspec file on two privileged projects in the builder image, pinned by digest: x86_64 (LINUX_CONTAINER) and aarch64 (ARM_CONTAINER)', () => {
    const projects = ofType(s.resources, 'AWS::CodeBuild::Project')
      .filter(([id]) => /^ImageBuilderBuilders/.test(id))
      .map(([, p]) => p.Properties);
    expect(projects).toHaveLength(2);
    for (const p of projects) expect(p.Environment.PrivilegedMode).toBe(true);
    const repo = idOf(s.resources, 'AWS::ECR::Repository', /BuilderImageRepository/);
    // `<account>.dkr.ecr.<region>.<suffix>/<repo>@sha256:<digest the bootstrap build reported>`
    const image = (p: Record<string, any>) => flat(p.Environment.Image);
    expect(projects.map((p) => [p.Environment.Type, p.Environment.ComputeType]).sort()).toEqual([
      ['ARM_CONTAINER', 'BUILD_GENERAL1_LARGE'],
      ['LINUX_CONTAINER', 'BUILD_GENERAL1_MEDIUM'],
    ]);
    for (const p of projects) {
      const arch = p.Environment.Type === 'ARM_CONTAINER' ? 'aarch64' : 'x86_64';
      expect(image(p)).toMatch(
        new RegExp(`/<${repo}>@sha256:<ImageBuilderBuilderImageImage${arch.replace('_', '')}\\w+\\.Digest>$`),
      );
      expect(p.Environment.ImagePullCredentialsType).toBe('SERVICE_ROLE');
    }
    const roles = new Set<string>();
    for (const p of projects) {
      expect(p.TimeoutInMinutes).toBe(90);
      expect(p.Source.Type).toBe('NO_SOURCE');
      expect(p.Artifacts).toEqual({ Type: 'NO_ARTIFACTS' });
      expect(p.LogsConfig.CloudWatchLogs).toEqual({ Status: 'ENABLED', GroupName: { Ref: builderLogs } });
      roles.add(p.ServiceRole['Fn::GetAtt'][0]);
      // CodeBuild refuses longer inline buildspecs.
      expect(p.Source.BuildSpec.length).toBeLessThan(MAX_INLINE_BUILDSPEC_LENGTH);
      // The buildspec is the file the local sandbox and the EKS pods run, unchanged.
      expect(yamlParse(p.Source.BuildSpec)).toEqual(loadBuildspec());
      // No script download, no install at run time: the image carries everything.
      expect(p.Source.BuildSpec).not.toMatch(/dnf install|aws s3 cp/);
      expect(p.Environment.EnvironmentVariables).toBeUndefined();
    }
    expect(roles.size).toBe(1);
  });

  it('builds the builder image at deploy on bootstrap projects, from the digest-pinned base, and waits for its digests', () => {
    const boots = ofType(s.resources, 'AWS::CodeBuild::Project').filter(([id]) => /Bootstrap/.test(id));
    expect(boots).toHaveLength(2);
    for (const [, b] of boots) {
      const env = Object.fromEntries(
        (b.Properties.Environment.EnvironmentVariables as { Name: string; Value: unknown }[]).map((v) => [
          v.Name,
          v.Value,
        ]),
      );
      expect(env.BASE_IMAGE).toMatch(/@sha256:[0-9a-f]{64}$/);
      expect(b.Properties.Source.Type).toBe('S3');
    }
    const images = ofType(s.resources, 'AWS::CloudFormation::CustomResource');
    expect(images.map(([id]) => id).filter((id) => /BuilderImageImage/.test(id))).toHaveLength(2);
  });

  it('leaves out the aarch64 builders where the region has no ARM_CONTAINER (context aarch64Builders=false)', () => {
    const x = synthesize({ stage: 'dev', aarch64Builders: 'false' });
    const types = ofType(x.resources, 'AWS::CodeBuild::Project').map(
      ([, p]) => p.Properties.Environment.Type,
    );
    expect(types).not.toContain('ARM_CONTAINER');
    expect(() => synthesize({ stage: 'dev', aarch64Builders: 'maybe' })).toThrow(/aarch64Builders/);
  });

  it('maps the compute type to one the ARM environment offers', () => {
    expect(armComputeType('BUILD_GENERAL1_SMALL')).toBe('BUILD_GENERAL1_SMALL');
    expect(armComputeType('BUILD_GENERAL1_MEDIUM')).toBe('BUILD_GENERAL1_LARGE');
    expect(armComputeType('BUILD_GENERAL1_2XLARGE')).toBe('BUILD_GENERAL1_2XLARGE');
  });

  it('gives the builders a least-privilege role: no S3, no secret at all; their log group, the image pull', () => {
    const project = ofType(s.resources, 'AWS::CodeBuild::Project').find(([id]) =>
      /^ImageBuilderBuilders/.test(id),
    );
    const role = project?.[1].Properties.ServiceRole['Fn::GetAtt'][0] as string;
    expect(s.resources[role]?.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      expect.objectContaining({ Principal: { Service: 'codebuild.amazonaws.com' } }),
    ]);
    const statements = policyStatements(s.resources, role);
    const rendered = statements.map((st) => [asArray(st.Action).sort(), asArray(st.Resource).map(flat)]);
    const repo = idOf(s.resources, 'AWS::ECR::Repository', /BuilderImageRepository/);
    expect(rendered).toEqual(
      expect.arrayContaining([
        [['logs:CreateLogStream', 'logs:PutLogEvents'], [`<${builderLogs}.Arn>`]],
        [
          ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer'],
          [`<${repo}.Arn>`],
        ],
        [['ecr:GetAuthorizationToken'], ['*']],
      ]),
    );
    // A run reads its context and registry passwords and writes its disk image through presigned URLs.
    expect(actionsOf(statements).filter((a) => /^(s3|secretsmanager|kms):/.test(a))).toEqual([]);
    // Nothing else: no CodeBuild defaults; the other five statements are the ami import.
    expect(rendered).toHaveLength(8);
  });

  it('fills every placeholder of the ASL file with definitionSubstitutions', () => {
    const asl = readFileSync(IMAGE_BUILD_ASL, 'utf8');
    const placeholders = [...new Set([...asl.matchAll(/\$\{(\w+)\}/g)].map((m) => m[1] as string))].sort();
    expect(placeholders).toEqual([
      'BuildProjectAarch64',
      'BuildProjectX86_64',
      'BuildStepFunctionArn',
      'BuilderLogGroupName',
      'EksBuilderImageAarch64',
      'EksBuilderImageX86_64',
      'EksCertificateAuthority',
      'EksClusterName',
      'EksEndpoint',
      'EksNamespace',
      'EksServiceAccount',
      'Runner',
    ]);
    const p = s.resources[machine]?.Properties as Record<string, any>;
    const substitutions = p.DefinitionSubstitutions as Record<string, unknown>;
    expect(Object.keys(substitutions).sort()).toEqual(placeholders);
    // Each names the resource it should.
    const x86 = idOf(s.resources, 'AWS::CodeBuild::Project', /BuildersX8664/);
    const arm = idOf(s.resources, 'AWS::CodeBuild::Project', /BuildersAarch64/);
    // The EKS runner's placeholders hold inert values: with runner codebuild its states are never entered
    // (test/infra/eks-runner.test.ts covers runner eks).
    expect(substitutions).toEqual({
      BuildStepFunctionArn: { 'Fn::GetAtt': [stepsFunction, 'Arn'] },
      BuildProjectX86_64: { Ref: x86 },
      BuildProjectAarch64: { Ref: arm },
      BuilderLogGroupName: { Ref: builderLogs },
      Runner: 'codebuild',
      ...UNUSED_EKS_SUBSTITUTIONS,
    });
    // Substituted as Step Functions does, the definition is valid JSON with no placeholder left.
    const rendered = asl.replace(/\$\{(\w+)\}/g, (_, key: string) =>
      key in substitutions ? `value-of-${key}` : `\${${key}}`,
    );
    expect(rendered).not.toMatch(/\$\{\w+\}/);
    expect(() => JSON.parse(rendered)).not.toThrow();
    // The definition is the file itself, shipped as an asset.
    expect(p.DefinitionS3Location).toEqual({
      Bucket: expect.anything(),
      Key: expect.stringMatching(/\.json$/),
    });
    expect(p.DefinitionString).toBeUndefined();
  });

  it('logs every execution event without execution data, and traces executions', () => {
    s.template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineName: 'imagebuilder-dev-image-build',
      StateMachineType: 'STANDARD',
      LoggingConfiguration: {
        Level: 'ALL',
        IncludeExecutionData: false,
        Destinations: [
          {
            CloudWatchLogsLogGroup: {
              LogGroupArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('BuildWorkflowLogs'), 'Arn'] },
            },
          },
        ],
      },
      TracingConfiguration: { Enabled: true },
    });
  });

  it('lets the state machine invoke the step handler and run builds on the two projects only', () => {
    const role = (s.resources[machine] as Resource).Properties.RoleArn['Fn::GetAtt'][0] as string;
    const statements = policyStatements(s.resources, role);
    const byAction = (action: string) => statements.filter((st) => asArray(st.Action).includes(action));
    expect(byAction('lambda:InvokeFunction').map((st) => flat(st.Resource))).toEqual([
      `<${stepsFunction}.Arn>`,
    ]);
    const builds = byAction('codebuild:StartBuild');
    expect(builds).toHaveLength(1);
    expect(asArray(builds[0]?.Action).sort()).toEqual([
      'codebuild:BatchGetBuilds',
      'codebuild:StartBuild',
      'codebuild:StopBuild',
    ]);
    expect(asArray(builds[0]?.Resource).map(flat).sort()).toEqual(
      ofType(s.resources, 'AWS::CodeBuild::Project')
        .filter(([id]) => /^ImageBuilderBuilders/.test(id))
        .map(([id]) => `<${id}.Arn>`)
        .sort(),
    );
    // The managed rule of startBuild.sync, as aws-cdk-lib's own task (and AWS's documentation) names it.
    const rule = byAction('events:PutRule');
    const documented = documentedCodeBuildSyncRule();
    expect(rule.map((st) => asArray(st.Action).sort())).toEqual([documented.actions]);
    expect(flat(rule[0]?.Resource)).toBe(documented.resource);
    // "*" only for the actions without resource-level permissions (log delivery, X-Ray).
    for (const st of statements.filter((st) => st.Resource === '*')) {
      for (const action of asArray(st.Action))
        expect(action).toMatch(/^(logs:\w*(LogDelivery|LogDeliveries|ResourcePolic\w+|LogGroups)|xray:\w+)$/);
    }
  });

  it('runs the step handler with its settings, 60 s, and a role scoped to the context bucket', () => {
    const fn = s.resources[stepsFunction]?.Properties as Record<string, any>;
    expect(fn.Handler).toBe('index.handler');
    expect(fn.Timeout).toBe(60);
    expect(fn.Environment.Variables).toEqual({
      NODE_OPTIONS: '--enable-source-maps',
      STAGE: 'dev',
      TABLE_NAME: { Ref: expect.stringMatching(/DataTable/) },
      SECRETS_PREFIX: 'imagebuilder/dev',
      TOKEN_KEY_SECRET_ARN: { Ref: expect.stringMatching(/ContinueTokenKey/) },
      POWERTOOLS_SERVICE_NAME: 'imagebuilder',
      BUILD_CONTEXT_BUCKET: { Ref: bucket },
      EVENT_BUS_NAME: { Ref: idOf(s.resources, 'AWS::Events::EventBus', /EventsBus/) },
      BUILDER_LOG_GROUP: { Ref: builderLogs },
      BUILD_TIMEOUT_SECONDS: '5400',
      BUILD_HEARTBEAT_SECONDS: '30',
      FLIGHTCTL_SECRET_ARN: FLIGHTCTL_SECRET,
      AGENT_REPO_URL: 'https://rpm.example.com/flightctl',
      IMAGE_EXPORT_STATE_MACHINE_ARN: { Ref: expect.stringMatching(/ExportWorkflowStateMachine/) },
    });

    const statements = policyStatements(s.resources, roleOfFunction(s.resources, /steps of the image build/));
    for (const action of actionsOf(statements)) {
      expect(action).not.toBe('*');
      expect(action).not.toMatch(/:\*$/);
    }
    const s3 = statements.filter((st) => asArray(st.Action).some((a) => a.startsWith('s3:')));
    expect(s3.map((st) => [asArray(st.Action).sort(), flat(st.Resource)])).toEqual([
      [['s3:DeleteObject', 's3:GetObject', 's3:PutObject'], `<${bucket}.Arn>/contexts/*`],
      [['s3:ListBucket'], `<${bucket}.Arn>`],
    ]);
    const find = (action: string) =>
      statements.filter((st) => asArray(st.Action).includes(action)).map((st) => flat(st.Resource));
    expect(find('logs:FilterLogEvents')).toEqual([`<${builderLogs}.Arn>`]);
    expect(find('events:PutEvents')).toEqual([
      `<${idOf(s.resources, 'AWS::Events::EventBus', /EventsBus/)}.Arn>`,
    ]);
    // The run's repository passwords, which it hands to the run as a presigned object, and nothing else.
    expect(find('secretsmanager:GetSecretValue').sort()).toEqual(
      [
        FLIGHTCTL_SECRET,
        `<${idOf(s.resources, 'AWS::SecretsManager::Secret', /ContinueTokenKey/)}>`,
        'arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:imagebuilder/dev/*/repositories/*',
      ].sort(),
    );
    // The step handler only starts the exports waiting for its build; it never stops executions.
    const states = statements.filter((st) => asArray(st.Action).some((a) => a.startsWith('states:')));
    expect(states.map((st) => [st.Action, flat(st.Resource)])).toEqual([
      [
        'states:StartExecution',
        `<${idOf(s.resources, 'AWS::StepFunctions::StateMachine', /ExportWorkflowStateMachine/)}>`,
      ],
    ]);
  });

  it('lets the image-builds API start and stop executions of the build and export machines only', () => {
    const statements = policyStatements(s.resources, roleOfFunction(s.resources, /API: image-builds$/));
    const find = (action: string) =>
      statements.filter((st) => asArray(st.Action).includes(action)).map((st) => flat(st.Resource));
    const exportMachine = idOf(s.resources, 'AWS::StepFunctions::StateMachine', /ExportWorkflowStateMachine/);
    expect(find('states:StartExecution')).toEqual([`<${machine}>`, `<${exportMachine}>`]);
    expect(find('states:StopExecution')).toEqual([
      'arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:imagebuilder-dev-image-build:*',
      'arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:imagebuilder-dev-image-export:*',
    ]);
    expect(find('logs:FilterLogEvents')).toEqual([`<${builderLogs}.Arn>`]);
    expect(find('events:PutEvents')).toHaveLength(1);
    // Deleting a build drops its context and its exports' disk images.
    expect(find('s3:DeleteObject')).toEqual([`<${bucket}.Arn>/contexts/*`, `<${bucket}.Arn>/artifacts/*`]);
    expect(find('s3:PutObject')).toEqual([]);
    for (const fn of ['repositories', 'service']) {
      const other = policyStatements(s.resources, roleOfFunction(s.resources, new RegExp(`API: ${fn}$`)));
      expect(
        actionsOf(other).filter((a) => /^(states|s3|events):/.test(a)),
        fn,
      ).toEqual([]);
    }
  });

  it('records executions that end ABORTED, TIMED_OUT or FAILED through the step handler, with a DLQ', () => {
    const rules = ofType(s.resources, 'AWS::Events::Rule').filter(
      ([, r]) =>
        r.Properties.EventPattern?.source?.[0] === 'aws.states' &&
        r.Properties.EventPattern.detail.stateMachineArn[0].Ref === machine,
    );
    expect(rules).toHaveLength(1);
    const rule = (rules[0] as [string, Resource])[1];
    expect(rule.Properties.EventBusName).toBeUndefined(); // the default bus
    expect(rule.Properties.EventPattern).toEqual({
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: { stateMachineArn: [{ Ref: machine }], status: ['ABORTED', 'TIMED_OUT', 'FAILED'] },
    });
    const dlq = idOf(s.resources, 'AWS::SQS::Queue', /DeadLetterQueue/);
    expect(rule.Properties.Targets).toEqual([
      {
        Id: expect.any(String),
        Arn: { 'Fn::GetAtt': [stepsFunction, 'Arn'] },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [dlq, 'Arn'] } },
        RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 5 },
      },
    ]);
    s.template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true });
    s.template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: dlq }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
    // The handler's own asynchronous failures land in the same queue.
    s.template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: stepsFunction },
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [dlq, 'Arn'] } } },
    });
  });

  it('sweeps every 2 minutes with a reconciler that starts runs left Pending and fails and stops silent ones', () => {
    const reconciler = idOf(s.resources, 'AWS::Lambda::Function', /BuildWorkflowReconciler/);
    s.template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(2 minutes)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [reconciler, 'Arn'] } })],
    });
    const fn = s.resources[reconciler]?.Properties as Record<string, any>;
    // The context's heartbeat timeout reaches the sweep.
    expect(fn.Environment.Variables.HEARTBEAT_TIMEOUT_SECONDS).toBe('300');
    // It judges quota slots by the build timeout (context buildTimeoutMinutes=90), as the API does.
    expect(fn.Environment.Variables.BUILD_TIMEOUT_SECONDS).toBe(String(90 * 60));
    const statements = policyStatements(s.resources, roleOfFunction(s.resources, /starts runs left Pending/));
    const exportMachine = idOf(s.resources, 'AWS::StepFunctions::StateMachine', /ExportWorkflowStateMachine/);
    // Both machines: start runs left Pending, stop the executions of silent ones (and nothing else).
    const states = statements.filter((st) => asArray(st.Action).some((a) => a.startsWith('states:')));
    expect(states.map((st) => [st.Action, flat(st.Resource)]).sort()).toEqual(
      [
        ['states:StartExecution', `<${machine}>`],
        ['states:StartExecution', `<${exportMachine}>`],
        [
          'states:StopExecution',
          'arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:imagebuilder-dev-image-build:*',
        ],
        [
          'states:StopExecution',
          'arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:imagebuilder-dev-image-export:*',
        ],
      ].sort(),
    );
    // Failing a run writes it and publishes its event; no secrets, no contexts.
    expect(actionsOf(statements)).toContain('dynamodb:PutItem');
    expect(actionsOf(statements)).toContain('events:PutEvents');
    expect(actionsOf(statements).filter((a) => a.startsWith('secretsmanager:'))).toEqual([]);
  });

  it('feeds the heartbeat lines of the builders’ log group to a heartbeat handler that writes lastSeen', () => {
    const heartbeat = idOf(s.resources, 'AWS::Lambda::Function', /BuildWorkflowHeartbeat/);
    s.template.hasResourceProperties('AWS::Logs::SubscriptionFilter', {
      LogGroupName: { Ref: builderLogs },
      FilterPattern: '"[heartbeat]"',
      DestinationArn: { 'Fn::GetAtt': [heartbeat, 'Arn'] },
    });
    expect(ofType(s.resources, 'AWS::Logs::SubscriptionFilter')).toHaveLength(1);
    // CloudWatch Logs may invoke it, for this log group only.
    s.template.hasResourceProperties('AWS::Lambda::Permission', {
      FunctionName: { 'Fn::GetAtt': [heartbeat, 'Arn'] },
      Principal: 'logs.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [builderLogs, 'Arn'] },
    });
    const fn = s.resources[heartbeat]?.Properties as Record<string, any>;
    expect(fn.Handler).toBe('index.handler');
    const statements = policyStatements(s.resources, fn.Role['Fn::GetAtt'][0]);
    const actions = actionsOf(statements);
    expect(actions).toContain('dynamodb:PutItem');
    expect(actions.filter((a) => /^(states|s3|secretsmanager|events):/.test(a))).toEqual([]);
  });

  it('rejects a heartbeat timeout under 120 s', () => {
    expect(() =>
      imageBuilderPropsFromContext(new App({ context: { heartbeatTimeoutSeconds: '60' } }).node),
    ).toThrow(/heartbeatTimeoutSeconds 60 must be an integer from 120 to 86400/);
  });

  it('publishes on the bus imagebuilder-<stage> and outputs its name and the state machine ARN', () => {
    s.template.hasResourceProperties('AWS::Events::EventBus', { Name: 'imagebuilder-dev' });
    const outputs = s.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.EventBusName?.Value).toEqual({
      Ref: idOf(s.resources, 'AWS::Events::EventBus', /EventsBus/),
    });
    expect(outputs.ImageBuildStateMachineArn?.Value).toEqual({ Ref: machine });
  });

  it('forwards terminal events to the email topic and the webhook', () => {
    const terminal = [
      'ImageBuild Completed',
      'ImageBuild Failed',
      'ImageBuild Canceled',
      'ImageExport Completed',
      'ImageExport Failed',
      'ImageExport Canceled',
    ];
    const topic = idOf(s.resources, 'AWS::SNS::Topic', /NotificationsTopic/);
    const destination = idOf(s.resources, 'AWS::Events::ApiDestination', /Webhook/);
    s.template.hasResourceProperties('AWS::Events::Rule', {
      EventBusName: { Ref: idOf(s.resources, 'AWS::Events::EventBus', /EventsBus/) },
      EventPattern: { source: ['imagebuilder'], 'detail-type': terminal },
      Targets: [
        Match.objectLike({
          Arn: { Ref: topic },
          DeadLetterConfig: Match.anyValue(),
          RoleArn: Match.anyValue(),
        }),
        Match.objectLike({ Arn: { 'Fn::GetAtt': [destination, 'Arn'] }, DeadLetterConfig: Match.anyValue() }),
      ],
    });
    s.template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
      TopicArn: { Ref: topic },
    });
    s.template.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('TopicKey'), 'Arn'] },
    });
    s.template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    s.template.hasResourceProperties('AWS::Events::ApiDestination', {
      InvocationEndpoint: 'https://hooks.example.com/imagebuilder',
      HttpMethod: 'POST',
    });
    s.template.hasResourceProperties('AWS::Events::Connection', {
      AuthorizationType: 'API_KEY',
      AuthParameters: {
        ApiKeyAuthParameters: {
          ApiKeyName: 'Authorization',
          // A dynamic reference: the key itself never appears in the template.
          ApiKeyValue: `{{resolve:secretsmanager:${WEBHOOK_SECRET}:SecretString:::}}`,
        },
      },
    });
  });

  it('passes the cdk-nag AwsSolutions checks with every option on', () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(s.stack);
    expect(report.violations.map((v) => `${v.severity} ${v.ruleName}: ${v.description}`)).toEqual([]);
    expect(report.success).toBe(true);
  });
});
