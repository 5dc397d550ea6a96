#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=600
#
# Crash consistency.  The COW device of a remote-cow device is a
# dm-log-writes device (over a null_blk device that takes FLUSH and FUA,
# logging to a loop device), so every write that reaches the COW device
# (the target's data and metadata, the helpers' fills) is recorded in the
# order it became durable: a plain write at the next flush after it
# completed, a FUA write when it completed.
#
# The workload runs in steps while extents are still missing: the base is
# behind dm-delay and the helper is slow, so guest reads, partial writes,
# whole-extent writes, FUA writes, buffered writes and fio's fsyncs race
# with the fills.  Steps 1-3 are served by rcow-fill (one fill at a time,
# --delay-ms), steps 4 on by remote-cowd (parallel reads and its writer
# threads).  Two "quiet" steps only overwrite extents already PRESENT and
# WRITTEN and then fsync: no bit changes, so only the flush itself makes
# their data durable.  Each step ends with its flush (an fsync of the
# device, or the FUA writes' own), then a mark "cc-<step>" in the log, and
# the expected content of every extent is recorded (the reference), as is
# every content an extent goes through during a step.
#
# A step's acknowledgement point A(k) is the last FLUSH entry before its
# mark (the last FLUSH or FUA entry for a step acknowledged by FUA writes):
# whatever the guest had been told was durable is in the log by then.  The
# log is then replayed onto a fresh image (selftests/progs/lw-replay) and
# a remote-cow device loaded over it, as after a power cut, at
#
#  - every FLUSH and FUA entry (points with nothing new are left out): the
#    durable prefix of the log;
#  - every flush epoch, as a disk that lost or reordered the epoch's data
#    writes would leave it: the prefix up to the previous FLUSH entry plus
#    only the epoch's writes to the metadata area (below the data offset;
#    lw-replay --unflushed-below).
#
# At each point, with k the last step whose A(k) the point's durable data
# reaches:
#  (a) an extent not written in step k+1 reads the reference of step k; one
#      written in step k+1 reads the reference of step k or a content it
#      went through in step k+1 (reads: the COW data when PRESENT, else the
#      base, which the helper would fill in);
#  (b) no PRESENT extent points at unfilled data: its COW data is a content
#      the extent had (never zeroes or some other extent's data);
#  (c) change tracking is exact: every extent written up to step k is
#      WRITTEN and in DIRTY_COMMIT, and no extent is in either unless it
#      was written up to step k+1 (the writes in flight), clean shutdown
#      or not (extents only filled from the base never are);
# and at each A(k) the whole device is also read through the target.
# The PRESENT, WRITTEN and DIRTY_COMMIT bitmaps come from rcow-nl
# get-bitmap; a failure
# to read them fails the point.  (d) reports (a)-(c) for the epoch points.
# Two lanes check the points in parallel.  Documentation/testing.rst has
# the design and what deliberate breakage it catches.
#
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks
. "$(dirname "$0")/lib.sh"
RCOW_FILL=${RCOW_FILL:-$RC_TREE/selftests/progs/rcow-fill}
RCOWD=${RCOWD:-$RC_TREE/userspace/remote-cowd}
RCOW_HELPER=$RCOW_FILL
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp fio od mount mountpoint
tap_plan 18

NAME="rc-cc"			# the remote-cow device of the workload
LWNAME="rc-cc-log"		# the log-writes device under it
RNAME="rc-cc-replay"		# the remote-cow device over a replayed COW
BNAME="rc-cc-base"		# the base: dm-delay over the image
NULLB=rcow-cc			# the null_blk data device under log-writes
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
NEXT=64
BASE_BYTES=$((NEXT * EXTB))	# 4 MiB
LEN=$((BASE_BYTES / 512))
COW_MB=6			# 1 MiB metadata + data, with room
COW_BYTES=$((COW_MB << 20))
LOG_BYTES=$((256 << 20))
BASE_DELAY_MS=200		# every read of the base
FILL_DELAY_MS=100		# and rcow-fill's own, before each fill
FAULT_MS=60000			# no read waits forever, whatever happens
LWR=$RC_TREE/selftests/progs/lw-replay
NL=$RC_TREE/selftests/progs/rcow-nl
SB_MAGIC=1464812370		# 0x574f4352, "RCOW" little-endian

require_built "$LWR" "$NL" "$RCOW_FILL" "$RCOWD"
load_module || tap_bail "cannot load $RC_MODULE"
require_dm_target log-writes
require_dm_target delay

net_tmpdir
tmp=$NET_WORKDIR
base=$tmp/base.img
ref=$tmp/ref.img
make_base_image "$base" "$BASE_BYTES" crash-consistency >/dev/null ||
	tap_bail "cannot make the base image"
base_sum=$(sha256_of "$base")
cp "$base" "$ref"

# ---------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------

