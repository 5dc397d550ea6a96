/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Error reporting for librcow.
 *
 * Every library call that can fail takes a struct rcow_err * and, on
 * failure, returns a negative errno and leaves a complete, human-readable
 * sentence in err->msg: what went wrong and, where it is known, what the
 * operator can do about it.  The library never prints; callers decide.
 * No state is kept anywhere else (no errno-style globals).
 */
#ifndef RCOW_ERR_H
#define RCOW_ERR_H

#include <stddef.h>

#define RCOW_ERR_MSG_MAX 768

struct rcow_err {
	int code;			/* positive errno of the failure, 0: none */
	char msg[RCOW_ERR_MSG_MAX];	/* sentence, no trailing newline */
};

/*
 * Record a failure: sets err->code = code and formats err->msg.  Returns
 * -code so callers can write "return rcow_err_set(err, EINVAL, ...);".
 * err may be NULL (the failure is then only returned).
 */
int rcow_err_set(struct rcow_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefix err->msg with more context ("opening base: <old message>"). */
void rcow_err_prefix(struct rcow_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reset to "no error". */
void rcow_err_clear(struct rcow_err *err);

/* "ENOENT" for ENOENT, "E123" for unknown values; never NULL. */
const char *rcow_errno_name(int code, char *buf, size_t len);

#endif
