/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The live migration protocol between two remote-cowd (source and
 * destination), frame by frame, without any socket: encoders write into a
 * caller's buffer, decoders check a received payload.  The TLS session
 * that carries the frames is daemon/mig-tls.c; what each side does with
 * them is daemon/mig.c.  The protocol is documented in
 * Documentation/migration-design.rst ("Wire protocol").
 *
 * A frame is an 8-byte header - type (u8), three zero bytes, payload
 * length (u32, big endian) - and the payload.  Every integer is big
 * endian.  Payloads:
 *
 *   HELLO      u32 version, u32 ndev, then per device: u16 name length,
 *              name, u64 dev_sectors, u32 extent_sectors, u16 URI length,
 *              base URI                                      (source)
 *   READY      empty: the destination accepted the HELLO   (destination)
 *   DATA       u32 device index (in HELLO's order), u64 first extent,
 *              u32 count, then the extents' bytes (the last extent of a
 *              device may be short: up to dev_sectors)       (source)
 *   FLUSH      u64 sequence number                            (source)
 *   FLUSHED    u64 the sequence number of the FLUSH answered   (destination)
 *   FINISH     empty                                          (source)
 *   COMMITTED  empty                                          (destination)
 *   ABORT      u32 errno, u16 length, message                 (either)
 *   REMOTE     u32 device index, u64 first extent, u32 count: still only
 *              on the source (post-copy)                     (source)
 *   POSTCOPY   empty: every remote run is named, serve now   (source)
 *   SERVING    empty: every member serves                  (destination)
 *   FETCH      u32 device index, u64 first extent, u32 count (at most
 *              the DATA limits): answered by a DATA of exactly that
 *              range                                       (destination)
 *
 * Decoders refuse (-EPROTO, with a sentence) any payload whose length
 * does not match what its fields say, a name or URI with a NUL or over
 * its limit, an unknown type or nonzero reserved bytes in a header, and a
 * payload longer than the type allows (MIG_MAX_PAYLOAD for DATA).
 */
#ifndef RCOW_MIG_PROTO_H
#define RCOW_MIG_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "remote_cow.h"
#include "rcow/err.h"

#define MIG_VERSION 1
#define MIG_HDR_SIZE 8
#define MIG_DATA_HEAD 16			/* DATA payload before the bytes */
#define MIG_MAX_DATA (4u << 20)			/* bytes of one DATA frame */
#define MIG_MAX_PAYLOAD (MIG_DATA_HEAD + MIG_MAX_DATA)
#define MIG_MAX_DEVICES 64
#define MIG_NAME_MAX 127			/* dm name, without the NUL */
#define MIG_MSG_MAX 255				/* ABORT message, without the NUL */
#define MIG_MAX_HELLO (8 + MIG_MAX_DEVICES * (2 + MIG_NAME_MAX + 12 + 2 + REMOTE_COW_MAX_URI))

enum mig_type {
	MIG_HELLO = 1,
	MIG_READY,
	MIG_DATA,
	MIG_FLUSH,
	MIG_FLUSHED,
	MIG_FINISH,
	MIG_COMMITTED,
	MIG_ABORT,
	MIG_REMOTE,		/* 9, post-copy from here on */
	MIG_POSTCOPY,		/* 10 */
	MIG_SERVING,		/* 11 */
	MIG_FETCH,		/* 12 */
	MIG_NR_TYPES,
};

struct mig_hdr {
	uint8_t type;		/* enum mig_type */
	uint32_t len;		/* payload bytes */
};

struct mig_dev {
	char name[MIG_NAME_MAX + 1];
	uint64_t dev_sectors;
	uint32_t extent_sectors;
	char base_uri[REMOTE_COW_MAX_URI + 1];
};

struct mig_hello {
	uint32_t version;
	uint32_t ndev;
	struct mig_dev dev[MIG_MAX_DEVICES];
};

/* DATA's fixed part; data points into the decoded payload. */
struct mig_data {
	uint32_t dev;
	uint64_t first;
	uint32_t count;
	const uint8_t *data;
	size_t len;
};

