// SPDX-License-Identifier: GPL-2.0
/*
 * md.c - read and verify the metadata of a COW device (check and dump).
 *
 * The format is in dm-remote-cow/uapi/remote_cow_disk.h; this reads it the
 * way the kernel's rcow_md_open() and rcow_md_load() do, and reports each
 * finding as one line: "damage: ..." for what makes the kernel refuse the
 * device (or would, as bits past the last extent), "note: ..." for what is
 * expected after a crash.
 *
 * The epoch rule: a bitmap block copy whose epoch is not the superblock's
 * epoch for its bitmap reads as all zeroes (its set was cleared by an
 * epoch bump).  Of a block's valid copies, the one with the highest
 * sequence among those of the current epoch is used; valid copies of
 * other epochs only make the block zeroes, which is not damage.  Damage
 * is still a block with no valid copy at all.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rc.h"
#include "remote_cow_disk.h"

static const char *const bitmap_names[RCOW_DISK_NR_BITMAPS] = {
	"present", "written", "dirty-commit", "frozen-commit", "dirty-migrate",
};

const char *rc_md_bitmap_name(unsigned int b)
{
	return b < RCOW_DISK_NR_BITMAPS ? bitmap_names[b] : "?";
}

static void finding(struct rc_md *md, FILE *out, bool damage, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void finding(struct rc_md *md, FILE *out, bool damage, const char *fmt, ...)
{
	va_list ap;

	if (damage)
		md->damage++;
	if (!out)
		return;
	fputs(damage ? "damage: " : "note: ", out);
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
}

uint32_t rc_md_block_csum(const void *block, uint32_t xor)
{
	return rc_crc32c(0xffffffffu, (const uint8_t *)block + 4, RCOW_DISK_BLOCK_SIZE - 4) ^ xor;
}

/* Read metadata block @nr; 0, or -1 after printing why. */
static int read_block(int fd, uint64_t nr, void *buf)
{
	ssize_t n = pread(fd, buf, RCOW_DISK_BLOCK_SIZE, (off_t)(nr * RCOW_DISK_BLOCK_SIZE));

	if (n == RCOW_DISK_BLOCK_SIZE)
		return 0;
	if (n < 0)
		rc_err("cannot read metadata block %" PRIu64 ": %s", nr, strerror(errno));
	else
		rc_err("cannot read metadata block %" PRIu64 ": the device ends there", nr);
	return -1;
}

