// SPDX-License-Identifier: GPL-2.0
/*
 * nl.c - the helper's generic netlink socket (see include/rcow/nl.h).
 *
 * Design: one libmnl socket, bound to an automatic port id.  The kernel
 * unicasts faults and events to the port that REGISTERed, and the same
 * socket sends every request, so the kernel can tie FILL_DONE to the
 * registered helper if it wants.  Requests are strictly one at a time:
 * rcow_nl_transact() sends with NLM_F_ACK (dumps: NLM_F_DUMP, ended by
 * NLMSG_DONE) and reads until the matching ack.  Messages read meanwhile
 * that are kernel events (FAULT, DEVICE_ADD/REMOVE, HYDRATE_CTL, whatever
 * their sequence number) or that carry another sequence number are copied
 * to a FIFO, which rcow_nl_next_event() empties before it reads the socket
 * again.  Extended acks (NETLINK_EXT_ACK) give the kernel's reason text;
 * NETLINK_CAP_ACK keeps error messages short.  The receive buffer is made
 * large (SO_RCVBUFFORCE, else SO_RCVBUF) because the kernel may send many
 * faults at once, e.g. all outstanding ones at REGISTER.
 *
 * Overruns: the kernel keeps a FAULT it could not deliver and retries it,
 * so a full receive queue loses no fault, but device events (a
 * DEVICE_REMOVE) and acks are lost.  So overruns must surface: the socket
 * does not set NETLINK_NO_ENOBUFS, recv reports ENOBUFS, and
 * rcow_nl_next_event() returns -ENOBUFS; the caller re-reads the device
 * list (rcow_nl_helper_event() does).  The helper must NOT recover by
 * registering again: the kernel answers a REGISTER by resending every
 * fault outstanding at the helper, and filling a fault twice could
 * overwrite data the guest wrote after the first fill.  A request whose
 * ack is lost in an overrun fails with ENOBUFS at once instead of waiting
 * for it: generic netlink handles a request inside sendmsg(), so once the
 * socket is empty nothing more will come.
 *
 * Answers (FILL_DONE, QUIESCE_DONE) are sent without waiting for the ack
 * (the *_async calls): a refusal, e.g. ENOENT for a fault the kernel gave
 * up on, comes back later and is returned by rcow_nl_next_event() as
 * -EREMOTEIO, naming the command it refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <poll.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "rcow/nl.h"

#define RECV_BUF_SIZE (64u * 1024)
#define SOCK_RCVBUF (4 * 1024 * 1024)
#define REPLY_TIMEOUT_MS 30000

struct qmsg {
	struct qmsg *next;
	alignas(8) unsigned char data[];
};

/* Requests sent without waiting for their ack, to name a later refusal. */
#define ASYNC_RING 64

struct async_req {
	uint32_t seq;
	uint8_t cmd;
};

struct rcow_nl {
	struct mnl_socket *sock;
	uint32_t portid;
	uint32_t seq;
	uint16_t family;
	bool overflow;		/* the kernel dropped messages (ENOBUFS) */
	int kerr;		/* errno of the last refusal, 0 if local */
	char kmsg[256];
	unsigned char *rbuf;
	struct qmsg *qhead, *qtail;
	struct async_req async[ASYNC_RING];
	unsigned int async_next;
	alignas(8) unsigned char sbuf[RCOW_MSG_BUF_SIZE];
};

int rcow_nl_fd(const struct rcow_nl *nl)
{
	return mnl_socket_get_fd(nl->sock);
}

bool rcow_nl_has_queued(const struct rcow_nl *nl)
{
	return nl->qhead != NULL || nl->overflow;
}

uint16_t rcow_nl_family(const struct rcow_nl *nl)
{
	return nl->family;
}

int rcow_nl_kernel_error(const struct rcow_nl *nl)
{
	return nl->kerr;
}

