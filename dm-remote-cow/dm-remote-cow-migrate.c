// SPDX-License-Identifier: GPL-2.0
/*
 * Copyright (C) 2026 The dm-remote-cow authors.
 *
 * Live migration, source side: the change sets of the rounds and the
 * fence.  The helper moves the data; see Documentation/migration-design.rst.
 *
 * `migrate send <host:port>` starts a migration.  Its change set,
 * DIRTY_MIGRATE, needs no durability (a source that crashes aborts the
 * migration): it is an in-memory bitmap, set in the target's end_io of
 * every write and discard that completed on the COW device (not at
 * submission: a write still in flight when the helper reads its extent
 * would leave the round with the old content and the bit cleared).  It
 * starts as WRITTEN, taken by the worker with the write gate of the
 * snapshot commit closed and the writes in flight drained.
 *
 * A round is a swap, asked by the helper (MIGRATE_ROUND) and done by the
 * worker with the gate closed and the writes drained, as a freeze is: the
 * change set is added to the round set (what the helper did not send of
 * the last round stays there) and cleared.  With no write in flight, no
 * end_io sets a bit while the swap copies and clears the words, so no
 * change is lost; a write completing after the swap sets its bit for the
 * next round.  The helper reads the round's extents after the swap, so it
 * reads each write of the round or a later one, and marks them sent
 * (MIGRATE_MARK): they leave the round set.
 *
 * Mirroring (convergence).  When rounds stop shrinking (the guest writes
 * faster than the link), the helper asks for a round with
 * RCOW_MIGRATE_F_MIRROR: with that swap, state "mirroring", and from then
 * on end_io holds every successful write (DM_ENDIO_INCOMPLETE, on the
 * held list) after recording, with its extents in the change set, the
 * round number then current.  A round taken after that (a larger number)
 * carries the extents, read after the swap; once the helper has marked
 * all of them sent (the destination flushed them) the write is ended
 * again, and completes.  So the guest writes no faster than the helper
 * sends, and what a last round has to send is bounded by the writes in
 * flight.  The hold only paces the guest: the content is carried by the
 * change set as always, so letting the writes go early loses nothing,
 * and an abort, a failure, a suspend or the helper's exit does so.
 * The number is read after the bit is set and before write_landed():
 * with the writes drained for the swap, no held write can straddle it.
 * When the first write starts to wait, the worker tells the helper
 * (MIGRATE_WAITING) so that it takes a round at once.
 *
 * `migrate finish` sets RCOW_F_FENCED and drains: from then on every
 * write fails with EIO (map, and the worker for the writes that passed map
 * before), so the source never accepts a write once the destination may
 * serve.  The helper takes the last round, has the destination commit and
 * reports it (MIGRATE_END 0): the migration is done.  The fence stays as
 * long as the table, across suspend and resume, and across a reload: a
 * COW device whose table migrated away is listed (rcow_migrated) while a
 * table over it exists, and a new table over it starts done and fenced;
 * the removal of the last one drops it.  `migrate abort` (any time before
 * done) or a helper's error (MIGRATE_END with an error) lifts it - but an
 * error with RCOW_MIGRATE_F_KEEP_FENCE (the helper cannot tell whether the
 * destination took over) keeps it: state failed, listed as "unknown" (a
 * new table starts failed and fenced), until migrate abort unlists it.
 *
 * Throttle (delay-doubling, Bradford et al.): a policy of the helper for
 * links where mirroring's wait for the destination is too long.  While
 * copying, a MIGRATE_ROUND may carry a delay (RCOW_A_MIGRATE_DELAY_MS):
 * from then on end_io holds every successful write for that long after it
 * completed on the COW device (the slowed list, ended by slow_work), so
 * the guest writes slower and the rounds can shrink.  The helper doubles
 * the delay while they do not; the kernel only applies it.  Like a held
 * write, a slowed one is on the COW device and in the change set: ending
 * it late changes nothing but its latency, so mirroring, the fence, an
 * abort, the end, a suspend or the helper's exit end them all at once and
 * turn the throttle off (a ROUND without a delay does too).
 *
 * Post-copy: `migrate finish postcopy` fences as finish does and flags
 * MIGRATE_FINISH with RCOW_MIGRATE_F_POSTCOPY; the helper names the last
 * round to the destination as remote, has it serve, and sends
 * MIGRATE_POSTCOPY here: state postcopy, still fenced, rounds and marks
 * go on while the destination fetches, MIGRATE_END as while finishing.
 * The destination runs the guest from then on, so migrate abort is
 * refused and a failed end keeps the fence as KEEP_FENCE does.
 *
 * Locking: mg->lock (a spinlock, never taken from interrupts) protects
 * the state, the counters, the target and the requests, and the round
 * set's changes: the swap and the marks.  It nests inside nothing and
 * nothing is taken inside it.  The change set is set with atomic bitops
 * from end_io, without the lock (in an RCU read section, while
 * RCOW_F_MIGRATING is set), and replaced by the worker only with the
 * writes drained.  Both bitmaps are allocated by migrate send and given
 * back by the worker once the migration is over (trim_sets()): their
 * pointers change only in the worker, and under mg->lock while no
 * migration runs; netlink handlers look at them only under mg->lock or
 * after seeing a migration running.
 * mg->held_lock (irq-safe, taken from end_io) protects the held writes,
 * their count and mirror_on, and the slowed writes, their count and the
 * delay; it is taken inside mg->lock only to switch holding or the
 * throttle on or off, nothing is taken inside it, and held or slowed
 * writes are ended outside it.  RCOW_F_THROTTLE follows a non-zero delay
 * as RCOW_F_MIRROR follows mirror_on.  RCOW_F_MIRROR follows
 * mirror_on for end_io's unlocked look.
 * Messages are serialised with the snapshot commit's (cm->message_lock):
 * one of the two runs at a time.  rcow_migrated_lock (a mutex) protects
 * the list of migrated COW devices and their table counts; nothing is
 * taken inside it.
 */

