// SPDX-License-Identifier: GPL-2.0
/*
 * mig-tls.c - the live migration connection: TCP + GnuTLS with a
 * pre-shared key (see mig-tls.h).
 *
 * TLS 1.3 only, key exchange PSK with ECDHE (forward secrecy) or plain
 * PSK; no certificates.  The server's key callback answers only for the
 * one identity of its key file: another identity, or the right one with
 * another key, fails the handshake (the client's Finished does not
 * verify), and mig_accept() returns the error without reading anything
 * from the peer.  The key is copied into GnuTLS' credentials and never
 * logged.
 *
 * No state outside the struct mig_conn of a connection; its counters are
 * written by the thread that owns it only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "mig-tls.h"

#define PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK:+PSK"
#define MIG_HANDSHAKE_MS 10000		/* a server's handshake, whatever accept's wait */
#define MIG_FRAME_MS 60000		/* a frame started: the longest wait for more of it */
#define MIG_PULL_MS 1000		/* SO_RCVTIMEO: the longest one recv(2) blocks */
/*
 * TCP_NOTSENT_LOWAT: at most about this much waits unsent in the socket.
 * Frames go in order, so one the peer must see soon (REMOTE, FLUSH and
 * POSTCOPY at a post-copy switch) queues behind what the rounds left in
 * the socket, and the source takes the extents there as sent.  Without a
 * bound the send buffer grows to megabytes (loopback's 64 KiB segments
 * make it grow at once): at 256 kbit/s a post-copy finish waited 83 s for
 * 39 extents queued there, which then did not count as remote
 * (migrate-postcopy-rate; with the bound: 2.3 s, all 64 remote).
 */
#define MIG_NOTSENT_LOWAT (128 << 10)

struct mig_conn {
	int fd;
	gnutls_session_t s;
	gnutls_psk_client_credentials_t ccred;
	gnutls_psk_server_credentials_t scred;
	struct mig_psk psk;		/* server: for the key callback */
	bool up;			/* handshake done, no fatal error since */
	unsigned int peer_timeout_ms;	/* mig_conn_watch_peer(), 0: kernel defaults */
	char peer[INET6_ADDRSTRLEN + 16];
	struct mig_counts n;
};

/*
 * "host:port", "[v6]:port", ":port" into host (may become "") and port;
 * port 0 (any) only for a listener.
 */
static int split_hostport(const char *hp, bool any_port, char *host, size_t hcap, char *port,
			  size_t pcap, struct rcow_err *err)
{
	const char *colon, *h = hp;
	size_t hl;

	if (hp[0] == '[') {
		const char *close = strchr(hp, ']');

		if (!close || close[1] != ':')
			goto bad;
		h = hp + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon)
			goto bad;
		hl = (size_t)(colon - hp);
	}
	if (hl >= hcap || strlen(colon + 1) >= pcap || !colon[1] ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) < (any_port ? 0 : 1) ||
	    atoi(colon + 1) > 65535)
		goto bad;
	memcpy(host, h, hl);
	host[hl] = 0;
	strcpy(port, colon + 1);
	return 0;
bad:
	return rcow_err_set(err, EINVAL, "'%s' is not HOST:PORT (port 1 to 65535)", hp);
}

static int resolve(const char *hp, bool passive, struct addrinfo **res, struct rcow_err *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	char host[256], port[8];
	int r;

	r = split_hostport(hp, passive, host, sizeof(host), port, sizeof(port), err);
	if (r)
		return r;
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (r)
		return rcow_err_set(err, EHOSTUNREACH, "cannot resolve %s: %s", hp,
				    gai_strerror(r));
	return 0;
}

int mig_listen(const char *hostport, int *fd, struct rcow_err *err)
{
	struct addrinfo *res, *ai;
	int r, s = -1, one = 1, e = 0;

	r = resolve(hostport, true, &res, err);
	if (r)
		return r;
	for (ai = res; ai; ai = ai->ai_next) {
		s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (s < 0) {
			e = errno;
			continue;
		}
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(s, ai->ai_addr, ai->ai_addrlen) && !listen(s, 4))
			break;
		e = errno;
		close(s);
		s = -1;
	}
	freeaddrinfo(res);
	if (s < 0)
		return rcow_err_set(err, e ? e : EADDRNOTAVAIL, "cannot listen on %s: %s",
				    hostport, strerror(e ? e : EADDRNOTAVAIL));
	*fd = s;
	return 0;
}

static int tls_fail(struct rcow_err *err, int code, const char *what, int gr)
{
	return rcow_err_set(err, code, "%s: %s", what, gnutls_strerror(gr));
}

