/* SPDX-License-Identifier: GPL-2.0 */
/*
 * remote-cow(8): the user's tool for remote-cow devices.  Shared
 * declarations of its parts, one job per file:
 *
 *   main.c          command dispatch, --help, --version
 *   util.c          messages, exit codes, sizes, JSON strings, option parsing
 *   layout.c        the COW device layout (the kernel's formula)
 *   dm.c            libdevmapper: create, remove, table, status, message
 *   kmsg.c          the kernel log lines a refused request left behind
 *   devinfo.c       a remote-cow device's table and status, parsed
 *   cmd-create.c    create
 *   cmd-remove.c    remove
 *   cmd-status.c    status, list
 *   cmd-cow-size.c  cow-size
 *   cmd-hydrate.c   hydrate
 *   cmd-commit.c    commit
 *   cmd-message.c   migrate
 *   cmd-receive.c   receive
 *   md.c            read and verify a COW device's metadata
 *   cowdev.c        open a COW device that no table uses
 *   cmd-check.c     check
 *   cmd-dump.c      dump
 */
#ifndef RC_H
#define RC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rcow/crc32c.h"

#define PROG "remote-cow"
#ifndef RCOW_VERSION
#define RCOW_VERSION "0.1"
#endif

#define RC_TARGET "remote-cow"
#define RC_UUID_PREFIX "REMOTE-COW-"

/* Exit codes (documented in remote-cow(8)). */
enum {
	RC_EXIT_OK = 0,
	RC_EXIT_FAIL = 1,	/* the operation failed (kernel, device-mapper, I/O) */
	RC_EXIT_USAGE = 2,	/* bad command line: option, size, URI */
	RC_EXIT_NODEV = 3,	/* no such device */
	RC_EXIT_NOTRC = 4,	/* the device is not a remote-cow device */
	RC_EXIT_COWSMALL = 5,	/* the COW device is too small */
	RC_EXIT_UNSUPP = 6,	/* the kernel does not support it (yet) */
	RC_EXIT_BUSY = 7,	/* another one is running (a snapshot commit) */
};

/* ---- util.c ---- */
void rc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rc_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "remote-cow CMD: <msg>" and the hint to run --help; returns RC_EXIT_USAGE. */
int rc_usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A size: digits with an optional suffix K, M, G, T, P (powers of 1024,
 * optionally followed by "iB" or "B") or "s" (512-byte sectors); plain
 * digits are bytes.  0 or -1 (with *why set to a reason).
 */
int rc_parse_size(const char *text, uint64_t *out, const char **why);
/* An unsigned decimal integer, no sign, no suffix, at most max. */
int rc_parse_uint(const char *text, uint64_t max, uint64_t *out);
/* "64 KiB", "1.5 GiB": exact binary units when they divide, else 1 decimal. */
void rc_fmt_size(uint64_t bytes, char *buf, size_t len);
/*
 * A JSON string literal of s (quotes included) on f: '"', '\\' and control
 * bytes escaped, UTF-8 as it is.  -1 (nothing printed) if s is not valid
 * UTF-8 (RFC 3629): JSON cannot carry such bytes, and the callers refuse
 * rather than print a name that is not the device's.
 */
int rc_json_str(FILE *f, const char *s);
bool rc_utf8_valid(const char *s);
/* s for a message: control bytes, '\\' and bytes >= 0x7f as \xNN. */
void rc_print_bytes(FILE *f, const char *s);

/* A command's option table for rc_next_arg (getopt_long), ended by a NULL name. */
struct rc_opt {
	const char *name;	/* long name without "--" */
	bool has_arg;
	int id;			/* > 0 */
	char short_name;	/* its one-letter form ('v' for -v), or 0 */
};
#define RC_MAX_OPTS 16

/*
 * Walk argv[1..] with getopt_long: options (--name, --name=value, --name
 * value, any unique prefix of a name; -x, -xVALUE, -x VALUE, grouped -ab)
 * and positional arguments, in order ("--" ends options).  Every command
 * takes -h and --help (not in opts): they print a->help.  Returns the option id, 0 for
 * a positional argument (in *arg), -1 at the end, or RC_ARG_EXIT when the
 * command is done and exits with a->status: after --help (RC_EXIT_OK), or
 * after printing a usage error (RC_EXIT_USAGE: an unknown option, a
 * missing or stray option value, an ambiguous prefix, more than max_args
 * positional arguments).  getopt_long keeps its walk in libc's globals
 * (optind): one walk at a time, started with a zeroed rc_args.
 */
