/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * remote-cow: interface between the dm-remote-cow kernel target and its
 * userspace helper (remote-cowd), shared by both sides.
 *
 * The helper talks to the kernel over a generic netlink family that lives in
 * the initial network namespace.  One helper registers per host; the kernel
 * then sends it FAULT requests
 * (unicast to the registered socket) and device events, and the helper
 * answers each fault with FILL_DONE once the extent's data reached the COW
 * device.  Every request from the helper needs CAP_NET_ADMIN.
 *
 * Extent numbers are 0-based within one device.  Extent i's data lives on
 * the COW device at byte offset (data_offset + i * extent_sectors) * 512.
 * The last extent may be shorter than extent_sectors when the device length
 * is not a multiple of the extent size: the helper fills only up to
 * dev_sectors.
 */
#ifndef _UAPI_REMOTE_COW_H
#define _UAPI_REMOTE_COW_H

#include <linux/const.h>
#include <linux/types.h>

#define REMOTE_COW_GENL_NAME		"remote_cow"
#define REMOTE_COW_GENL_VERSION		9

/* Largest base URI the target accepts (bytes, without the trailing NUL). */
#define REMOTE_COW_MAX_URI		1023

/*
 * Longest HOST:PORT of a migration (migrate send, remote-cow receive
 * --listen): a 253-byte DNS name, the colon and five digits.
 */
#define REMOTE_COW_MAX_TARGET		(253 + 1 + 5)

/* Most extents one FAULT or HYDRATE request may name. */
#define REMOTE_COW_MAX_RANGE		4096

/* Longest throttle delay of MIGRATE_ROUND (RCOW_A_MIGRATE_DELAY_MS). */
#define RCOW_MIGRATE_MAX_DELAY_MS	10000

/* Largest bitmap chunk returned by one GET_BITMAP reply (bytes). */
#define REMOTE_COW_BITMAP_CHUNK		4096

