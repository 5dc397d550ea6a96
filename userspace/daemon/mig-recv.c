// SPDX-License-Identifier: GPL-2.0
/*
 * mig-recv.c - the destination side of a live migration, in the job's
 * own thread (see mig.h), for a device loaded with the incoming feature
 * and a receive spec (recv-NAME: "listen HOST:PORT", then the PSK).
 *
 * Listen; every connection first goes through the TLS handshake with the
 * PSK (mig_accept()): one that fails it is logged and dropped, and no
 * frame of it is ever read.  Then HELLO, checked against this device
 * (size, extent size, base URI): a mismatch is answered with ABORT and
 * the connection dropped, before anything is written.  Then:
 *
 *   DATA       written into the COW device's data area (O_DIRECT), then
 *              MIGRATE_FILL for its extents
 *   FLUSH      the COW device flushed (fsync), then FLUSHED
 *   FINISH     flush, MIGRATE_COMPLETE, wait until the kernel committed
 *              (migrate_state leaves incoming), then COMMITTED
 *   ABORT, a lost connection, a bad frame: the device stays incoming
 *              (unusable) and the log says so; the job ends.
 *
 * Post-copy: REMOTE frames become MIGRATE_REMOTE (the runs are kept);
 * POSTCOPY flushes, takes remote faults from then on, MIGRATE_POSTCOPY
 * each member, waits for state postcopy, answers SERVING.  Then: remote
 * faults (those I/O waits on first; mig_remote_take()) are fetched with
 * FETCH and written and answered by the engine's fill path (MK_RFILL,
 * engine_remote_fill()); the rest is streamed with HYDRATE over the runs
 * (at most PC_STREAM_DEPTH extents asked and not yet fetched, and with
 * migrate_postcopy_rate no faster than that: a token bucket holds the
 * HYDRATEs back, never a fault I/O waits on); then flush,
 * MIGRATE_COMPLETE each member (EAGAIN while an extent is remote: another
 * pass), wait until each left postcopy, COMMITTED.  A failure once serving
 * fails every remote fault queued and later ones with EIO
 * (mig_remote_close()): never filled from the base.
 *
 * One migration per receive: once a source got past HELLO, the listener
 * is closed.
 *
 * A group (receive spec with member lines): the job starts once every
 * member is incoming; HELLO must list as many devices, paired by position,
 * each of the same size, extent size and base, or the whole group is
 * refused (ABORT) before anything is written.  DATA carries the member's
 * index.  FINISH flushes every member, then completes them one by one
 * (MIGRATE_COMPLETE each), waits until every one has left incoming, and
 * only then answers COMMITTED.  A destination that dies between two
 * completions leaves the first members complete and the others incoming;
 * the source then never hears COMMITTED and keeps every member fenced with
 * an unknown outcome (see remote-cow.rst, "Several devices as one unit").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mig.h"
#include "rcow/smallfile.h"

#define MIG_COMPLETE_MS 60000

#define PC_OUT_MAX 64			/* FETCHes in flight */
#define PC_PIECE_BYTES (256u << 10)	/* a background FETCH */
#define PC_WINDOW_BYTES (1u << 20)	/* background bytes asked and not yet answered */

struct receiver {
	struct mig_job *j;
	struct mig_conn *c;
	struct rcow_cow **cow;		/* [j->n] */
	struct rcow_buf buf;
	uint8_t *rbuf;			/* MIG_MAX_PAYLOAD */
	uint64_t moved;
	char listen[MIG_ADDR_MAX + 1];
	struct rcow_err err;
	/* post-copy */
	struct run_vec *remote;		/* [j->n] the REMOTE runs of each member */
	uint64_t nremote;		/* extents named REMOTE */
	bool serving;			/* POSTCOPY taken: remote faults come */
	bool *completed;		/* [j->n] MIGRATE_COMPLETE taken */
	unsigned int cur_dev;		/* streaming cursor: member, run, offset in it */
	size_t cur_run;
	uint64_t cur_off;
	uint64_t stream_out;		/* extents HYDRATE queued, not fetched yet */
	uint64_t fetched;		/* extents fetched */
	struct mig_rfault *ask[2];	/* being asked: [0] I/O waits on it, [1] background */
	struct pc_fetch {		/* a FETCH sent, its DATA not yet taken */
		struct mig_rfault *q;	/* the fault it answers part of */
		uint64_t first;
		uint32_t count;
		uint64_t bg_bytes;	/* its bytes, for a background piece; else 0 */
	} out[PC_OUT_MAX];		/* a ring from out_head, in the order sent */
	unsigned int out_head, out_n;
	uint64_t out_bg_bytes;		/* background bytes asked, not yet answered */
	struct rcow_ratelimit rl;	/* the stream's, at j->postcopy_rate (0: none) */
};

