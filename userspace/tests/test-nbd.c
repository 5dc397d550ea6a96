// SPDX-License-Identifier: GPL-2.0
/*
 * test-nbd.c - the NBD base source against a real nbdkit on a Unix socket
 * started by the test: size, data, holes through base:allocation, the
 * no-block-status fallback, and a clear error when nothing listens.
 * Skipped when nbdkit is not installed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rcow/base.h"
#include "tap.h"

#define K 1024ull
#define IMG_SIZE (2048 * K)

static bool have_nbdkit(void)
{
	return system("nbdkit --version >/dev/null 2>&1") == 0;
}

/* Start "nbdkit -f -U sock [--filter=F] file PATH"; returns pid or -1. */
static pid_t start_nbdkit(const char *sock, const char *filter, const char *img)
{
	char fbuf[64];
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		const char *argv[12];
		int i = 0, devnull = open("/dev/null", O_WRONLY);

		if (devnull >= 0)
			dup2(devnull, 1);
		argv[i++] = "nbdkit";
		argv[i++] = "-f";
		argv[i++] = "-r";
		argv[i++] = "--exit-with-parent";
		argv[i++] = "-U";
		argv[i++] = sock;
		if (filter) {
			snprintf(fbuf, sizeof(fbuf), "--filter=%s", filter);
			argv[i++] = fbuf;
		}
		argv[i++] = "file";
		argv[i++] = img;
		argv[i] = NULL;
		execvp("nbdkit", (char **)argv);
		_exit(127);
	}
	for (int tries = 0; tries < 500; tries++) {	/* up to 5 s */
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		if (access(sock, F_OK) == 0)
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return -1;
}

static void stop_nbdkit(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}

static int make_image(const char *path, unsigned char *expect)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	memset(expect, 0, IMG_SIZE);
	for (uint64_t i = 0; i < 128 * K; i++)
		expect[i] = (unsigned char)(i * 7 + 1);
	memset(expect + 1024 * K, 0xee, 64 * K);
	if (pwrite(fd, expect, 128 * K, 0) != (ssize_t)(128 * K) ||
	    pwrite(fd, expect + 1024 * K, 64 * K, 1024 * K) != (ssize_t)(64 * K) ||
	    ftruncate(fd, IMG_SIZE) < 0) {
		close(fd);
		return -1;
	}
	return close(fd);
}

static void check_server(struct tap *t, const char *dir, const char *img, const unsigned char *expect,
			 const char *filter)
{
	const char *label = filter ? filter : "base:allocation";
	struct rcow_extent_list l = { 0 };
	unsigned char *got = malloc(IMG_SIZE);
	struct rcow_base *b = NULL;
	struct rcow_err err = { 0 };
	char sock[512], uri[600];
	uint64_t rd = 0, zr = 0;
	pid_t pid;
	int r;

	snprintf(sock, sizeof(sock), "%s/nbd-%s.sock", dir, filter ? filter : "plain");
	pid = start_nbdkit(sock, filter, img);
	if (!tap_ok(t, pid > 0, "[%s] nbdkit started on %s", label, sock))
		goto out;
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
	r = rcow_base_open(uri, &b, &err);
	if (!tap_ok(t, r == 0, "[%s] NBD base opens over a Unix socket", label)) {
		tap_diag(t, "%s", err.msg);
		goto out;
	}
	tap_ok(t, b->size == IMG_SIZE && !strcmp(b->ops->name, "nbd"), "[%s] export size", label);
	r = rcow_base_read_sparse(b, got, IMG_SIZE, 0, &l, &rd, &zr, &err);
	tap_ok(t, r == 0 && !memcmp(got, expect, IMG_SIZE), "[%s] sparse read equals the image", label);
	if (r)
		tap_diag(t, "%s", err.msg);
	if (!filter)
		tap_ok(t, rd == 192 * K && zr == IMG_SIZE - rd,
		       "holes are not transferred (%llu bytes read of %llu)", (unsigned long long)rd,
		       (unsigned long long)IMG_SIZE);
	else
		tap_ok(t, rd == IMG_SIZE && zr == 0, "[%s] without block status everything is read", label);
	rd = zr = 0;
	r = rcow_base_read_sparse(b, got, 8192, 1024 * K - 4096, &l, &rd, &zr, &err);
	tap_ok(t, r == 0 && got[4095] == 0 && got[4096] == 0xee, "[%s] unaligned range across a hole/data edge", label);
out:
	rcow_base_close(b);
	stop_nbdkit(pid);
	rcow_extent_list_free(&l);
	free(got);
}

void test_nbd(struct tap *t)
{
	unsigned char *expect;
	struct rcow_base *b = NULL;
	struct rcow_err err = { 0 };
	char *dir, img[512], uri[600];

	if (!have_nbdkit()) {
		tap_skip(t, "nbdkit not installed (apt-get install nbdkit)", "NBD base source");
		return;
	}
	dir = tap_tmpdir(t);
	expect = malloc(IMG_SIZE);
	snprintf(img, sizeof(img), "%s/nbd-base.img", dir);
	if (tap_ok(t, make_image(img, expect) == 0, "sparse image for nbdkit")) {
		check_server(t, dir, img, expect, NULL);
		check_server(t, dir, img, expect, "noextents");
	}
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s/nobody-listens.sock", dir);
	tap_ok(t, rcow_base_open(uri, &b, &err) < 0 && strstr(err.msg, "connecting to NBD base") &&
		  strstr(err.msg, "check that the server is running"),
	       "connection refused is reported with what to check");
	free(expect);
	tap_rmtree(dir);
	free(dir);
}
