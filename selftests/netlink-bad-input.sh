#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The remote_cow generic netlink family refuses what it must, with the
# errno Documentation/remote-cow.rst gives: every command without
# CAP_NET_ADMIN (EPERM); FILL_DONE or QUIESCE_DONE from a socket that is
# not the registered helper (EPERM); FILL_DONE for a cookie never sent,
# already answered, naming another extent than its fault's, or of an
# unknown device (ENOENT, EINVAL, ENODEV); HYDRATE and
# GET_BITMAP out of range (ERANGE); attributes missing (EINVAL), out of
# their policy range (ERANGE), of the wrong type or length, unknown or
# beyond the attribute space (EINVAL, strict policy); commands the family
# does not take (EOPNOTSUPP); a second helper while one is registered
# (EBUSY) and UNREGISTER from a socket that is not the helper (ENOENT).
# A fault is then answered by hand the way the protocol describes, by a
# helper that is an "rcow-nl session" coprocess (the FAULT read from its
# registered socket, the extent copied into the COW data area, FILL_DONE
# from the same socket), and one with an error status.
# Afterwards no refused request has changed anything: the status line is
# as expected, the whole device equals the base through rcow-fill, and
# the module unloads.
# shellcheck disable=SC2119,SC2317	# helper_start: optional arguments; functions called through check
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl dd cmp
use_rcow_fill
tap_plan 94

NAME="rc-nl-bad-input"
EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BASE_BYTES=$((2 << 20))		# 32 extents
LEN=$((BASE_BYTES / 512))
NR=$((LEN / EXT))
NL=$RC_TREE/selftests/progs/rcow-nl

require_built "$NL"
load_module || tap_bail "cannot load $RC_MODULE"
test_base_image "$BASE_BYTES" netlink-bad-input
tmp=$NET_WORKDIR
base=$BASE_IMG
make_cow $((BASE_BYTES + (2 << 20))) || tap_bail "no COW loop device"
cow=$COW_DEV
dev=/dev/mapper/$NAME
dm_create "$NAME" "$(rc_table "$LEN" "$cow" "$EXT" "file://$base")" ||
	tap_bail "cannot create $NAME"

status_fields() {	# present/total written faults helper
	dmsetup status "$NAME" | awk '{ print $5, $6, $7, $8 }'
}

line=$("$NL" devices 2>&1 | grep " name=$NAME ")
check "GET_DEVICE dump lists $NAME" test -n "$line"
ID=$(sed -n 's/^dev_id=\([0-9]*\) .*/\1/p' <<<"$line")
DOFF=$(sed -n 's/.* data_offset=\([0-9]*\).*/\1/p' <<<"$line")
tap_diag "device: $line"
{ [ -n "$ID" ] && [ -n "$DOFF" ]; } || tap_bail "no dev_id or data_offset in: $line"
BAD=$((ID + 1000))

# --- without CAP_NET_ADMIN ---------------------------------------------------
nl_refused "REGISTER without CAP_NET_ADMIN" EPERM --drop-caps register
nl_refused "UNREGISTER without CAP_NET_ADMIN" EPERM --drop-caps unregister
nl_refused "GET_DEVICE dump without CAP_NET_ADMIN" EPERM --drop-caps devices
nl_refused "GET_DEVICE without CAP_NET_ADMIN" EPERM --drop-caps device "$ID"
nl_refused "FILL_DONE without CAP_NET_ADMIN" EPERM --drop-caps fill-done "$ID" 1 0 0
nl_refused "HYDRATE without CAP_NET_ADMIN" EPERM --drop-caps hydrate "$ID" 0 1
nl_refused "GET_BITMAP without CAP_NET_ADMIN" EPERM --drop-caps get-bitmap "$ID" present 0

# --- FILL_DONE ------------------------------------------------------------------
nl_refused "FILL_DONE from a socket that is not the registered helper" EPERM \
	fill-done "$ID" 12345 0 0
nl_refused "FILL_DONE for a device id that does not exist" ENODEV fill-done "$BAD" 1 0 0
nl_refused "FILL_DONE naming an extent past the end, not the helper" EPERM \
	raw fill_done dev_id:u32:"$ID" cookie:u64:777 status:u32:0 \
	first_extent:u64:$((NR + 5)) extent_count:u32:1
