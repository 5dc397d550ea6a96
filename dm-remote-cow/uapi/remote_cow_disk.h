/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * remote-cow: the on-disk metadata format of a COW device, shared by the
 * kernel target and the userspace tools (remote-cow check, dump, cow-size).
 * Documentation/remote-cow.rst, "COW device layout", describes it.
 *
 * All metadata blocks are 4 KiB, all integers little-endian:
 *
 *   block 0                        superblock
 *   block RCOW_DISK_BM_BLOCK(B, b, k, c)
 *                                  copy c (0 or 1) of block k of bitmap b,
 *                                  B blocks per bitmap
 *   sector data_offset             data area: extent i at
 *                                  data_offset + i * extent_sectors
 *
 * Every bitmap block is kept twice.  A commit writes a changed block over
 * its older copy, with a sequence number higher than any on the device, so
 * a crash that tears the write leaves the other copy intact.  A load takes
 * the valid copy (checksum, magic, location) with the higher sequence.
 *
 * Sets that are cleared as a whole (the snapshot commit's changed and
 * frozen sets, the migration's changed set) carry an epoch: the superblock
 * holds each one's current epoch and every bitmap block copy the epoch it
 * was written in.  A copy of another epoch reads as all zeroes, so a set
 * is cleared, crash-safe, by one superblock write that bumps its epoch.
 * PRESENT and WRITTEN are never cleared and stay at epoch 0.
 *
 * crc32c below means the Castagnoli CRC with seed 0xffffffff and no final
 * inversion (the kernel's crc32c(~0, ...)), xored with the given constant.
 */
#ifndef _UAPI_REMOTE_COW_DISK_H
#define _UAPI_REMOTE_COW_DISK_H

#include <linux/types.h>

#define RCOW_DISK_MAGIC			0x574f4352	/* "RCOW" */
#define RCOW_DISK_VERSION		2
#define RCOW_DISK_BLOCK_SIZE		4096
#define RCOW_DISK_BLOCK_SECTORS		(RCOW_DISK_BLOCK_SIZE / 512)
/* The data area starts on a multiple of this and of the extent size. */
#define RCOW_DISK_DATA_ALIGN		2048		/* sectors: 1 MiB */
#define RCOW_DISK_NR_BITMAPS		5
#define RCOW_DISK_MAX_URI		1023

/* Superblock flags. */
#define RCOW_DISK_F_CLEAN		0x1	/* shut down cleanly */
#define RCOW_DISK_F_NEEDS_CHECK		0x2	/* a metadata write failed */
/*
 * The destination of a live migration that did not complete: only a table
 * with the "incoming" feature loads it (a half-migrated device is never
 * served as a good one).  Set when such a table is loaded, cleared by
 * MIGRATE_COMPLETE.  Modules and tools older than the flag ignore it.
 */
#define RCOW_DISK_F_INCOMING		0x4

#define RCOW_DISK_SB_CSUM_XOR		0x5ca1ab1e

/* Block 0.  The checksum covers bytes 4..4095 of the block. */
struct rcow_disk_sb {
	__le32 csum;
	__le32 magic;
	__le32 version;
	__le32 flags;		/* RCOW_DISK_F_* */
	__le32 block_size;	/* bytes: RCOW_DISK_BLOCK_SIZE */
	__le32 extent_sectors;
	__le64 dev_sectors;
	__le64 nr_extents;
	__le64 data_offset;	/* sectors */
	__le64 bitmap_start;	/* first bitmap block: 1 */
	__le64 bitmap_blocks;	/* logical blocks per bitmap */
	__le32 nr_bitmaps;	/* RCOW_DISK_NR_BITMAPS */
	__le32 base_uri_len;
	__le64 generation;	/* bumped on every superblock write */
	/*
	 * Everything that changes at run time lives in the first 512 bytes,
	 * written atomically: flags, generation, the epochs and the commit
	 * generations.
	 */
	__le64 commit_started;	/* last snapshot commit generation frozen */
	__le64 commit_done;	/* last one completed (0: none) */
	__le32 epoch[RCOW_DISK_NR_BITMAPS];	/* see above; 0 after format */
	__u8 reserved[4];
	char base_uri[RCOW_DISK_MAX_URI + 1];	/* NUL-padded */
};

#define RCOW_DISK_BM_MAGIC		0x4d424352	/* "RCBM" */
#define RCOW_DISK_BM_CSUM_XOR		0x0b175e75
#define RCOW_DISK_BM_COPIES		2
#define RCOW_DISK_BM_HDR_SIZE		64
/* Bitmap payload per block: 504 little-endian 64-bit words. */
#define RCOW_DISK_BM_WORDS		((RCOW_DISK_BLOCK_SIZE - \
					  RCOW_DISK_BM_HDR_SIZE) / 8)
#define RCOW_DISK_BM_BITS		(RCOW_DISK_BM_WORDS * 64)	/* 32256 */

/*
 * One copy of a bitmap block: this header, then the words.  Bit i of word
 * w of block k describes extent k * RCOW_DISK_BM_BITS + w * 64 + i; bits
 * past the last extent are zero.  The checksum covers bytes 4..4095.
 */
struct rcow_disk_bm_hdr {
	__le32 csum;
	__le32 magic;
	__le64 seq;		/* the commit that wrote this copy */
	__le64 blocknr;		/* where this copy lives (4 KiB blocks) */
	__le32 bitmap;		/* enum remote_cow_bitmap */
	__le32 index;		/* k: logical block within the bitmap */
	__le32 epoch;		/* the bitmap's epoch when written */
	__u8 reserved[28];
};

/* Logical blocks per bitmap for a number of extents. */
#define RCOW_DISK_BM_BLOCKS(nr_extents) \
	(((nr_extents) + RCOW_DISK_BM_BITS - 1) / RCOW_DISK_BM_BITS)

/* Where copy c of block k of bitmap b lives, with B blocks per bitmap. */
#define RCOW_DISK_BM_BLOCK(B, b, k, c) \
	(1 + ((__u64)(b) * (B) + (k)) * RCOW_DISK_BM_COPIES + (c))

/* Metadata blocks (superblock and bitmaps) with B blocks per bitmap. */
#define RCOW_DISK_MD_BLOCKS(B) \
	(1 + (__u64)RCOW_DISK_NR_BITMAPS * RCOW_DISK_BM_COPIES * (B))

#endif /* _UAPI_REMOTE_COW_DISK_H */
