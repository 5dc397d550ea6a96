/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Pure policy logic of remote-cowd, kept apart from any I/O so the host
 * unit tests can drive it with made-up clocks and fault sequences:
 *
 *   backoff    delay before the next reconnection attempt: starts at
 *              initial_ms, doubles after every failure, capped at max_ms,
 *              back to initial_ms after a success.
 *   prefetch   per-device sequential fault detection with a growing
 *              read-ahead window (see rcow_prefetch_fault()).
 *   ratelimit  token bucket for background streaming (bytes per second).
 *   fair       which device of a shared base is served next.
 *   flow       how many bytes a base may have in flight: the window
 *              follows the measured bandwidth x delay (see struct
 *              rcow_flow).
 */
#ifndef RCOW_POLICY_H
#define RCOW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rcow_backoff {
	uint32_t initial_ms, max_ms;
	uint32_t next_ms;	/* delay the next failure gets */
	uint32_t failures;	/* consecutive failures */
};

void rcow_backoff_init(struct rcow_backoff *b, uint32_t initial_ms, uint32_t max_ms);
/* A failure: returns the delay to wait before the next attempt. */
uint32_t rcow_backoff_fail(struct rcow_backoff *b);
/* A success: the next failure starts from initial_ms again. */
void rcow_backoff_reset(struct rcow_backoff *b);

/*
 * Sequential detection.  Extents are device extents.  A guest fault is
 * sequential when it starts where the previous guest fault ended, or
 * anywhere from there up to the end of the read-ahead already asked for
 * (the kernel answers reads of prefetched extents without new faults, so
 * the next fault of a sequential reader lands at or before that end).
 * From the second sequential fault on, the window (in extents) starts at
 * init and doubles on every further sequential fault up to max; the range
 * prefetched is [max(fault end, ra_end), fault end + window), so what is
 * fetched beyond the extents the guest reads never exceeds max extents.
 * Any other fault resets the detector.  max == 0 disables prefetch.
 */
struct rcow_prefetch {
	uint64_t init, max;	/* window bounds, extents */
	uint64_t next;		/* extent after the previous guest fault */
	uint64_t ra_end;	/* end of the read-ahead asked for */
	uint64_t window;	/* current window, extents (0: none yet) */
	uint32_t seq;		/* length of the sequential run, in faults */
};

void rcow_prefetch_init(struct rcow_prefetch *p, uint64_t init_extents, uint64_t max_extents);
/*
 * Feed a guest fault [first, first + count) of a device of nr extents.
 * Returns true with *pf_first and *pf_count set when a read-ahead should be
 * asked for; *pf_count is at most max (and at most 4096).
 */
bool rcow_prefetch_fault(struct rcow_prefetch *p, uint64_t first, uint32_t count, uint64_t nr,
			 uint64_t *pf_first, uint32_t *pf_count);

/*
 * Token bucket: rate bytes per second (0: unlimited), at most burst bytes
 * saved up.  Starts full.
 */
struct rcow_ratelimit {
	uint64_t rate, burst;
	double tokens;
	uint64_t last_ns;
};

void rcow_ratelimit_init(struct rcow_ratelimit *r, uint64_t rate, uint64_t burst, uint64_t now_ns);
/*
 * Ask to send bytes now: returns 0 and takes the tokens if there are
 * enough, else the nanoseconds to wait before asking again (nothing taken).
 * A request larger than burst is allowed once the bucket is full.
 */
uint64_t rcow_ratelimit_take(struct rcow_ratelimit *r, uint64_t bytes, uint64_t now_ns);
/*
 * How many units of @unit bytes may go now, at most @want: as many as the
 * tokens cover (rate 0: @want); one when the bucket is full but its burst
 * is smaller than a unit.  Takes nothing: rcow_ratelimit_spend() charges
 * what went (it may be fewer than asked for).
 */
uint64_t rcow_ratelimit_units(struct rcow_ratelimit *r, uint64_t unit, uint64_t want,
			      uint64_t now_ns);
/* Bytes that went: their tokens are taken (the bucket may go below empty). */
void rcow_ratelimit_spend(struct rcow_ratelimit *r, uint64_t bytes);

/*
 * A post-copy destination's background stream (migrate_postcopy_rate):
 * the bucket saves up RCOW_POSTCOPY_BURST_MS of the rate, at least one
 * extent, so that a stream that waited (a guest fault took the link) does
 * not make up for it at once.  Returns the burst in bytes for @rate bytes
 * per second and extents of @extent_bytes.
 */