#define PC_STREAM_DEPTH 64		/* background extents asked and not yet fetched */
#define PC_IDLE_MS 50			/* wait for a fault when there is nothing to do */
#define PC_STALE_MS 1000		/* idle that long: the stream's count starts over */
#define PC_FETCH_MS 120000		/* longest wait for the DATA of a FETCH */

/* Member dev's extent size in bytes. */
static uint64_t member_eb(const struct receiver *r, unsigned int dev)
{
	return (uint64_t)r->j->m[dev].info.extent_sectors * 512;
}

/* recv-NAME: "listen HOST:PORT\n", the member lines, then the PSK file's lines. */
static int read_spec(struct receiver *r, struct mig_psk *psk)
{
	struct mig_spec *sp = malloc(sizeof(*sp));
	int e;

	if (!sp)
		return rcow_err_set(&r->err, ENOMEM, "out of memory");
	e = mig_spec_load(r->j->m[0].spec, true, sp, &r->err);
	if (!e) {
		memcpy(r->listen, sp->listen, sizeof(r->listen));
		*psk = sp->psk;
	}
	mig_psk_wipe(&sp->psk);
	free(sp);
	return e;
}

static int send_abort(struct receiver *r, int code, const char *msg)
{
	uint8_t f[MIG_HDR_SIZE + 6 + MIG_MSG_MAX];
	struct rcow_err e2;

	return mig_send(r->c, f, (size_t)mig_enc_abort(f, sizeof(f), (uint32_t)code, msg), &e2);
}

/* HELLO from the source, checked against this device. */
static int take_hello(struct receiver *r)
{
	struct mig_hello *got = calloc(1, sizeof(*got)), *want = calloc(1, sizeof(*want));
	struct mig_hdr h;
	int e;

	if (!got || !want) {
		free(got);
		free(want);
		return rcow_err_set(&r->err, ENOMEM, "out of memory");
	}
	e = mig_recv(r->c, &h, r->rbuf, MIG_MAX_PAYLOAD, 30000, &r->err);
	if (!e && h.type != MIG_HELLO)
		e = rcow_err_set(&r->err, EPROTO, "expected HELLO, got %s", mig_type_name(h.type));
	if (!e)
		e = mig_dec_hello(r->rbuf, h.len, got, &r->err);
	if (!e) {
		want->version = MIG_VERSION;
		want->ndev = r->j->n;
		for (unsigned int i = 0; i < r->j->n; i++) {
			const struct rcow_device_info *info = &r->j->m[i].info;

			snprintf(want->dev[i].name, sizeof(want->dev[i].name), "%s",
				 info->dm_name);
			want->dev[i].dev_sectors = info->dev_sectors;
			want->dev[i].extent_sectors = info->extent_sectors;
			snprintf(want->dev[i].base_uri, sizeof(want->dev[i].base_uri), "%s",
				 info->base_uri);
		}
		e = mig_hello_match(got, want, &r->err);
		if (e)
			send_abort(r, EINVAL, r->err.msg);
	}
	free(got);
	free(want);
	return e;
}

static int flush_cow(struct receiver *r, unsigned int dev)
{
	if (fsync(r->cow[dev]->fd) < 0)
		return rcow_err_set(&r->err, errno, "flushing the COW device %s: %s",
				    r->cow[dev]->name, strerror(errno));
	return 0;
}

/* Every member's COW device flushed. */
static int flush_all(struct receiver *r)
{
	int e = 0;

	for (unsigned int i = 0; i < r->j->n && !e; i++)
		e = flush_cow(r, i);
	return e;
}

