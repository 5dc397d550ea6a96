# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Helpers for the dm-remote-cow selftests (source it from a test):
#
#   . "$(dirname "$0")/lib.sh"
#   tap_plan 3
#   check "module loads" modprobe dm-remote-cow
#   ...
#   tap_done
#
# Output is TAP version 13 (kselftest style).  Exit status: 0 all passed,
# 1 something failed, 4 (KSFT_SKIP) everything skipped.  The tests run as
# root inside the test VM (scripts/vm-run.sh); they refuse to run elsewhere.

set -uo pipefail

SELFTESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RC_TREE=${RC_TREE:-$(cd "$SELFTESTS_DIR/.." && pwd)}
TEST_NAME=$(basename "$0" .sh)
export DM_DISABLE_UDEV=1

RC_MODULE=dm-remote-cow		# modprobe name
RC_MODULE_SYS=dm_remote_cow	# name in /proc/modules
RC_TARGET=remote-cow		# device-mapper target name

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

_tap_n=0
_tap_failed=0
_tap_skipped=0
_tap_planned=

# ---------------------------------------------------------------------------
# TAP output
# ---------------------------------------------------------------------------

tap_plan() {	# tap_plan <number of tests>
	_tap_planned=$1
	echo "TAP version 13"
	echo "1..$1"
}

tap_diag() {	# tap_diag <text...>: each line as a "# " comment
	local line
	printf '%s\n' "$*" | while IFS= read -r line; do
		printf '# %s\n' "$line"
	done
}

tap_ok() {
	_tap_n=$((_tap_n + 1))
	echo "ok $_tap_n - $1"
}

tap_not_ok() {	# tap_not_ok <desc> [diagnostic...]
	local desc=$1
	shift
	_tap_n=$((_tap_n + 1))
	_tap_failed=$((_tap_failed + 1))
	echo "not ok $_tap_n - $desc"
	[ $# -eq 0 ] || tap_diag "$*"
}

tap_skip() {	# tap_skip <desc> <reason>
	_tap_n=$((_tap_n + 1))
	_tap_skipped=$((_tap_skipped + 1))
	echo "ok $_tap_n - $1 # SKIP ${2:-}"
}

tap_skip_all() {	# the whole test cannot run here
	[ -n "$_tap_planned" ] || echo "TAP version 13"
	echo "1..0 # SKIP $*"
	_tap_planned=0
	exit "$KSFT_SKIP"
}

tap_bail() {	# stop the test: something it depends on is broken
	echo "Bail out! $*"
	exit "$KSFT_FAIL"
}

# Print the totals and exit with the kselftest status.  Cleanups registered
# with at_exit run from the EXIT trap afterwards.
tap_done() {
	if [ -n "$_tap_planned" ] && [ "$_tap_n" -ne "$_tap_planned" ]; then
		tap_diag "planned $_tap_planned tests but ran $_tap_n"
		_tap_failed=$((_tap_failed + 1))
	fi
	tap_diag "$TEST_NAME: $((_tap_n - _tap_failed - _tap_skipped)) passed," \
		"$_tap_failed failed, $_tap_skipped skipped"
	if [ "$_tap_failed" -gt 0 ]; then
		exit "$KSFT_FAIL"
	elif [ "$_tap_n" -gt 0 ] && [ "$_tap_skipped" -eq "$_tap_n" ]; then
		exit "$KSFT_SKIP"
	fi
	exit "$KSFT_PASS"
}

# check <desc> <command...>: one test, passed when the command succeeds; its
# output is shown as a diagnostic when it fails.
check() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		tap_ok "$desc"
	else
		tap_not_ok "$desc" "command: $*" "exit: $rc" "${out:+output: $out}"
	fi
	return "$rc"
}

# check_fails <desc> <command...>: passed when the command fails.
check_fails() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ]; then
		tap_ok "$desc"
		return 0
	fi
	tap_not_ok "$desc" "command succeeded but should have failed: $*" \
		"${out:+output: $out}"
	return 1
}

# check_eq <desc> <expected> <actual>
check_eq() {
	if [ "$2" = "$3" ]; then
		tap_ok "$1"
	else
		tap_not_ok "$1" "expected: '$2'" "actual:   '$3'"
		return 1
	fi
}

# ---------------------------------------------------------------------------
# Environment and cleanup
# ---------------------------------------------------------------------------

# Registered cleanups run in reverse order when the test exits (however).
_cleanups=()
at_exit() {	# at_exit <shell command string>
	_cleanups+=("$1")
}
_run_cleanups() {
	local i
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[$i]}" >/dev/null 2>&1 || true
	done
	_cleanups=()
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

