#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# An ext4 file system made on a remote-cow device served by remote-cowd
# (the base: a sparse, all-hole 64 MiB image on nbdkit in a network
# namespace).  Files written with their checksums survive unmount, device
# removal, a restart of the daemon, and re-creation of the device over the
# same COW device; fsck finds the file system clean; the rest of the device
# (still missing) is then faulted in by a whole-device read; the base image
# on the server is never written and, being all holes, costs no data
# transfer in either daemon run.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc openssl mkfs.ext4 fsck.ext4
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 13

NAME="rc-ext4"
EXT=128
MIB=$((1 << 20))
BASE_BYTES=$((64 * MIB))
LEN=$((BASE_BYTES / 512))

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
net_setup || tap_bail "cannot set up the network namespace"
net_shape 2ms || tap_bail "cannot shape the link"
truncate -s "$BASE_BYTES" "$tmp/base.img"
base_sum=$(sha256_of "$tmp/base.img")
net_serve "$tmp/base.img" || tap_bail "cannot start the NBD server"
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
table=$(rc_table "$LEN" "$COW_DEV" "$EXT" "$(net_uri)")
helper_start || tap_bail "remote-cowd does not start"

at_exit "dm_remove $NAME"
dmsetup create "$NAME" --table "$table" || tap_bail "cannot create $NAME"
check "mkfs.ext4 on the device" mkfs.ext4 -q -F -b 4096 "/dev/mapper/$NAME"
mkdir -p "$tmp/mnt"
at_exit "umount '$tmp/mnt'"
check "mount it" mount "/dev/mapper/$NAME" "$tmp/mnt"
mkdir -p "$tmp/mnt/dir/sub"
for i in 1 2 3 4 5; do
	image_data "ext4-$i" $((i * 900000 + 123)) >"$tmp/mnt/file$i.bin"
done
image_data ext4-deep 4096 >"$tmp/mnt/dir/sub/deep.bin"
echo "hello from remote-cow" >"$tmp/mnt/dir/hello.txt"
(cd "$tmp/mnt" && find . -path ./lost+found -prune -o -type f -print0 | sort -z |
	xargs -0 sha256sum) >"$tmp/sums"
check "unmount" umount "$tmp/mnt"
check "remove the device" dm_remove "$NAME"

helper_stop
tap_diag "first run: $(tr '\n' ' ' <"$HELPER_STATS")"
if [ "$(helper_stat faults)" -gt 0 ] && [ "$(helper_stat bytes_read)" = 0 ] &&
	[ "$(helper_stat bytes_zero)" -gt 0 ]; then
	tap_ok "mkfs and the files faulted extents in as zeroes, nothing read from the base"
else
	tap_not_ok "mkfs and the files faulted extents in as zeroes" \
		"faults=$(helper_stat faults) bytes_read=$(helper_stat bytes_read) bytes_zero=$(helper_stat bytes_zero)"
fi
helper_start || tap_bail "remote-cowd does not start again"
dmsetup create "$NAME" --table "$table" || tap_bail "cannot create $NAME again"
tap_ok "created again over the same COW device"
check "fsck.ext4 finds it clean" fsck.ext4 -fn "/dev/mapper/$NAME"
if mount "/dev/mapper/$NAME" "$tmp/mnt"; then
	check "every file has its checksum" sh -c "cd '$tmp/mnt' && sha256sum --quiet -c '$tmp/sums'"
	umount "$tmp/mnt"
else
	tap_not_ok "every file has its checksum" "mount failed"
fi
check "a whole-device read (the missing extents) succeeds" \
	dd if="/dev/mapper/$NAME" of=/dev/null bs=1M iflag=direct status=none
total=$((LEN / EXT))
check_eq "every extent is present" "$total/$total" "$(dm_status_field "$NAME" 2)"
dm_remove "$NAME"
helper_stop
tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"
check_eq "second run: no data was read from the all-hole base" 0 "$(helper_stat bytes_read)"
check_eq "no fill failed" 0 "$(helper_stat fill_errors)"
check_eq "the base image on the server is unchanged" "$base_sum" "$(sha256_of "$tmp/base.img")"

tap_done
