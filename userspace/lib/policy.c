// SPDX-License-Identifier: GPL-2.0
/*
 * policy.c - backoff, prefetch window and rate limiter of remote-cowd
 * (see include/rcow/policy.h).  No I/O, no clock: callers pass the time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "remote_cow.h"
#include "rcow/msg.h"
#include "rcow/policy.h"

void rcow_backoff_init(struct rcow_backoff *b, uint32_t initial_ms, uint32_t max_ms)
{
	b->initial_ms = initial_ms ? initial_ms : 1;
	b->max_ms = max_ms < b->initial_ms ? b->initial_ms : max_ms;
	rcow_backoff_reset(b);
}

uint32_t rcow_backoff_fail(struct rcow_backoff *b)
{
	uint32_t d = b->next_ms;

	b->failures++;
	b->next_ms = d > b->max_ms / 2 ? b->max_ms : d * 2;
	return d;
}

void rcow_backoff_reset(struct rcow_backoff *b)
{
	b->next_ms = b->initial_ms;
	b->failures = 0;
}

/* ---- fair share --------------------------------------------------------------- */

size_t rcow_fair_pick(const struct rcow_fair_cand *c, size_t n)
{
	size_t best = n;

	for (size_t i = 0; i < n; i++) {
		if (!c[i].eligible)
			continue;
		if (best == n || c[i].inflight < c[best].inflight ||
		    (c[i].inflight == c[best].inflight && c[i].last_served < c[best].last_served))
			best = i;
	}
	return best;
}

/* ---- flow window ------------------------------------------------------------ */

void rcow_flow_init(struct rcow_flow *f, uint64_t min, uint64_t max, uint64_t now_us)
{
	memset(f, 0, sizeof(*f));
	f->min = min ? min : 1;
	f->max = max < f->min ? f->min : max;
	f->bw_start = f->rtt_start = now_us;
}

void rcow_flow_done(struct rcow_flow *f, uint64_t bytes, uint64_t issued_us,
		    uint64_t delivered_then, uint64_t now_us)
{
	uint64_t dt = now_us > issued_us ? now_us - issued_us : 1, rate, got;

	f->delivered += bytes;
	f->samples++;
	got = f->delivered - delivered_then;
	/* bytes per second; got < 2^64 / 10^6 for any real transfer */
	rate = got > UINT64_MAX / 1000000u ? UINT64_MAX / dt : got * 1000000u / dt;
	while (now_us - f->bw_start >= RCOW_FLOW_BW_PERIOD_US) {
		/* a period passed: the current one becomes the previous one */
		f->bw_prev = now_us - f->bw_start >= 2 * RCOW_FLOW_BW_PERIOD_US ? 0 : f->bw_cur;
		f->bw_cur = 0;
		f->bw_start = now_us - f->bw_start >= 2 * RCOW_FLOW_BW_PERIOD_US ?
			now_us : f->bw_start + RCOW_FLOW_BW_PERIOD_US;
	}
	if (rate > f->bw_cur)
		f->bw_cur = rate;
	while (now_us - f->rtt_start >= RCOW_FLOW_RTT_PERIOD_US) {
		f->rtt_prev = now_us - f->rtt_start >= 2 * RCOW_FLOW_RTT_PERIOD_US ? 0 : f->rtt_cur;
		f->rtt_cur = 0;
		f->rtt_start = now_us - f->rtt_start >= 2 * RCOW_FLOW_RTT_PERIOD_US ?
			now_us : f->rtt_start + RCOW_FLOW_RTT_PERIOD_US;
	}
	if (!f->rtt_cur || dt < f->rtt_cur)
		f->rtt_cur = dt;
}

uint64_t rcow_flow_bw(const struct rcow_flow *f)
{
	return f->bw_cur > f->bw_prev ? f->bw_cur : f->bw_prev;
}

uint64_t rcow_flow_rtt(const struct rcow_flow *f)
{
	if (!f->rtt_prev)
		return f->rtt_cur;
	if (!f->rtt_cur)
		return f->rtt_prev;
	return f->rtt_cur < f->rtt_prev ? f->rtt_cur : f->rtt_prev;
}

uint64_t rcow_flow_window(const struct rcow_flow *f)
{
	uint64_t bw = rcow_flow_bw(f), rtt = rcow_flow_rtt(f), w;

	if (!bw || !rtt)
		return f->min;
	/* 2 x bw x rtt, without overflow: bw < 2^40 B/s, rtt < 2^24 us in practice */
	if (bw > UINT64_MAX / 2 / rtt)
		return f->max;
	w = 2 * bw * rtt / 1000000u;
	return w < f->min ? f->min : w > f->max ? f->max : w;
}

