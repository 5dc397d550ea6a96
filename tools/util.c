// SPDX-License-Identifier: GPL-2.0
/*
 * util.c - messages, sizes, JSON strings and option parsing for remote-cow.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
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

/* The length of the UTF-8 sequence at p (RFC 3629), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *p)
{
	unsigned int c = p[0];
	size_t n, i;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;	/* a continuation byte, 0xc0, 0xc1, 0xf5..0xff */
	}
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;	/* overlong, past Unicode, a surrogate */
	return n;
}

bool rc_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	while (*p) {
		size_t n = utf8_seq(p);

		if (!n)
			return false;
		p += n;
	}
	return true;
}

void rc_print_bytes(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	for (; *p; p++) {
		if (*p < 0x20 || *p >= 0x7f || *p == '\\')
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
}

int rc_json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	if (!rc_utf8_valid(s))
		return -1;
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
			fputc(*p, f);	/* UTF-8, checked above */
	}
	fputc('"', f);
	return 0;
}

/* The end of a command's argument walk: it exits with status. */
static int args_exit(struct rc_args *a, int status)
{
	a->status = status;
	return RC_ARG_EXIT;
}

/* getopt_long's value for the i-th option of a table: past every short option. */
#define RC_OPT_VAL 0x100

/*
 * A '?' or ':' from getopt_long for the long option in word (the argv
 * element "--name[=value]"): name it, and every option it is a prefix of.
 */
static int long_opt_err(struct rc_args *a, const struct option *lo, const char *word, int c)
{
	const char *name = word + 2, *eq = strchr(name, '=');
	size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
	const struct option *hit = NULL;
	char cands[256] = "";
	size_t used = 0;
	int n = 0;

	for (; lo->name; lo++) {
		if (strncmp(lo->name, name, nlen))
			continue;
		if (strlen(lo->name) == nlen) {	/* exact: never ambiguous */
			hit = lo;
			n = 1;
			break;
		}
		hit = lo;
		n++;
		used += (size_t)snprintf(cands + used, used < sizeof(cands) ? sizeof(cands) - used : 0,
					 "%s--%s", n > 1 ? ", " : "", lo->name);
		if (used >= sizeof(cands))
			used = sizeof(cands);
	}
	if (!n)
		return args_exit(a, rc_usage_err(a->cmd, "unknown option '--%.*s'", (int)nlen, name));
	if (n > 1)
		return args_exit(a, rc_usage_err(a->cmd, "option '--%.*s' is ambiguous: %s",
						 (int)nlen, name, cands));
	if (c == ':')
		return args_exit(a, rc_usage_err(a->cmd, "option '--%s' needs a value", hit->name));
	if (!strcmp(hit->name, "help"))
		return args_exit(a, rc_usage_err(a->cmd, "option '--help' takes no value"));
	return args_exit(a, rc_usage_err(a->cmd, "option '--%s' takes no value", hit->name));
}

int rc_next_arg(struct rc_args *a, const struct rc_opt *opts, const char **arg)
{
	struct option lo[RC_MAX_OPTS + 2];
	/* "-": positional arguments in order (1); ":": a missing value is ':' */
	char optstring[3 * RC_MAX_OPTS + 8] = "-:h";
	size_t n = 0, len = strlen(optstring);
	const char *word;
	int c;

	*arg = NULL;
	for (; opts[n].name; n++) {
		/* a table too long for lo[] is a bug here, not a user's mistake */
		if (n == RC_MAX_OPTS)
			return args_exit(a, rc_usage_err(a->cmd, "internal error: over %d options",
							 RC_MAX_OPTS));
		lo[n] = (struct option){ opts[n].name, opts[n].has_arg ? required_argument
								: no_argument, NULL,
					 RC_OPT_VAL + (int)n };
		if (opts[n].short_name) {
			optstring[len++] = opts[n].short_name;
			if (opts[n].has_arg)
				optstring[len++] = ':';
		}
	}
	optstring[len] = '\0';
	lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n] = (struct option){ NULL, 0, NULL, 0 };

	if (!a->i) {		/* a new walk: getopt_long starts over */
		a->i = 1;
		optind = 0;
	}
	opterr = 0;
	if (a->no_more_opts) {
		if (optind >= a->argc)
			return -1;
		c = 1;
		optarg = a->argv[optind++];
	} else {
		c = getopt_long(a->argc, a->argv, optstring, lo, NULL);
		if (c == -1) {	/* the end, or "--": the rest is positional */
			a->no_more_opts = true;
			return rc_next_arg(a, opts, arg);
		}
	}
	switch (c) {
	case 1:
		if (a->nargs++ >= a->max_args)
			return args_exit(a, rc_usage_err(a->cmd, "unexpected argument '%s'", optarg));
		*arg = optarg;
		return 0;
	case 'h':
		fputs(a->help, stdout);
		return args_exit(a, RC_EXIT_OK);
	case '?':
	case ':':
		/* a short option: optopt; a long one: 0 (unknown) or its value */
		if (optopt > 0 && optopt < RC_OPT_VAL && optopt != 'h') {
			if (c == ':')
				return args_exit(a, rc_usage_err(a->cmd, "option '-%c' needs a value",
								 optopt));
			return args_exit(a, rc_usage_err(a->cmd, "unknown option '-%c'", optopt));
		}
		/* getopt_long has moved past a long option, and past its value */
		word = a->argv[optind - 1];
		if (c == '?' && strncmp(word, "--", 2))
			return args_exit(a, rc_usage_err(a->cmd, "unknown option '%s'", word));
		return long_opt_err(a, lo, word, c);
	default:
		break;
	}
	if (c >= RC_OPT_VAL && c < RC_OPT_VAL + (int)n) {
		*arg = optarg;
		return opts[c - RC_OPT_VAL].id;
	}
	for (size_t i = 0; opts[i].name; i++)
		if (opts[i].short_name == c) {
			*arg = optarg;
			return opts[i].id;
		}
	return args_exit(a, rc_usage_err(a->cmd, "internal error: option %d", c));
}
