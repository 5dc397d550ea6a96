#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=600
#
# remote-cowd killed (SIGKILL) in the middle of a commit's upload, guest
# writes to frozen extents while it is down, remote-cowd started again:
#
# - a 32 MiB device, 24 MiB of it written (extents 64-447), committed to a
#   qcow2 overlay over a 4 Mbit/s link (about 50 s of upload); remote-cowd
#   with spool_max 4M, so that its copies ahead of the guest (up to half
#   of it, 31 extents not yet uploaded) leave most frozen extents held;
# - right after the freeze, writes to four frozen extents near the end
#   (444-447): they are preserved (copied aside) before they go on, long
#   before their upload;
# - once some extents are uploaded, remote-cowd is killed; the kernel keeps
#   the commit uploading, and its sets say which frozen extents are
#   uploaded, which preserved but not uploaded, which held;
# - with no helper, a write to an uploaded extent and one to a preserved
#   extent complete at once; a write to a held extent waits;
# - remote-cowd started again resumes the commit: the held write
#   completes, the commit ends done, and the overlay equals the device at
#   the freeze; the device holds the writes made meanwhile.
#
# Every wait is bounded; a write still held at the end is released by
# aborting the commit (the cleanup), so that the test cannot hang.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-commit.sh"

require_vm
require_commit_env
tap_plan 16

NAME="rc-commit-restart"
EXT=128
EXTB=$((EXT * 512))
DEV_BYTES=$((32 << 20))
LEN=$((DEV_BYTES / 512))
W_FIRST=64
W_COUNT=384			# extents 64..447
EARLY_FIRST=444			# frozen extents written right after the freeze
EARLY_COUNT=4

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 20ms 4mbit
net_serve_base "$DEV_BYTES" commit-daemon-restart
cfg=$NET_WORKDIR/remote-cowd.conf
commit_config "$cfg" "spool_max = 4M"
net_test_device "$NAME" "$LEN" "$EXT" --config "$cfg"
dev=/dev/mapper/$NAME
at_exit "release_held_writes $NAME"

write_extents "$dev" "$EXTB" frozen "$W_FIRST" "$W_COUNT" || tap_bail "cannot write the extents"
sync
before=$(sha256_of "$dev")
target_overlay "$NET_WORKDIR/v1.qcow2" "$BASE_IMG" raw v1 || tap_bail "cannot serve the overlay"

# --- freeze, early writes ---------------------------------------------------------
kmsg_mark
out=$("$RC" commit "$NAME" --to "$TARGET_URI" 2>&1) || {
	tap_not_ok "the commit starts" "$out"
	tap_bail "the commit was refused"
}
tap_ok "the commit starts ($out)"
write_extents "$dev" "$EXTB" early "$EARLY_FIRST" "$EARLY_COUNT" &
early=$!
bg_ended "$early" 30
check_eq "writes to frozen extents right after the freeze complete (preserved first)" 0 "$?"

check "some extents are uploaded, not all" wait_until 60 commit_progress_at_least "$NAME" 32
done_at_kill=$(commit_done "$NAME")
helper_kill
tap_diag "remote-cowd killed at $done_at_kill/$(commit_total "$NAME") uploaded"
helper_is_absent() { [ "$(rc_status "$NAME" helper)" = absent ]; }
check "the kernel sees the helper gone" wait_until 5 helper_is_absent
check_eq "the commit is still uploading" uploading "$(commit_state "$NAME")"

# --- what the kernel holds ---------------------------------------------------------
seq "$W_FIRST" $((W_FIRST + W_COUNT - 1)) >"$NET_WORKDIR/frozen"
set_extents "$NAME" "$RCOW_BITMAP_COMMIT_UPLOAD" >"$NET_WORKDIR/upload" ||
	tap_diag "cannot read the COMMIT_UPLOAD set"
set_extents "$NAME" "$RCOW_BITMAP_COMMIT_HELD" >"$NET_WORKDIR/held" ||
	tap_diag "cannot read the COMMIT_HELD set"
