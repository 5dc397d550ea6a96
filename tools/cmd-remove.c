// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-remove.c - remote-cow remove: only remote-cow devices, and only
 * when not in use and not in a post-copy migration unless --force.
 */
#include <string.h>

#include "rc.h"

static const char help[] =
	"Usage: " PROG " remove NAME [--force]\n"
	"\n"
	"Remove the remote-cow device NAME.  The metadata is committed, so the COW\n"
	"device can be used again with the same base, extent size and length.\n"
	"Refused (exit 7) while NAME is in a post-copy migration (migrate_state\n"
	"postcopy): a source's destination still fetches extents from it, a\n"
	"destination still misses some; removing either loses the guest's disk.\n"
	"\n"
	"  --force     remove it even while it is open: its table is first replaced\n"
	"              by one that fails all I/O (I/O waiting for missing extents\n"
	"              fails at once), then the device is removed as soon as it is\n"
	"              closed; or while a post-copy migration still needs it\n"
	"  -h, --help  this text\n";

enum { O_FORCE = 1 };

static const struct rc_opt opts[] = {
	{ "force", false, O_FORCE, 0 },
	{ NULL, false, 0, 0 },
};

int cmd_remove(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "remove", .help = help,
			     .max_args = 1 };
	const char *name = NULL, *arg;
	bool force = false;
	struct rc_dev d;
	int id, r;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_FORCE:
			force = true;
			break;
		default:
			name = arg;
		}
	}
	if (!name)
		return rc_usage_err("remove", "missing the device NAME");
	r = rc_dev_check(name, &d);
	if (r)
		return r;
	if (d.open_count > 0 && !force) {
		rc_err("remove %s: the device is in use (open %d time%s: mounted, or used by a VM?);"
		       " close it first, or use --force", name, d.open_count,
		       d.open_count == 1 ? "" : "s");
		return RC_EXIT_FAIL;
	}
	if (!strcmp(d.migrate_state, "postcopy") && !force) {
		rc_err("remove %s: a post-copy migration still needs it (migrate_state postcopy):"
		       " wait until it is done, or use --force and lose what has not moved",
		       name);
		return RC_EXIT_BUSY;
	}
	r = rc_dm_remove(name, force, d.sectors);
	if (!r && rc_dm_info(name, &(struct rc_dm_info){ 0 }) == 0)
		printf("removed %s\n", name);
	return r;
}
