# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Live migration between remote-cowd's two sides in the test VM
# (selftests/migrate-*.sh).  One VM has one helper (the kernel takes one
# registered helper per host), so the same remote-cowd plays the source
# and the destination, over loopback TCP: the protocol, the keys and the
# kernel sides are those of two hosts.  Source it after lib.sh and
# lib-net.sh:
#
#   PORT=17711                      # the destinations listen on 127.0.0.1:PORT
#   mig_setup migrate-foo [remote-cowd args...]
#   new_pair rc-src rc-dst || tap_bail "..."
#   "$RC" migrate rc-src --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN"
#
# What mig_setup leaves: RC (the CLI), tmp (the scratch directory), RUN
# (remote-cowd's run directory), BASE (a file:// base of DEV_BYTES bytes),
# the keys $tmp/key.psk and $tmp/wrong.psk (psktool), remote-cowd running
# (HELPER_PID, HELPER_LOG, with -v).
#
# mig_link_shape gives loopback a link's delay and rate (the benchmark,
# bench/bench-migrate.sh); mig_link_cut drops every packet on the loopback interface (tc netem loss
# 100% on lo): the migration's TCP connection is cut without either end
# being told, as a dead link or a crashed switch would.  Nothing else of
# these tests goes over loopback (the base is a file, the kernel is talked
# to over netlink).

# shellcheck disable=SC2034	# for the tests that source this
MIB=$((1 << 20))
DEV_BYTES=$((32 * MIB))
RC=$RC_TREE/tools/remote-cow
MIG_TEST=
MIG_FIO=

# mig_setup <test name> [remote-cowd args...]: dm-remote-cow loaded, the
# scratch directory and a base image (seeded by the test name), remote-cowd
# started on the run directory with the args, the two keys.  Bails out on
# any failure.
mig_setup() {
	MIG_TEST=$1
	shift
	require_built "$RC"
	load_module || tap_bail "cannot load $RC_MODULE"
	test_base_image "$DEV_BYTES" "$MIG_TEST"
	tmp=$NET_WORKDIR
	RUN=$tmp/run
	BASE="file://$BASE_IMG"
	helper_start --run-dir "$RUN" -v "$@" || tap_bail "remote-cowd does not start"
	psktool -u migtest -p "$tmp/key.psk" >/dev/null 2>&1 || tap_bail "psktool cannot make a key"
	psktool -u migtest -p "$tmp/wrong.psk" >/dev/null 2>&1 ||
		tap_bail "psktool cannot make a key"
}

# new_pair <src> <dst> [ms]: a source device with 8 MiB written from 4 MiB
# on, and a destination (new_dst <dst> [ms]); COW loop devices in SRC_COW,
# DST_COW.  Both removed at exit.
new_pair() {
	make_cow $((DEV_BYTES + (4 << 20))) || return 1
	SRC_COW=$COW_DEV
	at_exit "dm_remove $1"
	"$RC" create "$1" --cow "$SRC_COW" --base "$BASE" >/dev/null || return 1
	image_data "$MIG_TEST-$1" $((8 * MIB)) |
		dd of="/dev/mapper/$1" bs=1M seek=4 oflag=direct iflag=fullblock status=none ||
		return 1
	new_dst "$2" "${3:-60000}"
}
# new_dst <dst> [ms [port]]: a destination made by receive, listening on
# 127.0.0.1:<port> ($PORT unless given), its fault_timeout <ms> (60000
# unless given); its COW loop device in DST_COW.  Removed at exit.
new_dst() {
	make_cow $((DEV_BYTES + (4 << 20))) || return 1
	DST_COW=$COW_DEV
	at_exit "dm_remove $1"
	"$RC" receive "$1" --cow "$DST_COW" --base "$BASE" --listen "127.0.0.1:${3:-$PORT}" \
		--psk "$tmp/key.psk" --run-dir "$RUN" --fault-timeout "${2:-60000}" >/dev/null
}
state() { rc_status "$1" migrate_state; }
state_is() { [ "$(state "$1")" = "$2" ]; }
logged() { grep -q "$1" "$HELPER_LOG"; }
listening() { logged "$1: waiting for the migration on"; }
# sent_past <src> <extents>: the source's migrate_done is past that.
sent_past() { [ "$(rc_status "$1" migrate_done)" -gt "$2" ]; }
# ms_since <date +%s%N>: milliseconds since then.
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# mig_fio <dm name>: a guest writing 4 KiB blocks at random, 1 MiB/s,
# over 20 MiB from 2 MiB on, in the background (MIG_FIO; its report in
# $tmp/fio-<dm name>.out); killed at exit.  A fenced device fails its
# writes, which ends it.
mig_fio() {
	fio --name=guest --filename="/dev/mapper/$1" --rw=randwrite --bs=4k --direct=1 \
		--ioengine=psync --offset=2M --size=20M --rate=1m --time_based --runtime=600 \
		--output="$tmp/fio-$1.out" >/dev/null 2>&1 &
	MIG_FIO=$!
	at_exit "kill $MIG_FIO 2>/dev/null"
}
# mig_fio_outrun <dm name>: as mig_fio, a guest that outruns any link the
# tests shape: 64 KiB blocks at random over 16 MiB from 2 MiB on, as fast
# as it can (4 in flight, libaio).
mig_fio_outrun() {
	fio --name=guest --filename="/dev/mapper/$1" --rw=randwrite --bs=64k --direct=1 \
		--ioengine=libaio --iodepth=4 --offset=2M --size=16M --time_based --runtime=600 \
		--output="$tmp/fio-$1.out" >/dev/null 2>&1 &
	MIG_FIO=$!
	at_exit "kill $MIG_FIO 2>/dev/null"
}
# mig_outrun_start <src> <dst>: the convergence tests' start: a new pair
# (new_pair), the destination listening, loopback shaped to 16 Mbit/s,
# mig_fio_outrun on the source, then (one test) remote-cow migrate.  Bails
# out if the setup fails.
mig_outrun_start() {
	new_pair "$1" "$2" || tap_bail "cannot set up the source and the destination"
	wait_until 10 listening "$2" >/dev/null || tap_bail "remote-cowd does not listen for $2"
	mig_link_shape 0ms 16mbit || tap_bail "cannot shape lo (tc netem)"
	mig_fio_outrun "$1"
	sleep 1
	check "migrate while fio writes faster than the link: started" \
		"$RC" migrate "$1" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN"
}
# mig_start_idle <src> <dst>: a new pair (new_pair), the destination
# listening, remote-cow migrate, and the first round (the 8 MiB written)
# sent within 60 s; nothing written then: the migration is idle.  Bails
# out if any of it fails.
mig_start_idle() {
	new_pair "$1" "$2" || tap_bail "cannot set up the source and the destination"
	wait_until 10 listening "$2" >/dev/null || tap_bail "remote-cowd does not listen for $2"
	"$RC" migrate "$1" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN" ||
		tap_bail "remote-cow migrate fails"
	wait_until 60 sent_past "$1" 127 >/dev/null || tap_bail "the first round of $1 is not sent"
}
# between <n> <lo> <hi>: lo <= n <= hi (integers).
between() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
# remains_at_most <src> <n>: what the rounds taken still have to send
# (status migrate_total - migrate_done) is at most n extents.
remains_at_most() {
	[ $(($(rc_status "$1" migrate_total) - $(rc_status "$1" migrate_done))) -le "$2" ]
}
# mig_fio_stop: stop it (SIGINT) and wait for it.
mig_fio_stop() {
	kill -INT "$MIG_FIO" 2>/dev/null
	wait "$MIG_FIO"
}

