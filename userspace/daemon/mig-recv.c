// SPDX-License-Identifier: GPL-2.0
/*
 * mig-recv.c - the destination side of a live migration, in the job's
 * own thread (see mig.h), for a device loaded with the incoming feature
 * and a receive spec (recv-NAME: "listen HOST:PORT", then the PSK).
 *
 * Listen; every connection first goes through the TLS handshake with the
 * PSK (mig_accept()): one that fails it is logged and dropped, and no
 * frame of it is ever read.  Then HELLO, checked against this device
 * (size, extent size, base URI): a mismatch is answered with ABORT and
 * the connection dropped, before anything is written.  Then:
 *
 *   DATA       written into the COW device's data area (O_DIRECT), then
 *              MIGRATE_FILL for its extents
 *   FLUSH      the COW device flushed (fsync), then FLUSHED
 *   FINISH     flush, MIGRATE_COMPLETE, wait until the kernel committed
 *              (migrate_state leaves incoming), then COMMITTED
 *   ABORT, a lost connection, a bad frame: the device stays incoming
 *              (unusable) and the log says so; the job ends.
 *
 * One migration per receive: once a source got past HELLO, the listener
 * is closed.
 *
 * A group (receive spec with member lines): the job starts once every
 * member is incoming; HELLO must list as many devices, paired by position,
 * each of the same size, extent size and base, or the whole group is
 * refused (ABORT) before anything is written.  DATA carries the member's
 * index.  FINISH flushes every member, then completes them one by one
 * (MIGRATE_COMPLETE each), waits until every one has left incoming, and
 * only then answers COMMITTED.  A destination that dies between two
 * completions leaves the first members complete and the others incoming;
 * the source then never hears COMMITTED and keeps every member fenced with
 * an unknown outcome (see remote-cow.rst, "Several devices as one unit").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mig.h"
#include "rcow/smallfile.h"

#define MIG_COMPLETE_MS 60000

struct receiver {
	struct mig_job *j;
	struct mig_conn *c;
	struct rcow_cow **cow;		/* [j->n] */
	struct rcow_buf buf;
	uint8_t *rbuf;			/* MIG_MAX_PAYLOAD */
	uint64_t moved;
	char listen[MIG_ADDR_MAX + 1];
	struct rcow_err err;
};

/* recv-NAME: "listen HOST:PORT\n", the member lines, then the PSK file's lines. */
static int read_spec(struct receiver *r, struct mig_psk *psk)
{
	struct mig_spec *sp = malloc(sizeof(*sp));
	int e;

	if (!sp)
		return rcow_err_set(&r->err, ENOMEM, "out of memory");
	e = mig_spec_load(r->j->m[0].spec, true, sp, &r->err);
	if (!e) {
		memcpy(r->listen, sp->listen, sizeof(r->listen));
		*psk = sp->psk;
	}
	mig_psk_wipe(&sp->psk);
	free(sp);
	return e;
}

static int send_abort(struct receiver *r, int code, const char *msg)
{
	uint8_t f[MIG_HDR_SIZE + 6 + MIG_MSG_MAX];
	struct rcow_err e2;

	return mig_send(r->c, f, (size_t)mig_enc_abort(f, sizeof(f), (uint32_t)code, msg), &e2);
}

/* HELLO from the source, checked against this device. */
static int take_hello(struct receiver *r)
{
	struct mig_hello *got = calloc(1, sizeof(*got)), *want = calloc(1, sizeof(*want));
	struct mig_hdr h;
	int e;

	if (!got || !want) {
		free(got);
		free(want);
		return rcow_err_set(&r->err, ENOMEM, "out of memory");
	}
	e = mig_recv(r->c, &h, r->rbuf, MIG_MAX_PAYLOAD, 30000, &r->err);
	if (!e && h.type != MIG_HELLO)
		e = rcow_err_set(&r->err, EPROTO, "expected HELLO, got %s", mig_type_name(h.type));
	if (!e)
		e = mig_dec_hello(r->rbuf, h.len, got, &r->err);
	if (!e) {
		want->version = MIG_VERSION;
		want->ndev = r->j->n;
		for (unsigned int i = 0; i < r->j->n; i++) {
			const struct rcow_device_info *info = &r->j->m[i].info;

			snprintf(want->dev[i].name, sizeof(want->dev[i].name), "%s",
				 info->dm_name);
			want->dev[i].dev_sectors = info->dev_sectors;
			want->dev[i].extent_sectors = info->extent_sectors;
			snprintf(want->dev[i].base_uri, sizeof(want->dev[i].base_uri), "%s",
				 info->base_uri);
		}
		e = mig_hello_match(got, want, &r->err);
		if (e)
			send_abort(r, EINVAL, r->err.msg);
	}
	free(got);
	free(want);
	return e;
}

