// SPDX-License-Identifier: GPL-2.0
/*
 * Copyright (C) 2026 The dm-remote-cow authors.
 *
 * remote-cow: a local copy-on-write device over a remote base image.
 *
 * The virtual device is the base image (remote, read-only, never written)
 * overlaid by a local COW device whose data area maps 1:1 onto the virtual
 * device.  The unit of fetching and of tracking is the extent (a power of
 * two from 4 KiB to 4 MiB).  An extent is PRESENT once the COW device holds
 * valid data for it: then every bio to it is remapped to the COW device
 * from the map function, without a lock, an allocation or userspace.  A
 * bio that spans several extents, all present, is remapped whole (so large
 * sequential I/O costs what it costs on dm-linear); otherwise the map
 * function accepts only its part in the first extent, dm sends the rest
 * again, and from there on the bio lies inside one extent.
 *
 * A bio to a missing extent is deferred to the worker, which keeps one
 * struct rcow_pending per missing extent that has I/O waiting on it:
 *
 *  - a write covering the whole extent needs no data from the base: it is
 *    issued at once, and other bios to the extent wait until it completes
 *    and the extent is PRESENT, so no reader can see base data racing over
 *    new data;
 *  - anything else becomes a fault: one pending per extent, whatever the
 *    number of bios waiting.  The helper copies the extent from the base
 *    into the COW device and answers FILL_DONE; the extent becomes PRESENT
 *    and the waiting bios are remapped.
 *
 * Faults go to the helper in runs: one FAULT message names a run of
 * adjacent extents whose faults are waiting to be sent (a bio spanning
 * extents, read-ahead, a HYDRATE range), up to RCOW_MAX_RUN_BYTES.  The
 * run's cookie is given to each of its pendings when it is sent, so the
 * state stays per extent: FILL_DONE may answer the whole run or any
 * sub-range of it (the helper reports a failed part with its own status),
 * each extent of the run becomes PRESENT or fails its bios on its own, and
 * a write to one extent of a run in flight waits on that extent's pending
 * like any other.
 *
 * Priority.  A run whose extents have a bio waiting is sent flagged
 * RCOW_FAULT_F_WAITING; one without (a HYDRATE range) is speculative, and
 * the helper fills it at its own pace (a streaming rate limit).  When a
 * bio then comes to wait on an extent of such a run already sent, the
 * extent is marked "promote" and the worker sends PROMOTE for it under
 * the run's cookie, once per extent and send, so that the helper fills it
 * ahead of its speculative work: a guest never waits for the stream.
 *
 * Faults are kept until answered.  With no helper registered they wait in
 * the "unsent" list and go out when one registers; when the helper's socket
 * closes, the faults it had been sent move back there.  So I/O to missing
 * extents waits for as long as it takes (like multipath's queue_if_no_path)
 * unless fault_timeout is set, after which the waiting bios fail with EIO
 * while the fault itself stays outstanding.  That matters: a helper may
 * still be writing the extent, so the extent must not be handed to a later
 * whole-extent write until that fault is answered.
 *
 * Metadata: see dm-remote-cow-metadata.c.  PRESENT bits are set in memory
 * when a fill or a whole-extent write completes; the worker commits them
 * every second, on an empty flush bio, and before a FUA write to an
 * extent whose PRESENT bit is not yet on disk may be issued or completed.
 * Change tracking is exact (as in dm-era): a write reaches the COW device
 * only once its extent is durably WRITTEN and in DIRTY_COMMIT.  The map
 * function lets it through when the durable copy of DIRTY_COMMIT says so;
 * otherwise the worker marks the bits, commits and then issues it.  A
 * failed commit puts the device in "fail" mode (writes and flushes fail,
 * reads of present extents go on) and raises a dm event.
 *
 * Snapshot commit: see dm-remote-cow-commit.c.  While one uploads, a write
 * to a frozen extent not yet uploaded or preserved waits in the worker.
 *
 * Live migration: see dm-remote-cow-migrate.c.  end_io marks the extents
 * of every completed write in the migration's change set (remap() records
 * them in the per-bio data while the bio's position is still the
 * device's); once `migrate finish` fenced the device, every write fails
 * in map, or in the worker for one that passed map before.
 *
 * Destination of a live migration (the "incoming" feature): the
 * constructor sets the superblock's incoming flag durably, and map holds
 * every bio (trimmed to its first extent, as for the one-extent path) on
 * rc->incoming, failed by the waker after fault_timeout.  The helper
 * writes the migrated extents into the data area itself and names them
 * (MIGRATE_FILL): the worker marks them PRESENT, WRITTEN and changed.
 * MIGRATE_COMPLETE has the worker commit, clear the flag and hand the
 * held bios to the one-extent path.  A table without the feature refuses
 * a COW device still flagged incoming.
 *
 * Post-copy: MIGRATE_REMOTE names the extents still only on the source
 * (rc->incoming_remote, in memory); MIGRATE_POSTCOPY has the worker
 * commit and serve (RCOW_F_POSTCOPY: map stops holding, the held bios go
 * to the worker) while the superblock stays flagged, so a crash or reload
 * leaves a device that only an incoming table loads, held, with an empty
 * remote set.  A fault of a remote extent is sent flagged
 * RCOW_FAULT_F_REMOTE, and take_run() never lets a run mix remote and
 * other extents: the helper fetches the former from the source, never
 * from the base.  An extent leaves the set where it becomes PRESENT (a
 * fill, which the worker also marks WRITTEN, or a whole-extent write);
 * a discard of a remote extent, missing, ends without effect.
 * MIGRATE_COMPLETE waits for the set to be empty.
 *
 * Suspend: a noflush suspend pushes the bios waiting on faults back to dm,
 * which reissues them after resume.  A flush suspend waits for them while a
 * helper is connected (bounded by fault_timeout when set; the fault_timeout
 * message shortens it at run time) and fails them if no helper is, as
 * multipath does without paths.  Then, since the helper writes fills into
 * the COW device itself, postsuspend asks it to stop (QUIESCE, see
 * dm-remote-cow-netlink.c) before the last commit and before any next
 * table may resume over the same COW device; the faults left are dropped
 * or resent after resume under new cookies.  Between ctr and the first
 * resume, and from postsuspend to resume, no fault goes out.  The last
 * commit of a suspend sets the superblock's clean flag; resume clears it.
 *
 * A read-only table never writes the COW device: not even fills, so
 * reads of missing extents fail.
 */

#include <linux/blkdev.h>
#include <linux/ctype.h>
#include <linux/jiffies.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-remote-cow.h"

#define DM_MSG_PREFIX "remote-cow"

#define RCOW_MIN_EXTENT_SECTORS		8
#define RCOW_MAX_EXTENT_SECTORS		8192
#define RCOW_MAX_EXTENTS		BIT_ULL(32)
#define RCOW_MAX_FAULT_TIMEOUT_MS	(24U * 3600 * 1000)
#define RCOW_COMMIT_PERIOD		HZ
#define RCOW_RESEND_DELAY		(HZ / 50)
#define RCOW_MIN_PENDING		64
#define RCOW_QUIESCE_TIMEOUT_MS		10000
/* Largest run of extents one FAULT names (at least one extent). */
#define RCOW_MAX_RUN_BYTES		SZ_1M

enum rcow_pending_kind {
	RCOW_PE_FAULT,		/* waiting for the helper's FILL_DONE */
	RCOW_PE_WRITE,		/* a whole-extent write is in flight */
};

/*
 * One per extent with I/O waiting on it (rc->lock).  A fault on the sent
 * list carries the cookie of the FAULT run that named it and is hashed
 * under it; an unsent one has cookie 0 and is not in the cookie hash.
 */
struct rcow_pending {
	struct rcow *rc;
	struct hlist_node extent_node;
	struct hlist_node cookie_node;	/* sent faults only */
	struct list_head list;		/* unsent or sent; faults only */
	u64 extent;
	u64 cookie;			/* of the run it was sent in, or 0 */
	enum rcow_pending_kind kind;
	bool sent;			/* on the sent list: the helper has it */
	bool promote;			/* sent with no waiter; one came since */
	struct bio_list waiters;
};

struct rcow_bio {
	u64 extent;
	unsigned long queued;		/* jiffies, for fault_timeout */
	struct rcow_pending *pe;	/* whole-extent write */
	bool counted;			/* in rc->wr_inflight */
	bool wrote;			/* a write remapped to the COW device */
	u64 last;			/* ... its last extent (extent: first) */
	struct rcow_mirror_hold mirror;	/* see the migrate file */
	bio_end_io_t *saved_end_io;
	void *saved_private;
};

static struct rcow_bio *rcow_bio(struct bio *bio)
{
	return dm_per_bio_data(bio, sizeof(struct rcow_bio));
}

struct rcow_mirror_hold *rcow_bio_mirror(struct bio *bio)
{
	return &rcow_bio(bio)->mirror;
}

/* The dm name, as the operator knows the device, for log lines. */
static const char *rcow_name(struct rcow *rc)
{
	return rc->name;
}

static void refresh_name(struct rcow *rc)
{
	if (dm_copy_name_and_uuid(dm_table_get_md(rc->ti->table), rc->name,
				  NULL))
		strscpy(rc->name, dm_table_device_name(rc->ti->table),
			sizeof(rc->name));
}

static enum rcow_mode rcow_mode(struct rcow *rc)
{
	return READ_ONCE(rc->mode);
}

static void wake_worker(struct rcow *rc)
{
	queue_work(rc->wq, &rc->worker);
}

/* Process context only: raises the dm event from the worker. */
static void set_mode(struct rcow *rc, enum rcow_mode mode);

void rcow_set_failed(struct rcow *rc)
{
	set_mode(rc, RCOW_MODE_FAIL);
}

static void set_mode(struct rcow *rc, enum rcow_mode mode)
{
	static const char * const names[] = { "rw", "ro", "fail" };
	enum rcow_mode old = xchg(&rc->mode, mode);

	if (old == mode)
		return;
	if (mode == RCOW_MODE_FAIL)
		DMERR("%s: metadata mode %s -> fail: writes and flushes now fail",
		      rcow_name(rc), names[old]);
	else
		DMINFO("%s: metadata mode %s -> %s", rcow_name(rc),
		       names[old], names[mode]);
	set_bit(RCOW_F_EVENT, &rc->flags);
	wake_worker(rc);
}

/*
 * Extent helpers
 */

static u64 bio_extent(struct rcow *rc, struct bio *bio)
{
	return dm_target_offset(rc->ti, bio->bi_iter.bi_sector) >>
	       rc->extent_shift;
}

