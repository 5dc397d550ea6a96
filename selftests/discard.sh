#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Discard, as Documentation/remote-cow.rst documents it.  With
# discard_passdown (the default) the device advertises a discard
# granularity of one extent; a discard over present extents is passed down
# to the COW device (a loop device over tmpfs here, so the range then reads
# as zeroes) and those extents count as written; over missing extents it
# does nothing: the base stays visible and neither PRESENT nor WRITTEN
# moves.  Covered: whole extents, part of one extent, a range across an
# extent boundary, missing extents, a range half present and half missing,
# the whole device; every result compared with a reference (the base with
# the discarded present ranges zeroed) and the counters checked exactly;
# all of it survives removal and re-creation.  With no_discard_passdown
# the device does not support discard: blkdiscard fails, nothing changes.
# shellcheck disable=SC2119,SC2317	# helper_start: optional arguments; functions called through check
. "$(dirname "$0")/lib.sh"
RCOW_HELPER=$RC_TREE/selftests/progs/rcow-fill
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp blkdiscard
tap_plan 39

NAME="rc-discard"
EXT=128
EXTB=$((EXT * 512))		# 64 KiB
BASE_BYTES=$((4 << 20))		# 64 extents
LEN=$((BASE_BYTES / 512))
NR=$((LEN / EXT))
NL=$RC_TREE/selftests/progs/rcow-nl
dev=/dev/mapper/$NAME

require_built "$RCOW_HELPER" "$NL"
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
base=$tmp/base.img
ref=$tmp/ref.img
base_sum=$(make_base_image "$base" "$BASE_BYTES" discard) ||
	tap_bail "cannot make the base image"
cp "$base" "$ref"
make_cow $((BASE_BYTES + (2 << 20))) || tap_bail "no COW loop device"
cow=$COW_DEV
TABLE=$(rc_table "$LEN" "$cow" "$EXT" "file://$base")
dm_create "$NAME" "$TABLE" || tap_bail "cannot create $NAME"
helper_start || tap_bail "rcow-fill does not start"

counters() { dmsetup status "$NAME" | awk '{ split($5, p, "/"); print p[1], $6 }'; }
queue() { cat "/sys/block/dm-$(dmsetup info -c --noheadings -o minor "$NAME" | tr -d ' ')/queue/$1"; }
zero_ref() {	# zero_ref <offset> <length> (bytes)
	dd if=/dev/zero of="$ref" bs=512 seek=$(($1 / 512)) count=$(($2 / 512)) \
		conv=notrunc status=none
}
# -f: no signature probing (it would read, and so fault, extents)
discard() { blkdiscard -f -o "$1" -l "$2" "$dev"; }
# same_range <first extent> <extents>: a direct read equals the reference
same_range() {
	cmp <(dd if="$dev" bs="$EXTB" skip="$1" count="$2" iflag=direct status=none) \
		<(dd if="$ref" bs="$EXTB" skip="$1" count="$2" status=none)
}
same_all() { cmp <(dd if="$dev" bs=1M iflag=direct status=none) "$ref"; }

check_eq "discard granularity is one extent ($EXTB bytes)" "$EXTB" "$(queue discard_granularity)"
max=$(queue discard_max_bytes)
check "discard is supported (discard_max_bytes $max)" test "$max" -gt 0

check "read extents 0-15 (now present)" same_range 0 16
check_eq "16 present, 0 written" "16 0" "$(counters)"

# Whole present extents.
check "discard extents 2-3" discard $((2 * EXTB)) $((2 * EXTB))
zero_ref $((2 * EXTB)) $((2 * EXTB))
check_eq "still 16 present, 2 written" "16 2" "$(counters)"
check "extents 2-3 read as zeroes, 0-15 otherwise unchanged" same_range 0 16

# Part of one present extent.
check "discard 8 KiB inside extent 5" discard $((5 * EXTB + 4096)) 8192
zero_ref $((5 * EXTB + 4096)) 8192
check_eq "16 present, 3 written" "16 3" "$(counters)"
check "only those 8 KiB read as zeroes" same_range 0 16

# Across the boundary of two present extents, not aligned to either.
check "discard 8 KiB across extents 8/9" discard $((9 * EXTB - 4096)) 8192
zero_ref $((9 * EXTB - 4096)) 8192
check_eq "16 present, 5 written" "16 5" "$(counters)"
check "4 KiB on each side of the boundary read as zeroes" same_range 0 16

# Missing extents: nothing happens, the base stays visible.
check "discard missing extents 40-43" discard $((40 * EXTB)) $((4 * EXTB))
check_eq "nothing moved: 16 present, 5 written" "16 5" "$(counters)"
check "extents 40-43 read as the base" same_range 40 4
check_eq "20 present, 5 written after reading them" "20 5" "$(counters)"

# Half present (14, 15), half missing (16, 17).
check "discard extents 14-17 (14-15 present, 16-17 missing)" \
	discard $((14 * EXTB)) $((4 * EXTB))
zero_ref $((14 * EXTB)) $((2 * EXTB))
check_eq "20 present, 7 written (the present half)" "20 7" "$(counters)"
check "14-15 read as zeroes, 16-17 as the base" same_range 12 8
check_eq "24 present after reading 12-19" "24 7" "$(counters)"

# The whole device: every present extent zeroed and written, the rest
# untouched.
ID=$("$NL" devices 2>/dev/null | sed -n "s/^dev_id=\([0-9]*\) name=$NAME .*/\1/p")
bits=$("$NL" get-bitmap "${ID:-0}" present 0 2>&1 | sed -n 's/.* bits=\([01]*\)$/\1/p')
check_eq "PRESENT bitmap: $NR bits, 24 set" "$NR 24" "${#bits} $(tr -cd 1 <<<"$bits" | wc -c)"
check "discard the whole device" blkdiscard -f "$dev"
for ((e = 0; e < ${#bits}; e++)); do
	[ "${bits:e:1}" = 1 ] && zero_ref $((e * EXTB)) "$EXTB"
done
check_eq "24 present, 24 written" "24 24" "$(counters)"
check "the whole device: present extents zeroes, missing ones the base" same_all
check_eq "all present after reading, still 24 written" "$NR 24" "$(counters)"

# Persistence.
helper_stop
check "remove" dm_remove "$NAME"
check "re-create over the same COW" dm_create "$NAME" "$TABLE"
check_eq "counters survive: $NR present, 24 written" "$NR 24" "$(counters)"
check "content survives" same_all

# no_discard_passdown: no discard support at all.
check "remove" dm_remove "$NAME"
check "re-create with no_discard_passdown" \
	dm_create "$NAME" "$(rc_table "$LEN" "$cow" "$EXT" "file://$base" no_discard_passdown)"
check_eq "no_discard_passdown: discard_max_bytes is 0" 0 "$(queue discard_max_bytes)"
check_fails "no_discard_passdown: blkdiscard fails" discard 0 $((4 * EXTB))
check_eq "no_discard_passdown: counters unchanged" "$NR 24" "$(counters)"
check "no_discard_passdown: content unchanged" same_all
check "remove" dm_remove "$NAME"
check_eq "the base image is unchanged" "$base_sum" "$(sha256_of "$base")"
losetup -d "$cow"
check "the module unloads" unload_module
tap_done
