// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-create.c - remote-cow create: check everything that can be checked
 * in userspace (name, URI, sizes, the COW device's size), then build the
 * table line and load it: DM_DEVICE_CREATE with the target, then resume.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "rc.h"
#include "rcow/base.h"
#include "rcow/config.h"
#include "rcow/uri.h"
#include "remote_cow.h"

#define DEFAULT_EXTENT_BYTES	(64u << 10)
#define MAX_FAULT_TIMEOUT_MS	86400000ULL

static const char help[] =
	"Usage: " PROG " create NAME --cow DEV --base URI [options]\n"
	"\n"
	"Create the remote-cow device /dev/mapper/NAME: the base image at URI,\n"
	"overlaid by the local copy-on-write device DEV.  A zeroed DEV is formatted\n"
	"on first use; one formatted for another base, extent size or length is\n"
	"refused.\n"
	"\n"
	"  --cow DEV              the local COW block device (see 'cow-size')\n"
	"  --base URI             nbd://host[:port]/export, nbds://host[:port]/export,\n"
	"                         nbd+unix:///export?socket=PATH or file:///PATH\n"
	"  --extent-size SIZE     unit of fetching: a power of two from 4K to 4M\n"
	"                         (default 64K)\n"
	"  --size SIZE            device length (default: the base's size, read by\n"
	"                         opening the base; needed when it cannot be\n"
	"                         reached from here)\n"
	"  --config FILE          remote-cowd's configuration file, for the TLS\n"
	"                         credentials of an nbds:// base while reading its\n"
	"                         size (default " RCOW_DEFAULT_CONFIG "\n"
	"                         when it exists)\n"
	"  --fault-timeout MS     fail I/O that waited MS milliseconds for a missing\n"
	"                         extent (default 0: wait for the helper forever)\n"
	"  --discard-passdown     pass discards down to the COW device (default)\n"
	"  --no-discard-passdown  do not support discard\n"
	"  --incoming             the destination of a live migration: hold I/O\n"
	"                         until it completes (use 'receive', which also\n"
	"                         tells remote-cowd where to listen)\n"
	"  -h, --help             this text\n"
	"\n"
	"SIZE: bytes, or with a suffix K, M, G, T (binary) or s (512-byte sectors).\n";

enum { O_COW = 1, O_BASE, O_EXT, O_SIZE, O_CONFIG, O_TIMEOUT, O_DISCARD, O_NO_DISCARD, O_INCOMING };

static const struct rc_opt opts[] = {
	{ "cow", true, O_COW, 0 },
	{ "base", true, O_BASE, 0 },
	{ "extent-size", true, O_EXT, 0 },
	{ "size", true, O_SIZE, 0 },
	{ "config", true, O_CONFIG, 0 },
	{ "fault-timeout", true, O_TIMEOUT, 0 },
	{ "discard-passdown", false, O_DISCARD, 0 },
	{ "no-discard-passdown", false, O_NO_DISCARD, 0 },
	{ "incoming", false, O_INCOMING, 0 },
	{ NULL, false, 0, 0 },
};

/* An extent size option: 0 or an exit code (printed). */
int rc_parse_extent(const char *cmd, const char *text, uint32_t *sectors)
{
	const char *why;
	uint64_t b;

	if (!text) {
		*sectors = DEFAULT_EXTENT_BYTES / 512;
		return 0;
	}
	if (rc_parse_size(text, &b, &why))
		return rc_usage_err(cmd, "bad extent size '%s': %s", text, why);
	if (b < 4096 || b > (4u << 20) || (b & (b - 1)))
		return rc_usage_err(cmd, "bad extent size '%s': must be a power of two from 4K to 4M",
				    text);
	*sectors = (uint32_t)(b / 512);
	return 0;
}

/*
 * The credentials for uri from the configuration file: the one named, else
 * the default one when it exists.  cfg is initialised either way.  0 or an
 * exit code (printed).
 */
static int load_cred(const char *cmd, const char *config, const char *uri,
		     struct rcow_config *cfg, const struct rcow_cred **cred)
{
	struct rcow_err err = { 0 };
	struct rcow_policy pol;
	const char *used;

	rcow_config_init(cfg);
	*cred = NULL;
	if (rcow_config_load_default(cfg, config, &used, &err)) {
		rc_err("%s: %s", cmd, err.msg);
		return RC_EXIT_FAIL;
	}
	rcow_config_lookup(cfg, uri, &pol, cred);
	return 0;
}

/*
 * The device length in sectors: --size, else the base's size (rounded up
 * to a sector: the device reads zeroes past the base's end), opened with
 * the credentials of the configuration file (config, or the default one).
 * 0 or an exit code (printed).
 */
int rc_device_sectors(const char *cmd, const char *size, const char *uri, const char *config,
		      uint64_t *sectors)
{
	struct rcow_base *base = NULL;
	struct rcow_err err = { 0 };
	const struct rcow_cred *cred;
	struct rcow_config cfg;
	const char *why;
	uint64_t b;
	int r;

	if (size) {
		if (rc_parse_size(size, &b, &why))
			return rc_usage_err(cmd, "bad size '%s': %s", size, why);
		if (!b || b % 512)
			return rc_usage_err(cmd, "bad size '%s': must be a non-zero multiple of 512 bytes",
					    size);
		*sectors = b / 512;
		return 0;
	}
	r = load_cred(cmd, config, uri, &cfg, &cred);
	if (!r && rcow_base_open_cred(uri, cred, &base, &err)) {
		rc_err("%s: cannot open the base %s to read its size: %s", cmd, uri, err.msg);
		rc_note("Give the device's length with --size if the base cannot be reached from here.");
		r = RC_EXIT_FAIL;
	}
	rcow_config_free(&cfg);
	if (r)
		return r;
	b = base->size;
	rcow_base_close(base);
	if (!b) {
		rc_err("%s: the base %s is empty", cmd, uri);
		return RC_EXIT_FAIL;
	}
	*sectors = (b + 511) / 512;
	return 0;
}

/* Check a base URI's form.  0 or an exit code (printed). */
int rc_check_uri(const char *cmd, const char *uri)
{
	struct rcow_uri u;
	struct rcow_err err = { 0 };

	if (rcow_uri_parse(uri, &u, &err))
		return rc_usage_err(cmd, "bad base URI '%s': %s", uri, err.msg);
	rcow_uri_free(&u);
	return 0;
}

/* Open the COW device: its dev_t and size in bytes.  0 or an exit code. */
static int cow_device(const char *path, dev_t *rdev, uint64_t *bytes)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc_err("create: cannot open the COW device %s: %s", path, strerror(errno));
		return errno == ENOENT ? RC_EXIT_USAGE : RC_EXIT_FAIL;
	}
	if (fstat(fd, &st) || !S_ISBLK(st.st_mode)) {
		rc_err("create: the COW device %s is not a block device "
		       "(for a file, attach it with losetup first)", path);
		close(fd);
		return RC_EXIT_USAGE;
	}
	if (ioctl(fd, BLKGETSIZE64, bytes)) {
		rc_err("create: cannot read the size of %s: %s", path, strerror(errno));
		close(fd);
		return RC_EXIT_FAIL;
	}
	close(fd);
	*rdev = st.st_rdev;
	return 0;
}

