/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Base URI parsing (the <base_uri> of the remote-cow table line).
 *
 * Accepted forms (DESIGN.md, contract):
 *   nbd://host[:port]/export          plain NBD over TCP (port 10809 default)
 *   nbds://host[:port]/export         NBD over TLS
 *   nbd+unix:///export?socket=PATH    NBD over a Unix domain socket
 *   file:///PATH                      local image file or block device
 *
 * The parser decides the backend and validates; the NBD connection itself
 * is made by libnbd from the string (nbd_connect_uri), so both agree on
 * the meaning.  Schemes are case-insensitive (RFC 3986) but libnbd knows
 * them in lower case only, so raw has its scheme lowered.  Deliberately refused: user names or passwords in
 * the URI (the table line is world-readable: credentials belong in
 * remote-cowd's configuration), query parameters other than socket= on
 * nbd+unix, fragments, whitespace and control characters, and URIs longer
 * than REMOTE_COW_MAX_URI.
 */
#ifndef RCOW_URI_H
#define RCOW_URI_H

#include <stdint.h>

#include "rcow/err.h"

enum rcow_scheme {
	RCOW_SCHEME_NBD,	/* nbd:// */
	RCOW_SCHEME_NBDS,	/* nbds:// */
	RCOW_SCHEME_NBD_UNIX,	/* nbd+unix:// */
	RCOW_SCHEME_FILE,	/* file:// */
};

#define RCOW_URI_DEFAULT_PORT 10809

struct rcow_uri {
	enum rcow_scheme scheme;
	char *raw;	/* the URI as given, scheme in lower case */
	char *host;	/* nbd, nbds: host name or address, no brackets */
	uint16_t port;	/* nbd, nbds: explicit or RCOW_URI_DEFAULT_PORT */
	char *export;	/* nbd*: export name, percent-decoded, may be "" */
	char *socket;	/* nbd+unix: socket path, percent-decoded */
	char *path;	/* file: absolute path, percent-decoded */
};

/* Parse text into *uri (zeroed first).  0 or -errno with err set. */
int rcow_uri_parse(const char *text, struct rcow_uri *uri, struct rcow_err *err);

/* Free the strings of a parsed URI; safe on a zeroed or freed struct. */
void rcow_uri_free(struct rcow_uri *uri);

/*
 * Lower the scheme of s ("NBDS://h/x" -> "nbds://h/x") in place, if s has
 * one (letters, digits, '+', '-', '.' before "://").
 */
void rcow_uri_lower_scheme(char *s);

/* "nbd", "nbds", "nbd+unix", "file". */
const char *rcow_scheme_name(enum rcow_scheme scheme);

#endif
