#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# remote-cowd --migrate-mirror throttle: when the guest writes faster than
# the link, the source slows the guest's writes down (delay-doubling)
# instead of mirroring them.  The same guest and link as migrate-mirror.sh:
# 16 Mbit/s on loopback, fio writing 64 KiB blocks at random over 16 MiB
# as fast as it can (4 in flight).
#
# - once the rounds stop shrinking remote-cowd logs that it slows the
#   guest down, and the kernel that a write completes that many ms late;
#   the delay doubles while the rounds still do not shrink;
# - with fio still writing, the rounds shrink to a handful of extents
#   while the migration is still copying: the throttle alone made it
#   converge, without mirroring (never logged, never the state);
# - after the pause, 'migrate finish --wait' ends done, the kernel counts
#   the writes it slowed down, the last round is small;
# - the destination equals the source, byte for byte; the source refuses
#   writes.
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp fio psktool tc
tap_plan 12

PORT=17751
SMALL=16		# a round below this does not count as stalled
LEFT_MAX=64		# a quarter of the 256 extents fio rewrites
mig_setup migrate-throttle --migrate-mirror throttle

SRC="rc-thr-src"
DST="rc-thr-dst"
# small_round: remote-cowd's last round of the source sent fewer than SMALL
# extents (its -v line), and the migration is copying.
small_round() {
	local n
	n=$(sed -n "s/.*device $SRC: round [0-9]*: \([0-9]*\) extents sent.*/\1/p" "$HELPER_LOG" |
		tail -n 1)
	[ -n "$n" ] && [ "$n" -lt "$SMALL" ] && state_is "$SRC" copying
}
klog_has() { dmesg_since_mark | grep -qE -- "$1"; }
kmsg_mark
mig_outrun_start "$SRC" "$DST"
check "remote-cowd slows the guest down once the rounds stop shrinking" \
	wait_until 900 logged "$SRC: the rounds stopped shrinking ([0-9]* extents): guest writes slowed down by 1 ms each"
check "the kernel applies it" \
	wait_until 30 klog_has "migration to 127.0.0.1:$PORT throttled: a write completes [0-9]* ms late"
check "the delay doubles while the rounds do not shrink" \
	wait_until 900 logged "$SRC: the rounds stopped shrinking ([0-9]* extents): guest writes slowed down by 2 ms each"
check "with the guest still writing, a round sends fewer than $SMALL extents, still copying" \
	wait_until 1200 small_round
check_eq "... not mirroring" copying "$(state "$SRC")"
check "remote-cowd never fell back to mirroring" \
	bash -c "! grep -q '$SRC: throttled at .* mirroring after all' '$HELPER_LOG'"

mig_fio_stop
kmsg_mark
check "migrate finish --wait: done" timeout 300 "$RC" migrate "$SRC" finish --wait
check_eq "state: done" "done" "$(state "$SRC")"
left=$(dmesg_since_mark | sed -n "s/.*remote-cow: $SRC: \([0-9]*\) extents left to send.*/\1/p")
slowed=$(dmesg_since_mark |
	sed -n "s/.*remote-cow: $SRC: \([0-9]*\) writes were slowed down (throttle).*/\1/p")
check "finish had at most $LEFT_MAX extents left (${left:-none logged}); ${slowed:-no} writes were slowed down" \
	test -n "$left" -a "${left:-999}" -le "$LEFT_MAX" -a "${slowed:-0}" -gt 0
mig_link_restore
dd if="/dev/mapper/$SRC" of="$tmp/src.img" bs=1M iflag=direct status=none ||
	tap_bail "cannot read the source"
check "the destination equals the source, byte for byte" \
	cmp "$tmp/src.img" "/dev/mapper/$DST"
check "the source refuses writes" \
	bash -c "! dd if=/dev/zero of=/dev/mapper/$SRC bs=4k count=1 oflag=direct status=none 2>/dev/null"
check "the kernel never mirrored" \
	bash -c "! dmesg | grep -q '$SRC: migration to .* mirroring: writes wait'"
tap_done
