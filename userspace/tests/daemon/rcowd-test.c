// SPDX-License-Identifier: GPL-2.0
/*
 * rcowd-test.c - remote-cowd's core (engine, loop, sources, pool, writer,
 * commits, migration jobs) on the host, against nbdkit, local files and
 * loopback TLS, with a fake kernel side (fake-kernel.c, fake-mig.c).
 * Built twice, under AddressSanitizer+UBSan and under
 * ThreadSanitizer (userspace/Makefile: check-asan, check-tsan).
 *
 *   rcowd-test GROUP     run one group (a crash fails only that group)
 *   rcowd-test --list    the group names
 *
 * Output is TAP.  Groups that need nbdkit are skipped without it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "daemon.h"
#include "rcow/crc32c.h"
#include "fake-kernel.h"
#include "fake-nbd.h"
#include "safefile.h"
#include "slow-cow.h"
#include "tap.h"

#define EXT_SECTORS 128u		/* 64 KiB extents */
#define EXT_BYTES (EXT_SECTORS * 512ull)
#define DATA_OFFSET 8u			/* sectors */
#define WRITERS_PER_DEV_TEST 4		/* writer.c's WRITER_PER_DEV */
#define SERVER_ERROR_RETRIES_TEST 3	/* src-nbd.c's SERVER_ERROR_RETRIES */

struct env {
	struct daemon d;
	struct fake_kernel k;
	char *dir;
	char cow[PATH_MAX];
	char sock[PATH_MAX];
	char uri[PATH_MAX + 32];
	pid_t nbdkit;
	uint64_t nr_extents;
};

/* ---- nbdkit ---------------------------------------------------------------- */

static bool have_nbdkit(void)
{
	return system("nbdkit --version >/dev/null 2>&1") == 0;
}

/* nbdkit -f --exit-with-parent -U e->sock ARGS...; waits for the socket. */
static int nbdkit_start(struct env *e, const char *const *args)
{
	const char *argv[32];
	int i = 0;
	pid_t pid;

	unlink(e->sock);
	argv[i++] = "nbdkit";
	argv[i++] = "-f";
	argv[i++] = "--exit-with-parent";
	argv[i++] = "-U";
	argv[i++] = e->sock;
	for (; *args && i < 31; args++)
		argv[i++] = *args;
	argv[i] = NULL;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		if (devnull >= 0)
			dup2(devnull, 1);
		execvp("nbdkit", (char **)argv);
		_exit(127);
	}
	for (int tries = 0; tries < 500; tries++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		if (access(e->sock, F_OK) == 0) {
			e->nbdkit = pid;
			return 0;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return -1;
}

static void nbdkit_stop(struct env *e)
{
	if (e->nbdkit > 0) {
		kill(e->nbdkit, SIGKILL);	/* a crash: no orderly goodbye */
		waitpid(e->nbdkit, NULL, 0);
		e->nbdkit = 0;
	}
}

/*
 * nbdkit 1.32 (Debian 12) can die on an assertion (connections.c,
 * raw_send_socket: sock >= 0) when a client closes its connection while
 * the delay filter holds a request: the case of a remote-cowd that exits
 * mid-upload.  That is the server's bug, not the daemon's; a test that
 * stops a daemon under a delayed nbdkit starts the server again if it died
 * so that the next daemon finds the same target file served.
 */
static int nbdkit_revive(struct env *e, struct tap *t, const char *const *args)
{
	struct timespec ts = { 0, 400 * 1000 * 1000 };	/* past the longest delay */

	nanosleep(&ts, NULL);
	if (e->nbdkit <= 0 || waitpid(e->nbdkit, NULL, WNOHANG) != e->nbdkit)
		return 0;
	e->nbdkit = 0;
	tap_diag(t, "nbdkit died when the daemon closed its connections; starting it again");
	return nbdkit_start(e, args);
}

/* ---- environment ---------------------------------------------------------- */

static int env_init(struct env *e, struct tap *t, uint64_t nr_extents)
{
	int fd;

	memset(e, 0, sizeof(*e));
	e->dir = tap_tmpdir(t);
	if (!e->dir)
		return -1;
	snprintf(e->cow, sizeof(e->cow), "%s/cow", e->dir);
	snprintf(e->sock, sizeof(e->sock), "%s/nbd.sock", e->dir);
	snprintf(e->uri, sizeof(e->uri), "nbd+unix:///?socket=%s", e->sock);
	e->nr_extents = nr_extents;
	fd = open(e->cow, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(DATA_OFFSET * 512 + nr_extents * EXT_BYTES)) < 0) {
		tap_diag(t, "cannot make %s: %s", e->cow, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	rcow_config_init(&e->d.cfg);
	e->d.cfg.global.retry_initial_ms = 50;
	e->d.cfg.global.retry_max_ms = 200;
	e->d.opt.connections = e->d.opt.max_in_flight = e->d.opt.prefetch_max = -1;
	e->d.opt.verbose = getenv("RCOWD_TEST_VERBOSE") ? 2 : 0;
	e->k.cow_path = e->cow;
	e->d.kops = &fake_kernel_ops;
	e->d.kctx = &e->k;
	e->d.bufs = bufcache_new(8u << 20);
	if (!e->d.bufs || writer_start(&e->d)) {
		tap_diag(t, "cannot start the writer threads");
		return -1;
	}
	return 0;
}

static void turn(struct env *e, int ms)
{
	loop_turn(&e->d, NULL, 0, ms);
}

static void spin_for(struct env *e, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end)
		turn(e, (int)(end - now_ms()) > 20 ? 20 : 1);
}

/* Run the loop until dev_id's cookie has an answer cmd; NULL after ms. */
static const struct fake_answer *wait_answer(struct env *e, uint8_t cmd, uint32_t dev_id,
					     uint64_t cookie, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	const struct fake_answer *a;

	while (!(a = fake_find(&e->k, cmd, dev_id, cookie)) && now_ms() < end)
		turn(e, 20);
	return a;
}

/* Forget every device, let the sources close, stop the writers. */
static void env_fini(struct env *e)
{
	uint64_t end = now_ms() + 5000;

	engine_forget_all(&e->d);
	while ((e->d.srcs || e->d.commits || writer_backlog(&e->d)) && now_ms() < end)
		turn(e, 20);
	engine_reap_sources(&e->d);
	writer_stop(&e->d);
	bufcache_free(e->d.bufs);
	rcow_config_free(&e->d.cfg);
	fake_free(&e->k);
	nbdkit_stop(e);
	tap_rmtree(e->dir);
	free(e->dir);
}

static void dev_info(struct env *e, struct rcow_device_info *info, uint32_t dev_id,
		     const char *uri)
{
	memset(info, 0, sizeof(*info));
	info->dev_id = dev_id;
	snprintf(info->dm_name, sizeof(info->dm_name), "test%u", dev_id);
	info->cow_major = 7;
	info->cow_minor = dev_id;
	info->extent_sectors = EXT_SECTORS;
	info->nr_extents = e->nr_extents;
	info->data_offset = DATA_OFFSET;
	info->dev_sectors = e->nr_extents * EXT_SECTORS;
	snprintf(info->base_uri, sizeof(info->base_uri), "%s", uri);
}

static int add_device(struct env *e, uint32_t dev_id, const char *uri)
{
	struct rcow_device_info info;

	dev_info(e, &info, dev_id, uri);
	return fake_send_device(&e->d, RCOW_CMD_DEVICE_ADD, &info);
}

static int remove_device(struct env *e, uint32_t dev_id)
{
	struct rcow_device_info info;

	dev_info(e, &info, dev_id, "");
	return fake_send_device(&e->d, RCOW_CMD_DEVICE_REMOVE, &info);
}

/* ---- COW content ------------------------------------------------------------ */

static int read_cow_extent(struct env *e, uint64_t ext, unsigned char *buf)
{
	int fd = open(e->cow, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, buf, EXT_BYTES, (off_t)(DATA_OFFSET * 512 + ext * EXT_BYTES));
	close(fd);
	return n == (ssize_t)EXT_BYTES ? 0 : -1;
}

/* nbdkit's pattern plugin: the 8 bytes at offset o hold o, big-endian. */
static bool is_pattern(const unsigned char *b, uint64_t off, size_t len)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = 0;

		for (int k = 0; k < 8; k++)
			v = v << 8 | b[i + (size_t)k];
		if (v != off + i)
			return false;
	}
	return true;
}

static bool is_zero(const unsigned char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

static bool cow_extent_is(struct env *e, uint64_t ext, bool pattern)
{
	static unsigned char buf[EXT_BYTES];

	if (read_cow_extent(e, ext, buf))
		return false;
	return pattern ? is_pattern(buf, ext * EXT_BYTES, EXT_BYTES) : is_zero(buf, EXT_BYTES);
}

/* The whole data area of the COW file, for before/after comparisons. */
static unsigned char *cow_snapshot(struct env *e)
{
	size_t len = (size_t)(e->nr_extents * EXT_BYTES);
	unsigned char *b = malloc(len);
	int fd = open(e->cow, O_RDONLY);

	if (!b || fd < 0 || pread(fd, b, len, DATA_OFFSET * 512) != (ssize_t)len) {
		free(b);
		b = NULL;
	}
	if (fd >= 0)
		close(fd);
	return b;
}

/* ---- groups ------------------------------------------------------------------ */

#define NEED_NBDKIT(t)								\
	do {									\
		if (!have_nbdkit()) {						\
			tap_skip(t, "nbdkit not installed", "%s", __func__);	\
			return;							\
		}								\
	} while (0)

/*
 * QUIESCE while reads are in flight on a slow base: answered at once (no
 * COW write is in flight), the reads' data is thrown away, their faults
 * never answered; FAULTs after it are served.
 */
static void test_quiesce_reads(struct tap *t)
{
	const char *args[] = { "--filter=delay", "pattern", "size=8M", "rdelay=400ms", NULL };
	struct env e;
	const struct fake_answer *a;
	bool none = true, untouched = true;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 64) || nbdkit_start(&e, args) || add_device(&e, 1, e.uri)) {
		tap_ok(t, false, "set up nbdkit (pattern, 400 ms read delay) and a device");
		env_fini(&e);
		return;
	}
	a = (fake_send_fault(&e.d, 1, 1, 0, 1), wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 5000));
	tap_ok(t, a && a->status == 0 && a->first == 0 && cow_extent_is(&e, 0, true),
	       "a fault before QUIESCE is filled and answered with its first extent");
	for (uint64_t c = 2; c < 10; c++)
		fake_send_fault(&e.d, 1, c, c * 2, 2);
	spin_for(&e, 100);	/* the reads are out at the server now */
	fake_send_quiesce(&e.d, 1, 77);
	a = wait_answer(&e, RCOW_CMD_QUIESCE_DONE, 1, 77, 300);
	tap_ok(t, a != NULL, "QUIESCE with only reads in flight is answered at once (%s)",
	       a ? "answered" : "no QUIESCE_DONE within 300 ms");
	spin_for(&e, 1000);	/* the delayed reads complete meanwhile */
	for (uint64_t c = 2; c < 10; c++)
		if (fake_find(&e.k, RCOW_CMD_FILL_DONE, 1, c))
			none = false;
	for (uint64_t x = 4; x < 20; x++)
		if (!cow_extent_is(&e, x, false))
			untouched = false;
	tap_ok(t, none, "faults voided by QUIESCE are never answered");
	tap_ok(t, untouched, "reads that complete after QUIESCE are not written to the COW device");
	fake_send_fault(&e.d, 1, 100, 4, 2);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 100, 5000);
	tap_ok(t, a && a->status == 0 && a->first == 4 && cow_extent_is(&e, 4, true) &&
	       cow_extent_is(&e, 5, true),
	       "after the resume a new FAULT for the same device is served");
	env_fini(&e);
}

struct qw {
	struct env *e;
	unsigned char *at_done;		/* COW content when QUIESCE_DONE went out */
	int writing;			/* COW pwrite()s in progress then */
};

static void snapshot_at_done(struct fake_kernel *k, const struct rcow_quiesce *q)
{
	struct qw *w = k->data;

	(void)q;
	w->writing = slow_cow_in_progress();
	free(w->at_done);
	w->at_done = cow_snapshot(w->e);
}

/*
 * QUIESCE while COW writes are in flight: QUIESCE_DONE goes out only
 * after the last of them, and nothing is written after it.
 */
static void test_quiesce_writes(struct tap *t)
{
	const char *args[] = { "pattern", "size=64M", NULL };
	struct env e;
	struct qw w = { &e, NULL, 0 };
	const struct fake_answer *a;
	unsigned char *end;
	size_t answered = 0;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 1024) || nbdkit_start(&e, args) || add_device(&e, 1, e.uri)) {
		tap_ok(t, false, "set up nbdkit (pattern) and a device");
		env_fini(&e);
		return;
	}
	e.k.on_quiesce_done = snapshot_at_done;
	e.k.data = &w;
	a = (fake_send_fault(&e.d, 1, 1, 0, 1), wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 5000));
	tap_ok(t, a && a->status == 0, "the base is connected");
	/* a slow COW device: 150 ms a write, so writes are surely in progress */
	slow_cow_set(e.k.cow_fd, 150, 1000);
	for (uint64_t c = 0; c < 64; c++)
		fake_send_fault(&e.d, 1, 1000 + c, 1 + c * 4, 4);
	for (uint64_t until = now_ms() + 5000; slow_cow_in_progress() < 2 && now_ms() < until;)
		turn(&e, 5);
	answered = fake_count(&e.k, RCOW_CMD_FILL_DONE);
	tap_diag(t, "QUIESCE with %d COW write(s) in progress, %u submitted, %zu fault(s) answered",
		 slow_cow_in_progress(), writer_backlog(&e.d), answered);
	fake_send_quiesce(&e.d, 1, 5);
	a = wait_answer(&e, RCOW_CMD_QUIESCE_DONE, 1, 5, 5000);
	tap_ok(t, a != NULL, "QUIESCE with COW writes in flight is answered");
	tap_ok(t, a && w.writing == 0, "QUIESCE_DONE only once no COW write is in progress (%d were)",
	       w.writing);
	a = NULL;
	spin_for(&e, 500);
	end = cow_snapshot(&e);
	tap_ok(t, w.at_done && end && !memcmp(w.at_done, end, (size_t)(e.nr_extents * EXT_BYTES)),
	       "nothing is written to the COW device after QUIESCE_DONE");
	{
		size_t qi = 0, after = 0;

		while (qi < e.k.n && e.k.v[qi].cmd != RCOW_CMD_QUIESCE_DONE)
			qi++;
		for (size_t i = qi + 1; i < e.k.n; i++)
			after += e.k.v[i].cmd == RCOW_CMD_FILL_DONE;
		tap_ok(t, qi < e.k.n && after == 0,
		       "no FILL_DONE of a voided fault after QUIESCE_DONE (%zu)", after);
	}
	slow_cow_set(-1, 0, 0);
	fake_send_fault(&e.d, 1, 9000, 1000, 4);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 9000, 5000);
	tap_ok(t, a && a->status == 0 && a->first == 1000 && cow_extent_is(&e, 1003, true),
	       "a FAULT after the resume is filled");
	free(w.at_done);
	free(end);
	env_fini(&e);
}

/*
 * The last device of an NBD base goes away while one of its reads is in
 * flight: the read completes into a source that must still exist
 * (ASan reports a use-after-free if it does not).
 */
static void test_remove_nbd_inflight(struct tap *t)
{
	const char *args[] = { "--filter=delay", "pattern", "size=8M", "rdelay=300ms", NULL };
	struct env e;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 64) || nbdkit_start(&e, args) || add_device(&e, 1, e.uri)) {
		tap_ok(t, false, "set up nbdkit (300 ms read delay) and a device");
		env_fini(&e);
		return;
	}
	fake_send_fault(&e.d, 1, 1, 0, 2);
	spin_for(&e, 100);
	tap_ok(t, e.d.srcs && e.d.srcs->ops->in_flight(e.d.srcs) > 0, "reads are in flight");
	remove_device(&e, 1);
	spin_for(&e, 800);
	tap_ok(t, !e.d.srcs, "the base is closed once its last read completed");
	tap_ok(t, fake_count(&e.k, RCOW_CMD_FILL_DONE) == 0 && cow_extent_is(&e, 0, false),
	       "the removed device's fault is neither answered nor written");
	env_fini(&e);
}

/* The same with a file base: several reads finish in one batch. */
static void test_remove_file_inflight(struct tap *t)
{
	char base[PATH_MAX], uri[PATH_MAX + 16];
	struct env e;
	int fd;

	if (env_init(&e, t, 64)) {
		tap_ok(t, false, "set up");
		env_fini(&e);
		return;
	}
	snprintf(base, sizeof(base), "%s/base.img", e.dir);
	snprintf(uri, sizeof(uri), "file://%s", base);
	fd = open(base, O_RDWR | O_CREAT, 0600);
	if (fd >= 0) {
		static unsigned char blk[EXT_BYTES];

		memset(blk, 0xab, sizeof(blk));
		for (int i = 0; i < 64; i++)
			if (write(fd, blk, sizeof(blk)) != (ssize_t)sizeof(blk))
				break;
		close(fd);
	}
	add_device(&e, 1, uri);
	fake_send_fault(&e.d, 1, 1, 0, 8);
	turn(&e, 0);		/* submitted to the readers */
	usleep(100 * 1000);	/* ... which finish them all */
	remove_device(&e, 1);
	spin_for(&e, 300);
	tap_ok(t, !e.d.srcs, "the file base is closed after its last reads");
	tap_ok(t, fake_count(&e.k, RCOW_CMD_FILL_DONE) == 0, "nothing answered for the removed device");
	env_fini(&e);
}

static void nothing(void *ctx, struct xfer *x)
{
	(void)ctx;
	(void)x;
}

/*
 * The pool's eventfd is readable exactly while finished xfers wait to be
 * collected; a readable eventfd with nothing to collect makes the loop
 * spin (writer_reap() returns early when nothing is outstanding).
 */
static void test_pool_eventfd(struct tap *t)
{
	struct xfer x[4];
	struct pool *p;
	int bad = 0, rounds = 20000;

	if (pool_start(&p, "test", 4, nothing, NULL)) {
		tap_ok(t, false, "start a pool");
		return;
	}
	for (int r = 0; r < rounds && !bad; r++) {
		int got = 0;

		memset(x, 0, sizeof(x));
		for (int i = 0; i < 4; i++)
			pool_submit(p, &x[i]);
		while (got < 4)		/* collect as eagerly as a busy loop would */
			for (struct xfer *y = pool_collect(p); y; y = y->done_next)
				got++;
		{
			struct pollfd pfd = { .fd = pool_fd(p), .events = POLLIN };

			if (poll(&pfd, 1, 0) > 0)
				bad = r + 1;
		}
	}
	tap_ok(t, !bad, "eventfd not readable once everything was collected (%s)",
	       bad ? "readable with nothing left: the loop would spin" : "20000 rounds");
	pool_stop(p, true);
}

/* An export too large for the block status table: served without it, closed cleanly. */
static void test_huge_export(struct tap *t)
{
	const char *args[] = { "null", "size=9223372036854775807", NULL };
	const struct fake_answer *a;
	struct env e;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 16) || nbdkit_start(&e, args) || add_device(&e, 1, e.uri)) {
		tap_ok(t, false, "set up nbdkit null of 2^63-1 bytes and a device");
		env_fini(&e);
		return;
	}
	fake_send_fault(&e.d, 1, 1, 3, 1);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 5000);
	tap_ok(t, a && a->status == 0 && cow_extent_is(&e, 3, false),
	       "a fault on a 2^63-1 byte export is filled");
	remove_device(&e, 1);
	spin_for(&e, 100);
	tap_ok(t, !e.d.srcs, "its source closes without a crash");
	env_fini(&e);
}

/*
 * The NBD server comes back with an export of another size: that is not
 * the image the COW device was made from.  Faults fail with EIO; nothing
 * is written.
 */
static void test_reconnect_size(struct tap *t)
{
	const char *big[] = { "pattern", "size=8M", NULL };
	const char *small[] = { "pattern", "size=2M", NULL };
	const struct fake_answer *a;
	struct env e;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 128) || nbdkit_start(&e, big) || add_device(&e, 1, e.uri)) {
		tap_ok(t, false, "set up nbdkit pattern of 8 MiB and a device");
		env_fini(&e);
		return;
	}
	fake_send_fault(&e.d, 1, 1, 0, 1);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 5000);
	tap_ok(t, a && a->status == 0, "served from the 8 MiB export");
	nbdkit_stop(&e);
	spin_for(&e, 200);
	if (nbdkit_start(&e, small)) {
		tap_ok(t, false, "restart nbdkit with 2 MiB");
		env_fini(&e);
		return;
	}
	fake_send_fault(&e.d, 1, 2, 100, 1);	/* past the new end */
	fake_send_fault(&e.d, 1, 3, 10, 1);	/* within it */
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 2, 5000);
	tap_ok(t, a && a->status == EIO, "a fault after the export changed size fails with EIO (%s)",
	       a ? strerror((int)a->status) : "no answer");
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 3, 5000);
	tap_ok(t, a && a->status == EIO, "also within the smaller export (%s)",
	       a ? strerror((int)a->status) : "no answer");
	tap_ok(t, cow_extent_is(&e, 100, false) && cow_extent_is(&e, 10, false),
	       "nothing was written to the COW device");
	env_fini(&e);
}

