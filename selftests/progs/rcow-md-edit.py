#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""rcow-md-edit: change remote-cow metadata blocks on purpose, for the
selftests that check what the kernel and `remote-cow check` refuse.

  rcow-md-edit.py sb SRC DST [FIELD=VALUE...] [csum=keep]
        copy the superblock (4 KiB) of SRC to DST with fields changed and
        the checksum recomputed (csum=keep: left as it was)
  rcow-md-edit.py sb SRC DST verify
        exit 0 if SRC's superblock checksum is right (DST is not written)
  rcow-md-edit.py sb-flags DEV FLAGS
        rewrite the superblock's flags in place, checksum recomputed
  rcow-md-edit.py stray-bit DEV BLOCK BIT
        set bit BIT in the words of bitmap block copy BLOCK and reseal it
  rcow-md-edit.py sb-set DEV FIELD=VALUE...
        rewrite superblock fields in place (epoch0..epoch4, commit_started,
        commit_done, flags...), checksum recomputed
  rcow-md-edit.py bm-epoch DEV BLOCK EPOCH
        set the epoch of bitmap block copy BLOCK and reseal it
  rcow-md-edit.py set-bit DEV BITMAP EXTENT
        set EXTENT's bit of bitmap BITMAP (0-4 or its name) in the block
        copy a load uses and reseal it; exit 1 if that block has no copy in
        use (a block never written: write an extent of it first)
  rcow-md-edit.py info DEV
        the superblock's commit generations and epochs, then every bitmap
        block copy: bitmap, block, copy, COW block, valid or why not,
        sequence, epoch, and which copy the epoch rule takes
  rcow-md-edit.py bits DEV BITMAP
        the extents set in bitmap BITMAP (0-4 or its name) as a load reads
        it, one run FIRST-LAST (or one extent) a line; exit 1 when a block
        has no valid copy

Offsets and checksums as in Documentation/remote-cow.rst: crc32c of
bytes 4..4095 of the block, seed ~0, no final inversion, xored with
0x5ca1ab1e (superblock) or 0x0b175e75 (bitmap block); the bitmap words
start at byte 64 of a bitmap block.

The epoch rule (uapi/remote_cow_disk.h): a bitmap block copy whose epoch
(header offset 32) is not the superblock's epoch for its bitmap (offset
96 + 4 * bitmap) reads as all zeroes.  Of a block's valid copies, the one
with the highest sequence among those of the current epoch is used; if
there is none, the block is zeroes (cleared, not damage).  A block without
any valid copy is damage.
"""
import struct
import sys

BLOCK = 4096
SB_XOR = 0x5CA1AB1E
BITMAP_XOR = 0x0B175E75
BITMAP_WORDS = 64
SB_FIELDS = {"magic": (4, "<I"), "version": (8, "<I"), "flags": (12, "<I"),
             "block_size": (16, "<I"), "extent_sectors": (20, "<I"),
             "dev_sectors": (24, "<Q"), "nr_extents": (32, "<Q"),
             "data_offset": (40, "<Q"), "bitmap_blocks": (56, "<Q"),
             "nr_bitmaps": (64, "<I"), "generation": (72, "<Q"),
             "commit_started": (80, "<Q"), "commit_done": (88, "<Q"),
             "epoch0": (96, "<I"), "epoch1": (100, "<I"), "epoch2": (104, "<I"),
             "epoch3": (108, "<I"), "epoch4": (112, "<I"),
             "reserved": (116, "<B")}
BM_MAGIC = 0x4D424352
NR_BITMAPS = 5
BM_BITS = (BLOCK - BITMAP_WORDS) * 8      # 32256 extents per block
BITMAP_NAMES = ["present", "written", "dirty-commit", "frozen-commit", "dirty-migrate"]


def crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc_table()


def csum(block, xor):
    c = 0xFFFFFFFF
    for b in block[4:]:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ xor


def seal(block, xor):
    struct.pack_into("<I", block, 0, csum(block, xor))


def edit_block(path, nr, change):
    with open(path, "r+b") as f:
        f.seek(nr * BLOCK)
        block = bytearray(f.read(BLOCK))
        change(block)
        f.seek(nr * BLOCK)
        f.write(block)


def cmd_sb(args):
    src, dst, edits = args[0], args[1], args[2:]
    with open(src, "rb") as f:
        sb = bytearray(f.read(BLOCK))
    if edits == ["verify"]:
        return 0 if struct.unpack_from("<I", sb, 0)[0] == csum(sb, SB_XOR) else 1
    for e in edits:
        key, value = e.split("=")
        if key == "csum":
            continue
        off, fmt = SB_FIELDS[key]
        struct.pack_into(fmt, sb, off, int(value, 0))
    if "csum=keep" not in edits:
        seal(sb, SB_XOR)
    with open(dst, "wb") as f:
        f.write(sb)
    return 0


def cmd_sb_flags(args):
    def change(sb):
        struct.pack_into("<I", sb, 12, int(args[1], 0))
        seal(sb, SB_XOR)
    edit_block(args[0], 0, change)
    return 0


def cmd_stray_bit(args):
    bit = int(args[2])

    def change(block):
        block[BITMAP_WORDS + bit // 8] |= 1 << (bit % 8)
        seal(block, BITMAP_XOR)
    edit_block(args[0], int(args[1]), change)
    return 0


def set_fields(block, edits):
    for e in edits:
        key, value = e.split("=")
        off, fmt = SB_FIELDS[key]
        struct.pack_into(fmt, block, off, int(value, 0))


def cmd_sb_set(args):
    def change(sb):
        set_fields(sb, args[1:])
        seal(sb, SB_XOR)
    edit_block(args[0], 0, change)
    return 0


def cmd_bm_epoch(args):
    def change(block):
        struct.pack_into("<I", block, 32, int(args[2], 0))
        seal(block, BITMAP_XOR)
    edit_block(args[0], int(args[1]), change)
    return 0


class Metadata:
    """A COW device's superblock and bitmap block copies, read."""

    def __init__(self, path):
        self.f = open(path, "rb")
        sb = self.read(0)
        self.nr_extents = struct.unpack_from("<Q", sb, 32)[0]
        self.blocks = struct.unpack_from("<Q", sb, 56)[0]
        self.commit_started, self.commit_done = struct.unpack_from("<QQ", sb, 80)
        self.epoch = list(struct.unpack_from("<5I", sb, 96))

    def read(self, nr):
        self.f.seek(nr * BLOCK)
        return self.f.read(BLOCK)

    def copy(self, b, k, c):
        """(COW block, block bytes, None or why it is not valid, seq, epoch)"""
        nr = 1 + (b * self.blocks + k) * 2 + c
        blk = self.read(nr)
        magic, seq, blocknr, bitmap, index, epoch = struct.unpack_from("<IQQIII", blk, 4)
        why = None
        if not any(blk):
            why = "all zeroes"
        elif magic != BM_MAGIC:
            why = "bad magic"
        elif struct.unpack_from("<I", blk, 0)[0] != csum(blk, BITMAP_XOR):
            why = "checksum mismatch"
        elif blocknr != nr or bitmap != b or index != k:
            why = "belongs elsewhere"
        return nr, blk, why, seq, epoch

    def choose(self, b, k):
        """(copies, the copy used or None, damaged)"""
        copies = [self.copy(b, k, c) for c in (0, 1)]
        valid = [c for c in (0, 1) if copies[c][2] is None]
        current = [c for c in valid if copies[c][4] == self.epoch[b]]
        use = max(current, key=lambda c: copies[c][3]) if current else None
        return copies, use, not valid


