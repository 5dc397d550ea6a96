// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-message.c - remote-cow migrate: the contract messages "migrate send
 * <host:port>", "migrate finish", "migrate abort".  The kernel answers at
 * once; progress shows in 'remote-cow status'.  A kernel that does not
 * implement them yet answers EOPNOTSUPP: exit status 6.  (commit:
 * cmd-commit.c.)
 */
#include <ctype.h>
#include <string.h>

#include "rc.h"

static const char migrate_help[] =
	"Usage: " PROG " migrate NAME send HOST:PORT\n"
	"       " PROG " migrate NAME finish\n"
	"       " PROG " migrate NAME abort\n"
	"\n"
	"Incremental migration of NAME's written extents to another host that\n"
	"shares the base.  send: start pre-copy to the receiving host's helper;\n"
	"finish: the final round, once the guest is paused; abort: stop.\n"
	"Progress: '" PROG " status'.\n"
	"\n"
	"  -h, --help  this text\n";

enum { O_ABORT = 1 };

static const struct rc_opt opts[] = {
	{ "abort", false, O_ABORT, 0 },
	{ NULL, false, 0, 0 },
};

/* Checks the device, then sends msg.  0 or an exit code. */
static int send_msg(const char *name, const char *msg, const char *what)
{
	struct rc_dev d;
	int r = rc_dev_check(name, &d);

	if (r)
		return r;
	r = rc_dm_message(name, msg, what);
	if (r == RC_EXIT_UNSUPP)
		rc_note("%s: this dm-remote-cow module does not support %s yet", what, what);
	else if (!r)
		printf("%s: '%s' accepted by %s; progress: " PROG " status %s\n", what, msg, name,
		       name);
	return r;
}

static bool valid_hostport(const char *s)
{
	const char *colon = strrchr(s, ':'), *p;
	size_t hlen;
	uint64_t port;

	if (!colon || colon == s || rc_parse_uint(colon + 1, 65535, &port) || !port)
		return false;
	hlen = (size_t)(colon - s);
	if (s[0] == '[')	/* [IPv6]:port */
		return hlen > 2 && s[hlen - 1] == ']';
	for (p = s; p < colon; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			return false;
	return true;
}

int cmd_migrate(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "migrate", .help = migrate_help,
			     .max_args = 3 };
	const char *name = NULL, *verb = NULL, *dest = NULL, *arg;
	char msg[300];
	int id;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_ABORT:
			return rc_usage_err("migrate", "use 'migrate NAME abort'");
		default:
			if (!name)
				name = arg;
			else if (!verb)
				verb = arg;
			else
				dest = arg;
		}
	}
	if (!name || !verb)
		return rc_usage_err("migrate", "expected: migrate NAME send HOST:PORT | finish | abort");
	if (!strcmp(verb, "send")) {
		if (!dest)
			return rc_usage_err("migrate", "send needs HOST:PORT");
		if (strlen(dest) > 255 || !valid_hostport(dest))
			return rc_usage_err("migrate", "bad destination '%s': HOST:PORT, port 1-65535",
					    dest);
		snprintf(msg, sizeof(msg), "migrate send %s", dest);
		return send_msg(name, msg, "migrate send");
	}
	if (strcmp(verb, "finish") && strcmp(verb, "abort"))
		return rc_usage_err("migrate", "unknown action '%s': send, finish or abort", verb);
	if (dest)
		return rc_usage_err("migrate", "unexpected argument '%s'", dest);
	snprintf(msg, sizeof(msg), "migrate %s", verb);
	return send_msg(name, msg, !strcmp(verb, "finish") ? "migrate finish" : "migrate abort");
}
