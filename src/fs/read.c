/*
 * Fetching file content through the block cache.
 *
 * DESIGN
 *
 * Every byte a reader gets comes from the block cache's data file: a read
 * first makes sure the blocks it covers are present, fetching the missing
 * ones from the Hub straight into the cache, then the FUSE layer replies
 * from the cache file (zero-copy where the kernel allows).  Little is
 * buffered in memory on the way: the Hub client hands bytes to a sink that
 * gathers at most SINK_BUF_MAX of them per run, writes them to the data
 * file and checksums each block, so memory use is bounded by the number
 * of runs in flight and does not grow with file size or readahead.
 *
 * Objects.  One struct fs_object per content key (sha256 for LFS files,
 * the git blob id otherwise) is shared by every open file with that
 * content, whatever its path, revision or repository.  It holds the cache
 * object (which pins the blocks against eviction), the list of runs being
 * fetched, and the whole-file hash state.
 *
 * Runs.  A run is a range of consecutive blocks fetched with one HTTP
 * range request.  A block is in at most one unfinished run: a reader that
 * needs a block some run is fetching waits for that run to commit it
 * instead of fetching it again, so two readers of the same missing block
 * cause one fetch.  Adjacent missing blocks coalesce into one run, up to
 * max_run_blocks.  Run states:
 *
 *	FETCHING --block committed--> FETCHING (next advances)
 *	FETCHING --all committed--> DONE(err 0)
 *	FETCHING --request failed--> DONE(err < 0)
 *
 * The runs a read needs are fetched by the reading thread itself;
 * readahead goes to a pool of worker threads.  Readahead asks for every
 * block not known present, from memory alone; its worker checks first
 * those that turn out stored (a warm cache after a restart), so that the
 * reading thread finds them confirmed instead of checking them itself,
 * and fetches the rest.  When one run the reading
 * thread makes covers the whole read, the read is answered from the
 * transfer as soon as its bytes have passed (struct fs_early), not when
 * the run's last block is stored: a cold random read waits for the bytes
 * up to its end, not for the rest of the block, its write to the cache
 * file and the index commit.  Not for an object fetched whole and hashed
 * before commit (below): that one is never served before its check.
 * Readahead queues are bounded (readahead is dropped, never waited for,
 * when full).
 *
 * Readahead.  A file handle whose reads follow each other is sequential:
 * its window doubles on every such read, up to max_window_blocks, and the
 * blocks within the window past the current read are queued.  A read
 * anywhere else resets the window, so random readers (mmap faults,
 * tensor loads) fetch what they touch and little more.  Besides, an
 * object's readers together may sweep it in order when none of them does
 * alone (loader processes sharing out the tensors): a read with the
 * blocks before it present or being fetched grows the object's own
 * window (struct fs_sweep, stream.c).
 *
 * Pages.  The cache file's pages of the chunks an object's readers have
 * read in full are written back and then given back (the ledger in
 * stream.c says when): their bytes are in the FUSE file's page cache by
 * then, and a cold read of a large file would otherwise hold it in
 * memory twice.  fs_reader_advise() tells the ledger a read is being
 * answered; fs_reader_release(), after its reply (or its error), counts
 * it and, if the ledger may have anything to give back (always, while
 * the hash runs: the read may end it), gives back what the ledger names
 * with the hash as far as it is then.
 * Once the hash has reached the end, no later read may come to give
 * back what a call writes back, so from then on all that was read in
 * full goes at once, without the lag, and the thread waits for its
 * writeback; a fetch worker whose run lets the hash reach the end does
 * the same.
 *
 * Integrity.  Each block carries a CRC checked by the cache.  Besides,
 * every object's content hash is checked against its key: sha256 for LFS
 * files, the git blob hash otherwise.  An object of up to WHOLE_MAX
 * (1 MiB: configs, most tokenizers and dataset files) is fetched whole by
 * its first read, hashed as it arrives and committed only if the hash
 * matches, so it is never served wrong; fetching it whole costs little
 * more than one block.  A larger object is hashed
 * block by block, in order, as its blocks arrive (whoever commits a block
 * advances the hash as far as it can), and checked once all are there.
 * On a mismatch the cached blocks are dropped and the next reads fetch
 * them again; a second mismatch makes every further read of the object
 * fail with EIO.  A block this process stored is served without a second
 * check, but a page of the data file whose write to disk failed is
 * clean, and the kernel may drop it and read the disk's stale bytes in
 * its place.  So a read answered from the data file first asks whether
 * a write of it has failed since the read began
 * (hubfs_cache_obj_check_writes()).  The kernel tells each failure once;
 * the cache drops every block of the file before any other thread can
 * ask, and counts the failure, and the read compares the count with the
 * one it took at its start.  On a failure the read's blocks are fetched
 * again, once; if writes keep failing, the read goes around the cache.
 * A hash mismatch after a failed write is blamed on the disk, not
 * counted against the content.  Not covered: a failure told first to
 * another process's descriptor, or lost with the kernel's inode between
 * two opens, leaves blocks the memo of the last open vouches for
 * (cache.c) until a restart checks them.
 *
 * Locks: reader->lock guards the object table, object reference counts
 * and the job queue.  obj->lock guards the run list, run fields and the
 * sweep.  obj->hash_lock guards the hash state.  obj->ledger_lock guards
 * the ledger, for a moment twice a read, never with another lock of
 * this module.  obj->pages_lock serialises giving back the cache file's
 * pages and guards pages_bad: once a write of the cache file has failed,
 * no more is given back.  It is held across the wait for writeback
 * (normally none while the hash runs, thanks to the lag; after it, or
 * at a close, the write just started) by threads that have answered
 * their read, a handle's release, or a fetch worker that has finished
 * its run; no read waits for it before its answer, but one that has
 * found a failed write.  hash_lock is taken under it, and the cache's
 * locks under both.  reader->lock is taken before obj->lock when both
 * are held; hash_lock is never held with those two.  No lock is held
 * across an HTTP request.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

#define BS ((uint64_t)HUBFS_CACHE_BLOCK_SIZE)
#define TABLE_SIZE 1024
#define HASH_CHUNK (64 * 1024)
/* Objects up to this size are fetched whole and checked before use. */
#define WHOLE_MAX ((uint64_t)1 << 20)

struct fs_run {
	uint64_t start, end;	/* blocks [start, end) */
	uint64_t next;		/* blocks [start, next) are committed */
	int err;
	bool done;
	unsigned int refs;	/* obj->lock */
	struct fs_run *link;	/* obj->runs */
};

struct fs_object {
	struct fs_reader *reader;
	char key[65];
	char *commit;
	char *path;
	bool lfs;
	uint64_t size;
	uint64_t nblocks;
	struct hubfs_cache_obj *cobj;
	unsigned int refs;		/* reader->lock */
	struct fs_object *hnext;	/* reader->lock */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fs_run *runs;		/* unfinished runs; lock */
	int failed;			/* permanent error; lock */
	struct fs_sweep sweep;		/* lock */

