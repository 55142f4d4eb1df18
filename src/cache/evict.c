/*
 * Making room: hubfs_cache_reserve() and the eviction pass.
 *
 * DESIGN
 *
 * What it owns.  Nothing that outlives a call: one struct cache_evict
 * records what a pass took (the victims, i.e. the objects looked at, and
 * the block rows taken from them) between the transaction that deletes
 * the rows and the file work that follows it.
 *
 * The limit.  max_bytes bounds the usage row's byte count after every
 * transaction.  hubfs_cache_reserve() makes room ahead of a fetch, but a
 * reservation is not held (the contract has no way to give one back), so
 * hubfs_cache_block_commit() checks again in its own transaction and
 * evicts there if another fetch used the room first.  Both run
 * cache_evict_txn() inside a BEGIN IMMEDIATE transaction, so two
 * processes never evict against the same stale total.
 *
 * A pass.  Block rows are read in LRU order (atime, then key and idx, by
 * the blocks_lru index).  The first time a pass meets an object it tries
 * to take it: open its data file afresh and flock(LOCK_EX | LOCK_NB).  An
 * object open anywhere (LOCK_SH held, by any process or by another open
 * file description in this one) refuses, and is skipped for the rest of
 * the pass.  An object whose file is missing is taken without a lock:
 * its rows describe bytes that are gone.  Rows are taken until enough
 * bytes are freed; if the pass runs out of rows first it fails with
 * -ENOSPC and the caller rolls back.  Otherwise the taken rows are
 * deleted, and each taken object either loses its verified flag (its
 * content will be fetched again, unchecked) or, if no block is left, its
 * objects row.
 *
 * After the transaction.  Only once the deletions are committed are the
 * bytes freed: holes are punched over the taken blocks
 * (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), or the file is unlinked
 * if the object has no block left.  The exclusive locks are dropped last,
 * so no opener sees the object between the commit and the punch.  This
 * order keeps the invariant that a row exists only while its bytes do; a
 * crash in between leaves bytes without rows, which are overwritten when
 * the block is fetched again, or swept with the file.
 *
 * Locks.  Called with conn[CONN_BLOCKS].lock held and a write
 * transaction open; takes no other lock.  flock() is only tried, never
 * waited for, so an evictor cannot deadlock with an opener.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_int.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

struct cache_victim {
	char key[CACHE_KEY_MAX + 1];
	int fd; /* holds LOCK_EX; -1 if the data file is missing */
	bool pinned; /* open somewhere, or not ours to touch: skipped */
	bool gone; /* no block left after the pass: delete the file */
};

struct cache_evict_block {
	struct cache_victim *victim;
	uint64_t idx;
	uint64_t len;
};

/* Grow the array *@arr of *@cap elements of @size bytes to hold @len + 1. */
static int grow(void *arr, size_t *cap, size_t len, size_t size)
{
	void **p = arr;
	size_t want = *cap ? *cap * 2 : 16;
	void *bigger;

	if (len < *cap)
		return 0;
	bigger = hubfs_realloc(*p, want * size);
	if (!bigger)
		return -ENOMEM;
	*p = bigger;
	*cap = want;
	return 0;
}

/* Try to take the object @key: sets pinned if it cannot be taken. */
static void victim_take(struct hubfs_cache *cache, struct cache_victim *v)
{
	char rel[CACHE_REL_MAX];
	int err;

	/* A key that is not a content key came from a damaged index; it
	 * names no file this cache made, so leave it alone. */
	if (!cache_key_ok(v->key)) {
		v->pinned = true;
		return;
	}
	cache_rel_path(rel, v->key);
	/* -ENOENT leaves fd at -1: the rows go, there are no bytes. */
	err = cache_file_lock(&v->fd, cache, rel, O_RDWR, LOCK_EX | LOCK_NB);
	if (err && err != -ENOENT)
		v->pinned = true; /* -EWOULDBLOCK: open somewhere */
}

/* The victim for @key, taking the object the first time it is met. */
static int victim_get(struct cache_victim **out, struct hubfs_cache *cache,
		      struct cache_evict *ev, const char *key)
{
	struct cache_victim *v = cache_map_get(&ev->by_key, key);

	if (v) {
		*out = v;
		return 0;
	}
	if (grow(&ev->victims, &ev->victims_cap, ev->nvictims,
		 sizeof(*ev->victims)))
		return -ENOMEM;
	v = hubfs_calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->fd = -1;
	snprintf(v->key, sizeof(v->key), "%s", key);
	if (cache_map_put(&ev->by_key, v->key, v)) {
		hubfs_free(v);
		return -ENOMEM;
	}
	ev->victims[ev->nvictims++] = v;
	victim_take(cache, v);
	*out = v;
	return 0;
}

