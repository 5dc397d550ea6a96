// SPDX-License-Identifier: GPL-2.0
/*
 * remote-cowd - the remote-cow helper daemon (remote-cowd(8)).
 *
 * Registers with the dm-remote-cow kernel target over generic netlink,
 * learns every remote-cow device (a dump at start, DEVICE_ADD and
 * DEVICE_REMOVE events after) and answers the kernel's FAULTs by fetching
 * the missing extents from each device's base and writing them into its
 * COW device.  One thread, one poll() loop; see daemon.h for the parts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "daemon.h"

#ifndef RCOW_VERSION
#define RCOW_VERSION "0.1"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"Serve every remote-cow device on this host: fetch missing extents from\n"
		"each device's base (nbd://, nbds://, nbd+unix://, file://) into its COW device.\n"
		"\n"
		"  -f, --foreground        stay in the foreground (systemd, tests)\n"
		"  -c, --config FILE       configuration file (default " RCOW_DEFAULT_CONFIG
		" if it exists)\n"
		"      --connections N     NBD connections per base when the server allows (1-16)\n"
		"      --max-in-flight N   reads in flight per base (1-1024)\n"
		"      --prefetch-max SIZE read-ahead window cap, e.g. 8M (0: no prefetch)\n"
		"      --stats FILE        write key=value counters to FILE at exit and on SIGUSR1\n"
		"      --ready FILE        create FILE once registered and the devices are known\n"
		"      --node-dir DIR      where to make private COW device nodes (default /run)\n"
		"  -v, --verbose           more log lines (twice: every fault)\n"
		"  -h, --help              this text\n"
		"  -V, --version           print the version\n"
		"Logs go to standard error.  SIGTERM/SIGINT: unregister, write stats, exit 0.\n"
		"Exit status: 0 clean exit, 1 error, 2 usage error.  See remote-cowd(8).\n");
}

static int parse_num(const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || !*s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum { O_STATS = 256, O_READY, O_NODE, O_CONN, O_MIF, O_PF };
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "config", required_argument, NULL, 'c' },
		{ "connections", required_argument, NULL, O_CONN },
		{ "max-in-flight", required_argument, NULL, O_MIF },
		{ "prefetch-max", required_argument, NULL, O_PF },
		{ "stats", required_argument, NULL, O_STATS },
		{ "ready", required_argument, NULL, O_READY },
		{ "node-dir", required_argument, NULL, O_NODE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t sz;
	int c;

	o->connections = o->max_in_flight = o->prefetch_max = -1;
	while ((c = getopt_long(argc, argv, "fc:vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o->foreground = true;
			break;
		case 'c':
			o->config_path = optarg;
			break;
		case O_CONN:
			if (parse_num(optarg, 1, 16, &o->connections))
				goto bad;
			break;
		case O_MIF:
			if (parse_num(optarg, 1, 1024, &o->max_in_flight))
				goto bad;
			break;
		case O_PF:
			if (rcow_parse_size(optarg, &sz) || sz > (64u << 20))
				goto bad;
			o->prefetch_max = (long long)sz;
			break;
		case O_STATS:
			o->stats_path = optarg;
			break;
		case O_READY:
			o->ready_path = optarg;
			break;
		case O_NODE:
			o->node_dir = optarg;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf(PROG " " RCOW_VERSION "\n");
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
bad:
	logmsg("option value '%s' is out of range or not a number; see --help", optarg);
	return -1;
}

static int write_stats(const struct daemon *d)
{
	const struct stats *s = &d->st;
	char tmp[PATH_MAX];
	FILE *f;

	if (!d->opt.stats_path)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->opt.stats_path);
	f = fopen(tmp, "w");
	if (!f) {
		logmsg("cannot write stats file %s: %s", tmp, strerror(errno));
		return -1;
	}
	fprintf(f,
		"faults=%llu\nanswered=%llu\nextents=%llu\nbytes_read=%llu\nbytes_zero=%llu\n"
		"bytes_written=%llu\nfill_errors=%llu\ninjected_errors=0\nstale_cookies=%llu\n"
		"devices_added=%llu\ndevices_removed=%llu\nguest_faults=%llu\nprefetch_faults=%llu\n"
		"hydrate_faults=%llu\nprefetch_requests=%llu\nprefetch_extents=%llu\n"
		"hydrate_requests=%llu\nhydrate_extents=%llu\nreconnects=%llu\nretries=%llu\n"
		"connect_failures=%llu\n",
		s->faults, s->answered, s->extents, s->bytes_read, s->bytes_zero, s->bytes_written,
		s->fill_errors, s->stale_cookies, s->devices_added, s->devices_removed,
		s->guest_faults, s->prefetch_faults, s->hydrate_faults, s->prefetch_requests,
		s->prefetch_extents, s->hydrate_requests, s->hydrate_extents, s->reconnects,
		s->retries, s->connect_failures);
	if (fclose(f) != 0 || rename(tmp, d->opt.stats_path) != 0) {
		logmsg("cannot write stats file %s: %s", d->opt.stats_path, strerror(errno));
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

/*
 * An answer sent without waiting was refused.  ENOENT/ENODEV for a
 * FILL_DONE: the kernel no longer waits for that fault (it timed out, or
 * the device went away), which is counted, not an error.
 */
