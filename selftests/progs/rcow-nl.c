// SPDX-License-Identifier: GPL-2.0
/*
 * rcow-nl - send single remote_cow generic netlink requests, well-formed or
 * deliberately not, for the selftests that check what the kernel refuses.
 *
 *   rcow-nl [--drop-caps] COMMAND [ARGS]
 *     family                          print the family id
 *     register [HOLD_SECONDS]         register, keep the socket HOLD s (0)
 *     unregister                      (from a fresh socket: the kernel refuses)
 *     devices                         dump: one line per device, key=value
 *     device DEV_ID                   one device, same format
 *     fill-done DEV_ID COOKIE FIRST STATUS [COUNT]
 *                                     (COUNT: EXTENT_COUNT, else left out)
 *     hydrate DEV_ID FIRST COUNT      prints queued=N
 *     get-bitmap DEV_ID BITMAP FIRST  prints first=F count=C bits=0110...
 *     runs DEV_ID BITMAP [FIRST [COUNT]]  dump: one line "FIRST+COUNT" per run
 *     listen [COUNT [TIMEOUT_MS]]     register and print COUNT events (a
 *                                     FAULT flagged RCOW_FAULT_F_REMOTE ends
 *                                     in " remote", a MIGRATE_FINISH with
 *                                     RCOW_MIGRATE_F_POSTCOPY in
 *                                     " postcopy")
 *     quiesce-done DEV_ID COOKIE
 *     session                         read commands from stdin, one a line,
 *                                     all on this one socket; "= STATUS"
 *                                     after each (a test's coprocess acts
 *                                     as the registered helper)
 *     raw [--dump] CMD [ATTR:TYPE[:VALUE]]...
 *           CMD and ATTR by name (fill_done, cookie) or number;
 *           TYPE u8 u16 u32 u64 str (NUL added) bytes (no NUL) hex empty
 *
 * --drop-caps drops CAP_NET_ADMIN (and everything else) from every
 * capability set before the socket is opened, so "root without
 * CAP_NET_ADMIN" can be tested without another user.
 *
 * On a kernel refusal it prints "error: ENAME (description)[: kernel's
 * extended ack text]" on stderr.  Exit status: 0 accepted, 1 refused by the
 * kernel, 2 usage error, 3 local failure (module not loaded, socket, ...).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/capability.h>
#include <linux/genetlink.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rcow/msg.h"
#include "rcow/nl.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_LOCAL 3

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rcow-nl [--drop-caps] COMMAND [ARGS]\n"
		"  family | register [HOLD_S] | unregister | devices | device DEV_ID\n"
		"  fill-done DEV_ID COOKIE FIRST STATUS [COUNT] | hydrate DEV_ID FIRST COUNT\n"
		"  get-bitmap DEV_ID BITMAP FIRST | runs DEV_ID BITMAP [FIRST [COUNT]]\n"
		"  listen [COUNT [TIMEOUT_MS]]\n"
		"  quiesce-done DEV_ID COOKIE | session (commands from stdin, one socket)\n"
		"  raw [--dump] CMD [ATTR:TYPE[:VALUE]]...   TYPE: u8 u16 u32 u64 str bytes hex empty\n"
		"Exit status: 0 accepted, 1 refused by the kernel, 2 usage, 3 local failure.\n");
}

static int drop_caps(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
	int cap;

	for (cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
			fprintf(stderr, "rcow-nl: cannot drop capability %d from the bounding set: %s\n",
				cap, strerror(errno));
			return -1;
		}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (syscall(SYS_capset, &hdr, data) < 0) {
		fprintf(stderr, "rcow-nl: cannot clear capabilities: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static bool num(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return !errno && *s && *s != '-' && !*end && *out <= max;
}

/* Print the failure and choose the exit status. */
static int fail(const struct rcow_nl *nl, const struct rcow_err *err)
{
	int k = nl ? rcow_nl_kernel_error(nl) : 0;
	char b[16];

	if (k) {
		const char *m = rcow_nl_kernel_msg(nl);

		fprintf(stderr, "error: %s (%s)%s%s\n", rcow_errno_name(k, b, sizeof(b)), strerror(k),
			*m ? ": " : "", m);
		return EXIT_REFUSED;
	}
	fprintf(stderr, "rcow-nl: %s\n", err->msg);
	return EXIT_LOCAL;
}

