// SPDX-License-Identifier: GPL-2.0
/*
 * test-cli.c - host tests of the remote-cow command line (TAP): the
 * shared option walk (rc_next_arg on getopt_long: long options, unique
 * prefixes, short options, the messages of each mistake), JSON strings
 * (escapes; UTF-8 passed, anything else refused) and the target's status
 * line (with commit_gen and before it), parsed and printed.  Then the real
 * binary: exit codes and messages of the top level, of check/dump's -v, of
 * commit's command line and of the PSK file of migrate and receive (missing,
 * malformed, too large: refused before any device is looked at, nothing
 * written under the run directory).
 *
 *   test-cli PATH_TO_REMOTE_COW
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rc.h"
#include "remote_cow.h"
#include "tap.h"

enum { O_COW = 1, O_CONFIG, O_JSON, O_VERBOSE, O_RATE };

static const struct rc_opt opts[] = {
	{ "cow", true, O_COW, 0 },
	{ "config", true, O_CONFIG, 0 },
	{ "json", false, O_JSON, 0 },
	{ "verbose", false, O_VERBOSE, 'v' },
	{ "rate", true, O_RATE, 'r' },
	{ NULL, false, 0, 0 },
};

/*
 * Walk "cmd ARGS..." (space-separated) with rc_next_arg and describe what
 * it returned, one token each: "cow=X", "json", "arg=X", "exit=N"; the
 * usage message (stderr) goes to msg.
 */
static void walk(const char *line, char *got, size_t glen, char *msg, size_t mlen)
{
	char buf[256], *argv[32], *save = NULL, *tok;
	int argc = 0, id, err_fd, pipefd[2];
	struct rc_args a = { .cmd = "t", .help = "", .max_args = 2 };
	const char *arg;
	size_t used = 0;
	ssize_t k;

	snprintf(buf, sizeof(buf), "t %s", line);
	for (tok = strtok_r(buf, " ", &save); tok && argc < 31; tok = strtok_r(NULL, " ", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	a.argc = argc;
	a.argv = argv;
	got[0] = msg[0] = '\0';
	fflush(stderr);
	if (pipe(pipefd))
		exit(99);
	err_fd = dup(STDERR_FILENO);
	dup2(pipefd[1], STDERR_FILENO);
	close(pipefd[1]);
	while ((id = rc_next_arg(&a, opts, &arg)) != -1) {
		const char *names[] = { "arg", "cow", "config", "json", "verbose", "rate" };

		if (id == RC_ARG_EXIT) {
			used += (size_t)snprintf(got + used, glen - used, "exit=%d ", a.status);
			break;
		}
		used += (size_t)snprintf(got + used, glen - used, arg ? "%s=%s " : "%s ",
					 names[id], arg);
	}
	fflush(stderr);
	dup2(err_fd, STDERR_FILENO);
	close(err_fd);
	k = read(pipefd[0], msg, mlen - 1);
	msg[k > 0 ? k : 0] = '\0';
	close(pipefd[0]);
	if (used)
		got[used - 1] = '\0';
}

static void opt_case(struct tap *t, const char *line, const char *want, const char *want_msg)
{
	char got[512], msg[512];

	walk(line, got, sizeof(got), msg, sizeof(msg));
	if (!tap_ok(t, !strcmp(got, want) && (!want_msg || strstr(msg, want_msg)),
		"options '%s' -> %s%s%s", line, want, want_msg ? ", " : "",
		want_msg ? want_msg : ""))
		printf("#   got: %s\n#   message: %s", got, msg);
}

static void json_case(struct tap *t, const char *in, const char *want)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int r = rc_json_str(f, in);

	fclose(f);
	if (!tap_ok(t, want ? !r && !strcmp(text, want) : r == -1 && !len,
		"json of %zu bytes -> %s", strlen(in), want ? want : "refused"))
		printf("#   got r=%d '%s'\n", r, text);
	free(text);
}

/* Parse a status line into d (zeroed first); rc_dev_parse_status's result. */
static int parse(struct rc_dev *d, const char *line)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "vm1");
	return rc_dev_parse_status(d, line);
}

/* What a printer wrote for d: "json" or "human". */
static char *printed(const struct rc_dev *d, bool json)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		exit(99);
	if (json)
		rc_dev_print_json(f, d, "");
	else
		rc_dev_print_human(f, d);
	fclose(f);
	return text;
}

static bool contains(const char *text, const char *want)
{
	if (text && strstr(text, want))
		return true;
	printf("#   expected '%s' in:\n%s\n", want, text ? text : "(nothing)");
	return false;
}

