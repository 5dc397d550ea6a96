# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Shared part of the OpenNebula transfer-manager driver "remote-cow"
# (Documentation/remote-cow-opennebula.rst).  Every action script sources
# it.  The actions run on the front-end; what has to happen on a host runs
# there through $RCOW_ONE_SSH (ssh by default) as "bash -c CODE", where CODE
# is one of the host_* functions below, sent with its helpers by
# 'declare -f'.  Nothing of OpenNebula's own tm_common.sh is needed.
#
# A VM disk of this driver on its host:
#
#   DISK   <system ds>/<vmid>/disk.<i>   symlink to /dev/mapper/one-<vmid>-<i>
#   COW    DISK.rcow-cow                 sparse file on a loop device, sized by
#                                        'remote-cow cow-size' (or an LV in
#                                        $RCOW_ONE_COW_VG)
#   device one-<vmid>-<i>                'remote-cow create' over the image's
#                                        SOURCE (the base) and COW

set -euo pipefail

RCOW_ONE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RCOW_ONE_ACTION=$(basename "$0")

# The settings (rcow.conf next to the scripts, or the file $RCOW_ONE_CONF
# names); each may also come from the environment.
_rcow_conf=${RCOW_ONE_CONF:-$RCOW_ONE_DIR/rcow.conf}
if [ -r "$_rcow_conf" ]; then
	# shellcheck source=rcow.conf
	. "$_rcow_conf"
fi
: "${RCOW_ONE_SSH:=ssh}"			# remote execution: CMD HOST SCRIPT
: "${RCOW_ONE_CLI:=remote-cow}"		# the CLI on the hosts
: "${RCOW_ONE_EXTENT_SIZE:=64K}"		# remote-cow create --extent-size
: "${RCOW_ONE_COW_VG:=}"			# LVM volume group for COW devices (else files)
: "${RCOW_ONE_SNAP_URI:=}"			# snap_create target, with %VMID% %DISK_ID% %SNAP_ID%
: "${RCOW_ONE_DEV_NAME:=one-%VMID%-%DISK_ID%}"	# device names, with %HOST% %VMID% %DISK_ID%
: "${RCOW_ONE_MIGRATE_PORT:=10850}"		# live migration: the destination's first port
: "${RCOW_ONE_MIGRATE_PORTS:=100}"		# ... and how many (PORT + VMID mod PORTS)
: "${RCOW_ONE_MIGRATE_PSK:=/etc/remote-cow/opennebula-migrate.psk}"	# its key, on the hosts
: "${RCOW_ONE_MIGRATE_ADDR:=}"			# its address (empty: DST_HOST)
: "${RCOW_ONE_MIGRATE_FAULT_TIMEOUT:=0}"	# ms, the destination's until postmigrate

# ---------------------------------------------------------------------------
# Messages and arguments (front-end side)
# ---------------------------------------------------------------------------

one_log() {
	printf 'remote-cow tm %s: %s\n' "$RCOW_ONE_ACTION" "$*" >&2
}

one_die() {
	one_log "error: $*"
	exit 1
}

# Two disks never share a device name.
case $RCOW_ONE_DEV_NAME in
*%VMID%*%DISK_ID%* | *%DISK_ID%*%VMID%*) ;;
*) one_die "RCOW_ONE_DEV_NAME '$RCOW_ONE_DEV_NAME' (rcow.conf) lacks %VMID% or %DISK_ID%" ;;
esac

# one_args <count> <usage> "$@": exactly <count> arguments, else the usage
# on standard error and exit 2.
one_args() {
	local want=$1 usage=$2
	shift 2
	if [ "$#" -ne "$want" ]; then
		printf 'usage: %s %s\n' "$RCOW_ONE_ACTION" "$usage" >&2
		one_log "error: $want arguments expected, got $#"
		exit 2
	fi
}

