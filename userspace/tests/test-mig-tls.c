// SPDX-License-Identifier: GPL-2.0
/*
 * test-mig-tls.c - the live migration connection (daemon/mig-tls.c) over
 * loopback: with the right key the frames cross both ways and are
 * counted; a wrong key or identity fails the handshake on both sides and
 * the listener reads no frame; a malformed HOST:PORT is refused; a
 * watched connection (mig_conn_watch_peer()) to a peer that takes
 * nothing fails within the peer timeout, saying so; a last ABORT sent
 * before mig_conn_close() reaches a peer that still answers the frames
 * before it, although the closing side never read what the peer sent; a
 * TLS record held up half-way by the link for several receive slices
 * arrives whole, and the frame after it too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "mig-tls.h"
#include "tap.h"

struct server {
	int lfd;
	struct mig_psk psk;
	int accept_rc, recv_rc;
	unsigned int frames;
	uint64_t data_sum;
	char msg[RCOW_ERR_MSG_MAX];
};

/* Accept one connection, answer FLUSH with FLUSHED, count frames until FINISH. */
static void *serve(void *arg)
{
	struct server *sv = arg;
	struct rcow_err err = { 0 };
	struct mig_conn *c = NULL;
	uint8_t *buf = malloc(MIG_MAX_PAYLOAD), out[64];
	struct mig_hdr h;
	struct mig_data dd;
	uint64_t seq;

	sv->accept_rc = mig_accept(sv->lfd, &sv->psk, 5000, &c, &err);
	if (sv->accept_rc || !buf) {
		snprintf(sv->msg, sizeof(sv->msg), "%s", err.msg);
		free(buf);
		return NULL;
	}
	for (;;) {
		sv->recv_rc = mig_recv(c, &h, buf, MIG_MAX_PAYLOAD, 5000, &err);
		if (sv->recv_rc)
			break;
		sv->frames++;
		if (h.type == MIG_DATA && !mig_dec_data(buf, h.len, &dd, &err))
			for (size_t i = 0; i < dd.len; i++)
				sv->data_sum += dd.data[i];
		if (h.type == MIG_FLUSH && !mig_dec_seq(buf, h.len, &seq, &err))
			mig_send(c, out, (size_t)mig_enc_seq(out, sizeof(out), MIG_FLUSHED, seq),
				 &err);
		if (h.type == MIG_FINISH) {
			mig_send(c, out, (size_t)mig_enc_empty(out, sizeof(out), MIG_COMMITTED),
				 &err);
			break;
		}
	}
	mig_conn_close(c);
	free(buf);
	return NULL;
}

static int port_of(int fd)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	getsockname(fd, (struct sockaddr *)&sa, &sl);
	return ntohs(sa.sin_port);
}

static void key(struct mig_psk *p, const char *id, uint8_t fill)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->identity, sizeof(p->identity), "%s", id);
	memset(p->key, fill, 32);
	p->key_len = 32;
}

