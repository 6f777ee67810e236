// The builder principals' authority, evaluated by an IAM policy simulator (@cloud-copilot/iam-simulate,
// which implements AWS's documented evaluation logic and validates actions and resource types against
// AWS's service reference) over the synthesized template, with CloudFormation's values resolved to the
// ARNs a deployment in one account and region would have. The principals are what code inside a run
// can get from the container credentials endpoint: CodeBuild's service role and the EKS pods' role.
// For a run of org A: org B's context, artifact, secret and every other run's objects are denied; the
// allowed requests next to them (its own image pull and log stream) show the resolution is right, so
// the denials mean something.
import { runSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  asArray,
  EKS_CONTEXT,
  ofType,
  policyStatements,
  type Resource,
  type Resources,
  type Statement,
  synthesize,
} from './template.js';

const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';

/** The ARN (GetAtt Arn) and Ref of a resource of the template, as CloudFormation would give them. */
function arnOf(id: string, r: Resource | undefined): { arn: string; ref: string } {
  const name = id.toLowerCase();
  switch (r?.Type) {
    case 'AWS::S3::Bucket':
      return { arn: `arn:aws:s3:::${name}`, ref: name };
    case 'AWS::Logs::LogGroup': {
      const group = typeof r.Properties.LogGroupName === 'string' ? r.Properties.LogGroupName : `/ib/${name}`;
      return { arn: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${group}:*`, ref: group };
    }
    case 'AWS::ECR::Repository':
      return { arn: `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/${name}`, ref: name };
    case 'AWS::IAM::Role':
      return { arn: `arn:aws:iam::${ACCOUNT}:role/${name}`, ref: name };
    case 'AWS::SecretsManager::Secret': {
      const arn = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${name}-AbCdEf`;
      return { arn, ref: arn };
    }
    case 'AWS::KMS::Key':
      return { arn: `arn:aws:kms:${REGION}:${ACCOUNT}:key/${name}`, ref: name };
    default:
      return { arn: `arn:aws:cloudformation:${REGION}:${ACCOUNT}:stack/x/${name}`, ref: name };
  }
}

const PSEUDO: Record<string, string> = {
  'AWS::Partition': 'aws',
  'AWS::Region': REGION,
  'AWS::AccountId': ACCOUNT,
  'AWS::URLSuffix': 'amazonaws.com',
  'AWS::StackName': 'ImageBuilder-dev',
};

/** A CloudFormation value resolved to text (Ref, GetAtt, Join, Sub, Select, Split). */
function resolve(value: unknown, resources: Resources): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if (typeof v.Ref === 'string') return PSEUDO[v.Ref] ?? arnOf(v.Ref, resources[v.Ref]).ref;
  if (v['Fn::GetAtt']) {
    const [id, attr] = v['Fn::GetAtt'] as [string, string];
    if (attr !== 'Arn') throw new Error(`unresolved attribute ${id}.${attr}`);
    return arnOf(id, resources[id]).arn;
  }
  if (v['Fn::Join']) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => resolve(p, resources)).join(sep);
  }
  if (v['Fn::Sub'] !== undefined) {
    const [text, vars] = (Array.isArray(v['Fn::Sub']) ? v['Fn::Sub'] : [v['Fn::Sub'], {}]) as [
      string,
      Record<string, unknown>,
    ];
    return text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
      if (vars[name] !== undefined) return resolve(vars[name], resources);
      if (PSEUDO[name]) return PSEUDO[name] as string;
      const [id, attr] = name.split('.');
      return attr ? arnOf(id as string, resources[id as string]).arn : arnOf(name, resources[name]).ref;
    });
  }
  if (v['Fn::Select']) {
    const [index, list] = v['Fn::Select'] as [number, unknown];
    const items = (list as Record<string, unknown>)['Fn::Split']
      ? (() => {
          const [sep, text] = (list as Record<string, unknown>)['Fn::Split'] as [string, unknown];
          return resolve(text, resources).split(sep);
        })()
      : (list as unknown[]).map((x) => resolve(x, resources));
    return items[index] as string;
  }
  throw new Error(`unresolved CloudFormation value ${JSON.stringify(value)}`);
}