/* A file base that shrank: EIO, never zeroes in the COW device. */
static void test_file_shrink(struct tap *t)
{
	char base[PATH_MAX], uri[PATH_MAX + 16];
	const struct fake_answer *a;
	struct env e;
	int fd = -1;

	if (env_init(&e, t, 64)) {
		tap_ok(t, false, "set up");
		env_fini(&e);
		return;
	}
	snprintf(base, sizeof(base), "%s/base.img", e.dir);
	snprintf(uri, sizeof(uri), "file://%s", base);
	fd = open(base, O_RDWR | O_CREAT, 0600);
	if (fd >= 0) {
		static unsigned char blk[EXT_BYTES];

		memset(blk, 0xab, sizeof(blk));
		for (int i = 0; i < 64; i++)
			if (write(fd, blk, sizeof(blk)) != (ssize_t)sizeof(blk))
				break;
	}
	add_device(&e, 1, uri);
	fake_send_fault(&e.d, 1, 1, 0, 1);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 5000);
	tap_ok(t, a && a->status == 0, "served from the file base");
	if (fd < 0 || ftruncate(fd, 16 * EXT_BYTES) < 0)
		tap_diag(t, "cannot shrink the base: %s", strerror(errno));
	fake_send_fault(&e.d, 1, 2, 40, 1);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 2, 5000);
	tap_ok(t, a && a->status == EIO, "a fault past the shrunk end fails with EIO (%s)",
	       a ? strerror((int)a->status) : "no answer");
	tap_ok(t, cow_extent_is(&e, 40, false), "no zeroes were written for it");
	if (fd >= 0)
		close(fd);
	env_fini(&e);
}

static int make_file_base(const char *path, int fill, uint64_t extents)
{
	static unsigned char blk[EXT_BYTES];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	memset(blk, fill, sizeof(blk));
	for (uint64_t i = 0; i < extents; i++)
		if (write(fd, blk, sizeof(blk)) != (ssize_t)sizeof(blk)) {
			close(fd);
			return -1;
		}
	return close(fd);
}

/* A 16-extent file base <name> of <fill> bytes in the test's directory; its file:// URI in uri. */
static int file_base_uri(const struct env *e, const char *name, int fill, char *uri, size_t len)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", e->dir, name);
	snprintf(uri, len, "file://%s", path);
	return make_file_base(path, fill, 16);
}

static unsigned int count_srcs(const struct daemon *d)
{
	unsigned int n = 0;

	for (const struct src *s = d->srcs; s; s = s->next)
		n++;
	return n;
}

/*
 * After an overflow the device list is read again (rcow_nl_helper's
 * resync around the dump): a device missing from it lost its
 * DEVICE_REMOVE and must be forgotten, its base and COW device closed;
 * the others keep being served.
 */
static void test_resync(struct tap *t)
{
	char ua[PATH_MAX + 16], ub[PATH_MAX + 16];
	struct rcow_device_info info;
	const struct fake_answer *x;
	struct env e;

	if (env_init(&e, t, 16)) {
		tap_ok(t, false, "set up");
		env_fini(&e);
		return;
	}
	file_base_uri(&e, "a.img", 0xaa, ua, sizeof(ua));
	file_base_uri(&e, "b.img", 0xbb, ub, sizeof(ub));
	add_device(&e, 1, ua);
	add_device(&e, 2, ub);
	fake_send_fault(&e.d, 1, 1, 0, 1);
	fake_send_fault(&e.d, 2, 2, 1, 1);
	x = wait_answer(&e, RCOW_CMD_FILL_DONE, 2, 2, 5000);
	tap_ok(t, x && x->status == 0 && wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 5000) &&
	       count_srcs(&e.d) == 2, "two devices on two bases served");
	/* the re-read list has device 1 only */
	engine_resync(&e.d, true);
	dev_info(&e, &info, 1, ua);
	engine_add_device(&info, &e.d);
	engine_resync(&e.d, false);
	spin_for(&e, 100);
	tap_ok(t, count_srcs(&e.d) == 1, "the base of the vanished device is closed (%u open)",
	       count_srcs(&e.d));
	fake_send_fault(&e.d, 2, 3, 2, 1);
	x = wait_answer(&e, RCOW_CMD_FILL_DONE, 2, 3, 2000);
	tap_ok(t, x && x->status == ENODEV, "a fault for it is refused with ENODEV (%s)",
	       x ? strerror((int)x->status) : "no answer");
	fake_send_fault(&e.d, 1, 4, 3, 1);
	x = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 4, 5000);
	tap_ok(t, x && x->status == 0, "the device still listed is served");
	env_fini(&e);
}

/*
 * A COW device that hangs stalls only its own device: removing it does
 * not wait for its write in progress, another device is served meanwhile,
 * and a device that replaces it on the same COW device (a reload) writes
 * only after that write is over.
 */
static void note_writing(struct fake_kernel *k, const struct rcow_quiesce *q)
{
	(void)q;
	*(int *)k->data = slow_cow_in_progress();
}

static void test_hung_cow(struct tap *t)
{
	int writing = -1;
	char ua[PATH_MAX + 16];
	struct rcow_device_info info;
	const struct fake_answer *x;
	uint64_t t0, took;
	struct env e;

	if (env_init(&e, t, 16)) {
		tap_ok(t, false, "set up");
		env_fini(&e);
		return;
	}
	file_base_uri(&e, "a.img", 0xaa, ua, sizeof(ua));
	add_device(&e, 1, ua);		/* COW 7:1 */
	slow_cow_set(e.k.cow_fd, 1500, 1);
	fake_send_fault(&e.d, 1, 1, 0, 1);
	for (uint64_t until = now_ms() + 3000; !slow_cow_in_progress() && now_ms() < until;)
		turn(&e, 5);
	t0 = now_ms();
	remove_device(&e, 1);
	took = now_ms() - t0;
	tap_ok(t, slow_cow_in_progress() == 1 && took < 300,
	       "removing a device does not wait for its hung COW write (%llu ms)",
	       (unsigned long long)took);
	/* a QUIESCE for it now (a late one) waits for that write */
	e.k.on_quiesce_done = note_writing;
	e.k.data = &writing;
	fake_send_quiesce(&e.d, 1, 11);
	add_device(&e, 2, ua);		/* COW 7:2, not slowed */
	fake_send_fault(&e.d, 2, 2, 1, 1);
	x = wait_answer(&e, RCOW_CMD_FILL_DONE, 2, 2, 1000);
	tap_ok(t, x && x->status == 0 && slow_cow_in_progress() == 1,
	       "another device is served while that write hangs");
	/* a reload: a new device id over COW 7:1 */
	dev_info(&e, &info, 3, ua);
	info.cow_minor = 1;
	fake_send_device(&e.d, RCOW_CMD_DEVICE_ADD, &info);
	fake_send_fault(&e.d, 3, 3, 0, 1);
	x = wait_answer(&e, RCOW_CMD_FILL_DONE, 3, 3, 5000);
	tap_ok(t, x && x->status == 0 && slow_cow_in_progress() == 0 && slow_cow_writes() == 1,
	       "the device replacing it on the same COW device writes after that write (%s)",
	       !x ? "no answer" : slow_cow_writes() ? "after" : "before it was over");
	x = wait_answer(&e, RCOW_CMD_QUIESCE_DONE, 1, 11, 3000);
	tap_ok(t, x && writing == 0,
	       "a QUIESCE for the removed device is answered once its write is over (%s)",
	       !x ? "no answer" : writing ? "before" : "after");
	writing = -1;

	/*
	 * Again, and the new device is suspended at once: its QUIESCE_DONE
	 * waits for the write of the device it replaced, which goes to the
	 * same COW device.
	 */
	slow_cow_set(e.k.cow_fd, 1500, 1);	/* device 3's */
	fake_send_fault(&e.d, 3, 4, 5, 1);
	for (uint64_t until = now_ms() + 3000; !slow_cow_in_progress() && now_ms() < until;)
		turn(&e, 5);
	dev_info(&e, &info, 4, ua);
	info.cow_minor = 1;
	fake_send_device(&e.d, RCOW_CMD_DEVICE_ADD, &info);
	e.k.on_quiesce_done = note_writing;
	e.k.data = &writing;
	fake_send_quiesce(&e.d, 4, 44);
	x = wait_answer(&e, RCOW_CMD_QUIESCE_DONE, 4, 44, 5000);
	tap_ok(t, x && writing == 0,
	       "QUIESCE_DONE waits for a replaced device's write to the same COW device (%d in progress)",
	       writing);
	slow_cow_set(-1, 0, 0);
	env_fini(&e);
}

/* A scheme in upper case is a valid URI: it must reach libnbd in the form it accepts. */
static void test_uri_case(struct tap *t)
{
	const char *args[] = { "pattern", "size=8M", NULL };
	const struct fake_answer *a;
	char uri[PATH_MAX + 32];
	struct env e;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 64) || nbdkit_start(&e, args)) {
		tap_ok(t, false, "set up nbdkit");
		env_fini(&e);
		return;
	}
	snprintf(uri, sizeof(uri), "NBD+UNIX:///?socket=%s", e.sock);
	add_device(&e, 1, uri);
	fake_send_fault(&e.d, 1, 1, 2, 1);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 3000);
	tap_ok(t, a && a->status == 0 && cow_extent_is(&e, 2, true),
	       "a device over NBD+UNIX:// is served (%s)",
	       a ? strerror((int)a->status) : "no answer");
	env_fini(&e);
}

static bool file_has(const char *path, const char *want)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	return n >= 0 && !strcmp(buf, want);
}

static void put_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0)
			perror(path);
		close(fd);
	}
}

/*
 * The ready and stats files: never written through a symbolic link, never
 * over a file that is not the daemon's; a leftover of its own is replaced.
 */
static void test_safe_files(struct tap *t)
{
	char *dir = tap_tmpdir(t), victim[PATH_MAX], p[PATH_MAX], why[PATH_MAX + 200];
	int fd;

	if (!dir) {
		tap_ok(t, false, "temporary directory");
		return;
	}
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	put_file(victim, "precious");

	snprintf(p, sizeof(p), "%s/ready", dir);
	fd = safe_create(p, 0644, why, sizeof(why));
	tap_ok(t, fd >= 0 && access(p, F_OK) == 0, "a fresh ready file is created");
	if (fd >= 0)
		close(fd);
	put_file(p, "old run");
	fd = safe_create(p, 0644, why, sizeof(why));
	tap_ok(t, fd >= 0 && file_has(p, ""), "a leftover of our own is replaced");
	if (fd >= 0)
		close(fd);

	snprintf(p, sizeof(p), "%s/link", dir);
	if (symlink(victim, p) < 0)
		tap_diag(t, "symlink: %s", strerror(errno));
	fd = safe_create(p, 0644, why, sizeof(why));
	tap_ok(t, fd == -ELOOP && file_has(victim, "precious"),
	       "a symbolic link is not followed by safe_create (%s)", why);
	if (fd >= 0)
		close(fd);
	tap_ok(t, safe_replace(p, "x=1\n", 4, 0644, why, sizeof(why)) == -ELOOP &&
	       file_has(victim, "precious"), "nor by safe_replace (%s)", why);

	snprintf(p, sizeof(p), "%s/stats", dir);
	tap_ok(t, safe_replace(p, "x=1\n", 4, 0644, why, sizeof(why)) == 0 && file_has(p, "x=1\n") &&
	       safe_replace(p, "x=2\n", 4, 0644, why, sizeof(why)) == 0 && file_has(p, "x=2\n"),
	       "the stats file is written and rewritten");

	if (geteuid() == 0) {
		snprintf(p, sizeof(p), "%s/foreign", dir);
		put_file(p, "theirs");
		if (chown(p, 12345, 12345) < 0)
			tap_diag(t, "chown: %s", strerror(errno));
		fd = safe_create(p, 0644, why, sizeof(why));
		tap_ok(t, fd == -EEXIST && file_has(p, "theirs"),
		       "a file of another owner is not replaced (%s)", why);
		if (fd >= 0)
			close(fd);
		tap_ok(t, safe_replace(p, "x=1\n", 4, 0644, why, sizeof(why)) == -EEXIST &&
		       file_has(p, "theirs"), "nor by safe_replace");
	} else {
		tap_skip(t, "not root", "a file of another owner is not replaced");
		tap_skip(t, "not root", "nor by safe_replace");
	}
	tap_rmtree(dir);
	free(dir);
}

/*
 * Many bases at once: 40 NBD bases (one export name each, four
 * connections each: 160 sockets) are all polled and all served.  A fixed
 * poll set of 128 left the oldest bases' sockets out and their faults
 * unanswered.
 */
static void test_many_bases(struct tap *t)
{
	const char *args[] = { "pattern", "size=8M", NULL };
	enum { NBASES = 40 };
	char uri[PATH_MAX + 64];
	unsigned int served = 0;
	struct env e;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 64) || nbdkit_start(&e, args)) {
		tap_ok(t, false, "set up nbdkit");
		env_fini(&e);
		return;
	}
	for (uint32_t i = 1; i <= NBASES; i++) {
		snprintf(uri, sizeof(uri), "nbd+unix:///base%u?socket=%s", i, e.sock);
		add_device(&e, i, uri);
	}
	spin_for(&e, 500);	/* all connected, four connections each */
	for (uint32_t i = 1; i <= NBASES; i++)
		fake_send_fault(&e.d, i, 100 + i, i, 1);
	for (uint32_t i = 1; i <= NBASES; i++) {
		const struct fake_answer *a = wait_answer(&e, RCOW_CMD_FILL_DONE, i, 100 + i, 5000);

		if (a && a->status == 0 && cow_extent_is(&e, i, true))
			served++;
	}
	tap_ok(t, count_srcs(&e.d) == NBASES, "%u bases open", count_srcs(&e.d));
	tap_ok(t, served == NBASES, "every base is served (%u of %u)", served, NBASES);
	env_fini(&e);
}

/*
 * A table loaded but not resumed (RCOW_DEV_F_INACTIVE) over the same COW
 * device as the live one: the live device keeps being served, the new one
 * is left alone (its base not even opened) until it is resumed; then it
 * replaces the old one.
 */
static void test_inactive(struct tap *t)
{
	char ua[PATH_MAX + 16], ub[PATH_MAX + 16];
	struct rcow_device_info info;
	const struct fake_answer *x;
	struct env e;

	if (env_init(&e, t, 16)) {
		tap_ok(t, false, "set up");
		env_fini(&e);
		return;
	}
	file_base_uri(&e, "a.img", 0xaa, ua, sizeof(ua));
	file_base_uri(&e, "b.img", 0xbb, ub, sizeof(ub));
	add_device(&e, 1, ua);			/* live, COW 7:1 */
	dev_info(&e, &info, 2, ub);		/* loaded over 7:1, not resumed */
	info.cow_minor = 1;
	info.flags = RCOW_DEV_F_INACTIVE;
	fake_send_device(&e.d, RCOW_CMD_DEVICE_ADD, &info);
	spin_for(&e, 50);
	fake_send_fault(&e.d, 1, 1, 0, 1);
	x = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 3000);
	tap_ok(t, x && x->status == 0, "the live device is still served (%s)",
	       x ? strerror((int)x->status) : "no answer");
	tap_ok(t, count_srcs(&e.d) == 1, "the inactive device's base is not opened (%u open)",
	       count_srcs(&e.d));
	/* resumed: the kernel now sends its faults */
	fake_send_fault(&e.d, 2, 2, 1, 1);
	x = wait_answer(&e, RCOW_CMD_FILL_DONE, 2, 2, 3000);
	tap_ok(t, x && x->status == 0, "once it faults it is served");
	fake_send_fault(&e.d, 1, 3, 2, 1);
	x = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 3, 3000);
	tap_ok(t, x && x->status == ENODEV, "and has replaced the old device (%s)",
	       x ? strerror((int)x->status) : "no answer");
	env_fini(&e);
}

/* ---- snapshot commit ------------------------------------------------------------ */

#define CNR 64u				/* extents of the commit tests' device */
#define CDEV_BYTES (CNR * EXT_BYTES - 32768u)	/* the last extent is half an extent */

/* The 8-byte words of extent ext in version salt (0: zeroes). */
static uint64_t cword(uint64_t ext, unsigned int salt, size_t i)
{
	return salt ? (uint64_t)salt << 56 | ext << 32 | (uint64_t)i : 0;
}

/* Extent ext of version salt into the COW file at path. */
static int fill_path(const char *path, uint64_t ext, unsigned int salt)
{
	static uint64_t buf[EXT_BYTES / 8];
	int fd = open(path, O_WRONLY);
	ssize_t n;

	for (size_t i = 0; i < EXT_BYTES / 8; i++)
		buf[i] = cword(ext, salt, i);
	if (fd < 0)
		return -1;
	n = pwrite(fd, buf, EXT_BYTES, (off_t)(DATA_OFFSET * 512 + ext * EXT_BYTES));
	close(fd);
	return n == (ssize_t)EXT_BYTES ? 0 : -1;
}

static int fill_cow(struct env *e, uint64_t ext, unsigned int salt)
{
	return fill_path(e->cow, ext, salt);
}

/* Put extent ext of version salt into an image of the device (up to its end). */
static void expect_extent(unsigned char *img, uint64_t ext, unsigned int salt)
{
	uint64_t off = ext * EXT_BYTES;

	for (size_t i = 0; i < EXT_BYTES / 8 && off + i * 8 < CDEV_BYTES; i++) {
		uint64_t w = cword(ext, salt, i);

		memcpy(img + off + i * 8, &w, 8);
	}
}

struct cenv {
	struct env e;
	struct rcow_device_info info;
	char spool[PATH_MAX];
	char tlog[PATH_MAX];
	char tfile[PATH_MAX];
	unsigned char *want;		/* the image the target must hold */
	unsigned int guest_salt;	/* written over preserved extents */
};

static int cenv_init(struct cenv *c, struct tap *t)
{
	char ua[PATH_MAX + 16];

	memset(c, 0, sizeof(*c));
	if (env_init(&c->e, t, CNR))
		return -1;
	snprintf(c->spool, sizeof(c->spool), "%s/spool", c->e.dir);
	snprintf(c->tlog, sizeof(c->tlog), "%s/target.log", c->e.dir);
	snprintf(c->tfile, sizeof(c->tfile), "%s/target.img", c->e.dir);
	c->e.d.cfg.spool_dir = strdup(c->spool);
	c->want = calloc(1, CNR * EXT_BYTES);
	if (!c->e.d.cfg.spool_dir || !c->want || file_base_uri(&c->e, "base.img", 0x11, ua, sizeof(ua)))
		return -1;
	dev_info(&c->e, &c->info, 1, ua);
	c->info.dev_sectors = CDEV_BYTES / 512;
	return fake_send_device(&c->e.d, RCOW_CMD_DEVICE_ADD, &c->info);
}

static void cenv_fini(struct cenv *c)
{
	free(c->want);
	env_fini(&c->e);
}

/* Freeze extents v[0..n) as commit gen, their COW content version salt. */
static int cfreeze(struct cenv *c, uint64_t gen, const uint64_t *v, size_t n, unsigned int salt)
{
	memset(c->want, 0, CNR * EXT_BYTES);
	for (size_t i = 0; i < n; i++) {
		if (fill_cow(&c->e, v[i], salt))
			return -1;
		expect_extent(c->want, v[i], salt);
	}
	return fake_commit_begin(&c->e.k, &c->info, gen, c->e.uri, v, n);
}

static size_t range(uint64_t *v, size_t n, uint64_t first, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++)
		v[n++] = first + i;
	return n;
}

static const struct fake_answer *wait_end(struct cenv *c, uint64_t gen, int ms)
{
	return wait_answer(&c->e, RCOW_CMD_COMMIT_END, 1, gen, ms);
}

static bool read_target_nbd(const char *uri, unsigned char *buf, size_t len)
{
	struct nbd_handle *h = nbd_create();
	bool ok = h && nbd_connect_uri(h, uri) == 0 && nbd_pread(h, buf, len, 0, 0) == 0;

	if (h) {
		nbd_shutdown(h, 0);
		nbd_close(h);
	}
	return ok;
}

static bool read_target_file(const char *path, unsigned char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	bool ok = fd >= 0 && pread(fd, buf, len, 0) == (ssize_t)len;

	if (fd >= 0)
		close(fd);
	return ok;
}

