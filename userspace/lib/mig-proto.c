// SPDX-License-Identifier: GPL-2.0
/*
 * mig-proto.c - live migration frames and PSK files (rcow/mig-proto.h):
 * pure encoding and checking, no I/O but the read of a PSK file
 * (rcow_read_small()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcow/mig-proto.h"
#include "rcow/smallfile.h"

static const char *const type_names[MIG_NR_TYPES] = {
	[MIG_HELLO] = "HELLO", [MIG_READY] = "READY", [MIG_DATA] = "DATA",
	[MIG_FLUSH] = "FLUSH", [MIG_FLUSHED] = "FLUSHED", [MIG_FINISH] = "FINISH",
	[MIG_COMMITTED] = "COMMITTED", [MIG_ABORT] = "ABORT", [MIG_REMOTE] = "REMOTE",
	[MIG_POSTCOPY] = "POSTCOPY", [MIG_SERVING] = "SERVING", [MIG_FETCH] = "FETCH",
};

const char *mig_type_name(unsigned int type)
{
	return type < MIG_NR_TYPES && type_names[type] ? type_names[type] : "?";
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

void mig_hdr_put(uint8_t *buf, uint8_t type, uint32_t len)
{
	buf[0] = type;
	buf[1] = buf[2] = buf[3] = 0;
	put32(buf + 4, len);
}

static uint32_t max_payload(uint8_t type)
{
	switch (type) {
	case MIG_HELLO:
		return MIG_MAX_HELLO;
	case MIG_DATA:
		return MIG_MAX_PAYLOAD;
	case MIG_FLUSH:
	case MIG_FLUSHED:
		return 8;
	case MIG_ABORT:
		return 6 + MIG_MSG_MAX;
	case MIG_REMOTE:
	case MIG_FETCH:
		return MIG_RUN_SIZE;
	default:
		return 0;
	}
}

int mig_hdr_parse(const uint8_t *buf, struct mig_hdr *h, struct rcow_err *err)
{
	h->type = buf[0];
	h->len = get32(buf + 4);
	if (!h->type || h->type >= MIG_NR_TYPES || buf[1] || buf[2] || buf[3])
		return rcow_err_set(err, EPROTO,
				    "not a migration frame (type %u, reserved %02x%02x%02x)",
				    buf[0], buf[1], buf[2], buf[3]);
	if (h->len > max_payload(h->type))
		return rcow_err_set(err, EPROTO, "%s frame of %u bytes: at most %u allowed",
				    mig_type_name(h->type), h->len, max_payload(h->type));
	return 0;
}

static int no_room(struct rcow_err *err)
{
	return rcow_err_set(err, ENOSPC, "frame does not fit its buffer");
}

int mig_enc_hello(uint8_t *buf, size_t cap, const struct mig_hello *h, struct rcow_err *err)
{
	size_t off = MIG_HDR_SIZE + 8;

	if (h->ndev < 1 || h->ndev > MIG_MAX_DEVICES)
		return rcow_err_set(err, EINVAL, "HELLO with %u devices (1 to %u)", h->ndev,
				    MIG_MAX_DEVICES);
	if (cap < off)
		return no_room(err);
	put32(buf + MIG_HDR_SIZE, h->version);
	put32(buf + MIG_HDR_SIZE + 4, h->ndev);
	for (uint32_t i = 0; i < h->ndev; i++) {
		const struct mig_dev *d = &h->dev[i];
		size_t nl = strnlen(d->name, sizeof(d->name)), ul;

		ul = strnlen(d->base_uri, sizeof(d->base_uri));
		if (!nl || nl > MIG_NAME_MAX || ul > REMOTE_COW_MAX_URI)
			return rcow_err_set(err, EINVAL, "HELLO: device %u has a bad name or URI",
					    i);
		if (cap - off < 2 + nl + 12 + 2 + ul)
			return no_room(err);
		put16(buf + off, (uint16_t)nl);
		memcpy(buf + off + 2, d->name, nl);
		off += 2 + nl;
		put64(buf + off, d->dev_sectors);
		put32(buf + off + 8, d->extent_sectors);
		put16(buf + off + 12, (uint16_t)ul);
		memcpy(buf + off + 14, d->base_uri, ul);
		off += 14 + ul;
	}
	mig_hdr_put(buf, MIG_HELLO, (uint32_t)(off - MIG_HDR_SIZE));
	return (int)off;
}

int mig_enc_empty(uint8_t *buf, size_t cap, uint8_t type)
{
	if (cap < MIG_HDR_SIZE)
		return -ENOSPC;
	mig_hdr_put(buf, type, 0);
	return MIG_HDR_SIZE;
}

int mig_enc_seq(uint8_t *buf, size_t cap, uint8_t type, uint64_t seq)
{
	if (cap < MIG_HDR_SIZE + 8)
		return -ENOSPC;
	mig_hdr_put(buf, type, 8);
	put64(buf + MIG_HDR_SIZE, seq);
	return MIG_HDR_SIZE + 8;
}

int mig_enc_abort(uint8_t *buf, size_t cap, uint32_t error, const char *msg)
{
	size_t ml = strnlen(msg, MIG_MSG_MAX);

	if (cap < MIG_HDR_SIZE + 6 + ml)
		return -ENOSPC;
	mig_hdr_put(buf, MIG_ABORT, (uint32_t)(6 + ml));
	put32(buf + MIG_HDR_SIZE, error);
	put16(buf + MIG_HDR_SIZE + 4, (uint16_t)ml);
	memcpy(buf + MIG_HDR_SIZE + 6, msg, ml);
	return (int)(MIG_HDR_SIZE + 6 + ml);
}

int mig_enc_run(uint8_t *buf, size_t cap, uint8_t type, const struct mig_run *run)
{
	if (!run->count || run->count > REMOTE_COW_MAX_RANGE ||
	    (type != MIG_REMOTE && type != MIG_FETCH))
		return -EINVAL;
	if (cap < MIG_HDR_SIZE + MIG_RUN_SIZE)
		return -ENOSPC;
	mig_hdr_put(buf, type, MIG_RUN_SIZE);
	put32(buf + MIG_HDR_SIZE, run->dev);
	put64(buf + MIG_HDR_SIZE + 4, run->first);
	put32(buf + MIG_HDR_SIZE + 12, run->count);
	return MIG_HDR_SIZE + MIG_RUN_SIZE;
}

int mig_enc_data_head(uint8_t *buf, uint32_t dev, uint64_t first, uint32_t count,
		      size_t nbytes, struct rcow_err *err)
{
	if (nbytes > MIG_MAX_DATA || !count)
		return rcow_err_set(err, EINVAL, "DATA of %zu bytes, %u extents", nbytes, count);
	mig_hdr_put(buf, MIG_DATA, (uint32_t)(MIG_DATA_HEAD + nbytes));
	put32(buf + MIG_HDR_SIZE, dev);
	put64(buf + MIG_HDR_SIZE + 4, first);
	put32(buf + MIG_HDR_SIZE + 12, count);
	return MIG_HDR_SIZE + MIG_DATA_HEAD;
}

static int bad(struct rcow_err *err, const char *what, size_t len)
{
	return rcow_err_set(err, EPROTO, "malformed %s frame (%zu bytes of payload)", what, len);
}

/* A length-prefixed string of at most max bytes, no NUL, into out. */
static int get_str(const uint8_t *p, size_t len, size_t *off, char *out, size_t max)
{
	size_t n;

	if (len - *off < 2)
		return -1;
	n = get16(p + *off);
	if (n > max || len - *off - 2 < n || memchr(p + *off + 2, 0, n))
		return -1;
	memcpy(out, p + *off + 2, n);
	out[n] = 0;
	*off += 2 + n;
	return 0;
}

