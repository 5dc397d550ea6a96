#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# remote-cowd under systemd (Type=notify): with NOTIFY_SOCKET set it sends
# READY=1 once it is registered with the kernel target and has read its
# device list (the device created before it shows a connected helper at
# that moment, and the --ready file exists), a STATUS= line naming the
# devices it serves, and STOPPING=1 on SIGTERM.  The listener is a tiny
# datagram socket in python3, as systemd's.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; sent() called through wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup python3
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 6

EXT=128
BASE_BYTES=$((4 << 20))
LEN=$((BASE_BYTES / 512))

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
make_base_image "$tmp/base.img" "$BASE_BYTES" daemon-notify >/dev/null ||
	tap_bail "cannot make the base image"
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
at_exit "dm_remove rc-ntf"
dmsetup create rc-ntf --table "$(rc_table "$LEN" "$COW_DEV" "$EXT" "file://$tmp/base.img")" ||
	tap_bail "cannot create rc-ntf"

# The listener: one line per datagram in $tmp/notify.log; on READY=1 it
# also records the device's status and whether the ready file exists.
cat >"$tmp/listen.py" <<'PY'
import os, socket, subprocess, sys
sock_path, log_path, ready_path = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock_path)
s.settimeout(30)
with open(log_path, "w") as log:
    while True:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        for line in msg.split("\n"):
            log.write(line + "\n")
        if "READY=1" in msg.split("\n"):
            st = subprocess.run(["dmsetup", "status", "rc-ntf"], capture_output=True,
                                text=True).stdout.split()
            log.write("at-ready: helper=%s ready-file=%s\n"
                      % (st[7] if len(st) > 7 else "?", os.path.exists(ready_path)))
        log.flush()
        if "STOPPING=1" in msg.split("\n"):
            break
PY
python3 "$tmp/listen.py" "$tmp/notify.sock" "$tmp/notify.log" "$tmp/ready" &
listener=$!
at_exit "kill $listener 2>/dev/null"
for ((i = 0; i < 50; i++)); do
	[ -S "$tmp/notify.sock" ] && break
	sleep 0.1
done
[ -S "$tmp/notify.sock" ] || tap_bail "the notify listener did not start"

NOTIFY_SOCKET=$tmp/notify.sock "$RCOW_HELPER" --foreground --ready "$tmp/ready" \
	>"$tmp/helper.log" 2>&1 &
pid=$!
at_exit "helper_stop_pid $pid"
sent() { grep -qx "$1" "$tmp/notify.log" 2>/dev/null; }
check "READY=1 sent" wait_until 10 sent READY=1
check_eq "at READY=1 the device created before sees a connected helper, the ready file exists" \
	"at-ready: helper=connected ready-file=True" \
	"$(grep '^at-ready:' "$tmp/notify.log" 2>/dev/null)"
check "STATUS= names the devices served" \
	grep -qx 'STATUS=registered with the kernel; serving 1 device(s)' "$tmp/notify.log"
check "READY=1 sent once" test "$(grep -cx READY=1 "$tmp/notify.log")" = 1
helper_stop_pid "$pid"
wait "$listener" 2>/dev/null
check "STOPPING=1 on SIGTERM" sent STOPPING=1
check "the helper logged no error" test "$(grep -c -i 'error\|warning' "$tmp/helper.log")" = 0 ||
	cat "$tmp/helper.log" >&2
tap_done
