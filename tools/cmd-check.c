// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-check.c - remote-cow check: verify a COW device's metadata (md.c)
 * while no table uses it, print what it holds, and clear needs_check.
 */
#include <inttypes.h>
#include <unistd.h>

#include "rc.h"
#include "remote_cow_disk.h"

static const char help[] =
	"Usage: " PROG " check [--clear-needs-check] [--verbose] COW_DEV\n"
	"\n"
	"Verify the metadata of a COW device (or image file) that no table uses:\n"
	"the superblock, and both copies of every bitmap block (checksum, location,\n"
	"sequence, no bits past the last extent).  Prints what it finds, one line\n"
	"each, and the number of extents in each bitmap.  Read-only unless\n"
	"--clear-needs-check is given.\n"
	"\n"
	"  --clear-needs-check  after a check that finds no damage, clear the\n"
	"                       superblock's needs_check flag (set when a metadata\n"
	"                       write failed), so that a read-write table loads again\n"
	"  -v, --verbose        also print both copies of every bitmap block\n"
	"  -h, --help           this text\n"
	"\n"
	"A copy torn by a crash during a commit is a note, not damage: the kernel\n"
	"uses the other copy and rewrites the torn one.  A block whose valid copies\n"
	"are all of an older epoch than the superblock's for its bitmap was cleared\n"
	"(by a snapshot commit or a migration) and reads as zeroes: not damage.\n"
	"\n"
	"Exit status: 0 no damage, 1 damage found or the device could not be read,\n"
	"2 bad usage, 3 no such file or device.\n";

enum { O_CLEAR = 1, O_VERBOSE };

static const struct rc_opt opts[] = {
	{ "clear-needs-check", false, O_CLEAR, 0 },
	{ "verbose", false, O_VERBOSE, 'v' },
	{ NULL, false, 0, 0 },
};

static void print_counts(const struct rc_md *md)
{
	uint64_t written_only = 0, dirty_only = 0;

	for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++)
		printf("%-15s%" PRIu64 "\n", rc_md_bitmap_name(b), md->count[b]);
	for (uint64_t e = 0; e < md->nr_extents; e++) {
		if (rc_md_test(md, 1, e) && !rc_md_test(md, 0, e))
			written_only++;
		if ((rc_md_test(md, 2, e) || rc_md_test(md, 4, e)) && !rc_md_test(md, 1, e))
			dirty_only++;
	}
	/* Legal on disk: bits set after a commit's staging reach it first. */
	if (written_only)
		printf("written, not present: %" PRIu64
		       " (writes cut off by a crash before their flush: refetched)\n", written_only);
	if (dirty_only)
		printf("dirty, not written: %" PRIu64 " (over-reported: costs transfer only)\n",
		       dirty_only);
	if (md->torn)
		printf("torn copies:    %" PRIu64 "\n", md->torn);
	for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++)
		if (md->cleared[b])
			printf("%s: %" PRIu64 " block%s of an older epoch (cleared, read as zeroes)\n",
			       rc_md_bitmap_name(b), md->cleared[b], md->cleared[b] == 1 ? "" : "s");
}

int cmd_check(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "check", .help = help,
			     .max_args = 1 };
	const char *dev = NULL, *arg;
	bool clear = false, verbose = false;
	struct rc_md md;
	int id, fd, r;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_CLEAR:
			clear = true;
			break;
		case O_VERBOSE:
			verbose = true;
			break;
		case 0:
			dev = arg;
			break;
		}
	}
	if (!dev)
		return rc_usage_err("check", "which COW device? (COW_DEV)");
	r = rc_cow_load("check", dev, clear, &md, stdout, verbose ? stdout : NULL, &fd);
	if (r)
		return r;
	if (!md.formatted) {
		printf("%s: not formatted (its first 4 KiB are zeroes; the first table load"
		       " formats it)\n", dev);
		r = clear ? RC_EXIT_FAIL : RC_EXIT_OK;
		if (clear)
			rc_err("check: %s has no superblock: no needs_check to clear", dev);
		goto out;
	}
	if (md.layout_ok) {
		printf("%s: remote-cow metadata version %u, generation %" PRIu64 ", %s%s%s\n", dev,
		       md.version, md.generation,
		       md.flags & RCOW_DISK_F_CLEAN ? "clean" : "not shut down cleanly",
		       md.flags & RCOW_DISK_F_NEEDS_CHECK ? ", needs_check set" : "",
		       md.flags & RCOW_DISK_F_INCOMING ?
		       ", incoming migration not complete (only a table with the incoming"
		       " feature loads it)" : "");
		printf("%" PRIu64 " extents of %u sectors (length %" PRIu64
		       " sectors), data at sector %" PRIu64 ", base %s\n",
		       md.nr_extents, md.extent_sectors, md.dev_sectors, md.data_offset,
		       md.base_uri);
		printf("snapshot commits: last started %" PRIu64 ", last completed %" PRIu64
		       "; epochs", md.commit_started, md.commit_done);
		for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++)
			printf(" %s=%u", rc_md_bitmap_name(b), md.epoch[b]);
		printf("\n");
		print_counts(&md);
	}
	if (md.damage) {
		printf("%s: %" PRIu64 " damaged item%s: the metadata is not usable as it is\n",
		       dev, md.damage, md.damage == 1 ? "" : "s");
		if (clear)
			rc_err("check: needs_check not cleared: the check found damage");
		r = RC_EXIT_FAIL;
		goto out;
	}
	printf("%s: no damage\n", dev);
	r = RC_EXIT_OK;
	if (!(md.flags & RCOW_DISK_F_NEEDS_CHECK)) {
		if (clear)
			printf("needs_check was not set\n");
	} else if (!clear) {
		printf("needs_check is set: a read-write table is refused until '" PROG
		       " check --clear-needs-check %s'\n", dev);
	} else if (rc_md_clear_needs_check(fd, &md)) {
		r = RC_EXIT_FAIL;
	} else {
		printf("needs_check cleared\n");
	}
out:
	rc_md_free(&md);
	close(fd);
	return r;
}
