// SPDX-License-Identifier: GPL-2.0
/*
 * src-nbd.c - remote-cowd source for nbd://, nbds:// and nbd+unix:// bases,
 * on libnbd's asynchronous API.
 *
 * - Connections: one at first; once it is up and the server advertises
 *   multi-conn, up to `connections` (remote-cowd(8)).  Every connection is
 *   driven by the daemon's poll loop (nbd_aio_get_fd/get_direction,
 *   nbd_aio_notify_read/write); connecting, TLS and negotiation happen in
 *   libnbd's state machine, so the loop never waits for the network.
 *   (Name resolution of a host name is the one step libnbd does
 *   synchronously; use addresses in the table line to avoid it.)
 * - Reads: one xfer is a run of extents of a fault (engine.c), and the
 *   xfers of the same device queued right behind it for the extents that
 *   follow join it (engine_merge()); one nbd_aio_pread per run of data in
 *   it, split at the server's maximum request size.  In flight per base:
 *   at most max_in_flight reads, and new reads start only while less than
 *   the base's window is in flight: the window follows the bandwidth and
 *   delay the reads measure (rcow_flow, policy.h), from RCOW_MIN_WINDOW up
 *   to max_window; the size of prefetch pieces follows the bandwidth too
 *   (src->piece).  Prefetch and streaming reads start only while less
 *   than about a quarter second of the link is in flight
 *   (rcow_flow_spec()), so that a guest read never queues at the server
 *   behind a window's worth of speculation.  Completion callbacks only record the
 *   result, the loop processes it after nbd_aio_notify_* returned (a
 *   callback must not call libnbd on its own handle).
 * - Holes: when the server offers base:allocation, block status is kept
 *   per 16 MiB chunk of the base (the base is read-only).  One query asks
 *   for up to 64 chunks (1 GiB) from the first chunk not yet known, the
 *   first one as soon as the first connection is up, so that a cold read
 *   rarely waits a round trip for it.  Runs reported zero are never read,
 *   the extent is zeroed locally.
 * - Failures: a connection that fails, or that has a request unanswered
 *   for request_timeout, is closed; its reads go back to the front of the
 *   queue and run again on another connection, or after reconnection.
 *   Reconnection attempts follow a capped exponential backoff.  A read
 *   the server itself answers with an error is retried twice, then the
 *   fault fails with EIO - a read of several extents is first tried
 *   again extent by extent (engine_split()), so that only the extents
 *   the server cannot read fail.  While the base is unreachable nothing fails:
 *   the kernel's fault_timeout decides how long the guest's I/O waits.
 * - Replies: libnbd does not pre-zero read buffers here
 *   (nbd_set_pread_initialize false: that memset showed in profiles,
 *   Documentation/benchmarks-peers.rst), and the buffers are reused
 *   (bufcache.c), so a byte the server's reply leaves out would be
 *   another extent's data.  libnbd 1.14 reports success for a structured
 *   reply whose chunks do not cover the request (its own byte count is
 *   checked only by nbd_aio_command_completed, not before the completion
 *   callback, and strict mode has no such check), so every read on a
 *   connection with structured replies records its chunks (struct cover;
 *   libnbd zeroes the holes it is told of, and keeps chunks within the
 *   request, but does not refuse overlapping ones), and a reply that does
 *   not cover the request exactly once fails like a read the server
 *   refused ("reply did not cover").  A simple reply always carries the
 *   whole request.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "rcow/base.h"

#define MAX_CONNS 16
#define CHUNK_BYTES (16ull << 20)
/* One block status query covers up to this many chunks (1 GiB). */
#define STATUS_CHUNKS 64
/* Most runs one query keeps (a badly fragmented range: asked again later). */
#define STATUS_MAX_RUNS 65536
#define MAX_REQUEST (32u << 20)
#define SERVER_ERROR_RETRIES 3
/* Gaps a read's reply may leave at once: tracked without allocating, at all (struct cover). */
#define COVER_INLINE 4
#define COVER_MAX 65536
/* Malformed replies logged at once; after that every COVER_LOG_EVERY-th. */
#define COVER_LOG_FIRST 5
#define COVER_LOG_EVERY 100

enum cstate { C_IDLE, C_CONNECTING, C_READY };
enum chstate { CH_UNKNOWN, CH_PENDING, CH_KNOWN };

struct nbd_src;

/*
 * What the chunks of one read's structured reply covered: disjoint
 * spans, sorted, relative to the request, adjacent ones merged (chunks
 * in order keep one span, chunks out of order one per gap).  In v, which
 * is inline until a reply leaves more than COVER_INLINE gaps at once.
 */
struct span {
	uint32_t s, e;
};

struct cover {
	struct span *v;
	uint32_t n, cap;
	uint32_t len;			/* of the request */
	uint64_t off;
	uint64_t bad;			/* 1 + where a chunk overlapped or strayed, or 0 */
	bool untracked;			/* more than COVER_MAX spans, or no memory */
	struct span in[COVER_INLINE];
};

struct ticket {
	struct ticket *prev, *next;	/* conn list, then completed list */
	struct nbd_src *ns;
	int conn;			/* -1 once detached from its connection */
	unsigned int gen;		/* the connection's generation at issue */
	bool done, in_conn;
	int err;
	uint64_t issued_ms;
	uint64_t issued_us, delivered, bytes;	/* for the window (reads) */
	struct xfer *x;			/* a read, or */
	size_t chunk, nchunks;		/* a block status query of these chunks */
	bool status;
	uint64_t q_off, q_end;
	struct rcow_extent_list runs;
	bool track;			/* a read with structured replies: cov */
	bool short_reply;		/* cov found the reply did not cover the read */
	struct cover cov;
};

