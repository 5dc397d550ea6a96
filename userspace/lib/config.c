// SPDX-License-Identifier: GPL-2.0
/*
 * config.c - remote-cowd's configuration file (see include/rcow/config.h
 * and remote-cowd(8)).  Line oriented: "key = value", "[uri-prefix]",
 * '#' comments, blank lines.  Unknown keys and bad values are errors that
 * name the file and line, so a typo never silently changes the policy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "rcow/config.h"
#include "rcow/uri.h"
#include "rcow/policy.h"
#include "rcow/smallfile.h"

#define MAX_CONFIG_BYTES (1 << 20)

void rcow_config_init(struct rcow_config *c)
{
	static const struct rcow_policy def = RCOW_POLICY_DEFAULTS;

	memset(c, 0, sizeof(*c));
	c->global = def;
	c->spool_max = RCOW_DEFAULT_SPOOL_MAX;
	c->mig_peer_timeout_ms = RCOW_DEFAULT_MIG_PEER_TIMEOUT_MS;
}

int rcow_parse_mig_peer_timeout(const char *v, uint32_t *ms)
{
	uint32_t x;

	if (rcow_parse_duration_ms(v, &x) || x < RCOW_MIN_MIG_PEER_TIMEOUT_MS ||
	    x > RCOW_MAX_MIG_PEER_TIMEOUT_MS)
		return -EINVAL;
	*ms = x;
	return 0;
}

int rcow_parse_mig_postcopy_rate(const char *v, uint64_t *rate)
{
	uint64_t x;

	if (rcow_parse_size(v, &x) || (x && x < 1024) || x > RCOW_MAX_MIG_POSTCOPY_RATE)
		return -EINVAL;
	*rate = x;
	return 0;
}

int rcow_parse_mig_mirror(const char *v, enum rcow_mig_mirror *m)
{
	if (!strcmp(v, "auto"))
		*m = RCOW_MIG_MIRROR_AUTO;
	else if (!strcmp(v, "always"))
		*m = RCOW_MIG_MIRROR_ALWAYS;
	else if (!strcmp(v, "throttle"))
		*m = RCOW_MIG_MIRROR_THROTTLE;
	else
		return -EINVAL;
	return 0;
}

const char *rcow_config_spool_dir(const struct rcow_config *c)
{
	return c->spool_dir ? c->spool_dir : RCOW_DEFAULT_SPOOL_DIR;
}

static void cred_free(struct rcow_cred *cr)
{
	free(cr->tls_psk_file);
	free(cr->tls_certificates);
	free(cr->tls_username);
	memset(cr, 0, sizeof(*cr));
}

void rcow_config_free(struct rcow_config *c)
{
	for (size_t i = 0; i < c->nsec; i++) {
		free(c->sec[i].prefix);
		cred_free(&c->sec[i].cred);
	}
	free(c->sec);
	c->sec = NULL;
	c->nsec = 0;
	free(c->spool_dir);
	c->spool_dir = NULL;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int set_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long x;

	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	x = strtoul(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return -EINVAL;
	*out = (uint32_t)x;
	return 0;
}

static int set_str(const char *v, char **out)
{
	char *s;

	if (!*v)
		return -EINVAL;
	s = strdup(v);
	if (!s)
		return -ENOMEM;
	free(*out);
	*out = s;
	return 0;
}

/* One key of a policy (global or section); *bit gets its RCOW_SET_ bit. */
static int policy_key(struct rcow_policy *p, const char *k, const char *v, unsigned int *bit,
		      const char **range)
{
	uint64_t sz;

	if (!strcmp(k, "connections")) {
		*bit = RCOW_SET_CONNECTIONS;
		*range = "a number from 1 to 16";
		return set_u32(v, 1, 16, &p->connections);
	}
	if (!strcmp(k, "max_in_flight")) {
		*bit = RCOW_SET_MAX_IN_FLIGHT;
		*range = "a number from 1 to 1024";
		return set_u32(v, 1, 1024, &p->max_in_flight);
	}
	if (!strcmp(k, "prefetch_max")) {
		*bit = RCOW_SET_PREFETCH_MAX;
		*range = "a size from 0 to 256M (0 turns prefetch off)";
		if (rcow_parse_size(v, &sz) || sz > (256u << 20))
			return -EINVAL;
		p->prefetch_max = sz;
		return 0;
	}
	if (!strcmp(k, "max_window")) {
		*bit = RCOW_SET_MAX_WINDOW;
		*range = "a size from 1M to 1G";
		if (rcow_parse_size(v, &sz) || sz < (1u << 20) || sz > (1u << 30))
			return -EINVAL;
		p->max_window = sz;
		return 0;
	}
	*range = "a duration from 1ms to 1 day (e.g. 250ms, 2s)";
	if (!strcmp(k, "retry_initial")) {
		*bit = RCOW_SET_RETRY_INITIAL;
		return rcow_parse_duration_ms(v, &p->retry_initial_ms) || !p->retry_initial_ms ?
			-EINVAL : 0;
	}
	if (!strcmp(k, "retry_max")) {
		*bit = RCOW_SET_RETRY_MAX;
		return rcow_parse_duration_ms(v, &p->retry_max_ms) || !p->retry_max_ms ? -EINVAL : 0;
	}
	if (!strcmp(k, "request_timeout")) {
		*bit = RCOW_SET_REQUEST_TIMEOUT;
		return rcow_parse_duration_ms(v, &p->request_timeout_ms) || !p->request_timeout_ms ?
			-EINVAL : 0;
	}
	if (!strcmp(k, "connect_timeout")) {
		*bit = RCOW_SET_CONNECT_TIMEOUT;
		return rcow_parse_duration_ms(v, &p->connect_timeout_ms) || !p->connect_timeout_ms ?
			-EINVAL : 0;
	}
	if (!strcmp(k, "commit_retry_timeout")) {
		*bit = RCOW_SET_COMMIT_RETRY_TIMEOUT;
		return rcow_parse_duration_ms(v, &p->commit_retry_timeout_ms) ||
			!p->commit_retry_timeout_ms ? -EINVAL : 0;
	}
	return -ENOENT;
}

