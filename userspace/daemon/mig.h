/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Live migration jobs of remote-cowd (mig.c, mig-send.c, mig-recv.c).
 *
 * A job is one device's migration, source or destination, run by a
 * thread of its own: the network (mig-tls.c) and the COW device I/O block
 * there, never in the loop.  The kernel is talked to by the loop thread
 * only (it owns the netlink socket, and the kernel takes MIGRATE_* only
 * from the registered socket): the job thread hands a struct mig_kreq to
 * the loop (mig_kcall()), which runs it in mig_run() and wakes the thread
 * with the answer.  Kernel events for the device (MIGRATE_ROUND, _FINISH,
 * _ABORT) are recorded in the job by the loop (mig_event()).
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
	MK_FRESH,		/* GET_RUNS on RCOW_BITMAP_DIRTY_MIGRATE into runs */
	MK_MARK,		/* MIGRATE_MARK round, first, count */
	MK_END,			/* MIGRATE_END status, message, flags */
	MK_FILL,		/* MIGRATE_FILL first, count */
	MK_COMPLETE,		/* MIGRATE_COMPLETE */
	MK_STATE,		/* GET_DEVICE: state = migrate_state */
};

DEFINE_VECTOR(run_vec, struct rcow_run);

struct mig_kreq {
	enum mig_kop op;
	uint64_t round, first;
	uint32_t count, status, flags;
	const char *message;
	struct run_vec runs;		/* MK_RUNS: filled by the loop */
	uint32_t state;			/* MK_STATE */
	int result;			/* 0 or -errno */
	struct rcow_err err;
};

struct mig_job {
	struct mig_job *next;		/* in migs->jobs (loop) */
	struct daemon *d;		/* only d->opt, d->kops->open_cow (read-only), vlog */
	int wake_fd;			/* the loop's eventfd */
	bool sender;
	struct rcow_device_info info;	/* as when it started */
	char target[RCOW_MIGRATE_TARGET_MAX];	/* sender: HOST:PORT */
	char spec[4096];		/* path of its spec / PSK file */
	unsigned int peer_timeout_ms;	/* migrate_peer_timeout as the job started */
	bool mirror_always;		/* migrate_mirror always, as the job started */
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* [lock] */
	struct mig_kreq *req;		/* waiting for the loop */
	bool req_taken, req_done;
	uint64_t round_seen;		/* number of the last MIGRATE_ROUND event */
	uint64_t waiting_seen;		/* MIGRATE_WAITING events so far */
	bool finish, abort, stop;
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
/* Thread side: wait up to ms for an event (round, finish, abort, stop). */
void mig_wait(struct mig_job *j, uint64_t round_after, int ms);
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
 * Thread side, last call: log the bytes on the wire of c (if any) and
 * keep them in the job for the loop's stats, close it, the COW handle
 * and the buffers; then mig_over().
 */
void mig_end(struct mig_job *j, struct mig_conn *c, struct rcow_cow *cow, struct rcow_buf *buf,
	     void *rbuf, uint64_t extents);

void *mig_send_thread(void *arg);
void *mig_recv_thread(void *arg);

/* Paths of the per-device files under the run directory (see mig.c). */
int mig_spec_path(const struct daemon *d, bool sender, const char *name, char *out, size_t cap);

#endif
