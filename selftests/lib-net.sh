# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# A "remote host" for the dm-remote-cow selftests, the demo and the NBD
# benchmark, inside the test VM: a network namespace behind a veth pair,
# an NBD server (nbdkit or qemu-nbd) running in it, tc netem shaping of the
# link, link down/up, server kill/restart and the byte counters of the
# link.  Source it after lib.sh (it uses at_exit for every cleanup):
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/lib-net.sh"
#   net_setup                       # namespace + veth, removed at exit
#   net_shape 20ms 100mbit          # netem on both directions
#   net_serve "$base"               # nbdkit file plugin in the namespace
#   uri=$(net_uri)                  # nbd://10.99.0.2:10809/base
#   helper_start                    # remote-cowd, else rcow-fill
#
# It also has the usual setup steps of a test, one call each, that bail out
# when they fail (net_test_setup, net_serve_base, net_test_device,
# test_base_image, file_test_device), and checks of background reads.
#
# The addresses (10.99.0.0/24) exist only in the VM's private namespaces;
# nothing here touches any other interface.
#
# The helper that answers faults is $RCOW_HELPER: the daemon
# userspace/remote-cowd (built by make; a test whose helper is not built
# fails), or whatever RCOW_HELPER=<path> names, e.g. the selftests'
# rcow-fill to run the tests that apply to it.

NET_NS=${NET_NS:-rcow-srv}		# the server's network namespace
NET_HOST_IF=${NET_HOST_IF:-rcow-h0}	# veth end in the root namespace
NET_SRV_IF=${NET_SRV_IF:-rcow-s0}	# veth end in $NET_NS
NET_HOST_IP=10.99.0.1
NET_SRV_IP=10.99.0.2
NET_PORT=${NET_PORT:-10809}
NET_EXPORT=${NET_EXPORT:-base}
NET_SERVER=${NET_SERVER:-nbdkit}	# nbdkit | qemu-nbd

_RC_TREE_NET=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

# ---------------------------------------------------------------------------
# The helper: one line to switch.  remote-cowd unless RCOW_HELPER says
# otherwise; never a silent fallback to rcow-fill when it is not built.
# ---------------------------------------------------------------------------
RCOW_HELPER=${RCOW_HELPER:-$_RC_TREE_NET/userspace/remote-cowd}

HELPER_PID=
HELPER_STATS=
HELPER_LOG=
HELPER_READY=
_helper_n=0

helper_name() { basename "$RCOW_HELPER"; }

# helper_is_daemon: true when the helper is remote-cowd (retries, prefetch,
# streaming), false for the synchronous test helper rcow-fill.
helper_is_daemon() {
	[ "$(helper_name)" = remote-cowd ]
}

# helper_start [extra args...]: start the helper in the background with
# --ready and --stats files in the scratch directory; waits until it is
# ready (10 s).  Sets HELPER_PID, HELPER_STATS, HELPER_LOG.  Stopped at exit.
helper_start() {
	local dir i args=()
	if [ ! -x "$RCOW_HELPER" ]; then
		echo "helper $RCOW_HELPER is not built (make)" >&2
		return 1
	fi
	dir=${NET_WORKDIR:-$(test_tmpdir)}
	_helper_n=$((_helper_n + 1))
	HELPER_READY=$dir/helper.$_helper_n.ready
	HELPER_STATS=$dir/helper.$_helper_n.stats
	HELPER_LOG=$dir/helper.$_helper_n.log
	rm -f "$HELPER_READY" "$HELPER_STATS"
	helper_is_daemon && args+=(--foreground)
	args+=(--ready "$HELPER_READY" --stats "$HELPER_STATS")
	"$RCOW_HELPER" "${args[@]}" "$@" >"$HELPER_LOG" 2>&1 &
	HELPER_PID=$!
	at_exit "helper_stop_pid $HELPER_PID"
	for ((i = 0; i < 100; i++)); do
		[ -e "$HELPER_READY" ] && return 0
		kill -0 "$HELPER_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "helper $RCOW_HELPER not ready; its log:" >&2
	cat "$HELPER_LOG" >&2
	return 1
}

# helper_stop_pid <pid>: SIGTERM (the helper writes its stats), wait 10 s,
# then SIGKILL.
helper_stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

helper_stop() {	# stop the current helper (stats are then in $HELPER_STATS)
	[ -n "$HELPER_PID" ] || return 0
	helper_stop_pid "$HELPER_PID"
	HELPER_PID=
}

