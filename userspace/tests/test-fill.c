// SPDX-License-Identifier: GPL-2.0
/*
 * test-fill.c - the COW writer and fill engine: extents land at
 * (data_offset + i * extent_sectors) * 512 with O_DIRECT, only the extents
 * asked for, the short last extent stops at dev_sectors, holes become zeroes
 * over old garbage, geometry and range errors are refused.  Files stand in
 * for block devices; if losetup works (root) a loop device is opened by
 * major:minor through a private device node as well.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <dirent.h>
#include <unistd.h>

#include "rcow/fill.h"
#include "tap.h"

#define GARBAGE 0xab
#define DATA_OFFSET 64u		/* sectors of "metadata" before the data area */

/* Base: dev_sectors sectors, data except for holes at extents 2 and 5. */
static int make_base(const char *path, uint64_t dev_sectors, uint32_t es, unsigned char **content)
{
	uint64_t size = dev_sectors * 512, ext = (uint64_t)es * 512;
	unsigned char *c = malloc(size);
	int fd;

	if (!c)
		return -1;
	for (uint64_t i = 0; i < size; i++)
		c[i] = (unsigned char)((i / 512) * 31 + i % 251 + 1);
	memset(c + 2 * ext, 0, ext);
	memset(c + 5 * ext, 0, ext);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		free(c);
		return -1;
	}
	for (uint64_t off = 0; off < size; off += ext) {
		uint64_t n = size - off < ext ? size - off : ext;

		if ((off / ext == 2 || off / ext == 5))
			continue;	/* leave a real hole */
		if (pwrite(fd, c + off, n, (off_t)off) != (ssize_t)n) {
			close(fd);
			free(c);
			return -1;
		}
	}
	if (ftruncate(fd, (off_t)size) < 0 || close(fd) < 0) {
		free(c);
		return -1;
	}
	*content = c;
	return 0;
}

static int make_garbage(const char *path, uint64_t size)
{
	unsigned char buf[4096];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	memset(buf, GARBAGE, sizeof(buf));
	for (uint64_t off = 0; off < size; off += sizeof(buf))
		if (pwrite(fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf)) {
			close(fd);
			return -1;
		}
	return close(fd);
}

static unsigned char *slurp(const char *path, uint64_t size)
{
	unsigned char *p = malloc(size);
	int fd = open(path, O_RDONLY);

	if (!p || fd < 0 || pread(fd, p, size, 0) != (ssize_t)size) {
		free(p);
		p = NULL;
	}
	if (fd >= 0)
		close(fd);
	return p;
}

