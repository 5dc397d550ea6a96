/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bufcache.c: the fills' I/O buffers, kept between fills.
 *
 * A fill reads up to MAX_XFER_BYTES from its base into a buffer that the
 * COW writer then writes out; buffers of 128 KiB to 4 MiB come and go all
 * the time, up to the base's window in flight.  remote-cowd locks its
 * memory (mlockall), so every fresh page of such a buffer is faulted in
 * and zeroed when it is allocated, in the loop's thread.  From the heap,
 * buffers of changing sizes fragment it: it kept growing by megabytes per
 * hydration for several hydrations before it settled.  So each buffer is
 * a mapping of its own, and a released one goes back to a small cache;
 * the next request takes the smallest cached buffer that is large enough
 * (best fit), and maps a new one only when none is, of a power of two
 * bytes (at least BUFCACHE_GRAIN): sizes near each other share buffers,
 * for at most twice the memory of a buffer of the exact size.  The
 * daemon's reads mostly come in powers of two already (rcow_flow_piece()).  The cache keeps as
 * many idle bytes as were ever out at once (reads in flight and fills
 * waiting for their COW write), so that memory stays at the peak the
 * daemon needed, but never more than max_bytes nor BUFCACHE_SLOTS
 * buffers; beyond that it unmaps its smallest ones first.  Once no
 * buffer was taken or given back for BUFCACHE_IDLE_MS, bufcache_tick()
 * unmaps every idle one and forgets the peak: a daemon that went quiet
 * does not keep a burst's memory locked.
 *
 * lock guards everything below it; no call is made under it but munmap.
 * Any thread may get and put (the loop reads into buffers, a COW writer
 * may need one for zeroes).
 */
#ifndef RCOWD_BUFCACHE_H
#define RCOWD_BUFCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "rcow/cow.h"
#include "rcow/err.h"

#define BUFCACHE_SLOTS 256
/* Idle time after which the cached buffers go (ms). */
#define BUFCACHE_IDLE_MS 30000
/* The smallest buffer mapped. */
#define BUFCACHE_GRAIN (64u << 10)

struct bufcache_stats {
	uint64_t maps;		/* buffers mapped (cache misses) */
	uint64_t reuses;	/* requests served from the cache */
	uint64_t cached_bytes;	/* now in the cache */
	uint64_t peak_bytes;	/* the most ever out at once */
};

struct bufcache;

/* A cache that keeps at most max_bytes of idle buffers (see above). */
struct bufcache *bufcache_new(size_t max_bytes);
/* Unmaps every cached buffer; buffers still out must be released by their holders. */
void bufcache_free(struct bufcache *c);
/*
 * Make buf hold at least size bytes: kept if it already does, else
 * returned to the cache and replaced by a cached or a new buffer.  The
 * content is not kept.  0, or -errno with err set.
 */
int bufcache_get(struct bufcache *c, struct rcow_buf *buf, size_t size, struct rcow_err *err);
/* Give buf back (any kind: a heap buffer is freed); buf is left empty. */
void bufcache_put(struct bufcache *c, struct rcow_buf *buf);
void bufcache_stats(struct bufcache *c, struct bufcache_stats *st);
/*
 * The loop's tick, on its clock (now_ms(): CLOCK_MONOTONIC, ms): unmaps
 * the idle buffers once BUFCACHE_IDLE_MS went by without a get or put;
 * returns when the next tick has work, 0 if never.  One lock round: a
 * tick at a time before the deadline (0) only tells it.
 */
uint64_t bufcache_tick(struct bufcache *c, uint64_t now);

#endif
