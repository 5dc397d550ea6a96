/* SPDX-License-Identifier: GPL-2.0 */
/*
 * safefile.h - files remote-cowd creates at paths it is given (safefile.c):
 * never through a symbolic link, never over a file that is not its own.
 */
#ifndef REMOTE_COWD_SAFEFILE_H
#define REMOTE_COWD_SAFEFILE_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Create path afresh for writing (O_EXCL, O_NOFOLLOW): a regular file of
 * ours there is replaced, anything else refused.  The fd, or -errno with
 * a sentence in why.
 */
int safe_create(const char *path, mode_t mode, char *why, size_t len);

/* Put data at path atomically (a temporary file, then rename), same rules. */
int safe_replace(const char *path, const char *data, size_t n, mode_t mode, char *why,
		 size_t len);

#endif
