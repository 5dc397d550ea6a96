// SPDX-License-Identifier: GPL-2.0
/*
 * devinfo.c - a remote-cow device's table and status line, parsed, and
 * printed for people (status) or programs (--json).
 *
 * Table:  <cow_dev> <extent_sectors> <base_uri> [<#opt_args> <opt_arg>...]
 * Status: <extent_sectors> <present>/<total> <written> <faults_in_flight>
 *         <helper> <commit_state> <done>/<total> <commit_gen> <migrate_state>
 *         <done>/<total> <hydrate_state> <metadata_mode>
 * (Documentation/remote-cow.rst); a module from before snapshot commit
 * prints the same without <commit_gen> (11 fields).
 */
#include <inttypes.h>
#include <libdevmapper.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "rc.h"

#define MAX_FIELDS 32

static size_t split(char *s, char **f, size_t max)
{
	size_t n = 0;
	char *save = NULL, *tok;

	for (tok = strtok_r(s, " \t", &save); tok && n < max; tok = strtok_r(NULL, " \t", &save))
		f[n++] = tok;
	return n;
}

static int parse_pair(const char *s, uint64_t *a, uint64_t *b)
{
	char tmp[64];
	char *slash;

	if (strlen(s) >= sizeof(tmp))
		return -1;
	strcpy(tmp, s);
	slash = strchr(tmp, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	if (rc_parse_uint(tmp, UINT64_MAX, a) || rc_parse_uint(slash + 1, UINT64_MAX, b))
		return -1;
	return 0;
}

static void copy_field(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src);
}

static int parse_table(struct rc_dev *d, const char *params)
{
	char *buf = strdup(params), *f[MAX_FIELDS];
	size_t n, i, nopt;
	uint64_t v;
	int r = -1;

	if (!buf)
		return -1;
	n = split(buf, f, MAX_FIELDS);
	d->discard_passdown = true;
	if (n < 3)
		goto out;
	copy_field(d->cow, sizeof(d->cow), f[0]);
	if (rc_parse_uint(f[1], UINT32_MAX, &v))
		goto out;
	d->extent_sectors = (uint32_t)v;
	d->base_uri = strdup(f[2]);
	if (!d->base_uri)
		goto out;
	if (n > 3) {
		if (rc_parse_uint(f[3], MAX_FIELDS, &v))
			goto out;
		nopt = (size_t)v;
		for (i = 4; i < 4 + nopt && i < n; i++) {
			if (!strcmp(f[i], "fault_timeout") && i + 1 < n) {
				if (rc_parse_uint(f[++i], UINT64_MAX, &d->fault_timeout_ms))
					goto out;
			} else if (!strcmp(f[i], "no_discard_passdown")) {
				d->discard_passdown = false;
			} else if (!strcmp(f[i], "discard_passdown")) {
				d->discard_passdown = true;
			}
		}
	}
	r = 0;
out:
	free(buf);
	return r;
}

int rc_dev_parse_status(struct rc_dev *d, const char *params)
{
	char *buf = strdup(params), *f[MAX_FIELDS];
	size_t n, o;
	uint64_t v;
	int r = -1;

	free(d->status_line);
	d->status_line = strdup(params);
	if (!buf || !d->status_line)
		goto out;
	n = split(buf, f, MAX_FIELDS);
	if (n < 6)
		goto out;
	if (rc_parse_uint(f[0], UINT32_MAX, &v) || parse_pair(f[1], &d->present, &d->total) ||
	    rc_parse_uint(f[2], UINT64_MAX, &d->written) ||
	    rc_parse_uint(f[3], UINT64_MAX, &d->faults))
		goto out;
	d->extent_sectors = (uint32_t)v;	/* the table's, once more */
	copy_field(d->helper, sizeof(d->helper), f[4]);
	copy_field(d->metadata_mode, sizeof(d->metadata_mode), f[n - 1]);
	if (n >= 11) {
		/* 12 fields and more: commit_gen after the commit's progress */
		o = n >= 12 ? 1 : 0;
		copy_field(d->commit_state, sizeof(d->commit_state), f[5]);
		if (parse_pair(f[6], &d->commit_done, &d->commit_total))
			goto out;
		d->commit_gen = 0;
		if (o && rc_parse_uint(f[7], UINT64_MAX, &d->commit_gen))
			goto out;
		copy_field(d->migrate_state, sizeof(d->migrate_state), f[7 + o]);
		if (parse_pair(f[8 + o], &d->migrate_done, &d->migrate_total))
			goto out;
		copy_field(d->hydrate_state, sizeof(d->hydrate_state), f[9 + o]);
	}
	r = 0;
out:
	free(buf);
	return r;
}

