#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Bios that span several extents.  The target remaps such a bio whole when
# every extent it touches is present and otherwise takes only its part in
# the first extent (dm sends the rest again).  Large direct reads and
# writes over extents that are all present, all missing, or mixed, with
# and without FUA, must give exactly what the same writes give on a plain
# copy of the base; present/written counters must follow.
. "$(dirname "$0")/lib.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp
tap_plan 17

NAME="rc-data-span"
EXT=8				# 4 KiB extents: a 1 MiB bio spans 256
BASE_BYTES=$((4 << 20))
LEN=$((BASE_BYTES / 512))
export DM_DISABLE_UDEV=1

load_module || tap_bail "cannot load $RC_MODULE"
tmp=$(test_tmpdir)
base=$tmp/base.img
ref=$tmp/ref.img
make_base_image "$base" "$BASE_BYTES" data-span >/dev/null ||
	tap_bail "cannot make the base image"
cp "$base" "$ref"
cow=$(make_zero_loop $((BASE_BYTES + (8 << 20)))) ||
	tap_bail "cannot make the COW loop device"
dev=/dev/mapper/$NAME
table=$(rc_table "$LEN" "$cow" "$EXT" "file://$base")
dm_create "$NAME" "$table" || tap_bail "cannot create $NAME"

fill=$tmp/fill.log
"$RC_TREE/selftests/progs/rcow-fill" --stats "$tmp/fill.stats" \
	--ready "$tmp/fill.ready" >"$fill" 2>&1 &
fill_pid=$!
at_exit "kill $fill_pid 2>/dev/null; wait $fill_pid 2>/dev/null"
for _ in $(seq 100); do [ -e "$tmp/fill.ready" ] && break; sleep 0.1; done
[ -e "$tmp/fill.ready" ] || tap_bail "rcow-fill not ready: $(cat "$fill")"

present() { dm_status_field "$NAME" 2 | cut -d/ -f1; }
written() { dm_status_field "$NAME" 3; }

# write_both <offset KiB> <KiB> <seed> [oflag]: the same data to both
# shellcheck disable=SC2317 # called through check
write_both() {
	local off=$1 kib=$2 seed=$3 oflag=${4:-direct}
	image_data "span-$seed" $((kib * 1024)) >"$tmp/chunk"
	dd if="$tmp/chunk" of="$dev" bs=1K seek="$off" count="$kib" \
		oflag="$oflag" conv=notrunc status=none &&
		dd if="$tmp/chunk" of="$ref" bs=1K seek="$off" count="$kib" \
			conv=notrunc status=none
}

# same_range <offset KiB> <KiB>: direct read of the device equals the ref
# shellcheck disable=SC2317 # called through check
same_range() {
	cmp <(dd if="$dev" bs=1K skip="$1" count="$2" iflag=direct status=none) \
		<(dd if="$ref" bs=1K skip="$1" count="$2" status=none)
}

# 1. A 1 MiB direct read over 256 missing extents: trimmed to one extent
#    at a time, each faulted.
check "1 MiB read over missing extents equals the base" same_range 0 1024
check_eq "256 extents present after it" 256 "$(present)"

# 2. The same range again, now all present: remapped whole.
check "1 MiB read over present extents equals the base" same_range 0 1024

# 3. A read that starts in present extents and runs into missing ones.
check "2 MiB read, half present, equals the base" same_range 0 2048
check_eq "512 extents present" 512 "$(present)"

# 4. Writes spanning present extents (one remap) mark every extent written.
check "1 MiB direct write over present extents" write_both 102 1024 a
check_eq "257 extents written (unaligned 1 MiB)" 257 "$(written)"

# 5. A write spanning present and missing extents, unaligned at both ends.
check "write across the present/missing border" write_both 2001 200 b
check "the border range reads back as written" same_range 1900 400

# 6. FUA writes spanning present extents (trimmed, each one made durable).
check "1 MiB FUA write over present extents" write_both 300 1024 c direct,sync
# 7. Whole missing extents written in one bio.
check "512 KiB write over whole missing extents" write_both 3072 512 d

check "the whole device equals the reference" \
	cmp <(dd if="$dev" bs=1M iflag=direct status=none) "$ref"

# Persistence: remove, re-create, compare again with no helper running.
kill "$fill_pid"; wait "$fill_pid" 2>/dev/null
p_before=$(present)
check "dmsetup remove" dm_remove "$NAME"
check "re-create over the same COW device" dm_create "$NAME" "$table"
check_eq "present count survives" "$p_before" "$(present)"
# Only read what is present (no helper): offsets 0..2 MiB and 3..3.5 MiB.
check "present data survives re-creation" same_range 0 2048

check_eq "the base image is unchanged" "$(sha256_of "$base")" \
	"$(make_base_image "$tmp/base2.img" "$BASE_BYTES" data-span)"
tap_done
