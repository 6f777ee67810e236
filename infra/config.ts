// Settings of the CDK app, read from context (cdk.json or `-c key=value`) and validated at synth.
// Values given on the command line arrive as strings, those from cdk.json keep their JSON type.
import type { Node } from 'constructs';
import type { EksRunnerSettings } from './constructs/eks-runner.js';
import { type ImageBuilderProps, validateImageBuilderProps } from './imagebuilder.js';

/** The context keys the app reads; documented in the README. */
export const CONTEXT_KEYS = [
  'stage',
  'logRetentionDays',
  'jwtIssuer',
  'jwtAudience',
  'throttlingRateLimit',
  'throttlingBurstLimit',
  'buildTimeoutMinutes',
  'builderComputeType',
  'flightctlSecretArn',
  'agentRepoUrl',
  'notificationEmail',
  'notificationWebhookUrl',
  'notificationWebhookSecretArn',
  'artifactRetentionDays',
  'createVmImportRole',
  'runner',
  'eksClusterName',
  'eksEndpoint',
  'eksCertificateAuthority',
  'eksNamespace',
  'eksServiceAccount',
  'eksBuilderImage',
  'heartbeatTimeoutSeconds',
  'bibImage',
  'builderBaseImage',
  'aarch64Builders',
] as const;

/** Context keys whose value is a plain string, passed through to the props of the same name. */
const STRING_KEYS = [
  'builderComputeType',
  'flightctlSecretArn',
  'agentRepoUrl',
  'notificationEmail',
  'notificationWebhookUrl',
  'notificationWebhookSecretArn',
  'runner',
  'bibImage',
  'builderBaseImage',
] as const satisfies readonly (typeof CONTEXT_KEYS)[number][];

export function imageBuilderPropsFromContext(node: Node): ImageBuilderProps {
  const get = (key: (typeof CONTEXT_KEYS)[number]): unknown => {
    const value: unknown = node.tryGetContext(key);
    return value === '' || value === null ? undefined : value;
  };
  const problems: string[] = [];
  const number = (key: (typeof CONTEXT_KEYS)[number]): number | undefined => {
    const raw = get(key);
    if (raw === undefined) return undefined;
    const n =
      typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    if (Number.isNaN(n)) problems.push(`context ${key}=${JSON.stringify(raw)} is not a number`);
    return n;
  };

  const stage = get('stage') ?? 'dev';
  const logRetentionDays = number('logRetentionDays');
  const rateLimit = number('throttlingRateLimit');
  const burstLimit = number('throttlingBurstLimit');
  const buildTimeoutMinutes = number('buildTimeoutMinutes');
  const artifactRetentionDays = number('artifactRetentionDays');
  const heartbeatTimeoutSeconds = number('heartbeatTimeoutSeconds');
  const flag = (key: 'createVmImportRole' | 'aarch64Builders'): boolean | undefined => {
    const raw = get(key);
    if (raw === true || raw === 'true') return true;
    if (raw === false || raw === 'false') return false;
    if (raw !== undefined) problems.push(`context ${key}=${JSON.stringify(raw)} must be true or false`);
    return undefined;
  };
  const createVmImportRole = flag('createVmImportRole');
  const aarch64Builders = flag('aarch64Builders');
  const strings: Partial<Record<(typeof STRING_KEYS)[number], string>> = {};
  for (const key of STRING_KEYS) {
    const value = get(key);
    if (value === undefined) continue;
    if (typeof value === 'string') strings[key] = value.trim();
    else problems.push(`context ${key}=${JSON.stringify(value)} must be a string`);
  }
  // The EKS runner's cluster: eks<Key> → props.eks.<key>.
  const eksKeys = {
    eksClusterName: 'clusterName',
    eksEndpoint: 'endpoint',
    eksCertificateAuthority: 'certificateAuthority',
    eksNamespace: 'namespace',
    eksServiceAccount: 'serviceAccount',
    eksBuilderImage: 'builderImage',
  } as const;
  const eks: Record<string, string> = {};
  for (const [key, prop] of Object.entries(eksKeys)) {
    const value = get(key as keyof typeof eksKeys);
    if (value === undefined) continue;
    if (typeof value === 'string') eks[prop] = value.trim();
    else problems.push(`context ${key}=${JSON.stringify(value)} must be a string`);
  }
  const issuer = get('jwtIssuer');
  const audience = get('jwtAudience');
  if (issuer !== undefined && typeof issuer !== 'string') {
    problems.push(`context jwtIssuer=${JSON.stringify(issuer)} must be a string`);
  }
  let jwtAudience: string[] | undefined;
  if (typeof audience === 'string') jwtAudience = audience.split(',').map((a) => a.trim());
  else if (Array.isArray(audience)) jwtAudience = audience as string[];
  else if (audience !== undefined) {
    problems.push(
      `context jwtAudience=${JSON.stringify(audience)} must be a string (comma-separated) or a list`,
    );
  }
  if (problems.length > 0) throw new Error(`Invalid CDK context:\n  - ${problems.join('\n  - ')}`);

  const props: ImageBuilderProps = {
    stage: stage as string,
    ...(logRetentionDays !== undefined ? { logRetentionDays } : {}),
    ...(issuer !== undefined ? { jwtIssuer: issuer as string } : {}),
    ...(jwtAudience !== undefined ? { jwtAudience } : {}),
    throttling: {
      ...(rateLimit !== undefined ? { rateLimit } : {}),
      ...(burstLimit !== undefined ? { burstLimit } : {}),
    },
    ...(buildTimeoutMinutes !== undefined ? { buildTimeoutMinutes } : {}),
    ...(artifactRetentionDays !== undefined ? { artifactRetentionDays } : {}),
    ...(heartbeatTimeoutSeconds !== undefined ? { heartbeatTimeoutSeconds } : {}),
    ...(createVmImportRole !== undefined ? { createVmImportRole } : {}),
    ...(aarch64Builders !== undefined ? { aarch64Builders } : {}),
    ...(strings as Pick<ImageBuilderProps, (typeof STRING_KEYS)[number]>),
    ...(Object.keys(eks).length ? { eks: eks as unknown as EksRunnerSettings } : {}),
  };
  validateImageBuilderProps(props);
  return props;
}
