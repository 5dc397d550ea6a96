// SPDX-License-Identifier: GPL-2.0
/*
 * mig-send.c - the source side of a live migration, in the job's own
 * thread (see mig.h).
 *
 * Connect to MIGRATE_TARGET with the device's PSK (send-NAME.psk; a
 * refused connection is tried again for 10 s), HELLO, wait for READY.  Then rounds: ask MIGRATE_ROUND, wait for its event,
 * read the round set (GET_RUNS on RCOW_BITMAP_MIGRATE_ROUND), read those
 * extents from the COW device and send them as DATA, then FLUSH; only once
 * the destination answered FLUSHED (the data is on its COW device and
 * flushed) are they marked sent (MIGRATE_MARK).  An empty round while the
 * guest still runs: wait a little (MIG_IDLE_MS) and take another.
 *
 * Convergence: when the rounds stop shrinking (rcow_mirror_round(): the
 * guest writes faster than the link carries), the next round is asked with
 * RCOW_MIGRATE_F_MIRROR and the kernel mirrors from its swap on: a guest
 * write completes only once a later round was marked sent for its
 * extents.  Rounds then go back to back while they carry something; after
 * an empty one the thread waits for MIGRATE_WAITING (a write waits) rather
 * than MIG_IDLE_MS, so that a held write waits for one round, not a poll.
 * A mirroring round is not sent whole: its slice (about MIG_SLICE_MS of the
 * link, rcow_mirror_pick()) starts with the extents written since the
 * round before - where the waiting writes are - and goes on through the
 * rest of the round set from where the last slice stopped; the rest stays
 * in the round set for the next rounds.  So a guest write waits for about
 * a slice, not for the whole (possibly huge) round that switched to
 * mirroring.  After the fence, rounds are sent whole again.
 *
 * MIGRATE_FINISH (the kernel fenced the device): every round asked from
 * then on is after the fence, so rounds go on until one is empty; then
 * FINISH, wait for COMMITTED (the destination flushed, completed and
 * committed), then MIGRATE_END(0), which the kernel refuses (EAGAIN)
 * while anything is left unsent.  MIGRATE_ABORT: ABORT to the peer, stop
 * (the kernel already lifted everything).  Any error: ABORT to the peer
 * if connected, MIGRATE_END(errno, message).  An error once FINISH was
 * sent (COMMITTED lost, the connection gone, END 0 refused) leaves the
 * outcome unknown: the destination may serve already.  Then the END has
 * RCOW_MIGRATE_F_KEEP_FENCE: failed, but the device stays fenced until an
 * operator who knows the destination is not used runs migrate abort.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mig.h"

#define MIG_IDLE_MS 200			/* pause after an empty round */
#define MIG_CONNECT_MS 10000
#define MIG_CONNECT_TRIES 20		/* refused connections retried, 0.5 s apart */
#define MIG_ACK_MS 120000		/* longest wait for FLUSHED / COMMITTED */
#define MIG_SLICE_MS 250		/* mirroring: link time a round's slice takes */
#define MIG_SLICE_MIN 16		/* ... at least this many extents */

struct sender {
	struct mig_job *j;
	struct mig_conn *c;
	struct rcow_cow *cow;
	struct rcow_buf buf;
	uint8_t *rbuf;			/* received payloads */
	uint64_t eb, dev_bytes, data_off;
	uint64_t seq, moved;
	uint64_t rate;			/* bytes per second, measured; 0: not yet */
	uint64_t cursor;		/* mirroring: where the next slice goes on */
	struct rcow_mirror_policy pace;
	bool mirroring;			/* asked the kernel to mirror */
	bool finish_sent;		/* from then on the outcome may be unknown */
	struct rcow_err err;
};

/* Wait for a frame of type want, in slices so that an abort is seen. */
static int wait_for(struct sender *s, uint8_t want, uint64_t seq)
{
	struct mig_hdr h;
	uint64_t got;
	int waited = 0, r;

	for (;;) {
		if (mig_stopping(s->j))
			return rcow_err_set(&s->err, ECANCELED, "migration aborted");
		r = mig_recv(s->c, &h, s->rbuf, MIG_MAX_HELLO, 1000, &s->err);
		if (r == -ETIMEDOUT) {
			waited += 1000;
			if (waited >= MIG_ACK_MS)
				return rcow_err_set(&s->err, ETIMEDOUT,
						    "the destination did not answer %s within %d s",
						    mig_type_name(want), MIG_ACK_MS / 1000);
			continue;
		}
		if (r)
			return r;
		if (h.type == MIG_ABORT) {
			struct mig_abort a;

			if (mig_dec_abort(s->rbuf, h.len, &a, &s->err))
				return -EPROTO;
			return rcow_err_set(&s->err, a.error ? (int)a.error : EIO,
					    "the destination aborted: %s", a.msg);
		}
		if (h.type != want)
			return rcow_err_set(&s->err, EPROTO, "expected %s from the destination, got %s",
					    mig_type_name(want), mig_type_name(h.type));
		if (want == MIG_FLUSHED) {
			if (mig_dec_seq(s->rbuf, h.len, &got, &s->err))
				return -EPROTO;
			if (got != seq)
				return rcow_err_set(&s->err, EPROTO, "FLUSHED %llu for FLUSH %llu",
						    (unsigned long long)got,
						    (unsigned long long)seq);
			return 0;
		}
		return mig_dec_empty(h.type, h.len, &s->err);
	}
}

