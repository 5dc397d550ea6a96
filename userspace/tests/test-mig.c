// SPDX-License-Identifier: GPL-2.0
/*
 * test-mig.c - the live migration frame codec and PSK files
 * (rcow/mig-proto.h): every frame round-trips; truncated, oversized,
 * padded and garbage frames are refused; HELLO mismatches are named;
 * psktool's file format parses and bad keys are refused; PSK files are
 * read whole in one pass (through a pipe that gives them in pieces), and a
 * missing, malformed or too large one is refused with its reason.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rcow/mig-proto.h"
#include "tap.h"

static void hello_fill(struct mig_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->version = MIG_VERSION;
	h->ndev = 2;
	strcpy(h->dev[0].name, "vm1-disk");
	h->dev[0].dev_sectors = 2097152;
	h->dev[0].extent_sectors = 128;
	strcpy(h->dev[0].base_uri, "nbd://10.0.0.1/base");
	strcpy(h->dev[1].name, "vm1-data");
	h->dev[1].dev_sectors = 4097;
	h->dev[1].extent_sectors = 8;
	strcpy(h->dev[1].base_uri, "file:///srv/img");
}

static void test_frames(struct tap *t)
{
	struct mig_hello *h = calloc(1, sizeof(*h)), *g = calloc(1, sizeof(*g));
	uint8_t *buf = malloc(MIG_MAX_HELLO + MIG_HDR_SIZE);
	struct rcow_err err = { 0 };
	struct mig_hdr hdr;
	struct mig_data dd;
	struct mig_abort ab;
	uint64_t seq = 0;
	int n;

	if (!h || !g || !buf) {
		tap_ok(t, false, "allocation");
		goto out;
	}
	hello_fill(h);
	n = mig_enc_hello(buf, MIG_MAX_HELLO + MIG_HDR_SIZE, h, &err);
	tap_ok(t, n > MIG_HDR_SIZE && !mig_hdr_parse(buf, &hdr, &err) && hdr.type == MIG_HELLO &&
	       hdr.len == (uint32_t)n - MIG_HDR_SIZE, "HELLO encodes with a valid header");
	tap_ok(t, !mig_dec_hello(buf + MIG_HDR_SIZE, hdr.len, g, &err) && g->ndev == 2 &&
	       !strcmp(g->dev[1].name, "vm1-data") && g->dev[1].dev_sectors == 4097 &&
	       g->dev[0].extent_sectors == 128 && !strcmp(g->dev[0].base_uri, h->dev[0].base_uri),
	       "HELLO round-trips");
	tap_ok(t, mig_dec_hello(buf + MIG_HDR_SIZE, hdr.len - 1, g, &err) == -EPROTO,
	       "a truncated HELLO is refused");
	tap_ok(t, mig_dec_hello(buf + MIG_HDR_SIZE, hdr.len + 1, g, &err) == -EPROTO,
	       "a HELLO with trailing bytes is refused");
	buf[MIG_HDR_SIZE + 3] = 2;
	tap_ok(t, mig_dec_hello(buf + MIG_HDR_SIZE, hdr.len, g, &err) == -EPROTO &&
	       strstr(err.msg, "version"), "a HELLO of another version is refused: %s", err.msg);
	buf[MIG_HDR_SIZE + 3] = 1;
	buf[MIG_HDR_SIZE + 8 + 2 + 3] = 0;	/* a NUL in the first name */
	tap_ok(t, mig_dec_hello(buf + MIG_HDR_SIZE, hdr.len, g, &err) == -EPROTO,
	       "a HELLO with a NUL in a name is refused");
	tap_ok(t, mig_enc_hello(buf, 20, h, &err) == -ENOSPC, "HELLO into a small buffer: ENOSPC");

	/* matching: by position, names free */
	hello_fill(g);
	strcpy(g->dev[0].name, "dst-disk");
	tap_ok(t, !mig_hello_match(h, g, &err), "HELLO matches by position, names may differ");
	g->dev[0] = h->dev[1];
	g->dev[1] = h->dev[0];
	tap_ok(t, mig_hello_match(h, g, &err) == -EINVAL,
	       "the same devices in another order do not match");
	hello_fill(g);
	g->dev[1].dev_sectors++;
	tap_ok(t, mig_hello_match(h, g, &err) == -EINVAL && strstr(err.msg, "sectors"),
	       "a size mismatch is named: %s", err.msg);
	hello_fill(g);
	g->dev[0].extent_sectors = 256;
	tap_ok(t, mig_hello_match(h, g, &err) == -EINVAL && strstr(err.msg, "extents"),
	       "an extent size mismatch is named: %s", err.msg);
	hello_fill(g);
	strcpy(g->dev[0].base_uri, "nbd://elsewhere/base");
	tap_ok(t, mig_hello_match(h, g, &err) == -EINVAL && strstr(err.msg, "base"),
	       "a base mismatch is named: %s", err.msg);
	g->ndev = 1;
	tap_ok(t, mig_hello_match(h, g, &err) == -EINVAL,
	       "a different number of devices is refused");

	/* DATA */
	n = mig_enc_data_head(buf, 1, 77, 2, 8192, &err);
	memset(buf + n, 0x5a, 8192);
	tap_ok(t, n == MIG_HDR_SIZE + MIG_DATA_HEAD && !mig_hdr_parse(buf, &hdr, &err) &&
	       hdr.type == MIG_DATA && hdr.len == MIG_DATA_HEAD + 8192, "DATA header");
	tap_ok(t, !mig_dec_data(buf + MIG_HDR_SIZE, hdr.len, &dd, &err) && dd.dev == 1 &&
	       dd.first == 77 && dd.count == 2 && dd.len == 8192 && dd.data[8191] == 0x5a,
	       "DATA round-trips");
	tap_ok(t, mig_enc_data_head(buf, 0, 0, 1, MIG_MAX_DATA + 1, &err) == -EINVAL,
	       "DATA over MIG_MAX_DATA is not encoded");
	tap_ok(t, mig_dec_data(buf + MIG_HDR_SIZE, MIG_DATA_HEAD, &dd, &err) == -EPROTO,
	       "DATA without bytes is refused");
	mig_hdr_put(buf, MIG_DATA, MIG_MAX_PAYLOAD + 1);
	tap_ok(t, mig_hdr_parse(buf, &hdr, &err) == -EPROTO, "an oversized DATA header is refused");
	mig_hdr_put(buf, MIG_FINISH, 1);
	tap_ok(t, mig_hdr_parse(buf, &hdr, &err) == -EPROTO,
	       "a FINISH header with a payload is refused");
	mig_hdr_put(buf, MIG_DATA, 100);
	buf[2] = 1;
	tap_ok(t, mig_hdr_parse(buf, &hdr, &err) == -EPROTO, "nonzero reserved bytes are refused");
	memcpy(buf, "GET / HT", 8);
	tap_ok(t, mig_hdr_parse(buf, &hdr, &err) == -EPROTO, "garbage is refused: %s", err.msg);
	mig_hdr_put(buf, MIG_NR_TYPES, 0);
	tap_ok(t, mig_hdr_parse(buf, &hdr, &err) == -EPROTO, "an unknown type is refused");

	/* FLUSH, ABORT, empty */
	n = mig_enc_seq(buf, 64, MIG_FLUSHED, 0x0102030405060708ull);
	tap_ok(t, n == 16 && !mig_hdr_parse(buf, &hdr, &err) &&
	       !mig_dec_seq(buf + MIG_HDR_SIZE, hdr.len, &seq, &err) &&
	       seq == 0x0102030405060708ull, "FLUSHED round-trips");
	tap_ok(t, mig_dec_seq(buf + MIG_HDR_SIZE, 7, &seq, &err) == -EPROTO,
	       "a short FLUSH is refused");
	n = mig_enc_abort(buf, 512, EIO, "disk on fire");
	tap_ok(t, n > 0 && !mig_hdr_parse(buf, &hdr, &err) &&
	       !mig_dec_abort(buf + MIG_HDR_SIZE, hdr.len, &ab, &err) && ab.error == EIO &&
	       !strcmp(ab.msg, "disk on fire"), "ABORT round-trips");
	tap_ok(t, mig_dec_abort(buf + MIG_HDR_SIZE, hdr.len - 1, &ab, &err) == -EPROTO,
	       "a truncated ABORT is refused");
	n = mig_enc_empty(buf, 8, MIG_COMMITTED);
	tap_ok(t, n == 8 && !mig_hdr_parse(buf, &hdr, &err) && hdr.type == MIG_COMMITTED &&
	       !mig_dec_empty(hdr.type, hdr.len, &err), "COMMITTED round-trips");
	tap_ok(t, !strcmp(mig_type_name(MIG_FLUSHED), "FLUSHED") && !strcmp(mig_type_name(99), "?"),
	       "type names");
