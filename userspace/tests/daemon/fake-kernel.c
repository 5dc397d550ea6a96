// SPDX-License-Identifier: GPL-2.0
/*
 * fake-kernel.c - see fake-kernel.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake-kernel.h"


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
	memset(&k->v[k->n], 0, sizeof(k->v[k->n]));
	k->v[k->n].cmd = cmd;
	k->v[k->n].dev_id = dev_id;
	k->v[k->n].cookie = cookie;
	k->v[k->n].first = first;
	k->v[k->n].status = status;
	k->v[k->n++].at_ms = now_ms();
	return 0;
}

static int f_fill_done(void *ctx, const struct rcow_fault *f, uint32_t status,
		       struct rcow_err *err)
{
	struct fake_kernel *k = ctx;
	int r;

	(void)err;
	fake_mig_filled(k, f->dev_id, f->first, f->count, status);
	r = record(k, RCOW_CMD_FILL_DONE, f->dev_id, f->cookie, f->first, status);
	if (!r)
		k->v[k->n - 1].count = f->count;
	return r;
}

static int f_quiesce_done(void *ctx, const struct rcow_quiesce *q, struct rcow_err *err)
{
	struct fake_kernel *k = ctx;

	(void)err;
	if (k->on_quiesce_done)
		k->on_quiesce_done(k, q);
	return record(k, RCOW_CMD_QUIESCE_DONE, q->dev_id, q->cookie, 0, 0);
}

/*
 * The kernel queues nothing for HYDRATE (no prefetch faults in these
 * tests) but on a post-copy destination (fake_mig_hydrate()).
 */
static int f_hydrate(void *ctx, uint32_t dev_id, uint64_t first, uint32_t count,
		     uint32_t *queued, struct rcow_err *err)
{
	(void)err;
	if (queued)
		*queued = 0;
	if (queued)
		fake_mig_hydrate(ctx, dev_id, first, count, queued);
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
	struct fake_kernel *k = ctx;

	if (!fake_mig_device(k, dev_id, info))
		return 0;
	if (k->c.have_dev && k->c.dev.dev_id == dev_id) {
		*info = k->c.dev;
		if (!k->c.running) {
			info->commit_state = k->c.end_status ? RCOW_COMMIT_FAILED : RCOW_COMMIT_DONE;
			info->target_uri[0] = '\0';
		}
		return 0;
	}
	return rcow_err_set(err, ENODEV, "fake kernel: no device %u", dev_id);
}

bool fake_commit_bit(const uint8_t *set, uint64_t ext)
{
	return (set[ext / 8] >> (ext % 8)) & 1;
}

void fake_set_bit(uint8_t *set, uint64_t ext, bool on)
{
	if (on)
		set[ext / 8] |= (uint8_t)(1u << (ext % 8));
	else
		set[ext / 8] &= (uint8_t)~(1u << (ext % 8));
}

uint64_t fake_commit_left(const struct fake_kernel *k)
{
	uint64_t n = 0;

	for (uint64_t i = 0; k->c.upload && i < k->c.nr; i++)
		n += fake_commit_bit(k->c.upload, i);
	return n;
}

static int f_commit_mark(void *ctx, const struct rcow_commit *c, struct rcow_err *err)
{
	struct fake_kernel *k = ctx;
	struct fake_commit *fc = &k->c;
	int r;

	if (!fc->running || fc->dev_id != c->dev_id || fc->gen != c->gen)
		return rcow_err_set(err, ESTALE, "fake kernel: no commit %llu running",
				    (unsigned long long)c->gen);
	if (c->count == 0 || c->first >= fc->nr || c->count > fc->nr - c->first)
		return rcow_err_set(err, EINVAL, "fake kernel: mark outside the device");
	for (uint64_t e = c->first; e < c->first + c->count; e++) {
		if (c->mark == RCOW_MARK_PRESERVED && fake_commit_bit(fc->upload, e))
			fc->preserved_early++;
		if (c->mark == RCOW_MARK_UPLOADED && fake_commit_bit(fc->upload, e))
			fc->uploaded++;
		fake_set_bit(fc->held, e, false);
		if (c->mark == RCOW_MARK_UPLOADED)
			fake_set_bit(fc->upload, e, false);
	}
	r = record(k, RCOW_CMD_COMMIT_MARK, c->dev_id, c->gen, c->first, c->mark);
	if (!r)
		k->v[k->n - 1].count = c->count;
	if (c->mark == RCOW_MARK_PRESERVED && fc->on_preserved)
		fc->on_preserved(k, c->first, c->count);
	return r;
}

