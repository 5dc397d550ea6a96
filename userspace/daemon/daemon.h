/* SPDX-License-Identifier: GPL-2.0 */
/*
 * remote-cowd internals.
 *
 * The daemon is one poll() loop (loop.c; main.c adds the netlink socket
 * and a signalfd) over every NBD connection's socket and two kinds of
 * eventfd: the COW writer threads' (writer.c) and each file source's
 * reader threads'.  The engine talks to the kernel through struct
 * kernel_ops (kernel-nl.c; a fake in the host tests).
 * Those threads do the only blocking I/O; everything else, the engine
 * included, runs in the loop thread.  The engine
 * (engine.c) knows devices, faults and extents; it turns every FAULT (a
 * run of adjacent extents) into one "xfer" per MAX_XFER_BYTES of it (per
 * piece, src->piece, of a prefetch or streaming run) and queues it on the
 * device's source; the devices over one source take turns
 * (engine_next()), and a device has at most half the COW writer threads
 * (writer.c).  A source that issues an xfer may
 * take the adjacent xfers of the same device queued right behind it into
 * the same read and COW write (engine_merge()); each xfer is still
 * answered on its own, FILL_DONE naming its fault's cookie and its own
 * extents.  A source
 * (struct src, one per distinct base URI, shared by the devices over the
 * same base) fetches xfers through its operations table, like nbdcopy's
 * rw back ends:
 *
 *   src-nbd.c   libnbd's asynchronous API: several connections, many
 *               reads in flight, block status to skip holes, reconnection
 *               with backoff; never blocks the loop on the network.
 *   src-file.c  local image file or block device: plain reads, done by a
 *               few reader threads so that slow storage never blocks the
 *               loop.
 *
 * When a source has the data of an xfer it calls engine_xfer_done(); the
 * engine hands it to a writer thread, which writes the extent into the
 * COW device with O_DIRECT (engine_write_extent()); back in the loop
 * (engine_write_done()), the engine answers FILL_DONE for the extents of
 * the xfer (and of those merged into it), each with its own status: the
 * kernel takes answers for sub-ranges of a fault.  FILL_DONE goes out
 * without NLM_F_ACK (kernel_nl_ops): a refusal comes back later on the
 * socket and is only logged, so the loop never waits for the kernel.
 */
#ifndef REMOTE_COWD_H
#define REMOTE_COWD_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "bufcache.h"
#include "rcow/config.h"
#include "rcow/cow.h"
#include "rcow/fill.h"
#include "rcow/msg.h"
#include "rcow/nl.h"
#include "rcow/policy.h"
#include "vector.h"

#define PROG "remote-cowd"

DEFINE_VECTOR(cookie_vec, uint64_t);
DEFINE_VECTOR(config_vec, struct rcow_config);

/* Priority classes, served in this order. */
enum xclass { XC_GUEST, XC_PREFETCH, XC_HYDRATE, XC_NR };

struct daemon;
struct device;
struct src;
struct writer;

/* Largest xfer a FAULT is cut into, and largest merged read (bytes). */
#define MAX_XFER_BYTES (4u << 20)
/*
 * Prefetch and streaming runs are cut into pieces of at most src->piece
 * bytes (never merged beyond it), each read, written and answered on its
 * own: a guest read that lands in a run the kernel already asked for
 * waits for its own piece, not for the whole run to cross the link.
 */
#define DEFAULT_PIECE_BYTES (256u << 10)

struct fault {
	struct device *dev;
	unsigned int epoch;		/* dev->epoch when it arrived */
	uint64_t cookie, first;
	uint32_t count;
	uint32_t remaining;	/* xfers not yet finished */
	enum xclass cls;
	int conn;		/* source connection its last piece went on, -1 none */
};

enum xstate { X_QUEUED, X_ACTIVE, X_DONE };

/*
 * Extents [ext, ext + n) of a fault to fetch and write.  A merged xfer
 * (merged) rides in the read and COW write of the one before it in the
 * chain (mnext), whose off/len/io_len/buf cover the whole chain.
 */
