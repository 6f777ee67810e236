#!/usr/bin/env bash
# build-image.sh — the one builder script of serverless-imagebuilder.
#
# Run unchanged by the CodeBuild buildspec / EKS Job (cloud) and by the local runner (this machine).
# It builds a Containerfile with buildah and pushes the image, or assembles a multi-arch manifest list.
# Inputs are environment variables only; every value is treated as data (quoted, never evaluated).
#
# Mode
#   IB_MODE                 build (default) | manifest
#
# IB_MODE=build
#   IB_CONTEXT_DIR          directory holding `Containerfile` and the files it COPYs (required)
#   IB_ARCH                 x86_64 | aarch64 (also amd64 | arm64) → --platform linux/amd64 | linux/arm64
#                           (default: this machine's architecture)
#   IB_PUSH_REF             registry/name:tag to push the image to (required)
#   IB_DIGEST_FILE          file to write the pushed manifest digest (`sha256:…`, no newline) to (required)
#   IB_CACHE_REPO           optional registry repository (registry/name, no tag) holding the layer cache:
#                           `--layers --cache-from/--cache-to` it (buildah ≥ 1.27); same credentials and
#                           TLS settings as the destination. Without it, --layers still caches in local storage.
#   IB_ISOLATION            buildah isolation for RUN steps: chroot (default) | oci | rootless
#   IB_STORAGE_DRIVER       optional containers-storage driver (e.g. overlay, vfs)
#   The built image stays in local storage tagged IB_PUSH_REF (that is the local layer cache); the pushed
#   image is the exact image id this run built, even if another run moves the tag meanwhile.
#
# IB_MODE=manifest
#   IB_MANIFEST_SOURCES     space-separated image refs, one per architecture, preferably by digest
#                           (registry/name@sha256:…); each image's os/arch comes from its config (required)
#   IB_PUSH_REF             registry/name:tag of the manifest list (required)
#   IB_DIGEST_FILE          file to write the pushed list's digest to (required)
#   The sources are read with the destination's credentials and TLS settings.
#
# Registries — X is SOURCE (the FROM image's registry) or DEST (IB_PUSH_REF's registry)
#   IB_X_REGISTRY           host[:port]; IB_DEST_REGISTRY defaults to IB_PUSH_REF's registry part
#   IB_X_USERNAME           login user; without it no login is done (anonymous pull/push)
#   IB_X_PASSWORD           password or token …
#   IB_X_PASSWORD_FILE      … or a file holding it (one of the two is required with a username).
#                           The password goes to `buildah login --password-stdin`: never on a command line,
#                           never in the log; it is unset from the environment before any child runs.
#   IB_X_TLS_VERIFY         true (default) | false (plain-http registries, or skipServerVerification)
#   IB_X_CA_FILE            PEM file of a custom CA to trust for this registry (put in a per-run --cert-dir);
#                           a relative path is taken in IB_CONTEXT_DIR (the build context carries them)
#   Logins go to a per-run REGISTRY_AUTH_FILE in a temporary directory removed on exit, so nothing leaks
#   between runs; registries with TLS verification off are marked `insecure` in a per-run
#   registries.conf (CONTAINERS_REGISTRIES_CONF) so that FROM pulls and the cache honour it too.
#
# Other
#   IB_HEARTBEAT_SECONDS    period of the `[heartbeat] <ISO-8601 UTC time>` lines on stdout, the first at once (default 30)
#
# Output: everything (buildah's stdout and stderr included) goes to stdout. On success the last lines
# are `IB_DIGEST: sha256:…` and `IB_IMAGE: <IB_PUSH_REF>@sha256:…`. On failure the last line is
# `IB_ERROR: <message a user can act on>` and the exit code tells the phase:
#    2 bad input            10 source registry login failed   11 destination registry login failed
#   20 build failed         30 push failed                    40 manifest list failed
#  143 terminated (TERM/INT: children are stopped, temporary files removed)   1 internal error
#
# Process handling: every child stays in the script's process group, so `kill -- -PGID` stops all of
# it; a TERM/INT sent to the script alone also stops its children (TERM, then KILL after 5 s).

set -euo pipefail
umask 077
exec 2>&1

