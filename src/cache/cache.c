/*
 * The block cache: cache handles, objects, blocks, LRU touches, stats.
 *
 * DESIGN
 *
 * What it owns.  A struct hubfs_cache owns the directory descriptors of
 * cache_dir and cache_dir/data, the SQLite connections (db.c), the table
 * of objects open in this process, the batch of pending LRU touches and
 * the counters.  Eviction lives in evict.c, trees and refs in index.c.
 *
 * On disk.  One sparse data file per object, data/AB/KEY, with block i at
 * offset i * HUBFS_CACHE_BLOCK_SIZE, written with pwrite().  A block's
 * row in the blocks table (key, idx, len, crc, atime, pages) is inserted
 * only after its bytes were written, by hubfs_cache_block_commit().
 * pages holds the CRC-32C of each HUBFS_CACHE_PAGE_SIZE page, and crc is
 * their combination, the block's own CRC-32C; rows of an older hubfs
 * have no pages.  The
 * objects table keeps each object's size and whether its whole content
 * hash was checked (verified); the usage row keeps the total length and
 * number of blocks, updated by triggers in the same transaction as the
 * block rows (db.c).  A file that already holds a whole content (a
 * committed stage) can become its key's data file as it is
 * (hubfs_cache_adopt()): it is linked in under the key, only if the key
 * has no data file yet, and its blocks are then committed like fetched
 * ones.
 *
 * Pinning.  An open object holds flock(LOCK_SH) on its data file, through
 * one descriptor shared by all its handles in this process.  An evictor,
 * in this process or another, takes an object only after flock(LOCK_EX |
 * LOCK_NB) on a descriptor of its own succeeded, so it never takes a
 * block from under an open object.  flock() locks belong to the open
 * file description, so this holds between two handles of one process
 * too.  Between open() and flock() an evictor may unlink the file, and a
 * lock on an unlinked inode pins nothing; cache_file_lock() therefore
 * checks after locking that the name still leads to the locked inode,
 * and the opener retries if not.
 *
 * Objects in memory.  Opening a key already open in this process shares
 * its struct cache_ent (refcounted, in the objs map keyed by key), and
 * with it the verified-block bitmap, so a block's CRC is checked once per
 * open, not once per read (and, through memos below, once per process).
 * An ent has three states, changed under obj_lock:
 *
 *   INIT --file locked, objects row checked--> READY --last close--> freed
 *     \--failure--> FAILED (out of the map; freed by its last ref)
 *
 * The opener inserts the ent in INIT and sets it up without holding
 * obj_lock (flock() may wait for an evictor); a second opener of the same
 * key waits on obj_cond until the ent leaves INIT.  On the last close the
 * ent leaves the map, its descriptor is closed (dropping the pin), and
 * if no process holds the object and it has no block left, its data file
 * and objects row are deleted (ent_sweep): eviction only visits blocks,
 * so a file whose fetch never committed a block would otherwise stay.
 *
 * The bitmap.  A bit is set by hubfs_cache_block_present() once the
 * block's bytes matched its row's length and CRC, or by
 * hubfs_cache_block_commit() (whose caller computed the CRC over the bytes
 * it wrote), and read without a lock afterwards.  A read that needs only
 * part of a block checks only its pages (hubfs_cache_span_present()):
 * ent.pages keeps, per block, the pages checked, and the block's bit is
 * set once they all are.  After a restart a 4 KiB read then reads back
 * and checks 16 KiB, not 256 KiB.  hubfs_cache_obj_drop() deletes the
 * rows and then clears the bits and the pages and bumps ent.gen, under
 * ent.lock; a check that started before the bump sets its bits only if
 * gen did not move, so no check that read the old bytes can leave a bit
 * set after a drop.  Eviction never touches an open object, and a
 * failed write of the data file drops the object (below), so nothing
 * else can make a set bit stale.  A row's pages are trusted only if
 * they combine into its crc; otherwise (or without pages) the block is
 * checked whole.
 *
 * Memos.  When an object's last handle here closes, the blocks it had
 * checked, the pages it had checked of other blocks (a 4 KiB reader checks
 * one page of each block it reads), and the CRCs of the rows they matched
 * are kept in a memo, up to CACHE_MEMO_MAX of them and CACHE_MEMO_BYTES in
 * all, the oldest dropped first.  The next open of the key with the same
 * size takes the memo, and a block (or those pages of it) whose row still
 * has the remembered length and CRC is present without its bytes being read
 * again: a row is only ever written after its bytes, with their CRC, so such
 * a row still describes bytes this process checked or wrote, or the same
 * content written again after an eviction.  The row is looked up (an evictor
 * may have deleted it and punched the bytes out), unless the index cannot
 * have lost a row since: each open reads the index's epoch once it has
 * pinned the object, PRAGMA data_version (which moves when another
 * connection, here or in another process, commits) and the block-deleting
 * statements prepared on CONN_BLOCKS, and the memo keeps its ent's.  Every
 * bit of the memo was true at some time after that epoch (checked, committed
 * or matched while pinned), so if the epoch is the same at the next open, no
 * row was deleted in between and the memo's bits and pages are the ent's at
 * once.  Bits (or pages) an ent only carried over from the memo it was
 * opened with held at that older epoch: a memo with any of them gets no
 * epoch, and its rows are looked up.  An open's own pages of a block win
 * over an older memo's bit for it, as they matched another row.  Readers
 * that open and close a file over and over (data loaders, one process per
 * sample) then check each block or page once per process, not once per open,
 * and while the index is unchanged do not look its row up either.
 *
 * A damaged block.  A row whose bytes are short or do not match its CRC
 * is deleted (only if the row is still the one checked: another process
 * may have just committed a fresh copy), the object loses its verified
 * flag, and the block is reported absent so the caller fetches it again.
 *
 * A failed write.  A page of the data file whose write to disk failed is
 * clean; the kernel may drop it and read the disk's stale bytes in its
 * place, where neither a bit nor the memo would look.  The kernel tells
 * each failure once per open file description: writes_check() asks on
 * ent.fd, under ent.wflock, and before anyone else may ask drops the
 * object's rows and bits, counting the failure in ent.wfail (odd until
 * the drop succeeds).  A reader compares that count before and after it
 * looked at the blocks.  Waiting for writeback goes through a second
 * description (ent.wbfd), whose hearing of failures nobody needs.  A
 * fetch commits its blocks with the generation it read before writing
 * them (hubfs_cache_block_commit_since()), checked in the commit's
 * transaction, as a drop moves gen in its own: a block written before
 * a drop is not recorded after it.
 *
 * LRU.  atime is wall-clock milliseconds, set on commit.  A touch only
 * appends (key, idx, now) to an in-memory batch, merged with the last
 * entry when it names the same block (sequential reads touch one block
 * many times); the batch is written in one transaction at most about
 * once a second (TOUCH_INTERVAL_MS), when it fills up, before an eviction
 * and at close.  A touch that finds no memory is dropped: it is a hint.
 *
 * Locks.
 *   obj_lock    the objs map and every ent's state, err and refs; taken
 *               with no other lock held
 *   touch_lock  the touch batch; taken with no other lock held
 *   conn.lock   one SQLite connection and its statements (db.c); one at a
 *               time, never across a disk sync or a callback
 *   ent.lock    an ent's gen and bitmap writes; a leaf
 *   ent.wlock   one pwrite() of block data at a time per data file (the
 *               kernel serialises them anyway); a leaf
 *   ent.wflock  every look at the data file's failed writes, and the drop
 *               that follows one (writes_check()); taken before conn.lock
 *               and ent.lock, never across a wait for writeback, but
 *               across a drop's transaction and checkpoint
 * No other lock is held across flock() waits, pread()/pwrite() of block
 * data, or checkpoints.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache_int.h"
#include "hubfs/buf.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

/* Most LRU touches kept in memory between two flushes. */
#define TOUCH_BATCH 4096
/* Longest a touch waits in memory while others keep arriving. */
#define TOUCH_INTERVAL_MS 1000
/* Bytes read at a time to check a block's CRC. */
#define CHECK_CHUNK (256u * 1024)
/* Blocks an adopt records per transaction: one transaction per block
 * was 0.22 s of recording a 2 GiB file. */
#define ADOPT_RUN 64
/* Times an opener retries when its data file is unlinked under it. */
#define OPEN_TRIES 64

/* --- small helpers ----------------------------------------------------- */

bool cache_key_ok(const char *key)
{
	size_t n;

	if (!key)
		return false;
	for (n = 0; key[n]; n++) {
		char ch = key[n];

		if (n == CACHE_KEY_MAX)
			return false;
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return false;
	}
	return n == 40 || n == 64;
}

void cache_rel_path(char rel[CACHE_REL_MAX], const char *key)
{
	rel[0] = key[0];
	rel[1] = key[1];
	rel[2] = '/';
	memcpy(rel + 3, key, strlen(key) + 1);
}

static int64_t clock_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cache_now_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

