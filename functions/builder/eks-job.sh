#!/usr/bin/env bash
# eks-job.sh (ib-eks-job) — the entrypoint of a builder pod of the EKS runner: the same buildspec as
# CodeBuild (baked into the image as JSON, run by ib-codebuild-run with CodeBuild's semantics), plus
# what CodeBuild does around it there: exported variables returned. The pod's role reads nothing: the
# run's registry passwords come through its presigned IB_CREDENTIALS_URL, as on CodeBuild (buildspec).
#
# Environment: the run's variables (functions/commons/domain/build-plan.ts, export-run.ts `job.env`):
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