# one_hostpath <what> <host:path>: sets ARG_HOST and ARG_PATH (an absolute
# path, or a URI for an image SOURCE).
ARG_HOST=
ARG_PATH=
one_hostpath() {
	local what=$1 arg=$2
	case $arg in
	*:*) ;;
	*) one_die "$what '$arg' is not host:path" ;;
	esac
	ARG_HOST=${arg%%:*}
	ARG_PATH=${arg#*:}
	case $ARG_HOST in
	"" | */* | *[[:space:]]*) one_die "$what '$arg': bad host name '$ARG_HOST'" ;;
	esac
	[ -n "$ARG_PATH" ] || one_die "$what '$arg' has no path"
	case $ARG_PATH in
	*[[:space:]\'\"\\]*) one_die "$what '$arg': white space or quotes in the path" ;;
	esac
}

# one_id <what> <value>: a decimal number.
one_id() {
	case $2 in
	"" | *[!0-9]*) one_die "$1 '$2' is not a number" ;;
	esac
}

# one_devname <host> <vmid> <disk id>: the device name of a disk on the host
# (RCOW_ONE_DEV_NAME, one-<vmid>-<i> by default).  With <disk id> '%DISK_ID%',
# the pattern of the VM's disks on that host.
one_devname() {
	local n=${RCOW_ONE_DEV_NAME//%HOST%/$1}
	n=${n//%VMID%/$2}
	printf '%s\n' "${n//%DISK_ID%/$3}"
}

# one_disk <path> <vmid>: the path of a VM disk, <system ds>/<vmid>/disk.<i>,
# on the host ARG_HOST (one_hostpath); sets DISK_PATH, DISK_ID, DEV_NAME
# (one_devname) and COW_PATH.
DISK_PATH=
DISK_ID=
DEV_NAME=
COW_PATH=
one_disk() {
	local base
	DISK_PATH=$1
	base=${1##*/}
	case $1 in
	/*) ;;
	*) one_die "disk path '$1' is not absolute" ;;
	esac
	case $base in
	disk.*) DISK_ID=${base#disk.} ;;
	*) one_die "disk path '$1' does not end in disk.<id>" ;;
	esac
	case $DISK_ID in
	"" | *[!0-9]*) one_die "disk path '$1' does not end in disk.<id>" ;;
	esac
	[ "$(basename "$(dirname "$1")")" = "$2" ] ||
		one_die "disk path '$1' is not in the directory of VM $2"
	# shellcheck disable=SC2034	# for the actions
	DEV_NAME=$(one_devname "$ARG_HOST" "$2" "$DISK_ID")
	# shellcheck disable=SC2034	# for the actions
	COW_PATH=$DISK_PATH.rcow-cow
}

# one_base <source>: the base URI of an image SOURCE: an nbd://, nbds://,
# nbd+unix:// or file:// URI as it is, an absolute path as file://PATH.
one_base() {
	case $1 in
	nbd://?* | nbds://?* | nbd+unix://?* | file:///?*) printf '%s\n' "$1" ;;
	/?*) printf 'file://%s\n' "$1" ;;
	*) one_die "image source '$1' is neither an absolute path nor an nbd://, nbds://, nbd+unix:// or file:// URI" ;;
	esac
}

# one_is_nbd <uri>: an NBD URI (a target 'remote-cow commit' can write).
one_is_nbd() {
	case $1 in
	nbd://?* | nbds://?* | nbd+unix://?*) return 0 ;;
	esac
	return 1
}

# one_local_path <source>: the file an image SOURCE names on the front-end
# (a path or a file:// URI).
one_local_path() {
	case $1 in
	file:///?*) printf '%s\n' "${1#file://}" ;;
	/?*) printf '%s\n' "$1" ;;
	*) one_die "'$1' is not a path or file:// URI" ;;
	esac
}

# ---------------------------------------------------------------------------
# Remote execution
# ---------------------------------------------------------------------------

one_quote() {	# one shell word, single-quoted
	local s=${1//\'/\'\\\'\'}
	printf "'%s'" "$s"
}

# one_rexec <host> <host function> <args...>: run the function on the host
# (bash there; its helpers and the settings go along).  Standard input and
# output are the remote command's.
one_rexec() {
	local host=$1 fn=$2 code cmd a ssh
	shift 2
	code="$(declare -f host_init host_err host_dev_exists host_loops host_cow_make \
		host_new_disk host_create host_cow_remove host_remove host_disks host_remove_dir \
		host_read host_commit host_mig_state host_mig_disks host_psk host_mig_receive \
		host_fault_timeout host_mig_start host_mig_finish host_mig_abort)
host_init
$fn \"\$@\""
	cmd="env RCOW_CLI=$(one_quote "$RCOW_ONE_CLI")"
	cmd+=" RCOW_EXTENT=$(one_quote "$RCOW_ONE_EXTENT_SIZE")"
	cmd+=" RCOW_VG=$(one_quote "$RCOW_ONE_COW_VG")"
	cmd+=" bash -c $(one_quote "$code") rcow-$RCOW_ONE_ACTION"
	for a in "$@"; do
		cmd+=" $(one_quote "$a")"
	done
	read -ra ssh <<<"$RCOW_ONE_SSH"
	"${ssh[@]}" "$host" "$cmd"
}

# ---------------------------------------------------------------------------
# On the host (sent by one_rexec; each runs under 'set -euo pipefail')
# ---------------------------------------------------------------------------

host_init() {
	set -euo pipefail
	# Without udevd, libdevmapper makes the /dev/mapper nodes itself.
	[ -e /run/udev/control ] || export DM_DISABLE_UDEV=1
	SUDO=()
	[ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
	RC=$RCOW_CLI
	if ! command -v "$RC" >/dev/null 2>&1; then
		local d
		for d in /usr/sbin /usr/local/sbin; do
			[ ! -x "$d/$RCOW_CLI" ] || RC=$d/$RCOW_CLI
		done
		command -v "$RC" >/dev/null 2>&1 || host_err "$RCOW_CLI not found"
	fi
}

host_err() {
	printf 'remote-cow tm on %s: error: %s\n' "$(hostname)" "$*" >&2
	exit 1
}

host_dev_exists() {	# host_dev_exists <dm name>
	"${SUDO[@]}" dmsetup info "$1" >/dev/null 2>&1
}

host_loops() {	# host_loops <file>: loop devices attached to it, one a line
	"${SUDO[@]}" losetup -j "$1" -n -O NAME 2>/dev/null || true
}

# host_cow_make <name> <base uri> <cow path>: a new zeroed COW device for a
# device <name> over the base (RCOW_EXTENT extents) at <cow path> (a sparse
# file on a loop device, or a symlink to an LV in RCOW_VG); sets COWDEV.
# Nothing left on failure.
host_cow_make() {
	local name=$1 base=$2 cow=$3 size lv
	COWDEV=
	size=$("${SUDO[@]}" "$RC" cow-size --base "$base" --extent-size "$RCOW_EXTENT") ||
		host_err "cannot size the COW device for $base"
	if [ -n "$RCOW_VG" ]; then
		lv=$RCOW_VG/$name-cow
		"${SUDO[@]}" lvcreate -q -y -W y -Z y -L "${size}b" -n "$name-cow" "$RCOW_VG" >/dev/null ||
			host_err "cannot create the LV $lv"
		if ! ln -s "/dev/$lv" "$cow"; then
			"${SUDO[@]}" lvremove -f -y "$lv" >/dev/null 2>&1 || true
			host_err "cannot link $cow"
		fi
		COWDEV=/dev/$lv
	else
		truncate -s "$size" "$cow" || { rm -f "$cow"; host_err "cannot make $cow"; }
		COWDEV=$("${SUDO[@]}" losetup -f --show "$cow") ||
			{ rm -f "$cow"; host_err "cannot attach $cow to a loop device"; }
	fi
}

# host_new_disk <name> <disk path> <cow path>: refuses a device, disk or COW
# that already exists, and makes the disk's directory.
host_new_disk() {
	local name=$1 disk=$2 cow=$3
	host_dev_exists "$name" && host_err "device $name already exists (delete the disk first)"
	if [ -e "$disk" ] || [ -L "$disk" ]; then
		host_err "$disk already exists"
	fi
	if [ -e "$cow" ] || [ -L "$cow" ]; then
		host_err "COW $cow already exists (left by an earlier disk? delete it first)"
	fi
	mkdir -p "$(dirname "$disk")" || host_err "cannot make the directory of $disk"
}

# host_create <name> <base uri> <disk path> <cow path>: the COW device, the
# remote-cow device over it and the disk symlink; nothing left on failure.
# Refuses to touch a device, disk or COW that already exists.
host_create() {
	local name=$1 base=$2 disk=$3 cow=$4
	host_new_disk "$name" "$disk" "$cow"
	host_cow_make "$name" "$base" "$cow"
	if ! "${SUDO[@]}" "$RC" create "$name" --cow "$COWDEV" --base "$base" \
		--extent-size "$RCOW_EXTENT"; then
		(host_cow_remove "$name" "$cow") || true
		host_err "remote-cow create $name over $base failed"
	fi
	if ! ln -s "/dev/mapper/$name" "$disk"; then
		"${SUDO[@]}" "$RC" remove "$name" || true
		(host_cow_remove "$name" "$cow") || true
		host_err "cannot link $disk"
	fi
}

# host_cow_remove <name> <cow path>: the COW device of device <name>: its
# loop device detached and the file deleted, or the LV removed.  Nothing to
# do when it is gone already.
host_cow_remove() {
	local name=$1 cow=$2 l t
	if [ -L "$cow" ]; then	# an LV
		t=$(readlink "$cow")
		case $t in
		/dev/*/"$name-cow") "${SUDO[@]}" lvremove -f -y "$t" >/dev/null ||
			host_err "cannot remove the LV $t" ;;
		*) host_err "$cow points to $t, not a COW LV of $name: left alone" ;;
		esac
		rm -f "$cow"
	elif [ -e "$cow" ]; then
		for l in $(host_loops "$cow"); do
			"${SUDO[@]}" losetup -d "$l" || host_err "cannot detach $l from $cow"
		done
		rm -f "$cow"
	fi
}