require_vm() {	# the selftests load modules and create devices: VM only
	[ "${RC_VM:-0}" = 1 ] ||
		tap_skip_all "runs only inside the test VM (make vm-test T=$TEST_NAME)"
	[ "$(id -u)" -eq 0 ] || tap_skip_all "needs root"
}

# A test whose tool or kernel module is missing FAILS (Bail out!), it never
# skips: a skipped test looks like a passed one in a long run, and every
# tool and module the tests use is installed by scripts/install-deps.sh or
# is in Debian's kernel.  Skips are only for variants that do not apply
# (e.g. helper_is_daemon) and for running outside the VM.

require_cmd() {	# require_cmd <program...>: installed tools
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 ||
			tap_bail "missing tool: $c is not installed (scripts/install-deps.sh)"
	done
}

require_built() {	# require_built <file...>: programs of this tree, built by make
	local f
	for f in "$@"; do
		[ -x "$f" ] || tap_bail "missing program: $f is not built (make)"
	done
}

# require_module <module...>: kernel modules that must load (modprobe).
require_module() {
	local m out
	for m in "$@"; do
		out=$(modprobe "$m" 2>&1) ||
			tap_bail "missing kernel module: modprobe $m failed${out:+: $out}"
	done
}

# require_dm_target <target> [module]: a device-mapper target, loading its
# module (dm-<target> by default) when it is not registered yet.
require_dm_target() {
	local t=$1 m=${2:-dm-$1} out
	dmsetup targets 2>/dev/null | grep -q "^$t " && return 0
	out=$(modprobe "$m" 2>&1) ||
		tap_bail "missing kernel module: modprobe $m (device-mapper target $t) failed${out:+: $out}"
	dmsetup targets 2>/dev/null | grep -q "^$t " ||
		tap_bail "missing device-mapper target: $t is not registered after modprobe $m"
}

# A scratch directory on the VM's tmpfs, removed at exit.
RC_TMP=
test_tmpdir() {
	if [ -z "$RC_TMP" ]; then
		RC_TMP=$(mktemp -d "/tmp/rcow-$TEST_NAME.XXXXXX")
		at_exit "rm -rf '$RC_TMP'"
	fi
	printf '%s\n' "$RC_TMP"
}

# ---------------------------------------------------------------------------
# Module
# ---------------------------------------------------------------------------

module_loaded() {
	grep -q "^$RC_MODULE_SYS " /proc/modules
}

# Load dm-remote-cow (modprobe, which pulls in dm-mod and dm-bufio); falls
# back to insmod of the tree's build.  RC_KO names another .ko to insmod
# instead (a benchmark comparing two builds of the module in one VM run).
load_module() {
	module_loaded && return 0
	if [ -n "${RC_KO:-}" ]; then
		modprobe dm-bufio && insmod "$RC_KO"
		return
	fi
	modprobe "$RC_MODULE" 2>/dev/null && return 0
	modprobe dm-bufio &&
		insmod "$RC_TREE/dm-remote-cow/$RC_MODULE.ko"
}

unload_module() {
	module_loaded || return 0
	rmmod "$RC_MODULE_SYS"
}

# ---------------------------------------------------------------------------
# Block devices and images
# ---------------------------------------------------------------------------

# make_sparse <file> <bytes>: a sparse (zeroed) file.
make_sparse() {
	rm -f "$1" && truncate -s "$2" "$1"
}

# make_loop <file>: attach a loop device (direct I/O off: tmpfs), print it.
make_loop() {
	local dev
	[ -e /dev/loop-control ] || modprobe loop || return 1
	dev=$(losetup -f --show "$1") || return 1
	at_exit "losetup -d '$dev'"
	printf '%s\n' "$dev"
}

# make_zero_loop <bytes>: a zeroed sparse file on a loop device, printed.
make_zero_loop() {
	local f
	f=$(mktemp "$(test_tmpdir)/zero.XXXXXX") || return 1
	make_sparse "$f" "$1" && make_loop "$f"
}

# image_data <seed> <bytes>: deterministic pseudo-random bytes on stdout
# (AES-256-CTR keystream keyed by the seed): same seed, same data.
image_data() {
	local key
	key=$(printf 'dm-remote-cow:%s' "$1" | sha256sum | cut -c1-64)
	# openssl dies of SIGPIPE when head has enough: not an error.
	{ openssl enc -aes-256-ctr -nosalt -K "$key" \
		-iv 00000000000000000000000000000000 </dev/zero 2>/dev/null || :; } |
		head -c "$2"
}

