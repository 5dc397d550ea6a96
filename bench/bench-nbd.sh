#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/bench-nbd.sh - a remote-cow device over a shaped NBD link against
# reading the NBD export directly, in the same run.
#
# Runs inside the test VM (make bench-nbd, or
# scripts/vm-run.sh --timeout 3600 bench/bench-nbd.sh); about 7 minutes
# with the defaults.  Prints figures; it is not a pass/fail test and is not
# part of make check.  See Documentation/benchmarks-nbd.rst.
#
# The base (random data, so nothing compresses or is a hole) is served by
# nbdkit's file plugin from a network namespace behind a veth link shaped
# with tc netem on both ends (BENCH_DELAY each way, BENCH_RATE).  Every
# measurement starts cold: a fresh, zeroed COW device and a new remote-cow
# device; the server's image is in RAM (tmpfs).  remote-cowd connects to
# the export when the device appears; the device's clock starts once it
# has, as fio's nbd engine connects before its clock starts (nbdcopy's
# figure includes its connection).
#
#  seq    cold sequential read of the whole device, fio 1 MiB direct reads
#         at iodepth BENCH_SEQ_DEPTH, against the whole export read directly
#         with nbdcopy (to null:) and with fio's nbd engine (same job);
#         and the device read by one reader at iodepth 1 (like dd or cp),
#         which depends on remote-cowd's read-ahead.
#  rand   cold 4 KiB random reads, fio --direct=1 at iodepth 1,
#         BENCH_RAND_IOS of them; completion latency p50 and p99, against
#         the same job on the export with fio's nbd engine.
#  multi  BENCH_MULTI cold devices over the one base (a host booting
#         several VMs from one image), each read by its own fio job at
#         once (the first BENCH_MULTI_MB of each, 1 MiB direct reads at
#         iodepth BENCH_SEQ_DEPTH): the aggregate MiB/s (all bytes over
#         the longest job) and the slowest device's, against as many
#         jobs of fio's nbd engine reading the export at once.
#
# Each figure is the median of BENCH_REPS runs, the device's and the
# direct ones alternating.  Beside each sequential read of the device: the
# FAULTs remote-cowd answered per second of it and the extents they named
# (with BENCH_EXTENT=8, 4 KiB extents, the rate the fault path sustains).
#
# Environment (defaults in brackets):
#   BENCH_SIZE_MB    base image size, MiB [128]
#   BENCH_DELAY      netem delay each way [50ms]
#   BENCH_RATE       netem rate each way [100mbit]
#   BENCH_REPS       repetitions [3]
#   BENCH_EXTENT     extent size, sectors [128 = 64 KiB]
#   BENCH_SEQ_DEPTH  fio iodepth of the sequential job [16]
#   BENCH_RAND_IOS   4 KiB random reads per run [300]
#   BENCH_MULTI      devices of the multi workload [8]
#   BENCH_MULTI_MB   MiB read from each of them [32]
#   BENCH_CEILING    1: also measure once without the shaped link (the
#                    device over a file:// base, and over the NBD export
#                    with netem removed), to show what the fault path
#                    itself costs [1]
#   BENCH_PERF       1: profile the unshaped cold read of the device with
#                    perf record -a (whole VM) and print where the CPU
#                    time went, by program and by function [0]
#   BENCH_ONLY       the workloads to measure, of: dev copy qd1 fio rand
#                    multi [all of them]; those left out print "-"
#   RCOW_HELPER      the helper program (remote-cowd when built, else
#                    the selftests' rcow-fill)
#
# Exit status: 0 when every figure was measured (whatever the ratios),
# 1 when something could not be measured.
# shellcheck disable=SC2119	# lib-net.sh helpers take optional arguments

TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=lib-bench.sh
. "$TREE/bench/lib-bench.sh"

SIZE_MB=${BENCH_SIZE_MB:-128}
DELAY=${BENCH_DELAY:-50ms}
RATE=${BENCH_RATE:-100mbit}
REPS=${BENCH_REPS:-3}
EXT=${BENCH_EXTENT:-128}
SEQ_DEPTH=${BENCH_SEQ_DEPTH:-16}
CEILING=${BENCH_CEILING:-1}
RAND_IOS=${BENCH_RAND_IOS:-300}
MULTI=${BENCH_MULTI:-8}
MULTI_MB=${BENCH_MULTI_MB:-32}
ONLY=" ${BENCH_ONLY:-dev copy qd1 fio rand multi} "
PERF=${BENCH_PERF:-0}
PERF_OUT=
NAME=bench-nbd

die() { echo "bench-nbd: $*" >&2; exit 1; }
log() { echo "# $*"; }