static int print_device(const struct rcow_device_info *d, void *data)
{
	char line[2048];

	(void)data;
	if (rcow_device_info_format(d, line, sizeof(line)))
		return -ENOSPC;
	printf("%s\n", line);
	return 0;
}

/* Generic attribute printer for raw replies and listen. */
static int print_attr(const struct nlattr *a, void *data)
{
	const char *name = rcow_attr_name(mnl_attr_get_type(a));
	const unsigned char *p = mnl_attr_get_payload(a);
	uint16_t len = mnl_attr_get_payload_len(a);

	(void)data;
	if (name)
		printf(" %s=", name);
	else
		printf(" attr%u=", mnl_attr_get_type(a));
	if (len == 4 && mnl_attr_get_type(a) != RCOW_A_BITMAP_DATA)
		printf("%u", mnl_attr_get_u32(a));
	else if (len == 8 && mnl_attr_get_type(a) != RCOW_A_BITMAP_DATA)
		printf("%llu", (unsigned long long)mnl_attr_get_u64(a));
	else if (len > 0 && p[len - 1] == '\0' && strlen((const char *)p) == (size_t)len - 1)
		printf("\"%s\"", (const char *)p);
	else
		for (uint16_t i = 0; i < len; i++)
			printf("%02x", p[i]);
	return MNL_CB_OK;
}

static int print_msg(const struct nlmsghdr *m, void *data)
{
	char b[16];

	(void)data;
	printf("%s", rcow_cmd_name(rcow_msg_cmd(m), b, sizeof(b)));
	mnl_attr_parse(m, sizeof(struct genlmsghdr), print_attr, NULL);
	printf("\n");
	return 0;
}

static bool put_typed(struct nlmsghdr *nlh, const char *spec)
{
	char *copy = strdup(spec), *type, *value;
	unsigned char bytes[2048];
	unsigned long long v;
	bool ok = false;
	size_t n = 0;
	int attr;

	if (!copy)
		return false;
	type = strchr(copy, ':');
	if (!type)
		goto bad;
	*type++ = '\0';
	value = strchr(type, ':');
	if (value)
		*value++ = '\0';
	attr = rcow_attr_from_name(copy);
	if (attr < 0) {
		fprintf(stderr, "rcow-nl: unknown attribute '%s'\n", copy);
		goto out;
	}
	if (!strcmp(type, "empty")) {
		ok = rcow_msg_put_raw(nlh, (uint16_t)attr, NULL, 0);
	} else if (!value) {
		goto bad;
	} else if (!strcmp(type, "u8") && num(value, 0xff, &v)) {
		uint8_t x = (uint8_t)v;

		ok = rcow_msg_put_raw(nlh, (uint16_t)attr, &x, 1);
	} else if (!strcmp(type, "u16") && num(value, 0xffff, &v)) {
		uint16_t x = (uint16_t)v;

		ok = rcow_msg_put_raw(nlh, (uint16_t)attr, &x, 2);
	} else if (!strcmp(type, "u32") && num(value, 0xffffffffull, &v)) {
		ok = rcow_msg_put_u32(nlh, (uint16_t)attr, (uint32_t)v);
	} else if (!strcmp(type, "u64") && num(value, ~0ull, &v)) {
		ok = rcow_msg_put_u64(nlh, (uint16_t)attr, v);
	} else if (!strcmp(type, "str")) {
		ok = rcow_msg_put_str(nlh, (uint16_t)attr, value);
	} else if (!strcmp(type, "bytes")) {
		ok = rcow_msg_put_raw(nlh, (uint16_t)attr, value, strlen(value));
	} else if (!strcmp(type, "hex")) {
		for (const char *p = value; p[0] && p[1] && n < sizeof(bytes); p += 2) {
			unsigned int x;

			if (sscanf(p, "%2x", &x) != 1)
				goto bad;
			bytes[n++] = (unsigned char)x;
		}
		if (strlen(value) != 2 * n)
			goto bad;
		ok = rcow_msg_put_raw(nlh, (uint16_t)attr, bytes, n);
	} else {
		goto bad;
	}
	if (!ok)
		fprintf(stderr, "rcow-nl: attribute '%s' does not fit the message\n", spec);
out:
	free(copy);
	return ok;
bad:
	fprintf(stderr, "rcow-nl: bad attribute '%s': write ATTR:TYPE:VALUE with TYPE u8 u16 u32 u64 str bytes hex, or ATTR:empty\n",
		spec);
	free(copy);
	return false;
}

