// SPDX-License-Identifier: GPL-2.0
/*
 * err.c - the error record every librcow call fills in on failure.
 * See include/rcow/err.h.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rcow/err.h"

int rcow_err_set(struct rcow_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (code <= 0)
		code = code ? -code : 5 /* EIO: never report "success" */;
	if (err) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -code;
}

void rcow_err_prefix(struct rcow_err *err, const char *fmt, ...)
{
	char old[RCOW_ERR_MSG_MAX];
	size_t n;
	va_list ap;
	int w;

	if (!err)
		return;
	memcpy(old, err->msg, sizeof(old));
	va_start(ap, fmt);
	w = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	n = w < 0 ? 0 : (size_t)w;
	if (n + 3 >= sizeof(err->msg))	/* the prefix alone fills it */
		return;
	memcpy(err->msg + n, ": ", 2);
	n += 2;
	/* keep the old message, cut to what is left (always NUL-terminated) */
	strncpy(err->msg + n, old, sizeof(err->msg) - n - 1);
	err->msg[sizeof(err->msg) - 1] = '\0';
}

void rcow_err_clear(struct rcow_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}

const char *rcow_errno_name(int code, char *buf, size_t len)
{
	const char *name = strerrorname_np(code);

	if (name)
		return name;
	snprintf(buf, len, "E%d", code);
	return buf;
}