nl_refused "QUIESCE_DONE from a socket that is not the registered helper" EPERM \
	quiesce-done "$ID" 1
nl_refused "FILL_DONE with device id 0" ERANGE fill-done 0 1 0 0
nl_refused "FILL_DONE with cookie 0" ERANGE fill-done "$ID" 0 0 0
nl_refused "FILL_DONE with a status above MAX_ERRNO" ERANGE fill-done "$ID" 1 0 4096
nl_refused "FILL_DONE without DEV_ID" EINVAL raw fill_done cookie:u64:1 first_extent:u64:0 status:u32:0
nl_refused "FILL_DONE without COOKIE" EINVAL \
	raw fill_done dev_id:u32:"$ID" first_extent:u64:0 status:u32:0
nl_refused "FILL_DONE without FIRST_EXTENT" EINVAL \
	raw fill_done dev_id:u32:"$ID" cookie:u64:1 status:u32:0
nl_refused "FILL_DONE without STATUS" EINVAL \
	raw fill_done dev_id:u32:"$ID" cookie:u64:1 first_extent:u64:0
nl_refused "FILL_DONE with DEV_ID as u64" EINVAL \
	raw fill_done dev_id:u64:"$ID" cookie:u64:1 first_extent:u64:0 status:u32:0
nl_refused "FILL_DONE with DEV_ID as u16" EINVAL \
	raw fill_done dev_id:u16:"$ID" cookie:u64:1 first_extent:u64:0 status:u32:0
nl_refused "FILL_DONE with an empty DEV_ID" EINVAL \
	raw fill_done dev_id:empty cookie:u64:1 first_extent:u64:0 status:u32:0
nl_refused "FILL_DONE with COOKIE as u32" EINVAL \
	raw fill_done dev_id:u32:"$ID" cookie:u32:1 first_extent:u64:0 status:u32:0
nl_refused "FILL_DONE with FIRST_EXTENT as u32" EINVAL \
	raw fill_done dev_id:u32:"$ID" cookie:u64:1 first_extent:u32:0 status:u32:0
nl_refused "FILL_DONE with STATUS as u8" EINVAL \
	raw fill_done dev_id:u32:"$ID" cookie:u64:1 first_extent:u64:0 status:u8:0
nl_refused "FILL_DONE with a string STATUS" EINVAL \
	raw fill_done dev_id:u32:"$ID" cookie:u64:1 first_extent:u64:0 status:str:0
nl_refused "FILL_DONE with an attribute outside the policy (DM_NAME)" EINVAL \
	raw fill_done dev_id:u32:"$ID" cookie:u64:1 first_extent:u64:0 status:u32:0 dm_name:str:x
nl_refused "FILL_DONE with an attribute beyond the maximum (200)" EINVAL \
	raw fill_done dev_id:u32:"$ID" cookie:u64:1 first_extent:u64:0 status:u32:0 200:u32:1
nl_refused "QUIESCE_DONE without COOKIE" EINVAL raw quiesce_done dev_id:u32:"$ID"
nl_refused "QUIESCE to the kernel (a kernel -> helper command)" EOPNOTSUPP \
	raw quiesce dev_id:u32:"$ID" cookie:u64:1

# --- HYDRATE -------------------------------------------------------------------
nl_refused "HYDRATE starting at the end ($NR)" ERANGE hydrate "$ID" "$NR" 1
nl_refused "HYDRATE running past the end" ERANGE hydrate "$ID" $((NR - 1)) 2
nl_refused "HYDRATE of 4096 extents on a $NR-extent device" ERANGE hydrate "$ID" 0 4096
nl_refused "HYDRATE with an overflowing range" ERANGE \
	raw hydrate dev_id:u32:"$ID" first_extent:u64:18446744073709551615 extent_count:u32:2
nl_refused "HYDRATE of zero extents" ERANGE hydrate "$ID" 0 0
nl_refused "HYDRATE of 4097 extents (over the maximum)" ERANGE hydrate "$ID" 0 4097
nl_refused "HYDRATE of an unknown device" ENODEV hydrate "$BAD" 0 1
nl_refused "HYDRATE without EXTENT_COUNT" EINVAL \
	raw hydrate dev_id:u32:"$ID" first_extent:u64:0