# mig_check_moved <src> <dst>: after a migration ended done, the link
# restored; checks that the destination equals the source byte for byte
# (the source read into $tmp/src.img) and that the source refuses writes.
mig_check_moved() {
	mig_link_restore
	dd if="/dev/mapper/$1" of="$tmp/src.img" bs=1M iflag=direct status=none ||
		tap_bail "cannot read the source"
	check "the destination equals the source, byte for byte" \
		cmp "$tmp/src.img" "/dev/mapper/$2"
	check "the source refuses writes" \
		bash -c "! dd if=/dev/zero of=/dev/mapper/$1 bs=4k count=1 oflag=direct status=none 2>/dev/null"
}

# mig_link_cut: drop every packet on lo from now on; restored at exit.
mig_link_cut() {
	modprobe sch_netem 2>/dev/null
	at_exit mig_link_restore
	tc qdisc replace dev lo root netem loss 100%
}
# mig_link_shape <delay> <rate> [limit]: every packet on lo held <delay>
# and the loopback limited to <rate> (tc netem, tc's syntax: 1ms, 1gbit); a
# packet crosses lo once per direction, so the round trip is twice <delay>.
# At most <limit> packets queue.  Unless given, about one second of the
# rate (at least 4): lo's packets are up to 64 KiB, and both directions
# share this one queue, so a deeper queue holds each side's acknowledgements
# behind seconds of the other's data, and remote-cowd's peer timeout
# (TCP_USER_TIMEOUT: nothing acknowledged for that long) ends a connection
# whose peer is alive (64 packets at 2 Mbit/s: 16.8 s against a test's 10 s).
# Restored at exit.
mig_link_shape() {
	modprobe sch_netem 2>/dev/null
	at_exit mig_link_restore
	tc qdisc replace dev lo root netem limit "${3:-$(mig_queue_1s "$2")}" delay "$1" rate "$2"
}
# mig_queue_1s <rate>: how many 64 KiB packets <rate> (tc's syntax) carries
# in one second, at least 4.
mig_queue_1s() {
	awk -v r="$1" 'BEGIN {
		n = r + 0; u = tolower(r); sub(/^[0-9.]+/, "", u)
		m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : (u == "bit") ? 1 : 0
		if (m == 0) { print 4; exit }
		p = int(n * m / 8 / 65536); print (p < 4) ? 4 : p }'
}
# mig_link_restore: lo carries packets again.
mig_link_restore() {
	tc qdisc del dev lo root 2>/dev/null
	! tc qdisc show dev lo | grep -q netem
}