int mig_dec_hello(const uint8_t *p, size_t len, struct mig_hello *h, struct rcow_err *err)
{
	size_t off = 8;

	if (len < 8)
		return bad(err, "HELLO", len);
	h->version = get32(p);
	h->ndev = get32(p + 4);
	if (h->version != MIG_VERSION)
		return rcow_err_set(err, EPROTO,
				    "the source speaks migration protocol version %u, this side %u",
				    h->version, MIG_VERSION);
	if (h->ndev < 1 || h->ndev > MIG_MAX_DEVICES)
		return bad(err, "HELLO", len);
	for (uint32_t i = 0; i < h->ndev; i++) {
		struct mig_dev *d = &h->dev[i];

		if (get_str(p, len, &off, d->name, MIG_NAME_MAX) || !d->name[0] || len - off < 12)
			return bad(err, "HELLO", len);
		d->dev_sectors = get64(p + off);
		d->extent_sectors = get32(p + off + 8);
		off += 12;
		if (get_str(p, len, &off, d->base_uri, REMOTE_COW_MAX_URI))
			return bad(err, "HELLO", len);
	}
	if (off != len)
		return bad(err, "HELLO", len);
	return 0;
}

int mig_dec_data(const uint8_t *p, size_t len, struct mig_data *d, struct rcow_err *err)
{
	if (len < MIG_DATA_HEAD + 1)
		return bad(err, "DATA", len);
	d->dev = get32(p);
	d->first = get64(p + 4);
	d->count = get32(p + 12);
	d->data = p + MIG_DATA_HEAD;
	d->len = len - MIG_DATA_HEAD;
	if (!d->count || d->count > REMOTE_COW_MAX_RANGE)
		return bad(err, "DATA", len);
	return 0;
}

