// SPDX-License-Identifier: GPL-2.0
/*
 * util.c - remote-cowd's log lines and clocks, shared by the loop, the
 * engine, the sources and the I/O threads.
 *
 * Every clock here is CLOCK_MONOTONIC, timed waits' deadlines included
 * (cond_init_mono(), mono_deadline()): the wall clock may be stepped
 * (NTP, date -s), and a deadline on it would then stretch a wait by the
 * step backward (an hour's stall for an hour) or cut it short forward.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "daemon.h"

/*
 * One line, written with one stdio call: the pool threads (writers, file
 * readers) log too, and stdio locks the stream per call.
 */
static void vlogmsg(const char *fmt, va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, PROG ": %s\n", line);
}

void logmsg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlogmsg(fmt, ap);
	va_end(ap);
}

void vlog(struct daemon *d, int level, const char *fmt, ...)
{
	va_list ap;

	if (d->opt.verbose < level)
		return;
	va_start(ap, fmt);
	vlogmsg(fmt, ap);
	va_end(ap);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t now_ms(void)
{
	return now_ns() / 1000000ull;
}

int cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t a;
	int r = pthread_condattr_init(&a);

	if (r)
		return -r;
	r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	if (!r)
		r = pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
	return -r;
}

struct timespec mono_deadline(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}
