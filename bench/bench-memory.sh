#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/bench-memory.sh - the kernel memory a remote-cow table takes per
# TiB of virtual device, beside dm-clone, dm-era, dm-thin and dm-linear
# over the same size, in one VM run.
#
# Runs inside the test VM (make bench-memory, which also builds dm-clone.ko;
# or scripts/vm-run.sh bench/bench-memory.sh).  Prints figures; not a
# pass/fail test, not in make check.  See Documentation/benchmarks.rst,
# "Kernel memory".
#
# Every device is a loop device over a sparse file on the VM's /tmp: the
# COW device (remote-cow's, dm-clone's destination, dm-era's origin,
# dm-thin's pool data, dm-linear's device), one metadata device for the
# peers, and the base a sparse file (file:// URI).  For each size, each
# target is created, measured, and removed, BENCH_REPS times
# (BENCH_REPS_LARGE at the larger sizes) in rotated order.  A measurement
# is the difference of two samples, one before the table is created and
# one after (after the state's steps):
#
#   vmalloc  sum of the sizes in /proc/vmallocinfo (less the per-cpu
#            allocator's chunks, counted by Percpu, and the areas freed
#            but not yet purged): kvcalloc'd bitmaps above 4 MiB
#   slab     SUnreclaim of /proc/meminfo: also kmalloc'd blocks above
#            8 KiB (kvcalloc up to 4 MiB), a power of two of pages each
#   percpu   Percpu of /proc/meminfo
#   bufio    dm-bufio's current_allocated_bytes (all clients: remote-cow,
#            and dm-clone, dm-era, dm-thin through persistent-data)
#
# each the median of BENCH_SAMPLES readings taken after sync, drop_caches
# (which also shrinks dm-bufio's clean cache) and a second's settling.
# "bufio cache" is dm-bufio's figure read before the caches are dropped
# (what the table's load left cached; reclaimable).  Pages a module takes
# straight from the page allocator are in none of these (see the
# documentation).
#
# remote-cow's states, on one table:
#   fresh    the table loaded
#   commit   an rcow-nl session registered as the helper (for the whole
#            run, so in both samples), one extent written, "snapshot
#            commit" then "snapshot abort": the commit's two sets stay
#   migrate  then "migrate send" and "migrate abort": two more sets
# dm-clone (64 KiB regions, source dm-zero), dm-era (64 KiB blocks),
# dm-thin (a pool of 64 KiB blocks over the COW device, one thin volume of
# the size) are measured fresh; dm-linear is the control (no per-extent
# state: its figure is the noise floor).
#
# Environment (defaults in brackets):
#   BENCH_SIZES_TIB   virtual sizes, TiB ["1 4"]
#   BENCH_EXTENT      extent/region/block, sectors [128 = 64 KiB]
#   BENCH_REPS        repetitions at the first size [3]
#   BENCH_REPS_LARGE  repetitions at the other sizes [1]
#   BENCH_SAMPLES     readings per sample [5]
#   BENCH_TARGETS     ["rc clone era thin lin"]
#   BENCH_DM_CLONE_KO dm-clone module [build/peers/dm-clone/dm-clone.ko]
#
# Exit status: 0 when every figure was measured, 1 otherwise.
# shellcheck disable=SC2317	# the targets' functions are called as "${t}_up"

TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=lib-bench.sh
. "$TREE/bench/lib-bench.sh"

SIZES=${BENCH_SIZES_TIB:-1 4}
EXT=${BENCH_EXTENT:-128}
REPS_FIRST=${BENCH_REPS:-3}
REPS_LARGE=${BENCH_REPS_LARGE:-1}
SAMPLES=${BENCH_SAMPLES:-5}
TARGETS=${BENCH_TARGETS:-rc clone era thin lin}
CLONE_KO=${BENCH_DM_CLONE_KO:-$TREE/build/peers/dm-clone/dm-clone.ko}
BUFIO=/sys/module/dm_bufio/parameters/current_allocated_bytes
COMMIT_URI=nbd://10.99.0.1:10809/bench-memory
MIGRATE_DEST=10.99.0.2:7000
start_s=$(date +%s)

