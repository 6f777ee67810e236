#!/usr/bin/env bash
# storage-setup.sh (ib-storage-setup) — containers-storage for this job, before any build or export.
# Overlay cannot stack on an overlayfs root (CodeBuild's container root is one): then the storage goes
# on the build volume (the parent of CODEBUILD_SRC_DIR) when that is not overlayfs too, else uses vfs
# (slower, always works). bootc-image-builder reads the host's /var/lib/containers/storage, so a graph
# root elsewhere is bind-mounted there.
set -euo pipefail
graph=/var/lib/containers/storage
driver=overlay
mkdir -p "$graph" /etc/containers
if [[ "$(stat -f -c %T "$graph")" == overlayfs ]]; then
  volume=$(dirname "${CODEBUILD_SRC_DIR:-/codebuild/output/src}")
  mkdir -p "$volume"
  if [[ "$(stat -f -c %T "$volume")" != overlayfs ]]; then
    mkdir -p "$volume/containers-storage"
    mount --bind "$volume/containers-storage" "$graph"
  else
    driver=vfs
  fi
fi
printf '[storage]\ndriver = "%s"\ngraphroot = "%s"\nrunroot = "/run/containers/storage"\n' "$driver" "$graph" \
  >/etc/containers/storage.conf
echo "[builder] containers-storage: $driver at $graph"
