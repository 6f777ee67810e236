#!/usr/bin/env bash
# export-image.sh — the one exporter script of serverless-imagebuilder.
#
# Turns a built bootc image into a disk image file. Run unchanged by the CodeBuild buildspec / EKS Job
# (cloud: bootc-image-builder through podman) and by the local runner (this machine: the local exporter).
# Inputs are environment variables only; every value is treated as data (quoted, never evaluated).
#
# Common
#   IB_IMAGE_REF            the built image, by digest: registry/name@sha256:<64 hex> (required). A manifest
#                           list is resolved to IB_ARCH's image.
#   IB_ARCH                 x86_64 | aarch64 (also amd64 | arm64) (default: this machine's architecture)
#   IB_FORMAT               qcow2 | vmdk | iso | qcow2-disk-container | raw | vhd | ami | gce | anaconda-iso
#                           (required). qcow2-disk-container yields the qcow2; packaging it as a KubeVirt
#                           containerdisk is the push step's job.
#   IB_OUTPUT_FILE          where to write the disk image (required; its directory must exist). Written to a
#                           temporary name beside it and renamed when complete, so it is whole or absent.
#   IB_EXPORTER             bib (default) | local
#   IB_HEARTBEAT_SECONDS    period of the `[heartbeat] <ISO-8601 UTC time>` lines on stdout, the first at once (default 30)
#
# Source registry (the registry of IB_IMAGE_REF), same conventions as build-image.sh
#   IB_SOURCE_REGISTRY      host[:port]; defaults to IB_IMAGE_REF's registry part
#   IB_SOURCE_USERNAME      login user; without it no login is done (anonymous pull)
#   IB_SOURCE_PASSWORD      password or token …
#   IB_SOURCE_PASSWORD_FILE … or a file holding it (one of the two is required with a username). It goes to
#                           `login --password-stdin` only: never on a command line, never in the log; it is
#                           unset from the environment before any child runs.
#   IB_SOURCE_TLS_VERIFY    true (default) | false (plain-http registries, or skipServerVerification)
#   IB_SOURCE_CA_FILE       PEM file of a custom CA to trust for this registry (put in a per-run cert dir)
#   The login goes to a per-run auth file in a temporary directory removed on exit.
#
# IB_EXPORTER=bib (cloud; needs podman and jq or python3)
#   IB_BIB_ARGS_FILE        JSON array of strings: the argv of the bootc-image-builder run, as
#                           bibArguments() of functions/commons/domain/export-plan.ts makes it (`podman`,
#                           `run`, …, `--type <bib type of IB_FORMAT>`, …, IB_IMAGE_REF last, the output
#                           directory mounted with `-v <dir>:/output`) (required)
#   The image is pulled into the host's container storage (podman pull), bib runs, and its file
#   (`<dir>/<bib output path of IB_FORMAT>`) is moved to IB_OUTPUT_FILE. For ami, bib also uploads and
#   registers the AMI; its id, when bib prints it, is reported as `IB_AMI_ID: ami-…`.
#
# IB_EXPORTER=local (no bootc-image-builder: it cannot run here)
#   A partitioned disk of the image's root filesystem, not a bootc-image-builder image: the image is
#   copied with skopeo and its layers unpacked in order (whiteouts honoured, no mounts, symlinks never
#   followed out of the tree), then a GPT disk with one Linux root partition (type of IB_ARCH) at 1 MiB
#   holding an ext4 made with `mkfs.ext4 -d` (size: root filesystem × 1.3 + 64 MiB); raw as is, qcow2 /
#   qcow2-disk-container / vmdk / vhd (qemu-img `vpc`) converted with qemu-img. Other formats exit 50.
#   Needs skopeo, GNU tar, sfdisk, mkfs.ext4, qemu-img (except raw). Temporary files go in TMPDIR.
#
# Output: everything goes to stdout. On success the last lines are `IB_SHA256: <hex>` and
# `IB_SIZE: <bytes>` of IB_OUTPUT_FILE. On failure the last line is `IB_ERROR: <message a user can act on>`
# and the exit code tells the phase:
#    2 bad input            10 registry login or pull failed      50 format unsupported by the local exporter
#   60 conversion failed (bootc-image-builder, unpacking, partitioning, mkfs, qemu-img)
#  143 terminated (TERM/INT: children are stopped, temporary files removed)   1 internal error
#
# Process handling: every child stays in the script's process group, so `kill -- -PGID` stops all of
# it; a TERM/INT sent to the script alone also stops its children (TERM, then KILL after 5 s).