struct conn {
	struct nbd_handle *h;
	enum cstate st;
	uint64_t started_ms;
	struct ticket *tickets;
	unsigned int inflight, gen;
	bool broken;
	bool disc;			/* NBD_CMD_DISC sent (exiting) */
	bool sr;			/* structured replies negotiated */
};

struct chunk {
	enum chstate st;
	uint64_t covered;		/* bytes from the chunk start known */
	struct rcow_extent_list runs;
};

struct nbd_src {
	struct src *s;
	struct conn c[MAX_CONNS];
	unsigned int want;
	bool info_known, meta, multi, down, ever;
	uint64_t max_req;
	struct rcow_backoff bo;
	uint64_t retry_at, down_since;
	struct chunk *chunks;
	size_t nchunks;
	struct ticket *completed, *completed_tail;
	unsigned int inflight;
	uint64_t inflight_bytes;	/* of reads */
	struct rcow_flow flow;
	int slot_conn[MAX_CONNS];	/* pollfd slot -> connection */
	int nslots;
	uint64_t short_replies;		/* reads whose reply did not cover them */
};

static const char *nbd_err(void)
{
	const char *e = nbd_get_error();

	return e ? e : "unknown libnbd error";
}

/* ---- tickets ------------------------------------------------------------- */

static void t_detach(struct ticket *t)
{
	struct conn *c;

	if (!t->in_conn)
		return;
	c = &t->ns->c[t->conn];
	if (t->prev)
		t->prev->next = t->next;
	else
		c->tickets = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->in_conn = false;
	c->inflight--;
	t->ns->inflight--;
	t->ns->inflight_bytes -= t->bytes;
}

static void t_complete(struct ticket *t, int err)
{
	struct nbd_src *ns = t->ns;

	if (t->done)
		return;
	t_detach(t);
	t->done = true;
	t->err = err;
	t->next = NULL;
	if (ns->completed_tail)
		ns->completed_tail->next = t;
	else
		ns->completed = t;
	ns->completed_tail = t;
}

static struct ticket *t_new(struct nbd_src *ns, int ci)
{
	struct ticket *t = calloc(1, sizeof(*t));
	struct conn *c = &ns->c[ci];

	if (!t)
		return NULL;
	t->ns = ns;
	t->conn = ci;
	t->gen = c->gen;
	t->issued_ms = now_ms();
	t->next = c->tickets;
	if (c->tickets)
		c->tickets->prev = t;
	c->tickets = t;
	t->in_conn = true;
	c->inflight++;
	ns->inflight++;
	return t;
}

/* ---- reply coverage ------------------------------------------------------ */

static void cover_init(struct cover *c, uint64_t off, uint32_t len)
{
	c->v = c->in;
	c->cap = COVER_INLINE;
	c->off = off;
	c->len = len;
}

static void cover_free(struct cover *c)
{
	if (c->v != c->in)
		free(c->v);
	c->v = NULL;
}