def bitmap_arg(text):
    return BITMAP_NAMES.index(text) if text in BITMAP_NAMES else int(text)


def cmd_info(args):
    md = Metadata(args[0])
    print("commit_started %d commit_done %d" % (md.commit_started, md.commit_done))
    print("epochs " + " ".join("%s=%d" % (BITMAP_NAMES[b], md.epoch[b])
                               for b in range(NR_BITMAPS)))
    for b in range(NR_BITMAPS):
        for k in range(md.blocks):
            copies, use, damaged = md.choose(b, k)
            for c, (nr, _, why, seq, epoch) in enumerate(copies):
                state = why if why else "valid seq %d epoch %d" % (seq, epoch)
                print("%s %d copy %d block %d: %s" % (BITMAP_NAMES[b], k, c, nr, state))
            print("%s %d: %s" % (BITMAP_NAMES[b], k, "damaged" if damaged else
                                 "zeroes" if use is None else "copy %d" % use))
    return 0


def cmd_bits(args):
    md = Metadata(args[0])
    b = bitmap_arg(args[1])
    rc, run = 0, None
    for k in range(md.blocks):
        copies, use, damaged = md.choose(b, k)
        if damaged:
            sys.stderr.write("%s block %d: no valid copy\n" % (BITMAP_NAMES[b], k))
            rc = 1
        words = copies[use][1][BITMAP_WORDS:] if use is not None else bytes(BLOCK)
        for i in range(BM_BITS):
            e = k * BM_BITS + i
            if e >= md.nr_extents:
                break
            if words[i // 8] & (1 << (i % 8)):
                if run and run[1] == e - 1:
                    run[1] = e
                    continue
                if run:
                    print_run(run)
                run = [e, e]
    if run:
        print_run(run)
    return rc


def cmd_set_bit(args):
    md = Metadata(args[0])
    b = bitmap_arg(args[1])
    e = int(args[2], 0)
    if e >= md.nr_extents:
        sys.stderr.write("extent %d: the device has %d\n" % (e, md.nr_extents))
        return 1
    k, i = divmod(e, BM_BITS)
    copies, use, _ = md.choose(b, k)
    if use is None:
        sys.stderr.write("%s block %d: no copy in use\n" % (BITMAP_NAMES[b], k))
        return 1

    def change(block):
        block[BITMAP_WORDS + i // 8] |= 1 << (i % 8)
        seal(block, BITMAP_XOR)
    edit_block(args[0], copies[use][0], change)
    return 0


def print_run(run):
    print("%d" % run[0] if run[0] == run[1] else "%d-%d" % (run[0], run[1]))


COMMANDS = {"sb": (cmd_sb, 2), "sb-flags": (cmd_sb_flags, 2), "stray-bit": (cmd_stray_bit, 3),
            "sb-set": (cmd_sb_set, 2), "bm-epoch": (cmd_bm_epoch, 3), "info": (cmd_info, 1),
            "bits": (cmd_bits, 2), "set-bit": (cmd_set_bit, 3)}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS or len(argv) - 2 < COMMANDS[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    return COMMANDS[argv[1]][0](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