enum remote_cow_cmd {
	RCOW_CMD_UNSPEC,
	/*
	 * helper -> kernel.  Become the helper of the host.  Outstanding
	 * faults of every device are (re)sent to it at once; each fault is
	 * sent at most once per registration.  Fails with EBUSY if another
	 * live socket is registered; from the registered socket it is a
	 * no-op.
	 */
	RCOW_CMD_REGISTER,
	/* helper -> kernel.  Stop being the helper (also implied by close). */
	RCOW_CMD_UNREGISTER,
	/*
	 * helper -> kernel, doit with RCOW_A_DEV_ID or dump: one reply per
	 * device with every RCOW_A_* device attribute below, and the
	 * snapshot commit's COMMIT_STATE, COMMIT_GEN, COMMIT_FLAGS,
	 * COMMIT_TOTAL, COMMIT_DONE (and TARGET_URI while uploading).
	 */
	RCOW_CMD_GET_DEVICE,
	/*
	 * kernel -> helper.  DEV_ID, FIRST_EXTENT, EXTENT_COUNT, COOKIE,
	 * optional FLAGS (RCOW_FAULT_F_WAITING: I/O waits on the run; later
	 * waiters on a run sent without it come as PROMOTE).
	 * Fill extents [first, first + count) from the base into the COW
	 * device, then answer FILL_DONE with the same cookie.  One FAULT
	 * names a run of adjacent missing extents (a bio spanning extents,
	 * read-ahead, a HYDRATE range), up to 1 MiB worth of them and never
	 * more than REMOTE_COW_MAX_RANGE; each extent of the run is named by
	 * exactly one FAULT.  A run not answered when the helper goes away is
	 * sent again to the next one under a new cookie, possibly cut or
	 * joined differently.
	 */
	RCOW_CMD_FAULT,
	/*
	 * helper -> kernel.  DEV_ID, COOKIE, FIRST_EXTENT, STATUS (0 or a
	 * positive errno), optional EXTENT_COUNT: answers extents
	 * [first, first + count) of the fault with this cookie.  The helper
	 * may answer a fault whole or in several sub-ranges, each with its
	 * own status (a part that failed fails only its extents' I/O).
	 * Without EXTENT_COUNT the answer covers every extent of the fault
	 * from FIRST_EXTENT on still outstanding: with FIRST_EXTENT the
	 * fault's, the whole fault (helpers that predate sub-range answers).
	 * On 0 the extents become PRESENT and waiting I/O is reissued; on
	 * an error the waiting I/O fails with EIO.  Accepted only from the
	 * registered helper's socket, for a fault that was sent to it:
	 * anything else is refused (EPERM: not the registered helper;
	 * ENOENT: no such outstanding fault; EINVAL: the range is not wholly
	 * outstanding in the fault of the cookie - then nothing of it is
	 * taken).  Cookies are unique across all devices while the module
	 * is loaded.  The kernel answers a refusal only: the helper may send
	 * FILL_DONE without NLM_F_ACK and read refusals as they come.
	 */
	RCOW_CMD_FILL_DONE,
	/*
	 * helper -> kernel.  DEV_ID, FIRST_EXTENT, EXTENT_COUNT.  Ask the
	 * kernel to fault in the missing extents of the range (prefetch and
	 * background streaming).  The kernel answers with FAULT requests for
	 * the extents that are neither present nor already outstanding; the
	 * reply carries RCOW_A_EXTENT_COUNT = number of faults queued.
	 */
	RCOW_CMD_HYDRATE,
	/*
	 * helper -> kernel.  DEV_ID, BITMAP (enum remote_cow_bitmap),
	 * FIRST_EXTENT (multiple of 8).  Reply: DEV_ID, BITMAP, FIRST_EXTENT,
	 * EXTENT_COUNT and BITMAP_DATA with the bits of extents [first, first + count), bit i
	 * of byte j describing extent first + 8 * j + i.
	 */
	RCOW_CMD_GET_BITMAP,
	/*
	 * kernel -> helper events, with the device attributes.  Events are
	 * not retried when the helper's socket buffer is full: a helper that
	 * sees a FAULT for an unknown DEV_ID asks GET_DEVICE.
	 */
	RCOW_CMD_DEVICE_ADD,
	RCOW_CMD_DEVICE_REMOVE,
	/*
	 * kernel -> helper.  DEV_ID, HYDRATE_RATE (MiB/s, 0: unlimited) when
	 * background streaming is started by message; HYDRATE_RATE absent
	 * means stop.
	 */
	RCOW_CMD_HYDRATE_CTL,
	/*
	 * kernel -> helper.  DEV_ID, COOKIE.  Sent when a device that has
	 * faults out at the helper is suspended (table reload, removal):
	 * the helper must stop filling this device - start no new COW write
	 * for it, drop its queued faults, answer none of them - and, once no
	 * write of its own to the device's COW device is in flight, answer
	 * QUIESCE_DONE with the same DEV_ID and COOKIE.  The kernel waits a
	 * bounded time for that answer; the faults still wanted are sent
	 * again after resume, with new cookies.
	 */
	RCOW_CMD_QUIESCE,
	/* helper -> kernel.  DEV_ID, COOKIE of the QUIESCE it answers. */
	RCOW_CMD_QUIESCE_DONE,
	/*
	 * helper -> kernel, dump only.  DEV_ID, BITMAP, optional
	 * FIRST_EXTENT (where to start, default 0), optional EXTENT_COUNT
	 * (since version 9: the dump stops that many extents after
	 * FIRST_EXTENT, a run across that point is cut there; default: the
	 * device's end).  One reply per run of set bits, in extent order:
	 * DEV_ID, BITMAP, FIRST_EXTENT, RUN_LENGTH.  The bits are read as
	 * the dump goes: bits that change meanwhile may or may not be seen.
	 */
	RCOW_CMD_GET_RUNS,
	/*
	 * Snapshot commit.  `dmsetup message DEV 0 snapshot commit URI
	 * [since-last]` freezes a set of extents (every WRITTEN extent, or
	 * since-last those changed since the last completed commit plus
	 * those of an interrupted one) as commit generation COMMIT_GEN and
	 * asks the helper to upload their content as of the freeze to URI.
	 *
	 * kernel -> helper.  DEV_ID, COMMIT_GEN, TARGET_URI, COMMIT_FLAGS,
	 * COMMIT_TOTAL (extents frozen).  Sent at the freeze, and again to a
	 * helper that registers while the commit is uploading.  The helper
	 * reads the extents still to upload with GET_RUNS on
	 * RCOW_BITMAP_COMMIT_UPLOAD and writes each one's content to the
	 * target at the same byte offset as on the device (extents that
	 * read as zeroes as NBD write-zeroes), reporting them with
	 * COMMIT_MARK (RCOW_MARK_UPLOADED) once the target acknowledged
	 * them, then flushes the target and answers COMMIT_END.
	 */
	RCOW_CMD_COMMIT_START,
	/*
	 * kernel -> helper.  DEV_ID, COMMIT_GEN, FIRST_EXTENT, EXTENT_COUNT.
	 * A guest write waits on these frozen extents (their bits are set in
	 * RCOW_BITMAP_COMMIT_HELD): copy their current content from the COW
	 * device aside (the spool), or upload it, and answer COMMIT_MARK.
	 * Sent once per held extent and registration; a helper that
	 * registers during a commit finds the held extents with GET_RUNS.
	 */
	RCOW_CMD_PRESERVE,
	/*
	 * helper -> kernel.  DEV_ID, COMMIT_GEN, FIRST_EXTENT, EXTENT_COUNT,
	 * MARK.  RCOW_MARK_PRESERVED: the content of the extents as of the
	 * freeze is safe with the helper; they leave
	 * RCOW_BITMAP_COMMIT_HELD, guest writes waiting on them go on, and
	 * later writes to them go on at once, with no PRESERVE.  The helper
	 * may send it ahead, for frozen extents no write waits on yet (it
	 * copies them while they are held, so the copy is the frozen
	 * content).  RCOW_MARK_UPLOADED: the target acknowledged it
	 * (implies preserved).  Extents of the range that are not in the
	 * set are ignored.  Refused from anything but the registered helper
	 * (EPERM), for another generation or no running commit (ESTALE),
	 * or a range outside the device (EINVAL).
	 */
	RCOW_CMD_COMMIT_MARK,
	/*
	 * helper -> kernel.  DEV_ID, COMMIT_GEN, STATUS, optional MESSAGE
	 * (logged).  STATUS 0: every extent was uploaded and the target was
	 * flushed; refused with EAGAIN while RCOW_BITMAP_COMMIT_UPLOAD still
	 * has a bit set.  Then the frozen set is durably cleared and the
	 * commit is done.  Any other STATUS: the commit failed (the frozen
	 * set is kept, so that the next commit includes it).  Either way
	 * held writes go on and a dm event is raised.
	 */
	RCOW_CMD_COMMIT_END,
	/*
	 * kernel -> helper.  DEV_ID, COMMIT_GEN.  The commit was aborted
	 * (snapshot abort, or the kernel failed it): stop uploading it and
	 * drop what was preserved for it.
	 */
	RCOW_CMD_COMMIT_ABORT,
	/*
	 * Live migration, source side.  `dmsetup message DEV 0 migrate send
	 * HOST:PORT` starts one: from then on every write and discard that
	 * completes on the COW device sets its extents in the in-memory set
	 * RCOW_BITMAP_DIRTY_MIGRATE, which starts as WRITTEN.
	 *
	 * kernel -> helper.  MIGRATE_START: the device attributes, with the
	 * MIGRATE_* ones and MIGRATE_TARGET (HOST:PORT).  Sent at the start,
	 * and again to a helper that registers while the migration runs.
	 * MIGRATE_FINISH: the same attributes, sent once `migrate finish`
	 * fenced the device (writes now fail): take the last round, have the
	 * destination commit, answer MIGRATE_END.  MIGRATE_ABORT: DEV_ID;
	 * `migrate abort`: stop, the destination is not to be used.
	 */
	RCOW_CMD_MIGRATE_START,
	RCOW_CMD_MIGRATE_FINISH,
	RCOW_CMD_MIGRATE_ABORT,
	/*
	 * helper -> kernel.  DEV_ID.  Take a round: the worker closes the
	 * write gate, waits for the writes in flight to complete, adds
	 * RCOW_BITMAP_DIRTY_MIGRATE to RCOW_BITMAP_MIGRATE_ROUND (what the
	 * last round left unsent stays in it) and clears it, then opens
	 * the gate.  The kernel answers at once and, once the swap is done,
	 * sends MIGRATE_ROUND (kernel -> helper: DEV_ID, MIGRATE_ROUND, the
	 * round's number from 1, MIGRATE_TOTAL, the extents in the round).
	 * The helper reads the round with GET_RUNS on
	 * RCOW_BITMAP_MIGRATE_ROUND; every write that completed before the
	 * swap is in it, and it reads each extent after the swap, so it
	 * reads that write or a later one (a later one is in the next
	 * round).  Refused: EPERM (not the registered helper), ESTALE (no
	 * migration copying, mirroring or finishing).
	 *
	 * Optional FLAGS (version 6): RCOW_MIGRATE_F_MIRROR switches a
	 * copying migration to mirroring with this round's swap (state
	 * "mirroring", a dm event): from then on a guest write or discard
	 * completes only once a round taken after it has been marked sent
	 * for all its extents, so the guest writes no faster than the
	 * helper sends and what is left stays bounded.  The kernel sends
	 * MIGRATE_WAITING when writes start to wait; they are let go at
	 * once by an abort, a failure, a suspend or the helper's exit.
	 *
	 * Optional MIGRATE_DELAY_MS (version 8), while copying and without
	 * RCOW_MIGRATE_F_MIRROR: the throttle.  From now on every guest
	 * write or discard that completes on the COW device is completed to
	 * the guest that many milliseconds later (rounded up to the
	 * kernel's tick); 0 or absent turns it off, so the helper sends it
	 * with every round it wants throttled.  Mirroring, the fence, the
	 * end, an abort, a suspend and the helper's exit turn it off and let
	 * the slowed writes go.
	 */
	RCOW_CMD_MIGRATE_ROUND,
	/*
	 * helper -> kernel.  DEV_ID, MIGRATE_ROUND, FIRST_EXTENT,
	 * EXTENT_COUNT: these extents of the round reached the destination;
	 * they leave RCOW_BITMAP_MIGRATE_ROUND (extents not in it are
	 * ignored).  ESTALE for another round, EPERM, ERANGE as COMMIT_MARK.
	 */
	RCOW_CMD_MIGRATE_MARK,
	/*
	 * helper -> kernel.  DEV_ID, STATUS, optional MESSAGE (logged).
	 * STATUS 0: the destination committed everything durably; accepted
	 * only while finishing, with the round sent and nothing left in
	 * RCOW_BITMAP_DIRTY_MIGRATE (EAGAIN otherwise): the migration is
	 * done, the device stays fenced until its table is removed.  Any
	 * other STATUS: the migration failed, the fence is lifted and the
	 * device is usable again - unless FLAGS has
	 * RCOW_MIGRATE_F_KEEP_FENCE (version 6): the helper cannot tell
	 * whether the destination took over (it failed after FINISH), so
	 * the device stays fenced in state failed until `migrate abort`.
	 * Either way a dm event is raised.
	 */
	RCOW_CMD_MIGRATE_END,
	/*
	 * Live migration, destination side: a table loaded with the
	 * "incoming" feature holds guest I/O (or fails it after
	 * fault_timeout) until the migration completes.
	 *
	 * helper -> kernel.  DEV_ID, FIRST_EXTENT, EXTENT_COUNT.  The helper
	 * wrote these extents' data into the COW device's data area: they
	 * become PRESENT, WRITTEN and changed (DIRTY_COMMIT), durable at the
	 * next metadata commit.  ESTALE when the device is not incoming,
	 * EPERM, ERANGE as COMMIT_MARK.
	 */
	RCOW_CMD_MIGRATE_FILL,
	/*
	 * helper -> kernel.  DEV_ID.  Everything was filled: the worker
	 * commits the metadata, clears the superblock's incoming flag, and
	 * guest I/O flows (a dm event; migrate_state leaves "incoming").
	 * Answered at once; ESTALE when the device is not incoming.
	 */
	RCOW_CMD_MIGRATE_COMPLETE,
	/*
	 * kernel -> helper (version 5).  DEV_ID, FIRST_EXTENT, EXTENT_COUNT,
	 * COOKIE: I/O now waits on these extents of a FAULT already sent
	 * (under COOKIE) with no I/O waiting on them - a HYDRATE range,
	 * prefetch or background streaming.  The helper should fill them
	 * ahead of its speculative work and outside any streaming rate
	 * limit; they are still answered with FILL_DONE under COOKIE as
	 * before.  Sent at most once per extent and FAULT; a helper that
	 * does not know it may ignore it (the fill comes in its turn).
	 */
	RCOW_CMD_PROMOTE,
	/*
	 * kernel -> helper (version 6).  DEV_ID and the MIGRATE_*
	 * attributes: while mirroring, a guest write now waits for the
	 * next round (sent when the first write starts to wait after none
	 * did): take a round.
	 */
	RCOW_CMD_MIGRATE_WAITING,
	/*
	 * Post-copy (version 7).  `migrate finish postcopy` on the source
	 * fences as `migrate finish` does and sends MIGRATE_FINISH with
	 * FLAGS RCOW_MIGRATE_F_POSTCOPY: take the last round, but instead of
	 * sending it name it to the destination as still remote, have the
	 * destination serve at once, then answer its fetches.
	 *
	 * MIGRATE_REMOTE, helper -> kernel, destination only.  DEV_ID,
	 * FIRST_EXTENT, EXTENT_COUNT: these extents are still only on the
	 * source; they join the in-memory set RCOW_BITMAP_MIGRATE_REMOTE.
	 * Accepted while incoming and before MIGRATE_POSTCOPY (ESTALE
	 * otherwise); EPERM, ERANGE as COMMIT_MARK.
	 *
	 * MIGRATE_POSTCOPY, helper -> kernel.  DEV_ID.
	 * Destination (incoming): the worker commits the metadata (the
	 * fills named before are durable), keeps the superblock's incoming
	 * flag (a crash before completion leaves a device that refuses to
	 * serve), and serves: held bios and new ones take the normal path,
	 * migrate_state "postcopy", a dm event.  A missing extent in
	 * RCOW_BITMAP_MIGRATE_REMOTE is faulted with RCOW_FAULT_F_REMOTE (a
	 * run is never part remote, part not); an extent leaves the set
	 * when it becomes PRESENT (a fill, a whole-extent write).
	 * MIGRATE_FILL is refused from then on (ESTALE); MIGRATE_COMPLETE
	 * is accepted only once the set is empty (EAGAIN otherwise).
	 * Source (finishing; the helper may choose post-copy without the
	 * flag, when the operator chose it at `remote-cow migrate
	 * --postcopy`): the destination serves from now on; migrate_state
	 * "postcopy" (fenced, a dm event); MIGRATE_END then as while
	 * finishing; `migrate abort` is refused (the destination runs the
	 * guest) until a MIGRATE_END that failed.  ESTALE in any other
	 * state.
	 */
	RCOW_CMD_MIGRATE_REMOTE,
	RCOW_CMD_MIGRATE_POSTCOPY,

