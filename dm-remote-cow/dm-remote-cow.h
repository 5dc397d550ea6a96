/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Copyright (C) 2026 The dm-remote-cow authors.
 *
 * Internal interface between the remote-cow target and its generic netlink
 * channel to the userspace helper.
 */
#ifndef DM_REMOTE_COW_H
#define DM_REMOTE_COW_H

#include <linux/bio.h>
#include <linux/completion.h>
#include <linux/device-mapper.h>
#include <linux/dm-ioctl.h>
#include <linux/list.h>
#include <linux/mempool.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/blkdev.h>
#include <linux/hashtable.h>
#include <linux/mutex.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-remote-cow-metadata.h"

#define RCOW_HASH_BITS	10

enum rcow_mode {
	RCOW_MODE_RW,
	RCOW_MODE_RO,		/* table loaded read-only: no metadata writes */
	RCOW_MODE_FAIL,		/* a metadata write failed */
};

/* Snapshot commit state of a table: see dm-remote-cow-commit.c. */
struct rcow_commit {
	/* Serialises snapshot commit messages. */
	struct mutex message_lock;
	/* Protects the fields below but the bitmaps, see the .c file. */
	spinlock_t lock;
	enum remote_cow_commit_state state;
	u64 gen;			/* last commit started (frozen) */
	bool since_last;
	char *uri;			/* of the last commit started */
	u64 total;			/* extents frozen */
	atomic64_t done;		/* of those, uploaded */
	unsigned long started;		/* jiffies */
	unsigned long *upload;		/* frozen, not yet uploaded */
	unsigned long *held;		/* frozen, not uploaded nor preserved */
	DECLARE_HASHTABLE(held_hash, 6);
	struct list_head unsent;	/* held extents: PRESERVE to send */
	struct list_head sent;
	mempool_t held_pool;
	/* A freeze asked by a message, done by the worker. */
	char *req_uri;
	bool req_since_last;
	int req_result;
	struct completion frozen;
	/* COMMIT_END 0 accepted: the worker records the commit as done. */
	bool finish;
	/* Between presuspend and resume; under message_lock. */
	bool suspended;
};

/* Live migration, source side: see dm-remote-cow-migrate.c. */
struct rcow_migrate {
	/* Protects the fields below but the bitmaps, see the .c file. */
	spinlock_t lock;
	enum remote_cow_migrate_state state;
	char *target;			/* HOST:PORT of the last one started */
	u64 round;			/* rounds taken */
	u64 total;			/* extents handed out in rounds */
	u64 done;			/* of those, marked sent */
	unsigned long *dirty;		/* DIRTY_MIGRATE: see the .c file */
	unsigned long *round_set;	/* taken, not yet marked sent */
	/* Requests to the worker. */
	char *req_target;		/* migrate send */
	bool req_finish;		/* migrate finish */
	bool req_postcopy;		/* ... postcopy (MIGRATE_FINISH's flag) */
	bool req_round;			/* MIGRATE_ROUND */
	bool req_mirror;		/* ... with RCOW_MIGRATE_F_MIRROR */
	int req_result;
	struct completion req_done;
	/* The list entry of a migrated COW device (see the .c file). */
	struct rcow_migrated *listed;
	bool in_list;
	/*
	 * Mirroring: the writes waiting for a round.  held_lock (irq-safe,
	 * taken from end_io) protects held, nr_held (writes held so far)
	 * and mirror_on; nothing is taken inside it.
	 */
	spinlock_t held_lock;
	struct bio_list held;
	u64 nr_held;
	bool mirror_on;			/* end_io holds writes */
	/*
	 * Throttle (delay-doubling, see the .c file), also under held_lock:
	 * the writes slowed down, each ended @delay jiffies after it
	 * completed (0: no throttle), and how many were.  slow_work ends
	 * them when their time comes.
	 */
	struct bio_list slowed;
	unsigned long delay;
	u64 nr_slowed;
	struct delayed_work slow_work;
};

/* Per-bio record of a write's extents for mirroring (in struct rcow_bio). */
struct rcow_mirror_hold {
	u64 first, last;		/* the extents it wrote */
	u64 round;			/* mg->round when it completed */
	unsigned long until;		/* throttled: end it from this jiffy */
	bool hold;			/* complete it only once sent */
	bool slow;			/* ... or only once @until came */
};

