#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# PID 1 of the test VM after switch_root (the host's bash, on the overlay of
# the host's root).  Sets up the pseudo filesystems, loopback and sysctls,
# runs <run>/cmd, saves its exit status and the kernel log into the results
# share, and powers off.  Not meant to run on the host.
set -uo pipefail

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root LANG=C.UTF-8 DM_DISABLE_UDEV=1

poweroff_now() {
	sync
	/bin/busybox poweroff -f
	# Not reached; if it were, exiting PID 1 panics and panic=-1 with
	# -no-reboot ends qemu.
	exit 1
}

[ $$ -eq 1 ] || { echo "vm-stage2.sh: only runs as the VM's init" >&2; exit 1; }

# /proc, /sys, /dev, /tmp, /run: mounted by the initramfs (scripts/vm-init).
: >/run/utmp

TREE='' RUN='' INTERACTIVE=0
read -r -a cmdline </proc/cmdline
for arg in "${cmdline[@]}"; do
	case $arg in
	rc.tree=*) TREE=${arg#rc.tree=} ;;
	rc.run=*) RUN=${arg#rc.run=} ;;
	rc.interactive=1) INTERACTIVE=1 ;;
	rc.term=*) TERM=${arg#rc.term=}; export TERM ;;
	esac
done
export RC_TREE=$TREE RC_RUN=$RUN RC_VM=1

# Report tasks blocked for 30 s (the default 120 s is longer than a test
# should ever wait); never panic on oops or lockup: the log check fails the
# run and the tests go on.
echo 30 >/proc/sys/kernel/hung_task_timeout_secs
echo 0 >/proc/sys/kernel/panic_on_oops
echo 0 >/proc/sys/kernel/softlockup_panic
echo 0 >/proc/sys/kernel/printk_ratelimit
# Let the run (tests, demo) find the tree's programs; login shells too.
for d in "$TREE/tools" "$TREE/userspace"; do
	[ -d "$d" ] && PATH=$PATH:$d
done
cat >/etc/profile.d/zz-rcvm.sh <<EOF
export PATH=\$PATH:$TREE/tools:$TREE/userspace DM_DISABLE_UDEV=1
export RC_TREE=$TREE RC_RUN=$RUN RC_VM=1
EOF

read -r up _ </proc/uptime
echo "vm-stage2: up after $up s" >/dev/kmsg

# No udev: modules behind device nodes (loop-control) are not loaded on
# first open, so load the common ones.
modprobe loop 2>/dev/null

if [ -f "$RUN/load-module" ]; then
	modprobe dm-remote-cow || echo "vm-stage2: modprobe dm-remote-cow failed" >&2
fi

cd "$TREE" || cd /
if [ "$INTERACTIVE" = 1 ]; then
	rows='' cols=''
	[ -f "$RUN/stty" ] && read -r rows cols <"$RUN/stty"
	[ -n "$rows" ] && stty -F /dev/ttyS0 rows "$rows" cols "$cols"
	echo "dm-remote-cow test VM: tree at $TREE, results in $RUN; 'exit' powers off"
	setsid -c bash -l </dev/ttyS0 >/dev/ttyS0 2>&1
	rc=$?
else
	# ttyS1 goes to <run>/output.log on the host; no CR/LF translation.
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
	bash "$RUN/cmd" </dev/null >/dev/ttyS1 2>&1
	rc=$?
fi

read -r up _ </proc/uptime
echo "vm-stage2: command exited $rc after $up s" >/dev/kmsg
dmesg >"$RUN/dmesg.txt" 2>&1
echo "$rc" >"$RUN/exit-status"
poweroff_now