	__RCOW_CMD_MAX,
};

#define RCOW_CMD_MAX (__RCOW_CMD_MAX - 1)

enum remote_cow_attr {
	RCOW_A_UNSPEC,
	RCOW_A_PAD,
	RCOW_A_DEV_ID,		/* u32: kernel-assigned device id, never 0 */
	RCOW_A_DM_NAME,		/* string: dm device name */
	RCOW_A_DM_UUID,		/* string: dm uuid, may be empty */
	RCOW_A_COW_MAJOR,	/* u32 */
	RCOW_A_COW_MINOR,	/* u32 */
	RCOW_A_EXTENT_SECTORS,	/* u32 */
	RCOW_A_NR_EXTENTS,	/* u64 */
	RCOW_A_DATA_OFFSET,	/* u64: sectors */
	RCOW_A_DEV_SECTORS,	/* u64: target length in sectors */
	RCOW_A_BASE_URI,	/* string */
	RCOW_A_FIRST_EXTENT,	/* u64 */
	RCOW_A_EXTENT_COUNT,	/* u32 */
	RCOW_A_COOKIE,		/* u64 */
	RCOW_A_STATUS,		/* u32: 0 or positive errno */
	RCOW_A_BITMAP,		/* u32: enum remote_cow_bitmap */
	RCOW_A_BITMAP_DATA,	/* binary */
	RCOW_A_HYDRATE_RATE,	/* u32: MiB/s, 0 = unlimited; in GET_DEVICE
				 * too, while hydrating
				 */
	RCOW_A_PRESENT,		/* u64: extents present (in GET_DEVICE) */
	/*
	 * u32: RCOW_DEV_F_* in GET_DEVICE, RCOW_FAULT_F_* in FAULT,
	 * RCOW_MIGRATE_F_* in MIGRATE_ROUND and MIGRATE_END, and in
	 * MIGRATE_FINISH in place of the device's RCOW_DEV_F_*
	 */
	RCOW_A_FLAGS,
	RCOW_A_RUN_LENGTH,	/* u64: extents in a run (GET_RUNS) */
	RCOW_A_COMMIT_GEN,	/* u64: snapshot commit generation, from 1 */
	RCOW_A_TARGET_URI,	/* string: where the commit uploads to */
	RCOW_A_COMMIT_FLAGS,	/* u32: RCOW_COMMIT_F_* */
	RCOW_A_COMMIT_STATE,	/* u32: enum remote_cow_commit_state */
	RCOW_A_COMMIT_TOTAL,	/* u64: extents frozen by the commit */
	RCOW_A_COMMIT_DONE,	/* u64: extents uploaded so far */
	RCOW_A_MARK,		/* u32: RCOW_MARK_* */
	RCOW_A_MESSAGE,		/* string: human-readable reason */
	RCOW_A_MIGRATE_TARGET,	/* string: HOST:PORT of the destination */
	RCOW_A_MIGRATE_STATE,	/* u32: enum remote_cow_migrate_state */
	RCOW_A_MIGRATE_ROUND,	/* u64: round number, from 1 (0: none yet) */
	RCOW_A_MIGRATE_TOTAL,	/* u64: extents handed out in rounds */
	RCOW_A_MIGRATE_DONE,	/* u64: of those, marked sent */
	RCOW_A_MIGRATE_DELAY_MS, /* u32: throttle, 0-10000 (MIGRATE_ROUND) */

