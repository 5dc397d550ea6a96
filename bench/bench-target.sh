#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/bench-target.sh - remote-cow versus dm-linear on the same COW device.
#
# Runs inside the test VM (make bench, or
# scripts/vm-run.sh --timeout 900 bench/bench-target.sh).  Prints figures;
# it is not a pass/fail test and is not part of make check.  See
# Documentation/benchmarks.rst.
#
# One RAM-backed COW device (brd, else null_blk memory_backed=1, else loop
# over a file in the VM's tmpfs) carries a remote-cow device, made fully
# present by whole-extent direct writes (no fetch), and a dm-linear device
# over the same COW device at the remote-cow data offset, and a second,
# identical dm-linear device: the control, whose ratio to the first is the
# noise of the run.  fio measures 4 KiB random read and random write IOPS
# and 1 MiB sequential read MiB/s on all three, in alternating runs (the
# order rotates each repetition).  Printed per workload: the median of
# each device's runs, the ratio remote-cow / dm-linear, the median of the
# per-repetition ratios of back-to-back runs (less exposed to slow phases
# of the emulator or the host than the ratio of medians), and the same two
# ratios for the control (dm-linear 2 / dm-linear) beside them.
#
# Environment (defaults in brackets):
#   BENCH_RUNTIME   seconds per fio run [8]
#   BENCH_RAMP      fio ramp time, seconds, not counted [1]
#   BENCH_WARMUP    seconds of one uncounted run per (workload, device) [2]
#   BENCH_REPS      repetitions of every (workload, device) pair [7]
#   BENCH_SIZE_MB   virtual device size, MiB [256]
#   BENCH_EXTENT    extent size in sectors [128 = 64 KiB, the default]
#   BENCH_IODEPTH   fio iodepth [16]
#   BENCH_ENGINE    fio ioengine [libaio]
#   BENCH_COW       brd | null_blk | loop: force the COW device kind
#   BENCH_WORKLOADS subset of "randread randwrite seqread" [all three];
#                   also seqread64k (64 KiB sequential reads, a diagnostic)
#
# Exit status: 0 when every figure was measured (whatever the ratios),
# 1 on a setup failure.
ROOT=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=lib-bench.sh
. "$ROOT/bench/lib-bench.sh"
set -euo pipefail

RUNTIME=${BENCH_RUNTIME:-8}
RAMP=${BENCH_RAMP:-1}
WARMUP=${BENCH_WARMUP:-2}
REPS=${BENCH_REPS:-7}
SIZE_MB=${BENCH_SIZE_MB:-256}
EXT=${BENCH_EXTENT:-128}
IODEPTH=${BENCH_IODEPTH:-16}
ENGINE=${BENCH_ENGINE:-libaio}
WORKLOADS=${BENCH_WORKLOADS:-randread randwrite seqread}
TARGET_RATIO=0.97

RC_NAME=rcow-bench
LIN_NAME=rcow-bench-linear
CTL_NAME=rcow-bench-control
RCOW_NL=$ROOT/selftests/progs/rcow-nl
RCOW_FILL=$ROOT/selftests/progs/rcow-fill

LEN=$((SIZE_MB * 2048))			# sectors
EXT_BYTES=$((EXT * 512))
# Metadata is a few blocks for this size; 64 MiB of room is plenty.
COW_MB=$((SIZE_MB + 64 + EXT_BYTES / 1048576))

say() { printf '%s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

bench_require bench fio dmsetup jq blockdev
[ -x "$RCOW_NL" ] || die "$RCOW_NL missing: run make first"
[ $((LEN % EXT)) = 0 ] || die "BENCH_SIZE_MB must be a multiple of the extent size"

tmp=$(mktemp -d /tmp/rcow-bench.XXXXXX)
cow='' cow_kind='' fill_pid=''
# shellcheck disable=SC2317  # invoked at exit
cleanup() {
	set +e
	[ -n "$fill_pid" ] && kill "$fill_pid" 2>/dev/null && wait "$fill_pid" 2>/dev/null
	dmsetup remove "$LIN_NAME" 2>/dev/null
	dmsetup remove "$CTL_NAME" 2>/dev/null
	dmsetup remove "$RC_NAME" 2>/dev/null
	case $cow_kind in
	loop) losetup -d "$cow" 2>/dev/null ;;
	brd) rmmod brd 2>/dev/null ;;
	null_blk) rmmod null_blk 2>/dev/null ;;
	esac
	rm -rf "$tmp"
}
at_exit cleanup

