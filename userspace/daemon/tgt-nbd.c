// SPDX-License-Identifier: GPL-2.0
/*
 * tgt-nbd.c - a snapshot commit's target: one libnbd connection to a
 * writable NBD export, driven by the daemon's poll loop (see tgt.h).
 *
 * Like src-nbd.c, completion callbacks only record the result (a callback
 * must not call libnbd on its own handle); the owner takes the results
 * with tgt_next_done().  A request is freed only there, so a callback
 * that libnbd runs while the handle is being closed still finds it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "rcow/base.h"
#include "rcow/policy.h"
#include "tgt.h"

struct treq {
	struct treq *prev, *next;	/* in flight, then the done list */
	struct tgt *t;
	void *cookie;
	uint64_t issued_ms;
	unsigned int gen;		/* the connection it was sent on */
	int err;
	bool done, lost, in_flight;
};

struct tgt {
	char *uri;
	struct rcow_policy pol;
	const struct rcow_cred *cred;
	int verbose;
	struct nbd_handle *h;
	enum tgt_state st;
	bool closing, just_ready, ever;
	unsigned int gen;		/* bumped when a connection is closed */
	uint64_t started_ms, retry_at, down_since;
	struct rcow_backoff bo;
	int64_t size;
	bool ro, can_zero, can_flush;
	int last_errno;
	char last_error[512];
	struct treq *flight;
	unsigned int nflight;
	struct treq *done, *done_tail;
};

static void req_complete(struct treq *q, int err, bool lost)
{
	struct tgt *t = q->t;

	if (q->done)
		return;
	if (q->in_flight) {
		if (q->prev)
			q->prev->next = q->next;
		else
			t->flight = q->next;
		if (q->next)
			q->next->prev = q->prev;
		q->in_flight = false;
		t->nflight--;
	}
	q->done = true;
	q->err = err;
	q->lost = lost || t->closing;
	q->prev = NULL;
	q->next = NULL;
	if (t->done_tail)
		t->done_tail->next = q;
	else
		t->done = q;
	t->done_tail = q;
}

static int req_cb(void *opaque, int *error)
{
	req_complete(opaque, *error, false);
	return 1;
}

static struct treq *req_new(struct tgt *t, void *cookie)
{
	struct treq *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->t = t;
	q->cookie = cookie;
	q->issued_ms = now_ms();
	q->gen = t->gen;
	q->in_flight = true;
	q->next = t->flight;
	if (t->flight)
		t->flight->prev = q;
	t->flight = q;
	t->nflight++;
	return q;
}

/* Close the connection: requests in flight complete as lost. */
static void conn_close(struct tgt *t)
{
	struct nbd_handle *h = t->h;

	t->h = NULL;
	t->gen++;
	t->closing = true;
	if (h)
		nbd_close(h);
	while (t->flight)
		req_complete(t->flight, ENOTCONN, true);
	t->closing = false;
}

static void conn_fail(struct tgt *t, int e, const char *why)
{
	uint64_t now = now_ms();
	uint32_t delay;
	bool was_ready = t->st == TGT_READY;

	conn_close(t);
	t->st = TGT_DOWN;
	if (!t->down_since)
		t->down_since = now;
	t->last_errno = e ? e : EIO;
	snprintf(t->last_error, sizeof(t->last_error), "%s", why);
	delay = rcow_backoff_fail(&t->bo);
	t->retry_at = now + delay;
	logmsg("commit target %s: %s%s%s; retrying in %.1f s (down for %.1f s)", t->uri,
	       was_ready ? "" : "cannot connect: ", why,
	       was_ready ? "" : rcow_cred_tls_hint(t->uri, t->cred), delay / 1000.0,
	       (double)(now - t->down_since) / 1000.0);
}

static void nbd_failure(struct tgt *t, const char *what)
{
	char why[512];
	int e = nbd_get_errno();

	snprintf(why, sizeof(why), "%s%s", what, nbd_get_error() ? nbd_get_error() : "unknown libnbd error");
	conn_fail(t, e ? e : EIO, why);
}

