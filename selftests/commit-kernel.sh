#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel side of snapshot commit, with an "rcow-nl session" playing
# the helper (no network, no daemon), against Documentation/remote-cow.rst:
#
# - snapshot commit freezes the written extents as generation 1: status
#   "uploading 0/N 1", the helper hears COMMIT_START, the upload and held
#   sets (GET_RUNS 16 and 17) are the written extents;
# - a second commit while one runs is refused (EBUSY), so is COMMIT_END 0
#   while extents are not uploaded (EAGAIN), a mark of another generation
#   (ESTALE), from another socket (EPERM) or past the end (ERANGE);
# - a guest write to a frozen extent waits until the helper marks it
#   preserved (it is sent PRESERVE), while reads and writes elsewhere go
#   on; the frozen extent reads its old content until then;
# - a frozen extent the helper marks preserved ahead, with no write waiting
#   on it, leaves the held set (not the upload set), and a later write to
#   it completes at once with no PRESERVE sent;
# - marking every extent uploaded and COMMIT_END 0 make the commit done
#   (status, dm event, log line); the next since-last commit freezes only
#   the extents written since (exact change tracking);
# - snapshot abort and a helper's error fail the commit, release held
#   writes and keep the frozen extents for the next commit; a suspend
#   fails a running commit and releases a held write;
# - the commit generation and the frozen set of a failed commit survive a
#   table reload.
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup dd cmp timeout
tap_plan 60

NAME="rc-commit-kernel"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
NL=$RC_TREE/selftests/progs/rcow-nl
URI="nbd://10.99.0.1:10809/new"
# Commands and attributes by number (dm-remote-cow/uapi/remote_cow.h).
CMD_COMMIT_MARK=16
CMD_COMMIT_END=17
A_DEV_ID=2 A_FIRST=12 A_COUNT=13 A_STATUS=15 A_GEN=22 A_MARK=28 A_MESSAGE=29
PRESERVED=1 UPLOADED=2

require_built "$NL"
file_test_setup "$BASE_BYTES" commit-kernel
file_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
TABLE=$DEV_TABLE

dev_id() { nl_dev_id "$NAME"; }
ID=$(dev_id)
[ -n "$ID" ] || tap_bail "no dev_id for $NAME"

# commit_status: "<state> <done>/<total> <gen>" from the status line.
commit_status() { dmsetup status "$NAME" | awk '{ print $9, $10, $11 }'; }
commit_is() { [ "$(commit_status)" = "$1" ]; }
events() { dm_events "$NAME"; }
runs() { nl_runs "$ID" "$1"; }
mark() {	# mark <gen> <first> <count> <kind>: from the session
	sess raw "$CMD_COMMIT_MARK" "$A_DEV_ID:u32:$ID" "$A_GEN:u64:$1" \
		"$A_FIRST:u64:$2" "$A_COUNT:u32:$3" "$A_MARK:u32:$4"
}
end_commit() {	# end_commit <gen> <status> [message]
	local msg=()
	[ -z "${3:-}" ] || msg=("$A_MESSAGE:str:$3")
	sess raw "$CMD_COMMIT_END" "$A_DEV_ID:u32:$ID" "$A_GEN:u64:$1" \
		"$A_STATUS:u32:$2" "${msg[@]}"
}
# write_extent <extent> <byte>: one whole extent of that byte, direct.
write_extent() { write_byte_extent "$dev" "$EXTB" "$@"; }
extent_sum() { dd if="$dev" bs="$EXTB" skip="$1" count=1 iflag=direct status=none | sha256sum; }

