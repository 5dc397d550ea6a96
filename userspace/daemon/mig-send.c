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
 * Copying rounds go in pieces (copy_trip(), rcow_copy_pick()): before each,
 * the change set (GET_RUNS on RCOW_BITMAP_DIRTY_MIGRATE) names what the
 * guest wrote again since the swap, and those extents are left out - they
 * stay in the round set unmarked, the next swap keeps them, and they go
 * once later instead of now and again then.  Safe because nothing leaves
 * the round set unmarked, and only the marks of extents sent and flushed
 * go to the kernel.
 *
 * Convergence: when the rounds stop shrinking (rcow_mirror_round() on the
 * rounds' sizes, sent or left out: the guest writes faster than the link
 * carries), the next round is asked with
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
 * (the kernel already lifted everything).  Any error: MIGRATE_END(errno,
 * message), then ABORT to the peer if connected - in that order: the END
 * lifts the fence, and the ABORT, with the link down, may block until the
 * peer timeout (a guest write held by mirroring or the fence waits for the
 * END, not for that too).  An error once FINISH was
 * sent (COMMITTED lost, the connection gone, END 0 refused) leaves the
 * outcome unknown: the destination may serve already.  Then the END has
 * RCOW_MIGRATE_F_KEEP_FENCE: failed, but the device stays fenced until an
 * operator who knows the destination is not used runs migrate abort.
 *
 * Post-copy (the kernel's MIGRATE_FINISH with RCOW_MIGRATE_F_POSTCOPY, or
 * the send spec's "postcopy" line): once fenced, one round of each member
 * whose extents never sent before are named to the destination (REMOTE)
 * instead of sent - those sent before go as DATA (last_round_split()) -
 * then FLUSH, POSTCOPY; at SERVING MIGRATE_POSTCOPY to each member's kernel; then the
 * destination's FETCHes are answered with DATA read from the COW device
 * until COMMITTED, when the runs are marked sent and each member ends with
 * MIGRATE_END 0.  Any failure after POSTCOPY went out keeps the fence
 * (KEEP_FENCE): the destination may be running the guest, and this device
 * has the only copy of what it did not fetch yet.
 *
 * A group (several devices as one unit): one connection, one HELLO that
 * lists the members in order, DATA frames carrying the member's index.  A
 * round of the group is a round of each member in turn (its DATA, its
 * FLUSH, its marks); the group's rounds shrink or not as a whole, and
 * mirroring is asked of every member that is not fenced yet.  The group
 * finishes once every member's kernel asked to finish (MIGRATE_FINISH of
 * each): rounds of all until one carries nothing, FINISH, COMMITTED (the
 * destination completed every member), then MIGRATE_END 0 of each member.
 * Any member's abort, error or removal ends the job for all: every member
 * the kernel did not abort itself gets MIGRATE_END with the reason
 * (mig_end_members()), with KEEP_FENCE once FINISH was sent.
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

/* A member's geometry and rounds. */
struct smem {
	uint64_t eb, dev_bytes, data_off;
	uint64_t last;			/* its last round */
	uint64_t cursor;		/* mirroring: where its next slice goes on */
	uint8_t *sent;			/* extents sent in a round before (post-copy) */
	struct rcow_round_log rlog;	/* its rounds' -v lines */
};

struct sender {
	struct mig_job *j;
	struct mig_conn *c;
	struct rcow_cow **cow;		/* [j->n] */
	struct smem *dv;		/* [j->n] */
	struct rcow_buf buf;
	uint8_t *rbuf;			/* received payloads */
	uint64_t seq, moved;
	uint64_t rate;			/* bytes per second, measured; 0: not yet */
	struct rcow_mirror_policy pace;
	struct rcow_throttle_policy thr;	/* migrate_mirror throttle */
	bool mirroring;			/* asked the kernel to mirror */
	bool spec_postcopy;		/* the send spec's "postcopy" line */
	struct run_vec *pc_runs;	/* [j->n] post-copy: the last round, named REMOTE */
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
	h->ndev = s->j->n;
	for (unsigned int i = 0; i < s->j->n; i++) {
		const struct rcow_device_info *info = &s->j->m[i].info;

		snprintf(h->dev[i].name, sizeof(h->dev[i].name), "%s", info->dm_name);
		h->dev[i].dev_sectors = info->dev_sectors;
		h->dev[i].extent_sectors = info->extent_sectors;
		snprintf(h->dev[i].base_uri, sizeof(h->dev[i].base_uri), "%s", info->base_uri);
	}
	n = mig_enc_hello(s->rbuf, MIG_MAX_HELLO + MIG_HDR_SIZE, h, &s->err);
	free(h);
	if (n < 0)
		return n;
	r = mig_send(s->c, s->rbuf, (size_t)n, &s->err);
	return r ? r : wait_for(s, MIG_READY, 0);
}

