#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A libvirt guest whose disk is a remote-cow device, the way a host runs
# one: Debian's libvirtd (QEMU driver, TCG) with the hook tools/libvirt/qemu
# as /etc/libvirt/hooks/qemu, remote-cowd serving the device.
#
# - The base is a file:// image of pseudo-random data; the domain's
#   <metadata> names the device (<rcow:device name= cow= base=
#   extent-size=>), so the hook creates /dev/mapper/<name> at "prepare"
#   (virsh start) and removes it at "release" (after the guest stopped).
# - The guest: Debian's kernel (the VM's own, from build/vm/kernel) and a
#   busybox initramfs built here (lib-guest.sh), holding
#   virtio_pci/virtio_blk and their dependencies and a payload.  Its init
#   prints the sha256 of the first MiB of /dev/vda, writes the payload at
#   8 MiB with fsync, prints a marker and powers off (on_poweroff destroy).
# - Checked: the guest printed the base's checksum; the hook removed the
#   device at release; the device created again over the same COW device
#   holds the payload at 8 MiB, counts written extents and still reads the
#   base elsewhere; the base image is unchanged.
#
# libvirtd runs by hand (no systemd in the VM) on private copies of
# /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and
# /run/libvirt (bind mounts, undone at exit), with qemu.conf: user root, no
# security driver, no cgroups or namespaces, stdio to files (no virtlogd).
# The guest runs under TCG inside the TCG test VM: its boot takes minutes.
# TIMEOUT=1200
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-guest.sh"

require_vm
require_cmd libvirtd virsh qemu-system-x86_64 busybox cpio python3 modprobe \
	dmsetup losetup mount umount sha256sum
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 14

NAME="rc-virt"
DOM=rcow-guest
MIB=$((1 << 20))
BASE_BYTES=$((16 * MIB))
PAYLOAD_BYTES=$((256 * 1024))	# 4 extents of 64 KiB at 8 MiB
GUEST_WAIT=${GUEST_WAIT:-900}	# seconds for the guest to boot and finish
EXPECT_SUM=			# the first MiB's sha256 (the base's)
URI=qemu:///system

load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" libvirt-guest
tmp=$NET_WORKDIR
EXPECT_SUM=$(sha256_of "$BASE_IMG" "$MIB")
image_data libvirt-guest-payload "$PAYLOAD_BYTES" >"$tmp/payload"
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
helper_start || tap_bail "remote-cowd does not start"

# --- the guest: kernel and initramfs (lib-guest.sh) ------------------------
guest_kernel || tap_bail "no kernel for the guest"
ird=$tmp/initramfs
guest_initramfs_tree "$ird" || tap_bail "cannot build the guest's initramfs"
cp "$tmp/payload" "$ird/payload"
{
	guest_init_head
	cat <<'EOF'
sum=$(dd if=/dev/vda bs=65536 count=16 | sha256sum)
echo "RCOW-GUEST-SHA256 ${sum%% *}"
dd if=/payload of=/dev/vda bs=65536 seek=128 conv=notrunc,fsync
echo "RCOW-GUEST-WRITE $?"
sync
echo "RCOW-GUEST-DONE"
poweroff -f
EOF
} >"$ird/init"
guest_initramfs_pack "$ird" "$tmp/initrd.cpio" || tap_bail "cannot build the guest's initramfs"

