// SPDX-License-Identifier: GPL-2.0
/*
 * msg.c - remote_cow generic netlink messages: names, builders, parsers
 * (see include/rcow/msg.h).  libmnl does the attribute layout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rcow/msg.h"

/* ---- names ---------------------------------------------------------- */

static const char *const cmd_names[] = {
	[RCOW_CMD_UNSPEC] = "UNSPEC",
	[RCOW_CMD_REGISTER] = "REGISTER",
	[RCOW_CMD_UNREGISTER] = "UNREGISTER",
	[RCOW_CMD_GET_DEVICE] = "GET_DEVICE",
	[RCOW_CMD_FAULT] = "FAULT",
	[RCOW_CMD_FILL_DONE] = "FILL_DONE",
	[RCOW_CMD_HYDRATE] = "HYDRATE",
	[RCOW_CMD_GET_BITMAP] = "GET_BITMAP",
	[RCOW_CMD_DEVICE_ADD] = "DEVICE_ADD",
	[RCOW_CMD_DEVICE_REMOVE] = "DEVICE_REMOVE",
	[RCOW_CMD_HYDRATE_CTL] = "HYDRATE_CTL",
	[RCOW_CMD_QUIESCE] = "QUIESCE",
	[RCOW_CMD_QUIESCE_DONE] = "QUIESCE_DONE",
	[RCOW_CMD_GET_RUNS] = "GET_RUNS",
	[RCOW_CMD_COMMIT_START] = "COMMIT_START",
	[RCOW_CMD_PRESERVE] = "PRESERVE",
	[RCOW_CMD_COMMIT_MARK] = "COMMIT_MARK",
	[RCOW_CMD_COMMIT_END] = "COMMIT_END",
	[RCOW_CMD_COMMIT_ABORT] = "COMMIT_ABORT",
	[RCOW_CMD_MIGRATE_START] = "MIGRATE_START",
	[RCOW_CMD_MIGRATE_FINISH] = "MIGRATE_FINISH",
	[RCOW_CMD_MIGRATE_ABORT] = "MIGRATE_ABORT",
	[RCOW_CMD_MIGRATE_ROUND] = "MIGRATE_ROUND",
	[RCOW_CMD_MIGRATE_MARK] = "MIGRATE_MARK",
	[RCOW_CMD_MIGRATE_END] = "MIGRATE_END",
	[RCOW_CMD_MIGRATE_FILL] = "MIGRATE_FILL",
	[RCOW_CMD_MIGRATE_COMPLETE] = "MIGRATE_COMPLETE",
	[RCOW_CMD_PROMOTE] = "PROMOTE",
	[RCOW_CMD_MIGRATE_WAITING] = "MIGRATE_WAITING",
	[RCOW_CMD_MIGRATE_REMOTE] = "MIGRATE_REMOTE",
	[RCOW_CMD_MIGRATE_POSTCOPY] = "MIGRATE_POSTCOPY",
};

static const char *const attr_names[] = {
	[RCOW_A_UNSPEC] = "unspec",
	[RCOW_A_PAD] = "pad",
	[RCOW_A_DEV_ID] = "dev_id",
	[RCOW_A_DM_NAME] = "dm_name",
	[RCOW_A_DM_UUID] = "dm_uuid",
	[RCOW_A_COW_MAJOR] = "cow_major",
	[RCOW_A_COW_MINOR] = "cow_minor",
	[RCOW_A_EXTENT_SECTORS] = "extent_sectors",
	[RCOW_A_NR_EXTENTS] = "nr_extents",
	[RCOW_A_DATA_OFFSET] = "data_offset",
	[RCOW_A_DEV_SECTORS] = "dev_sectors",
	[RCOW_A_BASE_URI] = "base_uri",
	[RCOW_A_FIRST_EXTENT] = "first_extent",
	[RCOW_A_EXTENT_COUNT] = "extent_count",
	[RCOW_A_COOKIE] = "cookie",
	[RCOW_A_STATUS] = "status",
	[RCOW_A_BITMAP] = "bitmap",
	[RCOW_A_BITMAP_DATA] = "bitmap_data",
	[RCOW_A_HYDRATE_RATE] = "hydrate_rate",
	[RCOW_A_PRESENT] = "present",
	[RCOW_A_FLAGS] = "flags",
	[RCOW_A_RUN_LENGTH] = "run_length",
	[RCOW_A_COMMIT_GEN] = "commit_gen",
	[RCOW_A_TARGET_URI] = "target_uri",
	[RCOW_A_COMMIT_FLAGS] = "commit_flags",
	[RCOW_A_COMMIT_STATE] = "commit_state",
	[RCOW_A_COMMIT_TOTAL] = "commit_total",
	[RCOW_A_COMMIT_DONE] = "commit_done",
	[RCOW_A_MARK] = "mark",
	[RCOW_A_MESSAGE] = "message",
	[RCOW_A_MIGRATE_TARGET] = "migrate_target",
	[RCOW_A_MIGRATE_STATE] = "migrate_state",
	[RCOW_A_MIGRATE_ROUND] = "migrate_round",
	[RCOW_A_MIGRATE_TOTAL] = "migrate_total",
	[RCOW_A_MIGRATE_DONE] = "migrate_done",
	[RCOW_A_MIGRATE_DELAY_MS] = "migrate_delay_ms",
};

