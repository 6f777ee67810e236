// The ports the domain talks through. Each has an AWS adapter (functions/commons/adapters/*) and, where the
// local stack needs one, a local adapter next to it. Nothing here imports the AWS SDK.
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
}

export interface SecretStore {
  /** Stores a repository password under a fresh name; returns its reference. */
  putRepositoryPassword(orgId: string, repository: string, password: string): Promise<string>;
  deleteSecret(ref: string): Promise<void>;
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

export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface Deps {
  store: ResourceStore;
  secrets: SecretStore;
  workflows: Workflows;
  logger: Logger;
}
