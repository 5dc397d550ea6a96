// SPDX-License-Identifier: GPL-2.0
/*
 * commit.c - remote-cowd's side of a live snapshot commit: upload the
 * extents the kernel froze as commit generation G to a writable NBD
 * export, and keep the frozen content of extents a guest write is about
 * to change (PRESERVE) in the spool meanwhile.
 *
 * One struct commit per device with a commit running, in d->commits,
 * owned by the loop thread.  Its parts:
 *
 *   preserve pool (2 threads)  PRESERVE: read the extents from the COW
 *                              device into the spool (spool.c); the loop
 *                              then answers COMMIT_MARK(PRESERVED).  Its
 *                              own threads, so a PRESERVE never queues
 *                              behind upload reads or copies ahead, and
 *                              nothing of it waits for the network.
 *   ahead pool (2 threads)     preservation ahead of the guest: the same
 *                              copy for frozen extents no write waits on
 *                              yet, then COMMIT_MARK(PRESERVED), so that
 *                              the kernel lets a later write to them go
 *                              on without asking (see below).
 *   read pool (4 threads)      upload reads: an extent's frozen content
 *                              from the spool if it was preserved, else
 *                              from the COW device (O_DIRECT); all-zero
 *                              extents are flagged.
 *   target (tgt-nbd.c)         one libnbd connection to the target URI,
 *                              many writes in flight (write-zeroes for
 *                              zero extents); on its acknowledgement the
 *                              loop answers COMMIT_MARK(UPLOADED), runs of
 *                              extents batched into one mark.
 *
 * What to upload comes from the kernel: GET_RUNS on
 * RCOW_BITMAP_COMMIT_UPLOAD, read again once everything read so far is
 * acknowledged, until it is empty; then the target is flushed and
 * COMMIT_END(0) sent (EAGAIN from the kernel: read the set again).
 *
 * Which copy is the frozen one.  An extent in COMMIT_HELD has its frozen
 * content on the COW device (guest writes to it wait).  Writes wait until
 * we mark it, and we mark it PRESERVED only after its copy is in the
 * spool.  So an upload read takes the spool copy when there is one, and
 * otherwise reads the COW device and then looks in the spool again: if a
 * copy appeared meanwhile, a guest write may have followed it and the
 * COW read is thrown away for the spool copy.  After a restart the spool
 * file is read back (spool.c); an extent in COMMIT_UPLOAD but not in
 * COMMIT_HELD was preserved by the previous daemon and must have a valid
 * slot, or the commit fails (its frozen content is gone).
 *
 * Preserving ahead.  Without it the first guest write to each frozen extent
 * not yet uploaded waits for a PRESERVE round trip.  So while the upload
 * runs, the ahead pool copies extents of the upload set into the spool in
 * the background, from the far end of the upload order (the extents the
 * upload reaches last; it then reads them from the spool), in runs of up to
 * AHEAD_BATCH extents read at once, AHEAD_IN_FLIGHT runs at a time, and
 * marks each extent PRESERVED once its copy is in the spool; none starts
 * while a PRESERVE copy runs (a write waits on that one).  The
 * copy is the frozen content because the extent is still held: the kernel
 * lets no write to it through before our mark, and the only marks are
 * ours.  So an extent is copied at most once (bit spooling: a copy of
 * either kind in flight; spool_has(): copied), never after an UPLOADED or
 * PRESERVED mark of ours, and a PRESERVE for an extent with a copy in the
 * spool is answered without copying again: the guest may have written it
 * since our mark.  One race is left: an ahead copy of an extent whose
 * upload the target acknowledged meanwhile may read a newer write; such a
 * copy is thrown away, not marked (the extent is uploaded).  Space: ahead
 * copies stop at half of spool_max (spool_put_below(), checked under the
 * spool's lock), leaving the rest to PRESERVE requests; a copy ahead that
 * fails never fails the commit (after an error other than the high-water
 * mark they stop for this commit).
 *
 * Failures end the commit with COMMIT_END(errno, message): a read-only or
 * too small target at once, a target unreachable for longer than
 * commit_retry_timeout (reconnecting with backoff meanwhile), a full
 * spool, a COW or spool read error, a write the server refused three
 * times.  STATUS 0 only after every extent was acknowledged and the
 * target flushed.  COMMIT_ABORT, DEVICE_REMOVE: stop, drop the spool.
 * QUIESCE: reads in flight are void (the table may be replaced and the
 * COW device written), no new reads until the device is live again.
 *
 * A commit that ends waits for its jobs still in the pools (they use its
 * COW handle and spool), then frees everything: commit_run() reaps it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "spool.h"
#include "tgt.h"

#define PRESERVERS 2
#define READERS 4
#define AHEAD_THREADS 2
#define AHEAD_IN_FLIGHT 2	/* copies ahead in flight */
#define AHEAD_BATCH 16		/* most extents of one copy ahead (one COW read) */
#define AHEAD_SHARE 2		/* ahead copies stop at spool slots / AHEAD_SHARE */
#define MAX_BYTES_IN_FLIGHT (64ull << 20)
#define WRITE_RETRIES 3
#define MAX_EMPTY_RESCANS 3
#define MAX_END_TRIES 8
#define ACK_BATCH 256
#define ACK_DELAY_MS 20

enum phase { P_CONNECT, P_UPLOAD, P_FLUSH, P_DONE };

struct idvec {
	uint64_t *v;
	size_t n, cap;
};

struct commit {
	struct commit *next;
	struct daemon *d;
	uint32_t dev_id;
	char name[RCOW_DM_NAME_MAX];
	struct rcow_device_info info;	/* as the commit started */
	struct rcow_geom geom;
	uint64_t eb;			/* extent bytes */
	uint64_t gen, total;
	uint32_t flags;
	char *uri;
	struct rcow_policy pol;
	const struct rcow_cred *cred;

	/* fixed while jobs run in the pools */
	struct rcow_cow *cow;
	struct spool *spool;

	struct tgt *tgt;
	struct pool *ppool, *rpool, *apool;
	unsigned int pjobs, rjobs, ajobs;	/* in the pools */
	unsigned int epoch;		/* bumped by QUIESCE: older reads are void */
	bool paused;
	bool ended;			/* COMMIT_END sent (or aborted): drain and free */
	bool keep_spool;
	enum phase phase;

