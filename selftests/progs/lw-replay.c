// SPDX-License-Identifier: GPL-2.0
/*
 * lw-replay: read a dm-log-writes log and replay it onto a device.
 *
 * The log-writes target (Documentation/admin-guide/device-mapper/
 * log-writes.rst in the kernel) records every write to its data device, in
 * the order the writes became durable, on a log device:
 *
 *   block 0          super: magic, version, number of entries, block size
 *   then, per entry  one block: sector, nr_sectors, flags, data_len and,
 *                    for a mark, its name; then nr_sectors blocks of the
 *                    data written (none for a discard or a mark)
 *
 * All integers are little-endian; "block" is the data device's logical
 * block size (the super's sectorsize), and sector/nr_sectors count blocks.
 *
 * The selftests use this to rebuild the content a device had at every
 * flush point of a workload (crash-consistency.sh).  Entries are numbered
 * from 0 in log order.  --unflushed-below rebuilds what a disk that kept
 * only some of the writes of the last flush epoch could hold, and digest
 * fingerprints the extents of a device or image in one process (cheap
 * under emulation, where every process costs).
 */
#define _GNU_SOURCE		/* O_DIRECT */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#define LW_MAGIC		0x6a736677736872ULL
#define LW_VERSION		1ULL

#define LW_FLUSH		(1ULL << 0)
#define LW_FUA			(1ULL << 1)
#define LW_DISCARD		(1ULL << 2)
#define LW_MARK			(1ULL << 3)
#define LW_METADATA		(1ULL << 4)
#define LW_KNOWN_FLAGS		(LW_FLUSH | LW_FUA | LW_DISCARD | LW_MARK | LW_METADATA)

#define ENTRY_HDR_BYTES		32	/* four __le64 */
#define MAX_BLOCK_SIZE		65536
#define COPY_CHUNK		(1U << 20)

#define EXIT_USAGE		2

struct lw_log {
	int fd;
	const char *path;
	uint64_t size;		/* bytes */
	uint64_t nr_entries;	/* from the super */
	uint32_t bsize;		/* the super's sectorsize */
	uint64_t pos;		/* byte offset of the next entry header */
	uint64_t index;		/* number of the next entry */
};

struct lw_entry {
	uint64_t index;
	uint64_t sector;	/* in blocks of the log's block size */
	uint64_t nr_sectors;
	uint64_t flags;
	uint64_t data_len;
	uint64_t data_pos;	/* byte offset of the entry's data in the log */
	char mark[MAX_BLOCK_SIZE];
};

static bool verbose;
static bool skip_discards;
static bool have_below;
static uint64_t unflushed_below;	/* 512-byte sectors */
static bool have_size;
static uint64_t fresh_size;		/* bytes */

static const char synopsis[] =
"usage: lw-replay [OPTIONS] info|list|points LOG\n"
"       lw-replay [OPTIONS] find-mark LOG NAME\n"
"       lw-replay [OPTIONS] replay LOG TARGET [--to N | --to-mark NAME]\n"
"       lw-replay digest FILE --chunk BYTES [--offset BYTES] [--length BYTES]\n"
"                 [--direct] [--first-number N]\n"
"       lw-replay --help\n";

