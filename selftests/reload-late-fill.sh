#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# No fill of an old table lands after a table reload or a removal.  The
# helper (rcow-fill) is slow: 1.5 s before each fill.  Extents are faulted
# in by HYDRATE, so no bio waits on them; while the helper still has those
# faults, the table is reloaded (suspend, load, resume) or the device is
# removed and created again over the same COW device, and the new table at
# once writes a whole extent that the old table had asked the helper to
# fill.  The helper's late write of base data must not overwrite it: the
# suspend sends QUIESCE and waits for the helper's answer, which comes
# only after its last write.  Before that handshake the extent read back
# as the base afterwards.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup dd cmp
use_rcow_fill
NL=$RC_TREE/selftests/progs/rcow-nl
require_built "$NL"
tap_plan 12

NAME="rc-late-fill"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
DELAY_MS=1500

load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" reload-late-fill
tmp=$NET_WORKDIR
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
cow=$COW_DEV
TABLE=$(rc_table "$LEN" "$cow" "$EXT" "file://$BASE_IMG")
helper_start --delay-ms "$DELAY_MS" || tap_bail "rcow-fill does not start"
dm_create "$NAME" "$TABLE" || tap_bail "cannot create $NAME"
dev_id() { "$NL" devices 2>/dev/null | grep " name=$NAME " | sed -n 's/^dev_id=\([0-9]*\) .*/\1/p'; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
head -c "$EXTB" /dev/urandom >"$tmp/pattern"

# extent_is_pattern <extent>: a direct read of it equals $tmp/pattern.
extent_is_pattern() {
	cmp -s "$tmp/pattern" <(dd if="/dev/mapper/$NAME" bs="$EXTB" skip="$1" count=1 \
		iflag=direct status=none)
}

# --- reload ----------------------------------------------------------------
kmsg_mark
check_eq "HYDRATE extents 0-3: four faults to the slow helper" queued=4 \
	"$("$NL" hydrate "$(dev_id)" 0 4 2>&1)"
sleep 0.3
t0=$(now_ms)
check "reload the table while the helper still fills (suspend, load, resume)" \
	eval "dmsetup suspend $NAME && dmsetup load $NAME --table '$TABLE' && dmsetup resume $NAME"
tap_diag "the reload took $(($(now_ms) - t0)) ms"
check "the new table writes extent 3 whole at once" \
	dd if="$tmp/pattern" of="/dev/mapper/$NAME" bs="$EXTB" seek=3 count=1 oflag=direct \
	conv=fsync status=none
sleep $((4 * DELAY_MS / 1000 + 2))
check "after the helper is done, extent 3 still holds the new write" extent_is_pattern 3
check "extents 0-2 read as the base" \
	cmp <(dd if="/dev/mapper/$NAME" bs="$EXTB" count=3 iflag=direct status=none) \
	<(dd if="$BASE_IMG" bs="$EXTB" count=3 status=none)
expect_no_dmesg "no fence (the helper answered QUIESCE)" "fenced"

# --- remove and create again ---------------------------------------------------
check_eq "HYDRATE extents 4-7" queued=4 "$("$NL" hydrate "$(dev_id)" 4 4 2>&1)"
sleep 0.3
check "remove the device while the helper still fills" dmsetup remove "$NAME"
check "create it again over the same COW device" dmsetup create "$NAME" --table "$TABLE"
check "the new device writes extent 7 whole at once" \
	dd if="$tmp/pattern" of="/dev/mapper/$NAME" bs="$EXTB" seek=7 count=1 oflag=direct \
	conv=fsync status=none
sleep $((4 * DELAY_MS / 1000 + 2))
check "after the helper is done, extent 7 still holds the new write" extent_is_pattern 7
check "the whole device: base, but extents 3 and 7" \
	cmp <(dd if="/dev/mapper/$NAME" bs="$EXTB" iflag=direct status=none) \
	<(cat "$BASE_IMG" >"$tmp/expect" &&
		dd if="$tmp/pattern" of="$tmp/expect" bs="$EXTB" seek=3 conv=notrunc status=none &&
		dd if="$tmp/pattern" of="$tmp/expect" bs="$EXTB" seek=7 conv=notrunc status=none &&
		cat "$tmp/expect")
tap_done