#include <linux/ctype.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-remote-cow.h"

#define DM_MSG_PREFIX "remote-cow"
#define MIGRATE_USAGE "migrate send <host:port> | migrate finish [postcopy] | migrate abort"

static const char * const state_names[] = {
	[RCOW_MIGRATE_IDLE] = "idle",
	[RCOW_MIGRATE_COPYING] = "copying",
	[RCOW_MIGRATE_MIRRORING] = "mirroring",
	[RCOW_MIGRATE_FINISHING] = "finishing",
	[RCOW_MIGRATE_DONE] = "done",
	[RCOW_MIGRATE_FAILED] = "failed",
	[RCOW_MIGRATE_INCOMING] = "incoming",
	[RCOW_MIGRATE_POSTCOPY] = "postcopy",
};

/* A COW device whose table migrated away, while tables over it exist. */
struct rcow_migrated {
	struct list_head node;
	dev_t cow;
	unsigned int tables;
	bool unknown;			/* failed, outcome unknown: abort lifts it */
};

static DEFINE_MUTEX(rcow_migrated_lock);
static LIST_HEAD(rcow_migrated);

static struct rcow_migrate *mg_of(struct rcow *rc)
{
	return &rc->migrate;
}

/* Copying, mirroring, finishing or post-copy: rounds may be taken. */
static bool running(enum remote_cow_migrate_state s)
{
	return s == RCOW_MIGRATE_COPYING || s == RCOW_MIGRATE_MIRRORING ||
	       s == RCOW_MIGRATE_FINISHING || s == RCOW_MIGRATE_POSTCOPY;
}

/* Fenced, the destination may serve: the end may come. */
static bool ending(enum remote_cow_migrate_state s)
{
	return s == RCOW_MIGRATE_FINISHING || s == RCOW_MIGRATE_POSTCOPY;
}

static void slow_fn(struct work_struct *work);

void rcow_migrate_init(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);

	spin_lock_init(&mg->lock);
	spin_lock_init(&mg->held_lock);
	bio_list_init(&mg->held);
	bio_list_init(&mg->slowed);
	INIT_DELAYED_WORK(&mg->slow_work, slow_fn);
	init_completion(&mg->req_done);
	mg->state = RCOW_MIGRATE_IDLE;
}

/* rcow_migrated_lock held. */
static struct rcow_migrated *find_migrated(dev_t cow)
{
	struct rcow_migrated *m;

	list_for_each_entry(m, &rcow_migrated, node)
		if (m->cow == cow)
			return m;
	return NULL;
}

/*
 * Constructor, the COW device open: a table over a COW device that
 * migrated away starts done and fenced.  Preallocates the list entry
 * the end of a migration needs.
 */
int rcow_migrate_ctr(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);
	struct rcow_migrated *m;

	mg->listed = kzalloc(sizeof(*mg->listed), GFP_KERNEL);
	if (!mg->listed)
		return -ENOMEM;
	mutex_lock(&rcow_migrated_lock);
	m = find_migrated(rc->cow_dev->bdev->bd_dev);
	if (m) {
		m->tables++;
		kfree(mg->listed);
		mg->listed = m;
		mg->in_list = true;
		mg->state = m->unknown ? RCOW_MIGRATE_FAILED : RCOW_MIGRATE_DONE;
		set_bit(RCOW_F_FENCED, &rc->flags);
	}
	mutex_unlock(&rcow_migrated_lock);
	if (m)
		DMINFO("%s: COW device %s %s: the table is fenced", rc->name,
		       rc->cow_dev->name, mg->state == RCOW_MIGRATE_DONE ?
		       "migrated away" : "may have migrated away (migrate abort lifts it)");
	return 0;
}

/*
 * The migration is done, or its outcome is unknown (@unknown): list the
 * COW device, so that a new table over it starts fenced.
 */
static void list_migrated(struct rcow *rc, bool unknown)
{
	struct rcow_migrate *mg = mg_of(rc);
	struct rcow_migrated *m;

	mutex_lock(&rcow_migrated_lock);
	if (!mg->in_list) {
		m = find_migrated(rc->cow_dev->bdev->bd_dev);
		if (m) {
			kfree(mg->listed);
			mg->listed = m;
		} else {
			m = mg->listed;
			m->cow = rc->cow_dev->bdev->bd_dev;
			list_add(&m->node, &rcow_migrated);
		}
		m->tables++;
		mg->in_list = true;
	}
	mg->listed->unknown = unknown;
	mutex_unlock(&rcow_migrated_lock);
}

/*
 * migrate abort of a migration whose outcome was unknown: the operator
 * says the destination is not used.  Unlist the COW device (a new table
 * over it is writable again), keeping an entry for a later migration.
 */