helper_kill() {	# SIGKILL the current helper, no stats
	[ -n "$HELPER_PID" ] || return 0
	kill -KILL "$HELPER_PID" 2>/dev/null
	wait "$HELPER_PID" 2>/dev/null
	HELPER_PID=
	return 0
}

# helper_stat <key> [file]: a counter from the helper's --stats file (0 when
# absent).
helper_stat() {
	local f=${2:-$HELPER_STATS} v
	v=$(sed -n "s/^$1=//p" "$f" 2>/dev/null | head -n1)
	echo "${v:-0}"
}

# ---------------------------------------------------------------------------
# Namespace and link
# ---------------------------------------------------------------------------

# nsx <command...>: run a command in the server's namespace.
nsx() {
	ip netns exec "$NET_NS" "$@"
}

# net_setup: the namespace and the veth pair, 10.99.0.1 (here) <->
# 10.99.0.2 (there), both up.  Torn down at exit.
net_setup() {
	modprobe veth 2>/dev/null
	modprobe sch_netem 2>/dev/null
	net_teardown
	ip netns add "$NET_NS" || return 1
	at_exit "net_teardown"
	ip link add "$NET_HOST_IF" type veth peer name "$NET_SRV_IF" || return 1
	ip link set "$NET_SRV_IF" netns "$NET_NS" || return 1
	ip addr add "$NET_HOST_IP/24" dev "$NET_HOST_IF" || return 1
	ip link set "$NET_HOST_IF" up || return 1
	nsx ip link set lo up || return 1
	nsx ip addr add "$NET_SRV_IP/24" dev "$NET_SRV_IF" || return 1
	nsx ip link set "$NET_SRV_IF" up || return 1
	# One line of each: a connectivity check that fails fast.
	ping -c1 -W2 "$NET_SRV_IP" >/dev/null 2>&1 || {
		echo "net_setup: $NET_SRV_IP does not answer" >&2
		return 1
	}
}

# net_teardown: kill every process in the namespace, delete it and the
# veth pair (deleting one end deletes both).
net_teardown() {
	local p
	if ip netns list 2>/dev/null | grep -qw "$NET_NS"; then
		for p in $(ip netns pids "$NET_NS" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null
		done
		ip netns del "$NET_NS" 2>/dev/null
	fi
	ip link del "$NET_HOST_IF" 2>/dev/null
	return 0
}

# net_shape [delay] [rate] [loss]: netem on both ends of the link, so each
# direction gets the delay, the rate and the loss ("-" leaves one out):
#   net_shape 50ms 100mbit        net_shape 20ms - 1%
net_shape() {
	local delay=${1:--} rate=${2:--} loss=${3:--} args=() limit=10000
	[ "$delay" = - ] || args+=(delay "$delay")
	[ "$rate" = - ] || args+=(rate "$rate")
	[ "$loss" = - ] || args+=(loss "$loss")
	[ ${#args[@]} -gt 0 ] || { net_unshape; return; }
	tc qdisc replace dev "$NET_HOST_IF" root netem limit "$limit" "${args[@]}" || return 1
	nsx tc qdisc replace dev "$NET_SRV_IF" root netem limit "$limit" "${args[@]}"
}

net_unshape() {	# remove the shaping
	tc qdisc del dev "$NET_HOST_IF" root 2>/dev/null
	nsx tc qdisc del dev "$NET_SRV_IF" root 2>/dev/null
	return 0
}

# net_link_down / net_link_up: the server's end of the cable.  Its routes
# go with it; TCP connections survive an outage shorter than their
# retransmission timeout, as with a pulled cable.
net_link_down() {
	nsx ip link set "$NET_SRV_IF" down
}

net_link_up() {
	nsx ip link set "$NET_SRV_IF" up || return 1
	nsx ip route replace 10.99.0.0/24 dev "$NET_SRV_IF" src "$NET_SRV_IP" 2>/dev/null
	return 0
}

# net_bytes [rx|tx|all]: bytes the root namespace's end of the link
# received (rx: data from the server), sent (tx) or both (default).
net_bytes() {
	local s=/sys/class/net/$NET_HOST_IF/statistics rx tx
	rx=$(cat "$s/rx_bytes") || return 1
	tx=$(cat "$s/tx_bytes") || return 1
	case ${1:-all} in
	rx) echo "$rx" ;;
	tx) echo "$tx" ;;
	*) echo $((rx + tx)) ;;
	esac
}

# ---------------------------------------------------------------------------
# NBD server in the namespace
# ---------------------------------------------------------------------------

NET_SERVER_PID=
_net_server_cmd=()