uint64_t rcow_flow_piece(const struct rcow_flow *f, uint64_t lo, uint64_t hi, uint64_t def)
{
	uint64_t bw = rcow_flow_bw(f), p;

	if (!bw)
		return def;
	if (bw > UINT64_MAX / RCOW_FLOW_PIECE_US)
		return hi;
	p = bw * RCOW_FLOW_PIECE_US / 1000000u;
	if (p)
		p = 1ull << (63 - __builtin_clzll(p));	/* a power of two, rounded down */
	return p < lo ? lo : p > hi ? hi : p;
}

uint64_t rcow_flow_spec(const struct rcow_flow *f, uint64_t lo)
{
	uint64_t bw = rcow_flow_bw(f), w = rcow_flow_window(f), s;

	if (!bw)
		s = lo;
	else if (bw > UINT64_MAX / RCOW_FLOW_SPEC_US)
		s = w;
	else
		s = bw * RCOW_FLOW_SPEC_US / 1000000u;
	if (s < lo)
		s = lo;
	return s < w ? s : w;
}

void rcow_prefetch_init(struct rcow_prefetch *p, uint64_t init_extents, uint64_t max_extents)
{
	memset(p, 0, sizeof(*p));
	if (max_extents > REMOTE_COW_MAX_RANGE)
		max_extents = REMOTE_COW_MAX_RANGE;
	p->max = max_extents;
	p->init = init_extents < 1 ? 1 : init_extents;
	if (p->init > p->max)
		p->init = p->max;
}

bool rcow_prefetch_fault(struct rcow_prefetch *p, uint64_t first, uint32_t count, uint64_t nr,
			 uint64_t *pf_first, uint32_t *pf_count)
{
	uint64_t end = first + count, hi = p->ra_end > p->next ? p->ra_end : p->next;
	uint64_t start, stop;

	if (p->seq > 0 && first >= p->next && first <= hi) {
		p->seq++;
	} else {
		p->seq = 1;
		p->window = 0;
		p->ra_end = 0;
	}
	p->next = end;
	if (p->max == 0 || p->seq < 2)
		return false;
	p->window = p->window ? p->window * 2 : p->init;
	if (p->window > p->max)
		p->window = p->max;
	start = p->ra_end > end ? p->ra_end : end;
	stop = end + p->window;
	if (stop > nr)
		stop = nr;
	if (stop <= start)
		return false;
	p->ra_end = stop;
	*pf_first = start;
	*pf_count = (uint32_t)(stop - start);
	return true;
}

void rcow_ratelimit_init(struct rcow_ratelimit *r, uint64_t rate, uint64_t burst, uint64_t now_ns)
{
	r->rate = rate;
	r->burst = burst ? burst : 1;
	r->tokens = (double)r->burst;
	r->last_ns = now_ns;
}

/* The tokens saved up until now_ns, at most burst. */
static void refill(struct rcow_ratelimit *r, uint64_t now_ns)
{
	if (now_ns > r->last_ns) {
		r->tokens += (double)(now_ns - r->last_ns) * (double)r->rate / 1e9;
		if (r->tokens > (double)r->burst)
			r->tokens = (double)r->burst;
	}
	r->last_ns = now_ns;
}

uint64_t rcow_ratelimit_take(struct rcow_ratelimit *r, uint64_t bytes, uint64_t now_ns)
{
	double need;

	if (r->rate == 0)
		return 0;
	refill(r, now_ns);
	need = (double)(bytes < r->burst ? bytes : r->burst);
	if (r->tokens >= need) {
		r->tokens -= (double)bytes;	/* may go negative for big requests */
		return 0;
	}
	return (uint64_t)((need - r->tokens) * 1e9 / (double)r->rate) + 1;
}

uint64_t rcow_ratelimit_units(struct rcow_ratelimit *r, uint64_t unit, uint64_t want,
			      uint64_t now_ns)
{
	double n;

	if (r->rate == 0 || !unit)
		return want;
	refill(r, now_ns);
	if (r->tokens < (double)unit)
		return r->burst < unit && r->tokens >= (double)r->burst && want ? 1 : 0;
	n = r->tokens / (double)unit;
	return n < (double)want ? (uint64_t)n : want;
}

void rcow_ratelimit_spend(struct rcow_ratelimit *r, uint64_t bytes)
{
	if (r->rate)
		r->tokens -= (double)bytes;
}