readonly EXIT_BAD_INPUT=2 EXIT_SOURCE_LOGIN=10 EXIT_DEST_LOGIN=11 EXIT_BUILD=20 EXIT_PUSH=30 EXIT_MANIFEST=40
readonly EXIT_TERMINATED=143

WORK=""
HEARTBEAT_PID=""
CHILD_PID=""
ERROR_REPORTED=0
PHASE="starting"
MANIFEST_LIST=""
BUILDAH=(buildah)

log() { printf '[builder] %s\n' "$*"; }

IB_SCRIPT_ROLE=builder
# shellcheck source=functions/builder/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

cleanup() {
  stop_heartbeat
  if [[ -n "$MANIFEST_LIST" ]]; then
    "${BUILDAH[@]}" manifest rm "$MANIFEST_LIST" >/dev/null 2>&1 || true
    MANIFEST_LIST=""
  fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    rm -rf -- "$WORK"
    WORK=""
  fi
}

trap on_exit EXIT
trap on_signal TERM INT

# explain LABEL HOST LOGFILE: a registry error turned into advice.
explain_registry_error() {
  local label=$1 host=$2 logfile=$3 detail
  detail=$(error_line "$logfile")
  if grep -qiE 'unauthorized|authentication required|invalid username|incorrect username|status 401|401 unauthorized|denied' "$logfile"; then
    printf '%s registry %s rejected the credentials: check the username and password (or token) of its repository (%s)' "$label" "$host" "$detail"
  elif grep -qiE 'server gave HTTP response to HTTPS client' "$logfile"; then
    printf '%s registry %s speaks plain http: turn TLS verification off for it (%s)' "$label" "$host" "$detail"
  elif grep -qiE 'x509|certificate|tls:' "$logfile"; then
    printf '%s registry %s has a TLS certificate that is not trusted: give its CA certificate, or skip server verification (%s)' "$label" "$host" "$detail"
  elif grep -qiE 'connection refused|no such host|i/o timeout|network is unreachable|no route to host|dial tcp|timeout' "$logfile"; then
    printf '%s registry %s cannot be reached: check its address and that it is up (%s)' "$label" "$host" "$detail"
  else
    printf '%s registry %s: %s' "$label" "$host" "$detail"
  fi
}

# ---------------------------------------------------------------------------------------------------
# Input validation

readonly REF_RE='^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$'
readonly HOST_RE='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$'

bad_input() { fail "$EXIT_BAD_INPUT" "bad input: $*"; }

check_ref() {
  local name=$1 value=$2
  [[ -n "$value" ]] || bad_input "$name is required"
  ((${#value} <= 512)) || bad_input "$name is longer than 512 characters"
  [[ "$value" =~ $REF_RE ]] || bad_input "$name is not an image reference: '$value'"
}

check_bool() {
  local name=$1 value=$2
  [[ "$value" == true || "$value" == false ]] || bad_input "$name must be true or false, not '$value'"
}

PHASE="checking the input"
MODE=${IB_MODE:-build}
[[ "$MODE" == build || "$MODE" == manifest ]] || bad_input "IB_MODE must be build or manifest, not '$MODE'"

HEARTBEAT_SECONDS=${IB_HEARTBEAT_SECONDS:-30}
[[ "$HEARTBEAT_SECONDS" =~ ^[1-9][0-9]{0,4}$ ]] || bad_input "IB_HEARTBEAT_SECONDS must be a whole number of seconds ≥ 1, not '$HEARTBEAT_SECONDS'"

PUSH_REF=${IB_PUSH_REF:-}
check_ref IB_PUSH_REF "$PUSH_REF"
DIGEST_FILE=${IB_DIGEST_FILE:-}
[[ -n "$DIGEST_FILE" ]] || bad_input "IB_DIGEST_FILE is required"
[[ -d "$(dirname -- "$DIGEST_FILE")" ]] || bad_input "the directory of IB_DIGEST_FILE does not exist: '$DIGEST_FILE'"

if [[ -n "${IB_STORAGE_DRIVER:-}" ]]; then
  [[ "$IB_STORAGE_DRIVER" =~ ^[a-z0-9]+$ ]] || bad_input "IB_STORAGE_DRIVER is not a storage driver name: '$IB_STORAGE_DRIVER'"
  BUILDAH+=(--storage-driver "$IB_STORAGE_DRIVER")
fi

if [[ "$MODE" == build ]]; then
  CONTEXT_DIR=${IB_CONTEXT_DIR:-}
  [[ -n "$CONTEXT_DIR" ]] || bad_input "IB_CONTEXT_DIR is required"
  [[ -d "$CONTEXT_DIR" ]] || bad_input "IB_CONTEXT_DIR is not a directory: '$CONTEXT_DIR'"
  [[ -f "$CONTEXT_DIR/Containerfile" ]] || bad_input "IB_CONTEXT_DIR has no Containerfile: '$CONTEXT_DIR'"
  ARCH=${IB_ARCH:-$(uname -m)}
  case "$ARCH" in
    x86_64 | amd64) PLATFORM=linux/amd64 ;;
    aarch64 | arm64) PLATFORM=linux/arm64 ;;
    *) bad_input "IB_ARCH must be x86_64 or aarch64, not '$ARCH'" ;;
  esac
  ISOLATION=${IB_ISOLATION:-chroot}
  case "$ISOLATION" in
    chroot | oci | rootless) ;;
    *) bad_input "IB_ISOLATION must be chroot, oci or rootless, not '$ISOLATION'" ;;
  esac
  CACHE_REPO=${IB_CACHE_REPO:-}
  if [[ -n "$CACHE_REPO" ]]; then
    check_ref IB_CACHE_REPO "$CACHE_REPO"
    [[ "$CACHE_REPO" != *@* ]] || bad_input "IB_CACHE_REPO must be a repository without tag or digest: '$CACHE_REPO'"
  fi
