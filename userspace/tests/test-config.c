// SPDX-License-Identifier: GPL-2.0
/* test-config.c - remote-cowd configuration file parsing and lookup. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcow/config.h"
#include "tap.h"

static void test_good(struct tap *t)
{
	static const char text[] =
		"# remote-cowd\n"
		"\n"
		"connections = 2\n"
		"  prefetch_max = 4M  \n"
		"retry_max = 5s\n"
		"[nbds://images.example/]\n"
		"tls_psk_file = /etc/remote-cow/psk\n"
		"tls_username = host1\n"
		"connections = 8\n"
		"max_window = 256M\n"
		"[nbds://images.example/special]\n"
		"prefetch_max = 0\n"
		"tls_certificates = /etc/pki/rcow\n";
	struct rcow_config c;
	struct rcow_err err = { 0 };
	struct rcow_policy p;
	const struct rcow_cred *cr;
	int r;

	rcow_config_init(&c);
	r = rcow_config_parse(&c, text, "test.conf", &err);
	tap_ok(t, r == 0, "a valid file parses (%s)", err.msg);
	tap_ok(t, c.global.connections == 2 && c.global.prefetch_max == 4u << 20 &&
	       c.global.retry_max_ms == 5000 && c.global.max_in_flight == 64 &&
	       c.global.max_window == 64u << 20,
	       "global keys set, others default");
	rcow_config_lookup(&c, "nbd://other/x", &p, &cr);
	tap_ok(t, !cr && p.connections == 2, "an unmatched URI gets the global policy");
	rcow_config_lookup(&c, "nbds://images.example/debian", &p, &cr);
	tap_ok(t, cr && cr->tls_psk_file && !strcmp(cr->tls_psk_file, "/etc/remote-cow/psk") &&
	       cr->tls_username && !strcmp(cr->tls_username, "host1") && p.connections == 8 &&
	       p.prefetch_max == 4u << 20 && p.max_window == 256u << 20,
	       "a prefix section adds credentials and overrides");
	rcow_config_lookup(&c, "nbds://images.example/special", &p, &cr);
	tap_ok(t, cr && cr->tls_certificates && !cr->tls_psk_file && p.prefetch_max == 0 &&
	       p.connections == 2, "the longest prefix wins, alone");
	rcow_config_lookup(&c, "nbds://images.example/special-disk", &p, &cr);
	tap_ok(t, cr && cr->tls_psk_file && p.connections == 8,
	       "a section matches whole path components only (special vs special-disk)");
	rcow_config_free(&c);
}

/* Sections match on URI component boundaries, schemes without case. */
static void test_boundaries(struct tap *t)
{
	static const char text[] =
		"[nbds://img.example]\nconnections = 3\n"
		"[FILE:///images]\nconnections = 4\n"
		"[nbd+unix:///exp]\nconnections = 5\n";
	static const struct {
		const char *uri;
		unsigned int conns;	/* 1: global default */
	} cases[] = {
		{ "nbds://img.example/disk", 3 },
		{ "nbds://img.example", 3 },
		{ "nbds://img.example:10810/disk", 3 },
		{ "NBDS://img.example/disk", 3 },
		{ "nbds://img.example.evil/disk", 1 },
		{ "nbds://img.examplex/disk", 1 },
		{ "file:///images/a.img", 4 },
		{ "file:///images2/a.img", 1 },
		{ "nbd+unix:///exp?socket=/run/s", 5 },
		{ "nbd+unix:///export?socket=/run/s", 1 },
	};
	struct rcow_config c;
	struct rcow_err err = { 0 };
	struct rcow_policy p;
	const struct rcow_cred *cr;

	rcow_config_init(&c);
	c.global.connections = 1;
	tap_ok(t, rcow_config_parse(&c, text, "b.conf", &err) == 0, "sections parse (%s)", err.msg);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rcow_config_lookup(&c, cases[i].uri, &p, &cr);
		tap_ok(t, p.connections == cases[i].conns, "%s gets connections = %u (got %u)",
		       cases[i].uri, cases[i].conns, p.connections);
	}
	rcow_config_free(&c);
}

