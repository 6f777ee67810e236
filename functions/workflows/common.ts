// What the build and export workflows share.
import type { Deps, WorkflowRef } from '../commons/ports.js';

/** The builder's or exporter's own explanation (its last `IB_ERROR:` line) beats a generic cause. */
export async function failureMessage(
  deps: Deps,
  ref: WorkflowRef,
  error: { Error?: string; Cause?: string },
) {
  const log = await deps.logs.read(ref).catch(() => ({ text: '' }));
  const lines = log.text.split('\n').filter((l) => l.includes('IB_ERROR:'));
  const fromScript = lines[lines.length - 1]?.replace(/^.*IB_ERROR:\s*/, '').trim();
  if (fromScript) return fromScript;
  if (error.Error === 'States.Timeout') return 'timed out: the job did not finish in time';
  let cause = error.Cause ?? '';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: string };
    if (parsed.errorMessage) cause = parsed.errorMessage;
  } catch {
    // a plain message
  }
  return cause ? cause.slice(0, 1000) : `the run failed (${error.Error ?? 'unknown error'})`;
}

/** A run that must not go on (canceled or replaced meanwhile); the state machine records nothing more. */
export class RunNotActiveError extends Error {
  override name = 'RunNotActive';
}
