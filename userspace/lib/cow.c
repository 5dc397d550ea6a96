// SPDX-License-Identifier: GPL-2.0
/*
 * cow.c - open the COW device by major:minor or path and write fills into
 * it with O_DIRECT (see include/rcow/cow.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "rcow/cow.h"

#define BUF_ALIGN 4096

int rcow_buf_reserve(struct rcow_buf *buf, size_t size, struct rcow_err *err)
{
	void *p;
	int r;

	if (size <= buf->cap)
		return 0;
	r = posix_memalign(&p, BUF_ALIGN, size);
	if (r)
		return rcow_err_set(err, r, "cannot allocate a %zu-byte aligned I/O buffer: %s",
				    size, strerror(r));
	rcow_buf_free(buf);
	buf->p = p;
	buf->cap = size;
	return 0;
}

int rcow_buf_map(struct rcow_buf *buf, size_t size, struct rcow_err *err)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return rcow_err_set(err, errno, "cannot map a %zu-byte I/O buffer: %s", size,
				    strerror(errno));
	rcow_buf_free(buf);
	buf->p = p;
	buf->cap = size;
	buf->mapped = true;
	return 0;
}

void rcow_buf_free(struct rcow_buf *buf)
{
	if (buf->mapped)
		munmap(buf->p, buf->cap);
	else
		free(buf->p);
	buf->p = NULL;
	buf->cap = 0;
	buf->mapped = false;
}

/* Fill in size, lbs, kind from an open fd. */
static int cow_probe(struct rcow_cow *cow, struct rcow_err *err)
{
	struct stat st;

	if (fstat(cow->fd, &st) < 0)
		return rcow_err_set(err, errno, "cannot stat COW device %s: %s", cow->name, strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		int lbs;

		cow->is_blkdev = true;
		if (ioctl(cow->fd, BLKGETSIZE64, &cow->size) < 0)
			return rcow_err_set(err, errno, "cannot get the size of COW device %s: %s",
					    cow->name, strerror(errno));
		if (ioctl(cow->fd, BLKSSZGET, &lbs) < 0 || lbs < 512)
			lbs = 512;
		cow->lbs = (unsigned int)lbs;
	} else if (S_ISREG(st.st_mode)) {
		cow->size = (uint64_t)st.st_size;
		cow->lbs = 512;
	} else {
		return rcow_err_set(err, EINVAL, "COW %s is neither a block device nor a regular file",
				    cow->name);
	}
	return 0;
}

static struct rcow_cow *cow_new(const char *name, struct rcow_err *err)
{
	struct rcow_cow *cow = calloc(1, sizeof(*cow));

	if (!cow || !(cow->name = strdup(name))) {
		free(cow);
		rcow_err_set(err, ENOMEM, "out of memory opening COW device %s", name);
		return NULL;
	}
	cow->fd = -1;
	return cow;
}

/* Open a node that must be the block device maj:min. */
static int open_node(const char *path, dev_t want, int *fd_out)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode) || st.st_rdev != want) {
		close(fd);
		return -ENODEV;
	}
	*fd_out = fd;
	return 0;
}

int rcow_cow_open_dev(uint32_t maj, uint32_t min, const char *node_dir,
		      struct rcow_cow **out, struct rcow_err *err)
{
	dev_t want = makedev(maj, min);
	char name[32], path[64], dir[4096], node[4200];
	struct rcow_cow *cow;
	int r, fd = -1;

	snprintf(name, sizeof(name), "%u:%u", maj, min);
	cow = cow_new(name, err);
	if (!cow)
		return -ENOMEM;

	snprintf(path, sizeof(path), "/dev/block/%u:%u", maj, min);
	r = open_node(path, want, &fd);
	if (r) {
		/* no usable /dev/block link (no udev): make a private node */
		if (!node_dir)
			node_dir = RCOW_COW_NODE_DIR;
		snprintf(dir, sizeof(dir), "%s/rcow-node.XXXXXX", node_dir);
		if (!mkdtemp(dir)) {
			r = rcow_err_set(err, errno,
				"cannot open COW device %s: %s is missing and making a private node directory in %s failed: %s",
				name, path, node_dir, strerror(errno));
			goto fail;
		}
		snprintf(node, sizeof(node), "%s/cow", dir);
		if (mknod(node, S_IFBLK | 0600, want) < 0) {
			r = rcow_err_set(err, errno,
				"cannot open COW device %s: %s is missing and mknod %s failed: %s (the helper needs CAP_MKNOD, i.e. to run as root)",
				name, path, node, strerror(errno));
			rmdir(dir);
			goto fail;
		}
		r = open_node(node, want, &fd);
		unlink(node);
		rmdir(dir);
		if (r) {
			r = rcow_err_set(err, -r, "cannot open COW device %s for O_DIRECT writing: %s",
					 name, strerror(-r));
			goto fail;
		}
	}
	cow->fd = fd;
	cow->direct = true;
	r = cow_probe(cow, err);
	if (r)
		goto fail;
	*out = cow;
	return 0;
fail:
	rcow_cow_close(cow);
	return r;
}

