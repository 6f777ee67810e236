// functions/builder/eks-job.sh, the EKS runner's pod entrypoint, run with bash on this machine around
// the real ib-codebuild-run and the real buildspec (functions/builder/buildspec.yml as JSON), with a
// stand-in `aws` CLI (which records any call: the pod's role reads nothing), stand-in builder/exporter
// scripts and a local HTTP server playing S3's presigned URLs: the buildspec fetches the run's registry
// passwords through IB_CREDENTIALS_URL into `IB_<SIDE>_PASSWORD_FILE` files (no secret in the
// environment) and the context through its URL, and the job PUTs its result.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BUILDER_DIR, buildspecJson } from '../../functions/builder/files.js';
import { tarArchive } from '../../functions/commons/domain/tar.js';

const FAKE_AWS = `#!/usr/bin/env bash
set -euo pipefail
echo "aws $*" >>"$FAKE_AWS_ROOT/calls.log"
exit 99
`;

const FAKE_BUILDER = `#!/usr/bin/env bash
set -euo pipefail
echo "[stub-builder] context: $(cd "$IB_CONTEXT_DIR" && find . -type f | sort | tr '\\n' ' ')"
echo "[stub-builder] password file: $(cat "$IB_DEST_PASSWORD_FILE") mode: $(stat -c %a "$IB_DEST_PASSWORD_FILE") env: \${IB_DEST_PASSWORD:-none} url: \${IB_CREDENTIALS_URL:-none} source: \${IB_SOURCE_PASSWORD_FILE:-none}"
echo "[stub-builder] ca: $IB_DEST_CA_FILE"
[[ "$IB_PUSH_REF" == *:fail ]] && { echo "IB_ERROR: build failed"; exit 20; }
printf 'sha256:%064d' 7 >"$IB_DIGEST_FILE"
`;

const FAKE_EXPORTER = `#!/usr/bin/env bash
set -euo pipefail
echo "[stub-exporter] args: $(cat "$IB_BIB_ARGS_FILE")"
printf 'disk' >"$IB_OUTPUT_FILE"
echo "IB_SHA256: $(sha256sum "$IB_OUTPUT_FILE" | cut -c1-64)"
echo "IB_SIZE: 4"
`;

let root: string;
let server: Server;
let base: string;
/** What the stand-in S3 holds (GET) and received (PUT), by path. */
const objects = new Map<string, Buffer>();

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const key = req.url ?? '';
      if (req.method === 'PUT') {
        objects.set(key, Buffer.concat(chunks));
        res.end();
      } else if (objects.has(key)) res.end(objects.get(key));
      else {
        res.statusCode = 404;
        res.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'ib-eks-job-'));
  for (const dir of ['bin', 'tmp']) mkdirSync(join(root, dir), { recursive: true });
  const bin = (name: string, text: string) => {
    writeFileSync(join(root, 'bin', name), text);
    chmodSync(join(root, 'bin', name), 0o755);
  };
  bin('aws', FAKE_AWS);
  bin('ib-build-image', FAKE_BUILDER);
  bin('ib-export-image', FAKE_EXPORTER);
  bin('ib-storage-setup', '#!/bin/sh\necho "[stub-storage] ready"\n');
  symlinkSync(join(BUILDER_DIR, 'codebuild-run.sh'), join(root, 'bin', 'ib-codebuild-run'));
  writeFileSync(join(root, 'buildspec.json'), buildspecJson());
  objects.clear();
  objects.set(
    '/contexts/acme/u-1/context.tar?sig=1',
    Buffer.from(tarArchive({ Containerfile: 'FROM x\n', 'ib/agent.yaml': 'a: 1\n' })),
  );
  objects.set(
    '/contexts/acme/u-1/credentials.json?sig=3',
    Buffer.from(JSON.stringify({ DEST: 's3cret-pw' })),
  );
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function runJob(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [join(BUILDER_DIR, 'eks-job.sh')], {
      env: {
        PATH: `${join(root, 'bin')}:${process.env.PATH}`,
        HOME: root,
        TMPDIR: join(root, 'tmp'),
        FAKE_AWS_ROOT: root,
        IB_BUILDSPEC: join(root, 'buildspec.json'),
        IB_WORK: join(root, 'work'),
        ...env,
      },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.on('close', (code) => resolve({ code, out }));
  });
}

