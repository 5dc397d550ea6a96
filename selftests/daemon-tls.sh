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
# Before that, the remote-cow CLI reads the base's size over TLS with the
# same configuration file (cow-size and create without --size), and says
# why it cannot without it.
# shellcheck disable=SC2119,SC2317	# lib-net.sh helpers: optional arguments; callbacks of wait_until
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-net.sh"

require_vm
require_cmd dmsetup losetup nbdkit nbdinfo ip tc openssl
helper_is_daemon || tap_skip_all "needs remote-cowd; the helper is $(helper_name)"
nbdkit --dump-config | grep -q '^tls=yes' ||
	tap_bail "missing tool: this nbdkit was built without TLS (Debian's has it)"
tap_plan 11

NAME="rc-tls"
EXT=128
BASE_BYTES=$((8 << 20))
LEN=$((BASE_BYTES / 512))
TOTAL=$((LEN / EXT))

load_module || tap_bail "cannot load $RC_MODULE"
net_test_setup
test_base_image "$BASE_BYTES" daemon-tls
tmp=$NET_WORKDIR
psk=$tmp/keys.psk
echo "alice:$(openssl rand -hex 32)" >"$psk"
chmod 600 "$psk"
uri="nbds://$NET_SRV_IP:$NET_PORT/$NET_EXPORT"
NET_ANSWER_URI="nbds://alice@$NET_SRV_IP:$NET_PORT/$NET_EXPORT?tls-psk-file=$psk"
net_serve --plugin --tls=require --tls-psk="$psk" file "$BASE_IMG" ||
	tap_bail "cannot start nbdkit with TLS"
make_cow $((BASE_BYTES + (4 << 20))) || tap_bail "no COW loop device"

printf '# no credentials here\nretry_max = 1s\n' >"$tmp/empty.conf"
cat >"$tmp/tls.conf" <<CONF
# remote-cowd test configuration
[nbds://$NET_SRV_IP:$NET_PORT/]
tls_psk_file = $psk
tls_username = alice
CONF

# The CLI: the base's size over TLS, with and without credentials.
RC=$RC_TREE/tools/remote-cow
want=$("$RC" cow-size --size "$BASE_BYTES" --extent-size $((EXT * 512)))
check_eq "cow-size reads an nbds:// base's size with --config" "$want" \
	"$("$RC" cow-size --base "$uri" --config "$tmp/tls.conf" --extent-size $((EXT * 512)) 2>&1)"
out=$("$RC" cow-size --base "$uri" --config "$tmp/empty.conf" 2>&1)
rc=$?
check_eq "cow-size without credentials fails (exit 1)" 1 "$rc"
if grep -q "no TLS credentials are configured" <<<"$out"; then
	tap_ok "and says that no TLS credentials are configured"
else
	tap_not_ok "and says that no TLS credentials are configured" "$out"
fi
tap_diag "$out"

# 1. no credentials for the daemon; the CLI creates the device (its size
# read over TLS, no --size) with a fault timeout of 3 s.
helper_start --config "$tmp/empty.conf" || tap_bail "remote-cowd does not start"
at_exit "dm_remove $NAME"
check "remote-cow create over nbds:// with --config and no --size" \
	"$RC" create "$NAME" --cow "$COW_DEV" --base "$uri" --extent-size $((EXT * 512)) \
	--config "$tmp/tls.conf" --fault-timeout 3000
[ -b "/dev/mapper/$NAME" ] || tap_bail "cannot create $NAME"
check_eq "its length is the base's" "$LEN" "$(blockdev --getsz "/dev/mapper/$NAME")"
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
helper_start --config "$tmp/tls.conf" || tap_bail "remote-cowd does not start with the TLS config"
check_eq "with the PSK from the configuration the device equals the base" "$BASE_SUM" \
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
