/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Base sources: where missing extents are read from.
 *
 * One operations table per kind of source, each in its own file:
 *   file-ops.c  local image file or block device (holes: SEEK_DATA/SEEK_HOLE)
 *   nbd-ops.c   NBD server through libnbd (holes: base:allocation block status)
 *   null-ops.c  reads as zeroes, one big hole (tests)
 * base.c picks the table from a parsed URI.  The fill engine (fill.c) only
 * ever talks to struct rcow_base through these operations.
 *
 * Offsets and lengths are bytes in the base image.  Reading past the end
 * of the base yields zeroes, and block status reports that part as a hole,
 * so a device a little longer than its base behaves like zero padding.
 * A handle is used by one thread at a time.
 */
#ifndef RCOW_BASE_H
#define RCOW_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcow/err.h"
#include "rcow/uri.h"

struct rcow_cred;		/* rcow/config.h */
struct nbd_handle;		/* libnbd.h */

/* One run of the base: data, or reads as zeroes (a hole). */
struct rcow_extent {
	uint64_t offset;
	uint64_t length;
	bool zero;
};

/* A growable list of runs, filled by block_status. */
struct rcow_extent_list {
	struct rcow_extent *v;
	size_t n, cap;
};

struct rcow_base;

struct rcow_base_ops {
	const char *name;
	/* Open the source named by uri; set base->size.  0 or -errno. */
	int (*open)(struct rcow_base *base, const struct rcow_uri *uri, struct rcow_err *err);
	/* Read exactly len bytes at offset (within base->size).  0 or -errno. */
	int (*pread)(struct rcow_base *base, void *buf, size_t len, uint64_t offset,
		     struct rcow_err *err);
	/*
	 * Append runs describing [offset, offset + len) (within base->size) to
	 * list, in order and contiguous; they may cover less than asked only
	 * if at least one run is appended (callers loop).  Sources that cannot
	 * tell report data.  0 or -errno.
	 */
	int (*block_status)(struct rcow_base *base, uint64_t offset, uint64_t len,
			    struct rcow_extent_list *list, struct rcow_err *err);
	/* Release everything; base->priv is invalid afterwards. */
	void (*close)(struct rcow_base *base);
};

extern const struct rcow_base_ops rcow_file_ops;
extern const struct rcow_base_ops rcow_nbd_ops;
extern const struct rcow_base_ops rcow_null_ops;

struct rcow_base {
	const struct rcow_base_ops *ops;
	char *name;		/* printable: the URI */
	uint64_t size;		/* bytes */
	void *priv;		/* the ops' own state */
	/* Credentials for ops->open (TLS for nbds://); NULL after open. */
	const struct rcow_cred *cred;
};

/* Open the base named by a URI string (parses it first).  *out on success. */
int rcow_base_open(const char *uri, struct rcow_base **out, struct rcow_err *err);

/*
 * The same, with credentials from the configuration file (may be NULL):
 * what an nbds:// base needs to connect.  Only used while opening.
 */
int rcow_base_open_cred(const char *uri, const struct rcow_cred *cred, struct rcow_base **out,
			struct rcow_err *err);

/*
 * Give a libnbd handle the TLS credentials of cred (may be NULL), before
 * it connects: the synchronous source here and remote-cowd's own NBD
 * engine both use it.  0, or -1 with libnbd's error set.
 */
int rcow_nbd_set_cred(struct nbd_handle *h, const struct rcow_cred *cred);

/* Open with an explicit table (tests, null source).  uri may be NULL for null. */
int rcow_base_open_ops(const struct rcow_base_ops *ops, const struct rcow_uri *uri,
		       const char *name, struct rcow_base **out, struct rcow_err *err);

/* Null source of the given size (reads as zeroes). */
int rcow_base_open_null(uint64_t size, struct rcow_base **out, struct rcow_err *err);

void rcow_base_close(struct rcow_base *base);

/*
 * Read [offset, offset + len) into buf, zero-filling holes and whatever
 * lies past base->size without reading it.  Adds the bytes actually read to
 * *read_bytes and the bytes zero-filled to *zero_bytes (either may be NULL).
 */
int rcow_base_read_sparse(struct rcow_base *base, void *buf, size_t len, uint64_t offset,
			  struct rcow_extent_list *scratch, uint64_t *read_bytes,
			  uint64_t *zero_bytes, struct rcow_err *err);

/* Extent lists. */
int rcow_extent_list_add(struct rcow_extent_list *list, uint64_t offset, uint64_t length,
			 bool zero, struct rcow_err *err);
void rcow_extent_list_reset(struct rcow_extent_list *list);
void rcow_extent_list_free(struct rcow_extent_list *list);

/* Fallback block_status for sources with no hole information: all data. */
int rcow_block_status_all_data(struct rcow_base *base, uint64_t offset, uint64_t len,
			       struct rcow_extent_list *list, struct rcow_err *err);

#endif
