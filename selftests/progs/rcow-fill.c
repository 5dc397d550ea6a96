// SPDX-License-Identifier: GPL-2.0
/*
 * rcow-fill - the small fault-answering helper the kernel selftests use
 * (a stand-in for remote-cowd, built from the same librcow).
 *
 * It registers as the remote-cow helper, reads the device list, and for
 * every FAULT reads the extents from the device's base (file://, or NBD
 * through libnbd), writes them into the COW device with O_DIRECT and
 * answers FILL_DONE.  DEVICE_ADD/REMOVE keep its device table current;
 * HYDRATE_CTL is logged and ignored.  A QUIESCE is answered at once: being
 * synchronous, rcow-fill has no write in flight when it reads one.  SIGTERM/SIGINT end it cleanly
 * (UNREGISTER, stats written, exit 0).
 *
 * Failure injection for the tests:
 *   --delay-ms N          sleep N ms before each fill
 *   --fail-cookie-every N answer every Nth fault with status EIO, unfilled
 *   --exit-after N        _exit(3) on receiving the Nth fault, unanswered
 *   --once                answer one fault, then exit 0
 *   --ignore-quiesce      never answer QUIESCE (an old or hung helper)
 *   --base-override URI   read every device from URI instead (null: reads
 *                         zeroes) - e.g. to show which data the kernel kept
 *   --stats FILE          key=value counts at exit (faults, extents, bytes)
 *   --ready FILE          create FILE once registered and the device list
 *                         is read: tests wait for it instead of sleeping
 *
 * Exit status: 0 clean exit, 1 error (message on stderr), 2 usage,
 * 3 --exit-after fired.
 *
 * Single-threaded and synchronous on purpose: the kernel's fault queue is
 * what is under test, and a simple helper makes its failures easy to read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "rcow/base.h"
#include "rcow/cow.h"
#include "rcow/fill.h"
#include "rcow/nl.h"

#define PROG "rcow-fill"

struct options {
	bool once;
	bool ignore_quiesce;
	unsigned int delay_ms;
	unsigned long fail_every;
	unsigned long exit_after;
	const char *base_override;
	const char *stats_path;
	const char *ready_path;
	const char *node_dir;
	int verbose;
};

struct stats {
	unsigned long long faults, answered, extents, bytes_read, bytes_zero, bytes_written;
	unsigned long long fill_errors, injected_errors, stale_cookies, devices_added, devices_removed;
};

struct device {
	struct device *next;
	struct rcow_device_info info;
	struct rcow_geom geom;
	struct rcow_base *base;	/* opened at the first fault */
	struct rcow_cow *cow;
};

struct helper {
	struct options opt;
	struct stats st;
	struct rcow_nl *nl;
	struct device *devices;
	struct rcow_filler filler;
};

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"Answer remote-cow faults from each device's base (selftest helper).\n"
		"  --once                  answer one fault, then exit\n"
		"  --ignore-quiesce        never answer QUIESCE (an old or hung helper)\n"
		"  --delay-ms N            sleep N ms before each fill\n"
		"  --fail-cookie-every N   answer every Nth fault with EIO without filling it\n"
		"  --exit-after N          _exit(3) on receiving the Nth fault, before answering it\n"
		"  --base-override URI     read all devices from URI (file://, nbd..., or null:)\n"
		"  --stats FILE            write key=value counters to FILE at exit\n"
		"  --ready FILE            create FILE once registered and devices are known\n"
		"  --node-dir DIR          where to make private COW device nodes (default /run)\n"
		"  -v, --verbose           log every fault (twice: every event)\n"
		"  -h, --help\n"
		"Exit status: 0 ok, 1 error, 2 usage, 3 --exit-after fired.\n");
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || !*s || *end || *s == '-' || v > max)
		return false;
	*out = v;
	return true;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "once", no_argument, NULL, 'o' },
		{ "ignore-quiesce", no_argument, NULL, 'q' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "fail-cookie-every", required_argument, NULL, 'f' },
		{ "exit-after", required_argument, NULL, 'x' },
		{ "base-override", required_argument, NULL, 'b' },
		{ "stats", required_argument, NULL, 's' },
		{ "ready", required_argument, NULL, 'r' },
		{ "node-dir", required_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	int c;

	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->once = true;
			break;
		case 'q':
			o->ignore_quiesce = true;
			break;
		case 'd':
			if (!parse_ulong(optarg, 3600 * 1000, &v))
				goto bad_number;
			o->delay_ms = (unsigned int)v;
			break;
		case 'f':
			if (!parse_ulong(optarg, ULONG_MAX, &o->fail_every))
				goto bad_number;
			break;
		case 'x':
			if (!parse_ulong(optarg, ULONG_MAX, &o->exit_after))
				goto bad_number;
			break;
		case 'b':
			o->base_override = optarg;
			break;
		case 's':
			o->stats_path = optarg;
			break;
		case 'r':
			o->ready_path = optarg;
			break;
		case 'n':
			o->node_dir = optarg;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		logmsg("unexpected argument '%s'; see --help", argv[optind]);
		return -1;
	}
	return 0;
