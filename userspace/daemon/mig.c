// SPDX-License-Identifier: GPL-2.0
/*
 * mig.c - live migration jobs, the loop's side (see mig.h): starting a
 * job on MIGRATE_START (source) or on an incoming device with a receive
 * spec (destination), passing the kernel's events to it, running its
 * kernel requests, reaping it when its thread is over.
 *
 * Secrets.  The kernel's `migrate send HOST:PORT` carries no key, and a
 * key never goes into a table, a message or a log.  The CLI puts it in a
 * root-only file under the daemon's run directory (--run-dir, default
 * /run/remote-cowd), in the directory migrate/ (mode 0700):
 *
 *   send-NAME.psk   source: the PSK file (psktool's format) for device
 *                   NAME's migration; read at MIGRATE_START.
 *   recv-NAME       destination: "listen HOST:PORT" on its first line,
 *                   then the PSK file; read when device NAME shows up
 *                   incoming (DEVICE_ADD or the device list).
 *
 * A group (several devices as one unit) has one such file per member,
 * all alike, that also name the members in order ("member NAME" lines
 * before the PSK file, mig_spec_parse()).  Its job is gathered by name:
 * the first member's MIGRATE_START (source) or incoming device
 * (destination) makes it, each other member joins it, and its thread
 * starts with the last.  A source's group must be whole within
 * MIG_GATHER_MS; if not, or if a member is aborted or removed before,
 * the members that started end failed (MIGRATE_END, the reason).  A
 * destination's group must have every member incoming within the same
 * time, and nothing listens before the last one is there; if not (or if a
 * member is removed before), the job is dropped with a log line, its
 * files removed: the members stay incoming (unusable), nothing listens.
 *
 * Files owned by another user than the daemon's, or readable by group or
 * others, are refused.  The daemon removes a job's file when the job
 * ends, whatever the outcome.
 *
 * The loop's state (struct migs: the jobs, the eventfd the threads wake
 * it with) is the loop thread's; see mig.h for the jobs' lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mig.h"

struct migs {
	int efd;
	struct mig_job *jobs;
};

int mig_spec_path(const struct daemon *d, bool sender, const char *name, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/migrate/%s%s%s", d->opt.run_dir ? d->opt.run_dir :
			 RCOWD_RUN_DIR, sender ? "send-" : "recv-", name, sender ? ".psk" : "");

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static struct migs *migs_get(struct daemon *d)
{
	if (!d->mig) {
		struct migs *m = calloc(1, sizeof(*m));

		if (!m)
			return NULL;
		m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (m->efd < 0) {
			free(m);
			return NULL;
		}
		d->mig = m;
	}
	return d->mig;
}

/* The job one of whose started members is dev_id (its index in *idx). */
static struct mig_job *find_job(struct daemon *d, uint32_t dev_id, unsigned int *idx)
{
	for (struct mig_job *j = d->mig ? d->mig->jobs : NULL; j; j = j->next)
		for (unsigned int i = 0; i < j->n; i++)
			if (j->m[i].started && j->m[i].info.dev_id == dev_id) {
				*idx = i;
				return j;
			}
	return NULL;
}

/* A group being gathered on this side with a member name not started yet. */
static struct mig_job *find_gathering(struct daemon *d, bool sender, const char *name,
				      unsigned int *idx)
{
	for (struct mig_job *j = d->mig ? d->mig->jobs : NULL; j; j = j->next) {
		if (j->running || j->sender != sender)
			continue;
		for (unsigned int i = 0; i < j->n; i++)
			if (!j->m[i].started && !strcmp(j->m[i].name, name)) {
				*idx = i;
				return j;
			}
	}
	return NULL;
}

/* ---- thread side ---------------------------------------------------------- */

