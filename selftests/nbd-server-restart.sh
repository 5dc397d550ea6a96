#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# (The link is 40 Mbit/s so that the 16 MiB read lasts over 3 s even with
# remote-cowd's read-ahead and parallel reads: the fault must hit mid-read.)
#
# The NBD server (nbdkit in a network namespace) is killed while a
# whole-device read is in progress and started again 3 seconds later: the
# helper reconnects and the read completes with the base's data, no EIO.
#
# Needs remote-cowd (retries with backoff and reconnection); the test
# helper rcow-fill answers a failed NBD read with EIO, so without the daemon
# the test is skipped (RCOW_FORCE=1 runs it anyway).
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc openssl
helper_is_daemon || [ "${RCOW_FORCE:-0}" = 1 ] ||
	tap_skip_all "needs remote-cowd (reconnects to a restarted server); $(helper_name) fails the fill with EIO"
tap_plan 6

NAME="rc-srv-restart"
EXT=128				# 64 KiB extents
BASE_BYTES=$((16 << 20))
LEN=$((BASE_BYTES / 512))
TOTAL=$((LEN / EXT))

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 20ms 40mbit
net_serve_base "$BASE_BYTES" nbd-server-restart
tap_diag "helper: $RCOW_HELPER; base $(net_uri) behind 20 ms, 40 Mbit/s"
net_test_device "$NAME" "$LEN" "$EXT"

check_read_under_way "$NAME" 8
reader=$BG_PID
net_server_kill
tap_diag "NBD server killed; status: $(dmsetup status "$NAME")"
sleep 3
check "the read is still waiting while the server is down" kill -0 "$reader"
net_server_start || tap_bail "cannot restart the NBD server"
tap_diag "NBD server restarted"
check_bg_sha256 "the read completes" 120 "$BASE_SUM"
check_eq "every extent is present" "$TOTAL/$TOTAL" "$(dm_status_field "$NAME" 2)"
tap_diag "helper log:" "$(tail -n 20 "$HELPER_LOG")"

tap_done
