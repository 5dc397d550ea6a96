#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The remote-cow CLI (tools/remote-cow, Documentation/man/remote-cow.8)
# against the kernel, with selftests/progs/rcow-fill answering faults from a
# file:// base:
#
# - --help of the tool and of every command, --version;
# - cow-size is the kernel's formula: a COW device of exactly that size
#   loads, one sector less is refused by the kernel (with the same figure in
#   its message), and refused by 'create' before anything is loaded (exit 5);
# - create / status / list / remove round trip: the table checked with
#   dmsetup table, status --json parsed and compared with dmsetup status,
#   data read through the device equal to the base;
# - status --field: each key, and all in one comma list, equal to its
#   position in dmsetup status (with a helper, while migrating, after a
#   commit, when complete); an unknown key and --field with --json are
#   usage errors (exit 2), a missing device exit 3;
# - options: unique prefixes of long options; --json is valid JSON for any
#   UTF-8 string (quotes escaped) and refused for bytes that are not UTF-8;
# - every bad input gives its message and exit status (2 usage, 3 no such
#   device, 4 not remote-cow, 5 COW too small, 1 refused by the kernel, with
#   the kernel's reason);
# - hydrate start/stop change the status line; --wait ends once every
#   extent is present, and fails when hydration is stopped;
# - commit starts (a helper is registered), a second is refused (exit 7),
#   abort stops it, a second abort exits 1; migrate send, finish and abort
#   change migrate_state, a second send is refused with the kernel's reason;
#   --postcopy puts "postcopy" first in the key file, finish --postcopy
#   sends "migrate finish postcopy".
# shellcheck disable=SC2119,SC2317	# helper_start: optional arguments; dm_gone called through check
. "$(dirname "$0")/lib.sh"
RCOW_HELPER=$RC_TREE/selftests/progs/rcow-fill
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup openssl python3 dd cmp setpriv
tap_plan 169

RC=$RC_TREE/tools/remote-cow
NAME="rc-cli"
NAME2="rc-cli-2"
LIN="rc-cli-linear"
EXT=128
BASE_BYTES=$(((3 << 20) + 1000))	# not a multiple of a sector: rounded up
LEN=$(((BASE_BYTES + 511) / 512))
NR=$(((LEN + EXT - 1) / EXT))

require_built "$RC"
require_built "$RCOW_HELPER"
load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
base=$tmp/base.img
make_base_image "$base" "$BASE_BYTES" cli >/dev/null || tap_bail "cannot make the base image"
# The device reads zeroes past the base's end.
cp "$base" "$tmp/base-padded.img" && truncate -s $((LEN * 512)) "$tmp/base-padded.img"

# expect_exit <desc> <exit status> <text in the output> <command...>
expect_exit() {
	local desc=$1 want=$2 text=$3 out rc
	shift 3
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		tap_not_ok "$desc" "command: $*" "exit $rc, expected $want" "output: $out"
		return 1
	fi
	if [[ $out != *"$text"* ]]; then
		tap_not_ok "$desc" "command: $*" "output lacks '$text'" "output: $out"
		return 1
	fi
	tap_ok "$desc"
}

# json <name> <python expression over d>: a value of 'status --json'.
json() {
	"$RC" status "$1" --json | python3 -c "import json, sys; d = json.load(sys.stdin); print($2)"
}

# new_cow <bytes>: a fresh zeroed COW loop device in COW_DEV.
new_cow() {
	make_cow "$1" || tap_bail "cannot make a COW loop device"
}

# ---------------------------------------------------------------------------
# --help, --version
# ---------------------------------------------------------------------------
expect_exit "remote-cow --help" 0 "Usage: remote-cow COMMAND" "$RC" --help
for c in create remove list status cow-size hydrate commit migrate receive check dump; do
	expect_exit "remote-cow $c --help" 0 "Usage: remote-cow $c" "$RC" "$c" --help
