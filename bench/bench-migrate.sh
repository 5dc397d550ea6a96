#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/bench-migrate.sh - what a live migration costs: its time, the
# bytes it sends against what the guest wrote, the storage downtime, and
# the guest's write latency while mirroring; beside the copy of the whole
# device that it replaces (nbdcopy).
#
# Runs inside the test VM (make bench-migrate, or VM_MEM=4096
# scripts/vm-run.sh --timeout 7200 bench/bench-migrate.sh: the VM's /tmp,
# half its memory, holds the base).  Prints figures; it is not a
# pass/fail test and is not part of make check.  See
# Documentation/benchmarks-migration.rst.
#
# One remote-cowd plays source and destination over loopback TCP with TLS
# (selftests/lib-mig.sh), loopback shaped with netem (mig_link_shape) as
# each link in turn: LAN (BENCH_MIG_LAN) then WAN (BENCH_MIG_WAN).  Per run:
#   a source device over a file:// base of random data, BENCH_MIG_WRITTEN_MB
#   written from its start (whole extents); a destination made by
#   'remote-cow receive';
#   idle: fio (64 KiB random writes, direct, libaio, iodepth 4, no rate
#   limit, over the written region) for BENCH_MIG_IDLE_S s, no migration;
#   then the same fio again, and 'remote-cow migrate' while it writes; once
#   the source says mirroring, BENCH_MIG_MIRROR_S s more, then fio stops
#   (the guest paused) and 'migrate finish' goes to the source;
#   post-copy: the same pair and fio, 'remote-cow migrate --postcopy', and
#   BENCH_MIG_PC_PRE_S s later the guest pauses and 'migrate finish
#   postcopy' switches it to the destination at once; fio reads there
#   (randread, otherwise as above) for BENCH_MIG_PC_S s while the rest
#   streams; the destination is then compared with the source;
#   baseline: nbdcopy of a raw image of the device's size (the whole disk, as
#   a migration without remote-cow copies it) to nbdkit serving a file,
#   over the same link, with TLS and the same key.
# The three alternate (rotate) over BENCH_MIG_REPS repetitions on the LAN and
# BENCH_MIG_WAN_REPS on the WAN; the table has the medians.
#
# Figures (Documentation/benchmarks-migration.rst says more):
#   time          migrate start to the source's done, seconds (includes the
#                 BENCH_MIG_MIRROR_S held for the latency window), and start
#                 to mirroring (convergence); nbdcopy's run
#   sent          bytes the source's side sent (remote-cowd's log line, the
#                 frames before TLS) and bytes that crossed loopback (TLS,
#                 TCP/IP and both directions included, /sys lo tx_bytes)
#   written       WRITTEN extents at the end x extent size (what the guest
#                 wrote, each extent once); the ratio sent / written
#   downtime      'migrate finish' issued (fio already stopped) to the
#                 destination's migrate_state leaving incoming (polled
#                 without pause), ms
#   latency       fio completion latency p50/p99 of the writes completed
#                 while the source said mirroring, and in the idle run, ms
#
# Environment (defaults in brackets):
#   BENCH_MIG_SIZE_MB     device size, MiB [1024]
#   BENCH_MIG_WRITTEN_MB  written before the start, MiB [256]
#   BENCH_MIG_LAN         delay each way and rate of the LAN link [1ms 1gbit]
#   BENCH_MIG_WAN         the same for the WAN link [50ms 20mbit]
#   BENCH_MIG_REPS        repetitions on the LAN link [3]
#   BENCH_MIG_WAN_REPS    repetitions on the WAN link [1]
#   BENCH_MIG_IDLE_S      seconds of the idle fio run [10]
#   BENCH_MIG_MIRROR_S    seconds of mirroring before the guest pauses [10]
#   BENCH_MIG_CONVERGE_S  seconds to wait for mirroring before finishing
#                         anyway (no mirroring latency then) [600]
#   BENCH_MIG_PC_PRE_S    post-copy run: seconds from the start to the
#                         pause and 'migrate finish postcopy' [2]
#   BENCH_MIG_PC_S        post-copy run: seconds of fio reads on the
#                         destination after the switch [10]
#   BENCH_MIG_MIRROR      remote-cowd's --migrate-mirror: auto (mirror once
#                         the rounds stop shrinking) or always (from the
#                         first round) [auto]
#
# Exit status: 0 when every run completed, 1 otherwise.
# shellcheck disable=SC2317	# callbacks of wait_until

TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=lib-bench.sh
. "$TREE/bench/lib-bench.sh"
# shellcheck source=../selftests/lib-mig.sh
. "$TREE/selftests/lib-mig.sh"

SIZE_MB=${BENCH_MIG_SIZE_MB:-1024}
WRITTEN_MB=${BENCH_MIG_WRITTEN_MB:-256}
read -r -a LAN <<<"${BENCH_MIG_LAN:-1ms 1gbit}"
read -r -a WAN <<<"${BENCH_MIG_WAN:-50ms 20mbit}"
REPS=${BENCH_MIG_REPS:-3}
WAN_REPS=${BENCH_MIG_WAN_REPS:-1}
IDLE_S=${BENCH_MIG_IDLE_S:-10}
MIRROR_S=${BENCH_MIG_MIRROR_S:-10}
CONVERGE_S=${BENCH_MIG_CONVERGE_S:-600}
MIRROR_MODE=${BENCH_MIG_MIRROR:-auto}
PC_PRE_S=${BENCH_MIG_PC_PRE_S:-2}
PC_S=${BENCH_MIG_PC_S:-10}
PORT=17811
NBD_PORT=17812

die() { echo "bench-migrate: $*" >&2; exit 1; }
log() { echo "# $*"; }

bench_require bench-migrate fio nbdcopy nbdkit psktool tc dmsetup losetup python3
((WRITTEN_MB > 0 && WRITTEN_MB <= SIZE_MB)) || die "BENCH_MIG_WRITTEN_MB: 1 to BENCH_MIG_SIZE_MB"
case $MIRROR_MODE in auto | always) ;; *) die "BENCH_MIG_MIRROR: auto or always" ;; esac
DEV_BYTES=$((SIZE_MB * MIB))
written=$((WRITTEN_MB * MIB))
log "device $SIZE_MB MiB, $WRITTEN_MB MiB written before the start; LAN ${LAN[*]}" \
	"($REPS runs), WAN ${WAN[*]} ($WAN_REPS runs); remote-cowd --migrate-mirror $MIRROR_MODE"
mig_setup bench-migrate --migrate-mirror "$MIRROR_MODE"
[ -n "$BASE_IMG" ] || die "no base image"

now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
lo_bytes() { cat /sys/class/net/lo/statistics/tx_bytes; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }

# lat <log prefix> <from> <to> [<issued after>]: "p50 p99 count" (ms) of
# the completion latencies in fio's per-write log (unix epoch ms, ns) of
# the writes completed between two $EPOCHREALTIME stamps (and issued after
# the third); "- - 0" when none.
lat() {
	python3 - "$@" <<'EOF'
import glob, sys
lo, hi = float(sys.argv[2]) * 1000, float(sys.argv[3]) * 1000
after = float(sys.argv[4]) * 1000 if len(sys.argv) > 4 else 0
v = []
for f in glob.glob(sys.argv[1] + "_clat*.log"):
	for line in open(f):
		t, ns = line.split(",")[:2]
		if lo <= int(t) <= hi and int(t) - int(ns) / 1e6 > after:
			v.append(int(ns) / 1e6)
v.sort()
if not v:
	print("- - 0")
else:
	pc = lambda p: v[min(len(v) - 1, int(p * len(v)))]
	print("%.2f %.2f %d" % (pc(0.50), pc(0.99), len(v)))
EOF
}

# fio_guest <dm name> <log prefix> <seconds> [<rw>]: the guest's writes
# (or fio's <rw>: randread), in the background (FIO_PID); a per-I/O
# latency log.
fio_guest() {
	fio --name=guest --filename="/dev/mapper/$1" --rw="${4:-randwrite}" --bs=64k --direct=1 \
		--ioengine=libaio --iodepth=4 --size="$written" --time_based --runtime="$3" \
		--write_lat_log="$2" --log_unix_epoch=1 --output="$2.out" >/dev/null 2>&1 &
	FIO_PID=$!
	at_exit "kill $FIO_PID 2>/dev/null"
}
# fio_writes <log prefix>: how many writes the run completed.
fio_writes() { cat "$1"_clat*.log 2>/dev/null | wc -l; }

