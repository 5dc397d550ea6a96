// SPDX-License-Identifier: GPL-2.0
/*
 * Copyright (C) 2026 The dm-remote-cow authors.
 *
 * On-disk metadata of the remote-cow target.
 *
 * The COW device starts with 4 KiB metadata blocks (the format is in
 * uapi/remote_cow_disk.h, shared with the userspace checker):
 *
 *   block 0                        superblock (crc32c, geometry, base URI)
 *   blocks 1 ...                   two copies of every bitmap block, each
 *                                  with a header (crc32c, sequence,
 *                                  location) and 32256 bits
 *   sector data_offset             the data area: extent i at
 *                                  data_offset + i * extent_sectors
 *
 * There is no mapping tree: the data area is 1:1 with the virtual device,
 * and sparse allocation is left to the layer below (a thin LV, a sparse
 * file on loop).  So the only metadata that changes at run time are the
 * bitmaps.  A bit only ever goes from 0 to 1, except that a whole set is
 * cleared at once (DIRTY_COMMIT at a snapshot commit's freeze,
 * FROZEN_COMMIT when it completes): the superblock's first sector holds an
 * epoch per set and each bitmap block copy the epoch it was written in, a
 * copy of another epoch reads as zeroes, so one atomic superblock write
 * clears a set (rcow_md_freeze(), rcow_md_commit_done()).
 *
 * PRESENT lives in memory (the target tests it without locks on every
 * bio) and reaches the disk through dm-bufio in rcow_md_commit().
 * FROZEN_COMMIT, WRITTEN and DIRTY_COMMIT live only in their blocks (see
 * on_disk()): the freeze merges the frozen extents into the copy of each
 * block it writes; a WRITTEN or DIRTY_COMMIT bit set by the worker waits
 * on a short list of extents until the next commit merges it into its
 * block (merge_pending(): read the newest copy, copy, set, write over the
 * older copy); readers (netlink, the freeze, migrate send) read them
 * through dm-bufio under md->lock.  The map function tests DIRTY_COMMIT's
 * durable copy, dirty_durable, filled from the blocks a commit wrote.
 * The rule
 * that keeps a crash harmless is that no PRESENT bit may reach the disk
 * before the extent's data did.  A commit therefore stages the PRESENT
 * blocks that changed (their words as of now, in the held dm-bufio buffers
 * of the copies it will write), flushes the whole COW device (every fill
 * and write that completed before the staging is now stable), and only
 * then dirties those buffers.  Bits set after the staging wait for the
 * next commit.  WRITTEN and the dirty bitmaps may safely be ahead of the
 * data (they only cost transfer), so their blocks need no staging, and a
 * commit that stages no PRESENT block skips that first flush.
 *
 * Torn writes.  A 4 KiB block write is not atomic, and a torn bitmap block
 * would fail its checksum.  So each bitmap block has two copies, and a
 * commit writes a changed block over the copy that is not the newest one,
 * with a sequence number above every one on the device.  Whatever happens
 * to that write, the other copy still holds the block as of the previous
 * commit that wrote it.  A load takes, per block, the valid copy (checksum,
 * magic, location) with the higher sequence; one with no valid copy is
 * damage, and the table is refused naming it.  An invalid copy is what a
 * crash during a commit leaves behind: on a device not shut down cleanly
 * it is accepted and rewritten by the next commit, so that on a device
 * marked clean both copies of every block are valid, and an invalid one
 * there is damage too.  The superblock is written whole but only its first
 * sector changes (flags, generation, checksum), and a sector write is
 * assumed atomic, as dm-persistent-data does.
 *
 * WRITTEN and DIRTY_COMMIT are exact: the target issues a write only once
 * its extent's bits are on disk, and the durable copy of DIRTY_COMMIT
 * (dirty_durable, exact because the worker is the only writer of those
 * bits) tells it when.  The superblock's clean flag (durably cleared
 * before the first I/O of a run, set by the last commit of a clean
 * shutdown) is only reported: nothing needs repair after a crash.
 *
 * A failed commit leaves the metadata of the previous commits intact (the
 * rule above and the two copies see to that), but the device could not
 * keep its promises: it sets the superblock's needs_check flag (best
 * effort, the write may fail as well), and a writable table is refused
 * over it until `remote-cow check --clear-needs-check` cleared it.
 *
 * Locking: md->lock serialises load, commit, close, the reads of the
 * on-disk sets' blocks (which copy is the newest, md->newest[] and
 * md->merged[], changes under it, and a block being written is not read
 * half filled) and the pending lists of WRITTEN and DIRTY_COMMIT (set by
 * the worker in rcow_md_set(), merged into the blocks by a commit, a full
 * list or a reader).  It is taken inside rcow_nl_lock (netlink reads)
 * and nothing is taken inside it but dm-bufio's own locks.  PRESENT is
 * read and set with atomic bitops from any context; its "changed" block
 * map is set after the bit it covers and test-and-cleared by the
 * committer before it copies that block, so a bit set concurrently is
 * either in this commit or flags its block for the next one.
 *
 * Durable PRESENT bits (FUA writes, rcow_md_present_durable()) have no
 * copy of their own: a bit is durable if it is set and its block has no
 * bit being set right now (md->present_setting, a counter per block,
 * raised before the bit is set and dropped after the changed flag is),
 * no change waiting (changed) and is not staged in a commit that has not
 * flushed it (md->staged_blocks: set before the commit clears changed,
 * cleared after its flush).  Writers go counter, bit, flag, counter with
 * full barriers; the commit staged flag, clear changed, copy, flush,
 * clear staged flag; the lockless reader bit, counter, changed, staged
 * flag with read barriers.  So a reader that sees the bit sees one of
 * the three set, unless the commit that cleared the flag copied the bit
 * and flushed it.  Per block: a FUA write to a block with newer fills
 * waits for a commit even if its own bit was durable.  Because a
 * DIRTY_COMMIT bit is set under md->lock and a commit holds it from its
 * merge to the update of dirty_durable, that copy never says durable a
 * bit its commit did not write and flush.
 *
 * Two copies within one interval.  A block is merged at most once into
 * its older copy between two commits; a later merge before the commit
 * (a full pending list, a reader) changes that same copy in place
 * (md->merged[]), so the other copy stays the block as last committed
 * until the commit's flush: a crash tears at most the uncommitted copy.
 */

#include <linux/crc32c.h>
#include <linux/dm-bufio.h>
#include <linux/device-mapper.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>

#include "dm-remote-cow-metadata.h"

#define DM_MSG_PREFIX "remote-cow"

#define RCOW_SB_MAGIC		RCOW_DISK_MAGIC
#define RCOW_SB_VERSION		RCOW_DISK_VERSION
#define RCOW_SB_CSUM_XOR	RCOW_DISK_SB_CSUM_XOR
#define RCOW_SB_F_CLEAN		RCOW_DISK_F_CLEAN
#define RCOW_SB_F_NEEDS_CHECK	RCOW_DISK_F_NEEDS_CHECK

static const char * const bitmap_names[RCOW_NR_BITMAPS] = {
	[RCOW_BITMAP_PRESENT] = "present",
	[RCOW_BITMAP_WRITTEN] = "written",
	[RCOW_BITMAP_DIRTY_COMMIT] = "dirty-commit",
	[RCOW_BITMAP_FROZEN_COMMIT] = "frozen-commit",
	[RCOW_BITMAP_DIRTY_MIGRATE] = "dirty-migrate",
};

struct rcow_metadata {
	struct dm_bufio_client *bufio;
	bool writable;
	bool formatted;
	bool failed;

	u32 extent_sectors;
	sector_t dev_sectors;
	u64 nr_extents;
	sector_t data_offset;
	u64 bitmap_blocks;
	u32 sb_flags;
	u64 generation;
	/* As in the superblock; written with it (see rcow_md_clear()). */
	u32 epoch[RCOW_NR_BITMAPS];
	u64 commit_started;
	u64 commit_done;
	/* Highest bitmap copy sequence on disk; the next commit uses seq + 1. */
	u64 seq;

	/* Serialises load, commit and close. */
	struct mutex lock;

	/* Bits set since the last commit (any bitmap). */
	atomic_t changed_any;

	unsigned long *bits[RCOW_NR_BITMAPS];
	/* One bit per bitmap block: the block changed since its last write. */
	unsigned long *changed[RCOW_NR_BITMAPS];
	/* One bit per bitmap block: copy 1 is the newest valid copy. */
	unsigned long *newest[RCOW_NR_BITMAPS];
	/*
	 * One bit per bitmap block of an on-disk set: the block's newest
	 * copy was filled since the last commit (it is not durable yet), so
	 * a later merge before that commit changes that copy in place and
	 * never the other one, which holds the block as last committed.
	 * Cleared by a commit once it wrote and flushed them.
	 */
	unsigned long *merged[RCOW_NR_BITMAPS];
	/*
	 * Bits of WRITTEN and DIRTY_COMMIT set since they were last merged
	 * into their blocks: a short list of extents per set (pending_nr[]
	 * of RCOW_MD_PENDING_MAX; a full list is merged at once, see
	 * rcow_md_set()), merged by the commit (merge_pending()).  Under
	 * md->lock.  pending_words is the scratch block of a merge.
	 */
	u64 *pending[RCOW_NR_BITMAPS];
	unsigned int pending_nr[RCOW_NR_BITMAPS];
	__le64 *pending_words;
	atomic64_t count[RCOW_NR_BITMAPS];