/* Room for one more span in c: -ENOMEM if none (the read then fails). */
static int cover_grow(struct cover *c)
{
	struct span *v;
	uint32_t cap;

	if (c->n < c->cap)
		return 0;
	if (c->cap >= COVER_MAX)
		return -ENOMEM;
	cap = c->cap * 2;
	v = malloc(cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memcpy(v, c->v, c->n * sizeof(*v));
	cover_free(c);
	c->v = v;
	c->cap = cap;
	return 0;
}

/*
 * The reply filled or zeroed [off, off + len) of the buffer.  Chunks may
 * come in any order; one that overlaps an earlier one is noted (the
 * protocol forbids it, libnbd lets it through).  No allocation while the
 * reply leaves at most COVER_INLINE gaps.
 */
static void cover_add(struct cover *c, uint64_t off, uint64_t len)
{
	uint32_t s, e, i = 0;

	if (len == 0)
		return;
	if (off < c->off || off - c->off > c->len || len > c->len - (off - c->off)) {
		/* libnbd refuses such a reply; never trust a span outside the read */
		if (!c->bad)
			c->bad = off + 1;
		return;
	}
	s = (uint32_t)(off - c->off);
	e = s + (uint32_t)len;
	while (i < c->n && c->v[i].e < s)
		i++;
	if (i < c->n && c->v[i].e == s) {		/* continues span i */
		if (i + 1 < c->n && c->v[i + 1].s < e)
			goto overlap;
		c->v[i].e = e;
		if (i + 1 < c->n && c->v[i + 1].s == e) {	/* and closes a gap */
			c->v[i].e = c->v[i + 1].e;
			memmove(&c->v[i + 1], &c->v[i + 2], (c->n - i - 2) * sizeof(*c->v));
			c->n--;
		}
		return;
	}
	if (i < c->n && c->v[i].s < e)
		goto overlap;
	if (i < c->n && c->v[i].s == e) {		/* just before span i */
		c->v[i].s = s;
		return;
	}
	if (cover_grow(c)) {
		c->untracked = true;
		return;
	}
	memmove(&c->v[i + 1], &c->v[i], (c->n - i) * sizeof(*c->v));
	c->v[i] = (struct span){ s, e };
	c->n++;
	return;
overlap:
	if (!c->bad)
		c->bad = off + 1;
}

/* The whole request, each byte once. */
static bool cover_full(const struct cover *c)
{
	return !c->bad && !c->untracked && c->n == 1 && c->v[0].s == 0 && c->v[0].e == c->len;
}

/* Why c is not full, for the log. */
static void cover_why(const struct cover *c, char *buf, size_t len)
{
	uint64_t got = 0;

	if (c->bad) {
		snprintf(buf, len, "a chunk at %llu overlaps another or lies outside the read",
			 (unsigned long long)(c->bad - 1));
		return;
	}
	if (c->untracked) {
		snprintf(buf, len, "its chunks left more gaps than can be tracked");
		return;
	}
	for (uint32_t i = 0; i < c->n; i++)
		got += c->v[i].e - c->v[i].s;
	snprintf(buf, len, "%llu of %u bytes came, the first missing one at %llu",
		 (unsigned long long)got, c->len,
		 (unsigned long long)(c->off + (c->n && c->v[0].s == 0 ? c->v[0].e : 0)));
}

static int pread_chunk_cb(void *opaque, const void *subbuf, size_t count, uint64_t offset,
			  unsigned int status, int *error)
{
	struct ticket *t = opaque;

	(void)subbuf;
	(void)error;
	/* LIBNBD_READ_ERROR has count 0, and the read fails anyway */
	if (status == LIBNBD_READ_DATA || status == LIBNBD_READ_HOLE)
		cover_add(&t->cov, offset, count);
	return 0;
}

/* Any request's completion; a tracked read whose reply did not cover it fails. */
static int done_cb(void *opaque, int *error)
{
	struct ticket *t = opaque;
	int err = *error;

	if (!err && t->track && !cover_full(&t->cov)) {
		t->short_reply = true;
		err = EIO;
	}
	t_complete(t, err);
	return 1;
}

static int status_extent_cb(void *opaque, const char *metacontext, uint64_t offset,
			    uint32_t *entries, size_t nr_entries, int *error)
{
	struct ticket *t = opaque;

	(void)error;
	if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	for (size_t i = 0; i + 1 < nr_entries && offset < t->q_end; i += 2) {
		uint64_t len = entries[i];

		if (len == 0 || t->runs.n >= STATUS_MAX_RUNS)
			break;
		if (offset + len > t->q_end)
			len = t->q_end - offset;
		if (rcow_extent_list_add(&t->runs, offset, len,
					 (entries[i + 1] & LIBNBD_STATE_ZERO) != 0, NULL))
			break;
		offset += len;
	}
	return 0;
}

/* ---- connections --------------------------------------------------------- */

static void issue_status(struct nbd_src *ns, int ci, size_t i);

static void conn_close(struct nbd_src *ns, int ci)
{
	struct conn *c = &ns->c[ci];
	struct nbd_handle *h = c->h;

	c->h = NULL;
	c->st = C_IDLE;
	c->broken = false;
	c->disc = false;
	c->gen++;
	if (h)
		nbd_close(h);	/* may complete tickets with an error */
	while (c->tickets)
		t_complete(c->tickets, ENOTCONN);
}

static bool any_ready(const struct nbd_src *ns)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (ns->c[i].st == C_READY)
			return true;
	return false;
}

static void conn_fail(struct nbd_src *ns, int ci, const char *why)
{
	struct src *s = ns->s;
	uint64_t now = now_ms();
	bool was_ready = ns->c[ci].st == C_READY;
	uint32_t delay;

	conn_close(ns, ci);
	if (s->d->stopping)
		return;
	if (!was_ready)
		s->d->st.connect_failures++;
	if (any_ready(ns)) {
		vlog(s->d, 1, "base %s: connection %d: %s; the others carry on", s->uri, ci, why);
		if (!ns->retry_at || ns->retry_at < now)
			ns->retry_at = now + ns->bo.initial_ms;
		return;
	}
	if (!ns->down) {
		ns->down = true;
		ns->down_since = now;
	}
	delay = rcow_backoff_fail(&ns->bo);
	ns->retry_at = now + delay;
	if (ns->ever)
		logmsg("base %s: %s%s; %u read(s) waiting; retrying in %.1f s (down for %.1f s)",
		       s->uri, was_ready ? "" : "cannot reconnect: ", why, s->q[XC_GUEST].n + s->q[XC_PREFETCH].n + s->q[XC_HYDRATE].n,
		       delay / 1000.0, (double)(now - ns->down_since) / 1000.0);
	else
		logmsg("base %s: cannot connect: %s%s; retrying in %.1f s", s->uri, why,
		       rcow_cred_tls_hint(s->uri, s->cred), delay / 1000.0);
}

static void conn_start(struct nbd_src *ns, int ci)
{
	struct src *s = ns->s;
	struct conn *c = &ns->c[ci];
	char why[512];
	struct nbd_handle *h;

	h = nbd_create();
	if (!h) {
		logmsg("base %s: cannot create a libnbd handle: %s", s->uri, nbd_err());
		return;
	}
	c->h = h;
	c->st = C_CONNECTING;
	c->started_ms = now_ms();
	nbd_set_handle_name(h, "remote-cowd");
	/* no memset of every read buffer: the replies' coverage is checked instead */
	if (nbd_set_pread_initialize(h, false) < 0 ||
	    nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
	    rcow_nbd_set_cred(h, s->cred) < 0 || nbd_aio_connect_uri(h, s->uri) < 0) {
		snprintf(why, sizeof(why), "%s", nbd_err());
		conn_fail(ns, ci, why);
		return;
	}
	vlog(s->d, 2, "base %s: connection %d: connecting", s->uri, ci);
}

