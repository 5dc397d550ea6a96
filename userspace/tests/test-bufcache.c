// SPDX-License-Identifier: GPL-2.0
/*
 * test-bufcache.c - the fills' buffer cache (daemon/bufcache.c): a freed
 * buffer serves the next request that fits (the smallest such), the cache
 * keeps its largest buffers within its byte and slot limits and never
 * more than was ever out at once, a heap buffer handed back is freed, an
 * idle cache empties after BUFCACHE_IDLE_MS, and two threads may share it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>

#include "bufcache.h"
#include "tap.h"

#define KIB 1024u

static struct bufcache_stats stats_of(struct bufcache *c)
{
	struct bufcache_stats st;

	bufcache_stats(c, &st);
	return st;
}

static void reuse(struct tap *t)
{
	struct bufcache *c = bufcache_new(8u << 20);
	struct rcow_err err = { 0 };
	struct rcow_buf a = { 0 }, b = { 0 }, s = { 0 };
	void *pa;

	tap_ok(t, bufcache_get(c, &a, 100 * KIB, &err) == 0 && a.mapped &&
	       a.cap == 128 * KIB, "a 100 KiB request maps 128 KiB (a power of two)");
	memset(a.p, 0xa5, a.cap);
	tap_ok(t, bufcache_get(c, &a, 64 * KIB, &err) == 0 && stats_of(c).maps == 1,
	       "a buffer large enough is kept");
	pa = a.p;
	bufcache_put(c, &a);
	tap_ok(t, !a.p && !a.cap && stats_of(c).cached_bytes == 128 * KIB,
	       "a buffer given back is cached and its holder emptied");
	tap_ok(t, bufcache_get(c, &b, 120 * KIB, &err) == 0 && b.p == pa &&
	       stats_of(c).reuses == 1 && stats_of(c).maps == 1,
	       "the next request that fits takes it, no new mapping");
	tap_ok(t, bufcache_get(c, &s, 1 * KIB, &err) == 0 && s.cap == 64 * KIB &&
	       stats_of(c).maps == 2, "a request while it is out maps another");
	bufcache_put(c, &s);
	bufcache_put(c, &b);
	tap_ok(t, bufcache_get(c, &a, 4 * KIB, &err) == 0 && a.cap == 64 * KIB,
	       "best fit: a small request takes the smallest buffer");
	tap_ok(t, bufcache_get(c, &a, 100 * KIB, &err) == 0 && a.p == pa &&
	       stats_of(c).cached_bytes == 64 * KIB,
	       "growing a buffer returns the old one to the cache and takes a larger one");
	bufcache_put(c, &a);
	bufcache_free(c);
}

static void limits(struct tap *t)
{
	struct bufcache *c = bufcache_new(1u << 20);
	struct rcow_err err = { 0 };
	struct rcow_buf q[4] = { 0 }, big = { 0 }, huge = { 0 }, heap = { 0 };
	unsigned int kept;

	for (int i = 0; i < 4; i++)
		bufcache_get(c, &q[i], 256 * KIB, &err);
	bufcache_get(c, &big, 512 * KIB, &err);
	bufcache_get(c, &huge, 2u << 20, &err);
	for (int i = 0; i < 4; i++)
		bufcache_put(c, &q[i]);
	tap_ok(t, stats_of(c).cached_bytes == 1u << 20, "four 256 KiB buffers fill a 1 MiB cache");
	bufcache_put(c, &big);
	tap_ok(t, stats_of(c).cached_bytes == 1u << 20,
	       "a larger buffer given back evicts the smallest ones, within the limit");
	bufcache_get(c, &big, 500 * KIB, &err);
	tap_ok(t, big.cap == 512 * KIB && stats_of(c).cached_bytes == 512 * KIB,
	       "the larger buffer was kept");
	bufcache_put(c, &big);
	bufcache_put(c, &huge);
	tap_ok(t, !huge.p && stats_of(c).cached_bytes == 1u << 20,
	       "a buffer larger than the cache is unmapped, nothing evicted for it");
	tap_ok(t, rcow_buf_reserve(&heap, 4096, &err) == 0 && !heap.mapped, "a heap buffer");
	bufcache_put(c, &heap);
	tap_ok(t, !heap.p && stats_of(c).cached_bytes == 1u << 20,
	       "a heap buffer given back is freed, not cached");
	bufcache_free(c);

	c = bufcache_new(64u << 20);
	bufcache_get(c, &big, 1u << 20, &err);
	bufcache_put(c, &big);
	bufcache_get(c, &huge, (2u << 20) + 1, &err);
	bufcache_put(c, &huge);
	tap_ok(t, huge.cap == 0 && stats_of(c).cached_bytes == 4u << 20 &&
	       stats_of(c).peak_bytes == 4u << 20,
	       "never more idle than was ever out at once: the smaller buffer went");
	bufcache_free(c);

	c = bufcache_new(64u << 20);
	{
		struct rcow_buf many[BUFCACHE_SLOTS + 8];

		memset(many, 0, sizeof(many));
		for (unsigned int i = 0; i < BUFCACHE_SLOTS + 8; i++)
			bufcache_get(c, &many[i], 4096, &err);
		for (unsigned int i = 0; i < BUFCACHE_SLOTS + 8; i++)
			bufcache_put(c, &many[i]);
	}
	kept = (unsigned int)(stats_of(c).cached_bytes / BUFCACHE_GRAIN);
	tap_ok(t, kept == BUFCACHE_SLOTS, "at most %u buffers kept (%u)", BUFCACHE_SLOTS, kept);
	bufcache_free(c);
}

static void idle(struct tap *t)
{
	struct bufcache *c = bufcache_new(64u << 20);
	struct rcow_err err = { 0 };
	struct rcow_buf a = { 0 }, b = { 0 };
	uint64_t when;

	/* a tick at 0, before any deadline, only tells the next one */
	tap_ok(t, bufcache_tick(c, 0) == 0, "an empty cache needs no tick");
	bufcache_get(c, &a, 1u << 20, &err);
	bufcache_get(c, &b, 1u << 20, &err);
	bufcache_put(c, &a);
	when = bufcache_tick(c, 0);
	tap_ok(t, when != 0, "a cached buffer: a tick is due after the idle time");
	tap_ok(t, bufcache_tick(c, when - 1) == when &&
	       stats_of(c).cached_bytes == 1u << 20, "before the idle time: kept, same deadline");
	tap_ok(t, bufcache_tick(c, when) == 0 &&
	       stats_of(c).cached_bytes == 0 && stats_of(c).peak_bytes == 1u << 20,
	       "idle: unmapped, the peak forgotten down to what is out (%llu)",
	       (unsigned long long)stats_of(c).peak_bytes);
	bufcache_put(c, &b);
	tap_ok(t, stats_of(c).cached_bytes == 1u << 20, "the buffer that was out is kept again");
	bufcache_free(c);
}

static void *churn(void *arg)
{
	struct bufcache *c = arg;
	struct rcow_err err = { 0 };
	struct rcow_buf b = { 0 };

	for (unsigned int i = 0; i < 2000; i++) {
		if (bufcache_get(c, &b, (i % 7 + 1) * 64 * KIB, &err))
			return (void *)1;
		memset(b.p, (int)i, b.cap);
		bufcache_put(c, &b);
	}
	return NULL;
}

static void threads(struct tap *t)
{
	struct bufcache *c = bufcache_new(4u << 20);
	pthread_t th[2];
	void *r0 = (void *)1, *r1 = (void *)1;

	pthread_create(&th[0], NULL, churn, c);
	pthread_create(&th[1], NULL, churn, c);
	pthread_join(th[0], &r0);
	pthread_join(th[1], &r1);
	tap_ok(t, !r0 && !r1 && stats_of(c).maps <= 14,
	       "two threads share the cache (%llu mappings for 4000 requests)",
	       (unsigned long long)stats_of(c).maps);
	bufcache_free(c);
}

void test_bufcache(struct tap *t)
{
	reuse(t);
	limits(t);
	idle(t);
	threads(t);
}