static void bad(struct tap *t, const char *text, const char *want)
{
	struct rcow_config c;
	struct rcow_err err = { 0 };
	int r;

	rcow_config_init(&c);
	r = rcow_config_parse(&c, text, "bad.conf", &err);
	tap_ok(t, r == -EINVAL && strstr(err.msg, want) != NULL, "refused: %s -> %s", want, err.msg);
	rcow_config_free(&c);
}

static void test_tls_hint(struct tap *t)
{
	struct rcow_cred psk = { .tls_psk_file = (char *)"/k" };
	struct rcow_cred user = { .tls_username = (char *)"alice" };

	tap_ok(t, strstr(rcow_cred_tls_hint("nbds://h/e", NULL), "no TLS credentials") != NULL,
	       "nbds:// without credentials: the hint");
	tap_ok(t, strstr(rcow_cred_tls_hint("NBDS://h/e", &user), "tls_psk_file") != NULL,
	       "a user name alone is no credential (scheme in any case)");
	tap_ok(t, !*rcow_cred_tls_hint("nbds://h/e", &psk), "nbds:// with a PSK file: no hint");
	tap_ok(t, !*rcow_cred_tls_hint("nbd://h/e", NULL), "nbd://: no hint");
}

static void test_load_default(struct tap *t)
{
	struct rcow_config c;
	struct rcow_err err = { 0 };
	const char *used = "x";
	int r;

	rcow_config_init(&c);
	r = rcow_config_load_default(&c, "/nonexistent/remote-cowd.conf", &used, &err);
	tap_ok(t, r < 0 && used && strstr(err.msg, "/nonexistent/remote-cowd.conf") != NULL,
	       "a named file that does not exist is an error: %s", err.msg);
	rcow_config_free(&c);
}