bad_number:
	logmsg("option value '%s' is not a non-negative number in range; see --help", optarg);
	return -1;
}

/* ---- device table ----------------------------------------------------- */

static struct device *find_device(struct helper *h, uint32_t id)
{
	for (struct device *d = h->devices; d; d = d->next)
		if (d->info.dev_id == id)
			return d;
	return NULL;
}

static void free_device(struct device *d)
{
	rcow_base_close(d->base);
	rcow_cow_close(d->cow);
	free(d);
}

static void remove_device(struct helper *h, uint32_t id)
{
	for (struct device **p = &h->devices; *p; p = &(*p)->next) {
		if ((*p)->info.dev_id == id) {
			struct device *d = *p;

			*p = d->next;
			free_device(d);
			return;
		}
	}
}

/* Add or replace (a reloaded table may change geometry or base). */
static int add_device(const struct rcow_device_info *info, void *data)
{
	struct helper *h = data;
	struct device *d = calloc(1, sizeof(*d));
	struct rcow_err err = { 0 };

	if (!d) {
		logmsg("out of memory adding device %u", info->dev_id);
		return -ENOMEM;
	}
	d->info = *info;
	d->geom = (struct rcow_geom){ info->extent_sectors, info->nr_extents, info->data_offset,
				      info->dev_sectors };
	if (rcow_geom_check(&d->geom, &err))
		logmsg("device %u (%s): the kernel reported an inconsistent geometry: %s; its faults will fail",
		       info->dev_id, info->dm_name, err.msg);
	remove_device(h, info->dev_id);
	d->next = h->devices;
	h->devices = d;
	h->st.devices_added++;
	if (h->opt.verbose)
		logmsg("device %u: name=%s cow=%u:%u extent_sectors=%u nr_extents=%llu base=%s",
		       info->dev_id, info->dm_name, info->cow_major, info->cow_minor,
		       info->extent_sectors, (unsigned long long)info->nr_extents, info->base_uri);
	return 0;
}

/* Open base and COW on first use. */
static int open_device(struct helper *h, struct device *d, struct rcow_err *err)
{
	const char *uri = h->opt.base_override ? h->opt.base_override : d->info.base_uri;
	int r;

	r = rcow_geom_check(&d->geom, err);
	if (r)
		return r;
	if (!d->base) {
		if (!strcmp(uri, "null:"))
			r = rcow_base_open_null(d->geom.dev_sectors * 512, &d->base, err);
		else
			r = rcow_base_open(uri, &d->base, err);
		if (r)
			return r;
		if (d->base->size < d->geom.dev_sectors * 512)
			logmsg("device %u: base %s is %llu bytes, shorter than the device (%llu): the rest reads as zeroes",
			       d->info.dev_id, uri, (unsigned long long)d->base->size,
			       (unsigned long long)d->geom.dev_sectors * 512);
	}
	if (!d->cow) {
		r = rcow_cow_open_dev(d->info.cow_major, d->info.cow_minor, h->opt.node_dir, &d->cow, err);
		if (r)
			return r;
	}
	return 0;
}