	struct rcow_run *runs;		/* the upload set as last read */
	size_t nruns, ri;
	uint64_t roff;			/* cursor: runs[ri].first + roff */
	uint8_t *busy;			/* per extent: read, queued or being written */
	uint8_t *acked;			/* per extent: uploaded and marked */
	uint8_t *spooling;		/* per extent: a copy to the spool in flight */
	uint8_t *wanted;		/* per extent: PRESERVE came during a copy ahead */
	size_t aj;			/* copies ahead: runs[aj - 1] from its end, ... */
	uint64_t aoff;			/* ... aoff extents back; aj 0: none left */
	uint64_t aexts;			/* extents of the copies ahead in flight */
	uint64_t ahead_limit;		/* spool slots ahead copies may take up to */
	bool ahead_off;			/* stopped for this commit (an error) */
	struct xqueue wq;		/* read, waiting for the target */
	struct xqueue atq;		/* at the target */
	unsigned int max_jobs;
	struct idvec acks, pres;	/* to mark uploaded / preserved */
	uint64_t acks_since;		/* now_ms() of the oldest unmarked ack */
	unsigned int empty_rescans, end_tries;
	bool flushing;

	uint64_t start_ms, extents, bytes_data, bytes_zero, spooled, preserved, ahead, asked;
	int nfds;			/* fds given to the last poll */
	bool has_tgt_fd;
};

static bool bit(const uint8_t *b, uint64_t i)
{
	return (b[i / 8] >> (i % 8)) & 1;
}

static void bset(uint8_t *b, uint64_t i)
{
	b[i / 8] |= (uint8_t)(1u << (i % 8));
}

static void bclr(uint8_t *b, uint64_t i)
{
	b[i / 8] &= (uint8_t)~(1u << (i % 8));
}

