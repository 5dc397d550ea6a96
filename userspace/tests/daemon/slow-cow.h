/* SPDX-License-Identifier: GPL-2.0 */
/* slow-cow.h - pwrite() to one fd made slow, for the host tests (slow-cow.c). */
#ifndef RCOWD_SLOW_COW_H
#define RCOWD_SLOW_COW_H

#include <sys/types.h>

/* Make the next count pwrite()s to fd sleep ms first; fd -1: none. */
void slow_cow_set(int fd, unsigned int ms, long count);
/* pwrite() calls on that fd not yet returned. */
int slow_cow_in_progress(void);
/* pwrite() calls on that fd completed. */
unsigned long slow_cow_writes(void);
/* Make every pread() of at least min bytes (any fd) sleep ms first; ms 0: none. */
void slow_read_set(unsigned int ms, size_t min);

#endif
