#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Every constructor error of the remote-cow target: each bad table is
# refused, no device is left behind, and the kernel log says why with the
# target's own message and errno ("remote-cow: <message> (-EINVAL)").
# Covered: argument count, COW device that cannot be opened, extent sizes
# out of range or not numbers, every malformed base URI form, the optional
# arguments (fault_timeout garbage, negative, too large, without a value;
# unknown keyword; bad or oversized #opt_args; conflicting discard
# options; arguments after the group), too many extents, a COW device too
# small (the log names the exact size needed, checked against the layout
# in Documentation/remote-cow.rst, one sector short refused, exactly enough
# accepted), a read-only table over an unformatted COW, a COW device whose
# reads fail (dm-error) or whose writes fail (dm-flakey), and foreign or
# corrupt metadata (another extent size, device length or base URI; bad
# checksum; bad magic; unknown version; inconsistent geometry; garbage).
# A refused COW device is never written: its checksum is the same before
# and after.  A valid table works afterwards (whole device equals the
# base through rcow-fill) and the module unloads cleanly.
# shellcheck disable=SC2119,SC2317	# helper_start: optional arguments; functions called through check
. "$(dirname "$0")/lib.sh"
RCOW_HELPER=$RC_TREE/selftests/progs/rcow-fill
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp python3
tap_plan 78

NAME="rc-table-errors"
EXT=128
BASE_BYTES=$((4 << 20))
LEN=$((BASE_BYTES / 512))	# 8192 sectors, 64 extents

require_built "$RCOW_HELPER"
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
base=$tmp/base.img
base_sum=$(make_base_image "$base" "$BASE_BYTES" table-errors) ||
	tap_bail "cannot make the base image"
URI=file://$base
make_cow $((6 << 20)) || tap_bail "no COW loop device"
cow=$COW_DEV
cow_file=$(losetup -n -O BACK-FILE "$cow")
at_exit "dm_remove $NAME"

# The data offset the layout in Documentation/remote-cow.rst gives:
# (1 + 5 * 2 * ceil(extents / 32256)) 4 KiB blocks (two copies of every
# bitmap block), rounded up to the larger of the extent size and 1 MiB.
data_offset() {	# data_offset <length> <extent_sectors>
	local len=$1 ext=$2 nr bm md align
	nr=$(((len + ext - 1) / ext))
	bm=$(((nr + 32255) / 32256))
	md=$(((1 + 10 * bm) * 8))
	align=$((ext > 2048 ? ext : 2048))
	echo $(((md + align - 1) / align * align))
}

# try_table <table> [dmsetup create options]: create, and if that worked
# remove again (a refusal is what the callers expect).
try_table() {
	local table=$1
	shift
	if dmsetup create "$NAME" "$@" --table "$table" >"$tmp/create.out" 2>&1; then
		dm_remove "$NAME"
		return 0
	fi
	return 1
}

# refused <desc> <message> <errno name> <table> [dmsetup create options]:
# one test: the table is refused, no device is left, and the kernel log
# has "remote-cow: <message> (-<errno>)" (fixed string).
refused() {
	local desc=$1 msg=$2 err=$3 table=$4 log
	shift 4
	kmsg_mark
	if try_table "$table" "$@"; then
		tap_not_ok "$desc" "table accepted: $table"
		return 1
	fi
	log=$(dmesg_since_mark)
	if [ -e "/dev/mapper/$NAME" ]; then
		tap_not_ok "$desc" "a device is left behind after the refusal"
		return 1
	fi
	if ! grep -qF -- "remote-cow: $msg (-$err)" <<<"$log"; then
		tap_not_ok "$desc" "table: $table" \
			"expected in the kernel log: remote-cow: $msg (-$err)" \
			"log since mark:" "$log"
		return 1
	fi
	tap_ok "$desc"
}

cow_sum() { sha256_of "$cow"; }

# --- argument count --------------------------------------------------------
NEED='Need <cow_dev> <extent_sectors> <base_uri> [<#opts> <opt>...]'
refused "no arguments" "$NEED" EINVAL "0 $LEN remote-cow"
refused "two arguments" "$NEED" EINVAL "0 $LEN remote-cow $cow $EXT"

