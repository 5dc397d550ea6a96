#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run-time failures of the COW device under a live remote-cow device, and
# the read-only mode.  The COW device is a dm device over a loop device,
# reloaded at run time to dm-flakey or dm-error (a test that cannot load
# dm-flakey fails: Debian's kernel has it).
#
# A. error_writes on the whole COW device: a data write fails, the next
#    flush fails and puts the device in "fail" mode (status, log line, a dm
#    event: `dmsetup wait` returns); writes and flushes fail, reads of
#    present extents go on.  needs_check cannot be recorded (its write
#    fails too: logged).  After repairing the COW device, writes still fail
#    until the table is reloaded; the reloaded table is rw, the data is
#    intact and `remote-cow check` finds no damage.
# B. dm-error over the bitmap blocks only (superblock and data area work):
#    the commit fails, needs_check reaches the superblock, and after the
#    repair a read-write reload is refused with the command to run; once
#    `remote-cow check --clear-needs-check` cleared it, the table loads,
#    without the extent whose PRESENT bit never reached the disk.
# C. drop_writes: writes and flushes "succeed" and the device stays rw:
#    the target cannot see a device that acknowledges writes it drops.
#    The write is lost; the metadata stays consistent (check: no damage).
# D. A read-only table (dmsetup create --readonly): status ro; writes,
#    zero-outs and discards fail, to present and missing extents, also
#    when they reach the target (through a dm-linear stacked on top);
#    reads of present extents work; nothing is written to the COW device
#    (the loop device's write counters and the COW file's checksum).
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup dd cmp blkdiscard
RC=$RC_TREE/tools/remote-cow
require_built "$RC"
tap_plan 64

NAME="rc-cowfail"
LOWER="rc-cowfail-cow"
EXT=128				# 64 KiB extents
LEN=8192			# 4 MiB, 64 extents

modprobe dm-flakey || tap_bail "dm-flakey cannot be loaded: this test needs it"
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
base=$tmp/base.img
make_base_image "$base" $((LEN * 512)) cowfail >/dev/null || tap_bail "no base image"
need=$("$RC" cow-size --size $((LEN * 512)) --extent-size 64K) || tap_bail "cow-size failed"
DOFF=2048			# data offset of this layout (remote-cow cow-size -v)
make_cow "$need" || tap_bail "no COW loop device"
loop=$COW_DEV
cow_file=$(losetup -n -O BACK-FILE "$loop")
nsec=$(dev_sectors "$loop")
LINEAR="0 $nsec linear $loop 0"
dmsetup create "$LOWER" --table "$LINEAR" || tap_bail "cannot create $LOWER"
at_exit "dm_remove $LOWER"
cow=/dev/mapper/$LOWER
dev=/dev/mapper/$NAME
# No helper runs: a read of a missing extent (a probe) fails after 5 s.
TABLE=$(rc_table "$LEN" "$cow" "$EXT" "file://$base" fault_timeout 5000)
at_exit "dm_remove $NAME"

# lower <table>: switch the COW device's table at run time.
lower() { printf '%s\n' "$1" | dmsetup reload "$LOWER" && dmsetup resume "$LOWER"; }
flakey() { echo "0 $nsec flakey $loop 0 0 1 1 $1"; }
mode() { dmsetup status "$NAME" | awk '{ print $NF }'; }
events() { dmsetup info "$NAME" | awk '/Event number/ { print $3 }'; }
# flush: fsync of the block device, an empty REQ_PREFLUSH bio.
flush() { dd if=/dev/null of="$dev" conv=notrunc,fsync status=none; }
# put <file> <4 KiB block>: one direct write.
put() { dd if="$1" of="$dev" bs=4K seek="$2" count=1 oflag=direct conv=notrunc status=none; }
extents() {	# extents <first> <count>: read through the target
	dd if="$dev" bs=64K skip="$1" count="$2" iflag=direct status=none
}
reload() { dmsetup reload "$NAME" --table "$TABLE" && dmsetup resume "$NAME"; }
wstat() { awk '{ print "write ios " $5 ", write sectors " $7 }' "/sys/block/${loop#/dev/}/stat"; }