/* One client run against a fresh server thread; returns the connect result. */
static int run(struct tap *t, const struct mig_psk *ckey, struct server *sv, bool frames)
{
	struct rcow_err err = { 0 };
	struct mig_conn *c = NULL;
	pthread_t th;
	char hp[32];
	uint8_t out[64], *data = malloc(65536), *buf = malloc(MIG_MAX_PAYLOAD);
	struct mig_hdr h;
	uint64_t seq = 0;
	int r;

	if (!data || !buf || mig_listen("127.0.0.1:0", &sv->lfd, &err)) {
		tap_ok(t, false, "listen on loopback: %s", err.msg);
		free(data);
		free(buf);
		return -1;
	}
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port_of(sv->lfd));
	pthread_create(&th, NULL, serve, sv);
	r = mig_connect(hp, ckey, 5000, &c, &err);
	if (!r && frames) {
		const struct mig_counts *n = mig_conn_counts(c);
		uint64_t sum = 0;

		for (int i = 0; i < 65536; i++) {
			data[i] = (uint8_t)(i * 7);
			sum += data[i];
		}
		mig_enc_data_head(out, 0, 5, 1, 65536, &err);
		tap_ok(t, !mig_send_data(c, out, data, 65536, &err), "DATA sent: %s", err.msg);
		mig_send(c, out, (size_t)mig_enc_seq(out, sizeof(out), MIG_FLUSH, 42), &err);
		tap_ok(t, !mig_recv(c, &h, buf, MIG_MAX_PAYLOAD, 5000, &err) &&
		       h.type == MIG_FLUSHED && !mig_dec_seq(buf, h.len, &seq, &err) && seq == 42,
		       "FLUSH answered with FLUSHED 42");
		mig_send(c, out, (size_t)mig_enc_empty(out, sizeof(out), MIG_FINISH), &err);
		tap_ok(t, !mig_recv(c, &h, buf, MIG_MAX_PAYLOAD, 5000, &err) &&
		       h.type == MIG_COMMITTED, "FINISH answered with COMMITTED");
		tap_ok(t, n->sent.frames[MIG_DATA] == 1 &&
		       n->sent.bytes[MIG_DATA] == MIG_HDR_SIZE + MIG_DATA_HEAD + 65536 &&
		       n->sent.bytes[MIG_FLUSH] == 16 && n->recvd.frames[MIG_FLUSHED] == 1 &&
		       n->recvd.bytes[MIG_COMMITTED] == 8, "bytes on the wire counted per type");
		pthread_join(th, NULL);
		tap_ok(t, sv->frames == 3 && sv->data_sum == sum,
		       "the server got DATA, FLUSH, FINISH with the bytes intact");
	} else {
		pthread_join(th, NULL);
	}
	if (c)
		mig_conn_close(c);
	close(sv->lfd);
	free(data);
	free(buf);
	return r;
}

/* Accept one connection, then read nothing until the client is done. */
static void *stall(void *arg)
{
	struct server *sv = arg;
	struct rcow_err err = { 0 };
	struct mig_conn *c = NULL;

	sv->accept_rc = mig_accept(sv->lfd, &sv->psk, 5000, &c, &err);
	if (!sv->accept_rc) {
		struct pollfd p = { .fd = sv->recv_rc, .events = POLLIN };

		/*
		 * The client closes its end of the pipe when its send has
		 * failed; 10 s at most, so that a send that never fails ends.
		 */
		while (poll(&p, 1, 10000) < 0 && errno == EINTR)
			;
		mig_conn_close(c);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * A peer that takes nothing (its receive window closed, as behind a dead
 * link the data is never acknowledged): with a peer timeout of 1 s the
 * source's send fails within a few seconds (8 s; the peer gives up at
 * 10 s), EHOSTDOWN, naming the timeout.
 */
static void test_dead_peer(struct tap *t, const struct mig_psk *psk)
{
	struct rcow_err err = { 0 };
	struct mig_conn *c = NULL;
	struct server sv = { .psk = *psk };
	uint8_t head[MIG_HDR_SIZE + MIG_DATA_HEAD], *data = calloc(1, 65536);
	int pfd[2] = { -1, -1 }, r = -1;
	double t0, took = 0;
	pthread_t th;
	char hp[32];

	if (!data || pipe(pfd) || mig_listen("127.0.0.1:0", &sv.lfd, &err)) {
		tap_ok(t, false, "a dead peer: setup: %s", err.msg);
		free(data);
		return;
	}
	sv.recv_rc = pfd[0];
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port_of(sv.lfd));
	pthread_create(&th, NULL, stall, &sv);
	if (!mig_connect(hp, psk, 5000, &c, &err)) {
		mig_conn_watch_peer(c, 1000);
		mig_enc_data_head(head, 0, 0, 1, 65536, &err);
		t0 = now_s();
		/* the socket buffers fill, then the window stays closed */
		do {
			r = mig_send_data(c, head, data, 65536, &err);
			took = now_s() - t0;
		} while (!r && took < 30);
	}
	close(pfd[1]);
	pthread_join(th, NULL);
	tap_ok(t, r == -EHOSTDOWN && took < 8 &&
	       strstr(err.msg, "answered nothing for 1.0 s (migrate_peer_timeout)"),
	       "a peer that takes nothing: the send fails after %.1f s (peer timeout 1 s): %s",
	       took, err.msg);
	if (c)
		mig_conn_close(c);
	close(pfd[0]);
	close(sv.lfd);
	free(data);
}

