// ResourceStore on one DynamoDB table.
//   pk = "<org>#<kind>", sk = "<name>"                   → get by name; list one org's kind in name order
//   gsi1pk = "<org>#ImageExport#<build>", gsi1sk = name   → exports of a build (index byBuild)
// Every request path is a GetItem, a conditional write or a Query of one partition: never a Scan.
import { ConflictError, PayloadTooLargeError, QuotaExceededError } from '../domain/errors.js';
import type { QuotaLedgerState } from '../domain/quotas.js';
import { readyReason } from '../domain/resources.js';
import type { Kind } from '../domain/types.js';
import type { PageQuery, QuotaLedger, ResourceStore, StoredResource } from '../ports.js';
import { type AwsJsonClient, type AwsServiceError, isAwsError } from './aws-json.js';

export const BY_BUILD_INDEX = 'byBuild';

/** A conditional create found the name taken. */
const alreadyExists = (r: StoredResource) =>
  new ConflictError(`${r.kind} "${r.name}" already exists`, 'AlreadyExists');
export const BY_REASON_INDEX = 'byReason';

interface Item {
  pk: string;
  sk: string;
  gsi1pk?: string;
  gsi1sk?: string;
  orgId: string;
  kind: Kind;
  name: string;
  rv: number;
  doc: string;
  secretRef?: string;
  reason?: string;
  uid?: string;
  /** Sparse index byReason, set only while a build or export has not ended: "<kind>#<reason>". */
  rpk?: string;
  /** "<time the reason was entered>#<org>#<name>": oldest first within a reason. */
  rsk?: string;
}

const pk = (orgId: string, kind: Kind) => `${orgId}#${kind}`;
const byBuildPk = (orgId: string, build: string) => `${orgId}#ImageExport#${build}`;

type AttributeValue = { S: string } | { N: string };
type Marshalled = Record<string, AttributeValue>;

/** Items hold only strings and numbers, so marshalling is this small. */
function marshall(o: object): Marshalled {
  const out: Marshalled = {};
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'string') out[k] = { S: v };
    else if (typeof v === 'number') out[k] = { N: String(v) };
  }
  return out;
}

function unmarshall(m: Marshalled): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) out[k] = 'S' in v ? v.S : Number(v.N);
  return out;
}

const ACTIVE = new Set(['Pending', 'Building', 'Pushing', 'Converting', 'Canceling']);

/** DynamoDB's item limit: attribute names and values, as UTF-8 bytes (numbers counted generously). */
const MAX_ITEM_BYTES = 400 * 1024;

function itemBytes(item: Record<string, unknown>): number {
  let n = 0;
  for (const [k, v] of Object.entries(item)) {
    n += Buffer.byteLength(k) + (typeof v === 'string' ? Buffer.byteLength(v) : 22);
  }
  return n;
}

function toItem(r: StoredResource): Item {
  const item = buildItem(r);
  const bytes = itemBytes(item as unknown as Record<string, unknown>);
  if (bytes > MAX_ITEM_BYTES) {
    throw new PayloadTooLargeError(
      `spec: ${r.kind} "${r.name}" would take ${Math.ceil(bytes / 1024)} KB stored, more than the ${MAX_ITEM_BYTES / 1024} KB one resource may (DynamoDB's item limit): make its files and scripts smaller`,
    );
  }
  return item;
}

function buildItem(r: StoredResource): Item {
  const reason = readyReason(r.doc);
  const since = (r.doc.status as { conditions?: { lastTransitionTime?: string }[] } | undefined)
    ?.conditions?.[0]?.lastTransitionTime;
  return {
    pk: pk(r.orgId, r.kind),
    sk: r.name,
    ...(r.buildRef ? { gsi1pk: byBuildPk(r.orgId, r.buildRef), gsi1sk: r.name } : {}),
    orgId: r.orgId,
    kind: r.kind,
    name: r.name,
    rv: r.version,
    doc: JSON.stringify(r.doc),
    ...(r.secretRef ? { secretRef: r.secretRef } : {}),
    ...(reason ? { reason } : {}),
    ...(r.doc.metadata.uid ? { uid: r.doc.metadata.uid } : {}),
    ...(reason && ACTIVE.has(reason) && since
      ? { rpk: `${r.kind}#${reason}`, rsk: `${since}#${r.orgId}#${r.name}` }
      : {}),
  };
}

function fromItem(i: Record<string, unknown>): StoredResource {
  const item = i as unknown as Item;
  return {
    orgId: item.orgId,
    kind: item.kind,
    name: item.name,
    version: item.rv,
    doc: JSON.parse(item.doc),
    ...(item.gsi1pk ? { buildRef: item.gsi1pk.slice(byBuildPk(item.orgId, '').length) } : {}),
    ...(item.secretRef ? { secretRef: item.secretRef } : {}),
  };
}