else
  read -r -a MANIFEST_SOURCES <<<"${IB_MANIFEST_SOURCES:-}"
  ((${#MANIFEST_SOURCES[@]})) || bad_input "IB_MANIFEST_SOURCES is required (space-separated image refs)"
  for source_ref in "${MANIFEST_SOURCES[@]}"; do check_ref "an entry of IB_MANIFEST_SOURCES" "$source_ref"; done
fi

# registry settings: REG_HOST_X, REG_USER_X, REG_PASS_X, REG_TLS_X, REG_CA_X for X in SOURCE DEST
declare -A REG_HOST REG_USER REG_PASS REG_TLS REG_CA
for x in SOURCE DEST; do
  host_var="IB_${x}_REGISTRY" user_var="IB_${x}_USERNAME" pass_var="IB_${x}_PASSWORD"
  file_var="IB_${x}_PASSWORD_FILE" tls_var="IB_${x}_TLS_VERIFY" ca_var="IB_${x}_CA_FILE"
  host=${!host_var:-}
  if [[ -z "$host" && "$x" == DEST ]]; then
    first=${PUSH_REF%%/*}
    if [[ "$PUSH_REF" == */* && ("$first" == *.* || "$first" == *:* || "$first" == localhost) ]]; then
      host=$first
    fi
  fi
  if [[ -n "$host" ]]; then
    [[ "$host" =~ $HOST_RE ]] || bad_input "$host_var is not a host[:port]: '$host'"
  fi
  user=${!user_var:-}
  pass=${!pass_var:-}
  pass_file=${!file_var:-}
  if [[ -n "$pass_file" ]]; then
    [[ -z "$pass" ]] || bad_input "give $pass_var or $file_var, not both"
    [[ -r "$pass_file" && -f "$pass_file" ]] || bad_input "$file_var is not a readable file: '$pass_file'"
    pass=$(<"$pass_file")
  fi
  unset "$pass_var"
  if [[ -n "$user" ]]; then
    [[ -n "$host" ]] || bad_input "$user_var is set but $host_var is not"
    [[ "$user" != *$'\n'* ]] || bad_input "$user_var must be a single line"
    [[ -n "$pass" ]] || bad_input "$user_var is set but neither $pass_var nor $file_var gives a password"
  fi
  tls=${!tls_var:-true}
  check_bool "$tls_var" "$tls"
  ca=${!ca_var:-}
  # The plan names the CA bundles the context carries by their path in it.
  if [[ -n "$ca" && "$ca" != /* && -n "${IB_CONTEXT_DIR:-}" ]]; then ca="$IB_CONTEXT_DIR/$ca"; fi
  if [[ -n "$ca" ]]; then
    [[ -r "$ca" && -f "$ca" ]] || bad_input "$ca_var is not a readable file: '$ca'"
    grep -q 'BEGIN CERTIFICATE' "$ca" || bad_input "$ca_var holds no PEM certificate: '$ca'"
    [[ -n "$host" ]] || bad_input "$ca_var is set but $host_var is not"
  fi
  REG_HOST[$x]=$host
  REG_USER[$x]=$user
  REG_PASS[$x]=$pass
  REG_TLS[$x]=$tls
  REG_CA[$x]=$ca
done
unset pass user host pass_file

# ---------------------------------------------------------------------------------------------------
# Per-run configuration: auth file, certificates, registries.conf

PHASE="preparing"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ib-build.XXXXXXXX")
export REGISTRY_AUTH_FILE="$WORK/auth.json"
printf '{"auths":{}}\n' >"$REGISTRY_AUTH_FILE"
COMMON=(--authfile "$REGISTRY_AUTH_FILE")

if [[ -n "${REG_CA[SOURCE]}" || -n "${REG_CA[DEST]}" ]]; then
  mkdir -p "$WORK/certs"
  [[ -z "${REG_CA[SOURCE]}" ]] || cp -- "${REG_CA[SOURCE]}" "$WORK/certs/source-ca.crt"
  [[ -z "${REG_CA[DEST]}" ]] || cp -- "${REG_CA[DEST]}" "$WORK/certs/dest-ca.crt"
  COMMON+=(--cert-dir "$WORK/certs")
fi

# registries.conf for this run: the system's (if any) plus `insecure` entries for TLS-less registries.
REGISTRIES_CONF="$WORK/registries.conf"
if [[ -n "${CONTAINERS_REGISTRIES_CONF:-}" && -f "${CONTAINERS_REGISTRIES_CONF}" ]]; then
  cp -- "$CONTAINERS_REGISTRIES_CONF" "$REGISTRIES_CONF"
elif [[ -f /etc/containers/registries.conf ]]; then
  cp -- /etc/containers/registries.conf "$REGISTRIES_CONF"
else
  : >"$REGISTRIES_CONF"
fi
declare -A INSECURE_DONE=()
for x in SOURCE DEST; do
  host=${REG_HOST[$x]}
  if [[ -n "$host" && "${REG_TLS[$x]}" == false && -z "${INSECURE_DONE[$host]:-}" ]]; then
    printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$host" >>"$REGISTRIES_CONF"
    INSECURE_DONE[$host]=1
  fi
done
export CONTAINERS_REGISTRIES_CONF="$REGISTRIES_CONF"

tls_flag() { printf -- '--tls-verify=%s' "${REG_TLS[$1]}"; }

start_heartbeat "$HEARTBEAT_SECONDS"

# ---------------------------------------------------------------------------------------------------
# Logins

login() {
  local x=$1 code=$2 label=$3 host=${REG_HOST[$1]} pass=${REG_PASS[$1]}
  [[ -n "${REG_USER[$x]}" ]] || return 0
  PHASE="logging in to the $label registry $host"
  log "logging in to the $label registry $host as ${REG_USER[$x]}"
  if ! run_step "$WORK/login.log" "${BUILDAH[@]}" login "${COMMON[@]}" "$(tls_flag "$x")" \
    --username "${REG_USER[$x]}" --password-stdin "$host" <<<"$pass"; then
    fail "$code" "login failed: $(explain_registry_error "$label" "$host" "$WORK/login.log")"
  fi
}

login SOURCE "$EXIT_SOURCE_LOGIN" source
if [[ -n "${REG_USER[DEST]}" && "${REG_HOST[DEST]}" == "${REG_HOST[SOURCE]}" && "${REG_USER[DEST]}" != "${REG_USER[SOURCE]}" ]]; then
  log "source and destination are the same registry with different users: the destination login wins"
fi
login DEST "$EXIT_DEST_LOGIN" destination
REG_PASS=([SOURCE]="" [DEST]="")

# ---------------------------------------------------------------------------------------------------
# Build and push

DIGEST=""
write_digest() {
  DIGEST=$(tr -d '[:space:]' <"$WORK/digest" 2>/dev/null || true)
  [[ "$DIGEST" =~ ^sha256:[0-9a-f]{64}$ ]] || return 1
  printf '%s' "$DIGEST" >"$DIGEST_FILE"
}

dest_label() { printf '%s' "${REG_HOST[DEST]:-${PUSH_REF%%/*}}"; }

if [[ "$MODE" == build ]]; then
  PHASE="building"
  bud=("${BUILDAH[@]}" bud "${COMMON[@]}" --isolation "$ISOLATION" --platform "$PLATFORM" --layers --force-rm
    --iidfile "$WORK/iid" -t "$PUSH_REF" -f "$CONTEXT_DIR/Containerfile")
  if [[ -n "$CACHE_REPO" ]]; then
    bud+=(--cache-from "$CACHE_REPO" --cache-to "$CACHE_REPO")
    log "building $PLATFORM image for $PUSH_REF (layer cache: local storage and $CACHE_REPO)"
  else
    log "building $PLATFORM image for $PUSH_REF (layer cache: local storage)"
  fi
  started=$SECONDS
  if ! run_step "$WORK/build.log" "${bud[@]}" "$CONTEXT_DIR" </dev/null; then
    if grep -qE 'creating build container|pinging container registry|initializing source docker' "$WORK/build.log"; then
      fail "$EXIT_BUILD" "build failed: cannot pull the source image: $(explain_registry_error source "${REG_HOST[SOURCE]:-of the FROM image}" "$WORK/build.log")"
    fi
    fail "$EXIT_BUILD" "build failed: $(error_line "$WORK/build.log")"
  fi
  image_id=$(tr -d '[:space:]' <"$WORK/iid")
  image_id=${image_id#sha256:}
  [[ "$image_id" =~ ^[0-9a-f]{64}$ ]] || fail "$EXIT_BUILD" "build failed: buildah reported no image id"
  log "built image ${image_id:0:12} in $((SECONDS - started)) s"

  PHASE="pushing"
  started=$SECONDS
  log "pushing $PUSH_REF"
  if ! run_step "$WORK/push.log" "${BUILDAH[@]}" push "${COMMON[@]}" "$(tls_flag DEST)" \
    --digestfile "$WORK/digest" "$image_id" "docker://$PUSH_REF" </dev/null; then
    fail "$EXIT_PUSH" "push of $PUSH_REF failed: $(explain_registry_error destination "$(dest_label)" "$WORK/push.log")"
  fi
  write_digest || fail "$EXIT_PUSH" "push of $PUSH_REF failed: buildah reported no digest"
  log "pushed in $((SECONDS - started)) s"
else
  PHASE="assembling the manifest list"
  MANIFEST_LIST="localhost/ib-manifest-$(basename -- "$WORK" | tr -cd '[:alnum:]' | tr '[:upper:]' '[:lower:]')-$$"
  log "creating manifest list $PUSH_REF from ${#MANIFEST_SOURCES[@]} image(s)"
  if ! run_step "$WORK/manifest.log" "${BUILDAH[@]}" manifest create "$MANIFEST_LIST" </dev/null; then
    MANIFEST_LIST=""
    fail "$EXIT_MANIFEST" "manifest list failed: $(error_line "$WORK/manifest.log")"
  fi
  for source_ref in "${MANIFEST_SOURCES[@]}"; do
    if ! run_step "$WORK/manifest.log" "${BUILDAH[@]}" manifest add "${COMMON[@]}" "$(tls_flag DEST)" \
      "$MANIFEST_LIST" "docker://$source_ref" </dev/null; then
      fail "$EXIT_MANIFEST" "manifest list failed: cannot add $source_ref: $(explain_registry_error destination "$(dest_label)" "$WORK/manifest.log")"
    fi
  done
  PHASE="pushing the manifest list"
  if ! run_step "$WORK/manifest.log" "${BUILDAH[@]}" manifest push "${COMMON[@]}" "$(tls_flag DEST)" --all \
    --digestfile "$WORK/digest" "$MANIFEST_LIST" "docker://$PUSH_REF" </dev/null; then
    fail "$EXIT_MANIFEST" "manifest list push to $PUSH_REF failed: $(explain_registry_error destination "$(dest_label)" "$WORK/manifest.log")"
  fi
  write_digest || fail "$EXIT_MANIFEST" "manifest list push to $PUSH_REF failed: buildah reported no digest"
fi

PHASE="finishing"
stop_heartbeat
printf 'IB_DIGEST: %s\n' "$DIGEST"
printf 'IB_IMAGE: %s@%s\n' "${PUSH_REF%@*}" "$DIGEST"