static bool all_are(const unsigned char *p, uint64_t n, unsigned char v)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* One full scenario for a geometry; cow is a file or a block device path. */
static void scenario(struct tap *t, const char *dir, uint32_t es, uint64_t dev_sectors, bool no_zero_ops,
		     const char *cow_dev)
{
	struct rcow_geom g = { es, (dev_sectors + es - 1) / es, DATA_OFFSET, dev_sectors };
	uint64_t ext = (uint64_t)es * 512, cow_size, data = (uint64_t)DATA_OFFSET * 512;
	struct rcow_fill_stats st = { 0 };
	struct rcow_filler f = { .no_zero_ops = no_zero_ops };
	unsigned char *base_c = NULL, *cow_c = NULL;
	struct rcow_base *base = NULL;
	struct rcow_cow *cow = NULL;
	struct rcow_err err = { 0 };
	char bpath[512], cpath[512], uri[600], label[96];
	int r;

	snprintf(label, sizeof(label), "es=%u len=%llu%s%s", es, (unsigned long long)dev_sectors,
		 no_zero_ops ? " zero-writes" : "", cow_dev ? " loop" : "");
	snprintf(bpath, sizeof(bpath), "%s/base-%u.img", dir, es);
	snprintf(cpath, sizeof(cpath), "%s", cow_dev ? cow_dev : "");
	if (!cow_dev)
		snprintf(cpath, sizeof(cpath), "%s/cow-%u.img", dir, es);
	cow_size = (data + g.nr_extents * ext + 4095) / 4096 * 4096;
	if (!tap_ok(t, make_base(bpath, dev_sectors, es, &base_c) == 0 &&
			  (cow_dev || make_garbage(cpath, cow_size) == 0),
		    "[%s] base and garbage-filled COW created", label))
		goto out;
	snprintf(uri, sizeof(uri), "file://%s", bpath);
	r = rcow_base_open(uri, &base, &err);
	if (!r)
		r = rcow_cow_open_path(cpath, 0, &cow, &err);
	if (!tap_ok(t, r == 0 && cow->direct, "[%s] base and COW open (COW with O_DIRECT)", label)) {
		tap_diag(t, "%s", err.msg);
		goto out;
	}
	if (cow_dev)
		cow_size = cow->size;
	tap_ok(t, rcow_geom_check(&g, &err) == 0, "[%s] geometry is consistent", label);

	/* extents 1..3 first: the others must stay untouched */
	r = rcow_fill_range(&f, &g, base, cow, 1, 3, &st, &err);
	cow_c = r ? NULL : slurp(cpath, cow_size);
	tap_ok(t, r == 0 && cow_c && !memcmp(cow_c + data + ext, base_c + ext, 3 * ext) &&
		  all_are(cow_c + data, ext, GARBAGE) && all_are(cow_c + data + 4 * ext, ext, GARBAGE),
	       "[%s] extents 1-3 filled, neighbours untouched", label);
	if (r)
		tap_diag(t, "%s", err.msg);
	free(cow_c);
	tap_ok(t, st.extents == 3 && st.bytes_zero == ext && st.bytes_read == 2 * ext,
	       "[%s] the hole extent 2 was not read (read %llu, zero %llu)", label,
	       (unsigned long long)st.bytes_read, (unsigned long long)st.bytes_zero);

	/* the rest, last extent included */
	r = rcow_fill_range(&f, &g, base, cow, 0, 1, &st, &err);
	if (!r && g.nr_extents > 4)
		r = rcow_fill_range(&f, &g, base, cow, 4, g.nr_extents - 4, &st, &err);
	cow_c = r ? NULL : slurp(cpath, cow_size);
	tap_ok(t, r == 0 && cow_c && !memcmp(cow_c + data, base_c, dev_sectors * 512),
	       "[%s] the whole data area equals the base", label);
	tap_ok(t, cow_c && all_are(cow_c, data, GARBAGE),
	       "[%s] the metadata area before data_offset is untouched", label);
	if (cow_c && dev_sectors % es && cow->lbs == 512)
		tap_ok(t, all_are(cow_c + data + dev_sectors * 512, g.nr_extents * ext - dev_sectors * 512,
				  GARBAGE),
		       "[%s] the short last extent stops at dev_sectors", label);
	free(cow_c);

	r = rcow_fill_range(&f, &g, base, cow, g.nr_extents, 1, &st, &err);
	tap_ok(t, r == -ERANGE && strstr(err.msg, "outside"), "[%s] extent past the end is refused", label);
	r = rcow_fill_range(&f, &g, base, cow, g.nr_extents - 1, 2, &st, &err);
	tap_ok(t, r == -ERANGE, "[%s] range running past the end is refused", label);
	r = rcow_fill_range(&f, &g, base, cow, 0, 0, &st, &err);
	tap_ok(t, r == -ERANGE, "[%s] empty range is refused", label);
out:
	rcow_filler_free(&f);
	rcow_base_close(base);
	rcow_cow_close(cow);
	free(base_c);
}

static void test_geom(struct tap *t)
{
	struct rcow_geom g = { 128, 10, 0, 1280 };
	struct rcow_err err = { 0 };

	tap_ok(t, rcow_geom_check(&g, &err) == 0, "geometry 128 x 10 = 1280 sectors");
	g.dev_sectors = 1281;
	tap_ok(t, rcow_geom_check(&g, &err) == -EINVAL && strstr(err.msg, "does not match"),
	       "extent count that does not cover the device is refused");
	g.nr_extents = 11;
	tap_ok(t, rcow_geom_check(&g, &err) == 0 && rcow_geom_extent_bytes(&g, 10) == 512 &&
		  rcow_geom_extent_bytes(&g, 9) == 65536 && rcow_geom_extent_bytes(&g, 11) == 0,
	       "short last extent is one sector");
	g.extent_sectors = 96;
	tap_ok(t, rcow_geom_check(&g, &err) == -EINVAL && strstr(err.msg, "power of two"),
	       "extent size not a power of two is refused");
	g.extent_sectors = 4;
	tap_ok(t, rcow_geom_check(&g, &err) == -EINVAL, "extent size below 8 sectors is refused");
	g.extent_sectors = 16384;
	tap_ok(t, rcow_geom_check(&g, &err) == -EINVAL, "extent size above 8192 sectors is refused");
}

