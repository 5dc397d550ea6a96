#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Kernel memory per table: only the bits the map function tests stay in
# memory, as whole-device bitmaps: PRESENT and DIRTY_COMMIT's durable
# copy.  Whether a PRESENT bit is durable (for FUA writes) is told per
# bitmap block (a few bytes per block), not by a copy of PRESENT.
# WRITTEN, DIRTY_COMMIT itself and FROZEN_COMMIT live in their bitmap
# blocks on the COW device (read through dm-bufio), the bits set since
# the last metadata commit on a short list.
#
# The device is 4 GiB of 64 KiB extents (65536 extents: three bitmap
# blocks, so a whole-device bitmap is 12096 bytes, three pages from
# vmalloc, shown in /proc/vmallocinfo with its caller in the module).
# Checked, with the job sets (rcow_alloc_sets, see job-sets-freed.sh)
# left out:
# - two whole-device bitmaps of three pages, fresh, after 2000 first
#   writes in one go (more than one pending list's worth when the worker
#   takes them in one batch) and after a reload (until 4 December 2026:
#   five, then three with PRESENT's durable copy);
# - the sets read from the blocks are exact: WRITTEN and DIRTY_COMMIT as
#   runs, and the status count, before and after the reload, and with a
#   write after it; the data reads back; `remote-cow check` is clean.
# remote-cowd runs: the 128 MiB direct write reaches the target as bios
# whose boundaries need not fall on extents (with physically contiguous
# user pages, a bio's size is only page aligned), and an extent split
# between two bios takes two partial writes, the first a fault.  Without
# a helper that fault waited for ever (status "1999/65536 ... 1 absent":
# the hang of 4 December 2026, about one run in five under load).
# TIMEOUT=600
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig-kernel.sh"

require_vm
require_cmd dmsetup losetup dd cmp
tap_plan 19

NAME="rc-bitmaps-mem"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# the base: the first 32 extents
LEN=$(((4 << 30) / 512))	# the device: 4 GiB, 65536 extents
RC=$RC_TREE/tools/remote-cow

require_built "$RC" "$RC_TREE/selftests/progs/rcow-nl"
file_test_setup "$BASE_BYTES" bitmaps-in-memory
helper_start || tap_bail "remote-cowd does not start"
file_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME

# bitmaps: "<areas> <pages>" of the module's vmalloc areas but the job
# sets: the metadata's whole-device bitmaps.
bitmaps() {
	grep '\[dm_remote_cow\]' /proc/vmallocinfo | grep -v ' rcow_alloc_sets+' |
		awk '{ n++; for (i = 1; i <= NF; i++) if ($i ~ /^pages=/) p += substr($i, 7) }
		     END { print n + 0, p + 0 }'
}
id() { nl_dev_id "$NAME"; }
bitmaps_diag() { tap_diag "$(grep '\[dm_remote_cow\]' /proc/vmallocinfo)"; }

check_eq "fresh: two whole-device bitmaps of three pages" "2 6" "$(bitmaps)" ||
	bitmaps_diag

# 2000 first writes in one request (extents 10000 to 11999), 0x5a.
head -c $((EXTB * 2000)) /dev/zero | tr '\0' '\132' |
	dd of="$dev" bs=$((EXTB * 2000)) seek=$((10000 * EXTB)) iflag=fullblock \
		oflag=direct,seek_bytes status=none
check "2000 extents written in one request" extent_is 10000 90 2000
check_eq "WRITTEN read from its blocks: 10000+2000" "10000+2000" "$(nl_runs "$(id)" written)"
check_eq "DIRTY_COMMIT read from its blocks: 10000+2000" "10000+2000" \
	"$(nl_runs "$(id)" dirty-commit)"
check_eq "status: 2000 written" 2000 "$(rc_status "$NAME" written)"
check_eq "after the writes: still two bitmaps" "2 6" "$(bitmaps)" || bitmaps_diag

# Again the same extents (their bits durable: nothing to record) and one
# more, then a reload: the sets come from the blocks alone.
write_extent 10005 91
write_extent 40000 92
check_eq "a rewrite adds nothing, a new extent one run" "10000+2000 40000+1" \
	"$(nl_runs "$(id)" written)"
check "remove the table" dm_remove "$NAME"
check_eq "removed: no bitmap left" "0 0" "$(bitmaps)"
check "the same COW device again" dm_create "$NAME" "$DEV_TABLE"
check_eq "reloaded: two bitmaps" "2 6" "$(bitmaps)" || bitmaps_diag
check_eq "reloaded: WRITTEN as before" "10000+2000 40000+1" "$(nl_runs "$(id)" written)"
check_eq "reloaded: DIRTY_COMMIT as before" "10000+2000 40000+1" \
	"$(nl_runs "$(id)" dirty-commit)"
check_eq "reloaded: status 2001 written" 2001 "$(rc_status "$NAME" written)"
write_extent 65535 93
check_eq "a write after the reload: the last extent" "10000+2000 40000+1 65535+1" \
	"$(nl_runs "$(id)" written)"
check "data: extent 10005, 40000, 65535" \
	eval 'extent_is 10005 91 && extent_is 40000 92 && extent_is 65535 93 &&
	      extent_is 10006 90 1994'
cow=$(echo "$DEV_TABLE" | awk '{ print $4 }')
check "remove the table again" dm_remove "$NAME"
out=$("$RC" check "$cow" 2>&1)
rc=$?
check_eq "remote-cow check: clean (exit 0)" 0 "$rc" || tap_diag "$out"
check_eq "remote-cow check counts 2002 written" "written 2002" \
	"$(awk '$1 == "written" { print $1, $2 }' <<<"$out")"
tap_done
