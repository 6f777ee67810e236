// Template assertions on the EKS runner (context `runner: eks`, infra/constructs/eks-runner.ts): the
// state machines' definitions, rendered with their DefinitionSubstitutions as Step Functions renders
// them, route jobs to privileged runJob.sync states with the architecture's nodeSelector; the machine
// roles may describe the cluster and hold namespace-scoped access entries instead of CodeBuild rights;
// the builder pods get their own role through EKS Pod Identity. With the default runner nothing of it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { beforeAll, describe, expect, it } from 'vitest';
import { BUILDER_DIR } from '../../functions/builder/files.js';
import { jobEnv, planBuild } from '../../functions/commons/domain/build-plan.js';
import { imageBuilderPropsFromContext } from '../../infra/config.js';
import { IMAGE_BUILD_ASL } from '../../infra/constructs/build-workflow.js';
import { IMAGE_EXPORT_ASL } from '../../infra/constructs/export-workflow.js';
import {
  asArray,
  EKS_CA as CA,
  EKS_CONTEXT,
  flat,
  ofType,
  policyStatements,
  type Resources,
  synthesize,
} from './template.js';

const EKS_JOB_SCRIPT = join(BUILDER_DIR, 'eks-job.sh');
type State = Record<string, any>;

/** The ASL file with the machine's substitutions applied (CloudFormation values flattened to text). */
function rendered(resources: Resources, machineId: RegExp, file: string) {
  const [[, machine]] = ofType(resources, 'AWS::StepFunctions::StateMachine').filter(([id]) =>
    machineId.test(id),
  ) as unknown as [[string, { Properties: Record<string, any> }]];
  const subs = machine.Properties.DefinitionSubstitutions as Record<string, unknown>;
  const text = readFileSync(file, 'utf8').replace(/\$\{(\w+)\}/g, (m, key: string) => {
    if (!(key in subs)) throw new Error(`no substitution for ${m}`);
    return flat(subs[key]).replace(/"/g, '\\"');
  });
  const role = machine.Properties.RoleArn['Fn::GetAtt'][0] as string;
  return { definition: JSON.parse(text) as { States: Record<string, State> }, subs, role };
}

/** Every state of a definition, Map item processors included. */
function allStates(definition: { States: Record<string, State> }): [string, State][] {
  return Object.entries(definition.States).flatMap(([name, st]) => [
    [name, st] as [string, State],
    ...(st.ItemProcessor ? allStates(st.ItemProcessor) : []),
  ]);
}

const runJobStates = (definition: { States: Record<string, State> }) =>
  allStates(definition).filter(([, st]) => st.Resource === 'arn:aws:states:::eks:runJob.sync');

describe('EKS runner (runner: eks)', () => {
  let s: ReturnType<typeof synthesize>;
  beforeAll(() => {
    s = synthesize(EKS_CONTEXT);
  }, 120_000);

  it('runs every job of both workflows as a privileged Kubernetes Job on a node of its architecture', () => {
    const build = rendered(s.resources, /BuildWorkflowStateMachine/, IMAGE_BUILD_ASL).definition;
    const exp = rendered(s.resources, /ExportWorkflowStateMachine/, IMAGE_EXPORT_ASL).definition;
    const arches = (d: typeof build) =>
      Object.fromEntries(
        runJobStates(d).map(([name, st]) => [
          name,
          st.Parameters.Job.spec.template.spec.nodeSelector['kubernetes.io/arch'],
        ]),
      );
    expect(arches(build)).toEqual({ RunJobX86_64: 'amd64', RunJobAarch64: 'arm64', RunManifestJob: 'amd64' });
    expect(arches(exp)).toEqual({ RunJobX86_64: 'amd64', RunJobAarch64: 'arm64' });
    for (const [name, st] of [...runJobStates(build), ...runJobStates(exp)]) {
      const p = st.Parameters;
      expect(p.ClusterName, name).toBe('builders');
      expect(p.Endpoint, name).toBe(EKS_CONTEXT.eksEndpoint);
      expect(p.CertificateAuthority, name).toBe(CA);
      expect(p.Namespace, name).toBe('imagebuilder');
      const { spec } = p.Job;
      expect(spec.backoffLimit, name).toBe(0);
      expect(spec.ttlSecondsAfterFinished, name).toBeGreaterThan(0);
      expect(spec['activeDeadlineSeconds.$'], name).toMatch(/\.job\.timeoutSeconds$/);
      const pod = spec.template.spec;
      expect(pod.restartPolicy, name).toBe('Never');
      expect(pod.serviceAccountName, name).toBe('imagebuilder-builder');
      expect(pod.containers, name).toHaveLength(1);
      const [c] = pod.containers;
      expect(c.securityContext, name).toEqual({ privileged: true });
      // The stack's builder image of the node's architecture, by digest.
      const arch = name.includes('Aarch64') ? 'aarch64' : 'x86_64';
      expect(c.image, name).toMatch(
        new RegExp(
          `/<ImageBuilderBuilderImageRepository\\w+>@sha256:<ImageBuilderBuilderImageImage${arch.replace('_', '')}\\w+\\.Digest>$`,
        ),
      );
      // The environment is the run's job env only (secret ARNs, never values), nothing static.
      expect(c['env.$'], name).toMatch(/\.job\.env$/);
      expect(c.env, name).toBeUndefined();
      // The entrypoint is in the image: nothing is downloaded at run time.
      expect(c.command, name).toEqual(['ib-eks-job']);
      expect(spec.template.metadata.annotations['imagebuilder.flightctl.io/log-stream.$'], name).toMatch(
        /logstream$/i,
      );
    }
    // Each runJob hands over to the step that reads the result the job wrote.
    const next = Object.fromEntries(runJobStates(build).map(([n, st]) => [n, st.Next]));
    expect(next).toEqual({
      RunJobX86_64: 'CollectJobResult',
      RunJobAarch64: 'CollectJobResult',
      RunManifestJob: 'CollectManifestResult',
    });
  });

  it('fills every placeholder, the runner with eks', () => {
    for (const [machine, file] of [
      [/BuildWorkflowStateMachine/, IMAGE_BUILD_ASL],
      [/ExportWorkflowStateMachine/, IMAGE_EXPORT_ASL],
    ] as const) {
      const { subs } = rendered(s.resources, machine, file);
      const placeholders = [
        ...new Set([...readFileSync(file, 'utf8').matchAll(/\$\{(\w+)\}/g)].map((m) => m[1])),
      ];
      expect(Object.keys(subs).sort()).toEqual(placeholders.sort());
      expect(subs.Runner).toBe('eks');
    }
  });

  it('lets the machine roles describe the cluster and run Jobs in the namespace only, not CodeBuild', () => {
    for (const machine of [/BuildWorkflowStateMachine/, /ExportWorkflowStateMachine/]) {
      const file = machine.source.startsWith('Build') ? IMAGE_BUILD_ASL : IMAGE_EXPORT_ASL;
      const { role } = rendered(s.resources, machine, file);
      const statements = policyStatements(s.resources, role);
      const actions = statements.flatMap((st) => asArray(st.Action));
      expect(actions.filter((a) => a.startsWith('codebuild:'))).toEqual([]);
      expect(actions).not.toContain('events:PutRule');
      const describe = statements.filter((st) => asArray(st.Action).includes('eks:DescribeCluster'));
      expect(describe.map((st) => flat(st.Resource))).toEqual([
        'arn:<AWS::Partition>:eks:<AWS::Region>:<AWS::AccountId>:cluster/builders',
      ]);
      expect(actions.filter((a) => a.startsWith('eks:'))).toEqual(['eks:DescribeCluster']);
      const entries = ofType(s.resources, 'AWS::EKS::AccessEntry').filter(
        ([, r]) => r.Properties.PrincipalArn['Fn::GetAtt']?.[0] === role,
      );
      expect(entries).toHaveLength(1);
      expect(entries[0]?.[1].Properties).toMatchObject({
        ClusterName: 'builders',
        Type: 'STANDARD',
        AccessPolicies: [
          {
            PolicyArn: {
              'Fn::Join': [
                '',
                ['arn:', { Ref: 'AWS::Partition' }, ':eks::aws:cluster-access-policy/AmazonEKSEditPolicy'],
              ],
            },
            AccessScope: { Type: 'namespace', Namespaces: ['imagebuilder'] },
          },
        ],
      });
    }
  });

  it('gives the builder pods their own role through EKS Pod Identity, scoped like the CodeBuild role', () => {
    const [[, assoc]] = ofType(s.resources, 'AWS::EKS::PodIdentityAssociation') as [[string, any]];
    expect(assoc.Properties).toMatchObject({
      ClusterName: 'builders',
      Namespace: 'imagebuilder',
      ServiceAccount: 'imagebuilder-builder',
    });
    const roleId = assoc.Properties.RoleArn['Fn::GetAtt'][0] as string;
    const trust = s.resources[roleId]?.Properties.AssumeRolePolicyDocument.Statement;
    expect(trust).toEqual([
      {
        Action: ['sts:AssumeRole', 'sts:TagSession'],
        Effect: 'Allow',
        Principal: { Service: 'pods.eks.amazonaws.com' },
      },
    ]);
    const statements = policyStatements(s.resources, roleId);
    const byAction = (action: string) =>
      statements
        .filter((st) => asArray(st.Action).includes(action))
        .flatMap((st) => asArray(st.Resource).map(flat));
    // No S3 and no Secrets Manager: a pod reads its context and registry passwords and writes its disk
    // image and result through presigned URLs.
    const actions = statements.flatMap((st) => asArray(st.Action));
    expect(actions.filter((a) => /^(s3|secretsmanager|kms):/.test(a))).toEqual([]);
    expect(byAction('ecr:BatchGetImage')).toEqual([expect.stringMatching(/BuilderImageRepository/)]);
  });

  it('keeps secrets out of the Job: no password and no secret reference, only the presigned credentials URL', () => {
    const ref = { orgId: 'acme', kind: 'ImageBuild' as const, name: 'b', uid: '0b7c', generation: 1 };
    const repo = (registry: string, secretRef?: string) =>
      ({
        orgId: 'acme',
        kind: 'Repository',
        name: registry,
        version: 1,
        doc: { spec: { type: 'oci', registry, ociAuth: { authType: 'docker', username: 'robot' } } },
        ...(secretRef ? { secretRef } : {}),
      }) as never;
    const build = {
      doc: {
        metadata: { name: 'b' },
        spec: {
          source: { repository: 'src', imageName: 'a/b', imageTag: 'c' },
          destination: { repository: 'dst', imageName: 'edge/os', imageTag: 'v1' },
          binding: { type: 'late' },
        },
      },
    } as never;
    const secret =
      'arn:aws:secretsmanager:eu-west-1:123456789012:secret:imagebuilder/dev/acme/repositories/dst/x-AbCdEf';
    const plan = planBuild(
      ref,
      build,
      repo('quay.io'),
      repo('registry.example.com', secret),
      { contextBucket: 'bucket', buildTimeoutSeconds: 3600, heartbeatSeconds: 30 },
      {
        contextUrl: 'https://bucket.s3/ctx?sig',
        credentialsUrl: 'https://bucket.s3/credentials?sig',
        resultUrls: { 'contexts/acme/0b7c-1/results/x86_64.json': 'https://bucket.s3/res?sig' },
      },
      'eks',
    );
    const job = plan.builds[0]?.job;
    expect(job?.timeoutSeconds).toBe(3600);
    expect(job?.name).toBe('ib-0b7c-1-amd64');
    expect(job?.env).toContainEqual({
      name: 'IB_CREDENTIALS_URL',
      value: 'https://bucket.s3/credentials?sig',
    });
    expect(job?.env.filter((v) => v.name.includes('PASSWORD') || v.value.includes(secret))).toEqual([]);
    expect(job?.resultKey).toBe('contexts/acme/0b7c-1/results/x86_64.json');
    expect(job?.env).toContainEqual({ name: 'IB_RESULT_URL', value: 'https://bucket.s3/res?sig' });
    expect(jobEnv([{ Name: 'X', Value: 'v', Type: 'PLAINTEXT' }])).toEqual([{ name: 'X', value: 'v' }]);
    expect(() => jobEnv([{ Name: 'P', Value: secret, Type: 'SECRETS_MANAGER' }])).toThrow(
      /no secret reference/,
    );
  });

  it('defaults namespace and service account per stage, so two stages can share a cluster', () => {
    const { eksNamespace: _n, eksServiceAccount: _a, ...rest } = EKS_CONTEXT;
    const names = (stage: string) => {
      const x = synthesize({ ...rest, stage });
      const [[, assoc]] = ofType(x.resources, 'AWS::EKS::PodIdentityAssociation') as [[string, any]];
      return [assoc.Properties.Namespace, assoc.Properties.ServiceAccount];
    };
    const [dev, prod] = [names('dev'), names('prod')];
    expect(dev).not.toEqual(prod);
    expect(dev[0]).not.toBe(prod[0]);
  }, 120_000);

  it('ships an entrypoint script that bash accepts', () => {
    expect(spawnSync('bash', ['-n', EKS_JOB_SCRIPT]).status).toBe(0);
  });

  it('rejects an eks runner without its cluster, and eks settings without the eks runner', () => {
    const props = (context: Record<string, unknown>) => () =>
      imageBuilderPropsFromContext(new App({ context }).node);
    expect(props({ runner: 'eks' })).toThrow(/runner "eks" needs the cluster/);
    expect(props({ ...EKS_CONTEXT, eksEndpoint: 'http://x' })).toThrow(/eksEndpoint/);
    expect(props({ ...EKS_CONTEXT, runner: 'codebuild' })).toThrow(/apply only with runner "eks"/);
    expect(props({ runner: 'fargate' })).toThrow(/runner "fargate" must be one of codebuild, eks/);
  });
});

describe('default runner (codebuild)', () => {
  let resources: Resources;
  let build: ReturnType<typeof rendered>;
  beforeAll(() => {
    resources = synthesize({ stage: 'dev' }).resources;
    build = rendered(resources, /BuildWorkflowStateMachine/, IMAGE_BUILD_ASL);
  }, 120_000);

  it('creates nothing of EKS and gives the machines no EKS rights', () => {
    expect(Object.values(resources).filter((r) => r.Type.startsWith('AWS::EKS::'))).toEqual([]);
    expect(build.subs.Runner).toBe('codebuild');
    const actions = policyStatements(resources).flatMap((st) => asArray(st.Action));
    expect(actions.filter((a) => a.startsWith('eks:'))).toEqual([]);
    expect(actions).toContain('codebuild:StartBuild');
  });
});