static void wake_loop(struct mig_job *j)
{
	uint64_t one = 1;

	if (write(j->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: the loop is awake anyway */
	}
}

/* The loop may reap the job (join its thread). */
static void mig_over(struct mig_job *j)
{
	pthread_mutex_lock(&j->lock);
	j->over = true;
	pthread_mutex_unlock(&j->lock);
	wake_loop(j);
}

int mig_kcall(struct mig_job *j, struct mig_kreq *q)
{
	int r;

	pthread_mutex_lock(&j->lock);
	if (j->stop) {
		pthread_mutex_unlock(&j->lock);
		return -ECANCELED;
	}
	j->req = q;
	j->req_taken = j->req_done = false;
	pthread_mutex_unlock(&j->lock);
	wake_loop(j);
	pthread_mutex_lock(&j->lock);
	while (!j->req_done && !(j->stop && !j->req_taken))
		pthread_cond_wait(&j->cond, &j->lock);
	r = j->req_done ? q->result : -ECANCELED;
	j->req = NULL;
	pthread_mutex_unlock(&j->lock);
	if (r == -ECANCELED && !q->err.msg[0])
		rcow_err_set(&q->err, ECANCELED, "the daemon is stopping the migration");
	return r;
}

bool mig_stopping(struct mig_job *j)
{
	bool s;

	pthread_mutex_lock(&j->lock);
	s = j->stop || j->abort;
	pthread_mutex_unlock(&j->lock);
	return s;
}

void mig_wait(struct mig_job *j, unsigned int dev, uint64_t round_after, int ms)
{
	struct timespec ts = mono_deadline(ms);

	pthread_mutex_lock(&j->lock);
	while (!j->stop && !j->abort && j->m[dev].round_seen <= round_after &&
	       !(round_after == UINT64_MAX && j->finish))
		if (pthread_cond_timedwait(&j->cond, &j->lock, &ts))
			break;
	pthread_mutex_unlock(&j->lock);
}

uint64_t mig_round_seen(struct mig_job *j, unsigned int dev, bool *finish)
{
	uint64_t r;

	pthread_mutex_lock(&j->lock);
	r = j->m[dev].round_seen;
	if (finish)
		*finish = j->m[dev].finish;
	pthread_mutex_unlock(&j->lock);
	return r;
}

uint64_t mig_waiting_seen(struct mig_job *j)
{
	uint64_t n;

	pthread_mutex_lock(&j->lock);
	n = j->waiting_seen;
	pthread_mutex_unlock(&j->lock);
	return n;
}

void mig_wait_writes(struct mig_job *j, uint64_t seen, int ms)
{
	struct timespec ts = mono_deadline(ms);

	pthread_mutex_lock(&j->lock);
	while (!j->stop && !j->abort && !j->finish && j->waiting_seen == seen)
		if (pthread_cond_timedwait(&j->cond, &j->lock, &ts))
			break;
	pthread_mutex_unlock(&j->lock);
}

void mig_set_conn(struct mig_job *j, struct mig_conn *c)
{
	if (c)
		mig_conn_watch_peer(c, j->peer_timeout_ms);
	pthread_mutex_lock(&j->lock);
	j->conn = c;
	pthread_mutex_unlock(&j->lock);
}

static void log_counts(const struct mig_job *j, const struct mig_conn *c, uint64_t extents)
{
	const struct mig_counts *n = mig_conn_counts(c);
	uint64_t sent = 0, recvd = 0;

	for (int t = 0; t < MIG_NR_TYPES; t++) {
		sent += n->sent.bytes[t];
		recvd += n->recvd.bytes[t];
	}
	logmsg("%s: migration bytes on the wire: sent %llu (DATA %llu in %llu frames), received %llu; extents moved %llu (%llu bytes)",
	       j->label, (unsigned long long)sent,
	       (unsigned long long)n->sent.bytes[MIG_DATA],
	       (unsigned long long)n->sent.frames[MIG_DATA], (unsigned long long)recvd,
	       (unsigned long long)extents,
	       (unsigned long long)(extents * j->m[0].info.extent_sectors * 512ull));
	for (int dir = 0; dir < 2; dir++) {
		const struct mig_count *k = dir ? &n->recvd : &n->sent;
		char line[512];
		size_t at = 0;

		for (int t = 1; t < MIG_NR_TYPES && at < sizeof(line); t++)
			if (k->frames[t])
				at += (size_t)snprintf(line + at, sizeof(line) - at, " %s %llu/%llu",
						       mig_type_name((unsigned int)t),
						       (unsigned long long)k->frames[t],
						       (unsigned long long)k->bytes[t]);
		logmsg("%s: migration frames/bytes %s:%s", j->label, dir ? "received" : "sent",
		       at ? line : " none");
	}
}

void mig_end_members(struct mig_job *j, int code, const char *why)
{
	for (unsigned int i = 0; i < j->n; i++) {
		struct mig_kreq q = { .op = MK_END, .dev = i, .status = (uint32_t)code,
				      .message = why };
		bool skip;

		pthread_mutex_lock(&j->lock);
		skip = j->m[i].aborted || j->m[i].gone || j->m[i].ended || j->stop;
		if (j->finish_sent)
			q.flags = RCOW_MIGRATE_F_KEEP_FENCE;
		pthread_mutex_unlock(&j->lock);
		if (skip)
			continue;
		if (mig_kcall(j, &q)) {
			logmsg("device %s: MIGRATE_END: %s", j->m[i].name, q.err.msg);
			continue;
		}
		pthread_mutex_lock(&j->lock);
		j->m[i].ended = true;
		pthread_mutex_unlock(&j->lock);
	}
}

void mig_end(struct mig_job *j, struct mig_conn *c, struct rcow_cow **cow, struct rcow_buf *buf,
	     void *rbuf, uint64_t extents)
{
	j->moved = extents;
	if (c) {
		log_counts(j, c, extents);
		j->wire = *mig_conn_counts(c);
		mig_set_conn(j, NULL);
		mig_conn_close(c);
	}
	for (unsigned int i = 0; cow && i < j->n; i++)
		if (cow[i])
			rcow_cow_close(cow[i]);
	rcow_buf_free(buf);
	free(rbuf);
	mig_over(j);
}

/* ---- post-copy: remote faults (destination) -------------------------------- */

static void rq_push(struct mig_job *j, int k, struct mig_rfault *q)
{
	q->next = NULL;
	q->urgent = k == 0;
	if (j->rq_tail[k])
		j->rq_tail[k]->next = q;
	else
		j->rq_head[k] = q;
	j->rq_tail[k] = q;
}

struct mig_rfault *mig_remote_take(struct mig_job *j, int ms, bool urgent_only)
{
	struct timespec ts = mono_deadline(ms);
	struct mig_rfault *q = NULL;

	pthread_mutex_lock(&j->lock);
	while (!j->rq_head[0] && (urgent_only || !j->rq_head[1]) && !j->stop && !j->abort && ms > 0)
		if (pthread_cond_timedwait(&j->cond, &j->lock, &ts))
			break;
	for (int k = 0; k < (urgent_only ? 1 : 2) && !q; k++) {
		q = j->rq_head[k];
		if (q) {
			j->rq_head[k] = q->next;
			if (!j->rq_head[k])
				j->rq_tail[k] = NULL;
		}
	}
	pthread_mutex_unlock(&j->lock);
	return q;
}

bool mig_remote_wait(struct mig_job *j, int ms)
{
	struct timespec ts = mono_deadline(ms);
	bool any;

	pthread_mutex_lock(&j->lock);
	while (!j->rq_head[0] && !j->rq_head[1] && !j->stop && !j->abort)
		if (pthread_cond_timedwait(&j->cond, &j->lock, &ts))
			break;
	any = j->rq_head[0] || j->rq_head[1];
	pthread_mutex_unlock(&j->lock);
	return any;
}

void mig_remote_serve(struct mig_job *j)
{
	pthread_mutex_lock(&j->lock);
	j->serving = true;
	pthread_mutex_unlock(&j->lock);
}

struct mig_rfault *mig_remote_close(struct mig_job *j)
{
	struct mig_rfault *all, **tail;

	pthread_mutex_lock(&j->lock);
	j->remote_dead = true;
	all = j->rq_head[0];
	for (tail = &all; *tail; tail = &(*tail)->next)
		;
	*tail = j->rq_head[1];
	j->rq_head[0] = j->rq_head[1] = j->rq_tail[0] = j->rq_tail[1] = NULL;
	pthread_mutex_unlock(&j->lock);
	return all;
}

bool mig_remote_fault(struct daemon *d, const struct rcow_fault *f, unsigned int epoch,
		      char *why, size_t cap)
{
	unsigned int i = 0;
	struct mig_job *j = find_job(d, f->dev_id, &i);
	struct mig_rfault *q;
	bool ok;

	if (!j || j->sender) {
		snprintf(why, cap, "no migration job receives the device (remote-cowd restarted, or its job ended)");
		return false;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		snprintf(why, cap, "out of memory");
		return false;
	}
	q->dev = i;
	q->f = *f;
	q->epoch = epoch;
	pthread_mutex_lock(&j->lock);
	ok = j->serving && !j->remote_dead && !j->stop && !j->over;
	if (ok) {
		rq_push(j, f->flags & RCOW_FAULT_F_WAITING ? 0 : 1, q);
		pthread_cond_broadcast(&j->cond);
	}
	pthread_mutex_unlock(&j->lock);
	if (!ok) {
		free(q);
		snprintf(why, cap, "the migration's connection to its source is lost");
	}
	return ok;
}

void mig_remote_promote(struct daemon *d, const struct rcow_fault *f)
{
	unsigned int i = 0;
	struct mig_job *j = find_job(d, f->dev_id, &i);
	struct mig_rfault **pp, *q;

	if (!j || j->sender)
		return;
	pthread_mutex_lock(&j->lock);
	for (pp = &j->rq_head[1]; (q = *pp);) {
		if (q->f.dev_id != f->dev_id || q->f.cookie != f->cookie) {
			pp = &q->next;
			continue;
		}
		*pp = q->next;
		rq_push(j, 0, q);
	}
	for (j->rq_tail[1] = j->rq_head[1]; j->rq_tail[1] && j->rq_tail[1]->next;)
		j->rq_tail[1] = j->rq_tail[1]->next;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

/* ---- loop side -------------------------------------------------------------- */

static int runs_cb(const struct rcow_run *run, void *data)
{
	return run_vec_push(data, *run);
}

static int put_dev(struct daemon *d, uint8_t cmd, uint32_t dev_id, uint32_t *buf,
		   struct nlmsghdr **out)
{
	*out = rcow_msg_start(buf, d->kops->family(d->kctx), cmd, 0, 0);
	return rcow_msg_put_u32(*out, RCOW_A_DEV_ID, dev_id) ? 0 : -EMSGSIZE;
}

/* One kernel request of a job, in the loop thread, no lock held. */
static int do_kreq(struct daemon *d, const struct mig_job *j, struct mig_kreq *q)
{
	static const uint8_t cmd[] = {
		[MK_ROUND] = RCOW_CMD_MIGRATE_ROUND, [MK_MARK] = RCOW_CMD_MIGRATE_MARK,
		[MK_END] = RCOW_CMD_MIGRATE_END, [MK_FILL] = RCOW_CMD_MIGRATE_FILL,
		[MK_COMPLETE] = RCOW_CMD_MIGRATE_COMPLETE, [MK_REMOTE] = RCOW_CMD_MIGRATE_REMOTE,
		[MK_POSTCOPY] = RCOW_CMD_MIGRATE_POSTCOPY,
	};
	uint32_t buf[RCOW_MSG_BUF_SIZE / 4];
	struct rcow_device_info *info;
	struct nlmsghdr *nlh;
	bool ok = true;
	uint32_t dev_id;
	int r;

	if (q->dev >= j->n || j->m[q->dev].gone)
		return rcow_err_set(&q->err, ENODEV, "the device is gone");
	dev_id = j->m[q->dev].info.dev_id;
	switch (q->op) {
	case MK_RUNS:
	case MK_FRESH:
		q->runs.len = 0;
		return d->kops->get_runs(d->kctx, dev_id,
					 q->op == MK_RUNS ? RCOW_BITMAP_MIGRATE_ROUND :
							    RCOW_BITMAP_DIRTY_MIGRATE,
					 q->first, q->count, runs_cb, &q->runs, &q->err);
	case MK_STATE:
		info = malloc(sizeof(*info));
		if (!info)
			return rcow_err_set(&q->err, ENOMEM, "out of memory");
		r = d->kops->get_device(d->kctx, dev_id, info, &q->err);
		q->state = r ? 0 : info->migrate_state;
		free(info);
		return r;
	case MK_HYDRATE:
		r = d->kops->hydrate(d->kctx, dev_id, q->first, q->count, &q->count, &q->err);
		if (r)
			q->count = 0;
		return r;
	case MK_RFILL:
		engine_remote_fill(d, &q->fault, q->epoch, q->data, q->len, q->status);
		return 0;
	default:
		break;
	}
	if (put_dev(d, cmd[q->op], dev_id, buf, &nlh))
		return rcow_err_set(&q->err, EMSGSIZE, "netlink message too large");
	if (q->op == MK_MARK)
		ok = rcow_msg_put_u64(nlh, RCOW_A_MIGRATE_ROUND, q->round);
	if (q->op == MK_ROUND && q->flags)	/* RCOW_MIGRATE_F_MIRROR */
		ok = rcow_msg_put_u32(nlh, RCOW_A_FLAGS, q->flags);
	if (q->op == MK_ROUND && q->delay_ms)	/* the throttle */
		ok = ok && rcow_msg_put_u32(nlh, RCOW_A_MIGRATE_DELAY_MS, q->delay_ms);
	if (q->op == MK_MARK || q->op == MK_FILL || q->op == MK_REMOTE)
		ok = ok && rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, q->first) &&
		     rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, q->count);
	if (q->op == MK_END) {
		ok = rcow_msg_put_u32(nlh, RCOW_A_STATUS, q->status) &&
		     (!q->flags || rcow_msg_put_u32(nlh, RCOW_A_FLAGS, q->flags));
		if (q->message && q->message[0])
			ok = ok && rcow_msg_put_str(nlh, RCOW_A_MESSAGE, q->message);
	}
	if (!ok)
		return rcow_err_set(&q->err, EMSGSIZE, "netlink message too large");
	return d->kops->transact(d->kctx, nlh, &q->err);
}