out:
	free(h);
	free(g);
	free(buf);
}

static void test_psk(struct tap *t)
{
	static const char good[] = "# made by psktool\n\nalice:000102030405060708090a0b0c0d0e0f"
				   "101112131415161718191a1b1c1d1e1f\nbob:ff\n";
	struct rcow_err err = { 0 };
	struct mig_psk psk;

	tap_ok(t, !mig_psk_parse(good, sizeof(good) - 1, &psk, &err) &&
	       !strcmp(psk.identity, "alice") && psk.key_len == 32 && psk.key[31] == 0x1f,
	       "psktool's format: the first key line");
	tap_ok(t, mig_psk_parse("alice:0011", 10, &psk, &err) == -EINVAL && !strstr(err.msg, "0011"),
	       "a short key is refused, the key not in the message: %s", err.msg);
	tap_ok(t, mig_psk_parse("alice:zz0102030405060708090a0b0c0d0e0f", 38, &psk, &err) ==
	       -EINVAL, "a non-hex key is refused");
	tap_ok(t, mig_psk_parse("000102030405060708090a0b0c0d0e0f", 32, &psk, &err) == -EINVAL,
	       "a line without identity is refused");
	tap_ok(t, mig_psk_parse(":000102030405060708090a0b0c0d0e0f", 33, &psk, &err) == -EINVAL,
	       "an empty identity is refused");
	tap_ok(t, mig_psk_parse("# nothing\n", 10, &psk, &err) == -EINVAL, "no key line: refused");
	tap_ok(t, mig_psk_load("/nonexistent/psk", &psk, &err) == -ENOENT,
	       "a missing file: ENOENT");
	mig_psk_wipe(&psk);
}

