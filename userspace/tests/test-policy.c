// SPDX-License-Identifier: GPL-2.0
/* test-policy.c - backoff, prefetch window, rate limiter, size/duration parsing. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcow/msg.h"
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

/*
 * A post-copy stream (migrate_postcopy_rate) asking for up to @want
 * extents of 64 KiB every @step_ms over @secs seconds: the extents that
 * went.  @idle_s: seconds it asks nothing first (the bucket saves up).
 */
static uint64_t stream_sim(uint64_t rate, uint64_t want, uint64_t step_ms, uint64_t secs,
			   uint64_t idle_s)
{
	const uint64_t eb = 64 << 10, t0 = 5000000000ull;
	struct rcow_ratelimit r;
	uint64_t went = 0;

	rcow_ratelimit_init(&r, rate, rcow_postcopy_burst(rate, eb), t0);
	for (uint64_t ms = idle_s * 1000; ms < (idle_s + secs) * 1000; ms += step_ms) {
		uint64_t n = rcow_ratelimit_units(&r, eb, want, t0 + ms * 1000000ull);

		rcow_ratelimit_spend(&r, n * eb);
		went += n;
	}
	return went;
}

static void test_postcopy_rate(struct tap *t)
{
	const uint64_t eb = 64 << 10, t0 = 1000000000ull;
	struct rcow_ratelimit r;
	uint64_t n, a, b;

	tap_ok(t, rcow_postcopy_burst(64 << 10, eb) == eb && rcow_postcopy_burst(16 << 10, eb) == eb &&
	       rcow_postcopy_burst(16 << 20, eb) == 4 << 20 && rcow_postcopy_burst(1000, 1) == 250,
	       "burst: a quarter second of the rate, at least one extent");
	n = stream_sim(64 << 10, 64, 1, 10, 0);
	tap_ok(t, n >= 10 && n <= 11, "64K/s, 64 KiB extents: 10 s stream 10 extents, +1 burst (%llu)",
	       (unsigned long long)n);
	n = stream_sim(16 << 10, 64, 7, 40, 0);
	tap_ok(t, n >= 10 && n <= 11, "16K/s: one extent per 4 s, 40 s stream 10 (+1) (%llu)",
	       (unsigned long long)n);
	a = stream_sim(64 << 10, 64, 1, 1, 60);
	tap_ok(t, a <= 2, "a minute asking nothing saves up one extent, not 60 (%llu in the next s)",
	       (unsigned long long)a);
	n = stream_sim(8 << 20, 64, 50, 10, 0);
	tap_ok(t, n >= 1270 && n <= 1280 + 32, "8M/s, asked every 50 ms: 10 s stream 1280 (+32) (%llu)",
	       (unsigned long long)n);
	n = stream_sim(0, 64, 50, 1, 0);
	tap_ok(t, n == 20 * 64, "rate 0: no limit, every ask goes whole (%llu)", (unsigned long long)n);
	/* fewer went than were allowed (extents already present): the rest stays */
	rcow_ratelimit_init(&r, 4 * eb, rcow_postcopy_burst(4 * eb, eb), t0);
	a = rcow_ratelimit_units(&r, eb, 64, t0);
	rcow_ratelimit_spend(&r, 0);
	b = rcow_ratelimit_units(&r, eb, 64, t0);
	rcow_ratelimit_spend(&r, b * eb);
	n = rcow_ratelimit_units(&r, eb, 64, t0);
	tap_ok(t, a == 1 && b == 1 && n == 0 &&
	       rcow_ratelimit_units(&r, eb, 64, t0 + 250000000ull) == 1,
	       "only what went is charged; the next extent a quarter second later (%llu %llu %llu)",
	       (unsigned long long)a, (unsigned long long)b, (unsigned long long)n);
	/* a burst below one extent: one goes once the bucket is full, then it is paid back */
	rcow_ratelimit_init(&r, 1024, 256, t0);
	a = rcow_ratelimit_units(&r, eb, 8, t0);
	rcow_ratelimit_spend(&r, a * eb);
	b = rcow_ratelimit_units(&r, eb, 8, t0 + 60000000000ull);
	n = rcow_ratelimit_units(&r, eb, 8, t0 + 64300000000ull);
	tap_ok(t, a == 1 && b == 0 && n == 1,
	       "a burst smaller than an extent: one at a time, every extent/rate (%llu %llu %llu)",
	       (unsigned long long)a, (unsigned long long)b, (unsigned long long)n);
}