int rcow_cow_open_path(const char *path, unsigned int flags, struct rcow_cow **out,
		       struct rcow_err *err)
{
	struct rcow_cow *cow;
	int r;

	cow = cow_new(path, err);
	if (!cow)
		return -ENOMEM;
	cow->fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	cow->direct = true;
	if (cow->fd < 0 && errno == EINVAL && (flags & RCOW_COW_ALLOW_BUFFERED)) {
		cow->fd = open(path, O_RDWR | O_CLOEXEC);
		cow->direct = false;
	}
	if (cow->fd < 0) {
		r = rcow_err_set(err, errno, "cannot open COW %s read-write with O_DIRECT: %s",
				 path, strerror(errno));
		goto fail;
	}
	r = cow_probe(cow, err);
	if (r)
		goto fail;
	*out = cow;
	return 0;
fail:
	rcow_cow_close(cow);
	return r;
}

void rcow_cow_close(struct rcow_cow *cow)
{
	if (!cow)
		return;
	if (cow->fd >= 0)
		close(cow->fd);
	free(cow->name);
	free(cow);
}

size_t rcow_cow_io_len(const struct rcow_cow *cow, size_t len)
{
	return (len + cow->lbs - 1) / cow->lbs * cow->lbs;
}

static int check_range(struct rcow_cow *cow, uint64_t offset, size_t len, struct rcow_err *err)
{
	if (offset % cow->lbs || len % cow->lbs)
		return rcow_err_set(err, EINVAL,
			"COW write at byte %llu length %zu is not aligned to the device's %u-byte logical block size",
			(unsigned long long)offset, len, cow->lbs);
	if (offset > cow->size || len > cow->size - offset)
		return rcow_err_set(err, ENOSPC,
			"COW write at byte %llu length %zu goes past the end of COW device %s (%llu bytes); the device is smaller than the table needs",
			(unsigned long long)offset, len, cow->name, (unsigned long long)cow->size);
	return 0;
}

/*
 * All of @len bytes at @offset: written from @wbuf if it is not NULL, else
 * read into @rbuf; short transfers and EINTR are retried.
 */
static int cow_io(struct rcow_cow *cow, const void *wbuf, void *rbuf, size_t len,
		  uint64_t offset, struct rcow_err *err)
{
	const unsigned char *wp = wbuf;
	unsigned char *rp = rbuf;

	while (len > 0) {
		ssize_t n = wp ? pwrite(cow->fd, wp, len, (off_t)offset) :
				 pread(cow->fd, rp, len, (off_t)offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return rcow_err_set(err, errno,
				"%s %zu bytes at byte %llu of COW device %s failed: %s",
				wp ? "writing" : "reading", len, (unsigned long long)offset,
				cow->name, strerror(errno));
		}
		if (n == 0)
			return rcow_err_set(err, EIO, wp ?
					    "COW device %s accepted no data at byte %llu" :
					    "COW device %s ends before byte %llu",
					    cow->name, (unsigned long long)offset);
		if (wp)
			wp += n;
		else
			rp += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

int rcow_cow_pwrite(struct rcow_cow *cow, const void *buf, size_t len, uint64_t offset,
		    struct rcow_err *err)
{
	int r;

	r = check_range(cow, offset, len, err);
	if (r)
		return r;
	if ((uintptr_t)buf % BUF_ALIGN)
		return rcow_err_set(err, EINVAL, "internal error: unaligned buffer for an O_DIRECT write");
	return cow_io(cow, buf, NULL, len, offset, err);
}

int rcow_cow_pread(struct rcow_cow *cow, void *buf, size_t len, uint64_t offset,
		   struct rcow_err *err)
{
	if (offset % cow->lbs || len % cow->lbs || (uintptr_t)buf % BUF_ALIGN)
		return rcow_err_set(err, EINVAL,
			"internal error: COW read at byte %llu length %zu is not aligned for O_DIRECT",
			(unsigned long long)offset, len);
	if (offset > cow->size || len > cow->size - offset)
		return rcow_err_set(err, ENOSPC,
			"COW read at byte %llu length %zu goes past the end of COW device %s (%llu bytes)",
			(unsigned long long)offset, len, cow->name, (unsigned long long)cow->size);
	return cow_io(cow, NULL, buf, len, offset, err);
}

int rcow_cow_zero(struct rcow_cow *cow, uint64_t offset, size_t len, struct rcow_err *err)
{
	int r;

	r = check_range(cow, offset, len, err);
	if (r)
		return r;
	if (fallocate(cow->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)offset, (off_t)len) == 0)
		return 0;
	if (fallocate(cow->fd, FALLOC_FL_ZERO_RANGE | (cow->is_blkdev ? FALLOC_FL_KEEP_SIZE : 0),
		      (off_t)offset, (off_t)len) == 0)
		return 0;
	return -EOPNOTSUPP;
}
