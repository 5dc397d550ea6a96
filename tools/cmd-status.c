// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-status.c - remote-cow status and list.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "rc.h"

static const char status_help[] =
	"Usage: " PROG " status NAME [--json | --field KEY[,KEY...]]\n"
	"\n"
	"Show the remote-cow device NAME: size, extents present and written, faults\n"
	"waiting for the helper, whether a helper is connected, hydration, snapshot\n"
	"commit and migration progress, metadata mode, COW device and base.\n"
	"\n"
	"  --json       one JSON object with stable keys (remote-cow(8) lists them)\n"
	"  --field KEY  only the value of the status line's field KEY, for scripts;\n"
	"               several KEYs, comma-separated: one value a line, in that\n"
	"               order.  KEY: extent_sectors present total written\n"
	"               faults_in_flight helper commit_state commit_done\n"
	"               commit_total commit_gen migrate_state migrate_done\n"
	"               migrate_total hydrate_state metadata_mode\n"
	"  -h, --help   this text\n";

static const char list_help[] =
	"Usage: " PROG " list [--json]\n"
	"\n"
	"List every remote-cow device on this host (created by this tool or not):\n"
	"name, size, extent size, extents present/total and state (partial,\n"
	"complete, hydrating, suspended, ro, fail).\n"
	"\n"
	"  --json      a JSON array of the objects 'status --json' prints\n"
	"  -h, --help  this text\n";

enum { O_JSON = 1, O_FIELD };

static const struct rc_opt list_opts[] = {
	{ "json", false, O_JSON, 0 },
	{ NULL, false, 0, 0 },
};

static const struct rc_opt status_opts[] = {
	{ "json", false, O_JSON, 0 },
	{ "field", true, O_FIELD, 0 },
	{ NULL, false, 0, 0 },
};

struct status_args {
	const char *name;
	bool json;
	const char *fields;	/* --field's comma list, or NULL */
};

/*
 * The name at p in a comma list into key (cut short if it does not fit),
 * its length in *len.  The rest of the list after it, or NULL at the end.
 */
static const char *next_key(const char *p, char *key, size_t cap, size_t *len)
{
	*len = strcspn(p, ",");
	snprintf(key, cap, "%.*s", (int)*len, p);
	return p[*len] ? p + *len + 1 : NULL;
}

/* Every name in a --field list is a status field.  0, or RC_EXIT_USAGE (printed). */
static int check_fields(const char *list)
{
	char key[32], names[256];
	const char *p = list, *at;
	size_t len;

	while (p) {
		at = p;
		p = next_key(p, key, sizeof(key), &len);
		if (!len)
			return rc_usage_err("status", "an empty field name in --field '%s'", list);
		if (len >= sizeof(key) || !rc_dev_field_known(key)) {
			rc_dev_field_names(names, sizeof(names));
			return rc_usage_err("status", "unknown field '%.*s'; the fields are: %s",
					    (int)len, at, names);
		}
	}
	return 0;
}

/* Parse "[NAME] [--json] [--field LIST]"; returns -1 to go on, else an exit code. */
static int parse(int argc, char **argv, const char *cmd, const char *help,
		 const struct rc_opt *opts, bool want_name, struct status_args *s)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = cmd, .help = help,
			     .max_args = want_name ? 1 : 0 };
	const char *arg;
	int id;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_JSON:
			s->json = true;
			break;
		case O_FIELD:
			if (s->fields)
				return rc_usage_err(cmd, "--field given twice (several fields: "
						    "one comma-separated list)");
			s->fields = arg;
			break;
		default:
			s->name = arg;
		}
	}
	if (s->fields && s->json)
		return rc_usage_err(cmd, "--field and --json do not go together");
	if (s->fields && check_fields(s->fields))
		return RC_EXIT_USAGE;
	if (want_name && !s->name)
		return rc_usage_err(cmd, "missing the device NAME");
	return -1;
}

