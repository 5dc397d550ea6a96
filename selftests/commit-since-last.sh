#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=600
#
# Two versions, the second one incremental ("snapshot commit <uri>
# since-last"), each checked byte for byte:
#
# 1. a full commit of a 32 MiB device (100 written extents) to overlay1, a
#    qcow2 image over the base: overlay1 read through qemu-nbd equals the
#    device at the commit;
# 2. then 10 of those extents rewritten, 20 new ones written, one written
#    extent and one new extent overwritten with zeroes; a since-last commit
#    to overlay2, whose backing file is overlay1: commit_total is exactly
#    those 32 extents; overlay2 read through its chain (overlay2 ->
#    overlay1 -> base) equals the device at the second commit;
#    'qemu-img map' of overlay2 shows that it holds exactly those 32
#    extents, and the two zero extents as zero clusters, not data: they
#    went as NBD write-zeroes, not as 64 KiB of zero bytes.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-commit.sh"

require_vm
require_commit_env
tap_plan 18

NAME="rc-commit-inc"
EXT=128				# 64 KiB extents = qcow2's default cluster size
EXTB=$((EXT * 512))
DEV_BYTES=$((32 << 20))
LEN=$((DEV_BYTES / 512))

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 2ms 200mbit
net_serve_base "$DEV_BYTES" commit-since-last
net_test_device "$NAME" "$LEN" "$EXT"
dev=/dev/mapper/$NAME
at_exit "release_held_writes $NAME"
ov1=$NET_WORKDIR/overlay1.qcow2
ov2=$NET_WORKDIR/overlay2.qcow2

# --- 1. full commit --------------------------------------------------------
write_extents "$dev" "$EXTB" a 10 100 || tap_bail "cannot write extents 10-109"
sync
sum1=$(sha256_of "$dev")
target_overlay "$ov1" "$BASE_IMG" raw v1 || tap_bail "cannot serve overlay1"
out=$(timeout 300 "$RC" commit "$NAME" --to "$TARGET_URI" --wait 2>&1)
check_eq "commit 1 (full) --wait: exit 0" 0 "$?" || tap_diag "$out"
check_eq "commit 1: done, the 100 written extents" "done 100/100" \
	"$(commit_state "$NAME") $(commit_done "$NAME")/$(commit_total "$NAME")"
gen1=$(commit_gen "$NAME")
target_stop
check_eq "overlay1 equals the device at commit 1" "$sum1" "$(published_sha256 "$ov1" qcow2)"
ov1_file=$(sha256_of "$ov1")

# --- 2. changes, since-last commit ------------------------------------------
write_extents "$dev" "$EXTB" b 50 10 || tap_bail "cannot rewrite extents 50-59"
write_extents "$dev" "$EXTB" b 200 20 || tap_bail "cannot write extents 200-219"
zero_extents "$dev" "$EXTB" 60 1 || tap_bail "cannot zero extent 60"
zero_extents "$dev" "$EXTB" 300 1 || tap_bail "cannot zero extent 300"
sync
changed=$((10 + 20 + 1 + 1))
sum2=$(sha256_of "$dev")
if [ "$sum2" != "$sum1" ]; then
	tap_ok "the device changed after commit 1"
else
	tap_not_ok "the device changed after commit 1"
fi

target_overlay "$ov2" "$ov1" qcow2 v2 || tap_bail "cannot serve overlay2"
kmsg_mark
out=$(timeout 300 "$RC" commit "$NAME" --to "$TARGET_URI" --since-last --wait 2>&1)
check_eq "commit 2 (since-last) --wait: exit 0" 0 "$?" || tap_diag "$out"
check_eq "commit 2: state done" "done" "$(commit_state "$NAME")"
check_eq "commit 2 froze exactly the $changed extents written since commit 1" \
	"$changed/$changed" "$(commit_done "$NAME")/$(commit_total "$NAME")"
check_eq "commit_gen moved on by one" $((gen1 + 1)) "$(commit_gen "$NAME")"
expect_no_dmesg "no commit failure in the kernel log" "commit.*(fail|abort)"
target_stop
check "overlay2 is a consistent qcow2 image" qemu-img check -q "$ov2"
check_eq "overlay1 was not written by commit 2 (the file is unchanged)" "$ov1_file" \
	"$(sha256_of "$ov1")"
check_eq "overlay2 through its chain equals the device at commit 2" "$sum2" \
	"$(published_sha256 "$ov2" qcow2)"
check_eq "overlay1 still equals the device at commit 1" "$sum1" \
	"$(published_sha256 "$ov1" qcow2)"

# --- what overlay2 holds ------------------------------------------------------
# One line per extent that overlay2 itself (depth 0) holds: "<extent> data"
# or "<extent> zero" (a zero cluster, no data).
qemu-img map --output=json "$ov2" >"$NET_WORKDIR/map2.json" 2>&1 ||
	tap_diag "qemu-img map failed: $(cat "$NET_WORKDIR/map2.json")"
python3 - "$NET_WORKDIR/map2.json" "$EXTB" >"$NET_WORKDIR/own2" <<'EOF'
import json, sys
ext = int(sys.argv[2])
for m in json.load(open(sys.argv[1])):
    if m["depth"] != 0 or not m.get("present", True):
        continue
    kind = "data" if m["data"] else "zero"
    for e in range(m["start"] // ext, (m["start"] + m["length"] + ext - 1) // ext):
        print(e, kind)
EOF
own=$(awk '{ print $1 }' "$NET_WORKDIR/own2" | sort -n | tr '\n' ' ')
want=$({ seq 50 60; seq 200 219; echo 300; } | sort -n | tr '\n' ' ')
check_eq "overlay2 holds exactly the extents changed since commit 1" "$want" "$own"
check_eq "the zeroed extents are zero clusters in overlay2 (sent as write-zeroes)" \
	"60 zero 300 zero" "$(awk '$1 == 60 || $1 == 300' "$NET_WORKDIR/own2" | tr '\n' ' ' | sed 's/ $//')"
check_eq "the other changed extents are data" 30 "$(awk '$2 == "data"' "$NET_WORKDIR/own2" | wc -l)"
check_eq "the base is unchanged" "$BASE_SUM" "$(sha256_of "$BASE_IMG")"
tap_diag "remote-cowd log:" "$(grep -i commit "$HELPER_LOG" | tail -n 10)"

tap_done