static sector_t extent_len(struct rcow *rc, u64 extent)
{
	sector_t start = extent << rc->extent_shift;

	return min_t(sector_t, rc->extent_sectors, rc->ti->len - start);
}

static bool bio_covers_extent(struct rcow *rc, struct bio *bio, u64 extent)
{
	sector_t off = dm_target_offset(rc->ti, bio->bi_iter.bi_sector);

	return bio_op(bio) == REQ_OP_WRITE &&
	       off == extent << rc->extent_shift &&
	       bio_sectors(bio) == extent_len(rc, extent);
}

/*
 * Change tracking.  A write (or discard) reaches the COW device only once
 * its extents are durably WRITTEN and in DIRTY_COMMIT (so after a crash
 * the sets hold every acknowledged write), and not while a snapshot commit
 * holds the extent.  Worker only: DIRTY_COMMIT has a single writer.  The
 * two sets live in their blocks on the COW device; a bit set here waits
 * on a short list for the next commit (rcow_md_set(), which may sleep).
 * A durable DIRTY_COMMIT bit means a durable WRITTEN bit (never cleared).
 */
static void mark_written(struct rcow *rc, u64 extent)
{
	if (rcow_md_dirty_durable(rc->md, extent))
		return;
	rcow_md_set(rc->md, RCOW_BITMAP_WRITTEN, extent);
	rcow_md_set(rc->md, RCOW_BITMAP_DIRTY_COMMIT, extent);
}

static bool write_ready(struct rcow *rc, u64 extent)
{
	return rcow_md_dirty_durable(rc->md, extent) &&
	       !rcow_commit_held(rc, extent);
}

/* The last extent @bio touches. */
static u64 bio_last_extent(struct rcow *rc, struct bio *bio)
{
	return (dm_target_offset(rc->ti, bio_end_sector(bio)) - 1) >>
	       rc->extent_shift;
}

/*
 * From map: true if the write to present extents [first, last] may go
 * straight to the COW device; it is then counted in flight (a freeze
 * waits for it).  The RCU read section pairs with the freeze's
 * synchronize_rcu(): a write that saw the gate open is counted before the
 * freeze looks at the count.
 */
static bool map_write_ready(struct rcow *rc, struct bio *bio, u64 first,
			    u64 last)
{
	bool ready = true;
	u64 e;

	rcu_read_lock();
	if (unlikely(test_bit(RCOW_F_WRITE_GATE, &rc->flags) ||
		     test_bit(RCOW_F_FENCED, &rc->flags)))
		ready = false;
	/* The gate before the held set: see the freeze (do_freeze()). */
	smp_rmb();
	for (e = first; ready && e <= last; e++)
		ready = write_ready(rc, e);
	if (ready) {
		rcow_bio(bio)->counted = true;
		atomic_inc(&rc->wr_inflight);
	}
	rcu_read_unlock();
	return ready;
}

/* Worker: count a write it issues (no gate: the freeze is the worker's). */
static void count_write(struct rcow *rc, struct bio *bio)
{
	rcow_bio(bio)->counted = true;
	atomic_inc(&rc->wr_inflight);
}

static void write_landed(struct rcow *rc, struct bio *bio)
{
	struct rcow_bio *rb = rcow_bio(bio);

	if (!rb->counted)
		return;
	rb->counted = false;
	if (atomic_dec_and_test(&rc->wr_inflight) &&
	    wq_has_sleeper(&rc->drain_wq))
		wake_up(&rc->drain_wq);
}

/*
 * Completion of a write remapped to the COW device: its extents go into
 * the migration's change set (and, mirroring, it is recorded for holding)
 * before write_landed(), so that a drained write has marked them.
 */
static void note_written(struct rcow *rc, struct bio *bio)
{
	struct rcow_bio *rb = rcow_bio(bio);

	if (!rb->wrote)
		return;
	rb->wrote = false;
	rcow_migrate_written(rc, &rb->mirror, rb->extent, rb->last);
}

/*
 * Called from map only.  Returns true when every extent of a bio that
 * spans several is present and it needs nothing but a remap: reads, and
 * writes without FUA while the metadata is writable.  Anything else is
 * trimmed to its first extent with dm_accept_partial_bio() and takes the
 * one-extent path.
 */
static bool map_span(struct rcow *rc, struct bio *bio, u64 first, bool *more)
{
	sector_t off = dm_target_offset(rc->ti, bio->bi_iter.bi_sector);
	sector_t end_first = (first + 1) << rc->extent_shift;
	u64 last, e;

	if (off + bio_sectors(bio) <= end_first)
		return false;
	last = (off + bio_sectors(bio) - 1) >> rc->extent_shift;
	if (op_is_write(bio_op(bio)) &&
	    ((bio->bi_opf & REQ_FUA) || rcow_mode(rc) != RCOW_MODE_RW))
		goto trim;
	for (e = first; e <= last; e++)
		if (!rcow_md_test(rc->md, RCOW_BITMAP_PRESENT, e))
			goto trim;
	if (op_is_write(bio_op(bio)) &&
	    !map_write_ready(rc, bio, first, last))
		goto trim;
	return true;
trim:
	dm_accept_partial_bio(bio, end_first - off);
	*more = true;
	return false;
}

static void remap(struct rcow *rc, struct bio *bio)
{
	struct rcow_bio *rb = rcow_bio(bio);

	if (op_is_write(bio_op(bio)) && bio_sectors(bio)) {
		/* Where it writes, for end_io (the migration's change set). */
		rb->wrote = true;
		rb->extent = bio_extent(rc, bio);
		rb->last = bio_last_extent(rc, bio);
	}
	bio_set_dev(bio, rc->cow_dev->bdev);
	bio->bi_iter.bi_sector = rc->data_offset +
		dm_target_offset(rc->ti, bio->bi_iter.bi_sector);
}

static u32 hash_u64(u64 v)
{
	return hash_64(v, RCOW_HASH_BITS);
}

/* rc->lock held. */
static struct rcow_pending *find_extent(struct rcow *rc, u64 extent)
{
	struct rcow_pending *pe;

	hlist_for_each_entry(pe, &rc->extent_hash[hash_u64(extent)],
			     extent_node)
		if (pe->extent == extent)
			return pe;
	return NULL;
}

/* rc->lock held. */
static struct rcow_pending *find_cookie(struct rcow *rc, u64 cookie)
{
	struct rcow_pending *pe;

	hlist_for_each_entry(pe, &rc->cookie_hash[hash_u64(cookie)],
			     cookie_node)
		if (pe->cookie == cookie)
			return pe;
	return NULL;
}

/* rc->lock held.  The fault of @extent, if it waits to be sent. */
static struct rcow_pending *find_unsent(struct rcow *rc, u64 extent)
{
	struct rcow_pending *pe = find_extent(rc, extent);

	return pe && pe->kind == RCOW_PE_FAULT && !pe->sent ? pe : NULL;
}

/* rc->lock held.  The fault of @extent, if it was sent in run @cookie. */
static struct rcow_pending *find_in_run(struct rcow *rc, u64 extent,
					u64 cookie)
{
	struct rcow_pending *pe = find_extent(rc, extent);

	return pe && pe->kind == RCOW_PE_FAULT && pe->sent &&
	       pe->cookie == cookie ? pe : NULL;
}

/* rc->lock held.  The helper no longer has @pe: back to cookie 0. */
static void unsend(struct rcow_pending *pe)
{
	hlist_del(&pe->cookie_node);
	pe->sent = false;
	pe->promote = false;
	pe->cookie = 0;
}

/* rc->lock held.  Unhashes @pe; the caller frees it. */
static void remove_pending(struct rcow *rc, struct rcow_pending *pe)
{
	hlist_del(&pe->extent_node);
	if (pe->kind == RCOW_PE_FAULT) {
		if (pe->sent)
			unsend(pe);
		list_del(&pe->list);
		rc->nr_faults--;
	}
}

/* rc->lock held; @pe freshly allocated.  Its cookie comes when it is sent. */
static void add_fault(struct rcow *rc, struct rcow_pending *pe, u64 extent)
{
	pe->rc = rc;
	pe->extent = extent;
	pe->kind = RCOW_PE_FAULT;
	pe->sent = false;
	pe->promote = false;
	pe->cookie = 0;
	bio_list_init(&pe->waiters);
	hlist_add_head(&pe->extent_node, &rc->extent_hash[hash_u64(extent)]);
	list_add_tail(&pe->list, &rc->unsent);
	rc->nr_faults++;
}

static void end_bios(struct bio_list *bios, blk_status_t status)
{
	struct bio *bio;

	while ((bio = bio_list_pop(bios))) {
		bio->bi_status = status;
		bio_endio(bio);
	}
}

/*
 * Post-copy: @extent became PRESENT; if it was still only on the source,
 * it leaves the remote set.  Any context.  True if it was remote.
 */
static bool leave_remote(struct rcow *rc, u64 extent)
{
	if (!rc->incoming_remote ||
	    !test_and_clear_bit(extent, rc->incoming_remote))
		return false;
	atomic64_dec(&rc->remote_left);
	return true;
}

/* Post-copy: a fault of @extent must go to the source, not the base. */
static bool is_remote(struct rcow *rc, u64 extent)
{
	return rc->incoming_remote && test_bit(extent, rc->incoming_remote);
}

/*
 * Issuing bios to present extents
 */

static void defer_for_commit(struct rcow *rc, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&rc->lock, flags);
	bio_list_add(&rc->commit_bios, bio);
	spin_unlock_irqrestore(&rc->lock, flags);
	wake_worker(rc);
}

static void defer_bio(struct rcow *rc, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&rc->lock, flags);
	bio_list_add(&rc->deferred, bio);
	spin_unlock_irqrestore(&rc->lock, flags);
	wake_worker(rc);
}

/* FUA promises the data survives a crash: so must PRESENT. */
static bool fua_needs_commit(struct rcow *rc, struct bio *bio, u64 extent)
{
	return unlikely(bio->bi_opf & REQ_FUA) &&
	       !rcow_md_present_durable(rc->md, extent);
}

/*
 * Map a bio to a present extent.  Returns true if the bio was remapped and
 * should be submitted; false if it was taken over (deferred or ended).
 */
static bool map_present(struct rcow *rc, struct bio *bio, u64 extent)
{
	if (op_is_write(bio_op(bio))) {
		if (unlikely(rcow_mode(rc) != RCOW_MODE_RW)) {
			bio_io_error(bio);
			return false;
		}
		if (!map_write_ready(rc, bio, extent, extent)) {
			defer_bio(rc, bio);
			return false;
		}
		if (fua_needs_commit(rc, bio, extent)) {
			write_landed(rc, bio);
			defer_for_commit(rc, bio);
			return false;
		}
	}
	remap(rc, bio);
	return true;
}