static int flush_cow(struct receiver *r, unsigned int dev)
{
	if (fsync(r->cow[dev]->fd) < 0)
		return rcow_err_set(&r->err, errno, "flushing the COW device %s: %s",
				    r->cow[dev]->name, strerror(errno));
	return 0;
}

/* Every member's COW device flushed. */
static int flush_all(struct receiver *r)
{
	int e = 0;

	for (unsigned int i = 0; i < r->j->n && !e; i++)
		e = flush_cow(r, i);
	return e;
}

static int take_data(struct receiver *r, const struct mig_hdr *h)
{
	struct mig_data dd;
	struct mig_kreq q = { .op = MK_FILL };
	const struct rcow_device_info *info;
	struct rcow_cow *cow;
	uint64_t off, len, eb, dev_bytes;
	size_t io;
	int e;

	e = mig_dec_data(r->rbuf, h->len, &dd, &r->err);
	if (e)
		return e;
	if (dd.dev >= r->j->n)
		return rcow_err_set(&r->err, EPROTO, "DATA for device %u of %u", dd.dev, r->j->n);
	info = &r->j->m[dd.dev].info;
	cow = r->cow[dd.dev];
	if (dd.first >= info->nr_extents || dd.count > info->nr_extents - dd.first)
		return rcow_err_set(&r->err, EPROTO, "DATA for device %u extents %llu+%u: out of range",
				    dd.dev, (unsigned long long)dd.first, dd.count);
	eb = (uint64_t)info->extent_sectors * 512;
	dev_bytes = info->dev_sectors * 512;
	off = dd.first * eb;
	len = (uint64_t)dd.count * eb;
	if (off + len > dev_bytes)
		len = dev_bytes - off;
	if (dd.len != len)
		return rcow_err_set(&r->err, EPROTO, "DATA for extents %llu+%u has %zu bytes, not %llu",
				    (unsigned long long)dd.first, dd.count, dd.len,
				    (unsigned long long)len);
	io = rcow_cow_io_len(cow, len);
	e = rcow_buf_reserve(&r->buf, io, &r->err);
	if (e)
		return e;
	memcpy(r->buf.p, dd.data, len);
	memset((uint8_t *)r->buf.p + len, 0, io - len);
	e = rcow_cow_pwrite(cow, r->buf.p, io, info->data_offset * 512 + off, &r->err);
	if (e)
		return e;
	q.dev = dd.dev;
	q.first = dd.first;
	q.count = dd.count;
	e = mig_kcall(r->j, &q);
	if (e)
		r->err = q.err;
	r->moved += dd.count;
	return e;
}

/*
 * FINISH: flush every member, complete each, wait for every kernel's
 * commit, then answer COMMITTED.
 */
static int finish(struct receiver *r)
{
	struct mig_kreq q = { .op = MK_COMPLETE };
	uint8_t f[MIG_HDR_SIZE];
	unsigned int dev = 0;
	int e, waited = 0;

	e = flush_all(r);
	for (unsigned int i = 0; i < r->j->n && !e; i++) {
		q = (struct mig_kreq){ .op = MK_COMPLETE, .dev = i };
		e = mig_kcall(r->j, &q);
	}
	if (e) {
		if (q.err.msg[0])
			r->err = q.err;
		return e;
	}
	while (dev < r->j->n) {
		q = (struct mig_kreq){ .op = MK_STATE, .dev = dev };
		e = mig_kcall(r->j, &q);
		if (e) {
			r->err = q.err;
			return e;
		}
		if (q.state != RCOW_MIGRATE_INCOMING) {
			dev++;
			continue;
		}
		if (waited >= MIG_COMPLETE_MS)
			return rcow_err_set(&r->err, ETIMEDOUT,
					    "the kernel did not complete the migration within %d s",
					    MIG_COMPLETE_MS / 1000);
		usleep(20000);
		waited += 20;
	}
	return mig_send(r->c, f, (size_t)mig_enc_empty(f, sizeof(f), MIG_COMMITTED), &r->err);
}

