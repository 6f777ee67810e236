// Where the CLI finds the server and the token: flags, then the environment (IMAGEBUILDER_URL,
// IMAGEBUILDER_TOKEN), then the config file written by `imagebuilder login`
// ($IMAGEBUILDER_CONFIG, else $XDG_CONFIG_HOME/imagebuilder/config.json, else
// ~/.config/imagebuilder/config.json; mode 0600).
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError, UsageError } from './errors.js';

export interface CliConfig {
  server?: string;
  token?: string;
}

export type Env = Record<string, string | undefined>;

export function configPath(env: Env): string {
  if (env.IMAGEBUILDER_CONFIG) return env.IMAGEBUILDER_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'imagebuilder', 'config.json');
}

export async function readConfig(path: string): Promise<CliConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as CliConfig;
    return {
      ...(typeof parsed.server === 'string' ? { server: parsed.server } : {}),
      ...(typeof parsed.token === 'string' ? { token: parsed.token } : {}),
    };
  } catch {
    throw new CliError(`${path} is not valid JSON; run \`imagebuilder login\` again`);
  }
}

/** Writes the file with mode 0600 (its directory 0700), atomically. */
export async function writeConfig(path: string, config: CliConfig): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new CliError(`cannot write ${path}: ${(err as Error).message}`);
  }
}

export function normalizeServer(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`invalid server URL "${url}" (expected e.g. http://127.0.0.1:8080)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`invalid server URL "${url}" (http or https only)`);
  }
  return parsed.toString().replace(/\/+$/, '');
}

/** Server and token by precedence: flags, environment, config file. */
export async function resolveTarget(
  flags: { server?: string; token?: string },
  env: Env,
): Promise<{ server: string; token: string }> {
  let server = flags.server || env.IMAGEBUILDER_URL;
  let token = flags.token || env.IMAGEBUILDER_TOKEN;
  if (!server || !token) {
    const file = await readConfig(configPath(env));
    server ||= file.server;
    token ||= file.token;
  }
  if (!server)
    throw new UsageError('no server: pass --server, set IMAGEBUILDER_URL or run `imagebuilder login`');
  if (!token)
    throw new UsageError('no token: pass --token, set IMAGEBUILDER_TOKEN or run `imagebuilder login`');
  return { server: normalizeServer(server), token };
}
