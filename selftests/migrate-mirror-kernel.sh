#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Live migration's write mirroring, the kernel side, with an "rcow-nl
# session" playing the helper (no network, no daemon), against
# Documentation/remote-cow.rst ("Live migration (source)", mirroring):
#
# - MIGRATE_ROUND with FLAGS RCOW_MIGRATE_F_MIRROR switches a copying
#   migration to mirroring with that round's swap (status "mirroring", a
#   dm event, a log line); an unknown flag is refused (EINVAL);
# - from then on a write completes only once a round taken after it was
#   marked sent for all its extents: it waits (the helper hears
#   MIGRATE_WAITING when the first write starts to wait) through a mark
#   of the round before it, through the round that takes it, and ends
#   with the mark of its extent; a write over two extents waits for
#   both marks; a whole-extent write to a missing extent waits the same;
#   the data read back is the write's;
# - the held writes are let go, never lost, by migrate abort (status
#   idle), by a suspend (which completes; after the resume writes wait
#   again), by the helper's exit (state back to copying, logged);
# - migrate finish while mirroring logs how many extents are left; a
#   held write is let go by the last round's mark; the migration ends
#   done;
# - MIGRATE_END with an error and RCOW_MIGRATE_F_KEEP_FENCE (the helper
#   cannot tell whether the destination took over): failed, but writes
#   still fail, a new migrate send is refused (EBUSY), a table reload
#   keeps the fence (the new table starts failed), and only migrate abort
#   makes the device writable (also after a reload); an unknown flag is
#   refused (EINVAL).
# TIMEOUT=600
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig-kernel.sh"

require_vm
require_cmd dmsetup losetup dd cmp timeout
tap_plan 93

NAME="rc-migrate-mirror"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
NL=$RC_TREE/selftests/progs/rcow-nl
DEST="10.99.0.2:7000"

require_built "$NL"
file_test_setup "$BASE_BYTES" migrate-mirror
file_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
tmp=$NET_WORKDIR

ID=$(nl_dev_id "$NAME")
[ -n "$ID" ] || tap_bail "no dev_id for $NAME"

# held <extent> <byte> <done file> [extents]: a direct write of <extents>
# (1) extents of that byte in the background, the file created once it
# completed; its pid in BGW.
held() {
	local n=${4:-1}
	{ head -c $((EXTB * n)) /dev/zero | tr '\0' "\\$(printf '%03o' "$2")" |
		dd of="$dev" bs=$((EXTB * n)) seek=$(($1 / n)) iflag=fullblock oflag=direct \
			status=none && touch "$3"; } &
	BGW=$!
	at_exit "kill $BGW 2>/dev/null"
}
# still_waits <done file>: not completed, a second later.
still_waits() { sleep 1; test ! -e "$1"; }
done_soon() { wait_until 50 test -e "$1"; }

# --- copying, then mirroring ---------------------------------------------------
for e in 0 1 2 3 4 5 6 7; do write_extent "$e" $((65 + e)); done
nl_session_helper "$NAME"
msg_ok "migrate send $DEST" migrate send "$DEST"
check "MIGRATE_START" event "$(ev MIGRATE_START 1 0 0 0)"
round
check "round 1: the 8 written extents" event "$(ev MIGRATE_ROUND 1 1 8 0)"
mark 1 0 32
check_eq "status: copying 8/8" "copying 8/8" "$(migrate_status)"
sess_refused "MIGRATE_ROUND with an unknown flag" EINVAL raw migrate_round "dev_id:u32:$ID" \
	flags:u32:2
ev1=$(dm_events "$NAME")
kmsg_mark
mirror_round
check_eq "MIGRATE_ROUND with RCOW_MIGRATE_F_MIRROR accepted" 0 "$SESS_RC"
check "round 2 comes, mirroring" event "$(ev MIGRATE_ROUND 2 2 8 8)"
check_eq "status: mirroring 8/8" "mirroring 8/8" "$(migrate_status)"
check "a dm event when mirroring starts" test "$(dm_events "$NAME")" -gt "$ev1"
expect_dmesg "log: mirroring" "migration to $DEST mirroring: writes wait for the destination"

