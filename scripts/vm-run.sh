#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot Debian's kernel (the one matching the installed headers) under
# qemu-system-x86_64 with the host's root shared read-only over virtio-9p,
# run one command inside, and return its exit status.  See
# Documentation/testing.rst.
#
#   scripts/vm-run.sh [options] [--] command [args...]
#   scripts/vm-run.sh --shell
#
# Options:
#   --shell            interactive shell on the console (no timeout)
#   --timeout SECS     kill the VM after SECS (default $VM_TIMEOUT or 900)
#   --no-module        do not modprobe dm-remote-cow before the command
#   --quiet            do not stream the command's output (it is still in
#                      <run>/output.log)
#   --run-dir DIR      results directory (default build/vm/runs/<stamp>)
#
# Environment: VM_MEM (MiB, default 2048), VM_SMP (default 2), KERNEL_ABI,
# VM_KEEP_RUNS (how many old run directories to keep, default 20).
#
# Exit status: the command's, or 124 when the VM timed out, 125 when it
# died before the command finished, 126 when only the kernel log check
# failed (oops, BUG, WARNING, hung task, lockup...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
KCACHE=$BUILD/vm/kernel

shell=0 module=1 quiet=0 run_dir='' timeout=${VM_TIMEOUT:-900}
while [ $# -gt 0 ]; do
	case $1 in
	--shell) shell=1 ;;
	--timeout) timeout=$2; shift ;;
	--no-module) module=0 ;;
	--quiet) quiet=1 ;;
	--run-dir) run_dir=$2; shift ;;
	--) shift; break ;;
	-*) echo "vm-run: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ "$shell" = 1 ] || [ $# -gt 0 ] || { echo "vm-run: no command" >&2; exit 2; }

log() { printf 'vm-run: %s\n' "$*" >&2; }

ABI=${KERNEL_ABI:-$(readlink "$KCACHE/current" 2>/dev/null || true)}
KDIR=$KCACHE/$ABI
VMLINUZ=$KDIR/boot/vmlinuz-$ABI
if [ -z "$ABI" ] || [ ! -f "$KDIR/.complete" ] || [ ! -f "$VMLINUZ" ]; then
	log "no VM kernel in $KCACHE: run 'make deps' (scripts/install-deps.sh)"
	exit 2
fi
# Prefer the unpacked ELF kernel (PVH boot, no decompression in the guest).
KERNEL_IMG=$KDIR/boot/vmlinux-$ABI
[ -s "$KERNEL_IMG" ] || KERNEL_IMG=$VMLINUZ
command -v qemu-system-x86_64 >/dev/null ||
	{ log "qemu-system-x86_64 missing: run 'make deps'"; exit 2; }

INITRD=$("$ROOT/scripts/vm-initramfs.sh" "$KDIR" "$ABI" "$BUILD/vm/initramfs-$ABI.cpio")

# Per-run directory: the command, its output, the console and kernel logs.
runs=$BUILD/vm/runs
mkdir -p "$runs"
if [ -z "$run_dir" ]; then
	run_dir=$(mktemp -d "$runs/$(date +%Y%m%d-%H%M%S)-XXXX")
else
	mkdir -p "$run_dir"
fi
# Keep the newest VM_KEEP_RUNS runs.
find "$runs" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
	sort -rn | tail -n +"$((${VM_KEEP_RUNS:-20} + 1))" | cut -d' ' -f2- |
	xargs -r rm -rf
RUN=$(cd "$run_dir" && pwd)
case $RUN$ROOT in
*[[:space:]]*) log "paths with spaces are not supported: $RUN $ROOT"; exit 2 ;;
esac

# Per-run module tree: the package's modules plus this tree's module in
# extra/, indexed on the host (depmod in the VM over 9p is slow).
M=$RUN/modules/lib/modules/$ABI
mkdir -p "$M/extra"
ln -sfn "$KDIR/lib/modules/$ABI/kernel" "$M/kernel"
cp "$KDIR/lib/modules/$ABI"/modules.{order,builtin,builtin.modinfo} "$M/"
# As linux-headers-<abi> does on an installed system: build/ names the
# headers, so that dkms (selftests/package-install.sh) builds in the VM.
if [ -d "/usr/src/linux-headers-$ABI" ]; then
	ln -sfn "/usr/src/linux-headers-$ABI" "$M/build"
fi
KO=$ROOT/dm-remote-cow/dm-remote-cow.ko
if [ -f "$KO" ]; then
	cp "$KO" "$M/extra/"
	[ "$module" = 1 ] && : >"$RUN/load-module"
	key=$(sha256sum "$KO" | cut -c1-16)
elif [ "$module" = 1 ]; then
	log "note: $KO not built; the VM runs without it"
	key=none
else
	key=none