static int cmd_raw(struct rcow_nl *nl, int argc, char **argv)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];
	struct rcow_err err = { 0 };
	struct nlmsghdr *nlh;
	bool dump = false;
	int cmd, i = 0;

	if (i < argc && !strcmp(argv[i], "--dump")) {
		dump = true;
		i++;
	}
	if (i >= argc || (cmd = rcow_cmd_from_name(argv[i])) < 0) {
		fprintf(stderr, "rcow-nl raw: give a command name or number 0-255\n");
		return EXIT_USAGE;
	}
	nlh = rcow_msg_start(buf, rcow_nl_family(nl), (uint8_t)cmd, dump ? NLM_F_DUMP : 0, 0);
	for (i++; i < argc; i++)
		if (!put_typed(nlh, argv[i]))
			return EXIT_USAGE;
	if (rcow_nl_transact(nl, nlh, print_msg, NULL, &err))
		return fail(nl, &err);
	return 0;
}

static int cmd_listen(struct rcow_nl *nl, unsigned long long count, int timeout_ms)
{
	struct rcow_err err = { 0 };
	struct rcow_event ev = { 0 };
	char b[16];
	int r;

	if (rcow_nl_register(nl, &err))
		return fail(nl, &err);
	for (unsigned long long n = 0; n < count; n++) {
		r = rcow_nl_next_event(nl, &ev, timeout_ms, &err);
		if (r == 0) {
			fprintf(stderr, "rcow-nl: no event within %d ms\n", timeout_ms);
			return EXIT_LOCAL;
		}
		if (r < 0)
			return fail(NULL, &err);
		switch (ev.cmd) {
		case RCOW_CMD_FAULT:
			printf("FAULT dev_id=%u first_extent=%llu extent_count=%u cookie=%llu%s\n",
			       ev.u.fault.dev_id, (unsigned long long)ev.u.fault.first, ev.u.fault.count,
			       (unsigned long long)ev.u.fault.cookie,
			       ev.u.fault.flags & RCOW_FAULT_F_REMOTE ? " remote" : "");
			break;
		case RCOW_CMD_DEVICE_ADD:
		case RCOW_CMD_DEVICE_REMOVE:
			printf("%s ", rcow_cmd_name(ev.cmd, b, sizeof(b)));
			print_device(&ev.u.dev, NULL);
			break;
		case RCOW_CMD_QUIESCE:
			printf("QUIESCE dev_id=%u cookie=%llu\n", ev.u.quiesce.dev_id,
			       (unsigned long long)ev.u.quiesce.cookie);
			break;
		case RCOW_CMD_COMMIT_START:
			printf("COMMIT_START dev_id=%u gen=%llu flags=%u total=%llu uri=%s\n",
			       ev.u.commit.dev_id, (unsigned long long)ev.u.commit.gen,
			       ev.u.commit.flags, (unsigned long long)ev.u.commit.total,
			       ev.u.commit.target_uri);
			break;
		case RCOW_CMD_PRESERVE:
			printf("PRESERVE dev_id=%u gen=%llu first_extent=%llu extent_count=%u\n",
			       ev.u.commit.dev_id, (unsigned long long)ev.u.commit.gen,
			       (unsigned long long)ev.u.commit.first, ev.u.commit.count);
			break;
		case RCOW_CMD_COMMIT_ABORT:
			printf("COMMIT_ABORT dev_id=%u gen=%llu\n", ev.u.commit.dev_id,
			       (unsigned long long)ev.u.commit.gen);
			break;
		case RCOW_CMD_MIGRATE_START:
		case RCOW_CMD_MIGRATE_FINISH:
		case RCOW_CMD_MIGRATE_ABORT:
		case RCOW_CMD_MIGRATE_ROUND:
		case RCOW_CMD_MIGRATE_WAITING:
			printf("%s dev_id=%u state=%u round=%llu total=%llu done=%llu target=%s%s\n",
			       rcow_cmd_name(ev.cmd, b, sizeof(b)), ev.u.dev.dev_id,
			       ev.u.dev.migrate_state, (unsigned long long)ev.u.dev.migrate_round,
			       (unsigned long long)ev.u.dev.migrate_total,
			       (unsigned long long)ev.u.dev.migrate_done, ev.u.dev.migrate_target,
			       ev.cmd == RCOW_CMD_MIGRATE_FINISH &&
			       (ev.u.dev.flags & RCOW_MIGRATE_F_POSTCOPY) ? " postcopy" : "");
			break;
		case RCOW_CMD_HYDRATE_CTL:
			if (ev.u.hydrate.start)
				printf("HYDRATE_CTL dev_id=%u start rate=%u\n", ev.u.hydrate.dev_id, ev.u.hydrate.rate);
			else
				printf("HYDRATE_CTL dev_id=%u stop\n", ev.u.hydrate.dev_id);
			break;
		default:
			printf("%s\n", rcow_cmd_name(ev.cmd, b, sizeof(b)));
		}
		fflush(stdout);
	}
	return 0;
}

