#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A FUA write to a present extent whose PRESENT bit is not yet on disk
# completes only after a metadata commit wrote that bit: otherwise a crash
# right after the acknowledgement would fetch the extent from the base
# again, and the acknowledged data would be gone.
#
# The case needs an extent already durably WRITTEN and in DIRTY_COMMIT
# (so the write itself needs no commit) but not PRESENT: what a crash
# leaves after a whole-extent write whose bits were committed before its
# PRESENT bit.  Here made directly: the bits set in the COW device's
# blocks with progs/rcow-md-edit.py (set-bit) while no table is loaded.
# Then, per extent (five of them), one fio run: a direct read (the fault:
# remote-cowd fills it, PRESENT is set in memory only), then a 4 KiB
# O_DSYNC write through libaio (REQ_FUA, no flush after it), and at once
# a copy of the COW backing file's metadata area: its PRESENT bitmap must
# hold the extent.  The periodic commit (every second) could have written
# it anyway, so a wrong "durable" answer is caught with a probability per
# extent, not always; five extents make a miss unlikely.  The data reads
# back (base, written bytes, base).
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl python3 fio cmp
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 9

NAME="rc-fua-present"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((4 << 20))		# 64 extents
LEN=$((BASE_BYTES / 512))
MDE="$RC_TREE/selftests/progs/rcow-md-edit.py"
EXTENTS="10 21 33 46 58"

require_built "$MDE"
file_test_setup "$BASE_BYTES" fua-present
tmp=$NET_WORKDIR
helper_start || tap_bail "remote-cowd does not start"
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
back=$(losetup -nO BACK-FILE "$COW_DEV" | sed 's/ *$//')
TABLE=$(rc_table "$LEN" "$COW_DEV" "$EXT" "file://$BASE_IMG")
dev=/dev/mapper/$NAME

# Extent 0 written: the first WRITTEN and DIRTY_COMMIT blocks have a copy.
check "first table, extent 0 written" dm_create "$NAME" "$TABLE"
write_byte_extent "$dev" "$EXTB" 0 97
check "removed (clean)" dm_remove "$NAME"

set_bits() {
	local e
	for e in $EXTENTS; do
		"$MDE" set-bit "$back" written "$e" &&
			"$MDE" set-bit "$back" dirty-commit "$e" || return 1
	done
}
check "WRITTEN and DIRTY_COMMIT set on disk for $EXTENTS, PRESENT not" set_bits
check "the table loads again" dm_create "$NAME" "$TABLE"
check_eq "status: 1 present, 6 written" "1 6" \
	"$(rc_status "$NAME" present) $(rc_status "$NAME" written)"

data_off=$("$RC_TREE/tools/remote-cow" cow-size --size "$BASE_BYTES" --extent-size 64K \
	--verbose | sed -n 's/^data offset: *\([0-9]*\) sectors$/\1/p')
[ -n "$data_off" ] || tap_bail "no data offset"

# fill_then_fua <extent>: the read that faults it in, the FUA write, the
# metadata area copied right after.
fill_then_fua() {
	local off=$(($1 * EXTB))
	fio --output=/dev/null --filename="$dev" --ioengine=libaio --direct=1 \
		--name=fill --rw=read --bs="$EXTB" --size="$EXTB" --offset="$off" \
		--name=fua --stonewall --rw=write --sync=dsync --bs=4k --size=4k \
		--offset=$((off + 8192)) --buffer_pattern=0x5a || return 1
	dd if="$back" of="$tmp/md.$1" bs=512 count="$data_off" status=none
}
missing=
for e in $EXTENTS; do
	fill_then_fua "$e" || tap_bail "fio failed on extent $e"
	"$MDE" bits "$tmp/md.$e" present | grep -qx "$e" || missing="$missing $e"
done
check_eq "each FUA write acknowledged with its extent's PRESENT bit on disk" "" "$missing"

readback() {
	local e off
	for e in $EXTENTS; do
		off=$((e * EXTB))
		cmp -s <(dd if="$dev" bs=4096 skip=$((off / 4096)) count=16 iflag=direct status=none) \
			<(base_part "$off" 8192; bytes_of 4096 90
			  base_part $((off + 12288)) $((EXTB - 12288))) || return 1
	done
}
check "each extent reads base, the 4 KiB written, base" readback
check_eq "status: 6 present" 6 "$(rc_status "$NAME" present)"
check "removed" dm_remove "$NAME"
tap_done
