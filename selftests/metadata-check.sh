#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Metadata integrity, kernel and tools together: bitmap block checksums
# with two copies per block, needs_check, and `remote-cow check` / `dump`
# on COW devices the kernel wrote.
#
# - A clean device checks 0 and `check` / `dump` count and list what the
#   kernel wrote (4 whole-extent writes: present and written 0-3).
# - `check` refuses a COW device in use by a table, naming the holder.
# - Both copies of a bitmap block damaged (one byte flipped in each, which
#   only the checksum sees): the table is refused and the kernel log names
#   the bitmap, the block and both COW blocks; `check` exits 1 naming the
#   same block; the refused load wrote nothing.
# - One copy damaged on a device shut down cleanly: refused too.
# - A bit set past the last extent in a copy with a valid checksum: refused
#   too, naming the copy; check calls it damage.
# - A commit writes a changed block over its older copy and leaves the
#   newest one as it was.
# - A crash image (the COW device copied while the table is live, so its
#   superblock is not clean) with one copy torn: it loads.  Tearing the
#   older copy keeps every bit; tearing the newest falls back to the
#   previous commit.  After a clean shutdown both copies are valid again
#   (the next commit rewrote the torn one) and `check` finds nothing.
# - FROZEN_COMMIT, which the kernel keeps only on disk: a crash image with
#   a bit in its newest copy and the older copy torn loads, and the commit
#   at the clean shutdown rewrites the torn copy from the newest one (the
#   bit is kept, `check` finds no damage and no torn copy).
# - needs_check set in the superblock: a read-write table is refused with
#   a message saying what to run, a read-only one loads, and `check
#   --clear-needs-check` clears it so that the read-write table loads.
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup dd python3 cmp
RC=$RC_TREE/tools/remote-cow
require_built "$RC"
tap_plan 47

NAME="rc-mdcheck"
EXT=128				# 64 KiB extents
LEN=8192			# 4 MiB: 64 extents, one bitmap block each
# Bitmap b's copy c of block 0 is COW block 1 + 2 * b + c (remote_cow_disk.h).
PRESENT0=1 WRITTEN0=3 FROZEN0=7

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
base=$tmp/base.img
make_base_image "$base" $((LEN * 512)) mdcheck >/dev/null || tap_bail "no base image"
URI=file://$base
need=$("$RC" cow-size --size $((LEN * 512)) --extent-size 64K) || tap_bail "cow-size failed"
make_cow "$need" || tap_bail "no COW loop device"
cow=$COW_DEV
cow_file=$(losetup -n -O BACK-FILE "$cow")
TABLE=$(rc_table "$LEN" "$cow" "$EXT" "$URI")
at_exit "dm_remove $NAME"

# block_of <n>: print 4 KiB block n of the COW device; put_block <n> <file>.
block_of() { dd if="$cow" bs=4096 skip="$1" count=1 status=none; }
put_block() { dd if="$2" of="$cow" bs=4096 seek="$1" count=1 conv=notrunc,fsync status=none; }
# smash <first block> <count>: overwrite blocks with garbage.
smash() {
	image_data "smash-$1" $(($2 * 4096)) |
		dd of="$cow" bs=4096 seek="$1" count="$2" conv=notrunc,fsync status=none
}
# flip <block> <byte>: invert one byte of a block (a bit-rot, which only
# the checksum can see).
flip() {
	python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    off = int(sys.argv[2]) * 4096 + int(sys.argv[3])
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0xff]))' "$cow" "$1" "$2"
}
cow_sum() { sha256_of "$cow"; }

# sb_flags <dev> <flags>: rewrite the superblock's flags (offset 12) and
# its checksum (crc32c of bytes 4..4095, seed ~0, no final inversion,
# xor 0x5ca1ab1e; Documentation/remote-cow.rst).
sb_flags() {
	"$RC_TREE/selftests/progs/rcow-md-edit.py" sb-flags "$1" "$2"
}

# stray_bit <dev> <block> <bit>: set a bit of a bitmap block copy's words
# and reseal it (crc32c as above, xor 0x0b175e75): valid but wrong.
stray_bit() {
	"$RC_TREE/selftests/progs/rcow-md-edit.py" stray-bit "$1" "$2" "$3"
}

# newest_copy <dev> <bitmap>: the copy of block 0 `dump -v` says is used.
newest_copy() {
	"$RC" dump -v "$1" | awk -v b="bitmap $2:" '
		$0 == b { on = 1; next }
		on && /using copy/ { print $NF; exit }'
}

