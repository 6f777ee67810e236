// BuildLogs of the local stack: the local CodeBuild stand-in appends the builder's output to
// $DATA_DIR/logs/<uid>-<generation>.log; the cursor is a byte offset.
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { executionName } from '../commons/adapters/sfn-workflows.js';
import type { BuildLogs, WorkflowRef } from '../commons/ports.js';

export class FileBuildLogs implements BuildLogs {
  constructor(private readonly dir: string) {}

  pathOf(ref: WorkflowRef): string {
    return join(this.dir, `${executionName(ref)}.log`);
  }

  async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  async read(ref: WorkflowRef, cursor?: string): Promise<{ text: string; cursor: string }> {
    const start = cursor && /^\d+$/.test(cursor) ? Number(cursor) : 0;
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      fh = await open(this.pathOf(ref), 'r');
    } catch {
      return { text: '', cursor: String(start) };
    }
    try {
      const { size } = await fh.stat();
      const length = Math.max(0, Math.min(size - start, 4 * 1024 * 1024));
      const buf = Buffer.alloc(length);
      if (length > 0) await fh.read(buf, 0, length, start);
      return { text: buf.toString('utf8'), cursor: String(start + length) };
    } finally {
      await fh.close();
    }
  }
}
