// The builder image on this machine: functions/builder/Containerfile built with buildah, as the stack's
// bootstrap project builds it in AWS, but FROM a Debian root filesystem made here with debootstrap
// (no public registry is reachable from this workspace). The image is tagged by the hash of everything
// it is built from, so a change to a script or the buildspec makes a new image and an unchanged tree
// reuses the one built before; runs use it by image id.
//
// Sandboxes do not read it from the host's containers-storage: podman reading an additional image store
// takes its locks in the opposite order of a writer of that store (a `buildah pull` on the host), and
// the two deadlock. Each builder image is copied once into a store of its own (BUILDER_STORES/<id>),
// written only before it is marked complete and never again, which sandboxes read as their additional
// image store.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BUILDER_CONTEXT_FILES, BUILDER_DIR, buildspecJson } from '../builder/files.js';

const run = promisify(execFile);

export const BASE_IMAGE = 'localhost/imagebuilder-base:bookworm';
export const BUILDER_REPOSITORY = 'localhost/imagebuilder-builder';
/** Debian mirror of the base root filesystem and of the image's packages (IB_DEBIAN_MIRROR). */
const mirror = () => process.env.IB_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';

export class BuilderImageError extends Error {}

/** Where each builder image's read-only store lives (one directory per image id). */
const BUILDER_STORES = '/var/lib/imagebuilder/builder-stores';

/** The builder image as the sandboxes use it: its id, and the read-only store that holds it. */
export interface LocalBuilderImage {
  id: string;
  /** containers-storage graph root (overlay) holding only this image; never written once complete. */
  store: string;
}

async function sh(file: string, args: string[]): Promise<string> {
  try {
    return (await run(file, args, { maxBuffer: 256 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as Error & { code?: string; stderr?: string; stdout?: string };
    if (e.code === 'ENOENT') {
      throw new BuilderImageError(
        `${file} is not installed: the local builder sandbox needs podman, buildah and debootstrap (Debian/Ubuntu: apt-get install podman buildah runc uidmap debootstrap; bash .ci/run installs them)`,
      );
    }
    throw new BuilderImageError(
      `${file} ${args.slice(0, 3).join(' ')} failed: ${e.stderr || e.stdout || e.message}`,
    );
  }
}

const imageId = async (ref: string): Promise<string | undefined> => {
  try {
    return (await run('podman', ['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim() || undefined;
  } catch {
    return undefined;
  }
};

/** The tag of the builder image for the current tree: a hash of the Containerfile, scripts and buildspec. */
export async function builderImageTag(): Promise<string> {
  const hash = createHash('sha256');
  for (const name of BUILDER_CONTEXT_FILES) {
    hash
      .update(name)
      .update('\0')
      .update(await readFile(join(BUILDER_DIR, name)))
      .update('\0');
  }
  hash.update('buildspec.json\0').update(buildspecJson());
  hash.update(`mirror\0${mirror()}`);
  return `${BUILDER_REPOSITORY}:${hash.digest('hex').slice(0, 16)}`;
}

/** A Debian root filesystem imported as BASE_IMAGE (once per machine). */
async function ensureBase(log: (line: string) => void): Promise<void> {
  if (await imageId(BASE_IMAGE)) return;
  const work = await mkdtemp(join(tmpdir(), 'ib-base-'));
  try {
    log(`[builder-image] making ${BASE_IMAGE} with debootstrap from ${mirror()} (once per machine)`);
    await sh('debootstrap', ['--variant=minbase', 'bookworm', join(work, 'rootfs'), mirror()]);
    await sh('sh', [
      '-c',
      `tar -C "$1" -c . | podman import --quiet - "$2"`,
      'sh',
      join(work, 'rootfs'),
      BASE_IMAGE,
    ]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Serializes builds of the image across processes on this machine (test workers, a running stack). */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const lock = join(tmpdir(), 'imagebuilder-builder-image.lock');
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new BuilderImageError(`gave up waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** The image's own read-only store, copied from the host's storage once (under the build lock). */
async function ensureStore(id: string, tag: string, log: (line: string) => void): Promise<string> {
  const dir = join(BUILDER_STORES, id.slice(0, 16));
  const graph = join(dir, 'graph');
  const complete = join(dir, 'complete');
  const done = async () => (await readFile(complete, 'utf8').catch(() => '')) === id;
  if (await done()) return graph;
  return withLock(async () => {
    if (await done()) return graph;
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    log(`[builder-image] copying ${tag} into its read-only store for the sandboxes (once per image)`);
    await sh('skopeo', [
      'copy',
      '--quiet',
      `containers-storage:${id}`,
      `containers-storage:[overlay@${graph}+${join(dir, 'run')}]${tag}`,
    ]);
    await writeFile(complete, id);
    return graph;
  });
}

let built: Promise<LocalBuilderImage> | undefined;

/**
 * The builder image (its id and read-only store), building it first when this tree's tag is missing.
 * Once per process; a failure is not cached (the next run tries again).
 */
export function ensureBuilderImage(
  log: (line: string) => void = () => undefined,
): Promise<LocalBuilderImage> {
  built ??= (async () => {
    const tag = await builderImageTag();
    const id = await buildImage(tag, log);
    return { id, store: await ensureStore(id, tag, log) };
  })();
  built.catch(() => {
    built = undefined;
  });
  return built;
}

async function buildImage(tag: string, log: (line: string) => void): Promise<string> {
  const existing = await imageId(tag);
  if (existing) return existing;
  return withLock(async () => {
    const again = await imageId(tag);
    if (again) return again;
    await ensureBase(log);
    const context = await mkdtemp(join(tmpdir(), 'ib-builder-context-'));
    try {
      for (const name of BUILDER_CONTEXT_FILES) {
        await writeFile(join(context, name), await readFile(join(BUILDER_DIR, name)));
      }
      await writeFile(join(context, 'buildspec.json'), buildspecJson());
      log(`[builder-image] building ${tag} from functions/builder/Containerfile`);
      await sh('buildah', [
        'bud',
        '--isolation',
        'chroot',
        '--layers',
        '--pull=never',
        '--from',
        BASE_IMAGE,
        '--build-arg',
        `APT_MIRROR=${mirror()}`,
        '-t',
        tag,
        '-f',
        join(context, 'Containerfile'),
        context,
      ]);
    } finally {
      await rm(context, { recursive: true, force: true });
    }
    const id = await imageId(tag);
    if (!id) throw new BuilderImageError(`buildah built ${tag} but podman cannot find it`);
    return id;
  });
}
