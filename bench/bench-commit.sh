#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/bench-commit.sh - what a live snapshot commit costs the guest, and
# how close to the link's rate it publishes.
#
# Runs inside the test VM (make bench-commit, or scripts/vm-run.sh
# --timeout 3600 bench/bench-commit.sh).  Prints figures; it is not a
# pass/fail test and is not part of make check.  See
# Documentation/benchmarks.rst, "Snapshot commit".
#
# A device over an NBD base in a network namespace (nbdkit, link shaped to
# BENCH_DELAY each way and BENCH_RATE) with remote-cowd; BENCH_CHANGED_MB of
# it written (whole extents, random data), so that a full commit uploads
# exactly that.  The target is a qcow2 overlay over the base, served
# writable by qemu-nbd in the namespace, made afresh for every commit.
#
#  latency  fio 4 KiB random writes (direct, iodepth 1) over the written
#           region for BENCH_RUNTIME s, three kinds of run per repetition:
#             idle   no commit runs, and the whole region was written again
#                    just before (its extents are durably in DIRTY_COMMIT:
#                    a write pays neither cost below);
#             commit right after 'snapshot commit', while it uploads: the
#                    first write to a frozen extent may pay (1) a PRESERVE
#                    round trip to remote-cowd (unless it preserved the
#                    extent ahead) and (2) a metadata commit (the freeze
#                    cleared DIRTY_COMMIT: exact change tracking);
#             fresh  right after a completed commit, nothing uploading:
#                    DIRTY_COMMIT is clear again, so the first write to an
#                    extent pays (2) only.
#           Printed: the medians of the p99 completion latencies, the ratios
#           commit / idle and fresh / idle, and the control ratio (the idle
#           runs of odd repetitions against those of even ones).  fresh
#           against idle is cost (2); commit against fresh is cost (1) plus
#           the upload's own load on the (shared) CPUs and COW device.
#  time     a commit with the guest quiet: seconds from the message to
#           done, against changed bytes / link rate (the ideal), and the
#           same for the commits that ran under fio.  Beside it the peer:
#           nbdcopy of the same bytes (a file of the written data) to a
#           fresh overlay target over the same link, twice per repetition
#           (the second against the first is the control ratio).
#
# Environment (defaults in brackets):
#   BENCH_SIZE_MB     device size, MiB [256]
#   BENCH_CHANGED_MB  written, so uploaded by a full commit, MiB [96]
#   BENCH_EXTENT      extent size in sectors [128 = 64 KiB]
#   BENCH_RATE        link rate, tc syntax [100mbit]
#   BENCH_DELAY       delay each way [5ms]
#   BENCH_RUNTIME     seconds per fio run [5]
#   BENCH_REPS        repetitions [3]
#   BENCH_NICE        none, servers or all [none]: run the NBD servers in the
#                     namespace (nbdkit for the base, qemu-nbd for the
#                     target: other hosts in a real deployment) at nice 19,
#                     and with all remote-cowd too, so that they take the
#                     VM's two CPUs only when the guest's path does not
#                     (how much of the commit's latency is their CPU)
#
# Exit status: 0 when every figure was measured, 1 otherwise.
# shellcheck disable=SC2119	# lib-net.sh helpers take optional arguments

TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=../selftests/lib.sh
. "$TREE/selftests/lib.sh"
# shellcheck source=../selftests/lib-net.sh
. "$TREE/selftests/lib-net.sh"
# shellcheck source=../selftests/lib-commit.sh
. "$TREE/selftests/lib-commit.sh"

SIZE_MB=${BENCH_SIZE_MB:-256}
CHANGED_MB=${BENCH_CHANGED_MB:-96}
EXT=${BENCH_EXTENT:-128}
RATE=${BENCH_RATE:-100mbit}
DELAY=${BENCH_DELAY:-5ms}
RUNTIME=${BENCH_RUNTIME:-5}
REPS=${BENCH_REPS:-3}
NICE=${BENCH_NICE:-none}
NAME=bench-commit

