// SPDX-License-Identifier: GPL-2.0
/*
 * uri.c - parse and validate base URIs (see include/rcow/uri.h).
 *
 * A small hand-written splitter: scheme "://" authority path ["?" query].
 * Strict on purpose: the same string is shown by dmsetup table and given to
 * libnbd, so anything ambiguous is refused with a sentence saying which
 * part is wrong and what the accepted form is.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "remote_cow.h"
#include "rcow/uri.h"

#define FORMS "accepted forms: nbd://HOST[:PORT]/EXPORT, nbds://HOST[:PORT]/EXPORT, " \
	      "nbd+unix:///EXPORT?socket=PATH, file:///PATH"

const char *rcow_scheme_name(enum rcow_scheme scheme)
{
	switch (scheme) {
	case RCOW_SCHEME_NBD: return "nbd";
	case RCOW_SCHEME_NBDS: return "nbds";
	case RCOW_SCHEME_NBD_UNIX: return "nbd+unix";
	case RCOW_SCHEME_FILE: return "file";
	}
	return "?";
}

void rcow_uri_free(struct rcow_uri *uri)
{
	free(uri->raw);
	free(uri->host);
	free(uri->export);
	free(uri->socket);
	free(uri->path);
	memset(uri, 0, sizeof(*uri));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decode [s, s+len) into a new string; refuses bad escapes and %00. */
static int pct_decode(const char *s, size_t len, const char *what, char **out,
		      struct rcow_err *err)
{
	char *d = malloc(len + 1);
	size_t i, j = 0;

	if (!d)
		return rcow_err_set(err, ENOMEM, "out of memory decoding the %s", what);
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			d[j++] = s[i];
			continue;
		}
		if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
			free(d);
			return rcow_err_set(err, EINVAL,
				"bad percent escape in the %s: '%%' must be followed by two hex digits", what);
		}
		int v = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);

		if (v == 0) {
			free(d);
			return rcow_err_set(err, EINVAL, "the %s contains %%00 (a NUL byte), which no path or name may hold", what);
		}
		d[j++] = (char)v;
		i += 2;
	}
	d[j] = '\0';
	*out = d;
	return 0;
}

