// What an export run does, as data: the bootc-image-builder (bib) command line for each format, what the
// produced file is (extension, content type, OCI artifact type, where bib writes it) and bib's config
// file for the customizations it supports. Pure: no I/O, no AWS SDK.
//
// The argv is run by functions/builder/export-image.sh (IB_BIB_ARGS_FILE, a JSON array of it) with the
// built image already pulled into /var/lib/containers/storage, which bib reads through `--local`.
import { InvalidError } from './errors.js';
import type { ExportFormat, ImageBuildSpec } from './types.js';

/**
 * The default bootc-image-builder, pinned by digest so that an export is reproducible and a new bib
 * release never changes images behind our back. Updated deliberately (release notes read, a qcow2 and an
 * ISO built and booted), never floated to `:latest`; check a candidate with
 * `skopeo inspect docker://quay.io/centos-bootc/bootc-image-builder:<tag> --format '{{.Digest}}'`.
 * A deployment chooses its own with the `bibImage` context key (BIB_IMAGE), digest-pinned as well: this
 * workspace cannot reach quay.io, so this default was not pulled here (README, "Export workflow in AWS").
 */
export const BIB_IMAGE =
  'quay.io/centos-bootc/bootc-image-builder@sha256:9893e7209e5f449b86ababfd2ee02a58cca2e5990f77b06c3539227531fc8120';

/** Where bib finds the image to convert: the host's container storage, mounted at the same path. */
export const CONTAINER_STORAGE = '/var/lib/containers/storage';
/** Paths inside the bib container. */
export const BIB_CONFIG_MOUNT = '/config.toml';
export const BIB_OUTPUT_MOUNT = '/output';

export const ROOTFS_TYPES = ['ext4', 'xfs', 'btrfs'] as const;
export type RootfsType = (typeof ROOTFS_TYPES)[number];

export interface ExportArtifact {
  /** File name extension of the download (`<build>-<arch>.<extension>`). */
  extension: string;
  /** Content-Type of the S3 object and of the download. */
  contentType: string;
  /** `artifactType` of the OCI artifact pushed with the built image as subject. */
  ociArtifactType: string;
  /** Media type of the artifact's one layer (the file itself). */
  layerMediaType: string;
  /** bib's `--type`. */
  bibType: string;
  /** Where bib writes the file, relative to its output directory. */
  bibOutput: string;
  /** Pushed as a KubeVirt containerdisk image (the qcow2 under /disk/) rather than as an artifact. */
  containerDisk: boolean;
  /** The local exporter (no bib) can produce it: a partitioned disk of the image's root filesystem. */
  local: boolean;
}

const QCOW2 = 'application/x-qemu-disk';

const ARTIFACTS: Record<ExportFormat, ExportArtifact> = {
  qcow2: art('qcow2', QCOW2, 'qcow2', 'qcow2', 'qcow2/disk.qcow2', { local: true }),
  vmdk: art('vmdk', 'application/x-vmdk', 'vmdk', 'vmdk', 'vmdk/disk.vmdk', { local: true }),
  raw: art('raw', 'application/octet-stream', 'raw', 'raw', 'image/disk.raw', { local: true }),
  vhd: art('vhd', 'application/x-vhd', 'vhd', 'vpc', 'vpc/disk.vhd', { local: true }),
  iso: art('iso', 'application/x-iso9660-image', 'iso', 'iso', 'bootiso/install.iso'),
  'anaconda-iso': art('iso', 'application/x-iso9660-image', 'iso', 'anaconda-iso', 'bootiso/install.iso'),
  gce: art('tar.gz', 'application/gzip', 'gce', 'gce', 'gce/image.tar.gz'),
  ami: art('raw', 'application/octet-stream', 'ami', 'ami', 'image/disk.raw'),
  'qcow2-disk-container': art('qcow2', QCOW2, 'qcow2', 'qcow2', 'qcow2/disk.qcow2', {
    local: true,
    containerDisk: true,
  }),
};

