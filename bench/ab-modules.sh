#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/ab-modules.sh - run one benchmark against two builds of the module,
# alternating, in one VM run: A B A B ... so that the emulator's drift hits
# both alike.  Figures, not a test.
#
#   scripts/vm-run.sh --timeout 3600 -- bench/ab-modules.sh A.ko B.ko \
#           bench/bench-commit.sh [ROUNDS]
#
# Each round runs the benchmark once with A.ko and once with B.ko loaded
# (RC_KO, see selftests/lib.sh load_module), unloading the module between
# runs; the benchmark's environment passes through (e.g. BENCH_REPS=1).
# Every line of its output is printed prefixed with "A<round>" or "B<round>"
# for the reader to take medians from.
set -u

[ $# -ge 3 ] || { echo "usage: $0 A.ko B.ko BENCH_SCRIPT [ROUNDS]" >&2; exit 2; }
a=$(realpath "$1") b=$(realpath "$2") script=$(realpath "$3") rounds=${4:-3}
for f in "$a" "$b" "$script"; do
	[ -r "$f" ] || { echo "ab-modules: $f: not readable" >&2; exit 2; }
done
rc=0
for ((i = 1; i <= rounds; i++)); do
	for side in A B; do
		ko=$a
		[ "$side" = B ] && ko=$b
		RC_KO=$ko "$script" 2>&1 | sed "s/^/$side$i /"
		[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
		if grep -q '^dm_remote_cow ' /proc/modules; then
			rmmod dm_remote_cow || rc=1
		fi
	done
done
exit "$rc"