	pthread_mutex_t ledger_lock;
	struct fs_ledger ledger;	/* ledger_lock */
	pthread_mutex_t pages_lock;
	bool pages_bad;			/* pages_lock: give back no more */

	pthread_mutex_t hash_lock;
	atomic_bool hash_pending;
	EVP_MD_CTX *md;			/* hash_lock */
	/* Failed writes of the data file told when md began; hash_lock. */
	uint64_t hash_wfail;
	/* Next block to hash: written under hash_lock, read without. */
	atomic_uint_fast64_t hash_next;
	atomic_bool verified;
	/* Failed writes of the data file counted when verified was set: a
	 * small object is believed checked only while none came since. */
	atomic_uint_fast64_t vwfail;
	unsigned int mismatches;	/* lock */
};

struct job {
	struct fs_object *obj;
	struct fs_run *run;
	struct job *next;
};

/* Content keys whose content failed its hash, and how often. */
struct bad_key {
	char key[65];
	unsigned int count;
};

#define BAD_KEYS_MAX 256

struct fs_reader {
	struct hubfs_hub *hub;
	struct hubfs_cache *cache;
	struct fs_reader_opts opts;
	pthread_mutex_t lock;
	pthread_cond_t qcond;
	struct job *qhead, *qtail;	/* lock */
	unsigned int qlen;		/* lock: queued readahead jobs */
	bool stop;			/* lock */
	struct fs_object *table[TABLE_SIZE];	/* lock */
	struct bad_key bad[BAD_KEYS_MAX];	/* lock: outlive their objects */
	unsigned int nbad;			/* lock */
	pthread_t *threads;
	unsigned int nthreads;
};

static uint64_t block_len(const struct fs_object *obj, uint64_t idx)
{
	uint64_t start = idx * BS;

	return obj->size - start < BS ? obj->size - start : BS;
}

/* Record that @obj's content matched, as of @wfail failed writes. */
static void set_verified(struct fs_object *obj, uint64_t wfail)
{
	atomic_store(&obj->vwfail, wfail);
	atomic_store(&obj->verified, true);
}

/* Whether @obj's blocks are believed checked whole: a failed write since
 * has dropped them, before the thread told of it can say so here. */
static bool checked_whole(struct fs_object *obj)
{
	return atomic_load(&obj->verified) &&
	       atomic_load(&obj->vwfail) ==
		       hubfs_cache_obj_write_failures(obj->cobj);
}

/* Whether @obj's next fetch takes it whole, checked before commit. */
static bool fetch_whole(struct fs_object *obj)
{
	return obj->size <= WHOLE_MAX && !checked_whole(obj);
}

static unsigned int key_bucket(const char *key)
{
	unsigned int h = 0;

	for (; *key; key++)
		h = h * 31 + (unsigned char)*key;
	return h % TABLE_SIZE;
}

/* --- hashing ------------------------------------------------------------ */

/* A hash context for the object's content key, fed the git blob header
 * for regular files ("blob SIZE\0" comes before the content). */
static EVP_MD_CTX *content_hash_new(const struct fs_object *obj)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char hdr[32];
	int n;

	if (!md)
		return NULL;
	if (!EVP_DigestInit_ex(md, obj->lfs ? EVP_sha256() : EVP_sha1(), NULL))
		goto out_free;
	if (!obj->lfs) {
		n = snprintf(hdr, sizeof(hdr), "blob %llu",
			     (unsigned long long)obj->size);
		if (!EVP_DigestUpdate(md, hdr, (size_t)n + 1))
			goto out_free;
	}
	return md;
out_free:
	EVP_MD_CTX_free(md);
	return NULL;
}

/* Finish @md; true if the content hashed matches the object's key. */
static bool content_hash_matches(const struct fs_object *obj, EVP_MD_CTX *md)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	unsigned int n = 0, i;

	if (!EVP_DigestFinal_ex(md, digest, &n))
		return false;
	for (i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	return strcmp(hex, obj->key) == 0;
}

/* Count a content mismatch; the second one fails the object for good. */
static void content_mismatch(struct fs_object *obj)
{
	struct fs_reader *r = obj->reader;
	unsigned int i, count;

	hlog(LOG_ERR, "%s: the content fetched does not match its %s %s; "
	     "its cached blocks are dropped", obj->path,
	     obj->lfs ? "sha256" : "blob id", obj->key);

	hubfs_cache_obj_drop(obj->cobj);
	pthread_mutex_lock(&obj->lock);
	count = ++obj->mismatches;
	if (count >= 2)
		obj->failed = -EIO;
	pthread_mutex_unlock(&obj->lock);
	/* Remember it past this object's life: the next open is suspect. */
	pthread_mutex_lock(&r->lock);
	for (i = 0; i < r->nbad && strcmp(r->bad[i].key, obj->key); i++)
		;
	if (i == r->nbad && r->nbad < BAD_KEYS_MAX)
		snprintf(r->bad[r->nbad++].key, 65, "%s", obj->key);
	if (i < r->nbad && r->bad[i].count < count)
		r->bad[i].count = count;
	pthread_mutex_unlock(&r->lock);
	if (obj->reader->opts.bad_content)
		obj->reader->opts.bad_content(obj->reader->opts.bad_content_arg,
					      obj->key);
}

/*
 * A write of the object's data file failed: bytes confirmed in the cache
 * may not be on disk.  Drop the blocks, and the content's check with
 * them, so that what is fetched again is hashed again (under hash_lock,
 * so that no hash goes on over the blocks meanwhile).
 */
static void content_untrust(struct fs_object *obj)
{
	pthread_mutex_lock(&obj->hash_lock);
	EVP_MD_CTX_free(obj->md);
	obj->md = NULL;
	obj->hash_next = 0;
	atomic_store(&obj->verified, false);
	(void)hubfs_cache_obj_drop(obj->cobj);
	pthread_mutex_unlock(&obj->hash_lock);
}

/* A write of @obj's data file failed, so none of its blocks can be
 * trusted to be on disk: drop them all, and give back no more pages (a
 * write may fail again).  Told once per object: a failing disk fails
 * every write.  pages_lock is held. */
static void writes_failed(struct fs_object *obj)
{
	if (!obj->pages_bad)
		hlog(LOG_ERR, "%s: %s; its cached blocks are dropped",
		     obj->path,
		     hubfs_err_or("a write of its data file failed"));
	content_untrust(obj);
	obj->pages_bad = true;
}

/* Whether a write of @obj's data file has failed since the count of
 * failures was @since, told to this thread or to another (an odd count:
 * one was being acted on then). */
static bool writes_failed_since(struct fs_object *obj, uint64_t since)
{
	uint64_t now = hubfs_cache_obj_check_writes(obj->cobj);

	return now != since || (now & 1);
}