/* REMOTE and FETCH: a run of a device's extents. */
struct mig_run {
	uint32_t dev;
	uint64_t first;
	uint32_t count;
};

#define MIG_RUN_SIZE 16				/* REMOTE and FETCH payload */

struct mig_abort {
	uint32_t error;
	char msg[MIG_MSG_MAX + 1];
};

/* Frames and bytes (header included) per type, one direction. */
struct mig_count {
	uint64_t frames[MIG_NR_TYPES];
	uint64_t bytes[MIG_NR_TYPES];
};

/* "HELLO", "DATA", ...; "?" for anything else. */
const char *mig_type_name(unsigned int type);

/* Header: encode (buf MIG_HDR_SIZE bytes), and check a received one. */
void mig_hdr_put(uint8_t *buf, uint8_t type, uint32_t len);
int mig_hdr_parse(const uint8_t *buf, struct mig_hdr *h, struct rcow_err *err);

/*
 * Whole frames into buf (cap bytes); each returns the frame's length
 * (header included) or -ENOSPC / -EINVAL with err set.
 */
int mig_enc_hello(uint8_t *buf, size_t cap, const struct mig_hello *h, struct rcow_err *err);
int mig_enc_empty(uint8_t *buf, size_t cap, uint8_t type);
int mig_enc_seq(uint8_t *buf, size_t cap, uint8_t type, uint64_t seq);
int mig_enc_abort(uint8_t *buf, size_t cap, uint32_t error, const char *msg);
/* REMOTE or FETCH (type) of run; -ENOSPC, -EINVAL (count 0, over REMOTE_COW_MAX_RANGE). */
int mig_enc_run(uint8_t *buf, size_t cap, uint8_t type, const struct mig_run *run);
/*
 * DATA's header and fixed part (MIG_HDR_SIZE + MIG_DATA_HEAD bytes into
 * buf); the caller sends nbytes of extent data right behind it.
 * -EINVAL if nbytes is over MIG_MAX_DATA.
 */
int mig_enc_data_head(uint8_t *buf, uint32_t dev, uint64_t first, uint32_t count,
		      size_t nbytes, struct rcow_err *err);

/* Payload decoders (p, len: the payload after the header). */
int mig_dec_hello(const uint8_t *p, size_t len, struct mig_hello *h, struct rcow_err *err);
int mig_dec_data(const uint8_t *p, size_t len, struct mig_data *d, struct rcow_err *err);
int mig_dec_seq(const uint8_t *p, size_t len, uint64_t *seq, struct rcow_err *err);
int mig_dec_abort(const uint8_t *p, size_t len, struct mig_abort *a, struct rcow_err *err);
int mig_dec_empty(uint8_t type, size_t len, struct rcow_err *err);
/* REMOTE or FETCH: count 1 to REMOTE_COW_MAX_RANGE, first + count without overflow. */
int mig_dec_run(uint8_t type, const uint8_t *p, size_t len, struct mig_run *run,
		struct rcow_err *err);
/*
 * A received run checked against its device (ndev devices; nr_extents and
 * extent bytes eb of run->dev): inside the device, and for a FETCH (fetch)
 * at most what one DATA carries (MIG_MAX_DATA bytes).  -EPROTO with why.
 */
int mig_run_check(const struct mig_run *run, uint32_t ndev, uint64_t nr_extents, uint64_t eb,
		  bool fetch, struct rcow_err *err);

/*
 * A PSK in GnuTLS psktool's file format: lines "identity:hexkey" (the
 * first one is used; empty lines and lines starting with '#' are
 * skipped).  Identity 1 to MIG_PSK_ID_MAX printable characters without
 * ':', key 16 to MIG_PSK_KEY_MAX bytes.  The text is never copied into
 * err (it holds the secret).
 */
#define MIG_PSK_ID_MAX 128
#define MIG_PSK_KEY_MAX 64

