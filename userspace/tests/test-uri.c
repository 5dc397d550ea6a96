// SPDX-License-Identifier: GPL-2.0
/* test-uri.c - base URI parsing: accepted forms and refusals. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "remote_cow.h"
#include "rcow/uri.h"
#include "tap.h"

static bool streq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

struct good {
	const char *text;
	enum rcow_scheme scheme;
	const char *host;
	unsigned port;
	const char *export;
	const char *socket;
	const char *path;
};

static const struct good goods[] = {
	{ "nbd://server/disk", RCOW_SCHEME_NBD, "server", 10809, "disk", NULL, NULL },
	{ "nbd://server:1234/disk", RCOW_SCHEME_NBD, "server", 1234, "disk", NULL, NULL },
	{ "nbd://10.0.0.1/", RCOW_SCHEME_NBD, "10.0.0.1", 10809, "", NULL, NULL },
	{ "nbd://host", RCOW_SCHEME_NBD, "host", 10809, "", NULL, NULL },
	{ "nbd://[::1]:10810/ex%2Fport", RCOW_SCHEME_NBD, "::1", 10810, "ex/port", NULL, NULL },
	{ "nbd://[fe80::1]/e", RCOW_SCHEME_NBD, "fe80::1", 10809, "e", NULL, NULL },
	{ "NBD://Host.Example-1.org:65535/a/b", RCOW_SCHEME_NBD, "Host.Example-1.org", 65535, "a/b", NULL, NULL },
	{ "nbds://secure/img", RCOW_SCHEME_NBDS, "secure", 10809, "img", NULL, NULL },
	{ "nbd+unix:///export?socket=/run/nbd.sock", RCOW_SCHEME_NBD_UNIX, NULL, 0, "export", "/run/nbd.sock", NULL },
	{ "nbd+unix:///?socket=/tmp/a%20b", RCOW_SCHEME_NBD_UNIX, NULL, 0, "", "/tmp/a b", NULL },
	{ "nbd+unix://?socket=/s", RCOW_SCHEME_NBD_UNIX, NULL, 0, "", "/s", NULL },
	{ "file:///var/lib/images/base.img", RCOW_SCHEME_FILE, NULL, 0, NULL, NULL, "/var/lib/images/base.img" },
	{ "file://localhost/dev/vdb", RCOW_SCHEME_FILE, NULL, 0, NULL, NULL, "/dev/vdb" },
	{ "file:///a%20b%3fc", RCOW_SCHEME_FILE, NULL, 0, NULL, NULL, "/a b?c" },
};

struct bad {
	const char *text;
	int code;
	const char *needle;	/* must appear in the message */
};

static const struct bad bads[] = {
	{ "", EINVAL, "empty" },
	{ "server/disk", EINVAL, "://" },
	{ "http://server/disk", EPROTONOSUPPORT, "unsupported URI scheme 'http'" },
	{ "nbd+tcp://server/disk", EPROTONOSUPPORT, "accepted forms" },
	{ "nbd:///disk", EINVAL, "missing host" },
	{ "nbd://:10809/disk", EINVAL, "missing host name" },
	{ "nbd://server:/disk", EINVAL, "empty port" },
	{ "nbd://server:0/disk", EINVAL, "out of range" },
	{ "nbd://server:65536/disk", EINVAL, "out of range" },
	{ "nbd://server:99999999999999999999/disk", EINVAL, "out of range" },
	{ "nbd://server:12a/disk", EINVAL, "must be a number" },
	{ "nbd://user:pw@server/disk", EINVAL, "credentials" },
	{ "nbd://ser%20ver/disk", EINVAL, "not valid in a host name" },
	{ "nbd://[::1/disk", EINVAL, "closing ']'" },
	{ "nbd://[]/disk", EINVAL, "empty IPv6" },
	{ "nbd://[::1]x/disk", EINVAL, "after ']'" },
	{ "nbd://[zz::1]/disk", EINVAL, "IPv6" },
	{ "nbd://server/disk?tls-certificates=/etc", EINVAL, "configuration" },
	{ "nbds://server/disk?tls-psk-file=/k", EINVAL, "query parameters" },
	{ "nbd://server/d isk", EINVAL, "space" },
	{ "nbd://server/d\tisk", EINVAL, "control" },
	{ "nbd://server/disk#frag", EINVAL, "fragment" },
	{ "nbd://server/bad%2", EINVAL, "percent escape" },
	{ "nbd://server/bad%zz", EINVAL, "percent escape" },
	{ "nbd://server/nul%00", EINVAL, "%00" },
	{ "nbd+unix:///export", EINVAL, "socket=PATH" },
	{ "nbd+unix:///export?", EINVAL, "socket=PATH" },
	{ "nbd+unix:///export?sock=/s", EINVAL, "exactly one query parameter" },
	{ "nbd+unix:///export?socket=/s&x=1", EINVAL, "exactly one query parameter" },
	{ "nbd+unix:///export?socket=rel.sock", EINVAL, "absolute" },
	{ "nbd+unix://host/export?socket=/s", EINVAL, "empty host" },
	{ "file://otherhost/x.img", EINVAL, "only local files" },
	{ "file:///", EINVAL, "absolute path" },
	{ "file://", EINVAL, "absolute path" },
	{ "file:///x.img?y", EINVAL, "query" },
};

