/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Copyright (C) 2026 The dm-remote-cow authors.
 *
 * Persistent extent state of a remote-cow device.
 */
#ifndef DM_REMOTE_COW_METADATA_H
#define DM_REMOTE_COW_METADATA_H

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/blkdev.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/types.h>
#include <linux/vmalloc.h>

#include "uapi/remote_cow.h"
#include "uapi/remote_cow_disk.h"

/*
 * A zeroed bitmap of @nbits bits, freed with kvfree().  Beyond a page it
 * comes from vmalloc in whole pages: kvmalloc() would round a large
 * bitmap up to a power of two (kmalloc) or to a multiple of 2 MiB (huge
 * vmalloc mappings), up to twice its size.
 */
static inline unsigned long *rcow_bitmap_zalloc(u64 nbits, gfp_t gfp)
{
	size_t size = BITS_TO_LONGS(nbits) * sizeof(unsigned long);

	if (size <= PAGE_SIZE)
		return kzalloc(size, gfp);
	return __vmalloc(size, gfp | __GFP_ZERO);
}

#define RCOW_MD_BLOCK_SIZE	RCOW_DISK_BLOCK_SIZE
#define RCOW_MD_BLOCK_SECTORS	(RCOW_MD_BLOCK_SIZE >> SECTOR_SHIFT)
/* Extents per bitmap block: not a power of two (the block has a header). */
#define RCOW_MD_BITS_PER_BLOCK	RCOW_DISK_BM_BITS
/* The data area starts on a multiple of this (and of the extent size). */
#define RCOW_MD_DATA_ALIGN	RCOW_DISK_DATA_ALIGN

/*
 * What the table line says the device is; the superblock must agree.
 */
struct rcow_geometry {
	sector_t dev_sectors;
	u32 extent_sectors;
	u64 nr_extents;
	const char *base_uri;
};

struct rcow_metadata;

/* Sectors the COW device needs for @geo: metadata plus the data area. */
sector_t rcow_md_required_sectors(const struct rcow_geometry *geo);

/*
 * Open the metadata on @bdev: format it when the superblock block is all
 * zeroes, validate it otherwise: the superblock, and every bitmap block
 * (a damaged one is named in the log).  A writable open is refused while
 * the superblock says needs_check.  The bitmaps are loaded again by
 * rcow_md_load().  On failure returns an ERR_PTR and points *@error at a
 * static message for ti->error.
 */
struct rcow_metadata *rcow_md_open(struct block_device *bdev,
				   sector_t bdev_sectors,
				   const struct rcow_geometry *geo,
				   bool writable, char **error);
void rcow_md_close(struct rcow_metadata *md);

/*
 * Read the bitmaps from disk into memory (the newest valid copy of each
 * block; -EILSEQ and a log line naming the block if there is none, -EUCLEAN
 * if a writable device needs a check).  If the device was not shut down
 * cleanly, *@was_unclean is set (nothing needs repair: see the target's
 * write path).  When @writable, the superblock is then durably marked "in use"
 * (clean flag cleared) before any I/O is allowed.
 */
int rcow_md_load(struct rcow_metadata *md, bool *was_unclean);

/*
 * Make the in-memory state durable: flush the COW device (so data written
 * before this call is stable), then write the changed bitmap blocks and,
 * with @clean, the superblock with the clean flag set.  With @flush the
 * COW device is flushed even when no metadata changed (a guest's flush or
 * FUA must always reach it).  Serialised internally; may sleep.  After a
 * failure every later commit fails, and the superblock's needs_check flag
 * is set (best effort: that write may fail too).
 */
int rcow_md_commit(struct rcow_metadata *md, bool clean, bool flush);

/*
 * Snapshot commit.  rcow_md_freeze() durably adds to FROZEN_COMMIT the
 * present extents of DIRTY_COMMIT (@since_last) or of WRITTEN, records
 * @gen as the last commit started, then clears DIRTY_COMMIT (crash-safe:
 * an epoch bump).  FROZEN_COMMIT keeps the extents of a commit that did
 * not complete, so the next one includes them.  FROZEN_COMMIT is not kept
 * in memory: the freeze sets its bits in @frozen_set (nr_extents bits,
 * zeroed by the caller), *@frozen is its size.
 * rcow_md_commit_done() records @gen as completed and clears
 * FROZEN_COMMIT.  Both are the worker's, with no write in flight that
 * could set DIRTY_COMMIT meanwhile.
 */
