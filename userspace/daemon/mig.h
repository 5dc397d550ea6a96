/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Live migration jobs of remote-cowd (mig.c, mig-send.c, mig-recv.c).
 *
 * A job is one migration, source or destination, of one device or of a
 * group of devices that migrate as one unit (its members, in the order
 * the CLI named them; one connection, one HELLO listing them all), run by
 * a thread of its own: the network (mig-tls.c) and the COW device I/O block
 * there, never in the loop.  The kernel is talked to by the loop thread
 * only (it owns the netlink socket, and the kernel takes MIGRATE_* only
 * from the registered socket): the job thread hands a struct mig_kreq to
 * the loop (mig_kcall()), which runs it in mig_run() and wakes the thread
 * with the answer.  Kernel events for the members (MIGRATE_ROUND, _FINISH,
 * _ABORT) are recorded in the job by the loop (mig_event()).
 *
 * A group's job is first gathered by the loop, without a thread: the
 * source's members each send MIGRATE_START (one `migrate send` each), the
 * destination's show up incoming one by one; the thread starts once every
 * member is there.  A source's group not whole within MIG_GATHER_MS, or
 * one of whose members is aborted or removed meanwhile, fails whole: every
 * member that started gets MIGRATE_END with the reason.  A destination's
 * group not whole within MIG_GATHER_MS is dropped the same way, with a
 * log line: nothing listens, the members stay incoming.
 *
 * Locking: each job's fields marked [lock] are under job->lock; the rest
 * is set before the thread starts and read-only after, except conn,
 * written by the thread under the lock (the loop shuts it down to wake
 * the thread).  The loop never calls into the kernel with a job's lock
 * held, and the thread never waits for the network with it held.
 */
#ifndef RCOWD_MIG_H
#define RCOWD_MIG_H

#include <pthread.h>

#include "daemon.h"
#include "mig-tls.h"
#include "rcow/mig-proto.h"

enum mig_kop {
	MK_ROUND,		/* MIGRATE_ROUND, flags RCOW_MIGRATE_F_* */
	MK_RUNS,		/* GET_RUNS on RCOW_BITMAP_MIGRATE_ROUND into runs */
	MK_FRESH,		/* GET_RUNS on RCOW_BITMAP_DIRTY_MIGRATE from first into runs */
	MK_MARK,		/* MIGRATE_MARK round, first, count */
	MK_END,			/* MIGRATE_END status, message, flags */
	MK_FILL,		/* MIGRATE_FILL first, count */
	MK_COMPLETE,		/* MIGRATE_COMPLETE */
	MK_STATE,		/* GET_DEVICE: state = migrate_state */
	MK_REMOTE,		/* MIGRATE_REMOTE first, count (post-copy destination) */
	MK_POSTCOPY,		/* MIGRATE_POSTCOPY (either side) */
	MK_HYDRATE,		/* HYDRATE first, count; count = extents the kernel queued */
	MK_RFILL,		/* a remote fault's answer: engine_remote_fill() */
};

DEFINE_VECTOR(run_vec, struct rcow_run);

struct mig_kreq {
	enum mig_kop op;
	unsigned int dev;		/* the member it is for */
	uint64_t round, first;
	uint32_t count, status, flags;
	uint32_t delay_ms;		/* MK_ROUND: the throttle's, 0: none */
	const char *message;
	struct run_vec runs;		/* MK_RUNS: filled by the loop */
	uint32_t state;			/* MK_STATE */
	/* MK_RFILL: the fault, its device's epoch, its data (len bytes) or status */
	struct rcow_fault fault;
	unsigned int epoch;
	const void *data;
	size_t len;
	int result;			/* 0 or -errno */
	struct rcow_err err;
};

/*
 * Post-copy, destination: a FAULT with RCOW_FAULT_F_REMOTE, queued by the
 * loop (mig_remote_fault()) for the job's thread, which fetches it from
 * the source.
 */
struct mig_rfault {
	struct mig_rfault *next;
	unsigned int dev;		/* the member */
	struct rcow_fault f;
	unsigned int epoch;		/* the engine's device epoch when it came */
	bool urgent;			/* queued for I/O that waits (or promoted) */
	uint64_t asked;			/* mig-recv: next extent not yet asked (FETCH) */
};

#define MIG_GATHER_MS 30000		/* a group: every member started (incoming) by then */

struct mig_member {
	char name[MIG_NAME_MAX + 1];	/* dm name, set when the job is made */
	struct rcow_device_info info;	/* as when it started (set before the thread) */
	char spec[4096];		/* path of its spec / PSK file */
	bool started;			/* loop: its MIGRATE_START came / seen incoming */
	/* [lock] */
	uint64_t round_seen;		/* number of its last MIGRATE_ROUND event */
	bool finish;			/* its kernel asked to finish (MIGRATE_FINISH) */
	bool aborted;			/* its kernel aborted: no MIGRATE_END for it */
	bool gone;			/* its device was removed: no request for it */
	bool ended;			/* MIGRATE_END taken by its kernel */
};