# make_base_image <file> <bytes> <seed>: write the image, print its sha256.
make_base_image() {
	image_data "$3" "$2" >"$1" || return 1
	[ "$(stat -c %s "$1")" -eq "$2" ] || return 1
	sha256_of "$1"
}

# sha256_of <file or device> [bytes]: sha256 of the first <bytes> (all).
sha256_of() {
	if [ -n "${2:-}" ]; then
		head -c "$2" "$1" | sha256sum | cut -d' ' -f1
	else
		sha256sum <"$1" | cut -d' ' -f1
	fi
}

# dev_sectors <block device>
dev_sectors() {
	blockdev --getsz "$1"
}

# ---------------------------------------------------------------------------
# Device-mapper
# ---------------------------------------------------------------------------

dm_exists() {
	dmsetup info "$1" >/dev/null 2>&1
}

# dm_create <name> <table>: create the device (removed at exit).
dm_create() {
	dmsetup create "$1" --table "$2" || return 1
	at_exit "dm_remove '$1'"
}

# dm_remove <name>: remove if present (retrying while it is still open).
dm_remove() {
	dm_exists "$1" || return 0
	dmsetup remove --retry "$1"
}

# dm_status_field <name> <n>: the n-th field of the target's status line
# (after "<start> <length> <target>").
dm_status_field() {
	dmsetup status "$1" | awk -v n="$2" '{ print $(n + 3) }'
}

# rc_status <name> <key>: one field of a remote-cow status line, by name, in
# the layout with commit_gen (12 fields) or the one before it (11):
#   extent_sectors present total written faults helper commit_state
#   commit_done commit_total commit_gen migrate_state migrate_done
#   migrate_total hydrate_state mode
# (commit_gen is 0 in the old layout).  Empty for an unknown key.
rc_status() {
	dmsetup status "$1" | awk -v k="$2" '
	{
		n = NF - 3
		f["extent_sectors"] = $4
		split($5, a, "/"); f["present"] = a[1]; f["total"] = a[2]
		f["written"] = $6; f["faults"] = $7; f["helper"] = $8
		f["commit_state"] = $9
		split($10, a, "/"); f["commit_done"] = a[1]; f["commit_total"] = a[2]
		o = 0; f["commit_gen"] = 0
		if (n >= 12) { f["commit_gen"] = $11; o = 1 }
		f["migrate_state"] = $(11 + o)
		split($(12 + o), a, "/"); f["migrate_done"] = a[1]; f["migrate_total"] = a[2]
		f["hydrate_state"] = $(13 + o)
		f["mode"] = $NF
		print f[k]
	}'
}