static void conn_start(struct tgt *t)
{
	t->h = nbd_create();
	t->started_ms = now_ms();
	t->st = TGT_CONNECTING;
	if (!t->h) {
		nbd_failure(t, "cannot create a libnbd handle: ");
		return;
	}
	nbd_set_handle_name(t->h, "remote-cowd-commit");
	if (rcow_nbd_set_cred(t->h, t->cred) < 0 || nbd_aio_connect_uri(t->h, t->uri) < 0)
		nbd_failure(t, "");
}

static void conn_ready(struct tgt *t)
{
	uint64_t now = now_ms();

	t->size = nbd_get_size(t->h);
	if (t->size < 0) {
		nbd_failure(t, "cannot get the export size: ");
		return;
	}
	t->ro = nbd_is_read_only(t->h) == 1;
	t->can_zero = nbd_can_zero(t->h) == 1;
	t->can_flush = nbd_can_flush(t->h) == 1;
	t->st = TGT_READY;
	t->just_ready = true;
	if (t->ever && t->down_since)
		logmsg("commit target %s: reconnected after %.1f s", t->uri,
		       (double)(now - t->down_since) / 1000.0);
	else if (t->verbose)
		logmsg("commit target %s: connected: %lld bytes%s%s%s", t->uri, (long long)t->size,
		       t->ro ? ", read-only" : "", t->can_zero ? ", write-zeroes" : "",
		       t->can_flush ? ", flush" : "");
	t->ever = true;
	t->down_since = 0;
	rcow_backoff_reset(&t->bo);
}

int tgt_open(struct tgt **out, const char *uri, const struct rcow_policy *pol,
	     const struct rcow_cred *cred, int verbose)
{
	struct tgt *t = calloc(1, sizeof(*t));

	if (!t || !(t->uri = strdup(uri))) {
		free(t);
		return -ENOMEM;
	}
	t->pol = *pol;
	t->cred = cred;
	t->verbose = verbose;
	t->size = -1;
	t->down_since = now_ms();
	rcow_backoff_init(&t->bo, pol->retry_initial_ms, pol->retry_max_ms);
	conn_start(t);
	*out = t;
	return 0;
}

void tgt_close(struct tgt *t)
{
	struct treq *q, *n;

	if (!t)
		return;
	conn_close(t);
	for (q = t->done; q; q = n) {
		n = q->next;
		free(q);
	}
	free(t->uri);
	free(t);
}

enum tgt_state tgt_state(const struct tgt *t)
{
	return t->st;
}

bool tgt_just_ready(struct tgt *t)
{
	bool r = t->just_ready && t->st == TGT_READY;

	t->just_ready = false;
	return r;
}

int64_t tgt_size(const struct tgt *t)
{
	return t->size;
}

bool tgt_read_only(const struct tgt *t)
{
	return t->ro;
}

bool tgt_can_zero(const struct tgt *t)
{
	return t->can_zero;
}

bool tgt_can_flush(const struct tgt *t)
{
	return t->can_flush;
}

int tgt_last_errno(const struct tgt *t)
{
	return t->last_errno;
}

const char *tgt_last_error(const struct tgt *t)
{
	return t->last_error;
}

uint64_t tgt_down_since(const struct tgt *t)
{
	return t->st == TGT_READY ? 0 : t->down_since;
}

unsigned int tgt_in_flight(const struct tgt *t)
{
	return t->nflight;
}

/* A request libnbd refused at once: the connection is unusable. */
static int refused(struct tgt *t, struct treq *q)
{
	int e = nbd_get_errno();
	char why[512];

	snprintf(why, sizeof(why), "request refused: %s",
		 nbd_get_error() ? nbd_get_error() : "unknown libnbd error");
	req_complete(q, ENOTCONN, true);
	conn_fail(t, e ? e : ENOTCONN, why);
	return 0;	/* reported through the completion */
}

int tgt_write(struct tgt *t, const void *buf, uint64_t len, uint64_t off, void *cookie)
{
	struct treq *q;

	if (t->st != TGT_READY)
		return -ENOTCONN;
	q = req_new(t, cookie);
	if (!q)
		return -ENOMEM;
	if (nbd_aio_pwrite(t->h, buf, (size_t)len, off,
			   (nbd_completion_callback){ .callback = req_cb, .user_data = q }, 0) < 0)
		return refused(t, q);
	return 0;
}

