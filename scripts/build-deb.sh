#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# 'make deb': the Debian packages dm-remote-cow-dkms and remote-cow (and the
# native source package), built with dpkg-buildpackage and debhelper from a
# copy of the tree, then checked by lintian.  See
# Documentation/packaging.rst.
#
#   scripts/build-deb.sh
#
# Everything goes to build/deb/ (BUILD=dir: <dir>/deb/), which is emptied
# first: the .debs, the dbgsym package, .dsc, .tar.xz, .buildinfo,
# .changes, build.log and lintian.log.  The tree itself is never written:
# the copy holds the files git knows (tracked, or new and not ignored), or
# outside a git checkout the tree without build/ and build outputs.
#
# Exit status: 0 when the packages were built and lintian reports no error
# or warning (tags overridden in debian/*.lintian-overrides and info tags
# do not count); 1 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT=$BUILD/deb

log() { printf 'build-deb: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for c in dpkg-buildpackage dpkg-parsechangelog dh dh_dkms lintian; do
	command -v "$c" >/dev/null ||
		die "$c is missing: run 'make deps' (scripts/install-deps.sh)"
done

cd "$ROOT"
SRC=$(dpkg-parsechangelog -S Source)
VER=$(dpkg-parsechangelog -S Version)
case $OUT in
"$ROOT"/build/*) ;;
*) log "note: output in $OUT" ;;
esac

rm -rf "$OUT"
DIR=$OUT/$SRC-$VER
mkdir -p "$DIR"

# The source files only: never build/, objects, the .ko or editor files.
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do
			# A tracked file deleted in the work tree is not copied.
			[ -e "$f" ] || [ -L "$f" ] || continue
			printf '%s\0' "$f"
		done |
		tar -C "$ROOT" --null -T - -cf - | tar -C "$DIR" -xf -
else
	tar -C "$ROOT" --exclude=./build --exclude-vcs \
		--exclude='*.o' --exclude='*.a' --exclude='*.ko' --exclude='*.mod' \
		--exclude='*.mod.c' --exclude='.*.cmd' --exclude=modules.order \
		--exclude=Module.symvers --exclude=./userspace/remote-cowd \
		--exclude=./tools/remote-cow -cf - . | tar -C "$DIR" -xf -
fi
[ -x "$DIR/debian/rules" ] || die "no debian/rules in the copy of the tree"

log "building $SRC $VER in $DIR"
set +e
(cd "$DIR" && dpkg-buildpackage --no-sign -us -uc) >"$OUT/build.log" 2>&1
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
	tail -n 40 "$OUT/build.log" >&2
	die "dpkg-buildpackage failed (exit $rc); the whole log: $OUT/build.log"
fi
rm -rf "$DIR"

changes=$OUT/${SRC}_${VER}_$(dpkg-architecture -qDEB_HOST_ARCH).changes
[ -f "$changes" ] || die "no $changes"

# Errors and warnings fail; info tags are shown; overrides are listed.
log "lintian $changes"
set +e
lintian --fail-on error,warning --display-info --show-overrides \
	"$changes" >"$OUT/lintian.log" 2>&1
lrc=$?
set -e
if [ -s "$OUT/lintian.log" ]; then
	sed 's/^/  /' "$OUT/lintian.log" >&2
else
	log "lintian: no tags"
fi
[ "$lrc" -eq 0 ] || die "lintian found errors or warnings (exit $lrc; $OUT/lintian.log)"

log "packages in $OUT:"
for f in "$OUT"/*.deb; do
	printf '  %s\n' "${f#"$ROOT"/}" >&2
done