/*
 * Worker: true if a snapshot commit holds one of the extents of write
 * @bio; the bio then waits for that extent's PRESERVE (taken over).
 */
static bool hold_if_frozen(struct rcow *rc, struct bio *bio)
{
	u64 e = rcow_bio(bio)->extent, last = bio_last_extent(rc, bio);

	if (!test_bit(RCOW_F_HOLDING, &rc->flags))
		return false;
	for (; e <= last; e++) {
		if (rcow_commit_held(rc, e)) {
			rcow_commit_hold(rc, bio, e);
			return true;
		}
	}
	return false;
}

/*
 * Worker: submit a bio it took over.  REQ_NOWAIT (io_uring, RWF_NOWAIT)
 * promised that map would not block, and map did not: it deferred the
 * bio.  Here the submitter is long gone; the lower device may make the
 * worker wait rather than fail the bio with BLK_STS_AGAIN after its
 * extent was marked.
 */
static void worker_submit(struct bio *bio)
{
	bio->bi_opf &= ~REQ_NOWAIT;
	dm_submit_bio_remap(bio, NULL);
}

/*
 * Worker: a bio to present extents.  A write (or discard) waits while a
 * commit holds one of its extents, and for a commit when one of them is
 * not yet durably recorded as changed.
 */
static void issue_present(struct rcow *rc, struct bio *bio, u64 extent)
{
	u64 e, last;
	bool commit = false;

	if (op_is_write(bio_op(bio))) {
		if (unlikely(rcow_mode(rc) != RCOW_MODE_RW) ||
		    rcow_migrate_fenced(rc, bio)) {
			bio_io_error(bio);
			return;
		}
		if (hold_if_frozen(rc, bio))
			return;
		last = bio_last_extent(rc, bio);
		for (e = extent; e <= last; e++) {
			if (!rcow_md_dirty_durable(rc->md, e)) {
				mark_written(rc, e);
				commit = true;
			}
		}
		if (commit || fua_needs_commit(rc, bio, extent)) {
			defer_for_commit(rc, bio);
			return;
		}
		count_write(rc, bio);
	}
	remap(rc, bio);
	worker_submit(bio);
}

/*
 * Whole-extent writes to missing extents
 */

static void full_write_endio(struct bio *bio)
{
	struct rcow_bio *rb = rcow_bio(bio);
	struct rcow_pending *pe = rb->pe;
	struct rcow *rc = pe->rc;
	struct bio_list waiters;
	unsigned long flags;
	bool commit = false;

	bio->bi_end_io = rb->saved_end_io;
	bio->bi_private = rb->saved_private;
	rb->pe = NULL;

	if (!bio->bi_status) {
		rcow_md_set(rc->md, RCOW_BITMAP_PRESENT, pe->extent);
		leave_remote(rc, pe->extent);
		/* Marked written by the worker; durable once committed. */
		commit = (bio->bi_opf & REQ_FUA) ||
			 !rcow_md_dirty_durable(rc->md, pe->extent);
		/* Not at end_io: it may wait for a commit after landing. */
		note_written(rc, bio);
	}
	rb->wrote = false;
	write_landed(rc, bio);

	spin_lock_irqsave(&rc->lock, flags);
	remove_pending(rc, pe);
	bio_list_init(&waiters);
	bio_list_merge(&waiters, &pe->waiters);
	/* Present now (or faulted in afresh if the write failed). */
	bio_list_merge(&rc->deferred, &waiters);
	if (commit)
		bio_list_add(&rc->fua_done, bio);
	spin_unlock_irqrestore(&rc->lock, flags);

	mempool_free(pe, &rc->pending_pool);
	wake_worker(rc);
	if (!commit)
		bio_endio(bio);
}

static void issue_full_write(struct rcow *rc, struct bio *bio,
			     struct rcow_pending *pe)
{
	struct rcow_bio *rb = rcow_bio(bio);

	rb->pe = pe;
	rb->saved_end_io = bio->bi_end_io;
	rb->saved_private = bio->bi_private;
	bio->bi_end_io = full_write_endio;
	mark_written(rc, pe->extent);
	count_write(rc, bio);
	remap(rc, bio);
	worker_submit(bio);
}

/*
 * The worker
 */

static void process_missing(struct rcow *rc, struct bio *bio, u64 extent)
{
	struct rcow_pending *pe, *new = NULL;

	if (rcow_migrate_fenced(rc, bio)) {
		bio_io_error(bio);
		return;
	}
	for (;;) {
		spin_lock_irq(&rc->lock);
		if (rcow_md_test(rc->md, RCOW_BITMAP_PRESENT, extent)) {
			spin_unlock_irq(&rc->lock);
			break;
		}
		if (rc->requeue_io ||
		    (rc->suspending && !rcow_nl_helper_connected())) {
			/* See rcow_presuspend(). */
			bio->bi_status = rc->requeue_io ? BLK_STS_DM_REQUEUE :
							  BLK_STS_IOERR;
			spin_unlock_irq(&rc->lock);
			bio_endio(bio);
			goto out;
		}
		pe = find_extent(rc, extent);
		if (pe) {
			/* Sent with nothing waiting: the helper must hurry. */
			if (pe->kind == RCOW_PE_FAULT && pe->sent &&
			    bio_list_empty(&pe->waiters)) {
				pe->promote = true;
				set_bit(RCOW_F_PROMOTE, &rc->flags);
			}
			bio_list_add(&pe->waiters, bio);
			spin_unlock_irq(&rc->lock);
			goto out;
		}
		if (!new) {
			spin_unlock_irq(&rc->lock);
			new = mempool_alloc(&rc->pending_pool, GFP_NOIO);
			continue;
		}
		if (bio_covers_extent(rc, bio, extent) &&
		    rcow_mode(rc) == RCOW_MODE_RW) {
			new->rc = rc;
			new->extent = extent;
			new->kind = RCOW_PE_WRITE;
			bio_list_init(&new->waiters);
			hlist_add_head(&new->extent_node,
				       &rc->extent_hash[hash_u64(extent)]);
			spin_unlock_irq(&rc->lock);
			issue_full_write(rc, bio, new);
			return;
		}
		add_fault(rc, new, extent);
		bio_list_add(&new->waiters, bio);
		spin_unlock_irq(&rc->lock);
		return;
	}
	/* The extent became present meanwhile. */
	issue_present(rc, bio, extent);
out:
	if (new)
		mempool_free(new, &rc->pending_pool);
}

static void process_deferred_bios(struct rcow *rc)
{
	struct bio_list bios;
	struct bio *bio;
	struct blk_plug plug;

	bio_list_init(&bios);
	spin_lock_irq(&rc->lock);
	bio_list_merge(&bios, &rc->deferred);
	bio_list_init(&rc->deferred);
	spin_unlock_irq(&rc->lock);

	if (bio_list_empty(&bios))
		return;

	blk_start_plug(&plug);
	while ((bio = bio_list_pop(&bios))) {
		u64 extent = rcow_bio(bio)->extent;

		if (rcow_md_test(rc->md, RCOW_BITMAP_PRESENT, extent))
			issue_present(rc, bio, extent);
		else
			process_missing(rc, bio, extent);
	}
	blk_finish_plug(&plug);
}

static void process_commit(struct rcow *rc)
{
	struct bio_list flushes, fuas, done;
	struct bio *bio;
	blk_status_t status = BLK_STS_OK;
	int r = 0;

	bio_list_init(&flushes);
	bio_list_init(&fuas);
	bio_list_init(&done);
	spin_lock_irq(&rc->lock);
	bio_list_merge(&flushes, &rc->flush_bios);
	bio_list_init(&rc->flush_bios);
	bio_list_merge(&fuas, &rc->commit_bios);
	bio_list_init(&rc->commit_bios);
	bio_list_merge(&done, &rc->fua_done);
	bio_list_init(&rc->fua_done);
	spin_unlock_irq(&rc->lock);

	if (!test_and_clear_bit(RCOW_F_COMMIT, &rc->flags) &&
	    bio_list_empty(&flushes) && bio_list_empty(&fuas) &&
	    bio_list_empty(&done))
		return;

	switch (rcow_mode(rc)) {
	case RCOW_MODE_RW:
		if (!rc->loaded)
			break;
		r = rcow_md_commit(rc->md, false,
				   !bio_list_empty(&flushes) ||
				   !bio_list_empty(&fuas) ||
				   !bio_list_empty(&done));
		if (r) {
			set_mode(rc, RCOW_MODE_FAIL);
			status = BLK_STS_IOERR;
		}
		break;
	case RCOW_MODE_RO:
		break;
	case RCOW_MODE_FAIL:
		status = BLK_STS_IOERR;
		break;
	}

	end_bios(&flushes, status);
	end_bios(&done, status);
	while ((bio = bio_list_pop(&fuas))) {
		if (status) {
			bio->bi_status = status;
			bio_endio(bio);
			continue;
		}
		/*
		 * Checked again: a FUA write deferred by map may meet a
		 * freeze that came after its checks (a held extent, or
		 * DIRTY_COMMIT cleared since).
		 */
		issue_present(rc, bio, rcow_bio(bio)->extent);
	}
}

/* Worker: the held bios take the normal path; @serve: post-copy, else done. */
static void release_incoming(struct rcow *rc, bool serve)
{
	struct bio_list held;

	bio_list_init(&held);
	spin_lock_irq(&rc->lock);
	if (serve) {
		set_bit(RCOW_F_POSTCOPY, &rc->flags);
	} else {
		/* INCOMING first: map then never holds (see hold_incoming()). */
		clear_bit(RCOW_F_INCOMING, &rc->flags);
		clear_bit(RCOW_F_POSTCOPY, &rc->flags);
	}
	bio_list_merge(&held, &rc->incoming);
	bio_list_init(&rc->incoming);
	bio_list_merge(&rc->deferred, &held);
	spin_unlock_irq(&rc->lock);
	set_bit(RCOW_F_EVENT, &rc->flags);
	wake_worker(rc);
}

/*
 * Worker: MIGRATE_POSTCOPY.  The fills named before are committed; the
 * superblock stays flagged incoming until the completion.
 */
