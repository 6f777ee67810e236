// The EKS runner's answer channel. CodeBuild hands a job's results (IB_DIGEST, IB_SHA256…) back through
// ExportedEnvironmentVariables; a Kubernetes Job has no such channel, so the pod writes the same list
// as `{"exported":[{"Name":…,"Value":…}]}` to object storage (IB_RESULT_URI, functions/builder/eks-job.sh)
// and this step reads it back in the shape the CodeBuild states' ResultSelector produces, so everything
// after the job is the same for both runners.
import type { Deps } from '../commons/ports.js';

export type Exported = { Name: string; Value: string }[];

export async function readJobResult(deps: Deps, resultKey: string): Promise<{ exported: Exported }> {
  const body = await deps.objects.get(resultKey);
  if (!body) throw new Error(`the builder job ended without writing its result (${resultKey})`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    throw new Error(`the builder job wrote an unreadable result (${resultKey})`);
  }
  const exported = (parsed as { exported?: unknown })?.exported;
  if (
    !Array.isArray(exported) ||
    !exported.every(
      (e) => typeof e?.Name === 'string' && /^IB_[A-Z0-9_]+$/.test(e.Name) && typeof e.Value === 'string',
    )
  ) {
    throw new Error(`the builder job wrote a result of the wrong shape (${resultKey})`);
  }
  return {
    exported: exported.map((e: { Name: string; Value: string }) => ({ Name: e.Name, Value: e.Value })),
  };
}
