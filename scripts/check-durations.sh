#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Record how long each selftest took, for scripts/check.sh to balance its
# VMs: reads the "# <name>: <N>s" lines that selftests/run.sh prints after
# each test and writes selftests/durations ("<name> <seconds>" per line).
#
#   scripts/check-durations.sh [--print] RUN_DIR...
#
#   RUN_DIR   a run directory of 'make check' (build/vm/runs/<stamp>-check*)
#   --print   print the table instead of writing selftests/durations
#
# A test missing from the runs keeps its old line.  The figures are from
# one machine under the load of the run itself; they only need to be
# roughly right.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/selftests/durations

usage() {
	sed -n '/^#   scripts/,/^#   --print/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

print=0
case ${1:-} in
-h | --help) usage; exit 0 ;;
--print) print=1; shift ;;
-*) echo "check-durations: unknown option $1" >&2; usage >&2; exit 2 ;;
esac
[ $# -gt 0 ] || { usage >&2; exit 2; }

declare -A secs=()
if [ -f "$OUT" ]; then
	while read -r n s; do
		case $n in '' | '#'*) continue ;; esac
		secs[$n]=$s
	done <"$OUT"
fi
found=0
for run in "$@"; do
	[ -f "$run/output.log" ] || { echo "check-durations: no $run/output.log" >&2; exit 1; }
	while read -r n s; do
		secs[$n]=$s
		found=$((found + 1))
	done < <(sed -n 's/^# \([a-z0-9-]*\): \([0-9][0-9]*\)s$/\1 \2/p' "$run/output.log")
done
[ "$found" -gt 0 ] || { echo "check-durations: no test times in $*" >&2; exit 1; }

table() {
	echo "# Seconds each selftest took in 'make check' (two VMs side by side"
	echo "# on two cores); scripts/check.sh splits the tests over its VMs by"
	echo "# them.  Regenerate: scripts/check-durations.sh build/vm/runs/<stamp>-check*"
	for n in "${!secs[@]}"; do
		[ -f "$ROOT/selftests/$n.sh" ] || continue
		echo "$n ${secs[$n]}"
	done | LC_ALL=C sort
}
if [ "$print" = 1 ]; then
	table
else
	table >"$OUT.tmp"
	mv "$OUT.tmp" "$OUT"
	echo "check-durations: $found times written to $OUT"
fi