struct xfer {
	struct xfer *prev, *next;	/* in a source queue */
	struct xfer *done_next;		/* in a file source's or the writer's done list */
	struct fault *fault;
	uint64_t ext;
	uint32_t n;			/* extents of its fault it answers (faults only) */
	uint32_t status;		/* its answer: 0 or a positive errno */
	struct xfer *mnext;		/* merged into this one's read and write */
	bool merged;
	bool alone;			/* split after a failure: never merged again */
	uint64_t off, len;		/* device (= base) bytes */
	size_t io_len;			/* len rounded up to the COW block size */
	struct rcow_buf buf;
	enum xstate state;
	enum xclass cls;
	unsigned int parts;		/* reads in flight */
	int err;			/* errno of a failed read */
	unsigned int conn_gen;		/* connection generation it was issued on */
	int conn;			/* connection index, -1 none */
	unsigned int retries;		/* server-side errors so far */
	bool zero_all;			/* nothing to read: a hole */
	uint64_t bytes_read, bytes_zero;
	uint64_t issued_ms;
	uint64_t t_queued, t_issued, t_read;	/* us (stats: queue_us, read_us, write_us) */
	/* snapshot commit jobs (commit.c): fault is NULL */
	struct commit *owner;
	unsigned int epoch;		/* the commit's epoch when it was read */
	bool from_spool;		/* data read from the spool, not the COW device */
	unsigned int nexts, stored;	/* copy ahead: extents from ext on, how many spooled */
};

struct xqueue {
	struct xfer *head, *tail;
	unsigned int n;
};

void xq_push(struct xqueue *q, struct xfer *x);
void xq_push_front(struct xqueue *q, struct xfer *x);
void xq_del(struct xqueue *q, struct xfer *x);

struct src_ops {
	const char *name;
	int (*open)(struct src *s);		/* start opening/connecting; no blocking on network */
	void (*close)(struct src *s);		/* abandon everything in flight */
	int (*pollfds)(struct src *s, struct pollfd *p, int max);	/* fill up to max */
	void (*events)(struct src *s, const struct pollfd *p, int n);
	uint64_t (*timer)(struct src *s, uint64_t now_ms);	/* next deadline, 0: none */
	void (*tick)(struct src *s, uint64_t now_ms);
	void (*pump)(struct src *s);		/* issue queued xfers */
	unsigned int (*in_flight)(const struct src *s);
	bool (*ready)(const struct src *s);	/* connected / open */
	/* exiting: disconnect politely; true once nothing is left open */
	bool (*quiesce)(struct src *s);
};

extern const struct src_ops src_nbd_ops;
extern const struct src_ops src_file_ops;

struct src {
	struct src *next;		/* in d->srcs, or d->dead_srcs once unused */
	struct daemon *d;
	const struct src_ops *ops;
	char *uri;
	unsigned int refs;		/* devices using it */
	struct rcow_policy pol;
	const struct rcow_cred *cred;
	struct xqueue q[XC_NR];
	uint64_t size;			/* base size once known */
	bool size_known;
	uint64_t piece;			/* prefetch/stream piece, bytes (see DEFAULT_PIECE_BYTES) */
	uint64_t serve_seq;		/* reads issued, for the fair share (engine_next()) */
	uint64_t window;		/* bytes it lets in flight (src-nbd.c), 0: no window */
	void *priv;
};

#define RANGE_RING 256

struct prange {
	uint64_t first, end;
	enum xclass cls;
};

