// SPDX-License-Identifier: GPL-2.0
/*
 * Copyright (C) 2026 The dm-remote-cow authors.
 *
 * The generic netlink channel between remote-cow devices and their
 * userspace helper, remote-cowd.
 *
 * One helper serves every device of the host: it sends REGISTER from the
 * socket on which it wants to hear from the kernel, and from then on each
 * FAULT (and each device or hydrate event) is unicast to that socket.  The
 * kernel learns that the helper is gone either when a unicast is refused
 * or when its socket is released (netlink notifier); faults that had been
 * sent to it are then queued again and resent to the next helper that
 * registers.  Unicasts never block: a full socket buffer leaves the fault
 * queued for a retry a few milliseconds later.
 *
 * Every command needs CAP_NET_ADMIN, every attribute is validated by the
 * family's strict policy, and every extent number is checked against the
 * device before it is used.  A FILL_DONE is accepted only from the
 * registered helper's socket, for a fault that was sent to it, naming
 * extents of that fault still outstanding (a FAULT names a run of
 * extents; FILL_DONE may answer it whole or in sub-ranges).  Device ids
 * and cookies are never reused while the module is loaded, so an answer
 * meant for a removed device or an older table cannot be taken for one of
 * a newer table.
 *
 * Quiesce.  The helper writes fills straight into the COW device, so the
 * kernel cannot stop a write it already asked for.  When a device that has
 * faults out at the helper is suspended (a table reload or a removal), its
 * postsuspend hook sends QUIESCE and waits, a bounded time, for the
 * helper's QUIESCE_DONE: from then on the helper writes nothing more for
 * that table.  A helper that does not answer in time leaves a fence on the
 * COW device: no table over it resumes (-EBUSY) until the answer comes or
 * the helper's socket closes, since a late fill could otherwise overwrite
 * data the next table writes.
 *
 * The family lives in the initial network namespace only.
 */

#include <linux/delay.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netlink.h>
#include <linux/notifier.h>
#include <net/genetlink.h>
#include <net/netlink.h>
#include <net/net_namespace.h>

#include "dm-remote-cow.h"

#define DM_MSG_PREFIX "remote-cow"

/*
 * A COW device whose last table's helper did not confirm a QUIESCE: see
 * above.  On rcow_fences, under rcow_nl_lock.
 */
struct rcow_fence {
	struct list_head node;
	dev_t cow;
	u32 dev_id;
	u64 cookie;
};

/*
 * rcow_nl_lock protects rcow_devices, rcow_fences, rcow_last_id, every
 * device's netlink fields (struct rcow: id .. fence) and writes of
 * rcow_helper_portid.  Lock order: rcow_nl_lock, then rc->lock.  Never
 * held across anything that waits for a device's worker or for the
 * helper.
 */
static DEFINE_MUTEX(rcow_nl_lock);
static LIST_HEAD(rcow_devices);
static LIST_HEAD(rcow_fences);
static u32 rcow_last_id;
/* 0: no helper.  Read locklessly with READ_ONCE for status and map. */
static u32 rcow_helper_portid;
/* Fault and quiesce cookies, unique across devices; atomic. */
static atomic64_t rcow_last_cookie = ATOMIC64_INIT(0);

static struct genl_family rcow_family;

bool rcow_nl_helper_connected(void)
{
	return READ_ONCE(rcow_helper_portid) != 0;
}

/* rcow_nl_lock held. */
static struct rcow *find_device(u32 id)
{
	struct rcow *rc;

	list_for_each_entry(rc, &rcow_devices, nl_node)
		if (rc->id == id)
			return rc;
	return NULL;
}

u64 rcow_nl_new_cookie(void)
{
	return atomic64_inc_return(&rcow_last_cookie);
}

/*
 * rcow_nl_lock held.  The helper's socket is gone, so is every write it
 * could still make: pending quiesces are over and fences fall.
 */
static void helper_gone(void)
{
	struct rcow_fence *f, *tmp;
	struct rcow *rc;

	DMINFO("helper (port %u) disconnected; faults wait for the next one",
	       rcow_helper_portid);
	WRITE_ONCE(rcow_helper_portid, 0);
	list_for_each_entry(rc, &rcow_devices, nl_node) {
		if (rc->quiesce_cookie) {
			rc->quiesce_cookie = 0;
			complete(&rc->quiesced);
		}
		rcow_helper_left(rc);
	}
	list_for_each_entry_safe(f, tmp, &rcow_fences, node) {
		DMINFO("COW device %u:%u no longer fenced: its helper is gone",
		       MAJOR(f->cow), MINOR(f->cow));
		list_del(&f->node);
		kfree(f);
	}
}

/* rcow_nl_lock held.  Consumes @skb. */
static int send_to_helper(struct sk_buff *skb)
{
	u32 portid = rcow_helper_portid;
	int r;

	if (!portid) {
		nlmsg_free(skb);
		return -ENOTCONN;
	}
	r = genlmsg_unicast(&init_net, skb, portid);
	if (r == -ECONNREFUSED) {
		helper_gone();
		r = -ENOTCONN;
	}
	return r;
}

/*
 * Kernel -> helper messages are built in two steps: event_new() allocates
 * a message @cmd with room for @size bytes of attributes, the caller puts
 * them, and event_send() (rcow_nl_lock held) or event_send_unlocked()
 * ends and sends it, or frees it if @put_failed (an attribute did not
 * fit: -EMSGSIZE).
 */
static struct sk_buff *event_new(u8 cmd, size_t size, gfp_t gfp)
{
	struct sk_buff *skb = genlmsg_new(size, gfp);

	if (skb && !genlmsg_put(skb, 0, 0, &rcow_family, 0, cmd)) {
		nlmsg_free(skb);
		skb = NULL;
	}
	return skb;
}

static int event_send(struct sk_buff *skb, bool put_failed)
{
	if (put_failed) {
		nlmsg_free(skb);
		return -EMSGSIZE;
	}
	/* One message per skb: it starts at skb->data. */
	nlmsg_end(skb, nlmsg_hdr(skb));
	return send_to_helper(skb);
}

/*
 * Wait until the netlink handler running now, if any, is done: one that
 * looked at a device's job sets before they were taken away (see
 * rcow_free_sets()).  Not with rcow_nl_lock held.
 */
void rcow_nl_barrier(void)
{
	mutex_lock(&rcow_nl_lock);
	mutex_unlock(&rcow_nl_lock);
}

static int event_send_unlocked(struct sk_buff *skb, bool put_failed)
{
	int r;

	mutex_lock(&rcow_nl_lock);
	r = event_send(skb, put_failed);
	mutex_unlock(&rcow_nl_lock);
	return r;
}