struct mig_job {
	struct mig_job *next;		/* in migs->jobs (loop) */
	struct daemon *d;		/* only d->opt, d->kops->open_cow (read-only), vlog */
	int wake_fd;			/* the loop's eventfd */
	bool sender;
	char label[160];		/* "device NAME" or "group A,B,..." for the log */
	char target[RCOW_MIGRATE_TARGET_MAX];	/* sender: HOST:PORT */
	unsigned int peer_timeout_ms;	/* migrate_peer_timeout as the job started */
	unsigned int n;			/* members */
	struct mig_member *m;		/* [n] */
	uint64_t gather_until;		/* loop: a group being gathered (no thread) until then */
	bool running;			/* loop: the thread was started */
	bool mirror_always;		/* migrate_mirror always, as the job started */
	bool throttle;			/* migrate_mirror throttle, as the job started */
	uint64_t postcopy_rate;		/* migrate_postcopy_rate as the job started (0: none) */
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* [lock] */
	struct mig_kreq *req;		/* waiting for the loop */
	bool req_taken, req_done;
	uint64_t waiting_seen;		/* MIGRATE_WAITING events so far (any member) */
	bool finish;			/* every member's kernel asked to finish */
	bool abort, stop;		/* a member aborted / the daemon stops the job */
	bool finish_sent;		/* sender: FINISH went out: the outcome may be unknown */
	bool postcopy;			/* sender: a member's MIGRATE_FINISH asked post-copy */
	bool postcopy_sent;		/* sender: POSTCOPY went out: the destination may serve */
	/* destination, post-copy: remote faults, those I/O waits on first (0), others (1) */
	struct mig_rfault *rq_head[2], *rq_tail[2];
	bool serving;			/* remote faults are taken */
	bool remote_dead;		/* no fetch any more: remote faults fail (EIO) */
	bool over;			/* the thread returned */
	struct mig_conn *conn;
	int lfd;			/* destination's listener, -1 none */
	/* the thread's until it is over, then the loop's (stats) */
	struct mig_counts wire;		/* bytes and frames on the wire */
	uint64_t moved;			/* extents sent or received */
};

/* Thread side: run q in the loop and wait for it.  -ECANCELED once stopping. */
int mig_kcall(struct mig_job *j, struct mig_kreq *q);
/* Thread side: the flags, under the lock. */
bool mig_stopping(struct mig_job *j);
/*
 * Thread side: wait up to ms for member dev's round after round_after, or
 * (round_after UINT64_MAX) for the group's finish; abort, stop.
 */
void mig_wait(struct mig_job *j, unsigned int dev, uint64_t round_after, int ms);
/* Thread side: member dev's last round, and whether its kernel asked to finish. */
uint64_t mig_round_seen(struct mig_job *j, unsigned int dev, bool *finish);
/* Thread side: the MIGRATE_WAITING events so far. */
uint64_t mig_waiting_seen(struct mig_job *j);
/*
 * Thread side, mirroring: wait up to ms for a MIGRATE_WAITING event after
 * the seen-th (writes wait for a round), or finish, abort, stop.
 */
void mig_wait_writes(struct mig_job *j, uint64_t seen, int ms);
/*
 * Thread side: publish c (NULL: none) for the loop; a new connection is
 * first set to find a dead peer within the job's peer timeout
 * (mig_conn_watch_peer()).
 */
void mig_set_conn(struct mig_job *j, struct mig_conn *c);
/*
 * Thread side, after a failure or an abort: MIGRATE_END(code, why) for
 * every member that its kernel did not abort and that is still there
 * (with RCOW_MIGRATE_F_KEEP_FENCE once FINISH was sent).  Members the loop
 * cannot reach any more (the job stops) are ended by the loop.
 */
void mig_end_members(struct mig_job *j, int code, const char *why);
/*
 * Thread side, last call: log the bytes on the wire of c (if any) and
 * keep them in the job for the loop's stats, close it, the COW handles
 * (cow[0, n), NULL ones skipped) and the buffers; then mig_over().
 */
void mig_end(struct mig_job *j, struct mig_conn *c, struct rcow_cow **cow, struct rcow_buf *buf,
	     void *rbuf, uint64_t extents);

/*
 * Thread side, post-copy destination: take the next remote fault (those
 * I/O waits on first; with urgent_only, only those), waiting up to ms for
 * one; NULL: none.
 */
struct mig_rfault *mig_remote_take(struct mig_job *j, int ms, bool urgent_only);
/* Thread side: wait up to ms for a remote fault to be queued; false: none. */
bool mig_remote_wait(struct mig_job *j, int ms);
/* Thread side: remote faults are taken from now on. */
void mig_remote_serve(struct mig_job *j);
/*
 * Thread side: no fetch any more; the remote faults still queued are
 * returned (a list, to answer with EIO), later ones are refused by the loop.
 */
struct mig_rfault *mig_remote_close(struct mig_job *j);

void *mig_send_thread(void *arg);
void *mig_recv_thread(void *arg);

/* Paths of the per-device files under the run directory (see mig.c). */
int mig_spec_path(const struct daemon *d, bool sender, const char *name, char *out, size_t cap);

#endif