/* ---- events ----------------------------------------------------------- */

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int handle_fault(struct helper *h, const struct rcow_fault *f)
{
	struct rcow_fill_stats fs = { 0 };
	struct device *d;
	struct rcow_err err = { 0 };
	uint32_t status = 0;
	int r;

	h->st.faults++;
	if (h->opt.verbose)
		logmsg("fault #%llu: device %u extents %llu+%u cookie %llu", h->st.faults, f->dev_id,
		       (unsigned long long)f->first, f->count, (unsigned long long)f->cookie);
	if (h->opt.exit_after && h->st.faults == h->opt.exit_after) {
		logmsg("--exit-after %lu: exiting without answering cookie %llu", h->opt.exit_after,
		       (unsigned long long)f->cookie);
		_exit(3);
	}
	if (h->opt.delay_ms)
		sleep_ms(h->opt.delay_ms);

	d = find_device(h, f->dev_id);
	if (!d) {
		struct rcow_device_info info = { 0 };

		if (rcow_nl_get_device(h->nl, f->dev_id, &info, &err) == 0 && add_device(&info, h) == 0)
			d = find_device(h, f->dev_id);
		else
			logmsg("fault for unknown device %u and no record for it: %s", f->dev_id, err.msg);
	}
	if (!d) {
		status = ENODEV;
	} else if (h->opt.fail_every && h->st.faults % h->opt.fail_every == 0) {
		status = EIO;
		h->st.injected_errors++;
		if (h->opt.verbose)
			logmsg("--fail-cookie-every %lu: answering cookie %llu with EIO",
			       h->opt.fail_every, (unsigned long long)f->cookie);
	} else {
		r = open_device(h, d, &err);
		if (!r)
			r = rcow_fill_range(&h->filler, &d->geom, d->base, d->cow, f->first, f->count,
					    &fs, &err);
		if (r) {
			status = (uint32_t)(-r);
			h->st.fill_errors++;
			logmsg("device %u (%s): cannot fill extents %llu+%u: %s; answering %s",
			       f->dev_id, d->info.dm_name, (unsigned long long)f->first, f->count,
			       err.msg, strerror((int)status));
		}
		h->st.extents += fs.extents;
		h->st.bytes_read += fs.bytes_read;
		h->st.bytes_zero += fs.bytes_zero;
		h->st.bytes_written += fs.bytes_written;
	}

	r = rcow_nl_fill_done(h->nl, f, status, &err);
	if (r == -ENOENT || r == -ENODEV) {
		/* the kernel stopped waiting (device removed, fault resent twice): harmless */
		h->st.stale_cookies++;
		if (h->opt.verbose)
			logmsg("kernel no longer waits for cookie %llu: %s", (unsigned long long)f->cookie,
			       err.msg);
		return 0;
	}
	if (r) {
		logmsg("answering cookie %llu failed: %s", (unsigned long long)f->cookie, err.msg);
		return r;
	}
	h->st.answered++;
	return 0;
}

/*
 * Every fault read before the QUIESCE has been written and answered: the
 * answer can go at once.
 */
static int handle_quiesce(struct helper *h, const struct rcow_quiesce *q)
{
	struct rcow_err err = { 0 };
	int r;

	if (h->opt.ignore_quiesce) {
		logmsg("device %u: ignoring QUIESCE %llu (--ignore-quiesce)", q->dev_id,
		       (unsigned long long)q->cookie);
		return 0;
	}
	r = rcow_nl_quiesce_done(h->nl, q, &err);
	if (r == -ENOENT || r == -ENODEV) {
		logmsg("device %u: the kernel no longer waits for QUIESCE %llu: %s", q->dev_id,
		       (unsigned long long)q->cookie, err.msg);
		return 0;
	}
	if (r)
		logmsg("device %u: answering QUIESCE %llu failed: %s", q->dev_id,
		       (unsigned long long)q->cookie, err.msg);
	else if (h->opt.verbose)
		logmsg("device %u: quiesced (%llu)", q->dev_id, (unsigned long long)q->cookie);
	return r;
}

/* Returns 1 to stop (after --once), 0 to go on, <0 on a fatal error. */
static int handle_event(struct helper *h, const struct rcow_event *ev)
{
	char buf[16];
	int r;

	switch (ev->cmd) {
	case RCOW_CMD_FAULT:
		r = handle_fault(h, &ev->u.fault);
		if (r)
			return r;
		return h->opt.once ? 1 : 0;
	case RCOW_CMD_DEVICE_ADD:
		return add_device(&ev->u.dev, h);
	case RCOW_CMD_DEVICE_REMOVE:
		if (h->opt.verbose)
			logmsg("device %u removed", ev->u.dev.dev_id);
		remove_device(h, ev->u.dev.dev_id);
		h->st.devices_removed++;
		return 0;
	case RCOW_CMD_QUIESCE:
		return handle_quiesce(h, &ev->u.quiesce);
	case RCOW_CMD_PROMOTE:
		/* it fills every fault at once, in order: nothing to move ahead */
		return 0;
	case RCOW_CMD_HYDRATE_CTL:
		if (h->opt.verbose)
			logmsg("device %u: hydrate %s ignored (rcow-fill does not stream)",
			       ev->u.hydrate.dev_id, ev->u.hydrate.start ? "start" : "stop");
		return 0;
	default:
		logmsg("ignoring unknown message %s from the kernel (newer module?)",
		       rcow_cmd_name(ev->cmd, buf, sizeof(buf)));
		return 0;
	}
}

