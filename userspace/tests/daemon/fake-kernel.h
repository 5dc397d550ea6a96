/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fake-kernel.h - the kernel side of remote-cowd's engine (struct
 * kernel_ops) for host tests: answers are recorded instead of sent, every
 * device's COW device is one test file, and kernel messages are built with
 * librcow's builders and parsed by rcow_msg_parse_event(), as the netlink
 * socket would deliver them.  Loop thread only.
 */
#ifndef RCOWD_FAKE_KERNEL_H
#define RCOWD_FAKE_KERNEL_H

#include "daemon.h"

struct fake_answer {
	uint8_t cmd;		/* RCOW_CMD_FILL_DONE or RCOW_CMD_QUIESCE_DONE */
	uint32_t dev_id;
	uint64_t cookie, first;
	uint32_t status;
	uint64_t at_ms;
};

struct fake_kernel {
	struct fake_answer *v;
	size_t n, cap;
	const char *cow_path;	/* the COW "device" of every device */
	int cow_fd;		/* the fd of the last one opened */
	/* called at QUIESCE_DONE, before it is recorded; may be NULL */
	void (*on_quiesce_done)(struct fake_kernel *k, const struct rcow_quiesce *q);
	void *data;
};

extern const struct kernel_ops fake_kernel_ops;	/* ctx: struct fake_kernel */

/* The first answer cmd for dev_id and cookie, or NULL. */
const struct fake_answer *fake_find(const struct fake_kernel *k, uint8_t cmd, uint32_t dev_id,
				    uint64_t cookie);
size_t fake_count(const struct fake_kernel *k, uint8_t cmd);
void fake_free(struct fake_kernel *k);

/* Kernel -> helper messages, through the wire format into engine_event(). */
int fake_send_device(struct daemon *d, uint8_t cmd, const struct rcow_device_info *info);
int fake_send_fault(struct daemon *d, uint32_t dev_id, uint64_t cookie, uint64_t first,
		    uint32_t count);
int fake_send_quiesce(struct daemon *d, uint32_t dev_id, uint64_t cookie);

#endif