die() { echo "bench-commit: $*" >&2; exit 1; }
log() { echo "# $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root: run it in the VM (make bench-commit)"
for c in fio nbdkit nbdinfo nbdcopy qemu-nbd qemu-img ip tc dmsetup losetup python3; do
	command -v "$c" >/dev/null || die "$c is not installed"
done
case $NICE in
none | servers | all) ;;
*) die "BENCH_NICE: none, servers or all" ;;
esac
case $RATE in
*gbit) rate_bps=$((${RATE%gbit} * 1000000000)) ;;
*mbit) rate_bps=$((${RATE%mbit} * 1000000)) ;;
*kbit) rate_bps=$((${RATE%kbit} * 1000)) ;;
*) die "BENCH_RATE: give it in kbit, mbit or gbit" ;;
esac

load_module || die "cannot load $RC_MODULE"
net_setup || die "cannot set up the network namespace"
net_shape "$DELAY" "$RATE" || die "cannot shape the link"
bytes=$((SIZE_MB << 20))
net_serve_base "$bytes" bench-commit
len=$((bytes / 512))
extb=$((EXT * 512))
changed=$((CHANGED_MB << 20))
make_cow $((bytes + (16 << 20))) || die "no COW device"
cfg=$NET_WORKDIR/remote-cowd.conf
commit_config "$cfg" "spool_dir = $NET_WORKDIR/spool" "spool_max = $((2 * changed))"
helper_start --config "$cfg" || die "remote-cowd does not start"

# nice_tasks <pid>...: every thread of these processes at nice 19 (threads
# they start later inherit it from the thread that starts them).
nice_tasks() {
	local p t
	for p in "$@"; do
		for t in /proc/"$p"/task/*; do
			renice -n 19 -p "${t##*/}" >/dev/null || die "cannot renice $p"
		done
	done
}

# nice_servers: BENCH_NICE (the servers' processes change with each target).
nice_servers() {
	[ "$NICE" = none ] && return 0
	# shellcheck disable=SC2046	# one pid per word
	nice_tasks $(pgrep -x qemu-nbd) $(pgrep -x nbdkit)
	[ "$NICE" = all ] && nice_tasks "$HELPER_PID"
	return 0
}
dmsetup create "$NAME" --table "$(rc_table "$len" "$COW_DEV" "$EXT" "$(net_uri)")" ||
	die "cannot create the device"
at_exit "dmsetup message $NAME 0 snapshot abort >/dev/null 2>&1; dm_remove $NAME"
dev=/dev/mapper/$NAME

log "device ${SIZE_MB} MiB, ${CHANGED_MB} MiB written, extents $((extb >> 10)) KiB," \
	"link $RATE, $DELAY each way; BENCH_NICE=$NICE"
image_data bench-commit-data "$changed" |
	dd of="$dev" bs=1M oflag=direct iflag=fullblock status=none || die "cannot write"
sync

# ios <fio json file>: how many writes the run completed.
ios() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["jobs"][0]["write"]["total_ios"])' "$1"
}

# p99 <fio json file>: the p99 completion latency of the writes, in us.
p99() {
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print("%.0f" % (j["jobs"][0]["write"]["clat_ns"]["percentile"]["99.000000"] / 1000))
' "$1"
}

# run_fio <json out> [<command>]: the latency workload; the command runs
# when fio is set up, just before its first write (fio's exec_prerun).
run_fio() {
	local pre=()

	[ -z "${2:-}" ] || pre=(--exec_prerun="$2")
	(cd "$NET_WORKDIR" && fio --name=lat --filename="$dev" --rw=randwrite --bs=4k --direct=1 \
		--ioengine=psync --size="$changed" --time_based --runtime="$RUNTIME" \
		--percentile_list=50:99 --output-format=json --output="$1" "${pre[@]}" >/dev/null 2>&1)
}

