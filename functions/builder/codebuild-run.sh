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

# The buildspec is read once, by one jq, into records (a run's fixed cost is a few ms, not a jq per
# command): V name value (env.variables), E name (exported-variables), P phase on-failure, C phase
# list command (list: commands | finally), all NUL-separated, after a first record "0.2" (the version).
cb_records=()
while IFS= read -r -d '' cb_field; do cb_records+=("$cb_field"); done < <(jq -j '
  if (.version == 0.2 or .version == "0.2") | not then error("version") else . end
  | "0.2\u0000",
    ((.env.variables // {}) | to_entries[] | "V\u0000\(.key)\u0000\(.value | tostring)\u0000"),
    ((.env."exported-variables" // [])[] | "E\u0000\(.)\u0000"),
    ((.phases // {}) | to_entries[] | select(.value != null) | .key as $p | .value
      | "P\u0000\($p)\u0000\(."on-failure" // "ABORT")\u0000",
        (("commands", "finally") as $k | (.[$k] // [])[] | "C\u0000\($p)\u0000\($k)\u0000\(.)\u0000"))
' "$SPEC" 2>/dev/null)
if [[ "${cb_records[0]:-}" != 0.2 ]]; then
  echo "IB_ERROR: the buildspec is not version 0.2"
  exit 2
fi

# CodeBuild's log line: UTC time to the millisecond, from bash's own clock (no date process per line).
cb_log() {
  local t=${EPOCHREALTIME//[.,]/}
  TZ=UTC printf '[Container] %(%Y/%m/%d %H:%M:%S)T.%s %s\n' "${t:0:${#t}-6}" "${t:${#t}-6:3}" "$*"
}

declare -a cb_exported=() cb_cmd_phase=() cb_cmd_list=() cb_cmd_text=()
declare -A cb_on_failure=()
cb_i=1
while ((cb_i < ${#cb_records[@]})); do
  case ${cb_records[cb_i]} in
    V)
      cb_name=${cb_records[cb_i + 1]} cb_value=${cb_records[cb_i + 2]}
      ((cb_i += 3))
      # env.variables: defaults under the run's own values.
      [[ "$cb_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
      [[ -n "${!cb_name+set}" ]] || export "$cb_name=$cb_value"
      ;;
    E) cb_exported+=("${cb_records[cb_i + 1]}") && ((cb_i += 2)) ;;
    P) cb_on_failure[${cb_records[cb_i + 1]}]=${cb_records[cb_i + 2]} && ((cb_i += 3)) ;;
    C)
      cb_cmd_phase+=("${cb_records[cb_i + 1]}")
      cb_cmd_list+=("${cb_records[cb_i + 2]}")
      cb_cmd_text+=("${cb_records[cb_i + 3]}")
      ((cb_i += 4))
      ;;
    *) echo "IB_ERROR: unreadable buildspec record" && exit 2 ;;
  esac
done
unset cb_records cb_i cb_name cb_value cb_field

cb_failed=0
cb_write_exported() {
  local name
  : >"$EXPORTED"
  for name in "${cb_exported[@]}"; do
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ && -n "${!name+set}" ]] || continue
    printf '%s=%s\n' "$name" "$(printf '%s' "${!name}" | base64 -w 0)" >>"$EXPORTED"
  done
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

# cb_run_list PHASE LIST: runs the commands of .phases[PHASE][LIST]; returns 1 at the first failure.
cb_run_list() {
  local cb_j cb_cmd cb_rc
  for cb_j in "${!cb_cmd_text[@]}"; do
    [[ "${cb_cmd_phase[cb_j]}" == "$1" && "${cb_cmd_list[cb_j]}" == "$2" ]] || continue
    cb_cmd=${cb_cmd_text[cb_j]}
    cb_log "Running command $cb_cmd"
    eval "$cb_cmd"
    cb_rc=$?
    if ((cb_rc != 0)); then
      cb_log "Command did not exit successfully ${cb_cmd%%$'\n'*} exit status $cb_rc"
      return 1
    fi
  done
  return 0
}

cd "${CODEBUILD_SRC_DIR:-$PWD}" || exit 1
for cb_phase in install pre_build build post_build; do
  [[ -n "${cb_on_failure[$cb_phase]+set}" ]] || continue
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
  [[ "${cb_on_failure[$cb_phase]}" == CONTINUE ]] && continue
  # ABORT: install and pre_build failures end the build; a build failure still runs post_build.
  [[ "$cb_phase" == build ]] || break
  if [[ -n "${cb_on_failure[post_build]+set}" ]]; then
    cb_log "Entering phase POST_BUILD"
    cb_run_list post_build commands
    cb_run_list post_build finally
  fi
  break
done
cb_finish