# uploaded: frozen, not in UPLOAD; preserved: in UPLOAD, not in HELD
uploaded=$(comm -23 <(sort "$NET_WORKDIR/frozen") <(sort "$NET_WORKDIR/upload") | sort -n | head -n1)
preserved=$(comm -23 <(sort "$NET_WORKDIR/upload") <(sort "$NET_WORKDIR/held") | sort -n | head -n1)
held=$(sort -n "$NET_WORKDIR/held" | tail -n1)
tap_diag "to upload: $(wc -l <"$NET_WORKDIR/upload"), held: $(wc -l <"$NET_WORKDIR/held");" \
	"uploaded extent ${uploaded:-none}, preserved ${preserved:-none}, held ${held:-none}"
check_eq "the sets agree with the status: to upload = total - done" \
	$(($(commit_total "$NAME") - $(commit_done "$NAME"))) "$(wc -l <"$NET_WORKDIR/upload")"

# --- writes while remote-cowd is down ------------------------------------------------
if [ -n "$uploaded" ]; then
	bg_write_extent "$dev" "$EXTB" down "$uploaded"
	bg_ended "$BG_WRITE_PID" 10
	check_eq "a write to an uploaded extent ($uploaded) completes without a helper" 0 "$?"
else
	tap_not_ok "a write to an uploaded extent completes without a helper" \
		"no uploaded frozen extent found"
fi
if [ -n "$preserved" ]; then
	bg_write_extent "$dev" "$EXTB" down "$preserved"
	bg_ended "$BG_WRITE_PID" 10
	check_eq "a write to a preserved, not uploaded extent ($preserved) completes without a helper" \
		0 "$?"
else
	tap_skip "a write to a preserved, not uploaded extent completes without a helper" \
		"every preserved extent was uploaded before the kill"
fi
held_pid=
if [ -n "$held" ]; then
	bg_write_extent "$dev" "$EXTB" down "$held"
	held_pid=$BG_WRITE_PID
	sleep 3
	if kill -0 "$held_pid" 2>/dev/null; then
		tap_ok "a write to a held extent ($held) waits while no helper runs"
	else
		tap_not_ok "a write to a held extent waits while no helper runs" \
			"it ended; the frozen content would be lost"
	fi
else
	tap_not_ok "a write to a held extent waits while no helper runs" "no held extent found"
fi

# --- remote-cowd again ----------------------------------------------------------------
helper_start --config "$cfg" || tap_bail "remote-cowd does not start again"
if [ -n "$held_pid" ]; then
	bg_ended "$held_pid" 60
	check_eq "the held write completes once remote-cowd is back" 0 "$?"
else
	tap_not_ok "the held write completes once remote-cowd is back" "no held write"
fi
out=$(timeout 300 "$RC" commit "$NAME" --wait 2>&1)
check_eq "the commit resumes and completes (commit --wait: exit 0)" 0 "$?" || tap_diag "$out"
check_eq "state done, every frozen extent uploaded" "done $W_COUNT/$W_COUNT" \
	"$(commit_state "$NAME") $(commit_done "$NAME")/$(commit_total "$NAME")"
target_stop
check_eq "the published version equals the device at the freeze" "$before" \
	"$(published_sha256 "$NET_WORKDIR/v1.qcow2" qcow2)"
ok=1
for e in $(seq "$EARLY_FIRST" $((EARLY_FIRST + EARLY_COUNT - 1))); do
	case " $uploaded $preserved $held " in
	*" $e "*) continue ;;	# written again while remote-cowd was down
	esac
	extent_is "$dev" "$EXTB" "$e" early || ok=0
done
check_eq "the device holds the writes made right after the freeze" 1 "$ok"
ok=1
for e in $uploaded $preserved $held; do
	extent_is "$dev" "$EXTB" "$e" down || ok=0
done
check_eq "the device holds the writes made while remote-cowd was down" 1 "$ok"
tap_diag "remote-cowd log (after the restart):" "$(grep -i commit "$HELPER_LOG" | tail -n 10)"

tap_done
