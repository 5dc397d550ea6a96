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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon.h"
#include "safefile.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57	/* Linux 5.6 */
#endif

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
		"      --run-dir DIR       live migration keys and receive specs (default "
		RCOWD_RUN_DIR ")\n"
		"      --migrate-peer-timeout DURATION\n"
		"                          a live migration's peer silent this long is dead\n"
		"                          (e.g. 30s; default: migrate_peer_timeout, 60s)\n"
		"      --migrate-mirror MODE\n"
		"                          when a live migration's source mirrors writes:\n"
		"                          auto (once rounds stop shrinking), always, or\n"
		"                          throttle (slow writes down first, then mirror)\n"
		"                          (default: migrate_mirror, auto)\n"
		"      --migrate-postcopy-rate RATE\n"
		"                          a post-copy destination streams in the background\n"
		"                          at most RATE bytes/s, e.g. 16M (guest reads are\n"
		"                          never held back; 0: no limit; default:\n"
		"                          migrate_postcopy_rate, 0)\n"
		"  -v, --verbose           more log lines (twice: every fault)\n"
		"  -h, --help              this text\n"
		"  -V, --version           print the version\n"
		"Logs go to standard error.  SIGTERM/SIGINT: unregister, write stats, exit 0.\n"
		"SIGHUP: read the configuration file again (for bases opened from then on).\n"
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

/*
 * The option getopt_long refused: argv[optind - 1] for a long one (it has
 * moved past it), optopt for a short one.
 */
static void bad_option(int c, char **argv, const struct option *longopts)
{
	const char *word = argv[optind - 1];
	int n = (int)strcspn(word, "=");

	if (optopt && optopt < 256 && strncmp(word, "--", 2)) {
		if (c == ':')
			logmsg("option '-%c' needs a value; see --help", optopt);
		else
			logmsg("unknown option '-%c'; see --help", optopt);
		return;
	}
	if (c == ':') {
		logmsg("option '%s' needs a value; see --help", word);
		return;
	}
	if (optopt) {		/* "--name=value" for an option without a value */
		for (; longopts->name; longopts++)
			if (longopts->val == optopt)
				break;
		logmsg("option '--%s' takes no value; see --help", longopts->name);
		return;
	}
	for (const struct option *o = longopts; o->name; o++) {
		if (!strncmp(o->name, word + 2, (size_t)n - 2)) {
			char cands[256] = "";

			for (; o->name; o++)
				if (!strncmp(o->name, word + 2, (size_t)n - 2) &&
				    strlen(cands) + strlen(o->name) + 5 < sizeof(cands))
					snprintf(cands + strlen(cands), sizeof(cands) - strlen(cands),
						 "%s--%s", cands[0] ? ", " : "", o->name);
			logmsg("option '%.*s' is ambiguous: %s", n, word, cands);
			return;
		}
	}
	logmsg("unknown option '%.*s'; see --help", n, word);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum { O_STATS = 256, O_READY, O_NODE, O_CONN, O_MIF, O_PF, O_RUN, O_MPT, O_MMIR, O_MPCR };
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "config", required_argument, NULL, 'c' },
		{ "connections", required_argument, NULL, O_CONN },
		{ "max-in-flight", required_argument, NULL, O_MIF },
		{ "prefetch-max", required_argument, NULL, O_PF },
		{ "stats", required_argument, NULL, O_STATS },
		{ "ready", required_argument, NULL, O_READY },
		{ "node-dir", required_argument, NULL, O_NODE },
		{ "run-dir", required_argument, NULL, O_RUN },
		{ "migrate-peer-timeout", required_argument, NULL, O_MPT },
		{ "migrate-mirror", required_argument, NULL, O_MMIR },
		{ "migrate-postcopy-rate", required_argument, NULL, O_MPCR },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *range = NULL;
	uint64_t sz;
	int c, li = -1;

	o->connections = o->max_in_flight = o->prefetch_max = -1;
	opterr = 0;		/* our own messages, naming the option */
	while ((c = getopt_long(argc, argv, ":fc:vhV", longopts, &li)) != -1) {
		switch (c) {
		case 'f':
			o->foreground = true;
			break;
		case 'c':
			o->config_path = optarg;
			break;
		case O_CONN:
			range = "a number from 1 to 16";
			if (parse_num(optarg, 1, 16, &o->connections))
				goto bad;
			break;
		case O_MIF:
			range = "a number from 1 to 1024";
			if (parse_num(optarg, 1, 1024, &o->max_in_flight))
				goto bad;
			break;
		case O_PF:
			range = "a size from 0 to 64M (e.g. 8M)";
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
		case O_RUN:
			o->run_dir = optarg;
			break;
		case O_MPT:
			range = RCOW_MIG_PEER_TIMEOUT_RANGE;
			if (rcow_parse_mig_peer_timeout(optarg, &o->mig_peer_timeout_ms))
				goto bad;
			break;
		case O_MMIR:
			range = RCOW_MIG_MIRROR_CHOICES;
			if (rcow_parse_mig_mirror(optarg, &o->mig_mirror))
				goto bad;
			o->mig_mirror_set = true;
			break;
		case O_MPCR:
			range = RCOW_MIG_POSTCOPY_RATE_RANGE;
			if (rcow_parse_mig_postcopy_rate(optarg, &o->mig_postcopy_rate))
				goto bad;
			o->mig_postcopy_rate_set = true;
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
			bad_option(c, argv, longopts);
			return -1;
		}
	}
	if (optind != argc) {
		logmsg("unexpected argument '%s'; see --help", argv[optind]);
		return -1;
	}
	return 0;