static const char key_line[] = "alice:000102030405060708090a0b0c0d0e0f"
			       "101112131415161718191a1b1c1d1e1f\n";

static int put_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "we");
	int r;

	if (!f)
		return -1;
	r = fwrite(text, 1, len, f) == len ? 0 : -1;
	return fclose(f) || r ? -1 : 0;
}

/*
 * A FIFO whose writer gives the file in three pieces with pauses between
 * them: read(2) returns each piece alone, so one read would see only the
 * comment line.
 */
static int read_through_fifo(const char *fifo, char *text, size_t *len, struct mig_psk *psk,
			     struct rcow_err *err)
{
	static const char *const piece[] = { "# psktool\n", "alice:000102030405060708090a0b",
					     "0c0d0e0f101112131415161718191a1b1c1d1e1f\n" };
	int r, status;
	pid_t pid;

	if (mkfifo(fifo, 0600))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int fd = open(fifo, O_WRONLY | O_CLOEXEC);

		for (int i = 0; fd >= 0 && i < 3; i++) {
			if (write(fd, piece[i], strlen(piece[i])) < 0)
				_exit(1);
			usleep(50000);
		}
		_exit(fd < 0);
	}
	r = mig_psk_read(fifo, text, len, psk, err);
	waitpid(pid, &status, 0);
	unlink(fifo);
	return r;
}