	/*
	 * One bit per bitmap block: the commit in progress staged the
	 * PRESENT block (set before its changed flag is cleared, cleared
	 * once the commit's flush made it durable: see
	 * rcow_md_present_durable()), each held in its dm-bufio buffer
	 * (staged_bufs, one pointer per bitmap block) from the staging to
	 * the end of the commit.  Set and cleared with atomic bitops under
	 * md->lock, read without it.
	 */
	unsigned long *staged_blocks;
	struct dm_buffer **staged_bufs;
	/*
	 * One counter per bitmap block: PRESENT bits of the block being
	 * set right now, from before the bit is set to after its block's
	 * changed flag is (rcow_md_set()).
	 */
	atomic_t *present_setting;
	/*
	 * DIRTY_COMMIT as on disk (see rcow_md_dirty_durable()): filled at
	 * load and after each commit from the blocks it wrote.
	 */
	unsigned long *dirty_durable;
};

/*
 * Pending extents per on-disk set between two merges: 8 KiB per set.  The
 * worker commits after each batch of bios, so a full list (a burst of
 * first writes) only costs a merge into the blocks before the commit.
 */
#define RCOW_MD_PENDING_MAX	1024

static u64 bitmap_blocks_for(u64 nr_extents)
{
	return DIV_ROUND_UP_ULL(nr_extents, RCOW_MD_BITS_PER_BLOCK);
}

static sector_t data_offset_for(const struct rcow_geometry *geo)
{
	sector_t md_sectors =
		RCOW_DISK_MD_BLOCKS(bitmap_blocks_for(geo->nr_extents)) *
		RCOW_MD_BLOCK_SECTORS;
	sector_t align = max_t(sector_t, geo->extent_sectors,
			       RCOW_MD_DATA_ALIGN);

	return roundup(md_sectors, align);
}

sector_t rcow_md_required_sectors(const struct rcow_geometry *geo)
{
	return data_offset_for(geo) + geo->dev_sectors;
}

static u32 block_checksum(const void *block, u32 xor)
{
	return crc32c(~0U, block + sizeof(__le32),
		      RCOW_MD_BLOCK_SIZE - sizeof(__le32)) ^ xor;
}

static u32 sb_checksum(const void *block)
{
	return block_checksum(block, RCOW_SB_CSUM_XOR);
}

static u64 md_blocks(struct rcow_metadata *md)
{
	return RCOW_DISK_MD_BLOCKS(md->bitmap_blocks);
}

static sector_t bitmap_block_nr(struct rcow_metadata *md,
				enum remote_cow_bitmap b, u64 k,
				unsigned int copy)
{
	return RCOW_DISK_BM_BLOCK(md->bitmap_blocks, b, k, copy);
}

/* The bitmap block holding @extent's bit. */
static unsigned long extent_block(u64 extent)
{
	return div_u64(extent, RCOW_MD_BITS_PER_BLOCK);
}

/* Bits per allocated in-memory bitmap: whole metadata blocks. */
static u64 alloc_bits(struct rcow_metadata *md)
{
	return md->bitmap_blocks * RCOW_MD_BITS_PER_BLOCK;
}

/*
 * DIRTY_MIGRATE keeps its blocks in the format but is never set on disk:
 * a running migration keeps its change set in memory, with the target
 * (dm-remote-cow-migrate.c).  So it has no in-memory copy here (NULL in
 * md->bits[]): its blocks are checked at load, rewritten as zeroes when
 * a crash tore one, and read as empty.
 *
 * FROZEN_COMMIT, WRITTEN and DIRTY_COMMIT have no in-memory copy either
 * (NULL in md->bits[]): they change only in the worker (the freeze,
 * rcow_md_commit_done(), a first write) and are read only from contexts
 * that may sleep, so they live in their bitmap blocks behind dm-bufio
 * (on_disk(): read by the epoch rule under md->lock).  The map function
 * tests only dirty_durable, DIRTY_COMMIT as on disk.
 */
static bool on_disk(enum remote_cow_bitmap b)
{
	return b == RCOW_BITMAP_FROZEN_COMMIT ||
	       b == RCOW_BITMAP_WRITTEN || b == RCOW_BITMAP_DIRTY_COMMIT;
}

/* Sets whose bits the worker sets between commits (rcow_md_set()). */
static bool has_pending(enum remote_cow_bitmap b)
{
	return b == RCOW_BITMAP_WRITTEN || b == RCOW_BITMAP_DIRTY_COMMIT;
}

static bool in_memory(enum remote_cow_bitmap b)
{
	return b != RCOW_BITMAP_DIRTY_MIGRATE && !on_disk(b);
}

static unsigned long *alloc_bitmap(u64 nbits)
{
	return rcow_bitmap_zalloc(nbits, GFP_KERNEL);
}

static void free_bitmaps(struct rcow_metadata *md)
{
	int b;

	for (b = 0; b < RCOW_NR_BITMAPS; b++) {
		kvfree(md->bits[b]);
		kvfree(md->changed[b]);
		kvfree(md->newest[b]);
		kvfree(md->merged[b]);
		kfree(md->pending[b]);
	}
	kfree(md->pending_words);
	kvfree(md->staged_blocks);
	kvfree(md->present_setting);
	kvfree(md->staged_bufs);
	kvfree(md->dirty_durable);
}

static int alloc_bitmaps(struct rcow_metadata *md)
{
	u64 nbits = alloc_bits(md);
	int b;

	for (b = 0; b < RCOW_NR_BITMAPS; b++) {
		if (in_memory(b)) {
			md->bits[b] = alloc_bitmap(nbits);
			if (!md->bits[b])
				return -ENOMEM;
		}
		if (has_pending(b)) {
			md->pending[b] = kmalloc_array(RCOW_MD_PENDING_MAX,
						       sizeof(u64),
						       GFP_KERNEL);
			if (!md->pending[b])
				return -ENOMEM;
		}
		md->changed[b] = alloc_bitmap(md->bitmap_blocks);
		md->newest[b] = alloc_bitmap(md->bitmap_blocks);
		md->merged[b] = alloc_bitmap(md->bitmap_blocks);
		if (!md->changed[b] || !md->newest[b] || !md->merged[b])
			return -ENOMEM;
	}
	md->pending_words = kmalloc(RCOW_DISK_BM_WORDS * sizeof(__le64),
				    GFP_KERNEL);
	md->staged_blocks = alloc_bitmap(md->bitmap_blocks);
	md->staged_bufs = kvcalloc(md->bitmap_blocks, sizeof(*md->staged_bufs),
				   GFP_KERNEL);
	md->present_setting = kvcalloc(md->bitmap_blocks,
				       sizeof(*md->present_setting),
				       GFP_KERNEL);
	md->dirty_durable = alloc_bitmap(nbits);
	if (!md->staged_blocks || !md->staged_bufs || !md->present_setting ||
	    !md->dirty_durable || !md->pending_words)
		return -ENOMEM;
	return 0;
}

/* One 64-bit word of an in-memory bitmap; @bit is a multiple of 64. */
static u64 bits_word(const unsigned long *bits, u64 bit)
{
#if BITS_PER_LONG == 64
	return READ_ONCE(bits[bit / BITS_PER_LONG]);
#else
	return READ_ONCE(bits[bit / BITS_PER_LONG]) |
	       ((u64)READ_ONCE(bits[bit / BITS_PER_LONG + 1]) << 32);
#endif
}

static void set_bits_word(unsigned long *bits, u64 bit, u64 val)
{
#if BITS_PER_LONG == 64
	WRITE_ONCE(bits[bit / BITS_PER_LONG], val);
#else
	WRITE_ONCE(bits[bit / BITS_PER_LONG], (unsigned long)val);
	WRITE_ONCE(bits[bit / BITS_PER_LONG + 1], (unsigned long)(val >> 32));
#endif
}

#define WORDS_PER_BLOCK RCOW_DISK_BM_WORDS

static void copy_block_bits(unsigned long *dst, const unsigned long *src,
			    u64 k)
{
	u64 bit = k * RCOW_MD_BITS_PER_BLOCK;
	unsigned int w;

	for (w = 0; w < WORDS_PER_BLOCK; w++, bit += 64)
		set_bits_word(dst, bit, src ? bits_word(src, bit) : 0);
}

static __le64 *bitmap_words(void *block)
{
	return block + RCOW_DISK_BM_HDR_SIZE;
}

/* The header of a bitmap block copy; the checksum comes last. */
static void fill_bitmap_hdr(struct rcow_metadata *md, void *block,
			    enum remote_cow_bitmap b, u64 k,
			    unsigned int copy, u64 seq)
{
	struct rcow_disk_bm_hdr *hdr = block;

	memset(hdr, 0, sizeof(*hdr));
	hdr->magic = cpu_to_le32(RCOW_DISK_BM_MAGIC);
	hdr->seq = cpu_to_le64(seq);
	hdr->blocknr = cpu_to_le64(bitmap_block_nr(md, b, k, copy));
	hdr->bitmap = cpu_to_le32(b);
	hdr->index = cpu_to_le32(k);
	hdr->epoch = cpu_to_le32(md->epoch[b]);
}

