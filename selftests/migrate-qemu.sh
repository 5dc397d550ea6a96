#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=1500
#
# A real QEMU guest moves, with its remote-cow disk, at QEMU's
# pause-before-switchover point (the switchover libvirt uses for its own
# storage migration).  One remote-cowd plays both sides over loopback TCP
# (lib-mig.sh); the guest runs under TCG inside the TCG test VM.
#
# - The source device SRC over a file:// base (8 MiB of it written before);
#   the guest (lib-guest.sh: Debian's kernel, a busybox initramfs) has
#   /dev/mapper/SRC as its virtio-blk disk (cache=none, aio=native), its
#   serial console in a file, QMP on a unix socket.  Its init writes
#   numbered, checksummed blocks: block k at 16 MiB + k * 4 KiB holds the
#   line "RCOWBLK k <sha256 of the rest>" padded to 128 bytes, then the
#   line "rcow block k" repeated to the end; written with O_DIRECT and
#   fsync, and only then "ack k" on the console; one block every 0.1 s or
#   so, until powered off.
# - The destination: 'remote-cow receive DST' (incoming, fault_timeout
#   DST_FAULT_MS: the destination's QEMU reads the disk's first sector when
#   it opens it with cache=none, an O_DIRECT alignment probe; the incoming
#   device holds that read, and fails it once fault_timeout is up, which
#   the probe takes as "aligned"; with no fault_timeout QEMU would never
#   start), and a second QEMU of the same configuration on
#   /dev/mapper/DST with -incoming.
# - With the guest writing: 'remote-cow migrate SRC'; QMP on the source:
#   pause-before-switchover, migrate; at status pre-switchover (the guest
#   paused, its disk drained and flushed) 'remote-cow migrate SRC finish
#   --wait', then migrate-continue.  The guest goes on on the destination:
#   new acks on the destination's console, past the last one on the
#   source's.
# - The destination guest is stopped (QMP quit) and /dev/mapper/DST is read
#   and checked block by block: every acknowledged block (the highest ack
#   on either console, and all below it) holds its number, its pattern and
#   a matching checksum; everywhere else (outside the blocks up to one past
#   the last ack, which may have been in flight) it equals the base with
#   the data written before; the source refuses writes, its state is done.
#
# Nested TCG is slow: the guest's boot takes about four minutes (seven with
# other VMs running on the machine), each RAM migration some seconds; the
# whole test eight or nine minutes.
# shellcheck disable=SC2317	# callbacks of wait_until and within
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"
. "$(dirname "$0")/lib-guest.sh"

require_vm
require_cmd dmsetup losetup dd qemu-system-x86_64 busybox cpio python3 modprobe psktool jq
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 32

PORT=17741		# remote-cowd's destination
QPORT=17742		# the destination QEMU's -incoming
DST_FAULT_MS=5000
GUEST_MEM=128		# MiB
GUEST_OFF=4096		# the guest's block k is 4 KiB block GUEST_OFF + k of the disk
GUEST_BLOCKS=4096	# at most (to the end of the 32 MiB disk)
GUEST_WAIT=${GUEST_WAIT:-900}	# seconds for the guest to boot
mig_setup migrate-qemu

SRC="rc-qm-src"
DST="rc-qm-dst"
new_pair "$SRC" "$DST" "$DST_FAULT_MS" || tap_bail "cannot set up the source and the destination"
wait_until 10 listening "$DST" >/dev/null || tap_bail "remote-cowd does not listen for $DST"
# what the disk holds outside the guest's blocks: the base, 8 MiB at 4 MiB
cp "$BASE_IMG" "$tmp/ref.img"
image_data "migrate-qemu-$SRC" $((8 * MIB)) |
	dd of="$tmp/ref.img" bs=1M seek=4 conv=notrunc iflag=fullblock status=none ||
	tap_bail "cannot make the reference"

