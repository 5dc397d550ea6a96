// SPDX-License-Identifier: GPL-2.0
/*
 * dm.c - device-mapper through libdevmapper.
 *
 * libdevmapper's own log lines are kept back (the tool says what failed in
 * its own words, with the kernel's errno and log lines); set
 * REMOTE_COW_DEBUG=1 to see them.
 *
 * Without a running udev (a minimal system, the test VM) nobody would make
 * the /dev/mapper nodes: the tool then turns udev synchronisation off, so
 * that libdevmapper makes and removes the nodes itself, as DM_DISABLE_UDEV=1
 * does for dmsetup.
 */
#include <errno.h>
#include <libdevmapper.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "rc.h"

static bool dm_debug;
static char dm_last_msg[512];

__attribute__((format(printf, 5, 6)))
static void dm_log(int level, const char *file, int line, int dm_errno_or_class,
		   const char *f, ...)
{
	va_list ap;

	(void)file;
	(void)line;
	(void)dm_errno_or_class;
	if ((level & 7) > 3 && !dm_debug)	/* above _LOG_ERR */
		return;
	va_start(ap, f);
	if (dm_debug) {
		va_list aq;

		va_copy(aq, ap);
		fputs("libdevmapper: ", stderr);
		vfprintf(stderr, f, aq);
		fputc('\n', stderr);
		va_end(aq);
	}
	if ((level & 7) <= 3)
		vsnprintf(dm_last_msg, sizeof(dm_last_msg), f, ap);
	va_end(ap);
}

static bool udev_running(void)
{
	return access("/run/udev/control", F_OK) == 0;
}

void rc_dm_init(void)
{
	const char *dbg = getenv("REMOTE_COW_DEBUG");

	dm_debug = dbg && *dbg && strcmp(dbg, "0");
	dm_log_with_errno_init(dm_log);
	if (getenv("DM_DISABLE_UDEV") || !udev_running())
		dm_udev_set_sync_support(0);
}

/* Say why a task failed: the kernel's errno, else libdevmapper's message. */
static void task_failed(struct dm_task *dmt, const char *what)
{
	int e = dm_task_get_errno(dmt);

	if (e)
		rc_err("%s: %s", what, strerror(e));
	else if (dm_last_msg[0])
		rc_err("%s: %s", what, dm_last_msg);
	else
		rc_err("%s failed", what);
	if (e == EACCES || e == EPERM)
		rc_note("(device-mapper needs root)");
}

/* dm_task_create, saying why it failed (it checks the kernel driver first). */
static struct dm_task *task_create(int type)
{
	struct dm_task *dmt = dm_task_create(type);

	if (!dmt) {
		if (geteuid())
			rc_err("cannot use device-mapper: it needs root");
		else
			rc_err("cannot use device-mapper (is the dm-mod module loaded?)%s%s",
			       dm_last_msg[0] ? ": " : "", dm_last_msg);
	}
	return dmt;
}

int rc_dm_info(const char *name, struct rc_dm_info *info)
{
	struct dm_task *dmt = task_create(DM_DEVICE_INFO);
	struct dm_info di;
	const char *uuid;
	int r = -1;

	memset(info, 0, sizeof(*info));
	if (!dmt)
		return -1;
	if (!dm_task_set_name(dmt, name)) {
		rc_err("'%s' is not a valid device-mapper name", name);
		goto out;
	}
	if (!dm_task_run(dmt) || !dm_task_get_info(dmt, &di)) {
		if (dm_task_get_errno(dmt) == ENXIO || dm_task_get_errno(dmt) == ENODEV) {
			r = 0;
			goto out;
		}
		task_failed(dmt, "reading device-mapper devices");
		goto out;
	}
	r = di.exists ? 1 : 0;
	info->exists = di.exists;
	info->suspended = di.suspended;
	info->read_only = di.read_only;
	info->open_count = di.open_count;
	info->major = di.major;
	info->minor = di.minor;
	info->event_nr = di.event_nr;
	uuid = dm_task_get_uuid(dmt);
	if (uuid)
		snprintf(info->uuid, sizeof(info->uuid), "%s", uuid);
out:
	dm_task_destroy(dmt);
	return r;
}

int rc_dm_get(const char *name, int task, struct rc_dm_table *out)
{
	struct dm_task *dmt = task_create(task);
	void *next = NULL;
	int r = RC_EXIT_FAIL;

	memset(out, 0, sizeof(*out));
	if (!dmt)
		return RC_EXIT_FAIL;
	if (!dm_task_set_name(dmt, name) || !dm_task_no_open_count(dmt))
		goto out;
	if (!dm_task_run(dmt)) {
		int e = dm_task_get_errno(dmt);

		if (e == ENXIO || e == ENODEV) {
			r = RC_EXIT_NODEV;
			goto out;
		}
		task_failed(dmt, task == DM_DEVICE_STATUS ? "reading the status" :
			    "reading the table");
		goto out;
	}
	do {
		uint64_t start, length;
		char *type = NULL, *params = NULL;
		struct rc_dm_target *t;

		next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
		if (!type)
			break;
		t = realloc(out->t, (out->n + 1) * sizeof(*t));
		if (!t)
			goto out;
		out->t = t;
		t = &out->t[out->n];
		t->start = start;
		t->length = length;
		t->type = strdup(type);
		t->params = strdup(params ? params : "");
		out->n++;
		if (!t->type || !t->params)
			goto out;
	} while (next);
	r = 0;
out:
	dm_task_destroy(dmt);
	if (r)
		rc_dm_table_free(out);
	return r;
}

