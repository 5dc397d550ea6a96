/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Building and parsing remote_cow generic netlink messages, without any
 * socket: every function works on a caller's buffer, so the wire format is
 * unit-tested on the host.  nl.c does the sending and receiving.
 *
 * Both directions are here: the helper's requests (REGISTER, GET_DEVICE,
 * FILL_DONE, HYDRATE, GET_BITMAP) and what the kernel sends (FAULT, device
 * events, HYDRATE_CTL, replies).  The kernel-side builders exist for tests
 * and for rcow-nl's deliberately wrong messages.
 *
 * Parsers check every attribute they use for its exact length (u32: 4,
 * u64: 8, strings: NUL-terminated and within their limit) and that the
 * attributes a message needs are there; attributes they do not know are
 * ignored, so a newer kernel may add some.
 */
#ifndef RCOW_MSG_H
#define RCOW_MSG_H

#include <linux/netlink.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "remote_cow.h"
#include "rcow/err.h"

#define RCOW_DM_NAME_MAX 128	/* DM_NAME_LEN, with the NUL */
#define RCOW_DM_UUID_MAX 129	/* DM_UUID_LEN, with the NUL */

/* Room for any message the helper builds. */
#define RCOW_MSG_BUF_SIZE 8192

#define RCOW_MIGRATE_TARGET_MAX (REMOTE_COW_MAX_TARGET + 1)	/* RCOW_A_MIGRATE_TARGET, with the NUL */

struct rcow_device_info {
	uint32_t dev_id;
	char dm_name[RCOW_DM_NAME_MAX];
	char dm_uuid[RCOW_DM_UUID_MAX];
	uint32_t cow_major, cow_minor;
	uint32_t extent_sectors;
	uint64_t nr_extents;
	uint64_t data_offset;	/* sectors */
	uint64_t dev_sectors;
	char base_uri[REMOTE_COW_MAX_URI + 1];
	uint64_t present;
	uint32_t flags;		/* RCOW_DEV_F_* */
	uint32_t hydrate_rate;	/* MiB/s while hydrating (RCOW_A_HYDRATE_RATE) */
	/* snapshot commit (GET_DEVICE replies; 0 / "" when absent) */
	uint32_t commit_state;	/* enum remote_cow_commit_state */
	uint64_t commit_gen;
	uint32_t commit_flags;	/* RCOW_COMMIT_F_* */
	uint64_t commit_total, commit_done;
	char target_uri[REMOTE_COW_MAX_URI + 1];	/* while uploading */
	/* live migration, source side (0 / "" when absent) */
	uint32_t migrate_state;	/* enum remote_cow_migrate_state */
	uint64_t migrate_round, migrate_total, migrate_done;
	char migrate_target[RCOW_MIGRATE_TARGET_MAX];	/* HOST:PORT */
	uint64_t have;		/* bit 1 << RCOW_A_x for every attribute received */
};

struct rcow_fault {
	uint32_t dev_id;
	uint64_t first;
	uint32_t count;
	uint64_t cookie;
	uint32_t flags;		/* FAULT: RCOW_FAULT_F_* (0 from kernels before version 5) */
};

struct rcow_hydrate_ctl {
	uint32_t dev_id;
	bool start;		/* false: stop */
	uint32_t rate;		/* MiB/s, 0 = unlimited */
};

/* QUIESCE: stop filling the device, then answer QUIESCE_DONE (uapi). */
struct rcow_quiesce {
	uint32_t dev_id;
	uint64_t cookie;
};

/*
 * Snapshot commit messages: COMMIT_START (dev_id, gen, target_uri, flags,
 * total), PRESERVE (dev_id, gen, first, count), COMMIT_ABORT (dev_id, gen)
 * from the kernel; COMMIT_MARK (dev_id, gen, first, count, mark) and
 * COMMIT_END (dev_id, gen, status, message) from the helper.
 */
#define RCOW_MESSAGE_MAX 1024	/* RCOW_A_MESSAGE, with the NUL */

struct rcow_commit {
	uint32_t dev_id;
	uint64_t gen;
	uint32_t flags;		/* RCOW_COMMIT_F_* */
	uint64_t total;		/* extents frozen */
	uint64_t first;		/* PRESERVE, COMMIT_MARK */
	uint32_t count;		/* PRESERVE, COMMIT_MARK */
	uint32_t mark;		/* COMMIT_MARK: RCOW_MARK_* */
	uint32_t status;	/* COMMIT_END: 0 or a positive errno */
	char target_uri[REMOTE_COW_MAX_URI + 1];	/* COMMIT_START */
	char message[RCOW_MESSAGE_MAX];			/* COMMIT_END, "" if none */
};

