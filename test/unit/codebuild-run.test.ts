// functions/builder/codebuild-run.sh: a buildspec run with the semantics CodeBuild documents for
// version 0.2 (buildspec reference, "Build phase transitions"): one shell for all commands, env.variables
// under the run's own values, a failed command fails its phase but not its `finally`, a failed install
// or pre_build ends the build, a failed build still runs post_build, on-failure CONTINUE goes on,
// exported-variables at the end.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BUILDER_DIR } from '../../functions/builder/files.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ib-cbrun-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function run(spec: Record<string, unknown>, env: Record<string, string> = {}) {
  writeFileSync(join(dir, 'spec.json'), JSON.stringify({ version: 0.2, ...spec }));
  const res = spawnSync(
    'bash',
    [join(BUILDER_DIR, 'codebuild-run.sh'), join(dir, 'spec.json'), join(dir, 'out.env')],
    {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, CODEBUILD_SRC_DIR: dir, ...env },
    },
  );
  const exported = Object.fromEntries(
    readFileSync(join(dir, 'out.env'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => [
        l.slice(0, l.indexOf('=')),
        Buffer.from(l.slice(l.indexOf('=') + 1), 'base64').toString(),
      ]),
  );
  return { code: res.status, out: res.stdout + res.stderr, exported };
}

const echo = (s: string) => `echo ${s} >> "$CODEBUILD_SRC_DIR/trace"`;
const trace = () => readFileSync(join(dir, 'trace'), 'utf8').trim().split('\n');

describe('ib-codebuild-run (CodeBuild buildspec semantics)', () => {
  it('runs every phase in order in one shell: variables and the directory carry over; exports at the end', () => {
    const r = run(
      {
        env: {
          variables: { A: 'default', B: 'from-spec' },
          'exported-variables': ['OUT', 'A', 'B', 'UNSET'],
        },
        phases: {
          install: { commands: ['export OUT=one', 'mkdir sub && cd sub'] },
          pre_build: { commands: ['OUT="$OUT two"; [ "$(basename "$PWD")" = sub ]'] },
          build: { commands: ['export OUT="$OUT three"'] },
          post_build: { commands: [echo('post')] },
        },
      },
      { A: 'from-run' },
    );
    expect(r.code, r.out).toBe(0);
    expect(r.exported).toEqual({ OUT: 'one two three', A: 'from-run', B: 'from-spec' });
  });

  it('a failed pre_build skips build and post_build, but runs its finally', () => {
    const r = run({
      phases: {
        pre_build: { commands: ['false', echo('not-reached')], finally: [echo('pre-finally')] },
        build: { commands: [echo('build')] },
        post_build: { commands: [echo('post')] },
      },
    });
    expect(r.code).toBe(1);
    expect(trace()).toEqual(['pre-finally']);
  });

  it('a failed build still runs post_build and both finally blocks; the build fails', () => {
    const r = run({
      phases: {
        build: {
          commands: [echo('build'), 'exit_code() { return 3; }; exit_code'],
          finally: [echo('build-finally')],
        },
        post_build: { commands: [echo('post')], finally: [echo('post-finally')] },
      },
    });
    expect(r.code).toBe(1);
    expect(trace()).toEqual(['build', 'build-finally', 'post', 'post-finally']);
    expect(r.out).toContain('exit status 3');
  });

  it('on-failure CONTINUE goes on to the next phase, and the build still ends failed', () => {
    const r = run({
      env: { 'exported-variables': ['X'] },
      phases: {
        install: { 'on-failure': 'CONTINUE', commands: ['false'] },
        build: { commands: ['export X=ran'] },
      },
    });
    expect(r.code).toBe(1);
    expect(r.exported).toEqual({ X: 'ran' });
  });

  it('a command that exits the shell ends the build failed, with its variables written', () => {
    const r = run({
      env: { 'exported-variables': ['X'] },
      phases: { build: { commands: ['export X=before', 'exit 0', 'export X=after'] } },
    });
    expect(r.code).toBe(1);
    expect(r.exported).toEqual({ X: 'before' });
  });
});
