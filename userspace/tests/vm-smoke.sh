#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Manual smoke test of selftests/progs (rcow-fill, rcow-nl) against the
# real module, inside the test VM:
#
#   make -C selftests/progs && scripts/vm-run.sh -- userspace/tests/vm-smoke.sh
#
# Not one of the selftests (those live in selftests/*.sh); it exercises the
# helper programs end to end so their owner sees them work: whole-device
# content through file:// and nbd+unix:// bases (with holes and a short
# last extent), a write, netlink refusals, a helper killed mid-fault and
# restarted, and injected fill errors.  Prints TAP; exit 1 on any failure.
set -u
export DM_DISABLE_UDEV=1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
P=$ROOT/selftests/progs
T=$(mktemp -d /tmp/rcow-smoke.XXXXXX)
n=0 failed=0 cow='' fp='' nbd_pid=''

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; [ $# -eq 0 ] || echo "# $*"; }
check() { local d=$1; shift; if "$@" >"$T/out" 2>&1; then ok "$d"; else not_ok "$d" "$(cat "$T/out")"; fi; }
# refused <desc> <errno name> rcow-nl args...: exit 1 and the errno printed
refused() {
	local d=$1 e=$2 out rc
	shift 2
	out=$("$P/rcow-nl" "$@" 2>&1); rc=$?
	if [ $rc -eq 1 ] && [[ $out == "error: $e "* ]]; then ok "$d ($e)"; else not_ok "$d" "rc=$rc: $out"; fi
}
wait_for() { local _; for _ in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }
start_fill() { rm -f "$T/ready"; "$P/rcow-fill" --ready "$T/ready" "$@" 2>>"$T/fill.log" & fp=$!; wait_for "$T/ready"; }
stop_fill() { [ -z "$fp" ] || { kill "$fp" 2>/dev/null; wait "$fp"; }; fp=''; }
new_device() {	# new_device <base uri>: fresh zeroed COW, table "rc"
	dmsetup remove rc 2>/dev/null
	[ -z "$cow" ] || losetup -d "$cow"
	rm -f "$T/cow.img"; truncate -s 32M "$T/cow.img"
	cow=$(losetup -f --show "$T/cow.img")
	dmsetup create rc --table "0 $LEN remote-cow $cow 128 $1"
}
cleanup() {
	stop_fill
	dmsetup remove rc 2>/dev/null
	[ -z "$cow" ] || losetup -d "$cow"
	[ -z "$nbd_pid" ] || kill "$nbd_pid"
	rm -rf "$T"
}
trap cleanup EXIT

lsmod | grep -q '^dm_remote_cow' || modprobe dm-remote-cow || { echo "Bail out! no module"; exit 1; }
echo "TAP version 13"
# 8 MiB of random data with a 1 MiB hole, then 3 more sectors (short last extent)
head -c $((8 << 20)) /dev/urandom >"$T/base.img"
fallocate -p -o $((1 << 20)) -l $((1 << 20)) "$T/base.img"
truncate -s $(((8 << 20) + 3 * 512)) "$T/base.img"
LEN=$(((8 << 20) / 512 + 3))

check "device over file:// base created" new_device "file://$T/base.img"
check "rcow-nl devices lists it" grep -q "^dev_id=1 name=rc .*dev_sectors=$LEN .*base_uri=file://" <("$P/rcow-nl" devices)
refused "without CAP_NET_ADMIN" EPERM --drop-caps devices
refused "FILL_DONE from a socket that is not the helper" EPERM fill-done 1 12345 0 0
refused "FILL_DONE for an unknown device" ENODEV fill-done 99 1 0 0
refused "DEV_ID sent as u64" EINVAL raw fill_done dev_id:u64:1 cookie:u64:1 first_extent:u64:0 status:u32:0
refused "STATUS above MAX_ERRNO" ERANGE raw fill_done dev_id:u32:1 cookie:u64:1 first_extent:u64:0 status:u32:99999
refused "GET_BITMAP from an extent not a multiple of 8" EINVAL get-bitmap 1 present 3
refused "GET_BITMAP of a bitmap that does not exist" ERANGE get-bitmap 1 9 0
refused "HYDRATE past the end" ERANGE hydrate 1 100000 1
refused "UNREGISTER from a socket that is not the helper" ENOENT unregister

start_fill --stats "$T/stats"
refused "a second helper" EBUSY register
check "whole device equals the base" cmp "/dev/mapper/rc" "$T/base.img"
cp "$T/base.img" "$T/expect.img"
head -c 12288 /dev/urandom >"$T/w.bin"
dd if="$T/w.bin" of=/dev/mapper/rc bs=4096 seek=100 oflag=direct conv=notrunc status=none
dd if="$T/w.bin" of="$T/expect.img" bs=4096 seek=100 conv=notrunc status=none
check "a write reads back over base data" cmp /dev/mapper/rc "$T/expect.img"
check "every extent present" grep -q " 129/129 " <(dmsetup status rc)
stop_fill
check "stats: 129 faults answered, the hole not read" \
	grep -qz "faults=129.answered=129.extents=129.bytes_read=7340032.bytes_zero=1050112" "$T/stats"

check "fresh device" new_device "file://$T/base.img"
"$P/rcow-fill" --exit-after 2 2>>"$T/fill.log" &
fp=$!
(dd if=/dev/mapper/rc of=/dev/null bs=64k count=4 iflag=direct status=none; echo finished >"$T/reader") &
rp=$!
wait "$fp"; rc=$?; fp=''
if [ $rc -eq 3 ]; then ok "--exit-after 2 exits 3 mid-fault"; else not_ok "--exit-after 2 exits 3" "rc=$rc"; fi
check "the outstanding fault is resent to the next helper" grep -q "^FAULT dev_id=1 first_extent=1 " <("$P/rcow-nl" listen 1 3000)
check "reader still waiting" test ! -e "$T/reader"
start_fill
wait "$rp"
check "reader finished after the restart, data right" cmp -n $((256 << 10)) /dev/mapper/rc "$T/base.img"
stop_fill

check "fresh device" new_device "file://$T/base.img"
"$P/rcow-fill" --once 2>>"$T/fill.log" &
fp=$!
dd if=/dev/mapper/rc of=/dev/null bs=64k count=1 iflag=direct status=none
wait "$fp"; rc=$?; fp=''
if [ $rc -eq 0 ]; then ok "--once answers one fault and exits 0"; else not_ok "--once exits 0" "rc=$rc"; fi
start_fill --base-override null:
check "--base-override null: fills zeroes over random base data" cmp -n $((960 << 10)) -i $((64 << 10)):0 /dev/mapper/rc /dev/zero
stop_fill

if command -v nbdkit >/dev/null; then
	nbdkit -r -U "$T/nbd.sock" -P "$T/nbd.pid" file "$T/base.img" && wait_for "$T/nbd.sock"
	nbd_pid=$(cat "$T/nbd.pid")
	check "device over nbd+unix:// base" new_device "nbd+unix:///?socket=$T/nbd.sock"
	start_fill --fail-cookie-every 3
	check "extent 0 reads" dd if=/dev/mapper/rc of=/dev/null bs=64k count=1 iflag=direct status=none
	check "extent 1 reads" dd if=/dev/mapper/rc of=/dev/null bs=64k skip=1 count=1 iflag=direct status=none
	if dd if=/dev/mapper/rc of=/dev/null bs=64k skip=2 count=1 iflag=direct status=none 2>/dev/null; then
		not_ok "extent 2 (third fault, failed on purpose) gives EIO"
	else ok "extent 2 (third fault, failed on purpose) gives EIO"; fi
	stop_fill
	start_fill
	check "whole device equals the base over NBD" cmp /dev/mapper/rc "$T/base.img"
	stop_fill
else
	n=$((n + 1)); echo "ok $n - NBD base # SKIP nbdkit not installed"
fi
echo "1..$n"
[ $failed -eq 0 ] || { echo "# $failed failed; rcow-fill log:"; sed 's/^/# /' "$T/fill.log"; exit 1; }
