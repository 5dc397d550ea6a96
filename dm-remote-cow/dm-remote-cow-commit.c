// SPDX-License-Identifier: GPL-2.0
/*
 * Copyright (C) 2026 The dm-remote-cow authors.
 *
 * Live snapshot commit: publish the running device as a new image version.
 *
 * `snapshot commit <uri> [since-last]` freezes a set of extents: every
 * written one, or since-last those changed since the last completed commit
 * (DIRTY_COMMIT) plus those of a commit that did not complete.  The
 * freeze is the worker's (it owns the metadata): it closes the write gate
 * so that every write goes through the worker, waits for the writes
 * already past the map function, adds the set to FROZEN_COMMIT durably and
 * clears DIRTY_COMMIT (rcow_md_freeze()).  From then on the frozen
 * extents are in two in-memory sets: "upload" (not yet on the target) and
 * "held" (neither uploaded nor preserved).  The helper uploads the upload
 * set's extents from the COW device and reports them (COMMIT_MARK
 * uploaded); a guest write to a held extent waits, and the helper is
 * asked (PRESERVE) to copy the extent's content aside first, which takes
 * a local read and write, never the network.  The helper may also copy
 * held extents aside ahead of the guest and mark them preserved with no
 * write waiting: a mark clears the extent's held bit whether or not a
 * write waits on it, so a later write to it is not held and sends no
 * PRESERVE (both sets cover the whole frozen set, extent by extent:
 * "preserved" is "in upload, not in held").  When the helper reports
 * the target flushed with nothing left to upload (COMMIT_END 0), the
 * worker records the commit as done and clears FROZEN_COMMIT.
 *
 * Writes in flight when the gate closes are waited for before the set is
 * taken, so each of them is either in the frozen content (it landed
 * before the upload read it) or was still to be acknowledged: the version
 * is what a crash at the freeze would have left.
 *
 * A commit ends as done, or as failed: helper's error, snapshot abort, a
 * PRESERVE unanswered for RCOW_PRESERVE_TIMEOUT_MS, a suspend of the
 * table.  A failed commit keeps FROZEN_COMMIT, so the next commit, full or
 * since-last, uploads those extents again.  Every end releases the held
 * writes and raises a dm event.
 *
 * Locking: cm->lock (a spinlock, never taken from interrupts) protects the
 * state, the generation, the held-extent table and its lists.  It nests
 * inside nothing and nothing is taken inside it; bios it releases are
 * handed to the target's deferred list after it is dropped.  The upload
 * and held bitmaps are changed with atomic bitops and read without locks
 * (map tests the held bitmap only while RCOW_F_HOLDING is set).  The
 * bitmaps are allocated by each freeze and given back by the worker once
 * the commit ended (trim_sets()): the pointers change only in the worker,
 * and under cm->lock while no commit uploads; netlink handlers look at
 * them only under cm->lock or after seeing a commit uploading, map only
 * with RCOW_F_HOLDING set, in an RCU read section.
 */

#include <linux/jiffies.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-remote-cow.h"

#define DM_MSG_PREFIX "remote-cow"

#define RCOW_PRESERVE_TIMEOUT_MS	30000
#define RCOW_DRAIN_TIMEOUT		(30 * HZ)

/* A held extent with writes waiting on its PRESERVE. */
struct rcow_held {
	struct hlist_node node;
	struct list_head list;		/* cm->unsent or cm->sent */
	u64 extent;
	unsigned long since;		/* jiffies */
	struct bio_list waiters;
};

static const char * const state_names[] = {
	[RCOW_COMMIT_IDLE] = "idle",
	[RCOW_COMMIT_UPLOADING] = "uploading",
	[RCOW_COMMIT_DONE] = "done",
	[RCOW_COMMIT_FAILED] = "failed",
};

static struct kmem_cache *rcow_held_cache;

static struct rcow_commit *cm_of(struct rcow *rc)
{
	return &rc->commit;
}

int rcow_commit_init(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);
	int r;

	spin_lock_init(&cm->lock);
	INIT_LIST_HEAD(&cm->unsent);
	INIT_LIST_HEAD(&cm->sent);
	hash_init(cm->held_hash);
	init_completion(&cm->frozen);
	mutex_init(&cm->message_lock);
	cm->suspended = true;	/* until the first resume */
	cm->state = RCOW_COMMIT_IDLE;
	r = mempool_init_slab_pool(&cm->held_pool, 16, rcow_held_cache);
	return r;
}

