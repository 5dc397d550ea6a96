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

Offsets and checksums as in Documentation/remote-cow.rst: crc32c of
bytes 4..4095 of the block, seed ~0, no final inversion, xored with
0x5ca1ab1e (superblock) or 0x0b175e75 (bitmap block); the bitmap words
start at byte 64 of a bitmap block.
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
             "nr_bitmaps": (64, "<I"), "reserved": (100, "<B")}


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


COMMANDS = {"sb": (cmd_sb, 2), "sb-flags": (cmd_sb_flags, 2), "stray-bit": (cmd_stray_bit, 3)}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS or len(argv) - 2 < COMMANDS[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    return COMMANDS[argv[1]][0](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