static const char *const bitmap_names[] = {
	[RCOW_BITMAP_PRESENT] = "present",
	[RCOW_BITMAP_WRITTEN] = "written",
	[RCOW_BITMAP_DIRTY_COMMIT] = "dirty-commit",
	[RCOW_BITMAP_FROZEN_COMMIT] = "frozen-commit",
	[RCOW_BITMAP_DIRTY_MIGRATE] = "dirty-migrate",
	[RCOW_BITMAP_COMMIT_UPLOAD] = "commit-upload",
	[RCOW_BITMAP_COMMIT_HELD] = "commit-held",
	[RCOW_BITMAP_MIGRATE_ROUND] = "migrate-round",
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

bool rcow_cmd_is_event(uint8_t cmd)
{
	return cmd == RCOW_CMD_FAULT || cmd == RCOW_CMD_DEVICE_ADD ||
	       cmd == RCOW_CMD_DEVICE_REMOVE || cmd == RCOW_CMD_HYDRATE_CTL ||
	       cmd == RCOW_CMD_QUIESCE || cmd == RCOW_CMD_COMMIT_START ||
	       cmd == RCOW_CMD_PRESERVE || cmd == RCOW_CMD_COMMIT_ABORT ||
	       cmd == RCOW_CMD_MIGRATE_START || cmd == RCOW_CMD_MIGRATE_FINISH ||
	       cmd == RCOW_CMD_MIGRATE_ABORT || cmd == RCOW_CMD_MIGRATE_ROUND ||
	       cmd == RCOW_CMD_PROMOTE || cmd == RCOW_CMD_MIGRATE_WAITING;
}

const char *rcow_cmd_name(uint8_t cmd, char *buf, size_t len)
{
	if (cmd < ARRAY_SIZE(cmd_names) && cmd_names[cmd])
		return cmd_names[cmd];
	snprintf(buf, len, "CMD_%u", cmd);
	return buf;
}

const char *rcow_attr_name(uint16_t type)
{
	return type < ARRAY_SIZE(attr_names) ? attr_names[type] : NULL;
}

/* name or decimal number within [0, max] */
static int lookup(const char *name, const char *const *names, size_t n, long max)
{
	char *end;
	long v;
	size_t i;

	for (i = 0; i < n; i++)
		if (names[i] && !strcasecmp(name, names[i]))
			return (int)i;
	errno = 0;
	v = strtol(name, &end, 0);
	if (!errno && *name && !*end && v >= 0 && v <= max)
		return (int)v;
	return -1;
}

int rcow_attr_from_name(const char *name)
{
	return lookup(name, attr_names, ARRAY_SIZE(attr_names), 0x3fff);
}

int rcow_cmd_from_name(const char *name)
{
	return lookup(name, cmd_names, ARRAY_SIZE(cmd_names), 255);
}

int rcow_bitmap_from_name(const char *name)
{
	int b = lookup(name, bitmap_names, ARRAY_SIZE(bitmap_names), 0x7fffffff);

	return b < 0 ? RCOW_NR_BITMAPS : b;
}

const char *rcow_bitmap_name(uint32_t bitmap)
{
	return bitmap < ARRAY_SIZE(bitmap_names) ? bitmap_names[bitmap] : NULL;
}

/* ---- builders ------------------------------------------------------- */

struct nlmsghdr *rcow_msg_start(void *buf, uint16_t type, uint8_t cmd, uint16_t flags,
				uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *g;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = type == GENL_ID_CTRL ? 1 : REMOTE_COW_GENL_VERSION;
	return nlh;
}

bool rcow_msg_put_u32(struct nlmsghdr *nlh, uint16_t type, uint32_t v)
{
	return mnl_attr_put_u32_check(nlh, RCOW_MSG_BUF_SIZE, type, v);
}

bool rcow_msg_put_u64(struct nlmsghdr *nlh, uint16_t type, uint64_t v)
{
	return mnl_attr_put_u64_check(nlh, RCOW_MSG_BUF_SIZE, type, v);
}

bool rcow_msg_put_str(struct nlmsghdr *nlh, uint16_t type, const char *s)
{
	return mnl_attr_put_strz_check(nlh, RCOW_MSG_BUF_SIZE, type, s);
}

bool rcow_msg_put_raw(struct nlmsghdr *nlh, uint16_t type, const void *data, size_t len)
{
	return mnl_attr_put_check(nlh, RCOW_MSG_BUF_SIZE, type, len, data);
}

struct nlmsghdr *rcow_msg_getfamily(void *buf, uint32_t seq, const char *name)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0, seq);

	return rcow_msg_put_str(nlh, CTRL_ATTR_FAMILY_NAME, name) ? nlh : NULL;
}

struct nlmsghdr *rcow_msg_register(void *buf, uint16_t family, uint32_t seq)
{
	return rcow_msg_start(buf, family, RCOW_CMD_REGISTER, 0, seq);
}

struct nlmsghdr *rcow_msg_unregister(void *buf, uint16_t family, uint32_t seq)
{
	return rcow_msg_start(buf, family, RCOW_CMD_UNREGISTER, 0, seq);
}

struct nlmsghdr *rcow_msg_get_device(void *buf, uint16_t family, uint32_t seq, bool dump,
				     uint32_t dev_id)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_GET_DEVICE,
					      dump ? NLM_F_DUMP : 0, seq);

	if (!dump && !rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, dev_id))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_fill_done(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
				    uint64_t cookie, uint64_t first, uint32_t count,
				    uint32_t status)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_FILL_DONE, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, dev_id) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_COOKIE, cookie) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, first) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_STATUS, status))
		return NULL;
	if (count && !rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, count))
		return NULL;
	return nlh;
}

