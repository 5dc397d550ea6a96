// SPDX-License-Identifier: GPL-2.0
/*
 * remote-cow - create, inspect and control remote-cow devices
 * (remote-cow(8)).  main.c dispatches to one file per command.
 */
#include <getopt.h>
#include <string.h>

#include "rc.h"

static const char usage[] =
	"Usage: " PROG " COMMAND [ARGS...]\n"
	"       " PROG " COMMAND --help\n"
	"       " PROG " --help | --version\n"
	"\n"
	"Create and control remote-cow devices: a local copy-on-write device over a\n"
	"remote base image, whose missing extents remote-cowd fetches on demand.\n"
	"\n"
	"Commands:\n"
	"  create NAME --cow DEV --base URI [options]   create a device\n"
	"  remove NAME [--force]                         remove a device\n"
	"  list [--json]                                 every remote-cow device\n"
	"  status NAME [--json | --field KEY[,KEY...]]   one device in detail\n"
	"  cow-size --size SIZE | --base URI [--extent-size SIZE]\n"
	"                                                bytes the COW device needs\n"
	"  hydrate NAME start [--rate MiB/s] [--wait] | hydrate NAME stop\n"
	"                                                copy every missing extent\n"
	"  commit NAME --to URI [--since-last] [--wait] | commit NAME --abort\n"
	"                                                snapshot commit\n"
	"  migrate NAME... --to HOST:PORT --psk FILE [--wait] | migrate NAME... finish|abort\n"
	"                                                live migration (source)\n"
	"  receive NAME... --cow DEV... --base URI... --listen HOST:PORT --psk FILE\n"
	"                                                live migration (destination)\n"
	"  check [--clear-needs-check] COW_DEV           verify a COW device's metadata\n"
	"  dump COW_DEV                                  print its metadata as text\n"
	"\n"
	"Exit status: 0 success, 1 failure (check, dump: damage found), 2 bad\n"
	"usage, 3 no such device, 4 not a remote-cow device, 5 COW device too\n"
	"small, 6 not supported by the kernel yet, 7 a commit is already running\n"
	"(migrate --to: a device is migrating already).\n"
	"See remote-cow(8).\n";

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "create", cmd_create },
	{ "remove", cmd_remove },
	{ "list", cmd_list },
	{ "status", cmd_status },
	{ "cow-size", cmd_cow_size },
	{ "hydrate", cmd_hydrate },
	{ "commit", cmd_commit },
	{ "migrate", cmd_migrate },
	{ "receive", cmd_receive },
	{ "check", cmd_check },
	{ "dump", cmd_dump },
};

/* "help COMMAND": the command's --help. */
static int help_for(const char *cmd)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (!strcmp(cmd, commands[i].name)) {
			char *hargv[] = { (char *)cmd, (char *)"--help", NULL };

			return commands[i].fn(2, hargv);
		}
	}
	rc_err("unknown command '%s'", cmd);
	rc_note("Try '" PROG " --help'.");
	return RC_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	/* "+": options before the command only; the command parses its own */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:hV", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage, stdout);
			return RC_EXIT_OK;
		case 'V':
			printf(PROG " " RCOW_VERSION "\n");
			return RC_EXIT_OK;
		default:
			if (optopt == 'h' || optopt == 'V')
				rc_err("option '%s' takes no value", argv[optind - 1]);
			else if (optopt)
				rc_err("unknown option '-%c'", optopt);
			else
				rc_err("unknown option '%s'", argv[optind - 1]);
			rc_note("Try '" PROG " --help'.");
			return RC_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return RC_EXIT_USAGE;
	}
	argc -= optind;
	argv += optind;
	if (!strcmp(argv[0], "help")) {
		if (argc > 1)
			return help_for(argv[1]);
		fputs(usage, stdout);
		return RC_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (!strcmp(argv[0], commands[i].name)) {
			rc_dm_init();
			return commands[i].fn(argc, argv);
		}
	}
	rc_err("unknown command '%s'", argv[0]);
	rc_note("Try '" PROG " --help'.");
	return RC_EXIT_USAGE;
}
