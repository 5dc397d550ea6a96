/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Reading a small file whole (lib/smallfile.c): the configuration file,
 * PSK files, remote-cowd's receive spec.
 */
#ifndef RCOW_SMALLFILE_H
#define RCOW_SMALLFILE_H

#include <stddef.h>

#include "rcow/err.h"

/*
 * Read the whole of a small file into buf: short reads and EINTR are
 * continued until end of file, so a pipe or a slow file system gives all
 * of it.  The file must be shorter than cap (then buf[*len] can take a
 * terminating 0); -EFBIG "too large" if not.  -errno of open or read
 * otherwise; what names the file in the messages ("PSK file").  On a
 * failure what was read is wiped (some of these files hold secrets).
 */
int rcow_read_small(const char *path, const char *what, char *buf, size_t cap, size_t *len,
		    struct rcow_err *err);

#endif
