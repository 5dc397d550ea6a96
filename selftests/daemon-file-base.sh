#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# remote-cowd with local bases.
#  1. file:// of a sparse image whose length is not a multiple of the
#     extent size: the whole device equals the image (the short last extent
#     included), the holes are zeroed without being read (bytes_zero), and
#     the bytes read are the data only.
#  2. file:// of a block device (the image on a loop device): the whole
#     device equals the image.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 8

EXT=128				# 64 KiB extents
EXT_BYTES=$((EXT * 512))
MIB=$((1 << 20))
BASE_BYTES=$((12 * MIB + 20 * 1024))	# last extent: 20 KiB
LEN=$((BASE_BYTES / 512))

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
img=$tmp/base.img
truncate -s "$BASE_BYTES" "$img"
# data at 0-1 MiB, 6 MiB + 4 KiB for 100 KiB, and the last 20 KiB
image_data fb-a $MIB | dd of="$img" conv=notrunc status=none
image_data fb-b $((100 * 1024)) |
	dd of="$img" bs=4k seek=$(((6 * MIB + 4096) / 4096)) conv=notrunc status=none
image_data fb-c $((20 * 1024)) |
	dd of="$img" bs=4k seek=$(((12 * MIB) / 4096)) conv=notrunc status=none
[ "$(stat -c %s "$img")" -eq "$BASE_BYTES" ] || tap_bail "image has the wrong size"
sum=$(sha256_of "$img")
# extents holding data: 16 (first MiB) + 2 (6 MiB + 4 KiB .. +104 KiB spans two) + 1 (last)
data_extents=19
tap_diag "image: $BASE_BYTES bytes, $(du -k "$img" | cut -f1) KiB allocated"

make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
helper_start || tap_bail "remote-cowd does not start"
at_exit "dm_remove rc-fb1"
dmsetup create rc-fb1 --table "$(rc_table "$LEN" "$COW_DEV" "$EXT" "file://$img")" ||
	tap_bail "cannot create rc-fb1"
check_eq "the device equals the sparse image, short last extent included" "$sum" \
	"$(sha256_of /dev/mapper/rc-fb1)"
last=$(dd if=/dev/mapper/rc-fb1 bs=4k skip=$(((12 * MIB) / 4096)) count=5 status=none |
	sha256sum | cut -d' ' -f1)
check_eq "the last 20 KiB read back" "$(image_data fb-c $((20 * 1024)) | sha256sum | cut -d' ' -f1)" \
	"$last"
total=$(((LEN + EXT - 1) / EXT))
check_eq "every extent is present" "$total/$total" "$(dm_status_field rc-fb1 2)"
dm_remove rc-fb1
helper_stop
tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"
read_b=$(helper_stat bytes_read)
zero_b=$(helper_stat bytes_zero)
# file holes are found per filesystem block: reads stay within the data extents
if [ "$read_b" -ge $((MIB + 120 * 1024)) ] && [ "$read_b" -le $((data_extents * EXT_BYTES)) ]; then
	tap_ok "bytes read from the file ($read_b) are the data, within its $data_extents extents"
else
	tap_not_ok "bytes read from the file are the data" \
		"bytes_read=$read_b, want $((MIB + 120 * 1024))..$((data_extents * EXT_BYTES))"
fi
if [ "$zero_b" -ge $(((total - data_extents) * EXT_BYTES)) ]; then
	tap_ok "the holes were zero-filled without reading ($zero_b bytes)"
else
	tap_not_ok "the holes were zero-filled without reading" \
		"bytes_zero=$zero_b < $(((total - data_extents) * EXT_BYTES))"
fi

# 2. a block device as the base
full=$tmp/full.img
full_sum=$(make_base_image "$full" $((16 * MIB)) daemon-file-base) ||
	tap_bail "cannot make the image"
bdev=$(make_loop "$full") || tap_bail "no loop device for the base"
at_exit "losetup -d '$bdev'"	# make_loop ran in a subshell
make_cow $((20 * MIB)) || tap_bail "no COW loop device"
helper_start || tap_bail "remote-cowd does not start again"
at_exit "dm_remove rc-fb2"
dmsetup create rc-fb2 --table "$(rc_table $((32 * 1024)) "$COW_DEV" "$EXT" "file://$bdev")" ||
	tap_bail "cannot create rc-fb2 over file://$bdev"
check_eq "a device over file://$bdev equals the block device" "$full_sum" \
	"$(sha256_of /dev/mapper/rc-fb2)"
dm_remove rc-fb2
helper_stop
check_eq "the whole block device was read" $((16 * MIB)) "$(helper_stat bytes_read)"
check_eq "no fill failed" 0 "$(helper_stat fill_errors)"

tap_done