export class DynamoDbResourceStore implements ResourceStore {
  constructor(
    private readonly db: AwsJsonClient,
    private readonly tableName: string,
  ) {}

  async create(r: StoredResource): Promise<void> {
    try {
      await this.db.call('PutItem', {
        TableName: this.tableName,
        Item: marshall(toItem(r)),
        ConditionExpression: 'attribute_not_exists(pk)',
      });
    } catch (err) {
      if (isAwsError(err, 'ConditionalCheckFailedException')) {
        throw alreadyExists(r);
      }
      throw err;
    }
  }

  async get(orgId: string, kind: Kind, name: string): Promise<StoredResource | undefined> {
    const out = await this.db.call<{ Item?: Marshalled }>('GetItem', {
      TableName: this.tableName,
      Key: marshall({ pk: pk(orgId, kind), sk: name }),
      ConsistentRead: true,
    });
    return out.Item ? fromItem(unmarshall(out.Item)) : undefined;
  }

  async replace(r: StoredResource, expectedVersion: number): Promise<void> {
    try {
      await this.db.call('PutItem', {
        TableName: this.tableName,
        Item: marshall(toItem(r)),
        ConditionExpression: 'rv = :expected',
        ExpressionAttributeValues: { ':expected': { N: String(expectedVersion) } },
      });
    } catch (err) {
      if (isAwsError(err, 'ConditionalCheckFailedException')) {
        throw new ConflictError(`${r.kind} "${r.name}" was modified concurrently; read it again and retry`);
      }
      throw err;
    }
  }

  async delete(orgId: string, kind: Kind, name: string): Promise<StoredResource | undefined> {
    const out = await this.db.call<{ Attributes?: Marshalled }>('DeleteItem', {
      TableName: this.tableName,
      Key: marshall({ pk: pk(orgId, kind), sk: name }),
      ReturnValues: 'ALL_OLD',
    });
    return out.Attributes ? fromItem(unmarshall(out.Attributes)) : undefined;
  }

  async listInReason(
    kind: Kind,
    reason: string,
    enteredBefore: string,
    limit: number,
  ): Promise<StoredResource[]> {
    const out = await this.db.call<{ Items?: Marshalled[] }>('Query', {
      TableName: this.tableName,
      IndexName: BY_REASON_INDEX,
      KeyConditionExpression: 'rpk = :p AND rsk < :before',
      ExpressionAttributeValues: { ':p': { S: `${kind}#${reason}` }, ':before': { S: enteredBefore } },
      Limit: limit,
    });
    return (out.Items ?? []).map((i) => fromItem(unmarshall(i)));
  }

  async queryPage(q: PageQuery): Promise<{ items: StoredResource[]; more: boolean }> {
    const base = pk(q.orgId, q.kind);
    const query = q.buildRef
      ? {
          IndexName: BY_BUILD_INDEX,
          KeyConditionExpression: 'gsi1pk = :p',
          ExpressionAttributeValues: { ':p': { S: byBuildPk(q.orgId, q.buildRef) } },
          ...(q.startAfter
            ? {
                ExclusiveStartKey: marshall({
                  pk: base,
                  sk: q.startAfter,
                  gsi1pk: byBuildPk(q.orgId, q.buildRef),
                  gsi1sk: q.startAfter,
                }),
              }
            : {}),
        }
      : {
          KeyConditionExpression: 'pk = :p',
          ExpressionAttributeValues: { ':p': { S: base } },
          ConsistentRead: true,
          ...(q.startAfter ? { ExclusiveStartKey: marshall({ pk: base, sk: q.startAfter }) } : {}),
        };
    const out = await this.db.call<{ Items?: Marshalled[]; LastEvaluatedKey?: Marshalled }>('Query', {
      TableName: this.tableName,
      Limit: q.limit,
      ...query,
    });
    return {
      items: (out.Items ?? []).map((i) => fromItem(unmarshall(i))),
      more: Boolean(out.LastEvaluatedKey),
    };
  }
}