static void status_tests(struct tap *t)
{
	struct rc_dev d;
	char *out;

	/* the layout with commit_gen: 12 fields */
	tap_ok(t, !parse(&d, "128 3/64 2 1 connected uploading 5/9 4 idle 0/0 hydrating rw") &&
	       d.present == 3 && d.total == 64 && d.written == 2 && d.faults == 1 &&
	       !strcmp(d.helper, "connected") && !strcmp(d.commit_state, "uploading") &&
	       d.commit_done == 5 && d.commit_total == 9 && d.commit_gen == 4 &&
	       !strcmp(d.migrate_state, "idle") && !d.migrate_done && !d.migrate_total &&
	       !strcmp(d.hydrate_state, "hydrating") && !strcmp(d.metadata_mode, "rw"),
	   "status: 12 fields: commit state, progress and generation, the rest after them");
	out = printed(&d, true);
	tap_ok(t, contains(out, "\"commit_state\": \"uploading\",\n") &&
	       contains(out, "\"commit_done\": 5,\n") && contains(out, "\"commit_total\": 9,\n") &&
	       contains(out, "\"commit_gen\": 4,\n") &&
	       contains(out, "\"hydrate_state\": \"hydrating\",\n") &&
	       contains(out, "\"status_line\": \"128 3/64 2 1 connected uploading 5/9 4 idle 0/0 hydrating rw\""),
	   "status --json: commit_state, commit_done, commit_total, commit_gen");
	free(out);
	out = printed(&d, false);
	tap_ok(t, contains(out, "snapshot commit:   uploading 5/9 extents (55.6 %), generation 4\n") &&
	       contains(out, "hydration:         hydrating\n"),
	   "status: the commit's state, progress and generation in words");
	free(out);
	rc_dev_free(&d);

	tap_ok(t, !parse(&d, "8 64/64 64 0 absent failed 10/64 12 copying 3/7 idle fail") &&
	       !strcmp(d.commit_state, "failed") && d.commit_done == 10 && d.commit_total == 64 &&
	       d.commit_gen == 12 && !strcmp(d.migrate_state, "copying") && d.migrate_done == 3 &&
	       d.migrate_total == 7 && !strcmp(d.hydrate_state, "idle") &&
	       !strcmp(d.metadata_mode, "fail") && !strcmp(rc_dev_state(&d), "fail"),
	   "status: 12 fields: failed commit, migration progress, metadata mode last");
	rc_dev_free(&d);

	/* the layout before commit_gen: 11 fields */
	tap_ok(t, !parse(&d, "128 3/64 2 0 absent idle 0/0 idle 0/0 hydrating ro") &&
	       !strcmp(d.commit_state, "idle") && !d.commit_done && !d.commit_total &&
	       !d.commit_gen && !strcmp(d.migrate_state, "idle") &&
	       !strcmp(d.hydrate_state, "hydrating") && !strcmp(d.metadata_mode, "ro"),
	   "status: 11 fields (no commit_gen): read as before, commit_gen 0");
	out = printed(&d, true);
	tap_ok(t, contains(out, "\"commit_gen\": 0,\n") && contains(out, "\"commit_state\": \"idle\""),
	   "status --json of the old layout: commit_gen 0");
	free(out);
	out = printed(&d, false);
	tap_ok(t, contains(out, "snapshot commit:   idle 0/0 extents\n"),
	   "status: no generation shown when there is none");
	free(out);
	rc_dev_free(&d);

	/* what is not a status line */
	tap_ok(t, parse(&d, "128 3/64 2 1 connected uploading 5/9 x idle 0/0 idle rw") == -1,
	       "status: a commit_gen that is not a number is refused");
	rc_dev_free(&d);
	tap_ok(t, parse(&d, "128 3/64 2 1 connected uploading 5/x 4 idle 0/0 idle rw") == -1,
	       "status: a commit progress that is not done/total is refused");
	rc_dev_free(&d);
	tap_ok(t, parse(&d, "128 3/64 2 1 connected uploading 5/9 4 idle 0 idle rw") == -1,
	       "status: a migration progress that is not done/total is refused");
	rc_dev_free(&d);
	tap_ok(t, parse(&d, "128 3/64 2 1 rw") == -1, "status: five fields are too few");
	rc_dev_free(&d);
}

/*
 * status --field: every field of d by name, against want ("key=value ..."
 * in the status line's order, every field once).
 */
