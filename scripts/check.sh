#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The test driver behind 'make check' and 'make vm-test': host unit tests,
# then the selftests, split over RC_CHECK_VMS VMs (default 2) booted side
# by side; counts every TAP result and ends with
#
#   N passed, N failed[, N skipped]
#
#   scripts/check.sh [--no-unit] [--no-vm] [--klog-tail] [--dir DIR] [name...]
#
#   --no-unit    skip the host unit tests ('make -C <dir> check')
#   --no-vm      skip the selftests
#   --klog-tail  print the end of the VM's kernel log afterwards
#   --dir DIR    take the selftests from DIR (default selftests/)
#   name...      selftests to run (file names without .sh; default all)
#
# Environment: RC_CHECK_VMS (VMs side by side, default 2), RC_VM_TIMEOUT_MAX
# (bound on one VM's time limit, default 4800 s), RC_RUN_TIMEOUT (the time
# limit of every VM, overriding the sum of its tests' timeouts).
#
# Exit status: 0 when everything ran and passed; 1 when something failed,
# did not run to its end (timeout, VM died) or nothing ran at all.
#
# Unit tests: each directory of userspace, tools, selftests/progs whose
# Makefile has a 'check' target; its output is TAP: every line starting
# with "ok N" or "not ok N" counts ("# SKIP" directive: skipped).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
cd "$ROOT"

unit=1 vm=1 klog_tail=0 dir=$ROOT/selftests
while [ $# -gt 0 ]; do
	case $1 in
	--no-unit) unit=0 ;;
	--no-vm) vm=0 ;;
	--klog-tail) klog_tail=1 ;;
	--dir) dir=$(cd "$2" && pwd); shift ;;
	-*) echo "check: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done

pass=0 fail=0 skip=0
failures=()
mkdir -p "$BUILD/check"

note_fail() {
	fail=$((fail + 1))
	failures+=("$1")
}

# count_tap <file> <label>: add up the un-indented TAP results of a log.
count_tap() {
	local line desc
	while IFS= read -r line; do
		case $line in
		"not ok "[0-9]*)
			desc=$(sed -E 's/^not ok [0-9]+ *-? *//' <<<"$line")
			note_fail "$2: $desc"
			;;
		"ok "[0-9]*)
			if grep -qiE '#[[:space:]]*skip' <<<"$line"; then
				skip=$((skip + 1))
			else
				pass=$((pass + 1))
			fi
			;;
		esac
	done <"$1"
}

