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
 * A fault-answering helper uses the three calls at the end:
 * rcow_nl_connect(), rcow_nl_helper_event() in its loop, and
 * rcow_nl_disconnect() at exit.
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

/*
 * Answer extents [f->first, f->first + f->count) of the fault with f->cookie
 * (f->count 0: the rest of the fault from f->first) with status.
 */
int rcow_nl_fill_done(struct rcow_nl *nl, const struct rcow_fault *f, uint32_t status,
		      struct rcow_err *err);
/* Answer a QUIESCE once nothing of the device is being written any more. */
int rcow_nl_quiesce_done(struct rcow_nl *nl, const struct rcow_quiesce *q, struct rcow_err *err);
/*
 * The same two answers without waiting for the kernel's ack, for a loop
 * that must not stall on one answer.  0 once sent; a refusal comes back
 * later from rcow_nl_next_event() as -EREMOTEIO.
 */
int rcow_nl_fill_done_async(struct rcow_nl *nl, const struct rcow_fault *f, uint32_t status,
			    struct rcow_err *err);
int rcow_nl_quiesce_done_async(struct rcow_nl *nl, const struct rcow_quiesce *q,
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
 * The runs of set bits of a bitmap from extent first (of count extents
 * from there, 0: to the end; a module before version 9 dumps to the end
 * whatever count says), in order, through cb
 * (a non-zero return stops and is returned): what changed, for snapshot
 * commit and migration, without reading the bitmap bit by bit.
 */
int rcow_nl_dump_runs(struct rcow_nl *nl, uint32_t dev_id, uint32_t bitmap, uint64_t first,
		      uint32_t count, int (*cb)(const struct rcow_run *run, void *data),
		      void *data, struct rcow_err *err);

/*
 * Snapshot commit answers, waiting for the kernel's ack: COMMIT_MARK
 * (c->dev_id, gen, first, count, mark) and COMMIT_END (c->dev_id, gen,
 * status, message).  A refusal returns -errno: ESTALE (no such commit
 * running), EAGAIN (COMMIT_END 0 while extents are still to upload).
 */
int rcow_nl_commit_mark(struct rcow_nl *nl, const struct rcow_commit *c, struct rcow_err *err);
int rcow_nl_commit_end(struct rcow_nl *nl, const struct rcow_commit *c, struct rcow_err *err);

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
 * -EREMOTEIO: the kernel refused an answer sent with a *_async call;
 * ev->cmd is the refused command (0 if unknown), rcow_nl_kernel_error()
 * the errno, err the sentence; the caller may go on.
 */
int rcow_nl_next_event(struct rcow_nl *nl, struct rcow_event *ev, int timeout_ms,
		       struct rcow_err *err);

/*
 * What every fault-answering helper (remote-cowd, the selftests' rcow-fill)
 * does with the calls above, once: connect, register, learn the devices,
 * then take events with the overflow and bad-message recoveries.
 */
struct rcow_nl_helper {
	/* every device of the list: at connect and after an overflow */
	int (*device)(const struct rcow_device_info *d, void *data);
	/* a line for the helper's log (a sentence, no newline); may be NULL */
	void (*log)(void *data, const char *line);
	/*
	 * Around the re-read after an overflow (may be NULL): begin true
	 * before the first device, false once the whole list was read, so
	 * the helper can forget devices the list no longer has.
	 */
	void (*resync)(void *data, bool begin);
	/* an async answer refused (cmd, errno, sentence); NULL: to log */
	void (*refused)(void *data, uint8_t cmd, int error, const char *line);
	void *data;
};

/*
 * rcow_nl_open(), rcow_nl_register(), then rcow_nl_dump_devices() through
 * h->device.  *out is set as soon as the socket is open, so h->device may
 * use it and, on a later failure, the caller still unregisters and closes
 * it (rcow_nl_disconnect()); rcow_nl_kernel_error() tells a refused
 * REGISTER (EBUSY: another helper, EPERM) apart.  A failed dump's err->msg
 * starts "reading the device list failed".
 */
int rcow_nl_connect(struct rcow_nl **out, const struct rcow_nl_helper *h, struct rcow_err *err);

/*
 * rcow_nl_next_event() with the recoveries a helper needs; returns as it
 * does: 1 with *ev filled, 0 if no event within timeout_ms (the wait starts
 * again after a recovery), or -errno on a fatal error.  -ENOBUFS: logs
 * "<why>; reading the device list again" and re-reads it through h->device
 * (never re-registers: that resends faults already being filled), between
 * h->resync(true) and h->resync(false); if that fails, the error is
 * returned, err->msg starting "reading the device list failed".  -EPROTO:
 * logs which message was skipped.  -EREMOTEIO: to h->refused (or the log).
 * All of them then go on to the next event.
 */
int rcow_nl_helper_event(struct rcow_nl *nl, const struct rcow_nl_helper *h,
			 struct rcow_event *ev, int timeout_ms, struct rcow_err *err);

/*
 * Unregister and close (nl may be NULL).  Unregistering refused with
 * ENOENT (this socket was not, or no longer, the registered helper) counts
 * as done.  0, or the unregister error (nl is closed either way).
 */
int rcow_nl_disconnect(struct rcow_nl *nl, struct rcow_err *err);

#endif
