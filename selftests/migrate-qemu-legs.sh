#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=1800
#
# A real QEMU guest moves twice, on one boot of it (the nested guest's
# boot is most of the time): first with its writes outrunning the link
# (mirroring must engage), then in post-copy with its source lost midway
# (clean EIO, never wrong data).  One remote-cowd plays every side over
# loopback TCP (lib-mig.sh); the guest runs under TCG inside the TCG test
# VM (lib-guest.sh), at QEMU's pause-before-switchover point as in
# migrate-qemu.sh.
#
# The guest's workload is selftests/progs/guest-writer (static, in its
# initramfs): numbered, crc-checked 4 KiB blocks written with O_DIRECT and
# fsync in batches of 8, "ack k" on the console once durable, over a
# region of 64 extents from 16 MiB on, each block in another extent than
# the one before (so w blocks/s dirty w extents/s), overwritten round after
# round; after each batch it reads one acknowledged block back ("rok",
# "rerr", "rbad": wrong data).
#
# - Leg 1, mirroring: SRC (8 MiB written before, a file:// base) to DST.
#   The guest's write rate is measured, and the migration's port (only
#   it: tc prio + u32 on lo; QEMU's own migration goes unshaped) is shaped
#   to a quarter of the bytes its writes dirty, clamped to 2..16 Mbit/s:
#   every round finds the region written again.  remote-cowd switches to
#   mirroring (migrate_state mirroring, logged); then QEMU migrates,
#   pauses before the switchover, 'migrate finish --wait' ends done with
#   at most a handful of extents left for the last round (kernel log), at
#   least WAITED_MIN guest writes waited for the destination (kernel log),
#   migrate-continue; the guest writes on DST.
# - Leg 2, post-copy: the guest on DST moves on to DST2 (a third QEMU).
#   Only once QEMU is paused before the switchover does the storage
#   migration start, 'remote-cow migrate DST --postcopy' and at once
#   'migrate finish --wait' (the timing is made, not hoped for: nearly all
#   written extents still on DST when DST2 serves); the port is shaped to
#   2 Mbit/s; migrate-continue; the guest writes on DST2 (each write
#   faulting its extent from DST first), while DST2's background stream
#   is held to migrate_postcopy_rate 16K (one 64 KiB extent per 4 s; the
#   guest's faults are not held back), so that at the cut most of the
#   extents remote when DST2 served (112 of the 192 in a run) still are
#   (90 in that run) however long the guest took to show it runs on DST2
#   (unlimited, a slow machine once left 4: the stream had the whole link
#   meanwhile); then loopback is cut (every
#   packet dropped: DST's host gone without a word; remote-cowd's
#   migrate_peer_timeout 4 s, DST2's fault_timeout 5 s).  The guest's I/O
#   to the extents still remote fails (rerr/werr with EIO on its console),
#   remote-cowd logs the lost source; DST ends failed and fenced.
# - Afterwards, from the host, O_DIRECT extent by extent
#   (progs/guest-verify.py): DST2's extents either read right or fail with
#   EIO, and those that fail are exactly the kernel's remote set (GET_RUNS
#   of bitmap 19); reading right means: outside the guest's region the
#   base with the 8 MiB written before, in it each slot holds the newest
#   block acknowledged there on any console or a newer one of that slot,
#   number, pattern and crc.  DST (the lost source, fenced) holds every
#   block acknowledged before leg 2 the same way: leg 1 moved it all.  No
#   console ever shows "rbad".
#
# Nested TCG is slow: the guest's boot takes 4-7 minutes, each leg 2-3.
# shellcheck disable=SC2317	# callbacks of wait_until and within
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"
. "$(dirname "$0")/lib-guest.sh"

require_vm
require_cmd dmsetup losetup dd qemu-system-x86_64 busybox cpio python3 modprobe psktool jq tc
require_built "$RC_TREE/selftests/progs/guest-writer" "$RC_TREE/selftests/progs/rcow-nl"
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 39