/*
 * A hash of bytes read back from the data file did not match.  If a
 * write of the file failed since the hash began (@since: the count of
 * failures then), whoever was told of it, those bytes may be the disk's,
 * not the Hub's: that is no mismatch, and the read goes around the cache
 * (-ENOSPC).  Otherwise -EIO.  Called with no lock held.
 */
static int hashed_mismatch(struct fs_object *obj, uint64_t since)
{
	if (writes_failed_since(obj, since)) {
		pthread_mutex_lock(&obj->pages_lock);
		writes_failed(obj);
		pthread_mutex_unlock(&obj->pages_lock);
		return -ENOSPC;
	}
	content_mismatch(obj);
	hubfs_err_set("the content of %s does not match its %s", obj->path,
		      obj->lfs ? "sha256" : "blob id");
	return -EIO;
}

/* Finish the whole-file hash; false if the content did not match. */
static bool hash_finish(struct fs_object *obj)
{
	bool ok = content_hash_matches(obj, obj->md);

	EVP_MD_CTX_free(obj->md);
	obj->md = NULL;
	obj->hash_next = 0;
	if (ok) {
		set_verified(obj, obj->hash_wfail);
		hubfs_cache_obj_set_verified(obj->cobj);
	}
	return ok;
}

/* Hash as many blocks, in order, as are present; false if the whole
 * content has been hashed and did not match. */
static bool hash_advance_locked(struct fs_object *obj)
{
	static __thread unsigned char buf[HASH_CHUNK];

	if (!obj->md) {
		obj->md = content_hash_new(obj);
		if (!obj->md)
			return true;
		obj->hash_next = 0;
		obj->hash_wfail = hubfs_cache_obj_write_failures(obj->cobj);
	}
	while (obj->hash_next < obj->nblocks) {
		uint64_t idx = obj->hash_next, done = 0, len = block_len(obj, idx);

		if (hubfs_cache_block_present(obj->cobj, idx) != 1)
			return true;
		while (done < len) {
			size_t n = len - done < HASH_CHUNK ? len - done
							   : HASH_CHUNK;
			ssize_t got = hubfs_cache_obj_pread(obj->cobj, buf, n,
							    idx * BS + done);
			if (got != (ssize_t)n) {
				/* Part of the block is hashed already: start
				 * over rather than hash it twice. */
				EVP_MD_CTX_free(obj->md);
				obj->md = NULL;
				return true;
			}
			EVP_DigestUpdate(obj->md, buf, n);
			done += n;
		}
		obj->hash_next++;
	}
	return hash_finish(obj);
}

/*
 * Advance the whole-file hash.  If another thread is hashing, leave a
 * note that there may be more: it loops until no note is left.
 */
static void hash_advance(struct fs_object *obj)
{
	if (atomic_load(&obj->verified) || obj->nblocks == 0)
		return;
	atomic_store(&obj->hash_pending, true);
	while (atomic_load(&obj->hash_pending)) {
		if (pthread_mutex_trylock(&obj->hash_lock) != 0)
			return;
		uint64_t since;
		bool ok = true;

		atomic_store(&obj->hash_pending, false);
		if (!atomic_load(&obj->verified))
			ok = hash_advance_locked(obj);
		since = obj->hash_wfail;
		pthread_mutex_unlock(&obj->hash_lock);
		if (!ok)	/* takes other locks */
			(void)hashed_mismatch(obj, since);
	}
}

/*
 * A read that finds every block present finishes the whole-content hash
 * before it is answered, waiting for a worker that is hashing.  Whichever
 * read completes the object then fails when the content does not match,
 * so a reader that went through the whole file gets EIO, not success,
 * however late the hash would otherwise have ended (and re-reads would
 * come from the kernel's page cache until its pages were dropped).
 */
static int hash_settle(struct fs_object *obj)
{
	uint64_t since;
	bool ok = true;

	if (atomic_load(&obj->verified) ||
	    hubfs_cache_obj_known(obj->cobj) < obj->nblocks)
		return 0;
	pthread_mutex_lock(&obj->hash_lock);
	if (!atomic_load(&obj->verified))
		ok = hash_advance_locked(obj);
	since = obj->hash_wfail;
	pthread_mutex_unlock(&obj->hash_lock);
	return ok ? 0 : hashed_mismatch(obj, since);
}

/* --- runs --------------------------------------------------------------- */

/* Drop a reference to @run; obj->lock is held. */
static void run_put(struct fs_run *run)
{
	if (--run->refs == 0)
		hubfs_free(run);
}

static void run_finish(struct fs_object *obj, struct fs_run *run, int err)
{
	struct fs_run **p;

	pthread_mutex_lock(&obj->lock);
	run->done = true;
	run->err = err;
	for (p = &obj->runs; *p; p = &(*p)->link) {
		if (*p == run) {
			*p = run->link;
			run_put(run);	/* the list's reference */
			break;
		}
	}
	pthread_cond_broadcast(&obj->cond);
	run_put(run);			/* the runner's reference */
	pthread_mutex_unlock(&obj->lock);
}

/* A read answered from the transfer (see fs_early in fs_int.h). */
struct early_read {
	const struct fs_early *early;
	uint64_t off;		/* the read's bytes: [off, off + len) */
	size_t len;
	unsigned char *buf;
	size_t got;		/* bytes of it copied; == len: answered */
	bool held;		/* a reference of ours to the object */
};

struct sink_state {
	struct fs_object *obj;
	struct fs_run *run;
	struct early_read *er;	/* or NULL */
	/* The object's generation before the first write: a block written
	 * before a drop (a failed write of the data file) is not committed
	 * after it.  And the count of failed writes then. */
	uint64_t gen, wfail;
	uint64_t block;		/* block being filled */
	uint64_t fill;		/* bytes of it written */
	struct hubfs_cache_sum sum;	/* of those bytes */
	/*
	 * A run that covers a whole object not yet verified hashes it as it
	 * arrives and commits its blocks only once the hash matched: a small
	 * file is then never served wrong, not even once.
	 */
	EVP_MD_CTX *md;
	struct hubfs_cache_sum *sums;	/* with md: each block's, by index
					 * in run */
	/*
	 * libcurl hands over at most 16 KiB at a time; writing each piece
	 * to the cache file cost a syscall and a turn of the file's lock
	 * per piece, against the fetch workers writing beside it.  Bytes
	 * gather here, and go to the file when it fills or a block ends.
	 */
	unsigned char *buf;
	size_t buf_cap, buf_len;
	uint64_t buf_off;	/* file offset of buf[0] */
};

#define SINK_BUF_MAX (256 * 1024)

/* Copy what of [@off, @off + @n) the early read wants; answer it once
 * all its bytes are in.  Bytes arrive in order, each once. */
static void early_feed(struct early_read *er, const unsigned char *p,
		       size_t n, uint64_t off)
{
	uint64_t lo = off > er->off ? off : er->off;
	uint64_t hi = off + n < er->off + er->len ? off + n
						  : er->off + er->len;

	if (lo >= hi)
		return;
	memcpy(er->buf + (lo - er->off), p + (lo - off), (size_t)(hi - lo));
	er->got += (size_t)(hi - lo);
	if (er->got == er->len)
		er->early->reply(er->early->arg, er->buf, er->len);
}