function policyOf(statements: Statement[], resources: Resources) {
  return {
    Version: '2012-10-17',
    Statement: statements.map((st) => ({
      Effect: st.Effect,
      Action: st.Action,
      Resource: asArray(st.Resource as unknown).map((r) => resolve(r, resources)),
      ...(st.Condition ? { Condition: st.Condition } : {}),
    })),
  };
}

type Decision = 'Allowed' | 'ExplicitlyDenied' | 'ImplicitlyDenied';

/** The decision for `action` on `resource` by a principal holding `policy`. */
async function decide(
  principal: string,
  policy: ReturnType<typeof policyOf>,
  action: string,
  resource: string,
): Promise<Decision> {
  const simulation: Simulation = {
    identityPolicies: [{ name: 'role', policy }],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      principal,
      action,
      resource: { resource, accountId: ACCOUNT },
      contextVariables: {},
    },
  };
  const out = await runSimulation(simulation, {});
  if (out.resultType === 'error') throw new Error(`${action} ${resource}: ${JSON.stringify(out.errors)}`);
  return out.overallResult as Decision;
}

interface Principal {
  arn: string;
  policy: ReturnType<typeof policyOf>;
  resources: Resources;
}

function principalOf(resources: Resources, roleId: string): Principal {
  return {
    arn: `arn:aws:sts::${ACCOUNT}:assumed-role/${roleId.toLowerCase()}/run`,
    policy: policyOf(policyStatements(resources, roleId), resources),
    resources,
  };
}

const serviceBucket = (resources: Resources) => {
  const ids = ofType(resources, 'AWS::S3::Bucket').map(([id]) => id);
  return ids.map((id) => arnOf(id, resources[id]).ref);
};

