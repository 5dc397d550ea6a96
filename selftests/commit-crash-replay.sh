#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=1200
#
# A host crash during a snapshot commit, then the commit run again: it is
# complete and exact.
#
# The COW device of a remote-cow device is a dm-log-writes device (over a
# loop device, logging to another), so every write that reaches the COW
# device is recorded in the order it became durable.  The workload:
#
#  1. extents 0-39 written, committed in full to v1 (a qcow2 overlay over
#     the base) and waited for;
#  2. extents 20-67 written, 100-101 overwritten with zeroes, fsync, log
#     mark cr-freeze; a since-last commit to v2 (an overlay over v1) starts
#     over a slow link;
#  3. while it uploads: writes to frozen extents (60-63, held until
#     remote-cowd copies them aside) and to extents outside the commit
#     (110-113), fsync; later, once some extents are uploaded, frozen
#     extents 21-22 again, fsync; the commit ends done; extents 0-1
#     written, fsync, log mark cr-end.  The live v2 equals the device at
#     the freeze.
#
# The log is then replayed onto a fresh image at every FLUSH and FUA entry
# from cr-freeze to cr-end (the points where a power cut could leave the
# COW device), and at each point a new remote-cow device over the replayed
# image (the same base) must:
#
#  - load, with no commit running and the commit generation its
#    superblock holds (1 before the freeze's superblock write, then 2
#    started with 1 or 2 done);
#  - publish with a since-last commit, to an overlay over the last version
#    the replayed superblock calls done (v1, or v2 once commit 2's end
#    reached the disk), exactly the content the replayed device reads: the
#    frozen set of the interrupted commit and the changed set together hold
#    every extent changed since that version.
#
# The points are counted, so that the test fails when the log holds none
# inside the commit (crash between freeze and end) or none after its end.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-commit.sh"

require_vm
require_commit_env
require_cmd blockdev
tap_plan 13

NAME="rc-ccr"			# the remote-cow device of the workload
LWNAME="rc-ccr-log"		# the log-writes device under it
RNAME="rc-ccr-replay"		# a remote-cow device over a replayed COW image
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
DEV_BYTES=$((8 << 20))		# 128 extents
LEN=$((DEV_BYTES / 512))
COW_BYTES=$((DEV_BYTES + (4 << 20)))
LOG_BYTES=$((128 << 20))
LWR=$RC_TREE/selftests/progs/lw-replay

require_built "$LWR"
load_module || tap_bail "cannot load $RC_MODULE"
require_dm_target log-writes
net_test_setup 5ms 4mbit
net_serve_base "$DEV_BYTES" commit-crash-replay
helper_start || tap_bail "remote-cowd does not start"
tmp=$NET_WORKDIR

# attach <file> <bytes>: a loop device for a new zeroed file in LOOP_DEV,
# detached at exit.
LOOP_DEV=
attach() {
	rm -f "$1"
	truncate -s "$2" "$1" || return 1
	LOOP_DEV=$(losetup -f --show "$1") || return 1
	at_exit "losetup -d '$LOOP_DEV' 2>/dev/null"
}
attach "$tmp/cow.img" "$COW_BYTES" || tap_bail "cannot attach the COW image"
data_dev=$LOOP_DEV
attach "$tmp/log.img" "$LOG_BYTES" || tap_bail "cannot attach the log"
log_dev=$LOOP_DEV

at_exit "dm_remove $LWNAME"
at_exit "dm_remove $NAME"
at_exit "release_held_writes $NAME"
at_exit "dm_remove $RNAME"
if dmsetup create "$LWNAME" --table "0 $((COW_BYTES / 512)) log-writes $data_dev $log_dev" &&
	dm_create "$NAME" "$(rc_table "$LEN" "/dev/mapper/$LWNAME" "$EXT" "$(net_uri)")"; then
	tap_ok "remote-cow over dm-log-writes ($data_dev logging to $log_dev)"
else
	tap_bail "cannot create the log-writes and remote-cow devices"
fi
dev=/dev/mapper/$NAME
lw_mark() { dmsetup message "$LWNAME" 0 mark "$1"; }

# commit_wait <name> <seconds>: the commit ended; 0 when done.
commit_wait() {
	wait_until "$2" commit_ended "$1" && [ "$(commit_state "$1")" = "done" ]
}

