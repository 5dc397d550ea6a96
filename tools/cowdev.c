// SPDX-License-Identifier: GPL-2.0
/*
 * cowdev.c - open a COW device (or image file) for check and dump: never
 * while a table uses it.
 *
 * device-mapper opens the devices of a table exclusively, so an O_EXCL
 * open of a block device fails with EBUSY while any table (or a mount)
 * holds it; the holders in sysfs then say which.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "rc.h"

/* "dm-3 (vm1)": the holders of a block device, for the message. */
static void holders(dev_t rdev, char *buf, size_t len)
{
	char path[128], name[256];
	struct dirent *de;
	size_t used = 0;
	DIR *d;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(rdev), minor(rdev));
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d)) && used + 1 < len) {
		FILE *f;
		int n;

		if (de->d_name[0] == '.')
			continue;
		name[0] = '\0';
		snprintf(path, sizeof(path), "/sys/class/block/%.64s/dm/name", de->d_name);
		f = fopen(path, "r");
		if (f) {
			if (!fgets(name, sizeof(name), f))
				name[0] = '\0';
			name[strcspn(name, "\n")] = '\0';
			fclose(f);
		}
		n = snprintf(buf + used, len - used, "%s%s%s%s%s", used ? ", " : "", de->d_name,
			     name[0] ? " (" : "", name, name[0] ? ")" : "");
		if (n < 0)
			break;
		used += (size_t)n < len - used ? (size_t)n : len - used - 1;
	}
	closedir(d);
}

int rc_cow_open(const char *cmd, const char *path, bool writable, int *fd_out, uint64_t *bytes)
{
	struct stat st;
	char who[256];
	int fd;

	fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_EXCL | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (e == EBUSY && stat(path, &st) == 0 && S_ISBLK(st.st_mode)) {
			holders(st.st_rdev, who, sizeof(who));
			rc_err("%s: %s is in use%s%s: remove the remote-cow device that uses it first",
			       cmd, path, who[0] ? " by " : "", who);
			return RC_EXIT_FAIL;
		}
		rc_err("%s: cannot open %s: %s", cmd, path, strerror(e));
		return e == ENOENT ? RC_EXIT_NODEV : RC_EXIT_FAIL;
	}
	if (fstat(fd, &st) < 0) {
		rc_err("%s: cannot stat %s: %s", cmd, path, strerror(errno));
		close(fd);
		return RC_EXIT_FAIL;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, bytes) < 0) {
			rc_err("%s: cannot read the size of %s: %s", cmd, path, strerror(errno));
			close(fd);
			return RC_EXIT_FAIL;
		}
	} else if (S_ISREG(st.st_mode)) {
		*bytes = (uint64_t)st.st_size;
	} else {
		rc_err("%s: %s is neither a block device nor a file", cmd, path);
		close(fd);
		return RC_EXIT_USAGE;
	}
	*fd_out = fd;
	return 0;
}

int rc_cow_load(const char *cmd, const char *path, bool writable, struct rc_md *md,
		FILE *out, FILE *verbose, int *fd)
{
	uint64_t bytes;
	int r;

	r = rc_cow_open(cmd, path, writable, fd, &bytes);
	if (r)
		return r;
	if (rc_md_read(*fd, bytes, md, out, verbose)) {
		rc_md_free(md);
		close(*fd);
		return RC_EXIT_FAIL;
	}
	return 0;
}