static int unlist_migrated(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);
	struct rcow_migrated *m, *spare = NULL;
	int r = 0;

	mutex_lock(&rcow_migrated_lock);
	m = mg->in_list ? mg->listed : NULL;
	if (m && m->tables > 1) {
		/* Another table over it still uses the entry. */
		spare = kzalloc(sizeof(*spare), GFP_KERNEL);
		if (!spare) {
			r = -ENOMEM;
			goto out;
		}
		m->tables--;
		mg->listed = spare;
	} else if (m) {
		list_del(&m->node);
		memset(m, 0, sizeof(*m));
	}
	mg->in_list = false;
out:
	mutex_unlock(&rcow_migrated_lock);
	return r;
}

void rcow_migrate_free(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);

	mutex_lock(&rcow_migrated_lock);
	if (mg->in_list && !--mg->listed->tables) {
		list_del(&mg->listed->node);
		kfree(mg->listed);
	} else if (!mg->in_list) {
		kfree(mg->listed);
	}
	mutex_unlock(&rcow_migrated_lock);

	/* Suspended first: presuspend ended every slowed write. */
	cancel_delayed_work_sync(&mg->slow_work);
	WARN_ON_ONCE(!bio_list_empty(&mg->slowed));
	kvfree(mg->dirty);
	kvfree(mg->round_set);
	kfree(mg->target);
	kfree(mg->req_target);
}

/* cm->message_lock held: EBUSY while a migration runs or is done. */
int rcow_migrate_busy(struct rcow *rc, const char *what)
{
	enum remote_cow_migrate_state s = READ_ONCE(mg_of(rc)->state);

	if (test_bit(RCOW_F_INCOMING, &rc->flags)) {
		DMWARN("%s: %s: an incoming migration is not complete",
		       rc->name, what);
		return -EBUSY;
	}
	if (s == RCOW_MIGRATE_FAILED && test_bit(RCOW_F_FENCED, &rc->flags)) {
		DMWARN("%s: %s: the last migration's outcome is unknown (fenced)",
		       rc->name, what);
		return -EBUSY;
	}
	if (!running(s) && s != RCOW_MIGRATE_DONE)
		return 0;
	DMWARN("%s: %s: %s", rc->name, what,
	       s == RCOW_MIGRATE_DONE ?
	       "the device migrated away (fenced until its table is removed)" :
	       s == RCOW_MIGRATE_POSTCOPY ?
	       "post-copy: the destination serves and fetches from this device" :
	       "a migration is running (migrate abort stops it)");
	return -EBUSY;
}

/* True (and logged) if @bio writes to a fenced device: it must fail. */
bool rcow_migrate_fenced(struct rcow *rc, struct bio *bio)
{
	if (likely(!test_bit(RCOW_F_FENCED, &rc->flags)) ||
	    !op_is_write(bio_op(bio)))
		return false;
	DMERR_LIMIT("%s: write to sector %llu refused: the device is migrating away (fenced)",
		    rc->name, (unsigned long long)bio->bi_iter.bi_sector);
	return true;
}

static void raise_event(struct rcow *rc)
{
	set_bit(RCOW_F_EVENT, &rc->flags);
	queue_work(rc->wq, &rc->worker);
}

/*
 * end_io of a write or discard that completed on extents [first, last]
 * (before write_landed()).  Mirroring, @mh records it for holding;
 * throttled, for slowing down.
 */
void rcow_migrate_written(struct rcow *rc, struct rcow_mirror_hold *mh,
			  u64 first, u64 last)
{
	struct rcow_migrate *mg = mg_of(rc);
	u64 e;

	rcu_read_lock();	/* pairs with trim_sets() */
	if (!test_bit(RCOW_F_MIGRATING, &rc->flags)) {
		rcu_read_unlock();
		return;
	}
	for (e = first; e <= last; e++)
		set_bit(e, mg->dirty);
	rcu_read_unlock();
	if (!test_bit(RCOW_F_MIRROR, &rc->flags)) {
		if (unlikely(test_bit(RCOW_F_THROTTLE, &rc->flags))) {
			mh->slow = true;
			mh->hold = true;
		}
		return;
	}
	/* After the bits: the next swap has them and a larger number. */
	smp_mb__after_atomic();
	mh->first = first;
	mh->last = last;
	mh->round = READ_ONCE(mg->round);
	mh->hold = true;
}

/*
 * end_io, after write_landed(): hold a write recorded for mirroring.
 * True if held: the caller must not touch the bio any more.
 */
bool rcow_migrate_hold(struct rcow *rc, struct bio *bio)
{
	struct rcow_migrate *mg = mg_of(rc);
	unsigned long flags;
	bool kick;

	struct rcow_mirror_hold *mh = rcow_bio_mirror(bio);

	mh->hold = false;
	spin_lock_irqsave(&mg->held_lock, flags);
	if (mh->slow) {
		/* Mirroring since: not recorded for it, and not slowed. */
		mh->slow = false;
		if (mg->mirror_on || !mg->delay) {
			spin_unlock_irqrestore(&mg->held_lock, flags);
			return false;
		}
		mh->until = jiffies + mg->delay;
		if (bio_list_empty(&mg->slowed))
			queue_delayed_work(system_wq, &mg->slow_work, mg->delay);
		bio_list_add(&mg->slowed, bio);
		mg->nr_slowed++;
		spin_unlock_irqrestore(&mg->held_lock, flags);
		return true;
	}
	if (!mg->mirror_on) {
		spin_unlock_irqrestore(&mg->held_lock, flags);
		return false;
	}
	kick = bio_list_empty(&mg->held);
	bio_list_add(&mg->held, bio);
	mg->nr_held++;
	spin_unlock_irqrestore(&mg->held_lock, flags);
	if (kick) {
		set_bit(RCOW_F_MIRROR_KICK, &rc->flags);
		queue_work(rc->wq, &rc->worker);
	}
	return true;
}