static int take_data(struct receiver *r, const struct mig_hdr *h)
{
	struct mig_data dd;
	struct mig_kreq q = { .op = MK_FILL };
	const struct rcow_device_info *info;
	struct rcow_cow *cow;
	uint64_t off, len, eb, dev_bytes;
	size_t io;
	int e;

	e = mig_dec_data(r->rbuf, h->len, &dd, &r->err);
	if (e)
		return e;
	if (dd.dev >= r->j->n)
		return rcow_err_set(&r->err, EPROTO, "DATA for device %u of %u", dd.dev, r->j->n);
	info = &r->j->m[dd.dev].info;
	cow = r->cow[dd.dev];
	if (dd.first >= info->nr_extents || dd.count > info->nr_extents - dd.first)
		return rcow_err_set(&r->err, EPROTO, "DATA for device %u extents %llu+%u: out of range",
				    dd.dev, (unsigned long long)dd.first, dd.count);
	eb = member_eb(r, dd.dev);
	dev_bytes = info->dev_sectors * 512;
	off = dd.first * eb;
	len = (uint64_t)dd.count * eb;
	if (off + len > dev_bytes)
		len = dev_bytes - off;
	if (dd.len != len)
		return rcow_err_set(&r->err, EPROTO, "DATA for extents %llu+%u has %zu bytes, not %llu",
				    (unsigned long long)dd.first, dd.count, dd.len,
				    (unsigned long long)len);
	io = rcow_cow_io_len(cow, len);
	e = rcow_buf_reserve(&r->buf, io, &r->err);
	if (e)
		return e;
	memcpy(r->buf.p, dd.data, len);
	memset((uint8_t *)r->buf.p + len, 0, io - len);
	e = rcow_cow_pwrite(cow, r->buf.p, io, info->data_offset * 512 + off, &r->err);
	if (e)
		return e;
	q.dev = dd.dev;
	q.first = dd.first;
	q.count = dd.count;
	e = mig_kcall(r->j, &q);
	if (e)
		r->err = q.err;
	r->moved += dd.count;
	return e;
}

/*
 * Wait until every member's migrate_state is state (reach) or is no longer
 * state (!reach), at most MIG_COMPLETE_MS.
 */
static int wait_states(struct receiver *r, uint32_t state, bool reach, const char *what)
{
	unsigned int dev = 0;
	int e, waited = 0;

	while (dev < r->j->n) {
		struct mig_kreq q = { .op = MK_STATE, .dev = dev };

		e = mig_kcall(r->j, &q);
		if (e) {
			r->err = q.err;
			return e;
		}
		if ((q.state == state) == reach) {
			dev++;
			continue;
		}
		if (waited >= MIG_COMPLETE_MS)
			return rcow_err_set(&r->err, ETIMEDOUT, "the kernel did not %s within %d s",
					    what, MIG_COMPLETE_MS / 1000);
		usleep(20000);
		waited += 20;
	}
	return 0;
}

/*
 * FINISH: flush every member, complete each, wait for every kernel's
 * commit, then answer COMMITTED.
 */
static int finish(struct receiver *r)
{
	struct mig_kreq q = { .op = MK_COMPLETE };
	uint8_t f[MIG_HDR_SIZE];
	int e;

	e = flush_all(r);
	for (unsigned int i = 0; i < r->j->n && !e; i++) {
		q = (struct mig_kreq){ .op = MK_COMPLETE, .dev = i };
		e = mig_kcall(r->j, &q);
	}
	if (e) {
		if (q.err.msg[0])
			r->err = q.err;
		return e;
	}
	e = wait_states(r, RCOW_MIGRATE_INCOMING, false, "complete the migration");
	return e ? e : mig_send(r->c, f, (size_t)mig_enc_empty(f, sizeof(f), MIG_COMMITTED),
				&r->err);
}

/* ---- post-copy ---------------------------------------------------------------- */

/* REMOTE: the run is still only on the source; the kernel faults it as remote. */
static int take_remote(struct receiver *r, const struct mig_hdr *h)
{
	struct mig_kreq q = { .op = MK_REMOTE };
	struct mig_run run;
	int e;

	e = mig_dec_run(h->type, r->rbuf, h->len, &run, &r->err);
	if (!e && run.dev >= r->j->n)
		e = rcow_err_set(&r->err, EPROTO, "REMOTE for device %u of %u", run.dev, r->j->n);
	if (!e)
		e = mig_run_check(&run, r->j->n, r->j->m[run.dev].info.nr_extents,
				  member_eb(r, run.dev), false, &r->err);
	if (e)
		return e;
	q.dev = run.dev;
	q.first = run.first;
	q.count = run.count;
	e = mig_kcall(r->j, &q);
	if (e) {
		r->err = q.err;
		return e;
	}
	if (run_vec_push(&r->remote[run.dev], (struct rcow_run){ run.first, run.count }))
		return rcow_err_set(&r->err, ENOMEM, "out of memory");
	r->nremote += run.count;
	return 0;
}

