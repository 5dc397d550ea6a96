#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Self-test of the test harness (make check-harness): runs the deliberately
# broken tests of selftests/harness/ through scripts/check.sh and verifies
# that every failure is counted and named, that a kernel WARNING fails the
# run, and that a crashed VM is reported.  Two VM boots, about 30 s.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
mkdir -p "$BUILD/check"
n=0 failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
expect() {	# expect <desc> <command...>
	local d=$1
	shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
has_line() { grep -qE -- "$2" "$1"; }

echo "TAP version 13"
echo "1..19"

# --- one VM: passing, failing, malformed, timed out, WARNING, skipped -----
out=$BUILD/check/harness-1.log
echo "# run 1: scripts/check.sh --dir selftests/harness (7 tests, one VM)"
set +e
RC_CHECK_VMS=1 "$ROOT/scripts/check.sh" --no-unit --dir "$ROOT/selftests/harness" \
	pass fail-named no-plan exit-status timeout kernel-warn skip >"$out" 2>&1
rc=$?
set -e
sed 's/^/#   /' "$out"
expect "a failing run exits non-zero (got $rc)" test "$rc" -ne 0
expect "every result is counted" \
	test "$(tail -n1 "$out")" = "8 passed, 6 failed, 1 skipped"
expect "fail-named is named with its failing check" \
	has_line "$out" '^  FAIL fail-named: deliberate failure$'
expect "and its second failed check" has_line "$out" '^  FAIL fail-named: second deliberate failure$'
expect "no-plan is named" has_line "$out" '^  FAIL no-plan: no TAP plan'
expect "exit-status is named" has_line "$out" '^  FAIL exit-status: exit status 3$'
expect "timeout is named as timed out" has_line "$out" '^  FAIL timeout: TIMEOUT after 3s'
expect "the timed-out test's last check is shown under its name" \
	bash -c "grep -A4 -- '^  -- timeout (' '$out' | grep -q 'ok 1 - starts'"
expect "and its still-running sleep, with where it waits" \
	has_line "$out" '^     # pid [0-9]+ S.*: sleep 600'
expect "fail-named's failing checks are shown under its name, once" \
	bash -c "grep -A12 -- '^  -- fail-named (' '$out' | grep -q 'not ok 4 - second deliberate failure' &&
		test \$(grep -c -- '^  -- fail-named (' '$out') = 1"
expect "... each with the diagnostics under it (command, exit status)" \
	bash -c "grep -A3 -- '^     not ok 2 - deliberate failure' '$out' | grep -q '#.*exit: 1'"
expect "kernel-warn fails on the WARNING in the kernel log" \
	has_line "$out" '^  FAIL kernel-warn: kernel log: WARNING:'
expect "the WARNING's log part is shown" \
	has_line "$out" 'WARNING: CPU: 0 PID: [0-9]+ at harness-selftest'
expect "pass and skip are not reported as failed" \
	bash -c "! grep -qE '^  FAIL (pass|skip):' '$out'"

# --- a second VM: the kernel crashes in the middle of a test --------------
out=$BUILD/check/harness-2.log
echo "# run 2: a kernel crash (sysrq c) during crash.sh, then pass"
set +e
RC_CHECK_VMS=1 "$ROOT/scripts/check.sh" --no-unit --dir "$ROOT/selftests/harness" crash pass >"$out" 2>&1
rc=$?
set -e
sed 's/^/#   /' "$out"
expect "a crashed VM exits non-zero (got $rc)" test "$rc" -ne 0
expect "the crashing test is named as not finished" \
	has_line "$out" '^  FAIL crash: did not finish: the VM died'
expect "the test after it is named as not run" \
	has_line "$out" '^  FAIL pass: did not run: the VM died'
expect "the kernel panic is shown" has_line "$out" 'Kernel panic'
expect "the summary counts both" test "$(tail -n1 "$out")" = "0 passed, 3 failed"

echo "$((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
