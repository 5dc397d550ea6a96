#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything dm-remote-cow needs to build, lint, test and demo on a
# Debian 12 machine, and prepare the VM kernel and checkpatch.pl.
#
# Idempotent: a second run installs nothing, downloads nothing and takes a
# second or two.  Must run as root (it calls apt-get).
#
#   scripts/install-deps.sh            install packages, kernel, checkpatch
#   BUILD=dir scripts/install-deps.sh  put the caches somewhere else than build/
#
# What it leaves behind (all under $BUILD, default <repo>/build):
#   vm/kernel/<abi>/boot/vmlinuz-<abi>      the Debian kernel for the VM
#   vm/kernel/<abi>/lib/modules/<abi>/      its modules, depmod'ed
#   vm/kernel/current                       symlink to <abi>
#   checkpatch/checkpatch.pl (+ spelling.txt, const_structs.checkpatch)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
	# build
	gcc make pkg-config kmod linux-headers-amd64
	libdevmapper-dev libnbd-dev libmnl-dev liburing-dev libsystemd-dev
	# live migration between two remote-cowd: GnuTLS with PSK, psktool
	libgnutls28-dev gnutls-bin
	# host tests: sanitizer runtimes (ASan+UBSan, TSan) and nbdkit with
	# its pattern, null and memory plugins and delay filter (in nbdkit)
	libasan8 libubsan1 libtsan2 nbdkit
	# lint
	sparse linux-source-6.1 cppcheck clang clang-tidy libclang-rt-14-dev
	shellcheck
	# VM harness; also the QEMU guests inside the VM (selftests/lib-guest.sh:
	# libvirt-guest.sh, migrate-qemu.sh) with busybox-static and cpio
	qemu-system-x86 busybox-static cpio xz-utils
	# tools used by tests and the demo, inside the VM
	dmsetup libnbd-bin nbdkit qemu-utils fio iproute2 iputils-ping
	e2fsprogs util-linux procps coreutils openssl diffutils bc jq python3 xxd
	# man page checks
	groff-base
	# host test of the systemd unit (systemd-analyze verify)
	systemd
	# make deb (debian/): debhelper with dh-dkms, lintian on the result;
	# dkms itself also runs in the VM (selftests/package-install.sh)
	build-essential dpkg-dev fakeroot debhelper dh-dkms dkms lintian
	# libvirt guest on a remote-cow disk (selftests/libvirt-guest.sh):
	# libvirtd with its QEMU driver, virsh, and busybox-static + cpio
	# (above) for the guest's initramfs
	libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
	# make bench-peers (bench/bench-peers.sh): the kernel's NBD client
	# for the peers over nbd-client, gnuplot for the figures
	nbd-client gnuplot-nox
)

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get install)"
command -v dpkg-query >/dev/null || die "this needs a Debian system (dpkg)"

APT_OPTS=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=900)

# A package counts as present only when dpkg says "install ok installed".
missing_packages() {
	local p st
	for p in "$@"; do
		st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		[ "$st" = "install ok installed" ] || printf '%s\n' "$p"
	done
}

lists_updated=0
apt_update() {
	[ "$lists_updated" -eq 0 ] || return 0
	log "apt-get update"
	apt-get -q -o DPkg::Lock::Timeout=900 update >&2
	lists_updated=1
}

install_packages() {
	local -a missing
	mapfile -t missing < <(missing_packages "$@")
	[ "${#missing[@]}" -gt 0 ] || return 0
	log "installing: ${missing[*]}"
	apt_update
	apt-get install "${APT_OPTS[@]}" "${missing[@]}" >&2
}

install_packages "${PACKAGES[@]}"

# Several people may share one tree: one install at a time.
mkdir -p "$BUILD"
exec 9>"$BUILD/.install-deps.lock"
flock 9

# ---------------------------------------------------------------------------
# The VM kernel: the linux-image package whose ABI and version match the
# installed linux-headers-amd64, extracted (never installed on the host).
# ---------------------------------------------------------------------------
headers_dep() {
	# "linux-headers-6.1.0-56-amd64 (= 6.1.192-2)" -> "6.1.0-56-amd64 6.1.192-2"
	dpkg-query -W -f='${Depends}' linux-headers-amd64 |
		sed -n 's/.*linux-headers-\([^ ,]*-amd64\) (= \([^)]*\)).*/\1 \2/p'
}

read -r ABI KVER < <(headers_dep) || true
if [ -z "${ABI:-}" ] || [ -z "${KVER:-}" ]; then
	die "cannot tell the kernel ABI from linux-headers-amd64's dependencies"
fi

KCACHE=$BUILD/vm/kernel
KDIR_VM=$KCACHE/$ABI
STAMP=$KDIR_VM/.complete