/* Seal a filled bitmap block copy: its checksum. */
static void seal_bitmap_block(void *block)
{
	struct rcow_disk_bm_hdr *hdr = block;

	hdr->csum = cpu_to_le32(block_checksum(block, RCOW_DISK_BM_CSUM_XOR));
}

/* Fill a bitmap block copy: header, @src's bits of block @k, checksum. */
static void fill_bitmap_block(struct rcow_metadata *md, void *block,
			      enum remote_cow_bitmap b, u64 k,
			      unsigned int copy, u64 seq,
			      const unsigned long *src)
{
	__le64 *words = bitmap_words(block);
	u64 bit = k * RCOW_MD_BITS_PER_BLOCK;
	unsigned int w;

	fill_bitmap_hdr(md, block, b, k, copy, seq);
	for (w = 0; w < WORDS_PER_BLOCK; w++, bit += 64)
		words[w] = cpu_to_le64(src ? bits_word(src, bit) : 0);
	seal_bitmap_block(block);
}

/* Copy 1 of block @k of bitmap @b is the newest now if it was not. */
static void flip_newest(struct rcow_metadata *md, enum remote_cow_bitmap b,
			u64 k)
{
	change_bit(k, md->newest[b]);
}

/*
 * The buffer of the copy of block @k of bitmap @b that the next write
 * goes to (the one that is not the newest), held, filled with @src's
 * bits of the block under the next sequence number.  Not dirty yet.
 */
static struct dm_buffer *fill_next_copy(struct rcow_metadata *md,
					enum remote_cow_bitmap b, u64 k,
					const unsigned long *src)
{
	unsigned int copy = !test_bit(k, md->newest[b]);
	struct dm_buffer *buf;
	void *block;

	block = dm_bufio_new(md->bufio, bitmap_block_nr(md, b, k, copy), &buf);
	if (IS_ERR(block))
		return ERR_CAST(block);
	fill_bitmap_block(md, block, b, k, copy, md->seq + 1, src);
	return buf;
}

/*
 * Write block @k of bitmap @b over its older copy, which becomes the
 * newest: if this commit fails, nothing is written any more.
 */
static int write_bitmap_block(struct rcow_metadata *md,
			      enum remote_cow_bitmap b, u64 k,
			      const unsigned long *src)
{
	struct dm_buffer *buf = fill_next_copy(md, b, k, src);

	if (IS_ERR(buf))
		return PTR_ERR(buf);
	dm_bufio_mark_buffer_dirty(buf);
	dm_bufio_release(buf);
	flip_newest(md, b, k);
	return 0;
}

/*
 * md->lock held.  Stage PRESENT block @k for this commit: its words as of
 * now go into the buffer of the copy the commit will write, which stays
 * held, clean, until the flush that puts the data under those bits on
 * disk has completed (then rcow_md_commit() marks it dirty).  Staging in
 * the buffer, not in a bitmap of its own, keeps no second copy of PRESENT
 * in memory between commits.
 */
static int stage_present_block(struct rcow_metadata *md, u64 k)
{
	struct dm_buffer *buf = fill_next_copy(md, RCOW_BITMAP_PRESENT, k,
					       md->bits[RCOW_BITMAP_PRESENT]);

	if (IS_ERR(buf))
		return PTR_ERR(buf);
	md->staged_bufs[k] = buf;
	return 0;
}

/* Set in @dst the bits of block @k's words (a block as on disk). */
static void copy_block_words(const void *block, u64 k, unsigned long *dst)
{
	const __le64 *words = block + RCOW_DISK_BM_HDR_SIZE;
	u64 bit = k * RCOW_MD_BITS_PER_BLOCK;
	unsigned int w;

	for (w = 0; w < WORDS_PER_BLOCK; w++, bit += 64)
		set_bits_word(dst, bit, le64_to_cpu(words[w]));
}

/*
 * md->lock held.  Let go of the staged PRESENT buffers; @durable: the
 * commit wrote and flushed them, so the bits they hold are durable now
 * and their blocks' staged flags go (see rcow_md_present_durable()).
 * After a failed commit the buffers are dropped from the cache: they may
 * hold words that never reached the disk; their blocks get their changed
 * flags back and keep their staged flags, so that they never read as
 * durable again (the metadata failed: every later commit fails).
 */
static void release_staged(struct rcow_metadata *md, bool durable)
{
	u64 k;

	for (k = 0; k < md->bitmap_blocks; k++) {
		struct dm_buffer *buf = md->staged_bufs[k];

		if (!test_bit(k, md->staged_blocks))
			continue;
		if (buf) {
			sector_t nr = dm_bufio_get_block_number(buf);

			dm_bufio_release(buf);
			if (!durable)
				dm_bufio_forget(md->bufio, nr);
			md->staged_bufs[k] = NULL;
		}
		if (durable) {
			/* After the flush (done): the words are on disk. */
			smp_mb__before_atomic();
			clear_bit(k, md->staged_blocks);
		} else {
			set_bit(k, md->changed[RCOW_BITMAP_PRESENT]);
		}
	}
}

/* Does @block hold a valid copy @copy of block @k of bitmap @b? */
static bool bitmap_copy_valid(struct rcow_metadata *md, const void *block,
			      enum remote_cow_bitmap b, u64 k,
			      unsigned int copy)
{
	const struct rcow_disk_bm_hdr *hdr = block;

	return le32_to_cpu(hdr->magic) == RCOW_DISK_BM_MAGIC &&
	       le32_to_cpu(hdr->csum) ==
			block_checksum(block, RCOW_DISK_BM_CSUM_XOR) &&
	       le64_to_cpu(hdr->blocknr) == bitmap_block_nr(md, b, k, copy) &&
	       le32_to_cpu(hdr->bitmap) == b && le32_to_cpu(hdr->index) == k;
}

/*
 * md->lock held.  Block @k of on-disk bitmap @b as its newest copy holds
 * it, by the epoch rule: 0 with *@words pointing into that copy's buffer,
 * held in *@bufp until dm_bufio_release(), or 0 with both NULL when the
 * copy is of an older epoch (the set was cleared: the block reads as
 * zeroes).  The load made the newest copy a valid one, of the current
 * epoch if there was one (read_bitmap_block()), and every later write of
 * the block goes to the other copy, which then becomes the newest; so a
 * newest copy that does not check is damage (-EILSEQ, logged).
 */
static int read_newest_copy(struct rcow_metadata *md,
			    enum remote_cow_bitmap b, u64 k,
			    const __le64 **words, struct dm_buffer **bufp)
{
	unsigned int copy = test_bit(k, md->newest[b]);
	sector_t nr = bitmap_block_nr(md, b, k, copy);
	const struct rcow_disk_bm_hdr *hdr;
	struct dm_buffer *buf;
	void *block;

	*words = NULL;
	*bufp = NULL;
	block = dm_bufio_read(md->bufio, nr, &buf);
	if (IS_ERR(block)) {
		DMERR("cannot read bitmap %s block %llu (COW block %llu): %ld",
		      bitmap_names[b], k, (unsigned long long)nr,
		      PTR_ERR(block));
		return PTR_ERR(block);
	}
	if (!bitmap_copy_valid(md, block, b, k, copy)) {
		DMERR("bitmap %s block %llu damaged: newest copy %u (COW block %llu) invalid",
		      bitmap_names[b], k, copy, (unsigned long long)nr);
		dm_bufio_release(buf);
		return -EILSEQ;
	}
	hdr = block;
	if (le32_to_cpu(hdr->epoch) != md->epoch[b]) {
		dm_bufio_release(buf);
		return 0;
	}
	*words = bitmap_words(block);
	*bufp = buf;
	return 0;
}

/* Set in @dst (@nbits bits) the bits of @val, the word at bit @bit. */
static void set_word_bits(unsigned long *dst, u64 bit, u64 val, u64 nbits)
{
	while (val) {
		u64 i = bit + __ffs64(val);

		if (WARN_ON_ONCE(i >= nbits))
			return;
		__set_bit(i, dst);
		val &= val - 1;
	}
}

/*
 * md->lock held.  Block @k of on-disk bitmap @b ORed with @add & @mask
 * (@add: the block's words, little-endian as on disk; @mask: an
 * in-memory bitmap, NULL for all bits; no @add: nothing) goes over the
 * block's older copy, which becomes the newest (as write_bitmap_block()
 * does, and dirty only: the commit writes it), if that sets a bit or with
 * @rewrite (a crash tore the older copy).  If the newest copy was already
 * filled since the last commit (md->merged[]), it is changed in place
 * instead: the older copy is the block as last committed and must stay
 * so until the commit's flush.  The block's bits are also set in @dst (if
 * not NULL, of nr_extents bits) and counted in *@weight, the bits it
 * newly sets in *@added (if not NULL).
 */