static void field_case(struct tap *t, const struct rc_dev *d, const char *want, const char *desc)
{
	char buf[512], names[512], got[512] = "", value[64];
	char *save = NULL, *key;
	size_t used = 0;

	rc_dev_field_names(names, sizeof(names));
	snprintf(buf, sizeof(buf), "%s", names);
	for (key = strtok_r(buf, " ", &save); key; key = strtok_r(NULL, " ", &save)) {
		if (rc_dev_field(d, key, value, sizeof(value)))
			snprintf(value, sizeof(value), "(unknown)");
		used += (size_t)snprintf(got + used, sizeof(got) - used, "%s%s=%s",
					 used ? " " : "", key, value);
	}
	if (!tap_ok(t, !strcmp(got, want), "status --field: %s", desc))
		printf("#   want %s\n#   got  %s\n", want, got);
}

static void field_tests(struct tap *t)
{
	/* every value distinct: a field read from another position shows */
	static const struct { const char *line, *want, *desc; } cases[] = {
		{ "128 3/64 2 1 connected uploading 5/9 4 copying 6/7 hydrating ro",
		  "extent_sectors=128 present=3 total=64 written=2 faults_in_flight=1 "
		  "helper=connected commit_state=uploading commit_done=5 commit_total=9 "
		  "commit_gen=4 migrate_state=copying migrate_done=6 migrate_total=7 "
		  "hydrate_state=hydrating metadata_mode=ro",
		  "each of the 12 fields by its name" },
		{ "8 7/11 5 6 absent done 3/4 mirroring 1/2 idle fail",
		  "extent_sectors=8 present=7 total=11 written=5 faults_in_flight=6 "
		  "helper=absent commit_state=done commit_done=3 commit_total=4 "
		  "commit_gen=0 migrate_state=mirroring migrate_done=1 migrate_total=2 "
		  "hydrate_state=idle metadata_mode=fail",
		  "the 11-field layout (no commit_gen): commit_gen 0, the rest in place" },
	};
	struct rc_dev d;
	char value[64] = "x";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tap_ok(t, !parse(&d, cases[i].line), "status --field: parse '%s'", cases[i].line);
		field_case(t, &d, cases[i].want, cases[i].desc);
		rc_dev_free(&d);
	}
	parse(&d, cases[0].line);
	tap_ok(t, rc_dev_field(&d, "faults", value, sizeof(value)) == -1 &&
	       rc_dev_field(&d, "", value, sizeof(value)) == -1 &&
	       rc_dev_field(&d, "state", value, sizeof(value)) == -1 && !strcmp(value, "x") &&
	       !rc_dev_field_known("mode") && rc_dev_field_known("metadata_mode"),
	       "status --field: a name not in the status line is unknown, nothing written");
	rc_dev_free(&d);
}

