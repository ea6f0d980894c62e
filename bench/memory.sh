#!/usr/bin/env bash
# bench/memory.sh: the router's peak resident memory (VmHWM) after streaming
# a 1 GiB upload (with Content-Length and chunked) and a 1 GiB download
# through it. Bodies are generated and discarded on the fly. Target: < 64 MiB.
#
# Environment: SIZE=bytes per transfer (default 1073741824), LIMIT=bytes
# (default 67108864), KEEP=1 keeps the work directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE=${SIZE:-1073741824}
LIMIT=${LIMIT:-67108864}
KEEP=${KEEP:-0}

BENCH_NAME=memory
command -v curl >/dev/null 2>&1 || { echo "memory: curl is required" >&2; exit 1; }
command -v ss >/dev/null 2>&1 || { echo "memory: ss (iproute2) is required" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

mkdir -p bin
go build -o bin/sandbox-router ./cmd/sandbox-router
go build -o bin/bench-origin ./bench/origin
go build -o bin/bench-memory ./bench/memory

ORIGIN_PORT=$(free_port)
ROUTER_PORT=$(free_port)
ADMIN_PORT=$(free_port)
bin/bench-origin --listen "127.0.0.1:$ORIGIN_PORT" >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/routes.yaml" <<EOR
sandboxes:
  - name: bench
    namespace: default
    podIP: 127.0.0.1
EOR
bin/sandbox-router --routes "$WORK/routes.yaml" --allow-loopback-pod-ip \
	--listen-http "127.0.0.1:$ROUTER_PORT" --listen-admin "127.0.0.1:$ADMIN_PORT" \
	--access-log "$WORK/router-access.log" --log-level warn \
	--drain-delay 0s --drain-timeout 2s >"$WORK/router.log" 2>&1 &
ROUTER_PID=$!
PIDS+=("$ROUTER_PID")
wait_get "http://127.0.0.1:$ORIGIN_PORT/healthz"
wait_get "http://127.0.0.1:$ADMIN_PORT/readyz"
wait_get "http://127.0.0.1:$ROUTER_PORT/healthz" -H "X-Sandbox-ID: bench" -H "X-Sandbox-Port: $ORIGIN_PORT"

bin/bench-memory --url "http://127.0.0.1:$ROUTER_PORT" --origin-port "$ORIGIN_PORT" \
	--pid "$ROUTER_PID" --size "$SIZE" --limit "$LIMIT"