/* A MIGRATE_ROUND, _MARK, _END, _FILL or _COMPLETE request, as the kernel reads it. */
struct rcow_migrate_req {
	uint8_t cmd;		/* RCOW_CMD_MIGRATE_* */
	uint32_t dev_id;
	uint64_t round;		/* MARK */
	uint64_t first;		/* MARK, FILL */
	uint32_t count;		/* MARK, FILL */
	uint32_t status;	/* END: 0 or a positive errno */
	uint32_t flags;		/* ROUND, END: RCOW_MIGRATE_F_* */
	char message[RCOW_MESSAGE_MAX];	/* END, "" if none */
};

/* A kernel -> helper message. */
struct rcow_event {
	uint8_t cmd;		/* RCOW_CMD_*; others are returned unparsed */
	union {
		struct rcow_fault fault;		/* FAULT, PROMOTE */
		/*
		 * DEVICE_ADD, DEVICE_REMOVE, MIGRATE_START, _FINISH, _ABORT,
		 * _ROUND, _WAITING
		 */
		struct rcow_device_info dev;
		struct rcow_hydrate_ctl hydrate;	/* HYDRATE_CTL */
		struct rcow_quiesce quiesce;		/* QUIESCE */
		struct rcow_commit commit;		/* COMMIT_START, PRESERVE, COMMIT_ABORT */
	} u;
};

/* A GET_BITMAP reply; data points into the message. */
struct rcow_bitmap_chunk {
	uint64_t first;
	uint32_t count;
	const uint8_t *data;
	size_t len;
};

/* A run of set bits: extents [first, first + count). */
struct rcow_run {
	uint64_t first;
	uint64_t count;
};

/* An NLMSG_ERROR (ack or refusal) with its extended ack, if any. */
struct rcow_ack {
	int error;		/* 0 or positive errno */
	uint32_t seq;
	char msg[256];		/* kernel's extack message, "" if none */
	bool has_offset;
	uint32_t offset;	/* byte offset of the offending attribute */
};

/* True for commands the kernel sends on its own (not replies). */
bool rcow_cmd_is_event(uint8_t cmd);
/* "FAULT", "FILL_DONE", ...; "CMD_<n>" for unknown into buf. */
const char *rcow_cmd_name(uint8_t cmd, char *buf, size_t len);
/* "dev_id", "cookie", ... for RCOW_A_*; NULL if unknown. */
const char *rcow_attr_name(uint16_t type);
/* Parse an attribute or command name (or a number); -1 if unknown. */
int rcow_attr_from_name(const char *name);
int rcow_cmd_from_name(const char *name);
/* "present", "written", ...; RCOW_NR_BITMAPS / NULL if unknown. */
int rcow_bitmap_from_name(const char *name);
const char *rcow_bitmap_name(uint32_t bitmap);

/*
 * Start a message of netlink type 'type' with a genl header for cmd.
 * Flags get NLM_F_REQUEST added.  buf must be RCOW_MSG_BUF_SIZE bytes and
 * 4-byte aligned.
 */
struct nlmsghdr *rcow_msg_start(void *buf, uint16_t type, uint8_t cmd, uint16_t flags,
				uint32_t seq);

/* Append attributes; false if the buffer is full. */
bool rcow_msg_put_u32(struct nlmsghdr *nlh, uint16_t type, uint32_t v);
bool rcow_msg_put_u64(struct nlmsghdr *nlh, uint16_t type, uint64_t v);
bool rcow_msg_put_str(struct nlmsghdr *nlh, uint16_t type, const char *s);
bool rcow_msg_put_raw(struct nlmsghdr *nlh, uint16_t type, const void *data, size_t len);

/* Helper -> kernel requests (family: the resolved family id). */
struct nlmsghdr *rcow_msg_getfamily(void *buf, uint32_t seq, const char *name);
struct nlmsghdr *rcow_msg_register(void *buf, uint16_t family, uint32_t seq);
struct nlmsghdr *rcow_msg_unregister(void *buf, uint16_t family, uint32_t seq);
struct nlmsghdr *rcow_msg_get_device(void *buf, uint16_t family, uint32_t seq, bool dump,
				     uint32_t dev_id);
/*
 * Extents [first, first + count) of the fault with this cookie (the kernel
 * checks them against it); count 0 leaves EXTENT_COUNT out: the rest of
 * the fault from first.
 */
struct nlmsghdr *rcow_msg_fill_done(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
				    uint64_t cookie, uint64_t first, uint32_t count,
				    uint32_t status);
