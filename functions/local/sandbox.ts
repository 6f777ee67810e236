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
//   removed with everything it started (its PID namespace dies with it).
// Podman needs `--runtime runc` on this machine (crun fails here) and explicit ulimits.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises';
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

export interface SandboxOptions {
  /** Names the container (`ib-run-<name>`): the run's id. */
  name: string;
  image: string;
  /** The run's host directory (created here, 0700, removed by `remove`). */
  workDir: string;
  env: Record<string, string>;
  endpoints: Endpoint[];
  /** Endpoints served by a host-side server instead of a plain relay (the object-store gate). */
  served?: { endpoint: Endpoint; server: Server }[];
  /** Files bind-mounted read-only over paths in the image (tests' stand-in scripts). */
  overlays?: Record<string, string>;
  command: string[];
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
  readonly container: string;
  private readonly servers: Server[] = [];
  private child?: ChildProcess;
  private stopped = false;
  private readonly idBase = pickIdBase();

  constructor(private readonly opts: SandboxOptions) {
    this.container = `ib-run-${opts.name.toLowerCase().replace(/[^a-z0-9_.-]/g, '-')}-${randomBytes(3).toString('hex')}`;
  }

  get srcDir() {
    return join(this.opts.workDir, 'src');
  }
  get resultDir() {
    return join(this.opts.workDir, 'result');
  }

  /** Starts the container; its output (stdout and stderr, interleaved) goes to onOutput. */
  async start(onOutput: (chunk: Buffer) => void): Promise<ChildProcess> {
    if (this.stopped) throw new Error('the sandbox was stopped before it started');
    const { workDir } = this.opts;
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    await chmod(workDir, 0o711); // the sandbox's ids may enter it to reach their own directories
    const net = join(workDir, 'net');
    await mkdir(net, { mode: 0o711 });
    for (const dir of ['src', 'storage', 'result']) {
      await mkdir(join(workDir, dir), { mode: 0o700 });
      await chown(join(workDir, dir), this.idBase, this.idBase);
    }
    const served = this.opts.served ?? [];
    const servedKeys = new Set(served.map((s) => `${s.endpoint.host}:${s.endpoint.port}`));
    const relayed = unique(this.opts.endpoints).filter((e) => !servedKeys.has(`${e.host}:${e.port}`));
    const all = [...served.map((s) => s.endpoint), ...relayed];
    const { listen, hosts } = sandboxAddresses(all);
    const lines: string[] = [];
    for (const [i, { endpoint, address }] of listen.entries()) {
      const socket = join(net, `${i}.sock`);
      const server = served.find((s) => s.endpoint === endpoint)?.server ?? relayTo(endpoint);
      await listenOn(server, socket);
      await chmod(socket, 0o666);
      this.servers.push(server);
      lines.push(`${address} ${endpoint.port} /run/ib-net/${i}.sock`);
    }
    await writeFile(join(net, 'endpoints'), `${lines.join('\n')}\n`, { mode: 0o644 });
    const ids = `0:${this.idBase}:${ID_RANGE}`;
    const args = [
      'run',
      '--rm',
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
      // Values pass through podman's own environment: only names are on its command line (ps shows it).
      ...Object.keys(this.opts.env).flatMap((k) => ['--env', k]),
      ...Object.entries(hosts).flatMap(([h, a]) => ['--add-host', `${h}:${a}`]),
      '-v',
      `${this.srcDir}:${SANDBOX_SRC_DIR}`,
      '-v',
      `${join(workDir, 'storage')}:/var/lib/containers`,
      '-v',
      `${this.resultDir}:${SANDBOX_RESULT_DIR}`,
      '-v',
      `${net}:/run/ib-net`,
      '-v',
      `${INIT_SCRIPT}:/run/ib-init.sh:ro`,
      ...Object.entries(this.opts.overlays ?? {}).flatMap(([inside, host]) => ['-v', `${host}:${inside}:ro`]),
      '--workdir',
      SANDBOX_SRC_DIR,
      this.opts.image,
      'bash',
      '/run/ib-init.sh',
      '/run/ib-net/endpoints',
      ...this.opts.command,
    ];
    if (this.stopped) throw new Error('the sandbox was stopped before it started');
    const child = spawn('podman', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...this.opts.env },
    });
    this.child = child;
    child.stdout?.on('data', onOutput);
    child.stderr?.on('data', onOutput);
    return child;
  }

  /** Stops the run: TERM to its processes, then everything in it killed and the container removed. */
  async stop(graceSeconds = 5): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // TERM to everything but the buildspec runner (PID 1, whose trap would wait for the running command):
    // the scripts' own TERM handling reports the cancel, then the runner ends; KILL after the grace.
    await exec('podman', ['exec', this.container, 'kill', '-TERM', '-1']).catch(() => undefined);
    await exec('podman', ['stop', '--time', String(graceSeconds), this.container]).catch(() => undefined);
    await this.remove();
  }

  /** Removes the container (killing whatever is left in it), the relays and the run's directory. */
  async remove(): Promise<void> {
    // A stop that raced the container's creation finds nothing to remove: try again until podman ends.
    for (let i = 0; i < 60; i++) {
      await exec('podman', ['rm', '--force', '--time', '0', this.container]).catch(() => undefined);
      if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const server of this.servers) server.close();
    this.servers.length = 0;
    await rm(this.opts.workDir, { recursive: true, force: true }).catch(() => undefined);
  }
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