/* A held write may go: a round after it sent all its extents. */
static bool mirrored(struct rcow *rc, struct rcow_mirror_hold *mh, u64 round)
{
	/* Netlink (MARK): none, the migration is over (trim_sets()). */
	const unsigned long *set = READ_ONCE(mg_of(rc)->round_set);
	u64 e;

	if (mh->round >= round)
		return false;
	if (!set)
		return true;
	for (e = mh->first; e <= mh->last; e++)
		if (test_bit(e, set))
			return false;
	return true;
}

/*
 * The slowed writes whose time came, or all of them with the throttle
 * off; then again when the next one's comes.  The list is in the order
 * the writes completed, but the delay may have changed: look at each.
 */
static void slow_fn(struct work_struct *work)
{
	struct rcow_migrate *mg = container_of(to_delayed_work(work),
					       struct rcow_migrate, slow_work);
	unsigned long now = jiffies, next = 0;
	struct bio_list go, keep;
	struct rcow_mirror_hold *mh;
	bool wait = false;
	struct bio *bio;

	bio_list_init(&go);
	bio_list_init(&keep);
	spin_lock_irq(&mg->held_lock);
	while ((bio = bio_list_pop(&mg->slowed))) {
		mh = rcow_bio_mirror(bio);
		if (!mg->delay || time_after_eq(now, mh->until)) {
			bio_list_add(&go, bio);
			continue;
		}
		if (!wait || time_before(mh->until, next))
			next = mh->until;
		wait = true;
		bio_list_add(&keep, bio);
	}
	bio_list_merge(&mg->slowed, &keep);
	if (wait)
		queue_delayed_work(system_wq, &mg->slow_work, next - now);
	spin_unlock_irq(&mg->held_lock);
	while ((bio = bio_list_pop(&go)))
		bio_endio(bio);
}

/*
 * Slow writes down by @delay jiffies from now on (0: no more, and the
 * slowed ones go at once).  mg->lock held, or nothing else.
 */
static void set_delay(struct rcow *rc, unsigned long delay)
{
	struct rcow_migrate *mg = mg_of(rc);
	unsigned long flags;

	spin_lock_irqsave(&mg->held_lock, flags);
	mg->delay = delay;
	if (delay)
		set_bit(RCOW_F_THROTTLE, &rc->flags);
	else
		clear_bit(RCOW_F_THROTTLE, &rc->flags);
	if (!delay && !bio_list_empty(&mg->slowed))
		mod_delayed_work(system_wq, &mg->slow_work, 0);
	spin_unlock_irqrestore(&mg->held_lock, flags);
}

/*
 * End the held writes that may go, or all of them (@all); with @stop,
 * hold no more, and slow none down either.  Not from interrupts.
 */
static void release_held(struct rcow *rc, bool all, bool stop)
{
	struct rcow_migrate *mg = mg_of(rc);
	struct bio_list go, keep;
	u64 round = READ_ONCE(mg->round);
	struct bio *bio;

	bio_list_init(&go);
	bio_list_init(&keep);
	spin_lock_irq(&mg->held_lock);
	if (stop) {
		mg->mirror_on = false;
		clear_bit(RCOW_F_MIRROR, &rc->flags);
	}
	while ((bio = bio_list_pop(&mg->held))) {
		if (all || mirrored(rc, rcow_bio_mirror(bio), round))
			bio_list_add(&go, bio);
		else
			bio_list_add(&keep, bio);
	}
	bio_list_merge(&mg->held, &keep);
	spin_unlock_irq(&mg->held_lock);
	if (stop)
		set_delay(rc, 0);
	while ((bio = bio_list_pop(&go)))
		bio_endio(bio);
}

/* mg->lock held, writes drained (the swap): hold from now on. */
static void start_mirror(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);

	spin_lock_irq(&mg->held_lock);
	mg->mirror_on = true;
	set_bit(RCOW_F_MIRROR, &rc->flags);
	spin_unlock_irq(&mg->held_lock);
	set_delay(rc, 0);
}

/* Presuspend: held or slowed writes must not keep the suspend waiting. */
void rcow_migrate_suspend(struct rcow *rc)
{
	release_held(rc, true, true);
	flush_delayed_work(&mg_of(rc)->slow_work);
}

/* Resume, or a suspend undone: mirroring again if it was. */
void rcow_migrate_resume(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);

	spin_lock(&mg->lock);
	if (mg->state == RCOW_MIGRATE_MIRRORING)
		start_mirror(rc);
	spin_unlock(&mg->lock);
}

/*
 * The helper is gone: nobody sends the rounds that would let held writes
 * go.  Let them go and hold no more; the next helper asks again.
 */
