#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=600
#
# Crash consistency, in the manner of xfstests generic/482: the COW device
# of a remote-cow device is a dm-log-writes device (a data loop device,
# logging to a log loop device), so every write that reaches the COW device
# (the target's data and metadata, the helper's fills) is recorded in the
# order it became durable.  A mixed workload (direct, buffered and FUA
# writes of whole and partial extents, of present and missing extents,
# reads that fault extents in, fsync and fio's fsync) runs in steps; after
# each step's flush returned, a mark "cc-<step>" goes into the log and the
# expected content (a reference copy) is recorded.
#
# Then, for every FLUSH/FUA entry and every mark of the log, the log is
# replayed up to that entry onto a fresh zeroed device (selftests/progs/
# lw-replay) and a remote-cow device is loaded over it, as after a power
# cut at that point.  It must load (an unclean shutdown is accepted), and
#
#  (a) everything acknowledged before the point reads back intact: every
#      extent settled at the last mark reads the reference of that mark;
#      extents written after the mark read either some old or some new
#      content, never anything else;
#  (b) no PRESENT extent points at unfilled data: the COW data of every
#      extent in the PRESENT bitmap (rcow-nl get-bitmap) is the base's or
#      content the workload wrote to that extent, never zeroes or garbage;
#  (c) WRITTEN is not under-reported: every extent written before the last
#      mark is in the WRITTEN bitmap, and after an unclean shutdown every
#      PRESENT extent is too (Documentation/remote-cow.rst).
#
# The helper is selftests/progs/rcow-fill, answering from a base file.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks
. "$(dirname "$0")/lib.sh"
RCOW_HELPER=${RCOW_FILL:-$RC_TREE/selftests/progs/rcow-fill}
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp split sha256sum fio od
tap_plan 13

NAME="rc-cc"			# the remote-cow device of the workload
LWNAME="rc-cc-log"		# the log-writes device under it
RNAME="rc-cc-replay"		# the remote-cow device over a replayed COW
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((4 << 20))		# 64 extents
LEN=$((BASE_BYTES / 512))
COW_BYTES=$((BASE_BYTES + (2 << 20)))	# 1 MiB metadata + data, with room
LOG_BYTES=$((128 << 20))
FAULT_MS=20000			# no read waits forever, whatever happens
LWR=$RC_TREE/selftests/progs/lw-replay
NL=$RC_TREE/selftests/progs/rcow-nl
SB_MAGIC=1464812370		# 0x574f4352, "RCOW" little-endian

for prog in "$LWR" "$NL" "$RCOW_HELPER"; do
	[ -x "$prog" ] || tap_skip_all "$prog is not built (make)"
done
load_module || tap_bail "cannot load $RC_MODULE"
modprobe dm-log-writes 2>/dev/null
dmsetup targets | grep -q '^log-writes ' || tap_skip_all "no dm-log-writes target"

net_tmpdir
tmp=$NET_WORKDIR
base=$tmp/base.img
ref=$tmp/ref.img
make_base_image "$base" "$BASE_BYTES" crash-consistency >/dev/null ||
	tap_bail "cannot make the base image"
base_sum=$(sha256_of "$base")
cp "$base" "$ref"

# attach <file>: a loop device for the file in LOOP_DEV, detached at exit.
LOOP_DEV=
attach() {
	truncate -s "$2" "$1" || return 1
	LOOP_DEV=$(losetup -f --show "$1") || return 1
	at_exit "losetup -d '$LOOP_DEV'"
}
attach "$tmp/data.img" "$COW_BYTES" || tap_bail "cannot attach the data loop device"
data_dev=$LOOP_DEV
attach "$tmp/log.img" "$LOG_BYTES" || tap_bail "cannot attach the log loop device"
log_dev=$LOOP_DEV

# ext_hashes <file or device> [byte offset] [dd iflags]: "<extent> <sha256>"
# for each extent of BASE_BYTES starting at the offset (few processes: each
# one costs a lot under emulation).
mkdir -p "$tmp/split"
ext_hashes() {
	local d=$tmp/split	# always the same NEXT files, overwritten
	dd if="$1" bs=1M iflag="skip_bytes,count_bytes${3:+,$3}" skip="${2:-0}" \
		count="$BASE_BYTES" status=none | split -b "$EXTB" -d -a 4 - "$d/x" || return 1
	sha256sum "$d"/x* | awk '{ n = $2; sub(/.*\/x/, "", n); print n + 0, $1 }'
}