static int put_commit_attrs(struct sk_buff *skb, struct rcow *rc)
{
	struct rcow_commit_info ci;
	bool uploading = rcow_commit_info(rc, &ci, true);
	int r = 0;

	if (nla_put_u32(skb, RCOW_A_COMMIT_STATE, ci.state) ||
	    nla_put_u64_64bit(skb, RCOW_A_COMMIT_GEN, ci.gen, RCOW_A_PAD) ||
	    nla_put_u32(skb, RCOW_A_COMMIT_FLAGS, ci.flags) ||
	    nla_put_u64_64bit(skb, RCOW_A_COMMIT_TOTAL, ci.total,
			      RCOW_A_PAD) ||
	    nla_put_u64_64bit(skb, RCOW_A_COMMIT_DONE, ci.done, RCOW_A_PAD))
		r = -EMSGSIZE;
	else if (uploading && !ci.uri)
		r = -ENOMEM;
	else if (uploading && nla_put_string(skb, RCOW_A_TARGET_URI, ci.uri))
		r = -EMSGSIZE;
	kfree(ci.uri);
	return r;
}

static int put_migrate_attrs(struct sk_buff *skb, struct rcow *rc)
{
	struct rcow_migrate_info mi;
	int r = 0;

	rcow_migrate_info(rc, &mi, true);
	if (nla_put_u32(skb, RCOW_A_MIGRATE_STATE, mi.state) ||
	    nla_put_u64_64bit(skb, RCOW_A_MIGRATE_ROUND, mi.round,
			      RCOW_A_PAD) ||
	    nla_put_u64_64bit(skb, RCOW_A_MIGRATE_TOTAL, mi.total,
			      RCOW_A_PAD) ||
	    nla_put_u64_64bit(skb, RCOW_A_MIGRATE_DONE, mi.done, RCOW_A_PAD))
		r = -EMSGSIZE;
	else if (mi.nomem)
		r = -ENOMEM;
	else if (mi.target &&
		 nla_put_string(skb, RCOW_A_MIGRATE_TARGET, mi.target))
		r = -EMSGSIZE;
	kfree(mi.target);
	return r;
}

static u32 device_flags(struct rcow *rc)
{
	u32 flags = 0;

	if (rc->hydrating)
		flags |= RCOW_DEV_F_HYDRATING;
	if (READ_ONCE(rc->mode) != RCOW_MODE_RW)
		flags |= RCOW_DEV_F_READ_ONLY;
	if (test_bit(RCOW_F_QUIESCED, &rc->flags))
		flags |= RCOW_DEV_F_INACTIVE;
	return flags;
}

/*
 * The device's attributes, FLAGS @flags: RCOW_DEV_F_* but in
 * MIGRATE_FINISH, where they are RCOW_MIGRATE_F_*.
 */
static int put_device_attrs_flags(struct sk_buff *skb, struct rcow *rc,
				  u32 flags)
{
	char name[DM_NAME_LEN] = "", uuid[DM_UUID_LEN] = "";
	dev_t cow = rc->cow_dev->bdev->bd_dev;

	if (dm_copy_name_and_uuid(dm_table_get_md(rc->ti->table), name, uuid)) {
		name[0] = '\0';
		uuid[0] = '\0';
	}

	if (nla_put_u32(skb, RCOW_A_DEV_ID, rc->id) ||
	    nla_put_string(skb, RCOW_A_DM_NAME, name) ||
	    nla_put_string(skb, RCOW_A_DM_UUID, uuid) ||
	    nla_put_u32(skb, RCOW_A_COW_MAJOR, MAJOR(cow)) ||
	    nla_put_u32(skb, RCOW_A_COW_MINOR, MINOR(cow)) ||
	    nla_put_u32(skb, RCOW_A_EXTENT_SECTORS, rc->extent_sectors) ||
	    nla_put_u64_64bit(skb, RCOW_A_NR_EXTENTS, rc->nr_extents,
			      RCOW_A_PAD) ||
	    nla_put_u64_64bit(skb, RCOW_A_DATA_OFFSET, rc->data_offset,
			      RCOW_A_PAD) ||
	    nla_put_u64_64bit(skb, RCOW_A_DEV_SECTORS, rc->ti->len,
			      RCOW_A_PAD) ||
	    nla_put_string(skb, RCOW_A_BASE_URI, rc->base_uri) ||
	    nla_put_u64_64bit(skb, RCOW_A_PRESENT,
			      rcow_md_count(rc->md, RCOW_BITMAP_PRESENT),
			      RCOW_A_PAD) ||
	    nla_put_u32(skb, RCOW_A_FLAGS, flags) ||
	    (rc->hydrating &&
	     nla_put_u32(skb, RCOW_A_HYDRATE_RATE, rc->hydrate_rate)))
		return -EMSGSIZE;
	return put_commit_attrs(skb, rc) ?: put_migrate_attrs(skb, rc);
}

static int put_device_attrs(struct sk_buff *skb, struct rcow *rc)
{
	return put_device_attrs_flags(skb, rc, device_flags(rc));
}

/*
 * rcow_nl_lock held.  @cmd with the device attributes; FLAGS @flags, or
 * the device's with @dev_flags.
 */
static void send_device_event_flags(struct rcow *rc, u8 cmd, bool dev_flags,
				    u32 flags)
{
	struct sk_buff *skb;

	if (!rcow_helper_portid)
		return;
	skb = event_new(cmd, NLMSG_GOODSIZE, GFP_NOIO);
	if (skb)
		event_send(skb, put_device_attrs_flags(skb, rc, dev_flags ?
						       device_flags(rc) : flags));
}

/* rcow_nl_lock held.  @cmd with the device attributes. */
static void send_device_event(struct rcow *rc, u8 cmd)
{
	send_device_event_flags(rc, cmd, true, 0);
}

/*
 * Called by the target
 */

/* Ids are never reused while the module is loaded: 2^32 - 1 tables. */
int rcow_nl_add_device(struct rcow *rc)
{
	int r = 0;

	init_completion(&rc->quiesced);
	rc->fence = kzalloc(sizeof(*rc->fence), GFP_KERNEL);
	if (!rc->fence)
		return -ENOMEM;
	mutex_lock(&rcow_nl_lock);
	if (rcow_last_id == U32_MAX) {
		r = -ENOSPC;
	} else {
		rc->id = ++rcow_last_id;
		list_add_tail(&rc->nl_node, &rcow_devices);
	}
	mutex_unlock(&rcow_nl_lock);
	if (r) {
		kfree(rc->fence);
		rc->fence = NULL;
	}
	return r;
}

void rcow_nl_remove_device(struct rcow *rc)
{
	mutex_lock(&rcow_nl_lock);
	if (!list_empty(&rc->nl_node)) {
		list_del_init(&rc->nl_node);
		if (rc->announced)
			send_device_event(rc, RCOW_CMD_DEVICE_REMOVE);
	}
	mutex_unlock(&rcow_nl_lock);
	kfree(rc->fence);
	rc->fence = NULL;
}

bool rcow_nl_cow_fenced(dev_t cow)
{
	struct rcow_fence *f;
	bool fenced = false;

	mutex_lock(&rcow_nl_lock);
	list_for_each_entry(f, &rcow_fences, node)
		if (f->cow == cow)
			fenced = true;
	mutex_unlock(&rcow_nl_lock);
	return fenced;
}