struct device {
	struct device *next;
	struct daemon *d;
	struct rcow_device_info info;
	struct rcow_geom geom;
	struct rcow_cow *cow;
	struct src *src;
	bool removed;
	bool bad_geom;
	unsigned int seen;		/* d->resync_gen of the last list that had it */
	/*
	 * Bumped by the loop when the device's pending fills become void
	 * (QUIESCE, removal); the writer threads read it to skip the COW
	 * writes of older faults (engine_write_extent()).
	 */
	atomic_uint epoch;
	struct cookie_vec quiesce;	/* QUIESCE cookies waiting for writes == 0 */
	unsigned int writes;		/* COW writes in flight or waiting (writer.c) */
	unsigned int pool_writes;	/* of those, handed to a writer thread */
	uint64_t rd_bytes;		/* bytes of its reads in flight at its source */
	unsigned int reads;		/* those reads */
	uint64_t served;		/* its source's serve count when it last issued */
	unsigned int refs;		/* faults alive + 1 while listed */
	struct rcow_prefetch pf;
	uint64_t pf_cap;		/* prefetch_max, extents (pf.max follows the window) */
	struct prange ranges[RANGE_RING];	/* recent prefetch/hydrate requests */
	unsigned int nranges, rhead;
	/* background streaming */
	bool hydrating;
	uint32_t hydrate_rate;		/* MiB/s, 0 unlimited */
	struct rcow_ratelimit rl;
	uint8_t *bitmap;		/* PRESENT, as read at the pass start */
	uint64_t cursor;
	unsigned int hydrate_inflight;
	uint64_t hydrate_wait_until;	/* ms */
	uint64_t hydrate_start_ms;
	unsigned int hydrate_pass;
	bool remote_refused;		/* post-copy: a remote fault failed (logged once) */
};

struct stats {
	unsigned long long faults, answered, extents, bytes_read, bytes_zero, bytes_written;
	unsigned long long fill_errors, stale_cookies, devices_added, devices_removed;
	unsigned long long guest_faults, prefetch_faults, hydrate_faults;
	/* speculative reads moved ahead because I/O waits on them (PROMOTE, FAULT flag) */
	unsigned long long promoted;
	unsigned long long prefetch_requests, prefetch_extents, hydrate_requests, hydrate_extents;
	unsigned long long reconnects, retries, connect_failures;
	/* extents FAULTs named; xfers merged into another's read; failed reads split */
	unsigned long long fault_extents, merged, splits;
	/*
	 * Where a fill's time goes, summed over the reads (a merged chain
	 * counts once), microseconds: queued (FAULT to the read's issue),
	 * reading (issue to data in memory), writing (to the COW write's
	 * end, including the wait for a writer thread); fills is how many.
	 */
	unsigned long long fills, queue_us, read_us, write_us;
	/* the last measured window of an NBD base: bytes, bytes/s, us */
	unsigned long long window, bw, rtt_us;
	/* turns of the poll loop (loop_turn()): its wake-ups */
	unsigned long long turns;
	/*
	 * Live migration, summed over the jobs that ended (mig.c): bytes on
	 * the wire (frame headers and payloads, before TLS) both ways, the
	 * DATA payload sent (source) or received (destination), extents
	 * moved, and the jobs on each side.
	 */
	unsigned long long migrate_bytes_sent, migrate_bytes_received, migrate_data_bytes;
	unsigned long long migrate_extents, migrations_sent, migrations_received;
};

struct options {
	bool foreground;
	const char *config_path;
	const char *stats_path;
	const char *ready_path;
	const char *node_dir;
	const char *run_dir;	/* migration keys and specs (mig.c), NULL: RCOWD_RUN_DIR */
	int verbose;
	/* command-line overrides of the global policy (-1: not given) */
	long long connections, max_in_flight, prefetch_max;
	uint32_t mig_peer_timeout_ms;	/* --migrate-peer-timeout, 0: not given */
	uint32_t mig_gather_ms;		/* a group's members started within; 0: MIG_GATHER_MS (tests) */
	bool mig_mirror_set;		/* --migrate-mirror given: */
	enum rcow_mig_mirror mig_mirror;
	bool mig_postcopy_rate_set;	/* --migrate-postcopy-rate given: */
	uint64_t mig_postcopy_rate;	/* bytes/s, 0: no limit */
};

/*
 * What the engine asks of the kernel side: answers, requests and the COW
 * device of a device.  kernel-nl.c implements it over the generic netlink
 * socket; the host tests (tests/fake-kernel.c) record the answers instead.
 * Every call returns 0 or -errno with err set.
 */
