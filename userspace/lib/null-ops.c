// SPDX-License-Identifier: GPL-2.0
/*
 * null-ops.c - base source that reads as zeroes everywhere: one hole.
 * For tests; its size is set by rcow_base_open_null().
 */
#include <string.h>

#include "rcow/base.h"

static int null_open(struct rcow_base *base, const struct rcow_uri *uri, struct rcow_err *err)
{
	(void)uri;
	(void)err;
	base->size = 0;
	base->priv = NULL;
	return 0;
}

static int null_pread(struct rcow_base *base, void *buf, size_t len, uint64_t offset,
		      struct rcow_err *err)
{
	(void)base;
	(void)offset;
	(void)err;
	memset(buf, 0, len);
	return 0;
}

static int null_block_status(struct rcow_base *base, uint64_t offset, uint64_t len,
			     struct rcow_extent_list *list, struct rcow_err *err)
{
	(void)base;
	return rcow_extent_list_add(list, offset, len, true, err);
}

static void null_close(struct rcow_base *base)
{
	(void)base;
}

const struct rcow_base_ops rcow_null_ops = {
	.name = "null",
	.open = null_open,
	.pread = null_pread,
	.block_status = null_block_status,
	.close = null_close,
};
