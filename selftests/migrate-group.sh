#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# Several devices migrating as one unit (remote-cow migrate NAME...,
# remote-cow receive NAME...), between remote-cowd's two sides over TLS
# with a PSK, as in migrate-daemon.sh (one remote-cowd plays both sides):
#
# - a group of three: the destination's three devices (receive, paired by
#   position) wait as one job ("group ...: waiting for the migration");
#   fio writes to each source during the migration; a second migration of
#   a member while the group runs is refused by the CLI (exit 7, nothing
#   written) and by the kernel (migrate NAME send: exit 1); 'migrate A B C
#   finish --wait' ends all three done; every destination equals, byte for
#   byte, a reference read from its source at the end, and holds as many
#   written extents; every source refuses writes; the keys and specs are
#   gone;
# - abort: a group of two, 'migrate abort' of the second member mid-way
#   aborts both: both sources take writes again and still hold what was
#   written before (compared with references), both destinations stay
#   incoming, the log saying so for each;
# - a size mismatch in the second device (its source is 16 MiB, the
#   destination 32 MiB): the destination refuses the whole group's HELLO,
#   naming the mismatch; both sources fail, nothing is written on either
#   destination, both stay incoming.
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp fio psktool
tap_plan 39

PORT=17731
mig_setup migrate-group

# group_src <name> [--size SIZE]: a source with 8 MiB written from 4 MiB on.
group_src() {
	local name=$1
	shift
	make_cow $((DEV_BYTES + (4 << 20))) || return 1
	at_exit "dm_remove $name"
	"$RC" create "$name" --cow "$COW_DEV" --base "$BASE" "$@" >/dev/null || return 1
	image_data "$MIG_TEST-$name" $((8 * MIB)) |
		dd of="/dev/mapper/$name" bs=1M seek=4 oflag=direct iflag=fullblock status=none
}
# group_dst <port> <name>...: the destinations received as one unit on
# 127.0.0.1:<port>.
group_dst() {
	local port=$1 n args=()
	shift
	for n in "$@"; do
		make_cow $((DEV_BYTES + (4 << 20))) || return 1
		at_exit "dm_remove $n"
		args+=(--cow "$COW_DEV" --base "$BASE")
	done
	"$RC" receive "$@" "${args[@]}" --listen "127.0.0.1:$port" --psk "$tmp/key.psk" \
		--run-dir "$RUN" --fault-timeout 60000 >/dev/null
}
# fio_on <name>: a guest writing to it (as mig_fio), its pid in FIOS.
FIOS=()
fio_on() {
	fio --name=guest --filename="/dev/mapper/$1" --rw=randwrite --bs=4k --direct=1 \
		--ioengine=psync --offset=2M --size=20M --rate=1m --time_based --runtime=600 \
		--output="$tmp/fio-$1.out" >/dev/null 2>&1 &
	FIOS+=($!)
	at_exit "kill $! 2>/dev/null"
}
states() {
	local n out=
	for n in "$@"; do out+="$(state "$n") "; done
	echo "${out% }"
}
# all_past <extents>: migrate_done of every source in SRCS past that.
all_past() {
	local n
	for n in "${SRCS[@]}"; do sent_past "$n" "$1" || return 1; done
}
# all_state <state>: every source in SRCS in that migrate_state.
all_state() {
	local n
	for n in "${SRCS[@]}"; do state_is "$n" "$1" || return 1; done
}
# all_logged <text> <name>...: "<name><text>" logged for each name.
all_logged() {
	local text=$1 n
	shift
	for n in "$@"; do logged "$n$text" || return 1; done
}
written_of() {
	local n out=
	for n in "$@"; do out+="$(rc_status "$n" written) "; done
	echo "${out% }"
}