void rcow_migrate_helper_left(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);
	bool was;

	spin_lock(&mg->lock);
	was = mg->state == RCOW_MIGRATE_MIRRORING;
	if (was)
		mg->state = RCOW_MIGRATE_COPYING;
	spin_unlock(&mg->lock);
	release_held(rc, true, true);
	if (was) {
		DMWARN("%s: helper gone while mirroring: writes no longer wait",
		       rc->name);
		raise_event(rc);
	}
}

/* Worker: migrate send.  The first round's set is WRITTEN. */
static void do_start(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);
	char *target;
	int r;

	spin_lock(&mg->lock);
	target = mg->req_target;
	mg->req_target = NULL;
	spin_unlock(&mg->lock);
	if (!target)
		return;

	r = rcow_alloc_sets(rc, &mg->dirty, &mg->round_set);
	if (r)
		goto out;
	r = rcow_gate_close(rc, "migrate send");
	if (r)
		goto open_gate;
	/* Read from WRITTEN's blocks: may wait for a metadata commit. */
	r = rcow_md_copy_set(rc->md, RCOW_BITMAP_WRITTEN, mg->dirty);
	if (r) {
		DMERR("%s: migrate send: cannot read the written set: %d",
		      rc->name, r);
		goto open_gate;
	}
	spin_lock(&mg->lock);
	bitmap_zero(mg->round_set, rc->nr_extents);
	kfree(mg->target);
	mg->target = target;
	target = NULL;
	mg->round = 0;
	mg->total = 0;
	mg->done = 0;
	mg->state = RCOW_MIGRATE_COPYING;
	spin_unlock(&mg->lock);
	spin_lock_irq(&mg->held_lock);
	mg->nr_held = 0;
	mg->nr_slowed = 0;
	spin_unlock_irq(&mg->held_lock);
	/* Writes let through by the gate now mark the change set. */
	set_bit(RCOW_F_MIGRATING, &rc->flags);
	DMINFO("%s: migration to %s started: %llu written extents to send",
	       rc->name, mg->target, rcow_md_count(rc->md, RCOW_BITMAP_WRITTEN));
open_gate:
	rcow_gate_open(rc);
out:
	kfree(target);
	mg->req_result = r;
	complete(&mg->req_done);
	if (!r) {
		rcow_nl_migrate_event(rc, RCOW_CMD_MIGRATE_START);
		raise_event(rc);
	}
}

/*
 * Worker: migrate finish.  The fence, then the writes drained.  With
 * postcopy, MIGRATE_FINISH asks the helper for a post-copy finish.
 */
static void do_finish(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);
	bool postcopy = false;
	u64 left;
	int r;

	set_bit(RCOW_F_FENCED, &rc->flags);
	r = rcow_gate_close(rc, "migrate finish");
	rcow_gate_open(rc);
	if (r) {
		clear_bit(RCOW_F_FENCED, &rc->flags);
	} else {
		spin_lock(&mg->lock);
		mg->state = RCOW_MIGRATE_FINISHING;
		set_delay(rc, 0);
		/* Drained: what the last round(s) must still send. */
		left = bitmap_weight(mg->round_set, rc->nr_extents) +
		       bitmap_weight(mg->dirty, rc->nr_extents);
		postcopy = mg->req_postcopy;
		spin_unlock(&mg->lock);
		DMINFO("%s: migration to %s finishing%s: writes are refused from now on",
		       rc->name, mg->target, postcopy ? " (post-copy)" : "");
		DMINFO("%s: %llu extents left to send", rc->name, left);
	}
	mg->req_result = r;
	complete(&mg->req_done);
	if (!r) {
		rcow_nl_migrate_finish_event(rc, postcopy ?
					     RCOW_MIGRATE_F_POSTCOPY : 0);
		raise_event(rc);
	}
}

/* Worker: the round the helper asked for. */
static void do_round(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);
	bool mirror = false;
	u64 left, now;
	int r;

	spin_lock(&mg->lock);
	mg->req_round = false;
	r = running(mg->state) ? 0 : -ESTALE;
	spin_unlock(&mg->lock);
	if (r)
		return;

	r = rcow_gate_close(rc, "migration round");
	if (!r) {
		/* No write in flight: no end_io sets a bit meanwhile. */
		spin_lock(&mg->lock);
		if (!running(mg->state)) {
			/* Aborted meanwhile. */
			spin_unlock(&mg->lock);
			rcow_gate_open(rc);
			return;
		}
		left = mg->total - mg->done;
		bitmap_or(mg->round_set, mg->round_set, mg->dirty,
			  rc->nr_extents);
		bitmap_zero(mg->dirty, rc->nr_extents);
		now = bitmap_weight(mg->round_set, rc->nr_extents);
		mg->total += now - left;
		mg->round++;
		if (mg->req_mirror && mg->state == RCOW_MIGRATE_COPYING) {
			/* Drained: every write from now on is held. */
			mg->state = RCOW_MIGRATE_MIRRORING;
			start_mirror(rc);
			mirror = true;
		}
		mg->req_mirror = false;
		spin_unlock(&mg->lock);
	}
	rcow_gate_open(rc);
	if (r) {
		/* The helper asks again; the change set is intact. */
		return;
	}
	DMINFO("%s: migration round %llu: %llu extents", rc->name, mg->round,
	       now);
	if (mirror) {
		DMINFO("%s: migration to %s mirroring: writes wait for the destination",
		       rc->name, mg->target);
		raise_event(rc);
	}
	rcow_nl_migrate_event(rc, RCOW_CMD_MIGRATE_ROUND);
}

