// SPDX-License-Identifier: GPL-2.0
/*
 * test-md.c - host tests of remote-cow check and dump (TAP).
 *
 * Each test crafts a COW image file with its own small encoder of the
 * format in uapi/remote_cow_disk.h (superblock, two copies of every
 * bitmap block), damages it on purpose, runs the real binary and checks
 * its exit status and output.  The checksum and the layout formula are
 * checked against fixed values first.
 *
 *   test-md PATH_TO_REMOTE_COW
 */
#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rc.h"
#include "tap.h"
#include "remote_cow_disk.h"

#define BS RCOW_DISK_BLOCK_SIZE

/* An image being built: geometry, bits per bitmap, per-copy sequence. */
struct img {
	uint32_t extent_sectors, flags, version;
	uint64_t dev_sectors;
	uint64_t commit_started, commit_done;
	uint32_t epoch[RCOW_DISK_NR_BITMAPS];	/* the superblock's */
	struct rc_layout l;
	uint8_t *buf;		/* metadata blocks */
	size_t md_bytes;
};

static void img_init(struct img *im, uint64_t dev_sectors, uint32_t extent_sectors)
{
	memset(im, 0, sizeof(*im));
	im->dev_sectors = dev_sectors;
	im->extent_sectors = extent_sectors;
	im->flags = RCOW_DISK_F_CLEAN;
	im->version = RCOW_DISK_VERSION;
	rc_layout_compute(dev_sectors, extent_sectors, &im->l);
	im->md_bytes = RCOW_DISK_MD_BLOCKS(im->l.bitmap_blocks) * BS;
	im->buf = calloc(1, im->md_bytes);
}

static uint8_t *blk(struct img *im, uint64_t nr)
{
	return im->buf + nr * BS;
}

static void seal(uint8_t *b, uint32_t xor)
{
	((struct rcow_disk_bm_hdr *)b)->csum = htole32(rc_md_block_csum(b, xor));
}

static void put_sb(struct img *im)
{
	struct rcow_disk_sb *sb = (void *)blk(im, 0);
	const char *uri = "file:///base.img";

	memset(sb, 0, BS);
	sb->magic = htole32(RCOW_DISK_MAGIC);
	sb->version = htole32(im->version);
	sb->flags = htole32(im->flags);
	sb->block_size = htole32(BS);
	sb->extent_sectors = htole32(im->extent_sectors);
	sb->dev_sectors = htole64(im->dev_sectors);
	sb->nr_extents = htole64(im->l.nr_extents);
	sb->data_offset = htole64(im->l.data_offset);
	sb->bitmap_start = htole64(1);
	sb->bitmap_blocks = htole64(im->l.bitmap_blocks);
	sb->nr_bitmaps = htole32(RCOW_DISK_NR_BITMAPS);
	sb->base_uri_len = htole32((uint32_t)strlen(uri));
	sb->generation = htole64(7);
	sb->commit_started = htole64(im->commit_started);
	sb->commit_done = htole64(im->commit_done);
	for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++)
		sb->epoch[b] = htole32(im->epoch[b]);
	memcpy(sb->base_uri, uri, strlen(uri));
	seal((uint8_t *)sb, RCOW_DISK_SB_CSUM_XOR);
}

/*
 * Copy c of block k of bitmap b: sequence seq, written in epoch epoch, bits
 * from the list (-1 ends).
 */
static void put_copy_e(struct img *im, unsigned int b, uint64_t k, unsigned int c, uint64_t seq,
		       uint32_t epoch, const int64_t *bits)
{
	uint64_t nr = RCOW_DISK_BM_BLOCK(im->l.bitmap_blocks, b, k, c);
	uint8_t *p = blk(im, nr);
	struct rcow_disk_bm_hdr *h = (void *)p;

	memset(p, 0, BS);
	h->magic = htole32(RCOW_DISK_BM_MAGIC);
	h->seq = htole64(seq);
	h->blocknr = htole64(nr);
	h->bitmap = htole32(b);
	h->index = htole32((uint32_t)k);
	h->epoch = htole32(epoch);
	for (; bits && *bits >= 0; bits++) {
		uint64_t i = (uint64_t)*bits - k * RCOW_DISK_BM_BITS;

		p[RCOW_DISK_BM_HDR_SIZE + i / 8] |= (uint8_t)(1u << (i % 8));
	}
	seal(p, RCOW_DISK_BM_CSUM_XOR);
}

/* The same, in the bitmap's current epoch (the superblock's). */
static void put_copy(struct img *im, unsigned int b, uint64_t k, unsigned int c, uint64_t seq,
		     const int64_t *bits)
{
	put_copy_e(im, b, k, c, seq, im->epoch[b], bits);
}

