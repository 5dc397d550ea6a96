#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Reading the whole device gives exactly the base image (sha256), with
# rcow-fill answering every fault from a file:// base, for extents of 4 KiB
# (8 sectors), 64 KiB (128) and 4 MiB (8192), two of them with a device
# length that is not a multiple of the extent size (the last extent is
# partial, down to 3 sectors), read buffered and with O_DIRECT.  Every
# extent is then present, none written, and the helper answered exactly
# one fault per extent.  After removal and re-creation over the same COW
# device every extent is still present, the content still equals the base
# and a new helper sees no fault at all.
# shellcheck disable=SC2119,SC2317	# helper_start: optional arguments; sum_* called by name
. "$(dirname "$0")/lib.sh"
RCOW_HELPER=$RC_TREE/selftests/progs/rcow-fill
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd
tap_plan 37

NAME="rc-data-read"
dev=/dev/mapper/$NAME

require_built "$RCOW_HELPER"
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
at_exit "dm_remove $NAME"

sum_direct() { dd if="$dev" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1; }
sum_buffered() { sha256sum <"$dev" | cut -d' ' -f1; }
counters() { dmsetup status "$NAME" | awk '{ print $5, $6, $7 }'; }

# one_case <desc> <extent_sectors> <length in sectors> <direct|buffered>
one_case() {
	local desc=$1 ext=$2 len=$3 how=$4 base nr sum table
	base=$tmp/base-$ext.img
	nr=$(((len + ext - 1) / ext))
	sum=$(make_base_image "$base" $((len * 512)) "data-read-$ext") ||
		tap_bail "cannot make the base image"
	make_cow $((len * 512 + (8 << 20))) || tap_bail "no COW loop device"
	table=$(rc_table "$len" "$COW_DEV" "$ext" "file://$base")
	tap_diag "$desc: $nr extents, last one $((len - (nr - 1) * ext)) sectors"

	check "$desc: create" dm_create "$NAME" "$table" || return
	if helper_start; then tap_ok "$desc: rcow-fill starts"; else tap_not_ok "$desc: rcow-fill starts"; fi
	check_eq "$desc: whole device ($how) equals the base" "$sum" "$(sum_"$how")"
	check_eq "$desc: all $nr present, none written, no fault in flight" \
		"$nr/$nr 0 0" "$(counters)"
	helper_stop
	# FAULTs name runs of adjacent extents: every extent filled once,
	# every FAULT answered, and never more FAULTs than extents.
	check_eq "$desc: every extent filled once, every fault answered" "$nr yes" \
		"$(helper_stat extents) $([ "$(helper_stat answered)" = "$(helper_stat faults)" ] &&
			[ "$(helper_stat faults)" -le "$nr" ] && echo yes)"

	# Again over the same COW device; a missing extent would fail after
	# 5 s instead of waiting for ever.
	check "$desc: remove" dm_remove "$NAME"
	check "$desc: re-create over the same COW" \
		dm_create "$NAME" "$(rc_table "$len" "$COW_DEV" "$ext" "file://$base" fault_timeout 5000)"
	check_eq "$desc: still all present after re-creation" "$nr/$nr 0 0" "$(counters)"
	if helper_start; then tap_ok "$desc: a new rcow-fill starts"; else tap_not_ok "$desc: a new rcow-fill starts"; fi
	check_eq "$desc: whole device (direct) still equals the base" "$sum" "$(sum_direct)"
	helper_stop
	check_eq "$desc: no fault needed after re-creation" 0 "$(helper_stat faults)"
	dm_remove "$NAME"
	check_eq "$desc: the base image is unchanged" "$sum" "$(sha256_of "$base")"
	rm -f "$base"
}

one_case "4 KiB extents, partial last extent" 8 $((2 * 2048 + 3)) buffered
one_case "64 KiB extents" 128 $((8 * 2048)) direct
one_case "4 MiB extents, partial last extent" 8192 $((3 * 8192 + 2049)) direct

check "the module unloads" unload_module
tap_done