# The data device: null_blk, memory backed with a write cache, so it takes
# FLUSH and FUA (a loop device has no FUA: the target's FUA paths would
# never run).
out=$(modprobe null_blk nr_devices=0 2>&1) ||
	tap_bail "missing kernel module: modprobe null_blk failed: $out"
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config ||
	tap_bail "cannot mount configfs"
nb=/sys/kernel/config/nullb/$NULLB
[ ! -e "$nb" ] || rmdir "$nb"
mkdir "$nb" || tap_bail "cannot make null_blk device $NULLB"
at_exit "rmdir $nb"
at_exit "echo 0 >$nb/power"
{ echo "$COW_MB" >"$nb/size" && echo 1 >"$nb/memory_backed" &&
	echo "$COW_MB" >"$nb/cache_size" && echo 512 >"$nb/blocksize" &&
	echo 1 >"$nb/power"; } || tap_bail "cannot configure null_blk device $NULLB"
data_dev=/dev/$NULLB
wait_until 5 test -b "$data_dev" || tap_bail "no $data_dev"

# attach <file> <bytes>: a loop device for the file in LOOP_DEV, detached at exit.
LOOP_DEV=
attach() {
	truncate -s "$2" "$1" || return 1
	LOOP_DEV=$(losetup -f --show "$1") || return 1
	at_exit "losetup -d '$LOOP_DEV'"
}
attach "$tmp/log.img" "$LOG_BYTES" || tap_bail "cannot attach the log loop device"
log_dev=$LOOP_DEV
base_loop=$(losetup -r -f --show "$base") || tap_bail "cannot attach the base"
at_exit "losetup -d '$base_loop'"
at_exit "dm_remove $BNAME"
dmsetup create --readonly "$BNAME" --table "0 $LEN delay $base_loop 0 $BASE_DELAY_MS" ||
	tap_bail "cannot create the dm-delay base"
URI=file:///dev/mapper/$BNAME

# Digests (lw-replay digest: one process, cheap under emulation).
# ext_digests <file or device> [byte offset] [--direct]: "<extent> <digest>"
# for the NEXT extents from the offset.
ext_digests() {
	"$LWR" digest "$1" --chunk "$EXTB" --offset "${2:-0}" --length "$BASE_BYTES" ${3:+"$3"}
}
ext_digests "$base" >"$tmp/base.hashes" || tap_bail "cannot digest the base"

# Written content comes from one pseudo-random pool (openssl is slow to
# start under emulation): seed n is the pool at n * 37 KiB.
image_data cc-pool $((2 << 20)) >"$tmp/pool" ||
	tap_bail "cannot make the data pool"

# ---------------------------------------------------------------------------
# The workload
# ---------------------------------------------------------------------------
dev=/dev/mapper/$NAME
step=0				# current step
ops=0				# operations issued (names of their files)
wl_errors=()			# operations that failed
live_errors=()			# live reads that differ from the reference
bgjobs=()			# background operations: "<pid>|<description>|<stderr file>"
reads=()			# background reads: "<first extent>|<count>|<data file>"
declare -A busy=()		# extents with a write in flight in this step
present_log=()			# "<step>:<present>" after each step
: >"$tmp/steps"			# "<step> sync|fua": how the step was acknowledged
: >"$tmp/touched.0"		# extents written in the step
: >"$tmp/inter.0"		# "<extent> <digest>": contents they went through
: >"$tmp/written.-1"
cp "$tmp/base.hashes" "$tmp/ref.-1"

# ref_note <first> <last>: the reference's extents first..last now hold
# content the step goes through.
ref_note() {
	local e
	"$LWR" digest "$ref" --chunk "$EXTB" --offset $(($1 * EXTB)) \
		--length $((($2 - $1 + 1) * EXTB)) --first-number "$1" >>"$tmp/inter.$step"
	for ((e = $1; e <= $2; e++)); do
		echo "$e" >>"$tmp/touched.$step"
	done
}

# claim <first> <last> <what>: writes in flight at the same time never
# share an extent (the reference could not tell their order).
claim() {
	local e
	for ((e = $1; e <= $2; e++)); do
		[ -z "${busy[$e]:-}" ] ||
			tap_bail "workload bug: step $step: $3 and ${busy[$e]} both write extent $e"
		busy[$e]=$3
	done
}

# spawn <description> <command...>: run in the background; its failure is
# a workload error at the end of the step.
spawn() {
	local desc=$1 err
	shift
	ops=$((ops + 1))
	err=$tmp/err.$ops
	"$@" 2>"$err" &
	bgjobs+=("$!|$desc|$err")
}

