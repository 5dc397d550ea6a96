#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=600
#
# Snapshot commits that cannot work, each refused or failed with its
# reason, never reported done, and the device fully usable afterwards:
#
# - a malformed target URI: the kernel refuses the message (EINVAL, with a
#   log line), remote-cow refuses it before the kernel (exit 2); nothing is
#   frozen;
# - no remote-cowd: ENOTCONN, "no remote-cowd running";
# - targets that accept no commit: nothing listening, a read-only export
#   (qemu-nbd -r), an export smaller than the device: the commit is
#   accepted, then fails (state failed, a kernel log line, 'commit --wait'
#   exits 1 saying failed);
# - a second commit while one runs: EBUSY, "a commit is already running",
#   exit 7; then 'commit --abort': the running one ends failed;
# - a read-only table: EROFS;
# - after all that, the device reads and writes as before, and a last
#   commit to a good target completes with the device's content.
#
# remote-cowd runs with commit_retry_timeout = 5 (seconds), so that
# unreachable targets fail within seconds.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-commit.sh"

require_vm
require_commit_env
tap_plan 44

NAME="rc-commit-bad"
RO_NAME="rc-commit-ro"
EXT=128
EXTB=$((EXT * 512))
DEV_BYTES=$((16 << 20))
LEN=$((DEV_BYTES / 512))
EINVAL_RE="Invalid argument"

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 5ms 100mbit
net_serve_base "$DEV_BYTES" commit-bad-input
conf=$NET_WORKDIR/remote-cowd.conf
commit_config "$conf" "commit_retry_timeout = 5"
net_test_device "$NAME" "$LEN" "$EXT" --config "$conf"
dev=/dev/mapper/$NAME
at_exit "release_held_writes $NAME"
write_extents "$dev" "$EXTB" bad 0 64 || tap_bail "cannot write extents 0-63"
sync

# not_done <desc>: one test: the commit is not reported done.
not_done() {
	local st
	st=$(commit_state "$NAME")
	if [ "$st" != "done" ]; then
		tap_ok "$1 (state $st)"
	else
		tap_not_ok "$1" "state done after a failure"
	fi
}

# commit_msg_refused <desc> <errno text> <message words...>: dmsetup message fails
# with that errno.
commit_msg_refused() {
	local desc=$1 err=$2 out rc
	shift 2
	out=$(dmsetup message "$NAME" 0 "$@" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] && [[ $out == *"$err"* ]]; then
		tap_ok "$desc"
	else
		tap_not_ok "$desc" "dmsetup message $NAME 0 $*: exit $rc" "$out"
	fi
}

# cli_exit <desc> <status> <text> <remote-cow args...>
cli_exit() {
	local desc=$1 want=$2 text=$3 out rc
	shift 3
	out=$(timeout 120 "$RC" "$@" 2>&1)
	rc=$?
	if [ "$rc" -eq "$want" ] && [[ $out == *"$text"* ]]; then
		tap_ok "$desc"
	else
		tap_not_ok "$desc" "remote-cow $*: exit $rc, expected $want with '$text'" "$out"
	fi
}

# failing_target <desc> <uri>: the commit is accepted, then fails.
failing_target() {
	local desc=$1 uri=$2 gen
	gen=$(commit_gen "$NAME")
	kmsg_mark
	cli_exit "$desc: commit --wait exits 1, saying it failed" 1 "failed" \
		commit "$NAME" --to "$uri" --wait
	check_eq "$desc: state failed, a new generation" "failed $((gen + 1))" \
		"$(commit_state "$NAME") $(commit_gen "$NAME")"
	expect_dmesg "$desc: the kernel log says why" "remote-cow.*commit"
}

helper_is() { [ "$(rc_status "$NAME" helper)" = "$1" ]; }
state_is() { [ "$(commit_state "$NAME")" = "$1" ]; }

# --- refused at once ----------------------------------------------------------
gen0=$(commit_gen "$NAME")
kmsg_mark
commit_msg_refused "snapshot commit ftp://x/y: EINVAL" "$EINVAL_RE" snapshot commit ftp://x/y
expect_dmesg "... the kernel log says why" "remote-cow.*(URI|uri|commit)"
commit_msg_refused "snapshot commit with a URI that is not one: EINVAL" "$EINVAL_RE" \
	snapshot commit nbd://
commit_msg_refused "snapshot commit to a file: EINVAL" "$EINVAL_RE" snapshot commit file:///tmp/x
commit_msg_refused "snapshot commit with a bad flag: EINVAL" "$EINVAL_RE" \
	snapshot commit "nbd://$NET_SRV_IP:$TARGET_PORT/x" since-forever
cli_exit "remote-cow commit --to ftp://x/y: exit 2 before the kernel" 2 "bad target URI" \
	commit "$NAME" --to ftp://x/y
check_eq "nothing was frozen: state idle, generation unchanged" "idle $gen0" \
	"$(commit_state "$NAME") $(commit_gen "$NAME")"

helper_stop
wait_until 5 helper_is absent
commit_msg_refused "snapshot commit with no helper: ENOTCONN" "not connected" \
	snapshot commit "nbd://$NET_SRV_IP:$TARGET_PORT/x"
cli_exit "remote-cow commit with no helper: exit 1, no remote-cowd running" 1 \
	"no remote-cowd running" commit "$NAME" --to "nbd://$NET_SRV_IP:$TARGET_PORT/x"
check_eq "... nothing was frozen" "idle $gen0" \
	"$(commit_state "$NAME") $(commit_gen "$NAME")"
