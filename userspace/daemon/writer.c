// SPDX-License-Identifier: GPL-2.0
/*
 * writer.c - remote-cowd's writes into the COW devices, off the poll loop.
 *
 * Every fetched extent is written into its COW device with O_DIRECT before
 * FILL_DONE.  A local disk that is busy, or a device-mapper stack under
 * the COW device, can take long over one write; done in the loop, that
 * held up the faults of every other device and every NBD connection.  So
 * a pool of WRITERS threads (pool.c) does the writes:
 *
 *   engine_xfer_done(): data read -> writer_submit() -> a writer thread:
 *     engine_write_extent() (the xfer and its device's fixed fields only)
 *   writer_reap(), when the pool's eventfd is readable:
 *     -> engine_write_done() -> FILL_DONE when the fault is complete
 *
 * Only the loop thread touches the engine.  Everything here but the pool
 * is the loop thread's own: the ready list, backlog and the per-device
 * count of writes in flight (dev->writes).
 *
 * Ordering.  A device that goes away (removed, or replaced by a table
 * reload over the same COW device) keeps its writes in progress; the
 * engine holds back every write of a device on the same COW device until
 * they are over (engine.c, cow_busy()), so that a fill of the old device
 * can never land after the new device's fill of the same extent.  Nothing
 * waits for them in the loop: a COW device that hangs stalls only itself.
 *
 * Backpressure.  Sources stop issuing reads while WRITER_MAX_BACKLOG
 * writes are waiting (writer_full()), so a slow COW device cannot make
 * fetched data pile up in memory; and a device with DEV_MAX_WRITES writes
 * waiting gets no new reads (engine_next()), so it alone stops.
 *
 * Fair share.  A device has at most WRITER_PER_DEV writes with the
 * threads; its others wait here (waiting) until one of its own is over.
 * A COW device that takes seconds per write thus holds at most that many
 * of the WRITERS threads, and the other devices' writes go on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define WRITERS 8
#define WRITER_PER_DEV (WRITERS / 2)
#define WRITER_MAX_BACKLOG 64

struct writer {
	struct pool *pool;
	unsigned int backlog;		/* submitted, not yet finished */
	struct xfer *ready, *ready_tail; /* written, not yet finished */
	struct xqueue waiting;		/* their device has WRITER_PER_DEV with the threads */
};

static void write_one(void *ctx, struct xfer *x)
{
	(void)ctx;
	x->err = engine_write_extent(x);
}

int writer_start(struct daemon *d)
{
	struct writer *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	r = pool_start(&w->pool, "COW writer", WRITERS, write_one, NULL);
	if (r) {
		free(w);
		return r;
	}
	d->writer = w;
	return 0;
}

/*
 * Stop and free the writers.  With writes still in flight (a COW device
 * that does not answer) the threads are left to the process's exit rather
 * than waited for.
 */
void writer_stop(struct daemon *d)
{
	struct writer *w = d->writer;

	if (!w)
		return;
	pool_stop(w->pool, w->backlog == 0);
	if (w->backlog)
		return;
	free(w);
	d->writer = NULL;
}

void writer_submit(struct daemon *d, struct xfer *x)
{
	struct writer *w = d->writer;

	struct device *dev = x->fault->dev;

	dev->writes++;
	w->backlog++;
	if (dev->pool_writes >= WRITER_PER_DEV) {
		xq_push(&w->waiting, x);
		return;
	}
	dev->pool_writes++;
	pool_submit(w->pool, x);
}

/* Writes waiting for their device's share: start those now allowed, oldest first. */
static void start_waiting(struct writer *w)
{
	struct xfer *x, *next;

	for (x = w->waiting.head; x; x = next) {
		struct device *dev = x->fault->dev;

		next = x->next;
		if (dev->pool_writes >= WRITER_PER_DEV)
			continue;
		xq_del(&w->waiting, x);
		dev->pool_writes++;
		pool_submit(w->pool, x);
	}
}

int writer_fd(const struct daemon *d)
{
	return pool_fd(d->writer->pool);
}

bool writer_full(const struct daemon *d)
{
	return d->writer->backlog >= WRITER_MAX_BACKLOG;
}

unsigned int writer_backlog(const struct daemon *d)
{
	return d->writer->backlog;
}

/* Move the writes the pool finished to the ready list: their data has landed. */
static void collect(struct writer *w)
{
	struct xfer *x = pool_collect(w->pool), *next;

	for (; x; x = next) {
		next = x->done_next;
		x->done_next = NULL;
		x->fault->dev->writes--;
		x->fault->dev->pool_writes--;
		if (w->ready_tail)
			w->ready_tail->done_next = x;
		else
			w->ready = x;
		w->ready_tail = x;
	}
}

/* Finished writes to the engine, which answers their faults. */
void writer_reap(struct daemon *d)
{
	struct writer *w = d->writer;
	struct xfer *x;

	if (!w->backlog)
		return;		/* the common idle case: no syscall */
	collect(w);
	if (w->waiting.n)
		start_waiting(w);
	while ((x = w->ready)) {
		w->ready = x->done_next;
		if (!w->ready)
			w->ready_tail = NULL;
		w->backlog--;
		engine_write_done(d, x);
	}
}