done
expect_exit "remote-cow help status" 0 "Usage: remote-cow status" "$RC" help status
expect_exit "remote-cow --version" 0 "remote-cow 0." "$RC" --version

# ---------------------------------------------------------------------------
# cow-size against the kernel
# ---------------------------------------------------------------------------
# cow_size_case <device length in bytes> <extent size> <expected bytes>:
# the figure (computed by hand from Documentation/remote-cow.rst), the
# kernel loading a COW of exactly that size and refusing one sector less.
cow_size_case() {
	local bytes=$1 ext=$2 expect=$3 need ext_s len_s out
	need=$("$RC" cow-size --size "$bytes" --extent-size "$ext" 2>&1)
	check_eq "cow-size --size $bytes --extent-size $ext" "$expect" "$need"
	ext_s=$(($("$RC" cow-size --size 512 --extent-size "$ext" -v | awk '/^extent size/ { print $3 }')))
	len_s=$((bytes / 512))

	new_cow "$need"
	kmsg_mark
	if dmsetup create "$NAME2" --table "$(rc_table "$len_s" "$COW_DEV" "$ext_s" "file://$base")" 2>/dev/null; then
		tap_ok "the kernel loads a COW device of exactly $need bytes ($ext extents)"
		dm_remove "$NAME2"
	else
		tap_not_ok "the kernel loads a COW device of exactly $need bytes ($ext extents)" \
			"$(dmesg_since_mark)"
	fi

	new_cow $((need - 512))
	kmsg_mark
	if dmsetup create "$NAME2" --table "$(rc_table "$len_s" "$COW_DEV" "$ext_s" "file://$base")" 2>/dev/null; then
		tap_not_ok "the kernel refuses one sector less" "loaded"
		dm_remove "$NAME2"
	else
		expect_dmesg "the kernel refuses one sector less: needs $((need / 512)) sectors" \
			"has $((need / 512 - 1)) sectors; needs $((need / 512)) "
	fi
	kmsg_mark
	expect_exit "create refuses it too (exit 5, the size it needs)" 5 \
		"it needs $((need / 512)) sectors" \
		"$RC" create "$NAME2" --cow "$COW_DEV" --base "file://$base" --size "$bytes" \
		--extent-size "$ext"
	out=$(dmesg_since_mark | grep -c remote-cow)
	check_eq "... before loading anything (no kernel log line)" 0 "$out"
}
# 64 KiB extents: 1 bitmap block each (two copies), metadata 88 sectors -> 1 MiB.
cow_size_case "$((LEN * 512))" 64K $(((2048 + LEN) * 512))
# 4 KiB extents over 20 GiB: 5242880 extents, 163 blocks per bitmap of
# 32256 extents, (1 + 5 * 2 * 163) * 8 = 13048 sectors, rounded up to
# 1 MiB: 14336.
cow_size_case $((20 << 30)) 4K $(((14336 + (20 << 21)) * 512))
# 4 MiB extents: the data area is aligned to the extent, 8192 sectors.
cow_size_case $((64 << 20)) 4M $(((8192 + (64 << 11)) * 512))
expect_exit "cow-size --base reads the base's size" 0 "$(((2048 + LEN) * 512))" \
	"$RC" cow-size --base "file://$base"

# ---------------------------------------------------------------------------
# create, status, list, remove
# ---------------------------------------------------------------------------
need=$("$RC" cow-size --base "file://$base")
new_cow "$need"
cow=$COW_DEV
cow_mm=$(lsblk -dno MAJ:MIN "$cow" | tr -d ' ')
kmsg_mark
expect_exit "create $NAME over file:// (length from the base)" 0 "created /dev/mapper/$NAME" \
	"$RC" create "$NAME" --cow "$cow" --base "file://$base" --fault-timeout 30000