void rcow_commit_free(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);

	mempool_exit(&cm->held_pool);
	kvfree(cm->upload);
	kvfree(cm->held);
	kfree(cm->uri);
	kfree(cm->req_uri);
}

void rcow_commit_loaded(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);
	u64 started, done;

	rcow_md_commit_gens(rc->md, &started, &done);
	spin_lock(&cm->lock);
	cm->gen = started;
	spin_unlock(&cm->lock);
}

bool rcow_commit_held(struct rcow *rc, u64 extent)
{
	return test_bit(RCOW_F_HOLDING, &rc->flags) &&
	       test_bit(extent, rc->commit.held);
}

/* Hand bios back to the target's worker. */
static void requeue_bios(struct rcow *rc, struct bio_list *bios)
{
	unsigned long flags;

	if (bio_list_empty(bios))
		return;
	spin_lock_irqsave(&rc->lock, flags);
	bio_list_merge(&rc->deferred, bios);
	spin_unlock_irqrestore(&rc->lock, flags);
	queue_work(rc->wq, &rc->worker);
}

/* cm->lock held. */
static struct rcow_held *find_held(struct rcow_commit *cm, u64 extent)
{
	struct rcow_held *h;

	hash_for_each_possible(cm->held_hash, h, node, extent)
		if (h->extent == extent)
			return h;
	return NULL;
}

/* cm->lock held: unlink @h and take its waiters into @bios; caller frees. */
static void release_held(struct rcow_held *h, struct bio_list *bios)
{
	hash_del(&h->node);
	list_del(&h->list);
	bio_list_merge(bios, &h->waiters);
}

/*
 * Worker: @bio writes to held @extent.  It waits until the extent is
 * preserved or uploaded, or the commit ends.
 */
void rcow_commit_hold(struct rcow *rc, struct bio *bio, u64 extent)
{
	struct rcow_commit *cm = cm_of(rc);
	struct rcow_held *h, *new = NULL;
	struct bio_list bios;

	bio_list_init(&bios);
	for (;;) {
		spin_lock(&cm->lock);
		if (!rcow_commit_held(rc, extent)) {
			spin_unlock(&cm->lock);
			bio_list_add(&bios, bio);
			break;
		}
		h = find_held(cm, extent);
		if (h) {
			bio_list_add(&h->waiters, bio);
			spin_unlock(&cm->lock);
			break;
		}
		if (new) {
			new->extent = extent;
			new->since = jiffies;
			bio_list_init(&new->waiters);
			bio_list_add(&new->waiters, bio);
			hash_add(cm->held_hash, &new->node, extent);
			list_add_tail(&new->list, &cm->unsent);
			new = NULL;
			spin_unlock(&cm->lock);
			break;
		}
		spin_unlock(&cm->lock);
		new = mempool_alloc(&cm->held_pool, GFP_NOIO);
	}
	if (new)
		mempool_free(new, &cm->held_pool);
	/* Released meanwhile: back to the worker. */
	requeue_bios(rc, &bios);
}

/* Worker: send PRESERVE for every held extent not yet sent. */
static void send_preserves(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);
	struct rcow_held *h;
	u64 extent, gen;
	int r;

	if (test_bit(RCOW_F_QUIESCED, &rc->flags))
		return;
	for (;;) {
		spin_lock(&cm->lock);
		h = list_first_entry_or_null(&cm->unsent, struct rcow_held,
					     list);
		if (!h) {
			spin_unlock(&cm->lock);
			return;
		}
		list_move_tail(&h->list, &cm->sent);
		extent = h->extent;
		gen = cm->gen;
		spin_unlock(&cm->lock);

		r = rcow_nl_send_preserve(rc, gen, extent, 1);
		if (!r)
			continue;
		spin_lock(&cm->lock);
		h = find_held(cm, extent);
		if (h)
			list_move(&h->list, &cm->unsent);
		spin_unlock(&cm->lock);
		if (r != -ENOTCONN)
			mod_delayed_work(rc->wq, &rc->waker, HZ / 50);
		return;
	}
}

/*
 * Worker, or a message with the worker's state settled: end the commit.
 * Releases every held write.  @why is logged for a failure.
 */