/* The DATA answering FETCH run, checked, in r->rbuf (dd points into it). */
static int fetch_data(struct receiver *r, const struct mig_run *run, struct mig_data *dd)
{
	const struct rcow_device_info *info = &r->j->m[run->dev].info;
	uint64_t eb = member_eb(r, run->dev), len;
	struct mig_abort a;
	struct mig_hdr h;
	int e, waited = 0;

	for (;;) {
		if (mig_stopping(r->j))
			return rcow_err_set(&r->err, ECANCELED, "the daemon stopped the migration");
		e = mig_recv(r->c, &h, r->rbuf, MIG_MAX_PAYLOAD, 1000, &r->err);
		if (e == -ETIMEDOUT && (waited += 1000) < PC_FETCH_MS)
			continue;
		if (e == -ETIMEDOUT)
			return rcow_err_set(&r->err, ETIMEDOUT, "the source did not answer a FETCH within %d s",
					    PC_FETCH_MS / 1000);
		if (e)
			return e;
		if (h.type == MIG_ABORT) {
			e = mig_dec_abort(r->rbuf, h.len, &a, &r->err);
			return e ? e : rcow_err_set(&r->err, ECANCELED, "the source aborted: %s", a.msg);
		}
		if (h.type != MIG_DATA)
			return rcow_err_set(&r->err, EPROTO, "expected DATA from the source, got %s",
					    mig_type_name(h.type));
		e = mig_dec_data(r->rbuf, h.len, dd, &r->err);
		if (e)
			return e;
		len = (uint64_t)run->count * eb;
		if (run->first * eb + len > info->dev_sectors * 512)
			len = info->dev_sectors * 512 - run->first * eb;
		if (dd->dev != run->dev || dd->first != run->first || dd->count != run->count ||
		    dd->len != len)
			return rcow_err_set(&r->err, EPROTO,
					    "DATA for device %u extents %llu+%u (%zu bytes) answers FETCH %u %llu+%u",
					    dd->dev, (unsigned long long)dd->first, dd->count, dd->len,
					    run->dev, (unsigned long long)run->first, run->count);
		return 0;
	}
}

/*
 * The fetches in flight.  FETCHes go out ahead of their DATA (the source
 * answers them in order), so the link stays busy across the round trip;
 * out[] is that order.  A fault I/O waits on is asked at once, whole
 * (MIG_MAX_DATA a FETCH); a background one (streaming) is asked in pieces
 * of PC_PIECE_BYTES, and only while less than PC_WINDOW_BYTES of
 * background pieces are unanswered: a guest fault that comes while the
 * stream runs waits behind at most that much, not behind the stream's
 * whole fault (PC_STREAM_DEPTH extents, 4 MiB at 64 KiB extents).  A fault
 * is filled in order, piece by piece (MK_RFILL, the engine's fill path);
 * its q->f keeps the part not yet answered, q->asked the first extent not
 * yet asked, and it is freed once its last piece is filled.
 */
static uint32_t piece_extents(const struct receiver *r, const struct mig_rfault *q)
{
	uint64_t eb = member_eb(r, q->dev);
	uint64_t n = (q->urgent ? MIG_MAX_DATA : PC_PIECE_BYTES) / eb;

	if (n > REMOTE_COW_MAX_RANGE)
		n = REMOTE_COW_MAX_RANGE;
	return n ? (uint32_t)n : 1;
}

/*
 * FETCH the next piece of the fault in slot @k; its q->asked moves on, and
 * the slot is emptied once its last piece went out.  The caller checked
 * room in out[].
 */