struct rcow_migrate_info {
	enum remote_cow_migrate_state state;
	u64 round, total, done;
	char *target;
	bool nomem;			/* the target could not be copied */
};

struct rcow_commit_info {
	enum remote_cow_commit_state state;
	u64 gen;
	u32 flags;
	u64 total;
	u64 done;
	char *uri;
};

struct rcow {
	struct dm_target *ti;
	struct dm_dev *cow_dev;
	struct rcow_metadata *md;
	char *base_uri;
	/* dm name for log lines: set by ctr and preresume (renames). */
	char name[DM_NAME_LEN];

	u32 extent_sectors;
	unsigned int extent_shift;
	u64 nr_extents;
	sector_t data_offset;
	/* Set by ctr and the fault_timeout message; read with READ_ONCE. */
	unsigned int fault_timeout_ms;
	bool discard_passdown;
	/*
	 * Destination of a migration: extents filled (MIGRATE_FILL, or a
	 * remote extent's fill), for the worker to mark.  Allocated by ctr,
	 * freed with the table; atomic bitops.
	 */
	unsigned long *incoming_fill;
	bool incoming_complete;		/* MIGRATE_COMPLETE asked */
	/*
	 * Post-copy (destination): the extents still only on the source
	 * (RCOW_BITMAP_MIGRATE_REMOTE).  Allocated with incoming_fill, freed
	 * with the table.  Bits are set by MIGRATE_REMOTE (rcow_nl_lock held,
	 * before post-copy) and cleared, with atomic bitops from any context,
	 * where an extent becomes PRESENT; remote_left counts the set bits
	 * (each change is a test_and_ bitop, so it stays exact).
	 * remote_total (rcow_nl_lock) counts the extents MIGRATE_REMOTE named;
	 * postcopy_asked (rcow_nl_lock; the worker reads it with READ_ONCE)
	 * is set by MIGRATE_POSTCOPY and never cleared: the worker then
	 * serves (RCOW_F_POSTCOPY).
	 */
	unsigned long *incoming_remote;
	atomic64_t remote_left;
	u64 remote_total;
	bool postcopy_asked;

	/* Written by the worker (or ctr); read anywhere with READ_ONCE. */
	enum rcow_mode mode;
	/* Bitmaps loaded by the first resume; worker and suspend hooks. */
	bool loaded;

	/* Fields below: protected by rcow_nl_lock (dm-remote-cow-netlink.c). */
	u32 id;
	struct list_head nl_node;
	bool announced;
	bool hydrating;
	u32 hydrate_rate;
	/* jiffies of the last "hydrate start"; read by the worker (READ_ONCE) */
	unsigned long hydrate_started;
	u64 quiesce_cookie;		/* QUIESCE awaiting its answer, or 0 */
	struct completion quiesced;	/* completed when it is answered */
	struct rcow_fence *fence;	/* preallocated, see rcow_nl_quiesce() */

	/*
	 * lock protects the bio lists, the pending-extent tables and lists,
	 * next_cookie, nr_faults and the suspend flags.  Taken from map,
	 * from bio completion (irq) and from the worker and netlink
	 * handlers, so always with interrupts disabled.  Never held while
	 * allocating, sending or submitting.
	 */
	spinlock_t lock;
	struct bio_list deferred;	/* missing extents, from map */
	struct bio_list flush_bios;	/* empty flushes: end after commit */
	struct bio_list commit_bios;	/* FUA writes: issue after commit */
	struct bio_list fua_done;	/* FUA full-extent writes: end after commit */
	struct bio_list incoming;	/* held until the migration completes */
	struct hlist_head extent_hash[1 << RCOW_HASH_BITS];
	struct hlist_head cookie_hash[1 << RCOW_HASH_BITS];	/* sent faults */
	struct list_head unsent;	/* faults not yet delivered to a helper */
	struct list_head sent;		/* faults delivered, awaiting FILL_DONE */
	unsigned int nr_faults;
	bool requeue_io;		/* noflush suspend: push I/O back to dm */
	bool suspending;		/* flush suspend in progress */

	unsigned long flags;		/* RCOW_F_*, atomic bitops */

