#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The Debian packages of 'make deb' (build/deb/, Documentation/packaging.rst)
# on the VM's kernel, the way an administrator uses them:
#
# - dpkg -i dm-remote-cow-dkms and remote-cow: dkms builds the module from
#   /usr/src/dm-remote-cow-<version> against the VM kernel's headers
#   (/lib/modules/$(uname -r)/build) and installs it in updates/dkms, even
#   though the tree's own build sits in extra/ (as after 'make install');
# - modprobe loads the dkms build, not the tree's (modinfo -n, the path
#   modprobe -v loads, the tree's module unloaded first);
# - the installed /usr/sbin/remote-cowd (reading the packaged
#   /etc/remote-cow/remote-cowd.conf) and /usr/sbin/remote-cow create a
#   device over a file:// base that reads back equal to it;
# - dpkg --purge removes both: nothing left in dkms status, no module file,
#   source, program, man page, unit or configuration file.
#
# dkms runs depmod over the module tree after each install and removal, and
# depmod reads every module of it: over 9p under emulation, minutes for
# Debian's whole tree.  So this test mounts, over /lib/modules/$(uname -r),
# a copy holding only the modules it uses (dm-mod, dm-bufio, loop, the
# tree's dm-remote-cow.ko in extra/), the index files and the build link;
# dkms does not care what else a kernel has.  The module build itself takes
# a minute or more under TCG.  Everything is undone at exit: the packages
# purged, the real module tree back, the tree's module loaded again.
# TIMEOUT=900
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dpkg dpkg-deb dpkg-query dkms gcc make modinfo modprobe depmod rmmod \
	dmsetup losetup mount umount sha256sum
tap_plan 26

export DEBIAN_FRONTEND=noninteractive
ABI=$(uname -r)
MODDIR=/lib/modules/$ABI
DEB_DIR=$RC_TREE/build/deb
DKMS_KO=$MODDIR/updates/dkms/$RC_MODULE.ko
TREE_KO=$MODDIR/extra/$RC_MODULE.ko
PKGS=(remote-cow dm-remote-cow-dkms)
NAME="rc-pkg"

arch=$(dpkg --print-architecture)
dkms_deb=$(find "$DEB_DIR" -maxdepth 1 -name 'dm-remote-cow-dkms_*_all.deb' 2>/dev/null | head -n1)
rc_deb=$(find "$DEB_DIR" -maxdepth 1 -name "remote-cow_*_$arch.deb" 2>/dev/null | head -n1)
if [ -z "$dkms_deb" ] || [ -z "$rc_deb" ]; then
	tap_bail "no packages in $DEB_DIR: run 'make deb' (make check and make vm-test T=$TEST_NAME do)"
fi
VER=$(dpkg-deb -f "$dkms_deb" Version)
UPVER=${VER%-*}
tap_diag "packages: ${dkms_deb##*/} ${rc_deb##*/}"

installed() {	# installed <package>: dpkg knows it (any state but not-installed)
	local st
	st=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != not-installed ] && [ "$st" != config-files ]
}
for p in "${PKGS[@]}"; do
	! installed "$p" || tap_bail "$p is already installed here; this test installs it"
done

# ---------------------------------------------------------------------------
# The module tree: the modules this test loads, the tree's build in extra/
# ---------------------------------------------------------------------------
[ -f "$TREE_KO" ] || tap_bail "$TREE_KO missing: the tree's module is not built (make)"
check "/lib/modules/$ABI/build resolves to the kernel headers" \
	test -f "$MODDIR/build/Makefile" -a -d "$MODDIR/build/include"

at_exit "modprobe $RC_MODULE"	# last: the tree's module, as run.sh left it
mods=$(test_tmpdir)/modules
mkdir -p "$mods"
deps=$(modprobe -D "$RC_MODULE" && modprobe -D loop) ||
	tap_bail "modprobe --show-depends failed: $deps"
