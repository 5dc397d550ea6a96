#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# reload-late-fill with the real daemon: no fill of remote-cowd for an old
# table lands after a table reload.  Twice:
#  A. a slow base (dm-delay, 2 s per read): faults of extents 0-3 are out,
#     their base reads in flight, when the table is reloaded; remote-cowd
#     answers QUIESCE at once and throws the reads' data away;
#  B. a slow COW data area (dm-delay, 2 s per write): the fills' writes are
#     in flight when the table is reloaded; remote-cowd answers QUIESCE
#     only once they completed, so the reload waits for them.
# Each time the new table at once writes extent 3 whole, and after every
# old fill would have landed, extent 3 still holds that write; the other
# extents read as the base, and no COW device is fenced.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup cmp blockdev
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
modprobe dm-delay || tap_bail "no dm-delay target: it is part of Debian's kernel"
NL=$RC_TREE/selftests/progs/rcow-nl
require_built "$NL"
tap_plan 12

EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
MIB=$((1 << 20))
BASE_BYTES=$((4 * MIB))
LEN=$((BASE_BYTES / 512))
DELAY_MS=2000
NAME="rc-dlate"

load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" daemon-reload-late-fill
tmp=$NET_WORKDIR
head -c "$EXTB" /dev/urandom >"$tmp/pattern"
at_exit "dm_remove $NAME"
dev_id() { "$NL" devices 2>/dev/null | grep " name=$NAME " | sed -n 's/^dev_id=\([0-9]*\) .*/\1/p'; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# late_fill <what> <cow dev> <base uri>: the reload with faults out, then
# the checks (5 tests).
late_fill() {
	local what=$1 cow=$2 uri=$3 table t0 ms
	table=$(rc_table "$LEN" "$cow" "$EXT" "$uri")
	dmsetup create "$NAME" --table "$table" || tap_bail "cannot create $NAME"
	kmsg_mark
	check_eq "$what: HYDRATE extents 0-3" queued=4 "$("$NL" hydrate "$(dev_id)" 0 4 2>&1)"
	sleep 0.5
	t0=$(now_ms)
	dmsetup suspend "$NAME" && dmsetup load "$NAME" --table "$table" &&
		dmsetup resume "$NAME"
	check_eq "$what: the table reloads while the fills are out" 0 "$?"
	ms=$(($(now_ms) - t0))
	tap_diag "$what: the reload took $ms ms"
	dd if="$tmp/pattern" of="/dev/mapper/$NAME" bs="$EXTB" seek=3 count=1 oflag=direct \
		conv=fsync status=none || tap_not_ok "$what: the new table writes extent 3"
	sleep $((2 * DELAY_MS / 1000 + 3))
	check "$what: after the old fills would have landed, extent 3 holds the new write" \
		cmp -s "$tmp/pattern" <(dd if="/dev/mapper/$NAME" bs="$EXTB" skip=3 count=1 \
			iflag=direct status=none)
	check "$what: extents 0-2 read as the base" \
		cmp <(dd if="/dev/mapper/$NAME" bs="$EXTB" count=3 iflag=direct status=none) \
		<(dd if="$BASE_IMG" bs="$EXTB" count=3 status=none)
	expect_no_dmesg "$what: no fence (remote-cowd answered QUIESCE)" "fenced"
	dm_remove "$NAME"
}

# --- A: slow base ----------------------------------------------------------------
base_loop=$(make_loop "$BASE_IMG") || tap_bail "no loop device for the base"
at_exit "losetup -d '$base_loop'"
at_exit "dm_remove rc-dlate-base"
dmsetup create rc-dlate-base --table "0 $LEN delay $base_loop 0 $DELAY_MS" ||
	tap_bail "cannot create the dm-delay base"
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
helper_start -v || tap_bail "remote-cowd does not start"
late_fill "slow base" "$COW_DEV" file:///dev/mapper/rc-dlate-base
helper_stop

# --- B: slow COW data area -----------------------------------------------------------
slow_cow_data rc-dlate-cow "$BASE_BYTES" "$EXTB" "$DELAY_MS" ||
	tap_bail "cannot create the dm-delay COW device"
helper_start -v || tap_bail "remote-cowd does not start"
late_fill "slow COW" "$SLOW_COW" "file://$BASE_IMG"
helper_stop
check_eq "remote-cowd: no fill failed" 0 "$(helper_stat fill_errors)"
check "remote-cowd answered QUIESCE (its log)" grep -q "quiesced (QUIESCE" "$HELPER_LOG"
tap_done