static int ask_piece(struct receiver *r, unsigned int k)
{
	struct mig_rfault *q = r->ask[k];
	uint64_t end = q->f.first + q->f.count, eb, per = piece_extents(r, q);
	uint8_t f[MIG_HDR_SIZE + MIG_RUN_SIZE];
	struct mig_run run = { .dev = q->dev, .first = q->asked };
	struct pc_fetch *p;
	int e;

	run.count = (uint32_t)(end - q->asked < per ? end - q->asked : per);
	e = mig_send(r->c, f, (size_t)mig_enc_run(f, sizeof(f), MIG_FETCH, &run), &r->err);
	if (e)
		return e;
	eb = member_eb(r, q->dev);
	p = &r->out[(r->out_head + r->out_n++) % PC_OUT_MAX];
	p->q = q;
	p->first = run.first;
	p->count = run.count;
	p->bg_bytes = q->urgent ? 0 : run.count * eb;
	r->out_bg_bytes += p->bg_bytes;
	q->asked += run.count;
	if (q->asked == end)
		r->ask[k] = NULL;
	return 0;
}

/* The next queued fault (with urgent_only, only one I/O waits on), or NULL. */
static struct mig_rfault *take_fault(struct receiver *r, bool urgent_only)
{
	struct mig_rfault *q = mig_remote_take(r->j, 0, urgent_only);

	if (!q)
		return NULL;
	q->asked = q->f.first;
	if (!(q->f.flags & RCOW_FAULT_F_WAITING))	/* the stream's */
		r->stream_out -= r->stream_out < q->f.count ? r->stream_out : q->f.count;
	return q;
}

/*
 * Ask what may be asked now: every piece of the faults I/O waits on, then
 * background pieces while the window has room.  A slot (r->ask[]) holds
 * the fault of its kind being asked until its last piece went out.
 */
static int ask_some(struct receiver *r)
{
	struct mig_rfault *q;
	int e;

	while (r->out_n < PC_OUT_MAX) {
		if (!r->ask[0]) {
			r->ask[0] = take_fault(r, true);
			if (!r->ask[0])
				break;
		}
		e = ask_piece(r, 0);
		if (e)
			return e;
	}
	while (!r->ask[0] && r->out_n < PC_OUT_MAX && r->out_bg_bytes < PC_WINDOW_BYTES) {
		if (!r->ask[1]) {
			q = take_fault(r, false);
			if (!q)
				break;
			if (q->urgent) {	/* came between the two takes */
				r->ask[0] = q;
				return ask_some(r);
			}
			r->ask[1] = q;
		}
		e = ask_piece(r, 1);
		if (e)
			return e;
	}
	return 0;
}

/* The DATA of the oldest FETCH in flight: written and answered (MK_RFILL). */
static int take_piece(struct receiver *r)
{
	struct pc_fetch *p = &r->out[r->out_head];
	struct mig_rfault *q = p->q;
	struct mig_run run = { .dev = q->dev, .first = p->first, .count = p->count };
	struct mig_kreq k = { .op = MK_RFILL, .dev = q->dev, .fault = q->f, .epoch = q->epoch };
	struct mig_data dd;
	int e = fetch_data(r, &run, &dd);

	if (e)
		return e;
	k.fault.count = p->count;	/* q->f.first == p->first: filled in order */
	k.data = dd.data;
	k.len = dd.len;
	e = mig_kcall(r->j, &k);
	if (e) {
		r->err = k.err;
		return e;
	}
	q->f.first += p->count;
	q->f.count -= p->count;
	r->fetched += p->count;
	r->moved += p->count;
	r->out_bg_bytes -= p->bg_bytes;
	r->out_head = (r->out_head + 1) % PC_OUT_MAX;
	r->out_n--;
	if (!q->f.count)
		free(q);	/* its last piece: neither in a slot nor in out[] */
	return 0;
}

/* A failure: every fault in flight or being asked fails (EIO) where not yet answered. */
static void fail_fetches(struct receiver *r)
{
	struct mig_rfault *all[PC_OUT_MAX + 2];
	unsigned int n = 0;

	for (unsigned int i = 0; i < r->out_n; i++)
		all[n++] = r->out[(r->out_head + i) % PC_OUT_MAX].q;
	all[n++] = r->ask[0];
	all[n++] = r->ask[1];
	for (unsigned int i = 0; i < n; i++) {
		struct mig_rfault *q = all[i];
		bool seen = false;

		for (unsigned int k = 0; k < i && !seen; k++)
			seen = all[k] == q;
		if (!q || seen)
			continue;
		if (q->f.count) {
			struct mig_kreq k = { .op = MK_RFILL, .dev = q->dev, .fault = q->f,
					      .epoch = q->epoch, .status = EIO };

			mig_kcall(r->j, &k);
		}
		free(q);
	}
	r->out_n = 0;
	r->ask[0] = r->ask[1] = NULL;
}

