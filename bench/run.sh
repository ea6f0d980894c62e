#!/usr/bin/env bash
# bench/run.sh: throughput and latency of sandbox-router against references
# measured in the same run: the origin directly, nginx, and a plain
# httputil.ReverseProxy. The machine is small and noisy, so every figure that
# matters is a ratio between targets measured interleaved, over several
# rounds, and each target's figure is the median of its rounds.
#
# Environment:
#   DURATION=8        seconds of each wrk run
#   ROUNDS=3          interleaved rounds per scenario
#   CONNS=50          client connections
#   WARMUP=2          seconds of untimed wrk warm-up per target and scenario
#   H2_N=100000       h2load requests per run (h2load runs ROUNDS rounds too)
#   PROFILE=FILE      also take an 8 s CPU profile of the router under the
#                     64 B load and write `go tool pprof -top` to FILE
#   SUMMARY=FILE      also write the markdown summary to FILE
#   STRICT=1          exit 1 when a target fails (default: report only)
#   KEEP=1            keep the work directory (raw wrk/h2load output, logs)
#
# Run from anywhere; it works in the repository root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
WARMUP=${WARMUP:-2}
H2_N=${H2_N:-100000}
PROFILE=${PROFILE:-}
SUMMARY=${SUMMARY:-}
STRICT=${STRICT:-0}
KEEP=${KEEP:-0}

log() { printf '==> %s\n' "$*" >&2; }

BENCH_NAME=bench
# shellcheck source=bench/lib.sh
. bench/lib.sh

# ---------------------------------------------------------------- tools
install_missing wrk:wrk nginx:nginx-light h2load:nghttp2-client curl:curl ss:iproute2
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---------------------------------------------------------------- processes

# ---------------------------------------------------------------- build
log "building into bin/"
mkdir -p bin
go build -o bin/sandbox-router ./cmd/sandbox-router
go build -o bin/bench-origin ./bench/origin
go build -o bin/bench-refproxy ./bench/refproxy

# ---------------------------------------------------------------- start
ORIGIN_PORT=$(free_port)
NGINX_PORT=$(free_port)
REF_PORT=$(free_port)
ROUTER_PORT=$(free_port)
ADMIN_PORT=$(free_port)

bin/bench-origin --listen "127.0.0.1:$ORIGIN_PORT" >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
wait_get "http://127.0.0.1:$ORIGIN_PORT/healthz"

bin/bench-refproxy --listen "127.0.0.1:$REF_PORT" --target "http://127.0.0.1:$ORIGIN_PORT" >"$WORK/refproxy.log" 2>&1 &
PIDS+=($!)

mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
NGINX_USER=""
[ "$(id -u)" -eq 0 ] && NGINX_USER="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
$NGINX_USER
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log $WORK/nginx/logs/access.log combined buffer=64k;
    client_body_temp_path $WORK/nginx/tmp/client_body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    keepalive_requests 1000000;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/logs/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx/stdout.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/routes.yaml" <<EOF
sandboxes:
  - name: bench
    namespace: default
    podIP: 127.0.0.1
EOF
bin/sandbox-router --routes "$WORK/routes.yaml" --allow-loopback-pod-ip \
	--listen-http "127.0.0.1:$ROUTER_PORT" --listen-admin "127.0.0.1:$ADMIN_PORT" \
	--access-log "$WORK/router-access.log" --pprof --log-level warn \
	--drain-delay 0s --drain-timeout 2s >"$WORK/router.log" 2>&1 &
ROUTER_PID=$!
PIDS+=("$ROUTER_PID")

HDR_ID="X-Sandbox-ID: bench"
HDR_PORT="X-Sandbox-Port: $ORIGIN_PORT"
wait_get "http://127.0.0.1:$REF_PORT/healthz"
wait_get "http://127.0.0.1:$NGINX_PORT/healthz"
wait_get "http://127.0.0.1:$ADMIN_PORT/readyz"
wait_get "http://127.0.0.1:$ROUTER_PORT/healthz" -H "$HDR_ID" -H "$HDR_PORT"

