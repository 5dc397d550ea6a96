#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# remote-cowd --migrate-mirror throttle: when the guest writes faster than
# the link, the source slows the guest's writes down (delay-doubling)
# instead of mirroring them.  The same guest and link as migrate-mirror.sh:
# 16 Mbit/s on loopback, fio writing 64 KiB blocks at random over 16 MiB
# (256 extents) as fast as it can (4 in flight).  That writer needs a
# delay of the order of 4 x the link time of one extent (32 ms) per write
# before it falls below the link.
#
# - once the rounds stop shrinking remote-cowd slows the guest down by the
#   link time of one extent (FIRST_MIN..FIRST_MAX ms at this link, not
#   1 ms), and the kernel logs that a write completes that many ms late;
#   the delay doubles while the rounds still do not shrink;
# - with fio still writing (its writes still complete on the source), a
#   round sends fewer than SMALL extents while the migration is still
#   copying: the throttle alone made it converge, without mirroring (never
#   logged, never the state), within ROUNDS_MAX rounds of the start;
# - after the pause, 'migrate finish --wait' ends done with at most SMALL
#   extents left, and the kernel counted the writes it slowed down;
# - the destination equals the source, byte for byte; the source refuses
#   writes.
# shellcheck disable=SC2317	# callbacks of wait_secs
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp fio psktool tc awk
tap_plan 17

PORT=17751
SMALL=16		# a round below this does not count as stalled
FIRST_MIN=20		# 64 KiB over 16 Mbit/s is 33 ms; the measured rate
FIRST_MAX=64		# (FLUSH round trips, an emulator) is near it
ROUNDS_MAX=28		# from the first round to the small one (30: mirroring)
mig_setup migrate-throttle --migrate-mirror throttle

SRC="rc-thr-src"
DST="rc-thr-dst"
# last_round: remote-cowd's last round of the source: "<round> <extents>"
# (its -v line).
last_round() {
	sed -n "s/.*device $SRC: round \([0-9]*\): \([0-9]*\) extents sent.*/\1 \2/p" "$HELPER_LOG" |
		tail -n 1
}
# first_small: the first round after the throttle started that sent fewer
# than SMALL extents (its number; empty if none yet).
first_small() {
	sed -n -e "/$SRC: the rounds stopped shrinking/,\$s/.*device $SRC: round \([0-9]*\): \([0-9]*\) extents sent.*/\1 \2/p" \
		"$HELPER_LOG" | awk -v small="$SMALL" '$2 < small { print $1; exit }'
}
gave_up() { logged "$SRC: throttled at .* mirroring after all"; }
# small_round: since the throttle started, a round sent fewer than SMALL
# extents, and the migration is copying (it never mirrored).
small_round() {
	[ -n "$(first_small)" ] && ! gave_up && state_is "$SRC" copying
}
# wait_secs <seconds> <command...>: until the command succeeds, for at most
# that long by the clock (wait_until counts its polls, which take long in a
# loaded emulator), polling every half second; then once more.
wait_secs() {
	local end=$((SECONDS + $1))
	shift
	while [ "$SECONDS" -lt "$end" ]; do
		"$@" && return 0
		sleep 0.5
	done
	"$@"
}
klog_has() { dmesg_since_mark | grep -qE -- "$1"; }
# delay_logged <n>: the n-th delay remote-cowd set, in ms (empty if none).
delay_logged() {
	sed -n "s/.*$SRC: the rounds stopped shrinking ([0-9]* extents): guest writes slowed down by \([0-9]*\) ms each.*/\1/p" \
		"$HELPER_LOG" | sed -n "${1}p"
}
has_delay() { [ -n "$(delay_logged "$1")" ]; }
# writes_done: writes the source completed (its block stat, field 5).
writes_done() {
	local dev
	dev=$(dmsetup info -c --noheadings -o major,minor "$SRC" | tr -d ' ')
	awk '{ print $5 }' "/sys/dev/block/$dev/stat"
}
# show_rounds: remote-cowd's rounds and delays, as diagnostics.
show_rounds() {
	tap_diag "$(grep -E "$SRC: (round|the rounds|throttled)" "$HELPER_LOG" | tail -n 40)"
}

kmsg_mark
mig_outrun_start "$SRC" "$DST"
check "remote-cowd slows the guest down once the rounds stop shrinking" \
	wait_secs 120 has_delay 1
first=$(delay_logged 1)
check "... by the link time of one extent: $FIRST_MIN..$FIRST_MAX ms (${first:-none})" \
	test "${first:-0}" -ge "$FIRST_MIN" -a "${first:-999}" -le "$FIRST_MAX"
check "the kernel applies it" \
	wait_secs 30 klog_has "migration to 127.0.0.1:$PORT throttled: a write completes [0-9]* ms late"
check "the delay doubles while the rounds do not shrink" \
	wait_secs 120 has_delay 2
second=$(delay_logged 2)
check_eq "... to twice the first" "$((2 * ${first:-0}))" "${second:-none}"
small_or_gave_up() { small_round || gave_up; }
wait_secs 180 small_or_gave_up
check "with the guest still writing, a round sends fewer than $SMALL extents, still copying" \
	small_round
r=$(first_small)
show_rounds
check "... within $ROUNDS_MAX rounds of the first (round ${r:-none})" \
	test "${r:-999}" -le "$ROUNDS_MAX"
check_eq "... not mirroring" copying "$(state "$SRC")"
w0=$(writes_done)
sleep 3
w1=$(writes_done)
check "... and fio still writes: $((w1 - w0)) writes completed in 3 s" \
	test "$w1" -gt "$w0"
check "remote-cowd never fell back to mirroring" \
	bash -c "! grep -q '$SRC: throttled at .* mirroring after all' '$HELPER_LOG'"

mig_fio_stop
kmsg_mark
check "migrate finish --wait: done" timeout 120 "$RC" migrate "$SRC" finish --wait
check_eq "state: done" "done" "$(state "$SRC")"
left=$(dmesg_since_mark | sed -n "s/.*remote-cow: $SRC: \([0-9]*\) extents left to send.*/\1/p")
slowed=$(dmesg_since_mark |
	sed -n "s/.*remote-cow: $SRC: \([0-9]*\) writes were slowed down (throttle).*/\1/p")
check "finish had at most $SMALL extents left (${left:-none logged}); ${slowed:-no} writes were slowed down" \
	test -n "$left" -a "${left:-999}" -le "$SMALL" -a "${slowed:-0}" -gt 0
mig_check_moved "$SRC" "$DST"
check "the kernel never mirrored" \
	bash -c "! dmesg | grep -q '$SRC: migration to .* mirroring: writes wait'"
tap_done
