/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mig-tls.c: the live migration connection between two remote-cowd, TLS
 * (GnuTLS) over TCP, authenticated by a pre-shared key (rcow/mig-proto.h's
 * struct mig_psk) on both sides, carrying the frames of rcow/mig-proto.h.
 *
 * The handshake completes before a single frame is read or written: a
 * peer without the key (or with another identity) fails it, and the
 * listener never reads a frame from it.  Every call blocks, with a
 * timeout (ms, -1: none); it is meant for a migration's own thread
 * (mig.c).  A struct mig_conn belongs to one thread, except
 * mig_conn_shutdown(), which any thread may call to wake it up.
 *
 * Bytes on the wire (frame headers and payloads, before TLS) are counted
 * per frame type and direction in conn->sent and conn->recvd.
 */
#ifndef RCOWD_MIG_TLS_H
#define RCOWD_MIG_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "rcow/err.h"
#include "rcow/mig-proto.h"

struct mig_conn;

struct mig_counts {
	struct mig_count sent, recvd;
};

/* A listening TCP socket on HOST:PORT (HOST may be an IPv6 address in brackets, or empty: any). */
int mig_listen(const char *hostport, int *fd, struct rcow_err *err);
/* Connect to HOST:PORT and do the TLS handshake as the client. */
int mig_connect(const char *hostport, const struct mig_psk *psk, int timeout_ms,
		struct mig_conn **out, struct rcow_err *err);
/*
 * Wait up to timeout_ms for a TCP connection on lfd (-ETIMEDOUT), take it
 * and do the TLS handshake as the server (at most 10 s).
 */
int mig_accept(int lfd, const struct mig_psk *psk, int timeout_ms, struct mig_conn **out,
	       struct rcow_err *err);
/* The peer's address, for the log. */
const char *mig_conn_peer(const struct mig_conn *c);
const struct mig_counts *mig_conn_counts(const struct mig_conn *c);

/* Send one whole frame (header included, as the mig_enc_* made it). */
int mig_send(struct mig_conn *c, const uint8_t *frame, size_t len, struct rcow_err *err);
/* Send a DATA frame: head (mig_enc_data_head()) then nbytes of data. */
int mig_send_data(struct mig_conn *c, const uint8_t *head, const void *data, size_t nbytes,
		  struct rcow_err *err);
/*
 * Receive one frame: its header into *h, its payload into buf (cap bytes,
 * at least MIG_MAX_PAYLOAD for DATA).  -ETIMEDOUT after timeout_ms with
 * nothing, -ECONNRESET when the peer closed, -EPROTO for a bad header.
 */
int mig_recv(struct mig_conn *c, struct mig_hdr *h, uint8_t *buf, size_t cap, int timeout_ms,
	     struct rcow_err *err);
/*
 * Find a dead peer within ms: TCP_USER_TIMEOUT (data unacknowledged that
 * long fails the connection, ETIMEDOUT) and keepalive probes every third
 * of it while the connection is idle (an unanswered probe counts the
 * same), so that a side that only waits for the other notices too.  A
 * send or receive that fails so says so, naming the timeout.
 */
void mig_conn_watch_peer(struct mig_conn *c, unsigned int ms);
/* Wake a thread blocked on c (shutdown(2) of the socket); any thread. */
void mig_conn_shutdown(struct mig_conn *c);
/* How long mig_conn_close() waits for the peer to close its end. */
#define MIG_LINGER_MS 2000
/*
 * Free c.  If still up, first say goodbye: TLS close_notify, TCP FIN,
 * then read and drop what the peer still sends until it closes too (at
 * most MIG_LINGER_MS), so that the last frame sent (an ABORT) is always
 * delivered: a close with unread bytes would reset the connection.
 */
void mig_conn_close(struct mig_conn *c);

#endif