image_data cowfail-a $((8 * 65536)) >"$tmp/a.bin"
image_data cowfail-x 4096 >"$tmp/x.bin"

# --- A: error_writes ------------------------------------------------------------
check "A: create" dmsetup create "$NAME" --table "$TABLE"
check "A: write extents 0-7 whole, fsync" \
	dd if="$tmp/a.bin" of="$dev" bs=64K oflag=direct conv=fsync status=none
check_eq "A: mode rw" rw "$(mode)"
ev=$(events)
dmsetup wait "$NAME" "$ev" >/dev/null 2>&1 &
waiter=$!
at_exit "kill $waiter 2>/dev/null"
kmsg_mark
check "A: COW device switched to dm-flakey error_writes at run time" lower "$(flakey error_writes)"
check_fails "A: a write to a present extent fails (EIO from the COW device)" put "$tmp/x.bin" 0
check_fails "A: a flush fails" flush
check_eq "A: mode fail" fail "$(mode)"
check "A: dmsetup wait returned (a dm event was raised)" wait_pid "$waiter" 10
expect_dmesg "A: the log says the mode changed" "metadata mode rw -> fail"
expect_dmesg "A: needs_check could not be recorded (the superblock write failed too)" \
	"cannot set needs_check in the COW superblock"
check "A: reads of present extents go on" cmp <(extents 0 8) "$tmp/a.bin"
check "A: repair the COW device (back to linear)" lower "$LINEAR"
check_fails "A: writes still fail in fail mode" put "$tmp/x.bin" 0
check_fails "A: flushes too" flush
check_eq "A: still fail until the table is reloaded" fail "$(mode)"
check "A: reload the remote-cow table" reload
check_eq "A: mode rw again" rw "$(mode)"
check "A: the data is intact (the refused writes changed nothing)" cmp <(extents 0 8) "$tmp/a.bin"
check "A: writes work" put "$tmp/x.bin" 16
check "A: flushes work" flush
check "A: the write reads back" cmp <(dd if="$dev" bs=4K skip=16 count=1 iflag=direct status=none) \
	"$tmp/x.bin"
dd if="$tmp/x.bin" of="$tmp/a.bin" bs=4K seek=16 count=1 conv=notrunc status=none
check "A: remove" dmsetup remove "$NAME"
out=$("$RC" check "$cow" 2>&1)
check "A: check: no damage" grep -q "no damage" <<<"$out"
no_needs_check() { ! grep -q needs_check <<<"$out"; }
check "A: ... and no needs_check (its write had failed)" no_needs_check

# --- B: bitmap writes fail, the superblock works: needs_check persists ----------
check "B: create" dmsetup create "$NAME" --table "$TABLE"
check "B: bitmap blocks switched to dm-error (superblock, data area work)" lower \
	"$(printf '0 8 linear %s 0\n8 %s error\n%s %s linear %s %s' "$loop" $((DOFF - 8)) \
		"$DOFF" $((nsec - DOFF)) "$loop" "$DOFF")"
kmsg_mark
# Change tracking is exact: the write is acknowledged only once its extent
# is recorded as written, and that commit cannot write the bitmaps.
check_fails "B: a whole write to extent 20 fails: its change cannot be recorded" \
	dd if="$tmp/a.bin" of="$dev" bs=64K seek=20 count=1 oflag=direct status=none
check_fails "B: the flush fails: the device is in fail mode" flush
check_eq "B: mode fail" fail "$(mode)"
expect_dmesg "B: needs_check recorded in the superblock" \
	"needs_check set in the COW superblock"
check "B: repair the COW device" lower "$LINEAR"
kmsg_mark
check_fails "B: reloading the table read-write is refused" reload
expect_dmesg "B: ... saying what to run" \
	"COW metadata needs a check: run \`remote-cow check --clear-needs-check COW_DEV\` \(-EUCLEAN\)"