# --- COW device --------------------------------------------------------------
refused "COW device path that does not exist" "Cannot open the COW device" \
	ENODEV "$(rc_table "$LEN" /dev/no-such-cow "$EXT" "$URI")"
refused "COW device major:minor that does not exist" \
	"Cannot open the COW device" ENXIO "$(rc_table "$LEN" 259:1000000 "$EXT" "$URI")"

# --- extent size -------------------------------------------------------------
BADEXT='Invalid extent size: must be a power of two from 8 to 8192 sectors'
for e in 0 4 16384 24 abc 8x -8; do
	refused "extent size '$e'" "$BADEXT" EINVAL \
		"0 $LEN remote-cow $cow $e $URI"
done

# --- base URI ----------------------------------------------------------------
refused "base URI with an unknown scheme" \
	"Unsupported base URI scheme: use nbd://, nbds://, nbd+unix:// or file://" \
	EINVAL "$(rc_table "$LEN" "$cow" "$EXT" http://host/image)"
refused "base URI without a scheme" \
	"Unsupported base URI scheme: use nbd://, nbds://, nbd+unix:// or file://" \
	EINVAL "$(rc_table "$LEN" "$cow" "$EXT" "$base")"
BADFILE='Invalid file base URI: expected file:///PATH'
refused "file:// with a relative path" "$BADFILE" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" file://tmp/base.img)"
refused "file:/// without a path" "$BADFILE" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" file:///)"
BADNBD='Invalid nbd base URI: expected nbd://HOST[:PORT]/EXPORT'
refused "nbd:// without a host" "$BADNBD" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" nbd:///export)"
refused "nbd:// without an export" "$BADNBD" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" nbd://host:10809)"
refused "nbds:// empty" "$BADNBD" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" nbds://)"
CRED='Base URI must not carry credentials (use remote-cowd.conf)'
refused "nbd:// with a user" "$CRED" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" nbd://alice@host/export)"
refused "nbds:// with user:password" "$CRED" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" nbds://alice:secret@host:10809/export)"
BADUNIX='Invalid nbd+unix URI: want nbd+unix:///EXPORT?socket=PATH'
refused "nbd+unix:// without socket=" "$BADUNIX" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" nbd+unix:///export)"
refused "nbd+unix:// with a host" "$BADUNIX" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" "nbd+unix://host/export?socket=/run/s")"
long="file:///$(printf '%01017d' 0)"	# 1025 bytes
refused "base URI of 1025 bytes" "Base URI too long (at most 1023 bytes)" \
	EINVAL "$(rc_table "$LEN" "$cow" "$EXT" "$long")"

# --- optional arguments -----------------------------------------------------
NOPT='Invalid number of optional arguments'
BADTO='Invalid fault_timeout: milliseconds from 0 (wait forever) to 86400000'
T0="0 $LEN remote-cow $cow $EXT $URI"
refused "fault_timeout abc" "$BADTO" EINVAL "$T0 2 fault_timeout abc"
refused "fault_timeout -1" "$BADTO" EINVAL "$T0 2 fault_timeout -1"
refused "fault_timeout 86400001" "$BADTO" EINVAL "$T0 2 fault_timeout 86400001"
refused "fault_timeout without a value" \
	"fault_timeout needs a value in milliseconds" EINVAL "$T0 1 fault_timeout"
refused "unknown optional argument" "Unrecognised optional argument" EINVAL \
	"$T0 1 no_such_option"
refused "#opt_args not a number" "$NOPT" EINVAL "$T0 x discard_passdown"
refused "#opt_args larger than the arguments given" "$NOPT" EINVAL \
	"$T0 3 fault_timeout 100"
refused "#opt_args above the maximum (6)" "$NOPT" EINVAL \
	"$T0 6 discard_passdown fault_timeout 1 fault_timeout 2 incoming"
refused "incoming twice" "Repeated incoming option" EINVAL "$T0 2 incoming incoming"
refused "#opt_args negative" "$NOPT" EINVAL "$T0 -1 discard_passdown"
refused "discard_passdown and no_discard_passdown" \
	"Conflicting or repeated discard options" EINVAL \
	"$T0 2 discard_passdown no_discard_passdown"
refused "arguments after the optional group" \
	"Unexpected arguments after the optional arguments" EINVAL \
	"$T0 1 discard_passdown fault_timeout"