load_module || die "cannot load $RC_MODULE"

# ---------------------------------------------------------------------------
# The COW device
# ---------------------------------------------------------------------------
want=${BENCH_COW:-}
if { [ -z "$want" ] || [ "$want" = brd ]; } && ! [ -e /sys/module/brd ] &&
	modprobe brd rd_nr=1 rd_size=$((COW_MB * 1024)) max_part=0 2>/dev/null &&
	[ -b /dev/ram0 ]; then
	cow=/dev/ram0 cow_kind=brd
	cow_desc="brd ramdisk /dev/ram0, ${COW_MB} MiB"
elif { [ -z "$want" ] || [ "$want" = null_blk ]; } && ! [ -e /sys/module/null_blk ] &&
	modprobe null_blk nr_devices=1 memory_backed=1 gb=$(((COW_MB + 1023) / 1024)) \
		bs=512 queue_mode=2 irqmode=0 max_sectors=2560 2>/dev/null &&
	[ -b /dev/nullb0 ]; then
	cow=/dev/nullb0 cow_kind=null_blk
	cow_desc="null_blk memory_backed=1 /dev/nullb0 (blk-mq, irqmode=0)"
else
	truncate -s "${COW_MB}M" "$tmp/cow.img"
	cow=$(losetup -f --show --direct-io=off "$tmp/cow.img")
	cow_kind=loop
	cow_desc="loop $cow over a sparse file on the VM's tmpfs"
fi
cow_sectors=$(blockdev --getsz "$cow")
cow_max_kb=$(cat "/sys/block/${cow#/dev/}/queue/max_sectors_kb" 2>/dev/null || echo 0)

# The base is never read here (every extent is written whole), but the
# table needs one.
truncate -s "$((LEN * 512))" "$tmp/base.img"
dmsetup create "$RC_NAME" --table "$(rc_table "$LEN" "$cow" "$EXT" "file://$tmp/base.img")" ||
	die "cannot create the remote-cow device"
rc_dev=/dev/mapper/$RC_NAME

# ---------------------------------------------------------------------------
# Make every extent present: whole-extent O_DIRECT writes need no fetch.
# rcow-fill answers any fault meanwhile: dm caps each bio at the COW
# device's max_sectors_kb, so extents larger than that never arrive whole
# (brd: 127 KiB), and their writes fault like partial ones.
# ---------------------------------------------------------------------------
[ -x "$RCOW_FILL" ] || die "$RCOW_FILL missing: run make first"
"$RCOW_FILL" --ready "$tmp/ready" --stats "$tmp/fill.stats" >"$tmp/fill.log" 2>&1 &
fill_pid=$!
for _ in $(seq 100); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
[ -e "$tmp/ready" ] || die "rcow-fill did not register: $(cat "$tmp/fill.log")"
bs=$EXT_BYTES
[ "$bs" -ge 1048576 ] || bs=1048576	# dm splits at extent boundaries
t0=$(date +%s.%N)
dd if=/dev/zero of="$rc_dev" bs="$bs" count=$((LEN * 512 / bs)) oflag=direct \
	status=none || die "cannot write the remote-cow device"
t1=$(date +%s.%N)
present=$(dmsetup status "$RC_NAME" | awk '{print $5}')
[ "${present%/*}" = "${present#*/}" ] || die "only $present extents present after writing the device"
# The helper is not needed any more: stop it so that it takes no CPU.
kill "$fill_pid" 2>/dev/null
wait "$fill_pid" || true
fill_pid=''
fill_faults=$(sed -n 's/^faults=//p' "$tmp/fill.stats" 2>/dev/null)