	__RCOW_A_MAX,
};

#define RCOW_A_MAX (__RCOW_A_MAX - 1)

enum remote_cow_bitmap {
	RCOW_BITMAP_PRESENT,	/* the COW device holds valid data */
	RCOW_BITMAP_WRITTEN,	/* differs from the base: written locally */
	RCOW_BITMAP_DIRTY_COMMIT,	/* written since the last snapshot commit */
	RCOW_BITMAP_FROZEN_COMMIT,	/* frozen for the commit in progress */
	RCOW_BITMAP_DIRTY_MIGRATE,	/* written since migration started */
	RCOW_NR_BITMAPS,
};

/*
 * Sets that live in memory only, while a snapshot commit runs; readable
 * with GET_RUNS and GET_BITMAP like the bitmaps above.
 */
#define RCOW_BITMAP_COMMIT_UPLOAD	16	/* frozen, not yet uploaded */
#define RCOW_BITMAP_COMMIT_HELD		17	/* frozen, neither uploaded nor
						 * preserved: writes wait
						 */
/*
 * Live migration's in-memory sets (empty unless a migration runs).
 * RCOW_BITMAP_DIRTY_MIGRATE above names the change set: extents written
 * since the last round was taken.
 */
#define RCOW_BITMAP_MIGRATE_ROUND	18	/* taken by the rounds, not yet
						 * marked sent
						 */