/* Worker: the migration is over (done, failed, aborted): its sets go. */
static void trim_sets(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);
	bool over;

	if (!mg->dirty)			/* written only by the worker */
		return;
	spin_lock(&mg->lock);
	over = !running(mg->state);
	/* Still set once done: end_io stops looking at the change set. */
	if (over)
		clear_bit(RCOW_F_MIGRATING, &rc->flags);
	spin_unlock(&mg->lock);
	if (over)
		rcow_free_sets(&mg->lock, &mg->dirty, &mg->round_set);
}

void rcow_migrate_work(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);

	if (READ_ONCE(mg->req_target))
		do_start(rc);
	if (READ_ONCE(mg->req_finish)) {
		WRITE_ONCE(mg->req_finish, false);
		do_finish(rc);
	}
	if (READ_ONCE(mg->req_round))
		do_round(rc);
	if (test_bit(RCOW_F_MIRROR_KICK, &rc->flags) &&
	    test_and_clear_bit(RCOW_F_MIRROR_KICK, &rc->flags))
		rcow_nl_migrate_event(rc, RCOW_CMD_MIGRATE_WAITING);
	trim_sets(rc);
}

/*
 * HOST:PORT: a DNS name or IPv4 address, or an IPv6 address in brackets,
 * and a port from 1 to 65535.
 */
static bool valid_target(const char *t)
{
	const char *colon = strrchr(t, ':'), *p;
	size_t len = strlen(t);
	unsigned int port;

	if (!len || len > REMOTE_COW_MAX_TARGET || !colon || colon == t ||
	    kstrtouint(colon + 1, 10, &port) || !port || port > 65535 ||
	    !isdigit(colon[1]))
		return false;
	if (t[0] == '[') {
		if (colon[-1] != ']' || colon - t < 3)
			return false;
		for (p = t + 1; p < colon - 1; p++)
			if (!isxdigit(*p) && *p != ':' && *p != '.')
				return false;
		return true;
	}
	for (p = t; p < colon; p++)
		if (!isalnum(*p) && *p != '.' && *p != '-')
			return false;
	return t[0] != '-' && t[0] != '.';
}

/* cm->message_lock held: queue a request to the worker and wait for it. */
static int ask_worker(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);

	queue_work(rc->wq, &rc->worker);
	wait_for_completion(&mg->req_done);
	return mg->req_result;
}

static int message_send(struct rcow *rc, unsigned int argc, char **argv)
{
	struct rcow_commit *cm = &rc->commit;
	struct rcow_migrate *mg = mg_of(rc);
	char *target;
	int r;

	if (argc != 3) {
		DMWARN("%s: usage: migrate send <host:port>", rc->name);
		return -EINVAL;
	}
	if (!valid_target(argv[2])) {
		DMWARN("%s: migrate send: '%.64s' is not HOST:PORT (port 1 to 65535)",
		       rc->name, argv[2]);
		return -EINVAL;
	}
	r = rcow_job_may_start(rc, "migrate send", "send");
	if (r)
		return r;
	target = kstrdup(argv[2], GFP_KERNEL);
	if (!target)
		return -ENOMEM;

	mutex_lock(&cm->message_lock);
	r = rcow_job_may_start_locked(rc, "migrate send");
	if (r) {
		mutex_unlock(&cm->message_lock);
		kfree(target);
		return r;
	}
	reinit_completion(&mg->req_done);
	spin_lock(&mg->lock);
	mg->req_target = target;
	spin_unlock(&mg->lock);
	r = ask_worker(rc);
	mutex_unlock(&cm->message_lock);
	return r;
}

/* migrate finish [postcopy] */
static int message_finish(struct rcow *rc, bool postcopy)
{
	struct rcow_commit *cm = &rc->commit;
	struct rcow_migrate *mg = mg_of(rc);
	int r = 0;

	mutex_lock(&cm->message_lock);
	spin_lock(&mg->lock);
	if (mg->state != RCOW_MIGRATE_COPYING &&
	    mg->state != RCOW_MIGRATE_MIRRORING)
		r = ending(mg->state) ||
		    mg->state == RCOW_MIGRATE_DONE ? -EALREADY : -ENOENT;
	else
		mg->req_postcopy = postcopy;
	spin_unlock(&mg->lock);
	if (r) {
		mutex_unlock(&cm->message_lock);
		DMWARN("%s: migrate finish: %s", rc->name,
		       r == -ENOENT ? "no migration is running" :
		       "the migration is already finishing or done");
		return r;
	}
	/* where the storage downtime starts (bench-migrate.sh) */
	DMINFO("%s: migrate finish%s: fencing", rc->name,
	       postcopy ? " postcopy" : "");
	reinit_completion(&mg->req_done);
	WRITE_ONCE(mg->req_finish, true);
	r = ask_worker(rc);
	mutex_unlock(&cm->message_lock);
	return r;
}

/*
 * mg->lock held: back to @state, the fence lifted, the sets cleared (and
 * the counters, back to idle).  The caller then lets the held writes go
 * (release_held()).
 */
