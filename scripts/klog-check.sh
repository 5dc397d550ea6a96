#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Scan a kernel log for signs of a kernel bug and print the relevant part.
#
#   scripts/klog-check.sh <logfile>     exit 0: clean; 1: found (printed)
#   scripts/klog-check.sh --pattern     print the extended regex used
#
# Also used inside the VM by selftests/run.sh on each test's log slice.
set -euo pipefail

PATTERN='(\bOops\b|\bBUG:|kernel BUG at|\bWARNING:|INFO: task .* blocked for more than|soft lockup|hard LOCKUP|general protection fault|KASAN|UBSAN|KFENCE|list_add corruption|list_del corruption|refcount_t:|Kernel panic|detected stalls? on CPU|self-detected stall|unreferenced object)'

if [ "${1:-}" = --pattern ]; then
	printf '%s\n' "$PATTERN"
	exit 0
fi
log=${1:?usage: klog-check.sh <logfile>}
[ -r "$log" ] || { echo "klog-check: cannot read $log" >&2; exit 2; }

mapfile -t hits < <(grep -naE "$PATTERN" "$log" | cut -d: -f1 | head -n 5)
[ "${#hits[@]}" -gt 0 ] || exit 0

echo "kernel log check: $(grep -caE "$PATTERN" "$log") suspicious line(s) in $log"
last=0
for n in "${hits[@]}"; do
	[ "$n" -gt "$last" ] || continue
	from=$((n > 5 ? n - 5 : 1))
	[ "$from" -gt "$last" ] || from=$((last + 1))
	last=$((n + 40))
	echo "---- lines $from-$last ----"
	sed -n "${from},${last}p" "$log"
done
echo "----"
exit 1