const result = (path: string) => JSON.parse(objects.get(path)?.toString('utf8') ?? 'null');

describe('eks-job.sh (the EKS runner pod entrypoint)', () => {
  const buildEnv = () => ({
    IB_MODE: 'build',
    IB_ARCH: 'x86_64',
    IB_PUSH_REF: 'registry.example.com/edge/os:v1',
    IB_CONTEXT_URL: `${base}/contexts/acme/u-1/context.tar?sig=1`,
    IB_DEST_USERNAME: 'robot',
    IB_CREDENTIALS_URL: `${base}/contexts/acme/u-1/credentials.json?sig=3`,
    IB_DEST_CA_FILE: '.ib-registry/dest-ca.crt',
    IB_RESULT_URL: `${base}/contexts/acme/u-1/results/x86_64.json?sig=2`,
  });

  it('build: passwords and context fetched through their URLs, the password into a 0600 file, digest PUT as the result', async () => {
    const { code, out } = await runJob(buildEnv());
    expect(code, out).toBe(0);
    expect(out).toContain('[stub-builder] context: ./Containerfile ./ib/agent.yaml ');
    expect(out).toContain(
      '[stub-builder] password file: s3cret-pw mode: 600 env: none url: none source: none',
    );
    expect(result('/contexts/acme/u-1/results/x86_64.json?sig=2')).toEqual({
      exported: [{ Name: 'IB_DIGEST', Value: `sha256:${'0'.repeat(63)}7` }],
    });
    // The pod's role was asked for nothing (no secret, no object).
    expect(existsSync(join(root, 'calls.log'))).toBe(false);
    // Its working directories (password file and context included) are gone.
    expect(existsSync(join(root, 'work'))).toBe(false);
    const left = await new Promise<string>((r) => {
      const ls = spawn('ls', ['-A', join(root, 'tmp')]);
      let t = '';
      ls.stdout.on('data', (c: Buffer) => {
        t += c.toString();
      });
      ls.on('close', () => r(t.trim()));
    });
    expect(left).toBe('');
  });

  it('build failure: the build fails with the script’s IB_ERROR line, and no result is written', async () => {
    const { code, out } = await runJob({ ...buildEnv(), IB_PUSH_REF: 'registry.example.com/edge/os:fail' });
    expect(code).not.toBe(0);
    expect(out).toContain('IB_ERROR: build failed');
    expect(objects.has('/contexts/acme/u-1/results/x86_64.json?sig=2')).toBe(false);
  });

  it('export: the disk image PUT through its URL, its checksum and size PUT as the result', async () => {
    const { code, out } = await runJob({
      IB_JOB: 'export',
      IB_FORMAT: 'qcow2',
      IB_BIB_ARGS: '["--type","qcow2"]',
      IB_BIB_CONFIG: '',
      IB_ARTIFACT_URL: `${base}/artifacts/acme/u-2/os-x86_64.qcow2?sig=3`,
      IB_ARTIFACT_CONTENT_TYPE: 'application/x-qemu-disk',
      IB_RESULT_URL: `${base}/artifacts/acme/u-2/result.json?sig=4`,
    });
    expect(code, out).toBe(0);
    expect(out).toContain('[stub-exporter] args: ["--type","qcow2"]');
    expect(objects.get('/artifacts/acme/u-2/os-x86_64.qcow2?sig=3')?.toString()).toBe('disk');
    expect(result('/artifacts/acme/u-2/result.json?sig=4')).toEqual({
      exported: [
        { Name: 'IB_SHA256', Value: createHash('sha256').update('disk').digest('hex') },
        { Name: 'IB_SIZE', Value: '4' },
      ],
    });
  });
});