/* A file of size bytes of comment lines ending in "connections = 3\n"; 0 or -1. */
static int put_config(const char *path, size_t size)
{
	static const char tail[] = "connections = 3\n";
	char *text = malloc(size);
	FILE *f;
	int r;

	if (!text)
		return -1;
	memset(text, '#', size);
	for (size_t i = 79; i < size; i += 80)
		text[i] = '\n';
	memcpy(text + size - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
	text[size - sizeof(tail)] = '\n';
	f = fopen(path, "w");
	r = f && fwrite(text, 1, size, f) == size ? 0 : -1;
	if (f && fclose(f))
		r = -1;
	free(text);
	return r;
}

/* rcow_config_load: files of up to 1 MiB, a larger one refused whole. */
static void test_load_size(struct tap *t)
{
	char path[] = "/tmp/rcow-test-config-XXXXXX";
	struct rcow_config c;
	struct rcow_err err = { 0 };
	int fd = mkstemp(path), r;

	if (fd < 0) {
		tap_ok(t, 0, "cannot make a temporary file");
		return;
	}
	close(fd);
	rcow_config_init(&c);
	r = put_config(path, 1 << 20) ? -1 : rcow_config_load(&c, path, &err);
	tap_ok(t, r == 0 && c.global.connections == 3, "a 1 MiB configuration file is read whole (%s)",
	       err.msg);
	rcow_config_free(&c);
	rcow_config_init(&c);
	r = put_config(path, (1 << 20) + 1) ? -1 : rcow_config_load(&c, path, &err);
	tap_ok(t, r == -EFBIG && strstr(err.msg, "configuration file") &&
	       strstr(err.msg, "too large: over 1048576 bytes"),
	       "one byte more is refused: %s", err.msg);
	rcow_config_free(&c);
	unlink(path);
}

void test_config(struct tap *t)
{
	test_load_size(t);
	test_good(t);
	test_boundaries(t);
	test_tls_hint(t);
	test_load_default(t);
	bad(t, "connections = 0\n", "line 1: connections");
	bad(t, "\n\nconections = 3\n", "line 3: unknown key 'conections'");
	bad(t, "prefetch_max = 1G\n", "prefetch_max");
	bad(t, "max_window = 512k\n", "max_window");
	bad(t, "max_window = 2G\n", "max_window");
	bad(t, "tls_psk_file = /x\n", "belongs in a [base-URI-prefix] section");
	bad(t, "[nbd://a/]\n[nbd://a/]\n", "appears twice");
	bad(t, "[nbd://a/\n", "section header");
	bad(t, "just words\n", "expected key = value");
	bad(t, "retry_initial = 5s\nretry_max = 1s\n", "retry_max is shorter");
	bad(t, "request_timeout = soon\n", "request_timeout");
	bad(t, "[nbd://a/]\nspool_dir = /x\n", "spool_dir is a global key");
	bad(t, "spool_dir = relative\n", "absolute directory");
	bad(t, "spool_max = 4k\n", "at least 1M");
	bad(t, "commit_retry_timeout = 0\n", "commit_retry_timeout");
	bad(t, "migrate_peer_timeout = 500ms\n",
	    "line 1: migrate_peer_timeout = '500ms': expected a duration from 1s to 1h");
	bad(t, "migrate_peer_timeout = 2h\n", "expected a duration from 1s to 1h");
	bad(t, "migrate_peer_timeout = soon\n", "migrate_peer_timeout = 'soon'");
	bad(t, "migrate_peer_timeout = \n", "migrate_peer_timeout = ''");
	bad(t, "[nbd://a/]\nmigrate_peer_timeout = 10s\n",
	    "line 2: migrate_peer_timeout is a global key");
	bad(t, "migrate_mirror = sometimes\n",
	    "line 1: migrate_mirror = 'sometimes': expected auto, always or throttle");
	bad(t, "migrate_mirror =\n", "migrate_mirror = ''");
	bad(t, "[nbd://a/]\nmigrate_mirror = always\n",
	    "line 2: migrate_mirror is a global key");
	{
		struct rcow_config c;
		struct rcow_err err = { 0 };
		enum rcow_mig_mirror m = RCOW_MIG_MIRROR_ALWAYS;

		rcow_config_init(&c);
		tap_ok(t, c.mig_mirror == RCOW_MIG_MIRROR_AUTO, "migrate_mirror: default auto");
		tap_ok(t, !rcow_config_parse(&c, "migrate_mirror = always\n", "t", &err) &&
		       c.mig_mirror == RCOW_MIG_MIRROR_ALWAYS, "migrate_mirror = always parsed (%s)",
		       err.msg);
		tap_ok(t, !rcow_config_parse(&c, "migrate_mirror=auto\n", "t", &err) &&
		       c.mig_mirror == RCOW_MIG_MIRROR_AUTO, "migrate_mirror=auto parsed (%s)",
		       err.msg);
		tap_ok(t, rcow_parse_mig_mirror("Always", &m) == -EINVAL &&
		       rcow_parse_mig_mirror("", &m) == -EINVAL && m == RCOW_MIG_MIRROR_ALWAYS,
		       "rcow_parse_mig_mirror: exact words, a refused value changes nothing");
		rcow_config_free(&c);
	}
	bad(t, "migrate_postcopy_rate = 16Mbit\n",
	    "line 1: migrate_postcopy_rate = '16Mbit': expected 0 (no limit) or a rate from 1K to 1T bytes per second");
	bad(t, "migrate_postcopy_rate = 512\n", "migrate_postcopy_rate = '512': expected 0 (no limit)");
	bad(t, "migrate_postcopy_rate = 2048G\n", "migrate_postcopy_rate = '2048G'");
	bad(t, "migrate_postcopy_rate = -1\n", "migrate_postcopy_rate = '-1'");
	bad(t, "migrate_postcopy_rate =\n", "migrate_postcopy_rate = ''");
	bad(t, "[nbd://a/]\nmigrate_postcopy_rate = 1M\n",
	    "line 2: migrate_postcopy_rate is a global key");
	{
		struct rcow_config c;
		struct rcow_err err = { 0 };
		uint64_t rate = 7;

		rcow_config_init(&c);
		tap_ok(t, c.mig_postcopy_rate == 0, "migrate_postcopy_rate: default 0 (no limit)");
		tap_ok(t, !rcow_config_parse(&c, "migrate_postcopy_rate = 16K\n", "t", &err) &&
		       c.mig_postcopy_rate == 16384, "migrate_postcopy_rate = 16K parsed (%s)", err.msg);
		tap_ok(t, !rcow_config_parse(&c, "migrate_postcopy_rate=0\n", "t", &err) &&
		       c.mig_postcopy_rate == 0, "... 0 (no limit) parsed (%s)", err.msg);
		tap_ok(t, rcow_parse_mig_postcopy_rate("1K", &rate) == 0 && rate == 1024 &&
		       rcow_parse_mig_postcopy_rate("1024G", &rate) == 0 && rate == 1ull << 40 &&
		       rcow_parse_mig_postcopy_rate("1023", &rate) == -EINVAL &&
		       rcow_parse_mig_postcopy_rate("1025G", &rate) == -EINVAL &&
		       rcow_parse_mig_postcopy_rate("8M/s", &rate) == -EINVAL &&
		       rcow_parse_mig_postcopy_rate("", &rate) == -EINVAL && rate == 1ull << 40,
		       "rcow_parse_mig_postcopy_rate: 0 or 1K to 1T, a refused value changes nothing");
		rcow_config_free(&c);
	}
	{
		struct rcow_config c;
		struct rcow_err err = { 0 };
		uint32_t ms = 7;

		rcow_config_init(&c);
		tap_ok(t, c.mig_peer_timeout_ms == 60000, "migrate_peer_timeout: default 60s");
		tap_ok(t, !rcow_config_parse(&c, "migrate_peer_timeout = 15s\n", "t", &err) &&
		       c.mig_peer_timeout_ms == 15000, "migrate_peer_timeout = 15s parsed (%s)",
		       err.msg);
		tap_ok(t, !rcow_config_parse(&c, "migrate_peer_timeout=1000ms\n", "t", &err) &&
		       c.mig_peer_timeout_ms == 1000, "... 1000ms, the least, parsed (%s)", err.msg);
		tap_ok(t, rcow_parse_mig_peer_timeout("3600s", &ms) == 0 && ms == 3600000 &&
		       rcow_parse_mig_peer_timeout("3601s", &ms) == -EINVAL && ms == 3600000 &&
		       rcow_parse_mig_peer_timeout("999ms", &ms) == -EINVAL &&
		       rcow_parse_mig_peer_timeout("-5s", &ms) == -EINVAL &&
		       rcow_parse_mig_peer_timeout("10 s", &ms) == -EINVAL,
		       "rcow_parse_mig_peer_timeout: 1s to 1h, a refused value changes nothing");
		rcow_config_free(&c);
	}
	{
		struct rcow_config c;
		struct rcow_err err = { 0 };
		struct rcow_policy pol;
		const struct rcow_cred *cr;

		rcow_config_init(&c);
		tap_ok(t, c.spool_max == 1ull << 30 &&
		       !strcmp(rcow_config_spool_dir(&c), "/var/lib/remote-cowd/spool") &&
		       c.global.commit_retry_timeout_ms == 60000,
		       "commit defaults: spool_max 1G, spool_dir /var/lib/remote-cowd/spool, commit_retry_timeout 60s");
		tap_ok(t, rcow_config_parse(&c, "spool_dir = /srv/spool\nspool_max = 4G\ncommit_retry_timeout = 5s\n[nbd://t/]\ncommit_retry_timeout = 120s\ntls_psk_file = /k\n",
					    "t", &err) == 0 && c.spool_max == 4ull << 30 &&
		       !strcmp(rcow_config_spool_dir(&c), "/srv/spool") &&
		       c.global.commit_retry_timeout_ms == 5000, "spool_dir, spool_max, commit_retry_timeout parsed (%s)",
		       err.msg);
		rcow_config_lookup(&c, "nbd://t/new", &pol, &cr);
		tap_ok(t, pol.commit_retry_timeout_ms == 120000 && cr && !strcmp(cr->tls_psk_file, "/k"),
		       "a target URI gets its section's commit_retry_timeout and credentials");
		rcow_config_free(&c);
	}
}
