// SPDX-License-Identifier: GPL-2.0
/*
 * spool.c - the snapshot commit's spool file (see spool.h).
 *
 * lock guards everything in struct spool but the fixed fields (fd, path,
 * id, stride, max_slots).  A slot is FREE (on the free list), BUSY (being
 * written by spool_put(), in no index), USED (in the index: ext -> slot),
 * or DEAD (released while spool_get() still reads it: freed by the last
 * reader).  The index is an open-addressing hash table with linear
 * probing, holding slot number + 1 (0: empty).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rcow/crc32c.h"
#include "spool.h"

#define FILE_MAGIC "RCOWSPL1"
#define FILE_HDR_SIZE 4096u
#define SLOT_MAGIC 0x4c535352u		/* "RSSL" */
#define SLOT_HDR_SIZE 64u

struct file_hdr {
	char magic[8];
	uint32_t hdr_size, slot_hdr_size;
	uint32_t dev_id, extent_sectors;
	uint64_t gen, nr_extents;
	char dm_name[128];
	uint32_t crc;			/* of the bytes before it */
	uint32_t pad;
};

struct slot_hdr {
	uint32_t magic;
	uint32_t hdr_crc;		/* of the header with this field 0 */
	uint64_t gen, ext, seq;
	uint32_t len, data_crc;
	uint32_t dev_id;
	uint8_t pad[SLOT_HDR_SIZE - 44];
};

_Static_assert(sizeof(struct slot_hdr) == SLOT_HDR_SIZE, "slot header size");
_Static_assert(sizeof(struct file_hdr) <= FILE_HDR_SIZE, "file header size");

enum { SL_FREE, SL_BUSY, SL_USED, SL_DEAD };

struct slot {
	uint64_t ext, seq;
	uint32_t len, crc;
	uint32_t readers;
	uint8_t st;
};

struct spool {
	int fd;
	char *path, *dir;
	struct spool_id id;
	uint64_t ext_bytes, stride, max_bytes, max_slots;

	pthread_mutex_t lock;
	struct slot *slots;		/* lock */
	uint64_t nslots, cap;		/* lock: slots in the file, allocated */
	uint32_t *freev;		/* lock: free slot numbers */
	uint64_t nfree;
	uint32_t *tab;			/* lock: the index */
	uint64_t tcap, used;
	uint64_t next_seq;		/* lock */
};

static uint64_t hash64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

/* Index position of ext, or of the empty entry where it would go. */
static uint64_t tab_pos(const struct spool *sp, uint64_t ext)
{
	uint64_t i = hash64(ext) & (sp->tcap - 1);

	while (sp->tab[i] && sp->slots[sp->tab[i] - 1].ext != ext)
		i = (i + 1) & (sp->tcap - 1);
	return i;
}

static int64_t tab_find(const struct spool *sp, uint64_t ext)
{
	uint64_t i;

	if (!sp->tcap)
		return -1;
	i = tab_pos(sp, ext);
	return sp->tab[i] ? (int64_t)sp->tab[i] - 1 : -1;
}

static int tab_grow(struct spool *sp)
{
	uint64_t ncap = sp->tcap ? sp->tcap * 2 : 64, ocap = sp->tcap;
	uint32_t *old = sp->tab, *n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	sp->tab = n;
	sp->tcap = ncap;
	for (uint64_t i = 0; i < ocap; i++)
		if (old[i])
			sp->tab[tab_pos(sp, sp->slots[old[i] - 1].ext)] = old[i];
	free(old);
	return 0;
}

static int tab_insert(struct spool *sp, uint64_t slot)
{
	if ((sp->used + 1) * 2 > sp->tcap && tab_grow(sp))
		return -ENOMEM;
	sp->tab[tab_pos(sp, sp->slots[slot].ext)] = (uint32_t)slot + 1;
	sp->used++;
	return 0;
}

