#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel side of live migration's source, with an "rcow-nl session"
# playing the helper (no network, no daemon), against
# Documentation/remote-cow.rst.  The COW device's data area is behind
# dm-delay (every write held DELAY_MS), so that writes can be caught in
# flight.
#
# - migrate send refuses a malformed HOST:PORT (EINVAL), starts a
#   migration (status "copying", MIGRATE_START to the helper with the
#   destination, a dm event); the first round's change set is WRITTEN;
# - a second migrate send and a snapshot commit are refused (EBUSY) while
#   it runs;
# - a round (MIGRATE_ROUND) moves the change set into the round set,
#   which GET_RUNS dumps, and clears it; writes completed during copying
#   are exactly the next round's runs; marks (MIGRATE_MARK) empty the
#   round set and count in the status (done/total); a mark of another
#   round (ESTALE), past the end (ERANGE), from another socket (EPERM) is
#   refused;
# - a write in flight when the helper asks for a round is waited for and
#   is in that round; a write issued while the round waits (the gate
#   closed) is not: it is in the next one;
# - migrate finish waits for a write in flight (it completes, and is in
#   the last round), then fences: writes and discards fail with EIO and a
#   log line, reads go on; MIGRATE_END 0 is refused (EAGAIN) until the
#   last round is taken and sent, then the migration is done (dm event,
#   log); the fence holds across a suspend and resume and a table reload
#   (until the table is removed); migrate abort is refused once done
#   (EPERM);
# - migrate abort during finishing lifts the fence: the helper hears
#   MIGRATE_ABORT, status idle, the device writable; a helper's error
#   (MIGRATE_END with a status) fails the migration and lifts the fence;
# - migrate send is refused on a read-only table (EROFS).
# TIMEOUT=600
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig-kernel.sh"

require_vm
require_cmd dmsetup losetup dd cmp timeout blkdiscard
require_dm_target delay
tap_plan 109

NAME="rc-migrate-kernel"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
DELAY_MS=4000
NL=$RC_TREE/selftests/progs/rcow-nl
DEST="10.99.0.2:7000"

require_built "$NL"
file_test_setup "$BASE_BYTES" migrate-kernel
slow_cow_data rc-migrate-slowcow "$BASE_BYTES" "$EXTB" "$DELAY_MS" ||
	tap_bail "no slow COW device"
file_test_device "$NAME" "$LEN" "$EXT" "$SLOW_COW"
dev=/dev/mapper/$NAME
TABLE=$DEV_TABLE

ID=$(nl_dev_id "$NAME")
[ -n "$ID" ] || tap_bail "no dev_id for $NAME"


# --- before: extents 0-7 written ------------------------------------------
for e in 0 1 2 3 4 5 6 7; do write_extent "$e" $((65 + e)); done
check_eq "8 extents written" 8 "$(dm_status_field "$NAME" 3)"
nl_session_helper "$NAME"

# --- bad destinations --------------------------------------------------------
for bad in nohost :7000 host: host:0 host:65536 host:7x "-h:80" "a_b:80" "[zz]:80" \
	"$(printf 'h%.0s' {1..300}):80" "$(printf 'h%.0s' {1..254}):65535"; do
	msg_refused "migrate send '${bad:0:20}' (${#bad} bytes) refused" "Invalid argument" \
		"is not HOST:PORT" migrate send "$bad"
done
msg_refused "migrate send with two destinations" "Invalid argument" \
	"usage: migrate send <host:port>" migrate send a:1 b:2
check_eq "nothing started" "idle 0/0" "$(migrate_status)"


# --- a snapshot commit running: no migration -----------------------------------
msg_ok "snapshot commit" snapshot commit nbd://10.99.0.1:10809/x
msg_refused "migrate send during a snapshot commit" "Device or resource busy" \
	"migrate send: snapshot commit 1 is still running" migrate send "$DEST"
