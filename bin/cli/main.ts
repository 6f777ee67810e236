// The `imagebuilder` command line: argument parsing (commander) and the commands. `run` takes its
// streams and environment as arguments and returns the exit code, so it also runs in-process in tests.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { Command, CommanderError, Option } from 'commander';
import { applyDocument, applyExitCode, parseDocuments } from './apply.js';
import { ApiClient } from './client.js';
import { configPath, type Env, normalizeServer, resolveTarget, writeConfig } from './config.js';
import { downloadExport, humanBytes } from './download.js';
import { parseDuration } from './duration.js';
import { CliError, EXIT, EXIT_CODES_HELP, UsageError } from './errors.js';
import { KINDS, type Kind, parseKind, parseRef, refLabel, resourcePath } from './kinds.js';
import { printLogs } from './logs.js';
import { OUTPUT_FORMATS, type OutputFormat, render } from './output.js';
import type { Resource, ResourceList } from './types.js';
import { readyCondition } from './types.js';
import { parseReason, waitFor } from './wait.js';

export interface Io {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
  stdin: Readable;
  env: Env;
}

const RUNS: readonly Kind[] = ['ImageBuild', 'ImageExport'];

const VERSION = (() => {
  try {
    return (
      JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    ).version;
  } catch {
    return '0.0.0';
  }
})();

const HELP_AFTER = `
Server and token: --server/--token, else IMAGEBUILDER_URL/IMAGEBUILDER_TOKEN, else the config file
written by \`imagebuilder login\` ($IMAGEBUILDER_CONFIG, else $XDG_CONFIG_HOME/imagebuilder/config.json,
else ~/.config/imagebuilder/config.json).

Kinds: repositories|repository|repo, imagebuilds|imagebuild|ib, imageexports|imageexport|ie.
Resources are named KIND/NAME (e.g. imagebuild/edge-os-v1).

${EXIT_CODES_HELP}`;

const positiveInt = (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1000)
    throw new UsageError(`--limit must be 1–1000 (got "${v}")`);
  return Number(v);
};

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

