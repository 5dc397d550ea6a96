# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Helpers of the snapshot commit selftests (commit-*.sh): commit targets
# served from the server's network namespace, the published version read
# back over NBD, the commit's status fields, extents written with known
# data, and the kernel's commit sets read through rcow-nl.  Source it after
# lib.sh and lib-net.sh:
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/lib-net.sh"
#   . "$(dirname "$0")/lib-commit.sh"
#
# A target is any writable NBD export in the namespace: qemu-nbd serving a
# qcow2 overlay whose backing file is the base (target_overlay), or nbdkit
# serving a raw copy of the base (target_file).  The published version is
# then read through a read-only qemu-nbd of the same file (published_sha256).
#
# Assumed of the kernel (Documentation/remote-cow.rst): the status line has
# commit_state (idle|uploading|done|failed), commit_done/commit_total and
# commit_gen; "snapshot commit <uri> [since-last]" and "snapshot abort";
# RCOW_BITMAP_COMMIT_UPLOAD (16) and RCOW_BITMAP_COMMIT_HELD (17) readable
# with GET_RUNS.  Of remote-cowd: the configuration key commit_retry_timeout
# (seconds).

RC=${RC:-$RC_TREE/tools/remote-cow}
NL=${NL:-$RC_TREE/selftests/progs/rcow-nl}
TARGET_PORT=${TARGET_PORT:-10810}	# the commit target's port
PUBLISHED_PORT=${PUBLISHED_PORT:-10811}	# read-only view of a published version

# shellcheck disable=SC2034	# for the tests
RCOW_BITMAP_COMMIT_UPLOAD=16
# shellcheck disable=SC2034	# for the tests
RCOW_BITMAP_COMMIT_HELD=17

# require_commit_env: the tools every commit test needs, and remote-cowd
# (the test helper rcow-fill uploads nothing: the test is skipped).
require_commit_env() {
	require_cmd dmsetup losetup nbdkit nbdinfo nbdcopy qemu-nbd qemu-img ip tc openssl python3
	require_built "$RC" "$NL"
	helper_is_daemon || tap_skip_all "needs remote-cowd to upload; the helper is $(helper_name)"
}

# commit_config <file> [key = value lines...]: a remote-cowd configuration
# file with the given lines (for commit_retry_timeout).
commit_config() {
	local f=$1
	shift
	printf '%s\n' "$@" >"$f"
}

# ---------------------------------------------------------------------------
# Targets in the namespace
# ---------------------------------------------------------------------------

TARGET_PID=
TARGET_URI=
_target_cmd=()

# target_start: (re)start the target last given to target_overlay or
# target_file; waits until it answers (10 s).
target_start() {
	local i
	ip netns exec "$NET_NS" "${_target_cmd[@]}" >>"$NET_WORKDIR/target.log" 2>&1 &
	TARGET_PID=$!
	at_exit "net_server_kill $TARGET_PID"
	for ((i = 0; i < 100; i++)); do
		timeout 5 nbdinfo --size "$TARGET_URI" >/dev/null 2>&1 && return 0
		kill -0 "$TARGET_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "target_start: ${_target_cmd[*]} does not answer at $TARGET_URI" >&2
	cat "$NET_WORKDIR/target.log" >&2
	return 1
}

# target_stop: stop the target cleanly (SIGTERM: qemu-nbd flushes and
# closes the qcow2 image), SIGKILL after 10 s.
target_stop() {
	[ -n "$TARGET_PID" ] || return 0
	helper_stop_pid "$TARGET_PID"
	TARGET_PID=
}

# target_kill: SIGKILL the target (the server goes away at once).
target_kill() {
	[ -n "$TARGET_PID" ] || return 0
	net_server_kill "$TARGET_PID"
	TARGET_PID=
}

# target_overlay <qcow2 file> <backing file> <backing format> <export> [qemu-nbd args...]:
# create the overlay (qemu-img create -b) and serve it writable with
# qemu-nbd on $TARGET_PORT; its URI in TARGET_URI.
target_overlay() {
	local f=$1 backing=$2 fmt=$3 export=$4
	shift 4
	rm -f "$f"
	qemu-img create -q -f qcow2 -b "$backing" -F "$fmt" "$f" || return 1
	TARGET_URI="nbd://$NET_SRV_IP:$TARGET_PORT/$export"
	_target_cmd=(qemu-nbd -f qcow2 --persistent --shared=16 -b "$NET_SRV_IP" -p "$TARGET_PORT"
		-x "$export" "$@" "$f")
	target_start
}

# target_file <raw file> <export> [nbdkit args...]: serve the file writable
# with nbdkit's file plugin on $TARGET_PORT; its URI in TARGET_URI.
target_file() {
	local f=$1 export=$2
	shift 2
	TARGET_URI="nbd://$NET_SRV_IP:$TARGET_PORT/$export"
	_target_cmd=(nbdkit -f -i "$NET_SRV_IP" -p "$TARGET_PORT" -e "$export" --threads 16 "$@"
		file "$f")
	target_start
}

