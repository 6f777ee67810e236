# common.sh — what build-image.sh and export-image.sh share: heartbeat, process-group handling on
# TERM/INT, the `IB_ERROR:` failure line, running a step with its output kept. Sourced, not run.
# The including script sets IB_SCRIPT_ROLE (builder|exporter), PHASE, EXIT_TERMINATED, WORK,
# HEARTBEAT_PID, CHILD_PID, ERROR_REPORTED and defines log() and cleanup(), then calls
# `trap on_exit EXIT; trap on_signal TERM INT`.
# shellcheck shell=bash disable=SC2034

stop_heartbeat() {
  if [[ -n "$HEARTBEAT_PID" ]]; then
    kill -TERM "$HEARTBEAT_PID" 2>/dev/null || true
    wait "$HEARTBEAT_PID" 2>/dev/null || true
    HEARTBEAT_PID=""
  fi
}

start_heartbeat() {
  local period=$1
  # One beat at once (the run is alive from its first second: the watchdog and the cloud's lastSeen see it
  # before the first period ends, and short runs show one too), then one per period.
  (
    trap 'kill -TERM "$sleeper" 2>/dev/null; exit 0' TERM
    printf '[heartbeat] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    while :; do
      sleep "$period" &
      sleeper=$!
      wait "$sleeper" || true
      printf '[heartbeat] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
  ) &
  HEARTBEAT_PID=$!
}

# Descendants of this shell (children first-level first), from `ps`; empty if ps is missing.
descendants() {
  command -v ps >/dev/null 2>&1 || return 0
  local table pids=("$$") found=() pid ppid changed=1
  table=$(ps -e -o pid=,ppid= 2>/dev/null) || return 0
  while ((changed)); do
    changed=0
    while read -r pid ppid; do
      [[ " ${pids[*]} " == *" $ppid "* && " ${pids[*]} " != *" $pid "* ]] || continue
      pids+=("$pid")
      found+=("$pid")
      changed=1
    done <<<"$table"
  done
  printf '%s\n' "${found[@]}"
}

# True while any of the pids runs (zombies, dead but not yet reaped, do not count).
alive_any() {
  local pid list
  if command -v ps >/dev/null 2>&1; then
    list=$(IFS=,; printf '%s' "$*")
    ps -o stat= -p "$list" 2>/dev/null | grep -qv '^Z'
    return
  fi
  for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}

stop_children() {
  local pids=() pid i
  while read -r pid; do [[ -n "$pid" ]] && pids+=("$pid"); done < <(descendants)
  [[ -n "$CHILD_PID" ]] && pids+=("$CHILD_PID")
  [[ -n "$HEARTBEAT_PID" ]] && pids+=("$HEARTBEAT_PID")
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive_any "${pids[@]}" || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  HEARTBEAT_PID=""
  CHILD_PID=""
}

# fail CODE MESSAGE…: the last line of output is `IB_ERROR: MESSAGE`.
fail() {
  local code=$1
  shift
  stop_heartbeat
  ERROR_REPORTED=1
  printf 'IB_ERROR: %s\n' "$*"
  exit "$code"
}

on_exit() {
  local rc=$?
  trap - EXIT
  cleanup
  if ((rc != 0 && ERROR_REPORTED == 0)); then
    printf "IB_ERROR: internal error in the %s script while %s (exit %s)\n" "$IB_SCRIPT_ROLE" "$PHASE" "$rc"
  fi
  exit "$rc"
}

on_signal() {
  trap - TERM INT
  trap '' TERM INT
  log "terminated while ${PHASE}: stopping"
  stop_children
  ERROR_REPORTED=1
  cleanup
  printf 'IB_ERROR: %s\n' "canceled: the ${IB_SCRIPT_ROLE} was terminated while ${PHASE}"
  trap - EXIT
  exit "$EXIT_TERMINATED"
}

# run_step LOGFILE CMD…: runs CMD in the background (so a TERM/INT trap fires at once, not after CMD),
# shows its output live and keeps a copy in LOGFILE; returns CMD's exit status. Stdin is passed on.
run_step() {
  local logfile=$1 rc=0
  shift
  : >"$logfile"
  ("$@" 2>&1 | tee -a "$logfile") 0<&0 &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

# The most telling error line of a buildah log (its last `Error:`/`error` line), trimmed.
error_line() {
  local line
  line=$(grep -iE '(^|[^a-z])error' "$1" | tail -n 1 || true)
  [[ -n "$line" ]] || line=$(grep -v '^\[heartbeat\]' "$1" | grep -v '^[[:space:]]*$' | tail -n 1 || true)
  line=${line#Error: }
  line=${line#error: }
  printf '%s' "${line:0:400}"
}