at_exit "dm_remove $NAME"
check "/dev/mapper/$NAME is a block device" test -b "/dev/mapper/$NAME"
check_eq "dmsetup table: the contract line" \
	"0 $LEN remote-cow $cow_mm $EXT file://$base 2 fault_timeout 30000" \
	"$(dmsetup table "$NAME" 2>&1)"
uuid=$(dmsetup info -c --noheadings -o uuid "$NAME" 2>&1)
check "uuid starts with REMOTE-COW- ($uuid)" test "${uuid#REMOTE-COW-}" != "$uuid"

# compare_status <desc>: status --json against dmsetup status and table.
# A status line of 12 fields has commit_gen after the commit's progress;
# one of 11 (a module from before snapshot commit) has not.
compare_status() {
	local st js gen=()
	read -r -a st <<<"$(dmsetup status "$NAME")"
	[ "${#st[@]}" -lt 15 ] || gen=("d['commit_gen'],")
	js=$(json "$NAME" "' '.join(str(x) for x in (d['sectors'], d['extent_sectors'], \
'%d/%d' % (d['extents_present'], d['extents_total']), d['extents_written'], \
d['faults_in_flight'], d['helper'], d['commit_state'], \
'%d/%d' % (d['commit_done'], d['commit_total']), ${gen[*]} d['migrate_state'], \
'%d/%d' % (d['migrate_done'], d['migrate_total']), d['hydrate_state'], d['metadata_mode']))" 2>&1)
	check_eq "$1" "${st[1]} ${st[*]:3}" "$js"
}
compare_status "status --json: every field equals dmsetup status (nothing present)"

# status_fields <name>: "key=value" a line for every field 'status --field'
# knows, taken from dmsetup status by position (Documentation/
# remote-cow.rst): commit_gen after the commit's progress in a line of 12
# fields, 0 in one of 11.
status_fields() {
	local st o=0 g=0
	read -r -a st <<<"$(dmsetup status "$1")"
	if [ "${#st[@]}" -ge 15 ]; then
		o=1 g=${st[10]}
	fi
	printf '%s\n' "extent_sectors=${st[3]}" "present=${st[4]%/*}" "total=${st[4]#*/}" \
		"written=${st[5]}" "faults_in_flight=${st[6]}" "helper=${st[7]}" \
		"commit_state=${st[8]}" "commit_done=${st[9]%/*}" "commit_total=${st[9]#*/}" \
		"commit_gen=$g" "migrate_state=${st[10 + o]}" "migrate_done=${st[11 + o]%/*}" \
		"migrate_total=${st[11 + o]#*/}" "hydrate_state=${st[12 + o]}" \
		"metadata_mode=${st[13 + o]}"
}

# compare_fields <desc> [each]: status --field with every key as one comma
# list (one value a line, in its order) against dmsetup status; with
# "each", also every key on its own (15 more checks).
compare_fields() {
	local kv keys=() want=()
	while IFS= read -r kv; do
		keys+=("${kv%%=*}") want+=("${kv#*=}")
		[ "${2-}" != each ] ||
			check_eq "$1: --field ${kv%%=*}" "${kv#*=}" \
				"$("$RC" status "$NAME" --field "${kv%%=*}" 2>&1)"
	done < <(status_fields "$NAME")
	check_eq "$1: --field with all ${#keys[@]} keys, in order" "$(printf '%s\n' "${want[@]}")" \
		"$("$RC" status "$NAME" --field "$(IFS=,; echo "${keys[*]}")" 2>&1)"
}
check_eq "status --json: table fields" "$cow_mm file://$base 30000 True $NAME $uuid" \
	"$(json "$NAME" "d['cow_dev'], d['base_uri'], d['fault_timeout_ms'], d['discard_passdown'], d['name'], d['uuid']" 2>&1 | tr -d "(),'")"
check_eq "status --json: state partial, size in bytes" "partial $((LEN * 512)) 65536" \
	"$(json "$NAME" "d['state'], d['size_bytes'], d['extent_bytes']" 2>&1 | tr -d "(),'")"