msg_ok "snapshot abort" snapshot abort
drain_events

# --- start: the first round's set is WRITTEN ---------------------------------
ev0=$(dm_events "$NAME")
msg_ok "migrate send $DEST" migrate send "$DEST"
check_eq "status: copying 0/0" "copying 0/0" "$(migrate_status)"
check "a dm event at the start" test "$(dm_events "$NAME")" -gt "$ev0"
check "the helper hears MIGRATE_START with the destination" \
	event "$(ev MIGRATE_START 1 0 0 0)"
check_eq "the change set is WRITTEN: 0-7" "0+8" "$(nl_runs "$ID" dirty-migrate)"
check_eq "the round set is empty" "" "$(nl_runs "$ID" migrate-round)"
msg_refused "a second migrate send" "Device or resource busy" \
	"migrate send: a migration is running" migrate send "$DEST"
msg_refused "snapshot commit during the migration" "Device or resource busy" \
	"snapshot commit: a migration is running" snapshot commit nbd://10.99.0.1/x

# --- round 1, writes during copying are the next round ------------------------
round
check_eq "MIGRATE_ROUND accepted" 0 "$SESS_RC"
check "the helper hears round 1: 8 extents" event "$(ev MIGRATE_ROUND 1 1 8 0)"
check_eq "round 1: extents 0-7" "0+8" "$(nl_runs "$ID" migrate-round)"
check_eq "the change set is cleared" "" "$(nl_runs "$ID" dirty-migrate)"
write_extent 3 110
write_extent 12 111
write_extent 13 112
check_eq "writes during copying: exactly 3, 12-13 in the change set" "3+1 12+2" \
	"$(nl_runs "$ID" dirty-migrate)"
# GET_RUNS with EXTENT_COUNT (version 9): the dump stops there, a run
# across it is cut (what a copying round's piece asks for)
check_eq "GET_RUNS of 10 extents from 3: 3, 12 (13 is past the end)" "3+1 12+1" \
	"$("$RC_TREE/selftests/progs/rcow-nl" runs "$ID" dirty-migrate 3 10 2>&1 | tr '\n' ' ' |
		sed 's/ $//')"
check_eq "GET_RUNS of 2 extents from 12: 12-13" "12+2" \
	"$("$RC_TREE/selftests/progs/rcow-nl" runs "$ID" dirty-migrate 12 2 2>&1 | tr '\n' ' ' |
		sed 's/ $//')"
mark 1 0 8
check_eq "MIGRATE_MARK round 1, 0-7 accepted" 0 "$SESS_RC"
check_eq "status: copying 8/8" "copying 8/8" "$(migrate_status)"
check_eq "round set empty" "" "$(nl_runs "$ID" migrate-round)"
round
check "round 2: 3 new extents (11 in all, 8 sent)" event "$(ev MIGRATE_ROUND 1 2 11 8)"
check_eq "round 2: exactly 3, 12-13" "3+1 12+2" "$(nl_runs "$ID" migrate-round)"
check_eq "status: copying 8/11" "copying 8/11" "$(migrate_status)"
sess_refused "a mark of round 1 now" ESTALE raw migrate_mark "dev_id:u32:$ID" \
	migrate_round:u64:1 first_extent:u64:3 extent_count:u32:1
sess_refused "a mark past the end" ERANGE raw migrate_mark "dev_id:u32:$ID" \
	migrate_round:u64:2 first_extent:u64:30 extent_count:u32:4
nl_refused "a mark from a socket that is not the helper" EPERM raw migrate_mark \
	"dev_id:u32:$ID" migrate_round:u64:2 first_extent:u64:3 extent_count:u32:1
nl_refused "a round asked by a socket that is not the helper" EPERM raw migrate_round \
	"dev_id:u32:$ID"
mark 2 12 1
check_eq "a partial mark: status copying 9/11" "copying 9/11" "$(migrate_status)"