set -euo pipefail
umask 077
exec 2>&1

readonly EXIT_BAD_INPUT=2 EXIT_PULL=10 EXIT_UNSUPPORTED=50 EXIT_CONVERT=60 EXIT_TERMINATED=143

WORK=""
PARTIAL=""
HEARTBEAT_PID=""
CHILD_PID=""
ERROR_REPORTED=0
PHASE="starting"

log() { printf '[exporter] %s\n' "$*"; }

IB_SCRIPT_ROLE=exporter
# shellcheck source=functions/builder/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

cleanup() {
  stop_heartbeat
  if [[ -n "$PARTIAL" ]]; then
    rm -f -- "$PARTIAL"
    PARTIAL=""
  fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    rm -rf -- "$WORK"
    WORK=""
  fi
}

trap on_exit EXIT
trap on_signal TERM INT

# quiet_step LOGFILE CMD…: like run_step, but the output only goes to LOGFILE (for chatty commands).
quiet_step() {
  local logfile=$1 rc=0
  shift
  ("$@" >"$logfile" 2>&1) 0<&0 &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

# explain HOST LOGFILE: a registry error turned into advice.
explain_registry_error() {
  local host=$1 logfile=$2 detail
  detail=$(error_line "$logfile")
  if grep -qiE 'unauthorized|authentication required|invalid username|incorrect username|status 401|401 unauthorized|denied' "$logfile"; then
    printf 'source registry %s rejected the credentials: check the username and password (or token) of its repository (%s)' "$host" "$detail"
  elif grep -qiE 'manifest unknown|not found|name unknown|status 404' "$logfile"; then
    printf 'source registry %s does not have the image: was it deleted after the build? (%s)' "$host" "$detail"
  elif grep -qiE 'server gave HTTP response to HTTPS client' "$logfile"; then
    printf 'source registry %s speaks plain http: turn TLS verification off for it (%s)' "$host" "$detail"
  elif grep -qiE 'x509|certificate|tls:' "$logfile"; then
    printf 'source registry %s has a TLS certificate that is not trusted: give its CA certificate, or skip server verification (%s)' "$host" "$detail"
  elif grep -qiE 'connection refused|no such host|i/o timeout|network is unreachable|no route to host|dial tcp|timeout' "$logfile"; then
    printf 'source registry %s cannot be reached: check its address and that it is up (%s)' "$host" "$detail"
  else
    printf 'source registry %s: %s' "$host" "$detail"
  fi
}

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || fail "$EXIT_BAD_INPUT" "bad input: the ${EXPORTER} exporter needs '$tool', which is not installed"
  done
}

# ---------------------------------------------------------------------------------------------------
# Input validation

readonly IMAGE_REF_RE='^[A-Za-z0-9][A-Za-z0-9._-]*(:[0-9]{1,5})?(/[a-z0-9][a-z0-9._-]*)+@sha256:[0-9a-f]{64}$'
readonly HOST_RE='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$'

bad_input() { fail "$EXIT_BAD_INPUT" "bad input: $*"; }

PHASE="checking the input"
EXPORTER=${IB_EXPORTER:-bib}
case "$EXPORTER" in
  bib) ;;
  local) log "local exporter: a partitioned disk of the image's root filesystem, not a bootc-image-builder image" ;;
  *) bad_input "IB_EXPORTER must be bib or local, not '$EXPORTER'" ;;
esac

HEARTBEAT_SECONDS=${IB_HEARTBEAT_SECONDS:-30}
[[ "$HEARTBEAT_SECONDS" =~ ^[1-9][0-9]{0,4}$ ]] || bad_input "IB_HEARTBEAT_SECONDS must be a whole number of seconds ≥ 1, not '$HEARTBEAT_SECONDS'"