struct aborted {
	struct server sv;
	int go;			/* read end of a pipe: the client closes */
	int flushed_rc, abort_rc;
	uint64_t seq;
	struct mig_abort a;
	char msg[RCOW_ERR_MSG_MAX];
};

/*
 * The destination's side: a FLUSHED the source will never read, then
 * (once the source sent FLUSH, ABORT and is closing) FLUSH read and
 * answered, and the next frame read: the ABORT.
 */
static void *abort_peer(void *arg)
{
	struct aborted *ab = arg;
	struct rcow_err err = { 0 };
	struct mig_conn *c = NULL;
	uint8_t out[64], *buf = malloc(MIG_MAX_PAYLOAD);
	struct pollfd p = { .fd = ab->go, .events = POLLIN };
	struct mig_hdr h;

	ab->flushed_rc = ab->abort_rc = -1;
	ab->sv.accept_rc = mig_accept(ab->sv.lfd, &ab->sv.psk, 5000, &c, &err);
	if (ab->sv.accept_rc || !buf) {
		free(buf);
		return NULL;
	}
	mig_send(c, out, (size_t)mig_enc_seq(out, sizeof(out), MIG_FLUSHED, 1), &err);
	while (poll(&p, 1, 10000) < 0 && errno == EINTR)
		;
	usleep(200 * 1000);	/* the source's close(2) is done by now, or waits */
	if (!mig_recv(c, &h, buf, MIG_MAX_PAYLOAD, 5000, &err) && h.type == MIG_FLUSH &&
	    !mig_dec_seq(buf, h.len, &ab->seq, &err))
		ab->flushed_rc = mig_send(c, out,
					  (size_t)mig_enc_seq(out, sizeof(out), MIG_FLUSHED,
							      ab->seq), &err);
	if (!ab->flushed_rc) {
		ab->abort_rc = mig_recv(c, &h, buf, MIG_MAX_PAYLOAD, 5000, &err);
		if (!ab->abort_rc && (h.type != MIG_ABORT || mig_dec_abort(buf, h.len, &ab->a, &err)))
			ab->abort_rc = -EPROTO;
		if (!ab->abort_rc)
			snprintf(ab->msg, sizeof(ab->msg), "%s", ab->a.msg);
	}
	if (ab->abort_rc)
		snprintf(ab->msg, sizeof(ab->msg), "%s", err.msg);
	mig_conn_close(c);
	free(buf);
	return NULL;
}

/*
 * The source aborts: FLUSH, ABORT with its reason, close - with the
 * destination's FLUSHED unread.  A close(2) with unread bytes resets the
 * connection: the destination's answer to FLUSH would then fail and it
 * would never read the ABORT (migrate-daemon check 37, flaky).
 */
static void test_abort_delivered(struct tap *t, const struct mig_psk *psk)
{
	struct rcow_err err = { 0 };
	struct mig_conn *c = NULL;
	struct aborted ab = { .sv.psk = *psk };
	uint8_t out[MIG_HDR_SIZE + 6 + MIG_MSG_MAX];
	int pfd[2] = { -1, -1 };
	pthread_t th;
	char hp[32];

	if (pipe(pfd) || mig_listen("127.0.0.1:0", &ab.sv.lfd, &err)) {
		tap_ok(t, false, "an ABORT before close: setup: %s", err.msg);
		return;
	}
	ab.go = pfd[0];
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port_of(ab.sv.lfd));
	pthread_create(&th, NULL, abort_peer, &ab);
	if (!mig_connect(hp, psk, 5000, &c, &err)) {
		usleep(100 * 1000);	/* the unsolicited FLUSHED is here */
		mig_send(c, out, (size_t)mig_enc_seq(out, sizeof(out), MIG_FLUSH, 7), &err);
		mig_send(c, out, (size_t)mig_enc_abort(out, sizeof(out), ECANCELED,
						       "the source aborted the migration"), &err);
		close(pfd[1]);
		mig_conn_close(c);
	} else {
		close(pfd[1]);
	}
	pthread_join(th, NULL);
	tap_ok(t, ab.flushed_rc == 0 && ab.seq == 7,
	       "an ABORT before close, the peer's frame unread: the peer still answers FLUSH");
	tap_ok(t, ab.abort_rc == 0 && ab.a.error == ECANCELED &&
	       !strcmp(ab.msg, "the source aborted the migration"),
	       "... and reads the ABORT with its reason: %s", ab.msg);
	close(pfd[0]);
	close(ab.sv.lfd);
}