# --- a group of three, while fio writes to each ------------------------------------
SRCS=(rc-grp-a rc-grp-b rc-grp-c)
DSTS=(rc-grp-da rc-grp-db rc-grp-dc)
for s in "${SRCS[@]}"; do group_src "$s" || tap_bail "cannot set up source $s"; done
group_dst "$PORT" "${DSTS[@]}" || tap_bail "cannot receive ${DSTS[*]}"
check_eq "receive made the three destinations incoming" "incoming incoming incoming" \
	"$(states "${DSTS[@]}")"
check "remote-cowd waits for them as one group" \
	wait_until 10 logged "group rc-grp-da,rc-grp-db,rc-grp-dc: waiting for the migration on"
check "... each has its receive spec, root-only" test "$(stat -c %a "$RUN"/migrate/recv-rc-grp-d* |
	sort -u)" = 600

for s in "${SRCS[@]}"; do fio_on "$s"; done
sleep 1
check "migrate rc-grp-a rc-grp-b rc-grp-c --to --psk: started" \
	"$RC" migrate "${SRCS[@]}" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN"
check "remote-cowd gathered the three members into one job" \
	wait_until 30 logged "group rc-grp-a,rc-grp-b,rc-grp-c: every member started"
check "... one connection for the group" \
	wait_until 30 logged "group rc-grp-da,rc-grp-db,rc-grp-dc: receiving from"

out=$("$RC" migrate rc-grp-b --to "127.0.0.1:$((PORT + 9))" --psk "$tmp/key.psk" \
	--run-dir "$RUN" 2>&1)
rc=$?
check_eq "a second migration of a member: refused by the CLI, exit 7" \
	"7 a migration is running on it" "$rc $(grep -o 'a migration is running on it' <<<"$out")"
check "... its key file is the group's, untouched" grep -q "^member rc-grp-a$" \
	"$RUN/migrate/send-rc-grp-b.psk"
out=$("$RC" migrate rc-grp-b send "127.0.0.1:$((PORT + 9))" 2>&1)
rc=$?
check_eq "... and by the kernel (migrate NAME send): exit 1" 1 "$rc"

check "rounds go by for each member while fio writes (migrate_done past 8 MiB)" \
	wait_until 120 all_past 128
# copying, or mirroring once the rounds stop shrinking (fio can outrun a
# loaded emulator's loopback): either way, not finishing.
running='(copying|mirroring)'
st=$(states "${SRCS[@]}")
check "... all still running, none finishing ($st)" \
	grep -Eqx "$running $running $running" <<<"$st"

check "migrate finish of the first member alone: accepted" "$RC" migrate rc-grp-a finish
sleep 1
st=$(states "${SRCS[@]}")
check "... the group does not finish before every member was told to ($st)" \
	grep -Eqx "finishing $running $running" <<<"$st"
check "migrate rc-grp-b rc-grp-c finish --wait: done" \
	"$RC" migrate rc-grp-b rc-grp-c finish --wait
check_eq "every source is done" "done done done" "$(states "${SRCS[@]}")"
for p in "${FIOS[@]}"; do kill -INT "$p" 2>/dev/null; wait "$p"; done
check_eq "every destination serves (idle)" "idle idle idle" "$(states "${DSTS[@]}")"
for i in 0 1 2; do
	dd if="/dev/mapper/${SRCS[$i]}" of="$tmp/ref-$i" bs=1M iflag=direct status=none
	check "${DSTS[$i]} equals ${SRCS[$i]} byte for byte" cmp "$tmp/ref-$i" "/dev/mapper/${DSTS[$i]}"
done
check_eq "... and each holds its source's written extents" "$(written_of "${SRCS[@]}")" \
	"$(written_of "${DSTS[@]}")"
refused=0
for s in "${SRCS[@]}"; do
	dd if=/dev/zero of="/dev/mapper/$s" bs=4k count=1 seek=100 oflag=direct status=none \
		2>/dev/null || refused=$((refused + 1))