/*
 * The status line's fields by name, in its order (Documentation/
 * remote-cow.rst, "Status"): what 'status --field' prints.
 */
enum field_kind { F_U32, F_U64, F_STR };

struct dev_field {
	const char *name;
	enum field_kind kind;
	size_t off;
};

#define FIELD(n, k, m) { n, k, offsetof(struct rc_dev, m) }
static const struct dev_field dev_fields[] = {
	FIELD("extent_sectors", F_U32, extent_sectors),
	FIELD("present", F_U64, present),
	FIELD("total", F_U64, total),
	FIELD("written", F_U64, written),
	FIELD("faults_in_flight", F_U64, faults),
	FIELD("helper", F_STR, helper),
	FIELD("commit_state", F_STR, commit_state),
	FIELD("commit_done", F_U64, commit_done),
	FIELD("commit_total", F_U64, commit_total),
	FIELD("commit_gen", F_U64, commit_gen),
	FIELD("migrate_state", F_STR, migrate_state),
	FIELD("migrate_done", F_U64, migrate_done),
	FIELD("migrate_total", F_U64, migrate_total),
	FIELD("hydrate_state", F_STR, hydrate_state),
	FIELD("metadata_mode", F_STR, metadata_mode),
};
#undef FIELD

static const struct dev_field *find_field(const char *key)
{
	for (size_t i = 0; i < sizeof(dev_fields) / sizeof(dev_fields[0]); i++)
		if (!strcmp(dev_fields[i].name, key))
			return &dev_fields[i];
	return NULL;
}

bool rc_dev_field_known(const char *key)
{
	return find_field(key) != NULL;
}

void rc_dev_field_names(char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < sizeof(dev_fields) / sizeof(dev_fields[0]) && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : "",
					 dev_fields[i].name);
}

int rc_dev_field(const struct rc_dev *d, const char *key, char *buf, size_t len)
{
	const struct dev_field *f = find_field(key);
	const char *p = (const char *)d;

	if (!f)
		return -1;
	if (f->kind == F_STR) {
		snprintf(buf, len, "%s", p + f->off);
	} else if (f->kind == F_U32) {
		uint32_t v;

		memcpy(&v, p + f->off, sizeof(v));
		snprintf(buf, len, "%" PRIu32, v);
	} else {
		uint64_t v;

		memcpy(&v, p + f->off, sizeof(v));
		snprintf(buf, len, "%" PRIu64, v);
	}
	return 0;
}

