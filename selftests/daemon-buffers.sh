#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# remote-cowd keeps the memory of its fill buffers (main.c,
# enter_io_path()): a buffer freed after one fill serves the next, rather
# than fresh pages that the kernel faults in and zeroes for every read
# (its memory is locked, so each new page is faulted in at allocation).
#   1. a first hydration (32 MiB) grows the helper's heap to what it keeps
#      in flight;
#   2. a second one of the same size (8192 pages of data) must then cost the helper
#      fewer minor page faults than a quarter of the pages it fetched, and
#      the device must equal the base.
# A count, not a time: the host may be as slow as it likes.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 5
EXT=128 MIB=$((1 << 20))	# 64 KiB extents
A_BYTES=$((32 * MIB)) B_BYTES=$((32 * MIB))	# the warm-up, the measured one
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
net_setup || tap_bail "cannot set up the network namespace"
base_sum=$(make_base_image "$tmp/base.img" "$B_BYTES" daemon-buffers) ||
	tap_bail "cannot make the base image"
net_serve "$tmp/base.img" || tap_bail "cannot start the NBD server"
helper_start || tap_bail "remote-cowd does not start"

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
helper_stop
tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"
tap_done
