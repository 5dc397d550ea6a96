#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TIMEOUT=900
#
# Live migration between remote-cowd's source and destination sides, with
# the CLI (remote-cow receive, remote-cow migrate), over TLS with a PSK:
#
# - a source device over a file:// base, 8 MiB of it written with known
#   data; a destination device made by 'remote-cow receive' (incoming:
#   I/O held) listening on 127.0.0.1 with the key of psktool;
# - a source with another key is refused: its migration fails (state
#   failed, the kernel told why), the destination logged the refused
#   handshake and has nothing written, and stays incoming;
# - a destination of another extent size refuses the HELLO, naming the
#   mismatch, before anything is written; removing it removes its spec;
# - migrate of an unknown device: exit 3, no key handed to the daemon;
# - 'remote-cow migrate --to --psk' while fio keeps writing to the source:
#   rounds go by (migrate_done grows); 'migrate finish --wait' with fio
#   still writing (the fence fails its later writes: harder than a paused
#   guest, and the last round after the fence must carry the writes that
#   completed since the round before) ends done; the destination serves and equals,
#   byte for byte, a reference read from the source at the end; the
#   source refuses writes (fenced) and still reads; the keys and the
#   receive spec are gone from the run directory; the daemon logged the
#   bytes on the wire;
# - abort: a second pair; 'migrate abort' mid-way leaves the source
#   writable (state idle) and the destination incoming, the log saying so;
# - remote-cowd killed (SIGKILL) mid-copy and started again: the source's
#   migration, sent again to the new daemon, fails cleanly (the
#   destination accepts one source only and no longer listens), never
#   done; the destination stays incoming; abort makes the source writable.
#
# One VM has one helper, so the same remote-cowd plays both sides, over
# loopback TCP (lib-mig.sh).
# shellcheck disable=SC2317	# callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"
. "$(dirname "$0")/lib-mig.sh"

require_vm
require_cmd dmsetup losetup dd cmp fio psktool
tap_plan 42

PORT=17711
mig_setup migrate-daemon

SRC="rc-mig-src"
DST="rc-mig-dst"
new_pair "$SRC" "$DST" || tap_bail "cannot set up the source and the destination"
check_eq "the destination is incoming" incoming "$(state "$DST")"
check "remote-cowd listens for it" wait_until 10 listening "$DST"
check "the receive spec is root-only" test "$(stat -c %a "$RUN/migrate/recv-$DST")" = 600

# --- a wrong key --------------------------------------------------------------
check "migrate with another key: accepted by the kernel" \
	"$RC" migrate "$SRC" --to "127.0.0.1:$PORT" --psk "$tmp/wrong.psk" --run-dir "$RUN"
check "... the source's migration fails" wait_until 30 state_is "$SRC" failed
check "... the destination refused the handshake" \
	wait_until 10 logged "$DST: refused a migration connection: TLS handshake"
check_eq "... nothing was written on the destination" "0 0" \
	"$(rc_status "$DST" present) $(rc_status "$DST" written)"
check_eq "... which is still incoming" incoming "$(state "$DST")"
check "migrate abort returns the failed source to idle" "$RC" migrate "$SRC" abort
check "the source's key file is gone" test ! -e "$RUN/migrate/send-$SRC.psk"

# --- a destination of another extent size ----------------------------------------
make_cow $((DEV_BYTES + (4 << 20))) || tap_bail "no COW loop device"
at_exit "dm_remove rc-mig-other"
"$RC" receive rc-mig-other --cow "$COW_DEV" --base "$BASE" --extent-size 128K \
	--listen "127.0.0.1:$((PORT + 1))" --psk "$tmp/key.psk" --run-dir "$RUN" \
	--fault-timeout 60000 >/dev/null || tap_bail "cannot receive rc-mig-other"
wait_until 10 listening rc-mig-other >/dev/null
check "migrate to a destination of another extent size: accepted by the kernel" \
	"$RC" migrate "$SRC" --to "127.0.0.1:$((PORT + 1))" --psk "$tmp/key.psk" --run-dir "$RUN"
check "... the source's migration fails" wait_until 30 state_is "$SRC" failed
check "... the destination refused its HELLO, naming the mismatch" \
	wait_until 10 logged "rc-mig-other: refused the migration from .*extents of 128 sectors on the source, 256 here"
check_eq "... nothing was written there" "0 incoming" \
	"$(rc_status rc-mig-other written) $(state rc-mig-other)"
"$RC" migrate "$SRC" abort >/dev/null
dm_remove rc-mig-other
check "removing it stops its receive and removes its spec" \
	wait_until 10 test ! -e "$RUN/migrate/recv-rc-mig-other"