static void test_cut_frame(struct tap *t)
{
	const uint64_t eb = 64 << 10, max = 4 << 20;

	tap_ok(t, rcow_cut_frame_extents(0, eb, max) == 4, "not measured yet: 256 KiB frames");
	tap_ok(t, rcow_cut_frame_extents(8 << 20, eb, max) == 6,
	       "8 MiB/s: 50 ms of the link, whole extents (%llu)",
	       (unsigned long long)rcow_cut_frame_extents(8 << 20, eb, max));
	tap_ok(t, rcow_cut_frame_extents(1000000000, eb, max) == 64,
	       "1 GB/s: no more than a frame carries (4 MiB)");
	tap_ok(t, rcow_cut_frame_extents(2500000, eb, max) == 1 &&
	       rcow_cut_frame_extents(1, eb, max) == 1 &&
	       rcow_cut_frame_extents(8 << 20, 8 << 20, max) == 1,
	       "a slow link or an extent over 50 ms of it: one extent a frame");
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


/*
 * A simulated link: reads of size bytes issued while less than the
 * window is in flight (as src-nbd.c does), each taking delay us plus its
 * share of a link of rate bytes/s.  Returns the window after ms of it.
 */
static uint64_t flow_run(struct rcow_flow *f, uint64_t *now, uint64_t ms, uint64_t rate,
			 uint64_t delay, uint64_t size)
{
	struct { uint64_t issued, delivered, done; } q[4096];
	uint64_t end = *now + ms * 1000, link_free = *now;
	size_t head = 0, tail = 0;
	uint64_t inflight = 0;

	while (*now < end) {
		uint64_t w = rcow_flow_window(f);

		while (inflight < w && tail - head < 4096) {
			uint64_t start = link_free > *now ? link_free : *now;

			link_free = start + size * 1000000 / rate;
			q[tail % 4096].issued = *now;
			q[tail % 4096].delivered = f->delivered;
			q[tail % 4096].done = link_free + delay;
			tail++;
			inflight += size;
		}
		if (head == tail)
			break;
		*now = q[head % 4096].done;
		rcow_flow_done(f, size, q[head % 4096].issued, q[head % 4096].delivered, *now);
		inflight -= size;
		head++;
	}
	return rcow_flow_window(f);
}

static void test_flow(struct tap *t)
{
	struct rcow_flow f;
	uint64_t now = 1000, w, bdp;

	rcow_flow_init(&f, 1 << 20, 256u << 20, now);
	tap_ok(t, rcow_flow_window(&f) == 1 << 20 && rcow_flow_piece(&f, 1, 9, 5) == 5 &&
		  rcow_flow_spec(&f, 4096) == 4096,
	       "flow: the window starts at its minimum, the piece at its default, speculation at lo");
	/* 1.25 GB/s (10 Gbit/s), 5 ms round trip: BDP 6.25 MB */
	bdp = 1250000000ull / 200;
	w = flow_run(&f, &now, 3000, 1250000000ull, 5000, 1 << 20);
	tap_ok(t, w >= 2 * bdp * 9 / 10 && w <= 2 * bdp * 12 / 10,
	       "flow: 10 Gbit/s, 5 ms: the window grows to twice the BDP (%llu, BDP %llu)",
	       (unsigned long long)w, (unsigned long long)bdp);
	tap_ok(t, rcow_flow_bw(&f) >= 1200000000ull && rcow_flow_bw(&f) <= 1300000000ull &&
	       rcow_flow_rtt(&f) >= 5000 && rcow_flow_rtt(&f) < 6000,
	       "flow: measured %llu B/s, %llu us", (unsigned long long)rcow_flow_bw(&f),
	       (unsigned long long)rcow_flow_rtt(&f));
	tap_ok(t, rcow_flow_piece(&f, 128 << 10, 4 << 20, 1) == 4 << 20,
	       "flow: a fast link reads in large pieces (capped)");
	tap_ok(t, rcow_flow_piece(&f, 128 << 10, 64u << 20, 1) == 8u << 20,
	       "flow: a piece is a power of two, rounded down (%llu for 12.5 MB)",
	       (unsigned long long)rcow_flow_piece(&f, 128 << 10, 64u << 20, 1));
	/* the link slows down to 12.5 MB/s (100 Mbit/s), same delay */
	w = flow_run(&f, &now, 5000, 12500000ull, 5000, 1 << 20);
	tap_ok(t, w == 1 << 20, "flow: after the link slowed down the window is back at its minimum (%llu)",
	       (unsigned long long)w);
	tap_ok(t, rcow_flow_piece(&f, 128 << 10, 4 << 20, 1) == 128 << 10,
	       "flow: a slow link reads in small pieces (%llu)",
	       (unsigned long long)rcow_flow_piece(&f, 128 << 10, 4 << 20, 1));
	/* 12.5 MB/s: a quarter second is 3.125 MB, above the 1 MiB window */
	tap_ok(t, rcow_flow_spec(&f, 256 << 10) == 1 << 20,
	       "flow: speculation stays within the window (%llu)",
	       (unsigned long long)rcow_flow_spec(&f, 256 << 10));
	/* 0.5 MB/s, window floor 8 MiB: a quarter second, at least lo */
	rcow_flow_init(&f, 8 << 20, 64 << 20, now);
	flow_run(&f, &now, 3000, 500000ull, 5000, 128 << 10);
	tap_ok(t, rcow_flow_window(&f) == 8 << 20 && rcow_flow_spec(&f, 1) >= 100000 &&
		  rcow_flow_spec(&f, 1) <= 150000 && rcow_flow_spec(&f, 256 << 10) == 256 << 10,
	       "flow: at 0.5 MB/s speculation has a quarter second in flight (%llu), not the 8 MiB window",
	       (unsigned long long)rcow_flow_spec(&f, 1));
	/* 100 Mbit/s with 100 ms: BDP 1.25 MB, window 2.5 MB */
	rcow_flow_init(&f, 1 << 20, 256u << 20, now);
	w = flow_run(&f, &now, 10000, 12500000ull, 100000, 256 << 10);
	/* the delay measured includes one read's transfer time: 121 ms */
	tap_ok(t, w >= 2250000 && w <= 3300000,
	       "flow: 100 Mbit/s, 100 ms: window %llu (2 x BDP 2.5 MB, 3 MB with a read's own time)",
	       (unsigned long long)w);
	/* capped by max */
	rcow_flow_init(&f, 1 << 20, 4 << 20, now);
	w = flow_run(&f, &now, 3000, 1250000000ull, 5000, 1 << 20);
	tap_ok(t, w == 4 << 20, "flow: the window never exceeds its maximum (%llu)",
	       (unsigned long long)w);
	/* no overflow at absurd figures */
	rcow_flow_init(&f, 1, UINT64_MAX, 0);
	rcow_flow_done(&f, UINT64_MAX / 2, 0, 0, 1);
	tap_ok(t, rcow_flow_window(&f) == UINT64_MAX && rcow_flow_piece(&f, 1, 7, 3) == 7,
	       "flow: huge samples saturate, no overflow");
}

static void test_fair(struct tap *t)
{
	struct rcow_fair_cand c[3] = {
		{ 8 << 20, 5, 1 },	/* a device reading a lot */
		{ 0, 7, 1 },		/* one with nothing in flight */
		{ 0, 3, 1 },		/* the same, served longer ago */
	};

	tap_ok(t, rcow_fair_pick(c, 3) == 2,
	       "fair: the device with least in flight, served longest ago, goes first");
	c[2].eligible = 0;
	tap_ok(t, rcow_fair_pick(c, 3) == 1, "fair: a device whose writes are backed up is skipped");
	c[1].inflight = 16 << 20;
	tap_ok(t, rcow_fair_pick(c, 3) == 0, "fair: then the one with less in flight");
	c[0].eligible = c[1].eligible = 0;
	tap_ok(t, rcow_fair_pick(c, 3) == 3 && rcow_fair_pick(c, 0) == 0,
	       "fair: none eligible: n");
	/* equal devices, 8 reads in flight in all, completing in issue order */
	{
		struct rcow_fair_cand r[4] = { { 0, 0, 1 }, { 0, 0, 1 }, { 0, 0, 1 }, { 0, 0, 1 } };
		unsigned int served[4] = { 0 }, lo = 400, hi = 0;
		size_t fifo[8] = { 0 }, head = 0, n = 0;
		uint64_t seq = 1;

		for (int i = 0; i < 400; i++) {
			size_t k;

			if (n == 8) {	/* the oldest read completes */
				r[fifo[head]].inflight -= 1 << 20;
				head = (head + 1) % 8;
				n--;
			}
			k = rcow_fair_pick(r, 4);
			served[k]++;
			r[k].last_served = seq++;
			r[k].inflight += 1 << 20;
			fifo[(head + n++) % 8] = k;
		}
		for (int k = 0; k < 4; k++) {
			lo = served[k] < lo ? served[k] : lo;
			hi = served[k] > hi ? served[k] : hi;
		}
		tap_ok(t, lo == 100 && hi == 100, "fair: four equal devices are served equally (%u %u %u %u)",
		       served[0], served[1], served[2], served[3]);
	}
}

static bool feed(struct rcow_mirror_policy *p, const uint64_t *sent, size_t n)
{
	bool m = false;

	for (size_t i = 0; i < n; i++)
		m = rcow_mirror_round(p, sent[i]);
	return m;
}

static void test_mirror(struct tap *t)
{
	static const uint64_t shrinking[] = { 5000, 1200, 600, 300, 150, 70, 30 };
	static const uint64_t stuck[] = { 5000, 400, 390 };
	static const uint64_t stuck2[] = { 5000, 400, 390, 380 };
	static const uint64_t growing[] = { 300, 400, 500 };
	static const uint64_t small[] = { 5000, 10, 12, 15, 15, 15, 15 };
	static const uint64_t broken[] = { 5000, 400, 390, 100, 380 };
	struct rcow_mirror_policy p;
	uint64_t slow[40];

	rcow_mirror_init(&p);
	tap_ok(t, !feed(&p, shrinking, 7), "mirror: rounds that halve never mirror");
	rcow_mirror_init(&p);
	tap_ok(t, !feed(&p, stuck, 3), "mirror: one round that did not shrink by a tenth is not enough");
	rcow_mirror_init(&p);
	tap_ok(t, feed(&p, stuck2, 4), "mirror: two such rounds in a row mirror");
	rcow_mirror_init(&p);
	tap_ok(t, !feed(&p, growing, 2) && rcow_mirror_round(&p, growing[2]),
	       "mirror: rounds that grow mirror from the third");
	rcow_mirror_init(&p);
	tap_ok(t, !feed(&p, small, 7), "mirror: rounds below %d extents never mirror",
	       RCOW_MIRROR_MIN_EXTENTS);
	rcow_mirror_init(&p);
	tap_ok(t, !feed(&p, broken, 5), "mirror: a round that shrank resets the count");
	rcow_mirror_init(&p);
	for (int i = 0; i < 40; i++)
		slow[i] = i % 2 ? 100 : 50;	/* shrinks every other round */
	tap_ok(t, !feed(&p, slow, RCOW_MIRROR_MAX_ROUNDS - 1) &&
	       rcow_mirror_round(&p, slow[RCOW_MIRROR_MAX_ROUNDS - 1]),
	       "mirror: %d rounds that each sent something big mirror at last",
	       RCOW_MIRROR_MAX_ROUNDS);
}

/* Feed the throttle (first delay start_ms); the steps as letters: k(eep), s(lower), m(irror). */
static void throttle_feed(struct rcow_throttle_policy *p, const uint64_t *sent, size_t n,
			  uint32_t start_ms, char *steps)
{
	static const char letter[] = { [RCOW_THROTTLE_KEEP] = 'k', [RCOW_THROTTLE_SLOWER] = 's',
				       [RCOW_THROTTLE_MIRROR] = 'm' };

	for (size_t i = 0; i < n; i++)
		steps[i] = letter[rcow_throttle_round(p, sent[i], start_ms)];
	steps[n] = 0;
}

static void test_throttle(struct tap *t)
{
	static const uint64_t shrinking[] = { 5000, 1200, 600, 300, 150, 70, 30 };
	static const uint64_t stuck[] = { 5000, 400, 390, 380, 300, 200, 190, 20 };
	static const uint64_t settle[] = { 5000, 400, 400, 400, 400, 300 };
	static const uint64_t never[] = { 5000, 400, 400, 400, 400, 400, 400, 400, 400, 400,
					  400, 400, 400, 400 };
	struct rcow_throttle_policy p;
	uint64_t slow[40];
	char steps[41];

	/* the link time of one extent, rounded up, within [MIN, MAX] */
	tap_ok(t, rcow_throttle_start_ms(65536, 2000000) == 33,
	       "throttle: first delay, 64 KiB at 2 MB/s: 33 ms (%u)",
	       rcow_throttle_start_ms(65536, 2000000));
	tap_ok(t, rcow_throttle_start_ms(65536, 125000000) == 1 &&
	       rcow_throttle_start_ms(4096, 0) == RCOW_THROTTLE_MIN_MS,
	       "throttle: first delay at 1 Gbit/s, or no rate measured yet: %d ms",
	       RCOW_THROTTLE_MIN_MS);
	tap_ok(t, rcow_throttle_start_ms(64 << 20, 1000) == RCOW_THROTTLE_MAX_MS &&
	       rcow_throttle_start_ms(UINT64_MAX / 2, 1) == RCOW_THROTTLE_MAX_MS,
	       "throttle: first delay at most %d ms, no overflow", RCOW_THROTTLE_MAX_MS);

	rcow_throttle_init(&p);
	throttle_feed(&p, shrinking, 7, 33, steps);
	tap_ok(t, !strcmp(steps, "kkkkkkk"), "throttle: rounds that halve are never slowed down (%s)",
	       steps);
	tap_ok(t, p.delay_ms == 0, "throttle: ... no delay");
	rcow_throttle_init(&p);
	throttle_feed(&p, stuck, 8, 8, steps);
	tap_ok(t, !strcmp(steps, "kkkskksk"),
	       "throttle: where auto mirrors, slow down; keep while rounds shrink, double when they stall (%s)",
	       steps);
	tap_ok(t, p.delay_ms == 16, "throttle: started at the first delay given, doubled once (%u ms)",
	       p.delay_ms);
	rcow_throttle_init(&p);
	throttle_feed(&p, settle, 6, 10, steps);
	tap_ok(t, !strcmp(steps, "kkkskk") && p.delay_ms == 10,
	       "throttle: the round taken with a new delay is not judged (%s, %u ms)", steps,
	       p.delay_ms);
	rcow_throttle_init(&p);
	throttle_feed(&p, never, 12, 64, steps);
	tap_ok(t, !strcmp(steps, "kkkskskskskm"),
	       "throttle: doubling every other round from 64 ms up to %d ms, then mirroring (%s)",
	       RCOW_THROTTLE_MAX_MS, steps);
	tap_ok(t, p.delay_ms == RCOW_THROTTLE_MAX_MS, "throttle: the delay stops at %d ms (%u)",
	       RCOW_THROTTLE_MAX_MS, p.delay_ms);
	rcow_throttle_init(&p);
	throttle_feed(&p, never, 8, 300, steps);
	tap_ok(t, !strcmp(steps, "kkkskskm") && p.delay_ms == RCOW_THROTTLE_MAX_MS,
	       "throttle: 300 ms doubles to %d ms, not 600 (%s, %u ms)", RCOW_THROTTLE_MAX_MS,
	       steps, p.delay_ms);
	rcow_throttle_init(&p);
	for (int i = 0; i < 40; i++)
		slow[i] = i % 2 ? 100 : 50;	/* shrinks every other round */
	throttle_feed(&p, slow, RCOW_MIRROR_MAX_ROUNDS, 33, steps);
	tap_ok(t, strchr(steps, 'm') == steps + RCOW_MIRROR_MAX_ROUNDS - 1,
	       "throttle: %d big rounds mirror at last (%s)", RCOW_MIRROR_MAX_ROUNDS, steps);
}

/* runs v[0, n) as "first+count ..." into buf */
static void runs_str(const struct rcow_run *v, size_t n, char *buf, size_t cap)
{
	size_t len = 0;

	buf[0] = 0;
	for (size_t i = 0; i < n && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%llu+%llu", i ? " " : "",
					(unsigned long long)v[i].first,
					(unsigned long long)v[i].count);
}

/* pick's runs as "first+count ..." (out as large as documented: ASan checks it) */
static void picked(const struct rcow_run *fresh, size_t nf, const struct rcow_run *round,
		   size_t nr, uint64_t *cursor, uint64_t budget, char *buf, size_t cap)
{
	struct rcow_run *out = calloc(RCOW_MIRROR_PICK_MAX(nf, nr), sizeof(*out));
	size_t n = out ? rcow_mirror_pick(fresh, nf, round, nr, cursor, budget, out) : 0;

	runs_str(out, n, buf, cap);
	free(out);
}

static void test_mirror_pick(struct tap *t)
{
	static const struct rcow_run fresh[] = { { 5, 1 }, { 9, 2 } };
	static const struct rcow_run all[] = { { 0, 20 } };
	static const struct rcow_run left[] = { { 1, 4 }, { 6, 3 }, { 11, 9 } };
	static const struct rcow_run wrap[] = { { 2, 3 }, { 16, 2 } };
	static const struct rcow_run big[] = { { 0, 10 } };
	static const struct {
		const char *what;
		const struct rcow_run *fresh, *round;
		size_t nf, nr;
		uint64_t cursor, budget;
		const char *want;
		uint64_t cursor_after;
	} c[] = {
		{ "fresh first, then the rest once each", fresh, all, 2, 1, 0, 100,
		  "5+1 9+2 0+5 6+3 11+9", 20 },
		{ "a budget of 4: fresh, then one of the rest", fresh, all, 2, 1, 0, 4,
		  "5+1 9+2 0+1", 1 },
		{ "the next slice goes on from the cursor", NULL, left, 0, 3, 1, 5, "1+4 6+1", 7 },
		{ "from the cursor to the end, then from the start", NULL, wrap, 0, 2, 15, 10,
		  "16+2 2+3", 5 },
		{ "fresh larger than the budget: its first part", big, big, 1, 1, 3, 4, "0+4", 3 },
		{ "a budget of 0 still takes one extent", NULL, all, 0, 1, 0, 0, "0+1", 1 },
		{ "an empty round: nothing", NULL, NULL, 0, 0, 0, 8, "", 0 },
	};
	char b[256];

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint64_t cur = c[i].cursor;

		picked(c[i].fresh, c[i].nf, c[i].round, c[i].nr, &cur, c[i].budget, b, sizeof(b));
		tap_ok(t, !strcmp(b, c[i].want) && cur == c[i].cursor_after,
		       "mirror pick: %s (%s; cursor %llu)", c[i].what, b, (unsigned long long)cur);
	}
}

