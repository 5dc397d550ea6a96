// SPDX-License-Identifier: GPL-2.0
/* test-policy.c - backoff, prefetch window, rate limiter, size/duration parsing. */
#include <errno.h>
#include <stdint.h>

#include "rcow/policy.h"
#include "tap.h"

static void test_backoff(struct tap *t)
{
	struct rcow_backoff b;
	uint32_t d[8];

	rcow_backoff_init(&b, 250, 10000);
	for (int i = 0; i < 8; i++)
		d[i] = rcow_backoff_fail(&b);
	tap_ok(t, d[0] == 250 && d[1] == 500 && d[2] == 1000 && d[3] == 2000 && d[4] == 4000 &&
	       d[5] == 8000, "backoff doubles from 250 ms: %u %u %u %u %u %u", d[0], d[1], d[2],
	       d[3], d[4], d[5]);
	tap_ok(t, d[6] == 10000 && d[7] == 10000, "backoff is capped at 10 s: %u %u", d[6], d[7]);
	tap_ok(t, b.failures == 8, "backoff counts failures (%u)", b.failures);
	rcow_backoff_reset(&b);
	tap_ok(t, rcow_backoff_fail(&b) == 250, "a success starts the backoff over");
	rcow_backoff_init(&b, 3000, 1000);
	tap_ok(t, rcow_backoff_fail(&b) == 3000 && rcow_backoff_fail(&b) == 3000,
	       "a cap below the initial delay is raised to it");
}

static void test_prefetch(struct tap *t)
{
	struct rcow_prefetch p;
	uint64_t f = 0, fetched_end = 0, total = 0;
	uint32_t c = 0;
	bool any = false, over = false;

	rcow_prefetch_init(&p, 2, 16);
	tap_ok(t, !rcow_prefetch_fault(&p, 10, 1, 1000, &f, &c), "one fault alone prefetches nothing");
	tap_ok(t, rcow_prefetch_fault(&p, 11, 1, 1000, &f, &c) && f == 12 && c == 2,
	       "the second sequential fault prefetches the initial window (%llu+%u)",
	       (unsigned long long)f, c);
	/* reader continues past the read-ahead: next fault at 14 */
	tap_ok(t, rcow_prefetch_fault(&p, 14, 1, 1000, &f, &c) && f == 15 && c == 4,
	       "the window doubles (%llu+%u)", (unsigned long long)f, c);
	tap_ok(t, rcow_prefetch_fault(&p, 19, 1, 1000, &f, &c) && f == 20 && c == 8,
	       "and doubles again (%llu+%u)", (unsigned long long)f, c);
	tap_ok(t, rcow_prefetch_fault(&p, 28, 1, 1000, &f, &c) && f == 29 && c == 16,
	       "up to the cap (%llu+%u)", (unsigned long long)f, c);
	tap_ok(t, rcow_prefetch_fault(&p, 45, 1, 1000, &f, &c) && f == 46 && c == 16,
	       "and stays there (%llu+%u)", (unsigned long long)f, c);
	tap_ok(t, !rcow_prefetch_fault(&p, 500, 1, 1000, &f, &c) && p.window == 0,
	       "a jump resets the detector");
	/* faults inside the read-ahead (prefetch not yet arrived) only extend */
	rcow_prefetch_init(&p, 2, 16);
	rcow_prefetch_fault(&p, 0, 1, 1000, &f, &c);
	rcow_prefetch_fault(&p, 1, 1, 1000, &f, &c);	/* ra 2..4 */
	tap_ok(t, rcow_prefetch_fault(&p, 2, 1, 1000, &f, &c) && f == 4 && c == 3,
	       "a fault inside the read-ahead asks only beyond it (%llu+%u)",
	       (unsigned long long)f, c);
	tap_ok(t, !rcow_prefetch_fault(&p, 999, 1, 1000, &f, &c) || (f + c <= 1000),
	       "never past the end of the device");
	rcow_prefetch_init(&p, 2, 16);
	rcow_prefetch_fault(&p, 990, 1, 1000, &f, &c);
	tap_ok(t, rcow_prefetch_fault(&p, 991, 1, 1000, &f, &c) && f + c <= 1000,
	       "the window is clipped at the device end");
	tap_ok(t, !rcow_prefetch_fault(&p, 999, 1, 1000, &f, &c) ||
	       f + c <= 1000, "no range beyond the last extent");
	/* a sequential reader of 0..255: fetched beyond what it reads <= max */
	rcow_prefetch_init(&p, 2, 16);
	for (uint64_t e = 0; e < 256; e++) {
		if (e < fetched_end)
			continue;	/* served from the read-ahead: no fault */
		if (rcow_prefetch_fault(&p, e, 1, 100000, &f, &c)) {
			any = true;
			total += c;
			if (f + c > fetched_end)
				fetched_end = f + c;
		}
		if (e + 1 > fetched_end)
			fetched_end = e + 1;
	}
	over = fetched_end > 256 + 16;
	tap_ok(t, any && !over, "a sequential reader gets read-ahead (%llu extents) and at most the cap beyond its end (end %llu)",
	       (unsigned long long)total, (unsigned long long)fetched_end);
	rcow_prefetch_init(&p, 2, 0);
	rcow_prefetch_fault(&p, 0, 1, 100, &f, &c);
	tap_ok(t, !rcow_prefetch_fault(&p, 1, 1, 100, &f, &c), "max 0 turns prefetch off");
	/* random faults: no prefetch */
	rcow_prefetch_init(&p, 2, 16);
	any = false;
	for (uint64_t e = 0, x = 7; e < 200; e++) {
		x = (x * 1103515245 + 12345) % 100000;
		any |= rcow_prefetch_fault(&p, x * 2, 1, 200000, &f, &c);
	}
	tap_ok(t, !any, "random faults two or more extents apart prefetch nothing");
}

