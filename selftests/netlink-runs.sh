#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# GET_RUNS, the changed-extent iterator: a netlink dump of the runs of set
# bits of a bitmap, (first, count) each, in extent order.  On a device of
# 262144 extents of 4 KiB, whole-extent writes at known places make
# WRITTEN (and PRESENT) exactly those runs: the dump lists them, and only
# them, from the start or from a given extent, the last extent included.
# Bad requests are refused: no CAP_NET_ADMIN (EPERM), an unknown device
# (ENODEV), a bitmap that does not exist (ERANGE), a first extent past the
# end (ERANGE), no BITMAP (EINVAL), a run length sent to the kernel
# (EINVAL).
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; wr through eval
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup dd
NL=$RC_TREE/selftests/progs/rcow-nl
require_built "$NL"
tap_plan 14

NAME="rc-runs"
EXT=8				# 4 KiB extents
NR=262144			# 1 GiB
LEN=$((NR * EXT))

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
truncate -s $((LEN * 512)) "$tmp/base.img"
make_cow $((LEN * 512 + (64 << 20))) || tap_bail "no COW loop device"
dm_create "$NAME" "$(rc_table "$LEN" "$COW_DEV" "$EXT" "file://$tmp/base.img")" ||
	tap_bail "cannot create $NAME"
ID=$("$NL" devices 2>/dev/null | grep " name=$NAME " | sed -n 's/^dev_id=\([0-9]*\) .*/\1/p')
[ -n "$ID" ] || tap_bail "no device id"

# wr <first extent> <extents>: whole-extent direct writes
wr() {
	dd if=/dev/urandom of="/dev/mapper/$NAME" bs=4096 seek="$1" count="$2" oflag=direct \
		status=none
}
runs() { "$NL" runs "$ID" "$@" 2>&1 | xargs; }

check_eq "an untouched device: no run of WRITTEN" "" "$(runs written)"
check "write extents 0-2, 5, 63-64, 1000-1099, 131071 and the last one" \
	eval "wr 0 3 && wr 5 1 && wr 63 2 && wr 1000 100 && wr 131071 1 && wr $((NR - 1)) 1"
expect="0+3 5+1 63+2 1000+100 131071+1 $((NR - 1))+1"
check_eq "WRITTEN: exactly those runs" "$expect" "$(runs written)"
check_eq "PRESENT: the same runs" "$expect" "$(runs present)"
check_eq "WRITTEN from extent 64: the runs from there, the first one cut" \
	"64+1 1000+100 131071+1 $((NR - 1))+1" "$(runs written 64)"
check_eq "WRITTEN from the last extent" "$((NR - 1))+1" "$(runs written $((NR - 1)))"

nl_refused "GET_RUNS without CAP_NET_ADMIN" EPERM --drop-caps runs "$ID" written
nl_refused "GET_RUNS of an unknown device" ENODEV runs $((ID + 1000)) written
nl_refused "GET_RUNS of bitmap 9" ERANGE raw --dump get_runs dev_id:u32:"$ID" bitmap:u32:9
nl_refused "GET_RUNS from the end of the device" ERANGE runs "$ID" written "$NR"
nl_refused "GET_RUNS without BITMAP" EINVAL raw --dump get_runs dev_id:u32:"$ID"
nl_refused "GET_RUNS with a RUN_LENGTH attribute" EINVAL \
	raw --dump get_runs dev_id:u32:"$ID" bitmap:u32:1 run_length:u64:1
check "remove the device" dm_remove "$NAME"
nl_refused "GET_RUNS of the removed device" ENODEV runs "$ID" written
tap_done
