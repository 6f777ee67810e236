// BuildLogs on CloudWatch Logs: CodeBuild writes each run to streams named "<uid>-<generation>/…" of the
// builders' log group; a read filters those streams by prefix with FilterLogEvents and its paginator.
// FilterLogEvents' nextToken pages one query, it is not a cursor into the stream: the cursor here is the
// last event's timestamp and the ids of the events seen at that timestamp, so the next read starts
// there (startTime is inclusive) and skips what it already returned. A read returns at most MAX_PAGES
// pages; the rest comes with the next read.
import { type CloudWatchLogsClient, paginateFilterLogEvents } from '@aws-sdk/client-cloudwatch-logs';
import type { BuildLogs, WorkflowRef } from '../ports.js';
import { executionName } from './sfn-workflows.js';

const MAX_PAGES = 10;

interface Cursor {
  /** Timestamp (ms) of the last event returned. */
  t: number;
  /** eventIds of the events returned with that timestamp. */
  ids: string[];
}

const encode = (c: Cursor) => Buffer.from(JSON.stringify(c)).toString('base64url');

function decode(cursor: string | undefined): Cursor | undefined {
  if (!cursor) return undefined;
  try {
    const c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Cursor;
    if (Number.isSafeInteger(c.t) && Array.isArray(c.ids) && c.ids.every((i) => typeof i === 'string'))
      return c;
  } catch {
    // not one of ours: read from the start
  }
  return undefined;
}

export class CloudWatchBuildLogs implements BuildLogs {
  constructor(
    private readonly client: CloudWatchLogsClient,
    private readonly logGroupName: string,
  ) {}

  async read(ref: WorkflowRef, cursor?: string): Promise<{ text: string; cursor: string }> {
    const from = decode(cursor);
    let last: Cursor = from ?? { t: 0, ids: [] };
    const seen = new Set(from?.ids ?? []);
    let text = '';
    const pages = paginateFilterLogEvents(
      { client: this.client, pageSize: 10_000 },
      {
        logGroupName: this.logGroupName,
        logStreamNamePrefix: `${executionName(ref)}/`,
        ...(from ? { startTime: from.t } : {}),
      },
    );
    let page = 0;
    for await (const out of pages) {
      for (const e of out.events ?? []) {
        const t = e.timestamp ?? 0;
        const id = e.eventId ?? '';
        if (from && t === from.t && seen.has(id)) continue;
        const message = e.message ?? '';
        text += message.endsWith('\n') ? message : `${message}\n`;
        last = t === last.t ? { t, ids: [...last.ids, id] } : { t, ids: [id] };
      }
      if (++page >= MAX_PAGES) break;
    }
    return { text, cursor: last.t ? encode(last) : (cursor ?? '') };
  }
}
