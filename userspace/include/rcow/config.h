/* SPDX-License-Identifier: GPL-2.0 */
/*
 * remote-cowd's configuration file (remote-cowd(8) documents the format):
 *
 *   # comment
 *   connections = 4              global policy, before any section
 *   prefetch_max = 8M
 *   [nbds://images.example/]     a section: applies to every base URI
 *   tls_psk_file = /etc/...      starting with this text (longest wins)
 *   connections = 8
 *
 * Parsing is pure (text in, struct out) so it is unit-tested on the host.
 */
#ifndef RCOW_CONFIG_H
#define RCOW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "rcow/err.h"

/* Read by remote-cowd, and by the CLI for credentials, when it exists. */
#define RCOW_DEFAULT_CONFIG "/etc/remote-cow/remote-cowd.conf"

struct rcow_policy {
	uint32_t connections;		/* NBD connections per base (multi-conn) */
	uint32_t max_in_flight;		/* NBD reads in flight per base */
	uint64_t prefetch_max;		/* read-ahead window cap, bytes (0: off) */
	uint32_t retry_initial_ms;	/* first reconnection delay */
	uint32_t retry_max_ms;		/* reconnection delay cap */
	uint32_t request_timeout_ms;	/* an NBD request older than this: reconnect */
	uint32_t connect_timeout_ms;	/* a connection attempt longer than this fails */
	/* snapshot commit target down this long (no progress): the commit fails */
	uint32_t commit_retry_timeout_ms;
	/* bytes in flight per base: the measured window's cap (rcow_flow) */
	uint64_t max_window;
};

#define RCOW_POLICY_DEFAULTS { 4, 64, 64u << 20, 250, 10000, 30000, 10000, 60000, 64u << 20 }
/* The window of a base starts at (and never goes below) this, or max_window if less. */
#define RCOW_MIN_WINDOW (8u << 20)

/* Snapshot commit spool (global keys spool_dir, spool_max). */
#define RCOW_DEFAULT_SPOOL_DIR "/var/lib/remote-cowd/spool"
#define RCOW_DEFAULT_SPOOL_MAX (1ull << 30)

/*
 * Live migration (global key migrate_peer_timeout): a peer whose TCP
 * acknowledges nothing this long, data or keepalive probe, is dead.
 */
#define RCOW_DEFAULT_MIG_PEER_TIMEOUT_MS 60000u
#define RCOW_MIN_MIG_PEER_TIMEOUT_MS 1000u
#define RCOW_MAX_MIG_PEER_TIMEOUT_MS 3600000u
#define RCOW_MIG_PEER_TIMEOUT_RANGE "a duration from 1s to 1h (e.g. 30s)"

/*
 * Live migration (global key migrate_postcopy_rate): the most bytes per
 * second a post-copy destination streams in the background (the extents
 * no guest read asked for); 0: no limit.  Guest faults are never held
 * back by it.
 */
#define RCOW_MAX_MIG_POSTCOPY_RATE (1ull << 40)
#define RCOW_MIG_POSTCOPY_RATE_RANGE \
	"0 (no limit) or a rate from 1K to 1T bytes per second (e.g. 16M)"

/*
 * Live migration (global key migrate_mirror): when the source starts to
 * mirror (a guest write completes only once the destination has it).
 * auto: once the rounds stop shrinking (rcow_mirror_round()); always: from
 * the first round, so that an extent the guest rewrites goes again only
 * once per write, never in a whole round (fewer bytes, every write waits
 * about a slice from the start); throttle: once the rounds stop shrinking,
 * slow the guest's writes down instead (rcow_throttle_round()), and mirror
 * only if that does not make them shrink.
 */
enum rcow_mig_mirror {
	RCOW_MIG_MIRROR_AUTO,
	RCOW_MIG_MIRROR_ALWAYS,
	RCOW_MIG_MIRROR_THROTTLE,
};

#define RCOW_MIG_MIRROR_CHOICES "auto, always or throttle"

