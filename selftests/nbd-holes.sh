#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Holes in the base cost no data transfer.  The base is a 64 MiB sparse
# file with 3 MiB of data in three runs, served by nbdkit's file plugin,
# which reports the holes through NBD block status (base:allocation).
#
#  1. reading 16 MiB that lie wholly in a hole moves (almost) nothing over
#     the link: the veth counters grow by less than 256 KiB plus the
#     prefetch window, and the helper counts no byte read from the base;
#  2. reading the whole device returns the base, and the bytes fetched (the
#     helper's bytes_read, and what the link carried) stay within the data
#     extents plus the prefetch window, while the rest is counted as zeroes.
#
# The prefetch window is 0 for rcow-fill (it fetches exactly the extents
# faulted) and RCOW_PREFETCH_MAX for remote-cowd (the largest read-ahead its
# documentation allows; default 8 MiB).
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc openssl
tap_plan 9

NAME="rc-holes"
EXT=128				# 64 KiB extents
EXT_BYTES=$((EXT * 512))
MIB=$((1 << 20))
BASE_BYTES=$((64 * MIB))
LEN=$((BASE_BYTES / 512))
# Data runs: offset MiB and length in KiB, deliberately not extent-aligned
# at one end.
RUNS="0:1024 20:1024 47:1000"
HOLE_FROM=$((24 * MIB))		# a hole of 16 MiB: 24..40 MiB
HOLE_LEN=$((16 * MIB))
if helper_is_daemon; then
	WINDOW=${RCOW_PREFETCH_MAX:-$((8 * MIB))}
else
	WINDOW=0
fi
SLACK=$((256 << 10))		# NBD, TCP, ARP chatter on the link

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup 2ms
tmp=$NET_WORKDIR

truncate -s "$BASE_BYTES" "$tmp/base.img"
data_bytes=0		# bytes of the extents that hold data
for r in $RUNS; do
	off=$((${r%:*} * MIB))
	kib=${r#*:}
	image_data "holes-$off" $((kib << 10)) |
		dd of="$tmp/base.img" bs=64k seek="$off" oflag=seek_bytes conv=notrunc status=none
	first=$((off / EXT_BYTES))
	last=$(((off + (kib << 10) - 1) / EXT_BYTES))
	data_bytes=$((data_bytes + (last - first + 1) * EXT_BYTES))
done
base_sum=$(sha256_of "$tmp/base.img")
tap_diag "base: $(du -k "$tmp/base.img" | cut -f1) KiB allocated of $((BASE_BYTES >> 10)) KiB;" \
	"data extents: $((data_bytes >> 10)) KiB; prefetch window allowed: $((WINDOW >> 10)) KiB"
net_serve "$tmp/base.img" || tap_bail "cannot start the NBD server"
if nbdinfo --map "$(net_uri)" >"$tmp/map" 2>&1 && grep -q hole "$tmp/map"; then
	tap_ok "the server reports holes (base:allocation)"
else
	tap_not_ok "the server reports holes (base:allocation)" "$(cat "$tmp/map")"
fi
tap_diag "map: $(tr '\n' ';' <"$tmp/map")"
tap_diag "helper: $RCOW_HELPER"
net_test_device "$NAME" "$LEN" "$EXT"

# 1. a read wholly inside a hole
before=$(net_bytes)
got=$(dd if="/dev/mapper/$NAME" bs=1M iflag=direct,skip_bytes skip="$HOLE_FROM" \
	count=$((HOLE_LEN / MIB)) status=none | tr -d '\0' | wc -c)
moved=$(($(net_bytes) - before))
check_eq "16 MiB read from a hole are zeroes" 0 "$got"
tap_diag "link bytes for the hole read: $moved (rx $(net_bytes rx), tx $(net_bytes tx) so far)"
if [ "$moved" -le $((SLACK + WINDOW)) ]; then
	tap_ok "the hole read moved $moved bytes over the link (<= $((SLACK + WINDOW)))"
else
	tap_not_ok "the hole read moved little over the link" \
		"$moved bytes > $SLACK slack + $WINDOW prefetch window for $HOLE_LEN bytes of hole"
fi
helper_stop
s1=$HELPER_STATS
tap_diag "helper stats: $(tr '\n' ' ' <"$s1")"
r1=$(helper_stat bytes_read "$s1")
if [ "$r1" -le "$WINDOW" ]; then
	tap_ok "the helper read $r1 bytes from the base for the hole (<= $WINDOW)"
else
	tap_not_ok "the helper read (almost) nothing for the hole" "bytes_read=$r1 > window $WINDOW"
fi

# 2. the whole device
helper_start || tap_bail "the helper does not start again"
before=$(net_bytes rx)
check_eq "the whole device equals the base" "$base_sum" "$(sha256_of "/dev/mapper/$NAME")"
moved=$(($(net_bytes rx) - before))
helper_stop
s2=$HELPER_STATS
tap_diag "helper stats: $(tr '\n' ' ' <"$s2")"
r2=$(helper_stat bytes_read "$s2")
z2=$(helper_stat bytes_zero "$s2")
limit=$((data_bytes + WINDOW))
if [ "$((r1 + r2))" -le "$limit" ]; then
	tap_ok "bytes read from the base: $((r1 + r2)) <= data extents $data_bytes + window $WINDOW"
else
	tap_not_ok "bytes read from the base stay within the data extents + window" \
		"bytes_read=$((r1 + r2)) > $limit"
fi
if [ "$moved" -le "$((limit + SLACK + limit / 10))" ]; then
	tap_ok "the link carried $moved bytes to us (data extents $data_bytes, image $BASE_BYTES)"
else
	tap_not_ok "the link carried about the data extents only" \
		"rx $moved > $limit + 10 % + $SLACK"
fi
holes=$((BASE_BYTES - data_bytes))
if [ "$z2" -ge "$((holes - HOLE_LEN - WINDOW))" ]; then
	tap_ok "the helper counted the holes as zeroes ($z2 bytes)"
else
	tap_not_ok "the helper counted the holes as zeroes" \
		"bytes_zero=$z2 < $((holes - HOLE_LEN - WINDOW))"
fi

tap_done