static uint64_t block_len(const struct cache_ent *ent, uint64_t idx)
{
	uint64_t off = idx * HUBFS_CACHE_BLOCK_SIZE;

	return ent->size - off < HUBFS_CACHE_BLOCK_SIZE ?
		       ent->size - off :
		       HUBFS_CACHE_BLOCK_SIZE;
}

static int bad_index(const struct cache_ent *ent, uint64_t idx)
{
	hubfs_err_set("cache: block %llu of %s: object has %llu blocks",
		      (unsigned long long)idx, ent->key,
		      (unsigned long long)ent->nblocks);
	return -EINVAL;
}

/* pread() all of @len unless the file ends first: bytes read or -errno. */
static ssize_t read_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			hubfs_err_set("cache: read: %s", strerror(errno));
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* --- the map ----------------------------------------------------------- */

static size_t map_hash(const char *key)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	while (*key)
		h = (h ^ (unsigned char)*key++) * 0x100000001b3ull;
	return (size_t)h;
}

static size_t map_find(const struct cache_map *map, const char *key)
{
	size_t i = map_hash(key) & (map->cap - 1);

	while (map->slots[i].key && strcmp(map->slots[i].key, key) != 0)
		i = (i + 1) & (map->cap - 1);
	return i;
}

void *cache_map_get(const struct cache_map *map, const char *key)
{
	if (!map->cap)
		return NULL;
	return map->slots[map_find(map, key)].val;
}

static int map_grow(struct cache_map *map)
{
	struct cache_map bigger = { .cap = map->cap ? map->cap * 2 : 16 };

	bigger.slots = hubfs_calloc(bigger.cap, sizeof(*bigger.slots));
	if (!bigger.slots)
		return -ENOMEM;
	for (size_t i = 0; i < map->cap; i++) {
		if (map->slots[i].key)
			bigger.slots[map_find(&bigger, map->slots[i].key)] =
				map->slots[i];
	}
	bigger.len = map->len;
	hubfs_free(map->slots);
	*map = bigger;
	return 0;
}

int cache_map_put(struct cache_map *map, const char *key, void *val)
{
	size_t i;

	/* Keep the load at most one half, so probes stay short. */
	if ((map->len + 1) * 2 > map->cap && map_grow(map))
		return -ENOMEM;
	i = map_find(map, key);
	assert(!map->slots[i].key);
	map->slots[i].key = key;
	map->slots[i].val = val;
	map->len++;
	return 0;
}

void cache_map_del(struct cache_map *map, const char *key)
{
	size_t mask = map->cap - 1, i, j;

	if (!map->cap || !map->slots[i = map_find(map, key)].key)
		return;
	/* Backward-shift deletion: move later members of the probe run
	 * into the hole whenever the hole lies on their way from home. */
	for (j = (i + 1) & mask; map->slots[j].key; j = (j + 1) & mask) {
		size_t home = map_hash(map->slots[j].key) & mask;

		if (((j - home) & mask) >= ((j - i) & mask)) {
			map->slots[i] = map->slots[j];
			i = j;
		}
	}
	map->slots[i].key = NULL;
	map->slots[i].val = NULL;
	map->len--;
}

void cache_map_free(struct cache_map *map)
{
	hubfs_free(map->slots);
	map->slots = NULL;
	map->cap = 0;
	map->len = 0;
}

/* --- the cache handle -------------------------------------------------- */

static void memo_free(struct cache_memo *memo)
{
	if (!memo)
		return;
	hubfs_free(memo->bits);
	hubfs_free(memo->pages);
	hubfs_free(memo->crcs);
	hubfs_free(memo);
}

static void cache_free(struct hubfs_cache *cache)
{
	if (!cache)
		return;
	while (cache->memos) {
		struct cache_memo *memo = cache->memos;

		cache->memos = memo->next;
		memo_free(memo);
	}
	cache_db_close(cache);
	if (cache->data_fd >= 0)
		close(cache->data_fd);
	if (cache->dir_fd >= 0)
		close(cache->dir_fd);
	hubfs_free(cache->touches);
	cache_map_free(&cache->objs);
	for (int i = 0; i < CONN_COUNT; i++)
		hubfs_mutex_destroy(&cache->conn[i].lock);
	pthread_cond_destroy(&cache->obj_cond);
	hubfs_mutex_destroy(&cache->touch_lock);
	hubfs_mutex_destroy(&cache->obj_lock);
	hubfs_free(cache);
}

static struct hubfs_cache *cache_new(uint64_t max_bytes)
{
	struct hubfs_cache *cache = hubfs_calloc(1, sizeof(*cache));
	int rc = 0;

	if (!cache)
		return NULL;
	cache->max_bytes = max_bytes;
	cache->dir_fd = -1;
	cache->data_fd = -1;
	/* glibc's mutex and condition initialisers with default attributes
	 * always succeed (pthread_mutex_init(3), pthread_cond_init(3)). */
	rc |= hubfs_mutex_init(&cache->obj_lock);
	rc |= hubfs_mutex_init(&cache->touch_lock);
	rc |= pthread_cond_init(&cache->obj_cond, NULL);
	for (int i = 0; i < CONN_COUNT; i++)
		rc |= hubfs_mutex_init(&cache->conn[i].lock);
	assert(rc == 0);
	(void)rc;
	return cache;
}

/* mkdir @name under @dirfd (AT_FDCWD: a path) unless it exists, then
 * open it as a directory. */
static int dir_open(int *out, int dirfd, const char *name)
{
	int fd;

	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST) {
		hubfs_err_set("cache: mkdir %s: %s", name, strerror(errno));
		return -errno;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		hubfs_err_set("cache: open %s: %s", name, strerror(errno));
		return -errno;
	}
	*out = fd;
	return 0;
}

int hubfs_cache_open(struct hubfs_cache **out, const char *dir,
		     uint64_t max_bytes)
{
	struct hubfs_buf path = HUBFS_BUF_INIT(PATH_MAX);
	struct hubfs_cache *cache = cache_new(max_bytes);
	uint64_t files, bytes;
	bool dropped = false;
	int err = -ENOMEM;

	if (!cache)
		goto out;
	err = dir_open(&cache->dir_fd, AT_FDCWD, dir);
	if (!err)
		err = dir_open(&cache->data_fd, cache->dir_fd, "data");
	if (!err)
		err = hubfs_buf_printf(&path, "%s/index.db", dir);
	if (!err)
		err = cache_db_open(cache, hubfs_buf_str(&path), &dropped);
	if (err)
		goto out;
	/* Best effort: what is left is swept by the next sweep. */
	if (dropped)
		hubfs_cache_sweep(cache, &files, &bytes);
	*out = cache;
	cache = NULL;
out:
	cache_free(cache);
	hubfs_buf_free(&path);
	return err;
}

void hubfs_cache_close(struct hubfs_cache *cache)
{
	if (!cache)
		return;
	cache_touch_flush(cache);
	hubfs_mutex_lock(&cache->obj_lock);
	assert(cache->objs.len == 0 && "objects still open");
	hubfs_mutex_unlock(&cache->obj_lock);
	cache_free(cache);
}

/* --- objects ----------------------------------------------------------- */

