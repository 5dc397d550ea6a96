#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A seeded random workload of mixed reads and writes applied both to the
# device and to a plain copy of the base (the reference): sizes from one
# byte (buffered) or 512 B (O_DIRECT) to several extents, at offsets
# unaligned to extents, crossing extent boundaries, some writes covering
# whole missing extents; O_DIRECT and buffered I/O on the same device,
# with an fsync now and then.  Every read is compared with the reference
# as it goes, the whole device at the end; the WRITTEN counter must be
# exactly the number of extents the writes touched.  Then the device is
# removed, re-created over the same COW device and compared again.  Run
# for 64 KiB extents (with a partial last extent) and for 4 KiB extents.
#
# The seed is printed; DATA_RANDOM_SEED=<n> replays a run.
# shellcheck disable=SC2119,SC2317	# helper_start: optional arguments; called through check
. "$(dirname "$0")/lib.sh"
RCOW_HELPER=$RC_TREE/selftests/progs/rcow-fill
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp python3
tap_plan 21

NAME="rc-data-random"
dev=/dev/mapper/$NAME
SEED=${DATA_RANDOM_SEED:-20261122}

require_built "$RCOW_HELPER"
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
at_exit "dm_remove $NAME"
tap_diag "seed $SEED (DATA_RANDOM_SEED=$SEED replays this run)"

# workload <device> <reference> <extent bytes> <seed> <ops>: prints a
# summary line ending in "written_extents=N"; exit 1 at the first read
# that differs from the reference.
workload() {
	python3 - "$@" <<'EOF'
import mmap, os, random, sys

dev, ref, ext, seed, nops = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5])
size = os.path.getsize(ref)
nr = (size + ext - 1) // ext
rng = random.Random(seed)
fd_d = os.open(dev, os.O_RDWR | os.O_DIRECT)
fd_b = os.open(dev, os.O_RDWR)
fd_r = os.open(ref, os.O_RDWR)
maxlen = 4 * ext + 8192
abuf = mmap.mmap(-1, maxlen)            # page aligned, for O_DIRECT
count = {"read": 0, "write": 0, "direct": 0, "buffered": 0, "whole": 0,
         "bytes": 0}
written, touched = set(), set()

def extents(off, length):
    return range(off // ext, (off + length - 1) // ext + 1)

def dev_read(off, length, direct):
    if not direct:
        return os.pread(fd_b, length, off)
    view = memoryview(abuf)[:length]
    n = os.preadv(fd_d, [view], off)
    return bytes(view[:n])

def dev_write(off, data, direct):
    if not direct:
        n = os.pwrite(fd_b, data, off)
    else:
        abuf[:len(data)] = data
        n = os.pwritev(fd_d, [memoryview(abuf)[:len(data)]], off)
    if n != len(data):
        sys.exit("op %d: short write %d of %d at %d" % (i, n, len(data), off))

for i in range(nops):
    write = rng.random() < 0.45
    direct = rng.random() < 0.5
    c = rng.random()
    whole = False
    if c < 0.15:
        # whole extents, preferably missing ones (direct: one bio)
        free = [e for e in range(nr - 1) if e not in touched]
        first = rng.choice(free) if free and rng.random() < 0.7 else \
            rng.randrange(nr - 1)
        n = min(rng.randint(1, 3), nr - 1 - first)
        off, length, direct, whole = first * ext, n * ext, True, True
    else:
        if c < 0.5:
            length = rng.randint(1, 16) * 512
        elif c < 0.85:
            length = rng.randint(1, ext // 512) * 512
        else:
            length = rng.randint(ext // 512, 4 * ext // 512) * 512
        length = min(length, size)
        off = rng.randrange(0, (size - length) // 512 + 1) * 512
        if not direct:
            # any byte offset and length
            off = min(off + rng.randrange(512), size - 1)
            length = max(1, min(length - rng.randrange(512), size - off))
    count["write" if write else "read"] += 1
    count["direct" if direct else "buffered"] += 1
    count["whole"] += whole
    count["bytes"] += length
    touched.update(extents(off, length))
    if write:
        data = rng.randbytes(length)
        dev_write(off, data, direct)
        os.pwrite(fd_r, data, off)
        written.update(extents(off, length))
    else:
        got = dev_read(off, length, direct)
        want = os.pread(fd_r, length, off)
        if got != want:
            bad = next((k for k in range(min(len(got), len(want)))
                        if got[k] != want[k]), min(len(got), len(want)))
            sys.exit("op %d: %s read of %d bytes at %d: first difference at "
                     "byte %d (extent %d), got %d bytes"
                     % (i, "direct" if direct else "buffered", length, off,
                        off + bad, (off + bad) // ext, len(got)))
    if i % 25 == 24:
        os.fsync(fd_b)
os.fsync(fd_b)
os.fsync(fd_r)
print("ops=%d reads=%d writes=%d direct=%d buffered=%d whole=%d bytes=%d "
      "touched=%d written_extents=%d" % (nops, count["read"], count["write"],
      count["direct"], count["buffered"], count["whole"], count["bytes"],
      len(touched), len(written)))
EOF
}

same_as_ref() { cmp <(dd if="$dev" bs=1M iflag=direct status=none) "$1"; }

# one_case <desc> <extent_sectors> <length in sectors> <ops> <seed>
one_case() {
	local desc=$1 ext=$2 len=$3 nops=$4 seed=$5 base ref table out written nr
	base=$tmp/base.img
	ref=$tmp/ref.img
	nr=$(((len + ext - 1) / ext))
	make_base_image "$base" $((len * 512)) "data-random-$ext" >/dev/null ||
		tap_bail "cannot make the base image"
	cp "$base" "$ref"
	make_cow $((len * 512 + (4 << 20))) || tap_bail "no COW loop device"
	table=$(rc_table "$len" "$COW_DEV" "$ext" "file://$base")
	check "$desc: create ($nr extents)" dm_create "$NAME" "$table" || return
	if helper_start; then tap_ok "$desc: rcow-fill starts"; else tap_not_ok "$desc: rcow-fill starts"; fi

	out=$(workload "$dev" "$ref" $((ext * 512)) "$seed" "$nops" 2>&1)
	check "$desc: $nops random ops (seed $seed), every read equals the reference" \
		grep -q "written_extents=" <<<"$out"
	tap_diag "$desc: $out"
	written=$(sed -n 's/.*written_extents=\([0-9]*\).*/\1/p' <<<"$out")
	check "$desc: the whole device equals the reference" same_as_ref "$ref"
	check_eq "$desc: WRITTEN counts exactly the extents written" \
		"${written:-?}" "$(dm_status_field "$NAME" 3)"

	check "$desc: remove" dm_remove "$NAME"
	check "$desc: re-create over the same COW" dm_create "$NAME" "$table"
	check "$desc: the whole device still equals the reference" same_as_ref "$ref"
	check_eq "$desc: WRITTEN unchanged after re-creation" \
		"${written:-?}" "$(dm_status_field "$NAME" 3)"
	helper_stop
	dm_remove "$NAME"
	check_eq "$desc: the base image is unchanged" \
		"$(sha256_of "$base")" "$(image_data "data-random-$ext" $((len * 512)) | sha256sum | cut -d' ' -f1)"
}

one_case "64 KiB extents" 128 $((32 * 2048 + 24)) 800 "$SEED"
one_case "4 KiB extents" 8 $((2 * 2048)) 800 $((SEED + 1))

check "the module unloads" unload_module
tap_done
