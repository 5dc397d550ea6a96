#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel side of live migration's destination, with an "rcow-nl
# session" playing the helper, against Documentation/remote-cow.rst:
#
# - a table with the "incoming" feature sets the superblock's incoming
#   flag, shows migrate_state
#   "incoming" and holds guest reads and writes; with fault_timeout they
#   fail with EIO when it expires;
# - MIGRATE_FILL is refused past the end (ERANGE) and from a socket that is
#   not the helper (EPERM); the extents it names, whose data the test wrote
#   into the COW data area with dd, are PRESENT and WRITTEN;
# - a crash before MIGRATE_COMPLETE (the table removed) leaves the COW
#   device flagged: a table without the feature is refused with a clear
#   error (remote-cow check and dump show the flag), one with it loads;
# - MIGRATE_COMPLETE releases the held I/O (the held read returns the
#   migrated data), clears the flag and the state; the device's content
#   then equals the reference byte for byte (the extents not migrated are
#   fetched from the base by a fill helper), and a plain table loads and
#   reads the same.
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig-incoming.sh"

require_vm
require_cmd dmsetup losetup dd cmp timeout
use_rcow_fill
tap_plan 36

NAME="rc-migrate-incoming"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
NL=$RC_TREE/selftests/progs/rcow-nl
RC=$RC_TREE/tools/remote-cow
MIGRATED="2 3 10"

require_built "$NL" "$RC"
# The reference: the base with the migrated extents (and extent 20,
# written by the guest once the migration completed) changed.
# shellcheck disable=SC2086	# a list of extents
incoming_setup migrate-incoming $MIGRATED
head -c "$EXTB" /dev/zero | tr '\0' 'w' >"$tmp/w20"
ref_write 20 "$tmp/w20"

dev_line() { "$NL" devices 2>/dev/null | grep " name=$NAME "; }
data_offset() { dev_line | sed -n 's/.* data_offset=\([0-9]*\).*/\1/p'; }
# migrate_extent <extent>: the reference's data into the data area.
migrate_extent() { copy_extents "$tmp/ref" "$1"; }

# --- an incoming table: the flag, held I/O, fault_timeout ----------------------
dm_create "$NAME" "$(rc_table "$LEN" "$cow" "$EXT" "file://$base" fault_timeout 3000 incoming)" ||
	tap_bail "cannot create $NAME"
ID=$(nl_dev_id "$NAME")
DATA_OFF=$(data_offset)
if [ -z "$ID" ] || [ -z "$DATA_OFF" ]; then tap_bail "no dev_id or data offset for $NAME"; fi
check_eq "status: migrate_state incoming" incoming "$(migrate_state)"
check "the table line shows the feature" grep -q " fault_timeout 3000 incoming$" \
	<<<"$(dmsetup table "$NAME")"
bg_io r0 if="$dev" of=/dev/null bs="$EXTB" skip=2 count=1 iflag=direct
sleep 1
check "a read is held" test ! -e "$tmp/r0.rc"
check "with fault_timeout, it fails with EIO once it expires" \
	bash -c "for i in \$(seq 100); do [ -e '$tmp/r0.rc' ] && break; sleep 0.1; done; [ \"\$(cat '$tmp/r0.rc')\" = 1 ]"

nl_session_start
sess register
for e in 2 3; do migrate_extent "$e"; done
fill 2 2
check_eq "MIGRATE_FILL 2+2 accepted" 0 "$SESS_RC"
sess_refused "MIGRATE_FILL past the end" ERANGE raw migrate_fill "dev_id:u32:$ID" \
	first_extent:u64:31 extent_count:u32:2
nl_refused "MIGRATE_FILL from a socket that is not the helper" EPERM raw migrate_fill \
	"dev_id:u32:$ID" first_extent:u64:10 extent_count:u32:1

