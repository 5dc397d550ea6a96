#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=420
#
# Post-copy live migration whose source dies while the destination serves
# (remote-cow migrate --postcopy, remote-cow receive, one remote-cowd
# playing both sides over loopback TCP, lib-mig.sh).  One VM has one
# helper, so the source's death is its host going away without a word:
# every packet on lo dropped (mig_link_cut), never restored while the test
# looks.  remote-cowd's configuration says migrate_peer_timeout = 3s, the
# destination's fault_timeout is 4 s.
#
# The timing is made, not hoped for: 24 MiB written on the source (a
# reference read aside), loopback shaped to 8 Mbit/s, 'migrate --postcopy'
# and at once 'migrate finish --wait' (no pre-copy round to speak of), so
# nearly all of the 384 written extents are named remote when the
# destination serves; a read of a remote extent there is fetched on
# demand; then the cut, with the kernel's remote set (GET_RUNS of bitmap
# 19) still holding most of them.
#
# - the switch: finish --wait returns once the destination serves, both
#   sides postcopy, most written extents still remote;
# - a remote extent read on the destination before the cut: the source's
#   bytes (a FETCH ahead of the stream);
# - the cut: a read of a remote extent fails with EIO within 3 times
#   fault_timeout; the destination logs the lost source (remote extents
#   fail with EIO), the source ends failed, logs that the destination may
#   be serving, stays fenced (refuses writes) and still holds the
#   reference; a read of a remote extent then fails at once;
# - every extent of the destination read one by one: each reads exactly
#   the reference or fails with EIO, never other data; the extents that
#   fail are exactly the kernel's remote set, as many as migrate_total -
#   migrate_done; some written extents (moved before the cut) read right;
# - the destination is not done: still postcopy, migrate_done below
#   migrate_total; with the link back nothing changes (no resume: the
#   remote extents still fail, never read from the base).
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp psktool tc
require_built "$RC_TREE/selftests/progs/rcow-nl"
tap_plan 25

PORT=17771
PEER_S=3
FAULT_MS=4000
EXT=$((64 << 10))
W_FIRST=64			# the written region: extents 64..447 (4 MiB + 24 MiB)
W_COUNT=384
BM_REMOTE=19			# RCOW_BITMAP_MIGRATE_REMOTE
net_tmpdir
printf 'migrate_peer_timeout = %ss\n' "$PEER_S" >"$NET_WORKDIR/remote-cowd.conf"
mig_setup migrate-postcopy-source-lost --config "$NET_WORKDIR/remote-cowd.conf"

SRC="rc-pcl-src"
DST="rc-pcl-dst"
new_pair "$SRC" "$DST" "$FAULT_MS" || tap_bail "cannot set up the pair"
image_data "$MIG_TEST-24m" $((24 * MIB)) |
	dd of="/dev/mapper/$SRC" bs=1M seek=4 oflag=direct iflag=fullblock status=none ||
	tap_bail "cannot write the source"
dd if="/dev/mapper/$SRC" of="$tmp/ref.img" bs=1M iflag=direct status=none ||
	tap_bail "cannot read the source"
wait_until 10 listening "$DST" >/dev/null || tap_bail "remote-cowd does not listen for $DST"
DST_ID=$(nl_dev_id "$DST")
[ -n "$DST_ID" ] || tap_bail "no netlink id for $DST"
mig_link_shape 1ms 8mbit || tap_bail "cannot shape lo (tc netem)"

