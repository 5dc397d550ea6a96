#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Host test of tools/systemd/remote-cowd.service (TAP): 'systemd-analyze
# verify' prints nothing about it (warnings such as an unknown key or a bad
# value fail too, although systemd-analyze exits 0 for them), with the
# man page it names found in Documentation/man; then the settings the
# daemon relies on.  A missing systemd-analyze is a failure, not a skip:
# scripts/install-deps.sh installs it (package systemd).
#
#   systemd-unit.sh PATH_TO_REMOTE_COWD
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
UNIT=$ROOT/tools/systemd/remote-cowd.service
DAEMON=$(realpath "${1:-$ROOT/userspace/remote-cowd}")
n=0
failed=0

ok() {	# ok <0|1> <description>
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "TAP version 13"
if ! command -v systemd-analyze >/dev/null; then
	ok 1 "systemd-analyze is installed (run scripts/install-deps.sh: package systemd)"
else
	ok 0 "systemd-analyze is installed"
	# the unit as installed, but with the daemon built here
	mkdir -p "$tmp/unit" "$tmp/man/man8"
	sed "s|^ExecStart=/usr/sbin/remote-cowd|ExecStart=$DAEMON|" "$UNIT" \
		>"$tmp/unit/remote-cowd.service"
	ln -s "$ROOT/Documentation/man/remote-cowd.8" "$tmp/man/man8/"
	out=$(cd "$tmp/unit" && MANPATH=$tmp/man SYSTEMD_LOG_COLOR=0 \
		systemd-analyze verify remote-cowd.service 2>&1)
	rc=$?
	[ $rc -eq 0 ] && [ -z "$out" ]
	ok $? "systemd-analyze verify: exit 0, no message"
	[ -z "$out" ] || printf '#   %s\n' "exit $rc:" "${out//$'\n'/$'\n#   '}"
fi

# has <description> <line regex>: a line of the unit matches
has() {
	grep -Eq "$2" "$UNIT"
	ok $? "$1"
}
has "Type=notify (READY=1 from sd_notify)" '^Type=notify$'
has "restarted on failure" '^Restart=(on-failure|always)$'
has "block devices reachable (PrivateDevices=no)" '^PrivateDevices=no$'
has "every block device allowed, mknod too" '^DeviceAllow=block-\* rwm$'
has "generic netlink allowed" '^RestrictAddressFamilies=.*AF_NETLINK'
has "unix sockets allowed (nbd+unix://, sd_notify)" '^RestrictAddressFamilies=.*AF_UNIX'
has "mlockall may lock everything" '^LimitMEMLOCK=infinity$'
has "out of the OOM killer's reach" '^OOMScoreAdjust=-1000$'
has "CAP_NET_ADMIN kept (registration)" '^CapabilityBoundingSet=.*CAP_NET_ADMIN'
has "CAP_SYS_RESOURCE kept (PR_SET_IO_FLUSHER)" '^CapabilityBoundingSet=.*CAP_SYS_RESOURCE'
has "CAP_MKNOD kept (private COW device nodes)" '^CapabilityBoundingSet=.*CAP_MKNOD'

echo "1..$n"
[ $failed -eq 0 ] || echo "# $failed of $n failed"
[ $failed -eq 0 ]
