// SPDX-License-Identifier: GPL-2.0
/*
 * src-file.c - remote-cowd source for file:// bases: a local image file or
 * block device, read with plain pread through librcow's file operations
 * (holes of sparse files found with SEEK_DATA/SEEK_HOLE are not read).
 *
 * "Local" is not always fast: the file may sit on NFS, on a disk that is
 * failing and retrying, or on a device-mapper stack of its own.  So the
 * reads never run in the daemon's loop, where one slow read would stall
 * every other device and base on the host: a pool of FILE_READERS threads
 * (pool.c) does them, each with its own librcow handle (handles are
 * one-thread) and its own hole-map scratch list.  The loop reserves an
 * xfer's buffer, submits it (guest faults first, at most
 * FILE_MAX_IN_FLIGHT at once) and gives the finished ones to the engine
 * when the pool's eventfd is readable.  in_flight is the loop's own.
 *
 * A base that cannot be opened (not there yet: a mount or device that
 * comes later) is retried with the same capped exponential backoff as a
 * network base; its faults wait meanwhile.  The readers start once it is
 * open.  A source is closed only when no device uses it, so no xfer is in
 * flight then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "rcow/base.h"

#define FILE_READERS 4
/* Reads handed to the readers at once (the rest wait in the queues). */
#define FILE_MAX_IN_FLIGHT (4 * FILE_READERS)

struct file_src;

struct reader {
	struct file_src *fs;
	struct rcow_base *base;
	struct rcow_extent_list scratch;
};

struct file_src {
	struct src *s;			/* for the URI in log lines (read-only) */
	struct reader r[FILE_READERS];
	struct pool *pool;		/* NULL until the base is open */
	struct rcow_backoff bo;
	uint64_t retry_at, down_since;
	unsigned int in_flight;		/* submitted, not yet collected */
};

static void close_handles(struct file_src *fs)
{
	for (int i = 0; i < FILE_READERS; i++) {
		rcow_base_close(fs->r[i].base);
		fs->r[i].base = NULL;
	}
}

/* Open one handle per reader; all or none. */
static int open_handles(struct file_src *fs, const char *uri, struct rcow_err *err)
{
	for (int i = 0; i < FILE_READERS; i++) {
		int r = rcow_base_open(uri, &fs->r[i].base, err);

		if (r) {
			close_handles(fs);
			return r;
		}
	}
	return 0;
}

/* In a reader thread: the xfer and the reader's own handle only. */
static void read_one(void *ctx, struct xfer *x)
{
	struct reader *rd = ctx;
	struct rcow_err err = { 0 };
	int r;

	memset(x->buf.p, 0, x->io_len);
	r = rcow_base_read_sparse(rd->base, x->buf.p, (size_t)x->len, x->off, &rd->scratch,
				  &x->bytes_read, &x->bytes_zero, &err);
	if (r) {
		/* logmsg() writes its line with one stdio call: safe from any thread */
		logmsg("base %s: %s", rd->fs->s->uri, err.msg);
		x->err = -r;
	} else {
		x->err = 0;
		x->zero_all = x->bytes_read == 0;
	}
}

static int start_readers(struct file_src *fs)
{
	void *ctx[FILE_READERS];

	for (int i = 0; i < FILE_READERS; i++) {
		fs->r[i].fs = fs;
		ctx[i] = &fs->r[i];
	}
	return pool_start(&fs->pool, "file reader", FILE_READERS, read_one, ctx);
}

static void try_open(struct src *s, uint64_t now)
{
	struct file_src *fs = s->priv;
	struct rcow_err err = { 0 };
	uint32_t delay;
	int r;

	r = open_handles(fs, s->uri, &err);
	if (!r) {
		r = start_readers(fs);
		if (r) {
			close_handles(fs);
			rcow_err_set(&err, -r, "cannot start reader threads: %s", strerror(-r));
		}
	}
	if (!r) {
		s->size = fs->r[0].base->size;
		s->size_known = true;
		if (fs->bo.failures)
			logmsg("base %s: opened after %.1f s", s->uri,
			       (double)(now - fs->down_since) / 1000.0);
		else
			vlog(s->d, 1, "base %s: opened, %llu bytes, %d reader threads", s->uri,
			     (unsigned long long)s->size, FILE_READERS);
		rcow_backoff_reset(&fs->bo);
		return;
	}
	if (!fs->bo.failures)
		fs->down_since = now;
	delay = rcow_backoff_fail(&fs->bo);
	fs->retry_at = now + delay;
	logmsg("base %s: %s; retrying in %.1f s", s->uri, err.msg, delay / 1000.0);
}

