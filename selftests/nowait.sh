#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# REQ_NOWAIT (io_uring, RWF_NOWAIT): the target declares DM_TARGET_NOWAIT,
# its map function never sleeping, so a remote-cow device over a COW
# device that takes REQ_NOWAIT takes it too.  Without it every io_uring
# request to the device goes through an io-wq worker thread (0.45 to 0.77
# times dm-linear's IOPS in make bench with BENCH_ENGINE=io_uring), and
# RWF_NOWAIT I/O fails with EOPNOTSUPP.
#
# With O_DIRECT and RWF_NOWAIT (progs/nowait-io.py), over a file:// base
# and remote-cowd, data compared with the base or with what was written:
# - a read of a present extent, and of a missing one (deferred: the
#   fault, then the worker issues it without REQ_NOWAIT);
# - a 4 KiB write into a present extent, a whole-extent write to a missing
#   one and a 4 KiB write into a missing one (a fault first);
# - fio, io_uring, random reads and writes with verification.
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl python3 cmp fio
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 11

NAME="rc-nowait"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((4 << 20))		# 64 extents
LEN=$((BASE_BYTES / 512))
NW="$RC_TREE/selftests/progs/nowait-io.py"

require_built "$NW"
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
test_base_image "$BASE_BYTES" nowait
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
helper_start || tap_bail "remote-cowd does not start"
at_exit "dm_remove $NAME"
dm_create "$NAME" "$(rc_table "$LEN" "$COW_DEV" "$EXT" "file://$BASE_IMG")" ||
	tap_bail "cannot create $NAME"
dev=/dev/mapper/$NAME
tmp=$NET_WORKDIR

# dev_part <offset> <bytes>: those bytes of the device, read direct.
dev_part() { dd if="$dev" bs=4096 skip=$(($1 / 4096)) count=$(($2 / 4096)) iflag=direct status=none; }
# nowait_read_is_base <offset> <bytes>: an RWF_NOWAIT read equals the base.
nowait_read_is_base() {
	"$NW" read "$dev" "$1" "$2" "$tmp/nw.out" && cmp -s "$tmp/nw.out" <(base_part "$1" "$2")
}

present() { rc_status "$NAME" present; }

# Extent 1 made present by an ordinary read.
dev_part "$EXTB" "$EXTB" >/dev/null
check_eq "extent 1 present after an ordinary read" 1 "$(present)"
out=$("$NW" read "$dev" "$EXTB" "$EXTB" "$tmp/nw.out" 2>&1)
check_eq "RWF_NOWAIT read of a present extent succeeds (no EOPNOTSUPP)" "" "$out"
check "... and equals the base" cmp -s "$tmp/nw.out" <(base_part "$EXTB" "$EXTB")
check "RWF_NOWAIT read of a missing extent (5) equals the base" \
	nowait_read_is_base $((5 * EXTB)) "$EXTB"
check_eq "... and made it present" 2 "$(present)"

check "RWF_NOWAIT 4 KiB write into present extent 1" "$NW" write "$dev" $((EXTB + 8192)) 4096 165
check "... reads back, the rest of the extent the base's" cmp -s <(dev_part "$EXTB" "$EXTB") \
	<(base_part "$EXTB" 8192; bytes_of 4096 165; base_part $((EXTB + 12288)) $((EXTB - 12288)))
whole_write() {
	"$NW" write "$dev" $((10 * EXTB)) "$EXTB" 90 &&
		cmp -s <(dev_part $((10 * EXTB)) "$EXTB") <(bytes_of "$EXTB" 90)
}
part_write() {
	"$NW" write "$dev" $((12 * EXTB)) 4096 91 &&
		cmp -s <(dev_part $((12 * EXTB)) "$EXTB") \
			<(bytes_of 4096 91; base_part $((12 * EXTB + 4096)) $((EXTB - 4096)))
}
check "RWF_NOWAIT whole-extent write to missing extent 10, read back" whole_write
check "RWF_NOWAIT 4 KiB write into missing extent 12, read back over the base" part_write
check_eq "extents 1, 5, 10, 12 present" 4 "$(present)"

# fio over the second half (extents 32-63, most missing), io_uring,
# writes verified by reading them back.
out=$(fio --name=nowait --filename="$dev" --ioengine=io_uring --direct=1 --iodepth=8 \
	--rw=randwrite --bs=4k --offset=$((32 * EXTB)) --size=$((32 * EXTB)) \
	--io_size=$((1 << 20)) --verify=crc32c --do_verify=1 --verify_fatal=1 \
	--randrepeat=1 --output-format=terse 2>&1)
rc=$?
check_eq "fio io_uring random writes verified (exit 0)" 0 "$rc" || tap_diag "$out"
tap_done