/* Write what @st has gathered to the cache file. */
static int sink_flush(struct sink_state *st)
{
	int err = 0;

	if (st->buf_len)
		err = hubfs_cache_obj_pwrite(st->obj->cobj, st->buf,
					     st->buf_len, st->buf_off);
	st->buf_len = 0;	/* sink_write() sets buf_off anew */
	return err;
}

/* Write @len bytes at @off (which follows what came before), gathered. */
static int sink_write(struct sink_state *st, const unsigned char *p,
		      size_t len, uint64_t off)
{
	int err;

	if (!st->buf)
		return hubfs_cache_obj_pwrite(st->obj->cobj, p, len, off);
	while (len > 0) {
		size_t n = st->buf_cap - st->buf_len < len
				   ? st->buf_cap - st->buf_len : len;

		if (st->buf_len == 0)
			st->buf_off = off;
		memcpy(st->buf + st->buf_len, p, n);
		st->buf_len += n;
		p += n;
		off += n;
		len -= n;
		if (st->buf_len == st->buf_cap) {
			err = sink_flush(st);
			if (err)
				return err;
		}
	}
	return 0;
}

/* Commit block @idx of @st's run and let its waiters go. */
static int commit_block(struct sink_state *st, uint64_t idx,
			const struct hubfs_cache_sum *sum)
{
	struct fs_object *obj = st->obj;
	int err = hubfs_cache_block_commit_since(obj->cobj, idx, sum, st->gen);

	if (err)
		return err;
	pthread_mutex_lock(&obj->lock);
	st->run->next = idx + 1;
	pthread_cond_broadcast(&obj->cond);
	pthread_mutex_unlock(&obj->lock);
	return 0;
}

static int sink_to_cache(void *arg, uint64_t off, const void *data,
			 size_t len)
{
	struct sink_state *st = arg;
	struct fs_object *obj = st->obj;
	const unsigned char *p = data;
	int err;

	while (len > 0) {
		uint64_t blen = block_len(obj, st->block);
		size_t n = blen - st->fill < len ? (size_t)(blen - st->fill)
						 : len;

		if (off != st->block * BS + st->fill)
			return -EIO;	/* the Hub client broke its order */
		err = sink_write(st, p, n, off);
		if (err)
			return err;
		if (st->er && st->er->got < st->er->len)
			early_feed(st->er, p, n, off);
		hubfs_cache_sum_add(&st->sum, p, n);
		if (st->md && !EVP_DigestUpdate(st->md, p, n))
			return -EIO;
		st->fill += n;
		p += n;
		off += n;
		len -= n;
		if (st->fill < blen)
			continue;
		err = sink_flush(st);
		if (err)
			return err;
		if (st->md) {
			st->sums[st->block - st->run->start] = st->sum;
		} else {
			err = commit_block(st, st->block, &st->sum);
			if (err)
				return err;
		}
		st->block++;
		st->fill = 0;
		memset(&st->sum, 0, sizeof(st->sum));
	}
	return 0;
}

/* The whole object arrived in one run: check it, then commit it. */
static int commit_verified(struct sink_state *st)
{
	struct fs_object *obj = st->obj;
	uint64_t i;
	int err;

	if (!content_hash_matches(obj, st->md)) {
		content_mismatch(obj);
		hubfs_err_set("the content of %s does not match its %s",
			      obj->path, obj->lfs ? "sha256" : "blob id");
		return -EIO;
	}
	for (i = st->run->start; i < st->run->end; i++) {
		err = commit_block(st, i, &st->sums[i - st->run->start]);
		if (err)
			return err;
	}
	set_verified(obj, st->wfail);
	hubfs_cache_obj_set_verified(obj->cobj);
	return 0;
}

/*
 * The cache refused blocks this run wrote (it is full of blocks in use):
 * their bytes count against no limit but take disk space, so give it
 * back, sparing any block that is stored (another process may have
 * committed the same block meanwhile, or pages of it are being read).
 */
static void punch_uncommitted(struct fs_object *obj, struct fs_run *run,
			      const struct sink_state *st)
{
	uint64_t idx, first;

	pthread_mutex_lock(&obj->lock);
	first = run->next;
	pthread_mutex_unlock(&obj->lock);
	for (idx = first; idx * BS < st->block * BS + st->fill; idx++) {
		if (hubfs_cache_block_stored(obj->cobj, idx) != 0)
			continue;
		fallocate(hubfs_cache_obj_fd(obj->cobj),
			  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)(idx * BS), (off_t)block_len(obj, idx));
	}
}

/*
 * Fetch blocks [@from, @to) of @run into the cache, committing each as
 * its bytes are written.  Reporting a failure is the caller's.
 */
static int fetch_blocks(struct fs_object *obj, struct fs_run *run,
			uint64_t from, uint64_t to, struct early_read *er)
{
	struct fs_reader *r = obj->reader;
	struct sink_state st = {
		.obj = obj, .run = run, .block = from,
		.gen = hubfs_cache_obj_gen(obj->cobj),
		.wfail = hubfs_cache_obj_write_failures(obj->cobj),
	};
	struct hubfs_hub_file file = {
		.commit = obj->commit, .path = obj->path, .key = obj->key,
		.lfs = obj->lfs, .size = obj->size,
	};
	uint64_t off = from * BS;
	uint64_t end = to * BS < obj->size ? to * BS : obj->size;
	int err = 0;

	if (fetch_whole(obj) && from == 0 && to == obj->nblocks) {
		st.md = content_hash_new(obj);
		st.sums = hubfs_calloc(to - from, sizeof(*st.sums));
		if (!st.md || !st.sums)
			err = -ENOMEM;
	} else if (er) {
		er->buf = hubfs_malloc(er->len);
		st.er = er->buf ? er : NULL;	/* without: answered later */
	}
	if (!err)
		err = hubfs_cache_reserve(r->cache, end - off);
	if (!err) {
		/* Without a buffer, bytes go straight to the file. */
		st.buf_cap = end - off < SINK_BUF_MAX ? (size_t)(end - off)
						      : SINK_BUF_MAX;
		st.buf = hubfs_malloc(st.buf_cap);
		err = hubfs_hub_read_range(r->hub, &file, off, end - off,
					   sink_to_cache, &st);
	}
	if (!err && st.md)
		err = commit_verified(&st);
	if (err == -ENOSPC)
		punch_uncommitted(obj, run, &st);
	EVP_MD_CTX_free(st.md);
	hubfs_free(st.sums);
	hubfs_free(st.buf);
	return err;
}

/* Fetch a run the reading thread needs; consumes the runner's
 * reference.  Failures reach the FUSE layer, which logs them. */
static void run_fetch(struct fs_object *obj, struct fs_run *run,
		      struct early_read *er)
{
	int err = fetch_blocks(obj, run, run->start, run->end, er);

