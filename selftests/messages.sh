#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dmsetup message and the status lines, against Documentation/remote-cow.rst:
#
# - "hydrate start", "hydrate start <MiB/s>", "hydrate stop" are accepted;
#   the status line's hydrate field, the GET_DEVICE flags and rate, and the
#   HYDRATE_CTL events a registered helper receives follow them;
# - malformed ones (hydrate start abc / -1 / 1 2, hydrate bogus, hydrate
#   alone, an unknown verb, an empty message) fail with EINVAL, say why in
#   the kernel log and change nothing;
# - snapshot commit with no helper fails with ENOTCONN, snapshot abort
#   with no commit running with ENOENT, both with EINVAL when their
#   arguments are wrong or the URI is not an NBD one; migrate send
#   <host:port> with no helper fails with ENOTCONN, migrate finish and
#   migrate abort with no migration running with ENOENT, all of them with
#   EINVAL when their arguments are wrong (selftests/migrate-kernel.sh
#   tests a migration);
# - "dmsetup status" has the twelve documented fields with the right
#   values (extent size, present/total, written, faults in flight, helper,
#   commit idle 0/0 generation 0, migrate idle 0/0, hydrate state, rw/ro),
#   following reads, writes, a
#   waiting fault and a helper; "dmsetup table" prints the table back with
#   only the optional arguments that differ from the defaults.
# shellcheck disable=SC2119,SC2317	# helper_start: optional arguments; functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp
use_rcow_fill
tap_plan 75

NAME="rc-messages"
NAME2="rc-messages-opts"
EXT=128
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
NR=$((LEN / EXT))
NL=$RC_TREE/selftests/progs/rcow-nl

require_built "$NL"
load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" messages
tmp=$NET_WORKDIR
base=$BASE_IMG
make_cow $((BASE_BYTES + (2 << 20))) || tap_bail "no COW loop device"
cow=$COW_DEV
cow_mm=$(lsblk -dno MAJ:MIN "$cow" | tr -d ' ')
make_cow $((BASE_BYTES + (2 << 20))) || tap_bail "no COW loop device"
cow2=$COW_DEV
cow2_mm=$(lsblk -dno MAJ:MIN "$cow2" | tr -d ' ')
dev=/dev/mapper/$NAME
TABLE=$(rc_table "$LEN" "$cow" "$EXT" "file://$base")
dm_create "$NAME" "$TABLE" || tap_bail "cannot create $NAME"
ID=$("$NL" devices 2>/dev/null | sed -n "s/^dev_id=\([0-9]*\) name=$NAME .*/\1/p")
[ -n "$ID" ] || tap_bail "no dev_id for $NAME"

status() { dmsetup status "$NAME" | cut -d' ' -f4-; }
hydrate_field() { rc_status "$NAME" hydrate_state; }
nl_device() { "$NL" raw get_device dev_id:u32:"$ID" 2>&1; }

EINVAL="Invalid argument"

# --- status and table of a fresh device ---------------------------------
IDLE="$EXT 0/$NR 0 0 absent idle 0/0 0 idle 0/0 idle rw"
check_eq "status: the twelve documented fields of a fresh device" "$IDLE" "$(status)"
check_eq "status: field count" 12 "$(status | wc -w)"
check_eq "table: printed back without optional arguments" \
	"0 $LEN remote-cow $cow_mm $EXT file://$base" "$(dmsetup table "$NAME")"

# --- hydrate, no helper ------------------------------------------------
msg_ok "hydrate start" hydrate start
check_eq "status: hydrating" hydrating "$(hydrate_field)"
check "GET_DEVICE: hydrating flag and rate 0" \
	grep -q " flags=1 hydrate_rate=0" <<<"$(nl_device)"
msg_ok "hydrate stop" hydrate stop
check_eq "status: idle again" idle "$(hydrate_field)"
no_flag_no_rate() { grep -qE " flags=0( |\$)" <<<"$1" && ! grep -q hydrate_rate <<<"$1"; }
check "GET_DEVICE: no flag, no rate" no_flag_no_rate "$(nl_device)"
msg_ok "hydrate start 25" hydrate start 25
check_eq "status: hydrating at 25 MiB/s" hydrating "$(hydrate_field)"
check "GET_DEVICE: rate 25" grep -q " flags=1 hydrate_rate=25" <<<"$(nl_device)"
msg_ok "hydrate start 0 (unlimited)" hydrate start 0
check "GET_DEVICE: rate 0" grep -q " flags=1 hydrate_rate=0" <<<"$(nl_device)"
msg_ok "hydrate start 40 while hydrating" hydrate start 40

