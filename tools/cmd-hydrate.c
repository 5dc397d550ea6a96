// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-hydrate.c - remote-cow hydrate: start or stop background streaming
 * of the missing extents (dm messages "hydrate start [<MiB/s>]" and
 * "hydrate stop"), and with --wait follow the status line until every
 * extent is present.
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rc.h"

static const char help[] =
	"Usage: " PROG " hydrate NAME start [--rate MiB/s] [--wait]\n"
	"       " PROG " hydrate NAME stop\n"
	"\n"
	"start: ask the helper (remote-cowd) to copy every missing extent of NAME\n"
	"from the base into the COW device in the background; guest I/O keeps\n"
	"priority.  Streaming ends by itself once every extent is present.\n"
	"stop: stop it (what was copied stays).\n"
	"\n"
	"  --rate MiB/s  at most this rate (default 0: unlimited)\n"
	"  --wait        print the progress until every extent is present; fails\n"
	"                if hydration is stopped before\n"
	"  -h, --help    this text\n";

enum { O_RATE = 1, O_WAIT };

static const struct rc_opt opts[] = {
	{ "rate", true, O_RATE, 0 },
	{ "wait", false, O_WAIT, 0 },
	{ NULL, false, 0, 0 },
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int wait_hydrated(const char *name)
{
	bool tty = isatty(STDOUT_FILENO), told_helper = false;
	double t0 = now(), last_line = -1e9;
	uint64_t last_present = UINT64_MAX;
	int r;

	for (;;) {
		struct rc_dev d;
		double t = now();
		bool done, stopped;

		r = rc_dev_read(name, &d, false);
		if (r) {
			if (tty)
				putchar('\n');
			return r;
		}
		done = d.present >= d.total;
		stopped = !done && strcmp(d.hydrate_state, "hydrating");
		if (tty || done || stopped ||
		    (d.present != last_present && t - last_line >= 5.0)) {
			printf("%s%s: %" PRIu64 "/%" PRIu64 " extents present (%.1f %%), %.0f s%s",
			       tty ? "\r" : "", name, d.present, d.total,
			       d.total ? 100.0 * (double)d.present / (double)d.total : 100.0,
			       t - t0, tty && !done && !stopped ? "  " : "\n");
			fflush(stdout);
			last_line = t;
			last_present = d.present;
		}
		if (!done && !stopped && !told_helper && strcmp(d.helper, "connected")) {
			if (tty)
				putchar('\n');
			rc_note("%s: no helper is connected: waiting for remote-cowd to start", name);
			told_helper = true;
		}
		rc_dev_free(&d);
		if (done) {
			printf("%s: hydrated: every extent is in the COW device\n", name);
			return RC_EXIT_OK;
		}
		if (stopped) {
			rc_err("hydrate %s: hydration was stopped before every extent was present",
			       name);
			return RC_EXIT_FAIL;
		}
		usleep(tty ? 500000 : 1000000);
	}
}

int cmd_hydrate(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "hydrate", .help = help,
			     .max_args = 2 };
	const char *name = NULL, *verb = NULL, *rate = NULL, *arg;
	bool wait = false;
	uint64_t mibs = 0;
	struct rc_dev d;
	char msg[64];
	int id, r;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_RATE:
			rate = arg;
			break;
		case O_WAIT:
			wait = true;
			break;
		default:
			if (!name)
				name = arg;
			else
				verb = arg;
		}
	}
	if (!name || !verb)
		return rc_usage_err("hydrate", "expected: hydrate NAME start|stop");
	if (strcmp(verb, "start") && strcmp(verb, "stop"))
		return rc_usage_err("hydrate", "unknown action '%s': start or stop", verb);
	if (!strcmp(verb, "stop") && (rate || wait))
		return rc_usage_err("hydrate", "--rate and --wait go with 'start'");
	if (rate && rc_parse_uint(rate, UINT32_MAX, &mibs))
		return rc_usage_err("hydrate", "bad rate '%s': MiB/s, a whole number (0: unlimited)",
				    rate);
	r = rc_dev_check(name, &d);
	if (r)
		return r;
	if (!strcmp(verb, "start") && strcmp(d.helper, "connected"))
		rc_note("%s: no helper is connected: hydration starts when remote-cowd does", name);

	if (!strcmp(verb, "stop"))
		snprintf(msg, sizeof(msg), "hydrate stop");
	else if (rate)
		snprintf(msg, sizeof(msg), "hydrate start %" PRIu64, mibs);
	else
		snprintf(msg, sizeof(msg), "hydrate start");
	r = rc_dm_message(name, msg, "hydrate");
	if (r || !wait)
		return r;
	return wait_hydrated(name);
}
