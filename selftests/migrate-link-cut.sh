#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# Live migration (remote-cow migrate / receive, one remote-cowd playing
# both sides over loopback TCP, lib-mig.sh) with the network between the
# source and the destination cut mid-copy, while fio writes to the source.
# remote-cowd runs with --migrate-peer-timeout 12s (its configuration file
# says 60s: the command line wins).  The cut drops every packet on lo
# (mig_link_cut: nobody is told, as with a dead link).
#
# - a short cut (3 s, shorter than the timeout): nothing is marked sent
#   while it lasts; then TCP recovers and the rounds go on (copying, or
#   mirroring once the rounds stop shrinking), nothing failed;
#   'migrate finish --wait' ends done and the destination equals, byte for
#   byte, a reference read from the source after the fence;
# - a long cut (longer than the timeout), with 'migrate finish' given
#   during it (the source fenced, fio's writes failing, or held by
#   mirroring until the end; fio then stopped): the source's migration
#   fails about the timeout after the cut, never done ('finish --wait'
#   exits 1, the state is failed, the kernel and remote-cowd logged that
#   the peer answered nothing for 12 s); the fence is lifted: the source
#   still equals the reference read once the guest stopped, and takes
#   writes again; the destination noticed the dead peer too, logged that it stays
#   incoming, and is still incoming once the link is back: nothing
#   half-migrated is called done;
# - an idle migration (nothing to send: only keepalive probes on the
#   link) and a cut of 8 s, two thirds of the timeout: 8 s after it
#   neither side gave up, a write then goes across, 'migrate finish
#   --wait' ends done and the destination equals the source.
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp fio psktool tc
tap_plan 35

PORT=17721
TIMEOUT_S=12
net_tmpdir
printf 'migrate_peer_timeout = 60s\n' >"$NET_WORKDIR/remote-cowd.conf"
mig_setup migrate-link-cut --config "$NET_WORKDIR/remote-cowd.conf" \
	--migrate-peer-timeout "${TIMEOUT_S}s"
migrate() {
	"$RC" migrate "$1" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN"
}
done_now() { rc_status "$1" migrate_done; }

# --- a short cut ------------------------------------------------------------------
SRC="rc-cut-src"
DST="rc-cut-dst"
new_pair "$SRC" "$DST" || tap_bail "cannot set up the first pair"
wait_until 10 listening "$DST" >/dev/null || tap_bail "remote-cowd does not listen for $DST"
mig_fio "$SRC"
sleep 1
check "migrate while fio writes: started" migrate "$SRC"
check "rounds go by (migrate_done past the first 8 MiB)" wait_until 120 sent_past "$SRC" 128
mig_link_cut || tap_bail "cannot cut lo (tc netem)"
sleep 1
d0=$(done_now "$SRC")
sleep 2
d1=$(done_now "$SRC")
mig_link_restore || tap_bail "cannot restore lo"
check_eq "a 3 s cut: nothing marked sent while it lasts" "$d0" "$d1"
check "after it TCP recovers: rounds go on (migrate_done past $d1 + 64)" \
	wait_until 60 sent_past "$SRC" $((d1 + 64))
# Still running: copying, or mirroring if the rounds stopped shrinking
# (fio outruns a loaded emulator's loopback, cut or not).  If not, the
# description carries remote-cowd's reason (a CI log keeps only that).
st=$(state "$SRC")
why=$(grep -E "$SRC: migration to|$DST: migration not received" "$HELPER_LOG" | tr "\n" " " | cut -c1-600)
check "... still copying or mirroring (state: $st${why:+; $why})" \
	test "$st" = copying -o "$st" = mirroring
check_fails "... neither side gave up" grep -E "$SRC: migration to|$DST: migration not received" \
	"$HELPER_LOG"
check "migrate finish --wait: done" "$RC" migrate "$SRC" finish --wait
mig_fio_stop
dd if="/dev/mapper/$SRC" of="$tmp/ref" bs=1M iflag=direct status=none
check_eq "the destination is no longer incoming" idle "$(state "$DST")"
check "the destination equals the source byte for byte" cmp "$tmp/ref" "/dev/mapper/$DST"
check_eq "... and holds every written extent" "$(rc_status "$SRC" written)" \
	"$(rc_status "$DST" written)"

# --- a long cut ----------------------------------------------------------------
SRC2="rc-cut-src2"
DST2="rc-cut-dst2"
wait_until 10 test ! -e "$RUN/migrate/recv-$DST" >/dev/null
new_pair "$SRC2" "$DST2" || tap_bail "cannot set up the second pair"
wait_until 10 listening "$DST2" >/dev/null || tap_bail "remote-cowd does not listen for $DST2"
mig_fio "$SRC2"
sleep 1
check "migrate the second pair while fio writes" migrate "$SRC2"
check "rounds go by" wait_until 120 sent_past "$SRC2" 128
kmsg_mark
mig_link_cut || tap_bail "cannot cut lo (tc netem)"
t0=$(date +%s)
# finish --wait in the background; its exit status and the time it ended
# in fin.end (the test's own polling may be slow on a loaded host)
("$RC" migrate "$SRC2" finish --wait >"$tmp/finish.out" 2>&1
 echo "$? $(date +%s)" >"$tmp/fin.end") &
FIN=$!
at_exit "kill $FIN 2>/dev/null"
check "a long cut, finish given during it: the source is fenced (finishing)" \
	wait_until 10 state_is "$SRC2" finishing