# --- malformed messages ---------------------------------------------------
msg_refused "hydrate start abc" "$EINVAL" "hydrate start: invalid rate 'abc'" hydrate start abc
msg_refused "hydrate start -1" "$EINVAL" "hydrate start: invalid rate '-1'" hydrate start -1
msg_refused "hydrate start 4294967296" "$EINVAL" "hydrate start: invalid rate '4294967296'" \
	hydrate start 4294967296
USAGE="usage: hydrate start [<MiB/s>] | hydrate stop"
msg_refused "hydrate start 1 2" "$EINVAL" "$USAGE" hydrate start 1 2
msg_refused "hydrate bogus" "$EINVAL" "$USAGE" hydrate bogus
msg_refused "hydrate alone" "$EINVAL" "$USAGE" hydrate
msg_refused "hydrate stop now" "$EINVAL" "$USAGE" hydrate stop now
msg_refused "an unknown verb" "$EINVAL" "unrecognised message 'frobnicate'" frobnicate 1
msg_refused "an empty message" "$EINVAL" "Empty message received" ""
check_eq "refused messages changed nothing: still hydrating" hydrating "$(hydrate_field)"
check "refused messages changed nothing: rate still 40" \
	grep -q " flags=1 hydrate_rate=40" <<<"$(nl_device)"
msg_ok "hydrate stop" hydrate stop

# --- snapshot and migrate (no helper: nothing starts) ----------------------
msg_refused "snapshot commit <uri> with no helper" "Transport endpoint is not connected" \
	"snapshot commit: no helper (remote-cowd) is connected to upload" \
	snapshot commit nbd://10.0.0.1:10809/new
msg_refused "snapshot abort with no commit running" "No such file or directory" \
	"snapshot abort: no commit is running" snapshot abort
msg_refused "snapshot commit to a file URI" "$EINVAL" \
	"snapshot commit: 'file:///tmp/x' is not an NBD URI" snapshot commit file:///tmp/x
msg_refused "migrate send <host:port> with no helper" "Transport endpoint is not connected" \
	"migrate send: no helper (remote-cowd) is connected" migrate send 10.0.0.2:7000
msg_refused "migrate finish with no migration" "No such file or directory" \
	"migrate finish: no migration is running" migrate finish
msg_refused "migrate abort with no migration" "No such file or directory" \
	"migrate abort: no migration is running" migrate abort
msg_refused "snapshot commit without a URI" "$EINVAL" \
	"usage: snapshot commit <nbd_uri> [since-last]" snapshot commit
msg_refused "snapshot commit with two URIs" "$EINVAL" \
	"usage: snapshot commit <nbd_uri> [since-last]" snapshot commit nbd://a/b nbd://c/d
msg_refused "snapshot abort with an argument" "$EINVAL" \
	"usage: snapshot abort" snapshot abort now
msg_refused "migrate send without a destination" "$EINVAL" \
	"usage: migrate send <host:port>" migrate send
msg_refused "migrate finish with an argument" "$EINVAL" \
	"usage: migrate send <host:port> | migrate finish [postcopy] | migrate abort" migrate finish now
msg_refused "snapshot alone" "$EINVAL" "unrecognised message 'snapshot'" snapshot
msg_refused "snapshot with an unknown verb" "$EINVAL" "unrecognised message 'snapshot'" \
	snapshot take
msg_refused "migrate with an unknown verb" "$EINVAL" "unrecognised message 'migrate'" \
	migrate start 10.0.0.2:7000
check_eq "status after all of them: as fresh" "$IDLE" "$(status)"

# --- HYDRATE_CTL events to a registered helper ------------------------------
"$NL" listen 3 20000 >"$tmp/events" 2>&1 &
lpid=$!
at_exit "kill $lpid 2>/dev/null"
helper_is() { [ "$(dm_status_field "$NAME" 5)" = "$1" ]; }
check "a listener registers (status: connected)" wait_until 10 helper_is connected
msg_ok "hydrate start 7 with a helper" hydrate start 7
msg_ok "hydrate stop with a helper" hydrate stop
msg_ok "hydrate start with a helper" hydrate start
wait_pid "$lpid" 30
check_eq "the helper got the three HYDRATE_CTL events" \
	"HYDRATE_CTL dev_id=$ID start rate=7
HYDRATE_CTL dev_id=$ID stop
HYDRATE_CTL dev_id=$ID start rate=0" "$(cat "$tmp/events")"
msg_ok "hydrate stop" hydrate stop

# --- status follows I/O ---------------------------------------------------------
dd if="$dev" of="$tmp/r0" bs="$EXTB" skip=3 count=1 iflag=direct status=none &
rpid=$!
at_exit "kill $rpid 2>/dev/null"
faults_is() { [ "$(dm_status_field "$NAME" 4)" = "$1" ]; }
check "a read of a missing extent with no helper: 1 fault in flight" \
	wait_until 10 faults_is 1