# cow_free <loop device>: detach it and delete its file (the VM's /tmp is
# its memory).
cow_free() {
	local f
	f=$(losetup -n -O BACK-FILE "$1")
	losetup -d "$1" && rm -f "$f"
}

# pair <src> <dst>: the source with the first WRITTEN_MB written, the
# destination made by receive and listening (new_pair's steps, sized here).
pair() {
	make_cow $((DEV_BYTES + 16 * MIB)) || return 1
	SRC_COW=$COW_DEV
	make_cow $((DEV_BYTES + 16 * MIB)) || return 1
	DST_COW=$COW_DEV
	at_exit "dm_remove $1"
	at_exit "dm_remove $2"
	"$RC" create "$1" --cow "$SRC_COW" --base "$BASE" >/dev/null || return 1
	image_data "bench-migrate-$1" "$written" |
		dd of="/dev/mapper/$1" bs=1M oflag=direct iflag=fullblock status=none || return 1
	"$RC" receive "$2" --cow "$DST_COW" --base "$BASE" --listen "127.0.0.1:$PORT" \
		--psk "$tmp/key.psk" --run-dir "$RUN" --fault-timeout 60000 >/dev/null || return 1
	wait_until 10 listening "$2" >/dev/null
}
pair_remove() {
	dm_remove "$1"
	dm_remove "$2"
	wait_until 10 test ! -e "$RUN/migrate/recv-$2" >/dev/null
	cow_free "$SRC_COW"
	cow_free "$DST_COW"
}

# not_incoming <dm name>: its status no longer says incoming (one dmsetup).
not_incoming() { [[ $(dmsetup status "$1") != *" incoming "* ]]; }
# issue_finish <src> [postcopy]: 'dmsetup message <src> 0 migrate finish
# [postcopy]' between two markers in the kernel log (kernel_downtime).
issue_finish() {
	echo "bench-migrate: $1: finish issued" >/dev/kmsg
	dmsetup message "$1" 0 migrate finish ${2:+"$2"} || die "migrate finish${2:+ $2} refused"
	echo "bench-migrate: $1: finish returned" >/dev/kmsg
}
# wire <src>: remote-cowd's line "migration bytes on the wire" of <src>'s
# migration (WIRE), its bytes sent (WIRE_SENT) and of those DATA (WIRE_DATA).
wire() {
	wait_until 10 logged "device $1: migration bytes on the wire" >/dev/null
	WIRE=$(grep "device $1: migration bytes on the wire" "$HELPER_LOG" | tail -1)
	WIRE_SENT=$(sed -n 's/.*: sent \([0-9]*\) (DATA \([0-9]*\) in.*/\1/p' <<<"$WIRE")
	WIRE_DATA=$(sed -n 's/.*: sent \([0-9]*\) (DATA \([0-9]*\) in.*/\2/p' <<<"$WIRE")
}
# written_bytes <dm name>: its WRITTEN extents times the extent size.
written_bytes() { echo $(($(rc_status "$1" written) * $(rc_status "$1" extent_sectors) * 512)); }

# kernel_downtime <src> <dst> [postcopy]: from the kernel log's clock, ms
# from the finish issued (the marker written to /dev/kmsg before dmsetup
# ran) to the destination's "incoming migration complete" (post-copy: "in
# post-copy", serving), then the parts: to the source fenced ("finishing";
# post-copy: "in post-copy"), fenced to complete, to dmsetup's return, and
# from the kernel's receipt of the message ("migrate finish: fencing") to
# complete ("-" when a line is missing).
kernel_downtime() {
	local s="$1: migration to .* finishing" d="$2: incoming migration complete"
	local g="$1: migrate finish: fencing"
	if [ "${3:-}" = postcopy ]; then
		s="$1: migration to .* in post-copy" d="$2: incoming migration in post-copy"
		g="$1: migrate finish postcopy: fencing"
	fi
	dmesg | awk -v i="bench-migrate: $1: finish issued" -v r="bench-migrate: $1: finish returned" \
		-v s="$s" -v d="$d" -v g="$g" '
	function t(l) { sub(/^\[ */, "", l); sub(/\].*/, "", l); return l }
	function ms(x, y) { return (x != "" && y != "") ? sprintf("%.1f", (y - x) * 1000) : "-" }
	$0 ~ i { a = t($0) } $0 ~ s { b = t($0) } $0 ~ d { c = t($0) } $0 ~ r { e = t($0) }
	$0 ~ g { f = t($0) }
	END { print ms(a, c), ms(a, b), ms(b, c), ms(a, e), ms(f, c) }'
}