const char *rcow_nl_kernel_msg(const struct rcow_nl *nl)
{
	return nl->kmsg;
}

uint32_t rcow_nl_next_seq(struct rcow_nl *nl)
{
	if (++nl->seq == 0)
		nl->seq = 1;
	return nl->seq;
}

static int enqueue(struct rcow_nl *nl, const struct nlmsghdr *m, struct rcow_err *err)
{
	struct qmsg *q = malloc(sizeof(*q) + m->nlmsg_len);

	if (!q)
		return rcow_err_set(err, ENOMEM, "out of memory queueing a kernel message");
	q->next = NULL;
	memcpy(q->data, m, m->nlmsg_len);
	if (nl->qtail)
		nl->qtail->next = q;
	else
		nl->qhead = q;
	nl->qtail = q;
	return 0;
}

static bool is_event(const struct rcow_nl *nl, const struct nlmsghdr *m)
{
	return nl->family && m->nlmsg_type == nl->family && !(m->nlmsg_flags & NLM_F_MULTI) &&
	       rcow_cmd_is_event(rcow_msg_cmd(m));
}

/* Wait until readable, then read one datagram.  Returns bytes, 0 on timeout. */
static int recv_some(struct rcow_nl *nl, int timeout_ms, struct rcow_err *err)
{
	struct pollfd pfd = { .fd = rcow_nl_fd(nl), .events = POLLIN };
	ssize_t n;
	int r;

	r = poll(&pfd, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : rcow_err_set(err, errno, "poll on netlink socket: %s",
							strerror(errno));
	if (r == 0)
		return 0;
	n = mnl_socket_recvfrom(nl->sock, nl->rbuf, RECV_BUF_SIZE);
	if (n < 0) {
		if (errno == ENOBUFS) {
			nl->overflow = true;
			return 0;
		}
		if (errno == EINTR || errno == EAGAIN)
			return 0;
		return rcow_err_set(err, errno, "receiving from the remote_cow netlink socket failed: %s",
				    strerror(errno));
	}
	return (int)n;
}

int rcow_nl_transact(struct rcow_nl *nl, struct nlmsghdr *nlh,
		     int (*cb)(const struct nlmsghdr *reply, void *data), void *data,
		     struct rcow_err *err)
{
	char cbuf[16];
	const char *what;
	uint32_t seq = rcow_nl_next_seq(nl);
	struct timespec start, now;
	int ret = 0, r;
	bool done = false;

	if (!nlh)
		return rcow_err_set(err, EMSGSIZE, "internal error: netlink request did not fit its buffer");
	what = nlh->nlmsg_type == GENL_ID_CTRL ? "CTRL_CMD_GETFAMILY"
			: rcow_cmd_name(rcow_msg_cmd(nlh), cbuf, sizeof(cbuf));
	nl->kerr = 0;
	nl->kmsg[0] = '\0';
	nlh->nlmsg_seq = seq;
	if (!(nlh->nlmsg_flags & NLM_F_DUMP))
		nlh->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return rcow_err_set(err, errno, "sending %s to the kernel failed: %s", what,
				    strerror(errno));
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (!done) {
		bool was_overflow;
		long waited;
		int n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited >= REPLY_TIMEOUT_MS)
			return rcow_err_set(err, ETIMEDOUT,
				"the kernel did not answer %s within %d s%s", what, REPLY_TIMEOUT_MS / 1000,
				nl->overflow ? " (its answer was probably dropped: the socket's receive queue overflowed)" : "");
		/* an overrun may have taken the ack: do not wait for it once the socket is empty */
		was_overflow = nl->overflow;
		n = recv_some(nl, was_overflow ? 0 : (int)(REPLY_TIMEOUT_MS - waited), err);
		if (n < 0)
			return n;
		if (n == 0 && nl->overflow && !was_overflow)
			continue;	/* this read reported the overrun: read on */
		if (n == 0 && nl->overflow)
			return rcow_err_set(err, ENOBUFS,
				"the kernel's answer to %s was lost: the socket's receive queue overflowed; retry",
				what);
		for (const struct nlmsghdr *m = (void *)nl->rbuf; mnl_nlmsg_ok(m, n);
		     m = mnl_nlmsg_next(m, &n)) {
			if (m->nlmsg_type == NLMSG_ERROR) {
				struct rcow_ack ack = { 0 };

				if (rcow_msg_parse_ack(m, &ack, err) < 0)
					continue;
				if (ack.seq != seq) {
					/* a refusal of an earlier answer sent without waiting */
					if (ack.error) {
						r = enqueue(nl, m, err);
						if (r)
							return r;
					}
					continue;
				}
				done = true;
				if (ack.error && !ret) {
					char nbuf[16];

					nl->kerr = ack.error;
					snprintf(nl->kmsg, sizeof(nl->kmsg), "%s", ack.msg);
					ret = rcow_err_set(err, ack.error, "the kernel refused %s: %s (%s)%s%s",
						what, rcow_errno_name(ack.error, nbuf, sizeof(nbuf)),
						strerror(ack.error), ack.msg[0] ? ": " : "", ack.msg);
				}
			} else if (m->nlmsg_type == NLMSG_DONE) {
				if (m->nlmsg_seq != seq)
					continue;
				done = true;
				if (m->nlmsg_len >= NLMSG_HDRLEN + sizeof(int) && !ret) {
					int e = *(const int *)mnl_nlmsg_get_payload(m);

					if (e < 0) {
						char nbuf[16];

						nl->kerr = -e;
						ret = rcow_err_set(err, -e, "the kernel's %s dump failed: %s (%s)",
							what, rcow_errno_name(-e, nbuf, sizeof(nbuf)), strerror(-e));
					}
				}
			} else if (m->nlmsg_type < NLMSG_MIN_TYPE) {
				continue;	/* NOOP, OVERRUN */
			} else if (is_event(nl, m) || (m->nlmsg_seq != seq && m->nlmsg_type == nl->family)) {
				r = enqueue(nl, m, err);
				if (r)
					return r;
			} else if (m->nlmsg_seq == seq) {
				if (cb && !ret) {
					r = cb(m, data);
					if (r)
						ret = r;
				}
			}
		}
	}
	return ret;
}

