#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=600
#
# Post-copy's background stream rate limit (remote-cowd's
# migrate_postcopy_rate, --migrate-postcopy-rate), end to end: one
# remote-cowd plays both sides over loopback TCP (lib-mig.sh), loopback
# shaped to 2 Mbit/s (4 extents a second) once the destination serves, the
# configuration saying 1M and the command line 64K (one 64 KiB extent a
# second: the option wins).
#
# - the source has 64 extents written, every other one from 4 MiB on;
#   migrate --postcopy and at once finish --wait, loopback at 256 kbit/s
#   with at most 4 packets queued until then (an extent every 2 s, and
#   little in flight: lo's packets are up to 64 KiB, so a queue of 64 held
#   the whole round, which then counted as sent): the destination serves
#   with most of them still remote, and logs the limit (65536 bytes/s);
# - a read of the last remote extent (O_DIRECT, as a guest's) is the
#   source's bytes and is answered within 5 s, where the stream would
#   take about a second per extent before it to get there;
# - over about 10 s the remote set (the kernel's, GET_RUNS of bitmap 19)
#   shrinks by no more than the rate allows (1 a second), plus the
#   bucket's burst (one extent), the read above and one of slack; and it
#   shrinks (the stream runs);
# - the migration completes (the destination idle, the source done) and
#   the destination equals the source byte for byte.
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp psktool tc
require_built "$RC_TREE/selftests/progs/rcow-nl"
tap_plan 14

PORT=17791
EXT=$((64 << 10))
RATE=$((64 << 10))		# bytes a second: one extent
W_EXTENTS=64			# written on the source: extents 64, 66, .. 190
WINDOW=10			# seconds the stream's pace is watched
READ_MS=5000			# a remote extent read is answered within
BM_REMOTE=19			# RCOW_BITMAP_MIGRATE_REMOTE
net_tmpdir
printf 'migrate_postcopy_rate = 1M\n' >"$NET_WORKDIR/remote-cowd.conf"
mig_setup migrate-postcopy-rate --config "$NET_WORKDIR/remote-cowd.conf" \
	--migrate-postcopy-rate 64K --migrate-peer-timeout 10s

SRC="rc-pcr-src"
DST="rc-pcr-dst"
make_cow $((DEV_BYTES + (4 << 20))) || tap_bail "cannot make the source's COW device"
at_exit "dm_remove $SRC"
"$RC" create "$SRC" --cow "$COW_DEV" --base "$BASE" >/dev/null ||
	tap_bail "cannot create the source"
# every other extent from 4 MiB on: runs of one extent, one DATA frame each,
# so that the round in flight stops at the finish after a frame or two (a
# run of 64 would go whole, as one frame of 4 MiB)
image_data "$MIG_TEST-src" $((W_EXTENTS * EXT)) >"$tmp/w.bin" || tap_bail "no data"
for ((i = 0; i < W_EXTENTS; i++)); do
	dd if="$tmp/w.bin" of="/dev/mapper/$SRC" bs="$EXT" skip="$i" seek=$((64 + 2 * i)) \
		count=1 oflag=direct status=none || tap_bail "cannot write the source"
done
new_dst "$DST" || tap_bail "cannot receive $DST"
wait_until 10 listening "$DST" >/dev/null || tap_bail "remote-cowd does not listen for $DST"
DST_ID=$(nl_dev_id "$DST")
[ -n "$DST_ID" ] || tap_bail "no netlink id for $DST"
mig_link_shape 2ms 256kbit 4 || tap_bail "cannot shape lo (tc netem)"

# remote_count: the destination kernel's remote extents.
remote_count() {
	local r n=0
	for r in $(nl_runs "$DST_ID" "$BM_REMOTE"); do
		n=$((n + ${r#*+}))
	done
	echo "$n"
}
# remote_last: the last of them.
remote_last() {
	local r last=
	for r in $(nl_runs "$DST_ID" "$BM_REMOTE"); do
		last=$((${r%+*} + ${r#*+} - 1))
	done
	echo "$last"
}

# --- the switch: most extents still on the source ---------------------------------
check "migrate --postcopy: started" \
	"$RC" migrate "$SRC" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN" \
	--postcopy
tf0=$(date +%s%N)
check "finish at once: --wait returns once the destination serves" \
	timeout 120 "$RC" migrate "$SRC" finish --wait
mig_link_shape 2ms 2mbit || tap_bail "cannot shape lo (tc netem)"
check_eq "the destination: postcopy" postcopy "$(state "$DST")"
t0=$(date +%s%N)
r0=$(remote_count)
# 83 s and 25 remote when the socket's send buffer held the round
# (remote-cowd without TCP_NOTSENT_LOWAT); 2.3 s and 64 with it
tap_diag "finish --wait took $(ms_since "$tf0") ms; $r0 remote at the switch"
check "the destination logs the limit, the option's over the configuration's" \
	logged "$DST: post-copy: background stream limited to $RATE bytes/s"
check "most of the $W_EXTENTS written extents are still remote ($r0)" \
	test "$r0" -ge $((W_EXTENTS / 2))

# --- a guest read is not held back ---------------------------------------------------
last=$(remote_last)
dd if="/dev/mapper/$SRC" of="$tmp/want" bs="$EXT" skip="${last:-0}" count=1 iflag=direct \
	status=none || tap_bail "cannot read the source"
t=$(date +%s%N)
dd if="/dev/mapper/$DST" of="$tmp/got" bs="$EXT" skip="${last:-0}" count=1 iflag=direct \
	status=none
rc=$? took=$(ms_since "$t")
check "a read of the last remote extent ($last) on the destination: the source's bytes" \
	test "$rc" -eq 0 -a -n "$(cmp -s "$tmp/want" "$tmp/got" && echo y)"
check "... answered within $READ_MS ms ($took ms; the stream would take about $r0 s to get there)" \
	test "$took" -lt "$READ_MS"

# --- the stream keeps to the rate -------------------------------------------------------
sleep "$WINDOW"
r1=$(remote_count)
el=$(ms_since "$t0")
# the rate's extents over the time elapsed (rounded up), the burst (1), the read, 1 of slack
allowed=$(((el * RATE / EXT + 999) / 1000 + 3))
fell=$((r0 - r1))
check "in $el ms the remote set fell by at most $allowed extents ($r0 -> $r1: $fell)" \
	test "$fell" -le "$allowed"
check "... and it fell: the stream runs ($fell)" test "$fell" -ge 2
tap_diag "$(grep "$DST: post-copy" "$HELPER_LOG")"

# --- and the migration completes ------------------------------------------------------
t=$(date +%s%N)
check "the destination completes (idle)" wait_until 300 state_is "$DST" idle
tap_diag "the last $r1 remote extent(s) took $(ms_since "$t") ms"
check "the source is done" wait_until 60 state_is "$SRC" "done"
check "the destination logs the post-copy complete" logged "$DST: post-copy complete"
mig_check_moved "$SRC" "$DST"

tap_done