# --- a write waits for a round after it ---------------------------------------
held 3 120 "$tmp/a"
wa=$BGW
check "the helper hears MIGRATE_WAITING" event "$(ev MIGRATE_WAITING 2 2 8 8)"
check "the write to extent 3 waits" still_waits "$tmp/a"
check_eq "... its extent is in the change set" "3+1" "$(nl_runs "$ID" dirty-migrate)"
mark 2 3 1
check "a mark of the round before it does not let it go" still_waits "$tmp/a"
round
check "round 3 takes extent 3" event "$(ev MIGRATE_ROUND 2 3 9 8)"
check_eq "round 3: extent 3" "3+1" "$(nl_runs "$ID" migrate-round)"
check "the round taken, not yet sent: it waits" still_waits "$tmp/a"
mark 3 3 1
check "extent 3 marked sent: the write completes" done_soon "$tmp/a"
wait_pid "$wa" 10
check_eq "... successfully" 0 "$?"
check "extent 3 reads back the write" extent_is 3 120
check_eq "status: mirroring 9/9" "mirroring 9/9" "$(migrate_status)"

# --- a write over two extents waits for both -----------------------------------
held 4 121 "$tmp/b" 2
wb=$BGW
check "a write over extents 4-5: MIGRATE_WAITING" event "$(ev MIGRATE_WAITING 2 3 9 9)"
round
check "round 4" event "$(ev MIGRATE_ROUND 2 4 11 9)"
check_eq "round 4: extents 4-5" "4+2" "$(nl_runs "$ID" migrate-round)"
mark 4 4 1
check "extent 4 sent, 5 not: the write waits" still_waits "$tmp/b"
mark 4 5 1
check "both sent: it completes" done_soon "$tmp/b"
wait_pid "$wb" 10
check_eq "... successfully" 0 "$?"
check "extents 4-5 read back the write" extent_is 4 121 2

# --- a whole-extent write to a missing extent ----------------------------------
held 20 122 "$tmp/c"
wc=$BGW
check "a whole-extent write to missing extent 20: MIGRATE_WAITING" \
	event "$(ev MIGRATE_WAITING 2 4 11 11)"
check "it waits" still_waits "$tmp/c"
round
check "round 5" event "$(ev MIGRATE_ROUND 2 5 12 11)"
check_eq "round 5: extent 20" "20+1" "$(nl_runs "$ID" migrate-round)"
mark 5 20 1
check "marked sent: it completes" done_soon "$tmp/c"
wait_pid "$wc" 10
check_eq "... successfully" 0 "$?"
check "extent 20 reads back the write" extent_is 20 122

# --- abort lets the held writes go -----------------------------------------------
held 6 123 "$tmp/d"
wd=$BGW
check "a write to extent 6 waits" event "$(ev MIGRATE_WAITING 2 5 12 12)"
kmsg_mark
msg_ok "migrate abort while mirroring" migrate abort
check "the held write completes" done_soon "$tmp/d"
wait_pid "$wd" 10
check_eq "... successfully" 0 "$?"
check "extent 6 reads back the write" extent_is 6 123
check_eq "status: idle" "idle 0/0" "$(migrate_status)"
expect_dmesg "log: aborted while mirroring" "migration to $DEST aborted \(was mirroring\)"
drain_events

# --- a suspend lets them go; after the resume writes wait again -----------------
msg_ok "migrate send again" migrate send "$DEST"
check "MIGRATE_START" event "$(ev MIGRATE_START 1 0 0 0)"
mirror_round
check "round 1, mirroring at once" event "$(ev MIGRATE_ROUND 2 1 9 0)"
mark 1 0 32
held 7 124 "$tmp/e"
we=$BGW
check "a write to extent 7 waits" event "$(ev MIGRATE_WAITING 2 1 9 9)"
check "a suspend completes with a write held" timeout 30 dmsetup suspend "$NAME"
check "... and the held write completed" done_soon "$tmp/e"
wait_pid "$we" 10
check_eq "... successfully" 0 "$?"
check "resume" dmsetup resume "$NAME"
check_eq "status: still mirroring" "mirroring 9/9" "$(migrate_status)"
drain_events
check "extent 7 is in the change set" test "$(nl_runs "$ID" dirty-migrate)" = "7+1"
held 1 125 "$tmp/f"
wf=$BGW
check "after the resume a write waits again" event "$(ev MIGRATE_WAITING 2 1 9 9)"
check "... (still waiting)" still_waits "$tmp/f"

