#!/usr/bin/env bash
# bench/xds.sh: the xDS control plane (package xds) at 100,000 sandboxes,
# against go-control-plane's own caches measured in the same run (issue 11).
#
# bin/bench-xds (bench/xds) runs each control plane in a process of its own,
# fed by a synthetic resolver of SANDBOXES sandboxes, and holds CLIENTS raw
# delta-xDS clients in another: each subscribes to NAMES virtual hosts (the
# names split without overlap) and ACKs every response. Then RATE flips per
# second (running <-> suspended, a resume gets a new pod IP) for FLIP_SECONDS;
# every flip is timed from the moment the resolver's feed has it to the ACK
# of the client that holds it; bytes are counted on the clients' side, CPU
# time and resident memory on the control plane's. A client with COLD names
# is timed on the empty plane and again after the flips.
#
# The runs:
#   ours             package xds, clients speaking as Envoy's VHDS
#   ours-overlap     the same, every name held by OVERLAP clients
#   linear-wildcard  LinearCache of every virtual host, wildcard clients
#   linear-named     LinearCache, clients subscribing to their names
#   snapshot         SnapshotCache, one snapshot of every virtual host
#                    (SetSnapshot per batch of changes), named clients
# then BenchmarkAPIServer (bench/xds/apiserver_test.go): API_SANDBOXES
# sandboxes on the real etcd + kube-apiserver, the informer-backed resolver,
# flips written through the API server.
#
# Environment:
#   SANDBOXES=100000 CLIENTS=50 NAMES=2000 RATE=100 FLIP_SECONDS=30 COLD=10000
#   REF_SECONDS=10     flip phase of the reference caches (they are slow:
#                      this bounds the run; the report says what was cut)
#   REFS="linear-wildcard linear-named snapshot"   references to run
#   OVERLAP=2          ours-overlap's holders per name (0 skips it)
#   OVERLAP_SECONDS=10 its flip phase
#   DRAIN=15s          wait for ACKs after the last flip (REF_DRAIN=30s)
#   INIT_BUDGET=180s   bound on an initial sync and on a cold start
#   API=1              the real API server run (0 skips it)
#   API_SANDBOXES=10000 API_CLIENTS=5 API_RATE=100 API_SECONDS=20
#   XDS_SMOKE=1        tiny sizes: checks that everything runs, in a minute
#   SUMMARY=FILE       also write the markdown summary to FILE
#   KEEP=1             keep the work directory (JSON results, logs, and each
#                      run's latencies: sandbox, ms since the first flip, ms)
#
# Run from anywhere; it works in the repository root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${XDS_SMOKE:-0}" = 1 ]; then
	: "${SANDBOXES:=4000}" "${CLIENTS:=4}" "${NAMES:=500}" "${RATE:=50}" "${FLIP_SECONDS:=3}" "${COLD:=1000}"
	: "${REF_SECONDS:=2}" "${OVERLAP_SECONDS:=2}" "${DRAIN:=5s}" "${REF_DRAIN:=5s}" "${INIT_BUDGET:=30s}"
	: "${API_SANDBOXES:=200}" "${API_CLIENTS:=2}" "${API_RATE:=20}" "${API_SECONDS:=3}"
fi
SANDBOXES=${SANDBOXES:-100000}
CLIENTS=${CLIENTS:-50}
NAMES=${NAMES:-2000}
RATE=${RATE:-100}
FLIP_SECONDS=${FLIP_SECONDS:-30}
COLD=${COLD:-10000}
REF_SECONDS=${REF_SECONDS:-10}
REFS=${REFS-linear-wildcard linear-named snapshot}
OVERLAP=${OVERLAP:-2}
OVERLAP_SECONDS=${OVERLAP_SECONDS:-10}
DRAIN=${DRAIN:-15s}
REF_DRAIN=${REF_DRAIN:-30s}
INIT_BUDGET=${INIT_BUDGET:-180s}
API=${API:-1}
API_SANDBOXES=${API_SANDBOXES:-10000}
API_CLIENTS=${API_CLIENTS:-5}
API_RATE=${API_RATE:-100}
API_SECONDS=${API_SECONDS:-20}
SUMMARY=${SUMMARY:-}
KEEP=${KEEP:-0}
# A run's own budgets bound it; this is the net under them.
RUN_TIMEOUT=900

log() { printf '==> %s\n' "$*" >&2; }

BENCH_NAME=xds
# shellcheck source=bench/lib.sh
. bench/lib.sh

