#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run selftests inside the test VM, kselftest style (TAP version 13).
#
#   selftests/run.sh [-d DIR] [name...]
#
# Runs DIR/<name>.sh for each name (default: every DIR/*.sh but lib*.sh and
# run.sh; DIR defaults to this directory).  Each test's TAP is printed
# indented as "# " diagnostics and followed by one result line
#
#   ok N selftests: remote-cow: <name>
#   not ok N selftests: remote-cow: <name> # <reason>
#
# A test fails when it reports a failure, exits non-zero, has no TAP plan or
# a count that differs from it, outlives its timeout, or leaves an oops,
# BUG, WARNING, hung task, lockup... in the kernel log (scripts/klog-check.sh).
# Exit status 4 with no failure means skipped (KSFT_SKIP).
#
# Timeouts: "timeout=" in DIR/settings (default 300 s), overridden by a line
# "# TIMEOUT=<seconds>" in the test.  A test stuck past its timeout is
# killed; if it cannot die (D state) it is left behind and the next test
# runs.  Logs go to $RC_RUN/selftests/ (the host's per-run results dir).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TREE=${RC_TREE:-$(cd "$HERE/.." && pwd)}
DIR=$HERE
if [ "${1:-}" = -d ]; then
	DIR=$(cd "$2" && pwd)
	shift 2
fi
export RC_TREE=$TREE DM_DISABLE_UDEV=1

LOGDIR=${RC_RUN:-/tmp}/selftests
mkdir -p "$LOGDIR"
KLOG_PATTERN=$("$TREE/scripts/klog-check.sh" --pattern)

default_timeout=300
if [ -f "$DIR/settings" ]; then
	t=$(sed -n 's/^timeout=\([0-9][0-9]*\)$/\1/p' "$DIR/settings")
	[ -z "$t" ] || default_timeout=$t
