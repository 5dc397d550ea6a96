#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel side of post-copy live migration, with an "rcow-nl session"
# playing the helper, against Documentation/remote-cow.rst.
#
# Destination (a table with the "incoming" feature):
# - MIGRATE_REMOTE names extents still only on the source (GET_RUNS of
#   the remote set shows them); MIGRATE_POSTCOPY commits the fills named
#   before and serves: status incoming -> postcopy, a dm event, a read held
#   before is served; MIGRATE_REMOTE, MIGRATE_FILL and a second
#   MIGRATE_POSTCOPY are then refused (ESTALE);
# - a table removed mid-post-copy leaves the COW device flagged: a table
#   without the feature is refused, one with it starts held (incoming)
#   with an empty remote set;
# - a filled extent reads back without a fault; a remote extent is
#   faulted with the REMOTE flag, a missing extent that is not remote
#   without it, and a read across both gives two runs split at the
#   boundary; the data the test writes into the COW data area before
#   FILL_DONE is exactly what the reader gets; FILL_DONE with an error
#   gives EIO, and the next read faults (REMOTE) again, never base data;
#   a discard of a remote extent changes nothing (its next read still
#   faults REMOTE); a whole-extent write to a remote extent needs no
#   fault and reads back; suspend and resume keep post-copy;
# - GET_DEVICE shows MIGRATE_STATE postcopy, TOTAL the extents named
#   remote, DONE those present; MIGRATE_COMPLETE is refused (EAGAIN)
#   while some remain and accepted after: status idle, a dm event, the
#   superblock flag cleared (a plain table loads and reads the reference
#   byte for byte).
# Source (a plain table, migrate send):
# - MIGRATE_POSTCOPY before finish is refused (ESTALE); migrate finish
#   postcopy fences and sends MIGRATE_FINISH with RCOW_MIGRATE_F_POSTCOPY;
#   MIGRATE_POSTCOPY: status postcopy, a dm event, writes still refused,
#   migrate abort refused; MIGRATE_END with an error: failed, still
#   fenced, then migrate abort is accepted; again, with a plain migrate
#   finish (no flag) and MIGRATE_POSTCOPY all the same, MIGRATE_END 0 once
#   the last round is sent: done.
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig-kernel.sh"
. "$(dirname "$0")/lib-mig-incoming.sh"

require_vm
require_cmd dmsetup losetup dd cmp timeout blkdiscard
use_rcow_fill
tap_plan 109

NAME="rc-migrate-postcopy"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
NL=$RC_TREE/selftests/progs/rcow-nl
RC=$RC_TREE/tools/remote-cow
DEST="10.99.0.2:7000"
FILLED="2 3"			# migrated before post-copy (MIGRATE_FILL)
REMOTE="5 6 7 20 21 22"		# still only on the source
CMD_REMOTE=29			# RCOW_CMD_MIGRATE_REMOTE
CMD_POSTCOPY=30			# RCOW_CMD_MIGRATE_POSTCOPY
BM_REMOTE=19			# RCOW_BITMAP_MIGRATE_REMOTE

require_built "$NL" "$RC"
# The reference: the base with the migrated and the remote extents
# changed (the source's data), and extent 21 written by the guest.
# shellcheck disable=SC2086	# lists of extents
incoming_setup migrate-postcopy $FILLED $REMOTE
head -c "$EXTB" /dev/zero | tr '\0' 'w' >"$tmp/w21"
ref_write 21 "$tmp/w21"

