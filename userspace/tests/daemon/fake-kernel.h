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

/* the generic netlink family id of the fake kernel's messages */
#define FAKE_FAMILY 0x42

struct fake_answer {
	uint8_t cmd;		/* RCOW_CMD_FILL_DONE, QUIESCE_DONE, COMMIT_MARK or COMMIT_END */
	uint32_t dev_id;
	uint64_t cookie, first;	/* COMMIT_*: cookie is the generation */
	uint32_t status;	/* COMMIT_MARK: the mark */
	uint64_t at_ms;
	uint32_t count;		/* COMMIT_MARK; FILL_DONE: EXTENT_COUNT (0: left out) */
	char msg[RCOW_MESSAGE_MAX];	/* COMMIT_END */
};

struct fake_kernel;

/*
 * The kernel's side of one snapshot commit: its upload and held sets,
 * changed by the helper's marks as the kernel would.
 */
struct fake_commit {
	bool running;
	uint32_t dev_id;
	uint64_t gen, nr;
	uint8_t *upload, *held;
	struct rcow_device_info dev;	/* GET_DEVICE answers this (commit fields filled) */
	bool have_dev;
	unsigned int end_tries;		/* COMMIT_END calls */
	uint32_t end_status;		/* of the COMMIT_END that ended it */
	unsigned int eagain;		/* refuse that many END 0 with EAGAIN ... */
	int64_t eagain_ext;		/* ... putting this extent back into the upload set */
	uint64_t preserved_early;	/* PRESERVED marks of extents still to upload */
	uint64_t uploaded;		/* extents leaving the upload set by UPLOADED marks */
	/* called after a PRESERVED mark was applied (the guest write goes on) */
	void (*on_preserved)(struct fake_kernel *k, uint64_t first, uint32_t count);
};

/*
 * The kernel's side of one live migration (fake-mig.c), source and
 * destination devices in the same fake, as dm-remote-cow-migrate.c and
 * the incoming state of dm-remote-cow-target.c keep it: the source's
 * change set (dirty: WRITTEN at the start, then the writes) and round
 * set; a round, done at the next fake_mig_pump() after MIGRATE_ROUND,
 * adds the change set to the round set (what was not marked sent stays)
 * and clears it; MIGRATE_MARK of another round is refused (ESTALE);
 * MIGRATE_END 0 is refused with EAGAIN unless finishing with both sets
 * empty.  The destination is incoming until MIGRATE_COMPLETE, taken at
 * the next pump.  Requests arrive as the netlink messages the daemon
 * built (rcow_msg_parse_migrate()).  Loop thread only, but for the
 * device ids and COW paths, set before the devices are added and
 * read-only after (open_cow runs in the jobs' threads).  A fake kernel has
 * two such pairs (m, m2: a group of two devices); the *_pair functions
 * take either, the others the first.
 */
struct fake_mig {
	uint32_t src_id, dst_id;	/* 0: none */
	const char *src_cow, *dst_cow;	/* their COW files */
	struct rcow_device_info src, dst;	/* what GET_DEVICE and the events report */
	uint64_t nr;			/* source extents */
	uint8_t *dirty, *round_set;	/* source bitmaps */
	uint32_t *fills, *marks;	/* per source extent: FILLs seen, MARKs that cleared it */
	bool round_asked, complete_asked;
	uint64_t marked;		/* extents that left the round set */
	uint64_t mark_unfilled;		/* of them, marked before the destination FILLed them */
	unsigned int rounds_asked, fill_reqs, completes;
	unsigned int end_tries, eagain;	/* MIGRATE_ENDs (any); of them, refused with EAGAIN */
	bool ended;			/* a MIGRATE_END was taken */
	bool aborted;			/* migrate abort (fake_mig_abort*) */
	uint32_t end_status, end_flags;
	bool refuse_done;		/* END 0 refused (EAGAIN) whatever is left */
	uint64_t mirror_round;		/* the round that switched to mirroring, 0 */
	bool mirror_asked;
	char end_msg[RCOW_MESSAGE_MAX];
	/*
	 * Post-copy: the destination's remote set (MIGRATE_REMOTE, until its
	 * extent is filled), the extents of it faulted and not answered yet
	 * (pending), those HYDRATE asked whose FAULT the next pump sends
	 * (hyd); MIGRATE_FILL, REMOTE refused once postcopy, COMPLETE refused
	 * (EAGAIN) while the remote set is not empty.
	 */
	uint8_t *remote, *pending, *hyd;
	uint64_t next_cookie;		/* of the FAULTs HYDRATE makes */
	bool hold_hyd;			/* the pump holds HYDRATE's FAULTs back */
	unsigned int remote_reqs, dst_postcopies, src_postcopies, complete_eagain;
	unsigned int remote_faults, remote_eio;	/* REMOTE FAULTs sent; answered EIO */
	/* called before round's swap (a guest writing between rounds) */
	void (*on_round)(struct fake_kernel *k, uint64_t round);
	/* called when the source reads the round set (a write after the swap) */
	void (*on_round_runs)(struct fake_kernel *k, uint64_t round);
};

