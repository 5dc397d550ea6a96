// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-commit.c - remote-cow commit: the dm messages "snapshot commit <uri>
 * [since-last]" and "snapshot abort", and with --wait follow the status
 * line's commit_state until the commit is done or failed.
 *
 * The kernel freezes the set at the message and answers at once; the
 * helper uploads it.  Waiting sleeps on the device's dm events (the kernel
 * raises one when a commit ends), waking every half second on a terminal
 * to redraw the progress, every few seconds otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rc.h"
#include "rcow/uri.h"
#include "remote_cow.h"

static const char help[] =
	"Usage: " PROG " commit NAME --to URI [--since-last] [--wait]\n"
	"       " PROG " commit NAME --abort [--wait]\n"
	"       " PROG " commit NAME --wait\n"
	"\n"
	"Snapshot commit: freeze the extents written on NAME as they are at this\n"
	"instant and have remote-cowd upload them to URI, each at its own offset,\n"
	"while the guest keeps running.  URI is a writable NBD export at least as\n"
	"large as NAME: nbd://HOST[:PORT]/EXPORT, nbds://HOST[:PORT]/EXPORT or\n"
	"nbd+unix:///EXPORT?socket=PATH (for example qemu-nbd serving a qcow2\n"
	"overlay whose backing file is the base: the overlay becomes the new\n"
	"version).  Writes after the freeze are not part of the commit; extents\n"
	"that read as zeroes are sent as zero requests.  Progress: '" PROG " status'.\n"
	"\n"
	"  --to URI      upload to this NBD export\n"
	"  --since-last  only the extents written since the last completed commit\n"
	"                (and those of a commit that failed since): for a target that\n"
	"                already holds the last commit's version\n"
	"  --wait        wait until the commit is done (exit 0) or failed (exit 1),\n"
	"                with its progress on standard error when that is a\n"
	"                terminal; without --to, wait for the commit in progress\n"
	"  --abort       abort the commit in progress (it ends failed)\n"
	"  -h, --help    this text\n"
	"\n"
	"Exit status: 0 accepted (with --wait: done), 1 refused or failed, 2 bad\n"
	"usage, 3 no such device, 4 not a remote-cow device, 6 not supported by\n"
	"this dm-remote-cow module, 7 a commit is already running on NAME.\n";

enum { O_TO = 1, O_SINCE_LAST, O_WAIT, O_ABORT };

static const struct rc_opt opts[] = {
	{ "to", true, O_TO, 0 },
	{ "since-last", false, O_SINCE_LAST, 0 },
	{ "wait", false, O_WAIT, 0 },
	{ "abort", false, O_ABORT, 0 },
	{ NULL, false, 0, 0 },
};

/* Why the kernel refused "snapshot commit", in the user's terms. */
static const struct rc_errno_text commit_errors[] = {
	{ EBUSY, "a commit is already running on %s (wait for it with --wait, or --abort it)",
	  RC_EXIT_BUSY },
	{ ENOTCONN, "no remote-cowd running to upload the commit of %s: start it, then commit again",
	  RC_EXIT_FAIL },
	{ EROFS, "%s is read-only or its metadata failed: it cannot freeze a commit",
	  RC_EXIT_FAIL },
	{ EINVAL, "the kernel refused the commit of %s (its reason below)", RC_EXIT_FAIL },
	{ EAGAIN, "%s is suspended or being suspended: resume it, then commit again",
	  RC_EXIT_FAIL },
	{ 0, NULL, 0 },
};

static const struct rc_errno_text abort_errors[] = {
	{ ENOENT, "no commit is running on %s", RC_EXIT_FAIL },
	{ EALREADY, "no commit is running on %s", RC_EXIT_FAIL },
	{ ENOTCONN, "no remote-cowd running on %s", RC_EXIT_FAIL },
	{ 0, NULL, 0 },
};