/* Fail every queued read of the source with err (positive errno). */
static void fail_queued(struct nbd_src *ns, int err)
{
	struct src *s = ns->s;

	for (int cl = 0; cl < XC_NR; cl++) {
		struct xfer *x;

		while ((x = s->q[cl].head)) {
			xq_del(&s->q[cl], x);
			x->state = X_DONE;
			engine_xfer_done(s, x, err);
		}
	}
}

/*
 * A connection after the first must reach the same export: a server that
 * comes back with another size serves another image, and its data would
 * be wrong in every COW device over this base.  False (connection failed,
 * queued reads failed with EIO) if the size differs.
 */
static bool same_export(struct nbd_src *ns, int ci)
{
	struct src *s = ns->s;
	int64_t size = nbd_get_size(ns->c[ci].h);
	char why[512];

	if (size >= 0 && (uint64_t)size == s->size)
		return true;
	if (size < 0)
		snprintf(why, sizeof(why), "cannot get the export size: %s", nbd_err());
	else
		snprintf(why, sizeof(why),
			 "the export now has %lld bytes, not %llu: not the image the COW devices were made from; its reads fail (EIO) until the server exports the original again",
			 (long long)size, (unsigned long long)s->size);
	if (size >= 0) {
		s->d->st.fill_errors++;
		fail_queued(ns, EIO);
	}
	conn_fail(ns, ci, why);
	return false;
}

