// SPDX-License-Identifier: GPL-2.0
/*
 * safefile.c - remote-cowd's files (the ready file, the stats file), made
 * so that a path an attacker or another program prepared cannot make a
 * root daemon write somewhere else: symbolic links are never followed,
 * and a file that exists but is not ours (another owner, not a regular
 * file) is never replaced.  A regular file of ours at the path is taken
 * to be a leftover of an earlier run and replaced.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safefile.h"

/* 0 if path is free or a regular file of ours; else -errno with why. */
static int check_ours(const char *path, char *why, size_t len)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(why, len, "cannot check %s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISLNK(st.st_mode)) {
		snprintf(why, len, "%s is a symbolic link; refusing to write through it: remove it or choose another path",
			 path);
		return -ELOOP;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		snprintf(why, len, "%s exists and is not a file of ours (%s, owner uid %u); refusing to replace it: remove it or choose another path",
			 path, S_ISREG(st.st_mode) ? "regular file" : "not a regular file",
			 (unsigned int)st.st_uid);
		return -EEXIST;
	}
	return 0;
}

int safe_create(const char *path, mode_t mode, char *why, size_t len)
{
	int fd, r;

	r = check_ours(path, why, len);
	if (r)
		return r;
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(why, len, "cannot remove the old %s: %s", path, strerror(errno));
		return -errno;
	}
	/* O_EXCL: if something appeared meanwhile, it is not ours */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		r = -errno;
		snprintf(why, len, "cannot create %s: %s", path, strerror(errno));
		return r;
	}
	return fd;
}

int safe_replace(const char *path, const char *data, size_t n, mode_t mode, char *why,
		 size_t len)
{
	char *tmp = NULL;
	int fd, r;

	r = check_ours(path, why, len);
	if (r)
		return r;
	if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
		snprintf(why, len, "out of memory writing %s", path);
		return -ENOMEM;
	}
	fd = mkostemp(tmp, O_CLOEXEC);	/* O_EXCL, never a link */
	if (fd < 0) {
		r = -errno;
		snprintf(why, len, "cannot create a temporary file next to %s: %s", path,
			 strerror(errno));
		free(tmp);
		return r;
	}
	if (fchmod(fd, mode) < 0 || write(fd, data, n) != (ssize_t)n || close(fd) < 0) {
		r = errno ? -errno : -EIO;
		snprintf(why, len, "cannot write %s: %s", tmp, strerror(-r));
		close(fd);
		unlink(tmp);
		free(tmp);
		return r;
	}
	/* rename() replaces a link at path rather than following it */
	if (rename(tmp, path) < 0) {
		r = -errno;
		snprintf(why, len, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return r;
	}
	free(tmp);
	return 0;
}