/* Compare the target with c->want; the first differing extent in *bad. */
static bool target_ok(struct cenv *c, bool file, long long *bad)
{
	unsigned char *got = calloc(1, CNR * EXT_BYTES);
	bool ok;

	*bad = -1;
	ok = got && (file ? read_target_file(c->tfile, got, CNR * EXT_BYTES) :
			    read_target_nbd(c->e.uri, got, CNR * EXT_BYTES));
	if (ok)
		for (uint64_t x = 0; x < CNR; x++)
			if (memcmp(got + x * EXT_BYTES, c->want + x * EXT_BYTES, EXT_BYTES)) {
				*bad = (long long)x;
				ok = false;
				break;
			}
	free(got);
	return ok;
}

static unsigned int count_in_file(const char *path, const char *what)
{
	char *buf = malloc(1 << 20);
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 || !buf ? -1 : read(fd, buf, (1 << 20) - 1);
	unsigned int k = 0;

	if (n > 0) {
		buf[n] = '\0';
		for (char *p = buf; (p = strstr(p, what)); p++)
			k++;
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return k;
}

static unsigned int spool_files(struct cenv *c)
{
	char cmd[PATH_MAX + 64];
	unsigned int n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ls -1 '%s' 2>/dev/null", c->spool);
	f = popen(cmd, "r");
	if (!f)
		return 0;
	while (fgets(cmd, sizeof(cmd), f))
		n++;
	pclose(f);
	return n;
}

/* The PRESERVED mark let the guest write go on: it overwrites those extents at once. */
static void guest_writes(struct fake_kernel *k, uint64_t first, uint32_t count)
{
	struct cenv *c = k->data;

	for (uint64_t x = first; x < first + count; x++)
		fill_cow(&c->e, x, c->guest_salt);
}

/*
 * A frozen set with data, zero and short extents to an nbdkit memory
 * export: the target holds exactly the frozen content, zero extents go as
 * write-zeroes, marks are batched, and an EAGAIN to COMMIT_END makes the
 * daemon read the upload set again and finish.
 */
static void test_commit_upload(struct tap *t)
{
	char logarg[PATH_MAX + 16];
	const char *args[] = { "--filter=log", "memory", "size=4M", logarg, NULL };
	uint64_t v[CNR];
	size_t n = 0, ndata;
	const struct fake_answer *a;
	long long bad;
	struct cenv c;

	NEED_NBDKIT(t);
	if (cenv_init(&c, t)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	snprintf(logarg, sizeof(logarg), "logfile=%s", c.tlog);
	n = range(v, n, 0, 10);
	n = range(v, n, 20, 1);
	n = range(v, n, 30, 4);
	n = range(v, n, CNR - 1, 1);
	ndata = n;
	n = range(v, n, 10, 5);		/* left zero on the COW device */
	fill_cow(&c.e, 40, 3);		/* written, not frozen: must not go */
	if (nbdkit_start(&c.e, args) || cfreeze(&c, 1, v, ndata, 1) ||
	    fake_commit_begin(&c.e.k, &c.info, 1, c.e.uri, v, n)) {
		tap_ok(t, false, "set up nbdkit memory with the log filter, freeze %zu extents", n);
		cenv_fini(&c);
		return;
	}
	c.e.k.c.eagain = 1;
	c.e.k.c.eagain_ext = 5;
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	a = wait_end(&c, 1, 15000);
	tap_ok(t, a && a->status == 0, "COMMIT_END with status 0 (%s%s%s)",
	       a ? strerror((int)a->status) : "no COMMIT_END", a && a->msg[0] ? ": " : "",
	       a ? a->msg : "");
	tap_ok(t, fake_commit_left(&c.e.k) == 0, "nothing left in the upload set");
	tap_ok(t, c.e.k.c.end_tries == 2,
	       "an EAGAIN to COMMIT_END(0) made it read the set again and finish (%u COMMIT_ENDs)",
	       c.e.k.c.end_tries);
	tap_ok(t, target_ok(&c, false, &bad),
	       "the target holds exactly the frozen extents, short last one included (first difference: extent %lld)",
	       bad);
	tap_ok(t, count_in_file(c.tlog, " Zero id=") == 5,
	       "the 5 zero extents went as write-zeroes (%u)", count_in_file(c.tlog, " Zero id="));
	tap_ok(t, count_in_file(c.tlog, " Write id=") == ndata + 1,
	       "data went as %zu writes: the data extents and the one put back (%u)", ndata + 1,
	       count_in_file(c.tlog, " Write id="));
	tap_ok(t, count_in_file(c.tlog, " Flush id=") >= 1, "the target was flushed (%u)",
	       count_in_file(c.tlog, " Flush id="));
	tap_ok(t, fake_count_mark(&c.e.k, RCOW_MARK_UPLOADED) < n,
	       "UPLOADED marks are batched (%zu marks for %zu extents)",
	       fake_count_mark(&c.e.k, RCOW_MARK_UPLOADED), n + 1);
	/* the commit's threads end and its spool goes: 5 s, for a loaded host under TSan */
	for (uint64_t end = now_ms() + 5000; (c.e.d.commits || spool_files(&c)) && now_ms() < end;)
		turn(&c.e, 20);
	tap_ok(t, !c.e.d.commits && spool_files(&c) == 0, "the commit and its spool are gone");
	cenv_fini(&c);
}

/*
 * PRESERVE before the upload got to the extents: the old content goes to
 * the spool, the guest overwrites the COW extents right after the mark,
 * and the target still gets the frozen content.
 */
static void test_commit_preserve(struct tap *t)
{
	const char *args[] = { "--filter=delay", "memory", "size=4M", "wdelay=100ms", NULL };
	uint64_t v[CNR];
	size_t n = range(v, 0, 0, 32);
	const struct fake_answer *a;
	long long bad;
	struct cenv c;
	bool cow_new = true;

	NEED_NBDKIT(t);
	if (cenv_init(&c, t) || nbdkit_start(&c.e, args) || cfreeze(&c, 1, v, n, 1)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	c.e.d.cfg.global.max_in_flight = 4;
	c.e.d.no_preserve_ahead = true;		/* PRESERVE requests only */
	c.guest_salt = 2;
	c.e.k.data = &c;
	c.e.k.c.on_preserved = guest_writes;
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_PRESERVE, 8, 4);
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_PRESERVE, 20, 1);
	spin_for(&c.e, 300);
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_PRESERVE, 28, 2);
	a = wait_end(&c, 1, 15000);
	tap_ok(t, a && a->status == 0, "COMMIT_END with status 0 (%s %s)",
	       a ? strerror((int)a->status) : "no COMMIT_END", a ? a->msg : "");
	tap_ok(t, fake_count_mark(&c.e.k, RCOW_MARK_PRESERVED) >= 1 &&
	       c.e.k.c.preserved_early == 7,
	       "the 7 extents were marked preserved before they were uploaded (%llu)",
	       (unsigned long long)c.e.k.c.preserved_early);
	for (uint64_t x = 8; x < 12; x++)
		cow_new = cow_new && !fill_cow(&c.e, x, 2);	/* (what the guest wrote) */
	tap_ok(t, target_ok(&c, false, &bad),
	       "the target holds the frozen content, not what the guest wrote after the marks (first difference: extent %lld)",
	       bad);
	tap_ok(t, !c.e.d.commits && spool_files(&c) == 0, "the spool is removed at the end");
	cenv_fini(&c);
}

/*
 * The spool file as the test sees it: for every extent, the newest slot
 * whose header is whole, with its data.  Returns the number of slots in the
 * file (its size), or -1.  Layout: spool.h.
 */
#define SPOOL_HDR 4096u
#define SLOT_HDR 64u
#define SLOT_STRIDE (SLOT_HDR + EXT_BYTES)

static long long spool_slots_in_file(struct cenv *c)
{
	char path[PATH_MAX + 64];
	struct stat st;

	snprintf(path, sizeof(path), "%s/dev1-gen1.spool", c->spool);
	if (stat(path, &st) < 0 || (uint64_t)st.st_size < SPOOL_HDR)
		return -1;
	return (long long)(((uint64_t)st.st_size - SPOOL_HDR + SLOT_STRIDE - 1) / SLOT_STRIDE);
}

/*
 * Extent ext's newest whole slot in the spool holds its frozen content
 * (version salt).  -1: no slot for it; 0: it does; 1: it holds other data.
 */
static int spool_holds(struct cenv *c, uint64_t ext, unsigned int salt)
{
	char path[PATH_MAX + 64];
	unsigned char *buf = malloc(SLOT_STRIDE);
	uint64_t best_seq = 0;
	int fd, r = -1;
	long long n = spool_slots_in_file(c);

	snprintf(path, sizeof(path), "%s/dev1-gen1.spool", c->spool);
	fd = open(path, O_RDONLY);
	for (long long i = 0; buf && fd >= 0 && i < n; i++) {
		uint32_t magic, len, data_crc;
		uint64_t sext, seq;

		if (pread(fd, buf, SLOT_STRIDE, (off_t)(SPOOL_HDR + (uint64_t)i * SLOT_STRIDE)) !=
		    (ssize_t)SLOT_STRIDE)
			break;
		memcpy(&magic, buf, 4);
		memcpy(&sext, buf + 16, 8);
		memcpy(&seq, buf + 24, 8);
		memcpy(&len, buf + 32, 4);
		memcpy(&data_crc, buf + 36, 4);
		if (magic != 0x4c535352u || sext != ext || seq <= best_seq || len > EXT_BYTES ||
		    rcow_crc32c(0, buf + SLOT_HDR, len) != data_crc)
			continue;
		best_seq = seq;
		r = 0;
		for (size_t w = 0; w < len / 8; w++) {
			uint64_t x;

			memcpy(&x, buf + SLOT_HDR + w * 8, 8);
			if (x != cword(ext, salt, w)) {
				r = 1;
				break;
			}
		}
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

/*
 * Preserving ahead of the guest: after COMMIT_START and no PRESERVE at
 * all, the daemon copies frozen extents into the spool from the far end of
 * the upload and marks them PRESERVED; each spool copy is the frozen
 * content although the guest overwrites the extent on the COW device at
 * once after its mark; the spool stays under its high-water mark (half of
 * spool_max) and the commit does not fail because of it; a PRESERVE that
 * crosses a mark ahead is answered without copying the overwritten extent
 * again; PRESERVE requests still find room; the target gets the frozen
 * content everywhere.
 */
static void test_commit_ahead(struct tap *t)
{
	const char *args[] = { "--filter=delay", "memory", "size=4M", "wdelay=100ms", NULL };
	uint64_t v[CNR];
	size_t n = range(v, 0, 0, 32);
	const struct fake_answer *a;
	long long bad, most = 0, hw = (long long)((1u << 20) / SLOT_STRIDE / 2);
	struct cenv c;
	uint64_t first_mark = UINT64_MAX, cross = UINT64_MAX, ahead, end;
	unsigned int wrong = 0, checked = 0;
	bool crossed = false;

	NEED_NBDKIT(t);
	if (cenv_init(&c, t) || nbdkit_start(&c.e, args) || cfreeze(&c, 1, v, n, 1)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	c.e.d.cfg.global.max_in_flight = 2;
	c.e.d.cfg.spool_max = 1u << 20;		/* 15 slots: ahead copies stop at 7 */
	/*
	 * Extent reads take 30 ms: a mark sent before its copy is in the spool
	 * would let the fake guest overwrite the extent before it is read.
	 */
	slow_read_set(30, EXT_BYTES);
	c.guest_salt = 2;
	c.e.k.data = &c;
	c.e.k.c.on_preserved = guest_writes;
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	for (end = now_ms() + 5000; c.e.k.c.preserved_early < (uint64_t)hw && now_ms() < end;) {
		turn(&c.e, 5);
		if (spool_slots_in_file(&c) > most)
			most = spool_slots_in_file(&c);
	}
	ahead = c.e.k.c.preserved_early;
	for (size_t i = 0; i < c.e.k.n; i++)
		if (c.e.k.v[i].cmd == RCOW_CMD_COMMIT_MARK && c.e.k.v[i].status == RCOW_MARK_PRESERVED) {
			first_mark = c.e.k.v[i].first + c.e.k.v[i].count - 1;
			break;
		}
	tap_ok(t, ahead >= (uint64_t)hw,
	       "with no PRESERVE request, %llu frozen extents were marked PRESERVED before their upload",
	       (unsigned long long)ahead);
	/* copies ahead are runs read at once: the first one ends at the far end */
	tap_ok(t, first_mark == 31,
	       "the first of them are at the far end of the upload (the first mark ends at extent %lld)",
	       first_mark == UINT64_MAX ? -1ll : (long long)first_mark);
	/* every extent marked, not yet uploaded: its spool copy is the frozen content */
	for (uint64_t x = 0; x < 32; x++) {
		if (fake_commit_bit(c.e.k.c.held, x) || !fake_commit_bit(c.e.k.c.upload, x))
			continue;
		checked++;
		if (spool_holds(&c, x, 1) != 0)
			wrong++;
		if (cross == UINT64_MAX)
			cross = x;
	}
	tap_ok(t, checked > 0 && wrong == 0,
	       "the spool holds the frozen content of the %u extents preserved ahead, not what the guest wrote after the marks (%u differ)",
	       checked, wrong);
	/* a PRESERVE that crossed the mark ahead: the COW extent holds the guest's data now */
	if (cross != UINT64_MAX) {
		fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_PRESERVE, cross, 1);
		spin_for(&c.e, 50);
		crossed = spool_holds(&c, cross, 1) == 0 || !fake_commit_bit(c.e.k.c.upload, cross);
	}
	tap_ok(t, cross != UINT64_MAX && crossed,
	       "a PRESERVE for extent %lld, preserved ahead and overwritten since, does not copy it again",
	       cross == UINT64_MAX ? -1ll : (long long)cross);
	/* PRESERVE requests find room above the high-water mark */
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_PRESERVE, 6, 3);
	for (end = now_ms() + 20000; !fake_find(&c.e.k, RCOW_CMD_COMMIT_END, 1, 1) && now_ms() < end;) {
		turn(&c.e, 5);
		if (spool_slots_in_file(&c) > most)
			most = spool_slots_in_file(&c);
	}
	a = fake_find(&c.e.k, RCOW_CMD_COMMIT_END, 1, 1);
	tap_ok(t, a && a->status == 0, "COMMIT_END with status 0 (%s %s)",
	       a ? strerror((int)a->status) : "no COMMIT_END", a ? a->msg : "");
	tap_ok(t, most <= hw + 3,
	       "the spool never held more than the high-water mark (%lld slots) plus the 3 PRESERVE requests: %lld",
	       hw, most);
	tap_ok(t, c.e.k.c.preserved_early > ahead,
	       "copies ahead went on as uploads freed the spool (%llu extents preserved before upload)",
	       (unsigned long long)c.e.k.c.preserved_early);
	slow_read_set(0, 0);
	tap_ok(t, target_ok(&c, false, &bad),
	       "the target holds the frozen content, not what the guest wrote after the marks (first difference: extent %lld)",
	       bad);
	spin_for(&c.e, 100);
	tap_ok(t, !c.e.d.commits && spool_files(&c) == 0, "the spool is removed at the end");
	cenv_fini(&c);
}

/* A spool that cannot take every PRESERVE: COMMIT_END ENOSPC saying so. */
static void test_commit_spool_full(struct tap *t)
{
	uint64_t v[CNR];
	size_t n = range(v, 0, 0, 40);
	const struct fake_answer *a;
	char want[PATH_MAX + 64];
	struct cenv c;

	if (cenv_init(&c, t) || cfreeze(&c, 1, v, n, 1)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	c.e.d.cfg.spool_max = 1u << 20;		/* 15 slots of 64 KiB */
	/* no target server: nothing is uploaded meanwhile */
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_PRESERVE, 0, 20);
	a = wait_end(&c, 1, 5000);
	snprintf(want, sizeof(want), "spool full (spool_max 1048576 bytes in %s)", c.spool);
	tap_ok(t, a && a->status == ENOSPC, "COMMIT_END with ENOSPC (%s)",
	       a ? strerror((int)a->status) : "no COMMIT_END");
	tap_ok(t, a && strstr(a->msg, want), "its message says why: '%s'", a ? a->msg : "");
	tap_ok(t, fake_count_mark(&c.e.k, RCOW_MARK_UPLOADED) == 0, "nothing was marked uploaded");
	spin_for(&c.e, 100);
	tap_ok(t, !c.e.d.commits && spool_files(&c) == 0, "the spool is removed");
	cenv_fini(&c);
}

/* Read-only and too small targets are refused with the right status. */
static void test_commit_refuse(struct tap *t)
{
	const char *ro[] = { "-r", "memory", "size=4M", NULL };
	const char *small[] = { "memory", "size=1M", NULL };
	uint64_t v[CNR];
	size_t n = range(v, 0, 0, 8);
	const struct fake_answer *a;
	struct cenv c;

	NEED_NBDKIT(t);
	if (cenv_init(&c, t) || nbdkit_start(&c.e, ro) || cfreeze(&c, 1, v, n, 1)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	a = wait_end(&c, 1, 5000);
	tap_ok(t, a && a->status == EROFS && strstr(a->msg, "read-only"),
	       "a read-only target: COMMIT_END EROFS (%s: %s)",
	       a ? strerror((int)a->status) : "no COMMIT_END", a ? a->msg : "");
	nbdkit_stop(&c.e);
	if (nbdkit_start(&c.e, small) || cfreeze(&c, 2, v, n, 1)) {
		tap_ok(t, false, "restart nbdkit with a 1 MiB export");
		cenv_fini(&c);
		return;
	}
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	a = wait_end(&c, 2, 5000);
	tap_ok(t, a && a->status == EFBIG && strstr(a->msg, "fewer than the device"),
	       "a target smaller than the device: COMMIT_END EFBIG (%s: %s)",
	       a ? strerror((int)a->status) : "no COMMIT_END", a ? a->msg : "");
	tap_ok(t, fake_count_mark(&c.e.k, RCOW_MARK_UPLOADED) == 0, "nothing was uploaded");
	cenv_fini(&c);
}

static int make_target_file(struct cenv *c)
{
	int fd = open(c->tfile, O_RDWR | O_CREAT | O_TRUNC, 0600);
	int r = fd < 0 || ftruncate(fd, CNR * EXT_BYTES) < 0 ? -1 : 0;

	if (fd >= 0)
		close(fd);
	return r;
}

/*
 * The target down: at the start (it comes up 1.5 s later), and in the
 * middle of the upload (killed, back 0.7 s later): the commit completes
 * with every extent right.
 */
static void test_commit_retry(struct tap *t)
{
	const char *mem[] = { "memory", "size=4M", NULL };
	const char *slow[] = { "--filter=delay", "file", NULL, "wdelay=100ms", NULL };
	uint64_t v[CNR];
	size_t n = range(v, 0, 0, 48);
	const struct fake_answer *a;
	long long bad;
	struct cenv c;

	NEED_NBDKIT(t);
	if (cenv_init(&c, t) || cfreeze(&c, 1, v, n, 1) || make_target_file(&c)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	slow[2] = c.tfile;
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	spin_for(&c.e, 1500);
	tap_ok(t, !wait_end(&c, 1, 0), "no COMMIT_END while the target is down");
	if (nbdkit_start(&c.e, mem)) {
		tap_ok(t, false, "start nbdkit");
		cenv_fini(&c);
		return;
	}
	a = wait_end(&c, 1, 10000);
	tap_ok(t, a && a->status == 0, "completes once the target is up (%s %s)",
	       a ? strerror((int)a->status) : "no COMMIT_END", a ? a->msg : "");
	tap_ok(t, target_ok(&c, false, &bad), "the target is right (first difference: extent %lld)",
	       bad);
	nbdkit_stop(&c.e);

	/* gen 2: killed in the middle of the upload */
	c.e.d.cfg.global.max_in_flight = 4;
	if (nbdkit_start(&c.e, slow) || cfreeze(&c, 2, v, n, 4)) {
		tap_ok(t, false, "start nbdkit (file, 100 ms write delay)");
		cenv_fini(&c);
		return;
	}
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	a = wait_answer(&c.e, RCOW_CMD_COMMIT_MARK, 1, 2, 5000);
	nbdkit_stop(&c.e);
	tap_diag(t, "target killed with %llu of %zu extents uploaded",
		 (unsigned long long)c.e.k.c.uploaded, n);
	tap_ok(t, a && c.e.k.c.uploaded < n, "the target was killed mid-upload");
	spin_for(&c.e, 700);
	tap_ok(t, !wait_end(&c, 2, 0), "no COMMIT_END while it is down");
	if (nbdkit_start(&c.e, slow)) {
		tap_ok(t, false, "restart nbdkit");
		cenv_fini(&c);
		return;
	}
	a = wait_end(&c, 2, 20000);
	tap_ok(t, a && a->status == 0, "completes after the reconnection (%s %s)",
	       a ? strerror((int)a->status) : "no COMMIT_END", a ? a->msg : "");
	tap_ok(t, target_ok(&c, true, &bad),
	       "the target file is right (first difference: extent %lld)", bad);
	cenv_fini(&c);
}

/* The target down for longer than commit_retry_timeout: the commit fails, saying so. */
static void test_commit_timeout(struct tap *t)
{
	uint64_t v[CNR];
	size_t n = range(v, 0, 0, 8);
	const struct fake_answer *a;
	uint64_t t0;
	struct cenv c;

	if (cenv_init(&c, t) || cfreeze(&c, 1, v, n, 1)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	c.e.d.cfg.global.commit_retry_timeout_ms = 1000;
	t0 = now_ms();
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	a = wait_end(&c, 1, 5000);
	tap_ok(t, a && a->status != 0 && now_ms() - t0 >= 1000,
	       "COMMIT_END with an error after the retry timeout (%s after %llu ms)",
	       a ? strerror((int)a->status) : "no COMMIT_END",
	       (unsigned long long)(now_ms() - t0));
	tap_ok(t, a && strstr(a->msg, "unreachable") && strstr(a->msg, c.e.sock),
	       "its message names the target and the error: '%s'", a ? a->msg : "");
	tap_ok(t, fake_count_mark(&c.e.k, RCOW_MARK_UPLOADED) == 0, "nothing was marked uploaded");
	cenv_fini(&c);
}

/* remote-cowd dies (its spool kept) and a new one starts with the same configuration. */
static void daemon_restart(struct cenv *c)
{
	struct rcow_config cfg = c->e.d.cfg;
	struct options opt = c->e.d.opt;
	uint64_t end = now_ms() + 5000;

	c->e.d.stopping = true;
	engine_forget_all(&c->e.d);
	while ((c->e.d.commits || c->e.d.srcs || writer_backlog(&c->e.d)) && now_ms() < end)
		turn(&c->e, 20);
	engine_reap_sources(&c->e.d);
	writer_stop(&c->e.d);
	bufcache_free(c->e.d.bufs);
	memset(&c->e.d, 0, sizeof(c->e.d));
	c->e.d.cfg = cfg;
	c->e.d.opt = opt;
	c->e.d.kops = &fake_kernel_ops;
	c->e.d.kctx = &c->e.k;
	c->e.d.bufs = bufcache_new(8u << 20);
	writer_start(&c->e.d);
}

/*
 * remote-cowd restarted mid-commit: the new one finds the commit in the
 * device list, takes up the spool and completes it with the preserved
 * extents' frozen content (lose_spool: the spool file is gone, and the
 * commit fails instead of uploading what the COW device holds now).
 */
static void commit_restart(struct tap *t, bool lose_spool)
{
	const char *slow[] = { "--filter=delay", "file", NULL, "wdelay=150ms", NULL };
	uint64_t v[CNR];
	size_t n = range(v, 0, 0, 24);
	const struct fake_answer *a;
	long long bad;
	struct cenv c;
	char path[PATH_MAX + 64];
	bool held_left = true;

	NEED_NBDKIT(t);
	if (cenv_init(&c, t) || make_target_file(&c) || cfreeze(&c, 1, v, n, 1)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	slow[2] = c.tfile;
	if (nbdkit_start(&c.e, slow)) {
		tap_ok(t, false, "start nbdkit (file, 150 ms write delay)");
		cenv_fini(&c);
		return;
	}
	c.e.d.cfg.global.max_in_flight = 2;
	/* the first daemon on PRESERVE requests only; the second preserves ahead too */
	c.e.d.no_preserve_ahead = true;
	c.guest_salt = 2;
	c.e.k.data = &c;
	c.e.k.c.on_preserved = guest_writes;
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_PRESERVE, 16, 4);
	for (uint64_t end = now_ms() + 5000;
	     (c.e.k.c.preserved_early < 4 || !c.e.k.c.uploaded) && now_ms() < end;)
		turn(&c.e, 20);
	tap_ok(t, c.e.k.c.preserved_early == 4 && c.e.k.c.uploaded > 0 && c.e.k.c.uploaded < 16,
	       "4 extents preserved, %llu uploaded when remote-cowd stops",
	       (unsigned long long)c.e.k.c.uploaded);
	daemon_restart(&c);
	if (nbdkit_revive(&c.e, t, slow)) {
		tap_ok(t, false, "restart nbdkit after it died with the first daemon");
		cenv_fini(&c);
		return;
	}
	snprintf(path, sizeof(path), "%s/dev1-gen1.spool", c.spool);
	tap_ok(t, access(path, F_OK) == 0, "the spool file is kept when the daemon exits");
	if (lose_spool)
		unlink(path);
	/* registration: the device list shows the commit, then COMMIT_START comes again */
	engine_add_device(&c.e.k.c.dev, &c.e.d);
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	a = wait_end(&c, 1, 20000);
	if (!lose_spool) {
		tap_ok(t, a && a->status == 0, "the restarted daemon completes the commit (%s %s)",
		       a ? strerror((int)a->status) : "no COMMIT_END", a ? a->msg : "");
		tap_ok(t, target_ok(&c, true, &bad),
		       "the target holds the frozen content, the preserved extents from the spool (first difference: extent %lld)",
		       bad);
	} else {
		for (uint64_t x = 16; x < 20; x++)
			held_left = held_left && fake_commit_bit(c.e.k.c.upload, x);
		tap_ok(t, a && a->status == ENODATA, "COMMIT_END with ENODATA (%s)",
		       a ? strerror((int)a->status) : "no COMMIT_END");
		tap_ok(t, a && strstr(a->msg, "spool") && strstr(a->msg, "cannot be completed"),
		       "its message says why: '%s'", a ? a->msg : "");
		tap_ok(t, held_left, "the preserved extents were never marked uploaded");
	}
	spin_for(&c.e, 100);
	tap_ok(t, !c.e.d.commits && spool_files(&c) == 0, "the spool is removed at the end");
	cenv_fini(&c);
}

static void test_commit_restart(struct tap *t)
{
	commit_restart(t, false);
}

static void test_commit_restart_lost(struct tap *t)
{
	commit_restart(t, true);
}

/* COMMIT_ABORT: the upload stops (no mark, no COMMIT_END after it) and the spool goes. */
static void test_commit_abort(struct tap *t)
{
	const char *slow[] = { "--filter=delay", "memory", "size=4M", "wdelay=150ms", NULL };
	uint64_t v[CNR];
	size_t n = range(v, 0, 0, 32), before;
	struct cenv c;

	NEED_NBDKIT(t);
	if (cenv_init(&c, t) || nbdkit_start(&c.e, slow) || cfreeze(&c, 1, v, n, 1)) {
		tap_ok(t, false, "set up");
		cenv_fini(&c);
		return;
	}
	c.e.d.cfg.global.max_in_flight = 2;
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_START, 0, 0);
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_PRESERVE, 30, 2);
	for (uint64_t end = now_ms() + 5000; !c.e.k.c.uploaded && now_ms() < end;)
		turn(&c.e, 20);
	tap_ok(t, c.e.k.c.uploaded > 0 && spool_files(&c) == 1, "uploading, with a spool");
	fake_send_commit(&c.e.d, &c.e.k, RCOW_CMD_COMMIT_ABORT, 0, 0);
	before = c.e.k.n;
	spin_for(&c.e, 1000);
	tap_ok(t, c.e.k.n == before, "nothing sent to the kernel after the abort (%zu answers)",
	       c.e.k.n - before);
	tap_ok(t, !c.e.d.commits && spool_files(&c) == 0, "the commit and its spool are gone");
	tap_ok(t, fake_commit_left(&c.e.k) > 0, "the rest was not uploaded (%llu left)",
	       (unsigned long long)fake_commit_left(&c.e.k));
	cenv_fini(&c);
}

/* ---- fault runs and merging ----------------------------------------------- */

/* Reads nbdkit's log filter saw (requests, not replies); their bytes in *bytes. */
/*
 * The environment of 128 extents, nbdkit with args, one of which is
 * logarg: filled here with "logfile=" and log (a file in the test's
 * directory, for log_reads()), and device 1 over it.  0, or -1 once the
 * failure is reported and the environment finished.
 */
static int env_logged(struct env *e, struct tap *t, const char *const *args, char *log,
		      size_t logcap, char *logarg, size_t argcap, const char *what)
{
	if (env_init(e, t, 128)) {
		tap_ok(t, false, "set up the environment");
		return -1;
	}
	snprintf(log, logcap, "%s/nbdkit.log", e->dir);
	snprintf(logarg, argcap, "logfile=%s", log);
	if (nbdkit_start(e, args) || add_device(e, 1, e->uri) || !e->d.devices) {
		tap_ok(t, false, "set up %s and a device", what);
		env_fini(e);
		return -1;
	}
	return 0;
}

static size_t log_reads(const char *path, uint64_t *bytes)
{
	char line[1024];
	size_t n = 0;
	FILE *f = fopen(path, "r");

	*bytes = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		const char *c = strstr(line, " Read id=");

		if (!c || strstr(line, "...Read"))
			continue;
		n++;
		c = strstr(c, "count=");
		if (c)
			*bytes += strtoull(c + 6, NULL, 0);
	}
	fclose(f);
	return n;
}

/* Run the loop until there are n FILL_DONE answers, at most ms. */
static size_t wait_answers(struct env *e, size_t n, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (fake_count(&e->k, RCOW_CMD_FILL_DONE) < n && now_ms() < end)
		turn(e, 20);
	return fake_count(&e->k, RCOW_CMD_FILL_DONE);
}

/* Every extent of [first, first + n) holds nbdkit's pattern in the COW file. */
static bool cow_pattern(struct env *e, uint64_t first, uint64_t n)
{
	for (uint64_t x = first; x < first + n; x++)
		if (!cow_extent_is(e, x, true))
			return false;
	return true;
}

/*
 * A FAULT naming a run of extents is one NBD read and one FILL_DONE for
 * the whole run; a run longer than MAX_XFER_BYTES is cut into xfers of
 * that size, each answered for its own sub-range.
 */
static void test_fault_run(struct tap *t)
{
	char log[PATH_MAX + 16], logarg[PATH_MAX + 32];
	const char *args[] = { "--filter=log", "pattern", "size=8M", logarg, NULL };
	const struct fake_answer *a, *b;
	struct env e;
	uint64_t bytes, per = MAX_XFER_BYTES / EXT_BYTES;
	size_t reads;

	NEED_NBDKIT(t);
	if (env_logged(&e, t, args, log, sizeof(log), logarg, sizeof(logarg),
		       "nbdkit (pattern, log filter)"))
		return;
	fake_send_fault(&e.d, 1, 1, 0, 16);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 5000);
	tap_ok(t, a && a->status == 0 && a->first == 0 && a->count == 16 &&
	       fake_count(&e.k, RCOW_CMD_FILL_DONE) == 1,
	       "FAULT 0+16: one FILL_DONE 0+16, status 0 (%s)",
	       a ? "answered" : "no answer within 5 s");
	tap_ok(t, cow_pattern(&e, 0, 16), "extents 0..15 hold the base's data");
	reads = log_reads(log, &bytes);
	tap_ok(t, reads == 1 && bytes == 16 * EXT_BYTES, "one NBD read of 1 MiB (%zu reads, %llu bytes)",
	       reads, (unsigned long long)bytes);

	fake_send_fault(&e.d, 1, 2, 16, (uint32_t)(per + 16));
	wait_answers(&e, 3, 5000);
	a = b = NULL;
	for (size_t i = 0; i < e.k.n; i++)
		if (e.k.v[i].cmd == RCOW_CMD_FILL_DONE && e.k.v[i].cookie == 2) {
			if (e.k.v[i].first == 16)
				a = &e.k.v[i];
			else if (e.k.v[i].first == 16 + per)
				b = &e.k.v[i];
		}
	tap_ok(t, a && b && a->count == per && b->count == 16 && !a->status && !b->status &&
	       fake_count(&e.k, RCOW_CMD_FILL_DONE) == 3,
	       "FAULT 16+%llu: FILL_DONE 16+%llu and %llu+16, both status 0",
	       (unsigned long long)(per + 16), (unsigned long long)per,
	       (unsigned long long)(16 + per));
	tap_ok(t, cow_pattern(&e, 16, per + 16), "its extents hold the base's data");
	reads = log_reads(log, &bytes);
	tap_ok(t, reads == 3 && bytes == (32 + per) * EXT_BYTES,
	       "two more NBD reads, one per xfer (%zu reads in all)", reads);
	tap_ok(t, e.d.st.faults == 2 && e.d.st.fault_extents == 32 + per &&
	       e.d.st.extents == 32 + per && e.d.st.answered == 3,
	       "stats: 2 faults of %llu extents, 3 answers",
	       (unsigned long long)(32 + per));
	env_fini(&e);
}

