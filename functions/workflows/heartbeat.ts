// The builders' heartbeats in AWS: a CloudWatch Logs subscription filter on the builders' log group
// delivers the `[heartbeat]` lines here (gzip + base64, CloudWatch Logs' subscription format). The log
// stream names the run (functions/commons/domain/build-plan.ts `logStreamName`), so each batch becomes
// one `lastSeen` update per run, with no lookup. The reconciler fails runs whose lastSeen grows too old.
import { gunzipSync } from 'node:zlib';
import { getDeps } from '../commons/config.js';
import { runOfLogStream } from '../commons/domain/build-plan.js';
import { touch } from '../commons/domain/transitions.js';
import type { Deps } from '../commons/ports.js';

export interface LogsSubscriptionEvent {
  awslogs: { data: string };
}

interface LogsPayload {
  messageType: 'DATA_MESSAGE' | 'CONTROL_MESSAGE';
  logGroup: string;
  logStream: string;
  logEvents: { id: string; timestamp: number; message: string }[];
}

/** Records the heartbeats of one delivery; returns the runs touched (`<org>/<kind>/<name>`). */
export async function recordHeartbeats(deps: Deps, event: LogsSubscriptionEvent): Promise<string[]> {
  const payload = JSON.parse(
    gunzipSync(Buffer.from(event.awslogs.data, 'base64')).toString('utf8'),
  ) as LogsPayload;
  if (payload.messageType !== 'DATA_MESSAGE') return [];
  if (!payload.logEvents.some((e) => e.message.includes('[heartbeat]'))) return [];
  const ref = runOfLogStream(payload.logStream);
  if (!ref) {
    deps.logger.info('heartbeat from a log stream that names no run', { logStream: payload.logStream });
    return [];
  }
  await touch(deps, ref);
  return [`${ref.orgId}/${ref.kind}/${ref.name}`];
}

let deps: Deps | undefined;
export const handler = (event: LogsSubscriptionEvent) => {
  deps ??= getDeps();
  return recordHeartbeats(deps, event);
};