int cache_file_lock(int *out, struct hubfs_cache *cache, const char *rel,
		    int flags, int op)
{
	struct stat fst, pst;
	int fd, err;

	fd = openat(cache->data_fd, rel, flags | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		hubfs_err_set("cache: open %s: %s", rel, strerror(errno));
		return err;
	}
	while (flock(fd, op) < 0) {
		if (errno == EINTR)
			continue;
		err = -errno;
		if (err != -EWOULDBLOCK)
			hubfs_err_set("cache: flock %s: %s", rel,
				      strerror(errno));
		goto out_close;
	}
	if (fstat(fd, &fst) < 0 ||
	    fstatat(cache->data_fd, rel, &pst, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fst.st_ino != pst.st_ino || fst.st_dev != pst.st_dev) {
		err = -ESTALE;
		goto out_close;
	}
	*out = fd;
	return 0;
out_close:
	close(fd);
	return err;
}

static void ent_free(struct cache_ent *ent)
{
	if (!ent)
		return;
	if (ent->fd >= 0)
		close(ent->fd);
	if (ent->wbfd >= 0)
		close(ent->wbfd);
	hubfs_mutex_destroy(&ent->lock);
	hubfs_mutex_destroy(&ent->wlock);
	hubfs_mutex_destroy(&ent->wflock);
	hubfs_free(ent->bits);
	hubfs_free(ent->crcs);
	hubfs_free(ent->pages);
	memo_free(ent->memo);
	hubfs_free(ent);
}

static struct cache_ent *ent_new(const char *key, uint64_t size)
{
	struct cache_ent *ent = hubfs_calloc(1, sizeof(*ent));
	uint64_t words;

	if (!ent)
		return NULL;
	memcpy(ent->key, key, strlen(key) + 1);
	ent->size = size;
	ent->nblocks = size / HUBFS_CACHE_BLOCK_SIZE +
		       (size % HUBFS_CACHE_BLOCK_SIZE != 0);
	ent->fd = -1;
	ent->wbfd = -1;
	ent->state = ENT_INIT;
	ent->refs = 1;
	(void)hubfs_mutex_init(&ent->lock); /* cannot fail: see cache_new() */
	(void)hubfs_mutex_init(&ent->wlock);
	(void)hubfs_mutex_init(&ent->wflock);
	words = (ent->nblocks + 63) / 64;
	if (words) {
		/* Large sizes cost address space, not memory: calloc maps
		 * fresh zero pages, and only touched words are backed. */
		ent->bits = hubfs_calloc(words, sizeof(*ent->bits));
		ent->crcs = hubfs_calloc(ent->nblocks, sizeof(*ent->crcs));
		ent->pages = hubfs_calloc(ent->nblocks, sizeof(*ent->pages));
		if (!ent->bits || !ent->crcs || !ent->pages) {
			ent_free(ent);
			return NULL;
		}
	}
	return ent;
}

/* @key's data file name under data/ into @rel, its directory made. */
static int data_rel_path(struct hubfs_cache *cache, char rel[CACHE_REL_MAX],
			 const char *key)
{
	cache_rel_path(rel, key);
	rel[2] = '\0';
	if (mkdirat(cache->data_fd, rel, 0700) < 0 && errno != EEXIST) {
		hubfs_err_set("cache: mkdir data/%s: %s", rel, strerror(errno));
		return -errno;
	}
	rel[2] = '/';
	return 0;
}

/* Open and pin the data file of @ent, creating it if needed. */
static int ent_open_file(struct hubfs_cache *cache, struct cache_ent *ent)
{
	char rel[CACHE_REL_MAX];
	int err = data_rel_path(cache, rel, ent->key);

	if (err)
		return err;
	err = -ESTALE;
	for (int i = 0; i < OPEN_TRIES && err == -ESTALE; i++)
		err = cache_file_lock(&ent->fd, cache, rel, O_RDWR | O_CREAT,
				      LOCK_SH);
	if (err == -ESTALE)
		hubfs_err_set("cache: data/%s keeps being removed", rel);
	if (!err) {
		/* Through /proc: surely the same inode.  Without it pages
		 * are given back without waiting for their writeback. */
		char self[64];

		snprintf(self, sizeof(self), "/proc/self/fd/%d", ent->fd);
		ent->wbfd = open(self, O_RDONLY | O_CLOEXEC);
	}
	return err;
}

/*
 * Make sure the objects row of @ent exists with @ent's size.  A row with
 * another size describes other bytes (a key names one content, so one
 * size): its blocks are deleted and the row starts over.
 */
static int ent_sync_row(struct hubfs_cache *cache, struct cache_ent *ent)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	sqlite3_stmt *st;
	int ret;

	hubfs_mutex_lock(&c->lock);
	/* The first look is outside a transaction: usually the row is
	 * right.  The second, inside one, decides what to fix. */
	for (int pass = 0; pass < 2; pass++) {
		ret = pass ? cache_begin(c) : 0;
		if (!ret)
			ret = cache_stmt_text(&st, c, STMT_OBJ_GET, ent->key,
					      NULL);
		if (!ret) {
			ret = cache_step(c, st);
		}
		if (ret == 1) {
			/* 1: right; 0: the size differs, fix it. */
			ret = (uint64_t)sqlite3_column_int64(st, 0) ==
			      ent->size;
			sqlite3_reset(st);
		}
		if (ret)
			break;
	}
	if (ret == 0)
		ret = cache_exec_key(c, STMT_BLOCKS_DEL_OBJ, ent->key);
	if (ret == 0)
		ret = cache_stmt_text(&st, c, STMT_OBJ_PUT, ent->key, NULL);
	if (ret == 0) {
		sqlite3_bind_int64(st, 2, (sqlite3_int64)ent->size);
		ret = cache_exec(c, st);
	}
	if (ret == 1)
		ret = 0;
	if (!sqlite3_get_autocommit(c->db))
		ret = cache_end(c, ret);
	cache_conn_unlock(cache, c);
	return ret;
}

/*
 * After the last close of @ent here: if no process holds the object and
 * it has no block left, delete its data file and objects row.  Empty
 * objects keep theirs (the file is empty, and the verified flag is then
 * all the cache knows).  Best effort: a failure leaves a file for a
 * later close to sweep.
 */
static void ent_sweep(struct hubfs_cache *cache, const struct cache_ent *ent)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	char rel[CACHE_REL_MAX];
	bool gone;
	int fd;

	if (ent->size == 0)
		return;
	cache_rel_path(rel, ent->key);
	if (cache_file_lock(&fd, cache, rel, O_RDONLY, LOCK_EX | LOCK_NB))
		return;
	hubfs_mutex_lock(&c->lock);
	gone = cache_has_blocks(c, ent->key) == 0 &&
	       cache_exec_key(c, STMT_OBJ_DEL, ent->key) == 0;
	cache_conn_unlock(cache, c);
	/* Still under LOCK_EX: nobody can be writing the file. */
	if (gone)
		unlinkat(cache->data_fd, rel, 0);
	close(fd);
}

/* The index's epoch now; !out->ok if it cannot be read. */
static void index_epoch(struct hubfs_cache *cache, struct cache_epoch *out)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	sqlite3_stmt *st;
	int ret;

	hubfs_mutex_lock(&c->lock);
	ret = cache_stmt(&st, c, STMT_DATA_VERSION);
	if (!ret)
		ret = cache_step(c, st);
	out->ok = ret == 1;	/* the pragma always answers one row */
	if (out->ok) {
		out->dv = sqlite3_column_int64(st, 0);
		out->deletes = c->deletes;
		sqlite3_reset(st);
	}
	cache_conn_unlock(cache, c);
}

/*
 * Give @ent, just opened and pinned (its epoch read), what @memo knows:
 * all of it when no row can have gone since the memo's epoch, else the
 * memo itself, for block_present() to consult row by row.  Consumes
 * @memo.
 */
static void memo_adopt(struct cache_ent *ent, struct cache_memo *memo)
{
	uint64_t words = (ent->nblocks + 63) / 64;

	if (!memo)
		return;
	if (!memo->epoch.ok || !ent->epoch.ok ||
	    ent->epoch.dv != memo->epoch.dv ||
	    ent->epoch.deletes != memo->epoch.deletes) {
		ent->memo = memo;
		return;
	}
	hubfs_mutex_lock(&ent->lock);
	memcpy(ent->crcs, memo->crcs, ent->nblocks * sizeof(*ent->crcs));
	for (uint64_t w = 0; w < words; w++) {
		atomic_store_explicit(&ent->bits[w], memo->bits[w],
				      memory_order_relaxed);
		atomic_fetch_add_explicit(
			&ent->known,
			(uint64_t)__builtin_popcountll(memo->bits[w]),
			memory_order_relaxed);
	}
	for (uint64_t i = 0; memo->pages && i < ent->nblocks; i++)
		if (memo->pages[i])	/* untouched zeros stay unbacked */
			atomic_store_explicit(&ent->pages[i], memo->pages[i],
					      memory_order_relaxed);
	hubfs_mutex_unlock(&ent->lock);
	memo_free(memo);
}

/* Take the memo of @key at @size out of the list, if there is one. */
static struct cache_memo *memo_take(struct hubfs_cache *cache, const char *key,
				    uint64_t size) HUBFS_REQUIRES(cache->obj_lock)
{
	struct cache_memo **p, *memo;

	for (p = &cache->memos; *p; p = &(*p)->next) {
		if (strcmp((*p)->key, key) != 0)
			continue;
		memo = *p;
		*p = memo->next;
		cache->nmemos--;
		cache->memo_bytes -= memo->bytes;
		if (memo->size == size)
			return memo;
		memo_free(memo);	/* another size: other bytes */
		return NULL;
	}
	return NULL;
}

/*
 * The pages of block @idx (of an ent without its bit) that @ent checked,
 * else those of the memo it was opened with; *@inherited is set if they
 * are the memo's.  Under ent->lock.
 */
static uint16_t memo_keep_pages(struct cache_ent *ent,
				const struct cache_memo *old, uint64_t idx,
				bool *inherited) HUBFS_REQUIRES(ent->lock)
{
	uint16_t mine = atomic_load_explicit(&ent->pages[idx],
					     memory_order_relaxed);

	if (mine || !old || !old->pages || !old->pages[idx])
		return mine;
	ent->crcs[idx] = old->crcs[idx];
	*inherited = true;
	return old->pages[idx];
}

/*
 * Keep what @ent (closed for good) knows as a memo: its checked blocks
 * and pages, and those of the memo it was opened with that it did not
 * check again.  Best effort: without memory, nothing (or no pages) is
 * kept.
 */