/* Server: the key of the one identity we know; anything else fails the handshake. */
static int psk_lookup(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
	struct mig_conn *c = gnutls_session_get_ptr(s);

	if (!c || strcmp(user, c->psk.identity))
		return -1;
	key->data = gnutls_malloc(c->psk.key_len);
	if (!key->data)
		return -1;
	memcpy(key->data, c->psk.key, c->psk.key_len);
	key->size = (unsigned int)c->psk.key_len;
	return 0;
}

static void conn_free(struct mig_conn *c)
{
	if (!c)
		return;
	if (c->s)
		gnutls_deinit(c->s);
	if (c->ccred)
		gnutls_psk_free_client_credentials(c->ccred);
	if (c->scred)
		gnutls_psk_free_server_credentials(c->scred);
	if (c->fd >= 0)
		close(c->fd);
	mig_psk_wipe(&c->psk);
	free(c);
}

static void peer_name(struct mig_conn *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";

	if (!getpeername(c->fd, (struct sockaddr *)&ss, &sl))
		getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(c->peer, sizeof(c->peer), "%s%s%s:%s", ss.ss_family == AF_INET6 ? "[" : "",
		 host, ss.ss_family == AF_INET6 ? "]" : "", port);
}

/* The handshake on c->fd, as client or server. */
static int handshake(struct mig_conn *c, const struct mig_psk *psk, bool server, int timeout_ms,
		     struct rcow_err *err)
{
	gnutls_datum_t key = { (unsigned char *)psk->key, (unsigned int)psk->key_len };
	int one = 1, lowat = MIG_NOTSENT_LOWAT, gr;

	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	peer_name(c);
	gr = gnutls_init(&c->s, server ? GNUTLS_SERVER : GNUTLS_CLIENT);
	if (gr < 0)
		return tls_fail(err, ENOMEM, "TLS session", gr);
	if (server) {
		c->psk = *psk;
		gr = gnutls_psk_allocate_server_credentials(&c->scred);
		if (gr >= 0) {
			gnutls_psk_set_server_credentials_function(c->scred, psk_lookup);
			gr = gnutls_credentials_set(c->s, GNUTLS_CRD_PSK, c->scred);
		}
		gnutls_session_set_ptr(c->s, c);
	} else {
		gr = gnutls_psk_allocate_client_credentials(&c->ccred);
		if (gr >= 0)
			gr = gnutls_psk_set_client_credentials(c->ccred, psk->identity, &key,
							       GNUTLS_PSK_KEY_RAW);
		if (gr >= 0)
			gr = gnutls_credentials_set(c->s, GNUTLS_CRD_PSK, c->ccred);
	}
	if (gr >= 0)
		gr = gnutls_priority_set_direct(c->s, PRIORITY, NULL);
	if (gr < 0)
		return tls_fail(err, EINVAL, "TLS setup", gr);
	gnutls_transport_set_int(c->s, c->fd);
	gnutls_handshake_set_timeout(c->s, timeout_ms < 0 ? 0 : (unsigned int)timeout_ms);
	do {
		gr = gnutls_handshake(c->s);
	} while (gr < 0 && !gnutls_error_is_fatal(gr));
	if (gr < 0)
		return rcow_err_set(err, EACCES,
				    "TLS handshake with %s failed (wrong or missing key?): %s",
				    c->peer, gnutls_strerror(gr));
	/* see recv_all(): a record in part is kept by GnuTLS, not waited on */
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO,
		   &(struct timeval){ MIG_PULL_MS / 1000, MIG_PULL_MS % 1000 * 1000 },
		   sizeof(struct timeval));
	c->up = true;
	return 0;
}

int mig_connect(const char *hostport, const struct mig_psk *psk, int timeout_ms,
		struct mig_conn **out, struct rcow_err *err)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct addrinfo *res, *ai;
	struct mig_conn *c;
	int r, e = 0;

	r = resolve(hostport, false, &res, err);
	if (r)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c) {
		freeaddrinfo(res);
		return rcow_err_set(err, ENOMEM, "out of memory");
	}
	c->fd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (c->fd < 0) {
			e = errno;
			continue;
		}
		/* connect(2) honours the send timeout */
		if (timeout_ms > 0)
			setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (!connect(c->fd, ai->ai_addr, ai->ai_addrlen))
			break;
		e = errno;
		close(c->fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		conn_free(c);
		return rcow_err_set(err, e ? e : EHOSTUNREACH, "cannot connect to %s: %s",
				    hostport, strerror(e ? e : EHOSTUNREACH));
	}
	tv = (struct timeval){ 0, 0 };
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	r = handshake(c, psk, false, timeout_ms, err);
	if (r) {
		conn_free(c);
		return r;
	}
	*out = c;
	return 0;
}

