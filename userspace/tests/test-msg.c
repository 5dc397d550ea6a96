// SPDX-License-Identifier: GPL-2.0
/*
 * test-msg.c - remote_cow netlink messages: every builder parsed back,
 * and malformed messages refused.  No socket, no kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>

#include "rcow/msg.h"
#include "tap.h"

#define FAM 0x1234

struct tb {
	const struct nlattr *a[RCOW_A_MAX + 1];
	int count;
};

static int tb_cb(const struct nlattr *a, void *data)
{
	struct tb *tb = data;

	if (mnl_attr_get_type(a) <= RCOW_A_MAX)
		tb->a[mnl_attr_get_type(a)] = a;
	tb->count++;
	return MNL_CB_OK;
}

/* Parse a request the way the kernel would see it. */
static bool attrs_of(const struct nlmsghdr *nlh, uint8_t cmd, struct tb *tb)
{
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);

	memset(tb, 0, sizeof(*tb));
	if (nlh->nlmsg_type != FAM || g->cmd != cmd || g->version != REMOTE_COW_GENL_VERSION ||
	    !(nlh->nlmsg_flags & NLM_F_REQUEST))
		return false;
	return mnl_attr_parse(nlh, sizeof(*g), tb_cb, tb) >= 0;
}

static bool u32_is(const struct tb *tb, int type, uint32_t v)
{
	return tb->a[type] && mnl_attr_get_payload_len(tb->a[type]) == 4 &&
	       mnl_attr_get_u32(tb->a[type]) == v;
}

static bool u64_is(const struct tb *tb, int type, uint64_t v)
{
	return tb->a[type] && mnl_attr_get_payload_len(tb->a[type]) == 8 &&
	       mnl_attr_get_u64(tb->a[type]) == v;
}