TARGETS=(direct nginx refproxy router)
declare -A URL=(
	[direct]="http://127.0.0.1:$ORIGIN_PORT"
	[nginx]="http://127.0.0.1:$NGINX_PORT"
	[refproxy]="http://127.0.0.1:$REF_PORT"
	[router]="http://127.0.0.1:$ROUTER_PORT"
)
# Each target answers both bodies with the right length.
for t in "${TARGETS[@]}"; do
	for p in 64:64 64k:65536; do
		got=$(curl -fsS --max-time 5 -H "$HDR_ID" -H "$HDR_PORT" -o /dev/null -w '%{size_download}' "${URL[$t]}/${p%%:*}") ||
			die "$t does not answer ${URL[$t]}/${p%%:*}"
		[ "$got" = "${p##*:}" ] || die "$t answered $got bytes for /${p%%:*}, want ${p##*:}"
	done
done
# The router's h2c listener answers over prior-knowledge HTTP/2.
curl -fsS --http2-prior-knowledge --max-time 5 -H "$HDR_ID" -H "$HDR_PORT" -o /dev/null "${URL[router]}/64" ||
	die "router does not answer h2c"
log "all targets answer (origin :$ORIGIN_PORT nginx :$NGINX_PORT refproxy :$REF_PORT router :$ROUTER_PORT admin :$ADMIN_PORT)"

# ---------------------------------------------------------------- helpers
# to_ms VALUE: wrk's latency (e.g. 812.00us, 1.23ms, 1.02s, 1.50m) in ms.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) x = v / 1000
		else if (v ~ /ms$/) x = v + 0
		else if (v ~ /[0-9]s$/) x = v * 1000
		else if (v ~ /[0-9]m$/) x = v * 60000
		else if (v ~ /[0-9]h$/) x = v * 3600000
		else x = v + 0
		printf "%.3f", x
	}'
}

# median NUMBERS...
median() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) printf "%.3f", a[(NR + 1) / 2]
		else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2
	}'
}

# ratio A B
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.2f", a / b }'; }

# check VALUE OP LIMIT -> PASS/FAIL
check() { awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
	ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
	if (v == "nan") ok = 0
	print ok ? "PASS" : "FAIL"
}'; }

declare -A RPS P50 P99 ERRS
# run_wrk SCENARIO TARGET ROUND
run_wrk() {
	local sc=$1 t=$2 r=$3
	local out="$WORK/wrk-$sc-$t-$r.txt"
	wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H "$HDR_ID" -H "$HDR_PORT" "${URL[$t]}/$sc" >"$out" 2>&1 ||
		die "wrk against $t failed: $(cat "$out")"
	local rps p50 p99 non2xx sockerr
	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
	p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
	sockerr=$(awk '/Socket errors:/ { s = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s }' "$out")
	[ -n "$rps" ] || die "no Requests/sec in $out: $(cat "$out")"
	RPS[$sc:$t]="${RPS[$sc:$t]:-} $rps"
	P50[$sc:$t]="${P50[$sc:$t]:-} $p50"
	P99[$sc:$t]="${P99[$sc:$t]:-} $p99"
	local e=$((${non2xx:-0} + ${sockerr:-0}))
	ERRS[$sc:$t]=$((${ERRS[$sc:$t]:-0} + e))
	printf '    %-8s round %d: %10.0f req/s  p50 %8.3f ms  p99 %8.3f ms%s\n' "$t" "$r" "$rps" "$p50" "$p99" \
		"$([ "$e" -gt 0 ] && echo "  ERRORS: non-2xx ${non2xx:-0}, socket ${sockerr:-0}")" >&2
}

