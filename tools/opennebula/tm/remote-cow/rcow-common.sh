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

# one_disk <path> <vmid>: the path of a VM disk, <system ds>/<vmid>/disk.<i>;
# sets DISK_PATH, DISK_ID, DEV_NAME (one-<vmid>-<i>) and COW_PATH.
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
	DEV_NAME=one-$2-$DISK_ID
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
	code="$(declare -f host_init host_err host_dev_exists host_loops host_create \
		host_remove host_remove_dir host_read host_commit)
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

# host_create <name> <base uri> <disk path> <cow path>: the COW device, the
# remote-cow device over it and the disk symlink; nothing left on failure.
# Refuses to touch a device, disk or COW that already exists.
host_create() {
	local name=$1 base=$2 disk=$3 cow=$4 size cowdev='' lv=''
	host_dev_exists "$name" && host_err "device $name already exists (delete the disk first)"
	if [ -e "$disk" ] || [ -L "$disk" ]; then
		host_err "$disk already exists"
	fi
	if [ -e "$cow" ] || [ -L "$cow" ]; then
		host_err "COW $cow already exists (left by an earlier disk? delete it first)"
	fi
	mkdir -p "$(dirname "$disk")"
	size=$("${SUDO[@]}" "$RC" cow-size --base "$base" --extent-size "$RCOW_EXTENT") ||
		host_err "cannot size the COW device for $base"
	_undo() {
		[ -z "$cowdev" ] || [ -n "$lv" ] || "${SUDO[@]}" losetup -d "$cowdev" 2>/dev/null || true
		[ -z "$lv" ] || "${SUDO[@]}" lvremove -f -y "$lv" >/dev/null 2>&1 || true
		rm -f "$cow"
	}
	if [ -n "$RCOW_VG" ]; then
		lv=$RCOW_VG/$name-cow
		"${SUDO[@]}" lvcreate -q -y -W y -Z y -L "${size}b" -n "$name-cow" "$RCOW_VG" >/dev/null ||
			host_err "cannot create the LV $lv"
		cowdev=/dev/$lv
		ln -s "$cowdev" "$cow" || { _undo; host_err "cannot link $cow"; }
	else
		truncate -s "$size" "$cow" || { _undo; host_err "cannot make $cow"; }
		cowdev=$("${SUDO[@]}" losetup -f --show "$cow") ||
			{ _undo; host_err "cannot attach $cow to a loop device"; }
	fi
	if ! "${SUDO[@]}" "$RC" create "$name" --cow "$cowdev" --base "$base" \
		--extent-size "$RCOW_EXTENT"; then
		_undo
		host_err "remote-cow create $name over $base failed"
	fi
	if ! ln -s "/dev/mapper/$name" "$disk"; then
		"${SUDO[@]}" "$RC" remove "$name" || true
		_undo
		host_err "cannot link $disk"
	fi
}

# host_remove <name> <disk path> <cow path>: the device, then its COW (loop
# and file, or LV), then the disk symlink.  Whatever is already gone is
# skipped; a device that cannot be removed (still open) keeps everything.
host_remove() {
	local name=$1 disk=$2 cow=$3 l t
	if host_dev_exists "$name"; then
		"${SUDO[@]}" "$RC" remove "$name" ||
			host_err "cannot remove device $name (still in use?); its COW $cow is kept"
	fi
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
	if [ -L "$disk" ]; then
		t=$(readlink "$disk")
		[ "$t" = "/dev/mapper/$name" ] ||
			host_err "$disk points to $t, not /dev/mapper/$name: left alone"
		rm -f "$disk"
	elif [ -e "$disk" ]; then
		host_err "$disk is not a symlink to /dev/mapper/$name: left alone"
	fi
}

# host_remove_dir <dir> <vmid>: host_remove of every disk.<i> of the VM
# directory that is a device of this driver.
host_remove_dir() {
	local dir=$1 vmid=$2 d id
	[ -d "$dir" ] || return 0
	for d in "$dir"/disk.*; do
		[ -L "$d" ] || continue
		id=${d##*/disk.}
		case $id in "" | *[!0-9]*) continue ;; esac
		[ "$(readlink "$d")" = "/dev/mapper/one-$vmid-$id" ] || continue
		host_remove "one-$vmid-$id" "$d" "$d.rcow-cow"
	done
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

# one_unsupported <what>: the action is not implemented by this driver.
one_unsupported() {
	one_die "$1 is not supported by the remote-cow driver (Documentation/remote-cow-opennebula.rst)"
}