# rc_table <length> <cow_dev> <extent_sectors> <base_uri> [opt args...]
rc_table() {
	local len=$1 cow=$2 ext=$3 uri=$4
	shift 4
	if [ $# -gt 0 ]; then
		echo "0 $len $RC_TARGET $cow $ext $uri $# $*"
	else
		echo "0 $len $RC_TARGET $cow $ext $uri"
	fi
}

# nl_refused <desc> <ENAME> <rcow-nl args...>: one test, passed when the
# kernel refuses the request (selftests/progs/rcow-nl exits 1) with that
# errno.
nl_refused() {
	local desc=$1 err=$2 out rc
	shift 2
	out=$("$RC_TREE/selftests/progs/rcow-nl" "$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 1 ] && [[ $out == "error: $err "* ]]; then
		tap_ok "$desc ($err)"
	else
		tap_not_ok "$desc ($err)" "command: rcow-nl $*" "exit $rc: $out"
	fi
}

# msg_ok <desc> <message words...>: dmsetup message to $NAME is accepted.
msg_ok() {
	local desc=$1
	shift
	check "$desc" dmsetup message "$NAME" 0 "$@"
}

# msg_refused <desc> <errno text> <kernel log text> <message words...>:
# dmsetup message to $NAME fails with that error and the kernel log has
# the text.
msg_refused() {
	local desc=$1 err=$2 klog=$3 out rc
	shift 3
	kmsg_mark
	out=$(dmsetup message -- "$NAME" 0 "$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		tap_not_ok "$desc" "message accepted: $*"
	elif [[ $out != *"$err"* ]]; then
		tap_not_ok "$desc" "expected '$err' from dmsetup, got: $out"
	elif ! dmesg_since_mark | grep -qF -- "$klog"; then
		tap_not_ok "$desc" "no kernel log line with: $klog" "$(dmesg_since_mark)"
	else
		tap_ok "$desc"
	fi
}

# nl_dev_id <dm name>: the device's netlink id (rcow-nl devices).
nl_dev_id() {
	"$RC_TREE/selftests/progs/rcow-nl" devices 2>/dev/null |
		sed -n "s/^dev_id=\([0-9]*\) name=$1 .*/\1/p"
}
# nl_runs <dev_id> <bitmap>: its runs on one line, "FIRST+COUNT ...".
nl_runs() {
	"$RC_TREE/selftests/progs/rcow-nl" runs "$1" "$2" 2>&1 | tr '\n' ' ' | sed 's/ $//'
}
# dm_events <dm name>: the device's dm event counter.
dm_events() { dmsetup info -c --noheadings -o events "$1" | tr -d ' '; }
# bytes_of <bytes> <byte>: that many bytes of one value (0-255), on stdout.
bytes_of() { head -c "$1" /dev/zero | tr '\0' "\\$(printf '%03o' "$2")"; }
# write_byte_extent <dev> <extent bytes> <extent> <byte>: one whole extent
# of that byte, written direct.
write_byte_extent() {
	bytes_of "$2" "$4" |
		dd of="$1" bs="$2" seek="$3" iflag=fullblock oflag=direct status=none
}

# nl_session_start: a helper that is an "rcow-nl session" coprocess, all
# its commands on one socket (sess register makes it the helper).
nl_session_start() {
	coproc NLS { "$RC_TREE/selftests/progs/rcow-nl" session 2>&1; }
	at_exit "kill $NLS_PID 2>/dev/null"
}
# nl_session_stop: end the session (the helper's socket closes) and reap it.
nl_session_stop() {
	local pid=${NLS_PID:-}
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}
# nl_session_helper <dm name>: nl_session_start, then one test: the session
# registers as the helper and <dm name> shows it connected.
nl_session_helper() {
	nl_session_start
	sess register
	check_eq "the session registers as the helper" "0 connected" \
		"$SESS_RC $(dm_status_field "$1" 5)"
}
# sess <command...>: one command in the session; its output in SESS_OUT,
# its exit status (0 accepted, 1 refused) in SESS_RC.
sess() {
	local line
	SESS_OUT=
	SESS_RC=timeout
	echo "$*" >&"${NLS[1]}"
	while IFS= read -r -t 30 line <&"${NLS[0]}"; do
		case $line in
		"= "*) SESS_RC=${line#= }; return 0 ;;
		*) SESS_OUT+=${SESS_OUT:+$'\n'}$line ;;
		esac
	done
}
# sess_refused <desc> <ENAME> <command...>: refused by the kernel with it.
sess_refused() {
	local desc=$1 err=$2
	shift 2
	sess "$@"
	if [ "$SESS_RC" = 1 ] && [[ $SESS_OUT == *"error: $err "* ]]; then
		tap_ok "$desc ($err)"
	else
		tap_not_ok "$desc ($err)" "session: $*" "status $SESS_RC: $SESS_OUT"
	fi
}

# ---------------------------------------------------------------------------
# Kernel log
# ---------------------------------------------------------------------------

_kmsg_seq=0
_kmsg_mark=
# kmsg_mark: put a marker into the kernel log; dmesg_since_mark and
# expect_dmesg look only at what comes after the latest one.
kmsg_mark() {
	_kmsg_seq=$((_kmsg_seq + 1))
	_kmsg_mark="rcow-selftest: mark $TEST_NAME $$ $_kmsg_seq"
	echo "$_kmsg_mark" >/dev/kmsg
}

dmesg_since_mark() {
	if [ -z "$_kmsg_mark" ]; then
		dmesg
	else
		dmesg | awk -v m="$_kmsg_mark" 'found { print } index($0, m) { found = 1 }'
	fi
}

# expect_dmesg <desc> <extended regex>: one test, passed when a kernel log
# line since the last kmsg_mark matches.
expect_dmesg() {
	local log
	log=$(dmesg_since_mark)
	if grep -qE -- "$2" <<<"$log"; then
		tap_ok "$1"
	else
		tap_not_ok "$1" "no kernel log line matches: $2" "log since mark:" "$log"
		return 1
	fi
}

# expect_no_dmesg <desc> <extended regex>: passed when no line matches.
expect_no_dmesg() {
	local log
	log=$(dmesg_since_mark)
	if grep -qE -- "$2" <<<"$log"; then
		tap_not_ok "$1" "unexpected kernel log lines:" "$(grep -E -- "$2" <<<"$log")"
		return 1
	fi
	tap_ok "$1"
}
