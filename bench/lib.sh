# bench/lib.sh: what bench/run.sh and bench/memory.sh share. Source it after
# setting BENCH_NAME (used in messages and the work directory's name) and
# KEEP. It creates $WORK, stops every PID pushed onto PIDS on exit, and
# provides die, install_missing, free_port and wait_get.

die() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

# install_missing COMMAND:PACKAGE...: apt-installs the package of every
# command that is missing (from PATH and from /usr/sbin, where nginx lives).
install_missing() {
	local need=() spec
	for spec in "$@"; do
		command -v "${spec%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${spec%%:*}" ] || need+=("${spec#*:}")
	done
	((${#need[@]} == 0)) && return 0
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	printf '==> %s: installing %s\n' "$BENCH_NAME" "${need[*]}" >&2
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sandbox-router-$BENCH_NAME.XXXXXX")
PIDS=()
cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		# Give each a moment, then insist.
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

USED_PORTS=" "
# Ports for the servers: below the kernel's ephemeral range when it leaves
# room (the default 32768-60999 does), so that no client socket holds one;
# else anywhere above 1024.
read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPH_LO=32768
if [ "$EPH_LO" -gt 12000 ]; then PORT_LO=10000 PORT_HI=$EPH_LO; else PORT_LO=1025 PORT_HI=65535; fi
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO)))
		case "$USED_PORTS" in *" $p "*) continue ;; esac
		if ! ss -Htan "sport = :$p" | grep -q .; then
			USED_PORTS="$USED_PORTS$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_get URL [curl args...]: wait until URL answers 2xx (10 s at most).
wait_get() {
	local url=$1
	shift
	for _ in $(seq 100); do
		if curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "$url did not answer$(for f in "$WORK"/*.log "$WORK"/nginx/logs/error.log; do [ -s "$f" ] && printf '\n--- %s\n%s' "$f" "$(tail -20 "$f")"; done)"
}