die() { echo "bench-memory: $*" >&2; exit 1; }
log() { echo "# [$(($(date +%s) - start_s))s] $*"; }

bench_require bench-memory dmsetup losetup fallocate python3
[ -x "$TREE/selftests/progs/rcow-nl" ] || die "selftests/progs/rcow-nl is not built (make)"
load_module || die "cannot load $RC_MODULE"
for m in dm-era dm-thin-pool dm-zero; do modprobe "$m" || die "no $m module"; done
bench_load_clone "$CLONE_KO" bench-memory
[ -r "$BUFIO" ] || die "no $BUFIO"
[ -e /dev/loop-control ] || modprobe loop || die "no loop module"
export DM_DISABLE_UDEV=1

net_tmpdir
work=$NET_WORKDIR

# ---------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------

# reading: "<vmalloc bytes> <slab bytes> <percpu bytes> <bufio bytes>".
reading() {
	{
		awk '!/pcpu_get_vm_areas|unpurged/ { s += $2 } END { print s + 0 }' /proc/vmallocinfo
		awk '$1 == "SUnreclaim:" || $1 == "Percpu:" { print $2 * 1024 }' /proc/meminfo
		cat "$BUFIO"
	} | tr '\n' ' '
	echo
}

# sample <file>: dm-bufio's figure before the drop, then the medians of
# SAMPLES readings after it, on one line, into <file>.
sample() {
	local cache i col v=()
	cache=$(cat "$BUFIO")
	sync
	echo 3 >/proc/sys/vm/drop_caches
	sleep 1	# dm-bufio shrinks from a work item
	for ((i = 0; i < SAMPLES; i++)); do
		reading
		sleep 0.2
	done >"$work/readings"
	for col in 1 2 3 4; do
		# shellcheck disable=SC2046	# the readings are words
		v+=("$(median $(awk -v c="$col" '{ print $c }' "$work/readings"))")
	done
	echo "${v[*]} $cache" >"$1"
	vmalloc_callers "$1.callers"
}

# vmalloc_callers <file>: the vmalloc bytes by caller, "<caller> <bytes>".
vmalloc_callers() {
	awk '!/pcpu_get_vm_areas|unpurged/ { c = $3; sub(/\+.*/, "", c); if ($4 ~ /^\[/) c = c $4; s[c] += $2 }
		END { for (c in s) print c, s[c] }' /proc/vmallocinfo | LC_ALL=C sort >"$1"
}

# Results: R[<TiB>.<target>.<state>.<what>] = the runs, space separated;
# <what> is vmalloc, slab, percpu, bufio, total, cache (MiB per TiB).
declare -A R
KEYS=()

# measure <TiB> <target> <state>: the difference of $work/before and a
# sample taken now, added to the results.
measure() {
	local k=$1.$2.$3 a b what i
	sample "$work/after"
	read -ra b <"$work/before"
	read -ra a <"$work/after"
	[[ " ${KEYS[*]} " == *" $k "* ]] || KEYS+=("$k")
	i=0
	for what in vmalloc slab percpu bufio; do
		R[$k.$what]="${R[$k.$what]:-} $(mib_tib $((a[i] - b[i])) "$1")"
		i=$((i + 1))
	done
	R[$k.total]="${R[$k.total]:-} $(mib_tib $((a[0] + a[1] + a[2] + a[3] - b[0] - b[1] - b[2] - b[3])) "$1")"
	R[$k.cache]="${R[$k.cache]:-} $(mib_tib $((a[4] - b[4])) "$1")"
	[ "$rep" = 1 ] && LC_ALL=C join -a1 -a2 -e0 -o 0,1.2,2.2 "$work/before.callers" "$work/after.callers" |
		awk -v k="$k" '$3 - $2 >= 16384 || $2 - $3 >= 16384 {
			printf "# %s: vmalloc %s %+d KiB\n", k, $1, ($3 - $2) / 1024 }'
	log "$k: vmalloc slab percpu bufio (MiB/TiB):$(for what in vmalloc slab percpu bufio; do
		printf ' %s' "${R[$k.$what]##* }"; done); total ${R[$k.total]##* }"
}