static bool all_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* The superblock, checked; false if the bitmaps cannot be located. */
static bool read_sb(struct rc_md *md, const uint8_t *blk, FILE *out)
{
	const struct rcow_disk_sb *sb = (const void *)blk;
	struct rc_layout l;

	md->magic = le32toh(sb->magic);
	md->version = le32toh(sb->version);
	md->flags = le32toh(sb->flags);
	md->block_size = le32toh(sb->block_size);
	md->extent_sectors = le32toh(sb->extent_sectors);
	md->dev_sectors = le64toh(sb->dev_sectors);
	md->nr_extents = le64toh(sb->nr_extents);
	md->data_offset = le64toh(sb->data_offset);
	md->bitmap_start = le64toh(sb->bitmap_start);
	md->bitmap_blocks = le64toh(sb->bitmap_blocks);
	md->nr_bitmaps = le32toh(sb->nr_bitmaps);
	md->base_uri_len = le32toh(sb->base_uri_len);
	md->generation = le64toh(sb->generation);
	md->commit_started = le64toh(sb->commit_started);
	md->commit_done = le64toh(sb->commit_done);
	for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++)
		md->epoch[b] = le32toh(sb->epoch[b]);
	memcpy(md->base_uri, sb->base_uri, sizeof(md->base_uri) - 1);
	md->base_uri[sizeof(md->base_uri) - 1] = '\0';
	if (md->magic != RCOW_DISK_MAGIC) {
		finding(md, out, true, "superblock: no remote-cow magic (found 0x%08x, want 0x%08x)",
			md->magic, RCOW_DISK_MAGIC);
		return false;
	}
	if (le32toh(sb->csum) != rc_md_block_csum(blk, RCOW_DISK_SB_CSUM_XOR)) {
		finding(md, out, true, "superblock: checksum mismatch (stored 0x%08x, computed 0x%08x)",
			le32toh(sb->csum), rc_md_block_csum(blk, RCOW_DISK_SB_CSUM_XOR));
		return false;
	}

	if (md->version != RCOW_DISK_VERSION) {
		finding(md, out, true,
			"superblock: metadata version %u; this tool reads version %u only%s",
			md->version, RCOW_DISK_VERSION,
			md->version == 1 ? " (version 1 had no bitmap checksums)" : "");
		return false;
	}
	if (md->flags & ~(uint32_t)(RCOW_DISK_F_CLEAN | RCOW_DISK_F_NEEDS_CHECK |
				    RCOW_DISK_F_INCOMING))
		finding(md, out, true, "superblock: unknown flags 0x%x", md->flags);
	/* PRESENT and WRITTEN are never cleared: another epoch would drop them */
	for (unsigned int b = 0; b < 2; b++)
		if (md->epoch[b])
			finding(md, out, true,
				"superblock: bitmap %s has epoch %u (it is never cleared: 0)",
				bitmap_names[b], md->epoch[b]);
	if (md->commit_done > md->commit_started)
		finding(md, out, true,
			"superblock: commit %" PRIu64 " completed, but the last one started is %"
			PRIu64, md->commit_done, md->commit_started);
	if (md->block_size != RCOW_DISK_BLOCK_SIZE || md->nr_bitmaps != RCOW_DISK_NR_BITMAPS ||
	    md->bitmap_start != 1 || md->extent_sectors < 8 || md->extent_sectors > 8192 ||
	    (md->extent_sectors & (md->extent_sectors - 1)) || !md->dev_sectors) {
		finding(md, out, true,
			"superblock: impossible geometry (block size %u, %u bitmaps from block %"
			PRIu64 ", extent %u sectors, length %" PRIu64 " sectors)",
			md->block_size, md->nr_bitmaps, md->bitmap_start, md->extent_sectors,
			md->dev_sectors);
		return false;
	}
	rc_layout_compute(md->dev_sectors, md->extent_sectors, &l);
	if (md->nr_extents != l.nr_extents || md->bitmap_blocks != l.bitmap_blocks ||
	    md->data_offset != l.data_offset) {
		finding(md, out, true,
			"superblock: geometry inconsistent with the layout (extents %" PRIu64
			", want %" PRIu64 "; blocks per bitmap %" PRIu64 ", want %" PRIu64
			"; data offset %" PRIu64 ", want %" PRIu64 ")",
			md->nr_extents, l.nr_extents, md->bitmap_blocks, l.bitmap_blocks,
			md->data_offset, l.data_offset);
		return false;
	}
	if (md->base_uri_len > RCOW_DISK_MAX_URI || strlen(md->base_uri) != md->base_uri_len ||
	    !all_zero(sb->base_uri + md->base_uri_len, sizeof(sb->base_uri) - md->base_uri_len))
		finding(md, out, true, "superblock: base URI length %u does not match its text",
			md->base_uri_len);
	if (md->dev_bytes && md->dev_bytes / 512 < l.cow_sectors)
		finding(md, out, true,
			"the COW device has %" PRIu64 " sectors; its layout needs %" PRIu64,
			md->dev_bytes / 512, l.cow_sectors);
	return true;
}

/* Why copy @c of block @k of bitmap @b is not valid; NULL if it is. */
static const char *copy_problem(const struct rc_md *md, const uint8_t *blk, unsigned int b,
				uint64_t k, unsigned int c)
{
	const struct rcow_disk_bm_hdr *h = (const void *)blk;

	if (all_zero(blk, RCOW_DISK_BLOCK_SIZE))
		return "all zeroes";
	if (le32toh(h->magic) != RCOW_DISK_BM_MAGIC)
		return "bad magic";
	if (le32toh(h->csum) != rc_md_block_csum(blk, RCOW_DISK_BM_CSUM_XOR))
		return "checksum mismatch";
	if (le64toh(h->blocknr) != RCOW_DISK_BM_BLOCK(md->bitmap_blocks, b, k, c) ||
	    le32toh(h->bitmap) != b || le32toh(h->index) != k)
		return "belongs elsewhere (misdirected write)";
	return NULL;
}