/* rcow_nl_lock held. */
static int send_quiesce(u32 id, u64 cookie)
{
	struct sk_buff *skb;

	skb = event_new(RCOW_CMD_QUIESCE, nla_total_size(sizeof(u32)) +
			nla_total_size_64bit(sizeof(u64)), GFP_NOIO);
	if (!skb)
		return -ENOMEM;
	return event_send(skb, nla_put_u32(skb, RCOW_A_DEV_ID, id) ||
			  nla_put_u64_64bit(skb, RCOW_A_COOKIE, cookie,
					    RCOW_A_PAD));
}

/*
 * Ask the helper to stop writing for @rc and wait up to @timeout_ms for its
 * answer.  0 once it answered, or when there is no helper (nothing of it
 * can still write); -ETIMEDOUT when it did not answer in time: the COW
 * device is then fenced (rcow_nl_cow_fenced()) until it does.  Called from
 * postsuspend; may sleep.
 */
int rcow_nl_quiesce(struct rcow *rc, unsigned int timeout_ms)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(timeout_ms);
	u64 cookie = rcow_nl_new_cookie();
	int r;

	reinit_completion(&rc->quiesced);
	for (;;) {
		mutex_lock(&rcow_nl_lock);
		if (!rcow_helper_portid) {
			mutex_unlock(&rcow_nl_lock);
			return 0;
		}
		rc->quiesce_cookie = cookie;
		r = send_quiesce(rc->id, cookie);
		mutex_unlock(&rcow_nl_lock);
		if (r == -ENOTCONN)
			return 0;
		/* A full socket buffer (or no memory): try again shortly. */
		if (!r || time_after(jiffies, deadline))
			break;
		msleep(20);
	}
	if (!r)
		wait_for_completion_timeout(&rc->quiesced,
					    max_t(long, 1, deadline - jiffies));

	mutex_lock(&rcow_nl_lock);
	if (!rc->quiesce_cookie) {
		r = 0;
	} else {
		rc->quiesce_cookie = 0;
		rc->fence->cow = rc->cow_dev->bdev->bd_dev;
		rc->fence->dev_id = rc->id;
		rc->fence->cookie = cookie;
		list_add_tail(&rc->fence->node, &rcow_fences);
		rc->fence = NULL;
		r = -ETIMEDOUT;
	}
	mutex_unlock(&rcow_nl_lock);
	return r;
}

void rcow_nl_announce(struct rcow *rc)
{
	mutex_lock(&rcow_nl_lock);
	if (!rc->announced) {
		rc->announced = true;
		send_device_event(rc, RCOW_CMD_DEVICE_ADD);
	}
	mutex_unlock(&rcow_nl_lock);
}

/* FAULT (with RCOW_FAULT_F_* @flags) or PROMOTE of a run of @rc. */
static int send_run(struct rcow *rc, u8 cmd, u64 cookie, u64 extent,
		    u32 count, u32 flags)
{
	struct sk_buff *skb;
	bool bad;

	skb = event_new(cmd, nla_total_size(sizeof(u32)) * 3 +
			nla_total_size_64bit(sizeof(u64)) * 2, GFP_NOIO);
	if (!skb)
		return -ENOMEM;
	bad = nla_put_u32(skb, RCOW_A_DEV_ID, rc->id) ||
	      nla_put_u64_64bit(skb, RCOW_A_FIRST_EXTENT, extent, RCOW_A_PAD) ||
	      nla_put_u32(skb, RCOW_A_EXTENT_COUNT, count) ||
	      nla_put_u64_64bit(skb, RCOW_A_COOKIE, cookie, RCOW_A_PAD) ||
	      (flags && nla_put_u32(skb, RCOW_A_FLAGS, flags));
	return event_send_unlocked(skb, bad);
}

int rcow_nl_send_fault(struct rcow *rc, u64 cookie, u64 extent, u32 count,
		       u32 flags)
{
	return send_run(rc, RCOW_CMD_FAULT, cookie, extent, count, flags);
}

int rcow_nl_send_promote(struct rcow *rc, u64 cookie, u64 extent, u32 count)
{
	return send_run(rc, RCOW_CMD_PROMOTE, cookie, extent, count, 0);
}

/*
 * rcow_nl_lock held.  COMMIT_START for @rc's running commit, if one runs:
 * the device attributes carry the commit's.
 */
static void send_commit_start(struct rcow *rc)
{
	struct rcow_commit_info ci;

	if (rcow_commit_info(rc, &ci, false))
		send_device_event(rc, RCOW_CMD_COMMIT_START);
}

void rcow_nl_commit_start(struct rcow *rc)
{
	mutex_lock(&rcow_nl_lock);
	send_commit_start(rc);
	mutex_unlock(&rcow_nl_lock);
}

int rcow_nl_send_preserve(struct rcow *rc, u64 gen, u64 first, u32 count)
{
	struct sk_buff *skb;
	bool bad;

	skb = event_new(RCOW_CMD_PRESERVE, nla_total_size(sizeof(u32)) * 2 +
			nla_total_size_64bit(sizeof(u64)) * 2, GFP_NOIO);
	if (!skb)
		return -ENOMEM;
	bad = nla_put_u32(skb, RCOW_A_DEV_ID, rc->id) ||
	      nla_put_u64_64bit(skb, RCOW_A_COMMIT_GEN, gen, RCOW_A_PAD) ||
	      nla_put_u64_64bit(skb, RCOW_A_FIRST_EXTENT, first, RCOW_A_PAD) ||
	      nla_put_u32(skb, RCOW_A_EXTENT_COUNT, count);
	return event_send_unlocked(skb, bad);
}

void rcow_nl_commit_abort(struct rcow *rc, u64 gen)
{
	struct sk_buff *skb;
	bool bad;

	skb = event_new(RCOW_CMD_COMMIT_ABORT, nla_total_size(sizeof(u32)) +
			nla_total_size_64bit(sizeof(u64)), GFP_NOIO);
	if (!skb)
		return;
	bad = nla_put_u32(skb, RCOW_A_DEV_ID, rc->id) ||
	      nla_put_u64_64bit(skb, RCOW_A_COMMIT_GEN, gen, RCOW_A_PAD);
	event_send_unlocked(skb, bad);
}

/*
 * MIGRATE_START, _ROUND, _FINISH, _ABORT, _WAITING: the device's
 * attributes.
 */
void rcow_nl_migrate_event(struct rcow *rc, u8 cmd)
{
	mutex_lock(&rcow_nl_lock);
	send_device_event(rc, cmd);
	mutex_unlock(&rcow_nl_lock);
}

/* MIGRATE_FINISH: FLAGS are RCOW_MIGRATE_F_* (F_POSTCOPY), not the device's. */
void rcow_nl_migrate_finish_event(struct rcow *rc, u32 flags)
{
	mutex_lock(&rcow_nl_lock);
	send_device_event_flags(rc, RCOW_CMD_MIGRATE_FINISH, false, flags);
	mutex_unlock(&rcow_nl_lock);
}