# Written content comes from one pseudo-random pool (openssl is slow to
# start under emulation): seed n is the pool at n * 37 KiB.
image_data cc-pool $((2 << 20)) >"$tmp/pool" ||
	tap_bail "cannot make the data pool"

# ---------------------------------------------------------------------------
# The workload
# ---------------------------------------------------------------------------
dev=/dev/mapper/$NAME
accept=$tmp/accept		# "<extent> <sha256>": every content an extent had
step=0				# current step; its writes go to touched.<step>
wl_errors=()			# operations that failed
live_errors=()			# live reads that differ from the reference

ext_hashes "$base" >"$tmp/base.hashes" || tap_bail "cannot hash the base"
cp "$tmp/base.hashes" "$accept"
: >"$tmp/touched.0"

# note_write <offset bytes> <bytes>: extents touched in this step, and the
# new content of the reference in the set of acceptable contents.
note_write() {
	local first=$(($1 / EXTB)) last=$((($1 + $2 - 1) / EXTB)) i
	for ((i = first; i <= last; i++)); do
		echo "$i" >>"$tmp/touched.$step"
	done
	ext_hashes "$ref" >>"$accept"
}

# w <KiB offset> <KiB> <seed> <direct|fua|buffered>: (seed * 37 + KiB <= 2048): write to the device and
# to the reference.
w() {
	local off=$1 kib=$2 how=$4 oflag=seek_bytes
	dd if="$tmp/pool" of="$tmp/chunk" bs=1K skip=$(($3 * 37)) count="$kib" status=none
	case $how in
	direct) oflag+=,direct ;;
	fua) oflag+=,direct,dsync ;;
	esac
	# One write(2) of the whole size: one bio (direct) or whole pages.
	if ! dd if="$tmp/chunk" of="$dev" bs=$((kib * 1024)) seek=$((off * 1024)) \
		count=1 oflag="$oflag" conv=notrunc status=none 2>"$tmp/dd.err"; then
		wl_errors+=("step $step: $how write of $kib KiB at $off KiB: $(cat "$tmp/dd.err")")
	fi
	dd if="$tmp/chunk" of="$ref" bs=1K seek="$off" conv=notrunc status=none
	note_write $((off * 1024)) $((kib * 1024))
}

# r <KiB offset> <KiB>: a direct read, compared with the reference.
r() {
	if ! cmp -s <(dd if="$dev" bs=1K skip="$1" count="$2" iflag=direct status=none) \
		<(dd if="$ref" bs=1K skip="$1" count="$2" status=none); then
		live_errors+=("step $step: read of $2 KiB at $1 KiB differs from the reference")
	fi
}

# fio_w <KiB offset> <KiB>: fio writes 16 KiB blocks of a fixed pattern,
# fsync every 4 writes and at the end.
fio_w() {
	local bytes=$(($2 * 1024))
	if ! fio --name=cc --filename="$dev" --rw=write --bs=16k --ioengine=psync \
		--direct=1 --offset="$1k" --size="$2k" --fsync=4 --end_fsync=1 \
		--buffer_pattern='"rcow-cc!"' --scramble_buffers=0 \
		--output="$tmp/fio.out" >/dev/null 2>&1; then
		wl_errors+=("step $step: fio at $1 KiB: $(tail -n 3 "$tmp/fio.out")")
	fi
	yes 'rcow-cc!' | tr -d '\n' | head -c "$bytes" >"$tmp/chunk"
	dd if="$tmp/chunk" of="$ref" bs=1K seek="$1" conv=notrunc status=none
	note_write $(($1 * 1024)) "$bytes"
}

# end_step <how>: flush (sync: fsync of the device; none: the step's FUA
# writes are their own flush), mark the log, record the reference.
end_step() {
	case $1 in
	sync)
		sync "$dev" 2>"$tmp/sync.err" ||
			wl_errors+=("step $step: fsync failed: $(cat "$tmp/sync.err")")
		;;
	none) ;;
	esac
	dmsetup message "$LWNAME" 0 mark "cc-$step" ||
		wl_errors+=("step $step: cannot mark the log")
	if ! cmp -s <(dd if="$dev" bs=1M iflag=direct status=none) "$ref"; then
		live_errors+=("after step $step the device differs from the reference")
	fi
	ext_hashes "$ref" >"$tmp/ref.$step"
	sort -u "$tmp/touched.$step" -o "$tmp/touched.$step"
	sort -u "$tmp/touched.$step" "$tmp/written.$((step - 1))" -o "$tmp/written.$step"
	step=$((step + 1))
	: >"$tmp/touched.$step"
}