/* Remove ext from the index (backward-shift deletion). */
static void tab_remove(struct spool *sp, uint64_t ext)
{
	uint64_t mask = sp->tcap - 1, i, j;

	if (!sp->tcap)
		return;
	i = tab_pos(sp, ext);
	if (!sp->tab[i])
		return;
	sp->tab[i] = 0;
	sp->used--;
	for (j = (i + 1) & mask; sp->tab[j]; j = (j + 1) & mask) {
		uint64_t home = hash64(sp->slots[sp->tab[j] - 1].ext) & mask;

		/* move j back to i when its home is not in (i, j] */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			sp->tab[i] = sp->tab[j];
			sp->tab[j] = 0;
			i = j;
		}
	}
}

static void slot_free(struct spool *sp, uint64_t i)
{
	sp->slots[i].st = SL_FREE;
	sp->freev[sp->nfree++] = (uint32_t)i;
}

/* Room for slot number n (slots and the free list).  Under lock. */
static int slots_reserve(struct spool *sp, uint64_t n)
{
	uint64_t cap = sp->cap ? sp->cap : 64;
	struct slot *s;
	uint32_t *f;

	if (n <= sp->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	s = realloc(sp->slots, cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	sp->slots = s;
	f = realloc(sp->freev, cap * sizeof(*f));
	if (!f)
		return -ENOMEM;
	sp->freev = f;
	memset(sp->slots + sp->cap, 0, (cap - sp->cap) * sizeof(*s));
	sp->cap = cap;
	return 0;
}

static uint64_t slot_off(const struct spool *sp, uint64_t i)
{
	return FILE_HDR_SIZE + i * sp->stride;
}

static uint32_t slot_hdr_crc(struct slot_hdr h)
{
	h.hdr_crc = 0;
	return rcow_crc32c(0, &h, sizeof(h));
}

static void file_hdr_make(const struct spool *sp, struct file_hdr *h)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, FILE_MAGIC, 8);
	h->hdr_size = FILE_HDR_SIZE;
	h->slot_hdr_size = SLOT_HDR_SIZE;
	h->dev_id = sp->id.dev_id;
	h->extent_sectors = sp->id.extent_sectors;
	h->gen = sp->id.gen;
	h->nr_extents = sp->id.nr_extents;
	snprintf(h->dm_name, sizeof(h->dm_name), "%s", sp->id.dm_name ? sp->id.dm_name : "");
	h->crc = rcow_crc32c(0, h, offsetof(struct file_hdr, crc));
}