# remote_set: the destination kernel's remote extents (missing, named
# remote), one per line.
remote_set() {
	local r
	for r in $(nl_runs "$DST_ID" "$BM_REMOTE"); do
		seq "${r%+*}" $((${r%+*} + ${r#*+} - 1))
	done
}
# read_ext <extent> <out>: one extent of the destination, direct; dd's
# status, its messages in <out>.err.
read_ext() {
	dd if="/dev/mapper/$DST" of="$2" bs="$EXT" skip="$1" count=1 iflag=direct \
		status=none 2>"$2.err"
}
# ref_ext <extent> <out>: that extent of the reference.
ref_ext() { dd if="$tmp/ref.img" of="$2" bs="$EXT" skip="$1" count=1 status=none; }
# is_eio <out>: read_ext failed with EIO.
is_eio() { grep -q "Input/output error" "$1.err"; }

# --- the switch: nearly everything still on the source ----------------------------
check "migrate --postcopy: started" \
	"$RC" migrate "$SRC" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN" \
	--postcopy
check "finish at once: --wait returns once the destination serves" \
	timeout 120 "$RC" migrate "$SRC" finish --wait
check_eq "the destination: postcopy" postcopy "$(state "$DST")"
check_eq "the source: postcopy" postcopy "$(state "$SRC")"
named=$(rc_status "$DST" migrate_total)
check "most of the $W_COUNT written extents were still on the source (${named:-?} named)" \
	test "${named:-0}" -ge $((W_COUNT / 2))

# a remote extent read before the cut: fetched on demand, the source's bytes
first=$(remote_set | head -n 1)
ref_ext "${first:-0}" "$tmp/want"
read_ext "${first:-0}" "$tmp/got"
check "a remote extent ($first) read on the destination: the source's bytes" \
	cmp "$tmp/want" "$tmp/got"

# --- the source goes away ---------------------------------------------------------
# shellcheck disable=SC2207	# numbers, one per line
REMOTE=($(remote_set))
tap_diag "at the cut: ${#REMOTE[@]} extent(s) remote, $(rc_status "$DST" migrate_done) fetched"
mig_link_cut || tap_bail "cannot cut lo (tc netem)"
check "most written extents are still remote at the cut (${#REMOTE[@]})" \
	test "${#REMOTE[@]}" -ge $((W_COUNT / 2))
last=${REMOTE[${#REMOTE[@]} - 1]}
t0=$(date +%s%N)
read_ext "${last:-0}" "$tmp/got"
rc=$? took=$(ms_since "$t0")
check "a read of a remote extent ($last) right after the cut fails with EIO" \
	test "$rc" -ne 0 -a -n "$(is_eio "$tmp/got" && echo y)"
check "... within 3 times fault_timeout (${took} ms)" test "$took" -lt $((3 * FAULT_MS))
check "the destination logs the lost source: remote extents fail with EIO" \
	wait_until $((3 * PEER_S + 5)) logged \
	"device $DST: post-copy migration failed: .*the extents still on the source fail with EIO"
check "the source ends failed" wait_until $((3 * PEER_S + 5)) state_is "$SRC" failed
check "... and logs that the destination may be serving" \
	logged "$SRC: post-copy: the destination may be serving"
check_fails "the source refuses writes (still fenced)" \
	dd if=/dev/zero of="/dev/mapper/$SRC" bs=4k count=1 oflag=direct status=none
check "the source still holds the reference" cmp "$tmp/ref.img" "/dev/mapper/$SRC"
mid=${REMOTE[$((${#REMOTE[@]} / 2))]}
t0=$(date +%s%N)
read_ext "${mid:-0}" "$tmp/got"
rc=$? took=$(ms_since "$t0")
check "a read of another remote extent ($mid) now fails with EIO" \
	test "$rc" -ne 0 -a -n "$(is_eio "$tmp/got" && echo y)"
check "... at once, not after fault_timeout (${took} ms)" test "$took" -lt "$FAULT_MS"

# --- every extent: the reference or EIO, never other data -------------------------
# scan_all: each extent of the destination read (O_DIRECT, one at a
# time, python3: a process per extent is too slow under TCG); the extents
# that failed with EIO in $tmp/eio, those that read other data than the
# reference (or failed otherwise) in $tmp/bad; prints how many written
# extents read right.
scan_all() {
	python3 - "/dev/mapper/$DST" "$tmp/ref.img" "$EXT" "$W_FIRST" "$W_COUNT" \
		"$tmp/eio" "$tmp/bad" <<'EOF'
import errno, mmap, os, sys
dev, ref, ext, wfirst, wcount, eio_out, bad_out = sys.argv[1:]
ext, wfirst, wcount = int(ext), int(wfirst), int(wcount)
want = open(ref, "rb").read()
fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, ext)
eio, bad, ok = [], [], 0
for e in range(len(want) // ext):
    try:
        n = os.preadv(fd, [buf], e * ext)
    except OSError as x:
        if x.errno == errno.EIO:
            eio.append("%d\n" % e)
        else:
            bad.append("%d: %s\n" % (e, x))
        continue
    if n != ext or buf[:] != want[e * ext:(e + 1) * ext]:
        bad.append("%d: other data (%d bytes)\n" % (e, n))
    elif wfirst <= e < wfirst + wcount:
        ok += 1
open(eio_out, "w").writelines(eio)
open(bad_out, "w").writelines(bad)
print(ok)
EOF
}
WRITTEN_OK=$(scan_all) || tap_bail "cannot scan the destination"
check "no extent of the destination reads other data than the reference" \
	test ! -s "$tmp/bad"
[ ! -s "$tmp/bad" ] || tap_diag "$(head -n 5 "$tmp/bad")"
eio=$(wc -l <"$tmp/eio")
check "some extents fail with EIO (${eio})" test "$eio" -gt 0
check_eq "the extents that fail are exactly the kernel's remote set" \
	"$(remote_set | tr '\n' ' ')" "$(tr '\n' ' ' <"$tmp/eio")"
check "some written extents moved before the cut read right (${WRITTEN_OK})" \
	test "$WRITTEN_OK" -gt 0
total=$(rc_status "$DST" migrate_total) done_=$(rc_status "$DST" migrate_done)
check_eq "as many fail as migrate_total - migrate_done ($done_/$total)" \
	$((total - done_)) "$eio"
check_eq "the destination is not done: still postcopy" postcopy "$(state "$DST")"
check "... with extents left (migrate_done below migrate_total)" test "$done_" -lt "$total"

# --- the link back: no resume, still never base data ------------------------------
mig_link_restore || tap_bail "cannot restore lo"
sleep 1
read_ext "${last:-0}" "$tmp/got"
rc=$?
check "with the link back, a remote extent still fails with EIO (no resume)" \
	test "$rc" -ne 0 -a -n "$(is_eio "$tmp/got" && echo y)"
check_eq "... and the destination is still postcopy" postcopy "$(state "$DST")"

tap_done