# --- an unknown device ---------------------------------------------------------
out=$("$RC" migrate rc-mig-nosuch --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" \
	--run-dir "$RUN" 2>&1)
rc=$?
check_eq "migrate of an unknown device: exit 3 (no such device)" \
	"3 rc-mig-nosuch: no such device" "$rc $(grep -o 'rc-mig-nosuch: no such device' <<<"$out")"
check "... no key handed to the daemon for it" test ! -e "$RUN/migrate/send-rc-mig-nosuch.psk"

# --- the migration, while fio writes -------------------------------------------
mig_fio "$SRC"
sleep 1
# counter <key>: the daemon's counter now (SIGUSR1 rewrites its --stats file)
counter() { kill -USR1 "$HELPER_PID"; sleep 0.5; helper_stat "$1"; }
mb0=$(counter migrate_data_bytes) me0=$(helper_stat migrate_extents)
ms0=$(helper_stat migrate_bytes_sent) mr0=$(helper_stat migrate_bytes_received)
mj0=$(($(helper_stat migrations_sent) + $(helper_stat migrations_received)))
check "migrate --to --psk: started" \
	"$RC" migrate "$SRC" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN"
check "rounds go by while fio writes (migrate_done past the first 8 MiB)" \
	wait_until 120 sent_past "$SRC" 128
check_eq "... still copying while fio writes" copying "$(state "$SRC")"
# finish with fio still writing (harder than a paused guest): writes done
# before the fence are in the last round, later ones fail
check "migrate finish --wait: done" "$RC" migrate "$SRC" finish --wait || {
	tap_diag "$(grep -E "$SRC|$DST" "$HELPER_LOG" | tail -n 20)"
	tap_bail "the migration failed: the checks that follow would wait on held reads"
}
mig_fio_stop
dd if="/dev/mapper/$SRC" of="$tmp/ref" bs=1M iflag=direct status=none
check_eq "the destination is no longer incoming" idle "$(state "$DST")"
check "the destination equals the source byte for byte" \
	cmp "$tmp/ref" "/dev/mapper/$DST"
check_eq "... and holds every written extent" "$(rc_status "$SRC" written)" \
	"$(rc_status "$DST" written)"
check_fails "the source refuses writes" dd if=/dev/zero of="/dev/mapper/$SRC" bs=4k count=1 \
	seek=100 oflag=direct status=none
check_eq "... its state is done" "done" "$(state "$SRC")"
check "keys and specs are gone from the run directory" \
	test -z "$(ls -A "$RUN/migrate")"
check "remote-cowd logged the bytes on the wire" \
	logged "$SRC: migration bytes on the wire: sent"
# one daemon plays both sides: each extent counts once sent, once received
ext_bytes=$(($(dmsetup table "$SRC" | awk '{ print $5 }') * 512))
moved=$(($(counter migrate_extents) - me0))
check "--stats counts both ends of the migration" \
	[ $(($(helper_stat migrations_sent) + $(helper_stat migrations_received) - mj0)) -eq 2 ]
check "... every written extent moved ($moved >= 2 x $(rc_status "$DST" written))" \
	[ "$moved" -ge $((2 * $(rc_status "$DST" written))) ]
check "... and their DATA bytes" \
	[ $(($(helper_stat migrate_data_bytes) - mb0)) -ge $((moved * ext_bytes)) ]
check_eq "... bytes sent = bytes received" $(($(helper_stat migrate_bytes_sent) - ms0)) \
	$(($(helper_stat migrate_bytes_received) - mr0))

# --- abort ---------------------------------------------------------------------
SRC2="rc-mig-src2"
DST2="rc-mig-dst2"
wait_until 10 test ! -e "$RUN/migrate/recv-$DST" >/dev/null
new_pair "$SRC2" "$DST2" || tap_bail "cannot set up the second pair"
wait_until 10 listening "$DST2" >/dev/null
check "migrate the second pair" \
	"$RC" migrate "$SRC2" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN"
wait_until 30 logged "$DST2: receiving from" >/dev/null
check "abort it" "$RC" migrate "$SRC2" abort
check_eq "the source is idle" idle "$(state "$SRC2")"
check "... and takes writes" dd if=/dev/zero of="/dev/mapper/$SRC2" bs=4k count=1 seek=100 \
	oflag=direct status=none
check "the destination stays incoming, and the log says so, with the source's reason" \
	wait_until 30 logged "$DST2: migration not received: the source aborted: the source aborted the migration; the device stays incoming"
check_eq "... its state" incoming "$(state "$DST2")"

# --- remote-cowd killed mid-copy ------------------------------------------------
SRC3="rc-mig-src3"
DST3="rc-mig-dst3"
wait_until 10 test ! -e "$RUN/migrate/recv-$DST2" >/dev/null
new_pair "$SRC3" "$DST3" || tap_bail "cannot set up the third pair"
wait_until 10 listening "$DST3" >/dev/null
"$RC" migrate "$SRC3" --to "127.0.0.1:$PORT" --psk "$tmp/key.psk" --run-dir "$RUN" >/dev/null
wait_until 30 logged "$DST3: receiving from" >/dev/null
helper_kill
helper_start --run-dir "$RUN" -v || tap_bail "remote-cowd does not start again"
check "SIGKILL mid-copy, restarted: the source's migration fails cleanly" \
	wait_until 60 state_is "$SRC3" failed
check "... the new daemon says why" logged "$SRC3: migration to 127.0.0.1:$PORT failed: "
check_eq "... the destination stays incoming" incoming "$(state "$DST3")"
check "... abort: the source takes writes again" bash -c "'$RC' migrate $SRC3 abort &&
	dd if=/dev/zero of=/dev/mapper/$SRC3 bs=4k count=1 seek=100 oflag=direct status=none"
tap_done
