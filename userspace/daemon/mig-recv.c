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
	struct rcow_cow *cow;
	struct rcow_buf buf;
	uint8_t *rbuf;			/* MIG_MAX_PAYLOAD */
	uint64_t eb, dev_bytes, data_off, moved;
	char listen[300];
	struct rcow_err err;
};

/* recv-NAME: "listen HOST:PORT\n" then the PSK file's lines. */
static int read_spec(struct receiver *r, struct mig_psk *psk)
{
	char text[MIG_RECV_SPEC_MAX + 1], *nl;
	size_t n;
	int e;

	e = rcow_read_small(r->j->spec, "receive spec", text, sizeof(text), &n, &r->err);
	if (e)
		return e;
	text[n] = 0;
	nl = strchr(text, '\n');
	if (strncmp(text, "listen ", 7) || !nl || (size_t)(nl - text - 7) >= sizeof(r->listen)) {
		explicit_bzero(text, sizeof(text));
		return rcow_err_set(&r->err, EINVAL, "%s: first line is not 'listen HOST:PORT'",
				    r->j->spec);
	}
	memcpy(r->listen, text + 7, (size_t)(nl - text - 7));
	r->listen[nl - text - 7] = 0;
	e = mig_psk_parse(nl + 1, (size_t)(text + n - nl - 1), psk, &r->err);
	explicit_bzero(text, sizeof(text));
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
		want->ndev = 1;
		snprintf(want->dev[0].name, sizeof(want->dev[0].name), "%s", r->j->info.dm_name);
		want->dev[0].dev_sectors = r->j->info.dev_sectors;
		want->dev[0].extent_sectors = r->j->info.extent_sectors;
		snprintf(want->dev[0].base_uri, sizeof(want->dev[0].base_uri), "%s",
			 r->j->info.base_uri);
		e = mig_hello_match(got, want, &r->err);
		if (e)
			send_abort(r, EINVAL, r->err.msg);
	}
	free(got);
	free(want);
	return e;
}

static int flush_cow(struct receiver *r)
{
	if (fsync(r->cow->fd) < 0)
		return rcow_err_set(&r->err, errno, "flushing the COW device %s: %s", r->cow->name,
				    strerror(errno));
	return 0;
}

static int take_data(struct receiver *r, const struct mig_hdr *h)
{
	struct mig_data dd;
	struct mig_kreq q = { .op = MK_FILL };
	uint64_t off, len;
	size_t io;
	int e;

	e = mig_dec_data(r->rbuf, h->len, &dd, &r->err);
	if (e)
		return e;
	if (dd.dev != 0 || dd.first >= r->j->info.nr_extents ||
	    dd.count > r->j->info.nr_extents - dd.first)
		return rcow_err_set(&r->err, EPROTO, "DATA for device %u extents %llu+%u: out of range",
				    dd.dev, (unsigned long long)dd.first, dd.count);
	off = dd.first * r->eb;
	len = (uint64_t)dd.count * r->eb;
	if (off + len > r->dev_bytes)
		len = r->dev_bytes - off;
	if (dd.len != len)
		return rcow_err_set(&r->err, EPROTO, "DATA for extents %llu+%u has %zu bytes, not %llu",
				    (unsigned long long)dd.first, dd.count, dd.len,
				    (unsigned long long)len);
	io = rcow_cow_io_len(r->cow, len);
	e = rcow_buf_reserve(&r->buf, io, &r->err);
	if (e)
		return e;
	memcpy(r->buf.p, dd.data, len);
	memset((uint8_t *)r->buf.p + len, 0, io - len);
	e = rcow_cow_pwrite(r->cow, r->buf.p, io, r->data_off + off, &r->err);
	if (e)
		return e;
	q.first = dd.first;
	q.count = dd.count;
	e = mig_kcall(r->j, &q);
	if (e)
		r->err = q.err;
	r->moved += dd.count;
	return e;
}

/* FINISH: flush, complete, wait for the kernel's commit, answer COMMITTED. */
static int finish(struct receiver *r)
{
	struct mig_kreq q = { .op = MK_COMPLETE };
	uint8_t f[MIG_HDR_SIZE];
	int e, waited = 0;

	e = flush_cow(r);
	if (!e)
		e = mig_kcall(r->j, &q);
	if (e) {
		if (q.err.msg[0])
			r->err = q.err;
		return e;
	}
	for (;;) {
		q = (struct mig_kreq){ .op = MK_STATE };
		e = mig_kcall(r->j, &q);
		if (e) {
			r->err = q.err;
			return e;
		}
		if (q.state != RCOW_MIGRATE_INCOMING)
			break;
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
				e = flush_cow(r);
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
			logmsg("device %s: refused a migration connection: %s", r->j->info.dm_name,
			       r->err.msg);
			continue;
		}
		mig_set_conn(r->j, r->c);
		e = take_hello(r);
		if (!e)
			return 0;
		logmsg("device %s: refused the migration from %s: %s", r->j->info.dm_name,
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
	logmsg("device %s: waiting for the migration on %s", r->j->info.dm_name, r->listen);
	e = accept_source(r, lfd, &psk);
	mig_psk_wipe(&psk);
	close(lfd);
	if (e)
		return e;
	/* the key is no longer needed, nor another source */
	unlink(r->j->spec);
	logmsg("device %s: receiving from %s", r->j->info.dm_name, mig_conn_peer(r->c));
	e = mig_send(r->c, f, (size_t)mig_enc_empty(f, sizeof(f), MIG_READY), &r->err);
	return e ? e : serve(r);
}

void *mig_recv_thread(void *arg)
{
	struct mig_job *j = arg;
	struct receiver r = { .j = j };
	int e;

	r.eb = (uint64_t)j->info.extent_sectors * 512;
	r.dev_bytes = j->info.dev_sectors * 512;
	r.data_off = j->info.data_offset * 512;
	r.rbuf = malloc(MIG_MAX_PAYLOAD);
	e = r.rbuf ? j->d->kops->open_cow(j->d->kctx, &j->info, &r.cow, &r.err)
		   : rcow_err_set(&r.err, ENOMEM, "out of memory");
	if (!e)
		e = receive(&r);
	if (!e)
		logmsg("device %s: migration received and committed; the device serves",
		       j->info.dm_name);
	else
		logmsg("device %s: migration not received: %s; the device stays incoming (unusable: remove it)",
		       j->info.dm_name, r.err.msg);
	mig_end(j, r.c, r.cow, &r.buf, r.rbuf, r.moved);
	return NULL;
}