fi
# depmod takes a second or so: keep its index per module build.
dcache=$BUILD/vm/depmod/$ABI-$key
if [ ! -f "$dcache/modules.dep.bin" ]; then
	depmod -b "$RUN/modules" "$ABI"
	mkdir -p "$dcache.$$"
	cp "$M"/modules.* "$dcache.$$/"
	# Another run may have made it meanwhile: keep that one.
	mv -T "$dcache.$$" "$dcache" 2>/dev/null || rm -rf "$dcache.$$"
	# Keep the 10 newest indexes.
	find "$BUILD/vm/depmod" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
		sort -rn | tail -n +11 | cut -d' ' -f2- | xargs -r rm -rf
else
	cp "$dcache"/modules.* "$M/"
fi

if [ "$shell" = 0 ]; then
	{
		echo "cd $(printf '%q' "$ROOT")"
		printf '%q ' "$@"
		echo
	} >"$RUN/cmd"
fi
: >"$RUN/output.log"
: >"$RUN/console.log"
rm -f "$RUN/exit-status" "$RUN/dmesg.txt"

# shellcheck disable=SC2054 # commas belong to the arguments
append=(
	console=ttyS0,115200 loglevel=7 panic=-1
	softlockup_panic=0 hung_task_panic=0 nmi_watchdog=0
	mitigations=off no_timer_check tsc=unstable clocksource=hpet
	i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=2
	random.trust_cpu=on audit=0 cryptomgr.notests
	rc.tree="$ROOT" rc.run="$RUN" rc.abi="$ABI"
)
# shellcheck disable=SC2054
qemu=(
	qemu-system-x86_64 -nodefaults -no-user-config -no-reboot
	-machine pc -accel tcg,thread=multi -cpu max
	-smp "${VM_SMP:-2}" -m "${VM_MEM:-2048}"
	-display none -vga none
	-kernel "$KERNEL_IMG" -initrd "$INITRD"
	-fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
	-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
	-fsdev "local,id=results,path=$RUN,security_model=none,multidevs=remap"
	-device virtio-9p-pci,fsdev=results,mount_tag=results
)

if [ "$shell" = 1 ]; then
	append+=(rc.interactive=1 "rc.term=${TERM:-vt100}")
	if [ -t 0 ]; then
		stty size >"$RUN/stty" 2>/dev/null || true
	fi
	log "interactive VM; results in $RUN; Ctrl-a x kills qemu"
	set +e
	"${qemu[@]}" -append "${append[*]}" -serial mon:stdio -serial null
	set -e
	exit 0
fi

qemu+=(-serial "file:$RUN/console.log" -serial "file:$RUN/output.log")
start=$(date +%s%N)
timeout -k 10 "$timeout" "${qemu[@]}" -append "${append[*]}" \
	</dev/null >"$RUN/qemu.log" 2>&1 &
qpid=$!
# timeout(1) runs qemu in a process group of its own, out of reach of the
# terminal's Ctrl-C: pass interruptions on.
trap 'kill -TERM "$qpid" 2>/dev/null; log "interrupted"; exit 130' INT TERM HUP
if [ "$quiet" = 0 ]; then
	tail -n +1 -F --pid="$qpid" "$RUN/output.log" 2>/dev/null &
	tpid=$!
fi
set +e
wait "$qpid"
qrc=$?
set -e
[ "$quiet" = 1 ] || wait "$tpid" 2>/dev/null || true
ms=$((($(date +%s%N) - start) / 1000000))
elapsed=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))

rc=
if [ -s "$RUN/exit-status" ]; then
	rc=$(cat "$RUN/exit-status")
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	log "TIMEOUT: the VM was killed after ${timeout}s"
	echo "timeout" >"$RUN/failure"
	rc=124
else
	log "the VM died before the command finished (qemu exit $qrc)"
	sed 's/^/vm-run: qemu: /' "$RUN/qemu.log" >&2
	echo "died" >"$RUN/failure"
	rc=125
fi

# Kernel log check: the full dmesg if the VM wrote it, else the console.
klog=$RUN/dmesg.txt
[ -s "$klog" ] || klog=$RUN/console.log
if ! "$ROOT/scripts/klog-check.sh" "$klog" >"$RUN/klog-check.txt"; then
	log "KERNEL LOG CHECK FAILED ($klog):"
	cat "$RUN/klog-check.txt" >&2
	[ "$rc" != 0 ] || rc=126
else
	rm -f "$RUN/klog-check.txt"
fi
if [ "$rc" = 124 ] || [ "$rc" = 125 ]; then
	log "kernel log tail ($klog):"
	tail -n 40 "$klog" | sed 's/^/    /' >&2
fi
up=$(sed -n 's/.*vm-stage2: up after \([0-9.]*\) s.*/\1/p' "$RUN/console.log" | head -n1)
log "done: exit $rc, boot ${up:-?} s, total ${elapsed} s, results in $RUN"
exit "$rc"