static void test_requests(struct tap *t, void *buf)
{
	struct nlmsghdr *nlh;
	struct tb tb;

	nlh = rcow_msg_register(buf, FAM, 7);
	tap_ok(t, attrs_of(nlh, RCOW_CMD_REGISTER, &tb) && tb.count == 0 && nlh->nlmsg_seq == 7,
	       "REGISTER has no attributes");
	nlh = rcow_msg_unregister(buf, FAM, 8);
	tap_ok(t, attrs_of(nlh, RCOW_CMD_UNREGISTER, &tb) && tb.count == 0, "UNREGISTER has no attributes");

	nlh = rcow_msg_get_device(buf, FAM, 9, true, 0);
	tap_ok(t, attrs_of(nlh, RCOW_CMD_GET_DEVICE, &tb) && tb.count == 0 &&
		  (nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP, "GET_DEVICE dump sets NLM_F_DUMP, no attributes");
	nlh = rcow_msg_get_device(buf, FAM, 9, false, 42);
	tap_ok(t, attrs_of(nlh, RCOW_CMD_GET_DEVICE, &tb) && tb.count == 1 &&
		  u32_is(&tb, RCOW_A_DEV_ID, 42) && !(nlh->nlmsg_flags & NLM_F_DUMP),
	       "GET_DEVICE doit carries DEV_ID");

	nlh = rcow_msg_fill_done(buf, FAM, 10, 3, 0x1122334455667788ull, 1ull << 33, 0, EIO);
	tap_ok(t, attrs_of(nlh, RCOW_CMD_FILL_DONE, &tb) && tb.count == 4 && u32_is(&tb, RCOW_A_DEV_ID, 3) &&
		  u64_is(&tb, RCOW_A_COOKIE, 0x1122334455667788ull) &&
		  u64_is(&tb, RCOW_A_FIRST_EXTENT, 1ull << 33) && u32_is(&tb, RCOW_A_STATUS, EIO),
	       "FILL_DONE carries DEV_ID u32, COOKIE u64, FIRST_EXTENT u64, STATUS u32");
	nlh = rcow_msg_fill_done(buf, FAM, 11, 3, 5, 16, 7, 0);
	tap_ok(t, attrs_of(nlh, RCOW_CMD_FILL_DONE, &tb) && tb.count == 5 &&
		  u64_is(&tb, RCOW_A_FIRST_EXTENT, 16) && u32_is(&tb, RCOW_A_EXTENT_COUNT, 7) &&
		  u32_is(&tb, RCOW_A_STATUS, 0),
	       "FILL_DONE for a sub-range carries EXTENT_COUNT u32 too");

	{
		struct rcow_quiesce q = { .dev_id = 7, .cookie = 99 };
		struct rcow_event ev;
		struct rcow_err err = { 0 };

		nlh = rcow_msg_quiesce(buf, FAM, 12, RCOW_CMD_QUIESCE_DONE, &q);
		tap_ok(t, attrs_of(nlh, RCOW_CMD_QUIESCE_DONE, &tb) && tb.count == 2 &&
			  u32_is(&tb, RCOW_A_DEV_ID, 7) && u64_is(&tb, RCOW_A_COOKIE, 99),
		       "QUIESCE_DONE carries DEV_ID u32, COOKIE u64");
		struct rcow_run run = { 1ull << 40, 3 }, got;

		nlh = rcow_msg_get_runs(buf, FAM, 14, 7, RCOW_BITMAP_WRITTEN, 64, 0);
		tap_ok(t, attrs_of(nlh, RCOW_CMD_GET_RUNS, &tb) && tb.count == 3 &&
			  (nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP &&
			  u32_is(&tb, RCOW_A_DEV_ID, 7) && u32_is(&tb, RCOW_A_BITMAP, RCOW_BITMAP_WRITTEN) &&
			  u64_is(&tb, RCOW_A_FIRST_EXTENT, 64),
		       "GET_RUNS is a dump with DEV_ID, BITMAP, FIRST_EXTENT");
		nlh = rcow_msg_get_runs(buf, FAM, 14, 7, RCOW_BITMAP_WRITTEN, 64, 100);
		tap_ok(t, attrs_of(nlh, RCOW_CMD_GET_RUNS, &tb) && tb.count == 4 &&
			  u64_is(&tb, RCOW_A_FIRST_EXTENT, 64) && u32_is(&tb, RCOW_A_EXTENT_COUNT, 100),
		       "GET_RUNS with a count carries EXTENT_COUNT u32");
		nlh = rcow_msg_run(buf, FAM, 15, 7, RCOW_BITMAP_WRITTEN, &run);
		tap_ok(t, rcow_msg_parse_run(nlh, &got, &err) == 0 && got.first == run.first &&
			  got.count == 3, "a GET_RUNS reply parses into its run");
		run.count = 0;
		nlh = rcow_msg_run(buf, FAM, 16, 7, RCOW_BITMAP_WRITTEN, &run);
		tap_ok(t, rcow_msg_parse_run(nlh, &got, &err) == -EPROTO, "an empty run is refused (EPROTO)");
		run = (struct rcow_run){ ~0ull, 2 };
		nlh = rcow_msg_run(buf, FAM, 17, 7, RCOW_BITMAP_WRITTEN, &run);
		tap_ok(t, rcow_msg_parse_run(nlh, &got, &err) == -EPROTO,
		       "an overflowing run is refused (EPROTO)");

		nlh = rcow_msg_quiesce(buf, FAM, 13, RCOW_CMD_QUIESCE, &q);
		tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == RCOW_CMD_QUIESCE &&
			  ev.u.quiesce.dev_id == 7 && ev.u.quiesce.cookie == 99 &&
			  rcow_cmd_is_event(RCOW_CMD_QUIESCE),
		       "QUIESCE parses as an event with DEV_ID and COOKIE");
	}

	nlh = rcow_msg_hydrate(buf, FAM, 11, 5, 1ull << 40, 4096);
	tap_ok(t, attrs_of(nlh, RCOW_CMD_HYDRATE, &tb) && tb.count == 3 && u32_is(&tb, RCOW_A_DEV_ID, 5) &&
		  u64_is(&tb, RCOW_A_FIRST_EXTENT, 1ull << 40) && u32_is(&tb, RCOW_A_EXTENT_COUNT, 4096),
	       "HYDRATE carries DEV_ID, FIRST_EXTENT u64, EXTENT_COUNT u32");

	nlh = rcow_msg_get_bitmap(buf, FAM, 12, 6, RCOW_BITMAP_WRITTEN, 64);
	tap_ok(t, attrs_of(nlh, RCOW_CMD_GET_BITMAP, &tb) && tb.count == 3 && u32_is(&tb, RCOW_A_DEV_ID, 6) &&
		  u32_is(&tb, RCOW_A_BITMAP, RCOW_BITMAP_WRITTEN) && u64_is(&tb, RCOW_A_FIRST_EXTENT, 64),
	       "GET_BITMAP carries DEV_ID, BITMAP, FIRST_EXTENT");

	nlh = rcow_msg_getfamily(buf, 13, REMOTE_COW_GENL_NAME);
	{
		const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
		const struct nlattr *a = mnl_nlmsg_get_payload_offset(nlh, sizeof(*g));

		tap_ok(t, nlh->nlmsg_type == GENL_ID_CTRL && g->cmd == CTRL_CMD_GETFAMILY &&
			  mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_NAME &&
			  !strcmp(mnl_attr_get_str(a), "remote_cow"),
		       "CTRL_CMD_GETFAMILY asks for \"remote_cow\"");
	}
}

static void test_events(struct tap *t, void *buf)
{
	struct rcow_fault f = { 17, 123456789012ull, 4096, 0xdeadbeefcafef00dull, 0 };
	struct rcow_device_info d = { 0 }, d2;
	struct rcow_hydrate_ctl h = { 4, true, 0 };
	struct rcow_event ev = { 0 };
	struct rcow_err err = { 0 };
	struct nlmsghdr *nlh;
	char line[2048];

	nlh = rcow_msg_fault(buf, FAM, 0, RCOW_CMD_FAULT, &f);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == RCOW_CMD_FAULT &&
		  ev.u.fault.dev_id == 17 && ev.u.fault.first == f.first && ev.u.fault.count == 4096 &&
		  ev.u.fault.cookie == f.cookie && ev.u.fault.flags == 0, "FAULT round trip");
	f.flags = RCOW_FAULT_F_WAITING;
	nlh = rcow_msg_fault(buf, FAM, 0, RCOW_CMD_FAULT, &f);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == RCOW_CMD_FAULT &&
		  ev.u.fault.flags == RCOW_FAULT_F_WAITING, "FAULT with FLAGS waiting round trip");
	f.flags = 0;
	nlh = rcow_msg_fault(buf, FAM, 0, RCOW_CMD_PROMOTE, &f);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == RCOW_CMD_PROMOTE &&
		  rcow_cmd_is_event(RCOW_CMD_PROMOTE) && ev.u.fault.dev_id == 17 &&
		  ev.u.fault.first == f.first && ev.u.fault.count == 4096 &&
		  ev.u.fault.cookie == f.cookie, "PROMOTE round trip");

	d.dev_id = 2;
	strcpy(d.dm_name, "vm disk-1");
	strcpy(d.dm_uuid, "");
	d.cow_major = 253;
	d.cow_minor = 7;
	d.extent_sectors = 128;
	d.nr_extents = 1601;
	d.data_offset = 2048;
	d.dev_sectors = 204801;
	strcpy(d.base_uri, "nbd+unix:///e?socket=/run/s");
	d.present = 99;
	d.flags = RCOW_DEV_F_HYDRATING;
	nlh = rcow_msg_device(buf, FAM, 0, RCOW_CMD_DEVICE_ADD, &d);
	memset(&ev, 0xaa, sizeof(ev));
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == RCOW_CMD_DEVICE_ADD &&
		  ev.u.dev.dev_id == 2 && !strcmp(ev.u.dev.dm_name, "vm disk-1") &&
		  !strcmp(ev.u.dev.dm_uuid, "") && ev.u.dev.cow_major == 253 && ev.u.dev.cow_minor == 7 &&
		  ev.u.dev.extent_sectors == 128 && ev.u.dev.nr_extents == 1601 &&
		  ev.u.dev.data_offset == 2048 && ev.u.dev.dev_sectors == 204801 &&
		  !strcmp(ev.u.dev.base_uri, d.base_uri) && ev.u.dev.present == 99 &&
		  ev.u.dev.flags == RCOW_DEV_F_HYDRATING &&
		  (ev.u.dev.have & (1ull << RCOW_A_DM_UUID)),
	       "DEVICE_ADD round trip with every attribute");
	tap_ok(t, rcow_msg_parse_device(nlh, &d2, &err) == 0 && d2.nr_extents == 1601,
	       "a device record parses as a GET_DEVICE reply too");
	if (!tap_ok(t, rcow_device_info_format(&ev.u.dev, line, sizeof(line)) == 0 &&
		  !strcmp(line, "dev_id=2 name=vm\\x20disk-1 uuid= cow=253:7 extent_sectors=128 "
				"nr_extents=1601 data_offset=2048 dev_sectors=204801 present=99 "
				"flags=0x1 base_uri=nbd+unix:///e?socket=/run/s"),
	       "device line is key=value with spaces escaped"))
		tap_diag(t, "got: %s", line);
	tap_ok(t, rcow_device_info_format(&ev.u.dev, line, 20) == -ENOSPC, "device line too long for the buffer is reported");

	nlh = rcow_msg_device(buf, FAM, 0, RCOW_CMD_DEVICE_REMOVE, &d);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == RCOW_CMD_DEVICE_REMOVE &&
		  ev.u.dev.dev_id == 2 && ev.u.dev.have == (1ull << RCOW_A_DEV_ID),
	       "DEVICE_REMOVE round trip (DEV_ID only)");

	nlh = rcow_msg_hydrate_ctl(buf, FAM, 0, &h);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == RCOW_CMD_HYDRATE_CTL &&
		  ev.u.hydrate.dev_id == 4 && ev.u.hydrate.start && ev.u.hydrate.rate == 0,
	       "HYDRATE_CTL start, unlimited rate");
	h.start = false;
	nlh = rcow_msg_hydrate_ctl(buf, FAM, 0, &h);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && !ev.u.hydrate.start,
	       "HYDRATE_CTL without rate means stop");

	nlh = rcow_msg_start(buf, FAM, 200, 0, 0);
	rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, 1);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == 200,
	       "an unknown command is returned unparsed for the caller to ignore");
}