# --- 1: v1 -------------------------------------------------------------------------
ov1=$tmp/v1.qcow2 ov2=$tmp/v2.qcow2
{ write_extents "$dev" "$EXTB" r1 0 40 && sync; } || tap_bail "cannot write"
target_overlay "$ov1" "$BASE_IMG" raw v1 || tap_bail "cannot serve overlay v1"
out=$(timeout 300 "$RC" commit "$NAME" --to "$TARGET_URI" --wait 2>&1)
check_eq "commit 1 (full) to v1: done" "0 done" "$? $(commit_state "$NAME")" || tap_diag "$out"
target_stop

# --- 2, 3: commit 2 with guest writes, logged ------------------------------------------
{ write_extents "$dev" "$EXTB" r2 20 48 && zero_extents "$dev" "$EXTB" 100 2 && sync; } ||
	tap_bail "cannot write"
sum_freeze=$(sha256_of "$dev")
lw_mark cr-freeze || tap_bail "cannot mark the log"
target_overlay "$ov2" "$ov1" qcow2 v2 || tap_bail "cannot serve overlay v2"
out=$("$RC" commit "$NAME" --to "$TARGET_URI" --since-last 2>&1) || {
	tap_not_ok "commit 2 (since-last) starts" "$out"
	tap_bail "the commit was refused"
}
total2=$(commit_total "$NAME")
check_eq "commit 2 (since-last) starts, 50 extents frozen" 50 "$total2"
wl_errors=()
write_extents "$dev" "$EXTB" r3 60 4 || wl_errors+=("writes to frozen 60-63 failed")
write_extents "$dev" "$EXTB" r3 110 4 || wl_errors+=("writes to 110-113 failed")
sync
# (wait_until counts polls, not seconds: under a loaded emulator a long
# wait for a commit that already ended would take many minutes.)
progress_or_end() { commit_progress_at_least "$1" "$2" || commit_ended "$1"; }
wait_until 120 progress_or_end "$NAME" 8 ||
	wl_errors+=("the upload does not progress: $(dmsetup status "$NAME")")
write_extents "$dev" "$EXTB" r4 21 2 || wl_errors+=("writes to frozen 21-22 failed")
sync
mid_done=$(commit_done "$NAME")
commit_wait "$NAME" 300 || wl_errors+=("commit 2 did not end done: $(dmsetup status "$NAME")")
target_stop
write_extents "$dev" "$EXTB" r5 0 2 || wl_errors+=("writes to 0-1 failed")
sync
lw_mark cr-end || wl_errors+=("cannot mark the log")
if [ ${#wl_errors[@]} -eq 0 ]; then
	tap_ok "the workload's writes complete during commit 2 ($mid_done/$total2 uploaded at the second writes)"
else
	tap_not_ok "the workload's writes complete during commit 2" "${wl_errors[@]}"
fi
check_eq "live v2 equals the device at the freeze" "$sum_freeze" \
	"$(published_sha256 "$ov2" qcow2)"
{ dm_remove "$NAME" && dm_remove "$LWNAME"; } || tap_bail "cannot remove the devices"

# --- the points ----------------------------------------------------------------------
"$LWR" list "$log_dev" >"$tmp/log.list" 2>"$tmp/lwr.err" ||
	tap_bail "lw-replay list: $(cat "$tmp/lwr.err")"
first=$(awk '$4 ~ /MARK/ && $5 == "cr-freeze" { print $1; exit }' "$tmp/log.list")
last=$(awk '$4 ~ /MARK/ && $5 == "cr-end" { print $1; exit }' "$tmp/log.list")
{ [ -n "$first" ] && [ -n "$last" ]; } ||
	tap_bail "the log lacks its marks: $(grep MARK "$tmp/log.list")"
awk -v a="$first" -v b="$last" '$1 > a && $1 < b && $4 ~ /FLUSH|FUA/ { print $1 }' \
	"$tmp/log.list" >"$tmp/all-points"
npoints=$(wc -l <"$tmp/all-points")
check "the log holds FLUSH/FUA entries between the freeze and the end ($npoints)" \
	test "$npoints" -ge 4
# Each point costs about 13 s of emulated time: MAX_POINTS of them, evenly
# spread, the first and the last always among them.
MAX_POINTS=${MAX_POINTS:-14}
awk -v n="$npoints" -v m="$MAX_POINTS" '
	BEGIN { step = (n - 1) / (m - 1); next_at = 1 }
	n <= m || NR == n { print; next }
	NR >= next_at { print; next_at += step }' "$tmp/all-points" >"$tmp/points"

net_unshape
replay_errors=()
load_errors=()
declare -A seen=()
n=0
while read -r p; do
	n=$((n + 1))
	img=$tmp/replay.img
	rm -f "$img" "$tmp"/p.qcow2
	truncate -s "$COW_BYTES" "$img"
	if ! "$LWR" replay "$log_dev" "$img" --to "$p" 2>"$tmp/lwr.err"; then
		replay_errors+=("point $p: lw-replay: $(cat "$tmp/lwr.err")")
		continue
	fi
	gens=$("$RC" dump "$img" 2>/dev/null |
		awk '$1 == "commit_started" { s = $2 } $1 == "commit_done" { d = $2 }
		     END { print s "/" d }')
	case $gens in
	1/1 | 2/1) backing=$ov1 ;;
	2/2) backing=$ov2 ;;
	*)
		load_errors+=("point $p: commit generations started/done $gens, want 1/1, 2/1 or 2/2")
		continue
		;;
	esac
	seen[$gens]=$((${seen[$gens]:-0} + 1))
	rloop=$(losetup -f --show "$img") || { load_errors+=("point $p: losetup"); continue; }
	if ! dm_create "$RNAME" "$(rc_table "$LEN" "$rloop" "$EXT" "$(net_uri)")"; then
		load_errors+=("point $p ($gens): the replayed COW device does not load")
		losetup -d "$rloop"
		continue
	fi
	st="$(commit_state "$RNAME") $(commit_gen "$RNAME")"
	[ "$st" = "idle ${gens%/*}" ] ||
		load_errors+=("point $p ($gens): after the load commit_state/gen is '$st', want 'idle ${gens%/*}'")
	want=$(sha256_of "/dev/mapper/$RNAME")
	if ! target_overlay "$tmp/p.qcow2" "$backing" qcow2 "p$p"; then
		replay_errors+=("point $p: cannot serve the overlay")
	elif ! out=$(timeout 300 "$RC" commit "$RNAME" --to "$TARGET_URI" --since-last --wait 2>&1); then
		replay_errors+=("point $p ($gens): the commit again fails: $out")
		target_stop
	else
		target_stop
		got=$(published_sha256 "$tmp/p.qcow2" qcow2)
		[ "$got" = "$want" ] ||
			replay_errors+=("point $p ($gens): the version published after the crash differs from the device ($(commit_total "$RNAME") extents uploaded)")
	fi
	dm_remove "$RNAME"
	losetup -d "$rloop"