int tgt_zero(struct tgt *t, uint64_t len, uint64_t off, void *cookie)
{
	struct treq *q;

	if (t->st != TGT_READY)
		return -ENOTCONN;
	q = req_new(t, cookie);
	if (!q)
		return -ENOMEM;
	if (nbd_aio_zero(t->h, len, off,
			 (nbd_completion_callback){ .callback = req_cb, .user_data = q }, 0) < 0)
		return refused(t, q);
	return 0;
}

int tgt_flush(struct tgt *t, void *cookie)
{
	struct treq *q;

	if (t->st != TGT_READY)
		return -ENOTCONN;
	q = req_new(t, cookie);
	if (!q)
		return -ENOMEM;
	if (nbd_aio_flush(t->h, (nbd_completion_callback){ .callback = req_cb, .user_data = q },
			  0) < 0)
		return refused(t, q);
	return 0;
}

bool tgt_next_done(struct tgt *t, void **cookie, int *err, bool *lost)
{
	struct treq *q = t->done;

	if (!q)
		return false;
	t->done = q->next;
	if (!t->done)
		t->done_tail = NULL;
	*cookie = q->cookie;
	*err = q->err;
	/* failed as its connection died (libnbd fails them before we see it dead) */
	*lost = q->lost || (q->err && q->gen != t->gen);
	free(q);
	return true;
}

int tgt_pollfds(struct tgt *t, struct pollfd *p, int max)
{
	unsigned int dir;
	int fd;

	if (max < 1 || !t->h || t->st == TGT_DOWN)
		return 0;
	fd = nbd_aio_get_fd(t->h);
	if (fd < 0)
		return 0;
	dir = nbd_aio_get_direction(t->h);
	p->fd = fd;
	p->events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
			    ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
	p->revents = 0;
	return 1;
}

static void check_state(struct tgt *t)
{
	char why[512];

	if (!t->h)
		return;
	if (nbd_aio_is_dead(t->h) || nbd_aio_is_closed(t->h)) {
		int e = nbd_get_errno();

		snprintf(why, sizeof(why), "%s%s", t->st == TGT_READY ? "the connection was lost: " : "",
			 nbd_get_error() ? nbd_get_error() : "connection closed");
		conn_fail(t, e ? e : ECONNRESET, why);
		return;
	}
	if (t->st == TGT_CONNECTING && nbd_aio_is_ready(t->h))
		conn_ready(t);
}

void tgt_events(struct tgt *t, const struct pollfd *p, int n)
{
	if (n < 1 || !t->h || !p->revents)
		return;
	if (p->revents & (POLLIN | POLLHUP | POLLERR))
		nbd_aio_notify_read(t->h);
	else if (p->revents & POLLOUT)
		nbd_aio_notify_write(t->h);
	check_state(t);
}

uint64_t tgt_timer(struct tgt *t, uint64_t now)
{
	if (t->st == TGT_DOWN)
		return t->retry_at > now ? t->retry_at : now;
	if (t->st == TGT_CONNECTING || t->nflight)
		return now + 1000;	/* timeouts are checked once a second */
	return 0;
}

void tgt_tick(struct tgt *t, uint64_t now)
{
	char why[256];

	if (t->st == TGT_DOWN && now >= t->retry_at) {
		conn_start(t);
		return;
	}
	if (t->st == TGT_CONNECTING && now > t->started_ms &&
	    now - t->started_ms > t->pol.connect_timeout_ms) {
		snprintf(why, sizeof(why), "no answer to the connection attempt within %.1f s",
			 t->pol.connect_timeout_ms / 1000.0);
		conn_fail(t, ETIMEDOUT, why);
		return;
	}
	if (t->st == TGT_READY)
		for (struct treq *q = t->flight; q; q = q->next)
			if (now > q->issued_ms && now - q->issued_ms > t->pol.request_timeout_ms) {
				snprintf(why, sizeof(why), "no reply to a request for %.1f s; reconnecting",
					 (now - q->issued_ms) / 1000.0);
				conn_fail(t, ETIMEDOUT, why);
				return;
			}
	if (t->st == TGT_CONNECTING && t->h)
		check_state(t);
}