bad:
	/* only long options take numbers: li names the one just parsed */
	logmsg("option '--%s': '%s' is not %s", longopts[li].name, optarg, range);
	return -1;
}

static int write_stats(const struct daemon *d)
{
	const struct stats *s = &d->st;
	struct bufcache_stats bs;
	char why[PATH_MAX + 160], *text = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	if (!d->opt.stats_path)
		return 0;
	bufcache_stats(d->bufs, &bs);
	f = open_memstream(&text, &len);
	if (!f) {
		logmsg("cannot write stats file %s: out of memory", d->opt.stats_path);
		return -1;
	}
	fprintf(f,
		"faults=%llu\nanswered=%llu\nextents=%llu\nbytes_read=%llu\nbytes_zero=%llu\n"
		"bytes_written=%llu\nfill_errors=%llu\ninjected_errors=0\nstale_cookies=%llu\n"
		"devices_added=%llu\ndevices_removed=%llu\nguest_faults=%llu\nprefetch_faults=%llu\n"
		"hydrate_faults=%llu\npromoted=%llu\nprefetch_requests=%llu\nprefetch_extents=%llu\n"
		"hydrate_requests=%llu\nhydrate_extents=%llu\nreconnects=%llu\nretries=%llu\n"
		"connect_failures=%llu\nfault_extents=%llu\nmerged=%llu\nsplits=%llu\n"
		"fills=%llu\nqueue_us=%llu\nread_us=%llu\nwrite_us=%llu\nwindow=%llu\nbw=%llu\n"
		"rtt_us=%llu\nturns=%llu\nbuffers_mapped=%llu\nbuffers_reused=%llu\n"
		"buffers_cached=%llu\nbuffers_peak=%llu\nmigrate_bytes_sent=%llu\n"
		"migrate_bytes_received=%llu\nmigrate_data_bytes=%llu\nmigrate_extents=%llu\n"
		"migrations_sent=%llu\nmigrations_received=%llu\n",
		s->faults, s->answered, s->extents, s->bytes_read, s->bytes_zero, s->bytes_written,
		s->fill_errors, s->stale_cookies, s->devices_added, s->devices_removed,
		s->guest_faults, s->prefetch_faults, s->hydrate_faults, s->promoted,
		s->prefetch_requests,
		s->prefetch_extents, s->hydrate_requests, s->hydrate_extents, s->reconnects,
		s->retries, s->connect_failures, s->fault_extents, s->merged, s->splits, s->fills,
		s->queue_us, s->read_us, s->write_us, s->window, s->bw, s->rtt_us, s->turns,
		(unsigned long long)bs.maps, (unsigned long long)bs.reuses,
		(unsigned long long)bs.cached_bytes, (unsigned long long)bs.peak_bytes,
		s->migrate_bytes_sent, s->migrate_bytes_received, s->migrate_data_bytes,
		s->migrate_extents, s->migrations_sent, s->migrations_received);
	if (fclose(f) != 0 || !text) {
		free(text);
		logmsg("cannot write stats file %s: out of memory", d->opt.stats_path);
		return -1;
	}
	r = safe_replace(d->opt.stats_path, text, len, 0644, why, sizeof(why));
	free(text);
	if (r) {
		logmsg("stats file: %s", why);
		return -1;
	}
	return 0;
}

