#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# (The link is 40 Mbit/s so that the 16 MiB read lasts over 3 s even with
# remote-cowd's read-ahead and parallel reads: the fault must hit mid-read.)
#
# The link to the NBD server goes down for 10 seconds while a whole-device
# read is in progress: the read waits, and once the link is back it
# completes with the base's data, no EIO.
#
# remote-cowd retries and reconnects; the synchronous test helper rcow-fill
# has only TCP retransmission to rely on, which also carries a 10 s cut
# (its exponential backoff delays recovery by up to ~30 s).
# TIMEOUT=300
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc openssl
tap_plan 8

NAME="rc-link-down"
EXT=128				# 64 KiB extents
BASE_BYTES=$((16 << 20))
LEN=$((BASE_BYTES / 512))
TOTAL=$((LEN / EXT))
DOWN=10				# seconds

load_module || tap_bail "cannot load $RC_MODULE"
# Reads wait for the link on purpose: longer than the usual 30 s check.
echo 120 >/proc/sys/kernel/hung_task_timeout_secs
net_test_setup 20ms 40mbit
net_serve_base "$BASE_BYTES" nbd-link-down
tap_diag "helper: $RCOW_HELPER; base $(net_uri) behind 20 ms, 40 Mbit/s"
net_test_device "$NAME" "$LEN" "$EXT"

check_read_under_way "$NAME" 8
reader=$BG_PID
check "link down" net_link_down
p1=$(present_extents "$NAME")
sleep "$DOWN"
p2=$(present_extents "$NAME")
tap_diag "after ${DOWN}s down: present $p1 -> $p2 of $TOTAL; $(dmsetup status "$NAME")"
check "the read is still waiting after ${DOWN}s" kill -0 "$reader"
check "link up" net_link_up
t0=$SECONDS
check_bg_sha256 "the read completes" 180 "$BASE_SUM"
tap_diag "completed $((SECONDS - t0))s after the link came back"
check_eq "every extent is present" "$TOTAL/$TOTAL" "$(dm_status_field "$NAME" 2)"
tap_diag "helper log:" "$(tail -n 20 "$HELPER_LOG")"

tap_done
