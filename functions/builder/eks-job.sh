#!/usr/bin/env bash
# eks-job.sh (ib-eks-job) — the entrypoint of a builder pod of the EKS runner: the same buildspec as
# CodeBuild (baked into the image as JSON, run by ib-codebuild-run with CodeBuild's semantics), plus
# what CodeBuild does around it there: secret references resolved, exported variables returned.
#
# Environment: the run's variables (functions/commons/domain/build-plan.ts, export-run.ts `job.env`):
#   <NAME>_SECRET_ARN   a secret's ARN (never its value: the Job spec holds no secret); resolved here with
#                       the pod's role into <NAME>_FILE (e.g. IB_DEST_PASSWORD_FILE), mode 0600
#   IB_RESULT_URL       presigned PUT of the result object: {"exported":[{"Name":"IB_DIGEST","Value":…}]}
#                       (exports: IB_SHA256, IB_SIZE and IB_AMI_ID), read back by the job-result step
#   IB_BUILDSPEC        optional: another buildspec JSON file (tests); default the image's
# Exit status: the build's; on failure its `IB_ERROR:` line is the last of the log, as on CodeBuild.
set -euo pipefail

RESULT_URL=${IB_RESULT_URL:?IB_RESULT_URL is required}
unset IB_RESULT_URL
[[ "$RESULT_URL" == http://* || "$RESULT_URL" == https://* ]] || {
  echo "IB_ERROR: IB_RESULT_URL is not a presigned http(s) URL"
  exit 2
}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ib-job.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/secrets"
chmod 0700 "$WORK/secrets"

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

export CODEBUILD_SRC_DIR="$WORK/src"
mkdir -p "$CODEBUILD_SRC_DIR"
status=0
ib-codebuild-run "${IB_BUILDSPEC:-/usr/local/lib/imagebuilder/buildspec.json}" "$WORK/exported.env" || status=$?
((status == 0)) || exit "$status"

# The exported variables as the job-result step reads them (values were checked against strict
# patterns by the scripts; they are JSON-escaped here all the same).
json=$(while IFS='=' read -r name value; do
  [[ -n "$name" ]] || continue
  value=$(printf '%s' "$value" | base64 -d)
  [[ -n "$value" ]] || continue
  jq -cn --arg n "$name" --arg v "$value" '{Name: $n, Value: $v}'
done <"$WORK/exported.env" | jq -cs '{exported: .}')
printf '%s' "$json" | curl -fsS --retry 3 -X PUT -H 'Content-Type: application/json' --data-binary @- "$RESULT_URL" -o /dev/null
