// SPDX-License-Identifier: GPL-2.0
/*
 * fake-nbd.c - a tiny NBD server for the daemon tests (fake-nbd.h): the
 * NBD protocol's fixed newstyle negotiation and transmission phase, just
 * enough for libnbd's reads, with replies that may break the protocol's
 * rule that a successful structured read is covered by its chunks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fake-nbd.h"

#define NBD_MAGIC		0x4e42444d41474943ull	/* "NBDMAGIC" */
#define NBD_IHAVEOPT		0x49484156454f5054ull
#define NBD_REP_MAGIC		0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC	0x25609513u
#define NBD_SIMPLE_MAGIC	0x67446698u
#define NBD_STRUCTURED_MAGIC	0x668e33efu

#define NBD_FLAG_FIXED_NEWSTYLE	1u
#define NBD_FLAG_NO_ZEROES	2u
#define NBD_FLAG_HAS_FLAGS	1u
#define NBD_FLAG_READ_ONLY	2u

#define NBD_OPT_ABORT		2u
#define NBD_OPT_INFO		6u
#define NBD_OPT_GO		7u
#define NBD_OPT_STRUCTURED_REPLY 8u

#define NBD_REP_ACK		1u
#define NBD_REP_INFO		3u
#define NBD_REP_ERR_UNSUP	0x80000001u
#define NBD_INFO_EXPORT		0u

#define NBD_CMD_READ		0u
#define NBD_CMD_DISC		2u

#define NBD_REPLY_FLAG_DONE	1u
#define NBD_REPLY_TYPE_NONE	0u
#define NBD_REPLY_TYPE_OFFSET_DATA 1u
#define NBD_REPLY_TYPE_OFFSET_HOLE 2u
#define NBD_REPLY_TYPE_ERROR	0x8001u
#define NBD_EINVAL		22u

#define EXT (64u << 10)
#define MAX_READ (32u << 20)

uint8_t fake_nbd_byte(const struct fake_nbd *f, uint64_t off)
{
	if (off >= f->holes_from && off % EXT < EXT / 4)
		return 0;
	return (uint8_t)(off ^ (off >> 8) ^ (off >> 16) ^ 0xa5);
}

static void put(unsigned char **p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		*(*p)++ = (unsigned char)(v >> (8 * i));
}