nl_refused "HYDRATE without FIRST_EXTENT" EINVAL \
	raw hydrate dev_id:u32:"$ID" extent_count:u32:1
nl_refused "HYDRATE with FIRST_EXTENT as u32" EINVAL \
	raw hydrate dev_id:u32:"$ID" first_extent:u32:0 extent_count:u32:1
nl_refused "HYDRATE with EXTENT_COUNT as u64" EINVAL \
	raw hydrate dev_id:u32:"$ID" first_extent:u64:0 extent_count:u64:1

# --- GET_BITMAP and GET_DEVICE --------------------------------------------------
nl_refused "GET_BITMAP from the end of the device" ERANGE get-bitmap "$ID" present "$NR"
nl_refused "GET_BITMAP far past the end" ERANGE get-bitmap "$ID" present 1048576
nl_refused "GET_BITMAP from an extent not a multiple of 8" EINVAL get-bitmap "$ID" present 3
nl_refused "GET_BITMAP of bitmap 5 (there are 5: 0-4)" ERANGE get-bitmap "$ID" 5 0
nl_refused "GET_BITMAP of an unknown device" ENODEV get-bitmap "$BAD" present 0
nl_refused "GET_BITMAP without BITMAP" EINVAL raw get_bitmap dev_id:u32:"$ID" first_extent:u64:0
nl_refused "GET_BITMAP with BITMAP as a string" EINVAL \
	raw get_bitmap dev_id:u32:"$ID" bitmap:str:present first_extent:u64:0
nl_refused "GET_DEVICE without DEV_ID" EINVAL raw get_device
nl_refused "GET_DEVICE of an unknown device" ENODEV device "$BAD"
nl_refused "GET_DEVICE with DEV_ID 0" ERANGE device 0

# --- commands the family does not take ------------------------------------------
nl_refused "FAULT sent to the kernel" EOPNOTSUPP \
	raw fault dev_id:u32:"$ID" first_extent:u64:0 extent_count:u32:1 cookie:u64:1
nl_refused "DEVICE_ADD sent to the kernel" EOPNOTSUPP raw device_add dev_id:u32:"$ID"
nl_refused "command number 0" EOPNOTSUPP raw 0
nl_refused "command number 200" EOPNOTSUPP raw 200

check_eq "nothing changed: 0/$NR present, 0 written, 0 faults, no helper" \
	"0/$NR 0 0 absent" "$(status_fields)"
bits=$("$NL" get-bitmap "$ID" present 0 2>&1)
check_eq "GET_BITMAP present from 0: $NR bits, all clear" \
	"first=0 count=$NR bits=$(printf '%0*d' "$NR" 0)" "$bits"

# --- one helper at a time ----------------------------------------------------------
"$NL" register 120 >"$tmp/reg.out" 2>&1 &
reg_pid=$!
at_exit "kill $reg_pid 2>/dev/null"
helper_is() { [ "$(dm_status_field "$NAME" 5)" = "$1" ]; }
check "a helper registers (status: connected)" wait_until 10 helper_is connected
nl_refused "a second helper while one is registered" EBUSY register
nl_refused "UNREGISTER from a socket that is not the helper" ENOENT unregister
nl_refused "a second helper listening for events" EBUSY listen 1 1000
check "the first helper is still the one registered" helper_is connected
check "the first helper is still running" kill -0 "$reg_pid"
kill "$reg_pid"
wait "$reg_pid" 2>/dev/null
check "its socket closed: status absent" wait_until 10 helper_is absent
check "a new helper may register now" "$NL" register

# --- a fault answered by hand ------------------------------------------------------
check_eq "HYDRATE extent 0 with no helper queues one fault" "queued=1" \
	"$("$NL" hydrate "$ID" 0 1 2>&1)"
check_eq "HYDRATE extent 0 again: already outstanding" "queued=0" \
	"$("$NL" hydrate "$ID" 0 1 2>&1)"
check_eq "status: one fault in flight" "0/$NR 0 1 absent" "$(status_fields)"
nl_session_start
sess register
check_eq "the session registers as the helper (status connected)" "0 connected" \
	"$SESS_RC $(dm_status_field "$NAME" 5)"
