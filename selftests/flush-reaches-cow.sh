#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# flush-reaches-cow: every flush and FUA write the guest sends reaches the
# COW device, also when no metadata bit changes.  Extents made PRESENT and
# WRITTEN by whole-extent writes are overwritten with O_DIRECT and then
# fsync'ed (an empty REQ_PREFLUSH), or written with O_DSYNC (REQ_FUA), and
# the COW loop device's flush counter (/sys/block/loopN/stat, field 16)
# must move each time.  Before the fix, rcow_md_commit() did no I/O when no
# bit changed and the flush was completed without reaching the device.
# shellcheck disable=SC2119	# lib-net.sh helpers: optional arguments
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup dd
tap_plan 7

NAME="rc-flush"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((4 << 20))		# 64 extents
LEN=$((BASE_BYTES / 512))

load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" flush-reaches-cow
at_exit "dm_remove $NAME"
file_test_device "$NAME" "$LEN" "$EXT"
loop=$(basename "$COW_DEV")

# flushes: the COW loop device's completed flush requests.
flushes() { awk '{ print $16 }' "/sys/block/$loop/stat"; }

# Make extents 0-7 PRESENT and WRITTEN, and let the metadata settle: once
# committed, rewriting them changes no bit.
check "whole-extent writes make extents 0-7 present and written" \
	dd if=/dev/urandom of="/dev/mapper/$NAME" bs="$EXTB" count=8 oflag=direct conv=fsync status=none
sleep 3
check_eq "8 extents written" 8 "$(dm_status_field "$NAME" 3)"

# rewrite_flushes <dd flags...>: rewrite extents 2-3 and print how many
# flushes reached the COW device meanwhile.
rewrite_flushes() {
	local before after
	before=$(flushes)
	dd if=/dev/urandom of="/dev/mapper/$NAME" bs="$EXTB" seek=2 count=2 "$@" status=none ||
		return 1
	after=$(flushes)
	echo $((after - before))
}

n=$(rewrite_flushes oflag=direct conv=fsync)
if [ -n "$n" ] && [ "$n" -ge 1 ]; then
	tap_ok "fsync after overwriting written extents flushes the COW device ($n)"
else
	tap_not_ok "fsync after overwriting written extents flushes the COW device" "flushes: '$n'"
fi

n=$(rewrite_flushes oflag=direct,dsync)
if [ -n "$n" ] && [ "$n" -ge 2 ]; then
	tap_ok "O_DSYNC (FUA) writes to written extents reach the COW device durably ($n)"
else
	tap_not_ok "O_DSYNC (FUA) writes to written extents reach the COW device durably" \
		"flushes: '$n' (expected one per write)"
fi

# A buffered write and fsync of a partial extent: the same.
n=$(rewrite_flushes bs=4096 count=1 conv=fsync)
if [ -n "$n" ] && [ "$n" -ge 1 ]; then
	tap_ok "buffered write + fsync flushes the COW device ($n)"
else
	tap_not_ok "buffered write + fsync flushes the COW device" "flushes: '$n'"
fi

# Nothing changed for the metadata: WRITTEN still 8, mode rw.
check_eq "still 8 extents written" 8 "$(dm_status_field "$NAME" 3)"
check_eq "metadata mode rw" rw "$(dmsetup status "$NAME" | awk '{ print $NF }')"
tap_done
