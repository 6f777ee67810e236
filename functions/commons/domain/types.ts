// Wire types of the v1alpha1 ImageBuilder API (and the v1beta1 OCI Repository).
// openapi.yaml is the source of truth; these types mirror it for the TypeScript side.

export const KINDS = ['Repository', 'ImageBuild', 'ImageExport'] as const;
export type Kind = (typeof KINDS)[number];

export const API_VERSION: Record<Kind, string> = {
  Repository: 'flightctl.io/v1beta1',
  ImageBuild: 'flightctl.io/v1alpha1',
  ImageExport: 'flightctl.io/v1alpha1',
};

export interface ObjectMeta {
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  generation?: number;
  resourceVersion?: string;
  uid?: string;
  owner?: string;
}

export interface Condition {
  type: 'Ready';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface Resource<S, St = Record<string, unknown>> {
  apiVersion: string;
  kind: Kind;
  metadata: ObjectMeta;
  spec: S;
  status?: St;
}

// ---- Repository -------------------------------------------------------------------------------

export interface OciAuth {
  authType: 'docker';
  username: string;
  /** Only ever present on input: stored in the secret store, never in the table or a response. */
  password?: string;
}

export interface RepositorySpec {
  type: 'oci';
  registry: string;
  scheme?: 'http' | 'https';
  accessMode?: 'Read' | 'ReadWrite';
  ociAuth?: OciAuth;
  skipServerVerification?: boolean;
  'ca.crt'?: string;
}

export type Repository = Resource<RepositorySpec>;

// ---- ImageBuild -------------------------------------------------------------------------------

export type Architecture = 'x86_64' | 'aarch64';
export const ARCHITECTURES: readonly Architecture[] = ['x86_64', 'aarch64'];

export interface ImageRef {
  repository: string;
  imageName: string;
  imageTag: string;
}

export interface CustomUser {
  name: string;
  groups?: string[];
  shell?: string;
  passwordHash?: string;
  sshKeys?: string[];
}

export interface CustomFile {
  path: string;
  content: string;
  encoding?: 'plain' | 'base64';
  mode?: string;
  user?: string;
  group?: string;
}

export interface SystemdUnit {
  name: string;
  content: string;
  enabled?: boolean;
}

export interface BuildScript {
  name: string;
  content: string;
}

export interface AgentConfig {
  specFetchInterval?: string;
  statusUpdateInterval?: string;
  defaultLabels?: Record<string, string>;
  systemInfo?: string[];
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  tpm?: { enabled: boolean; devicePath?: string };
}

export interface Customizations {
  packages?: string[];
  coprRepos?: string[];
  enableRepos?: string[];
  users?: CustomUser[];
  files?: CustomFile[];
  systemdUnits?: SystemdUnit[];
  scripts?: BuildScript[];
  agentConfig?: AgentConfig;
}

export interface ImageBuildSpec {
  source: ImageRef;
  destination: ImageRef;
  binding: { type: 'early' | 'late' };
  userConfiguration?: { username: string; publickey: string };
  onboarding?: boolean;
  architectures?: Architecture[];
  customizations?: Customizations;
}

export const BUILD_REASONS = [
  'Pending',
  'Building',
  'Pushing',
  'Completed',
  'Failed',
  'Canceling',
  'Canceled',
] as const;
export type ImageBuildReason = (typeof BUILD_REASONS)[number];

export interface ImageBuildStatus {
  conditions?: Condition[];
  imageReference?: string;
  manifestDigest?: string;
  architecture?: string;
  architectures?: Record<string, { digest: string }>;
  lastSeen?: string;
  startTime?: string;
  completionTime?: string;
}

export type ImageBuild = Resource<ImageBuildSpec, ImageBuildStatus> & { imageexports?: ImageExport[] };

// ---- ImageExport ------------------------------------------------------------------------------

export const EXPORT_FORMATS = [
  'qcow2',
  'vmdk',
  'iso',
  'qcow2-disk-container',
  'raw',
  'vhd',
  'ami',
  'gce',
  'anaconda-iso',
] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ImageExportSpec {
  source: { type: 'imageBuild'; imageBuildRef: string };
  format: ExportFormat;
  architecture?: Architecture;
}

export const EXPORT_REASONS = [
  'Pending',
  'Converting',
  'Pushing',
  'Completed',
  'Failed',
  'Canceling',
  'Canceled',
] as const;
export type ImageExportReason = (typeof EXPORT_REASONS)[number];

export interface ImageExportStatus {
  conditions?: Condition[];
  manifestDigest?: string;
  lastSeen?: string;
  artifact?: { uri: string; size: number; sha256: string; contentType: string };
  amiId?: string;
  region?: string;
  startTime?: string;
  completionTime?: string;
}

export type ImageExport = Resource<ImageExportSpec, ImageExportStatus>;

export type AnyResource = Repository | ImageBuild | ImageExport;

/** Terminal reasons: nothing runs any more for the resource. */
export const TERMINAL_REASONS = new Set(['Completed', 'Failed', 'Canceled']);