# ---------------------------------------------------------------- wrk
SCENARIOS=(64 64k)
for sc in "${SCENARIOS[@]}"; do
	log "scenario /$sc at $CONNS connections: warm-up ${WARMUP}s per target"
	for t in "${TARGETS[@]}"; do
		wrk -t2 -c"$CONNS" -d"${WARMUP}s" -H "$HDR_ID" -H "$HDR_PORT" "${URL[$t]}/$sc" >/dev/null 2>&1
	done
	for ((r = 1; r <= ROUNDS; r++)); do
		log "scenario /$sc round $r/$ROUNDS"
		# Rotate the order each round so that no target always runs first.
		for ((i = 0; i < ${#TARGETS[@]}; i++)); do
			t=${TARGETS[$(((i + r - 1) % ${#TARGETS[@]}))]}
			run_wrk "$sc" "$t" "$r"
		done
	done
done

# ---------------------------------------------------------------- h2load
declare -A H2RPS H2FAIL
H2_TARGETS=(direct router)
for ((r = 1; r <= ROUNDS; r++)); do
	log "h2load over h2c, round $r/$ROUNDS"
	for ((i = 0; i < ${#H2_TARGETS[@]}; i++)); do
		t=${H2_TARGETS[$(((i + r - 1) % ${#H2_TARGETS[@]}))]}
		out="$WORK/h2load-$t-$r.txt"
		h2load -n "$H2_N" -c "$CONNS" -m 10 -H 'x-sandbox-id: bench' -H "x-sandbox-port: $ORIGIN_PORT" \
			"${URL[$t]}/64" >"$out" 2>&1 || die "h2load against $t failed: $(tail -5 "$out")"
		rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^req\/s/) { v = $i; sub(/,$/, "", v); print v } }' "$out")
		failed=$(awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^(failed|errored|timeout)/) s += $i; print s + 0 }' "$out")
		non2xx=$(awk '/^status codes:/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^[345]xx/) s += $i; print s + 0 }' "$out")
		[ -n "$rps" ] || die "no req/s in $out: $(cat "$out")"
		H2RPS[$t]="${H2RPS[$t]:-} $rps"
		H2FAIL[$t]=$((${H2FAIL[$t]:-0} + failed + non2xx))
		printf '    %-8s round %d: %10.0f req/s%s\n' "$t" "$r" "$rps" \
			"$([ $((failed + non2xx)) -gt 0 ] && echo "  ERRORS: failed $failed, non-2xx $non2xx")" >&2
	done
done

# The router's upstream pool after every run: with -c 50 -m 10, h2load has
# up to 500 requests in flight to one HTTP/1.1 endpoint, over the
# per-endpoint connection cap (256): they wait for a connection, and none
# may overflow.
POOL_METRICS=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
	/^sandbox_router_upstream_connection_waits_total / { w = $2 }
	/^sandbox_router_upstream_connections / { c = $2 }
	/^sandbox_router_upstream_connection_overflows_total/ { o += $2 }
	END { printf "%d requests waited for a connection, %d overflowed (503 upstream_busy), %d connections open at the end", w, o, c }')

# ---------------------------------------------------------------- profile
if [ -n "$PROFILE" ]; then
	log "profiling the router under /64 at $CONNS connections (8 s)"
	wrk -t2 -c"$CONNS" -d12s -H "$HDR_ID" -H "$HDR_PORT" "${URL[router]}/64" >"$WORK/wrk-profile.txt" 2>&1 &
	WRK_PID=$!
	PIDS+=("$WRK_PID")
	sleep 2
	curl -fsS --max-time 30 -o "$WORK/router.cpu.pprof" "http://127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=8"
	wait "$WRK_PID" || true
	go tool pprof -top -nodecount=40 bin/sandbox-router "$WORK/router.cpu.pprof" >"$PROFILE" 2>&1
	cp "$WORK/router.cpu.pprof" "${PROFILE%.*}.pprof" 2>/dev/null || true
	log "profile written to $PROFILE (raw: ${PROFILE%.*}.pprof)"
fi

# ---------------------------------------------------------------- report
declare -A MRPS MP50 MP99
for sc in "${SCENARIOS[@]}"; do
	for t in "${TARGETS[@]}"; do
		# shellcheck disable=SC2086 # word splitting of the value lists is intended
		MRPS[$sc:$t]=$(median ${RPS[$sc:$t]})
		# shellcheck disable=SC2086
		MP50[$sc:$t]=$(median ${P50[$sc:$t]})
		# shellcheck disable=SC2086
		MP99[$sc:$t]=$(median ${P99[$sc:$t]})
	done
done
# shellcheck disable=SC2086
H2_ROUTER=$(median ${H2RPS[router]})
# shellcheck disable=SC2086
H2_DIRECT=$(median ${H2RPS[direct]})

R64_NGINX=$(ratio "${MRPS[64:router]}" "${MRPS[64:nginx]}")
R64_REF=$(ratio "${MRPS[64:router]}" "${MRPS[64:refproxy]}")
R64_P99=$(ratio "${MP99[64:router]}" "${MP99[64:nginx]}")
R64K_NGINX=$(ratio "${MRPS[64k:router]}" "${MRPS[64k:nginx]}")
R64K_REF=$(ratio "${MRPS[64k:router]}" "${MRPS[64k:refproxy]}")
R64K_P99=$(ratio "${MP99[64k:router]}" "${MP99[64k:nginx]}")
RH2=$(ratio "$H2_ROUTER" "$H2_DIRECT")

# Per-round ratios, to show how stable each ratio is.
per_round() {
	local sc=$1 a=$2 b=$3 kind=$4
	local -a av bv
	if [ "$kind" = rps ]; then
		read -r -a av <<<"${RPS[$sc:$a]}"
		read -r -a bv <<<"${RPS[$sc:$b]}"
	else
		read -r -a av <<<"${P99[$sc:$a]}"
		read -r -a bv <<<"${P99[$sc:$b]}"
	fi
	local out="" i
	for ((i = 0; i < ${#av[@]}; i++)); do
		out="$out${out:+, }$(ratio "${av[$i]}" "${bv[$i]}")"
	done
	echo "$out"
}

NGINX_TEMPFILE=$(grep -c 'buffered to a temporary file' "$WORK/nginx/logs/error.log" 2>/dev/null || true)

{
	echo "## sandbox-router benchmark"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "wrk -t2 -c$CONNS -d${DURATION}s --latency, $ROUNDS interleaved rounds, median of rounds; $(go version | awk '{ print $3 }'), $("$NGINX" -v 2>&1 | sed 's/.*: //')"
	echo
	echo "| scenario | target | req/s | p50 ms | p99 ms | errors | req/s per round |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | --- |"
	for sc in "${SCENARIOS[@]}"; do
		label="64 B"
		[ "$sc" = 64k ] && label="64 KiB"
		for t in "${TARGETS[@]}"; do
			printf '| %s @%dc | %s | %.0f | %.3f | %.3f | %d | %s |\n' "$label" "$CONNS" "$t" \
				"${MRPS[$sc:$t]}" "${MP50[$sc:$t]}" "${MP99[$sc:$t]}" "${ERRS[$sc:$t]:-0}" \
				"$(echo "${RPS[$sc:$t]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? ", " : ""), $i }')"
		done
	done
	echo
	echo "| h2c (h2load -n $H2_N -c $CONNS -m 10, /64) | req/s | failed | req/s per round |"
	echo "| --- | ---: | ---: | --- |"
	for t in "${H2_TARGETS[@]}"; do
		printf '| %s | %.0f | %d | %s |\n' "$t" "$(median ${H2RPS[$t]})" "${H2FAIL[$t]:-0}" \
			"$(echo "${H2RPS[$t]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? ", " : ""), $i }')"
	done
	echo
	echo "Router upstream pool after all runs (per-endpoint cap: the default, 256): ${POOL_METRICS:-no samples}"
	echo
	echo "| ratio | value (of medians) | per round |"
	echo "| --- | ---: | --- |"
	echo "| 64 B router / nginx req/s | $R64_NGINX | $(per_round 64 router nginx rps) |"
	echo "| 64 B router / refproxy req/s | $R64_REF | $(per_round 64 router refproxy rps) |"
	echo "| 64 B router p99 / nginx p99 | $R64_P99 | $(per_round 64 router nginx p99) |"
	echo "| 64 KiB router / nginx req/s | $R64K_NGINX | $(per_round 64k router nginx rps) |"
	echo "| 64 KiB router / refproxy req/s | $R64K_REF | $(per_round 64k router refproxy rps) |"
	echo "| 64 KiB router p99 / nginx p99 | $R64K_P99 | $(per_round 64k router nginx p99) |"
	echo "| h2c router / direct req/s | $RH2 | |"
	echo
	echo "| target (from the issue) | measured | result |"
	echo "| --- | ---: | --- |"
	echo "| 64 B @${CONNS}c router >= 0.5x nginx req/s | ${R64_NGINX}x | $(check "$R64_NGINX" ">=" 0.5) |"
	echo "| 64 B @${CONNS}c router >= 1.2x refproxy req/s | ${R64_REF}x | $(check "$R64_REF" ">=" 1.2) |"
	echo "| 64 B @${CONNS}c router p99 <= 2x nginx p99 | ${R64_P99}x | $(check "$R64_P99" "<=" 2) |"
	echo "| 64 KiB @${CONNS}c router >= 0.7x nginx req/s | ${R64K_NGINX}x | $(check "$R64K_NGINX" ">=" 0.7) |"
	if [ "${NGINX_TEMPFILE:-0}" -gt 0 ]; then
		echo
		echo "nginx buffered $NGINX_TEMPFILE responses to temporary files (default proxy_buffers)."
	fi
} >"$WORK/summary.md"

echo
cat "$WORK/summary.md"
[ -n "$SUMMARY" ] && cp "$WORK/summary.md" "$SUMMARY"

if [ "$STRICT" = 1 ] && grep -q '| FAIL |' "$WORK/summary.md"; then
	exit 1
fi
exit 0
