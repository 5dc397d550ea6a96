// SPDX-License-Identifier: GPL-2.0
/*
 * test-base.c - file and null base sources: sizes, holes through
 * SEEK_DATA/SEEK_HOLE, sparse reads past the end, open errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcow/base.h"
#include "tap.h"

#define K 1024ull

/* data A [0,64K), hole, data B [256K,260K), hole, data C [1M, 1M+1000) */
static const struct {
	uint64_t off, len;
	char c;
} layout[] = { { 0, 64 * K, 'A' }, { 256 * K, 4 * K, 'B' }, { 1024 * K, 1000, 'C' } };
#define FILE_SIZE (1024 * K + 1000)

static int make_image(const char *path, unsigned char *expect)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t i;

	if (fd < 0)
		return -1;
	memset(expect, 0, FILE_SIZE);
	for (i = 0; i < sizeof(layout) / sizeof(layout[0]); i++) {
		memset(expect + layout[i].off, layout[i].c, layout[i].len);
		if (pwrite(fd, expect + layout[i].off, layout[i].len, (off_t)layout[i].off) !=
		    (ssize_t)layout[i].len) {
			close(fd);
			return -1;
		}
	}
	return close(fd);
}

static bool run_is(const struct rcow_extent_list *l, size_t i, uint64_t off, uint64_t len, bool zero)
{
	return i < l->n && l->v[i].offset == off && l->v[i].length == len && l->v[i].zero == zero;
}

static void dump_list(struct tap *t, const struct rcow_extent_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		tap_diag(t, "run %zu: %llu+%llu %s", i, (unsigned long long)l->v[i].offset,
			 (unsigned long long)l->v[i].length, l->v[i].zero ? "zero" : "data");
}

/* Collect runs for [off, off+len) by looping like the fill engine does. */
static int status_all(struct rcow_base *b, uint64_t off, uint64_t len, struct rcow_extent_list *l,
		      struct rcow_err *err)
{
	uint64_t end = off + len;

	rcow_extent_list_reset(l);
	while (off < end) {
		size_t before = l->n;
		int r = b->ops->block_status(b, off, end - off, l, err);

		if (r)
			return r;
		if (l->n == before)
			return -EPROTO;
		off = l->v[l->n - 1].offset + l->v[l->n - 1].length;
	}
	return 0;
}

static void test_file(struct tap *t, const char *dir)
{
	unsigned char *expect = malloc(FILE_SIZE), *got = malloc(FILE_SIZE + 8192);
	struct rcow_extent_list l = { 0 };
	struct rcow_base *b = NULL;
	struct rcow_err err = { 0 };
	char path[512], uri[600];
	uint64_t rd = 0, zr = 0;
	int r;

	snprintf(path, sizeof(path), "%s/base image.img", dir);
	snprintf(uri, sizeof(uri), "file://%s", path);
	for (char *p = strstr(uri, " "); p; p = strstr(uri, " ")) {	/* percent-encode the space */
		memmove(p + 3, p + 1, strlen(p + 1) + 1);
		memcpy(p, "%20", 3);
	}
	if (!tap_ok(t, make_image(path, expect) == 0, "sparse test image created"))
		goto out;
	r = rcow_base_open(uri, &b, &err);
	if (!tap_ok(t, r == 0, "file base opens from a percent-encoded URI")) {
		tap_diag(t, "%s", err.msg);
		goto out;
	}
	tap_ok(t, b->size == FILE_SIZE && !strcmp(b->ops->name, "file"), "file base size and ops");

	r = status_all(b, 0, FILE_SIZE, &l, &err);
	if (!tap_ok(t, r == 0 && l.n == 5 && run_is(&l, 0, 0, 64 * K, false) &&
			  run_is(&l, 1, 64 * K, 192 * K, true) && run_is(&l, 2, 256 * K, 4 * K, false) &&
			  run_is(&l, 3, 260 * K, 764 * K, true) && run_is(&l, 4, 1024 * K, 1000, false),
		    "SEEK_DATA/SEEK_HOLE give data, hole, data, hole, data"))
		dump_list(t, &l);

	r = status_all(b, 100 * K, 200 * K, &l, &err);
	if (!tap_ok(t, r == 0 && l.n == 3 && run_is(&l, 0, 100 * K, 156 * K, true) &&
			  run_is(&l, 1, 256 * K, 4 * K, false) && run_is(&l, 2, 260 * K, 40 * K, true),
		    "block status of a range starting inside a hole is clipped to the range"))
		dump_list(t, &l);

	memset(got, 0x55, FILE_SIZE + 8192);
	r = rcow_base_read_sparse(b, got, FILE_SIZE + 8192, 0, &l, &rd, &zr, &err);
	tap_ok(t, r == 0 && !memcmp(got, expect, FILE_SIZE), "sparse read returns the image content");
	tap_ok(t, r == 0 && got[FILE_SIZE] == 0 && !memcmp(got + FILE_SIZE, got + FILE_SIZE + 1, 8191),
	       "sparse read past the end of the base gives zeroes");
	tap_ok(t, rd == 64 * K + 4 * K + 1000 && zr == FILE_SIZE + 8192 - rd,
	       "only data runs are read (%llu read, %llu zero-filled)", (unsigned long long)rd,
	       (unsigned long long)zr);

	rd = zr = 0;
	r = rcow_base_read_sparse(b, got, 4096, FILE_SIZE + 100000, &l, &rd, &zr, &err);
	tap_ok(t, r == 0 && rd == 0 && zr == 4096 && got[0] == 0, "sparse read wholly past the end reads nothing");

	r = b->ops->pread(b, got, 4096, FILE_SIZE - 1000, &err);
	tap_ok(t, r == 0 && got[999] == 'C' && got[1000] == 0 && got[4095] == 0,
	       "pread across end of file zero-fills the rest");
out:
	rcow_base_close(b);
	rcow_extent_list_free(&l);
	free(expect);
	free(got);
}

