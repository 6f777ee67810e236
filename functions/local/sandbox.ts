// One sandbox per run: a podman container of the builder image in which the run's buildspec executes.
// What the tenant's code inside can reach is decided here, and nothing else:
// - namespaces: its own PID, mount, IPC, UTS and network namespaces, and a user namespace (container
//   root is an unprivileged uid range of the host, picked per run); the only host files it sees are its
//   own run's directory (source dir, container storage, results), all created for this run;
// - network: none of its own (`--network none`, not slirp, not a host bridge). Each endpoint the run
//   may reach — its registries' host:port, the object store for its presigned URLs — is a listener
//   inside on the address the run's references name, relayed through a Unix socket to a host-side
//   relay that connects to that endpoint only. No other port of the host, nor the stack's gateway,
//   DynamoDB Local or other sandboxes, is reachable; the object store only through the gate below;
// - life: the run ends when its command does, or is stopped (cancel, timeout): the container is
//   removed with everything it started (its PID namespace dies with it);
// - binding: a sandbox is started before its run is known (SandboxPool) and holds nothing of any run
//   until one binds it; the run's environment (secrets included) reaches it through a FIFO, never
//   podman's command line or podman's container database. One sandbox serves one run.
// Podman needs `--runtime runc` on this machine (crun fails here) and explicit ulimits.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { constants } from 'node:fs';
import {
  chmod,
  chown,
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rm,
  writeFile,
} from 'node:fs/promises';
import { connect, createServer, isIP, type Server } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const INIT_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), 'sandbox-init.sh');

/** Where the run's directories appear inside (CodeBuild's layout: the source dir is CODEBUILD_SRC_DIR). */
export const SANDBOX_SRC_DIR = '/codebuild/output/src';
export const SANDBOX_RESULT_DIR = '/codebuild/output/ib-result';

/** A TCP endpoint the run may reach, as its references name it. */
export interface Endpoint {
  host: string;
  port: number;
}

/** The image a sandbox runs: its id, in a read-only containers-storage of its own (builder-image.ts). */
export interface SandboxImage {
  id: string;
  store: string;
}

/** What a sandbox is made of before any run is bound to it (a pool makes these ahead of time). */
export interface SandboxOptions {
  image: SandboxImage;
  /**
   * The sandbox's host directory (created here, removed by `remove`): the mount point of its own disk,
   * `<workDir>.disk`, a sparse ext4 image of `diskBytes` that holds everything the run can write.
   */
  workDir: string;
  diskBytes: number;
  /** Files bind-mounted read-only over paths in the image (tests' stand-in scripts). */
  overlays?: Record<string, string>;
  /** What runs once the run is bound (ib-codebuild-run with the buildspec). */
  command: string[];
}

/** What binds a sandbox to one run: its environment and the endpoints it may reach. */
export interface SandboxRun {
  env: Record<string, string>;
  endpoints: Endpoint[];
  /** Endpoints served by a host-side server instead of a plain relay (the object-store gate). */
  served?: { endpoint: Endpoint; server: Server }[];
}

/** The listen address of each endpoint inside the sandbox and the /etc/hosts entries it needs. */
export function sandboxAddresses(endpoints: Endpoint[]): {
  listen: { endpoint: Endpoint; address: string }[];
  hosts: Record<string, string>;
} {
  const hosts: Record<string, string> = {};
  let next = 10;
  const listen = endpoints.map((endpoint) => {
    const h = endpoint.host.toLowerCase();
    let address: string;
    if (h === 'localhost') address = '127.0.0.1';
    else if (isIP(h) === 4) address = h;
    else if (isIP(h) === 6) throw new Error(`IPv6 registry addresses are not supported locally: ${h}`);
    else {
      hosts[h] ??= `127.0.1.${next++}`;
      address = hosts[h] as string;
    }
    return { endpoint, address };
  });
  return { listen, hosts };
}

const unique = (endpoints: Endpoint[]) => [
  ...new Map(endpoints.map((e) => [`${e.host.toLowerCase()}:${e.port}`, e])).values(),
];