/*
 * A relay between the source and the destination (plain TCP) that, once
 * told, passes hold more bytes towards the destination and then holds
 * the rest back for STALL_MS, as a link that stalls in the middle of a
 * TLS record.
 */
#define STALL_MS 1500
struct relay {
	int lfd, up_port;
	atomic_long hold;		/* bytes still to pass before the stall; < 0: none */
	double stall_from, stall_to;	/* now_s() */
};

static void *relay_run(void *arg)
{
	struct relay *rl = arg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)rl->up_port) };
	int down = accept(rl->lfd, NULL, NULL), up = socket(AF_INET, SOCK_STREAM, 0);
	uint8_t b[4096];

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (down < 0 || up < 0 || connect(up, (struct sockaddr *)&sa, sizeof(sa)))
		goto out;
	for (;;) {
		struct pollfd p[2] = { { .fd = down, .events = POLLIN }, { .fd = up, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, 10000) <= 0)
			break;
		if (p[1].revents) {	/* destination to source: as it comes */
			n = read(up, b, sizeof(b));
			if (n <= 0 || write(down, b, (size_t)n) != n)
				break;
		}
		if (p[0].revents) {
			long hold = atomic_load(&rl->hold);
			size_t want = hold > 0 && hold < (long)sizeof(b) ? (size_t)hold : sizeof(b);

			n = read(down, b, want);
			if (n <= 0 || write(up, b, (size_t)n) != n)
				break;
			if (hold > 0 && atomic_fetch_sub(&rl->hold, n) == n) {
				rl->stall_from = now_s();
				usleep(STALL_MS * 1000);
				rl->stall_to = now_s();
				atomic_store(&rl->hold, -1);
			}
		}
	}
out:
	if (down >= 0)
		close(down);
	if (up >= 0)
		close(up);
	return NULL;
}

struct slicer {
	struct server sv;
	int rc[2];
	uint8_t type[2];
	uint64_t sum[2];
	double timeouts_at[64];	/* now_s() of each -ETIMEDOUT */
	unsigned int timeouts;
};

/* The destination: two frames, read in 300 ms slices as the daemon reads in 1 s ones. */
static void *slicer_run(void *arg)
{
	struct slicer *sl = arg;
	struct rcow_err err = { 0 };
	struct mig_conn *c = NULL;
	uint8_t *buf = malloc(MIG_MAX_PAYLOAD);
	struct mig_data dd;
	struct mig_hdr h;

	sl->rc[0] = sl->rc[1] = -1;
	if (!buf || mig_accept(sl->sv.lfd, &sl->sv.psk, 5000, &c, &err)) {
		free(buf);
		return NULL;
	}
	for (int f = 0; f < 2; f++) {
		int r;

		while ((r = mig_recv(c, &h, buf, MIG_MAX_PAYLOAD, 300, &err)) == -ETIMEDOUT &&
		       sl->timeouts < 64)
			sl->timeouts_at[sl->timeouts++] = now_s();
		sl->rc[f] = r;
		if (r)
			break;
		sl->type[f] = (uint8_t)h.type;
		if (h.type == MIG_DATA && !mig_dec_data(buf, h.len, &dd, &err))
			for (size_t i = 0; i < dd.len; i++)
				sl->sum[f] += dd.data[i];
	}
	mig_conn_close(c);
	free(buf);
	return NULL;
}