uint64_t rcow_postcopy_burst(uint64_t rate, uint64_t extent_bytes)
{
	uint64_t b = rate / 1000 * RCOW_POSTCOPY_BURST_MS + rate % 1000 * RCOW_POSTCOPY_BURST_MS / 1000;

	return b > extent_bytes ? b : extent_bytes;
}

uint64_t rcow_cut_frame_extents(uint64_t rate, uint64_t extent_bytes, uint64_t max_bytes)
{
	uint64_t b = rate ? rate / 1000 * RCOW_CUT_FRAME_MS + rate % 1000 * RCOW_CUT_FRAME_MS / 1000 :
			    RCOW_CUT_FRAME_FIRST;

	if (b > max_bytes)
		b = max_bytes;
	if (!extent_bytes || b < extent_bytes)
		return 1;
	return b / extent_bytes;
}

int rcow_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned int shift = 0;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] && !(end[1] == 'i' && end[2] == 'B' && !end[3]) &&
	    !((end[1] == 'B' || end[1] == 'b') && !end[2]))
		return -EINVAL;
	if (shift && v > (~0ULL >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int rcow_parse_duration_ms(const char *s, uint32_t *out)
{
	char *end;
	double v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	if (!strcmp(end, "ms"))
		;
	else if (!strcmp(end, "s") || !*end)
		v *= 1000;
	else
		return -EINVAL;
	if (v > 86400000.0)
		return -EINVAL;
	*out = (uint32_t)(v + 0.5);
	return 0;
}

void rcow_mirror_init(struct rcow_mirror_policy *p)
{
	memset(p, 0, sizeof(*p));
}

bool rcow_mirror_round(struct rcow_mirror_policy *p, uint64_t sent)
{
	bool big = sent >= RCOW_MIRROR_MIN_EXTENTS;

	if (p->rounds++ && big && sent * 100 >= p->last * RCOW_MIRROR_SHRINK_PCT)
		p->stalls++;
	else
		p->stalls = 0;
	p->big += big;
	p->last = sent;
	return p->stalls >= RCOW_MIRROR_STALLS || p->big >= RCOW_MIRROR_MAX_ROUNDS;
}

void rcow_throttle_init(struct rcow_throttle_policy *p)
{
	memset(p, 0, sizeof(*p));
}

uint32_t rcow_throttle_start_ms(uint64_t extent_bytes, uint64_t rate)
{
	uint64_t ms;

	if (!rate)
		return RCOW_THROTTLE_MIN_MS;
	if (extent_bytes > UINT64_MAX / 1000)
		return RCOW_THROTTLE_MAX_MS;
	ms = (extent_bytes * 1000 + rate - 1) / rate;
	if (ms < RCOW_THROTTLE_MIN_MS)
		return RCOW_THROTTLE_MIN_MS;
	return ms > RCOW_THROTTLE_MAX_MS ? RCOW_THROTTLE_MAX_MS : (uint32_t)ms;
}

enum rcow_throttle_step rcow_throttle_round(struct rcow_throttle_policy *p, uint64_t sent,
					    uint32_t start_ms)
{
	struct rcow_mirror_policy *m = &p->until;
	uint64_t last = m->last;
	bool settling = p->settling;

	if (!p->delay_ms) {
		if (!rcow_mirror_round(m, sent))
			return RCOW_THROTTLE_KEEP;
		if (m->big >= RCOW_MIRROR_MAX_ROUNDS)
			return RCOW_THROTTLE_MIRROR;
		p->delay_ms = start_ms < RCOW_THROTTLE_MIN_MS ? RCOW_THROTTLE_MIN_MS :
				start_ms > RCOW_THROTTLE_MAX_MS ? RCOW_THROTTLE_MAX_MS : start_ms;
		p->settling = true;
		return RCOW_THROTTLE_SLOWER;
	}
	p->settling = false;
	m->rounds++;
	m->big += sent >= RCOW_MIRROR_MIN_EXTENTS;
	m->last = sent;
	if (m->big >= RCOW_MIRROR_MAX_ROUNDS)
		return RCOW_THROTTLE_MIRROR;
	/* written before the delay it was taken with: says nothing of it */
	if (settling || sent < RCOW_MIRROR_MIN_EXTENTS ||
	    sent * 100 < last * RCOW_MIRROR_SHRINK_PCT)
		return RCOW_THROTTLE_KEEP;
	if (p->delay_ms >= RCOW_THROTTLE_MAX_MS)
		return RCOW_THROTTLE_MIRROR;
	p->delay_ms = p->delay_ms > RCOW_THROTTLE_MAX_MS / 2 ? RCOW_THROTTLE_MAX_MS :
							       2 * p->delay_ms;
	p->settling = true;
	return RCOW_THROTTLE_SLOWER;
}

/* Append [first, first + count) to out, at most *budget extents. */
static void take(struct rcow_run *out, size_t *n, uint64_t first, uint64_t count,
		 uint64_t *budget)
{
	if (count > *budget)
		count = *budget;
	if (!count)
		return;
	out[(*n)++] = (struct rcow_run){ first, count };
	*budget -= count;
}

/* Is extent e in the sorted runs v[0, n)?  *i: a hint, moves forward. */
static bool in_runs(const struct rcow_run *v, size_t n, size_t *i, uint64_t e)
{
	while (*i < n && v[*i].first + v[*i].count <= e)
		(*i)++;
	return *i < n && v[*i].first <= e;
}

/*
 * The extents of [a, b) (of the round set) that are not fresh, into out,
 * within *budget; returns where it stopped (b, or past it).
 */
static uint64_t take_rest(const struct rcow_run *fresh, size_t nf, uint64_t a, uint64_t b,
			  struct rcow_run *out, size_t *n, uint64_t *budget)
{
	size_t fi = 0;

	while (a < b && *budget) {
		uint64_t end, got;

		if (in_runs(fresh, nf, &fi, a)) {
			a = fresh[fi].first + fresh[fi].count;	/* taken already */
			continue;
		}
		/* fi is now the first fresh run after a, if any */
		end = fi < nf && fresh[fi].first < b ? fresh[fi].first : b;
		got = end - a < *budget ? end - a : *budget;
		take(out, n, a, got, budget);
		a += got;
	}
	return a;
}

size_t rcow_mirror_pick(const struct rcow_run *fresh, size_t nf, const struct rcow_run *round,
			size_t nr, uint64_t *cursor, uint64_t budget, struct rcow_run *out)
{
	uint64_t start = *cursor, next = *cursor;
	size_t n = 0;

	if (!budget)
		budget = 1;
	for (size_t i = 0; i < nf && budget; i++)
		take(out, &n, fresh[i].first, fresh[i].count, &budget);
	/* the rest from the cursor to the end, then from the start to the cursor */
	for (int pass = 0; pass < 2 && budget; pass++) {
		for (size_t i = 0; i < nr && budget; i++) {
			uint64_t a = round[i].first, b = a + round[i].count;

			if (pass == 0 && b <= start)
				continue;
			if (pass == 0 && a < start)
				a = start;
			if (pass == 1 && a >= start)
				break;
			if (pass == 1 && b > start)
				b = start;
			next = take_rest(fresh, nf, a, b, out, &n, &budget);
		}
	}
	*cursor = next;
	return n;
}

size_t rcow_copy_pick(const struct rcow_run *fresh, size_t nf, const struct rcow_run *round,
		      size_t nr, uint64_t *cursor, uint64_t budget, struct rcow_run *out,
		      uint64_t *passed)
{
	size_t n = 0;

	if (!budget)
		budget = 1;
	for (size_t i = 0; i < nr && budget; i++) {
		uint64_t a = round[i].first, b = a + round[i].count, all = UINT64_MAX;

		if (b <= *cursor)
			continue;
		if (a < *cursor)
			a = *cursor;
		if (b - a > budget)
			b = a + budget;
		take_rest(fresh, nf, a, b, out, &n, &all);
		budget -= b - a;
		*passed += b - a;
		*cursor = b;
	}
	return n;
}

enum rcow_round_say rcow_round_log(struct rcow_round_log *l, uint64_t sent, bool fenced,
				   uint64_t now_ms, uint64_t *skipped)
{
	*skipped = 0;
	if (sent || fenced) {
		l->idle = false;
		l->skipped = 0;
		return RCOW_ROUND_LOG;
	}
	if (!l->idle) {
		l->idle = true;
		l->logged_ms = now_ms;
		l->skipped = 0;
		return RCOW_ROUND_IDLE;
	}
	if (now_ms - l->logged_ms < RCOW_ROUND_QUIET_MS) {
		l->skipped++;
		return RCOW_ROUND_SKIP;
	}
	*skipped = l->skipped;
	l->logged_ms = now_ms;
	l->skipped = 0;
	return RCOW_ROUND_STILL;
}