#define RCOW_POSTCOPY_BURST_MS 250
uint64_t rcow_postcopy_burst(uint64_t rate, uint64_t extent_bytes);

/*
 * The DATA frames of a copying round: a round in progress stops before its
 * next frame once a post-copy finish is asked, so a frame's time on the
 * link is what the switch waits for the round (a 4 MiB frame: half a
 * second at 8 MiB/s, the emulator's TLS).  Frames of about
 * RCOW_CUT_FRAME_MS of the link at @rate bytes per second (0: not measured
 * yet, then RCOW_CUT_FRAME_FIRST bytes), whole extents of @extent_bytes,
 * at least one and at most @max_bytes.  Returns extents per frame.
 */
#define RCOW_CUT_FRAME_MS 50
#define RCOW_CUT_FRAME_FIRST (256u << 10)
uint64_t rcow_cut_frame_extents(uint64_t rate, uint64_t extent_bytes, uint64_t max_bytes);

/*
 * Window of a base (bytes of reads in flight), from what its reads
 * measure, in the manner of a delay-based TCP sender:
 *
 * - delivery rate: every completed read gives a sample, the bytes that
 *   completed between its issue and its completion (its own included)
 *   over that time; bw is the largest sample of the current and the
 *   previous RCOW_FLOW_BW_PERIOD_US, so it follows a link that slows down
 *   within two periods;
 * - delay: the smallest issue-to-completion time of the current and the
 *   previous RCOW_FLOW_RTT_PERIOD_US (a queue that builds up does not
 *   count as delay);
 * - window = 2 x bw x delay, within [min, max].  While the window limits
 *   the reads, bw x delay equals the window, so it doubles every round
 *   trip until the link (or the server) delivers no more; then it stays
 *   at twice the bandwidth-delay product.
 *
 * piece (rcow_flow_piece()): the size of a read that takes about
 * RCOW_FLOW_PIECE_US of the link at the measured rate, within [lo, hi]:
 * small on a slow link (a reader waiting for the front of a read-ahead
 * waits for little), large on a fast one (fewer requests).  Rounded down
 * to a power of two before the bounds apply: pieces then come in a few
 * sizes, whose buffers the daemon reuses (bufcache.c), rather than in a
 * new size at every change of the measured rate.
 *
 * speculative share (rcow_flow_spec()): what prefetch and streaming reads
 * may have in flight, the bytes the link delivers in RCOW_FLOW_SPEC_US at
 * the measured rate, at least lo (two pieces), at most the window; lo
 * until a rate is measured.  A guest read issued behind them waits that
 * long at most at the server, however far the stream ran ahead (the
 * window's floor, RCOW_MIN_WINDOW, takes 16 s to cross at 0.5 MB/s).
 *
 * Times are microseconds from any fixed origin; no clock is read here.
 */
#define RCOW_FLOW_SPEC_US 250000ull
#define RCOW_FLOW_BW_PERIOD_US 1000000ull
#define RCOW_FLOW_RTT_PERIOD_US 10000000ull
#define RCOW_FLOW_PIECE_US 10000ull

struct rcow_flow {
	uint64_t min, max;		/* window bounds, bytes */
	uint64_t delivered;		/* bytes of reads completed so far */
	uint64_t bw_cur, bw_prev;	/* best rate samples, bytes per second */
	uint64_t bw_start;		/* start of the current bw period */
	uint64_t rtt_cur, rtt_prev;	/* smallest delays, us (0: none) */
	uint64_t rtt_start;
	uint64_t samples;
};

void rcow_flow_init(struct rcow_flow *f, uint64_t min, uint64_t max, uint64_t now_us);
/* A read of bytes issued at issued_us when f->delivered was delivered_then, completed now. */
void rcow_flow_done(struct rcow_flow *f, uint64_t bytes, uint64_t issued_us,
		    uint64_t delivered_then, uint64_t now_us);
uint64_t rcow_flow_bw(const struct rcow_flow *f);	/* bytes per second, 0: unknown */
uint64_t rcow_flow_rtt(const struct rcow_flow *f);	/* us, 0: unknown */
/* Bytes the base may have in flight (min until something was measured). */
uint64_t rcow_flow_window(const struct rcow_flow *f);
/* Bytes speculative reads may have in flight, within [lo, window]; lo while unknown. */
uint64_t rcow_flow_spec(const struct rcow_flow *f, uint64_t lo);
/* A read's size for the measured rate, within [lo, hi]; def while unknown. */
uint64_t rcow_flow_piece(const struct rcow_flow *f, uint64_t lo, uint64_t hi, uint64_t def);

