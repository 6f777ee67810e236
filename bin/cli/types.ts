// The shape of resources as the CLI sees them (loosely: the server validates).

export interface Condition {
  type: string;
  status?: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface Resource {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: string;
    resourceVersion?: string;
    [key: string]: unknown;
  };
  spec?: {
    type?: string;
    registry?: string;
    accessMode?: string;
    ociAuth?: Record<string, unknown>;
    source?: ImageRef & { type?: string; imageBuildRef?: string };
    destination?: ImageRef;
    format?: string;
    architecture?: string;
    [key: string]: unknown;
  };
  status?: {
    conditions?: Condition[];
    imageReference?: string;
    architecture?: string;
    artifact?: { uri?: unknown; size?: unknown; sha256?: unknown };
    [key: string]: unknown;
  };
}

export interface ImageRef {
  repository?: string;
  imageName?: string;
  imageTag?: string;
}

export interface ResourceList {
  apiVersion?: string;
  kind?: string;
  metadata: { continue?: string };
  items: Resource[];
}

export const readyCondition = (r: Resource): Condition | undefined =>
  r.status?.conditions?.find((c) => c.type === 'Ready');