#define RC_ARG_EXIT (-2)
struct rc_args {
	int argc;
	char **argv;
	const char *cmd;	/* the command's name, for messages */
	const char *help;	/* its --help text */
	int max_args;		/* positional arguments it takes */
	/* the walk's state: zero to start */
	int i;			/* next argv index (0: start at 1) */
	int nargs;		/* positional arguments so far */
	bool no_more_opts;
	int status;		/* with RC_ARG_EXIT: the exit code */
};
int rc_next_arg(struct rc_args *a, const struct rc_opt *opts, const char **arg);

/* ---- layout.c ---- */
struct rc_layout {
	uint32_t extent_sectors;
	uint64_t dev_sectors;
	uint64_t nr_extents;
	uint64_t bitmap_blocks;		/* per bitmap */
	uint64_t metadata_sectors;	/* superblock + bitmaps */
	uint64_t data_offset;		/* sectors */
	uint64_t cow_sectors;		/* data_offset + dev_sectors */
};
void rc_layout_compute(uint64_t dev_sectors, uint32_t extent_sectors, struct rc_layout *l);

/* ---- crc32c (librcow's) ---- */
/*
 * The kernel's crc32c(crc, buf, len): the register in and out, no
 * inversions; librcow's rcow_crc32c() is the standard form.
 */
static inline uint32_t rc_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return ~rcow_crc32c(~crc, buf, len);
}

/* ---- md.c ---- */
/* A COW device's metadata as read (remote_cow_disk.h), host byte order. */
struct rc_md {
	uint64_t dev_bytes;		/* size of the device or file */
	bool formatted;			/* false: block 0 is all zeroes */
	bool layout_ok;			/* the superblock locates the bitmaps */
	bool io_error;
	uint32_t magic, version, flags, block_size, extent_sectors, nr_bitmaps, base_uri_len;
	uint64_t dev_sectors, nr_extents, data_offset, bitmap_start, bitmap_blocks, generation;
	uint64_t commit_started;	/* last snapshot commit generation frozen */
	uint64_t commit_done;		/* last one completed (0: none) */
	uint32_t epoch[5];		/* per bitmap: the epoch its blocks must carry */
	char base_uri[1024];
	/*
	 * Per bitmap, from each block's valid copy of the bitmap's epoch with
	 * the highest sequence; a block with valid copies of other epochs only
	 * reads as zeroes (the set was cleared by an epoch bump).
	 */
	uint8_t *bits[5];
	uint64_t count[5];		/* bits set */
	uint64_t cleared[5];		/* blocks that read as zeroes by their epoch */
	uint64_t max_seq;		/* highest commit sequence of a valid copy */
	uint64_t damage;		/* findings that make the metadata unusable */
	uint64_t torn;			/* copies torn by a crash (not damage) */
};
/*
 * Read and verify the metadata on fd (dev_bytes long; 0: unknown): one
 * line per finding on out ("damage: ..." or "note: ..."; NULL: silent),
 * per bitmap block details on verbose (NULL: none).  0, or -1 after an I/O
 * error (printed).  Free with rc_md_free().
 */
int rc_md_read(int fd, uint64_t dev_bytes, struct rc_md *md, FILE *out, FILE *verbose);
bool rc_md_test(const struct rc_md *md, unsigned int bitmap, uint64_t extent);
void rc_md_free(struct rc_md *md);
const char *rc_md_bitmap_name(unsigned int bitmap);
/* crc32c of bytes 4..4095 of a metadata block, xor the block type's constant. */
uint32_t rc_md_block_csum(const void *block, uint32_t xor);
/* Rewrite the superblock without needs_check (fd open for writing).  0 or -1 (printed). */
int rc_md_clear_needs_check(int fd, struct rc_md *md);

