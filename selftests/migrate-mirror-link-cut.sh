#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=300
#
# Live migration (lib-mig.sh: one remote-cowd plays both sides over
# loopback TCP) mirroring (remote-cowd --migrate-mirror always, its peer
# timeout 12 s), the link cut (mig_link_cut: every packet on lo dropped)
# while a guest write on the source waits for the destination.  The
# source's failure must let that write go once the peer is found dead:
# about the timeout after the cut, not twice it.  remote-cowd ends the
# members (which lets held writes go) before it sends the ABORT to the
# peer, which with the link down might wait for the timeout.  Here the
# failure is the connection's own death, so that ABORT fails at once:
# the old order (ABORT first) passed this test too, 13.1 s against
# 13.3 s; this is the outcome both must keep, not a test of the order.
#
# - mirroring, the first round sent: a write with the link up completes
#   (the destination acknowledged it);
# - the link cut, a 64 KiB write on the source completes, having waited
#   about the timeout: between the timeout less 2 s and the timeout plus
#   a half of it after the cut;
# - the migration failed (state failed), remote-cowd said why (the peer
#   answered nothing for 12 s);
# - the source reads that write back, and takes writes again.
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp psktool tc
tap_plan 8

PORT=17791
TIMEOUT_S=12
mig_setup migrate-mirror-link-cut --migrate-mirror always --migrate-peer-timeout "${TIMEOUT_S}s"
# mono_ms: milliseconds of uptime (monotonic: a test's durations).
mono_ms() {
	local up
	read -r up _ </proc/uptime
	echo $((10#${up/./} * 10))
}

SRC="rc-mcut-src"
DST="rc-mcut-dst"
mig_start_idle "$SRC" "$DST"
sleep 1
check_eq "mirroring, the first round sent (migrate_done $(rc_status "$SRC" migrate_done))" \
	mirroring "$(state "$SRC")"
image_data "$MIG_TEST-up" $((64 << 10)) >"$tmp/up"
t=$(mono_ms)
dd if="$tmp/up" of="/dev/mapper/$SRC" bs=64k seek=200 oflag=direct status=none
rc=$?
check_eq "... a write with the link up completes ($(($(mono_ms) - t)) ms)" 0 "$rc"

sleep 2		# the link quiet but for the keepalive probes
image_data "$MIG_TEST-cut" $((64 << 10)) >"$tmp/cut"
mig_link_cut || tap_bail "cannot cut lo (tc netem)"
t0=$(mono_ms)
dd if="$tmp/cut" of="/dev/mapper/$SRC" bs=64k seek=300 oflag=direct status=none &
DD=$!
at_exit "kill $DD 2>/dev/null"
wait_pid "$DD" $((4 * TIMEOUT_S))
rc=$?
t1=$(mono_ms)
check_eq "the link cut: a write on the source completes" 0 "$rc"
ms=$((t1 - t0))
check "... once the peer is found dead, about the timeout after the cut ($ms ms, timeout $TIMEOUT_S s), not twice it" \
	between "$ms" $(((TIMEOUT_S - 2) * 1000)) $((TIMEOUT_S * 1500))
check_eq "the migration failed" failed "$(state "$SRC")"
check "... remote-cowd logged why" \
	grep -q "$SRC: migration to 127.0.0.1:$PORT failed: .*answered nothing for $TIMEOUT_S.0 s (migrate_peer_timeout)" \
	"$HELPER_LOG"
dd if="/dev/mapper/$SRC" of="$tmp/back" bs=64k skip=300 count=1 iflag=direct status=none
check "the source reads the write back" cmp "$tmp/cut" "$tmp/back"
check "... and takes writes again" dd if="$tmp/up" of="/dev/mapper/$SRC" bs=64k seek=400 \
	oflag=direct status=none
mig_link_restore
tap_done
