// What every resource kind shares: server-set metadata, conditions, and paged, selected lists.
import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Deps, StoredResource, WorkflowRef } from '../ports.js';
import { InvalidError, NotFoundError } from './errors.js';
import { matchesSelector, parseSelectors } from './selectors.js';
import { type AnyResource, API_VERSION, type Condition, type Kind, type ObjectMeta } from './types.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
/** Store reads one list request may spend looking for selector matches; bounds the cost of a page. */
const MAX_QUERIES_PER_PAGE = 5;

export const now = (): string => new Date().toISOString();

export function newMetadata(input: ObjectMeta, extra: Partial<ObjectMeta> = {}): ObjectMeta {
  return {
    name: input.name,
    ...(input.labels ? { labels: input.labels } : {}),
    ...(input.annotations ? { annotations: input.annotations } : {}),
    creationTimestamp: now(),
    generation: 1,
    resourceVersion: '1',
    uid: randomUUID(),
    ...extra,
  };
}

export function readyCondition(reason: string, message: string): Condition {
  return {
    type: 'Ready',
    status: reason === 'Completed' ? 'True' : 'False',
    reason,
    message,
    lastTransitionTime: now(),
  };
}

/** The run a stored build or export names: org, kind, name, uid and generation. */
export const workflowRef = (item: StoredResource): WorkflowRef => ({
  orgId: item.orgId,
  kind: item.kind as WorkflowRef['kind'],
  name: item.name,
  uid: item.doc.metadata.uid as string,
  generation: item.doc.metadata.generation ?? 1,
});

export function readyReason(r: AnyResource): string | undefined {
  return (r.status as { conditions?: Condition[] } | undefined)?.conditions?.find((c) => c.type === 'Ready')
    ?.reason;
}

/** The stored document as returned to clients: canonical apiVersion, resourceVersion from the store. */
export function present<R extends AnyResource>(item: StoredResource<R>): R {
  return {
    ...item.doc,
    apiVersion: API_VERSION[item.kind],
    kind: item.kind,
    metadata: { ...item.doc.metadata, resourceVersion: String(item.version) },
  };
}

export async function getOrThrow<R extends AnyResource>(
  deps: Deps,
  orgId: string,
  kind: Kind,
  name: string,
): Promise<StoredResource<R>> {
  const item = await deps.store.get(orgId, kind, name);
  if (!item) throw new NotFoundError(kind, name);
  return item as StoredResource<R>;
}

// ---- continue tokens ---------------------------------------------------------------------------
// base64url(JSON payload) "." base64url(HMAC-SHA256). The payload binds org, kind and selector, so a
// token is only good for the list it came from; the store's partition comes from the caller's identity,
// never from the token, so even a forged token cannot reach another org or kind.

interface TokenPayload {
  o: string;
  k: Kind;
  s: string;
  a: string;
}

const digest = (s: string): string => createHash('sha256').update(s).digest('base64url').slice(0, 22);

function sign(key: Uint8Array, body: string): string {
  return createHmac('sha256', key).update(body).digest('base64url');
}

