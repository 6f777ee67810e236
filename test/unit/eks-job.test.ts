// functions/builder/eks-job.sh, the EKS runner's pod entrypoint, run with bash against a stand-in `aws`
// CLI (S3 as a directory, Secrets Manager as files) and stand-in builder/exporter scripts: it fetches the
// scripts, resolves `<NAME>_SECRET_ARN` into `<NAME>_FILE` (no secret in the environment), downloads the
// context (not the results), runs the script, and writes the result CodeBuild would have exported.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tarArchive } from '../../functions/commons/domain/tar.js';
import { EKS_JOB_SCRIPT } from '../../infra/constructs/eks-runner.js';

const FAKE_AWS = `#!/usr/bin/env bash
set -euo pipefail
root=$FAKE_AWS_ROOT
echo "aws $*" >>"$root/calls.log"
map() { case "$1" in s3://*) printf '%s' "$root/s3/\${1#s3://}" ;; *) printf '%s' "$1" ;; esac; }
if [[ "$1 $2" == "s3 cp" ]]; then
  shift 2
  recursive='' exclude='' args=()
  while (($#)); do
    case "$1" in
      --only-show-errors) ;;
      --recursive) recursive=1 ;;
      --exclude) exclude=$2; shift ;;
      --content-type) shift ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  src=\${args[0]} dst=\${args[1]}
  if [[ -n "$recursive" ]]; then
    mkdir -p "$(map "$dst")"
    (cd "$(map "$src")" && find . -type f ! -path "./$exclude" -exec cp --parents {} "$(map "$dst")" \\;)
  elif [[ "$dst" == - ]]; then
    cat "$(map "$src")"
  elif [[ "$src" == - ]]; then
    mkdir -p "$(dirname "$(map "$dst")")"; cat >"$(map "$dst")"
  else
    mkdir -p "$(dirname "$(map "$dst")")"; cp "$(map "$src")" "$(map "$dst")"
  fi
  exit 0
fi
if [[ "$1 $2" == "secretsmanager get-secret-value" ]]; then
  cat "$root/secrets/$(printf '%s' "$4" | tr '/:' '__')"; echo
  exit 0
fi
exit 99
`;

