#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# remote-cowd follows devices created and removed after it started: with no
# device at start, a device created later is served (its content equals the
# base), a second device over the same base is served too, and once removed
# a device is forgotten (DEVICE_REMOVE counted, the daemon says so in its
# log and keeps serving the other one).  A device that already exists when
# the daemon starts is found by the dump.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 10

EXT=128
BASE_BYTES=$((8 << 20))
LEN=$((BASE_BYTES / 512))

file_test_setup "$BASE_BYTES" daemon-hotplug
tmp=$NET_WORKDIR
base_sum=$BASE_SUM
uri="file://$BASE_IMG"
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
cow1=$COW_DEV
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
cow2=$COW_DEV

helper_start || tap_bail "remote-cowd does not start"
check_eq "the daemon started with no device" 0 "$(grep -c 'device .*: serving' "$HELPER_LOG")"

at_exit "dm_remove rc-hot1"
at_exit "dm_remove rc-hot2"
dmsetup create rc-hot1 --table "$(rc_table "$LEN" "$cow1" "$EXT" "$uri")" ||
	tap_bail "cannot create rc-hot1"
check_eq "a device created after the daemon started is served" "$base_sum" \
	"$(sha256_of /dev/mapper/rc-hot1)"
dmsetup create rc-hot2 --table "$(rc_table "$LEN" "$cow2" "$EXT" "$uri")" ||
	tap_bail "cannot create rc-hot2"
check_eq "a second device over the same base is served (first MiB)" \
	"$(sha256_of "$tmp/base.img" $((1 << 20)))" "$(sha256_of /dev/mapper/rc-hot2 $((1 << 20)))"
check "remove rc-hot1" dm_remove rc-hot1
logged() { grep -q "device rc-hot1: removed" "$HELPER_LOG"; }
check "the daemon logs that it forgot rc-hot1" wait_until 10 logged
# The other device, mostly missing still, gets a table reload: a new device
# id for the kernel (DEVICE_REMOVE of the old, DEVICE_ADD of the new).
if ! dmsetup reload rc-hot2 --table "$(rc_table "$LEN" "$cow2" "$EXT" "$uri")" ||
	! dmsetup resume rc-hot2; then
	tap_bail "cannot reload rc-hot2"
fi
check_eq "after a table reload (remove + add for the daemon) the device reads the base" \
	"$base_sum" "$(sha256_of /dev/mapper/rc-hot2)"
helper_stop
tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"
added=$(helper_stat devices_added)
removed=$(helper_stat devices_removed)
if [ "$added" -ge 3 ] && [ "$removed" -ge 2 ]; then
	tap_ok "the daemon saw the devices come and go (added $added, removed $removed)"
else
	tap_not_ok "the daemon saw the devices come and go" "added $added (want >= 3), removed $removed (want >= 2)"
fi
check_eq "no fill failed" 0 "$(helper_stat fill_errors)"

# A device that exists before the daemon starts: found by the dump.
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"
at_exit "dm_remove rc-hot3"
dmsetup create rc-hot3 --table "$(rc_table "$LEN" "$COW_DEV" "$EXT" "$uri")" ||
	tap_bail "cannot create rc-hot3"
helper_start || tap_bail "remote-cowd does not start again"
check_eq "a device that existed before the daemon started is served" "$base_sum" \
	"$(sha256_of /dev/mapper/rc-hot3)"
dm_remove rc-hot2
dm_remove rc-hot3
helper_stop
check_eq "the restarted daemon found both existing devices" 2 "$(helper_stat devices_added)"

tap_done