static int merge_disk_block(struct rcow_metadata *md,
			    enum remote_cow_bitmap b, u64 k,
			    const __le64 *add, const unsigned long *mask,
			    bool rewrite, unsigned long *dst, u64 *weight,
			    u64 *added)
{
	u64 first = k * RCOW_MD_BITS_PER_BLOCK, bit, val, more;
	struct dm_buffer *obuf, *nbuf = NULL;
	bool write = rewrite, in_place = test_bit(k, md->merged[b]);
	const __le64 *old;
	__le64 *new = NULL;
	unsigned int w, copy;
	void *block = NULL;
	int r;

	r = read_newest_copy(md, b, k, &old, &obuf);
	if (r)
		return r;
	if (in_place && !old) {
		/* A copy filled since the last commit is of this epoch. */
		WARN_ON_ONCE(1);
		r = -EILSEQ;
		goto out;
	}
	for (w = 0, bit = first; add && !write && w < WORDS_PER_BLOCK;
	     w++, bit += 64) {
		val = le64_to_cpu(add[w]) & (mask ? bits_word(mask, bit) : ~0ULL);
		if (val & ~(old ? le64_to_cpu(old[w]) : 0))
			write = true;
	}
	if (write && in_place) {
		block = dm_bufio_get_block_data(obuf);
		new = bitmap_words(block);
	} else if (write) {
		copy = !test_bit(k, md->newest[b]);
		block = dm_bufio_new(md->bufio,
				     bitmap_block_nr(md, b, k, copy), &nbuf);
		if (IS_ERR(block)) {
			r = PTR_ERR(block);
			goto out;
		}
		fill_bitmap_hdr(md, block, b, k, copy, md->seq + 1);
		new = bitmap_words(block);
	}
	for (w = 0, bit = first; w < WORDS_PER_BLOCK; w++, bit += 64) {
		val = old ? le64_to_cpu(old[w]) : 0;
		if (add) {
			more = le64_to_cpu(add[w]) &
			       (mask ? bits_word(mask, bit) : ~0ULL);
			if (added)
				*added += hweight64(more & ~val);
			val |= more;
		}
		if (new)
			new[w] = cpu_to_le64(val);
		*weight += hweight64(val);
		if (dst)
			set_word_bits(dst, bit, val, md->nr_extents);
	}
	if (new) {
		seal_bitmap_block(block);
		if (in_place) {
			dm_bufio_mark_buffer_dirty(obuf);
		} else {
			dm_bufio_mark_buffer_dirty(nbuf);
			dm_bufio_release(nbuf);
			flip_newest(md, b, k);
			set_bit(k, md->merged[b]);
		}
		clear_bit(k, md->changed[b]);
	}
out:
	if (obuf)
		dm_bufio_release(obuf);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/*
 * md->lock held.  Merge the pending extents of set @b into its blocks
 * (merge_disk_block(): each block's next copy, dirty, written by the next
 * commit), counting the bits that were not set yet.  The list is emptied
 * only once every block took its extents: a merge that failed part way
 * may run again (a bit set twice changes nothing).
 */
static int merge_pending_set(struct rcow_metadata *md,
			     enum remote_cow_bitmap b)
{
	u64 *ext = md->pending[b];
	unsigned int i = 0, n = md->pending_nr[b];
	u64 k, base, weight = 0, added = 0;
	int r;

	if (!n)
		return 0;
	sort(ext, n, sizeof(*ext), cmp_u64, NULL);
	while (i < n) {
		k = extent_block(ext[i]);
		base = k * RCOW_MD_BITS_PER_BLOCK;
		memset(md->pending_words, 0,
		       WORDS_PER_BLOCK * sizeof(*md->pending_words));
		for (; i < n && extent_block(ext[i]) == k; i++) {
			u64 off = ext[i] - base;

			md->pending_words[off / 64] |=
				cpu_to_le64(BIT_ULL(off % 64));
		}
		r = merge_disk_block(md, b, k, md->pending_words, NULL, false,
				     NULL, &weight, &added);
		if (r) {
			DMERR("cannot merge bitmap %s block %llu: %d",
			      bitmap_names[b], k, r);
			return r;
		}
	}
	md->pending_nr[b] = 0;
	atomic64_add(added, &md->count[b]);
	return 0;
}

/* md->lock held.  merge_pending_set() of every set with pending bits. */
static int merge_pending(struct rcow_metadata *md)
{
	int b, r;

	for (b = 0; b < RCOW_NR_BITMAPS; b++) {
		if (!md->pending[b])
			continue;
		r = merge_pending_set(md, b);
		if (r)
			return r;
	}
	return 0;
}

/*
 * md->lock held.  *@next: the first extent from @from whose bit in
 * on-disk bitmap @b is @val, the number of extents if none is.
 */
static int disk_next(struct rcow_metadata *md, enum remote_cow_bitmap b,
		     u64 from, bool val, u64 *next)
{
	struct dm_buffer *buf;
	const __le64 *words;
	unsigned int w;
	u64 k, bit, x;
	int r;

	for (k = extent_block(from); k < md->bitmap_blocks; k++) {
		r = read_newest_copy(md, b, k, &words, &buf);
		if (r)
			return r;
		bit = k * RCOW_MD_BITS_PER_BLOCK;
		for (w = 0; w < WORDS_PER_BLOCK; w++, bit += 64) {
			if (bit + 64 <= from)
				continue;
			x = words ? le64_to_cpu(words[w]) : 0;
			if (!val)
				x = ~x;
			if (bit < from)
				x &= ~GENMASK_ULL(from - bit - 1, 0);
			if (x)
				break;
		}
		if (buf)
			dm_bufio_release(buf);
		if (w < WORDS_PER_BLOCK) {
			*next = min(bit + __ffs64(x), md->nr_extents);
			return 0;
		}
	}
	*next = md->nr_extents;
	return 0;
}

/*
 * Where the load copies bitmap @b's blocks: its in-memory bitmap, or for
 * DIRTY_COMMIT the copy the map function tests (as on disk); NULL if none.
 */
static unsigned long *load_dst(struct rcow_metadata *md,
			       enum remote_cow_bitmap b)
{
	if (b == RCOW_BITMAP_DIRTY_COMMIT)
		return md->dirty_durable;
	return md->bits[b];
}

/*
 * Copy a valid block's words into memory (if @b is kept there); false,
 * and nothing copied, if it has bits past the last extent.
 */
static bool load_bitmap_words(struct rcow_metadata *md, const void *block,
			      enum remote_cow_bitmap b, u64 k)
{
	const __le64 *words = block + RCOW_DISK_BM_HDR_SIZE;
	u64 bit = k * RCOW_MD_BITS_PER_BLOCK;
	unsigned int w;

	for (w = 0; w < WORDS_PER_BLOCK; w++, bit += 64) {
		u64 keep = ~0ULL;

		/* Bits past the last extent are never set. */
		if (bit >= md->nr_extents)
			keep = 0;
		else if (bit + 64 > md->nr_extents)
			keep = GENMASK_ULL(md->nr_extents - bit - 1, 0);
		if (le64_to_cpu(words[w]) & ~keep)
			return false;
	}
	if (load_dst(md, b))
		copy_block_words(block, k, load_dst(md, b));
	if (on_disk(b))
		for (w = 0; w < WORDS_PER_BLOCK; w++)
			atomic64_add(hweight64(le64_to_cpu(words[w])),
				     &md->count[b]);
	return true;
}

struct bitmap_load_stats {
	u64 invalid_copies;
};

/*
 * Load block @k of bitmap @b from its newest valid copy.  -EILSEQ, with a
 * log line naming the block, if neither copy is valid, if the chosen one
 * has bits past the last extent, or if a copy is invalid on a device that
 * was shut down cleanly.
 */
static int read_bitmap_block(struct rcow_metadata *md,
			     enum remote_cow_bitmap b, u64 k,
			     struct bitmap_load_stats *st)
{
	struct dm_buffer *buf[RCOW_DISK_BM_COPIES];
	void *block[RCOW_DISK_BM_COPIES];
	bool valid[RCOW_DISK_BM_COPIES], in_epoch[RCOW_DISK_BM_COPIES];
	u64 seq[RCOW_DISK_BM_COPIES] = { 0, 0 };
	unsigned int c, use;
	int r = 0;

	for (c = 0; c < RCOW_DISK_BM_COPIES; c++) {
		block[c] = dm_bufio_read(md->bufio,
					 bitmap_block_nr(md, b, k, c), &buf[c]);
		if (IS_ERR(block[c])) {
			r = PTR_ERR(block[c]);
			DMERR("cannot read bitmap %s block %llu (COW block %llu): %d",
			      bitmap_names[b], k,
			      (unsigned long long)bitmap_block_nr(md, b, k, c),
			      r);
			if (c)
				dm_bufio_release(buf[0]);
			return r;
		}
		valid[c] = bitmap_copy_valid(md, block[c], b, k, c);
		in_epoch[c] = false;
		if (valid[c]) {
			const struct rcow_disk_bm_hdr *hdr = block[c];

			seq[c] = le64_to_cpu(hdr->seq);
			in_epoch[c] = le32_to_cpu(hdr->epoch) == md->epoch[b];
		}
	}

	if (!valid[0] && !valid[1]) {
		DMERR("bitmap %s block %llu damaged: no valid copy (blocks %llu, %llu)",
		      bitmap_names[b], k,
		      (unsigned long long)bitmap_block_nr(md, b, k, 0),
		      (unsigned long long)bitmap_block_nr(md, b, k, 1));
		r = -EILSEQ;
		goto out;
	}
	if (!valid[0] || !valid[1]) {
		c = valid[0] ? 1 : 0;
		if (md->sb_flags & RCOW_SB_F_CLEAN) {
			DMERR("bitmap %s block %llu damaged: copy %u (block %llu) bad, sb clean",
			      bitmap_names[b], k, c,
			      (unsigned long long)bitmap_block_nr(md, b, k, c));
			r = -EILSEQ;
			goto out;
		}
		/* Torn by a crash during a commit: rewritten by the next. */
		st->invalid_copies++;
		set_bit(k, md->changed[b]);
	}
	use = valid[0] && valid[1] ? seq[1] > seq[0] : valid[1];
	md->seq = max(md->seq, seq[use]);
	/*
	 * Only a copy of the set's current epoch counts (rcow_md_clear());
	 * epochs only grow, so that is the newer copy if both are valid.
	 */
	if (!in_epoch[use] && valid[!use] && in_epoch[!use])
		use = !use;
	if (use)
		set_bit(k, md->newest[b]);
	else
		clear_bit(k, md->newest[b]);
	if (!in_epoch[use]) {
		if (load_dst(md, b))
			copy_block_bits(load_dst(md, b), NULL, k);
		goto out;
	}
	if (!load_bitmap_words(md, block[use], b, k)) {
		DMERR("bitmap %s block %llu damaged: copy %u (block %llu) sets bits past end",
		      bitmap_names[b], k, use,
		      (unsigned long long)bitmap_block_nr(md, b, k, use));
		r = -EILSEQ;
		goto out;
	}
out:
	for (c = 0; c < RCOW_DISK_BM_COPIES; c++)
		dm_bufio_release(buf[c]);
	return r;
}

/*
 * Read every bitmap block into memory, dropping what dm-bufio cached (a
 * previous table over the device may have written since).
 */
static int read_bitmaps(struct rcow_metadata *md)
{
	struct bitmap_load_stats st = { 0 };
	u64 k;
	int b, r;

	md->seq = 0;
	for (b = 0; b < RCOW_NR_BITMAPS; b++) {
		atomic64_set(&md->count[b], 0);
		bitmap_zero(md->merged[b], md->bitmap_blocks);
		md->pending_nr[b] = 0;
	}
	dm_bufio_forget_buffers(md->bufio, 1, md_blocks(md) - 1);
	dm_bufio_prefetch(md->bufio, 1, md_blocks(md) - 1);
	/* No commit in progress: nothing staged. */
	bitmap_zero(md->staged_blocks, md->bitmap_blocks);
	for (b = 0; b < RCOW_NR_BITMAPS; b++) {
		bitmap_zero(md->changed[b], md->bitmap_blocks);
		for (k = 0; k < md->bitmap_blocks; k++) {
			r = read_bitmap_block(md, b, k, &st);
			if (r)
				return r;
		}
	}
	if (st.invalid_copies) {
		DMWARN("%llu bitmap block copies torn by a crash during a commit: %s",
		       st.invalid_copies, md->writable ?
		       "the next commit rewrites them" :
		       "left as they are (read-only)");
		if (md->writable)
			atomic_set(&md->changed_any, 1);
		else
			for (b = 0; b < RCOW_NR_BITMAPS; b++)
				bitmap_zero(md->changed[b], md->bitmap_blocks);
	}
	return 0;
}

static int write_sb(struct rcow_metadata *md, const char *base_uri)
{
	struct rcow_disk_sb *sb;
	struct dm_buffer *buf;
	size_t len = strlen(base_uri);
	int b, r;

	sb = dm_bufio_new(md->bufio, 0, &buf);
	if (IS_ERR(sb))
		return PTR_ERR(sb);
	memset(sb, 0, RCOW_MD_BLOCK_SIZE);
	sb->magic = cpu_to_le32(RCOW_SB_MAGIC);
	sb->version = cpu_to_le32(RCOW_SB_VERSION);
	sb->flags = cpu_to_le32(md->sb_flags);
	sb->block_size = cpu_to_le32(RCOW_MD_BLOCK_SIZE);
	sb->extent_sectors = cpu_to_le32(md->extent_sectors);
	sb->dev_sectors = cpu_to_le64(md->dev_sectors);
	sb->nr_extents = cpu_to_le64(md->nr_extents);
	sb->data_offset = cpu_to_le64(md->data_offset);
	sb->bitmap_start = cpu_to_le64(1);
	sb->bitmap_blocks = cpu_to_le64(md->bitmap_blocks);
	sb->nr_bitmaps = cpu_to_le32(RCOW_NR_BITMAPS);
	sb->base_uri_len = cpu_to_le32(len);
	sb->generation = cpu_to_le64(++md->generation);
	sb->commit_started = cpu_to_le64(md->commit_started);
	sb->commit_done = cpu_to_le64(md->commit_done);
	for (b = 0; b < RCOW_NR_BITMAPS; b++)
		sb->epoch[b] = cpu_to_le32(md->epoch[b]);
	memcpy(sb->base_uri, base_uri, len);
	sb->csum = cpu_to_le32(sb_checksum(sb));
	dm_bufio_mark_buffer_dirty(buf);
	dm_bufio_release(buf);

	r = dm_bufio_write_dirty_buffers(md->bufio);
	if (!r)
		r = dm_bufio_issue_flush(md->bufio);
	return r;
}

/* The superblock holds the base URI; keep it only while writing it. */
static int update_sb(struct rcow_metadata *md)
{
	struct rcow_disk_sb *sb;
	struct dm_buffer *buf;
	char *uri;
	int r;

	sb = dm_bufio_read(md->bufio, 0, &buf);
	if (IS_ERR(sb))
		return PTR_ERR(sb);
	uri = kstrndup(sb->base_uri, REMOTE_COW_MAX_URI, GFP_NOIO);
	dm_bufio_release(buf);
	if (!uri)
		return -ENOMEM;
	r = write_sb(md, uri);
	kfree(uri);
	return r;
}

/*
 * Zeroed bitmaps: copy 0 of every block with sequence 1, copy 1 with 0, so
 * both are valid and copy 0 is the newest.
 */
static int format(struct rcow_metadata *md, const struct rcow_geometry *geo)
{
	struct dm_buffer *buf;
	unsigned int c;
	u64 k;
	void *p;
	int b, r;

	DMINFO("formatting COW device: %llu extents of %u sectors, data at sector %llu",
	       md->nr_extents, md->extent_sectors,
	       (unsigned long long)md->data_offset);
	for (b = 0; b < RCOW_NR_BITMAPS; b++) {
		for (k = 0; k < md->bitmap_blocks; k++) {
			for (c = 0; c < RCOW_DISK_BM_COPIES; c++) {
				p = dm_bufio_new(md->bufio,
						 bitmap_block_nr(md, b, k, c),
						 &buf);
				if (IS_ERR(p))
					return PTR_ERR(p);
				fill_bitmap_block(md, p, b, k, c, !c, NULL);
				dm_bufio_mark_buffer_dirty(buf);
				dm_bufio_release(buf);
			}
		}
		/* Keep dm-bufio's memory bounded on large devices. */
		r = dm_bufio_write_dirty_buffers(md->bufio);
		if (r)
			return r;
	}
	r = dm_bufio_issue_flush(md->bufio);
	if (r)
		return r;
	md->seq = 1;
	md->sb_flags = RCOW_SB_F_CLEAN;
	md->formatted = true;
	return write_sb(md, geo->base_uri);
}

/* ti->error and the log when a writable table meets needs_check. */
#define NEEDS_CHECK_MSG \
	"COW metadata needs a check: run `remote-cow check --clear-needs-check COW_DEV`"

/* What changes at run time: the superblock's first sector. */
static void read_sb_state(struct rcow_metadata *md,
			  const struct rcow_disk_sb *sb)
{
	int b;

	md->sb_flags = le32_to_cpu(sb->flags);
	md->generation = le64_to_cpu(sb->generation);
	md->commit_started = le64_to_cpu(sb->commit_started);
	md->commit_done = le64_to_cpu(sb->commit_done);
	for (b = 0; b < RCOW_NR_BITMAPS; b++)
		md->epoch[b] = le32_to_cpu(sb->epoch[b]);
}

static int validate_sb(struct rcow_metadata *md, const struct rcow_disk_sb *sb,
		       const struct rcow_geometry *geo, char **error)
{
	u32 uri_len = le32_to_cpu(sb->base_uri_len);

	if (le32_to_cpu(sb->magic) != RCOW_SB_MAGIC) {
		*error = "COW device has no remote-cow superblock (zero 4 KiB to format)";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->csum) != sb_checksum(sb)) {
		*error = "COW superblock checksum mismatch (metadata corrupt)";
		return -EILSEQ;
	}
	if (le32_to_cpu(sb->version) == 1) {
		*error = "COW metadata version 1 is too old: this module reads version 2 only";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->version) != RCOW_SB_VERSION) {
		*error = "COW metadata version not supported by this module";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->extent_sectors) != geo->extent_sectors) {
		*error = "COW device was formatted with another extent size";
		return -EINVAL;
	}
	if (le64_to_cpu(sb->dev_sectors) != geo->dev_sectors) {
		*error = "COW device was formatted for another device length";
		return -EINVAL;
	}
	if (uri_len != strlen(geo->base_uri) ||
	    memcmp(sb->base_uri, geo->base_uri, uri_len)) {
		*error = "COW device was formatted for another base image";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->block_size) != RCOW_MD_BLOCK_SIZE ||
	    le64_to_cpu(sb->nr_extents) != md->nr_extents ||
	    le64_to_cpu(sb->data_offset) != md->data_offset ||
	    le64_to_cpu(sb->bitmap_start) != 1 ||
	    le64_to_cpu(sb->bitmap_blocks) != md->bitmap_blocks ||
	    le32_to_cpu(sb->nr_bitmaps) != RCOW_NR_BITMAPS) {
		*error = "COW superblock geometry is inconsistent (metadata corrupt)";
		return -EILSEQ;
	}
	read_sb_state(md, sb);
	if (md->writable && (md->sb_flags & RCOW_SB_F_NEEDS_CHECK)) {
		*error = NEEDS_CHECK_MSG;
		return -EUCLEAN;
	}
	return 0;
}