/*
 * Single-extent FAULTs of adjacent extents queued together are read with
 * one NBD read and written with one COW write, and each is still answered
 * with its own cookie and extent; extents that are not adjacent are not.
 */
static void test_merge_faults(struct tap *t)
{
	char log[PATH_MAX + 16], logarg[PATH_MAX + 32];
	const char *args[] = { "--filter=log", "pattern", "size=8M", logarg, NULL };
	struct env e;
	uint64_t bytes;
	size_t reads, good = 0;

	NEED_NBDKIT(t);
	if (env_logged(&e, t, args, log, sizeof(log), logarg, sizeof(logarg),
		       "nbdkit (pattern, log filter)"))
		return;
	/* all queued before the connection is up: the first read takes them */
	for (uint64_t x = 0; x < 8; x++)
		fake_send_fault(&e.d, 1, 10 + x, x, 1);
	fake_send_fault(&e.d, 1, 40, 40, 1);
	fake_send_fault(&e.d, 1, 41, 41, 1);
	wait_answers(&e, 10, 5000);
	for (size_t i = 0; i < e.k.n; i++) {
		const struct fake_answer *a = &e.k.v[i];

		if (a->cmd == RCOW_CMD_FILL_DONE && !a->status && a->count == 1 &&
		    ((a->cookie >= 10 && a->cookie < 18 && a->first == a->cookie - 10) ||
		     (a->cookie >= 40 && a->first == a->cookie)))
			good++;
	}
	tap_ok(t, good == 10 && fake_count(&e.k, RCOW_CMD_FILL_DONE) == 10,
	       "10 FAULTs: 10 FILL_DONEs, each its own cookie, extent, count 1, status 0 (%zu good)",
	       good);
	tap_ok(t, cow_pattern(&e, 0, 8) && cow_pattern(&e, 40, 2) && cow_extent_is(&e, 8, false),
	       "extents 0..7, 40, 41 hold the base's data, extent 8 is untouched");
	reads = log_reads(log, &bytes);
	tap_ok(t, reads == 2 && bytes == 10 * EXT_BYTES,
	       "two NBD reads: 0..7 merged, 40..41 merged (%zu reads, %llu bytes)", reads,
	       (unsigned long long)bytes);
	tap_ok(t, e.d.st.merged == 8, "stats: 8 xfers merged into another's read (%llu)",
	       e.d.st.merged);
	env_fini(&e);
}

/*
 * A read of a run fails at the server for two of its extents: it is tried
 * again extent by extent, and only those two are answered with EIO; the
 * others are filled and answered 0.
 */
static void test_split_on_error(struct tap *t)
{
	/* eval: pread COUNT OFFSET; extents 4 and 5 fail, the rest reads 'A' */
	const char *args[] = {
		"eval", "get_size=echo 8388608",
		"pread=if [ $4 -lt 393216 ] && [ $(($4 + $3)) -gt 262144 ]; then "
		"echo 'EIO extents 4..5 are unreadable' >&2; exit 1; fi; "
		"head -c $3 /dev/zero | tr '\\000' A",
		NULL };
	static unsigned char buf[EXT_BYTES];
	struct env e;
	size_t ok = 0, eio = 0, filled = 0;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 128) || nbdkit_start(&e, args) || add_device(&e, 1, e.uri)) {
		tap_ok(t, false, "set up nbdkit (eval: extents 4..5 fail) and a device");
		env_fini(&e);
		return;
	}
	fake_send_fault(&e.d, 1, 1, 0, 8);
	wait_answers(&e, 8, 10000);
	for (size_t i = 0; i < e.k.n; i++) {
		const struct fake_answer *a = &e.k.v[i];

		if (a->cmd != RCOW_CMD_FILL_DONE || a->cookie != 1 || a->count != 1)
			continue;
		if (a->status == 0 && a->first < 8 && a->first != 4 && a->first != 5)
			ok++;
		else if (a->status == EIO && (a->first == 4 || a->first == 5))
			eio++;
	}
	tap_ok(t, ok == 6 && eio == 2 && fake_count(&e.k, RCOW_CMD_FILL_DONE) == 8,
	       "FAULT 0+8 with extents 4..5 unreadable: 6 answers status 0, 2 EIO, one extent each (%zu, %zu of %zu)",
	       ok, eio, fake_count(&e.k, RCOW_CMD_FILL_DONE));
	for (uint64_t x = 0; x < 8; x++) {
		bool want = x != 4 && x != 5;

		if (read_cow_extent(&e, x, buf) == 0 && (want ? buf[0] == 'A' && buf[EXT_BYTES - 1] == 'A' :
							  is_zero(buf, EXT_BYTES)))
			filled++;
	}
	tap_ok(t, filled == 8, "extents 0..3, 6, 7 filled, 4 and 5 untouched (%zu of 8 right)", filled);
	tap_ok(t, e.d.st.splits == 1, "stats: the run was split once (%llu)", e.d.st.splits);
	env_fini(&e);
}


/*
 * A FAULT the daemon's read-ahead asked for (its extents are in a
 * prefetch range) is read, written and answered in pieces of src->piece
 * bytes (what the link carries in about 10 ms, at least 128 KiB), in order, each as soon as it is in the COW
 * device: over a slow link (nbdkit's rate filter, 2 MB/s) the first piece
 * is answered long before the last, so a guest read waiting for an extent
 * at the front of the run does not wait for the whole run.  A guest FAULT
 * of the same size is still one read and one answer.
 */
static void test_prefetch_pieces(struct tap *t)
{
	char log[PATH_MAX + 16], logarg[PATH_MAX + 32];
	const char *args[] = { "--filter=log", "--filter=noparallel", "--filter=rate", "pattern",
			       "size=8M", "rate=16M",
			       "burstiness=0.05", logarg, NULL };
	uint32_t piece;
	const struct fake_answer *first = NULL, *last = NULL;
	struct device *dev;
	struct env e;
	size_t n = 0, inorder = 0, reads;
	uint64_t bytes, expect = 32, t0;

	NEED_NBDKIT(t);
	if (env_logged(&e, t, args, log, sizeof(log), logarg, sizeof(logarg),
		       "nbdkit (pattern, rate 2 MB/s)"))
		return;
	dev = e.d.devices;
	fake_send_fault(&e.d, 1, 1, 0, 16);
	tap_ok(t, wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 10000) &&
	       fake_count(&e.k, RCOW_CMD_FILL_DONE) == 1,
	       "guest FAULT 0+16: one FILL_DONE");
	piece = e.d.srcs ? (uint32_t)(e.d.srcs->piece / EXT_BYTES) : 0;
	tap_ok(t, piece == 2, "at 2 MB/s the piece is the least, 128 KiB (%u extents)", piece);
	if (!piece)
		piece = 1;
	/* as if the read-ahead had asked the kernel for extents 32..47 */
	dev->ranges[dev->rhead] = (struct prange){ 32, 48, XC_PREFETCH };
	dev->rhead = (dev->rhead + 1) % RANGE_RING;
	dev->nranges++;
	t0 = now_ms();
	fake_send_fault(&e.d, 1, 2, 32, 16);
	wait_answers(&e, 1 + 16 / piece, 10000);
	for (size_t i = 0; i < e.k.n; i++) {
		const struct fake_answer *a = &e.k.v[i];

		if (a->cmd != RCOW_CMD_FILL_DONE || a->cookie != 2)
			continue;
		n++;
		if (!a->status && a->first == expect && a->count == piece)
			inorder++;
		expect = a->first + a->count;
		if (!first)
			first = a;
		last = a;
	}
	tap_ok(t, n == 16 / piece && inorder == n,
	       "prefetch FAULT 32+16: %u FILL_DONEs of %u extents, in order, status 0 (%zu, %zu in order)",
	       16 / piece, piece, n, inorder);
	tap_ok(t, first && last && last->at_ms - first->at_ms >= 150,
	       "the first piece is answered well before the last (%lld ms after the FAULT, the last after %lld ms)",
	       first ? (long long)(first->at_ms - t0) : -1LL,
	       last ? (long long)(last->at_ms - t0) : -1LL);
	tap_ok(t, cow_pattern(&e, 32, 16), "extents 32..47 hold the base's data");
	reads = log_reads(log, &bytes);
	tap_ok(t, reads == 1 + 16 / piece && bytes == 32 * EXT_BYTES,
	       "one NBD read for the guest run, one per piece (%zu reads, %llu bytes)", reads,
	       (unsigned long long)bytes);
	env_fini(&e);
}

