// ImageExport: a disk image made from a build; waits for the build when it is not Completed yet.
import type { Deps, StoredResource } from '../ports.js';
import { authorize, type Principal } from './auth.js';
import { ConflictError, InvalidError } from './errors.js';
import { isActive, startWorkflow, workflowRef } from './image-builds.js';
import {
  getOrThrow,
  type ListParams,
  listResources,
  newMetadata,
  present,
  readyCondition,
  readyReason,
} from './resources.js';
import {
  deleteExportNow,
  deletionRequested,
  finishBuildDeletion,
  settleWaitingExports,
} from './transitions.js';
import type { ImageBuild, ImageExport } from './types.js';
import { validateImageExportBody } from './validation.js';

const KIND = 'ImageExport';

export async function createImageExport(deps: Deps, p: Principal, body: unknown) {
  authorize(p, 'write');
  const input = validateImageExportBody(body);
  const buildName = input.spec.source.imageBuildRef;
  const build = (await deps.store.get(p.orgId, 'ImageBuild', buildName)) as
    | StoredResource<ImageBuild>
    | undefined;
  if (!build) throw new InvalidError('spec.source.imageBuildRef', `ImageBuild "${buildName}" does not exist`);
  if (deletionRequested(build)) throw buildBeingDeleted(buildName);
  const archs = build.doc.spec.architectures ?? ['x86_64'];
  if (input.spec.architecture && !archs.includes(input.spec.architecture)) {
    throw new InvalidError(
      'spec.architecture',
      `ImageBuild "${buildName}" builds ${archs.join(', ')}, not ${input.spec.architecture}`,
    );
  }
  const buildReason = readyReason(build.doc) ?? 'Pending';
  const message =
    buildReason === 'Completed'
      ? 'Waiting for the export workflow to start'
      : `Waiting for ImageBuild "${buildName}" to complete (it is ${buildReason})`;
  const item: StoredResource<ImageExport> = {
    orgId: p.orgId,
    kind: KIND,
    name: input.metadata.name,
    version: 1,
    buildRef: buildName,
    doc: {
      apiVersion: input.apiVersion,
      kind: KIND,
      metadata: newMetadata(input.metadata, { owner: `ImageBuild/${buildName}` }),
      spec: input.spec,
      status: { conditions: [readyCondition('Pending', message)] },
    },
  };
  await deps.store.create(item);
  // A DELETE of the build may have begun between the read above and this write, and its list of exports
  // may have missed this one: read the build again (DELETE marks it before listing) and withdraw.
  const after = await deps.store.get(p.orgId, 'ImageBuild', buildName);
  if (!after || after.doc.metadata.uid !== build.doc.metadata.uid || deletionRequested(after)) {
    await deps.store.delete(p.orgId, KIND, item.name);
    throw buildBeingDeleted(buildName);
  }
  // Started now only when there is an image to export; otherwise the build's completion starts it,
  // or its failure or cancellation ends it.
  if (buildReason === 'Completed') await startWorkflow(deps, item);
  else if (buildReason === 'Failed' || buildReason === 'Canceled') {
    await settleWaitingExports(deps, workflowRef(build), buildReason);
    return present((await deps.store.get(p.orgId, KIND, item.name)) ?? item);
  }
  return present(item);
}

export async function getImageExport(deps: Deps, p: Principal, name: string) {
  authorize(p, 'read');
  return present(await getOrThrow<ImageExport>(deps, p.orgId, KIND, name));
}

export async function listImageExports(deps: Deps, p: Principal, params: ListParams) {
  authorize(p, 'read');
  return listResources<ImageExport>(deps, p.orgId, KIND, params);
}

export async function deleteImageExport(deps: Deps, p: Principal, name: string): Promise<void> {
  authorize(p, 'write');
  const item = await deps.store.get(p.orgId, KIND, name);
  if (item) await removeExport(deps, item);
}

const buildBeingDeleted = (buildName: string) =>
  new ConflictError(`spec.source.imageBuildRef: ImageBuild "${buildName}" is being deleted`);

/**
 * Stops the export if it runs, deletes it and its disk image; when it was the last export its build's
 * pending deletion waited for, the build goes too.
 */
export async function removeExport(deps: Deps, item: StoredResource): Promise<void> {
  if (isActive(item)) await deps.workflows.stop(workflowRef(item), 'ImageExport deleted');
  await deleteExportNow(deps, item);
  if (item.buildRef) await finishBuildDeletion(deps, item.orgId, item.buildRef);
}

/** Presigned links live this long (the download must start within it). */
export const DOWNLOAD_URL_SECONDS = 900;

/** GET …/download: a short-lived presigned URL of the disk image, named `<build>-<arch>.<ext>`. */
export async function downloadUrl(deps: Deps, p: Principal, name: string): Promise<string> {
  authorize(p, 'download');
  const item = await getOrThrow<ImageExport>(deps, p.orgId, KIND, name);
  const reason = readyReason(item.doc);
  const artifact = item.doc.status?.artifact;
  if (reason !== 'Completed' || !artifact) {
    throw new InvalidError(
      'status',
      `ImageExport "${name}" is ${reason ?? 'Pending'}; only a Completed export can be downloaded`,
    );
  }
  const key = artifact.uri.replace(/^s3:\/\/[^/]+\//, '');
  return deps.objects.presignGet(key, DOWNLOAD_URL_SECONDS, key.slice(key.lastIndexOf('/') + 1));
}
