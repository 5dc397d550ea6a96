#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel side of a live migration's source driven by an "rcow-nl
# session" playing the helper (migrate-kernel, migrate-mirror-kernel).
# Sourced after lib.sh; the test sets NAME (dm name), ID (its netlink
# id), DEST (the HOST:PORT of migrate send), dev (/dev/mapper/NAME) and
# EXTB (extent bytes), and starts the session (nl_session_helper).
# shellcheck disable=SC2154	# NAME, ID, DEST, dev, EXTB: set by the test

# migrate_status: "<state> <done>/<total>" from the status line.
migrate_status() { dmsetup status "$NAME" | awk '{ print $12, $13 }'; }
migrate_is() { [ "$(migrate_status)" = "$1" ]; }
round() { sess raw migrate_round "dev_id:u32:$ID"; }
# mirror_round: MIGRATE_ROUND with FLAGS RCOW_MIGRATE_F_MIRROR.
mirror_round() { sess raw migrate_round "dev_id:u32:$ID" flags:u32:1; }
mark() {	# mark <round> <first> <count>
	sess raw migrate_mark "dev_id:u32:$ID" "migrate_round:u64:$1" \
		"first_extent:u64:$2" "extent_count:u32:$3"
}
end_migration() {	# end_migration <status> [message]
	local msg=()
	[ -z "${2:-}" ] || msg=("message:str:$2")
	sess raw migrate_end "dev_id:u32:$ID" "status:u32:$1" "${msg[@]}"
}
# event <text>: the next event the session hears is this one.
event() { sess listen 1 10000; [ "$SESS_RC" = 0 ] && [ "$SESS_OUT" = "$1" ]; }
ev() {	# ev <CMD> <state> <round> <total> <done>: the text of an event
	echo "$1 dev_id=$ID state=$2 round=$3 total=$4 done=$5 target=$DEST"
}
# drain_events: what the session was sent and the test does not look at.
drain_events() { for _ in 1 2 3 4 5 6 7 8; do sess listen 1 500; [ "$SESS_RC" = 0 ] || break; done; }
# write_extent <extent> <byte>: one whole extent of that byte, direct.
write_extent() { write_byte_extent "$dev" "$EXTB" "$@"; }
extent_is() {	# extent_is <extent> <byte> [extents]
	cmp -s <(dd if="$dev" bs="$EXTB" skip="$1" count="${3:-1}" iflag=direct status=none) \
		<(bytes_of $((EXTB * ${3:-1})) "$2")
}
write_fails() { ! write_extent "$1" 99 2>/dev/null; }
