#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# remote-cowd's prefetch (remote-cowd(8), "Prefetch"): a sequential reader
# gets read-ahead, and what is fetched stays within the extents it reads
# plus the window cap (default 8 MiB, and 1 MiB with --prefetch-max 1M);
# a random reader (no two faults adjacent) gets no prefetch at all: exactly
# the extents it touches are fetched.  The base is served by nbdkit in a
# network namespace; the data read always equals the base.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc openssl shuf
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
tap_plan 13

NAME="rc-prefetch"
EXT=128				# 64 KiB extents
EXT_BYTES=$((EXT * 512))
MIB=$((1 << 20))
BASE_BYTES=$((64 * MIB))
LEN=$((BASE_BYTES / 512))
SEQ=$((16 * MIB))		# the sequential reader reads this much
SLACK=$((256 << 10))		# NBD, TCP, ARP chatter on the link

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 2ms
net_serve_base "$BASE_BYTES" daemon-prefetch
seq_sum=$(sha256_of "$BASE_IMG" "$SEQ")

# sequential <window bytes> [daemon args]: a fresh device, read SEQ bytes
# in extent-sized direct reads, check data and bytes fetched.
sequential() {
	local window=$1 moved before r
	shift
	make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
	helper_start "$@" || tap_bail "remote-cowd does not start"
	at_exit "dm_remove $NAME"
	dmsetup create "$NAME" --table "$(rc_table "$LEN" "$COW_DEV" "$EXT" "$(net_uri)")" ||
		tap_bail "cannot create $NAME"
	before=$(net_bytes rx)
	check_eq "sequential read (window $((window >> 10)) KiB): data equals the base" "$seq_sum" \
		"$(dd if="/dev/mapper/$NAME" bs=64k count=$((SEQ / EXT_BYTES)) iflag=direct \
			status=none | sha256sum | cut -d' ' -f1)"
	sleep 1			# read-ahead still in flight lands
	moved=$(($(net_bytes rx) - before))
	dm_remove "$NAME"
	helper_stop
	tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"
	r=$(helper_stat bytes_read)
	if [ "$r" -ge "$SEQ" ] && [ "$r" -le $((SEQ + window)) ]; then
		tap_ok "bytes fetched $r: the extents read ($SEQ) plus at most the window ($window)"
	else
		tap_not_ok "bytes fetched within the extents read plus the window" \
			"bytes_read=$r, want $SEQ..$((SEQ + window))"
	fi
	if [ "$moved" -le $((SEQ + window + SEQ / 10 + SLACK)) ]; then
		tap_ok "the link carried $moved bytes for it"
	else
		tap_not_ok "the link carried about the bytes fetched" \
			"rx $moved > $((SEQ + window)) + 10 % + $SLACK"
	fi
	if [ "$(helper_stat prefetch_extents)" -gt 0 ] &&
		[ "$(helper_stat guest_faults)" -lt $((SEQ / EXT_BYTES / 2)) ]; then
		tap_ok "read-ahead served most of the reader's extents" \
			"($(helper_stat guest_faults) guest faults, $(helper_stat prefetch_extents) extents prefetched)"
	else
		tap_not_ok "read-ahead served most of the reader's extents" \
			"guest_faults=$(helper_stat guest_faults) prefetch_extents=$(helper_stat prefetch_extents)"
	fi
}

sequential $((8 * MIB))
sequential $((1 * MIB)) --prefetch-max 1M

# random reads: 40 distinct extents, none adjacent (even numbers only)
make_cow $((BASE_BYTES + 4 * MIB)) || tap_bail "no COW loop device"
helper_start || tap_bail "remote-cowd does not start"
dmsetup create "$NAME" --table "$(rc_table "$LEN" "$COW_DEV" "$EXT" "$(net_uri)")" ||
	tap_bail "cannot create $NAME"
mapfile -t picks < <(seq 0 2 $((BASE_BYTES / EXT_BYTES - 1)) |
	shuf -n 40 --random-source=<(image_data prefetch-shuf 65536))
bad=0
for e in "${picks[@]}"; do
	off=$((e * EXT_BYTES / 4096 + 2))	# 4 KiB, 8 KiB into the extent
	a=$(dd if="/dev/mapper/$NAME" bs=4k skip="$off" count=1 iflag=direct status=none |
		sha256sum)
	b=$(dd if="$BASE_IMG" bs=4k skip="$off" count=1 status=none | sha256sum)
	[ "$a" = "$b" ] || bad=$((bad + 1))
done
check_eq "40 random 4 KiB reads equal the base" 0 "$bad"
sleep 1
present=$(present_extents "$NAME")
dm_remove "$NAME"
helper_stop
tap_diag "stats: $(tr '\n' ' ' <"$HELPER_STATS")"
check_eq "random reads: only the 40 extents touched are present" 40 "$present"
check_eq "random reads: exactly 40 extents fetched" $((40 * EXT_BYTES)) "$(helper_stat bytes_read)"
check_eq "random reads: no prefetch asked" 0 "$(helper_stat prefetch_requests)"
check_eq "no fill failed" 0 "$(helper_stat fill_errors)"

tap_done
