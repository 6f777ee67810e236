// The builder image's custom resource (infra/constructs/builder-image.ts): at deploy, when the image's
// source changed, build it on the bootstrap CodeBuild project(s) and answer with each architecture's
// digest, which the builder projects then run pinned. The Provider framework calls `onEvent` once and
// `isComplete` until the builds end. A Delete does nothing: the repository keeps (or, on stack deletion,
// empties) its images.
import { BatchGetBuildsCommand, CodeBuildClient, StartBuildCommand } from '@aws-sdk/client-codebuild';

interface ResourceProps {
  /** Bootstrap project per architecture, e.g. {"x86_64": "proj-a", "aarch64": "proj-b"}. */
  Projects: Record<string, string>;
  /** The tag the images get (the source asset's hash): a new hash is a new image. */
  ImageTag: string;
}

interface CustomResourceEvent {
  RequestType: 'Create' | 'Update' | 'Delete';
  ResourceProperties: ResourceProps & { ServiceToken: string };
  PhysicalResourceId?: string;
  Data?: { BuildIds?: string };
}

const client = new CodeBuildClient({});

export async function onEvent(event: CustomResourceEvent) {
  const { Projects, ImageTag } = event.ResourceProperties;
  const physical = `builder-image:${ImageTag}`;
  if (event.RequestType === 'Delete') return { PhysicalResourceId: event.PhysicalResourceId ?? physical };
  const ids: Record<string, string> = {};
  for (const [arch, projectName] of Object.entries(Projects)) {
    const started = await client.send(
      new StartBuildCommand({
        projectName,
        environmentVariablesOverride: [{ name: 'IMAGE_TAG', value: `${ImageTag}-${arch}`, type: 'PLAINTEXT' }],
        // One build per deployment attempt, even if CloudFormation repeats the request.
        idempotencyToken: `${ImageTag}-${arch}`.slice(0, 64),
      }),
    );
    if (!started.build?.id) throw new Error(`CodeBuild did not start a build of ${projectName}`);
    ids[arch] = started.build.id;
  }
  return { PhysicalResourceId: physical, Data: { BuildIds: JSON.stringify(ids) } };
}

export async function isComplete(event: CustomResourceEvent) {
  if (event.RequestType === 'Delete') return { IsComplete: true };
  const ids = JSON.parse(event.Data?.BuildIds ?? '{}') as Record<string, string>;
  const { builds = [] } = await client.send(new BatchGetBuildsCommand({ ids: Object.values(ids) }));
  const data: Record<string, string> = {};
  for (const [arch, id] of Object.entries(ids)) {
    const build = builds.find((b) => b.id === id);
    const status = build?.buildStatus ?? 'IN_PROGRESS';
    if (status === 'IN_PROGRESS') return { IsComplete: false };
    if (status !== 'SUCCEEDED') {
      throw new Error(`the ${arch} builder image build ${id} ended ${status}: see its log in CodeBuild`);
    }
    const digest = build?.exportedEnvironmentVariables?.find((v) => v.name === 'IMAGE_DIGEST')?.value ?? '';
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) {
      throw new Error(`the ${arch} builder image build ${id} reported no digest`);
    }
    // The hex alone: the construct prefixes `sha256:` so that CDK renders `<repository>@sha256:<hex>`.
    data[`Digest_${arch}`] = digest.slice('sha256:'.length);
  }
  return { IsComplete: true, Data: data };
}