check_eq "status with the fault waiting" "$EXT 0/$NR 0 1 absent idle 0/0 0 idle 0/0 idle rw" \
	"$(status)"
if helper_start; then tap_ok "rcow-fill starts"; else tap_not_ok "rcow-fill starts"; fi
wait_pid "$rpid" 30
check_eq "the read completes once the helper is there" 0 "$?"
check "it read the base's extent 3" cmp "$tmp/r0" \
	<(dd if="$base" bs="$EXTB" skip=3 count=1 status=none)
check_eq "status: 1 present, connected" "$EXT 1/$NR 0 0 connected idle 0/0 0 idle 0/0 idle rw" \
	"$(status)"
image_data msg-w 4096 >"$tmp/w"
check "a 4 KiB write into missing extent 5" \
	dd if="$tmp/w" of="$dev" bs=4096 seek=$((5 * EXTB / 4096 + 1)) oflag=direct \
	conv=notrunc status=none
check "a whole-extent write to missing extent 7" \
	dd if=/dev/zero of="$dev" bs="$EXTB" seek=7 count=1 oflag=direct \
	conv=notrunc status=none
check "a 4 KiB write into present extent 3" \
	dd if="$tmp/w" of="$dev" bs=4096 seek=$((3 * EXTB / 4096)) oflag=direct \
	conv=notrunc status=none
check_eq "status: 3 present, 3 written" "$EXT 3/$NR 3 0 connected idle 0/0 0 idle 0/0 idle rw" \
	"$(status)"
check "read the whole device" dd if="$dev" of=/dev/null bs=1M iflag=direct status=none
check_eq "status: every extent present" "$EXT $NR/$NR 3 0 connected idle 0/0 0 idle 0/0 idle rw" \
	"$(status)"
# Streaming ends by itself once every extent is present.
kmsg_mark
msg_ok "hydrate start on a fully present device" hydrate start
hydrate_is_idle() { [ "$(hydrate_field)" = idle ]; }
check "hydrate state back to idle by itself" wait_until 10 hydrate_is_idle
expect_dmesg "kernel logs 'hydrated: all $NR extents are present'" \
	"remote-cow: $NAME: hydrated: all $NR extents are present"
helper_stop
check_eq "status: helper absent after it stopped" absent "$(dm_status_field "$NAME" 5)"

# --- ro metadata mode -------------------------------------------------------------
check "remove $NAME" dm_remove "$NAME"
check "a read-only table over the formatted COW" dmsetup create "$NAME" --readonly \
	--table "$TABLE"
check_eq "status: ro, counters kept" "$EXT $NR/$NR 3 0 absent idle 0/0 0 idle 0/0 idle ro" \
	"$(status)"
check "remove the read-only device" dm_remove "$NAME"

# --- table line with optional arguments -------------------------------------------
tbl() { dmsetup table "$NAME2" | cut -d' ' -f4-; }
# with_opts <desc> <expected table tail> <opt args...>
with_opts() {
	local desc=$1 want=$2
	shift 2
	if ! dmsetup create "$NAME2" --table "$(rc_table "$LEN" "$cow2" "$EXT" "file://$base" "$@")" \
		>"$tmp/create.out" 2>&1; then
		tap_not_ok "$desc" "create failed: $(cat "$tmp/create.out")"
		return
	fi
	check_eq "$desc" "$cow2_mm $EXT file://$base$want" "$(tbl)"
	dm_remove "$NAME2"
}
at_exit "dm_remove $NAME2"
with_opts "table: defaults given explicitly are not printed" "" \
	fault_timeout 0 discard_passdown
with_opts "table: fault_timeout printed back" " 2 fault_timeout 5000" fault_timeout 5000
with_opts "table: no_discard_passdown printed back" " 1 no_discard_passdown" \
	no_discard_passdown
with_opts "table: both printed back" " 3 fault_timeout 86400000 no_discard_passdown" \
	no_discard_passdown fault_timeout 86400000
dd if=/dev/zero of="$cow2" bs=4096 count=1 conv=notrunc status=none
dmsetup create "$NAME2" --table "$(rc_table "$LEN" "$cow2" 8 "file://$base" fault_timeout 9)" \
	>/dev/null 2>&1
check_eq "status of a 4 KiB-extent device with options: 12 fields" \
	"8 0/$((LEN / 8)) 0 0 absent idle 0/0 0 idle 0/0 idle rw" \
	"$(dmsetup status "$NAME2" | cut -d' ' -f4-)"
check "remove it" dm_remove "$NAME2"
losetup -d "$cow"
losetup -d "$cow2"
check "the module unloads" unload_module
tap_done
