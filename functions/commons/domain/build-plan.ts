// What a build run does, as data: the builder environment of each architecture (CodeBuild's
// EnvironmentVariablesOverride shape, also used by the local runner) and of the manifest list. Secrets
// appear only as references (Type SECRETS_MANAGER), resolved by CodeBuild or the local runner.
import type { StoredResource, WorkflowRef } from '../ports.js';
import type { Architecture, ImageBuild, Repository } from './types.js';

export interface EnvVar {
  Name: string;
  Value: string;
  Type: 'PLAINTEXT' | 'SECRETS_MANAGER';
}

export interface BuildItem {
  arch: Architecture;
  pushRef: string;
  /** CodeBuild's build timeout (5–2160 minutes); the local stand-in uses the settings' seconds. */
  timeoutMinutes: number;
  env: EnvVar[];
}

export interface BuildPlan {
  contextPrefix: string;
  destination: string;
  multiArch: boolean;
  builds: BuildItem[];
}

export interface PlanSettings {
  contextBucket: string;
  buildTimeoutSeconds: number;
  heartbeatSeconds: number;
}

/** Context paths of registry CA bundles (outside ib/, which the Containerfile copies into the image). */
export const caPath = (side: 'SOURCE' | 'DEST') => `.ib-registry/${side.toLowerCase()}-ca.crt`;

export const contextPrefix = (ref: WorkflowRef) => `contexts/${ref.orgId}/${ref.uid}-${ref.generation}/`;

const plain = (Name: string, Value: string): EnvVar => ({ Name, Value, Type: 'PLAINTEXT' });

export function registryEnv(side: 'SOURCE' | 'DEST', repo: StoredResource<Repository>): EnvVar[] {
  const spec = repo.doc.spec;
  const insecure = spec.scheme === 'http' || spec.skipServerVerification === true;
  return [
    plain(`IB_${side}_REGISTRY`, spec.registry),
    plain(`IB_${side}_TLS_VERIFY`, insecure ? 'false' : 'true'),
    ...(spec.ociAuth ? [plain(`IB_${side}_USERNAME`, spec.ociAuth.username)] : []),
    ...(repo.secretRef
      ? [{ Name: `IB_${side}_PASSWORD`, Value: repo.secretRef, Type: 'SECRETS_MANAGER' as const }]
      : []),
    ...(spec['ca.crt'] ? [plain(`IB_${side}_CA_FILE`, caPath(side))] : []),
  ];
}

export function planBuild(
  ref: WorkflowRef,
  build: StoredResource<ImageBuild>,
  source: StoredResource<Repository>,
  destination: StoredResource<Repository>,
  settings: PlanSettings,
): BuildPlan {
  const spec = build.doc.spec;
  const archs = spec.architectures ?? ['x86_64'];
  const multiArch = archs.length > 1;
  const destRepo = `${destination.doc.spec.registry}/${spec.destination.imageName}`;
  const destinationRef = `${destRepo}:${spec.destination.imageTag}`;
  const prefix = contextPrefix(ref);
  const common = [
    plain('IB_CONTEXT_BUCKET', settings.contextBucket),
    plain('IB_CONTEXT_PREFIX', prefix),
    plain('IB_HEARTBEAT_SECONDS', String(settings.heartbeatSeconds)),
    ...registryEnv('SOURCE', source),
    ...registryEnv('DEST', destination),
  ];
  return {
    contextPrefix: prefix,
    destination: destinationRef,
    multiArch,
    builds: archs.map((arch) => {
      // One architecture pushes the final tag; several push one tag each, joined by the manifest list.
      const pushRef = multiArch ? `${destinationRef}-${arch}` : destinationRef;
      return {
        arch,
        pushRef,
        timeoutMinutes: Math.min(2160, Math.max(5, Math.ceil(settings.buildTimeoutSeconds / 60))),
        env: [
          ...common,
          plain('IB_MODE', 'build'),
          plain('IB_ARCH', arch),
          plain('IB_PUSH_REF', pushRef),
          plain('IB_CACHE_REPO', `${destRepo}/buildcache`),
        ],
      };
    }),
  };
}

/** Digest a builder run reported (CodeBuild exported variable IB_DIGEST). */
export function exportedDigest(exported: { Name: string; Value: string }[] | undefined): string {
  const digest = exported?.find((v) => v.Name === 'IB_DIGEST')?.Value ?? '';
  if (!/^sha256:[0-9a-f]{64}$/.test(digest))
    throw new Error(`the builder reported no valid digest ("${digest}")`);
  return digest;
}

export function planManifestList(plan: BuildPlan, digests: Record<string, string>): EnvVar[] {
  const repo = plan.destination.slice(0, plan.destination.lastIndexOf(':'));
  const first = plan.builds[0];
  const common = (first?.env ?? []).filter((v) => /^IB_(DEST_|CONTEXT_|HEARTBEAT)/.test(v.Name));
  return [
    ...common,
    plain('IB_MODE', 'manifest'),
    plain('IB_PUSH_REF', plan.destination),
    plain('IB_MANIFEST_SOURCES', plan.builds.map((b) => `${repo}@${digests[b.arch]}`).join(' ')),
  ];
}