static void test_psk_files(struct tap *t, const char *dir)
{
	char path[512], big[MIG_PSK_FILE_MAX + 2], text[MIG_PSK_FILE_MAX + 1];
	struct rcow_err err = { 0 };
	struct mig_psk psk;
	size_t len = 99;
	int r;

	snprintf(path, sizeof(path), "%s/fifo", dir);
	r = read_through_fifo(path, text, &len, &psk, &err);
	tap_ok(t, !r && len == strlen("# psktool\n") + sizeof(key_line) - 1 &&
	       !memcmp(text + 10, key_line, sizeof(key_line) - 1) && psk.key_len == 32 &&
	       !strcmp(psk.identity, "alice"),
	       "a PSK file given in pieces (a pipe) is read whole: %d %s", r, err.msg);

	/* exactly the largest size: comment lines, then the key */
	memset(big, '#', sizeof(big));
	for (size_t i = 79; i < MIG_PSK_FILE_MAX; i += 80)
		big[i] = '\n';
	memcpy(big + MIG_PSK_FILE_MAX - (sizeof(key_line) - 1), key_line, sizeof(key_line) - 1);
	big[MIG_PSK_FILE_MAX - sizeof(key_line)] = '\n';
	snprintf(path, sizeof(path), "%s/max.psk", dir);
	r = put_file(path, big, MIG_PSK_FILE_MAX) ? -1 : mig_psk_read(path, text, &len, &psk, &err);
	tap_ok(t, !r && len == MIG_PSK_FILE_MAX && !memcmp(text, big, len) && psk.key_len == 32,
	       "a PSK file of MIG_PSK_FILE_MAX bytes is read: %d %s", r, err.msg);

	big[MIG_PSK_FILE_MAX] = '\n';
	snprintf(path, sizeof(path), "%s/big.psk", dir);
	r = put_file(path, big, MIG_PSK_FILE_MAX + 1) ? -1 :
	    mig_psk_read(path, text, &len, &psk, &err);
	tap_ok(t, r == -EFBIG && !len && strstr(err.msg, "PSK file") && strstr(err.msg, path) &&
	       strstr(err.msg, "too large: over 4096 bytes"),
	       "one byte more is refused, too large: %s", err.msg);

	snprintf(path, sizeof(path), "%s/bad.psk", dir);
	r = put_file(path, "alice 00112233\n", 15) ? -1 :
	    mig_psk_read(path, text, &len, &psk, &err);
	tap_ok(t, r == -EINVAL && !len && !strncmp(err.msg, path, strlen(path)) &&
	       !strncmp(err.msg + strlen(path), ": not a PSK file", 16) &&
	       !strstr(err.msg, "00112233"),
	       "a malformed file is refused, named, the key not shown: %s", err.msg);

	snprintf(path, sizeof(path), "%s/missing.psk", dir);
	r = mig_psk_read(path, text, &len, &psk, &err);
	tap_ok(t, r == -ENOENT && strstr(err.msg, "cannot open PSK file") && strstr(err.msg, path),
	       "a missing file: ENOENT, named: %s", err.msg);

	r = mig_psk_read(dir, text, &len, &psk, &err);
	tap_ok(t, r == -EISDIR && strstr(err.msg, "cannot read PSK file"),
	       "a directory: cannot read: %s", err.msg);
	mig_psk_wipe(&psk);
	explicit_bzero(text, sizeof(text));
}

/* The send spec's "postcopy" line: first, exact, never in a receive spec. */
static void test_spec_postcopy(struct tap *t, struct mig_spec *sp)
{
	static const char pc[] = "postcopy\nmember vm1-a\nmember vm1-b\n"
				 "alice:000102030405060708090a0b0c0d0e0f\n";
	static const char pc_only[] = "postcopy\nalice:000102030405060708090a0b0c0d0e0f\n";
	static const char late[] = "member vm1-a\npostcopy\nalice:000102030405060708090a0b0c0d0e0f\n";
	static const char pcx[] = "postcopyx\nalice:000102030405060708090a0b0c0d0e0f\n";
	static const char recv[] = "listen 10.0.0.2:7777\npostcopy\n"
				   "alice:000102030405060708090a0b0c0d0e0f\n";
	struct rcow_err err = { 0 };

	tap_ok(t, !mig_spec_parse(pc, sizeof(pc) - 1, false, sp, &err) && sp->postcopy &&
	       sp->nmem == 2 && !strcmp(sp->member[1], "vm1-b") &&
	       !strcmp(sp->psk.identity, "alice"),
	       "send spec 'postcopy' first, then the members and the key (%s)", err.msg);
	tap_ok(t, !mig_spec_parse(pc_only, sizeof(pc_only) - 1, false, sp, &err) &&
	       sp->postcopy && sp->nmem == 0, "'postcopy' then the key: one device, post-copy");
	tap_ok(t, !mig_spec_parse(key_line, sizeof(key_line) - 1, false, sp, &err) &&
	       !sp->postcopy, "no 'postcopy' line: not post-copy");
	tap_ok(t, mig_spec_parse(late, sizeof(late) - 1, false, sp, &err) == -EINVAL,
	       "'postcopy' after a member line is refused (taken for the key): %s", err.msg);
	tap_ok(t, mig_spec_parse(pcx, sizeof(pcx) - 1, false, sp, &err) == -EINVAL,
	       "'postcopyx' is not the postcopy line: %s", err.msg);
	tap_ok(t, mig_spec_parse(recv, sizeof(recv) - 1, true, sp, &err) == -EINVAL &&
	       !sp->postcopy, "a receive spec has no 'postcopy' line: %s", err.msg);
	mig_psk_wipe(&sp->psk);
}

