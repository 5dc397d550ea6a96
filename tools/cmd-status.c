// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-status.c - remote-cow status and list.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "rc.h"

static const char status_help[] =
	"Usage: " PROG " status NAME [--json]\n"
	"\n"
	"Show the remote-cow device NAME: size, extents present and written, faults\n"
	"waiting for the helper, whether a helper is connected, hydration, snapshot\n"
	"commit and migration progress, metadata mode, COW device and base.\n"
	"\n"
	"  --json      one JSON object with stable keys (remote-cow(8) lists them)\n"
	"  -h, --help  this text\n";

static const char list_help[] =
	"Usage: " PROG " list [--json]\n"
	"\n"
	"List every remote-cow device on this host (created by this tool or not):\n"
	"name, size, extent size, extents present/total and state (partial,\n"
	"complete, hydrating, suspended, ro, fail).\n"
	"\n"
	"  --json      a JSON array of the objects 'status --json' prints\n"
	"  -h, --help  this text\n";

enum { O_JSON = 1 };

static const struct rc_opt opts[] = {
	{ "json", false, O_JSON, 0 },
	{ NULL, false, 0, 0 },
};

/* Parse "[NAME] [--json]"; returns -1 to go on, else an exit code. */
static int parse(int argc, char **argv, const char *cmd, const char *help, bool want_name,
		 const char **name, bool *json)
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
			*json = true;
			break;
		default:
			*name = arg;
		}
	}
	if (want_name && !*name)
		return rc_usage_err(cmd, "missing the device NAME");
	return -1;
}

int cmd_status(int argc, char **argv)
{
	const char *name = NULL;
	bool json = false;
	struct rc_dev d;
	int r;

	r = parse(argc, argv, "status", status_help, true, &name, &json);
	if (r >= 0)
		return r;
	r = rc_dev_read(name, &d, false);
	if (r)
		return r;
	if (json) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);

		/* all or nothing: a name that is not UTF-8 prints no partial object */
		r = f ? rc_dev_print_json(f, &d, "") : RC_EXIT_FAIL;
		if (f && fclose(f))
			r = RC_EXIT_FAIL;
		if (!f || (!r && !text))
			rc_err("status: out of memory");
		else if (!r)
			printf("%s\n", text);
		free(text);
		rc_dev_free(&d);
		return r;
	} else {
		rc_dev_print_human(stdout, &d);
	}
	rc_dev_free(&d);
	return RC_EXIT_OK;
}

int cmd_list(int argc, char **argv)
{
	const char *name = NULL;
	bool json = false;
	char **names, **p;
	size_t n = 0, len = 0;
	char *text = NULL;
	FILE *out = stdout;
	int r;

	r = parse(argc, argv, "list", list_help, false, &name, &json);
	if (r >= 0)
		return r;
	r = rc_dm_list_names(&names);
	if (r)
		return r;
	/* --json: the array is printed once whole (a bad name fails it all) */
	if (json) {
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
		if (json) {
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
	if (!json) {
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