# --- too many extents (over 2^32) ------------------------------------------
refused "2^32 + 1 extents" "Too many extents: use a larger extent size" EINVAL \
	"$(rc_table $(((1 << 35) + 8)) "$cow" 8 "$URI")"

# --- COW device too small -------------------------------------------------
# shellcheck disable=SC2016 # backquotes are part of the message
TOOSMALL='COW device too small (see `remote-cow cow-size`)'
cow_mm=$(lsblk -dno MAJ:MIN "$cow" | tr -d ' ')
cow_sectors=$(dev_sectors "$cow")
# too_small <desc> <length> <extent_sectors>: refused, and the log line has
# the size needed computed from the documented layout.
too_small() {
	local desc=$1 len=$2 ext=$3 off
	off=$(data_offset "$len" "$ext")
	refused "$desc: refused" "$TOOSMALL" ENOSPC "$(rc_table "$len" "$cow" "$ext" "$URI")"
	check "$desc: log says $((off + len)) sectors needed ($off metadata)" grep -qF -- \
		"COW device $cow_mm has $cow_sectors sectors; needs $((off + len)) ($off metadata + $len data)" \
		<(dmesg_since_mark)
}
too_small "16 MiB device, 64 KiB extents" $((32 << 10)) 128
too_small "16 MiB device, 4 MiB extents" $((32 << 10)) 8192
too_small "64 GiB device, 4 KiB extents (521 bitmap blocks each)" $((128 << 20)) 8
# Exactly at the limit: one sector short is refused, the exact size loads.
need=$(($(data_offset "$LEN" "$EXT") + LEN))
truncate -s $(((need - 1) * 512)) "$cow_file" && losetup -c "$cow"
sum0=$(cow_sum)
refused "COW one sector short ($((need - 1)) sectors)" "$TOOSMALL" ENOSPC \
	"$(rc_table "$LEN" "$cow" "$EXT" "$URI")"
check_eq "the too-small COW device was not written" "$sum0" "$(cow_sum)"
truncate -s $((need * 512)) "$cow_file" && losetup -c "$cow"
check "COW of exactly $need sectors loads" try_table "$(rc_table "$LEN" "$cow" "$EXT" "$URI")"
truncate -s 0 "$cow_file" && truncate -s $((6 << 20)) "$cow_file" && losetup -c "$cow"

# --- read-only table over an unformatted COW ------------------------------
sum0=$(cow_sum)
refused "read-only table over a zeroed COW" \
	"COW device is not formatted and the table is read-only" EROFS \
	"$(rc_table "$LEN" "$cow" "$EXT" "$URI")" --readonly
check_eq "the zeroed COW device stays zeroed" "$sum0" "$(cow_sum)"

# --- I/O errors on the COW device -----------------------------------------
# under_cow <desc> <dm table of a device under the remote-cow table>
# <message>: the remote-cow table over it is refused with <message> (-EIO).
under_cow() {
	local desc=$1 table=$2 msg=$3
	if ! dmsetup create rc-te-lower --table "$table" >"$tmp/lower.out" 2>&1; then
		tap_not_ok "$desc" "cannot create the lower device: $(cat "$tmp/lower.out")"
		return 1
	fi
	refused "$desc" "$msg" EIO \
		"$(rc_table "$LEN" /dev/mapper/rc-te-lower "$EXT" "$URI")"
	dm_remove rc-te-lower
}
at_exit "dm_remove rc-te-lower"
require_dm_target flakey
sum0=$(cow_sum)
under_cow "COW device whose reads fail (dm-error)" "0 $cow_sectors error" \
	"Cannot read the COW superblock"
under_cow "zeroed COW device whose writes fail (dm-flakey error_writes)" \
	"0 $cow_sectors flakey $cow 0 0 1 1 error_writes" \
	"Cannot format the COW device (write failed)"
check_eq "the COW device under dm-flakey stays zeroed" "$sum0" "$(cow_sum)"

# --- foreign and corrupt metadata -----------------------------------------
TABLE=$(rc_table "$LEN" "$cow" "$EXT" "$URI")
check "format the COW device with a valid table" try_table "$TABLE"
dd if="$cow" of="$tmp/sb.orig" bs=4096 count=1 status=none
check_eq "superblock magic RCOW at offset 4" 52434f57 \
	"$(od -An -tx1 -j4 -N4 "$tmp/sb.orig" | tr -d ' ')"

