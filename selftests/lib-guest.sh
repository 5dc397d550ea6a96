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