static int reread_sb_flags(struct rcow_metadata *md)
{
	struct rcow_disk_sb *sb;
	struct dm_buffer *buf;
	int r = 0;

	sb = dm_bufio_read(md->bufio, 0, &buf);
	if (IS_ERR(sb))
		return PTR_ERR(sb);
	if (le32_to_cpu(sb->magic) != RCOW_SB_MAGIC ||
	    le32_to_cpu(sb->csum) != sb_checksum(sb)) {
		DMERR("COW superblock changed under the device (corrupt)");
		r = -EILSEQ;
	} else {
		read_sb_state(md, sb);
	}
	dm_bufio_release(buf);
	return r;
}

struct rcow_metadata *rcow_md_open(struct block_device *bdev,
				   sector_t bdev_sectors,
				   const struct rcow_geometry *geo,
				   bool writable, char **error)
{
	struct rcow_metadata *md;
	struct dm_buffer *buf;
	void *sb;
	bool zeroed;
	int r;

	BUILD_BUG_ON(sizeof(struct rcow_disk_sb) > RCOW_MD_BLOCK_SIZE);
	BUILD_BUG_ON(offsetof(struct rcow_disk_sb, base_uri) != 120);
	BUILD_BUG_ON(sizeof(struct rcow_disk_bm_hdr) != RCOW_DISK_BM_HDR_SIZE);
	BUILD_BUG_ON(RCOW_DISK_NR_BITMAPS != RCOW_NR_BITMAPS);
	BUILD_BUG_ON(RCOW_DISK_MAX_URI != REMOTE_COW_MAX_URI);

	md = kzalloc(sizeof(*md), GFP_KERNEL);
	if (!md) {
		*error = "Cannot allocate metadata context";
		return ERR_PTR(-ENOMEM);
	}
	mutex_init(&md->lock);
	md->writable = writable;
	md->extent_sectors = geo->extent_sectors;
	md->dev_sectors = geo->dev_sectors;
	md->nr_extents = geo->nr_extents;
	md->bitmap_blocks = bitmap_blocks_for(geo->nr_extents);
	md->data_offset = data_offset_for(geo);

	if (bdev_sectors < rcow_md_required_sectors(geo)) {
		*error = "COW device too small (see `remote-cow cow-size`)";
		r = -ENOSPC;
		goto bad;
	}

	md->bufio = dm_bufio_client_create(bdev, RCOW_MD_BLOCK_SIZE, 1, 0,
					   NULL, NULL, 0);
	if (IS_ERR(md->bufio)) {
		*error = "Cannot create dm-bufio client for the COW device";
		r = PTR_ERR(md->bufio);
		md->bufio = NULL;
		goto bad;
	}

	r = alloc_bitmaps(md);
	if (r) {
		*error = "Cannot allocate extent bitmaps";
		goto bad;
	}

	sb = dm_bufio_read(md->bufio, 0, &buf);
	if (IS_ERR(sb)) {
		*error = "Cannot read the COW superblock";
		r = PTR_ERR(sb);
		goto bad;
	}
	zeroed = !memchr_inv(sb, 0, RCOW_MD_BLOCK_SIZE);
	r = zeroed ? 0 : validate_sb(md, sb, geo, error);
	dm_bufio_release(buf);
	if (r)
		goto bad;

	if (zeroed) {
		if (!writable) {
			*error = "COW device is not formatted and the table is read-only";
			r = -EROFS;
			goto bad;
		}
		r = format(md, geo);
		if (r) {
			*error = "Cannot format the COW device (write failed)";
			goto bad;
		}
	} else {
		/* Refuse damage now; rcow_md_load() reads them again. */
		r = read_bitmaps(md);
		if (r == -EILSEQ) {
			*error = "COW bitmap damaged (see log): run `remote-cow check COW_DEV`";
			goto bad;
		} else if (r) {
			*error = "Cannot read the COW bitmaps";
			goto bad;
		}
	}
	return md;

bad:
	rcow_md_close(md);
	return ERR_PTR(r);
}

