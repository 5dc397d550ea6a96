// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-remove.c - remote-cow remove: only remote-cow devices, and only
 * when not in use unless --force.
 */
#include "rc.h"

static const char help[] =
	"Usage: " PROG " remove NAME [--force]\n"
	"\n"
	"Remove the remote-cow device NAME.  The metadata is committed, so the COW\n"
	"device can be used again with the same base, extent size and length.\n"
	"\n"
	"  --force     remove it even while it is open: its table is first replaced\n"
	"              by one that fails all I/O (I/O waiting for missing extents\n"
	"              fails at once), then the device is removed as soon as it is\n"
	"              closed\n"
	"  -h, --help  this text\n";

enum { O_HELP = 1, O_FORCE };

static const struct rc_opt opts[] = {
	{ "help", false, O_HELP },
	{ "force", false, O_FORCE },
	{ NULL, false, 0 },
};

int cmd_remove(int argc, char **argv)
{
	struct rc_args a = { argc, argv, 1, false, "remove" };
	const char *name = NULL, *arg;
	bool force = false;
	struct rc_dev d;
	int id, r;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case -2:
			return RC_EXIT_USAGE;
		case O_HELP:
			fputs(help, stdout);
			return RC_EXIT_OK;
		case O_FORCE:
			force = true;
			break;
		default:
			if (name)
				return rc_usage_err("remove", "unexpected argument '%s'", arg);
			name = arg;
		}
	}
	if (!name)
		return rc_usage_err("remove", "missing the device NAME");
	r = rc_dev_read(name, &d, false);
	if (r)
		return r;
	rc_dev_free(&d);
	if (d.open_count > 0 && !force) {
		rc_err("remove %s: the device is in use (open %d time%s: mounted, or used by a VM?);"
		       " close it first, or use --force", name, d.open_count,
		       d.open_count == 1 ? "" : "s");
		return RC_EXIT_FAIL;
	}
	r = rc_dm_remove(name, force, d.sectors);
	if (!r && rc_dm_info(name, &(struct rc_dm_info){ 0 }) == 0)
		printf("removed %s\n", name);
	return r;
}