export async function run(argv: string[], io: Io): Promise<number> {
  let exitCode: number = EXIT.ok;
  const out = (s: string) => io.stdout.write(s);
  const err = (s: string) => io.stderr.write(s);
  const client = async (cmd: Command) => {
    const { server, token } = await resolveTarget(cmd.optsWithGlobals(), io.env);
    return new ApiClient(server, token);
  };

  const program = new Command('imagebuilder')
    .description('Client of the serverless-imagebuilder (Flight Control ImageBuilder) API')
    .version(VERSION)
    .option('--server <url>', 'API server URL (env IMAGEBUILDER_URL)')
    .option('--token <token>', 'bearer token (env IMAGEBUILDER_TOKEN)')
    .configureOutput({ writeOut: out, writeErr: err })
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', HELP_AFTER);

  program
    .command('login')
    .description('check --server and --token against the API and save them to the config file (mode 0600)')
    .action(async (_opts, cmd: Command) => {
      const flags = cmd.optsWithGlobals() as { server?: string; token?: string };
      const server = flags.server ?? io.env.IMAGEBUILDER_URL;
      const token = flags.token ?? io.env.IMAGEBUILDER_TOKEN;
      if (!server || !token) throw new UsageError('login needs --server URL and --token TOKEN');
      const api = new ApiClient(normalizeServer(server), token);
      await api.json('GET', '/repositories', { query: { limit: 1 } });
      const path = configPath(io.env);
      await writeConfig(path, { server: api.server, token });
      out(`logged in to ${api.server}; saved to ${path}\n`);
    });

  program
    .command('apply')
    .description('create or update the resources of a YAML/JSON file (several documents separated by ---)')
    .requiredOption('-f, --filename <file>', 'file to apply, or - for standard input')
    .action(async (opts: { filename: string }, cmd: Command) => {
      const text =
        opts.filename === '-'
          ? await readAll(io.stdin)
          : await readFile(opts.filename, 'utf8').catch((e: Error) => {
              throw new CliError(`cannot read ${opts.filename}: ${e.message}`);
            });
      const docs = parseDocuments(text, opts.filename === '-' ? 'stdin' : opts.filename);
      const api = await client(cmd);
      const results = [];
      for (const doc of docs) {
        const result = await applyDocument(api, doc);
        results.push(result);
        if (result.error) err(`${result.ref}: error: ${result.error.message}\n`);
        else out(`${result.ref} ${result.outcome}\n`);
        if (result.outcome === 'conflict') {
          err(
            `${result.ref}: its spec differs and cannot be changed; use \`newversion\`, or delete it first\n`,
          );
        }
      }
      exitCode = applyExitCode(results);
    });

  program
    .command('get')
    .description('list resources of a kind (all pages), or show one')
    .argument('<kind>', 'repositories|imagebuilds|imageexports (or repo, ib, ie)')
    .argument('[name]', 'one resource')
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'))
    .option('-l, --selector <selector>', 'label selector, e.g. fleet=stores,env!=dev')
    .option('--field-selector <selector>', 'field selector, e.g. status.conditions.ready.reason=Completed')
    .option('--limit <n>', 'items per page (1–1000; all pages are fetched)', positiveInt)
    .action(async (kindArg: string, name: string | undefined, opts, cmd: Command) => {
      const kind = parseKind(kindArg);
      const format = opts.output as OutputFormat;
      const api = await client(cmd);
      if (name) {
        out(render(kind, format, [await api.json<Resource>('GET', resourcePath(kind, name))], true));
        return;
      }
      const items: Resource[] = [];
      let cont: string | undefined;
      do {
        const page: ResourceList = await api.json<ResourceList>('GET', KINDS[kind].path, {
          query: {
            labelSelector: opts.selector,
            fieldSelector: opts.fieldSelector,
            limit: opts.limit,
            continue: cont,
          },
        });
        items.push(...page.items);
        cont = page.metadata?.continue || undefined;
      } while (cont);
      if (items.length === 0 && format === 'table') err('No resources found.\n');
      out(render(kind, format, items, false));
    });

  program
    .command('logs')
    .description("print a build's or export's log; -f follows it until the run ends")
    .argument('<kind/name>', 'imagebuild/NAME or imageexport/NAME')
    .argument('[name]')
    .option('-f, --follow', 'keep printing until the log is complete')
    .action(async (ref: string, second: string | undefined, opts: { follow?: boolean }, cmd: Command) => {
      const { kind, name } = parseRef(ref, second, RUNS);
      await printLogs(await client(cmd), kind, name, Boolean(opts.follow), out);
    });

  program
    .command('cancel')
    .description('cancel a build or export')
    .argument('<kind/name>', 'imagebuild/NAME or imageexport/NAME')
    .argument('[name]')
    .action(async (ref: string, second: string | undefined, _opts, cmd: Command) => {
      const { kind, name } = parseRef(ref, second, RUNS);
      const r = await (await client(cmd)).json<Resource>('POST', `${resourcePath(kind, name)}/cancel`);
      out(`${refLabel(kind, name)} ${readyCondition(r)?.reason ?? 'canceled'}\n`);
    });

  program
    .command('delete')
    .description('delete a resource (a build also cancels and deletes its exports)')
    .argument('<kind/name>', 'KIND/NAME')
    .argument('[name]')
    .action(async (ref: string, second: string | undefined, _opts, cmd: Command) => {
      const { kind, name } = parseRef(ref, second);
      await (await client(cmd)).json('DELETE', resourcePath(kind, name));
      out(`${refLabel(kind, name)} deleted\n`);
    });

  program
    .command('newversion')
    .description('create a build from a copy of another one, with other image tags')
    .argument('<imagebuild/name>', 'imagebuild/NAME')
    .argument('[name]')
    .requiredOption('--name <new>', 'name of the new build')
    .option('--source-tag <tag>', 'source image tag of the new build')
    .option('--destination-tag <tag>', 'destination image tag of the new build')
    .action(async (ref: string, second: string | undefined, opts, cmd: Command) => {
      const { kind, name } = parseRef(ref, second, ['ImageBuild']);
      const r = await (await client(cmd)).json<Resource>('POST', `${resourcePath(kind, name)}/newversion`, {
        body: {
          name: opts.name,
          ...(opts.sourceTag ? { sourceImageTag: opts.sourceTag } : {}),
          ...(opts.destinationTag ? { destinationImageTag: opts.destinationTag } : {}),
        },
      });
      out(`${refLabel(kind, r.metadata.name)} created\n`);
    });

  program
    .command('wait')
    .description('wait until a build or export reaches a status (exit 1 if it ends otherwise, 2 on timeout)')
    .argument('<kind/name>', 'imagebuild/NAME or imageexport/NAME')
    .argument('[name]')
    .option('--for <reason>', 'Completed (or any status: Building, Failed, Canceled…)', 'Completed')
    .option('--timeout <duration>', 'give up after this long (90s, 5m, 1h)', '30m')
    .option('--interval <duration>', 'time between checks', '2s')
    .action(async (ref: string, second: string | undefined, opts, cmd: Command) => {
      const { kind, name } = parseRef(ref, second, RUNS);
      const target = parseReason(opts.for);
      const timeoutMs = parseDuration(opts.timeout);
      const intervalMs = Math.max(100, parseDuration(opts.interval));
      const label = refLabel(kind, name);
      const result = await waitFor(await client(cmd), kind, name, target, {
        timeoutMs,
        intervalMs,
        // On a terminal, each status as it comes.
        ...(io.stderr.isTTY
          ? { onReason: (reason: string) => reason !== target && err(`${label} ${reason}\n`) }
          : {}),
      });
      const detail = result.message ? `: ${result.message}` : '';
      if (result.code === EXIT.ok) out(`${label} ${result.reason}\n`);
      else if (result.code === EXIT.timeout) {
        err(
          `error: timed out after ${opts.timeout} waiting for ${label} to be ${target} (it is ${result.reason})\n`,
        );
      } else err(`error: ${label} ended ${result.reason}${detail}\n`);
      exitCode = result.code;
    });

  program
    .command('download')
    .description("download an export's disk image, resuming after interruptions, SHA-256 verified")
    .argument('<imageexport/name>', 'imageexport/NAME')
    .argument('[file]', 'where to write it (default: the name the server gives, e.g. <build>-<arch>.qcow2)')
    .option('--no-progress', 'no progress bar (there is none unless stderr is a terminal)')
    .action(async (ref: string, file: string | undefined, opts: { progress: boolean }, cmd: Command) => {
      if (!ref.includes('/')) throw new UsageError(`expected imageexport/NAME, got "${ref}"`);
      const { name } = parseRef(ref, undefined, ['ImageExport']);
      const result = await downloadExport(await client(cmd), name, {
        ...(file ? { file } : {}),
        ...(opts.progress && io.stderr.isTTY ? { progressStream: io.stderr } : {}),
        notice: (m) => err(`${m}\n`),
      });
      const check = result.verified ? 'sha256 verified' : 'not verified';
      out(
        `${refLabel('ImageExport', name)} saved to ${result.file} (${humanBytes(result.size)}, ${check})\n`,
      );
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (e instanceof CliError) {
      err(`error: ${e.message}\n`);
      return e.exitCode;
    }
    err(`error: ${(e as Error).stack ?? e}\n`);
    return EXIT.error;
  }
}