static void memo_keep(struct hubfs_cache *cache, struct cache_ent *ent)
{
	uint64_t words = (ent->nblocks + 63) / 64, any = 0, inherited = 0;
	bool pages_inherited = false;
	const struct cache_memo *old = ent->memo;
	struct cache_memo *memo, *stale, *gone = NULL, **p;

	if (words == 0 || (atomic_load(&ent->wfail) & 1))
		return;	/* nothing, or rows that may be wrong */
	memo = hubfs_calloc(1, sizeof(*memo));
	if (memo)
		memo->bits = hubfs_malloc(words * sizeof(*memo->bits));
	if (!memo || !memo->bits) {
		memo_free(memo);
		return;
	}
	memcpy(memo->key, ent->key, sizeof(memo->key));
	memo->size = ent->size;
	memo->epoch = ent->epoch;
	hubfs_mutex_lock(&ent->lock);
	for (uint64_t w = 0; w < words; w++) {
		uint64_t mine = atomic_load_explicit(&ent->bits[w],
						     memory_order_relaxed);
		uint64_t more = old ? old->bits[w] & ~mine : 0;

		for (; more; more &= more - 1) {
			uint64_t idx = w * 64 + (uint64_t)__builtin_ctzll(more);

			/* Pages checked here without the bit were checked
			 * against another row than the old memo's: theirs is
			 * the fresher knowledge. */
			if (atomic_load_explicit(&ent->pages[idx],
						 memory_order_relaxed))
				continue;
			ent->crcs[idx] = old->crcs[idx];
			mine |= 1ull << (idx % 64);
			inherited |= 1ull << (idx % 64);
		}
		memo->bits[w] = mine;
		any |= mine;
	}
	/* A 4 KiB reader checks one page of a block, never its bit: its
	 * next open here should not look those rows up again either. */
	for (uint64_t i = 0; i < ent->nblocks; i++) {
		uint16_t pg;

		if (memo->bits[i / 64] >> (i % 64) & 1)
			continue;
		pg = memo_keep_pages(ent, old, i, &pages_inherited);
		if (!pg)
			continue;
		if (!memo->pages)
			memo->pages = hubfs_calloc(ent->nblocks,
						   sizeof(*memo->pages));
		if (!memo->pages)
			break;
		memo->pages[i] = pg;
		any = 1;
	}
	memo->crcs = ent->crcs;
	ent->crcs = NULL;
	hubfs_mutex_unlock(&ent->lock);
	memo->bytes = words * sizeof(*memo->bits) +
		      ent->nblocks * sizeof(*memo->crcs) +
		      (memo->pages ? ent->nblocks * sizeof(*memo->pages) : 0);
	/* Bits carried over from the memo this ent was opened with held at
	 * that memo's epoch, not necessarily at this one: with any of them,
	 * the next open must look their rows up. */
	memo->epoch.ok = ent->epoch.ok && !inherited && !pages_inherited;
	if (!any) {
		memo_free(memo);
		return;
	}
	hubfs_mutex_lock(&cache->obj_lock);
	/* An older memo of the key (kept while this ent was open, by an
	 * ent of it closing just as this one opened) knows less. */
	stale = memo_take(cache, memo->key, memo->size);
	memo->next = cache->memos;
	cache->memos = memo;
	cache->nmemos++;
	cache->memo_bytes += memo->bytes;
	while (cache->nmemos > CACHE_MEMO_MAX ||
	       (cache->nmemos > 1 && cache->memo_bytes > CACHE_MEMO_BYTES)) {
		for (p = &cache->memos; (*p)->next; p = &(*p)->next)
			;
		memo = *p;	/* the oldest */
		*p = NULL;
		cache->nmemos--;
		cache->memo_bytes -= memo->bytes;
		memo->next = gone;
		gone = memo;
	}
	hubfs_mutex_unlock(&cache->obj_lock);
	while (gone) {
		memo = gone;
		gone = memo->next;
		memo_free(memo);
	}
	memo_free(stale);
}

static int ent_drop(struct hubfs_cache *cache, struct cache_ent *ent);

/*
 * Drop one reference to @ent.  The last one takes a READY ent out of the
 * map (a FAILED one is already out), unpins it, tries again a drop that
 * failed after a failed write, and sweeps it.
 */
static void ent_put(struct hubfs_cache *cache, struct cache_ent *ent)
{
	bool last, ready;

	hubfs_mutex_lock(&cache->obj_lock);
	last = --ent->refs == 0;
	ready = ent->state == ENT_READY;
	if (last && ready)
		cache_map_del(&cache->objs, ent->key);
	hubfs_mutex_unlock(&cache->obj_lock);
	if (!last)
		return;
	if (ready) {
		close(ent->fd); /* drops the pin */
		ent->fd = -1;
		if (ent->wbfd >= 0)
			close(ent->wbfd);
		ent->wbfd = -1;
		/* A drop that failed after a failed write: its rows must not
		 * outlive this open, which alone knew. */
		if (atomic_load(&ent->wfail) & 1)
			(void)ent_drop(cache, ent);
		ent_sweep(cache, ent);
		memo_keep(cache, ent);
	}
	ent_free(ent);
}

/* Find or set up the shared state of @key; takes one reference. */
static int ent_get(struct cache_ent **out, struct hubfs_cache *cache,
		   const char *key, uint64_t size)
{
	struct cache_memo *memo;
	struct cache_ent *ent;
	int err = 0;

	hubfs_mutex_lock(&cache->obj_lock);
	ent = cache_map_get(&cache->objs, key);
	if (ent) {
		ent->refs++;
		while (ent->state == ENT_INIT)
			pthread_cond_wait(&cache->obj_cond,
					  &cache->obj_lock.mutex);
		if (ent->state == ENT_FAILED) {
			err = ent->err;
			hubfs_err_set("cache: opening %s failed in another "
				      "thread",
				      key);
		} else if (ent->size != size) {
			err = -EINVAL;
			hubfs_err_set("cache: %s is open with size %llu, not "
				      "%llu",
				      key, (unsigned long long)ent->size,
				      (unsigned long long)size);
		}
		hubfs_mutex_unlock(&cache->obj_lock);
		goto out;
	}
	ent = ent_new(key, size);
	if (!ent || cache_map_put(&cache->objs, ent->key, ent)) {
		hubfs_mutex_unlock(&cache->obj_lock);
		ent_free(ent);
		return -ENOMEM;
	}
	hubfs_mutex_unlock(&cache->obj_lock);

	err = ent_open_file(cache, ent);
	if (!err)
		err = ent_sync_row(cache, ent);

	if (!err) {
		/* Pinned, and the row settled: from here on, no row of this
		 * object goes without the epoch moving. */
		index_epoch(cache, &ent->epoch);
		hubfs_mutex_lock(&cache->obj_lock);
		memo = memo_take(cache, key, size);
		hubfs_mutex_unlock(&cache->obj_lock);
		/* Before READY: other openers read what it sets, lock-free. */
		memo_adopt(ent, memo);
	}

	hubfs_mutex_lock(&cache->obj_lock);
	ent->state = err ? ENT_FAILED : ENT_READY;
	ent->err = err;
	if (err)
		cache_map_del(&cache->objs, ent->key);
	pthread_cond_broadcast(&cache->obj_cond);
	hubfs_mutex_unlock(&cache->obj_lock);
out:
	/* A failed open gives its reference back; while it waited, every
	 * other holder may have closed, making it the last. */
	if (err)
		ent_put(cache, ent);
	else
		*out = ent;
	return err;
}

int hubfs_cache_obj_open(struct hubfs_cache_obj **out,
			 struct hubfs_cache *cache, const char *key,
			 uint64_t size)
{
	struct hubfs_cache_obj *obj;
	int err;

	if (!cache_key_ok(key)) {
		hubfs_err_set("cache: bad content key \"%.80s\"",
			      key ? key : "(null)");
		return -EINVAL;
	}
	if (size > HUBFS_SIZE_MAX) {
		hubfs_err_set("cache: %s: size %llu too large", key,
			      (unsigned long long)size);
		return -EINVAL;
	}
	obj = hubfs_malloc(sizeof(*obj));
	if (!obj)
		return -ENOMEM;
	err = ent_get(&obj->ent, cache, key, size);
	if (err) {
		hubfs_free(obj);
		return err;
	}
	obj->cache = cache;
	*out = obj;
	return 0;
}

void hubfs_cache_obj_close(struct hubfs_cache_obj *obj)
{
	if (!obj)
		return;
	ent_put(obj->cache, obj->ent);
	hubfs_free(obj);
}

uint64_t hubfs_cache_obj_nblocks(const struct hubfs_cache_obj *obj)
{
	return obj->ent->nblocks;
}

int hubfs_cache_obj_fd(const struct hubfs_cache_obj *obj)
{
	return obj->ent->fd;
}

/* --- blocks ------------------------------------------------------------ */

static bool bit_test(const struct cache_ent *ent, uint64_t idx)
{
	uint64_t word = atomic_load_explicit(&ent->bits[idx / 64],
					     memory_order_acquire);

	return (word >> (idx % 64)) & 1;
}

static uint64_t ent_gen(struct cache_ent *ent)
{
	uint64_t gen;

	hubfs_mutex_lock(&ent->lock);
	gen = ent->gen;
	hubfs_mutex_unlock(&ent->lock);
	return gen;
}

