// SPDX-License-Identifier: GPL-2.0
/*
 * engine.c - remote-cowd's fill engine: devices, faults, the extents they
 * name, prefetch and background streaming (see daemon.h).  Sources do the
 * reading; the engine decides what to read, in which order, and writes
 * what was read into the COW device.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "rcow/uri.h"

/* ---- queues ------------------------------------------------------------ */

void xq_push(struct xqueue *q, struct xfer *x)
{
	x->next = NULL;
	x->prev = q->tail;
	if (q->tail)
		q->tail->next = x;
	else
		q->head = x;
	q->tail = x;
	q->n++;
}

void xq_push_front(struct xqueue *q, struct xfer *x)
{
	x->prev = NULL;
	x->next = q->head;
	if (q->head)
		q->head->prev = x;
	else
		q->tail = x;
	q->head = x;
	q->n++;
}

void xq_del(struct xqueue *q, struct xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		q->head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	else
		q->tail = x->prev;
	x->prev = x->next = NULL;
	q->n--;
}

bool engine_guest_waiting(const struct src *s)
{
	return s->q[XC_GUEST].n > 0;
}

static const char *class_name(enum xclass c)
{
	return c == XC_GUEST ? "guest" : c == XC_PREFETCH ? "prefetch" : "hydrate";
}

/* ---- sources ------------------------------------------------------------ */

static struct src *src_get(struct daemon *d, const char *uri, struct rcow_err *err)
{
	struct rcow_uri u;
	struct src *s;
	int r;

	/* sources are known by the URI in canonical form: scheme in lower case */
	r = rcow_uri_parse(uri, &u, err);
	if (r)
		return NULL;
	for (s = d->srcs; s; s = s->next)
		if (!strcmp(s->uri, u.raw)) {
			s->refs++;
			rcow_uri_free(&u);
			return s;
		}
	/* unused since this loop turn, not closed yet: keep its connections */
	for (struct src **p = &d->dead_srcs; *p; p = &(*p)->next)
		if (!strcmp((*p)->uri, u.raw)) {
			s = *p;
			*p = s->next;
			s->next = d->srcs;
			d->srcs = s;
			s->refs = 1;
			rcow_uri_free(&u);
			return s;
		}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->uri = strdup(u.raw))) {
		free(s);
		rcow_uri_free(&u);
		rcow_err_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	s->d = d;
	s->ops = u.scheme == RCOW_SCHEME_FILE ? &src_file_ops : &src_nbd_ops;
	rcow_uri_free(&u);
	rcow_config_lookup(&d->cfg, s->uri, &s->pol, &s->cred);
	if (d->opt.connections >= 0)
		s->pol.connections = (uint32_t)d->opt.connections;
	if (d->opt.max_in_flight >= 0)
		s->pol.max_in_flight = (uint32_t)d->opt.max_in_flight;
	if (d->opt.prefetch_max >= 0)
		s->pol.prefetch_max = (uint64_t)d->opt.prefetch_max;
	s->refs = 1;
	s->piece = DEFAULT_PIECE_BYTES;
	r = s->ops->open(s);
	if (r) {
		rcow_err_set(err, -r, "cannot open base %s", uri);
		free(s->uri);
		free(s);
		return NULL;
	}
	s->next = d->srcs;
	d->srcs = s;
	return s;
}

/*
 * The last device of a source went away.  This often runs inside the
 * source's own callback (a read completes, its fault is the device's
 * last), so the source is not closed here: it moves to dead_srcs, and
 * the loop closes it between turns (engine_reap_sources()).
 */