helper_start || tap_bail "rcow-fill did not start"
off=$((1 << 20))
dd if="/dev/mapper/$NAME" of="$tmp/read.bin" bs=64K skip=16 count=8 iflag=direct status=none
check "read through the device equals the base" \
	cmp "$tmp/read.bin" <(tail -c +$((off + 1)) "$base" | head -c $((8 << 16)))
compare_status "status --json after a read and with a helper: equals dmsetup status"
check_eq "status --json: 8 extents present, helper connected" "8 connected" \
	"$(json "$NAME" "d['extents_present'], d['helper']" 2>&1 | tr -d "(),'")"
compare_fields "status --field after a read, with a helper" each
check_eq "status --field: a comma list in the order given, a key twice" \
	"$(printf '%s\n' connected 8 "$NR" connected)" \
	"$("$RC" status "$NAME" --field helper,present,total,helper 2>&1)"
expect_exit "status --field of an unknown key: exit 2, the keys listed" 2 \
	"unknown field 'faults'; the fields are: extent_sectors present total written faults_in_flight" \
	"$RC" status "$NAME" --field faults
expect_exit "status --field with --json: exit 2" 2 "--field and --json do not go together" \
	"$RC" status "$NAME" --json --field present
human=$("$RC" status "$NAME" 2>&1)
check "status: present line in words" grep -qx "present: *8 of $NR extents (.*)" <<<"$human"
check "status: helper and base lines" \
	grep -q "helper: *connected" <<<"$human"

dmsetup create "$LIN" --table "0 2048 linear $cow 0" || tap_bail "cannot create $LIN"
at_exit "dm_remove $LIN"
lst=$("$RC" list 2>&1)
tap_diag "$lst"
check "list: $NAME with size, extent, present/total, state" \
	grep -qE "^$NAME +3\.0 MiB +64 KiB +8/$NR \(.*\) +partial$" <<<"$lst"
check_fails "list: the linear device is not listed" grep -q "$LIN" <<<"$lst"
check_eq "list --json: the same device and figures" "$NAME 8 $NR" \
	"$("$RC" list --json | python3 -c "import json, sys
for d in json.load(sys.stdin):
    if d['name'] == '$NAME': print(d['name'], d['extents_present'], d['extents_total'])" 2>&1)"

check_eq "status --js (a unique prefix of --json)" "$NAME" \
	"$("$RC" status "$NAME" --js | python3 -c "import json, sys; print(json.load(sys.stdin)['name'])" 2>&1)"

# JSON of any string: a device name in UTF-8 with quotes comes out as
# valid JSON with the same characters; a name that is not UTF-8 is refused
# (exit 1, naming the field, nothing on standard output) rather than
# printed as JSON that is not.  (libdevmapper may store either name hex-
# mangled in the kernel: 'list' then shows the mangled, ASCII, form.)
NAME3="rc-cli-caf$(printf '\xc3\xa9')\"q\""
new_cow "$need"
expect_exit "create a device named in UTF-8 with quotes" 0 "created" \
	"$RC" create "$NAME3" --cow "$COW_DEV" --base "file://$base"
at_exit "dm_remove '$NAME3'"
check_eq "status --json: the UTF-8 name, quotes escaped" "$NAME3" \
	"$(json "$NAME3" "d['name']" 2>&1)"
check "list --json: valid JSON with it" \
	python3 -c "import json, sys; json.loads(sys.argv[1])" "$("$RC" list --json)"
dm_remove "$NAME3"
NAME4="rc-cli-b$(printf '\xff')d"
new_cow "$need"
expect_exit "create a device whose name is not UTF-8" 0 "created" \
	"$RC" create "$NAME4" --cow "$COW_DEV" --base "file://$base"
at_exit "dm_remove '$NAME4'"
expect_exit "status --json of it: exit 1, the name shown as \\xff" 1 \
	"device 'rc-cli-b\\xffd': its name 'rc-cli-b\\xffd' is not valid UTF-8" \
	"$RC" status "$NAME4" --json