static int add_section(struct rcow_config *c, const char *prefix)
{
	struct rcow_config_section *v, *s;

	v = realloc(c->sec, (c->nsec + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->sec = v;
	s = &c->sec[c->nsec];
	memset(s, 0, sizeof(*s));
	s->prefix = strdup(prefix);
	if (!s->prefix)
		return -ENOMEM;
	rcow_uri_lower_scheme(s->prefix);	/* URIs are looked up with theirs lowered */
	c->nsec++;
	return 0;
}

static int parse_line(struct rcow_config *c, char *line, const char *name, unsigned int lineno,
		      struct rcow_err *err)
{
	struct rcow_config_section *s = c->nsec ? &c->sec[c->nsec - 1] : NULL;
	char *eq, *k, *v;
	const char *range = "";
	unsigned int bit = 0;
	int r;

	line = trim(line);
	if (!*line || *line == '#')
		return 0;
	if (*line == '[') {
		char *e = strchr(line, ']');

		if (!e || *trim(e + 1) || e == line + 1)
			return rcow_err_set(err, EINVAL,
				"%s line %u: a section header is [base-URI-prefix], e.g. [nbds://images.example/]",
				name, lineno);
		*e = '\0';
		for (size_t i = 0; i < c->nsec; i++)
			if (!strcmp(c->sec[i].prefix, line + 1))
				return rcow_err_set(err, EINVAL, "%s line %u: section [%s] appears twice",
						    name, lineno, line + 1);
		if (add_section(c, line + 1))
			return rcow_err_set(err, ENOMEM, "out of memory reading %s", name);
		return 0;
	}
	eq = strchr(line, '=');
	if (!eq)
		return rcow_err_set(err, EINVAL, "%s line %u: expected key = value, got '%s'",
				    name, lineno, line);
	*eq = '\0';
	k = trim(line);
	v = trim(eq + 1);
	r = policy_key(s ? &s->pol : &c->global, k, v, &bit, &range);
	if (r == 0) {
		if (s)
			s->set |= bit;
		return 0;
	}
	if (r == -EINVAL)
		return rcow_err_set(err, EINVAL, "%s line %u: %s = '%s': expected %s", name, lineno,
				    k, v, range);
	if (s && (!strcmp(k, "spool_dir") || !strcmp(k, "spool_max") ||
		  !strcmp(k, "migrate_peer_timeout") || !strcmp(k, "migrate_mirror") ||
		  !strcmp(k, "migrate_postcopy_rate")))
		return rcow_err_set(err, EINVAL,
			"%s line %u: %s is a global key: put it before the first [section]",
			name, lineno, k);
	if (!strcmp(k, "spool_dir") || !strcmp(k, "spool_max")) {
		uint64_t sz;

		if (!strcmp(k, "spool_max")) {
			if (rcow_parse_size(v, &sz) || sz < (1u << 20))
				return rcow_err_set(err, EINVAL,
					"%s line %u: spool_max = '%s': expected a size of at least 1M (e.g. 4G)",
					name, lineno, v);
			c->spool_max = sz;
			return 0;
		}
		if (v[0] != '/')
			return rcow_err_set(err, EINVAL,
				"%s line %u: spool_dir = '%s': expected an absolute directory path",
				name, lineno, v);
		if (set_str(v, &c->spool_dir))
			return rcow_err_set(err, ENOMEM, "out of memory reading %s", name);
		return 0;
	}
	if (!strcmp(k, "migrate_peer_timeout")) {
		if (rcow_parse_mig_peer_timeout(v, &c->mig_peer_timeout_ms))
			return rcow_err_set(err, EINVAL, "%s line %u: %s = '%s': expected %s",
					    name, lineno, k, v, RCOW_MIG_PEER_TIMEOUT_RANGE);
		return 0;
	}
	if (!strcmp(k, "migrate_postcopy_rate")) {
		if (rcow_parse_mig_postcopy_rate(v, &c->mig_postcopy_rate))
			return rcow_err_set(err, EINVAL, "%s line %u: %s = '%s': expected %s",
					    name, lineno, k, v, RCOW_MIG_POSTCOPY_RATE_RANGE);
		return 0;
	}
	if (!strcmp(k, "migrate_mirror")) {
		if (rcow_parse_mig_mirror(v, &c->mig_mirror))
			return rcow_err_set(err, EINVAL, "%s line %u: %s = '%s': expected %s",
					    name, lineno, k, v, RCOW_MIG_MIRROR_CHOICES);
		return 0;
	}
	if (!strncmp(k, "tls_", 4)) {
		char **dst = NULL;

		if (!strcmp(k, "tls_psk_file"))
			dst = s ? &s->cred.tls_psk_file : NULL;
		else if (!strcmp(k, "tls_certificates"))
			dst = s ? &s->cred.tls_certificates : NULL;
		else if (!strcmp(k, "tls_username"))
			dst = s ? &s->cred.tls_username : NULL;
		else
			goto unknown;
		if (!dst)
			return rcow_err_set(err, EINVAL,
				"%s line %u: %s belongs in a [base-URI-prefix] section", name, lineno, k);
		r = set_str(v, dst);
		if (r == -ENOMEM)
			return rcow_err_set(err, ENOMEM, "out of memory reading %s", name);
		if (r)
			return rcow_err_set(err, EINVAL, "%s line %u: %s needs a value", name, lineno, k);
		return 0;
	}
unknown:
	return rcow_err_set(err, EINVAL,
		"%s line %u: unknown key '%s' (known: connections, max_in_flight, max_window, prefetch_max, retry_initial, retry_max, request_timeout, connect_timeout, commit_retry_timeout, spool_dir, spool_max, migrate_peer_timeout, migrate_mirror, migrate_postcopy_rate, tls_psk_file, tls_certificates, tls_username)",
		name, lineno, k);
}

int rcow_config_parse(struct rcow_config *c, const char *text, const char *name,
		      struct rcow_err *err)
{
	char *copy = strdup(text), *line, *save = NULL;
	unsigned int lineno = 0;
	const char *p;
	int r = 0;

	if (!copy)
		return rcow_err_set(err, ENOMEM, "out of memory reading %s", name);
	/* strtok_r would skip empty lines and so miscount; split by hand */
	(void)save;
	line = copy;
	for (;;) {
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = '\0';
		lineno++;
		r = parse_line(c, line, name, lineno, err);
		if (r || !nl)
			break;
		line = nl + 1;
	}
	free(copy);
	if (r)
		return r;
	/* sanity across keys */
	p = name;
	if (c->global.retry_max_ms < c->global.retry_initial_ms)
		return rcow_err_set(err, EINVAL, "%s: retry_max is shorter than retry_initial", p);
	return 0;
}

int rcow_config_load_default(struct rcow_config *c, const char *path, const char **used,
			     struct rcow_err *err)
{
	*used = NULL;
	if (!path) {
		if (access(RCOW_DEFAULT_CONFIG, F_OK))
			return 0;
		path = RCOW_DEFAULT_CONFIG;
	}
	*used = path;
	return rcow_config_load(c, path, err);
}

const char *rcow_cred_tls_hint(const char *uri, const struct rcow_cred *cred)
{
	if (strncasecmp(uri, "nbds:", 5) || (cred && (cred->tls_psk_file || cred->tls_certificates)))
		return "";
	return " (no TLS credentials are configured for this base: see tls_psk_file and tls_certificates in remote-cowd(8))";
}

int rcow_config_load(struct rcow_config *c, const char *path, struct rcow_err *err)
{
	char *buf = malloc(MAX_CONFIG_BYTES + 1);
	size_t n;
	int r;

	if (!buf)
		return rcow_err_set(err, ENOMEM, "out of memory reading %s", path);
	r = rcow_read_small(path, "configuration file", buf, MAX_CONFIG_BYTES + 1, &n, err);
	if (!r) {
		buf[n] = '\0';
		r = rcow_config_parse(c, buf, path, err);
	}
	free(buf);
	return r;
}

/*
 * Does section prefix p apply to uri?  It must match whole URI components:
 * [nbds://img.example] applies to nbds://img.example/x and
 * nbds://img.example:10810/x, never to nbds://img.example.evil/x;
 * [file:///images] to file:///images/a.img, not file:///images2/a.img.
 * The scheme is compared without case.
 */
static bool prefix_applies(const char *uri, const char *p)
{
	const char *sep = strstr(p, "://");
	size_t l = strlen(p), sl = sep ? (size_t)(sep - p) : 0;
	char next;

	if (sep ? strncasecmp(uri, p, sl) || strncmp(uri + sl, p + sl, l - sl) : strncmp(uri, p, l))
		return false;
	next = uri[l];
	if (next == '\0' || (l > 0 && (p[l - 1] == '/' || p[l - 1] == '?' || p[l - 1] == '&')))
		return true;
	if (next == '/' || next == '?' || next == '#')
		return true;
	/* a port after a host: only when the prefix ends in the authority */
	return next == ':' && sep && !strchr(sep + 3, '/');
}

void rcow_config_lookup(const struct rcow_config *c, const char *uri, struct rcow_policy *pol,
			const struct rcow_cred **cred)
{
	const struct rcow_config_section *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; i < c->nsec; i++) {
		size_t l = strlen(c->sec[i].prefix);

		if (prefix_applies(uri, c->sec[i].prefix) && (!best || l > best_len)) {
			best = &c->sec[i];
			best_len = l;
		}
	}
	*pol = c->global;
	*cred = NULL;
	if (!best)
		return;
	*cred = &best->cred;
	if (best->set & RCOW_SET_CONNECTIONS)
		pol->connections = best->pol.connections;
	if (best->set & RCOW_SET_MAX_IN_FLIGHT)
		pol->max_in_flight = best->pol.max_in_flight;
	if (best->set & RCOW_SET_PREFETCH_MAX)
		pol->prefetch_max = best->pol.prefetch_max;
	if (best->set & RCOW_SET_MAX_WINDOW)
		pol->max_window = best->pol.max_window;
	if (best->set & RCOW_SET_RETRY_INITIAL)
		pol->retry_initial_ms = best->pol.retry_initial_ms;
	if (best->set & RCOW_SET_RETRY_MAX)
		pol->retry_max_ms = best->pol.retry_max_ms;
	if (best->set & RCOW_SET_REQUEST_TIMEOUT)
		pol->request_timeout_ms = best->pol.request_timeout_ms;
	if (best->set & RCOW_SET_CONNECT_TIMEOUT)
		pol->connect_timeout_ms = best->pol.connect_timeout_ms;
	if (best->set & RCOW_SET_COMMIT_RETRY_TIMEOUT)
		pol->commit_retry_timeout_ms = best->pol.commit_retry_timeout_ms;
	if (pol->retry_max_ms < pol->retry_initial_ms)
		pol->retry_max_ms = pol->retry_initial_ms;
}