static int serve(struct receiver *r)
{
	struct mig_hdr h;
	uint8_t f[MIG_HDR_SIZE + 8];
	uint64_t seq;
	int e;

	for (;;) {
		if (mig_stopping(r->j))
			return rcow_err_set(&r->err, ECANCELED, "the daemon stopped the migration");
		e = mig_recv(r->c, &h, r->rbuf, MIG_MAX_PAYLOAD, 1000, &r->err);
		if (e == -ETIMEDOUT)
			continue;
		if (e)
			return e;
		switch (h.type) {
		case MIG_DATA:
			e = take_data(r, &h);
			break;
		case MIG_FLUSH:
			e = mig_dec_seq(r->rbuf, h.len, &seq, &r->err);
			if (!e)
				e = flush_all(r);
			if (!e)
				e = mig_send(r->c, f, (size_t)mig_enc_seq(f, sizeof(f), MIG_FLUSHED,
									   seq), &r->err);
			break;
		case MIG_FINISH:
			e = mig_dec_empty(h.type, h.len, &r->err);
			return e ? e : finish(r);
		case MIG_ABORT: {
			struct mig_abort a;

			e = mig_dec_abort(r->rbuf, h.len, &a, &r->err);
			return e ? e : rcow_err_set(&r->err, ECANCELED, "the source aborted: %s",
						    a.msg);
		}
		default:
			e = rcow_err_set(&r->err, EPROTO, "unexpected %s frame from the source",
					 mig_type_name(h.type));
		}
		if (e) {
			send_abort(r, -e, r->err.msg);
			return e;
		}
	}
}

/* Accept until a source passes the handshake and HELLO. */
static int accept_source(struct receiver *r, int lfd, const struct mig_psk *psk)
{
	for (;;) {
		int e;

		if (mig_stopping(r->j))
			return rcow_err_set(&r->err, ECANCELED, "the daemon stopped the receive");
		e = mig_accept(lfd, psk, 1000, &r->c, &r->err);
		if (e == -ETIMEDOUT)
			continue;
		if (e) {
			logmsg("%s: refused a migration connection: %s", r->j->label, r->err.msg);
			continue;
		}
		mig_set_conn(r->j, r->c);
		e = take_hello(r);
		if (!e)
			return 0;
		logmsg("%s: refused the migration from %s: %s", r->j->label,
		       mig_conn_peer(r->c), r->err.msg);
		mig_set_conn(r->j, NULL);
		mig_conn_close(r->c);
		r->c = NULL;
	}
}

static int receive(struct receiver *r)
{
	struct mig_psk psk;
	uint8_t f[MIG_HDR_SIZE];
	int lfd = -1, e;

	e = read_spec(r, &psk);
	if (!e)
		e = mig_listen(r->listen, &lfd, &r->err);
	if (e) {
		mig_psk_wipe(&psk);
		return e;
	}
	logmsg("%s: waiting for the migration on %s", r->j->label, r->listen);
	e = accept_source(r, lfd, &psk);
	mig_psk_wipe(&psk);
	close(lfd);
	if (e)
		return e;
	/* the key is no longer needed, nor another source */
	for (unsigned int i = 0; i < r->j->n; i++)
		unlink(r->j->m[i].spec);
	logmsg("%s: receiving from %s", r->j->label, mig_conn_peer(r->c));
	e = mig_send(r->c, f, (size_t)mig_enc_empty(f, sizeof(f), MIG_READY), &r->err);
	return e ? e : serve(r);
}

void *mig_recv_thread(void *arg)
{
	struct mig_job *j = arg;
	struct receiver r = { .j = j };
	int e = 0;

	r.cow = calloc(j->n, sizeof(*r.cow));
	r.rbuf = malloc(MIG_MAX_PAYLOAD);
	if (!r.cow || !r.rbuf)
		e = rcow_err_set(&r.err, ENOMEM, "out of memory");
	for (unsigned int i = 0; i < j->n && !e; i++)
		e = j->d->kops->open_cow(j->d->kctx, &j->m[i].info, &r.cow[i], &r.err);
	if (!e)
		e = receive(&r);
	for (unsigned int i = 0; i < j->n; i++) {
		if (!e)
			logmsg("device %s: migration received and committed; the device serves",
			       j->m[i].name);
		else
			logmsg("device %s: migration not received: %s; the device stays incoming (unusable: remove it)",
			       j->m[i].name, r.err.msg);
	}
	mig_end(j, r.c, r.cow, &r.buf, r.rbuf, r.moved);
	free(r.cow);
	return NULL;
}
