// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-dump.c - remote-cow dump: a COW device's metadata as text.
 */
#include <inttypes.h>
#include <unistd.h>

#include "rc.h"
#include "remote_cow_disk.h"

static const char help[] =
	"Usage: " PROG " dump [--verbose] COW_DEV\n"
	"\n"
	"Print the metadata of a COW device (or image file) that no table uses:\n"
	"the superblock's fields, then for each bitmap the extents set in it, as\n"
	"runs FIRST-LAST (or a single extent).  Each bitmap block is read from its\n"
	"newest valid copy of the bitmap's epoch (the superblock's); a block whose\n"
	"valid copies are all of an older epoch was cleared and reads as zeroes.\n"
	"Problems go to standard error, as 'remote-cow check' reports them; what\n"
	"can be read is printed regardless.\n"
	"\n"
	"  -v, --verbose  also print both copies of every bitmap block\n"
	"  -h, --help     this text\n"
	"\n"
	"Exit status: 0 no damage, 1 damage found or the device could not be read,\n"
	"2 bad usage, 3 no such file or device.\n";

enum { O_VERBOSE = 1 };

static const struct rc_opt opts[] = {
	{ "verbose", false, O_VERBOSE, 'v' },
	{ NULL, false, 0, 0 },
};

static void print_sb(const struct rc_md *md)
{
	printf("superblock:\n");
	printf("  magic           0x%08x\n", md->magic);
	printf("  version         %u\n", md->version);
	printf("  flags           0x%x%s%s%s\n", md->flags,
	       md->flags & RCOW_DISK_F_CLEAN ? " clean" : "",
	       md->flags & RCOW_DISK_F_NEEDS_CHECK ? " needs_check" : "",
	       md->flags & RCOW_DISK_F_INCOMING ? " incoming" : "");
	printf("  generation      %" PRIu64 "\n", md->generation);
	printf("  block_size      %u\n", md->block_size);
	printf("  extent_sectors  %u\n", md->extent_sectors);
	printf("  dev_sectors     %" PRIu64 "\n", md->dev_sectors);
	printf("  nr_extents      %" PRIu64 "\n", md->nr_extents);
	printf("  data_offset     %" PRIu64 "\n", md->data_offset);
	printf("  bitmap_start    %" PRIu64 "\n", md->bitmap_start);
	printf("  bitmap_blocks   %" PRIu64 "\n", md->bitmap_blocks);
	printf("  nr_bitmaps      %u\n", md->nr_bitmaps);
	printf("  commit_started  %" PRIu64 "\n", md->commit_started);
	printf("  commit_done     %" PRIu64 "\n", md->commit_done);
	printf("  epochs         ");
	for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++)
		printf(" %s=%u", rc_md_bitmap_name(b), md->epoch[b]);
	printf("\n");
	printf("  base_uri        %s\n", md->base_uri);
}

static void print_runs(const struct rc_md *md, unsigned int b)
{
	uint64_t e = 0;

	printf("bitmap %s: %" PRIu64 " set\n", rc_md_bitmap_name(b), md->count[b]);
	if (md->cleared[b])
		printf("  (%" PRIu64 " block%s cleared: no copy of epoch %u, read as zeroes)\n",
		       md->cleared[b], md->cleared[b] == 1 ? "" : "s", md->epoch[b]);
	while (e < md->nr_extents) {
		uint64_t first;

		if (!rc_md_test(md, b, e)) {
			e++;
			continue;
		}
		first = e;
		while (e < md->nr_extents && rc_md_test(md, b, e))
			e++;
		if (e - 1 == first)
			printf("  %" PRIu64 "\n", first);
		else
			printf("  %" PRIu64 "-%" PRIu64 "\n", first, e - 1);
	}
}

int cmd_dump(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "dump", .help = help,
			     .max_args = 1 };
	const char *dev = NULL, *arg;
	bool verbose = false;
	struct rc_md md;
	int id, fd, r;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_VERBOSE:
			verbose = true;
			break;
		case 0:
			dev = arg;
			break;
		}
	}
	if (!dev)
		return rc_usage_err("dump", "which COW device? (COW_DEV)");
	r = rc_cow_load("dump", dev, false, &md, stderr, verbose ? stdout : NULL, &fd);
	if (r)
		return r;
	if (!md.formatted) {
		printf("not formatted (the first 4 KiB are zeroes)\n");
		r = RC_EXIT_OK;
		goto out;
	}
	if (md.magic == RCOW_DISK_MAGIC)
		print_sb(&md);
	if (md.layout_ok) {
		printf("max_seq           %" PRIu64 "\n", md.max_seq);
		for (unsigned int b = 0; b < RCOW_DISK_NR_BITMAPS; b++)
			print_runs(&md, b);
	}
	r = md.damage ? RC_EXIT_FAIL : RC_EXIT_OK;
out:
	rc_md_free(&md);
	close(fd);
	return r;
}
