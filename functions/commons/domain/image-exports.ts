// ImageExport: a disk image made from a build; waits for the build when it is not Completed yet.
import type { Deps, StoredResource } from '../ports.js';
import { authorize, type Principal } from './auth.js';
import { InvalidError } from './errors.js';
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
  const archs = build.doc.spec.architectures ?? ['x86_64'];
  if (input.spec.architecture && !archs.includes(input.spec.architecture)) {
    throw new InvalidError(
      'spec.architecture',
      `ImageBuild "${buildName}" builds ${archs.join(', ')}, not ${input.spec.architecture}`,
    );
  }
  const buildReason = readyReason(build.doc);
  const message =
    buildReason === 'Completed'
      ? 'Waiting for the export workflow to start'
      : `Waiting for ImageBuild "${buildName}" to complete (it is ${buildReason ?? 'Pending'})`;
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
  await startWorkflow(deps, item);
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
  if (item && isActive(item)) await deps.workflows.stop(workflowRef(item), 'ImageExport deleted');
  await deps.store.delete(p.orgId, KIND, name);
}