# The guest stops.  A write after the fence fails; one that mirroring held
# when the fence came (its data already on the source) completes when the
# migration ends, and the fence is lifted then: fio would write on.  So
# stop it (its job process too: fio forks one) and wait until none is left.
fio_gone() { ! pgrep -f -- "--filename=/dev/mapper/$1" >/dev/null; }
pkill -INT -f -- "--filename=/dev/mapper/$SRC2"
check "the guest (fio) stops" wait_until $((4 * TIMEOUT_S)) fio_gone "$SRC2"
dd if="/dev/mapper/$SRC2" of="$tmp/ref2" bs=1M iflag=direct status=none
wait_pid "$FIN" $((4 * TIMEOUT_S))
{ read -r fin_rc t1 <"$tmp/fin.end"; } 2>/dev/null
check_eq "migrate finish --wait exits 1: not done" "1 failed" "$fin_rc $(state "$SRC2")"
check "... about the timeout after the cut ($((${t1:-0} - t0)) s, timeout $TIMEOUT_S s)" \
	between $((${t1:-0} - t0)) $((TIMEOUT_S - 2)) $((3 * TIMEOUT_S))
check "... remote-cowd logged why" \
	grep -q "$SRC2: migration to 127.0.0.1:$PORT failed: .*answered nothing for $TIMEOUT_S.0 s (migrate_peer_timeout)" \
	"$HELPER_LOG"
expect_dmesg "... and the kernel, with the helper's reason" \
	"$SRC2: migration to 127.0.0.1:$PORT failed: the helper reports error [0-9]+: .*migrate_peer_timeout"
expect_no_dmesg "... never done" "$SRC2: migration to .* done"
check "the source's data is intact (equals the reference read once the guest stopped)" \
	cmp "$tmp/ref2" "/dev/mapper/$SRC2"
head -c 4096 /dev/urandom >"$tmp/block"
check "the source takes writes again" dd if="$tmp/block" of="/dev/mapper/$SRC2" bs=4k \
	seek=100 oflag=direct status=none
dd if="/dev/mapper/$SRC2" of="$tmp/back" bs=4k skip=100 count=1 iflag=direct status=none
check "... which read back" cmp "$tmp/block" "$tmp/back"
check "the destination noticed the dead peer and stays incoming, the log says so" \
	wait_until $((3 * TIMEOUT_S)) logged \
	"$DST2: migration not received: .*migrate_peer_timeout.*; the device stays incoming"
mig_link_restore || tap_bail "cannot restore lo"
sleep 2
check_eq "with the link back: the destination is still incoming, the source failed" \
	"incoming failed" "$(state "$DST2") $(state "$SRC2")"
check_fails "no line of remote-cowd calls either side's migration done" \
	grep -E "$SRC2: migration to .* done|$DST2: migration received" "$HELPER_LOG"
expect_no_dmesg "... nor of the kernel (the destination never completed)" \
	"$DST2: incoming migration complete"
check "abort returns the source to idle" "$RC" migrate "$SRC2" abort
check_eq "... its state" idle "$(state "$SRC2")"

# --- an idle migration, a cut of two thirds of the timeout --------------------
# Nothing to send (no fio): only keepalive probes cross the link, and the
# first one after the cut is answered.  A probe every twelfth of the
# timeout (1 s here) finds the link back long before the timeout; with a
# probe every third of it (4 s), the cut lost the two probes after the
# last one answered and both sides died at the timeout, the link back
# for seconds by then.
PORT=$((PORT + 1))
SRC3="rc-cut-src3"
DST3="rc-cut-dst3"
new_pair "$SRC3" "$DST3" || tap_bail "cannot set up the third pair"
wait_until 10 listening "$DST3" >/dev/null || tap_bail "remote-cowd does not listen for $DST3"
check "an idle migration (no writes): started" migrate "$SRC3"
check "... its first round goes (the 8 MiB written)" wait_until 60 sent_past "$SRC3" 127
sleep 3		# the link quiet but for the probes
mig_link_cut || tap_bail "cannot cut lo (tc netem)"
sleep 8
mig_link_restore || tap_bail "cannot restore lo"
sleep 8		# the cut's start plus the timeout is past
st=$(state "$SRC3")
why=$(grep -E "$SRC3: migration to|$DST3: migration not received" "$HELPER_LOG" | tr "\n" " " |
	cut -c1-600)
check "an 8 s cut (timeout $TIMEOUT_S s), 8 s after it: still copying or mirroring (state: $st${why:+; $why})" \
	test "$st" = copying -o "$st" = mirroring
check_fails "... neither side gave up" grep -E "$SRC3: migration to|$DST3: migration not received" \
	"$HELPER_LOG"
d=$(done_now "$SRC3")
image_data "$MIG_TEST-$SRC3-after" $((64 << 10)) |
	dd of="/dev/mapper/$SRC3" bs=64k seek=300 oflag=direct iflag=fullblock status=none
check "... a write after it goes across (migrate_done past $d)" wait_until 60 sent_past "$SRC3" "$d"
check "migrate finish --wait: done" "$RC" migrate "$SRC3" finish --wait
dd if="/dev/mapper/$SRC3" of="$tmp/ref3" bs=1M iflag=direct status=none
check "the destination equals the source byte for byte" cmp "$tmp/ref3" "/dev/mapper/$DST3"
tap_done
