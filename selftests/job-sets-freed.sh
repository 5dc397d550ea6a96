#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The in-memory sets of a snapshot commit (upload, held) and of a live
# migration (change set, round set), one bit per extent each, exist only
# while their job may use them: the worker gives them back once the job is
# over (done, failed or aborted), so a table that ran a commit or a
# migration keeps no more kernel memory than one that never did.  An
# "rcow-nl session" plays the helper.
#
# The device is 4 GiB of 64 KiB extents (65536 extents, 8 KiB per set, so
# the sets are vmalloc'ed and /proc/vmallocinfo shows them with their
# caller, rcow_alloc_sets).  Checked:
# - no set before any job; two while a commit uploads; none once it
#   failed (snapshot abort); two while a migration copies; none once it
#   was aborted;
# - a second migration gets new sets with the right content (the change
#   set is WRITTEN again, a write during it is in it), a round and its mark
#   work, finish, the last round, MIGRATE_END 0: done, and the sets go
#   while the device stays fenced (writes fail, reads go on).
# TIMEOUT=300
# shellcheck disable=SC2317	# functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig-kernel.sh"

require_vm
require_cmd dmsetup losetup dd cmp
tap_plan 22

NAME="rc-job-sets"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# the base: the first 32 extents
LEN=$(((4 << 30) / 512))	# the device: 4 GiB, 65536 extents
NL=$RC_TREE/selftests/progs/rcow-nl
DEST="10.99.0.2:7000"
URI="nbd://10.99.0.1:10809/new"

require_built "$NL"
file_test_setup "$BASE_BYTES" job-sets-freed
file_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
ID=$(nl_dev_id "$NAME")
[ -n "$ID" ] || tap_bail "no dev_id for $NAME"

# sets: how many vmalloc areas rcow_alloc_sets() holds now.
sets() { grep -c ' rcow_alloc_sets+' /proc/vmallocinfo; }
sets_are() { [ "$(sets)" = "$1" ]; }
commit_state() { dmsetup status "$NAME" | awk '{ print $9 }'; }

write_extent 0 65
write_extent 40000 66
nl_session_helper "$NAME"
check_eq "no job yet: no sets" 0 "$(sets)"

# --- a snapshot commit: two sets while it uploads, none once it failed ------
msg_ok "snapshot commit" snapshot commit "$URI"
check_eq "uploading: the commit's two sets" "uploading 2" "$(commit_state) $(sets)"
msg_ok "snapshot abort" snapshot abort
check "failed: its sets given back" wait_until 10 sets_are 0
drain_events

# --- a migration aborted -----------------------------------------------------
msg_ok "migrate send" migrate send "$DEST"
check_eq "copying: the migration's two sets" "copying 0/0 2" "$(migrate_status) $(sets)"
msg_ok "migrate abort" migrate abort
check "aborted: its sets given back" wait_until 10 sets_are 0
drain_events

# --- a migration to the end: new sets, right content, given back when done --
msg_ok "migrate send again" migrate send "$DEST"
check "the helper hears MIGRATE_START" event "$(ev MIGRATE_START 1 0 0 0)"
check_eq "the new change set is WRITTEN: 0, 40000" "0+1 40000+1" \
	"$(nl_runs "$ID" dirty-migrate)"
round
check "round 1: 2 extents" event "$(ev MIGRATE_ROUND 1 1 2 0)"
write_extent 7 67
check_eq "a write during copying is in the change set" "7+1" "$(nl_runs "$ID" dirty-migrate)"
mark 1 0 1
mark 1 40000 1
msg_ok "migrate finish" migrate finish
check "the helper hears MIGRATE_FINISH" event "$(ev MIGRATE_FINISH 3 1 2 2)"
round
check "the last round: extent 7" event "$(ev MIGRATE_ROUND 3 2 3 2)"
mark 2 7 1
end_migration 0
check_eq "MIGRATE_END 0: done" "0 done 3/3" "$SESS_RC $(migrate_status)"
check "done: its sets given back" wait_until 10 sets_are 0
check "done: writes still fail (fenced)" write_fails 1
check "reads go on: extent 0 as written" extent_is 0 65
tap_done