/* QUIESCE (kernel -> helper, for tests) and QUIESCE_DONE (the answer). */
struct nlmsghdr *rcow_msg_quiesce(void *buf, uint16_t family, uint32_t seq, uint8_t cmd,
				  const struct rcow_quiesce *q)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, cmd, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, q->dev_id) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_COOKIE, q->cookie))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_hydrate(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
				  uint64_t first, uint32_t count)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_HYDRATE, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, dev_id) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, first) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, count))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_get_bitmap(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
				     uint32_t bitmap, uint64_t first)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_GET_BITMAP, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, dev_id) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_BITMAP, bitmap) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, first))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_get_runs(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
				   uint32_t bitmap, uint64_t first, uint32_t count)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_GET_RUNS, NLM_F_DUMP, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, dev_id) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_BITMAP, bitmap) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, first) ||
	    (count && !rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, count)))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_run(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
			      uint32_t bitmap, const struct rcow_run *run)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_GET_RUNS, NLM_F_MULTI, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, dev_id) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_BITMAP, bitmap) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, run->first) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_RUN_LENGTH, run->count))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_fault(void *buf, uint16_t family, uint32_t seq, uint8_t cmd,
				const struct rcow_fault *f)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, cmd, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, f->dev_id) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, f->first) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, f->count) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_COOKIE, f->cookie) ||
	    (f->flags && !rcow_msg_put_u32(nlh, RCOW_A_FLAGS, f->flags)))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_device(void *buf, uint16_t family, uint32_t seq, uint8_t cmd,
				 const struct rcow_device_info *d)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, cmd, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, d->dev_id))
		return NULL;
	if (cmd == RCOW_CMD_DEVICE_REMOVE)
		return nlh;
	if (!rcow_msg_put_str(nlh, RCOW_A_DM_NAME, d->dm_name) ||
	    !rcow_msg_put_str(nlh, RCOW_A_DM_UUID, d->dm_uuid) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_COW_MAJOR, d->cow_major) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_COW_MINOR, d->cow_minor) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_EXTENT_SECTORS, d->extent_sectors) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_NR_EXTENTS, d->nr_extents) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_DATA_OFFSET, d->data_offset) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_DEV_SECTORS, d->dev_sectors) ||
	    !rcow_msg_put_str(nlh, RCOW_A_BASE_URI, d->base_uri) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_PRESENT, d->present) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_FLAGS, d->flags))
		return NULL;
	/* a GET_DEVICE reply of a table that had a commit (tests, fakes) */
	if (d->commit_state != RCOW_COMMIT_IDLE) {
		if (!rcow_msg_put_u32(nlh, RCOW_A_COMMIT_STATE, d->commit_state) ||
		    !rcow_msg_put_u64(nlh, RCOW_A_COMMIT_GEN, d->commit_gen) ||
		    !rcow_msg_put_u32(nlh, RCOW_A_COMMIT_FLAGS, d->commit_flags) ||
		    !rcow_msg_put_u64(nlh, RCOW_A_COMMIT_TOTAL, d->commit_total) ||
		    !rcow_msg_put_u64(nlh, RCOW_A_COMMIT_DONE, d->commit_done))
			return NULL;
		if (d->commit_state == RCOW_COMMIT_UPLOADING &&
		    !rcow_msg_put_str(nlh, RCOW_A_TARGET_URI, d->target_uri))
			return NULL;
	}
	/* a device with a migration (its events, GET_DEVICE replies: fakes) */
	if (d->migrate_state != RCOW_MIGRATE_IDLE) {
		if (!rcow_msg_put_u32(nlh, RCOW_A_MIGRATE_STATE, d->migrate_state) ||
		    !rcow_msg_put_u64(nlh, RCOW_A_MIGRATE_ROUND, d->migrate_round) ||
		    !rcow_msg_put_u64(nlh, RCOW_A_MIGRATE_TOTAL, d->migrate_total) ||
		    !rcow_msg_put_u64(nlh, RCOW_A_MIGRATE_DONE, d->migrate_done))
			return NULL;
		if (d->migrate_target[0] &&
		    !rcow_msg_put_str(nlh, RCOW_A_MIGRATE_TARGET, d->migrate_target))
			return NULL;
	}
	return nlh;
}

struct nlmsghdr *rcow_msg_commit_event(void *buf, uint16_t family, uint32_t seq, uint8_t cmd,
				       const struct rcow_commit *c)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, cmd, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, c->dev_id) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_COMMIT_GEN, c->gen))
		return NULL;
	switch (cmd) {
	case RCOW_CMD_COMMIT_START:
		if (!rcow_msg_put_str(nlh, RCOW_A_TARGET_URI, c->target_uri) ||
		    !rcow_msg_put_u32(nlh, RCOW_A_COMMIT_FLAGS, c->flags) ||
		    !rcow_msg_put_u64(nlh, RCOW_A_COMMIT_TOTAL, c->total))
			return NULL;
		break;
	case RCOW_CMD_PRESERVE:
		if (!rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, c->first) ||
		    !rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, c->count))
			return NULL;
		break;
	default:
		break;
	}
	return nlh;
}