static int print_run(const struct rcow_run *run, void *data)
{
	(void)data;
	printf("%llu+%llu\n", (unsigned long long)run->first, (unsigned long long)run->count);
	return 0;
}

static int dispatch(struct rcow_nl *nl, int argc, char **argv)
{
	const char *c = argv[0];
	unsigned long long a = 0, b = 0, d = 0, e = 0;
	struct rcow_device_info info = { 0 };
	struct rcow_err err = { 0 };
	int r;

#define NEED(n) do { if (argc != (n) + 1) { usage(stderr); return EXIT_USAGE; } } while (0)
#define NUM(s, max, out) do { if (!num((s), (max), (out))) { \
	fprintf(stderr, "rcow-nl: '%s' is not a number in range\n", (s)); return EXIT_USAGE; } } while (0)
	if (!strcmp(c, "family")) {
		NEED(0);
		printf("%u\n", rcow_nl_family(nl));
		return 0;
	}
	if (!strcmp(c, "register")) {
		if (argc > 2) {
			usage(stderr);
			return EXIT_USAGE;
		}
		if (argc == 2)
			NUM(argv[1], 86400, &a);
		if (rcow_nl_register(nl, &err))
			return fail(nl, &err);
		printf("registered\n");
		fflush(stdout);
		if (a)
			sleep((unsigned int)a);
		return 0;
	}
	if (!strcmp(c, "unregister")) {
		NEED(0);
		return rcow_nl_unregister(nl, &err) ? fail(nl, &err) : 0;
	}
	if (!strcmp(c, "devices")) {
		NEED(0);
		return rcow_nl_dump_devices(nl, print_device, NULL, &err) ? fail(nl, &err) : 0;
	}
	if (!strcmp(c, "device")) {
		NEED(1);
		NUM(argv[1], 0xffffffffull, &a);
		if (rcow_nl_get_device(nl, (uint32_t)a, &info, &err))
			return fail(nl, &err);
		print_device(&info, NULL);
		return 0;
	}
	if (!strcmp(c, "fill-done")) {
		struct rcow_fault f;

		if (argc != 6)
			NEED(4);
		NUM(argv[1], 0xffffffffull, &a);
		NUM(argv[2], ~0ull, &b);
		NUM(argv[3], ~0ull, &e);
		NUM(argv[4], 0xffffffffull, &d);
		f = (struct rcow_fault){ .dev_id = (uint32_t)a, .cookie = b, .first = e };
		if (argc > 5) {
			unsigned long long n;

			NUM(argv[5], 0xffffffffull, &n);
			f.count = (uint32_t)n;
		}
		return rcow_nl_fill_done(nl, &f, (uint32_t)d, &err) ? fail(nl, &err) : 0;
	}
	if (!strcmp(c, "runs")) {
		unsigned long long n = 0;
		int bm;

		if (argc < 3 || argc > 5) {
			usage(stderr);
			return EXIT_USAGE;
		}
		NUM(argv[1], 0xffffffffull, &a);
		bm = rcow_bitmap_from_name(argv[2]);
		if (argc >= 4)
			NUM(argv[3], ~0ull, &e);
		if (argc == 5)
			NUM(argv[4], 0xffffffffull, &n);
		r = rcow_nl_dump_runs(nl, (uint32_t)a, (uint32_t)bm, e, (uint32_t)n, print_run, NULL,
				      &err);
		return r ? fail(nl, &err) : 0;
	}
	if (!strcmp(c, "quiesce-done")) {
		struct rcow_quiesce q;

		NEED(2);
		NUM(argv[1], 0xffffffffull, &a);
		NUM(argv[2], ~0ull, &b);
		q = (struct rcow_quiesce){ .dev_id = (uint32_t)a, .cookie = b };
		return rcow_nl_quiesce_done(nl, &q, &err) ? fail(nl, &err) : 0;
	}
	if (!strcmp(c, "hydrate")) {
		uint32_t queued;

		NEED(3);
		NUM(argv[1], 0xffffffffull, &a);
		NUM(argv[2], ~0ull, &b);
		NUM(argv[3], 0xffffffffull, &d);
		r = rcow_nl_hydrate(nl, (uint32_t)a, b, (uint32_t)d, &queued, &err);
		if (r)
			return fail(nl, &err);
		printf("queued=%u\n", queued);
		return 0;
	}
	if (!strcmp(c, "get-bitmap")) {
		uint8_t bits[REMOTE_COW_BITMAP_CHUNK];
		uint64_t first;
		uint32_t count;
		int bm;

		NEED(3);
		NUM(argv[1], 0xffffffffull, &a);
		bm = rcow_bitmap_from_name(argv[2]);
		if (bm == RCOW_NR_BITMAPS && strcmp(argv[2], "5")) {
			NUM(argv[2], 0xffffffffull, &b);	/* any number: for refusal tests */
			bm = (int)b;
		}
		NUM(argv[3], ~0ull, &d);
		if (rcow_nl_get_bitmap(nl, (uint32_t)a, (uint32_t)bm, d, bits, sizeof(bits), &first, &count, &err))
			return fail(nl, &err);
		printf("first=%llu count=%u bits=", (unsigned long long)first, count);
		for (uint32_t i = 0; i < count; i++)
			putchar(bits[i / 8] & (1u << (i % 8)) ? '1' : '0');
		printf("\n");
		return 0;
	}
	if (!strcmp(c, "listen")) {
		if (argc > 3) {
			usage(stderr);
			return EXIT_USAGE;
		}
		a = 1;
		b = 10000;
		if (argc >= 2)
			NUM(argv[1], ~0ull, &a);
		if (argc == 3)
			NUM(argv[2], 0x7fffffff, &b);
		return cmd_listen(nl, a, (int)b);
	}
	if (!strcmp(c, "raw"))
		return cmd_raw(nl, argc - 1, argv + 1);
	fprintf(stderr, "rcow-nl: unknown command '%s'\n", c);
	usage(stderr);
	return EXIT_USAGE;
