// SPDX-License-Identifier: GPL-2.0
/*
 * fake-mig.c - the fake kernel's live migration (see struct fake_mig in
 * fake-kernel.h): the source's change and round sets, the destination's
 * incoming state, with the kernel's rules for each request.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake-kernel.h"

static bool any_bit(const uint8_t *set, uint64_t nr)
{
	for (uint64_t e = 0; e < nr; e++)
		if (fake_commit_bit(set, e))
			return true;
	return false;
}

/* Copying, mirroring or finishing: rounds may be taken. */
static bool running(const struct fake_mig *m)
{
	uint32_t s = m->src.migrate_state;

	return s == RCOW_MIGRATE_COPYING || s == RCOW_MIGRATE_MIRRORING ||
	       s == RCOW_MIGRATE_FINISHING || s == RCOW_MIGRATE_POSTCOPY;
}

static void mig_free(struct fake_mig *m)
{
	free(m->dirty);
	free(m->round_set);
	free(m->fills);
	free(m->marks);
	free(m->remote);
	free(m->pending);
	free(m->hyd);
	memset(m, 0, sizeof(*m));
}

int fake_mig_setup_pair(struct fake_mig *m, const struct rcow_device_info *src,
			const char *src_cow, const struct rcow_device_info *dst,
			const char *dst_cow)
{
	size_t bytes = (size_t)((src->nr_extents + 7) / 8);

	mig_free(m);
	m->src_id = src->dev_id;
	m->dst_id = dst->dev_id;
	m->src_cow = src_cow;
	m->dst_cow = dst_cow;
	m->src = *src;
	m->dst = *dst;
	m->dst.migrate_state = RCOW_MIGRATE_INCOMING;
	m->nr = src->nr_extents;
	m->dirty = calloc(1, bytes);
	m->round_set = calloc(1, bytes);
	m->fills = calloc(m->nr, sizeof(*m->fills));
	m->marks = calloc(m->nr, sizeof(*m->marks));
	m->remote = calloc(1, bytes);
	m->pending = calloc(1, bytes);
	m->hyd = calloc(1, bytes);
	m->next_cookie = 1ull << 40;
	return m->dirty && m->round_set && m->fills && m->marks && m->remote && m->pending &&
	       m->hyd ? 0 : -ENOMEM;
}

int fake_mig_setup(struct fake_kernel *k, const struct rcow_device_info *src,
		   const char *src_cow, const struct rcow_device_info *dst, const char *dst_cow)
{
	return fake_mig_setup_pair(&k->m, src, src_cow, dst, dst_cow);
}

void fake_mig_free(struct fake_kernel *k)
{
	mig_free(&k->m);
	mig_free(&k->m2);
}

/* The pair with device dev_id (source or destination), or NULL. */
static struct fake_mig *pair_of(struct fake_kernel *k, uint32_t dev_id)
{
	if (dev_id && (dev_id == k->m.src_id || dev_id == k->m.dst_id))
		return &k->m;
	if (dev_id && (dev_id == k->m2.src_id || dev_id == k->m2.dst_id))
		return &k->m2;
	return NULL;
}

const char *fake_mig_cow(const struct fake_kernel *k, uint32_t dev_id)
{
	const struct fake_mig *m = pair_of((struct fake_kernel *)k, dev_id);

	if (!m)
		return NULL;
	return dev_id == m->src_id ? m->src_cow : m->dst_cow;
}

static int send_src(struct daemon *d, struct fake_mig *m, uint8_t cmd)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];

	return fake_deliver(d, rcow_msg_device(buf, FAKE_FAMILY, 0, cmd, &m->src));
}

int fake_mig_start(struct daemon *d, struct fake_kernel *k, const char *target,
		   const uint64_t *written, size_t n)
{
	return fake_mig_start_pair(d, &k->m, target, written, n);
}

int fake_mig_start_pair(struct daemon *d, struct fake_mig *m, const char *target,
			const uint64_t *written, size_t n)
{
	memset(m->dirty, 0, (size_t)((m->nr + 7) / 8));
	memset(m->round_set, 0, (size_t)((m->nr + 7) / 8));
	for (size_t i = 0; i < n; i++)
		fake_set_bit(m->dirty, written[i], true);
	m->src.migrate_state = RCOW_MIGRATE_COPYING;
	m->src.migrate_round = m->src.migrate_total = m->src.migrate_done = 0;
	snprintf(m->src.migrate_target, sizeof(m->src.migrate_target), "%s", target);
	return send_src(d, m, RCOW_CMD_MIGRATE_START);
}