_Static_assert(HUBFS_CACHE_PAGES <= 16,
	       "ent.pages holds one block's pages in 16 bits");

/* The pages of a block of @len bytes. */
static unsigned int page_count(uint64_t len)
{
	return (unsigned int)((len + HUBFS_CACHE_PAGE_SIZE - 1) /
			      HUBFS_CACHE_PAGE_SIZE);
}

/* The mask of pages [@lo, @hi]. */
static uint16_t page_mask(unsigned int lo, unsigned int hi)
{
	return (uint16_t)(((2u << hi) - 1) & ~((1u << lo) - 1));
}

/* A block's CRC from its pages' (@n of them, the last @len % page long). */
static uint32_t pages_crc(const uint32_t *page, unsigned int n, uint64_t len)
{
	uint32_t crc = page[0];

	for (unsigned int i = 1; i < n; i++) {
		uint64_t plen = len - (uint64_t)i * HUBFS_CACHE_PAGE_SIZE;

		if (plen > HUBFS_CACHE_PAGE_SIZE)
			plen = HUBFS_CACHE_PAGE_SIZE;
		crc = hubfs_crc32c_combine(crc, page[i], plen);
	}
	return crc;
}

/* A block's index row. */
struct block_row {
	uint64_t len;
	uint32_t crc;
	bool paged;	/* page[] holds its pages' CRCs */
	uint32_t page[HUBFS_CACHE_PAGES];
};

/* Take the page CRCs of a row from @blob (little-endian, 4 bytes each).
 * A row written without them, or whose pages do not add up to its CRC
 * (a damaged index), is checked as a whole block. */
static void row_pages(struct block_row *row, const unsigned char *blob,
		      int size)
{
	unsigned int n = page_count(row->len);

	row->paged = false;
	if (!blob || n == 0 || n > HUBFS_CACHE_PAGES || size != (int)(4 * n))
		return;
	for (unsigned int i = 0; i < n; i++)
		row->page[i] = (uint32_t)blob[4 * i] |
			       (uint32_t)blob[4 * i + 1] << 8 |
			       (uint32_t)blob[4 * i + 2] << 16 |
			       (uint32_t)blob[4 * i + 3] << 24;
	row->paged = pages_crc(row->page, n, row->len) == row->crc;
}

/* The row of block @idx: 1 (and *@row), 0 if none, or -errno. */
static int block_row(struct hubfs_cache *cache, const struct cache_ent *ent,
		     uint64_t idx, struct block_row *row)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	sqlite3_stmt *st;
	int ret;

	hubfs_mutex_lock(&c->lock);
	ret = cache_stmt_text(&st, c, STMT_BLOCK_GET, ent->key, NULL);
	if (!ret) {
		sqlite3_bind_int64(st, 2, (sqlite3_int64)idx);
		ret = cache_step(c, st);
	}
	if (ret == 1) {
		row->len = (uint64_t)sqlite3_column_int64(st, 0);
		row->crc = (uint32_t)sqlite3_column_int64(st, 1);
		row_pages(row, sqlite3_column_blob(st, 2),
			  sqlite3_column_bytes(st, 2));
		sqlite3_reset(st);
	}
	cache_conn_unlock(cache, c);
	return ret;
}

/* The pages of block @idx that an earlier open here checked against
 * this very row: all of them, some, or none. */
static uint16_t memo_pages(const struct cache_ent *ent, uint64_t idx,
			   const struct block_row *row)
{
	const struct cache_memo *memo = ent->memo;

	if (!memo || memo->crcs[idx] != row->crc ||
	    row->len != block_len(ent, idx))
		return 0;
	if (memo->bits[idx / 64] >> (idx % 64) & 1)
		return page_mask(0, page_count(row->len) - 1);
	return memo->pages ? memo->pages[idx] : 0;
}

/*
 * Whether the bytes of block @idx match @row: the whole block against
 * its CRC, or, for a row with page CRCs, pages [@lo, @hi] against
 * theirs.  1, 0, or -errno for a failed read (the block may be fine; the
 * disk is not).
 */
static int block_check(const struct cache_ent *ent, uint64_t idx,
		       const struct block_row *row, unsigned int lo,
		       unsigned int hi)
{
	uint64_t base = idx * HUBFS_CACHE_BLOCK_SIZE, off, to;
	uint32_t sum = 0;
	size_t cap;
	char *buf;
	int ret = 1;

	if (row->len != block_len(ent, idx))
		return 0;
	off = row->paged ? (uint64_t)lo * HUBFS_CACHE_PAGE_SIZE : 0;
	to = row->paged ? (uint64_t)(hi + 1) * HUBFS_CACHE_PAGE_SIZE : row->len;
	if (to > row->len)
		to = row->len;
	/* A multiple of the page size unless it is all there is. */
	cap = to - off < CHECK_CHUNK ? (size_t)(to - off) : CHECK_CHUNK;
	buf = hubfs_malloc(cap);
	if (!buf)
		return -ENOMEM;
	while (off < to && ret == 1) {
		size_t want = to - off < cap ? (size_t)(to - off) : cap;
		ssize_t n = read_full(ent->fd, buf, want, base + off);

		if (n < 0) {
			ret = (int)n;
		} else if ((size_t)n < want) {
			ret = 0; /* the file is short */
		} else if (!row->paged) {
			sum = hubfs_crc32c(sum, buf, want);
		} else {
			for (size_t p = 0; p < want && ret == 1;
			     p += HUBFS_CACHE_PAGE_SIZE) {
				size_t plen = want - p < HUBFS_CACHE_PAGE_SIZE
						      ? want - p
						      : HUBFS_CACHE_PAGE_SIZE;

				ret = hubfs_crc32c(0, buf + p, plen) ==
				      row->page[(off + p) /
						HUBFS_CACHE_PAGE_SIZE];
			}
		}
		off += want;
	}
	hubfs_free(buf);
	if (ret == 1 && !row->paged)
		ret = sum == row->crc;
	return ret;
}

/* Forget a damaged block: delete its row if it is still the row that
 * was checked, and clear the object's verified flag. */
static void block_forget(struct hubfs_cache *cache, const struct cache_ent *ent,
			 uint64_t idx, const struct block_row *row)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	sqlite3_stmt *st;
	int err;

	hubfs_mutex_lock(&c->lock);
	err = cache_begin(c);
	if (!err)
		err = cache_stmt_text(&st, c, STMT_BLOCK_DEL_IF, ent->key,
				      NULL);
	if (!err) {
		sqlite3_bind_int64(st, 2, (sqlite3_int64)idx);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)row->len);
		sqlite3_bind_int64(st, 4, row->crc);
		err = cache_exec(c, st);
	}
	if (!err)
		err = cache_exec_key(c, STMT_OBJ_UNVERIFY, ent->key);
	/* A failure leaves the row: the caller fetches the block again
	 * anyway, and its commit replaces the row. */
	cache_end(c, err);
	cache_conn_unlock(cache, c);
	atomic_fetch_add(&cache->corrupt, 1);
}

/* Whether pages @want of block @idx are known present. */
static bool pages_known(const struct cache_ent *ent, uint64_t idx,
			uint16_t want)
{
	return bit_test(ent, idx) ||
	       (atomic_load_explicit(&ent->pages[idx], memory_order_acquire) &
		want) == want;
}

/* Record pages @mask of block @idx, whose row has CRC @crc, as checked,
 * unless a drop() happened since @gen was read; a block whose pages are
 * all checked gets its bit.  Pages checked against another row (another
 * process wrote the block again meanwhile) are not counted with these:
 * crcs[idx] names the one row all of them matched. */
static bool pages_set_since(struct cache_ent *ent, uint64_t idx, uint64_t gen,
			    uint16_t mask, uint32_t crc)
{
	uint16_t all = page_mask(0, page_count(block_len(ent, idx)) - 1), had;
	uint64_t bit = 1ull << (idx % 64);
	bool same, known;

	hubfs_mutex_lock(&ent->lock);
	same = ent->gen == gen;
	if (!same)
		goto unlock;
	had = atomic_load_explicit(&ent->pages[idx], memory_order_relaxed);
	known = atomic_load_explicit(&ent->bits[idx / 64],
				     memory_order_relaxed) & bit;
	if (!known && had && ent->crcs[idx] != crc)
		had = 0;
	if (known && (had | mask) != all)
		goto unlock;	/* a late check of part of a known block */
	ent->crcs[idx] = crc;
	atomic_store_explicit(&ent->pages[idx], had | mask,
			      memory_order_release);
	if ((had | mask) == all && !known) {
		atomic_fetch_or_explicit(&ent->bits[idx / 64], bit,
					 memory_order_release);
		atomic_fetch_add_explicit(&ent->known, 1,
					  memory_order_relaxed);
	}
unlock:
	hubfs_mutex_unlock(&ent->lock);
	return same;
}

/* Set the bit of @idx, whose row has CRC @crc, unless a drop() happened
 * since @gen was read. */
static bool bit_set_since(struct cache_ent *ent, uint64_t idx, uint64_t gen,
			  uint32_t crc)
{
	return pages_set_since(ent, idx, gen,
			       page_mask(0, page_count(block_len(ent, idx)) - 1),
			       crc);
}