/* REMOTE and FETCH: round trip, bad lengths, counts, ranges. */
static void test_runs(struct tap *t)
{
	struct mig_run run = { .dev = 1, .first = 1000, .count = 64 }, got;
	struct rcow_err err = { 0 };
	struct mig_hdr hdr;
	uint8_t buf[64];
	int n;

	n = mig_enc_run(buf, sizeof(buf), MIG_REMOTE, &run);
	tap_ok(t, n == MIG_HDR_SIZE + MIG_RUN_SIZE && !mig_hdr_parse(buf, &hdr, &err) &&
	       hdr.type == MIG_REMOTE && hdr.len == MIG_RUN_SIZE &&
	       !mig_dec_run(hdr.type, buf + MIG_HDR_SIZE, hdr.len, &got, &err) && got.dev == 1 &&
	       got.first == 1000 && got.count == 64, "REMOTE round-trips");
	n = mig_enc_run(buf, sizeof(buf), MIG_FETCH, &run);
	tap_ok(t, n > 0 && !mig_hdr_parse(buf, &hdr, &err) && hdr.type == MIG_FETCH &&
	       !strcmp(mig_type_name(MIG_FETCH), "FETCH") &&
	       !strcmp(mig_type_name(MIG_SERVING), "SERVING") &&
	       !strcmp(mig_type_name(MIG_POSTCOPY), "POSTCOPY"), "FETCH round-trips, names");
	tap_ok(t, mig_dec_run(MIG_FETCH, buf + MIG_HDR_SIZE, MIG_RUN_SIZE - 1, &got, &err) ==
	       -EPROTO && mig_dec_run(MIG_FETCH, buf + MIG_HDR_SIZE, MIG_RUN_SIZE + 1, &got,
				      &err) == -EPROTO, "a FETCH one byte short or long is refused");
	mig_hdr_put(buf, MIG_FETCH, MIG_RUN_SIZE + 1);
	tap_ok(t, mig_hdr_parse(buf, &hdr, &err) == -EPROTO, "a FETCH header over 16 bytes is refused");
	mig_hdr_put(buf, MIG_SERVING, 1);
	tap_ok(t, mig_hdr_parse(buf, &hdr, &err) == -EPROTO, "a SERVING with a payload is refused");
	mig_hdr_put(buf, MIG_NR_TYPES, 0);
	tap_ok(t, mig_hdr_parse(buf, &hdr, &err) == -EPROTO, "type %u is unknown", MIG_NR_TYPES);
	run.count = 0;
	tap_ok(t, mig_enc_run(buf, sizeof(buf), MIG_REMOTE, &run) == -EINVAL,
	       "a run of 0 extents does not encode");
	run.count = 1;
	mig_enc_run(buf, sizeof(buf), MIG_REMOTE, &run);
	buf[MIG_HDR_SIZE + 15] = 0;	/* count 0 */
	tap_ok(t, mig_dec_run(MIG_REMOTE, buf + MIG_HDR_SIZE, MIG_RUN_SIZE, &got, &err) == -EPROTO,
	       "REMOTE of 0 extents is refused");
	buf[MIG_HDR_SIZE + 14] = 0x10;	/* count 4096 */
	buf[MIG_HDR_SIZE + 15] = 0x01;	/* 4097 */
	tap_ok(t, mig_dec_run(MIG_REMOTE, buf + MIG_HDR_SIZE, MIG_RUN_SIZE, &got, &err) == -EPROTO,
	       "REMOTE of 4097 extents is refused");
	memset(buf + MIG_HDR_SIZE + 4, 0xff, 8);	/* first UINT64_MAX */
	buf[MIG_HDR_SIZE + 14] = 0;
	tap_ok(t, mig_dec_run(MIG_REMOTE, buf + MIG_HDR_SIZE, MIG_RUN_SIZE, &got, &err) == -EPROTO,
	       "a run past UINT64_MAX is refused");
	run = (struct mig_run){ .dev = 0, .first = 90, .count = 10 };
	tap_ok(t, !mig_run_check(&run, 1, 100, 65536, true, &err), "FETCH of the last 10 extents");
	run.count = 11;
	tap_ok(t, mig_run_check(&run, 1, 100, 65536, false, &err) == -EPROTO &&
	       strstr(err.msg, "out of range"), "a run past the device: %s", err.msg);
	run = (struct mig_run){ .dev = 1, .first = 0, .count = 1 };
	tap_ok(t, mig_run_check(&run, 1, 100, 65536, false, &err) == -EPROTO,
	       "a run of device 1 of 1: %s", err.msg);
	run = (struct mig_run){ .dev = 0, .first = 0, .count = 65 };
	tap_ok(t, mig_run_check(&run, 1, 1000, 65536, true, &err) == -EPROTO &&
	       !mig_run_check(&run, 1, 1000, 65536, false, &err),
	       "a FETCH over 4 MiB is refused, a REMOTE of as many extents is not");
}