while read -r verb path; do
	[ "$verb" = insmod ] || continue
	rel=${path#"$MODDIR"/}
	mkdir -p "$mods/$(dirname "$rel")"
	cp "$path" "$mods/$rel" || tap_bail "cannot copy $path"
done <<<"$deps"
cp "$MODDIR"/modules.{order,builtin,builtin.modinfo} "$mods/"
ln -s "$(readlink -f "$MODDIR/build")" "$mods/build"
mount --bind "$mods" "$MODDIR" || tap_bail "cannot mount the test's module tree"
at_exit "umount '$MODDIR'"
depmod -a || tap_bail "depmod failed"
tap_diag "module tree: $(cd "$mods" && find . -name '*.ko' | sort | tr '\n' ' ')"

at_exit "rmmod $RC_MODULE_SYS"
unload_module
check_fails "the tree's module is unloaded" module_loaded
check_eq "before the packages, modprobe would load the tree's module" \
	"$TREE_KO" "$(modinfo -n "$RC_MODULE" 2>&1)"

# ---------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------
# man-db's trigger rebuilds the index of every manual page (tens of seconds
# over 9p): not what is tested here.  Off as in a build chroot, back at exit.
if [ -e /var/lib/man-db/auto-update ]; then
	mv /var/lib/man-db/auto-update /var/lib/man-db/auto-update.rcow-test &&
		at_exit "mv /var/lib/man-db/auto-update.rcow-test /var/lib/man-db/auto-update"
fi
at_exit "dpkg --purge ${PKGS[*]}"
t0=$SECONDS
check "dpkg -i ${dkms_deb##*/} ${rc_deb##*/}" dpkg -i "$dkms_deb" "$rc_deb"
tap_diag "dpkg -i (dkms build included): $((SECONDS - t0)) s"
for p in "${PKGS[@]}"; do
	check_eq "$p is installed" "install ok installed" \
		"$(dpkg-query -W -f='${Status}' "$p" 2>&1)"
done
check_eq "dkms status: built and installed for $ABI" \
	"$RC_MODULE/$UPVER, $ABI, $(uname -m): installed" \
	"$(dkms status -m "$RC_MODULE" -v "$UPVER" -k "$ABI" 2>&1)"
check "dkms put its build in updates/dkms" test -f "$DKMS_KO"
other_file() { [ -f "$1" ] && ! cmp -s "$1" "$2"; }
check "the dkms build is not the tree's module file" other_file "$DKMS_KO" "$TREE_KO"
check_eq "modinfo -n names the dkms build" "$DKMS_KO" "$(modinfo -n "$RC_MODULE" 2>&1)"
check_eq "the dkms build is for this kernel (vermagic)" "$ABI" \
	"$(modinfo -F vermagic "$DKMS_KO" | cut -d' ' -f1)"

out=$(modprobe -v "$RC_MODULE" 2>&1)
if module_loaded && grep -qx "insmod $DKMS_KO *" <<<"$out"; then
	tap_ok "modprobe $RC_MODULE loads the dkms build"
else
	tap_not_ok "modprobe $RC_MODULE loads the dkms build" "modprobe -v: $out" \
		"/proc/modules: $(grep "^$RC_MODULE_SYS " /proc/modules)"
fi
check "the $RC_TARGET target is registered" \
	bash -c "dmsetup targets | grep -q '^$RC_TARGET '"

missing=
for f in /usr/sbin/remote-cowd /usr/sbin/remote-cow /usr/share/man/man8/remote-cowd.8.gz \
	/usr/share/man/man8/remote-cow.8.gz /lib/systemd/system/remote-cowd.service \
	/etc/remote-cow/remote-cowd.conf "/usr/src/$RC_MODULE-$UPVER/dkms.conf" \
	/usr/share/remote-cow/libvirt/qemu /usr/share/remote-cow/opennebula/tm/remote-cow/clone \
	/usr/share/remote-cow/opennebula/tm/remote-cow/rcow-common.sh; do
	[ -e "$f" ] || missing+=" $f"
done
check_eq "the packages' files are installed" "" "$missing"
# The libvirt hook and the OpenNebula driver are copies to install by hand:
# nothing of what libvirt or OpenNebula already have is replaced.
check_eq "nothing in /etc/libvirt or /var/lib/one" "" \
	"$(dpkg -L remote-cow | grep -E '^/(etc/libvirt|var/lib/one)(/|$)')"

# ---------------------------------------------------------------------------
# The installed programs
# ---------------------------------------------------------------------------
RCOW_HELPER=/usr/sbin/remote-cowd
RC=/usr/sbin/remote-cow
EXT_BYTES=$((64 << 10))
BASE_BYTES=$((8 << 20))
net_tmpdir
img=$NET_WORKDIR/base.img
sum=$(make_base_image "$img" "$BASE_BYTES" package-install) || tap_bail "cannot make the base image"
need=$("$RC" cow-size --size "$BASE_BYTES" --extent-size "$EXT_BYTES") ||
	tap_bail "remote-cow cow-size failed: $need"
make_cow "$need" || tap_bail "no COW loop device"

if helper_start -v; then
	tap_ok "the installed remote-cowd starts"
else
	tap_not_ok "the installed remote-cowd starts" "log: $(cat "$HELPER_LOG" 2>/dev/null)"
fi
check "it read the packaged /etc/remote-cow/remote-cowd.conf" \
	grep -q "configuration read from /etc/remote-cow/remote-cowd.conf" "$HELPER_LOG"
at_exit "dm_remove $NAME"
check "remote-cow create $NAME over file://$img" \
	"$RC" create "$NAME" --cow "$COW_DEV" --base "file://$img" --extent-size "$EXT_BYTES"
check_eq "the device reads back equal to the base (sha256)" "$sum" \
	"$(sha256_of "/dev/mapper/$NAME" 2>&1)"
check "remote-cow remove $NAME" "$RC" remove "$NAME"
helper_stop
check "the module unloads" rmmod "$RC_MODULE_SYS"

# ---------------------------------------------------------------------------
# Removal
# ---------------------------------------------------------------------------
t0=$SECONDS
check "dpkg --purge ${PKGS[*]}" dpkg --purge "${PKGS[@]}"
tap_diag "dpkg --purge: $((SECONDS - t0)) s"
left=
for p in "${PKGS[@]}"; do
	! installed "$p" || left+=" $p"
done
check_eq "neither package is installed any more" "" "$left"
check_eq "dkms status knows nothing of $RC_MODULE" "" "$(dkms status -m "$RC_MODULE" 2>&1)"
left=
for f in "$DKMS_KO" "/usr/src/$RC_MODULE-$UPVER" "/var/lib/dkms/$RC_MODULE" \
	/usr/sbin/remote-cowd /usr/sbin/remote-cow /usr/share/man/man8/remote-cowd.8.gz \
	/usr/share/man/man8/remote-cow.8.gz /lib/systemd/system/remote-cowd.service \
	/etc/remote-cow/remote-cowd.conf /etc/remote-cow /usr/share/remote-cow; do
	[ ! -e "$f" ] || left+=" $f"
done
check_eq "no file of the packages is left" "" "$left"
check_eq "modinfo -n names the tree's module again" "$TREE_KO" "$(modinfo -n "$RC_MODULE" 2>&1)"

tap_done