void rc_dm_table_free(struct rc_dm_table *t)
{
	size_t i;

	for (i = 0; i < t->n; i++) {
		free(t->t[i].type);
		free(t->t[i].params);
	}
	free(t->t);
	memset(t, 0, sizeof(*t));
}

int rc_dm_list_names(char ***names)
{
	struct dm_task *dmt = task_create(DM_DEVICE_LIST);
	struct dm_names *dn;
	char **v = NULL;
	size_t n = 0;
	int r = RC_EXIT_FAIL;

	*names = NULL;
	if (!dmt)
		return RC_EXIT_FAIL;
	if (!dm_task_run(dmt)) {
		task_failed(dmt, "listing device-mapper devices");
		goto out;
	}
	dn = dm_task_get_names(dmt);
	v = calloc(1, sizeof(*v));
	if (!v)
		goto out;
	if (dn && dn->dev) {
		unsigned int next = 0;

		do {
			char **nv;

			dn = (struct dm_names *)((char *)dn + next);
			nv = realloc(v, (n + 2) * sizeof(*v));
			if (!nv)
				goto out;
			v = nv;
			v[n] = strdup(dn->name);
			v[++n] = NULL;
			if (!v[n - 1])
				goto out;
			next = dn->next;
		} while (next);
	}
	*names = v;
	v = NULL;
	r = 0;
out:
	rc_dm_free_names(v);
	dm_task_destroy(dmt);
	return r;
}

void rc_dm_free_names(char **names)
{
	char **p;

	if (!names)
		return;
	for (p = names; *p; p++)
		free(*p);
	free(names);
}

int rc_dm_create(const char *name, const char *uuid, uint64_t length, const char *params,
		 bool read_only)
{
	struct dm_task *dmt = task_create(DM_DEVICE_CREATE);
	static const char *const needles[] = { "remote-cow", "device-mapper: table", NULL };
	uint32_t cookie = 0;
	int kfd, r = RC_EXIT_FAIL, ok;

	if (!dmt)
		return RC_EXIT_FAIL;
	if (!dm_task_set_name(dmt, name) || !dm_task_set_uuid(dmt, uuid) ||
	    (read_only && !dm_task_set_ro(dmt)) ||
	    !dm_task_add_target(dmt, 0, length, RC_TARGET, params) ||
	    !dm_task_set_add_node(dmt, DM_ADD_NODE_ON_RESUME) ||
	    !dm_task_set_cookie(dmt, &cookie, 0)) {
		rc_err("create %s: cannot prepare the device-mapper request", name);
		goto out;
	}
	kfd = rc_kmsg_open();
	ok = dm_task_run(dmt);
	if (!ok) {
		int e = dm_task_get_errno(dmt);

		if (e == EBUSY && rc_dm_info(name, &(struct rc_dm_info){ 0 }) == 1)
			rc_err("create %s: a device-mapper device of that name exists already",
			       name);
		else
			task_failed(dmt, "create: the kernel refused the table");
		rc_kmsg_report(kfd, needles);
	}
	rc_kmsg_close(kfd);
	dm_udev_wait(cookie);
	r = ok ? 0 : RC_EXIT_FAIL;
out:
	dm_task_destroy(dmt);
	return r;
}

static int simple_task(int task, const char *name, bool no_flush, bool retry, bool deferred,
		       uint64_t error_length, const char *what)
{
	struct dm_task *dmt = task_create(task);
	uint32_t cookie = 0;
	bool cookie_task = task == DM_DEVICE_RESUME || task == DM_DEVICE_REMOVE;
	int r = RC_EXIT_FAIL;

	if (!dmt)
		return RC_EXIT_FAIL;
	if (!dm_task_set_name(dmt, name) || (no_flush && !dm_task_no_flush(dmt)) ||
	    (retry && !dm_task_retry_remove(dmt)) ||
	    (deferred && !dm_task_deferred_remove(dmt)) ||
	    (error_length && !dm_task_add_target(dmt, 0, error_length, "error", "")) ||
	    (cookie_task && !dm_task_set_cookie(dmt, &cookie, 0))) {
		rc_err("%s: cannot prepare the device-mapper request", what);
		goto out;
	}
	if (dm_task_run(dmt))
		r = 0;
	else
		task_failed(dmt, what);
	if (cookie_task)
		dm_udev_wait(cookie);
out:
	dm_task_destroy(dmt);
	return r;
}