# sb_tool <in> <out> [field=value...]: patch little-endian superblock fields
# (offsets from Documentation/remote-cow.rst) and recompute the checksum
# (crc32c of bytes 4..4095, seed ~0, no final inversion, xor 0x5ca1ab1e);
# "csum=keep" keeps the old one, "verify" only checks it.
sb_tool() {
	"$RC_TREE/selftests/progs/rcow-md-edit.py" sb "$@"
}
check "our crc32c recomputes the kernel's superblock checksum" \
	sb_tool "$tmp/sb.orig" /dev/null verify
sum_fmt=$(cow_sum)

refused "COW formatted for another extent size" \
	"COW device was formatted with another extent size" EINVAL \
	"$(rc_table "$LEN" "$cow" 256 "$URI")"
refused "COW formatted for another device length" \
	"COW device was formatted for another device length" EINVAL \
	"$(rc_table $((LEN - 8)) "$cow" "$EXT" "$URI")"
refused "COW formatted for another base URI" \
	"COW device was formatted for another base image" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" "$URI.other")"
refused "COW formatted for a base URI it starts with" \
	"COW device was formatted for another base image" EINVAL \
	"$(rc_table "$LEN" "$cow" "$EXT" "${URI%.img}")"
check_eq "the refused COW device was not rewritten" "$sum_fmt" "$(cow_sum)"

# corrupt <desc> <message> <errno> <sb_tool edits...>: write a patched
# superblock, expect the refusal, and the COW device unchanged after it.
corrupt() {
	local desc=$1 msg=$2 err=$3 before
	shift 3
	sb_tool "$tmp/sb.orig" "$tmp/sb.bad" "$@" &&
		dd if="$tmp/sb.bad" of="$cow" bs=4096 count=1 conv=notrunc,fsync status=none
	before=$(cow_sum)
	refused "$desc" "$msg" "$err" "$TABLE"
	check_eq "$desc: COW device not rewritten" "$before" "$(cow_sum)"
}
corrupt "superblock with a bad checksum" \
	"COW superblock checksum mismatch (metadata corrupt)" EILSEQ \
	reserved=0x5a csum=keep
corrupt "superblock with a bad magic" \
	"COW device has no remote-cow superblock (zero 4 KiB to format)" EINVAL \
	magic=0x574f4353
corrupt "superblock of an unknown version" \
	"COW metadata version not supported by this module" EINVAL version=3
corrupt "superblock of version 1 (before bitmap checksums)" \
	"COW metadata version 1 is too old: this module reads version 2 only" EINVAL version=1
corrupt "superblock with inconsistent geometry (nr_extents)" \
	"COW superblock geometry is inconsistent (metadata corrupt)" EILSEQ nr_extents=65
corrupt "superblock with inconsistent geometry (data_offset)" \
	"COW superblock geometry is inconsistent (metadata corrupt)" EILSEQ data_offset=4096
image_data garbage 4096 >"$tmp/garbage"
dd if="$tmp/garbage" of="$cow" bs=4096 count=1 conv=notrunc,fsync status=none
before=$(cow_sum)
refused "COW device holding something else" \
	"COW device has no remote-cow superblock (zero 4 KiB to format)" EINVAL "$TABLE"
check_eq "the foreign content is not overwritten" "$before" "$(cow_sum)"

# --- a valid table still works ----------------------------------------------
dd if="$tmp/sb.orig" of="$cow" bs=4096 count=1 conv=notrunc,fsync status=none
check "the original superblock loads again" dm_create "$NAME" "$TABLE"
if helper_start; then tap_ok "rcow-fill starts"; else tap_not_ok "rcow-fill starts"; fi
check "the whole device equals the base" \
	cmp <(dd if="/dev/mapper/$NAME" bs=1M iflag=direct status=none) "$base"
helper_stop
check "remove the device" dm_remove "$NAME"
check_eq "the base image is unchanged" "$base_sum" "$(sha256_of "$base")"
losetup -d "$cow"
check "the module unloads" unload_module
tap_done