# host_remove <name> <disk path> <cow path>: the device, then its COW (loop
# and file, or LV), then the disk symlink.  Whatever is already gone is
# skipped; a device that cannot be removed (still open) keeps everything.
host_remove() {
	local name=$1 disk=$2 cow=$3 t
	if host_dev_exists "$name"; then
		"${SUDO[@]}" "$RC" remove "$name" ||
			host_err "cannot remove device $name (still in use?); its COW $cow is kept"
	fi
	host_cow_remove "$name" "$cow"
	if [ -L "$disk" ]; then
		t=$(readlink "$disk")
		[ "$t" = "/dev/mapper/$name" ] ||
			host_err "$disk points to $t, not /dev/mapper/$name: left alone"
		rm -f "$disk"
	elif [ -e "$disk" ]; then
		host_err "$disk is not a symlink to /dev/mapper/$name: left alone"
	fi
}

# host_disks <dir> <name pattern>: the disks of this driver in a VM
# directory, one "<disk id> <dm name>" a line: every disk.<i> that is a
# symlink to /dev/mapper/<the pattern, %DISK_ID% replaced by i>.
host_disks() {
	local dir=$1 pat=$2 d id
	[ -d "$dir" ] || return 0
	for d in "$dir"/disk.*; do
		[ -L "$d" ] || continue
		id=${d##*/disk.}
		case $id in "" | *[!0-9]*) continue ;; esac
		[ "$(readlink "$d")" = "/dev/mapper/${pat//%DISK_ID%/$id}" ] || continue
		printf '%s %s\n' "$id" "${pat//%DISK_ID%/$id}"
	done
}