# ---------------------------------------------------------------------------
# Host unit tests
# ---------------------------------------------------------------------------
if [ "$unit" = 1 ]; then
	for d in userspace tools selftests/progs; do
		[ -f "$d/Makefile" ] || continue
		make -s -C "$d" -n check >/dev/null 2>&1 || continue
		echo "== unit tests: make -C $d check"
		log=$BUILD/check/unit-${d//\//-}.log
		set +e
		make -s -C "$d" check 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		set -e
		before=$((pass + fail + skip))
		f0=$fail
		count_tap "$log" "unit ($d)"
		if [ $((pass + fail + skip)) -eq "$before" ]; then
			note_fail "unit ($d): no TAP result (make check exited $rc)"
		elif [ "$rc" != 0 ] && [ "$fail" -eq "$f0" ]; then
			note_fail "unit ($d): make check exited $rc"
		fi
	done
fi

# ---------------------------------------------------------------------------
# Selftests in the VM
# ---------------------------------------------------------------------------

# count_run <run dir> <vm-run exit status> <time limit> <name>...: add up
# the TAP results of one VM's output.log; a test of <name>... that did not
# finish, and a kernel log problem no test owned, count as failures.
count_run() {
	local run=$1 vrc=$2 total=$3 line name reason why n
	local current='' sub_fail=0 sub_count=0 klog_attributed=0
	local -A state=()
	shift 3
	while IFS= read -r line; do
		case $line in
		"# selftests: remote-cow: "*)
			current=${line#"# selftests: remote-cow: "}
			state[$current]=started
			sub_fail=0
			sub_count=0
			;;
		"# not ok "[0-9]*)
			[ -n "$current" ] || continue
			sub_count=$((sub_count + 1))
			sub_fail=$((sub_fail + 1))
			note_fail "$current: $(sed -E 's/^# not ok [0-9]+ *-? *//' <<<"$line")"
			;;
		"# ok "[0-9]*)
			[ -n "$current" ] || continue
			sub_count=$((sub_count + 1))
			if grep -qiE '#[[:space:]]*skip' <<<"${line#"# ok "}"; then
				skip=$((skip + 1))
			else
				pass=$((pass + 1))
			fi
			;;
		"ok "[0-9]*" selftests: remote-cow: "* | "not ok "[0-9]*" selftests: remote-cow: "*)
			name=${line#*selftests: remote-cow: }
			reason=
			case $name in *" # "*) reason=${name#* # }; name=${name%% # *} ;; esac
			state[$name]=finished
			case $line in
			"not ok"*)
				case $reason in *"kernel log"*) klog_attributed=1 ;; esac
				# Failed subtests are already counted; add the
				# failure that no subtest shows.
				if [ "$sub_fail" -eq 0 ] || [[ $reason == *"kernel log"* ]] ||
					[[ $reason == *TIMEOUT* ]]; then
					note_fail "$name: $reason"
				fi
				;;
			*)
				[ "$sub_count" -gt 0 ] || skip=$((skip + 1))
				;;
			esac
			current=
			;;
		esac
	done <"$run/output.log"

	why=
	[ "$vrc" != 124 ] || why=": the VM timed out after ${total}s"
	[ "$vrc" != 125 ] || why=": the VM died (see $run/console.log)"
	for n in "$@"; do
		case ${state[$n]:-} in
		finished) ;;
		started) note_fail "$n: did not finish$why" ;;
		*) note_fail "$n: did not run$why" ;;
		esac
	done
	if [ -f "$run/klog-check.txt" ] && [ "$klog_attributed" = 0 ]; then
		note_fail "kernel log: $(grep -m1 -oE "$("$ROOT/scripts/klog-check.sh" --pattern)" \
			"$run/dmesg.txt" "$run/console.log" 2>/dev/null | head -n1 | cut -d: -f2-) (see $run/klog-check.txt)"
	fi
	if [ "$klog_tail" = 1 ]; then
		echo "== kernel log tail ($run/dmesg.txt)"
		tail -n 30 "$run/dmesg.txt" 2>/dev/null || tail -n 30 "$run/console.log"
	fi
	echo "== results in $run"
}

