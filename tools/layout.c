// SPDX-License-Identifier: GPL-2.0
/*
 * layout.c - how big a COW device must be.
 *
 * The same formula as the kernel's data_offset_for() and
 * rcow_md_required_sectors() in dm-remote-cow/dm-remote-cow-metadata.c,
 * from the constants both take from uapi/remote_cow_disk.h
 * (Documentation/remote-cow.rst, "COW device layout"):
 *
 *   extents           = ceil(length / extent_sectors)
 *   blocks per bitmap = ceil(extents / 32256)         (4 KiB blocks)
 *   metadata          = (1 + 5 * 2 * blocks per bitmap) * 8 sectors
 *                       (superblock, two copies of every bitmap block)
 *   data_offset       = metadata rounded up to max(extent_sectors, 2048)
 *   COW size          = data_offset + length          (sectors)
 *
 * The selftest cli.sh checks it against the kernel: a COW device of
 * exactly that size loads, one sector less is refused.
 */
#include "rc.h"
#include "remote_cow_disk.h"

void rc_layout_compute(uint64_t dev_sectors, uint32_t extent_sectors, struct rc_layout *l)
{
	uint64_t align = extent_sectors > RCOW_DISK_DATA_ALIGN ? extent_sectors :
			 RCOW_DISK_DATA_ALIGN;

	l->extent_sectors = extent_sectors;
	l->dev_sectors = dev_sectors;
	l->nr_extents = (dev_sectors + extent_sectors - 1) / extent_sectors;
	l->bitmap_blocks = RCOW_DISK_BM_BLOCKS(l->nr_extents);
	l->metadata_sectors = RCOW_DISK_MD_BLOCKS(l->bitmap_blocks) * RCOW_DISK_BLOCK_SECTORS;
	l->data_offset = (l->metadata_sectors + align - 1) / align * align;
	l->cow_sectors = l->data_offset + dev_sectors;
}