/* rcow_copy_pick() as "first+count ..." (out as documented); *passed grows by the piece. */
static void copy_picked(const struct rcow_run *fresh, size_t nf, const struct rcow_run *round,
			size_t nr, uint64_t *cursor, uint64_t budget, uint64_t *passed, char *buf,
			size_t cap)
{
	struct rcow_run *out = calloc(RCOW_COPY_PICK_MAX(nf, nr), sizeof(*out));
	size_t n = out ? rcow_copy_pick(fresh, nf, round, nr, cursor, budget, out, passed) : 0;

	runs_str(out, n, buf, cap);
	free(out);
}

static void test_copy_pick(struct tap *t)
{
	static const struct rcow_run fresh[] = { { 5, 1 }, { 9, 2 } };
	static const struct rcow_run tail[] = { { 18, 4 } };
	static const struct rcow_run all[] = { { 0, 20 } };
	static const struct rcow_run left[] = { { 1, 4 }, { 6, 3 }, { 11, 9 } };
	static const struct {
		const char *what;
		const struct rcow_run *fresh, *round;
		size_t nf, nr;
		uint64_t cursor, budget;
		const char *want;
		uint64_t cursor_after, passed;
	} c[] = {
		{ "the whole round less what was written again", fresh, all, 2, 1, 0, 100,
		  "0+5 6+3 11+9", 20, 20 },
		{ "a piece of 10 extents, 3 of them left out", fresh, all, 2, 1, 0, 10,
		  "0+5 6+3", 10, 10 },
		{ "the next piece goes on from the cursor", fresh, all, 2, 1, 10, 10, "11+9", 20, 10 },
		{ "a piece counts extents of the round set, not of the device", NULL, left, 0, 3, 0,
		  6, "1+4 6+2", 8, 6 },
		{ "written again across the end of the round: left out", tail, all, 1, 1, 15, 10,
		  "15+3", 20, 5 },
		{ "all of a piece written again: nothing, the cursor moves on", all, left, 1, 3, 0,
		  5, "", 7, 5 },
		{ "a budget of 0 passes one extent", NULL, all, 0, 1, 3, 0, "3+1", 4, 1 },
		{ "past the round's end: nothing", NULL, all, 0, 1, 20, 8, "", 20, 0 },
	};
	char b[256];

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint64_t cur = c[i].cursor, passed = 0;

		copy_picked(c[i].fresh, c[i].nf, c[i].round, c[i].nr, &cur, c[i].budget, &passed, b,
			    sizeof(b));
		tap_ok(t, !strcmp(b, c[i].want) && cur == c[i].cursor_after &&
		       passed == c[i].passed, "copy pick: %s (%s; cursor %llu, passed %llu)",
		       c[i].what, b, (unsigned long long)cur, (unsigned long long)passed);
	}
}