/*
 * Fair share of a base among the devices over it.  Each candidate is a
 * device with work queued: its bytes of reads in flight, when it was last
 * served (a sequence number, smaller is longer ago) and whether it may be
 * served at all (a device whose COW writes are backed up may not: more of
 * its data would only wait in memory).  The pick is the eligible device
 * with the fewest bytes in flight, the one served longest ago among equals:
 * a device that reads a lot gets the bandwidth the others leave, never
 * theirs.  Returns its index, or n when none is eligible.
 */
struct rcow_fair_cand {
	uint64_t inflight;
	uint64_t last_served;
	int eligible;
};

size_t rcow_fair_pick(const struct rcow_fair_cand *c, size_t n);

/*
 * When a live migration switches to mirroring (guest writes wait until the
 * destination has them): once its rounds stop shrinking.  Fed each copying
 * round's size, the extents in its round set whether sent or left for a
 * later round (rcow_copy_pick()); the first round, WRITTEN, is the bulk and
 * is not compared: a round that is still at least RCOW_MIRROR_SHRINK_PCT
 * percent of the round before, and at least RCOW_MIRROR_MIN_EXTENTS, is a
 * stall; RCOW_MIRROR_STALLS stalls in a row, or RCOW_MIRROR_MAX_ROUNDS
 * rounds that each sent at least RCOW_MIRROR_MIN_EXTENTS, and the next
 * round should mirror.  Small rounds never do: what they leave is cheap
 * for the last round.
 */
#define RCOW_MIRROR_SHRINK_PCT	90
#define RCOW_MIRROR_MIN_EXTENTS	16
#define RCOW_MIRROR_STALLS	2
#define RCOW_MIRROR_MAX_ROUNDS	30

struct rcow_mirror_policy {
	uint64_t rounds;		/* rounds fed */
	uint64_t big;			/* of those, at least MIN_EXTENTS */
	uint64_t last;			/* extents the last one sent */
	unsigned int stalls;		/* in a row */
};

void rcow_mirror_init(struct rcow_mirror_policy *p);
/* A copying round of @sent extents (its size): true if the next should mirror. */
bool rcow_mirror_round(struct rcow_mirror_policy *p, uint64_t sent);

/*
 * The throttle (migrate_mirror = throttle; delay-doubling, after Bradford
 * et al.): where the auto policy would start mirroring, slow the guest's
 * writes down instead (the kernel holds every completed write that long),
 * and double the delay after every round that still did not shrink (a
 * stall as above).
 *
 * The first delay is the link time of one extent (rcow_throttle_start_ms():
 * the extent size over the rate the rounds measured), not a fixed 1 ms: a
 * guest with one write in flight, each write within one extent, is then
 * held to the link's rate at most, and a delay shorter than that slows no
 * writer below the link.  A guest with n writes in flight needs about n
 * times that: log2(n) doublings.  From 1 ms, a 64 KiB extent on a
 * 16 Mbit/s link took 5 doublings more - 5 rounds of the whole written set.
 *
 * The round taken together with a new delay was written before the delay
 * applied: it is not judged (kept), the one after it is.  Judged anyway it
 * always looks stalled, and every doubling is followed by a second before
 * the first could show (the first end-to-end run: the rounds were already
 * shrinking at 128 ms when the delay went to 256 ms).
 *
 * A stall at RCOW_THROTTLE_MAX_MS, or RCOW_MIRROR_MAX_ROUNDS big rounds in
 * all, and the next round mirrors after all: convergence stays
 * guaranteed.  The delay never goes down during a migration.
 */
#define RCOW_THROTTLE_MIN_MS	1
#define RCOW_THROTTLE_MAX_MS	512

enum rcow_throttle_step {
	RCOW_THROTTLE_KEEP,		/* the same delay (maybe none) */
	RCOW_THROTTLE_SLOWER,		/* a new, longer delay */
	RCOW_THROTTLE_MIRROR,		/* give up: mirror from the next round */
};

struct rcow_throttle_policy {
	struct rcow_mirror_policy until;	/* the first stalls */
	uint32_t delay_ms;		/* 0: not throttling yet */
	bool settling;			/* the next round was taken with a new delay */
};

