/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The helper's generic netlink connection to the dm-remote-cow kernel
 * target (family REMOTE_COW_GENL_NAME), over libmnl.
 *
 * One socket carries everything.  Requests are synchronous: send with
 * NLM_F_ACK, read until the ack (or NLMSG_DONE for a dump).  Whatever else
 * arrives meanwhile - FAULTs and device events the kernel unicasts to the
 * registered socket, possibly before the REGISTER ack itself - is queued
 * and handed out later by rcow_nl_next_event() in arrival order.  One socket
 * rather than two because the kernel may insist that FILL_DONE comes from
 * the socket that registered.
 *
 * Not thread-safe: one thread owns a struct rcow_nl.
 */
#ifndef RCOW_NL_H
#define RCOW_NL_H

#include <linux/netlink.h>
#include <stdbool.h>
#include <stdint.h>

#include "rcow/err.h"
#include "rcow/msg.h"

struct rcow_nl;

/*
 * Open a socket and resolve the family.  If the family does not exist
 * (module not loaded) this fails with -ENOENT and says so.
 */
int rcow_nl_open(struct rcow_nl **out, struct rcow_err *err);
void rcow_nl_close(struct rcow_nl *nl);

/* For poll(): readable when the kernel sent something. */
int rcow_nl_fd(const struct rcow_nl *nl);
/* Events already received and queued (poll would not show them). */
bool rcow_nl_has_queued(const struct rcow_nl *nl);
uint16_t rcow_nl_family(const struct rcow_nl *nl);

/*
 * After a request failed: the errno the kernel answered with (0 if the
 * failure was local), and its extended-ack text ("" if none).
 */
int rcow_nl_kernel_error(const struct rcow_nl *nl);
const char *rcow_nl_kernel_msg(const struct rcow_nl *nl);

int rcow_nl_register(struct rcow_nl *nl, struct rcow_err *err);
int rcow_nl_unregister(struct rcow_nl *nl, struct rcow_err *err);

/* Dump: calls cb for every device; a non-zero return from cb stops and is returned. */
int rcow_nl_dump_devices(struct rcow_nl *nl,
			 int (*cb)(const struct rcow_device_info *d, void *data), void *data,
			 struct rcow_err *err);
int rcow_nl_get_device(struct rcow_nl *nl, uint32_t dev_id, struct rcow_device_info *d,
		       struct rcow_err *err);

int rcow_nl_fill_done(struct rcow_nl *nl, uint32_t dev_id, uint64_t cookie, uint32_t status,
		      struct rcow_err *err);
int rcow_nl_hydrate(struct rcow_nl *nl, uint32_t dev_id, uint64_t first, uint32_t count,
		    uint32_t *queued, struct rcow_err *err);
/*
 * One chunk of a bitmap from extent 'first' (a multiple of 8).  Copies at
 * most cap bytes into data; sets *got_first and *got_count.
 */
int rcow_nl_get_bitmap(struct rcow_nl *nl, uint32_t dev_id, uint32_t bitmap, uint64_t first,
		       uint8_t *data, size_t cap, uint64_t *got_first, uint32_t *got_count,
		       struct rcow_err *err);

/*
 * Send a message built by the caller (rcow_msg_start() and friends; its
 * seq is overwritten) and wait for the ack; reply messages go to cb if not
 * NULL.  For dumps set NLM_F_DUMP in the message.
 */
int rcow_nl_transact(struct rcow_nl *nl, struct nlmsghdr *nlh,
		     int (*cb)(const struct nlmsghdr *reply, void *data), void *data,
		     struct rcow_err *err);

/* Next sequence number for a message the caller builds. */
uint32_t rcow_nl_next_seq(struct rcow_nl *nl);

/*
 * Next kernel -> helper message: 1 with *ev filled, 0 if none arrived
 * within timeout_ms (-1: wait forever, 0: do not wait), or -errno.
 * -ENOBUFS means the socket's queue overflowed: faults are retried by the
 * kernel, but device events may be lost, so re-read the device list (never
 * re-register: that resends faults already being filled).  -EPROTO
 * means one malformed message was skipped; the caller may go on.
 */
int rcow_nl_next_event(struct rcow_nl *nl, struct rcow_event *ev, int timeout_ms,
		       struct rcow_err *err);

#endif
