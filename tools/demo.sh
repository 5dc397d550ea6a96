#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-remote-cow demo: a disk image that lives on an image server is used at
# once, without copying it first.  Runs inside the test VM ('make demo'
# boots it); needs root and the module.
#
#  1. builds an ext4 image with files of known checksums;
#  2. serves it read-only over NBD (nbdkit) from a "remote host": a network
#     namespace behind a veth link shaped by tc netem (20 ms each way,
#     100 Mbit/s);
#  3. sizes an empty local COW device with 'remote-cow cow-size', creates a
#     remote-cow device over it with 'remote-cow create', and starts the
#     helper (remote-cowd when built, else the selftests' rcow-fill);
#  4. mounts it, reads and checks the files, writes new ones, and counts the
#     bytes that crossed the link against the image size;
#  5. hydrates the rest ('remote-cow hydrate start --wait' with remote-cowd;
#     with rcow-fill, which does not stream, by reading the whole device);
#  6. stops the image server, remounts, checks every file, runs fsck, and
#     removes the device with 'remote-cow remove'.
#
# Environment: DEMO_IMG_MIB (image size, 64), DEMO_DELAY (20ms),
# DEMO_RATE (100mbit), RCOW_HELPER (force a helper program).
# shellcheck disable=SC2119	# lib-net.sh helpers take optional arguments

