import { describe, expect, it } from 'vitest';
import { planBuild, planManifestList } from '../../functions/commons/domain/build-plan.js';
import type { ImageBuild, Repository } from '../../functions/commons/domain/types.js';
import type { StoredResource, WorkflowRef } from '../../functions/commons/ports.js';

const ref: WorkflowRef = { orgId: 'org-1', kind: 'ImageBuild', name: 'edge', uid: 'u-1', generation: 2 };
const repo = (name: string, spec: Partial<Repository['spec']>, secretRef?: string) =>
  ({
    orgId: 'org-1',
    kind: 'Repository',
    name,
    doc: { metadata: { name }, spec: { type: 'oci', registry: 'quay.example.com', ...spec } },
    ...(secretRef ? { secretRef } : {}),
  }) as unknown as StoredResource<Repository>;
const build = (architectures?: string[]) =>
  ({
    orgId: 'org-1',
    kind: 'ImageBuild',
    name: 'edge',
    doc: {
      metadata: { name: 'edge' },
      spec: {
        source: { repository: 'src', imageName: 'centos-bootc/centos-bootc', imageTag: 'stream9' },
        destination: { repository: 'dst', imageName: 'fleet/os', imageTag: 'v1' },
        binding: { type: 'late' },
        ...(architectures ? { architectures } : {}),
      },
    },
  }) as unknown as StoredResource<ImageBuild>;
const settings = { contextBucket: 'ctx-bucket', buildTimeoutSeconds: 3600, heartbeatSeconds: 30 };
const env = (vars: { Name: string; Value: string; Type: string }[]) =>
  Object.fromEntries(vars.map((v) => [v.Name, `${v.Type}:${v.Value}`]));

const TRANSFERS = {
  contextUrl: 'https://ctx-bucket.s3.amazonaws.com/contexts/org-1/u-1-2/context.tar?X-Amz-Signature=x',
  credentialsUrl:
    'https://ctx-bucket.s3.amazonaws.com/contexts/org-1/u-1-2/credentials.json?X-Amz-Signature=y',
};

describe('planBuild', () => {
  const source = repo('src', { registry: 'quay.io' });
  const destination = repo(
    'dst',
    { registry: 'registry.example.com:5000', scheme: 'http', ociAuth: { username: 'robot' } } as never,
    'arn:aws:secretsmanager:us-east-1:1:secret:dst-AbC',
  );

  it('one architecture: pushes the tag itself, with the registry layer cache by default', () => {
    const plan = planBuild(ref, build(), source, destination, settings, TRANSFERS);
    expect(plan.multiArch).toBe(false);
    expect(plan.destination).toBe('registry.example.com:5000/fleet/os:v1');
    expect(plan.builds).toHaveLength(1);
    const [only] = plan.builds;
    expect(only?.timeoutMinutes).toBe(60);
    expect(env(only?.env ?? [])).toEqual({
      // the run reads its context through the URL its trusted step presigned, with no credentials
      IB_CONTEXT_URL: `PLAINTEXT:${TRANSFERS.contextUrl}`,
      // and its registry passwords the same way: no secret, and no secret reference, in its environment
      IB_CREDENTIALS_URL: `PLAINTEXT:${TRANSFERS.credentialsUrl}`,
      IB_HEARTBEAT_SECONDS: 'PLAINTEXT:30',
      IB_SOURCE_REGISTRY: 'PLAINTEXT:quay.io',
      IB_SOURCE_TLS_VERIFY: 'PLAINTEXT:true',
      IB_DEST_REGISTRY: 'PLAINTEXT:registry.example.com:5000',
      IB_DEST_TLS_VERIFY: 'PLAINTEXT:false',
      IB_DEST_USERNAME: 'PLAINTEXT:robot',
      IB_MODE: 'PLAINTEXT:build',
      IB_ARCH: 'PLAINTEXT:x86_64',
      IB_PUSH_REF: 'PLAINTEXT:registry.example.com:5000/fleet/os:v1',
      IB_CACHE_REPO: 'PLAINTEXT:registry.example.com:5000/fleet/os/buildcache',
    });
  });

  it('leaves the registry layer cache out when the deployment turns it off (the local stack)', () => {
    const plan = planBuild(
      ref,
      build(),
      source,
      destination,
      { ...settings, registryLayerCache: false },
      TRANSFERS,
    );
    expect(plan.builds[0]?.env.map((v) => v.Name)).not.toContain('IB_CACHE_REPO');
    expect(
      planBuild(
        ref,
        build(),
        source,
        destination,
        {
          ...settings,
          registryLayerCache: true,
        },
        TRANSFERS,
      ).builds[0]?.env.map((v) => v.Name),
    ).toContain('IB_CACHE_REPO');
  });

  it('several architectures: one tag per architecture, joined by digest in the manifest list', () => {
    const plan = planBuild(ref, build(['x86_64', 'aarch64']), source, destination, settings, TRANSFERS);
    expect(plan.multiArch).toBe(true);
    expect(plan.builds.map((b) => [b.arch, b.pushRef])).toEqual([
      ['x86_64', 'registry.example.com:5000/fleet/os:v1-x86_64'],
      ['aarch64', 'registry.example.com:5000/fleet/os:v1-aarch64'],
    ]);
    const d = (c: string) => `sha256:${c.repeat(64)}`;
    const list = env(planManifestList(plan, { x86_64: d('a'), aarch64: d('b') }));
    expect(list.IB_MODE).toBe('PLAINTEXT:manifest');
    expect(list.IB_PUSH_REF).toBe('PLAINTEXT:registry.example.com:5000/fleet/os:v1');
    expect(list.IB_MANIFEST_SOURCES).toBe(
      `PLAINTEXT:registry.example.com:5000/fleet/os@${d('a')} registry.example.com:5000/fleet/os@${d('b')}`,
    );
    expect(list.IB_CREDENTIALS_URL).toBe(`PLAINTEXT:${TRANSFERS.credentialsUrl}`);
    expect(Object.keys(list).filter((k) => k.includes('PASSWORD'))).toEqual([]);
    expect(list.IB_SOURCE_REGISTRY).toBeUndefined();
    expect(list.IB_CONTEXT_URL).toBeUndefined();
  });

  it('keeps the CodeBuild timeout within 5 minutes and 36 hours', () => {
    const t = (s: number) =>
      planBuild(ref, build(), source, destination, { ...settings, buildTimeoutSeconds: s }, TRANSFERS)
        .builds[0]?.timeoutMinutes;
    expect([t(1), t(301), t(10 ** 7)]).toEqual([5, 6, 2160]);
  });
});
