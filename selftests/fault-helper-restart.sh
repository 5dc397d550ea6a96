#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The helper dies with faults outstanding and comes back: the kernel keeps
# the faults, sends them to the next helper that registers, and the reads
# that wait for them complete with the base's data.
#
#  1. rcow-fill --delay-ms is SIGKILLed while it holds a fault (reads of
#     the same extent twice and of two other extents wait on it);
#  2. rcow-fill --exit-after 1 exits on receiving its first fault;
#  3. the helper is killed before any fault, the reads start with no
#     helper at all, and one is started later.
#
# Each time the reads still wait while no helper runs, complete with the
# base's data once one is back, and the faults counter of the status line
# returns to 0.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp
use_rcow_fill
tap_plan 21

NAME="rc-helper-restart"
EXT=128				# 64 KiB extents
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
TOTAL=$((LEN / EXT))

load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" fault-helper-restart
file_test_device "$NAME" "$LEN" "$EXT"

faults() { dm_status_field "$NAME" 4; }
faults_at_least() { [ "$(faults)" -ge "$1" ]; }
faults_zero() { [ "$(faults)" -eq 0 ]; }
helper_state() { dm_status_field "$NAME" 5; }
helper_absent() { [ "$(helper_state)" = absent ]; }

# Background reads (bg_read <first extent> [extents]), reads_waiting and
# check_reads <desc> <seconds>: lib-net.sh, on the file_test_device.

# --- 1. SIGKILL while the helper holds a fault ---------------------------
helper_start --delay-ms 10000 || tap_bail "rcow-fill does not start"
bg_read 3 1
bg_read 7 2
sleep 0.3
bg_read 3 1			# a second reader on the same extent
check "faults are outstanding while the helper sleeps on one" wait_until 20 faults_at_least 2
check_eq "the helper is connected" connected "$(helper_state)"
sleep 0.5			# the helper has the fault and sleeps
helper_kill
check "the kernel sees the SIGKILLed helper gone" wait_until 10 helper_absent
sleep 2
if reads_waiting && faults_at_least 2; then
	tap_ok "without a helper the reads wait (faults $(faults))"
else
	tap_not_ok "without a helper the reads wait" "status: $(dmsetup status "$NAME")"
fi
helper_start || tap_bail "rcow-fill does not start again"
check_reads "the waiting reads complete with the base's data" 60
check "the faults counter returns to 0" wait_until 10 faults_zero
check_eq "3 extents present" 3 "$(present_extents "$NAME")"
helper_stop

# --- 2. --exit-after 1: the helper exits on its first fault ---------------
helper_start --exit-after 1 || tap_bail "rcow-fill does not start"
exiting_pid=$HELPER_PID
bg_read 12 1
wait_pid "$exiting_pid" 30
check_eq "rcow-fill --exit-after 1 exits (3) on the fault, unanswered" 3 "$?"
HELPER_PID=
check "the kernel sees it gone" wait_until 10 helper_absent
sleep 1
if reads_waiting && [ "$(faults)" -eq 1 ]; then
	tap_ok "the read waits, 1 fault outstanding"
else
	tap_not_ok "the read waits, 1 fault outstanding" "status: $(dmsetup status "$NAME")"
fi
helper_start || tap_bail "rcow-fill does not start again"
check_reads "the read completes with the base's data" 60
check "the faults counter returns to 0" wait_until 10 faults_zero
helper_stop
check_eq "the new helper answered the kept fault" 1 "$(helper_stat answered)"

# --- 3. killed before any fault, started later ----------------------------
helper_start || tap_bail "rcow-fill does not start"
helper_kill
check "the kernel sees the helper gone" wait_until 10 helper_absent
bg_read 20 4
bg_read 25 1
check "the reads fault with no helper" wait_until 20 faults_at_least 2
sleep 3
if reads_waiting && [ "$(faults)" -eq 2 ]; then
	tap_ok "the reads still wait after 3 s, 2 faults outstanding"
else
	tap_not_ok "the reads still wait after 3 s, 2 faults outstanding" \
		"status: $(dmsetup status "$NAME")"
fi
present_before=$(present_extents "$NAME")
helper_start || tap_bail "rcow-fill does not start"
check_reads "the reads complete with the base's data once a helper starts" 60
check "the faults counter returns to 0" wait_until 10 faults_zero
check_eq "5 more extents present" $((present_before + 5)) "$(present_extents "$NAME")"

check_eq "the whole device equals the base" "$BASE_SUM" \
	"$(dd if="/dev/mapper/$NAME" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)"
check_eq "every extent present, no fault left" "$TOTAL/$TOTAL 0" \
	"$(dm_status_field "$NAME" 2) $(faults)"
helper_stop
tap_done