static bool host_char_ok(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

/* authority = host [":" port] | "[" v6 "]" [":" port] */
static int parse_authority(const char *a, size_t len, struct rcow_uri *uri,
			   struct rcow_err *err)
{
	const char *host, *port = NULL;
	size_t hlen, plen = 0, i;

	if (memchr(a, '@', len))
		return rcow_err_set(err, EINVAL,
			"user information ('user@' or 'user:password@') is not allowed in a base URI: "
			"the table line is readable by anyone; put credentials in remote-cowd's configuration");
	if (len == 0)
		return rcow_err_set(err, EINVAL, "missing host name after '%s://' (%s)",
				    rcow_scheme_name(uri->scheme), FORMS);
	if (a[0] == '[') {
		const char *close = memchr(a, ']', len);

		if (!close)
			return rcow_err_set(err, EINVAL, "IPv6 address opened with '[' has no closing ']'");
		host = a + 1;
		hlen = (size_t)(close - host);
		if (hlen == 0)
			return rcow_err_set(err, EINVAL, "empty IPv6 address '[]' in base URI");
		for (i = 0; i < hlen; i++)
			if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
				return rcow_err_set(err, EINVAL,
					"character '%c' is not valid in a bracketed IPv6 address", host[i]);
		if (close + 1 < a + len) {
			if (close[1] != ':')
				return rcow_err_set(err, EINVAL, "unexpected text after ']' in base URI; expected ':PORT' or '/'");
			port = close + 2;
			plen = (size_t)(a + len - port);
		}
	} else {
		const char *colon = memchr(a, ':', len);

		host = a;
		hlen = colon ? (size_t)(colon - a) : len;
		if (colon) {
			port = colon + 1;
			plen = len - hlen - 1;
		}
		if (hlen == 0)
			return rcow_err_set(err, EINVAL, "missing host name before ':' in base URI");
		for (i = 0; i < hlen; i++)
			if (!host_char_ok(host[i]))
				return rcow_err_set(err, EINVAL,
					"character '%c' is not valid in a host name (use letters, digits, '-', '.', or [IPv6])",
					host[i]);
	}
	uri->port = RCOW_URI_DEFAULT_PORT;
	if (port) {
		unsigned long v = 0;

		if (plen == 0)
			return rcow_err_set(err, EINVAL, "empty port after ':' in base URI; give a number 1-65535 or leave out ':'");
		for (i = 0; i < plen; i++) {
			if (!isdigit((unsigned char)port[i]))
				return rcow_err_set(err, EINVAL, "port must be a number 1-65535, not '%.*s'", (int)plen, port);
			v = v * 10 + (unsigned long)(port[i] - '0');
			if (v > 65535)
				break;
		}
		if (v == 0 || v > 65535)
			return rcow_err_set(err, EINVAL, "port %.*s is out of range: use 1-65535", (int)plen, port);
		uri->port = (uint16_t)v;
	}
	uri->host = strndup(host, hlen);
	if (!uri->host)
		return rcow_err_set(err, ENOMEM, "out of memory copying the host name");
	return 0;
}

/* export = path without its leading '/', percent-decoded; "" if no path. */
static int parse_export(const char *p, size_t len, struct rcow_uri *uri, struct rcow_err *err)
{
	if (len > 0) {
		p++;
		len--;
	}
	return pct_decode(p, len, "export name", &uri->export, err);
}

static int parse_unix_query(const char *q, size_t len, struct rcow_uri *uri, struct rcow_err *err)
{
	static const char key[] = "socket=";
	size_t klen = sizeof(key) - 1;
	int r;

	if (len == 0)
		return rcow_err_set(err, EINVAL,
			"nbd+unix URI needs '?socket=PATH' naming the server's Unix socket");
	if (len < klen || memcmp(q, key, klen) != 0 || memchr(q, '&', len))
		return rcow_err_set(err, EINVAL,
			"nbd+unix URI accepts exactly one query parameter, socket=PATH; got '?%.*s'",
			(int)len, q);
	r = pct_decode(q + klen, len - klen, "socket path", &uri->socket, err);
	if (r)
		return r;
	if (uri->socket[0] != '/')
		return rcow_err_set(err, EINVAL,
			"socket path '%s' must be absolute (start with '/'): the kernel and the helper do not share a working directory",
			uri->socket);
	return 0;
}

void rcow_uri_lower_scheme(char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");

	if (n == 0 || strncmp(s + n, "://", 3))
		return;
	for (size_t i = 0; i < n; i++)
		s[i] = (char)tolower((unsigned char)s[i]);
}

int rcow_uri_parse(const char *text, struct rcow_uri *uri, struct rcow_err *err)
{
	const char *sep, *auth, *path, *query, *end;
	size_t slen, i, tlen;
	int r;

	memset(uri, 0, sizeof(*uri));
	if (!text || !*text)
		return rcow_err_set(err, EINVAL, "empty base URI (%s)", FORMS);
	tlen = strlen(text);
	if (tlen > REMOTE_COW_MAX_URI)
		return rcow_err_set(err, ENAMETOOLONG, "base URI is %zu bytes long; at most %d are accepted",
				    tlen, REMOTE_COW_MAX_URI);
	for (i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c <= 0x20 || c >= 0x7f)
			return rcow_err_set(err, EINVAL,
				"base URI contains a space, control or non-ASCII byte (0x%02x at position %zu); "
				"percent-encode it (e.g. %%20 for a space)", c, i);
	}
	if (strchr(text, '#'))
		return rcow_err_set(err, EINVAL, "base URI must not contain a fragment ('#')");

	sep = strstr(text, "://");
	if (!sep)
		return rcow_err_set(err, EINVAL, "'%s' is not a URI: missing '://' (%s)", text, FORMS);
	slen = (size_t)(sep - text);
	if (slen == 3 && !strncasecmp(text, "nbd", 3))
		uri->scheme = RCOW_SCHEME_NBD;
	else if (slen == 4 && !strncasecmp(text, "nbds", 4))
		uri->scheme = RCOW_SCHEME_NBDS;
	else if (slen == 8 && !strncasecmp(text, "nbd+unix", 8))
		uri->scheme = RCOW_SCHEME_NBD_UNIX;
	else if (slen == 4 && !strncasecmp(text, "file", 4))
		uri->scheme = RCOW_SCHEME_FILE;
	else
		return rcow_err_set(err, EPROTONOSUPPORT, "unsupported URI scheme '%.*s' (%s)",
				    (int)slen, text, FORMS);

	end = text + tlen;
	auth = sep + 3;
	path = auth + strcspn(auth, "/?");
	query = strchr(path, '?');
	if (!query)
		query = end;

	uri->raw = strdup(text);
	if (!uri->raw) {
		r = rcow_err_set(err, ENOMEM, "out of memory copying the URI");
		goto fail;
	}
	/* "NBD+UNIX://" is valid, but libnbd takes only "nbd+unix://" */
	rcow_uri_lower_scheme(uri->raw);

	switch (uri->scheme) {
	case RCOW_SCHEME_NBD:
	case RCOW_SCHEME_NBDS:
		r = parse_authority(auth, (size_t)(path - auth), uri, err);
		if (r)
			goto fail;
		r = parse_export(path, (size_t)(query - path), uri, err);
		if (r)
			goto fail;
		if (query != end) {
			r = rcow_err_set(err, EINVAL,
				"query parameters ('?...') are not accepted in %s:// URIs; TLS settings and credentials belong in remote-cowd's configuration",
				rcow_scheme_name(uri->scheme));
			goto fail;
		}
		break;
	case RCOW_SCHEME_NBD_UNIX:
		if (path != auth) {
			r = rcow_err_set(err, EINVAL,
				"nbd+unix URI must have an empty host: write nbd+unix:///EXPORT?socket=PATH (three slashes)");
			goto fail;
		}
		r = parse_export(path, (size_t)(query - path), uri, err);
		if (r)
			goto fail;
		r = parse_unix_query(query == end ? end : query + 1,
				     query == end ? 0 : (size_t)(end - query - 1), uri, err);
		if (r)
			goto fail;
		break;
	case RCOW_SCHEME_FILE:
		if (path != auth && !((size_t)(path - auth) == 9 && !strncasecmp(auth, "localhost", 9))) {
			r = rcow_err_set(err, EINVAL,
				"file URI names host '%.*s'; only local files are possible: write file:///PATH (three slashes)",
				(int)(path - auth), auth);
			goto fail;
		}
		if (query != end) {
			r = rcow_err_set(err, EINVAL, "file URI must not have query parameters ('?...'); percent-encode a '?' in the path as %%3F");
			goto fail;
		}
		if (path == end || *path != '/' || path[1] == '\0') {
			r = rcow_err_set(err, EINVAL, "file URI needs an absolute path to an image file or block device: file:///PATH");
			goto fail;
		}
		r = pct_decode(path, (size_t)(end - path), "file path", &uri->path, err);
		if (r)
			goto fail;
		break;
	}
	return 0;
fail:
	rcow_uri_free(uri);
	return r;
}