void test_uri(struct tap *t)
{
	struct rcow_err err = { 0 };
	struct rcow_uri u;
	size_t i;
	char *long_uri;

	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		int r = rcow_uri_parse(g->text, &u, &err);

		if (r) {
			tap_ok(t, false, "accepts %s", g->text);
			tap_diag(t, "error: %s", err.msg);
			continue;
		}
		tap_ok(t, u.scheme == g->scheme && streq(u.host, g->host) &&
			  (g->host ? u.port == g->port : true) && streq(u.export, g->export) &&
			  streq(u.socket, g->socket) && streq(u.path, g->path) &&
			  !strncasecmp(u.raw, g->text, strlen(g->text)) &&
			  strlen(u.raw) == strlen(g->text) && !strcmp(u.raw + strcspn(u.raw, ":"),
								     g->text + strcspn(g->text, ":")),
		       "accepts %s with the right parts", g->text);
		rcow_uri_free(&u);
	}
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		int r;

		rcow_err_clear(&err);
		r = rcow_uri_parse(b->text, &u, &err);
		if (!tap_ok(t, r == -b->code && err.code == b->code && strstr(err.msg, b->needle),
			    "refuses '%s' mentioning '%s'", b->text, b->needle))
			tap_diag(t, "got %d: %s", r, err.msg);
		/* a refused parse leaves nothing allocated */
		tap_ok(t, !u.raw && !u.host && !u.export && !u.socket && !u.path,
		       "refusal of '%s' leaves nothing allocated", b->text);
	}
	tap_ok(t, rcow_uri_parse(NULL, &u, &err) == -EINVAL, "refuses NULL");
	/* libnbd knows schemes in lower case only: raw is what it is given */
	tap_ok(t, rcow_uri_parse("NBD+UNIX:///Ex?socket=/run/S", &u, &err) == 0 &&
	       u.scheme == RCOW_SCHEME_NBD_UNIX && !strcmp(u.raw, "nbd+unix:///Ex?socket=/run/S"),
	       "an upper-case scheme is accepted and lowered for libnbd (%s)", u.raw ? u.raw : "-");
	rcow_uri_free(&u);
	tap_ok(t, rcow_uri_parse("Nbds://Host/X", &u, &err) == 0 && !strcmp(u.raw, "nbds://Host/X"),
	       "only the scheme is lowered (%s)", u.raw ? u.raw : "-");
	rcow_uri_free(&u);

	long_uri = malloc(REMOTE_COW_MAX_URI + 2);
	memset(long_uri, 'a', REMOTE_COW_MAX_URI + 1);
	memcpy(long_uri, "file:///", 8);
	long_uri[REMOTE_COW_MAX_URI + 1] = '\0';
	tap_ok(t, rcow_uri_parse(long_uri, &u, &err) == -ENAMETOOLONG,
	       "refuses a URI of REMOTE_COW_MAX_URI + 1 bytes");
	long_uri[REMOTE_COW_MAX_URI] = '\0';
	tap_ok(t, rcow_uri_parse(long_uri, &u, &err) == 0 && u.scheme == RCOW_SCHEME_FILE,
	       "accepts a URI of exactly REMOTE_COW_MAX_URI bytes");
	rcow_uri_free(&u);
	free(long_uri);
}