int rc_dm_remove(const char *name, bool force, uint64_t length)
{
	struct rc_dm_info info;
	char what[256];
	int r;

	if (force) {
		/*
		 * An error table first, switched in with a noflush suspend, so
		 * that I/O waiting for missing extents fails at once instead of
		 * holding the removal; then a deferred removal if the device is
		 * still open.
		 */
		snprintf(what, sizeof(what), "remove %s: loading an error table", name);
		r = simple_task(DM_DEVICE_RELOAD, name, false, false, false, length, what);
		if (!r) {
			snprintf(what, sizeof(what), "remove %s: switching to the error table",
				 name);
			r = simple_task(DM_DEVICE_RESUME, name, true, false, false, 0, what);
		}
		if (r)
			return r;
		if (rc_dm_info(name, &info) == 1 && info.open_count > 0) {
			snprintf(what, sizeof(what), "remove %s", name);
			r = simple_task(DM_DEVICE_REMOVE, name, false, false, true, 0, what);
			if (!r)
				printf("%s is still open: its I/O fails from now on, and it will be "
				       "removed when it is closed\n", name);
			return r;
		}
	}
	snprintf(what, sizeof(what), "remove %s", name);
	return simple_task(DM_DEVICE_REMOVE, name, false, force, false, 0, what);
}

void rc_dm_log_needles(const char *name, char *by_dev, size_t dev_len, char *by_name,
		       size_t name_len)
{
	struct rc_dm_info info;

	/* The target names the device by major:minor or by name. */
	if (rc_dm_info(name, &info) == 1)
		snprintf(by_dev, dev_len, "remote-cow: %u:%u: ", info.major, info.minor);
	else
		snprintf(by_dev, dev_len, "remote-cow: ");
	snprintf(by_name, name_len, "remote-cow: %s: ", name);
}

int rc_dm_message_ex(const char *name, const char *msg, const char *what,
		     const struct rc_errno_text *texts, int *err)
{
	struct dm_task *dmt = task_create(DM_DEVICE_TARGET_MSG);
	char by_dev[32], by_name[160];
	const char *needles[] = { by_dev, by_name, NULL };
	int kfd, r = RC_EXIT_FAIL;

	if (err)
		*err = 0;
	if (!dmt)
		return RC_EXIT_FAIL;
	rc_dm_log_needles(name, by_dev, sizeof(by_dev), by_name, sizeof(by_name));
	if (!dm_task_set_name(dmt, name) || !dm_task_set_sector(dmt, 0) ||
	    !dm_task_set_message(dmt, msg)) {
		rc_err("%s: cannot prepare the device-mapper request", what);
		goto out;
	}
	kfd = rc_kmsg_open();
	if (dm_task_run(dmt)) {
		r = 0;
	} else {
		int e = dm_task_get_errno(dmt);
		const struct rc_errno_text *t = texts;

		while (t && t->text && t->err != e)
			t++;
		if (err)
			*err = e;
		if (e && t && t->text) {
			fprintf(stderr, PROG ": %s: ", what);
			fprintf(stderr, t->text, name);
			fprintf(stderr, " (%s)\n", strerror(e));
		} else if (e) {
			rc_err("%s: the kernel refused '%s' on %s: %s", what, msg, name,
			       strerror(e));
		} else {
			task_failed(dmt, what);
		}
		rc_kmsg_report(kfd, needles);
		r = e == EOPNOTSUPP ? RC_EXIT_UNSUPP : t && t->text ? t->exit_code : RC_EXIT_FAIL;
	}
	rc_kmsg_close(kfd);
out:
	dm_task_destroy(dmt);
	return r;
}

int rc_dm_message(const char *name, const char *msg, const char *what)
{
	return rc_dm_message_ex(name, msg, what, NULL, NULL);
}

static void on_alarm(int sig)
{
	(void)sig;	/* only interrupts the wait */
}

int rc_dm_wait_event(const char *name, uint32_t event_nr, unsigned int timeout_ms)
{
	struct itimerval it = { 0 }, off = { 0 };
	struct sigaction sa = { 0 }, old_sa;
	struct dm_task *dmt;
	int r = RC_EXIT_FAIL, e;

	dmt = task_create(DM_DEVICE_WAITEVENT);
	if (!dmt)
		return RC_EXIT_FAIL;
	if (!dm_task_set_name(dmt, name) || !dm_task_set_event_nr(dmt, event_nr) ||
	    !dm_task_no_open_count(dmt)) {
		rc_err("waiting for %s: cannot prepare the device-mapper request", name);
		goto out;
	}
	/*
	 * The ioctl sleeps until the device's event counter passes event_nr;
	 * SIGALRM, without SA_RESTART, ends it with EINTR after the timeout
	 * (dmeventd waits the same way).
	 */
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old_sa);
	it.it_value.tv_sec = timeout_ms / 1000;
	it.it_value.tv_usec = (timeout_ms % 1000) * 1000;
	setitimer(ITIMER_REAL, &it, NULL);
	if (dm_task_run(dmt)) {
		r = 0;
	} else {
		e = dm_task_get_errno(dmt);
		if (e == EINTR)
			r = 0;
		else if (e == ENXIO || e == ENODEV)
			r = RC_EXIT_NODEV;
		else
			task_failed(dmt, "waiting for a device-mapper event");
	}
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old_sa, NULL);
out:
	dm_task_destroy(dmt);
	return r;
}
