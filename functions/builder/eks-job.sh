#!/usr/bin/env bash
# eks-job.sh — the entrypoint of a builder pod of the EKS runner: what the CodeBuild buildspec does
# (infra/constructs/build-workflow.ts, builderBuildSpec) around the same scripts, plus the result
# channel CodeBuild's exported variables provide there.
#
# Arguments: the S3 URLs of build-image.sh, export-image.sh and common.sh (CDK assets, so a deployment
# pins the script versions). The state machine's Job manifest fetches this script (an asset too) and
# runs it in a privileged container whose image has bash, the AWS CLI, buildah, podman and coreutils;
# /var/lib/containers is an emptyDir volume (overlay works on it, unlike on the container's own root).
# AWS credentials come from the pod's service account (EKS Pod Identity).
#
# Environment: the run's variables (functions/commons/domain/build-plan.ts, export-run.ts `job.env`):
#   <NAME>_SECRET_ARN   a secret's ARN (never its value: the Job spec holds no secret); resolved here
#                       into a file named by <NAME>_FILE (e.g. IB_DEST_PASSWORD_FILE), mode 0600
#   IB_JOB              build (default) | export
#   IB_RESULT_URI       s3://bucket/key the result goes to: {"exported":[{"Name":"IB_DIGEST","Value":…}]}
#                       (exports: IB_SHA256, IB_SIZE and IB_AMI_ID), read back by the job-result step
# The scripts' own variables (IB_CONTEXT_*, IB_PUSH_REF, IB_ARTIFACT_*, IB_BIB_*…) pass through.
# Exit status: the script's; on failure its `IB_ERROR:` line is the last of the log, as on CodeBuild.
set -euo pipefail

[[ $# -eq 3 ]] || {
  echo "IB_ERROR: eks-job.sh needs the URLs of build-image.sh, export-image.sh and common.sh"
  exit 2
}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ib-job.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BIN="$WORK/bin" # the scripts side by side: each sources common.sh from its own directory
mkdir -p "$BIN" "$WORK/secrets"
chmod 0700 "$WORK/secrets"
aws s3 cp --only-show-errors "$1" "$BIN/build-image.sh"
aws s3 cp --only-show-errors "$2" "$BIN/export-image.sh"
aws s3 cp --only-show-errors "$3" "$BIN/common.sh"

RESULT_URI=${IB_RESULT_URI:?IB_RESULT_URI is required}
[[ "$RESULT_URI" == s3://?*/?* ]] || {
  echo "IB_ERROR: IB_RESULT_URI is not an s3:// URL: '$RESULT_URI'"
  exit 2
}
unset IB_RESULT_URI

# Secrets: fetched with the pod's role into files; the variable holding the ARN goes away.
while IFS= read -r var; do
  [[ "$var" =~ ^IB_[A-Z0-9_]+_SECRET_ARN$ ]] || continue
  name=${var%_SECRET_ARN}
  file="$WORK/secrets/$name"
  (
    umask 077
    value=$(aws secretsmanager get-secret-value --secret-id "${!var}" --query SecretString --output text)
    printf '%s' "$value" >"$file"
  ) || {
    echo "IB_ERROR: could not read the secret of $name with the builder's role"
    exit 3
  }
  export "${name}_FILE=$file"
  unset "$var"
done < <(compgen -e)

write_result() { # NAME=VALUE… (values already checked against strict patterns: no JSON escaping needed)
  local json='{"exported":[' sep='' pair
  for pair in "$@"; do
    json+="$sep{\"Name\":\"${pair%%=*}\",\"Value\":\"${pair#*=}\"}"
    sep=','
  done
  json+=']}'
  printf '%s' "$json" | aws s3 cp --only-show-errors --content-type application/json - "$RESULT_URI"
}

if [[ "${IB_JOB:-build}" == export ]]; then
  dir=/tmp/ib-export # functions/commons/domain/export-run.ts EXPORT_WORKDIR
  mkdir -p "$dir/out"
  # Inputs are data: written with printf '%s', never evaluated.
  printf '%s' "$IB_BIB_CONFIG" >"$dir/config.toml"
  printf '%s' "$IB_BIB_ARGS" >"$dir/bib-args.json"
  IB_EXPORTER=bib IB_BIB_ARGS_FILE="$dir/bib-args.json" IB_OUTPUT_FILE="$dir/disk" \
    bash "$BIN/export-image.sh" | tee "$dir/exporter.log"
  aws s3 cp --only-show-errors "$dir/disk" "s3://$IB_ARTIFACT_BUCKET/$IB_ARTIFACT_KEY" \
    --content-type "$IB_ARTIFACT_CONTENT_TYPE"
  sha=$(sed -n 's/^IB_SHA256: //p' "$dir/exporter.log" | tail -n 1)
  size=$(sed -n 's/^IB_SIZE: //p' "$dir/exporter.log" | tail -n 1)
  ami=$(sed -n 's/^IB_AMI_ID: //p' "$dir/exporter.log" | tail -n 1)
  [[ "$sha" =~ ^[0-9a-f]{64}$ && "$size" =~ ^[0-9]+$ ]] || {
    echo "IB_ERROR: the exporter reported no checksum or size"
    exit 4
  }
  results=("IB_SHA256=$sha" "IB_SIZE=$size")
  if [[ -n "$ami" ]]; then
    [[ "$ami" =~ ^ami-[0-9a-f]+$ ]] || {
      echo "IB_ERROR: the exporter reported an invalid AMI id"
      exit 4
    }
    results+=("IB_AMI_ID=$ami")
  fi
  write_result "${results[@]}"
else
  ctx="$WORK/ctx"
  mkdir -p "$ctx"
  # The context is one tar archive under the run's prefix (functions/commons/domain/tar.ts).
  aws s3 cp --only-show-errors "s3://$IB_CONTEXT_BUCKET/${IB_CONTEXT_PREFIX}context.tar" - | tar -x -C "$ctx"
  # CA bundles are named relative to the context.
  for side in SOURCE DEST; do
    ca_var="IB_${side}_CA_FILE"
    if [[ -n "${!ca_var:-}" && "${!ca_var}" != /* ]]; then export "$ca_var=$ctx/${!ca_var}"; fi
  done
  IB_CONTEXT_DIR="$ctx" IB_DIGEST_FILE="$WORK/digest" bash "$BIN/build-image.sh"
  digest=$(tr -d '[:space:]' <"$WORK/digest")
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || {
    echo "IB_ERROR: the builder reported no digest"
    exit 4
  }
  write_result "IB_DIGEST=$digest"
fi