static void test_replies(struct tap *t, void *buf)
{
	uint8_t bits[3] = { 0x81, 0xff, 0x01 };
	struct rcow_bitmap_chunk c;
	struct rcow_err err = { 0 };
	struct nlmsghdr *nlh;
	uint32_t q = 0;
	uint16_t id = 0;

	nlh = rcow_msg_hydrate_reply(buf, FAM, 5, 77);
	tap_ok(t, rcow_msg_parse_hydrate_reply(nlh, &q, &err) == 0 && q == 77, "HYDRATE reply round trip");

	nlh = rcow_msg_bitmap_reply(buf, FAM, 5, 16, 17, bits, sizeof(bits));
	tap_ok(t, rcow_msg_parse_bitmap(nlh, &c, &err) == 0 && c.first == 16 && c.count == 17 &&
		  c.len == 3 && !memcmp(c.data, bits, 3), "GET_BITMAP reply round trip");
	nlh = rcow_msg_bitmap_reply(buf, FAM, 5, 16, 25, bits, sizeof(bits));
	tap_ok(t, rcow_msg_parse_bitmap(nlh, &c, &err) == -EPROTO && strstr(err.msg, "25 extents"),
	       "GET_BITMAP reply with too little data is refused");

	nlh = rcow_msg_start(buf, GENL_ID_CTRL, CTRL_CMD_NEWFAMILY, 0, 1);
	rcow_msg_put_str(nlh, CTRL_ATTR_FAMILY_NAME, "remote_cow");
	mnl_attr_put_u16(nlh, CTRL_ATTR_FAMILY_ID, 0x2a);
	tap_ok(t, rcow_msg_parse_family(nlh, &id, &err) == 0 && id == 0x2a, "family id from a controller reply");
	nlh = rcow_msg_start(buf, GENL_ID_CTRL, CTRL_CMD_NEWFAMILY, 0, 1);
	tap_ok(t, rcow_msg_parse_family(nlh, &id, &err) == -EPROTO, "controller reply without an id is refused");
}