/* cmd: RCOW_CMD_QUIESCE_DONE (helper) or RCOW_CMD_QUIESCE (tests, fakes). */
struct nlmsghdr *rcow_msg_quiesce(void *buf, uint16_t family, uint32_t seq, uint8_t cmd,
				  const struct rcow_quiesce *q);
struct nlmsghdr *rcow_msg_hydrate(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
				  uint64_t first, uint32_t count);
struct nlmsghdr *rcow_msg_get_bitmap(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
				     uint32_t bitmap, uint64_t first);
/*
 * GET_RUNS dump from extent first (0: the start), of count extents from
 * there (0: to the device's end; at most REMOTE_COW_MAX_RANGE).
 */
struct nlmsghdr *rcow_msg_get_runs(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
				   uint32_t bitmap, uint64_t first, uint32_t count);

/* COMMIT_MARK (c: dev_id, gen, first, count, mark) and COMMIT_END (dev_id, gen, status, message). */
struct nlmsghdr *rcow_msg_commit_mark(void *buf, uint16_t family, uint32_t seq,
				      const struct rcow_commit *c);
struct nlmsghdr *rcow_msg_commit_end(void *buf, uint16_t family, uint32_t seq,
				     const struct rcow_commit *c);

/* Kernel -> helper messages (tests, fakes). */
/* cmd: RCOW_CMD_COMMIT_START, RCOW_CMD_PRESERVE or RCOW_CMD_COMMIT_ABORT, with c's fields for it. */
struct nlmsghdr *rcow_msg_commit_event(void *buf, uint16_t family, uint32_t seq, uint8_t cmd,
				       const struct rcow_commit *c);
/* cmd: RCOW_CMD_FAULT (with f->flags) or RCOW_CMD_PROMOTE. */
struct nlmsghdr *rcow_msg_fault(void *buf, uint16_t family, uint32_t seq, uint8_t cmd,
				const struct rcow_fault *f);
struct nlmsghdr *rcow_msg_device(void *buf, uint16_t family, uint32_t seq, uint8_t cmd,
				 const struct rcow_device_info *d);
struct nlmsghdr *rcow_msg_hydrate_ctl(void *buf, uint16_t family, uint32_t seq,
				      const struct rcow_hydrate_ctl *h);
struct nlmsghdr *rcow_msg_bitmap_reply(void *buf, uint16_t family, uint32_t seq,
				       uint64_t first, uint32_t count, const void *data, size_t len);
struct nlmsghdr *rcow_msg_hydrate_reply(void *buf, uint16_t family, uint32_t seq, uint32_t queued);
struct nlmsghdr *rcow_msg_run(void *buf, uint16_t family, uint32_t seq, uint32_t dev_id,
			      uint32_t bitmap, const struct rcow_run *run);

/* Parsers; nlh must hold a complete message (nlmsg_len checked). */
uint8_t rcow_msg_cmd(const struct nlmsghdr *nlh);
int rcow_msg_parse_event(const struct nlmsghdr *nlh, struct rcow_event *ev, struct rcow_err *err);
int rcow_msg_parse_device(const struct nlmsghdr *nlh, struct rcow_device_info *d,
			  struct rcow_err *err);
int rcow_msg_parse_hydrate_reply(const struct nlmsghdr *nlh, uint32_t *queued,
				 struct rcow_err *err);
int rcow_msg_parse_bitmap(const struct nlmsghdr *nlh, struct rcow_bitmap_chunk *c,
			  struct rcow_err *err);
int rcow_msg_parse_run(const struct nlmsghdr *nlh, struct rcow_run *run, struct rcow_err *err);
/* COMMIT_MARK or COMMIT_END, as the kernel reads them (tests, fakes). */
int rcow_msg_parse_commit(const struct nlmsghdr *nlh, struct rcow_commit *c, struct rcow_err *err);
/*
 * A helper's migration request, with the attributes the kernel requires
 * of each command (tests, fakes): -EPROTO for a missing one or another
 * command.
 */
int rcow_msg_parse_migrate(const struct nlmsghdr *nlh, struct rcow_migrate_req *m,
			   struct rcow_err *err);
int rcow_msg_parse_family(const struct nlmsghdr *nlh, uint16_t *id, struct rcow_err *err);
int rcow_msg_parse_ack(const struct nlmsghdr *nlh, struct rcow_ack *ack, struct rcow_err *err);

/* One line of key=value pairs (no newline), unsafe bytes escaped as \xHH. */
int rcow_device_info_format(const struct rcow_device_info *d, char *buf, size_t len);

#endif