static int family_cb(const struct nlmsghdr *m, void *data)
{
	struct { uint16_t *id; struct rcow_err *err; } *ctx = data;

	return rcow_msg_parse_family(m, ctx->id, ctx->err);
}

int rcow_nl_open(struct rcow_nl **out, struct rcow_err *err)
{
	struct rcow_nl *nl;
	struct nlmsghdr *nlh;
	int one = 1, rcvbuf = SOCK_RCVBUF, r, fd;
	uint16_t id = 0;
	struct { uint16_t *id; struct rcow_err *err; } ctx = { &id, err };

	nl = calloc(1, sizeof(*nl));
	if (!nl || !(nl->rbuf = malloc(RECV_BUF_SIZE))) {
		free(nl);
		return rcow_err_set(err, ENOMEM, "out of memory opening the netlink socket");
	}
	nl->seq = (uint32_t)time(NULL);
	nl->sock = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);
	if (!nl->sock) {
		r = rcow_err_set(err, errno, "cannot open a generic netlink socket: %s", strerror(errno));
		goto fail;
	}
	/* best effort: older kernels lack these, which only costs detail */
	mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(nl->sock, NETLINK_CAP_ACK, &one, sizeof(one));
	fd = mnl_socket_get_fd(nl->sock);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = rcow_err_set(err, errno, "cannot bind the generic netlink socket: %s", strerror(errno));
		goto fail;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);

	nlh = rcow_msg_getfamily(nl->sbuf, 0, REMOTE_COW_GENL_NAME);
	r = rcow_nl_transact(nl, nlh, family_cb, &ctx, err);
	if (r == -ENOENT)
		r = rcow_err_set(err, ENOENT,
			"generic netlink family '%s' not found: the dm-remote-cow module is not loaded; run 'modprobe dm-remote-cow'",
			REMOTE_COW_GENL_NAME);
	if (r)
		goto fail;
	if (!id) {
		r = rcow_err_set(err, EPROTO, "the kernel's answer to the family lookup of '%s' had no id",
				 REMOTE_COW_GENL_NAME);
		goto fail;
	}
	nl->family = id;
	*out = nl;
	return 0;