check_eq "... and nothing on standard output" "" "$("$RC" status "$NAME4" --json 2>/dev/null)"
list_json_ok() {	# valid JSON, or exit 1 with nothing on stdout
	local out rc
	out=$("$RC" list --json 2>/dev/null)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		python3 -c "import json, sys; json.loads(sys.argv[1])" "$out"
	else
		[ "$rc" -eq 1 ] && [ -z "$out" ]
	fi
}
check "list --json with it: valid JSON, or refused (exit 1) with nothing printed" list_json_ok
expect_exit "status without --json shows it" 0 "present:" "$RC" status "$NAME4"
dm_remove "$NAME4"

# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
expect_exit "unknown command: exit 2" 2 "unknown command 'frobnicate'" "$RC" frobnicate
expect_exit "no command: exit 2" 2 "Usage:" "$RC"
expect_exit "list as a user other than root: exit 1, needs root" 1 "it needs root" \
	setpriv --reuid=65534 --regid=65534 --clear-groups "$RC" list
expect_exit "unknown option: exit 2" 2 "unknown option '--bogus'" "$RC" list --bogus
expect_exit "unknown short option: exit 2, named as an option" 2 "unknown option '-x'" \
	"$RC" status "$NAME" -x
expect_exit "an ambiguous prefix: exit 2, the candidates named" 2 \
	"option '--co' is ambiguous: --cow, --config" "$RC" create x --co "$cow"
expect_exit "a value given to an option without one: exit 2" 2 \
	"option '--json' takes no value" "$RC" status "$NAME" --json=yes
expect_exit "create without --cow: exit 2" 2 "missing --cow" \
	"$RC" create x --base "file://$base"
expect_exit "create with an http:// URI: exit 2" 2 "unsupported URI scheme 'http'" \
	"$RC" create x --cow "$cow" --base http://example.com/x
expect_exit "create with credentials in the URI: exit 2" 2 "user information" \
	"$RC" create x --cow "$cow" --base nbd://user:secret@example.com/x
expect_exit "create with a 3K extent: exit 2" 2 "must be a power of two from 4K to 4M" \
	"$RC" create x --cow "$cow" --base "file://$base" --extent-size 3K
expect_exit "create with an 8M extent: exit 2" 2 "must be a power of two from 4K to 4M" \
	"$RC" create x --cow "$cow" --base "file://$base" --extent-size 8M
expect_exit "create with size 12x: exit 2" 2 "bad size '12x': not a size" \
	"$RC" create x --cow "$cow" --base "file://$base" --size 12x
expect_exit "create with a size not a multiple of 512: exit 2" 2 "multiple of 512" \
	"$RC" create x --cow "$cow" --base "file://$base" --size 1000
expect_exit "create with a bad fault timeout: exit 2" 2 "bad fault timeout" \
	"$RC" create x --cow "$cow" --base "file://$base" --fault-timeout 86400001
expect_exit "create with a bad name: exit 2" 2 "bad device name" \
	"$RC" create a/b --cow "$cow" --base "file://$base"
expect_exit "create with a COW that is a file: exit 2" 2 "is not a block device" \
	"$RC" create x --cow "$base" --base "file://$base"
expect_exit "create with a base that does not exist: exit 1" 1 "cannot open the base" \
	"$RC" create x --cow "$cow" --base "file://$tmp/nonexistent.img"
expect_exit "create with an existing name: exit 1" 1 "exists already" \
	"$RC" create "$NAME" --cow "$cow" --base "file://$base"
new_cow $((4 << 20))
small=$COW_DEV
kmsg_mark
expect_exit "create over a too small COW: exit 5" 5 \
	"it needs $((need / 512)) sectors (" \
	"$RC" create "$NAME2" --cow "$small" --base "file://$base"