/* Index in the answers of the first FILL_DONE of cookie that covers extent ext; n if none. */
static size_t answer_index(const struct env *e, uint64_t cookie, uint64_t ext)
{
	for (size_t i = 0; i < e->k.n; i++) {
		const struct fake_answer *a = &e->k.v[i];

		if (a->cmd == RCOW_CMD_FILL_DONE && a->cookie == cookie && !a->status &&
		    ext >= a->first && ext < a->first + a->count)
			return i;
	}
	return e->k.n;
}

/* Every extent of test_promote()'s runs (cookie 10 + x / 16, and 14: 64+2) is answered. */
static bool streamed_answered(const struct env *e)
{
	for (uint64_t x = 0; x < 66; x++)
		if (answer_index(e, x < 64 ? 10 + x / 16 : 14, x) == e->k.n)
			return false;
	return true;
}

/*
 * A guest waiting on an extent that streaming already asked for never
 * waits for the stream.  One read at a time from a base at 2 MB/s, four
 * streaming FAULTs of 16 extents queued (2 s of reading): PROMOTE of
 * extent 60 (the last run) and a FAULT flagged waiting over a streaming
 * range (64+2) are both answered before anything of the third run
 * (32..47), which was queued before them; every extent gets the base's
 * data.  Without promotion they would come last.
 */
static void test_promote(struct tap *t)
{
	const char *args[] = { "--filter=noparallel", "--filter=rate", "pattern", "size=8M",
			       "rate=16M", "burstiness=0.05", NULL };
	struct device *dev;
	struct env e;
	size_t third, promoted, waiting;
	uint64_t end;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 128) || nbdkit_start(&e, args)) {
		tap_ok(t, false, "set up nbdkit (pattern, rate 2 MB/s)");
		env_fini(&e);
		return;
	}
	e.d.opt.max_in_flight = 1;
	if (add_device(&e, 1, e.uri) || !(dev = e.d.devices)) {
		tap_ok(t, false, "set up device 1");
		env_fini(&e);
		return;
	}
	fake_send_fault(&e.d, 1, 1, 127, 1);
	tap_ok(t, wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 1, 10000) != NULL,
	       "guest FAULT 127+1 answered (connected)");
	/* as if streaming had asked the kernel for extents 0..79 */
	dev->ranges[dev->rhead] = (struct prange){ 0, 80, XC_HYDRATE };
	dev->rhead = (dev->rhead + 1) % RANGE_RING;
	dev->nranges++;
	for (uint64_t r = 0; r < 4; r++)
		fake_send_fault(&e.d, 1, 10 + r, 16 * r, 16);
	spin_for(&e, 50);
	fake_send_run(&e.d, RCOW_CMD_PROMOTE, 1, 13, 60, 1, 0);
	fake_send_run(&e.d, RCOW_CMD_FAULT, 1, 14, 64, 2, RCOW_FAULT_F_WAITING);
	end = now_ms() + 15000;
	while (!streamed_answered(&e) && now_ms() < end)
		turn(&e, 20);
	third = answer_index(&e, 12, 32);
	for (uint64_t x = 33; x < 48; x++)
		if (answer_index(&e, 12, x) < third)
			third = answer_index(&e, 12, x);
	promoted = answer_index(&e, 13, 60);
	waiting = answer_index(&e, 14, 64);
	tap_ok(t, third < e.k.n && promoted < third,
	       "PROMOTE of extent 60 is answered before the stream's earlier run 32..47 (answer %zu, that run's first %zu)",
	       promoted, third);
	tap_ok(t, waiting < third && answer_index(&e, 14, 65) < third,
	       "a streaming FAULT flagged waiting is answered before it too (answer %zu)", waiting);
	tap_ok(t, e.d.st.promoted >= 2, "promoted counts them (%llu)", e.d.st.promoted);
	tap_ok(t, cow_pattern(&e, 0, 66), "extents 0..65 hold the base's data");
	env_fini(&e);
}

/*
 * Two devices over one base, the first with a COW device that takes
 * 200 ms per write and 64 faults queued: the second device's 8 faults are
 * answered at the base's speed all the same, because a device has at most
 * half the writer threads (WRITER_PER_DEV) and gets no new reads while
 * DEV_MAX_WRITES of its writes wait.  The slow device's faults all
 * complete too, with the right data.
 */
static void test_fair_share(struct tap *t)
{
	const char *args[] = { "pattern", "size=8M", NULL };
	struct device *slow = NULL;
	unsigned int max_writes = 0;
	size_t fast_ok = 0, slow_ok = 0;
	uint64_t t0, fast_ms = 0;
	int slow_fd;
	struct env e;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 128) || nbdkit_start(&e, args) || add_device(&e, 1, e.uri)) {
		tap_ok(t, false, "set up nbdkit (pattern) and device 1");
		env_fini(&e);
		return;
	}
	slow_fd = e.k.cow_fd;		/* device 1's COW device */
	add_device(&e, 2, e.uri);
	for (struct device *dev = e.d.devices; dev; dev = dev->next)
		if (dev->info.dev_id == 1)
			slow = dev;
	/* both connected before the clock starts */
	fake_send_fault(&e.d, 1, 5000, 127, 1);
	fake_send_fault(&e.d, 2, 5000, 127, 1);
	wait_answers(&e, 2, 5000);
	slow_cow_set(slow_fd, 200, 1000);
	/* device 1: 64 faults of one extent each, none adjacent (no merging) */
	for (uint64_t x = 0; x < 64; x++)
		fake_send_fault(&e.d, 1, 1 + x, 2 * x, 1);
	spin_for(&e, 100);
	t0 = now_ms();
	for (uint64_t x = 0; x < 8; x++)
		fake_send_fault(&e.d, 2, 1000 + x, 2 * x + 1, 1);
	while (now_ms() < t0 + 10000 && fast_ok < 8) {
		turn(&e, 5);
		if (slow && slow->writes > max_writes)
			max_writes = slow->writes;
		fast_ok = 0;
		for (size_t i = 0; i < e.k.n; i++)
			if (e.k.v[i].cmd == RCOW_CMD_FILL_DONE && e.k.v[i].dev_id == 2 &&
			    e.k.v[i].cookie >= 1000 && e.k.v[i].cookie < 2000 && !e.k.v[i].status)
				fast_ok++;
		fast_ms = now_ms() - t0;
	}
	tap_ok(t, fast_ok == 8 && fast_ms < 1000,
	       "device 2's 8 faults are answered in %llu ms while device 1's COW writes take 200 ms each (%zu answered)",
	       (unsigned long long)fast_ms, fast_ok);
	tap_ok(t, slow_cow_in_progress() <= WRITERS_PER_DEV_TEST,
	       "device 1 holds at most %d writer threads (%d)", WRITERS_PER_DEV_TEST,
	       slow_cow_in_progress());
	tap_ok(t, max_writes <= DEV_MAX_OUT,
	       "device 1 never has more than DEV_MAX_OUT (%d) fills read and not written (%u)",
	       DEV_MAX_OUT, max_writes);
	wait_answers(&e, 2 + 64 + 8, 20000);
	for (size_t i = 0; i < e.k.n; i++)
		if (e.k.v[i].cmd == RCOW_CMD_FILL_DONE && e.k.v[i].dev_id == 1 &&
		    e.k.v[i].cookie < 1000 && !e.k.v[i].status)
			slow_ok++;
	slow_cow_set(-1, 0, 0);
	tap_ok(t, slow_ok == 64, "device 1's 64 faults all complete (%zu)", slow_ok);
	{
		bool good = true;

		for (uint64_t x = 0; x < 128; x++)
			good = good && (x < 16 || x % 2 == 0 ? cow_pattern(&e, x, 1) :
					x == 127 || cow_extent_is(&e, x, false));
		tap_ok(t, good, "extents 0..15 and the even ones hold the base's data, the others nothing");
	}
	env_fini(&e);
}

/*
 * A run over a base with holes (nbdkit's data plugin: bytes 1 2 3 at
 * 70000, the rest a hole by base:allocation): one read of the data part,
 * and the COW device gets zeroes everywhere else in the run (the buffer
 * is zeroed only where no read fills it: zero_gaps()), over a COW data
 * area that held 0xaa before.
 */
static void test_run_holes(struct tap *t)
{
	const char *args[] = { "data", "data=@70000 1 2 3", "size=8M", NULL };
	static unsigned char buf[EXT_BYTES];
	unsigned char fill[4096];
	size_t good = 0;
	struct env e;
	int fd;

	NEED_NBDKIT(t);
	if (env_init(&e, t, 128) || nbdkit_start(&e, args) || add_device(&e, 1, e.uri)) {
		tap_ok(t, false, "set up nbdkit (data with holes) and a device");
		env_fini(&e);
		return;
	}
	memset(fill, 0xaa, sizeof(fill));
	fd = open(e.cow, O_WRONLY);
	for (off_t o = 0; fd >= 0 && o < (off_t)(4 * EXT_BYTES); o += (off_t)sizeof(fill))
		if (pwrite(fd, fill, sizeof(fill), (off_t)(DATA_OFFSET * 512) + o) != (ssize_t)sizeof(fill))
			break;
	if (fd >= 0)
		close(fd);
	fake_send_fault(&e.d, 1, 1, 0, 4);
	wait_answers(&e, 1, 5000);
	tap_ok(t, fake_count(&e.k, RCOW_CMD_FILL_DONE) == 1 && e.k.v[0].status == 0,
	       "FAULT 0+4 over a base with holes: answered, status 0");
	for (uint64_t x = 0; x < 4; x++) {
		if (read_cow_extent(&e, x, buf))
			continue;
		if (x == 1) {
			size_t at = 70000 - EXT_BYTES;

			if (buf[at] == 1 && buf[at + 1] == 2 && buf[at + 2] == 3) {
				buf[at] = buf[at + 1] = buf[at + 2] = 0;
				good += is_zero(buf, EXT_BYTES);
			}
		} else {
			good += is_zero(buf, EXT_BYTES);
		}
	}
	tap_ok(t, good == 4, "extents 0..3: zeroes, and 1 2 3 at byte 70000 (%zu of 4 right)", good);
	tap_ok(t, e.d.st.bytes_read > 0 && e.d.st.bytes_read < 4 * EXT_BYTES,
	       "only the data part was read (%llu bytes)", e.d.st.bytes_read);
	env_fini(&e);
}

/* Extent ext of the COW file holds fake-nbd's export at the same place. */
static bool cow_is_fake(struct env *e, const struct fake_nbd *f, uint64_t ext)
{
	static unsigned char buf[EXT_BYTES];

	if (read_cow_extent(e, ext, buf))
		return false;
	for (size_t i = 0; i < EXT_BYTES; i++)
		if (buf[i] != fake_nbd_byte(f, ext * EXT_BYTES + i))
			return false;
	return true;
}

/* The second half of extent to in the COW file is what extent from holds there. */
static bool stale_half(struct env *e, const struct fake_nbd *f, uint64_t from, uint64_t to)
{
	static unsigned char buf[EXT_BYTES];
	size_t h = EXT_BYTES / 2;

	if (read_cow_extent(e, to, buf))
		return false;
	for (size_t i = h; i < EXT_BYTES; i++)
		if (buf[i] != fake_nbd_byte(f, from * EXT_BYTES + i))
			return false;
	return true;
}

/* FAULT of count extents; its FILL_DONE status, or -1 if none came. */
static int fault_wait(struct env *e, uint64_t cookie, uint64_t ext, uint32_t count)
{
	const struct fake_answer *a;

	fake_send_fault(&e->d, 1, cookie, ext, count);
	a = wait_answer(e, RCOW_CMD_FILL_DONE, 1, cookie, 10000);
	return a ? (int)a->status : -1;
}

/* env_init() with fake-nbd (structured replies or not) for 16 extents, and a device. */
static int fenv_init(struct env *e, struct tap *t, struct fake_nbd *f, bool structured)
{
	memset(f, 0, sizeof(*f));
	if (env_init(e, t, 16))
		return -1;
	e->d.opt.prefetch_max = 0;	/* only the reads the test asks for */
	snprintf(f->path, sizeof(f->path), "%s", e->sock);
	f->size = 16 * EXT_BYTES;
	f->structured = structured;
	f->bad_from = 8 * EXT_BYTES;
	f->holes_from = 10 * EXT_BYTES;
	return fake_nbd_start(f) || add_device(e, 1, e->uri) || !e->d.devices ? -1 : 0;
}

/*
 * libnbd does not pre-zero the read buffers (src-nbd.c), which bufcache
 * reuses: a structured reply whose chunks do not cover the read must fail
 * it (EIO, like a server error) and never fill the COW device with what
 * the buffer held before, here extent 0's data.  Chunks out of order
 * with a hole that do cover it give the exact data; so does a server
 * without structured replies.
 */
static void test_reply_cover(struct tap *t)
{
	struct bufcache_stats bs;
	uint64_t reuses;
	struct fake_nbd f;
	struct env e;
	int st;

	if (fenv_init(&e, t, &f, true)) {
		tap_ok(t, false, "set up fake-nbd (structured replies) and a device");
		goto out;
	}
	st = fault_wait(&e, 1, 0, 1);
	tap_ok(t, st == 0 && cow_is_fake(&e, &f, 0),
	       "extent 0, one data chunk: filled with the export's data (status %d)", st);

	atomic_store(&f.mode, FNBD_HALF);
	st = fault_wait(&e, 2, 8, 1);
	bufcache_stats(e.d.bufs, &bs);
	tap_ok(t, st == EIO, "extent 8, a reply covering its first half: the fault fails with EIO (%d)",
	       st);
	tap_ok(t, cow_extent_is(&e, 8, false) && bs.reuses > 0,
	       "nothing written to extent 8, though its buffer was reused (%llu reuses)",
	       (unsigned long long)bs.reuses);
	if (!cow_extent_is(&e, 8, false))
		tap_diag(t, "extent 8's second half %s extent 0's", stale_half(&e, &f, 0, 8) ? "is" : "is not");
	tap_ok(t, atomic_load(&f.bad_reads) == SERVER_ERROR_RETRIES_TEST,
	       "tried %d times, like a read the server refused (%u)", SERVER_ERROR_RETRIES_TEST,
	       atomic_load(&f.bad_reads));

	atomic_store(&f.mode, FNBD_DUP);
	st = fault_wait(&e, 3, 9, 1);
	tap_ok(t, st == EIO && cow_extent_is(&e, 9, false),
	       "extent 9, its first half twice (as many bytes as asked): EIO, nothing written (%d)",
	       st);

	atomic_store(&f.mode, FNBD_SPLIT);
	reuses = bs.reuses;
	st = fault_wait(&e, 4, 10, 1);
	bufcache_stats(e.d.bufs, &bs);
	tap_ok(t, st == 0 && cow_is_fake(&e, &f, 10) && atomic_load(&f.split_reads) == 1 &&
	       bs.reuses > reuses,
	       "extent 10, three chunks out of order, one a hole where the reused buffer held data: the exact data (status %d)",
	       st);
	st = fault_wait(&e, 5, 11, 4);
	tap_ok(t, st == 0 && cow_is_fake(&e, &f, 11) && cow_is_fake(&e, &f, 12) && cow_is_fake(&e, &f, 13) &&
	       cow_is_fake(&e, &f, 14) && atomic_load(&f.split_reads) == 2,
	       "extents 11..14 in one read, 12 chunks in three passes from the last extent back: the exact data (status %d)",
	       st);
	env_fini(&e);
	fake_nbd_stop(&f);

	if (fenv_init(&e, t, &f, false)) {
		tap_ok(t, false, "set up fake-nbd (simple replies) and a device");
		goto out;
	}
	st = fault_wait(&e, 1, 2, 1);
	tap_ok(t, st == 0 && cow_is_fake(&e, &f, 2) && atomic_load(&f.reads) == 1,
	       "simple replies: extent 2 filled with the export's data (status %d)", st);
out:
	env_fini(&e);
	fake_nbd_stop(&f);
}

/* ---- live migration: a source job and a destination job over loopback TLS ---- */

#define MNR 32u				/* extents of the migration tests' devices */

struct menv {
	struct env e;
	struct rcow_device_info src, dst;
	char dcow[PATH_MAX];		/* the destination's COW file (the source's: e.cow) */
	char run[PATH_MAX];		/* the daemon's run directory */
	char target[64];		/* 127.0.0.1:PORT */
	unsigned int *ver;		/* per source extent: the version written, 0: none */
	uint64_t *written;		/* the extents written before the start */
	size_t nwritten;
	bool rewrote;			/* writes_after_swap() wrote */
};