#undef NEED
#undef NUM
}

static bool known_command(const char *c);

/*
 * Commands from stdin on one socket: once "register" (or "listen") ran, the
 * later "fill-done" and "quiesce-done" come from the registered helper.
 * Diagnostics go to stdout too, so a coprocess reads one stream.
 */
static int session(struct rcow_nl *nl)
{
	char line[1024], *args[32], *save = NULL;
	int n, r;

	if (dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
		return EXIT_LOCAL;
	while (fgets(line, sizeof(line), stdin)) {
		n = 0;
		for (char *t = strtok_r(line, " \t\n", &save); t && n < 31;
		     t = strtok_r(NULL, " \t\n", &save))
			args[n++] = t;
		if (!n)
			continue;
		args[n] = NULL;
		if (!strcmp(args[0], "session") || !known_command(args[0])) {
			printf("rcow-nl: unknown session command '%s'\n", args[0]);
			r = EXIT_USAGE;
		} else if (!strcmp(args[0], "register")) {
			struct rcow_err err = { 0 };

			r = rcow_nl_register(nl, &err) ? fail(nl, &err) : 0;
		} else {
			r = dispatch(nl, n, args);
		}
		printf("= %d\n", r);
		fflush(stdout);
	}
	return 0;
}

static bool known_command(const char *c)
{
	static const char *const names[] = {
		"family", "register", "unregister", "devices", "device", "fill-done",
		"hydrate", "get-bitmap", "runs", "listen", "raw", "quiesce-done", "session",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(c, names[i]))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	struct rcow_nl *nl = NULL;
	struct rcow_err err = { 0 };
	int i = 1, r;

	if (i < argc && (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (i < argc && !strcmp(argv[i], "--drop-caps")) {
		if (drop_caps())
			return EXIT_LOCAL;
		i++;
	}
	if (i >= argc || !known_command(argv[i])) {
		if (i < argc)
			fprintf(stderr, "rcow-nl: unknown command '%s'\n", argv[i]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (rcow_nl_open(&nl, &err)) {
		fprintf(stderr, "rcow-nl: %s\n", err.msg);
		return EXIT_LOCAL;
	}
	if (!strcmp(argv[i], "session"))
		r = argc - i == 1 ? session(nl) : EXIT_USAGE;
	else
		r = dispatch(nl, argc - i, argv + i);
	rcow_nl_close(nl);
	return r;
}
