/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vector.h - a growable array of one element type, for the daemon's lists
 * that have no natural bound (poll fds, sources, pending answers).
 *
 *   DEFINE_VECTOR(pollfd_vec, struct pollfd);
 *   struct pollfd_vec v = { 0 };
 *   if (pollfd_vec_push(&v, p)) ...out of memory...
 *   v.len = 0;              reuse the storage
 *   pollfd_vec_free(&v);
 *
 * Growth doubles the capacity (at least 8), so a push is amortised O(1).
 * Pointers into v.ptr are valid until the next push or reserve.
 */
#ifndef REMOTE_COWD_VECTOR_H
#define REMOTE_COWD_VECTOR_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#define DEFINE_VECTOR(name, type)						\
struct name {									\
	type *ptr;								\
	size_t len, cap;							\
};										\
										\
/* Room for at least n more elements; 0 or -ENOMEM. */			\
static inline int name##_reserve(struct name *v, size_t n)			\
{										\
	size_t cap = v->cap ? v->cap : 8;					\
	type *p;								\
										\
	if (v->len + n <= v->cap)						\
		return 0;							\
	if (n > SIZE_MAX / sizeof(type) - v->len)				\
		return -ENOMEM;							\
	while (cap < v->len + n)						\
		cap = cap > SIZE_MAX / sizeof(type) / 2 ? v->len + n : cap * 2;	\
	p = realloc(v->ptr, cap * sizeof(type));				\
	if (!p)									\
		return -ENOMEM;							\
	v->ptr = p;								\
	v->cap = cap;								\
	return 0;								\
}										\
										\
static inline int name##_push(struct name *v, type e)				\
{										\
	int r = name##_reserve(v, 1);						\
										\
	if (r)									\
		return r;							\
	v->ptr[v->len++] = e;							\
	return 0;								\
}										\
										\
/* Remove element i, moving the last one into its place. */		\
static inline void name##_remove_fast(struct name *v, size_t i)		\
{										\
	v->ptr[i] = v->ptr[--v->len];						\
}										\
										\
static inline void name##_free(struct name *v)				\
{										\
	free(v->ptr);								\
	v->ptr = NULL;								\
	v->len = v->cap = 0;							\
}

#endif