static void test_ratelimit(struct tap *t)
{
	struct rcow_ratelimit r;
	uint64_t now = 1000000000ull, sent = 0, w;
	const uint64_t mib = 1 << 20;

	rcow_ratelimit_init(&r, 0, mib, now);
	tap_ok(t, rcow_ratelimit_take(&r, 1ull << 40, now) == 0, "rate 0 is unlimited");
	rcow_ratelimit_init(&r, 4 * mib, mib, now);
	tap_ok(t, rcow_ratelimit_take(&r, mib, now) == 0, "a full bucket lets one burst through");
	w = rcow_ratelimit_take(&r, mib, now);
	tap_ok(t, w > 240000000ull && w < 260000000ull, "then waits burst/rate (%llu ns)",
	       (unsigned long long)w);
	/* simulate 10 s of a greedy sender taking 64 KiB at a time */
	rcow_ratelimit_init(&r, 4 * mib, 256 << 10, now);
	for (uint64_t tn = now; tn < now + 10000000000ull;) {
		w = rcow_ratelimit_take(&r, 64 << 10, tn);
		if (w == 0)
			sent += 64 << 10;
		else
			tn += w;
	}
	tap_ok(t, sent >= 39 * mib && sent <= 41 * mib + (256 << 10),
	       "10 s at 4 MiB/s sends about 40 MiB (%llu)", (unsigned long long)sent);
	rcow_ratelimit_init(&r, mib, 64 << 10, now);
	tap_ok(t, rcow_ratelimit_take(&r, 4 * mib, now) == 0 &&
	       rcow_ratelimit_take(&r, 64 << 10, now) > 3000000000ull,
	       "a request larger than the burst goes once and is paid back");
}

static void test_parse(struct tap *t)
{
	uint64_t v = 0;
	uint32_t ms = 0;

	tap_ok(t, !rcow_parse_size("8M", &v) && v == 8u << 20, "size 8M");
	tap_ok(t, !rcow_parse_size("64k", &v) && v == 65536, "size 64k");
	tap_ok(t, !rcow_parse_size("1GiB", &v) && v == 1u << 30, "size 1GiB");
	tap_ok(t, !rcow_parse_size("4096", &v) && v == 4096, "size 4096");
	tap_ok(t, rcow_parse_size("-1", &v) == -EINVAL && rcow_parse_size("8X", &v) == -EINVAL &&
	       rcow_parse_size("", &v) == -EINVAL && rcow_parse_size("M", &v) == -EINVAL,
	       "bad sizes are refused");
	tap_ok(t, !rcow_parse_duration_ms("250ms", &ms) && ms == 250, "duration 250ms");
	tap_ok(t, !rcow_parse_duration_ms("1.5s", &ms) && ms == 1500, "duration 1.5s");
	tap_ok(t, !rcow_parse_duration_ms("30", &ms) && ms == 30000, "duration 30 (seconds)");
	tap_ok(t, rcow_parse_duration_ms("5m", &ms) == -EINVAL &&
	       rcow_parse_duration_ms("-1s", &ms) == -EINVAL &&
	       rcow_parse_duration_ms("99999999s", &ms) == -EINVAL, "bad durations are refused");
}

void test_policy(struct tap *t)
{
	test_backoff(t);
	test_prefetch(t);
	test_ratelimit(t);
	test_parse(t);
}