mib_tib() {	# mib_tib <bytes> <TiB>
	awk -v b="$1" -v t="$2" 'BEGIN { printf "%.2f\n", b / 1048576 / t }'
}

# ---------------------------------------------------------------------------
# The helper: one rcow-nl session for the whole run (so that its socket is
# in every sample); it answers nothing, only takes the events.
# ---------------------------------------------------------------------------
nl_session_start
sess register
[ "$SESS_RC" = 0 ] || die "the rcow-nl session does not register: $SESS_OUT"
drain() {	# drain: read the events the kernel sent the session
	local i
	for ((i = 0; i < 50; i++)); do
		sess listen 1 200
		[ "$SESS_RC" = 0 ] || return 0
	done
}

# ---------------------------------------------------------------------------
# The targets: <name>_run <TiB> creates the table, measures its states and
# removes it.  $work/before is taken just before the table is created.
# ---------------------------------------------------------------------------
status_field() { dmsetup status "$1" | awk -v n="$2" '{ print $(n + 3) }'; }
wait_field() {	# wait_field <dm name> <field> <value>: 10 s
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(status_field "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	return 1
}

rc_run() {
	local t=$1 dev=/dev/mapper/bm-rc
	sample "$work/before"
	dmsetup create bm-rc --table "$(rc_table "$len" "$COW" "$EXT" "file://$base")" ||
		die "cannot create remote-cow"
	drain
	measure "$t" rc fresh
	write_byte_extent "$dev" $((EXT * 512)) 0 65 || die "cannot write remote-cow"
	dmsetup message bm-rc 0 snapshot commit "$COMMIT_URI" || die "snapshot commit refused"
	dmsetup message bm-rc 0 snapshot abort || die "snapshot abort refused"
	wait_field bm-rc 6 failed || die "the commit did not fail after abort: $(dmsetup status bm-rc)"
	drain
	measure "$t" rc commit
	dmsetup message bm-rc 0 migrate send "$MIGRATE_DEST" || die "migrate send refused"
	dmsetup message bm-rc 0 migrate abort || die "migrate abort refused"
	drain
	measure "$t" rc migrate
	log "remote-cow status: $(dmsetup status bm-rc)"
	dm_remove bm-rc || die "cannot remove remote-cow"
	drain
}

clone_run() {
	dmsetup create bm-zero --table "0 $len zero" || die "cannot create dm-zero"
	sample "$work/before"
	dmsetup create bm-clone --table \
		"0 $len clone $META $COW /dev/mapper/bm-zero $EXT 1 no_hydration" ||
		die "cannot create dm-clone"
	measure "$1" clone fresh
	dm_remove bm-clone || die "cannot remove dm-clone"
	dm_remove bm-zero
}

# one_table <TiB> <target> <table>: one table (dm name bm-<target>),
# measured fresh.
one_table() {
	sample "$work/before"
	dmsetup create "bm-$2" --table "$3" || die "cannot create $(label "$2")"
	measure "$1" "$2" fresh
	dm_remove "bm-$2" || die "cannot remove $(label "$2")"
}

era_run() { one_table "$1" era "0 $len era $META $COW $EXT"; }

thin_run() {
	sample "$work/before"
	dmsetup create bm-pool --table \
		"0 $len thin-pool $META $COW $EXT 0 1 skip_block_zeroing" ||
		die "cannot create the thin pool"
	dmsetup message bm-pool 0 "create_thin 0" || die "create_thin refused"
	dmsetup create bm-thin --table "0 $len thin /dev/mapper/bm-pool 0" ||
		die "cannot create the thin volume"
	measure "$1" thin fresh
	dm_remove bm-thin || die "cannot remove the thin volume"
	dm_remove bm-pool || die "cannot remove the thin pool"
}

lin_run() { one_table "$1" lin "0 $len linear $COW 0"; }

label() {
	case $1 in
	rc) echo remote-cow ;; clone) echo dm-clone ;; era) echo dm-era ;;
	thin) echo dm-thin ;; lin) echo dm-linear ;;
	esac
}