bench_require bench-nbd fio nbdcopy nbdkit nbdinfo ip tc dmsetup losetup openssl python3
load_module || die "cannot load $RC_MODULE"
net_tmpdir
work=$NET_WORKDIR
bytes=$((SIZE_MB << 20))
len=$((bytes / 512))

log "base: ${SIZE_MB} MiB of random data; link: netem $DELAY each way, $RATE; extent $((EXT / 2)) KiB"
log "helper: $RCOW_HELPER; $(nproc) vCPUs; kernel $(uname -r)"
log "$(nbdkit --version | head -n1); $(fio --version); $(nbdcopy --version | head -n1 | tr -d '\n'); libnbd $(nbdcopy --version | sed -n 's/^libnbd //p')"
start_s=$(date +%s)
bench_net_base bench-nbd "$bytes" "$DELAY" "$RATE"
uri=$(net_uri)
log "ping: $(ping -c3 -W2 "$NET_SRV_IP" | tail -n1)"
helper_start || die "the helper does not start"

# A fresh cold device: zeroed COW, new table.  Removing the previous device
# closes remote-cowd's connections (no device uses the base any more), so
# every measurement connects anew.  remote-cowd connects when the device
# appears; the clock starts once it has (as fio's nbd engine connects before
# its clock starts), and BENCH_CONNECT_MS says how long that took
# (bench_rc_create).  In the main shell (it registers cleanups and sets
# COW_DEV), never in a command substitution.
rc_up() {	# rc_up [base uri, default the shaped export]
	dm_remove "$NAME" >/dev/null 2>&1
	[ -z "${COW_DEV:-}" ] || losetup -d "$COW_DEV"
	COW_DEV=
	rm -f "$work"/cow.*
	make_cow $((bytes + (16 << 20))) || return 1
	bench_rc_create "$NAME" "$len" "$COW_DEV" "$EXT" "${1:-$uri}"
}

# helper_counter <key>: a counter of remote-cowd's stats, written anew (SIGUSR1).
helper_counter() {
	if helper_is_daemon && [ -n "$HELPER_PID" ]; then
		kill -USR1 "$HELPER_PID" 2>/dev/null && sleep 0.3
	fi
	helper_stat "$1"
}

# seq_dev [iodepth]: "MiB/s faults/s extents/s", on a device made cold by
# rc_up: the FAULTs remote-cowd answered during fio's run (guest and
# read-ahead) and the extents they named, per second of the run.
seq_dev() {
	local f0 e0 f1 e1 bw ms k t0=() t1=()
	f0=$(helper_counter faults)
	e0=$(helper_stat fault_extents)
	for k in fills queue_us read_us write_us; do t0+=("$(helper_stat "$k")"); done
	# BENCH_PERF: the whole VM sampled while fio runs
	${PERF_OUT:+perf record -e cpu-clock -a -g -F 199 -o "$PERF_OUT" --} \
	fio --name=seq --filename="/dev/mapper/$NAME" --rw=read --bs=1M --direct=1 \
		--ioengine=libaio --iodepth="${1:-$SEQ_DEPTH}" --size="$bytes" \
		--output-format=json --output="$work/fio.json" >/dev/null || return 1
	[ "$(present_extents "$NAME")" -eq "$(((len + EXT - 1) / EXT))" ] ||
		echo "bench-nbd: warning: device not fully present after the read" >&2
	f1=$(helper_counter faults)
	e1=$(helper_stat fault_extents)
	for k in fills queue_us read_us write_us; do t1+=("$(helper_stat "$k")"); done
	# where a fill's time went (remote-cowd's stats), on stderr: the log
	awk -v n=$((t1[0] - t0[0])) -v q=$((t1[1] - t0[1])) -v r=$((t1[2] - t0[2])) \
		-v w=$((t1[3] - t0[3])) 'BEGIN { if (n > 0) printf "# fills: %d, per fill: queued %.1f ms, reading %.1f ms, writing %.1f ms\n",
		n, q / n / 1000, r / n / 1000, w / n / 1000 }' >&2
	bw=$(fio_get "$work/fio.json" bw)
	ms=$(fio_get "$work/fio.json" runtime)
	awk -v bw="$bw" -v f=$((f1 - f0)) -v e=$((e1 - e0)) -v ms="$ms" \
		'BEGIN { if (ms < 1) ms = 1; printf "%s %.0f %.0f\n", bw, f * 1000 / ms, e * 1000 / ms }'
}

seq_nbdcopy() {	# MiB/s
	nbdcopy_rate "$uri" "$bytes"
}