function art(
  extension: string,
  contentType: string,
  diskType: string,
  bibType: string,
  bibOutput: string,
  flags: { local?: boolean; containerDisk?: boolean } = {},
): ExportArtifact {
  return {
    extension,
    contentType,
    ociArtifactType: `application/vnd.diskimage.${diskType}`,
    layerMediaType: contentType,
    bibType,
    bibOutput,
    containerDisk: flags.containerDisk ?? false,
    local: flags.local ?? false,
  };
}

export function artifactFor(format: ExportFormat): ExportArtifact {
  const artifact = ARTIFACTS[format];
  if (!artifact) throw new InvalidError('spec.format', `unsupported export format '${String(format)}'`);
  return { ...artifact };
}

export interface AwsAmiTarget {
  /** S3 bucket bib uploads the raw disk to before the snapshot import. */
  bucket: string;
  region: string;
  /** Name of the AMI to register. */
  amiName: string;
}

export interface BibArgumentsInput {
  format: ExportFormat;
  /** The built image, by digest: `registry/name@sha256:…` (already pulled into container storage). */
  imageRef: string;
  rootfs: RootfsType;
  /** Host path of the bib config (bibConfigToml), mounted read-only at /config.toml. */
  configPath: string;
  /** Host directory bib writes into (mounted at /output); the file is `<outputDir>/<bibOutput>`. */
  outputDir: string;
  /** Required with format `ami`, refused otherwise. */
  awsAmi?: AwsAmiTarget;
  /** bootc-image-builder by digest (`registry/name@sha256:…`); default BIB_IMAGE. */
  bibImage?: string;
}

