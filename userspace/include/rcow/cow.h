/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The local COW device, as the helper sees it: a block device (or, for
 * tests, a file) that fills are written into with O_DIRECT.
 *
 * The kernel names the device by major:minor.  rcow_cow_open_dev() opens
 * /dev/block/MAJ:MIN when it is the right node, and otherwise makes a
 * private node in a fresh directory under node_dir, opens it and removes it
 * again at once, so nothing is left behind even if the helper is killed.
 *
 * Writes must be aligned to the device's logical block size; buffers come
 * from rcow_buf (4096-aligned).  A write has reached the device (not a
 * cache of ours) when rcow_cow_pwrite() returns: with O_DIRECT the data
 * is in the device's queue-completed state, which is what FILL_DONE needs;
 * durability is the kernel's flush before its metadata write.
 */
#ifndef RCOW_COW_H
#define RCOW_COW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcow/err.h"

struct rcow_cow {
	int fd;
	char *name;		/* printable, e.g. "253:3" or a path */
	uint64_t size;		/* bytes */
	unsigned int lbs;	/* logical block size: I/O alignment */
	bool direct;		/* opened with O_DIRECT */
	bool is_blkdev;
};

/* Flags for rcow_cow_open_path(). */
#define RCOW_COW_ALLOW_BUFFERED	(1u << 0)	/* file systems without O_DIRECT (tests) */

/* Default directory for private device nodes. */
#define RCOW_COW_NODE_DIR "/run"

int rcow_cow_open_dev(uint32_t major, uint32_t minor, const char *node_dir,
		      struct rcow_cow **out, struct rcow_err *err);
int rcow_cow_open_path(const char *path, unsigned int flags, struct rcow_cow **out,
		       struct rcow_err *err);
void rcow_cow_close(struct rcow_cow *cow);

/* Round len up to the logical block size. */
size_t rcow_cow_io_len(const struct rcow_cow *cow, size_t len);

/*
 * Write len bytes from buf at byte offset; offset, len and buf must be
 * aligned (lbs, lbs, 4096) and the range inside the device.
 */
int rcow_cow_pwrite(struct rcow_cow *cow, const void *buf, size_t len, uint64_t offset,
		    struct rcow_err *err);

/*
 * Read len bytes at byte offset into buf, with the alignment rules of
 * rcow_cow_pwrite() (snapshot commit reads the frozen extents this way).
 */
int rcow_cow_pread(struct rcow_cow *cow, void *buf, size_t len, uint64_t offset,
		   struct rcow_err *err);

/*
 * Make [offset, offset + len) read as zeroes without sending data
 * (fallocate punch-hole, then zero-range).  Returns -EOPNOTSUPP, with no
 * message, when the device cannot: the caller then writes zeroes.
 */
int rcow_cow_zero(struct rcow_cow *cow, uint64_t offset, size_t len, struct rcow_err *err);

/*
 * An I/O buffer, 4096-aligned, grown on demand: from the heap
 * (rcow_buf_reserve()), or a mapping of its own (rcow_buf_map(), for
 * buffers kept and reused, outside the heap so that they never fragment
 * it).  rcow_buf_free() releases either kind.
 */
struct rcow_buf {
	void *p;
	size_t cap;
	bool mapped;
};

int rcow_buf_reserve(struct rcow_buf *buf, size_t size, struct rcow_err *err);
/* Replace buf by a fresh anonymous mapping of size bytes (a multiple of 4096). */
int rcow_buf_map(struct rcow_buf *buf, size_t size, struct rcow_err *err);
void rcow_buf_free(struct rcow_buf *buf);

#endif