/* Whether pages [@lo, @hi] of block @idx are present and intact. */
static int pages_present(struct hubfs_cache_obj *obj, uint64_t idx,
			 unsigned int lo, unsigned int hi)
{
	struct hubfs_cache *cache = obj->cache;
	struct cache_ent *ent = obj->ent;
	uint16_t want = page_mask(lo, hi), memo = 0;
	struct block_row row;
	uint64_t gen;
	int ret;

	if (pages_known(ent, idx, want)) {
		atomic_fetch_add(&cache->hits, 1);
		return 1;
	}
	gen = ent_gen(ent);
	ret = block_row(cache, ent, idx, &row);
	if (ret == 1)
		memo = memo_pages(ent, idx, &row);
	if (ret == 1 && (memo & want) == want) {
		if (!pages_set_since(ent, idx, gen, memo, row.crc))
			ret = 0; /* dropped meanwhile */
	} else if (ret == 1) {
		if (!row.paged) {	/* checked whole */
			lo = 0;
			hi = page_count(block_len(ent, idx)) - 1;
		}
		ret = block_check(ent, idx, &row, lo, hi);
		if (ret == 0)
			block_forget(cache, ent, idx, &row);
		else if (ret == 1 &&
			 !pages_set_since(ent, idx, gen,
					  page_mask(lo, hi) | memo, row.crc))
			ret = 0; /* dropped while checking */
	}
	if (ret >= 0)
		atomic_fetch_add(ret ? &cache->hits : &cache->misses, 1);
	return ret;
}

int hubfs_cache_block_present(struct hubfs_cache_obj *obj, uint64_t idx)
{
	struct cache_ent *ent = obj->ent;

	if (idx >= ent->nblocks)
		return bad_index(ent, idx);
	return pages_present(obj, idx, 0,
			     page_count(block_len(ent, idx)) - 1);
}

/* Block and pages [*@lo, *@hi] of span [@off, @off + @len), or false if
 * it is empty or not inside one block. */
static bool span_pages(const struct cache_ent *ent, uint64_t off, uint64_t len,
		       uint64_t *idx, unsigned int *lo, unsigned int *hi)
{
	uint64_t in;

	if (len == 0 || off >= ent->size || len > ent->size - off)
		return false;
	*idx = off / HUBFS_CACHE_BLOCK_SIZE;
	in = off % HUBFS_CACHE_BLOCK_SIZE;
	if (len > HUBFS_CACHE_BLOCK_SIZE - in)
		return false;
	*lo = (unsigned int)(in / HUBFS_CACHE_PAGE_SIZE);
	*hi = (unsigned int)((in + len - 1) / HUBFS_CACHE_PAGE_SIZE);
	return true;
}

int hubfs_cache_span_present(struct hubfs_cache_obj *obj, uint64_t off,
			     uint64_t len)
{
	unsigned int lo, hi;
	uint64_t idx;

	if (!span_pages(obj->ent, off, len, &idx, &lo, &hi)) {
		hubfs_err_set("cache: %s: span of %llu bytes at %llu is not "
			      "inside one block",
			      obj->ent->key, (unsigned long long)len,
			      (unsigned long long)off);
		return -EINVAL;
	}
	return pages_present(obj, idx, lo, hi);
}

bool hubfs_cache_span_known(const struct hubfs_cache_obj *obj, uint64_t off,
			    uint64_t len)
{
	unsigned int lo, hi;
	uint64_t idx;

	return span_pages(obj->ent, off, len, &idx, &lo, &hi) &&
	       pages_known(obj->ent, idx, page_mask(lo, hi));
}

bool hubfs_cache_block_known(const struct hubfs_cache_obj *obj,
			     uint64_t idx)
{
	return idx < obj->ent->nblocks && bit_test(obj->ent, idx);
}

uint64_t hubfs_cache_obj_known(const struct hubfs_cache_obj *obj)
{
	return atomic_load_explicit(&obj->ent->known, memory_order_relaxed);
}

int hubfs_cache_block_stored(struct hubfs_cache_obj *obj, uint64_t idx)
{
	struct cache_ent *ent = obj->ent;
	struct block_row row;

	if (idx >= ent->nblocks)
		return bad_index(ent, idx);
	/* Pages checked before a damaged one was found are still served:
	 * their bytes must stay. */
	if (bit_test(ent, idx) ||
	    atomic_load_explicit(&ent->pages[idx], memory_order_acquire))
		return 1;
	return block_row(obj->cache, ent, idx, &row);
}