seq_fionbd() {	# MiB/s
	fio --name=seq --ioengine=nbd --uri="$uri" --rw=read --bs=1M \
		--iodepth="$SEQ_DEPTH" --size="$bytes" \
		--output-format=json --output="$work/fio.json" >/dev/null || return 1
	fio_get "$work/fio.json" bw
}

rand_job() {	# rand_job <fio target args...>: "p50 p99" in ms
	fio --name=rand --rw=randread --bs=4k --iodepth=1 --size="$bytes" \
		--number_ios="$RAND_IOS" --randseed=1234 \
		--output-format=json --output="$work/fio.json" "$@" >/dev/null || return 1
	echo "$(fio_get "$work/fio.json" 50.000000) $(fio_get "$work/fio.json" 99.000000)"
}

rand_dev() {	# on a device made cold by rc_up
	rand_job --filename="/dev/mapper/$NAME" --direct=1 --ioengine=psync
}

rand_fionbd() {
	rand_job --ioengine=nbd --uri="$uri"
}

# fio_multi <fio json>: "<aggregate MiB/s> <slowest job's MiB/s>": every
# job's bytes over the longest job's run time.
fio_multi() {
	python3 -c '
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
b = sum(j["read"]["io_bytes"] for j in jobs)
ms = max(j["read"]["runtime"] for j in jobs)
print("%.2f %.2f" % (b / 1048576.0 / (max(ms, 1) / 1000.0),
                     min(j["read"]["bw_bytes"] for j in jobs) / 1048576.0))
' "$1"
}

# multi_dev: MULTI cold devices over the base, read at once; prints
# "<aggregate MiB/s> <slowest device MiB/s>".  The devices share
# remote-cowd's connections to the base (one source per base URI).
MULTI_DEVS=()
multi_down() {
	local i
	for ((i = 0; i < ${#MULTI_DEVS[@]}; i++)); do
		dm_remove "$NAME-m$i"
		losetup -d "${MULTI_DEVS[i]}"
	done
	MULTI_DEVS=()
	rm -f "$work"/cow.*
}
multi_up() {
	local i n f dev
	multi_down
	dm_remove "$NAME" >/dev/null 2>&1
	[ -z "${COW_DEV:-}" ] || losetup -d "$COW_DEV"
	COW_DEV=
	n=$(rc_connections)
	for ((i = 0; i < MULTI; i++)); do
		f=$(mktemp "$work/cow.XXXXXX") || return 1
		truncate -s $((bytes + (16 << 20))) "$f" || return 1
		dev=$(losetup -f --show "$f") || return 1
		MULTI_DEVS+=("$dev")
		dmsetup create "$NAME-m$i" --table "$(rc_table "$len" "${MULTI_DEVS[i]}" "$EXT" "$uri")" ||
			return 1
	done
	at_exit multi_down
	! helper_is_daemon || rc_wait_connected "$n"
}
multi_dev() {
	local i args=()
	for ((i = 0; i < MULTI; i++)); do args+=(--name="d$i" --filename="/dev/mapper/$NAME-m$i"); done
	rm -f "$work/fio.json"	# no figure of an earlier run
	fio --rw=read --bs=1M --direct=1 --ioengine=libaio --iodepth="$SEQ_DEPTH" \
		--size="${MULTI_MB}M" --output-format=json --output="$work/fio.json" "${args[@]}" \
		>/dev/null || return 1
	fio_multi "$work/fio.json"
}
multi_fionbd() {
	rm -f "$work/fio.json"
	fio --name=seq --ioengine=nbd --uri="$uri" --rw=read --bs=1M --iodepth="$SEQ_DEPTH" \
		--size="${MULTI_MB}M" --numjobs="$MULTI" --output-format=json \
		--output="$work/fio.json" >/dev/null || return 1
	fio_multi "$work/fio.json"
}

s_dev=() s_qd1=() s_copy=() s_fio=() f_dev=() e_dev=() f_qd1=() e_qd1=() r_dev50=() r_dev99=() r_nbd50=() r_nbd99=()
m_devs=() m_slow=() m_fios=() m_fslow=() m_fios2=()
for ((rep = 1; rep <= REPS; rep++)); do
	# Alternate the order so that neither side always goes first.
	if [ $((rep % 2)) -eq 1 ]; then order="dev copy qd1 fio"; else order="fio qd1 copy dev"; fi
	for w in $order; do
		[ "${ONLY#* "$w" }" != "$ONLY" ] || continue
		case $w in
		dev) rc_up || die "cannot create the device"
			log "rep $rep: device created, remote-cowd connected after $BENCH_CONNECT_MS ms"
			v=$(seq_dev) || die "sequential read of the device failed"
			read -r v fr er <<<"$v"; s_dev+=("$v") f_dev+=("$fr") e_dev+=("$er")
			log "rep $rep: seq dev: $fr faults/s, $er extents/s" ;;
		qd1) rc_up || die "cannot create the device"
			v=$(seq_dev 1) || die "sequential read of the device failed"
			read -r v fr er <<<"$v"; s_qd1+=("$v") f_qd1+=("$fr") e_qd1+=("$er")
			log "rep $rep: seq qd1: $fr faults/s, $er extents/s" ;;
		copy) v=$(seq_nbdcopy) || die "nbdcopy failed"; s_copy+=("$v") ;;
		fio) v=$(seq_fionbd) || die "fio on the export failed"; s_fio+=("$v") ;;
		esac
		log "rep $rep: seq $w: $v MiB/s"
	done
	if [ "${ONLY#* multi }" != "$ONLY" ]; then
		# fio's nbd engine twice: the second against the first is the control
		if [ $((rep % 2)) -eq 1 ]; then order="dev fio fio2"; else order="fio2 fio dev"; fi
		for w in $order; do
			if [ "$w" = dev ]; then
				multi_up || die "cannot create the $MULTI devices"
				read -r a b <<<"$(multi_dev)"
				[ -n "$b" ] || die "the multi-device read failed"
				multi_down
				m_devs+=("$a") m_slow+=("$b")
			else
				read -r a b <<<"$(multi_fionbd)"
				[ -n "$b" ] || die "the multi-job read of the export failed"
				if [ "$w" = fio ]; then m_fios+=("$a") m_fslow+=("$b"); else m_fios2+=("$a"); fi
			fi
			log "rep $rep: multi $w: $a MiB/s in aggregate, slowest $b MiB/s"
		done
	fi
	[ "${ONLY#* rand }" != "$ONLY" ] || continue
	rc_up || die "cannot create the device"
	read -r a b <<<"$(rand_dev)"
	[ -n "$b" ] || die "random read of the device failed"
	r_dev50+=("$a") r_dev99+=("$b")
	log "rep $rep: rand dev: p50 $a ms, p99 $b ms"
	read -r a b <<<"$(rand_fionbd)"
	[ -n "$b" ] || die "random read of the export failed"
	r_nbd50+=("$a") r_nbd99+=("$b")
	log "rep $rep: rand export: p50 $a ms, p99 $b ms"
