#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=300
#
# Live migration (lib-mig.sh: one remote-cowd plays both sides over
# loopback TCP) while the wall clock is stepped an hour back, as NTP or
# an administrator's 'date -s' may.  remote-cowd's timed waits must not
# care: their deadlines are on CLOCK_MONOTONIC.
#
# An idle copying migration (its first round sent, no guest writes) takes
# an empty round every 0.2 s (MIG_IDLE_MS): between two, the job's thread
# sleeps in a timed wait that only the deadline, a finish or an abort
# ends - a write does not.  With a CLOCK_REALTIME deadline, a step an hour
# back in that wait made it last an hour: a write after the step was not
# sent until then.
#
# - the migration is copying, its first round sent;
# - the clock stepped an hour back: a 64 KiB write on the source goes
#   across within 20 s (migrate_done passes what it was);
# - remote-cowd did not give up meanwhile;
# - the clock set right again (an hour forward): 'migrate finish --wait'
#   ends done, and the destination equals the source byte for byte.
# The clock is set right at exit too, from /proc/uptime (monotonic).
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp psktool awk date
tap_plan 6

PORT=17781
SEND_S=20

# The wall clock as it was at the start plus the uptime since: the clock
# set right whatever steps were taken.
read -r UP0 _ </proc/uptime
REAL0=$(date +%s.%N)
clock_right() {
	local up
	read -r up _ </proc/uptime
	date -s "@$(awk -v r="$REAL0" -v u0="$UP0" -v u="$up" 'BEGIN { printf "%.2f", r + u - u0 }')" \
		>/dev/null
}
at_exit clock_right
# clock_off: how far the wall clock is from right, in whole seconds.
clock_off() {
	local up
	read -r up _ </proc/uptime
	awk -v r="$REAL0" -v u0="$UP0" -v u="$up" -v now="$(date +%s.%N)" \
		'BEGIN { printf "%d", now - (r + u - u0) }'
}

mig_setup migrate-clock-step

SRC="rc-clk-src"
DST="rc-clk-dst"
mig_start_idle "$SRC" "$DST"
sleep 1		# idle: an empty round every 0.2 s, the thread waiting between
check_eq "an idle migration: copying, its first round sent (migrate_done $(rc_status "$SRC" migrate_done))" \
	copying "$(state "$SRC")"

d=$(rc_status "$SRC" migrate_done)
date -s '-1 hour' >/dev/null || tap_bail "cannot step the clock"
sleep 0.5
tap_diag "the clock stepped back: $(clock_off) s off"
image_data "$MIG_TEST-after-step" $((64 << 10)) |
	dd of="/dev/mapper/$SRC" bs=64k seek=300 oflag=direct iflag=fullblock status=none ||
	tap_bail "cannot write to the source"
check "the clock an hour back: a write goes across within $SEND_S s (migrate_done past $d)" \
	wait_until "$SEND_S" sent_past "$SRC" "$d"
check_fails "... neither side gave up" grep -E "$SRC: migration to|$DST: migration not received" \
	"$HELPER_LOG"

clock_right
check "the clock set right again (an hour forward, $(clock_off) s off now): migrate finish --wait: done" \
	"$RC" migrate "$SRC" finish --wait
dd if="/dev/mapper/$SRC" of="$tmp/ref" bs=1M iflag=direct status=none
check "the destination equals the source byte for byte" cmp "$tmp/ref" "/dev/mapper/$DST"
check_eq "... and holds every written extent" "$(rc_status "$SRC" written)" \
	"$(rc_status "$DST" written)"
tap_done
