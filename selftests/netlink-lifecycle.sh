#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The lifecycle rules of the netlink channel and of the table:
#
#  - device ids are never reused while the module is loaded (a removed
#    device's id is not the next one's), and fault cookies are unique
#    across devices (two devices' first faults do not share cookie 1);
#  - a table loaded but not resumed is listed as inactive (flag 0x4),
#    refuses HYDRATE (EAGAIN) and sends no FAULT; once resumed it does;
#  - a read-only table (dmsetup --readonly) never writes the COW device:
#    reads of present extents work, reads of missing extents fail with
#    EIO and no fault, HYDRATE is refused (EROFS), the COW device's write
#    counter does not move;
#  - "fault_timeout <ms>" changes the timeout at run time: a read waiting
#    forever for an absent helper fails with EIO soon after the message,
#    the table line shows the new value, bad values are refused; and a
#    flushing suspend that waits for a helper that never answers completes
#    once the message is sent (the admin's way out without a reload);
#  - a helper that does not answer QUIESCE within 10 s leaves the COW
#    device fenced: the table does not resume until the helper is gone.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup dd cmp
NL=$RC_TREE/selftests/progs/rcow-nl
require_built "$NL"
tap_plan 35

EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))

load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" netlink-lifecycle
tmp=$NET_WORKDIR
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
cowa=$COW_DEV
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
cowb=$COW_DEV
table() { rc_table "$LEN" "$1" "$EXT" "file://$BASE_IMG" "${@:2}"; }
# dev_line <name>: the device's line in the netlink dump (the live one
# first when a name has two tables).
dev_line() { "$NL" devices 2>/dev/null | grep " name=$1 "; }
dev_id() { dev_line "$1" | head -n 1 | sed -n 's/^dev_id=\([0-9]*\) .*/\1/p'; }
at_exit "dm_remove rc-lc-a"
at_exit "dm_remove rc-lc-b"

# --- ids and cookies ---------------------------------------------------------
dm_create rc-lc-a "$(table "$cowa")" || tap_bail "cannot create rc-lc-a"
id1=$(dev_id rc-lc-a)
dm_remove rc-lc-a
dm_create rc-lc-a "$(table "$cowa")" || tap_bail "cannot create rc-lc-a again"
id2=$(dev_id rc-lc-a)
check "a new device does not get the id of a removed one ($id1 then $id2)" \
	test -n "$id1" -a -n "$id2" -a "${id2:-0}" -gt "${id1:-0}"
dm_create rc-lc-b "$(table "$cowb")" || tap_bail "cannot create rc-lc-b"
idb=$(dev_id rc-lc-b)
check_eq "HYDRATE extent 0 of rc-lc-a with no helper" queued=1 "$("$NL" hydrate "$id2" 0 1 2>&1)"
check_eq "HYDRATE extent 0 of rc-lc-b with no helper" queued=1 "$("$NL" hydrate "$idb" 0 1 2>&1)"
ev=$("$NL" listen 2 5000 2>&1)
tap_diag "$ev"
cookies=$(sed -n 's/^FAULT .* cookie=\([0-9]*\)$/\1/p' <<<"$ev" | sort -u | wc -l)
check_eq "the two devices' faults have two different cookies" 2 "$cookies"

# --- a table loaded, not resumed ----------------------------------------------
dm_remove rc-lc-b
check "create rc-lc-b without a table" dmsetup create rc-lc-b --notable
check "load its table, not resumed" dmsetup load rc-lc-b --table "$(table "$cowb")"
line=$(dev_line rc-lc-b)
tap_diag "$line"
flags=$(sed -n 's/.* flags=\(0x[0-9a-f]*\).*/\1/p' <<<"$line")
check "the dump lists it inactive (flags $flags has 0x4)" test $((${flags:-0} & 4)) -eq 4
idb=$(sed -n 's/^dev_id=\([0-9]*\) .*/\1/p' <<<"$line")
out=$("$NL" hydrate "${idb:-0}" 0 4 2>&1)
check "HYDRATE of the inactive table is refused with EAGAIN" \
	grep -q "^error: EAGAIN" <<<"$out"
out=$("$NL" listen 5 1500 2>&1)
check "no FAULT goes out for it" test -z "$(grep "^FAULT dev_id=${idb:-0} " <<<"$out")"
check "resume it" dmsetup resume rc-lc-b
flags=$(dev_line rc-lc-b | sed -n 's/.* flags=\(0x[0-9a-f]*\).*/\1/p')
check "resumed, it is no longer inactive (flags $flags)" test $((${flags:-4} & 4)) -eq 0
check_eq "HYDRATE of the resumed table queues 4 faults" queued=4 \
	"$("$NL" hydrate "${idb:-0}" 0 4 2>&1)"
# A reload: the new table is inactive until resumed, the old one is not.
check "load a second table for rc-lc-b (reload, not resumed)" \
	dmsetup load rc-lc-b --table "$(table "$cowb")"