void rcow_md_close(struct rcow_metadata *md)
{
	if (md->bufio)
		dm_bufio_client_destroy(md->bufio);
	free_bitmaps(md);
	kfree(md);
}

int rcow_md_load(struct rcow_metadata *md, bool *was_unclean)
{
	u64 nbits = alloc_bits(md);
	int b, r = 0;

	*was_unclean = false;
	mutex_lock(&md->lock);

	/*
	 * Another table instance over this COW device may have committed
	 * (and set the clean flag, or needs_check) since our constructor
	 * read the metadata: read it again.
	 */
	dm_bufio_forget(md->bufio, 0);
	r = reread_sb_flags(md);
	if (r)
		goto out;
	if (md->writable && (md->sb_flags & RCOW_SB_F_NEEDS_CHECK)) {
		DMERR("%s", NEEDS_CHECK_MSG);
		r = -EUCLEAN;
		goto out;
	}
	r = read_bitmaps(md);
	if (r)
		goto out;

	/*
	 * Nothing to repair after an unclean shutdown: WRITTEN and
	 * DIRTY_COMMIT were durable before any write they cover was issued
	 * (see the target's write path).
	 */
	*was_unclean = !(md->sb_flags & RCOW_SB_F_CLEAN);

	/* read_bitmaps() counted the on-disk sets. */
	for (b = 0; b < RCOW_NR_BITMAPS; b++)
		if (md->bits[b])
			atomic64_set(&md->count[b],
				     bitmap_weight(md->bits[b], nbits));
	/*
	 * read_bitmaps() filled dirty_durable; every PRESENT bit is durable
	 * (no block changed or staged, see rcow_md_present_durable()).
	 */

	/* From here on, a crash is an unclean shutdown. */
	if (md->writable && (md->sb_flags & RCOW_SB_F_CLEAN)) {
		md->sb_flags &= ~RCOW_SB_F_CLEAN;
		r = update_sb(md);
		if (r)
			md->failed = true;
	}
out:
	mutex_unlock(&md->lock);
	return r;
}

/*
 * Best effort after a failed commit: record in the superblock that the
 * device needs a check.  The write may fail like the commit did.
 */
static void mark_needs_check(struct rcow_metadata *md)
{
	int r;

	if (md->sb_flags & RCOW_SB_F_NEEDS_CHECK)
		return;
	md->sb_flags |= RCOW_SB_F_NEEDS_CHECK;
	r = update_sb(md);
	if (r)
		DMERR("cannot set needs_check in the COW superblock: %d", r);
	else
		DMERR("needs_check set in the COW superblock: run `remote-cow check`");
}

/*
 * md->lock held, after a commit wrote and flushed the blocks it merged:
 * DIRTY_COMMIT's blocks merged in it are on disk now, so the map
 * function's copy takes their words (read back from dm-bufio's cache).
 * Only the worker sets DIRTY_COMMIT bits, and it does not while it
 * commits, so the blocks hold no bit that is not durable.
 */
static int update_dirty_durable(struct rcow_metadata *md)
{
	const enum remote_cow_bitmap b = RCOW_BITMAP_DIRTY_COMMIT;
	struct dm_buffer *buf;
	const __le64 *words;
	u64 k, bit;
	unsigned int w;
	int r;

	for (k = 0; k < md->bitmap_blocks; k++) {
		if (!test_bit(k, md->merged[b]))
			continue;
		r = read_newest_copy(md, b, k, &words, &buf);
		if (r)
			return r;
		bit = k * RCOW_MD_BITS_PER_BLOCK;
		for (w = 0; w < WORDS_PER_BLOCK; w++, bit += 64)
			set_bits_word(md->dirty_durable, bit,
				      words ? le64_to_cpu(words[w]) : 0);
		if (buf)
			dm_bufio_release(buf);
	}
	return 0;
}