# --- writes in flight at the swap ----------------------------------------------
# Extent 5: in flight at the COW device when the round is asked for (the
# swap drains it: it is in round 3).  Extent 6: issued while the swap waits
# for extent 5 (the gate is closed: it goes through the worker, after the
# swap: next round).  Both extents are present and recorded as changed, so
# with the gate open both would go straight to the COW device.
tmp=$NET_WORKDIR
# in_flight <extent> <byte> <done file>: write_extent in the background,
# the file created once it completed; its pid in BGW.
in_flight() { { write_extent "$1" "$2" && touch "$3"; } & BGW=$!; at_exit "kill $BGW 2>/dev/null"; }
# done_soon <done file>: the write had completed (its shell may take a
# moment to create the file; a write still in flight takes seconds).
done_soon() { wait_until 1 test -e "$1"; }
in_flight 5 113 "$tmp/a"
wa=$BGW
sleep 1
check "the write to extent 5 is in flight" test ! -e "$tmp/a"
round
sleep 0.3
in_flight 6 114 "$tmp/b"
wb=$BGW
check "round 3 comes" event "$(ev MIGRATE_ROUND 1 3 12 9)"
check "... once the write in flight completed (the swap drains it)" done_soon "$tmp/a"
check_eq "round 3: the leftovers 3 and 13, and 5 (in flight at the swap)" \
	"3+1 5+1 13+1" "$(nl_runs "$ID" migrate-round)"
wait_pid "$wa" 10
check_eq "the write in flight at the swap completed" 0 "$?"
wait_pid "$wb" 10
check_eq "the write issued during the swap completed" 0 "$?"
check_eq "extent 6, written during the swap, is in the next round's set" "6+1" \
	"$(nl_runs "$ID" dirty-migrate)"

# --- finish: drain, fence ---------------------------------------------------------
in_flight 7 115 "$tmp/c"
wa=$BGW
sleep 1
ev1=$(dm_events "$NAME")
kmsg_mark
check "the write to extent 7 is in flight" test ! -e "$tmp/c"
msg_ok "migrate finish (with a write in flight)" migrate finish
check "migrate finish returned once it completed (drained)" done_soon "$tmp/c"
wait_pid "$wa" 10
check_eq "the write in flight at finish completed" 0 "$?"
check_eq "status: finishing" "finishing 9/12" "$(migrate_status)"
check "a dm event at finish" test "$(dm_events "$NAME")" -gt "$ev1"
check "the helper hears MIGRATE_FINISH" event "$(ev MIGRATE_FINISH 3 3 12 9)"
check "a write now fails" write_fails 20
check "a write to a written extent fails" write_fails 0
check "a discard fails" bash -c "! blkdiscard -f -o $((2 * EXTB)) -l $EXTB $dev"
expect_dmesg "log: write refused, fenced" "refused: the device is migrating away \(fenced\)"
expect_dmesg "log: the message received, before the fence (where the downtime starts)" \
	"$NAME: migrate finish: fencing"
check "reads go on: extent 0 as written" extent_is 0 65
check "extent 7 holds the write that was in flight at finish" extent_is 7 115
check_eq "the change set: 6 and 7 (the write in flight at finish)" "6+2" \
	"$(nl_runs "$ID" dirty-migrate)"
end_migration 0
check "MIGRATE_END 0 before the last round: EAGAIN" \
	test "$SESS_RC" = 1 -a -n "$(grep -o "error: EAGAIN" <<<"$SESS_OUT")"
msg_refused "migrate finish again" "Operation already in progress" \
	"already finishing or done" migrate finish
round
check "the last round: 6 and 7 (14 in all)" event "$(ev MIGRATE_ROUND 3 4 14 9)"
check_eq "round 4: 3, 5-7, 13" "3+1 5+3 13+1" "$(nl_runs "$ID" migrate-round)"
end_migration 0
check "MIGRATE_END 0 with extents unsent: EAGAIN" \
	test "$SESS_RC" = 1 -a -n "$(grep -o "error: EAGAIN" <<<"$SESS_OUT")"