int rc_dev_read(const char *name, struct rc_dev *d, bool quiet_notrc)
{
	struct rc_dm_info info;
	struct rc_dm_table t;
	int r;

	memset(d, 0, sizeof(*d));
	copy_field(d->name, sizeof(d->name), name);
	r = rc_dm_info(name, &info);
	if (r < 0)
		return RC_EXIT_FAIL;
	if (r == 0) {
		rc_err("%s: no such device (see '" PROG " list')", name);
		return RC_EXIT_NODEV;
	}
	copy_field(d->uuid, sizeof(d->uuid), info.uuid);
	d->major = info.major;
	d->minor = info.minor;
	d->suspended = info.suspended;
	d->open_count = info.open_count;

	r = rc_dm_get(name, DM_DEVICE_TABLE, &t);
	if (r == RC_EXIT_NODEV)
		rc_err("%s: no such device", name);
	if (r)
		return r;
	if (t.n != 1 || strcmp(t.t[0].type, RC_TARGET) || t.t[0].start) {
		if (!quiet_notrc)
			rc_err("%s: not a remote-cow device (its table is %s%s)", name,
			       t.n ? "of target " : "empty", t.n ? t.t[0].type : "");
		rc_dm_table_free(&t);
		return RC_EXIT_NOTRC;
	}
	d->sectors = t.t[0].length;
	r = parse_table(d, t.t[0].params);
	rc_dm_table_free(&t);
	if (r) {
		rc_err("%s: cannot parse its table line", name);
		return RC_EXIT_FAIL;
	}

	r = rc_dm_get(name, DM_DEVICE_STATUS, &t);
	if (r == RC_EXIT_NODEV)
		rc_err("%s: no such device", name);
	if (r)
		return r;
	r = t.n == 1 ? rc_dev_parse_status(d, t.t[0].params) : -1;
	rc_dm_table_free(&t);
	if (r) {
		rc_err("%s: cannot parse its status line", name);
		return RC_EXIT_FAIL;
	}
	return 0;
}

void rc_dev_free(struct rc_dev *d)
{
	free(d->base_uri);
	free(d->status_line);
	d->base_uri = NULL;
	d->status_line = NULL;
}

int rc_dev_check(const char *name, struct rc_dev *d)
{
	int r = rc_dev_read(name, d, false);

	rc_dev_free(d);
	return r;
}

const char *rc_dev_state(const struct rc_dev *d)
{
	if (d->suspended)
		return "suspended";
	if (strcmp(d->metadata_mode, "rw"))
		return d->metadata_mode;
	if (!strcmp(d->hydrate_state, "hydrating"))
		return "hydrating";
	if (d->present >= d->total)
		return "complete";
	return "partial";
}

static double pct(uint64_t a, uint64_t b)
{
	return b ? 100.0 * (double)a / (double)b : 100.0;
}

/* A string field; one that is not UTF-8 ends the object with an error. */
#define KV_STR(k, v) do { fprintf(f, "%s  \"%s\": ", indent, k); \
			  if (rc_json_str(f, v)) \
				  return not_utf8(d, k, v); \
			  fputs(",\n", f); } while (0)
#define KV_U64(k, v) fprintf(f, "%s  \"%s\": %" PRIu64 ",\n", indent, k, (uint64_t)(v))
#define KV_BOOL(k, v) fprintf(f, "%s  \"%s\": %s,\n", indent, k, (v) ? "true" : "false")

static int not_utf8(const struct rc_dev *d, const char *key, const char *value)
{
	fputs(PROG ": device '", stderr);
	rc_print_bytes(stderr, d->name);
	fprintf(stderr, "': its %s '", key);
	rc_print_bytes(stderr, value);
	fputs("' is not valid UTF-8, which JSON cannot carry; use the output without --json",
	      stderr);
	if (!strcmp(key, "name"))
		fputs(", or give the device a UTF-8 name (dmsetup rename)", stderr);
	fputc('\n', stderr);
	return RC_EXIT_FAIL;
}