struct fake_kernel {
	struct fake_answer *v;
	size_t n, cap;
	const char *cow_path;	/* the COW "device" of every device */
	int cow_fd;		/* the fd of the last one opened */
	/* called at QUIESCE_DONE, before it is recorded; may be NULL */
	void (*on_quiesce_done)(struct fake_kernel *k, const struct rcow_quiesce *q);
	void *data;
	struct fake_commit c;
	struct fake_mig m, m2;
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
/* cmd: RCOW_CMD_FAULT (flags: RCOW_FAULT_F_*) or RCOW_CMD_PROMOTE (flags 0) */
int fake_send_run(struct daemon *d, uint8_t cmd, uint32_t dev_id, uint64_t cookie,
		  uint64_t first, uint32_t count, uint32_t flags);
int fake_send_quiesce(struct daemon *d, uint32_t dev_id, uint64_t cookie);

/* Freeze extents v[0..n) of device info as commit gen (upload = held = them). */
int fake_commit_begin(struct fake_kernel *k, const struct rcow_device_info *info, uint64_t gen,
		      const char *target_uri, const uint64_t *v, size_t n);
bool fake_commit_bit(const uint8_t *set, uint64_t ext);
void fake_set_bit(uint8_t *set, uint64_t ext, bool on);
/* The runs of set bits of set[0, nr) from first, to cb (GET_RUNS). */
int fake_runs(const uint8_t *set, uint64_t nr, uint64_t first,
	      int (*cb)(const struct rcow_run *run, void *data), void *data);
uint64_t fake_commit_left(const struct fake_kernel *k);	/* extents still to upload */
/* cmd: RCOW_CMD_COMMIT_START (with k->c's target), RCOW_CMD_PRESERVE, RCOW_CMD_COMMIT_ABORT */
int fake_send_commit(struct daemon *d, struct fake_kernel *k, uint8_t cmd, uint64_t first,
		     uint32_t count);
size_t fake_count_mark(const struct fake_kernel *k, uint32_t mark);

/* fake-mig.c: see struct fake_mig.  src, dst: the two devices as added. */
int fake_mig_setup_pair(struct fake_mig *m, const struct rcow_device_info *src,
			const char *src_cow, const struct rcow_device_info *dst,
			const char *dst_cow);
int fake_mig_start_pair(struct daemon *d, struct fake_mig *m, const char *target,
			const uint64_t *written, size_t n);
int fake_mig_finish_pair(struct daemon *d, struct fake_mig *m);
/* migrate finish with MIGRATE_FINISH's FLAGS (RCOW_MIGRATE_F_POSTCOPY) */
int fake_mig_finish_flags(struct daemon *d, struct fake_mig *m, uint32_t flags);
/* Extent ext of the destination is still remote (only on the source). */
bool fake_mig_remote(const struct fake_mig *m, uint64_t ext);
/*
 * A guest read of the destination's ext: a FAULT with cookie, flags
 * REMOTE and WAITING if ext is remote; false if it is not (nothing sent).
 */
bool fake_mig_guest_read(struct daemon *d, struct fake_mig *m, uint64_t ext, uint64_t cookie);
/* A background (streaming) remote FAULT of first..+count, no I/O waiting on it. */
int fake_mig_stream_fault(struct daemon *d, struct fake_mig *m, uint64_t first, uint32_t count,
			  uint64_t cookie);
/* kernel_ops hooks: HYDRATE of a post-copy destination (-ENODEV: not one); FILL_DONE */
int fake_mig_hydrate(struct fake_kernel *k, uint32_t dev_id, uint64_t first, uint32_t count,
		     uint32_t *queued);
void fake_mig_filled(struct fake_kernel *k, uint32_t dev_id, uint64_t first, uint32_t count,
		     uint32_t status);
int fake_mig_abort_pair(struct daemon *d, struct fake_mig *m);
int fake_mig_setup(struct fake_kernel *k, const struct rcow_device_info *src,
		   const char *src_cow, const struct rcow_device_info *dst, const char *dst_cow);
/* migrate send target: the change set starts as written[0..n); MIGRATE_START */
int fake_mig_start(struct daemon *d, struct fake_kernel *k, const char *target,
		   const uint64_t *written, size_t n);
/* A guest write to ext completed (its data is on the source COW already). */
void fake_mig_write(struct fake_kernel *k, uint64_t ext);
/* migrate finish (the fence: MIGRATE_FINISH), migrate abort (MIGRATE_ABORT) */
int fake_mig_finish(struct daemon *d, struct fake_kernel *k);
int fake_mig_abort(struct daemon *d, struct fake_kernel *k);
/* The kernel's worker: the asked round (its event) and completion. */
void fake_mig_pump(struct daemon *d, struct fake_kernel *k);
/* Requests and queries of the migration devices; -ENODEV: not one of them. */
int fake_mig_request(struct fake_kernel *k, const struct nlmsghdr *nlh, struct rcow_err *err);
int fake_mig_device(struct fake_kernel *k, uint32_t dev_id, struct rcow_device_info *info);
/* bitmap: RCOW_BITMAP_MIGRATE_ROUND or RCOW_BITMAP_DIRTY_MIGRATE */
int fake_mig_runs(struct fake_kernel *k, uint32_t dev_id, uint32_t bitmap, uint64_t first,
		  uint32_t count, int (*cb)(const struct rcow_run *run, void *data), void *data,
		  struct rcow_err *err);
const char *fake_mig_cow(const struct fake_kernel *k, uint32_t dev_id);
void fake_mig_free(struct fake_kernel *k);
int fake_deliver(struct daemon *d, const struct nlmsghdr *nlh);

#endif