struct nlmsghdr *rcow_msg_commit_mark(void *buf, uint16_t family, uint32_t seq,
				      const struct rcow_commit *c)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_COMMIT_MARK, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, c->dev_id) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_COMMIT_GEN, c->gen) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, c->first) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, c->count) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_MARK, c->mark))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_commit_end(void *buf, uint16_t family, uint32_t seq,
				     const struct rcow_commit *c)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_COMMIT_END, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, c->dev_id) ||
	    !rcow_msg_put_u64(nlh, RCOW_A_COMMIT_GEN, c->gen) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_STATUS, c->status))
		return NULL;
	if (c->message[0] && !rcow_msg_put_str(nlh, RCOW_A_MESSAGE, c->message))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_hydrate_ctl(void *buf, uint16_t family, uint32_t seq,
				      const struct rcow_hydrate_ctl *h)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_HYDRATE_CTL, 0, seq);

	if (!rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, h->dev_id))
		return NULL;
	if (h->start && !rcow_msg_put_u32(nlh, RCOW_A_HYDRATE_RATE, h->rate))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_bitmap_reply(void *buf, uint16_t family, uint32_t seq,
				       uint64_t first, uint32_t count, const void *data, size_t len)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_GET_BITMAP, 0, seq);

	if (!rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, first) ||
	    !rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, count) ||
	    !rcow_msg_put_raw(nlh, RCOW_A_BITMAP_DATA, data, len))
		return NULL;
	return nlh;
}

struct nlmsghdr *rcow_msg_hydrate_reply(void *buf, uint16_t family, uint32_t seq, uint32_t queued)
{
	struct nlmsghdr *nlh = rcow_msg_start(buf, family, RCOW_CMD_HYDRATE, 0, seq);

	return rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, queued) ? nlh : NULL;
}

/* ---- parsers -------------------------------------------------------- */

enum kind { K_NONE, K_U32, K_U64, K_STR, K_BIN };

static const struct {
	enum kind kind;
	size_t max;	/* strings: bytes including the NUL */
} policy[RCOW_A_MAX + 1] = {
	[RCOW_A_DEV_ID] = { K_U32, 0 },
	[RCOW_A_DM_NAME] = { K_STR, RCOW_DM_NAME_MAX },
	[RCOW_A_DM_UUID] = { K_STR, RCOW_DM_UUID_MAX },
	[RCOW_A_COW_MAJOR] = { K_U32, 0 },
	[RCOW_A_COW_MINOR] = { K_U32, 0 },
	[RCOW_A_EXTENT_SECTORS] = { K_U32, 0 },
	[RCOW_A_NR_EXTENTS] = { K_U64, 0 },
	[RCOW_A_DATA_OFFSET] = { K_U64, 0 },
	[RCOW_A_DEV_SECTORS] = { K_U64, 0 },
	[RCOW_A_BASE_URI] = { K_STR, REMOTE_COW_MAX_URI + 1 },
	[RCOW_A_FIRST_EXTENT] = { K_U64, 0 },
	[RCOW_A_EXTENT_COUNT] = { K_U32, 0 },
	[RCOW_A_COOKIE] = { K_U64, 0 },
	[RCOW_A_STATUS] = { K_U32, 0 },
	[RCOW_A_BITMAP] = { K_U32, 0 },
	[RCOW_A_BITMAP_DATA] = { K_BIN, 0 },
	[RCOW_A_HYDRATE_RATE] = { K_U32, 0 },
	[RCOW_A_PRESENT] = { K_U64, 0 },
	[RCOW_A_FLAGS] = { K_U32, 0 },
	[RCOW_A_RUN_LENGTH] = { K_U64, 0 },
	[RCOW_A_COMMIT_GEN] = { K_U64, 0 },
	[RCOW_A_TARGET_URI] = { K_STR, REMOTE_COW_MAX_URI + 1 },
	[RCOW_A_COMMIT_FLAGS] = { K_U32, 0 },
	[RCOW_A_COMMIT_STATE] = { K_U32, 0 },
	[RCOW_A_COMMIT_TOTAL] = { K_U64, 0 },
	[RCOW_A_COMMIT_DONE] = { K_U64, 0 },
	[RCOW_A_MARK] = { K_U32, 0 },
	[RCOW_A_MESSAGE] = { K_STR, RCOW_MESSAGE_MAX },
	[RCOW_A_MIGRATE_TARGET] = { K_STR, RCOW_MIGRATE_TARGET_MAX },
	[RCOW_A_MIGRATE_STATE] = { K_U32, 0 },
	[RCOW_A_MIGRATE_ROUND] = { K_U64, 0 },
	[RCOW_A_MIGRATE_TOTAL] = { K_U64, 0 },
	[RCOW_A_MIGRATE_DONE] = { K_U64, 0 },
	[RCOW_A_MIGRATE_DELAY_MS] = { K_U32, 0 },
};

struct attrs {
	const struct nlattr *tb[RCOW_A_MAX + 1];
	struct rcow_err *err;
	int ret;
};

static int attr_cb(const struct nlattr *a, void *data)
{
	struct attrs *at = data;
	uint16_t type = mnl_attr_get_type(a);
	uint16_t len = mnl_attr_get_payload_len(a);
	const char *p;

	if (type > RCOW_A_MAX || policy[type].kind == K_NONE)
		return MNL_CB_OK;	/* unknown or unused: ignore */
	switch (policy[type].kind) {
	case K_U32:
		if (len != 4)
			goto bad_len;
		break;
	case K_U64:
		if (len != 8)
			goto bad_len;
		break;
	case K_STR:
		p = mnl_attr_get_payload(a);
		if (len == 0 || p[len - 1] != '\0' || strlen(p) + 1 > policy[type].max) {
			at->ret = rcow_err_set(at->err, EPROTO,
				"attribute %s is not a NUL-terminated string of at most %zu bytes",
				attr_names[type], policy[type].max - 1);
			return MNL_CB_ERROR;
		}
		break;
	default:
		break;
	}
	at->tb[type] = a;
	return MNL_CB_OK;
bad_len:
	at->ret = rcow_err_set(at->err, EPROTO, "attribute %s has %u payload bytes, expected %d",
			       attr_names[type], len, policy[type].kind == K_U32 ? 4 : 8);
	return MNL_CB_ERROR;
}