	run_finish(obj, run, err);
	if (!err)
		hash_advance(obj);
}

static void spend(struct fs_object *obj, bool all);

/*
 * Readahead, in a worker; consumes the runner's reference.  The run's
 * blocks were not known present when it was queued, but after a restart
 * many are stored and only wait for their first check: check those here,
 * so a reading thread finds them confirmed instead of reading and
 * checking them itself, and fetch the others.  Either way run->next
 * advances block by block, in order.  A commit refused after a drop
 * (-EAGAIN) ends it too, and so does a failed check, with
 * -EAGAIN: whoever needs the block checks it again and reports it.
 * Failed fetches, which nobody may be waiting for, are logged here.
 */
static void run_ahead(struct fs_object *obj, struct fs_run *run)
{
	bool verified = atomic_load(&obj->verified);
	uint64_t idx = run->start, to;
	int err = 0, p;

	while (!err && idx < run->end) {
		p = hubfs_cache_block_present(obj->cobj, idx);
		if (p == 1) {
			pthread_mutex_lock(&obj->lock);
			run->next = ++idx;
			pthread_cond_broadcast(&obj->cond);
			pthread_mutex_unlock(&obj->lock);
			continue;
		}
		if (p < 0) {
			err = -EAGAIN;
			break;
		}
		for (to = idx + 1; to < run->end &&
		     hubfs_cache_block_stored(obj->cobj, to) == 0; to++)
			;
		err = fetch_blocks(obj, run, idx, to, NULL);
		if (err && err != -ENOSPC && err != -EAGAIN)
			hlog(LOG_ERR, "%s: fetching bytes %llu-%llu failed: "
			     "%s (%s)", obj->path,
			     (unsigned long long)(idx * BS),
			     (unsigned long long)(to * BS < obj->size
						  ? to * BS : obj->size) - 1,
			     strerror(-err), hubfs_err_or("no detail"));
		idx = to;
	}
	run_finish(obj, run, err);
	if (!err)
		hash_advance(obj);
	/* The hash has just reached the end: what readers finished before
	 * it got there waits for no further read (there may be none), and
	 * a worker can wait for the disk. */
	if (!verified && atomic_load(&obj->verified))
		spend(obj, true);
}

static struct fs_run *run_covering(struct fs_object *obj, uint64_t idx)
{
	struct fs_run *run;

	for (run = obj->runs; run; run = run->link)
		if (idx >= run->next && idx < run->end)
			return run;
	return NULL;
}

/* Create a run for blocks [start, end) and put it on the list; the
 * caller gets one reference (the runner's). */
static struct fs_run *run_new(struct fs_object *obj, uint64_t start,
			      uint64_t end)
{
	struct fs_run *run = hubfs_calloc(1, sizeof(*run));

	if (!run)
		return NULL;
	run->start = run->next = start;
	run->end = end;
	run->refs = 2;
	run->link = obj->runs;
	obj->runs = run;
	return run;
}

/* Queue a run for the workers.  Readahead runs are refused when the
 * queue is full; needed runs never are.  Returns false if refused. */
static bool queue_run(struct fs_object *obj, struct fs_run *run, bool ra)
{
	struct fs_reader *r = obj->reader;
	struct job *job = hubfs_malloc(sizeof(*job));

	if (!job)
		return false;
	pthread_mutex_lock(&r->lock);
	if (r->stop || (ra && r->qlen >= r->opts.queue_max)) {
		pthread_mutex_unlock(&r->lock);
		hubfs_free(job);
		return false;
	}
	obj->refs++;
	job->obj = obj;
	job->run = run;
	job->next = NULL;
	if (r->qtail)
		r->qtail->next = job;
	else
		r->qhead = job;
	r->qtail = job;
	if (ra)
		r->qlen++;
	pthread_cond_signal(&r->qcond);
	pthread_mutex_unlock(&r->lock);
	return true;
}

static void *worker_main(void *arg)
{
	struct fs_reader *r = arg;

	for (;;) {
		struct job *job;

		pthread_mutex_lock(&r->lock);
		while (!r->qhead && !r->stop)
			pthread_cond_wait(&r->qcond, &r->lock);
		if (!r->qhead) {
			pthread_mutex_unlock(&r->lock);
			return NULL;
		}
		job = r->qhead;
		r->qhead = job->next;
		if (!r->qhead)
			r->qtail = NULL;
		if (r->qlen > 0)
			r->qlen--;
		pthread_mutex_unlock(&r->lock);
		if (r->stop)
			run_finish(job->obj, job->run, -ECANCELED);
		else
			run_ahead(job->obj, job->run);
		fs_object_put(job->obj);
		hubfs_free(job);
	}
}

/* --- reader ------------------------------------------------------------- */

int fs_reader_new(struct fs_reader **out, struct hubfs_hub *hub,
		  struct hubfs_cache *cache, const struct fs_reader_opts *opts)
{
	struct fs_reader *r = hubfs_calloc(1, sizeof(*r));
	unsigned int i;

	if (!r)
		return -ENOMEM;
	r->hub = hub;
	r->cache = cache;
	r->opts = *opts;
	if (r->opts.max_run_blocks == 0)
		r->opts.max_run_blocks = 1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->qcond, NULL);
	r->threads = hubfs_calloc(opts->workers ? opts->workers : 1,
				  sizeof(*r->threads));
	if (!r->threads) {
		hubfs_free(r);
		return -ENOMEM;
	}
	for (i = 0; i < (opts->workers ? opts->workers : 1); i++) {
		int err = pthread_create(&r->threads[i], NULL, worker_main, r);

		if (err) {
			hubfs_err_set("cannot start fetch threads: %s",
				      strerror(err));
			r->nthreads = i;
			fs_reader_free(r);
			return -err;
		}
		r->nthreads = i + 1;
	}
	*out = r;
	return 0;
}

static void object_free(struct fs_object *obj);

void fs_reader_stop(struct fs_reader *r)
{
	unsigned int i;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->qcond);
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < r->nthreads; i++)
		pthread_join(r->threads[i], NULL);
	r->nthreads = 0;
}

void fs_reader_free(struct fs_reader *r)
{
	unsigned int i;

	if (!r)
		return;
	fs_reader_stop(r);
	hubfs_free(r->threads);
	/* Objects nobody put back (the caller's handles are gone). */
	for (i = 0; i < TABLE_SIZE; i++) {
		while (r->table[i]) {
			struct fs_object *obj = r->table[i];

			r->table[i] = obj->hnext;
			object_free(obj);
		}
	}
	pthread_cond_destroy(&r->qcond);
	pthread_mutex_destroy(&r->lock);
	hubfs_free(r);
}