static void src_put(struct src *s)
{
	struct daemon *d = s->d;

	if (--s->refs > 0)
		return;
	for (struct src **p = &d->srcs; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	s->next = d->dead_srcs;
	d->dead_srcs = s;
}

void engine_reap_sources(struct daemon *d)
{
	struct src *s;

	while ((s = d->dead_srcs)) {
		d->dead_srcs = s->next;
		s->ops->close(s);
		vlog(d, 1, "base %s: closed (no device uses it any more)", s->uri);
		free(s->uri);
		free(s);
	}
}

/* ---- devices ------------------------------------------------------------ */

static struct device *find_device(struct daemon *d, uint32_t id)
{
	for (struct device *dev = d->devices; dev; dev = dev->next)
		if (dev->info.dev_id == id)
			return dev;
	return NULL;
}

static void dev_put(struct device *dev)
{
	if (--dev->refs > 0)
		return;
	if (dev->src)
		src_put(dev->src);
	rcow_cow_close(dev->cow);
	free(dev->bitmap);
	cookie_vec_free(&dev->quiesce);
	free(dev);
}

static void hydrate_begin(struct device *dev, uint32_t rate, bool resumed);
static void fault_put(struct fault *ft);
static int dev_open(struct daemon *d, struct device *dev);
static void quiesce_answer(struct daemon *d, struct device *dev);

/* Drop the queued (not yet issued) xfers of a device from its source. */
static void drop_queued(struct device *dev)
{
	struct src *s = dev->src;

	if (!s)
		return;
	for (int c = 0; c < XC_NR; c++) {
		struct xfer *x = s->q[c].head, *n;

		for (; x; x = n) {
			n = x->next;
			if (x->fault->dev != dev)
				continue;
			xq_del(&s->q[c], x);
			x->state = X_DONE;
			engine_xfer_done(s, x, ECANCELED);
		}
	}
}

static void unlist_device(struct daemon *d, struct device *dev)
{
	for (struct device **p = &d->devices; *p; p = &(*p)->next)
		if (*p == dev) {
			*p = dev->next;
			break;
		}
	dev->removed = true;
	dev->hydrating = false;
	commit_stop(d, dev->info.dev_id);
	mig_stop(d, dev->info.dev_id);
	atomic_fetch_add(&dev->epoch, 1);
	drop_queued(dev);
	if (dev->writes > 0) {
		/*
		 * Its writes in progress must land before any write of a device
		 * that replaces it on the same COW device (cow_busy()), but
		 * nothing waits for them here: a COW device that hangs must not
		 * stall the loop.  engine_run() lets it go once they are over.
		 */
		dev->next = d->draining;
		d->draining = dev;
		return;
	}
	quiesce_answer(d, dev);
	dev_put(dev);
}

/* A forgotten device still has COW writes in progress on dev's COW device. */
static bool cow_busy(const struct daemon *d, const struct device *dev)
{
	for (const struct device *o = d->draining; o; o = o->next)
		if (o != dev && o->writes > 0 && o->info.cow_major == dev->info.cow_major &&
		    o->info.cow_minor == dev->info.cow_minor)
			return true;
	return false;
}

/* Forgotten devices whose writes are over go; the writes parked behind them start. */
static void drain_step(struct daemon *d)
{
	struct device **p = &d->draining, *dev;
	struct xfer *x, *next;

	while ((dev = *p)) {
		if (dev->writes > 0) {
			p = &dev->next;
			continue;
		}
		*p = dev->next;
		quiesce_answer(d, dev);
		dev_put(dev);
	}
	for (x = d->parked.head; x; x = next) {
		next = x->next;
		if (cow_busy(d, x->fault->dev))
			continue;
		xq_del(&d->parked, x);
		writer_submit(d, x);
	}
}

static bool dev_inactive(const struct device *dev)
{
	return dev->info.flags & RCOW_DEV_F_INACTIVE;
}

/*
 * The device's table is live (resumed): it replaces whatever device was
 * over the same COW device, streams if asked, and opens its COW device and
 * base now rather than at the first fault (connecting to an NBD server
 * takes several round trips, which the first guest read would otherwise
 * wait for; a failure is logged and tried again at the first fault).
 */
static void dev_activate(struct daemon *d, struct device *dev)
{
	struct device *old;

	/*
	 * A table reload makes a new device id over the same COW device, and
	 * the old one's DEVICE_REMOVE may come after the new one's faults.
	 * Forget the old device now: its reads still in flight are dropped
	 * when they complete, its writes in progress land before any of the
	 * new device's (cow_busy()).
	 */
	for (old = d->devices; old; old = old->next)
		if (old != dev && !dev_inactive(old) &&
		    old->info.cow_major == dev->info.cow_major &&
		    old->info.cow_minor == dev->info.cow_minor) {
			logmsg("device %s: replaced by device id %u on the same COW device %u:%u (table reload); dropping its pending fills",
			       old->info.dm_name, dev->info.dev_id, dev->info.cow_major,
			       dev->info.cow_minor);
			unlist_device(d, old);
			break;
		}
	if (dev->info.flags & RCOW_DEV_F_HYDRATING)
		hydrate_begin(dev, dev->info.hydrate_rate, true);
	dev_open(d, dev);
}

int engine_add_device(const struct rcow_device_info *info, void *data)
{
	struct daemon *d = data;
	struct device *dev, *old;
	struct rcow_err err = { 0 };
	uint64_t eb, pfmax;

	old = find_device(d, info->dev_id);
	if (old) {
		old->seen = d->resync_gen;
		/* the same device again (a dump, or its resume): keep its state */
		if (!strcmp(old->info.base_uri, info->base_uri) &&
		    old->info.nr_extents == info->nr_extents) {
			bool was_inactive = dev_inactive(old);

			old->info.flags = info->flags;
			old->info.hydrate_rate = info->hydrate_rate;
			if (was_inactive && !dev_inactive(old)) {
				logmsg("device %s: resumed; serving it", old->info.dm_name);
				dev_activate(d, old);
			}
			commit_device(d, info);
			mig_device(d, info);
			return 0;
		}
		unlist_device(d, old);
	}
	dev = calloc(1, sizeof(*dev));
	if (!dev) {
		logmsg("out of memory adding device %u", info->dev_id);
		return -ENOMEM;
	}
	dev->d = d;
	dev->info = *info;
	dev->refs = 1;
	dev->seen = d->resync_gen;
	dev->geom = (struct rcow_geom){ info->extent_sectors, info->nr_extents, info->data_offset,
					info->dev_sectors };
	if (rcow_geom_check(&dev->geom, &err)) {
		dev->bad_geom = true;
		logmsg("device %s: the kernel reported an inconsistent geometry: %s; its faults will fail",
		       info->dm_name, err.msg);
	}
	dev->next = d->devices;
	d->devices = dev;
	d->st.devices_added++;
	logmsg("device %s: %s, %llu extents of %u KiB, base %s, COW %u:%u, %llu present",
	       info->dm_name, dev_inactive(dev) ? "loaded, not resumed yet" : "serving",
	       (unsigned long long)info->nr_extents, info->extent_sectors / 2,
	       info->base_uri, info->cow_major, info->cow_minor,
	       (unsigned long long)info->present);
	/* prefetch policy comes from the base's configuration */
	{
		struct rcow_policy pol;
		const struct rcow_cred *cr;

		rcow_config_lookup(&d->cfg, info->base_uri, &pol, &cr);
		pfmax = d->opt.prefetch_max >= 0 ? (uint64_t)d->opt.prefetch_max : pol.prefetch_max;
	}
	eb = (uint64_t)info->extent_sectors * 512;
	rcow_prefetch_init(&dev->pf, ((128u << 10) / eb) ? ((128u << 10) / eb) : 1, pfmax / eb);
	dev->pf_cap = dev->pf.max;
	/*
	 * A table loaded but not resumed (INACTIVE) neither faults nor takes
	 * fills, and the live table over the same COW device keeps being
	 * served: nothing happens until it is resumed.
	 */
	if (!dev_inactive(dev))
		dev_activate(d, dev);
	/* a commit running (found after a restart): resume it */
	if (info->commit_state == RCOW_COMMIT_UPLOADING)
		commit_device(d, info);
	mig_device(d, info);
	return 0;
}

void engine_remove_device(struct daemon *d, uint32_t dev_id)
{
	struct device *dev = find_device(d, dev_id);

	d->st.devices_removed++;
	if (!dev)
		return;
	logmsg("device %s: removed; forgetting it", dev->info.dm_name);
	unlist_device(d, dev);
}

/* Open the COW device and the base on first use.  0 or positive errno. */
static int dev_open(struct daemon *d, struct device *dev)
{
	struct rcow_err err = { 0 };

	if (dev->bad_geom)
		return EINVAL;
	if (!dev->cow && d->kops->open_cow(d->kctx, &dev->info, &dev->cow, &err)) {
		logmsg("device %s: %s", dev->info.dm_name, err.msg);
		return err.code ? err.code : EIO;
	}
	if (!dev->src) {
		dev->src = src_get(d, dev->info.base_uri, &err);
		if (!dev->src) {
			logmsg("device %s: base %s: %s", dev->info.dm_name, dev->info.base_uri,
			       err.msg);
			return err.code ? err.code : EIO;
		}
	}
	return 0;
}

/*
 * FILL_DONE for extents [first, first + count) of the fault with cookie.
 * Sent without waiting for the kernel (kernel_nl_ops): a refusal comes
 * back later and is logged by the loop.
 */
static void answer(struct daemon *d, struct device *dev, uint64_t cookie, uint64_t first,
		   uint32_t count, uint32_t status)
{
	struct rcow_fault f = { .dev_id = dev->info.dev_id, .cookie = cookie, .first = first,
				.count = count };
	struct rcow_err err = { 0 };
	int r;

	r = d->kops->fill_done(d->kctx, &f, status, &err);
	if (r == -ENOENT || r == -ENODEV) {
		d->st.stale_cookies++;
		vlog(d, 1, "device %s: the kernel no longer waits for cookie %llu", dev->info.dm_name,
		     (unsigned long long)cookie);
		return;
	}
	if (r) {
		logmsg("device %s: answering cookie %llu failed: %s", dev->info.dm_name,
		       (unsigned long long)cookie, err.msg);
		return;
	}
	d->st.answered++;
}

/* ---- prefetch and hydrate ranges ---------------------------------------- */

static void range_add(struct device *dev, uint64_t first, uint64_t count, enum xclass cls)
{
	dev->ranges[dev->rhead] = (struct prange){ first, first + count, cls };
	dev->rhead = (dev->rhead + 1) % RANGE_RING;
	if (dev->nranges < RANGE_RING)
		dev->nranges++;
}

/*
 * Faults carry no origin: a fault for an extent we asked for with HYDRATE
 * is ours (prefetch or streaming), anything else is a guest I/O.
 */
static enum xclass classify(const struct device *dev, uint64_t e)
{
	for (unsigned int i = 0; i < dev->nranges; i++) {
		const struct prange *r = &dev->ranges[(dev->rhead + RANGE_RING - 1 - i) % RANGE_RING];

		if (e >= r->first && e < r->end)
			return r->cls;
	}
	return XC_GUEST;
}

static void prefetch(struct daemon *d, struct device *dev, const struct rcow_fault *f)
{
	struct rcow_err err = { 0 };
	uint64_t first;
	uint32_t count, queued = 0;
	uint64_t eb = (uint64_t)dev->geom.extent_sectors * 512, cap = dev->pf_cap, w;

	/*
	 * Read-ahead up to the base's window (twice the bandwidth-delay
	 * product, at least RCOW_MIN_WINDOW; that for a base without one, a
	 * file), within prefetch_max: enough to keep a single sequential
	 * reader's link busy, no more.
	 */
	w = dev->src && dev->src->window ? dev->src->window : RCOW_MIN_WINDOW;
	if (cap && w / eb < cap)
		cap = w / eb ? w / eb : 1;
	dev->pf.max = cap;
	if (!rcow_prefetch_fault(&dev->pf, f->first, f->count, dev->geom.nr_extents, &first, &count))
		return;
	range_add(dev, first, count, XC_PREFETCH);
	if (d->kops->hydrate(d->kctx, dev->info.dev_id, first, count, &queued, &err)) {
		vlog(d, 1, "device %s: prefetch of extents %llu+%u refused: %s", dev->info.dm_name,
		     (unsigned long long)first, count, err.msg);
		return;
	}
	d->st.prefetch_requests++;
	d->st.prefetch_extents += queued;
	vlog(d, 2, "device %s: sequential read, prefetching extents %llu+%u (%u queued, window %llu)",
	     dev->info.dm_name, (unsigned long long)first, count, queued,
	     (unsigned long long)dev->pf.window);
	if (queued == 0 && dev->nranges > 0) {
		/* nothing of ours will come: do not take guest faults for prefetch */
		dev->nranges--;
		dev->rhead = (dev->rhead + RANGE_RING - 1) % RANGE_RING;
	}
}

/* ---- faults -------------------------------------------------------------- */

/*
 * Largest read of a class: a guest run up to MAX_XFER_BYTES (the guest
 * waits for all of it anyway); speculative runs in pieces (daemon.h).
 */
static uint64_t xfer_limit(const struct src *s, enum xclass cls)
{
	if (cls == XC_GUEST || !s->piece || s->piece > MAX_XFER_BYTES)
		return MAX_XFER_BYTES;
	return s->piece;
}

/* ---- post-copy: extents still on a migration's source -------------------- */

/*
 * A FAULT with RCOW_FAULT_F_REMOTE: the run is still only on the source
 * of a post-copy migration.  Its job fetches it from there; without one
 * (remote-cowd restarted, the job ended) or with its source lost, the
 * fault fails with EIO - never filled from the base, whose data is older.
 */
static void remote_fault(struct daemon *d, struct device *dev, const struct rcow_fault *f)
{
	char why[160];

	if (mig_remote_fault(d, f, atomic_load(&dev->epoch), why, sizeof(why)))
		return;
	if (!dev->remote_refused) {
		dev->remote_refused = true;
		logmsg("device %s: extents %llu+%u are still only on the migration's source (post-copy), and %s: they fail with EIO, never read from the base; so do the device's later such faults (logged once)",
		       dev->info.dm_name, (unsigned long long)f->first, f->count, why);
	}
	d->st.fill_errors++;
	answer(d, dev, f->cookie, f->first, f->count, EIO);
}

void engine_remote_fill(struct daemon *d, const struct rcow_fault *f, unsigned int epoch,
			const void *data, size_t len, uint32_t status)
{
	struct device *dev = find_device(d, f->dev_id);
	struct rcow_err err = { 0 };
	struct fault *ft = NULL;
	struct xfer *x = NULL;
	uint64_t now = now_ns() / 1000;

	if (!dev || dev->removed || epoch != atomic_load(&dev->epoch))
		return;		/* voided: the kernel faults again after its resume */
	if (!status && !dev->cow && d->kops->open_cow(d->kctx, &dev->info, &dev->cow, &err)) {
		logmsg("device %s: %s", dev->info.dm_name, err.msg);
		status = err.code ? (uint32_t)err.code : EIO;
	}
	if (!status) {
		ft = calloc(1, sizeof(*ft));
		x = calloc(1, sizeof(*x));
		status = ft && x ? 0 : ENOMEM;
	}
	if (!status && bufcache_get(d->bufs, &x->buf, rcow_cow_io_len(dev->cow, len), &err))
		status = ENOMEM;
	if (status) {
		free(ft);
		free(x);
		d->st.fill_errors++;
		answer(d, dev, f->cookie, f->first, f->count, status);
		return;
	}
	*ft = (struct fault){ .dev = dev, .epoch = epoch, .cookie = f->cookie, .first = f->first,
			      .count = f->count, .remaining = 1, .cls = XC_GUEST, .conn = -1 };
	dev->refs++;
	x->fault = ft;
	x->ext = f->first;
	x->n = f->count;
	x->off = f->first * dev->geom.extent_sectors * 512ull;
	x->len = len;
	x->io_len = rcow_cow_io_len(dev->cow, len);
	x->cls = XC_GUEST;
	x->conn = -1;
	x->state = X_DONE;
	x->t_queued = x->t_issued = x->t_read = now;
	memcpy(x->buf.p, data, len);
	memset((uint8_t *)x->buf.p + len, 0, x->io_len - len);
	/* as a fill from the base: the writer threads, then FILL_DONE */
	if (cow_busy(d, dev))
		xq_push(&d->parked, x);
	else
		writer_submit(d, x);
}

void engine_fault(struct daemon *d, const struct rcow_fault *f)
{
	struct device *dev = find_device(d, f->dev_id);
	struct rcow_err err = { 0 };
	struct fault *ft;
	uint32_t status, per;
	uint64_t eb;
	enum xclass cls, qcls;

	d->st.faults++;
	if (!dev) {
		struct rcow_device_info info;

		memset(&info, 0, sizeof(info));
		if (d->kops->get_device(d->kctx, f->dev_id, &info, &err) == 0 &&
		    engine_add_device(&info, d) == 0)
			dev = find_device(d, f->dev_id);
		if (!dev) {
			logmsg("fault for device %u, which the kernel does not describe: %s",
			       f->dev_id, err.msg);
			struct rcow_fault all = *f;

			all.count = 0;	/* the whole fault */
			d->kops->fill_done(d->kctx, &all, ENODEV, &err);
			return;
		}
	}
	if (dev_inactive(dev)) {
		/* only a live table faults: it was resumed */
		logmsg("device %s: resumed (it faults); serving it", dev->info.dm_name);
		dev->info.flags &= ~(uint32_t)RCOW_DEV_F_INACTIVE;
		dev_activate(d, dev);
	}
	if (f->count == 0 || f->first >= dev->geom.nr_extents ||
	    f->count > dev->geom.nr_extents - f->first) {
		logmsg("device %s: fault for extents %llu+%u outside its %llu extents; refusing it",
		       dev->info.dm_name, (unsigned long long)f->first, f->count,
		       (unsigned long long)dev->geom.nr_extents);
		answer(d, dev, f->cookie, f->first, 0, ERANGE);
		return;
	}
	d->st.fault_extents += f->count;
	if (f->flags & RCOW_FAULT_F_REMOTE) {
		remote_fault(d, dev, f);	/* never from the base */
		return;
	}
	status = (uint32_t)dev_open(d, dev);
	if (status) {
		d->st.fill_errors++;
		answer(d, dev, f->cookie, f->first, 0, status);
		return;
	}
	cls = classify(dev, f->first);
	if (cls == XC_GUEST)
		d->st.guest_faults++;
	else if (cls == XC_PREFETCH)
		d->st.prefetch_faults++;
	else
		d->st.hydrate_faults++;
	/*
	 * I/O waits on it (a HYDRATE range the guest reached before it was
	 * sent): filled as a guest run, still counted as the stream's.
	 */
	qcls = f->flags & RCOW_FAULT_F_WAITING ? XC_GUEST : cls;
	if (qcls != cls)
		d->st.promoted++;
	vlog(d, 2, "device %s: %s fault for extents %llu+%u, cookie %llu%s", dev->info.dm_name,
	     class_name(cls), (unsigned long long)f->first, f->count, (unsigned long long)f->cookie,
	     qcls != cls ? ", I/O waits on it" : "");
	ft = calloc(1, sizeof(*ft));
	if (!ft) {
		answer(d, dev, f->cookie, f->first, 0, ENOMEM);
		return;
	}
	ft->dev = dev;
	ft->epoch = atomic_load(&dev->epoch);
	ft->cookie = f->cookie;
	ft->first = f->first;
	ft->count = f->count;
	ft->cls = cls;
	ft->conn = -1;
	dev->refs++;
	/*
	 * One xfer (one read, one COW write) per MAX_XFER_BYTES of a guest
	 * run, per piece of a prefetch or streaming run.
	 */
	eb = (uint64_t)dev->geom.extent_sectors * 512;
	per = (uint32_t)(xfer_limit(dev->src, qcls) / eb);
	if (per == 0)
		per = 1;
	ft->remaining = (f->count + per - 1) / per;
	for (uint32_t i = 0; i < f->count; i += per) {
		uint32_t n = f->count - i < per ? f->count - i : per;
		struct xfer *x = calloc(1, sizeof(*x));

		if (!x) {
			answer(d, dev, ft->cookie, f->first + i, n, ENOMEM);
			if (--ft->remaining == 0) {
				fault_put(ft);
				return;
			}
			continue;
		}
		x->fault = ft;
		x->ext = f->first + i;
		x->n = n;
		x->off = x->ext * eb;
		x->len = (uint64_t)(n - 1) * eb + rcow_geom_extent_bytes(&dev->geom, x->ext + n - 1);
		x->io_len = rcow_cow_io_len(dev->cow, (size_t)x->len);
		x->cls = qcls;
		x->conn = -1;
		x->t_queued = now_ns() / 1000;
		xq_push(&dev->src->q[qcls], x);
	}
	if (cls == XC_GUEST)
		prefetch(d, dev, f);
}

/*
 * PROMOTE: I/O now waits on extents [first, first + count) of a
 * speculative fault (prefetch or streaming) already here.  Its xfers not
 * yet issued move to the guest queue, ahead of every speculative one and
 * of the stream's rate limit (which holds back HYDRATE requests, not
 * fills); one in flight completes as it is.
 */
void engine_promote(struct daemon *d, const struct rcow_fault *f)
{
	struct device *dev = find_device(d, f->dev_id);
	struct src *s = dev ? dev->src : NULL;
	unsigned int moved = 0;

	mig_remote_promote(d, f);
	if (!s)
		return;
	for (int c = XC_PREFETCH; c < XC_NR; c++) {
		struct xfer *x = s->q[c].head, *next;

		for (; x; x = next) {
			next = x->next;
			if (x->fault->dev != dev || x->fault->cookie != f->cookie ||
			    x->ext >= f->first + f->count || x->ext + x->n <= f->first)
				continue;
			xq_del(&s->q[c], x);
			x->cls = XC_GUEST;
			xq_push(&s->q[XC_GUEST], x);
			moved++;
		}
	}
	d->st.promoted += moved;
	vlog(d, 2, "device %s: I/O waits on extents %llu+%u of cookie %llu: %u queued read(s) promoted",
	     dev->info.dm_name, (unsigned long long)f->first, f->count,
	     (unsigned long long)f->cookie, moved);
}

/*
 * Write a fetched extent into its device's COW device.  Runs in a writer
 * thread (writer.c): it touches only the xfer and the device's fixed
 * fields (geometry, COW handle, names), never the daemon.  0 or a
 * positive errno.
 */
int engine_write_extent(struct xfer *x)
{
	struct device *dev = x->fault->dev;
	uint64_t cow_off = (dev->geom.data_offset + x->ext * dev->geom.extent_sectors) * 512;
	struct rcow_err err = { 0 };
	int r;

	/* quiesced or removed since the fault came: start no write for it */
	if (atomic_load(&dev->epoch) != x->fault->epoch)
		return ECANCELED;

	if (x->zero_all) {
		r = rcow_cow_zero(dev->cow, cow_off, x->io_len, &err);
		if (r == 0)
			return 0;
		if (r != -EOPNOTSUPP)
			goto fail;
		r = bufcache_get(dev->d->bufs, &x->buf, x->io_len, &err);
		if (r)
			goto fail;
		memset(x->buf.p, 0, x->io_len);
	}
	/*
	 * O_DIRECT: pwrite returns once the device completed the write, so
	 * the data is on the COW device (possibly in its volatile cache)
	 * before FILL_DONE.  No fdatasync: the kernel target flushes the COW
	 * device (REQ_PREFLUSH) before it writes the PRESENT bit, which covers
	 * this write, and fdatasync on a block device would flush the whole
	 * device's cache for every extent.
	 */
	r = rcow_cow_pwrite(dev->cow, x->buf.p, x->io_len, cow_off, &err);
	if (r == 0)
		return 0;
fail:
	logmsg("device %s: writing %zu bytes at extent %llu into COW device %u:%u failed: %s",
	       dev->info.dm_name, x->io_len, (unsigned long long)x->ext, dev->info.cow_major,
	       dev->info.cow_minor, err.msg);
	return err.code ? err.code : EIO;
}

/* The device voided this fault's fills (QUIESCE, removal): never write or answer it. */
static bool fault_stale(const struct fault *ft)
{
	return ft->dev->removed || ft->epoch != atomic_load(&ft->dev->epoch);
}

/* The last xfer of a fault is over. */
static void fault_put(struct fault *ft)
{
	struct device *dev = ft->dev;

	if (ft->cls == XC_HYDRATE)
		dev->hydrate_inflight -= dev->hydrate_inflight < ft->count ? dev->hydrate_inflight :
									       ft->count;
	dev_put(dev);
	free(ft);
}

/*
 * x and the xfers merged into it are over, with status (0 or a positive
 * errno): each answers its own extents of its own fault (ECANCELED: not
 * at all, the kernel voided them), and a fault goes with its last xfer.
 */
static void xfer_finish(struct daemon *d, struct xfer *x, uint32_t status)
{
	struct xfer *next;

	for (; x; x = next) {
		struct fault *ft = x->fault;

		next = x->mnext;
		if (!fault_stale(ft) && status != ECANCELED)
			answer(d, ft->dev, ft->cookie, x->ext, x->n, status);
		bufcache_put(d->bufs, &x->buf);
		free(x);
		if (--ft->remaining == 0)
			fault_put(ft);
	}
}

bool engine_can_merge(const struct xfer *x, const struct xfer *y)
{
	return x->fault && y->fault && !x->merged && !x->alone && !y->merged && !y->alone &&
	       !y->mnext && y->state == X_QUEUED && y->cls == x->cls &&
	       y->fault->dev == x->fault->dev && y->fault->epoch == x->fault->epoch &&
	       !fault_stale(y->fault) && y->off == x->off + x->len && x->io_len == x->len &&
	       x->len + y->len <= xfer_limit(x->fault->dev->src, x->cls);
}

void engine_merge(struct src *s, struct xfer *x, struct xfer *y)
{
	struct xfer **tail = &x->mnext;

	xq_del(&s->q[y->cls], y);
	y->state = X_ACTIVE;
	y->merged = true;
	while (*tail)
		tail = &(*tail)->mnext;
	*tail = y;
	/* x had no padding (engine_can_merge()): y's padding ends the chain */
	x->io_len += y->io_len;
	x->len += y->len;
	s->d->st.merged++;
}

/* At most this many devices compete in one pick; the others wait for the next. */
#define FAIR_MAX 64

struct xfer *engine_next(struct src *s, enum xclass c,
			 bool (*usable)(struct src *s, const struct xfer *x))
{
	struct rcow_fair_cand cand[FAIR_MAX] = { { 0, 0, 0 } };
	struct xfer *first[FAIR_MAX];
	struct device *devs[FAIR_MAX];
	size_t n = 0, k;
	bool ok;

	for (struct xfer *x = s->q[c].head; x; x = x->next) {
		struct device *dev = x->fault->dev;

		for (k = 0; k < n && devs[k] != dev; k++)
			;
		if (k < n)
			continue;	/* the device has an earlier one */
		if (n == FAIR_MAX || n == s->refs)
			break;	/* every device of the source has its candidate */
		ok = dev->writes < DEV_MAX_WRITES && dev->writes + dev->reads < DEV_MAX_OUT;
		if (ok && !usable(s, x))
			continue;	/* e.g. its holes not known yet: the next of its xfers */
		devs[n] = dev;
		first[n] = x;
		cand[n] = (struct rcow_fair_cand){ dev->rd_bytes, dev->served, ok };
		n++;
	}
	k = rcow_fair_pick(cand, n);
	return k < n ? first[k] : NULL;
}

void engine_issued(struct src *s, struct xfer *x)
{
	struct device *dev = x->fault->dev;

	dev->served = ++s->serve_seq;
	dev->rd_bytes += x->len;
	dev->reads++;
}

void engine_read_over(struct xfer *x)
{
	struct device *dev = x->fault->dev;

	dev->rd_bytes -= dev->rd_bytes < x->len ? dev->rd_bytes : x->len;
	dev->reads -= dev->reads > 0;
}

/* Back to the front of its queue, as if never issued, on its own from now on. */
static void requeue_alone(struct src *s, struct xfer *x)
{
	struct device *dev = x->fault->dev;
	uint64_t eb = (uint64_t)dev->geom.extent_sectors * 512;

	x->len = (uint64_t)(x->n - 1) * eb + rcow_geom_extent_bytes(&dev->geom, x->ext + x->n - 1);
	x->io_len = rcow_cow_io_len(dev->cow, (size_t)x->len);
	x->mnext = NULL;
	x->merged = false;
	x->alone = true;
	x->err = 0;
	x->conn = -1;
	x->retries = 0;
	x->zero_all = false;
	x->bytes_read = x->bytes_zero = 0;
	x->state = X_QUEUED;
	bufcache_put(s->d->bufs, &x->buf);
	xq_push_front(&s->q[x->cls], x);
}

/* Cut x's own extents into xfers of one extent each (as memory allows), queued. */
static void split_extents(struct src *s, struct xfer *x)
{
	struct device *dev = x->fault->dev;
	uint64_t eb = (uint64_t)dev->geom.extent_sectors * 512;

	while (x->n > 1) {
		struct xfer *y = calloc(1, sizeof(*y));

		if (!y)
			break;	/* the rest stays together */
		x->n--;
		y->fault = x->fault;
		y->ext = x->ext + x->n;
		y->n = 1;
		y->off = y->ext * eb;
		y->cls = x->cls;
		x->fault->remaining++;
		requeue_alone(s, y);
	}
	requeue_alone(s, x);
}

bool engine_split(struct src *s, struct xfer *x)
{
	struct xfer *m, *next;

	if (!x->fault || x->alone || (x->n <= 1 && !x->mnext) || fault_stale(x->fault))
		return false;
	for (m = x->mnext; m; m = next) {
		next = m->mnext;
		split_extents(s, m);
	}
	x->mnext = NULL;
	split_extents(s, x);
	s->d->st.splits++;
	return true;
}

void engine_xfer_done(struct src *s, struct xfer *x, int err)
{
	struct daemon *d = s->d;
	struct fault *ft = x->fault;
	struct device *dev = ft->dev;
	uint32_t status;

	x->state = X_DONE;
	x->t_read = now_ns() / 1000;
	if (err == ECANCELED || fault_stale(ft)) {
		status = ECANCELED;
	} else if (err) {
		d->st.fill_errors++;
		logmsg("device %s: cannot read %llu bytes at extent %llu from base %s: %s; the I/O waiting for them fails",
		       dev->info.dm_name, (unsigned long long)x->len, (unsigned long long)x->ext,
		       s->uri, strerror(err));
		status = (uint32_t)err;
	} else if (cow_busy(d, dev)) {
		xq_push(&d->parked, x);	/* drain_step() submits it */
		return;
	} else {
		writer_submit(d, x);	/* engine_write_done() follows */
		return;
	}
	xfer_finish(d, x, status);
}

void engine_write_done(struct daemon *d, struct xfer *x)
{
	uint32_t status = 0;

	if (x->err == ECANCELED) {
		status = ECANCELED;
	} else if (x->err) {
		d->st.fill_errors++;
		status = (uint32_t)x->err;
	} else {
		uint64_t now = now_ns() / 1000;

		if (x->t_issued >= x->t_queued && x->t_read >= x->t_issued && now >= x->t_read) {
			d->st.fills++;
			d->st.queue_us += x->t_issued - x->t_queued;
			d->st.read_us += x->t_read - x->t_issued;
			d->st.write_us += now - x->t_read;
		}
		d->st.bytes_written += x->io_len;
		for (struct xfer *m = x; m; m = m->mnext)
			d->st.extents += m->n;
		d->st.bytes_read += x->bytes_read;
		d->st.bytes_zero += x->bytes_zero;
	}
	xfer_finish(d, x, status);
}

/* ---- quiesce --------------------------------------------------------------- */

/* Answer the device's QUIESCEs once none of its COW writes is in flight. */
static void quiesce_answer(struct daemon *d, struct device *dev)
{
	struct rcow_err err = { 0 };

	/* no write to its COW device in flight: its own, nor a forgotten one's */
	if (!dev->quiesce.len || dev->writes > 0 || cow_busy(d, dev))
		return;
	for (size_t i = 0; i < dev->quiesce.len; i++) {
		struct rcow_quiesce q = { dev->info.dev_id, dev->quiesce.ptr[i] };
		int r = d->kops->quiesce_done(d->kctx, &q, &err);

		if (r)
			logmsg("device %s: answering QUIESCE %llu failed: %s", dev->info.dm_name,
			       (unsigned long long)q.cookie, err.msg);
		else
			vlog(d, 1, "device %s: quiesced (QUIESCE %llu answered)",
			     dev->info.dm_name, (unsigned long long)q.cookie);
	}
	dev->quiesce.len = 0;
}

void engine_quiesce(struct daemon *d, const struct rcow_quiesce *q)
{
	struct device *dev = find_device(d, q->dev_id);
	struct rcow_err err = { 0 };

	if (!dev)	/* forgotten, but with writes in progress? */
		for (dev = d->draining; dev && dev->info.dev_id != q->dev_id; dev = dev->next)
			;
	if (!dev) {
		/* nothing of it here, so nothing in flight */
		if (d->kops->quiesce_done(d->kctx, q, &err))
			logmsg("device %u: answering QUIESCE %llu failed: %s", q->dev_id,
			       (unsigned long long)q->cookie, err.msg);
		return;
	}
	/*
	 * Every fault of the device so far is void: the kernel requeues or
	 * fails its I/O itself and sends new FAULTs after the resume.  Reads
	 * in flight complete and are thrown away; queued ones are dropped;
	 * writes not started are skipped by the writer threads.
	 */
	atomic_fetch_add(&dev->epoch, 1);
	drop_queued(dev);
	commit_pause(d, dev->info.dev_id);
	if (cookie_vec_push(&dev->quiesce, q->cookie)) {
		/* cannot remember it: the kernel's bounded wait ends it */
		logmsg("device %s: out of memory remembering QUIESCE %llu; the kernel will stop waiting for it",
		       dev->info.dm_name, (unsigned long long)q->cookie);
		return;
	}
	vlog(d, 1, "device %s: QUIESCE %llu: dropping its pending fills, %u COW write(s) in flight",
	     dev->info.dm_name, (unsigned long long)q->cookie, dev->writes);
	quiesce_answer(d, dev);
}

/* The device a commit message names; asked of the kernel if not known. */
static struct device *commit_device_of(struct daemon *d, uint32_t dev_id)
{
	struct device *dev = find_device(d, dev_id);
	struct rcow_device_info info;
	struct rcow_err err = { 0 };

	if (dev)
		return dev;
	memset(&info, 0, sizeof(info));
	if (d->kops->get_device(d->kctx, dev_id, &info, &err) == 0 &&
	    engine_add_device(&info, d) == 0)
		dev = find_device(d, dev_id);
	if (!dev)
		logmsg("commit message for device %u, which the kernel does not describe: %s", dev_id,
		       err.msg);
	return dev;
}

static void engine_commit(struct daemon *d, uint8_t cmd, const struct rcow_commit *c)
{
	struct device *dev;

	if (cmd == RCOW_CMD_COMMIT_ABORT) {
		commit_abort(d, c);
		return;
	}
	dev = commit_device_of(d, c->dev_id);
	if (!dev)
		return;
	if (cmd == RCOW_CMD_COMMIT_START)
		commit_start(d, &dev->info, c);
	else
		commit_preserve(d, &dev->info, c);
}

void engine_event(struct daemon *d, const struct rcow_event *ev)
{
	char b[16];

	switch (ev->cmd) {
	case RCOW_CMD_FAULT:
		engine_fault(d, &ev->u.fault);
		break;
	case RCOW_CMD_PROMOTE:
		engine_promote(d, &ev->u.fault);
		break;
	case RCOW_CMD_DEVICE_ADD:
		engine_add_device(&ev->u.dev, d);
		break;
	case RCOW_CMD_DEVICE_REMOVE:
		engine_remove_device(d, ev->u.dev.dev_id);
		break;
	case RCOW_CMD_HYDRATE_CTL:
		engine_hydrate_ctl(d, &ev->u.hydrate);
		break;
	case RCOW_CMD_QUIESCE:
		engine_quiesce(d, &ev->u.quiesce);
		break;
	case RCOW_CMD_COMMIT_START:
	case RCOW_CMD_PRESERVE:
	case RCOW_CMD_COMMIT_ABORT:
		engine_commit(d, ev->cmd, &ev->u.commit);
		break;
	case RCOW_CMD_MIGRATE_START:
	case RCOW_CMD_MIGRATE_FINISH:
	case RCOW_CMD_MIGRATE_ABORT:
	case RCOW_CMD_MIGRATE_ROUND:
	case RCOW_CMD_MIGRATE_WAITING:
		mig_event(d, ev);
		break;
	default:
		logmsg("ignoring message %s from the kernel (newer module?)",
		       rcow_cmd_name(ev->cmd, b, sizeof(b)));
	}
}

void engine_resync(void *data, bool begin)
{
	struct daemon *d = data;
	struct device *dev, *next;

	if (begin) {
		d->resync_gen++;
		return;
	}
	for (dev = d->devices; dev; dev = next) {
		next = dev->next;
		if (dev->seen == d->resync_gen)
			continue;
		logmsg("device %s: no longer in the kernel's device list (its DEVICE_REMOVE was lost in the overflow); forgetting it",
		       dev->info.dm_name);
		d->st.devices_removed++;
		unlist_device(d, dev);
	}
}

void engine_forget_all(struct daemon *d)
{
	while (d->devices)
		unlist_device(d, d->devices);
	commit_fini(d);
	mig_fini(d);
}

/* ---- background streaming ------------------------------------------------ */

static bool bit_test(const uint8_t *b, uint64_t i)
{
	return (b[i / 8] >> (i % 8)) & 1;
}

/* Read the PRESENT bitmap; returns the number of missing extents or -errno. */
static int64_t read_bitmap(struct daemon *d, struct device *dev)
{
	uint64_t nr = dev->geom.nr_extents, first = 0, missing = 0;
	struct rcow_err err = { 0 };
	size_t bytes = (size_t)((nr + 7) / 8);

	if (!dev->bitmap) {
		dev->bitmap = calloc(1, bytes + REMOTE_COW_BITMAP_CHUNK);
		if (!dev->bitmap)
			return -ENOMEM;
	}
	while (first < nr) {
		uint64_t got_first = 0;
		uint32_t got_count = 0;
		int r = d->kops->get_bitmap(d->kctx, dev->info.dev_id, RCOW_BITMAP_PRESENT, first,
					   dev->bitmap + first / 8, REMOTE_COW_BITMAP_CHUNK,
					   &got_first, &got_count, &err);

		if (r) {
			logmsg("device %s: reading the present bitmap failed: %s", dev->info.dm_name,
			       err.msg);
			return r;
		}
		if (got_count == 0 || got_first != first)
			return -EPROTO;
		first += got_count;
	}
	for (uint64_t i = 0; i < nr; i++)
		missing += !bit_test(dev->bitmap, i);
	return (int64_t)missing;
}

static void hydrate_begin(struct device *dev, uint32_t rate, bool resumed)
{
	uint64_t eb = (uint64_t)dev->geom.extent_sectors * 512, burst;

	dev->hydrating = true;
	dev->hydrate_rate = rate;
	dev->cursor = 0;
	free(dev->bitmap);
	dev->bitmap = NULL;
	dev->hydrate_pass = 0;
	dev->hydrate_start_ms = now_ms();
	dev->hydrate_wait_until = 0;
	burst = rate ? ((uint64_t)rate << 20) / 8 : 0;
	if (burst < eb)
		burst = eb;
	rcow_ratelimit_init(&dev->rl, (uint64_t)rate << 20, burst, now_ns());
	if (rate)
		logmsg("device %s: %s background streaming at %u MiB/s", dev->info.dm_name,
		       resumed ? "resuming" : "starting", rate);
	else
		logmsg("device %s: %s background streaming, unlimited rate", dev->info.dm_name,
		       resumed ? "resuming" : "starting");
}

void engine_hydrate_ctl(struct daemon *d, const struct rcow_hydrate_ctl *h)
{
	struct device *dev = find_device(d, h->dev_id);

	if (!dev) {
		struct rcow_device_info info;
		struct rcow_err err = { 0 };

		memset(&info, 0, sizeof(info));
		if (d->kops->get_device(d->kctx, h->dev_id, &info, &err) == 0)
			engine_add_device(&info, d);	/* resumes hydration from its flags */
		return;
	}
	if (h->start) {
		hydrate_begin(dev, h->rate, false);
	} else if (dev->hydrating) {
		dev->hydrating = false;
		logmsg("device %s: background streaming stopped (%u extents still in flight finish)",
		       dev->info.dm_name, dev->hydrate_inflight);
	}
}

/* Most extents of one device streamed at a time. */
static unsigned int hydrate_depth(const struct device *dev)
{
	uint64_t eb = (uint64_t)dev->geom.extent_sectors * 512;
	uint64_t n = (16u << 20) / eb;

	return n < 4 ? 4 : n > 256 ? 256 : (unsigned int)n;
}

static void hydrate_step(struct daemon *d, struct device *dev, uint64_t now)
{
	uint64_t nr = dev->geom.nr_extents, eb = (uint64_t)dev->geom.extent_sectors * 512;
	uint64_t first, count, maxc, wait;
	unsigned int depth = hydrate_depth(dev);
	struct rcow_err err = { 0 };
	uint32_t queued = 0;
	int64_t missing;

	if (!dev->hydrating || dev->removed || dev_inactive(dev) || now < dev->hydrate_wait_until)
		return;
	if (dev_open(d, dev)) {
		dev->hydrate_wait_until = now + 5000;
		return;
	}
	if (engine_guest_waiting(dev->src) || !dev->src->ops->ready(dev->src))
		return;		/* guest faults first; nothing to gain while disconnected */
	if (dev->hydrate_inflight >= depth)
		return;
	if (!dev->bitmap) {
		missing = read_bitmap(d, dev);
		if (missing < 0) {
			dev->hydrate_wait_until = now + 1000;
			return;
		}
		dev->cursor = 0;
		vlog(d, 1, "device %s: streaming pass %u, %lld extents missing", dev->info.dm_name,
		     dev->hydrate_pass + 1, (long long)missing);
	}
	while (dev->cursor < nr && bit_test(dev->bitmap, dev->cursor))
		dev->cursor++;
	if (dev->cursor >= nr) {
		if (dev->hydrate_inflight)
			return;
		missing = read_bitmap(d, dev);
		if (missing < 0) {
			dev->hydrate_wait_until = now + 1000;
			return;
		}
		if (missing == 0) {
			logmsg("device %s: background streaming complete: all %llu extents present after %.1f s",
			       dev->info.dm_name, (unsigned long long)nr,
			       (double)(now - dev->hydrate_start_ms) / 1000.0);
			dev->hydrating = false;
			return;
		}
		dev->hydrate_pass++;
		dev->cursor = 0;
		dev->hydrate_wait_until = now + 1000;
		vlog(d, 1, "device %s: %lld extents still missing; another streaming pass",
		     dev->info.dm_name, (long long)missing);
		return;
	}
	/* a run of missing extents */
	maxc = depth - dev->hydrate_inflight;
	if (dev->hydrate_rate) {
		uint64_t per = ((uint64_t)dev->hydrate_rate << 20) / 8 / eb;

		if (per < 1)
			per = 1;
		if (maxc > per)
			maxc = per;
	}
	first = dev->cursor;
	count = 0;
	while (first + count < nr && count < maxc && !bit_test(dev->bitmap, first + count))
		count++;
	wait = rcow_ratelimit_take(&dev->rl, count * eb, now_ns());
	if (wait) {
		dev->hydrate_wait_until = now + wait / 1000000 + 1;
		return;
	}
	range_add(dev, first, count, XC_HYDRATE);
	if (d->kops->hydrate(d->kctx, dev->info.dev_id, first, (uint32_t)count, &queued, &err)) {
		logmsg("device %s: streaming request for extents %llu+%llu refused: %s; retrying in 1 s",
		       dev->info.dm_name, (unsigned long long)first, (unsigned long long)count,
		       err.msg);
		dev->hydrate_wait_until = now + 1000;
		return;
	}
	d->st.hydrate_requests++;
	d->st.hydrate_extents += queued;
	dev->hydrate_inflight += queued;
	dev->cursor = first + count;
}

void engine_run(struct daemon *d)
{
	uint64_t now = now_ms();
	struct device *dev, *next;

	drain_step(d);
	for (dev = d->devices; dev; dev = next) {
		next = dev->next;
		quiesce_answer(d, dev);
		if (dev->hydrating) {
			/* several steps per turn, each bounded by depth and rate */
			for (int i = 0; i < 8 && dev->hydrating; i++) {
				unsigned int before = dev->hydrate_inflight;
				uint64_t cur = dev->cursor;

				hydrate_step(d, dev, now);
				if (dev->hydrate_inflight == before && dev->cursor == cur)
					break;
			}
		}
	}
}

uint64_t engine_timer(struct daemon *d, uint64_t now)
{
	uint64_t t = 0;

	for (struct device *dev = d->devices; dev; dev = dev->next) {
		if (!dev->hydrating)
			continue;
		if (dev->hydrate_wait_until > now && (!t || dev->hydrate_wait_until < t))
			t = dev->hydrate_wait_until;
		if (!t || now + 200 < t)
			t = now + 200;	/* streaming: look again soon */
	}
	return t;
}

