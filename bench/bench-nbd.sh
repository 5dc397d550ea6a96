#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/bench-nbd.sh - a remote-cow device over a shaped NBD link against
# reading the NBD export directly, in the same run.
#
# Runs inside the test VM (make bench-nbd, or
# scripts/vm-run.sh --timeout 1800 bench/bench-nbd.sh).  Prints figures; it
# is not a pass/fail test and is not part of make check.  See
# Documentation/benchmarks-nbd.rst.
#
# The base (random data, so nothing compresses or is a hole) is served by
# nbdkit's file plugin from a network namespace behind a veth link shaped
# with tc netem on both ends (BENCH_DELAY each way, BENCH_RATE).  Every
# measurement starts cold: a fresh, zeroed COW device and a new remote-cow
# device; the server's image is in RAM (tmpfs).
#
#  seq    cold sequential read of the whole device, fio 1 MiB direct reads
#         at iodepth BENCH_SEQ_DEPTH, against the whole export read directly
#         with nbdcopy (to null:) and with fio's nbd engine (same job).
#  rand   cold 4 KiB random reads, fio --direct=1 at iodepth 1,
#         BENCH_RAND_IOS of them; completion latency p50 and p99, against
#         the same job on the export with fio's nbd engine.
#
# Each figure is the median of BENCH_REPS runs, the device's and the
# direct ones alternating.
#
# Environment (defaults in brackets):
#   BENCH_SIZE_MB    base image size, MiB [128]
#   BENCH_DELAY      netem delay each way [50ms]
#   BENCH_RATE       netem rate each way [100mbit]
#   BENCH_REPS       repetitions [3]
#   BENCH_EXTENT     extent size, sectors [128 = 64 KiB]
#   BENCH_SEQ_DEPTH  fio iodepth of the sequential job [16]
#   BENCH_RAND_IOS   4 KiB random reads per run [300]
#   RCOW_HELPER      the helper program (remote-cowd when built, else
#                    the selftests' rcow-fill)
#
# Exit status: 0 when every figure was measured (whatever the ratios),
# 1 when something could not be measured.
# shellcheck disable=SC2119	# lib-net.sh helpers take optional arguments

TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=../selftests/lib.sh
. "$TREE/selftests/lib.sh"
# shellcheck source=../selftests/lib-net.sh
. "$TREE/selftests/lib-net.sh"

SIZE_MB=${BENCH_SIZE_MB:-128}
DELAY=${BENCH_DELAY:-50ms}
RATE=${BENCH_RATE:-100mbit}
REPS=${BENCH_REPS:-3}
EXT=${BENCH_EXTENT:-128}
SEQ_DEPTH=${BENCH_SEQ_DEPTH:-16}
RAND_IOS=${BENCH_RAND_IOS:-300}
NAME=bench-nbd