# --- libvirtd, on private state directories --------------------------------
etc=$tmp/etc-libvirt
cp -a /etc/libvirt "$etc" || tap_bail "cannot copy /etc/libvirt"
rm -f "$etc"/qemu/networks/autostart/*.xml "$etc"/qemu/*.xml
mkdir -p "$etc/hooks"
install -m 755 "$RC_TREE/tools/libvirt/qemu" "$etc/hooks/qemu"
cat >"$etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
cat >"$tmp/libvirtd.conf" <<EOF
unix_sock_dir = "/run/libvirt"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:$tmp/libvirtd.log"
EOF
bind() {	# bind <private dir> <path>: mounted over path, undone at exit
	mkdir -p "$1" "$2" && mount --bind "$1" "$2" && at_exit "umount -l '$2'"
}
bind "$etc" /etc/libvirt || tap_bail "cannot bind-mount /etc/libvirt"
for d in /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /run/libvirt; do
	bind "$tmp/state${d//\//_}" "$d" || tap_bail "cannot bind-mount $d"
done
mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu

libvirtd --config "$tmp/libvirtd.conf" --pid-file "$tmp/libvirtd.pid" \
	>"$tmp/libvirtd.out" 2>&1 &
LIBVIRTD_PID=$!
at_exit "helper_stop_pid $LIBVIRTD_PID"
vsh() { virsh -q -c "$URI" "$@"; }
# first start: it probes qemu's capabilities (slow under emulation)
if wait_until 180 vsh version >/dev/null 2>&1; then
	tap_ok "libvirtd answers on $URI"
else
	tap_not_ok "libvirtd answers on $URI" "$(cat "$tmp/libvirtd.out" "$tmp/libvirtd.log" 2>/dev/null | tail -n 30)"
	tap_bail "no libvirtd"
fi

# --- the domain ------------------------------------------------------------
console=$tmp/console.log
cat >"$tmp/domain.xml" <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <metadata>
    <rcow:device xmlns:rcow="https://dm-remote-cow.example/libvirt"
                 name="$NAME" cow="$COW_DEV" base="file://$BASE_IMG"
                 extent-size="64K"/>
  </metadata>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUEST_KERNEL</kernel>
    <initrd>$tmp/initrd.cpio</initrd>
    <cmdline>$GUEST_CMDLINE</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='/dev/mapper/$NAME'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='$console'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
check "virsh define" vsh define "$tmp/domain.xml" || tap_bail "cannot define the domain"
at_exit "virsh -q -c $URI undefine $DOM"
at_exit "virsh -q -c $URI destroy $DOM"
started=$(date +%s)
if check "virsh start (the hook creates /dev/mapper/$NAME)" vsh start "$DOM"; then
	check "the hook created $NAME" dm_exists "$NAME"
else
	tap_diag "libvirtd log:" "$(tail -n 30 "$tmp/libvirtd.log" 2>/dev/null)"
	tap_bail "the domain does not start"
fi

guest_done() { grep -q RCOW-GUEST-DONE "$console" 2>/dev/null; }
dom_off() { [ "$(vsh domstate "$DOM" 2>/dev/null)" = "shut off" ]; }
guest_ended() { guest_done || [ "$(vsh domstate "$DOM" 2>/dev/null)" != running ]; }
dev_gone() { ! dm_exists "$NAME"; }
wait_until "$GUEST_WAIT" guest_ended
tap_diag "guest ran $(($(date +%s) - started)) s; its console:" "$(tail -n 40 "$console" 2>/dev/null)"
# kept with the run's results
cp "$console" "${RC_RUN:-/tmp}/selftests/$TEST_NAME.console" 2>/dev/null
check "the guest printed its marker" guest_done
check_eq "the guest read the base (sha256 of the first MiB of /dev/vda)" "$EXPECT_SUM" \
	"$(sed -n 's/^RCOW-GUEST-SHA256 \([0-9a-f]*\).*/\1/p' "$console" | tr -d '\r')"
check_eq "the guest's write succeeded" 0 \
	"$(sed -n 's/^RCOW-GUEST-WRITE \([0-9]*\).*/\1/p' "$console" | tr -d '\r')"
# it powers off (on_poweroff destroy); destroy if it did not
wait_until 60 dom_off || vsh destroy "$DOM" >/dev/null 2>&1
if wait_until 30 dev_gone; then
	tap_ok "the hook removed $NAME at release"
else
	tap_not_ok "the hook removed $NAME at release" "$(tail -n 20 "$tmp/libvirtd.log" 2>/dev/null)"
	dm_remove "$NAME"
fi
check "virsh undefine" vsh undefine "$DOM"

# --- the guest's data, on the COW device -----------------------------------
at_exit "dm_remove $NAME"
check "remote-cow create $NAME again over the same COW device" \
	"$RC_TREE/tools/remote-cow" create "$NAME" --cow "$COW_DEV" \
	--base "file://$BASE_IMG" --extent-size 64K || tap_bail "cannot create $NAME again"
check_eq "the device holds the guest's write at 8 MiB" "$(sha256_of "$tmp/payload")" \
	"$(dd if="/dev/mapper/$NAME" bs=64k skip=128 count=4 iflag=direct status=none | sha256sum | cut -d' ' -f1)"
written=$(rc_status "$NAME" written)
if [ "${written:-0}" -ge $((PAYLOAD_BYTES / 65536)) ]; then
	tap_ok "its extents are WRITTEN ($written)"
else
	tap_not_ok "its extents are WRITTEN" "status: $(dmsetup status "$NAME")"
fi
check_eq "the rest reads the base" \
	"$(head -c $((8 * MIB)) "$BASE_IMG" | sha256sum | cut -d' ' -f1)" \
	"$(dd if="/dev/mapper/$NAME" bs=1M count=8 iflag=direct status=none | sha256sum | cut -d' ' -f1)"
dm_remove "$NAME"
check_eq "the base image is unchanged" "$BASE_SUM" "$(sha256_of "$BASE_IMG")"

tap_done