# ---------------------------------------------------------------------------
# dm-linear over the same COW device at the same data offset
# ---------------------------------------------------------------------------
data_offset=$("$RCOW_NL" devices | tr ' ' '\n' | sed -n 's/^data_offset=//p' | head -n1)
[ -n "$data_offset" ] || die "cannot read the data offset (rcow-nl devices)"
[ $((data_offset + LEN)) -le "$cow_sectors" ] || die "data area beyond the COW device"
dmsetup create "$LIN_NAME" --table "0 $LEN linear $cow $data_offset" ||
	die "cannot create the dm-linear device"
lin_dev=/dev/mapper/$LIN_NAME
dmsetup create "$CTL_NAME" --table "0 $LEN linear $cow $data_offset" ||
	die "cannot create the control dm-linear device"
ctl_dev=/dev/mapper/$CTL_NAME

# Both devices must show the same data: write through one, read the other.
head -c 1048576 /dev/urandom >"$tmp/probe"
dd if="$tmp/probe" of="$rc_dev" bs=1M seek=3 oflag=direct status=none
dd if="$lin_dev" of="$tmp/probe.back" bs=1M skip=3 count=1 iflag=direct status=none
cmp -s "$tmp/probe" "$tmp/probe.back" ||
	die "dm-linear at offset $data_offset does not show the remote-cow data"

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------
# fio_run <device> <workload>: print IOPS (4 KiB) or MiB/s (1 MiB).
fio_run() {
	local dev=$1 wl=$2 rw bs out
	case $wl in
	randread) rw=randread bs=4k ;;
	randwrite) rw=randwrite bs=4k ;;
	seqread) rw=read bs=1M ;;
	seqread64k) rw=read bs=64k ;;
	*) die "unknown workload $wl" ;;
	esac
	out=$tmp/fio.json
	fio --name="$wl" --filename="$dev" --rw="$rw" --bs="$bs" \
		--direct=1 --ioengine="$ENGINE" --iodepth="$IODEPTH" --numjobs=1 \
		--time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
		--randrepeat=1 --norandommap --group_reporting \
		--output-format=json --output="$out" >/dev/null 2>"$tmp/fio.err" ||
		{ cat "$tmp/fio.err" >&2; die "fio failed on $dev ($wl)"; }
	case $wl in
	randread) jq -r '.jobs[0].read.iops' "$out" ;;
	randwrite) jq -r '.jobs[0].write.iops' "$out" ;;
	seqread*) jq -r '.jobs[0].read.bw_bytes / 1048576' "$out" ;;
	esac
}

# median_lines: the median of the numbers on stdin, one a line ("nan" when
# there is none).
median_lines() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

unit() { case $1 in seqread*) echo "MiB/s" ;; *) echo "IOPS" ;; esac; }

nproc_vm=$(nproc)
mem_vm=$(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)
say "remote-cow benchmark: $(date -u '+%Y-%m-%d %H:%M UTC')"
say "kernel $(uname -r), $nproc_vm CPUs, $mem_vm, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
say "COW device: $cow_desc; remote-cow ${SIZE_MB} MiB, extent $EXT sectors ($((EXT_BYTES / 1024)) KiB), data offset $data_offset sectors"
say "COW max_sectors_kb $cow_max_kb; made present by writing the device: $present extents in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, ${fill_faults:-?} faults answered by rcow-fill"
say "fio $(fio --version | sed 's/^fio-//'): --direct=1 --ioengine=$ENGINE --iodepth=$IODEPTH --numjobs=1 --runtime=$RUNTIME --ramp_time=$RAMP; ${WARMUP} s warm-up per pair, then $REPS alternating repetitions"
say ""

# Warm-up, not counted: the first run after setup is markedly slower.
for wl in $WORKLOADS; do
	for dev in "$rc_dev" "$lin_dev" "$ctl_dev"; do
		RUNTIME=$WARMUP RAMP=0 fio_run "$dev" "$wl" >/dev/null
	done