int rc_dev_print_json(FILE *f, const struct rc_dev *d, const char *indent)
{
	char dev[64];

	fprintf(f, "{\n");
	KV_STR("name", d->name);
	KV_STR("uuid", d->uuid);
	snprintf(dev, sizeof(dev), "%u:%u", d->major, d->minor);
	KV_STR("dev", dev);
	KV_U64("size_bytes", d->sectors * 512);
	KV_U64("sectors", d->sectors);
	KV_U64("extent_bytes", (uint64_t)d->extent_sectors * 512);
	KV_U64("extent_sectors", d->extent_sectors);
	KV_U64("extents_total", d->total);
	KV_U64("extents_present", d->present);
	KV_U64("extents_written", d->written);
	KV_U64("faults_in_flight", d->faults);
	KV_STR("helper", d->helper);
	KV_STR("hydrate_state", d->hydrate_state);
	KV_STR("commit_state", d->commit_state);
	KV_U64("commit_done", d->commit_done);
	KV_U64("commit_total", d->commit_total);
	KV_U64("commit_gen", d->commit_gen);
	KV_STR("migrate_state", d->migrate_state);
	KV_U64("migrate_done", d->migrate_done);
	KV_U64("migrate_total", d->migrate_total);
	KV_STR("metadata_mode", d->metadata_mode);
	KV_STR("state", rc_dev_state(d));
	KV_BOOL("suspended", d->suspended);
	KV_U64("open_count", d->open_count < 0 ? 0 : (uint64_t)d->open_count);
	KV_STR("cow_dev", d->cow);
	KV_STR("base_uri", d->base_uri);
	KV_U64("fault_timeout_ms", d->fault_timeout_ms);
	KV_BOOL("discard_passdown", d->discard_passdown);
	fprintf(f, "%s  \"status_line\": ", indent);
	if (rc_json_str(f, d->status_line))
		return not_utf8(d, "status_line", d->status_line);
	fprintf(f, "\n%s}", indent);
	return 0;
}

void rc_dev_print_human(FILE *f, const struct rc_dev *d)
{
	char a[32], b[32];

	rc_fmt_size(d->sectors * 512, a, sizeof(a));
	rc_fmt_size((uint64_t)d->extent_sectors * 512, b, sizeof(b));
	fprintf(f, "%-18s %s\n", "name:", d->name);
	fprintf(f, "%-18s /dev/mapper/%s (%u:%u)%s\n", "device:", d->name, d->major, d->minor,
		d->suspended ? ", suspended" : "");
	fprintf(f, "%-18s %s\n", "state:", rc_dev_state(d));
	fprintf(f, "%-18s %s (%" PRIu64 " sectors)\n", "size:", a, d->sectors);
	fprintf(f, "%-18s %s (%u sectors)\n", "extent size:", b, d->extent_sectors);
	fprintf(f, "%-18s %" PRIu64 " of %" PRIu64 " extents (%.1f %%)\n", "present:",
		d->present, d->total, pct(d->present, d->total));
	fprintf(f, "%-18s %" PRIu64 " extents\n", "written:", d->written);
	fprintf(f, "%-18s %" PRIu64 "\n", "faults in flight:", d->faults);
	fprintf(f, "%-18s %s\n", "helper:",
		!strcmp(d->helper, "connected") ? "connected" :
		!strcmp(d->helper, "absent") ? "absent (missing extents wait for remote-cowd)" :
		d->helper);
	fprintf(f, "%-18s %s\n", "hydration:", d->hydrate_state);
	fprintf(f, "%-18s %s %" PRIu64 "/%" PRIu64 " extents", "snapshot commit:", d->commit_state,
		d->commit_done, d->commit_total);
	if (d->commit_total)
		fprintf(f, " (%.1f %%)", pct(d->commit_done, d->commit_total));
	if (d->commit_gen)
		fprintf(f, ", generation %" PRIu64, d->commit_gen);
	fputc('\n', f);
	fprintf(f, "%-18s %s %" PRIu64 "/%" PRIu64 "\n", "migration:", d->migrate_state,
		d->migrate_done, d->migrate_total);
	fprintf(f, "%-18s %s\n", "metadata:", d->metadata_mode);
	fprintf(f, "%-18s %s\n", "cow device:", d->cow);
	fprintf(f, "%-18s %s\n", "base:", d->base_uri);
	if (d->fault_timeout_ms)
		fprintf(f, "%-18s %" PRIu64 " ms\n", "fault timeout:", d->fault_timeout_ms);
	else
		fprintf(f, "%-18s none (wait for the helper)\n", "fault timeout:");
	fprintf(f, "%-18s %s\n", "discard:", d->discard_passdown ? "passdown" : "not supported");
}
