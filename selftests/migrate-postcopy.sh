#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# Post-copy live migration end to end (remote-cow migrate --postcopy,
# remote-cow receive, one remote-cowd playing both sides over loopback
# TCP, lib-mig.sh), over a slow link so that extents are still on the
# source when the destination starts to serve.
#
# - to the end: migrate --postcopy while fio writes, rounds go by; the
#   guest pauses (fio stopped, a reference read from the source); a plain
#   'migrate finish --wait' (post-copy was chosen at the start) returns
#   once the destination serves: both sides postcopy, extents named as
#   still remote; 'migrate abort' is then refused, and 'remote-cow remove'
#   of either device (exit 7); the destination takes a
#   4 KiB write inside the written region and reads, byte for byte, the
#   reference with that write (remote extents fetched from the source on
#   demand, the rest from the base); it then completes (idle), the source
#   is done and refuses writes, and the destination still equals;
# The source dying mid-way: migrate-postcopy-source-lost (end to end),
# rcowd-test mig-postcopy-lost and -gone (the daemon) and
# migrate-postcopy-kernel (EIO, never base data).
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp fio psktool tc
tap_plan 15

PORT=17751
mig_setup migrate-postcopy --migrate-peer-timeout 10s
migrate_pc() {
	"$RC" migrate "$1" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN" \
		--postcopy
}

# --- post-copy to the end -----------------------------------------------------
SRC="rc-pc-src"
DST="rc-pc-dst"
new_pair "$SRC" "$DST" || tap_bail "cannot set up the first pair"
wait_until 10 listening "$DST" >/dev/null || tap_bail "remote-cowd does not listen for $DST"
mig_link_shape 2ms 2mbit || tap_bail "cannot shape lo (tc netem)"
mig_fio "$SRC"
sleep 1
check "migrate --postcopy while fio writes: started" migrate_pc "$SRC"
check "rounds go by" wait_until 120 sent_past "$SRC" 8
mig_fio_stop
dd if="/dev/mapper/$SRC" of="$tmp/ref.img" bs=1M iflag=direct status=none ||
	tap_bail "cannot read the source"
check "finish --wait returns once the destination serves" \
	timeout 120 "$RC" migrate "$SRC" finish --wait ||
	tap_diag "$(grep -E "$SRC|$DST" "$HELPER_LOG" | tail -n 12)"
st_dst=$(state "$DST") st_src=$(state "$SRC") remote=$(rc_status "$DST" migrate_total)
tap_diag "$(grep "post-copy" "$HELPER_LOG")"
check_eq "the destination: postcopy" postcopy "$st_dst"
check_eq "the source: postcopy" postcopy "$st_src"
check "extents were still on the source at the switch (${remote:-?})" test "${remote:-0}" -gt 0
check "migrate abort is refused while the destination serves" \
	bash -c "! '$RC' migrate '$SRC' abort >/dev/null 2>&1"
# remove_refused <dm name>: in post-copy, and 'remote-cow remove' exits 7
# (not tried otherwise: it would remove the device)
remove_refused() {
	state_is "$1" postcopy || return 1
	"$RC" remove "$1" >/dev/null 2>&1
	[ $? -eq 7 ]
}
check "remote-cow remove of the source is refused meanwhile (exit 7)" remove_refused "$SRC"
check "... and of the destination (exit 7)" remove_refused "$DST"
# a guest write on the destination, inside the written region
image_data "$MIG_TEST-dst-write" 4096 >"$tmp/w.bin"
dd if="$tmp/w.bin" of="/dev/mapper/$DST" bs=4k seek=$((5 * 256 + 3)) oflag=direct \
	status=none 2>/dev/null
check "... a 4 KiB write on the destination during post-copy succeeds" test $? -eq 0
dd if="$tmp/w.bin" of="$tmp/ref.img" bs=4k seek=$((5 * 256 + 3)) conv=notrunc status=none
check "the destination reads the reference with that write, byte for byte" \
	cmp "$tmp/ref.img" "/dev/mapper/$DST"
check "the destination completes (idle)" wait_until 600 state_is "$DST" idle
check "the source is done" wait_until 120 state_is "$SRC" "done"
check "the source refuses writes" \
	bash -c "! dd if=/dev/zero of=/dev/mapper/$SRC bs=4k count=1 oflag=direct status=none 2>/dev/null"
check "the destination still equals the reference" cmp "$tmp/ref.img" "/dev/mapper/$DST"
mig_link_restore

tap_done
