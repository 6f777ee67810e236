// ImageBuild: validated, stored Pending, then handed to the build workflow.
import type { Deps, StoredResource, WorkflowRef } from '../ports.js';
import { authorize, type Principal } from './auth.js';
import { InvalidError } from './errors.js';
import { requireRepository } from './repositories.js';
import {
  getOrThrow,
  type ListParams,
  listResources,
  newMetadata,
  present,
  readyCondition,
  readyReason,
} from './resources.js';
import { type ImageBuild, type ImageExport, TERMINAL_REASONS } from './types.js';
import { validateImageBuildBody } from './validation.js';

const KIND = 'ImageBuild';

export const workflowRef = (item: StoredResource): WorkflowRef => ({
  orgId: item.orgId,
  kind: item.kind as WorkflowRef['kind'],
  name: item.name,
  uid: item.doc.metadata.uid as string,
  generation: item.doc.metadata.generation ?? 1,
});

/** Validation shared by create and the Containerfile preview: schema, then the repositories it names. */
export async function validateImageBuild(deps: Deps, orgId: string, body: unknown) {
  const input = validateImageBuildBody(body);
  const source = await requireRepository(
    deps,
    orgId,
    input.spec.source.repository,
    'spec.source.repository',
    false,
  );
  const destination = await requireRepository(
    deps,
    orgId,
    input.spec.destination.repository,
    'spec.destination.repository',
    true,
  );
  if (input.spec.binding.type !== 'early' && input.spec.binding.type !== 'late') {
    throw new InvalidError('spec.binding.type', 'must be early or late');
  }
  return { input, source, destination };
}

export async function createImageBuild(deps: Deps, p: Principal, body: unknown) {
  authorize(p, 'write');
  const { input } = await validateImageBuild(deps, p.orgId, body);
  const item: StoredResource<ImageBuild> = {
    orgId: p.orgId,
    kind: KIND,
    name: input.metadata.name,
    version: 1,
    doc: {
      apiVersion: input.apiVersion,
      kind: KIND,
      metadata: newMetadata(input.metadata),
      spec: input.spec,
      status: { conditions: [readyCondition('Pending', 'Waiting for the build workflow to start')] },
    },
  };
  await deps.store.create(item);
  await startWorkflow(deps, item);
  return present(item);
}

/**
 * The resource is already stored Pending; a failure to start is logged, not returned, because the
 * reconciler starts executions for builds left Pending (the execution name makes a repeat harmless).
 */
export async function startWorkflow(deps: Deps, item: StoredResource): Promise<void> {
  try {
    await deps.workflows.start(workflowRef(item));
  } catch (err) {
    deps.logger.error('workflow start failed; the reconciler will retry', {
      kind: item.kind,
      name: item.name,
      uid: item.doc.metadata.uid,
      error: (err as Error).message,
    });
  }
}

async function exportsOf(deps: Deps, orgId: string, build: string): Promise<StoredResource<ImageExport>[]> {
  const out: StoredResource<ImageExport>[] = [];
  let startAfter: string | undefined;
  for (;;) {
    const page = await deps.store.queryPage({
      orgId,
      kind: 'ImageExport',
      buildRef: build,
      limit: 1000,
      ...(startAfter ? { startAfter } : {}),
    });
    out.push(...(page.items as StoredResource<ImageExport>[]));
    if (!page.more || page.items.length === 0) return out;
    startAfter = page.items[page.items.length - 1]?.name;
  }
}

async function withExports(deps: Deps, item: StoredResource<ImageBuild>): Promise<ImageBuild> {
  return { ...present(item), imageexports: (await exportsOf(deps, item.orgId, item.name)).map(present) };
}

export async function getImageBuild(deps: Deps, p: Principal, name: string, includeExports: boolean) {
  authorize(p, 'read');
  const item = await getOrThrow<ImageBuild>(deps, p.orgId, KIND, name);
  return includeExports ? withExports(deps, item) : present(item);
}

export async function listImageBuilds(deps: Deps, p: Principal, params: ListParams, includeExports: boolean) {
  authorize(p, 'read');
  const result = await listResources<ImageBuild>(deps, p.orgId, KIND, params);
  const items = includeExports
    ? await Promise.all(result.items.map((i) => withExports(deps, i)))
    : result.items.map(present);
  return { ...result, presented: items };
}

const isActive = (item: StoredResource): boolean => !TERMINAL_REASONS.has(readyReason(item.doc) ?? 'Pending');

/** Deletes a build and its exports, stopping whatever of them still runs. */
export async function deleteImageBuild(deps: Deps, p: Principal, name: string): Promise<void> {
  authorize(p, 'write');
  for (const exp of await exportsOf(deps, p.orgId, name)) {
    if (isActive(exp)) await deps.workflows.stop(workflowRef(exp), 'ImageBuild deleted');
    await deps.store.delete(p.orgId, 'ImageExport', exp.name);
  }
  const build = await deps.store.get(p.orgId, KIND, name);
  if (build && isActive(build)) await deps.workflows.stop(workflowRef(build), 'ImageBuild deleted');
  await deps.store.delete(p.orgId, KIND, name);
}

export { isActive };