/* ---- cowdev.c ---- */
/*
 * Open a COW device or image file exclusively (refused while a table or a
 * mount holds it, naming the holder).  0 or an exit code (printed).
 */
int rc_cow_open(const char *cmd, const char *path, bool writable, int *fd, uint64_t *bytes);
/*
 * rc_cow_open(), then rc_md_read() with out and verbose: 0 with *fd open
 * and *md read (the caller frees and closes both), or an exit code with
 * nothing left open.
 */
int rc_cow_load(const char *cmd, const char *path, bool writable, struct rc_md *md,
		FILE *out, FILE *verbose, int *fd);

/* ---- dm.c ---- */
void rc_dm_init(void);
/* 1 exists, 0 does not, -1 error (printed). */
struct rc_dm_info {
	bool exists;
	bool suspended;
	bool read_only;
	int open_count;
	uint32_t major, minor;
	uint32_t event_nr;	/* dm events raised so far (dmsetup wait) */
	char uuid[130];
};
int rc_dm_info(const char *name, struct rc_dm_info *info);

/* One target of a table or status: start, length, type, params. */
struct rc_dm_target {
	uint64_t start, length;
	char *type;
	char *params;
};
struct rc_dm_table {
	struct rc_dm_target *t;
	size_t n;
};
/* task: DM_DEVICE_TABLE or DM_DEVICE_STATUS.  0 or an exit code (printed). */
int rc_dm_get(const char *name, int task, struct rc_dm_table *out);
void rc_dm_table_free(struct rc_dm_table *t);

/* Every dm device name; 0 or an exit code.  *names is NULL-terminated. */
int rc_dm_list_names(char ***names);
void rc_dm_free_names(char **names);

int rc_dm_create(const char *name, const char *uuid, uint64_t length, const char *params,
		 bool read_only);
int rc_dm_remove(const char *name, bool force, uint64_t length);
/*
 * Send a target message.  0, or an exit code after printing
 * "what: the kernel refused ...: <strerror>" and the kernel's log lines.
 */
int rc_dm_message(const char *name, const char *msg, const char *what);
/*
 * The same, saying why in the command's words: the first of texts (ended
 * by a NULL text) whose err is the kernel's errno gives the message (a
 * format with one %s, the device name, printed after "what: " and followed
 * by the errno's text) and the exit code.  *err (may be NULL): the errno,
 * 0 if accepted.
 */
struct rc_errno_text {
	int err;
	const char *text;
	int exit_code;
};
int rc_dm_message_ex(const char *name, const char *msg, const char *what,
		     const struct rc_errno_text *texts, int *err);
/* The prefixes of the target's kernel log lines about NAME (rc_kmsg_*). */
void rc_dm_log_needles(const char *name, char *by_dev, size_t dev_len, char *by_name,
		       size_t name_len);
/*
 * Wait until NAME's dm event counter is past event_nr (from rc_dm_info),
 * or timeout_ms.  0 either way (read the state again), RC_EXIT_NODEV when
 * the device is gone, RC_EXIT_FAIL after printing why.
 */
int rc_dm_wait_event(const char *name, uint32_t event_nr, unsigned int timeout_ms);

/* ---- kmsg.c ---- */
/* Start watching the kernel log (-1 if it cannot be read). */
int rc_kmsg_open(void);
/* Print the new kernel log lines that contain any of the needles (NULL-terminated). */
void rc_kmsg_report(int fd, const char *const *needles);
/*
 * Read the new kernel log lines; the last that contains one of the needles
 * and also want goes to buf, else the last with one of the needles (want
 * NULL: the last with a needle).  true if there was one.
 */
bool rc_kmsg_last(int fd, const char *const *needles, const char *want, char *buf, size_t len);
void rc_kmsg_close(int fd);