# The log-writes device must be the COW device from the start, so the
# formatting is in the log too.
lw_table="0 $(blockdev --getsz "$data_dev") log-writes $data_dev $log_dev"
table=$(rc_table "$LEN" "/dev/mapper/$LWNAME" "$EXT" "file://$base" fault_timeout "$FAULT_MS")
at_exit "dm_remove $LWNAME"
at_exit "dm_remove $NAME"
at_exit "dm_remove $RNAME"
if dmsetup create "$LWNAME" --table "$lw_table" && dmsetup create "$NAME" --table "$table"; then
	tap_ok "remote-cow over dm-log-writes ($data_dev logging to $log_dev)"
else
	tap_bail "cannot create the log-writes and remote-cow devices"
fi
helper_start || tap_bail "rcow-fill does not start"
DATA_OFFSET=$("$NL" devices | sed -n "s/.* name=$NAME .* data_offset=\([0-9]*\) .*/\1/p")
[ -n "$DATA_OFFSET" ] || tap_bail "no data_offset for $NAME in: $("$NL" devices 2>&1)"
t0=$(date +%s)

# step 0: nothing written; the format and first commit are in the log.
: >"$tmp/written.-1"
end_step sync
# 1: a whole missing extent, a partial missing extent, reads faulting in.
w 0 64 1 direct
w 200 8 2 direct
r 1024 256
end_step sync
# 2: one buffered page in a missing extent; a write over whole and
#    present extents.
w 320 4 3 buffered
w 128 192 4 direct
end_step sync
# 3: FUA writes: partial over a present extent, whole missing extent,
#    partial missing extent.  No flush: FUA is durable on completion.
w 1100 12 5 fua
w 1536 64 6 fua
w 2100 4 7 fua
end_step none
# 4: fio with fsync every 4 writes, over missing extents.
fio_w 2560 128
end_step none
# 5: overwrites of written extents, a write across present extents, one
#    across missing extents, unaligned; a read.
w 0 32 8 direct
w 1040 64 9 direct
w 3000 100 10 direct
r 3800 200
end_step sync
# 6: buffered pages into present and missing extents, then fsync.
w 640 4 11 buffered
w 708 4 12 buffered
w 2900 4 13 buffered
end_step sync
# 7: an empty step (a flush with nothing new).
end_step sync
# 8: half a MiB of whole missing extents in one bio.
w 3584 512 14 direct
end_step sync
last_step=$((step - 1))
tap_diag "workload: $last_step steps in $(($(date +%s) - t0)) s;" \
	"status: $(dmsetup status "$NAME")"