static int f_commit_end(void *ctx, const struct rcow_commit *c, struct rcow_err *err)
{
	struct fake_kernel *k = ctx;
	struct fake_commit *fc = &k->c;

	if (!fc->running || fc->dev_id != c->dev_id || fc->gen != c->gen)
		return rcow_err_set(err, ESTALE, "fake kernel: no commit %llu running",
				    (unsigned long long)c->gen);
	fc->end_tries++;
	if (c->status == 0 && fc->eagain) {
		fc->eagain--;
		if (fc->eagain_ext >= 0)
			fake_set_bit(fc->upload, (uint64_t)fc->eagain_ext, true);
	}
	if (c->status == 0 && fake_commit_left(k))
		return rcow_err_set(err, EAGAIN, "fake kernel: extents still to upload");
	fc->running = false;
	fc->end_status = c->status;
	if (record(k, RCOW_CMD_COMMIT_END, c->dev_id, c->gen, 0, c->status))
		return -ENOMEM;
	snprintf(k->v[k->n - 1].msg, sizeof(k->v[k->n - 1].msg), "%s", c->message);
	return 0;
}

static int f_get_runs(void *ctx, uint32_t dev_id, uint32_t bitmap, uint64_t first,
		      uint32_t count, int (*cb)(const struct rcow_run *run, void *data),
		      void *data, struct rcow_err *err)
{
	struct fake_kernel *k = ctx;
	struct fake_commit *fc = &k->c;
	const uint8_t *set;

	if (bitmap == RCOW_BITMAP_MIGRATE_ROUND || bitmap == RCOW_BITMAP_DIRTY_MIGRATE)
		return fake_mig_runs(k, dev_id, bitmap, first, count, cb, data, err);
	if (!fc->upload || fc->dev_id != dev_id)
		return rcow_err_set(err, ENODEV, "fake kernel: no device %u", dev_id);
	if (bitmap == RCOW_BITMAP_COMMIT_UPLOAD)
		set = fc->upload;
	else if (bitmap == RCOW_BITMAP_COMMIT_HELD)
		set = fc->held;
	else
		return rcow_err_set(err, EINVAL, "fake kernel: bitmap %u not modelled", bitmap);
	(void)count;	/* the commit asks for whole sets */
	return fake_runs(set, fc->nr, first, cb, data);
}

int fake_runs(const uint8_t *set, uint64_t nr, uint64_t first,
	      int (*cb)(const struct rcow_run *run, void *data), void *data)
{
	for (uint64_t e = first; e < nr;) {
		struct rcow_run run = { e, 0 };
		int r;

		if (!fake_commit_bit(set, e)) {
			e++;
			continue;
		}
		while (e < nr && fake_commit_bit(set, e)) {
			run.count++;
			e++;
		}
		r = cb(&run, data);
		if (r)
			return r;
	}
	return 0;
}

int fake_commit_begin(struct fake_kernel *k, const struct rcow_device_info *info, uint64_t gen,
		      const char *target_uri, const uint64_t *v, size_t n)
{
	struct fake_commit *fc = &k->c;
	size_t bytes = (size_t)((info->nr_extents + 7) / 8);

	free(fc->upload);
	free(fc->held);
	fc->upload = calloc(1, bytes);
	fc->held = calloc(1, bytes);
	if (!fc->upload || !fc->held)
		return -ENOMEM;
	fc->running = true;
	fc->dev_id = info->dev_id;
	fc->gen = gen;
	fc->nr = info->nr_extents;
	fc->end_tries = 0;
	fc->preserved_early = fc->uploaded = 0;
	for (size_t i = 0; i < n; i++) {
		fake_set_bit(fc->upload, v[i], true);
		fake_set_bit(fc->held, v[i], true);
	}
	fc->dev = *info;
	fc->dev.commit_state = RCOW_COMMIT_UPLOADING;
	fc->dev.commit_gen = gen;
	fc->dev.commit_total = n;
	snprintf(fc->dev.target_uri, sizeof(fc->dev.target_uri), "%s", target_uri);
	fc->dev.have |= 1ull << RCOW_A_COMMIT_STATE;
	fc->have_dev = true;
	return 0;
}