/* md->lock held. */
static int __commit(struct rcow_metadata *md, bool clean, bool flush)
{
	u64 k, weight = 0;
	int b, r = 0;
	bool want_clean_change;

	if (!md->writable)
		return -EROFS;
	if (md->failed)
		return -EIO;
	want_clean_change = clean != !!(md->sb_flags & RCOW_SB_F_CLEAN);
	if (!atomic_xchg(&md->changed_any, 0) && !want_clean_change) {
		/*
		 * Nothing to write, but a flush asked by the guest must
		 * still reach the COW device: data written to extents that
		 * are already PRESENT and WRITTEN changes no bit.
		 */
		if (flush) {
			r = dm_bufio_issue_flush(md->bufio);
			if (r)
				goto fail;
		}
		return 0;
	}

	/*
	 * Stage PRESENT before the flush: only those bits are covered.  A
	 * block's staged flag is set before its changed flag is cleared
	 * (test_and_clear_bit() is fully ordered), so a lockless reader
	 * that finds the changed flag cleared finds the staged flag set, or
	 * cleared by release_staged() after this commit's flush; and the
	 * words are copied after the clear (ordered by it too), so a bit
	 * set before its block was flagged again is in this copy, see
	 * rcow_md_set().  Only the committer clears a changed flag of
	 * PRESENT, under md->lock, so one found set here stays set.
	 */
	WARN_ON_ONCE(!bitmap_empty(md->staged_blocks, md->bitmap_blocks));
	for (k = 0; k < md->bitmap_blocks; k++) {
		if (!test_bit(k, md->changed[RCOW_BITMAP_PRESENT]))
			continue;
		set_bit(k, md->staged_blocks);
		WARN_ON_ONCE(!test_and_clear_bit(k, md->changed[RCOW_BITMAP_PRESENT]));
		r = stage_present_block(md, k);
		if (r)
			goto fail;
	}

	/*
	 * Only PRESENT must not reach the disk before the data: with no
	 * PRESENT block staged, the flush after the bitmap writes is the
	 * only one needed (it also makes a guest's flush reach the device).
	 * Saves a flush of a busy COW device on each commit that only
	 * records first writes.
	 */
	if (!bitmap_empty(md->staged_blocks, md->bitmap_blocks)) {
		r = dm_bufio_issue_flush(md->bufio);
		if (r)
			goto fail;
	}

	for (k = 0; k < md->bitmap_blocks; k++) {
		if (!test_bit(k, md->staged_blocks))
			continue;
		dm_bufio_mark_buffer_dirty(md->staged_bufs[k]);
		flip_newest(md, RCOW_BITMAP_PRESENT, k);
	}
	/*
	 * WRITTEN and DIRTY_COMMIT bits set since the last merge go into
	 * their blocks (a block merged earlier in this interval is changed
	 * in place), before the torn copies are rewritten below: a merge
	 * writes over a block's torn copy and clears its flag.
	 */
	r = merge_pending(md);
	if (r)
		goto fail;
	for (b = 0; b < RCOW_NR_BITMAPS; b++) {
		if (b == RCOW_BITMAP_PRESENT)
			continue;
		for (k = 0; k < md->bitmap_blocks; k++) {
			if (!test_and_clear_bit(k, md->changed[b]))
				continue;
			if (on_disk(b))
				r = merge_disk_block(md, b, k, NULL, NULL, true,
						     NULL, &weight, NULL);
			else
				r = write_bitmap_block(md, b, k, md->bits[b]);
			if (r)
				goto fail;
		}
	}
	r = dm_bufio_write_dirty_buffers(md->bufio);
	if (!r)
		r = dm_bufio_issue_flush(md->bufio);
	if (r)
		goto fail;
	md->seq++;

	if (want_clean_change) {
		if (clean)
			md->sb_flags |= RCOW_SB_F_CLEAN;
		else
			md->sb_flags &= ~RCOW_SB_F_CLEAN;
		r = update_sb(md);
		if (r)
			goto fail;
	}

	release_staged(md, true);
	r = update_dirty_durable(md);
	if (r)
		goto fail;
	for (b = 0; b < RCOW_NR_BITMAPS; b++)
		bitmap_zero(md->merged[b], md->bitmap_blocks);
	return 0;

fail:
	release_staged(md, false);
	DMERR("metadata commit failed: %d", r);
	md->failed = true;
	mark_needs_check(md);
	return r;
}

int rcow_md_commit(struct rcow_metadata *md, bool clean, bool flush)
{
	int r;

	mutex_lock(&md->lock);
	r = __commit(md, clean, flush);
	mutex_unlock(&md->lock);
	return r;
}

/*
 * md->lock held.  Clear set @b, crash-safe, by bumping its epoch in the
 * superblock: the blocks on disk are of the old epoch now and read as
 * zeroes.  One superblock write, whatever the device size.
 */
static int clear_set(struct rcow_metadata *md, enum remote_cow_bitmap b)
{
	u64 nbits = alloc_bits(md);
	int r;

	/* Called right after a commit: nothing pending, nothing merged. */
	WARN_ON_ONCE(md->pending_nr[b] ||
		     !bitmap_empty(md->merged[b], md->bitmap_blocks));
	if (md->bits[b])
		bitmap_zero(md->bits[b], nbits);
	bitmap_zero(md->changed[b], md->bitmap_blocks);
	if (b == RCOW_BITMAP_DIRTY_COMMIT)
		bitmap_zero(md->dirty_durable, nbits);
	atomic64_set(&md->count[b], 0);
	md->epoch[b]++;
	r = update_sb(md);
	if (r) {
		DMERR("cannot clear bitmap %s: superblock write failed: %d",
		      bitmap_names[b], r);
		md->failed = true;
		mark_needs_check(md);
	}
	return r;
}

int rcow_md_freeze(struct rcow_metadata *md, bool since_last, u64 gen,
		   unsigned long *frozen_set, u64 *frozen)
{
	const enum remote_cow_bitmap src = since_last ?
					   RCOW_BITMAP_DIRTY_COMMIT :
					   RCOW_BITMAP_WRITTEN;
	const unsigned long *present = md->bits[RCOW_BITMAP_PRESENT];
	struct dm_buffer *sbuf;
	const __le64 *words;
	u64 k;
	int r;

	*frozen = 0;
	mutex_lock(&md->lock);
	if (md->failed || !md->writable) {
		r = md->writable ? -EIO : -EROFS;
		goto out;
	}
	/*
	 * FROZEN_COMMIT |= source & PRESENT, block by block, into the copy
	 * of each block that changes (dirty, written by the commit below).
	 * The source is read from its blocks once its pending bits are in
	 * them (the same interval: the commit below writes them too).
	 */
	r = merge_pending(md);
	for (k = 0; !r && k < md->bitmap_blocks; k++) {
		r = read_newest_copy(md, src, k, &words, &sbuf);
		if (r)
			break;
		r = merge_disk_block(md, RCOW_BITMAP_FROZEN_COMMIT, k, words,
				     present, false, frozen_set, frozen, NULL);
		if (sbuf)
			dm_bufio_release(sbuf);
	}
	if (r) {
		DMERR("cannot build the frozen set: %d", r);
		md->failed = true;
		mark_needs_check(md);
		goto out;
	}
	atomic64_set(&md->count[RCOW_BITMAP_FROZEN_COMMIT], *frozen);
	/* So that the commit writes the blocks merged above. */
	atomic_set(&md->changed_any, 1);
	r = __commit(md, false, true);
	if (r)
		goto out;
	/*
	 * The frozen set is durable: a crash from here on over-reports
	 * DIRTY_COMMIT (its extents are frozen too), never under-reports.
	 */
	md->commit_started = gen;
	r = clear_set(md, RCOW_BITMAP_DIRTY_COMMIT);
out:
	mutex_unlock(&md->lock);
	return r;
}

int rcow_md_commit_done(struct rcow_metadata *md, u64 gen)
{
	int r;

	mutex_lock(&md->lock);
	if (md->failed || !md->writable) {
		r = md->writable ? -EIO : -EROFS;
	} else {
		md->commit_done = gen;
		r = clear_set(md, RCOW_BITMAP_FROZEN_COMMIT);
	}
	mutex_unlock(&md->lock);
	return r;
}

void rcow_md_commit_gens(struct rcow_metadata *md, u64 *started, u64 *done)
{
	mutex_lock(&md->lock);
	*started = md->commit_started;
	*done = md->commit_done;
	mutex_unlock(&md->lock);
}

/*
 * Take md->lock to read on-disk bitmaps: the bits set since the last
 * merge go into their blocks first (dirty buffers, written by the next
 * commit), so the blocks hold every bit set.
 */
static int lock_for_read(struct rcow_metadata *md)
{
	int r = 0;

	mutex_lock(&md->lock);
	if (!md->failed)
		r = merge_pending(md);
	if (r)
		mutex_unlock(&md->lock);
	return r;
}