/* Bits of rcow_config_section.set: which policy fields the section sets. */
enum {
	RCOW_SET_CONNECTIONS = 1 << 0,
	RCOW_SET_MAX_IN_FLIGHT = 1 << 1,
	RCOW_SET_PREFETCH_MAX = 1 << 2,
	RCOW_SET_RETRY_INITIAL = 1 << 3,
	RCOW_SET_RETRY_MAX = 1 << 4,
	RCOW_SET_REQUEST_TIMEOUT = 1 << 5,
	RCOW_SET_CONNECT_TIMEOUT = 1 << 6,
	RCOW_SET_COMMIT_RETRY_TIMEOUT = 1 << 7,
	RCOW_SET_MAX_WINDOW = 1 << 8,
};

struct rcow_cred {
	char *tls_psk_file;		/* libnbd nbd_set_tls_psk_file */
	char *tls_certificates;		/* libnbd nbd_set_tls_certificates (a directory) */
	char *tls_username;		/* libnbd nbd_set_tls_username */
};

struct rcow_config_section {
	char *prefix;			/* base URI prefix */
	struct rcow_policy pol;
	unsigned int set;
	struct rcow_cred cred;
};

struct rcow_config {
	struct rcow_policy global;
	char *spool_dir;		/* NULL: RCOW_DEFAULT_SPOOL_DIR */
	uint64_t spool_max;		/* bytes */
	uint32_t mig_peer_timeout_ms;	/* migrate_peer_timeout */
	enum rcow_mig_mirror mig_mirror;	/* migrate_mirror */
	uint64_t mig_postcopy_rate;	/* migrate_postcopy_rate, bytes/s (0: no limit) */
	struct rcow_config_section *sec;
	size_t nsec;
};

void rcow_config_init(struct rcow_config *c);
/* Parse text (name is for messages).  On error c keeps what was parsed. */
int rcow_config_parse(struct rcow_config *c, const char *text, const char *name,
		      struct rcow_err *err);
/* Read (at most 1 MiB: rcow_read_small()) and parse a file. */
int rcow_config_load(struct rcow_config *c, const char *path, struct rcow_err *err);
/*
 * The file a program reads: path if given (it must exist), else
 * RCOW_DEFAULT_CONFIG when it exists, else none (c stays empty).  *used
 * is the file read, or NULL.
 */
int rcow_config_load_default(struct rcow_config *c, const char *path, const char **used,
			     struct rcow_err *err);
/*
 * The policy and credentials for a base URI: the global policy overlaid
 * by the section with the longest prefix of uri (if any).  *cred is NULL
 * when no section matches.
 */
void rcow_config_lookup(const struct rcow_config *c, const char *uri, struct rcow_policy *pol,
			const struct rcow_cred **cred);
void rcow_config_free(struct rcow_config *c);
/*
 * A migrate_peer_timeout value (config key or remote-cowd's
 * --migrate-peer-timeout): a duration within RCOW_MIN/MAX_MIG_PEER_TIMEOUT_MS,
 * else -EINVAL (RCOW_MIG_PEER_TIMEOUT_RANGE says what is expected).
 */
int rcow_parse_mig_peer_timeout(const char *v, uint32_t *ms);
/*
 * A migrate_postcopy_rate value (config key or remote-cowd's
 * --migrate-postcopy-rate): a size (rcow_parse_size(): 64K, 16M, 1G) per
 * second, 0 or from 1K to RCOW_MAX_MIG_POSTCOPY_RATE, else -EINVAL and
 * *rate unchanged (RCOW_MIG_POSTCOPY_RATE_RANGE says what is expected).
 */
int rcow_parse_mig_postcopy_rate(const char *v, uint64_t *rate);
/* A migrate_mirror value (RCOW_MIG_MIRROR_CHOICES), else -EINVAL. */
int rcow_parse_mig_mirror(const char *v, enum rcow_mig_mirror *m);
/* The spool directory: spool_dir, or RCOW_DEFAULT_SPOOL_DIR. */
const char *rcow_config_spool_dir(const struct rcow_config *c);
/*
 * For a failure to connect to uri: " (no TLS credentials are configured
 * ...)" when uri is nbds:// and cred gives neither a PSK file nor
 * certificates, else "".
 */
const char *rcow_cred_tls_hint(const char *uri, const struct rcow_cred *cred);

#endif