log "building bin/bench-xds"
mkdir -p bin
go build -o bin/bench-xds ./bench/xds

# run NAME FLAGS...: one control plane, measured; its JSON lands in $WORK.
FAILED=()
run() {
	local name=$1 rc=0
	shift
	log "$name"
	timeout -k 10 "$RUN_TIMEOUT" bin/bench-xds run -label "$name" -sandboxes "$SANDBOXES" -clients "$CLIENTS" \
		-names "$NAMES" -rate "$RATE" -cold "$COLD" -init-budget "$INIT_BUDGET" "$@" -out "$WORK/$name.json" -dump "$WORK/$name.latencies" || rc=$?
	if [ "$rc" -ne 0 ]; then
		log "$name failed (exit $rc)"
		rm -f "$WORK/$name.json"
		FAILED+=("$name")
	fi
}

run ours -impl ours -mode vhds -seconds "$FLIP_SECONDS" -drain "$DRAIN"
if [ "$OVERLAP" -gt 1 ]; then
	run ours-overlap -impl ours -mode vhds -overlap "$OVERLAP" -seconds "$OVERLAP_SECONDS" -drain "$DRAIN" -cold 0
fi
for ref in $REFS; do
	case $ref in
	linear-wildcard) run "$ref" -impl linear -mode wildcard -seconds "$REF_SECONDS" -drain "$REF_DRAIN" ;;
	linear-named) run "$ref" -impl linear -mode named -seconds "$REF_SECONDS" -drain "$REF_DRAIN" ;;
	snapshot) run "$ref" -impl snapshot -mode named -seconds "$REF_SECONDS" -drain "$REF_DRAIN" ;;
	*) die "REFS: unknown reference $ref (linear-wildcard, linear-named, snapshot)" ;;
	esac
done

if [ "$API" = 1 ]; then
	log "real API server: $API_SANDBOXES sandboxes, $API_CLIENTS clients, $API_RATE flips/s for $API_SECONDS s"
	rc=0
	go test -run '^$' -bench APIServer -benchtime 1x -timeout 30m ./bench/xds/ -args \
		-xds-api-sandboxes "$API_SANDBOXES" -xds-api-clients "$API_CLIENTS" -xds-api-rate "$API_RATE" \
		-xds-api-seconds "$API_SECONDS" -xds-api-json "$WORK/api.json" >"$WORK/api.log" 2>&1 || rc=$?
	grep -E 'apiserver_test|^Benchmark|FAIL|panic' "$WORK/api.log" >&2 || true
	if [ "$rc" -ne 0 ]; then
		log "API server run failed (exit $rc); see $WORK/api.log"
		rm -f "$WORK/api.json"
		FAILED+=(api)
	fi
fi

shopt -s nullglob
results=("$WORK"/*.json)
((${#results[@]} > 0)) || die "no run produced a result"
{
	echo "## xDS control plane: ours vs go-control-plane's caches"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(go version | awk '{ print $3 }'), go-control-plane $(go list -m -f '{{.Version}}' github.com/envoyproxy/go-control-plane)"
	echo "$SANDBOXES sandboxes, $CLIENTS clients x $NAMES names, $RATE flips/s; cold start: $COLD names"
	echo
	# The runs in the order they ran, the API server last.
	ordered=()
	for name in ours ours-overlap $REFS api; do
		[ -f "$WORK/$name.json" ] && ordered+=("$WORK/$name.json")
	done
	bin/bench-xds report "${ordered[@]}"
	echo
	echo "Latency: from the moment the resolver's feed holds the change to the holder's ACK of the response carrying"
	echo "it (the last holder's, with overlap); a flip never acknowledged within the drain counts as slower than any."
	echo "Bytes: proto.Size of the responses received from the first flip to the end of the drain, each virtual"
	echo "host on the side of the clients that hold its sandbox or of the others (the envelope goes with them), per"
	echo "(flip, holder) pair and, for the others, per flip. CPU: user + system time of the control-plane process"
	echo "(getrusage) over the same window, per flip; it includes the synthetic resolver's flips. RSS peak: VmHWM of"
	echo "the control-plane process; in brackets its VmRSS with the resolver filled and nothing subscribed."
	if ((${#FAILED[@]} > 0)); then
		echo
		echo "Failed runs: ${FAILED[*]} (see the log above)."
	fi
} >"$WORK/summary.md"

echo
cat "$WORK/summary.md"
[ -n "$SUMMARY" ] && cp "$WORK/summary.md" "$SUMMARY"
exit 0