static void start_postcopy(struct rcow *rc)
{
	int r;

	if (!READ_ONCE(rc->postcopy_asked) ||
	    test_bit(RCOW_F_POSTCOPY, &rc->flags) ||
	    !test_bit(RCOW_F_INCOMING, &rc->flags) ||
	    rcow_mode(rc) != RCOW_MODE_RW)
		return;
	r = rcow_md_commit(rc->md, false, true);
	if (r) {
		DMERR("%s: incoming migration: cannot start post-copy (metadata write failed: %d)",
		      rcow_name(rc), r);
		set_mode(rc, RCOW_MODE_FAIL);
		return;
	}
	release_incoming(rc, true);
	DMINFO("%s: incoming migration in post-copy: %lld of %llu extents on the source",
	       rcow_name(rc), (long long)atomic64_read(&rc->remote_left),
	       READ_ONCE(rc->remote_total));
}

/*
 * Worker: the extents the helper filled for an incoming migration (or,
 * in post-copy, fetched from the source), then post-copy, then the
 * completion.  The worker marks them (it owns DIRTY_COMMIT).
 */
static void process_incoming(struct rcow *rc)
{
	u64 e = 0;
	int r;

	/* The bitmaps are read by the first resume. */
	if (!rc->incoming_fill || !rc->loaded)
		return;
	while ((e = find_next_bit(rc->incoming_fill, rc->nr_extents, e)) <
	       rc->nr_extents) {
		clear_bit(e, rc->incoming_fill);
		rcow_md_set(rc->md, RCOW_BITMAP_PRESENT, e);
		leave_remote(rc, e);
		mark_written(rc, e);
	}
	start_postcopy(rc);
	if (!READ_ONCE(rc->incoming_complete) ||
	    !test_bit(RCOW_F_INCOMING, &rc->flags))
		return;
	WRITE_ONCE(rc->incoming_complete, false);
	r = rcow_md_commit(rc->md, false, true);
	if (!r)
		r = rcow_md_set_incoming(rc->md, false);
	if (r) {
		DMERR("%s: incoming migration: cannot complete (metadata write failed: %d)",
		      rcow_name(rc), r);
		set_mode(rc, RCOW_MODE_FAIL);
		return;
	}
	release_incoming(rc, false);
	DMINFO("%s: incoming migration complete: %llu extents written; I/O flows",
	       rcow_name(rc), rcow_md_count(rc->md, RCOW_BITMAP_WRITTEN));
}

/* Most extents in one FAULT run of @rc. */
static u32 max_run(struct rcow *rc)
{
	u32 n = (RCOW_MAX_RUN_BYTES >> SECTOR_SHIFT) >> rc->extent_shift;

	return clamp_t(u32, n, 1, REMOTE_COW_MAX_RANGE);
}

/*
 * rc->lock held.  Takes the run of unsent faults around the oldest one:
 * the adjacent extents whose faults wait to be sent too, up to max_run(),
 * all still only on a post-copy source or none (a run is never part
 * remote).  They move to the sent list under a new cookie.  Returns the
 * run's length (0: nothing to send), its first extent, cookie and FAULT
 * flags.
 */
static u32 take_run(struct rcow *rc, u64 *first, u64 *cookie, u32 *flags)
{
	struct rcow_pending *pe;
	u32 n = 1, limit = max_run(rc);
	u64 start, e;
	bool remote;

	pe = list_first_entry_or_null(&rc->unsent, struct rcow_pending, list);
	if (!pe)
		return 0;
	start = pe->extent;
	/* Stable here: a remote extent with a fault leaves only on its fill. */
	remote = is_remote(rc, start);
	while (n < limit && start > 0 && find_unsent(rc, start - 1) &&
	       is_remote(rc, start - 1) == remote) {
		start--;
		n++;
	}
	while (n < limit && start + n < rc->nr_extents &&
	       find_unsent(rc, start + n) &&
	       is_remote(rc, start + n) == remote)
		n++;

	*first = start;
	*cookie = rcow_nl_new_cookie();
	*flags = remote ? RCOW_FAULT_F_REMOTE : 0;
	for (e = start; e < start + n; e++) {
		pe = find_extent(rc, e);
		if (!bio_list_empty(&pe->waiters))
			*flags |= RCOW_FAULT_F_WAITING;
		pe->sent = true;
		pe->cookie = *cookie;
		hlist_add_head(&pe->cookie_node,
			       &rc->cookie_hash[hash_u64(*cookie)]);
		list_move_tail(&pe->list, &rc->sent);
	}
	return n;
}

/*
 * rc->lock held.  A run was not delivered: its faults not answered
 * meanwhile go back to the head of the unsent list, in order.
 */
static void put_back_run(struct rcow *rc, u64 first, u32 count, u64 cookie)
{
	struct rcow_pending *pe;
	LIST_HEAD(back);
	u64 e;

	for (e = first; e < first + count; e++) {
		pe = find_in_run(rc, e, cookie);
		if (!pe)
			continue;
		unsend(pe);
		list_move_tail(&pe->list, &back);
	}
	list_splice(&back, &rc->unsent);
}

static void send_unsent_faults(struct rcow *rc)
{
	u64 cookie, first;
	u32 count, flags;
	int r;

	for (;;) {
		/* Not resumed: nothing goes out (see rcow_postsuspend()). */
		if (test_bit(RCOW_F_QUIESCED, &rc->flags))
			return;
		spin_lock_irq(&rc->lock);
		count = take_run(rc, &first, &cookie, &flags);
		spin_unlock_irq(&rc->lock);
		if (!count)
			return;

		r = rcow_nl_send_fault(rc, cookie, first, count, flags);
		if (!r)
			continue;

		/* Not delivered: put it back unless it was answered. */
		spin_lock_irq(&rc->lock);
		put_back_run(rc, first, count, cookie);
		spin_unlock_irq(&rc->lock);
		if (r != -ENOTCONN && !test_bit(RCOW_F_QUIESCED, &rc->flags))
			mod_delayed_work(rc->wq, &rc->waker, RCOW_RESEND_DELAY);
		return;
	}
}

/*
 * rc->lock held.  Takes the promote marks of a run of adjacent extents of
 * one sent FAULT (see "Priority" at the top), up to max_run(); returns
 * its length (0: none marked), first extent and cookie.
 */
static u32 take_promote(struct rcow *rc, u64 *first, u64 *cookie)
{
	struct rcow_pending *pe, *found = NULL;
	u32 n = 0, limit = max_run(rc);

	list_for_each_entry(pe, &rc->sent, list)
		if (pe->promote) {
			found = pe;
			break;
		}
	if (!found)
		return 0;
	*first = found->extent;
	*cookie = found->cookie;
	for (pe = found; pe && pe->promote && n < limit;
	     pe = find_in_run(rc, *first + n, *cookie)) {
		pe->promote = false;
		n++;
	}
	return n;
}

/* rc->lock held.  PROMOTE of this run was not delivered: mark it again. */
static void put_back_promote(struct rcow *rc, u64 first, u32 count,
			     u64 cookie)
{
	struct rcow_pending *pe;
	u64 e;

	for (e = first; e < first + count; e++) {
		pe = find_in_run(rc, e, cookie);
		if (pe) {
			pe->promote = true;
			set_bit(RCOW_F_PROMOTE, &rc->flags);
		}
	}
}

static void send_promotes(struct rcow *rc)
{
	u64 cookie, first;
	u32 count;
	int r;

	while (!test_bit(RCOW_F_QUIESCED, &rc->flags) &&
	       test_bit(RCOW_F_PROMOTE, &rc->flags)) {
		spin_lock_irq(&rc->lock);
		count = take_promote(rc, &first, &cookie);
		if (!count)
			clear_bit(RCOW_F_PROMOTE, &rc->flags);
		spin_unlock_irq(&rc->lock);
		if (!count)
			return;
		r = rcow_nl_send_promote(rc, cookie, first, count);
		/* Gone: the faults are sent again, flagged waiting. */
		if (!r || r == -ENOTCONN)
			continue;
		spin_lock_irq(&rc->lock);
		put_back_promote(rc, first, count, cookie);
		spin_unlock_irq(&rc->lock);
		mod_delayed_work(rc->wq, &rc->waker, RCOW_RESEND_DELAY);
		return;
	}
}

/*
 * Background streaming ends by itself once every extent is present: the
 * helper is told to stop, the status line goes back to idle and a dm event
 * tells whoever waits for it.  The waker runs the worker every second, so
 * that happens within a second of the last fill.
 */
static void check_hydrated(struct rcow *rc)
{
	if (!READ_ONCE(rc->hydrating) ||
	    rcow_md_count(rc->md, RCOW_BITMAP_PRESENT) < rc->nr_extents)
		return;
	DMINFO("%s: hydrated: all %llu extents are present, %u ms after hydrate start",
	       rcow_name(rc), rc->nr_extents,
	       jiffies_to_msecs(jiffies - READ_ONCE(rc->hydrate_started)));
	rcow_nl_hydrate_ctl(rc, false, 0);
	set_bit(RCOW_F_EVENT, &rc->flags);
}

/*
 * The worker and the waker run in the I/O path of the device they serve
 * (and maybe of the swap or file system on it): no allocation of theirs
 * may recurse into I/O.
 */
static void do_worker(struct work_struct *ws)
{
	struct rcow *rc = container_of(ws, struct rcow, worker);
	unsigned int noio = memalloc_noio_save();

	process_deferred_bios(rc);
	process_commit(rc);
	process_incoming(rc);
	rcow_commit_work(rc);
	rcow_migrate_work(rc);
	send_unsent_faults(rc);
	send_promotes(rc);
	check_hydrated(rc);
	if (test_and_clear_bit(RCOW_F_EVENT, &rc->flags))
		dm_table_event(rc->ti->table);
	memalloc_noio_restore(noio);
}

/* rc->lock held: move the bios of @bios waiting too long to @expired. */
static void expire_bios(struct bio_list *bios, unsigned long timeout,
			struct bio_list *expired)
{
	struct bio_list keep;
	struct bio *bio;

	bio_list_init(&keep);
	while ((bio = bio_list_pop(bios))) {
		if (time_after_eq(jiffies, rcow_bio(bio)->queued + timeout))
			bio_list_add(expired, bio);
		else
			bio_list_add(&keep, bio);
	}
	bio_list_merge(bios, &keep);
}

/* rc->lock held: take the bios of every pending fault waiting too long. */
static void collect_expired(struct rcow *rc, struct list_head *head,
			    unsigned long timeout, struct bio_list *expired)
{
	struct rcow_pending *pe;

	list_for_each_entry(pe, head, list)
		expire_bios(&pe->waiters, timeout, expired);
}

static void fail_expired(struct rcow *rc, unsigned int timeout_ms)
{
	unsigned long timeout = msecs_to_jiffies(timeout_ms);
	struct bio_list expired;

	if (!timeout_ms)
		return;
	bio_list_init(&expired);
	spin_lock_irq(&rc->lock);
	collect_expired(rc, &rc->unsent, timeout, &expired);
	collect_expired(rc, &rc->sent, timeout, &expired);
	expire_bios(&rc->incoming, timeout, &expired);
	spin_unlock_irq(&rc->lock);
	if (!bio_list_empty(&expired))
		DMWARN_LIMIT("%s: fault_timeout expired, failing I/O to missing extents",
			     rcow_name(rc));
	end_bios(&expired, BLK_STS_IOERR);
}