fail:
	rcow_nl_close(nl);
	return r;
}

void rcow_nl_close(struct rcow_nl *nl)
{
	struct qmsg *q, *next;

	if (!nl)
		return;
	for (q = nl->qhead; q; q = next) {
		next = q->next;
		free(q);
	}
	if (nl->sock)
		mnl_socket_close(nl->sock);
	free(nl->rbuf);
	free(nl);
}

int rcow_nl_register(struct rcow_nl *nl, struct rcow_err *err)
{
	int r = rcow_nl_transact(nl, rcow_msg_register(nl->sbuf, nl->family, 0), NULL, NULL, err);

	if (r == -EBUSY)
		return rcow_err_set(err, EBUSY,
			"another remote-cow helper is already registered in this network namespace (remote-cowd or rcow-fill?); stop it first");
	if (r == -EPERM)
		return rcow_err_set(err, EPERM,
			"registering as the remote-cow helper needs CAP_NET_ADMIN; run as root");
	return r;
}

int rcow_nl_unregister(struct rcow_nl *nl, struct rcow_err *err)
{
	return rcow_nl_transact(nl, rcow_msg_unregister(nl->sbuf, nl->family, 0), NULL, NULL, err);
}

struct dev_ctx {
	int (*cb)(const struct rcow_device_info *d, void *data);
	void *data;
	struct rcow_device_info *one;	/* get_device: copy here */
	bool found;
	struct rcow_err *err;
};

static int device_cb(const struct nlmsghdr *m, void *data)
{
	struct dev_ctx *ctx = data;
	struct rcow_device_info *d = ctx->one;
	int r;

	if (!d) {
		d = malloc(sizeof(*d));
		if (!d)
			return rcow_err_set(ctx->err, ENOMEM, "out of memory reading the device list");
	}
	r = rcow_msg_parse_device(m, d, ctx->err);
	if (r) {
		rcow_err_prefix(ctx->err, "bad device record from the kernel");
	} else {
		ctx->found = true;
		if (ctx->cb)
			r = ctx->cb(d, ctx->data);
	}
	if (!ctx->one)
		free(d);
	return r;
}

int rcow_nl_dump_devices(struct rcow_nl *nl,
			 int (*cb)(const struct rcow_device_info *d, void *data), void *data,
			 struct rcow_err *err)
{
	struct dev_ctx ctx = { cb, data, NULL, false, err };

	return rcow_nl_transact(nl, rcow_msg_get_device(nl->sbuf, nl->family, 0, true, 0),
				device_cb, &ctx, err);
}

struct runs_ctx {
	int (*cb)(const struct rcow_run *run, void *data);
	void *data;
	struct rcow_err *err;
};

static int run_cb(const struct nlmsghdr *m, void *data)
{
	struct runs_ctx *ctx = data;
	struct rcow_run run;
	int r;

	r = rcow_msg_parse_run(m, &run, ctx->err);
	if (r) {
		rcow_err_prefix(ctx->err, "bad run record from the kernel");
		return r;
	}
	return ctx->cb(&run, ctx->data);
}