if [ ${#wl_errors[@]} -eq 0 ]; then
	tap_ok "the workload's writes and flushes succeed"
else
	tap_not_ok "the workload's writes and flushes succeed" "${wl_errors[@]}"
fi
if [ ${#live_errors[@]} -eq 0 ]; then
	tap_ok "the live device reads the reference after every step"
else
	tap_not_ok "the live device reads the reference after every step" "${live_errors[@]}"
fi

# Removing both devices ends the log (log-writes' super then counts every
# entry; its last mark is dm-log-writes-end).
if ! dm_remove "$NAME" || ! dm_remove "$LWNAME"; then
	tap_bail "cannot remove the devices"
fi
sort -u "$accept" -o "$accept"

"$LWR" list "$log_dev" >"$tmp/log.list" 2>"$tmp/lwr.err" ||
	tap_bail "lw-replay list: $(cat "$tmp/lwr.err")"
marks=$(awk '$4 == "MARK" && $5 ~ /^cc-/ { printf "%s ", $5 }' "$tmp/log.list")
expected_marks=$(for ((s = 0; s <= last_step; s++)); do printf 'cc-%d ' "$s"; done)
check_eq "the log holds the marks in order" "$expected_marks" "$marks"

# lw-replay itself: the whole log replayed equals the data device.
truncate -s "$COW_BYTES" "$tmp/full.img"
if "$LWR" replay "$log_dev" "$tmp/full.img" 2>"$tmp/lwr.err" &&
	cmp "$tmp/full.img" "$tmp/data.img" >"$tmp/cmp.out" 2>&1; then
	tap_ok "the whole log replayed equals the COW device ($(wc -l <"$tmp/log.list") entries)"
else
	tap_not_ok "the whole log replayed equals the COW device" \
		"$(cat "$tmp/lwr.err" "$tmp/cmp.out")"
fi
rm -f "$tmp/full.img"

# The points to check: every FLUSH, FUA or mark entry, with the last mark
# before it (k) and whether a data entry came after that mark (then the
# extents touched in step k+1 may be old or new).  A point whose content
# and mark are those of the previous point is the same test: skipped.
"$LWR" points "$log_dev" >"$tmp/points" 2>"$tmp/lwr.err" ||
	tap_bail "lw-replay points: $(cat "$tmp/lwr.err")"
awk '
	BEGIN { k = 0; dirty = 0; changed = 1 }
	$4 == "MARK" && $5 ~ /^cc-/ { k = substr($5, 4) + 0; dirty = 0; changed = 1 }
	$3 > 0 && $4 !~ /MARK/ { dirty = 1; changed = 1 }
	$4 ~ /FLUSH|FUA|MARK/ && changed { print $1, k, dirty, ($4 == "MARK"); changed = 0 }
' "$tmp/log.list" >"$tmp/checkpoints"
npoints=$(wc -l <"$tmp/points")
ncheck=$(wc -l <"$tmp/checkpoints")
if [ "$npoints" -gt "$last_step" ]; then
	tap_ok "the log has $npoints FLUSH/FUA entries ($ncheck distinct points to check)"
else
	tap_not_ok "the log has FLUSH/FUA entries" "only $npoints: $(cat "$tmp/points")"
fi

# ---------------------------------------------------------------------------
# Replay every point
# ---------------------------------------------------------------------------
load_errors=() a_errors=() b_errors=() c_errors=() unclean_points=0
final_clean=
rp=$tmp/replay.img

# The analysis of one point, from (in this order) the acceptable contents,
# the reference at mark k, the extents touched in step k+1 (when data
# entries followed mark k), the extents written up to mark k, the base,
# and the hashes of the COW data area of the replayed device; the PRESENT
# and WRITTEN bitmaps (as 0/1 strings) in variables.  Prints one line per
# problem: "a|b|c <text>".
analyse() {
	awk -v p="$1" -v k="$2" -v dirty="$3" -v unclean="$4" -v pbits="$5" -v wbits="$6" '
		FILENAME == ARGV[1] { ok[$1 " " $2] = 1; next }
		FILENAME == ARGV[2] { want[$1] = $2; next }
		FILENAME == ARGV[3] { if (dirty) moving[$1] = 1; next }
		FILENAME == ARGV[4] { wrote[$1] = 1; next }
		FILENAME == ARGV[5] { base[$1] = $2; next }
		{
			e = $1
			present = substr(pbits, e + 1, 1) == "1"
			written = substr(wbits, e + 1, 1) == "1"
			# (b) a present extent holds content it had.
			if (present && !((e " " $2) in ok))
				printf "b entry %s: present extent %s holds data it never had\n", p, e
			# (c) WRITTEN not under-reported.
			if ((e in wrote) && !written)
				printf "c entry %s: extent %s, written before cc-%s, is not WRITTEN%s\n", p, e, k, present ? "" : " (nor PRESENT)"
			if (unclean && present && !written)
				printf "c entry %s: unclean load, present extent %s is not WRITTEN\n", p, e
			# (a) what a read returns: the COW data if present, else
			#     the base (filled by the helper).
			h = present ? $2 : base[e]
			if (e in moving) {
				if (!((e " " h) in ok))
					printf "a entry %s: extent %s (written after cc-%s) reads content it never had\n", p, e, k
			} else if (h != want[e]) {
				printf "a entry %s: extent %s differs from the reference at cc-%s (%s)\n", p, e, k, present ? "present" : "missing: base"
			}
		}
	' "$accept" "$tmp/ref.$2" "$tmp/touched.$(($2 + 1))" "$tmp/written.$2" "$tmp/base.hashes" -
}

# check_point <entry> <k> <dirty> <read>: replay up to the entry onto a
# fresh file, load remote-cow over it, check (a) (b) (c).  With <read> = 1
# the whole device is also read through the target (the helper filling the
# missing extents) and must equal what the analysis assumed.
check_point() {
	local p=$1 k=$2 dirty=$3 full=$4 rdev magic flags out id pbits wbits unclean=0
	: >"$rp"
	truncate -s "$COW_BYTES" "$rp"
	if ! "$LWR" replay "$log_dev" "$rp" --to "$p" 2>"$tmp/lwr.err"; then
		load_errors+=("entry $p: lw-replay: $(cat "$tmp/lwr.err")")
		return
	fi
	read -r magic _ flags < <(od -An -tu4 -j4 -N12 "$rp")
	if [ "$magic" = "$SB_MAGIC" ]; then
		[ $((flags & 1)) -eq 1 ] || unclean=1
		final_clean=$((flags & 1))
	fi
	unclean_points=$((unclean_points + unclean))
	rdev=$(losetup -f --show "$rp") || { load_errors+=("entry $p: losetup"); return; }
	if ! dmsetup create "$RNAME" --table "$(rc_table "$LEN" "$rdev" "$EXT" \
		"file://$base" fault_timeout "$FAULT_MS")" 2>"$tmp/create.err"; then
		load_errors+=("entry $p (after cc-$k): load refused: $(cat "$tmp/create.err")" \
			"$(dmesg | tail -n 3)")
		losetup -d "$rdev"
		return
	fi
	out=$("$NL" devices)
	out=${out##*dev_id=}
	id=${out%% *}
	pbits=$("$NL" get-bitmap "$id" present 0)
	wbits=$("$NL" get-bitmap "$id" written 0)
	out=$(ext_hashes "$rp" $((DATA_OFFSET * 512)) | tee "$tmp/cow.hashes" |
		analyse "$p" "$k" "$dirty" "$unclean" "${pbits#*bits=}" "${wbits#*bits=}")
	while IFS= read -r line; do
		case $line in
		a*) a_errors+=("${line#a }") ;;
		b*) b_errors+=("${line#b }") ;;
		c*) c_errors+=("${line#c }") ;;
		esac
	done <<<"$out"
	if [ "$full" = 1 ]; then
		if ! ext_hashes "/dev/mapper/$RNAME" 0 direct >"$tmp/dev.hashes" 2>"$tmp/dd.err"; then
			a_errors+=("entry $p: reading the device failed: $(cat "$tmp/dd.err")")
		else
			out=$(awk -v p="$p" -v pbits="${pbits#*bits=}" '
				FILENAME == ARGV[1] { base[$1] = $2; next }
				FILENAME == ARGV[2] { cow[$1] = $2; next }
				{
					want = substr(pbits, $1 + 1, 1) == "1" ? cow[$1] : base[$1]
					if ($2 != want)
						printf "entry %s: extent %s reads neither its COW data nor the base\n", p, $1
				}' "$tmp/base.hashes" "$tmp/cow.hashes" "$tmp/dev.hashes")
			[ -z "$out" ] || a_errors+=("$out")
			reads=$((reads + 1))
		fi
	fi
	dmsetup remove --retry "$RNAME" || load_errors+=("entry $p: cannot remove $RNAME")
	losetup -d "$rdev"
}

t0=$(date +%s)
reads=0
while read -r p k dirty full; do
	check_point "$p" "$k" "$dirty" "$full"
done <"$tmp/checkpoints"
tap_diag "checked $ncheck points in $(($(date +%s) - t0)) s ($unclean_points unclean," \
	"$reads read through the target)"

report() {	# report <desc> <errors...>: one check, the first errors shown
	local desc=$1
	shift
	if [ $# -eq 0 ]; then
		tap_ok "$desc"
	else
		tap_not_ok "$desc" "$# failures, the first:" "${@:1:8}"
	fi
}
report "every replayed point loads (unclean shutdown accepted)" "${load_errors[@]}"
report "(a) acknowledged writes read back intact at every point" "${a_errors[@]}"
report "(b) no PRESENT extent points at unfilled data" "${b_errors[@]}"
report "(c) WRITTEN is not under-reported" "${c_errors[@]}"
if [ "$unclean_points" -gt 0 ]; then
	tap_ok "the points inside the workload are unclean shutdowns ($unclean_points)"
else
	tap_not_ok "the points inside the workload are unclean shutdowns" "none was"
fi
check_eq "the complete log leaves a clean superblock (suspend at remove)" 1 "$final_clean"
check_eq "the base image is unchanged" "$base_sum" "$(sha256_of "$base")"
tap_done
