// SPDX-License-Identifier: GPL-2.0
/*
 * src-file.c - remote-cowd source for file:// bases: a local image file or
 * block device, read with plain pread through librcow's file operations
 * (holes of sparse files found with SEEK_DATA/SEEK_HOLE are not read).
 *
 * "Local" is not always fast: the file may sit on NFS, on a disk that is
 * failing and retrying, or on a device-mapper stack of its own.  So the
 * reads never run in the daemon's loop, where one slow read would stall
 * every other device and base on the host.  A small pool of reader
 * threads does them:
 *
 *   loop thread                          reader threads (FILE_READERS)
 *   pump: queued xfer -> todo  ------>   take from todo, read it with
 *         (buffer reserved here)         their own rcow_base handle
 *   events: eventfd readable   <------   put on done, bump the eventfd
 *         -> engine_xfer_done()
 *
 * Only the loop thread touches the engine, the source queues and the
 * xfers' owners; readers touch an xfer only between taking it from todo
 * and putting it on done, and nothing else of the daemon.  lock guards
 * todo, done, stop and in_flight.  Every reader has its own handle
 * (librcow handles are one-thread) and its own hole-map scratch list.
 *
 * A base that cannot be opened (not there yet: a mount or device that
 * comes later) is retried with the same capped exponential backoff as a
 * network base; its faults wait meanwhile.  The readers start once it is
 * open.  A source is closed only when no device uses it, so no xfer is in
 * flight then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon.h"
#include "rcow/base.h"

#define FILE_READERS 4
/* Reads handed to the readers at once (the rest wait in the queues). */
#define FILE_MAX_IN_FLIGHT (4 * FILE_READERS)

struct file_src;

struct reader {
	struct file_src *fs;
	pthread_t thread;
	struct rcow_base *base;
	struct rcow_extent_list scratch;
};

struct file_src {
	struct src *s;			/* for the URI in log lines (read-only) */
	struct reader r[FILE_READERS];
	unsigned int nreaders;		/* threads running */
	bool open;			/* every reader has a handle */
	uint64_t size;
	struct rcow_backoff bo;
	uint64_t retry_at, down_since;
	int efd;			/* eventfd: readers -> loop */

	pthread_mutex_t lock;
	pthread_cond_t cond;		/* todo not empty, or stop */
	struct xqueue todo;		/* lock */
	struct xfer *done;		/* lock; linked by done_next */
	bool stop;			/* lock */
	unsigned int in_flight;		/* lock; handed to readers, not yet reaped */
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
	fs->size = fs->r[0].base->size;
	return 0;
}

