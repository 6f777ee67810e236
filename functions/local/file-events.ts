// EventPublisher of the local stack: each PutEvents entry, as EventBridge would receive it, appended as
// one JSON line to $DATA_DIR/events.jsonl (CONTRACT §4).
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { toPutEventsEntry } from '../commons/adapters/eventbridge-events.js';
import type { EventPublisher, ResourceEvent } from '../commons/ports.js';

export class FileEventPublisher implements EventPublisher {
  constructor(private readonly file: string) {}

  async publish(event: ResourceEvent): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    const entry = { ...toPutEventsEntry(event, 'local'), Time: new Date().toISOString() };
    await appendFile(this.file, `${JSON.stringify(entry)}\n`);
  }
}