/* Bits of @blk's words past the last extent: count, and copy the rest. */
static uint64_t take_words(struct rc_md *md, const uint8_t *blk, unsigned int b, uint64_t k)
{
	const uint8_t *words = blk + RCOW_DISK_BM_HDR_SIZE;
	uint64_t first = k * RCOW_DISK_BM_BITS, stray = 0;

	for (uint64_t i = 0; i < RCOW_DISK_BM_BITS; i++) {
		uint64_t e = first + i;

		if (!(words[i / 8] & (1u << (i % 8))))
			continue;
		if (e >= md->nr_extents)
			stray++;
		else
			md->bits[b][e / 8] |= (uint8_t)(1u << (e % 8));
	}
	return stray;
}

/*
 * Block k of bitmap b: check both copies, then take the bits of the valid
 * copy of the bitmap's epoch with the highest sequence (none: zeroes).
 */
static void read_bitmap_block(struct rc_md *md, int fd, unsigned int b, uint64_t k,
			      uint8_t (*blk)[RCOW_DISK_BLOCK_SIZE], FILE *out, FILE *verbose)
{
	const char *why[RCOW_DISK_BM_COPIES];
	uint64_t nr[RCOW_DISK_BM_COPIES], seq[RCOW_DISK_BM_COPIES] = { 0, 0 }, stray;
	uint32_t epoch[RCOW_DISK_BM_COPIES] = { 0, 0 };
	bool cur[RCOW_DISK_BM_COPIES] = { false, false };	/* valid, of the epoch */
	const char *name = bitmap_names[b];
	unsigned int c;
	int use;

	for (c = 0; c < RCOW_DISK_BM_COPIES; c++) {
		const struct rcow_disk_bm_hdr *h = (const void *)blk[c];

		nr[c] = RCOW_DISK_BM_BLOCK(md->bitmap_blocks, b, k, c);
		if (read_block(fd, nr[c], blk[c])) {
			md->io_error = true;
			return;
		}
		why[c] = copy_problem(md, blk[c], b, k, c);
		if (!why[c]) {
			seq[c] = le64toh(h->seq);
			epoch[c] = le32toh(h->epoch);
			cur[c] = epoch[c] == md->epoch[b];
		}
		if (seq[c] > md->max_seq)
			md->max_seq = seq[c];
	}
	if (why[0] && why[1]) {
		finding(md, out, true,
			"bitmap %s block %" PRIu64 ": no valid copy (COW block %" PRIu64
			": %s; COW block %" PRIu64 ": %s)",
			name, k, nr[0], why[0], nr[1], why[1]);
		return;
	}
	if (why[0] || why[1]) {
		c = why[0] ? 0 : 1;
		if (md->flags & RCOW_DISK_F_CLEAN) {
			finding(md, out, true,
				"bitmap %s block %" PRIu64 ": copy %u (COW block %" PRIu64
				") %s on a device shut down cleanly",
				name, k, c, nr[c], why[c]);
		} else {
			md->torn++;
			finding(md, out, false,
				"bitmap %s block %" PRIu64 ": copy %u (COW block %" PRIu64
				") %s: torn by a crash during a commit (the next commit rewrites it)",
				name, k, c, nr[c], why[c]);
		}
	}
	if (cur[0] && cur[1])
		use = seq[1] > seq[0];
	else if (cur[0] || cur[1])
		use = cur[1];
	else
		use = -1;	/* every valid copy is of an older epoch: zeroes */
	if (!why[0] && !why[1] && seq[0] == seq[1] &&
	    (epoch[0] != epoch[1] ||
	     memcmp(blk[0] + RCOW_DISK_BM_HDR_SIZE, blk[1] + RCOW_DISK_BM_HDR_SIZE,
		    RCOW_DISK_BLOCK_SIZE - RCOW_DISK_BM_HDR_SIZE)))
		finding(md, out, true,
			"bitmap %s block %" PRIu64 ": both copies have sequence %" PRIu64
			" but differ", name, k, seq[0]);
	if (use < 0) {
		md->cleared[b]++;
	} else {
		stray = take_words(md, blk[use], b, k);
		if (stray)
			finding(md, out, true,
				"bitmap %s block %" PRIu64 ": copy %d (COW block %" PRIu64 ") sets %"
				PRIu64 " bits past the last extent (%" PRIu64 ")",
				name, k, use, nr[use], stray, md->nr_extents - 1);
	}
	if (!verbose)
		return;
	fprintf(verbose, "  block %" PRIu64 ":", k);
	for (c = 0; c < RCOW_DISK_BM_COPIES; c++) {
		fprintf(verbose, "%s copy %u (COW block %" PRIu64 ") ", c ? "," : "", c, nr[c]);
		if (why[c])
			fputs(why[c], verbose);
		else
			fprintf(verbose, "valid seq %" PRIu64 " epoch %u%s", seq[c], epoch[c],
				cur[c] ? "" : " (stale)");
	}
	if (use >= 0)
		fprintf(verbose, ", using copy %d\n", use);
	else
		fprintf(verbose, ", cleared: no copy of epoch %u, reads as zeroes\n",
			md->epoch[b]);
}