check_eq "B: the old table stays, in fail mode" fail "$(mode)"
check "B: remove" dmsetup remove "$NAME"
expect_exit() {	# expect_exit <desc> <status> <text> <command...>
	local desc=$1 want=$2 text=$3 o rc
	shift 3
	o=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -ne "$want" ] || [[ $o != *"$text"* ]]; then
		tap_not_ok "$desc" "exit $rc (want $want), want: $text" "output: $o"
		return 1
	fi
	tap_ok "$desc"
}
expect_exit "B: check: no damage, needs_check set" 0 "needs_check is set" "$RC" check "$cow"
expect_exit "B: check --clear-needs-check clears it" 0 "needs_check cleared" \
	"$RC" check --clear-needs-check "$cow"
check "B: the read-write table loads" dmsetup create "$NAME" --table "$TABLE"
check_eq "B: extents 0-7 present; extent 20's bit never reached the disk" 8/64 \
	"$(dmsetup status "$NAME" | awk '{ print $5 }')"
check "B: the data of extents 0-7 is intact" cmp <(extents 0 8) "$tmp/a.bin"
check "B: remove" dmsetup remove "$NAME"

# --- C: drop_writes: what the target cannot see ---------------------------------
check "C: create" dmsetup create "$NAME" --table "$TABLE"
image_data cowfail-c 65536 >"$tmp/c.bin"
check "C: COW device switched to dm-flakey drop_writes" lower "$(flakey drop_writes)"
check "C: a write to present extent 2 'succeeds'" \
	dd if="$tmp/c.bin" of="$dev" bs=64K seek=2 count=1 oflag=direct status=none
check "C: a flush 'succeeds'" flush
sleep 1.5	# a periodic commit, "written" as well
check_eq "C: mode stays rw: dropped writes cannot be detected" rw "$(mode)"
check "C: the write is lost: extent 2 reads its old data" \
	cmp <(extents 2 1) <(dd if="$tmp/a.bin" bs=64K skip=2 count=1 status=none)
check "C: repair" lower "$LINEAR"
check "C: remove" dmsetup remove "$NAME"
expect_exit "C: check: the metadata is consistent" 0 "no damage" "$RC" check "$cow"

# --- D: read-only table ---------------------------------------------------------
before=$(wstat)
sum=$(sha256_of "$cow_file")
kmsg_mark
check "D: create --readonly" dmsetup create "$NAME" --readonly --table "$TABLE"
check_eq "D: mode ro" ro "$(mode)"
check_fails "D: a write to a present extent fails" put "$tmp/x.bin" 0
check_fails "D: a write to a missing extent fails" put "$tmp/x.bin" $((40 * 16))
check_fails "D: zeroing a present extent fails" blkdiscard -f -z -o 0 -l 65536 "$dev"
check_fails "D: zeroing a missing extent whole fails" blkdiscard -f -z -o $((40 * 65536)) -l 65536 "$dev"
check_fails "D: a discard fails" blkdiscard -f -o 0 -l 65536 "$dev"
# The block layer refuses those before they reach the target.  A dm-linear
# over the read-only device gets write bios to it (6.1 only warns about
# them): the target itself must refuse them.
OVER="rc-cowfail-over"
at_exit "dm_remove $OVER"
if dmsetup create "$OVER" --table "0 $LEN linear $dev 0" 2>/dev/null; then
	kmsg_mark
	check_fails "D: a write that reaches the target fails (present extent)" \
		dd if="$tmp/x.bin" of="/dev/mapper/$OVER" bs=4K count=1 oflag=direct status=none
	check_fails "D: ... (missing extent, whole)" dd if="$tmp/c.bin" of="/dev/mapper/$OVER" \
		bs=64K seek=40 count=1 oflag=direct status=none
	expect_dmesg "D: ... it did reach the remote-cow device" \
		"Trying to write to read-only block-device"
	dm_remove "$OVER"
else
	tap_skip "D: writes that reach the target fail" "dm-linear over a read-only device refused"
	tap_skip "D: ... (missing extent, whole)" "dm-linear over a read-only device refused"
	tap_skip "D: ... it did reach the remote-cow device" "dm-linear over a read-only device refused"
fi
check "D: reads of present extents work" cmp <(extents 0 8) "$tmp/a.bin"
check "D: remove" dmsetup remove "$NAME"
check_eq "D: nothing was written to the COW device ($loop counters)" "$before" "$(wstat)"
check_eq "D: the COW file is unchanged" "$sum" "$(sha256_of "$cow_file")"
tap_done
