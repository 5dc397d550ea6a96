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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rc.h"
#include "rcow/mig-proto.h"

static const char migrate_help[] =
	"Usage: " PROG " migrate NAME... --to HOST:PORT --psk FILE [--postcopy] [--wait]\n"
	"       " PROG " migrate NAME... finish [--postcopy] [--wait]\n"
	"       " PROG " migrate NAME... abort\n"
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
	"Several NAMEs migrate as one unit (a VM's disks), in one connection, to a\n"
	"destination that receives as many devices ('" PROG " receive NAME...')\n"
	"paired by position: all finish, or all abort.  Every NAME is checked\n"
	"before anything starts.  The group finishes once every NAME was told to\n"
	"finish ('migrate NAME... finish' tells each); 'abort' of any NAME aborts\n"
	"them all.\n"
	"\n"
	"Post-copy: the destination serves at once from 'finish' on, and the\n"
	"extents that only the source holds follow (fetched first when the guest\n"
	"touches them); NAME stays fenced until the last one moved.  If the source\n"
	"dies meanwhile, I/O to those extents fails on the destination with EIO.\n"
	"Chosen at the start (--postcopy with --to) or at 'finish --postcopy'.\n"
	"\n"
	"  --to HOST:PORT  the destination's listen address\n"
	"  --psk FILE      the pre-shared key\n"
	"  --wait          wait until the migration is over (with --to: until it\n"
	"                  is finished from elsewhere, or fails); exit 1 unless done;\n"
	"                  with finish in post-copy: until the destination serves\n"
	"  --postcopy      finish in post-copy (with --to: when finished later)\n"
	"  --run-dir DIR   remote-cowd's run directory (default " RC_RUN_DIR ")\n"
	"  -h, --help      this text\n";

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

/*
 * Until migrate_state is no longer copying, mirroring or finishing (nor,
 * unless serving, postcopy): 0 if done, or with serving if postcopy (the
 * destination serves, the rest follows: a finish in post-copy); else 1.
 */
static int wait_state(const char *name, bool serving)
{
	for (;;) {
		struct rc_dev d;
		int r = rc_dev_check(name, &d);
		bool pc;

		if (r)
			return r;
		pc = !strcmp(d.migrate_state, "postcopy");
		if (strcmp(d.migrate_state, "copying") && strcmp(d.migrate_state, "mirroring") &&
		    strcmp(d.migrate_state, "finishing") && (serving || !pc)) {
			printf("migrate %s: %s%s\n", name, d.migrate_state,
			       pc ? " (the destination serves; the rest follows)" : "");
			return !strcmp(d.migrate_state, "done") || pc ? RC_EXIT_OK : RC_EXIT_FAIL;
		}
		usleep(100000);
	}
}

/* wait_state() of each NAME; the first failure's code. */
static int wait_all(char **names, int n, bool serving)
{
	int r = 0;

	for (int i = 0; i < n; i++) {
		int e = wait_state(names[i], serving);

		if (!r)
			r = e;
	}
	return r;
}

/*
 * Every NAME a remote-cow device (exit 3, 4) and, to start a migration, in
 * no migration (exit 7).  Checked before anything is written or sent.
 */
static int check_all(char **names, int n, bool to_send)
{
	static const char *const busy[] = { "incoming", "copying", "mirroring", "finishing",
					    "postcopy", "done" };

	for (int i = 0; i < n; i++) {
		struct rc_dev d;
		int r = rc_dev_check(names[i], &d);

		if (r) {
			if (n > 1)
				rc_note("migrate: nothing started (every device is checked first)");
			return r;
		}
		for (size_t k = 0; to_send && k < sizeof(busy) / sizeof(busy[0]); k++)
			if (!strcmp(d.migrate_state, busy[k])) {
				rc_err("migrate %s: %s (migrate_state %s)%s", names[i],
				       !strcmp(busy[k], "done") ? "the device migrated away already" :
				       !strcmp(busy[k], "incoming") ? "the device is a migration's destination" :
				       "a migration is running on it", d.migrate_state,
				       n > 1 ? "; nothing started" : "");
				return RC_EXIT_BUSY;
			}
	}
	return 0;
}

/*
 * migrate NAME... --to: every device checked (check_busy: in no migration),
 * the keys (with the member lines of a group), then 'migrate send' to
 * each; a refusal aborts those already sent and takes back every key.  0
 * or an exit code.
 */