struct mig_psk {
	char identity[MIG_PSK_ID_MAX + 1];
	uint8_t key[MIG_PSK_KEY_MAX];
	size_t key_len;
};

/* The largest PSK file read: 4 KiB. */
#define MIG_PSK_FILE_MAX 4096
/*
 * remote-cowd's receive spec, written by remote-cow receive: "listen
 * HOST:PORT\n" (HOST:PORT of at most MIG_ADDR_MAX characters), then the
 * PSK file as it is.
 */
#define MIG_ADDR_MAX REMOTE_COW_MAX_TARGET
#define MIG_RECV_SPEC_MAX (sizeof("listen \n") - 1 + MIG_ADDR_MAX + MIG_PSK_FILE_MAX)

/*
 * Several devices migrating as one unit (a group): at most MIG_GROUP_MAX.
 * Their specs (remote-cow migrate, remote-cow receive; one file per member,
 * all alike) name the members in order, one "member NAME\n" line each,
 * after the "listen" line of a receive spec and before the PSK file:
 *
 *   send-NAME.psk   [postcopy\n] [member NAME\n]... PSK file
 *   recv-NAME       listen HOST:PORT\n [member NAME\n]... PSK file
 *
 * No member line: NAME alone.  A PSK identity has no space, so a PSK
 * line is never taken for a member line.  A send spec's first line may be
 * "postcopy" (remote-cow migrate --postcopy): finish post-copy even when
 * the kernel's MIGRATE_FINISH does not ask it (a PSK line always has a
 * colon, so it is never taken for it).
 */
#define MIG_GROUP_MAX 16
#define MIG_MEMBER_LINE_MAX (sizeof("member \n") - 1 + MIG_NAME_MAX)
#define MIG_SPEC_MAX (MIG_RECV_SPEC_MAX + MIG_GROUP_MAX * MIG_MEMBER_LINE_MAX + \
		      sizeof("postcopy\n") - 1)

struct mig_spec {
	char listen[MIG_ADDR_MAX + 1];		/* receive specs */
	bool postcopy;				/* send specs: "postcopy" line */
	unsigned int nmem;			/* 0: no member line */
	char member[MIG_GROUP_MAX][MIG_NAME_MAX + 1];
	struct mig_psk psk;
};

/*
 * A spec's text (len bytes): the "listen" line first if with_listen, else
 * an optional "postcopy" line first, the member lines (distinct names), the PSK file (mig_psk_parse()).  0 or
 * -EINVAL with the reason.
 */
int mig_spec_parse(const char *text, size_t len, bool with_listen, struct mig_spec *s,
		   struct rcow_err *err);
/* The same, read from path (at most MIG_SPEC_MAX bytes); the text is wiped. */
int mig_spec_load(const char *path, bool with_listen, struct mig_spec *s, struct rcow_err *err);

int mig_psk_parse(const char *text, size_t len, struct mig_psk *psk, struct rcow_err *err);
/*
 * Read a PSK file (at most MIG_PSK_FILE_MAX bytes) once: its text into
 * text (MIG_PSK_FILE_MAX + 1 bytes; *len of them), parsed into psk.  The
 * caller wipes both.  On a failure (missing, unreadable, too large, not
 * psktool's format) err names the file and the reason, never the key.
 */
int mig_psk_read(const char *path, char *text, size_t *len, struct mig_psk *psk,
		 struct rcow_err *err);
/* mig_psk_read() without the text. */
int mig_psk_load(const char *path, struct mig_psk *psk, struct rcow_err *err);
/* Overwrite the key (before freeing or returning). */
void mig_psk_wipe(struct mig_psk *psk);

/*
 * HELLO check on the destination: got (the source's devices) and want
 * (the devices this side receives) pair up by position - the names given
 * to `remote-cow migrate` and `remote-cow receive`, in order; the names
 * themselves may differ between hosts - with the same size, extent size
 * and base URI.  -EINVAL with the first mismatch named.
 */
int mig_hello_match(const struct mig_hello *got, const struct mig_hello *want,
		    struct rcow_err *err);

#endif
