// The ports the domain talks through. Each has an AWS adapter (functions/commons/adapters/*) and, where the
// local stack needs one, a local adapter next to it. Nothing here imports the AWS SDK.
import type { EnrollmentCertificates } from './domain/enrollment/index.js';
import type { QuotaLedgerState, QuotaLimits } from './domain/quotas.js';
import type { AnyResource, Kind } from './domain/types.js';

export interface StoredResource<R extends AnyResource = AnyResource> {
  orgId: string;
  kind: Kind;
  name: string;
  /** Incremented on every write; the API's metadata.resourceVersion. */
  version: number;
  doc: R;
  /** ImageExport: the build it belongs to (indexed, for exports-by-build). */
  buildRef?: string;
  /** Repository: reference of the password in the secret store (never returned). */
  secretRef?: string;
}

export interface PageQuery {
  orgId: string;
  kind: Kind;
  /** Read exports of one build through the by-build index. */
  buildRef?: string;
  /** Exclusive: the page starts after this name. */
  startAfter?: string;
  limit: number;
}

export interface ResourceStore {
  /** Conditional create; ConflictError(AlreadyExists) when the name is taken. */
  create(item: StoredResource): Promise<void>;
  get(orgId: string, kind: Kind, name: string): Promise<StoredResource | undefined>;
  /** Conditional replace; ConflictError when the stored version is not `expectedVersion`. */
  replace(item: StoredResource, expectedVersion: number): Promise<void>;
  /** Returns the deleted item, or undefined when there was none. */
  delete(orgId: string, kind: Kind, name: string): Promise<StoredResource | undefined>;
  /** One page in name order, one partition, never a scan. */
  queryPage(q: PageQuery): Promise<{ items: StoredResource[]; more: boolean }>;
  /** Runs (any org) that entered `reason` before the given ISO time, oldest first (the reconciler). */
  listInReason(kind: Kind, reason: string, enteredBefore: string, limit: number): Promise<StoredResource[]>;
}

export interface SecretStore {
  /** Stores a repository password under a fresh name; returns its reference. */
  putRepositoryPassword(orgId: string, repository: string, password: string): Promise<string>;
  deleteSecret(ref: string): Promise<void>;
  /**
   * A repository password by reference, for the trusted workflow steps (the referrer push, the runs'
   * credentials). A reference outside `orgId`'s secrets is refused (SecretOutsideOrgError): the table
   * says which secret, but only the org's own can be read through it.
   */
  getRepositoryPassword(orgId: string, ref: string): Promise<string>;
  /** The key that signs `continue` tokens. */
  tokenSigningKey(): Promise<Uint8Array>;
}

export interface WorkflowRef {
  orgId: string;
  kind: 'ImageBuild' | 'ImageExport';
  name: string;
  uid: string;
  /** Distinguishes runs of one resource (a retry is a new execution). */
  generation: number;
}

export interface Workflows {
  /** Starts the resource's state machine; execution name derives from the uid, so a repeat is harmless. */
  start(ref: WorkflowRef): Promise<void>;
  /** Stops a running execution; a missing or finished one is not an error. */
  stop(ref: WorkflowRef, reason: string): Promise<void>;
}

/** One EventBridge event (CONTRACT §4): source "imagebuilder", detail-type e.g. "ImageBuild Started". */
export interface ResourceEvent {
  detailType: string;
  detail: {
    orgId: string;
    kind: string;
    name: string;
    uid: string;
    reason: string;
    message: string;
    imageReference?: string;
    manifestDigest?: string;
    artifact?: unknown;
  };
}

export interface EventPublisher {
  publish(event: ResourceEvent): Promise<void>;
}

/** Object storage (S3; s3rver locally): build contexts now, disk images later. */
export interface ObjectStore {
  /** The bucket the keys live in (CodeBuild and the local runner download contexts from it). */
  readonly bucket: string;
  put(key: string, body: string | Uint8Array, contentType?: string): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  list(prefix: string): Promise<string[]>;
  deleteObject(key: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  /** Multipart upload of a local file; returns its size and SHA-256 (hex). */
  putFile(key: string, path: string, contentType: string): Promise<{ size: number; sha256: string }>;
  /** Streams an object (disk images are too large for memory). */
  openRead(key: string): Promise<NodeJS.ReadableStream>;
  /** A short-lived download URL; with `fileName`, its response names the file (a download). */
  presignGet(key: string, expiresSeconds: number, fileName?: string): Promise<string>;
  /** A short-lived upload URL of one object (a single PUT): what a builder run may write, and no more. */
  presignPut(key: string, expiresSeconds: number): Promise<string>;
}

/** The builder's output of one run (CloudWatch Logs in AWS, files under DATA_DIR locally). */
export interface BuildLogs {
  /** Text from `cursor` on (undefined: from the start) and the cursor to continue from. */
  read(ref: WorkflowRef, cursor?: string): Promise<{ text: string; cursor: string }>;
}

/** The per-org quota ledger: one item per org, updated with optimistic concurrency. */
export interface QuotaLedger {
  read(orgId: string): Promise<QuotaLedgerState>;
  /**
   * Applies `change` to the current state and writes the result conditionally, retrying on a
   * concurrent write; `change` may throw (the quota is exceeded) or return undefined (nothing to do).
   */
  update(
    orgId: string,
    change: (state: QuotaLedgerState) => QuotaLedgerState | undefined,
    /**
     * Created in the same transaction as the ledger write: both or neither (a build is never stored
     * without its slot, nor a slot taken for a build that was not stored). A resource of that name
     * already there is a ConflictError, and the ledger is left as it was.
     */
    alsoCreate?: StoredResource,
  ): Promise<void>;
}

export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** Deployment settings the workflows read (Lambda environment in AWS, local stack options locally). */
export interface Settings {
  /** Bucket holding build contexts (and, later, disk images). */
  contextBucket: string;
  buildTimeoutSeconds: number;
  heartbeatSeconds: number;
  /**
   * How long DELETE of a build waits for its runs to stop before answering (default 25: the HTTP API
   * gives up on an integration after 30 s); what is still stopping then is deleted when it ends.
   */
  deleteWaitSeconds?: number;
  agentRepoUrl?: string;
  /**
   * Keep the layer cache in the destination registry (`<repository>/buildcache`), default true: CodeBuild
   * and EKS builders start with empty storage, so only the registry carries the cache between runs. The
   * local stack turns it off by default (BUILD_REGISTRY_CACHE=true turns it on): its containers-storage
   * persists between runs and already holds every layer, so pushing each one again only costs time.
   */
  registryLayerCache?: boolean;
  /** bootc-image-builder by digest (BIB_IMAGE; default BIB_IMAGE of domain/export-plan.ts). */
  bibImage?: string;
  /**
   * The trusted steps may reach registries on loopback, private and link-local addresses: the local
   * stack only (its registries are on 127.0.0.1); in the cloud they never do (domain/egress.ts).
   */
  internalRegistries?: boolean;
  /** Deployment-wide quota limits (defaults: 10 active builds, 100 builds per 14 days). */
  quota?: Partial<QuotaLimits>;
  /** Per-org overrides of the quota limits. */
  quotaOverrides?: Record<string, Partial<QuotaLimits>>;
}

export interface Deps {
  settings: Settings;
  /** Early binding; absent when no Flight Control enrollment service is configured. */
  enrollment?: EnrollmentCertificates;
  store: ResourceStore;
  quotas: QuotaLedger;
  secrets: SecretStore;
  workflows: Workflows;
  events: EventPublisher;
  objects: ObjectStore;
  logs: BuildLogs;
  logger: Logger;
}
