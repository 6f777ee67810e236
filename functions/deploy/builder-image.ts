// The builder image's custom resource (infra/constructs/builder-image.ts). On Create/Update (a new hash
// of functions/builder) it starts the bootstrap CodeBuild build of one architecture and hands it the
// resource's presigned response URL: the build itself answers CloudFormation when it ends, with the
// pushed image's digest, so no function waits for a build of several minutes. A Delete is answered at
// once: the repository keeps (or, on stack deletion, empties) its images.
import { CodeBuildClient, StartBuildCommand } from '@aws-sdk/client-codebuild';

export interface BuilderImageEvent {
  RequestType: 'Create' | 'Update' | 'Delete';
  ResponseURL: string;
  StackId: string;
  RequestId: string;
  LogicalResourceId: string;
  PhysicalResourceId?: string;
  ResourceProperties: { ServiceToken: string; Project: string; ImageTag: string };
}

/** CloudFormation's response to a custom resource request (its documented shape). */
export async function respond(
  event: BuilderImageEvent,
  status: 'SUCCESS' | 'FAILED',
  reason: string,
  physicalId: string,
): Promise<void> {
  const body = JSON.stringify({
    Status: status,
    Reason: reason.slice(0, 1000),
    PhysicalResourceId: physicalId,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
  });
  const res = await fetch(event.ResponseURL, { method: 'PUT', headers: { 'content-type': '' }, body });
  if (!res.ok) throw new Error(`CloudFormation response rejected: ${res.status}`);
}

let client: CodeBuildClient | undefined;

export async function handler(event: BuilderImageEvent): Promise<void> {
  const { Project, ImageTag } = event.ResourceProperties;
  const physicalId = `builder-image:${ImageTag}`;
  if (event.RequestType === 'Delete') {
    await respond(event, 'SUCCESS', 'nothing to delete', event.PhysicalResourceId ?? physicalId);
    return;
  }
  client ??= new CodeBuildClient({});
  const env = (name: string, value: string) => ({ name, value, type: 'PLAINTEXT' as const });
  try {
    await client.send(
      new StartBuildCommand({
        projectName: Project,
        idempotencyToken: event.RequestId.slice(0, 64),
        environmentVariablesOverride: [
          env('IMAGE_TAG', ImageTag),
          env('CFN_RESPONSE_URL', event.ResponseURL),
          env('CFN_STACK_ID', event.StackId),
          env('CFN_REQUEST_ID', event.RequestId),
          env('CFN_LOGICAL_ID', event.LogicalResourceId),
          env('CFN_PHYSICAL_ID', physicalId),
        ],
      }),
    );
  } catch (err) {
    await respond(
      event,
      'FAILED',
      `could not start the builder image build: ${(err as Error).message}`,
      physicalId,
    );
  }
}
