#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# remote-cowd --migrate-mirror always: the source mirrors from its first
# round (the bulk of the written extents), so an extent the guest rewrites
# goes again once per write that waited for it, never as part of a whole
# round the guest outran.  The same guest and link as migrate-mirror.sh:
# 16 Mbit/s on loopback, fio writing 64 KiB blocks at random over 16 MiB
# as fast as it can.
#
# - the state is mirroring while the bulk is still on its way (less than
#   half of the written extents sent), and remote-cowd logs why;
# - with fio still writing, what is left drains to a handful of extents;
# - once the guest stopped, the source takes an empty round every 0.2 s
#   while it waits for migrate finish: remote-cowd -v logs the first (it
#   waits for writes or finish), and no other in the next 3 s;
# - after the pause, 'migrate finish --wait' ends done, and the extents
#   sent in all (migrate_done) are at most the written extents plus the
#   writes that waited (each rewrote one extent) plus the writes in
#   flight: nothing went twice but for a write.  (In auto mode this guest
#   makes the rounds resend the whole region before mirroring begins.)
# - the destination equals the source, byte for byte.
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp fio psktool tc
tap_plan 11

PORT=17741
LEFT_MAX=8		# 4 writes in flight, each over at most 2 extents
mig_setup migrate-mirror-always --migrate-mirror always

SRC="rc-mia-src"
DST="rc-mia-dst"
mig_outrun_start "$SRC" "$DST"
wait_until 600 state_is "$SRC" mirroring >/dev/null
done_at=$(rc_status "$SRC" migrate_done)
written_at=$(rc_status "$SRC" written)
check "mirroring while the bulk is on its way ($done_at of $written_at written extents sent)" \
	test "$(state "$SRC")" = mirroring -a $((2 * done_at)) -lt "$written_at"
check "remote-cowd logged why" logged "$SRC: migrate_mirror always: mirroring from round 1"
check "with the guest still writing, what is left drains to at most $LEFT_MAX extents" \
	wait_until 1200 remains_at_most "$SRC" "$LEFT_MAX"

mig_fio_stop
# src_rounds: remote-cowd's lines for the source's rounds.
src_rounds() { grep "device $SRC: round [0-9]*: [0-9]* extents sent" "$HELPER_LOG"; }
# waits_logged: the last of them is an empty round that waits.
waits_logged() {
	src_rounds | tail -n 1 |
		grep -q ": 0 extents sent; nothing left: waiting for writes or migrate finish"
}
check "guest stopped: remote-cowd logs an empty round, waiting for writes or migrate finish" \
	wait_until 60 waits_logged
sleep 3
check_eq "... and no other empty round in the next 3 s (one every 0.2 s)" 1 \
	"$(src_rounds | awk '/: 0 extents sent/ { n++; next } { n = 0 } END { print n + 0 }')"
tap_diag "$(src_rounds | tail -n 4)"
kmsg_mark
check "migrate finish --wait: done" timeout 300 "$RC" migrate "$SRC" finish --wait
check_eq "state: done" "done" "$(state "$SRC")"
waited=$(dmesg_since_mark |
	sed -n "s/.*remote-cow: $SRC: \([0-9]*\) writes waited for the destination (mirroring).*/\1/p")
sent=$(rc_status "$SRC" migrate_done)
written=$(rc_status "$SRC" written)
check "extents sent $sent <= written $written + writes that waited ${waited:-?} + $LEFT_MAX" \
	test -n "$waited" -a "$sent" -le $((written + ${waited:-0} + LEFT_MAX))
mig_check_moved "$SRC" "$DST"
tap_done
