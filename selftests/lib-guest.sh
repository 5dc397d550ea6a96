# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# A small QEMU guest inside the test VM (selftests/libvirt-guest.sh,
# selftests/migrate-qemu.sh): Debian's kernel (the VM's own, from
# build/vm/kernel) and a busybox initramfs built here, holding virtio_pci,
# virtio_blk and their dependencies (modules of Debian's kernel, found with
# modprobe --show-depends).  Its disk is /dev/vda, its console ttyS0.
# Source it after lib.sh:
#
#   guest_kernel || tap_bail "..."            # GUEST_KERNEL
#   guest_initramfs_tree "$tmp/ird" || tap_bail "..."
#   { guest_init_head; cat <<'EOF'            # the init: /dev/vda is there
#   ...
#   EOF
#   } >"$tmp/ird/init"
#   guest_initramfs_pack "$tmp/ird" "$tmp/initrd.cpio" || tap_bail "..."
#   qemu-system-x86_64 -kernel "$GUEST_KERNEL" -initrd "$tmp/initrd.cpio" \
#           -append "$GUEST_CMDLINE" ...
#
# Under TCG inside the TCG test VM a boot takes a minute or more.

# the kernel's command line: serial console, and nothing probed or
# checked that a guest of one disk does not need
# shellcheck disable=SC2034	# for the tests that source this
GUEST_CMDLINE="console=ttyS0 quiet panic=-1 mitigations=off no_timer_check tsc=unstable i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 random.trust_cpu=on audit=0 cryptomgr.notests"
# busybox applets of the init scripts
GUEST_APPLETS="sh mount insmod dd sha256sum sync sleep usleep poweroff cat echo dmesg tail head yes printf"

# guest_kernel: GUEST_KERNEL, the VM's kernel for the guest (vmlinux: PVH
# entry, no decompression; else vmlinuz).  Fails when there is none.
guest_kernel() {
	local abi
	abi=$(uname -r)
	GUEST_KERNEL=$RC_TREE/build/vm/kernel/$abi/boot/vmlinux-$abi
	[ -s "$GUEST_KERNEL" ] || GUEST_KERNEL=$RC_TREE/build/vm/kernel/$abi/boot/vmlinuz-$abi
	[ -s "$GUEST_KERNEL" ] || { tap_diag "no kernel for the guest in build/vm/kernel/$abi"; return 1; }
}

# guest_initramfs_tree <dir>: the initramfs's tree without its init:
# busybox with the applets of GUEST_APPLETS, the modules in /mod and their
# insmod order in /mod/order.  Fails (with a diagnostic) on any error.
guest_initramfs_tree() {
	local ird=$1 a m ko
	mkdir -p "$ird"/{bin,dev,proc,sys,mod,tmp} || return 1
	cp "$(command -v busybox)" "$ird/bin/busybox" ||
		{ tap_diag "cannot copy busybox"; return 1; }
	for a in $GUEST_APPLETS; do
		ln -s busybox "$ird/bin/$a" || return 1
	done
	# insmod order of virtio_pci and virtio_blk with their dependencies
	# (one module per modprobe: further names would be module parameters)
	for m in virtio_pci virtio_blk; do
		modprobe --show-depends "$m" ||
			{ tap_diag "modprobe --show-depends $m failed"; return 1; }
	done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' >"$ird.modlist" || return 1
	grep -q '/virtio_blk\.ko' "$ird.modlist" ||
		{ tap_diag "no virtio_blk.ko among the guest's modules: $(cat "$ird.modlist")"; return 1; }
	while read -r ko; do
		cp "$ko" "$ird/mod/" || { tap_diag "cannot copy $ko"; return 1; }
		basename "$ko" >>"$ird/mod/order"
	done <"$ird.modlist"
}

# guest_init_head: the first lines of an init (printed): mounts, the
# modules, then waits up to 120 s for /dev/vda; without it, it prints
# "RCOW-GUEST no /dev/vda" and the kernel log's end, and powers off.
guest_init_head() {
	cat <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
for m in $(cat /mod/order); do insmod /mod/$m || echo "RCOW-GUEST insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
if [ ! -b /dev/vda ]; then
	echo "RCOW-GUEST no /dev/vda after $i s; kernel log:"
	dmesg | tail -n 30
	echo "RCOW-GUEST-DONE"
	poweroff -f
fi
EOF
}

# guest_initramfs_pack <dir> <file>: <dir> (its init made executable) as a
# newc cpio archive.
guest_initramfs_pack() {
	chmod 755 "$1/init" || return 1
	(cd "$1" && find . | cpio -o -H newc --quiet) >"$2" ||
		{ tap_diag "cannot build the guest's initramfs"; return 1; }
}

# ---------------------------------------------------------------------------
# Guests that migrate (selftests/migrate-qemu-legs.sh): QEMU on a
# /dev/mapper device, QMP, the consoles.  Set tmp (the scratch directory),
# GUEST_MEM (MiB) and GUEST_INITRD first; guest_qmp_setup writes the QMP
# client.
# ---------------------------------------------------------------------------

