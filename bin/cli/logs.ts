// `logs KIND/NAME [-f]`: prints the run's log; with -f keeps asking with the returned cursor
// (`follow=true` makes the server wait up to 10 s for more) until the server says the log is complete.
import { type ApiClient, errorFromResponse } from './client.js';
import { type Kind, resourcePath } from './kinds.js';

export async function printLogs(
  client: ApiClient,
  kind: Kind,
  name: string,
  follow: boolean,
  write: (text: string) => void,
): Promise<void> {
  let cursor: string | undefined;
  for (;;) {
    const res = await client.raw('GET', `${resourcePath(kind, name)}/log`, {
      query: { cursor, follow: follow ? 'true' : undefined },
      headers: { accept: 'text/plain' },
    });
    if (!res.ok) throw await errorFromResponse(res);
    const text = await res.text();
    if (text) write(text);
    const next = res.headers.get('x-log-cursor') ?? undefined;
    const complete = res.headers.get('x-log-complete') === 'true';
    // Without a cursor the server cannot continue where this read stopped.
    if (next === undefined) return;
    // A read is bounded in size: stop only after an empty read (and, following, a complete log).
    if (!text && (complete || !follow)) return;
    cursor = next;
  }
}