/*
 * A post-copy finish was asked (the kernel's flag or the send spec): a
 * round in progress stops at its next DATA frame, and what it did not send
 * stays in the kernel's round set, to be named REMOTE by postcopy().
 */
static bool postcopy_asked(struct sender *s)
{
	bool pc;

	pthread_mutex_lock(&s->j->lock);
	pc = s->j->finish && (s->j->postcopy || s->spec_postcopy);
	pthread_mutex_unlock(&s->j->lock);
	return pc;
}

/*
 * Extents [first, first + count) of member dev as DATA frames of at most
 * MIG_MAX_DATA; *done: the extents sent.  With cut, stops before a frame
 * once a post-copy finish is asked (then *done < count), and the frames
 * are about 50 ms of the link each (rcow_cut_frame_extents()), so that
 * the switch does not wait for a long one.
 */
static int send_run(struct sender *s, unsigned int dev, uint64_t first, uint64_t count,
		    bool cut, uint64_t *done)
{
	const struct smem *dv = &s->dv[dev];
	uint64_t per = cut ? rcow_cut_frame_extents(s->rate, dv->eb, MIG_MAX_DATA) :
			     MIG_MAX_DATA / dv->eb;
	uint8_t head[MIG_HDR_SIZE + MIG_DATA_HEAD];

	if (per > REMOTE_COW_MAX_RANGE)
		per = REMOTE_COW_MAX_RANGE;
	while (count) {
		uint64_t n = count < per ? count : per, off = first * dv->eb, len = n * dv->eb;
		int r;

		if (mig_stopping(s->j))
			return rcow_err_set(&s->err, ECANCELED, "migration aborted");
		if (cut && postcopy_asked(s))
			return 0;
		if (off + len > dv->dev_bytes)
			len = dv->dev_bytes - off;	/* the short last extent */
		r = rcow_buf_reserve(&s->buf, rcow_cow_io_len(s->cow[dev], len), &s->err);
		if (!r)
			r = rcow_cow_pread(s->cow[dev], s->buf.p, rcow_cow_io_len(s->cow[dev], len),
					   dv->data_off + off, &s->err);
		if (!r)
			r = mig_enc_data_head(head, dev, first, (uint32_t)n, len, &s->err) < 0;
		if (!r)
			r = mig_send_data(s->c, head, s->buf.p, len, &s->err);
		if (r)
			return r < 0 ? r : -EINVAL;
		first += n;
		count -= n;
		*done += n;
		s->moved += n;
	}
	return 0;
}

/* Ask member dev for a round (with flags, RCOW_MIGRATE_F_*) and wait for its swap. */
static int take_round(struct sender *s, unsigned int dev, uint32_t flags)
{
	struct mig_kreq q = { .op = MK_ROUND, .dev = dev, .flags = flags,
			      .delay_ms = s->mirroring ? 0 : s->thr.delay_ms };
	uint64_t round, *last_round = &s->dv[dev].last;
	int r;

	r = mig_kcall(s->j, &q);
	if (r) {
		s->err = q.err;
		return r;
	}
	mig_wait(s->j, dev, *last_round, MIG_ACK_MS);
	round = mig_round_seen(s->j, dev, NULL);
	if (mig_stopping(s->j))
		return rcow_err_set(&s->err, ECANCELED, "migration aborted");
	if (round <= *last_round)
		return rcow_err_set(&s->err, ETIMEDOUT, "the kernel did not take round %llu of %s",
				    (unsigned long long)*last_round + 1, s->j->m[dev].name);
	*last_round = round;
	return 0;
}

/* GET_RUNS of op's set of member dev (MK_RUNS: the round set, MK_FRESH: the change set). */
static int get_runs(struct sender *s, unsigned int dev, enum mig_kop op, struct run_vec *runs)
{
	struct mig_kreq q = { .op = op, .dev = dev };
	int r = mig_kcall(s->j, &q);

	if (r)
		s->err = q.err;
	*runs = q.runs;
	return r;
}