static uint64_t get(const unsigned char *p, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * Read (in) or write exactly len bytes; -1 on EOF, error, or (reading,
 * polled) once *stop is set.
 */
static int io_all(int fd, unsigned char *b, size_t len, bool in, atomic_bool *stop)
{
	while (len > 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (stop && atomic_load(stop))
			return -1;
		if (stop && poll(&p, 1, 100) <= 0)
			continue;
		n = in ? read(fd, b, len) : send(fd, b, len, MSG_NOSIGNAL);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return -1;
		}
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static int rd(struct fake_nbd *f, int fd, void *buf, size_t len)
{
	return io_all(fd, buf, len, true, &f->stop);
}

static int wr(int fd, const void *buf, size_t len)
{
	return io_all(fd, (unsigned char *)buf, len, false, NULL);
}

static int opt_reply(int fd, uint32_t opt, uint32_t type, const unsigned char *data, uint32_t len)
{
	unsigned char h[20], *p = h;

	put(&p, NBD_REP_MAGIC, 8);
	put(&p, opt, 4);
	put(&p, type, 4);
	put(&p, len, 4);
	return wr(fd, h, sizeof(h)) || (len && wr(fd, data, len)) ? -1 : 0;
}

/* Option haggling up to NBD_OPT_GO: 0 to go on, -1 to drop the client. */
static int negotiate(struct fake_nbd *f, int fd, bool *sr)
{
	unsigned char h[18], *p = h, o[16], data[4096];

	put(&p, NBD_MAGIC, 8);
	put(&p, NBD_IHAVEOPT, 8);
	put(&p, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 2);
	if (wr(fd, h, sizeof(h)) || rd(f, fd, o, 4))
		return -1;
	*sr = false;
	for (;;) {
		uint32_t opt, len;

		if (rd(f, fd, o, 16) || get(o, 8) != NBD_IHAVEOPT)
			return -1;
		opt = (uint32_t)get(o + 8, 4);
		len = (uint32_t)get(o + 12, 4);
		if (len > sizeof(data) || rd(f, fd, data, len))
			return -1;
		if (opt == NBD_OPT_ABORT)
			return -1;
		if (opt == NBD_OPT_STRUCTURED_REPLY && f->structured) {
			*sr = true;
			if (opt_reply(fd, opt, NBD_REP_ACK, NULL, 0))
				return -1;
		} else if (opt == NBD_OPT_GO || opt == NBD_OPT_INFO) {
			unsigned char info[12], *q = info;

			put(&q, NBD_INFO_EXPORT, 2);
			put(&q, f->size, 8);
			put(&q, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY, 2);
			if (opt_reply(fd, opt, NBD_REP_INFO, info, sizeof(info)) ||
			    opt_reply(fd, opt, NBD_REP_ACK, NULL, 0))
				return -1;
			if (opt == NBD_OPT_GO)
				return 0;
		} else if (opt_reply(fd, opt, NBD_REP_ERR_UNSUP, NULL, 0)) {
			return -1;
		}
	}
}

/* One structured reply chunk; data (len bytes after the header's payload) may be NULL. */
static int chunk(int fd, uint64_t handle, uint16_t flags, uint16_t type,
		 const unsigned char *payload, uint32_t plen, const unsigned char *data,
		 uint32_t dlen)
{
	unsigned char h[20], *p = h;

	put(&p, NBD_STRUCTURED_MAGIC, 4);
	put(&p, flags, 2);
	put(&p, type, 2);
	put(&p, handle, 8);
	put(&p, plen + dlen, 4);
	if (wr(fd, h, sizeof(h)) || (plen && wr(fd, payload, plen)) || (dlen && wr(fd, data, dlen)))
		return -1;
	return 0;
}

/* Data chunk for [off, off + len) of the read at roff, whose content is buf. */
static int data_chunk(int fd, uint64_t handle, const unsigned char *buf, uint64_t roff,
		      uint64_t off, uint32_t len, bool done)
{
	unsigned char pl[8], *p = pl;

	put(&p, off, 8);
	return chunk(fd, handle, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA, pl, 8,
		     buf + (off - roff), len);
}

static int hole_chunk(int fd, uint64_t handle, uint64_t off, uint32_t len)
{
	unsigned char pl[12], *p = pl;

	put(&p, off, 8);
	put(&p, len, 4);
	return chunk(fd, handle, 0, NBD_REPLY_TYPE_OFFSET_HOLE, pl, 12, NULL, 0);
}

static int done_chunk(int fd, uint64_t handle)
{
	return chunk(fd, handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0);
}

static int answer_read(struct fake_nbd *f, int fd, bool sr, uint64_t handle, uint64_t off,
		       uint32_t len, unsigned char *buf)
{
	int mode = off >= f->bad_from ? atomic_load(&f->mode) : FNBD_FULL;

	for (uint32_t i = 0; i < len; i++)
		buf[i] = fake_nbd_byte(f, off + i);
	atomic_fetch_add(&f->reads, 1);
	if (!sr) {
		unsigned char h[16], *p = h;

		put(&p, NBD_SIMPLE_MAGIC, 4);
		put(&p, 0, 4);
		put(&p, handle, 8);
		return wr(fd, h, sizeof(h)) || wr(fd, buf, len) ? -1 : 0;
	}
	if (mode != FNBD_FULL)
		atomic_fetch_add(&f->bad_reads, 1);
	if (mode == FNBD_SPLIT && (off % EXT || len % EXT || off < f->holes_from))
		mode = FNBD_FULL;	/* the split below needs whole 64 KiB pieces, with holes */
	switch (mode) {
	case FNBD_HALF:
		return data_chunk(fd, handle, buf, off, off, len / 2, false) ? -1 :
			done_chunk(fd, handle);
	case FNBD_DUP:
		return data_chunk(fd, handle, buf, off, off, len / 2, false) ||
			data_chunk(fd, handle, buf, off, off, len - len / 2, false) ? -1 :
			done_chunk(fd, handle);
	case FNBD_SPLIT:
		atomic_fetch_add(&f->split_reads, 1);
		/* three passes, each from the last 64 KiB back: as many gaps as pieces */
		for (int pass = 0; pass < 3; pass++)
			for (uint64_t x = off + len; x > off; x -= EXT) {
				uint64_t s = x - EXT;

				if (pass == 0 ? data_chunk(fd, handle, buf, off, s + EXT / 2, EXT / 2, false) :
				    pass == 1 ? hole_chunk(fd, handle, s, EXT / 4) :
				    data_chunk(fd, handle, buf, off, s + EXT / 4, EXT / 4, false))
					return -1;
			}
		return done_chunk(fd, handle);
	default:
		return data_chunk(fd, handle, buf, off, off, len, true);
	}
}

static int answer_error(int fd, bool sr, uint64_t handle)
{
	unsigned char h[16], *p = h, pl[6], *q = pl;

	if (sr) {
		put(&q, NBD_EINVAL, 4);
		put(&q, 0, 2);
		return chunk(fd, handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, pl, 6, NULL, 0);
	}
	put(&p, NBD_SIMPLE_MAGIC, 4);
	put(&p, NBD_EINVAL, 4);
	put(&p, handle, 8);
	return wr(fd, h, sizeof(h));
}

static void serve(struct fake_nbd *f, int fd)
{
	unsigned char *buf = malloc(MAX_READ), r[28];
	bool sr;

	if (!buf || negotiate(f, fd, &sr))
		goto out;
	while (!rd(f, fd, r, sizeof(r)) && get(r, 4) == NBD_REQUEST_MAGIC) {
		uint16_t type = (uint16_t)get(r + 6, 2);
		uint64_t handle = get(r + 8, 8), off = get(r + 16, 8);
		uint32_t len = (uint32_t)get(r + 24, 4);

		if (type == NBD_CMD_DISC)
			break;
		if (type == NBD_CMD_READ && len <= MAX_READ && off <= f->size &&
		    len <= f->size - off) {
			if (answer_read(f, fd, sr, handle, off, len, buf))
				break;
		} else if (answer_error(fd, sr, handle)) {
			break;
		}
	}
out:
	free(buf);
	close(fd);
}

static void *server(void *arg)
{
	struct fake_nbd *f = arg;

	while (!atomic_load(&f->stop)) {
		struct pollfd p = { .fd = f->lfd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 100) <= 0)
			continue;
		fd = accept(f->lfd, NULL, NULL);
		if (fd >= 0)
			serve(f, fd);
	}
	return NULL;
}

int fake_nbd_start(struct fake_nbd *f)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	if (strlen(f->path) >= sizeof(a.sun_path))
		return -1;
	strcpy(a.sun_path, f->path);
	unlink(f->path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0)
		return -1;
	if (bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(f->lfd, 4) ||
	    pthread_create(&f->th, NULL, server, f)) {
		close(f->lfd);
		f->lfd = -1;
		return -1;
	}
	f->running = true;
	return 0;
}

void fake_nbd_stop(struct fake_nbd *f)
{
	if (!f->running)
		return;
	atomic_store(&f->stop, true);
	pthread_join(f->th, NULL);
	close(f->lfd);
	f->running = false;
}