# --- the guest ---------------------------------------------------------------
guest_kernel || tap_bail "no kernel for the guest"
guest_initramfs_tree "$tmp/ird" || tap_bail "cannot build the guest's initramfs"
GUEST_INITRD=$tmp/initrd.cpio
{
	guest_init_head
	cat <<EOF
OFF=$GUEST_OFF
MAX=$GUEST_BLOCKS
EOF
	cat <<'EOF'
echo "RCOW-GUEST-UP"
k=0
while [ $k -lt $MAX ]; do
	yes "rcow block $k" | head -c 3968 >/tmp/p
	sum=$(sha256sum </tmp/p)
	printf '%-127s\n' "RCOWBLK $k ${sum%% *}" >/tmp/b
	cat /tmp/p >>/tmp/b
	if dd if=/tmp/b of=/dev/vda bs=4096 seek=$((OFF + k)) count=1 oflag=direct \
		conv=notrunc,fsync 2>/tmp/err; then
		echo "ack $k"
	else
		echo "RCOW-GUEST write of block $k failed: $(cat /tmp/err)"
		break
	fi
	k=$((k + 1))
	usleep 100000
done
echo "RCOW-GUEST-DONE"
while :; do sleep 1000; done
EOF
} >"$tmp/ird/init"
guest_initramfs_pack "$tmp/ird" "$GUEST_INITRD" || tap_bail "cannot build the guest's initramfs"

guest_qmp_setup
at_exit "guest_keep_consoles src dst"

guest_boot src "$SRC" RCOW-GUEST-UP 4
SRC_QEMU=$QEMU_PID

# to_switchover <side> <dm name> <port> <qport>: a destination QEMU on
# /dev/mapper/<dm name> (made by receive, listening on <port>) waiting on
# <qport>; the storage migration to <port>, started while the guest
# writes; the guest's migration, paused before the switchover.  QEMU_PID is
# the destination's QEMU; bails out when the guest does not get there.
to_switchover() {
	local side=$1 dev=$2 port=$3 qport=$4 t a st r
	t=$(secs)
	guest_qemu_start "$side" "$dev" -incoming "tcp:127.0.0.1:$qport"
	if st=$(guest_qmp "$side" --wait-up 300); then
		tap_ok "the destination QEMU waits for the guest on $dev: $(jq -r .status <<<"$st") (up in $(since "$t") s)"
	else
		tap_not_ok "the destination QEMU waits for the guest on $dev" "$(cat "$tmp/$side.out")"
		tap_bail "no destination QEMU"
	fi
	# the storage migration, while the guest writes
	check "remote-cow migrate $SRC to $dev: started while the guest writes" \
		"$RC" migrate "$SRC" --to "127.0.0.1:$port" --psk "$tmp/key.psk" --run-dir "$RUN"
	check "the first round went by (the 8 MiB written before)" \
		wait_until 120 sent_past "$SRC" 127
	a=$(guest_last_ack src)
	check "... the guest goes on writing (acks past $a)" within 60 guest_acks_past src $((a + 2))
	# the guest's migration, paused before the switchover
	t=$(secs)
	check "QMP: migrate to the destination QEMU" guest_qmp src \
		"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"tcp:127.0.0.1:$qport\"}}"
	if r=$(guest_qmp src --wait-migrate pre-switchover 600); then
		tap_ok "the guest's migration reaches pre-switchover ($(since "$t") s; state of $SRC: $(state "$SRC"))"
	else
		tap_not_ok "the guest's migration reaches pre-switchover" "$r" \
			"$(cat "$tmp/src.out" "$tmp/$side.out")"
		tap_bail "no switchover"
	fi
}

check "QMP: pause-before-switchover" guest_qmp src \
	'{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "pause-before-switchover", "state": true}]}}'
guest_qmp src '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1073741824, "downtime-limit": 1000}}' >/dev/null

# --- abort at the switchover point ---------------------------------------------
ABORTED="rc-qm-aborted"
new_dst "$ABORTED" "$DST_FAULT_MS" $((PORT + 2)) || tap_bail "cannot receive $ABORTED"
wait_until 10 listening "$ABORTED" >/dev/null || tap_bail "remote-cowd does not listen for $ABORTED"
to_switchover aborted "$ABORTED" $((PORT + 2)) $((QPORT + 2))
ABORTED_QEMU=$QEMU_PID
check "QMP: migrate_cancel" guest_qmp src '{"execute": "migrate_cancel"}'
check "remote-cow migrate $SRC abort" "$RC" migrate "$SRC" abort
check "the guest's migration is cancelled" guest_qmp src --wait-migrate cancelled 120
a=$(guest_last_ack src)
check "the guest goes on on the source (acks past $a)" within 120 guest_acks_past src $((a + 2))
check_eq "$SRC is idle (writable)" idle "$(state "$SRC")"
check_eq "$ABORTED stays incoming" incoming "$(state "$ABORTED")"
check_fails "... and serves nothing (a read fails at its fault_timeout)" \
	dd if="/dev/mapper/$ABORTED" of=/dev/null bs=4k count=1 iflag=direct status=none
wait_pid "$ABORTED_QEMU" 60 >/dev/null
rc=$?
check "its QEMU, its migration cut, exits (status $rc)" test "$rc" -ne 124
dm_remove "$ABORTED"