void fake_mig_write(struct fake_kernel *k, uint64_t ext)
{
	fake_set_bit(k->m.dirty, ext, true);
}

int fake_mig_finish(struct daemon *d, struct fake_kernel *k)
{
	return fake_mig_finish_pair(d, &k->m);
}

int fake_mig_finish_pair(struct daemon *d, struct fake_mig *m)
{
	return fake_mig_finish_flags(d, m, 0);
}

int fake_mig_finish_flags(struct daemon *d, struct fake_mig *m, uint32_t flags)
{
	uint32_t keep = m->src.flags;
	int r;

	if (m->src.migrate_state != RCOW_MIGRATE_COPYING &&
	    m->src.migrate_state != RCOW_MIGRATE_MIRRORING)
		return -EINVAL;
	m->src.migrate_state = RCOW_MIGRATE_FINISHING;
	m->src.flags = flags;
	r = send_src(d, m, RCOW_CMD_MIGRATE_FINISH);
	m->src.flags = keep;
	return r;
}

bool fake_mig_remote(const struct fake_mig *m, uint64_t ext)
{
	return ext < m->nr && fake_commit_bit(m->remote, ext);
}

static int send_remote_fault(struct daemon *d, struct fake_mig *m, uint64_t first, uint32_t count,
			     uint64_t cookie, uint32_t flags)
{
	m->remote_faults++;
	return fake_send_run(d, RCOW_CMD_FAULT, m->dst_id, cookie, first, count,
			     RCOW_FAULT_F_REMOTE | flags);
}

bool fake_mig_guest_read(struct daemon *d, struct fake_mig *m, uint64_t ext, uint64_t cookie)
{
	if (m->dst.migrate_state != RCOW_MIGRATE_POSTCOPY || !fake_mig_remote(m, ext))
		return false;
	fake_set_bit(m->pending, ext, true);
	fake_set_bit(m->hyd, ext, false);	/* streamed or not, the guest's fault now */
	send_remote_fault(d, m, ext, 1, cookie, RCOW_FAULT_F_WAITING);
	return true;
}

int fake_mig_stream_fault(struct daemon *d, struct fake_mig *m, uint64_t first, uint32_t count,
			  uint64_t cookie)
{
	for (uint64_t e = first; e < first + count && e < m->nr; e++) {
		fake_set_bit(m->pending, e, true);
		fake_set_bit(m->hyd, e, false);	/* this FAULT carries it */
	}
	return send_remote_fault(d, m, first, count, cookie, 0);
}

int fake_mig_hydrate(struct fake_kernel *k, uint32_t dev_id, uint64_t first, uint32_t count,
		     uint32_t *queued)
{
	struct fake_mig *m = dev_id == k->m.dst_id ? &k->m : dev_id == k->m2.dst_id ? &k->m2 : NULL;

	if (!dev_id || !m || m->dst.migrate_state != RCOW_MIGRATE_POSTCOPY)
		return -ENODEV;
	for (uint64_t e = first; e < first + count && e < m->nr; e++) {
		if (!fake_commit_bit(m->remote, e) || fake_commit_bit(m->pending, e))
			continue;
		fake_set_bit(m->pending, e, true);
		fake_set_bit(m->hyd, e, true);
		(*queued)++;
	}
	return 0;
}

void fake_mig_filled(struct fake_kernel *k, uint32_t dev_id, uint64_t first, uint32_t count,
		     uint32_t status)
{
	struct fake_mig *m = dev_id == k->m.dst_id ? &k->m : dev_id == k->m2.dst_id ? &k->m2 : NULL;

	if (!dev_id || !m)
		return;
	for (uint64_t e = first; e < first + count && e < m->nr; e++) {
		if (status && fake_commit_bit(m->remote, e))
			m->remote_eio++;
		if (!status)
			fake_set_bit(m->remote, e, false);	/* PRESENT now */
		fake_set_bit(m->pending, e, false);
	}
}

/* The FAULTs of what HYDRATE queued, one per run. */
static void hydrate_faults(struct daemon *d, struct fake_mig *m)
{
	for (uint64_t e = 0; e < m->nr;) {
		uint64_t n = 0;

		while (e + n < m->nr && fake_commit_bit(m->hyd, e + n)) {
			fake_set_bit(m->hyd, e + n, false);
			n++;
		}
		if (n)
			send_remote_fault(d, m, e, (uint32_t)n, m->next_cookie++, 0);
		e += n ? n : 1;
	}
}

int fake_mig_abort(struct daemon *d, struct fake_kernel *k)
{
	return fake_mig_abort_pair(d, &k->m);
}