static void do_waker(struct work_struct *ws)
{
	struct rcow *rc = container_of(to_delayed_work(ws), struct rcow,
				       waker);
	unsigned int timeout_ms = READ_ONCE(rc->fault_timeout_ms);
	unsigned long next = RCOW_COMMIT_PERIOD;
	unsigned int noio = memalloc_noio_save();

	fail_expired(rc, timeout_ms);
	if (rcow_md_changed(rc->md))
		set_bit(RCOW_F_COMMIT, &rc->flags);
	wake_worker(rc);
	if (timeout_ms)
		next = min(next, max(1UL, msecs_to_jiffies(timeout_ms) / 4));
	if (!test_bit(RCOW_F_QUIESCED, &rc->flags))
		queue_delayed_work(rc->wq, &rc->waker, next);
	memalloc_noio_restore(noio);
}

/*
 * Called by the netlink channel (rcow_nl_lock held)
 */

/*
 * rc->lock held.  The extents [@first, @first + *@count) answered by a
 * FILL_DONE of run @cookie, all still outstanding in that run; *@count 0
 * means every extent of the run from @first on that is still outstanding.
 */
static bool fill_range_valid(struct rcow *rc, u64 cookie, u64 first,
			     u32 *count)
{
	u64 e;

	if (first >= rc->nr_extents)
		return false;
	if (!*count) {
		while (*count < REMOTE_COW_MAX_RANGE &&
		       first + *count < rc->nr_extents &&
		       find_in_run(rc, first + *count, cookie))
			(*count)++;
		return *count > 0;
	}
	if (*count > rc->nr_extents - first)
		return false;
	for (e = first; e < first + *count; e++)
		if (!find_in_run(rc, e, cookie))
			return false;
	return true;
}

/*
 * The helper answered extents [@first, @first + @count) of a FAULT run
 * (@count 0: the rest of the run from @first, as helpers that predate
 * sub-range answers send it).  -ENOENT unless a run with this cookie was
 * sent to the helper and has extents outstanding; -EINVAL if the range is
 * not wholly outstanding in that run (nothing is taken then).  The waiting
 * bios go to the worker, or fail with EIO on a non-zero @status (never
 * submitted from here, under the netlink lock).
 */
int rcow_fill_done(struct rcow *rc, u64 cookie, u64 first, u32 count,
		   u32 status)
{
	struct rcow_pending *pe, *tmp;
	struct bio_list failed;
	LIST_HEAD(done);
	u64 e;

	bio_list_init(&failed);
	spin_lock_irq(&rc->lock);
	if (!find_cookie(rc, cookie)) {
		spin_unlock_irq(&rc->lock);
		return -ENOENT;
	}
	if (!fill_range_valid(rc, cookie, first, &count)) {
		spin_unlock_irq(&rc->lock);
		return -EINVAL;
	}
	for (e = first; e < first + count; e++) {
		pe = find_extent(rc, e);
		if (!status) {
			rcow_md_set(rc->md, RCOW_BITMAP_PRESENT, e);
			/* From the source: the worker marks it WRITTEN. */
			if (leave_remote(rc, e))
				set_bit(e, rc->incoming_fill);
		}
		remove_pending(rc, pe);
		/* Present now: the worker remaps them. */
		bio_list_merge(status ? &failed : &rc->deferred, &pe->waiters);
		list_add_tail(&pe->list, &done);
	}
	spin_unlock_irq(&rc->lock);

	if (status)
		DMERR_LIMIT("%s: helper could not fill extents %llu+%u: error %u",
			    rcow_name(rc), first, count, status);
	end_bios(&failed, BLK_STS_IOERR);
	list_for_each_entry_safe(pe, tmp, &done, list)
		mempool_free(pe, &rc->pending_pool);
	wake_worker(rc);
	return 0;
}

int rcow_hydrate(struct rcow *rc, u64 first, u32 count, u32 *queued)
{
	struct rcow_pending *new = NULL;
	u64 e;

	*queued = 0;
	if (rcow_mode(rc) == RCOW_MODE_RO)
		return -EROFS;
	if (test_bit(RCOW_F_QUIESCED, &rc->flags))
		return -EAGAIN;
	/*
	 * Incoming, not yet post-copy: MIGRATE_REMOTE may still name any
	 * extent, and a fault sent now would not say that it is remote.
	 */
	if (test_bit(RCOW_F_INCOMING, &rc->flags) && !rc->postcopy_asked)
		return -EBUSY;
	for (e = first; e < first + count; e++) {
		if (rcow_md_test(rc->md, RCOW_BITMAP_PRESENT, e))
			continue;
		/* Prefetch is optional: leave the I/O path its reserve. */
		if (!new)
			new = kmalloc(sizeof(*new), GFP_KERNEL);
		if (!new)
			return -ENOMEM;
		spin_lock_irq(&rc->lock);
		if (!rc->requeue_io && !find_extent(rc, e) &&
		    !rcow_md_test(rc->md, RCOW_BITMAP_PRESENT, e)) {
			add_fault(rc, new, e);
			new = NULL;
			(*queued)++;
		}
		spin_unlock_irq(&rc->lock);
	}
	kfree(new);
	if (*queued)
		wake_worker(rc);
	return 0;
}

/* MIGRATE_FILL: the worker marks the extents.  Not in post-copy. */
int rcow_incoming_fill(struct rcow *rc, u64 first, u32 count)
{
	u64 e;

	if (!test_bit(RCOW_F_INCOMING, &rc->flags) || rc->postcopy_asked)
		return -ESTALE;
	for (e = first; e < first + count; e++)
		set_bit(e, rc->incoming_fill);
	wake_worker(rc);
	return 0;
}

/*
 * MIGRATE_REMOTE: the extents are still only on the source.  Those
 * present already (or filled, not yet marked) are not remote.
 */
int rcow_incoming_remote(struct rcow *rc, u64 first, u32 count)
{
	u64 e;

	if (!test_bit(RCOW_F_INCOMING, &rc->flags) || rc->postcopy_asked)
		return -ESTALE;
	for (e = first; e < first + count; e++) {
		if (rcow_md_test(rc->md, RCOW_BITMAP_PRESENT, e) ||
		    test_bit(e, rc->incoming_fill) ||
		    test_and_set_bit(e, rc->incoming_remote))
			continue;
		atomic64_inc(&rc->remote_left);
		rc->remote_total++;
	}
	return 0;
}

/* MIGRATE_POSTCOPY, destination: the worker serves from now on. */
int rcow_incoming_postcopy(struct rcow *rc)
{
	if (!test_bit(RCOW_F_INCOMING, &rc->flags) || rc->postcopy_asked)
		return -ESTALE;
	WRITE_ONCE(rc->postcopy_asked, true);
	wake_worker(rc);
	return 0;
}

/*
 * Post-copy: the extents MIGRATE_REMOTE named, and of those the present
 * ones.  remote_total no longer changes once post-copy is asked.
 */
void rcow_incoming_counts(struct rcow *rc, u64 *total, u64 *done)
{
	u64 left = atomic64_read(&rc->remote_left);

	*total = READ_ONCE(rc->remote_total);
	*done = *total > left ? *total - left : 0;
}

/*
 * MIGRATE_COMPLETE: done by the worker, after the fills before it; in
 * post-copy only once no extent is left on the source.
 */
int rcow_incoming_complete(struct rcow *rc)
{
	if (!test_bit(RCOW_F_INCOMING, &rc->flags))
		return -ESTALE;
	if (rc->postcopy_asked && atomic64_read(&rc->remote_left))
		return -EAGAIN;
	WRITE_ONCE(rc->incoming_complete, true);
	wake_worker(rc);
	return 0;
}

/* rc->lock held: the helper that had the sent faults is gone. */
static void unsend_faults(struct rcow *rc)
{
	struct rcow_pending *pe;

	list_for_each_entry(pe, &rc->sent, list)
		unsend(pe);
	list_splice_init(&rc->sent, &rc->unsent);
}

void rcow_helper_arrived(struct rcow *rc)
{
	spin_lock_irq(&rc->lock);
	unsend_faults(rc);
	spin_unlock_irq(&rc->lock);
	rcow_commit_helper_arrived(rc);
	wake_worker(rc);
}

/* rc->lock held: take every bio waiting on a fault. */
static void take_fault_waiters(struct rcow *rc, struct list_head *head,
			       struct bio_list *out)
{
	struct rcow_pending *pe;

	list_for_each_entry(pe, head, list) {
		bio_list_merge(out, &pe->waiters);
		bio_list_init(&pe->waiters);
	}
}

void rcow_helper_left(struct rcow *rc)
{
	struct bio_list bios;

	bio_list_init(&bios);
	spin_lock_irq(&rc->lock);
	/* Resend what the old helper had been told to the next one. */
	unsend_faults(rc);
	if (rc->suspending) {
		take_fault_waiters(rc, &rc->unsent, &bios);
		bio_list_merge(&bios, &rc->deferred);
		bio_list_init(&rc->deferred);
	}
	spin_unlock_irq(&rc->lock);
	if (!bio_list_empty(&bios))
		DMWARN("%s: helper gone during suspend: failing I/O to missing extents",
		       rcow_name(rc));
	end_bios(&bios, BLK_STS_IOERR);
	rcow_migrate_helper_left(rc);
}

/*
 * Constructor
 */

static int parse_extent_sectors(struct rcow *rc, const char *arg,
				char **error)
{
	unsigned int v;

	if (kstrtouint(arg, 10, &v) || !is_power_of_2(v) ||
	    v < RCOW_MIN_EXTENT_SECTORS || v > RCOW_MAX_EXTENT_SECTORS) {
		*error = "Invalid extent size: must be a power of two from 8 to 8192 sectors";
		return -EINVAL;
	}
	rc->extent_sectors = v;
	rc->extent_shift = ilog2(v);
	return 0;
}

static bool str_has_prefix_len(const char *s, const char *prefix,
			       size_t *len)
{
	*len = strlen(prefix);
	return !strncmp(s, prefix, *len);
}

