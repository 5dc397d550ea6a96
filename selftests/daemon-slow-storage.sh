#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Slow storage stalls nobody else.  remote-cowd reads file:// bases in
# reader threads and writes fills into the COW devices in writer threads,
# never in its loop, so a slow base or a slow COW device delays only the
# faults of its own device.  Twice, once with a base behind dm-delay
# (every read held DELAY_MS), once with a COW device whose data area is
# behind dm-delay (every write held DELAY_MS; its metadata area and
# flushes at once: the target's own commits are not what this is about):
#  1. while a read of the slow device waits, a read of another device
#     completes, with the right data;
#  2. four reads of different extents of the slow device overlap: they
#     take about one delay, not four;
#  3. every read returned the base's data, and no fill failed.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup cmp blockdev
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
require_dm_target delay
tap_plan 16

EXT=128				# 64 KiB extents
EXT_BYTES=$((EXT * 512))
MIB=$((1 << 20))
BASE_BYTES=$((8 * MIB))
LEN=$((BASE_BYTES / 512))
DELAY_MS=3000

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR

# extent <dev> <n> <out>: read extent n of a device, O_DIRECT
extent() {
	dd if="$1" of="$3" bs=$EXT_BYTES skip="$2" count=1 iflag=direct status=none
}
# same_extent <file> <image> <n>: the file holds extent n of the image
same_extent() {
	cmp -s "$1" <(dd if="$2" bs=$EXT_BYTES skip="$3" count=1 status=none)
}

# slow_checks <what> <slow image>: the 8 checks, with rc-slow (slow <what>)
# over <slow image> and rc-fast over $fast_img, and a running helper.
slow_checks() {
	local what=$1 slow_img=$2 t0 t1 slow_pid ms fails bad n p pids=()

	# 1. a read of the slow device in the background, then one of the fast one
	t0=$(date +%s%N)
	extent /dev/mapper/rc-slow 0 "$tmp/slow0" &
	slow_pid=$!
	sleep 0.5
	extent /dev/mapper/rc-fast 0 "$tmp/fast0"
	t1=$(date +%s%N)
	if kill -0 "$slow_pid" 2>/dev/null; then
		tap_ok "slow $what: a read of another device completes meanwhile"
	else
		tap_not_ok "slow $what: a read of another device completes meanwhile" \
			"the slow read had already finished after $(((t1 - t0) / 1000000)) ms"
	fi
	tap_diag "fast read done $(((t1 - t0) / 1000000)) ms after the slow read started"
	wait "$slow_pid"
	check_eq "slow $what: the slow read succeeds" 0 "$?"
	check "slow $what: the fast read returned the base's data" \
		same_extent "$tmp/fast0" "$fast_img" 0
	check "slow $what: the slow read returned the base's data" \
		same_extent "$tmp/slow0" "$slow_img" 0

	# 2. four extents of the slow device at once, far apart (no prefetch
	# brings one in with another)
	t0=$(date +%s%N)
	for n in 20 40 60 80; do
		extent /dev/mapper/rc-slow "$n" "$tmp/slow$n" &
		pids+=($!)
	done
	fails=0
	for p in "${pids[@]}"; do
		wait "$p" || fails=$((fails + 1))
	done
	ms=$((($(date +%s%N) - t0) / 1000000))
	check_eq "slow $what: four concurrent reads succeed" 0 "$fails"
	if [ "$ms" -lt $((DELAY_MS * 2)) ]; then
		tap_ok "slow $what: they overlap: $ms ms, one waits $DELAY_MS ms"
	else
		tap_not_ok "slow $what: they overlap" \
			"$ms ms for 4 reads of $DELAY_MS ms each (serial: $((4 * DELAY_MS)))"
	fi
	bad=0
	for n in 20 40 60 80; do
		same_extent "$tmp/slow$n" "$slow_img" "$n" || bad=$((bad + 1))
	done
	check_eq "slow $what: each returned its extent of the base" 0 "$bad"

	dm_remove rc-slow
	dm_remove rc-fast
	helper_stop
	check_eq "slow $what: no fill failed" 0 "$(helper_stat fill_errors)"
	tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"
}

slow_img=$tmp/slow.img
fast_img=$tmp/fast.img
make_base_image "$slow_img" "$BASE_BYTES" slow-storage-a >/dev/null || tap_bail "no base image"
make_base_image "$fast_img" "$BASE_BYTES" slow-storage-b >/dev/null || tap_bail "no base image"
at_exit "dm_remove rc-slow"
at_exit "dm_remove rc-fast"

# --- A slow base: a block device behind dm-delay --------------------------
slow_loop=$(make_loop "$slow_img") || tap_bail "no loop device for the slow base"
at_exit "losetup -d '$slow_loop'"	# make_loop ran in a subshell
at_exit "dm_remove rc-slowbase"
dmsetup create rc-slowbase --table "0 $LEN delay $slow_loop 0 $DELAY_MS" ||
	tap_bail "cannot create the dm-delay base"
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
cow_slow=$COW_DEV
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
cow_fast=$COW_DEV
helper_start || tap_bail "remote-cowd does not start"
dmsetup create rc-slow --table "$(rc_table "$LEN" "$cow_slow" "$EXT" "file:///dev/mapper/rc-slowbase")" ||
	tap_bail "cannot create rc-slow"
dmsetup create rc-fast --table "$(rc_table "$LEN" "$cow_fast" "$EXT" "file://$fast_img")" ||
	tap_bail "cannot create rc-fast"
slow_checks base "$slow_img"

# --- A slow COW device: its data area behind dm-delay ---------------------
slow_cow_data rc-slowcow "$BASE_BYTES" "$EXT_BYTES" "$DELAY_MS" ||
	tap_bail "cannot create the dm-delay COW device"
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
cow_fast=$COW_DEV
helper_start || tap_bail "remote-cowd does not start"
dmsetup create rc-slow --table "$(rc_table "$LEN" "$SLOW_COW" "$EXT" "file://$slow_img")" ||
	tap_bail "cannot create rc-slow"
dmsetup create rc-fast --table "$(rc_table "$LEN" "$cow_fast" "$EXT" "file://$fast_img")" ||
	tap_bail "cannot create rc-fast"
slow_checks "COW device" "$slow_img"

tap_done