static void conn_ready(struct nbd_src *ns, int ci)
{
	struct src *s = ns->s;
	struct conn *c = &ns->c[ci];
	uint64_t now = now_ms();

	if (ns->info_known && !same_export(ns, ci))
		return;
	c->st = C_READY;
	/* with simple replies every successful read carries the whole request (-1: track) */
	c->sr = nbd_get_structured_replies_negotiated(c->h) != 0;
	if (!ns->info_known) {
		int64_t size = nbd_get_size(c->h), maxb;

		if (size < 0) {
			char why[512];

			snprintf(why, sizeof(why), "cannot get the export size: %s", nbd_err());
			conn_fail(ns, ci, why);
			return;
		}
		s->size = (uint64_t)size;
		s->size_known = true;
		ns->meta = nbd_can_meta_context(c->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
		ns->multi = nbd_can_multi_conn(c->h) == 1;
		ns->max_req = MAX_REQUEST;
		maxb = nbd_get_block_size(c->h, LIBNBD_SIZE_MAXIMUM);
		if (maxb > 0 && (uint64_t)maxb < ns->max_req)
			ns->max_req = (uint64_t)maxb;
		if (ns->meta) {
			ns->nchunks = (size_t)((s->size + CHUNK_BYTES - 1) / CHUNK_BYTES);
			ns->chunks = calloc(ns->nchunks ? ns->nchunks : 1, sizeof(*ns->chunks));
			if (!ns->chunks) {
				/* e.g. an export of 2^63 bytes: 2^39 chunks */
				logmsg("base %s: no memory for the hole map of %llu bytes (%zu chunks); reading every extent as data",
				       s->uri, (unsigned long long)s->size, ns->nchunks);
				ns->nchunks = 0;
				ns->meta = false;
			}
		}
		ns->want = ns->multi ? s->pol.connections : 1;
		ns->info_known = true;
		logmsg("base %s: connected: %llu bytes, holes %s, %u connection(s)%s", s->uri,
		       (unsigned long long)s->size,
		       ns->meta ? "reported (base:allocation)" : "not reported", ns->want,
		       ns->multi ? " (multi-conn)" : "");
		/* where the holes are, before the first read needs it */
		if (ns->meta && ns->nchunks)
			issue_status(ns, ci, 0);
	}
	if (ns->down && ns->ever) {
		logmsg("base %s: reconnected after %.1f s; resuming %u waiting read(s)", s->uri,
		       (double)(now - ns->down_since) / 1000.0,
		       s->q[XC_GUEST].n + s->q[XC_PREFETCH].n + s->q[XC_HYDRATE].n);
		s->d->st.reconnects++;
	}
	ns->down = false;
	ns->ever = true;
	rcow_backoff_reset(&ns->bo);
	/* start the other connections at once */
	ns->retry_at = now;
}

/* ---- completions --------------------------------------------------------- */

static void chunk_data_rest(struct nbd_src *ns, size_t i)
{
	struct chunk *ch = &ns->chunks[i];
	uint64_t start = i * CHUNK_BYTES, end = start + CHUNK_BYTES;

	if (end > ns->s->size)
		end = ns->s->size;
	if (start + ch->covered < end)
		rcow_extent_list_add(&ch->runs, start + ch->covered, end - start - ch->covered,
				     false, NULL);
	ch->covered = end - start;
	ch->st = CH_KNOWN;
}

static uint64_t chunk_end(const struct nbd_src *ns, size_t i)
{
	uint64_t end = (i + 1) * CHUNK_BYTES;

	return end > ns->s->size ? ns->s->size : end;
}

/*
 * A block status query for chunks [t->chunk, t->chunk + t->nchunks) came
 * back: file its runs, split at chunk boundaries, under their chunks; a
 * chunk whose whole range is now covered is known, the others are asked
 * again when a read needs them.
 */
static void status_done(struct nbd_src *ns, struct ticket *t, bool lost)
{
	size_t first = t->chunk, n = t->nchunks;
	uint64_t pos = t->q_off;

	if (t->err) {
		if (!lost)
			logmsg("base %s: block status refused (%s); reading the range at %llu as data",
			       ns->s->uri, strerror(t->err), (unsigned long long)t->q_off);
		for (size_t k = 0; k < n; k++) {
			if (lost)
				ns->chunks[first + k].st = CH_UNKNOWN;
			else
				chunk_data_rest(ns, first + k);
		}
		return;
	}
	for (size_t i = 0; i < t->runs.n; i++) {
		const struct rcow_extent *e = &t->runs.v[i];
		uint64_t end = e->offset + e->length;

		if (e->offset != pos)
			break;
		while (pos < end) {
			size_t c = (size_t)(pos / CHUNK_BYTES);
			uint64_t ce = chunk_end(ns, c), l = (end < ce ? end : ce) - pos;

			if (c >= first + n ||
			    rcow_extent_list_add(&ns->chunks[c].runs, pos, l, e->zero, NULL))
				goto filed;
			pos += l;
		}
	}
filed:
	if (pos == t->q_off) {	/* no progress: do not ask forever */
		chunk_data_rest(ns, first);
		for (size_t k = 1; k < n; k++)
			ns->chunks[first + k].st = CH_UNKNOWN;
		return;
	}
	for (size_t k = 0; k < n; k++) {
		struct chunk *ch = &ns->chunks[first + k];
		uint64_t cs = (first + k) * CHUNK_BYTES, ce = chunk_end(ns, first + k);

		if (pos > cs + ch->covered)
			ch->covered = (pos < ce ? pos : ce) - cs;
		ch->st = cs + ch->covered >= ce ? CH_KNOWN : CH_UNKNOWN;
	}
}

/* Piece bounds: 128 KiB on a slow link, up to 1 MiB on a fast one. */
#define PIECE_MIN (128u << 10)
#define PIECE_MAX (1u << 20)

static void read_done(struct nbd_src *ns, struct ticket *t, bool lost)
{
	struct src *s = ns->s;
	struct xfer *x = t->x;

	if (!t->err && !lost) {
		rcow_flow_done(&ns->flow, t->bytes, t->issued_us, t->delivered, now_ns() / 1000);
		s->piece = rcow_flow_piece(&ns->flow, PIECE_MIN, PIECE_MAX, DEFAULT_PIECE_BYTES);
		s->window = rcow_flow_window(&ns->flow);
		s->d->st.window = s->window;
		s->d->st.bw = rcow_flow_bw(&ns->flow);
		s->d->st.rtt_us = rcow_flow_rtt(&ns->flow);
	}

	if (t->short_reply && !lost) {
		char why[128];

		ns->short_replies++;
		cover_why(&t->cov, why, sizeof(why));
		if (ns->short_replies <= COVER_LOG_FIRST || ns->short_replies % COVER_LOG_EVERY == 0)
			logmsg("base %s: the server's reply did not cover the read of %llu bytes at %llu (%s); failing it like a server error (%llu such replies)",
			       s->uri, (unsigned long long)t->bytes, (unsigned long long)t->cov.off,
			       why, (unsigned long long)ns->short_replies);
	}
	if (t->err && !x->err)
		x->err = t->err;
	if (lost && t->err)
		x->conn = -2;	/* mark: the connection went away */
	if (--x->parts > 0)
		return;
	engine_read_over(x);
	if (!x->err) {
		engine_xfer_done(s, x, 0);
		return;
	}
	if (x->conn == -2) {
		s->d->st.retries++;
	} else if (++x->retries >= SERVER_ERROR_RETRIES) {
		if (engine_split(s, x)) {
			vlog(s->d, 1, "base %s: the server failed reading %llu bytes at %llu %u times; trying extent by extent",
			     s->uri, (unsigned long long)x->len, (unsigned long long)x->off, x->retries);
			return;
		}
		logmsg("base %s: the server failed reading %llu bytes at %llu %u times: %s",
		       s->uri, (unsigned long long)x->len, (unsigned long long)x->off, x->retries,
		       strerror(x->err));
		engine_xfer_done(s, x, EIO);
		return;
	} else {
		s->d->st.retries++;
		vlog(s->d, 1, "base %s: the server failed a read at %llu (%s); retrying", s->uri,
		     (unsigned long long)x->off, strerror(x->err));
	}
	x->err = 0;
	x->conn = -1;
	x->bytes_read = x->bytes_zero = 0;
	x->state = X_QUEUED;
	bufcache_put(s->d->bufs, &x->buf);
	xq_push_front(&s->q[x->cls], x);
}

static void process_completed(struct nbd_src *ns)
{
	struct ticket *t;

	while ((t = ns->completed)) {
		bool lost;

		ns->completed = t->next;
		if (!ns->completed)
			ns->completed_tail = NULL;
		lost = ns->c[t->conn].gen != t->gen || ns->c[t->conn].st != C_READY;
		if (t->status)
			status_done(ns, t, lost);
		else
			read_done(ns, t, lost);
		rcow_extent_list_free(&t->runs);
		cover_free(&t->cov);
		free(t);
	}
}

/* ---- issuing ------------------------------------------------------------- */

/*
 * The connection with the fewest reads in flight; but the pieces of one
 * run stay on the connection of its first piece (while it is usable), so
 * that they arrive in order instead of sharing the link and all arriving
 * late together.
 */
static int pick_conn(const struct nbd_src *ns, const struct xfer *x)
{
	int best = -1;

	if (x && x->fault && x->fault->conn >= 0 && x->fault->conn < MAX_CONNS &&
	    ns->c[x->fault->conn].st == C_READY && !ns->c[x->fault->conn].broken)
		return x->fault->conn;

	for (int i = 0; i < MAX_CONNS; i++)
		if (ns->c[i].st == C_READY && !ns->c[i].broken &&
		    (best < 0 || ns->c[i].inflight < ns->c[best].inflight))
			best = i;
	return best;
}

/*
 * Ask for the block status from the first byte of chunk i not yet known,
 * through up to STATUS_CHUNKS - 1 following chunks nobody asked about.
 */
static void issue_status(struct nbd_src *ns, int ci, size_t i)
{
	size_t n = 1;
	struct ticket *t;

	while (n < STATUS_CHUNKS && i + n < ns->nchunks && ns->chunks[i + n].st == CH_UNKNOWN &&
	       ns->chunks[i + n].covered == 0)
		n++;
	t = t_new(ns, ci);
	if (!t)
		return;
	t->status = true;
	t->chunk = i;
	t->nchunks = n;
	t->q_off = i * CHUNK_BYTES + ns->chunks[i].covered;
	t->q_end = chunk_end(ns, i + n - 1);
	for (size_t k = 0; k < n; k++)
		ns->chunks[i + k].st = CH_PENDING;
	if (nbd_aio_block_status(ns->c[ci].h, t->q_end - t->q_off, t->q_off,
				 (nbd_extent_callback){ .callback = status_extent_cb, .user_data = t },
				 (nbd_completion_callback){ .callback = done_cb, .user_data = t },
				 0) < 0) {
		ns->c[ci].broken = true;
		t_complete(t, ENOTCONN);
	}
}

/*
 * The data runs of [off, off + len) within the base: returns the count (up
 * to max) into runs; everything else of the extent reads as zeroes.
 */
static size_t data_runs(const struct nbd_src *ns, uint64_t off, uint64_t len,
			struct rcow_extent *runs, size_t max)
{
	uint64_t end = off + len, size = ns->s->size;
	size_t n = 0;

	if (end > size)
		end = size;
	if (off >= end)
		return 0;
	if (!ns->meta) {
		runs[0] = (struct rcow_extent){ off, end - off, false };
		return 1;
	}
	for (size_t ci = (size_t)(off / CHUNK_BYTES); ci < ns->nchunks && ci * CHUNK_BYTES < end; ci++) {
		const struct rcow_extent_list *l = &ns->chunks[ci].runs;

		for (size_t i = 0; i < l->n; i++) {
			uint64_t s = l->v[i].offset, e = s + l->v[i].length;

			if (l->v[i].zero || e <= off || s >= end)
				continue;
			if (s < off)
				s = off;
			if (e > end)
				e = end;
			if (n > 0 && runs[n - 1].offset + runs[n - 1].length == s) {
				runs[n - 1].length += e - s;
				continue;
			}
			if (n == max) {	/* too fragmented: read the rest in one go */
				runs[n - 1].length = end - runs[n - 1].offset;
				return n;
			}
			runs[n++] = (struct rcow_extent){ s, e - s, false };
		}
	}
	return n;
}

/* Chunks an extent needs that are not known yet: issue queries.  True if all known. */
static bool chunks_known(struct nbd_src *ns, uint64_t off, uint64_t len, int ci)
{
	uint64_t end = off + len;
	bool all = true;

	if (!ns->meta)
		return true;
	if (end > ns->s->size)
		end = ns->s->size;
	for (size_t i = (size_t)(off / CHUNK_BYTES); i < ns->nchunks && i * CHUNK_BYTES < end; i++) {
		if (ns->chunks[i].st == CH_KNOWN)
			continue;
		all = false;
		if (ns->chunks[i].st == CH_UNKNOWN)
			issue_status(ns, ci, i);
	}
	return all;
}

#define MAX_RUNS 16

/*
 * Zero what of x's buffer no read fills: holes, and the padding up to
 * io_len.  Not the whole buffer first: on a fast link that memset was a
 * visible part of the daemon's CPU time (Documentation/benchmarks.rst).
 */
static void zero_gaps(struct xfer *x, const struct rcow_extent *runs, size_t n)
{
	uint64_t pos = x->off, end = x->off + x->io_len;
	unsigned char *b = x->buf.p;

	for (size_t i = 0; i < n; i++) {
		if (runs[i].offset > pos)
			memset(b + (pos - x->off), 0, (size_t)(runs[i].offset - pos));
		pos = runs[i].offset + runs[i].length;
	}
	if (end > pos)
		memset(b + (pos - x->off), 0, (size_t)(end - pos));
}

/* One read into buf; with structured replies its chunks are tracked (struct cover). */
static int64_t issue_pread(struct conn *c, struct ticket *t, void *buf, uint64_t off,
			   uint64_t len)
{
	nbd_completion_callback done = { .callback = done_cb, .user_data = t };

	if (!c->sr)
		return nbd_aio_pread(c->h, buf, (size_t)len, off, done, 0);
	t->track = true;
	cover_init(&t->cov, off, (uint32_t)len);
	return nbd_aio_pread_structured(c->h, buf, (size_t)len, off,
					(nbd_chunk_callback){ .callback = pread_chunk_cb,
							      .user_data = t }, done, 0);
}

static void issue_read(struct nbd_src *ns, int ci, struct xfer *x)
{
	struct src *s = ns->s;
	struct rcow_extent runs[MAX_RUNS];
	struct rcow_err err = { 0 };
	uint64_t data = 0;
	size_t n;

	xq_del(&s->q[x->cls], x);
	x->state = X_ACTIVE;
	x->t_issued = now_ns() / 1000;
	n = data_runs(ns, x->off, x->len, runs, MAX_RUNS);
	for (size_t i = 0; i < n; i++)
		data += runs[i].length;
	x->bytes_read = data;
	x->bytes_zero = x->len - data;
	if (n == 0) {
		x->zero_all = true;
		engine_xfer_done(s, x, 0);
		return;
	}
	if (bufcache_get(s->d->bufs, &x->buf, x->io_len, &err)) {
		logmsg("base %s: %s", s->uri, err.msg);
		engine_xfer_done(s, x, ENOMEM);
		return;
	}
	zero_gaps(x, runs, n);
	engine_issued(s, x);
	x->conn = ci;
	if (x->fault)
		x->fault->conn = ci;
	x->parts = 0;
	x->issued_ms = now_ms();
	for (size_t i = 0; i < n; i++) {
		uint64_t o = runs[i].offset, left = runs[i].length;

		while (left > 0) {
			uint64_t l = left < ns->max_req ? left : ns->max_req;
			struct ticket *t = t_new(ns, ci);

			if (!t) {	/* finish what was issued; fail the rest */
				x->err = ENOMEM;
				break;
			}
			t->x = x;
			t->bytes = l;
			t->issued_us = now_ns() / 1000;
			t->delivered = ns->flow.delivered;
			ns->inflight_bytes += l;
			x->parts++;
			if (issue_pread(&ns->c[ci], t, (unsigned char *)x->buf.p + (o - x->off), o,
					l) < 0) {
				ns->c[ci].broken = true;
				t_complete(t, ENOTCONN);
			}
			o += l;
			left -= l;
		}
	}
	if (x->parts == 0) {
		engine_read_over(x);
		engine_xfer_done(s, x, x->err ? x->err : EIO);
	}
}

/* engine_next(): x may be issued now (its holes are known; queries go out if not). */
static bool nbd_usable(struct src *s, const struct xfer *x)
{
	struct nbd_src *ns = s->priv;
	int ci = pick_conn(ns, x);

	return ci >= 0 && chunks_known(ns, x->off, x->len, ci);
}

static void nbd_pump(struct src *s)
{
	struct nbd_src *ns = s->priv;

	for (int c = 0; c < XC_NR; c++) {
		struct xfer *x;

		for (;;) {
			int ci;

			if (ns->inflight >= s->pol.max_in_flight ||
			    ns->inflight_bytes >= rcow_flow_window(&ns->flow))
				goto out;
			/* speculation leaves the link to a guest's next read */
			if (c != XC_GUEST &&
			    ns->inflight_bytes >= rcow_flow_spec(&ns->flow, 2 * s->piece))
				goto out;
			/* devices over this base take turns (engine_next()) */
			x = engine_next(s, (enum xclass)c, nbd_usable);
			if (!x)
				break;
			ci = pick_conn(ns, x);
			if (ci < 0)
				goto out;
			/* adjacent xfers of the device queued behind: one read, one write */
			if (!x->mnext)
				while (x->next && engine_can_merge(x, x->next) &&
				       chunks_known(ns, x->next->off, x->next->len, ci))
					engine_merge(s, x, x->next);
			issue_read(ns, ci, x);
		}
	}
out:
	for (int i = 0; i < MAX_CONNS; i++)
		if (ns->c[i].broken)
			conn_fail(ns, i, "the connection broke while sending requests");
	process_completed(ns);
}

/* ---- loop hooks ---------------------------------------------------------- */

static int nbd_open(struct src *s)
{
	struct nbd_src *ns = calloc(1, sizeof(*ns));

	if (!ns)
		return -ENOMEM;
	ns->s = s;
	ns->want = 1;
	rcow_backoff_init(&ns->bo, s->pol.retry_initial_ms, s->pol.retry_max_ms);
	rcow_flow_init(&ns->flow, s->pol.max_window < RCOW_MIN_WINDOW ? s->pol.max_window :
			RCOW_MIN_WINDOW, s->pol.max_window, now_ns() / 1000);
	s->window = rcow_flow_window(&ns->flow);
	s->priv = ns;
	conn_start(ns, 0);
	return 0;
}

static void nbd_src_close(struct src *s)
{
	struct nbd_src *ns = s->priv;

	for (int i = 0; i < MAX_CONNS; i++)
		conn_close(ns, i);
	/* the reads go back to the queues, which are empty of live devices */
	process_completed(ns);
	for (size_t i = 0; i < ns->nchunks; i++)
		rcow_extent_list_free(&ns->chunks[i].runs);
	free(ns->chunks);
	free(ns);
	s->priv = NULL;
}

static int nbd_pollfds(struct src *s, struct pollfd *p, int max)
{
	struct nbd_src *ns = s->priv;
	int n = 0;

	for (int i = 0; i < MAX_CONNS && n < max; i++) {
		struct conn *c = &ns->c[i];
		unsigned int dir;
		int fd;

		if (!c->h || c->st == C_IDLE)
			continue;
		fd = nbd_aio_get_fd(c->h);
		if (fd < 0)
			continue;
		dir = nbd_aio_get_direction(c->h);
		p[n].fd = fd;
		p[n].events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
				      ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
		p[n].revents = 0;
		ns->slot_conn[n] = i;
		n++;
	}
	ns->nslots = n;
	return n;
}

static void check_state(struct nbd_src *ns, int ci)
{
	struct conn *c = &ns->c[ci];
	char why[512];

	if (!c->h)
		return;
	if (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h)) {
		snprintf(why, sizeof(why), "%s", c->st == C_READY ?
			 "the connection was lost" : nbd_err());
		if (c->st == C_READY && nbd_get_error())
			snprintf(why, sizeof(why), "the connection was lost: %s", nbd_err());
		conn_fail(ns, ci, why);
		return;
	}
	if (c->st == C_CONNECTING && nbd_aio_is_ready(c->h))
		conn_ready(ns, ci);
}