PORT=17781		# remote-cowd's DST (leg 1)
PORT2=17782		# remote-cowd's DST2 (leg 2)
QPORT=17783		# DST's QEMU -incoming
QPORT2=17784		# DST2's QEMU -incoming
FAULT_MS=5000		# DST and DST2 (QEMU's alignment probe, migrate-qemu.sh)
PEER_S=4		# migrate_peer_timeout
EXT=$((64 << 10))
GUEST_MEM=128		# MiB
GUEST_OFF=4096		# the writer's region: 4 KiB blocks 4096.. (16 MiB on)
GUEST_SLOTS=1024	# 4 MiB, 64 extents
GUEST_BATCH=8
GUEST_WAIT=${GUEST_WAIT:-900}	# seconds for the guest to boot
LEFT_MAX=8		# extents left for the last round while mirroring
WAITED_MIN=8		# guest writes that waited for the destination
REMOTE_MIN=16		# extents still remote at the cut, at least
PC_RATE=16K		# migrate_postcopy_rate: DST2's stream (leg 1 is not post-copy)
LEG2_RATE=2mbit
BM_REMOTE=19		# RCOW_BITMAP_MIGRATE_REMOTE
net_tmpdir
printf 'migrate_peer_timeout = %ss\nmigrate_postcopy_rate = %s\n' "$PEER_S" "$PC_RATE" \
	>"$NET_WORKDIR/remote-cowd.conf"
mig_setup migrate-qemu-legs --config "$NET_WORKDIR/remote-cowd.conf"

SRC="rc-ql-src"
DST="rc-ql-dst"
DST2="rc-ql-dst2"
new_pair "$SRC" "$DST" "$FAULT_MS" || tap_bail "cannot set up the source and the destination"
wait_until 10 listening "$DST" >/dev/null || tap_bail "remote-cowd does not listen for $DST"
# what the disk holds outside the guest's blocks: the base, 8 MiB at 4 MiB
cp "$BASE_IMG" "$tmp/ref.img"
image_data "migrate-qemu-legs-$SRC" $((8 * MIB)) |
	dd of="$tmp/ref.img" bs=1M seek=4 conv=notrunc iflag=fullblock status=none ||
	tap_bail "cannot make the reference"

# link_shape_port <rate> <port>...: only the TCP segments to those ports
# on lo go through netem (that rate, at most about a second of it queued,
# mig_link_shape's reason: the peer timeout is 4 s); the rest of lo (QEMU's
# migrations) as it was.  (mig_link_restore undoes it.)
link_shape_port() {
	local rate=$1 p
	shift
	modprobe -a sch_prio sch_netem cls_u32 2>/dev/null
	tc qdisc del dev lo root 2>/dev/null
	tc qdisc add dev lo root handle 1: prio bands 3 priomap 1 1 1 1 1 1 0 0 1 1 1 1 1 1 1 1 &&
		tc qdisc add dev lo parent 1:3 handle 30: netem limit "$(mig_queue_1s "$rate")" \
			rate "$rate" || return 1
	for p in "$@"; do
		tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip dport "$p" 0xffff \
			flowid 1:3 || return 1
	done
}
# link_rate <rate>: the shaped ports' rate from now on.
link_rate() { tc qdisc change dev lo parent 1:3 handle 30: netem limit "$(mig_queue_1s "$1")" rate "$1"; }
# klog_count <dm name> <what>: the number before <what> in the kernel log
# since the mark ("remote-cow: <dm name>: <n> <what>"), the last one.
klog_count() {
	dmesg_since_mark | sed -n "s/.*remote-cow: $1: \([0-9]*\) $2.*/\1/p" | tail -n 1
}

