#!/usr/bin/env bash
# bench/tunnels.sh: what long-lived idle connections cost a proxy, for
# sandbox-router and for nginx in the same run. For each size N, a fresh
# origin (bench/tunnels/origin) and a fresh proxy are started, and
# bench/tunnels/client, a separate process, opens N WebSockets (then SSE_N
# SSE streams, then H2C_N HTTP/2 connections) through the proxy, lets them
# idle, echoes once on each WebSocket, and closes them. It reads from /proc what the proxy's
# processes hold: resident memory, descriptors, CPU while idle, and (router)
# goroutines from /metrics; then what is left after the close and a GC.
#
# Environment:
#   NS="1000 9000"   WebSocket counts to run; default 1000 and the largest N
#                    that fits the hard descriptor limit at 2 descriptors per
#                    tunnel ((hard - 1000) / 2), capped at NMAX
#   NMAX=9000        the cap of that default
#                    (NS="" skips the WebSockets)
#   SSE_N=1000       SSE streams per proxy (0 skips SSE)
#   H2C_N=1000       h2c connections per proxy (0 skips h2c): HTTP/2 with
#                    prior knowledge, one GET /healthz each, then held idle
#                    with no stream open
#   ROUTER_FLAGS=    extra sandbox-router flags, e.g.
#                    "--upstream-max-conns-per-endpoint 20000": an SSE stream
#                    holds one of the router's pooled upstream connections,
#                    256 per sandbox endpoint by default, so past 256 streams
#                    the rest wait (then time out) or get 503 upstream_busy
#   IDLE=5s          idle-CPU window
#   SUMMARY=FILE     also write the markdown summary to FILE
#   KEEP=1           keep the work directory (client JSON, logs, configs)
#
# Run from anywhere; it works in the repository root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NMAX=${NMAX:-9000}
SSE_N=${SSE_N:-1000}
H2C_N=${H2C_N:-1000}
IDLE=${IDLE:-5s}
SUMMARY=${SUMMARY:-}
KEEP=${KEEP:-0}
read -r -a ROUTER_FLAGS <<<"${ROUTER_FLAGS:-}"
# The client's own deadlines bound a run to about two and a half minutes;
# this is the net under them.
CLIENT_TIMEOUT=300

log() { printf '==> %s\n' "$*" >&2; }

BENCH_NAME=tunnels
# shellcheck source=bench/lib.sh
. bench/lib.sh

# ---------------------------------------------------------------- tools
install_missing nginx:nginx-light curl:curl ss:iproute2 jq:jq pgrep:procps
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---------------------------------------------------------------- descriptors
# Every process started from here inherits the soft limit: raise it to the
# hard one (the Go programs would do it themselves; nginx's master would not).
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=$(cat /proc/sys/fs/nr_open)
ulimit -n "$HARD" || die "cannot raise the descriptor limit to $HARD"
# A proxy holds two descriptors per tunnel (client side and sandbox side);
# keep 1000 for everything else.
FIT=$(((HARD - 1000) / 2))
((FIT > 0)) || die "hard descriptor limit $HARD is too low"
BIG=$((FIT < NMAX ? FIT : NMAX))
if [ -z "${NS+set}" ]; then
	if ((BIG > 1000)); then NS="1000 $BIG"; else NS="$BIG"; fi
fi
for n in $NS; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || die "NS: $n is not a positive count"
	((n <= FIT)) || log "warning: N=$n needs $((2 * n + 1000)) descriptors in a proxy, over the hard limit $HARD"
done
[[ $SSE_N =~ ^[0-9]+$ ]] || die "SSE_N: $SSE_N is not a count"
[[ $H2C_N =~ ^[0-9]+$ ]] || die "H2C_N: $H2C_N is not a count"
log "descriptor limit $HARD (soft raised to $(ulimit -n)); WebSockets: ${NS:-none}; SSE: $SSE_N; h2c: $H2C_N"

# ---------------------------------------------------------------- build
log "building into bin/"
mkdir -p bin
go build -o bin/sandbox-router ./cmd/sandbox-router
go build -o bin/bench-tunnels-origin ./bench/tunnels/origin
go build -o bin/bench-tunnels-client ./bench/tunnels/client