static void nbd_events(struct src *s, const struct pollfd *p, int n)
{
	struct nbd_src *ns = s->priv;

	for (int k = 0; k < n && k < ns->nslots; k++) {
		int ci = ns->slot_conn[k];
		struct conn *c = &ns->c[ci];
		int r = 0;

		if (!c->h || !p[k].revents)
			continue;
		if (p[k].revents & (POLLIN | POLLHUP | POLLERR))
			r = nbd_aio_notify_read(c->h);
		else if (p[k].revents & POLLOUT)
			r = nbd_aio_notify_write(c->h);
		(void)r;
		check_state(ns, ci);
	}
	process_completed(ns);
}

static uint64_t nbd_timer(struct src *s, uint64_t now)
{
	struct nbd_src *ns = s->priv;
	uint64_t t = 0;
	bool busy = false;

	for (unsigned int i = 0; i < ns->want && i < MAX_CONNS; i++) {
		if (ns->c[i].st == C_IDLE && (!t || ns->retry_at < t))
			t = ns->retry_at > now ? ns->retry_at : now;
		if (ns->c[i].st == C_CONNECTING || ns->c[i].inflight)
			busy = true;
	}
	if (busy && (!t || now + 1000 < t))
		t = now + 1000;		/* timeouts are checked once a second */
	return t;
}

