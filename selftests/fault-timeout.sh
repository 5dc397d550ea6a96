#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# fault_timeout: with "fault_timeout 4000" in the table and no helper, a
# read of a missing extent fails with EIO after about 4 s (not before,
# not much later), while reads of present extents keep working; the fault
# itself stays outstanding, and once a helper is back it is answered and
# the same read succeeds with the base's data.  With a helper slower than
# the timeout the read fails the same way and the late fill still lands.
# Without fault_timeout (0, the default) a read waits: still blocked after
# several seconds, it completes with the base's data once a helper starts.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp
use_rcow_fill
tap_plan 21

NAME="rc-fault-timeout"
NAME0="rc-no-timeout"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
TIMEOUT_MS=4000
LOW_MS=$((TIMEOUT_MS - 100))	# jiffies rounding
HIGH_MS=$((TIMEOUT_MS + 12000))	# generous: emulation, a loaded host

load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" fault-timeout
tmp=$NET_WORKDIR
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
cow1=$COW_DEV
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
cow0=$COW_DEV
at_exit "dm_remove $NAME"
at_exit "dm_remove $NAME0"
check "create $NAME with fault_timeout $TIMEOUT_MS" dmsetup create "$NAME" \
	--table "$(rc_table "$LEN" "$cow1" "$EXT" "file://$BASE_IMG" fault_timeout "$TIMEOUT_MS")" ||
	tap_bail "cannot create $NAME"
check "create $NAME0 without fault_timeout" dmsetup create "$NAME0" \
	--table "$(rc_table "$LEN" "$cow0" "$EXT" "file://$BASE_IMG")" ||
	tap_bail "cannot create $NAME0"

faults() { dm_status_field "$1" 4; }
faults_zero() { [ "$(faults "$1")" -eq 0 ]; }
helper_absent() { [ "$(dm_status_field "$NAME" 5)" = absent ]; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# same_as_base <dm name> <first extent> <extents>: a direct read equals the
# base.
same_as_base() {
	cmp <(dd if="/dev/mapper/$1" bs="$EXTB" skip="$2" count="$3" iflag=direct status=none) \
		<(dd if="$BASE_IMG" bs="$EXTB" skip="$2" count="$3" status=none)
}

# timed_read <dm name> <extent>: read one extent in the background; sets
# RD_PID and RD_START (ms); the error text goes to $tmp/rd.err.
timed_read() {
	RD_START=$(now_ms)
	dd if="/dev/mapper/$1" of=/dev/null bs="$EXTB" skip="$2" count=1 iflag=direct \
		status=none 2>"$tmp/rd.err" &
	RD_PID=$!
	at_exit "kill -KILL $RD_PID 2>/dev/null"
}

# check_eio_after_timeout <desc>: the background read failed with EIO
# between LOW_MS and HIGH_MS after it started.
check_eio_after_timeout() {
	local rc ms
	wait_pid "$RD_PID" 60
	rc=$?
	ms=$(($(now_ms) - RD_START))
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "Input/output error" "$tmp/rd.err"; then
		tap_ok "$1: EIO"
	else
		tap_not_ok "$1: EIO" "exit $rc: $(cat "$tmp/rd.err")"
	fi
	if [ "$ms" -ge "$LOW_MS" ] && [ "$ms" -le "$HIGH_MS" ]; then
		tap_ok "$1: after $ms ms (fault_timeout $TIMEOUT_MS)"
	else
		tap_not_ok "$1: after about the timeout" \
			"failed after $ms ms; expected $LOW_MS to $HIGH_MS"
	fi
}

# Extents 0-3 present, then no helper.
helper_start || tap_bail "rcow-fill does not start"
check "extents 0-3 read through a helper" same_as_base "$NAME" 0 4
helper_stop
check "no helper" wait_until 10 helper_absent

# --- 1. no helper: EIO after the timeout, present extents keep working ----
kmsg_mark
timed_read "$NAME" 10
sleep 0.5
t=$(now_ms)
if same_as_base "$NAME" 0 4 && kill -0 "$RD_PID" 2>/dev/null; then
	tap_ok "present extents read the base while a read waits ($(($(now_ms) - t)) ms)"
else
	tap_not_ok "present extents read the base while a read waits" \
		"waiting read alive: $(kill -0 "$RD_PID" 2>/dev/null && echo yes || echo no)"
fi
check_eio_after_timeout "read of a missing extent with no helper"
expect_dmesg "the kernel log says why" "remote-cow: .*fault_timeout expired"
check_eq "the fault stays outstanding" 1 "$(faults "$NAME")"
helper_start || tap_bail "rcow-fill does not start"
check "a helper answers the kept fault" wait_until 20 faults_zero "$NAME"
check "the same read now succeeds with the base's data" same_as_base "$NAME" 10 1
check_eq "5 extents present" 5 "$(present_extents "$NAME")"
helper_stop

# --- 2. a helper slower than the timeout ---------------------------------
helper_start --delay-ms $((TIMEOUT_MS + 2000)) || tap_bail "rcow-fill does not start"
timed_read "$NAME" 14
check_eio_after_timeout "read with a helper slower than the timeout"
check "the late fill is answered" wait_until 30 faults_zero "$NAME"
check_eq "the extent is present" 6 "$(present_extents "$NAME")"
check "the extent reads the base's data" same_as_base "$NAME" 14 1
helper_stop

# --- 3. no fault_timeout: wait for as long as it takes -------------------
timed_read "$NAME0" 5
sleep 6
if kill -0 "$RD_PID" 2>/dev/null && [ "$(faults "$NAME0")" -eq 1 ]; then
	tap_ok "without fault_timeout the read still waits after 6 s"
else
	tap_not_ok "without fault_timeout the read still waits after 6 s" \
		"status: $(dmsetup status "$NAME0")" "$(cat "$tmp/rd.err")"
fi
helper_start || tap_bail "rcow-fill does not start"
wait_pid "$RD_PID" 60
check_eq "it completes once a helper starts" "0 " "$? $(cat "$tmp/rd.err")"
check "the faults counter returns to 0" wait_until 10 faults_zero "$NAME0"
check "the extent reads the base's data" same_as_base "$NAME0" 5 1
helper_stop
tap_done