static void object_free(struct fs_object *obj)
{
	if (!obj)
		return;
	hubfs_cache_obj_close(obj->cobj);
	fs_ledger_fini(&obj->ledger);
	EVP_MD_CTX_free(obj->md);
	pthread_mutex_destroy(&obj->hash_lock);
	pthread_mutex_destroy(&obj->ledger_lock);
	pthread_mutex_destroy(&obj->pages_lock);
	pthread_cond_destroy(&obj->cond);
	pthread_mutex_destroy(&obj->lock);
	hubfs_free(obj->commit);
	hubfs_free(obj->path);
	hubfs_free(obj);
}

static struct fs_object *object_new(struct fs_reader *r,
				    const struct fs_tree *tree,
				    const struct fs_node *node, int *err)
{
	struct fs_object *obj = hubfs_calloc(1, sizeof(*obj));

	*err = -ENOMEM;
	if (!obj)
		return NULL;
	obj->reader = r;
	snprintf(obj->key, sizeof(obj->key), "%s", fs_node_key(node));
	obj->commit = hubfs_strdup(tree->commit);
	obj->path = hubfs_strdup(node->path);
	obj->lfs = node->lfs;
	obj->size = node->size;
	obj->nblocks = (node->size + BS - 1) / BS;
	obj->refs = 1;
	pthread_mutex_init(&obj->lock, NULL);
	pthread_cond_init(&obj->cond, NULL);
	pthread_mutex_init(&obj->hash_lock, NULL);
	pthread_mutex_init(&obj->ledger_lock, NULL);
	pthread_mutex_init(&obj->pages_lock, NULL);
	if (!obj->commit || !obj->path)
		goto out_free;
	/* A whole-fetched object is read from its one block: no ledger. */
	if (obj->size > WHOLE_MAX &&
	    fs_ledger_init(&obj->ledger, obj->size) != 0)
		goto out_free;
	*err = hubfs_cache_obj_open(&obj->cobj, r->cache, obj->key, obj->size);
	if (*err)
		goto out_free;
	pthread_mutex_lock(&r->lock);
	for (unsigned int i = 0; i < r->nbad; i++)
		if (strcmp(r->bad[i].key, obj->key) == 0)
			obj->mismatches = r->bad[i].count;
	pthread_mutex_unlock(&r->lock);
	if (obj->mismatches >= 2)
		obj->failed = -EIO;
	if (hubfs_cache_obj_verified(obj->cobj) == 1)
		set_verified(obj, hubfs_cache_obj_write_failures(obj->cobj));
	return obj;

out_free:
	object_free(obj);
	return NULL;
}

int fs_reader_open(struct fs_object **out, struct fs_reader *r,
		   const struct fs_tree *tree, const struct fs_node *node)
{
	const char *key = fs_node_key(node);
	unsigned int b = key_bucket(key);
	struct fs_object *obj, *fresh;
	int err;

	pthread_mutex_lock(&r->lock);
	for (obj = r->table[b]; obj; obj = obj->hnext) {
		if (strcmp(obj->key, key) == 0) {
			obj->refs++;
			pthread_mutex_unlock(&r->lock);
			*out = obj;
			return 0;
		}
	}
	pthread_mutex_unlock(&r->lock);

	/* Opening touches the disk: do it unlocked, then recheck. */
	fresh = object_new(r, tree, node, &err);
	if (!fresh)
		return err;
	pthread_mutex_lock(&r->lock);
	for (obj = r->table[b]; obj; obj = obj->hnext) {
		if (strcmp(obj->key, key) == 0) {
			obj->refs++;
			pthread_mutex_unlock(&r->lock);
			object_free(fresh);
			*out = obj;
			return 0;
		}
	}
	fresh->hnext = r->table[b];
	r->table[b] = fresh;
	pthread_mutex_unlock(&r->lock);
	*out = fresh;
	return 0;
}

void fs_object_get(struct fs_object *obj)
{
	pthread_mutex_lock(&obj->reader->lock);
	obj->refs++;
	pthread_mutex_unlock(&obj->reader->lock);
}

