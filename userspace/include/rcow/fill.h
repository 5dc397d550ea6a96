/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fill engine: copy extents of a device from its base into its COW
 * device, as asked by a FAULT.
 *
 * Geometry comes from the kernel's device attributes.  Extent i covers
 * device bytes [i * E, min((i + 1) * E, dev_sectors * 512)) with
 * E = extent_sectors * 512 and lives on the COW device at byte
 * (data_offset + i * extent_sectors) * 512.  Ranges of the base that read
 * as zeroes are not transferred: a wholly zero extent is zeroed on the COW
 * device with fallocate where it can, else written as zeroes.
 */
#ifndef RCOW_FILL_H
#define RCOW_FILL_H

#include <stdint.h>

#include "rcow/base.h"
#include "rcow/cow.h"
#include "rcow/err.h"

struct rcow_geom {
	uint32_t extent_sectors;
	uint64_t nr_extents;
	uint64_t data_offset;	/* sectors */
	uint64_t dev_sectors;
};

struct rcow_fill_stats {
	uint64_t extents;	/* extents filled */
	uint64_t bytes_read;	/* fetched from the base */
	uint64_t bytes_zero;	/* zero-filled without fetching */
	uint64_t bytes_written;	/* written to the COW device (incl. zeroing) */
};

/* Reusable scratch state of one filling thread. */
struct rcow_filler {
	struct rcow_buf buf;
	struct rcow_extent_list scratch;
	bool no_zero_ops;	/* always write zeroes (tests) */
};

/* Check that a geometry is self-consistent.  0 or -EINVAL with a message. */
int rcow_geom_check(const struct rcow_geom *g, struct rcow_err *err);

/* Bytes of extent i on the device (the last one may be short); 0 if out of range. */
uint64_t rcow_geom_extent_bytes(const struct rcow_geom *g, uint64_t i);

/* Fill extents [first, first + count); stops at the first failure. */
int rcow_fill_range(struct rcow_filler *f, const struct rcow_geom *g, struct rcow_base *base,
		    struct rcow_cow *cow, uint64_t first, uint64_t count,
		    struct rcow_fill_stats *stats, struct rcow_err *err);

void rcow_filler_free(struct rcow_filler *f);

#endif