void rcow_nl_hydrate_ctl(struct rcow *rc, bool start, u32 rate)
{
	struct sk_buff *skb;

	mutex_lock(&rcow_nl_lock);
	WRITE_ONCE(rc->hydrating, start);
	rc->hydrate_rate = rate;
	if (start)
		WRITE_ONCE(rc->hydrate_started, jiffies);
	if (!rcow_helper_portid)
		goto out;
	skb = event_new(RCOW_CMD_HYDRATE_CTL, nla_total_size(sizeof(u32)) * 2,
			GFP_KERNEL);
	if (skb)
		event_send(skb, nla_put_u32(skb, RCOW_A_DEV_ID, rc->id) ||
			   (start &&
			    nla_put_u32(skb, RCOW_A_HYDRATE_RATE, rate)));
out:
	mutex_unlock(&rcow_nl_lock);
}

/*
 * Requests from the helper
 */

static const struct nla_policy rcow_nl_policy[RCOW_A_MAX + 1] = {
	[RCOW_A_DEV_ID]		= NLA_POLICY_MIN(NLA_U32, 1),
	[RCOW_A_FIRST_EXTENT]	= { .type = NLA_U64 },
	[RCOW_A_EXTENT_COUNT]	= NLA_POLICY_RANGE(NLA_U32, 1,
						   REMOTE_COW_MAX_RANGE),
	[RCOW_A_COOKIE]		= NLA_POLICY_MIN(NLA_U64, 1),
	[RCOW_A_STATUS]		= NLA_POLICY_MAX(NLA_U32, MAX_ERRNO),
	[RCOW_A_BITMAP]		= NLA_POLICY_MAX(NLA_U32,
						 RCOW_BITMAP_MIGRATE_REMOTE),
	[RCOW_A_RUN_LENGTH]	= { .type = NLA_REJECT },
	[RCOW_A_COMMIT_GEN]	= NLA_POLICY_MIN(NLA_U64, 1),
	[RCOW_A_TARGET_URI]	= { .type = NLA_REJECT },
	[RCOW_A_COMMIT_FLAGS]	= { .type = NLA_REJECT },
	[RCOW_A_COMMIT_STATE]	= { .type = NLA_REJECT },
	[RCOW_A_COMMIT_TOTAL]	= { .type = NLA_REJECT },
	[RCOW_A_COMMIT_DONE]	= { .type = NLA_REJECT },
	[RCOW_A_MARK]		= NLA_POLICY_RANGE(NLA_U32, RCOW_MARK_PRESERVED,
						   RCOW_MARK_UPLOADED),
	[RCOW_A_MESSAGE]	= { .type = NLA_NUL_STRING, .len = 255 },
	[RCOW_A_MIGRATE_TARGET]	= { .type = NLA_REJECT },
	[RCOW_A_MIGRATE_STATE]	= { .type = NLA_REJECT },
	[RCOW_A_MIGRATE_ROUND]	= NLA_POLICY_MIN(NLA_U64, 1),
	[RCOW_A_MIGRATE_TOTAL]	= { .type = NLA_REJECT },
	[RCOW_A_MIGRATE_DONE]	= { .type = NLA_REJECT },
	[RCOW_A_MIGRATE_DELAY_MS] = NLA_POLICY_MAX(NLA_U32,
						   RCOW_MIGRATE_MAX_DELAY_MS),
	[RCOW_A_FLAGS]		= NLA_POLICY_MASK(NLA_U32,
						  RCOW_MIGRATE_F_MIRROR |
						  RCOW_MIGRATE_F_KEEP_FENCE),
};

/* A bitmap number a request may name. */
static bool known_bitmap(u32 b)
{
	return b < RCOW_NR_BITMAPS || b == RCOW_BITMAP_COMMIT_UPLOAD ||
	       b == RCOW_BITMAP_COMMIT_HELD || b == RCOW_BITMAP_MIGRATE_ROUND ||
	       b == RCOW_BITMAP_MIGRATE_REMOTE;
}

/*
 * The in-memory set bitmap @b names, or NULL for the persistent copy:
 * the commit's sets, the migration's round set and its change set
 * (DIRTY_MIGRATE: its blocks are in the format, but it is never set on
 * disk and the metadata keeps no copy of it).  True if @b is an
 * in-memory set: NULL then means empty (no commit or migration runs).
 */
static bool mem_set(struct rcow *rc, u32 b, const unsigned long **set)
{
	*set = NULL;
	if (b == RCOW_BITMAP_COMMIT_UPLOAD || b == RCOW_BITMAP_COMMIT_HELD) {
		*set = rcow_commit_set(rc, b);
		return true;
	}
	if (b == RCOW_BITMAP_MIGRATE_ROUND || b == RCOW_BITMAP_DIRTY_MIGRATE) {
		*set = rcow_migrate_set(rc, b);
		return true;
	}
	if (b == RCOW_BITMAP_MIGRATE_REMOTE) {
		/* Freed with the table; NULL unless incoming. */
		*set = rc->incoming_remote;
		return true;
	}
	return false;
}

/*
 * The bitmaps a request may name: the persistent ones, and the in-memory
 * sets of mem_set().  *@set is NULL for a persistent bitmap.
 */
static int check_bitmap(struct genl_info *info, struct nlattr *attr,
			struct rcow *rc, const unsigned long **set)
{
	u32 b = nla_get_u32(attr);

	if (known_bitmap(b)) {
		mem_set(rc, b, set);
		return 0;
	}
	*set = NULL;
	if (info)
		NL_SET_ERR_MSG_ATTR(info->extack, attr, "no such bitmap");
	return -ERANGE;
}

static int need_attrs(struct genl_info *info, const int *attrs, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (GENL_REQ_ATTR_CHECK(info, attrs[i]))
			return -EINVAL;
	return 0;
}

/*
 * Takes rcow_nl_lock and finds the device named by RCOW_A_DEV_ID: 0 with
 * the lock held and *rcp set, or -ENODEV with the lock released.  The
 * lock keeps the device from going away (rcow_nl_remove_device() takes it).
 */
static int lock_device(struct genl_info *info, struct rcow **rcp)
{
	mutex_lock(&rcow_nl_lock);
	*rcp = find_device(nla_get_u32(info->attrs[RCOW_A_DEV_ID]));
	if (*rcp)
		return 0;
	mutex_unlock(&rcow_nl_lock);
	NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[RCOW_A_DEV_ID],
			    "no remote-cow device with this id");
	return -ENODEV;
}