TREE=${RC_TREE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# The selftests' helpers: at_exit cleanups, images, namespace and link.
# shellcheck source=../selftests/lib.sh
. "$TREE/selftests/lib.sh"
# shellcheck source=../selftests/lib-net.sh
. "$TREE/selftests/lib-net.sh"

NAME=demo
EXT=128				# extent: 64 KiB
IMG_MIB=${DEMO_IMG_MIB:-64}
DELAY=${DEMO_DELAY:-20ms}
RATE=${DEMO_RATE:-100mbit}
CLI=$TREE/tools/remote-cow
t_start=$SECONDS

step_n=0
step() { step_n=$((step_n + 1)); printf '\n[%d] %s\n' "$step_n" "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f %%", 100 * a / b }'; }
# One line from 'remote-cow status --json': extents present, written, helper.
status_line() {
	"$CLI" status "$NAME" --json | python3 -c 'import json, sys
d = json.load(sys.stdin)
print("%d/%d extents present, %d written, helper %s, %s" % (d["extents_present"],
      d["extents_total"], d["extents_written"], d["helper"], d["state"]))'
}
present_now() { "$CLI" status "$NAME" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["extents_present"])'; }
# run <remote-cow arguments...>: show the command, run it, its output indented.
run() {
	info "\$ remote-cow $*"
	"$CLI" "$@" 2>&1 | sed -u 's/^/    | /'
	return "${PIPESTATUS[0]}"
}

[ "$(id -u)" -eq 0 ] || die "needs root: run it with 'make demo' (it boots the test VM)"
for c in nbdkit nbdinfo ip tc mkfs.ext4 fsck.ext4 losetup openssl python3; do
	command -v "$c" >/dev/null || die "$c is not installed (make deps)"
done
[ -x "$CLI" ] || die "tools/remote-cow is not built (make)"
load_module || die "cannot load $RC_MODULE"
net_tmpdir
work=$NET_WORKDIR
mkdir -p "$work/content" "$work/mnt"
at_exit "umount '$work/mnt'"

printf 'dm-remote-cow demo: use a disk image that lives on a server at once, without copying it first.\n'

# ---------------------------------------------------------------------------
step "Building a ${IMG_MIB} MiB ext4 image with files of known checksums"
cat >"$work/content/README.txt" <<EOF
This file lives in an ext4 image on an NBD server.  You are reading it
through dm-remote-cow, which fetched only the extents that hold it.
EOF
mkdir -p "$work/content/photos" "$work/content/docs" "$work/content/video"
for i in 1 2 3 4; do
	image_data "demo-photo$i" $((i * 2 << 20)) >"$work/content/photos/photo$i.raw"
done
for i in 1 2 3; do
	image_data "demo-doc$i" $((i * 40000)) | base64 >"$work/content/docs/doc$i.txt"
done
image_data demo-archive $((4 << 20)) >"$work/content/archive.bin"
# Not read before hydration: hydration brings it over the link.
image_data demo-video $((16 << 20)) >"$work/content/video/film.raw"
(cd "$work/content" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/base.sums"
grep -v ' \./video/' "$work/base.sums" >"$work/early.sums"
mkfs.ext4 -q -F -b 4096 -L remote-image -d "$work/content" "$work/base.img" "${IMG_MIB}M" >/dev/null ||
	die "mkfs.ext4 failed"
img_bytes=$(stat -c %s "$work/base.img")
files_bytes=$(du -sb "$work/content" | cut -f1)
base_sum=$(sha256_of "$work/base.img")
info "$(wc -l <"$work/base.sums") files, $(mib "$files_bytes") of data, image $(mib "$img_bytes")"

# ---------------------------------------------------------------------------
step "Starting the image server: nbdkit in network namespace $NET_NS, link shaped to $DELAY each way, $RATE"
net_setup || die "cannot set up the network namespace"
net_shape "$DELAY" "$RATE" || die "cannot shape the link"
net_serve "$work/base.img" || die "cannot start nbdkit"
info "export $(net_uri) ($(nbdinfo --size "$(net_uri)") bytes, read-only)"
info "ping: $(ping -c1 -W2 "$NET_SRV_IP" | sed -n 's/.*time=\([0-9.]* ms\).*/\1/p') round trip"

# ---------------------------------------------------------------------------
step "Creating an empty local COW device: a sparse file on a loop device"
info "\$ remote-cow cow-size --base $(net_uri)"
cow_bytes=$("$CLI" cow-size --base "$(net_uri)") || die "remote-cow cow-size failed"
info "needs $cow_bytes bytes ($(mib "$cow_bytes")): metadata + a data area as large as the image"
make_cow "$cow_bytes" || die "cannot make the COW loop device"
info "$COW_DEV: $(mib "$cow_bytes") apparent, $(du -k "$(losetup -nO BACK-FILE "$COW_DEV")" | cut -f1) KiB allocated"

step "Creating the remote-cow device /dev/mapper/$NAME over it"
run create "$NAME" --cow "$COW_DEV" --base "$(net_uri)" || die "remote-cow create failed"
at_exit "'$CLI' remove --force $NAME"
run status "$NAME" || die "remote-cow status failed"

step "Starting the helper that fetches missing extents: $(helper_name)"
helper_start || die "the helper did not start"
helper_is_daemon || info "(remote-cowd is not built yet: the selftests' rcow-fill stands in; it fetches synchronously)"
info "status: $(status_line)"

# ---------------------------------------------------------------------------
step "Mounting it and reading files: only what is read comes over the link"
net0=$(net_bytes rx)
t0=$(date +%s.%N)
mount "/dev/mapper/$NAME" "$work/mnt" || die "mount failed"
info "mounted in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f s", b - a }')" \
	"after $(mib $(($(net_bytes rx) - net0))) crossed the link"
(cd "$work/mnt" && ls -l --time-style=+ . photos docs video) | sed 's/^/    | /'
sed 's/^/    | /' "$work/mnt/README.txt"
ls_bytes=$(($(net_bytes rx) - net0))
info "mount + listing + README: $(mib "$ls_bytes") crossed the link" \
	"($(pct "$ls_bytes" "$img_bytes") of the image)"
early_bytes=$(cd "$work/content" && awk '{ print $2 }' "$work/early.sums" | xargs stat -c %s |
	awk '{ s += $1 } END { print s }')
if (cd "$work/mnt" && sha256sum --quiet -c "$work/early.sums"); then
	info "$(wc -l <"$work/early.sums") files read, all match their checksums" \
		"(video/film.raw is left alone: hydration will bring it)"
else
	die "checksum mismatch"
fi
read_bytes=$(($(net_bytes rx) - net0))
info "bytes from the server so far: $(mib "$read_bytes") for $(mib "$early_bytes") of files read" \
	"($(pct "$read_bytes" "$img_bytes") of the $(mib "$img_bytes") image)"
[ "$read_bytes" -le "$early_bytes" ] || ! helper_is_daemon ||
	info "(a little more than the files: remote-cowd reads ahead of sequential reads)"
info "status: $(status_line)"

step "Writing new files: they stay local, nothing goes to the server"
tx0=$(net_bytes tx)
image_data demo-new $((5 << 20)) >"$work/mnt/new-data.bin"
date >"$work/mnt/written-here.txt"
cp "$work/mnt/photos/photo1.raw" "$work/mnt/photo1-copy.raw"
sync
(cd "$work/mnt" && sha256sum new-data.bin written-here.txt photo1-copy.raw) >"$work/new.sums"
info "wrote $(mib $((5 << 20))) + a copy of photo1 ($(mib "$(stat -c %s "$work/mnt/photo1-copy.raw")")); sent to the server meanwhile: $(($(net_bytes tx) - tx0)) bytes (requests only)"
info "status: $(status_line)"
total=$("$CLI" status "$NAME" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["extents_total"])')
info "$(present_now) of $total extents are local now"

# ---------------------------------------------------------------------------
net1=$(net_bytes rx)
present0=$(present_now)
t0=$(date +%s.%N)
if helper_is_daemon; then
	step "Hydrating: remote-cowd streams the remaining extents in the background"
	run hydrate "$NAME" start --wait || die "hydration failed"
else
	step "Hydrating by reading the whole device (stand-in: rcow-fill does not stream; remote-cowd does 'hydrate start')"
	dd if="/dev/mapper/$NAME" of=/dev/null bs=1M iflag=direct status=none ||
		die "reading the whole device failed"
fi
hyd_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
hyd_bytes=$(($(net_bytes rx) - net1))
info "status: $(status_line)"
hyd_ext=$(($(present_now) - present0))
info "$hyd_ext extents ($(mib $((hyd_ext * EXT * 512)))) made local in $hyd_s s;" \
	"$(mib "$hyd_bytes") crossed the link"
[ "$hyd_bytes" -ge $((hyd_ext * EXT * 512)) ] ||
	info "(what did not cross the link is unused space of the image: the server reports it as holes, zero-filled locally)"
[ "$(present_now)" -ge "$total" ] || die "not every extent is present after hydration"
info "every extent is local now"

# ---------------------------------------------------------------------------
step "Stopping the image server: from now on the disk is entirely local"
net_server_kill
net_server_answers && die "the server still answers"
info "nbdkit stopped; $(nbdinfo --size "$(net_uri)" 2>&1 | head -n1 | cut -c1-70)"

step "Unmounting, mounting again, checking every file"
umount "$work/mnt" || die "umount failed"
mount "/dev/mapper/$NAME" "$work/mnt" || die "mount after hydration failed"
(cd "$work/mnt" && sha256sum --quiet -c "$work/base.sums" && sha256sum --quiet -c "$work/new.sums") ||
	die "checksum mismatch after remount"
info "$(($(wc -l <"$work/base.sums") + $(wc -l <"$work/new.sums"))) files match (the image's and the new ones)"
umount "$work/mnt"

step "fsck.ext4 -fn on the device"
fsck_out=$(fsck.ext4 -fn "/dev/mapper/$NAME" 2>&1) || { printf '%s\n' "$fsck_out"; die "fsck found problems"; }
printf '%s\n' "$fsck_out" | tail -n1 | sed 's/^/    /'

status_final=$(status_line)
written=$("$CLI" status "$NAME" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["extents_written"])')
step "Removing the device"
run remove "$NAME" || die "remote-cow remove failed"
helper_stop
[ "$(sha256_of "$work/base.img")" = "$base_sum" ] || die "the image on the server changed"
total_rx=$(net_bytes rx)
total_tx=$(net_bytes tx)

# ---------------------------------------------------------------------------
printf '\nSummary\n'
printf '  %-36s %s\n' \
	"image on the server" "$(mib "$img_bytes") ext4, $(wc -l <"$work/base.sums") files ($(mib "$files_bytes"))" \
	"link" "veth to namespace $NET_NS, netem $DELAY each way, $RATE" \
	"helper" "$(helper_name)" \
	"fetched to mount, list, read README" "$(mib "$ls_bytes")" \
	"fetched to mount + read $(wc -l <"$work/early.sums") files" "$(mib "$read_bytes") ($(pct "$read_bytes" "$img_bytes") of the image)" \
	"hydration$(helper_is_daemon || echo ' (by reading the device)')" "$hyd_ext extents in $hyd_s s, $(mib "$hyd_bytes") over the link" \
	"link total, server -> host" "$(mib "$total_rx") (includes NBD and TCP overhead)" \
	"link total, host -> server" "$(mib "$total_tx") (requests; no data is ever written to the server)" \
	"extents written locally" "$written of $total (64 KiB each)" \
	"final status" "$status_final" \
	"image on the server" "unchanged (sha256 $(echo "$base_sum" | cut -c1-16)...)" \
	"fsck.ext4 -fn" "clean"
printf '\ndemo done in %d s: all checks passed.\n' $((SECONDS - t_start))