size_t fake_count_mark(const struct fake_kernel *k, uint32_t mark)
{
	size_t n = 0;

	for (size_t i = 0; i < k->n; i++)
		n += k->v[i].cmd == RCOW_CMD_COMMIT_MARK && k->v[i].status == mark;
	return n;
}

static int f_open_cow(void *ctx, const struct rcow_device_info *info, struct rcow_cow **out,
		      struct rcow_err *err)
{
	struct fake_kernel *k = ctx;
	const char *mig = fake_mig_cow(k, info->dev_id);
	int r;

	/* a migration device's: maybe in its job's thread, k left alone */
	if (mig)
		return rcow_cow_open_path(mig, RCOW_COW_ALLOW_BUFFERED, out, err);
	r = rcow_cow_open_path(k->cow_path, RCOW_COW_ALLOW_BUFFERED, out, err);
	if (!r)
		k->cow_fd = (*out)->fd;
	return r;
}

static int f_transact(void *ctx, struct nlmsghdr *nlh, struct rcow_err *err)
{
	return fake_mig_request(ctx, nlh, err);
}

static uint16_t f_family(void *ctx)
{
	(void)ctx;
	return FAKE_FAMILY;
}

const struct kernel_ops fake_kernel_ops = {
	.fill_done = f_fill_done,
	.quiesce_done = f_quiesce_done,
	.hydrate = f_hydrate,
	.get_bitmap = f_get_bitmap,
	.get_device = f_get_device,
	.open_cow = f_open_cow,
	.commit_mark = f_commit_mark,
	.commit_end = f_commit_end,
	.get_runs = f_get_runs,
	.transact = f_transact,
	.family = f_family,
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
	free(k->c.upload);
	free(k->c.held);
	k->c.upload = k->c.held = NULL;
	fake_mig_free(k);
	free(k->v);
	k->v = NULL;
	k->n = k->cap = 0;
}

/* Parse a message the way rcow_nl_next_event() does and hand it to the engine. */
int fake_deliver(struct daemon *d, const struct nlmsghdr *nlh)
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

	return fake_deliver(d, rcow_msg_device(buf, FAKE_FAMILY, 0, cmd, info));
}

int fake_send_run(struct daemon *d, uint8_t cmd, uint32_t dev_id, uint64_t cookie,
		  uint64_t first, uint32_t count, uint32_t flags)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];
	struct rcow_fault f = { .dev_id = dev_id, .first = first, .count = count, .cookie = cookie,
				.flags = flags };

	return fake_deliver(d, rcow_msg_fault(buf, FAKE_FAMILY, 0, cmd, &f));
}

int fake_send_fault(struct daemon *d, uint32_t dev_id, uint64_t cookie, uint64_t first,
		    uint32_t count)
{
	return fake_send_run(d, RCOW_CMD_FAULT, dev_id, cookie, first, count, 0);
}

int fake_send_quiesce(struct daemon *d, uint32_t dev_id, uint64_t cookie)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];
	struct rcow_quiesce q = { .dev_id = dev_id, .cookie = cookie };

	return fake_deliver(d, rcow_msg_quiesce(buf, FAKE_FAMILY, 0, RCOW_CMD_QUIESCE, &q));
}

int fake_send_commit(struct daemon *d, struct fake_kernel *k, uint8_t cmd, uint64_t first,
		     uint32_t count)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];
	struct rcow_commit c;
	uint64_t total = 0;

	memset(&c, 0, sizeof(c));
	c.dev_id = k->c.dev_id;
	c.gen = k->c.gen;
	for (uint64_t i = 0; k->c.held && i < k->c.nr; i++)
		total += fake_commit_bit(k->c.held, i);
	c.total = total;
	c.first = first;
	c.count = count;
	snprintf(c.target_uri, sizeof(c.target_uri), "%s", k->c.dev.target_uri);
	return fake_deliver(d, rcow_msg_commit_event(buf, FAKE_FAMILY, 0, cmd, &c));
}