FORMAT=${IB_FORMAT:-}
# bib's --type and where bib writes the file (relative to its output directory), per format; the same
# table as artifactFor() in functions/commons/domain/export-plan.ts.
case "$FORMAT" in
  qcow2 | qcow2-disk-container) BIB_TYPE=qcow2 BIB_OUTPUT=qcow2/disk.qcow2 ;;
  vmdk) BIB_TYPE=vmdk BIB_OUTPUT=vmdk/disk.vmdk ;;
  raw) BIB_TYPE=raw BIB_OUTPUT=image/disk.raw ;;
  vhd) BIB_TYPE=vpc BIB_OUTPUT=vpc/disk.vhd ;;
  iso) BIB_TYPE=iso BIB_OUTPUT=bootiso/install.iso ;;
  anaconda-iso) BIB_TYPE=anaconda-iso BIB_OUTPUT=bootiso/install.iso ;;
  gce) BIB_TYPE=gce BIB_OUTPUT=gce/image.tar.gz ;;
  ami) BIB_TYPE=ami BIB_OUTPUT=image/disk.raw ;;
  "") bad_input "IB_FORMAT is required" ;;
  *) bad_input "IB_FORMAT must be one of qcow2, vmdk, iso, qcow2-disk-container, raw, vhd, ami, gce, anaconda-iso, not '$FORMAT'" ;;
esac

if [[ "$EXPORTER" == local ]]; then
  case "$FORMAT" in
    qcow2 | qcow2-disk-container | vmdk | vhd | raw) ;;
    *) fail "$EXIT_UNSUPPORTED" "format $FORMAT needs bootc-image-builder, which the local exporter cannot run; use qcow2, vmdk, vhd or raw locally" ;;
  esac
fi

IMAGE_REF=${IB_IMAGE_REF:-}
[[ -n "$IMAGE_REF" ]] || bad_input "IB_IMAGE_REF is required"
((${#IMAGE_REF} <= 512)) || bad_input "IB_IMAGE_REF is longer than 512 characters"
[[ "$IMAGE_REF" =~ $IMAGE_REF_RE ]] || bad_input "IB_IMAGE_REF must be registry/name@sha256:<64 hex>, not '$IMAGE_REF'"

ARCH=${IB_ARCH:-$(uname -m)}
case "$ARCH" in
  x86_64 | amd64) GOARCH=amd64 ROOT_PART_TYPE=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 ;;
  aarch64 | arm64) GOARCH=arm64 ROOT_PART_TYPE=B921B045-1DF0-41C3-AF44-4C6F280D3FAE ;;
  *) bad_input "IB_ARCH must be x86_64 or aarch64, not '$ARCH'" ;;
esac

OUTPUT_FILE=${IB_OUTPUT_FILE:-}
[[ -n "$OUTPUT_FILE" ]] || bad_input "IB_OUTPUT_FILE is required"
OUTPUT_DIR=$(dirname -- "$OUTPUT_FILE")
[[ -d "$OUTPUT_DIR" ]] || bad_input "the directory of IB_OUTPUT_FILE does not exist: '$OUTPUT_FILE'"
[[ ! -d "$OUTPUT_FILE" ]] || bad_input "IB_OUTPUT_FILE is a directory: '$OUTPUT_FILE'"