static void usage(FILE *f)
{
	fputs(
"NAME\n"
"    lw-replay - list and replay a dm-log-writes log\n"
"\n"
"SYNOPSIS\n"
"    lw-replay [OPTIONS] info LOG\n"
"    lw-replay [OPTIONS] list LOG\n"
"    lw-replay [OPTIONS] points LOG\n"
"    lw-replay [OPTIONS] find-mark LOG NAME\n"
"    lw-replay [OPTIONS] replay LOG TARGET [--to N | --to-mark NAME]\n"
"    lw-replay digest FILE --chunk BYTES [--offset BYTES] [--length BYTES]\n"
"              [--direct] [--first-number N]\n"
"\n"
"DESCRIPTION\n"
"    LOG is the log device (or a copy of it in a file) of a dm-log-writes\n"
"    target, written as described in the kernel's\n"
"    Documentation/admin-guide/device-mapper/log-writes.rst.  Entries are\n"
"    numbered from 0 in log order, which is the order in which the writes\n"
"    were known to be durable: a plain write is logged only at the next\n"
"    flush that followed its completion, a FUA write when it completes.\n"
"    Read the log after the log-writes device was removed (its super then\n"
"    counts every entry).\n"
"\n"
"COMMANDS\n"
"    info        print the super: magic, version, entries, sectorsize\n"
"    list        one line per entry: NUMBER SECTOR SECTORS FLAGS [MARK],\n"
"                SECTOR and SECTORS in 512-byte units, FLAGS the names of\n"
"                the flags joined by '|' (FLUSH, FUA, DISCARD, MARK,\n"
"                METADATA) or '-'\n"
"    points      the numbers of the entries with FLUSH or FUA, one a line:\n"
"                the points where a crash can leave the device\n"
"    find-mark   the number of the (first) mark entry called NAME\n"
"    replay      write the entries onto TARGET (a block device or a file,\n"
"                which should start zeroed), from the first up to and\n"
"                including entry N (--to) or the mark NAME (--to-mark);\n"
"                all of them by default\n"
"    digest      (no log) one line per CHUNK bytes of FILE from --offset\n"
"                (0) for --length bytes (to the end): NUMBER DIGEST, the\n"
"                chunks numbered from --first-number (0) and DIGEST 16\n"
"                hex digits of a 64-bit hash of the chunk's bytes (not\n"
"                cryptographic: it tells contents apart, it does not\n"
"                resist forgery)\n"
"\n"
"OPTIONS\n"
"    --to N           last entry to replay\n"
"    --to-mark NAME   replay up to and including the mark NAME\n"
"    --skip-discards  leave discarded ranges as they are (default: write\n"
"                     zeroes over them, as a discard that zeroes would)\n"
"    --unflushed-below SECTOR\n"
"                     replay: of the entries after the last FLUSH entry\n"
"                     before the final one (the writes of the last flush\n"
"                     epoch, which a disk may still lose or reorder), apply\n"
"                     only what lies below SECTOR (512-byte units), e.g. a\n"
"                     device's metadata area: the state of a disk that kept\n"
"                     the epoch's metadata writes and lost its data writes.\n"
"                     FUA entries of the epoch above SECTOR are dropped too.\n"
"                     A FLUSH entry's own data counts as flushed by it.\n"
"    --size BYTES     replay: TARGET is a file (made if missing); empty it\n"
"                     and make it BYTES long (zeroes) before replaying\n"
"    --chunk, --offset, --length BYTES   digest: the geometry\n"
"    --direct         digest: read FILE with O_DIRECT (a device: no page\n"
"                     cache between the reader and the device)\n"
"    --first-number N digest: the number of the first chunk (0)\n"
"    -v, --verbose    replay: print each entry applied, on stderr\n"
"    -h, --help       this text\n"
"\n"
"EXIT STATUS\n"
"    0 success, 1 a bad log or an I/O error, 2 a usage error, 3 find-mark\n"
"    or --to-mark: no such mark, or --to beyond the last entry.\n"
"\n"
"EXAMPLE\n"
"    dmsetup create lw --table \"0 $(blockdev --getsz $DATA) log-writes $DATA $LOG\"\n"
"    ... writes, fsync ...; dmsetup message lw 0 mark synced; dmsetup remove lw\n"
"    lw-replay replay $LOG $FRESH --to-mark synced\n", f);
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static int read_full(int fd, void *buf, size_t len, uint64_t off, const char *what)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "lw-replay: reading %s at byte %" PRIu64 ": %s\n",
				what, off, strerror(errno));
			return -1;
		}
		if (n == 0) {
			fprintf(stderr, "lw-replay: %s ends at byte %" PRIu64 " (truncated log?)\n",
				what, off);
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len, uint64_t off, const char *what)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "lw-replay: writing %s at byte %" PRIu64 ": %s\n",
				what, off, strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Size in bytes of a block device or a regular file. */
