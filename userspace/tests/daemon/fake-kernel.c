// SPDX-License-Identifier: GPL-2.0
/*
 * fake-kernel.c - see fake-kernel.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "fake-kernel.h"

#define FAKE_FAMILY 0x42

static int record(struct fake_kernel *k, uint8_t cmd, uint32_t dev_id, uint64_t cookie,
		  uint64_t first, uint32_t status)
{
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 64;
		struct fake_answer *v = realloc(k->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		k->v = v;
		k->cap = cap;
	}
	k->v[k->n++] = (struct fake_answer){ cmd, dev_id, cookie, first, status, now_ms() };
	return 0;
}

static int f_fill_done(void *ctx, const struct rcow_fault *f, uint32_t status,
		       struct rcow_err *err)
{
	(void)err;
	return record(ctx, RCOW_CMD_FILL_DONE, f->dev_id, f->cookie, f->first, status);
}

static int f_quiesce_done(void *ctx, const struct rcow_quiesce *q, struct rcow_err *err)
{
	struct fake_kernel *k = ctx;

	(void)err;
	if (k->on_quiesce_done)
		k->on_quiesce_done(k, q);
	return record(k, RCOW_CMD_QUIESCE_DONE, q->dev_id, q->cookie, 0, 0);
}

/* The kernel queues nothing for HYDRATE: no prefetch faults in these tests. */
static int f_hydrate(void *ctx, uint32_t dev_id, uint64_t first, uint32_t count,
		     uint32_t *queued, struct rcow_err *err)
{
	(void)ctx, (void)dev_id, (void)first, (void)count, (void)err;
	if (queued)
		*queued = 0;
	return 0;
}

static int f_get_bitmap(void *ctx, uint32_t dev_id, uint32_t bitmap, uint64_t first,
			uint8_t *data, size_t cap, uint64_t *got_first, uint32_t *got_count,
			struct rcow_err *err)
{
	(void)ctx, (void)dev_id, (void)bitmap;
	if (cap == 0)
		return rcow_err_set(err, ENOSPC, "fake kernel: no room for a bitmap chunk");
	memset(data, 0, cap);
	*got_first = first;
	*got_count = (uint32_t)(cap * 8 > UINT32_MAX ? UINT32_MAX : cap * 8);
	return 0;
}

static int f_get_device(void *ctx, uint32_t dev_id, struct rcow_device_info *info,
			struct rcow_err *err)
{
	(void)ctx, (void)info;
	return rcow_err_set(err, ENODEV, "fake kernel: no device %u", dev_id);
}

static int f_open_cow(void *ctx, const struct rcow_device_info *info, struct rcow_cow **out,
		      struct rcow_err *err)
{
	struct fake_kernel *k = ctx;
	int r;

	(void)info;
	r = rcow_cow_open_path(k->cow_path, RCOW_COW_ALLOW_BUFFERED, out, err);
	if (!r)
		k->cow_fd = (*out)->fd;
	return r;
}

const struct kernel_ops fake_kernel_ops = {
	.fill_done = f_fill_done,
	.quiesce_done = f_quiesce_done,
	.hydrate = f_hydrate,
	.get_bitmap = f_get_bitmap,
	.get_device = f_get_device,
	.open_cow = f_open_cow,
};

const struct fake_answer *fake_find(const struct fake_kernel *k, uint8_t cmd, uint32_t dev_id,
				    uint64_t cookie)
{
	for (size_t i = 0; i < k->n; i++)
		if (k->v[i].cmd == cmd && k->v[i].dev_id == dev_id && k->v[i].cookie == cookie)
			return &k->v[i];
	return NULL;
}

size_t fake_count(const struct fake_kernel *k, uint8_t cmd)
{
	size_t n = 0;

	for (size_t i = 0; i < k->n; i++)
		n += k->v[i].cmd == cmd;
	return n;
}

void fake_free(struct fake_kernel *k)
{
	free(k->v);
	k->v = NULL;
	k->n = k->cap = 0;
}

/* Parse a message the way rcow_nl_next_event() does and hand it to the engine. */
static int deliver(struct daemon *d, const struct nlmsghdr *nlh)
{
	struct rcow_event ev;
	struct rcow_err err = { 0 };

	if (!nlh)
		return -EMSGSIZE;
	if (rcow_msg_parse_event(nlh, &ev, &err)) {
		logmsg("fake kernel: built a message its own parser refuses: %s", err.msg);
		return -EPROTO;
	}
	engine_event(d, &ev);
	return 0;
}

int fake_send_device(struct daemon *d, uint8_t cmd, const struct rcow_device_info *info)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];

	return deliver(d, rcow_msg_device(buf, FAKE_FAMILY, 0, cmd, info));
}

int fake_send_fault(struct daemon *d, uint32_t dev_id, uint64_t cookie, uint64_t first,
		    uint32_t count)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];
	struct rcow_fault f = { .dev_id = dev_id, .first = first, .count = count, .cookie = cookie };

	return deliver(d, rcow_msg_fault(buf, FAKE_FAMILY, 0, &f));
}

int fake_send_quiesce(struct daemon *d, uint32_t dev_id, uint64_t cookie)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];
	struct rcow_quiesce q = { .dev_id = dev_id, .cookie = cookie };

	return deliver(d, rcow_msg_quiesce(buf, FAKE_FAMILY, 0, RCOW_CMD_QUIESCE, &q));
}
