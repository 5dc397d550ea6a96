// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-receive.c - remote-cow receive: the destination of a live
 * migration.  Writes the receive spec that remote-cowd picks up (its run
 * directory's migrate/recv-NAME: "listen HOST:PORT", then the PSK file,
 * mode 0600), then creates the device with the "incoming" table feature:
 * remote-cowd sees it incoming, listens and accepts one migration
 * authenticated by the key.  Also rc_put_secret(), the private file
 * writer that 'migrate --psk' uses for the source's key.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rc.h"
#include "rcow/mig-proto.h"

static const char help[] =
	"Usage: " PROG " receive NAME... --cow DEV... --base URI... --listen HOST:PORT\n"
	"                  --psk FILE [--extent-size SIZE] [--size SIZE]\n"
	"                  [--fault-timeout MS] [--run-dir DIR]\n"
	"\n"
	"Create /dev/mapper/NAME as the destination of a live migration: it holds\n"
	"every I/O until the migration completes.  remote-cowd listens on\n"
	"HOST:PORT and accepts one migration from a source that proves the key of\n"
	"FILE (GnuTLS psktool's format, identity:hexkey; the same file on both\n"
	"hosts) and whose device has the same size, extent size and base URI.\n"
	"Start the source with '" PROG " migrate NAME --to HOST:PORT --psk FILE'.\n"
	"If the migration fails or is aborted, NAME stays unusable: remove it.\n"
	"\n"
	"Several NAMEs receive several devices as one unit, from a source that\n"
	"migrates as many devices together: give one --cow and one --base per\n"
	"NAME, in the same order (the first --cow and --base are the first NAME's);\n"
	"the source's devices pair with them by position.  They all complete, or\n"
	"none does.\n"
	"\n"
	"  --cow DEV            the local COW block device (zeroed, see 'cow-size')\n"
	"  --base URI           the base: the source's base URI, exactly\n"
	"  --listen HOST:PORT   where remote-cowd listens ([::]:PORT, 0.0.0.0:PORT\n"
	"                       for any address)\n"
	"  --psk FILE           the pre-shared key\n"
	"  --extent-size SIZE   as the source's (default 64K; every NAME)\n"
	"  --size SIZE          device length (default: the base's size; every NAME)\n"
	"  --fault-timeout MS   as for create\n"
	"  --run-dir DIR        remote-cowd's run directory (default " RC_RUN_DIR ")\n"
	"  -h, --help           this text\n";

enum { O_COW = 1, O_BASE, O_LISTEN, O_PSK, O_EXT, O_SIZE, O_TIMEOUT, O_RUNDIR };

static const struct rc_opt opts[] = {
	{ "cow", true, O_COW, 0 },
	{ "base", true, O_BASE, 0 },
	{ "listen", true, O_LISTEN, 0 },
	{ "psk", true, O_PSK, 0 },
	{ "extent-size", true, O_EXT, 0 },
	{ "size", true, O_SIZE, 0 },
	{ "fault-timeout", true, O_TIMEOUT, 0 },
	{ "run-dir", true, O_RUNDIR, 0 },
	{ NULL, false, 0, 0 },
};

int rc_put_secret(const char *run_dir, const char *file, const char *text, size_t len,
		  char *path, size_t cap)
{
	int fd, n;

	n = snprintf(path, cap, "%s", run_dir);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	if (mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	n = snprintf(path, cap, "%s/migrate", run_dir);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	n = snprintf(path, cap, "%s/migrate/%s", run_dir, file);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd)) {
		n = errno ? errno : EIO;
		close(fd);
		unlink(path);
		return -n;
	}
	return close(fd) ? -errno : 0;
}

/* The PSK file's text, read once and checked.  0 or an exit code (printed). */
int rc_read_psk(const char *cmd, const char *file, char *text, size_t *len)
{
	struct rcow_err err = { 0 };
	struct mig_psk psk;
	int r;

	r = mig_psk_read(file, text, len, &psk, &err);
	mig_psk_wipe(&psk);
	if (r) {
		rc_err("%s: %s", cmd, err.msg);
		return RC_EXIT_USAGE;
	}
	return 0;
}

/* Remove the devices names[0, n) that this receive created (a later one failed). */
static void undo_created(char **names, int n)
{
	for (int i = 0; i < n; i++) {
		struct rc_dev d = { 0 };

		if (!rc_dev_check(names[i], &d))
			rc_dm_remove(names[i], true, d.sectors);
	}
}

/* Every NAME new, every NAME and every COW device named once.  0 or an exit code. */
static int check_names(char **names, char **cows, int n)
{
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < i; k++) {
			if (!strcmp(names[i], names[k]))
				return rc_usage_err("receive", "device %s named twice", names[i]);
			if (!strcmp(cows[i], cows[k]))
				return rc_usage_err("receive", "COW device %s given twice", cows[i]);
		}
		if (strlen(names[i]) > MIG_NAME_MAX)
			return rc_usage_err("receive", "device name longer than %d characters",
					    MIG_NAME_MAX);
	}
	for (int i = 0; i < n; i++)
		if (rc_dm_info(names[i], &(struct rc_dm_info){ 0 }) == 1) {
			rc_err("receive %s: a device-mapper device of that name exists already%s",
			       names[i], n > 1 ? "; nothing was created" : "");
			return RC_EXIT_FAIL;
		}
	return 0;
}