static void test_file_errors(struct tap *t, const char *dir)
{
	struct rcow_base *b = NULL;
	struct rcow_err err = { 0 };
	char uri[600];
	int r;

	snprintf(uri, sizeof(uri), "file://%s/missing.img", dir);
	r = rcow_base_open(uri, &b, &err);
	tap_ok(t, r == -ENOENT && strstr(err.msg, "missing.img") && strstr(err.msg, "check"),
	       "missing base file: ENOENT naming the file and what to check");
	snprintf(uri, sizeof(uri), "file://%s", dir);
	r = rcow_base_open(uri, &b, &err);
	tap_ok(t, r == -EINVAL && strstr(err.msg, "neither a regular file nor a block device"),
	       "directory as base is refused");
	r = rcow_base_open("http://x/y", &b, &err);
	tap_ok(t, r == -EPROTONOSUPPORT && strstr(err.msg, "base URI 'http://x/y'"),
	       "bad URI: the message names the URI");
}

static void test_null(struct tap *t)
{
	struct rcow_extent_list l = { 0 };
	struct rcow_base *b = NULL;
	struct rcow_err err = { 0 };
	unsigned char buf[8192];
	uint64_t rd = 0, zr = 0;

	memset(buf, 1, sizeof(buf));
	if (!tap_ok(t, rcow_base_open_null(1 << 20, &b, &err) == 0 && b->size == 1 << 20, "null base opens"))
		return;
	tap_ok(t, rcow_base_read_sparse(b, buf, sizeof(buf), 4096, &l, &rd, &zr, &err) == 0 &&
		  rd == 0 && zr == sizeof(buf) && buf[0] == 0 && buf[8191] == 0,
	       "null base reads as zeroes without reading");
	rcow_extent_list_reset(&l);
	tap_ok(t, b->ops->block_status(b, 0, 1 << 20, &l, &err) == 0 && l.n == 1 && l.v[0].zero,
	       "null base is one hole");
	rcow_base_close(b);
	rcow_extent_list_free(&l);
}

static void test_extent_list(struct tap *t)
{
	struct rcow_extent_list l = { 0 };
	struct rcow_err err = { 0 };
	int i, r = 0;

	for (i = 0; i < 100; i++)
		r |= rcow_extent_list_add(&l, (uint64_t)i * 10, 10, i % 2, &err);
	r |= rcow_extent_list_add(&l, 1000, 5, true, &err);	/* merges with the last hole */
	r |= rcow_extent_list_add(&l, 1005, 0, false, &err);	/* empty: dropped */
	tap_ok(t, r == 0 && l.n == 100 && l.v[99].length == 15, "extent list grows, merges and drops empty runs");
	rcow_extent_list_free(&l);
}

void test_base(struct tap *t)
{
	char *dir = tap_tmpdir(t);

	if (!tap_ok(t, dir != NULL, "temporary directory"))
		return;
	test_file(t, dir);
	test_file_errors(t, dir);
	test_null(t);
	test_extent_list(t);
	tap_rmtree(dir);
	free(dir);
}
