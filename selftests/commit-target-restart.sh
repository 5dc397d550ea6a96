#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=600
#
# The commit target goes away in the middle of an upload:
#
# 1. for 3 seconds (nbdkit, serving a raw copy of the base, killed and
#    started again), remote-cowd's commit_retry_timeout at 30 seconds:
#    remote-cowd reconnects, the commit completes, and the target file
#    equals the device at the freeze;
# 2. for good, remote-cowd restarted with commit_retry_timeout at 8 s: the
#    commit ends failed within that time and some slack, the kernel log
#    says why, 'remote-cow commit --wait' exits 1 naming the failure; the
#    device keeps working, and a commit since-last to the restarted
#    target afterwards completes and matches the device.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-commit.sh"

require_vm
require_commit_env
tap_plan 21

NAME="rc-commit-target"
EXT=128
EXTB=$((EXT * 512))
DEV_BYTES=$((32 << 20))
LEN=$((DEV_BYTES / 512))
RETRY=8				# commit_retry_timeout of part 2, seconds

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 20ms 16mbit
net_serve_base "$DEV_BYTES" commit-target-restart
conf=$NET_WORKDIR/remote-cowd.conf
# Reconnection attempts at least every second: the outage of part 1 ends
# well within the retry timeout, whatever the backoff.
commit_config "$conf" "commit_retry_timeout = 30" "retry_max = 1s"
net_test_device "$NAME" "$LEN" "$EXT" --config "$conf"
dev=/dev/mapper/$NAME
at_exit "release_held_writes $NAME"
state_is() { [ "$(commit_state "$NAME")" = "$1" ]; }

# The target: nbdkit over a copy of the base (the third recipe of
# Documentation/remote-cow.rst, "Publishing a version").
new=$NET_WORKDIR/new.img
cp "$BASE_IMG" "$new" || tap_bail "cannot copy the base"

# --- 1. a short outage ----------------------------------------------------------------
write_extents "$dev" "$EXTB" one 32 384 || tap_bail "cannot write extents 32-415"
sync
before=$(sha256_of "$dev")
target_file "$new" new || tap_bail "cannot serve the target"
kmsg_mark
out=$("$RC" commit "$NAME" --to "$TARGET_URI" 2>&1)
check_eq "commit 1 starts" 0 "$?" || tap_diag "$out"
check "it uploads" wait_until 60 commit_progress_at_least "$NAME" 32
target_kill
tap_diag "target killed at $(commit_done "$NAME")/$(commit_total "$NAME")"
sleep 3
check_eq "3 s later the commit is still uploading" uploading "$(commit_state "$NAME")"
target_start || tap_bail "cannot restart the target"
out=$(timeout 300 "$RC" commit "$NAME" --wait 2>&1)
check_eq "after the target is back, the commit completes (commit --wait: exit 0)" 0 "$?" ||
	tap_diag "$out"
check_eq "state done, everything uploaded" "done 384/384" \
	"$(commit_state "$NAME") $(commit_done "$NAME")/$(commit_total "$NAME")"
expect_no_dmesg "no commit failure in the kernel log" "commit.*(fail|abort)"
target_stop
check_eq "the target equals the device at the freeze" "$before" "$(sha256_of "$new")"
check_eq "... and so does what it serves" "$before" "$(published_sha256 "$new" raw)"

# --- 2. gone for longer than commit_retry_timeout ---------------------------------------
helper_stop
commit_config "$conf" "commit_retry_timeout = $RETRY" "retry_max = 1s"
helper_start --config "$conf" || tap_bail "remote-cowd does not start again"
write_extents "$dev" "$EXTB" two 100 200 || tap_bail "cannot write extents 100-299"
sync
before2=$(sha256_of "$dev")
gen=$(commit_gen "$NAME")
target_start || tap_bail "cannot restart the target"
kmsg_mark
"$RC" commit "$NAME" --to "$TARGET_URI" --since-last --wait >"$NET_WORKDIR/wait2.out" 2>&1 &
waiter=$!
at_exit "kill -KILL $waiter"
check "commit 2 (since-last) uploads" wait_until 60 commit_progress_at_least "$NAME" 16
target_kill
t0=$(date +%s)
tap_diag "target killed for good at $(commit_done "$NAME")/$(commit_total "$NAME")"
check "the commit fails within commit_retry_timeout ($RETRY s) and 60 s of slack" \
	wait_until $((RETRY + 60)) state_is failed
t=$(($(date +%s) - t0))
tap_diag "failed after $t s"
if [ "$t" -ge $((RETRY - 1)) ]; then
	tap_ok "... not before commit_retry_timeout ($t s)"
else
	tap_not_ok "... not before commit_retry_timeout" "failed after $t s < $RETRY s"
fi
bg_ended "$waiter" 30
check_eq "commit --wait exits 1" 1 "$?"
check "... saying it failed" grep -q "failed" "$NET_WORKDIR/wait2.out"
check "... with the kernel's reason" grep -q "kernel: .*commit" "$NET_WORKDIR/wait2.out"
tap_diag "commit --wait said:" "$(cat "$NET_WORKDIR/wait2.out")"
expect_dmesg "the kernel log says the commit failed" "remote-cow.*commit.*(fail|time|retr)"
check_eq "commit_gen is the failed commit's" $((gen + 1)) "$(commit_gen "$NAME")"

# The device keeps working; the failed commit's extents go with the next one.
check "the device still writes" write_extents "$dev" "$EXTB" three 500 4
check "... and reads back" extent_is "$dev" "$EXTB" 503 three
sync
before3=$(sha256_of "$dev")
target_start || tap_bail "cannot restart the target"
out=$(timeout 300 "$RC" commit "$NAME" --to "$TARGET_URI" --since-last --wait 2>&1)
check_eq "a since-last commit to the target, back, completes" 0 "$?" || tap_diag "$out"
target_stop
check_eq "the target equals the device again" "$before3" "$(sha256_of "$new")"
tap_diag "version 2 would have been $before2"
tap_diag "remote-cowd log:" "$(grep -i commit "$HELPER_LOG" | tail -n 20)"

tap_done