/* Loop side, the thread joined: add the job's figures to the daemon's stats. */
static void account(struct daemon *d, const struct mig_job *j)
{
	struct stats *st = &d->st;

	for (int t = 0; t < MIG_NR_TYPES; t++) {
		st->migrate_bytes_sent += j->wire.sent.bytes[t];
		st->migrate_bytes_received += j->wire.recvd.bytes[t];
	}
	st->migrate_data_bytes += j->sender ? j->wire.sent.bytes[MIG_DATA] :
				  j->wire.recvd.bytes[MIG_DATA];
	st->migrate_extents += j->moved;
	if (j->sender)
		st->migrations_sent++;
	else
		st->migrations_received++;
}

static void job_free(struct mig_job *j)
{
	for (struct mig_rfault *q = mig_remote_close(j), *n; q; q = n) {
		n = q->next;
		free(q);	/* the kernel's fault_timeout ends them */
	}
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j->m);
	free(j);
}

static void unlink_job(struct daemon *d, struct mig_job *j)
{
	struct mig_job **pp;

	for (pp = &d->mig->jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
}

/* Loop side: the job's files (every member's spec) removed, the job gone. */
static void drop_job(struct daemon *d, struct mig_job *j)
{
	for (unsigned int i = 0; i < j->n; i++)
		unlink(j->m[i].spec);
	unlink_job(d, j);
	job_free(j);
}

/*
 * Loop side, the thread (if any) gone: MIGRATE_END(code, why) for the
 * members that started and that nothing ended yet (KEEP_FENCE once FINISH
 * was sent).
 */
static void end_rest(struct daemon *d, struct mig_job *j, int code, const char *why)
{
	for (unsigned int i = 0; i < j->n; i++) {
		struct mig_member *mb = &j->m[i];
		struct mig_kreq q = { .op = MK_END, .dev = i, .status = (uint32_t)code,
				      .message = why };

		if (!mb->started || mb->aborted || mb->gone || mb->ended)
			continue;
		if (j->finish_sent)
			q.flags = RCOW_MIGRATE_F_KEEP_FENCE;
		logmsg("device %s: migration to %s failed: %s", mb->name, j->target, why);
		if (do_kreq(d, j, &q))
			logmsg("device %s: MIGRATE_END: %s", mb->name, q.err.msg);
		mb->ended = true;
	}
}

/*
 * A destination's group that did not gather: nothing listened and nothing
 * will (its files removed); the members that are there stay incoming.
 */
static void recv_gather_fail(struct daemon *d, struct mig_job *j, const char *why)
{
	logmsg("%s: the migration is not received: %s; nothing listens, and the members stay incoming (unusable: remove them)",
	       j->label, why);
	drop_job(d, j);
}

/* A source's group that did not gather: every member that started fails. */
static void gather_fail(struct daemon *d, struct mig_job *j, const char *why)
{
	logmsg("%s: the migration does not start: %s", j->label, why);
	end_rest(d, j, ECANCELED, why);
	drop_job(d, j);
}

static unsigned int gather_ms(const struct daemon *d)
{
	return d->opt.mig_gather_ms ? d->opt.mig_gather_ms : MIG_GATHER_MS;
}

/* Loop side: a group being gathered that must fail now (why), or NULL. */
static const char *gather_broken(struct mig_job *j, uint64_t now, char *why, size_t cap)
{
	for (unsigned int i = 0; i < j->n; i++) {
		if (j->m[i].aborted || j->m[i].gone) {
			snprintf(why, cap, "member %s was %s before the group was whole",
				 j->m[i].name, j->m[i].gone ? "removed" : "aborted");
			return why;
		}
	}
	if (j->gather_until && now >= j->gather_until) {
		snprintf(why, cap, "the group was not whole in time");
		for (unsigned int i = 0; i < j->n; i++)
			if (!j->m[i].started) {
				snprintf(why, cap, j->sender ?
					 "member %s did not start within %u ms (remote-cow migrate names every member)" :
					 "member %s was not incoming within %u ms (remote-cow receive names every member)",
					 j->m[i].name, gather_ms(j->d));
				break;
			}
		return why;
	}
	return NULL;
}

void mig_run(struct daemon *d)
{
	struct mig_job *j, *next;
	uint64_t v, now = now_ms();
	char why[256];

	if (!d->mig)
		return;
	if (read(d->mig->efd, &v, sizeof(v)) < 0) {
		/* nothing written since the last turn */
	}
	for (j = d->mig->jobs; j; j = next) {
		struct mig_kreq *q = NULL;
		bool over;

		next = j->next;
		if (!j->running) {
			if (gather_broken(j, now, why, sizeof(why))) {
				if (j->sender)
					gather_fail(d, j, why);
				else
					recv_gather_fail(d, j, why);
			}
			continue;
		}
		pthread_mutex_lock(&j->lock);
		if (j->req && !j->req_taken && !j->req_done && !j->stop) {
			q = j->req;
			j->req_taken = true;
		}
		over = j->over;
		pthread_mutex_unlock(&j->lock);
		if (q) {
			int r = do_kreq(d, j, q);

			pthread_mutex_lock(&j->lock);
			q->result = r;
			j->req_done = true;
			pthread_cond_broadcast(&j->cond);
			pthread_mutex_unlock(&j->lock);
		}
		if (over) {
			pthread_join(j->th, NULL);
			account(d, j);
			drop_job(d, j);
		}
	}
}

uint64_t mig_timer(struct daemon *d, uint64_t now)
{
	uint64_t next = 0;

	(void)now;
	for (struct mig_job *j = d->mig ? d->mig->jobs : NULL; j; j = j->next)
		if (!j->running && j->gather_until && (!next || j->gather_until < next))
			next = j->gather_until;
	return next;
}

int mig_pollfd(struct daemon *d, struct pollfd *p)
{
	if (!d->mig || !d->mig->jobs)
		return 0;
	*p = (struct pollfd){ .fd = d->mig->efd, .events = POLLIN };
	return 1;
}

/* A job for the members names[0, n), none started yet, no thread; NULL: no memory. */
static struct mig_job *new_job(struct daemon *d, bool sender, char (*names)[MIG_NAME_MAX + 1],
			       unsigned int n)
{
	struct migs *m = migs_get(d);
	struct mig_job *j = m ? calloc(1, sizeof(*j)) : NULL;
	enum rcow_mig_mirror mode;
	size_t at;

	if (!j)
		return NULL;
	j->m = calloc(n, sizeof(*j->m));
	if (!j->m) {
		free(j);
		return NULL;
	}
	j->d = d;
	j->wake_fd = m->efd;
	j->sender = sender;
	j->n = n;
	j->lfd = -1;
	j->peer_timeout_ms = d->opt.mig_peer_timeout_ms ? d->opt.mig_peer_timeout_ms :
			     d->cfg.mig_peer_timeout_ms;
	mode = d->opt.mig_mirror_set ? d->opt.mig_mirror : d->cfg.mig_mirror;
	j->mirror_always = mode == RCOW_MIG_MIRROR_ALWAYS;
	j->throttle = mode == RCOW_MIG_MIRROR_THROTTLE;
	j->postcopy_rate = d->opt.mig_postcopy_rate_set ? d->opt.mig_postcopy_rate :
			   d->cfg.mig_postcopy_rate;
	at = (size_t)snprintf(j->label, sizeof(j->label), "%s ", n > 1 ? "group" : "device");
	for (unsigned int i = 0; i < n; i++) {
		snprintf(j->m[i].name, sizeof(j->m[i].name), "%s", names[i]);
		if (at < sizeof(j->label))
			at += (size_t)snprintf(j->label + at, sizeof(j->label) - at, "%s%s",
					       i ? "," : "", names[i]);
		if (mig_spec_path(d, sender, names[i], j->m[i].spec, sizeof(j->m[i].spec))) {
			free(j->m);
			free(j);
			return NULL;
		}
	}
	/* the waits' deadlines are on CLOCK_MONOTONIC (mono_deadline()) */
	if (cond_init_mono(&j->cond)) {
		free(j->m);
		free(j);
		return NULL;
	}
	pthread_mutex_init(&j->lock, NULL);
	j->next = m->jobs;
	m->jobs = j;
	return j;
}

/* Member i is there (info); true when the group is whole. */
static bool join_member(struct mig_job *j, unsigned int i, const struct rcow_device_info *info)
{
	j->m[i].info = *info;
	j->m[i].round_seen = info->migrate_round;
	j->m[i].started = true;
	if (j->sender && !j->target[0])
		snprintf(j->target, sizeof(j->target), "%s", info->migrate_target);
	for (i = 0; i < j->n; i++)
		if (!j->m[i].started)
			return false;
	return true;
}

/* The whole group is there: its thread. */
static int run_job(struct mig_job *j)
{
	int r = pthread_create(&j->th, NULL, j->sender ? mig_send_thread : mig_recv_thread, j);

	if (!r)
		j->running = true;
	return -r;
}

/* A migration that cannot even start: say so to the kernel, from the loop. */
static void fail_start(struct daemon *d, const struct rcow_device_info *info, int code,
		       const char *why)
{
	struct mig_member mb = { .info = *info };
	struct mig_job tmp = { .n = 1, .m = &mb };
	struct mig_kreq q = { .op = MK_END, .status = (uint32_t)code, .message = why };

	logmsg("device %s: migration to %s failed: %s", info->dm_name, info->migrate_target, why);
	if (do_kreq(d, &tmp, &q))
		logmsg("device %s: MIGRATE_END: %s", info->dm_name, q.err.msg);
}

/* Stop a job's thread and wait for it (it wakes within a second). */
static void stop_thread(struct daemon *d, struct mig_job *j)
{
	if (!j->running)
		return;
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	if (j->conn)
		mig_conn_shutdown(j->conn);
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	pthread_join(j->th, NULL);
	j->running = false;
	account(d, j);
}

/*
 * Stop a job and forget it.  why: the members of a source's group that
 * nothing ended yet get MIGRATE_END with it (NULL at the daemon's exit:
 * the kernel keeps them, and the next daemon's MIGRATE_START fails them).
 */
static void stop_job(struct daemon *d, struct mig_job *j, const char *why)
{
	stop_thread(d, j);
	if (why && j->sender && j->n > 1)
		end_rest(d, j, ECANCELED, why);
	drop_job(d, j);
}

/* Loop side: the members named by NAME's spec (single: NAME alone). */
static int spec_members(struct daemon *d, bool sender, const char *name,
			char (*names)[MIG_NAME_MAX + 1], unsigned int *n, struct rcow_err *err)
{
	struct mig_spec *sp = malloc(sizeof(*sp));
	char path[4096];
	int r;

	if (!sp)
		return rcow_err_set(err, ENOMEM, "out of memory");
	r = mig_spec_path(d, sender, name, path, sizeof(path));
	if (!r)
		r = mig_spec_load(path, !sender, sp, err);
	else
		rcow_err_set(err, -r, "run directory path too long");
	mig_psk_wipe(&sp->psk);
	*n = 1;
	snprintf(names[0], MIG_NAME_MAX + 1, "%s", name);
	if (!r && sp->nmem > 1) {
		*n = sp->nmem;
		memcpy(names, sp->member, sizeof(sp->member));
	}
	free(sp);
	for (unsigned int i = 0; !r && i < *n; i++)
		if (!strcmp(names[i], name))
			return 0;
	return r ? r : rcow_err_set(err, EINVAL, "%s is not one of the members its spec names",
				    name);
}

/* MIGRATE_START of a device that no running job has. */
static void start_source(struct daemon *d, const struct rcow_device_info *info)
{
	char names[MIG_GROUP_MAX][MIG_NAME_MAX + 1], why[300];
	struct rcow_err err = { 0 };
	struct mig_job *j;
	unsigned int i = 0, n;
	int r;

	j = find_gathering(d, true, info->dm_name, &i);
	if (!j) {
		/* no readable spec: a job alone, which fails for want of a key */
		if (spec_members(d, true, info->dm_name, names, &n, &err) && err.code == EINVAL) {
			fail_start(d, info, EINVAL, err.msg);
			return;
		}
		if (n == 1)
			logmsg("device %s: migrating to %s", info->dm_name, info->migrate_target);
		j = new_job(d, true, names, n);
		if (!j) {
			fail_start(d, info, ENOMEM, "cannot start the migration job: out of memory");
			return;
		}
		j->gather_until = now_ms() + gather_ms(d);
		for (i = 0; i < n && strcmp(names[i], info->dm_name); i++)
			;
	}
	if (!join_member(j, i, info)) {
		logmsg("%s: member %s started; waiting for the others (migrating to %s)", j->label,
		       info->dm_name, info->migrate_target);
		return;
	}
	if (j->n > 1)
		logmsg("%s: every member started: migrating as one unit to %s", j->label, j->target);
	r = run_job(j);
	if (r) {
		snprintf(why, sizeof(why), "cannot start the migration job: %s", strerror(-r));
		gather_fail(d, j, why);
	}
}

void mig_event(struct daemon *d, const struct rcow_event *ev)
{
	const struct rcow_device_info *info = &ev->u.dev;
	unsigned int i = 0;
	struct mig_job *j = find_job(d, info->dev_id, &i);
	char why[256];
	bool all;

	switch (ev->cmd) {
	case RCOW_CMD_MIGRATE_START:
		if (j && !j->running && j->sender) {
			/* a member of a group being gathered: sent again after its abort? */
			if (!gather_broken(j, now_ms(), why, sizeof(why))) {
				vlog(d, 1, "device %s: MIGRATE_START again: the group is being gathered",
				     info->dm_name);
				return;
			}
			gather_fail(d, j, why);
			j = NULL;
		}
		if (j) {
			bool ended;

			pthread_mutex_lock(&j->lock);
			ended = j->over || j->abort || j->stop || !j->sender;
			pthread_mutex_unlock(&j->lock);
			if (!ended) {
				vlog(d, 1, "device %s: MIGRATE_START again: the migration goes on",
				     info->dm_name);
				return;
			}
			/* a new migration after an old one's end */
			snprintf(why, sizeof(why), "member %s started a new migration", info->dm_name);
			stop_job(d, j, why);
		}
		start_source(d, info);
		return;
	case RCOW_CMD_MIGRATE_ROUND:
	case RCOW_CMD_MIGRATE_WAITING:
	case RCOW_CMD_MIGRATE_FINISH:
	case RCOW_CMD_MIGRATE_ABORT:
		if (!j || !j->sender) {
			vlog(d, 1, "device %s: migration event for no job; ignored", info->dm_name);
			return;
		}
		pthread_mutex_lock(&j->lock);
		if (ev->cmd == RCOW_CMD_MIGRATE_ROUND && info->migrate_round > j->m[i].round_seen)
			j->m[i].round_seen = info->migrate_round;
		if (ev->cmd == RCOW_CMD_MIGRATE_WAITING)
			j->waiting_seen++;
		if (ev->cmd == RCOW_CMD_MIGRATE_FINISH) {
			j->m[i].finish = true;
			if (info->flags & RCOW_MIGRATE_F_POSTCOPY)
				j->postcopy = true;	/* migrate finish postcopy */
			all = true;
			for (unsigned int k = 0; k < j->n; k++)
				all = all && j->m[k].finish;
			j->finish = all;
			if (j->n > 1)
				logmsg("%s: member %s fenced; %s", j->label, info->dm_name,
				       all ? "every member finishes: the last rounds" :
					     "the group finishes once every member was told to");
		}
		if (ev->cmd == RCOW_CMD_MIGRATE_ABORT) {
			j->m[i].aborted = true;
			j->abort = true;
			if (j->n > 1)
				logmsg("%s: member %s aborted: the whole group aborts", j->label,
				       info->dm_name);
			/*
			 * The thread sees it within its 1 s receive slice and
			 * still tells the destination why (ABORT, then a
			 * graceful close: mig_conn_close()); no shutdown(2)
			 * here, which would make it close without goodbye.
			 */
		}
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
		if (!j->running)
			wake_loop(j);	/* mig_run() sees an aborted gathering */
		return;
	default:
		return;
	}
}

/* A root-only receive spec for this incoming device? */
static bool have_spec(struct daemon *d, const char *name)
{
	char path[4096];
	struct stat st;

	if (mig_spec_path(d, false, name, path, sizeof(path)) || stat(path, &st))
		return false;
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		logmsg("device %s: ignoring receive spec %s: it must be owned by the daemon's user and not readable by others",
		       name, path);
		return false;
	}
	return true;
}