# expect_exit <desc> <status> <text> <command...>
expect_exit() {
	local desc=$1 want=$2 text=$3 out rc
	shift 3
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -ne "$want" ] || [[ $out != *"$text"* ]]; then
		tap_not_ok "$desc" "command: $*" "exit $rc (want $want), want text: $text" \
			"output: $out"
		return 1
	fi
	tap_ok "$desc"
}

# refused <desc> <message> <errno>: the table is refused, no device left,
# the log has "remote-cow: <message> (-<errno>)".
refused() {
	kmsg_mark
	if dmsetup create "$NAME" --table "$TABLE" >/dev/null 2>&1; then
		dm_remove "$NAME"
		tap_not_ok "$1" "table accepted"
		return 1
	fi
	if dm_exists "$NAME" || ! dmesg_since_mark | grep -qF -- "remote-cow: $2 (-$3)"; then
		tap_not_ok "$1" "want in the log: remote-cow: $2 (-$3)" "log: $(dmesg_since_mark)"
		return 1
	fi
	tap_ok "$1"
}

# --- a clean device ----------------------------------------------------------
check "create over a zeroed COW device" dmsetup create "$NAME" --table "$TABLE"
check "write extents 0-3 whole (no helper needed)" \
	dd if=/dev/urandom of="/dev/mapper/$NAME" bs=64K count=4 oflag=direct conv=fsync status=none
expect_exit "check refuses the COW device while the table uses it" 1 "is in use by dm-" \
	"$RC" check "$cow"
check "remove (clean shutdown)" dmsetup remove "$NAME"
expect_exit "check: the device the kernel wrote has no damage (exit 0)" 0 "no damage" \
	"$RC" check "$cow"
out=$("$RC" check "$cow" 2>&1)
check_eq "check counts what the kernel wrote" "clean present 4 written 4 dirty-commit 4" \
	"$(awk '/metadata version 2/ && /clean$/ { s = "clean" }
		/^(present|written|dirty-commit) / { s = s " " $1 " " $2 }
		END { print s }' <<<"$out")"
out=$("$RC" dump "$cow" 2>&1)
check "dump lists the runs" grep -qzF $'bitmap present: 4 set\n  0-3\nbitmap written: 4 set\n  0-3\n' \
	<<<"$out"
check "dump shows the superblock" grep -q "^  data_offset     2048$" <<<"$out"
cp "$cow_file" "$tmp/clean.img"

# --- both copies of a bitmap block damaged ------------------------------------
flip $WRITTEN0 3000
flip $((WRITTEN0 + 1)) 64
sum=$(cow_sum)
refused "both copies of written block 0 damaged: table refused" \
	"COW bitmap damaged (see log): run \`remote-cow check COW_DEV\`" EILSEQ
check "the kernel log names the bitmap, the block and both COW blocks" grep -qF \
	"bitmap written block 0 damaged: no valid copy (blocks 3, 4)" <(dmesg_since_mark)
check_eq "the refused load wrote nothing" "$sum" "$(cow_sum)"
expect_exit "check exits 1 and names the same block" 1 \
	"damage: bitmap written block 0: no valid copy (COW block 3: checksum mismatch; COW block 4: checksum mismatch)" \
	"$RC" check "$cow"

# --- one copy damaged on a device shut down cleanly ---------------------------
cp "$tmp/clean.img" "$cow_file"
smash $((PRESENT0 + 1)) 1
refused "one copy damaged on a clean device: table refused" \
	"COW bitmap damaged (see log): run \`remote-cow check COW_DEV\`" EILSEQ
check "the log names the copy" grep -qF \
	"bitmap present block 0 damaged: copy 1 (block 2) bad, sb clean" <(dmesg_since_mark)
expect_exit "check calls it damage too" 1 "copy 1 (COW block 2) bad magic on a device shut down cleanly" \
	"$RC" check "$cow"

# --- a bit past the last extent, in a copy with a valid checksum --------------
cp "$tmp/clean.img" "$cow_file"
use=$(newest_copy "$cow" present)
stray_bit "$cow" $((PRESENT0 + use)) 64
refused "a bit set past the last extent: table refused" \
	"COW bitmap damaged (see log): run \`remote-cow check COW_DEV\`" EILSEQ
check "the log names the block and the copy" grep -qF \
	"bitmap present block 0 damaged: copy $use (block $((PRESENT0 + use))) sets bits past end" \
	<(dmesg_since_mark)
expect_exit "check calls it damage" 1 "sets 1 bits past the last extent (63)" "$RC" check "$cow"

