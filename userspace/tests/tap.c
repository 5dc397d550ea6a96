// SPDX-License-Identifier: GPL-2.0
/*
 * tap.c - the TAP producer shared by the librcow unit tests (unit.c),
 * remote-cowd's host tests (rcowd-test.c) and the CLI's (tools/tests);
 * see tap.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

static void vreport(struct tap *t, bool cond, const char *directive, const char *fmt, va_list ap)
{
	char desc[512];

	t->n++;
	vsnprintf(desc, sizeof(desc), fmt, ap);
	printf("%sok %d - %s: ", cond ? "" : "not ", t->n, t->group);
	for (const char *c = desc; *c; c++) {	/* TAP: '#' starts a directive */
		if (*c == '#')
			fputs("\\#", stdout);
		else
			putchar((unsigned char)*c < 0x20 ? '?' : *c);
	}
	if (directive)
		printf(" # %s", directive);
	printf("\n");
	fflush(stdout);
}

bool tap_ok(struct tap *t, bool cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(t, cond, NULL, fmt, ap);
	va_end(ap);
	if (!cond)
		t->failed++;
	return cond;
}

void tap_skip(struct tap *t, const char *reason, const char *fmt, ...)
{
	char directive[256];
	va_list ap;

	snprintf(directive, sizeof(directive), "SKIP %s", reason);
	va_start(ap, fmt);
	vreport(t, true, directive, fmt, ap);
	va_end(ap);
	t->skipped++;
}

void tap_diag(struct tap *t, const char *fmt, ...)
{
	va_list ap;

	printf("# %s: ", t->group);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

char *tap_tmpdir(struct tap *t)
{
	const char *base = getenv("TMPDIR");
	char *dir;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&dir, "%s/rcow-unit.XXXXXX", base) < 0)
		return NULL;
	if (!mkdtemp(dir)) {
		tap_diag(t, "cannot make a temporary directory under %s", base);
		free(dir);
		return NULL;
	}
	return dir;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tap_rmtree(const char *dir)
{
	if (dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
