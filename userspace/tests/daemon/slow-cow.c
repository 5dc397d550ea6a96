// SPDX-License-Identifier: GPL-2.0
/*
 * slow-cow.c - a slow COW device for the host tests, without a kernel: the
 * test program's own pwrite() (it takes precedence over the C library's
 * for the code linked into the program, librcow's COW writes included)
 * sleeps before writing to the one file descriptor named by
 * slow_cow_set() (its first count writes), and counts the writes in
 * progress on it.  Every other
 * pwrite() goes straight to the system call.  Likewise pread() of at
 * least a given size sleeps first while slow_read_set() says so.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "slow-cow.h"

static atomic_int slow_fd = -1;
static atomic_uint slow_ms;
static atomic_long slow_left;	/* writes still to slow down */
static atomic_int in_progress;
static atomic_ulong writes_done;

void slow_cow_set(int fd, unsigned int ms, long count)
{
	atomic_store(&slow_ms, ms);
	atomic_store(&slow_left, count);
	atomic_store(&slow_fd, fd);
}

int slow_cow_in_progress(void)
{
	return atomic_load(&in_progress);
}

unsigned long slow_cow_writes(void)
{
	return atomic_load(&writes_done);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	ssize_t r;

	/* the fd number may be reused once closed: only the first count writes */
	if (fd < 0 || fd != atomic_load(&slow_fd) || atomic_fetch_sub(&slow_left, 1) <= 0)
		return syscall(SYS_pwrite64, fd, buf, count, offset);
	atomic_fetch_add(&in_progress, 1);
	{
		unsigned int ms = atomic_load(&slow_ms);
		struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	r = syscall(SYS_pwrite64, fd, buf, count, offset);
	atomic_fetch_add(&writes_done, 1);
	atomic_fetch_sub(&in_progress, 1);
	return r;
}

static atomic_uint read_ms;
static atomic_size_t read_min;

void slow_read_set(unsigned int ms, size_t min)
{
	atomic_store(&read_min, min);
	atomic_store(&read_ms, ms);
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
	unsigned int ms = atomic_load(&read_ms);

	if (ms && count >= atomic_load(&read_min)) {
		struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	return syscall(SYS_pread64, fd, buf, count, offset);
}