int mig_accept(int lfd, const struct mig_psk *psk, int timeout_ms, struct mig_conn **out,
	       struct rcow_err *err)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	struct mig_conn *c;
	int r;

	r = poll(&p, 1, timeout_ms);
	if (r < 0)
		return rcow_err_set(err, errno, "poll: %s", strerror(errno));
	if (!r)
		return -ETIMEDOUT;
	c = calloc(1, sizeof(*c));
	if (!c)
		return rcow_err_set(err, ENOMEM, "out of memory");
	c->fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c->fd < 0) {
		r = errno;
		conn_free(c);
		return rcow_err_set(err, r, "accept: %s", strerror(r));
	}
	r = handshake(c, psk, true, MIG_HANDSHAKE_MS, err);
	if (r) {
		conn_free(c);
		return r;
	}
	*out = c;
	return 0;
}

const char *mig_conn_peer(const struct mig_conn *c)
{
	return c->peer;
}

const struct mig_counts *mig_conn_counts(const struct mig_conn *c)
{
	return &c->n;
}

/*
 * The peer is dead once it acknowledged nothing for ms: TCP_USER_TIMEOUT,
 * which also ends keepalive (elapsed since the last segment received >= ms
 * with a probe out).  So the probes' interval bounds how long after a cut
 * ends the connection notices it is back: the first probe after it is
 * answered.  A probe every twelfth of the timeout (at least a second)
 * lets an idle connection live through a cut of all but about that much
 * of the timeout.  With a probe every third (as before), a connection
 * quiet just before a cut of a little over a third of the timeout lost
 * two probes and died at the timeout, the link back for seconds by then
 * (migrate-link-cut's idle cut).
 */
void mig_conn_watch_peer(struct mig_conn *c, unsigned int ms)
{
	int one = 1, every = ms / 12000 ? (int)(ms / 12000) : 1, probes = 12;

	c->peer_timeout_ms = ms;
	setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &every, sizeof(every));
	setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &every, sizeof(every));
	setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
	setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

/*
 * A send or receive that failed with gr: the connection is down.  The
 * kernel's ETIMEDOUT (errno of the failed send(2)/recv(2), kept by
 * GnuTLS) is the peer timeout of mig_conn_watch_peer(): EHOSTDOWN, never
 * -ETIMEDOUT, which means "no frame yet" to mig_recv()'s callers.
 */
static int conn_failed(struct mig_conn *c, int gr, int e, const char *dir,
		       struct rcow_err *err)
{
	c->up = false;
	if ((gr == GNUTLS_E_PUSH_ERROR || gr == GNUTLS_E_PULL_ERROR) && e == ETIMEDOUT)
		return rcow_err_set(err, EHOSTDOWN,
				    "%s %s: the peer answered nothing for %.1f s (migrate_peer_timeout)",
				    dir, c->peer, c->peer_timeout_ms / 1000.0);
	return rcow_err_set(err, ECONNRESET, "%s %s: %s", dir, c->peer, gnutls_strerror(gr));
}

static int send_all(struct mig_conn *c, const void *p, size_t len, struct rcow_err *err)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n;

		errno = 0;
		n = gnutls_record_send(c->s, b, len);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			return conn_failed(c, (int)n, errno, "sending to", err);
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static void count(struct mig_count *k, uint8_t type, size_t bytes)
{
	if (type < MIG_NR_TYPES) {
		k->frames[type]++;
		k->bytes[type] += bytes;
	}
}

int mig_send(struct mig_conn *c, const uint8_t *frame, size_t len, struct rcow_err *err)
{
	int r = send_all(c, frame, len, err);

	if (!r)
		count(&c->n.sent, frame[0], len);
	return r;
}

int mig_send_data(struct mig_conn *c, const uint8_t *head, const void *data, size_t nbytes,
		  struct rcow_err *err)
{
	int r;

	gnutls_record_cork(c->s);
	r = send_all(c, head, MIG_HDR_SIZE + MIG_DATA_HEAD, err);
	if (!r)
		r = send_all(c, data, nbytes, err);
	if (!r) {
		do {
			errno = 0;
			r = gnutls_record_uncork(c->s, GNUTLS_RECORD_WAIT);
		} while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
		if (r < 0)
			return conn_failed(c, r, errno, "sending to", err);
		r = 0;
		count(&c->n.sent, MIG_DATA, MIG_HDR_SIZE + MIG_DATA_HEAD + nbytes);
	}
	return r;
}

