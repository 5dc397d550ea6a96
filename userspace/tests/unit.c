// SPDX-License-Identifier: GPL-2.0
/*
 * unit.c - runs every librcow unit test group and prints one TAP stream:
 * "ok N - group: description" lines, then the plan "1..N".  Exit status 1
 * if any test failed.
 */
#define _GNU_SOURCE
#include <stdio.h>

#include "tap.h"

int main(void)
{
	static const struct {
		const char *name;
		void (*fn)(struct tap *t);
	} groups[] = {
		{ "uri", test_uri },
		{ "msg", test_msg },
		{ "base", test_base },
		{ "nbd", test_nbd },
		{ "fill", test_fill },
		{ "policy", test_policy },
		{ "config", test_config },
		{ "mig", test_mig },
		{ "mig-tls", test_mig_tls },
		{ "bufcache", test_bufcache },
		{ "util", test_util },
	};
	struct tap t = { 0, 0, 0, NULL };
	size_t i;

	for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		t.group = groups[i].name;
		groups[i].fn(&t);
	}
	printf("1..%d\n", t.n);
	printf("# librcow unit tests: %d passed, %d failed, %d skipped\n",
	       t.n - t.failed - t.skipped, t.failed, t.skipped);
	return t.failed ? 1 : 0;
}