struct kernel_ops {
	int (*fill_done)(void *ctx, const struct rcow_fault *f, uint32_t status,
			 struct rcow_err *err);
	int (*quiesce_done)(void *ctx, const struct rcow_quiesce *q, struct rcow_err *err);
	int (*hydrate)(void *ctx, uint32_t dev_id, uint64_t first, uint32_t count,
		       uint32_t *queued, struct rcow_err *err);
	int (*get_bitmap)(void *ctx, uint32_t dev_id, uint32_t bitmap, uint64_t first,
			  uint8_t *data, size_t cap, uint64_t *got_first, uint32_t *got_count,
			  struct rcow_err *err);
	int (*get_device)(void *ctx, uint32_t dev_id, struct rcow_device_info *info,
			  struct rcow_err *err);
	/* also called by migration jobs' threads (mig-send.c, mig-recv.c) */
	int (*open_cow)(void *ctx, const struct rcow_device_info *info, struct rcow_cow **out,
			struct rcow_err *err);
	/* snapshot commit: COMMIT_MARK, COMMIT_END (-EAGAIN: extents still to upload) */
	int (*commit_mark)(void *ctx, const struct rcow_commit *c, struct rcow_err *err);
	int (*commit_end)(void *ctx, const struct rcow_commit *c, struct rcow_err *err);
	/*
	 * GET_RUNS dump of a bitmap from extent first, of count extents from
	 * there (0: to the end; an older module may go on past it), run by
	 * run to cb
	 */
	int (*get_runs)(void *ctx, uint32_t dev_id, uint32_t bitmap, uint64_t first,
			uint32_t count, int (*cb)(const struct rcow_run *run, void *data),
			void *data, struct rcow_err *err);
	/*
	 * live migration (mig.c): a MIGRATE_ROUND, _MARK, _END, _FILL or
	 * _COMPLETE request built in nlh (with ->family()'s id), sent and
	 * acknowledged: 0 or the kernel's -errno; -ENOTCONN with no kernel
	 */
	int (*transact)(void *ctx, struct nlmsghdr *nlh, struct rcow_err *err);
	uint16_t (*family)(void *ctx);
};

extern const struct kernel_ops kernel_nl_ops;	/* ctx: the struct daemon */

struct daemon {
	struct options opt;
	struct rcow_config cfg;
	struct config_vec retired;	/* replaced by SIGHUP, kept for open bases */
	struct stats st;
	const struct kernel_ops *kops;
	void *kctx;
	struct rcow_nl *nl;		/* kernel_nl_ops only */
	struct device *devices;
	struct commit *commits;		/* snapshot commits being uploaded (commit.c) */
	struct commit_resume *commit_resumes;	/* found uploading, started by commit_run() */
	struct migs *mig;		/* live migration jobs (mig.c), NULL: none yet */
	struct src *srcs;
	struct src *dead_srcs;		/* unused, closed by engine_reap_sources() */
	/* forgotten devices with COW writes in progress, and the writes behind them */
	struct device *draining;
	struct xqueue parked;
	struct writer *writer;		/* COW writer threads (writer.c) */
	struct bufcache *bufs;		/* the fills' I/O buffers (bufcache.c) */
	unsigned int resync_gen;	/* device list re-reads after overflows */
	bool stopping;
	bool no_preserve_ahead;		/* tests: commits preserve on PRESERVE only */
};

