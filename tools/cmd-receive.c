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
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rc.h"
#include "rcow/mig-proto.h"

static const char help[] =
	"Usage: " PROG " receive NAME --cow DEV --base URI --listen HOST:PORT --psk FILE\n"
	"                  [--extent-size SIZE] [--size SIZE] [--fault-timeout MS]\n"
	"                  [--run-dir DIR]\n"
	"\n"
	"Create /dev/mapper/NAME as the destination of a live migration: it holds\n"
	"every I/O until the migration completes.  remote-cowd listens on\n"
	"HOST:PORT and accepts one migration from a source that proves the key of\n"
	"FILE (GnuTLS psktool's format, identity:hexkey; the same file on both\n"
	"hosts) and whose device has the same size, extent size and base URI.\n"
	"Start the source with '" PROG " migrate NAME --to HOST:PORT --psk FILE'.\n"
	"If the migration fails or is aborted, NAME stays unusable: remove it.\n"
	"\n"
	"  --cow DEV            the local COW block device (zeroed, see 'cow-size')\n"
	"  --base URI           the base: the source's base URI, exactly\n"
	"  --listen HOST:PORT   where remote-cowd listens ([::]:PORT, 0.0.0.0:PORT\n"
	"                       for any address)\n"
	"  --psk FILE           the pre-shared key\n"
	"  --extent-size SIZE   as the source's (default 64K)\n"
	"  --size SIZE          device length (default: the base's size)\n"
	"  --fault-timeout MS   as for create\n"
	"  --run-dir DIR        remote-cowd's run directory (default " RC_RUN_DIR ")\n"
	"  -h, --help           this text\n"
	"\n"
	"Several devices received as one unit are not supported yet.\n";

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

int cmd_receive(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "receive", .help = help,
			     .max_args = 8 };
	const char *name = NULL, *cow = NULL, *uri = NULL, *listen = NULL, *psk = NULL;
	const char *ext = NULL, *size = NULL, *tmo = NULL, *run_dir = RC_RUN_DIR, *arg;
	char text[MIG_RECV_SPEC_MAX + 1], spec[PATH_MAX], file[300];
	char *cargv[16];
	size_t len = 0;
	int id, n, r, cargc = 0;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_COW:
			if (cow)
				goto several;
			cow = arg;
			break;
		case O_BASE:
			if (uri)
				goto several;
			uri = arg;
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
			if (name)
				goto several;
			name = arg;
		}
	}
	if (!name)
		return rc_usage_err("receive", "missing the device NAME");
	if (!cow || !uri || !listen || !psk)
		return rc_usage_err("receive", "needs --cow DEV --base URI --listen HOST:PORT --psk FILE");
	if (strlen(listen) > MIG_ADDR_MAX || !rc_valid_hostport(listen))
		return rc_usage_err("receive", "bad listen address '%s': HOST:PORT, port 1-65535",
				    listen);
	n = snprintf(text, sizeof(text), "listen %s\n", listen);
	r = rc_read_psk("receive", psk, text + n, &len);
	if (r)
		return r;
	if (rc_dm_info(name, &(struct rc_dm_info){ 0 }) == 1) {
		explicit_bzero(text, sizeof(text));
		rc_err("receive %s: a device-mapper device of that name exists already", name);
		return RC_EXIT_FAIL;
	}
	snprintf(file, sizeof(file), "recv-%s", name);
	r = rc_put_secret(run_dir, file, text, (size_t)n + len, spec, sizeof(spec));
	explicit_bzero(text, sizeof(text));
	if (r) {
		rc_err("receive %s: cannot write the receive spec under %s: %s", name, run_dir,
		       strerror(-r));
		return RC_EXIT_FAIL;
	}
	cargv[cargc++] = (char *)"create";
	cargv[cargc++] = (char *)name;
	cargv[cargc++] = (char *)"--cow";
	cargv[cargc++] = (char *)cow;
	cargv[cargc++] = (char *)"--base";
	cargv[cargc++] = (char *)uri;
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
	if (r) {
		unlink(spec);
		return r;
	}
	printf("receive %s: remote-cowd listens on %s for the migration; I/O waits until it completes\n",
	       name, listen);
	return RC_EXIT_OK;
several:
	rc_err("receive: several devices as one unit are not supported yet: one NAME, one --cow, one --base");
	return RC_EXIT_FAIL;
}