static int check_name(const char *name)
{
	if (!*name || strlen(name) >= 128 || strchr(name, '/') || !strcmp(name, ".") ||
	    !strcmp(name, "..") || strpbrk(name, " \t\n"))
		return rc_usage_err("create", "bad device name '%s': 1 to 127 characters, "
				    "no '/' and no whitespace", name);
	return 0;
}

static int make_uuid(char *buf, size_t len)
{
	unsigned char r[16];
	size_t i, off;

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -1;
	off = (size_t)snprintf(buf, len, RC_UUID_PREFIX);
	for (i = 0; i < sizeof(r) && off + 2 < len; i++, off += 2)
		snprintf(buf + off, len - off, "%02x", r[i]);
	return 0;
}

int cmd_create(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "create", .help = help,
			     .max_args = 1 };
	const char *name = NULL, *cow = NULL, *uri = NULL, *ext = NULL, *size = NULL;
	const char *timeout = NULL, *config = NULL, *arg;
	int discard = -1, id, r;
	bool incoming = false;
	uint64_t sectors, cow_bytes, tmo = 0;
	uint32_t extent;
	struct rc_layout l;
	struct rc_dev d;
	dev_t rdev;
	char params[REMOTE_COW_MAX_URI + 256], uuid[64], s1[32], s2[32];

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_COW:
			cow = arg;
			break;
		case O_BASE:
			uri = arg;
			break;
		case O_EXT:
			ext = arg;
			break;
		case O_SIZE:
			size = arg;
			break;
		case O_CONFIG:
			config = arg;
			break;
		case O_TIMEOUT:
			timeout = arg;
			break;
		case O_DISCARD:
			discard = 1;
			break;
		case O_NO_DISCARD:
			discard = 0;
			break;
		case O_INCOMING:
			incoming = true;
			break;
		default:
			name = arg;
		}
	}
	if (!name)
		return rc_usage_err("create", "missing the device NAME");
	if (!cow)
		return rc_usage_err("create", "missing --cow DEV");
	if (!uri)
		return rc_usage_err("create", "missing --base URI");
	r = check_name(name);
	if (!r)
		r = rc_check_uri("create", uri);
	if (!r)
		r = rc_parse_extent("create", ext, &extent);
	if (!r && timeout && rc_parse_uint(timeout, MAX_FAULT_TIMEOUT_MS, &tmo))
		r = rc_usage_err("create", "bad fault timeout '%s': milliseconds from 0 to %llu",
				 timeout, MAX_FAULT_TIMEOUT_MS);
	if (!r)
		r = rc_device_sectors("create", size, uri, config, &sectors);
	if (!r)
		r = cow_device(cow, &rdev, &cow_bytes);
	if (r)
		return r;

	rc_layout_compute(sectors, extent, &l);
	if (cow_bytes / 512 < l.cow_sectors) {
		rc_fmt_size(cow_bytes, s1, sizeof(s1));
		rc_fmt_size(l.cow_sectors * 512, s2, sizeof(s2));
		rc_err("create %s: the COW device %s is too small: it has %" PRIu64
		       " sectors (%s); it needs %" PRIu64 " sectors (%s): %" PRIu64
		       " metadata + %" PRIu64 " data", name, cow, cow_bytes / 512, s1,
		       l.cow_sectors, s2, l.data_offset, l.dev_sectors);
		return RC_EXIT_COWSMALL;
	}
	if (rc_dm_info(name, &(struct rc_dm_info){ 0 }) == 1) {
		rc_err("create %s: a device-mapper device of that name exists already", name);
		return RC_EXIT_FAIL;
	}

	snprintf(params, sizeof(params), "%u:%u %u %s", major(rdev), minor(rdev), extent, uri);
	if (timeout || discard >= 0 || incoming) {
		size_t len = strlen(params);

		len += (size_t)snprintf(params + len, sizeof(params) - len, " %d",
					(timeout ? 2 : 0) + (discard >= 0) + incoming);
		if (timeout)
			len += (size_t)snprintf(params + len, sizeof(params) - len,
						" fault_timeout %llu", (unsigned long long)tmo);
		if (discard >= 0)
			len += (size_t)snprintf(params + len, sizeof(params) - len, " %s",
						discard ? "discard_passdown" : "no_discard_passdown");
		if (incoming)
			snprintf(params + len, sizeof(params) - len, " incoming");
	}
	if (make_uuid(uuid, sizeof(uuid))) {
		rc_err("create: cannot make a uuid: %s", strerror(errno));
		return RC_EXIT_FAIL;
	}
	r = rc_dm_create(name, uuid, sectors, params, false);
	if (r)
		return r;

	rc_fmt_size(sectors * 512, s1, sizeof(s1));
	rc_fmt_size((uint64_t)extent * 512, s2, sizeof(s2));
	printf("created /dev/mapper/%s: %s, %" PRIu64 " extents of %s, COW device %s\n", name, s1,
	       l.nr_extents, s2, cow);
	if (!rc_dev_read(name, &d, true)) {
		if (strcmp(d.helper, "connected"))
			printf("no helper is connected: start remote-cowd to serve the missing extents\n");
		rc_dev_free(&d);
	}
	return RC_EXIT_OK;
}
