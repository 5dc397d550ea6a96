// SPDX-License-Identifier: GPL-2.0
/*
 * loop.c - one turn of remote-cowd's poll loop, without the netlink
 * socket and signals (main.c brings those as extra fds), so that the host
 * tests drive the same loop with a fake kernel side.
 *
 * The poll set has no fixed size: every source adds what it needs (an NBD
 * base one fd per connection, a file base its readers' eventfd), into
 * vectors that grow with the number of bases.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "daemon.h"
#include "vector.h"

DEFINE_VECTOR(pollfd_vec, struct pollfd);

struct slot {
	struct src *s;
	size_t start;
	int n;
};

DEFINE_VECTOR(slot_vec, struct slot);

/* Most poll fds one source may ask for at once (NBD: one per connection). */
#define SRC_MAX_FDS 32

static int min_timeout(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

/*
 * Poll fds[0..nfixed) plus every source's fds; then the sources' events.
 * The vectors live only for the call: a turn is cheap next to poll().
 */
static int poll_all(struct daemon *d, struct pollfd_vec *pv, int timeout_ms)
{
	struct slot_vec sv = { 0 };
	size_t cstart = 0;
	int r = 0, cn = 0;

	for (struct src *s = d->srcs; s; s = s->next) {
		struct slot sl = { s, pv->len, 0 };

		if (pollfd_vec_reserve(pv, SRC_MAX_FDS) || slot_vec_push(&sv, sl)) {
			/* out of memory: skip this turn's fds rather than fail */
			logmsg("out of memory building the poll set; retrying");
			timeout_ms = min_timeout(timeout_ms, 100);
			break;
		}
		sv.ptr[sv.len - 1].n = s->ops->pollfds(s, pv->ptr + pv->len, SRC_MAX_FDS);
		pv->len += (size_t)sv.ptr[sv.len - 1].n;
	}
	/* snapshot commits: their pools' eventfds and target connections */
	cstart = pv->len;
	if (d->commits && !pollfd_vec_reserve(pv, commit_max_fds(d))) {
		cn = commit_pollfds(d, pv->ptr + pv->len, (int)commit_max_fds(d));
		pv->len += (size_t)cn;
	}
	if (poll(pv->ptr, (nfds_t)pv->len, timeout_ms) < 0) {
		r = errno == EINTR ? 0 : -errno;
		if (r)
			logmsg("poll failed: %s", strerror(-r));
		goto out;
	}
	/* a source that loses its last device meanwhile moves to dead_srcs: still valid */
	for (size_t i = 0; i < sv.len; i++)
		if (sv.ptr[i].n)
			sv.ptr[i].s->ops->events(sv.ptr[i].s, pv->ptr + sv.ptr[i].start,
						 sv.ptr[i].n);
	if (cn)
		commit_events(d, pv->ptr + cstart, cn);
out:
	slot_vec_free(&sv);
	return r;
}

int loop_turn(struct daemon *d, struct pollfd *extra, unsigned int nextra, int timeout_ms)
{
	struct pollfd_vec pv = { 0 };
	uint64_t now, next = 0, t;
	struct src *s;
	int r;

	d->st.turns++;
	writer_reap(d);
	engine_run(d);
	commit_run(d);
	mig_run(d);
	now = now_ms();
	for (s = d->srcs; s; s = s->next) {
		s->ops->tick(s, now);
		/* no new reads while the COW writes lag behind */
		if (!writer_full(d))
			s->ops->pump(s);
	}
	engine_reap_sources(d);

	now = now_ms();
	for (s = d->srcs; s; s = s->next) {
		t = s->ops->timer(s, now);
		if (t && (!next || t < next))
			next = t;
	}
	t = engine_timer(d, now);
	if (t && (!next || t < next))
		next = t;
	t = commit_timer(d, now);
	if (t && (!next || t < next))
		next = t;
	t = mig_timer(d, now);
	if (t && (!next || t < next))
		next = t;
	t = bufcache_tick(d->bufs, now);
	if (t && (!next || t < next))
		next = t;
	if (next)
		timeout_ms = min_timeout(timeout_ms, next <= now ? 0 : (int)(next - now));

	if (pollfd_vec_reserve(&pv, 2 + nextra)) {
		logmsg("out of memory building the poll set");
		return -ENOMEM;
	}
	pv.ptr[pv.len++] = (struct pollfd){ .fd = writer_fd(d), .events = POLLIN };
	for (unsigned int i = 0; i < nextra; i++) {
		extra[i].revents = 0;
		pv.ptr[pv.len++] = extra[i];
	}
	/* migration jobs' eventfd: handled by mig_run() at the next turn */
	pv.len += (size_t)mig_pollfd(d, pv.ptr + pv.len);
	r = poll_all(d, &pv, timeout_ms);
	for (unsigned int i = 0; i < nextra; i++)
		extra[i].revents = pv.ptr[1 + i].revents;
	pollfd_vec_free(&pv);
	engine_reap_sources(d);
	return r;
}

int loop_poll_sources(struct daemon *d, int timeout_ms)
{
	struct pollfd_vec pv = { 0 };
	int r;

	if (pollfd_vec_push(&pv, (struct pollfd){ .fd = writer_fd(d), .events = POLLIN }))
		return -ENOMEM;
	r = poll_all(d, &pv, timeout_ms);
	pollfd_vec_free(&pv);
	writer_reap(d);
	engine_reap_sources(d);
	return r;
}
