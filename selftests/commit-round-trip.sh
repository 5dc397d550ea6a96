#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# A published version is a base other hosts boot from: a chain v1 -> v2 ->
# v3 (a full commit, then two since-last commits, each to a qcow2 overlay
# whose backing file is the previous version), and for each version a new
# remote-cow device on a fresh COW device over that version, served
# read-only by qemu-nbd, reads exactly the content the running device had
# at that commit (remote-cowd fetching every extent from it).
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-commit.sh"

require_vm
require_commit_env
tap_plan 15

NAME="rc-commit-rt"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
DEV_BYTES=$((16 << 20))		# 256 extents
LEN=$((DEV_BYTES / 512))
VPORT=10812			# where a published version is served as a base

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 2ms 200mbit
net_serve_base "$DEV_BYTES" commit-round-trip
net_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
at_exit "release_held_writes $NAME"

# check_version <n> <overlay> <sha256>: vN served read-only as a base, a new
# device over it on a fresh COW device reads exactly <sha256>.
check_version() {
	local n=$1 ov=$2 want=$3 uri="nbd://$NET_SRV_IP:$VPORT/v$1" pid i got
	ip netns exec "$NET_NS" qemu-nbd -r -f qcow2 --persistent --shared=8 -b "$NET_SRV_IP" \
		-p "$VPORT" -x "v$n" "$ov" >>"$NET_WORKDIR/version.log" 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		timeout 5 nbdinfo --size "$uri" >/dev/null 2>&1 && break
		sleep 0.1
	done
	make_cow $((DEV_BYTES + (4 << 20))) || tap_bail "no COW device for v$n"
	if ! dmsetup create "$NAME-v$n" --table "$(rc_table "$LEN" "$COW_DEV" "$EXT" "$uri")"; then
		tap_not_ok "v$n: a new device over it"
		net_server_kill "$pid"
		return
	fi
	got=$(sha256_of "/dev/mapper/$NAME-v$n")
	check_eq "v$n: a new device over it reads the device at commit $n" "$want" "$got"
	check_eq "v$n: ... every extent fetched into its COW device" "256/256" \
		"$(dmsetup status "$NAME-v$n" | awk '{ print $5 }')"
	dm_remove "$NAME-v$n"
	net_server_kill "$pid"
}

# commit_to <n> <overlay> <backing> <backing format> [--since-last]: commit
# the device to a fresh overlay; its sha256 at the freeze in SUM.
commit_to() {
	local n=$1 ov=$2 backing=$3 fmt=$4 out
	shift 4
	sync
	SUM=$(sha256_of "$dev")
	target_overlay "$ov" "$backing" "$fmt" "v$n" || tap_bail "cannot serve overlay $n"
	out=$(timeout 300 "$RC" commit "$NAME" --to "$TARGET_URI" "$@" --wait 2>&1)
	check_eq "commit $n $*: exit 0, done" "0 done" "$? $(commit_state "$NAME")" ||
		tap_diag "$out"
	target_stop
}

ov1=$NET_WORKDIR/v1.qcow2 ov2=$NET_WORKDIR/v2.qcow2 ov3=$NET_WORKDIR/v3.qcow2
write_extents "$dev" "$EXTB" r1 0 40 || tap_bail "cannot write"
commit_to 1 "$ov1" "$BASE_IMG" raw
sum1=$SUM
write_extents "$dev" "$EXTB" r2 30 20 || tap_bail "cannot write"
zero_extents "$dev" "$EXTB" 100 2 || tap_bail "cannot zero"
commit_to 2 "$ov2" "$ov1" qcow2 --since-last
sum2=$SUM
check_eq "commit 2 uploaded only the 22 extents written since commit 1" 22 \
	"$(commit_total "$NAME")"
write_extents "$dev" "$EXTB" r3 0 5 || tap_bail "cannot write"
write_extents "$dev" "$EXTB" r3 250 6 || tap_bail "cannot write"
commit_to 3 "$ov3" "$ov2" qcow2 --since-last
sum3=$SUM
check_eq "commit 3 uploaded only the 11 extents written since commit 2" 11 \
	"$(commit_total "$NAME")"
check "the three versions differ" test "$sum1" != "$sum2" -a "$sum2" != "$sum3"

check_version 1 "$ov1" "$sum1"
check_version 2 "$ov2" "$sum2"
check_version 3 "$ov3" "$sum3"
check_eq "the running device still reads as at commit 3" "$sum3" "$(sha256_of "$dev")"
check_eq "the base is unchanged" "$BASE_SUM" "$(sha256_of "$BASE_IMG")"
tap_done