static void stop_locked(struct rcow *rc, enum remote_cow_migrate_state state)
{
	struct rcow_migrate *mg = mg_of(rc);

	mg->state = state;
	if (state == RCOW_MIGRATE_IDLE) {
		mg->round = 0;
		mg->total = 0;
		mg->done = 0;
	}
	clear_bit(RCOW_F_MIGRATING, &rc->flags);
	clear_bit(RCOW_F_FENCED, &rc->flags);
	/* A table that started failed (listed) never had sets. */
	if (mg->round_set)
		bitmap_zero(mg->round_set, rc->nr_extents);
	if (mg->dirty)
		bitmap_zero(mg->dirty, rc->nr_extents);
}

static int message_abort(struct rcow *rc)
{
	struct rcow_commit *cm = &rc->commit;
	struct rcow_migrate *mg = mg_of(rc);
	enum remote_cow_migrate_state old;
	int r;

	mutex_lock(&cm->message_lock);
	/* An unknown outcome (listed, failed): writable from now on. */
	if (READ_ONCE(mg->state) == RCOW_MIGRATE_FAILED && mg->in_list) {
		r = unlist_migrated(rc);
		if (r) {
			mutex_unlock(&cm->message_lock);
			return r;
		}
	}
	spin_lock(&mg->lock);
	old = mg->state;
	/* Post-copy: the destination runs the guest and fetches from here. */
	if (old != RCOW_MIGRATE_POSTCOPY &&
	    (running(old) || old == RCOW_MIGRATE_FAILED))
		stop_locked(rc, RCOW_MIGRATE_IDLE);
	spin_unlock(&mg->lock);
	mutex_unlock(&cm->message_lock);
	if (old == RCOW_MIGRATE_POSTCOPY) {
		DMWARN("%s: migrate abort refused: post-copy (the destination runs the guest)",
		       rc->name);
		return -EBUSY;
	}
	release_held(rc, true, true);

	if (old == RCOW_MIGRATE_DONE) {
		DMWARN("%s: migrate abort: the migration is done: the device stays fenced",
		       rc->name);
		return -EPERM;
	}
	if (old == RCOW_MIGRATE_IDLE) {
		DMWARN("%s: migrate abort: no migration is running", rc->name);
		return -ENOENT;
	}
	DMWARN("%s: migration to %s aborted (was %s): the device is writable",
	       rc->name, mg->target ?: "(an earlier table's)", state_names[old]);
	if (running(old))
		rcow_nl_migrate_event(rc, RCOW_CMD_MIGRATE_ABORT);
	raise_event(rc);
	return 0;
}

int rcow_migrate_message(struct rcow *rc, unsigned int argc, char **argv)
{
	bool finish = !strcasecmp(argv[1], "finish");

	if (!strcasecmp(argv[1], "send"))
		return message_send(rc, argc, argv);
	if (argc != 2 &&
	    !(finish && argc == 3 && !strcasecmp(argv[2], "postcopy"))) {
		DMWARN("%s: usage: %s", rc->name, MIGRATE_USAGE);
		return -EINVAL;
	}
	if (finish)
		return message_finish(rc, argc == 3);
	return message_abort(rc);
}

/*
 * Netlink (rcow_nl_lock held): MIGRATE_ROUND, done by the worker; with
 * RCOW_MIGRATE_F_MIRROR, mirroring from its swap on.
 */
int rcow_migrate_round(struct rcow *rc, u32 flags, u32 delay_ms)
{
	struct rcow_migrate *mg = mg_of(rc);
	unsigned long delay = msecs_to_jiffies(delay_ms), was = 0;
	bool copying = false;
	int r = -ESTALE;

	spin_lock(&mg->lock);
	if (running(mg->state)) {
		mg->req_round = true;
		if (flags & RCOW_MIGRATE_F_MIRROR)
			mg->req_mirror = true;
		r = 0;
	}
	/* Only while copying: mirroring or the fence turned it off. */
	if (mg->state == RCOW_MIGRATE_COPYING) {
		copying = true;
		was = READ_ONCE(mg->delay);
		set_delay(rc, flags & RCOW_MIGRATE_F_MIRROR ? 0 : delay);
	}
	spin_unlock(&mg->lock);
	if (copying && was != delay && !(flags & RCOW_MIGRATE_F_MIRROR)) {
		if (delay)
			DMINFO("%s: migration to %s throttled: a write completes %u ms late",
			       rc->name, mg->target, jiffies_to_msecs(delay));
		else
			DMINFO("%s: migration to %s: throttle off", rc->name,
			       mg->target);
	}
	if (!r)
		queue_work(rc->wq, &rc->worker);
	return r;
}

/* Netlink (rcow_nl_lock held). */
int rcow_migrate_mark(struct rcow *rc, u64 round, u64 first, u32 count)
{
	struct rcow_migrate *mg = mg_of(rc);
	u64 e;

	spin_lock(&mg->lock);
	if (!running(mg->state) || mg->round != round) {
		spin_unlock(&mg->lock);
		return -ESTALE;
	}
	for (e = first; e < first + count; e++)
		if (test_and_clear_bit(e, mg->round_set))
			mg->done++;
	spin_unlock(&mg->lock);
	/*
	 * Only a mirroring table holds writes (the flag and mirror_on are set
	 * together, and cleared together only by a release of them all); a
	 * write held after this test has this round's number and could not
	 * go on this mark anyway.
	 */
	if (test_bit(RCOW_F_MIRROR, &rc->flags))
		release_held(rc, false, false);
	return 0;
}

