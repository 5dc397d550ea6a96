#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A remote-cow table over a zeroed COW loop device and a file:// base image
# is created with dmsetup, shows in 'dmsetup table' and 'dmsetup status',
# is removed, loads again on the now formatted COW device, and the module
# unloads afterwards.  The base image is never written.
. "$(dirname "$0")/lib.sh"

require_vm
require_cmd dmsetup losetup openssl
tap_plan 16

NAME="rc-table-create"
EXT=128				# extent: 64 KiB
BASE_BYTES=$((8 << 20))		# 8 MiB base
LEN=$((BASE_BYTES / 512))	# sectors
COW_BYTES=$((BASE_BYTES + (16 << 20)))	# metadata + length, with room

load_module || tap_bail "cannot load $RC_MODULE"
tmp=$(test_tmpdir)
base=$tmp/base.img
base_sum=$(make_base_image "$base" "$BASE_BYTES" table-create) ||
	tap_bail "cannot make the base image"
cow=$(make_zero_loop "$COW_BYTES") || tap_bail "cannot make the COW loop device"
cow_mm=$(lsblk -dno MAJ:MIN "$cow" | tr -d ' ')
table=$(rc_table "$LEN" "$cow" "$EXT" "file://$base")
tap_diag "table: $table"

kmsg_mark
check "dmsetup create $NAME" dm_create "$NAME" "$table" ||
	tap_diag "kernel log:" "$(dmesg_since_mark)"
check "/dev/mapper/$NAME is a block device" test -b "/dev/mapper/$NAME"
check_eq "device size is $LEN sectors" "$LEN" "$(dev_sectors "/dev/mapper/$NAME" 2>&1)"

read -r t_start t_len t_type t_cow t_ext t_uri t_rest <<<"$(dmsetup table "$NAME" 2>&1)"
check_eq "table: start, length, target" "0 $LEN $RC_TARGET" "$t_start $t_len $t_type"
if [ "$t_cow" = "$cow_mm" ] || [ "$t_cow" = "$cow" ]; then
	tap_ok "table: COW device ($t_cow)"
else
	tap_not_ok "table: COW device" "expected $cow_mm or $cow, got '$t_cow'"
fi
check_eq "table: extent size and base URI" "$EXT file://$base" "$t_ext $t_uri"
tap_diag "table extra: ${t_rest:-(none)}"

status=$(dmsetup status "$NAME" 2>&1)
tap_diag "status: $status"
read -r -a st <<<"$status"
# <start> <len> remote-cow <extent_sectors> <present>/<total> <written>
# <faults_in_flight> <connected|absent> ... <rw|ro|fail>
total=$(((LEN + EXT - 1) / EXT))
check_eq "status: extent size" "$EXT" "${st[3]:-}"
check_eq "status: nothing present yet, $total extents" "0/$total" "${st[4]:-}"
check_eq "status: nothing written, no fault in flight" "0 0" "${st[5]:-} ${st[6]:-}"
check_eq "status: no helper connected" "absent" "${st[7]:-}"
check_eq "status: last field is rw" "rw" "${st[${#st[@]} - 1]}"

check "dmsetup remove $NAME" dm_remove "$NAME"
check_fails "the device is gone" dm_exists "$NAME"

kmsg_mark
check "the table loads again on the formatted COW device" dm_create "$NAME" "$table" ||
	tap_diag "kernel log:" "$(dmesg_since_mark)"
dm_remove "$NAME"

check_eq "the base image is unchanged" "$base_sum" "$(sha256_of "$base")"
losetup -d "$cow"
check "the module unloads afterwards" unload_module

tap_done