n_target=0
# commit_target: a fresh overlay target (the previous one is deleted: the
# VM's /tmp is in its memory, with the COW device, base and spool).
commit_target() {
	target_stop
	rm -f "$NET_WORKDIR/v$n_target.qcow2"
	n_target=$((n_target + 1))
	target_overlay "$NET_WORKDIR/v$n_target.qcow2" "$BASE_IMG" raw "v$n_target" ||
		die "cannot serve the overlay"
	nice_servers
}

# commit_cmd: the commit message as a command line; start time in t0.
commit_cmd() {
	echo "date +%s.%N >$NET_WORKDIR/t0 && dmsetup message $NAME 0 snapshot commit $TARGET_URI"
}

# commit_start: a fresh overlay target, then the message; start time in T0.
commit_start() {
	commit_target
	sh -c "$(commit_cmd)" || die "commit refused"
	T0=$(cat "$NET_WORKDIR/t0")
}

# commit_wait: seconds from T0 until done (dies on failed).
commit_wait() {
	local s
	for ((i = 0; i < 6000; i++)); do
		s=$(dmsetup status "$NAME" | awk '{ print $9 }')
		case $s in
		done) break ;;
		failed) die "the commit failed: $(dmesg | grep 'snapshot commit' | tail -1)" ;;
		esac
		sleep 0.1
	done
	[ "$s" = "done" ] || die "the commit did not end in 600 s"
	python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$T0"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

# redirty: write the whole region again, so that every extent of it is
# durably in DIRTY_COMMIT (the idle runs pay no metadata commit).
redirty() {
	image_data bench-commit-data "$changed" |
		dd of="$dev" bs=1M oflag=direct iflag=fullblock status=none || die "cannot write"
}

# last_done: what remote-cowd said of the last commit it finished (its
# extents, bytes, how many came from the spool, were copied on a PRESERVE
# request or ahead of the guest, and how many extents PRESERVE asked for:
# each is a write that waited for a copy, its own or one under way ahead).
last_done() {
	sed -n 's/.* commit [0-9]* to .* done: //p' "$HELPER_LOG" | tail -n 1
}

