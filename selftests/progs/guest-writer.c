// SPDX-License-Identifier: GPL-2.0
/*
 * guest-writer: the workload of the QEMU guest of the migration selftests
 * (selftests/migrate-qemu-legs.sh), linked static so that it runs from the
 * guest's busybox initramfs.  It writes numbered, checksummed 4 KiB blocks
 * as fast as the disk takes them, and reads some of them back.
 *
 *   guest-writer <device> <first block> <slots> <batch>
 *
 * The region is <slots> 4 KiB blocks from 4 KiB block <first block> on,
 * <slots> / 16 extents of 64 KiB.  Block k goes to slot
 * (k % E) * 16 + (k / E) % 16, E = slots / 16: consecutive blocks land in
 * different extents, so a write rate of w blocks/s dirties w extents/s of
 * the region (and the region is overwritten, round after round).
 *
 * Block k: 128 bytes "RCOWBLK <k> <crc32 of the rest, 8 hex digits>"
 * padded with spaces, a newline last; then "rcow block <k>\n" repeated,
 * cut at 3968 bytes.  Written with O_DIRECT, <batch> blocks, then fsync;
 * then one line per block on stdout (the guest's console):
 *
 *   ack <k>          written and flushed (durable)
 *   werr <k> <errno> its write failed (not acknowledged)
 *   ferr <errno>     the fsync failed (the batch not acknowledged)
 *
 * After each batch, one slot written before is read back (O_DIRECT) and
 * compared with the block last acknowledged there:
 *
 *   rok <k>          it holds block k, as it should
 *   rerr <k> <errno> the read failed
 *   rbad <k>         it holds something else: wrong data
 *
 * It runs until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLK 4096
#define HEAD 128

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int b = 0; b < 8; b++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

/* zlib's crc32 (python3's zlib.crc32) */
static uint32_t crc32(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static void make_block(unsigned char *b, long k)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "rcow block %ld\n", k);
	size_t off = HEAD;

	while (off < BLK) {
		size_t m = BLK - off < (size_t)n ? BLK - off : (size_t)n;

		memcpy(b + off, line, m);
		off += m;
	}
	memset(b, ' ', HEAD);
	n = snprintf((char *)b, HEAD, "RCOWBLK %ld %08x", k,
		     (unsigned int)crc32(b + HEAD, BLK - HEAD));
	b[n] = ' ';
	b[HEAD - 1] = '\n';
}

int main(int argc, char **argv)
{
	unsigned char *buf, *rbuf;
	long first, slots, batch, ext, *last_ok, k = 0;
	uint64_t rnd = 88172645463325252ull;
	int fd;

	if (argc != 5) {
		fprintf(stderr, "usage: %s <device> <first block> <slots> <batch>\n", argv[0]);
		return 2;
	}
	first = atol(argv[2]);
	slots = atol(argv[3]);
	batch = atol(argv[4]);
	ext = slots / 16;
	if (first < 0 || ext < 1 || slots % 16 || batch < 1 || batch > 64) {
		fprintf(stderr, "%s: bad arguments\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0) {
		dprintf(1, "RCOW-GUEST cannot open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	last_ok = malloc(sizeof(*last_ok) * (size_t)slots);
	if (posix_memalign((void **)&buf, BLK, BLK * (size_t)batch) ||
	    posix_memalign((void **)&rbuf, BLK, BLK) || !last_ok) {
		dprintf(1, "RCOW-GUEST out of memory\n");
		return 1;
	}
	for (long s = 0; s < slots; s++)
		last_ok[s] = -1;	/* never written: nothing to check */
	crc_init();
	dprintf(1, "RCOW-GUEST-WRITER slots %ld batch %ld\n", slots, batch);
	for (;;) {
		long k0 = k, written[64];
		int nw = 0, e;

		for (long i = 0; i < batch; i++, k++) {
			long s = (k % ext) * 16 + (k / ext) % 16;

			make_block(buf + i * BLK, k);
			if (pwrite(fd, buf + i * BLK, BLK, (off_t)(first + s) * BLK) == BLK) {
				written[nw++] = k;
			} else {
				dprintf(1, "werr %ld %d\n", k, errno);
				last_ok[s] = -2;	/* unknown from now on */
			}
		}
		e = fsync(fd) ? errno : 0;
		for (int i = 0; i < nw; i++) {
			long s = (written[i] % ext) * 16 + (written[i] / ext) % 16;

			last_ok[s] = e ? -2 : written[i];
			if (!e)
				dprintf(1, "ack %ld\n", written[i]);
		}
		if (e)
			dprintf(1, "ferr %d\n", e);
		/* one slot acknowledged before, read back */
		for (int tries = 0; tries < 8 && k0 > 0; tries++) {
			long s, want;

			rnd ^= rnd << 13;
			rnd ^= rnd >> 7;
			rnd ^= rnd << 17;
			s = (long)(rnd % (uint64_t)slots);
			want = last_ok[s];
			if (want < 0)
				continue;
			if (pread(fd, rbuf, BLK, (off_t)(first + s) * BLK) != BLK) {
				dprintf(1, "rerr %ld %d\n", want, errno);
			} else {
				make_block(buf, want);
				dprintf(1, "%s %ld\n", memcmp(buf, rbuf, BLK) ? "rbad" : "rok", want);
			}
			break;
		}
	}
}