die() { echo "bench-nbd: $*" >&2; exit 1; }
log() { echo "# $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root: run it in the VM (make bench-nbd)"
for c in fio nbdcopy nbdkit nbdinfo ip tc dmsetup losetup openssl python3; do
	command -v "$c" >/dev/null || die "$c is not installed"
done
load_module || die "cannot load $RC_MODULE"
net_tmpdir
work=$NET_WORKDIR
bytes=$((SIZE_MB << 20))
len=$((bytes / 512))

log "base: ${SIZE_MB} MiB of random data; link: netem $DELAY each way, $RATE; extent $((EXT / 2)) KiB"
log "helper: $RCOW_HELPER; $(nproc) vCPUs; kernel $(uname -r)"
image_data bench-nbd "$bytes" >"$work/base.img" || die "cannot make the base image"
net_setup || die "cannot set up the network namespace"
net_shape "$DELAY" "$RATE" || die "cannot shape the link"
net_serve "$work/base.img" || die "cannot start nbdkit"
uri=$(net_uri)
log "ping: $(ping -c3 -W2 "$NET_SRV_IP" | tail -n1)"
helper_start || die "the helper does not start"

# fio_json <file> <jq-like python expression over the job's "read">
fio_get() {
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
r = j["jobs"][0]["read"]
what = sys.argv[2]
if what == "bw":
	print("%.2f" % (r["bw_bytes"] / 1048576.0))
else:
	p = r["clat_ns"]["percentile"]
	print("%.2f" % (p[what] / 1e6))
' "$@"
}

# A fresh cold device: zeroed COW, new table.  In the main shell (it
# registers cleanups and sets COW_DEV), never in a command substitution.
rc_up() {
	dm_remove "$NAME" >/dev/null 2>&1
	[ -z "${COW_DEV:-}" ] || losetup -d "$COW_DEV"
	rm -f "$work"/cow.*
	make_cow $((bytes + (16 << 20))) || return 1
	dmsetup create "$NAME" --table "$(rc_table "$len" "$COW_DEV" "$EXT" "$uri")" ||
		return 1
	at_exit "dm_remove $NAME"
}

seq_dev() {	# MiB/s, on a device made cold by rc_up
	fio --name=seq --filename="/dev/mapper/$NAME" --rw=read --bs=1M --direct=1 \
		--ioengine=libaio --iodepth="$SEQ_DEPTH" --size="$bytes" \
		--output-format=json --output="$work/fio.json" >/dev/null || return 1
	[ "$(present_extents "$NAME")" -eq "$(((len + EXT - 1) / EXT))" ] ||
		echo "bench-nbd: warning: device not fully present after the read" >&2
	fio_get "$work/fio.json" bw
}

seq_nbdcopy() {	# MiB/s
	local t0 t1
	t0=$(date +%s.%N)
	nbdcopy "$uri" null: || return 1
	t1=$(date +%s.%N)
	awk -v b="$bytes" -v a="$t0" -v c="$t1" 'BEGIN { printf "%.2f\n", b / 1048576 / (c - a) }'
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

median() {	# median of the arguments
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
		if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

s_dev=() s_copy=() s_fio=() r_dev50=() r_dev99=() r_nbd50=() r_nbd99=()
for ((rep = 1; rep <= REPS; rep++)); do
	# Alternate the order so that neither side always goes first.
	if [ $((rep % 2)) -eq 1 ]; then order="dev copy fio"; else order="fio copy dev"; fi
	for w in $order; do
		case $w in
		dev) rc_up || die "cannot create the device"
			v=$(seq_dev) || die "sequential read of the device failed"; s_dev+=("$v") ;;
		copy) v=$(seq_nbdcopy) || die "nbdcopy failed"; s_copy+=("$v") ;;
		fio) v=$(seq_fionbd) || die "fio on the export failed"; s_fio+=("$v") ;;
		esac
		log "rep $rep: seq $w: $v MiB/s"
	done
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
dm_remove "$NAME"
helper_stop
log "helper stats (last run): $(tr '\n' ' ' <"$HELPER_STATS" 2>/dev/null)"

m_dev=$(median "${s_dev[@]}")
m_copy=$(median "${s_copy[@]}")
m_fio=$(median "${s_fio[@]}")
best=$(printf '%s\n' "$m_copy" "$m_fio" | sort -g | tail -n1)
ratio=$(awk -v a="$m_dev" -v b="$best" 'BEGIN { printf "%.2f", a / b }')

echo
echo "bench-nbd: ${SIZE_MB} MiB base over netem $DELAY each way, $RATE; helper $(helper_name); medians of $REPS"
printf '%-34s %14s %14s %14s\n' "" "remote-cow" "nbdcopy" "fio nbd engine"
printf '%-34s %14s %14s %14s\n' "cold seq read, MiB/s" "$m_dev" "$m_copy" "$m_fio"
printf '%-34s %14s %14s %14s\n' "cold 4 KiB rand read p50, ms" "$(median "${r_dev50[@]}")" "-" "$(median "${r_nbd50[@]}")"
printf '%-34s %14s %14s %14s\n' "cold 4 KiB rand read p99, ms" "$(median "${r_dev99[@]}")" "-" "$(median "${r_nbd99[@]}")"
echo "seq ratio remote-cow / best direct: $ratio (target >= 0.90)"
echo "all seq runs, MiB/s: dev ${s_dev[*]}; nbdcopy ${s_copy[*]}; fio-nbd ${s_fio[*]}"