# --- the frozen set: extents 0-7 written ------------------------------------
for e in 0 1 2 3 4 5 6 7; do write_extent "$e" $((65 + e)); done
check_eq "8 extents written" 8 "$(dm_status_field "$NAME" 3)"
nl_session_helper "$NAME"
ev0=$(events)
msg_ok "snapshot commit <uri>" snapshot commit "$URI"
check_eq "status: uploading 0/8, generation 1" "uploading 0/8 1" "$(commit_status)"
check "a dm event at the freeze" test "$(events)" -gt "$ev0"
sess listen 1 5000
check_eq "the helper hears COMMIT_START" \
	"COMMIT_START dev_id=$ID gen=1 flags=0 total=8 uri=$URI" "$SESS_OUT"
check_eq "upload set: extents 0-7" "0+8" "$(runs 16)"
check_eq "held set: extents 0-7" "0+8" "$(runs 17)"
check_eq "GET_DEVICE: commit state 1 (uploading), generation 1" 2 \
	"$("$NL" raw get_device dev_id:u32:"$ID" 2>&1 | tr ' ' '\n' | grep -cxE "(commit_state|commit_gen)=1")"
msg_refused "a second commit while one runs" "Device or resource busy" \
	"commit 1 is still running" snapshot commit "$URI"

# --- a write to a frozen extent waits for PRESERVE -----------------------------
old3=$(extent_sum 3)
write_extent 3 120 &
wpid=$!
at_exit "kill $wpid 2>/dev/null"
sleep 2
check "the write to frozen extent 3 waits" kill -0 "$wpid"
sess listen 1 5000
check_eq "the helper is sent PRESERVE for extent 3" \
	"PRESERVE dev_id=$ID gen=1 first_extent=3 extent_count=1" "$SESS_OUT"
check_eq "frozen extent 3 still reads its old content" "$old3" "$(extent_sum 3)"
write_extent 20 121
check "a write to an extent not frozen goes on" test "$(extent_sum 20)" != "$old3"
mark 1 3 1 "$PRESERVED"
check_eq "COMMIT_MARK preserved 3 accepted" 0 "$SESS_RC"
wait_pid "$wpid" 10
check_eq "... and the held write completes" 0 "$?"
check "extent 3 now reads the new data" test "$(extent_sum 3)" != "$old3"
check_eq "held set: 0-2 and 4-7" "0+3 4+4" "$(runs 17)"
check_eq "upload set: still 0-7" "0+8" "$(runs 16)"

# --- refusals ---------------------------------------------------------------------
end_commit 1 0
check "COMMIT_END 0 with extents not uploaded: EAGAIN" \
	test "$SESS_RC" = 1 -a -n "$(grep -o "error: EAGAIN" <<<"$SESS_OUT")"
mark 2 0 1 "$UPLOADED"
check "COMMIT_MARK for generation 2: ESTALE" grep -q "error: ESTALE" <<<"$SESS_OUT"
mark 1 30 4 "$UPLOADED"
check "COMMIT_MARK past the end: ERANGE" grep -q "error: ERANGE" <<<"$SESS_OUT"
nl_refused "COMMIT_MARK from a socket that is not the helper" EPERM \
	raw "$CMD_COMMIT_MARK" "$A_DEV_ID:u32:$ID" "$A_GEN:u64:1" "$A_FIRST:u64:0" \
	"$A_COUNT:u32:8" "$A_MARK:u32:$UPLOADED"
check_eq "status unchanged by the refusals" "uploading 0/8 1" "$(commit_status)"

# --- uploaded, done -------------------------------------------------------------------
mark 1 0 8 "$UPLOADED"
check_eq "status: uploading 8/8" "uploading 8/8 1" "$(commit_status)"
check_eq "upload set empty" "" "$(runs 16)"
ev1=$(events)
kmsg_mark
end_commit 1 0
check_eq "COMMIT_END 0 accepted" 0 "$SESS_RC"
check "status: done 8/8 1" wait_until 10 commit_is "done 8/8 1"
check "a dm event when the commit ends" test "$(events)" -gt "$ev1"
expect_dmesg "log: snapshot commit 1 done" "snapshot commit 1 done: 8 extents uploaded"
check_eq "frozen set cleared" "" "$(runs frozen-commit)"
check_eq "DIRTY_COMMIT: extents 3 and 20, written after the freeze" "3+1 20+1" \
	"$(runs dirty-commit)"