/* A port that was free a moment ago on 127.0.0.1, or -1. */
static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	if (!bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &len))
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* A root-only file as the CLI writes them under the run directory. */
static int put_secret(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A PSK file's line in psktool's format: identity, 32 key bytes of fill in hex. */
static void psk_line(char *buf, size_t len, unsigned int fill)
{
	size_t n = (size_t)snprintf(buf, len, "rcowd-test:");

	for (int i = 0; i < 32 && n + 3 < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%02x", (fill + (unsigned int)i * 7) & 0xff);
	snprintf(buf + n, len - n, "\n");
}

/* The keys (send-test1.psk, recv-test2) in the run directory. */
static int put_keys(struct menv *m, unsigned int src_key, unsigned int dst_key)
{
	char path[PATH_MAX + 300], line[128], spec[256];

	snprintf(path, sizeof(path), "%s/migrate", m->run);
	if (mkdir(m->run, 0700) || mkdir(path, 0700))
		return -1;
	psk_line(line, sizeof(line), src_key);
	snprintf(path, sizeof(path), "%s/migrate/send-%s.psk", m->run, m->src.dm_name);
	if (put_secret(path, line))
		return -1;
	psk_line(line, sizeof(line), dst_key);
	snprintf(spec, sizeof(spec), "listen %s\n%s", m->target, line);
	snprintf(path, sizeof(path), "%s/migrate/recv-%s", m->run, m->dst.dm_name);
	return put_secret(path, spec);
}

/*
 * Devices test1 (source, COW e.cow) and test2 (destination, incoming,
 * extents of dst_ext sectors, COW dcow) over the same file base, with
 * their keys; the destination's job starts listening at its DEVICE_ADD.
 */
static int menv_init(struct menv *m, struct tap *t, uint64_t nr, uint32_t dst_ext,
		     unsigned int src_key, unsigned int dst_key)
{
	char ua[PATH_MAX + 16];
	int fd, port;

	memset(m, 0, sizeof(*m));
	if (env_init(&m->e, t, nr))
		return -1;
	snprintf(m->dcow, sizeof(m->dcow), "%s/dcow", m->e.dir);
	snprintf(m->run, sizeof(m->run), "%s/run", m->e.dir);
	port = free_port();
	snprintf(m->target, sizeof(m->target), "127.0.0.1:%d", port);
	m->ver = calloc(nr, sizeof(*m->ver));
	m->written = calloc(nr, sizeof(*m->written));
	fd = open(m->dcow, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(DATA_OFFSET * 512 + nr * EXT_BYTES)) < 0 || port < 0 ||
	    !m->ver || !m->written || file_base_uri(&m->e, "base.img", 0x11, ua, sizeof(ua))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	dev_info(&m->e, &m->src, 1, ua);
	dev_info(&m->e, &m->dst, 2, ua);
	m->dst.extent_sectors = dst_ext;
	m->dst.nr_extents = m->dst.dev_sectors / dst_ext;
	m->dst.migrate_state = RCOW_MIGRATE_INCOMING;
	m->e.d.opt.run_dir = m->run;
	m->e.k.data = m;
	if (put_keys(m, src_key, dst_key) ||
	    fake_mig_setup(&m->e.k, &m->src, m->e.cow, &m->dst, m->dcow) ||
	    fake_send_device(&m->e.d, RCOW_CMD_DEVICE_ADD, &m->dst))
		return -1;
	return fake_send_device(&m->e.d, RCOW_CMD_DEVICE_ADD, &m->src);
}

static void menv_fini(struct menv *m)
{
	free(m->ver);
	free(m->written);
	env_fini(&m->e);
}

/* menv_init() with the source's key 0x5a; on a failure, a failed test and -1. */
static int msetup(struct menv *m, struct tap *t, uint64_t nr, uint32_t dst_ext,
		  unsigned int dst_key)
{
	if (!menv_init(m, t, nr, dst_ext, 0x5a, dst_key))
		return 0;
	tap_ok(t, false, "set up two devices, their keys, the destination listening");
	menv_fini(m);
	return -1;
}

/* The guest writes version v of ext on the source (then its change bit). */
static void mwrite(struct menv *m, uint64_t ext, unsigned int v)
{
	if (fill_cow(&m->e, ext, v) == 0)
		m->ver[ext] = v;
	fake_mig_write(&m->e.k, ext);
}

/* Written before the migration starts: the change set starts as these. */
static void mwritten(struct menv *m, uint64_t first, uint64_t count, unsigned int v)
{
	for (uint64_t x = first; x < first + count; x++) {
		if (fill_cow(&m->e, x, v) == 0)
			m->ver[x] = v;
		m->written[m->nwritten++] = x;
	}
}

static int mstart(struct menv *m)
{
	return fake_mig_start(&m->e.d, &m->e.k, m->target, m->written, m->nwritten);
}

/* Loop turns and the fake kernel's worker until done(m) or ms went by. */
static bool mwait(struct menv *m, bool (*done)(const struct menv *m), int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (!done(m) && now_ms() < end) {
		turn(&m->e, 20);
		fake_mig_pump(&m->e.d, &m->e.k);
	}
	return done(m);
}

static bool src_over(const struct menv *m)
{
	return m->e.d.st.migrations_sent > 0;
}

static bool both_over(const struct menv *m)
{
	return m->e.d.st.migrations_sent > 0 && m->e.d.st.migrations_received > 0;
}

static bool some_filled(const struct menv *m)
{
	return m->e.k.m.fill_reqs > 0;
}

static bool round4(const struct menv *m)
{
	return m->e.k.m.src.migrate_round >= 4 || m->e.k.m.ended;
}

/* The data areas of COW files pa and pb (nr extents); *bad: the first extent that differs. */
static bool files_equal(const char *pa, const char *pb, uint64_t nr, long long *bad)
{
	unsigned char *a = malloc(EXT_BYTES), *b = malloc(EXT_BYTES);
	int fa = open(pa, O_RDONLY), fb = open(pb, O_RDONLY);
	bool ok = a && b && fa >= 0 && fb >= 0;

	*bad = -1;
	for (uint64_t x = 0; ok && x < nr; x++) {
		off_t off = (off_t)(DATA_OFFSET * 512 + x * EXT_BYTES);

		if (pread(fa, a, EXT_BYTES, off) != (ssize_t)EXT_BYTES ||
		    pread(fb, b, EXT_BYTES, off) != (ssize_t)EXT_BYTES || memcmp(a, b, EXT_BYTES)) {
			*bad = (long long)x;
			ok = false;
		}
	}
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	free(a);
	free(b);
	return ok;
}

/* The data areas of the two COW files; *bad: the first extent that differs. */
static bool cows_equal(const struct menv *m, long long *bad)
{
	return files_equal(m->e.cow, m->dcow, m->e.nr_extents, bad);
}

/* Nothing in the data area of the COW file at path (nr extents). */
static bool file_zero(const char *path, uint64_t nr)
{
	unsigned char *b = malloc(EXT_BYTES);
	int fd = open(path, O_RDONLY);
	bool ok = b && fd >= 0;

	for (uint64_t x = 0; ok && x < nr; x++)
		ok = pread(fd, b, EXT_BYTES, (off_t)(DATA_OFFSET * 512 + x * EXT_BYTES)) ==
		     (ssize_t)EXT_BYTES && is_zero(b, EXT_BYTES);
	if (fd >= 0)
		close(fd);
	free(b);
	return ok;
}

/* Nothing in the destination's data area. */
static bool dcow_zero(const struct menv *m)
{
	return file_zero(m->dcow, m->e.nr_extents);
}

/* Source extent ext holds version v on the destination's COW file. */
static bool dcow_has(const struct menv *m, uint64_t ext, unsigned int v)
{
	uint64_t *b = malloc(EXT_BYTES);
	int fd = open(m->dcow, O_RDONLY);
	bool ok = b && fd >= 0 &&
		  pread(fd, b, EXT_BYTES, (off_t)(DATA_OFFSET * 512 + ext * EXT_BYTES)) ==
		  (ssize_t)EXT_BYTES;

	for (size_t i = 0; ok && i < EXT_BYTES / 8; i++)
		ok = b[i] == cword(ext, v, i);
	if (fd >= 0)
		close(fd);
	free(b);
	return ok;
}

/* Extents 0..9 written, the migration started, until the source's job ended. */
static const struct fake_mig *mig_until_source_over(struct menv *m, struct tap *t)
{
	mwritten(m, 0, 10, 1);
	mstart(m);
	tap_ok(t, mwait(m, src_over, 30000), "the source's job ended");
	return &m->e.k.m;
}

/* The guest between rounds: before round 2 and round 3 take their sets. */
static void writes_between_rounds(struct fake_kernel *k, uint64_t round)
{
	struct menv *m = k->data;

	if (round == 2) {
		mwrite(m, 3, 2);	/* sent in round 1: goes again */
		mwrite(m, 15, 2);	/* new */
	} else if (round == 3) {
		mwrite(m, 3, 3);
		mwrite(m, 25, 3);
	}
}

/*
 * Pre-copy: the written extents in round 1, the guest's writes between
 * rounds in the next ones, a last write before the fence in the rounds
 * after it; FINISH, the destination completes, MIGRATE_END 0.  The
 * destination's COW data area then equals the source's, every extent
 * was marked sent only after the destination FILLed it, and the kernel
 * never had to refuse END.
 */
static void test_mig_rounds(struct tap *t)
{
	const struct fake_mig *k;
	struct menv m;
	bool ok;
	long long bad;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0x5a))
		return;
	k = &m.e.k.m;
	mwritten(&m, 0, 10, 1);
	mwritten(&m, 20, 1, 1);
	mwritten(&m, MNR - 1, 1, 1);
	m.e.k.m.on_round = writes_between_rounds;
	mstart(&m);
	ok = mwait(&m, round4, 30000);
	tap_ok(t, ok && !k->ended,
	       "rounds 1 to 4 taken (round %llu)", (unsigned long long)k->src.migrate_round);
	mwrite(&m, 7, 4);		/* before the fence: the last rounds carry it */
	fake_mig_finish(&m.e.d, &m.e.k);
	ok = mwait(&m, both_over, 30000);
	tap_ok(t, ok, "both jobs ended (sent %llu, received %llu)",
	       m.e.d.st.migrations_sent, m.e.d.st.migrations_received);
	tap_ok(t, k->ended && k->end_status == 0, "MIGRATE_END 0 (%s%s%s)",
	       k->ended ? strerror((int)k->end_status) : "no MIGRATE_END", k->end_msg[0] ? ": " : "",
	       k->end_msg);
	tap_ok(t, k->eagain == 0 && k->end_tries == 1,
	       "END came with nothing left to send (%u ENDs, %u refused)", k->end_tries, k->eagain);
	tap_ok(t, k->completes == 1 && k->dst.migrate_state != RCOW_MIGRATE_INCOMING,
	       "the destination completed (%u MIGRATE_COMPLETE)", k->completes);
	ok = cows_equal(&m, &bad);
	tap_ok(t, ok, "the destination's COW data area equals the source's (first difference: extent %lld)",
	       bad);
	tap_ok(t, dcow_has(&m, 3, 3) && dcow_has(&m, 7, 4) && dcow_has(&m, 15, 2) &&
	       dcow_has(&m, 25, 3) && dcow_has(&m, 20, 1),
	       "the destination holds the last version of each written extent");
	tap_ok(t, k->marked >= m.nwritten + 4 && k->mark_unfilled == 0,
	       "%llu extents marked sent, each after the destination's FILL (%llu before it)",
	       (unsigned long long)k->marked, (unsigned long long)k->mark_unfilled);
	tap_ok(t, k->src.migrate_round >= 5, "a round after the fence (%llu rounds)",
	       (unsigned long long)k->src.migrate_round);
	tap_ok(t, k->mirror_round == 0, "rounds of 1 or 2 extents never ask for mirroring");
	menv_fini(&m);
}

/* The guest writes extents 3 and 4 again right after round 1's swap. */
static void writes_after_swap(struct fake_kernel *k, uint64_t round)
{
	struct menv *m = k->data;

	if (round == 1 && !m->rewrote) {
		m->rewrote = true;
		mwrite(m, 3, 2);
		mwrite(m, 4, 2);
	}
}

/*
 * A copying round leaves out what the guest wrote again since its swap:
 * extents 3 and 4, written right after round 1 took its set, are not sent
 * in round 1 (they would go again in round 2) but once, in round 2, with
 * their new content; every other extent once as well; the migration then
 * finishes with both sides equal.
 */
static void test_mig_skip_rewritten(struct tap *t)
{
	const struct fake_mig *k;
	struct menv m;
	bool ok, once = true;
	long long bad;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0x5a))
		return;
	k = &m.e.k.m;
	mwritten(&m, 0, 10, 1);
	m.e.k.m.on_round_runs = writes_after_swap;
	mstart(&m);
	ok = mwait(&m, round4, 30000);
	tap_ok(t, ok && !k->ended && m.rewrote,
	       "rounds 1 to 4 taken, extents 3 and 4 written after round 1's swap");
	fake_mig_finish(&m.e.d, &m.e.k);
	ok = mwait(&m, both_over, 30000);
	tap_ok(t, ok && k->ended && k->end_status == 0 && k->eagain == 0,
	       "MIGRATE_END 0 (%u ENDs refused)", k->eagain);
	for (uint64_t e = 0; e < 10; e++)
		once = once && k->fills[e] == 1;
	tap_ok(t, once, "each written extent went once (FILLs of extents 0-4: %u %u %u %u %u)",
	       k->fills[0], k->fills[1], k->fills[2], k->fills[3], k->fills[4]);
	ok = cows_equal(&m, &bad);
	tap_ok(t, ok && dcow_has(&m, 3, 2) && dcow_has(&m, 4, 2) && dcow_has(&m, 5, 1),
	       "the destination holds the last version of each (first difference: extent %lld)",
	       bad);
	menv_fini(&m);
}

/* A guest that outruns the link: 20 new extents before rounds 2, 3, ... */
static void writes_outrun(struct fake_kernel *k, uint64_t round)
{
	struct menv *m = k->data;

	if (round < 2 || k->m.src.migrate_state != RCOW_MIGRATE_COPYING)
		return;
	for (uint64_t i = 0; i < 20; i++)
		mwrite(m, (i + round * 7) % MNR, (unsigned int)round + 1);
}

static bool never(const struct menv *m)
{
	(void)m;
	return false;
}

static bool mirroring(const struct menv *m)
{
	return m->e.k.m.mirror_round || m->e.k.m.ended;
}

/*
 * Convergence: rounds that do not shrink (20 extents written before each)
 * make the source ask for mirroring (RCOW_MIGRATE_F_MIRROR) on the round
 * after the second that did not shrink: round 4 (round 1 is the bulk).
 * With migrate_mirror always (@always) the first round, the bulk, already
 * mirrors, so no round is ever sent whole while the guest writes.  Either
 * way a write while mirroring reaches the destination and the migration
 * finishes with both sides equal.
 */
static void mirror_case(struct tap *t, bool always)
{
	const uint64_t want = always ? 1 : 4, ext = always ? 30 : 5;
	const struct fake_mig *k;
	struct menv m;
	bool ok;
	long long bad;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0x5a))
		return;
	k = &m.e.k.m;
	if (always) {
		m.e.d.opt.mig_mirror_set = true;
		m.e.d.opt.mig_mirror = RCOW_MIG_MIRROR_ALWAYS;
	} else {
		m.e.k.m.on_round = writes_outrun;
	}
	mwritten(&m, 0, 10, 1);
	mstart(&m);
	ok = mwait(&m, mirroring, 30000);
	tap_ok(t, ok && k->mirror_round == want && !k->ended,
	       "the source asked for mirroring with round %llu (round %llu)",
	       (unsigned long long)want, (unsigned long long)k->mirror_round);
	mwrite(&m, ext, 9);
	fake_send_device(&m.e.d, RCOW_CMD_MIGRATE_WAITING, &k->src);
	mwait(&m, never, 300);
	fake_mig_finish(&m.e.d, &m.e.k);
	ok = mwait(&m, both_over, 30000);
	tap_ok(t, ok && k->ended && k->end_status == 0 && k->eagain == 0,
	       "finished from mirroring: MIGRATE_END 0 (%u ENDs refused)", k->eagain);
	ok = cows_equal(&m, &bad);
	tap_ok(t, ok && dcow_has(&m, ext, 9) && (!always || dcow_has(&m, 3, 1)),
	       "the destination's COW data area equals the source's (first difference: extent %lld)",
	       bad);
	menv_fini(&m);
}

static void test_mig_mirror(struct tap *t)
{
	mirror_case(t, false);
}

static void test_mig_mirror_always(struct tap *t)
{
	mirror_case(t, true);
}

static bool m1_ended(const struct menv *m)
{
	return m->e.k.m.ended;
}

static bool dst_completed(const struct menv *m)
{
	return m->e.k.m.completes > 0 && m->e.d.st.migrations_sent > 0;
}

/*
 * The destination committed but the kernel refuses MIGRATE_END 0: the
 * outcome is unknown, so the source reports the failure with
 * RCOW_MIGRATE_F_KEEP_FENCE (the device stays fenced), never a plain
 * failure that would make it writable next to a destination that serves.
 */
static void test_mig_unknown_outcome(struct tap *t)
{
	const struct fake_mig *k;
	struct menv m;
	bool ok;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0x5a))
		return;
	k = &m.e.k.m;
	m.e.k.m.refuse_done = true;
	mwritten(&m, 0, 10, 1);
	mstart(&m);
	mwait(&m, never, 300);
	fake_mig_finish(&m.e.d, &m.e.k);
	ok = mwait(&m, dst_completed, 30000);
	tap_ok(t, ok, "the destination completed (%u MIGRATE_COMPLETE)", k->completes);
	tap_ok(t, k->ended && k->eagain == 1 && k->end_status == EAGAIN,
	       "END 0 refused once, then the failure reported (END %u: %s)", k->end_status,
	       k->end_msg);
	tap_ok(t, k->end_flags == RCOW_MIGRATE_F_KEEP_FENCE,
	       "... with RCOW_MIGRATE_F_KEEP_FENCE: the device stays fenced (flags %#x)",
	       k->end_flags);
	menv_fini(&m);
}

/*
 * migrate abort while the first round is on the wire: both jobs end, the
 * source does not report (the kernel already lifted everything) and the
 * destination never completes.
 */
static void test_mig_abort(struct tap *t)
{
	const uint64_t nr = 256;	/* 16 MiB: several DATA frames */
	const struct fake_mig *k;
	struct menv m;
	bool ok;

	if (msetup(&m, t, nr, EXT_SECTORS, 0x5a))
		return;
	k = &m.e.k.m;
	mwritten(&m, 0, nr, 1);
	mstart(&m);
	ok = mwait(&m, some_filled, 30000);
	tap_ok(t, ok, "the destination took data (%u FILLs)",
	       k->fill_reqs);
	fake_mig_abort(&m.e.d, &m.e.k);
	ok = mwait(&m, both_over, 10000);
	tap_ok(t, ok, "both jobs ended (sent %llu, received %llu)",
	       m.e.d.st.migrations_sent, m.e.d.st.migrations_received);
	tap_ok(t, k->end_tries == 0, "the source sent no MIGRATE_END after the abort (%u)",
	       k->end_tries);
	tap_ok(t, k->completes == 0 && k->dst.migrate_state == RCOW_MIGRATE_INCOMING,
	       "the destination did not complete: still incoming (%u MIGRATE_COMPLETE)",
	       k->completes);
	tap_diag(t, "%u FILLs at the destination before it ended", k->fill_reqs);
	menv_fini(&m);
}

/*
 * The destination's key differs: the TLS handshake fails, the source
 * reports the failure with its reason (MIGRATE_END), the destination
 * writes nothing and keeps waiting for a source with the right key.
 */
static void test_mig_wrong_key(struct tap *t)
{
	const struct fake_mig *k;
	struct menv m;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0xa5))
		return;
	k = mig_until_source_over(&m, t);
	tap_ok(t, k->ended && k->end_status != 0 && k->end_msg[0],
	       "the source reported the failure with a reason: MIGRATE_END %u '%s'", k->end_status,
	       k->end_msg);
	spin_for(&m.e, 200);
	tap_ok(t, k->fill_reqs == 0 && dcow_zero(&m),
	       "the destination wrote nothing (%u FILLs)", k->fill_reqs);
	tap_ok(t, k->dst.migrate_state == RCOW_MIGRATE_INCOMING &&
	       m.e.d.st.migrations_received == 0,
	       "the destination is still incoming, its job waiting for another source");
	menv_fini(&m);
}

/*
 * The destination has 128 KiB extents, the source 64 KiB: the destination
 * answers HELLO with ABORT, the source reports it, and no data moved.
 */
static void test_mig_extent_size(struct tap *t)
{
	const struct fake_mig *k;
	struct menv m;

	if (msetup(&m, t, MNR, 2 * EXT_SECTORS, 0x5a))
		return;
	k = mig_until_source_over(&m, t);
	tap_ok(t, k->ended && k->end_status == EINVAL &&
	       strstr(k->end_msg, "the destination aborted") &&
	       strstr(k->end_msg, "extents of 128 sectors on the source, 256 here"),
	       "the source reported the destination's ABORT: MIGRATE_END %u '%s'", k->end_status,
	       k->end_msg);
	tap_ok(t, m.e.d.st.migrate_data_bytes == 0 && k->fill_reqs == 0 && dcow_zero(&m),
	       "no data moved (%llu DATA bytes, %u FILLs)", m.e.d.st.migrate_data_bytes,
	       k->fill_reqs);
	tap_ok(t, k->dst.migrate_state == RCOW_MIGRATE_INCOMING, "the destination is still incoming");
	menv_fini(&m);
}

/* ---- several devices as one unit: two pairs, one job per side ---------------- */

/*
 * Pair 1: test1 -> test2 (k.m, as menv), pair 2: test3 -> test4 (k.m2,
 * COW files scow2, dcow2).  The keys name the members (test1, test3 and
 * test2, test4), so each side gathers one job of two.
 */
struct genv {
	struct menv m;
	struct rcow_device_info src2, dst2;
	char scow2[PATH_MAX], dcow2[PATH_MAX];
	uint64_t written2[MNR];
	size_t nwritten2;
};

static int new_cow_file(const char *path, uint64_t nr)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600), r;

	if (fd < 0)
		return -1;
	r = ftruncate(fd, (off_t)(DATA_OFFSET * 512 + nr * EXT_BYTES));
	close(fd);
	return r;
}

/* The group's keys: send-test1.psk, send-test3.psk, recv-test2, recv-test4. */
static int put_group_keys(struct genv *g)
{
	char path[PATH_MAX + 300], line[128], text[512];
	const char *send[] = { "test1", "test3" }, *recv[] = { "test2", "test4" };

	snprintf(path, sizeof(path), "%s/migrate", g->m.run);
	if (mkdir(g->m.run, 0700) || mkdir(path, 0700))
		return -1;
	psk_line(line, sizeof(line), 0x5a);
	for (int i = 0; i < 2; i++) {
		snprintf(text, sizeof(text), "member test1\nmember test3\n%s", line);
		snprintf(path, sizeof(path), "%s/migrate/send-%s.psk", g->m.run, send[i]);
		if (put_secret(path, text))
			return -1;
		snprintf(text, sizeof(text), "listen %s\nmember test2\nmember test4\n%s",
			 g->m.target, line);
		snprintf(path, sizeof(path), "%s/migrate/recv-%s", g->m.run, recv[i]);
		if (put_secret(path, text))
			return -1;
	}
	return 0;
}

/*
 * dst2_ext: the second destination's extent size (another one: a
 * mismatch; 0: the second destination never shows up incoming, and a
 * group gathers for 500 ms).
 */
static int genv_init(struct genv *g, struct tap *t, uint32_t dst2_ext)
{
	struct menv *m = &g->m;
	char ua[PATH_MAX + 16];
	int port;

	memset(g, 0, sizeof(*g));
	if (env_init(&m->e, t, MNR))
		return -1;
	snprintf(m->dcow, sizeof(m->dcow), "%s/dcow", m->e.dir);
	snprintf(g->scow2, sizeof(g->scow2), "%s/scow2", m->e.dir);
	snprintf(g->dcow2, sizeof(g->dcow2), "%s/dcow2", m->e.dir);
	snprintf(m->run, sizeof(m->run), "%s/run", m->e.dir);
	port = free_port();
	snprintf(m->target, sizeof(m->target), "127.0.0.1:%d", port);
	m->ver = calloc(MNR, sizeof(*m->ver));
	m->written = calloc(MNR, sizeof(*m->written));
	if (port < 0 || !m->ver || !m->written || new_cow_file(m->dcow, MNR) ||
	    new_cow_file(g->scow2, MNR) || new_cow_file(g->dcow2, MNR) ||
	    file_base_uri(&m->e, "base.img", 0x11, ua, sizeof(ua)))
		return -1;
	dev_info(&m->e, &m->src, 1, ua);
	dev_info(&m->e, &m->dst, 2, ua);
	dev_info(&m->e, &g->src2, 3, ua);
	dev_info(&m->e, &g->dst2, 4, ua);
	m->dst.migrate_state = g->dst2.migrate_state = RCOW_MIGRATE_INCOMING;
	g->dst2.extent_sectors = dst2_ext ? dst2_ext : EXT_SECTORS;
	g->dst2.nr_extents = g->dst2.dev_sectors / g->dst2.extent_sectors;
	m->e.d.opt.run_dir = m->run;
	if (!dst2_ext)
		m->e.d.opt.mig_gather_ms = 500;
	m->e.k.data = m;
	if (put_group_keys(g) ||
	    fake_mig_setup(&m->e.k, &m->src, m->e.cow, &m->dst, m->dcow) ||
	    fake_mig_setup_pair(&m->e.k.m2, &g->src2, g->scow2, &g->dst2, g->dcow2) ||
	    fake_send_device(&m->e.d, RCOW_CMD_DEVICE_ADD, &m->dst) ||
	    (dst2_ext && fake_send_device(&m->e.d, RCOW_CMD_DEVICE_ADD, &g->dst2)) ||
	    fake_send_device(&m->e.d, RCOW_CMD_DEVICE_ADD, &m->src))
		return -1;
	return fake_send_device(&m->e.d, RCOW_CMD_DEVICE_ADD, &g->src2);
}