static void nbd_tick(struct src *s, uint64_t now)
{
	struct nbd_src *ns = s->priv;
	char why[256];

	for (int i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &ns->c[i];

		if (c->st == C_CONNECTING && now > c->started_ms &&
		    now - c->started_ms > s->pol.connect_timeout_ms) {
			snprintf(why, sizeof(why), "no answer to the connection attempt within %.1f s",
				 s->pol.connect_timeout_ms / 1000.0);
			conn_fail(ns, i, why);
		} else if (c->st == C_READY) {
			for (struct ticket *t = c->tickets; t; t = t->next)
				if (now > t->issued_ms &&
				    now - t->issued_ms > s->pol.request_timeout_ms) {
					snprintf(why, sizeof(why),
						 "no reply to a request for %.1f s; reconnecting",
						 (now - t->issued_ms) / 1000.0);
					conn_fail(ns, i, why);
					break;
				}
		}
	}
	if (now >= ns->retry_at)
		for (unsigned int i = 0; i < ns->want && i < MAX_CONNS; i++)
			if (ns->c[i].st == C_IDLE && (i == 0 || ns->info_known))
				conn_start(ns, (int)i);
	process_completed(ns);
}

static unsigned int nbd_in_flight(const struct src *s)
{
	const struct nbd_src *ns = s->priv;

	return ns->inflight;
}