void fs_object_put(struct fs_object *obj)
{
	struct fs_reader *r;
	struct fs_object **p;

	if (!obj)
		return;
	r = obj->reader;
	pthread_mutex_lock(&r->lock);
	if (--obj->refs > 0) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	for (p = &r->table[key_bucket(obj->key)]; *p; p = &(*p)->hnext) {
		if (*p == obj) {
			*p = obj->hnext;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	object_free(obj);
}

/* Queue readahead runs for the blocks [idx, end) not known present,
 * without touching the disk here: the workers check the stored ones and
 * fetch the rest (run_ahead).  Returns the first block not asked for. */
static uint64_t queue_readahead(struct fs_object *obj, uint64_t idx,
				uint64_t end)
{
	struct fs_reader *r = obj->reader;

	while (idx < end) {
		uint64_t start;
		struct fs_run *run;

		if (hubfs_cache_block_known(obj->cobj, idx)) {
			idx++;
			continue;
		}
		pthread_mutex_lock(&obj->lock);
		if (run_covering(obj, idx)) {
			pthread_mutex_unlock(&obj->lock);
			idx++;
			continue;
		}
		start = idx++;
		while (idx < end && idx - start < r->opts.max_run_blocks &&
		       !run_covering(obj, idx) &&
		       !hubfs_cache_block_known(obj->cobj, idx))
			idx++;
		run = run_new(obj, start, idx);
		pthread_mutex_unlock(&obj->lock);
		if (!run)
			break;
		if (!queue_run(obj, run, true)) {
			run_finish(obj, run, -EAGAIN);
			idx = start;
			break;
		}
	}
	return idx;
}

/* Wait until block @idx of @run is committed or the run is over. */
static int run_wait(struct fs_object *obj, struct fs_run *run, uint64_t idx)
{
	int err = 0;

	while (!run->done && run->next <= idx)
		pthread_cond_wait(&obj->cond, &obj->lock);
	if (run->next <= idx)
		err = run->err ? run->err : -EIO;
	return err;
}

/* Whether the FS_STREAM_MIN_SEQ bytes before block @b are present or
 * being fetched, from what is in memory only.  obj->lock held. */
static bool swept_before(struct fs_object *obj, uint64_t b)
{
	uint64_t n = FS_STREAM_MIN_SEQ / BS, idx;

	if (b < n)
		return false;
	for (idx = b - n; idx < b; idx++)
		if (!hubfs_cache_block_known(obj->cobj, idx) &&
		    !run_covering(obj, idx))
			return false;
	return true;
}

/* How far the content has been hashed, in bytes; read without locks. */
static uint64_t hashed_bytes(struct fs_object *obj)
{
	uint64_t n = atomic_load(&obj->hash_next) * BS;

	return atomic_load(&obj->verified) || n > obj->size ? obj->size : n;
}

bool fs_reader_advise(struct fs_object *obj, struct fs_stream *st,
		      uint64_t off, size_t size)
{
	uint64_t end, from, to, asked;

	if (off >= obj->size || size == 0)
		return false;
	if (obj->size <= WHOLE_MAX)
		return false;
	end = obj->size - off < size ? obj->size : off + size;
	pthread_mutex_lock(&obj->ledger_lock);
	fs_ledger_asked(&obj->ledger, off, end - off);
	pthread_mutex_unlock(&obj->ledger_lock);
	fs_stream_update(st, off, end, obj->nblocks,
			 obj->reader->opts.max_window_blocks, &from, &to);
	if (from < to) {
		st->ra_next = queue_readahead(obj, from, to);
		return true;
	}
	if (st->window)
		return true;	/* sequential: its own readahead will come */
	/* Not this handle's stream: perhaps its readers' sweep together. */
	pthread_mutex_lock(&obj->lock);
	fs_sweep_update(&obj->sweep, swept_before(obj, off / BS),
			(end - 1) / BS, obj->nblocks,
			obj->reader->opts.max_window_blocks, &from, &to);
	if (from < to)
		obj->sweep.ra_next = to;	/* claimed: asked for below */
	pthread_mutex_unlock(&obj->lock);
	if (from >= to)
		return true;
	asked = queue_readahead(obj, from, to);
	if (asked < to) {	/* the queue was full */
		pthread_mutex_lock(&obj->lock);
		if (obj->sweep.ra_next == to)
			obj->sweep.ra_next = asked;
		pthread_mutex_unlock(&obj->lock);
	}
	return true;
}

/* Act on what the ledger named: see "Pages" above. */
static void give_back(struct fs_object *obj, const struct fs_spent *spent)
{
	unsigned int i;

	for (i = 0; i < spent->nwrite; i++)
		hubfs_cache_obj_writeback(obj->cobj, spent->write[i].from,
					  spent->write[i].to -
						  spent->write[i].from);
	if (!spent->ndrop)
		return;
	/* Another thread may not have written back what it was told to yet
	 * (a handle's close drains the ledger while a last read is being
	 * released): writing back clean pages costs nothing, and only clean
	 * pages can be given back. */
	pthread_mutex_lock(&obj->pages_lock);
	for (i = 0; i < spent->ndrop && !obj->pages_bad; i++) {
		const struct fs_range *r = &spent->drop[i];

		hubfs_cache_obj_writeback(obj->cobj, r->from, r->to - r->from);
		if (hubfs_cache_obj_release_pages(obj->cobj, r->from,
						  r->to - r->from) == 0)
			continue;
		writes_failed(obj);
	}
	pthread_mutex_unlock(&obj->pages_lock);
}

/* Give back what the readers are done with; @all: without the lag, and
 * all of it.  With the lag, once: what this call writes back is given
 * back by a later one, when the disk has had time to take it. */
static void spend(struct fs_object *obj, bool all)
{
	struct fs_spent spent;

	if (obj->size <= WHOLE_MAX)
		return;		/* no ledger */
	do {
		pthread_mutex_lock(&obj->ledger_lock);
		fs_ledger_spent(&obj->ledger, hashed_bytes(obj), all, &spent);
		pthread_mutex_unlock(&obj->ledger_lock);
		give_back(obj, &spent);
	} while (all && (spent.nwrite || spent.ndrop));
}

void fs_reader_release(struct fs_object *obj, uint64_t off, size_t size)
{
	bool verified = atomic_load(&obj->verified), pending;

	pthread_mutex_lock(&obj->ledger_lock);
	pending = fs_ledger_read(&obj->ledger, off, size, verified);
	pthread_mutex_unlock(&obj->ledger_lock);
	/* While the hash runs, this read may be the one that ended it, and
	 * then has all that was read in full to give back.  Once the hash
	 * is done, no later read may come to give back what this one
	 * writes back: all of it goes now. */
	if (pending || !verified)
		spend(obj, verified);
}

void fs_reader_close(struct fs_object *obj)
{
	spend(obj, true);
}

/* The part of block @idx a read of [@off, @end) needs: all of it unless
 * the read ends inside it.  Checking only that part of a stored block
 * spares a small read the check of the whole block. */
static void block_span(const struct fs_object *obj, uint64_t idx,
		       uint64_t off, uint64_t end, uint64_t *s, uint64_t *n)
{
	uint64_t b = idx * BS, e = b + block_len(obj, idx);

	if (off >= e || end <= b) {	/* fetch_whole's other blocks */
		off = b;
		end = e;
	}
	*s = off > b ? off : b;
	*n = (end < e ? end : e) - *s;
}

/* Make bytes [@from, @to) present, fetching the missing blocks of
 * [@b0, @b1], which hold them.  @er: a read to answer from the transfer
 * if one run of ours covers it all. */
static int ensure_blocks(struct fs_object *obj, uint64_t b0, uint64_t b1,
			 uint64_t from, uint64_t to, struct early_read *er)
{
	struct fs_reader *r = obj->reader;
	uint64_t idx, s, n;
	int err = 0, p;

	for (idx = b0; idx <= b1 && !err; idx++) {
		struct fs_run *run, *mine = NULL;

		block_span(obj, idx, from, to, &s, &n);
		if (hubfs_cache_span_known(obj->cobj, s, n))
			continue;
		/* A worker checking or fetching it: wait rather than read
		 * and check it here as well. */
		pthread_mutex_lock(&obj->lock);
		run = run_covering(obj, idx);
		if (!run) {
			pthread_mutex_unlock(&obj->lock);
			p = hubfs_cache_span_present(obj->cobj, s, n);
			if (p < 0)
				return p;
			if (p == 1)
				continue;
			pthread_mutex_lock(&obj->lock);
			run = run_covering(obj, idx);
		}
		if (!run) {
			uint64_t end = idx + 1;

			/* Committed since we looked?  (A run's blocks leave
			 * run_covering() once committed.) */
			p = hubfs_cache_span_present(obj->cobj, s, n);
			if (p != 0) {
				pthread_mutex_unlock(&obj->lock);
				if (p < 0)
					return p;
				continue;
			}
			/* Fetch from here up to the first block that is
			 * present or already on its way. */
			while (end <= b1 &&
			       end - idx < r->opts.max_run_blocks &&
			       !run_covering(obj, end) &&
			       hubfs_cache_block_present(obj->cobj, end) == 0)
				end++;
			mine = run = run_new(obj, idx, end);
			if (!run) {
				pthread_mutex_unlock(&obj->lock);
				return -ENOMEM;
			}
		}
		run->refs++;	/* ours, while we wait */
		pthread_mutex_unlock(&obj->lock);
		if (mine && er && idx == b0 && mine->end > b1) {
			/* Once answered, the caller's handle (and its
			 * reference) may go at any time. */
			fs_object_get(obj);
			er->held = true;
			run_fetch(obj, mine, er);
		} else if (mine) {
			run_fetch(obj, mine, NULL);
		}
		pthread_mutex_lock(&obj->lock);
		err = run_wait(obj, run, idx);
		run_put(run);
		pthread_mutex_unlock(&obj->lock);
		if (!mine && (err == -EAGAIN || err == -ECANCELED)) {
			/* Readahead that was never sent, or whose commit
			 * a drop refused: fetch it here. */
			err = 0;
			idx--;
		}
	}
	return err;
}

/*
 * Content that once failed its hash is served again only after all of it
 * has been fetched and has matched: fetch everything, hash it, and fail
 * for good on a second mismatch.
 */
static int verify_whole(struct fs_object *obj)
{
	static __thread unsigned char buf[HASH_CHUNK];
	uint64_t idx, since = hubfs_cache_obj_write_failures(obj->cobj);
	EVP_MD_CTX *md;
	int err;

	err = ensure_blocks(obj, 0, obj->nblocks - 1, 0, obj->size, NULL);
	if (err)
		return err;
	pthread_mutex_lock(&obj->hash_lock);
	if (atomic_load(&obj->verified)) {
		pthread_mutex_unlock(&obj->hash_lock);
		return 0;
	}
	md = content_hash_new(obj);
	err = md ? 0 : -ENOMEM;
	for (idx = 0; !err && idx < obj->nblocks; idx++) {
		uint64_t done = 0, len = block_len(obj, idx);

		while (!err && done < len) {
			size_t n = len - done < HASH_CHUNK ? len - done
							   : HASH_CHUNK;

			if (hubfs_cache_obj_pread(obj->cobj, buf, n,
						  idx * BS + done) != (ssize_t)n ||
			    !EVP_DigestUpdate(md, buf, n))
				err = -EIO;
			done += n;
		}
	}
	if (!err && content_hash_matches(obj, md)) {
		set_verified(obj, since);
		hubfs_cache_obj_set_verified(obj->cobj);
	} else if (!err) {
		err = -EILSEQ;
	}
	EVP_MD_CTX_free(md);
	pthread_mutex_unlock(&obj->hash_lock);
	if (err == -EILSEQ)	/* a mismatch, reported here */
		err = hashed_mismatch(obj, since);
	return err;
}

/* The blocks a read of [@off, @off + @avail) fetches: all of them for an
 * object fetched whole. */
static void read_span(struct fs_object *obj, uint64_t off, uint64_t avail,
		      uint64_t *b0, uint64_t *b1)
{
	bool whole = fetch_whole(obj);

	*b0 = whole ? 0 : off / BS;
	*b1 = whole ? obj->nblocks - 1 : (off + avail - 1) / BS;
}

/* A small object is served only once checked whole: a read that fetched
 * its own blocks after another thread dropped the others has not been.
 * -EAGAIN if it still is not. */
static int small_settle(struct fs_object *obj)
{
	int err;

	if (obj->size > WHOLE_MAX || checked_whole(obj))
		return 0;
	err = ensure_blocks(obj, 0, obj->nblocks - 1, 0, obj->size, NULL);
	if (err == 0)
		err = hash_settle(obj);
	if (err == 0 && !checked_whole(obj))
		err = -EAGAIN;
	return err;
}

int fs_reader_prepare(struct fs_object *obj, uint64_t off, size_t size,
		      int *fd, size_t *len, const struct fs_early *early)
{
	struct early_read er = { .early = early };
	uint64_t b0, b1, idx, avail;
	uint64_t wfail = hubfs_cache_obj_write_failures(obj->cobj);
	bool suspect;
	int err, try;

	pthread_mutex_lock(&obj->lock);
	err = obj->failed;
	suspect = obj->mismatches > 0;
	pthread_mutex_unlock(&obj->lock);
	if (err)
		return err;
	if (off >= obj->size || size == 0) {
		*fd = hubfs_cache_obj_fd(obj->cobj);
		*len = 0;
		return 0;
	}
	if (suspect && !atomic_load(&obj->verified)) {
		err = verify_whole(obj);
		if (err)
			return err == -EAGAIN ? -ENOSPC : err;
	}
	avail = obj->size - off < size ? obj->size - off : size;
	read_span(obj, off, avail, &b0, &b1);
	er.off = off;
	er.len = (size_t)avail;
	/* A read that may complete the object waits for the hash
	 * (hash_settle()), so it is not answered from the transfer. */
	if (!atomic_load(&obj->verified) &&
	    hubfs_cache_obj_known(obj->cobj) + (b1 - b0 + 1) >= obj->nblocks)
		early = NULL;
	err = ensure_blocks(obj, b0, b1, off, off + avail,
			    early ? &er : NULL);
	if (err == 0)
		err = hash_settle(obj);
	hubfs_free(er.buf);
	if (er.len && er.got == er.len) {
		/* What failed after the answer (storing the blocks) costs
		 * a later read a fetch, not this one its bytes. */
		err = 1;
	}
	/* The bytes present may be the disk's, not the ones stored: fetch
	 * them again, once (just written, they are in memory when the reply
	 * reads them), and if writes keep failing, read around the cache.
	 * -EAGAIN: a fetch of ours was refused by a drop (of a failed write,
	 * perhaps among its bytes). */
	for (try = 0;; try++) {
		if (err == 0)
			err = small_settle(obj);
		if (err == 0 && writes_failed_since(obj, wfail)) {
			pthread_mutex_lock(&obj->pages_lock);
			writes_failed(obj);
			pthread_mutex_unlock(&obj->pages_lock);
			err = -EAGAIN;
		}
		if (err != -EAGAIN)
			break;
		if (try) {
			err = -ENOSPC;
			break;
		}
		wfail = hubfs_cache_obj_write_failures(obj->cobj);
		read_span(obj, off, avail, &b0, &b1);	/* may be whole now */
		err = ensure_blocks(obj, b0, b1, off, off + avail, NULL);
		if (err == 0)
			err = hash_settle(obj);
	}
	if (err >= 0)
		for (idx = b0; idx <= b1; idx++)
			hubfs_cache_block_touch(obj->cobj, idx);
	if (err == 0)
		*fd = hubfs_cache_obj_fd(obj->cobj);
	if (err >= 0)
		*len = (size_t)avail;
	if (er.held)
		fs_object_put(obj);	/* may be the last: @obj is gone */
	return err;
}

struct direct_state {
	unsigned char *buf;
	uint64_t off;
};

static int sink_to_buffer(void *arg, uint64_t off, const void *data,
			  size_t len)
{
	struct direct_state *st = arg;

	memcpy(st->buf + (off - st->off), data, len);
	return 0;
}

ssize_t fs_reader_read_direct(struct fs_object *obj, void *buf, size_t size,
			      uint64_t off)
{
	struct hubfs_hub_file file = {
		.commit = obj->commit, .path = obj->path, .key = obj->key,
		.lfs = obj->lfs, .size = obj->size,
	};
	struct direct_state st = { .buf = buf, .off = off };
	int err;

	if (off >= obj->size || size == 0)
		return 0;
	if (size > obj->size - off)
		size = (size_t)(obj->size - off);
	err = hubfs_hub_read_range(obj->reader->hub, &file, off, size,
				   sink_to_buffer, &st);
	return err ? err : (ssize_t)size;
}
