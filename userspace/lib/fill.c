// SPDX-License-Identifier: GPL-2.0
/*
 * fill.c - copy extents from a base source into the COW device
 * (see include/rcow/fill.h).  One extent at a time, through one aligned
 * buffer; the caller answers FILL_DONE after this returns.
 */
#include <errno.h>
#include <string.h>

#include "remote_cow.h"
#include "rcow/fill.h"

int rcow_geom_check(const struct rcow_geom *g, struct rcow_err *err)
{
	uint32_t es = g->extent_sectors;

	if (es < 8 || es > 8192 || (es & (es - 1)))
		return rcow_err_set(err, EINVAL,
			"extent size of %u sectors is invalid: it must be a power of two from 8 to 8192",
			es);
	if (g->dev_sectors == 0)
		return rcow_err_set(err, EINVAL, "device length is 0 sectors");
	if (g->nr_extents != (g->dev_sectors + es - 1) / es)
		return rcow_err_set(err, EINVAL,
			"extent count %llu does not match device length %llu sectors at %u sectors per extent",
			(unsigned long long)g->nr_extents, (unsigned long long)g->dev_sectors, es);
	return 0;
}

uint64_t rcow_geom_extent_bytes(const struct rcow_geom *g, uint64_t i)
{
	uint64_t start = i * g->extent_sectors, end;

	if (i >= g->nr_extents || start >= g->dev_sectors)
		return 0;
	end = start + g->extent_sectors;
	if (end > g->dev_sectors)
		end = g->dev_sectors;
	return (end - start) * 512;
}

static int fill_one(struct rcow_filler *f, const struct rcow_geom *g, struct rcow_base *base,
		    struct rcow_cow *cow, uint64_t i, struct rcow_fill_stats *st,
		    struct rcow_err *err)
{
	uint64_t len = rcow_geom_extent_bytes(g, i);
	uint64_t dev_off = i * g->extent_sectors * 512;
	uint64_t cow_off = (g->data_offset + i * g->extent_sectors) * 512;
	uint64_t read = 0, zero = 0;
	size_t io_len = rcow_cow_io_len(cow, (size_t)len);
	int r;

	r = rcow_buf_reserve(&f->buf, io_len, err);
	if (r)
		return r;
	r = rcow_base_read_sparse(base, f->buf.p, (size_t)len, dev_off, &f->scratch,
				  &read, &zero, err);
	if (r) {
		rcow_err_prefix(err, "extent %llu", (unsigned long long)i);
		return r;
	}
	st->bytes_read += read;
	st->bytes_zero += zero;
	if (zero == len && !f->no_zero_ops) {
		r = rcow_cow_zero(cow, cow_off, io_len, err);
		if (r == 0)
			goto done;
		if (r != -EOPNOTSUPP)
			return r;
	}
	memset((unsigned char *)f->buf.p + len, 0, io_len - len);
	r = rcow_cow_pwrite(cow, f->buf.p, io_len, cow_off, err);
	if (r) {
		rcow_err_prefix(err, "extent %llu", (unsigned long long)i);
		return r;
	}
done:
	st->bytes_written += io_len;
	st->extents++;
	return 0;
}

int rcow_fill_range(struct rcow_filler *f, const struct rcow_geom *g, struct rcow_base *base,
		    struct rcow_cow *cow, uint64_t first, uint64_t count,
		    struct rcow_fill_stats *stats, struct rcow_err *err)
{
	uint64_t i;
	int r;

	if (count == 0 || count > REMOTE_COW_MAX_RANGE || first >= g->nr_extents ||
	    count > g->nr_extents - first)
		return rcow_err_set(err, ERANGE,
			"extent range %llu+%llu is outside the device's %llu extents (or longer than %d)",
			(unsigned long long)first, (unsigned long long)count,
			(unsigned long long)g->nr_extents, REMOTE_COW_MAX_RANGE);
	for (i = first; i < first + count; i++) {
		r = fill_one(f, g, base, cow, i, stats, err);
		if (r)
			return r;
	}
	return 0;
}

void rcow_filler_free(struct rcow_filler *f)
{
	rcow_buf_free(&f->buf);
	rcow_extent_list_free(&f->scratch);
}