# wr <direct|fua|buffered> <KiB offset> <KiB> <seed> [bg]: write pool data
# (seed * 37 + KiB <= 2048) to the device and to the reference.  One
# write(2): one bio (direct, fua: O_DIRECT|O_DSYNC, a FUA write and then a
# flush) or whole pages (buffered, written back by the step's fsync).
wr() {
	local how=$1 off=$2 kib=$3 oflag=seek_bytes desc first last src=()
	desc="step $step: $how write of $kib KiB at $off KiB"
	first=$((off * 1024 / EXTB))
	last=$((((off + kib) * 1024 - 1) / EXTB))
	claim "$first" "$last" "$desc"
	case $how in
	direct) oflag+=,direct ;;
	fua) oflag+=,direct,dsync ;;
	esac
	# The source: the pool at seed * 37 KiB, read whole (fullblock).
	src=(if="$tmp/pool" "iflag=skip_bytes,fullblock" skip=$(($4 * 37 * 1024)) bs=$((kib * 1024))
		count=1 conv=notrunc status=none)
	if [ "${5:-}" = bg ]; then
		spawn "$desc" dd "${src[@]}" of="$dev" seek=$((off * 1024)) oflag="$oflag"
	elif ! dd "${src[@]}" of="$dev" seek=$((off * 1024)) oflag="$oflag" 2>"$tmp/dd.err"; then
		wl_errors+=("$desc: $(cat "$tmp/dd.err")")
	fi
	dd "${src[@]}" of="$ref" seek=$((off * 1024)) oflag=seek_bytes
	ref_note "$first" "$last"
}

# rd <first extent> [count]: a direct read of whole extents in the
# background; at the end of the step each must hold the reference of the
# step before or a content the extent went through in this step.
rd() {
	local n=${2:-1} f
	ops=$((ops + 1))
	f=$tmp/read.$ops
	spawn "step $step: read of extents $1+$n" dd if="$dev" of="$f" bs="$EXTB" skip="$1" \
		count="$n" iflag=direct status=none
	reads+=("$1|$n|$f")
}

# fio_w <KiB offset> <KiB>: fio writes 16 KiB blocks of a fixed pattern,
# O_DIRECT, with an fsync every 4 writes and at the end, in the background;
# every block's content is noted as the extent's content in turn.
fio_w() {
	local off=$1 kib=$2 b desc
	desc="step $step: fio of $kib KiB at $off KiB"
	claim $((off * 1024 / EXTB)) $(((off + kib) * 1024 / EXTB - 1)) "$desc"
	spawn "$desc" fio --name=cc --filename="$dev" --rw=write --bs=16k --ioengine=psync \
		--direct=1 --offset="${off}k" --size="${kib}k" --fsync=4 --end_fsync=1 \
		--buffer_pattern='"rcow-cc!"' --scramble_buffers=0 --output="$tmp/fio.out"
	yes 'rcow-cc!' | tr -d '\n' | head -c 16384 >"$tmp/fio.block"
	for ((b = off; b < off + kib; b += 16)); do
		dd if="$tmp/fio.block" of="$ref" bs=1K seek="$b" conv=notrunc status=none
		ref_note $((b * 1024 / EXTB)) $((b * 1024 / EXTB))
	done
}

# allowed <step>: "<extent> <digest>" of every content an extent may read at
# the end of the step or while it ran: the reference before it and what
# its writes made.
allowed() {
	cat "$tmp/ref.$(($1 - 1))" "$tmp/inter.$1"
}