static int fd_size(int fd, const char *path, uint64_t *size, bool *is_blk)
{
	struct stat st;

	if (fstat(fd, &st)) {
		fprintf(stderr, "lw-replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	*is_blk = S_ISBLK(st.st_mode);
	if (*is_blk) {
		uint64_t b;

		if (ioctl(fd, BLKGETSIZE64, &b)) {
			fprintf(stderr, "lw-replay: %s: BLKGETSIZE64: %s\n", path, strerror(errno));
			return -1;
		}
		*size = b;
	} else if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
	} else {
		fprintf(stderr, "lw-replay: %s: neither a block device nor a file\n", path);
		return -1;
	}
	return 0;
}

static int log_open(struct lw_log *lg, const char *path)
{
	unsigned char sb[512];
	uint64_t magic, version;
	bool is_blk;

	memset(lg, 0, sizeof(*lg));
	lg->path = path;
	lg->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (lg->fd < 0) {
		fprintf(stderr, "lw-replay: cannot open the log %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fd_size(lg->fd, path, &lg->size, &is_blk))
		return -1;
	if (read_full(lg->fd, sb, sizeof(sb), 0, "the log's super"))
		return -1;
	magic = get_le64(sb);
	version = get_le64(sb + 8);
	lg->nr_entries = get_le64(sb + 16);
	lg->bsize = get_le32(sb + 24);
	if (magic != LW_MAGIC) {
		fprintf(stderr, "lw-replay: %s: not a log-writes log (magic %#" PRIx64 ", expected %#llx)\n",
			path, magic, LW_MAGIC);
		return -1;
	}
	if (version != LW_VERSION) {
		fprintf(stderr, "lw-replay: %s: log version %" PRIu64 " not supported (only %llu)\n",
			path, version, LW_VERSION);
		return -1;
	}
	if (lg->bsize < 512 || lg->bsize > MAX_BLOCK_SIZE || (lg->bsize & (lg->bsize - 1))) {
		fprintf(stderr, "lw-replay: %s: bad sectorsize %" PRIu32 " in the super\n",
			path, lg->bsize);
		return -1;
	}
	lg->pos = lg->bsize;
	lg->index = 0;
	return 0;
}

/*
 * Read the next entry's header.  Returns 1 with *e filled, 0 at the end of
 * the log, -1 on a bad entry.
 */
static int log_next(struct lw_log *lg, struct lw_entry *e)
{
	static unsigned char hdr[MAX_BLOCK_SIZE];
	uint64_t data_bytes;

	if (lg->index >= lg->nr_entries)
		return 0;
	if (lg->pos + lg->bsize > lg->size) {
		fprintf(stderr, "lw-replay: %s: entry %" PRIu64 " lies past the end of the log\n",
			lg->path, lg->index);
		return -1;
	}
	if (read_full(lg->fd, hdr, lg->bsize, lg->pos, "an entry header"))
		return -1;
	e->index = lg->index;
	e->sector = get_le64(hdr);
	e->nr_sectors = get_le64(hdr + 8);
	e->flags = get_le64(hdr + 16);
	e->data_len = get_le64(hdr + 24);
	e->data_pos = lg->pos + lg->bsize;
	e->mark[0] = '\0';
	if (e->flags & ~LW_KNOWN_FLAGS) {
		fprintf(stderr, "lw-replay: %s: entry %" PRIu64 " at byte %" PRIu64 " has unknown flags %#" PRIx64 "\n",
			lg->path, lg->index, lg->pos, e->flags);
		return -1;
	}
	if (e->flags & LW_MARK) {
		size_t n = (size_t)e->data_len;

		if (e->data_len > lg->bsize - ENTRY_HDR_BYTES) {
			fprintf(stderr, "lw-replay: %s: mark entry %" PRIu64 " claims %" PRIu64 " bytes\n",
				lg->path, lg->index, e->data_len);
			return -1;
		}
		memcpy(e->mark, hdr + ENTRY_HDR_BYTES, n);
		e->mark[n] = '\0';
	} else if (e->data_len) {
		/* Inline data of non-mark entries: not written by the kernel. */
		fprintf(stderr, "lw-replay: %s: entry %" PRIu64 " has inline data (%" PRIu64 " bytes): not supported\n",
			lg->path, lg->index, e->data_len);
		return -1;
	}
	data_bytes = (e->flags & LW_DISCARD) ? 0 : e->nr_sectors * lg->bsize;
	if (e->nr_sectors > (UINT64_MAX / 2) / lg->bsize ||
	    e->data_pos + data_bytes > lg->size) {
		fprintf(stderr, "lw-replay: %s: entry %" PRIu64 " (%" PRIu64 " blocks) runs past the end of the log\n",
			lg->path, lg->index, e->nr_sectors);
		return -1;
	}
	lg->pos = e->data_pos + data_bytes;
	lg->index++;
	return 1;
}

static void flag_names(uint64_t flags, char *buf, size_t len)
{
	static const struct { uint64_t bit; const char *name; } names[] = {
		{ LW_FLUSH, "FLUSH" }, { LW_FUA, "FUA" }, { LW_DISCARD, "DISCARD" },
		{ LW_MARK, "MARK" }, { LW_METADATA, "METADATA" },
	};
	size_t i, used = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(flags & names[i].bit))
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 used ? "|" : "", names[i].name);
		if (used >= len)
			break;
	}
	if (!buf[0])
		snprintf(buf, len, "-");
}