static int rcow_nl_register(struct sk_buff *skb, struct genl_info *info)
{
	struct rcow_migrate_info mi;
	struct rcow *rc;
	int r = 0;

	mutex_lock(&rcow_nl_lock);
	if (rcow_helper_portid && rcow_helper_portid != info->snd_portid) {
		GENL_SET_ERR_MSG(info, "another helper is registered");
		r = -EBUSY;
		goto out;
	}
	/*
	 * Registering again from the registered socket changes nothing:
	 * resending faults it may already have answered could let a stale
	 * fill overwrite newer data.
	 */
	if (rcow_helper_portid == info->snd_portid)
		goto out;
	WRITE_ONCE(rcow_helper_portid, info->snd_portid);
	DMINFO("helper registered (port %u)", info->snd_portid);
	list_for_each_entry(rc, &rcow_devices, nl_node) {
		rcow_helper_arrived(rc);
		send_commit_start(rc);
		if (rcow_migrate_info(rc, &mi, false))
			send_device_event(rc, RCOW_CMD_MIGRATE_START);
	}
out:
	mutex_unlock(&rcow_nl_lock);
	return r;
}

static int rcow_nl_unregister(struct sk_buff *skb, struct genl_info *info)
{
	int r = 0;

	mutex_lock(&rcow_nl_lock);
	if (rcow_helper_portid != info->snd_portid) {
		GENL_SET_ERR_MSG(info, "this socket is not the registered helper");
		r = -ENOENT;
	} else {
		helper_gone();
	}
	mutex_unlock(&rcow_nl_lock);
	return r;
}

static int rcow_nl_get_device(struct sk_buff *skb, struct genl_info *info)
{
	static const int attrs[] = { RCOW_A_DEV_ID };
	struct sk_buff *msg;
	struct rcow *rc;
	void *hdr;
	int r;

	r = need_attrs(info, attrs, ARRAY_SIZE(attrs));
	if (r)
		return r;
	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;

	r = lock_device(info, &rc);
	if (r)
		goto free;
	hdr = genlmsg_put_reply(msg, info, &rcow_family, 0,
				RCOW_CMD_GET_DEVICE);
	r = !hdr || put_device_attrs(msg, rc) ? -EMSGSIZE : 0;
	mutex_unlock(&rcow_nl_lock);
	if (r)
		goto free;
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);

free:
	nlmsg_free(msg);
	return r;
}

static int rcow_nl_dump_devices(struct sk_buff *skb,
				struct netlink_callback *cb)
{
	unsigned long idx = 0, start = cb->args[0];
	struct rcow *rc;
	void *hdr;

	mutex_lock(&rcow_nl_lock);
	list_for_each_entry(rc, &rcow_devices, nl_node) {
		if (idx++ < start)
			continue;
		hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid,
				  cb->nlh->nlmsg_seq, &rcow_family,
				  NLM_F_MULTI, RCOW_CMD_GET_DEVICE);
		if (!hdr)
			break;
		if (put_device_attrs(skb, rc)) {
			genlmsg_cancel(skb, hdr);
			break;
		}
		genlmsg_end(skb, hdr);
		cb->args[0] = idx;
	}
	mutex_unlock(&rcow_nl_lock);
	return skb->len;
}

/* rcow_nl_lock held. */
static int check_helper(struct genl_info *info)
{
	if (info->snd_portid && info->snd_portid == rcow_helper_portid)
		return 0;
	GENL_SET_ERR_MSG(info, "only the registered helper's socket may answer");
	return -EPERM;
}

static int rcow_nl_fill_done(struct sk_buff *skb, struct genl_info *info)
{
	static const int attrs[] = { RCOW_A_DEV_ID, RCOW_A_COOKIE,
				     RCOW_A_FIRST_EXTENT, RCOW_A_STATUS };
	struct rcow *rc;
	u32 count = 0;
	int r;

	r = need_attrs(info, attrs, ARRAY_SIZE(attrs));
	if (r)
		return r;
	/* Optional: absent, the rest of the fault's run from FIRST_EXTENT. */
	if (info->attrs[RCOW_A_EXTENT_COUNT])
		count = nla_get_u32(info->attrs[RCOW_A_EXTENT_COUNT]);

	r = lock_device(info, &rc);
	if (r)
		return r;
	r = check_helper(info);
	if (!r)
		r = rcow_fill_done(rc, nla_get_u64(info->attrs[RCOW_A_COOKIE]),
				   nla_get_u64(info->attrs[RCOW_A_FIRST_EXTENT]),
				   count, nla_get_u32(info->attrs[RCOW_A_STATUS]));
	mutex_unlock(&rcow_nl_lock);
	if (r == -ENOENT)
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[RCOW_A_COOKIE],
				    "cookie is not a fault of this device sent to this helper");
	else if (r == -EINVAL)
		NL_SET_ERR_MSG_ATTR(info->extack,
				    info->attrs[RCOW_A_FIRST_EXTENT],
				    "the range is not outstanding in the fault of this cookie");
	return r;
}

static int rcow_nl_quiesce_done(struct sk_buff *skb, struct genl_info *info)
{
	static const int attrs[] = { RCOW_A_DEV_ID, RCOW_A_COOKIE };
	struct rcow_fence *f;
	u64 cookie;
	u32 id;
	struct rcow *rc;
	int r;

	r = need_attrs(info, attrs, ARRAY_SIZE(attrs));
	if (r)
		return r;
	cookie = nla_get_u64(info->attrs[RCOW_A_COOKIE]);
	id = nla_get_u32(info->attrs[RCOW_A_DEV_ID]);

	mutex_lock(&rcow_nl_lock);
	r = check_helper(info);
	if (r)
		goto out;
	rc = find_device(id);
	if (rc && rc->quiesce_cookie == cookie) {
		rc->quiesce_cookie = 0;
		complete(&rc->quiesced);
		goto out;
	}
	list_for_each_entry(f, &rcow_fences, node) {
		if (f->dev_id == id && f->cookie == cookie) {
			DMINFO("COW device %u:%u no longer fenced: the helper stopped writing",
			       MAJOR(f->cow), MINOR(f->cow));
			list_del(&f->node);
			kfree(f);
			goto out;
		}
	}
	GENL_SET_ERR_MSG(info, "no QUIESCE with this device id and cookie is waiting");
	r = -ENOENT;
out:
	mutex_unlock(&rcow_nl_lock);
	return r;
}

/* rcow_nl_lock held. */
static int check_range(struct genl_info *info, struct rcow *rc, u64 first,
		       u64 count)
{
	if (first >= rc->nr_extents || count > rc->nr_extents - first) {
		NL_SET_ERR_MSG_ATTR(info->extack,
				    info->attrs[RCOW_A_FIRST_EXTENT],
				    "extent range beyond the end of the device");
		return -ERANGE;
	}
	return 0;
}

