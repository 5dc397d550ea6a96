#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=600
#
# Snapshot commit is a point-in-time copy while the guest keeps writing:
#
# - a 64 MiB device over an NBD base (nbdkit in the namespace, link shaped
#   to 10 ms and 100 Mbit/s) with remote-cowd; 32 MiB of it written with
#   known data, then the whole device's sha256 taken;
# - the target: a qcow2 overlay whose backing file is the base, served
#   writable by qemu-nbd in the namespace;
# - 'remote-cow commit --to' freezes every written extent, and at once fio
#   overwrites the whole device (random 64 KiB writes, so also the frozen
#   extents still being uploaded) and verifies what it wrote;
# - 'remote-cow commit --wait' ends with done; the overlay, read back
#   through a read-only qemu-nbd over its backing chain, has the sha256 of
#   the device before the commit, byte for byte; the device still holds
#   fio's data (fio --verify_only), and the base is unchanged;
# - remote-cowd preserved frozen extents ahead of the guest (its done line
#   counts them): fio overwrote those with no PRESERVE (the kernel side of
#   that is in commit-kernel.sh), and the published version is exact
#   nonetheless.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-commit.sh"

require_vm
require_commit_env
require_cmd fio
tap_plan 19

NAME="rc-commit-pit"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
MIB=$((1 << 20))
DEV_BYTES=$((64 * MIB))
LEN=$((DEV_BYTES / 512))
W_FIRST=128			# written: extents 128..639 (8 MiB to 40 MiB)
W_COUNT=512

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 10ms 100mbit
net_serve_base "$DEV_BYTES" commit-pit
tap_diag "base $(net_uri) behind 10 ms, 100 Mbit/s"
net_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
at_exit "release_held_writes $NAME"

# --- the version to publish ------------------------------------------------
image_data commit-pit-data $((W_COUNT * EXTB)) |
	dd of="$dev" bs=1M seek=$((W_FIRST * EXTB / MIB)) oflag=direct conv=fsync status=none iflag=fullblock
sync
before=$(sha256_of "$dev")
check_eq "the device counts the written extents" "$W_COUNT" "$(rc_status "$NAME" written)"
check_eq "no commit yet: state idle" idle "$(commit_state "$NAME")"
gen0=$(commit_gen "$NAME")

target_overlay "$NET_WORKDIR/v1.qcow2" "$BASE_IMG" raw v1 ||
	tap_bail "cannot serve the qcow2 overlay"
tap_diag "target: $TARGET_URI (qcow2 overlay over $BASE_IMG)"

# --- commit, and overwrite everything at once -----------------------------
kmsg_mark
out=$("$RC" commit "$NAME" --to "$TARGET_URI" 2>&1)
rc=$?
fio --name=overwrite --filename="$dev" --rw=randwrite --bs=64k --direct=1 \
	--ioengine=libaio --iodepth=16 --size="$DEV_BYTES" --verify=crc32c \
	--verify_fatal=1 --do_verify=1 --randrepeat=1 --output="$NET_WORKDIR/fio.out" \
	>/dev/null 2>&1 &
fio_pid=$!
at_exit "kill -KILL $fio_pid"
state=$(commit_state "$NAME")
if [ "$rc" -eq 0 ]; then
	tap_ok "remote-cow commit --to accepted ($out)"
else
	tap_not_ok "remote-cow commit --to accepted" "exit $rc: $out"
	commit_status_diag "$NAME"
	tap_bail "the commit was refused"
fi
tap_diag "state when fio started: $state $(commit_done "$NAME")/$(commit_total "$NAME")"
check_eq "the commit froze every written extent" "$W_COUNT" "$(commit_total "$NAME")"
check_eq "commit_gen is the next generation" $((gen0 + 1)) "$(commit_gen "$NAME")"
if [ "$state" = uploading ] || [ "$state" = "done" ]; then
	tap_ok "the commit is under way ($state)"
else
	tap_not_ok "the commit is under way" "state $state"
fi

out=$(timeout 300 "$RC" commit "$NAME" --wait 2>&1)
rc=$?
check_eq "commit --wait: exit 0" 0 "$rc" || tap_diag "$out"
check "... and says done" grep -q " done: " <<<"$out"
bg_ended "$fio_pid" 300
rc=$?
check_eq "fio overwrote the whole device during the upload and read it back" 0 "$rc" ||
	tap_diag "$(tail -n 30 "$NET_WORKDIR/fio.out" 2>/dev/null)"
check_eq "state done" "done" "$(commit_state "$NAME")"
check_eq "every frozen extent uploaded" "$W_COUNT/$W_COUNT" \
	"$(commit_done "$NAME")/$(commit_total "$NAME")"
expect_no_dmesg "no commit failure in the kernel log" "commit.*(fail|abort)"

# --- the published version --------------------------------------------------
target_stop
check "the overlay is a consistent qcow2 image" qemu-img check -q "$NET_WORKDIR/v1.qcow2"
published=$(published_sha256 "$NET_WORKDIR/v1.qcow2" qcow2)
check_eq "the published version equals the device at the commit, byte for byte" \
	"$before" "$published"
after=$(sha256_of "$dev")
if [ "$after" != "$before" ]; then
	tap_ok "the device moved on (fio's data, not the frozen version)"
else
	tap_not_ok "the device moved on" "the device still has the sha256 of the frozen version"
fi
check "the device still reads back fio's data (fio --verify_only)" \
	fio --name=overwrite --filename="$dev" --rw=randwrite --bs=64k --direct=1 \
	--ioengine=libaio --iodepth=16 --size="$DEV_BYTES" --verify=crc32c \
	--verify_fatal=1 --verify_only --randrepeat=1
check_eq "the base is unchanged" "$BASE_SUM" "$(sha256_of "$BASE_IMG")"
pres=$(sed -n 's/.* done: .*preserved \([0-9]*\) on request, \([0-9]*\) ahead.*/\1 \2/p' \
	"$HELPER_LOG" | tail -n 1)
check "remote-cowd preserved frozen extents ahead of the guest (on request, ahead: ${pres:-none})" \
	test "${pres#* }" -gt 0
tap_diag "remote-cowd log:" "$(grep -i commit "$HELPER_LOG" | tail -n 10)"

tap_done
