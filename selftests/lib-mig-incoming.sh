#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel side of a live migration's destination driven by an "rcow-nl
# session" playing the helper (migrate-incoming, migrate-postcopy-kernel).
# Sourced after lib.sh and lib-net.sh; the test sets NAME (dm name), EXT
# (extent sectors), EXTB (extent bytes), BASE_BYTES and LEN, and later ID
# (its netlink id) and DATA_OFF (the data area's offset, in sectors).
# shellcheck disable=SC2154,SC2034	# NAME, EXT, ... set by the test; dev, TABLE, TABLE_IN used by it

# incoming_setup <test name> <extent>...: the base image, a COW loop
# device and the two table lines over it (TABLE plain, TABLE_IN with the
# incoming feature), and the reference $tmp/ref: the base with random data
# in the extents named (what the source wrote).  Sets base, tmp, cow, dev.
incoming_setup() {
	local t=$1 e
	shift
	file_test_setup "$BASE_BYTES" "$t"
	base=$BASE_IMG
	tmp=$NET_WORKDIR
	make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
	cow=$COW_DEV
	dev=/dev/mapper/$NAME
	TABLE=$(rc_table "$LEN" "$cow" "$EXT" "file://$base")
	TABLE_IN=$(rc_table "$LEN" "$cow" "$EXT" "file://$base" incoming)
	cp "$base" "$tmp/ref"
	for e in "$@"; do
		head -c "$EXTB" /dev/urandom |
			dd of="$tmp/ref" bs="$EXTB" seek="$e" conv=notrunc status=none
	done
}
# ref_write <extent> <file>: the guest writes <file> (one extent) there:
# so does the reference.
ref_write() { dd if="$2" of="$tmp/ref" bs="$EXTB" seek="$1" conv=notrunc status=none; }
migrate_state() { dm_status_field "$NAME" 9; }
fill() { sess raw migrate_fill "dev_id:u32:$ID" "first_extent:u64:$1" "extent_count:u32:$2"; }
# copy_extents <from file> <first> [count]: the helper's part, the data of
# those extents into the COW device's data area, written directly.
copy_extents() {
	dd if="$1" of="$cow" bs=512 skip=$(($2 * EXT)) seek=$((DATA_OFF + $2 * EXT)) \
		count=$((EXT * ${3:-1})) conv=notrunc oflag=direct status=none
}
# bg_io <name> <dd args...>: dd in the background; <name>.rc holds its
# exit status once it ended.
bg_io() {
	local n=$1
	shift
	rm -f "$tmp/$n.rc"
	{ dd "$@" status=none 2>/dev/null; echo $? >"$tmp/$n.rc"; } &
	at_exit "kill $! 2>/dev/null"
}
io_rc() { cat "$tmp/$1.rc" 2>/dev/null; }
ended() { [ -e "$tmp/$1.rc" ]; }