static int mkdirs(const char *dir, struct rcow_err *err)
{
	char *p = strdup(dir);
	int r = 0;

	if (!p)
		return rcow_err_set(err, ENOMEM, "out of memory");
	for (char *s = p + 1;; s++) {
		if (*s && *s != '/')
			continue;
		char c = *s;

		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			r = rcow_err_set(err, errno, "cannot create spool directory %s: %s", p,
					 strerror(errno));
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return r;
}

/* Files of the same device id with another generation are leftovers. */
static void remove_stale(const struct spool *sp)
{
	DIR *dh = opendir(sp->dir);
	struct dirent *de;

	if (!dh)
		return;
	while ((de = readdir(dh))) {
		unsigned int id;
		unsigned long long gen;
		int n = 0;

		if (sscanf(de->d_name, "dev%u-gen%llu.spool%n", &id, &gen, &n) == 2 &&
		    de->d_name[n] == '\0' && id == sp->id.dev_id && gen != sp->id.gen)
			unlinkat(dirfd(dh), de->d_name, 0);
	}
	closedir(dh);
}

/* Take up the slots of an existing file of the same commit.  Under no lock (not shared yet). */
static int recover(struct spool *sp, uint64_t size, struct rcow_err *err)
{
	uint64_t n = (size - FILE_HDR_SIZE) / sp->stride;
	unsigned char *data = malloc(sp->ext_bytes ? sp->ext_bytes : 1);
	uint64_t good = 0;

	if (!data)
		return rcow_err_set(err, ENOMEM, "out of memory reading spool %s", sp->path);
	if (slots_reserve(sp, n ? n : 1)) {
		free(data);
		return rcow_err_set(err, ENOMEM, "out of memory reading spool %s", sp->path);
	}
	sp->nslots = n;
	for (uint64_t i = 0; i < n; i++) {
		struct slot_hdr h;
		int64_t old;

		if (pread(sp->fd, &h, sizeof(h), (off_t)slot_off(sp, i)) != (ssize_t)sizeof(h) ||
		    h.magic != SLOT_MAGIC || h.hdr_crc != slot_hdr_crc(h) || h.gen != sp->id.gen ||
		    h.dev_id != sp->id.dev_id || h.ext >= sp->id.nr_extents || h.len == 0 ||
		    h.len > sp->ext_bytes ||
		    pread(sp->fd, data, h.len, (off_t)(slot_off(sp, i) + SLOT_HDR_SIZE)) !=
			    (ssize_t)h.len ||
		    rcow_crc32c(0, data, h.len) != h.data_crc) {
			slot_free(sp, i);
			continue;
		}
		if (h.seq >= sp->next_seq)
			sp->next_seq = h.seq + 1;
		old = tab_find(sp, h.ext);
		if (old >= 0) {
			if (sp->slots[old].seq > h.seq) {
				slot_free(sp, i);
				continue;
			}
			tab_remove(sp, h.ext);
			slot_free(sp, (uint64_t)old);
			good--;
		}
		sp->slots[i] = (struct slot){ h.ext, h.seq, h.len, h.data_crc, 0, SL_USED };
		if (tab_insert(sp, i)) {
			free(data);
			return rcow_err_set(err, ENOMEM, "out of memory reading spool %s", sp->path);
		}
		good++;
	}
	free(data);
	return 0;
}

int spool_open(const char *dir, const struct spool_id *id, uint64_t max_bytes,
	       struct spool **out, struct rcow_err *err)
{
	struct spool *sp = calloc(1, sizeof(*sp));
	struct file_hdr want, have;
	struct stat st;
	int r;

	if (!sp)
		return rcow_err_set(err, ENOMEM, "out of memory");
	sp->fd = -1;
	pthread_mutex_init(&sp->lock, NULL);
	sp->id = *id;
	sp->id.dm_name = NULL;
	sp->ext_bytes = (uint64_t)id->extent_sectors * 512;
	sp->stride = SLOT_HDR_SIZE + sp->ext_bytes;
	sp->max_bytes = max_bytes;
	sp->max_slots = max_bytes / sp->stride;
	sp->next_seq = 1;
	if (!(sp->dir = strdup(dir)) ||
	    asprintf(&sp->path, "%s/dev%u-gen%llu.spool", dir, id->dev_id,
		     (unsigned long long)id->gen) < 0) {
		sp->path = NULL;
		r = rcow_err_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	r = mkdirs(dir, err);
	if (r)
		goto fail;
	remove_stale(sp);
	sp->fd = open(sp->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (sp->fd < 0 || fstat(sp->fd, &st) < 0) {
		r = rcow_err_set(err, errno, "cannot open spool file %s: %s", sp->path,
				 strerror(errno));
		goto fail;
	}
	sp->id.dm_name = id->dm_name;
	file_hdr_make(sp, &want);
	sp->id.dm_name = NULL;
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size >= FILE_HDR_SIZE &&
	    pread(sp->fd, &have, sizeof(have), 0) == (ssize_t)sizeof(have) &&
	    !memcmp(&have, &want, sizeof(want))) {
		r = recover(sp, (uint64_t)st.st_size, err);
		if (r)
			goto fail;
	} else if (ftruncate(sp->fd, 0) < 0 ||
		   pwrite(sp->fd, &want, sizeof(want), 0) != (ssize_t)sizeof(want) ||
		   ftruncate(sp->fd, FILE_HDR_SIZE) < 0) {
		r = rcow_err_set(err, errno ? errno : EIO, "cannot write spool file %s: %s",
				 sp->path, strerror(errno ? errno : EIO));
		goto fail;
	}
	*out = sp;
	return 0;
fail:
	spool_close(sp, true);
	return r;
}

void spool_close(struct spool *sp, bool keep)
{
	if (!sp)
		return;
	if (sp->fd >= 0) {
		close(sp->fd);
		if (!keep)
			unlink(sp->path);
	}
	pthread_mutex_destroy(&sp->lock);
	free(sp->slots);
	free(sp->freev);
	free(sp->tab);
	free(sp->path);
	free(sp->dir);
	free(sp);
}

/* Slots not free.  Lock held. */
static uint64_t taken(const struct spool *sp)
{
	return sp->nslots - sp->nfree;
}

static int put(struct spool *sp, uint64_t ext, const void *data, uint32_t len, uint64_t limit,
	       struct rcow_err *err)
{
	struct slot_hdr h;
	struct iovec iov[2];
	uint64_t i, seq;
	int64_t old;
	ssize_t n;

	if (len == 0 || len > sp->ext_bytes || ext >= sp->id.nr_extents)
		return rcow_err_set(err, EINVAL, "internal error: spool_put of extent %llu, %u bytes",
				    (unsigned long long)ext, len);
	pthread_mutex_lock(&sp->lock);
	if (taken(sp) >= limit) {
		pthread_mutex_unlock(&sp->lock);
		return rcow_err_set(err, EBUSY, "spool above %llu slots", (unsigned long long)limit);
	}
	if (sp->nfree) {
		i = sp->freev[--sp->nfree];
	} else if (sp->nslots < sp->max_slots && !slots_reserve(sp, sp->nslots + 1)) {
		i = sp->nslots++;
	} else {
		bool full = sp->nslots >= sp->max_slots;

		pthread_mutex_unlock(&sp->lock);
		if (!full)
			return rcow_err_set(err, ENOMEM, "out of memory");
		return rcow_err_set(err, ENOSPC, "spool full (spool_max %llu bytes in %s)",
				    (unsigned long long)sp->max_bytes, sp->dir);
	}
	sp->slots[i].st = SL_BUSY;
	seq = sp->next_seq++;
	pthread_mutex_unlock(&sp->lock);

	memset(&h, 0, sizeof(h));
	h.magic = SLOT_MAGIC;
	h.gen = sp->id.gen;
	h.ext = ext;
	h.seq = seq;
	h.len = len;
	h.dev_id = sp->id.dev_id;
	h.data_crc = rcow_crc32c(0, data, len);
	h.hdr_crc = slot_hdr_crc(h);
	iov[0] = (struct iovec){ &h, sizeof(h) };
	iov[1] = (struct iovec){ (void *)data, len };
	do
		n = pwritev(sp->fd, iov, 2, (off_t)slot_off(sp, i));
	while (n < 0 && errno == EINTR);

	pthread_mutex_lock(&sp->lock);
	if (n != (ssize_t)(sizeof(h) + len)) {
		int e = n < 0 ? errno : ENOSPC;

		slot_free(sp, i);
		pthread_mutex_unlock(&sp->lock);
		return rcow_err_set(err, e, "writing extent %llu into spool file %s failed: %s",
				    (unsigned long long)ext, sp->path, strerror(e));
	}
	old = tab_find(sp, ext);
	if (old >= 0) {
		tab_remove(sp, ext);
		if (sp->slots[old].readers)
			sp->slots[old].st = SL_DEAD;
		else
			slot_free(sp, (uint64_t)old);
	}
	sp->slots[i] = (struct slot){ ext, seq, len, h.data_crc, 0, SL_USED };
	if (tab_insert(sp, i)) {
		slot_free(sp, i);
		pthread_mutex_unlock(&sp->lock);
		return rcow_err_set(err, ENOMEM, "out of memory");
	}
	pthread_mutex_unlock(&sp->lock);
	return 0;
}

int spool_put(struct spool *sp, uint64_t ext, const void *data, uint32_t len, struct rcow_err *err)
{
	return put(sp, ext, data, len, UINT64_MAX, err);
}

int spool_put_below(struct spool *sp, uint64_t ext, const void *data, uint32_t len,
		    uint64_t limit, struct rcow_err *err)
{
	return put(sp, ext, data, len, limit, err);
}

static void reader_done(struct spool *sp, uint64_t i)
{
	pthread_mutex_lock(&sp->lock);
	if (--sp->slots[i].readers == 0 && sp->slots[i].st == SL_DEAD)
		slot_free(sp, i);
	pthread_mutex_unlock(&sp->lock);
}

int spool_get(struct spool *sp, uint64_t ext, void *buf, uint32_t cap, uint32_t *len,
	      struct rcow_err *err)
{
	struct slot s;
	struct slot_hdr h;
	struct iovec iov[2];
	int64_t i;
	ssize_t n;

	pthread_mutex_lock(&sp->lock);
	i = tab_find(sp, ext);
	if (i >= 0) {
		sp->slots[i].readers++;
		s = sp->slots[i];
	}
	pthread_mutex_unlock(&sp->lock);
	if (i < 0)
		return -ENOENT;
	if (s.len > cap) {
		reader_done(sp, (uint64_t)i);
		return rcow_err_set(err, EINVAL, "internal error: spool slot of %u bytes, room for %u",
				    s.len, cap);
	}
	iov[0] = (struct iovec){ &h, sizeof(h) };
	iov[1] = (struct iovec){ buf, s.len };
	do
		n = preadv(sp->fd, iov, 2, (off_t)slot_off(sp, (uint64_t)i));
	while (n < 0 && errno == EINTR);
	reader_done(sp, (uint64_t)i);
	if (n < 0)
		return rcow_err_set(err, errno, "reading extent %llu from spool file %s failed: %s",
				    (unsigned long long)ext, sp->path, strerror(errno));
	if (n != (ssize_t)(sizeof(h) + s.len) || h.magic != SLOT_MAGIC || h.ext != ext ||
	    h.seq != s.seq || h.len != s.len || h.data_crc != s.crc ||
	    rcow_crc32c(0, buf, s.len) != s.crc)
		return rcow_err_set(err, EBADMSG,
			"the spooled copy of extent %llu in %s is damaged (checksum mismatch)",
			(unsigned long long)ext, sp->path);
	*len = s.len;
	return 0;
}

bool spool_has(struct spool *sp, uint64_t ext)
{
	bool r;

	pthread_mutex_lock(&sp->lock);
	r = tab_find(sp, ext) >= 0;
	pthread_mutex_unlock(&sp->lock);
	return r;
}

void spool_release(struct spool *sp, uint64_t ext)
{
	int64_t i;

	pthread_mutex_lock(&sp->lock);
	i = tab_find(sp, ext);
	if (i >= 0) {
		tab_remove(sp, ext);
		if (sp->slots[i].readers)
			sp->slots[i].st = SL_DEAD;
		else
			slot_free(sp, (uint64_t)i);
	}
	pthread_mutex_unlock(&sp->lock);
}

uint64_t spool_count(struct spool *sp)
{
	uint64_t n;

	pthread_mutex_lock(&sp->lock);
	n = sp->used;
	pthread_mutex_unlock(&sp->lock);
	return n;
}

uint64_t spool_taken(struct spool *sp)
{
	uint64_t n;

	pthread_mutex_lock(&sp->lock);
	n = taken(sp);
	pthread_mutex_unlock(&sp->lock);
	return n;
}

uint64_t spool_slots(const struct spool *sp)
{
	return sp->max_slots;
}

uint64_t spool_list(struct spool *sp, uint64_t *v, uint64_t max)
{
	uint64_t n = 0;

	pthread_mutex_lock(&sp->lock);
	for (uint64_t i = 0; i < sp->tcap && n < max; i++)
		if (sp->tab[i])
			v[n++] = sp->slots[sp->tab[i] - 1].ext;
	pthread_mutex_unlock(&sp->lock);
	return n;
}

uint64_t spool_max(const struct spool *sp)
{
	return sp->max_bytes;
}

const char *spool_path(const struct spool *sp)
{
	return sp->path;
}