static void test_cow_errors(struct tap *t, const char *dir)
{
	struct rcow_cow *cow = NULL;
	struct rcow_err err = { 0 };
	char path[512];
	void *buf = NULL;
	int r;

	snprintf(path, sizeof(path), "%s/nope.img", dir);
	r = rcow_cow_open_path(path, 0, &cow, &err);
	tap_ok(t, r == -ENOENT && strstr(err.msg, "nope.img"), "missing COW file is reported by name");

	snprintf(path, sizeof(path), "%s/small.img", dir);
	if (make_garbage(path, 8192) || rcow_cow_open_path(path, 0, &cow, &err)) {
		tap_ok(t, false, "small COW opens");
		return;
	}
	if (posix_memalign(&buf, 4096, 8192))
		return;
	memset(buf, 0, 8192);
	r = rcow_cow_pwrite(cow, buf, 8192, 4096, &err);
	tap_ok(t, r == -ENOSPC && strstr(err.msg, "smaller than the table needs"),
	       "write past the end of the COW is refused before any I/O");
	r = rcow_cow_pwrite(cow, buf, 100, 0, &err);
	tap_ok(t, r == -EINVAL && strstr(err.msg, "aligned"), "unaligned write is refused");
	r = rcow_cow_pwrite(cow, (char *)buf + 512, 512, 0, &err);
	tap_ok(t, r == -EINVAL && strstr(err.msg, "unaligned buffer"), "unaligned buffer is refused");
	tap_ok(t, rcow_cow_io_len(cow, 1) == 512 && rcow_cow_io_len(cow, 512) == 512,
	       "I/O lengths round up to the logical block size");
	free(buf);
	rcow_cow_close(cow);
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return false;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n == 0;
}

/* Attach a loop device over a file; returns its path or NULL. */
static char *loop_attach(const char *file)
{
	char cmd[700], line[128];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "losetup -f --show '%s' 2>/dev/null", file);
	p = popen(cmd, "r");
	if (!p)
		return NULL;
	if (!fgets(line, sizeof(line), p)) {
		pclose(p);
		return NULL;
	}
	if (pclose(p) != 0)
		return NULL;
	line[strcspn(line, "\n")] = '\0';
	return strdup(line);
}

static void loop_detach(const char *dev)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "losetup -d '%s'", dev);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not detach %s\n", dev);
}

static void test_block_device(struct tap *t, const char *dir)
{
	char img[512], nodes[512], *loop;
	struct rcow_cow *cow = NULL;
	struct rcow_err err = { 0 };
	struct stat st;
	int r;

	snprintf(img, sizeof(img), "%s/loop-cow.img", dir);
	snprintf(nodes, sizeof(nodes), "%s/nodes", dir);
	mkdir(nodes, 0700);
	if (make_garbage(img, 4 << 20) < 0)
		return;
	loop = geteuid() == 0 ? loop_attach(img) : NULL;
	if (!loop || stat(loop, &st) < 0 || !S_ISBLK(st.st_mode)) {
		tap_skip(t, "no loop device (needs root and losetup)", "COW opened by major:minor");
		free(loop);
		return;
	}
	r = rcow_cow_open_dev(major(st.st_rdev), minor(st.st_rdev), nodes, &cow, &err);
	if (tap_ok(t, r == 0 && cow->is_blkdev && cow->direct && cow->size == 4 << 20,
		   "COW block device %s opened by %u:%u", loop, major(st.st_rdev), minor(st.st_rdev)))
		tap_ok(t, dir_is_empty(nodes), "no private device node is left behind");
	else
		tap_diag(t, "%s", err.msg);
	rcow_cow_close(cow);
	scenario(t, dir, 64, 8 * 64 + 24, false, loop);
	loop_detach(loop);
	free(loop);
}

static void test_open_dev_errors(struct tap *t, const char *dir)
{
	struct rcow_cow *cow = NULL;
	struct rcow_err err = { 0 };
	char nodes[512];
	int r;

	snprintf(nodes, sizeof(nodes), "%s/nodes-bad", dir);
	mkdir(nodes, 0700);
	/* major 259 minor 999999 (blkext) is practically never present */
	r = rcow_cow_open_dev(259, 999999, nodes, &cow, &err);
	tap_ok(t, r < 0 && strstr(err.msg, "259:999999"), "absent COW device is reported as MAJ:MIN");
	tap_ok(t, dir_is_empty(nodes), "failed open leaves no device node behind");
	r = rcow_cow_open_dev(259, 999999, "/nonexistent-dir", &cow, &err);
	tap_ok(t, r < 0 && strstr(err.msg, "/nonexistent-dir"), "unusable node directory is named");
}

void test_fill(struct tap *t)
{
	char *dir = tap_tmpdir(t);

	if (!tap_ok(t, dir != NULL, "temporary directory"))
		return;
	test_geom(t);
	scenario(t, dir, 8, 8 * 10, false, NULL);		/* 4 KiB extents, exact */
	scenario(t, dir, 128, 128 * 9 + 3, false, NULL);	/* 64 KiB, 3-sector tail */
	scenario(t, dir, 128, 128 * 9 + 3, true, NULL);	/* same, zeroes written */
	scenario(t, dir, 8192, 8192 * 6 + 1000, false, NULL);	/* 4 MiB extents */
	test_cow_errors(t, dir);
	test_open_dev_errors(t, dir);
	test_block_device(t, dir);
	tap_rmtree(dir);
	free(dir);
}