static int parse_base_uri(struct rcow *rc, const char *uri, char **error)
{
	const char *rest, *slash;
	size_t len;

	if (strlen(uri) > REMOTE_COW_MAX_URI) {
		*error = "Base URI too long (at most 1023 bytes)";
		return -EINVAL;
	}
	if (str_has_prefix_len(uri, "file://", &len)) {
		rest = uri + len;
		if (rest[0] != '/' || !rest[1]) {
			*error = "Invalid file base URI: expected file:///PATH";
			return -EINVAL;
		}
	} else if (str_has_prefix_len(uri, "nbd+unix://", &len)) {
		rest = uri + len;
		if (rest[0] != '/' || !strstr(rest, "socket=")) {
			*error = "Invalid nbd+unix URI: want nbd+unix:///EXPORT?socket=PATH";
			return -EINVAL;
		}
	} else if (str_has_prefix_len(uri, "nbd://", &len) ||
		   str_has_prefix_len(uri, "nbds://", &len)) {
		rest = uri + len;
		slash = strchr(rest, '/');
		if (!rest[0] || rest[0] == '/' || !slash) {
			*error = "Invalid nbd base URI: expected nbd://HOST[:PORT]/EXPORT";
			return -EINVAL;
		}
		if (memchr(rest, '@', slash - rest)) {
			*error = "Base URI must not carry credentials (use remote-cowd.conf)";
			return -EINVAL;
		}
	} else {
		*error = "Unsupported base URI scheme: use nbd://, nbds://, nbd+unix:// or file://";
		return -EINVAL;
	}

	rc->base_uri = kstrdup(uri, GFP_KERNEL);
	if (!rc->base_uri) {
		*error = "Cannot allocate base URI";
		return -ENOMEM;
	}
	return 0;
}

static int parse_features(struct rcow *rc, struct dm_arg_set *as,
			  char **error)
{
	static const struct dm_arg _args[] = {
		{0, 5, "Invalid number of optional arguments"},
		{0, RCOW_MAX_FAULT_TIMEOUT_MS,
		 "Invalid fault_timeout: milliseconds from 0 (wait forever) to 86400000"},
	};
	bool seen_discard = false;
	unsigned int argc;
	const char *arg;
	int r;

	rc->discard_passdown = true;
	if (!as->argc)
		return 0;

	r = dm_read_arg_group(_args, as, &argc, error);
	if (r)
		return r;

	while (argc) {
		arg = dm_shift_arg(as);
		argc--;

		if (!strcasecmp(arg, "fault_timeout")) {
			if (!argc) {
				*error = "fault_timeout needs a value in milliseconds";
				return -EINVAL;
			}
			r = dm_read_arg(&_args[1], as, &rc->fault_timeout_ms,
					error);
			if (r)
				return r;
			argc--;
		} else if (!strcasecmp(arg, "discard_passdown") ||
			   !strcasecmp(arg, "no_discard_passdown")) {
			if (seen_discard) {
				*error = "Conflicting or repeated discard options";
				return -EINVAL;
			}
			seen_discard = true;
			rc->discard_passdown = !strcasecmp(arg,
							   "discard_passdown");
		} else if (!strcasecmp(arg, "incoming")) {
			if (test_bit(RCOW_F_INCOMING, &rc->flags)) {
				*error = "Repeated incoming option";
				return -EINVAL;
			}
			set_bit(RCOW_F_INCOMING, &rc->flags);
		} else {
			*error = "Unrecognised optional argument";
			return -EINVAL;
		}
	}
	if (as->argc) {
		*error = "Unexpected arguments after the optional arguments";
		return -EINVAL;
	}
	return 0;
}

static int init_pending(struct rcow *rc, char **error)
{
	int i;

	spin_lock_init(&rc->lock);
	bio_list_init(&rc->deferred);
	bio_list_init(&rc->flush_bios);
	bio_list_init(&rc->commit_bios);
	bio_list_init(&rc->fua_done);
	bio_list_init(&rc->incoming);
	for (i = 0; i < ARRAY_SIZE(rc->extent_hash); i++) {
		INIT_HLIST_HEAD(&rc->extent_hash[i]);
		INIT_HLIST_HEAD(&rc->cookie_hash[i]);
	}
	INIT_LIST_HEAD(&rc->unsent);
	INIT_LIST_HEAD(&rc->sent);
	INIT_LIST_HEAD(&rc->nl_node);
	atomic_set(&rc->wr_inflight, 0);
	atomic64_set(&rc->remote_left, 0);
	init_waitqueue_head(&rc->drain_wq);
	rcow_migrate_init(rc);
	if (rcow_commit_init(rc)) {
		*error = "Cannot allocate snapshot commit state";
		return -ENOMEM;
	}

	if (mempool_init_kmalloc_pool(&rc->pending_pool, RCOW_MIN_PENDING,
				      sizeof(struct rcow_pending))) {
		*error = "Cannot allocate pending-extent pool";
		return -ENOMEM;
	}
	rc->wq = alloc_ordered_workqueue("dm-remote-cow", WQ_MEM_RECLAIM);
	if (!rc->wq) {
		*error = "Cannot allocate workqueue";
		return -ENOMEM;
	}
	INIT_WORK(&rc->worker, do_worker);
	INIT_DELAYED_WORK(&rc->waker, do_waker);
	return 0;
}

static void rcow_free(struct rcow *rc)
{
	struct rcow_pending *pe, *tmp;
	struct hlist_node *n;
	int i;

	if (rc->wq)
		destroy_workqueue(rc->wq);
	/* No I/O is left (dm suspended us); free what faults remain. */
	list_for_each_entry_safe(pe, tmp, &rc->unsent, list)
		list_del_init(&pe->list);
	list_for_each_entry_safe(pe, tmp, &rc->sent, list)
		list_del_init(&pe->list);
	for (i = 0; i < ARRAY_SIZE(rc->extent_hash); i++) {
		hlist_for_each_entry_safe(pe, n, &rc->extent_hash[i],
					  extent_node) {
			hlist_del(&pe->extent_node);
			WARN_ON_ONCE(!bio_list_empty(&pe->waiters));
			mempool_free(pe, &rc->pending_pool);
		}
	}
	mempool_exit(&rc->pending_pool);
	rcow_commit_free(rc);
	rcow_migrate_free(rc);
	kvfree(rc->incoming_fill);
	kvfree(rc->incoming_remote);
	if (rc->md)
		rcow_md_close(rc->md);
	if (rc->cow_dev)
		dm_put_device(rc->ti, rc->cow_dev);
	kfree(rc->base_uri);
	kfree(rc);
}

/*
 * The superblock's incoming flag against the table's feature: a COW
 * device flagged incoming is loaded only to receive (a half-migrated
 * destination is never served as a good one); a table that receives sets
 * the flag before anything is written.
 */
static int check_incoming(struct rcow *rc, char **error)
{
	bool receive = test_bit(RCOW_F_INCOMING, &rc->flags);
	int r;

	if (!receive) {
		if (!rcow_md_incoming(rc->md))
			return 0;
		*error = "Incoming migration not complete: load with the incoming feature";
		return -EBUSY;
	}
	if (rc->mode != RCOW_MODE_RW) {
		*error = "The incoming feature needs a writable table";
		return -EINVAL;
	}
	rc->incoming_fill = rcow_bitmap_zalloc(rc->nr_extents, GFP_KERNEL);
	rc->incoming_remote = rcow_bitmap_zalloc(rc->nr_extents, GFP_KERNEL);
	if (!rc->incoming_fill || !rc->incoming_remote) {
		*error = "Cannot allocate the incoming migration's set";
		return -ENOMEM;
	}
	r = rcow_md_set_incoming(rc->md, true);
	if (r)
		*error = "Cannot mark the COW device incoming (superblock write failed)";
	return r;
}

/*
 * <cow_dev> <extent_sectors> <base_uri> [<#opt_args> <opt_arg>...]
 *
 * Optional arguments: fault_timeout <ms>, discard_passdown,
 * no_discard_passdown, incoming.
 */
static int rcow_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct dm_arg_set as;
	struct rcow_geometry geo;
	struct rcow *rc;
	fmode_t mode = dm_table_get_mode(ti->table);
	sector_t cow_sectors, need;
	int r;

	if (argc < 3) {
		ti->error = "Need <cow_dev> <extent_sectors> <base_uri> [<#opts> <opt>...]";
		return -EINVAL;
	}

	rc = kzalloc(sizeof(*rc), GFP_KERNEL);
	if (!rc) {
		ti->error = "Cannot allocate remote-cow context";
		return -ENOMEM;
	}
	rc->ti = ti;
	refresh_name(rc);
	/* The waker runs only between resume and postsuspend. */
	set_bit(RCOW_F_QUIESCED, &rc->flags);
	rc->mode = (mode & FMODE_WRITE) ? RCOW_MODE_RW : RCOW_MODE_RO;

	r = init_pending(rc, &ti->error);
	if (r)
		goto bad;

	r = parse_extent_sectors(rc, argv[1], &ti->error);
	if (r)
		goto bad;
	r = parse_base_uri(rc, argv[2], &ti->error);
	if (r)
		goto bad;
	as.argc = argc - 3;
	as.argv = argv + 3;
	r = parse_features(rc, &as, &ti->error);
	if (r)
		goto bad;

	rc->nr_extents = DIV_ROUND_UP_ULL(ti->len, rc->extent_sectors);
	if (rc->nr_extents > RCOW_MAX_EXTENTS) {
		ti->error = "Too many extents: use a larger extent size";
		r = -EINVAL;
		goto bad;
	}

	r = dm_get_device(ti, argv[0], mode, &rc->cow_dev);
	if (r) {
		ti->error = "Cannot open the COW device";
		goto bad;
	}

	geo.dev_sectors = ti->len;
	geo.extent_sectors = rc->extent_sectors;
	geo.nr_extents = rc->nr_extents;
	geo.base_uri = rc->base_uri;
	cow_sectors = bdev_nr_sectors(rc->cow_dev->bdev);
	need = rcow_md_required_sectors(&geo);
	if (cow_sectors < need) {
		DMERR("COW device %s has %llu sectors; needs %llu (%llu metadata + %llu data)",
		      rc->cow_dev->name, (unsigned long long)cow_sectors,
		      (unsigned long long)need,
		      (unsigned long long)(need - ti->len),
		      (unsigned long long)ti->len);
		ti->error = "COW device too small (see `remote-cow cow-size`)";
		r = -ENOSPC;
		goto bad;
	}

	rc->md = rcow_md_open(rc->cow_dev->bdev, cow_sectors, &geo,
			      rc->mode == RCOW_MODE_RW, &ti->error);
	if (IS_ERR(rc->md)) {
		r = PTR_ERR(rc->md);
		rc->md = NULL;
		goto bad;
	}
	rc->data_offset = rcow_md_data_offset(rc->md);
	r = check_incoming(rc, &ti->error);
	if (r)
		goto bad;

	ti->num_flush_bios = 1;
	ti->flush_supported = true;
	ti->num_discard_bios = rc->discard_passdown ? 1 : 0;
	ti->per_io_data_size = sizeof(struct rcow_bio);
	ti->accounts_remapped_io = true;
	ti->private = rc;

	r = rcow_migrate_ctr(rc);
	if (r) {
		ti->error = "Cannot allocate the migration state";
		goto bad;
	}
	r = rcow_nl_add_device(rc);
	if (r) {
		ti->error = "Cannot register the device with the netlink channel";
		goto bad;
	}
	return 0;

