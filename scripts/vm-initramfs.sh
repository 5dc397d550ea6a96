#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the VM's initramfs: busybox-static, the modules needed to mount the
# host's root over virtio-9p with an overlay on top, and scripts/vm-init as
# /init.  Prints the path of the (uncompressed) cpio archive.
#
#   scripts/vm-initramfs.sh <kernel-dir> <abi> <output.cpio>
#
# <kernel-dir> is the extracted linux-image package (build/vm/kernel/<abi>).
# The archive is rebuilt only when one of its inputs is newer than it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KDIR=$1
ABI=$2
OUT=$3
MODDIR=$KDIR/lib/modules/$ABI
BUSYBOX=/bin/busybox
INIT=$ROOT/scripts/vm-init

# The modules /init loads, in this order, with their dependencies first.
WANT=(virtio_pci 9pnet_virtio 9p overlay)

up_to_date() {
	local f
	[ -s "$OUT" ] || return 1
	for f in "$INIT" "${BASH_SOURCE[0]}" "$BUSYBOX" "$MODDIR/modules.dep"; do
		[ "$f" -ot "$OUT" ] || return 1
	done
}

if up_to_date; then
	printf '%s\n' "$OUT"
	exit 0
fi

[ -f "$MODDIR/modules.dep" ] || {
	echo "vm-initramfs: $MODDIR/modules.dep missing (run make deps)" >&2
	exit 1
}

# Resolve a module name to its path in modules.dep ('-' and '_' are the same).
mod_path() {
	local re=${1//[-_]/[-_]}
	sed -n "s#^\([^:]*/${re}\.ko[^:]*\):.*#\1#p" "$MODDIR/modules.dep" | head -n1
}

declare -A seen=()
order=()
add_module() {	# add_module <path relative to MODDIR>: dependencies first
	local path=$1 dep
	[ -z "${seen[$path]:-}" ] || return 0
	seen[$path]=1
	local -a deps
	read -r -a deps < <(sed -n "s#^${path}:##p" "$MODDIR/modules.dep")
	for dep in "${deps[@]}"; do
		add_module "$dep"
	done
	order+=("$path")
}

for m in "${WANT[@]}"; do
	p=$(mod_path "$m")
	if [ -z "$p" ]; then
		# Built into this kernel: nothing to load.
		grep -q "/${m//[-_]/[-_]}\.ko" "$MODDIR/modules.builtin" ||
			{ echo "vm-initramfs: no module $m in $MODDIR" >&2; exit 1; }
		continue
	fi
	add_module "$p"
done

mkdir -p "$(dirname "$OUT")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,dev,proc,sys,modules,lower,rw,newroot}
cp "$BUSYBOX" "$tmp/bin/busybox"
ln -s busybox "$tmp/bin/sh"
install -m 0755 "$INIT" "$tmp/init"
: >"$tmp/modules/order"
for p in "${order[@]}"; do
	b=$(basename "$p")
	case $b in
	*.ko) cp "$MODDIR/$p" "$tmp/modules/$b" ;;
	*.ko.xz) xz -dc "$MODDIR/$p" >"$tmp/modules/${b%.xz}"; b=${b%.xz} ;;
	*.ko.zst) zstd -qdc "$MODDIR/$p" >"$tmp/modules/${b%.zst}"; b=${b%.zst} ;;
	*.ko.gz) gzip -dc "$MODDIR/$p" >"$tmp/modules/${b%.gz}"; b=${b%.gz} ;;
	esac
	printf '%s\n' "$b" >>"$tmp/modules/order"
done
(cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$OUT.$$"
mv "$OUT.$$" "$OUT"
printf '%s\n' "$OUT"