/** A relay of every connection on a Unix socket to one TCP endpoint. */
function relayTo(endpoint: Endpoint): Server {
  return createServer((inside) => {
    const outside = connect(endpoint.port, endpoint.host === 'localhost' ? '127.0.0.1' : endpoint.host);
    inside.pipe(outside);
    outside.pipe(inside);
    outside.on('error', () => inside.destroy());
    inside.on('error', () => outside.destroy());
  });
}

const listenOn = (server: Server, socket: string) =>
  new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(socket, () => res());
  });

/** The host uid range a sandbox's user namespace maps to: 65 536 ids, above every system range. */
const ID_RANGE = 65_536;
const pickIdBase = () => (16 + randomInt(0, 16_000)) * ID_RANGE;

export class Sandbox {
  readonly container = `ib-run-${randomBytes(6).toString('hex')}`;
  private readonly servers: Server[] = [];
  private child?: ChildProcess;
  private stopped = false;
  private bound = false;
  private mounted = false;
  private removal?: Promise<void>;
  private preparing?: Promise<void>;
  private readonly idBase = pickIdBase();
  private output: (chunk: Buffer) => void;
  private readonly early: Buffer[] = [];
  private endedWith?: (how: { code: number | null; signal: NodeJS.Signals | null }) => void;
  /** Settles when podman has ended and its output is all read (a spawn error counts as exit 1). */
  readonly ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => {
    this.endedWith = r;
  });

  constructor(private readonly opts: SandboxOptions) {
    this.output = (chunk) => this.early.push(chunk);
  }

  get image(): SandboxImage {
    return this.opts.image;
  }
  get srcDir() {
    return join(this.opts.workDir, 'src');
  }
  get resultDir() {
    return join(this.opts.workDir, 'result');
  }
  private get netDir() {
    return join(this.opts.workDir, 'net');
  }
  private get diskFile() {
    return `${this.opts.workDir}.disk`;
  }
  /**
   * podman with this sandbox's own storage on its own disk: the container's writable layer (all a
   * process that got out of the nested build's chroot could write to) is there, next to the run's
   * directories, so one run filling "the disk" fills only its own. The builder image is read from its
   * own read-only store.
   */
  private podman(args: string[]): string[] {
    const own = join(this.opts.workDir, 'podman');
    return [
      '--root',
      join(own, 'root'),
      '--runroot',
      join(own, 'run'),
      '--tmpdir',
      join(own, 'tmp'),
      '--storage-driver',
      'overlay',
      '--storage-opt',
      `additionalimagestore=${this.opts.image.store}`,
      ...args,
    ];
  }

  /** Removed while it was being made: what `remove` could not see yet goes here, and prepare stops. */
  private async abandon(): Promise<never> {
    await this.unmountDisk();
    await rm(this.diskFile, { force: true });
    await rm(this.opts.workDir, { recursive: true, force: true });
    throw new Error('the sandbox was stopped before it started');
  }

  private async unmountDisk(): Promise<void> {
    if (!this.mounted) return;
    this.mounted = false;
    // Whatever still holds it (an overlay podman left behind) lets go when it goes: lazy unmount.
    await exec('umount', ['-R', this.opts.workDir])
      .catch(() => exec('umount', ['-l', this.opts.workDir]))
      .catch(() => undefined);
  }

  /** Makes and mounts the sandbox's disk (sparse: it takes host space only as the run writes). */
  private async mountDisk(): Promise<void> {
    const { workDir, diskBytes } = this.opts;
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    await exec('truncate', ['-s', String(diskBytes), this.diskFile]);
    await chmod(this.diskFile, 0o600);
    await exec('mkfs.ext4', [
      '-q',
      '-F',
      '-m',
      '0',
      '-E',
      'lazy_itable_init=1,lazy_journal_init=1',
      this.diskFile,
    ]);
    try {
      await exec('mount', ['-o', 'loop,nosuid,nodev', this.diskFile, workDir]);
    } catch (err) {
      throw new Error(
        `the sandbox's disk cannot be mounted (a loop device and root are needed): ${(err as Error).message}`,
      );
    }
    this.mounted = true;
  }
  /** Free for a run: not bound, not stopped, its container starting or alive and waiting. */
  get idle(): boolean {
    const alive = !this.child || (this.child.exitCode === null && !this.child.signalCode);
    return !this.bound && !this.stopped && alive;
  }

  /**
   * Starts the container, which waits (sandbox-init.sh) for its run before anything of the run exists:
   * no environment, no endpoint, nothing in its directories. Nothing a run gives it is on podman's
   * command line or in podman's database: the environment goes through a FIFO when the run binds it.
   */
  prepare(): Promise<void> {
    // Once: the pool starts it, and the run that takes it may ask again while that is under way.
    this.preparing ??= this.prepareOnce();
    return this.preparing;
  }

  private async prepareOnce(): Promise<void> {
    if (this.stopped) throw new Error('the sandbox was stopped before it started');
    const { workDir } = this.opts;
    await this.mountDisk();
    if (this.stopped) await this.abandon();
    await mkdir(join(workDir, 'podman'), { mode: 0o700 });
    await chmod(workDir, 0o711); // the sandbox's ids may enter it to reach their own directories
    await mkdir(this.netDir, { mode: 0o711 });
    for (const dir of ['src', 'storage', 'result']) {
      await mkdir(join(workDir, dir), { mode: 0o700 });
      await chown(join(workDir, dir), this.idBase, this.idBase);
    }
    const go = join(this.netDir, 'go');
    await exec('mkfifo', ['-m', '0600', go]);
    await chown(go, this.idBase, this.idBase);
    const ids = `0:${this.idBase}:${ID_RANGE}`;
    // No --rm: podman answers when the run's processes have ended; the container goes afterwards
    // (`remove`), off the run's critical path.
    const args = [
      'run',
      '--name',
      this.container,
      '--runtime',
      'runc',
      '--network',
      'none',
      '--uidmap',
      ids,
      '--gidmap',
      ids,
      // What nested buildah (mounts, chroot) and the relays (the loopback addresses) need, in namespaces
      // of the sandbox's own: none of it is host authority.
      '--cap-add',
      'SYS_ADMIN,MKNOD,NET_ADMIN,SYS_CHROOT,SETFCAP',
      '--security-opt',
      'seccomp=unconfined',
      '--security-opt',
      'label=disable',
      '--device',
      '/dev/fuse',
      '--ulimit',
      'nofile=20000:20000',
      '--ulimit',
      'nproc=32768:32768',
      '--hostname',
      'builder',
      '-v',
      `${this.srcDir}:${SANDBOX_SRC_DIR}`,
      '-v',
      `${join(workDir, 'storage')}:/var/lib/containers`,
      '-v',
      `${this.resultDir}:${SANDBOX_RESULT_DIR}`,
      '-v',
      `${this.netDir}:/run/ib-net`,
      '-v',
      `${INIT_SCRIPT}:/run/ib-init.sh:ro`,
      ...Object.entries(this.opts.overlays ?? {}).flatMap(([inside, host]) => ['-v', `${host}:${inside}:ro`]),
      '--workdir',
      SANDBOX_SRC_DIR,
      this.opts.image.id,
      'bash',
      '/run/ib-init.sh',
      '/run/ib-net',
      ...this.opts.command,
    ];
    // Checked in the same turn as the spawn: a `remove` cannot come between them.
    if (this.stopped) await this.abandon();
    const child = spawn('podman', this.podman(args), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    this.child = child;
    child.on('error', () => this.endedWith?.({ code: 1, signal: null }));
    child.on('close', (code, signal) => this.endedWith?.({ code, signal }));
    child.stdout?.on('data', (chunk: Buffer) => this.output(chunk));
    child.stderr?.on('data', (chunk: Buffer) => this.output(chunk));
  }

  /**
   * Binds the sandbox to its run: the relays of its endpoints, then its environment through the FIFO
   * (sandbox-init.sh reads it, then starts the command). Output (stdout and stderr, interleaved) goes
   * to onOutput; `ended` settles when the run does.
   */
  async run(run: SandboxRun, onOutput: (chunk: Buffer) => void): Promise<void> {
    if (this.bound) throw new Error('a sandbox runs one run only');
    this.bound = true;
    await this.prepare();
    const child = this.child as ChildProcess;
    const served = run.served ?? [];
    const servedKeys = new Set(served.map((s) => `${s.endpoint.host}:${s.endpoint.port}`));
    const relayed = unique(run.endpoints).filter((e) => !servedKeys.has(`${e.host}:${e.port}`));
    const all = [...served.map((s) => s.endpoint), ...relayed];
    const { listen, hosts } = sandboxAddresses(all);
    const lines: string[] = [];
    for (const [i, { endpoint, address }] of listen.entries()) {
      const socket = join(this.netDir, `${i}.sock`);
      const server = served.find((s) => s.endpoint === endpoint)?.server ?? relayTo(endpoint);
      await listenOn(server, socket);
      await chmod(socket, 0o666);
      this.servers.push(server);
      lines.push(`${address} ${endpoint.port} /run/ib-net/${i}.sock`);
    }
    await writeFile(join(this.netDir, 'endpoints'), `${lines.join('\n')}\n`, { mode: 0o644 });
    const hostLines = Object.entries(hosts).map(([h, a]) => `${a} ${h}`);
    await writeFile(join(this.netDir, 'hosts'), `${hostLines.join('\n')}\n`, { mode: 0o644 });
    this.output = onOutput;
    for (const chunk of this.early.splice(0)) onOutput(chunk);
    if (this.stopped) throw new Error('the sandbox was stopped before it started');
    await this.sendEnv(run.env, child);
  }

  /** Writes `NAME=value` NUL-separated records into the FIFO, once its reader (the sandbox) is there. */
  private async sendEnv(env: Record<string, string>, child: ChildProcess): Promise<void> {
    const go = join(this.netDir, 'go');
    const deadline = Date.now() + 60_000;
    let fd: FileHandle | undefined;
    while (!fd) {
      // O_NONBLOCK: ENXIO while no reader has opened it yet (the container is still starting).
      fd = await open(go, constants.O_WRONLY | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENXIO') throw err;
        return undefined;
      });
      if (fd) break;
      if (this.stopped || child.exitCode !== null || child.signalCode || Date.now() > deadline) {
        throw new Error('the sandbox ended before its run could start');
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const records = Object.entries(env).map(([k, v]) => `${k}=${v}\0`);
    try {
      // A blocking descriptor for the data (records can exceed the pipe's 64 KiB); the reader is there.
      const blocking = await open(go, constants.O_WRONLY);
      try {
        await blocking.writeFile(records.join(''));
      } finally {
        await blocking.close();
      }
    } finally {
      await fd.close();
    }
  }

  /** Stops the run: TERM to its processes, then everything in it killed and the container removed. */
  async stop(graceSeconds = 5): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // TERM to everything but the buildspec runner (PID 1, whose trap would wait for the running command):
    // the scripts' own TERM handling reports the cancel, then the runner ends; KILL after the grace.
    // Only a started container is asked (podman run against a missing container would make storage).
    if (this.bound && this.child) {
      await exec('podman', this.podman(['exec', this.container, 'kill', '-TERM', '-1'])).catch(
        () => undefined,
      );
      await exec('podman', this.podman(['stop', '--time', String(graceSeconds), this.container])).catch(
        () => undefined,
      );
    }
    await this.remove();
  }

  /** Removes the container (killing whatever is left in it), the relays and the run's directory; once. */
  remove(): Promise<void> {
    this.removal ??= this.removeOnce();
    return this.removal;
  }

  private async removeOnce(): Promise<void> {
    this.stopped = true;
    const ended = () => !this.child || this.child.exitCode !== null || this.child.signalCode !== null;
    // A stop that raced the container's creation finds nothing to remove: try again until podman ends.
    // Without a podman process there is no container, and podman must not be run: it would make its
    // storage (and mounts) in the sandbox's directory, on the host's disk.
    for (let i = 0; i < 60 && this.child; i++) {
      await exec('podman', this.podman(['rm', '--force', '--time', '0', this.container])).catch(
        () => undefined,
      );
      if (ended()) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const server of this.servers) server.close();
    this.servers.length = 0;
    // conmon runs `podman … container cleanup` when the container exits, on its own time: the disk
    // stays until no process names the sandbox's directory, else that cleanup would make podman's
    // storage again under the unmounted mount point, on the host's disk.
    for (let i = 0; i < 100 && (await processesNaming(this.opts.workDir)); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.unmountDisk();
    await rm(this.diskFile, { force: true }).catch(() => undefined);
    await rm(this.opts.workDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Sandboxes started ahead of their runs, so a run does not wait for podman to start a container (about
 * 0.3 s here). A pooled sandbox holds nothing of any run until one binds it (`Sandbox.run`), and serves
 * exactly one run; the pool starts a fresh one when a run has ended (`release`), not while one runs: on
 * a small machine a container starting beside a build slows the build more than the start saves.
 * Runs with overlays (tests' stand-in scripts) or another image get a sandbox of their own.
 */
export class SandboxPool {
  private readonly idle: Sandbox[] = [];
  private readonly removing = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly opts: { size: number; workRoot: string; command: string[]; diskBytes: number },
  ) {}

  private make(image: SandboxImage, overlays?: Record<string, string>): Sandbox {
    return new Sandbox({
      image,
      diskBytes: this.opts.diskBytes,
      workDir: join(this.opts.workRoot, `ib-sandbox-${randomBytes(8).toString('hex')}`),
      command: this.opts.command,
      ...(overlays ? { overlays } : {}),
    });
  }

  /** Starts sandboxes of `image` until `size` are waiting. */
  fill(image: SandboxImage): void {
    for (let i = this.idle.length; i < this.opts.size && !this.closed; i++) {
      const sandbox = this.make(image);
      this.idle.push(sandbox);
      sandbox.prepare().catch(() => void sandbox.remove());
    }
  }

  /** A sandbox for one run: a waiting one when it fits, else a new one. */
  take(image: SandboxImage, overlays?: Record<string, string>): Sandbox {
    if (overlays && Object.keys(overlays).length) return this.make(image, overlays);
    let sandbox: Sandbox | undefined;
    for (let s = this.idle.shift(); s; s = this.idle.shift()) {
      if (s.image.id === image.id && s.image.store === image.store && s.idle) {
        sandbox = s;
        break;
      }
      void s.remove();
    }
    return sandbox ?? this.make(image);
  }

  /**
   * A run has ended (its processes are gone): its container and files are removed in the background,
   * then a new sandbox is started in its place.
   */
  release(sandbox: Sandbox): void {
    const removal = sandbox.remove().finally(() => {
      this.removing.delete(removal);
      this.fill(sandbox.image);
    });
    this.removing.add(removal);
  }

  /** Removes every waiting sandbox and waits for the removals under way (stack shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.idle.splice(0).map((s) => s.remove()), ...this.removing]);
  }
}

/** True while a process's command line names `path` (conmon, podman's cleanup of the container). */
async function processesNaming(path: string): Promise<boolean> {
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((p) => /^\d+$/.test(p));
  for (const pid of pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(path)) return true;
  }
  return false;
}

let podmanFound: Promise<boolean> | undefined;
let podmanPath: string | undefined;

/** Undefined when podman can run here; otherwise a message saying how to get it (checked once per PATH). */
export async function sandboxUnavailable(): Promise<string | undefined> {
  if (podmanPath !== process.env.PATH) podmanFound = undefined;
  podmanPath = process.env.PATH;
  podmanFound ??= exec('podman', ['--version']).then(
    () => true,
    () => false,
  );
  return (await podmanFound)
    ? undefined
    : 'podman is not installed: every local build and export runs in its own podman sandbox, never on the host (Debian/Ubuntu: apt-get install podman runc uidmap buildah debootstrap; bash .ci/run installs them)';
}