# host_remove_dir <dir> <name pattern>: host_remove of every disk of the VM
# directory (host_disks).
host_remove_dir() {
	local dir=$1 l lines=()
	mapfile -t lines < <(host_disks "$dir" "$2")
	for l in "${lines[@]}"; do
		host_remove "${l#* }" "$dir/disk.${l%% *}" "$dir/disk.${l%% *}.rcow-cow"
	done
}

# host_mig_state <name>: the device's migrate_state ('remote-cow status
# --field'; Documentation/remote-cow.rst), "absent" without the device.
host_mig_state() {
	host_dev_exists "$1" || { echo absent; return 0; }
	"${SUDO[@]}" "$RC" status "$1" --field migrate_state ||
		host_err "cannot read the migration state of $1 ($RC status --field migrate_state)"
}

# host_mig_disks <dir> <name pattern>: host_disks with the migration state,
# the extent size in sectors and the base URI of each device (from its
# table; "- -" without the device): "<id> <name> <state> <sectors> <base>".
host_mig_disks() {
	local l id name t st lines=()
	mapfile -t lines < <(host_disks "$1" "$2")
	for l in "${lines[@]}"; do
		id=${l%% *} name=${l#* }
		if host_dev_exists "$name"; then
			t=$("${SUDO[@]}" dmsetup table "$name" | awk '$3 == "remote-cow" { print $5, $6 }')
			[ -n "$t" ] || host_err "$name is not a remote-cow device"
			st=$(host_mig_state "$name")	# (a failure ends here, not in echo)
			echo "$id $name $st $t"
		else
			echo "$id $name absent - -"
		fi
	done
}

# host_psk <file>: the migration key is there.
host_psk() {	# (dd: already among the commands sudoers allows)
	"${SUDO[@]}" dd if="$1" of=/dev/null bs=1 count=0 status=none 2>/dev/null ||
		host_err "no migration key $1 (RCOW_ONE_MIGRATE_PSK; the same psktool file on every host)"
}

# host_mig_receive <listen> <psk> <fault timeout> <extent size>
#                  {<name> <disk> <cow> <base>}...:
# new COW devices, 'remote-cow receive' of all the devices as one unit
# (incoming: I/O waits until the migration completes), the disk symlinks.
# Refuses a device, disk or COW that already exists; nothing left on failure.
host_mig_receive() {
	local listen=$1 psk=$2 ms=$3 i n names=() disks=() cows=() bases=() args=() cowdev
	RCOW_EXTENT=$4
	shift 4
	while [ "$#" -ge 4 ]; do
		host_new_disk "$1" "$2" "$3"
		names+=("$1") disks+=("$2") cows+=("$3") bases+=("$4")
		shift 4
	done
	n=${#names[@]}
	_undo_recv() {
		local j
		for ((j = 0; j < n; j++)); do
			(host_remove "${names[$j]}" "${disks[$j]}" "${cows[$j]}") || true
		done
	}
	for ((i = 0; i < n; i++)); do
		if ! cowdev=$(host_cow_make "${names[$i]}" "${bases[$i]}" "${cows[$i]}" &&
			printf '%s\n' "$COWDEV"); then
			_undo_recv
			host_err "cannot make the COW device of ${names[$i]}"
		fi
		args+=(--cow "$cowdev" --base "${bases[$i]}")
	done
	if ! "${SUDO[@]}" "$RC" receive "${names[@]}" "${args[@]}" --listen "$listen" \
		--psk "$psk" --extent-size "$RCOW_EXTENT" --fault-timeout "$ms" >&2; then
		_undo_recv
		host_err "remote-cow receive ${names[*]} failed"
	fi
	for ((i = 0; i < n; i++)); do
		if ! ln -s "/dev/mapper/${names[$i]}" "${disks[$i]}"; then
			_undo_recv
			host_err "cannot link ${disks[$i]}"
		fi
	done
}

# host_fault_timeout <ms> <name>...: the devices' fault timeout, at run time.
host_fault_timeout() {
	local ms=$1 n
	shift
	for n in "$@"; do
		"${SUDO[@]}" dmsetup message "$n" 0 fault_timeout "$ms" ||
			host_err "cannot set the fault timeout of $n to $ms ms"
	done
}

# host_mig_start <host:port> <psk> <name>...: the migration of the devices
# as one unit (pre-copy, then write mirroring if the rounds do not shrink).
host_mig_start() {
	local to=$1 psk=$2
	shift 2
	"${SUDO[@]}" "$RC" migrate "$@" --to "$to" --psk "$psk" >&2 ||
		host_err "remote-cow migrate $* --to $to failed"
}

# host_mig_finish <name>...: the last round, waiting until done.
host_mig_finish() {
	"${SUDO[@]}" "$RC" migrate "$@" finish --wait >&2 ||
		host_err "remote-cow migrate $* finish failed: the source devices are kept"
}

# host_mig_abort <name>...: abort, until every device is idle again (the
# other members of a group end "failed" once one is aborted: abort them too).
host_mig_abort() {
	local t n left
	"${SUDO[@]}" "$RC" migrate "$@" abort >&2 || host_err "remote-cow migrate $* abort failed"
	for ((t = 0; t < 60; t++)); do
		left=()
		for n in "$@"; do
			case $(host_mig_state "$n") in
			idle | absent) ;;
			failed) "${SUDO[@]}" "$RC" migrate "$n" abort >&2 || left+=("$n") ;;
			*) left+=("$n") ;;
			esac
		done
		[ ${#left[@]} -gt 0 ] || return 0
		sleep 0.5
	done
	host_err "after migrate abort, not idle: ${left[*]}"
}

# host_read <name>: the device's whole content on standard output.
host_read() {
	host_dev_exists "$1" || host_err "no device $1"
	"${SUDO[@]}" dd if="/dev/mapper/$1" bs=1M iflag=direct status=none
}

# host_commit <name> <uri>: snapshot commit of the device to the NBD export,
# waiting until it is done.
host_commit() {
	host_dev_exists "$1" || host_err "no device $1"
	"${SUDO[@]}" "$RC" commit "$1" --to "$2" --wait || host_err "commit of $1 to $2 failed"
}

# ---------------------------------------------------------------------------
# Front-end side of the actions
# ---------------------------------------------------------------------------

# one_publish <host> <dm name> <destination>: the device's content to an
# image SOURCE: an NBD export through snapshot commit (the export must
# already hold the base's content: only written extents are sent), a path
# or file:// URI on the front-end by a full copy.
one_publish() {
	local host=$1 name=$2 dst=$3 f tmp
	if one_is_nbd "$dst"; then
		one_log "committing $name on $host to $dst"
		one_rexec "$host" host_commit "$name" "$dst" || one_die "commit of $name to $dst failed"
	else
		f=$(one_local_path "$dst")
		one_log "copying $name on $host to $f"
		# Into a temporary file renamed over <file> once complete: an
		# image is never seen half written, nor replaced by a short copy.
		mkdir -p "$(dirname "$f")" || one_die "cannot make the directory of $f"
		tmp=$(mktemp "$f.rcow-tmp.XXXXXX") || one_die "cannot write in $(dirname "$f")"
		if ! one_rexec "$host" host_read "$name" >"$tmp" || ! sync "$tmp"; then
			rm -f "$tmp"
			one_die "copy of $name on $host to $f failed"
		fi
		chmod 0644 "$tmp"
		mv -f "$tmp" "$f" || { rm -f "$tmp"; one_die "cannot replace $f"; }
	fi
}

# one_clone "$@": the clone and ln actions (the same device for both).
one_clone() {
	local base host
	one_args 4 "fe:SOURCE host:remote_system_ds/VMID/disk.i VMID DSID" "$@"
	one_id VMID "$3"
	one_id DSID "$4"
	one_hostpath SOURCE "$1"
	base=$(one_base "$ARG_PATH")
	one_hostpath destination "$2"
	host=$ARG_HOST
	one_disk "$ARG_PATH" "$3"
	one_log "creating $DEV_NAME on $host over $base for $DISK_PATH"
	one_rexec "$host" host_create "$DEV_NAME" "$base" "$DISK_PATH" "$COW_PATH" ||
		one_die "cannot create $DEV_NAME on $host"
}

# ---------------------------------------------------------------------------
# Live migration (premigrate, postmigrate, failmigrate)
# ---------------------------------------------------------------------------

# one_mig_args "$@": SRC_HOST DST_HOST REMOTE_SYSTEM_DIR VMID DSID [TEMPLATE];
# sets SRC, DST, VMDIR, VMID, MIG_TO (the destination's listen address: its
# port RCOW_ONE_MIGRATE_PORT + VMID mod RCOW_ONE_MIGRATE_PORTS, so that VMs
# migrating to one host at once do not share a listener) and MIG_PSK.  The
# template (an argument or standard input) is not read.
SRC=
DST=
VMDIR=
VMID=
MIG_TO=
MIG_PSK=
one_mig_args() {
	local h port
	if [ "$#" -lt 5 ] || [ "$#" -gt 6 ]; then
		printf 'usage: %s SRC_HOST DST_HOST REMOTE_SYSTEM_DIR VMID DSID [TEMPLATE]\n' \
			"$RCOW_ONE_ACTION" >&2
		one_log "error: 5 or 6 arguments expected, got $#"
		exit 2
	fi
	one_id VMID "$4"
	one_id DSID "$5"
	for h in "$1" "$2"; do
		case $h in
		"" | */* | *:* | *[[:space:]]*) one_die "bad host name '$h'" ;;
		esac
	done
	[ "$1" != "$2" ] || one_die "source and destination are the same host '$1'"
	# shellcheck disable=SC2034	# for the actions
	SRC=$1 DST=$2 VMID=$4 VMDIR=${3%/}
	case $VMDIR in
	/*) ;;
	*) one_die "'$3' is not an absolute path" ;;
	esac
	case $VMDIR in
	*[[:space:]\'\"\\]*) one_die "'$3': white space or quotes in the path" ;;
	esac
	[ "${VMDIR##*/}" = "$VMID" ] || one_die "'$3' is not the directory of VM $VMID"
	for h in "$RCOW_ONE_MIGRATE_PORT" "$RCOW_ONE_MIGRATE_PORTS"; do
		case $h in
		"" | 0* | *[!0-9]*)
			one_die "RCOW_ONE_MIGRATE_PORT and RCOW_ONE_MIGRATE_PORTS must be positive numbers" ;;
		esac
	done
	case $RCOW_ONE_MIGRATE_FAULT_TIMEOUT in
	"" | *[!0-9]*) one_die "RCOW_ONE_MIGRATE_FAULT_TIMEOUT '$RCOW_ONE_MIGRATE_FAULT_TIMEOUT' is not a number of ms" ;;
	esac
	port=$((10#$RCOW_ONE_MIGRATE_PORT + 10#$VMID % 10#$RCOW_ONE_MIGRATE_PORTS))
	[ "$port" -le 65535 ] || one_die "migration port $port (RCOW_ONE_MIGRATE_PORT...) is above 65535"
	[ -n "$RCOW_ONE_MIGRATE_PSK" ] ||
		one_die "RCOW_ONE_MIGRATE_PSK is not set (rcow.conf): no key for the migration"
	# shellcheck disable=SC2034	# for the actions
	MIG_TO=${RCOW_ONE_MIGRATE_ADDR:-$DST}:$port
	# shellcheck disable=SC2034	# for the actions
	MIG_PSK=$RCOW_ONE_MIGRATE_PSK
}

# one_mig_disks <host>: the VM's disks of this driver on the host (in
# VMDIR, named as on that host), in M_ID, M_NAME, M_STATE (migrate_state, or
# absent), M_SECT (extent sectors) and M_BASE.
M_ID=()
M_NAME=()
M_STATE=()
M_SECT=()
M_BASE=()
one_mig_disks() {
	local out id name state sect base
	out=$(one_rexec "$1" host_mig_disks "$VMDIR" "$(one_devname "$1" "$VMID" %DISK_ID%)") ||
		one_die "cannot list the disks of VM $VMID on $1"
	M_ID=() M_NAME=() M_STATE=() M_SECT=() M_BASE=()
	while read -r id name state sect base; do
		[ -n "$id" ] || continue
		M_ID+=("$id") M_NAME+=("$name") M_STATE+=("$state") M_SECT+=("$sect")
		M_BASE+=("$base")
	done <<<"$out"
}

# one_unsupported <what>: the action is not implemented by this driver.
one_unsupported() {
	one_die "$1 is not supported by the remote-cow driver (Documentation/remote-cow-opennebula.rst)"
}