static bool nbd_ready(const struct src *s)
{
	return any_ready(s->priv);
}

/*
 * At exit: ask every connection to disconnect (NBD_CMD_DISC after the
 * requests in flight), so the server sees an orderly end rather than a
 * reset.  The loop keeps polling until the server closed them (bounded by
 * the caller).
 */
static bool nbd_quiesce(struct src *s)
{
	struct nbd_src *ns = s->priv;
	bool open = false;

	for (int i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &ns->c[i];

		if (!c->h)
			continue;
		if (c->st != C_READY || nbd_aio_is_closed(c->h) || nbd_aio_is_dead(c->h)) {
			conn_close(ns, i);
			continue;
		}
		if (!c->disc) {
			c->disc = true;
			if (nbd_aio_disconnect(c->h, 0) < 0) {
				conn_close(ns, i);
				continue;
			}
		}
		open = true;
	}
	process_completed(ns);
	return !open;
}

const struct src_ops src_nbd_ops = {
	.name = "nbd",
	.open = nbd_open,
	.close = nbd_src_close,
	.pollfds = nbd_pollfds,
	.events = nbd_events,
	.timer = nbd_timer,
	.tick = nbd_tick,
	.pump = nbd_pump,
	.in_flight = nbd_in_flight,
	.ready = nbd_ready,
	.quiesce = nbd_quiesce,
};