static int send_empty(struct sender *s, uint8_t type)
{
	uint8_t f[MIG_HDR_SIZE];

	return mig_send(s->c, f, (size_t)mig_enc_empty(f, sizeof(f), type), &s->err);
}

static int hello(struct sender *s)
{
	struct mig_hello *h = calloc(1, sizeof(*h));
	int n, r;

	if (!h)
		return rcow_err_set(&s->err, ENOMEM, "out of memory");
	h->version = MIG_VERSION;
	h->ndev = 1;
	snprintf(h->dev[0].name, sizeof(h->dev[0].name), "%s", s->j->info.dm_name);
	h->dev[0].dev_sectors = s->j->info.dev_sectors;
	h->dev[0].extent_sectors = s->j->info.extent_sectors;
	snprintf(h->dev[0].base_uri, sizeof(h->dev[0].base_uri), "%s", s->j->info.base_uri);
	n = mig_enc_hello(s->rbuf, MIG_MAX_HELLO + MIG_HDR_SIZE, h, &s->err);
	free(h);
	if (n < 0)
		return n;
	r = mig_send(s->c, s->rbuf, (size_t)n, &s->err);
	return r ? r : wait_for(s, MIG_READY, 0);
}

/* Extents [first, first + count) as DATA frames of at most MIG_MAX_DATA. */
static int send_run(struct sender *s, uint64_t first, uint64_t count)
{
	uint64_t per = MIG_MAX_DATA / s->eb;
	uint8_t head[MIG_HDR_SIZE + MIG_DATA_HEAD];

	if (per > REMOTE_COW_MAX_RANGE)
		per = REMOTE_COW_MAX_RANGE;
	while (count) {
		uint64_t n = count < per ? count : per, off = first * s->eb, len = n * s->eb;
		int r;

		if (mig_stopping(s->j))
			return rcow_err_set(&s->err, ECANCELED, "migration aborted");
		if (off + len > s->dev_bytes)
			len = s->dev_bytes - off;	/* the short last extent */
		r = rcow_buf_reserve(&s->buf, rcow_cow_io_len(s->cow, len), &s->err);
		if (!r)
			r = rcow_cow_pread(s->cow, s->buf.p, rcow_cow_io_len(s->cow, len),
					   s->data_off + off, &s->err);
		if (!r)
			r = mig_enc_data_head(head, 0, first, (uint32_t)n, len, &s->err) < 0;
		if (!r)
			r = mig_send_data(s->c, head, s->buf.p, len, &s->err);
		if (r)
			return r < 0 ? r : -EINVAL;
		first += n;
		count -= n;
		s->moved += n;
	}
	return 0;
}

/* Ask for a round (with flags, RCOW_MIGRATE_F_*) and wait for its swap. */
static int take_round(struct sender *s, uint32_t flags, uint64_t *last_round)
{
	struct mig_kreq q = { .op = MK_ROUND, .flags = flags };
	uint64_t round;
	int r;

	r = mig_kcall(s->j, &q);
	if (r) {
		s->err = q.err;
		return r;
	}
	mig_wait(s->j, *last_round, MIG_ACK_MS);
	pthread_mutex_lock(&s->j->lock);
	round = s->j->round_seen;
	pthread_mutex_unlock(&s->j->lock);
	if (mig_stopping(s->j))
		return rcow_err_set(&s->err, ECANCELED, "migration aborted");
	if (round <= *last_round)
		return rcow_err_set(&s->err, ETIMEDOUT, "the kernel did not take round %llu",
				    (unsigned long long)*last_round + 1);
	*last_round = round;
	return 0;
}

/* GET_RUNS of op's set (MK_RUNS: the round set, MK_FRESH: the change set). */
static int get_runs(struct sender *s, enum mig_kop op, struct run_vec *runs)
{
	struct mig_kreq q = { .op = op };
	int r = mig_kcall(s->j, &q);

	if (r)
		s->err = q.err;
	*runs = q.runs;
	return r;
}

