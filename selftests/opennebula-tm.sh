#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# The OpenNebula transfer-manager driver tools/opennebula/tm/remote-cow,
# each action called as the front-end calls it (OpenNebula's argument
# conventions: host:path pairs, VM id, datastore id).  Two hosts are
# network namespaces (one-h1, one-h2) routed through this one, the
# "front-end", to the image repository (the namespace of lib-net.sh, an NBD
# server there); the driver's remote execution is a stand-in for ssh that
# runs the command in the host's namespace.  remote-cowd runs here and
# serves the devices of both hosts (one kernel).
#
# Checked: clone reads back the base through the disk symlink; a second
# clone of the same disk is refused; cpds copies the written device, not
# the base; snap_create publishes the disk as it was at that instant, which a
# clone on the other host reads back exactly; ln + mvds puts a persistent
# disk's content back into its image file and removes the device; delete
# leaves no device, COW file, loop device or symlink, is refused while the
# device is open, and is idempotent; a failed clone leaves nothing; bad
# arguments fail with a message.  Live migration of a VM's two disks from
# h1 to h2: premigrate, writes while it runs, postmigrate: h2's devices read
# exactly the sources after the last write, nothing is left on h1, repeats
# are harmless, failmigrate then is refused; premigrate, writes, failmigrate:
# the source reads what was written and takes writes, nothing is left on
# h2; a wrong argument count, a missing key file and a postmigrate without
# a migration fail with a message and change nothing.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; cleanups through at_exit
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-commit.sh"

require_vm
require_commit_env
TM=$RC_TREE/tools/opennebula/tm/remote-cow
require_built "$TM/clone" "$TM/delete" "$TM/cpds" "$TM/mvds" "$TM/snap_create" "$TM/premigrate" \
	"$TM/postmigrate" "$TM/failmigrate"
tap_plan 74

EXT=128				# 64 KiB extents
EXTB=$((EXT * 512))
BYTES=$((16 << 20))		# 256 extents
VPORT=10812			# a published snapshot served as a base

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup
net_serve_base "$BYTES" opennebula-tm
BASE_URI=$(net_uri)