int rcow_md_copy_set(struct rcow_metadata *md, enum remote_cow_bitmap b,
		     unsigned long *dst)
{
	struct dm_buffer *buf;
	const __le64 *words;
	unsigned int w;
	u64 k, bit;
	int r;

	bitmap_zero(dst, md->nr_extents);
	if (md->bits[b]) {
		bitmap_copy(dst, md->bits[b], md->nr_extents);
		return 0;
	}
	if (!on_disk(b))
		return 0;
	r = lock_for_read(md);
	if (r)
		return r;
	for (k = 0; k < md->bitmap_blocks; k++) {
		r = read_newest_copy(md, b, k, &words, &buf);
		if (r)
			break;
		bit = k * RCOW_MD_BITS_PER_BLOCK;
		for (w = 0; words && w < WORDS_PER_BLOCK; w++, bit += 64)
			set_word_bits(dst, bit, le64_to_cpu(words[w]),
				      md->nr_extents);
		if (buf)
			dm_bufio_release(buf);
	}
	mutex_unlock(&md->lock);
	return r;
}

bool rcow_md_incoming(struct rcow_metadata *md)
{
	return md->sb_flags & RCOW_DISK_F_INCOMING;
}

/* Durable when it returns 0: one superblock write. */
int rcow_md_set_incoming(struct rcow_metadata *md, bool incoming)
{
	int r;

	if (!md->writable)
		return -EROFS;
	mutex_lock(&md->lock);
	if (incoming)
		md->sb_flags |= RCOW_DISK_F_INCOMING;
	else
		md->sb_flags &= ~RCOW_DISK_F_INCOMING;
	r = update_sb(md);
	mutex_unlock(&md->lock);
	return r;
}

sector_t rcow_md_data_offset(struct rcow_metadata *md)
{
	return md->data_offset;
}

bool rcow_md_was_formatted(struct rcow_metadata *md)
{
	return md->formatted;
}

int rcow_md_next_run(struct rcow_metadata *md, enum remote_cow_bitmap b,
		     u64 from, u64 *first, u64 *end)
{
	int r = 0;

	*first = md->nr_extents;
	*end = md->nr_extents;
	if (from >= md->nr_extents)
		return 0;
	if (md->bits[b]) {
		*first = find_next_bit(md->bits[b], md->nr_extents, from);
		if (*first < md->nr_extents)
			*end = find_next_zero_bit(md->bits[b], md->nr_extents,
						  *first);
		return 0;
	}
	if (!on_disk(b))
		return 0;
	r = lock_for_read(md);
	if (r)
		return r;
	r = disk_next(md, b, from, true, first);
	if (!r && *first < md->nr_extents)
		r = disk_next(md, b, *first, false, end);
	mutex_unlock(&md->lock);
	return r;
}

bool rcow_md_test(struct rcow_metadata *md, enum remote_cow_bitmap b,
		  u64 extent)
{
	return md->bits[b] && test_bit(extent, md->bits[b]);
}

/*
 * md->lock held.  Set bit @extent of WRITTEN or DIRTY_COMMIT: onto the
 * set's pending list (merged into its blocks by the next commit), unless
 * it is there already.  A full list is merged into the blocks first; if
 * that fails, the metadata failed (as a failed commit does) and the bit
 * is lost with it: every later commit fails, so no write that needed it
 * is issued.
 */
static bool set_pending(struct rcow_metadata *md, enum remote_cow_bitmap b,
			u64 extent)
{
	unsigned int i;
	int r;

	if (md->failed || !md->writable)
		return false;
	if (b == RCOW_BITMAP_DIRTY_COMMIT && test_bit(extent, md->dirty_durable))
		return false;
	for (i = 0; i < md->pending_nr[b]; i++)
		if (md->pending[b][i] == extent)
			return false;
	if (md->pending_nr[b] == RCOW_MD_PENDING_MAX) {
		r = merge_pending_set(md, b);
		if (r) {
			md->failed = true;
			mark_needs_check(md);
			return false;
		}
	}
	md->pending[b][md->pending_nr[b]++] = extent;
	atomic_set(&md->changed_any, 1);
	return true;
}

bool rcow_md_set(struct rcow_metadata *md, enum remote_cow_bitmap b,
		 u64 extent)
{
	bool set;
	u64 k;

	if (has_pending(b)) {
		might_sleep();
		mutex_lock(&md->lock);
		set = set_pending(md, b, extent);
		mutex_unlock(&md->lock);
		return set;
	}
	if (WARN_ON_ONCE(b != RCOW_BITMAP_PRESENT || !md->bits[b]) ||
	    test_bit(extent, md->bits[b]))
		return false;
	k = extent_block(extent);
	/*
	 * The setting count covers the bit from before it is set to after
	 * its block's changed flag is, so a reader that sees the bit sees
	 * the count, the flag, or what a commit made of the flag (see
	 * rcow_md_present_durable()).  The flag comes after the bit so
	 * that a commit that cleared it copies the bit (see __commit()).
	 * test_and_set_bit() is fully ordered: the bit before the flag.
	 */
	atomic_inc(&md->present_setting[k]);
	/* The count before the bit: pairs with the reader's first rmb. */
	smp_mb__after_atomic();
	set = !test_and_set_bit(extent, md->bits[b]);
	if (set) {
		set_bit(k, md->changed[b]);
		atomic64_inc(&md->count[b]);
	}
	/* The block flag before changed_any (rcow_md_commit()) and count--. */
	smp_mb__after_atomic();
	if (set && !atomic_read(&md->changed_any))
		atomic_set(&md->changed_any, 1);
	atomic_dec(&md->present_setting[k]);
	return set;
}

/*
 * Lockless (the map function), never waits.  Extent @extent's PRESENT
 * bit is durable iff it is set and its block k has no bit being set
 * (present_setting[k]), no change waiting for a commit (changed[k]) and
 * is not staged in a commit that has not flushed it yet (staged[k]).
 * Read in the opposite order of their writes, with read barriers:
 *
 *   rcow_md_set():  count++ [mb] bit [mb] changed [mb] count--
 *   __commit():     staged [mb] clear changed [mb] copy words ... flush,
 *                   then clear staged
 *   here:           bit [rmb] count [rmb] changed [rmb] staged
 *
 * A bit seen set was counted before it was set.  A count seen back at
 * zero was dropped after the flag was set, so the flag is seen, or its
 * clearing by a commit, which copied the bit (it read the flag after
 * the bit was set); the staged flag was set before that clearing, so it
 * is seen, or its clearing after that commit's flush.  Any other answer
 * is "not durable": conservative (a FUA write then waits for a commit),
 * never wrong the other way.
 */
bool rcow_md_present_durable(struct rcow_metadata *md, u64 extent)
{
	u64 k = extent_block(extent);

	if (!test_bit(extent, md->bits[RCOW_BITMAP_PRESENT]))
		return false;
	/* The bit before the count: rcow_md_set() counts, then sets. */
	smp_rmb();
	if (atomic_read(&md->present_setting[k]))
		return false;
	/* The count before the flag: the flag is set before the count drops. */
	smp_rmb();
	if (test_bit(k, md->changed[RCOW_BITMAP_PRESENT]))
		return false;
	/* The flag before staged: __commit() sets staged, then clears it. */
	smp_rmb();
	return !test_bit(k, md->staged_blocks);
}

bool rcow_md_dirty_durable(struct rcow_metadata *md, u64 extent)
{
	return test_bit(extent, md->dirty_durable);
}

u64 rcow_md_count(struct rcow_metadata *md, enum remote_cow_bitmap b)
{
	return atomic64_read(&md->count[b]);
}

bool rcow_md_changed(struct rcow_metadata *md)
{
	return atomic_read(&md->changed_any);
}

/* md->lock held.  rcow_md_read_bits() of an on-disk bitmap. */
static int read_disk_bits(struct rcow_metadata *md, enum remote_cow_bitmap b,
			  u64 first, u64 nr, u8 *buf)
{
	struct dm_buffer *bbuf;
	const __le64 *words;
	u64 i = 0, k, base, end;
	u32 off;
	int r;

	while (i < nr) {
		k = extent_block(first + i);
		base = k * RCOW_MD_BITS_PER_BLOCK;
		end = min(first + nr, base + RCOW_MD_BITS_PER_BLOCK);
		r = read_newest_copy(md, b, k, &words, &bbuf);
		if (r)
			return r;
		for (; first + i < end; i++) {
			off = first + i - base;
			if (words &&
			    (le64_to_cpu(words[off / 64]) >> (off % 64)) & 1)
				buf[i / 8] |= 1 << (i % 8);
		}
		if (bbuf)
			dm_bufio_release(bbuf);
	}
	return 0;
}

int rcow_md_read_bits(struct rcow_metadata *md, enum remote_cow_bitmap b,
		      u64 first, u64 nr, u8 *buf)
{
	u64 i;
	int r;

	memset(buf, 0, DIV_ROUND_UP_ULL(nr, 8));
	if (on_disk(b)) {
		r = lock_for_read(md);
		if (r)
			return r;
		r = read_disk_bits(md, b, first, nr, buf);
		mutex_unlock(&md->lock);
		return r;
	}
	if (!md->bits[b])
		return 0;
	for (i = 0; i < nr; i++)
		if (test_bit(first + i, md->bits[b]))
			buf[i / 8] |= 1 << (i % 8);
	return 0;
}