/*
 * Send runs v[0, n) of round, have them flushed, then mark them sent.
 * *sent: extents.  Measures the rate (bytes per second) for the slices.
 */
static int ship(struct sender *s, uint64_t round, const struct rcow_run *v, size_t n,
		uint64_t *sent)
{
	uint8_t f[MIG_HDR_SIZE + 8];
	uint64_t t0, ms, bytes = 0;
	int r = 0;

	*sent = 0;
	if (!n)
		return 0;
	t0 = now_ms();
	for (size_t i = 0; i < n && !r; i++) {
		r = send_run(s, v[i].first, v[i].count);
		bytes += v[i].count * s->eb;
	}
	if (!r)
		r = mig_send(s->c, f, (size_t)mig_enc_seq(f, sizeof(f), MIG_FLUSH, ++s->seq),
			     &s->err);
	if (!r)
		r = wait_for(s, MIG_FLUSHED, s->seq);
	ms = now_ms() - t0;
	if (!r && ms)
		s->rate = s->rate ? (s->rate + bytes * 1000 / ms) / 2 : bytes * 1000 / ms;
	/* on the destination's disk: now they may leave the round set */
	for (size_t i = 0; i < n && !r; i++) {
		uint64_t first = v[i].first, left = v[i].count;

		while (left && !r) {
			struct mig_kreq m = { .op = MK_MARK, .round = round, .first = first };

			m.count = (uint32_t)(left < REMOTE_COW_MAX_RANGE ? left : REMOTE_COW_MAX_RANGE);
			r = mig_kcall(s->j, &m);
			if (r)
				s->err = m.err;
			first += m.count;
			left -= m.count;
			*sent += m.count;
		}
	}
	return r;
}

/* One round: take it, send it whole, have it flushed, mark it.  *sent: extents. */
static int round_trip(struct sender *s, uint64_t *last_round, uint64_t *sent)
{
	struct run_vec runs = { 0 };
	int r;

	*sent = 0;
	r = take_round(s, 0, last_round);
	if (!r)
		r = get_runs(s, MK_RUNS, &runs);
	if (!r)
		r = ship(s, *last_round, runs.ptr, runs.len, sent);
	run_vec_free(&runs);
	return r;
}

/*
 * Mirroring: one round (with flags), of which only a slice is sent (about
 * MIG_SLICE_MS of the link, rcow_mirror_pick()): first the extents written
 * since the round before, where the writes that wait are.  *sent: extents
 * sent, *left: extents of the round set left for the next rounds.
 */
static int mirror_trip(struct sender *s, uint32_t flags, uint64_t *last_round, uint64_t *sent,
		       uint64_t *left)
{
	struct run_vec fresh = { 0 }, runs = { 0 };
	struct rcow_run *pick = NULL;
	uint64_t budget = s->rate * MIG_SLICE_MS / 1000 / s->eb, total = 0;
	size_t n;
	int r;

	*sent = *left = 0;
	if (budget < MIG_SLICE_MIN)
		budget = MIG_SLICE_MIN;
	r = get_runs(s, MK_FRESH, &fresh);
	if (!r)
		r = take_round(s, flags, last_round);
	if (!r)
		r = get_runs(s, MK_RUNS, &runs);
	if (!r) {
		pick = calloc(RCOW_MIRROR_PICK_MAX(fresh.len, runs.len), sizeof(*pick));
		if (!pick)
			r = rcow_err_set(&s->err, ENOMEM, "out of memory");
	}
	if (!r) {
		for (size_t i = 0; i < runs.len; i++)
			total += runs.ptr[i].count;
		n = rcow_mirror_pick(fresh.ptr, fresh.len, runs.ptr, runs.len, &s->cursor, budget,
				     pick);
		r = ship(s, *last_round, pick, n, sent);
		*left = total - *sent;
	}
	free(pick);
	run_vec_free(&fresh);
	run_vec_free(&runs);
	return r;
}

