#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Host test of remote-cowd's command line (TAP): every mistake is named
# (the option as written, the value out of range with its range) and the
# daemon exits 2 before touching the kernel; unique prefixes are taken.
#
#   remote-cowd-args.sh PATH_TO_REMOTE_COWD
set -u

D=${1:-$(dirname "$0")/../remote-cowd}
n=0
failed=0

# expect <exit> <text> <args...>: remote-cowd ARGS exits so, saying text
expect() {
	local want=$1 text=$2 out rc
	shift 2
	out=$(timeout 10 "$D" "$@" 2>&1)
	rc=$?
	n=$((n + 1))
	if [ "$rc" -eq "$want" ] && [[ $out == *"$text"* ]]; then
		echo "ok $n - remote-cowd $*: exit $want, '$text'"
	else
		echo "not ok $n - remote-cowd $*: exit $want, '$text'"
		echo "#   got exit $rc: $out"
		failed=$((failed + 1))
	fi
}

echo "TAP version 13"
expect 2 "option '--connections': '99' is not a number from 1 to 16" --connections 99
expect 2 "option '--connections': 'x' is not a number from 1 to 16" --conn=x
expect 2 "option '--max-in-flight': '0' is not a number from 1 to 1024" --max-in-flight 0
expect 2 "option '--prefetch-max': '1G' is not a size from 0 to 64M" --prefetch-max 1G
expect 2 "option '--migrate-peer-timeout': '0' is not a duration from 1s to 1h" \
	--migrate-peer-timeout 0
expect 2 "option '--migrate-peer-timeout': '2h' is not a duration from 1s to 1h" \
	--migrate-peer=2h
expect 2 "option '--migrate-peer-timeout': 'x' is not a duration from 1s to 1h" \
	--migrate-peer-timeout x
expect 2 "option '--migrate-peer-timeout' needs a value" --migrate-peer-timeout
expect 2 "option '--migrate-mirror': 'never' is not auto, always or throttle" --migrate-mirror never
expect 2 "option '--migrate-postcopy-rate': '2mbit' is not 0 (no limit) or a rate from 1K to 1T" \
	--migrate-postcopy-rate 2mbit
expect 2 "option '--migrate-postcopy-rate': '100' is not 0 (no limit)" --migrate-po=100
expect 2 "option '--migrate-postcopy-rate' needs a value" --migrate-postcopy-rate
expect 2 "unknown option '--bogus'" --bogus
expect 2 "unknown option '--bogus'" --bogus=1
expect 2 "unknown option '-x'" -x
expect 2 "option '--con' is ambiguous: --config, --connections" --con 2
expect 2 "option '--config' needs a value" --config
expect 2 "option '-c' needs a value" -c
expect 2 "option '--foreground' takes no value" --fore=yes
expect 2 "unexpected argument 'extra'" --foreground extra
expect 0 "usage: remote-cowd" --he
expect 0 "remote-cowd " --vers
echo "1..$n"
[ $failed -eq 0 ] || echo "# $failed of $n failed"
[ $failed -eq 0 ]
