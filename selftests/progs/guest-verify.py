#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""guest-verify.py: check a disk written by guest-writer against its consoles.

  guest-verify.py <disk> <reference> <first block> <slots> <extent bytes>
                  <eio out> <console>...

<disk> is read extent by extent with O_DIRECT.  An extent whose read fails
with EIO is listed (its number, one a line) in <eio out>; any other
failure is wrong.  Outside the writer's region (<slots> 4 KiB blocks from
block <first block> on) a readable extent must equal <reference>.  In the
region, each slot must hold the newest block acknowledged there on the
consoles ("ack k" lines) or a newer block of that slot (written, not yet
acknowledged), with its number, pattern and crc32; a slot never
acknowledged may also hold the reference.  Prints a summary; exit 1 on
any wrong data.
"""
import errno
import mmap
import os
import re
import sys
import zlib

BLK, HEAD, BATCH_MAX = 4096, 128, 64


def block(k):
    line = b"rcow block %d\n" % k
    body = (line * (BLK // len(line) + 1))[:BLK - HEAD]
    head = ("RCOWBLK %d %08x" % (k, zlib.crc32(body))).encode().ljust(HEAD - 1) + b"\n"
    return head + body


def main():
    disk, ref_path, first, slots, ext, eio_out = sys.argv[1:7]
    first, slots, ext = int(first), int(slots), int(ext)
    ref = open(ref_path, "rb").read()
    nex = slots // 16
    acked, top = {}, -1
    for con in sys.argv[7:]:
        for line in open(con, "rb").read().decode("latin-1").replace("\r", "").split("\n"):
            m = re.fullmatch(r"(ack|werr) (\d+)( \d+)?", line)
            if not m:
                continue
            k = int(m.group(2))
            top = max(top, k)
            if m.group(1) == "ack":
                s = (k % nex) * 16 + (k // nex) % 16
                acked[s] = max(acked.get(s, -1), k)
    fd = os.open(disk, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, ext)
    eio, bad, newer = [], [], 0
    for e in range(len(ref) // ext):
        try:
            n = os.preadv(fd, [buf], e * ext)
        except OSError as x:
            if x.errno == errno.EIO:
                eio.append("%d\n" % e)
            else:
                bad.append("extent %d: %s" % (e, x))
            continue
        if n != ext:
            bad.append("extent %d: short read (%d bytes)" % (e, n))
            continue
        for b in range(ext // BLK):
            at = e * ext + b * BLK
            got, want_ref = buf[b * BLK:(b + 1) * BLK], ref[at:at + BLK]
            s = at // BLK - first
            if not 0 <= s < slots:
                if got != want_ref:
                    bad.append("block %d (outside the region): not the reference" % (at // BLK))
                continue
            low = acked.get(s)
            if got == want_ref and low is None:
                continue
            head = got[:HEAD].split()
            k = int(head[1]) if len(head) == 3 and head[1].isdigit() else -1
            if (k < 0 or got != block(k) or (k % nex) * 16 + (k // nex) % 16 != s
                    or k > top + BATCH_MAX or (low is not None and k < low)):
                bad.append("slot %d: holds %r..., newest acknowledged there: %s"
                           % (s, bytes(got[:40]), low))
            elif low is not None and k > low:
                newer += 1
    open(eio_out, "w").writelines(eio)
    print("%d extents, %d EIO; %d slots acknowledged (blocks up to %d), %d hold a newer "
          "block; %d wrong" % (len(ref) // ext, len(eio), len(acked), top, newer, len(bad)))
    for b in bad[:10]:
        print(b)
    return 1 if bad else 0


sys.exit(main())
