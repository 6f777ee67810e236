#!/usr/bin/env bash
# sandbox-init.sh — first process of a local sandbox (functions/local/sandbox.ts), inside the builder
# image, mounted read-only. It is started before its run is known and first waits for the run on the
# FIFO NET_DIR/go: the run's environment, NUL-separated NAME=value records (values are data: exported,
# never evaluated). The sandbox has no network of its own (podman --network none): for each endpoint
# the run may reach (its registries, the object store's presigned URLs) it listens on the address the
# run's references name and relays to a Unix socket that the host side connects to that one endpoint.
# Then it runs the command (ib-codebuild-run with the buildspec).
#
#   sandbox-init.sh NET_DIR COMMAND…
# NET_DIR/endpoints lines: <listen IPv4 address> <port> <socket path>; NET_DIR/hosts: /etc/hosts lines.
set -euo pipefail
net=$1
shift
ip link set lo up 2>/dev/null || true
exec 3<"$net/go" # blocks until the host binds a run
while IFS= read -r -d '' record <&3; do
  name=${record%%=*}
  [[ "$record" == *=* && "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
  export "$record"
done
exec 3<&-
unset record name
[[ -s "$net/hosts" ]] && cat "$net/hosts" >>/etc/hosts
endpoints=$net/endpoints
while read -r address port socket; do
  [[ -n "$address" ]] || continue
  case "$address" in
    127.*) ;;
    *) ip addr add "$address/32" dev lo ;; # an IP-literal registry: the address exists only here
  esac
  socat "TCP-LISTEN:$port,bind=$address,fork,reuseaddr" "UNIX-CONNECT:$socket" &
done <"$endpoints"
# The listeners are up before the command starts.
for _ in $(seq 1 100); do
  missing=0
  while read -r address port _socket; do
    [[ -n "$address" ]] || continue
    (exec 3<>"/dev/tcp/$address/$port") 2>/dev/null || missing=1
  done <"$endpoints"
  ((missing)) || break
  sleep 0.02
done
exec "$@"