/*
 * The rounds' log: a step is "<extents sent><f if fenced>@<ms>"; the
 * answers one letter each: s(kip), l(og), i(dle), S(till, with its count).
 */
static void round_log_case(struct tap *t, const char *what, const char *steps, const char *want)
{
	struct rcow_round_log l = { 0 };
	char buf[256] = "", *save = NULL, *step, copy[256];
	size_t used = 0;

	snprintf(copy, sizeof(copy), "%s", steps);
	for (step = strtok_r(copy, " ", &save); step; step = strtok_r(NULL, " ", &save)) {
		char *end;
		uint64_t sent = strtoull(step, &end, 10), skipped = 0, ms;
		bool fenced = *end == 'f';

		ms = strtoull(strchr(step, '@') + 1, NULL, 10);
		switch (rcow_round_log(&l, sent, fenced, ms, &skipped)) {
		case RCOW_ROUND_SKIP:
			used += (size_t)snprintf(buf + used, sizeof(buf) - used, "s ");
			break;
		case RCOW_ROUND_LOG:
			used += (size_t)snprintf(buf + used, sizeof(buf) - used, "l ");
			break;
		case RCOW_ROUND_IDLE:
			used += (size_t)snprintf(buf + used, sizeof(buf) - used, "i ");
			break;
		case RCOW_ROUND_STILL:
			used += (size_t)snprintf(buf + used, sizeof(buf) - used, "S%llu ",
						 (unsigned long long)skipped);
			break;
		}
	}
	if (used)
		buf[used - 1] = '\0';
	tap_ok(t, !strcmp(buf, want), "round log: %s (%s)", what, buf);
}

static void test_round_log(struct tap *t)
{
	round_log_case(t, "rounds that send something: each logged", "5@0 3@200 1@400", "l l l");
	round_log_case(t, "empty rounds: the first, then one per 30 s with the count",
		       "4@0 0@200 0@400 0@600 0@30199 0@30200 0@30400 0@60200",
		       "l i s s s S3 s S1");
	round_log_case(t, "a write ends the run: the next empty round is logged again",
		       "0@0 0@200 2@400 0@600 0@800", "i s l i s");
	round_log_case(t, "after the fence every round is logged, empty or not",
		       "0@0 0@200 3f@400 0f@600 0f@800", "i s l l l");
}

void test_policy(struct tap *t)
{
	test_backoff(t);
	test_prefetch(t);
	test_flow(t);
	test_fair(t);
	test_ratelimit(t);
	test_postcopy_rate(t);
	test_cut_frame(t);
	test_parse(t);
	test_mirror(t);
	test_throttle(t);
	test_mirror_pick(t);
	test_copy_pick(t);
	test_round_log(t);
}
