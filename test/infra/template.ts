// Shared by the infra tests: synthesize the app's stack from context as `cdk synth -c …` does, with
// the cdk-nag checks of infra/app.ts, and read the template back.
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { AwsSolutionsChecks } from 'cdk-nag';
import { imageBuilderPropsFromContext } from '../../infra/config.js';
import { ImageBuilderStack } from '../../infra/stack.js';

export type Resource = { Type: string; Properties: Record<string, any> };
export type Resources = Record<string, Resource>;
export type Statement = {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, unknown>;
};

/** A certificate authority of the shape the EKS context takes (base64 PEM); not a real one. */
export const EKS_CA = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString(
  'base64',
);

/** The context of a deployment with the EKS runner, shared by the infra tests that synthesize one. */
export const EKS_CONTEXT = {
  stage: 'dev',
  runner: 'eks',
  eksClusterName: 'builders',
  eksEndpoint: 'https://ABCDEF0123456789.gr7.eu-west-1.eks.amazonaws.com',
  eksCertificateAuthority: EKS_CA,
  eksNamespace: 'imagebuilder',
  eksServiceAccount: 'imagebuilder-builder',
};

export function synthesize(context: Record<string, unknown>) {
  const app = new App({ context });
  const props = imageBuilderPropsFromContext(app.node);
  const stack = new ImageBuilderStack(app, `ImageBuilder-${props.stage}`, props);
  // As in infra/app.ts: any unacknowledged cdk-nag finding makes synthesis throw.
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  const template = Template.fromStack(stack);
  return { app, stack, template, resources: template.toJSON().Resources as Resources };
}

export function ofType(resources: Resources, type: string): [string, Resource][] {
  return Object.entries(resources).filter(([, r]) => r.Type === type);
}

type PolicyDocument = { Statement: Statement[] };

/** Statements of IAM policies (inline or attached), optionally only those attached to one role. */
export function policyStatements(resources: Resources, roleId?: string): Statement[] {
  const docs: PolicyDocument[] = [];
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
      const roles = (r.Properties.Roles ?? []) as { Ref?: string }[];
      if (roleId === undefined || roles.some((role) => role.Ref === roleId)) {
        docs.push(r.Properties.PolicyDocument as PolicyDocument);
      }
    }
    if (r.Type === 'AWS::IAM::Role' && (roleId === undefined || roleId === id)) {
      for (const p of (r.Properties.Policies ?? []) as { PolicyDocument: PolicyDocument }[]) {
        docs.push(p.PolicyDocument);
      }
    }
  }
  return docs.flatMap((d) => d.Statement);
}

export const asArray = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);

/** A CloudFormation value rendered as one string (Fn::Join flattened, Fn::Sub as is, Ref/GetAtt as <…>). */
export function flat(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if (v['Fn::Join']) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(flat).join(sep);
  }
  if (typeof v['Fn::Sub'] === 'string') return v['Fn::Sub'];
  if (v.Ref) return `<${v.Ref}>`;
  if (v['Fn::GetAtt']) return `<${(v['Fn::GetAtt'] as string[]).join('.')}>`;
  return JSON.stringify(value);
}

/**
 * The events statement Step Functions needs for `codebuild:startBuild.sync`, as aws-cdk-lib's own
 * CodeBuildStartBuild task writes it — an authority independent of this repository. AWS documents the
 * same ("IAM policies for AWS CodeBuild", Step Functions developer guide): events:PutTargets,
 * events:PutRule, events:DescribeRule on `rule/StepFunctionsGetEventForCodeBuildStartBuildRule`.
 */
export function documentedCodeBuildSyncRule(): { actions: string[]; resource: string } {
  const app = new App();
  const stack = new Stack(app, 'Reference');
  const project = new codebuild.Project(stack, 'P', {
    buildSpec: codebuild.BuildSpec.fromObject({ version: '0.2' }),
  });
  new sfn.StateMachine(stack, 'M', {
    definitionBody: sfn.DefinitionBody.fromChainable(
      new tasks.CodeBuildStartBuild(stack, 'T', {
        project,
        integrationPattern: sfn.IntegrationPattern.RUN_JOB,
      }),
    ),
  });
  const resources = Template.fromStack(stack).toJSON().Resources as Resources;
  const st = policyStatements(resources).find((s) => asArray(s.Action).includes('events:PutRule'));
  if (!st) throw new Error('aws-cdk-lib wrote no events statement for startBuild.sync');
  return { actions: asArray(st.Action).sort(), resource: flat(st.Resource) };
}