/*
 * Wait up to timeout_ms (< 0: no limit) for something to read: true if
 * there is (decrypted bytes GnuTLS holds, or bytes on the socket).
 */
static bool readable(struct mig_conn *c, int timeout_ms)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int n;

	if (gnutls_record_check_pending(c->s))
		return true;
	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	return n != 0;	/* an error: the receive reports it */
}

/*
 * Exactly len bytes.  Nothing of a frame within timeout_ms (< 0: no limit)
 * is -ETIMEDOUT: the caller may wait again.  Once a frame has started it
 * must go on arriving, MIG_FRAME_MS at most between two parts of it.
 *
 * The waits are poll(2) here and the socket's SO_RCVTIMEO (MIG_PULL_MS),
 * never gnutls_record_set_timeout(): when its timeout fires in the middle
 * of a record, GnuTLS 3.7 frees the part of the record it had read
 * (_gnutls_stream_read()), those bytes are gone from the stream, and the
 * next record fails to decrypt - a stall longer than the receive slice at
 * the wrong moment ended the migration.  A recv(2) that times out instead
 * is EAGAIN, and GnuTLS keeps the part it read for the next call.
 */
static int recv_all(struct mig_conn *c, uint8_t *b, size_t len, int timeout_ms, bool started,
		    struct rcow_err *err)
{
	uint64_t since = now_ms();	/* the call, then the last part received */
	size_t got = 0;

	while (got < len) {
		int limit = got || started ? MIG_FRAME_MS : timeout_ms, left = -1;
		uint64_t waited = now_ms() - since;
		ssize_t n;

		if (limit >= 0)
			left = waited >= (uint64_t)limit ? 0 : limit - (int)waited;
		if (!readable(c, left)) {
			if (!got && !started)
				return -ETIMEDOUT;
			c->up = false;
			return rcow_err_set(err, ETIMEDOUT,
					    "receiving from %s: a frame stopped half-way for %d s",
					    c->peer, MIG_FRAME_MS / 1000);
		}
		errno = 0;
		n = gnutls_record_recv(c->s, b + got, len - got);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;	/* SO_RCVTIMEO: a record in part, kept */
		if (n == 0) {
			c->up = false;
			return rcow_err_set(err, ECONNRESET, "%s closed the connection", c->peer);
		}
		if (n < 0)
			return conn_failed(c, (int)n, errno, "receiving from", err);
		got += (size_t)n;
		since = now_ms();
	}
	return 0;
}

int mig_recv(struct mig_conn *c, struct mig_hdr *h, uint8_t *buf, size_t cap, int timeout_ms,
	     struct rcow_err *err)
{
	uint8_t hdr[MIG_HDR_SIZE];
	int r;

	r = recv_all(c, hdr, sizeof(hdr), timeout_ms, false, err);
	if (r)
		return r;
	r = mig_hdr_parse(hdr, h, err);
	if (r) {
		c->up = false;
		return r;
	}
	if (h->len > cap) {
		c->up = false;
		return rcow_err_set(err, EPROTO, "%s frame of %u bytes from %s: too large here",
				    mig_type_name(h->type), h->len, c->peer);
	}
	r = recv_all(c, buf, h->len, MIG_FRAME_MS, true, err);
	if (!r)
		count(&c->n.recvd, h->type, MIG_HDR_SIZE + h->len);
	return r;
}

void mig_conn_shutdown(struct mig_conn *c)
{
	shutdown(c->fd, SHUT_RDWR);
}

/*
 * After our close_notify and FIN: drop what the peer still sends until it
 * closes its end too, for at most MIG_LINGER_MS.  A close(2) that finds
 * unread bytes (a FLUSHED sent before the peer read our last frame) makes
 * Linux answer with a reset instead of a FIN; the peer's next send then
 * fails and it ends on that error, never reading our last frame (the
 * ABORT with its reason).  The bytes are TLS records, dropped unread.
 */
static void drain_until_closed(int fd)
{
	uint64_t t0 = now_ms();
	char b[4096];

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t waited = now_ms() - t0;
		ssize_t n;

		if (waited >= MIG_LINGER_MS)
			return;
		n = poll(&p, 1, (int)(MIG_LINGER_MS - waited));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		n = read(fd, b, sizeof(b));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;		/* closed (or failed): nothing left unread */
	}
}

void mig_conn_close(struct mig_conn *c)
{
	if (c && c->up) {
		gnutls_record_set_timeout(c->s, 1000);
		if (gnutls_bye(c->s, GNUTLS_SHUT_WR) == GNUTLS_E_SUCCESS &&
		    !shutdown(c->fd, SHUT_WR))
			drain_until_closed(c->fd);
	}
	conn_free(c);
}