static int migrate(struct sender *s)
{
	struct mig_psk psk;
	uint64_t last = s->j->round_seen, sent, left = 0, waiting;
	bool finishing = false, mirror = s->j->mirror_always;
	int r;

	r = mig_psk_load(s->j->spec, &psk, &s->err);
	if (r) {
		rcow_err_prefix(&s->err, "no key for the migration (remote-cow migrate --psk)");
		return r;
	}
	/* a destination still setting up refuses the connection: try for a while */
	for (int tries = 0;; tries++) {
		r = mig_connect(s->j->target, &psk, MIG_CONNECT_MS, &s->c, &s->err);
		if (r != -ECONNREFUSED || tries >= MIG_CONNECT_TRIES || mig_stopping(s->j))
			break;
		mig_wait(s->j, UINT64_MAX, 500);
	}
	mig_psk_wipe(&psk);
	if (r)
		return r;
	mig_set_conn(s->j, s->c);
	r = hello(s);
	if (r)
		return r;
	logmsg("device %s: connected to %s; sending rounds", s->j->info.dm_name,
	       mig_conn_peer(s->c));
	for (;;) {
		bool fin;

		pthread_mutex_lock(&s->j->lock);
		fin = s->j->finish;
		pthread_mutex_unlock(&s->j->lock);
		if (fin && !finishing) {
			finishing = true;	/* rounds asked from now on are after the fence */
			logmsg("device %s: fenced; sending the last round(s)", s->j->info.dm_name);
		}
		waiting = mig_waiting_seen(s->j);
		mirror = mirror && !finishing && !s->mirroring;
		if (mirror) {
			s->mirroring = true;
			logmsg("device %s: %s: mirroring from round %llu (writes complete once the destination has them)",
			       s->j->info.dm_name,
			       s->j->mirror_always ? "migrate_mirror always" :
						     "the rounds stopped shrinking",
			       (unsigned long long)last + 1);
		}
		if (s->mirroring && !finishing)
			r = mirror_trip(s, mirror ? RCOW_MIGRATE_F_MIRROR : 0, &last, &sent, &left);
		else
			r = round_trip(s, &last, &sent);
		if (r)
			return r;
		vlog(s->j->d, 1, "device %s: round %llu: %llu extents sent", s->j->info.dm_name,
		     (unsigned long long)last, (unsigned long long)sent);
		if (finishing && !sent)
			break;
		if (finishing)
			continue;
		if (!s->mirroring)
			mirror = rcow_mirror_round(&s->pace, sent);
		if (!sent && !left && s->mirroring)
			mig_wait_writes(s->j, waiting, MIG_IDLE_MS);
		else if (!sent && !s->mirroring)
			mig_wait(s->j, UINT64_MAX, MIG_IDLE_MS);
	}
	s->finish_sent = true;
	r = send_empty(s, MIG_FINISH);
	if (!r)
		r = wait_for(s, MIG_COMMITTED, 0);
	if (r)
		return r;
	{
		struct mig_kreq q = { .op = MK_END, .status = 0 };

		r = mig_kcall(s->j, &q);
		if (r)
			s->err = q.err;
	}
	return r;
}

void *mig_send_thread(void *arg)
{
	struct mig_job *j = arg;
	struct sender s = { .j = j };
	bool aborted;
	int r;

	s.eb = (uint64_t)j->info.extent_sectors * 512;
	s.dev_bytes = j->info.dev_sectors * 512;
	s.data_off = j->info.data_offset * 512;
	s.rbuf = malloc(MIG_MAX_HELLO + MIG_HDR_SIZE);
	r = s.rbuf ? j->d->kops->open_cow(j->d->kctx, &j->info, &s.cow, &s.err)
		   : rcow_err_set(&s.err, ENOMEM, "out of memory");
	if (!r)
		r = migrate(&s);
	pthread_mutex_lock(&j->lock);
	aborted = j->abort || j->stop;
	pthread_mutex_unlock(&j->lock);
	if (r && s.c && !aborted) {
		uint8_t f[MIG_HDR_SIZE + 6 + MIG_MSG_MAX];
		struct rcow_err e2;

		mig_send(s.c, f, (size_t)mig_enc_abort(f, sizeof(f), (uint32_t)-r, s.err.msg),
			 &e2);
	} else if (aborted && s.c) {
		uint8_t f[MIG_HDR_SIZE + 6 + MIG_MSG_MAX];
		struct rcow_err e2;

		mig_send(s.c, f, (size_t)mig_enc_abort(f, sizeof(f), ECANCELED,
						       "the source aborted the migration"), &e2);
	}
	if (!r) {
		logmsg("device %s: migration to %s done: the destination committed; this device stays fenced",
		       j->info.dm_name, j->target);
	} else if (aborted) {
		logmsg("device %s: migration to %s aborted", j->info.dm_name, j->target);
	} else {
		struct mig_kreq q = { .op = MK_END, .status = (uint32_t)-r, .message = s.err.msg };

		logmsg("device %s: migration to %s failed: %s", j->info.dm_name, j->target,
		       s.err.msg);
		if (s.finish_sent) {
			q.flags = RCOW_MIGRATE_F_KEEP_FENCE;
			logmsg("device %s: FINISH was sent: the destination may have taken over; this device stays fenced until 'migrate abort' (only if the destination is not used)",
			       j->info.dm_name);
		}
		if (mig_kcall(j, &q))
			logmsg("device %s: MIGRATE_END: %s", j->info.dm_name, q.err.msg);
	}
	mig_end(j, s.c, s.cow, &s.buf, s.rbuf, s.moved);
	return NULL;
}