# end_step <sync|fua>: wait for the step's operations, flush (sync: an fsync
# of the device; fua: the FUA writes were their own flush), mark the log,
# check the step's reads and the extents it wrote, record the reference.
end_step() {
	local j pid desc err r first n f out e d
	local -A refd=()
	for j in "${bgjobs[@]}"; do
		IFS='|' read -r pid desc err <<<"$j"
		wait "$pid" || wl_errors+=("$desc failed: $(cat "$err")")
	done
	bgjobs=()
	if [ "$1" = sync ] && ! sync "$dev" 2>"$tmp/sync.err"; then
		wl_errors+=("step $step: fsync failed: $(cat "$tmp/sync.err")")
	fi
	dmsetup message "$LWNAME" 0 mark "cc-$step" ||
		wl_errors+=("step $step: cannot mark the log")
	echo "$step $1" >>"$tmp/steps"
	ext_digests "$ref" >"$tmp/ref.$step"
	while read -r e d; do
		refd[$e]=$d
	done <"$tmp/ref.$step"
	sort -u "$tmp/touched.$step" -o "$tmp/touched.$step"
	sort -u -n "$tmp/touched.$step" "$tmp/written.$((step - 1))" -o "$tmp/written.$step"
	for r in "${reads[@]}"; do
		IFS='|' read -r first n f <<<"$r"
		out=$("$LWR" digest "$f" --chunk "$EXTB" --first-number "$first" 2>&1 |
			awk -v f="$first" -v n="$n" -v s="$step" '
				FILENAME == ARGV[1] { ok[$1 " " $2] = 1; next }
				{ e = $1; got++
				  if (!((e " " $2) in ok))
					printf "step %s: a read of extent %s returned content it never had\n", s, e }
				END { if (got != n) printf "step %s: read %d of %d extents from %s\n", s, got, n, f }
			' <(allowed "$step") -)
		[ -z "$out" ] || live_errors+=("$out")
	done
	reads=()
	while read -r e; do
		out=$("$LWR" digest "$dev" --direct --chunk "$EXTB" --offset $((e * EXTB)) \
			--length "$EXTB" --first-number "$e" 2>&1)
		if [ "$out" != "$e ${refd[$e]}" ]; then
			live_errors+=("after step $step extent $e differs from the reference ($out)")
		fi
	done <"$tmp/touched.$step"
	present_log+=("$step:$(present_extents "$NAME"):$(($(date +%s) - t0))s")
	busy=()
	step=$((step + 1))
	: >"$tmp/touched.$step"
	: >"$tmp/inter.$step"
}

# The log-writes device must be the COW device from the start, so the
# formatting is in the log too.
lw_table="0 $((COW_BYTES / 512)) log-writes $data_dev $log_dev"
table=$(rc_table "$LEN" "/dev/mapper/$LWNAME" "$EXT" "$URI" fault_timeout "$FAULT_MS")
at_exit "dm_remove $LWNAME"
at_exit "dm_remove $NAME"
at_exit "dm_remove $RNAME"
if dmsetup create "$LWNAME" --table "$lw_table" && dmsetup create "$NAME" --table "$table"; then
	tap_ok "remote-cow over dm-log-writes ($data_dev logging to $log_dev)"
else
	tap_bail "cannot create the log-writes and remote-cow devices"
fi
fua_of() {	# fua_of <dm name or /dev name>: queue/fua of the block device
	local b=$1
	dm_exists "$1" && b=$(dmsetup info -c --noheadings -o blkdevname "$1")
	cat "/sys/block/$b/queue/fua" 2>&1
}
check_eq "the COW device takes FUA (queue/fua of $NULLB, $LWNAME and $NAME)" "1 1 1" \
	"$(fua_of "$NULLB") $(fua_of "$LWNAME") $(fua_of "$NAME")"
helper_start --delay-ms "$FILL_DELAY_MS" || tap_bail "rcow-fill does not start"
DATA_OFFSET=$("$NL" devices | awk -v n="$NAME" '{
		delete kv
		for (i = 1; i <= NF; i++) { split($i, a, "="); kv[a[1]] = a[2] }
		if (kv["name"] == n) print kv["data_offset"] }')
[ -n "$DATA_OFFSET" ] || tap_bail "no data_offset for $NAME in: $("$NL" devices 2>&1)"
t0=$(date +%s)

# step 0: nothing written; the format and first commit are in the log.
end_step sync
# 1: everything missing.  Reads fault extents 0-2 in (rcow-fill answers
#    them one by one) while a partial write (3) waits for its fault,
#    whole-extent writes go straight to the COW device (4, and 8-9 in one
#    bio), FUA writes, whole (5) and partial (6), and a buffered page (7)
#    is written back by the fsync.
rd 0
rd 1
rd 2
wr direct 200 8 1 bg
wr direct 256 64 2 bg
wr fua 320 64 3 bg
wr fua 400 8 4 bg
wr buffered 452 4 5
wr direct 512 128 6 bg
end_step sync
# 2: faults of 10 and 11; a whole-extent write to 10 while its fault is
#    out (it waits for the fill, then overwrites it); partial writes over
#    present extents (0, FUA into 2), a FUA whole write over a written
#    one (4), whole and partial writes to missing extents (12, 13).
rd 10
rd 11
sleep 0.2
wr direct 640 64 7 bg
wr direct 0 16 8 bg
wr fua 130 8 9 bg
wr fua 256 64 10 bg
wr direct 768 64 11 bg
wr direct 840 8 12 bg
end_step sync
# 3: quiet: overwrites of extents already PRESENT and WRITTEN (on disk
#    since step 2's fsync), nothing else running: no bit changes, only
#    the fsync makes them durable.
wr direct 0 64 13
wr direct 260 8 14
wr direct 520 16 15
end_step sync

# From here remote-cowd answers: reads in parallel, fills in writer threads.
helper_stop
RCOW_HELPER=$RCOWD
helper_start || tap_bail "remote-cowd does not start"
# 4: eight faults at once (16-23) while whole-extent writes (24, 25-26),
#    a partial write (27), FUA writes whole (28) and partial (29), fio
#    with fsyncs (30-31) and a buffered page (32) race with the fills.
for e in 16 17 18 19 20 21 22 23; do
	rd "$e"
done
wr direct 1536 64 16 bg
wr direct 1600 128 17 bg
wr direct 1740 12 18 bg
wr fua 1792 64 19 bg
wr fua 1860 4 20 bg
fio_w 1920 128
wr buffered 2052 4 21
end_step sync
# 5: acknowledged by FUA alone (no fsync): FUA writes whole (35) and
#    partial (36) to missing extents and over a written one (24), while
#    33 and 34 fault in.
rd 33
rd 34
wr fua 2240 64 22 bg
wr fua 2310 8 23 bg
wr fua 1540 8 24 bg
end_step fua
# 6: quiet again, buffered: pages over written extents, then fsync.  The
#    fsync first settles what step 5's fills left to commit.
sync "$dev" || wl_errors+=("step 6: the first fsync failed")
wr buffered 1544 4 25
wr buffered 1616 4 26
wr buffered 1796 4 27
end_step sync
# 7: half a MiB of whole missing extents (44-51) in one bio and a partial
#    write (52) while 40-43 fault in.
for e in 40 41 42 43; do
	rd "$e"
done
wr direct 2816 512 28 bg
wr direct 3332 8 29 bg
end_step sync
# 8: a read of the whole device faults every extent still missing while
#    extent 1 is overwritten.
rd 0 "$NEXT"
wr direct 64 64 30 bg
end_step sync
last_step=$((step - 1))

out=$(ext_digests "$dev" 0 --direct 2>&1 | diff - "$tmp/ref.$last_step")
[ -z "$out" ] || live_errors+=("at the end the device differs from the reference: $out")
tap_diag "workload: $last_step steps in $(($(date +%s) - t0)) s; present after each step:" \
	"${present_log[*]}; status: $(dmsetup status "$NAME")"

if [ ${#wl_errors[@]} -eq 0 ]; then
	tap_ok "the workload's reads, writes and flushes succeed"
else
	tap_not_ok "the workload's reads, writes and flushes succeed" "${wl_errors[@]}"
fi
if [ ${#live_errors[@]} -eq 0 ]; then
	tap_ok "the live device reads the reference (every read, every written extent, the end)"
else
	tap_not_ok "the live device reads the reference" "${live_errors[@]}"
fi
# The fills raced with the guest's I/O only if extents were still missing
# late in the workload (after step 6: remote-cowd's prefetch may fill much
# of the rest in step 7), and all of them got filled in the end.
p6=${present_log[6]#*:}
p6=${p6%%:*}
p8=${present_log[8]#*:}
p8=${p8%%:*}
if [ "$p6" -lt "$NEXT" ] && [ "$p8" -eq "$NEXT" ]; then
	tap_ok "extents stay missing during the workload ($p6 of $NEXT present after step 6)"
else
	tap_not_ok "extents stay missing during the workload, all present at the end" \
		"present after each step: ${present_log[*]}"
fi
helper_stop
rcowd_stats=$HELPER_STATS
if [ "$(helper_stat answered "$tmp/helper.1.stats")" -ge 5 ] &&
	[ "$(helper_stat answered "$rcowd_stats")" -ge 10 ] &&
	[ "$(helper_stat fill_errors "$tmp/helper.1.stats")" -eq 0 ] &&
	[ "$(helper_stat fill_errors "$rcowd_stats")" -eq 0 ]; then
	tap_ok "both helpers filled extents without an error"
else
	tap_not_ok "both helpers filled extents without an error" \
		"rcow-fill: $(tr '\n' ' ' <"$tmp/helper.1.stats" 2>&1)" \
		"remote-cowd: $(tr '\n' ' ' <"$rcowd_stats" 2>&1)"
fi
tap_diag "remote-cowd: $(tr '\n' ' ' <"$rcowd_stats" 2>&1)"

# Removing both devices ends the log (log-writes' super then counts every
# entry; its last mark is dm-log-writes-end).
if ! dm_remove "$NAME" || ! dm_remove "$LWNAME"; then
	tap_bail "cannot remove the devices"
fi

"$LWR" list "$log_dev" >"$tmp/log.list" 2>"$tmp/lwr.err" ||
	tap_bail "lw-replay list: $(cat "$tmp/lwr.err")"
marks=$(awk '$4 == "MARK" && $5 ~ /^cc-/ { printf "%s ", $5 }' "$tmp/log.list")
expected_marks=$(for ((s = 0; s <= last_step; s++)); do printf 'cc-%d ' "$s"; done)
check_eq "the log holds the marks in order" "$expected_marks" "$marks"

# lw-replay itself: the whole log replayed equals the data device.
if "$LWR" replay "$log_dev" "$tmp/full.img" --size "$COW_BYTES" 2>"$tmp/lwr.err" &&
	cmp <(dd if="$data_dev" bs=1M count="$COW_MB" iflag=direct status=none) \
		"$tmp/full.img" >"$tmp/cmp.out" 2>&1; then
	tap_ok "the whole log replayed equals the COW device ($(wc -l <"$tmp/log.list") entries)"
else
	tap_not_ok "the whole log replayed equals the COW device" \
		"$(cat "$tmp/lwr.err" "$tmp/cmp.out")"
fi
rm -f "$tmp/full.img"

# ---------------------------------------------------------------------------
# The points to check
# ---------------------------------------------------------------------------
# Pass 1: A(k) of every step.  Pass 2, per entry: k (the last step whose
# A(k) is at or before it), and the points: "<entry> <k> full|ack|epoch".
#  - full: a FLUSH or FUA entry after some data since the previous point,
#    or whose k differs from it;
#  - ack: an A(k) (also read through the target);
#  - epoch: a FLUSH entry whose epoch (the entries since the previous
#    FLUSH) holds writes to both the metadata and the data area: replayed
#    with --unflushed-below, its k is that of the previous FLUSH entry.
awk -v data_off="$DATA_OFFSET" -v acks="$tmp/acks" '
	function kof(i,   k, best) {
		best = -1
		for (k in ack)
			if (ack[k] >= 0 && ack[k] <= i && k + 0 > best)
				best = k + 0
		return best
	}
	BEGIN { lastflush = -1; lastdur = -1 }
	FNR == 1 { pass++ }
	pass == 1 { how[$1] = $2; next }
	pass == 2 {
		if ($4 ~ /FLUSH/) lastflush = $1
		if ($4 ~ /FLUSH|FUA/) lastdur = $1
		if ($4 ~ /MARK/ && $5 ~ /^cc-/) {
			k = substr($5, 4) + 0
			ack[k] = how[k] == "fua" ? lastdur : lastflush
			isack[ack[k]] = 1
			printf "A(%d)=%d ", k, ack[k] >acks
		}
		next
	}
	pass == 3 && FNR == 1 { lastflush = -1; lastpk = -2; changed = 0; meta = 0; data = 0 }
	{
		if ($3 > 0 && $4 !~ /MARK/) {
			changed = 1
			if ($2 < data_off) meta = 1
			if ($2 + $3 > data_off) data = 1
		}
		if ($4 !~ /FLUSH|FUA/)
			next
		k = kof($1)
		if ($1 in isack) {
			print $1, k, "ack"
			changed = 0; lastpk = k
		} else if (changed || k != lastpk) {
			print $1, k, "full"
			changed = 0; lastpk = k
		}
		if ($4 ~ /FLUSH/) {
			if (lastflush >= 0 && meta && data)
				print $1, kof(lastflush), "epoch"
			lastflush = $1; meta = 0; data = 0
		}
	}
' "$tmp/steps" "$tmp/log.list" "$tmp/log.list" >"$tmp/points"
npoints=$(grep -c -E 'FLUSH|FUA' "$tmp/log.list")
nfua=$(awk -v d="$DATA_OFFSET" '$4 ~ /FUA/ && $3 > 0 && $2 >= d' "$tmp/log.list" | wc -l)
nfull=$(grep -c -v epoch "$tmp/points")
nepoch=$(grep -c epoch "$tmp/points")
# Epochs that mix metadata and data writes are rare when the target
# flushes its data before its bitmaps (guest writes that complete during
# a commit): their number is shown, not checked.
# The guest's O_DSYNC writes must reach the COW device as FUA writes, or
# the target's FUA paths were not tested.
if [ "$nfull" -gt "$last_step" ] && [ "$nfua" -gt 0 ]; then
	tap_ok "the log has $npoints FLUSH/FUA entries ($nfua FUA data writes): $nfull points to check"
else
	tap_not_ok "the log has points to check and FUA data writes" \
		"$nfull points, $nfua FUA data writes" "$(cat "$tmp/points")"
fi
tap_diag "acknowledgement points: $(cat "$tmp/acks")"

# ---------------------------------------------------------------------------
# Replay every point
# ---------------------------------------------------------------------------
# From here reads of the base need not be slow, and rcow-fill answers the
# reads through the replayed devices.
if ! { dmsetup suspend "$BNAME" &&
	dmsetup reload --readonly "$BNAME" --table "0 $LEN linear $base_loop 0" &&
	dmsetup resume "$BNAME"; }; then
	tap_bail "cannot reload the base without the delay"
fi
RCOW_HELPER=$RCOW_FILL
helper_start || tap_bail "rcow-fill does not start"

sort -u "$tmp"/ref.* "$tmp"/inter.* "$tmp/base.hashes" >"$tmp/accept"

# analyse <point> <k> <unclean> <present bits> <written bits> <dirty-commit
# bits>: stdin the digests of the replayed COW data area; one line per
# problem, "a|b|c <text>".
analyse() {
	local maybe=$tmp/written.$(($2 + 1))
	[ -e "$maybe" ] || maybe=$tmp/written.$2
	awk -v p="$1" -v k="$2" -v unclean="$3" -v pbits="$4" -v wbits="$5" -v dbits="$6" '
		FILENAME == ARGV[1] { ever[$1 " " $2] = 1; next }
		FILENAME == ARGV[2] { want[$1] = $2; next }
		FILENAME == ARGV[3] { moving[$1] = 1; ok[$1 " " $2] = 1; next }
		FILENAME == ARGV[4] { wrote[$1] = 1; next }
		FILENAME == ARGV[5] { maywrite[$1] = 1; next }
		FILENAME == ARGV[6] { base[$1] = $2; next }
		{
			e = $1
			present = substr(pbits, e + 1, 1) == "1"
			written = substr(wbits, e + 1, 1) == "1"
			dirty = substr(dbits, e + 1, 1) == "1"
			if (present && !((e " " $2) in ever))
				printf "b %s: PRESENT extent %s holds data it never had\n", p, e
			if ((e in wrote) && !written)
				printf "c %s: extent %s, written by step %s, is not WRITTEN%s\n", p, e, k, present ? "" : " (nor PRESENT)"
			if ((e in wrote) && !dirty)
				printf "c %s: extent %s, written by step %s, is not in DIRTY_COMMIT\n", p, e, k
			if ((written || dirty) && !(e in maywrite))
				printf "c %s: extent %s is WRITTEN=%d DIRTY_COMMIT=%d but was never written up to step %d (%s load)\n", p, e, written, dirty, k + 1, unclean ? "unclean" : "clean"
			h = present ? $2 : base[e]
			if (h == want[e] || ((e " " h) in ok))
				next
			if (e in moving)
				printf "a %s: extent %s (written in step %d) reads neither the reference of step %s nor a content of step %d (%s)\n", p, e, k + 1, k, k + 1, present ? "PRESENT" : "missing: base"
			else
				printf "a %s: extent %s differs from the reference of step %s (%s)\n", p, e, k, present ? "PRESENT" : "missing: base"
		}
	' "$tmp/accept" "$tmp/ref.$2" "$tmp/inter.$(($2 + 1))" "$tmp/written.$2" \
		"$maybe" "$tmp/base.hashes" -
}

# check_point <lane> <entry> <k> <full|ack|epoch>: replay onto the lane's
# image, load remote-cow over it, check (a) (b) (c) (epoch: reported as
# (d)); at an ack point also read the whole device through the target.
# Prints "<class> <text>" lines: load, nl, a, b, c, d (problems), unclean
# <entry>, sb <entry> <clean flag>, read <entry>.
check_point() {
	local l=$1 p=$2 k=$3 mode=$4 what magic flags out id pbits wbits dbits line args=() unclean=0
	local rp=$tmp/replay.$1.img rname=$RNAME-$1 lt=$tmp/lane.$1
	what="entry $p"
	if [ "$mode" = epoch ]; then
		what="epoch ending at entry $p (its data writes lost)"
		args=(--unflushed-below "$DATA_OFFSET")
	fi
	if ! "$LWR" replay "$log_dev" "$rp" --size "$COW_BYTES" --to "$p" "${args[@]}" \
		2>"$lt.err"; then
		echo "load $what: lw-replay: $(cat "$lt.err")"
		return
	fi
	read -r magic _ flags < <(od -An -tu4 -j4 -N12 "$rp")
	if [ "$magic" = "$SB_MAGIC" ]; then
		[ $((flags & 1)) -eq 1 ] || unclean=1
		[ "$unclean" = 0 ] || echo "unclean $p"
		[ "$mode" = epoch ] || echo "sb $p $((flags & 1))"
	fi
	if ! dmsetup create "$rname" --table "${rtable[$l]}" 2>"$lt.err"; then
		echo "load $what (step $k acknowledged): load refused: $(cat "$lt.err")"
		return
	fi
	id=$("$NL" devices | awk -v n="$rname" '{
		delete kv
		for (i = 1; i <= NF; i++) { split($i, a, "="); kv[a[1]] = a[2] }
		if (kv["name"] == n) print kv["dev_id"] }')
	if [ -z "$id" ] ||
		! pbits=$("$NL" get-bitmap "$id" present 0 2>&1) ||
		! wbits=$("$NL" get-bitmap "$id" written 0 2>&1) ||
		! dbits=$("$NL" get-bitmap "$id" dirty-commit 0 2>&1) ||
		[ "${dbits%% bits=*}" != "first=0 count=$NEXT" ] ||
		[ "${pbits%% bits=*}" != "first=0 count=$NEXT" ] ||
		[ "${wbits%% bits=*}" != "first=0 count=$NEXT" ]; then
		echo "nl $what: rcow-nl: dev_id '$id', present: $pbits, written: $wbits, dirty-commit: $dbits"
		dmsetup remove --retry "$rname" >/dev/null 2>&1 || echo "load $what: cannot remove $rname"
		return
	fi
	if ! ext_digests "$rp" $((DATA_OFFSET * 512)) >"$lt.cow"; then
		echo "load $what: cannot digest the replayed image"
	else
		out=$(analyse "entry $p" "$k" "$unclean" "${pbits#*bits=}" "${wbits#*bits=}" \
			"${dbits#*bits=}" \
			<"$lt.cow")
		while IFS= read -r line; do
			[ -n "$line" ] || continue
			if [ "$mode" = epoch ]; then
				echo "d ${line:0:1}: $what, step $k acknowledged:${line#*:}"
			else
				echo "$line"
			fi
		done <<<"$out"
	fi
	if [ "$mode" = ack ]; then
		if ! ext_digests "/dev/mapper/$rname" 0 --direct >"$lt.dev" 2>"$lt.err"; then
			echo "a $what: reading the device failed: $(cat "$lt.err")"
		else
			awk -v p="$p" -v pbits="${pbits#*bits=}" '
				FILENAME == ARGV[1] { base[$1] = $2; next }
				FILENAME == ARGV[2] { cow[$1] = $2; next }
				{
					want = substr(pbits, $1 + 1, 1) == "1" ? cow[$1] : base[$1]
					if ($2 != want)
						printf "a entry %s: extent %s reads neither its COW data nor the base\n", p, $1
				}' "$tmp/base.hashes" "$lt.cow" "$lt.dev"
			echo "read $p"
		fi
	fi
	dmsetup remove --retry "$rname" >/dev/null 2>&1 || echo "load $what: cannot remove $rname"
}

# Two lanes (the VM has two CPUs), each with its image, loop device and
# remote-cow name, take every other point.
rtable=()
for l in 0 1; do
	truncate -s "$COW_BYTES" "$tmp/replay.$l.img"
	rloop=$(losetup -f --show "$tmp/replay.$l.img") || tap_bail "cannot attach a replay image"
	at_exit "losetup -d '$rloop'"
	at_exit "dm_remove $RNAME-$l"
	rtable[l]=$(rc_table "$LEN" "$rloop" "$EXT" "$URI" fault_timeout "$FAULT_MS")
done
t0=$(date +%s)
lanes=()
for l in 0 1; do
	awk -v l="$l" 'NR % 2 == l' "$tmp/points" | while read -r p k mode; do
		check_point "$l" "$p" "$k" "$mode" </dev/null | while IFS= read -r line; do
			echo "$p $line"
		done
	done >"$tmp/lane.$l.out" &
	lanes+=("$!")
done
wait "${lanes[@]}"

load_errors=() nl_errors=() a_errors=() b_errors=() c_errors=() d_errors=()
unclean_points=0 final_clean='' last_sb=-1 nread=0
while read -r _ class rest; do
	case $class in
	load) load_errors+=("$rest") ;;
	nl) nl_errors+=("$rest") ;;
	a) a_errors+=("$rest") ;;
	b) b_errors+=("$rest") ;;
	c) c_errors+=("$rest") ;;
	d) d_errors+=("$rest") ;;
	unclean) unclean_points=$((unclean_points + 1)) ;;
	read) nread=$((nread + 1)) ;;
	sb)
		if [ "${rest% *}" -gt "$last_sb" ]; then
			last_sb=${rest% *}
			final_clean=${rest#* }
		fi
		;;
	*) load_errors+=("unexpected output of a lane: $class $rest") ;;
	esac