# run_rc <link name> <rep>: one remote-cow migration; its figures appended
# to R_<field>_<link> arrays.
n_run=0
run_rc() {
	local L=$1 src dst p t0 tm tr tp tf ts td st lo0 lo1 line sent data wr fw idle mir steady
	local tot polls kd tc0 tc1
	n_run=$((n_run + 1))
	src=rc-mb-src$n_run dst=rc-mb-dst$n_run p=$tmp/lat$n_run
	pair "$src" "$dst" || die "cannot set up the pair $src, $dst"

	fio_guest "$src" "$p-idle" "$IDLE_S"
	wait "$FIO_PID" || die "the idle fio failed: $(cat "$p-idle.out")"
	read -r -a idle <<<"$(lat "$p-idle" 0 1e10)"

	fio_guest "$src" "$p" 3600
	sleep 1
	lo0=$(lo_bytes)
	t0=$(now)
	"$RC" migrate "$src" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN" ||
		die "migrate refused"
	tm=
	for ((i = 0; i < CONVERGE_S * 10; i++)); do
		st=$(state "$src")
		case $st in
		mirroring) tm=$(now); break ;;
		failed | idle | done) die "$src: the migration ended $st before mirroring: $(tail -3 "$HELPER_LOG")" ;;
		esac
		sleep 0.1
	done
	if [ -n "$tm" ]; then
		# the round taken at the switch carries what was dirty then:
		# the writes held at the switch wait for all of it
		tot=$(rc_status "$src" migrate_total)
		wait_until "$CONVERGE_S" sent_past "$src" $((tot - 1)) >/dev/null ||
			log "warning: $L run $n_run: the switch's round not sent in $CONVERGE_S s"
		tr=$(now)
		sleep "$MIRROR_S"
		state_is "$src" mirroring || log "warning: $src left mirroring: $(state "$src")"
	else
		log "warning: $L run $n_run: no mirroring within $CONVERGE_S s ($st)"
	fi
	kill -INT "$FIO_PID"
	wait "$FIO_PID"
	tp=$(now)
	# one dmsetup call of nothing: what the process alone costs here
	tc0=$(now)
	dmsetup status "$dst" >/dev/null
	tc1=$(now)
	# the guest is paused: finish, and wait for the destination to serve
	tf=$(now)
	issue_finish "$src"
	for ((polls = 1; polls < 100000; polls++)); do
		not_incoming "$dst" && break
	done
	ts=$(now)
	wait_until 120 state_is "$src" "done" || die "$src: not done: $(state "$src")"
	td=$(now)
	lo1=$(lo_bytes)
	state_is "$dst" idle || die "$dst: $(state "$dst") after the migration"
	wire "$src"
	line=$WIRE sent=$WIRE_SENT data=$WIRE_DATA
	wr=$(written_bytes "$src")
	fw=$(($(fio_writes "$p") * 65536))
	cmp -n "$written" "/dev/mapper/$src" "/dev/mapper/$dst" ||
		die "$dst differs from $src in the written region"
	if [ -n "$tm" ]; then
		read -r -a mir <<<"$(lat "$p" "$tm" "$tp")"
		read -r -a steady <<<"$(lat "$p" "$tm" "$tp" "$tr")"
	else
		mir=(- - 0) steady=(- - 0)
	fi
	read -r -a kd <<<"$(kernel_downtime "$src" "$dst")"
	eval "R_time_$L+=($(secs "$t0" "$td"))"
	eval "R_conv_$L+=(${tm:+$(secs "$t0" "$tm")})"
	eval "R_sent_$L+=($sent)"
	eval "R_lo_$L+=($((lo1 - lo0)))"
	eval "R_ratio_$L+=($(ratio "$sent" "$wr"))"
	eval "R_dratio_$L+=($(ratio "$data" "$wr"))"
	eval "R_gratio_$L+=($(ratio "$sent" $((written + fw))))"
	eval "R_down_$L+=($(awk -v a="$tf" -v b="$ts" 'BEGIN { printf "%.1f", (b - a) * 1000 }'))"
	eval "R_ip50_$L+=(${idle[0]}) R_ip99_$L+=(${idle[1]})"
	[ "${mir[0]}" = - ] || eval "R_mp50_$L+=(${mir[0]}) R_mp99_$L+=(${mir[1]})"
	[ "${steady[0]}" = - ] || eval "R_sp50_$L+=(${steady[0]}) R_sp99_$L+=(${steady[1]})"
	[ "${kd[0]}" = - ] || eval "R_kdown_$L+=(${kd[0]})"
	[ "${kd[1]}" = - ] || eval "R_kfence_$L+=(${kd[1]})"
	[ "${kd[2]}" = - ] || eval "R_kcomplete_$L+=(${kd[2]})"
	[ "${kd[4]}" = - ] || eval "R_krecv_$L+=(${kd[4]})"
	eval "R_dmcall_$L+=($(awk -v a="$tc0" -v b="$tc1" 'BEGIN { printf "%.1f", (b - a) * 1000 }'))"
	log "$L run $n_run (remote-cow): $(secs "$t0" "$td") s (mirroring after" \
		"${tm:+$(secs "$t0" "$tm")} s, paused at $(secs "$t0" "$tp") s, finish to done" \
		"$(secs "$tf" "$td") s); downtime $(secs "$tf" "$ts") s ($polls polls; one dmsetup" \
		"call $(secs "$tc0" "$tc1") s;" \
		"kernel log: ${kd[0]} ms, fenced after ${kd[1]} ms, then complete after ${kd[2]} ms;" \
		"dmsetup returned after ${kd[3]} ms; from the kernel's receipt ${kd[4]} ms);" \
		"sent $(mib "$sent") MiB" \
		"(DATA $(mib "$data") MiB), lo $(mib $((lo1 - lo0))) MiB; written $(mib "$wr") MiB" \
		"(WRITTEN), fio wrote $(mib "$fw") MiB; idle p50/p99 ${idle[0]}/${idle[1]} ms" \
		"(${idle[2]} writes), mirroring ${mir[0]}/${mir[1]} ms (${mir[2]} writes), after" \
		"the switch's round (${tr:+$(secs "$t0" "$tr")} s) ${steady[0]}/${steady[1]} ms" \
		"(${steady[2]} writes)"
	log "$L run $n_run: remote-cowd: $line"
	pair_remove "$src" "$dst"
}

