#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Suspend, resume, reload and remove with faults outstanding neither hang
# nor leak (Documentation/remote-cow.rst, "Suspend and resume"):
#
#  1. "dmsetup suspend --noflush" with reads waiting for faults and no
#     helper returns; after resume the reads wait again and complete with
#     the base's data when a helper answers;
#  2. a table reload (the same table) with faults outstanding: through a
#     noflush suspend with no helper, and through a plain suspend with a
#     slow helper connected (the suspend waits for its fills);
#  3. a plain "dmsetup suspend" with no helper: the reads waiting for
#     faults fail with EIO instead of hanging the suspend, and the kernel
#     log says so;
#  4. "dmsetup remove --force" with a read waiting returns, the read
#     fails, the device goes;
#  5. then dm-remote-cow unloads, its dm-bufio client's slab cache is gone
#     from /proc/slabinfo, and dm-bufio itself unloads (it refuses, loudly,
#     when buffers leaked).
#
# The faults field of the status line returns to 0 wherever the faults
# were answered.  Every wait is bounded: a hang fails the test.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp
use_rcow_fill
tap_plan 44

NAME="rc-suspend"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
CMD_S=30			# the longest a dmsetup command may take

load_module || tap_bail "cannot load $RC_MODULE"
at_exit load_module		# for the tests that run after this one
test_base_image "$BASE_BYTES" suspend-resume
tmp=$NET_WORKDIR
file_test_device "$NAME" "$LEN" "$EXT"

faults() { dm_status_field "$NAME" 4; }
faults_at_least() { [ "$(faults)" -ge "$1" ]; }
faults_zero() { [ "$(faults)" -eq 0 ]; }
helper_absent() { [ "$(dm_status_field "$NAME" 5)" = absent ]; }
suspended() { dmsetup info "$NAME" | grep -q '^State: *SUSPENDED'; }
active() { dmsetup info "$NAME" | grep -q '^State: *ACTIVE'; }

# within <seconds> <desc> <command...>: one test, passed when the command
# succeeds within the time.  A command stuck in the kernel is left behind
# (SIGKILLed, not waited for) and the test fails.
within() {
	local secs=$1 desc=$2 pid i rc
	shift 2
	"$@" >"$tmp/cmd.out" 2>&1 &
	pid=$!
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		tap_not_ok "$desc" "$* did not return within $secs s (hung?)" \
			"status: $(dmsetup status "$NAME" 2>&1)"
		return 124
	fi
	wait "$pid"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		tap_ok "$desc"
	else
		tap_not_ok "$desc" "$*: exit $rc" "$(cat "$tmp/cmd.out")"
	fi
	return "$rc"
}

# Background reads of one extent (bg_read <extent>), reads_waiting and
# check_reads <desc> <seconds> ok|eio: lib-net.sh, on the file_test_device.

same_as_base() {	# same_as_base <extent>
	cmp <(dd if="/dev/mapper/$NAME" bs="$EXTB" skip="$1" count=1 iflag=direct status=none) \
		<(dd if="$BASE_IMG" bs="$EXTB" skip="$1" count=1 status=none)
}

check "the device's dm-bufio client has its slab cache" grep -q '^dm_bufio_buffer ' /proc/slabinfo

# --- 1. noflush suspend with reads waiting, no helper --------------------
bg_read 2
bg_read 4
check "two reads wait for faults (no helper)" wait_until 20 faults_at_least 2
within "$CMD_S" "dmsetup suspend --noflush returns" dmsetup suspend --noflush "$NAME"
check "the device is suspended" suspended
if reads_waiting; then
	tap_ok "the reads are held, not failed, while suspended"
else
	tap_not_ok "the reads are held, not failed, while suspended" \
		"$(cat "$tmp"/read.*.err)"
fi
within "$CMD_S" "dmsetup resume returns" dmsetup resume "$NAME"
sleep 1
if reads_waiting && faults_at_least 2; then
	tap_ok "after resume the reads wait for their faults again"
else
	tap_not_ok "after resume the reads wait for their faults again" \
		"status: $(dmsetup status "$NAME")"
fi
helper_start || tap_bail "rcow-fill does not start"
check_reads "the reads complete with the base's data once a helper answers" 60 ok
check "the faults counter returns to 0" wait_until 10 faults_zero
helper_stop
check "the helper is gone" wait_until 10 helper_absent