done < <(sort -s -n -k1,1 "$tmp/lane.0.out" "$tmp/lane.1.out")
tap_diag "checked $nfull points and $nepoch epochs in $(($(date +%s) - t0)) s" \
	"($unclean_points unclean, $nread read through the target)"

report() {	# report <desc> <errors...>: one check, the first errors shown
	local desc=$1
	shift
	if [ $# -eq 0 ]; then
		tap_ok "$desc"
	else
		tap_not_ok "$desc" "$# failures, the first:" "$(printf '%s\n' "${@:1:8}")"
	fi
}
report "every replayed point loads (unclean shutdown accepted)" "${load_errors[@]}"
report "rcow-nl reads both bitmaps of every replayed point" "${nl_errors[@]}"
report "(a) what a flush or FUA acknowledged reads back at every later point" "${a_errors[@]}"
report "(b) no PRESENT extent points at unfilled data" "${b_errors[@]}"
report "(c) WRITTEN and DIRTY_COMMIT are exact (nothing missing, nothing but writes in flight)" "${c_errors[@]}"
report "(d) a lost epoch of data writes (previous flush + metadata only) breaks none of (a)-(c)" \
	"${d_errors[@]}"
if [ "$unclean_points" -gt 0 ]; then
	tap_ok "the points inside the workload are unclean shutdowns ($unclean_points)"
else
	tap_not_ok "the points inside the workload are unclean shutdowns" "none was"
fi
check_eq "the complete log leaves a clean superblock (suspend at remove)" 1 "$final_clean"
check_eq "the base image is unchanged" "$base_sum" "$(sha256_of "$base")"
tap_done