# --- the guest ---------------------------------------------------------------
guest_kernel || tap_bail "no kernel for the guest"
guest_initramfs_tree "$tmp/ird" || tap_bail "cannot build the guest's initramfs"
cp "$RC_TREE/selftests/progs/guest-writer" "$tmp/ird/bin/" || tap_bail "cannot copy guest-writer"
{
	guest_init_head
	cat <<EOF
echo "RCOW-GUEST-UP"
/bin/guest-writer /dev/vda $GUEST_OFF $GUEST_SLOTS $GUEST_BATCH
echo "RCOW-GUEST-DONE"
while :; do sleep 1000; done
EOF
} >"$tmp/ird/init"
GUEST_INITRD=$tmp/initrd.cpio
guest_initramfs_pack "$tmp/ird" "$GUEST_INITRD" || tap_bail "cannot build the guest's initramfs"
guest_qmp_setup
at_exit "guest_keep_consoles src dst dst2"

guest_boot src "$SRC" RCOW-GUEST-WRITER 16
SRC_QEMU=$QEMU_PID
a=$(guest_last_ack src)
sleep 10
rate=$((($(guest_last_ack src) - a) / 10))
# a quarter of what its writes dirty (64 KiB extents), 2..16 Mbit/s
kbit=$((rate * 512 / 4))
[ "$kbit" -le 16000 ] || kbit=16000
[ "$kbit" -ge 2000 ] || kbit=2000
check "the guest writes at least 8 blocks/s, twice the slowest link ($rate/s)" test "$rate" -ge 8
check "QMP (source): pause-before-switchover" guest_qmp src \
	'{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "pause-before-switchover", "state": true}]}}'
guest_qmp src '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1073741824, "downtime-limit": 1000}}' >/dev/null

# --- leg 1: the guest outruns the link, mirroring ------------------------------
guest_qemu_start dst "$DST" -incoming "tcp:127.0.0.1:$QPORT"
DST_QEMU=$QEMU_PID
check "the QEMU on $DST waits for the guest" guest_qmp dst --wait-up 300
at_exit mig_link_restore
if link_shape_port "${kbit}kbit" "$PORT" "$PORT2"; then
	tap_ok "lo: remote-cowd's ports shaped to ${kbit} kbit/s (QEMU's not)"
else
	tap_not_ok "lo: remote-cowd's ports shaped" "$(tc qdisc show dev lo)"
	tap_bail "cannot shape lo"
fi
kmsg_mark
t=$(secs)
check "remote-cow migrate $SRC: started while the guest writes" \
	"$RC" migrate "$SRC" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN"
if within 400 state_is "$SRC" mirroring; then
	tap_ok "the migration switches to mirroring ($(since "$t") s)"
else
	tap_not_ok "the migration switches to mirroring" "state: $(state "$SRC")" \
		"$(grep "$SRC" "$HELPER_LOG" | tail -n 5)"
fi
check "remote-cowd logged why: the rounds stopped shrinking" \
	logged "$SRC: the rounds stopped shrinking: mirroring from round"
a=$(guest_last_ack src)
check "the guest goes on writing while mirroring (acks past $a)" \
	within 60 guest_acks_past src $((a + 2 * GUEST_BATCH))
t=$(secs)
check "QMP: migrate to the QEMU on $DST" guest_qmp src \
	"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"tcp:127.0.0.1:$QPORT\"}}"
if r=$(guest_qmp src --wait-migrate pre-switchover 600); then
	tap_ok "the guest's migration reaches pre-switchover ($(since "$t") s; $SRC: $(state "$SRC"))"
else
	tap_not_ok "the guest's migration reaches pre-switchover" "$r" \
		"$(cat "$tmp/src.out" "$tmp/dst.out")"
	tap_bail "no switchover"
fi
src_ack=$(guest_last_ack src)
t=$(secs)
check "remote-cow migrate $SRC finish --wait (the guest paused): done" \
	timeout 300 "$RC" migrate "$SRC" finish --wait