	struct workqueue_struct *wq;
	struct work_struct worker;
	struct delayed_work waker;
	mempool_t pending_pool;

	/*
	 * Writes to the COW device past the map function's checks and not
	 * yet completed (target end_io), so that a freeze can wait for them.
	 */
	atomic_t wr_inflight;
	wait_queue_head_t drain_wq;

	struct rcow_commit commit;
	struct rcow_migrate migrate;
};

/* rcow->flags */
#define RCOW_F_COMMIT		0	/* worker: commit metadata */
#define RCOW_F_EVENT		1	/* worker: raise a dm event */
/*
 * Not resumed (never yet, or suspended): the waker is not rearmed, no
 * fault goes to the helper, HYDRATE is refused.  Set by ctr and
 * postsuspend, cleared by resume.
 */
#define RCOW_F_QUIESCED		2
/* A freeze is being taken: every write goes through the worker. */
#define RCOW_F_WRITE_GATE	3
/* A commit is uploading: writes test the held set. */
#define RCOW_F_HOLDING		4
/*
 * map deferred a fault for a piece of a bio whose rest follows at once
 * and left the worker asleep; the bio's last piece wakes it.
 */
#define RCOW_F_KICK_HELD	5
/* A migration runs: completed writes set DIRTY_MIGRATE (end_io). */
#define RCOW_F_MIGRATING	6
/* migrate finish: every write fails (the destination takes over). */
#define RCOW_F_FENCED		7
/* Destination of a migration not yet complete: guest I/O is held. */
#define RCOW_F_INCOMING		8
/* Some sent fault is marked promote: the worker sends PROMOTE. */
#define RCOW_F_PROMOTE		9
/* Mirroring: end_io records writes for holding (see the migrate file). */
#define RCOW_F_MIRROR		10
/* A write started to wait for a round: the worker sends MIGRATE_WAITING. */
#define RCOW_F_MIRROR_KICK	11
/*
 * Post-copy destination: RCOW_F_INCOMING stays set (the superblock's flag
 * too) but I/O is served; extents in rc->incoming_remote are faulted with
 * RCOW_FAULT_F_REMOTE.  Set by the worker under rc->lock, cleared with
 * RCOW_F_INCOMING by the completion.
 */
#define RCOW_F_POSTCOPY		12
/* Throttled: end_io records writes for slowing down (the migrate file). */
#define RCOW_F_THROTTLE		13

/* The mirroring record of a bio the target mapped. */
struct rcow_mirror_hold *rcow_bio_mirror(struct bio *bio);

/* Target side, called by the netlink handlers with rcow_nl_lock held. */
int rcow_fill_done(struct rcow *rc, u64 cookie, u64 first, u32 count,
		   u32 status);
int rcow_hydrate(struct rcow *rc, u64 first, u32 count, u32 *queued);
int rcow_incoming_fill(struct rcow *rc, u64 first, u32 count);
int rcow_incoming_complete(struct rcow *rc);
int rcow_incoming_remote(struct rcow *rc, u64 first, u32 count);
int rcow_incoming_postcopy(struct rcow *rc);
void rcow_incoming_counts(struct rcow *rc, u64 *total, u64 *done);
void rcow_helper_arrived(struct rcow *rc);
void rcow_helper_left(struct rcow *rc);
void rcow_set_failed(struct rcow *rc);

/* Snapshot commit (dm-remote-cow-commit.c). */
int rcow_commit_init(struct rcow *rc);
void rcow_commit_free(struct rcow *rc);
void rcow_commit_loaded(struct rcow *rc);
bool rcow_commit_held(struct rcow *rc, u64 extent);
void rcow_commit_hold(struct rcow *rc, struct bio *bio, u64 extent);
void rcow_commit_work(struct rcow *rc);
int rcow_commit_message(struct rcow *rc, unsigned int argc, char **argv);
int rcow_commit_abort_message(struct rcow *rc, unsigned int argc);
int rcow_job_may_start(struct rcow *rc, const char *what, const char *verb);
int rcow_job_may_start_locked(struct rcow *rc, const char *what);
void rcow_commit_suspend(struct rcow *rc);
int rcow_commit_mark(struct rcow *rc, u64 gen, u64 first, u32 count,
		     u32 mark);
