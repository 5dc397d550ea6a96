#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A slow file:// base stalls nobody else.  remote-cowd reads file:// bases
# in reader threads, not in its loop, so a base on slow storage (here a
# block device behind dm-delay, every read held DELAY_MS) delays only the
# faults of its own device:
#  1. while a read of the slow device waits for its base, a read of
#     another device (a plain image file) completes, with the right data;
#  2. reads of different extents of the slow base overlap: four at once
#     take about one delay, not four;
#  3. every read returned the base's data, and nothing failed.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup cmp
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
modprobe dm-delay 2>/dev/null || tap_skip_all "no dm-delay in this kernel"
tap_plan 8

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

slow_img=$tmp/slow.img
fast_img=$tmp/fast.img
make_base_image "$slow_img" "$BASE_BYTES" file-slow-a >/dev/null || tap_bail "no slow image"
make_base_image "$fast_img" "$BASE_BYTES" file-slow-b >/dev/null || tap_bail "no fast image"
slow_loop=$(make_loop "$slow_img") || tap_bail "no loop device for the slow base"
at_exit "losetup -d '$slow_loop'"	# make_loop ran in a subshell
at_exit "dm_remove rc-slowbase"
dmsetup create rc-slowbase --table "0 $LEN delay $slow_loop 0 $DELAY_MS" ||
	tap_bail "cannot create the dm-delay base"
slow_base=/dev/mapper/rc-slowbase

make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
cow_slow=$COW_DEV
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
cow_fast=$COW_DEV
helper_start || tap_bail "remote-cowd does not start"
at_exit "dm_remove rc-slow"
at_exit "dm_remove rc-fast"
dmsetup create rc-slow --table "$(rc_table "$LEN" "$cow_slow" "$EXT" "file://$slow_base")" ||
	tap_bail "cannot create rc-slow"
dmsetup create rc-fast --table "$(rc_table "$LEN" "$cow_fast" "$EXT" "file://$fast_img")" ||
	tap_bail "cannot create rc-fast"

# 1. a read of the slow device in the background, then one of the fast one
t0=$(date +%s%N)
extent /dev/mapper/rc-slow 0 "$tmp/slow0" &
slow_pid=$!
sleep 0.5
extent /dev/mapper/rc-fast 0 "$tmp/fast0"
t1=$(date +%s%N)
if kill -0 "$slow_pid" 2>/dev/null; then
	tap_ok "a read of another base completes while the slow base's read waits"
else
	tap_not_ok "a read of another base completes while the slow base's read waits" \
		"the slow read had already finished after $(((t1 - t0) / 1000000)) ms"
fi
tap_diag "fast read done $(((t1 - t0) / 1000000)) ms after the slow read started"
wait "$slow_pid"
check_eq "the slow read succeeds" 0 "$?"
check "the fast read returned the base's data" same_extent "$tmp/fast0" "$fast_img" 0
check "the slow read returned the base's data" same_extent "$tmp/slow0" "$slow_img" 0

# 2. four extents of the slow base at once, far apart (no read-ahead
# brings one in with another)
t0=$(date +%s%N)
pids=()
for n in 20 40 60 80; do
	extent /dev/mapper/rc-slow "$n" "$tmp/slow$n" &
	pids+=($!)
done
fails=0
for p in "${pids[@]}"; do
	wait "$p" || fails=$((fails + 1))
done
ms=$((($(date +%s%N) - t0) / 1000000))
check_eq "four concurrent reads of the slow device succeed" 0 "$fails"
if [ "$ms" -lt $((DELAY_MS * 2)) ]; then
	tap_ok "they overlap: $ms ms, one read waits $DELAY_MS ms"
else
	tap_not_ok "they overlap" "$ms ms for 4 reads of $DELAY_MS ms each (serial: $((4 * DELAY_MS)))"
fi
bad=0
for n in 20 40 60 80; do
	same_extent "$tmp/slow$n" "$slow_img" "$n" || bad=$((bad + 1))
done
check_eq "each returned its extent of the base" 0 "$bad"

dm_remove rc-slow
dm_remove rc-fast
helper_stop
check_eq "no fill failed" 0 "$(helper_stat fill_errors)"
tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"

tap_done