# run_pc <link name>: one post-copy migration, the guest's disk moving
# each written extent once: fio writes on the source, 'remote-cow migrate
# --postcopy' while it writes, PC_PRE_S s later the guest pauses and
# 'migrate finish postcopy' switches it to the destination, where fio
# reads for PC_S s (the guest running there; its reads of extents still on
# the source are fetched from it first) while the rest streams.  Figures
# appended to P_<field>_<link>.
run_pc() {
	local L=$1 src dst p t0 tf ts td lo0 lo1 line sent wr fw rd kd
	n_run=$((n_run + 1))
	src=rc-mb-src$n_run dst=rc-mb-dst$n_run p=$tmp/lat$n_run
	pair "$src" "$dst" || die "cannot set up the pair $src, $dst"
	fio_guest "$src" "$p" 3600
	sleep 1
	lo0=$(lo_bytes)
	t0=$(now)
	"$RC" migrate "$src" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN" \
		--postcopy || die "migrate --postcopy refused"
	sleep "$PC_PRE_S"
	kill -INT "$FIO_PID"
	wait "$FIO_PID"
	tf=$(now)
	issue_finish "$src" postcopy
	while ! not_incoming "$dst"; do :; done
	ts=$(now)
	state_is "$dst" postcopy || log "warning: $dst: $(state "$dst") at the switch"
	fio_guest "$dst" "$p-pc" "$PC_S" randread
	wait "$FIO_PID" || die "fio on $dst failed: $(cat "$p-pc.out")"
	read -r -a rd <<<"$(lat "$p-pc" 0 1e10)"
	wait_until 600 state_is "$src" "done" || die "$src: not done: $(state "$src")"
	td=$(now)
	wait_until 60 state_is "$dst" idle || die "$dst: $(state "$dst") after the migration"
	lo1=$(lo_bytes)
	# fio only read on the destination: both still hold the disk as paused
	cmp -n "$written" "/dev/mapper/$src" "/dev/mapper/$dst" ||
		die "$dst differs from $src in the written region"
	wire "$src"
	line=$WIRE sent=$WIRE_SENT
	wr=$(written_bytes "$src")
	fw=$(($(fio_writes "$p") * 65536))
	read -r -a kd <<<"$(kernel_downtime "$src" "$dst" postcopy)"
	eval "P_time_$L+=($(secs "$t0" "$td")) P_sent_$L+=($sent) P_lo_$L+=($((lo1 - lo0)))"
	eval "P_ratio_$L+=($(ratio "$sent" "$wr")) P_gratio_$L+=($(ratio "$sent" $((written + fw))))"
	eval "P_down_$L+=($(awk -v a="$tf" -v b="$ts" 'BEGIN { printf "%.1f", (b - a) * 1000 }'))"
	[ "${kd[4]}" = - ] || eval "P_krecv_$L+=(${kd[4]})"
	[ "${rd[0]}" = - ] || eval "P_rp50_$L+=(${rd[0]}) P_rp99_$L+=(${rd[1]})"
	log "$L run $n_run (post-copy): $(secs "$t0" "$td") s (paused at $(secs "$t0" "$tf") s," \
		"serving on the destination after $(secs "$t0" "$ts") s); downtime $(secs "$tf" "$ts") s" \
		"(kernel log: ${kd[0]} ms from the finish issued, ${kd[4]} ms from the kernel's" \
		"receipt); sent $(mib "$sent") MiB, lo $(mib $((lo1 - lo0))) MiB; written" \
		"$(mib "$wr") MiB (WRITTEN), fio wrote $(mib "$fw") MiB before the pause; reads on" \
		"the destination p50/p99 ${rd[0]}/${rd[1]} ms (${rd[2]} reads)"
	log "$L run $n_run: remote-cowd: $line"
	pair_remove "$src" "$dst"
}

