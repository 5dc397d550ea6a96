// SPDX-License-Identifier: GPL-2.0
/*
 * kernel-nl.c - the engine's kernel side (struct kernel_ops) over the
 * generic netlink socket of librcow (rcow/nl.h) and the COW device nodes
 * of rcow/cow.h.  ctx is the struct daemon, whose nl is connected.
 */
#define _GNU_SOURCE
#include <errno.h>

#include "daemon.h"

static int k_fill_done(void *ctx, const struct rcow_fault *f, uint32_t status,
		       struct rcow_err *err)
{
	struct daemon *d = ctx;

	/* no ack awaited: a refusal comes back as an event (main.c) */
	return rcow_nl_fill_done_async(d->nl, f, status, err);
}

static int k_quiesce_done(void *ctx, const struct rcow_quiesce *q, struct rcow_err *err)
{
	struct daemon *d = ctx;

	return rcow_nl_quiesce_done_async(d->nl, q, err);
}

static int k_hydrate(void *ctx, uint32_t dev_id, uint64_t first, uint32_t count,
		     uint32_t *queued, struct rcow_err *err)
{
	struct daemon *d = ctx;

	return rcow_nl_hydrate(d->nl, dev_id, first, count, queued, err);
}

static int k_get_bitmap(void *ctx, uint32_t dev_id, uint32_t bitmap, uint64_t first,
			uint8_t *data, size_t cap, uint64_t *got_first, uint32_t *got_count,
			struct rcow_err *err)
{
	struct daemon *d = ctx;

	return rcow_nl_get_bitmap(d->nl, dev_id, bitmap, first, data, cap, got_first, got_count,
				  err);
}

static int no_kernel(struct rcow_err *err)
{
	return rcow_err_set(err, ENOTCONN, "no kernel connection");
}

static int k_get_device(void *ctx, uint32_t dev_id, struct rcow_device_info *info,
			struct rcow_err *err)
{
	struct daemon *d = ctx;

	return d->nl ? rcow_nl_get_device(d->nl, dev_id, info, err) : no_kernel(err);
}

static int k_open_cow(void *ctx, const struct rcow_device_info *info, struct rcow_cow **out,
		      struct rcow_err *err)
{
	struct daemon *d = ctx;

	return rcow_cow_open_dev(info->cow_major, info->cow_minor, d->opt.node_dir, out, err);
}

static int k_commit_mark(void *ctx, const struct rcow_commit *c, struct rcow_err *err)
{
	struct daemon *d = ctx;

	return rcow_nl_commit_mark(d->nl, c, err);
}

static int k_commit_end(void *ctx, const struct rcow_commit *c, struct rcow_err *err)
{
	struct daemon *d = ctx;

	return rcow_nl_commit_end(d->nl, c, err);
}

static int k_get_runs(void *ctx, uint32_t dev_id, uint32_t bitmap, uint64_t first,
		      uint32_t count, int (*cb)(const struct rcow_run *run, void *data),
		      void *data, struct rcow_err *err)
{
	struct daemon *d = ctx;

	return d->nl ? rcow_nl_dump_runs(d->nl, dev_id, bitmap, first, count, cb, data, err) :
		       no_kernel(err);
}

static int k_transact(void *ctx, struct nlmsghdr *nlh, struct rcow_err *err)
{
	struct daemon *d = ctx;

	return d->nl ? rcow_nl_transact(d->nl, nlh, NULL, NULL, err) : no_kernel(err);
}

static uint16_t k_family(void *ctx)
{
	struct daemon *d = ctx;

	return d->nl ? rcow_nl_family(d->nl) : 0;
}

const struct kernel_ops kernel_nl_ops = {
	.fill_done = k_fill_done,
	.quiesce_done = k_quiesce_done,
	.hydrate = k_hydrate,
	.get_bitmap = k_get_bitmap,
	.get_device = k_get_device,
	.open_cow = k_open_cow,
	.commit_mark = k_commit_mark,
	.commit_end = k_commit_end,
	.get_runs = k_get_runs,
	.transact = k_transact,
	.family = k_family,
};
