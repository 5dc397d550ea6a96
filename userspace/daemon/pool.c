// SPDX-License-Identifier: GPL-2.0
/*
 * pool.c - the few threads that do remote-cowd's blocking I/O for its loop.
 *
 * The loop thread submits xfers; a pool thread takes one, runs the pool's
 * function on it (with that thread's own context: a file source gives
 * each reader its own base handle), puts it on the done list and bumps an
 * eventfd.  The loop polls the eventfd and collects the finished xfers in
 * the order they finished.  Users: writer.c (COW writes) and src-file.c
 * (reads of file:// bases).
 *
 * lock guards todo, done and stop; nothing else is shared.  A thread owns
 * an xfer between taking it from todo and putting it on done; before and
 * after, the loop thread does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon.h"

#define POOL_MAX_THREADS 8
#define POOL_STACK_SIZE (1u << 20)

struct pool;

struct pool_thread {
	struct pool *p;
	pthread_t th;
	void *ctx;
};

struct pool {
	const char *name;		/* for log lines */
	pool_fn fn;
	struct pool_thread t[POOL_MAX_THREADS];
	unsigned int nthreads;
	int efd;

	pthread_mutex_t lock;
	pthread_cond_t cond;		/* todo not empty, or stop */
	struct xqueue todo;		/* lock */
	struct xfer *done;		/* lock; newest first, linked by done_next */
	bool stop;			/* lock */
};

static void *pool_main(void *arg)
{
	struct pool_thread *t = arg;
	struct pool *p = t->p;
	const uint64_t one = 1;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct xfer *x;

		while (!p->stop && !p->todo.head)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		x = p->todo.head;
		xq_del(&p->todo, x);
		pthread_mutex_unlock(&p->lock);

		p->fn(t->ctx, x);

		pthread_mutex_lock(&p->lock);
		x->done_next = p->done;
		p->done = x;
		/* only a bad fd fails: the counter never nears its limit */
		if (write(p->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			logmsg("%s: cannot wake the loop: %s", p->name, strerror(errno));
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int pool_start(struct pool **out, const char *name, unsigned int nthreads, pool_fn fn,
	       void *const *ctx)
{
	pthread_attr_t attr;
	struct pool *p;
	int r;

	if (nthreads < 1 || nthreads > POOL_MAX_THREADS)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->name = name;
	p->fn = fn;
	p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->efd < 0) {
		r = -errno;
		free(p);
		return r;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	/*
	 * Small stacks: the daemon locks all its memory (mlockall), so each
	 * thread's stack is resident; the default 8 MiB would be wasted.
	 */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, POOL_STACK_SIZE);
	for (unsigned int i = 0; i < nthreads; i++) {
		p->t[i].p = p;
		p->t[i].ctx = ctx ? ctx[i] : NULL;
		r = pthread_create(&p->t[i].th, &attr, pool_main, &p->t[i]);
		if (r) {
			pthread_attr_destroy(&attr);
			pool_stop(p, true);
			return -r;
		}
		p->nthreads++;
	}
	pthread_attr_destroy(&attr);
	*out = p;
	return 0;
}

void pool_stop(struct pool *p, bool wait)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (!wait)
		return;		/* threads busy on a device that does not answer */
	for (unsigned int i = 0; i < p->nthreads; i++)
		pthread_join(p->t[i].th, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	close(p->efd);
	free(p);
}

void pool_submit(struct pool *p, struct xfer *x)
{
	pthread_mutex_lock(&p->lock);
	xq_push(&p->todo, x);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

int pool_fd(const struct pool *p)
{
	return p->efd;
}

/*
 * The eventfd is read under the lock, with the done list taken in the same
 * critical section: threads add to done and bump the eventfd under the
 * lock too, so the eventfd is readable exactly while done is not empty.
 * (Read before the lock, a completion landing in between left it
 * readable with nothing to collect, and the loop spun on it.)
 */
struct xfer *pool_collect(struct pool *p)
{
	struct xfer *x, *next, *first = NULL;
	uint64_t v;
	int e = 0;

	pthread_mutex_lock(&p->lock);
	if (read(p->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		e = errno;
	x = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->lock);
	if (e)
		logmsg("%s: reading its eventfd: %s", p->name, strerror(e));
	for (; x; x = next) {		/* newest first: reverse */
		next = x->done_next;
		x->done_next = first;
		first = x;
	}
	return first;
}