/* migrate abort: everything lifted, the sets cleared, then the event. */
int fake_mig_abort_pair(struct daemon *d, struct fake_mig *m)
{
	if (!running(m))
		return -EINVAL;
	m->src.migrate_state = RCOW_MIGRATE_IDLE;
	memset(m->dirty, 0, (size_t)((m->nr + 7) / 8));
	memset(m->round_set, 0, (size_t)((m->nr + 7) / 8));
	m->aborted = true;
	return send_src(d, m, RCOW_CMD_MIGRATE_ABORT);
}

static void pump(struct daemon *d, struct fake_kernel *k, struct fake_mig *m)
{
	if (m->round_asked) {
		m->round_asked = false;
		if (running(m)) {
			uint64_t left = m->src.migrate_total - m->src.migrate_done, now = 0;

			if (m->on_round)
				m->on_round(k, m->src.migrate_round + 1);
			for (uint64_t e = 0; e < m->nr; e++) {
				if (fake_commit_bit(m->dirty, e))
					fake_set_bit(m->round_set, e, true);
				now += fake_commit_bit(m->round_set, e);
			}
			memset(m->dirty, 0, (size_t)((m->nr + 7) / 8));
			m->src.migrate_total += now - left;
			m->src.migrate_round++;
			if (m->mirror_asked && m->src.migrate_state == RCOW_MIGRATE_COPYING) {
				m->src.migrate_state = RCOW_MIGRATE_MIRRORING;
				m->mirror_round = m->src.migrate_round;
			}
			m->mirror_asked = false;
			send_src(d, m, RCOW_CMD_MIGRATE_ROUND);
		}
	}
	if (m->complete_asked) {
		m->complete_asked = false;
		m->dst.migrate_state = RCOW_MIGRATE_IDLE;
	}
	if (m->dst.migrate_state == RCOW_MIGRATE_POSTCOPY && !m->hold_hyd)
		hydrate_faults(d, m);
}

void fake_mig_pump(struct daemon *d, struct fake_kernel *k)
{
	pump(d, k, &k->m);
	if (k->m2.src_id)
		pump(d, k, &k->m2);
}

static int check_range(const struct fake_mig *m, uint64_t nr, const struct rcow_migrate_req *q,
		       struct rcow_err *err)
{
	(void)m;
	if (q->count == 0 || q->first >= nr || q->count > nr - q->first)
		return rcow_err_set(err, EINVAL, "fake kernel: extents %llu+%u outside the device",
				    (unsigned long long)q->first, q->count);
	return 0;
}

static int source_request(struct fake_mig *m, const struct rcow_migrate_req *q,
			  struct rcow_err *err)
{
	int r;

	switch (q->cmd) {
	case RCOW_CMD_MIGRATE_ROUND:
		if (!running(m))
			return rcow_err_set(err, ESTALE, "fake kernel: no migration running");
		if (q->flags & ~(uint32_t)RCOW_MIGRATE_F_MIRROR)
			return rcow_err_set(err, EINVAL, "fake kernel: unknown round flags %#x",
					    q->flags);
		m->round_asked = true;
		m->rounds_asked++;
		if (q->flags & RCOW_MIGRATE_F_MIRROR)
			m->mirror_asked = true;
		return 0;
	case RCOW_CMD_MIGRATE_MARK:
		r = check_range(m, m->nr, q, err);
		if (r)
			return r;
		if (!running(m) || q->round != m->src.migrate_round)
			return rcow_err_set(err, ESTALE, "fake kernel: round %llu is not the current one",
					    (unsigned long long)q->round);
		for (uint64_t e = q->first; e < q->first + q->count; e++) {
			if (!fake_commit_bit(m->round_set, e))
				continue;
			fake_set_bit(m->round_set, e, false);
			m->src.migrate_done++;
			m->marked++;
			/* the destination has it on disk only after its FILL */
			if (m->fills[e] <= m->marks[e])
				m->mark_unfilled++;
			m->marks[e]++;
		}
		return 0;
	case RCOW_CMD_MIGRATE_POSTCOPY:
		if (m->src.migrate_state != RCOW_MIGRATE_FINISHING)
			return rcow_err_set(err, ESTALE, "fake kernel: not finishing");
		m->src.migrate_state = RCOW_MIGRATE_POSTCOPY;
		m->src_postcopies++;
		return 0;
	case RCOW_CMD_MIGRATE_END:
		m->end_tries++;
		if (!running(m))
			return rcow_err_set(err, ESTALE, "fake kernel: no migration running");
		if (q->status == 0 && ((m->src.migrate_state != RCOW_MIGRATE_FINISHING &&
					m->src.migrate_state != RCOW_MIGRATE_POSTCOPY) ||
				       m->refuse_done ||
				       any_bit(m->round_set, m->nr) || any_bit(m->dirty, m->nr))) {
			m->eagain++;
			return rcow_err_set(err, EAGAIN, "fake kernel: extents still to send");
		}
		m->src.migrate_state = q->status ? RCOW_MIGRATE_FAILED : RCOW_MIGRATE_DONE;
		m->ended = true;
		m->end_status = q->status;
		m->end_flags = q->flags;
		snprintf(m->end_msg, sizeof(m->end_msg), "%s", q->message);
		return 0;
	default:
		return rcow_err_set(err, EINVAL, "fake kernel: %u is not a source's request", q->cmd);
	}
}