if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$KVER" ]; then
	dl=$(mktemp -d "$BUILD/.kernel-dl.XXXXXX")
	trap 'rm -rf "$dl"' EXIT
	chmod 755 "$dl"   # apt's _apt user writes here when it can
	get_image() {
		local pkg
		for pkg in "linux-image-$ABI-unsigned" "linux-image-$ABI"; do
			# The archive may already hold it.
			if cp "/var/cache/apt/archives/${pkg}_${KVER}_amd64.deb" \
				"$dl/" 2>/dev/null; then
				return 0
			fi
			(cd "$dl" && apt-get -q download "$pkg=$KVER" >&2) &&
				return 0
		done
		return 1
	}
	log "fetching linux-image-$ABI $KVER for the VM"
	if ! get_image; then
		apt_update
		get_image || die "cannot download linux-image-$ABI $KVER;" \
			"run 'apt-get install linux-headers-amd64' to move to the" \
			"archive's current kernel and retry"
	fi
	log "extracting the kernel into $KDIR_VM"
	rm -rf "$KDIR_VM"
	mkdir -p "$KDIR_VM"
	dpkg-deb -x "$dl"/*.deb "$KDIR_VM"
	[ -f "$KDIR_VM/boot/vmlinuz-$ABI" ] || die "no vmlinuz-$ABI in the package"
	depmod -b "$KDIR_VM" "$ABI"
	printf '%s\n' "$KVER" >"$STAMP"
	rm -rf "$dl"
	trap - EXIT
fi
# The uncompressed ELF kernel boots through its PVH entry point, skipping the
# firmware and the in-guest decompression (about 3 s under TCG).
VMLINUX=$KDIR_VM/boot/vmlinux-$ABI
if [ ! -s "$VMLINUX" ] &&
	grep -q '^CONFIG_PVH=y' "$KDIR_VM/boot/config-$ABI" 2>/dev/null; then
	vmlinuz=$KDIR_VM/boot/vmlinuz-$ABI
	# Find the payload by its compression magic and unpack it.
	for magic in '\xfd7zXZ\x00:xz -dc --single-stream' \
		'\x28\xb5\x2f\xfd:zstd -dcq' '\x1f\x8b\x08:gzip -dcq'; do
		off=$(LC_ALL=C grep -obUaP "${magic%%:*}" "$vmlinuz" |
			head -n1 | cut -d: -f1)
		[ -n "$off" ] || continue
		# shellcheck disable=SC2086 # the command has its options
		tail -c +"$((off + 1))" "$vmlinuz" | ${magic#*:} \
			>"$VMLINUX.tmp" 2>/dev/null || true
		if [ "$(head -c 4 "$VMLINUX.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			mv "$VMLINUX.tmp" "$VMLINUX"
			break
		fi
	done
	rm -f "$VMLINUX.tmp"
	[ -s "$VMLINUX" ] ||
		log "note: could not unpack $vmlinuz; the VM boots the compressed kernel"
fi

if [ "$(readlink "$KCACHE/current" 2>/dev/null || true)" != "$ABI" ]; then
	ln -sfn "$ABI" "$KCACHE/current"
fi

# ---------------------------------------------------------------------------
# checkpatch.pl from the linux-source-6.1 tarball (only the three files it
# reads with --no-tree).
# ---------------------------------------------------------------------------
CP=$BUILD/checkpatch
SRC_TAR=/usr/src/linux-source-6.1.tar.xz
SRC_VER=$(dpkg-query -W -f='${Version}' linux-source-6.1)
if [ "$(cat "$CP/.complete" 2>/dev/null || true)" != "$SRC_VER" ]; then
	log "extracting checkpatch.pl from $SRC_TAR"
	[ -f "$SRC_TAR" ] || die "$SRC_TAR is missing"
	rm -rf "$CP"
	mkdir -p "$CP"
	tar -xJf "$SRC_TAR" -C "$CP" --strip-components=2 --occurrence=1 \
		'linux-source-6.1/scripts/checkpatch.pl' \
		'linux-source-6.1/scripts/spelling.txt' \
		'linux-source-6.1/scripts/const_structs.checkpatch'
	[ -x "$CP/checkpatch.pl" ] || die "checkpatch.pl not found in $SRC_TAR"
	printf '%s\n' "$SRC_VER" >"$CP/.complete"
fi

# ---------------------------------------------------------------------------
# dm-clone's sources from the same tarball, for make bench-peers only: Debian
# does not enable CONFIG_DM_CLONE, so bench/build-dm-clone.sh builds it out
# of tree at benchmark time (a measurement peer, never part of the project).
# ---------------------------------------------------------------------------
DMC=$BUILD/peers/dm-clone-src
if [ "$(cat "$DMC/.complete" 2>/dev/null || true)" != "$SRC_VER" ]; then
	log "extracting dm-clone's sources from $SRC_TAR"
	rm -rf "$DMC"
	mkdir -p "$DMC"
	tar -xJf "$SRC_TAR" -C "$DMC" --strip-components=3 \
		'linux-source-6.1/drivers/md/dm-clone-target.c' \
		'linux-source-6.1/drivers/md/dm-clone-metadata.c' \
		'linux-source-6.1/drivers/md/dm-clone-metadata.h' \
		'linux-source-6.1/drivers/md/dm.h' \
		'linux-source-6.1/drivers/md/dm-stats.h' \
		'linux-source-6.1/drivers/md/persistent-data'
	[ -f "$DMC/dm-clone-target.c" ] || die "dm-clone-target.c not found in $SRC_TAR"
	printf '%s\n' "$SRC_VER" >"$DMC/.complete"
fi

log "ok (VM kernel $ABI $KVER)"
