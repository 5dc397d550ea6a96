/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tgt.h - the target of a snapshot commit: a writable NBD export
 * (nbd://, nbds://, nbd+unix://), written through libnbd's asynchronous
 * API from the daemon's poll loop (tgt-nbd.c).  Loop thread only.
 *
 * One connection, many requests in flight.  Credentials (TLS PSK,
 * certificates) come from the configuration section whose prefix matches
 * the target URI, as for bases.  The owner submits writes, zeroes and
 * flushes with a cookie of its own and takes the completions with
 * tgt_next_done() after the loop's events: nothing calls back into it.
 *
 * Failures: a connection that fails, or a request unanswered for
 * request_timeout, closes the connection; every request in flight
 * completes with lost = true (the owner sends it again once the target is
 * ready again), and reconnection follows the policy's backoff.  The owner
 * decides when to give up (tgt_down_since()).
 */
#ifndef RCOWD_TGT_H
#define RCOWD_TGT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "rcow/config.h"

struct tgt;

enum tgt_state { TGT_CONNECTING, TGT_READY, TGT_DOWN };

/* Start connecting to uri.  0 or -errno. */
int tgt_open(struct tgt **out, const char *uri, const struct rcow_policy *pol,
	     const struct rcow_cred *cred, int verbose);
/* Abandon everything in flight and free. */
void tgt_close(struct tgt *t);

enum tgt_state tgt_state(const struct tgt *t);
/*
 * The connection became ready since the last call (once per connection):
 * the owner checks the export (size, read-only) before writing.
 */
bool tgt_just_ready(struct tgt *t);
int64_t tgt_size(const struct tgt *t);
bool tgt_read_only(const struct tgt *t);
bool tgt_can_zero(const struct tgt *t);
bool tgt_can_flush(const struct tgt *t);
/* Last connection failure: errno (0 if none) and a sentence. */
int tgt_last_errno(const struct tgt *t);
const char *tgt_last_error(const struct tgt *t);
/* now_ms() when the target last lost (or had not yet) a ready connection; 0 while ready. */
uint64_t tgt_down_since(const struct tgt *t);
unsigned int tgt_in_flight(const struct tgt *t);

/* Requests (only when TGT_READY): 0 once queued, or -errno. */
int tgt_write(struct tgt *t, const void *buf, uint64_t len, uint64_t off, void *cookie);
int tgt_zero(struct tgt *t, uint64_t len, uint64_t off, void *cookie);
int tgt_flush(struct tgt *t, void *cookie);

/*
 * A completed request: true with its cookie, err (0 or a positive errno)
 * and lost (the connection went away: not the server's answer).
 */
bool tgt_next_done(struct tgt *t, void **cookie, int *err, bool *lost);

/* Loop hooks. */
int tgt_pollfds(struct tgt *t, struct pollfd *p, int max);
void tgt_events(struct tgt *t, const struct pollfd *p, int n);
uint64_t tgt_timer(struct tgt *t, uint64_t now);
void tgt_tick(struct tgt *t, uint64_t now);

#endif