if [ "$vm" = 1 ]; then
	names=("$@")
	if [ ${#names[@]} -eq 0 ]; then
		for f in "$dir"/*.sh; do
			n=$(basename "$f" .sh)
			case $n in lib | lib-* | run) continue ;; esac
			names+=("$n")
		done
	fi
	# Shards: the selftests are split over RC_CHECK_VMS VMs (default 2)
	# that run side by side.  Most selftests spend much of their time
	# waiting (timeouts, shaped links, polls), so two VMs on two cores
	# finish the suite in far less than one VM's time.  Tests go to the
	# least loaded shard, longest first, weighted by the seconds recorded
	# in $dir/durations (a test not listed there weighs a quarter of its
	# timeout); each shard runs its tests in the order of names.
	default_timeout=$(sed -n 's/^timeout=\([0-9][0-9]*\)$/\1/p' "$dir/settings" 2>/dev/null)
	default_timeout=${default_timeout:-300}
	declare -A tmo=() weight=() recorded=() home=()
	if [ -f "$dir/durations" ]; then
		while read -r n t; do
			case $n:$t in '#'* | *:*[!0-9]* | *:) continue ;; esac
			recorded[$n]=$t
		done <"$dir/durations"
	fi
	for n in "${names[@]}"; do
		t=$(sed -n 's/^# *TIMEOUT=\([0-9][0-9]*\).*/\1/p' "$dir/$n.sh" 2>/dev/null | head -n1)
		tmo[$n]=${t:-$default_timeout}
		weight[$n]=${recorded[$n]:-$((tmo[$n] / 4))}
	done
	vms=${RC_CHECK_VMS:-2}
	case $vms in '' | *[!0-9]* | 0) echo "check: RC_CHECK_VMS must be a positive number" >&2; exit 2 ;; esac
	[ "$vms" -le ${#names[@]} ] || vms=${#names[@]}
	declare -a load=()
	for ((i = 0; i < vms; i++)); do load[i]=0; done
	while read -r _ n; do
		best=0
		for ((i = 1; i < vms; i++)); do
			[ "${load[i]}" -ge "${load[best]}" ] || best=$i
		done
		load[best]=$((load[best] + weight[$n]))
		home[$n]=$best
	done < <(for n in "${names[@]}"; do echo "${weight[$n]} $n"; done | sort -k1,1nr -k2,2)

	mkdir -p "$BUILD/vm/runs"
	stamp=$(date +%Y%m%d-%H%M%S)
	max=${RC_VM_TIMEOUT_MAX:-4800}
	declare -a runs=() totals=() pids=()
	for ((i = 0; i < vms; i++)); do
		# The VM's time limit: its tests' timeouts, plus boot and slack,
		# at most RC_VM_TIMEOUT_MAX (default 4800 s).
		total=180 list=()
		for n in "${names[@]}"; do
			[ "${home[$n]}" = "$i" ] || continue
			list+=("$n")
			total=$((total + tmo[$n]))
		done
		[ "$total" -le "$max" ] || total=$max
		totals[i]=${RC_RUN_TIMEOUT:-$total}
		runs[i]=$(mktemp -d "$BUILD/vm/runs/$stamp-check$i-XXXX")
		echo "== selftests in VM $i (${list[*]}; about ${load[i]}s; time limit ${totals[i]}s)"
		{
			rc=0
			"$ROOT/scripts/vm-run.sh" --run-dir "${runs[i]}" --timeout "${totals[i]}" -- \
				"$ROOT/selftests/run.sh" -d "$dir" "${list[@]}" || rc=$?
			echo "$rc" >"${runs[i]}/vm-run.rc"
		} 2>&1 | if [ "$vms" -gt 1 ]; then sed -u "s/^/[vm$i] /"; else cat; fi &
		pids[i]=$!
		# Let the first VM build the shared initramfs and depmod cache.
		[ "$i" -gt 0 ] || [ "$vms" -eq 1 ] || sleep 10
	done
	for ((i = 0; i < vms; i++)); do wait "${pids[i]}" || true; done

	for ((i = 0; i < vms; i++)); do
		list=()
		for n in "${names[@]}"; do [ "${home[$n]}" != "$i" ] || list+=("$n"); done
		count_run "${runs[i]}" "$(cat "${runs[i]}/vm-run.rc" 2>/dev/null || echo 125)" \
			"${totals[i]}" "${list[@]}"
	done
fi

# fail_detail <name>: a few lines on how a failed selftest ended, from its
# log in its VM's run directory, so that the tail of the output (all a CI
# report may keep) says where it stopped: its last TAP lines, and for a
# timeout the processes still running and where they waited.
fail_detail() {
	local n=$1 log
	[ "$vm" = 1 ] && [ -n "${home[$n]:-}" ] || return 0
	log=${runs[${home[$n]}]}/selftests/$n.log
	[ -f "$log" ] || return 0
	echo "  -- $n ($log):"
	{
		# the first failed checks with the diagnostics under them
		awk '/^not ok [0-9]+/ { d = 1; if (++n > 3) exit; print; next }
		     /^ok [0-9]+/ { d = 0 }
		     d && /^#/ && ++k <= 30 { print }' "$log" || :
		echo "(last lines)"
		grep -E '^(ok|not ok) [0-9]+' "$log" | tail -n 3 || :
		sed -n '/^# TIMEOUT: /,$p' "$log" | grep -E '^# (TIMEOUT|pid |  )' | head -n 16 || :
	} | cut -c1-160 | sed 's/^/     /' || :
}

if [ ${#failures[@]} -gt 0 ]; then
	echo "== failed:"
	printf '  FAIL %s\n' "${failures[@]}"
	# One detail per test, however many of its checks failed.
	declare -A shown=()
	for f in "${failures[@]}"; do
		[ ${#shown[@]} -lt 5 ] || break
		n=${f%%:*}
		case $n in *' '*) continue ;; esac
		[ -z "${shown[$n]:-}" ] || continue
		fail_detail "$n"
		shown[$n]=1
	done
fi
summary="$pass passed, $fail failed"
[ "$skip" -eq 0 ] || summary="$summary, $skip skipped"
echo "$summary"
[ "$fail" -eq 0 ] && [ $((pass + skip)) -gt 0 ]