/* util */
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vlog(struct daemon *d, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t now_ms(void);
uint64_t now_ns(void);
/*
 * A condition variable whose timed waits (pthread_cond_timedwait()) take
 * mono_deadline()'s: CLOCK_MONOTONIC, not moved by a step of the wall
 * clock.  0 or -errno.
 */
int cond_init_mono(pthread_cond_t *c);
/* ms from now on CLOCK_MONOTONIC: a deadline for cond_init_mono()'s condvars. */
struct timespec mono_deadline(int ms);

/* engine.c */
int engine_add_device(const struct rcow_device_info *info, void *data);
void engine_remove_device(struct daemon *d, uint32_t dev_id);
void engine_fault(struct daemon *d, const struct rcow_fault *f);
void engine_promote(struct daemon *d, const struct rcow_fault *f);
void engine_hydrate_ctl(struct daemon *d, const struct rcow_hydrate_ctl *h);
/*
 * QUIESCE: void the device's pending fills (queued ones dropped, reads in
 * flight discarded, unanswered); QUIESCE_DONE once none of its COW writes
 * is in flight any more, from engine_run() if not at once.
 */
void engine_quiesce(struct daemon *d, const struct rcow_quiesce *q);
/*
 * Around a re-read of the device list after an overflow (rcow_nl_helper's
 * resync): devices the list no longer has are forgotten at the end (their
 * DEVICE_REMOVE was lost).  data: the struct daemon.
 */
void engine_resync(void *data, bool begin);
/* One kernel message, whatever its command. */
void engine_event(struct daemon *d, const struct rcow_event *ev);
/* Close the sources no device uses any more (never from a source's callback). */
void engine_reap_sources(struct daemon *d);
/* Exit: forget every device (nothing answered); then engine_reap_sources(). */
void engine_forget_all(struct daemon *d);
/*
 * A source about to issue x: true if y, queued right behind it, may join x's
 * read and write (same device and epoch, adjacent, no padding, within
 * MAX_XFER_BYTES).  engine_merge() then takes y out of its queue into x's
 * chain, before x's buffer is reserved.
 */
bool engine_can_merge(const struct xfer *x, const struct xfer *y);
/*
 * Fair share of a base among its devices: the queued xfer of class c the
 * source should issue next, or NULL.  Of each device's first xfer that
 * usable() accepts, the one of the device with the fewest bytes of reads
 * in flight (served longest ago among equals, rcow_fair_pick()); a device
 * with DEV_MAX_WRITES COW writes in flight or waiting, or DEV_MAX_OUT reads
 * and writes, is skipped, so that a slow COW device slows only its own
 * device and its fetched data does not pile up in memory.  The source then calls
 * engine_issued() with the xfer it issues, and engine_read_over() when
 * its read is over (before engine_xfer_done(), or a requeue).
 */
#define DEV_MAX_WRITES 16
#define DEV_MAX_OUT 48
struct xfer *engine_next(struct src *s, enum xclass c,
			 bool (*usable)(struct src *s, const struct xfer *x));
void engine_issued(struct src *s, struct xfer *x);
void engine_read_over(struct xfer *x);
void engine_merge(struct src *s, struct xfer *x, struct xfer *y);
/*
 * A read of several extents (x's own, or merged) failed for good: requeue
 * every extent as an xfer of its own, never merged again, so that only
 * the extents the base cannot give fail.  False (nothing done) when x is
 * one extent already: fail it.
 */
bool engine_split(struct src *s, struct xfer *x);
/* A source finished an xfer: err 0 (data in x->buf) or a positive errno. */
void engine_xfer_done(struct src *s, struct xfer *x, int err);
/* Writer threads: write x into its COW device; 0 or a positive errno. */
int engine_write_extent(struct xfer *x);
/* Loop thread: the write of x is over (x->err); answers its fault when due. */
void engine_write_done(struct daemon *d, struct xfer *x);
/* Work that is not driven by a file descriptor (hydrate, writes). */
void engine_run(struct daemon *d);
uint64_t engine_timer(struct daemon *d, uint64_t now);
bool engine_guest_waiting(const struct src *s);

/*
 * commit.c: snapshot commit uploads, one struct commit per device with a
 * commit running (see the comment at the top of commit.c).  Loop thread.
 */
/* COMMIT_START, or a device found uploading (GET_DEVICE / device list): start or resume. */
void commit_start(struct daemon *d, const struct rcow_device_info *info,
		  const struct rcow_commit *c);
void commit_preserve(struct daemon *d, const struct rcow_device_info *info,
		     const struct rcow_commit *c);
void commit_abort(struct daemon *d, const struct rcow_commit *c);
/* The device was listed again (its resume, a dump): resume a paused commit, or resume one found uploading. */
void commit_device(struct daemon *d, const struct rcow_device_info *info);
/* QUIESCE: reads in progress are void, no new ones until the device is live again. */
void commit_pause(struct daemon *d, uint32_t dev_id);
/* The device is gone: stop its commit; its spool is kept only if the daemon is exiting. */
void commit_stop(struct daemon *d, uint32_t dev_id);
void commit_run(struct daemon *d);
/* Frees what commit_device() queued and commit_run() did not start. */
void commit_fini(struct daemon *d);
uint64_t commit_timer(struct daemon *d, uint64_t now);
unsigned int commit_max_fds(const struct daemon *d);
int commit_pollfds(struct daemon *d, struct pollfd *p, int max);
void commit_events(struct daemon *d, const struct pollfd *p, int n);

/*
 * mig.c: live migration jobs, each in a thread of its own (see mig.h).
 * Loop thread: the kernel's MIGRATE_* events; a device listed (an
 * incoming one with a receive spec starts receiving); a device gone;
 * mig_run() runs the jobs' kernel requests and reaps them; mig_pollfd()
 * the eventfd they wake the loop with (0 or 1 fd); mig_fini() at exit.
 */
#define RCOWD_RUN_DIR "/run/remote-cowd"
void mig_event(struct daemon *d, const struct rcow_event *ev);
void mig_device(struct daemon *d, const struct rcow_device_info *info);
void mig_stop(struct daemon *d, uint32_t dev_id);
void mig_run(struct daemon *d);
int mig_pollfd(struct daemon *d, struct pollfd *p);
/* When a group being gathered must be whole (ms, now_ms()'s clock); 0: none. */
uint64_t mig_timer(struct daemon *d, uint64_t now);
void mig_fini(struct daemon *d);
/*
 * Post-copy, loop side: a FAULT with RCOW_FAULT_F_REMOTE of a device
 * (epoch: its engine epoch) goes to the migration job receiving it.
 * false, with why: no job can fetch it (none, or its source is lost).
 */
bool mig_remote_fault(struct daemon *d, const struct rcow_fault *f, unsigned int epoch,
		      char *why, size_t cap);
/* PROMOTE of a remote fault queued: I/O waits on it now. */
void mig_remote_promote(struct daemon *d, const struct rcow_fault *f);
/*
 * Post-copy, loop side: the answer to remote fault f (epoch as it came):
 * status 0 writes data (len bytes, the run's) into the COW data area by
 * the fill path (writer threads, the QUIESCE rules), then FILL_DONE; else
 * FILL_DONE with status.  A fault voided since (QUIESCE, removal) is
 * dropped.
 */
void engine_remote_fill(struct daemon *d, const struct rcow_fault *f, unsigned int epoch,
			const void *data, size_t len, uint32_t status);

/*
 * loop.c: one turn of the daemon's loop: finished writes, streaming,
 * source timers and reads, then poll() over the writers, every source and
 * the caller's extra fds (revents set for the caller), at most
 * timeout_ms (-1: until something happens), then the sources' events.
 * 0 or -errno if poll() failed.
 */
int loop_turn(struct daemon *d, struct pollfd *extra, unsigned int nextra, int timeout_ms);
/* Poll the writers and the sources only, for at most timeout_ms (exit path). */
int loop_poll_sources(struct daemon *d, int timeout_ms);

/*
 * pool.c: threads for blocking I/O.  fn runs in a pool thread with that
 * thread's ctx (ctx[i], or NULL); the rest is called by the loop thread.
 * pool_collect() returns the finished xfers, oldest first, linked by
 * done_next.  pool_stop(wait = false) leaves busy threads to the exit.
 */
struct pool;
typedef void (*pool_fn)(void *ctx, struct xfer *x);
int pool_start(struct pool **out, const char *name, unsigned int nthreads, pool_fn fn,
	       void *const *ctx);
void pool_stop(struct pool *p, bool wait);
void pool_submit(struct pool *p, struct xfer *x);
int pool_fd(const struct pool *p);
struct xfer *pool_collect(struct pool *p);

/* writer.c: COW writes in threads; everything but the threads' own work is the loop's */
int writer_start(struct daemon *d);
void writer_stop(struct daemon *d);
void writer_submit(struct daemon *d, struct xfer *x);
int writer_fd(const struct daemon *d);
bool writer_full(const struct daemon *d);
unsigned int writer_backlog(const struct daemon *d);
void writer_reap(struct daemon *d);

#endif
