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
net_tmpdir
tmp=$NET_WORKDIR
net_setup || tap_bail "cannot set up the network namespace"
net_shape 50ms 20mbit || tap_bail "cannot shape the link"
base_sum=$(make_base_image "$tmp/base.img" "$BASE_BYTES" helper-sigkill) ||
	tap_bail "cannot make the base image"
net_serve "$tmp/base.img" || tap_bail "cannot start the NBD server"
make_cow $((BASE_BYTES + (16 << 20))) || tap_bail "no COW loop device"
tap_diag "helper: $RCOW_HELPER; base $(net_uri) behind 50 ms each way, 20 Mbit/s"

helper_start || tap_bail "the helper does not start"
at_exit "dm_remove $NAME"	# dm_create runs in check's subshell
check "create $NAME" dm_create "$NAME" "$(rc_table "$LEN" "$COW_DEV" "$EXT" "$(net_uri)")" ||
	tap_bail "cannot create the device"

bg_sha256 "/dev/mapper/$NAME" "$tmp/sum"
reader=$BG_PID
some_present() { [ "$(present_extents "$NAME")" -ge 4 ]; }
fault_waiting() { [ "$(dm_status_field "$NAME" 4)" -gt 0 ]; }
if wait_until 60 some_present && wait_until 10 fault_waiting; then
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
wait_pid "$reader" 120
check_eq "the read completes after the restart" 0 "$?"
check_eq "the data read equals the base" "$base_sum" "$(cat "$tmp/sum" 2>/dev/null)"
check_eq "every extent is present" "$TOTAL/$TOTAL" "$(dm_status_field "$NAME" 2)"
check_eq "a second read (from the COW device) equals the base" "$base_sum" \
	"$(sha256_of "/dev/mapper/$NAME")"
tap_diag "helper log:" "$(tail -n 8 "$HELPER_LOG")"

tap_done