sess listen 1 5000
tap_diag "event: $SESS_OUT"
COOKIE=$(sed -n "s/^FAULT dev_id=$ID first_extent=0 extent_count=1 cookie=\([0-9]*\)$/\1/p" <<<"$SESS_OUT")
check "the outstanding fault is sent to the helper" test -n "$COOKIE"
COOKIE=${COOKIE:-1}
nl_refused "FILL_DONE for the real cookie without CAP_NET_ADMIN" EPERM \
	--drop-caps fill-done "$ID" "$COOKIE" 0 0
nl_refused "FILL_DONE for the real cookie from another socket" EPERM \
	fill-done "$ID" "$COOKIE" 0 0
sess_refused "FILL_DONE for the real cookie on another device id" ENODEV \
	fill-done "$BAD" "$COOKIE" 0 0
sess_refused "FILL_DONE for the next cookie (never sent)" ENOENT \
	fill-done "$ID" $((COOKIE + 1)) 0 0
sess_refused "FILL_DONE for the real cookie naming extent 1 (the fault is for 0)" EINVAL \
	fill-done "$ID" "$COOKIE" 1 0
sess_refused "FILL_DONE naming an extent past the end" EINVAL \
	fill-done "$ID" "$COOKIE" $((NR + 5)) 0
sess_refused "QUIESCE_DONE for a QUIESCE never sent" ENOENT quiesce-done "$ID" "$COOKIE"
check "copy extent 0 of the base into the COW data area" \
	dd if="$base" of="$cow" bs=512 count="$EXT" seek="$DOFF" oflag=direct \
	conv=notrunc status=none
sess fill-done "$ID" "$COOKIE" 0 0
check_eq "FILL_DONE for the real cookie from the helper is accepted" 0 "$SESS_RC"
sess_refused "FILL_DONE for the same cookie again" ENOENT fill-done "$ID" "$COOKIE" 0 0
check_eq "status: extent 0 present, no fault in flight" "1/$NR 0 0 connected" \
	"$(status_fields)"

# A fill reported failed leaves the extent missing.
check_eq "HYDRATE extent 1 queues one fault" "queued=1" "$("$NL" hydrate "$ID" 1 1 2>&1)"
sess listen 1 5000
COOKIE1=$(sed -n "s/^FAULT dev_id=$ID first_extent=1 extent_count=1 cookie=\([0-9]*\)$/\1/p" <<<"$SESS_OUT")
check "its FAULT is sent" test -n "$COOKIE1"
sess fill-done "$ID" "${COOKIE1:-1}" 1 5
check_eq "FILL_DONE with status EIO is accepted" 0 "$SESS_RC"
nls_in=${NLS[1]}
exec {nls_in}>&-
wait "$NLS_PID" 2>/dev/null
helper_is() { [ "$(dm_status_field "$NAME" 5)" = "$1" ]; }
check "the session's socket closed: status absent" wait_until 10 helper_is absent
check_eq "status: extent 1 still missing, nothing in flight" "1/$NR 0 0 absent" \
	"$(status_fields)"
check "extent 0 reads as the base with no helper" \
	cmp <(dd if="$dev" bs="$EXTB" count=1 iflag=direct status=none) \
	<(head -c "$EXTB" "$base")

# --- the device is still right ------------------------------------------------------
if helper_start; then tap_ok "rcow-fill starts"; else tap_not_ok "rcow-fill starts"; fi
check "the whole device equals the base" \
	cmp <(dd if="$dev" bs=1M iflag=direct status=none) "$base"
helper_stop
check_eq "rcow-fill filled the $((NR - 1)) other extents" "$((NR - 1))" \
	"$(helper_stat extents)"
check_eq "status: all present, nothing written, no fault, rw" \
	"$NR/$NR 0 0 absent rw" \
	"$(status_fields) $(rc_status "$NAME" mode)"
check "remove the device" dm_remove "$NAME"
check_eq "the base image is unchanged" "$BASE_SUM" "$(sha256_of "$base")"
losetup -d "$cow"
check "the module unloads" unload_module
tap_done