ssize_t hubfs_cache_obj_pread(struct hubfs_cache_obj *obj, void *buf,
			      size_t len, uint64_t off)
{
	const struct cache_ent *ent = obj->ent;
	ssize_t n;

	if (off >= ent->size)
		return 0;
	if (len > ent->size - off)
		len = (size_t)(ent->size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	n = read_full(ent->fd, buf, len, off);
	if (n >= 0 && (size_t)n < len) {
		/* Confirmed blocks are all there; a short file is damage
		 * done behind the cache's back. */
		hubfs_err_set("cache: %s: data file ends at %llu", ent->key,
			      (unsigned long long)(off + (uint64_t)n));
		return -EIO;
	}
	return n;
}

int hubfs_cache_obj_pwrite(struct hubfs_cache_obj *obj, const void *buf,
			   size_t len, uint64_t off)
{
	const struct cache_ent *ent = obj->ent;
	size_t done = 0;

	if (off > ent->size || len > ent->size - off) {
		hubfs_err_set("cache: %s: write of %zu bytes at %llu past "
			      "size %llu",
			      ent->key, len, (unsigned long long)off,
			      (unsigned long long)ent->size);
		return -EINVAL;
	}
	hubfs_mutex_lock(&obj->ent->wlock);
	while (done < len) {
		ssize_t n = pwrite(ent->fd, (const char *)buf + done,
				   len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			hubfs_mutex_unlock(&obj->ent->wlock);
			hubfs_err_set("cache: %s: write: %s", ent->key,
				      strerror(-err));
			return err;
		}
		done += (size_t)n;
	}
	hubfs_mutex_unlock(&obj->ent->wlock);
	return 0;
}

/* Errors are not reported here: a write that fails shows in the next
 * hubfs_cache_obj_release_pages() or hubfs_cache_obj_check_writes(). */
void hubfs_cache_obj_writeback(struct hubfs_cache_obj *obj, uint64_t off,
			       uint64_t len)
{
	(void)sync_file_range(obj->ent->fd, (off64_t)off, (off64_t)len,
			      SYNC_FILE_RANGE_WRITE);
}

/* Clear what this process knows of @ent's blocks: each must be checked
 * against its row, or fetched, before it is believed again. */
static void ent_forget(struct cache_ent *ent)
{
	hubfs_mutex_lock(&ent->lock);
	ent->gen++;
	for (uint64_t w = 0; w < (ent->nblocks + 63) / 64; w++)
		atomic_store_explicit(&ent->bits[w], 0, memory_order_relaxed);
	for (uint64_t i = 0; i < ent->nblocks; i++)
		atomic_store_explicit(&ent->pages[i], 0, memory_order_relaxed);
	atomic_store_explicit(&ent->known, 0, memory_order_relaxed);
	hubfs_mutex_unlock(&ent->lock);
}

/* Delete @ent's rows, then forget its bits: see "The bitmap" above.  The
 * bits go even if the rows could not; the error is returned. */
static int ent_drop(struct hubfs_cache *cache, struct cache_ent *ent)
{
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	int err;

	hubfs_mutex_lock(&c->lock);
	err = cache_begin(c);
	if (!err)
		err = cache_exec_key(c, STMT_BLOCKS_DEL_OBJ, ent->key);
	if (!err)
		err = cache_exec_key(c, STMT_OBJ_UNVERIFY, ent->key);
	err = cache_end(c, err);
	/* Before the index is let go: a commit checks gen in its own
	 * transaction (blocks_commit()).  The bytes stay until the blocks
	 * are fetched again over them, or the last close sweeps the file:
	 * other processes may be reading them. */
	ent_forget(ent);
	cache_conn_unlock(cache, c);
	return err;
}

/* Drop the blocks of @obj; wflock is held.  Once the rows are gone the
 * failure, if one was being acted on, is over. */
static int obj_drop_locked(struct hubfs_cache_obj *obj)
	HUBFS_REQUIRES(obj->ent->wflock)
{
	int err = ent_drop(obj->cache, obj->ent);

	if (!err && (atomic_load(&obj->ent->wfail) & 1))
		atomic_fetch_add(&obj->ent->wfail, 1);
	return err;
}

/*
 * Hear of any failed write of the data file since the last look, without
 * waiting (a range far past the end holds no page to wait for), and act
 * on one before anyone else can look: every block of the file becomes
 * suspect, its rows and bits are dropped, and wfail tells the threads
 * that looked before.
 */
static int writes_check(struct hubfs_cache_obj *obj)
	HUBFS_REQUIRES(obj->ent->wflock)
{
	struct cache_ent *ent = obj->ent;
	int err = 0;

	if (sync_file_range(ent->fd, (off64_t)1 << 62, 1,
			    SYNC_FILE_RANGE_WAIT_BEFORE) != 0) {
		err = -errno;
		if (!(atomic_load(&ent->wfail) & 1))
			atomic_fetch_add(&ent->wfail, 1);
		(void)obj_drop_locked(obj);
		hubfs_err_set("cache: %s: a write of its data file failed: %s",
			      ent->key, strerror(-err));
	}
	return err;
}

uint64_t hubfs_cache_obj_check_writes(struct hubfs_cache_obj *obj)
{
	uint64_t n;

	hubfs_mutex_lock(&obj->ent->wflock);
	(void)writes_check(obj);
	n = atomic_load(&obj->ent->wfail);
	hubfs_mutex_unlock(&obj->ent->wflock);
	return n;
}

uint64_t hubfs_cache_obj_write_failures(struct hubfs_cache_obj *obj)
{
	return atomic_load(&obj->ent->wfail);
}

int hubfs_cache_obj_release_pages(struct hubfs_cache_obj *obj, uint64_t off,
				  uint64_t len)
{
	struct cache_ent *ent = obj->ent;
	int err;

	/*
	 * A page whose write failed is clean, but its bytes are not on
	 * disk: given back, it would be read again as whatever the disk
	 * holds, and a block once confirmed is not checked again.  So wait
	 * for writeback still running in the range (often none: the caller
	 * may have started it a while ago), on the descriptor whose
	 * hearing of failures nobody needs, then look for failures.
	 */
	if (ent->wbfd >= 0)
		(void)sync_file_range(ent->wbfd, (off64_t)off, (off64_t)len,
				      SYNC_FILE_RANGE_WAIT_BEFORE);
	hubfs_mutex_lock(&obj->ent->wflock);	/* as writes_check() names it */
	err = writes_check(obj);
	if (!err && (atomic_load(&ent->wfail) & 1))
		err = -EIO;	/* blocks that could not be dropped */
	hubfs_mutex_unlock(&obj->ent->wflock);
	if (err)
		return err;
	(void)posix_fadvise(ent->fd, (off_t)off, (off_t)len,
			    POSIX_FADV_DONTNEED);
	return 0;
}

void hubfs_cache_sum_add(struct hubfs_cache_sum *sum, const void *data,
			 size_t len)
{
	const unsigned char *p = data;

	while (len > 0 && sum->len < HUBFS_CACHE_BLOCK_SIZE) {
		size_t in = (size_t)(sum->len % HUBFS_CACHE_PAGE_SIZE);
		size_t n = len < HUBFS_CACHE_PAGE_SIZE - in
				   ? len : HUBFS_CACHE_PAGE_SIZE - in;
		uint32_t *page = &sum->page[sum->len / HUBFS_CACHE_PAGE_SIZE];

		*page = hubfs_crc32c(*page, p, n);
		sum->len += n;
		p += n;
		len -= n;
	}
	sum->len += len;	/* past the block: the commit refuses it */
}

/* 0, or -EINVAL (logged) when @sum does not cover block @idx. */
static int sum_check(const struct cache_ent *ent, uint64_t idx,
		     const struct hubfs_cache_sum *sum)
{
	uint64_t len;

	if (idx >= ent->nblocks)
		return bad_index(ent, idx);
	len = block_len(ent, idx);
	if (sum->len != len) {
		hubfs_err_set("cache: %s: block %llu of %llu bytes committed "
			      "with %llu",
			      ent->key, (unsigned long long)idx,
			      (unsigned long long)len,
			      (unsigned long long)sum->len);
		return -EINVAL;
	}
	return 0;
}

/* Pack the page CRCs of @sum, checked, into @blob, little-endian;
 * returns the block's CRC and sets *@nbytes. */
static uint32_t block_blob(const struct hubfs_cache_sum *sum,
			   unsigned char blob[4 * HUBFS_CACHE_PAGES],
			   unsigned int *nbytes)
{
	unsigned int n = page_count(sum->len);

	for (unsigned int i = 0; i < n; i++)
		for (unsigned int b = 0; b < 4; b++)
			blob[4 * i + b] = (unsigned char)(sum->page[i] >> 8 * b);
	*nbytes = 4 * n;
	return pages_crc(sum->page, n, sum->len);
}

/*
 * Record @n blocks.  @gen: the object's generation before their bytes
 * were written; if a drop came since (a failed write of the data file
 * among them, perhaps), they are refused with -EAGAIN.  Checked in the
 * transaction, as a drop deletes rows and moves gen in its own.
 */
static int blocks_commit(struct hubfs_cache_obj *obj, const uint64_t *idx,
			 const struct hubfs_cache_sum *sums, size_t n,
			 uint64_t gen)
{
	struct cache_evict ev = CACHE_EVICT_INIT;
	struct hubfs_cache *cache = obj->cache;
	struct cache_ent *ent = obj->ent;
	unsigned char blob[4 * HUBFS_CACHE_PAGES];
	uint64_t used, blocks;
	struct cache_conn *c;
	uint32_t one = 0, *crcs;	/* set for every k when err is 0 */
	int err = 0;

	/* Every sum is checked before the index is locked. */
	for (size_t k = 0; k < n; k++)
		if ((err = sum_check(ent, idx[k], &sums[k])) != 0)
			return err;
	if (n == 0)
		return 0;
	crcs = n == 1 ? &one : hubfs_malloc(n * sizeof(*crcs));
	if (!crcs)
		return -ENOMEM;
	c = &cache->conn[CONN_BLOCKS];
	hubfs_mutex_lock(&c->lock);
	err = cache_begin(c);
	if (!err && ent_gen(ent) != gen)
		err = -EAGAIN;
	for (size_t k = 0; !err && k < n; k++) {
		unsigned int nbytes = 0;
		sqlite3_stmt *st;

		crcs[k] = block_blob(&sums[k], blob, &nbytes);
		err = cache_stmt_text(&st, c, STMT_BLOCK_PUT, ent->key, NULL);
		if (err)
			break;
		sqlite3_bind_int64(st, 2, (sqlite3_int64)idx[k]);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)block_len(ent, idx[k]));
		sqlite3_bind_int64(st, 4, crcs[k]);
		sqlite3_bind_int64(st, 5, cache_now_ms());
		sqlite3_bind_blob(st, 6, blob, (int)nbytes, SQLITE_STATIC);
		err = cache_exec(c, st);
	}
	/* The limit holds after every transaction, whoever reserved: a
	 * commit that would pass it evicts in the same transaction, and
	 * fails if it cannot. */
	if (!err)
		err = cache_usage(c, &used, &blocks);
	if (!err && used > cache->max_bytes)
		err = cache_evict_txn(cache, c, used - cache->max_bytes, false,
				      &ev);
	err = cache_end(c, err);
	cache_conn_unlock(cache, c);
	cache_evict_finish(cache, &ev, err == 0);
	/* The caller computed each sum over the very bytes it wrote: the
	 * blocks need no check on first use (re-reading a block to CRC it
	 * again was a third of a cold read's cost).  A drop since @gen
	 * wins. */
	for (size_t k = 0; !err && k < n; k++)
		bit_set_since(ent, idx[k], gen, crcs[k]);
	if (crcs != &one)
		hubfs_free(crcs);
	return err;
}

int hubfs_cache_blocks_commit(struct hubfs_cache_obj *obj,
			      const uint64_t *idx,
			      const struct hubfs_cache_sum *sums, size_t n)
{
	return blocks_commit(obj, idx, sums, n, ent_gen(obj->ent));
}

int hubfs_cache_block_commit(struct hubfs_cache_obj *obj, uint64_t idx,
			     const struct hubfs_cache_sum *sum)
{
	return blocks_commit(obj, &idx, sum, 1, ent_gen(obj->ent));
}

uint64_t hubfs_cache_obj_gen(struct hubfs_cache_obj *obj)
{
	return ent_gen(obj->ent);
}

int hubfs_cache_block_commit_since(struct hubfs_cache_obj *obj, uint64_t idx,
				   const struct hubfs_cache_sum *sum,
				   uint64_t gen)
{
	return blocks_commit(obj, &idx, sum, 1, gen);
}

/* Punch out the blocks from @from on that no row accounts for (a sweep
 * would, later); blocks another process fetched meanwhile stay. */
static void release_unrecorded(struct hubfs_cache_obj *obj, uint64_t from)
{
	for (uint64_t i = from; i < obj->ent->nblocks; i++)
		if (hubfs_cache_block_stored(obj, i) == 0)
			(void)fallocate(obj->ent->fd, FALLOC_FL_PUNCH_HOLE |
					FALLOC_FL_KEEP_SIZE,
					(off_t)(i * HUBFS_CACHE_BLOCK_SIZE),
					(off_t)block_len(obj->ent, i));
}

/* An error of an adopt after the link: never one that says "copy". */
static int adopt_err(int err)
{
	return err == -EEXIST || err == -EXDEV ? -EIO : err;
}