static int idvec_push(struct idvec *v, uint64_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 64;
		uint64_t *n = realloc(v->v, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		v->v = n;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static struct commit *find(struct daemon *d, uint32_t dev_id)
{
	for (struct commit *c = d->commits; c; c = c->next)
		if (c->dev_id == dev_id && !c->ended)
			return c;
	return NULL;
}

/* ---- ending -------------------------------------------------------------- */

static void end_free_jobs(struct commit *c)
{
	struct xfer *x;

	while ((x = c->wq.head)) {
		xq_del(&c->wq, x);
		rcow_buf_free(&x->buf);
		free(x);
	}
	while ((x = c->atq.head)) {
		xq_del(&c->atq, x);
		rcow_buf_free(&x->buf);
		free(x);
	}
}

/* Stop working on the commit: close the target, free what is not in a pool. */
static void stop(struct commit *c, bool keep_spool)
{
	c->ended = true;
	c->keep_spool = keep_spool;
	tgt_close(c->tgt);	/* abandons the writes in flight; no callback into us */
	c->tgt = NULL;
	end_free_jobs(c);
}

static void send_end(struct commit *c, uint32_t status, const char *msg)
{
	struct rcow_commit m = { .dev_id = c->dev_id, .gen = c->gen, .status = status };
	struct rcow_err err = { 0 };
	int r;

	snprintf(m.message, sizeof(m.message), "%s", msg ? msg : "");
	r = c->d->kops->commit_end(c->d->kctx, &m, &err);
	if (r && r != -ESTALE)
		logmsg("device %s: commit %llu: sending COMMIT_END failed: %s", c->name,
		       (unsigned long long)c->gen, err.msg);
}

static void fail(struct commit *c, int e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The commit failed: tell the kernel why, and stop. */
static void fail(struct commit *c, int e, const char *fmt, ...)
{
	char msg[RCOW_MESSAGE_MAX];
	va_list ap;

	if (c->ended)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logmsg("device %s: commit %llu to %s failed after %.1f s (%llu of %llu extents uploaded): %s",
	       c->name, (unsigned long long)c->gen, c->uri,
	       (double)(now_ms() - c->start_ms) / 1000.0, (unsigned long long)c->extents,
	       (unsigned long long)c->total, msg);
	send_end(c, (uint32_t)(e > 0 ? e : EIO), msg);
	stop(c, false);
}

static void finish(struct commit *c)
{
	double secs = (double)(now_ms() - c->start_ms) / 1000.0;
	uint64_t bytes = c->bytes_data + c->bytes_zero;

	logmsg("device %s: commit %llu to %s done: %llu extents, %llu bytes (%llu as write-zeroes, %llu from the spool; preserved %llu on request, %llu ahead; PRESERVE asked for %llu), %.1f s, %.1f MB/s",
	       c->name, (unsigned long long)c->gen, c->uri, (unsigned long long)c->extents,
	       (unsigned long long)bytes, (unsigned long long)c->bytes_zero,
	       (unsigned long long)c->spooled, (unsigned long long)c->preserved,
	       (unsigned long long)c->ahead, (unsigned long long)c->asked, secs,
	       secs > 0 ? (double)c->bytes_data / 1e6 / secs : 0.0);
	stop(c, false);
}

static void destroy(struct commit *c)
{
	pool_stop(c->ppool, true);
	pool_stop(c->rpool, true);
	pool_stop(c->apool, true);
	spool_close(c->spool, c->keep_spool);
	rcow_cow_close(c->cow);
	free(c->runs);
	free(c->busy);
	free(c->acked);
	free(c->spooling);
	free(c->wanted);
	free(c->acks.v);
	free(c->pres.v);
	free(c->uri);
	free(c);
}

/* ---- pool threads: only the job, the COW handle, the spool, the geometry --- */

static uint64_t cow_offset(const struct commit *c, uint64_t ext)
{
	return (c->geom.data_offset + ext * c->geom.extent_sectors) * 512;
}

static bool all_zero(const unsigned char *p, size_t len)
{
	return len == 0 || (p[0] == 0 && !memcmp(p, p + 1, len - 1));
}

/* PRESERVE: the extent's content as it is now (frozen: the write waits) into the spool. */
static void preserve_one(void *ctx, struct xfer *x)
{
	struct commit *c = x->owner;
	struct rcow_err err = { 0 };

	(void)ctx;
	x->err = 0;
	if (rcow_buf_reserve(&x->buf, x->io_len, &err) ||
	    rcow_cow_pread(c->cow, x->buf.p, x->io_len, cow_offset(c, x->ext), &err) ||
	    spool_put(c->spool, x->ext, x->buf.p, (uint32_t)x->len, &err)) {
		x->err = err.code ? err.code : EIO;
		if (x->err != ENOSPC)
			logmsg("device %s: commit %llu: preserving extent %llu: %s", c->name,
			       (unsigned long long)c->gen, (unsigned long long)x->ext, err.msg);
	}
	rcow_buf_free(&x->buf);
}

/*
 * Ahead: the same copy for extents [ext, ext + nexts), nobody waits on
 * them; read at once, spooled one by one below the high-water mark.
 * x->stored: how many (from ext on) are in the spool.
 */
static void ahead_one(void *ctx, struct xfer *x)
{
	struct commit *c = x->owner;
	struct rcow_err err = { 0 };

	(void)ctx;
	x->err = 0;
	x->stored = 0;
	if (rcow_buf_reserve(&x->buf, x->io_len, &err) ||
	    rcow_cow_pread(c->cow, x->buf.p, x->io_len, cow_offset(c, x->ext), &err)) {
		x->err = err.code ? err.code : EIO;
	} else {
		for (; x->stored < x->nexts; x->stored++) {
			uint64_t e = x->ext + x->stored;

			if (spool_put_below(c->spool, e, (char *)x->buf.p + x->stored * c->eb,
					    (uint32_t)rcow_geom_extent_bytes(&c->geom, e),
					    c->ahead_limit, &err)) {
				x->err = err.code ? err.code : EIO;
				break;
			}
		}
	}
	if (x->err && x->err != EBUSY)
		logmsg("device %s: commit %llu: preserving extents %llu+%u ahead: %s", c->name,
		       (unsigned long long)c->gen, (unsigned long long)x->ext, x->nexts, err.msg);
	rcow_buf_free(&x->buf);
}

/* Upload read: the frozen content of the extent (see the top of the file). */
static void read_one(void *ctx, struct xfer *x)
{
	struct commit *c = x->owner;
	struct rcow_err err = { 0 };
	uint32_t got = 0;
	int r;

	(void)ctx;
	x->err = 0;
	x->from_spool = false;
	if (rcow_buf_reserve(&x->buf, x->io_len, &err))
		goto fail;
	r = spool_get(c->spool, x->ext, x->buf.p, (uint32_t)x->io_len, &got, &err);
	if (r == -ENOENT) {
		if (rcow_cow_pread(c->cow, x->buf.p, x->io_len, cow_offset(c, x->ext), &err))
			goto fail;
		/* preserved while we read: the COW device may hold a newer write */
		r = spool_get(c->spool, x->ext, x->buf.p, (uint32_t)x->io_len, &got, &err);
		if (r == -ENOENT)
			r = 0;
		else if (r == 0)
			x->from_spool = true;
	} else if (r == 0) {
		x->from_spool = true;
	}
	if (r)
		goto fail;
	if (x->from_spool && got != x->len) {
		rcow_err_set(&err, EBADMSG, "the spooled copy of extent %llu has %u bytes, not %llu",
			     (unsigned long long)x->ext, got, (unsigned long long)x->len);
		goto fail;
	}
	x->zero_all = all_zero(x->buf.p, (size_t)x->len);
	return;
fail:
	x->err = err.code ? err.code : EIO;
	logmsg("device %s: commit %llu: reading extent %llu: %s", c->name,
	       (unsigned long long)c->gen, (unsigned long long)x->ext, err.msg);
}

/* ---- marks ---------------------------------------------------------------- */

/* Send the marks of v (extent numbers), sorted and batched in runs.  false on a refusal. */
static bool send_marks(struct commit *c, struct idvec *v, uint32_t mark)
{
	struct rcow_err err = { 0 };
	size_t i = 0, j;
	bool ok = true;

	if (!v->n)
		return true;
	qsort(v->v, v->n, sizeof(*v->v), cmp_u64);
	while (i < v->n) {
		struct rcow_commit m = { .dev_id = c->dev_id, .gen = c->gen, .mark = mark };
		int r;

		for (j = i + 1; j < v->n && v->v[j] <= v->v[j - 1] + 1 &&
		     v->v[j] - v->v[i] < REMOTE_COW_MAX_RANGE; j++)
			;
		m.first = v->v[i];
		m.count = (uint32_t)(v->v[j - 1] - v->v[i] + 1);
		r = c->d->kops->commit_mark(c->d->kctx, &m, &err);
		if (r == -ESTALE) {
			logmsg("device %s: commit %llu is no longer running in the kernel; stopping its upload",
			       c->name, (unsigned long long)c->gen);
			stop(c, false);
			v->n = 0;
			return false;
		}
		if (r) {
			logmsg("device %s: commit %llu: COMMIT_MARK of extents %llu+%u refused: %s",
			       c->name, (unsigned long long)c->gen, (unsigned long long)m.first,
			       m.count, err.msg);
			ok = false;
			/* keep the rest for the next turn */
			memmove(v->v, v->v + i, (v->n - i) * sizeof(*v->v));
			v->n -= i;
			return false;
		}
		for (uint64_t e = m.first; e < m.first + m.count; e++) {
			if (mark == RCOW_MARK_UPLOADED) {
				bset(c->acked, e);
				bclr(c->busy, e);
				spool_release(c->spool, e);
			}
		}
		i = j;
	}
	v->n = 0;
	return ok;
}

/* ---- the upload set ------------------------------------------------------- */

struct runs_ctx {
	struct rcow_run *v;
	size_t n, cap;
	uint64_t extents;
	uint64_t nr;
};

static int collect_run(const struct rcow_run *run, void *data)
{
	struct runs_ctx *rc = data;

	if (run->first >= rc->nr || run->count > rc->nr - run->first)
		return -ERANGE;
	if (rc->n == rc->cap) {
		size_t cap = rc->cap ? 2 * rc->cap : 64;
		struct rcow_run *n = realloc(rc->v, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		rc->v = n;
		rc->cap = cap;
	}
	rc->v[rc->n++] = *run;
	rc->extents += run->count;
	return 0;
}

static int read_runs(struct commit *c, uint32_t bitmap, struct runs_ctx *rc)
{
	struct rcow_err err = { 0 };
	int r;

	memset(rc, 0, sizeof(*rc));
	rc->nr = c->geom.nr_extents;
	r = c->d->kops->get_runs(c->d->kctx, c->dev_id, bitmap, 0, 0, collect_run, rc, &err);
	if (r) {
		free(rc->v);
		rc->v = NULL;
		if (r == -ERANGE)
			rcow_err_set(&err, ERANGE, "the kernel listed extents outside the device");
		fail(c, -r, "reading the %s set from the kernel failed: %s",
		     bitmap == RCOW_BITMAP_COMMIT_UPLOAD ? "commit-upload" : "commit-held", err.msg);
	}
	return r;
}

/* Read the upload set again; the cursor starts over. */
static int rescan(struct commit *c)
{
	struct runs_ctx rc;
	int r = read_runs(c, RCOW_BITMAP_COMMIT_UPLOAD, &rc);

	if (r)
		return r;
	free(c->runs);
	c->runs = rc.v;
	c->nruns = rc.n;
	c->ri = 0;
	c->roff = 0;
	c->aj = c->nruns;
	c->aoff = 0;
	return 0;
}

/*
 * (Re)start: the spool copies that are valid are those of extents to
 * upload that are no longer held (preserved); a copy of a held extent or
 * of one no longer to upload is dropped, and a preserved extent without
 * a copy makes the commit fail.
 */
static int check_spool(struct commit *c)
{
	struct runs_ctx up, held;
	uint8_t *isheld, *isup;
	uint64_t nspool = spool_count(c->spool), *list = NULL, n = 0, missing = 0, first = 0;
	size_t bytes = (size_t)((c->geom.nr_extents + 7) / 8);
	int r;

	r = read_runs(c, RCOW_BITMAP_COMMIT_UPLOAD, &up);
	if (r)
		return r;
	r = read_runs(c, RCOW_BITMAP_COMMIT_HELD, &held);
	if (r) {
		free(up.v);
		return r;
	}
	isheld = calloc(1, bytes ? bytes : 1);
	isup = calloc(1, bytes ? bytes : 1);
	if (nspool)
		list = malloc(nspool * sizeof(*list));
	if (!isheld || !isup || (nspool && !list)) {
		fail(c, ENOMEM, "out of memory checking the spool");
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < held.n; i++)
		for (uint64_t e = held.v[i].first; e < held.v[i].first + held.v[i].count; e++)
			bset(isheld, e);
	for (size_t i = 0; i < up.n; i++)
		for (uint64_t e = up.v[i].first; e < up.v[i].first + up.v[i].count; e++)
			bset(isup, e);
	if (nspool) {
		n = spool_list(c->spool, list, nspool);
		for (uint64_t i = 0; i < n; i++)
			if (bit(isheld, list[i]) || !bit(isup, list[i]))
				spool_release(c->spool, list[i]);
	}
	for (size_t i = 0; i < up.n; i++)
		for (uint64_t e = up.v[i].first; e < up.v[i].first + up.v[i].count; e++)
			if (!bit(isheld, e) && !spool_has(c->spool, e)) {
				if (!missing++)
					first = e;
			}
	if (missing) {
		fail(c, ENODATA,
		     "%llu extent(s) (the first: %llu) were preserved for this commit but their frozen content is not in the spool (%s): remote-cowd restarted and the spool file is missing or damaged; the commit cannot be completed, run it again",
		     (unsigned long long)missing, (unsigned long long)first, spool_path(c->spool));
		r = -ENODATA;
		goto out;
	}
	if (n)
		logmsg("device %s: commit %llu: %llu preserved extent(s) taken up from %s",
		       c->name, (unsigned long long)c->gen, (unsigned long long)spool_count(c->spool),
		       spool_path(c->spool));
	free(c->runs);
	c->runs = up.v;
	up.v = NULL;
	c->nruns = up.n;
	c->ri = 0;
	c->roff = 0;
	c->aj = c->nruns;
	c->aoff = 0;
out:
	free(up.v);
	free(held.v);
	free(isheld);
	free(isup);
	free(list);
	return r;
}

/* ---- starting ------------------------------------------------------------- */

static struct commit *create(struct daemon *d, const struct rcow_device_info *info,
			     const struct rcow_commit *m, bool resumed)
{
	struct commit *c = calloc(1, sizeof(*c));
	struct rcow_err err = { 0 };
	size_t bytes = (size_t)((info->nr_extents + 7) / 8);
	struct spool_id sid;
	uint64_t jobs;
	char why[RCOW_MESSAGE_MAX];
	int r;

	if (!c) {
		logmsg("device %s: out of memory starting commit %llu", info->dm_name,
		       (unsigned long long)m->gen);
		return NULL;
	}
	c->d = d;
	c->dev_id = info->dev_id;
	c->info = *info;
	snprintf(c->name, sizeof(c->name), "%s", info->dm_name);
	c->geom = (struct rcow_geom){ info->extent_sectors, info->nr_extents, info->data_offset,
				      info->dev_sectors };
	c->eb = (uint64_t)info->extent_sectors * 512;
	c->gen = m->gen;
	c->total = m->total;
	c->flags = m->flags;
	c->start_ms = now_ms();
	c->phase = P_CONNECT;
	c->uri = strdup(m->target_uri);
	c->busy = calloc(1, bytes ? bytes : 1);
	c->acked = calloc(1, bytes ? bytes : 1);
	c->spooling = calloc(1, bytes ? bytes : 1);
	c->wanted = calloc(1, bytes ? bytes : 1);
	c->ahead_off = d->no_preserve_ahead;
	c->next = d->commits;
	d->commits = c;
	if (!c->uri || !c->busy || !c->acked || !c->spooling || !c->wanted) {
		fail(c, ENOMEM, "out of memory starting the commit");
		return c;
	}
	rcow_config_lookup(&d->cfg, c->uri, &c->pol, &c->cred);
	jobs = MAX_BYTES_IN_FLIGHT / c->eb;
	if (jobs < 4)
		jobs = 4;
	c->max_jobs = c->pol.max_in_flight < jobs ? c->pol.max_in_flight : (unsigned int)jobs;
	logmsg("device %s: %s commit %llu to %s: %llu extent(s) of %u KiB frozen%s",
	       c->name, resumed ? "resuming" : "starting", (unsigned long long)c->gen, c->uri,
	       (unsigned long long)c->total, info->extent_sectors / 2,
	       (c->flags & RCOW_COMMIT_F_SINCE_LAST) ? " (since the last commit)" : "");
	if (rcow_geom_check(&c->geom, &err)) {
		fail(c, EINVAL, "inconsistent device geometry: %s", err.msg);
		return c;
	}
	if (d->kops->open_cow(d->kctx, info, &c->cow, &err)) {
		fail(c, err.code ? err.code : EIO, "%s", err.msg);
		return c;
	}
	sid = (struct spool_id){ c->dev_id, c->gen, info->extent_sectors, info->nr_extents,
				 info->dm_name };
	if (spool_open(rcow_config_spool_dir(&d->cfg), &sid, d->cfg.spool_max, &c->spool, &err)) {
		fail(c, err.code ? err.code : EIO, "%s", err.msg);
		return c;
	}
	c->ahead_limit = spool_slots(c->spool) / AHEAD_SHARE;
	r = pool_start(&c->ppool, "commit preserver", PRESERVERS, preserve_one, NULL);
	if (!r)
		r = pool_start(&c->rpool, "commit reader", READERS, read_one, NULL);
	if (!r)
		r = pool_start(&c->apool, "commit ahead", AHEAD_THREADS, ahead_one, NULL);
	if (r) {
		fail(c, -r, "cannot start the commit's threads: %s", strerror(-r));
		return c;
	}
	if (check_spool(c))
		return c;
	r = tgt_open(&c->tgt, c->uri, &c->pol, c->cred, d->opt.verbose);
	if (r) {
		snprintf(why, sizeof(why), "cannot open target %s: %s", c->uri, strerror(-r));
		fail(c, -r, "%s", why);
	}
	return c;
}

static void unpause(struct commit *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	logmsg("device %s: commit %llu: the device is live again; resuming the upload", c->name,
	       (unsigned long long)c->gen);
	rescan(c);
}

void commit_start(struct daemon *d, const struct rcow_device_info *info,
		  const struct rcow_commit *m)
{
	struct commit *c = find(d, info->dev_id);

	if (c && c->gen == m->gen) {
		/* sent again (we registered again), or found in the device list */
		unpause(c);
		return;
	}
	{
		/*
		 * A COMMIT_START queued before a failure we reported (it is
		 * sent again at registration): ask whether it still runs.
		 */
		struct rcow_device_info now;
		struct rcow_err err = { 0 };

		memset(&now, 0, sizeof(now));
		if (d->kops->get_device(d->kctx, info->dev_id, &now, &err) == 0 &&
		    (now.have & (1ull << RCOW_A_COMMIT_STATE)) &&
		    (now.commit_state != RCOW_COMMIT_UPLOADING || now.commit_gen != m->gen)) {
			vlog(d, 1, "device %s: COMMIT_START for commit %llu, which the kernel no longer runs; ignoring it",
			     info->dm_name, (unsigned long long)m->gen);
			return;
		}
	}
	if (c) {
		logmsg("device %s: commit %llu replaces commit %llu, which the kernel no longer runs",
		       c->name, (unsigned long long)m->gen, (unsigned long long)c->gen);
		stop(c, false);
	}
	if (!m->target_uri[0]) {
		logmsg("device %s: commit %llu without a target URI; ignoring it", info->dm_name,
		       (unsigned long long)m->gen);
		return;
	}
	create(d, info, m, false);
}

/*
 * A commit found uploading in the kernel's device list is resumed from the
 * loop (commit_run()), not at once: the list arrives in a dump, and the
 * resume asks the kernel (GET_RUNS) on the same socket, which must not
 * happen while the dump is still being read.
 */
struct commit_resume {
	struct commit_resume *next;
	struct rcow_device_info info;
	struct rcow_commit m;
};

static void drop_resume(struct daemon *d, uint32_t dev_id)
{
	struct commit_resume **p = &d->commit_resumes, *r;

	while ((r = *p)) {
		if (r->info.dev_id == dev_id) {
			*p = r->next;
			free(r);
			continue;
		}
		p = &r->next;
	}
}

static void queue_resume(struct daemon *d, const struct rcow_device_info *info,
			 const struct rcow_commit *m)
{
	struct commit_resume *r = calloc(1, sizeof(*r));

	if (!r) {
		logmsg("device %s: out of memory resuming commit %llu", info->dm_name,
		       (unsigned long long)m->gen);
		return;
	}
	drop_resume(d, info->dev_id);
	r->info = *info;
	r->m = *m;
	r->next = d->commit_resumes;
	d->commit_resumes = r;
}

/* Start the commits found uploading since the last turn of the loop. */
static void run_resumes(struct daemon *d)
{
	struct commit_resume *r;

	while ((r = d->commit_resumes)) {
		struct commit *c = find(d, r->info.dev_id);

		d->commit_resumes = r->next;
		if (!c || c->gen != r->m.gen) {
			if (c)
				stop(c, false);
			create(d, &r->info, &r->m, true);
		}
		free(r);
	}
}

void commit_fini(struct daemon *d)
{
	struct commit_resume *r;

	while ((r = d->commit_resumes)) {
		d->commit_resumes = r->next;
		free(r);
	}
}

void commit_device(struct daemon *d, const struct rcow_device_info *info)
{
	struct commit *c = find(d, info->dev_id);
	struct rcow_commit m;

	if (!(info->have & (1ull << RCOW_A_COMMIT_STATE))) {
		if (c && c->paused && !(info->flags & RCOW_DEV_F_INACTIVE))
			unpause(c);
		return;
	}
	if (info->commit_state != RCOW_COMMIT_UPLOADING) {
		if (c) {
			logmsg("device %s: the kernel no longer runs commit %llu; stopping its upload",
			       c->name, (unsigned long long)c->gen);
			stop(c, false);
		}
		return;
	}
	if (c && c->gen == info->commit_gen) {
		unpause(c);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.dev_id = info->dev_id;
	m.gen = info->commit_gen;
	m.flags = info->commit_flags;
	m.total = info->commit_total;
	snprintf(m.target_uri, sizeof(m.target_uri), "%s", info->target_uri);
	if (!m.target_uri[0]) {
		logmsg("device %s: commit %llu is uploading but the kernel names no target URI",
		       info->dm_name, (unsigned long long)m.gen);
		return;
	}
	queue_resume(d, info, &m);
}

/* ---- PRESERVE ------------------------------------------------------------- */

/* A copy of extents [e, e + n) into the spool, by pool p (ppool: n is 1, or apool). */
static int submit_copy(struct commit *c, struct pool *p, uint64_t e, unsigned int n)
{
	struct xfer *x = calloc(1, sizeof(*x));

	if (!x)
		return -ENOMEM;
	x->owner = c;
	x->ext = e;
	x->nexts = n;
	x->len = (n - 1) * c->eb + rcow_geom_extent_bytes(&c->geom, e + n - 1);
	x->io_len = rcow_cow_io_len(c->cow, (size_t)x->len);
	x->epoch = c->epoch;
	for (unsigned int i = 0; i < n; i++)
		bset(c->spooling, e + i);
	pool_submit(p, x);
	return 0;
}

void commit_preserve(struct daemon *d, const struct rcow_device_info *info,
		     const struct rcow_commit *m)
{
	struct commit *c;
	uint64_t end;

	/* A write waits: a commit found in the device list starts now. */
	run_resumes(d);
	c = find(d, info->dev_id);
	if (!c || c->gen != m->gen) {
		logmsg("device %s: PRESERVE for commit %llu, which is not being uploaded here; ignoring it",
		       info->dm_name, (unsigned long long)m->gen);
		return;
	}
	unpause(c);		/* only a live table sends it */
	if (c->ended)
		return;
	if (m->count == 0 || m->first >= c->geom.nr_extents ||
	    m->count > c->geom.nr_extents - m->first) {
		logmsg("device %s: PRESERVE for extents %llu+%u outside the device; ignoring it",
		       c->name, (unsigned long long)m->first, m->count);
		return;
	}
	end = m->first + m->count;
	c->asked += m->count;
	for (uint64_t e = m->first; e < end; e++) {
		if (bit(c->spooling, e)) {
			/* a copy is under way: it answers (see the top) */
			bset(c->wanted, e);
			continue;
		}
		if (bit(c->acked, e) || spool_has(c->spool, e)) {
			/*
			 * Uploaded, or its frozen content is in the spool
			 * already (a copy ahead whose mark crossed this
			 * PRESERVE): never copy it again, the guest may have
			 * written it since.
			 */
			if (idvec_push(&c->pres, e))
				goto nomem;
			continue;
		}
		if (submit_copy(c, c->ppool, e, 1))
			goto nomem;
		c->pjobs++;
	}
	return;
nomem:
	fail(c, ENOMEM, "out of memory preserving extents %llu+%u", (unsigned long long)m->first,
	     m->count);
}

/* ---- ABORT, QUIESCE, removal ---------------------------------------------- */

void commit_abort(struct daemon *d, const struct rcow_commit *m)
{
	struct commit *c = find(d, m->dev_id);

	drop_resume(d, m->dev_id);
	if (!c || c->gen != m->gen)
		return;
	logmsg("device %s: commit %llu aborted by the kernel after %.1f s (%llu of %llu extents uploaded); dropping its spool",
	       c->name, (unsigned long long)c->gen, (double)(now_ms() - c->start_ms) / 1000.0,
	       (unsigned long long)c->extents, (unsigned long long)c->total);
	stop(c, false);
}

void commit_pause(struct daemon *d, uint32_t dev_id)
{
	struct commit *c = find(d, dev_id);

	if (!c || c->paused)
		return;
	c->paused = true;
	c->epoch++;
	vlog(d, 1, "device %s: commit %llu: device suspended; upload reads paused", c->name,
	     (unsigned long long)c->gen);
}

void commit_stop(struct daemon *d, uint32_t dev_id)
{
	struct commit *c = find(d, dev_id);

	drop_resume(d, dev_id);
	if (!c)
		return;
	if (d->stopping)
		logmsg("device %s: commit %llu: exiting mid-commit; keeping its spool %s for the next remote-cowd",
		       c->name, (unsigned long long)c->gen, spool_path(c->spool));
	else
		logmsg("device %s: gone; dropping its commit %llu", c->name,
		       (unsigned long long)c->gen);
	stop(c, d->stopping);
}

/* ---- the upload ------------------------------------------------------------ */

/* A copy ahead came back (see the top of the file). */
static void ahead_done(struct commit *c, struct xfer *x)
{
	c->aexts -= x->nexts;
	if (x->err && x->err != EBUSY && !c->ahead_off) {
		logmsg("device %s: commit %llu: no more preserving ahead for this commit",
		       c->name, (unsigned long long)c->gen);
		c->ahead_off = true;
	}
	for (unsigned int i = 0; i < x->nexts && !c->ended; i++) {
		uint64_t e = x->ext + i;
		bool wanted = bit(c->wanted, e);

		bclr(c->spooling, e);
		bclr(c->wanted, e);
		if (i < x->stored) {
			if (bit(c->acked, e))
				/* uploaded meanwhile: the copy may be of a newer write */
				spool_release(c->spool, e);
			else if (idvec_push(&c->pres, e))
				fail(c, ENOMEM, "out of memory");
			else
				c->ahead++;
		} else if (wanted) {
			/* not copied, and a write waits on it: copy it as asked */
			if (submit_copy(c, c->ppool, e, 1))
				fail(c, ENOMEM, "out of memory");
			else
				c->pjobs++;
		}
	}
}

/*
 * Copies ahead: walk the upload set from its far end, skipping what is
 * uploaded, being copied or copied, in runs of contiguous extents of up
 * to AHEAD_BATCH, while under the in-flight limit and the spool's
 * high-water mark.
 */
static void issue_ahead(struct commit *c)
{
	/* none starts while a PRESERVE copy runs: a write waits on it */
	while (!c->ahead_off && !c->paused && c->aj && c->ajobs < AHEAD_IN_FLIGHT && !c->pjobs) {
		uint64_t taken = spool_taken(c->spool) + c->aexts, top = 0;
		unsigned int n = 0;

		if (taken >= c->ahead_limit)
			return;
		while (c->aj && n < AHEAD_BATCH && n < c->ahead_limit - taken) {
			const struct rcow_run *run = &c->runs[c->aj - 1];
			uint64_t e = run->first + run->count - 1 - c->aoff;

			if (n && e != top - n)
				break;		/* not next to the run being gathered */
			if (++c->aoff >= run->count) {
				c->aj--;
				c->aoff = 0;
			}
			if (bit(c->acked, e) || bit(c->spooling, e) || spool_has(c->spool, e)) {
				if (n)
					break;
				continue;
			}
			if (!n)
				top = e;
			n++;
		}
		if (!n)
			continue;
		if (submit_copy(c, c->apool, top - n + 1, n)) {
			fail(c, ENOMEM, "out of memory");
			return;
		}
		c->ajobs++;
		c->aexts += n;
	}
}

/* Pool completions. */
static void reap_pools(struct commit *c)
{
	struct xfer *x, *next;

	for (x = pool_collect(c->ppool); x; x = next) {
		next = x->done_next;
		c->pjobs--;
		bclr(c->spooling, x->ext);
		bclr(c->wanted, x->ext);
		if (!c->ended) {
			if (x->err == ENOSPC)
				fail(c, ENOSPC, "spool full (spool_max %llu bytes in %s)",
				     (unsigned long long)c->d->cfg.spool_max,
				     rcow_config_spool_dir(&c->d->cfg));
			else if (x->err)
				fail(c, x->err, "cannot preserve extent %llu: %s",
				     (unsigned long long)x->ext, strerror(x->err));
			else if (bit(c->acked, x->ext))
				/* uploaded meanwhile: the copy may be of a newer write */
				spool_release(c->spool, x->ext);
			else if (idvec_push(&c->pres, x->ext))
				fail(c, ENOMEM, "out of memory");
			else
				c->preserved++;
		}
		free(x);
	}
	for (x = pool_collect(c->apool); x; x = next) {
		next = x->done_next;
		c->ajobs--;
		if (!c->ended)
			ahead_done(c, x);
		free(x);
	}
	for (x = pool_collect(c->rpool); x; x = next) {
		next = x->done_next;
		x->done_next = NULL;
		c->rjobs--;
		if (c->ended || x->epoch != c->epoch) {
			/* void (QUIESCE): read again later */
			if (!c->ended)
				bclr(c->busy, x->ext);
			rcow_buf_free(&x->buf);
			free(x);
			continue;
		}
		if (x->err) {
			fail(c, x->err, "cannot read extent %llu of the device: %s",
			     (unsigned long long)x->ext, strerror(x->err));
			rcow_buf_free(&x->buf);
			free(x);
			continue;
		}
		xq_push(&c->wq, x);
	}
}

/* Target completions. */
static void reap_target(struct commit *c)
{
	void *cookie;
	bool lost;
	int e;

	while (c->tgt && tgt_next_done(c->tgt, &cookie, &e, &lost)) {
		struct xfer *x = cookie;

		if (!x) {		/* the flush */
			c->flushing = false;
			if (lost)
				continue;	/* flushed again after the reconnection */
			if (e) {
				fail(c, e, "target %s refused to flush: %s", c->uri, strerror(e));
				return;
			}
			c->phase = P_DONE;
			continue;
		}
		xq_del(&c->atq, x);
		if (lost) {
			xq_push_front(&c->wq, x);	/* again after the reconnection */
			continue;
		}
		if (e) {
			if (++x->retries >= WRITE_RETRIES) {
				fail(c, e, "target %s failed writing extent %llu (%llu bytes at %llu) %u times: %s",
				     c->uri, (unsigned long long)x->ext, (unsigned long long)x->len,
				     (unsigned long long)x->off, x->retries, strerror(e));
				rcow_buf_free(&x->buf);
				free(x);
				return;
			}
			logmsg("device %s: commit %llu: target %s failed writing extent %llu (%s); retrying",
			       c->name, (unsigned long long)c->gen, c->uri,
			       (unsigned long long)x->ext, strerror(e));
			xq_push(&c->wq, x);
			continue;
		}
		c->extents++;
		if (x->zero_all)
			c->bytes_zero += x->len;
		else
			c->bytes_data += x->len;
		c->spooled += x->from_spool;
		if (!c->acks.n)
			c->acks_since = now_ms();
		if (idvec_push(&c->acks, x->ext))
			fail(c, ENOMEM, "out of memory");
		rcow_buf_free(&x->buf);
		free(x);
	}
}

/* A (re)connection: is this export fit to take the device? */
static bool check_target(struct commit *c)
{
	uint64_t need = c->geom.dev_sectors * 512;
	int64_t size = tgt_size(c->tgt);

	if (tgt_read_only(c->tgt)) {
		fail(c, EROFS, "target %s is read-only: the commit needs a writable NBD export",
		     c->uri);
		return false;
	}
	if (size < 0 || (uint64_t)size < need) {
		fail(c, EFBIG, "target %s has %lld bytes, fewer than the device's %llu: the commit needs an export at least as large as the device",
		     c->uri, (long long)size, (unsigned long long)need);
		return false;
	}
	if (c->phase == P_CONNECT) {
		vlog(c->d, 1, "device %s: commit %llu: target %s connected (%lld bytes%s%s)",
		     c->name, (unsigned long long)c->gen, c->uri, (long long)size,
		     tgt_can_zero(c->tgt) ? ", write-zeroes" : "",
		     tgt_can_flush(c->tgt) ? ", flush" : ", no flush");
		c->phase = P_UPLOAD;
	}
	return true;
}

static void issue_writes(struct commit *c)
{
	struct xfer *x;

	while ((x = c->wq.head) && tgt_state(c->tgt) == TGT_READY) {
		int r;

		xq_del(&c->wq, x);
		xq_push(&c->atq, x);
		x->off = x->ext * c->eb;
		if (x->zero_all && tgt_can_zero(c->tgt))
			r = tgt_zero(c->tgt, x->len, x->off, x);
		else
			r = tgt_write(c->tgt, x->buf.p, x->len, x->off, x);
		if (r) {
			xq_del(&c->atq, x);
			xq_push_front(&c->wq, x);
			if (r == -ENOMEM)
				fail(c, ENOMEM, "out of memory");
			return;
		}
	}
}

static unsigned int jobs(const struct commit *c)
{
	return c->rjobs + c->wq.n + c->atq.n;
}

static void issue_reads(struct commit *c)
{
	while (!c->paused && c->ri < c->nruns && jobs(c) < c->max_jobs) {
		const struct rcow_run *run = &c->runs[c->ri];
		uint64_t e = run->first + c->roff;
		struct xfer *x;

		if (++c->roff >= run->count) {
			c->ri++;
			c->roff = 0;
		}
		if (bit(c->busy, e) || bit(c->acked, e))
			continue;
		x = calloc(1, sizeof(*x));
		if (!x) {
			fail(c, ENOMEM, "out of memory");
			return;
		}
		x->owner = c;
		x->ext = e;
		x->len = rcow_geom_extent_bytes(&c->geom, e);
		x->io_len = rcow_cow_io_len(c->cow, (size_t)x->len);
		x->epoch = c->epoch;
		bset(c->busy, e);
		c->rjobs++;
		c->empty_rescans = 0;
		pool_submit(c->rpool, x);
	}
}

/* Every extent read so far is acknowledged and marked: more to do, or flush and end. */
static void maybe_complete(struct commit *c)
{
	struct rcow_err err = { 0 };
	struct rcow_commit m;
	int r;

	if (c->paused || c->ri < c->nruns || jobs(c) || c->acks.n || c->flushing)
		return;
	if (c->phase == P_UPLOAD) {
		if (rescan(c))
			return;
		if (c->nruns) {
			/* left over (e.g. a refused mark): upload it */
			bool work = false;

			for (size_t i = 0; i < c->nruns && !work; i++)
				for (uint64_t e = c->runs[i].first;
				     e < c->runs[i].first + c->runs[i].count; e++)
					if (!bit(c->acked, e)) {
						work = true;
						break;
					}
			if (work || ++c->empty_rescans <= MAX_EMPTY_RESCANS) {
				/* marked but still listed: upload and mark them again */
				for (size_t i = 0; !work && i < c->nruns; i++)
					for (uint64_t e = c->runs[i].first;
					     e < c->runs[i].first + c->runs[i].count; e++)
						bclr(c->acked, e);
				return;
			}
			fail(c, EIO, "the kernel still lists extents to upload after they were uploaded and marked");
			return;
		}
		if (tgt_state(c->tgt) != TGT_READY)
			return;
		if (!tgt_can_flush(c->tgt)) {
			vlog(c->d, 1, "device %s: commit %llu: target %s does not support flush; its writes are taken as durable",
			     c->name, (unsigned long long)c->gen, c->uri);
			c->phase = P_DONE;
		} else {
			r = tgt_flush(c->tgt, NULL);
			if (r) {
				if (r == -ENOMEM)
					fail(c, ENOMEM, "out of memory");
				return;
			}
			c->flushing = true;
			c->phase = P_FLUSH;
			return;
		}
	}
	if (c->phase == P_FLUSH) {
		/* the flush was lost with its connection: flush again */
		if (tgt_state(c->tgt) == TGT_READY) {
			if (tgt_flush(c->tgt, NULL) == 0)
				c->flushing = true;
		}
		return;
	}
	if (c->phase != P_DONE)
		return;
	memset(&m, 0, sizeof(m));
	m.dev_id = c->dev_id;
	m.gen = c->gen;
	r = c->d->kops->commit_end(c->d->kctx, &m, &err);
	if (r == -EAGAIN && ++c->end_tries < MAX_END_TRIES) {
		logmsg("device %s: commit %llu: the kernel still has extents to upload; reading the set again",
		       c->name, (unsigned long long)c->gen);
		c->phase = P_UPLOAD;
		return;
	}
	if (r == -EAGAIN) {
		fail(c, EIO, "the kernel refused to complete the commit %u times (extents left to upload that it does not list)",
		     c->end_tries);
		return;
	}
	if (r && r != -ESTALE)
		logmsg("device %s: commit %llu: COMMIT_END refused: %s", c->name,
		       (unsigned long long)c->gen, err.msg);
	finish(c);
}

static unsigned int jobs(const struct commit *c);

static void step(struct commit *c, uint64_t now)
{
	uint64_t down;

	reap_pools(c);
	if (c->ended)
		return;
	if (c->tgt)
		tgt_tick(c->tgt, now);
	reap_target(c);
	if (c->ended)
		return;
	send_marks(c, &c->pres, RCOW_MARK_PRESERVED);
	if (c->ended)
		return;
	issue_ahead(c);
	if (c->ended)
		return;
	/*
	 * UPLOADED marks are batched: acknowledgements come one by one, and
	 * a mark per extent would cost a kernel round trip each.  Sent when
	 * a batch is full, ACK_DELAY_MS after the oldest, or when nothing
	 * else is in flight.
	 */
	if (c->acks.n >= ACK_BATCH || !jobs(c) || now >= c->acks_since + ACK_DELAY_MS)
		send_marks(c, &c->acks, RCOW_MARK_UPLOADED);
	if (c->ended)
		return;
	if (!c->tgt)
		return;
	if (tgt_just_ready(c->tgt) && !check_target(c))
		return;
	down = tgt_down_since(c->tgt);
	if (down && now > down && now - down > c->pol.commit_retry_timeout_ms) {
		const char *why = tgt_last_error(c->tgt);

		fail(c, tgt_last_errno(c->tgt) ? tgt_last_errno(c->tgt) : ETIMEDOUT,
		     "target %s unreachable for %.1f s (commit_retry_timeout %.1f s): %s", c->uri,
		     (double)(now - down) / 1000.0, c->pol.commit_retry_timeout_ms / 1000.0,
		     why[0] ? why : "no connection yet");
		return;
	}
	if (c->phase == P_CONNECT)
		return;
	issue_writes(c);
	if (c->ended)
		return;
	issue_reads(c);
	if (c->ended)
		return;
	maybe_complete(c);
}

void commit_run(struct daemon *d)
{
	uint64_t now;
	struct commit **p = &d->commits, *c;

	run_resumes(d);
	now = now_ms();
	for (c = d->commits; c; c = c->next)
		if (!c->ended)
			step(c, now);
	/* reap the ended ones whose jobs came back */
	while ((c = *p)) {
		if (c->ended) {
			reap_pools(c);
			if (!c->pjobs && !c->rjobs && !c->ajobs) {
				*p = c->next;
				destroy(c);
				continue;
			}
		}
		p = &c->next;
	}
}

uint64_t commit_timer(struct daemon *d, uint64_t now)
{
	uint64_t t = 0, x;

	for (struct commit *c = d->commits; c; c = c->next) {
		if (c->ended) {
			x = now + 20;	/* draining the pools */
		} else {
			x = c->tgt ? tgt_timer(c->tgt, now) : 0;
			if (c->pres.n)
				x = now + 100;	/* a refused mark: again soon */
			if (c->acks.n && (!x || x > c->acks_since + ACK_DELAY_MS))
				x = c->acks_since + ACK_DELAY_MS;
			if (c->tgt && tgt_down_since(c->tgt) && (!x || x > now + 1000))
				x = now + 1000;	/* the give-up deadline */
		}
		if (x && (!t || x < t))
			t = x;
	}
	return t;
}

unsigned int commit_max_fds(const struct daemon *d)
{
	unsigned int n = 0;

	for (const struct commit *c = d->commits; c; c = c->next)
		n += 4;
	return n;
}

int commit_pollfds(struct daemon *d, struct pollfd *p, int max)
{
	int n = 0;

	for (struct commit *c = d->commits; c; c = c->next) {
		c->nfds = 0;
		c->has_tgt_fd = false;
		if (max - n < 4 || !c->ppool || !c->rpool || !c->apool)
			continue;
		p[n++] = (struct pollfd){ .fd = pool_fd(c->ppool), .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = pool_fd(c->rpool), .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = pool_fd(c->apool), .events = POLLIN };
		c->nfds = 3;
		if (c->tgt && tgt_pollfds(c->tgt, &p[n], 1) == 1) {
			n++;
			c->nfds++;
			c->has_tgt_fd = true;
		}
	}
	return n;
}

void commit_events(struct daemon *d, const struct pollfd *p, int n)
{
	int k = 0;

	/* the pools' eventfds are read by pool_collect() in the next commit_run() */
	for (struct commit *c = d->commits; c && k < n; c = c->next) {
		if (!c->nfds)
			continue;
		if (c->has_tgt_fd && c->tgt && !c->ended)
			tgt_events(c->tgt, &p[k + 3], 1);
		k += c->nfds;
	}
}
