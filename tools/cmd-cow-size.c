// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-cow-size.c - remote-cow cow-size: the bytes a COW device needs for a
 * device of a given length and extent size (layout.c has the formula).
 */
#include <inttypes.h>

#include "rc.h"

static const char help[] =
	"Usage: " PROG " cow-size --size SIZE [--extent-size SIZE] [--verbose]\n"
	"       " PROG " cow-size --base URI [--config FILE] [--extent-size SIZE] [--verbose]\n"
	"\n"
	"Print the size in bytes a COW device needs (metadata + data) for a device\n"
	"of length SIZE, or as long as the base at URI, with that extent size\n"
	"(default 64K).  A larger COW device is fine.\n"
	"\n"
	"  --size SIZE         device length (a multiple of 512 bytes)\n"
	"  --base URI          read the length from the base (as 'create' does)\n"
	"  --config FILE       TLS credentials for an nbds:// base (as 'create')\n"
	"  --extent-size SIZE  a power of two from 4K to 4M (default 64K)\n"
	"  -v, --verbose       also print the layout: extents, metadata, data offset\n"
	"  -h, --help          this text\n"
	"\n"
	"SIZE: bytes, or with a suffix K, M, G, T (binary) or s (512-byte sectors).\n";

enum { O_SIZE = 1, O_BASE, O_CONFIG, O_EXT, O_VERBOSE };

static const struct rc_opt opts[] = {
	{ "size", true, O_SIZE, 0 },
	{ "base", true, O_BASE, 0 },
	{ "config", true, O_CONFIG, 0 },
	{ "extent-size", true, O_EXT, 0 },
	{ "verbose", false, O_VERBOSE, 'v' },
	{ NULL, false, 0, 0 },
};

int cmd_cow_size(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "cow-size", .help = help };
	const char *size = NULL, *uri = NULL, *ext = NULL, *config = NULL, *arg;
	bool verbose = false;
	uint64_t sectors;
	uint32_t extent;
	struct rc_layout l;
	int id, r;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_SIZE:
			size = arg;
			break;
		case O_BASE:
			uri = arg;
			break;
		case O_CONFIG:
			config = arg;
			break;
		case O_EXT:
			ext = arg;
			break;
		case O_VERBOSE:
			verbose = true;
			break;
		}
	}
	if (!size == !uri)
		return rc_usage_err("cow-size", "give either --size SIZE or --base URI");
	r = rc_parse_extent("cow-size", ext, &extent);
	if (!r && uri)
		r = rc_check_uri("cow-size", uri);
	if (!r)
		r = rc_device_sectors("cow-size", size, uri, config, &sectors);
	if (r)
		return r;
	rc_layout_compute(sectors, extent, &l);
	printf("%" PRIu64 "\n", l.cow_sectors * 512);
	if (verbose) {
		printf("device length:    %" PRIu64 " sectors\n", l.dev_sectors);
		printf("extent size:      %u sectors\n", l.extent_sectors);
		printf("extents:          %" PRIu64 "\n", l.nr_extents);
		printf("bitmap blocks:    5 x %" PRIu64 " (4 KiB each, two copies)\n",
		       l.bitmap_blocks);
		printf("metadata:         %" PRIu64 " sectors\n", l.metadata_sectors);
		printf("data offset:      %" PRIu64 " sectors\n", l.data_offset);
		printf("COW device:       %" PRIu64 " sectors = %" PRIu64 " bytes\n",
		       l.cow_sectors, l.cow_sectors * 512);
	}
	return RC_EXIT_OK;
}