/* Build an NLMSG_ERROR the way the kernel does with NETLINK_CAP_ACK + EXT_ACK. */
static struct nlmsghdr *make_error(void *buf, int error, uint32_t seq, const char *msg, int offs)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nlmsgerr *e;

	nlh->nlmsg_type = NLMSG_ERROR;
	nlh->nlmsg_seq = seq;
	nlh->nlmsg_flags = NLM_F_CAPPED;
	e = mnl_nlmsg_put_extra_header(nlh, sizeof(*e));
	e->error = -error;
	e->msg.nlmsg_len = 64;	/* the original request's length, not copied */
	e->msg.nlmsg_seq = seq;
	if (msg) {
		nlh->nlmsg_flags |= NLM_F_ACK_TLVS;
		mnl_attr_put_strz(nlh, NLMSGERR_ATTR_MSG, msg);
		if (offs >= 0)
			mnl_attr_put_u32(nlh, NLMSGERR_ATTR_OFFS, (uint32_t)offs);
	}
	return nlh;
}

static void test_acks(struct tap *t, void *buf)
{
	struct rcow_ack ack;
	struct rcow_err err = { 0 };

	tap_ok(t, rcow_msg_parse_ack(make_error(buf, 0, 3, NULL, -1), &ack, &err) == 0 &&
		  ack.error == 0 && ack.seq == 3 && !ack.msg[0], "plain ack");
	tap_ok(t, rcow_msg_parse_ack(make_error(buf, ENOENT, 4, NULL, -1), &ack, &err) == 0 &&
		  ack.error == ENOENT && !ack.msg[0], "refusal without extack");
	tap_ok(t, rcow_msg_parse_ack(make_error(buf, ERANGE, 5, "extent out of range", 28), &ack, &err) == 0 &&
		  ack.error == ERANGE && !strcmp(ack.msg, "extent out of range") && ack.has_offset &&
		  ack.offset == 28, "refusal with extack message and attribute offset");
}

