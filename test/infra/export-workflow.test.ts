// Template assertions on the export workflow in AWS (infra/constructs/export-workflow.ts and the
// artifacts side of build-workflow.ts): the service bucket's artifacts/ prefix, the roles scoped to it,
// vmimport, the export state machine and the exporter branch of the builders' buildspec.
import { readFileSync } from 'node:fs';
import { Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as yamlParse } from 'yaml';
import { IMAGE_EXPORT_ASL } from '../../infra/constructs/export-workflow.js';
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

const resourcesOf = (statements: Statement[], action: string) =>
  statements
    .filter((st) => asArray(st.Action).includes(action))
    .flatMap((st) => asArray(st.Resource).map(flat));

describe('export workflow in AWS', () => {
  let s: ReturnType<typeof synthesize>;
  let bucket: string;
  let machine: string;
  beforeAll(() => {
    s = synthesize({ stage: 'dev' });
    bucket = idOf(s.resources, 'AWS::S3::Bucket', /BuildContextsBucket/);
    machine = idOf(s.resources, 'AWS::StepFunctions::StateMachine', /ExportWorkflowStateMachine/);
  }, 60_000);

  it('fills exactly the placeholders of image-export.asl.json', () => {
    const asl = readFileSync(IMAGE_EXPORT_ASL, 'utf8');
    const placeholders = [...new Set([...asl.matchAll(/\$\{(\w+)\}/g)].map((m) => m[1] as string))].sort();
    const p = s.resources[machine]?.Properties as Record<string, any>;
    expect(Object.keys(p.DefinitionSubstitutions).sort()).toEqual(placeholders);
    expect(p.DefinitionSubstitutions.ExportStepFunctionArn).toEqual({
      'Fn::GetAtt': [idOf(s.resources, 'AWS::Lambda::Function', /ExportWorkflowSteps/), 'Arn'],
    });
    expect(p.StateMachineName).toBe('imagebuilder-dev-image-export');
    expect(p.LoggingConfiguration).toMatchObject({ Level: 'ALL', IncludeExecutionData: false });
    expect(p.TracingConfiguration).toEqual({ Enabled: true });
  });

  it('lets the export machine invoke its step handler and run builds on both projects only', () => {
    const role = (s.resources[machine] as Resource).Properties.RoleArn['Fn::GetAtt'][0] as string;
    const statements = policyStatements(s.resources, role);
    const fn = idOf(s.resources, 'AWS::Lambda::Function', /ExportWorkflowSteps/);
    expect(resourcesOf(statements, 'lambda:InvokeFunction')).toEqual([`<${fn}.Arn>`]);
    expect(resourcesOf(statements, 'codebuild:StartBuild')).toHaveLength(2);
    // As aws-cdk-lib's own CodeBuild task (and AWS's documentation) names the managed rule.
    expect(resourcesOf(statements, 'events:PutRule')).toEqual([documentedCodeBuildSyncRule().resource]);
    const rule = ofType(s.resources, 'AWS::Events::Rule').find(
      ([, r]) => r.Properties.EventPattern?.detail?.stateMachineArn?.[0]?.Ref === machine,
    );
    expect(rule?.[1].Properties.Targets).toEqual([
      expect.objectContaining({
        Arn: { 'Fn::GetAtt': [fn, 'Arn'] },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [expect.stringMatching(/DeadLetterQueue/), 'Arn'] } },
      }),
    ]);
  });

  it('runs the export steps for up to 15 minutes with 1024 MB, artifacts read, delete and (presigned) write', () => {
    const fn = s.resources[idOf(s.resources, 'AWS::Lambda::Function', /ExportWorkflowSteps/)]
      ?.Properties as Record<string, any>;
    expect(fn.Timeout).toBe(900);
    expect(fn.MemorySize).toBe(1024);
    expect(fn.Environment.Variables).toMatchObject({
      BUILD_CONTEXT_BUCKET: { Ref: bucket },
      BUILDER_LOG_GROUP: { Ref: expect.stringMatching(/BuildersLogs/) },
      BUILD_HEARTBEAT_SECONDS: '30',
      BUILD_TIMEOUT_SECONDS: '7200',
    });
    const statements = policyStatements(
      s.resources,
      roleOfFunction(s.resources, /steps of the image export/),
    );
    // artifacts/: reads the disk image for the referrer; deletes it when an export ends Canceled or
    // Failed, or goes with its build; the disk image's presigned PUT is signed with this role.
    // contexts/: the run's credentials object (written, presigned for the run, deleted at the end).
    const both = [`<${bucket}.Arn>/artifacts/*`, `<${bucket}.Arn>/contexts/*`];
    expect(resourcesOf(statements, 's3:GetObject').sort()).toEqual(both);
    expect(resourcesOf(statements, 's3:DeleteObject').sort()).toEqual(both);
    expect(resourcesOf(statements, 's3:PutObject').sort()).toEqual(both);
    expect(resourcesOf(statements, 'secretsmanager:GetSecretValue')).toEqual([
      'arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:imagebuilder/dev/*/repositories/*',
    ]);
  });

  it('expires artifacts/ after 30 days by default and after the context override', () => {
    const rules = (id: string, res: Resources) => res[id]?.Properties.LifecycleConfiguration.Rules;
    expect(rules(bucket, s.resources)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Prefix: 'artifacts/', ExpirationInDays: 30, Status: 'Enabled' }),
        expect.objectContaining({ Prefix: 'contexts/', ExpirationInDays: 2 }),
      ]),
    );
    // A second deployment's settings: retention, and its own bootc-image-builder for the export step.
    const mirror = `registry.example.com/mirror/bootc-image-builder@sha256:${'c'.repeat(64)}`;
    const other = synthesize({ stage: 'dev', artifactRetentionDays: '7', bibImage: mirror });
    const otherBucket = idOf(other.resources, 'AWS::S3::Bucket', /BuildContextsBucket/);
    expect(rules(otherBucket, other.resources)).toEqual(
      expect.arrayContaining([expect.objectContaining({ Prefix: 'artifacts/', ExpirationInDays: 7 })]),
    );
    const steps = (r: Resources) =>
      (r[idOf(r, 'AWS::Lambda::Function', /ExportWorkflowSteps/)] as Resource).Properties.Environment
        .Variables;
    expect(steps(other.resources).BIB_IMAGE).toBe(mirror);
    expect(steps(s.resources).BIB_IMAGE).toBeUndefined();
  }, 60_000);

  it('keeps the bucket private, TLS-only and access-logged', () => {
    const p = s.resources[bucket]?.Properties as Record<string, any>;
    expect(p.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    const logs = idOf(s.resources, 'AWS::S3::Bucket', /BuildContextsAccessLogs/);
    expect(p.LoggingConfiguration).toEqual({
      DestinationBucketName: { Ref: logs },
      LogFilePrefix: 'service-bucket/',
    });
    for (const b of [bucket, logs]) {
      s.template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: b },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
    // Log delivery by bucket policy, from the service bucket only; no ACLs.
    s.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: logs },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 'logging.s3.amazonaws.com' },
            Condition: Match.objectLike({ ArnLike: { 'aws:SourceArn': { 'Fn::GetAtt': [bucket, 'Arn'] } } }),
          }),
        ]),
      },
    });
    expect(s.resources[logs]?.Properties.OwnershipControls).toEqual({
      Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }],
    });
  });

  it('lets no builder write to S3: the export step presigns each disk image’s PUT, and holds that write itself', () => {
    const [project] = ofType(s.resources, 'AWS::CodeBuild::Project').filter(([id]) =>
      /^ImageBuilderBuilders/.test(id),
    );
    const role = project?.[1].Properties.ServiceRole['Fn::GetAtt'][0] as string;
    const statements = policyStatements(s.resources, role);
    expect(statements.flatMap((st) => asArray(st.Action)).filter((a) => a.startsWith('s3:'))).toEqual([]);
    const step = policyStatements(s.resources, roleOfFunction(s.resources, /steps of the image export/));
    expect(resourcesOf(step, 's3:PutObject').sort()).toEqual([
      `<${bucket}.Arn>/artifacts/*`,
      `<${bucket}.Arn>/contexts/*`,
    ]);
    const vmimport = idOf(s.resources, 'AWS::IAM::Role', /VmImportRole/);
    expect(resourcesOf(statements, 'iam:PassRole')).toEqual([`<${vmimport}.Arn>`]);
  });

  it('creates the vmimport role trusted by vmie.amazonaws.com with the external id', () => {
    const vmimport = idOf(s.resources, 'AWS::IAM::Role', /VmImportRole/);
    const p = s.resources[vmimport]?.Properties as Record<string, any>;
    expect(p.RoleName).toBe('vmimport');
    expect(p.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Action: 'sts:AssumeRole',
        Effect: 'Allow',
        Principal: { Service: 'vmie.amazonaws.com' },
        Condition: { StringEquals: { 'sts:ExternalId': 'vmimport' } },
      },
    ]);
    const statements = policyStatements(s.resources, vmimport);
    expect(resourcesOf(statements, 's3:GetObject')).toEqual([`<${bucket}.Arn>/artifacts/*`]);
    expect(resourcesOf(statements, 'ec2:RegisterImage').length).toBeGreaterThan(0);
    const none = synthesize({ stage: 'dev', createVmImportRole: 'false' });
    expect(ofType(none.resources, 'AWS::IAM::Role').filter(([id]) => /VmImport/.test(id))).toEqual([]);
  }, 60_000);

  it('lets the image-exports API start/stop export executions and read and delete disk images', () => {
    const statements = policyStatements(s.resources, roleOfFunction(s.resources, /API: image-exports$/));
    expect(resourcesOf(statements, 's3:GetObject')).toEqual([`<${bucket}.Arn>/artifacts/*`]);
    expect(resourcesOf(statements, 's3:DeleteObject')).toEqual([`<${bucket}.Arn>/artifacts/*`]);
    expect(resourcesOf(statements, 's3:ListBucket')).toEqual([`<${bucket}.Arn>`]);
    expect(resourcesOf(statements, 'states:StartExecution')).toEqual([`<${machine}>`]);
    expect(resourcesOf(statements, 'states:StopExecution')).toEqual([
      'arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:imagebuilder-dev-image-export:*',
    ]);
  });

  it('runs exports with the builders’ buildspec, which exports the checksum and size the Publish step reads', () => {
    for (const [, project] of ofType(s.resources, 'AWS::CodeBuild::Project').filter(([id]) =>
      /^ImageBuilderBuilders/.test(id),
    )) {
      const spec = yamlParse(project.Properties.Source.BuildSpec);
      expect(spec.env['exported-variables']).toEqual(expect.arrayContaining(['IB_SHA256', 'IB_SIZE']));
      expect(JSON.stringify(spec.phases)).toContain('IB_ARTIFACT_URL');
    }
  });

  it('passes the cdk-nag AwsSolutions checks', () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(s.stack);
    expect(report.violations.map((v) => `${v.severity} ${v.ruleName}: ${v.description}`)).toEqual([]);
    expect(report.success).toBe(true);
  });
});
