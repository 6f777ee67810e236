// A run's registry passwords, handed to it by the trusted step that plans it. The builder principals
// (CodeBuild's role, the EKS pods') hold no Secrets Manager permission: the step reads the passwords of
// the run's own repositories (refusing a reference outside the run's org), writes them as one object
// under the run's context prefix, and gives the run a presigned GET of that object alone
// (IB_CREDENTIALS_URL). The buildspec turns it into IB_<SIDE>_PASSWORD_FILE files; the object goes with
// the run's context when the run ends (README, "Authority of a run").
import { CREDENTIALS_OBJECT, contextPrefix, transferSeconds } from '../commons/domain/build-plan.js';
import type { Repository } from '../commons/domain/types.js';
import type { Deps, StoredResource, WorkflowRef } from '../commons/ports.js';

export type RegistrySide = 'SOURCE' | 'DEST';

/** Stores the run's passwords and presigns their GET; undefined when no repository has one. */
export async function handCredentials(
  deps: Deps,
  ref: WorkflowRef,
  repositories: Partial<Record<RegistrySide, StoredResource<Repository>>>,
): Promise<string | undefined> {
  const passwords: Partial<Record<RegistrySide, string>> = {};
  for (const [side, repo] of Object.entries(repositories) as [RegistrySide, StoredResource<Repository>][]) {
    if (!repo.secretRef) continue;
    if (repo.orgId !== ref.orgId) throw new Error(`the ${side} repository is not the run's org's`);
    passwords[side] = await deps.secrets.getRepositoryPassword(ref.orgId, repo.secretRef);
  }
  if (!Object.keys(passwords).length) return undefined;
  const key = `${contextPrefix(ref)}${CREDENTIALS_OBJECT}`;
  await deps.objects.put(key, Buffer.from(JSON.stringify(passwords)), 'application/json');
  return deps.objects.presignGet(key, transferSeconds(deps.settings.buildTimeoutSeconds));
}