/* A formatted image: every copy valid and empty, copy 0 newest. */
static void img_format(struct img *im)
{
	put_sb(im);
	for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++)
		for (uint64_t k = 0; k < im->l.bitmap_blocks; k++)
			for (unsigned int c = 0; c < 2; c++)
				put_copy(im, b, k, c, !c, NULL);
}

static uint64_t copy_nr(struct img *im, unsigned int b, uint64_t k, unsigned int c)
{
	return RCOW_DISK_BM_BLOCK(im->l.bitmap_blocks, b, k, c);
}

static bool img_write(struct img *im, const char *path, uint64_t bytes)
{
	FILE *f = fopen(path, "w");
	bool r;

	if (!f)
		return false;
	r = fwrite(im->buf, 1, im->md_bytes, f) == im->md_bytes &&
	    ftruncate(fileno(f), (off_t)bytes) == 0;
	return fclose(f) == 0 && r;
}

struct run {
	int status;
	char out[65536];
};

/* Run "remote-cow ARGS... 2>&1"; exit status and output. */
static void run(struct run *r, const char *prog, const char *args)
{
	char cmd[1024];
	size_t n;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s %s 2>&1", prog, args);
	r->out[0] = '\0';
	r->status = -1;
	p = popen(cmd, "r");
	if (!p)
		return;
	n = fread(r->out, 1, sizeof(r->out) - 1, p);
	r->out[n] = '\0';
	r->status = pclose(p);
	if (r->status >= 0 && WIFEXITED(r->status))
		r->status = WEXITSTATUS(r->status);
}

static bool has(const struct run *r, const char *s)
{
	if (strstr(r->out, s))
		return true;
	printf("# expected \"%s\" in:\n", s);
	for (const char *l = r->out; *l;) {
		const char *e = strchr(l, '\n');
		int len = e ? (int)(e - l) : (int)strlen(l);

		printf("#   %.*s\n", len, l);
		l += len + (e ? 1 : 0);
	}
	return false;
}

static void corrupt(struct img *im, uint64_t nr, size_t off)
{
	blk(im, nr)[off] ^= 0x5a;
}

