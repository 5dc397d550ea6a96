# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# bench/lib-bench.sh - shell helpers shared by the benchmarks
# (bench-nbd.sh, bench-peers.sh, bench-memory.sh).  Source it after
# selftests/lib.sh and selftests/lib-net.sh.

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