#define RCOW_BITMAP_MIGRATE_REMOTE	19	/* destination, post-copy: only
						 * on the source, not present
						 */

enum remote_cow_commit_state {
	RCOW_COMMIT_IDLE,	/* no commit since the table was loaded */
	RCOW_COMMIT_UPLOADING,
	RCOW_COMMIT_DONE,
	RCOW_COMMIT_FAILED,
};

enum remote_cow_migrate_state {
	RCOW_MIGRATE_IDLE,	/* none running (never, aborted) */
	RCOW_MIGRATE_COPYING,	/* rounds while the guest writes */
	RCOW_MIGRATE_MIRRORING,	/* rounds; writes wait to be sent */
	RCOW_MIGRATE_FINISHING,	/* fenced: last round, destination commit */
	RCOW_MIGRATE_DONE,	/* the destination took over; fenced */
	RCOW_MIGRATE_FAILED,	/* the helper reported an error */
	RCOW_MIGRATE_INCOMING,	/* destination: not complete, I/O held */
	/*
	 * Post-copy (version 7).  Source: fenced, the destination serves
	 * and fetches what is left.  Destination: serving, extents still
	 * fetched from the source.
	 */
	RCOW_MIGRATE_POSTCOPY,
};

/* RCOW_A_FLAGS bits of MIGRATE_ROUND, MIGRATE_END and MIGRATE_FINISH */
#define RCOW_MIGRATE_F_MIRROR	_BITUL(0)	/* ROUND: mirror from now */
#define RCOW_MIGRATE_F_KEEP_FENCE _BITUL(1)	/* END: outcome unknown */
#define RCOW_MIGRATE_F_POSTCOPY	_BITUL(2)	/* FINISH: finish post-copy */