static void nl_refused(void *data, uint8_t cmd, int error, const char *line)
{
	struct daemon *d = data;

	if (cmd == RCOW_CMD_FILL_DONE && (error == ENOENT || error == ENODEV)) {
		d->st.stale_cookies++;
		vlog(d, 1, "%s", line);
		return;
	}
	logmsg("%s", line);
}

/*
 * The kernel's device list goes to the engine, also after an overflow
 * (devices gone from it are forgotten); refusals and bad messages to the log.
 */
static struct rcow_nl_helper nl_helper(struct daemon *d)
{
	return (struct rcow_nl_helper){ .device = engine_add_device, .log = nl_log,
					.resync = engine_resync, .refused = nl_refused,
					.data = d };
}

/* Handle every kernel message already received.  <0 on a fatal error. */
static int drain_netlink(struct daemon *d)
{
	struct rcow_nl_helper h = nl_helper(d);
	struct rcow_event ev;
	struct rcow_err err = { 0 };
	int r;

	for (int i = 0; i < 1024; i++) {
		r = rcow_nl_helper_event(d->nl, &h, &ev, 0, &err);
		if (r == 0)
			return 0;
		if (r < 0) {
			logmsg("netlink: %s", err.msg);
			return r;
		}
		engine_event(d, &ev);
	}
	return 0;
}

static int run(struct daemon *d, int sigfd)
{
	struct rcow_nl_helper h = nl_helper(d);
	struct rcow_err err = { 0 };
	int r;

	d->kops = &kernel_nl_ops;
	d->kctx = d;
	r = rcow_nl_connect(&d->nl, &h, &err);
	if (r) {
		logmsg("%s", err.msg);
		if (d->nl && rcow_nl_kernel_error(d->nl) == EBUSY)
			logmsg("another helper (remote-cowd or a test helper) is registered; stop it first");
		return r;
	}
	logmsg("registered as the remote-cow helper; serving %llu device(s)",
	       d->st.devices_added);
	if (d->opt.ready_path && touch(d->opt.ready_path))
		return -EIO;

	for (;;) {
		struct pollfd ex[2] = {
			{ .fd = rcow_nl_fd(d->nl), .events = POLLIN },
			{ .fd = sigfd, .events = POLLIN },
		};

		r = drain_netlink(d);
		if (r)
			return r;
		/* events already read from the socket do not show in poll */
		r = loop_turn(d, ex, 2, rcow_nl_has_queued(d->nl) ? 0 : -1);
		if (r)
			return r;
		if (ex[1].revents) {
			struct signalfd_siginfo si;

			if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGUSR1) {
					write_stats(d);
					continue;
				}
				logmsg("%s: exiting", strsignal((int)si.ssi_signo));
			}
			return 0;
		}
	}
}

/*
 * Exiting on a signal: close NBD connections in order (at most 2 s), so
 * servers see a disconnect rather than a reset with requests in flight.
 * Reads that complete meanwhile are written and answered as usual, and
 * writes already handed to the writer threads are waited for.
 */
static void quiesce(struct daemon *d)
{
	uint64_t deadline = now_ms() + 2000, now;

	d->stopping = true;
	while ((now = now_ms()) < deadline) {
		bool done = writer_backlog(d) == 0;

		for (struct src *s = d->srcs; s; s = s->next)
			if (!s->ops->quiesce(s))
				done = false;
		if (done)
			return;
		if (loop_poll_sources(d, (int)(deadline - now < 100 ? deadline - now : 100)))
			return;
	}
}

int main(int argc, char **argv)
{
	struct daemon d;
	struct rcow_err err = { 0 };
	const char *cfg_path;
	sigset_t mask;
	int sigfd, r;

	memset(&d, 0, sizeof(d));
	if (parse_options(argc, argv, &d.opt))
		return 2;
	setvbuf(stderr, NULL, _IOLBF, 0);
	rcow_config_init(&d.cfg);
	if (rcow_config_load_default(&d.cfg, d.opt.config_path, &cfg_path, &err)) {
		logmsg("%s", err.msg);
		return 1;
	}
	if (cfg_path)
		vlog(&d, 1, "configuration read from %s", cfg_path);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sigfd < 0) {
		logmsg("signalfd failed: %s", strerror(errno));
		return 1;
	}
	if (!d.opt.foreground && daemon(0, 1) < 0) {
		logmsg("cannot go to the background: %s", strerror(errno));
		return 1;
	}
	/* after daemon(): threads do not survive a fork; signals stay blocked in them */
	r = writer_start(&d);
	if (r) {
		logmsg("cannot start the COW writer threads: %s", strerror(-r));
		return 1;
	}

	r = run(&d, sigfd);
	if (r == 0)
		quiesce(&d);

	/* faults not yet answered are resent by the kernel to the next helper */
	if (rcow_nl_disconnect(d.nl, &err) && r == 0)
		logmsg("unregistering failed: %s", err.msg);
	if (write_stats(&d) && r == 0)
		r = -EIO;
	writer_stop(&d);
	rcow_config_free(&d.cfg);
	close(sigfd);
	return r ? 1 : 0;
}