/* Mark runs v[0, n) of member dev's round sent (MIGRATE_MARK); *sent += extents. */
static int mark(struct sender *s, unsigned int dev, uint64_t round, const struct rcow_run *v,
		size_t n, uint64_t *sent)
{
	int r = 0;

	for (size_t i = 0; i < n && !r; i++) {
		uint64_t first = v[i].first, left = v[i].count;

		while (left && !r) {
			struct mig_kreq m = { .op = MK_MARK, .dev = dev, .round = round,
					      .first = first };

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

/*
 * After the DATA of a round's runs went out (bytes of them, from t0 on):
 * have them flushed, measure the rate (bytes per second, for the slices
 * and pieces), then mark runs v[0, n) sent - they are on the destination's
 * disk, so now they may leave the round set.  *sent += extents marked.
 */
static int seal(struct sender *s, unsigned int dev, const struct rcow_run *v, size_t n,
		uint64_t bytes, uint64_t t0, uint64_t *sent)
{
	uint8_t f[MIG_HDR_SIZE + 8];
	uint64_t ms;
	int r;

	if (!bytes)
		return 0;
	r = mig_send(s->c, f, (size_t)mig_enc_seq(f, sizeof(f), MIG_FLUSH, ++s->seq), &s->err);
	if (!r)
		r = wait_for(s, MIG_FLUSHED, s->seq);
	ms = now_ms() - t0;
	if (!r && ms)
		s->rate = s->rate ? (s->rate + bytes * 1000 / ms) / 2 : bytes * 1000 / ms;
	if (!r)
		r = mark(s, dev, s->dv[dev].last, v, n, sent);
	return r;
}

/*
 * Send run [first, first + count) of member dev's round (with cut, it may
 * stop short: *part < count), noting its extents as sent in a round
 * (post-copy's split) and its bytes in *bytes.
 */
static int send_noted(struct sender *s, unsigned int dev, uint64_t first, uint64_t count,
		      bool cut, uint64_t *part, uint64_t *bytes)
{
	int r;

	*part = 0;
	r = send_run(s, dev, first, count, cut, part);
	*bytes += *part * s->dv[dev].eb;
	for (uint64_t e = first; e < first + *part; e++)
		s->dv[dev].sent[e / 8] |= (uint8_t)(1u << (e % 8));
	return r;
}

/*
 * Send runs v[0, n) of member dev's round, have them flushed, then mark
 * them sent.  *sent: extents.
 */
static int ship(struct sender *s, unsigned int dev, const struct rcow_run *v, size_t n,
		bool cut, uint64_t *sent)
{
	uint64_t t0 = now_ms(), bytes = 0, part = 0;
	size_t full = 0;
	int r = 0;

	*sent = 0;
	/* runs v[0, full) went whole, then part extents of v[full] (cut short) */
	for (; full < n && !r; full++) {
		r = send_noted(s, dev, v[full].first, v[full].count, cut, &part, &bytes);
		if (!r && part < v[full].count)
			break;
		part = 0;
	}
	if (r)
		return r;
	r = seal(s, dev, v, full, bytes, t0, sent);
	if (!r && part)
		r = mark(s, dev, s->dv[dev].last, &(struct rcow_run){ v[full].first, part }, 1,
			 sent);
	return r;
}

/* One round of member dev: take it, send it whole, have it flushed, mark it.  *sent: extents. */
static int round_trip(struct sender *s, unsigned int dev, uint64_t *sent)
{
	struct run_vec runs = { 0 };
	int r;

	*sent = 0;
	r = take_round(s, dev, 0);
	if (!r)
		r = get_runs(s, dev, MK_RUNS, &runs);
	if (!r)
		r = ship(s, dev, runs.ptr, runs.len, true, sent);
	run_vec_free(&runs);
	return r;
}

/*
 * The change set of member dev over the piece of the round set (its runs
 * v[0, nr)) that starts at cursor and holds budget of its extents, into
 * *fresh: GET_RUNS from the cursor to the piece's end, REMOTE_COW_MAX_RANGE
 * extents at a time, so that each costs the runs of the piece, not of the
 * device.
 */
static int piece_fresh(struct sender *s, unsigned int dev, const struct rcow_run *v, size_t nr,
		       uint64_t cursor, uint64_t budget, struct run_vec *fresh)
{
	uint64_t end = cursor, passed = 0;
	struct rcow_run *dry = calloc(RCOW_COPY_PICK_MAX(0, nr), sizeof(*dry));
	int r = 0;

	if (!dry)
		return rcow_err_set(&s->err, ENOMEM, "out of memory");
	rcow_copy_pick(NULL, 0, v, nr, &end, budget, dry, &passed);
	free(dry);
	*fresh = (struct run_vec){ 0 };
	while (cursor < end && !r) {
		uint64_t n = end - cursor < REMOTE_COW_MAX_RANGE ? end - cursor :
								   REMOTE_COW_MAX_RANGE;
		struct mig_kreq q = { .op = MK_FRESH, .dev = dev, .first = cursor,
				      .count = (uint32_t)n };

		r = mig_kcall(s->j, &q);
		if (r)
			s->err = q.err;
		for (size_t i = 0; !r && i < q.runs.len; i++)
			if (q.runs.ptr[i].first < cursor + n &&	/* an older module goes on */
			    run_vec_push(fresh, q.runs.ptr[i]))
				r = rcow_err_set(&s->err, ENOMEM, "out of memory");
		run_vec_free(&q.runs);
		cursor += n;
	}
	return r;
}

/*
 * A copying round of member dev (rcow_copy_pick()): taken, then sent piece
 * by piece (about MIG_SLICE_MS of the link each; MIG_SLICE_MIN extents
 * while no rate is known), each piece less the extents the guest wrote
 * again since the swap, read from the change set just before it: those
 * stay in the round set and go once, in a later round, instead of now and
 * again then.  One FLUSH at the end, then the marks.  *sent: extents sent;
 * *size: the round set's extents (sent and left out: what the convergence
 * rule compares, as the rounds' sizes).  A piece is picked from the runs
 * it can reach only: from the first that ends past the cursor, at most
 * budget of them (each holds an extent at least), so that a piece costs
 * its own runs, not the whole round's.
 */
static int copy_trip(struct sender *s, unsigned int dev, uint64_t *sent, uint64_t *size)
{
	const uint64_t eb = s->dv[dev].eb;
	struct run_vec runs = { 0 }, fresh = { 0 }, done = { 0 };
	struct rcow_run *pick = NULL;
	uint64_t t0, bytes = 0, cursor = 0, passed = 0, total = 0;
	size_t ri = 0;			/* the first run that ends past the cursor */
	bool cut_short = false;
	int r;

	*sent = *size = 0;
	r = take_round(s, dev, 0);
	if (!r)
		r = get_runs(s, dev, MK_RUNS, &runs);
	for (size_t i = 0; !r && i < runs.len; i++)
		total += runs.ptr[i].count;
	*size = total;
	t0 = now_ms();
	while (!r && passed < total && !cut_short) {
		uint64_t ms = now_ms() - t0, rate = ms >= 50 ? bytes * 1000 / ms : s->rate;
		uint64_t budget = rate * MIG_SLICE_MS / 1000 / eb;
		size_t n, nr;

		if (budget < MIG_SLICE_MIN)
			budget = MIG_SLICE_MIN;
		while (runs.ptr[ri].first + runs.ptr[ri].count <= cursor)
			ri++;	/* passed < total: a run ends past the cursor */
		nr = runs.len - ri < budget ? runs.len - ri : (size_t)budget;
		run_vec_free(&fresh);
		r = piece_fresh(s, dev, runs.ptr + ri, nr, cursor, budget, &fresh);
		if (r)
			break;
		free(pick);
		pick = calloc(RCOW_COPY_PICK_MAX(fresh.len, nr), sizeof(*pick));
		if (!pick) {
			r = rcow_err_set(&s->err, ENOMEM, "out of memory");
			break;
		}
		n = rcow_copy_pick(fresh.ptr, fresh.len, runs.ptr + ri, nr, &cursor, budget, pick,
				   &passed);
		for (size_t i = 0; i < n && !r; i++) {
			uint64_t part = 0;

			r = send_noted(s, dev, pick[i].first, pick[i].count, true, &part, &bytes);
			if (!r && part)
				r = run_vec_push(&done, (struct rcow_run){ pick[i].first, part }) ?
					rcow_err_set(&s->err, ENOMEM, "out of memory") : 0;
			if (!r && part < pick[i].count)
				cut_short = true;	/* post-copy asked: the rest stays */
			if (cut_short)
				break;
		}
	}
	if (!r)
		r = seal(s, dev, done.ptr, done.len, bytes, t0, sent);
	free(pick);
	run_vec_free(&done);
	run_vec_free(&fresh);
	run_vec_free(&runs);
	return r;
}

/*
 * Mirroring: one round (with flags), of which only a slice is sent (about
 * MIG_SLICE_MS of the link, rcow_mirror_pick()): first the extents written
 * since the round before, where the writes that wait are.  *sent: extents
 * sent, *left: extents of the round set left for the next rounds.
 */
static int mirror_trip(struct sender *s, unsigned int dev, uint32_t flags, uint64_t *sent,
		       uint64_t *left)
{
	struct run_vec fresh = { 0 }, runs = { 0 };
	struct rcow_run *pick = NULL;
	uint64_t budget = s->rate * MIG_SLICE_MS / 1000 / s->dv[dev].eb, total = 0;
	size_t n;
	int r;

	*sent = *left = 0;
	if (budget < MIG_SLICE_MIN)
		budget = MIG_SLICE_MIN;
	r = get_runs(s, dev, MK_FRESH, &fresh);
	if (!r)
		r = take_round(s, dev, flags);
	if (!r)
		r = get_runs(s, dev, MK_RUNS, &runs);
	if (!r) {
		pick = calloc(RCOW_MIRROR_PICK_MAX(fresh.len, runs.len), sizeof(*pick));
		if (!pick)
			r = rcow_err_set(&s->err, ENOMEM, "out of memory");
	}
	if (!r) {
		for (size_t i = 0; i < runs.len; i++)
			total += runs.ptr[i].count;
		n = rcow_mirror_pick(fresh.ptr, fresh.len, runs.ptr, runs.len, &s->dv[dev].cursor,
				     budget, pick);
		r = ship(s, dev, pick, n, true, sent);
		*left = total - *sent;
	}
	free(pick);
	run_vec_free(&fresh);
	run_vec_free(&runs);
	return r;
}

/*
 * remote-cowd -v: member dev's round that sent n extents; of the empty
 * rounds while the guest runs (one every MIG_IDLE_MS while the source
 * waits for writes or migrate finish), only the first of a run and one
 * every RCOW_ROUND_QUIET_MS (rcow_round_log()).  later: extents of a
 * copying round left for a later one (written again meanwhile).
 */
static void log_round(struct sender *s, unsigned int dev, uint64_t n, uint64_t later,
		      bool finishing)
{
	const char *name = s->j->m[dev].name;
	unsigned long long round = s->dv[dev].last;
	uint64_t skipped;

	switch (rcow_round_log(&s->dv[dev].rlog, n, finishing, now_ms(), &skipped)) {
	case RCOW_ROUND_LOG:
		if (later)
			vlog(s->j->d, 1, "device %s: round %llu: %llu extents sent, %llu written again meanwhile left for a later round",
			     name, round, (unsigned long long)n, (unsigned long long)later);
		else
			vlog(s->j->d, 1, "device %s: round %llu: %llu extents sent", name, round,
			     (unsigned long long)n);
		break;
	case RCOW_ROUND_IDLE:
		vlog(s->j->d, 1, "device %s: round %llu: 0 extents sent; nothing left: waiting for writes or migrate finish (empty rounds logged every %d s)",
		     name, round, RCOW_ROUND_QUIET_MS / 1000);
		break;
	case RCOW_ROUND_STILL:
		vlog(s->j->d, 1, "device %s: round %llu: 0 extents sent; still waiting for writes or migrate finish (%llu empty rounds not logged)",
		     name, round, (unsigned long long)skipped);
		break;
	case RCOW_ROUND_SKIP:
		break;
	}
}

/*
 * One round of the group: a round of each member; totals in *sent, *left
 * (mirroring: left in the round sets) and *size (copying: the round sets'
 * sizes, sent or left out).
 */
static int group_round(struct sender *s, bool finishing, bool mirror, uint64_t *sent,
		       uint64_t *left, uint64_t *size)
{
	*sent = *left = *size = 0;
	for (unsigned int i = 0; i < s->j->n; i++) {
		uint64_t n = 0, l = 0, z = 0;
		bool fenced;
		int r;

		mig_round_seen(s->j, i, &fenced);
		if (s->mirroring && !finishing)
			r = mirror_trip(s, i, mirror && !fenced ? RCOW_MIGRATE_F_MIRROR : 0, &n, &l);
		else if (!finishing)
			r = copy_trip(s, i, &n, &z);
		else
			r = round_trip(s, i, &n);
		if (r)
			return r;
		log_round(s, i, n, z > n ? z - n : 0, finishing);
		*sent += n;
		*left += l;
		*size += z;
	}
	return 0;
}

/* Post-copy: the destination's fetches, answered with DATA, until COMMITTED. */
static int serve_fetches(struct sender *s)
{
	struct mig_run run;
	struct mig_abort a;
	struct mig_hdr h;
	int r;

	for (;;) {
		if (mig_stopping(s->j))
			return rcow_err_set(&s->err, ECANCELED, "the daemon stopped the migration");
		/* no deadline: the destination fetches as its guest reads */
		r = mig_recv(s->c, &h, s->rbuf, MIG_MAX_HELLO, 1000, &s->err);
		if (r == -ETIMEDOUT)
			continue;
		if (r)
			return r;
		switch (h.type) {
		case MIG_FETCH:
			r = mig_dec_run(h.type, s->rbuf, h.len, &run, &s->err);
			if (!r && run.dev >= s->j->n)
				r = rcow_err_set(&s->err, EPROTO, "FETCH for device %u of %u", run.dev,
						 s->j->n);
			if (!r)
				r = mig_run_check(&run, s->j->n, s->j->m[run.dev].info.nr_extents,
						  s->dv[run.dev].eb, true, &s->err);
			if (!r) {
				uint64_t done = 0;

				r = send_run(s, run.dev, run.first, run.count, false, &done);
			}
			break;
		case MIG_COMMITTED:
			return mig_dec_empty(h.type, h.len, &s->err);
		case MIG_ABORT:
			if (mig_dec_abort(s->rbuf, h.len, &a, &s->err))
				return -EPROTO;
			return rcow_err_set(&s->err, a.error ? (int)a.error : EIO,
					    "the destination aborted: %s", a.msg);
		default:
			r = rcow_err_set(&s->err, EPROTO, "unexpected %s from the destination in post-copy",
					 mig_type_name(h.type));
		}
		if (r)
			return r;
	}
}

/*
 * Post-copy: member dev's last round, split.  Its extents sent in a round
 * before are on the destination already, in an older version: the kernel
 * there does not take them as remote (a present or filled extent is not),
 * so they go as DATA now (shipped: flushed, marked).  The others, never
 * sent, are the post-copy runs (s->pc_runs[dev]), named REMOTE.
 */
static int last_round_split(struct sender *s, unsigned int dev)
{
	struct run_vec runs = { 0 }, again = { 0 };
	const uint8_t *sent = s->dv[dev].sent;
	uint64_t shipped;
	int r = get_runs(s, dev, MK_RUNS, &runs);

	for (size_t k = 0; !r && k < runs.len; k++) {
		uint64_t e = runs.ptr[k].first, end = e + runs.ptr[k].count;

		while (e < end && !r) {
			bool was = sent[e / 8] >> (e % 8) & 1;
			struct rcow_run part = { e, 0 };

			while (e < end && (bool)(sent[e / 8] >> (e % 8) & 1) == was) {
				part.count++;
				e++;
			}
			if (run_vec_push(was ? &again : &s->pc_runs[dev], part))
				r = rcow_err_set(&s->err, ENOMEM, "out of memory");
		}
	}
	if (!r && again.len)
		r = ship(s, dev, again.ptr, again.len, false, &shipped);
	if (!r && again.len)
		vlog(s->j->d, 1, "device %s: post-copy: %llu extent(s) sent before and written since go now",
		     s->j->m[dev].name, (unsigned long long)shipped);
	run_vec_free(&runs);
	run_vec_free(&again);
	return r;
}

/*
 * Post-copy finish (every member fenced): the last round of each member,
 * but for what was sent before (last_round_split()), is named to the
 * destination as REMOTE runs instead of sent; FLUSH for what
 * came before; POSTCOPY; at SERVING, MIGRATE_POSTCOPY to each member's
 * kernel; then the destination's FETCHes are answered until COMMITTED,
 * when the runs are marked sent and each member ends (MIGRATE_END 0).
 */
static int postcopy(struct sender *s)
{
	struct mig_job *j = s->j;
	uint8_t f[MIG_HDR_SIZE + MIG_RUN_SIZE + 8];
	uint64_t remote = 0;
	int r = 0;

	logmsg("%s: fenced; finishing post-copy: the last round is named to the destination, which then serves",
	       j->label);
	for (unsigned int i = 0; i < j->n && !r; i++) {
		r = take_round(s, i, 0);
		if (!r)
			r = last_round_split(s, i);
		for (size_t k = 0; !r && k < s->pc_runs[i].len; k++) {
			uint64_t first = s->pc_runs[i].ptr[k].first, left = s->pc_runs[i].ptr[k].count;

			while (left && !r) {
				struct mig_run run = { .dev = i, .first = first };

				run.count = (uint32_t)(left < REMOTE_COW_MAX_RANGE ? left :
						       REMOTE_COW_MAX_RANGE);
				r = mig_send(s->c, f, (size_t)mig_enc_run(f, sizeof(f), MIG_REMOTE, &run),
					     &s->err);
				first += run.count;
				left -= run.count;
				remote += run.count;
			}
		}
	}
	if (!r)
		r = mig_send(s->c, f, (size_t)mig_enc_seq(f, sizeof(f), MIG_FLUSH, ++s->seq),
			     &s->err);
	if (!r)
		r = wait_for(s, MIG_FLUSHED, s->seq);
	if (r)
		return r;
	pthread_mutex_lock(&j->lock);
	j->finish_sent = j->postcopy_sent = true;
	pthread_mutex_unlock(&j->lock);
	r = send_empty(s, MIG_POSTCOPY);
	if (!r)
		r = wait_for(s, MIG_SERVING, 0);
	for (unsigned int i = 0; i < j->n && !r; i++) {
		struct mig_kreq q = { .op = MK_POSTCOPY, .dev = i };

		r = mig_kcall(j, &q);
		if (r) {
			s->err = q.err;
			rcow_err_prefix(&s->err, "%s: MIGRATE_POSTCOPY", j->m[i].name);
		}
	}
	if (r)
		return r;
	logmsg("%s: post-copy: the destination serves; %llu extent(s) still only here, fetched on demand and streamed",
	       j->label, (unsigned long long)remote);
	r = serve_fetches(s);
	for (unsigned int i = 0; i < j->n && !r; i++) {
		struct mig_kreq q = { .op = MK_END, .dev = i, .status = 0 };

		uint64_t marked = 0;

		r = mark(s, i, s->dv[i].last, s->pc_runs[i].ptr, s->pc_runs[i].len, &marked);
		if (!r) {
			r = mig_kcall(j, &q);
			if (r)
				s->err = q.err;
		}
		if (r) {
			rcow_err_prefix(&s->err, "%s", j->m[i].name);
			break;
		}
		pthread_mutex_lock(&j->lock);
		j->m[i].ended = true;
		pthread_mutex_unlock(&j->lock);
	}
	return r;
}

/*
 * migrate_mirror throttle, a copying round sent @sent extents: slow the
 * guest down more (the next rounds carry the delay), or give up and mirror
 * (true).  The first delay is the link time of one extent (the group's
 * smallest) at the rate the rounds measured.
 */
static bool slower(struct sender *s, uint64_t sent)
{
	uint64_t eb = s->dv[0].eb;
	bool first = !s->thr.delay_ms;

	for (unsigned int i = 1; i < s->j->n; i++)
		if (s->dv[i].eb < eb)
			eb = s->dv[i].eb;
	switch (rcow_throttle_round(&s->thr, sent, rcow_throttle_start_ms(eb, s->rate))) {
	case RCOW_THROTTLE_SLOWER:
		if (first)
			logmsg("%s: the rounds stopped shrinking (%llu extents): guest writes slowed down by %u ms each (the link time of one extent at %llu KiB/s)",
			       s->j->label, (unsigned long long)sent, s->thr.delay_ms,
			       (unsigned long long)(s->rate >> 10));
		else
			logmsg("%s: the rounds stopped shrinking (%llu extents): guest writes slowed down by %u ms each",
			       s->j->label, (unsigned long long)sent, s->thr.delay_ms);
		return false;
	case RCOW_THROTTLE_MIRROR:
		logmsg("%s: throttled at %u ms, the rounds still do not shrink: mirroring after all",
		       s->j->label, s->thr.delay_ms);
		return true;
	default:
		return false;
	}
}

static int migrate(struct sender *s)
{
	struct mig_spec *sp = malloc(sizeof(*sp));
	uint64_t sent, left = 0, size = 0, waiting;
	bool finishing = false, mirror = s->j->mirror_always;
	int r;

	if (!sp)
		return rcow_err_set(&s->err, ENOMEM, "out of memory");
	r = mig_spec_load(s->j->m[0].spec, false, sp, &s->err);
	if (r) {
		free(sp);
		rcow_err_prefix(&s->err, "no key for the migration (remote-cow migrate --psk)");
		return r;
	}
	/* a destination still setting up refuses the connection: try for a while */
	for (int tries = 0;; tries++) {
		r = mig_connect(s->j->target, &sp->psk, MIG_CONNECT_MS, &s->c, &s->err);
		if (r != -ECONNREFUSED || tries >= MIG_CONNECT_TRIES || mig_stopping(s->j))
			break;
		mig_wait(s->j, 0, UINT64_MAX, 500);
	}
	s->spec_postcopy = sp->postcopy;
	mig_psk_wipe(&sp->psk);
	free(sp);
	if (r)
		return r;
	mig_set_conn(s->j, s->c);
	r = hello(s);
	if (r)
		return r;
	logmsg("%s: connected to %s; sending rounds", s->j->label, mig_conn_peer(s->c));
	for (;;) {
		bool fin;

		pthread_mutex_lock(&s->j->lock);
		fin = s->j->finish;
		pthread_mutex_unlock(&s->j->lock);
		if (fin && !finishing) {
			bool pc;

			pthread_mutex_lock(&s->j->lock);
			pc = s->j->postcopy || s->spec_postcopy;
			pthread_mutex_unlock(&s->j->lock);
			if (pc)
				return postcopy(s);
			finishing = true;	/* rounds asked from now on are after the fence */
			logmsg("%s: fenced; sending the last round(s)", s->j->label);
		}
		waiting = mig_waiting_seen(s->j);
		mirror = mirror && !finishing && !s->mirroring;
		if (mirror) {
			s->mirroring = true;
			logmsg("%s: %s: mirroring from round %llu (writes complete once the destination has them)",
			       s->j->label,
			       s->j->mirror_always ? "migrate_mirror always" :
						     "the rounds stopped shrinking",
			       (unsigned long long)s->dv[0].last + 1);
		}
		r = group_round(s, finishing, mirror, &sent, &left, &size);
		if (r)
			return r;
		if (finishing && !sent)
			break;
		if (finishing)
			continue;
		if (!s->mirroring)	/* the rounds' sizes, whether sent or left for later */
			mirror = s->j->throttle ? slower(s, size) : rcow_mirror_round(&s->pace, size);
		if (!sent && !left && s->mirroring)
			mig_wait_writes(s->j, waiting, MIG_IDLE_MS);
		else if (!sent && !s->mirroring)
			mig_wait(s->j, 0, UINT64_MAX, MIG_IDLE_MS);
	}
	pthread_mutex_lock(&s->j->lock);
	s->j->finish_sent = true;
	pthread_mutex_unlock(&s->j->lock);
	r = send_empty(s, MIG_FINISH);
	if (!r)
		r = wait_for(s, MIG_COMMITTED, 0);
	for (unsigned int i = 0; i < s->j->n && !r; i++) {
		struct mig_kreq q = { .op = MK_END, .dev = i, .status = 0 };

		r = mig_kcall(s->j, &q);
		if (r) {
			s->err = q.err;
			rcow_err_prefix(&s->err, "%s", s->j->m[i].name);
			break;
		}
		pthread_mutex_lock(&s->j->lock);
		s->j->m[i].ended = true;
		pthread_mutex_unlock(&s->j->lock);
	}
	return r;
}

/* ABORT (error code, why) to the peer, best-effort: its failure is not reported. */
static void send_abort(struct sender *s, int code, const char *why)
{
	uint8_t f[MIG_HDR_SIZE + 6 + MIG_MSG_MAX];
	struct rcow_err e2;

	mig_send(s->c, f, (size_t)mig_enc_abort(f, sizeof(f), (uint32_t)code, why), &e2);
}

/* The member whose kernel aborted, or NULL (the daemon stops the job). */
static const char *aborted_member(struct mig_job *j)
{
	const char *name = NULL;

	pthread_mutex_lock(&j->lock);
	for (unsigned int i = 0; i < j->n && !name; i++)
		if (j->m[i].aborted)
			name = j->m[i].name;
	pthread_mutex_unlock(&j->lock);
	return name;
}

void *mig_send_thread(void *arg)
{
	struct mig_job *j = arg;
	struct sender s = { .j = j };
	const char *who;
	bool aborted;
	int r = 0;

	s.cow = calloc(j->n, sizeof(*s.cow));
	s.dv = calloc(j->n, sizeof(*s.dv));
	s.rbuf = malloc(MIG_MAX_HELLO + MIG_HDR_SIZE);
	s.pc_runs = calloc(j->n, sizeof(*s.pc_runs));
	if (!s.cow || !s.dv || !s.rbuf || !s.pc_runs)
		r = rcow_err_set(&s.err, ENOMEM, "out of memory");
	for (unsigned int i = 0; i < j->n && !r; i++) {
		s.dv[i].eb = (uint64_t)j->m[i].info.extent_sectors * 512;
		s.dv[i].dev_bytes = j->m[i].info.dev_sectors * 512;
		s.dv[i].data_off = j->m[i].info.data_offset * 512;
		s.dv[i].last = mig_round_seen(j, i, NULL);
		s.dv[i].sent = calloc(1, (size_t)((j->m[i].info.nr_extents + 7) / 8));
		if (!s.dv[i].sent) {
			r = rcow_err_set(&s.err, ENOMEM, "out of memory");
			break;
		}
		r = j->d->kops->open_cow(j->d->kctx, &j->m[i].info, &s.cow[i], &s.err);
	}
	if (!r)
		r = migrate(&s);
	pthread_mutex_lock(&j->lock);
	aborted = j->abort || j->stop;
	pthread_mutex_unlock(&j->lock);
	if (!r) {
		logmsg("%s: migration to %s done: the destination committed; %s fenced", j->label,
		       j->target, j->n > 1 ? "every member stays" : "this device stays");
	} else if (aborted) {
		char why[200];

		who = aborted_member(j);
		logmsg("%s: migration to %s aborted", j->label, j->target);
		if (who) {
			snprintf(why, sizeof(why), "member %s of the group was aborted", who);
			mig_end_members(j, ECANCELED, why);
		}
	} else {
		logmsg("%s: migration to %s failed: %s", j->label, j->target, s.err.msg);
		if (s.j->postcopy_sent)
			logmsg("%s: post-copy: the destination may be serving the guest: the extents it did not fetch yet fail there with EIO; %s fenced until 'migrate abort' (only if the destination is not used)",
			       j->label, j->n > 1 ? "every member stays" : "this device stays");
		else if (s.j->finish_sent)
			logmsg("%s: FINISH was sent: the destination may have taken over; %s fenced until 'migrate abort' (only if the destination is not used)",
			       j->label, j->n > 1 ? "every member stays" : "this device stays");
		mig_end_members(j, -r, s.err.msg);
	}
	/*
	 * The members ended first (the fence lifted, unless KEEP_FENCE), the
	 * peer told second, best-effort: with the link down this send may
	 * block until the peer timeout, and the guest's writes must not wait
	 * for it a second time.
	 */
	if (s.c && (aborted || r))
		send_abort(&s, aborted ? ECANCELED : -r,
			   aborted ? "the source aborted the migration" : s.err.msg);
	mig_end(j, s.c, s.cow, &s.buf, s.rbuf, s.moved);
	for (unsigned int i = 0; s.pc_runs && i < j->n; i++)
		run_vec_free(&s.pc_runs[i]);
	for (unsigned int i = 0; s.dv && i < j->n; i++)
		free(s.dv[i].sent);
	free(s.pc_runs);
	free(s.cow);
	free(s.dv);
	return NULL;
}