done

declare -A runs
for rep in $(seq "$REPS"); do
	for wl in $WORKLOADS; do
		case $((rep % 3)) in
		1) order="rc lin ctl" ;;
		2) order="lin ctl rc" ;;
		*) order="ctl rc lin" ;;
		esac
		for which in $order; do
			case $which in
			rc) dev=$rc_dev name=remote-cow ;;
			lin) dev=$lin_dev name=dm-linear ;;
			ctl) dev=$ctl_dev name=dm-linear-2 ;;
			esac
			v=$(fio_run "$dev" "$wl")
			runs[$wl.$which]="${runs[$wl.$which]:-} $v"
			printf '# rep %d %-9s %-11s %10.1f %s\n' "$rep" "$wl" "$name" "$v" "$(unit "$wl")"
		done
	done
done

say ""
# ratios <which> <wl>: "<ratio of medians> <median of paired ratios>" of
# device <which> (rc, ctl) against dm-linear.
ratios() {
	local med lin_med v v_lin
	med=$(tr ' ' '\n' <<<"${runs[$2.$1]}" | grep . | median_lines)
	lin_med=$(tr ' ' '\n' <<<"${runs[$2.lin]}" | grep . | median_lines)
	read -r -a v <<<"${runs[$2.$1]}"
	read -r -a v_lin <<<"${runs[$2.lin]}"
	awk -v a="$med" -v b="$lin_med" -v p="$(for i in "${!v[@]}"; do
		awk -v a="${v[$i]}" -v b="${v_lin[$i]}" 'BEGIN { print a / b }'
	done | median_lines)" 'BEGIN { printf "%.3f %.3f", a / b, p }'
}

printf '%-22s %12s %12s %7s %7s %9s %9s\n' "workload" "remote-cow" "dm-linear" "ratio" \
	"paired" "control" "ctl-pair"
below=0
for wl in $WORKLOADS; do
	rc_med=$(tr ' ' '\n' <<<"${runs[$wl.rc]}" | grep . | median_lines)
	lin_med=$(tr ' ' '\n' <<<"${runs[$wl.lin]}" | grep . | median_lines)
	read -r ratio paired <<<"$(ratios rc "$wl")"
	read -r ctl_ratio ctl_paired <<<"$(ratios ctl "$wl")"
	case $wl in
	randread) label="4 KiB randread IOPS" ;;
	randwrite) label="4 KiB randwrite IOPS" ;;
	seqread) label="1 MiB seqread MiB/s" ;;
	seqread64k) label="64 KiB seqread MiB/s" ;;
	esac
	printf '%-22s %12.1f %12.1f %7s %7s %9s %9s\n' "$label" "$rc_med" "$lin_med" "$ratio" \
		"$paired" "$ctl_ratio" "$ctl_paired"
	awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { exit !(r < t) }' && below=$((below + 1))
done
say ""
say "individual runs (in order):"
for wl in $WORKLOADS; do
	read -r -a v_rc <<<"${runs[$wl.rc]}"
	read -r -a v_lin <<<"${runs[$wl.lin]}"
	read -r -a v_ctl <<<"${runs[$wl.ctl]}"
	printf '  %-10s remote-cow: %s\n' "$wl" "$(printf ' %.1f' "${v_rc[@]}")"
	printf '  %-10s dm-linear:  %s\n' "$wl" "$(printf ' %.1f' "${v_lin[@]}")"
	printf '  %-10s dm-linear-2:%s\n' "$wl" "$(printf ' %.1f' "${v_ctl[@]}")"
done
say ""
say "status after: $(dmsetup status "$RC_NAME")"
if [ "$below" = 0 ]; then
	say "every ratio >= $TARGET_RATIO (target)"
else
	say "$below ratio(s) below $TARGET_RATIO (target); see Documentation/benchmarks.rst on noise"
fi
exit 0
