// SPDX-License-Identifier: GPL-2.0
/*
 * smallfile.c - a small file read whole (rcow/smallfile.h).  One reader
 * for the configuration file and the migration's PSK files and receive
 * specs, so that they share their size limits and messages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "rcow/smallfile.h"

int rcow_read_small(const char *path, const char *what, char *buf, size_t cap, size_t *len,
		    struct rcow_err *err)
{
	size_t got = 0;
	ssize_t n;
	int fd, e;

	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rcow_err_set(err, errno, "cannot open %s %s: %s", what, path,
				    strerror(errno));
	do {
		n = read(fd, buf + got, cap - got);
		if (n > 0)
			got += (size_t)n;
	} while (got < cap && (n > 0 || (n < 0 && errno == EINTR)));
	e = errno;
	close(fd);
	if (n < 0) {
		explicit_bzero(buf, got);
		return rcow_err_set(err, e, "cannot read %s %s: %s", what, path, strerror(e));
	}
	if (got == cap) {
		explicit_bzero(buf, got);
		return rcow_err_set(err, EFBIG, "%s %s is too large: over %zu bytes", what, path,
				    cap - 1);
	}
	*len = got;
	return 0;
}