/* Make room for, then record, @n blocks read back by an adopt.  When
 * they do not all fit, as many as fit are kept, one by one. */
static int adopt_record(struct hubfs_cache_obj *obj, const uint64_t *idx,
			const struct hubfs_cache_sum *sums, size_t n)
{
	uint64_t bytes = 0;
	int err;

	for (size_t k = 0; k < n; k++)
		bytes += sums[k].len;
	err = hubfs_cache_reserve(obj->cache, bytes);
	/* The commit's own eviction may also find the room taken. */
	if (!err)
		err = hubfs_cache_blocks_commit(obj, idx, sums, n);
	if (err != -ENOSPC)
		return err;
	for (size_t k = 0; k < n; k++) {
		err = hubfs_cache_reserve(obj->cache, sums[k].len);
		if (!err)
			err = hubfs_cache_block_commit(obj, idx[k], &sums[k]);
		if (err)
			break;
	}
	return err;
}

int hubfs_cache_adopt(struct hubfs_cache *cache, const char *key,
		      uint64_t size, int fd, bool verified)
{
	char rel[CACHE_REL_MAX], proc[48];
	struct hubfs_cache_sum *sums = NULL;
	struct hubfs_cache_obj *obj;
	uint64_t i, from = 0, idx[ADOPT_RUN];
	struct stat a, b;
	void *buf;
	size_t k = 0;
	int err;

	if (size == 0)
		return 0;
	if (!cache_key_ok(key) || size > HUBFS_SIZE_MAX)
		return -EINVAL;
	err = data_rel_path(cache, rel, key);
	if (err)
		return err;
	/* Through /proc: linkat(AT_EMPTY_PATH) would need a capability. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (fstat(fd, &a) < 0)
		return -errno;
	if ((uint64_t)a.st_size != size)
		return -EINVAL;
	if (linkat(AT_FDCWD, proc, cache->data_fd, rel, AT_SYMLINK_FOLLOW) < 0) {
		if (errno == EEXIST)
			return -EEXIST;
		hubfs_err_set("cache: %s: cannot link the file in: %s", key,
			      strerror(errno));
		return -EXDEV;
	}
	/* From here on the cache may release blocks of the file (this
	 * function on failure, or a sweep): no error may tell the caller
	 * to copy from it. */
	err = hubfs_cache_obj_open(&obj, cache, key, size);
	if (err)
		return adopt_err(err);	/* no rows: the file is swept */
	/* An evictor or a sweep may have taken the name in between, and
	 * the open made a new file. */
	if (fstat(obj->ent->fd, &b) < 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev) {
		hubfs_cache_obj_close(obj);
		return -ESTALE;
	}
	buf = hubfs_malloc(HUBFS_CACHE_BLOCK_SIZE);
	sums = hubfs_malloc(ADOPT_RUN * sizeof(*sums));
	err = buf && sums ? 0 : -ENOMEM;
	for (i = 0; !err && i < obj->ent->nblocks; i++) {
		size_t len = (size_t)block_len(obj->ent, i);
		ssize_t n;

		if (hubfs_cache_block_known(obj, i))
			continue;
		if (k == 0)
			from = i;
		n = pread(fd, buf, len, (off_t)(i * HUBFS_CACHE_BLOCK_SIZE));
		if (n != (ssize_t)len) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		memset(&sums[k], 0, sizeof(sums[k]));
		hubfs_cache_sum_add(&sums[k], buf, len);
		idx[k++] = i;
		if (k == ADOPT_RUN) {
			err = adopt_record(obj, idx, sums, k);
			k = 0;
		}
	}
	if (!err && k)
		err = adopt_record(obj, idx, sums, k);
	if (err)
		release_unrecorded(obj, from);
	if (!err && verified)
		err = hubfs_cache_obj_set_verified(obj);
	hubfs_free(sums);
	hubfs_free(buf);
	hubfs_cache_obj_close(obj);
	return adopt_err(err);
}

/* --- LRU touches ------------------------------------------------------- */

void hubfs_cache_block_touch(struct hubfs_cache_obj *obj, uint64_t idx)
{
	struct hubfs_cache *cache = obj->cache;
	const struct cache_ent *ent = obj->ent;
	int64_t now = cache_now_ms(), mono = clock_ms(CLOCK_MONOTONIC);
	struct cache_touch *t;
	bool flush;

	hubfs_mutex_lock(&cache->touch_lock);
	t = cache->ntouches ? &cache->touches[cache->ntouches - 1] : NULL;
	if (!t || t->idx != idx || strcmp(t->key, ent->key) != 0) {
		if (!cache->touches)
			cache->touches = hubfs_malloc(TOUCH_BATCH *
						      sizeof(*cache->touches));
		t = NULL;
		if (cache->touches && cache->ntouches < TOUCH_BATCH) {
			t = &cache->touches[cache->ntouches++];
			memcpy(t->key, ent->key, sizeof(t->key));
			t->idx = idx;
		}
	}
	if (t)
		t->atime = now;
	if (cache->ntouches && !cache->touch_due)
		cache->touch_due = mono + TOUCH_INTERVAL_MS;
	flush = cache->ntouches >= TOUCH_BATCH ||
		(cache->touch_due && mono >= cache->touch_due);
	hubfs_mutex_unlock(&cache->touch_lock);
	if (flush)
		cache_touch_flush(cache);
}

void cache_touch_flush(struct hubfs_cache *cache)
{
	struct cache_touch *touches;
	struct cache_conn *c;
	size_t n;
	int err;

	hubfs_mutex_lock(&cache->touch_lock);
	touches = cache->touches;
	n = cache->ntouches;
	cache->touches = NULL;
	cache->ntouches = 0;
	cache->touch_due = 0;
	hubfs_mutex_unlock(&cache->touch_lock);
	if (!n)
		goto out;
	c = &cache->conn[CONN_BLOCKS];
	hubfs_mutex_lock(&c->lock);
	err = cache_begin(c);
	for (size_t i = 0; i < n && !err; i++) {
		sqlite3_stmt *st;

		err = cache_stmt_text(&st, c, STMT_BLOCK_TOUCH, touches[i].key,
				      NULL);
		if (err)
			break;
		sqlite3_bind_int64(st, 2, (sqlite3_int64)touches[i].idx);
		sqlite3_bind_int64(st, 3, touches[i].atime);
		err = cache_exec(c, st);
	}
	/* Touches are hints: a failed batch is dropped. */
	cache_end(c, err);
	cache_conn_unlock(cache, c);
out:
	hubfs_free(touches);
}

/* --- whole objects ----------------------------------------------------- */

int hubfs_cache_obj_verified(struct hubfs_cache_obj *obj)
{
	struct hubfs_cache *cache = obj->cache;
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	sqlite3_stmt *st;
	int ret;

	hubfs_mutex_lock(&c->lock);
	ret = cache_stmt_text(&st, c, STMT_OBJ_GET, obj->ent->key, NULL);
	if (!ret) {
		ret = cache_step(c, st);
	}
	if (ret == 1) {
		ret = sqlite3_column_int(st, 1) != 0;
		sqlite3_reset(st);
	}
	cache_conn_unlock(cache, c);
	return ret;
}

int hubfs_cache_obj_set_verified(struct hubfs_cache_obj *obj)
{
	struct hubfs_cache *cache = obj->cache;
	struct cache_conn *c = &cache->conn[CONN_BLOCKS];
	sqlite3_stmt *st;
	int err;

	hubfs_mutex_lock(&c->lock);
	err = cache_stmt_text(&st, c, STMT_OBJ_SET_VERIFIED, obj->ent->key,
			      NULL);
	if (!err) {
		sqlite3_bind_int64(st, 2, (sqlite3_int64)obj->ent->size);
		err = cache_exec(c, st);
	}
	cache_conn_unlock(cache, c);
	return err;
}

int hubfs_cache_obj_drop(struct hubfs_cache_obj *obj)
{
	int err;

	hubfs_mutex_lock(&obj->ent->wflock);
	err = obj_drop_locked(obj);
	hubfs_mutex_unlock(&obj->ent->wflock);
	return err;
}

/* --- stats ------------------------------------------------------------- */

void hubfs_cache_get_stats(struct hubfs_cache *cache,
			   struct hubfs_cache_stats *out)
{
	struct cache_conn *c;
	uint64_t bytes = 0, blocks = 0;

	c = &cache->conn[CONN_BLOCKS];
	hubfs_mutex_lock(&c->lock);
	if (cache_usage(c, &bytes, &blocks)) {
		bytes = 0;
		blocks = 0;
	}
	cache_conn_unlock(cache, c);
	memset(out, 0, sizeof(*out));
	out->used_bytes = bytes;
	out->blocks = blocks;
	out->max_bytes = cache->max_bytes;
	out->hits = atomic_load(&cache->hits);
	out->misses = atomic_load(&cache->misses);
	out->evicted = atomic_load(&cache->evicted);
	out->corrupt = atomic_load(&cache->corrupt);
}