static void test_record_stall(struct tap *t, const struct mig_psk *psk)
{
	struct slicer sl = { .sv = { .psk = *psk } };
	struct relay rl = { .lfd = -1 };
	struct rcow_err err = { 0 };
	struct mig_conn *c = NULL;
	uint8_t head[64], *data = malloc(65536);
	uint64_t sum = 0;
	pthread_t th[2];
	unsigned int in_stall = 0;
	char hp[32];

	atomic_init(&rl.hold, -1);
	if (!data || mig_listen("127.0.0.1:0", &sl.sv.lfd, &err) ||
	    mig_listen("127.0.0.1:0", &rl.lfd, &err)) {
		tap_ok(t, false, "a record held up half-way: setup: %s", err.msg);
		free(data);
		return;
	}
	rl.up_port = port_of(sl.sv.lfd);
	pthread_create(&th[0], NULL, slicer_run, &sl);
	pthread_create(&th[1], NULL, relay_run, &rl);
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port_of(rl.lfd));
	if (!mig_connect(hp, psk, 5000, &c, &err)) {
		for (int i = 0; i < 65536; i++) {
			data[i] = (uint8_t)(i * 13 + 1);
			sum += data[i];
		}
		usleep(200 * 1000);		/* the handshake's last bytes went by */
		atomic_store(&rl.hold, 3000);	/* into the first 16 KiB record */
		mig_enc_data_head(head, 0, 0, 1, 65536, &err);
		mig_send_data(c, head, data, 65536, &err);
		mig_send(c, head, (size_t)mig_enc_seq(head, sizeof(head), MIG_FLUSH, 9), &err);
	}
	pthread_join(th[0], NULL);
	for (unsigned int i = 0; i < sl.timeouts; i++)
		in_stall += sl.timeouts_at[i] > rl.stall_from && sl.timeouts_at[i] < rl.stall_to;
	tap_ok(t, rl.stall_to > rl.stall_from && in_stall >= 1,
	       "a record held up half-way for %d ms: the destination's 300 ms receives timed out %u times meanwhile",
	       STALL_MS, in_stall);
	tap_ok(t, sl.rc[0] == 0 && sl.type[0] == MIG_DATA && sl.sum[0] == sum,
	       "... then the DATA arrives whole, the bytes intact (rc %d)", sl.rc[0]);
	tap_ok(t, sl.rc[1] == 0 && sl.type[1] == MIG_FLUSH,
	       "... and the frame after it is read (rc %d): the stream was not cut", sl.rc[1]);
	if (c)
		mig_conn_close(c);
	pthread_join(th[1], NULL);
	close(rl.lfd);
	close(sl.sv.lfd);
	free(data);
}

void test_mig_tls(struct tap *t)
{
	struct rcow_err err = { 0 };
	struct mig_psk good, bad;
	struct server sv;
	int fd, r;

	key(&good, "alice", 0x11);
	memset(&sv, 0, sizeof(sv));
	sv.psk = good;
	r = run(t, &good, &sv, true);
	tap_ok(t, r == 0 && sv.accept_rc == 0, "the right key: handshake done");

	key(&bad, "alice", 0x12);
	memset(&sv, 0, sizeof(sv));
	sv.psk = good;
	r = run(t, &bad, &sv, false);
	tap_ok(t, r == -EACCES && sv.accept_rc == -EACCES && sv.frames == 0,
	       "a wrong key fails the handshake on both sides, no frame read: %s", sv.msg);

	key(&bad, "mallory", 0x11);
	memset(&sv, 0, sizeof(sv));
	sv.psk = good;
	r = run(t, &bad, &sv, false);
	tap_ok(t, r == -EACCES && sv.accept_rc == -EACCES && sv.frames == 0,
	       "another identity fails the handshake, no frame read");

	tap_ok(t, mig_listen("127.0.0.1", &fd, &err) == -EINVAL &&
	       mig_listen("127.0.0.1:70000", &fd, &err) == -EINVAL &&
	       mig_listen("[::1:80", &fd, &err) == -EINVAL,
	       "a malformed HOST:PORT is refused: %s", err.msg);
	test_dead_peer(t, &good);
	test_abort_delivered(t, &good);
	test_record_stall(t, &good);
}