# net_serve <image file> | net_serve --plugin <nbdkit plugin args...>:
# start the NBD server (read-only) in the namespace on $NET_PORT and wait
# until it answers.  $NET_SERVER picks nbdkit (file plugin, which reports
# holes through base:allocation) or qemu-nbd (raw, export $NET_EXPORT).
# Killed at exit.
net_serve() {
	local cmd=()
	if [ "$1" = --plugin ]; then
		shift
		cmd=(nbdkit -f -r -i "$NET_SRV_IP" -p "$NET_PORT" -e "$NET_EXPORT" --threads 16 "$@")
	elif [ "$NET_SERVER" = qemu-nbd ]; then
		cmd=(qemu-nbd -f raw -r --persistent --shared=16 -b "$NET_SRV_IP" -p "$NET_PORT"
			-x "$NET_EXPORT" "$1")
	else
		cmd=(nbdkit -f -r -i "$NET_SRV_IP" -p "$NET_PORT" -e "$NET_EXPORT" --threads 16
			file "$1")
	fi
	_net_server_cmd=("${cmd[@]}")
	net_server_start
}

# net_server_start: (re)start the server last given to net_serve.
net_server_start() {
	local i
	# Not through nsx: $! must be the server itself (ip netns exec execs it).
	ip netns exec "$NET_NS" "${_net_server_cmd[@]}" \
		>>"${NET_WORKDIR:-$(test_tmpdir)}/nbd-server.log" 2>&1 &
	NET_SERVER_PID=$!
	at_exit "net_server_kill $NET_SERVER_PID"
	for ((i = 0; i < 100; i++)); do
		net_server_answers && return 0
		kill -0 "$NET_SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "net_server_start: ${_net_server_cmd[*]} does not answer" >&2
	nsx ss -tanp >&2
	ss -tanp >&2
	cat "${NET_WORKDIR:-$(test_tmpdir)}/nbd-server.log" >&2
	return 1
}

# net_server_answers: the export answers a size query (within 5 s), asked
# at $NET_ANSWER_URI when set (a server that needs TLS), else $(net_uri).
net_server_answers() {
	timeout 5 nbdinfo --size "${NET_ANSWER_URI:-$(net_uri)}" >/dev/null 2>&1
}

# net_server_kill [pid]: SIGKILL the server (the current one by default),
# which drops its connections.
net_server_kill() {
	local pid=${1:-$NET_SERVER_PID}
	[ -n "$pid" ] || return 0
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	[ "$pid" != "$NET_SERVER_PID" ] || NET_SERVER_PID=
	return 0
}

# net_uri: the base URI of the export, as a remote-cow table takes it.
net_uri() {
	echo "nbd://$NET_SRV_IP:$NET_PORT/$NET_EXPORT"
}

# ---------------------------------------------------------------------------
# Waiting and background reads
# ---------------------------------------------------------------------------