int main(int argc, char **argv)
{
	static const int64_t present[] = { 0, 1, 2, 3, 7, 40, 63, -1 };
	static const int64_t written[] = { 2, 3, 7, -1 };
	char dir[] = "/tmp/rcow-test-md.XXXXXX", path[128], args[256];
	const char *prog;
	struct tap t = { .group = "md" };
	struct rc_layout l;
	struct img im;
	struct run r;
	uint64_t size;

	if (argc != 2) {
		fprintf(stderr, "usage: test-md PATH_TO_REMOTE_COW\n");
		return 2;
	}
	prog = argv[1];
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/cow.img", dir);

	/* The checksum: CRC-32C check value 0xe3069283 is with the final inversion. */
	tap_ok(&t, rc_crc32c(0xffffffffu, "123456789", 9) == ~0xe3069283u,
	   "crc32c of \"123456789\" is the standard check value (without final inversion)");

	/* The layout, by hand: 64 extents; 16 Mi extents over 521 blocks per bitmap. */
	rc_layout_compute(8192, 128, &l);
	tap_ok(&t, l.nr_extents == 64 && l.bitmap_blocks == 1 && l.metadata_sectors == 11 * 8 &&
	       l.data_offset == 2048 && l.cow_sectors == 2048 + 8192,
	   "layout: 4 MiB device, 64 KiB extents: 11 metadata blocks, data at 2048");
	rc_layout_compute(128ull << 20, 8, &l);
	tap_ok(&t, l.nr_extents == 16777216 && l.bitmap_blocks == 521 &&
	       l.metadata_sectors == (1 + 10 * 521) * 8 && l.data_offset == 43008,
	   "layout: 64 GiB device, 4 KiB extents: 521 blocks per bitmap, data at 43008");
	rc_layout_compute(8192, 8192, &l);
	tap_ok(&t, l.data_offset == 8192, "layout: 4 MiB extents align the data area to 4 MiB");

	/* A clean device with bits set. */
	img_init(&im, 8192, 128);
	size = (im.l.cow_sectors) * 512;
	img_format(&im);
	put_copy(&im, 0, 0, 1, 5, present);	/* copy 1 newest */
	put_copy(&im, 1, 0, 1, 5, written);
	img_write(&im, path, size);
	snprintf(args, sizeof(args), "check %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "no damage") && has(&r, "present        7\n") &&
	       has(&r, "written        3\n") && has(&r, ", clean"),
	   "check: a clean device exits 0 and counts present 7, written 3");
	snprintf(args, sizeof(args), "dump %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "bitmap present: 7 set\n  0-3\n  7\n  40\n  63\n") &&
	       has(&r, "bitmap written: 3 set\n  2-3\n  7\n") && has(&r, "  extent_sectors  128\n") &&
	       has(&r, "  base_uri        file:///base.img\n") && has(&r, "flags           0x1 clean"),
	   "dump: superblock fields, then each bitmap's runs");

	/* The newest valid copy wins; an older one with other bits is ignored. */
	put_copy(&im, 0, 0, 0, 4, written);
	img_write(&im, path, size);
	snprintf(args, sizeof(args), "dump %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "bitmap present: 7 set\n"),
	   "dump: the copy with the higher sequence is used");
	put_copy(&im, 0, 0, 0, 6, written);
	img_write(&im, path, size);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "bitmap present: 3 set\n  2-3\n  7\n"),
	   "dump: ... whichever copy holds it");

	/* One copy torn, device not shut down cleanly: a note, exit 0. */
	im.flags = 0;
	put_sb(&im);
	corrupt(&im, copy_nr(&im, 0, 0, 0), 100);
	img_write(&im, path, size);
	snprintf(args, sizeof(args), "check %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "note: bitmap present block 0: copy 0 (COW block 1) checksum mismatch: torn by a crash") &&
	       has(&r, "present        7\n") && has(&r, "no damage"),
	   "check: a copy torn by a crash is a note; the other copy is used");

	/* The same on a device marked clean is damage. */
	im.flags = RCOW_DISK_F_CLEAN;
	put_sb(&im);
	img_write(&im, path, size);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "damage: bitmap present block 0: copy 0 (COW block 1) checksum mismatch on a device shut down cleanly"),
	   "check: a bad copy on a cleanly shut down device is damage, exit 1");

	/* Both copies of a block bad: damage naming the block and both copies. */
	img_format(&im);
	corrupt(&im, copy_nr(&im, 1, 0, 0), 4000);
	corrupt(&im, copy_nr(&im, 1, 0, 1), 64);
	img_write(&im, path, size);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "damage: bitmap written block 0: no valid copy (COW block 3: checksum mismatch; COW block 4: checksum mismatch)") &&
	       has(&r, "1 damaged item"),
	   "check: both copies of written block 0 damaged: named, exit 1");
	snprintf(args, sizeof(args), "dump %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "damage: bitmap written block 0") && has(&r, "bitmap present: 0 set"),
	   "dump: prints what it can, names the damage, exit 1");

	/* A copy written to the wrong place (valid checksum, wrong location). */
	img_format(&im);
	memcpy(blk(&im, copy_nr(&im, 2, 0, 0)), blk(&im, copy_nr(&im, 3, 0, 0)), BS);
	img_write(&im, path, size);
	snprintf(args, sizeof(args), "check %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "bitmap dirty-commit block 0: copy 0 (COW block 5) belongs elsewhere (misdirected write)"),
	   "check: a misdirected copy is caught by its location");

	/* Bits past the last extent, with a valid checksum. */
	{
		static const int64_t stray[] = { 5, 64, 100, -1 };

		img_format(&im);
		put_copy(&im, 4, 0, 0, 9, stray);
		img_write(&im, path, size);
		run(&r, prog, args);
		tap_ok(&t, r.status == 1 && has(&r, "bitmap dirty-migrate block 0: copy 0 (COW block 9) sets 2 bits past the last extent (63)"),
		   "check: bits past the last extent are damage");
	}

	/* Superblock: bad checksum, version 1, inconsistent geometry, too short. */
	img_format(&im);
	corrupt(&im, 0, 2000);
	img_write(&im, path, size);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "damage: superblock: checksum mismatch"),
	   "check: superblock checksum mismatch, exit 1");
	im.version = 1;
	img_format(&im);
	img_write(&im, path, size);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "metadata version 1; this tool reads version 2 only (version 1 had no bitmap checksums)"),
	   "check: a version 1 device is named as such, exit 1");
	im.version = RCOW_DISK_VERSION;
	img_format(&im);
	((struct rcow_disk_sb *)blk(&im, 0))->data_offset = htole64(4096);
	seal(blk(&im, 0), RCOW_DISK_SB_CSUM_XOR);
	img_write(&im, path, size);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "geometry inconsistent with the layout") &&
	       has(&r, "data offset 4096, want 2048"),
	   "check: a data offset that is not the layout's is damage");
	img_format(&im);
	img_write(&im, path, size - 512);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "the COW device has 10239 sectors; its layout needs 10240"),
	   "check: a device shorter than its layout is damage");

	/* needs_check: reported, cleared only after a clean check. */
	im.flags = RCOW_DISK_F_NEEDS_CHECK;
	img_format(&im);
	img_write(&im, path, size);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "needs_check set") &&
	       has(&r, "check --clear-needs-check"),
	   "check: needs_check is reported with what to run");
	corrupt(&im, copy_nr(&im, 0, 0, 0), 200);
	corrupt(&im, copy_nr(&im, 0, 0, 1), 200);
	img_write(&im, path, size);
	snprintf(args, sizeof(args), "check --clear-needs-check %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 1 && has(&r, "needs_check not cleared: the check found damage"),
	   "check --clear-needs-check refuses on damage");
	snprintf(args, sizeof(args), "check %s", path);
	run(&r, prog, args);
	tap_ok(&t, has(&r, "needs_check set"), "... and the flag stays");
	img_format(&im);
	img_write(&im, path, size);
	snprintf(args, sizeof(args), "check --clear-needs-check %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "needs_check cleared"),
	   "check --clear-needs-check clears it after a clean check");
	snprintf(args, sizeof(args), "dump %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "flags           0x0\n") && has(&r, "generation      8\n"),
	   "... the superblock is rewritten without it (valid checksum, next generation)");

	/*
	 * The epoch rule: dirty-commit (2) at epoch 3, frozen-commit (3) at
	 * epoch 1; a copy of another epoch reads as zeroes.
	 */
	{
		static const int64_t old_bits[] = { 1, 2, 50, -1 };
		static const int64_t new_bits[] = { 7, -1 };
		static const int64_t newer_bits[] = { 5, 6, -1 };
		static const int64_t stray[] = { 9, 64, 100, -1 };

		im.flags = RCOW_DISK_F_CLEAN;
		im.commit_started = 4;
		im.commit_done = 3;
		im.epoch[2] = 3;
		im.epoch[3] = 1;
		img_format(&im);
		put_copy(&im, 0, 0, 1, 5, present);
		put_copy(&im, 1, 0, 1, 5, written);
		/* the higher sequence is of epoch 2: stale; epoch 3's copy wins */
		put_copy_e(&im, 2, 0, 0, 10, 2, old_bits);
		put_copy_e(&im, 2, 0, 1, 6, 3, new_bits);
		/* frozen-commit: both copies of epoch 0, with bits: cleared */
		put_copy_e(&im, 3, 0, 0, 8, 0, old_bits);
		put_copy_e(&im, 3, 0, 1, 9, 0, new_bits);
		img_write(&im, path, size);
		snprintf(args, sizeof(args), "check %s", path);
		run(&r, prog, args);
		tap_ok(&t, r.status == 0 && has(&r, "no damage") &&
		       has(&r, "dirty-commit   1\n") && has(&r, "frozen-commit  0\n") &&
		       has(&r, "frozen-commit: 1 block of an older epoch (cleared, read as zeroes)") &&
		       has(&r, "last started 4, last completed 3; epochs present=0 written=0 "
			   "dirty-commit=3 frozen-commit=1 dirty-migrate=0"),
		   "check: a stale-epoch copy reads as zeroes, even with the higher sequence; no damage");
		snprintf(args, sizeof(args), "dump %s", path);
		run(&r, prog, args);
		tap_ok(&t, r.status == 0 && has(&r, "bitmap dirty-commit: 1 set\n  7\n") &&
		       has(&r, "bitmap frozen-commit: 0 set\n  (1 block cleared: no copy of epoch 1, read as zeroes)\n") &&
		       has(&r, "  commit_started  4\n  commit_done     3\n") &&
		       has(&r, "  epochs          present=0 written=0 dirty-commit=3 frozen-commit=1 dirty-migrate=0\n") &&
		       has(&r, "max_seq           10\n"),
		   "dump: commit generations, epochs, and the runs by the epoch rule");
		snprintf(args, sizeof(args), "dump -v %s", path);
		run(&r, prog, args);
		tap_ok(&t, r.status == 0 &&
		       has(&r, "block 0: copy 0 (COW block 5) valid seq 10 epoch 2 (stale), copy 1 (COW block 6) valid seq 6 epoch 3, using copy 1\n") &&
		       has(&r, "block 0: copy 0 (COW block 7) valid seq 8 epoch 0 (stale), copy 1 (COW block 8) valid seq 9 epoch 0 (stale), cleared: no copy of epoch 1, reads as zeroes\n"),
		   "dump -v: each copy's sequence and epoch, which is used");

		/* both copies of the current epoch: the higher sequence wins */
		put_copy_e(&im, 2, 0, 0, 12, 3, newer_bits);
		put_copy_e(&im, 2, 0, 1, 11, 3, new_bits);
		img_write(&im, path, size);
		run(&r, prog, args);
		tap_ok(&t, r.status == 0 && has(&r, "bitmap dirty-commit: 2 set\n  5-6\n"),
		   "dump: of two copies of the current epoch, the higher sequence wins");
		put_copy_e(&im, 2, 0, 0, 12, 3, newer_bits);
		put_copy_e(&im, 2, 0, 1, 13, 3, new_bits);
		img_write(&im, path, size);
		run(&r, prog, args);
		tap_ok(&t, r.status == 0 && has(&r, "bitmap dirty-commit: 1 set\n  7\n"),
		   "dump: ... whichever copy holds it");

		/* a stale copy with bits past the last extent reads as zeroes: no damage */
		put_copy_e(&im, 4, 0, 0, 14, 5, stray);
		put_copy_e(&im, 4, 0, 1, 13, 6, stray);
		img_write(&im, path, size);
		snprintf(args, sizeof(args), "check %s", path);
		run(&r, prog, args);
		tap_ok(&t, r.status == 0 && has(&r, "no damage") && has(&r, "dirty-migrate  0\n"),
		   "check: stray bits in copies of another epoch are not looked at");

		/* one copy torn, the other stale: zeroes and a note, not damage */
		im.flags = 0;
		put_sb(&im);
		put_copy_e(&im, 3, 0, 1, 15, 0, new_bits);
		corrupt(&im, copy_nr(&im, 3, 0, 0), 300);
		img_write(&im, path, size);
		run(&r, prog, args);
		tap_ok(&t, r.status == 0 && has(&r, "no damage") &&
		       has(&r, "note: bitmap frozen-commit block 0: copy 0 (COW block 7) checksum mismatch: torn by a crash") &&
		       has(&r, "frozen-commit  0\n"),
		   "check: a torn copy beside a stale one: a note, the block reads as zeroes");
		/* no valid copy at all is still damage, whatever the epochs */
		corrupt(&im, copy_nr(&im, 3, 0, 1), 300);
		img_write(&im, path, size);
		run(&r, prog, args);
		tap_ok(&t, r.status == 1 &&
		       has(&r, "damage: bitmap frozen-commit block 0: no valid copy (COW block 7: checksum mismatch; COW block 8: checksum mismatch)"),
		   "check: a block with no valid copy is damage, as before");

		/* present and written are never cleared; done never passes started */
		im.flags = RCOW_DISK_F_CLEAN;
		im.epoch[1] = 1;
		im.commit_done = 5;
		img_format(&im);
		img_write(&im, path, size);
		run(&r, prog, args);
		tap_ok(&t, r.status == 1 &&
		       has(&r, "damage: superblock: bitmap written has epoch 1 (it is never cleared: 0)") &&
		       has(&r, "damage: superblock: commit 5 completed, but the last one started is 4"),
		   "check: an epoch on written, a completed commit after the last started: damage");
		memset(im.epoch, 0, sizeof(im.epoch));
		im.commit_started = im.commit_done = 0;
	}

	/* Not formatted; usage errors. */
	free(im.buf);
	img_init(&im, 8192, 128);
	img_write(&im, path, size);
	snprintf(args, sizeof(args), "check %s", path);
	run(&r, prog, args);
	tap_ok(&t, r.status == 0 && has(&r, "not formatted"), "check: a zeroed device is not formatted, exit 0");
	run(&r, prog, "check");
	tap_ok(&t, r.status == 2 && has(&r, "which COW device"), "check without COW_DEV: usage error, exit 2");
	run(&r, prog, "check /nonexistent/cow");
	tap_ok(&t, r.status == 3 && has(&r, "cannot open /nonexistent/cow"), "check of a missing file: exit 3");
	run(&r, prog, "check --help");
	tap_ok(&t, r.status == 0 && has(&r, "Usage: remote-cow check"), "check --help");
	run(&r, prog, "dump --help");
	tap_ok(&t, r.status == 0 && has(&r, "Usage: remote-cow dump"), "dump --help");
	run(&r, prog, "--help");
	tap_ok(&t, r.status == 0 && has(&r, "  check [--clear-needs-check] COW_DEV") &&
	       has(&r, "  dump COW_DEV"), "remote-cow --help lists check and dump");

	free(im.buf);
	unlink(path);
	rmdir(dir);
	printf("1..%d\n", t.n);
	return t.failed ? 1 : 0;
}