/* 512-byte sectors, as dmsetup and blockdev count them. */
static uint64_t to_512(const struct lw_log *lg, uint64_t blocks)
{
	return blocks * (lg->bsize / 512);
}

static int cmd_info(struct lw_log *lg)
{
	printf("magic=%#llx version=%llu entries=%" PRIu64 " sectorsize=%" PRIu32 "\n",
	       LW_MAGIC, LW_VERSION, lg->nr_entries, lg->bsize);
	return 0;
}

static int cmd_list(struct lw_log *lg, int mode, const char *name)
{
	static struct lw_entry e;
	char flags[64];
	int r;

	while ((r = log_next(lg, &e)) > 0) {
		switch (mode) {
		case 0:
			flag_names(e.flags, flags, sizeof(flags));
			printf("%" PRIu64 " %" PRIu64 " %" PRIu64 " %s%s%s\n", e.index,
			       to_512(lg, e.sector), to_512(lg, e.nr_sectors), flags,
			       e.mark[0] ? " " : "", e.mark);
			break;
		case 1:
			if (e.flags & (LW_FLUSH | LW_FUA))
				printf("%" PRIu64 "\n", e.index);
			break;
		default:
			if ((e.flags & LW_MARK) && !strcmp(e.mark, name)) {
				printf("%" PRIu64 "\n", e.index);
				return 0;
			}
			break;
		}
	}
	if (r < 0)
		return 1;
	if (mode == 2) {
		fprintf(stderr, "lw-replay: %s: no mark '%s'\n", lg->path, name);
		return 3;
	}
	return 0;
}