/* Step through the LRU order collecting rows until @need bytes. */
static int evict_collect(struct hubfs_cache *cache, struct cache_conn *c,
			 uint64_t need, struct cache_evict *ev)
	HUBFS_REQUIRES(c->lock)
{
	struct cache_victim *v;
	const char *key;
	sqlite3_stmt *st;
	int ret = cache_stmt(&st, c, STMT_BLOCKS_LRU);

	if (ret)
		return ret;
	while (!ret && ev->freed < need) {
		ret = cache_step(c, st);
		if (ret <= 0)
			break;
		key = (const char *)sqlite3_column_text(st, 0);
		/* A damaged row's key must not be cut into another key:
		 * all such rows share the victim "", which is skipped. */
		if (!key || strlen(key) > CACHE_KEY_MAX)
			key = "";
		ret = victim_get(&v, cache, ev, key);
		if (ret || v->pinned)
			continue;
		ret = grow(&ev->blocks, &ev->blocks_cap, ev->nblocks,
			   sizeof(*ev->blocks));
		if (ret)
			break;
		ev->blocks[ev->nblocks].victim = v;
		ev->blocks[ev->nblocks].idx =
			(uint64_t)sqlite3_column_int64(st, 1);
		ev->blocks[ev->nblocks].len =
			(uint64_t)sqlite3_column_int64(st, 2);
		ev->freed += ev->blocks[ev->nblocks++].len;
	}
	/* Stopped early (enough, or an error): end the statement's read. */
	sqlite3_reset(st);
	return ret < 0 ? ret : 0;
}

int cache_evict_txn(struct hubfs_cache *cache, struct cache_conn *c,
		    uint64_t need, bool partial, struct cache_evict *ev)
{
	sqlite3_stmt *st;
	int err = evict_collect(cache, c, need, ev);

	if (err)
		return err;
	if (ev->freed < need && !partial) {
		hubfs_err_set("cache full: %llu more bytes needed, %llu can "
			      "be freed; the rest is in use",
			      (unsigned long long)need,
			      (unsigned long long)ev->freed);
		return -ENOSPC;
	}
	for (size_t i = 0; i < ev->nblocks && !err; i++) {
		err = cache_stmt_text(&st, c, STMT_BLOCK_DEL,
				      ev->blocks[i].victim->key, NULL);
		if (err)
			break;
		sqlite3_bind_int64(st, 2, (sqlite3_int64)ev->blocks[i].idx);
		err = cache_exec(c, st);
	}
	for (size_t i = 0; i < ev->nvictims && !err; i++) {
		struct cache_victim *v = ev->victims[i];
		int any;

		if (v->pinned)
			continue;
		any = cache_has_blocks(c, v->key);
		if (any < 0)
			return any;
		v->gone = !any;
		err = cache_exec_key(c, any ? STMT_OBJ_UNVERIFY : STMT_OBJ_DEL,
				     v->key);
	}
	return err;
}

void cache_evict_finish(struct hubfs_cache *cache, struct cache_evict *ev,
			bool committed)
{
	char rel[CACHE_REL_MAX];

	for (size_t i = 0; committed && i < ev->nblocks; i++) {
		const struct cache_evict_block *b = &ev->blocks[i];

		/* The rows are gone; a file system that cannot punch
		 * holes keeps the bytes until the block is fetched again
		 * or the file is swept. */
		if (b->victim->fd >= 0 && !b->victim->gone)
			fallocate(b->victim->fd,
				  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  (off_t)(b->idx * HUBFS_CACHE_BLOCK_SIZE),
				  (off_t)b->len);
	}
	for (size_t i = 0; i < ev->nvictims; i++) {
		struct cache_victim *v = ev->victims[i];

		if (committed && v->gone && v->fd >= 0) {
			cache_rel_path(rel, v->key);
			unlinkat(cache->data_fd, rel, 0);
		}
		if (v->fd >= 0)
			close(v->fd); /* drops LOCK_EX */
		hubfs_free(v);
	}
	if (committed)
		atomic_fetch_add(&cache->evicted, ev->nblocks);
	hubfs_free(ev->victims);
	hubfs_free(ev->blocks);
	cache_map_free(&ev->by_key);
	*ev = (struct cache_evict)CACHE_EVICT_INIT;
}

/*
 * In one transaction, evict until @extra more bytes fit under @limit;
 * with @partial, as many as can go.  *@freed (may be NULL): bytes
 * evicted.
 */
static int evict_under(struct hubfs_cache *cache, uint64_t limit,
		       uint64_t extra, bool partial, uint64_t *freed)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	struct cache_evict ev = CACHE_EVICT_INIT;
	uint64_t used, blocks, got = 0;
	int err;

	/* Evict by the freshest atimes this process knows. */
	cache_touch_flush(cache);
	hubfs_mutex_lock(&c->lock);
	err = cache_begin(c);
	if (!err)
		err = cache_usage(c, &used, &blocks);
	if (!err && used + extra > limit) {
		err = cache_evict_txn(cache, c, used + extra - limit, partial,
				      &ev);
		got = ev.freed;
	}
	err = cache_end(c, err);
	cache_conn_unlock(cache, c);
	cache_evict_finish(cache, &ev, err == 0);
	if (!err && freed)
		*freed = got;
	return err;
}