int rcow_nl_dump_runs(struct rcow_nl *nl, uint32_t dev_id, uint32_t bitmap, uint64_t first,
		      uint32_t count, int (*cb)(const struct rcow_run *run, void *data),
		      void *data, struct rcow_err *err)
{
	struct runs_ctx ctx = { cb, data, err };

	return rcow_nl_transact(nl, rcow_msg_get_runs(nl->sbuf, nl->family, 0, dev_id, bitmap, first,
						      count),
				run_cb, &ctx, err);
}

int rcow_nl_get_device(struct rcow_nl *nl, uint32_t dev_id, struct rcow_device_info *d,
		       struct rcow_err *err)
{
	struct dev_ctx ctx = { NULL, NULL, d, false, err };
	int r;

	r = rcow_nl_transact(nl, rcow_msg_get_device(nl->sbuf, nl->family, 0, false, dev_id),
			     device_cb, &ctx, err);
	if (r)
		return r;
	if (!ctx.found)
		return rcow_err_set(err, ENODEV, "the kernel sent no record for device %u", dev_id);
	return 0;
}

int rcow_nl_fill_done(struct rcow_nl *nl, const struct rcow_fault *f, uint32_t status,
		      struct rcow_err *err)
{
	return rcow_nl_transact(nl, rcow_msg_fill_done(nl->sbuf, nl->family, 0, f->dev_id, f->cookie,
						       f->first, f->count, status),
				NULL, NULL, err);
}

int rcow_nl_quiesce_done(struct rcow_nl *nl, const struct rcow_quiesce *q, struct rcow_err *err)
{
	return rcow_nl_transact(nl, rcow_msg_quiesce(nl->sbuf, nl->family, 0,
						     RCOW_CMD_QUIESCE_DONE, q),
				NULL, NULL, err);
}

/* Send with no ack asked: the kernel answers only a refusal, read later. */
static int send_async(struct rcow_nl *nl, struct nlmsghdr *nlh, struct rcow_err *err)
{
	char cbuf[16];
	uint8_t cmd;

	if (!nlh)
		return rcow_err_set(err, EMSGSIZE, "internal error: netlink request did not fit its buffer");
	cmd = rcow_msg_cmd(nlh);
	nlh->nlmsg_seq = rcow_nl_next_seq(nl);
	nlh->nlmsg_flags &= (uint16_t)~NLM_F_ACK;
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return rcow_err_set(err, errno, "sending %s to the kernel failed: %s",
				    rcow_cmd_name(cmd, cbuf, sizeof(cbuf)), strerror(errno));
	nl->async[nl->async_next++ % ASYNC_RING] = (struct async_req){ nlh->nlmsg_seq, cmd };
	return 0;
}

int rcow_nl_fill_done_async(struct rcow_nl *nl, const struct rcow_fault *f, uint32_t status,
			    struct rcow_err *err)
{
	return send_async(nl, rcow_msg_fill_done(nl->sbuf, nl->family, 0, f->dev_id, f->cookie,
						 f->first, f->count, status), err);
}

int rcow_nl_quiesce_done_async(struct rcow_nl *nl, const struct rcow_quiesce *q,
			       struct rcow_err *err)
{
	return send_async(nl, rcow_msg_quiesce(nl->sbuf, nl->family, 0, RCOW_CMD_QUIESCE_DONE, q),
			  err);
}

int rcow_nl_commit_mark(struct rcow_nl *nl, const struct rcow_commit *c, struct rcow_err *err)
{
	return rcow_nl_transact(nl, rcow_msg_commit_mark(nl->sbuf, nl->family, 0, c), NULL, NULL,
				err);
}

int rcow_nl_commit_end(struct rcow_nl *nl, const struct rcow_commit *c, struct rcow_err *err)
{
	return rcow_nl_transact(nl, rcow_msg_commit_end(nl->sbuf, nl->family, 0, c), NULL, NULL,
				err);
}

struct hyd_ctx {
	uint32_t *queued;
	struct rcow_err *err;
};