# source registry: REG_HOST, REG_USER, REG_PASS, REG_TLS, REG_CA
REG_HOST=${IB_SOURCE_REGISTRY:-${IMAGE_REF%%/*}}
[[ "$REG_HOST" =~ $HOST_RE ]] || bad_input "IB_SOURCE_REGISTRY is not a host[:port]: '$REG_HOST'"
REG_USER=${IB_SOURCE_USERNAME:-}
REG_PASS=${IB_SOURCE_PASSWORD:-}
pass_file=${IB_SOURCE_PASSWORD_FILE:-}
if [[ -n "$pass_file" ]]; then
  [[ -z "$REG_PASS" ]] || bad_input "give IB_SOURCE_PASSWORD or IB_SOURCE_PASSWORD_FILE, not both"
  [[ -r "$pass_file" && -f "$pass_file" ]] || bad_input "IB_SOURCE_PASSWORD_FILE is not a readable file: '$pass_file'"
  REG_PASS=$(<"$pass_file")
fi
unset IB_SOURCE_PASSWORD pass_file
if [[ -n "$REG_USER" ]]; then
  [[ "$REG_USER" != *$'\n'* ]] || bad_input "IB_SOURCE_USERNAME must be a single line"
  [[ -n "$REG_PASS" ]] || bad_input "IB_SOURCE_USERNAME is set but neither IB_SOURCE_PASSWORD nor IB_SOURCE_PASSWORD_FILE gives a password"
fi
REG_TLS=${IB_SOURCE_TLS_VERIFY:-true}
[[ "$REG_TLS" == true || "$REG_TLS" == false ]] || bad_input "IB_SOURCE_TLS_VERIFY must be true or false, not '$REG_TLS'"
REG_CA=${IB_SOURCE_CA_FILE:-}
if [[ -n "$REG_CA" ]]; then
  [[ -r "$REG_CA" && -f "$REG_CA" ]] || bad_input "IB_SOURCE_CA_FILE is not a readable file: '$REG_CA'"
  grep -q 'BEGIN CERTIFICATE' "$REG_CA" || bad_input "IB_SOURCE_CA_FILE holds no PEM certificate: '$REG_CA'"
fi

BIB_ARGS=()
if [[ "$EXPORTER" == bib ]]; then
  need podman
  ARGS_FILE=${IB_BIB_ARGS_FILE:-}
  [[ -n "$ARGS_FILE" ]] || bad_input "IB_BIB_ARGS_FILE is required with IB_EXPORTER=bib"
  [[ -r "$ARGS_FILE" && -f "$ARGS_FILE" ]] || bad_input "IB_BIB_ARGS_FILE is not a readable file: '$ARGS_FILE'"
  # a JSON array of strings without NUL, read NUL-separated (no word splitting, no evaluation)
  if command -v jq >/dev/null 2>&1; then
    jq -e 'type == "array" and length > 2 and all(.[]; type == "string" and (explode | any(. == 0) | not))' \
      "$ARGS_FILE" >/dev/null 2>&1 || bad_input "IB_BIB_ARGS_FILE is not a JSON array of strings: '$ARGS_FILE'"
    mapfile -d '' -t BIB_ARGS < <(jq -j '.[] | ., "\u0000"' "$ARGS_FILE")
  elif command -v python3 >/dev/null 2>&1; then
    mapfile -d '' -t BIB_ARGS < <(python3 -c '
import json, sys
a = json.load(open(sys.argv[1], encoding="utf-8"))
assert isinstance(a, list) and len(a) > 2 and all(isinstance(s, str) and "\0" not in s for s in a)
sys.stdout.write("".join(s + "\0" for s in a))' "$ARGS_FILE" 2>/dev/null) || true
    ((${#BIB_ARGS[@]} > 2)) || bad_input "IB_BIB_ARGS_FILE is not a JSON array of strings: '$ARGS_FILE'"
  else
    need jq
  fi
  [[ "${BIB_ARGS[0]}" == podman && "${BIB_ARGS[1]}" == run ]] || bad_input "IB_BIB_ARGS_FILE must hold a 'podman run …' command line"
  [[ "${BIB_ARGS[-1]}" == "$IMAGE_REF" ]] || bad_input "IB_BIB_ARGS_FILE converts '${BIB_ARGS[-1]}', not IB_IMAGE_REF"
  BIB_OUT_DIR="" bib_type=""
  for ((i = 2; i < ${#BIB_ARGS[@]} - 1; i++)); do
    case "${BIB_ARGS[i]}" in
      -v | --volume) [[ "${BIB_ARGS[i + 1]}" == *:/output ]] && BIB_OUT_DIR=${BIB_ARGS[i + 1]%:/output} ;;
      --type) bib_type=${BIB_ARGS[i + 1]} ;;
    esac
  done
  [[ "$bib_type" == "$BIB_TYPE" ]] || bad_input "IB_BIB_ARGS_FILE asks for --type '$bib_type', but format $FORMAT is bib type $BIB_TYPE"
  [[ "$BIB_OUT_DIR" == /* ]] || bad_input "IB_BIB_ARGS_FILE mounts no absolute output directory at /output"
else
  need skopeo tar sfdisk mkfs.ext4 sha256sum
  [[ "$FORMAT" == raw ]] || need qemu-img
fi

# ---------------------------------------------------------------------------------------------------
# Per-run files: work directory, auth file, certificates, the partial output

PHASE="preparing"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ib-export.XXXXXXXX")
WORK=$(cd -- "$WORK" && pwd -P)
export REGISTRY_AUTH_FILE="$WORK/auth.json"
printf '{"auths":{}}\n' >"$REGISTRY_AUTH_FILE"
CERT_ARGS=()
if [[ -n "$REG_CA" ]]; then
  mkdir -p "$WORK/certs"
  cp -- "$REG_CA" "$WORK/certs/source-ca.crt"
  CERT_ARGS=(--cert-dir "$WORK/certs")
fi
PARTIAL=$(mktemp "$OUTPUT_DIR/.$(basename -- "$OUTPUT_FILE").partial.XXXXXXXX")

start_heartbeat "$HEARTBEAT_SECONDS"

# ---------------------------------------------------------------------------------------------------
# Login and pull

TOOL=podman
[[ "$EXPORTER" == bib ]] || TOOL=skopeo
if [[ -n "$REG_USER" ]]; then
  PHASE="logging in to the source registry $REG_HOST"
  log "logging in to the source registry $REG_HOST as $REG_USER"
  if ! run_step "$WORK/login.log" "$TOOL" login --authfile "$REGISTRY_AUTH_FILE" "${CERT_ARGS[@]}" \
    "--tls-verify=$REG_TLS" --username "$REG_USER" --password-stdin "$REG_HOST" <<<"$REG_PASS"; then
    fail "$EXIT_PULL" "login failed: $(explain_registry_error "$REG_HOST" "$WORK/login.log")"
  fi
fi
REG_PASS=""

PHASE="pulling the image"
started=$SECONDS
log "pulling $IMAGE_REF (linux/$GOARCH)"
if [[ "$EXPORTER" == bib ]]; then
  if ! run_step "$WORK/pull.log" podman pull --authfile "$REGISTRY_AUTH_FILE" "${CERT_ARGS[@]}" \
    "--tls-verify=$REG_TLS" --arch "$GOARCH" --os linux "$IMAGE_REF" </dev/null; then
    fail "$EXIT_PULL" "pull of $IMAGE_REF failed: $(explain_registry_error "$REG_HOST" "$WORK/pull.log")"
  fi
else
  src_cert=()
  [[ -z "$REG_CA" ]] || src_cert=(--src-cert-dir "$WORK/certs")
  if ! run_step "$WORK/pull.log" skopeo --override-arch "$GOARCH" --override-os linux copy --quiet \
    --authfile "$REGISTRY_AUTH_FILE" "${src_cert[@]}" "--src-tls-verify=$REG_TLS" \
    "docker://$IMAGE_REF" "dir:$WORK/image" </dev/null; then
    fail "$EXIT_PULL" "pull of $IMAGE_REF failed: $(explain_registry_error "$REG_HOST" "$WORK/pull.log")"
  fi
fi
log "pulled in $((SECONDS - started)) s"

# finish FILE: FILE becomes IB_OUTPUT_FILE; prints the checksum and size lines (the last output).
finish() {
  local file=$1 sum size
  PHASE="computing the checksum"
  if [[ "$file" != "$PARTIAL" ]]; then
    quiet_step "$WORK/mv.log" mv -f -- "$file" "$PARTIAL" </dev/null ||
      fail "$EXIT_CONVERT" "conversion failed: cannot move the disk image to $OUTPUT_DIR: $(error_line "$WORK/mv.log")"
  fi
  quiet_step "$WORK/sha.log" sha256sum -- "$PARTIAL" </dev/null || fail "$EXIT_CONVERT" "conversion failed: sha256sum: $(error_line "$WORK/sha.log")"
  sum=$(head -c 64 "$WORK/sha.log")
  [[ "$sum" =~ ^[0-9a-f]{64}$ ]] || fail "$EXIT_CONVERT" "conversion failed: sha256sum printed no checksum"
  size=$(stat -c %s -- "$PARTIAL")
  chmod 0644 -- "$PARTIAL"
  mv -f -- "$PARTIAL" "$OUTPUT_FILE"
  PARTIAL=""
  PHASE="finishing"
  stop_heartbeat
  log "wrote $OUTPUT_FILE ($size bytes)"
  [[ -z "${AMI_ID:-}" ]] || printf 'IB_AMI_ID: %s\n' "$AMI_ID"
  printf 'IB_SHA256: %s\n' "$sum"
  printf 'IB_SIZE: %s\n' "$size"
}

# ---------------------------------------------------------------------------------------------------
# bootc-image-builder

if [[ "$EXPORTER" == bib ]]; then
  PHASE="running bootc-image-builder"
  mkdir -p -- "$BIB_OUT_DIR"
  rm -f -- "$BIB_OUT_DIR/$BIB_OUTPUT"
  started=$SECONDS
  log "running bootc-image-builder --type $BIB_TYPE"
  if ! run_step "$WORK/bib.log" "${BIB_ARGS[@]}" </dev/null; then
    fail "$EXIT_CONVERT" "conversion failed: bootc-image-builder: $(error_line "$WORK/bib.log")"
  fi
  log "bootc-image-builder done in $((SECONDS - started)) s"
  AMI_ID=""
  if [[ "$FORMAT" == ami ]]; then
    AMI_ID=$(grep -oE 'ami-[0-9a-f]{8,17}' "$WORK/bib.log" | tail -n 1 || true)
  fi
  [[ -f "$BIB_OUT_DIR/$BIB_OUTPUT" ]] || fail "$EXIT_CONVERT" "conversion failed: bootc-image-builder wrote no $BIB_OUTPUT"
  finish "$BIB_OUT_DIR/$BIB_OUTPUT"
  exit 0
fi

# ---------------------------------------------------------------------------------------------------
# Local exporter: unpack the layers into a root filesystem

PHASE="unpacking the image"
started=$SECONDS
quiet_step "$WORK/inspect.log" skopeo inspect --format '{{.Architecture}}' "dir:$WORK/image" </dev/null ||
  fail "$EXIT_PULL" "pull of $IMAGE_REF failed: cannot read the copied image: $(error_line "$WORK/inspect.log")"
image_arch=$(head -n 1 "$WORK/inspect.log")
[[ "$image_arch" == "$GOARCH" ]] || bad_input "IB_IMAGE_REF is a linux/$image_arch image, not linux/$GOARCH (IB_ARCH $ARCH)"
quiet_step "$WORK/layers.log" skopeo inspect --format '{{range .Layers}}{{println .}}{{end}}' "dir:$WORK/image" </dev/null ||
  fail "$EXIT_PULL" "pull of $IMAGE_REF failed: cannot read the copied image: $(error_line "$WORK/layers.log")"
mapfile -t LAYERS < <(grep -v '^[[:space:]]*$' "$WORK/layers.log")

ROOTFS="$WORK/rootfs"
mkdir -m 0755 "$ROOTFS"

# Symlinks pointing out of their directory (absolute, or with `..`) are taken out after each layer and
# put back at the end: the next layer's tar would otherwise write through them, outside ROOTFS. (Within
# one archive GNU tar protects itself the same way.) Path (relative to ROOTFS) → target.
declare -A DEFERRED=()

forget_deferred() { # PATH: forgets deferred links at PATH and under it ("" = all)
  local key
  for key in "${!DEFERRED[@]}"; do
    [[ -z "$1" || "$key" == "$1" || "$key" == "$1"/* ]] && unset 'DEFERRED[$key]'
  done
  return 0
}

defer_links() {
  local link
  while IFS= read -r -d '' link; do
    DEFERRED[${link#"$ROOTFS"/}]=$(readlink -- "$link")
    rm -f -- "$link"
  done < <(find "$ROOTFS" -type l \( -lname '/*' -o -lname '..' -o -lname '../*' -o -lname '*/..' \
    -o -lname '*/../*' \) -print0)
}

# Whiteouts of a layer remove what the layers below it hold: `.wh.NAME` removes NAME, `.wh..wh..opq`
# empties its directory. Paths never hold `..` and only cross symlinks that stay inside ROOTFS.
apply_whiteouts() {
  local layer=$1 member name dir rel
  while IFS= read -r member; do
    member=${member#./}
    member=${member#/}
    name=${member##*/}
    dir=""
    [[ "$member" != */* ]] || dir=${member%/*}
    [[ "/$member/" != */../* ]] || continue
    if [[ "$name" == .wh..wh..opq ]]; then
      if [[ -d "$ROOTFS/$dir" && ! -L "$ROOTFS/$dir" ]]; then
        find "$ROOTFS/$dir" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
      fi
      forget_deferred "$dir"
    else
      rel=${dir:+$dir/}${name#.wh.}
      [[ -n "${name#.wh.}" ]] || continue
      rm -rf -- "${ROOTFS:?}/$rel"
      forget_deferred "$rel"
    fi
  done < <(grep -E '(^|/)\.wh\.[^/]+$' "$WORK/members" || true)
}

unpack_layer() { # LAYER_FILE: in a subshell with umask 022, so that implied directories are 0755
  (umask 022 && tar -xf "$1" -C "$ROOTFS" --numeric-owner --same-owner --same-permissions \
    --xattrs --xattrs-include='security.capability' --exclude='.wh.*')
}

n=0
for digest in "${LAYERS[@]}"; do
  n=$((n + 1))
  hex=${digest#sha256:}
  layer="$WORK/image/$hex"
  [[ "$hex" =~ ^[0-9a-f]{64}$ && -f "$layer" ]] || fail "$EXIT_PULL" "pull of $IMAGE_REF failed: layer $digest is missing"
  quiet_step "$WORK/members" tar --quoting-style=literal -tf "$layer" </dev/null ||
    fail "$EXIT_CONVERT" "conversion failed: layer $n ($digest) is not a readable tar: $(error_line "$WORK/members")"
  apply_whiteouts "$layer"
  quiet_step "$WORK/unpack.log" unpack_layer "$layer" </dev/null ||
    fail "$EXIT_CONVERT" "conversion failed: cannot unpack layer $n ($digest): $(error_line "$WORK/unpack.log")"
  defer_links
done
restored=0
for rel in "${!DEFERRED[@]}"; do
  parent=$(dirname -- "$ROOTFS/$rel")
  # only into a real directory of the tree (no symlink on the way), and only where nothing else came
  [[ -e "$ROOTFS/$rel" || -L "$ROOTFS/$rel" ]] && continue
  [[ -d "$parent" && "$(cd -- "$parent" && pwd -P)" == "$parent" ]] || continue
  ln -s -- "${DEFERRED[$rel]}" "$ROOTFS/$rel"
  restored=$((restored + 1))
done
unset DEFERRED
chown 0:0 "$ROOTFS" && chmod 0755 "$ROOTFS"
rm -rf -- "$WORK/image"
log "unpacked ${#LAYERS[@]} layer(s) in $((SECONDS - started)) s ($restored out-of-directory symlink(s) put back)"

# ---------------------------------------------------------------------------------------------------
# Local exporter: GPT disk with one ext4 root partition, no mounts

PHASE="making the disk image"
started=$SECONDS
rootfs_kib=$(du -sk -- "$ROOTFS" | cut -f1)
inodes=$(find "$ROOTFS" -xdev | wc -l)
# × 1.3 + 64 MiB, rounded up to whole MiB; enough inodes for every file with room to grow
fs_mib=$(((rootfs_kib * 13 / 10 + 65536 + 1023) / 1024))
inodes=$((inodes + inodes / 5 + 4096))
readonly PART_START_SECTORS=2048 # 1 MiB
disk="$WORK/disk.raw"
truncate -s "$((fs_mib + 2))M" "$disk" # 1 MiB before the partition, 1 MiB for the backup GPT after it
printf 'label: gpt\nstart=%d, size=%d, type=%s, name="root"\n' \
  "$PART_START_SECTORS" "$((fs_mib * 2048))" "$ROOT_PART_TYPE" >"$WORK/layout"
quiet_step "$WORK/sfdisk.log" sfdisk --no-reread --no-tell-kernel --quiet "$disk" <"$WORK/layout" ||
  fail "$EXIT_CONVERT" "conversion failed: sfdisk: $(error_line "$WORK/sfdisk.log")"
log "root filesystem: ${rootfs_kib} KiB; ext4 of ${fs_mib} MiB with ${inodes} inodes at 1 MiB of a GPT disk"
quiet_step "$WORK/mkfs.log" mkfs.ext4 -q -F -L root -N "$inodes" \
  -E "offset=$((PART_START_SECTORS * 512)),nodiscard,root_owner=0:0" \
  -d "$ROOTFS" "$disk" "$((fs_mib * 1024))k" </dev/null ||
  fail "$EXIT_CONVERT" "conversion failed: mkfs.ext4: $(error_line "$WORK/mkfs.log")"
rm -rf -- "$ROOTFS"
log "made the raw disk in $((SECONDS - started)) s"

case "$FORMAT" in
  raw)
    finish "$disk"
    exit 0
    ;;
  qcow2 | qcow2-disk-container) qemu_args=(-O qcow2) ;;
  vmdk) qemu_args=(-O vmdk) ;;
  vhd) qemu_args=(-O vpc -o force_size=on) ;;
esac
PHASE="converting to $FORMAT"
started=$SECONDS
quiet_step "$WORK/convert.log" qemu-img convert -f raw "${qemu_args[@]}" "$disk" "$PARTIAL" </dev/null ||
  fail "$EXIT_CONVERT" "conversion failed: qemu-img: $(error_line "$WORK/convert.log")"
rm -f -- "$disk"
log "converted to $FORMAT in $((SECONDS - started)) s"
finish "$PARTIAL"