/*
 * Netlink (rcow_nl_lock held).  @flags: RCOW_MIGRATE_F_KEEP_FENCE with an
 * error: the outcome is unknown (the destination may have taken over),
 * so the device fails but stays fenced until migrate abort.
 */
int rcow_migrate_end(struct rcow *rc, u32 status, const char *msg, u32 flags)
{
	struct rcow_migrate *mg = mg_of(rc);
	bool keep = status && (flags & RCOW_MIGRATE_F_KEEP_FENCE);
	u64 round, total;
	int r = 0;

	spin_lock(&mg->lock);
	/* Post-copy: the destination runs the guest, whatever failed. */
	if (status && mg->state == RCOW_MIGRATE_POSTCOPY)
		keep = true;
	if (!running(mg->state)) {
		r = -ESTALE;
	} else if (!status) {
		if (!ending(mg->state) ||
		    find_first_bit(mg->round_set, rc->nr_extents) <
		    rc->nr_extents ||
		    find_first_bit(mg->dirty, rc->nr_extents) < rc->nr_extents)
			r = -EAGAIN;
		else
			mg->state = RCOW_MIGRATE_DONE;
	} else {
		stop_locked(rc, RCOW_MIGRATE_FAILED);
		if (keep)
			set_bit(RCOW_F_FENCED, &rc->flags);
	}
	round = mg->round;
	total = mg->total;
	spin_unlock(&mg->lock);
	if (r)
		return r;
	release_held(rc, true, true);
	if (!status) {
		list_migrated(rc, false);
		DMINFO("%s: migration to %s done: %llu extents in %llu rounds; fenced",
		       rc->name, mg->target, total, round);
		if (READ_ONCE(mg->nr_held))
			DMINFO("%s: %llu writes waited for the destination (mirroring)",
			       rc->name, READ_ONCE(mg->nr_held));
		if (READ_ONCE(mg->nr_slowed))
			DMINFO("%s: %llu writes were slowed down (throttle)",
			       rc->name, READ_ONCE(mg->nr_slowed));
	} else {
		DMERR("%s: migration to %s failed: the helper reports error %u: %s",
		      rc->name, mg->target, status,
		      msg ? msg : "(no reason given)");
	}
	if (keep) {
		list_migrated(rc, true);
		DMERR("%s: the destination may have taken over: the device stays fenced",
		      rc->name);
		DMERR("%s: 'migrate abort' makes it writable: only if the destination is unused",
		      rc->name);
	}
	raise_event(rc);
	return 0;
}

/*
 * MIGRATE_POSTCOPY on the source (netlink, rcow_nl_lock held): the
 * destination serves from now on and fetches what is left from here.
 * The fence stays; abort is refused from now on.
 */
int rcow_migrate_postcopy(struct rcow *rc)
{
	struct rcow_migrate *mg = mg_of(rc);
	int r = -ESTALE;

	spin_lock(&mg->lock);
	if (mg->state == RCOW_MIGRATE_FINISHING) {
		mg->state = RCOW_MIGRATE_POSTCOPY;
		r = 0;
	}
	spin_unlock(&mg->lock);
	if (r)
		return r;
	DMINFO("%s: migration to %s in post-copy: the destination serves; fenced",
	       rc->name, mg->target);
	raise_event(rc);
	return 0;
}

/*
 * With @want_target, the caller kfree()s mi->target.  True while a
 * migration runs from this device (a source: not a destination, even in
 * post-copy).  A post-copy destination counts the extents named remote
 * and, of those, the present ones.
 */
bool rcow_migrate_info(struct rcow *rc, struct rcow_migrate_info *mi,
		       bool want_target)
{
	struct rcow_migrate *mg = mg_of(rc);

	spin_lock(&mg->lock);
	mi->state = mg->state;
	mi->round = mg->round;
	mi->total = mg->total;
	mi->done = mg->done;
	if (test_bit(RCOW_F_INCOMING, &rc->flags)) {
		mi->state = RCOW_MIGRATE_INCOMING;
		if (test_bit(RCOW_F_POSTCOPY, &rc->flags)) {
			mi->state = RCOW_MIGRATE_POSTCOPY;
			rcow_incoming_counts(rc, &mi->total, &mi->done);
		}
	}
	mi->target = NULL;
	mi->nomem = false;
	if (want_target && mg->target) {
		mi->target = kstrdup(mg->target, GFP_NOWAIT);
		mi->nomem = !mi->target;
	}
	spin_unlock(&mg->lock);
	return !test_bit(RCOW_F_INCOMING, &rc->flags) && running(mi->state);
}

const char *rcow_migrate_state_name(enum remote_cow_migrate_state s)
{
	return s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

/* GET_RUNS and GET_BITMAP of DIRTY_MIGRATE and the round set. */
const unsigned long *rcow_migrate_set(struct rcow *rc, u32 set)
{
	struct rcow_migrate *mg = mg_of(rc);
	const unsigned long *p = NULL;

	/* Netlink (rcow_nl_lock held): valid until the handler returns. */
	spin_lock(&mg->lock);
	if (running(mg->state))
		p = set == RCOW_BITMAP_MIGRATE_ROUND ? mg->round_set : mg->dirty;
	spin_unlock(&mg->lock);
	return p;
}