void rcow_throttle_init(struct rcow_throttle_policy *p);
/*
 * The first delay: the link time of one extent of @extent_bytes at @rate
 * bytes per second, rounded up, within [RCOW_THROTTLE_MIN_MS,
 * RCOW_THROTTLE_MAX_MS]; RCOW_THROTTLE_MIN_MS while no rate is known (0).
 */
uint32_t rcow_throttle_start_ms(uint64_t extent_bytes, uint64_t rate);
/*
 * A copying round sent @sent extents: what the next does.  @start_ms: the
 * delay to start with (rcow_throttle_start_ms()), if this round starts it.
 */
enum rcow_throttle_step rcow_throttle_round(struct rcow_throttle_policy *p, uint64_t sent,
					    uint32_t start_ms);

/*
 * While mirroring, a guest write waits until a round taken after it was
 * sent: a round must not be sent whole when it is large (the round that
 * switches to mirroring carries a whole round's worth), or the guest
 * waits for all of it.  So each mirroring round sends a slice: first the
 * extents written since the round before (fresh: where the writes that
 * wait are), then the rest of the round set from *cursor on (wrapping
 * round, so that every extent gets its turn), at most budget extents in
 * all (at least one run).  Runs are sorted and disjoint; out needs room
 * for RCOW_MIRROR_PICK_MAX(nf, nr) runs (the fresh ones, the round's runs
 * each cut by the fresh ones inside it, one more where the rest wraps).
 * Returns the number of runs in out; *cursor moves past the last extent
 * taken from the rest.
 */
#define RCOW_MIRROR_PICK_MAX(nf, nr) (2 * (nf) + (nr) + 1)
struct rcow_run;
size_t rcow_mirror_pick(const struct rcow_run *fresh, size_t nf, const struct rcow_run *round,
			size_t nr, uint64_t *cursor, uint64_t budget, struct rcow_run *out);

/*
 * A copying round is sent piece by piece, and each piece leaves out what
 * the guest wrote again since the round's swap (fresh: the change set):
 * such an extent stays in the round set unmarked, the next round's swap
 * keeps it there, and it goes once, with its newer content, instead of now
 * and again in the next round.  The piece: the round set's extents from
 * *cursor on, at most budget of them (at least one); those not in fresh go
 * to out (sorted, disjoint; room for nr + nf runs), *cursor moves past the
 * piece and *passed grows by its size (sent and left out alike).  Returns
 * the number of runs in out.
 */
#define RCOW_COPY_PICK_MAX(nf, nr) ((nf) + (nr))
size_t rcow_copy_pick(const struct rcow_run *fresh, size_t nf, const struct rcow_run *round,
		      size_t nr, uint64_t *cursor, uint64_t budget, struct rcow_run *out,
		      uint64_t *passed);

/*
 * The log of a live migration's rounds (remote-cowd -v).  While the guest
 * runs and nothing is left to send, the source takes an empty round every
 * few hundred ms, waiting for writes or for migrate finish: a line for
 * each would fill the log.  So of a run of empty rounds the first is
 * logged (RCOW_ROUND_IDLE), then one at most every RCOW_ROUND_QUIET_MS
 * (RCOW_ROUND_STILL, with the count of those not logged); a round that
 * sends something, and every round after the fence, is logged as before
 * (RCOW_ROUND_LOG).
 */
#define RCOW_ROUND_QUIET_MS 30000

enum rcow_round_say { RCOW_ROUND_SKIP, RCOW_ROUND_LOG, RCOW_ROUND_IDLE, RCOW_ROUND_STILL };

struct rcow_round_log {		/* zero to start */
	bool idle;		/* in a run of empty rounds (its first was logged) */
	uint64_t logged_ms;	/* when an empty round was last logged */
	uint64_t skipped;	/* empty rounds not logged since */
};

/*
 * A round sent @sent extents at @now_ms (a monotonic clock), @fenced:
 * after the fence.  What to log; *skipped: with RCOW_ROUND_STILL, the
 * empty rounds not logged since the last one that was.
 */
enum rcow_round_say rcow_round_log(struct rcow_round_log *l, uint64_t sent, bool fenced,
				   uint64_t now_ms, uint64_t *skipped);

/* Parse "64", "64k", "8M", "1G" (powers of 1024) into bytes.  0 or -EINVAL. */
int rcow_parse_size(const char *s, uint64_t *out);
/* Parse "250ms", "2s", "1.5s", "30" (seconds) into milliseconds.  0 or -EINVAL. */
int rcow_parse_duration_ms(const char *s, uint32_t *out);

#endif