# ---------------------------------------------------------------- processes
# stop PID: TERM, a few seconds' grace, KILL; and forget it, so that the
# exit trap never signals a PID the kernel may have reused.
stop() {
	local pid=$1 p keep=()
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# start_origin: a fresh origin on a fresh port, so that no run meets the
# previous run's TIME_WAIT sockets towards the same address.
start_origin() {
	ORIGIN_PORT=$(free_port)
	bin/bench-tunnels-origin --listen "127.0.0.1:$ORIGIN_PORT" >>"$WORK/origin.log" 2>&1 &
	ORIGIN_PID=$!
	PIDS+=("$ORIGIN_PID")
	wait_get "http://127.0.0.1:$ORIGIN_PORT/healthz"
}

# start_router [FLAGS...]: sets PROXY_PID, PROXY_PIDS, PROXY_PORT and
# CLIENT_EXTRA.
start_router() {
	local admin
	PROXY_PORT=$(free_port)
	admin=$(free_port)
	cat >"$WORK/routes.yaml" <<EOF
sandboxes:
  - name: bench
    namespace: default
    podIP: 127.0.0.1
EOF
	bin/sandbox-router --routes "$WORK/routes.yaml" --allow-loopback-pod-ip \
		--listen-http "127.0.0.1:$PROXY_PORT" --listen-admin "127.0.0.1:$admin" \
		--access-log "$WORK/router-access.log" --pprof --log-level warn \
		--drain-delay 0s --drain-timeout 2s "$@" "${ROUTER_FLAGS[@]}" >>"$WORK/router.log" 2>&1 &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	PROXY_PIDS=$PROXY_PID
	wait_get "http://127.0.0.1:$admin/readyz"
	CLIENT_EXTRA=(-metrics "http://127.0.0.1:$admin/metrics" -gc "http://127.0.0.1:$admin/debug/pprof/heap?gc=1")
}

# start_nginx N KIND: sized so that either worker alone could hold all N
# tunnels (nothing makes the kernel spread the accepts evenly). Sets the same
# as start_router; PROXY_PIDS is the master and its workers. For h2c the
# listener speaks HTTP/2 only (nginx 1.22: prior knowledge; HTTP/1.1 on it
# fails), and an idle HTTP/2 connection lives for keepalive_timeout: since
# 1.19.7 that directive governs HTTP/2 too, and http2_idle_timeout is
# obsolete (accepted with a warning, without effect), so it is left out.
start_nginx() {
	local n=$1 kind=$2 user="" workers="" listen keepalive="" curl_h2=()
	PROXY_PORT=$(free_port)
	listen="127.0.0.1:$PROXY_PORT"
	if [ "$kind" = h2c ]; then
		listen="$listen http2"
		keepalive="keepalive_timeout 1h;"
		curl_h2=(--http2-prior-knowledge)
	fi
	rm -rf "$WORK/nginx"
	mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
	[ "$(id -u)" -eq 0 ] && user="user root;"
	cat >"$WORK/nginx/nginx.conf" <<EOF
$user
worker_processes 2;
worker_rlimit_nofile $HARD;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events {
    worker_connections $((2 * n + 256));
}
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp/client_body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
    }
    server {
        listen $listen;
        $keepalive
        # WebSocket: pass the upgrade, keep the tunnel for up to an hour idle.
        location /ws {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
        # SSE (and /healthz): stream the response as it comes.
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
EOF
	"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/logs/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx/stdout.log" 2>&1 &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	wait_get "http://127.0.0.1:$PROXY_PORT/healthz" "${curl_h2[@]}"
	for _ in $(seq 100); do
		workers=$(pgrep -P "$PROXY_PID" | paste -sd, -) || true
		[ "$(tr ',' '\n' <<<"$workers" | grep -c .)" -ge 2 ] && break
		sleep 0.1
	done
	[ "$(tr ',' '\n' <<<"$workers" | grep -c .)" -eq 2 ] || die "nginx workers: '$workers', want 2"
	PROXY_PIDS="$PROXY_PID,$workers"
	CLIENT_EXTRA=()
}

# ---------------------------------------------------------------- sources
# The client binds its connections to several loopback addresses in turn:
# each address has its own ephemeral ports, and the client's closed
# connections sit in TIME_WAIT on them for a minute. Linux routes all of
# 127.0.0.0/8 to lo, so they need no setup; check that binding works.
start_origin
SOURCES=""
for i in 2 3 4 5 6 7 8 9; do
	if curl -fsS -o /dev/null --max-time 2 --interface "127.0.0.$i" "http://127.0.0.1:$ORIGIN_PORT/healthz" 2>/dev/null; then
		SOURCES="$SOURCES${SOURCES:+,}127.0.0.$i"
	fi
done
stop "$ORIGIN_PID"
[ -n "$SOURCES" ] || log "warning: cannot bind to 127.0.0.2-9; the client dials from the kernel's choice"
log "client source addresses: ${SOURCES:-none}"

# ---------------------------------------------------------------- runs
RUNS=()
# run_one PROXY KIND N: fresh origin and proxy, one client run, both stopped.
run_one() {
	local proxy=$1 kind=$2 n=$3 out rc=0 curl_h2=()
	[ "$kind" = h2c ] && curl_h2=(--http2-prior-knowledge)
	out="$WORK/$proxy-$kind-$n"
	log "$proxy: $n $kind"
	start_origin
	if [ "$proxy" = router ] && [ "$kind" = sse ]; then
		# Every stream goes to the one sandbox, each on its own upstream
		# connection: past the per-endpoint cap (256) they would queue.
		start_router --upstream-max-conns-per-endpoint "$((n + 16))"
	elif [ "$proxy" = router ]; then
		start_router
	else
		start_nginx "$n" "$kind"
	fi
	wait_get "http://127.0.0.1:$PROXY_PORT/healthz" "${curl_h2[@]}" -H "X-Sandbox-ID: bench" -H "X-Sandbox-Port: $ORIGIN_PORT"
	timeout -k 10 "$CLIENT_TIMEOUT" bin/bench-tunnels-client -json \
		-target "http://127.0.0.1:$PROXY_PORT" -header "X-Sandbox-ID: bench" -header "X-Sandbox-Port: $ORIGIN_PORT" \
		-kind "$kind" -n "$n" -sources "$SOURCES" -pid "$PROXY_PIDS" -idle "$IDLE" "${CLIENT_EXTRA[@]}" \
		>"$out.json" 2>"$out.log" || rc=$?
	[ "$rc" -eq 0 ] || log "client exited $rc: $(tail -3 "$out.log")"
	[ -s "$out.json" ] && jq -r '"    opened \(.opened)/\(.n) in \(.open_seconds * 100 | round / 100)s, RSS/conn \(.per_conn.rss_kib // "-" | if type == "number" then (. * 100 | round / 100) else . end) KiB, fds/conn \(.per_conn.fds // "-" | if type == "number" then (. * 100 | round / 100) else . end)\(if .failed > 0 then ", failed \(.failed)" else "" end)\(if .skipped > 0 then ", skipped \(.skipped)" else "" end)\(if .open_at_close != null then ", still open before the close \(.open_at_close)/\(.opened)" else "" end)"' "$out.json" >&2 || true
	stop "$PROXY_PID"
	stop "$ORIGIN_PID"
	RUNS+=("$proxy:$kind:$n")
}

for n in $NS; do
	for proxy in router nginx; do run_one "$proxy" ws "$n"; done
done
if ((SSE_N > 0)); then
	for proxy in router nginx; do run_one "$proxy" sse "$SSE_N"; done
fi
if ((H2C_N > 0)); then
	for proxy in router nginx; do run_one "$proxy" h2c "$H2C_N"; done
fi

# ---------------------------------------------------------------- report
# row PROXY KIND N: one table row from the client's JSON.
row() {
	local proxy=$1 kind=$2 n=$3 f="$WORK/$1-$2-$3.json"
	if ! [ -s "$f" ] || ! jq -e . "$f" >/dev/null 2>&1; then
		printf '| %s | %s | %s | client failed (see %s) | | | | | | | | | | | |\n' "$proxy" "$kind" "$n" "$(basename "$f" .json).log"
		return
	fi
	jq -r --arg proxy "$proxy" '
		def r(d): if type == "number" then (. * pow(10; d) | round / pow(10; d) | tostring) else "-" end;
		def opened: "\(.opened)" + (if .failed > 0 or .skipped > 0 then " (failed \(.failed), skipped \(.skipped))" else "" end);
		[ $proxy, .kind, (.n | tostring), opened,
		  (.open_seconds | r(2)),
		  "\(.handshake_p50_ms | r(1)) / \(.handshake_p99_ms | r(1))",
		  (.per_conn.rss_kib | r(2)),
		  (.per_conn.live_kib | r(2)),
		  (.per_conn.fds | r(2)),
		  (.per_conn.goroutines | r(2)),
		  "\(.idle_cpu_percent | r(3)) (\(.idle_cpu_baseline_percent | r(3)))",
		  (if .kind == "ws" then "\(.echoes_ok)/\(.n)" else "-" end),
		  (.left_after_close.fds | tostring),
		  (.left_after_close.rss_kib | tostring),
		  (.left_after_close.goroutines | r(0))
		  + (if .error then " ERROR: \(.error)" else "" end)
		] | "| " + join(" | ") + " |"' "$f"
}

# field PROXY KIND N JQ: one figure from a run's JSON, "" when missing.
field() {
	local f="$WORK/$1-$2-$3.json"
	[ -s "$f" ] && jq -r "$4 // empty" "$f" 2>/dev/null || true
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

{
	echo "## Idle tunnels: sandbox-router vs nginx"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "$(go version | awk '{ print $3 }'), $("$NGINX" -v 2>&1 | sed 's/.*: //') (2 workers); descriptor limit $HARD; client sources ${SOURCES:-none (kernel-chosen)}; idle window $IDLE"
	echo "router flags: defaults as bench/memory.sh, --pprof${ROUTER_FLAGS[*]:+ }${ROUTER_FLAGS[*]}"
	echo
	echo "| proxy | kind | N | opened | open time (s) | handshake p50 / p99 (ms) | RSS/conn (KiB) | Go live/conn after GC (KiB) | fds/conn | goroutines/conn | idle CPU, % of a core (before opening) | echoes ok | fds left after close | RSS left after close+GC (KiB) | goroutines left |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for r in "${RUNS[@]}"; do
		IFS=: read -r proxy kind n <<<"$r"
		row "$proxy" "$kind" "$n"
	done
	if ((H2C_N > 0)); then
		echo
		echo "h2c: N HTTP/2 client connections with prior knowledge, each idle with no stream open after one GET /healthz went through (stream 1 ended, :status 200), and checked still open (no GOAWAY, FIN or RST) just before the close: what a proxy holds per idle HTTP/2 client, its upstream request long done (the router pools the HTTP/1.1 origin connections those GETs used, at most the client's 64 at once, for 30 s: they show in its fds/conn and fds left)."
	fi
	echo
	echo "| router / nginx | RSS/conn | PSS/conn | fds/conn |"
	echo "| --- | ---: | ---: | ---: |"
	for r in "${RUNS[@]}"; do
		IFS=: read -r proxy kind n <<<"$r"
		[ "$proxy" = router ] || continue
		printf '| %s N=%s | %s | %s | %s |\n' "$kind" "$n" \
			"$(ratio "$(field router "$kind" "$n" .per_conn.rss_kib)" "$(field nginx "$kind" "$n" .per_conn.rss_kib)")" \
			"$(ratio "$(field router "$kind" "$n" .per_conn.pss_kib)" "$(field nginx "$kind" "$n" .per_conn.pss_kib)")" \
			"$(ratio "$(field router "$kind" "$n" .per_conn.fds)" "$(field nginx "$kind" "$n" .per_conn.fds)")"
	done
	# Why connections failed, when some did.
	failures=""
	for r in "${RUNS[@]}"; do
		IFS=: read -r proxy kind n <<<"$r"
		e=$(field "$proxy" "$kind" "$n" '.errors | select(. != null) | to_entries | map("\(.value) × \(.key)") | join("; ")')
		[ -n "$e" ] && failures="$failures"$'\n'"- $proxy $kind N=$n: $e"
	done
	if [ -n "$failures" ]; then
		echo
		echo "Failures:$failures"
		if [[ $failures == *"router sse"* ]]; then
			echo
			echo "An SSE stream holds one of the router's pooled upstream connections, at most 256 per sandbox endpoint by"
			echo "default: past that, streams wait for one (and time out) or get 503 upstream_busy. To measure past it:"
			echo "ROUTER_FLAGS=\"--upstream-max-conns-per-endpoint 20000\"."
		fi
	fi
	echo
	echo "Per connection: (measure with N open, after 1 s to settle − baseline) / opened. RSS is VmRSS summed over the proxy's"
	echo "processes (nginx: master + 2 workers; pages they share count once per process, which the difference cancels);"
	echo "PSS, from smaps_rollup, splits shared pages instead. nginx allocates its connection and event arrays for"
	echo "worker_connections (2N+256 per worker) when it starts, so they sit in its baseline, not in RSS/conn. Go live"
	echo "(router): heap in use + goroutine stacks right after a forced GC, with N open less before opening; RSS also"
	echo "holds the garbage the GC lets grow between cycles (up to 32 MiB, cmd/sandbox-router/gc.go), which weighs on"
	echo "small N. Idle CPU:"
	echo "on-CPU time of all the proxy's threads (schedstat, ns) over the idle window with the N open, and in brackets"
	echo "over the same window before anything opened. After close: the client waits for the proxy's descriptors to"
	echo "stop falling (10 s at most), the router is asked to GC (pprof heap?gc=1), then 1 s."
	echo "A router figure of −1 left: the upstream connection its readiness check left in the pool was taken by the"
	echo "first tunnel and closed with it. The router's idle CPU before opening is its access log's 100 ms flush ticker."
} >"$WORK/summary.md"

echo
cat "$WORK/summary.md"
[ -n "$SUMMARY" ] && cp "$WORK/summary.md" "$SUMMARY"
exit 0