static int start_all(char **names, int n, const char *dest, const char *psk,
		     const char *run_dir, bool check_busy, bool postcopy)
{
	char keys[MIG_GROUP_MAX][PATH_MAX], msg[300];
	char *text = NULL;
	size_t len = 0;
	int r = 0, nk = 0, sent = 0, at = 0;

	if (psk) {
		text = malloc(MIG_SPEC_MAX + 1);
		if (!text) {
			rc_err("migrate: out of memory");
			return RC_EXIT_FAIL;
		}
		/* the spec's first line: post-copy at finish (mig-proto.h) */
		if (postcopy)
			at += snprintf(text + at, MIG_SPEC_MAX + 1 - (size_t)at, "postcopy\n");
		for (int i = 0; n > 1 && i < n; i++)
			at += snprintf(text + at, MIG_SPEC_MAX + 1 - (size_t)at, "member %s\n",
				       names[i]);
		r = rc_read_psk("migrate", psk, text + at, &len);
	}
	if (!r)
		r = check_all(names, n, check_busy);
	while (psk && !r && nk < n) {
		r = hand_key(names[nk], text, (size_t)at + len, run_dir, keys[nk], sizeof(keys[nk]));
		if (!r)
			nk++;
	}
	if (text) {
		explicit_bzero(text, MIG_SPEC_MAX + 1);
		free(text);
	}
	snprintf(msg, sizeof(msg), "migrate send %s", dest);
	for (; !r && sent < n; sent++) {
		r = send_msg(names[sent], msg, "migrate send");
		if (r)
			break;
	}
	if (r) {
		/* all or nothing: the ones already sent are aborted */
		for (int i = 0; i < sent; i++)
			if (!rc_dm_message(names[i], "migrate abort", "migrate abort"))
				rc_note("migrate %s: aborted (another member was refused)",
					names[i]);
		for (int i = 0; i < nk; i++)
			unlink(keys[i]);	/* refused: no migration will read them */
	}
	return r;
}

int cmd_migrate(int argc, char **argv)
{
	struct rc_args a = { .argc = argc, .argv = argv, .cmd = "migrate", .help = migrate_help,
			     .max_args = MIG_GROUP_MAX + 1 };
	const char *verb = NULL, *dest = NULL, *arg;
	const char *to = NULL, *psk = NULL, *run_dir = RC_RUN_DIR;
	char *pos[MIG_GROUP_MAX + 1], msg[300];
	bool wait = false, postcopy = false;
	int id, r, np = 0, nn;

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
			postcopy = true;
			break;
		default:
			pos[np++] = (char *)arg;
		}
	}
	nn = np;
	if (to) {
		verb = "send";
		dest = to;
		if (!psk)
			return rc_usage_err("migrate", "--to needs --psk FILE");
	} else if (np == 3 && !strcmp(pos[1], "send")) {
		verb = "send";
		dest = pos[2];
		nn = 1;
	} else if (np >= 2) {
		verb = pos[--nn];
	}
	if (!nn || !verb)
		return rc_usage_err("migrate", "expected: migrate NAME... --to HOST:PORT --psk FILE | NAME... finish | NAME... abort");
	if (nn > MIG_GROUP_MAX)
		return rc_usage_err("migrate", "at most %d devices as one unit", MIG_GROUP_MAX);
	for (int i = 0; i < nn; i++) {
		if (strlen(pos[i]) > MIG_NAME_MAX)
			return rc_usage_err("migrate", "device name longer than %d characters",
					    MIG_NAME_MAX);
		for (int k = 0; k < i; k++)
			if (!strcmp(pos[i], pos[k]))
				return rc_usage_err("migrate", "device %s named twice", pos[i]);
	}
	if (!strcmp(verb, "send")) {
		if (strlen(dest) > MIG_ADDR_MAX || !rc_valid_hostport(dest))
			return rc_usage_err("migrate", "bad destination '%s': HOST:PORT, port 1-65535",
					    dest);
		if (postcopy && !psk)
			return rc_usage_err("migrate", "--postcopy goes with the key: give --psk FILE, or 'finish --postcopy' later");
		/* 'send HOST:PORT' is the kernel's message alone: the kernel says why not */
		r = start_all(pos, nn, dest, psk, run_dir, to != NULL, postcopy);
		return r || !wait ? r : wait_all(pos, nn, false);
	}
	if (strcmp(verb, "finish") && strcmp(verb, "abort"))
		return rc_usage_err("migrate", "unknown action '%s': send, finish or abort", verb);
	if (postcopy && strcmp(verb, "finish"))
		return rc_usage_err("migrate", "--postcopy goes with --to or finish, not %s", verb);
	r = check_all(pos, nn, false);
	if (r)
		return r;
	snprintf(msg, sizeof(msg), "migrate %s%s", verb, postcopy ? " postcopy" : "");
	for (int i = 0; i < nn; i++) {
		int e = send_msg(pos[i], msg, !strcmp(verb, "finish") ? "migrate finish" :
								     "migrate abort");

		if (!r)
			r = e;
	}
	/* a finish in post-copy (asked now or at the start) is waited for until serving */
	return r || !wait || strcmp(verb, "finish") ? r : wait_all(pos, nn, true);
}
