/* SPDX-License-Identifier: GPL-2.0 */
/*
 * spool.h - where remote-cowd keeps the frozen content of extents a guest
 * write is about to overwrite during a snapshot commit (PRESERVE), until
 * the upload has sent it to the target.
 *
 * One file per device and commit generation, DIR/dev<ID>-gen<GEN>.spool:
 * a file header naming the device (id, generation, geometry, name), then
 * fixed-size slots, each a 64-byte header (magic, generation, extent,
 * sequence, length, crc32c of the data, crc32c of the header) followed by
 * extent_bytes of data.  A slot is written with one pwritev(), header and
 * data together, and becomes visible to spool_get() only once written.  A
 * daemon restarted during the commit reopens the file and rebuilds its
 * index from the slots whose header and data checksums match (the newest
 * sequence wins for an extent); torn or stale slots become free.  No
 * fsync: the commit lives only as long as the kernel's table, so the spool
 * must survive the daemon's process, not the host.
 *
 * Space: at most max_bytes of slots (spool_max); a slot freed by
 * spool_release() is reused.  Full: spool_put() fails with -ENOSPC.
 *
 * Thread-safe: every call takes the spool's own lock, and none calls back.
 * The file I/O of spool_put() and spool_get() runs outside the lock on
 * slots they own.
 */
#ifndef RCOWD_SPOOL_H
#define RCOWD_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "rcow/err.h"

struct spool;

struct spool_id {
	uint32_t dev_id;
	uint64_t gen;
	uint32_t extent_sectors;
	uint64_t nr_extents;
	const char *dm_name;
};

/*
 * Open the spool of a commit in dir (made 0700 if missing): the slots of
 * an existing file of the same device, generation and geometry are taken
 * up again (a restart); any other file of that name is replaced, and
 * files of the same device id with another generation are removed.
 */
int spool_open(const char *dir, const struct spool_id *id, uint64_t max_bytes,
	       struct spool **out, struct rcow_err *err);
/* Close; remove the file too unless keep (the daemon exits mid-commit). */
void spool_close(struct spool *sp, bool keep);

/* Keep len bytes (at most extent_bytes) as extent ext's content.  0, -ENOSPC (full) or -errno. */
int spool_put(struct spool *sp, uint64_t ext, const void *data, uint32_t len, struct rcow_err *err);
/*
 * spool_put() that takes a slot only while fewer than limit slots are taken
 * (being written, held or dead), checked under the lock: -EBUSY otherwise.
 * For copies nobody waits on, which must leave the rest to those that do.
 */
int spool_put_below(struct spool *sp, uint64_t ext, const void *data, uint32_t len,
		    uint64_t limit, struct rcow_err *err);
/*
 * Extent ext's content into buf (cap bytes); *len its length.  -ENOENT if
 * not spooled, -EBADMSG if its checksum no longer matches.
 */
int spool_get(struct spool *sp, uint64_t ext, void *buf, uint32_t cap, uint32_t *len,
	      struct rcow_err *err);
bool spool_has(struct spool *sp, uint64_t ext);
/* ext is uploaded (or its slot must not be used): free its slot. */
void spool_release(struct spool *sp, uint64_t ext);

uint64_t spool_count(struct spool *sp);		/* extents held */
uint64_t spool_taken(struct spool *sp);		/* slots not free (held, being written, dead) */
uint64_t spool_slots(const struct spool *sp);	/* slots spool_max allows */
uint64_t spool_max(const struct spool *sp);
const char *spool_path(const struct spool *sp);
/* Extents held, in no particular order, into v (up to max); returns how many. */
uint64_t spool_list(struct spool *sp, uint64_t *v, uint64_t max);

#endif