check_fails "... refused before loading: no device" dm_exists "$NAME2"
check_eq "... and no kernel log line" 0 "$(dmesg_since_mark | grep -c remote-cow)"
# A COW formatted for another geometry: refused by the kernel, whose
# reason is printed.
new_cow "$need"
other=$COW_DEV
"$RC" create "$NAME2" --cow "$other" --base "file://$base" --extent-size 4K >/dev/null &&
	"$RC" remove "$NAME2" >/dev/null
expect_exit "create over a COW formatted for 4K extents: exit 1, the kernel's reason" 1 \
	"kernel: device-mapper: table:" \
	"$RC" create "$NAME2" --cow "$other" --base "file://$base"
check_fails "... no device left behind" dm_exists "$NAME2"
expect_exit "status of a missing device: exit 3" 3 "no such device" "$RC" status nonexistent
expect_exit "remove of a missing device: exit 3" 3 "no such device" "$RC" remove nonexistent
expect_exit "hydrate of a missing device: exit 3" 3 "no such device" \
	"$RC" hydrate nonexistent start
expect_exit "status of a linear device: exit 4" 4 "not a remote-cow device" "$RC" status "$LIN"
expect_exit "status --field of a missing device: exit 3" 3 "no such device" \
	"$RC" status nonexistent --field present
expect_exit "status --field of a linear device: exit 4" 4 "not a remote-cow device" \
	"$RC" status "$LIN" --field present
expect_exit "remove of a linear device: exit 4" 4 "not a remote-cow device" "$RC" remove "$LIN"
check "... which still exists" dm_exists "$LIN"
expect_exit "commit on a linear device: exit 4" 4 "not a remote-cow device" \
	"$RC" commit "$LIN" --to nbd://example.com/x
expect_exit "hydrate with a bad rate: exit 2" 2 "bad rate" "$RC" hydrate "$NAME" start --rate -3
expect_exit "hydrate with a bad action: exit 2" 2 "unknown action 'go'" "$RC" hydrate "$NAME" go
expect_exit "migrate send to a bad destination: exit 2" 2 "bad destination" \
	"$RC" migrate "$NAME" send nohost
expect_exit "migrate with a bad action: exit 2" 2 "unknown action" "$RC" migrate "$NAME" go
expect_exit "migrate --to without --psk: exit 2" 2 "--to needs --psk" \
	"$RC" migrate "$NAME" --to 10.0.0.2:7777
expect_exit "migrate with a file that is not a PSK: exit 2" 2 "no identity:hexkey line" \
	"$RC" migrate "$NAME" --to 10.0.0.2:7777 --psk /dev/null
expect_exit "migrate send --postcopy without a key: exit 2" 2 "--postcopy goes with the key" \
	"$RC" migrate "$NAME" send 10.0.0.2:7777 --postcopy
expect_exit "migrate abort --postcopy: exit 2" 2 "--postcopy goes with --to or finish" \
	"$RC" migrate "$NAME" abort --postcopy
expect_exit "migrate of a group naming a device twice: exit 2" 2 "named twice" \
	"$RC" migrate "$NAME" "$NAME" --to 10.0.0.2:7777 --psk /dev/null
expect_exit "receive without --listen: exit 2" 2 "needs --cow DEV --base URI --listen" \
	"$RC" receive rc-cli-recv --cow /dev/null --base file:///x --psk /dev/null
expect_exit "receive with a bad listen address: exit 2" 2 "bad listen address" \
	"$RC" receive rc-cli-recv --cow /dev/null --base file:///x --psk /dev/null --listen x
expect_exit "receive of two devices with one --cow and one --base: exit 2" 2 \
	"one --cow and one --base per NAME" "$RC" receive a b --cow /dev/null --base file:///x \
	--listen 127.0.0.1:7777 --psk /dev/null
expect_exit "commit with a bad URI: exit 2" 2 "bad target URI" \
	"$RC" commit "$NAME" --to ftp://x/y