/*
 * The next background piece of the remote runs asked (HYDRATE); false:
 * none now.  With migrate_postcopy_rate, only as many extents as the
 * stream's bucket allows (rcow_ratelimit_units()): none, and it waits
 * (false) while pc_serve() goes on with the faults.  What the kernel
 * queued is charged, not extents already present.
 */
static bool stream_step(struct receiver *r)
{
	while (r->cur_dev < r->j->n) {
		const struct run_vec *v = &r->remote[r->cur_dev];
		struct mig_kreq q = { .op = MK_HYDRATE, .dev = r->cur_dev };
		uint64_t take, eb = member_eb(r, r->cur_dev);

		if (r->cur_run >= v->len) {
			r->cur_dev++;
			r->cur_run = 0;
			r->cur_off = 0;
			continue;
		}
		if (r->stream_out >= PC_STREAM_DEPTH)
			return false;
		take = v->ptr[r->cur_run].count - r->cur_off;
		if (take > PC_STREAM_DEPTH - r->stream_out)
			take = PC_STREAM_DEPTH - r->stream_out;
		take = rcow_ratelimit_units(&r->rl, eb, take, now_ns());
		if (!take)
			return false;
		q.first = v->ptr[r->cur_run].first + r->cur_off;
		q.count = (uint32_t)take;
		if (mig_kcall(r->j, &q))
			vlog(r->j->d, 1, "%s: streaming extents %llu+%llu refused: %s", r->j->m[r->cur_dev].name,
			     (unsigned long long)q.first, (unsigned long long)take, q.err.msg);
		else
			r->stream_out += q.count;
		rcow_ratelimit_spend(&r->rl, q.count * eb);
		r->cur_off += take;
		if (r->cur_off >= v->ptr[r->cur_run].count) {
			r->cur_run++;
			r->cur_off = 0;
		}
		return true;
	}
	return false;
}

/* Every remote extent present?  Flush, then MIGRATE_COMPLETE each member (EAGAIN: not yet). */
static int try_complete(struct receiver *r, bool *done)
{
	int e = flush_all(r);

	*done = true;
	for (unsigned int i = 0; i < r->j->n && !e; i++) {
		struct mig_kreq q = { .op = MK_COMPLETE, .dev = i };

		if (r->completed[i])
			continue;
		e = mig_kcall(r->j, &q);
		if (e == -EAGAIN) {
			*done = false;
			e = 0;
		} else if (e) {
			r->err = q.err;
		} else {
			r->completed[i] = true;
		}
	}
	return e;
}

/* Anything from the source while idle: only ABORT (or the connection's end). */
static int poll_source(struct receiver *r)
{
	struct mig_abort a;
	struct mig_hdr h;
	int e = mig_recv(r->c, &h, r->rbuf, MIG_MAX_PAYLOAD, 1, &r->err);

	if (e == -ETIMEDOUT)
		return 0;
	if (e)
		return e;
	if (h.type == MIG_ABORT) {
		e = mig_dec_abort(r->rbuf, h.len, &a, &r->err);
		return e ? e : rcow_err_set(&r->err, ECANCELED, "the source aborted: %s", a.msg);
	}
	return rcow_err_set(&r->err, EPROTO, "unexpected %s from the source in post-copy",
			    mig_type_name(h.type));
}

/*
 * Serving: the faults I/O waits on first, then background pieces within
 * the window, the stream, then completion and COMMITTED.
 */