static int dest_request(struct fake_mig *m, const struct rcow_migrate_req *q,
			struct rcow_err *err)
{
	int r;

	if (m->dst.migrate_state == RCOW_MIGRATE_POSTCOPY && q->cmd == RCOW_CMD_MIGRATE_COMPLETE) {
		if (any_bit(m->remote, m->nr)) {
			m->complete_eagain++;
			return rcow_err_set(err, EAGAIN, "fake kernel: remote extents missing");
		}
		m->complete_asked = true;
		m->completes++;
		return 0;
	}
	if (m->dst.migrate_state != RCOW_MIGRATE_INCOMING)
		return rcow_err_set(err, ESTALE, "fake kernel: the device is not incoming");
	switch (q->cmd) {
	case RCOW_CMD_MIGRATE_REMOTE:
		r = check_range(m, m->dst.nr_extents, q, err);
		if (r)
			return r;
		m->remote_reqs++;
		/* as the kernel: an extent filled already (MIGRATE_FILL) is not remote */
		for (uint64_t e = q->first; e < q->first + q->count && e < m->nr; e++)
			if (!m->fills[e])
				fake_set_bit(m->remote, e, true);
		return 0;
	case RCOW_CMD_MIGRATE_POSTCOPY:
		m->dst.migrate_state = RCOW_MIGRATE_POSTCOPY;
		m->dst_postcopies++;
		return 0;
	case RCOW_CMD_MIGRATE_FILL:
		r = check_range(m, m->dst.nr_extents, q, err);
		if (r)
			return r;
		m->fill_reqs++;
		for (uint64_t e = q->first; e < q->first + q->count && e < m->nr; e++)
			m->fills[e]++;
		return 0;
	case RCOW_CMD_MIGRATE_COMPLETE:
		m->complete_asked = true;
		m->completes++;
		return 0;
	default:
		return rcow_err_set(err, EINVAL, "fake kernel: %u is not a destination's request",
				    q->cmd);
	}
}

int fake_mig_request(struct fake_kernel *k, const struct nlmsghdr *nlh, struct rcow_err *err)
{
	struct rcow_migrate_req q;
	struct fake_mig *m;
	int r = rcow_msg_parse_migrate(nlh, &q, err);

	if (r)
		return r;
	m = pair_of(k, q.dev_id);
	if (m && q.dev_id == m->src_id)
		return source_request(m, &q, err);
	if (m)
		return dest_request(m, &q, err);
	return rcow_err_set(err, ENODEV, "fake kernel: no device %u", q.dev_id);
}

int fake_mig_device(struct fake_kernel *k, uint32_t dev_id, struct rcow_device_info *info)
{
	struct fake_mig *m = pair_of(k, dev_id);

	if (!m)
		return -ENODEV;
	*info = dev_id == m->src_id ? m->src : m->dst;
	return 0;
}

int fake_mig_runs(struct fake_kernel *k, uint32_t dev_id, uint32_t bitmap, uint64_t first,
		  uint32_t count, int (*cb)(const struct rcow_run *run, void *data), void *data,
		  struct rcow_err *err)
{
	struct fake_mig *m = pair_of(k, dev_id);

	if (!m || dev_id != m->src_id)
		return rcow_err_set(err, ENODEV, "fake kernel: no migration on device %u", dev_id);
	if (bitmap == RCOW_BITMAP_MIGRATE_ROUND && m->on_round_runs)
		m->on_round_runs(k, m->src.migrate_round);
	/* with count the kernel stops there, cutting a run across it */
	return fake_runs(bitmap == RCOW_BITMAP_MIGRATE_ROUND ? m->round_set : m->dirty,
			 count && first + count < m->nr ? first + count : m->nr, first, cb, data);
}
