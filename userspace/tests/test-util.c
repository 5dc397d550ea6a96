// SPDX-License-Identifier: GPL-2.0
/*
 * test-util.c - remote-cowd's clocks for timed waits (daemon/util.c):
 * mono_deadline() is on CLOCK_MONOTONIC, and a condition variable from
 * cond_init_mono() takes such a deadline - a wait of 100 ms lasts about
 * that.  (A default condvar measures the deadline on CLOCK_REALTIME:
 * already past, it would not wait at all.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "daemon.h"
#include "tap.h"

void test_util(struct tap *t)
{
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	struct timespec now, ts = mono_deadline(1500);
	pthread_cond_t c;
	uint64_t t0;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &now);
	r = ts.tv_sec >= now.tv_sec + 1 && ts.tv_sec <= now.tv_sec + 2 && ts.tv_nsec >= 0 &&
	    ts.tv_nsec < 1000000000;
	tap_ok(t, r, "mono_deadline(1500) is 1.5 s ahead on CLOCK_MONOTONIC (%lld.%09ld, now %lld.%09ld)",
	       (long long)ts.tv_sec, ts.tv_nsec, (long long)now.tv_sec, now.tv_nsec);
	if (!r) {
		tap_skip(t, "the deadline is wrong", "a timed wait");
		return;
	}
	if (cond_init_mono(&c)) {
		tap_ok(t, false, "cond_init_mono");
		return;
	}
	pthread_mutex_lock(&m);
	t0 = now_ms();
	ts = mono_deadline(100);
	do
		r = pthread_cond_timedwait(&c, &m, &ts);
	while (!r);
	t0 = now_ms() - t0;
	pthread_mutex_unlock(&m);
	tap_ok(t, r == ETIMEDOUT && t0 >= 90 && t0 < 10000,
	       "cond_init_mono's condvar with mono_deadline(100): times out after %llu ms",
	       (unsigned long long)t0);
	pthread_cond_destroy(&c);
}