static int hydrate_cb(const struct nlmsghdr *m, void *data)
{
	struct hyd_ctx *ctx = data;

	return rcow_msg_parse_hydrate_reply(m, ctx->queued, ctx->err);
}

int rcow_nl_hydrate(struct rcow_nl *nl, uint32_t dev_id, uint64_t first, uint32_t count,
		    uint32_t *queued, struct rcow_err *err)
{
	uint32_t dummy = 0;
	struct hyd_ctx ctx = { queued ? queued : &dummy, err };

	*ctx.queued = 0;
	return rcow_nl_transact(nl, rcow_msg_hydrate(nl->sbuf, nl->family, 0, dev_id, first, count),
				hydrate_cb, &ctx, err);
}

struct bm_ctx {
	uint8_t *data;
	size_t cap;
	uint64_t *first;
	uint32_t *count;
	bool got;
	struct rcow_err *err;
};

static int bitmap_cb(const struct nlmsghdr *m, void *data)
{
	struct bm_ctx *ctx = data;
	struct rcow_bitmap_chunk c;
	size_t need;
	int r;

	r = rcow_msg_parse_bitmap(m, &c, ctx->err);
	if (r)
		return r;
	need = (c.count + 7u) / 8;
	if (need > ctx->cap)
		return rcow_err_set(ctx->err, ENOSPC,
			"bitmap chunk of %u extents does not fit the caller's %zu-byte buffer",
			c.count, ctx->cap);
	memcpy(ctx->data, c.data, need);
	*ctx->first = c.first;
	*ctx->count = c.count;
	ctx->got = true;
	return 0;
}

int rcow_nl_get_bitmap(struct rcow_nl *nl, uint32_t dev_id, uint32_t bitmap, uint64_t first,
		       uint8_t *data, size_t cap, uint64_t *got_first, uint32_t *got_count,
		       struct rcow_err *err)
{
	struct bm_ctx ctx = { data, cap, got_first, got_count, false, err };
	int r;

	r = rcow_nl_transact(nl, rcow_msg_get_bitmap(nl->sbuf, nl->family, 0, dev_id, bitmap, first),
			     bitmap_cb, &ctx, err);
	if (r)
		return r;
	if (!ctx.got)
		return rcow_err_set(err, EPROTO, "the kernel acknowledged GET_BITMAP but sent no bitmap");
	return 0;
}

/* A refusal of an answer sent without waiting: -EREMOTEIO, naming it. */
static int async_refusal(struct rcow_nl *nl, const struct nlmsghdr *m, struct rcow_event *ev,
			 struct rcow_err *err)
{
	struct rcow_ack ack;
	char cbuf[16], nbuf[16];
	uint8_t cmd = 0;

	if (rcow_msg_parse_ack(m, &ack, err) < 0)
		return -EPROTO;
	for (unsigned int i = 0; i < ASYNC_RING; i++)
		if (nl->async[i].seq == ack.seq && nl->async[i].cmd)
			cmd = nl->async[i].cmd;
	memset(ev, 0, sizeof(*ev));
	ev->cmd = cmd;		/* what was refused, 0 if no longer known */
	nl->kerr = ack.error;
	snprintf(nl->kmsg, sizeof(nl->kmsg), "%s", ack.msg);
	rcow_err_set(err, ack.error, "the kernel refused %s: %s (%s)%s%s",
		     cmd ? rcow_cmd_name(cmd, cbuf, sizeof(cbuf)) : "an earlier answer",
		     rcow_errno_name(ack.error, nbuf, sizeof(nbuf)), strerror(ack.error),
		     ack.msg[0] ? ": " : "", ack.msg);
	return -EREMOTEIO;
}