# run_copy <link name>: the baseline, nbdcopy of the whole device's worth
# to nbdkit (file plugin, TLS with the same key) over the link.  The
# target file is in /dev/shm: /tmp (half the VM's memory) holds the base.
run_copy() {
	local L=$1 t0 t1 lo0 lo1 pid img=/dev/shm/bench-migrate-copy.img
	truncate -s "$DEV_BYTES" "$img"
	at_exit "rm -f $img"
	nbdkit -f -i 127.0.0.1 -p "$NBD_PORT" --tls=require --tls-psk="$tmp/key.psk" \
		file "$img" >>"$tmp/nbdkit.log" 2>&1 &
	pid=$!
	at_exit "kill $pid 2>/dev/null"
	sleep 1
	lo0=$(lo_bytes)
	t0=$(now)
	nbdcopy "$BASE_IMG" "nbds://migtest@127.0.0.1:$NBD_PORT/?tls-psk-file=$tmp/key.psk" ||
		die "nbdcopy failed: $(tail -3 "$tmp/nbdkit.log")"
	t1=$(now)
	lo1=$(lo_bytes)
	kill "$pid"
	wait "$pid" 2>/dev/null
	cmp "$BASE_IMG" "$img" || die "the copy differs"
	rm -f "$img"
	eval "C_time_$L+=($(secs "$t0" "$t1")) C_lo_$L+=($((lo1 - lo0)))"
	log "$L (nbdcopy): $(secs "$t0" "$t1") s, lo $(mib $((lo1 - lo0))) MiB for" \
		"$(mib "$DEV_BYTES") MiB"
}

# bench_link <name> <delay> <rate> <reps>: the runs on one link, alternating.
bench_link() {
	local r k
	mig_link_shape "$2" "$3" 10000 || die "cannot shape lo"
	log "link $1: $2 each way, $3"
	for ((r = 1; r <= $4; r++)); do
		for k in $(rotate "$r" rc pc copy); do
			"run_$k" "$1"
		done
	done
	mig_link_restore || die "cannot restore lo"
}