static int check_genl(const struct nlmsghdr *nlh, struct rcow_err *err)
{
	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(struct genlmsghdr))
		return rcow_err_set(err, EPROTO,
			"netlink message of %u bytes is too short for a generic netlink header",
			nlh->nlmsg_len);
	return 0;
}

static int parse_attrs(const struct nlmsghdr *nlh, struct attrs *at, struct rcow_err *err)
{
	int r = check_genl(nlh, err);

	if (r)
		return r;
	memset(at, 0, sizeof(*at));
	at->err = err;
	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), attr_cb, at) < 0)
		return at->ret ? at->ret : rcow_err_set(err, EPROTO, "malformed netlink attributes");
	return 0;
}

/* All attributes in the zero-terminated list must be present. */
static int need(const struct attrs *at, const char *what, const int *list, struct rcow_err *err)
{
	for (; *list; list++)
		if (!at->tb[*list])
			return rcow_err_set(err, EPROTO, "%s message lacks the %s attribute",
					    what, attr_names[*list]);
	return 0;
}

static uint32_t u32_of(const struct attrs *at, int type)
{
	return at->tb[type] ? mnl_attr_get_u32(at->tb[type]) : 0;
}

static uint64_t u64_of(const struct attrs *at, int type)
{
	return at->tb[type] ? mnl_attr_get_u64(at->tb[type]) : 0;
}

static void str_of(const struct attrs *at, int type, char *dst, size_t len)
{
	dst[0] = '\0';
	if (at->tb[type])
		snprintf(dst, len, "%s", mnl_attr_get_str(at->tb[type]));
}

uint8_t rcow_msg_cmd(const struct nlmsghdr *nlh)
{
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);

	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*g))
		return RCOW_CMD_UNSPEC;
	return g->cmd;
}

static void fill_device(const struct attrs *at, struct rcow_device_info *d)
{
	int t;

	memset(d, 0, sizeof(*d));
	for (t = 0; t <= RCOW_A_MAX; t++)
		if (at->tb[t])
			d->have |= 1ull << t;
	d->dev_id = u32_of(at, RCOW_A_DEV_ID);
	str_of(at, RCOW_A_DM_NAME, d->dm_name, sizeof(d->dm_name));
	str_of(at, RCOW_A_DM_UUID, d->dm_uuid, sizeof(d->dm_uuid));
	d->cow_major = u32_of(at, RCOW_A_COW_MAJOR);
	d->cow_minor = u32_of(at, RCOW_A_COW_MINOR);
	d->extent_sectors = u32_of(at, RCOW_A_EXTENT_SECTORS);
	d->nr_extents = u64_of(at, RCOW_A_NR_EXTENTS);
	d->data_offset = u64_of(at, RCOW_A_DATA_OFFSET);
	d->dev_sectors = u64_of(at, RCOW_A_DEV_SECTORS);
	str_of(at, RCOW_A_BASE_URI, d->base_uri, sizeof(d->base_uri));
	d->present = u64_of(at, RCOW_A_PRESENT);
	d->flags = u32_of(at, RCOW_A_FLAGS);
	d->hydrate_rate = u32_of(at, RCOW_A_HYDRATE_RATE);
	d->commit_state = u32_of(at, RCOW_A_COMMIT_STATE);
	d->commit_gen = u64_of(at, RCOW_A_COMMIT_GEN);
	d->commit_flags = u32_of(at, RCOW_A_COMMIT_FLAGS);
	d->commit_total = u64_of(at, RCOW_A_COMMIT_TOTAL);
	d->commit_done = u64_of(at, RCOW_A_COMMIT_DONE);
	str_of(at, RCOW_A_TARGET_URI, d->target_uri, sizeof(d->target_uri));
	d->migrate_state = u32_of(at, RCOW_A_MIGRATE_STATE);
	d->migrate_round = u64_of(at, RCOW_A_MIGRATE_ROUND);
	d->migrate_total = u64_of(at, RCOW_A_MIGRATE_TOTAL);
	d->migrate_done = u64_of(at, RCOW_A_MIGRATE_DONE);
	str_of(at, RCOW_A_MIGRATE_TARGET, d->migrate_target, sizeof(d->migrate_target));
}

static void fill_commit(const struct attrs *at, struct rcow_commit *c)
{
	memset(c, 0, sizeof(*c));
	c->dev_id = u32_of(at, RCOW_A_DEV_ID);
	c->gen = u64_of(at, RCOW_A_COMMIT_GEN);
	c->flags = u32_of(at, RCOW_A_COMMIT_FLAGS);
	c->total = u64_of(at, RCOW_A_COMMIT_TOTAL);
	c->first = u64_of(at, RCOW_A_FIRST_EXTENT);
	c->count = u32_of(at, RCOW_A_EXTENT_COUNT);
	c->mark = u32_of(at, RCOW_A_MARK);
	c->status = u32_of(at, RCOW_A_STATUS);
	str_of(at, RCOW_A_TARGET_URI, c->target_uri, sizeof(c->target_uri));
	str_of(at, RCOW_A_MESSAGE, c->message, sizeof(c->message));
}