int hubfs_cache_reserve(struct hubfs_cache *cache, uint64_t bytes)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	uint64_t used, blocks;
	int err;

	if (bytes > cache->max_bytes) {
		hubfs_err_set("cache: %llu bytes exceed the limit of %llu",
			      (unsigned long long)bytes,
			      (unsigned long long)cache->max_bytes);
		return -ENOSPC;
	}
	hubfs_mutex_lock(&c->lock);
	err = cache_usage(c, &used, &blocks);
	cache_conn_unlock(cache, c);
	if (err || used + bytes <= cache->max_bytes)
		return err;
	return evict_under(cache, cache->max_bytes, bytes, false, NULL);
}

int hubfs_cache_trim(struct hubfs_cache *cache, uint64_t max_bytes,
		     uint64_t *freed)
{
	return evict_under(cache, max_bytes, 0, true, freed);
}

/*
 * The block indexes of @key that have rows, as a bitmap of @nblocks bits
 * (*@bits, to free).  Called with c->lock held.
 */
static int rows_of(struct cache_conn *c, const char *key, uint64_t nblocks,
		   uint64_t **bits) HUBFS_REQUIRES(c->lock)
{
	uint64_t *map = hubfs_calloc(nblocks / 64 + 1, sizeof(*map));
	sqlite3_stmt *st;
	int ret;

	if (!map)
		return -ENOMEM;
	ret = cache_stmt_text(&st, c, STMT_BLOCKS_OF, key, NULL);
	if (!ret) {
		while ((ret = cache_step(c, st)) == 1) {
			uint64_t idx = (uint64_t)sqlite3_column_int64(st, 0);

			if (idx < nblocks)
				map[idx / 64] |= 1ull << (idx % 64);
		}
		sqlite3_reset(st);
	}
	if (ret < 0) {
		hubfs_free(map);
		return ret;
	}
	*bits = map;
	return 0;
}

/*
 * Sweep the data file @rel (of content key @key) if no process has it
 * open: unlink it if no block row names it, else punch out the bytes of
 * blocks without a row (left by a crash between an eviction's commit and
 * its punch, or by an interrupted fetch).  Adds to *@files and *@bytes
 * what was released.
 */
static int sweep_file(struct hubfs_cache *cache, const char *rel,
		      const char *key, uint64_t *files, uint64_t *bytes)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	uint64_t *bits = NULL, nblocks, i;
	struct stat st;
	bool gone = false;
	int fd, err;

	err = cache_file_lock(&fd, cache, rel, O_RDWR, LOCK_EX | LOCK_NB);
	if (err)
		return err == -EWOULDBLOCK || err == -ENOENT ||
		       err == -ESTALE ? 0 : err;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out_close;
	}
	nblocks = ((uint64_t)st.st_size + HUBFS_CACHE_BLOCK_SIZE - 1) /
		  HUBFS_CACHE_BLOCK_SIZE;
	hubfs_mutex_lock(&c->lock);
	err = cache_has_blocks(c, key);
	if (err == 0) {
		/* An empty object keeps its row: it is all there is. */
		gone = st.st_size > 0 &&
		       cache_exec_key(c, STMT_OBJ_DEL, key) == 0;
	} else if (err > 0) {
		err = rows_of(c, key, nblocks, &bits);
	}
	cache_conn_unlock(cache, c);
	if (err < 0)
		goto out_close;
	err = 0;
	/* Still under LOCK_EX: nobody reads or writes the file. */
	if (gone) {
		if (unlinkat(cache->data_fd, rel, 0) == 0) {
			*files += 1;
			*bytes += (uint64_t)st.st_blocks * 512;
		}
		goto out_close;
	}
	for (i = 0; bits && i < nblocks; i++) {
		off_t off = (off_t)(i * HUBFS_CACHE_BLOCK_SIZE), data;

		if (bits[i / 64] & (1ull << (i % 64)))
			continue;
		data = lseek(fd, off, SEEK_DATA);
		if (data < 0 || data >= off + HUBFS_CACHE_BLOCK_SIZE)
			continue;	/* a hole already */
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      off, HUBFS_CACHE_BLOCK_SIZE) == 0)
			*bytes += HUBFS_CACHE_BLOCK_SIZE;
	}
out_close:
	hubfs_free(bits);
	close(fd);
	return err;
}

int hubfs_cache_sweep(struct hubfs_cache *cache, uint64_t *files,
		      uint64_t *bytes)
{
	uint64_t nfiles = 0, nbytes = 0;
	char rel[CACHE_REL_MAX];
	int err = 0;

	for (int d = 0; d < 256 && !err; d++) {
		struct dirent *de;
		DIR *dir;
		int fd;

		snprintf(rel, sizeof(rel), "%02x", d);
		fd = openat(cache->data_fd, rel,
			    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			continue;
		}
		while (!err && (de = readdir(dir))) {
			/* Only files this cache names: a content key under
			 * the directory of its first two digits. */
			if (!cache_key_ok(de->d_name) ||
			    strncmp(de->d_name, rel, 2) != 0)
				continue;
			cache_rel_path(rel, de->d_name);
			err = sweep_file(cache, rel, de->d_name, &nfiles,
					 &nbytes);
			snprintf(rel, sizeof(rel), "%02x", d);
		}
		closedir(dir);
	}
	if (!err) {
		*files = nfiles;
		*bytes = nbytes;
	}
	return err;
}
