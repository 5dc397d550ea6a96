#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-remote-cow demo: a disk image that lives on an image server is used
# at once, without copying it first.  Runs inside the test VM ('make demo'
# boots it); needs root and the module.
#
#  1. an "image server": an ext4 image with a few files, exported read-only
#     over NBD by nbdkit on 127.0.0.1;
#  2. an empty local COW device (a sparse file on a loop device);
#  3. a remote-cow device over both (dmsetup), and the helper that fetches
#     missing extents: remote-cowd when built, else the selftests' rcow-fill;
#  4. the device is mounted: files read back identical to the image's, a
#     new file is written locally, and the status line shows that only the
#     touched extents were fetched;
#  5. teardown; the image on the server is unchanged.
#
# Without any helper program built yet it only brings the device up and
# down and shows its table and status.
set -euo pipefail

TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export DM_DISABLE_UDEV=1
NAME=demo
PORT=10809
EXT=128			# extent size in sectors (64 KiB)
IMG_MIB=64

say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (run it with 'make demo')" >&2; exit 1; }

work=$(mktemp -d /tmp/rcow-demo.XXXXXX)
pids=()
cow=''
cleanup() {
	set +e
	mountpoint -q "$work/mnt" && umount "$work/mnt"
	dmsetup info "$NAME" >/dev/null 2>&1 && dmsetup remove --retry "$NAME"
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	[ -z "$cow" ] || losetup -d "$cow"
	rm -rf "$work"
}
trap cleanup EXIT

grep -q '^dm_remote_cow ' /proc/modules || run modprobe dm-remote-cow
[ -e /dev/loop-control ] || modprobe loop

say "1. the image server: an ext4 image exported read-only over NBD"
mkdir -p "$work/content" "$work/mnt"
echo "Hello from the image server." >"$work/content/hello.txt"
for i in 1 2 3; do
	head -c $((2 << 20)) /dev/urandom >"$work/content/blob$i.bin"
done
(cd "$work/content" && sha256sum ./*) >"$work/content.sha256"
run mkfs.ext4 -q -F -b 4096 -d "$work/content" "$work/base.img" "${IMG_MIB}M"
base_sum=$(sha256sum <"$work/base.img")
nbdkit --exit-with-parent -f -r -i 127.0.0.1 -p "$PORT" file "$work/base.img" &
pids+=($!)
for _ in $(seq 50); do
	nbdinfo --size "nbd://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
	sleep 0.2
done
run nbdinfo --size "nbd://127.0.0.1:$PORT/"

say "2. an empty local COW device (sparse file on a loop device)"
len=$((IMG_MIB * 2048))
truncate -s $(((IMG_MIB + 16) << 20)) "$work/cow.img"
cow=$(losetup -f --show "$work/cow.img")
echo "COW device: $cow"

say "3. the remote-cow device over both"
run dmsetup create "$NAME" --table "0 $len remote-cow $cow $EXT nbd://127.0.0.1:$PORT/"
run dmsetup table "$NAME"
run dmsetup status "$NAME"

helper=()
if [ -x "$TREE/userspace/remote-cowd" ]; then
	helper=("$TREE/userspace/remote-cowd" --foreground)
elif [ -x "$TREE/selftests/progs/rcow-fill" ]; then
	helper=("$TREE/selftests/progs/rcow-fill" --ready "$work/ready")
fi
if [ ${#helper[@]} -eq 0 ]; then
	say "no helper program is built yet: the demo stops at bringing the device up"
	run dmsetup remove "$NAME"
	exit 0
fi

say "helper: ${helper[*]}"
"${helper[@]}" &
pids+=($!)
for _ in $(seq 100); do
	{ [ "${helper[0]##*/}" != rcow-fill ] || [ -e "$work/ready" ]; } &&
		dmsetup status "$NAME" | grep -q ' connected ' && break
	sleep 0.1
done
run dmsetup status "$NAME"

say "4. use the disk at once: mount, read, write"
run mount "/dev/mapper/$NAME" "$work/mnt"
run ls -l "$work/mnt"
run cat "$work/mnt/hello.txt"
(cd "$work/mnt" && sha256sum -c "$work/content.sha256")
echo "written locally, never sent to the server" >"$work/mnt/local.txt"
sync
run dmsetup status "$NAME"
read -r _ _ _ _ present written _ <<<"$(dmsetup status "$NAME")"
echo "extents fetched from the server: ${present%/*} of ${present#*/};" \
	"written locally: $written"

say "5. teardown"
run umount "$work/mnt"
run dmsetup remove "$NAME"
if [ "$(sha256sum <"$work/base.img")" = "$base_sum" ]; then
	echo "the image on the server is unchanged"
else
	echo "demo: the base image changed!" >&2
	exit 1
fi
say "demo done"