# --- a crash image with a torn copy loads -------------------------------------
cp "$tmp/clean.img" "$cow_file"
check "create again" dmsetup create "$NAME" --table "$TABLE"
dd if=/dev/urandom of="/dev/mapper/$NAME" bs=64K seek=8 count=1 oflag=direct conv=fsync status=none
sleep 2		# the periodic commit wrote the bitmaps; the superblock is not clean
cp --sparse=always "$cow_file" "$tmp/crash.img"
check "remove" dmsetup remove "$NAME"
expect_exit "the crash image is not clean, and has no damage" 0 "not shut down cleanly" \
	"$RC" check "$tmp/crash.img"
new=$(newest_copy "$tmp/crash.img" present)
[ "$new" = 0 ] || [ "$new" = 1 ] || tap_bail "cannot tell the newest copy: $new"
old=$((1 - new))
prev=$(newest_copy "$tmp/clean.img" present)
check_eq "the commit wrote over the older copy of present block 0" "$prev" "$old"
check "... and left the previous newest copy intact" \
	cmp <(dd if="$tmp/clean.img" bs=4096 skip=$((PRESENT0 + prev)) count=1 status=none) \
	<(dd if="$tmp/crash.img" bs=4096 skip=$((PRESENT0 + prev)) count=1 status=none)

cp "$tmp/crash.img" "$cow_file"
smash $((PRESENT0 + old)) 1
expect_exit "check: the torn older copy is a note, exit 0" 0 \
	"torn by a crash during a commit" "$RC" check "$cow"
kmsg_mark
check "a torn older copy: the table loads" dmsetup create "$NAME" --table "$TABLE"
check "the kernel says it rewrites the torn copy" grep -qF \
	"1 bitmap block copies torn by a crash during a commit: the next commit rewrites them" \
	<(dmesg_since_mark)
check_eq "every present bit kept" "5/64" "$(dm_status_field "$NAME" 2)"
check "remove (clean shutdown)" dmsetup remove "$NAME"
expect_exit "afterwards both copies are valid: check has no note" 0 "no damage" \
	"$RC" check "$cow"
check "... and no torn copy" bash -c "! '$RC' check '$cow' | grep -q torn"

cp "$tmp/crash.img" "$cow_file"
smash $((PRESENT0 + new)) 1
check "a torn newest copy: the table loads" dmsetup create "$NAME" --table "$TABLE"
present=$(dm_status_field "$NAME" 2)
check_eq "present falls back to the previous commit's copy" 4/64 "$present"
check "remove" dmsetup remove "$NAME"
expect_exit "afterwards check finds no damage" 0 "no damage" "$RC" check "$cow"

# --- a torn copy of FROZEN_COMMIT is rewritten from its newest copy --------------
cp "$tmp/crash.img" "$cow_file"
fnew=$(newest_copy "$cow" frozen-commit)
[ "$fnew" = 0 ] || [ "$fnew" = 1 ] || tap_bail "cannot tell the newest frozen-commit copy: $fnew"
stray_bit "$cow" $((FROZEN0 + fnew)) 2
smash $((FROZEN0 + 1 - fnew)) 1
check "frozen-commit with a torn older copy: the table loads" \
	dmsetup create "$NAME" --table "$TABLE"
check "remove (clean shutdown: its commit rewrites the torn copy)" dmsetup remove "$NAME"
check_eq "frozen-commit keeps extent 2 (rewritten from the newest copy)" 2 \
	"$("$RC_TREE/selftests/progs/rcow-md-edit.py" bits "$cow" frozen-commit)"
check "... both copies valid: check finds no damage and no torn copy" \
	bash -c "'$RC' check '$cow' | grep -q 'no damage' && ! '$RC' check '$cow' | grep -q torn"

# --- needs_check ----------------------------------------------------------------
cp "$tmp/clean.img" "$cow_file"
sb_flags "$cow" 0x3
expect_exit "check reports needs_check, exit 0" 0 "needs_check is set" "$RC" check "$cow"
sum=$(cow_sum)
refused "needs_check: a read-write table is refused" \
	"COW metadata needs a check: run \`remote-cow check --clear-needs-check COW_DEV\`" EUCLEAN
check "a read-only table loads" dmsetup create "$NAME" --readonly --table "$TABLE"
check_eq "... in ro mode" ro "$(dmsetup status "$NAME" | awk '{ print $NF }')"
check "remove" dmsetup remove "$NAME"
check_eq "neither load wrote to the COW device" "$sum" "$(cow_sum)"
expect_exit "check --clear-needs-check clears it" 0 "needs_check cleared" \
	"$RC" check --clear-needs-check "$cow"
check "the read-write table loads again" dmsetup create "$NAME" --table "$TABLE"
check "remove" dmsetup remove "$NAME"
tap_done