static void test_malformed(struct tap *t, void *buf)
{
	struct rcow_event ev = { 0 };
	struct rcow_err err = { 0 };
	struct nlmsghdr *nlh;
	char big[200];

	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_FAULT, 0, 0);
	rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, 1);
	rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, 1);
	rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, 1);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO && strstr(err.msg, "cookie"),
	       "FAULT without COOKIE is refused, naming it");

	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_FAULT, 0, 0);
	rcow_msg_put_u64(nlh, RCOW_A_DEV_ID, 1);
	rcow_msg_put_u64(nlh, RCOW_A_FIRST_EXTENT, 1);
	rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, 1);
	rcow_msg_put_u64(nlh, RCOW_A_COOKIE, 1);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO && strstr(err.msg, "dev_id has 8"),
	       "u32 attribute sent as u64 is refused");

	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_FAULT, 0, 0);
	rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, 1);
	rcow_msg_put_u32(nlh, RCOW_A_FIRST_EXTENT, 1);
	rcow_msg_put_u32(nlh, RCOW_A_EXTENT_COUNT, 1);
	rcow_msg_put_u64(nlh, RCOW_A_COOKIE, 1);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO && strstr(err.msg, "first_extent has 4"),
	       "u64 attribute sent as u32 is refused");

	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_DEVICE_REMOVE, 0, 0);
	rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, 1);
	rcow_msg_put_raw(nlh, RCOW_A_DM_NAME, "abc", 3);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO && strstr(err.msg, "NUL-terminated"),
	       "string without its NUL is refused");

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_DEVICE_REMOVE, 0, 0);
	rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, 1);
	rcow_msg_put_str(nlh, RCOW_A_DM_NAME, big);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO && strstr(err.msg, "at most 127"),
	       "dm name longer than DM_NAME_LEN is refused");

	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_DEVICE_ADD, 0, 0);
	rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, 1);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO && strstr(err.msg, "DEVICE_ADD"),
	       "DEVICE_ADD without geometry is refused");

	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_DEVICE_REMOVE, 0, 0);
	rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, 9);
	rcow_msg_put_u64(nlh, 999, 1);	/* from a newer kernel */
	rcow_msg_put_raw(nlh, RCOW_A_PAD, "", 0);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.u.dev.dev_id == 9,
	       "unknown and PAD attributes are ignored");

	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_FAULT, 0, 0);
	nlh->nlmsg_len = NLMSG_HDRLEN + 2;
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO && strstr(err.msg, "too short"),
	       "message shorter than a genl header is refused");

	nlh = rcow_msg_fault(buf, FAM, 0, RCOW_CMD_FAULT, &(struct rcow_fault){ 1, 2, 3, 4, 0 });
	((struct nlattr *)((char *)nlh + NLMSG_HDRLEN + GENL_HDRLEN))->nla_len = 200;
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO,
	       "attribute length running past the message is refused");
}