helper_start --config "$conf" || tap_bail "remote-cowd does not start again"
wait_until 10 helper_is connected

# --- accepted, then failed ----------------------------------------------------
failing_target "nothing listening" "nbd://$NET_SRV_IP:10899/nobody"
not_done "nothing listening: not reported done"

# read-only export
target_overlay "$NET_WORKDIR/ro.qcow2" "$BASE_IMG" raw ro -r ||
	tap_bail "cannot serve the read-only overlay"
failing_target "read-only export" "$TARGET_URI"
not_done "read-only export: not reported done"
target_stop
ro_map=$(qemu-img map --output=json "$NET_WORKDIR/ro.qcow2" | grep -c '"depth": 0')
check_eq "the read-only overlay holds nothing" 0 "$ro_map"

# an export smaller than the device
qemu-img create -q -f qcow2 "$NET_WORKDIR/small.qcow2" $((DEV_BYTES / 2)) ||
	tap_bail "cannot make the small image"
_target_cmd=(qemu-nbd -f qcow2 --persistent --shared=16 -b "$NET_SRV_IP" -p "$TARGET_PORT"
	-x small "$NET_WORKDIR/small.qcow2")
TARGET_URI="nbd://$NET_SRV_IP:$TARGET_PORT/small"
target_start || tap_bail "cannot serve the small image"
failing_target "an export smaller than the device" "$TARGET_URI"
not_done "an export smaller than the device: not reported done"
target_stop

# --- busy, abort ------------------------------------------------------------------
net_shape 20ms 4mbit || tap_bail "cannot slow the link down"
target_overlay "$NET_WORKDIR/slow.qcow2" "$BASE_IMG" raw slow || tap_bail "cannot serve the overlay"
kmsg_mark
cli_exit "a commit to a slow target starts" 0 "" commit "$NAME" --to "$TARGET_URI"
check "... and is uploading" wait_until 5 state_is uploading
gen=$(commit_gen "$NAME")
commit_msg_refused "a second snapshot commit while one runs: EBUSY" "busy" \
	snapshot commit "$TARGET_URI"
cli_exit "remote-cow commit while one runs: exit 7, says so" 7 \
	"a commit is already running on $NAME" commit "$NAME" --to "$TARGET_URI"
check_eq "... the running commit goes on" "uploading $gen" \
	"$(commit_state "$NAME") $(commit_gen "$NAME")"
cli_exit "remote-cow commit --abort --wait" 0 "aborted" commit "$NAME" --abort --wait
check_eq "the aborted commit ended failed" failed "$(commit_state "$NAME")"
expect_dmesg "the kernel log says it was aborted" "remote-cow.*(abort|commit)"
not_done "abort: not reported done"
target_stop
net_shape 5ms 100mbit || tap_bail "cannot shape the link back"

# --- a read-only table ---------------------------------------------------------------
make_cow $((DEV_BYTES + (16 << 20))) || tap_bail "no COW loop device"
ro_table=$(rc_table "$LEN" "$COW_DEV" "$EXT" "$(net_uri)")
at_exit "dm_remove $RO_NAME"
if ! dmsetup create "$RO_NAME" --table "$ro_table" || ! dm_remove "$RO_NAME"; then
	tap_bail "cannot format the read-only device's COW device"
fi
check "a read-only table over it" dmsetup create --readonly "$RO_NAME" --table "$ro_table"
kmsg_mark
if ! out=$(dmsetup message "$RO_NAME" 0 snapshot commit "nbd://$NET_SRV_IP:$TARGET_PORT/x" 2>&1) &&
	[[ $out == *"Read-only file system"* ]]; then
	tap_ok "snapshot commit on a read-only table: EROFS"
else
	tap_not_ok "snapshot commit on a read-only table: EROFS" "$out"
fi
out=$("$RC" commit "$RO_NAME" --to "nbd://$NET_SRV_IP:$TARGET_PORT/x" 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && [[ $out == *"read-only"* ]]; then
	tap_ok "remote-cow commit on it: exit 1, says read-only"
else
	tap_not_ok "remote-cow commit on it: exit 1, says read-only" "exit $rc: $out"
fi
check_eq "... nothing frozen" idle "$(rc_status "$RO_NAME" commit_state)"
dm_remove "$RO_NAME"

# --- the device is still fully usable --------------------------------------------------------
check "the first extents still hold what was written" extent_is "$dev" "$EXTB" 5 bad
check "a write after all that" write_extents "$dev" "$EXTB" after 100 8
check "... reads back" extent_is "$dev" "$EXTB" 107 after
sync
sum=$(sha256_of "$dev")
target_overlay "$NET_WORKDIR/good.qcow2" "$BASE_IMG" raw good || tap_bail "cannot serve the overlay"
kmsg_mark
cli_exit "a commit to a good target completes" 0 " done: " commit "$NAME" --to "$TARGET_URI" --wait
check_eq "it took every written extent (including those of the failed commits)" \
	"done $(rc_status "$NAME" written)/$(rc_status "$NAME" written)" \
	"$(commit_state "$NAME") $(commit_done "$NAME")/$(commit_total "$NAME")"
target_stop
check_eq "the published version equals the device" "$sum" \
	"$(published_sha256 "$NET_WORKDIR/good.qcow2" qcow2)"
check_eq "the base is unchanged" "$BASE_SUM" "$(sha256_of "$BASE_IMG")"
tap_diag "remote-cowd log:" "$(grep -i commit "$HELPER_LOG" | tail -n 20)"

tap_done