int mig_dec_seq(const uint8_t *p, size_t len, uint64_t *seq, struct rcow_err *err)
{
	if (len != 8)
		return bad(err, "FLUSH", len);
	*seq = get64(p);
	return 0;
}

int mig_dec_abort(const uint8_t *p, size_t len, struct mig_abort *a, struct rcow_err *err)
{
	size_t off = 4;

	if (len < 6)
		return bad(err, "ABORT", len);
	a->error = get32(p);
	if (get_str(p, len, &off, a->msg, MIG_MSG_MAX) || off != len)
		return bad(err, "ABORT", len);
	return 0;
}

int mig_dec_empty(uint8_t type, size_t len, struct rcow_err *err)
{
	return len ? bad(err, mig_type_name(type), len) : 0;
}

int mig_dec_run(uint8_t type, const uint8_t *p, size_t len, struct mig_run *run,
		struct rcow_err *err)
{
	if (len != MIG_RUN_SIZE)
		return bad(err, mig_type_name(type), len);
	run->dev = get32(p);
	run->first = get64(p + 4);
	run->count = get32(p + 12);
	if (!run->count || run->count > REMOTE_COW_MAX_RANGE || run->first > UINT64_MAX - run->count)
		return bad(err, mig_type_name(type), len);
	return 0;
}

int mig_run_check(const struct mig_run *run, uint32_t ndev, uint64_t nr_extents, uint64_t eb,
		  bool fetch, struct rcow_err *err)
{
	const char *what = fetch ? "FETCH" : "REMOTE";

	if (run->dev >= ndev)
		return rcow_err_set(err, EPROTO, "%s for device %u of %u", what, run->dev, ndev);
	if (run->first >= nr_extents || run->count > nr_extents - run->first)
		return rcow_err_set(err, EPROTO, "%s for device %u extents %llu+%u: out of range",
				    what, run->dev, (unsigned long long)run->first, run->count);
	if (fetch && (uint64_t)run->count * eb > MIG_MAX_DATA)
		return rcow_err_set(err, EPROTO, "FETCH of %u extents: more than one DATA carries",
				    run->count);
	return 0;
}

/* ---- PSK files ----------------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int mig_psk_parse(const char *text, size_t len, struct mig_psk *psk, struct rcow_err *err)
{
	const char *p = text, *end = text + len;

	memset(psk, 0, sizeof(*psk));
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon;
		size_t ll, il, hl;

		if (!eol)
			eol = end;
		ll = (size_t)(eol - p);
		if (ll && p[ll - 1] == '\r')
			ll--;
		if (!ll || p[0] == '#') {
			p = eol + 1;
			continue;
		}
		colon = memchr(p, ':', ll);
		if (!colon)
			return rcow_err_set(err, EINVAL,
					    "not a PSK file: its first line is not identity:hexkey (psktool's format)");
		il = (size_t)(colon - p);
		hl = ll - il - 1;
		if (!il || il > MIG_PSK_ID_MAX)
			return rcow_err_set(err, EINVAL, "PSK identity of %zu characters (1 to %u)",
					    il, MIG_PSK_ID_MAX);
		for (size_t i = 0; i < il; i++)
			if (p[i] <= ' ' || p[i] > '~')
				return rcow_err_set(err, EINVAL,
						    "PSK identity with a space or control character");
		if (hl % 2 || hl / 2 < 16 || hl / 2 > MIG_PSK_KEY_MAX)
			return rcow_err_set(err, EINVAL,
					    "PSK key of %zu hex digits: give 32 to %u (16 to %u bytes; psktool makes 64)",
					    hl, 2 * MIG_PSK_KEY_MAX, MIG_PSK_KEY_MAX);
		for (size_t i = 0; i < hl / 2; i++) {
			int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);

			if (hi < 0 || lo < 0) {
				mig_psk_wipe(psk);
				return rcow_err_set(err, EINVAL, "PSK key is not hexadecimal");
			}
			psk->key[i] = (uint8_t)(hi << 4 | lo);
		}
		psk->key_len = hl / 2;
		memcpy(psk->identity, p, il);
		psk->identity[il] = 0;
		return 0;
	}
	return rcow_err_set(err, EINVAL, "PSK file has no identity:hexkey line");
}

int mig_psk_read(const char *path, char *text, size_t *len, struct mig_psk *psk,
		 struct rcow_err *err)
{
	int r;

	memset(psk, 0, sizeof(*psk));
	r = rcow_read_small(path, "PSK file", text, MIG_PSK_FILE_MAX + 1, len, err);
	if (r)
		return r;
	r = mig_psk_parse(text, *len, psk, err);
	if (r) {
		explicit_bzero(text, *len);
		*len = 0;
		rcow_err_prefix(err, "%s", path);
	}
	return r;
}

int mig_psk_load(const char *path, struct mig_psk *psk, struct rcow_err *err)
{
	char text[MIG_PSK_FILE_MAX + 1];
	size_t len;
	int r;

	r = mig_psk_read(path, text, &len, psk, err);
	explicit_bzero(text, sizeof(text));
	return r;
}

void mig_psk_wipe(struct mig_psk *psk)
{
	explicit_bzero(psk, sizeof(*psk));
}

/* The line at text[*at, len) without its '\n' in *line, *n; false: no '\n'. */
static bool spec_line(const char *text, size_t len, size_t *at, const char **line, size_t *n)
{
	const char *nl = memchr(text + *at, '\n', len - *at);

	if (!nl)
		return false;
	*line = text + *at;
	*n = (size_t)(nl - *line);
	*at += *n + 1;
	return true;
}