check_eq "the dump lists the live and the loaded table" "0x0 0x4" \
	"$(dev_line rc-lc-b | sed -n 's/.* flags=\(0x[0-9a-f]*\).*/\1/p' | sort | xargs)"
check "clear the loaded table" dmsetup clear rc-lc-b

# --- read-only table --------------------------------------------------------------
# (Extent 0 has a fault outstanding from above: use 4-7.)
check "whole-extent writes make extents 4-7 present on rc-lc-a" \
	dd if=/dev/urandom of=/dev/mapper/rc-lc-a bs="$EXTB" seek=4 count=4 oflag=direct conv=fsync status=none
dd if=/dev/mapper/rc-lc-a of="$tmp/ext4-7" bs="$EXTB" skip=4 count=4 iflag=direct status=none
dm_remove rc-lc-a
check "create rc-lc-a read-only over the same COW device" \
	dmsetup create rc-lc-a --readonly --table "$(table "$cowa")"
loopa=$(basename "$cowa")
writes_before=$(awk '{ print $5 }' "/sys/block/$loopa/stat")
check "read-only: present extents read back" \
	cmp "$tmp/ext4-7" <(dd if=/dev/mapper/rc-lc-a bs="$EXTB" skip=4 count=4 iflag=direct status=none)
out=$(dd if=/dev/mapper/rc-lc-a of=/dev/null bs="$EXTB" skip=8 count=1 iflag=direct 2>&1)
check "read-only: a read of a missing extent fails with EIO" \
	grep -q "Input/output error" <<<"$out"
check_eq "read-only: no fault is queued" 0 "$(dm_status_field rc-lc-a 4)"
out=$("$NL" hydrate "$(dev_id rc-lc-a)" 8 4 2>&1)
check "read-only: HYDRATE is refused with EROFS" grep -q "^error: EROFS" <<<"$out"
sleep 2
check_eq "read-only: nothing was written to the COW device" "$writes_before" \
	"$(awk '{ print $5 }' "/sys/block/$loopa/stat")"
dm_remove rc-lc-a

# --- fault_timeout at run time -----------------------------------------------------
dm_create rc-lc-a "$(table "$cowa")" || tap_bail "cannot create rc-lc-a"
dd if=/dev/mapper/rc-lc-a of=/dev/null bs="$EXTB" skip=10 count=1 iflag=direct \
	status=none 2>"$tmp/rd.err" &
rd=$!
at_exit "kill -KILL $rd 2>/dev/null"
sleep 2
check "the read of a missing extent waits (no helper, fault_timeout 0)" kill -0 "$rd"
check_fails "fault_timeout abc is refused" dmsetup message rc-lc-a 0 fault_timeout abc
check_fails "fault_timeout above 86400000 is refused" \
	dmsetup message rc-lc-a 0 fault_timeout 86400001
check "fault_timeout 500 by message" dmsetup message rc-lc-a 0 fault_timeout 500
wait_pid "$rd" 10
rc=$?
check "the waiting read fails with EIO soon after" \
	test "$rc" -ne 0 -a "$rc" -ne 124 -a -n "$(grep 'Input/output error' "$tmp/rd.err")"
check "the table line shows fault_timeout 500" \
	grep -q " 2 fault_timeout 500$" <<<"$(dmsetup table rc-lc-a)"
check "fault_timeout 0 by message" dmsetup message rc-lc-a 0 fault_timeout 0

# A flushing suspend waits for a registered helper that never answers; the
# message lets it complete.  That helper then does not answer QUIESCE
# either: after 10 s the COW device is fenced, no resume until the helper
# is gone.
"$NL" register 600 >/dev/null 2>&1 &
reg=$!
at_exit "kill $reg 2>/dev/null"
helper_is() { [ "$(dm_status_field rc-lc-a 5)" = "$1" ]; }
wait_until 10 helper_is connected
dd if=/dev/mapper/rc-lc-a of=/dev/null bs="$EXTB" skip=12 count=1 iflag=direct \
	status=none 2>/dev/null &
at_exit "kill -KILL $! 2>/dev/null"
sleep 1
dmsetup suspend rc-lc-a &
sus=$!
at_exit "kill -KILL $sus 2>/dev/null"
sleep 3
check "a flushing suspend waits for the stuck helper" kill -0 "$sus"
kmsg_mark
dmsetup message rc-lc-a 0 fault_timeout 200
wait_pid "$sus" 40
check_eq "after fault_timeout 200 by message the suspend completes" 0 "$?"
expect_dmesg "the helper did not answer QUIESCE: the COW device is fenced" \
	"rc-lc-a: helper did not stop filling within 10000 ms: COW device .* fenced"
check_fails "a fenced COW device does not resume" dmsetup resume rc-lc-a
kill "$reg" 2>/dev/null
check "the helper gone, status absent" wait_until 10 helper_is absent
check "then it resumes" dmsetup resume rc-lc-a
tap_done
