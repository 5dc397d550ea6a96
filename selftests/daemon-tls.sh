#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# An nbds:// base (nbdkit requiring TLS with a pre-shared key) and the
# credentials in remote-cowd's configuration file, never in the table:
#  1. without the credentials the daemon cannot connect, says so in its log
#     and keeps retrying; the guest's read fails at the table's
#     fault_timeout (3 s), nothing is filled;
#  2. restarted with --config naming the PSK file and user for the URI
#     prefix, the daemon connects and the whole device equals the base.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc openssl
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
nbdkit --dump-config | grep -q '^tls=yes' || tap_skip_all "nbdkit was built without TLS"
tap_plan 6

NAME="rc-tls"
EXT=128
BASE_BYTES=$((8 << 20))
LEN=$((BASE_BYTES / 512))
TOTAL=$((LEN / EXT))

load_module || tap_bail "cannot load $RC_MODULE"
net_tmpdir
tmp=$NET_WORKDIR
net_setup || tap_bail "cannot set up the network namespace"
base_sum=$(make_base_image "$tmp/base.img" "$BASE_BYTES" daemon-tls) ||
	tap_bail "cannot make the base image"
psk=$tmp/keys.psk
echo "alice:$(openssl rand -hex 32)" >"$psk"
chmod 600 "$psk"
uri="nbds://$NET_SRV_IP:$NET_PORT/$NET_EXPORT"
NET_ANSWER_URI="nbds://alice@$NET_SRV_IP:$NET_PORT/$NET_EXPORT?tls-psk-file=$psk"
net_serve --plugin --tls=require --tls-psk="$psk" file "$tmp/base.img" ||
	tap_bail "cannot start nbdkit with TLS"
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"

# 1. no credentials
printf '# no credentials here\nretry_max = 1s\n' >"$tmp/empty.conf"
helper_start --config "$tmp/empty.conf" || tap_bail "remote-cowd does not start"
at_exit "dm_remove $NAME"
dmsetup create "$NAME" --table "$(rc_table "$LEN" "$COW_DEV" "$EXT" "$uri" fault_timeout 3000)" ||
	tap_bail "cannot create $NAME"
t0=$SECONDS
check_fails "without credentials the read fails (fault_timeout)" \
	dd if="/dev/mapper/$NAME" of=/dev/null bs=64k count=1 iflag=direct status=none
tap_diag "failed after $((SECONDS - t0)) s; status: $(dmsetup status "$NAME")"
check_eq "nothing was filled" "0/$TOTAL" "$(dm_status_field "$NAME" 2)"
if grep -q "cannot connect" "$HELPER_LOG"; then
	tap_ok "the daemon logs why it cannot connect"
else
	tap_not_ok "the daemon logs why it cannot connect" "$(cat "$HELPER_LOG")"
fi
tap_diag "log: $(grep -m2 "cannot connect" "$HELPER_LOG")"
helper_stop

# 2. credentials in the configuration file
cat >"$tmp/tls.conf" <<CONF
# remote-cowd test configuration
[nbds://$NET_SRV_IP:$NET_PORT/]
tls_psk_file = $psk
tls_username = alice
CONF
helper_start --config "$tmp/tls.conf" || tap_bail "remote-cowd does not start with the TLS config"
check_eq "with the PSK from the configuration the device equals the base" "$base_sum" \
	"$(sha256_of "/dev/mapper/$NAME")"
check_eq "every extent is present" "$TOTAL/$TOTAL" "$(dm_status_field "$NAME" 2)"
if ! dmsetup table "$NAME" | grep -q alice; then
	tap_ok "no credential appears in the table line"
else
	tap_not_ok "no credential appears in the table line" "$(dmsetup table "$NAME")"
fi
dm_remove "$NAME"
helper_stop
tap_diag "log:" "$(cat "$HELPER_LOG")"

tap_done
