#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/bench-peers.sh - remote-cow against its peers, side by side in one
# VM run: the same random base, served by the same NBD server behind the
# same links.
#
# Runs inside the test VM (make bench-peers, which also builds dm-clone.ko
# and draws the plots; or scripts/vm-run.sh --timeout 3600
# bench/bench-peers.sh).  About 30 minutes with the defaults.  Prints
# figures; not a pass/fail test, not in make check.  See
# Documentation/benchmarks-peers.rst.
#
# The base (BENCH_SIZE_MB of random data) is served read-only by nbdkit's
# file plugin in a network namespace behind a veth pair, first shaped with
# netem (BENCH_DELAY each way, BENCH_RATE), then unshaped ("bare").  Over
# each link, the targets:
#
#   remote-cow  this project: COW device /dev/ram0, remote-cowd
#   dm-clone    Debian's dm-clone built out of tree (bench/build-dm-clone.sh),
#               destination /dev/ram1, source /dev/nbd0 (nbd-client)
#   dm-thin     a thin volume with /dev/nbd0 as its external origin, pool
#               data /dev/ram2
#   nbd-client  /dev/nbd0 itself
#   nbdkit-cow  nbdkit's cow filter (cow-on-read) over its nbd plugin,
#               in the root namespace, through nbd-client (/dev/nbd1)
#   fio-nbd     fio's nbd engine reading the whole export, the same job as
#               the cold read (the link's ceiling, the reference of the
#               link figures), twice per repetition: the second run
#               against the first is the control of the link figures
#   nbdcopy     the whole export to null:, timed around the command
#               (its start and connection included)
#
# and the workloads, each on a cold target (new device, zeroed metadata):
#
#   cold     sequential read of the whole device, fio 1 MiB O_DIRECT
#            reads at iodepth BENCH_SEQ_DEPTH
#   second   the same job again on the same device
#   hydrate  full background hydration of an untouched device: remote-cow's
#            "hydrate start", dm-clone's "enable_hydration"; the link's
#            received bytes are sampled every 0.25 s for the plot.  Timed
#            by the shell (from before "dmsetup message" to the poll that
#            sees every extent present) for both; for remote-cow also by
#            the kernel (hydratek: from the message to the last extent
#            present, from its "hydrated" log line), without the
#            processes the shell starts, which cost seconds on a busy
#            emulated host
#   trace    a boot-like trace: BENCH_TRACE_READS scattered reads of 4-64
#            KiB, then a BENCH_TRACE_SEQ_MB sequential stretch in 1 MiB
#            reads, one at a time, O_DIRECT; MiB/s of the reads and the
#            bytes the link carried over the bytes read
#
# Then, once, the hot workloads on present extents (fio --time_based,
# BENCH_HOT_RUNTIME s, iodepth BENCH_HOT_DEPTH): 4 KiB random read, 4 KiB
# random write, 1 MiB sequential read, on remote-cow made present by
# reading it once through remote-cowd, dm-clone hydrated, dm-thin
# provisioned by writing it whole, nbdkit-cow read once, and dm-linear
# over /dev/ram0 at remote-cow's data offset (the ceiling) with a second
# identical dm-linear as the control.
#
# Targets run in alternating order (rotated every repetition); every
# figure is the median of BENCH_REPS.  Results go to $BENCH_OUT: peers.md
# (the tables) and the .dat files bench/plot-peers.sh draws.
#
# Environment (defaults in brackets):
#   BENCH_SIZE_MB      base image size, MiB [64]
#   BENCH_DELAY        netem delay each way [5ms]
#   BENCH_RATE         netem rate each way [100mbit]
#   BENCH_LINKS        which links, in order ["shaped bare"]
#   BENCH_REPS         repetitions [3]
#   BENCH_EXTENT       remote-cow extent, dm-clone region, dm-thin block,
#                      sectors [128 = 64 KiB]
#   BENCH_SEQ_DEPTH    fio iodepth of the sequential reads [16]
#   BENCH_NBD_CONNS    nbd-client connections (remote-cowd opens 4) [4]
#   BENCH_TRACE_READS  scattered reads of the trace [300]
#   BENCH_TRACE_SEQ_MB sequential stretch of the trace, MiB [16; at most half the device]
#   BENCH_HOT          1: the hot workloads [1]
#   BENCH_HOT_RUNTIME  seconds per hot fio run (after 1 s of ramp) [3]
#   BENCH_HOT_DEPTH    fio iodepth of the hot runs [16]
#   BENCH_OUT          results directory [$RC_RUN/peers, else /tmp/peers]
#   BENCH_DM_CLONE_KO  dm-clone module [build/peers/dm-clone/dm-clone.ko]
#
# Exit status: 0 when every figure was measured (whatever the ratios),
# 1 when something could not be measured.
# shellcheck disable=SC2119	# lib-net.sh helpers take optional arguments
# shellcheck disable=SC2317	# the targets' functions are called as "${t}_up"

TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=lib-bench.sh
. "$TREE/bench/lib-bench.sh"

SIZE_MB=${BENCH_SIZE_MB:-64}
DELAY=${BENCH_DELAY:-5ms}
RATE=${BENCH_RATE:-100mbit}
LINKS=${BENCH_LINKS:-shaped bare}
REPS=${BENCH_REPS:-3}
EXT=${BENCH_EXTENT:-128}
SEQ_DEPTH=${BENCH_SEQ_DEPTH:-16}
NBD_CONNS=${BENCH_NBD_CONNS:-4}
TRACE_READS=${BENCH_TRACE_READS:-300}
TRACE_SEQ_MB=${BENCH_TRACE_SEQ_MB:-16}
HOT=${BENCH_HOT:-1}
HOT_RUNTIME=${BENCH_HOT_RUNTIME:-3}
HOT_DEPTH=${BENCH_HOT_DEPTH:-16}
OUT=${BENCH_OUT:-${RC_RUN:-/tmp}/peers}
CLONE_KO=${BENCH_DM_CLONE_KO:-$TREE/build/peers/dm-clone/dm-clone.ko}
NCOW_PORT=10810
start_s=$(date +%s)

die() { echo "bench-peers: $*" >&2; exit 1; }
log() { echo "# [$(($(date +%s) - start_s))s] $*"; }

bench_require bench-peers fio nbdcopy nbdkit nbdinfo nbd-client ip tc dmsetup blockdev openssl \
	python3
load_module || die "cannot load $RC_MODULE"
modprobe dm-thin-pool || die "no dm-thin-pool module"
modprobe dm-persistent-data || die "no dm-persistent-data module"
bench_load_clone "$CLONE_KO" bench-peers
modprobe nbd nbds_max=4 || die "no nbd module"
export DM_DISABLE_UDEV=1

