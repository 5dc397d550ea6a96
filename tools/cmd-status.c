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
	{ "json", false, O_JSON },
	{ NULL, false, 0 },
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
		rc_dev_print_json(stdout, &d, "");
		putchar('\n');
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
	size_t n = 0;
	int r;

	r = parse(argc, argv, "list", list_help, false, &name, &json);
	if (r >= 0)
		return r;
	r = rc_dm_list_names(&names);
	if (r)
		return r;
	if (json)
		fputs("[", stdout);
	for (p = names; *p; p++) {
		struct rc_dev d;
		char size[32], ext[32], pres[64];

		/* A device may vanish meanwhile; others are not ours to show. */
		if (rc_dev_read(*p, &d, true)) {
			rc_dev_free(&d);
			continue;
		}
		if (json) {
			fputs(n ? ",\n  " : "\n  ", stdout);
			rc_dev_print_json(stdout, &d, "  ");
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
	if (json)
		fputs(n ? "\n]\n" : "]\n", stdout);
	else if (!n)
		printf("no remote-cow devices\n");
	rc_dm_free_names(names);
	return RC_EXIT_OK;
}
