// SPDX-License-Identifier: GPL-2.0
/*
 * util.c - messages, sizes, JSON strings and option parsing for remote-cow.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rc.h"

void rc_err(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void rc_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int rc_usage_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG " %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG " %s --help'.\n", cmd);
	return RC_EXIT_USAGE;
}

int rc_parse_uint(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	const char *p;

	if (!text || !*text)
		return -1;
	for (p = text; *p; p++) {
		unsigned int d;

		if (!isdigit((unsigned char)*p))
			return -1;
		d = (unsigned int)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

int rc_parse_size(const char *text, uint64_t *out, const char **why)
{
	char num[32];
	const char *p = text;
	size_t n = 0;
	unsigned int shift = 0;
	uint64_t v;

	*why = "not a size (examples: 4096, 64K, 20G, 2048s)";
	if (!text)
		return -1;
	while (isdigit((unsigned char)*p)) {
		if (n + 1 >= sizeof(num)) {
			*why = "too large";
			return -1;
		}
		num[n++] = *p++;
	}
	num[n] = '\0';
	if (!n)
		return -1;
	if (rc_parse_uint(num, UINT64_MAX, &v)) {
		*why = "too large";
		return -1;
	}
	switch (toupper((unsigned char)*p)) {
	case '\0':
		break;
	case 'S':
		shift = 9;
		p++;
		if (*p)
			return -1;
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	case 'P':
		shift = 50;
		break;
	default:
		return -1;
	}
	if (*p) {
		p++;
		if (!strcmp(p, "iB") || !strcmp(p, "B") || !*p)
			p += strlen(p);
		else
			return -1;
	}
	if (shift && v > (UINT64_MAX >> shift)) {
		*why = "too large";
		return -1;
	}
	*out = v << shift;
	return 0;
}

void rc_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned int u = 0;

	while (u + 1 < sizeof(unit) / sizeof(unit[0]) && bytes >= (1ULL << (10 * (u + 1))))
		u++;
	if (!u)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else if (!(bytes & ((1ULL << (10 * u)) - 1)))
		snprintf(buf, len, "%llu %s", (unsigned long long)(bytes >> (10 * u)), unit[u]);
	else
		snprintf(buf, len, "%.1f %s", (double)bytes / (double)(1ULL << (10 * u)), unit[u]);
}

void rc_json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	fputc('"', f);
	for (; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p == '\t')
			fputs("\\t", f);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* The end of a command's argument walk: it exits with status. */
static int args_exit(struct rc_args *a, int status)
{
	a->status = status;
	return RC_ARG_EXIT;
}

/* The option of opts named s[0..nlen), or NULL. */
static const struct rc_opt *find_opt(const struct rc_opt *opts, const char *s, size_t nlen)
{
	for (; opts->name; opts++)
		if (strlen(opts->name) == nlen && !strncmp(opts->name, s, nlen))
			return opts;
	return NULL;
}

int rc_next_arg(struct rc_args *a, const struct rc_opt *opts, const char **arg)
{
	static const struct rc_opt help_opt[] = { { "help", false, 0 }, { NULL, false, 0 } };
	const char *s, *eq;
	size_t nlen;
	const struct rc_opt *o;

	*arg = NULL;
	if (!a->i)
		a->i = 1;
	if (a->i >= a->argc)
		return -1;
	s = a->argv[a->i++];
	if (a->no_more_opts || s[0] != '-' || !s[1]) {
		if (a->nargs++ >= a->max_args)
			return args_exit(a, rc_usage_err(a->cmd, "unexpected argument '%s'", s));
		*arg = s;
		return 0;
	}
	if (!strcmp(s, "--")) {
		a->no_more_opts = true;
		return rc_next_arg(a, opts, arg);
	}
	if (!strcmp(s, "-h"))
		s = "--help";
	if (s[1] != '-')
		return args_exit(a, rc_usage_err(a->cmd, "unknown option '%s'", s));
	s += 2;
	eq = strchr(s, '=');
	nlen = eq ? (size_t)(eq - s) : strlen(s);
	o = find_opt(opts, s, nlen);
	if (!o)
		o = find_opt(help_opt, s, nlen);
	if (!o)
		return args_exit(a, rc_usage_err(a->cmd, "unknown option '--%.*s'", (int)nlen, s));
	if (!o->has_arg) {
		if (eq)
			return args_exit(a, rc_usage_err(a->cmd, "option '--%s' takes no value",
							 o->name));
		if (o != help_opt)
			return o->id;
		fputs(a->help, stdout);
		return args_exit(a, RC_EXIT_OK);
	}
	if (eq)
		*arg = eq + 1;
	else if (a->i < a->argc)
		*arg = a->argv[a->i++];
	else
		return args_exit(a, rc_usage_err(a->cmd, "option '--%s' needs a value", o->name));
	return o->id;
}