done

# Without the shaped link, once each: what the fault path and the emulated
# CPU allow, to tell a link-bound figure from a CPU-bound one.
if [ "$CEILING" = 1 ]; then
	rc_up "file://$work/base.img" || die "cannot create the device over file://"
	c_file_seq=$(seq_dev) || die "sequential read over file:// failed"
	read -r c_file_seq c_file_f c_file_e <<<"$c_file_seq"
	log "no link: seq dev over file://: $c_file_seq MiB/s, $c_file_f faults/s, $c_file_e extents/s"
	rc_up "file://$work/base.img" || die "cannot create the device over file://"
	read -r c_file50 c_file99 <<<"$(rand_dev)"
	log "no link: rand dev over file://: p50 $c_file50 ms, p99 $c_file99 ms"
	net_unshape
	rc_up || die "cannot create the device"
	if [ "$PERF" = 1 ]; then
		command -v perf >/dev/null || die "BENCH_PERF=1: perf is not installed"
		PERF_OUT=$work/perf.data
	fi
	c_seq_dev=$(seq_dev) || die "sequential read of the device failed"
	PERF_OUT=
	read -r c_seq_dev c_seq_f c_seq_e <<<"$c_seq_dev"
	if [ "$PERF" = 1 ]; then
		echo "perf: unshaped cold read of the device, CPU samples by program:"
		perf report -i "$work/perf.data" --stdio --no-children -g none --sort comm \
			2>/dev/null | grep '%' | head -n 15
		echo "perf: by program and function:"
		perf report -i "$work/perf.data" --stdio --no-children -g none --sort comm,dso,sym \
			2>/dev/null | grep '%' | head -n 50
	fi
	c_seq_fio=$(seq_fionbd) || die "fio on the export failed"
	log "unshaped link: seq dev $c_seq_dev MiB/s ($c_seq_f faults/s, $c_seq_e extents/s), fio-nbd $c_seq_fio MiB/s"
	rc_up || die "cannot create the device"
	read -r c_dev50 c_dev99 <<<"$(rand_dev)"
	read -r c_nbd50 c_nbd99 <<<"$(rand_fionbd)"
	log "unshaped link: rand dev p50 $c_dev50 ms, p99 $c_dev99 ms; export p50 $c_nbd50 ms, p99 $c_nbd99 ms"
	if [ -z "$c_nbd99" ] || [ -z "$c_dev99" ] || [ -z "$c_file99" ]; then
		die "a measurement without the shaped link failed"
	fi