static int pc_serve(struct receiver *r)
{
	uint64_t idle_since = now_ms(), rate = r->j->postcopy_rate, eb = 0;
	uint8_t f[MIG_HDR_SIZE];
	bool done;
	int e;

	for (unsigned int i = 0; i < r->j->n; i++)
		if (member_eb(r, i) > eb)
			eb = member_eb(r, i);
	rcow_ratelimit_init(&r->rl, rate, rcow_postcopy_burst(rate, eb), now_ns());
	if (rate)
		logmsg("%s: post-copy: background stream limited to %llu bytes/s (%.1f extent(s)/s, migrate_postcopy_rate); guest reads are not held back",
		       r->j->label, (unsigned long long)rate, (double)rate / (double)eb);

	for (;;) {
		if (mig_stopping(r->j)) {
			e = rcow_err_set(&r->err, ECANCELED, "the daemon stopped the migration");
			break;
		}
		e = ask_some(r);
		if (e)
			break;
		if (stream_step(r))	/* the next HYDRATE while pieces are on their way */
			continue;
		if (r->out_n) {
			idle_since = now_ms();
			e = take_piece(r);
			if (e)
				break;
			continue;
		}
		if (r->cur_dev >= r->j->n && !r->stream_out) {
			e = try_complete(r, &done);
			if (e || done)
				break;
			r->cur_dev = 0;		/* some are still missing: another pass */
			r->cur_run = 0;
			r->cur_off = 0;
		}
		if (mig_remote_wait(r->j, PC_IDLE_MS))
			continue;
		if (now_ms() - idle_since >= PC_STALE_MS)
			r->stream_out = 0;	/* what it asked came as guest faults */
		e = poll_source(r);
		if (e)
			break;
	}
	if (e) {
		fail_fetches(r);
		return e;
	}
	e = wait_states(r, RCOW_MIGRATE_POSTCOPY, false, "complete the post-copy migration");
	if (!e)
		logmsg("%s: post-copy complete: %llu extent(s) fetched from the source", r->j->label,
		       (unsigned long long)r->fetched);
	return e ? e : mig_send(r->c, f, (size_t)mig_enc_empty(f, sizeof(f), MIG_COMMITTED),
				&r->err);
}

/*
 * POSTCOPY: what came before is flushed; every member serves
 * (MIGRATE_POSTCOPY, the kernel's commit, state postcopy); SERVING.
 */
static int postcopy(struct receiver *r)
{
	uint8_t f[MIG_HDR_SIZE];
	int e = flush_all(r);

	if (e)
		return e;
	mig_remote_serve(r->j);
	r->serving = true;
	for (unsigned int i = 0; i < r->j->n && !e; i++) {
		struct mig_kreq q = { .op = MK_POSTCOPY, .dev = i };

		e = mig_kcall(r->j, &q);
		if (e)
			r->err = q.err;
	}
	if (!e)
		e = wait_states(r, RCOW_MIGRATE_POSTCOPY, true, "serve in post-copy");
	if (!e)
		e = mig_send(r->c, f, (size_t)mig_enc_empty(f, sizeof(f), MIG_SERVING), &r->err);
	if (e)
		return e;
	logmsg("%s: post-copy: serving; %llu extent(s) still on the source, fetched on demand and streamed",
	       r->j->label, (unsigned long long)r->nremote);
	return pc_serve(r);
}

static int serve(struct receiver *r)
{
	struct mig_hdr h;
	uint8_t f[MIG_HDR_SIZE + 8];
	uint64_t seq;
	int e;

	for (;;) {
		if (mig_stopping(r->j))
			return rcow_err_set(&r->err, ECANCELED, "the daemon stopped the migration");
		e = mig_recv(r->c, &h, r->rbuf, MIG_MAX_PAYLOAD, 1000, &r->err);
		if (e == -ETIMEDOUT)
			continue;
		if (e)
			return e;
		switch (h.type) {
		case MIG_DATA:
			e = take_data(r, &h);
			break;
		case MIG_FLUSH:
			e = mig_dec_seq(r->rbuf, h.len, &seq, &r->err);
			if (!e)
				e = flush_all(r);
			if (!e)
				e = mig_send(r->c, f, (size_t)mig_enc_seq(f, sizeof(f), MIG_FLUSHED,
									   seq), &r->err);
			break;
		case MIG_FINISH:
			e = mig_dec_empty(h.type, h.len, &r->err);
			return e ? e : finish(r);
		case MIG_REMOTE:
			e = take_remote(r, &h);
			break;
		case MIG_POSTCOPY:
			e = mig_dec_empty(h.type, h.len, &r->err);
			if (!e)
				e = postcopy(r);
			if (!e)
				return 0;
			break;
		case MIG_ABORT: {
			struct mig_abort a;

			e = mig_dec_abort(r->rbuf, h.len, &a, &r->err);
			return e ? e : rcow_err_set(&r->err, ECANCELED, "the source aborted: %s",
						    a.msg);
		}
		default:
			e = rcow_err_set(&r->err, EPROTO, "unexpected %s frame from the source",
					 mig_type_name(h.type));
		}
		if (e) {
			send_abort(r, -e, r->err.msg);
			return e;
		}
	}
}

