#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The helper is SIGKILLed while it is answering faults (a whole-device read
# is in progress over a slow NBD link: 50 ms each way, 20 Mbit/s, so that
# even with remote-cowd's read-ahead the 8 MiB read lasts several seconds)
# and started again:
# the kernel keeps the outstanding faults, sends them to the new helper,
# and the read completes with the base's data.  While no helper runs, the
# read waits (it neither fails nor completes).
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
# The server is qemu-nbd: nbdkit 1.32 (Debian 12) aborts when a client
# that has many reads in flight over several connections is killed, which
# is exactly what this test does to remote-cowd.
NET_SERVER=${NET_SERVER:-qemu-nbd}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup "$NET_SERVER" nbdinfo ip tc openssl
tap_plan 8

NAME="rc-sigkill"
EXT=128				# 64 KiB extents
BASE_BYTES=$((8 << 20))
LEN=$((BASE_BYTES / 512))
TOTAL=$((LEN / EXT))

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 50ms 20mbit
net_serve_base "$BASE_BYTES" helper-sigkill
tap_diag "helper: $RCOW_HELPER; base $(net_uri) behind 50 ms each way, 20 Mbit/s"
net_test_device "$NAME" "$LEN" "$EXT"

bg_sha256 "/dev/mapper/$NAME" "$NET_WORKDIR/sum"
reader=$BG_PID
fault_waiting() { [ "$(dm_status_field "$NAME" 4)" -gt 0 ]; }
if wait_until 60 present_at_least "$NAME" 4 && wait_until 10 fault_waiting; then
	tap_ok "the read is fetching extents ($(dmsetup status "$NAME"))"
else
	tap_not_ok "the read is fetching extents" "status: $(dmsetup status "$NAME")"
fi
helper_kill
tap_diag "helper SIGKILLed; status: $(dmsetup status "$NAME")"
helper_absent() { [ "$(dm_status_field "$NAME" 5)" = absent ]; }
check "the kernel sees the helper gone" wait_until 10 helper_absent
p1=$(present_extents "$NAME")
sleep 3
p2=$(present_extents "$NAME")
if kill -0 "$reader" 2>/dev/null && [ "$p1" = "$p2" ] && [ "$p2" -lt "$TOTAL" ]; then
	tap_ok "without a helper the read waits ($p2/$TOTAL present)"
else
	tap_not_ok "without a helper the read waits" \
		"reader alive: $(kill -0 "$reader" 2>/dev/null && echo yes || echo no);" \
		"present $p1 then $p2 of $TOTAL"
fi

helper_start || tap_bail "the helper does not start again"
check_bg_sha256 "the read completes after the restart" 120 "$BASE_SUM"
check_eq "every extent is present" "$TOTAL/$TOTAL" "$(dm_status_field "$NAME" 2)"
check_eq "a second read (from the COW device) equals the base" "$BASE_SUM" \
	"$(sha256_of "/dev/mapper/$NAME")"
tap_diag "helper log:" "$(tail -n 8 "$HELPER_LOG")"

tap_done