done <"$tmp/points"
tap_diag "points: $n of $npoints (entries $first-$last); superblock started/done: 1/1 at ${seen[1/1]:-0}, 2/1 at ${seen[2/1]:-0}, 2/2 at ${seen[2/2]:-0}"

check "crash points inside commit 2 (started, not done): ${seen[2/1]:-0}" \
	test "${seen[2/1]:-0}" -ge 2
check "crash points after its end reached the disk: ${seen[2/2]:-0}" \
	test "${seen[2/2]:-0}" -ge 1
if [ ${#load_errors[@]} -eq 0 ]; then
	tap_ok "every replayed COW device loads with no commit running, its generation"
else
	tap_not_ok "every replayed COW device loads with no commit running, its generation" \
		"${load_errors[@]:0:6}"
fi
if [ ${#replay_errors[@]} -eq 0 ]; then
	tap_ok "at every point, a since-last commit run again publishes exactly the device ($n points)"
else
	tap_not_ok "at every point, a since-last commit run again publishes exactly the device" \
		"${#replay_errors[@]} of $n points wrong" "${replay_errors[@]:0:6}"
fi

# The whole log replayed is the COW device as the workload left it.
rm -f "$tmp/replay.img"
truncate -s "$COW_BYTES" "$tmp/replay.img"
if "$LWR" replay "$log_dev" "$tmp/replay.img" 2>"$tmp/lwr.err" &&
	cmp "$tmp/replay.img" "$tmp/cow.img" >"$tmp/cmp.out" 2>&1; then
	tap_ok "the whole log replayed equals the COW device"
else
	tap_not_ok "the whole log replayed equals the COW device" "$(cat "$tmp/lwr.err" "$tmp/cmp.out")"
fi
check_eq "the base is unchanged" "$BASE_SUM" "$(sha256_of "$BASE_IMG")"
helper_stop
check_eq "remote-cowd: no fill errors" 0 "$(helper_stat fill_errors)"
tap_done
