#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Live migration's throttle (delay-doubling), the kernel side, with an
# "rcow-nl session" playing the helper, against Documentation/remote-cow.rst
# ("Live migration (source)", the throttle) and the MIGRATE_ROUND text of
# the uapi header:
#
# - MIGRATE_ROUND with MIGRATE_DELAY_MS while copying slows every write
#   down: it completes to the guest that long after it reached the COW
#   device (timed: at least 8 s for a delay of 8 s; a write takes less
#   than 6 s without one, even on a loaded emulator), successfully, with
#   its data and its extent in the change set; a log line says so; a
#   delay above 10000 ms (ERANGE), or a delay on another command
#   (EINVAL), is refused;
# - a round without a delay turns the throttle off (log line), and a write
#   completes at once again;
# - a slowed write is let go at once (long before its delay) by migrate
#   abort, a suspend (which completes), a round that starts mirroring (the
#   write is not held for mirroring either), the helper's exit and migrate
#   finish; after each, writes are no longer slowed.
# TIMEOUT=600
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig-kernel.sh"

require_vm
require_cmd dmsetup losetup dd cmp timeout
tap_plan 57

NAME="rc-migrate-throttle"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
NL=$RC_TREE/selftests/progs/rcow-nl
DEST="10.99.0.2:7000"
LONG=10000			# ms: a slowed write waits this long unless let go

require_built "$NL"
file_test_setup "$BASE_BYTES" migrate-throttle
file_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
tmp=$NET_WORKDIR

ID=$(nl_dev_id "$NAME")
[ -n "$ID" ] || tap_bail "no dev_id for $NAME"

# throttle_round <ms>: MIGRATE_ROUND with that delay (0: none).
throttle_round() {
	if [ "$1" = 0 ]; then round; else
		sess raw migrate_round "dev_id:u32:$ID" "migrate_delay_ms:u32:$1"; fi
}
# slowed <extent> <byte> <done file>: a direct write of one extent in the
# background; once it completed, the file holds the time (ns); its pid in
# BGW.
slowed() {
	{ write_byte_extent "$dev" "$EXTB" "$1" "$2" && date +%s%N > "$3"; } &
	BGW=$!
	at_exit "kill $BGW 2>/dev/null"
}
still_waits() { sleep 1; test ! -e "$1"; }
# event_is <CMD> <state> [round]: the next event, whatever its counts.
event_is() {
	sess listen 1 10000
	[ "$SESS_RC" = 0 ] &&
		case $SESS_OUT in "$1 dev_id=$ID state=$2 round=${3:-}"*) ;; *) false ;; esac
}
# write_ms <extent> <byte>: one whole-extent direct write; prints its ms.
write_ms() {
	local t0 t1
	t0=$(date +%s%N)
	write_byte_extent "$dev" "$EXTB" "$1" "$2" || return 1
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}
# slowed_start <extent> <byte>, then an action, then slowed_gone <desc>: a
# write slowed down by LONG ms, let go by the action long before: it
# completed less than LONG ms after it started (left alone, it completes
# LONG ms after it reached the COW device, so later than that).
slowed_start() {
	SW_FILE=$tmp/w$1.$2
	SW_T0=$(date +%s%N)
	slowed "$1" "$2" "$SW_FILE"
	SW=$BGW
	check "a write to extent $1 is not complete after 1 s" still_waits "$SW_FILE"
}
slowed_gone() {	# slowed_gone <desc>
	local ms
	wait_pid "$SW" 30
	check_eq "$1: the slowed write completes, successfully" 0 "$?"
	ms=$((($(cat "$SW_FILE" 2>/dev/null || echo 0) - SW_T0) / 1000000))
	check "... let go: it took $ms ms, less than its $LONG ms delay" \
		test "$ms" -ge 0 -a "$ms" -lt "$LONG"
}

for e in 0 1 2 3 4 5 6 7; do write_extent "$e" $((65 + e)); done
nl_session_helper "$NAME"
msg_ok "migrate send $DEST" migrate send "$DEST"
check "MIGRATE_START" event "$(ev MIGRATE_START 1 0 0 0)"
round
check "round 1: the 8 written extents" event "$(ev MIGRATE_ROUND 1 1 8 0)"
mark 1 0 32

