#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Faults go to the helper in runs of adjacent extents (one FAULT with
# EXTENT_COUNT > 1), and FILL_DONE answers a run whole or in sub-ranges:
#
#  1. sixteen reads of adjacent missing extents queued with no helper make
#     one FAULT 0+16 when a helper (an rcow-nl session) registers; it
#     answers 0+8 filled, 8+4 with EIO and the rest (12..15) with no
#     EXTENT_COUNT, as older helpers do: only the reads of 8..11 fail,
#     the others read the base.  Ranges outside the run are refused.
#  2. a write to one extent of a run in flight (whole extent) and a partial
#     write to another wait for the run's fill; afterwards the written data
#     wins and the rest of the run reads the base.
#  3. rcow-fill --exit-after 1 exits holding a run; the run is sent again
#     to the next helper, as one FAULT, and the reads get the base's data.
#  4. a 1 MiB direct read of the whole device through rcow-fill takes fewer
#     FAULTs than extents, and the device equals the base.
# shellcheck disable=SC2119,SC2317	# helper_start: optional arguments; functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp sha256sum
use_rcow_fill
tap_plan 45

NAME="rc-fault-batch"
EXT=128				# 64 KiB extents: runs of at most 16 (1 MiB)
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
NR=$((LEN / EXT))
NL=$RC_TREE/selftests/progs/rcow-nl

require_built "$NL"
load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" fault-batch
tmp=$NET_WORKDIR
file_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
cow=$COW_DEV

line=$("$NL" devices 2>&1 | grep " name=$NAME ")
ID=$(sed -n 's/^dev_id=\([0-9]*\) .*/\1/p' <<<"$line")
DOFF=$(sed -n 's/.* data_offset=\([0-9]*\).*/\1/p' <<<"$line")
{ [ -n "$ID" ] && [ -n "$DOFF" ]; } || tap_bail "no dev_id or data_offset in: $line"

faults() { dm_status_field "$NAME" 4; }
faults_are() { [ "$(faults)" -eq "$1" ]; }
helper_is() { [ "$(dm_status_field "$NAME" 5)" = "$1" ]; }
# copy_fill <first> <count>: what a helper does: the base's extents into
# the COW data area.
copy_fill() {
	dd if="$BASE_IMG" of="$cow" bs=512 skip=$(($1 * EXT)) count=$(($2 * EXT)) \
		seek=$((DOFF + $1 * EXT)) oflag=direct conv=notrunc status=none
}
# run_of <first> <count>: the cookie of "FAULT ... first_extent=F
# extent_count=C" in the session's last output.
run_of() {
	sed -n "s/^FAULT dev_id=$ID first_extent=$1 extent_count=$2 cookie=\([0-9]*\)$/\1/p" \
		<<<"$SESS_OUT"
}

# --- 1. one run, answered in three parts --------------------------------------
for e in 8 9 10 11; do bg_read "$e"; done
eio_pids=("${_read_pids[@]}")
eio_exts=("${_read_exts[@]}")
_read_pids=()
_read_exts=()
for e in 0 1 2 3 4 5 6 7 12 13 14 15; do bg_read "$e"; done
check "16 faults queued with no helper" wait_until 20 faults_are 16
nl_session_start
sess register
check_eq "an rcow-nl session registers as the helper" "0 connected" \
	"$SESS_RC $(dm_status_field "$NAME" 5)"
sess listen 1 5000
tap_diag "event: $SESS_OUT"
C=$(run_of 0 16)
check "the 16 queued faults go out as one FAULT 0+16" test -n "$C"
C=${C:-1}
sess_refused "FILL_DONE 14+4 reaches past the run" EINVAL fill-done "$ID" "$C" 14 0 4
sess_refused "FILL_DONE 16+1 names an extent outside the run" EINVAL fill-done "$ID" "$C" 16 0 1
sess_refused "FILL_DONE for a cookie never sent" ENOENT fill-done "$ID" $((C + 1000)) 0 0 1
check "copy extents 0..7 and 12..15 into the COW data area" \
	eval "copy_fill 0 8 && copy_fill 12 4"
sess fill-done "$ID" "$C" 0 0 8
check_eq "FILL_DONE 0+8 (status 0) is accepted" 0 "$SESS_RC"
sess fill-done "$ID" "$C" 8 5 4
check_eq "FILL_DONE 8+4 with status EIO is accepted" 0 "$SESS_RC"
sess_refused "FILL_DONE 8+4 again: no longer outstanding" EINVAL fill-done "$ID" "$C" 8 0 4
check_eq "4 faults left in flight (12..15)" 4 "$(faults)"
sess fill-done "$ID" "$C" 12 0
check_eq "FILL_DONE 12 without EXTENT_COUNT (the rest of the run) is accepted" 0 "$SESS_RC"
sess_refused "the run is fully answered: its cookie is gone" ENOENT fill-done "$ID" "$C" 12 0
check_reads "the reads of extents 0..7 and 12..15 read the base" 30
_read_pids=("${eio_pids[@]}")
_read_exts=("${eio_exts[@]}")
check_reads "only the reads of extents 8..11 fail (EIO)" 30 eio
check_eq "12 extents present, no fault in flight" "12 0" \
	"$(present_extents "$NAME") $(faults)"

# --- 2. writes racing the fill of their run --------------------------------------
# A read of extent 20 and a partial write to extent 22 fault them with the
# reads around; a whole-extent write to 20 then waits on 20's fault.
sess unregister
check_eq "the session unregisters" "0" "$SESS_RC"
bg_read 20
r20_pid=${_read_pids[0]}
_read_pids=()
_read_exts=()
for e in 16 17 18 19 21 23 24 25 26 27 28 29 30 31; do bg_read "$e"; done
head -c "$EXTB" /dev/zero | tr '\0' 'W' >"$tmp/whole"
head -c 4096 /dev/zero | tr '\0' 'P' >"$tmp/part"
dd if="$tmp/part" of="$dev" bs=4096 seek=$((22 * EXTB / 4096)) oflag=direct \
	conv=notrunc status=none 2>"$tmp/part.err" &