# guest_qmp_setup: $tmp/qmp.py, the QMP client of guest_qmp:
# qmp.py <socket> <command JSON>: the command's return (JSON), exit 1 on an
# error; qmp.py <socket> --wait-migrate <status> <seconds>: query-migrate
# until that status (exit 1 at failed or cancelled, or past the time);
# qmp.py <socket> --wait-up <seconds>: retry until QMP answers.
# shellcheck disable=SC2154	# tmp: set by the test
guest_qmp_setup() {
	cat >"$tmp/qmp.py" <<'EOF'
import json, socket, sys, time

def connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rw")
    json.loads(f.readline())
    return f

def cmd(f, c):
    f.write(json.dumps(c) + "\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            raise EOFError("QMP closed")
        r = json.loads(line)
        if "return" in r or "error" in r:
            return r

def main():
    path = sys.argv[1]
    if sys.argv[2] == "--wait-up":
        end = time.time() + float(sys.argv[3])
        while True:
            try:
                f = connect(path)
                cmd(f, {"execute": "qmp_capabilities"})
                print(json.dumps(cmd(f, {"execute": "query-status"})["return"]))
                return 0
            except (OSError, EOFError, ValueError):
                if time.time() > end:
                    return 1
                time.sleep(0.5)
    f = connect(path)
    cmd(f, {"execute": "qmp_capabilities"})
    if sys.argv[2] == "--wait-migrate":
        end = time.time() + float(sys.argv[4])
        while True:
            r = cmd(f, {"execute": "query-migrate"})["return"]
            st = r.get("status")
            if st == sys.argv[3]:
                print(json.dumps(r))
                return 0
            if st in ("failed", "cancelled") or time.time() > end:
                print(json.dumps(r))
                return 1
            time.sleep(0.2)
    r = cmd(f, json.loads(sys.argv[2]))
    print(json.dumps(r.get("return", r)))
    return 0 if "return" in r else 1

sys.exit(main())
EOF
}
# guest_qmp <side> <args of qmp.py...>: QMP of that side's QEMU.
guest_qmp() { python3 "$tmp/qmp.py" "$tmp/$1.qmp" "${@:2}"; }

# guest_qemu_start <side> <dm name> [args...]: the guest's QEMU on that
# device, in the background (QEMU_PID); console $tmp/<side>.console, QMP
# $tmp/<side>.qmp, its output $tmp/<side>.out.  I/O errors are reported
# to the guest (werror, rerror), never a paused VM.  Killed at exit.
guest_qemu_start() {
	local side=$1 dev=$2
	shift 2
	qemu-system-x86_64 -machine pc,accel=tcg -m "$GUEST_MEM" -nodefaults -display none \
		-no-user-config -no-reboot \
		-kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$GUEST_CMDLINE" \
		-drive "file=/dev/mapper/$dev,if=none,id=disk0,format=raw,cache=none,aio=native,werror=report,rerror=report" \
		-device virtio-blk-pci,drive=disk0 \
		-serial "file:$tmp/$side.console" \
		-qmp "unix:$tmp/$side.qmp,server=on,wait=off" \
		"$@" >"$tmp/$side.out" 2>&1 &
	QEMU_PID=$!
	at_exit "kill $QEMU_PID 2>/dev/null"
}
# guest_console <side>: that console's lines, without carriage returns.
guest_console() { tr -d '\r' <"$tmp/$1.console" 2>/dev/null; }
# guest_last_ack <side>: the highest "ack k" on that console (-1 for none).
guest_last_ack() {
	guest_console "$1" |
		awk 'BEGIN { m = -1 } /^ack [0-9]+$/ && $2 + 0 > m { m = $2 + 0 } END { print m }'
}
guest_acks_past() { [ "$(guest_last_ack "$1")" -gt "$2" ]; }
guest_console_has() { grep -q "$2" "$tmp/$1.console" 2>/dev/null; }
# guest_why <side> <qemu pid> [<line>...]: TAP diagnostics for a guest that
# stopped writing: whether that side's QEMU lives, its output and the
# console's last lines, then the caller's own lines.
guest_why() {
	local side=$1 pid=$2 alive=no
	shift 2
	kill -0 "$pid" 2>/dev/null && alive=yes
	tap_diag "the $side QEMU (pid $pid) alive: $alive; its output:" \
		"$(tail -n 20 "$tmp/$side.out")" "its console's last lines:" \
		"$(guest_console "$side" | tail -n 10)" "$@"
}
# guest_keep_consoles <side>...: copy those consoles, and what their QEMUs
# printed, to the run's results (at exit).
guest_keep_consoles() {
	local side ext
	for side in "$@"; do
		for ext in console out; do
			cp "$tmp/$side.$ext" "${RC_RUN:-/tmp}/selftests/$TEST_NAME.$side.$ext" 2>/dev/null
		done
	done
	return 0
}
# within <seconds> <command...>: until the command succeeds, by the clock
# (wait_until counts tries, and each try here spawns processes, slow in
# the VM)
within() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.5
	done
}
secs() { date +%s.%N | cut -c1-14; }
since() { awk -v a="$1" -v b="$(secs)" 'BEGIN { printf "%.1f", b - a }'; }
# guest_boot <side> <dm name> <marker> <acks>: the guest's QEMU on that
# device (guest_qemu_start; QEMU_PID), then one test: its console shows
# <marker> within GUEST_WAIT seconds and acks past <acks> within a minute
# after.  Bails out otherwise.
guest_boot() {
	local t0
	t0=$(secs)
	guest_qemu_start "$1" "$2"
	if within "$GUEST_WAIT" guest_console_has "$1" "$3" &&
		within 60 guest_acks_past "$1" "$4"; then
		tap_ok "the guest boots on $2 and writes (booted in $(since "$t0") s)"
	else
		tap_not_ok "the guest boots on $2 and writes" \
			"$(tail -n 30 "$tmp/$1.console" 2>/dev/null)" "$(cat "$tmp/$1.out")"
		tap_bail "no guest"
	fi
}