static int gsetup(struct genv *g, struct tap *t, uint32_t dst2_ext)
{
	if (!genv_init(g, t, dst2_ext))
		return 0;
	tap_ok(t, false, "set up two pairs of devices, the group's keys");
	menv_fini(&g->m);
	return -1;
}

/* Written before the start on the second source: extents first.. of version v. */
static void gwritten2(struct genv *g, uint64_t first, uint64_t count, unsigned int v)
{
	for (uint64_t x = first; x < first + count; x++) {
		fill_path(g->scow2, x, v);
		g->written2[g->nwritten2++] = x;
	}
}

static int gstart2(struct genv *g)
{
	return fake_mig_start_pair(&g->m.e.d, &g->m.e.k.m2, g->m.target, g->written2,
				   g->nwritten2);
}

static bool both_rounds2(const struct menv *m)
{
	return (m->e.k.m.src.migrate_round >= 2 && m->e.k.m2.src.migrate_round >= 2) ||
	       m->e.k.m.ended || m->e.k.m2.ended;
}

/* Extents 0..9 written on both sources, both started; until both took round 2. */
static bool gstart_both(struct genv *g)
{
	mwritten(&g->m, 0, 10, 1);
	gwritten2(g, 0, 10, 2);
	mstart(&g->m);
	gstart2(g);
	return mwait(&g->m, both_rounds2, 30000);
}

static bool both_ended(const struct menv *m)
{
	return m->e.k.m.ended && m->e.k.m2.ended;
}

/*
 * A group of two: the first member's MIGRATE_START alone starts nothing
 * (no round asked, no connection: the job waits for the second); with the
 * second, one job sends both; a finish of the first member alone does not
 * finish the group; once both are told to, both destinations complete and
 * both sources end done, each destination equal to its source.
 */
static void test_mig_group(struct tap *t)
{
	const struct fake_mig *k1, *k2;
	struct genv g;
	long long bad1, bad2;
	bool ok;

	if (gsetup(&g, t, EXT_SECTORS))
		return;
	k1 = &g.m.e.k.m;
	k2 = &g.m.e.k.m2;
	mwritten(&g.m, 0, 10, 1);
	gwritten2(&g, 5, 10, 7);
	mstart(&g.m);
	mwait(&g.m, never, 400);
	tap_ok(t, k1->rounds_asked == 0 && k1->fill_reqs == 0 && !k1->ended,
	       "the first member alone: the group waits (%u rounds asked)", k1->rounds_asked);
	gstart2(&g);
	ok = mwait(&g.m, both_rounds2, 30000);
	tap_ok(t, ok && !k1->ended && !k2->ended,
	       "with the second, rounds of both members (rounds %llu and %llu)",
	       (unsigned long long)k1->src.migrate_round,
	       (unsigned long long)k2->src.migrate_round);
	tap_ok(t, g.m.e.d.st.migrations_sent == 0 && g.m.e.d.st.migrations_received == 0,
	       "one job per side, still running");
	mwrite(&g.m, 3, 2);
	fake_mig_finish(&g.m.e.d, &g.m.e.k);
	mwait(&g.m, never, 500);
	tap_ok(t, !k1->ended && !k2->ended && k1->completes == 0 && k2->completes == 0,
	       "the first member fenced alone: the group goes on (no END, no COMPLETE)");
	fill_path(g.scow2, 20, 9);
	fake_set_bit(g.m.e.k.m2.dirty, 20, true);
	fake_mig_finish_pair(&g.m.e.d, &g.m.e.k.m2);
	ok = mwait(&g.m, both_over, 30000);
	tap_ok(t, ok && g.m.e.d.st.migrations_sent == 1 && g.m.e.d.st.migrations_received == 1,
	       "both jobs ended: one sender, one receiver (sent %llu, received %llu)",
	       g.m.e.d.st.migrations_sent, g.m.e.d.st.migrations_received);
	tap_ok(t, k1->ended && k1->end_status == 0 && k2->ended && k2->end_status == 0 &&
	       k1->eagain == 0 && k2->eagain == 0,
	       "MIGRATE_END 0 for both members ('%s', '%s')", k1->end_msg, k2->end_msg);
	tap_ok(t, k1->completes == 1 && k2->completes == 1 &&
	       k1->dst.migrate_state != RCOW_MIGRATE_INCOMING &&
	       k2->dst.migrate_state != RCOW_MIGRATE_INCOMING,
	       "both destinations completed (%u, %u MIGRATE_COMPLETE)", k1->completes,
	       k2->completes);
	ok = cows_equal(&g.m, &bad1) && files_equal(g.scow2, g.dcow2, MNR, &bad2);
	tap_ok(t, ok, "each destination equals its source (first differences: %lld, %lld)", bad1,
	       bad2);
	tap_ok(t, k1->mark_unfilled == 0 && k2->mark_unfilled == 0,
	       "every extent marked sent after its FILL");
	menv_fini(&g.m);
}

/*
 * migrate abort of the second member mid-way ends the job for both: the
 * first gets MIGRATE_END with an error naming the second (no KEEP_FENCE:
 * FINISH was not sent, so it is writable again), the second none (its
 * kernel lifted everything), and neither destination completes.
 */
static void test_mig_group_abort(struct tap *t)
{
	const struct fake_mig *k1, *k2;
	struct genv g;
	bool ok;

	if (gsetup(&g, t, EXT_SECTORS))
		return;
	k1 = &g.m.e.k.m;
	k2 = &g.m.e.k.m2;
	ok = gstart_both(&g);
	tap_ok(t, ok && k1->fill_reqs + k2->fill_reqs > 0, "both members copying (%u, %u FILLs)",
	       k1->fill_reqs, k2->fill_reqs);
	fake_mig_abort_pair(&g.m.e.d, &g.m.e.k.m2);
	ok = mwait(&g.m, both_over, 10000);
	tap_ok(t, ok, "both jobs ended");
	tap_ok(t, k1->ended && k1->end_status == ECANCELED && strstr(k1->end_msg, "test3") &&
	       k1->end_flags == 0,
	       "the first member ended failed, writable, naming the second: END %u '%s' flags %#x",
	       k1->end_status, k1->end_msg, k1->end_flags);
	tap_ok(t, k2->end_tries == 0, "no MIGRATE_END for the aborted member (%u)", k2->end_tries);
	tap_ok(t, k1->completes == 0 && k2->completes == 0 &&
	       k1->dst.migrate_state == RCOW_MIGRATE_INCOMING &&
	       k2->dst.migrate_state == RCOW_MIGRATE_INCOMING,
	       "neither destination completed: both incoming");
	menv_fini(&g.m);
}

/*
 * The second member never starts: after the gathering time the first
 * member's migration fails with the reason, nothing was sent and no
 * destination was written.
 */
static void test_mig_group_gather(struct tap *t)
{
	const struct fake_mig *k1;
	struct genv g;
	bool ok;

	if (gsetup(&g, t, EXT_SECTORS))
		return;
	k1 = &g.m.e.k.m;
	g.m.e.d.opt.mig_gather_ms = 500;
	mwritten(&g.m, 0, 10, 1);
	mstart(&g.m);
	ok = mwait(&g.m, m1_ended, 10000);
	tap_ok(t, ok && k1->end_status == ECANCELED &&
	       strstr(k1->end_msg, "member test3 did not start within 500 ms"),
	       "the first member fails for want of the second: END %u '%s'", k1->end_status,
	       k1->end_msg);
	tap_ok(t, k1->rounds_asked == 0 && k1->fill_reqs == 0 && g.m.e.k.m2.fill_reqs == 0 &&
	       dcow_zero(&g.m) && file_zero(g.dcow2, MNR),
	       "no round, nothing written on either destination");
	menv_fini(&g.m);
}

static bool recv_spec_gone(const struct menv *m)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/migrate/recv-test2", m->run);
	return access(path, F_OK) != 0;
}

/* Something listens on m's target (127.0.0.1:PORT). */
static bool listening(const struct menv *m)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool on;

	a.sin_port = htons((uint16_t)atoi(strchr(m->target, ':') + 1));
	on = fd >= 0 && !connect(fd, (struct sockaddr *)&a, sizeof(a));
	if (fd >= 0)
		close(fd);
	return on;
}

/*
 * The second destination member never shows up incoming: the first waits
 * (its receive spec kept, nothing listens), then after the gathering
 * time (500 ms here) the job is dropped: both receive specs removed,
 * still nothing listening, the first destination incoming, not completed.
 */
static void test_mig_group_recv_gather(struct tap *t)
{
	const struct fake_mig *k1;
	struct genv g;
	char path[PATH_MAX + 64];
	uint64_t t0 = now_ms();
	bool ok;

	if (gsetup(&g, t, 0))
		return;
	k1 = &g.m.e.k.m;
	mwait(&g.m, never, 200);
	tap_ok(t, !recv_spec_gone(&g.m) && !listening(&g.m),
	       "a destination member alone: the group waits, nothing listens");
	ok = mwait(&g.m, recv_spec_gone, 10000);
	snprintf(path, sizeof(path), "%s/migrate/recv-test4", g.m.run);
	tap_ok(t, ok && now_ms() - t0 >= 400 && access(path, F_OK) != 0,
	       "after the gathering time the job is dropped: both receive specs removed (%llu ms)",
	       (unsigned long long)(now_ms() - t0));
	mwait(&g.m, never, 200);
	tap_ok(t, !listening(&g.m) && k1->completes == 0 &&
	       k1->dst.migrate_state == RCOW_MIGRATE_INCOMING,
	       "nothing listens; the destination member stays incoming, not completed");
	menv_fini(&g.m);
}

/*
 * The second destination has other extents: the destination refuses the
 * group's HELLO (ABORT) before writing anything; both members fail with
 * the reason, which names the second device.
 */
static void test_mig_group_mismatch(struct tap *t)
{
	const struct fake_mig *k1, *k2;
	struct genv g;
	bool ok;

	if (gsetup(&g, t, 2 * EXT_SECTORS))
		return;
	k1 = &g.m.e.k.m;
	k2 = &g.m.e.k.m2;
	mwritten(&g.m, 0, 10, 1);
	gwritten2(&g, 0, 10, 2);
	mstart(&g.m);
	gstart2(&g);
	ok = mwait(&g.m, both_ended, 30000);
	tap_ok(t, ok && k1->end_status == EINVAL && k2->end_status == EINVAL &&
	       strstr(k2->end_msg, "device test3 (test4 here): extents of 128 sectors on the source, 256 here"),
	       "both members fail: END %u '%s', END %u", k1->end_status, k1->end_msg,
	       k2->end_status);
	tap_ok(t, k1->fill_reqs == 0 && k2->fill_reqs == 0 && dcow_zero(&g.m) &&
	       file_zero(g.dcow2, MNR) && g.m.e.d.st.migrate_data_bytes == 0,
	       "nothing written on either destination");
	menv_fini(&g.m);
}

/*
 * The first member's kernel refuses done after the destination committed:
 * the outcome is unknown for the group, so both members end failed with
 * RCOW_MIGRATE_F_KEEP_FENCE (fenced), never one writable.
 */
static void test_mig_group_unknown(struct tap *t)
{
	const struct fake_mig *k1, *k2;
	struct genv g;
	bool ok;

	if (gsetup(&g, t, EXT_SECTORS))
		return;
	k1 = &g.m.e.k.m;
	k2 = &g.m.e.k.m2;
	g.m.e.k.m.refuse_done = true;
	gstart_both(&g);
	fake_mig_finish(&g.m.e.d, &g.m.e.k);
	fake_mig_finish_pair(&g.m.e.d, &g.m.e.k.m2);
	ok = mwait(&g.m, both_ended, 30000);
	tap_ok(t, ok && k1->completes == 1 && k2->completes == 1,
	       "both destinations completed (%u, %u)", k1->completes, k2->completes);
	tap_ok(t, k1->end_status != 0 && k1->end_flags == RCOW_MIGRATE_F_KEEP_FENCE &&
	       k2->end_status != 0 && k2->end_flags == RCOW_MIGRATE_F_KEEP_FENCE,
	       "both members failed and stay fenced: END %u flags %#x, END %u flags %#x",
	       k1->end_status, k1->end_flags, k2->end_status, k2->end_flags);
	menv_fini(&g.m);
}

/*
 * The second source's COW device fails (its file cut short, then a write
 * to an extent past the cut): the job ends for both, each member failed
 * with the reason, the fence lifted, neither destination completes.
 */
static void test_mig_group_cow_fail(struct tap *t)
{
	const struct fake_mig *k1, *k2;
	struct genv g;
	bool ok;

	if (gsetup(&g, t, EXT_SECTORS))
		return;
	k1 = &g.m.e.k.m;
	k2 = &g.m.e.k.m2;
	ok = gstart_both(&g);
	tap_ok(t, ok, "both members copying");
	ok = truncate(g.scow2, (off_t)(DATA_OFFSET * 512)) == 0;
	fake_set_bit(g.m.e.k.m2.dirty, 20, true);
	ok = ok && mwait(&g.m, both_ended, 30000);
	tap_ok(t, ok && k1->end_status != 0 && k2->end_status != 0 && k1->end_flags == 0 &&
	       k2->end_flags == 0 && strstr(k1->end_msg, "COW"),
	       "both members failed, writable: END %u '%s', END %u", k1->end_status, k1->end_msg,
	       k2->end_status);
	ok = mwait(&g.m, both_over, 10000);
	tap_ok(t, ok && k1->completes == 0 && k2->completes == 0 &&
	       k1->dst.migrate_state == RCOW_MIGRATE_INCOMING &&
	       k2->dst.migrate_state == RCOW_MIGRATE_INCOMING,
	       "neither destination completed: both incoming");
	menv_fini(&g.m);
}

/*
 * The second source device is removed while the group runs: the job
 * stops, the first member ends failed with the reason, the destinations
 * stay incoming.
 */
static void test_mig_group_remove(struct tap *t)
{
	const struct fake_mig *k1;
	struct genv g;
	bool ok;

	if (gsetup(&g, t, EXT_SECTORS))
		return;
	k1 = &g.m.e.k.m;
	ok = gstart_both(&g);
	tap_ok(t, ok, "both members copying");
	fake_send_device(&g.m.e.d, RCOW_CMD_DEVICE_REMOVE, &g.src2);
	ok = mwait(&g.m, m1_ended, 10000);
	tap_ok(t, ok && k1->end_status == ECANCELED &&
	       strstr(k1->end_msg, "member test3 of the group was removed") && k1->end_flags == 0,
	       "the first member failed, writable, with the reason: END %u '%s'", k1->end_status,
	       k1->end_msg);
	mwait(&g.m, never, 300);
	tap_ok(t, k1->completes == 0 && g.m.e.k.m2.completes == 0 &&
	       k1->dst.migrate_state == RCOW_MIGRATE_INCOMING,
	       "the destinations did not complete");
	menv_fini(&g.m);
}

/* ---- post-copy ------------------------------------------------------------ */

static bool dst_serving(const struct menv *m)
{
	return m->e.k.m.dst.migrate_state == RCOW_MIGRATE_POSTCOPY || m->e.k.m.ended ||
	       m->e.d.st.migrations_sent > 0;
}

/* The FILL_DONE of device dev_id's cookie, the loop and the fake kernel running. */
static const struct fake_answer *mwait_fill_of(struct menv *m, uint32_t dev_id, uint64_t cookie,
					       int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	const struct fake_answer *a;

	while (!(a = fake_find(&m->e.k, RCOW_CMD_FILL_DONE, dev_id, cookie)) &&
	       now_ms() < end) {
		turn(&m->e, 20);
		fake_mig_pump(&m->e.d, &m->e.k);
	}
	return a;
}

/* The FILL_DONE of the destination's cookie, the loop and the fake kernel running. */
static const struct fake_answer *mwait_fill(struct menv *m, uint64_t cookie, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	const struct fake_answer *a;

	while (!(a = fake_find(&m->e.k, RCOW_CMD_FILL_DONE, m->dst.dev_id, cookie)) &&
	       now_ms() < end) {
		turn(&m->e, 20);
		fake_mig_pump(&m->e.d, &m->e.k);
	}
	return a;
}

/* Extents still remote on the destination. */
static unsigned int remote_left(const struct fake_mig *k)
{
	unsigned int n = 0;

	for (uint64_t e = 0; e < k->nr; e++)
		n += fake_mig_remote(k, e);
	return n;
}

/*
 * Rounds, then writes the last round carries, then the finish: post-copy
 * by MIGRATE_FINISH's flag (spec_line false) or by the send spec's
 * "postcopy" line with a plain finish.  Until the destination serves.
 */
static bool pc_until_serving(struct menv *m, struct tap *t, bool spec_line)
{
	struct fake_mig *k = &m->e.k.m;
	char path[PATH_MAX + 300], line[128], spec[256];
	bool ok;

	if (spec_line) {
		psk_line(line, sizeof(line), 0x5a);
		snprintf(spec, sizeof(spec), "postcopy\n%s", line);
		snprintf(path, sizeof(path), "%s/migrate/send-%s.psk", m->run, m->src.dm_name);
		put_secret(path, spec);
	}
	mwritten(m, 0, 10, 1);
	mwritten(m, 20, 2, 1);
	k->on_round = writes_between_rounds;
	mstart(m);
	ok = mwait(m, round4, 30000);
	tap_ok(t, ok && !k->ended, "pre-copy rounds 1 to 4 (round %llu)",
	       (unsigned long long)k->src.migrate_round);
	/* after the last pre-copy round: only on the source when the guest moves */
	mwrite(m, 5, 7);
	mwrite(m, 12, 7);
	mwrite(m, 13, 7);
	mwrite(m, 28, 7);
	mwrite(m, 29, 7);
	mwrite(m, 30, 7);
	k->hold_hyd = true;
	if (spec_line)
		fake_mig_finish(&m->e.d, &m->e.k);
	else
		fake_mig_finish_flags(&m->e.d, k, RCOW_MIGRATE_F_POSTCOPY);
	ok = mwait(m, dst_serving, 30000) && k->dst.migrate_state == RCOW_MIGRATE_POSTCOPY;
	tap_ok(t, ok && k->dst_postcopies == 1 && k->remote_reqs > 0 && remote_left(k) == 5,
	       "the destination serves in post-copy (%u MIGRATE_REMOTE, %u extents remote)",
	       k->remote_reqs, remote_left(k));
	/* the kernel keeps a filled extent: one sent before goes as DATA */
	tap_ok(t, ok && !fake_mig_remote(k, 5) && dcow_has(m, 5, 7),
	       "extent 5, sent in round 1 and written since, went as DATA before POSTCOPY");
	return ok;
}

/* Post-copy to the end: guest reads while streaming, then the stream completes. */
static void pc_to_end(struct menv *m, struct tap *t)
{
	struct fake_mig *k = &m->e.k.m;
	const struct fake_answer *a1, *a2;
	long long bad;
	bool ok;

	ok = fake_mig_guest_read(&m->e.d, k, 12, 501) && fake_mig_guest_read(&m->e.d, k, 29, 502);
	a1 = mwait_fill(m, 501, 10000);
	a2 = mwait_fill(m, 502, 10000);
	tap_ok(t, ok && a1 && a2 && a1->status == 0 && a2->status == 0 && dcow_has(m, 12, 7) &&
	       dcow_has(m, 29, 7),
	       "guest reads of two remote extents, streaming held: fetched, written, answered 0");
	k->hold_hyd = false;
	ok = mwait(m, both_over, 30000);
	tap_ok(t, ok, "both jobs ended (sent %llu, received %llu)", m->e.d.st.migrations_sent,
	       m->e.d.st.migrations_received);
	tap_ok(t, k->src_postcopies == 1 && k->ended && k->end_status == 0 && k->end_flags == 0 &&
	       k->src.migrate_state == RCOW_MIGRATE_DONE,
	       "the source went postcopy, then MIGRATE_END 0: done (%s)", k->end_msg);
	tap_ok(t, k->completes == 1 && remote_left(k) == 0 &&
	       k->dst.migrate_state != RCOW_MIGRATE_POSTCOPY,
	       "the destination completed once nothing was remote (%u COMPLETE refused first)",
	       k->complete_eagain);
	ok = cows_equal(m, &bad);
	tap_ok(t, ok, "every extent on the destination equals the source's (first difference: %lld)",
	       bad);
	tap_ok(t, k->remote_eio == 0 && m->e.d.st.bytes_read == 0,
	       "no remote fault failed, nothing read from the base (%llu bytes)",
	       m->e.d.st.bytes_read);
	tap_ok(t, m->e.d.st.migrate_data_bytes >= 2 * (m->nwritten + 6) * EXT_BYTES &&
	       m->e.d.st.migrate_bytes_sent > m->e.d.st.migrate_data_bytes / 2,
	       "bytes counted: %llu DATA bytes (both sides), %llu sent", m->e.d.st.migrate_data_bytes,
	       m->e.d.st.migrate_bytes_sent);
}

