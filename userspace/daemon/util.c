// SPDX-License-Identifier: GPL-2.0
/*
 * util.c - remote-cowd's log lines and clocks, shared by the loop, the
 * engine, the sources and the I/O threads.
 */
#define _GNU_SOURCE
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