bad:
	rcow_free(rc);
	return r;
}

static void rcow_dtr(struct dm_target *ti)
{
	struct rcow *rc = ti->private;

	rcow_nl_remove_device(rc);
	cancel_delayed_work_sync(&rc->waker);
	/*
	 * Metadata was made durable and clean by postsuspend; committing
	 * here could overwrite what a newer table instance over the same
	 * COW device has written since.
	 */
	rcow_free(rc);
}

/*
 * I/O
 */

static int map_discard(struct rcow *rc, struct bio *bio)
{
	u64 first = rcow_bio(bio)->extent;
	u64 last = bio_last_extent(rc, bio);
	u64 e;

	if (rcow_mode(rc) != RCOW_MODE_RW)
		return DM_MAPIO_KILL;
	/*
	 * Discard is advisory: over missing extents the base stays
	 * visible.  Over present ones it is passed down, and the extent
	 * may read back as zeroes: it no longer equals the base.
	 */
	for (e = first; e <= last; e++)
		if (!rcow_md_test(rc->md, RCOW_BITMAP_PRESENT, e)) {
			bio_endio(bio);
			return DM_MAPIO_SUBMITTED;
		}
	if (!map_write_ready(rc, bio, first, last)) {
		defer_bio(rc, bio);
		return DM_MAPIO_SUBMITTED;
	}
	remap(rc, bio);
	return DM_MAPIO_REMAPPED;
}

/*
 * From map, while incoming: hold @bio (its part in its first extent) until
 * the migration completes or post-copy starts, as map's answer; -1 if one
 * of them came meanwhile.
 * A discard is advisory: it ends at once.  While suspending, as for a
 * missing extent (see rcow_presuspend()).
 */
static int hold_incoming(struct rcow *rc, struct bio *bio, u64 extent)
{
	sector_t off = dm_target_offset(rc->ti, bio->bi_iter.bi_sector);
	sector_t end_first = (extent + 1) << rc->extent_shift;
	int r = DM_MAPIO_SUBMITTED;

	if (bio_op(bio) == REQ_OP_DISCARD) {
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}
	if (off + bio_sectors(bio) > end_first)
		dm_accept_partial_bio(bio, end_first - off);
	rcow_bio(bio)->queued = jiffies;
	spin_lock_irq(&rc->lock);
	if (!test_bit(RCOW_F_INCOMING, &rc->flags) ||
	    test_bit(RCOW_F_POSTCOPY, &rc->flags))
		r = -1;
	else if (rc->requeue_io)
		r = DM_MAPIO_REQUEUE;
	else if (rc->suspending)
		r = DM_MAPIO_KILL;
	else
		bio_list_add(&rc->incoming, bio);
	spin_unlock_irq(&rc->lock);
	return r;
}

static int rcow_end_io(struct dm_target *ti, struct bio *bio,
		       blk_status_t *error)
{
	struct rcow *rc = ti->private;
	struct rcow_bio *rb = rcow_bio(bio);

	if (!*error)
		note_written(rc, bio);
	rb->wrote = false;
	write_landed(rc, bio);
	/*
	 * Mirroring: the write completes once the destination has it; the
	 * migrate file ends the bio again then (this end_io runs again and
	 * finds nothing to do).  Nothing touches the bio after it is held.
	 */
	if (!*error && unlikely(rb->mirror.hold) && rcow_migrate_hold(rc, bio))
		return DM_ENDIO_INCOMPLETE;
	return DM_ENDIO_DONE;
}

/*
 * @more: the bio was trimmed to its first extent and dm maps the rest of
 * it right after this call returns.  A piece that needs a fault then does
 * not wake the worker: the last piece does (rcow_map()), so that the
 * worker sees every extent of the bio at once and names them in one FAULT
 * run whatever the timing.  The waker's tick bounds a lost kick.
 */
static int map_bio(struct rcow *rc, struct bio *bio, bool *more)
{
	struct rcow_bio *rb = rcow_bio(bio);
	u64 extent;

	rb->pe = NULL;
	rb->counted = false;
	rb->wrote = false;
	rb->mirror.hold = false;
	rb->mirror.slow = false;
	if (unlikely(bio->bi_opf & REQ_PREFLUSH)) {
		if (rcow_mode(rc) == RCOW_MODE_RO) {
			bio_set_dev(bio, rc->cow_dev->bdev);
			return DM_MAPIO_REMAPPED;
		}
		spin_lock_irq(&rc->lock);
		bio_list_add(&rc->flush_bios, bio);
		spin_unlock_irq(&rc->lock);
		wake_worker(rc);
		return DM_MAPIO_SUBMITTED;
	}

	if (unlikely(rcow_migrate_fenced(rc, bio)))
		return DM_MAPIO_KILL;
	extent = bio_extent(rc, bio);
	rb->extent = extent;
	if (unlikely(test_bit(RCOW_F_INCOMING, &rc->flags)) &&
	    !test_bit(RCOW_F_POSTCOPY, &rc->flags)) {
		int r = hold_incoming(rc, bio, extent);

		if (r >= 0)
			return r;
	}
	if (unlikely(bio_op(bio) == REQ_OP_DISCARD))
		return map_discard(rc, bio);

	if (map_span(rc, bio, extent, more)) {
		remap(rc, bio);
		return DM_MAPIO_REMAPPED;
	}

	if (likely(rcow_md_test(rc->md, RCOW_BITMAP_PRESENT, extent)))
		return map_present(rc, bio, extent) ? DM_MAPIO_REMAPPED :
						      DM_MAPIO_SUBMITTED;

	if (op_is_write(bio_op(bio)) && rcow_mode(rc) != RCOW_MODE_RW)
		return DM_MAPIO_KILL;
	/* A read-only table never writes the COW device: no fills either. */
	if (unlikely(rcow_mode(rc) == RCOW_MODE_RO)) {
		DMERR_LIMIT("%s: read-only table: extent %llu missing, not fetched",
			    rcow_name(rc), extent);
		return DM_MAPIO_KILL;
	}

	rb->queued = jiffies;
	spin_lock_irq(&rc->lock);
	if (unlikely(rc->requeue_io)) {
		spin_unlock_irq(&rc->lock);
		return DM_MAPIO_REQUEUE;
	}
	if (unlikely(rc->suspending && !rcow_nl_helper_connected())) {
		spin_unlock_irq(&rc->lock);
		return DM_MAPIO_KILL;
	}
	bio_list_add(&rc->deferred, bio);
	spin_unlock_irq(&rc->lock);
	if (*more)
		set_bit(RCOW_F_KICK_HELD, &rc->flags);
	else
		wake_worker(rc);
	return DM_MAPIO_SUBMITTED;
}

static int rcow_map(struct dm_target *ti, struct bio *bio)
{
	struct rcow *rc = ti->private;
	bool more = false;
	int r = map_bio(rc, bio, &more);

	if (!more && test_bit(RCOW_F_KICK_HELD, &rc->flags) &&
	    test_and_clear_bit(RCOW_F_KICK_HELD, &rc->flags))
		wake_worker(rc);
	return r;
}

/*
 * Suspend and resume
 */

static void rcow_presuspend(struct dm_target *ti)
{
	struct rcow *rc = ti->private;
	bool noflush = dm_noflush_suspending(ti);
	bool helper = rcow_nl_helper_connected();
	struct bio_list bios;

	/* Held writes must not keep the suspend waiting. */
	rcow_commit_suspend(rc);
	rcow_migrate_suspend(rc);

	bio_list_init(&bios);
	spin_lock_irq(&rc->lock);
	if (noflush)
		rc->requeue_io = true;
	else
		rc->suspending = true;
	if (noflush || !helper) {
		take_fault_waiters(rc, &rc->unsent, &bios);
		take_fault_waiters(rc, &rc->sent, &bios);
	}
	/* Held for an incoming migration: requeued, or failed. */
	bio_list_merge(&bios, &rc->incoming);
	bio_list_init(&rc->incoming);
	spin_unlock_irq(&rc->lock);

	/* dm reissues BLK_STS_DM_REQUEUE bios after resume (noflush). */
	if (!bio_list_empty(&bios) && !noflush)
		DMWARN("%s: suspend with no helper connected: failing I/O to missing extents",
		       rcow_name(rc));
	end_bios(&bios, noflush ? BLK_STS_DM_REQUEUE : BLK_STS_IOERR);
	/* Bios already deferred by map meet requeue_io in the worker. */
	wake_worker(rc);
}

static void rcow_presuspend_undo(struct dm_target *ti)
{
	struct rcow *rc = ti->private;

	spin_lock_irq(&rc->lock);
	rc->requeue_io = false;
	rc->suspending = false;
	spin_unlock_irq(&rc->lock);
	rcow_commit_resume(rc);
	rcow_migrate_resume(rc);
}

/*
 * After the helper stopped writing for this table: no fault of it is
 * outstanding any more.  Those with no bio waiting (hydration, or left by
 * a noflush suspend, whose bios dm reissues after resume) are dropped;
 * any other is sent again after resume, under a new cookie (every send
 * takes one), so that no answer of the helper to the old one can be taken
 * for it.
 */
static void forget_faults(struct rcow *rc)
{
	struct rcow_pending *pe, *tmp;
	LIST_HEAD(drop);

	spin_lock_irq(&rc->lock);
	unsend_faults(rc);
	list_for_each_entry_safe(pe, tmp, &rc->unsent, list) {
		if (bio_list_empty(&pe->waiters)) {
			remove_pending(rc, pe);
			list_add(&pe->list, &drop);
		}
	}
	spin_unlock_irq(&rc->lock);
	list_for_each_entry_safe(pe, tmp, &drop, list)
		mempool_free(pe, &rc->pending_pool);
}

/*
 * The helper writes fills into the COW device itself: before the next
 * table (or anyone) may use the COW device, it must have stopped writing
 * for this one.  Only needed when it has faults of ours.
 */
