// SPDX-License-Identifier: GPL-2.0
/*
 * file-ops.c - base source: a local image file or block device (file://).
 *
 * Reads with pread(2) through the page cache (the base is read-only and
 * often shared, so caching helps).  Regular files report holes with
 * lseek(SEEK_DATA/SEEK_HOLE); block devices, and file systems without
 * that support, report everything as data.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rcow/base.h"

struct file_priv {
	int fd;
	bool seek_hole;
};

static int file_open(struct rcow_base *base, const struct rcow_uri *uri, struct rcow_err *err)
{
	struct file_priv *fp;
	struct stat st;
	int fd;

	fd = open(uri->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rcow_err_set(err, errno,
			"cannot open base image %s for reading: %s; check that it exists and is readable by the helper",
			uri->path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;

		close(fd);
		return rcow_err_set(err, e, "cannot stat base image %s: %s", uri->path, strerror(e));
	}
	fp = calloc(1, sizeof(*fp));
	if (!fp) {
		close(fd);
		return rcow_err_set(err, ENOMEM, "out of memory opening base image %s", uri->path);
	}
	fp->fd = fd;
	if (S_ISREG(st.st_mode)) {
		base->size = (uint64_t)st.st_size;
		fp->seek_hole = true;
	} else if (S_ISBLK(st.st_mode)) {
		uint64_t size;

		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			int e = errno;

			close(fd);
			free(fp);
			return rcow_err_set(err, e, "cannot get the size of block device %s: %s",
					    uri->path, strerror(e));
		}
		base->size = size;
	} else {
		close(fd);
		free(fp);
		return rcow_err_set(err, EINVAL,
			"base %s is neither a regular file nor a block device; file:// needs an image file or a block device",
			uri->path);
	}
	base->priv = fp;
	return 0;
}

/*
 * The base is shorter than when it was opened: what the COW device was
 * made from is gone, and zeroes would be wrong data.  0 if it is not.
 */
static int check_shrunk(struct rcow_base *base, struct rcow_err *err)
{
	struct file_priv *fp = base->priv;
	uint64_t now = 0;
	struct stat st;

	if (fstat(fp->fd, &st) < 0)
		return rcow_err_set(err, errno, "cannot stat base %s: %s", base->name, strerror(errno));
	if (S_ISREG(st.st_mode))
		now = (uint64_t)st.st_size;
	else if (!S_ISBLK(st.st_mode) || ioctl(fp->fd, BLKGETSIZE64, &now) < 0)
		return 0;
	if (now >= base->size)
		return 0;
	return rcow_err_set(err, EIO,
		"base %s shrank from %llu to %llu bytes since it was opened: it is not the image the COW device was made from; restore it, the reads fail meanwhile",
		base->name, (unsigned long long)base->size, (unsigned long long)now);
}

static int file_pread(struct rcow_base *base, void *buf, size_t len, uint64_t offset,
		      struct rcow_err *err)
{
	struct file_priv *fp = base->priv;
	unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fp->fd, p, len, (off_t)offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return rcow_err_set(err, errno, "reading %zu bytes at offset %llu of base %s failed: %s",
					    len, (unsigned long long)offset, base->name, strerror(errno));
		}
		if (n == 0) {
			/* end of file: past the size at open reads as zeroes; a shrink is an error */
			int r = check_shrunk(base, err);

			if (r)
				return r;
			if (offset < base->size)
				return rcow_err_set(err, EIO, "unexpected end of base %s at offset %llu",
						    base->name, (unsigned long long)offset);
			memset(p, 0, len);
			break;
		}
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

static int file_block_status(struct rcow_base *base, uint64_t offset, uint64_t len,
			     struct rcow_extent_list *list, struct rcow_err *err)
{
	struct file_priv *fp = base->priv;
	uint64_t end = offset + len, pos = offset;
	int r;

	if (!fp->seek_hole)
		return rcow_block_status_all_data(base, offset, len, list, err);
	while (pos < end) {
		off_t data = lseek(fp->fd, (off_t)pos, SEEK_DATA), hole;

		if (data < 0) {
			if (errno == ENXIO) {	/* only a hole up to end of file, or shrunk */
				r = check_shrunk(base, err);
				if (r)
					return r;
				return rcow_extent_list_add(list, pos, end - pos, true, err);
			}
			if (errno == EINVAL || errno == EOPNOTSUPP) {
				fp->seek_hole = false;
				return rcow_extent_list_add(list, pos, end - pos, false, err);
			}
			return rcow_err_set(err, errno, "lseek(SEEK_DATA) on base %s failed: %s",
					    base->name, strerror(errno));
		}
		if ((uint64_t)data > pos) {
			uint64_t h = (uint64_t)data < end ? (uint64_t)data : end;

			r = rcow_extent_list_add(list, pos, h - pos, true, err);
			if (r)
				return r;
			pos = h;
			continue;
		}
		hole = lseek(fp->fd, (off_t)pos, SEEK_HOLE);
		if (hole < 0)
			return rcow_err_set(err, errno, "lseek(SEEK_HOLE) on base %s failed: %s",
					    base->name, strerror(errno));
		if ((uint64_t)hole <= pos)	/* cannot happen; avoid looping */
			hole = (off_t)end;
		if ((uint64_t)hole > end)
			hole = (off_t)end;
		r = rcow_extent_list_add(list, pos, (uint64_t)hole - pos, false, err);
		if (r)
			return r;
		pos = (uint64_t)hole;
	}
	return 0;
}

static void file_close(struct rcow_base *base)
{
	struct file_priv *fp = base->priv;

	if (fp) {
		close(fp->fd);
		free(fp);
	}
	base->priv = NULL;
}

const struct rcow_base_ops rcow_file_ops = {
	.name = "file",
	.open = file_open,
	.pread = file_pread,
	.block_status = file_block_status,
	.close = file_close,
};