# wait_until <seconds> <command...>: poll every 0.1 s until the command
# succeeds; false on timeout.
wait_until() {
	local limit=$(($1 * 10)) i
	shift
	for ((i = 0; i < limit; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}

# wait_pid <pid> <seconds>: wait for a background job; its exit status, or
# 124 (and the job killed) on timeout.
wait_pid() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		kill -KILL "$1" 2>/dev/null
		wait "$1" 2>/dev/null
		return 124
	fi
	wait "$1"
}

# present_extents <dm name>: the <present> of the status line.
present_extents() {
	dm_status_field "$1" 2 | cut -d/ -f1
}

# present_at_least <dm name> <extents>: that many extents are present.
present_at_least() {
	[ "$(present_extents "$1")" -ge "$2" ]
}

# bg_sha256 <device> <out file>: sha256 of the whole device, read with
# O_DIRECT in 1 MiB requests, in the background (BG_PID); the sum lands in
# <out file> (BG_SUM_FILE) only when the read succeeded.
BG_PID=
BG_SUM_FILE=
bg_sha256() {
	rm -f "$2"
	BG_SUM_FILE=$2
	(
		sum=$(dd if="$1" bs=1M iflag=direct status=none | sha256sum) || exit 1
		echo "${sum%% *}" >"$2"
	) &
	BG_PID=$!
	at_exit "kill -KILL $BG_PID"
}

# net_tmpdir: the test's scratch directory, made in this shell (so its
# removal is registered here), in NET_WORKDIR.
net_tmpdir() {
	test_tmpdir >/dev/null
	NET_WORKDIR=$RC_TMP
}

# make_cow <bytes>: a zeroed sparse file on a loop device, in COW_DEV;
# detached at exit.  (Not a command substitution, so the cleanup is
# registered in the test's shell.)
COW_DEV=
make_cow() {
	local f
	f=$(mktemp "${NET_WORKDIR:?net_tmpdir first}/cow.XXXXXX") || return 1
	truncate -s "$1" "$f" || return 1
	[ -e /dev/loop-control ] || modprobe loop || return 1
	COW_DEV=$(losetup -f --show "$f") || return 1
	at_exit "losetup -d '$COW_DEV'"
}

# slow_cow_data <dm name> <device bytes> <extent bytes> <delay ms>: a COW
# loop device (make_cow, the device's bytes + 4 MiB) whose data area is
# behind dm-delay, every write held <delay ms>, its metadata area, reads
# and flushes at once; /dev/mapper/<dm name> in SLOW_COW, removed at exit.
SLOW_COW=
slow_cow_data() {
	local sectors data_off
	make_cow $(($2 + (4 << 20))) || return 1
	sectors=$(blockdev --getsz "$COW_DEV") || return 1
	data_off=$("$RC_TREE/tools/remote-cow" cow-size --size "$2" --extent-size "$3" \
		--verbose | sed -n 's/^data offset: *\([0-9]*\) sectors$/\1/p')
	[ -n "$data_off" ] || return 1
	at_exit "dm_remove $1"
	printf '%s\n' "0 $data_off linear $COW_DEV 0" \
		"$data_off $((sectors - data_off)) delay $COW_DEV $data_off 0 $COW_DEV $data_off $4 $COW_DEV $data_off 0" |
		dmsetup create "$1" || return 1
	# shellcheck disable=SC2034	# for the tests
	SLOW_COW=/dev/mapper/$1
}

# check_read_under_way <dm name> <extents>: start a bg_sha256 of the whole
# device (into $NET_WORKDIR/sum), then one test: at least <extents> extents
# are present within 60 s and the read still runs.
check_read_under_way() {
	bg_sha256 "/dev/mapper/$1" "${NET_WORKDIR:?net_tmpdir first}/sum"
	if wait_until 60 present_at_least "$1" "$2" && kill -0 "$BG_PID" 2>/dev/null; then
		tap_ok "the read is under way ($(dm_status_field "$1" 2) present)"
	else
		tap_not_ok "the read is under way" "status: $(dmsetup status "$1")"
	fi
}

# check_bg_sha256 <desc> <seconds> <sha256>: two tests: the bg_sha256 read
# ends with exit 0 within the time (<desc>), and the sum of the data it read
# is <sha256> (the base's).
check_bg_sha256() {
	wait_pid "$BG_PID" "$2"
	check_eq "$1" 0 "$?"
	check_eq "the data read equals the base" "$3" "$(cat "$BG_SUM_FILE" 2>/dev/null)"
}

# ---------------------------------------------------------------------------
# The usual setup of a test: each step bails out (tap_bail) when it fails
# ---------------------------------------------------------------------------

# use_rcow_fill: the helper is the synchronous test helper rcow-fill
# ($RCOW_FILL, else selftests/progs/rcow-fill), whatever else is built; the
# test fails (Bail out!) when it is not built.
use_rcow_fill() {
	RCOW_HELPER=${RCOW_FILL:-$_RC_TREE_NET/selftests/progs/rcow-fill}
	require_built "$RCOW_HELPER"
}

# test_base_image <bytes> <seed>: the scratch directory (net_tmpdir) and in
# it a base image of deterministic pseudo-random data (make_base_image):
# its path in BASE_IMG, its sha256 in BASE_SUM.
BASE_IMG=
BASE_SUM=
test_base_image() {
	net_tmpdir
	BASE_IMG=$NET_WORKDIR/base.img
	# shellcheck disable=SC2034	# for the tests
	BASE_SUM=$(make_base_image "$BASE_IMG" "$1" "$2") ||
		tap_bail "cannot make the base image"
}

# base_part <offset> <bytes>: those bytes of BASE_IMG (multiples of 4 KiB).
base_part() {
	dd if="${BASE_IMG:?test_base_image first}" bs=4096 skip=$(($1 / 4096)) \
		count=$(($2 / 4096)) status=none
}

# file_test_setup <bytes> <seed>: dm-remote-cow loaded (load_module), then
# test_base_image: the scratch directory NET_WORKDIR, the base image
# BASE_IMG and its sha256 BASE_SUM.
file_test_setup() {
	load_module || tap_bail "cannot load $RC_MODULE"
	test_base_image "$1" "$2"
}

# net_test_setup [delay [rate [loss]]]: the scratch directory (net_tmpdir),
# the namespace and link (net_setup), shaped by net_shape when given
# arguments.
net_test_setup() {
	net_tmpdir
	net_setup || tap_bail "cannot set up the network namespace"
	[ $# -eq 0 ] || net_shape "$@" || tap_bail "cannot shape the link"
}

# net_serve_base <bytes> <seed>: test_base_image, served by net_serve.
net_serve_base() {
	test_base_image "$1" "$2"
	net_serve "$BASE_IMG" || tap_bail "cannot start the NBD server"
}

# net_test_device <dm name> <sectors> <extent sectors> [helper args...]: a
# COW device 16 MiB larger than the device (make_cow), the helper
# (helper_start with the args), then one test: "create <dm name>", the
# device over $(net_uri) (removed at exit).
net_test_device() {
	make_cow $(($2 * 512 + (16 << 20))) || tap_bail "no COW loop device"
	helper_start "${@:4}" || tap_bail "the helper does not start"
	at_exit "dm_remove $1"	# dm_create runs in check's subshell
	check "create $1" dm_create "$1" "$(rc_table "$2" "$COW_DEV" "$3" "$(net_uri)")" ||
		tap_bail "cannot create the device"
}

# ---------------------------------------------------------------------------
# Reads that wait for faults, of a device over a file:// base
# ---------------------------------------------------------------------------

# file_test_device <dm name> <sectors> <extent sectors> [cow dev]: a COW
# device 4 MiB larger than the device (make_cow), or the one given, and the
# device over file://$BASE_IMG (test_base_image first), no helper; its
# table in DEV_TABLE.  Removed at exit.  bg_read and check_reads then work
# on it.
DEV_TABLE=
_reads_name=
_reads_extb=
_read_pids=()
_read_exts=()
file_test_device() {
	local cow=${4:-}
	if [ -z "$cow" ]; then
		make_cow $(($2 * 512 + (4 << 20))) || tap_bail "no COW loop device"
		cow=$COW_DEV
	fi
	DEV_TABLE=$(rc_table "$2" "$cow" "$3" "file://${BASE_IMG:?test_base_image first}")
	dm_create "$1" "$DEV_TABLE" || tap_bail "cannot create $1"
	_reads_name=$1
	_reads_extb=$(($3 * 512))
}

# bg_read <first extent> [extents]: a direct read of <extents> (1) extents
# of the file_test_device in the background, one extent per request; its
# data goes to $NET_WORKDIR/read.<first>, its errors to read.<first>.err.
bg_read() {
	local n=${2:-1}
	dd if="/dev/mapper/$_reads_name" of="$NET_WORKDIR/read.$1" bs="$_reads_extb" \
		skip="$1" count="$n" iflag=direct status=none 2>"$NET_WORKDIR/read.$1.err" &
	at_exit "kill -KILL $! 2>/dev/null"
	_read_pids+=("$!")
	_read_exts+=("$1:$n")
}

# reads_waiting: every background read is still running.
reads_waiting() {
	local pid
	for pid in "${_read_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || return 1
	done
}

# check_reads <desc> <seconds> [ok|eio]: one test: every background read
# ends within the time, with the base's data (ok, the default) or with EIO
# (eio).  (Not through check: the reads are children of this shell.)
check_reads() {
	local i first n rc err errs=()
	for i in "${!_read_pids[@]}"; do
		first=${_read_exts[$i]%:*}
		n=${_read_exts[$i]#*:}
		err=$NET_WORKDIR/read.$first.err
		wait_pid "${_read_pids[$i]}" "$2"
		rc=$?
		if [ "${3:-ok}" = eio ]; then
			if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] ||
				! grep -q "Input/output error" "$err"; then
				errs+=("read of extents $first+$n: exit $rc, expected EIO: $(cat "$err")")
			fi
		elif [ "$rc" -ne 0 ]; then
			errs+=("read of extents $first+$n: exit $rc $(cat "$err")")
		elif ! cmp -s "$NET_WORKDIR/read.$first" <(dd if="$BASE_IMG" bs="$_reads_extb" \
			skip="$first" count="$n" status=none); then
			errs+=("read of extents $first+$n: data differ from the base")
		fi
	done
	_read_pids=()
	_read_exts=()
	if [ ${#errs[@]} -eq 0 ]; then
		tap_ok "$1"
	else
		tap_not_ok "$1" "${errs[@]}" "status: $(dmsetup status "$_reads_name" 2>&1)"
	fi
}