const IMAGE_REF_RE = /^[a-z0-9][a-z0-9._-]*(:[0-9]{1,5})?(\/[a-z0-9][a-z0-9._-]*)+@sha256:[0-9a-f]{64}$/;
// podman's -v splits on ':' and takes ',' as option separators: host paths must have neither.
const HOST_PATH_RE = /^\/[A-Za-z0-9._/+@=-]*$/;
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION_RE = /^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$/;
const AMI_NAME_RE = /^[A-Za-z0-9()[\]./'@_ -]{3,128}$/;

/**
 * The exact argv (`podman run …` included) of a bootc-image-builder run. Every value is validated so
 * that none can be read as an option or break out of a `-v` mount specification.
 */
export function bibArguments(input: BibArgumentsInput): string[] {
  const artifact = artifactFor(input.format);
  if (!IMAGE_REF_RE.test(input.imageRef)) {
    throw new InvalidError('imageRef', `must be registry/name@sha256:<64 hex>, not '${input.imageRef}'`);
  }
  const bibImage = input.bibImage ?? BIB_IMAGE;
  if (!IMAGE_REF_RE.test(bibImage)) {
    throw new InvalidError('bibImage', `must be registry/name@sha256:<64 hex>, not '${bibImage}'`);
  }
  if (!(ROOTFS_TYPES as readonly string[]).includes(input.rootfs)) {
    throw new InvalidError('rootfs', `must be one of ${ROOTFS_TYPES.join(', ')}, not '${input.rootfs}'`);
  }
  for (const [field, path] of [
    ['configPath', input.configPath],
    ['outputDir', input.outputDir],
  ] as const) {
    if (!HOST_PATH_RE.test(path) || path.split('/').includes('..')) {
      throw new InvalidError(field, `must be an absolute path without ':', ',' or '..', not '${path}'`);
    }
  }
  const ami = input.format === 'ami';
  if (ami !== (input.awsAmi !== undefined)) {
    throw new InvalidError('awsAmi', ami ? 'is required for format ami' : 'is only for format ami');
  }
  const awsArgs: string[] = [];
  const awsEnv: string[] = [];
  if (input.awsAmi) {
    const { bucket, region, amiName } = input.awsAmi;
    if (!BUCKET_RE.test(bucket))
      throw new InvalidError('awsAmi.bucket', `not an S3 bucket name: '${bucket}'`);
    if (!REGION_RE.test(region)) throw new InvalidError('awsAmi.region', `not an AWS region: '${region}'`);
    if (!AMI_NAME_RE.test(amiName)) {
      throw new InvalidError(
        'awsAmi.amiName',
        `not a valid AMI name (3–128 of A-Za-z0-9()[]./'@_- and space)`,
      );
    }
    awsArgs.push('--aws-bucket', bucket, '--aws-region', region, '--aws-ami-name', amiName);
    // bib uploads with the AWS SDK's default chain: pass the run's AWS_* variables (CodeBuild's container
    // credentials URI, region) and the host network (the credentials endpoint is link-local).
    awsEnv.push('--env', 'AWS_*', '--net', 'host');
  }
  return [
    'podman',
    'run',
    '--rm',
    '--privileged',
    '--pull=missing',
    '--security-opt',
    'label=type:unconfined_t',
    '-v',
    `${CONTAINER_STORAGE}:${CONTAINER_STORAGE}`,
    '-v',
    `${input.configPath}:${BIB_CONFIG_MOUNT}:ro`,
    '-v',
    `${input.outputDir}:${BIB_OUTPUT_MOUNT}`,
    ...awsEnv,
    bibImage,
    '--type',
    artifact.bibType,
    '--rootfs',
    input.rootfs,
    '--local',
    '--config',
    BIB_CONFIG_MOUNT,
    '--output',
    BIB_OUTPUT_MOUNT,
    ...awsArgs,
    input.imageRef,
  ];
}

/** Host path of the file bib produces for `format` in `outputDir`. */
export function bibOutputFile(format: ExportFormat, outputDir: string): string {
  return `${outputDir.replace(/\/+$/, '')}/${artifactFor(format).bibOutput}`;
}

// ---- bib config (TOML) ---------------------------------------------------------------------------

export interface BibUser {
  name: string;
  /** One SSH public key line. */
  key?: string;
  groups?: string[];
}

export interface BibConfig {
  users?: BibUser[];
  /** Kernel command line arguments appended by bib. */
  kernelAppend?: string;
}

/** bib customizations of a build: its `userConfiguration` user, with sudo rights (group wheel). */
export function bibConfigFor(spec: Pick<ImageBuildSpec, 'userConfiguration'>): BibConfig {
  const user = spec.userConfiguration;
  return user ? { users: [{ name: user.username, key: user.publickey, groups: ['wheel'] }] } : {};
}

/**
 * A TOML basic string holding exactly `value`: `"` and `\` escaped, every character outside printable
 * ASCII written as \uXXXX / \UXXXXXXXX, so the file is ASCII and no input can end the string or the
 * line. Lone UTF-16 surrogates cannot be represented in TOML (which is UTF-8) and are refused.
 */
export function tomlString(value: string): string {
  let out = '"';
  for (const ch of value) {
    const cp = ch.codePointAt(0) as number;
    if (cp >= 0xd800 && cp <= 0xdfff) throw new InvalidError('', 'a string holds a lone UTF-16 surrogate');
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (cp >= 0x20 && cp < 0x7f) out += ch;
    else if (cp <= 0xffff) out += `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    else out += `\\U${cp.toString(16).toUpperCase().padStart(8, '0')}`;
  }
  return `${out}"`;
}

const tomlArray = (values: string[]) => `[${values.map(tomlString).join(', ')}]`;

/** bib's config.toml for the customizations it supports: users (name, SSH key, groups), kernel args. */
export function bibConfigToml(config: BibConfig | Pick<ImageBuildSpec, 'userConfiguration'>): string {
  const c: BibConfig = 'userConfiguration' in config ? bibConfigFor(config) : (config as BibConfig);
  const lines = ['# bootc-image-builder configuration, written by serverless-imagebuilder'];
  for (const [i, user] of (c.users ?? []).entries()) {
    if (!user.name) throw new InvalidError(`users[${i}].name`, 'must not be empty');
    lines.push('', '[[customizations.user]]', `name = ${tomlString(user.name)}`);
    if (user.key !== undefined) lines.push(`key = ${tomlString(user.key)}`);
    if (user.groups?.length) lines.push(`groups = ${tomlArray(user.groups)}`);
  }
  if (c.kernelAppend) lines.push('', '[customizations.kernel]', `append = ${tomlString(c.kernelAppend)}`);
  return `${lines.join('\n')}\n`;
}