for l in lan wan; do
	for f in time conv sent lo ratio dratio gratio down kdown kfence kcomplete krecv dmcall ip50 ip99 mp50 mp99 sp50 sp99; do
		eval "R_${f}_$l=()"
	done
	for f in time sent lo ratio gratio down krecv rp50 rp99; do
		eval "P_${f}_$l=()"
	done
	eval "C_time_$l=() C_lo_$l=()"
done
bench_link lan "${LAN[@]}" "$REPS"
bench_link wan "${WAN[@]}" "$WAN_REPS"

# m <array name>: the median of that array's values.
m() { local -n _arr=$1; median "${_arr[@]}"; }
row() {	# row <label> <array suffix> [unit]
	echo "| $1 | $(m "R_$2_lan")${3:-} | $(m "R_$2_wan")${3:-} |"
}
crow() { echo "| $1 | $(m "C_$2_lan")${3:-} | $(m "C_$2_wan")${3:-} |"; }
mibs() { local -n _arr=$1; local v=() x; for x in "${_arr[@]}"; do v+=("$(mib "$x")"); done; median "${v[@]}"; }

echo
echo "| figure (median; LAN $REPS runs, WAN $WAN_REPS) | LAN ${LAN[*]} | WAN ${WAN[*]} |"
echo "|---|---|---|"
row "remote-cow: migration time, start to done (s)" time
row "remote-cow: of which start to mirroring (s)" conv
echo "| remote-cow: bytes sent by the source (MiB) | $(mibs R_sent_lan) | $(mibs R_sent_wan) |"
echo "| remote-cow: bytes on loopback, TLS and both ways (MiB) | $(mibs R_lo_lan) | $(mibs R_lo_wan) |"
row "remote-cow: sent / written (WRITTEN extents; goal <= 1.05)" ratio
row "remote-cow: DATA sent / written" dratio
row "remote-cow: sent / guest writes (initial + fio)" gratio
row "remote-cow: storage downtime, finish to destination serving (ms; goal <= 100 on the LAN)" down
row "of which one dmsetup call of nothing (ms)" dmcall
row "storage downtime in the kernel log: finish issued to destination complete (ms)" kdown
row "of which finish issued to the source fenced (ms)" kfence
row "of which the source fenced to the destination complete (ms)" kcomplete
row "storage downtime in the kernel log: the message received to destination complete (ms)" krecv
row "guest 64 KiB write p50, idle (ms)" ip50
row "guest 64 KiB write p99, idle (ms)" ip99
row "guest 64 KiB write p50, mirroring (ms)" mp50
row "guest 64 KiB write p99, mirroring (ms)" mp99
row "guest 64 KiB write p50, mirroring after the switch's round (ms)" sp50
row "guest 64 KiB write p99, mirroring after the switch's round (ms)" sp99
prow() { echo "| $1 | $(m "P_$2_lan")${3:-} | $(m "P_$2_wan")${3:-} |"; }
prow "post-copy: migration time, start to done (s)" time
echo "| post-copy: bytes sent by the source (MiB) | $(mibs P_sent_lan) | $(mibs P_sent_wan) |"
prow "post-copy: sent / written (WRITTEN extents; goal <= 1.05)" ratio
prow "post-copy: sent / guest writes (initial + fio)" gratio
prow "post-copy: storage downtime, finish to destination serving (ms)" down
prow "post-copy: the same in the kernel log, from the message received (ms)" krecv
prow "post-copy: guest 64 KiB read p50 on the destination meanwhile (ms)" rp50
prow "post-copy: guest 64 KiB read p99 on the destination meanwhile (ms)" rp99
crow "nbdcopy (whole device): time (s)" time
echo "| nbdcopy (whole device): bytes on loopback (MiB) | $(mibs C_lo_lan) | $(mibs C_lo_wan) |"
lo_ratio() { local v; v=$(m "C_lo_$1"); if [ "$v" = - ]; then echo -; else ratio "$v" "$written"; fi; }
echo "| nbdcopy (whole device): bytes on loopback / written | $(lo_ratio lan) | $(lo_ratio wan) |"
echo