static void end_commit(struct rcow *rc, enum remote_cow_commit_state state,
		       const char *why, bool tell_helper)
{
	struct rcow_commit *cm = cm_of(rc);
	struct rcow_held *h;
	struct hlist_node *tmp;
	struct bio_list bios;
	unsigned int bkt;
	u64 gen;

	bio_list_init(&bios);
	spin_lock(&cm->lock);
	if (cm->state != RCOW_COMMIT_UPLOADING) {
		spin_unlock(&cm->lock);
		return;
	}
	cm->state = state;
	gen = cm->gen;
	clear_bit(RCOW_F_HOLDING, &rc->flags);
	hash_for_each_safe(cm->held_hash, bkt, tmp, h, node) {
		release_held(h, &bios);
		mempool_free(h, &cm->held_pool);
	}
	spin_unlock(&cm->lock);

	if (state == RCOW_COMMIT_DONE)
		DMINFO("%s: snapshot commit %llu done: %llu extents uploaded",
		       rc->name, gen, cm->total);
	else
		DMERR("%s: snapshot commit %llu failed: %s (%llu of %llu extents uploaded)",
		      rc->name, gen, why, atomic64_read(&cm->done), cm->total);
	if (tell_helper)
		rcow_nl_commit_abort(rc, gen);
	requeue_bios(rc, &bios);
	set_bit(RCOW_F_EVENT, &rc->flags);
	queue_work(rc->wq, &rc->worker);
}

/*
 * Worker: close the write gate (every write now goes through the worker)
 * and wait until no write that passed it is in flight.  -ETIMEDOUT, with
 * the gate still closed, if they did not complete in time.  The snapshot
 * commit's freeze and the migration's rounds and fence take it.
 */
int rcow_gate_close(struct rcow *rc, const char *what)
{
	set_bit(RCOW_F_WRITE_GATE, &rc->flags);
	/* Every map call that saw the gate open has counted its write. */
	synchronize_rcu();
	if (!wait_event_timeout(rc->drain_wq,
				!atomic_read(&rc->wr_inflight),
				RCOW_DRAIN_TIMEOUT)) {
		DMERR("%s: %s: writes to the COW device did not complete in %u s",
		      rc->name, what, RCOW_DRAIN_TIMEOUT / HZ);
		return -ETIMEDOUT;
	}
	return 0;
}

/*
 * Worker: open the gate.  What the worker changed meanwhile (the held set,
 * the flags) is visible before it opens (pairs with the read barrier in
 * map_write_ready()).
 */
void rcow_gate_open(struct rcow *rc)
{
	/* Pairs with smp_rmb() in map_write_ready(). */
	smp_mb__before_atomic();
	clear_bit(RCOW_F_WRITE_GATE, &rc->flags);
}

/*
 * Worker: two in-memory sets of one bit per extent for a job (the commit's,
 * the migration's), unless it still has them.  They take 2 bits per
 * extent, 4 MiB per TiB at 64 KiB extents, so they exist only while their
 * job may use them: see rcow_free_sets().
 */
int rcow_alloc_sets(struct rcow *rc, unsigned long **a, unsigned long **b)
{
	if (*a)
		return 0;
	*a = rcow_bitmap_zalloc(rc->nr_extents, GFP_NOIO);
	*b = rcow_bitmap_zalloc(rc->nr_extents, GFP_NOIO);
	if (!*a || !*b) {
		kvfree(*a);
		kvfree(*b);
		*a = NULL;
		*b = NULL;
		return -ENOMEM;
	}
	return 0;
}

/*
 * Worker: give back a job's two sets (*@a, *@b of rcow_alloc_sets()).  The
 * caller saw the job over and cleared the flag that let map or end_io look
 * at them (they look in RCU read sections); only the worker starts a job,
 * so none starts meanwhile.  Once the readers that saw the flag are gone
 * (a grace period), the sets leave the job under @lock, the job's lock
 * (its pointers NULL from then on).  A netlink handler that saw the job
 * running may still hold them: it runs under rcow_nl_lock, so wait for it.
 */
void rcow_free_sets(spinlock_t *lock, unsigned long **a, unsigned long **b)
{
	unsigned long *pa, *pb;

	synchronize_rcu();
	spin_lock(lock);
	pa = *a;
	pb = *b;
	WRITE_ONCE(*a, NULL);
	WRITE_ONCE(*b, NULL);
	spin_unlock(lock);
	rcow_nl_barrier();
	kvfree(pa);
	kvfree(pb);
}

/* Worker: the commit is over (done or failed): its sets go. */
static void trim_sets(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);
	bool over;

	if (!cm->upload)		/* written only by the worker */
		return;
	spin_lock(&cm->lock);
	over = cm->state != RCOW_COMMIT_UPLOADING;
	spin_unlock(&cm->lock);
	/* end_commit() cleared RCOW_F_HOLDING (map's look) with the state. */
	if (over)
		rcow_free_sets(&cm->lock, &cm->upload, &cm->held);
}