/* Post-copy from the start to the end; spec_line: chosen by the send spec. */
static void postcopy_case(struct tap *t, bool spec_line)
{
	struct menv m;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0x5a))
		return;
	if (pc_until_serving(&m, t, spec_line))
		pc_to_end(&m, t);
	menv_fini(&m);
}

/*
 * migrate finish postcopy: the last round is named REMOTE, the destination
 * serves at once; a guest's reads of remote extents are fetched from the
 * source ahead of the stream; the stream moves the rest; then the
 * destination completes, the source ends done, every extent equal.
 */
static void test_mig_postcopy(struct tap *t)
{
	postcopy_case(t, false);
}

/* The send spec's "postcopy" line chooses post-copy with a plain migrate finish. */
static void test_mig_postcopy_spec(struct tap *t)
{
	postcopy_case(t, true);
}

/* The loop and the fake kernel run for ms. */
static void mrun(struct menv *m, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end) {
		turn(&m->e, 20);
		fake_mig_pump(&m->e.d, &m->e.k);
	}
}

/* Extents of the destination's FILL_DONEs for cookie, and the time of the last one. */
static uint64_t fills_of(const struct menv *m, uint64_t cookie, uint64_t *last_ms)
{
	const struct fake_kernel *k = &m->e.k;
	uint64_t n = 0;

	*last_ms = 0;
	for (size_t i = 0; i < k->n; i++) {
		const struct fake_answer *a = &k->v[i];

		if (a->cmd != RCOW_CMD_FILL_DONE || a->dev_id != m->dst.dev_id ||
		    a->cookie != cookie || a->status)
			continue;
		n += a->count;
		if (a->at_ms > *last_ms)
			*last_ms = a->at_ms;
	}
	return n;
}

#define PCG_BG_COOKIE 700
#define PCG_BG_FIRST 4
#define PCG_BG_COUNT 24u		/* 1.5 MiB: six background pieces */

/*
 * Post-copy, a guest read while a large background fault is fetched: the
 * source reads slowly (200 ms a read), so the background fault of 24
 * extents takes six pieces of 256 KiB; the guest's fault is asked as soon
 * as it comes, behind at most the window, and is answered while the
 * background fault still has pieces to come.  (Fetched whole, as before
 * 4 December 2026, the guest waited for all 24.)  Then everything moves
 * and both sides are equal.
 */
static void test_mig_postcopy_guest_first(struct tap *t)
{
	const struct fake_answer *ga;
	struct fake_mig *k;
	uint64_t n, bg_last, asked;
	long long bad;
	struct menv m;
	bool ok;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0x5a))
		return;
	k = &m.e.k.m;
	mwritten(&m, 0, 2, 1);
	mstart(&m);
	ok = mwait(&m, round4, 30000);
	tap_ok(t, ok && !k->ended, "pre-copy rounds 1 to 4");
	/* after the last pre-copy round: only on the source when the guest moves */
	for (uint64_t e = PCG_BG_FIRST; e < PCG_BG_FIRST + PCG_BG_COUNT; e++)
		mwrite(&m, e, 7);
	mwrite(&m, 30, 7);
	k->hold_hyd = true;
	fake_mig_finish_flags(&m.e.d, k, RCOW_MIGRATE_F_POSTCOPY);
	ok = mwait(&m, dst_serving, 30000) && k->dst.migrate_state == RCOW_MIGRATE_POSTCOPY;
	tap_ok(t, ok && remote_left(k) == PCG_BG_COUNT + 1,
	       "the destination serves in post-copy (%u extents remote)", remote_left(k));
	if (!ok) {
		menv_fini(&m);
		return;
	}
	slow_read_set(200, EXT_BYTES);
	fake_mig_stream_fault(&m.e.d, k, PCG_BG_FIRST, PCG_BG_COUNT, PCG_BG_COOKIE);
	mrun(&m, 100);
	asked = now_ms();
	ok = fake_mig_guest_read(&m.e.d, k, 30, 701);
	ga = mwait_fill(&m, 701, 20000);
	n = fills_of(&m, PCG_BG_COOKIE, &bg_last);
	tap_ok(t, ok && ga && ga->status == 0 && dcow_has(&m, 30, 7),
	       "the guest's read answered 0 after %llu ms, with the source's data",
	       ga ? (unsigned long long)(ga->at_ms - asked) : 0ULL);
	tap_ok(t, ga && n < PCG_BG_COUNT,
	       "it did not wait for the background fault: %llu of its %u extents answered then",
	       (unsigned long long)n, PCG_BG_COUNT);
	for (uint64_t end = now_ms() + 20000; n < PCG_BG_COUNT && now_ms() < end;) {
		mrun(&m, 50);
		n = fills_of(&m, PCG_BG_COOKIE, &bg_last);
	}
	tap_ok(t, n == PCG_BG_COUNT && ga && bg_last > ga->at_ms,
	       "the background fault answered in pieces, all %llu extents, its last %llu ms after the guest's",
	       (unsigned long long)n, ga && bg_last > ga->at_ms ?
	       (unsigned long long)(bg_last - ga->at_ms) : 0ULL);
	slow_read_set(0, 0);
	k->hold_hyd = false;
	ok = mwait(&m, both_over, 30000);
	tap_ok(t, ok && k->ended && k->end_status == 0 && remote_left(k) == 0 && k->remote_eio == 0,
	       "both jobs ended, the source done, nothing remote, no EIO (%s)", k->end_msg);
	ok = cows_equal(&m, &bad);
	tap_ok(t, ok, "every extent on the destination equals the source's (first difference: %lld)",
	       bad);
	menv_fini(&m);
}

/*
 * The source fails after SERVING (its COW device can no longer be read,
 * as a source host going away): the source ends failed but keeps its fence
 * (RCOW_MIGRATE_F_KEEP_FENCE: the destination may be running the guest);
 * the destination's remote faults, the one in flight and later ones, fail
 * with EIO, and nothing is read from the base for them.
 */
static void test_mig_postcopy_lost(struct tap *t)
{
	const struct fake_answer *a1, *a2;
	struct fake_mig *k;
	struct menv m;
	bool ok;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0x5a))
		return;
	k = &m.e.k.m;
	if (!pc_until_serving(&m, t, false)) {
		menv_fini(&m);
		return;
	}
	ok = truncate(m.e.cow, (off_t)DATA_OFFSET * 512) == 0;
	ok = ok && fake_mig_guest_read(&m.e.d, k, 13, 601);
	a1 = mwait_fill(&m, 601, 10000);
	tap_ok(t, ok && a1 && a1->status == EIO, "a remote read while the source fails: EIO (%u)",
	       a1 ? a1->status : 0);
	ok = mwait(&m, m1_ended, 10000);
	tap_ok(t, ok && k->end_status != 0 && k->end_flags == RCOW_MIGRATE_F_KEEP_FENCE,
	       "the source ended failed with RCOW_MIGRATE_F_KEEP_FENCE (status %u flags %#x: %s)",
	       k->end_status, k->end_flags, k->end_msg);
	mwait(&m, both_over, 10000);
	ok = fake_mig_guest_read(&m.e.d, k, 28, 602);
	a2 = mwait_fill(&m, 602, 10000);
	tap_ok(t, ok && a2 && a2->status == EIO, "a remote read after the job ended: EIO (%u)",
	       a2 ? a2->status : 0);
	tap_ok(t, m.e.d.st.bytes_read == 0 && !dcow_has(&m, 13, 7) && !dcow_has(&m, 28, 7) &&
	       fake_mig_remote(k, 13) && fake_mig_remote(k, 28),
	       "nothing read from the base, nothing written for them: still remote");
	tap_ok(t, k->dst.migrate_state == RCOW_MIGRATE_POSTCOPY && k->completes == 0,
	       "the destination stays in post-copy");
	menv_fini(&m);
}

static bool both_serving(const struct menv *m)
{
	return (m->e.k.m.dst.migrate_state == RCOW_MIGRATE_POSTCOPY &&
		m->e.k.m2.dst.migrate_state == RCOW_MIGRATE_POSTCOPY) || m->e.k.m.ended ||
	       m->e.k.m2.ended;
}

/*
 * A group of two, post-copy: the first member's finish asks it, the
 * second's is plain; both destinations serve, a guest read on each is
 * fetched, the stream moves the rest, both complete, both sources end
 * done, each destination equal to its source.
 */
static void test_mig_postcopy_group(struct tap *t)
{
	const struct fake_answer *a1, *a2;
	struct fake_mig *k1, *k2;
	long long bad1, bad2;
	struct genv g;
	bool ok;

	if (gsetup(&g, t, EXT_SECTORS))
		return;
	k1 = &g.m.e.k.m;
	k2 = &g.m.e.k.m2;
	ok = gstart_both(&g);
	tap_ok(t, ok, "rounds of both members");
	mwrite(&g.m, 4, 5);	/* sent in round 1: goes as DATA */
	mwrite(&g.m, 17, 5);
	fill_path(g.scow2, 20, 9);
	fake_set_bit(k2->dirty, 20, true);
	fill_path(g.scow2, 21, 9);
	fake_set_bit(k2->dirty, 21, true);
	k1->hold_hyd = k2->hold_hyd = true;
	fake_mig_finish_flags(&g.m.e.d, k1, RCOW_MIGRATE_F_POSTCOPY);
	fake_mig_finish_pair(&g.m.e.d, k2);
	ok = mwait(&g.m, both_serving, 30000) && k1->dst.migrate_state == RCOW_MIGRATE_POSTCOPY &&
	     k2->dst.migrate_state == RCOW_MIGRATE_POSTCOPY;
	tap_ok(t, ok && remote_left(k1) == 1 && remote_left(k2) == 2 && dcow_has(&g.m, 4, 5),
	       "both destinations serve in post-copy (%u, %u extents remote)", remote_left(k1),
	       remote_left(k2));
	ok = ok && fake_mig_guest_read(&g.m.e.d, k1, 17, 801) &&
	     fake_mig_guest_read(&g.m.e.d, k2, 21, 802);
	a1 = mwait_fill_of(&g.m, g.m.dst.dev_id, 801, 10000);
	a2 = mwait_fill_of(&g.m, g.dst2.dev_id, 802, 10000);
	tap_ok(t, ok && a1 && a2 && a1->status == 0 && a2->status == 0,
	       "a guest read on each member fetched from its source");
	k1->hold_hyd = k2->hold_hyd = false;
	ok = mwait(&g.m, both_over, 30000);
	tap_ok(t, ok && k1->ended && k1->end_status == 0 && k2->ended && k2->end_status == 0 &&
	       k1->src_postcopies == 1 && k2->src_postcopies == 1,
	       "both sources went postcopy and ended done ('%s', '%s')", k1->end_msg, k2->end_msg);
	tap_ok(t, k1->completes == 1 && k2->completes == 1 && !remote_left(k1) && !remote_left(k2),
	       "both destinations completed with nothing remote");
	ok = cows_equal(&g.m, &bad1) && files_equal(g.scow2, g.dcow2, MNR, &bad2);
	tap_ok(t, ok, "each destination equals its source (first differences: %lld, %lld)", bad1,
	       bad2);
	tap_ok(t, g.m.e.d.st.bytes_read == 0, "nothing read from the base");
	menv_fini(&g.m);
}

static bool dst_over(const struct menv *m)
{
	return m->e.d.st.migrations_received > 0;
}

/*
 * The source goes away after SERVING (its device removed: its job stops,
 * the connection closes): the destination's job ends, a remote read fails
 * with EIO, nothing is read from the base, the device stays in post-copy.
 */
static void test_mig_postcopy_gone(struct tap *t)
{
	const struct fake_answer *a;
	struct fake_mig *k;
	struct menv m;
	bool ok;

	if (msetup(&m, t, MNR, EXT_SECTORS, 0x5a))
		return;
	k = &m.e.k.m;
	if (!pc_until_serving(&m, t, false)) {
		menv_fini(&m);
		return;
	}
	remove_device(&m.e, m.src.dev_id);
	ok = mwait(&m, dst_over, 10000);
	tap_ok(t, ok, "the destination's job ended once the source went away");
	ok = fake_mig_guest_read(&m.e.d, k, 12, 651);
	a = mwait_fill(&m, 651, 10000);
	tap_ok(t, ok && a && a->status == EIO, "a remote read then: EIO (%u)", a ? a->status : 0);
	tap_ok(t, m.e.d.st.bytes_read == 0 && !dcow_has(&m, 12, 7) && fake_mig_remote(k, 12) &&
	       k->dst.migrate_state == RCOW_MIGRATE_POSTCOPY && k->completes == 0,
	       "nothing read from the base; still remote; the destination stays in post-copy");
	menv_fini(&m);
}

/* A REMOTE fault for a device no job receives (remote-cowd restarted): EIO, twice. */
static void test_mig_postcopy_nojob(struct tap *t)
{
	const struct fake_answer *a1, *a2;
	struct env e;
	char uri[PATH_MAX + 16];

	if (env_init(&e, t, 16) || file_base_uri(&e, "base.img", 0x11, uri, sizeof(uri)) ||
	    add_device(&e, 1, uri)) {
		tap_ok(t, false, "set up a device");
		env_fini(&e);
		return;
	}
	fake_send_run(&e.d, RCOW_CMD_FAULT, 1, 701, 3, 2, RCOW_FAULT_F_REMOTE | RCOW_FAULT_F_WAITING);
	fake_send_run(&e.d, RCOW_CMD_FAULT, 1, 702, 8, 1, RCOW_FAULT_F_REMOTE);
	a1 = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 701, 5000);
	a2 = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 702, 5000);
	spin_for(&e, 100);
	tap_ok(t, a1 && a1->status == EIO && a2 && a2->status == EIO,
	       "REMOTE faults with no migration job: EIO (%u, %u)", a1 ? a1->status : 0,
	       a2 ? a2->status : 0);
	tap_ok(t, e.d.st.bytes_read == 0 && cow_extent_is(&e, 3, false) &&
	       cow_extent_is(&e, 8, false), "nothing read from the base, nothing written");
	env_fini(&e);
}

/*
 * The answer to a remote fault goes the fill path's way: written into the
 * COW data area by the writer threads, then FILL_DONE; one whose device
 * was quiesced since the fault came (another epoch) writes and answers
 * nothing (the kernel faults again after its resume).
 */
static void test_remote_fill_quiesce(struct tap *t)
{
	const struct fake_answer *a;
	struct rcow_fault f = { .dev_id = 1, .cookie = 901, .first = 2, .count = 2 };
	unsigned char *data = malloc(2 * EXT_BYTES);
	unsigned int epoch;
	char uri[PATH_MAX + 16];
	struct env e;

	if (!data || env_init(&e, t, 16) || file_base_uri(&e, "base.img", 0x11, uri, sizeof(uri)) ||
	    add_device(&e, 1, uri) || !e.d.devices) {
		tap_ok(t, false, "set up a device");
		free(data);
		env_fini(&e);
		return;
	}
	for (size_t i = 0; i < 2 * EXT_BYTES; i++)	/* is_pattern() of extents 2 and 3 */
		data[i] = (unsigned char)((2 * EXT_BYTES + (i & ~(size_t)7)) >> (8 * (7 - i % 8)));
	epoch = atomic_load(&e.d.devices->epoch);
	fake_send_quiesce(&e.d, 1, 77);
	engine_remote_fill(&e.d, &f, epoch, data, 2 * EXT_BYTES, 0);
	spin_for(&e, 200);
	tap_ok(t, !fake_find(&e.k, RCOW_CMD_FILL_DONE, 1, 901) && cow_extent_is(&e, 2, false),
	       "quiesced since the fault: nothing written, nothing answered");
	f.cookie = 902;
	engine_remote_fill(&e.d, &f, atomic_load(&e.d.devices->epoch), data, 2 * EXT_BYTES, 0);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 902, 5000);
	tap_ok(t, a && a->status == 0 && a->first == 2 && a->count == 2 &&
	       cow_extent_is(&e, 2, true) && cow_extent_is(&e, 3, true) && e.d.st.bytes_read == 0,
	       "the same epoch: written by the writer threads, then FILL_DONE 2+2 (%u)",
	       a ? a->status : 0);
	f.cookie = 903;
	engine_remote_fill(&e.d, &f, atomic_load(&e.d.devices->epoch), NULL, 0, EIO);
	a = wait_answer(&e, RCOW_CMD_FILL_DONE, 1, 903, 5000);
	tap_ok(t, a && a->status == EIO, "an error answers the fault with it");
	free(data);
	env_fini(&e);
}

static const struct {
	const char *name;
	void (*fn)(struct tap *t);
} groups[] = {
	{ "run-holes", test_run_holes },
	{ "reply-cover", test_reply_cover },
	{ "fair-share", test_fair_share },
	{ "fault-run", test_fault_run },
	{ "prefetch-pieces", test_prefetch_pieces },
	{ "merge-faults", test_merge_faults },
	{ "split-on-error", test_split_on_error },
	{ "promote", test_promote },
	{ "inactive", test_inactive },
	{ "many-bases", test_many_bases },
	{ "safe-files", test_safe_files },
	{ "uri-case", test_uri_case },
	{ "hung-cow", test_hung_cow },
	{ "resync", test_resync },
	{ "quiesce-reads", test_quiesce_reads },
	{ "quiesce-writes", test_quiesce_writes },
	{ "remove-nbd-inflight", test_remove_nbd_inflight },
	{ "remove-file-inflight", test_remove_file_inflight },
	{ "pool-eventfd", test_pool_eventfd },
	{ "huge-export", test_huge_export },
	{ "reconnect-size", test_reconnect_size },
	{ "file-shrink", test_file_shrink },
	{ "commit-upload", test_commit_upload },
	{ "commit-preserve", test_commit_preserve },
	{ "commit-prepreserve", test_commit_ahead },
	{ "commit-spool-full", test_commit_spool_full },
	{ "commit-refuse", test_commit_refuse },
	{ "commit-retry", test_commit_retry },
	{ "commit-timeout", test_commit_timeout },
	{ "commit-restart", test_commit_restart },
	{ "commit-restart-lost", test_commit_restart_lost },
	{ "commit-abort", test_commit_abort },
	{ "mig-rounds", test_mig_rounds },
	{ "mig-skip-rewritten", test_mig_skip_rewritten },
	{ "mig-abort", test_mig_abort },
	{ "mig-wrong-key", test_mig_wrong_key },
	{ "mig-extent-size", test_mig_extent_size },
	{ "mig-mirror", test_mig_mirror },
	{ "mig-mirror-always", test_mig_mirror_always },
	{ "mig-unknown-outcome", test_mig_unknown_outcome },
	{ "mig-group", test_mig_group },
	{ "mig-group-abort", test_mig_group_abort },
	{ "mig-group-gather", test_mig_group_gather },
	{ "mig-group-recv-gather", test_mig_group_recv_gather },
	{ "mig-group-mismatch", test_mig_group_mismatch },
	{ "mig-group-unknown", test_mig_group_unknown },
	{ "mig-group-cow-fail", test_mig_group_cow_fail },
	{ "mig-group-remove", test_mig_group_remove },
	{ "mig-postcopy", test_mig_postcopy },
	{ "mig-postcopy-spec", test_mig_postcopy_spec },
	{ "mig-postcopy-lost", test_mig_postcopy_lost },
	{ "mig-postcopy-guest-first", test_mig_postcopy_guest_first },
	{ "mig-postcopy-gone", test_mig_postcopy_gone },
	{ "mig-postcopy-nojob", test_mig_postcopy_nojob },
	{ "mig-postcopy-group", test_mig_postcopy_group },
	{ "remote-fill-quiesce", test_remote_fill_quiesce },
};

int main(int argc, char **argv)
{
	struct tap t = { 0, 0, 0, NULL };
	size_t n = sizeof(groups) / sizeof(groups[0]);

	setvbuf(stderr, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (size_t i = 0; i < n; i++)
			printf("%s\n", groups[i].name);
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: rcowd-test GROUP | --list\n");
		return 2;
	}
	for (size_t i = 0; i < n; i++)
		if (!strcmp(argv[1], groups[i].name)) {
			t.group = groups[i].name;
			groups[i].fn(&t);
			printf("1..%d\n", t.n);
			return t.failed ? 1 : 0;
		}
	fprintf(stderr, "rcowd-test: no group '%s'; see --list\n", argv[1]);
	return 2;
}