const FAKE_BUILDER = `#!/usr/bin/env bash
set -euo pipefail
echo "[stub-builder] context: $(cd "$IB_CONTEXT_DIR" && find . -type f | sort | tr '\\n' ' ')"
echo "[stub-builder] password file: $(cat "$IB_DEST_PASSWORD_FILE") env: \${IB_DEST_PASSWORD:-none} arn: \${IB_DEST_PASSWORD_SECRET_ARN:-none}"
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
const SECRET_ARN =
  'arn:aws:secretsmanager:eu-west-1:123456789012:secret:imagebuilder/dev/acme/repositories/dst/x-AbCdEf';

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'ib-eks-job-'));
  for (const dir of [
    'bin',
    's3/assets',
    's3/svc/contexts/acme/u-1/ib',
    's3/svc/contexts/acme/u-1/results',
    'secrets',
    'tmp',
  ])
    mkdirSync(join(root, dir), { recursive: true });
  writeFileSync(join(root, 'bin/aws'), FAKE_AWS);
  chmodSync(join(root, 'bin/aws'), 0o755);
  writeFileSync(join(root, 's3/assets/build-image.sh'), FAKE_BUILDER);
  writeFileSync(join(root, 's3/assets/export-image.sh'), FAKE_EXPORTER);
  writeFileSync(join(root, 's3/assets/common.sh'), '# common\n');
  writeFileSync(
    join(root, 's3/svc/contexts/acme/u-1/context.tar'),
    tarArchive({ Containerfile: 'FROM x\n', 'ib/agent.yaml': 'a: 1\n' }),
  );
  writeFileSync(join(root, 's3/svc/contexts/acme/u-1/results/aarch64.json'), '{}');
  writeFileSync(join(root, 'secrets', SECRET_ARN.replace(/[/:]/g, '_')), 's3cret-pw');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function runJob(env: Record<string, string>) {
  const res = spawnSync(
    'bash',
    [EKS_JOB_SCRIPT, 's3://assets/build-image.sh', 's3://assets/export-image.sh', 's3://assets/common.sh'],
    {
      encoding: 'utf8',
      env: {
        PATH: `${join(root, 'bin')}:${process.env.PATH}`,
        HOME: root,
        TMPDIR: join(root, 'tmp'),
        FAKE_AWS_ROOT: root,
        ...env,
      },
    },
  );
  return { code: res.status, out: res.stdout + res.stderr };
}

const result = (key: string) => JSON.parse(readFileSync(join(root, 's3/svc', key), 'utf8'));

describe('eks-job.sh (the EKS runner pod entrypoint)', () => {
  const buildEnv = {
    IB_MODE: 'build',
    IB_ARCH: 'x86_64',
    IB_PUSH_REF: 'registry.example.com/edge/os:v1',
    IB_CONTEXT_BUCKET: 'svc',
    IB_CONTEXT_PREFIX: 'contexts/acme/u-1/',
    IB_DEST_USERNAME: 'robot',
    IB_DEST_PASSWORD_SECRET_ARN: SECRET_ARN,
    IB_DEST_CA_FILE: '.ib-registry/dest-ca.crt',
    IB_RESULT_URI: 's3://svc/contexts/acme/u-1/results/x86_64.json',
  };

  it('build: secret resolved into a file, context without results, digest written as the result', () => {
    const { code, out } = runJob(buildEnv);
    expect(code, out).toBe(0);
    expect(out).toContain('[stub-builder] context: ./Containerfile ./ib/agent.yaml ');
    expect(out).toContain('[stub-builder] password file: s3cret-pw env: none arn: none');
    expect(out).toMatch(/\[stub-builder\] ca: \/.*\/ctx\/\.ib-registry\/dest-ca\.crt/);
    expect(result('contexts/acme/u-1/results/x86_64.json')).toEqual({
      exported: [{ Name: 'IB_DIGEST', Value: `sha256:${'0'.repeat(63)}7` }],
    });
    expect(readFileSync(join(root, 'calls.log'), 'utf8')).toContain(
      `aws secretsmanager get-secret-value --secret-id ${SECRET_ARN}`,
    );
    // Its working directory (secret file included) is gone.
    expect(spawnSync('ls', [join(root, 'tmp')], { encoding: 'utf8' }).stdout.trim()).toBe('');
  });

  it('build failure: the script’s exit status and IB_ERROR line, no result', () => {
    const { code, out } = runJob({ ...buildEnv, IB_PUSH_REF: 'registry.example.com/edge/os:fail' });
    expect(code).toBe(20);
    expect(out.trim().split('\n').pop()).toBe('IB_ERROR: build failed');
    expect(existsSync(join(root, 's3/svc/contexts/acme/u-1/results/x86_64.json'))).toBe(false);
  });

  it('export: the disk image uploaded, its checksum and size written as the result', () => {
    const { code, out } = runJob({
      IB_JOB: 'export',
      IB_FORMAT: 'qcow2',
      IB_BIB_ARGS: '["--type","qcow2"]',
      IB_BIB_CONFIG: '',
      IB_ARTIFACT_BUCKET: 'svc',
      IB_ARTIFACT_KEY: 'artifacts/acme/u-2/os-x86_64.qcow2',
      IB_ARTIFACT_CONTENT_TYPE: 'application/x-qemu-disk',
      IB_RESULT_URI: 's3://svc/artifacts/acme/u-2/result.json',
    });
    expect(code, out).toBe(0);
    expect(out).toContain('[stub-exporter] args: ["--type","qcow2"]');
    expect(readFileSync(join(root, 's3/svc/artifacts/acme/u-2/os-x86_64.qcow2'), 'utf8')).toBe('disk');
    expect(result('artifacts/acme/u-2/result.json')).toEqual({
      exported: [
        { Name: 'IB_SHA256', Value: createHash('sha256').update('disk').digest('hex') },
        { Name: 'IB_SIZE', Value: '4' },
      ],
    });
  });
});