data_offset() { "$NL" devices 2>/dev/null | sed -n "s/^dev_id=$ID name=$NAME .* data_offset=\([0-9]*\).*/\1/p"; }
state_is() { [ "$(migrate_state)" = "$1" ]; }
faults_are() { [ "$(dm_status_field "$NAME" 4)" -eq "$1" ]; }
remote() { sess raw "$CMD_REMOTE" "dev_id:u32:$ID" "first_extent:u64:$1" "extent_count:u32:$2"; }
postcopy() { sess raw "$CMD_POSTCOPY" "dev_id:u32:$ID"; }
bg_read() {	# bg_read <name> <first extent> [extents]: one direct read
	bg_io "$1" if="$dev" of="$tmp/$1" bs=$((EXTB * ${3:-1})) skip=$(($2 * EXTB)) count=1 \
		iflag=direct,skip_bytes
}
ref_is() {	# ref_is <file> <first extent> [extents]
	cmp "$1" <(dd if="$tmp/ref" bs="$EXTB" skip="$2" count="${3:-1}" status=none)
}
# next_fault [timeout ms]: the next FAULT the session hears (other events
# skipped, in SKIPPED) in FAULT_LINE, its cookie in COOKIE; false if none
# comes.
next_fault() {
	local i
	FAULT_LINE=
	COOKIE=
	SKIPPED=
	for i in 1 2 3 4 5 6; do
		sess listen 1 "${1:-10000}"
		[ "$SESS_RC" = 0 ] || return 1
		SKIPPED+="$SESS_OUT;"
		if [[ $SESS_OUT == "FAULT dev_id=$ID "* ]]; then
			FAULT_LINE=${SESS_OUT#FAULT dev_id="$ID" }
			COOKIE=$(sed -n 's/.* cookie=\([0-9]*\).*/\1/p' <<<"$SESS_OUT")
			return 0
		fi
	done
	return 1
}
no_fault() { ! next_fault 1000; }
# fault_seen: next_fault, its line with the cookie as "C" in FAULT_SHAPE.
fault_seen() {
	FAULT_SHAPE=
	next_fault || return 0
	FAULT_SHAPE="${FAULT_LINE%% cookie=*} cookie=C"
	[[ $FAULT_LINE != *" remote" ]] || FAULT_SHAPE+=" remote"
}
answer() { sess fill-done "$ID" "$COOKIE" "$1" "${2:-0}"; [ "$SESS_RC" = 0 ]; }
dev_attrs() { sess raw get_device "dev_id:u32:$ID"; tr ' ' '\n' <<<"$SESS_OUT" | grep -E "^migrate_(state|total|done)=" | tr '\n' ' ' | sed 's/ $//'; }

# --- a post-copy interrupted by the table's removal ------------------------------
dm_create "$NAME" "$TABLE_IN" || tap_bail "cannot create $NAME"
ID=$(nl_dev_id "$NAME")
DATA_OFF=$(data_offset)
if [ -z "$ID" ] || [ -z "$DATA_OFF" ]; then tap_bail "no dev_id or data offset for $NAME"; fi
check_eq "status: incoming" incoming "$(migrate_state)"
nl_session_start
sess register
for e in $FILLED; do copy_extents "$tmp/ref" "$e"; done
fill 2 2
check_eq "MIGRATE_FILL 2+2 accepted" 0 "$SESS_RC"
remote 5 3
check_eq "MIGRATE_REMOTE 5+3 accepted" 0 "$SESS_RC"
sess_refused "MIGRATE_REMOTE past the end" ERANGE raw "$CMD_REMOTE" "dev_id:u32:$ID" \
	first_extent:u64:31 extent_count:u32:2
nl_refused "MIGRATE_REMOTE from a socket that is not the helper" EPERM raw "$CMD_REMOTE" \
	"dev_id:u32:$ID" first_extent:u64:10 extent_count:u32:1
check_eq "GET_RUNS of the remote set" "5+3" "$(nl_runs "$ID" "$BM_REMOTE")"
postcopy
check_eq "MIGRATE_POSTCOPY accepted" 0 "$SESS_RC"
check "status: postcopy" wait_until 5 state_is postcopy
check "the table line still shows the feature" grep -q " incoming$" <<<"$(dmsetup table "$NAME")"
nl_session_stop
kmsg_mark
check "remove the table mid-post-copy" dm_remove "$NAME"
check "a table without the feature is refused" bash -c "! dmsetup create $NAME --table '$TABLE'"
expect_dmesg "... with a clear error" \
	"Incoming migration not complete: load with the incoming feature"
dm_remove "$NAME"

# --- again: post-copy to the end -------------------------------------------------
check "a table with the feature loads" dmsetup create "$NAME" --table "$TABLE_IN"
at_exit "dm_remove $NAME"
ID=$(nl_dev_id "$NAME")
check_eq "... held again: status incoming" incoming "$(migrate_state)"
check_eq "... with an empty remote set" "" "$(nl_runs "$ID" "$BM_REMOTE")"
check_eq "... the fills before the post-copy were committed" "2+2" "$(nl_runs "$ID" present)"
nl_session_start
sess register
remote 5 3
check_eq "MIGRATE_REMOTE 5+3" 0 "$SESS_RC"
remote 20 3
check_eq "MIGRATE_REMOTE 20+3" 0 "$SESS_RC"
remote 2 1
check_eq "MIGRATE_REMOTE of a present extent is accepted" 0 "$SESS_RC"
check_eq "... but a present extent is not remote" "5+3 20+3" "$(nl_runs "$ID" "$BM_REMOTE")"
bg_read r5 5
sleep 1
check "a read of a remote extent is held before post-copy" test ! -e "$tmp/r5.rc"
check "no fault for it" no_fault
sess_refused "HYDRATE before post-copy" EBUSY hydrate "$ID" 0 32
ev0=$(dm_events "$NAME")
kmsg_mark
postcopy
check_eq "MIGRATE_POSTCOPY accepted" 0 "$SESS_RC"
check "status: incoming -> postcopy" wait_until 5 state_is postcopy
check "a dm event" test "$(dm_events "$NAME")" -gt "$ev0"
expect_dmesg "log: post-copy" "incoming migration in post-copy"
sess_refused "MIGRATE_REMOTE in post-copy" ESTALE raw "$CMD_REMOTE" "dev_id:u32:$ID" \
	first_extent:u64:9 extent_count:u32:1
sess_refused "MIGRATE_FILL in post-copy" ESTALE raw migrate_fill "dev_id:u32:$ID" \
	first_extent:u64:9 extent_count:u32:1
sess_refused "a second MIGRATE_POSTCOPY" ESTALE raw "$CMD_POSTCOPY" "dev_id:u32:$ID"
check_eq "GET_DEVICE: state postcopy, 6 named, none present" \
	"migrate_state=7 migrate_total=6 migrate_done=0" "$(dev_attrs)"

# The held read: a REMOTE fault.
fault_seen
check_eq "the held read: a FAULT flagged remote" "first_extent=5 extent_count=1 cookie=C remote" "$FAULT_SHAPE"
check "... still waiting for it" test ! -e "$tmp/r5.rc"
copy_extents "$tmp/ref" 5
check "FILL_DONE (the source's data in the data area)" answer 5
check "the held read completes" wait_until 10 ended r5
check_eq "... successfully" 0 "$(io_rc r5)"
check "... with the source's data" ref_is "$tmp/r5" 5

# A filled extent: no fault.
bg_read r2 2
check "a filled extent reads at once" wait_until 5 ended r2
check "... its data" ref_is "$tmp/r2" 2
check "... without a fault" no_fault

# A read across remote 6-7 and base 8-9, queued with no helper: two runs.
sess unregister
bg_read r6 6 4
check "4 faults queued with no helper" wait_until 20 faults_are 4
sess register
fault_seen
check "a helper registering hears no MIGRATE_START for a post-copy destination" \
	test "${SKIPPED/MIGRATE_START/}" = "$SKIPPED"
check_eq "remote 6-7: one run, flagged remote" "first_extent=6 extent_count=2 cookie=C remote" "$FAULT_SHAPE"
C1=$COOKIE
fault_seen
check_eq "base 8-9: another run, not flagged" "first_extent=8 extent_count=2 cookie=C" "$FAULT_SHAPE"
C2=$COOKIE
copy_extents "$tmp/ref" 6 2
COOKIE=$C1
check "FILL_DONE 6-7" answer 6
copy_extents "$base" 8 2
COOKIE=$C2
check "FILL_DONE 8-9" answer 8
check "the read completes" wait_until 10 ended r6
check "... with the source's 6-7 and the base's 8-9" ref_is "$tmp/r6" 6 4

# FILL_DONE with an error: EIO, then a REMOTE fault again.
bg_read r22 22
fault_seen
check_eq "remote 22: a REMOTE fault" "first_extent=22 extent_count=1 cookie=C remote" "$FAULT_SHAPE"
check "FILL_DONE with an error" answer 22 5
check "the read ends" wait_until 10 ended r22
check_eq "... with EIO" 1 "$(io_rc r22)"
bg_read r22b 22
fault_seen
check_eq "the next read: a REMOTE fault again, not base data" "first_extent=22 extent_count=1 cookie=C remote" "$FAULT_SHAPE"
C22=$COOKIE

# A whole-extent write to a remote extent.
check "a whole-extent write to remote 21" \
	dd if="$tmp/w21" of="$dev" bs="$EXTB" seek=21 count=1 oflag=direct status=none
check "... needs no fault" no_fault
check "... reads back" cmp <(dd if="$dev" bs="$EXTB" skip=21 count=1 iflag=direct status=none) "$tmp/w21"
check_eq "remote set: 20 and 22 left" "20+1 22+1" "$(nl_runs "$ID" "$BM_REMOTE")"
check_eq "GET_DEVICE: 4 of 6 present" "migrate_state=7 migrate_total=6 migrate_done=4" "$(dev_attrs)"
check_eq "status: postcopy 4/6" "postcopy 4/6" "$(migrate_status)"
sess_refused "MIGRATE_COMPLETE while remote extents are left" EAGAIN raw migrate_complete "dev_id:u32:$ID"

# A discard of a remote extent changes nothing; suspend and resume keep post-copy.
check "a discard of remote 20" blkdiscard -f -o $((20 * EXTB)) -l "$EXTB" "$dev"
copy_extents "$tmp/ref" 22
COOKIE=$C22
check "FILL_DONE 22" answer 22
check "the second read of 22 completes" wait_until 10 ended r22b
check "... with the source's data" ref_is "$tmp/r22b" 22
check "suspend" dmsetup suspend "$NAME"
check "resume" dmsetup resume "$NAME"
check_eq "status: still postcopy" postcopy "$(migrate_state)"
bg_read r20 20
fault_seen
check_eq "remote 20 after the discard and a resume: a REMOTE fault" "first_extent=20 extent_count=1 cookie=C remote" "$FAULT_SHAPE"
copy_extents "$tmp/ref" 20
check "FILL_DONE 20" answer 20
check "the read completes" wait_until 10 ended r20
check "... with the source's data" ref_is "$tmp/r20" 20
check_eq "the remote set is empty" "" "$(nl_runs "$ID" "$BM_REMOTE")"
sleep 0.5
check_eq "extents from the source are WRITTEN" "2+2 5+3 20+3" "$(nl_runs "$ID" written)"

# Complete.
ev0=$(dm_events "$NAME")
kmsg_mark
sess raw migrate_complete "dev_id:u32:$ID"
check_eq "MIGRATE_COMPLETE accepted" 0 "$SESS_RC"
check "status: postcopy -> idle" wait_until 5 state_is idle
check "a dm event" test "$(dm_events "$NAME")" -gt "$ev0"
expect_dmesg "log: complete" "incoming migration complete"
check "the table line no longer shows the feature" bash -c "! dmsetup table $NAME | grep -q ' incoming$'"
nl_session_stop
helper_start || tap_bail "rcow-fill does not start"
check "the device equals the reference byte for byte" cmp "$dev" "$tmp/ref"
check "remove" dm_remove "$NAME"
check "a plain table loads (the flag is cleared)" dmsetup create "$NAME" --table "$TABLE"
check "... and reads the reference" cmp "$dev" "$tmp/ref"
check "remove" dm_remove "$NAME"
helper_stop

# --- the source ---------------------------------------------------------------------
NAME="rc-migrate-postcopy-src"
file_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
ID=$(nl_dev_id "$NAME")
[ -n "$ID" ] || tap_bail "no dev_id for $NAME"
for e in 0 1 2; do write_extent "$e" $((65 + e)); done
nl_session_helper "$NAME"
msg_ok "migrate send $DEST" migrate send "$DEST"
drain_events
sess_refused "MIGRATE_POSTCOPY while copying" ESTALE raw "$CMD_POSTCOPY" "dev_id:u32:$ID"
msg_refused "migrate finish with a wrong word" "Invalid argument" \
	"usage: migrate send <host:port> | migrate finish [postcopy] | migrate abort" \
	migrate finish later
msg_ok "migrate finish postcopy" migrate finish postcopy
check "the helper hears MIGRATE_FINISH with RCOW_MIGRATE_F_POSTCOPY" \
	event "$(ev MIGRATE_FINISH 3 0 0 0) postcopy"
sess_refused "MIGRATE_REMOTE on a source" ESTALE raw "$CMD_REMOTE" "dev_id:u32:$ID" \
	first_extent:u64:0 extent_count:u32:1
ev0=$(dm_events "$NAME")
postcopy
check_eq "MIGRATE_POSTCOPY accepted" 0 "$SESS_RC"
check_eq "status: postcopy" postcopy "$(migrate_state)"
check "a dm event" test "$(dm_events "$NAME")" -gt "$ev0"
check "writes are refused" write_fails 4
msg_refused "migrate abort in post-copy" "Device or resource busy" \
	"migrate abort refused: post-copy" migrate abort
end_migration 5 link-lost
check_eq "MIGRATE_END with an error accepted" 0 "$SESS_RC"
check_eq "status: failed" failed "$(migrate_state)"
check "still fenced: writes are refused" write_fails 4
msg_ok "migrate abort once failed" migrate abort
check "writable again" write_extent 4 70

msg_ok "migrate send again" migrate send "$DEST"
drain_events
msg_ok "a plain migrate finish" migrate finish
check "... MIGRATE_FINISH without RCOW_MIGRATE_F_POSTCOPY" event "$(ev MIGRATE_FINISH 3 0 0 0)"
postcopy
check_eq "MIGRATE_POSTCOPY (the helper chose post-copy) accepted" 0 "$SESS_RC"
end_migration 0
check_eq "MIGRATE_END 0 with extents left: refused" 1 "$SESS_RC"
round
drain_events
mark 1 0 5
check_eq "the last round sent" 0 "$SESS_RC"
end_migration 0
check_eq "MIGRATE_END 0 accepted" 0 "$SESS_RC"
check_eq "status: done" "done" "$(migrate_state)"
check "still fenced" write_fails 4
nl_session_stop
tap_done