/* Accept until a source passes the handshake and HELLO. */
static int accept_source(struct receiver *r, int lfd, const struct mig_psk *psk)
{
	for (;;) {
		int e;

		if (mig_stopping(r->j))
			return rcow_err_set(&r->err, ECANCELED, "the daemon stopped the receive");
		e = mig_accept(lfd, psk, 1000, &r->c, &r->err);
		if (e == -ETIMEDOUT)
			continue;
		if (e) {
			logmsg("%s: refused a migration connection: %s", r->j->label, r->err.msg);
			continue;
		}
		mig_set_conn(r->j, r->c);
		e = take_hello(r);
		if (!e)
			return 0;
		logmsg("%s: refused the migration from %s: %s", r->j->label,
		       mig_conn_peer(r->c), r->err.msg);
		mig_set_conn(r->j, NULL);
		mig_conn_close(r->c);
		r->c = NULL;
	}
}

static int receive(struct receiver *r)
{
	struct mig_psk psk;
	uint8_t f[MIG_HDR_SIZE];
	int lfd = -1, e;

	e = read_spec(r, &psk);
	if (!e)
		e = mig_listen(r->listen, &lfd, &r->err);
	if (e) {
		mig_psk_wipe(&psk);
		return e;
	}
	logmsg("%s: waiting for the migration on %s", r->j->label, r->listen);
	e = accept_source(r, lfd, &psk);
	mig_psk_wipe(&psk);
	close(lfd);
	if (e)
		return e;
	/* the key is no longer needed, nor another source */
	for (unsigned int i = 0; i < r->j->n; i++)
		unlink(r->j->m[i].spec);
	logmsg("%s: receiving from %s", r->j->label, mig_conn_peer(r->c));
	e = mig_send(r->c, f, (size_t)mig_enc_empty(f, sizeof(f), MIG_READY), &r->err);
	return e ? e : serve(r);
}

/* No fetch any more: the remote faults still queued fail (EIO), later ones too. */
static void fail_remote(struct receiver *r)
{
	struct mig_rfault *q = mig_remote_close(r->j), *n;

	for (; q; q = n) {
		struct mig_kreq k = { .op = MK_RFILL, .dev = q->dev, .fault = q->f,
				      .epoch = q->epoch, .status = EIO };

		n = q->next;
		mig_kcall(r->j, &k);
		free(q);
	}
}

void *mig_recv_thread(void *arg)
{
	struct mig_job *j = arg;
	struct receiver r = { .j = j };
	int e = 0;

	r.cow = calloc(j->n, sizeof(*r.cow));
	r.rbuf = malloc(MIG_MAX_PAYLOAD);
	r.remote = calloc(j->n, sizeof(*r.remote));
	r.completed = calloc(j->n, sizeof(*r.completed));
	if (!r.cow || !r.rbuf || !r.remote || !r.completed)
		e = rcow_err_set(&r.err, ENOMEM, "out of memory");
	for (unsigned int i = 0; i < j->n && !e; i++)
		e = j->d->kops->open_cow(j->d->kctx, &j->m[i].info, &r.cow[i], &r.err);
	if (!e)
		e = receive(&r);
	fail_remote(&r);
	for (unsigned int i = 0; i < j->n; i++) {
		if (!e)
			logmsg("device %s: migration received and committed; the device serves",
			       j->m[i].name);
		else if (r.serving)
			logmsg("device %s: post-copy migration failed: %s; the extents still on the source fail with EIO (never read from the base) and the device stays in post-copy: the source's device holds them (fenced); see remote-cowd(8)",
			       j->m[i].name, r.err.msg);
		else
			logmsg("device %s: migration not received: %s; the device stays incoming (unusable: remove it)",
			       j->m[i].name, r.err.msg);
	}
	mig_end(j, r.c, r.cow, &r.buf, r.rbuf, r.moved);
	for (unsigned int i = 0; r.remote && i < j->n; i++)
		run_vec_free(&r.remote[i]);
	free(r.remote);
	free(r.completed);
	free(r.cow);
	return NULL;
}