# ---------------------------------------------------------------------------
# Two hosts: namespaces one-h<i> behind veth pairs, 10.97.<i>.2 there,
# 10.97.<i>.1 here; this namespace forwards to the repository (10.99.0.2).
# ---------------------------------------------------------------------------
host_teardown() {
	local i=$1 p
	if ip netns list 2>/dev/null | grep -qw "one-h$i"; then
		for p in $(ip netns pids "one-h$i" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null
		done
		ip netns del "one-h$i" 2>/dev/null
	fi
	ip link del "rcow-o$i" 2>/dev/null
	return 0
}

host_setup() {
	local i=$1
	host_teardown "$i"
	at_exit "host_teardown $i"
	ip netns add "one-h$i" &&
		ip link add "rcow-o$i" type veth peer name "rcow-q$i" &&
		ip link set "rcow-q$i" netns "one-h$i" &&
		ip addr add "10.97.$i.1/24" dev "rcow-o$i" &&
		ip link set "rcow-o$i" up &&
		ip netns exec "one-h$i" ip link set lo up &&
		ip netns exec "one-h$i" ip addr add "10.97.$i.2/24" dev "rcow-q$i" &&
		ip netns exec "one-h$i" ip link set "rcow-q$i" up &&
		ip netns exec "one-h$i" ip route add default via "10.97.$i.1"
}

host_setup 1 || tap_bail "cannot make host 1"
host_setup 2 || tap_bail "cannot make host 2"
at_exit "sysctl -qw net.ipv4.ip_forward=$(sysctl -n net.ipv4.ip_forward)"
sysctl -qw net.ipv4.ip_forward=1 || tap_bail "cannot enable forwarding"
nsx ip route add 10.97.0.0/16 via "$NET_HOST_IP" || tap_bail "no route back from the repository"
ip netns exec one-h2 timeout 10 nbdinfo --size "$BASE_URI" >/dev/null ||
	tap_bail "host 2 does not reach the repository at $BASE_URI"

helper_start || tap_bail "remote-cowd does not start"

# The driver's "ssh": run the command in the host's namespace.
# Each host also has a file tree of its own at $NET_WORKDIR/host (its
# $NET_WORKDIR/h<i> mounted there, in the mount namespace of 'ip netns
# exec'): a VM directory there is one path with a different content on
# each host, as OpenNebula's REMOTE_SYSTEM_DIR is.
cat >"$NET_WORKDIR/fake-ssh" <<'EOF'
#!/bin/bash
# fake-ssh HOST COMMAND: as 'ssh HOST COMMAND', HOST being a namespace.
echo "$1" >>"${0%/*}/ssh.log"
exec ip netns exec "one-$1" bash -c 'mount --bind "$1" "$2" && exec bash -c "$3"' \
	fake-ssh "${0%/*}/$1" "${0%/*}/host" "$2"
EOF
mkdir -p "$NET_WORKDIR/host"
chmod +x "$NET_WORKDIR/fake-ssh"
export RCOW_ONE_SSH=$NET_WORKDIR/fake-ssh
export RCOW_ONE_CLI=$RC_TREE/tools/remote-cow
export RCOW_ONE_CONF=/dev/null
export RCOW_ONE_SNAP_URI="nbd://$NET_SRV_IP:$TARGET_PORT/snap-%VMID%-%DISK_ID%-%SNAP_ID%"

SYS1=$NET_WORKDIR/h1/datastores/0	# the system datastore on each host
SYS2=$NET_WORKDIR/h2/datastores/0
IMG=$NET_WORKDIR/fe/datastores/1	# the image datastore on the front-end
mkdir -p "$SYS1" "$SYS2" "$IMG"

# Devices the driver makes are removed at exit, whatever happened.
cleanup_dev() {	# cleanup_dev <dm name> <cow file>
	local l
	dm_remove "$1"
	for l in $(losetup -j "$2" -n -O NAME 2>/dev/null); do
		losetup -d "$l"
	done
}
for d in 1/7/disk.0 1/7/disk.2 2/8/disk.0 2/8/disk.1 1/9/disk.0; do
	n=${d%/disk.*}
	at_exit "cleanup_dev one-${n#*/}-${d##*.} '$NET_WORKDIR/h${d%%/*}/datastores/0/${d#*/}.rcow-cow'"
done
# The migration's devices (named one-h<i>-VMID-i, see below).
for d in 10/disk.0 10/disk.1 11/disk.0; do
	for i in 1 2; do
		at_exit "cleanup_dev one-h$i-${d%/disk.*}-${d##*.} '$NET_WORKDIR/h$i/datastores/0/$d.rcow-cow'"
	done
done

# tm_refused <desc> <text> <action> <args...>: one test, passed when the
# action fails and its message has the text.
tm_refused() {
	local desc=$1 text=$2 action=$3 out rc
	shift 3
	out=$("$TM/$action" "$@" 2>&1 </dev/null)
	rc=$?
	if [ "$rc" -ne 0 ] && [[ $out == *"$text"* ]]; then
		tap_ok "$desc"
	else
		tap_not_ok "$desc" "command: $action $*" "exit $rc, expected non-zero and '$text': $out"
	fi
}

# gone <dm name> <disk path>: no device, no COW file, no loop device on it,
# no symlink; prints what is left.
gone() {
	local left=()
	dm_exists "$1" && left+=("device $1")
	[ -e "$2.rcow-cow" ] && left+=("COW file $2.rcow-cow")
	[ -n "$(losetup -j "$2.rcow-cow" 2>/dev/null)" ] && left+=("loop on $2.rcow-cow")
	{ [ -e "$2" ] || [ -L "$2" ]; } && left+=("$2")
	[ ${#left[@]} -eq 0 ] || { echo "left: ${left[*]}"; return 1; }
}

# ---------------------------------------------------------------------------
# clone on host 1
# ---------------------------------------------------------------------------
D70=$SYS1/7/disk.0
check "clone fe:$BASE_URI h1:.../7/disk.0 7 1" "$TM/clone" "fe:$BASE_URI" "h1:$D70" 7 1
check_eq "the clone ran on host 1" h1 "$(head -n1 "$NET_WORKDIR/ssh.log" 2>/dev/null)"
check_eq "disk.0 is a symlink to /dev/mapper/one-7-0" /dev/mapper/one-7-0 \
	"$(readlink "$D70" 2>/dev/null)"
check_eq "the disk reads back the base" "$BASE_SUM" "$(sha256_of "$D70")"
tm_refused "a second clone of the same disk is refused" "already exists" \
	clone "fe:$BASE_URI" "h1:$D70" 7 1
check_eq "... and the disk is still the first device" /dev/mapper/one-7-0 "$(readlink "$D70")"

# ---------------------------------------------------------------------------
# cpds: the written device, not the base
# ---------------------------------------------------------------------------
write_extents "$D70" "$EXTB" one-w1 10 20 || tap_bail "cannot write to $D70"
sum_w1=$(sha256_of "$D70")
check "the written disk differs from the base" test "$sum_w1" != "$BASE_SUM"
check "cpds h1:.../7/disk.0 fe:$IMG/saved -1 7 1" "$TM/cpds" "h1:$D70" "fe:$IMG/saved" -1 7 1
check_eq "the saved image equals the disk" "$sum_w1" "$(sha256_of "$IMG/saved")"
check_eq "the disk is still there after cpds" "$sum_w1" "$(sha256_of "$D70")"

# ---------------------------------------------------------------------------
# snap_create: a point-in-time version, cloned on host 2
# ---------------------------------------------------------------------------
write_extents "$D70" "$EXTB" one-w2 100 8 || tap_bail "cannot write to $D70"
sync
sum_snap=$(sha256_of "$D70")
target_overlay "$NET_WORKDIR/snap.qcow2" "$BASE_IMG" raw snap-7-0-0 ||
	tap_bail "cannot serve the snapshot target"
check "snap_create h1:.../7/disk.0 0 7 1" "$TM/snap_create" "h1:$D70" 0 7 1
write_extents "$D70" "$EXTB" one-w3 200 4 || tap_bail "cannot write to $D70"
target_stop
check_eq "the published snapshot is the disk at snap_create" "$sum_snap" \
	"$(published_sha256 "$NET_WORKDIR/snap.qcow2" qcow2)"

ip netns exec "$NET_NS" qemu-nbd -r -f qcow2 --persistent --shared=8 -b "$NET_SRV_IP" \
	-p "$VPORT" -x v1 "$NET_WORKDIR/snap.qcow2" >>"$NET_WORKDIR/version.log" 2>&1 &
at_exit "net_server_kill $!"
V1_URI="nbd://$NET_SRV_IP:$VPORT/v1"
wait_until 10 nbdinfo --size "$V1_URI" >/dev/null 2>&1 || tap_bail "cannot serve the snapshot"
D80=$SYS2/8/disk.0
check "clone fe:$V1_URI h2:.../8/disk.0 8 1" "$TM/clone" "fe:$V1_URI" "h2:$D80" 8 1
check_eq "host 2's clone of the snapshot reads the disk at snap_create" "$sum_snap" \
	"$(sha256_of "$D80")"

# ---------------------------------------------------------------------------
# ln + mvds: a persistent image file
# ---------------------------------------------------------------------------
cp "$BASE_IMG" "$IMG/persistent" || tap_bail "cannot copy the base"
D81=$SYS2/8/disk.1
check "ln fe:$IMG/persistent h2:.../8/disk.1 8 1" "$TM/ln" "fe:$IMG/persistent" "h2:$D81" 8 1
check_eq "the persistent disk reads its image" "$BASE_SUM" "$(sha256_of "$D81")"
write_extents "$D81" "$EXTB" one-w4 50 30 || tap_bail "cannot write to $D81"
sum_p=$(sha256_of "$D81")
check "mvds h2:.../8/disk.1 fe:$IMG/persistent 8 1" "$TM/mvds" "h2:$D81" "fe:$IMG/persistent" 8 1
check_eq "the image now holds the disk's content" "$sum_p" "$(sha256_of "$IMG/persistent")"
check "mvds removed the device, its COW and the symlink" gone one-8-1 "$D81"

# ---------------------------------------------------------------------------
# delete
# ---------------------------------------------------------------------------
check "delete h1:.../7/disk.0 7 1" "$TM/delete" "h1:$D70" 7 1
check "no device one-7-0, no COW file or loop device, no symlink" gone one-7-0 "$D70"
check "delete again: nothing to do, exit 0" "$TM/delete" "h1:$D70" 7 1

D72=$SYS1/7/disk.2
check "clone fe:$BASE_URI h1:.../7/disk.2 7 1" "$TM/clone" "fe:$BASE_URI" "h1:$D72" 7 1
exec 7<"$D72"
tm_refused "delete of an open device is refused" "still in use" delete "h1:$D72" 7 1
check "... and keeps the device, its COW file and the symlink" \
	test -L "$D72" -a -e "$D72.rcow-cow" -a -e /dev/mapper/one-7-2
exec 7<&-
check "delete h1:.../7 7 1 (the VM directory) removes its devices" "$TM/delete" "h1:$SYS1/7" 7 1
check "no device one-7-2, no COW file or loop device, no symlink" gone one-7-2 "$D72"
check "delete h2:.../8/disk.0 8 1" "$TM/delete" "h2:$D80" 8 1
check "no device one-8-0, no COW file or loop device, no symlink" gone one-8-0 "$D80"

# ---------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------
D90=$SYS1/9/disk.0
tm_refused "clone from a base nobody serves fails" "cannot create one-9-0 on h1" \
	clone "fe:nbd://$NET_SRV_IP:10899/none" "h1:$D90" 9 1
check "... and leaves nothing behind" gone one-9-0 "$D90"
tm_refused "clone with 3 arguments: usage" "usage: clone fe:SOURCE" \
	clone "fe:$BASE_URI" "h1:$D90" 9
tm_refused "clone to a path without host:" "is not host:path" clone "fe:$BASE_URI" "$D90" 9 1
tm_refused "clone of an http:// source" "neither an absolute path nor" \
	clone fe:http://images.example/x "h1:$D90" 9 1
tm_refused "delete with a VM id that is not a number" "is not a number" delete "h1:$D90" nine 1
tm_refused "cpds of a disk snapshot" "not supported" cpds "h1:$D90" "fe:$IMG/x" 2 9 1
RCOW_ONE_SNAP_URI='' tm_refused "snap_create without RCOW_ONE_SNAP_URI" \
	"RCOW_ONE_SNAP_URI is not set" snap_create "h1:$D90" 0 9 1

# ---------------------------------------------------------------------------
# Live migration: premigrate, postmigrate, failmigrate
# ---------------------------------------------------------------------------
# One kernel serves both hosts, so their devices need different names: the
# host's name in them (RCOW_ONE_DEV_NAME).  The one remote-cowd listens for
# h2 on 127.0.0.1 (it lives in this namespace), the source connects there.
export RCOW_ONE_DEV_NAME='one-%HOST%-%VMID%-%DISK_ID%'
export RCOW_ONE_MIGRATE_ADDR=127.0.0.1 RCOW_ONE_MIGRATE_PORT=10851
export RCOW_ONE_MIGRATE_PSK=$NET_WORKDIR/mig.psk
# A destination device not finished fails reads after 30 s (nothing reads
# it before postmigrate here), rather than holding them; postmigrate sets 0.
export RCOW_ONE_MIGRATE_FAULT_TIMEOUT=30000
psktool -u one -p "$RCOW_ONE_MIGRATE_PSK" >/dev/null 2>&1 || tap_bail "psktool cannot make a key"
VD=$NET_WORKDIR/host/datastores/0	# the system datastore as OpenNebula names it
H1=$NET_WORKDIR/h1/datastores/0		# what is in it on each host
H2=$NET_WORKDIR/h2/datastores/0
mstate() { rc_status "$1" migrate_state; }
sum_range() {	# sum_range <dev> <first extent> <count>
	dd if="$1" bs="$EXTB" skip="$2" count="$3" iflag=direct status=none | sha256sum | cut -d' ' -f1
}

check "clone fe:$BASE_URI h1:.../10/disk.0 10 1" "$TM/clone" "fe:$BASE_URI" "h1:$VD/10/disk.0" 10 1
check "clone fe:$BASE_URI h1:.../10/disk.1 10 1" "$TM/clone" "fe:$BASE_URI" "h1:$VD/10/disk.1" 10 1
write_extents "$H1/10/disk.0" "$EXTB" one-m1 10 20 || tap_bail "cannot write to disk.0 of VM 10"
write_extents "$H1/10/disk.1" "$EXTB" one-m2 40 10 || tap_bail "cannot write to disk.1 of VM 10"
check "premigrate h1 h2 .../10 10 0" "$TM/premigrate" h1 h2 "$VD/10" 10 0
check_eq "... the destination devices are incoming on h2" "incoming incoming" \
	"$(mstate one-h2-10-0) $(mstate one-h2-10-1)"
check_eq "... h2's disk.1 is a symlink to /dev/mapper/one-h2-10-1" /dev/mapper/one-h2-10-1 \
	"$(readlink "$H2/10/disk.1" 2>/dev/null)"
st="$(mstate one-h1-10-0) $(mstate one-h1-10-1)"
check "... the sources are migrating ($st)" \
	grep -Eqx '(copying|mirroring) (copying|mirroring)' <<<"$st"
write_extents "$H1/10/disk.0" "$EXTB" one-m3 25 20 || tap_bail "cannot write to disk.0 on h1"
write_extents "$H1/10/disk.1" "$EXTB" one-m4 200 5 || tap_bail "cannot write to disk.1 on h1"
ref0=$(sum_range "$H1/10/disk.0" 0 256)
ref1=$(sum_range "$H1/10/disk.1" 0 256)
out=$("$TM/premigrate" h1 h2 "$VD/10" 10 0 2>&1)
check_eq "premigrate again while it runs: exit 0, says so" "0 1" \
	"$? $(grep -c 'already running' <<<"$out")"
check "postmigrate h1 h2 .../10 10 0" "$TM/postmigrate" h1 h2 "$VD/10" 10 0
check_eq "h2's disk.0 reads exactly the source after its last write" "$ref0" \
	"$(sum_range /dev/mapper/one-h2-10-0 0 256)"
check_eq "h2's disk.1 too" "$ref1" "$(sum_range /dev/mapper/one-h2-10-1 0 256)"
check "no device, COW file, loop device or symlink left of disk.0 on h1" \
	gone one-h1-10-0 "$H1/10/disk.0"
check "... nor of disk.1" gone one-h1-10-1 "$H1/10/disk.1"
check "h2's disk.0 takes writes" write_extents "$H2/10/disk.0" "$EXTB" one-m5 100 2
check "postmigrate again: nothing left to do, exit 0" "$TM/postmigrate" h1 h2 "$VD/10" 10 0
tm_refused "failmigrate after the move is refused: the disks are on h2" "none on h1: not removed" \
	failmigrate h1 h2 "$VD/10" 10 0
check "... and keeps them" test -L "$H2/10/disk.0" -a -e /dev/mapper/one-h2-10-0
check "delete h2:.../10 10 1" "$TM/delete" "h2:$VD/10" 10 1
check "... no device one-h2-10-0 left, nor its COW or symlink" gone one-h2-10-0 "$H2/10/disk.0"

# failmigrate: the source stays as it was and usable, nothing left on h2.
check "clone fe:$BASE_URI h1:.../11/disk.0 11 1" "$TM/clone" "fe:$BASE_URI" "h1:$VD/11/disk.0" 11 1
write_extents "$H1/11/disk.0" "$EXTB" one-f1 10 20 || tap_bail "cannot write to disk.0 of VM 11"
check "premigrate h1 h2 .../11 11 0" "$TM/premigrate" h1 h2 "$VD/11" 11 0
write_extents "$H1/11/disk.0" "$EXTB" one-f2 60 10 || tap_bail "cannot write to disk.0 of VM 11"
ref=$(sum_range "$H1/11/disk.0" 0 256)
check "failmigrate h1 h2 .../11 11 0" "$TM/failmigrate" h1 h2 "$VD/11" 11 0
check_eq "... the source is idle" idle "$(mstate one-h1-11-0)"
check_eq "... and reads what was written" "$ref" "$(sum_range "$H1/11/disk.0" 0 256)"
check "... and takes writes" write_extents "$H1/11/disk.0" "$EXTB" one-f3 90 4
check_eq "... which read back" \
	"$(image_data one-f3 $((94 * EXTB)) | tail -c $((4 * EXTB)) | sha256sum | cut -d' ' -f1)" \
	"$(sum_range "$H1/11/disk.0" 90 4)"
check "nothing of VM 11 left on h2" gone one-h2-11-0 "$H2/11/disk.0"
check "failmigrate again: nothing left to do, exit 0" "$TM/failmigrate" h1 h2 "$VD/11" 11 0

# Bad input.
tm_refused "premigrate with 4 arguments: usage" "usage: premigrate SRC_HOST DST_HOST" \
	premigrate h1 h2 "$VD/11" 11
tm_refused "postmigrate with 7 arguments: usage" "usage: postmigrate SRC_HOST DST_HOST" \
	postmigrate h1 h2 "$VD/11" 11 0 x y
RCOW_ONE_MIGRATE_PSK=$NET_WORKDIR/none.psk tm_refused "premigrate without the key file" \
	"no migration key $NET_WORKDIR/none.psk" premigrate h1 h2 "$VD/11" 11 0
check "... leaves nothing on h2" gone one-h2-11-0 "$H2/11/disk.0"
check_eq "... and the source idle" idle "$(mstate one-h1-11-0)"
tm_refused "postmigrate of a migration that was not started" "not migrating" \
	postmigrate h1 h2 "$VD/11" 11 0
check "... keeps the source" test -L "$H1/11/disk.0" -a -e /dev/mapper/one-h1-11-0
check "delete h1:.../11 11 1" "$TM/delete" "h1:$VD/11" 11 1
check "... no device one-h1-11-0 left" gone one-h1-11-0 "$H1/11/disk.0"
check_eq "the base is unchanged" "$BASE_SUM" "$(sha256_of "$BASE_IMG")"
tap_done