# --- a crash before MIGRATE_COMPLETE ------------------------------------------------
kill "${NLS_PID:-}" 2>/dev/null
wait "${NLS_PID:-}" 2>/dev/null
check "remove the table before it completed" dm_remove "$NAME"
kmsg_mark
check "a table without the feature is refused" bash -c "! dmsetup create $NAME --table '$TABLE'"
expect_dmesg "... with a clear error" \
	"Incoming migration not complete: load with the incoming feature"
dm_remove "$NAME"
check "remote-cow check says so" grep -q "incoming migration not complete" \
	<<<"$("$RC" check "$cow" 2>&1)"
check "remote-cow dump shows the superblock's incoming flag" \
	grep -qE "flags +0x[0-9a-f]+.* incoming" <<<"$("$RC" dump "$cow" 2>&1)"

# --- again, to the end ------------------------------------------------------------
check "a table with the feature loads" dmsetup create "$NAME" --table "$TABLE_IN"
at_exit "dm_remove $NAME"
ID=$(nl_dev_id "$NAME")
nl_session_start
sess register
bg_io r1 if="$dev" of="$tmp/r1" bs="$EXTB" skip=10 count=1 iflag=direct
bg_io w20 if="$tmp/w20" of="$dev" bs="$EXTB" seek=20 count=1 oflag=direct
sleep 2
check "a read and a write are held (no fault_timeout: as long as it takes)" \
	bash -c "[ ! -e '$tmp/r1.rc' ] && [ ! -e '$tmp/w20.rc' ]"
for e in $MIGRATED; do migrate_extent "$e"; done
fill 2 2
check_eq "MIGRATE_FILL 2+2" 0 "$SESS_RC"
fill 10 1
check_eq "MIGRATE_FILL 10+1" 0 "$SESS_RC"
sleep 1
check "still held after the fills" bash -c "[ ! -e '$tmp/r1.rc' ]"
check_eq "migrated extents are PRESENT" "2+2 10+1" \
	"$("$NL" runs "$ID" present 2>&1 | tr '\n' ' ' | sed 's/ $//')"
check_eq "... and WRITTEN" "2+2 10+1" \
	"$("$NL" runs "$ID" written 2>&1 | tr '\n' ' ' | sed 's/ $//')"
ev0=$(dmsetup info -c --noheadings -o events "$NAME" | tr -d ' ')
kmsg_mark
sess raw migrate_complete "dev_id:u32:$ID"
check_eq "MIGRATE_COMPLETE accepted" 0 "$SESS_RC"
check "the held read completes" wait_until 10 ended r1
check_eq "... successfully" 0 "$(io_rc r1)"
check "... with the migrated data" cmp "$tmp/r1" \
	<(dd if="$tmp/ref" bs="$EXTB" skip=10 count=1 status=none)
check "the held write completes" wait_until 10 ended w20
check_eq "... successfully" 0 "$(io_rc w20)"
check_eq "status: migrate_state idle" idle "$(migrate_state)"
check "a dm event" test "$(dmsetup info -c --noheadings -o events "$NAME" | tr -d ' ')" -gt "$ev0"
expect_dmesg "log: complete" "incoming migration complete"
check "the table line no longer shows the feature" bash -c "! dmsetup table $NAME | grep -q ' incoming$'"
sess_refused "MIGRATE_FILL once complete" ESTALE raw migrate_fill "dev_id:u32:$ID" \
	first_extent:u64:0 extent_count:u32:1

# --- the content ----------------------------------------------------------------------
kill "${NLS_PID:-}" 2>/dev/null
wait "${NLS_PID:-}" 2>/dev/null
helper_start || tap_bail "rcow-fill does not start"
check "the device equals the reference byte for byte" cmp "$dev" "$tmp/ref"
check "remove" dm_remove "$NAME"
check "remote-cow check: no incoming flag left" bash -c \
	"! '$RC' check '$cow' 2>&1 | grep -q 'incoming migration not complete'"
check "a plain table loads" dmsetup create "$NAME" --table "$TABLE"
check "... and reads the reference" cmp "$dev" "$tmp/ref"
check "remove" dm_remove "$NAME"
tap_done