/* Worker: the freeze asked by rcow_commit_message(). */
static void do_freeze(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);
	u64 gen, frozen = 0;
	char *uri;
	int r;

	spin_lock(&cm->lock);
	uri = cm->req_uri;
	cm->req_uri = NULL;
	gen = cm->gen + 1;
	spin_unlock(&cm->lock);
	if (!uri)
		return;

	r = rcow_alloc_sets(rc, &cm->upload, &cm->held);
	if (r)
		goto out;
	r = rcow_gate_close(rc, "snapshot commit");
	if (r)
		goto open_gate;
	r = rcow_md_freeze(rc->md, cm->req_since_last, gen, cm->upload,
			   &frozen);
	if (r) {
		DMERR("%s: snapshot commit: cannot freeze (metadata write failed: %d)",
		      rc->name, r);
		rcow_set_failed(rc);
		goto open_gate;
	}
	bitmap_copy(cm->held, cm->upload, rc->nr_extents);

	spin_lock(&cm->lock);
	kfree(cm->uri);
	cm->uri = uri;
	uri = NULL;
	cm->gen = gen;
	cm->since_last = cm->req_since_last;
	cm->total = frozen;
	atomic64_set(&cm->done, 0);
	cm->state = RCOW_COMMIT_UPLOADING;
	cm->started = jiffies;
	set_bit(RCOW_F_HOLDING, &rc->flags);
	spin_unlock(&cm->lock);
	DMINFO("%s: snapshot commit %llu: %llu extents frozen%s, uploading to %s",
	       rc->name, gen, frozen, cm->since_last ? " (since last)" : "",
	       cm->uri);
open_gate:
	/* Writes the gate sent to the worker meet the held set now. */
	rcow_gate_open(rc);
out:
	kfree(uri);
	cm->req_result = r;
	complete(&cm->frozen);
	if (!r) {
		rcow_nl_commit_start(rc);
		set_bit(RCOW_F_EVENT, &rc->flags);
	}
}

/* Worker: COMMIT_END 0 was accepted: make it durable. */
static void do_finish(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);
	u64 gen;
	int r;

	spin_lock(&cm->lock);
	if (!cm->finish || cm->state != RCOW_COMMIT_UPLOADING) {
		cm->finish = false;
		spin_unlock(&cm->lock);
		return;
	}
	cm->finish = false;
	gen = cm->gen;
	spin_unlock(&cm->lock);

	r = rcow_md_commit_done(rc->md, gen);
	if (r) {
		rcow_set_failed(rc);
		end_commit(rc, RCOW_COMMIT_FAILED,
			   "cannot record it on the COW device", false);
		return;
	}
	end_commit(rc, RCOW_COMMIT_DONE, NULL, false);
}

static void check_preserve_timeout(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);
	unsigned long limit = msecs_to_jiffies(RCOW_PRESERVE_TIMEOUT_MS);
	struct rcow_held *h;
	bool expired = false;
	unsigned int bkt;

	spin_lock(&cm->lock);
	if (cm->state == RCOW_COMMIT_UPLOADING)
		hash_for_each(cm->held_hash, bkt, h, node)
			if (time_after(jiffies, h->since + limit))
				expired = true;
	spin_unlock(&cm->lock);
	if (expired)
		end_commit(rc, RCOW_COMMIT_FAILED,
			   "the helper did not preserve a frozen extent a write waits on within 30 s",
			   true);
}

void rcow_commit_work(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);

	if (READ_ONCE(cm->req_uri))
		do_freeze(rc);
	if (READ_ONCE(cm->finish))
		do_finish(rc);
	if (READ_ONCE(cm->state) == RCOW_COMMIT_UPLOADING) {
		check_preserve_timeout(rc);
		send_preserves(rc);
	} else {
		trim_sets(rc);
	}
}

