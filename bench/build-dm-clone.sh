#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/build-dm-clone.sh - build Debian's dm-clone as an out-of-tree
# module for make bench-peers, which compares remote-cow with it.
#
# Debian's kernel does not enable CONFIG_DM_CLONE.  scripts/install-deps.sh
# extracts dm-clone's sources (and the private headers they include) from
# the linux-source-6.1 package into build/peers/dm-clone-src; this builds
# them against the VM kernel's headers into build/peers/dm-clone/dm-clone.ko.
# A measurement peer only: nothing of it is part of the project, and the
# result stays under build/ (not in git).
#
#   bench/build-dm-clone.sh        prints the path of dm-clone.ko
#
# Exit status: 0 when the module is built (or up to date), 1 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SRC=$BUILD/peers/dm-clone-src
OUT=$BUILD/peers/dm-clone
ABI=${KERNEL_ABI:-$(readlink "$BUILD/vm/kernel/current" 2>/dev/null || true)}
KDIR=/usr/src/linux-headers-$ABI

die() { printf 'build-dm-clone: %s\n' "$*" >&2; exit 1; }

[ -n "$ABI" ] || die "no VM kernel: run make deps"
[ -f "$SRC/dm-clone-target.c" ] || die "no dm-clone sources in $SRC: run make deps"
[ -d "$KDIR" ] || die "no headers for $ABI in $KDIR: run make deps"

if [ ! -f "$OUT/dm-clone.ko" ] || [ "$(cat "$OUT/.abi" 2>/dev/null)" != "$ABI" ] ||
	[ -n "$(find "$SRC" -newer "$OUT/dm-clone.ko" -name '*.[ch]' | head -n1)" ]; then
	rm -rf "$OUT"
	mkdir -p "$OUT"
	cp -r "$SRC"/. "$OUT"/
	printf 'obj-m := dm-clone.o\ndm-clone-y := dm-clone-target.o dm-clone-metadata.o\n' \
		>"$OUT/Kbuild"
	make -s -C "$KDIR" M="$OUT" modules >"$OUT/build.log" 2>&1 ||
		{ cat "$OUT/build.log" >&2; die "the build failed"; }
	printf '%s\n' "$ABI" >"$OUT/.abi"
fi
echo "$OUT/dm-clone.ko"