/* Run the binary; its exit status, and stdout+stderr in out. */
static int run(const char *bin, const char *const *args, char *out, size_t olen)
{
	int p[2], status;
	size_t used = 0;
	ssize_t k;
	pid_t pid;

	if (pipe(p))
		exit(99);
	pid = fork();
	if (!pid) {
		const char *argv[16] = { bin };

		for (int i = 0; i < 14 && args[i]; i++)
			argv[i + 1] = args[i];
		dup2(p[1], STDOUT_FILENO);
		dup2(p[1], STDERR_FILENO);
		execv(bin, (char **)argv);
		_exit(127);
	}
	close(p[1]);
	while (used + 1 < olen && (k = read(p[0], out + used, olen - 1 - used)) > 0)
		used += (size_t)k;
	out[used] = '\0';
	close(p[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void bin_case(struct tap *t, const char *bin, const char *const *args, int want,
		     const char *want_out)
{
	char out[8192], line[256] = "";

	for (int i = 0; args[i]; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s%s", i ? " " : "",
			 args[i]);
	int r = run(bin, args, out, sizeof(out));

	if (!tap_ok(t, r == want && strstr(out, want_out), "remote-cow %s: exit %d, '%s'", line,
		want, want_out))
		printf("#   got exit %d: %s\n", r, out);
}

static bool put_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "we");
	bool ok = f && fwrite(text, 1, len, f) == len;

	return f && !fclose(f) && ok;
}

/* migrate and receive with one PSK file: exit 2, want_msg, no run directory made. */
static void psk_case(struct tap *t, const char *bin, const char *dir, const char *psk,
		     const char *want_msg)
{
	char run[600];
	struct stat st;

	snprintf(run, sizeof(run), "%s/run", dir);
	bin_case(t, bin, (const char *const[]){ "receive", "vm1", "--cow", "/dev/null", "--base",
						"file:///x", "--listen", "127.0.0.1:7777",
						"--psk", psk, "--run-dir", run, NULL },
		 2, want_msg);
	bin_case(t, bin, (const char *const[]){ "migrate", "vm1", "--to", "10.0.0.2:7777",
						"--psk", psk, "--run-dir", run, NULL },
		 2, want_msg);
	tap_ok(t, stat(run, &st) && errno == ENOENT, "... nothing written under --run-dir");
}

/*
 * HOST:PORT up to REMOTE_COW_MAX_TARGET (259) bytes, as the kernel takes
 * it: a 253-byte name with a five-digit port gets past the address check
 * (to the missing key), one byte more is a bad address.
 */
static void target_len_tests(struct tap *t, const char *bin)
{
	char at[REMOTE_COW_MAX_TARGET + 2], over[REMOTE_COW_MAX_TARGET + 2];
	const char *psk = "/nonexistent/key.psk";

	memset(at, 'a', 253);
	strcpy(at + 253, ":65535");
	memset(over, 'a', 254);
	strcpy(over + 254, ":65535");
	tap_ok(t, strlen(at) == REMOTE_COW_MAX_TARGET, "a HOST:PORT of %zu bytes", strlen(at));
	bin_case(t, bin, (const char *const[]){ "migrate", "vm1", "--to", at, "--psk", psk, NULL },
		 2, "cannot open PSK file");
	bin_case(t, bin, (const char *const[]){ "migrate", "vm1", "--to", over, "--psk", psk,
						NULL },
		 2, "bad destination");
	bin_case(t, bin, (const char *const[]){ "receive", "vm1", "--cow", "/dev/null", "--base",
						"file:///x", "--listen", at, "--psk", psk, NULL },
		 2, "cannot open PSK file");
	bin_case(t, bin, (const char *const[]){ "receive", "vm1", "--cow", "/dev/null", "--base",
						"file:///x", "--listen", over, "--psk", psk, NULL },
		 2, "bad listen address");
}

static void psk_tests(struct tap *t, const char *bin)
{
	char *dir = tap_tmpdir(t), path[512], msg[700], big[4097];

	if (!tap_ok(t, dir != NULL, "temporary directory"))
		return;
	snprintf(path, sizeof(path), "%s/missing.psk", dir);
	snprintf(msg, sizeof(msg), ": cannot open PSK file %s: No such file or directory", path);
	psk_case(t, bin, dir, path, msg);

	snprintf(path, sizeof(path), "%s/bad.psk", dir);
	snprintf(msg, sizeof(msg), ": %s: not a PSK file: its first line is not identity:hexkey",
		 path);
	tap_ok(t, put_file(path, "alice 0011223344556677\n", 23), "a malformed PSK file");
	psk_case(t, bin, dir, path, msg);

	snprintf(path, sizeof(path), "%s/big.psk", dir);
	snprintf(msg, sizeof(msg), ": PSK file %s is too large: over 4096 bytes", path);
	memset(big, '#', sizeof(big));
	tap_ok(t, put_file(path, big, sizeof(big)), "a PSK file of 4097 bytes");
	psk_case(t, bin, dir, path, msg);
	tap_rmtree(dir);
	free(dir);
}

/*
 * Several devices as one unit: receive pairs NAMEs with --cow and --base
 * by position, so counts that differ are a usage error (exit 2), as is a
 * name given twice; nothing is read or written before.
 */
static void group_usage_tests(struct tap *t, const char *bin)
{
	bin_case(t, bin, (const char *const[]){ "receive", "a", "b", "--cow", "/dev/null", "--base",
						"file:///x", "--base", "file:///y", "--listen",
						"127.0.0.1:7777", "--psk", "/nonexistent", NULL },
		 2, "2 device names, 1 --cow, 2 --base");
	bin_case(t, bin, (const char *const[]){ "receive", "a", "--cow", "/dev/null", "--cow",
						"/dev/zero", "--base", "file:///x", "--listen",
						"127.0.0.1:7777", "--psk", "/nonexistent", NULL },
		 2, "1 device name, 2 --cow, 1 --base");
	bin_case(t, bin, (const char *const[]){ "migrate", "a", "b", "a", "--to", "10.0.0.2:7777",
						"--psk", "/nonexistent", NULL },
		 2, "device a named twice");
	bin_case(t, bin, (const char *const[]){ "migrate", "a", "b", "go", NULL },
		 2, "unknown action 'go'");
}

/*
 * status --field's command line: refused (exit 2) before any device is
 * looked at; the help names every field.
 */
static void field_usage_tests(struct tap *t, const char *bin)
{
	char names[512], msg[600], out[8192], *save = NULL, *key;
	bool all = true;

	rc_dev_field_names(names, sizeof(names));
	snprintf(msg, sizeof(msg), "remote-cow status: unknown field 'mode'; the fields are: %s",
		 names);
	bin_case(t, bin, (const char *const[]){ "status", "vm1", "--field", "mode", NULL }, 2, msg);
	bin_case(t, bin, (const char *const[]){ "status", "vm1", "--field", "present,bogus",
						NULL }, 2, "unknown field 'bogus'");
	bin_case(t, bin, (const char *const[]){ "status", "vm1", "--field=present,", NULL }, 2,
		 "an empty field name in --field 'present,'");
	bin_case(t, bin, (const char *const[]){ "status", "vm1", "--field", "present", "--json",
						NULL }, 2, "--field and --json do not go together");
	bin_case(t, bin, (const char *const[]){ "status", "vm1", "--fi", "total", "--field",
						"present", NULL }, 2, "--field given twice");
	bin_case(t, bin, (const char *const[]){ "status", "vm1", "--field", NULL }, 2,
		 "option '--field' needs a value");
	bin_case(t, bin, (const char *const[]){ "status", "--field", "total", NULL }, 2,
		 "missing the device NAME");
	bin_case(t, bin, (const char *const[]){ "list", "--field", "total", NULL }, 2,
		 "unknown option '--field'");
	run(bin, (const char *const[]){ "status", "--help", NULL }, out, sizeof(out));
	for (key = strtok_r(names, " ", &save); key; key = strtok_r(NULL, " ", &save))
		if (!strstr(out, key)) {
			printf("#   status --help lacks %s\n", key);
			all = false;
		}
	tap_ok(t, all, "status --help names every field");
}

int main(int argc, char **argv)
{
	struct tap t = { .group = "cli" };
	const char *bin = argc > 1 ? argv[1] : "./remote-cow";

	printf("TAP version 13\n");
	/* the option walk */
	opt_case(&t, "--cow X a", "cow=X arg=a", NULL);
	opt_case(&t, "--cow=X --json", "cow=X json", NULL);
	opt_case(&t, "--cow= a b", "cow= arg=a arg=b", NULL);
	opt_case(&t, "--j --ra 5 --conf=c", "json rate=5 config=c", NULL);
	opt_case(&t, "--co X", "exit=2", "option '--co' is ambiguous: --cow, --config");
	opt_case(&t, "--foo", "exit=2", "remote-cow t: unknown option '--foo'");
	opt_case(&t, "--foo=1", "exit=2", "unknown option '--foo'");
	opt_case(&t, "-x", "exit=2", "unknown option '-x'");
	opt_case(&t, "-vx", "verbose exit=2", "unknown option '-x'");
	opt_case(&t, "-v a -r 3 -r4 -vr5", "verbose arg=a rate=3 rate=4 verbose rate=5", NULL);
	opt_case(&t, "--json=1", "exit=2", "option '--json' takes no value");
	opt_case(&t, "--js=1", "exit=2", "option '--json' takes no value");
	opt_case(&t, "a --cow", "arg=a exit=2", "option '--cow' needs a value");
	opt_case(&t, "-r", "exit=2", "option '-r' needs a value");
	opt_case(&t, "a b c", "arg=a arg=b exit=2", "unexpected argument 'c'");
	opt_case(&t, "-- -v --json", "arg=-v arg=--json", NULL);
	opt_case(&t, "a - --json", "arg=a arg=- json", NULL);
	opt_case(&t, "-h", "exit=0", NULL);
	opt_case(&t, "--he", "exit=0", NULL);
	opt_case(&t, "--help=x", "exit=2", "option '--help' takes no value");
	opt_case(&t, "", "", NULL);
	/* a second walk starts over (getopt_long's state is reset) */
	opt_case(&t, "-v --cow Y", "verbose cow=Y", NULL);

	/* JSON strings */
	json_case(&t, "vm1", "\"vm1\"");
	json_case(&t, "a\"b\\c", "\"a\\\"b\\\\c\"");
	json_case(&t, "l\n\t\x01\x1f\x7f", "\"l\\n\\t\\u0001\\u001f\\u007f\"");
	json_case(&t, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x84", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x84\"");
	json_case(&t, "\xff", NULL);
	json_case(&t, "a\xe9", NULL);			/* Latin-1 */
	json_case(&t, "\xc3", NULL);			/* cut short */
	json_case(&t, "\xc0\xaf", NULL);		/* overlong '/' */
	json_case(&t, "\xe0\x80\xaf", NULL);		/* overlong, 3 bytes */
	json_case(&t, "\xed\xa0\x80", NULL);		/* a surrogate */
	json_case(&t, "\xf4\x90\x80\x80", NULL);	/* past U+10FFFF */
	json_case(&t, "\x80", NULL);			/* a lone continuation byte */
	tap_ok(&t, rc_utf8_valid("") && rc_utf8_valid("\xf4\x8f\xbf\xbf"), "utf8: empty, U+10FFFF");

	status_tests(&t);
	field_tests(&t);

	/* the binary */
	bin_case(&t, bin, (const char *const[]){ "--bogus", NULL }, 2,
		 "remote-cow: unknown option '--bogus'");
	bin_case(&t, bin, (const char *const[]){ "-x", NULL }, 2, "unknown option '-x'");
	bin_case(&t, bin, (const char *const[]){ "--vers", NULL }, 0, "remote-cow " RCOW_VERSION);
	bin_case(&t, bin, (const char *const[]){ "--he", NULL }, 0, "Usage: remote-cow COMMAND");
	bin_case(&t, bin, (const char *const[]){ "help", "dump", NULL }, 0,
		 "Usage: remote-cow dump");
	bin_case(&t, bin, (const char *const[]){ "list", "--bogus", NULL }, 2,
		 "remote-cow list: unknown option '--bogus'");
	bin_case(&t, bin, (const char *const[]){ "list", "--js=1", NULL }, 2,
		 "option '--json' takes no value");
	bin_case(&t, bin, (const char *const[]){ "create", "x", "--co", "y", NULL }, 2,
		 "ambiguous: --cow, --config");
	bin_case(&t, bin, (const char *const[]){ "check", "-v", NULL }, 2,
		 "which COW device?");
	bin_case(&t, bin, (const char *const[]){ "dump", "-v", NULL }, 2, "which COW device?");
	bin_case(&t, bin, (const char *const[]){ "cow-size", "-v", "--size", "1G", NULL }, 0,
		 "extents");
	bin_case(&t, bin, (const char *const[]){ "check", "-vx", "/nonexistent", NULL }, 2,
		 "unknown option '-x'");
	bin_case(&t, bin, (const char *const[]){ "check", "-v", "/nonexistent", NULL }, 3,
		 "/nonexistent");

	/* commit's command line, refused before any device is looked at */
	bin_case(&t, bin, (const char *const[]){ "commit", "--help", NULL }, 0,
		 "Usage: remote-cow commit NAME --to URI [--since-last] [--wait]");
	bin_case(&t, bin, (const char *const[]){ "help", "commit", NULL }, 0, "--since-last");
	bin_case(&t, bin, (const char *const[]){ "commit", NULL }, 2, "missing the device NAME");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", NULL }, 2,
		 "where to? give --to URI");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", "nbd://h/x", NULL }, 2,
		 "unexpected argument 'nbd://h/x' (the target goes after --to)");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", "--to", NULL }, 2,
		 "option '--to' needs a value");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", "--to", "ftp://h/x", NULL }, 2,
		 "remote-cow commit: bad target URI 'ftp://h/x'");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", "--to", "nbd://h/a b", NULL }, 2,
		 "bad target URI");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", "--to=file:///tmp/x", NULL }, 2,
		 "a commit goes to an NBD export (nbd://, nbds://, nbd+unix://), not to a file");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", "--abort", "--to", "nbd://h/x",
						 NULL }, 2, "--abort takes no --to or --since-last");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", "--since-last", "--wait", NULL },
		 2, "--since-last goes with --to URI");
	bin_case(&t, bin, (const char *const[]){ "commit", "vm1", "--s", "--to", "nbd://h/x",
						 "--bogus", NULL }, 2, "unknown option '--bogus'");

	field_usage_tests(&t, bin);
	psk_tests(&t, bin);
	target_len_tests(&t, bin);
	group_usage_tests(&t, bin);

	printf("1..%d\n", t.n);
	if (t.failed)
		printf("# %d of %d failed\n", t.failed, t.n);
	return t.failed ? 1 : 0;
}
