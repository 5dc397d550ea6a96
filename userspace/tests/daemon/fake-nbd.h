/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fake-nbd.c: a tiny NBD server on a Unix socket, in a thread of the
 * test, that can answer reads with malformed structured replies (what
 * nbdkit never does).  Fixed newstyle handshake, NBD_OPT_GO with the
 * export size, no meta contexts, no multi-conn; NBD_CMD_READ and
 * NBD_CMD_DISC only.  One connection at a time.
 */
#ifndef RCOWD_FAKE_NBD_H
#define RCOWD_FAKE_NBD_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum fake_nbd_mode {
	FNBD_FULL,		/* one data chunk for the whole read */
	FNBD_HALF,		/* a data chunk for the first half only, then done */
	FNBD_DUP,		/* the first half twice (as many bytes as asked), then done */
	/*
	 * Out of order: the 2nd half of every 64 KiB, then a hole for their
	 * 1st quarters, then data for their 2nd quarters, each pass from the
	 * last 64 KiB back (for reads from holes_from on).
	 */
	FNBD_SPLIT,
};

struct fake_nbd {
	char path[PATH_MAX];
	uint64_t size;
	bool structured;		/* agree to NBD_OPT_STRUCTURED_REPLY */
	uint64_t bad_from;		/* reads from here on are answered in mode */
	uint64_t holes_from;		/* the export is zero in every 1st quarter of 64 KiB from here */
	atomic_int mode;		/* enum fake_nbd_mode */
	atomic_uint reads, bad_reads, split_reads;
	atomic_bool stop;
	int lfd;
	bool running;
	pthread_t th;
};

/* The export's content: a pattern, but zeroes in the 1st quarter of every 64 KiB from holes_from. */
uint8_t fake_nbd_byte(const struct fake_nbd *f, uint64_t off);
/* Listen on f->path and serve in a thread; 0 or -1. */
int fake_nbd_start(struct fake_nbd *f);
void fake_nbd_stop(struct fake_nbd *f);

#endif
