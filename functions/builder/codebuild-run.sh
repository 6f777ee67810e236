#!/usr/bin/env bash
# codebuild-run.sh (ib-codebuild-run) — runs a buildspec the way CodeBuild does, where CodeBuild is not:
# in the local sandbox (functions/local/local-codebuild.ts) and in a builder pod of the EKS runner
# (eks-job.sh). In CodeBuild itself, CodeBuild runs the same buildspec.
#
#   ib-codebuild-run BUILDSPEC_JSON EXPORTED_FILE
#
# BUILDSPEC_JSON is functions/builder/buildspec.yml as JSON (the callers convert it; the image has jq,
# not a YAML parser). Semantics, after CodeBuild's buildspec reference (version 0.2):
# - env.variables are defaults: a variable already in the environment (the run's overrides) wins.
#   env.secrets-manager / env.parameter-store must already be resolved into the environment by the
#   caller (it holds the credentials; this script does not).
# - Phases run in order: install, pre_build, build, post_build. All commands run in one shell instance
#   (variables and the working directory carry over), starting in CODEBUILD_SRC_DIR.
# - A command that exits non-zero fails its phase: the phase's remaining commands are skipped, its
#   `finally` commands still run. A failed install or pre_build ends the build; a failed build still
#   runs post_build. `on-failure: CONTINUE` goes on to the next phase anyway (the build stays failed).
# - At the end, env.exported-variables are written to EXPORTED_FILE as NAME=<base64 of the value> lines,
#   and the exit status is 0 when every phase succeeded, 1 otherwise.
# A TERM (cancel, timeout) stops the running command's processes and ends the build failed.
set -u

SPEC=${1:?usage: ib-codebuild-run BUILDSPEC_JSON EXPORTED_FILE}
EXPORTED=${2:?usage: ib-codebuild-run BUILDSPEC_JSON EXPORTED_FILE}
[[ -r "$SPEC" ]] || {
  echo "IB_ERROR: no buildspec at $SPEC"
  exit 2
}
jq -e '.version == 0.2 or .version == "0.2"' "$SPEC" >/dev/null || {
  echo "IB_ERROR: the buildspec is not version 0.2"
  exit 2
}

cb_log() { printf '[Container] %s %s\n' "$(date -u '+%Y/%m/%d %H:%M:%S.%3N')" "$*"; }

# env.variables: defaults under the run's own values.
while IFS= read -r -d '' cb_name && IFS= read -r -d '' cb_value; do
  [[ "$cb_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
  [[ -n "${!cb_name+set}" ]] || export "$cb_name=$cb_value"
done < <(jq -j '(.env.variables // {}) | to_entries[] | "\(.key)\u0000\(.value | tostring)\u0000"' "$SPEC")

cb_failed=0
cb_write_exported() {
  local name
  : >"$EXPORTED"
  while IFS= read -r name; do
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ && -n "${!name+set}" ]] || continue
    printf '%s=%s\n' "$name" "$(printf '%s' "${!name}" | base64 -w 0)" >>"$EXPORTED"
  done < <(jq -r '(.env."exported-variables" // [])[]' "$SPEC")
}
cb_finish() {
  trap - EXIT TERM INT
  cb_write_exported
  if ((cb_failed)); then cb_log "Phase complete: build State: FAILED"; else cb_log "Build succeeded"; fi
  exit "$cb_failed"
}
# A command that exits the shell itself still ends the build as a failure with its variables written.
trap 'cb_failed=1; cb_finish' EXIT
cb_on_term() {
  trap '' TERM INT
  cb_log "build stopped"
  kill -TERM 0 2>/dev/null
  cb_failed=1
  cb_finish
}
trap cb_on_term TERM INT

# cb_run_list PHASE KEY: runs the commands of .phases[PHASE][KEY]; returns 1 at the first failure.
cb_run_list() {
  local cb_cmd cb_rc
  while IFS= read -r -d '' cb_cmd; do
    cb_log "Running command $cb_cmd"
    eval "$cb_cmd"
    cb_rc=$?
    if ((cb_rc != 0)); then
      cb_log "Command did not exit successfully ${cb_cmd%%$'\n'*} exit status $cb_rc"
      return 1
    fi
  done < <(jq -j --arg p "$1" --arg k "$2" '(.phases[$p][$k] // [])[] | "\(.)\u0000"' "$SPEC")
  return 0
}

cd "${CODEBUILD_SRC_DIR:-$PWD}" || exit 1
for cb_phase in install pre_build build post_build; do
  jq -e --arg p "$cb_phase" '.phases[$p] != null' "$SPEC" >/dev/null || continue
  cb_log "Entering phase ${cb_phase^^}"
  cb_phase_ok=1
  cb_run_list "$cb_phase" commands || cb_phase_ok=0
  cb_run_list "$cb_phase" finally || cb_phase_ok=0
  if ((cb_phase_ok)); then
    cb_log "Phase complete: ${cb_phase^^} State: SUCCEEDED"
    continue
  fi
  cb_failed=1
  cb_log "Phase complete: ${cb_phase^^} State: FAILED"
  [[ "$(jq -r --arg p "$cb_phase" '.phases[$p]."on-failure" // "ABORT"' "$SPEC")" == CONTINUE ]] && continue
  # ABORT: install and pre_build failures end the build; a build failure still runs post_build.
  [[ "$cb_phase" == build ]] || break
  if jq -e '.phases.post_build != null' "$SPEC" >/dev/null; then
    cb_log "Entering phase POST_BUILD"
    cb_run_list post_build commands
    cb_run_list post_build finally
  fi
  break
done
cb_finish