static int pop_event(struct rcow_nl *nl, struct rcow_event *ev, struct rcow_err *err)
{
	struct qmsg *q = nl->qhead;
	int r;

	nl->qhead = q->next;
	if (!nl->qhead)
		nl->qtail = NULL;
	if (((const struct nlmsghdr *)q->data)->nlmsg_type == NLMSG_ERROR) {
		r = async_refusal(nl, (const struct nlmsghdr *)q->data, ev, err);
		free(q);
		return r;
	}
	r = rcow_msg_parse_event((const struct nlmsghdr *)q->data, ev, err);
	free(q);
	if (r) {
		rcow_err_prefix(err, "skipped a malformed message from the kernel");
		return -EPROTO;
	}
	return 1;
}

int rcow_nl_next_event(struct rcow_nl *nl, struct rcow_event *ev, int timeout_ms,
		       struct rcow_err *err)
{
	int n, r;

	if (nl->overflow) {
		nl->overflow = false;
		return rcow_err_set(err, ENOBUFS,
			"the netlink socket's receive queue overflowed: the kernel retries faults, but device events may have been lost; re-read the device list");
	}
	if (nl->qhead)
		return pop_event(nl, ev, err);
	n = recv_some(nl, timeout_ms, err);
	if (n < 0)
		return n;
	for (const struct nlmsghdr *m = (void *)nl->rbuf; mnl_nlmsg_ok(m, n);
	     m = mnl_nlmsg_next(m, &n)) {
		bool refusal = m->nlmsg_type == NLMSG_ERROR &&
			       m->nlmsg_len >= NLMSG_HDRLEN + sizeof(struct nlmsgerr) &&
			       ((const struct nlmsgerr *)mnl_nlmsg_get_payload(m))->error != 0;

		if (m->nlmsg_type == nl->family || refusal) {
			r = enqueue(nl, m, err);
			if (r)
				return r;
		}
	}
	if (nl->overflow)
		return rcow_nl_next_event(nl, ev, 0, err);
	return nl->qhead ? pop_event(nl, ev, err) : 0;
}

int rcow_nl_connect(struct rcow_nl **out, const struct rcow_nl_helper *h, struct rcow_err *err)
{
	int r;

	r = rcow_nl_open(out, err);
	if (!r)
		r = rcow_nl_register(*out, err);
	if (r)
		return r;
	r = rcow_nl_dump_devices(*out, h->device, h->data, err);
	if (r)
		rcow_err_prefix(err, "reading the device list failed");
	return r;
}

int rcow_nl_helper_event(struct rcow_nl *nl, const struct rcow_nl_helper *h,
			 struct rcow_event *ev, int timeout_ms, struct rcow_err *err)
{
	char line[RCOW_ERR_MSG_MAX + 64];
	struct rcow_err own;
	int r;

	if (!err)
		err = &own;
	for (;;) {
		r = rcow_nl_next_event(nl, ev, timeout_ms, err);
		if (r == -ENOBUFS) {
			/* never re-register: that would resend faults being filled */
			if (h->log) {
				snprintf(line, sizeof(line), "%s; reading the device list again", err->msg);
				h->log(h->data, line);
			}
			if (h->resync)
				h->resync(h->data, true);
			r = rcow_nl_dump_devices(nl, h->device, h->data, err);
			if (r) {
				rcow_err_prefix(err, "reading the device list failed");
				return r;
			}
			if (h->resync)
				h->resync(h->data, false);
			continue;
		}
		if (r == -EREMOTEIO) {
			if (h->refused)
				h->refused(h->data, ev->cmd, nl->kerr, err->msg);
			else if (h->log)
				h->log(h->data, err->msg);
			continue;
		}
		if (r == -EPROTO) {
			if (h->log)
				h->log(h->data, err->msg);
			continue;
		}
		return r;
	}
}

int rcow_nl_disconnect(struct rcow_nl *nl, struct rcow_err *err)
{
	int r;

	if (!nl)
		return 0;
	r = rcow_nl_unregister(nl, err);
	if (r && rcow_nl_kernel_error(nl) == ENOENT)
		r = 0;
	rcow_nl_close(nl);
	return r;
}
