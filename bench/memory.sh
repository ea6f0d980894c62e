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

die() { printf 'memory: %s\n' "$*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || die "curl is required"
command -v ss >/dev/null 2>&1 || die "ss (iproute2) is required"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sandbox-router-memory.XXXXXX")
PIDS=()
cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$KEEP" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

USED=" "
# Ports for the servers: below the kernel's ephemeral range when it leaves
# room (the default 32768-60999 does), else anywhere above 1024.
read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPH_LO=32768
if [ "$EPH_LO" -gt 12000 ]; then PORT_LO=10000 PORT_HI=$EPH_LO; else PORT_LO=1025 PORT_HI=65535; fi
free_port() {
	local p
	for _ in $(seq 200); do
		# Below the ephemeral range, so that no client socket holds it.
		p=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO)))
		case "$USED" in *" $p "*) continue ;; esac
		if ! ss -Htan "sport = :$p" | grep -q .; then USED="$USED$p "; echo "$p"; return 0; fi
	done
	die "no free port found"
}
wait_get() {
	local url=$1
	shift
	for _ in $(seq 100); do
		curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null && return 0
		sleep 0.1
	done
	die "$url did not answer$(for f in "$WORK"/*.log "$WORK"/nginx/logs/error.log; do [ -s "$f" ] && printf '\n--- %s\n%s' "$f" "$(tail -20 "$f")"; done)"
}

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