fi

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for f in "$DIR"/*.sh; do
		n=$(basename "$f" .sh)
		case $n in lib | lib-* | run) continue ;; esac
		names+=("$n")
	done
fi

# Userspace writes to /dev/kmsg must not be rate limited (markers).
echo on >/proc/sys/kernel/printk_devkmsg 2>/dev/null

echo "TAP version 13"
echo "1..${#names[@]}"

if [ -f "$TREE/dm-remote-cow/dm-remote-cow.ko" ]; then
	if ! grep -q '^dm_remote_cow ' /proc/modules; then
		modprobe dm-remote-cow 2>&1 | sed 's/^/# modprobe: /'
	fi
else
	echo "# warning: $TREE/dm-remote-cow/dm-remote-cow.ko is not built"
fi

# A pipe nobody writes: 'read -t' on it is a sleep without a fork.
fifo=$(mktemp -u /tmp/run-sh-fifo.XXXXXX)
mkfifo "$fifo"
exec 9<>"$fifo"
rm -f "$fifo"

pass=0 fail=0 skip=0 num=0
failed_names=()

# Remove what a test left behind so that the next one starts clean.
cleanup_leftovers() {
	local name=$1 left
	left=$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }')
	if [ -n "$left" ]; then
		echo "# warning: $name left device-mapper devices: $(echo "$left" | tr '\n' ' ')"
		dmsetup remove_all --force >/dev/null 2>&1
	fi
	left=$(losetup -n -O NAME 2>/dev/null)
	if [ -n "$left" ]; then
		echo "# warning: $name left loop devices: $(echo "$left" | tr '\n' ' ')"
		losetup -D 2>/dev/null
	fi
}

for name in "${names[@]}"; do
	num=$((num + 1))
	f=$DIR/$name.sh
	echo "# selftests: remote-cow: $name"
	if [ ! -f "$f" ]; then
		echo "not ok $num selftests: remote-cow: $name # no such test ($f)"
		fail=$((fail + 1))
		failed_names+=("$name")
		continue
	fi
	timeout=$(sed -n 's/^# *TIMEOUT=\([0-9][0-9]*\).*/\1/p' "$f" | head -n1)
	timeout=${timeout:-$default_timeout}

	log=/tmp/selftest-$name.log
	: >"$log"
	# A test that blocks I/O on purpose for longer may raise this itself.
	echo 30 >/proc/sys/kernel/hung_task_timeout_secs
	mark="rcow-selftest: begin $name $num $$"
	echo "$mark" >/dev/kmsg
	start=$SECONDS

	# Own session, so that a timeout kills the whole test.
	setsid bash "$f" </dev/null >"$log" 2>&1 9>&- &
	pid=$!
	tail -n +1 -f "$log" 2>/dev/null | sed -u 's/^/# /' &
	tailpid=$!

	# The deadline: poll the test every 0.2 s rather than have a
	# watchdog's signal interrupt 'wait': such a signal was once lost (a
	# 3 s timeout that never fired).  The shell reaps the test when it
	# ends (kill -0 then fails); 'wait' then only reads its status.
	timed_out=0
	while kill -0 "$pid" 2>/dev/null; do
		if [ $((SECONDS - start)) -ge "$timeout" ]; then
			timed_out=1
			break
		fi
		read -r -t 0.2 -u 9 _ || :
	done
	rc=0
	[ "$timed_out" = 1 ] || wait "$pid" || rc=$?
	if [ "$timed_out" = 1 ]; then
		# Into the test's log (tail prints it too): check.sh shows
		# these lines under a failed test's name.
		{
			echo "# TIMEOUT: $name still running after ${timeout}s; its processes:"
			echo w >/proc/sysrq-trigger 2>/dev/null
			for p in $(ps -o pid= -s "$pid" 2>/dev/null); do
				w=$(ps -o stat=,wchan:24= -p "$p" 2>/dev/null)
				echo "# pid $p $w:" \
					"$(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | cut -c1-100)"
				# A shell waiting for its children says nothing more.
				case $w in *do_wait*) continue ;; esac
				sed 's/^/#   /' /proc/"$p"/stack 2>/dev/null | head -n 6
			done
		} >>"$log"
		kill -KILL -- -"$pid" 2>/dev/null
		disown "$pid" 2>/dev/null
		# Do not wait for a task that cannot die.
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		rc=124
	fi
	sleep 0.3	# let tail print the last lines
	kill "$tailpid" 2>/dev/null
	wait "$tailpid" 2>/dev/null
	elapsed=$((SECONDS - start))

	# Parse this test's TAP.
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$log" | head -n1)
	n_ok=$(grep -cE '^ok [0-9]+' "$log")
	n_notok=$(grep -cE '^not ok [0-9]+' "$log")
	n_skip=$(grep -ciE '^ok [0-9]+[^#]*# *skip' "$log")
	bailed=$(grep -m1 '^Bail out!' "$log")

	# This test's part of the kernel log.
	dmesg | awk -v m="$mark" 'found { print } index($0, m) { found = 1 }' \
		>"$LOGDIR/$name.dmesg"
	cp "$log" "$LOGDIR/$name.log"

	reason=
	status=ok
	if [ "$timed_out" = 1 ]; then
		reason="TIMEOUT after ${timeout}s"
	elif [ -n "$bailed" ]; then
		reason="$bailed"
	elif [ "$n_notok" -gt 0 ]; then
		reason="$n_notok of $((n_ok + n_notok)) failed"
	elif [ -z "$plan" ]; then
		reason="no TAP plan (exit $rc)"
	elif [ "$rc" = 4 ] && [ "$n_ok" -eq "$n_skip" ]; then
		status=skip
		reason=$(grep -m1 -oiE '# *skip.*' "$log" | sed 's/^# *[sS][kK][iI][pP] *//')
	elif [ "$plan" != "$((n_ok + n_notok))" ]; then
		reason="planned $plan, ran $((n_ok + n_notok)) (exit $rc)"
	elif [ "$rc" != 0 ]; then
		reason="exit status $rc"
	fi
	[ -z "$reason" ] || [ "$status" = skip ] || status=fail

	if grep -qE "$KLOG_PATTERN" "$LOGDIR/$name.dmesg"; then
		echo "# kernel log of $name shows a problem:"
		"$TREE/scripts/klog-check.sh" "$LOGDIR/$name.dmesg" | sed 's/^/#   /'
		status=fail
		reason="${reason:+$reason; }kernel log: $(grep -m1 -oE "$KLOG_PATTERN" "$LOGDIR/$name.dmesg")"
	fi

	cleanup_leftovers "$name"
	echo "# $name: ${elapsed}s"
	case $status in
	ok)
		pass=$((pass + 1))
		echo "ok $num selftests: remote-cow: $name"
		;;
	skip)
		skip=$((skip + 1))
		echo "ok $num selftests: remote-cow: $name # SKIP $reason"
		;;
	fail)
		fail=$((fail + 1))
		failed_names+=("$name")
		echo "not ok $num selftests: remote-cow: $name # $reason"
		;;
	esac
done

echo "# Totals: pass:$pass fail:$fail skip:$skip"
[ "$fail" -eq 0 ] || echo "# failed: ${failed_names[*]}"
[ "$fail" -eq 0 ]
