#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A remote-cow device over a real NBD server (nbdkit in a network
# namespace behind a veth link, nbd://10.99.0.2:10809/base) reads exactly
# the base: the whole device's sha256 equals the image's.  Then an ext4
# base: its files read back with their checksums, new files are written,
# the device is unmounted, removed and created again over the same COW
# device, and every file (base and new) still has its checksum.  The image
# on the server is never written.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc openssl mkfs.ext4
tap_plan 14

EXT=128				# 64 KiB extents
RAW_BYTES=$((16 << 20))		# random base
FS_MIB=48			# ext4 base

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
net_setup || tap_bail "cannot set up the network namespace"
net_shape 1ms || tap_bail "cannot shape the link"
tap_diag "helper: $RCOW_HELPER; server: $NET_SERVER on $(net_uri)"

# --- 1. whole-device content ---------------------------------------------
raw_sum=$(make_base_image "$tmp/raw.img" "$RAW_BYTES" nbd-content) ||
	tap_bail "cannot make the base image"
net_serve "$tmp/raw.img" || tap_bail "cannot start the NBD server"
len=$((RAW_BYTES / 512))
make_cow $((RAW_BYTES + (16 << 20))) || tap_bail "no COW loop device"
cow=$COW_DEV
helper_start || tap_bail "the helper does not start"

at_exit "dm_remove rc-nbd-raw"	# dm_create runs in check's subshell
check "create rc-nbd-raw over $(net_uri)" \
	dm_create rc-nbd-raw "$(rc_table "$len" "$cow" "$EXT" "$(net_uri)")" ||
	tap_bail "cannot create the device"
before=$(net_bytes rx)
check_eq "whole device sha256 equals the base's" "$raw_sum" \
	"$(sha256_of /dev/mapper/rc-nbd-raw)"
got=$(($(net_bytes rx) - before))
total=$((len / EXT))
check_eq "every extent is present afterwards" "$total/$total" \
	"$(dm_status_field rc-nbd-raw 2)"
tap_diag "bytes received over the link: $got for a $RAW_BYTES-byte base"
if [ "$got" -ge "$RAW_BYTES" ]; then
	tap_ok "the data came over the link ($got bytes received)"
else
	tap_not_ok "the data came over the link" "received $got < $RAW_BYTES bytes"
fi
check "remove rc-nbd-raw" dm_remove rc-nbd-raw
net_server_kill

# --- 2. ext4 base, files survive removal and re-creation --------------------
mkdir -p "$tmp/content" "$tmp/mnt"
echo "served by nbdkit in namespace $NET_NS" >"$tmp/content/hello.txt"
for i in 1 2 3 4; do
	image_data "nbd-content-file$i" $((i << 20)) >"$tmp/content/file$i.bin"
done
mkdir "$tmp/content/dir"
image_data nbd-content-small 12345 >"$tmp/content/dir/small.bin"
(cd "$tmp/content" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$tmp/base.sums"
mkfs.ext4 -q -F -b 4096 -d "$tmp/content" "$tmp/fs.img" "${FS_MIB}M" ||
	tap_bail "mkfs.ext4 -d failed"
fs_sum=$(sha256_of "$tmp/fs.img")
net_serve "$tmp/fs.img" || tap_bail "cannot restart the NBD server on the ext4 image"
flen=$((FS_MIB * 2048))
make_cow $(((FS_MIB + 16) << 20)) || tap_bail "no COW loop device"
fcow=$COW_DEV
ftable=$(rc_table "$flen" "$fcow" "$EXT" "$(net_uri)")

at_exit "dm_remove rc-nbd-fs"
check "create rc-nbd-fs over the ext4 base" dm_create rc-nbd-fs "$ftable" ||
	tap_bail "cannot create the device"
at_exit "umount '$tmp/mnt'"
check "mount it" mount /dev/mapper/rc-nbd-fs "$tmp/mnt"
check "the base's files have their checksums" \
	sh -c "cd '$tmp/mnt' && sha256sum --quiet -c '$tmp/base.sums'"
for i in 1 2 3; do
	image_data "nbd-content-new$i" $((i * 700000)) >"$tmp/mnt/new$i.bin"
done
cp "$tmp/mnt/file2.bin" "$tmp/mnt/dir/copy-of-file2.bin"
echo "appended locally" >>"$tmp/mnt/hello.txt"
(cd "$tmp/mnt" && find . -path ./lost+found -prune -o -type f -print0 | sort -z |
	xargs -0 sha256sum) >"$tmp/all.sums"
check "unmount" umount "$tmp/mnt"
written=$(dm_status_field rc-nbd-fs 3)
tap_diag "status after unmount: $(dmsetup status rc-nbd-fs)"
check "remove rc-nbd-fs" dm_remove rc-nbd-fs

check "create it again over the same COW device" dm_create rc-nbd-fs "$ftable"
check_eq "the written extents are still counted" "$written" "$(dm_status_field rc-nbd-fs 3)"
if mount /dev/mapper/rc-nbd-fs "$tmp/mnt"; then
	check "every file, base and new, has its checksum" \
		sh -c "cd '$tmp/mnt' && sha256sum --quiet -c '$tmp/all.sums'"
	umount "$tmp/mnt"
else
	tap_not_ok "every file, base and new, has its checksum" "mount failed"
fi
dm_remove rc-nbd-fs
helper_stop
check_eq "the image on the server is unchanged" "$fs_sum" "$(sha256_of "$tmp/fs.img")"

tap_done