/* ---- devinfo.c ---- */
struct rc_dev {
	char name[128];
	char uuid[130];
	uint32_t major, minor;
	bool suspended;
	int open_count;
	uint64_t sectors;
	/* table */
	char cow[64];
	uint32_t extent_sectors;
	char *base_uri;
	uint64_t fault_timeout_ms;
	bool discard_passdown;
	/* status */
	uint64_t present, total, written, faults;
	char helper[16];
	char commit_state[32];		/* idle, uploading, done, failed */
	uint64_t commit_done, commit_total;	/* extents uploaded / frozen */
	uint64_t commit_gen;		/* the last commit started (0: none, or old status) */
	char migrate_state[32];
	uint64_t migrate_done, migrate_total;
	char hydrate_state[32];
	char metadata_mode[16];
	char *status_line;	/* the raw target status */
};
/*
 * Read a device's table and status.  0, or an exit code after printing
 * why (RC_EXIT_NODEV, RC_EXIT_NOTRC, RC_EXIT_FAIL).  quiet_notrc: return
 * RC_EXIT_NOTRC without a message (list).
 */
int rc_dev_read(const char *name, struct rc_dev *d, bool quiet_notrc);
void rc_dev_free(struct rc_dev *d);
/*
 * Parse a target status line into d's status fields (and status_line, a
 * copy): the layout with commit_gen (12 fields) or the one before it (11).
 * 0, or -1 if it is not a remote-cow status line.
 */
int rc_dev_parse_status(struct rc_dev *d, const char *params);
/*
 * NAME must be a remote-cow device: rc_dev_read() (same messages and exit
 * codes), keeping only d's fixed-size fields (base_uri and status_line are
 * freed, also on failure).  0 or an exit code (printed).
 */
int rc_dev_check(const char *name, struct rc_dev *d);
/* "partial", "complete", "hydrating", "suspended", "ro", "fail" */
const char *rc_dev_state(const struct rc_dev *d);
/*
 * The device as a JSON object.  0, or an exit code (RC_EXIT_FAIL) after
 * printing why on stderr when one of its strings (name, COW device, base
 * URI, status line) is not UTF-8; f then holds a partial object.
 */
int rc_dev_print_json(FILE *f, const struct rc_dev *d, const char *indent);
void rc_dev_print_human(FILE *f, const struct rc_dev *d);
/*
 * The status line's fields by name (status --field): those of
 * Documentation/remote-cow.rst's table, each done/total pair as two
 * (present, total; commit_done, commit_total; ...).
 */
bool rc_dev_field_known(const char *key);
/* Their names, space-separated, in the status line's order, into buf. */
void rc_dev_field_names(char *buf, size_t len);
/* d's field KEY as text into buf.  0, or -1 if KEY is not a field. */
int rc_dev_field(const struct rc_dev *d, const char *key, char *buf, size_t len);

/* ---- cmd-create.c, shared with cow-size ---- */
/* An --extent-size value (NULL: the default, 64K).  0 or an exit code (printed). */
int rc_parse_extent(const char *cmd, const char *text, uint32_t *sectors);
/* Device length: --size, else the base's size.  0 or an exit code (printed). */
int rc_device_sectors(const char *cmd, const char *size, const char *uri, const char *config,
		      uint64_t *sectors);
/* A base URI's form.  0 or an exit code (printed). */
int rc_check_uri(const char *cmd, const char *uri);

/* ---- cmd-receive.c, shared with migrate ---- */
#define RC_RUN_DIR "/run/remote-cowd"	/* remote-cowd --run-dir's default */
/*
 * Write a root-only file RUN_DIR/migrate/FILE (directory 0700, file 0600,
 * replaced if it exists) with text; its path into path.  0 or -errno.
 */
int rc_put_secret(const char *run_dir, const char *file, const char *text, size_t len,
		  char *path, size_t cap);
/*
 * A PSK file's text, read once (mig_psk_read(): at most MIG_PSK_FILE_MAX
 * bytes, psktool's format) into text, which has room for
 * MIG_PSK_FILE_MAX + 1 bytes.  0, or RC_EXIT_USAGE after printing why
 * (missing, unreadable, too large, not a PSK file).
 */
int rc_read_psk(const char *cmd, const char *file, char *text, size_t *len);
/* HOST:PORT, [IPv6]:PORT (cmd-message.c) */
bool rc_valid_hostport(const char *s);

/* ---- commands ---- */
int cmd_create(int argc, char **argv);
int cmd_receive(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_cow_size(int argc, char **argv);
int cmd_hydrate(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_dump(int argc, char **argv);

#endif