static void read_one(struct reader *rd, struct xfer *x)
{
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

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct file_src *fs = rd->fs;
	const uint64_t one = 1;

	pthread_mutex_lock(&fs->lock);
	for (;;) {
		struct xfer *x;

		while (!fs->stop && !fs->todo.head)
			pthread_cond_wait(&fs->cond, &fs->lock);
		if (fs->stop)
			break;
		x = fs->todo.head;
		xq_del(&fs->todo, x);
		pthread_mutex_unlock(&fs->lock);

		read_one(rd, x);

		pthread_mutex_lock(&fs->lock);
		x->done_next = fs->done;
		fs->done = x;
		/* cannot fail short of a bad fd: the counter never nears its limit */
		if (write(fs->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			logmsg("base %s: cannot wake the loop: %s", fs->s->uri, strerror(errno));
	}
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

static void stop_readers(struct file_src *fs)
{
	pthread_mutex_lock(&fs->lock);
	fs->stop = true;
	pthread_cond_broadcast(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
	for (unsigned int i = 0; i < fs->nreaders; i++)
		pthread_join(fs->r[i].thread, NULL);
	fs->nreaders = 0;
}

static int start_readers(struct file_src *fs)
{
	for (int i = 0; i < FILE_READERS; i++) {
		int r;

		fs->r[i].fs = fs;
		r = pthread_create(&fs->r[i].thread, NULL, reader_main, &fs->r[i]);
		if (r) {
			stop_readers(fs);
			return -r;
		}
		fs->nreaders++;
	}
	return 0;
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
		fs->open = true;
		s->size = fs->size;
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
	fs->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fs->efd < 0) {
		int e = errno;

		free(fs);
		return -e;
	}
	pthread_mutex_init(&fs->lock, NULL);
	pthread_cond_init(&fs->cond, NULL);
	s->priv = fs;
	rcow_backoff_init(&fs->bo, s->pol.retry_initial_ms, s->pol.retry_max_ms);
	try_open(s, now_ms());
	return 0;
}

static void file_close(struct src *s)
{
	struct file_src *fs = s->priv;

	stop_readers(fs);
	close_handles(fs);
	for (int i = 0; i < FILE_READERS; i++)
		rcow_extent_list_free(&fs->r[i].scratch);
	pthread_cond_destroy(&fs->cond);
	pthread_mutex_destroy(&fs->lock);
	close(fs->efd);
	free(fs);
	s->priv = NULL;
}

static int file_pollfds(struct src *s, struct pollfd *p, int max)
{
	struct file_src *fs = s->priv;

	if (max < 1)
		return 0;
	p[0].fd = fs->efd;
	p[0].events = POLLIN;
	return 1;
}

/* The readers' finished xfers, to the engine (loop thread). */
static void file_events(struct src *s, const struct pollfd *p, int n)
{
	struct file_src *fs = s->priv;
	struct xfer *x, *next, *rev;
	uint64_t v;

	if (n < 1 || !(p[0].revents & POLLIN))
		return;
	if (read(fs->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		logmsg("base %s: reading the eventfd: %s", s->uri, strerror(errno));
	pthread_mutex_lock(&fs->lock);
	x = fs->done;
	fs->done = NULL;
	for (struct xfer *y = x; y; y = y->done_next)
		fs->in_flight--;
	pthread_mutex_unlock(&fs->lock);
	/* the list is newest first: complete in the order the reads ended */
	for (rev = NULL; x; x = next) {
		next = x->done_next;
		x->done_next = rev;
		rev = x;
	}
	for (x = rev; x; x = next) {
		next = x->done_next;
		engine_xfer_done(s, x, x->err);
	}
}

static uint64_t file_timer(struct src *s, uint64_t now)
{
	struct file_src *fs = s->priv;

	(void)now;
	return fs->open ? 0 : fs->retry_at;
}

static void file_tick(struct src *s, uint64_t now)
{
	struct file_src *fs = s->priv;

	if (!fs->open && now >= fs->retry_at)
		try_open(s, now);
}

/* Hand queued xfers to the readers, guest faults first (loop thread). */
static void file_pump(struct src *s)
{
	struct file_src *fs = s->priv;
	struct rcow_err err = { 0 };
	unsigned int room;
	bool handed = false;

	if (!fs->open)
		return;
	pthread_mutex_lock(&fs->lock);
	room = FILE_MAX_IN_FLIGHT - fs->in_flight;
	pthread_mutex_unlock(&fs->lock);
	for (int c = 0; c < XC_NR && room; c++) {
		struct xfer *x;

		while ((x = s->q[c].head) && room) {
			xq_del(&s->q[c], x);
			x->state = X_ACTIVE;
			if (rcow_buf_reserve(&x->buf, x->io_len, &err)) {
				logmsg("base %s: %s", s->uri, err.msg);
				engine_xfer_done(s, x, ENOMEM);
				continue;
			}
			pthread_mutex_lock(&fs->lock);
			xq_push(&fs->todo, x);
			fs->in_flight++;
			pthread_mutex_unlock(&fs->lock);
			room--;
			handed = true;
		}
	}
	if (handed) {
		pthread_mutex_lock(&fs->lock);
		pthread_cond_broadcast(&fs->cond);
		pthread_mutex_unlock(&fs->lock);
	}
}

static unsigned int file_in_flight(const struct src *s)
{
	struct file_src *fs = s->priv;
	unsigned int n;

	pthread_mutex_lock(&fs->lock);
	n = fs->in_flight;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

static bool file_ready(const struct src *s)
{
	const struct file_src *fs = s->priv;

	return fs->open;
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