fi
dm_remove "$NAME"
helper_stop
log "helper stats (last run): $(tr '\n' ' ' <"$HELPER_STATS" 2>/dev/null)"

m_dev=$(median "${s_dev[@]}")
m_qd1=$(median "${s_qd1[@]}")
m_copy=$(median "${s_copy[@]}")
m_fio=$(median "${s_fio[@]}")
best=$(printf '%s\n' "$m_copy" "$m_fio" | grep -v '^-$' | sort -g | tail -n1)
ratio=$(awk -v a="$m_dev" -v b="${best:--}" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "-" }')
ratio1=$(awk -v a="$m_qd1" -v b="${best:--}" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "-" }')

echo
echo "bench-nbd: ${SIZE_MB} MiB base over netem $DELAY each way, $RATE; helper $(helper_name); medians of $REPS"
printf '%-34s %14s %14s %14s\n' "" "remote-cow" "nbdcopy" "fio nbd engine"
printf '%-34s %14s %14s %14s\n' "cold seq read, MiB/s" "$m_dev" "$m_copy" "$m_fio"
printf '%-34s %14s %14s %14s\n' "cold seq read iodepth 1, MiB/s" "$m_qd1" "-" "-"
printf '%-34s %14s %14s %14s\n' "  its faults/s (extents/s)" "$(median "${f_qd1[@]}") ($(median "${e_qd1[@]}"))" "-" "-"
printf '%-34s %14s %14s %14s\n' "cold seq read faults/s (extents/s)" "$(median "${f_dev[@]}") ($(median "${e_dev[@]}"))" "-" "-"
printf '%-34s %14s %14s %14s\n' "cold 4 KiB rand read p50, ms" "$(median "${r_dev50[@]}")" "-" "$(median "${r_nbd50[@]}")"
printf '%-34s %14s %14s %14s\n' "cold 4 KiB rand read p99, ms" "$(median "${r_dev99[@]}")" "-" "$(median "${r_nbd99[@]}")"
printf '%-34s %14s %14s %14s\n' "$MULTI devices at once, MiB/s" "$(median "${m_devs[@]}")" "-" "$(median "${m_fios[@]}")"
printf '%-34s %14s %14s %14s\n' "  the slowest device/job, MiB/s" "$(median "${m_slow[@]}")" "-" "$(median "${m_fslow[@]}")"
echo "seq ratio remote-cow / best direct: $ratio (target >= 0.90); at iodepth 1: $ratio1"
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "-" }'; }
echo "$MULTI devices at once, aggregate remote-cow / fio nbd engine: $(ratio_of "$(median "${m_devs[@]}")" "$(median "${m_fios[@]}")") (target >= 0.90), control (fio nbd engine again / fio nbd engine): $(ratio_of "$(median "${m_fios2[@]}")" "$(median "${m_fios[@]}")")"
echo "run time: $(( $(date +%s) - start_s )) s"
echo "all seq runs, MiB/s: dev ${s_dev[*]}; dev iodepth 1 ${s_qd1[*]}; nbdcopy ${s_copy[*]}; fio-nbd ${s_fio[*]}"
echo "all multi runs, MiB/s (aggregate): dev ${m_devs[*]}; fio-nbd ${m_fios[*]}; fio-nbd again ${m_fios2[*]}"
if [ "$CEILING" = 1 ]; then
	echo
	echo "without the shaped link (one run each; bound by the emulated CPU, not a link):"
	printf '%-34s %14s %14s %14s\n' "" "rc over file:" "rc over nbd" "fio nbd engine"
	printf '%-34s %14s %14s %14s\n' "cold seq read, MiB/s" "$c_file_seq" "$c_seq_dev" "$c_seq_fio"
	printf '%-34s %14s %14s %14s\n' "  its faults/s" "$c_file_f" "$c_seq_f" "-"
	printf '%-34s %14s %14s %14s\n' "  its extents/s" "$c_file_e" "$c_seq_e" "-"
	printf '%-34s %14s %14s %14s\n' "cold 4 KiB rand read p50, ms" "$c_file50" "$c_dev50" "$c_nbd50"
	printf '%-34s %14s %14s %14s\n' "cold 4 KiB rand read p99, ms" "$c_file99" "$c_dev99" "$c_nbd99"
fi