static int rcow_nl_hydrate(struct sk_buff *skb, struct genl_info *info)
{
	static const int attrs[] = { RCOW_A_DEV_ID, RCOW_A_FIRST_EXTENT,
				     RCOW_A_EXTENT_COUNT };
	struct sk_buff *msg;
	struct rcow *rc;
	u64 first;
	u32 count, queued = 0;
	void *hdr;
	int r;

	r = need_attrs(info, attrs, ARRAY_SIZE(attrs));
	if (r)
		return r;
	first = nla_get_u64(info->attrs[RCOW_A_FIRST_EXTENT]);
	count = nla_get_u32(info->attrs[RCOW_A_EXTENT_COUNT]);
	msg = genlmsg_new(nla_total_size(sizeof(u32)), GFP_KERNEL);
	if (!msg)
		return -ENOMEM;

	r = lock_device(info, &rc);
	if (r)
		goto free;
	r = check_range(info, rc, first, count);
	if (!r)
		r = rcow_hydrate(rc, first, count, &queued);
	mutex_unlock(&rcow_nl_lock);
	if (r == -EROFS)
		GENL_SET_ERR_MSG(info, "the table is read-only: it is never filled");
	else if (r == -EAGAIN)
		GENL_SET_ERR_MSG(info, "table not active (not resumed yet, or suspended)");
	if (r)
		goto free;

	hdr = genlmsg_put_reply(msg, info, &rcow_family, 0, RCOW_CMD_HYDRATE);
	if (!hdr || nla_put_u32(msg, RCOW_A_EXTENT_COUNT, queued)) {
		r = -EMSGSIZE;
		goto free;
	}
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);

free:
	nlmsg_free(msg);
	return r;
}

static void read_set_bits(const unsigned long *set, u64 first, u64 nr,
			  u8 *buf)
{
	u64 i;

	memset(buf, 0, DIV_ROUND_UP_ULL(nr, 8));
	for (i = 0; i < nr; i++)
		if (test_bit(first + i, set))
			buf[i / 8] |= 1 << (i % 8);
}

static int rcow_nl_get_bitmap(struct sk_buff *skb, struct genl_info *info)
{
	static const int attrs[] = { RCOW_A_DEV_ID, RCOW_A_BITMAP,
				     RCOW_A_FIRST_EXTENT };
	const unsigned long *set;
	struct sk_buff *msg;
	struct nlattr *data;
	struct rcow *rc;
	u64 first, count;
	void *hdr;
	int r;

	r = need_attrs(info, attrs, ARRAY_SIZE(attrs));
	if (r)
		return r;
	first = nla_get_u64(info->attrs[RCOW_A_FIRST_EXTENT]);
	if (first % 8) {
		NL_SET_ERR_MSG_ATTR(info->extack,
				    info->attrs[RCOW_A_FIRST_EXTENT],
				    "first extent must be a multiple of 8");
		return -EINVAL;
	}
	msg = genlmsg_new(NLMSG_GOODSIZE + REMOTE_COW_BITMAP_CHUNK, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;

	r = lock_device(info, &rc);
	if (r)
		goto free;
	r = check_range(info, rc, first, 1);
	if (!r)
		r = check_bitmap(info, info->attrs[RCOW_A_BITMAP], rc, &set);
	if (r)
		goto bad;
	count = min_t(u64, rc->nr_extents - first,
		      REMOTE_COW_BITMAP_CHUNK * 8);
	hdr = genlmsg_put_reply(msg, info, &rcow_family, 0,
				RCOW_CMD_GET_BITMAP);
	if (!hdr ||
	    nla_put_u32(msg, RCOW_A_DEV_ID, rc->id) ||
	    nla_put_u32(msg, RCOW_A_BITMAP,
			nla_get_u32(info->attrs[RCOW_A_BITMAP])) ||
	    nla_put_u64_64bit(msg, RCOW_A_FIRST_EXTENT, first, RCOW_A_PAD) ||
	    nla_put_u32(msg, RCOW_A_EXTENT_COUNT, count)) {
		r = -EMSGSIZE;
		goto bad;
	}
	data = nla_reserve(msg, RCOW_A_BITMAP_DATA, DIV_ROUND_UP(count, 8));
	if (!data) {
		r = -EMSGSIZE;
		goto bad;
	}
	if (set)
		read_set_bits(set, first, count, nla_data(data));
	else if (nla_get_u32(info->attrs[RCOW_A_BITMAP]) < RCOW_NR_BITMAPS)
		r = rcow_md_read_bits(rc->md,
				      nla_get_u32(info->attrs[RCOW_A_BITMAP]),
				      first, count, nla_data(data));
	else
		memset(nla_data(data), 0, DIV_ROUND_UP(count, 8));
	if (r) {
		NL_SET_ERR_MSG(info->extack,
			       "cannot read the bitmap from the COW device");
		goto bad;
	}
	mutex_unlock(&rcow_nl_lock);
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);

bad:
	mutex_unlock(&rcow_nl_lock);
free:
	nlmsg_free(msg);
	return r;
}

/*
 * The runs of set bits of a bitmap, one message each: the iterator that
 * snapshot commit and migration use instead of bit-by-bit pages.  Dump
 * state: cb->args[0] device id, [1] bitmap, [2] next extent to look at,
 * [3] set once the request was parsed, [4] where the dump stops (the
 * optional EXTENT_COUNT after the first extent; 0: the device's end).
 */
static int put_run(struct sk_buff *skb, struct netlink_callback *cb,
		   u32 id, u32 bitmap, u64 first, u64 len)
{
	void *hdr;

	hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			  &rcow_family, NLM_F_MULTI, RCOW_CMD_GET_RUNS);
	if (!hdr)
		return -EMSGSIZE;
	if (nla_put_u32(skb, RCOW_A_DEV_ID, id) ||
	    nla_put_u32(skb, RCOW_A_BITMAP, bitmap) ||
	    nla_put_u64_64bit(skb, RCOW_A_FIRST_EXTENT, first, RCOW_A_PAD) ||
	    nla_put_u64_64bit(skb, RCOW_A_RUN_LENGTH, len, RCOW_A_PAD)) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

static int runs_start(struct netlink_callback *cb)
{
	struct nlattr *tb[RCOW_A_MAX + 1];
	int r;

	r = genlmsg_parse(cb->nlh, &rcow_family, tb, RCOW_A_MAX,
			  rcow_nl_policy, cb->extack);
	if (r)
		return r;
	if (!tb[RCOW_A_DEV_ID] || !tb[RCOW_A_BITMAP]) {
		NL_SET_ERR_MSG(cb->extack, "GET_RUNS needs DEV_ID and BITMAP");
		return -EINVAL;
	}
	cb->args[0] = nla_get_u32(tb[RCOW_A_DEV_ID]);
	cb->args[1] = nla_get_u32(tb[RCOW_A_BITMAP]);
	if (!known_bitmap(cb->args[1])) {
		NL_SET_ERR_MSG_ATTR(cb->extack, tb[RCOW_A_BITMAP],
				    "no such bitmap");
		return -ERANGE;
	}
	cb->args[2] = tb[RCOW_A_FIRST_EXTENT] ?
		      nla_get_u64(tb[RCOW_A_FIRST_EXTENT]) : 0;
	cb->args[4] = tb[RCOW_A_EXTENT_COUNT] ?
		      cb->args[2] + nla_get_u32(tb[RCOW_A_EXTENT_COUNT]) : 0;
	cb->args[3] = 1;
	return 0;
}