/* A URI the helper can upload to: an NBD export, no whitespace. */
static bool valid_target_uri(const char *uri)
{
	size_t len = strlen(uri);
	const char *p;

	if (!len || len > REMOTE_COW_MAX_URI)
		return false;
	for (p = uri; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return (str_has_prefix(uri, "nbd://") && len > 6) ||
	       (str_has_prefix(uri, "nbds://") && len > 7) ||
	       str_has_prefix(uri, "nbd+unix://") ||
	       str_has_prefix(uri, "nbds+unix://");
}

/*
 * The checks before a snapshot commit or a migration starts, shared so
 * that both report them alike.  rcow_job_may_start() runs before the
 * message allocates anything: the table must be writable and a helper
 * connected to carry the job.  rcow_job_may_start_locked() runs with
 * message_lock held, so that neither a suspend nor another job can begin
 * between the check and the start: the table must be active, and no
 * migration nor snapshot commit may be running.
 */
int rcow_job_may_start(struct rcow *rc, const char *what, const char *verb)
{
	enum rcow_mode mode = READ_ONCE(rc->mode);

	if (mode != RCOW_MODE_RW) {
		DMWARN("%s: %s: the table is %s", rc->name, what,
		       mode == RCOW_MODE_RO ? "read-only" :
		       "failed (metadata write error)");
		return -EROFS;
	}
	if (!rcow_nl_helper_connected()) {
		DMWARN("%s: %s: no helper (remote-cowd) is connected to %s",
		       rc->name, what, verb);
		return -ENOTCONN;
	}
	return 0;
}

int rcow_job_may_start_locked(struct rcow *rc, const char *what)
{
	struct rcow_commit *cm = cm_of(rc);
	int r;

	lockdep_assert_held(&cm->message_lock);
	if (cm->suspended || test_bit(RCOW_F_QUIESCED, &rc->flags)) {
		DMWARN("%s: %s: the table is not active (suspended or not resumed)",
		       rc->name, what);
		return -EAGAIN;
	}
	r = rcow_migrate_busy(rc, what);
	if (r)
		return r;
	/* Only a message (under message_lock) starts a commit. */
	if (READ_ONCE(cm->state) == RCOW_COMMIT_UPLOADING) {
		DMWARN("%s: %s: snapshot commit %llu is still running",
		       rc->name, what, cm->gen);
		return -EBUSY;
	}
	return 0;
}

int rcow_commit_message(struct rcow *rc, unsigned int argc, char **argv)
{
	struct rcow_commit *cm = cm_of(rc);
	bool since_last = false;
	char *uri;
	int r;

	if (argc < 3 || argc > 4 ||
	    (argc == 4 && strcasecmp(argv[3], "since-last"))) {
		DMWARN("%s: usage: snapshot commit <nbd_uri> [since-last]",
		       rc->name);
		return -EINVAL;
	}
	since_last = argc == 4;
	if (!valid_target_uri(argv[2])) {
		DMWARN("%s: snapshot commit: '%s' is not an NBD URI (nbd://, nbds://, nbd+unix://)",
		       rc->name, argv[2]);
		return -EINVAL;
	}
	r = rcow_job_may_start(rc, "snapshot commit", "upload");
	if (r)
		return r;
	uri = kstrdup(argv[2], GFP_KERNEL);
	if (!uri)
		return -ENOMEM;

	mutex_lock(&cm->message_lock);
	r = rcow_job_may_start_locked(rc, "snapshot commit");
	if (r) {
		mutex_unlock(&cm->message_lock);
		kfree(uri);
		return r;
	}
	spin_lock(&cm->lock);
	cm->req_since_last = since_last;
	reinit_completion(&cm->frozen);
	cm->req_uri = uri;
	spin_unlock(&cm->lock);
	queue_work(rc->wq, &rc->worker);
	wait_for_completion(&cm->frozen);
	r = cm->req_result;
	mutex_unlock(&cm->message_lock);
	return r;
}

int rcow_commit_abort_message(struct rcow *rc, unsigned int argc)
{
	if (argc != 2) {
		DMWARN("%s: usage: snapshot abort", rc->name);
		return -EINVAL;
	}
	if (READ_ONCE(rc->commit.state) != RCOW_COMMIT_UPLOADING) {
		DMWARN("%s: snapshot abort: no commit is running", rc->name);
		return -ENOENT;
	}
	end_commit(rc, RCOW_COMMIT_FAILED, "aborted (snapshot abort)", true);
	return 0;
}

/*
 * Presuspend: a commit does not outlive its table's activity, and none
 * starts until resume.
 */
void rcow_commit_suspend(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);

	mutex_lock(&cm->message_lock);
	cm->suspended = true;
	mutex_unlock(&cm->message_lock);
	end_commit(rc, RCOW_COMMIT_FAILED,
		   "interrupted by a suspend of the device", true);
}

/* Resume (or presuspend undone). */
void rcow_commit_resume(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);

	mutex_lock(&cm->message_lock);
	cm->suspended = false;
	mutex_unlock(&cm->message_lock);
}