mark 4 0 32
check_eq "status: finishing 14/14" "finishing 14/14" "$(migrate_status)"
ev1=$(dm_events "$NAME")
kmsg_mark
end_migration 0
check_eq "MIGRATE_END 0 accepted" 0 "$SESS_RC"
check_eq "status: done 14/14" "done 14/14" "$(migrate_status)"
check "a dm event when done" test "$(dm_events "$NAME")" -gt "$ev1"
expect_dmesg "log: done" "migration to $DEST done: 14 extents in 4 rounds"
check "done: writes still fail" write_fails 1
check "suspend and resume" bash -c "dmsetup suspend $NAME && dmsetup resume $NAME"
check "after the resume, writes still fail" write_fails 1
check "reads go on" extent_is 1 66
check "a table reload" bash -c "dmsetup suspend $NAME && dmsetup load $NAME --table '$TABLE' && dmsetup resume $NAME"
check_eq "the new table: done, fenced" "done 0/0" "$(migrate_status)"
check "after the reload, writes still fail" write_fails 1
msg_refused "migrate abort once done" "Operation not permitted" \
	"the migration is done" migrate abort
msg_refused "migrate send once done" "Device or resource busy" \
	"the device migrated away" migrate send "$DEST"

# --- a new table; abort during finishing lifts the fence ---------------------------
dm_remove "$NAME"
dm_create "$NAME" "$TABLE" || tap_bail "cannot create $NAME again"
ID=$(nl_dev_id "$NAME")
drain_events
check "a new table over the COW device is writable" write_extent 1 116
msg_ok "migrate send" migrate send "$DEST"
check "MIGRATE_START" event "$(ev MIGRATE_START 1 0 0 0)"
msg_ok "migrate finish" migrate finish
check "MIGRATE_FINISH" event "$(ev MIGRATE_FINISH 3 0 0 0)"
check "fenced" write_fails 2
ev1=$(dm_events "$NAME")
kmsg_mark
msg_ok "migrate abort during finishing" migrate abort
check "the helper hears MIGRATE_ABORT" event "$(ev MIGRATE_ABORT 0 0 0 0)"
check_eq "status: idle 0/0" "idle 0/0" "$(migrate_status)"
check "a dm event at the abort" test "$(dm_events "$NAME")" -gt "$ev1"
expect_dmesg "log: aborted" "migration to $DEST aborted \(was finishing\)"
check "the device is writable again" write_extent 2 117
check "... and reads it back" extent_is 2 117
check_eq "the sets are empty" "/" "$(nl_runs "$ID" dirty-migrate)/$(nl_runs "$ID" migrate-round)"

# --- a helper's error fails the migration ------------------------------------------
msg_ok "migrate send again" migrate send "$DEST"
sess listen 1 5000
msg_ok "migrate finish" migrate finish
kmsg_mark
end_migration 5 destination_gone
check_eq "MIGRATE_END 5 accepted" 0 "$SESS_RC"
check_eq "status: failed" "failed 0/0" "$(migrate_status)"
expect_dmesg "log: the helper's reason" "failed: the helper reports error 5: destination_gone"
check "a failed migration lifts the fence" write_extent 3 118
msg_ok "migrate abort after a failure: back to idle" migrate abort
check_eq "status: idle" "idle 0/0" "$(migrate_status)"

# --- read-only table --------------------------------------------------------------
kill "$NLS_PID" 2>/dev/null
dm_remove "$NAME"
dmsetup create --readonly "$NAME" --table "$TABLE" || tap_bail "no read-only table"
msg_refused "migrate send on a read-only table" "Read-only file system" \
	"migrate send: the table is read-only" migrate send "$DEST"
check "remove" dm_remove "$NAME"
tap_done
