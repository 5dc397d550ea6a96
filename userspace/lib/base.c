// SPDX-License-Identifier: GPL-2.0
/*
 * base.c - choose a base source's operations table from its URI, and the
 * source-independent helpers built on the table (sparse read, extent lists).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rcow/base.h"

int rcow_extent_list_add(struct rcow_extent_list *list, uint64_t offset, uint64_t length,
			 bool zero, struct rcow_err *err)
{
	if (length == 0)
		return 0;
	/* merge with the previous run of the same kind */
	if (list->n > 0) {
		struct rcow_extent *last = &list->v[list->n - 1];

		if (last->zero == zero && last->offset + last->length == offset) {
			last->length += length;
			return 0;
		}
	}
	if (list->n == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 16;
		struct rcow_extent *v = realloc(list->v, cap * sizeof(*v));

		if (!v)
			return rcow_err_set(err, ENOMEM, "out of memory growing an extent list");
		list->v = v;
		list->cap = cap;
	}
	list->v[list->n++] = (struct rcow_extent){ offset, length, zero };
	return 0;
}

void rcow_extent_list_reset(struct rcow_extent_list *list)
{
	list->n = 0;
}

void rcow_extent_list_free(struct rcow_extent_list *list)
{
	free(list->v);
	memset(list, 0, sizeof(*list));
}

int rcow_block_status_all_data(struct rcow_base *base, uint64_t offset, uint64_t len,
			       struct rcow_extent_list *list, struct rcow_err *err)
{
	(void)base;
	return rcow_extent_list_add(list, offset, len, false, err);
}

static int open_ops(const struct rcow_base_ops *ops, const struct rcow_uri *uri,
		    const char *name, const struct rcow_cred *cred, struct rcow_base **out,
		    struct rcow_err *err)
{
	struct rcow_base *base = calloc(1, sizeof(*base));
	int r;

	if (!base || !(base->name = strdup(name))) {
		free(base);
		return rcow_err_set(err, ENOMEM, "out of memory opening base %s", name);
	}
	base->ops = ops;
	base->cred = cred;
	r = ops->open(base, uri, err);
	base->cred = NULL;
	if (r) {
		free(base->name);
		free(base);
		return r;
	}
	*out = base;
	return 0;
}

int rcow_base_open_ops(const struct rcow_base_ops *ops, const struct rcow_uri *uri,
		       const char *name, struct rcow_base **out, struct rcow_err *err)
{
	return open_ops(ops, uri, name, NULL, out, err);
}

int rcow_base_open_cred(const char *text, const struct rcow_cred *cred, struct rcow_base **out,
			struct rcow_err *err)
{
	const struct rcow_base_ops *ops;
	struct rcow_uri uri;
	int r;

	r = rcow_uri_parse(text, &uri, err);
	if (r) {
		rcow_err_prefix(err, "base URI '%s'", text ? text : "");
		return r;
	}
	ops = uri.scheme == RCOW_SCHEME_FILE ? &rcow_file_ops : &rcow_nbd_ops;
	r = open_ops(ops, &uri, text, cred, out, err);
	rcow_uri_free(&uri);
	return r;
}

int rcow_base_open(const char *text, struct rcow_base **out, struct rcow_err *err)
{
	return rcow_base_open_cred(text, NULL, out, err);
}

int rcow_base_open_null(uint64_t size, struct rcow_base **out, struct rcow_err *err)
{
	struct rcow_uri uri = { .port = 0 };
	int r;

	r = rcow_base_open_ops(&rcow_null_ops, &uri, "null:", out, err);
	if (r == 0)
		(*out)->size = size;
	return r;
}

void rcow_base_close(struct rcow_base *base)
{
	if (!base)
		return;
	base->ops->close(base);
	free(base->name);
	free(base);
}

int rcow_base_read_sparse(struct rcow_base *base, void *buf, size_t len, uint64_t offset,
			  struct rcow_extent_list *scratch, uint64_t *read_bytes,
			  uint64_t *zero_bytes, struct rcow_err *err)
{
	unsigned char *p = buf;
	uint64_t end = offset + len, pos = offset, in_end;
	size_t i;
	int r;

	if (end < offset)
		return rcow_err_set(err, EOVERFLOW, "read range at %llu overflows",
				    (unsigned long long)offset);
	in_end = end < base->size ? end : base->size;
	while (pos < in_end) {
		rcow_extent_list_reset(scratch);
		r = base->ops->block_status(base, pos, in_end - pos, scratch, err);
		if (r)
			return r;
		if (scratch->n == 0)
			return rcow_err_set(err, EPROTO,
				"base %s reported no allocation information at offset %llu",
				base->name, (unsigned long long)pos);
		for (i = 0; i < scratch->n && pos < in_end; i++) {
			struct rcow_extent *e = &scratch->v[i];
			uint64_t s = e->offset, t = e->offset + e->length;

			if (s != pos || t <= s)
				return rcow_err_set(err, EPROTO,
					"base %s returned allocation runs that are not contiguous (expected offset %llu, got %llu)",
					base->name, (unsigned long long)pos, (unsigned long long)s);
			if (t > in_end)
				t = in_end;
			if (e->zero) {
				memset(p + (pos - offset), 0, t - pos);
				if (zero_bytes)
					*zero_bytes += t - pos;
			} else {
				r = base->ops->pread(base, p + (pos - offset), t - pos, pos, err);
				if (r)
					return r;
				if (read_bytes)
					*read_bytes += t - pos;
			}
			pos = t;
		}
	}
	if (in_end < end) {
		uint64_t from = in_end > offset ? in_end : offset;

		memset(p + (from - offset), 0, end - from);
		if (zero_bytes)
			*zero_bytes += end - from;
	}
	return 0;
}