/* The commit target: an NBD URI that the table's parser accepts.  0 or an exit code. */
static int check_target(const char *uri)
{
	struct rcow_uri u;
	struct rcow_err err = { 0 };
	bool file;

	if (rcow_uri_parse(uri, &u, &err))
		return rc_usage_err("commit", "bad target URI '%s': %s", uri, err.msg);
	file = u.scheme == RCOW_SCHEME_FILE;
	rcow_uri_free(&u);
	if (file)
		return rc_usage_err("commit", "bad target URI '%s': a commit goes to an NBD export "
				    "(nbd://, nbds://, nbd+unix://), not to a file", uri);
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double pct(uint64_t a, uint64_t b)
{
	return b ? 100.0 * (double)a / (double)b : 100.0;
}

/* The last kernel log line about the commit of name, if any. */
static void report_kernel_reason(const char *name, int kfd)
{
	char by_dev[32], by_name[160], line[1024];
	const char *needles[] = { by_dev, by_name, NULL };

	rc_dm_log_needles(name, by_dev, sizeof(by_dev), by_name, sizeof(by_name));
	if (rc_kmsg_last(kfd, needles, "commit", line, sizeof(line)))
		rc_note("  kernel: %s", line);
	else if (kfd >= 0)
		rc_note("  (no kernel log line about it; remote-cowd's log may say more)");
}

/*
 * Wait until the commit of name is no longer uploading.  aborting: after
 * --abort (any end is fine).  0 done (or stopped, aborting), else an exit
 * code (printed).
 */
static int wait_commit(const char *name, const char *uri, bool aborting, int kfd)
{
	bool tty = isatty(STDERR_FILENO), told_helper = false, drawn = false;
	double t0 = now();

	for (;;) {
		struct rc_dm_info info;
		struct rc_dev d;
		int r;

		/* the event counter first: an event after it wakes the wait below */
		r = rc_dm_info(name, &info);
		if (r <= 0) {
			if (drawn)
				fputc('\n', stderr);
			if (!r)
				rc_err("commit %s: the device went away", name);
			return r ? RC_EXIT_FAIL : RC_EXIT_NODEV;
		}
		r = rc_dev_read(name, &d, false);
		if (r) {
			if (drawn)
				fputc('\n', stderr);
			return r;
		}
		if (!strcmp(d.commit_state, "uploading")) {
			if (tty) {
				fprintf(stderr, "\r%s: commit %" PRIu64 ": %" PRIu64 "/%" PRIu64
					" extents uploaded (%.1f %%), %.0f s  ", name, d.commit_gen,
					d.commit_done, d.commit_total,
					pct(d.commit_done, d.commit_total), now() - t0);
				drawn = true;
			}
			if (!told_helper && strcmp(d.helper, "connected")) {
				if (drawn)
					fputc('\n', stderr);
				drawn = false;
				rc_note("%s: no helper is connected: the upload waits for remote-cowd",
					name);
				told_helper = true;
			} else if (told_helper && !strcmp(d.helper, "connected")) {
				told_helper = false;
			}
			rc_dev_free(&d);
			r = rc_dm_wait_event(name, info.event_nr, tty ? 500 : 3000);
			if (r) {
				if (drawn)
					fputc('\n', stderr);
				if (r == RC_EXIT_NODEV)
					rc_err("commit %s: the device went away", name);
				return r;
			}
			continue;
		}
		if (drawn)
			fputc('\n', stderr);
		if (!strcmp(d.commit_state, "done")) {
			if (aborting)
				printf("%s: commit %" PRIu64 " completed before the abort\n", name,
				       d.commit_gen);
			else
				printf("%s: commit %" PRIu64 " done: %" PRIu64 " extents uploaded%s%s"
				       " in %.1f s\n", name, d.commit_gen, d.commit_total,
				       uri ? " to " : "", uri ? uri : "", now() - t0);
			rc_dev_free(&d);
			return RC_EXIT_OK;
		}
		if (!strcmp(d.commit_state, "failed")) {
			if (aborting) {
				printf("%s: commit %" PRIu64 " aborted after %" PRIu64 " of %" PRIu64
				       " extents\n", name, d.commit_gen, d.commit_done, d.commit_total);
				rc_dev_free(&d);
				return RC_EXIT_OK;
			}
			rc_err("commit %s: commit %" PRIu64 " failed after %" PRIu64 " of %" PRIu64
			       " extents; the target does not hold a complete version", name,
			       d.commit_gen, d.commit_done, d.commit_total);
			report_kernel_reason(name, kfd);
			rc_dev_free(&d);
			return RC_EXIT_FAIL;
		}
		/* idle: no commit since the table was loaded (or it was reloaded) */
		if (aborting) {
			printf("%s: no commit in progress\n", name);
			rc_dev_free(&d);
			return RC_EXIT_OK;
		}
		rc_err("commit %s: no commit in progress (commit state '%s'%s)", name,
		       d.commit_state, uri ? "; was the table reloaded?" : "");
		rc_dev_free(&d);
		return RC_EXIT_FAIL;
	}
}

int cmd_commit(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "commit", .help = help,
			     .max_args = 2 };
	const char *name = NULL, *uri = NULL, *extra = NULL, *arg;
	bool since_last = false, wait = false, abort_it = false;
	char msg[REMOTE_COW_MAX_URI + 64];
	struct rc_dev d;
	int id, r, kfd;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_TO:
			uri = arg;
			break;
		case O_SINCE_LAST:
			since_last = true;
			break;
		case O_WAIT:
			wait = true;
			break;
		case O_ABORT:
			abort_it = true;
			break;
		default:
			if (!name)
				name = arg;
			else
				extra = arg;
		}
	}
	if (!name)
		return rc_usage_err("commit", "missing the device NAME");
	if (extra)
		return rc_usage_err("commit", "unexpected argument '%s' (the target goes after --to)",
				    extra);
	if (abort_it && (uri || since_last))
		return rc_usage_err("commit", "--abort takes no --to or --since-last");
	if (!abort_it && !uri && !wait)
		return rc_usage_err("commit", "where to? give --to URI (or --abort, or --wait)");
	if (since_last && !uri)
		return rc_usage_err("commit", "--since-last goes with --to URI");
	if (uri) {
		r = check_target(uri);
		if (r)
			return r;
	}
	r = rc_dev_read(name, &d, false);
	rc_dev_free(&d);
	if (r)
		return r;
	if (!d.commit_state[0]) {
		rc_err("commit %s: its status line has no commit fields: this dm-remote-cow "
		       "module does not support snapshot commit", name);
		return RC_EXIT_UNSUPP;
	}

	kfd = rc_kmsg_open();	/* the kernel's reason, should the commit fail */
	if (abort_it) {
		r = rc_dm_message_ex(name, "snapshot abort", "commit --abort", abort_errors, NULL);
		if (!r && !wait)
			printf("%s: abort requested; '" PROG " status %s' shows the commit failed\n",
			       name, name);
	} else if (uri) {
		snprintf(msg, sizeof(msg), "snapshot commit %s%s", uri,
			 since_last ? " since-last" : "");
		r = rc_dm_message_ex(name, msg, "commit", commit_errors, NULL);
		if (!r && !wait) {
			r = rc_dev_read(name, &d, false);
			if (!r)
				printf("%s: commit %" PRIu64 " frozen: %" PRIu64 " extents to upload "
				       "to %s; progress: " PROG " status %s\n", name, d.commit_gen,
				       d.commit_total, uri, name);
			rc_dev_free(&d);
		}
	}
	if (r == RC_EXIT_UNSUPP)
		rc_note("commit: this dm-remote-cow module does not support snapshot commit yet");
	if (!r && wait)
		r = wait_commit(name, uri, abort_it, kfd);
	rc_kmsg_close(kfd);
	return r;
}