static int zero_range(int fd, uint64_t off, uint64_t len)
{
	static unsigned char zeroes[COPY_CHUNK];

	while (len) {
		size_t n = len < COPY_CHUNK ? (size_t)len : COPY_CHUNK;

		if (write_full(fd, zeroes, n, off, "the target"))
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

static int copy_range(struct lw_log *lg, int fd, uint64_t from, uint64_t to, uint64_t len)
{
	static unsigned char buf[COPY_CHUNK];

	while (len) {
		size_t n = len < COPY_CHUNK ? (size_t)len : COPY_CHUNK;

		if (read_full(lg->fd, buf, n, from, "entry data") ||
		    write_full(fd, buf, n, to, "the target"))
			return -1;
		from += n;
		to += n;
		len -= n;
	}
	return 0;
}

/*
 * For --unflushed-below: the number of the last FLUSH entry before the
 * final entry to replay (--to N, --to-mark NAME or the last one) in *cut,
 * *have_cut false when there is none.  Leaves the log at its first entry.
 * Returns 0, or -1 on a bad log.
 */
static int find_cut(struct lw_log *lg, bool have_to, uint64_t to, const char *to_mark,
		    bool *have_cut, uint64_t *cut)
{
	static struct lw_entry e;
	bool last_flush = false;
	uint64_t last_flush_index = 0;
	int r;

	*have_cut = false;
	while ((r = log_next(lg, &e)) > 0) {
		bool final = (have_to && e.index == to) ||
			     (to_mark && (e.flags & LW_MARK) && !strcmp(e.mark, to_mark));

		if (have_to && e.index > to)
			break;
		/* The final entry's own flush does not count: it is the point. */
		if (final)
			break;
		if (e.flags & LW_FLUSH) {
			last_flush = true;
			last_flush_index = e.index;
		}
	}
	if (r < 0)
		return -1;
	*have_cut = last_flush;
	*cut = last_flush_index;
	lg->pos = lg->bsize;
	lg->index = 0;
	return 0;
}

static int cmd_replay(struct lw_log *lg, const char *target, bool have_to, uint64_t to,
		      const char *to_mark)
{
	static struct lw_entry e;
	uint64_t tsize, applied = 0, cut = 0, clipped = 0;
	bool is_blk, found = false, have_cut = false;
	int fd, r, ret = 1;

	if (have_below && find_cut(lg, have_to, to, to_mark, &have_cut, &cut))
		return 1;
	if (verbose && have_below) {
		if (have_cut)
			fprintf(stderr, "lw-replay: entries after %" PRIu64 " only below sector %" PRIu64 "\n",
				cut, unflushed_below);
		else
			fprintf(stderr, "lw-replay: no FLUSH entry: every entry only below sector %" PRIu64 "\n",
				unflushed_below);
	}

	fd = open(target, O_WRONLY | O_CLOEXEC | (have_size ? O_CREAT : 0), 0644);
	if (fd < 0) {
		fprintf(stderr, "lw-replay: cannot open the target %s: %s\n", target, strerror(errno));
		return 1;
	}
	if (fd_size(fd, target, &tsize, &is_blk))
		goto out;
	if (have_size) {
		if (is_blk) {
			fprintf(stderr, "lw-replay: --size: %s is a block device, not a file\n", target);
			goto out;
		}
		if (ftruncate(fd, 0) || ftruncate(fd, (off_t)fresh_size)) {
			fprintf(stderr, "lw-replay: cannot size %s to %" PRIu64 " bytes: %s\n",
				target, fresh_size, strerror(errno));
			goto out;
		}
		tsize = fresh_size;
	}

	while ((r = log_next(lg, &e)) > 0) {
		uint64_t off = e.sector * lg->bsize;
		uint64_t len = e.nr_sectors * lg->bsize;

		if (have_to && e.index > to)
			break;
		if (verbose) {
			char flags[64];

			flag_names(e.flags, flags, sizeof(flags));
			fprintf(stderr, "lw-replay: entry %" PRIu64 ": %s sector %" PRIu64 " +%" PRIu64 "%s%s\n",
				e.index, flags, to_512(lg, e.sector), to_512(lg, e.nr_sectors),
				e.mark[0] ? " mark " : "", e.mark);
		}
		if (have_below && (!have_cut || e.index > cut) && len) {
			uint64_t below = unflushed_below * 512;
			uint64_t keep = off >= below ? 0 : (below - off < len ? below - off : len);

			if (keep != len)
				clipped++;
			len = keep;
		}
		if (len && (is_blk || have_size) && off + len > tsize) {
			fprintf(stderr, "lw-replay: entry %" PRIu64 " writes bytes %" PRIu64 "..%" PRIu64 " past the end of %s (%" PRIu64 " bytes)\n",
				e.index, off, off + len, target, tsize);
			goto out;
		}
		if (e.flags & LW_DISCARD) {
			if (!skip_discards && zero_range(fd, off, len))
				goto out;
		} else if (len && copy_range(lg, fd, e.data_pos, off, len)) {
			goto out;
		}
		applied++;
		if (have_to && e.index == to) {
			found = true;
			break;
		}
		if (to_mark && (e.flags & LW_MARK) && !strcmp(e.mark, to_mark)) {
			found = true;
			break;
		}
	}
	if (r < 0)
		goto out;
	if (fsync(fd)) {
		fprintf(stderr, "lw-replay: fsync %s: %s\n", target, strerror(errno));
		goto out;
	}
	if (have_to && !found) {
		fprintf(stderr, "lw-replay: the log has no entry %" PRIu64 " (%" PRIu64 " entries)\n",
			to, lg->nr_entries);
		ret = 3;
		goto out;
	}
	if (to_mark && !found) {
		fprintf(stderr, "lw-replay: %s: no mark '%s'\n", lg->path, to_mark);
		ret = 3;
		goto out;
	}
	if (verbose)
		fprintf(stderr, "lw-replay: %" PRIu64 " entries replayed onto %s (%" PRIu64 " clipped or left out)\n",
			applied, target, clipped);
	ret = 0;
out:
	if (close(fd) && !ret) {
		fprintf(stderr, "lw-replay: close %s: %s\n", target, strerror(errno));
		ret = 1;
	}
	return ret;
}

/*
 * A 64-bit hash of a chunk: words of 8 bytes (little-endian) mixed in with
 * a multiply and shift per word, the length folded in last.  Enough to
 * tell the contents of extents apart in a test; not cryptographic.
 */
static uint64_t chunk_hash(const unsigned char *p, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL, w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		w = get_le64(p + i);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	h ^= (uint64_t)len;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 29;
	return h;
}

static int cmd_digest(const char *path, uint64_t offset, bool have_length, uint64_t length,
		      uint64_t chunk, bool direct, uint64_t first_number)
{
	unsigned char *buf = NULL;
	uint64_t size, n, i;
	bool is_blk;
	int fd, ret = 1;

	if (!chunk || chunk > (64U << 20)) {
		fprintf(stderr, "lw-replay: digest: --chunk must be 1 byte to 64 MiB\n");
		return EXIT_USAGE;
	}
	if (direct && (chunk % 4096 || offset % 4096)) {
		fprintf(stderr, "lw-replay: digest: --direct needs --chunk and --offset in 4096-byte units\n");
		return EXIT_USAGE;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (fd < 0) {
		fprintf(stderr, "lw-replay: cannot open %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (fd_size(fd, path, &size, &is_blk))
		goto out;
	if (offset > size) {
		fprintf(stderr, "lw-replay: %s: --offset %" PRIu64 " beyond its %" PRIu64 " bytes\n",
			path, offset, size);
		goto out;
	}
	if (!have_length)
		length = size - offset;
	if (length > size - offset || length % chunk) {
		fprintf(stderr, "lw-replay: %s: %" PRIu64 " bytes from %" PRIu64 " are not whole chunks of %" PRIu64 " inside its %" PRIu64 " bytes\n",
			path, length, offset, chunk, size);
		goto out;
	}
	if (posix_memalign((void **)&buf, 4096, (size_t)chunk)) {
		fprintf(stderr, "lw-replay: out of memory\n");
		goto out;
	}
	n = length / chunk;
	for (i = 0; i < n; i++) {
		if (read_full(fd, buf, (size_t)chunk, offset + i * chunk, path))
			goto out;
		printf("%" PRIu64 " %016" PRIx64 "\n", first_number + i,
		       chunk_hash(buf, (size_t)chunk));
	}
	ret = 0;
out:
	free(buf);
	close(fd);
	return ret;
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long x;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*v = x;
	return true;
}

int main(int argc, char **argv)
{
	const char *to_mark = NULL, *cmd, *pos[3];
	struct lw_log lg;
	bool have_to = false, have_length = false, direct = false, digest_opts = false;
	uint64_t to = 0, chunk = 0, offset = 0, length = 0, first_number = 0;
	int npos = 0, i, ret;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			verbose = true;
		} else if (!strcmp(a, "--skip-discards")) {
			skip_discards = true;
		} else if (!strcmp(a, "--direct")) {
			direct = true;
			digest_opts = true;
		} else if (!strcmp(a, "--unflushed-below") || !strcmp(a, "--size") ||
			   !strcmp(a, "--chunk") || !strcmp(a, "--first-number") ||
			   !strcmp(a, "--offset") || !strcmp(a, "--length")) {
			uint64_t v;

			if (i + 1 >= argc) {
				fprintf(stderr, "lw-replay: %s needs a value\n", a);
				return EXIT_USAGE;
			}
			if (!parse_u64(argv[++i], &v)) {
				fprintf(stderr, "lw-replay: %s: '%s' is not a number\n", a, argv[i]);
				return EXIT_USAGE;
			}
			if (!strcmp(a, "--unflushed-below")) {
				have_below = true;
				unflushed_below = v;
				continue;
			}
			if (!strcmp(a, "--size")) {
				have_size = true;
				fresh_size = v;
				continue;
			}
			digest_opts = true;
			if (!strcmp(a, "--chunk")) {
				chunk = v;
			} else if (!strcmp(a, "--first-number")) {
				first_number = v;
			} else if (!strcmp(a, "--offset")) {
				offset = v;
			} else {
				length = v;
				have_length = true;
			}
		} else if (!strcmp(a, "--to") || !strcmp(a, "--to-mark")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "lw-replay: %s needs a value\n", a);
				return EXIT_USAGE;
			}
			if (!strcmp(a, "--to-mark")) {
				to_mark = argv[++i];
			} else if (!parse_u64(argv[++i], &to)) {
				fprintf(stderr, "lw-replay: --to: '%s' is not an entry number\n", argv[i]);
				return EXIT_USAGE;
			} else {
				have_to = true;
			}
		} else if (!strcmp(a, "--")) {
			for (i++; i < argc && npos < 3; i++)
				pos[npos++] = argv[i];
			if (i < argc)
				npos = 4;
			break;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "lw-replay: unknown option '%s' (see --help)\n", a);
			return EXIT_USAGE;
		} else if (npos < 3) {
			pos[npos++] = a;
		} else {
			npos = 4;
		}
	}
	if (npos < 2 || npos > 3) {
		fputs(synopsis, stderr);
		return EXIT_USAGE;
	}
	cmd = pos[0];
	if (!strcmp(cmd, "digest")) {
		if (npos != 2 || have_to || to_mark || have_below || have_size || skip_discards) {
			fputs(synopsis, stderr);
			return EXIT_USAGE;
		}
		ret = cmd_digest(pos[1], offset, have_length, length, chunk, direct, first_number);
		if (fflush(stdout) && !ret) {
			fprintf(stderr, "lw-replay: writing the output: %s\n", strerror(errno));
			ret = 1;
		}
		return ret;
	}
	if (digest_opts) {
		fprintf(stderr, "lw-replay: --chunk, --offset, --length, --direct and --first-number apply to digest only\n");
		return EXIT_USAGE;
	}
	if ((have_below || have_size) && strcmp(cmd, "replay")) {
		fprintf(stderr, "lw-replay: --unflushed-below and --size apply to replay only\n");
		return EXIT_USAGE;
	}
	if (have_to && to_mark) {
		fprintf(stderr, "lw-replay: give --to or --to-mark, not both\n");
		return EXIT_USAGE;
	}
	if ((have_to || to_mark) && strcmp(cmd, "replay")) {
		fprintf(stderr, "lw-replay: --to and --to-mark apply to replay only\n");
		return EXIT_USAGE;
	}
	if (npos != (!strcmp(cmd, "replay") || !strcmp(cmd, "find-mark") ? 3 : 2) ||
	    (strcmp(cmd, "info") && strcmp(cmd, "list") && strcmp(cmd, "points") &&
	     strcmp(cmd, "find-mark") && strcmp(cmd, "replay"))) {
		fputs(synopsis, stderr);
		return EXIT_USAGE;
	}

	if (log_open(&lg, pos[1])) {
		if (lg.fd >= 0)
			close(lg.fd);
		return 1;
	}
	if (!strcmp(cmd, "info"))
		ret = cmd_info(&lg);
	else if (!strcmp(cmd, "list"))
		ret = cmd_list(&lg, 0, NULL);
	else if (!strcmp(cmd, "points"))
		ret = cmd_list(&lg, 1, NULL);
	else if (!strcmp(cmd, "find-mark"))
		ret = cmd_list(&lg, 2, pos[2]);
	else
		ret = cmd_replay(&lg, pos[2], have_to, to, to_mark);
	close(lg.fd);
	if (fflush(stdout) && !ret) {
		fprintf(stderr, "lw-replay: writing the output: %s\n", strerror(errno));
		ret = 1;
	}
	return ret;
}