/* Migration specs: the listen line, the member lines of a group, the key. */
static void test_spec(struct tap *t)
{
	static const char recv[] = "listen 10.0.0.2:7777\nmember vm1-a\nmember vm1-b\n"
				   "# psktool\nalice:000102030405060708090a0b0c0d0e0f"
				   "101112131415161718191a1b1c1d1e1f\n";
	static const char twice[] = "member a\nmember a\nalice:000102030405060708090a0b0c0d0e0f\n";
	struct mig_spec *sp = malloc(sizeof(*sp));
	struct rcow_err err = { 0 };
	char *big = malloc(MIG_SPEC_MAX);
	size_t n = 0;

	if (!tap_ok(t, sp && big, "allocation"))
		goto out;
	tap_ok(t, !mig_spec_parse(recv, sizeof(recv) - 1, true, sp, &err) &&
	       !strcmp(sp->listen, "10.0.0.2:7777") && sp->nmem == 2 &&
	       !strcmp(sp->member[0], "vm1-a") && !strcmp(sp->member[1], "vm1-b") &&
	       !strcmp(sp->psk.identity, "alice"),
	       "receive spec of a group: listen, two members in order, the key (%s)", err.msg);
	tap_ok(t, !mig_spec_parse(key_line, sizeof(key_line) - 1, false, sp, &err) &&
	       sp->nmem == 0 && !strcmp(sp->psk.identity, "alice"),
	       "a key file alone: no member (one device)");
	tap_ok(t, mig_spec_parse(key_line, sizeof(key_line) - 1, true, sp, &err) == -EINVAL &&
	       strstr(err.msg, "listen"), "a receive spec without its listen line is refused");
	tap_ok(t, mig_spec_parse(twice, sizeof(twice) - 1, false, sp, &err) == -EINVAL &&
	       strstr(err.msg, "named twice"), "a member named twice is refused: %s", err.msg);
	for (int i = 0; i <= MIG_GROUP_MAX; i++)
		n += (size_t)snprintf(big + n, MIG_SPEC_MAX - n, "member d%d\n", i);
	n += (size_t)snprintf(big + n, MIG_SPEC_MAX - n, "%s", key_line);
	tap_ok(t, mig_spec_parse(big, n, false, sp, &err) == -EINVAL && strstr(err.msg, "more than"),
	       "more than MIG_GROUP_MAX members are refused");
	mig_psk_wipe(&sp->psk);
	test_spec_postcopy(t, sp);
out:
	free(sp);
	free(big);
}

void test_mig(struct tap *t)
{
	char *dir = tap_tmpdir(t);

	test_frames(t);
	test_runs(t);
	test_psk(t);
	test_spec(t);
	if (tap_ok(t, dir != NULL, "temporary directory"))
		test_psk_files(t, dir);
	tap_rmtree(dir);
	free(dir);
}