# punch <file>: all of it back to a hole (zeroes, no memory).
punch() { fallocate -p -o 0 -l "$(stat -c %s "$1")" "$1"; }

log "extent/region/block $((EXT / 2)) KiB; sizes ${SIZES} TiB; $REPS_FIRST then $REPS_LARGE repetitions of" \
	"$SAMPLES readings; $(nproc) vCPUs, $(awk '$1 == "MemTotal:" { print int($2 / 1024) }' \
	/proc/meminfo) MiB; kernel $(uname -r)"
log "dm-bufio: max_cache_size_bytes $(cat /sys/module/dm_bufio/parameters/max_cache_size_bytes)," \
	"retain_bytes $(cat /sys/module/dm_bufio/parameters/retain_bytes)"
REPS=$REPS_FIRST
for tib in $SIZES; do
	len=$((tib << 31))
	[ $((len % EXT)) -eq 0 ] || die "the size is not a multiple of the extent"
	cow_bytes=$("$TREE/tools/remote-cow" cow-size --size $((len * 512)) \
		--extent-size $((EXT * 512))) || die "remote-cow cow-size failed"
	for f in cow base meta; do rm -f "$work/$f"; done
	truncate -s "$cow_bytes" "$work/cow" || die "no sparse COW file"
	truncate -s $((len * 512)) "$work/base" || die "no sparse base file"
	truncate -s $((tib << 30)) "$work/meta" || die "no sparse metadata file"
	base=$work/base
	COW=$(losetup -f --show "$work/cow") || die "no loop device"
	META=$(losetup -f --show "$work/meta") || die "no loop device"
	at_exit "losetup -d $COW"
	at_exit "losetup -d $META"
	for ((rep = 1; rep <= REPS; rep++)); do
		# shellcheck disable=SC2086	# the targets are words
		for t in $(rotate "$rep" $TARGETS); do
			punch "$work/cow" || die "cannot punch the COW file"
			punch "$work/meta" || die "cannot punch the metadata file"
			t0=$(date +%s)
			"${t}_run" "$tib"
			log "$tib TiB $(label "$t"): $(($(date +%s) - t0)) s"
		done
	done
	losetup -d "$COW"
	losetup -d "$META"
	REPS=$REPS_LARGE
done

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
med() {	# med <key>
	# shellcheck disable=SC2086	# the runs are words
	median ${R[$1]:-}
}
echo
echo "# Kernel memory per TiB of virtual device"
echo
echo "\`make bench-memory\`, $(date -u '+%Y-%m-%d %H:%M UTC'); extents/regions/blocks" \
	"$((EXT / 2)) KiB; MiB per TiB, medians of $REPS_FIRST at the first size, $REPS_LARGE at the others; kernel $(uname -r)."
echo
echo "| TiB | target | state | vmalloc | slab | percpu | bufio | total | bufio cache | dm-linear total |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
for k in "${KEYS[@]}"; do
	IFS=. read -r tib t st <<<"$k"
	printf '| %s | %s | %s |' "$tib" "$(label "$t")" "$st"
	for what in vmalloc slab percpu bufio total cache; do printf ' %s |' "$(med "$k.$what")"; done
	echo " $(med "$tib.lin.fresh.total") |"
done
echo
echo "All runs (total, MiB per TiB):"
echo
for k in "${KEYS[@]}"; do echo "- $k:${R[$k.total]}"; done
echo
echo "run time: $(($(date +%s) - start_s)) s"
exit 0