static void test_names(struct tap *t)
{
	char b[16];

	tap_ok(t, rcow_attr_from_name("cookie") == RCOW_A_COOKIE && rcow_attr_from_name("COOKIE") == RCOW_A_COOKIE &&
		  rcow_attr_from_name("14") == 14 && rcow_attr_from_name("nope") == -1,
	       "attribute names and numbers");
	tap_ok(t, rcow_cmd_from_name("fill_done") == RCOW_CMD_FILL_DONE && rcow_cmd_from_name("250") == 250 &&
		  rcow_cmd_from_name("256") == -1, "command names and numbers");
	tap_ok(t, !strcmp(rcow_cmd_name(RCOW_CMD_HYDRATE_CTL, b, sizeof(b)), "HYDRATE_CTL") &&
		  !strcmp(rcow_cmd_name(77, b, sizeof(b)), "CMD_77"), "command names for printing");
	tap_ok(t, rcow_bitmap_from_name("dirty-migrate") == RCOW_BITMAP_DIRTY_MIGRATE &&
		  rcow_bitmap_from_name("7") == 7 && rcow_bitmap_from_name("x") == RCOW_NR_BITMAPS,
	       "bitmap names and numbers (out-of-range numbers pass through for refusal tests)");
	tap_ok(t, rcow_cmd_is_event(RCOW_CMD_FAULT) && rcow_cmd_is_event(RCOW_CMD_HYDRATE_CTL) &&
		  !rcow_cmd_is_event(RCOW_CMD_GET_DEVICE), "event commands");
}