expect_exit "cow-size with neither --size nor --base: exit 2" 2 "give either" "$RC" cow-size
expect_exit "cow-size with size 0: exit 2" 2 "non-zero multiple of 512" \
	"$RC" cow-size --size 0

# ---------------------------------------------------------------------------
# commit and migrate: the kernel's answer
# ---------------------------------------------------------------------------
# A helper is registered here (rcow-fill, which uploads nothing): a commit
# starts, a second one is refused (exit 7), --abort stops it, and a second
# --abort finds none (exit 1); each with its reason.
for m in "commit $NAME --to nbd://example.com/new|0|commit 1 frozen" \
	"commit $NAME --to nbd://example.com/new|7|a commit is already running on $NAME" \
	"commit $NAME --abort|0|abort requested" \
	"commit $NAME --abort|1|no commit is running on $NAME"; do
	IFS='|' read -r cmd want text <<<"$m"
	read -r -a words <<<"$cmd"
	out=$("$RC" "${words[@]}" 2>&1)
	rc=$?
	if [ "$rc" -eq "$want" ] && [[ $out == *"$text"* ]]; then
		tap_ok "$cmd: exit $want, '$text'"
	else
		tap_not_ok "$cmd: exit $want, '$text'" "exit $rc" "$out"
	fi
done
compare_fields "status --field after a commit"
check_eq "... commit_gen 1 (the commit's generation)" 1 \
	"$("$RC" status "$NAME" --field commit_gen 2>&1)"
# migrate: the kernel takes the migration (rcow-fill ignores its events,
# so it stays where the messages put it); a second send is refused with
# the kernel's reason; abort before done returns the device to idle.
expect_exit "migrate send 10.0.0.2:7777: accepted" 0 "accepted" \
	"$RC" migrate "$NAME" send 10.0.0.2:7777