static int write_stats(const struct helper *h)
{
	const struct stats *s = &h->st;
	char tmp[PATH_MAX];
	FILE *f;

	if (!h->opt.stats_path)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", h->opt.stats_path);
	f = fopen(tmp, "w");
	if (!f) {
		logmsg("cannot write stats file %s: %s", tmp, strerror(errno));
		return -1;
	}
	fprintf(f, "faults=%llu\nanswered=%llu\nextents=%llu\nbytes_read=%llu\nbytes_zero=%llu\n"
		   "bytes_written=%llu\nfill_errors=%llu\ninjected_errors=%llu\nstale_cookies=%llu\n"
		   "devices_added=%llu\ndevices_removed=%llu\n",
		s->faults, s->answered, s->extents, s->bytes_read, s->bytes_zero, s->bytes_written,
		s->fill_errors, s->injected_errors, s->stale_cookies, s->devices_added,
		s->devices_removed);
	if (fclose(f) != 0 || rename(tmp, h->opt.stats_path) != 0) {
		logmsg("cannot write stats file %s: %s", h->opt.stats_path, strerror(errno));
		return -1;
	}
	return 0;
}

static int touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0) {
		logmsg("cannot create ready file %s: %s", path, strerror(errno));
		return -1;
	}
	return close(fd);
}

static void nl_log(void *data, const char *line)
{
	(void)data;
	logmsg("%s", line);
}

static int run(struct helper *h, int sigfd)
{
	const struct rcow_nl_helper nlh = { .device = add_device, .log = nl_log, .data = h };
	struct rcow_event ev = { 0 };
	struct rcow_err err = { 0 };
	int r;

	r = rcow_nl_connect(&h->nl, &nlh, &err);
	if (r) {
		logmsg("%s", err.msg);
		return r;
	}
	if (h->opt.verbose)
		logmsg("registered as the remote-cow helper; %llu device(s)", h->st.devices_added);
	if (h->opt.ready_path && touch(h->opt.ready_path))
		return -EIO;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = rcow_nl_fd(h->nl), .events = POLLIN },
			{ .fd = sigfd, .events = POLLIN },
		};

		if (!rcow_nl_has_queued(h->nl)) {
			if (poll(pfd, 2, -1) < 0) {
				if (errno == EINTR)
					continue;
				logmsg("poll failed: %s", strerror(errno));
				return -errno;
			}
			if (pfd[1].revents) {
				struct signalfd_siginfo si;

				if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si) && h->opt.verbose)
					logmsg("%s: exiting", strsignal((int)si.ssi_signo));
				return 0;
			}
		}
		r = rcow_nl_helper_event(h->nl, &nlh, &ev, 0, &err);
		if (r == 0)
			continue;
		if (r < 0) {
			logmsg("%s", err.msg);
			return r;
		}
		if (h->opt.verbose > 1) {
			char b[16];

			logmsg("event %s", rcow_cmd_name(ev.cmd, b, sizeof(b)));
		}
		r = handle_event(h, &ev);
		if (r > 0)
			return 0;
		if (r < 0)
			return r;
	}
}

int main(int argc, char **argv)
{
	struct helper h = { 0 };
	struct rcow_err err = { 0 };
	sigset_t mask;
	int sigfd, r;

	if (parse_options(argc, argv, &h.opt))
		return 2;
	setvbuf(stderr, NULL, _IOLBF, 0);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sigfd < 0) {
		logmsg("signalfd failed: %s", strerror(errno));
		return 1;
	}

	r = run(&h, sigfd);

	if (rcow_nl_disconnect(h.nl, &err) && r == 0)
		logmsg("unregistering failed: %s", err.msg);
	while (h.devices) {
		struct device *d = h.devices;

		h.devices = d->next;
		free_device(d);
	}
	rcow_filler_free(&h.filler);
	if (write_stats(&h) && r == 0)
		r = -EIO;
	close(sigfd);
	return r ? 1 : 0;
}
