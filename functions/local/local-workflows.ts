// Workflows port of the local stack until the state machines run locally (build-workflow issue): it
// records each start/stop request to $DATA_DIR/executions.jsonl, the way Step Functions would hold an
// execution, so the API's hand-off can be observed. Resources stay Pending.
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { WorkflowRef, Workflows } from '../commons/ports.js';

export class RecordingWorkflows implements Workflows {
  constructor(private readonly file: string) {}

  private async record(action: string, ref: WorkflowRef, extra: Record<string, unknown> = {}) {
    await mkdir(dirname(this.file), { recursive: true });
    await appendFile(
      this.file,
      `${JSON.stringify({ time: new Date().toISOString(), action, ...ref, ...extra })}\n`,
    );
  }

  start(ref: WorkflowRef): Promise<void> {
    return this.record('start', ref);
  }

  stop(ref: WorkflowRef, reason: string): Promise<void> {
    return this.record('stop', ref, { reason });
  }
}