static int rcow_nl_dump_runs(struct sk_buff *skb, struct netlink_callback *cb)
{
	bool first_call = !cb->args[3];
	const unsigned long *set = NULL;
	struct rcow *rc;
	u64 e, end, stop;
	u32 b;
	int r;

	if (first_call) {
		r = runs_start(cb);
		if (r)
			return r;
	}
	b = cb->args[1];
	mutex_lock(&rcow_nl_lock);
	rc = find_device(cb->args[0]);
	if (!rc) {
		mutex_unlock(&rcow_nl_lock);
		if (!first_call)
			return 0;	/* gone meanwhile: the dump ends */
		NL_SET_ERR_MSG(cb->extack, "no remote-cow device with this id");
		return -ENODEV;
	}
	if (first_call && cb->args[2] >= rc->nr_extents) {
		mutex_unlock(&rcow_nl_lock);
		NL_SET_ERR_MSG(cb->extack, "first extent beyond the end of the device");
		return -ERANGE;
	}
	if (mem_set(rc, b, &set) && !set) {
		/* No commit or migration running: the set is empty. */
		mutex_unlock(&rcow_nl_lock);
		return 0;
	}
	r = 0;
	stop = rc->nr_extents;
	if (cb->args[4] && cb->args[4] < stop)
		stop = cb->args[4];
	for (e = cb->args[2]; e < stop; e = end) {
		if (set) {
			e = find_next_bit(set, stop, e);
			if (e >= stop)
				break;
			end = find_next_zero_bit(set, stop, e);
		} else {
			/* FROZEN_COMMIT: read from its blocks, may sleep. */
			r = rcow_md_next_run(rc->md, b, e, &e, &end);
			if (r || e >= stop)
				break;
			end = min(end, stop);
		}
		if (put_run(skb, cb, rc->id, b, e, end - e))
			break;
		cb->args[2] = end;
	}
	if (!r && e >= stop)
		cb->args[2] = stop;
	mutex_unlock(&rcow_nl_lock);
	return r ? r : skb->len;
}

/*
 * An answer from the helper: @attrs present, the device found, the sender
 * the registered helper.  0 with rcow_nl_lock held and *@rcp set.
 */
static int helper_request(struct genl_info *info, const int *attrs, int n,
			  struct rcow **rcp)
{
	int r;

	r = need_attrs(info, attrs, n);
	if (r)
		return r;
	r = lock_device(info, rcp);
	if (r)
		return r;
	r = check_helper(info);
	if (r)
		mutex_unlock(&rcow_nl_lock);
	return r;
}

static const char *nl_message(struct genl_info *info)
{
	return info->attrs[RCOW_A_MESSAGE] ?
	       nla_data(info->attrs[RCOW_A_MESSAGE]) : NULL;
}

/*
 * MIGRATE_ROUND, MIGRATE_MARK and MIGRATE_END (source), MIGRATE_FILL,
 * MIGRATE_REMOTE and MIGRATE_COMPLETE (destination) and MIGRATE_POSTCOPY
 * (either side) from the helper.
 */
static int rcow_nl_migrate(struct sk_buff *skb, struct genl_info *info)
{
	static const int round_attrs[] = { RCOW_A_DEV_ID };
	static const int mark_attrs[] = { RCOW_A_DEV_ID, RCOW_A_MIGRATE_ROUND,
					  RCOW_A_FIRST_EXTENT,
					  RCOW_A_EXTENT_COUNT };
	static const int end_attrs[] = { RCOW_A_DEV_ID, RCOW_A_STATUS };
	static const int fill_attrs[] = { RCOW_A_DEV_ID, RCOW_A_FIRST_EXTENT,
					  RCOW_A_EXTENT_COUNT };
	u8 cmd = info->genlhdr->cmd;
	struct rcow *rc;
	u32 count, flags = 0, delay_ms = 0;
	u64 first;
	int r;

	/* A throttle's delay in ROUND only. */
	if (info->attrs[RCOW_A_MIGRATE_DELAY_MS]) {
		if (cmd != RCOW_CMD_MIGRATE_ROUND) {
			NL_SET_ERR_MSG_ATTR(info->extack,
					    info->attrs[RCOW_A_MIGRATE_DELAY_MS],
					    "a delay in MIGRATE_ROUND only");
			return -EINVAL;
		}
		delay_ms = nla_get_u32(info->attrs[RCOW_A_MIGRATE_DELAY_MS]);
	}
	/* FLAGS: RCOW_MIGRATE_F_MIRROR in ROUND, _KEEP_FENCE in END only. */
	if (info->attrs[RCOW_A_FLAGS])
		flags = nla_get_u32(info->attrs[RCOW_A_FLAGS]);
	if (flags & ~(cmd == RCOW_CMD_MIGRATE_ROUND ? RCOW_MIGRATE_F_MIRROR :
		      cmd == RCOW_CMD_MIGRATE_END ? RCOW_MIGRATE_F_KEEP_FENCE : 0)) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[RCOW_A_FLAGS],
				    "flags not known for this command");
		return -EINVAL;
	}

	if (cmd == RCOW_CMD_MIGRATE_ROUND || cmd == RCOW_CMD_MIGRATE_COMPLETE ||
	    cmd == RCOW_CMD_MIGRATE_POSTCOPY)
		r = helper_request(info, round_attrs, ARRAY_SIZE(round_attrs),
				   &rc);
	else if (cmd == RCOW_CMD_MIGRATE_FILL || cmd == RCOW_CMD_MIGRATE_REMOTE)
		r = helper_request(info, fill_attrs, ARRAY_SIZE(fill_attrs),
				   &rc);
	else if (cmd == RCOW_CMD_MIGRATE_MARK)
		r = helper_request(info, mark_attrs, ARRAY_SIZE(mark_attrs),
				   &rc);
	else
		r = helper_request(info, end_attrs, ARRAY_SIZE(end_attrs), &rc);
	if (r)
		return r;
	if (cmd == RCOW_CMD_MIGRATE_ROUND) {
		r = rcow_migrate_round(rc, flags, delay_ms);
	} else if (cmd == RCOW_CMD_MIGRATE_COMPLETE) {
		r = rcow_incoming_complete(rc);
	} else if (cmd == RCOW_CMD_MIGRATE_POSTCOPY) {
		r = test_bit(RCOW_F_INCOMING, &rc->flags) ?
		    rcow_incoming_postcopy(rc) : rcow_migrate_postcopy(rc);
	} else if (cmd == RCOW_CMD_MIGRATE_FILL ||
		   cmd == RCOW_CMD_MIGRATE_REMOTE) {
		first = nla_get_u64(info->attrs[RCOW_A_FIRST_EXTENT]);
		count = nla_get_u32(info->attrs[RCOW_A_EXTENT_COUNT]);
		r = check_range(info, rc, first, count);
		if (!r && cmd == RCOW_CMD_MIGRATE_FILL)
			r = rcow_incoming_fill(rc, first, count);
		else if (!r)
			r = rcow_incoming_remote(rc, first, count);
	} else if (cmd == RCOW_CMD_MIGRATE_MARK) {
		first = nla_get_u64(info->attrs[RCOW_A_FIRST_EXTENT]);
		count = nla_get_u32(info->attrs[RCOW_A_EXTENT_COUNT]);
		r = check_range(info, rc, first, count);
		if (!r)
			r = rcow_migrate_mark(rc,
					      nla_get_u64(info->attrs[RCOW_A_MIGRATE_ROUND]),
					      first, count);
	} else {
		r = rcow_migrate_end(rc, nla_get_u32(info->attrs[RCOW_A_STATUS]),
				     nl_message(info), flags);
	}
	mutex_unlock(&rcow_nl_lock);
	if (r == -ESTALE)
		GENL_SET_ERR_MSG(info, "no migration (in this round), not incoming, or post-copy");
	else if (r == -EAGAIN)
		GENL_SET_ERR_MSG(info, "not finishing, or extents are left to send or to fetch");
	return r;
}

