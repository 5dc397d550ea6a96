#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# remote-cowd in the I/O path: its memory is locked (mlockall) and it says
# nothing about failing to lock it or to become an I/O flusher; SIGHUP
# re-reads the configuration and keeps serving (a bad file changes
# nothing); the ready file is never created through a symbolic link.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 7

EXT=128
BASE_BYTES=$((8 << 20))
LEN=$((BASE_BYTES / 512))

file_test_setup "$BASE_BYTES" daemon-signals
tmp=$NET_WORKDIR
base_sum=$BASE_SUM
uri="file://$BASE_IMG"
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
conf=$tmp/remote-cowd.conf
printf 'connections = 2\n' >"$conf"

helper_start --config "$conf" || tap_bail "remote-cowd does not start"
locked=$(sed -n 's/^VmLck:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$HELPER_PID/status")
if [ "${locked:-0}" -gt 0 ]; then
	tap_ok "its memory is locked (VmLck $locked kB)"
else
	tap_not_ok "its memory is locked" "VmLck: ${locked:-none}"
fi
check_eq "no warning about mlockall or PR_SET_IO_FLUSHER" 0 \
	"$(grep -c 'warning: cannot' "$HELPER_LOG")"

kill -HUP "$HELPER_PID"
reread() { grep -q 'SIGHUP: configuration read again' "$HELPER_LOG"; }
check "SIGHUP re-reads the configuration" wait_until 5 reread
printf 'connections = many\n' >"$conf"
kill -HUP "$HELPER_PID"
kept() { grep -q 'keeping the configuration in use' "$HELPER_LOG"; }
check "a configuration that does not parse is reported and kept out" wait_until 5 kept
check "the daemon is still running" kill -0 "$HELPER_PID" ||
	tap_bail "remote-cowd died of a SIGHUP: a read would wait for it forever"
at_exit "dm_remove rc-sig"
dmsetup create rc-sig --table "$(rc_table "$LEN" "$COW_DEV" "$EXT" "$uri")" ||
	tap_bail "cannot create rc-sig"
check_eq "after the SIGHUPs a new device is served" "$base_sum" "$(sha256_of /dev/mapper/rc-sig)"
helper_stop

echo precious >"$tmp/victim"
ln -s "$tmp/victim" "$tmp/ready-link"
timeout 20 "$RCOW_HELPER" --foreground --ready "$tmp/ready-link" >"$tmp/link.log" 2>&1
rc=$?
if [ "$rc" = 1 ] && [ "$(cat "$tmp/victim")" = precious ] &&
	grep -q 'symbolic link' "$tmp/link.log"; then
	tap_ok "the ready file is not created through a symbolic link"
else
	tap_not_ok "the ready file is not created through a symbolic link" \
		"exit $rc, victim '$(cat "$tmp/victim")'" "$(cat "$tmp/link.log")"
fi
tap_done
