// CloudWatchBuildLogs against CloudWatch Logs' documented FilterLogEvents behaviour, with the SDK's
// client mocked at the command (aws-sdk-client-mock): nextToken pages one query and is absent on the
// last page; startTime is inclusive (events at that millisecond come again). A follower that reads
// until the run ends gets each line once and stops getting lines when there are no new ones.
import {
  CloudWatchLogsClient,
  type FilteredLogEvent,
  FilterLogEventsCommand,
} from '@aws-sdk/client-cloudwatch-logs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { CloudWatchBuildLogs } from '../../functions/commons/adapters/cloudwatch-logs.js';

const ref = { orgId: 'acme', kind: 'ImageBuild' as const, name: 'edge', uid: '0b7c', generation: 2 };
const cw = mockClient(CloudWatchLogsClient);

/** The log group as CloudWatch holds it; FilterLogEvents answered from it in pages of `pageSize`. */
let events: FilteredLogEvent[] = [];
const pageSize = 2;

beforeEach(() => {
  cw.reset();
  events = [];
  cw.on(FilterLogEventsCommand).callsFake((input: { startTime?: number; nextToken?: string }) => {
    const matching = events.filter((e) => (e.timestamp ?? 0) >= (input.startTime ?? 0));
    const start = input.nextToken ? Number(input.nextToken) : 0;
    const page = matching.slice(start, start + pageSize);
    const more = start + pageSize < matching.length;
    return { events: page, ...(more ? { nextToken: String(start + pageSize) } : {}) };
  });
});

const add = (t: number, message: string) =>
  events.push({ timestamp: t, eventId: `e${events.length}`, message });

describe('CloudWatchBuildLogs', () => {
  it('reads every page of the run’s streams, then follows from its cursor without repeating a line', async () => {
    const logs = new CloudWatchBuildLogs(new CloudWatchLogsClient({ region: 'eu-west-1' }), 'builders');
    add(1000, 'one');
    add(1000, 'two\n');
    add(1001, 'three');
    const first = await logs.read(ref);
    expect(first.text).toBe('one\ntwo\nthree\n');
    // The exact request: the run's streams of the builders' group, from the start.
    const input = cw.commandCalls(FilterLogEventsCommand)[0]?.args[0].input;
    expect(input).toMatchObject({ logGroupName: 'builders', logStreamNamePrefix: '0b7c-2/', limit: 10_000 });
    expect(input?.startTime).toBeUndefined();
    // Nothing new: nothing returned, the same place kept (the old token loop returned the last page again).
    const idle = await logs.read(ref, first.cursor);
    expect(idle.text).toBe('');
    expect(idle.cursor).toBe(first.cursor);
    // New lines, one of them in the same millisecond as the last one read.
    add(1001, 'four');
    add(1005, 'five');
    const next = await logs.read(ref, idle.cursor);
    expect(next.text).toBe('four\nfive\n');
    expect(cw.commandCalls(FilterLogEventsCommand).at(-1)?.args[0].input).toMatchObject({ startTime: 1001 });
    expect((await logs.read(ref, next.cursor)).text).toBe('');
  });

  it('a cursor it did not make reads from the start', async () => {
    const logs = new CloudWatchBuildLogs(new CloudWatchLogsClient({ region: 'eu-west-1' }), 'builders');
    add(5, 'only');
    expect((await logs.read(ref, 'opaque-token-from-elsewhere')).text).toBe('only\n');
  });
});