part_pid=$!
at_exit "kill -KILL $part_pid 2>/dev/null"
check "16 faults queued (15 reads, a partial write)" wait_until 20 faults_are 16
dd if="$tmp/whole" of="$dev" bs="$EXTB" seek=20 oflag=direct conv=notrunc \
	status=none 2>"$tmp/whole.err" &
whole_pid=$!
at_exit "kill -KILL $whole_pid 2>/dev/null"
sleep 1
check_eq "a whole-extent write to extent 20 waits on its fault: still 16" 16 "$(faults)"
sess register
sess listen 1 5000
tap_diag "event: $SESS_OUT"
C=$(run_of 16 16)
check "the 16 faults go out as one FAULT 16+16" test -n "$C"
C=${C:-1}
sleep 0.5
if kill -0 "$part_pid" 2>/dev/null && kill -0 "$whole_pid" 2>/dev/null; then
	tap_ok "both writes wait for the run's fill"
else
	tap_not_ok "both writes wait for the run's fill" \
		"$(cat "$tmp/part.err" "$tmp/whole.err" 2>&1)"
fi
check "copy extents 16..31 into the COW data area" copy_fill 16 16
sess fill-done "$ID" "$C" 16 0 16
check_eq "FILL_DONE 16+16 is accepted" 0 "$SESS_RC"
wait_pid "$part_pid" 30
check_eq "the partial write to extent 22 completes" 0 "$?"
wait_pid "$whole_pid" 30
check_eq "the whole-extent write to extent 20 completes" 0 "$?"
check_reads "the reads of the run's other extents read the base" 30
wait_pid "$r20_pid" 30
check_eq "the read of extent 20 completes" 0 "$?"
check "extent 20 reads as written" \
	cmp <(dd if="$dev" bs="$EXTB" skip=20 count=1 iflag=direct status=none) "$tmp/whole"
check "extent 22 reads as written over the base" \
	cmp <(dd if="$dev" bs="$EXTB" skip=22 count=1 iflag=direct status=none) \
	<(cat "$tmp/part"; dd if="$BASE_IMG" bs=4096 skip=$((22 * EXTB / 4096 + 1)) \
		count=$((EXTB / 4096 - 1)) status=none)
check "extent 21 reads as the base" \
	cmp <(dd if="$dev" bs="$EXTB" skip=21 count=1 iflag=direct status=none) \
	<(dd if="$BASE_IMG" bs="$EXTB" skip=21 count=1 status=none)
nls_in=${NLS[1]}
exec {nls_in}>&-
wait "$NLS_PID" 2>/dev/null
check "the session's socket closed: status absent" wait_until 10 helper_is absent

# --- 3. the helper exits holding a run ----------------------------------------
for e in 8 9 10 11; do bg_read "$e"; done
check "4 faults queued again for extents 8..11" wait_until 20 faults_are 4
helper_start --exit-after 1 --verbose || tap_bail "rcow-fill does not start"
exiting_pid=$HELPER_PID
wait_pid "$exiting_pid" 30
check_eq "rcow-fill --exit-after 1 exits (3) holding the run, unanswered" 3 "$?"
HELPER_PID=
check "its log shows the run 8+4" grep -q "extents 8+4 " "$HELPER_LOG"
check "the kernel sees it gone" wait_until 10 helper_is absent
if reads_waiting && faults_are 4; then
	tap_ok "the reads wait, 4 faults outstanding"
else
	tap_not_ok "the reads wait, 4 faults outstanding" "status: $(dmsetup status "$NAME")"
fi
helper_start || tap_bail "rcow-fill does not start again"
check_reads "the reads complete with the base's data" 60
check "the faults counter returns to 0" wait_until 10 faults_are 0
helper_stop
check_eq "the next helper got the run as one FAULT of 4 extents" "1 4" \
	"$(helper_stat faults) $(helper_stat extents)"

# --- 4. a whole-device read in 1 MiB requests ---------------------------------
check "remove the device" dm_remove "$NAME"
losetup -d "$cow"
file_test_device "$NAME" "$LEN" "$EXT"
helper_start || tap_bail "rcow-fill does not start"
check_eq "the whole device (1 MiB direct reads) equals the base" "$BASE_SUM" \
	"$(dd if="$dev" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)"
helper_stop
f=$(helper_stat faults)
# Each 1 MiB read is trimmed to one extent per map call; the worker is
# woken by the last piece only, so each read is one FAULT run of 16
# whatever the timing (one more allowed: the waker's tick may fall
# between two pieces).
reads=$((LEN / 2048))
tap_diag "1 MiB reads: $f FAULTs for $(helper_stat extents) extents"
if [ "$(helper_stat extents)" -eq "$NR" ] && [ "$f" -le $((reads + 1)) ] &&
	[ "$(helper_stat answered)" -eq "$f" ]; then
	tap_ok "one FAULT per 1 MiB read ($f for $reads reads, $NR extents), each answered"
else
	tap_not_ok "one FAULT per 1 MiB read, each answered" "$(tr '\n' ' ' <"$HELPER_STATS")"
fi
check "remove the device" dm_remove "$NAME"
check_eq "the base image is unchanged" "$BASE_SUM" "$(sha256_of "$BASE_IMG")"
losetup -d "$COW_DEV"
check "the module unloads" unload_module
tap_done