static int rcow_nl_commit_mark(struct sk_buff *skb, struct genl_info *info)
{
	static const int attrs[] = { RCOW_A_DEV_ID, RCOW_A_COMMIT_GEN,
				     RCOW_A_FIRST_EXTENT, RCOW_A_EXTENT_COUNT,
				     RCOW_A_MARK };
	struct rcow *rc;
	u64 first;
	u32 count;
	int r;

	r = helper_request(info, attrs, ARRAY_SIZE(attrs), &rc);
	if (r)
		return r;
	first = nla_get_u64(info->attrs[RCOW_A_FIRST_EXTENT]);
	count = nla_get_u32(info->attrs[RCOW_A_EXTENT_COUNT]);
	r = check_range(info, rc, first, count);
	if (!r)
		r = rcow_commit_mark(rc,
				     nla_get_u64(info->attrs[RCOW_A_COMMIT_GEN]),
				     first, count,
				     nla_get_u32(info->attrs[RCOW_A_MARK]));
	mutex_unlock(&rcow_nl_lock);
	if (r == -ESTALE)
		GENL_SET_ERR_MSG(info, "no snapshot commit of this generation is uploading");
	return r;
}

static int rcow_nl_commit_end(struct sk_buff *skb, struct genl_info *info)
{
	static const int attrs[] = { RCOW_A_DEV_ID, RCOW_A_COMMIT_GEN,
				     RCOW_A_STATUS };
	struct rcow *rc;
	int r;

	r = helper_request(info, attrs, ARRAY_SIZE(attrs), &rc);
	if (r)
		return r;
	r = rcow_commit_end(rc, nla_get_u64(info->attrs[RCOW_A_COMMIT_GEN]),
			    nla_get_u32(info->attrs[RCOW_A_STATUS]),
			    nl_message(info));
	mutex_unlock(&rcow_nl_lock);
	if (r == -ESTALE)
		GENL_SET_ERR_MSG(info, "no snapshot commit of this generation is uploading");
	else if (r == -EAGAIN)
		GENL_SET_ERR_MSG(info, "extents of the commit are not uploaded yet");
	return r;
}

static const struct genl_small_ops rcow_nl_ops[] = {
	{
		.cmd = RCOW_CMD_REGISTER,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_register,
	},
	{
		.cmd = RCOW_CMD_UNREGISTER,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_unregister,
	},
	{
		.cmd = RCOW_CMD_GET_DEVICE,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_get_device,
		.dumpit = rcow_nl_dump_devices,
	},
	{
		.cmd = RCOW_CMD_FILL_DONE,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_fill_done,
	},
	{
		.cmd = RCOW_CMD_HYDRATE,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_hydrate,
	},
	{
		.cmd = RCOW_CMD_GET_BITMAP,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_get_bitmap,
	},
	{
		.cmd = RCOW_CMD_QUIESCE_DONE,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_quiesce_done,
	},
	{
		.cmd = RCOW_CMD_GET_RUNS,
		.flags = GENL_ADMIN_PERM,
		.dumpit = rcow_nl_dump_runs,
	},
	{
		.cmd = RCOW_CMD_COMMIT_MARK,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_commit_mark,
	},
	{
		.cmd = RCOW_CMD_COMMIT_END,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_commit_end,
	},
	{
		.cmd = RCOW_CMD_MIGRATE_ROUND,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_migrate,
	},
	{
		.cmd = RCOW_CMD_MIGRATE_MARK,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_migrate,
	},
	{
		.cmd = RCOW_CMD_MIGRATE_END,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_migrate,
	},
	{
		.cmd = RCOW_CMD_MIGRATE_FILL,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_migrate,
	},
	{
		.cmd = RCOW_CMD_MIGRATE_COMPLETE,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_migrate,
	},
	{
		.cmd = RCOW_CMD_MIGRATE_REMOTE,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_migrate,
	},
	{
		.cmd = RCOW_CMD_MIGRATE_POSTCOPY,
		.flags = GENL_ADMIN_PERM,
		.doit = rcow_nl_migrate,
	},
};

static struct genl_family rcow_family __ro_after_init = {
	.name = REMOTE_COW_GENL_NAME,
	.version = REMOTE_COW_GENL_VERSION,
	.maxattr = RCOW_A_MAX,
	.policy = rcow_nl_policy,
	.module = THIS_MODULE,
	.small_ops = rcow_nl_ops,
	.n_small_ops = ARRAY_SIZE(rcow_nl_ops),
	.resv_start_op = __RCOW_CMD_MAX,
};

static int rcow_nl_notify(struct notifier_block *nb, unsigned long state,
			  void *ptr)
{
	struct netlink_notify *n = ptr;

	if (state != NETLINK_URELEASE || n->protocol != NETLINK_GENERIC ||
	    !net_eq(n->net, &init_net))
		return NOTIFY_DONE;

	mutex_lock(&rcow_nl_lock);
	if (rcow_helper_portid && n->portid == rcow_helper_portid)
		helper_gone();
	mutex_unlock(&rcow_nl_lock);
	return NOTIFY_DONE;
}

static struct notifier_block rcow_nl_notifier = {
	.notifier_call = rcow_nl_notify,
};

int __init rcow_nl_init(void)
{
	int r;

	r = netlink_register_notifier(&rcow_nl_notifier);
	if (r)
		return r;
	r = genl_register_family(&rcow_family);
	if (r)
		netlink_unregister_notifier(&rcow_nl_notifier);
	return r;
}

void rcow_nl_exit(void)
{
	struct rcow_fence *f, *tmp;

	genl_unregister_family(&rcow_family);
	netlink_unregister_notifier(&rcow_nl_notifier);
	list_for_each_entry_safe(f, tmp, &rcow_fences, node)
		kfree(f);
}