# --- 2. table reload with faults outstanding ----------------------------
bg_read 6
bg_read 8
check "two reads wait for faults" wait_until 20 faults_at_least 2
within "$CMD_S" "reload the same table" dmsetup reload "$NAME" --table "$DEV_TABLE"
within "$CMD_S" "noflush suspend with the new table loaded" dmsetup suspend --noflush "$NAME"
within "$CMD_S" "resume: the new table is live" dmsetup resume "$NAME"
sleep 1
if reads_waiting && faults_at_least 2; then
	tap_ok "the reads wait on the new table"
else
	tap_not_ok "the reads wait on the new table" "status: $(dmsetup status "$NAME")"
fi
helper_start || tap_bail "rcow-fill does not start"
check_reads "the reads complete with the base's data" 60 ok
check "the faults counter returns to 0" wait_until 10 faults_zero
helper_stop

# A slow helper connected: the plain suspend of the reload waits for it.
helper_start --delay-ms 1500 || tap_bail "rcow-fill does not start"
bg_read 10
bg_read 11
check "reads wait for the slow helper" wait_until 20 faults_at_least 1
within "$CMD_S" "reload the same table" dmsetup reload "$NAME" --table "$DEV_TABLE"
within "$CMD_S" "plain resume (suspend with flush) waits for the fills" dmsetup resume "$NAME"
check_reads "the reads complete with the base's data" 60 ok
check "the faults counter returns to 0" wait_until 10 faults_zero
helper_stop
check "the helper is gone" wait_until 10 helper_absent

# --- 3. plain suspend without a helper: EIO, no hang ---------------------
kmsg_mark
bg_read 12
bg_read 13
check "two reads wait for faults" wait_until 20 faults_at_least 2
within "$CMD_S" "dmsetup suspend (flush) returns with no helper" dmsetup suspend "$NAME"
check_reads "the waiting reads fail with EIO" 30 eio
expect_dmesg "the kernel log says why" \
	"remote-cow: .*suspend with no helper connected: failing I/O to missing extents"
within "$CMD_S" "dmsetup resume returns" dmsetup resume "$NAME"
check "the device is active" active
helper_start || tap_bail "rcow-fill does not start"
check "the faults counter returns to 0 once a helper runs" wait_until 20 faults_zero
check "extent 12 reads the base's data" same_as_base 12
helper_stop
check "the helper is gone" wait_until 10 helper_absent

# --- 4. remove --force with a read waiting --------------------------------
bg_read 20
check "a read waits for a fault" wait_until 20 faults_at_least 1
# --force swaps in a table that fails the waiting read; dd may not have
# closed the device yet when the removal itself runs: --retry waits for it.
within "$CMD_S" "dmsetup remove --force returns" dmsetup remove --force --retry "$NAME"
check_reads "the waiting read fails with EIO" 30 eio
gone() { ! dm_exists "$NAME" || dmsetup remove "$NAME" >/dev/null 2>&1; }
check "the device is gone" wait_until 20 gone

# --- 5. nothing left behind -----------------------------------------------
kmsg_mark
check_eq "no remote-cow device left" "" "$(dmsetup table --target "$RC_TARGET" 2>/dev/null |
	grep -v '^No devices found')"
check_fails "the dm-bufio slab cache is gone with the last device" \
	grep -q '^dm_bufio_buffer ' /proc/slabinfo
check_eq "module use count 0" 0 "$(awk -v m="$RC_MODULE_SYS" '$1 == m { print $3 }' /proc/modules)"
check "rmmod $RC_MODULE_SYS" rmmod "$RC_MODULE_SYS"
check_fails "no slab cache of the module or its dm-bufio client left" \
	grep -E '^(dm_bufio_buffer|rcow|remote_cow|dm_remote_cow)' /proc/slabinfo
if grep -q '^dm_bufio ' /proc/modules; then
	if [ "$(awk '$1 == "dm_bufio" { print $3 }' /proc/modules)" = 0 ]; then
		check "dm-bufio unloads: no buffer or client leaked" rmmod dm_bufio
	else
		tap_skip "dm-bufio unloads" "another module uses dm-bufio"
	fi
else
	tap_skip "dm-bufio unloads" "dm-bufio is built in"
fi
expect_no_dmesg "no leak reported by the slab allocator or dm-bufio" \
	"Objects remaining|still has objects|dm_bufio.*(nonzero|leaked)|memory leak"
check "dm-remote-cow loads again" load_module
tap_done