export function encodeContinue(key: Uint8Array, payload: TokenPayload): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${body}.${sign(key, body)}`;
}

export function decodeContinue(key: Uint8Array, token: string, expect: Omit<TokenPayload, 'a'>): string {
  const invalid = new InvalidError('continue', 'invalid or tampered continue token');
  const [body, mac, rest] = token.split('.');
  if (!body || !mac || rest !== undefined) throw invalid;
  const want = Buffer.from(sign(key, body));
  const got = Buffer.from(mac);
  if (want.length !== got.length || !timingSafeEqual(want, got)) throw invalid;
  let payload: TokenPayload;
  try {
    payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  if (
    payload.o !== expect.o ||
    payload.k !== expect.k ||
    payload.s !== expect.s ||
    typeof payload.a !== 'string'
  ) {
    throw new InvalidError(
      'continue',
      'token belongs to another list (organization, kind or selector differ)',
    );
  }
  return payload.a;
}

// ---- lists -------------------------------------------------------------------------------------

export interface ListParams {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: string;
  continue?: string;
}

export function parseLimit(raw: string | undefined): number {
  if (raw === undefined || raw === '') return DEFAULT_LIMIT;
  if (!/^-?\d+$/.test(raw)) throw new InvalidError('limit', 'must be an integer');
  const n = Number(raw);
  if (n < 0 || n > MAX_LIMIT) throw new InvalidError('limit', `must be between 0 and ${MAX_LIMIT}`);
  return n === 0 ? DEFAULT_LIMIT : n;
}

export interface ListResult<R extends AnyResource> {
  items: StoredResource<R>[];
  continueToken?: string;
}

export async function listResources<R extends AnyResource>(
  deps: Deps,
  orgId: string,
  kind: Kind,
  params: ListParams,
): Promise<ListResult<R>> {
  const limit = parseLimit(params.limit);
  const selector = parseSelectors(kind, params.labelSelector, params.fieldSelector);
  // An equality on the export's build is served by the by-build index instead of filtering.
  const byBuild = selector.fields.find((f) => f.field === 'spec.source.imageBuildRef' && f.op === 'eq');
  const binding = { o: digest(orgId), k: kind, s: digest(selector.canonical) };
  const key = params.continue ? await deps.secrets.tokenSigningKey() : undefined;
  let cursor = params.continue && key ? decodeContinue(key, params.continue, binding) : undefined;

  const items: StoredResource<R>[] = [];
  let more = true;
  for (let q = 0; q < MAX_QUERIES_PER_PAGE && more && items.length < limit; q++) {
    const page = await deps.store.queryPage({
      orgId,
      kind,
      ...(byBuild ? { buildRef: byBuild.value } : {}),
      ...(cursor ? { startAfter: cursor } : {}),
      // One more than asked: tells whether anything follows, so the last page carries no token.
      limit: limit + 1,
    });
    more = page.more;
    for (let i = 0; i < page.items.length; i++) {
      const item = page.items[i] as StoredResource<R>;
      cursor = item.name;
      if (matchesSelector(kind, item.doc, selector)) items.push(item);
      if (items.length === limit) {
        more = more || i < page.items.length - 1;
        break;
      }
    }
  }
  if (!more || !cursor) return { items };
  const signingKey = key ?? (await deps.secrets.tokenSigningKey());
  return { items, continueToken: encodeContinue(signingKey, { ...binding, a: cursor }) };
}

export function listBody<R extends AnyResource>(kind: Kind, result: ListResult<R>, map = present<R>) {
  return {
    apiVersion: API_VERSION[kind],
    kind: `${kind}List`,
    metadata: result.continueToken ? { continue: result.continueToken } : {},
    items: result.items.map(map),
  };
}

/**
 * Flight Control's `Status` (both specs require all six fields), in the API version of the group the
 * request addressed: core (`flightctl.io/v1beta1`) for repositories, imagebuilder
 * (`flightctl.io/v1alpha1`) for builds and exports.
 */
export function statusBody(
  apiVersion: string,
  status: 'Success' | 'Failure',
  code: number,
  reason: string,
  message: string,
) {
  return { apiVersion, kind: 'Status', status, code, reason, message };
}

/** The API version of the group a request path addresses (`/api/v1/repositories…` is core's). */
export const apiVersionOfPath = (path: string | undefined): string =>
  /^\/api\/v1\/repositories(\/|$|\?)/.test(path ?? '') ? API_VERSION.Repository : API_VERSION.ImageBuild;

/** A DELETE's answer: Success, 200, with an empty reason (nothing went wrong), as Kubernetes does. */
export function successStatus(kind: Kind, message: string) {
  return statusBody(API_VERSION[kind], 'Success', 200, '', message);
}