static int file_open(struct src *s)
{
	struct file_src *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return -ENOMEM;
	fs->s = s;
	s->priv = fs;
	rcow_backoff_init(&fs->bo, s->pol.retry_initial_ms, s->pol.retry_max_ms);
	try_open(s, now_ms());
	return 0;
}

static void file_close(struct src *s)
{
	struct file_src *fs = s->priv;

	pool_stop(fs->pool, true);
	close_handles(fs);
	for (int i = 0; i < FILE_READERS; i++)
		rcow_extent_list_free(&fs->r[i].scratch);
	free(fs);
	s->priv = NULL;
}

static int file_pollfds(struct src *s, struct pollfd *p, int max)
{
	struct file_src *fs = s->priv;

	if (!fs->pool || max < 1)
		return 0;
	p[0].fd = pool_fd(fs->pool);
	p[0].events = POLLIN;
	return 1;
}

/* The readers' finished xfers, to the engine. */
static void file_events(struct src *s, const struct pollfd *p, int n)
{
	struct file_src *fs = s->priv;
	struct xfer *x, *next;

	if (n < 1 || !(p[0].revents & POLLIN))
		return;
	for (x = pool_collect(fs->pool); x; x = next) {
		next = x->done_next;
		fs->in_flight--;
		engine_read_over(x);
		engine_xfer_done(s, x, x->err);
	}
}

static uint64_t file_timer(struct src *s, uint64_t now)
{
	struct file_src *fs = s->priv;

	(void)now;
	return fs->pool ? 0 : fs->retry_at;
}

static void file_tick(struct src *s, uint64_t now)
{
	struct file_src *fs = s->priv;

	if (!fs->pool && now >= fs->retry_at)
		try_open(s, now);
}

static bool file_usable(struct src *s, const struct xfer *x)
{
	(void)s, (void)x;
	return true;
}

/* Hand queued xfers to the readers, guest faults first, devices in turn. */
static void file_pump(struct src *s)
{
	struct file_src *fs = s->priv;
	struct rcow_err err = { 0 };

	if (!fs->pool)
		return;
	for (int c = 0; c < XC_NR; c++) {
		struct xfer *x;

		while (fs->in_flight < FILE_MAX_IN_FLIGHT &&
		       (x = engine_next(s, (enum xclass)c, file_usable))) {
			int r;

			xq_del(&s->q[c], x);
			x->state = X_ACTIVE;
			x->t_issued = now_ns() / 1000;
			r = bufcache_get(s->d->bufs, &x->buf, x->io_len, &err);
			if (r) {
				logmsg("base %s: %s", s->uri, err.msg);
				engine_xfer_done(s, x, -r);
				continue;
			}
			fs->in_flight++;
			engine_issued(s, x);
			pool_submit(fs->pool, x);
		}
	}
}

static unsigned int file_in_flight(const struct src *s)
{
	const struct file_src *fs = s->priv;

	return fs->in_flight;
}

static bool file_ready(const struct src *s)
{
	const struct file_src *fs = s->priv;

	return fs->pool != NULL;
}

/* Exiting: done once the readers have given back every xfer. */
static bool file_quiesce(struct src *s)
{
	return file_in_flight(s) == 0;
}

const struct src_ops src_file_ops = {
	.name = "file",
	.open = file_open,
	.close = file_close,
	.pollfds = file_pollfds,
	.events = file_events,
	.timer = file_timer,
	.tick = file_tick,
	.pump = file_pump,
	.in_flight = file_in_flight,
	.ready = file_ready,
	.quiesce = file_quiesce,
};