tap_diag "storage finish took $(since "$t") s; last ack on the source: $src_ack"
left=$(klog_count "$SRC" "extents left to send")
check "finish had at most $LEFT_MAX extents left to send (${left:-none logged})" \
	test -n "$left" -a "${left:-999}" -le "$LEFT_MAX"
waited=$(klog_count "$SRC" "writes waited for the destination (mirroring)")
check "guest writes waited for the destination: at least $WAITED_MIN (${waited:-none logged})" \
	test -n "$waited" -a "${waited:-0}" -ge "$WAITED_MIN"
check_eq "$DST serves (no longer incoming)" idle "$(state "$DST")"
check "QMP: migrate-continue" guest_qmp src \
	'{"execute": "migrate-continue", "arguments": {"state": "pre-switchover"}}'
if r=$(guest_qmp src --wait-migrate completed 300); then
	tap_ok "the guest's migration completes ($(jq -r '"downtime \(.downtime) ms, total \(."total-time") ms"' <<<"$r"))"
else
	tap_not_ok "the guest's migration completes" "$r" "$(cat "$tmp/src.out" "$tmp/dst.out")"
fi
check "the guest goes on on $DST: acks past $src_ack" \
	within 120 guest_acks_past dst $((src_ack + 2 * GUEST_BATCH)) ||
	guest_why dst "$DST_QEMU" "$DST: $(dmsetup status "$DST" 2>&1)"
check_fails "$SRC refuses writes" dd if=/dev/zero of="/dev/mapper/$SRC" bs=4k count=1 \
	seek=100 oflag=direct status=none
guest_qmp src '{"execute": "quit"}' >/dev/null	# one QEMU less on the 2 CPUs
wait_pid "$SRC_QEMU" 60 >/dev/null

# --- leg 2: post-copy to DST2, the source lost midway --------------------------
new_dst "$DST2" "$FAULT_MS" "$PORT2" || tap_bail "cannot receive $DST2"
wait_until 10 listening "$DST2" >/dev/null || tap_bail "remote-cowd does not listen for $DST2"
DST2_ID=$(nl_dev_id "$DST2")
[ -n "$DST2_ID" ] || tap_bail "no netlink id for $DST2"
guest_qemu_start dst2 "$DST2" -incoming "tcp:127.0.0.1:$QPORT2"
DST2_QEMU=$QEMU_PID
check "the QEMU on $DST2 waits for the guest" guest_qmp dst2 --wait-up 300
guest_qmp dst '{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "pause-before-switchover", "state": true}]}}' >/dev/null
guest_qmp dst '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1073741824, "downtime-limit": 1000}}' >/dev/null
t=$(secs)
check "QMP: migrate the guest on to the QEMU on $DST2" guest_qmp dst \
	"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"tcp:127.0.0.1:$QPORT2\"}}"
if r=$(guest_qmp dst --wait-migrate pre-switchover 600); then
	tap_ok "... it reaches pre-switchover ($(since "$t") s)"
else
	tap_not_ok "... it reaches pre-switchover" "$r" "$(cat "$tmp/dst.out" "$tmp/dst2.out")"
	tap_bail "no switchover"
fi
link_rate "$LEG2_RATE" || tap_bail "cannot shape lo"
check "the guest paused: migrate $DST --postcopy, and at once finish --wait (serving)" \
	bash -c "'$RC' migrate '$DST' --to 127.0.0.1:$PORT2 --psk '$tmp/key.psk' --run-dir '$RUN' --postcopy &&
		timeout 120 '$RC' migrate '$DST' finish --wait"
check_eq "$DST2: postcopy" postcopy "$(state "$DST2")"
dst_ack=$(guest_last_ack dst)
check "QMP: migrate-continue" guest_qmp dst \
	'{"execute": "migrate-continue", "arguments": {"state": "pre-switchover"}}'