# --- the helper's exit lets them go -----------------------------------------------
kmsg_mark
nl_session_stop
check "the helper gone: the held write completes" done_soon "$tmp/f"
wait_pid "$wf" 10
check_eq "... successfully" 0 "$?"
check_eq "status: copying again" "copying 9/9" "$(migrate_status)"
expect_dmesg "log: helper gone while mirroring" \
	"helper gone while mirroring: writes no longer wait"
check "a write now completes at once" timeout 10 bash -c "$(declare -f bytes_of write_byte_extent); write_byte_extent $dev $EXTB 2 126"
check "... and extent 2 reads it back" extent_is 2 126

# --- finish while mirroring --------------------------------------------------------
nl_session_helper "$NAME"
check "the new helper hears MIGRATE_START" event "$(ev MIGRATE_START 1 1 9 9)"
mirror_round
check "round 2, mirroring" event "$(ev MIGRATE_ROUND 2 2 12 9)"
held 8 127 "$tmp/g"
wg=$BGW
check "a write to extent 8 waits" event "$(ev MIGRATE_WAITING 2 2 12 9)"
kmsg_mark
msg_ok "migrate finish while mirroring, a write held" migrate finish
check "MIGRATE_FINISH" event "$(ev MIGRATE_FINISH 3 2 12 9)"
expect_dmesg "log: extents left at finish" "$NAME: 4 extents left to send"
check "the held write still waits" still_waits "$tmp/g"
mark 2 0 32
round
check "the last round: extent 8" event "$(ev MIGRATE_ROUND 3 3 13 12)"
mark 3 0 32
check "the last round sent: the write completes" done_soon "$tmp/g"
wait_pid "$wg" 10
check_eq "... successfully" 0 "$?"
sess raw migrate_end "dev_id:u32:$ID" status:u32:0
check_eq "MIGRATE_END 0 accepted: done" "0 done 13/13" "$SESS_RC $(migrate_status)"
expect_dmesg "log: the writes that waited" "$NAME: 3 writes waited for the destination \(mirroring\)"

# --- a failure whose outcome is unknown keeps the fence -------------------------
nl_session_stop
dm_remove "$NAME"
dm_create "$NAME" "$DEV_TABLE" || tap_bail "cannot create $NAME again"
ID=$(nl_dev_id "$NAME")
nl_session_helper "$NAME"
msg_ok "a new table: migrate send" migrate send "$DEST"
check "MIGRATE_START" event "$(ev MIGRATE_START 1 0 0 0)"
msg_ok "migrate finish" migrate finish
check "MIGRATE_FINISH" event "$(ev MIGRATE_FINISH 3 0 0 0)"
sess_refused "MIGRATE_END with an unknown flag" EINVAL raw migrate_end "dev_id:u32:$ID" \
	status:u32:5 flags:u32:4
kmsg_mark
sess raw migrate_end "dev_id:u32:$ID" status:u32:5 flags:u32:2 message:str:committed_lost
check_eq "MIGRATE_END 5 with RCOW_MIGRATE_F_KEEP_FENCE: failed" "0 failed 0/0" \
	"$SESS_RC $(migrate_status)"
check "... and still fenced: a write fails" write_fails 1
expect_dmesg "log: the destination may have taken over" \
	"the destination may have taken over: the device stays fenced"
msg_refused "migrate send while the outcome is unknown (EBUSY)" "Device or resource busy" \
	"the last migration's outcome is unknown" migrate send "$DEST"
reload() { dmsetup suspend "$NAME" && dmsetup load "$NAME" --table "$DEV_TABLE" &&
	dmsetup resume "$NAME"; }
check "a table reload" reload
check_eq "the new table: failed, still fenced" "failed 0/0" "$(migrate_status)"
check "... a write fails" write_fails 1
msg_ok "migrate abort: the operator's decision" migrate abort
check_eq "status: idle" "idle 0/0" "$(migrate_status)"
check "writable again" write_extent 1 128
check "... and reads it back" extent_is 1 128
check "another reload" reload
check "... still writable" write_extent 1 129
nl_session_stop
tap_done