/* Netlink (rcow_nl_lock held). */
int rcow_commit_mark(struct rcow *rc, u64 gen, u64 first, u32 count,
		     u32 mark)
{
	struct rcow_commit *cm = cm_of(rc);
	struct bio_list bios;
	struct rcow_held *h;
	u64 e, uploaded = 0;

	if (mark != RCOW_MARK_PRESERVED && mark != RCOW_MARK_UPLOADED)
		return -EINVAL;
	bio_list_init(&bios);
	spin_lock(&cm->lock);
	if (cm->state != RCOW_COMMIT_UPLOADING || cm->gen != gen) {
		spin_unlock(&cm->lock);
		return -ESTALE;
	}
	for (e = first; e < first + count; e++) {
		if (mark == RCOW_MARK_UPLOADED &&
		    test_and_clear_bit(e, cm->upload))
			uploaded++;
		if (!test_and_clear_bit(e, cm->held))
			continue;
		h = find_held(cm, e);
		if (h) {
			release_held(h, &bios);
			mempool_free(h, &cm->held_pool);
		}
	}
	atomic64_add(uploaded, &cm->done);
	spin_unlock(&cm->lock);
	requeue_bios(rc, &bios);
	return 0;
}

/* Netlink (rcow_nl_lock held). */
int rcow_commit_end(struct rcow *rc, u64 gen, u32 status, const char *msg)
{
	struct rcow_commit *cm = cm_of(rc);
	char why[128];

	spin_lock(&cm->lock);
	if (cm->state != RCOW_COMMIT_UPLOADING || cm->gen != gen) {
		spin_unlock(&cm->lock);
		return -ESTALE;
	}
	if (!status) {
		if (find_first_bit(cm->upload, rc->nr_extents) <
		    rc->nr_extents) {
			spin_unlock(&cm->lock);
			return -EAGAIN;
		}
		cm->finish = true;
		spin_unlock(&cm->lock);
		queue_work(rc->wq, &rc->worker);
		return 0;
	}
	spin_unlock(&cm->lock);
	snprintf(why, sizeof(why), "the helper reports error %u: %s", status,
		 msg ? msg : "(no reason given)");
	end_commit(rc, RCOW_COMMIT_FAILED, why, false);
	return 0;
}

/* Netlink: a helper registered; it hears of the running commit. */
void rcow_commit_helper_arrived(struct rcow *rc)
{
	struct rcow_commit *cm = cm_of(rc);

	spin_lock(&cm->lock);
	list_splice_tail_init(&cm->sent, &cm->unsent);
	spin_unlock(&cm->lock);
}

/*
 * With @want_uri, the caller kfree()s ci->uri (NULL unless uploading, or
 * out of memory).  True while a commit is uploading.
 */
bool rcow_commit_info(struct rcow *rc, struct rcow_commit_info *ci,
		      bool want_uri)
{
	struct rcow_commit *cm = cm_of(rc);

	spin_lock(&cm->lock);
	ci->state = cm->state;
	ci->gen = cm->gen;
	ci->flags = cm->since_last ? RCOW_COMMIT_F_SINCE_LAST : 0;
	ci->total = cm->total;
	ci->done = atomic64_read(&cm->done);
	ci->uri = NULL;
	if (want_uri && cm->state == RCOW_COMMIT_UPLOADING && cm->uri)
		ci->uri = kstrdup(cm->uri, GFP_NOWAIT);
	spin_unlock(&cm->lock);
	return ci->state == RCOW_COMMIT_UPLOADING;
}

const char *rcow_commit_state_name(enum remote_cow_commit_state s)
{
	return s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

/* GET_RUNS and GET_BITMAP over the in-memory sets. */
const unsigned long *rcow_commit_set(struct rcow *rc, u32 set)
{
	struct rcow_commit *cm = cm_of(rc);
	const unsigned long *p = NULL;

	/* Netlink (rcow_nl_lock held): valid until the handler returns. */
	spin_lock(&cm->lock);
	if (cm->state == RCOW_COMMIT_UPLOADING)
		p = set == RCOW_BITMAP_COMMIT_UPLOAD ? cm->upload : cm->held;
	spin_unlock(&cm->lock);
	return p;
}

int __init rcow_commit_module_init(void)
{
	rcow_held_cache = KMEM_CACHE(rcow_held, 0);
	return rcow_held_cache ? 0 : -ENOMEM;
}

void rcow_commit_module_exit(void)
{
	kmem_cache_destroy(rcow_held_cache);
}