/** What a run of org A must not reach, and what it must (the controls). */
async function assertRunAuthority(p: Principal, logGroupId: string, imageRepoId: string) {
  const own = { org: 'org-a', run: '0b7c6d4e-1f2a-4b3c-8d9e-0a1b2c3d4e5f-1' };
  const other = [
    { org: 'org-b', run: '7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b-1' }, // another org
    { org: 'org-a', run: '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d-2' }, // another run of the same org
  ];
  const denied: [string, string][] = [];
  for (const bucket of serviceBucket(p.resources)) {
    denied.push(['s3:ListBucket', `arn:aws:s3:::${bucket}`]);
    for (const run of [own, ...other]) {
      // Not even its own run's objects: a run has only the URLs its trusted step presigned.
      for (const key of [
        `contexts/${run.org}/${run.run}/context.tar`,
        `contexts/${run.org}/${run.run}/credentials.json`,
        `contexts/${run.org}/${run.run}/results/x86_64.json`,
        `artifacts/${run.org}/${run.run}/edge-x86_64.qcow2`,
      ]) {
        for (const action of ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']) {
          denied.push([action, `arn:aws:s3:::${bucket}/${key}`]);
        }
      }
    }
  }
  for (const run of [own, ...other]) {
    const secret = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:imagebuilder/dev/${run.org}/repositories/dst/${'0'.repeat(32)}-AbCdEf`;
    denied.push(['secretsmanager:GetSecretValue', secret], ['secretsmanager:DescribeSecret', secret]);
  }
  denied.push(
    ['secretsmanager:ListSecrets', '*'],
    ['logs:FilterLogEvents', arnOf(logGroupId, p.resources[logGroupId]).arn],
    ['logs:GetLogEvents', `${arnOf(logGroupId, p.resources[logGroupId]).arn.slice(0, -2)}:log-stream:x`],
    ['logs:DescribeLogStreams', arnOf(logGroupId, p.resources[logGroupId]).arn],
    ['dynamodb:Scan', `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/imagebuilder`],
    ['states:StartExecution', `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:x`],
  );
  const decisions = await Promise.all(
    denied.map(async ([action, resource]) => [
      action,
      resource,
      await decide(p.arn, p.policy, action, resource),
    ]),
  );
  expect(decisions.filter(([, , d]) => d === 'Allowed')).toEqual([]);
  expect(decisions.length).toBeGreaterThan(40);
  // Controls: what the principal does need is allowed, so the denials above are the policy's, not
  // an artefact of the resolution.
  const group = arnOf(logGroupId, p.resources[logGroupId]).arn.slice(0, -2);
  const repo = arnOf(imageRepoId, p.resources[imageRepoId]).arn;
  expect(await decide(p.arn, p.policy, 'ecr:BatchGetImage', repo)).toBe('Allowed');
  return { group, stream: `${group}:log-stream:${own.run}/x86_64/ImageBuild/org-a/edge` };
}

describe('IAM, evaluated by a policy simulator: what code in a run can do with its principal', () => {
  let codebuild: Resources;
  let eks: Resources;
  beforeAll(() => {
    codebuild = synthesize({ stage: 'dev' }).resources;
    eks = synthesize(EKS_CONTEXT).resources;
  });

  const builderRole = (resources: Resources) => {
    const project = ofType(resources, 'AWS::CodeBuild::Project').find(([id]) =>
      /^ImageBuilderBuilders/.test(id),
    );
    return project?.[1].Properties.ServiceRole['Fn::GetAtt'][0] as string;
  };
  const idOf = (resources: Resources, type: string, re: RegExp) =>
    ofType(resources, type).find(([id]) => re.test(id))?.[0] as string;

  it('CodeBuild: a run of org A reaches no object, secret or log of org B, nor of another run of org A', async () => {
    const p = principalOf(codebuild, builderRole(codebuild));
    const logs = idOf(codebuild, 'AWS::Logs::LogGroup', /BuildersLogs/);
    const { stream } = await assertRunAuthority(
      p,
      logs,
      idOf(codebuild, 'AWS::ECR::Repository', /BuilderImageRepository/),
    );
    // CodeBuild writes the run's log with this role: its own stream is allowed.
    expect(await decide(p.arn, p.policy, 'logs:PutLogEvents', stream)).toBe('Allowed');
  });

  it('EKS: a builder pod of org A reaches no object, secret or log of org B, nor of another run', async () => {
    const assoc = ofType(eks, 'AWS::EKS::PodIdentityAssociation')[0]?.[1];
    const role = assoc?.Properties.RoleArn['Fn::GetAtt'][0] as string;
    const p = principalOf(eks, role);
    await assertRunAuthority(
      p,
      idOf(eks, 'AWS::Logs::LogGroup', /BuildersLogs/),
      idOf(eks, 'AWS::ECR::Repository', /BuilderImageRepository/),
    );
  });

  it('measured residual (README, "Authority of a run"): CodeBuild\'s role may write any stream of the builders\' log group', async () => {
    // CodeBuild delivers each build's log with the project's one service role, and PutLogEvents has no
    // condition key naming the build: IAM cannot scope it per run. Stream names start with the run's
    // uid (122 random bits, known only to its org) and the role can neither list nor read streams.
    const p = principalOf(codebuild, builderRole(codebuild));
    const logs = idOf(codebuild, 'AWS::Logs::LogGroup', /BuildersLogs/);
    const group = arnOf(logs, codebuild[logs]).arn.slice(0, -2);
    const otherRun = `${group}:log-stream:7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b-1/x86_64/ImageBuild/org-b/edge`;
    expect(await decide(p.arn, p.policy, 'logs:PutLogEvents', otherRun)).toBe('Allowed');
    expect(await decide(p.arn, p.policy, 'logs:DescribeLogStreams', `${group}:*`)).not.toBe('Allowed');
  });
});