/* Snapshot commit: the kernel's three events parsed, the helper's two answers built and parsed. */
static void test_commit(struct tap *t, void *buf)
{
	struct rcow_commit c, got;
	struct rcow_event ev;
	struct rcow_err err = { 0 };
	struct rcow_device_info d, d2;
	struct nlmsghdr *nlh;
	struct tb tb;

	memset(&c, 0, sizeof(c));
	c.dev_id = 4;
	c.gen = 9;
	c.flags = RCOW_COMMIT_F_SINCE_LAST;
	c.total = 123;
	snprintf(c.target_uri, sizeof(c.target_uri), "nbd://10.0.0.1/new");
	nlh = rcow_msg_commit_event(buf, FAM, 0, RCOW_CMD_COMMIT_START, &c);
	tap_ok(t, nlh && rcow_msg_parse_event(nlh, &ev, &err) == 0 &&
	       ev.cmd == RCOW_CMD_COMMIT_START && ev.u.commit.dev_id == 4 && ev.u.commit.gen == 9 &&
	       ev.u.commit.flags == RCOW_COMMIT_F_SINCE_LAST && ev.u.commit.total == 123 &&
	       !strcmp(ev.u.commit.target_uri, "nbd://10.0.0.1/new") && rcow_cmd_is_event(ev.cmd),
	       "COMMIT_START round trip");
	c.first = 77;
	c.count = 3;
	nlh = rcow_msg_commit_event(buf, FAM, 0, RCOW_CMD_PRESERVE, &c);
	tap_ok(t, nlh && rcow_msg_parse_event(nlh, &ev, &err) == 0 && ev.cmd == RCOW_CMD_PRESERVE &&
	       ev.u.commit.first == 77 && ev.u.commit.count == 3 && ev.u.commit.gen == 9 &&
	       rcow_cmd_is_event(ev.cmd), "PRESERVE round trip");
	nlh = rcow_msg_commit_event(buf, FAM, 0, RCOW_CMD_COMMIT_ABORT, &c);
	tap_ok(t, nlh && rcow_msg_parse_event(nlh, &ev, &err) == 0 &&
	       ev.cmd == RCOW_CMD_COMMIT_ABORT && ev.u.commit.gen == 9 && rcow_cmd_is_event(ev.cmd),
	       "COMMIT_ABORT round trip");
	nlh = rcow_msg_start(buf, FAM, RCOW_CMD_PRESERVE, 0, 0);
	rcow_msg_put_u32(nlh, RCOW_A_DEV_ID, 4);
	rcow_msg_put_u64(nlh, RCOW_A_COMMIT_GEN, 9);
	tap_ok(t, rcow_msg_parse_event(nlh, &ev, &err) == -EPROTO,
	       "PRESERVE without its extents is refused (%s)", err.msg);
	c.mark = RCOW_MARK_UPLOADED;
	nlh = rcow_msg_commit_mark(buf, FAM, 0, &c);
	tap_ok(t, nlh && attrs_of(nlh, RCOW_CMD_COMMIT_MARK, &tb) && tb.count == 5 &&
	       u32_is(&tb, RCOW_A_DEV_ID, 4) && u64_is(&tb, RCOW_A_COMMIT_GEN, 9) &&
	       u64_is(&tb, RCOW_A_FIRST_EXTENT, 77) && u32_is(&tb, RCOW_A_EXTENT_COUNT, 3) &&
	       u32_is(&tb, RCOW_A_MARK, RCOW_MARK_UPLOADED) &&
	       rcow_msg_parse_commit(nlh, &got, &err) == 0 && got.mark == RCOW_MARK_UPLOADED,
	       "COMMIT_MARK has dev_id, commit_gen, first_extent, extent_count, mark");
	c.status = ENOSPC;
	snprintf(c.message, sizeof(c.message), "spool full");
	nlh = rcow_msg_commit_end(buf, FAM, 0, &c);
	tap_ok(t, nlh && attrs_of(nlh, RCOW_CMD_COMMIT_END, &tb) && tb.count == 4 &&
	       u32_is(&tb, RCOW_A_STATUS, ENOSPC) && tb.a[RCOW_A_MESSAGE] &&
	       rcow_msg_parse_commit(nlh, &got, &err) == 0 && got.status == ENOSPC &&
	       !strcmp(got.message, "spool full"), "COMMIT_END has status and message");
	c.status = 0;
	c.message[0] = '\0';
	nlh = rcow_msg_commit_end(buf, FAM, 0, &c);
	tap_ok(t, nlh && attrs_of(nlh, RCOW_CMD_COMMIT_END, &tb) && tb.count == 3 &&
	       !tb.a[RCOW_A_MESSAGE], "COMMIT_END 0 without a message has no MESSAGE attribute");
	memset(&d, 0, sizeof(d));
	d.dev_id = 4;
	d.extent_sectors = 128;
	d.nr_extents = 10;
	d.dev_sectors = 1280;
	snprintf(d.base_uri, sizeof(d.base_uri), "file:///b");
	d.commit_state = RCOW_COMMIT_UPLOADING;
	d.commit_gen = 9;
	d.commit_total = 5;
	d.commit_done = 2;
	snprintf(d.target_uri, sizeof(d.target_uri), "nbd://t/x");
	nlh = rcow_msg_device(buf, FAM, 0, RCOW_CMD_GET_DEVICE, &d);
	tap_ok(t, nlh && rcow_msg_parse_device(nlh, &d2, &err) == 0 &&
	       d2.commit_state == RCOW_COMMIT_UPLOADING && d2.commit_gen == 9 &&
	       d2.commit_total == 5 && d2.commit_done == 2 && !strcmp(d2.target_uri, "nbd://t/x") &&
	       (d2.have & (1ull << RCOW_A_COMMIT_STATE)), "GET_DEVICE carries the commit state");
	tap_ok(t, rcow_bitmap_from_name("commit-upload") == RCOW_BITMAP_COMMIT_UPLOAD &&
	       !strcmp(rcow_bitmap_name(RCOW_BITMAP_COMMIT_HELD), "commit-held") &&
	       rcow_cmd_from_name("COMMIT_END") == RCOW_CMD_COMMIT_END &&
	       rcow_attr_from_name("target_uri") == RCOW_A_TARGET_URI,
	       "commit commands, attributes and sets have names");
}

void test_msg(struct tap *t)
{
	alignas(8) unsigned char buf[RCOW_MSG_BUF_SIZE];

	test_requests(t, buf);
	test_events(t, buf);
	test_replies(t, buf);
	test_acks(t, buf);
	test_malformed(t, buf);
	test_names(t);
	test_commit(t, buf);
}