check "the guest's migration completes" guest_qmp dst --wait-migrate completed 300
guest_qmp dst '{"execute": "quit"}' >/dev/null
wait_pid "$DST_QEMU" 60 >/dev/null
check "the guest goes on on $DST2: acks past $dst_ack (its extents fetched from $DST)" \
	within 120 guest_acks_past dst2 $((dst_ack + GUEST_BATCH)) ||
	guest_why dst2 "$DST2_QEMU" "$DST2: $(dmsetup status "$DST2" 2>&1)"
# shellcheck disable=SC2207	# numbers, one per line
remote_set() {
	local r
	for r in $(nl_runs "$DST2_ID" "$BM_REMOTE"); do
		seq "${r%+*}" $((${r%+*} + ${r#*+} - 1))
	done
}
# shellcheck disable=SC2207	# numbers, one per line
REMOTE=($(remote_set))
cut_ack=$(guest_last_ack dst2)
mig_link_cut || tap_bail "cannot cut lo (tc netem)"
check "at the cut, at least $REMOTE_MIN extents still remote (${#REMOTE[@]}; last ack $cut_ack)" \
	test "${#REMOTE[@]}" -ge "$REMOTE_MIN"
check "the destination logs the lost source: remote extents fail with EIO" \
	within $((3 * PEER_S + 10)) logged \
	"device $DST2: post-copy migration failed: .*the extents still on the source fail with EIO"
guest_eio() { guest_console dst2 | grep -Eq '^(rerr|werr) [0-9]+ 5$'; }
check "the guest on $DST2 gets EIO for the extents still remote" within 120 guest_eio
check "$DST ends failed" within $((3 * PEER_S + 10)) state_is "$DST" failed
check_fails "$DST refuses writes (fenced)" dd if=/dev/zero of="/dev/mapper/$DST" bs=4k count=1 \
	seek=100 oflag=direct status=none
a=$(guest_last_ack dst2)
sleep 5
tap_diag "the guest on $DST2 after the cut: acks $cut_ack..$(guest_last_ack dst2)," \
	"$(guest_console dst2 | grep -Ec '^(rerr|werr) [0-9]+ 5$') EIO," \
	"$(guest_console dst2 | grep -c '^rok ') reads right in all"
guest_qmp dst2 '{"execute": "quit"}' >/dev/null
wait_pid "$DST2_QEMU" 60 >/dev/null

# --- the disks, from the host ---------------------------------------------------
bad=$(cat "$tmp/src.console" "$tmp/dst.console" "$tmp/dst2.console" | tr -d '\r' |
	grep -E '^(rbad|ferr)' | head -n 5)
check "no console shows a block read back wrong (rbad)" test -z "$bad"
[ -z "$bad" ] || tap_diag "$bad"
verify() {	# verify <dm name> <eio out> <side>...: progs/guest-verify.py
	local dev=$1 out=$2 s cons=()
	shift 2
	for s in "$@"; do
		cons+=("$tmp/$s.console")
	done
	python3 "$RC_TREE/selftests/progs/guest-verify.py" "/dev/mapper/$dev" "$tmp/ref.img" \
		"$GUEST_OFF" "$GUEST_SLOTS" "$EXT" "$out" "${cons[@]}"
}
out=$(verify "$DST2" "$tmp/eio" src dst dst2)
check "$DST2: every extent reads right or fails with EIO, never other data" test $? -eq 0
tap_diag "$out"
check "... some fail with EIO ($(wc -l <"$tmp/eio"))" test -s "$tmp/eio"
check_eq "... exactly the kernel's remote set" \
	"$(remote_set | tr '\n' ' ')" "$(tr '\n' ' ' <"$tmp/eio")"
check_eq "$DST2 is still postcopy" postcopy "$(state "$DST2")"
out=$(verify "$DST" "$tmp/eio-dst" src dst)
check "$DST (the lost source) holds every block acknowledged before leg 2" test $? -eq 0
tap_diag "$out"
check "... and reads whole (nothing EIO)" test ! -s "$tmp/eio-dst"
tap_done