/* The device as one JSON object on stdout, all or nothing.  0 or an exit code. */
static int print_json(const struct rc_dev *d)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int r;

	/* all or nothing: a name that is not UTF-8 prints no partial object */
	r = f ? rc_dev_print_json(f, d, "") : RC_EXIT_FAIL;
	if (f && fclose(f))
		r = RC_EXIT_FAIL;
	if (!f || (!r && !text))
		rc_err("status: out of memory");
	else if (!r)
		printf("%s\n", text);
	free(text);
	return r;
}

/* The values of a checked --field list, one a line, in its order. */
static void print_fields(const struct rc_dev *d, const char *list)
{
	char key[32], value[64];
	const char *p = list;
	size_t len;

	while (p) {
		p = next_key(p, key, sizeof(key), &len);
		if (!rc_dev_field(d, key, value, sizeof(value)))
			printf("%s\n", value);
	}
}

int cmd_status(int argc, char **argv)
{
	struct status_args s = { 0 };
	struct rc_dev d;
	int r;

	r = parse(argc, argv, "status", status_help, status_opts, true, &s);
	if (r >= 0)
		return r;
	r = rc_dev_read(s.name, &d, false);
	if (r) {
		rc_dev_free(&d);
		return r;
	}
	if (s.json)
		r = print_json(&d);
	else if (s.fields)
		print_fields(&d, s.fields);
	else
		rc_dev_print_human(stdout, &d);
	rc_dev_free(&d);
	return r;
}

int cmd_list(int argc, char **argv)
{
	struct status_args s = { 0 };
	char **names, **p;
	size_t n = 0, len = 0;
	char *text = NULL;
	FILE *out = stdout;
	int r;

	r = parse(argc, argv, "list", list_help, list_opts, false, &s);
	if (r >= 0)
		return r;
	r = rc_dm_list_names(&names);
	if (r)
		return r;
	/* --json: the array is printed once whole (a bad name fails it all) */
	if (s.json) {
		out = open_memstream(&text, &len);
		if (!out) {
			rc_dm_free_names(names);
			rc_err("list: out of memory");
			return RC_EXIT_FAIL;
		}
		fputs("[", out);
	}
	for (p = names; *p; p++) {
		struct rc_dev d;
		char size[32], ext[32], pres[64];

		/* A device may vanish meanwhile; others are not ours to show. */
		if (rc_dev_read(*p, &d, true)) {
			rc_dev_free(&d);
			continue;
		}
		if (s.json) {
			fputs(n ? ",\n  " : "\n  ", out);
			r = rc_dev_print_json(out, &d, "  ");
			if (r) {
				rc_dev_free(&d);
				break;
			}
		} else {
			if (!n)
				printf("%-20s %10s %8s %22s  %s\n", "NAME", "SIZE", "EXTENT",
				       "PRESENT/TOTAL", "STATE");
			rc_fmt_size(d.sectors * 512, size, sizeof(size));
			rc_fmt_size((uint64_t)d.extent_sectors * 512, ext, sizeof(ext));
			snprintf(pres, sizeof(pres), "%" PRIu64 "/%" PRIu64 " (%.1f%%)", d.present,
				 d.total, d.total ? 100.0 * (double)d.present / (double)d.total : 100.0);
			printf("%-20s %10s %8s %22s  %s\n", d.name, size, ext, pres, rc_dev_state(&d));
		}
		n++;
		rc_dev_free(&d);
	}
	rc_dm_free_names(names);
	if (!s.json) {
		if (!n)
			printf("no remote-cow devices\n");
		return RC_EXIT_OK;
	}
	fputs(n ? "\n]\n" : "]\n", out);
	if (fclose(out) && !r) {
		rc_err("list: out of memory");
		r = RC_EXIT_FAIL;
	}
	if (!r)
		fputs(text, stdout);
	free(text);
	return r;
}