done
check_eq "every source refuses writes" 3 "$refused"
check "keys and specs are gone from the run directory" test -z "$(ls -A "$RUN/migrate")"
check "remote-cowd logged the group's bytes on the wire" \
	logged "group rc-grp-a,rc-grp-b,rc-grp-c: migration bytes on the wire: sent"

# --- abort of one member aborts the group ------------------------------------------
SRCS=(rc-grp-e rc-grp-f)
DSTS=(rc-grp-de rc-grp-df)
for s in "${SRCS[@]}"; do group_src "$s" || tap_bail "cannot set up source $s"; done
for i in 0 1; do
	dd if="/dev/mapper/${SRCS[$i]}" of="$tmp/ref-$i" bs=1M iflag=direct status=none
done
group_dst $((PORT + 1)) "${DSTS[@]}" || tap_bail "cannot receive ${DSTS[*]}"
wait_until 10 logged "group rc-grp-de,rc-grp-df: waiting for the migration on" >/dev/null
check "migrate rc-grp-e rc-grp-f: started" \
	"$RC" migrate "${SRCS[@]}" --to "127.0.0.1:$((PORT + 1))" --psk "$tmp/key.psk" \
	--run-dir "$RUN"
wait_until 30 logged "group rc-grp-de,rc-grp-df: receiving from" >/dev/null
check "abort the second member" "$RC" migrate rc-grp-f abort
check "the first member's migration ends too (failed, the fence lifted)" \
	wait_until 30 state_is rc-grp-e failed
check_eq "... the second is idle" idle "$(state rc-grp-f)"
ok=0
for i in 0 1; do
	cmp -s "$tmp/ref-$i" "/dev/mapper/${SRCS[$i]}" && ok=$((ok + 1))
done
check_eq "both sources still hold what they held before" 2 "$ok"
check "... and both take writes" bash -c "
	dd if=/dev/zero of=/dev/mapper/rc-grp-e bs=4k count=1 seek=100 oflag=direct status=none &&
	dd if=/dev/zero of=/dev/mapper/rc-grp-f bs=4k count=1 seek=100 oflag=direct status=none"
check "both destinations stay incoming, the log says so for each" \
	wait_until 30 all_logged ": migration not received: .*; the device stays incoming" \
	"${DSTS[@]}"
check_eq "... their states" "incoming incoming" "$(states "${DSTS[@]}")"
check "migrate abort returns the first member to idle" "$RC" migrate rc-grp-e abort

# --- a size mismatch in the second device -------------------------------------------
SRCS=(rc-grp-g rc-grp-h)
DSTS=(rc-grp-dg rc-grp-dh)
group_src rc-grp-g || tap_bail "cannot set up source rc-grp-g"
group_src rc-grp-h --size 16M || tap_bail "cannot set up source rc-grp-h"
group_dst $((PORT + 2)) "${DSTS[@]}" || tap_bail "cannot receive ${DSTS[*]}"
wait_until 10 logged "group rc-grp-dg,rc-grp-dh: waiting for the migration on" >/dev/null
check "migrate of a group whose second device is smaller: started" \
	"$RC" migrate "${SRCS[@]}" --to "127.0.0.1:$((PORT + 2))" --psk "$tmp/key.psk" \
	--run-dir "$RUN"
check "... both sources fail" wait_until 30 all_state failed
check "... the destination refused the group's HELLO, naming the second device" \
	logged "group rc-grp-dg,rc-grp-dh: refused the migration from .*device rc-grp-h (rc-grp-dh here): 32768 sectors on the source, 65536 here"
check_eq "... nothing was written on either destination" "0 0" "$(written_of "${DSTS[@]}")"
check_eq "... both still incoming" "incoming incoming" "$(states "${DSTS[@]}")"
check "... migrate abort returns both sources to idle" "$RC" migrate "${SRCS[@]}" abort
check_eq "... idle" "idle idle" "$(states "${SRCS[@]}")"
tap_done
