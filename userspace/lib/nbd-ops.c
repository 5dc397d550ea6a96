// SPDX-License-Identifier: GPL-2.0
/*
 * nbd-ops.c - base source: an NBD export through libnbd (nbd://, nbds://,
 * nbd+unix://).
 *
 * libnbd makes the connection from the original URI string, so TLS and
 * Unix sockets work exactly as libnbd documents them.  Holes come from the
 * "base:allocation" meta context when the server offers it; otherwise every
 * range is data.  TLS credentials (nbds://) come from the configuration
 * file through base->cred, never from the URI in a table line.
 *
 * This source is synchronous with one connection: the CLI (reading a
 * base's size), the test fill program and the unit tests use it.
 * remote-cowd has its own asynchronous, multi-connection engine
 * (userspace/daemon/src-nbd.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libnbd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rcow/base.h"
#include "rcow/config.h"

/* Largest single NBD read or block status request we send. */
#define NBD_MAX_REQUEST (32u << 20)
#define NBD_MAX_STATUS (1u << 30)

struct nbd_priv {
	struct nbd_handle *h;
	bool base_allocation;
	uint64_t max_request;
};

static int nbd_fail(struct rcow_err *err, const char *what, const char *name)
{
	int e = nbd_get_errno();

	return rcow_err_set(err, e ? e : EIO, "%s %s failed: %s", what, name,
			    nbd_get_error() ? nbd_get_error() : "unknown libnbd error");
}

int rcow_nbd_set_cred(struct nbd_handle *h, const struct rcow_cred *cr)
{
	if (!cr)
		return 0;
	if (cr->tls_psk_file && nbd_set_tls_psk_file(h, cr->tls_psk_file) < 0)
		return -1;
	if (cr->tls_certificates && nbd_set_tls_certificates(h, cr->tls_certificates) < 0)
		return -1;
	if (cr->tls_username && nbd_set_tls_username(h, cr->tls_username) < 0)
		return -1;
	return 0;
}

static int nbdops_open(struct rcow_base *base, const struct rcow_uri *uri, struct rcow_err *err)
{
	const struct rcow_cred *cr = base->cred;
	struct nbd_priv *np;
	int64_t size, maxb;
	int r;

	np = calloc(1, sizeof(*np));
	if (!np)
		return rcow_err_set(err, ENOMEM, "out of memory opening NBD base %s", uri->raw);
	np->h = nbd_create();
	if (!np->h) {
		r = nbd_fail(err, "creating a libnbd handle for", uri->raw);
		goto fail;
	}
	if (rcow_nbd_set_cred(np->h, cr) < 0) {
		r = nbd_fail(err, "setting the TLS credentials for", uri->raw);
		goto fail;
	}
	if (nbd_add_meta_context(np->h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0) {
		r = nbd_fail(err, "requesting base:allocation from", uri->raw);
		goto fail;
	}
	if (nbd_connect_uri(np->h, uri->raw) < 0) {
		int e = nbd_get_errno();

		r = rcow_err_set(err, e ? e : EIO,
			"connecting to NBD base %s failed: %s; check that the server is running and reachable and that the export exists%s",
			uri->raw, nbd_get_error() ? nbd_get_error() : "unknown libnbd error",
			rcow_cred_tls_hint(uri->raw, cr));
		goto fail;
	}
	size = nbd_get_size(np->h);
	if (size < 0) {
		r = nbd_fail(err, "getting the size of NBD base", uri->raw);
		goto fail;
	}
	base->size = (uint64_t)size;
	np->base_allocation = nbd_can_meta_context(np->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	np->max_request = NBD_MAX_REQUEST;
	maxb = nbd_get_block_size(np->h, LIBNBD_SIZE_MAXIMUM);
	if (maxb > 0 && (uint64_t)maxb < np->max_request)
		np->max_request = (uint64_t)maxb;
	base->priv = np;
	return 0;
fail:
	if (np->h)
		nbd_close(np->h);
	free(np);
	return r;
}

static int nbdops_pread(struct rcow_base *base, void *buf, size_t len, uint64_t offset,
			struct rcow_err *err)
{
	struct nbd_priv *np = base->priv;
	unsigned char *p = buf;

	while (len > 0) {
		size_t n = len < np->max_request ? len : (size_t)np->max_request;

		if (nbd_pread(np->h, p, n, offset, 0) < 0)
			return nbd_fail(err, "NBD read from", base->name);
		p += n;
		len -= n;
		offset += n;
	}
	return 0;
}

struct status_ctx {
	struct rcow_extent_list *list;
	uint64_t end;		/* clip replies to the range asked */
	struct rcow_err *err;
	int ret;
};

static int status_cb(void *opaque, const char *metacontext, uint64_t offset,
		     uint32_t *entries, size_t nr_entries, int *error)
{
	struct status_ctx *ctx = opaque;
	size_t i;

	(void)error;
	if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	for (i = 0; i + 1 < nr_entries && offset < ctx->end && ctx->ret == 0; i += 2) {
		uint64_t len = entries[i];

		if (len == 0)
			break;
		if (offset + len > ctx->end)
			len = ctx->end - offset;
		ctx->ret = rcow_extent_list_add(ctx->list, offset, len,
						(entries[i + 1] & LIBNBD_STATE_ZERO) != 0, ctx->err);
		offset += len;
	}
	return 0;
}

static int nbdops_block_status(struct rcow_base *base, uint64_t offset, uint64_t len,
			       struct rcow_extent_list *list, struct rcow_err *err)
{
	struct nbd_priv *np = base->priv;
	struct status_ctx ctx = { list, 0, err, 0 };
	size_t before = list->n;

	if (!np->base_allocation)
		return rcow_block_status_all_data(base, offset, len, list, err);
	if (len > NBD_MAX_STATUS)
		len = NBD_MAX_STATUS;
	ctx.end = offset + len;
	if (nbd_block_status(np->h, len, offset,
			     (nbd_extent_callback){ .callback = status_cb, .user_data = &ctx },
			     0) < 0)
		return nbd_fail(err, "NBD block status query to", base->name);
	if (ctx.ret)
		return ctx.ret;
	if (list->n == before)	/* server said nothing useful: assume data */
		return rcow_block_status_all_data(base, offset, len, list, err);
	return 0;
}

static void nbdops_close(struct rcow_base *base)
{
	struct nbd_priv *np = base->priv;

	if (np) {
		nbd_close(np->h);
		free(np);
	}
	base->priv = NULL;
}

const struct rcow_base_ops rcow_nbd_ops = {
	.name = "nbd",
	.open = nbdops_open,
	.pread = nbdops_pread,
	.block_status = nbdops_block_status,
	.close = nbdops_close,
};