# published_sha256 <file> <format> [bytes]: sha256 of the image as a
# read-only qemu-nbd in the namespace serves it (a qcow2 overlay through its
# backing chain), read over NBD with nbdcopy; the first <bytes> only when
# given.  The target must be stopped first (qemu-nbd locks the image).
published_sha256() {
	local f=$1 fmt=$2 uri="nbd://$NET_SRV_IP:$PUBLISHED_PORT/published" pid i sum
	ip netns exec "$NET_NS" qemu-nbd -r -f "$fmt" --persistent --shared=4 -b "$NET_SRV_IP" \
		-p "$PUBLISHED_PORT" -x published "$f" >>"$NET_WORKDIR/published.log" 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		timeout 5 nbdinfo --size "$uri" >/dev/null 2>&1 && break
		sleep 0.1
	done
	if [ -n "${3:-}" ]; then
		sum=$(timeout 300 nbdcopy "$uri" - | head -c "$3" | sha256sum)
	else
		sum=$(timeout 300 nbdcopy "$uri" - | sha256sum)
	fi
	net_server_kill "$pid"
	echo "${sum%% *}"
}

# ---------------------------------------------------------------------------
# The commit's status
# ---------------------------------------------------------------------------

commit_state() { rc_status "$1" commit_state; }
commit_done() { rc_status "$1" commit_done; }
commit_total() { rc_status "$1" commit_total; }
commit_gen() { rc_status "$1" commit_gen; }

# commit_ended <name>: the commit state is done or failed.
commit_ended() {
	case $(commit_state "$1") in
	done | failed) return 0 ;;
	esac
	return 1
}

# commit_progress_at_least <name> <extents>: uploading, at least that many
# extents uploaded.
commit_progress_at_least() {
	[ "$(commit_state "$1")" = uploading ] && [ "$(commit_done "$1")" -ge "$2" ]
}

# commit_status_diag <name>: the status line and the CLI's view, as a
# diagnostic.
commit_status_diag() {
	tap_diag "status: $(dmsetup status "$1" 2>&1)"
}

# ---------------------------------------------------------------------------
# Extents with known data
# ---------------------------------------------------------------------------

# Extent e's data for a seed is bytes e * extent .. (e + 1) * extent - 1 of
# image_data "<seed>": the same whichever extents are written together.

# write_extents <device> <extent bytes> <seed> <first> <count>: direct
# whole-extent writes of their data, in one dd (one process per extent is
# too slow under emulation).
write_extents() {
	local dev=$1 eb=$2 seed=$3 first=$4 n=$5
	image_data "$seed" $(((first + n) * eb)) | tail -c +$((first * eb + 1)) |
		dd of="$dev" bs="$eb" seek="$first" count="$n" oflag=direct conv=notrunc \
			iflag=fullblock status=none
}

# zero_extents <device> <extent bytes> <first> <count>: direct writes of
# zeroes (data that happens to be zero: not a discard).
zero_extents() {
	dd if=/dev/zero of="$1" bs="$2" seek="$3" count="$4" oflag=direct conv=notrunc status=none
}

# extent_is <device> <extent bytes> <extent> <seed>: the extent holds its
# data for the seed (see write_extents).
extent_is() {
	cmp -s <(dd if="$1" bs="$2" skip="$3" count=1 iflag=direct status=none) \
		<(image_data "$4" $((($3 + 1) * $2)) | tail -c "$2")
}

# ---------------------------------------------------------------------------
# The kernel's commit sets (rcow-nl)
# ---------------------------------------------------------------------------

# rc_dev_id <name>: the device's netlink id.
rc_dev_id() {
	"$NL" devices 2>/dev/null | grep " name=$1 " | sed -n 's/^dev_id=\([0-9]*\) .*/\1/p'
}

# set_extents <name> <bitmap>: the extents set in a bitmap, one a line
# (from GET_RUNS; 16 is the commit's still-to-upload set, 17 its held set).
set_extents() {
	local id
	id=$(rc_dev_id "$1") || return 1
	[ -n "$id" ] || return 1
	"$NL" runs "$id" "$2" | awk -F+ '{ for (i = 0; i < $2; i++) print $1 + i }'
}

# bg_write_extent <device> <extent bytes> <seed> <extent>: write_extents of
# one extent in the background, its pid in BG_WRITE_PID.  The process may
# block in the kernel (a held write): never 'wait' on it before it ended
# (bg_ended).
BG_WRITE_PID=
bg_write_extent() {
	write_extents "$1" "$2" "$3" "$4" 1 &
	# shellcheck disable=SC2034	# for the tests
	BG_WRITE_PID=$!
}

# bg_ended <pid> <seconds>: poll until the background job ended (then its
# exit status), or 124 after the time without waiting for it: a job stuck
# in the kernel cannot be reaped.
bg_ended() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$1" 2>/dev/null && return 124
	wait "$1"
}

# release_held_writes <name>: abort any commit of the device, which lets
# writes held on its frozen extents go on (a cleanup, so that a failing test
# does not leave processes stuck in the kernel).
release_held_writes() {
	dmsetup message "$1" 0 snapshot abort >/dev/null 2>&1
	return 0
}