# nbdcopy_time: a fresh overlay target, then the seconds nbdcopy takes to
# write the same bytes into it (the file of the written data) and flush, in
# T_COPY; the overlay is deleted afterwards (the VM's /tmp is its memory).
copy_src=$NET_WORKDIR/changed.raw
image_data bench-commit-data "$changed" >"$copy_src" || die "cannot write $copy_src"
nbdcopy_time() {
	local t0 f=$NET_WORKDIR/copy.qcow2
	target_stop
	target_overlay "$f" "$BASE_IMG" raw copy || die "cannot serve the copy's overlay"
	nice_servers
	t0=$(date +%s.%N)
	nbdcopy --flush "$copy_src" "$TARGET_URI" >/dev/null 2>&1 || die "nbdcopy to $TARGET_URI failed"
	T_COPY=$(python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$t0")
	target_stop
	rm -f "$f"
}

gen0=$(dmsetup status "$NAME" | awk '{ print $11 }')
ideal=$(awk -v c="$changed" -v r="$rate_bps" 'BEGIN { printf "%.2f", c * 8 / r }')
idle=() idle_odd=() idle_even=() busy=() fresh=() t_quiet=() t_busy=() t_copy=() t_copy2=()
for ((r = 1; r <= REPS; r++)); do
	redirty
	run_fio "$NET_WORKDIR/idle.$r.json" || die "fio failed"
	v=$(p99 "$NET_WORKDIR/idle.$r.json")
	idle+=("$v")
	if ((r % 2)); then idle_odd+=("$v"); else idle_even+=("$v"); fi

	# the commit starts when fio is about to write: its whole run is under it
	commit_target
	rm -f "$NET_WORKDIR/t0"
	run_fio "$NET_WORKDIR/busy.$r.json" "$(commit_cmd)" || die "fio failed"
	T0=$(cat "$NET_WORKDIR/t0" 2>/dev/null) || die "the commit did not start"
	[ "$(dmsetup status "$NAME" | awk '{ print $11 }')" -eq "$((n_target + gen0))" ] ||
		die "the commit under fio was refused"
	busy+=("$(p99 "$NET_WORKDIR/busy.$r.json")")
	state=$(dmsetup status "$NAME" | awk '{ print $9 }')
	t_busy+=("$(commit_wait)")
	[ -n "${t_busy[-1]}" ] || die "the commit under fio of repetition $r did not complete"
	[ "$state" = uploading ] ||
		log "warning: repetition $r: the commit ended before fio did ($state): raise BENCH_CHANGED_MB"
	done_busy=$(last_done)

	nbdcopy_time
	t_copy+=("$T_COPY")
	commit_start
	t_quiet+=("$(commit_wait)")
	[ -n "${t_quiet[-1]}" ] || die "the quiet commit of repetition $r did not complete"
	nbdcopy_time
	t_copy2+=("$T_COPY")
	run_fio "$NET_WORKDIR/fresh.$r.json" || die "fio failed"
	fresh+=("$(p99 "$NET_WORKDIR/fresh.$r.json")")
	log "repetition $r: p99 idle ${idle[-1]} us, during commit ${busy[-1]} us," \
		"fresh interval ${fresh[-1]} us; commit ${t_quiet[-1]} s quiet," \
		"${t_busy[-1]} s under fio; nbdcopy ${t_copy[-1]} s and ${t_copy2[-1]} s"
	log "repetition $r: writes per run: idle $(ios "$NET_WORKDIR/idle.$r.json")," \
		"during commit $(ios "$NET_WORKDIR/busy.$r.json"), fresh interval $(ios "$NET_WORKDIR/fresh.$r.json")"
	log "repetition $r: remote-cowd on the commit under fio: ${done_busy:-?}"
done
# The control: half the idle runs against the other half (REPS >= 2).
ctl=-
if [ ${#idle_even[@]} -gt 0 ]; then
	ctl=$(ratio "$(printf '%s\n' "${idle_even[@]}" | median)" \
		"$(printf '%s\n' "${idle_odd[@]}" | median)")
fi
mi=$(printf '%s\n' "${idle[@]}" | median)
mb=$(printf '%s\n' "${busy[@]}" | median)
mf=$(printf '%s\n' "${fresh[@]}" | median)
tq=$(printf '%s\n' "${t_quiet[@]}" | median)
tb=$(printf '%s\n' "${t_busy[@]}" | median)
tc1=$(printf '%s\n' "${t_copy[@]}" | median)
tc2=$(printf '%s\n' "${t_copy2[@]}" | median)

echo
echo "| figure (median of $REPS) | remote-cow | reference | ratio | control |"
echo "|---|---|---|---|---|"
echo "| 4 KiB random write p99, during commit vs idle | $mb us | $mi us | $(ratio "$mb" "$mi") | $ctl |"
echo "| 4 KiB random write p99, fresh interval (no commit) vs idle | $mf us | $mi us | $(ratio "$mf" "$mi") | $ctl |"
echo "| 4 KiB random write p99, during commit vs fresh interval | $mb us | $mf us | $(ratio "$mb" "$mf") | $ctl |"
echo "| commit time, guest quiet vs changed bytes / link rate | $tq s | $ideal s | $(ratio "$tq" "$ideal") | - |"
echo "| commit time, guest writing vs changed bytes / link rate | $tb s | $ideal s | $(ratio "$tb" "$ideal") | - |"
echo "| commit time, guest quiet vs nbdcopy of the same bytes | $tq s | $tc1 s | $(ratio "$tq" "$tc1") | $(ratio "$tc2" "$tc1") |"
echo "| commit time, guest writing vs nbdcopy of the same bytes | $tb s | $tc1 s | $(ratio "$tb" "$tc1") | $(ratio "$tc2" "$tc1") |"
echo "| nbdcopy of the same bytes vs changed bytes / link rate | $tc1 s | $ideal s | $(ratio "$tc1" "$ideal") | - |"
echo
helper_stop >/dev/null 2>&1
log "remote-cowd: $(echo "$HELPER_STATS" | tr '\n' ' ')"