static const int device_attrs[] = {
	RCOW_A_DEV_ID, RCOW_A_COW_MAJOR, RCOW_A_COW_MINOR, RCOW_A_EXTENT_SECTORS,
	RCOW_A_NR_EXTENTS, RCOW_A_DATA_OFFSET, RCOW_A_DEV_SECTORS, RCOW_A_BASE_URI, 0
};

int rcow_msg_parse_device(const struct nlmsghdr *nlh, struct rcow_device_info *d,
			  struct rcow_err *err)
{
	struct attrs at;
	int r;

	r = parse_attrs(nlh, &at, err);
	if (!r)
		r = need(&at, "device", device_attrs, err);
	if (r)
		return r;
	fill_device(&at, d);
	return 0;
}

int rcow_msg_parse_event(const struct nlmsghdr *nlh, struct rcow_event *ev, struct rcow_err *err)
{
	static const int fault_attrs[] = {
		RCOW_A_DEV_ID, RCOW_A_FIRST_EXTENT, RCOW_A_EXTENT_COUNT, RCOW_A_COOKIE, 0
	};
	static const int id_attrs[] = { RCOW_A_DEV_ID, 0 };
	static const int quiesce_attrs[] = { RCOW_A_DEV_ID, RCOW_A_COOKIE, 0 };
	static const int start_attrs[] = { RCOW_A_DEV_ID, RCOW_A_COMMIT_GEN, RCOW_A_TARGET_URI, 0 };
	static const int preserve_attrs[] = {
		RCOW_A_DEV_ID, RCOW_A_COMMIT_GEN, RCOW_A_FIRST_EXTENT, RCOW_A_EXTENT_COUNT, 0
	};
	static const int abort_attrs[] = { RCOW_A_DEV_ID, RCOW_A_COMMIT_GEN, 0 };
	struct attrs at;
	int r;

	memset(ev, 0, sizeof(*ev));
	r = parse_attrs(nlh, &at, err);
	if (r)
		return r;
	ev->cmd = rcow_msg_cmd(nlh);
	switch (ev->cmd) {
	case RCOW_CMD_FAULT:
	case RCOW_CMD_PROMOTE:
		r = need(&at, cmd_names[ev->cmd], fault_attrs, err);
		if (r)
			return r;
		ev->u.fault.dev_id = u32_of(&at, RCOW_A_DEV_ID);
		ev->u.fault.first = u64_of(&at, RCOW_A_FIRST_EXTENT);
		ev->u.fault.count = u32_of(&at, RCOW_A_EXTENT_COUNT);
		ev->u.fault.cookie = u64_of(&at, RCOW_A_COOKIE);
		ev->u.fault.flags = u32_of(&at, RCOW_A_FLAGS);
		return 0;
	case RCOW_CMD_MIGRATE_START:
	case RCOW_CMD_MIGRATE_FINISH:
	case RCOW_CMD_MIGRATE_ABORT:
	case RCOW_CMD_MIGRATE_ROUND:
	case RCOW_CMD_MIGRATE_WAITING:
	case RCOW_CMD_DEVICE_ADD:
		r = need(&at, cmd_names[ev->cmd], device_attrs, err);
		if (r)
			return r;
		fill_device(&at, &ev->u.dev);
		return 0;
	case RCOW_CMD_DEVICE_REMOVE:
		r = need(&at, "DEVICE_REMOVE", id_attrs, err);
		if (r)
			return r;
		fill_device(&at, &ev->u.dev);
		return 0;
	case RCOW_CMD_HYDRATE_CTL:
		r = need(&at, "HYDRATE_CTL", id_attrs, err);
		if (r)
			return r;
		ev->u.hydrate.dev_id = u32_of(&at, RCOW_A_DEV_ID);
		ev->u.hydrate.start = at.tb[RCOW_A_HYDRATE_RATE] != NULL;
		ev->u.hydrate.rate = u32_of(&at, RCOW_A_HYDRATE_RATE);
		return 0;
	case RCOW_CMD_QUIESCE:
		r = need(&at, "QUIESCE", quiesce_attrs, err);
		if (r)
			return r;
		ev->u.quiesce.dev_id = u32_of(&at, RCOW_A_DEV_ID);
		ev->u.quiesce.cookie = u64_of(&at, RCOW_A_COOKIE);
		return 0;
	case RCOW_CMD_COMMIT_START:
	case RCOW_CMD_PRESERVE:
	case RCOW_CMD_COMMIT_ABORT:
		r = need(&at, ev->cmd == RCOW_CMD_COMMIT_START ? "COMMIT_START" :
			 ev->cmd == RCOW_CMD_PRESERVE ? "PRESERVE" : "COMMIT_ABORT",
			 ev->cmd == RCOW_CMD_COMMIT_START ? start_attrs :
			 ev->cmd == RCOW_CMD_PRESERVE ? preserve_attrs : abort_attrs, err);
		if (r)
			return r;
		fill_commit(&at, &ev->u.commit);
		return 0;
	default:
		return 0;	/* unknown command: caller decides */
	}
}

int rcow_msg_parse_hydrate_reply(const struct nlmsghdr *nlh, uint32_t *queued,
				 struct rcow_err *err)
{
	static const int list[] = { RCOW_A_EXTENT_COUNT, 0 };
	struct attrs at;
	int r;

