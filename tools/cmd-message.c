// SPDX-License-Identifier: GPL-2.0
/*
 * cmd-message.c - remote-cow migrate: the contract messages "migrate send
 * <host:port>", "migrate finish", "migrate abort".  The kernel answers at
 * once; progress shows in 'remote-cow status'.  A kernel that does not
 * implement them yet answers EOPNOTSUPP: exit status 6.  With --psk the
 * key is first copied where remote-cowd reads it at MIGRATE_START
 * (rc_put_secret(), cmd-receive.c).  (commit: cmd-commit.c.)
 */
#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "rc.h"
#include "rcow/mig-proto.h"

static const char migrate_help[] =
	"Usage: " PROG " migrate NAME --to HOST:PORT --psk FILE [--wait]\n"
	"       " PROG " migrate NAME finish [--wait]\n"
	"       " PROG " migrate NAME abort\n"
	"       " PROG " migrate NAME send HOST:PORT [--psk FILE]\n"
	"\n"
	"Live migration of NAME to another host that shares the base, while NAME\n"
	"stays in use: remote-cowd sends the written extents in rounds to the\n"
	"destination's remote-cowd ('" PROG " receive' there), over TLS with the\n"
	"pre-shared key of FILE (GnuTLS psktool's format, the same file on both\n"
	"hosts).  Pause the guest, then 'finish': the last round, the destination\n"
	"commits, NAME then refuses writes until removed.  'abort' stops at any\n"
	"point before that: NAME is fully usable, the destination is not.\n"
	"'send HOST:PORT' is the kernel message alone (the key, if given, is\n"
	"handed to remote-cowd as with --to).  Progress: '" PROG " status'.\n"
	"\n"
	"  --to HOST:PORT  the destination's listen address\n"
	"  --psk FILE      the pre-shared key\n"
	"  --wait          wait until the migration is over (with --to: until it\n"
	"                  is finished from elsewhere, or fails); exit 1 unless done\n"
	"  --postcopy      not supported yet\n"
	"  --run-dir DIR   remote-cowd's run directory (default " RC_RUN_DIR ")\n"
	"  -h, --help      this text\n"
	"\n"
	"Several devices migrating as one unit are not supported yet.\n";

enum { O_ABORT = 1, O_TO, O_PSK, O_WAIT, O_POSTCOPY, O_RUNDIR };

static const struct rc_opt opts[] = {
	{ "abort", false, O_ABORT, 0 },
	{ "to", true, O_TO, 0 },
	{ "psk", true, O_PSK, 0 },
	{ "wait", false, O_WAIT, 0 },
	{ "postcopy", false, O_POSTCOPY, 0 },
	{ "run-dir", true, O_RUNDIR, 0 },
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

bool rc_valid_hostport(const char *s)
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

/* Copy the key where remote-cowd looks for it at MIGRATE_START.  0 or an exit code. */
static int hand_key(const char *name, const char *text, size_t len, const char *run_dir,
		    char *path, size_t cap)
{
	char file[300];
	int r;

	snprintf(file, sizeof(file), "send-%s.psk", name);
	r = rc_put_secret(run_dir, file, text, len, path, cap);
	if (r) {
		rc_err("migrate %s: cannot write the key for remote-cowd under %s: %s", name,
		       run_dir, strerror(-r));
		return RC_EXIT_FAIL;
	}
	return 0;
}

/* Until migrate_state is no longer copying/mirroring/finishing: 0 if done. */
static int wait_over(const char *name)
{
	for (;;) {
		struct rc_dev d;
		int r = rc_dev_check(name, &d);

		if (r)
			return r;
		if (strcmp(d.migrate_state, "copying") && strcmp(d.migrate_state, "mirroring") &&
		    strcmp(d.migrate_state, "finishing")) {
			printf("migrate %s: %s\n", name, d.migrate_state);
			return strcmp(d.migrate_state, "done") ? RC_EXIT_FAIL : RC_EXIT_OK;
		}
		usleep(100000);
	}
}

int cmd_migrate(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "migrate", .help = migrate_help,
			     .max_args = 3 };
	const char *name = NULL, *verb = NULL, *dest = NULL, *arg;
	const char *to = NULL, *psk = NULL, *run_dir = RC_RUN_DIR;
	bool wait = false;
	char msg[300], key[PATH_MAX] = "";
	int id, r;

	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		switch (id) {
		case RC_ARG_EXIT:
			return a.status;
		case O_ABORT:
			return rc_usage_err("migrate", "use 'migrate NAME abort'");
		case O_TO:
			to = arg;
			break;
		case O_PSK:
			psk = arg;
			break;
		case O_WAIT:
			wait = true;
			break;
		case O_RUNDIR:
			run_dir = arg;
			break;
		case O_POSTCOPY:
			rc_err("migrate: --postcopy is not supported yet");
			return RC_EXIT_FAIL;
		default:
			if (!name)
				name = arg;
			else if (!verb)
				verb = arg;
			else
				dest = arg;
		}
	}
	if (!name)
		return rc_usage_err("migrate", "expected: migrate NAME --to HOST:PORT --psk FILE | NAME finish | NAME abort");
	if (to) {
		if (verb) {
			rc_err("migrate: several devices as one unit are not supported yet ('%s')",
			       verb);
			return RC_EXIT_FAIL;
		}
		verb = "send";
		dest = to;
		if (!psk)
			return rc_usage_err("migrate", "--to needs --psk FILE");
	}
	if (!verb)
		return rc_usage_err("migrate", "expected: migrate NAME --to HOST:PORT --psk FILE | NAME finish | NAME abort");
	if (!strcmp(verb, "send")) {
		if (!dest)
			return rc_usage_err("migrate", "send needs HOST:PORT");
		if (strlen(dest) > MIG_ADDR_MAX || !rc_valid_hostport(dest))
			return rc_usage_err("migrate", "bad destination '%s': HOST:PORT, port 1-65535",
					    dest);
		if (psk) {
			char text[MIG_PSK_FILE_MAX + 1];
			size_t len;

			r = rc_read_psk("migrate", psk, text, &len);
			if (!r)
				r = rc_dev_check(name, &(struct rc_dev){ 0 });
			if (!r)
				r = hand_key(name, text, len, run_dir, key, sizeof(key));
			explicit_bzero(text, sizeof(text));
			if (r)
				return r;
		}
		snprintf(msg, sizeof(msg), "migrate send %s", dest);
		r = send_msg(name, msg, "migrate send");
		if (r && key[0])
			unlink(key);	/* refused: no migration will read it */
		return r || !wait ? r : wait_over(name);
	}
	if (strcmp(verb, "finish") && strcmp(verb, "abort"))
		return rc_usage_err("migrate", "unknown action '%s': send, finish or abort", verb);
	if (dest)
		return rc_usage_err("migrate", "unexpected argument '%s'", dest);
	snprintf(msg, sizeof(msg), "migrate %s", verb);
	r = send_msg(name, msg, !strcmp(verb, "finish") ? "migrate finish" : "migrate abort");
	return r || !wait || strcmp(verb, "finish") ? r : wait_over(name);
}
