/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal TAP producer for the librcow unit tests: one binary, one plan.
 * Test groups are functions taking the struct tap they report into.
 */
#ifndef RCOW_TAP_H
#define RCOW_TAP_H

#include <stdbool.h>

struct tap {
	int n;
	int failed;
	int skipped;
	const char *group;
};

/* Report one test; returns cond. */
bool tap_ok(struct tap *t, bool cond, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void tap_skip(struct tap *t, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void tap_diag(struct tap *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A fresh private directory under $TMPDIR (or /tmp); removed by tap_rmtree(). */
char *tap_tmpdir(struct tap *t);
void tap_rmtree(const char *dir);

void test_uri(struct tap *t);
void test_msg(struct tap *t);
void test_base(struct tap *t);
void test_nbd(struct tap *t);
void test_fill(struct tap *t);
void test_policy(struct tap *t);
void test_bufcache(struct tap *t);
void test_config(struct tap *t);
void test_mig(struct tap *t);
void test_mig_tls(struct tap *t);
void test_util(struct tap *t);

#endif
