// SPDX-License-Identifier: GPL-2.0
/*
 * bufcache.c - I/O buffers kept mapped between fills (see bufcache.h).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "bufcache.h"
#include "daemon.h"

struct bufcache {
	size_t max_bytes;		/* fixed at creation */

	pthread_mutex_t lock;
	struct rcow_buf idle[BUFCACHE_SLOTS];	/* lock; [0, nidle) in use, any order */
	unsigned int nidle;		/* lock */
	size_t bytes;			/* lock: sum of idle[].cap */
	size_t out, peak;		/* lock: bytes of mapped buffers given out, now and most */
	uint64_t last_ms;		/* lock: last get or put, CLOCK_MONOTONIC */
	uint64_t maps, reuses;		/* lock */
};

struct bufcache *bufcache_new(size_t max_bytes)
{
	struct bufcache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->max_bytes = max_bytes;
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void bufcache_free(struct bufcache *c)
{
	if (!c)
		return;
	for (unsigned int i = 0; i < c->nidle; i++)
		rcow_buf_free(&c->idle[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* What the cache may hold now.  Under lock. */
static size_t limit(const struct bufcache *c)
{
	return c->peak < c->max_bytes ? c->peak : c->max_bytes;
}

/* Count size bytes given out.  Under lock. */
static void given(struct bufcache *c, size_t size)
{
	c->last_ms = now_ms();
	c->out += size;
	if (c->out > c->peak)
		c->peak = c->out;
}

/* Take idle[i] out of the cache into *buf (empty).  Under lock. */
static void take(struct bufcache *c, unsigned int i, struct rcow_buf *buf)
{
	*buf = c->idle[i];
	c->bytes -= buf->cap;
	c->idle[i] = c->idle[--c->nidle];
}

/* The idle buffer that fits size best, or -1.  Under lock. */
static int best_fit(const struct bufcache *c, size_t size)
{
	int best = -1;

	for (unsigned int i = 0; i < c->nidle; i++)
		if (c->idle[i].cap >= size && (best < 0 || c->idle[i].cap < c->idle[best].cap))
			best = (int)i;
	return best;
}

/* The smallest idle buffer, or -1.  Under lock. */
static int smallest(const struct bufcache *c)
{
	return best_fit(c, 0);
}

int bufcache_get(struct bufcache *c, struct rcow_buf *buf, size_t size, struct rcow_err *err)
{
	size_t want = BUFCACHE_GRAIN;
	int i, r;

	if (buf->cap >= size)
		return 0;
	while (want < size)
		want *= 2;
	bufcache_put(c, buf);
	pthread_mutex_lock(&c->lock);
	i = best_fit(c, size);
	if (i >= 0) {
		take(c, (unsigned int)i, buf);
		given(c, buf->cap);
		c->reuses++;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	c->maps++;
	given(c, want);
	pthread_mutex_unlock(&c->lock);
	r = rcow_buf_map(buf, want, err);
	if (r) {
		pthread_mutex_lock(&c->lock);
		c->out -= want;
		pthread_mutex_unlock(&c->lock);
	}
	return r;
}

/*
 * Would buf fit if every idle buffer no larger than it went?  Under lock.
 * The cache keeps the largest buffers: a large request is the one that a
 * miss costs most.
 */
static bool can_fit(const struct bufcache *c, const struct rcow_buf *buf)
{
	size_t smaller = 0;
	unsigned int n = 0;

	for (unsigned int i = 0; i < c->nidle; i++)
		if (c->idle[i].cap <= buf->cap) {
			smaller += c->idle[i].cap;
			n++;
		}
	return (c->nidle - n < BUFCACHE_SLOTS) && c->bytes - smaller + buf->cap <= limit(c);
}

void bufcache_put(struct bufcache *c, struct rcow_buf *buf)
{
	struct rcow_buf drop[BUFCACHE_SLOTS + 1];
	unsigned int ndrop = 0;

	if (!buf->p)
		return;
	if (!buf->mapped) {
		rcow_buf_free(buf);
		return;
	}
	pthread_mutex_lock(&c->lock);
	c->out -= buf->cap;
	c->last_ms = now_ms();
	if (can_fit(c, buf)) {
		while (c->nidle == BUFCACHE_SLOTS || c->bytes + buf->cap > limit(c))
			take(c, (unsigned int)smallest(c), &drop[ndrop++]);
		c->idle[c->nidle++] = *buf;
		c->bytes += buf->cap;
	} else {
		drop[ndrop++] = *buf;
	}
	pthread_mutex_unlock(&c->lock);
	*buf = (struct rcow_buf){ 0 };
	/* munmap outside the lock */
	while (ndrop)
		rcow_buf_free(&drop[--ndrop]);
}

void bufcache_stats(struct bufcache *c, struct bufcache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	st->maps = c->maps;
	st->reuses = c->reuses;
	st->cached_bytes = c->bytes;
	st->peak_bytes = c->peak;
	pthread_mutex_unlock(&c->lock);
}

uint64_t bufcache_tick(struct bufcache *c, uint64_t now)
{
	struct rcow_buf drop[BUFCACHE_SLOTS];
	unsigned int ndrop = 0;
	uint64_t next;

	pthread_mutex_lock(&c->lock);
	if (c->nidle && now >= c->last_ms + BUFCACHE_IDLE_MS) {
		while (c->nidle)
			take(c, c->nidle - 1, &drop[ndrop++]);
		c->peak = c->out;
	}
	next = c->nidle ? c->last_ms + BUFCACHE_IDLE_MS : 0;
	pthread_mutex_unlock(&c->lock);
	while (ndrop)
		rcow_buf_free(&drop[--ndrop]);
	return next;
}