int rcow_md_freeze(struct rcow_metadata *md, bool since_last, u64 gen,
		   unsigned long *frozen_set, u64 *frozen);
int rcow_md_commit_done(struct rcow_metadata *md, u64 gen);
void rcow_md_commit_gens(struct rcow_metadata *md, u64 *started, u64 *done);
/*
 * Copy bitmap @b into @dst (nr_extents bits).  For an on-disk set
 * (WRITTEN, DIRTY_COMMIT, FROZEN_COMMIT) it reads the blocks, so it may
 * sleep and fail as rcow_md_next_run() does.
 */
int rcow_md_copy_set(struct rcow_metadata *md, enum remote_cow_bitmap b,
		     unsigned long *dst);

sector_t rcow_md_data_offset(struct rcow_metadata *md);
/* The superblock's incoming flag (RCOW_DISK_F_INCOMING). */
bool rcow_md_incoming(struct rcow_metadata *md);
int rcow_md_set_incoming(struct rcow_metadata *md, bool incoming);
bool rcow_md_was_formatted(struct rcow_metadata *md);

/*
 * PRESENT is the one in-memory bitmap.  Its bits only ever go from 0 to 1
 * while the device runs, so readers test them without locks.  WRITTEN,
 * DIRTY_COMMIT and FROZEN_COMMIT live on disk only: rcow_md_test() says
 * false for them, and they are read with rcow_md_next_run(),
 * rcow_md_read_bits() and rcow_md_copy_set() (the map function tests
 * rcow_md_dirty_durable() instead).
 */
bool rcow_md_test(struct rcow_metadata *md, enum remote_cow_bitmap b,
		  u64 extent);
/*
 * Set a bit.  PRESENT: true if it was clear; atomic, callable from any
 * context.  WRITTEN and DIRTY_COMMIT: the worker's only; true if the bit
 * was recorded (onto a short pending list, into the blocks by the next
 * commit), false if it was there already or the metadata failed; takes
 * the metadata lock and may sleep (a full list is merged into the blocks).
 * Their counts (rcow_md_count()) take the bits when merged.
 */
bool rcow_md_set(struct rcow_metadata *md, enum remote_cow_bitmap b,
		 u64 extent);
/*
 * The next run of set bits of @b at or after @from: [*@first, *@end);
 * both the number of extents if there is none.  Lockless for PRESENT,
 * like rcow_md_test(); for an on-disk set it reads the bitmap's blocks
 * under the metadata lock, so it may sleep (waiting for a metadata
 * commit) and fail (-EIO, -EILSEQ: the block is logged).
 */
int rcow_md_next_run(struct rcow_metadata *md, enum remote_cow_bitmap b,
		     u64 from, u64 *first, u64 *end);
/*
 * True only if the extent's PRESENT bit is on disk: lockless, never
 * waits; may say false for a durable bit (a newer bit of its bitmap
 * block is not yet on disk), never true for one that is not.
 */
bool rcow_md_present_durable(struct rcow_metadata *md, u64 extent);
/*
 * True once the extent's DIRTY_COMMIT bit (and so its WRITTEN bit, set
 * before it) is on disk.  Exact: the commit takes it from the blocks it
 * wrote and flushed, under the metadata lock that every DIRTY_COMMIT
 * bit is set under, so no bit changes between the write of its block and
 * the end of the commit.  The one whole-device bitmap of DIRTY_COMMIT in
 * memory.
 */
bool rcow_md_dirty_durable(struct rcow_metadata *md, u64 extent);
u64 rcow_md_count(struct rcow_metadata *md, enum remote_cow_bitmap b);
/* True if any bit changed since the last commit. */
bool rcow_md_changed(struct rcow_metadata *md);

/*
 * Copy bits [first, first + nr) of bitmap @b into @buf, bit i of byte j
 * describing extent first + 8 * j + i.  @first must be a multiple of 8.
 * May sleep and fail as rcow_md_next_run() does.
 */
int rcow_md_read_bits(struct rcow_metadata *md, enum remote_cow_bitmap b,
		      u64 first, u64 nr, u8 *buf);

#endif /* DM_REMOTE_COW_METADATA_H */