int cmd_receive(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "receive", .help = help,
			     .max_args = MIG_GROUP_MAX };
	char *names[MIG_GROUP_MAX], *cows[MIG_GROUP_MAX], *uris[MIG_GROUP_MAX];
	const char *listen = NULL, *psk = NULL;
	const char *ext = NULL, *size = NULL, *tmo = NULL, *run_dir = RC_RUN_DIR, *arg;
	char spec[MIG_GROUP_MAX][PATH_MAX], file[300];
	char *text;
	char *cargv[16];
	size_t len = 0;
	int id, n, r, cargc, nn = 0, nc = 0, nu = 0, made = 0, written = 0;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_COW:
			if (nc == MIG_GROUP_MAX)
				return rc_usage_err("receive", "at most %d devices", MIG_GROUP_MAX);
			cows[nc++] = (char *)arg;
			break;
		case O_BASE:
			if (nu == MIG_GROUP_MAX)
				return rc_usage_err("receive", "at most %d devices", MIG_GROUP_MAX);
			uris[nu++] = (char *)arg;
			break;
		case O_LISTEN:
			listen = arg;
			break;
		case O_PSK:
			psk = arg;
			break;
		case O_EXT:
			ext = arg;
			break;
		case O_SIZE:
			size = arg;
			break;
		case O_TIMEOUT:
			tmo = arg;
			break;
		case O_RUNDIR:
			run_dir = arg;
			break;
		default:
			names[nn++] = (char *)arg;
		}
	}
	if (!nn)
		return rc_usage_err("receive", "missing the device NAME");
	if (!nc || !nu || !listen || !psk)
		return rc_usage_err("receive", "needs --cow DEV --base URI --listen HOST:PORT --psk FILE");
	if (nc != nn || nu != nn)
		return rc_usage_err("receive", "%d device name%s, %d --cow, %d --base: one --cow and one --base per NAME, in order",
				    nn, nn == 1 ? "" : "s", nc, nu);
	if (strlen(listen) > MIG_ADDR_MAX || !rc_valid_hostport(listen))
		return rc_usage_err("receive", "bad listen address '%s': HOST:PORT, port 1-65535",
				    listen);
	text = malloc(MIG_SPEC_MAX + 1);
	if (!text) {
		rc_err("receive: out of memory");
		return RC_EXIT_FAIL;
	}
	n = snprintf(text, MIG_SPEC_MAX + 1, "listen %s\n", listen);
	for (int i = 0; nn > 1 && i < nn; i++)
		n += snprintf(text + n, MIG_SPEC_MAX + 1 - (size_t)n, "member %s\n", names[i]);
	r = rc_read_psk("receive", psk, text + n, &len);
	if (!r)
		r = check_names(names, cows, nn);
	for (; !r && written < nn; written++) {
		snprintf(file, sizeof(file), "recv-%s", names[written]);
		r = rc_put_secret(run_dir, file, text, (size_t)n + len, spec[written],
				  sizeof(spec[written]));
		if (r) {
			rc_err("receive %s: cannot write the receive spec under %s: %s",
			       names[written], run_dir, strerror(-r));
			r = RC_EXIT_FAIL;
		}
	}
	explicit_bzero(text, MIG_SPEC_MAX + 1);
	free(text);
	for (; !r && made < nn; made++) {
		cargc = 0;
		cargv[cargc++] = (char *)"create";
		cargv[cargc++] = names[made];
		cargv[cargc++] = (char *)"--cow";
		cargv[cargc++] = cows[made];
		cargv[cargc++] = (char *)"--base";
		cargv[cargc++] = uris[made];
		cargv[cargc++] = (char *)"--incoming";
		if (ext) {
			cargv[cargc++] = (char *)"--extent-size";
			cargv[cargc++] = (char *)ext;
		}
		if (size) {
			cargv[cargc++] = (char *)"--size";
			cargv[cargc++] = (char *)size;
		}
		if (tmo) {
			cargv[cargc++] = (char *)"--fault-timeout";
			cargv[cargc++] = (char *)tmo;
		}
		cargv[cargc] = NULL;
		r = cmd_create(cargc, cargv);
		if (r)
			break;
	}
	if (r) {
		/* all or nothing: the specs first, so that no job starts on what stays */
		for (int i = 0; i < written; i++)
			unlink(spec[i]);
		undo_created(names, made);
		if (made)
			rc_note("receive: removed the %d device%s created before the failure", made,
				made == 1 ? "" : "s");
		return r;
	}
	for (int i = 0; i < nn; i++)
		printf("receive %s: remote-cowd listens on %s for the migration%s; I/O waits until it completes\n",
		       names[i], listen, nn > 1 ? " of the group" : "");
	return RC_EXIT_OK;
}
