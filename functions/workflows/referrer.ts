// The export's registry side: the disk image pushed to the build's destination repository as an ORAS
// artifact whose subject is the built image's manifest (or, for qcow2-disk-container, as a KubeVirt
// containerdisk image that also refers to it). The disk image streams from object storage to the
// registry; nothing holds it in memory.
import type { Readable } from 'node:stream';
import { type Descriptor, OciRegistry } from '../commons/adapters/oci-registry.js';
import { bucketUrls } from '../commons/domain/egress.js';
import { artifactFor } from '../commons/domain/export-plan.js';
import type { ReferrerPusher } from './image-export.js';

/** The referrer push's time, under the export step's 15-minute Lambda timeout (infra/constructs/export-workflow.ts). */
const REFERRER_PUSH_SECONDS = 14 * 60;

export const pushDiskReferrer: ReferrerPusher = async ({ deps, registry, build, plan, sha256, size }) => {
  const spec = registry.doc.spec;
  const password = registry.secretRef
    ? await deps.secrets.getRepositoryPassword(registry.orgId, registry.secretRef)
    : undefined;
  const client = new OciRegistry({
    registry: spec.registry,
    scheme: spec.scheme ?? 'https',
    ...(spec.ociAuth ? { username: spec.ociAuth.username } : {}),
    ...(password ? { password } : {}),
    ...(spec['ca.crt'] ? { caPem: Buffer.from(spec['ca.crt'], 'base64').toString('utf8') } : {}),
    ...(spec.skipServerVerification ? { skipServerVerification: true } : {}),
    // The tenant's registry, its token realm and redirects only: nothing internal in the cloud, never
    // the service's bucket, and done within the step's time (README, "Authority of a run").
    egress: {
      allowInternal: deps.settings.internalRegistries === true,
      forbiddenUrl: bucketUrls(deps.objects.bucket),
      deadline: Date.now() + REFERRER_PUSH_SECONDS * 1000,
    },
  });
  try {
    const repository = build.doc.spec.destination.imageName;
    const subjectDigest = build.doc.status?.manifestDigest ?? '';
    const manifest = await client.getManifest(repository, subjectDigest);
    if (!manifest)
      throw new Error(`the built image ${repository}@${subjectDigest} is no longer in ${spec.registry}`);
    const subject: Descriptor = {
      mediaType: manifest.mediaType,
      digest: manifest.digest,
      size: manifest.body.length,
    };
    const open = async () => (await deps.objects.openRead(plan.artifactKey)) as Readable;
    const artifact = artifactFor(plan.format as never);
    if (artifact.containerDisk) {
      const pushed = await client.pushContainerDisk({
        repository,
        tag: `${build.doc.spec.destination.imageTag}-containerdisk-${plan.arch}`,
        disk: { open, size },
        architecture: plan.arch === 'aarch64' ? 'arm64' : 'amd64',
        subject,
      });
      return pushed.digest;
    }
    const pushed = await client.pushArtifact({
      repository,
      artifactType: artifact.ociArtifactType,
      subject,
      file: {
        open,
        size,
        digest: `sha256:${sha256}`,
        mediaType: artifact.layerMediaType,
        annotations: { 'org.opencontainers.image.title': plan.fileName },
      },
    });
    return pushed.digest;
  } finally {
    client.close();
  }
};