static int touch(const char *path)
{
	char why[PATH_MAX + 160];
	int fd = safe_create(path, 0644, why, sizeof(why));

	if (fd < 0) {
		logmsg("ready file: %s", why);
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

/*
 * SIGHUP: read the configuration again.  It applies to bases opened from
 * then on (a base in use keeps its connections and credentials; restart to
 * apply it everywhere).  A file that does not parse changes nothing.  The
 * old configuration stays allocated until exit: open bases point into it.
 */
static void reload_config(struct daemon *d)
{
	struct rcow_config fresh;
	struct rcow_err err = { 0 };
	const char *used;

	rcow_config_init(&fresh);
	if (rcow_config_load_default(&fresh, d->opt.config_path, &used, &err)) {
		logmsg("SIGHUP: %s; keeping the configuration in use", err.msg);
		rcow_config_free(&fresh);
		return;
	}
	if (config_vec_push(&d->retired, d->cfg)) {
		logmsg("SIGHUP: out of memory; keeping the configuration in use");
		rcow_config_free(&fresh);
		return;
	}
	d->cfg = fresh;
	logmsg("SIGHUP: configuration %s%s; it applies to bases opened from now on",
	       used ? "read again from " : "file gone, using the defaults", used ? used : "");
}

/*
 * remote-cowd is in the block I/O path of its devices: a page of it that
 * must be read back from swap, or an allocation that waits for writeback,
 * may wait for a fill only remote-cowd itself can do.  Lock its memory and
 * mark it an I/O flusher (no reclaim I/O from its allocations, no
 * throttling behind the writeback it serves).  Threads started later
 * inherit the flag.  Failures are warnings: the daemon still works.
 */
static void enter_io_path(void)
{
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		logmsg("warning: cannot lock the daemon's memory (mlockall: %s): under memory pressure it may be paged out while the kernel waits for it, which can deadlock a system that swaps or writes back onto a remote-cow device; run as root or raise RLIMIT_MEMLOCK (LimitMEMLOCK=infinity)",
		       strerror(errno));
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		logmsg("warning: cannot mark the daemon as an I/O flusher (PR_SET_IO_FLUSHER: %s; needs CAP_SYS_RESOURCE and Linux 5.6): its allocations may wait for writeback onto its own devices",
		       strerror(errno));
}

static int run(struct daemon *d, int sigfd)
{
	struct rcow_nl_helper h = nl_helper(d);
	struct rcow_err err = { 0 };
	int r;

	d->kops = &kernel_nl_ops;
	d->kctx = d;
	sd_notify(0, "STATUS=registering with the dm-remote-cow kernel target");
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
	/*
	 * systemd (Type=notify): registered, and the kernel's device list is
	 * read (rcow_nl_connect() returns after its dump).  No NOTIFY_SOCKET:
	 * nothing is sent.
	 */
	sd_notifyf(0, "READY=1\nSTATUS=registered with the kernel; serving %llu device(s)",
		   d->st.devices_added);

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
				if (si.ssi_signo == SIGHUP) {
					reload_config(d);
					continue;
				}
				logmsg("%s: exiting", strsignal((int)si.ssi_signo));
				sd_notify(0, "STOPPING=1\nSTATUS=exiting: closing connections");
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
	sigaddset(&mask, SIGHUP);
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
	/* after daemon(): neither locks nor threads survive a fork */
	enter_io_path();
	/*
	 * The fills' buffers: kept up to the most ever out at once, which is
	 * a base's window of reads plus the fills waiting for the COW writers;
	 * at most four windows (256 MiB by default).
	 */
	d.bufs = bufcache_new(4 * d.cfg.global.max_window);
	if (!d.bufs) {
		logmsg("cannot allocate the buffer cache");
		return 1;
	}
	/* signals stay blocked in the threads */
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
	bufcache_free(d.bufs);
	rcow_config_free(&d.cfg);
	for (size_t i = 0; i < d.retired.len; i++)
		rcow_config_free(&d.retired.ptr[i]);
	config_vec_free(&d.retired);
	close(sigfd);
	return r ? 1 : 0;
}