net_tmpdir
work=$NET_WORKDIR
mkdir -p "$OUT" || die "cannot make $OUT"
rm -f "$OUT"/*.dat "$OUT"/peers.md
bytes=$((SIZE_MB << 20))
len=$((bytes / 512))
[ $((len % EXT)) -eq 0 ] || die "BENCH_SIZE_MB must be a multiple of the extent"
nregions=$((len / EXT))

# ---------------------------------------------------------------------------
# Local devices: four RAM disks of the same kind, allocated as written.
#   ram0  remote-cow's COW device (and dm-linear over its data area)
#   ram1  dm-clone's destination
#   ram2  dm-thin's pool data
#   ram3  dm-clone's metadata (first 16 MiB) and dm-thin's (next 16 MiB)
# ---------------------------------------------------------------------------
RAM_MB=$((SIZE_MB + 64))
[ -e /sys/module/brd ] && die "brd is already loaded"
modprobe brd rd_nr=4 rd_size=$((RAM_MB * 1024)) max_part=0 || die "cannot load brd"
at_exit "rmmod brd"
ram_sectors=$(blockdev --getsz /dev/ram0)
data_off=$("$TREE/tools/remote-cow" cow-size --size "$bytes" --extent-size $((EXT * 512)) \
	--verbose | sed -n 's/^data offset: *\([0-9]*\) sectors$/\1/p')
[ -n "$data_off" ] || die "cannot tell remote-cow's data offset"
[ $((data_off + len)) -le "$ram_sectors" ] || die "the COW device is too small"
dmsetup create pr-cmeta --table "0 32768 linear /dev/ram3 0" || die "dm-clone metadata"
at_exit "dm_remove pr-cmeta"
dmsetup create pr-tmeta --table "0 32768 linear /dev/ram3 32768" || die "dm-thin metadata"
at_exit "dm_remove pr-tmeta"

# zero <device> <MiB>: zero the head of a device (its metadata).
zero() {
	dd if=/dev/zero of="$1" bs=1M count="$2" oflag=direct status=none
}

log "base: ${SIZE_MB} MiB of random data; links: ${LINKS}; shaped = netem $DELAY each way, $RATE"
log "extent/region/block $((EXT / 2)) KiB; $REPS repetitions; $(nproc) vCPUs; kernel $(uname -r)"
log "$(nbdkit --version | head -n1); $(fio --version); $(nbdcopy --version | head -n1 | tr -d '\n'); $(nbd-client -V 2>&1 | head -n1)"
bench_net_base bench-peers "$bytes"
uri=$(net_uri)
helper_start || die "the helper does not start"

# ---------------------------------------------------------------------------
# The targets: <name>_up makes a cold one and sets DEV; <name>_down removes
# it.  In the main shell (not in command substitutions).
# ---------------------------------------------------------------------------
DEV=
NBD0_UP=0
nbd0_connect() {
	[ "$NBD0_UP" = 1 ] && return 0
	nbd-client "$NET_SRV_IP" "$NET_PORT" /dev/nbd0 -N "$NET_EXPORT" -C "$NBD_CONNS" \
		>>"$work/nbd-client.log" 2>&1 || return 1
	at_exit "nbd-client -d /dev/nbd0"
	NBD0_UP=1
}

rc_up() {
	dm_remove pr-rc
	zero /dev/ram0 $(((data_off + 2047) / 2048)) || return 1
	bench_rc_create pr-rc "$len" /dev/ram0 "$EXT" "$uri" || return 1
	DEV=/dev/mapper/pr-rc
}
rc_down() { dm_remove pr-rc; }
rc_hydrate() {
	dmsetup message pr-rc 0 hydrate start || return 1
	until [ "$(present_extents pr-rc)" -ge "$nregions" ]; do sleep 0.1; done
}
# rc_hydrated_lines: how many hydrations of pr-rc the kernel logged.
rc_hydrated_lines() { dmesg | grep -c 'remote-cow: pr-rc: hydrated: '; }
# rc_hydrate_ms <lines before>: the kernel's own time of the last
# hydration, from the "hydrate start" message to the last extent present
# (no process start-up, no polling in it); waits 10 s for its line.
rc_hydrate_ms() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(rc_hydrated_lines)" -gt "$1" ] && break
		sleep 0.1
	done
	dmesg | sed -n 's/.*remote-cow: pr-rc: hydrated: .*, \([0-9]*\) ms after hydrate start$/\1/p' |
		tail -n1
}

# over_nbd0 <metadata device> <dm names...>: remove the devices, connect
# /dev/nbd0 and zero the metadata, for a new device over nbd-client.
over_nbd0() {
	local meta=$1 n
	shift
	for n in "$@"; do dm_remove "$n"; done
	nbd0_connect || return 1
	zero "$meta" 1
}

clone_up() {
	over_nbd0 /dev/mapper/pr-cmeta pr-clone || return 1
	dmsetup create pr-clone --table \
		"0 $len clone /dev/mapper/pr-cmeta /dev/ram1 /dev/nbd0 $EXT 1 no_hydration" ||
		return 1
	at_exit "dm_remove pr-clone"
	DEV=/dev/mapper/pr-clone
}
clone_down() { dm_remove pr-clone; }
clone_hydrated() {	# hydrated regions
	dmsetup status pr-clone | awk '{ split($7, a, "/"); print a[1] }'
}
clone_hydrate() {
	dmsetup message pr-clone 0 enable_hydration || return 1
	until [ "$(clone_hydrated)" -ge "$nregions" ]; do sleep 0.1; done
}

thin_up() {
	over_nbd0 /dev/mapper/pr-tmeta pr-thin pr-pool || return 1
	dmsetup create pr-pool --table \
		"0 $(((ram_sectors / EXT) * EXT)) thin-pool /dev/mapper/pr-tmeta /dev/ram2 $EXT 0 1 skip_block_zeroing" ||
		return 1
	at_exit "dm_remove pr-pool"
	dmsetup message pr-pool 0 "create_thin 0" || return 1
	dmsetup create pr-thin --table "0 $len thin /dev/mapper/pr-pool 0 /dev/nbd0" || return 1
	at_exit "dm_remove pr-thin"
	DEV=/dev/mapper/pr-thin
}
thin_down() { dm_remove pr-thin; dm_remove pr-pool; }

nbd_up() { nbd0_connect || return 1; DEV=/dev/nbd0; }
nbd_down() { :; }

NCOW_PID=
ncow_up() {
	local i
	ncow_down
	TMPDIR=$work nbdkit -f -i 127.0.0.1 -p "$NCOW_PORT" -e "$NET_EXPORT" --filter=cow \
		nbd uri="$uri" cow-on-read=true >>"$work/nbdkit-cow.log" 2>&1 &
	NCOW_PID=$!
	at_exit "kill -KILL $NCOW_PID"
	for ((i = 0; i < 100; i++)); do
		nbdinfo --size "nbd://127.0.0.1:$NCOW_PORT/$NET_EXPORT" >/dev/null 2>&1 && break
		sleep 0.1
	done
	nbd-client 127.0.0.1 "$NCOW_PORT" /dev/nbd1 -N "$NET_EXPORT" -C "$NBD_CONNS" \
		>>"$work/nbd-client.log" 2>&1 || return 1
	at_exit "nbd-client -d /dev/nbd1"
	DEV=/dev/nbd1
}
ncow_down() {
	[ -n "$NCOW_PID" ] || return 0
	nbd-client -d /dev/nbd1 >>"$work/nbd-client.log" 2>&1
	kill "$NCOW_PID" 2>/dev/null
	wait "$NCOW_PID" 2>/dev/null
	NCOW_PID=
}

label() {
	case $1 in
	rc) echo remote-cow ;; clone) echo dm-clone ;; thin) echo dm-thin ;;
	nbd) echo nbd-client ;; ncow) echo nbdkit-cow ;; copy) echo nbdcopy ;;
	fnbd) echo fio-nbd ;; fnbd2) echo fio-nbd-2 ;; lin) echo dm-linear ;; lin2) echo dm-linear-2 ;;
	esac
}

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------
seq_read() {	# seq_read <device>: MiB/s of one whole read
	fio --name=seq --filename="$1" --rw=read --bs=1M --direct=1 \
		--ioengine=libaio --iodepth="$SEQ_DEPTH" --size="$bytes" \
		--output-format=json --output="$work/fio.json" >/dev/null || return 1
	fio_get "$work/fio.json" bw
}

fio_nbd() {	# the export read whole by fio's nbd engine (same job): MiB/s
	fio --name=seq --ioengine=nbd --uri="$uri" --rw=read --bs=1M \
		--iodepth="$SEQ_DEPTH" --size="$bytes" \
		--output-format=json --output="$work/fio.json" >/dev/null || return 1
	fio_get "$work/fio.json" bw
}

# The link's received bytes, sampled every 0.25 s into a file by one
# process in the background: "<ms since start> <bytes>".
SAMPLER_PID=
sampler_start() {
	python3 - "/sys/class/net/$NET_HOST_IF/statistics/rx_bytes" >"$1" <<'EOF_PY' &
import sys, time
t0 = time.monotonic()
while True:
    with open(sys.argv[1]) as f:
        b = f.read().strip()
    print("%d %s" % ((time.monotonic() - t0) * 1000, b), flush=True)
    time.sleep(0.25)
EOF_PY
	SAMPLER_PID=$!
	sleep 0.5	# python's start, not counted
}
sampler_stop() {
	kill "$SAMPLER_PID" 2>/dev/null
	wait "$SAMPLER_PID" 2>/dev/null
	SAMPLER_PID=
}
# rate_series <samples> <out.dat>: "<s> <MiB/s>" per interval.
rate_series() {
	awk 'NR > 1 && $1 > t { printf "%.2f %.2f\n", $1 / 1000, ($2 - b) / 1048576 / (($1 - t) / 1000) }
		{ t = $1; b = $2 }' "$1" >"$2"
}

# The boot-like trace: scattered reads, then a sequential stretch; the
# same offsets for every target.  Prints "<seconds> <bytes read>".
python3 - "$len" "$TRACE_READS" "$TRACE_SEQ_MB" >"$work/trace.txt" <<'EOF'
import random, sys
sectors, n, seq_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
size = sectors * 512
r = random.Random(13)
for _ in range(n):
    ln = r.choice((4, 4, 4, 8, 8, 16, 32, 64)) * 1024
    print(r.randrange(0, (size - ln) // 4096) * 4096, ln)
# at most half the device, so that a small BENCH_SIZE_MB still has room
seq_mb = max(1, min(seq_mb, (size >> 20) // 2))
start = r.randrange(0, max(1, (size - (seq_mb << 20)) >> 20)) << 20
for i in range(seq_mb):
    print(start + (i << 20), 1 << 20)
EOF
trace_run() {	# trace_run <device>
	python3 - "$1" "$work/trace.txt" <<'EOF'
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
reqs = [tuple(map(int, l.split())) for l in open(sys.argv[2])]
total = 0
t0 = time.monotonic()
for off, ln in reqs:
    mv = memoryview(buf)[:ln]
    if os.preadv(fd, [mv], off) != ln:
        sys.exit("short read at %d" % off)
    total += ln
print("%.4f %d" % (time.monotonic() - t0, total))
EOF
}

# Results: R[<link>.<workload>.<target>] = the runs, space separated.
declare -A R
add() { R[$1]="${R[$1]:-} $2"; log "$1: $2"; }

link_runs() {	# link_runs <link name>
	local lk=$1 rep t v t0 t1 b0 b1 s
	for ((rep = 1; rep <= REPS; rep++)); do
		# Cold and second sequential reads; the reference (fio-nbd) twice.
		for t in $(rotate "$rep" rc fnbd clone copy thin fnbd2 nbd ncow); do
			case $t in
			copy)
				v=$(nbdcopy_rate "$uri" "$bytes") || die "nbdcopy failed"
				add "$lk.cold.$t" "$v"
				continue ;;
			fnbd | fnbd2)
				sampler_start "$work/samples"
				v=$(fio_nbd) || die "fio's nbd engine failed"
				sampler_stop
				[ "$rep$t" = 1fnbd ] && rate_series "$work/samples" "$OUT/hydrate-$lk-fio-nbd.dat"
				add "$lk.cold.$t" "$v"
				continue ;;
			esac
			"${t}_up" || die "cannot set up $(label "$t")"
			v=$(seq_read "$DEV") || die "cold read of $(label "$t") failed"
			add "$lk.cold.$t" "$v"
			v=$(seq_read "$DEV") || die "second read of $(label "$t") failed"
			add "$lk.second.$t" "$v"
			"${t}_down"
		done
		# Full background hydration of an untouched device.
		for t in $(rotate "$rep" rc clone); do
			"${t}_up" || die "cannot set up $(label "$t")"
			s=$(rc_hydrated_lines)
			sampler_start "$work/samples"
			t0=$(date +%s.%N)
			"${t}_hydrate" || die "hydration of $(label "$t") failed"
			t1=$(date +%s.%N)
			sampler_stop
			[ "$rep" = 1 ] && rate_series "$work/samples" "$OUT/hydrate-$lk-$(label "$t").dat"
			add "$lk.hydrate.$t" "$(mib_per_s "$bytes" "$t0" "$t1")"
			if [ "$t" = rc ]; then
				v=$(rc_hydrate_ms "$s")
				[ -n "$v" ] || die "the kernel did not log the hydration's time"
				add "$lk.hydratek.$t" "$(mib_per_s "$bytes" 0 "$(awk -v m="$v" 'BEGIN { print m / 1000 }')")"
			fi
			"${t}_down"
		done
		# The boot-like trace.
		for t in $(rotate "$rep" rc clone thin nbd ncow); do
			"${t}_up" || die "cannot set up $(label "$t")"
			b0=$(net_bytes rx)
			read -r s v <<<"$(trace_run "$DEV")"
			[ -n "$v" ] || die "the trace on $(label "$t") failed"
			b1=$(net_bytes rx)
			add "$lk.trace.$t" "$(awk -v b="$v" -v s="$s" 'BEGIN { printf "%.2f", b / 1048576 / s }')"
			add "$lk.fetched.$t" "$(awk -v a="$((b1 - b0))" -v b="$v" 'BEGIN { printf "%.2f", a / b }')"
			"${t}_down"
		done
	done
}

for lk in $LINKS; do
	case $lk in
	shaped) net_shape "$DELAY" "$RATE" || die "cannot shape the link" ;;
	bare) net_unshape ;;
	*) die "unknown link $lk (shaped, bare)" ;;
	esac
	log "link $lk: ping $(ping -c3 -W2 "$NET_SRV_IP" | tail -n1)"
	link_runs "$lk"
done

# ---------------------------------------------------------------------------
# Hot workloads on present extents (over the last link; nothing is fetched).
# ---------------------------------------------------------------------------
hot_run() {	# hot_run <device> <workload>: IOPS or MiB/s
	local rw bs what
	case $2 in
	randread) rw=randread bs=4k what=iops ;;
	randwrite) rw=randwrite bs=4k what=wiops ;;
	seqread) rw=read bs=1M what=bw ;;
	esac
	fio --name="$2" --filename="$1" --rw="$rw" --bs="$bs" --direct=1 \
		--ioengine=libaio --iodepth="$HOT_DEPTH" --time_based \
		--runtime="$HOT_RUNTIME" --ramp_time=1 --randrepeat=1 --norandommap \
		--size="$bytes" --output-format=json --output="$work/fio.json" >/dev/null || return 1
	fio_get "$work/fio.json" "$what"
}
HOT_WL="randread randwrite seqread"
if [ "$HOT" = 1 ]; then
	declare -A HDEV
	rc_up || die "cannot set up remote-cow"
	seq_read "$DEV" >/dev/null || die "cannot read remote-cow"
	[ "$(present_extents pr-rc)" -ge "$nregions" ] || die "remote-cow not present after a read"
	HDEV[rc]=$DEV
	clone_up || die "cannot set up dm-clone"
	clone_hydrate || die "cannot hydrate dm-clone"
	HDEV[clone]=$DEV
	thin_up || die "cannot set up dm-thin"
	dd if=/dev/zero of="$DEV" bs=1M count="$SIZE_MB" oflag=direct status=none ||
		die "cannot provision dm-thin"
	HDEV[thin]=$DEV
	ncow_up || die "cannot set up nbdkit-cow"
	seq_read "$DEV" >/dev/null || die "cannot read nbdkit-cow"
	HDEV[ncow]=$DEV
	dmsetup create pr-lin --table "0 $len linear /dev/ram0 $data_off" || die "dm-linear"
	at_exit "dm_remove pr-lin"
	dmsetup create pr-lin2 --table "0 $len linear /dev/ram0 $data_off" || die "dm-linear-2"
	at_exit "dm_remove pr-lin2"
	HDEV[lin]=/dev/mapper/pr-lin HDEV[lin2]=/dev/mapper/pr-lin2
	cmp -n 1048576 /dev/mapper/pr-rc /dev/mapper/pr-lin ||
		die "dm-linear does not show remote-cow's data"
	# One uncounted run each: the first run after setup is slower.
	for wl in $HOT_WL; do
		for t in rc lin lin2 clone thin ncow; do
			HOT_RUNTIME=1 hot_run "${HDEV[$t]}" "$wl" >/dev/null
		done
	done
	for ((rep = 1; rep <= REPS; rep++)); do
		for wl in $HOT_WL; do
			for t in $(rotate "$rep" rc lin clone lin2 thin ncow); do
				v=$(hot_run "${HDEV[$t]}" "$wl") || die "$wl on $(label "$t") failed"
				add "hot.$wl.$t" "$v"
			done
		done
	done
	log "remote-cow status after: $(dmsetup status pr-rc)"
	ncow_down
fi
helper_stop
log "helper stats (last run): $(tr '\n' ' ' <"$HELPER_STATS" 2>/dev/null)"

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
med() {	# med <key>
	# shellcheck disable=SC2086	# the runs are words
	median ${R[$1]:-}
}
ratio() {	# ratio <a> <b>
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}
TARGETS="rc clone thin nbd ncow lin fnbd copy"
wl_label() {
	case $1 in
	cold) echo "cold sequential read, MiB/s" ;;
	second) echo "second read, MiB/s" ;;
	hydrate) echo "full hydration, MiB/s" ;;
	hydratek) echo "full hydration, kernel-timed, MiB/s" ;;
	trace) echo "boot-like trace, MiB/s" ;;
	fetched) echo "boot-like trace, fetched/read" ;;
	randread) echo "hot 4 KiB random read, IOPS" ;;
	randwrite) echo "hot 4 KiB random write, IOPS" ;;
	seqread) echo "hot 1 MiB sequential read, MiB/s" ;;
	esac
}
# ref <link> <workload>: the reference's key, then the control's two keys
# (numerator, denominator).
ref() {
	case $1.$2 in
	hot.*) echo "hot.$2.lin hot.$2.lin2 hot.$2.lin" ;;
	*.trace) echo "$1.trace.nbd $1.cold.fnbd2 $1.cold.fnbd" ;;
	*) echo "$1.cold.fnbd $1.cold.fnbd2 $1.cold.fnbd" ;;
	esac
}
rows() {
	local lk wl
	for lk in $LINKS; do
		for wl in cold second hydrate hydratek trace fetched; do echo "$lk $wl"; done
	done
	[ "$HOT" = 1 ] && for wl in $HOT_WL; do echo "hot $wl"; done
}
link_label() {
	case $1 in
	shaped) echo "$RATE, $DELAY each way" ;;
	bare) echo "bare veth" ;;
	hot) echo "local" ;;
	esac
}

{
	echo "# remote-cow and its peers"
	echo
	echo "\`make bench-peers\`, $(date -u '+%Y-%m-%d %H:%M UTC'); ${SIZE_MB} MiB random base," \
		"nbdkit $(nbdkit --version | awk '{print $2}'), extent/region/block $((EXT / 2)) KiB," \
		"medians of $REPS; kernel $(uname -r), $(nproc) vCPUs (qemu TCG)."
	echo
	printf '| link | workload |'
	for t in $TARGETS; do printf ' %s |' "$(label "$t")"; done
	echo
	printf '|---|---|'
	for t in $TARGETS; do printf -- '---:|'; done
	echo
	while read -r lk wl; do
		k=$lk.$wl
		printf '| %s | %s |' "$(link_label "$lk")" "$(wl_label "$wl")"
		for t in $TARGETS; do
			if [ "$lk" = hot ] || [ "$t" != lin ]; then
				printf ' %s |' "$(med "$k.$t")"
			else
				printf ' - |'
			fi
		done
		echo
	done < <(rows)
	echo
	echo "Ratios to the reference (fio's nbd engine reading the export for the link"
	echo "figures, nbd-client for the trace's MiB/s, dm-linear for the hot ones);"
	echo "control: the reference measured again against itself in the same run"
	echo "(fio-nbd-2 / fio-nbd, dm-linear-2 / dm-linear): its distance from 1 is the noise."
	echo
	printf '| link | workload | reference |'
	for t in rc clone thin nbd ncow copy; do printf ' %s |' "$(label "$t")"; done
	echo ' control |'
	printf '|---|---|---|'
	for t in rc clone thin nbd ncow copy; do printf -- '---:|'; done
	echo '---:|'
	while read -r lk wl; do
		[ "$wl" = fetched ] && continue
		read -r r c1 c2 <<<"$(ref "$lk" "$wl")"
		k=$lk.$wl
		rv=$(med "$r")
		printf '| %s | %s | %s %s |' "$(link_label "$lk")" "$(wl_label "$wl")" \
			"$(label "${r##*.}")" "$rv"
		for t in rc clone thin nbd ncow copy; do
			case $lk.$wl.$t in
			*.cold.copy) printf ' %s |' "$(ratio "$(med "$k.$t")" "$rv")" ;;
			*.copy) printf ' - |' ;;
			*) printf ' %s |' "$(ratio "$(med "$k.$t")" "$rv")" ;;
			esac
		done
		echo " $(ratio "$(med "$c1")" "$(med "$c2")") |"
	done < <(rows)
	echo
	echo "All runs, in order:"
	echo
	for k in $(printf '%s\n' "${!R[@]}" | sort); do
		echo "- $k:${R[$k]}"
	done
} >"$OUT/peers.md"

# Bars: one file per row group, "<workload> <ratio per target>".
for lk in $LINKS; do
	{
		echo "workload $(for t in rc clone thin nbd ncow copy fnbd2; do printf '%s ' "$(label "$t")"; done)"
		for wl in cold second hydrate trace; do
			read -r r _ <<<"$(ref "$lk" "$wl")"
			rv=$(med "$r")
			printf '%s' "$wl"
			for t in rc clone thin nbd ncow copy fnbd2; do
				case $wl.$t in
				cold.copy) v=$(ratio "$(med "$lk.cold.$t")" "$rv") ;;
				*.copy) v=- ;;
				trace.fnbd2) v=$(ratio "$(med "$lk.cold.fnbd2")" "$(med "$lk.cold.fnbd")") ;;
				*.fnbd2) v=$(ratio "$(med "$lk.cold.$t")" "$rv") ;;
				*) v=$(ratio "$(med "$lk.$wl.$t")" "$rv") ;;
				esac
				printf ' %s' "$v"
			done
			echo
		done
	} >"$OUT/bars-$lk.dat"
done
if [ "$HOT" = 1 ]; then
	{
		echo "workload $(for t in rc clone thin ncow lin2; do printf '%s ' "$(label "$t")"; done)"
		for wl in $HOT_WL; do
			rv=$(med "hot.$wl.lin")
			printf '%s' "$wl"
			for t in rc clone thin ncow lin2; do printf ' %s' "$(ratio "$(med "hot.$wl.$t")" "$rv")"; done
			echo
		done
	} >"$OUT/bars-hot.dat"
fi
echo "$LINKS" >"$OUT/links"
echo "$RATE, $DELAY each way" >"$OUT/shaped-label"

echo
cat "$OUT/peers.md"
echo
echo "run time: $(($(date +%s) - start_s)) s; results in $OUT"
exit 0