# --- the migration ------------------------------------------------------------------
to_switchover dst "$DST" "$PORT" "$QPORT"
DST_QEMU=$QEMU_PID
src_ack=$(guest_last_ack src)
t=$(secs)
check "remote-cow migrate $SRC finish --wait (the guest paused): done" \
	timeout 300 "$RC" migrate "$SRC" finish --wait
tap_diag "storage finish took $(since "$t") s; last ack on the source: $src_ack"
check_eq "$DST serves (no longer incoming)" idle "$(state "$DST")"
check "QMP: migrate-continue" guest_qmp src \
	'{"execute": "migrate-continue", "arguments": {"state": "pre-switchover"}}'
if r=$(guest_qmp src --wait-migrate completed 300); then
	tap_ok "the guest's migration completes ($(jq -r '"downtime \(.downtime) ms, total \(."total-time") ms"' <<<"$r"))"
else
	tap_not_ok "the guest's migration completes" "$r" "$(cat "$tmp/src.out" "$tmp/dst.out")"
fi
check "the guest goes on on the destination: new acks past $src_ack" \
	within 120 guest_acks_past dst $((src_ack + 3)) ||
	guest_why dst "$DST_QEMU" "$DST: $(dmsetup status "$DST" 2>&1)" \
		"remote-cowd's last lines:" "$(tail -n 20 "$HELPER_LOG")"
st=$(guest_qmp dst '{"execute": "query-status"}' 2>&1)
check_eq "the destination's QEMU runs" running "$(jq -r .status <<<"$st" 2>/dev/null || echo "$st")"

# --- the disk, block by block --------------------------------------------------
guest_qmp dst '{"execute": "quit"}' >/dev/null
guest_qmp src '{"execute": "quit"}' >/dev/null
wait_pid "$DST_QEMU" 60 >/dev/null
wait_pid "$SRC_QEMU" 60 >/dev/null
tap_diag "the guest's messages on the destination:" \
	"$(grep -a "RCOW-GUEST" "$tmp/dst.console" | tr -d '\r' | head -n 5)"
max=$(guest_last_ack src)
[ "$(guest_last_ack dst)" -gt "$max" ] && max=$(guest_last_ack dst)
# (a read error leaves the image short: the checks below fail)
dd if="/dev/mapper/$DST" of="$tmp/dst.img" bs=1M iflag=direct status=none ||
	tap_diag "cannot read $DST"
cat >"$tmp/verify.py" <<'EOF'
import hashlib, sys

img = open(sys.argv[1], "rb").read()
ref = open(sys.argv[2], "rb").read()
off, acked = int(sys.argv[3]) * 4096, int(sys.argv[4])
bad = []
for k in range(acked + 1 if sys.argv[5] == "blocks" else 0):
    blk = img[off + k * 4096:off + (k + 1) * 4096]
    head, data = blk[:128].decode("latin-1").split(), blk[128:]
    pattern = (b"rcow block %d\n" % k) * (4096 // 8)
    if (len(head) != 3 or head[0] != "RCOWBLK" or head[1] != str(k)
            or hashlib.sha256(data).hexdigest() != head[2] or data != pattern[:3968]):
        bad.append(k)
if bad:
    print("%d of %d acknowledged blocks wrong, the first: %s" % (len(bad), acked + 1, bad[:10]))
end = off + (acked + 2) * 4096
if sys.argv[5] == "rest" and (len(img) != len(ref) or img[:off] != ref[:off] or img[end:] != ref[end:]):
    print("outside the guest's blocks the disk differs from the base")
    bad.append(-1)
sys.exit(1 if bad else 0)
EOF
if out=$(python3 "$tmp/verify.py" "$tmp/dst.img" "$tmp/ref.img" "$GUEST_OFF" "$max" blocks 2>&1); then
	tap_ok "$DST holds every acknowledged block (0 to $max), number, pattern and checksum"
else
	tap_not_ok "$DST holds every acknowledged block (0 to $max)" "$out"
fi
check "... and the base elsewhere (the blocks past $((max + 1)) never written)" \
	python3 "$tmp/verify.py" "$tmp/dst.img" "$tmp/ref.img" "$GUEST_OFF" "$max" rest
check_fails "the source refuses writes" dd if=/dev/zero of="/dev/mapper/$SRC" bs=4k count=1 \
	seek=100 oflag=direct status=none
check_eq "... its state is done" "done" "$(state "$SRC")"
tap_done
