#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# remote-cowd keeps the memory of its fill buffers (bufcache.c): a buffer
# given back after one fill serves the next, rather than fresh pages that
# the kernel faults in and zeroes for every read (its memory is locked,
# so each new page is faulted in when it is mapped).
#   1. a first hydration (32 MiB) maps the buffers the helper has out at
#      once (reads in flight and fills waiting for their COW write);
#   2. a second one of the same size (8192 pages of data) must then cost
#      the helper fewer minor page faults than a quarter of the pages it
#      fetched, and the device must equal the base.
# A count, not a time: the host may be as slow as it likes.  What the
# helper has out at once must be alike in both runs: max_window = 8M pins
# the window of reads, and a 100 Mbit/s link keeps the reads slower than
# the COW writes (so that fills do not pile up behind the writers by
# however much the host's load of the moment decides) and the pieces at
# one size (128 KiB; rcow_flow_piece() follows the measured rate).  (Unshaped, with
# buffers from the heap, CI saw 3035 faults: the window grew to 14 MiB
# and the heap kept growing through fragmentation.)
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 6
EXT=128 MIB=$((1 << 20))	# 64 KiB extents
A_BYTES=$((32 * MIB)) B_BYTES=$((32 * MIB))	# the warm-up, the measured one
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
net_setup || tap_bail "cannot set up the network namespace"
base_sum=$(make_base_image "$tmp/base.img" "$B_BYTES" daemon-buffers) ||
	tap_bail "cannot make the base image"
net_serve "$tmp/base.img" || tap_bail "cannot start the NBD server"
net_shape 1ms 100mbit || tap_bail "cannot shape the link"
printf 'max_window = 8M\n' >"$tmp/buffers.conf"
helper_start --config "$tmp/buffers.conf" || tap_bail "remote-cowd does not start"

# minflt: the helper's minor page faults so far, all its threads
minflt() { awk '{ print $10 }' "/proc/$HELPER_PID/stat"; }

# hydrate <name> <bytes>: a new device over the base, streamed whole
hydrate() {
	local total=$(($2 / (EXT * 512)))
	make_cow $(($2 + 4 * MIB)) || tap_bail "no COW loop device"
	at_exit "dm_remove $1"
	dmsetup create "$1" --table "$(rc_table $(($2 / 512)) "$COW_DEV" "$EXT" "$(net_uri)")" ||
		tap_bail "cannot create $1"
	dmsetup message "$1" 0 hydrate start || tap_bail "hydrate start refused"
	all() { [ "$(present_extents "$1")" = "$total" ]; }
	wait_until 300 all "$1"
	check_eq "$1: streaming made every extent present" "$total/$total" "$(dm_status_field "$1" 2)"
}

hydrate rc-buf-a "$A_BYTES"
f0=$(minflt)
kill -USR1 "$HELPER_PID"; sleep 0.5
tap_diag "after the warm-up: $(grep buffers_ "$HELPER_STATS" | tr '\n' ' ')"
r0=$(helper_stat buffers_reused)
hydrate rc-buf-b "$B_BYTES"
f1=$(minflt)
pages=$((B_BYTES / 4096))
if [ $((f1 - f0)) -lt $((pages / 4)) ]; then
	tap_ok "the second hydration cost $((f1 - f0)) minor faults for $pages pages (< $((pages / 4)))"
else
	tap_not_ok "the fill buffers' memory is reused" \
		"$((f1 - f0)) minor faults for $pages pages fetched (at least a quarter)"
fi
check_eq "the second device equals the base" "$base_sum" "$(sha256_of /dev/mapper/rc-buf-b)"
check_eq "its stats name every extent" "$(((A_BYTES + B_BYTES) / (EXT * 512)))" \
	"$(kill -USR1 "$HELPER_PID"; sleep 0.5; helper_stat extents)"
reused=$(($(helper_stat buffers_reused) - r0))
check "the second hydration took its buffers from the cache ($reused times)" [ "$reused" -gt 0 ]
helper_stop
tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"
tap_done