int mig_spec_parse(const char *text, size_t len, bool with_listen, struct mig_spec *s,
		   struct rcow_err *err)
{
	const char *line;
	size_t at = 0, n, keep;

	memset(s, 0, sizeof(*s));
	if (with_listen) {
		if (!spec_line(text, len, &at, &line, &n) || n < 8 || strncmp(line, "listen ", 7) ||
		    n - 7 > MIG_ADDR_MAX)
			return rcow_err_set(err, EINVAL, "first line is not 'listen HOST:PORT'");
		memcpy(s->listen, line + 7, n - 7);
	} else if (spec_line(text, len, &at, &line, &n) && n == 8 && !strncmp(line, "postcopy", 8)) {
		s->postcopy = true;
	} else {
		at = 0;
	}
	for (keep = at; spec_line(text, len, &at, &line, &n) && n > 7 &&
	     !strncmp(line, "member ", 7); keep = at) {
		if (s->nmem == MIG_GROUP_MAX)
			return rcow_err_set(err, EINVAL, "more than %d members", MIG_GROUP_MAX);
		if (n - 7 > MIG_NAME_MAX || memchr(line + 7, 0, n - 7))
			return rcow_err_set(err, EINVAL, "a member's name is not a device name");
		memcpy(s->member[s->nmem], line + 7, n - 7);
		s->member[s->nmem][n - 7] = 0;
		for (unsigned int i = 0; i < s->nmem; i++)
			if (!strcmp(s->member[i], s->member[s->nmem]))
				return rcow_err_set(err, EINVAL, "member %s named twice",
						    s->member[i]);
		s->nmem++;
	}
	return mig_psk_parse(text + keep, len - keep, &s->psk, err);
}

int mig_spec_load(const char *path, bool with_listen, struct mig_spec *s, struct rcow_err *err)
{
	static const size_t cap = MIG_SPEC_MAX + 1;
	char *text = malloc(cap);
	size_t len;
	int r;

	if (!text)
		return rcow_err_set(err, ENOMEM, "out of memory");
	r = rcow_read_small(path, "migration spec", text, cap, &len, err);
	if (!r)
		r = mig_spec_parse(text, len, with_listen, s, err);
	if (r) {
		mig_psk_wipe(&s->psk);
		rcow_err_prefix(err, "%s", path);
	}
	explicit_bzero(text, cap);
	free(text);
	return r;
}

int mig_hello_match(const struct mig_hello *got, const struct mig_hello *want,
		    struct rcow_err *err)
{
	if (got->ndev != want->ndev)
		return rcow_err_set(err, EINVAL, "the source sends %u device(s), this side receives %u",
				    got->ndev, want->ndev);
	for (uint32_t i = 0; i < got->ndev; i++) {
		const struct mig_dev *g = &got->dev[i], *w = &want->dev[i];

		if (g->dev_sectors != w->dev_sectors)
			return rcow_err_set(err, EINVAL,
					    "device %s (%s here): %llu sectors on the source, %llu here",
					    g->name, w->name, (unsigned long long)g->dev_sectors,
					    (unsigned long long)w->dev_sectors);
		if (g->extent_sectors != w->extent_sectors)
			return rcow_err_set(err, EINVAL,
					    "device %s (%s here): extents of %u sectors on the source, %u here",
					    g->name, w->name, g->extent_sectors, w->extent_sectors);
		if (strcmp(g->base_uri, w->base_uri))
			return rcow_err_set(err, EINVAL,
					    "device %s (%s here): base %s on the source, %s here",
					    g->name, w->name, g->base_uri, w->base_uri);
	}
	return 0;
}