check_eq "... status: copying" copying "$(rc_status "$NAME" migrate_state)"
compare_fields "status --field while copying"
out=$("$RC" migrate "$NAME" send 10.0.0.2:7777 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && [[ $out == *"kernel: device-mapper: remote-cow: "* ]]; then
	tap_ok "a second migrate send: exit 1, the kernel's reason printed"
else
	tap_not_ok "a second migrate send: exit 1, the kernel's reason printed" "exit $rc" "$out"
fi
expect_exit "migrate finish: accepted" 0 "accepted" "$RC" migrate "$NAME" finish
check_eq "... status: finishing" finishing "$(rc_status "$NAME" migrate_state)"
expect_exit "migrate abort: accepted" 0 "accepted" "$RC" migrate "$NAME" abort
check_eq "... status: idle" idle "$(rc_status "$NAME" migrate_state)"
# Post-copy chosen at the start: the key file handed to remote-cowd says
# so on its first line; chosen at finish: the kernel message says so.
PCDIR=$(mktemp -d)
printf 'cli:%s\n' 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \
	>"$PCDIR/key.psk"
expect_exit "migrate --to --postcopy: accepted" 0 "accepted" \
	"$RC" migrate "$NAME" --to 10.0.0.2:7777 --psk "$PCDIR/key.psk" --postcopy \
	--run-dir "$PCDIR/run"
check_eq "... the key file's first line: postcopy" postcopy \
	"$(head -n 1 "$PCDIR/run/migrate/send-$NAME.psk" 2>&1)"
check_eq "... its second line: the key" "$(cat "$PCDIR/key.psk")" \
	"$(sed -n 2p "$PCDIR/run/migrate/send-$NAME.psk" 2>&1)"
expect_exit "migrate finish --postcopy: accepted" 0 "'migrate finish postcopy' accepted" \
	"$RC" migrate "$NAME" finish --postcopy
check_eq "... status: finishing" finishing "$(rc_status "$NAME" migrate_state)"
expect_exit "migrate abort before the destination serves: accepted" 0 "accepted" \
	"$RC" migrate "$NAME" abort
check_eq "... status: idle" idle "$(rc_status "$NAME" migrate_state)"
rm -rf "$PCDIR"

# ---------------------------------------------------------------------------
# hydrate
# ---------------------------------------------------------------------------
expect_exit "hydrate start" 0 "" "$RC" hydrate "$NAME" start
check_eq "... status: hydrating" hydrating "$(rc_status "$NAME" hydrate_state)"
check_eq "... status --json: hydrating" "hydrating hydrating" \
	"$(json "$NAME" "d['hydrate_state'], d['state']" 2>&1 | tr -d "(),'")"
expect_exit "hydrate stop" 0 "" "$RC" hydrate "$NAME" stop
check_eq "... status: idle" idle "$(rc_status "$NAME" hydrate_state)"
expect_exit "hydrate start --rate 7" 0 "" "$RC" hydrate "$NAME" start --rate 7
check_eq "... status: hydrating" hydrating "$(rc_status "$NAME" hydrate_state)"
# rcow-fill does not stream: --wait waits until the hydration is stopped.
"$RC" hydrate "$NAME" start --wait >"$tmp/wait.out" 2>&1 &
wpid=$!
sleep 2
check "hydrate --wait waits while extents are missing" kill -0 "$wpid"
"$RC" hydrate "$NAME" stop >/dev/null
wait_pid "$wpid" 20
rc=$?
check_eq "... and fails (exit 1) once hydration is stopped" 1 "$rc"
check "... saying so" grep -q "hydration was stopped before every extent was present" \
	"$tmp/wait.out"
# Every extent read in by rcow-fill, then --wait returns at once.
check "read the whole device: equal to the base (zero-padded)" \
	cmp "/dev/mapper/$NAME" "$tmp/base-padded.img"
expect_exit "hydrate start --wait on a complete device: exit 0" 0 \
	"$NAME: hydrated: every extent is in the COW device" \
	"$RC" hydrate "$NAME" start --wait
check_eq "status --json: complete, $NR/$NR" "complete $NR $NR" \
	"$(json "$NAME" "d['state'], d['extents_present'], d['extents_total']" 2>&1 | tr -d "(),'")"
compare_status "status --json when complete: equals dmsetup status"
compare_fields "status --field when complete"

# ---------------------------------------------------------------------------
# remove
# ---------------------------------------------------------------------------
exec 3<"/dev/mapper/$NAME"
expect_exit "remove of an open device: exit 1, in use" 1 "the device is in use" \
	"$RC" remove "$NAME"
check "... it still exists" dm_exists "$NAME"
exec 3<&-
expect_exit "remove $NAME" 0 "removed $NAME" "$RC" remove "$NAME"
check_fails "... the device is gone" dm_exists "$NAME"
check_fails "... and its /dev/mapper node" test -e "/dev/mapper/$NAME"
check_fails "list no longer shows it" grep -q "^$NAME " <<<"$("$RC" list 2>&1)"

# Re-created over the same COW device: the data is still there.
expect_exit "create again over the same COW device" 0 "created" \
	"$RC" create "$NAME" --cow "$cow" --base "file://$base" --fault-timeout 30000
check_eq "every extent still present" "$NR/$NR" "$(dm_status_field "$NAME" 2)"
exec 3<"/dev/mapper/$NAME"
expect_exit "remove --force of an open device: removed once closed" 0 \
	"will be removed when it is closed" "$RC" remove "$NAME" --force
check_fails "... I/O on it fails meanwhile" dd bs=64K count=1 iflag=direct of=/dev/null <&3
exec 3<&-
dm_gone() { ! dm_exists "$NAME"; }
check "... the device is gone once closed" wait_until 10 dm_gone

helper_stop
dm_remove "$LIN"
check_eq "list --json with no device of ours" "0" \
	"$("$RC" list --json | python3 -c "import json, sys
print(len([d for d in json.load(sys.stdin) if d['name'].startswith('rc-cli')]))" 2>&1)"

tap_done
