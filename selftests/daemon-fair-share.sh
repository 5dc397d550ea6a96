#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Devices over one base share it fairly: a device whose COW device is
# slow does not hold the others.  Two devices over the same NBD export
# (one source, its connections shared), the first with a COW device whose
# data area is behind dm-delay (every write held DELAY_MS):
#  1. while a sequential read of the whole slow device runs (dozens of
#     fills, each written in DELAY_MS), a sequential read of the whole
#     other device completes in well under the time the slow one needs
#     (remote-cowd gives a device at most half its COW writer threads and
#     no new reads while its writes are backed up);
#  2. both reads return the base's data, and no fill failed.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup cmp blockdev nbdkit ip
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
require_dm_target delay
tap_plan 7

EXT=128				# 64 KiB extents
EXT_BYTES=$((EXT * 512))
MIB=$((1 << 20))
BASE_BYTES=$((16 * MIB))
LEN=$((BASE_BYTES / 512))
DELAY_MS=1000

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR

img=$tmp/base.img
make_base_image "$img" "$BASE_BYTES" fair-share >/dev/null || tap_bail "no base image"
net_setup || tap_bail "cannot set up the network namespace"
net_serve "$img" || tap_bail "cannot start the NBD server"
uri=$(net_uri)
at_exit "dm_remove rc-slow"
at_exit "dm_remove rc-fast"

slow_cow_data rc-slowcow "$BASE_BYTES" "$EXT_BYTES" "$DELAY_MS" ||
	tap_bail "cannot create the dm-delay COW device"
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
cow_fast=$COW_DEV
helper_start || tap_bail "remote-cowd does not start"
dmsetup create rc-slow --table "$(rc_table "$LEN" "$SLOW_COW" "$EXT" "$uri")" ||
	tap_bail "cannot create rc-slow"
dmsetup create rc-fast --table "$(rc_table "$LEN" "$cow_fast" "$EXT" "$uri")" ||
	tap_bail "cannot create rc-fast"

# one extent of each first: the connections are up before the clock starts
dd if=/dev/mapper/rc-fast of=/dev/null bs=$EXT_BYTES skip=$((LEN / EXT - 1)) count=1 \
	iflag=direct status=none
dd if=/dev/mapper/rc-slow of=/dev/null bs=$EXT_BYTES skip=$((LEN / EXT - 1)) count=1 \
	iflag=direct status=none

# 1. the slow device read whole in the background, the fast one meanwhile
t0=$(date +%s%N)
dd if=/dev/mapper/rc-slow of="$tmp/slow.out" bs=1M iflag=direct status=none &
slow_pid=$!
sleep 1
t1=$(date +%s%N)
dd if=/dev/mapper/rc-fast of="$tmp/fast.out" bs=1M iflag=direct status=none
fast_rc=$?
t2=$(date +%s%N)
fast_ms=$(((t2 - t1) / 1000000))
if kill -0 "$slow_pid" 2>/dev/null; then
	tap_ok "the slow device's read is still running when the other device's read is done"
	still=1
else
	tap_not_ok "the slow device's read is still running when the other device's read is done" \
		"it finished first, after $(((t2 - t0) / 1000000)) ms: the COW delay did not bite"
	still=0
fi
wait "$slow_pid"
slow_rc=$?
slow_ms=$((($(date +%s%N) - t0) / 1000000))
tap_diag "fast device: 16 MiB in $fast_ms ms; slow device: 16 MiB in $slow_ms ms"
check_eq "the fast device's read succeeds" 0 "$fast_rc"
check_eq "the slow device's read succeeds" 0 "$slow_rc"
if [ "$still" = 1 ] && [ "$fast_ms" -lt $((3 * DELAY_MS)) ]; then
	tap_ok "the fast device is read in $fast_ms ms (under $((3 * DELAY_MS)) ms) while the slow one takes $slow_ms ms"
else
	tap_not_ok "the fast device is read at speed" \
		"$fast_ms ms for 16 MiB (bound $((3 * DELAY_MS)) ms); the slow device took $slow_ms ms"
fi

# 2. data and errors
check "the fast device returned the base's data" cmp -s "$tmp/fast.out" "$img"
check "the slow device returned the base's data" cmp -s "$tmp/slow.out" "$img"
dm_remove rc-slow
dm_remove rc-fast
helper_stop
check_eq "no fill failed" 0 "$(helper_stat fill_errors)"
tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"

tap_done