static void quiesce_helper(struct rcow *rc)
{
	bool busy;

	spin_lock_irq(&rc->lock);
	busy = !list_empty(&rc->sent);
	spin_unlock_irq(&rc->lock);
	if (busy && rcow_nl_quiesce(rc, RCOW_QUIESCE_TIMEOUT_MS)) {
		DMERR("%s: helper did not stop filling within %u ms: COW device %s fenced",
		      rcow_name(rc), RCOW_QUIESCE_TIMEOUT_MS,
		      rc->cow_dev->name);
		DMERR("%s: no table over it resumes until the helper answers or exits",
		      rcow_name(rc));
	}
	forget_faults(rc);
}

static void rcow_postsuspend(struct dm_target *ti)
{
	struct rcow *rc = ti->private;
	int r;

	set_bit(RCOW_F_QUIESCED, &rc->flags);
	cancel_delayed_work_sync(&rc->waker);
	flush_workqueue(rc->wq);
	quiesce_helper(rc);
	/* Fills the helper finished meanwhile are in this commit. */
	flush_workqueue(rc->wq);
	if (rc->loaded && rcow_mode(rc) == RCOW_MODE_RW) {
		r = rcow_md_commit(rc->md, true, true);
		if (r)
			set_mode(rc, RCOW_MODE_FAIL);
	}
	flush_workqueue(rc->wq);
}

static int rcow_preresume(struct dm_target *ti)
{
	struct rcow *rc = ti->private;
	bool unclean;
	int r;

	refresh_name(rc);

	if (rcow_nl_cow_fenced(rc->cow_dev->bdev->bd_dev)) {
		DMERR("%s: COW device %s fenced: the helper may still fill it for the old table",
		      rcow_name(rc), rc->cow_dev->name);
		DMERR("%s: resume again once it answers, or restart remote-cowd",
		      rcow_name(rc));
		return -EBUSY;
	}

	if (!rc->loaded) {
		r = rcow_md_load(rc->md, &unclean);
		if (r) {
			DMERR("%s: cannot load metadata: %d", rcow_name(rc), r);
			return r;
		}
		if (unclean)
			DMWARN("%s: COW device was not shut down cleanly (nothing to repair)",
			       rcow_name(rc));
		rc->loaded = true;
		rcow_commit_loaded(rc);
	} else if (rcow_mode(rc) == RCOW_MODE_RW) {
		/* Clear the clean flag before the first write. */
		r = rcow_md_commit(rc->md, false, false);
		if (r) {
			set_mode(rc, RCOW_MODE_FAIL);
			return r;
		}
	}
	return 0;
}

static void rcow_resume(struct dm_target *ti)
{
	struct rcow *rc = ti->private;

	spin_lock_irq(&rc->lock);
	rc->requeue_io = false;
	rc->suspending = false;
	spin_unlock_irq(&rc->lock);

	clear_bit(RCOW_F_QUIESCED, &rc->flags);
	rcow_commit_resume(rc);
	rcow_migrate_resume(rc);
	rcow_nl_announce(rc);
	queue_delayed_work(rc->wq, &rc->waker, RCOW_COMMIT_PERIOD);
	wake_worker(rc);
}

/*
 * Status and messages
 */

static void rcow_status(struct dm_target *ti, status_type_t type,
			unsigned int status_flags, char *result,
			unsigned int maxlen)
{
	static const char * const modes[] = { "rw", "ro", "fail" };
	struct rcow *rc = ti->private;
	struct rcow_commit_info ci;
	struct rcow_migrate_info mi;
	unsigned int sz = 0;
	unsigned int nr_opts, timeout_ms;

	switch (type) {
	case STATUSTYPE_INFO:
		rcow_commit_info(rc, &ci, false);
		rcow_migrate_info(rc, &mi, false);
		DMEMIT("%u %llu/%llu %llu %u %s %s %llu/%llu %llu %s %llu/%llu %s %s",
		       rc->extent_sectors,
		       rcow_md_count(rc->md, RCOW_BITMAP_PRESENT),
		       rc->nr_extents,
		       rcow_md_count(rc->md, RCOW_BITMAP_WRITTEN),
		       READ_ONCE(rc->nr_faults),
		       rcow_nl_helper_connected() ? "connected" : "absent",
		       rcow_commit_state_name(ci.state), ci.done, ci.total,
		       ci.gen, rcow_migrate_state_name(mi.state), mi.done,
		       mi.total, READ_ONCE(rc->hydrating) ? "hydrating" : "idle",
		       modes[rcow_mode(rc)]);
		break;
	case STATUSTYPE_TABLE:
		timeout_ms = READ_ONCE(rc->fault_timeout_ms);
		nr_opts = (timeout_ms ? 2 : 0) + (rc->discard_passdown ? 0 : 1) +
			  (test_bit(RCOW_F_INCOMING, &rc->flags) ? 1 : 0);
		DMEMIT("%s %u %s", rc->cow_dev->name, rc->extent_sectors,
		       rc->base_uri);
		if (nr_opts) {
			DMEMIT(" %u", nr_opts);
			if (timeout_ms)
				DMEMIT(" fault_timeout %u", timeout_ms);
			if (!rc->discard_passdown)
				DMEMIT(" no_discard_passdown");
			if (test_bit(RCOW_F_INCOMING, &rc->flags))
				DMEMIT(" incoming");
		}
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",cow_dev=%s,extent_sectors=%u,base_uri=%s;",
		       rc->cow_dev->name, rc->extent_sectors, rc->base_uri);
		break;
	}
}

static int parse_hydrate(struct rcow *rc, unsigned int argc, char **argv)
{
	unsigned int rate = 0;

	if (argc == 2 && !strcasecmp(argv[1], "stop")) {
		rcow_nl_hydrate_ctl(rc, false, 0);
		return 0;
	}
	if (argc < 2 || argc > 3 || strcasecmp(argv[1], "start")) {
		DMWARN("%s: usage: hydrate start [<MiB/s>] | hydrate stop",
		       rcow_name(rc));
		return -EINVAL;
	}
	if (argc == 3 && kstrtouint(argv[2], 10, &rate)) {
		DMWARN("%s: hydrate start: invalid rate '%s' (MiB/s, 0 = unlimited)",
		       rcow_name(rc), argv[2]);
		return -EINVAL;
	}
	rcow_nl_hydrate_ctl(rc, true, rate);
	wake_worker(rc);
	return 0;
}

/*
 * fault_timeout <ms>: the table's fault timeout, changed at run time (the
 * table line shows the new value).  Also the way out of a flushing suspend
 * that waits for a stuck helper: bios waiting longer than the new timeout
 * fail at once.
 */
static int parse_fault_timeout(struct rcow *rc, unsigned int argc,
			       char **argv)
{
	unsigned int ms;

	if (argc != 2 || kstrtouint(argv[1], 10, &ms) ||
	    ms > RCOW_MAX_FAULT_TIMEOUT_MS) {
		DMWARN("%s: usage: fault_timeout <ms>, 0 (wait forever) to %u",
		       rcow_name(rc), RCOW_MAX_FAULT_TIMEOUT_MS);
		return -EINVAL;
	}
	WRITE_ONCE(rc->fault_timeout_ms, ms);
	DMINFO("%s: fault_timeout set to %u ms", rcow_name(rc), ms);
	if (!test_bit(RCOW_F_QUIESCED, &rc->flags))
		mod_delayed_work(rc->wq, &rc->waker, 0);
	return 0;
}

static int rcow_message(struct dm_target *ti, unsigned int argc, char **argv,
			char *result, unsigned int maxlen)
{
	struct rcow *rc = ti->private;

	if (!argc)
		return -EINVAL;
	if (!strcasecmp(argv[0], "hydrate"))
		return parse_hydrate(rc, argc, argv);
	if (!strcasecmp(argv[0], "fault_timeout"))
		return parse_fault_timeout(rc, argc, argv);
	if (!strcasecmp(argv[0], "snapshot") && argc >= 2) {
		if (!strcasecmp(argv[1], "commit"))
			return rcow_commit_message(rc, argc, argv);
		if (!strcasecmp(argv[1], "abort"))
			return rcow_commit_abort_message(rc, argc);
	}
	if (!strcasecmp(argv[0], "migrate") && argc >= 2 &&
	    (!strcasecmp(argv[1], "send") || !strcasecmp(argv[1], "finish") ||
	     !strcasecmp(argv[1], "abort")))
		return rcow_migrate_message(rc, argc, argv);
	DMWARN("%s: unrecognised message '%s'", rcow_name(rc), argv[0]);
	return -EINVAL;
}

static int rcow_iterate_devices(struct dm_target *ti,
				iterate_devices_callout_fn fn, void *data)
{
	struct rcow *rc = ti->private;

	return fn(ti, rc->cow_dev, rc->data_offset, ti->len, data);
}

static void rcow_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct rcow *rc = ti->private;

	if (rc->discard_passdown) {
		limits->discard_granularity = rc->extent_sectors << SECTOR_SHIFT;
		rcow_set_max_discard(limits, rc->extent_sectors);
	}
}

static struct target_type rcow_target = {
	.name = "remote-cow",
	.version = {1, 1, 0},
	/*
	 * map never sleeps (spinlocks, no allocation, the worker for the
	 * rest): REQ_NOWAIT bios are fine, and io_uring need not hand every
	 * request of a device without it to a worker thread.
	 */
	.features = DM_TARGET_NOWAIT,
	.module = THIS_MODULE,
	.ctr = rcow_ctr,
	.dtr = rcow_dtr,
	.map = rcow_map,
	.end_io = rcow_end_io,
	.presuspend = rcow_presuspend,
	.presuspend_undo = rcow_presuspend_undo,
	.postsuspend = rcow_postsuspend,
	.preresume = rcow_preresume,
	.resume = rcow_resume,
	.status = rcow_status,
	.message = rcow_message,
	.iterate_devices = rcow_iterate_devices,
	.io_hints = rcow_io_hints,
};

static int __init dm_rcow_init(void)
{
	int r;

	r = rcow_commit_module_init();
	if (r)
		return r;
	r = rcow_nl_init();
	if (r)
		goto bad_nl;
	r = dm_register_target(&rcow_target);
	if (r) {
		DMERR("register failed %d", r);
		goto bad_target;
	}
	return 0;

bad_target:
	rcow_nl_exit();
bad_nl:
	rcow_commit_module_exit();
	return r;
}

static void __exit dm_rcow_exit(void)
{
	dm_unregister_target(&rcow_target);
	rcow_nl_exit();
	rcow_commit_module_exit();
}

module_init(dm_rcow_init);
module_exit(dm_rcow_exit);

MODULE_DESCRIPTION(DM_NAME " copy-on-write device over a remote base image");
MODULE_LICENSE("GPL");