/* RCOW_A_COMMIT_FLAGS bits */
#define RCOW_COMMIT_F_SINCE_LAST	_BITUL(0)

/* RCOW_A_MARK values */
#define RCOW_MARK_PRESERVED	1
#define RCOW_MARK_UPLOADED	2

/*
 * RCOW_A_FLAGS bits of a FAULT (version 5; absent means 0): I/O waits on
 * at least one extent of the run (else: nothing waits yet, the run comes
 * from a HYDRATE range).
 */
#define RCOW_FAULT_F_WAITING	_BITUL(0)
/*
 * (version 7) The run's extents are still only on the source of a
 * post-copy migration: fetch them from there, never from the base; a
 * helper that cannot answers with an error (the I/O fails with EIO).
 */
#define RCOW_FAULT_F_REMOTE	_BITUL(1)

/* RCOW_A_FLAGS bits of GET_DEVICE */
#define RCOW_DEV_F_HYDRATING	_BITUL(0)	/* hydrate start is in force */
#define RCOW_DEV_F_READ_ONLY	_BITUL(1)	/* metadata mode is not rw */
#define RCOW_DEV_F_INACTIVE	_BITUL(2)	/* loaded, not (yet) resumed:
						 * no faults, no fills
						 */

#endif /* _UAPI_REMOTE_COW_H */
