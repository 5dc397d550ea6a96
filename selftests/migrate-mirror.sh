#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# Live migration converges when the guest writes faster than the link
# (remote-cow migrate / receive, one remote-cowd playing both sides over
# loopback TCP, lib-mig.sh).  The loopback link carries 16 Mbit/s (tc
# netem) and fio writes 64 KiB blocks at random over 16 MiB of the source,
# as fast as it can (4 in flight): every round finds most of the region
# written again, so rounds stop shrinking.
#
# - remote-cowd switches the migration to mirroring (migrate_state
#   mirroring, its log says the rounds stopped shrinking); from then on
#   the guest's writes complete only once the destination has them, and
#   with fio still writing, what the rounds have to send drains to a
#   handful of extents and stays there (the round taken at the switch is
#   sent in slices: it takes a while);
# - the guest is paused (fio stopped) and 'migrate finish --wait' ends
#   done with at most a handful of extents left for the last round (the
#   kernel logs the number at the fence; without mirroring it is most of
#   the region), and the guest went on writing while mirroring (at least
#   WAITED_MIN writes waited for the destination, counted by the kernel:
#   each waits for a slice of a round, not for a whole round);
# - the destination serves and equals, byte for byte, a reference read
#   from the source after the fence; the source refuses writes.
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp fio psktool tc
tap_plan 12

PORT=17731
LEFT_MAX=8		# 4 writes in flight, each over at most 2 extents
# Mirroring sends slices of about 0.25 s of the link, the waiting writes'
# extents first: a write waits about a slice, so in the 5 s of mirroring
# (and the pause) the guest completes dozens of writes.  Were the round
# that switched to mirroring (16 MiB, 8 s of the link) sent whole, it would
# complete its 4 writes in flight and no more.
WAITED_MIN=8
mig_setup migrate-mirror

SRC="rc-mir-src"
DST="rc-mir-dst"
mig_outrun_start "$SRC" "$DST"
check "the migration switches to mirroring" wait_until 1200 state_is "$SRC" mirroring
check "remote-cowd logged why" logged "$SRC: the rounds stopped shrinking: mirroring from round"
check "with the guest still writing, what the rounds have to send drains to at most $LEFT_MAX extents" \
	wait_until 1200 remains_at_most "$SRC" "$LEFT_MAX"
sleep 5
check_eq "still mirroring 5 s later, nothing failed" mirroring "$(state "$SRC")"
check "... and what is left stays small" remains_at_most "$SRC" $((2 * LEFT_MAX))

# The guest pauses: its writes in flight complete once the destination has them.
mig_fio_stop
kmsg_mark
check "migrate finish --wait: done" timeout 300 "$RC" migrate "$SRC" finish --wait
check_eq "state: done" "done" "$(state "$SRC")"
left=$(dmesg_since_mark | sed -n "s/.*remote-cow: $SRC: \([0-9]*\) extents left to send.*/\1/p")
check "finish had at most $LEFT_MAX extents left to send (${left:-none logged})" \
	test -n "$left" -a "${left:-999}" -le "$LEFT_MAX"
waited=$(dmesg_since_mark |
	sed -n "s/.*remote-cow: $SRC: \([0-9]*\) writes waited for the destination (mirroring).*/\1/p")
check "the guest went on writing while mirroring: at least $WAITED_MIN writes waited (${waited:-none logged})" \
	test -n "$waited" -a "${waited:-0}" -ge "$WAITED_MIN"
mig_check_moved "$SRC" "$DST"
tap_done