	r = parse_attrs(nlh, &at, err);
	if (!r)
		r = need(&at, "HYDRATE reply", list, err);
	if (r)
		return r;
	*queued = u32_of(&at, RCOW_A_EXTENT_COUNT);
	return 0;
}

int rcow_msg_parse_run(const struct nlmsghdr *nlh, struct rcow_run *run, struct rcow_err *err)
{
	static const int list[] = { RCOW_A_FIRST_EXTENT, RCOW_A_RUN_LENGTH, 0 };
	struct attrs at;
	int r;

	r = parse_attrs(nlh, &at, err);
	if (!r)
		r = need(&at, "GET_RUNS reply", list, err);
	if (r)
		return r;
	run->first = u64_of(&at, RCOW_A_FIRST_EXTENT);
	run->count = u64_of(&at, RCOW_A_RUN_LENGTH);
	if (run->count == 0 || run->first + run->count < run->first)
		return rcow_err_set(err, EPROTO, "GET_RUNS reply with an empty or overflowing run %llu+%llu",
				    (unsigned long long)run->first, (unsigned long long)run->count);
	return 0;
}

int rcow_msg_parse_commit(const struct nlmsghdr *nlh, struct rcow_commit *c, struct rcow_err *err)
{
	static const int mark_attrs[] = {
		RCOW_A_DEV_ID, RCOW_A_COMMIT_GEN, RCOW_A_FIRST_EXTENT, RCOW_A_EXTENT_COUNT, RCOW_A_MARK, 0
	};
	static const int end_attrs[] = { RCOW_A_DEV_ID, RCOW_A_COMMIT_GEN, RCOW_A_STATUS, 0 };
	struct attrs at;
	uint8_t cmd;
	int r;

	r = parse_attrs(nlh, &at, err);
	if (r)
		return r;
	cmd = rcow_msg_cmd(nlh);
	if (cmd == RCOW_CMD_COMMIT_MARK)
		r = need(&at, "COMMIT_MARK", mark_attrs, err);
	else if (cmd == RCOW_CMD_COMMIT_END)
		r = need(&at, "COMMIT_END", end_attrs, err);
	else
		r = rcow_err_set(err, EPROTO, "not a COMMIT_MARK or COMMIT_END message (command %u)", cmd);
	if (r)
		return r;
	fill_commit(&at, c);
	return 0;
}

int rcow_msg_parse_migrate(const struct nlmsghdr *nlh, struct rcow_migrate_req *m,
			   struct rcow_err *err)
{
	static const int dev_attrs[] = { RCOW_A_DEV_ID, 0 };
	static const int range_attrs[] = { RCOW_A_DEV_ID, RCOW_A_FIRST_EXTENT, RCOW_A_EXTENT_COUNT, 0 };
	static const int mark_attrs[] = {
		RCOW_A_DEV_ID, RCOW_A_MIGRATE_ROUND, RCOW_A_FIRST_EXTENT, RCOW_A_EXTENT_COUNT, 0
	};
	static const int end_attrs[] = { RCOW_A_DEV_ID, RCOW_A_STATUS, 0 };
	const int *list;
	struct attrs at;
	int r;

	r = parse_attrs(nlh, &at, err);
	if (r)
		return r;
	memset(m, 0, sizeof(*m));
	m->cmd = rcow_msg_cmd(nlh);
	switch (m->cmd) {
	case RCOW_CMD_MIGRATE_ROUND:
	case RCOW_CMD_MIGRATE_COMPLETE:
	case RCOW_CMD_MIGRATE_POSTCOPY:
		list = dev_attrs;
		break;
	case RCOW_CMD_MIGRATE_FILL:
	case RCOW_CMD_MIGRATE_REMOTE:
		list = range_attrs;
		break;
	case RCOW_CMD_MIGRATE_MARK:
		list = mark_attrs;
		break;
	case RCOW_CMD_MIGRATE_END:
		list = end_attrs;
		break;
	default:
		return rcow_err_set(err, EPROTO, "not a migration request (command %u)", m->cmd);
	}
	r = need(&at, "migration request", list, err);
	if (r)
		return r;
	m->dev_id = u32_of(&at, RCOW_A_DEV_ID);
	m->round = u64_of(&at, RCOW_A_MIGRATE_ROUND);
	m->first = u64_of(&at, RCOW_A_FIRST_EXTENT);
	m->count = u32_of(&at, RCOW_A_EXTENT_COUNT);
	m->status = u32_of(&at, RCOW_A_STATUS);
	m->flags = u32_of(&at, RCOW_A_FLAGS);
	str_of(&at, RCOW_A_MESSAGE, m->message, sizeof(m->message));
	return 0;
}

int rcow_msg_parse_bitmap(const struct nlmsghdr *nlh, struct rcow_bitmap_chunk *c,
			  struct rcow_err *err)
{
	static const int list[] = { RCOW_A_FIRST_EXTENT, RCOW_A_EXTENT_COUNT, RCOW_A_BITMAP_DATA, 0 };
	struct attrs at;
	int r;

	r = parse_attrs(nlh, &at, err);
	if (!r)
		r = need(&at, "GET_BITMAP reply", list, err);
	if (r)
		return r;
	c->first = u64_of(&at, RCOW_A_FIRST_EXTENT);
	c->count = u32_of(&at, RCOW_A_EXTENT_COUNT);
	c->data = mnl_attr_get_payload(at.tb[RCOW_A_BITMAP_DATA]);
	c->len = mnl_attr_get_payload_len(at.tb[RCOW_A_BITMAP_DATA]);
	if (c->len < (c->count + 7ull) / 8)
		return rcow_err_set(err, EPROTO,
			"GET_BITMAP reply claims %u extents but carries only %zu bytes of bitmap",
			c->count, c->len);
	return 0;
}

