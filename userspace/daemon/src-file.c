// SPDX-License-Identifier: GPL-2.0
/*
 * src-file.c - remote-cowd source for file:// bases: a local image file or
 * block device, read with plain pread through librcow's file operations
 * (holes of sparse files found with SEEK_DATA/SEEK_HOLE are not read).
 *
 * Local reads are done inline in the loop, a bounded number per turn so
 * that netlink and NBD sources keep their turn.  A base that cannot be
 * opened (not there yet: a mount or device that comes later) is retried
 * with the same capped exponential backoff as a network base; its faults
 * wait meanwhile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "rcow/base.h"

#define PER_TURN 32

struct file_src {
	struct rcow_base *base;
	struct rcow_extent_list scratch;
	struct rcow_backoff bo;
	uint64_t retry_at, down_since;
};

static void try_open(struct src *s, uint64_t now)
{
	struct file_src *fs = s->priv;
	struct rcow_err err = { 0 };
	uint32_t delay;

	if (rcow_base_open(s->uri, &fs->base, &err) == 0) {
		s->size = fs->base->size;
		s->size_known = true;
		if (fs->bo.failures)
			logmsg("base %s: opened after %.1f s", s->uri,
			       (double)(now - fs->down_since) / 1000.0);
		else
			vlog(s->d, 1, "base %s: opened, %llu bytes", s->uri,
			     (unsigned long long)s->size);
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
	s->priv = fs;
	rcow_backoff_init(&fs->bo, s->pol.retry_initial_ms, s->pol.retry_max_ms);
	try_open(s, now_ms());
	return 0;
}

static void file_close(struct src *s)
{
	struct file_src *fs = s->priv;

	rcow_base_close(fs->base);
	rcow_extent_list_free(&fs->scratch);
	free(fs);
	s->priv = NULL;
}

static int file_pollfds(struct src *s, struct pollfd *p, int max)
{
	(void)s;
	(void)p;
	(void)max;
	return 0;
}

static void file_events(struct src *s, const struct pollfd *p, int n)
{
	(void)s;
	(void)p;
	(void)n;
}

static uint64_t file_timer(struct src *s, uint64_t now)
{
	struct file_src *fs = s->priv;

	(void)now;
	if (!fs->base)
		return fs->retry_at;
	/* more queued work than one turn handles: come back at once */
	for (int c = 0; c < XC_NR; c++)
		if (s->q[c].n)
			return 1;
	return 0;
}

static void file_tick(struct src *s, uint64_t now)
{
	struct file_src *fs = s->priv;

	if (!fs->base && now >= fs->retry_at)
		try_open(s, now);
}

static void file_pump(struct src *s)
{
	struct file_src *fs = s->priv;
	struct rcow_err err = { 0 };
	int done = 0;

	if (!fs->base)
		return;
	for (int c = 0; c < XC_NR && done < PER_TURN; c++) {
		struct xfer *x;

		while ((x = s->q[c].head) && done < PER_TURN) {
			int r;

			xq_del(&s->q[c], x);
			x->state = X_ACTIVE;
			done++;
			r = rcow_buf_reserve(&x->buf, x->io_len, &err);
			if (!r) {
				memset(x->buf.p, 0, x->io_len);
				r = rcow_base_read_sparse(fs->base, x->buf.p, (size_t)x->len, x->off,
							  &fs->scratch, &x->bytes_read,
							  &x->bytes_zero, &err);
			}
			if (r) {
				logmsg("base %s: %s", s->uri, err.msg);
				engine_xfer_done(s, x, -r);
				continue;
			}
			x->zero_all = x->bytes_read == 0;
			engine_xfer_done(s, x, 0);
		}
	}
}

static unsigned int file_in_flight(const struct src *s)
{
	(void)s;
	return 0;
}

static bool file_ready(const struct src *s)
{
	const struct file_src *fs = s->priv;

	return fs->base != NULL;
}

static bool file_quiesce(struct src *s)
{
	(void)s;
	return true;
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