/** The table definition, shared by the local stack and tests (CDK declares the same keys in infra/). */
export const TABLE_DEFINITION = {
  AttributeDefinitions: [
    { AttributeName: 'pk', AttributeType: 'S' },
    { AttributeName: 'sk', AttributeType: 'S' },
    { AttributeName: 'gsi1pk', AttributeType: 'S' },
    { AttributeName: 'gsi1sk', AttributeType: 'S' },
    { AttributeName: 'rpk', AttributeType: 'S' },
    { AttributeName: 'rsk', AttributeType: 'S' },
  ],
  KeySchema: [
    { AttributeName: 'pk', KeyType: 'HASH' },
    { AttributeName: 'sk', KeyType: 'RANGE' },
  ],
  GlobalSecondaryIndexes: [
    {
      IndexName: BY_BUILD_INDEX,
      KeySchema: [
        { AttributeName: 'gsi1pk', KeyType: 'HASH' },
        { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'ALL' },
    },
    {
      IndexName: BY_REASON_INDEX,
      KeySchema: [
        { AttributeName: 'rpk', KeyType: 'HASH' },
        { AttributeName: 'rsk', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'ALL' },
    },
  ],
  BillingMode: 'PAY_PER_REQUEST',
  StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_AND_OLD_IMAGES' },
};

/**
 * QuotaLedger on the same table: item (pk "<org>#Quota", sk "builds") holding the ledger as JSON and a
 * version; every change is a conditional put on that version, retried when another writer won.
 */
export class DynamoDbQuotaLedger implements QuotaLedger {
  constructor(
    private readonly db: AwsJsonClient,
    private readonly tableName: string,
  ) {}

  private key(orgId: string) {
    return marshall({ pk: `${orgId}#Quota`, sk: 'builds' });
  }

  private async load(orgId: string): Promise<{ state: QuotaLedgerState; version: number }> {
    const out = await this.db.call<{ Item?: Marshalled }>('GetItem', {
      TableName: this.tableName,
      Key: this.key(orgId),
      ConsistentRead: true,
    });
    if (!out.Item) return { state: { recent: [], active: {} }, version: 0 };
    const item = unmarshall(out.Item) as { q: string; qv: number };
    return { state: JSON.parse(item.q), version: item.qv };
  }

  async read(orgId: string): Promise<QuotaLedgerState> {
    return (await this.load(orgId)).state;
  }

  /**
   * The ledger as this process last wrote it: the next update tries its conditional write on it without
   * reading first (one round trip on the create path). A stale copy fails the condition and is re-read;
   * a decision not to write (quota exceeded, nothing to release) is only taken on a fresh read.
   */
  private readonly lastWritten = new Map<string, { state: QuotaLedgerState; version: number }>();

  async update(
    orgId: string,
    change: (s: QuotaLedgerState) => QuotaLedgerState | undefined,
    alsoCreate?: StoredResource,
  ): Promise<void> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const cached = attempt === 0 ? this.lastWritten.get(orgId) : undefined;
      const { state, version } = cached ?? (await this.load(orgId));
      let next: QuotaLedgerState | undefined;
      try {
        next = change(state);
      } catch (err) {
        if (cached) continue;
        throw err;
      }
      if (!next) {
        if (cached) continue;
        return;
      }
      const ledgerPut = {
        TableName: this.tableName,
        Item: marshall({ pk: `${orgId}#Quota`, sk: 'builds', q: JSON.stringify(next), qv: version + 1 }),
        ...(version === 0
          ? { ConditionExpression: 'attribute_not_exists(pk)' }
          : {
              ConditionExpression: 'qv = :v',
              ExpressionAttributeValues: { ':v': { N: String(version) } },
            }),
      };
      try {
        if (alsoCreate) {
          await this.db.call('TransactWriteItems', {
            TransactItems: [
              { Put: ledgerPut },
              {
                Put: {
                  TableName: this.tableName,
                  Item: marshall(toItem(alsoCreate)),
                  ConditionExpression: 'attribute_not_exists(pk)',
                },
              },
            ],
          });
        } else {
          await this.db.call('PutItem', ledgerPut);
        }
        if (this.lastWritten.size >= 1000) this.lastWritten.clear();
        this.lastWritten.set(orgId, { state: next, version: version + 1 });
        return;
      } catch (err) {
        if (
          isAwsError(err, 'TransactionCanceledException') &&
          (err as AwsServiceError).cancellationReasons[1] === 'ConditionalCheckFailed' &&
          alsoCreate
        ) {
          throw alreadyExists(alsoCreate);
        }
        // The ledger moved (or, in a transaction, another one held it): read it again and retry.
        if (
          !isAwsError(err, 'ConditionalCheckFailedException') &&
          !isAwsError(err, 'TransactionCanceledException')
        )
          throw err;
        this.lastWritten.delete(orgId);
        if (cached) continue; // only the copy was stale: read and try again at once
        // Full jitter, growing to 200 ms: concurrent creates of one org take turns on this item.
        await new Promise((r) =>
          setTimeout(r, Math.random() * Math.min(200, 10 * 2 ** Math.min(attempt, 5))),
        );
      }
    }
    // Contention, not a fault: the client is told to retry shortly (429), never a 5xx.
    throw new QuotaExceededError(
      'too many builds are being created at once for this organization; retry in a moment',
      1,
    );
  }
}