int rc_md_read(int fd, uint64_t dev_bytes, struct rc_md *md, FILE *out, FILE *verbose)
{
	uint8_t (*blk)[RCOW_DISK_BLOCK_SIZE];
	unsigned int b;

	memset(md, 0, sizeof(*md));
	md->dev_bytes = dev_bytes;
	blk = malloc(RCOW_DISK_BM_COPIES * RCOW_DISK_BLOCK_SIZE);
	if (!blk) {
		rc_err("out of memory");
		return -1;
	}
	if (read_block(fd, 0, blk[0]))
		goto io_error;
	if (all_zero(blk[0], RCOW_DISK_BLOCK_SIZE)) {
		free(blk);
		return 0;	/* not formatted: nothing else to read */
	}
	md->formatted = true;
	if (!read_sb(md, blk[0], out)) {
		free(blk);
		return 0;
	}
	md->layout_ok = true;
	for (b = 0; b < RCOW_DISK_NR_BITMAPS; b++) {
		md->bits[b] = calloc(md->nr_extents / 8 + 1, 1);
		if (!md->bits[b]) {
			rc_err("out of memory for %" PRIu64 " extents", md->nr_extents);
			goto fail;
		}
	}
	for (b = 0; b < RCOW_DISK_NR_BITMAPS; b++) {
		if (verbose)
			fprintf(verbose, "bitmap %s:\n", bitmap_names[b]);
		for (uint64_t k = 0; k < md->bitmap_blocks; k++) {
			read_bitmap_block(md, fd, b, k, blk, out, verbose);
			if (md->io_error)
				goto fail;
		}
		for (uint64_t e = 0; e < md->nr_extents; e++)
			md->count[b] += rc_md_test(md, b, e);
	}
	free(blk);
	return 0;

io_error:
	md->io_error = true;
fail:
	free(blk);
	return -1;
}

bool rc_md_test(const struct rc_md *md, unsigned int b, uint64_t e)
{
	return md->bits[b][e / 8] & (1u << (e % 8));
}

void rc_md_free(struct rc_md *md)
{
	for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++) {
		free(md->bits[b]);
		md->bits[b] = NULL;
	}
}

int rc_md_clear_needs_check(int fd, struct rc_md *md)
{
	uint8_t blk[RCOW_DISK_BLOCK_SIZE];
	struct rcow_disk_sb *sb = (void *)blk;

	if (read_block(fd, 0, blk))
		return -1;
	md->flags &= ~(uint32_t)RCOW_DISK_F_NEEDS_CHECK;
	md->generation++;
	sb->flags = htole32(md->flags);
	sb->generation = htole64(md->generation);
	sb->csum = htole32(rc_md_block_csum(blk, RCOW_DISK_SB_CSUM_XOR));
	if (pwrite(fd, blk, sizeof(blk), 0) != (ssize_t)sizeof(blk) || fsync(fd)) {
		rc_err("cannot write the superblock: %s", strerror(errno));
		return -1;
	}
	return 0;
}