void mig_device(struct daemon *d, const struct rcow_device_info *info)
{
	char names[MIG_GROUP_MAX][MIG_NAME_MAX + 1];
	struct rcow_err err = { 0 };
	struct mig_job *j;
	unsigned int i = 0, n;

	if (find_job(d, info->dev_id, &i) || info->migrate_state != RCOW_MIGRATE_INCOMING ||
	    (info->flags & RCOW_DEV_F_INACTIVE))
		return;
	if (!have_spec(d, info->dm_name)) {
		vlog(d, 1, "device %s: incoming, no receive spec for it", info->dm_name);
		return;
	}
	j = find_gathering(d, false, info->dm_name, &i);
	if (!j) {
		if (spec_members(d, false, info->dm_name, names, &n, &err) && err.code == EINVAL) {
			logmsg("device %s: bad receive spec: %s", info->dm_name, err.msg);
			return;
		}
		j = new_job(d, false, names, n);
		if (!j) {
			logmsg("device %s: cannot start the receiving job", info->dm_name);
			return;
		}
		j->gather_until = now_ms() + gather_ms(d);
		for (i = 0; i < n && strcmp(names[i], info->dm_name); i++)
			;
	}
	if (!join_member(j, i, info)) {
		logmsg("%s: member %s incoming; waiting for the others (%u ms at most)", j->label,
		       info->dm_name, gather_ms(d));
		return;
	}
	if (run_job(j)) {
		logmsg("%s: cannot start the receiving job", j->label);
		drop_job(d, j);
	}
}

void mig_stop(struct daemon *d, uint32_t dev_id)
{
	unsigned int i = 0;
	struct mig_job *j = find_job(d, dev_id, &i);
	char why[200];

	if (!j)
		return;
	pthread_mutex_lock(&j->lock);
	j->m[i].gone = true;
	pthread_mutex_unlock(&j->lock);
	if (!j->running) {
		wake_loop(j);		/* mig_run() ends the gathering */
		return;
	}
	logmsg("device %s: gone; stopping the migration of %s", j->m[i].name, j->label);
	snprintf(why, sizeof(why), "member %s of the group was removed", j->m[i].name);
	stop_job(d, j, why);
}

void mig_fini(struct daemon *d)
{
	if (!d->mig)
		return;
	while (d->mig->jobs)
		stop_job(d, d->mig->jobs, NULL);
	close(d->mig->efd);
	free(d->mig);
	d->mig = NULL;
}