# --- bad input ----------------------------------------------------------------------
sess_refused "a delay above 10000 ms" ERANGE raw migrate_round "dev_id:u32:$ID" \
	migrate_delay_ms:u32:10001
sess_refused "a delay on MIGRATE_MARK" EINVAL raw migrate_mark "dev_id:u32:$ID" \
	migrate_round:u64:1 first_extent:u64:0 extent_count:u32:1 migrate_delay_ms:u32:5
drain_events

# --- a delay slows writes down ------------------------------------------------------
kmsg_mark
throttle_round 8000
check "round 2 with an 8000 ms delay" event "$(ev MIGRATE_ROUND 1 2 8 8)"
expect_dmesg "log: throttled" "migration to $DEST throttled: a write completes 8000 ms late"
ms=$(write_ms 9 130)
check "a write completes 8000 ms late (took ${ms:-?} ms)" test "${ms:-0}" -ge 7950
check "... extent 9 reads back the write" extent_is 9 130
check_eq "... and is in the change set" "9+1" "$(nl_runs "$ID" dirty-migrate)"
check_eq "status: still copying" "copying 8/8" "$(migrate_status)"

kmsg_mark
throttle_round 0
check "round 3 without a delay" event "$(ev MIGRATE_ROUND 1 3 9 8)"
expect_dmesg "log: throttle off" "migration to $DEST: throttle off"
mark 3 0 32
ms=$(write_ms 10 131)
check "no delay: a write is not slowed (took ${ms:-?} ms)" test "${ms:-99999}" -lt 6000

# --- migrate abort lets a slowed write go -------------------------------------------
throttle_round $LONG
check "round 4 with a $LONG ms delay" event "$(ev MIGRATE_ROUND 1 4 10 9)"
slowed_start 11 132
msg_ok "migrate abort with a write slowed" migrate abort
slowed_gone "abort"
check "... extent 11 reads back the write" extent_is 11 132
check_eq "status: idle" "idle 0/0" "$(migrate_status)"
drain_events

# --- a suspend lets it go; after the resume writes are not slowed --------------------
msg_ok "migrate send again" migrate send "$DEST"
check "MIGRATE_START" event "$(ev MIGRATE_START 1 0 0 0)"
throttle_round $LONG
check "round 1 with a delay" event_is MIGRATE_ROUND 1 1
slowed_start 12 133
check "a suspend completes with a write slowed" timeout 8 dmsetup suspend "$NAME"
slowed_gone "suspend"
check "resume" dmsetup resume "$NAME"
check "... extent 12 reads back the write" extent_is 12 133
ms=$(write_ms 13 134)
check "after the resume a write is not slowed (took ${ms:-?} ms)" test "${ms:-99999}" -lt 6000

# --- a round that mirrors lets it go ------------------------------------------------
drain_events
throttle_round $LONG
check "round 2 with a delay" event_is MIGRATE_ROUND 1 2
slowed_start 14 135
mirror_round
check "round 3 mirroring" event_is MIGRATE_ROUND 2 3
slowed_gone "mirroring"
check "... extent 14 reads back the write" extent_is 14 135
mark 3 0 32
msg_ok "migrate abort (mirroring)" migrate abort
drain_events

# --- the helper's exit lets it go ---------------------------------------------------
msg_ok "migrate send again" migrate send "$DEST"
check "MIGRATE_START" event "$(ev MIGRATE_START 1 0 0 0)"
throttle_round $LONG
check "round 1 with a delay" event_is MIGRATE_ROUND 1 1
slowed_start 15 136
nl_session_stop
slowed_gone "the helper's exit"
check "... extent 15 reads back the write" extent_is 15 136
ms=$(write_ms 16 137)
check "no helper: a write is not slowed (took ${ms:-?} ms)" test "${ms:-99999}" -lt 6000

# --- migrate finish lets it go ------------------------------------------------------
nl_session_helper "$NAME"
check "the new helper hears MIGRATE_START" event_is MIGRATE_START 1 1
throttle_round $LONG
check "round 2 with a delay" event_is MIGRATE_ROUND 1 2
slowed_start 17 138
msg_ok "migrate finish with a write slowed" migrate finish
slowed_gone "finish"
check "... extent 17 reads back the write" extent_is 17 138
check "MIGRATE_FINISH" event_is MIGRATE_FINISH 3 2
msg_ok "migrate abort" migrate abort
nl_session_stop
tap_done
