# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# bench/lib-bench.sh - the setup steps and the figures shared by the
# benchmarks (bench-nbd.sh, bench-peers.sh, bench-target.sh,
# bench-memory.sh).  It sources selftests/lib.sh and selftests/lib-net.sh;
# a benchmark sources it alone, defines die() (its message, exit 1), then:
#
#   bench_require bench-nbd fio nbdkit      # root (the VM), the tools
#   load_module || die "cannot load $RC_MODULE"
#   net_tmpdir                              # NET_WORKDIR
#   bench_net_base bench-nbd "$bytes" 50ms 100mbit
#   helper_start || die "the helper does not start"
#   bench_rc_create NAME "$len" "$COW_DEV" "$EXT" "$(net_uri)"

_BENCH_TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=../selftests/lib.sh
. "$_BENCH_TREE/selftests/lib.sh"
# shellcheck source=../selftests/lib-net.sh
. "$_BENCH_TREE/selftests/lib-net.sh"

# bench_require <make target> <program...>: root (in the VM, where
# make <make target> runs the benchmark) and the programs installed; else
# die.
bench_require() {
	local c
	[ "$(id -u)" -eq 0 ] || die "needs root: run it in the VM (make $1)"
	shift
	for c in "$@"; do
		command -v "$c" >/dev/null || die "$c is not installed (make deps)"
	done
}

# bench_load_clone <dm-clone.ko> <make target>: the clone target,
# registered already or loaded from the module bench/build-dm-clone.sh
# builds (make <make target> builds it first); else die.
bench_load_clone() {
	dmsetup targets | grep -q '^clone ' && return 0
	[ -f "$1" ] || die "$1 missing: bench/build-dm-clone.sh (make $2 builds it)"
	insmod "$1" || die "cannot load $1"
}

# bench_net_base <seed> <bytes> [<delay> <rate>]: the base image,
# $NET_WORKDIR/base.img (<bytes> of random data from <seed>, image_data;
# net_tmpdir first), served by nbdkit in the network namespace behind the
# veth link (net_setup, net_serve), shaped with netem when <delay> and
# <rate> are given (net_shape); net_uri then names the export.  Dies on a
# failure.
bench_net_base() {
	image_data "$1" "$2" >"${NET_WORKDIR:?net_tmpdir first}/base.img" ||
		die "cannot make the base image"
	net_setup || die "cannot set up the network namespace"
	[ $# -lt 4 ] || net_shape "$3" "$4" || die "cannot shape the link"
	net_serve "$NET_WORKDIR/base.img" || die "cannot start nbdkit"
}

# bench_rc_create <dm name> <sectors> <cow dev> <extent sectors> <base uri>:
# a remote-cow device (removed at exit).  Over an nbd base with remote-cowd
# as the helper it returns once remote-cowd has connected to the base, and
# BENCH_CONNECT_MS says how long after the create that was ("-" otherwise).
# In the main shell, never in a command substitution (it registers a
# cleanup).
BENCH_CONNECT_MS=-
bench_rc_create() {
	local n t0 t1
	n=$(rc_connections)
	t0=$(date +%s%N)
	dmsetup create "$1" --table "$(rc_table "$2" "$3" "$4" "$5")" || return 1
	at_exit "dm_remove $1"
	BENCH_CONNECT_MS=-
	if ! helper_is_daemon || [ "${5#nbd}" = "$5" ]; then
		return 0
	fi
	rc_wait_connected "$n" || return 1
	t1=$(date +%s%N)
	# shellcheck disable=SC2034	# for the benchmarks
	BENCH_CONNECT_MS=$(((t1 - t0) / 1000000))
}

# median <numbers...>: the median (the mean of the middle two for an even
# count), "-" when there is none.
median() {
	[ $# -gt 0 ] || { echo -; return 0; }
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
		if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# rotate <rep> <words...>: the words rotated left by rep - 1 (the order of
# the targets in repetition <rep>).
rotate() {
	local k=$1 a
	shift
	a=("$@")
	k=$(((k - 1) % ${#a[@]}))
	echo "${a[@]:k}" "${a[@]:0:k}"
}

# fio_get <fio json file> <what>: one figure of the first job.
#   bw, iops        read MiB/s, read IOPS
#   wbw, wiops      the same for writes
#   runtime         the read run's length, ms
#   <percentile>    read completion latency at that percentile, ms
#                   (fio's key, e.g. 50.000000)
fio_get() {
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
what = sys.argv[2]
d = j["write"] if what[0] == "w" else j["read"]
if what in ("bw", "wbw"):
	print("%.2f" % (d["bw_bytes"] / 1048576.0))
elif what in ("iops", "wiops"):
	print("%.1f" % d["iops"])
elif what == "runtime":
	print("%d" % d["runtime"])
else:
	print("%.2f" % (d["clat_ns"]["percentile"][what] / 1e6))
' "$@"
}

# mib_per_s <bytes> <t0> <t1>: MiB/s between two date +%s.%N stamps.
mib_per_s() {
	awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN { printf "%.2f\n", b / 1048576 / (c - a) }'
}

# nbdcopy_rate <uri> <bytes>: read the whole export with nbdcopy (to
# null:), MiB/s timed around the command (its connection included).
nbdcopy_rate() {
	local t0 t1
	t0=$(date +%s.%N)
	nbdcopy "$1" null: || return 1
	t1=$(date +%s.%N)
	mib_per_s "$2" "$t0" "$t1"
}

# rc_connections: how many times remote-cowd logged a connection to a base
# (in $HELPER_LOG).
rc_connections() {
	grep -c ': connected: ' "$HELPER_LOG" 2>/dev/null
}

# rc_wait_connected <count before>: wait (10 s) until remote-cowd logged
# one more connection than <count before>.
rc_wait_connected() {
	local i
	for ((i = 0; i < 1000; i++)); do
		[ "$(rc_connections)" -gt "$1" ] && return 0
		sleep 0.01
	done
	echo "remote-cowd did not connect within 10 s" >&2
	return 1
}