# --- since-last, abort -------------------------------------------------------------
msg_ok "snapshot commit <uri> since-last" snapshot commit "$URI" since-last
check_eq "since-last freezes only extents 3 and 20: 0/2, generation 2" "uploading 0/2 2" \
	"$(commit_status)"
check_eq "upload set: 3 and 20" "3+1 20+1" "$(runs 16)"

# --- preserved ahead: a later write goes on without PRESERVE ------------------
mark 2 20 1 "$PRESERVED"
check_eq "COMMIT_MARK preserved 20 with no write waiting on it accepted" 0 "$SESS_RC"
check_eq "held set: 3 only" "3+1" "$(runs 17)"
# what the session was sent so far (COMMIT_START of generation 2)
for _ in 1 2 3 4 5; do sess listen 1 500; [ "$SESS_RC" = 0 ] || break; done
old20=$(extent_sum 20)
write_extent 20 126 &
wpid=$!
wait_pid "$wpid" 10
check_eq "a write to extent 20, preserved ahead, completes at once" 0 "$?"
sess listen 1 2000
check "... and the helper is sent no PRESERVE for it" \
	test "$SESS_RC" != 0 -a -n "$(grep -o "no event within" <<<"$SESS_OUT")"
check "extent 20 reads the new data" test "$(extent_sum 20)" != "$old20"
check_eq "upload set: still 3 and 20 (preserved is not uploaded)" "3+1 20+1" "$(runs 16)"
write_extent 3 122 &
wpid=$!
sleep 1
kmsg_mark
msg_ok "snapshot abort" snapshot abort
wait_pid "$wpid" 10
check_eq "... releases the held write" 0 "$?"
check "status: failed 0/2 2" wait_until 5 commit_is "failed 0/2 2"
expect_dmesg "log: aborted" "snapshot commit 2 failed: aborted"
check_eq "the frozen set is kept for the next commit" "3+1 20+1" "$(runs frozen-commit)"

# --- the next since-last commit includes the failed one's extents; helper error ---
write_extent 25 123
msg_ok "snapshot commit since-last after a failed one" snapshot commit "$URI" since-last
check_eq "it freezes 3, 20 (failed commit) and 25 (new): 0/3, generation 3" \
	"uploading 0/3 3" "$(commit_status)"
kmsg_mark
end_commit 3 5 target_went_away
check "a helper's error fails the commit" wait_until 5 commit_is "failed 0/3 3"
expect_dmesg "log: the helper's reason" "error 5: target_went_away"

# --- a suspend fails a running commit and releases its held write -----------------
msg_ok "snapshot commit (full)" snapshot commit "$URI"
check_eq "a full commit freezes every written extent: 0/10, generation 4" \
	"uploading 0/10 4" "$(commit_status)"
write_extent 0 124 &
wpid=$!
sleep 1
kmsg_mark
check "suspend with a held write" timeout 30 dmsetup suspend "$NAME"
wait_pid "$wpid" 10
check_eq "... releases it" 0 "$?"
expect_dmesg "log: interrupted by a suspend" "interrupted by a suspend"
check "resume" dmsetup resume "$NAME"

# --- a reload keeps the generation and the frozen set -------------------------------
kill "$NLS_PID" 2>/dev/null
dmsetup suspend "$NAME" && dmsetup load "$NAME" --table "$TABLE" && dmsetup resume "$NAME"
check "reload" test $? -eq 0
ID=$(dev_id)
check_eq "after reload: idle, generation 4 kept" "idle 0/0 4" "$(commit_status)"
check_eq "after reload: the frozen set of the failed commit is kept" "0+8 20+1 25+1" \
	"$(runs frozen-commit)"
check "remove" dm_remove "$NAME"
tap_done
