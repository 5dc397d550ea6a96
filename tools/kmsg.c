// SPDX-License-Identifier: GPL-2.0
/*
 * kmsg.c - the reason the kernel gave.
 *
 * device-mapper answers a refused table or message with an errno only; the
 * remote-cow target writes the reason to the kernel log.  Before such a
 * request the tool starts reading /dev/kmsg at its end; after a refusal it
 * prints the new records that concern the device.  Reading the log needs
 * root, as the requests do; if it cannot be read, only the errno is shown.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "rc.h"

int rc_kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void rc_kmsg_report(int fd, const char *const *needles)
{
	char rec[8192];

	if (fd < 0)
		return;
	for (;;) {
		ssize_t n = read(fd, rec, sizeof(rec) - 1);
		char *text, *nl;
		const char *const *k;

		if (n < 0 && errno == EPIPE)	/* records overwritten: go on */
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		text = strchr(rec, ';');
		if (!text)
			continue;
		text++;
		nl = strchr(text, '\n');
		if (nl)
			*nl = '\0';
		for (k = needles; *k; k++) {
			if (strstr(text, *k)) {
				rc_note("  kernel: %s", text);
				break;
			}
		}
	}
}

bool rc_kmsg_last(int fd, const char *const *needles, const char *want, char *buf, size_t len)
{
	char rec[8192];
	bool found = false, found_want = false;

	if (fd < 0)
		return false;
	for (;;) {
		ssize_t n = read(fd, rec, sizeof(rec) - 1);
		char *text, *nl;
		const char *const *k;

		if (n < 0 && errno == EPIPE)
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		text = strchr(rec, ';');
		if (!text)
			continue;
		text++;
		nl = strchr(text, '\n');
		if (nl)
			*nl = '\0';
		for (k = needles; *k; k++) {
			if (!strstr(text, *k))
				continue;
			/* a line with want wins over a later one without */
			if (!want || strstr(text, want)) {
				snprintf(buf, len, "%s", text);
				found = found_want = true;
			} else if (!found_want) {
				snprintf(buf, len, "%s", text);
				found = true;
			}
			break;
		}
	}
	return found;
}

void rc_kmsg_close(int fd)
{
	if (fd >= 0)
		close(fd);
}