struct fam_ctx {
	uint16_t id;
	bool found;
};

static int fam_cb(const struct nlattr *a, void *data)
{
	struct fam_ctx *f = data;

	if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID &&
	    mnl_attr_validate(a, MNL_TYPE_U16) == 0) {
		f->id = mnl_attr_get_u16(a);
		f->found = true;
	}
	return MNL_CB_OK;
}

int rcow_msg_parse_family(const struct nlmsghdr *nlh, uint16_t *id, struct rcow_err *err)
{
	struct fam_ctx f = { 0, false };
	int r = check_genl(nlh, err);

	if (r)
		return r;
	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), fam_cb, &f) < 0 || !f.found)
		return rcow_err_set(err, EPROTO, "generic netlink controller reply has no family id");
	*id = f.id;
	return 0;
}

static int ack_cb(const struct nlattr *a, void *data)
{
	struct rcow_ack *ack = data;

	switch (mnl_attr_get_type(a)) {
	case NLMSGERR_ATTR_MSG:
		if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
			snprintf(ack->msg, sizeof(ack->msg), "%s", mnl_attr_get_str(a));
		break;
	case NLMSGERR_ATTR_OFFS:
		if (mnl_attr_validate(a, MNL_TYPE_U32) == 0) {
			ack->has_offset = true;
			ack->offset = mnl_attr_get_u32(a);
		}
		break;
	}
	return MNL_CB_OK;
}

int rcow_msg_parse_ack(const struct nlmsghdr *nlh, struct rcow_ack *ack, struct rcow_err *err)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	size_t off;

	memset(ack, 0, sizeof(*ack));
	if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*e))
		return rcow_err_set(err, EPROTO, "truncated netlink error message");
	ack->error = e->error < 0 ? -e->error : e->error;
	ack->seq = nlh->nlmsg_seq;
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return 0;
	off = sizeof(e->error) +
	      ((nlh->nlmsg_flags & NLM_F_CAPPED) ? sizeof(struct nlmsghdr) : e->msg.nlmsg_len);
	if (MNL_ALIGN(off) + NLMSG_HDRLEN > nlh->nlmsg_len)
		return 0;	/* no room for TLVs: ignore them */
	mnl_attr_parse(nlh, (unsigned int)off, ack_cb, ack);
	return 0;
}

/* ---- formatting ----------------------------------------------------- */

struct out {
	char *p;
	size_t len, used;
	bool overflow;
};

static void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p + o->used, o->len - o->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->len - o->used)
		o->overflow = true;
	else
		o->used += (size_t)n;
}

static void out_escaped(struct out *o, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f || c == '\\')
			outf(o, "\\x%02x", c);
		else
			outf(o, "%c", c);
	}
}

int rcow_device_info_format(const struct rcow_device_info *d, char *buf, size_t len)
{
	struct out o = { buf, len, 0, false };

#define HAVE(a) (d->have & (1ull << (a)))
	if (len == 0)
		return -ENOSPC;
	buf[0] = '\0';
	outf(&o, "dev_id=%u", d->dev_id);
	if (HAVE(RCOW_A_DM_NAME)) {
		outf(&o, " name=");
		out_escaped(&o, d->dm_name);
	}
	if (HAVE(RCOW_A_DM_UUID)) {
		outf(&o, " uuid=");
		out_escaped(&o, d->dm_uuid);
	}
	if (HAVE(RCOW_A_COW_MAJOR) && HAVE(RCOW_A_COW_MINOR))
		outf(&o, " cow=%u:%u", d->cow_major, d->cow_minor);
	if (HAVE(RCOW_A_EXTENT_SECTORS))
		outf(&o, " extent_sectors=%u", d->extent_sectors);
	if (HAVE(RCOW_A_NR_EXTENTS))
		outf(&o, " nr_extents=%llu", (unsigned long long)d->nr_extents);
	if (HAVE(RCOW_A_DATA_OFFSET))
		outf(&o, " data_offset=%llu", (unsigned long long)d->data_offset);
	if (HAVE(RCOW_A_DEV_SECTORS))
		outf(&o, " dev_sectors=%llu", (unsigned long long)d->dev_sectors);
	if (HAVE(RCOW_A_PRESENT))
		outf(&o, " present=%llu", (unsigned long long)d->present);
	if (HAVE(RCOW_A_FLAGS))
		outf(&o, " flags=0x%x", d->flags);
	if (HAVE(RCOW_A_BASE_URI)) {
		outf(&o, " base_uri=");
		out_escaped(&o, d->base_uri);
	}
	if (HAVE(RCOW_A_COMMIT_STATE))
		outf(&o, " commit_state=%u commit_gen=%llu commit_flags=0x%x commit_total=%llu commit_done=%llu",
		     d->commit_state, (unsigned long long)d->commit_gen, d->commit_flags,
		     (unsigned long long)d->commit_total, (unsigned long long)d->commit_done);
	if (HAVE(RCOW_A_TARGET_URI)) {
		outf(&o, " target_uri=");
		out_escaped(&o, d->target_uri);
	}
#undef HAVE
	return o.overflow ? -ENOSPC : 0;
}