int rcow_commit_end(struct rcow *rc, u64 gen, u32 status, const char *msg);
void rcow_commit_helper_arrived(struct rcow *rc);
bool rcow_commit_info(struct rcow *rc, struct rcow_commit_info *ci,
		      bool want_uri);
void rcow_commit_resume(struct rcow *rc);
const char *rcow_commit_state_name(enum remote_cow_commit_state s);
const unsigned long *rcow_commit_set(struct rcow *rc, u32 set);
int rcow_alloc_sets(struct rcow *rc, unsigned long **a, unsigned long **b);
void rcow_free_sets(spinlock_t *lock, unsigned long **a, unsigned long **b);
int rcow_gate_close(struct rcow *rc, const char *what);
void rcow_gate_open(struct rcow *rc);
int rcow_commit_module_init(void);
void rcow_commit_module_exit(void);

/* Live migration, source side (dm-remote-cow-migrate.c). */
void rcow_migrate_init(struct rcow *rc);
void rcow_migrate_free(struct rcow *rc);
int rcow_migrate_ctr(struct rcow *rc);
int rcow_migrate_busy(struct rcow *rc, const char *what);
bool rcow_migrate_fenced(struct rcow *rc, struct bio *bio);
void rcow_migrate_written(struct rcow *rc, struct rcow_mirror_hold *mh,
			  u64 first, u64 last);
bool rcow_migrate_hold(struct rcow *rc, struct bio *bio);
void rcow_migrate_suspend(struct rcow *rc);
void rcow_migrate_resume(struct rcow *rc);
void rcow_migrate_helper_left(struct rcow *rc);
void rcow_migrate_work(struct rcow *rc);
int rcow_migrate_message(struct rcow *rc, unsigned int argc, char **argv);
int rcow_migrate_round(struct rcow *rc, u32 flags, u32 delay_ms);
int rcow_migrate_mark(struct rcow *rc, u64 round, u64 first, u32 count);
int rcow_migrate_end(struct rcow *rc, u32 status, const char *msg, u32 flags);
int rcow_migrate_postcopy(struct rcow *rc);
bool rcow_migrate_info(struct rcow *rc, struct rcow_migrate_info *mi,
		       bool want_target);
const char *rcow_migrate_state_name(enum remote_cow_migrate_state s);
const unsigned long *rcow_migrate_set(struct rcow *rc, u32 set);

/* Netlink side. */
int rcow_nl_init(void);
void rcow_nl_exit(void);
int rcow_nl_add_device(struct rcow *rc);
void rcow_nl_remove_device(struct rcow *rc);
void rcow_nl_announce(struct rcow *rc);
int rcow_nl_send_fault(struct rcow *rc, u64 cookie, u64 extent, u32 count,
		       u32 flags);
int rcow_nl_send_promote(struct rcow *rc, u64 cookie, u64 extent, u32 count);
u64 rcow_nl_new_cookie(void);
int rcow_nl_quiesce(struct rcow *rc, unsigned int timeout_ms);
bool rcow_nl_cow_fenced(dev_t cow);
void rcow_nl_hydrate_ctl(struct rcow *rc, bool start, u32 rate);
bool rcow_nl_helper_connected(void);
void rcow_nl_commit_start(struct rcow *rc);
int rcow_nl_send_preserve(struct rcow *rc, u64 gen, u64 first, u32 count);
void rcow_nl_commit_abort(struct rcow *rc, u64 gen);
void rcow_nl_migrate_event(struct rcow *rc, u8 cmd);
void rcow_nl_migrate_finish_event(struct rcow *rc, u32 flags);
void rcow_nl_barrier(void);

/*
 * Compatibility with kernels newer than Debian 12's 6.1: from 6.9 on the
 * block layer derives max_discard_sectors from max_hw_discard_sectors.
 * Kbuild defines RCOW_HW_DISCARD_ONLY for those kernels.
 */
static inline void rcow_set_max_discard(struct queue_limits *limits,
					unsigned int sectors)
{
	limits->max_hw_discard_sectors = sectors;
#ifndef RCOW_HW_DISCARD_ONLY
	limits->max_discard_sectors = sectors;
#endif
}

#endif /* DM_REMOTE_COW_H */
