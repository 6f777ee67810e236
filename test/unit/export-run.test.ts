// The exporter environment an export run sends to CodeBuild (and the local stand-in).
import { describe, expect, it } from 'vitest';
import { loadBuildspec } from '../../functions/builder/files.js';
import { planExport } from '../../functions/commons/domain/export-run.js';
import type { StoredResource } from '../../functions/commons/ports.js';

const digest = `sha256:${'a'.repeat(64)}`;
const ref = {
  orgId: 'acme',
  kind: 'ImageExport' as const,
  name: 'e',
  uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
  generation: 1,
};
const build = {
  orgId: 'acme',
  kind: 'ImageBuild',
  name: 'edge',
  version: 3,
  doc: {
    apiVersion: 'flightctl.io/v1alpha1',
    kind: 'ImageBuild',
    metadata: { name: 'edge', uid: 'b' },
    spec: {
      source: { repository: 'src', imageName: 'a/b', imageTag: '1' },
      destination: { repository: 'dst', imageName: 'edge/os', imageTag: 'v1' },
      binding: { type: 'late' },
      userConfiguration: { username: 'edge', publickey: 'ssh-ed25519 AAAA edge@x' },
    },
    status: { manifestDigest: digest, architectures: { x86_64: { digest } } },
  },
} as unknown as StoredResource<never>;
const registry = {
  orgId: 'acme',
  kind: 'Repository',
  name: 'dst',
  version: 1,
  secretRef: 'arn:aws:secretsmanager:eu-west-1:1:secret:imagebuilder/dev/acme/repositories/dst/abc',
  doc: {
    metadata: { name: 'dst' },
    spec: {
      type: 'oci',
      registry: 'registry.example.com',
      ociAuth: { authType: 'docker', username: 'robot' },
    },
  },
} as unknown as StoredResource<never>;
const exp = (format: string) =>
  ({
    orgId: 'acme',
    kind: 'ImageExport',
    name: 'e',
    version: 1,
    doc: { metadata: { name: 'e' }, spec: { source: { type: 'imageBuild', imageBuildRef: 'edge' }, format } },
  }) as unknown as StoredResource<never>;
const settings = {
  artifactBucket: 'ib-bucket',
  region: 'eu-west-1',
  buildTimeoutSeconds: 3600,
  heartbeatSeconds: 30,
};
const env = (plan: ReturnType<typeof planExport>) => Object.fromEntries(plan.env.map((v) => [v.Name, v]));

describe('planExport', () => {
  it('qcow2: the image by digest, the artifact key and name, bib argv, the password only through its URL', () => {
    const plan = planExport(ref, exp('qcow2'), build, registry, settings, {
      artifactUrl: 'https://b.s3/put?sig',
      credentialsUrl: 'https://b.s3/contexts/acme/credentials.json?sig',
    });
    expect(plan).toMatchObject({
      arch: 'x86_64',
      imageRef: `registry.example.com/edge/os@${digest}`,
      fileName: 'edge-x86_64.qcow2',
      artifactKey: `artifacts/acme/${ref.uid}-1/edge-x86_64.qcow2`,
      contentType: 'application/x-qemu-disk',
      timeoutMinutes: 60,
    });
    const e = env(plan);
    expect(e.IB_JOB?.Value).toBe('export');
    expect(e.IB_CREDENTIALS_URL).toEqual({
      Name: 'IB_CREDENTIALS_URL',
      Value: 'https://b.s3/contexts/acme/credentials.json?sig',
      Type: 'PLAINTEXT',
    });
    expect(plan.env.filter((v) => v.Type !== 'PLAINTEXT' || v.Name.includes('PASSWORD'))).toEqual([]);
    const argv = JSON.parse(e.IB_BIB_ARGS?.Value ?? '[]') as string[];
    expect(argv.slice(0, 2)).toEqual(['podman', 'run']);
    expect(argv).toContain('--type');
    expect(argv[argv.indexOf('--type') + 1]).toBe('qcow2');
    expect(argv[argv.length - 1]).toBe(`registry.example.com/edge/os@${digest}`);
    expect(e.IB_BIB_CONFIG?.Value).toContain('name = "edge"');
    // bib mounts the config and output directory where the buildspec writes them (its IB_WORK).
    const work = loadBuildspec().env?.variables?.IB_WORK;
    expect(work).toBeTruthy();
    expect(argv).toContain(`${work}/config.toml:/config.toml:ro`);
    expect(argv).toContain(`${work}/out:/output`);
    expect(e.IB_ARTIFACT_URL?.Value).toBe('https://b.s3/put?sig');
  });

  it('ami: bib uploads to the service bucket in the stack region with a per-run AMI name', () => {
    const argv = JSON.parse(
      env(planExport(ref, exp('ami'), build, registry, settings, { artifactUrl: 'https://b.s3/put?sig' }))
        .IB_BIB_ARGS?.Value ?? '[]',
    ) as string[];
    expect(argv[argv.indexOf('--aws-bucket') + 1]).toBe('ib-bucket');
    expect(argv[argv.indexOf('--aws-region') + 1]).toBe('eu-west-1');
    expect(argv[argv.indexOf('--aws-ami-name') + 1]).toBe('imagebuilder-edge-x86_64-1b4e28ba-1');
  });
});
