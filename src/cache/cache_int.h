/*
 * Types and functions private to src/cache/.
 *
 * The module is split by concern:
 *   db.c      the SQLite connections: open, schema, statement cache,
 *             transactions, error mapping, checkpoints
 *   cache.c   the cache handle, objects, blocks, LRU touches, stats
 *   evict.c   reserve() and eviction
 *   index.c   trees and refs (the metadata index)
 *   crc32c.c  CRC-32C, hardware and table-driven
 *
 * Lock order (see cache.c for the full story): cache.obj_lock and
 * cache.touch_lock are never held while another lock is taken; one
 * conn.lock at a time, never across a disk sync; ent.lock is a leaf.
 */
#ifndef HUBFS_CACHE_INT_H
#define HUBFS_CACHE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hubfs/cache.h"
#include "hubfs/lock.h"

/* A content key: 40 (git blob id) or 64 (sha256) lowercase hex digits. */
#define CACHE_KEY_MAX 64
/* "AB/KEY": a data file's name relative to cache_dir/data. */
#define CACHE_REL_MAX (3 + CACHE_KEY_MAX + 1)
/*
 * Schema version kept in PRAGMA user_version.  3: page CRCs in block rows
 * (2 had none; opening such a cache adds the column).  2: blocks of 256
 * KiB (1 had 1 MiB blocks; opening such a cache drops its blocks, see
 * db.c).
 */
#define CACHE_SCHEMA_VERSION 3

/* Every SQL statement the module runs, prepared once per connection. */
enum cache_stmt {
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_ROLLBACK,
	STMT_USAGE_GET,
	STMT_BLOCK_GET,
	STMT_DATA_VERSION,
	STMT_BLOCK_PUT,
	STMT_BLOCK_DEL,
	STMT_BLOCK_DEL_IF,
	STMT_BLOCK_TOUCH,
	STMT_BLOCKS_DEL_OBJ,
	STMT_BLOCKS_ANY,
	STMT_BLOCKS_LRU,
	STMT_BLOCKS_OF,
	STMT_OBJ_GET,
	STMT_OBJ_PUT,
	STMT_OBJ_SET_VERIFIED,
	STMT_OBJ_UNVERIFY,
	STMT_OBJ_DEL,
	STMT_TREE_GET,
	STMT_TREE_PUT,
	STMT_ENTRY_PUT,
	STMT_ENTRIES_GET,
	STMT_REF_GET,
	STMT_REF_PUT,
	STMT_COUNT
};

/* The connections of one cache handle; see db.c. */
enum cache_conn_id {
	CONN_BLOCKS, /* blocks, objects, usage */
	CONN_INDEX, /* trees, refs */
	CONN_CKPT, /* WAL checkpoints only, taken with trylock */
	CONN_COUNT
};

/* One SQLite connection with its statement cache. */
struct cache_conn {
	struct hubfs_mutex lock; /* one conn.lock at a time */
	sqlite3 *db HUBFS_GUARDED_BY(lock);
	sqlite3_stmt *stmt[STMT_COUNT] HUBFS_GUARDED_BY(lock);
	/* Statements that delete block rows prepared here (whether or not
	 * they deleted any): with PRAGMA data_version, which counts other
	 * connections' commits, this says whether a row may have gone. */
	uint64_t deletes HUBFS_GUARDED_BY(lock);
};

/*
 * The index's epoch (see "Memos" in cache.c): PRAGMA data_version of
 * CONN_BLOCKS and its count of block-deleting statements.  !ok: unknown,
 * equal to nothing.
 */
struct cache_epoch {
	bool ok;
	int64_t dv;
	uint64_t deletes;
};

/* String-keyed open-addressing hash map; keys are borrowed. */
struct cache_map_slot {
	const char *key;
	void *val;
};

struct cache_map {
	struct cache_map_slot *slots; /* NULL until the first put */
	size_t cap; /* 0 or a power of two */
	size_t len;
};

enum cache_ent_state {
	ENT_INIT, /* being opened by the thread that inserted it */
	ENT_READY,
	ENT_FAILED, /* opening failed with err; already out of the map */
};

/*
 * The in-process state of one open object, shared by all its handles.
 * key, size, nblocks and (once READY) fd never change while it lives.
 */
struct cache_ent {
	char key[CACHE_KEY_MAX + 1];
	uint64_t size;
	uint64_t nblocks;
	int fd; /* the data file, holding flock(LOCK_SH) */
	/* The same file opened again, to wait for its writeback on: each
	 * descriptor hears of a failed write once, and fd's hearing is
	 * kept for writes_check() under wflock.  -1 if it could not be. */
	int wbfd;
	enum cache_ent_state state; /* protected by cache.obj_lock */
	int err; /* protected by cache.obj_lock */
	unsigned long refs; /* protected by cache.obj_lock */
	struct hubfs_mutex lock; /* a leaf: nothing is taken under it */
	/* Held across each pwrite() of block data, and nothing else: a
	 * buffered write holds the file's inode lock exclusively, and
	 * writers waiting for it spin in the kernel while the owner runs
	 * (12% of all CPU in a cold read with 8 fetch workers).  Here they
	 * sleep.  A leaf. */
	struct hubfs_mutex wlock;
	uint64_t gen HUBFS_GUARDED_BY(lock); /* bumped by drop() */
	/* Taken around every look at fd's failed writes and what follows
	 * one (dropping the blocks), so that no thread hears of a failure
	 * and serves a block before it is dropped.  Before conn.lock. */
	struct hubfs_mutex wflock;
	/* Failed writes heard of, twice over: odd from hearing of one until
	 * the blocks are dropped (for good if the drop fails). */
	_Atomic uint64_t wfail;
	/* Bits set: changed under lock with them, read without a lock
	 * (every read of an object not yet verified asks for it). */
	_Atomic uint64_t known;
	/* Verified-block bitmap: read without a lock, set and cleared
	 * only under lock. */
	_Atomic uint64_t *bits;
	/* The CRC of the row each bit set, or pages[] entry not zero, was
	 * checked against (all of a block's pages against the same row). */
	uint32_t *crcs HUBFS_GUARDED_BY(lock);
	/* Per block, the pages checked (bit i: page i), for blocks whose
	 * own bit is not set; same rules as bits. */
	_Atomic uint16_t *pages;
	/* What an earlier open in this process knew (see "Memos" in
	 * cache.c), and the index's epoch once this open pinned the file:
	 * set before the ent is READY, read-only after. */
	struct cache_memo *memo;
	struct cache_epoch epoch;
};

/* The checked blocks of an object closed in this process. */
struct cache_memo {
	char key[CACHE_KEY_MAX + 1];
	uint64_t size;
	uint64_t *bits;
	/* Of blocks whose bit is clear, the pages checked; NULL if none. */
	uint16_t *pages;
	uint32_t *crcs;
	/* The index's epoch when the ent it came from was opened. */
	struct cache_epoch epoch;
	uint64_t bytes;	/* the size of its arrays, as allocated */
	struct cache_memo *next; /* cache.memos, newest first */
};

/* Memos kept, and the most bytes their arrays may take together (all
 * but the newest); the oldest goes first.  A memo of a 4 GiB object
 * takes about 100 KiB, of a 100 GiB one 2.4 MiB. */
#define CACHE_MEMO_MAX 256
#define CACHE_MEMO_BYTES (32u << 20)

/* A batched LRU touch, flushed to the index about once a second. */
struct cache_touch {
	char key[CACHE_KEY_MAX + 1];
	uint64_t idx;
	int64_t atime; /* ms since the epoch */
};

struct hubfs_cache {
	uint64_t max_bytes;
	int dir_fd; /* cache_dir */
	int data_fd; /* cache_dir/data */
	struct cache_conn conn[CONN_COUNT];
	atomic_bool ckpt_wanted; /* set by the WAL hook */

	struct hubfs_mutex obj_lock; /* taken with no other lock held */
	pthread_cond_t obj_cond; /* with obj_lock: an ent left INIT */
	struct cache_map objs HUBFS_GUARDED_BY(obj_lock); /* key -> ent */
	struct cache_memo *memos HUBFS_GUARDED_BY(obj_lock);
	unsigned int nmemos HUBFS_GUARDED_BY(obj_lock);
	uint64_t memo_bytes HUBFS_GUARDED_BY(obj_lock);

	struct hubfs_mutex touch_lock; /* taken with no other lock held */
	struct cache_touch *touches HUBFS_GUARDED_BY(touch_lock);
	size_t ntouches HUBFS_GUARDED_BY(touch_lock);
	int64_t touch_due HUBFS_GUARDED_BY(touch_lock); /* monotonic ms */

	atomic_uint_fast64_t hits, misses, evicted, corrupt;
};

struct hubfs_cache_obj {
	struct hubfs_cache *cache;
	struct cache_ent *ent;
};

/* --- cache.c ---------------------------------------------------------- */

/* Whether @key is 40 or 64 lowercase hex digits. */
bool cache_key_ok(const char *key);

/* "AB/KEY" for @key into @rel. */
void cache_rel_path(char rel[CACHE_REL_MAX], const char *key);

/*
 * Open data file @rel (openat() @flags) and flock() it with @op.  Then
 * check that @rel still names the locked inode: an evictor may have
 * unlinked it between the open and the lock, and a lock on an unlinked
 * inode pins nothing.  -ESTALE if it no longer does, -EWOULDBLOCK for a
 * refused LOCK_NB, -ENOENT for a missing file.
 */
int cache_file_lock(int *out, struct hubfs_cache *cache, const char *rel,
		    int flags, int op);

/* Wall-clock milliseconds since the epoch, as stored in atime. */
int64_t cache_now_ms(void);

/* Write the pending LRU touches to the index. */
void cache_touch_flush(struct hubfs_cache *cache);

/* The value stored under @key, or NULL. */
void *cache_map_get(const struct cache_map *map, const char *key);

/* Add @key (borrowed; must outlive the entry) -> @val; @key must be
 * absent.  0 or -ENOMEM. */
int cache_map_put(struct cache_map *map, const char *key, void *val);

/* Remove @key if present. */
void cache_map_del(struct cache_map *map, const char *key);

/* Free the table (not the keys or values). */
void cache_map_free(struct cache_map *map);

/* --- db.c ------------------------------------------------------------- */

/* Open every connection of @cache on @path and create the schema.
 * *@dropped is set to true if an older schema's blocks were deleted
 * (the caller then sweeps the files), and left alone otherwise. */
int cache_db_open(struct hubfs_cache *cache, const char *path,
		  bool *dropped);

/* Finalize statements and close the connections.  Accepts closed ones. */
void cache_db_close(struct hubfs_cache *cache);

/*
 * Unlock @c, then run a passive WAL checkpoint if one is due, outside
 * every lock but the checkpoint connection's own.
 */
void cache_conn_unlock(struct hubfs_cache *cache, struct cache_conn *c)
	HUBFS_RELEASE(c->lock);

/* The prepared statement @id of @c, reset and ready to bind. */
int cache_stmt(sqlite3_stmt **out, struct cache_conn *c, enum cache_stmt id)
	HUBFS_REQUIRES(c->lock);

/* cache_stmt(), then bind ?1 = @a and, unless NULL, ?2 = @b; the
 * strings are borrowed until the statement is next reset. */
int cache_stmt_text(sqlite3_stmt **out, struct cache_conn *c,
		    enum cache_stmt id, const char *a, const char *b)
	HUBFS_REQUIRES(c->lock);

/* Step @st: 1 for a row, 0 when done (then @st is reset), or -errno
 * (then @st is reset). */
int cache_step(struct cache_conn *c, sqlite3_stmt *st) HUBFS_REQUIRES(c->lock);

/* Step @st expecting no row, and reset it.  0 or -errno. */
int cache_exec(struct cache_conn *c, sqlite3_stmt *st) HUBFS_REQUIRES(c->lock);

/* Run the cached statement @id, which takes no parameters and returns
 * no row. */
int cache_exec_id(struct cache_conn *c, enum cache_stmt id)
	HUBFS_REQUIRES(c->lock);

/* Run the cached statement @id with ?1 = @key, returning no row. */
int cache_exec_key(struct cache_conn *c, enum cache_stmt id, const char *key)
	HUBFS_REQUIRES(c->lock);

/* Whether object @key has any block row: 1, 0 or -errno. */
int cache_has_blocks(struct cache_conn *c, const char *key)
	HUBFS_REQUIRES(c->lock);

/* BEGIN IMMEDIATE: take the write lock now (waiting up to the busy
 * timeout), so the transaction never fails to upgrade later. */
int cache_begin(struct cache_conn *c) HUBFS_REQUIRES(c->lock);

/* COMMIT if @err is 0, else ROLLBACK; returns @err or the COMMIT error. */
int cache_end(struct cache_conn *c, int err) HUBFS_REQUIRES(c->lock);

/* Map SQLite result @rc to -errno and set the detail (@what failed). */
int cache_db_err(struct cache_conn *c, int rc, const char *what)
	HUBFS_REQUIRES(c->lock);

/* Bytes and blocks stored, from the usage row. */
int cache_usage(struct cache_conn *c, uint64_t *bytes, uint64_t *blocks)
	HUBFS_REQUIRES(c->lock);

/* --- evict.c ---------------------------------------------------------- */

struct cache_victim;
struct cache_evict_block;

/* What one eviction pass took; see evict.c. */
struct cache_evict {
	struct cache_victim **victims; /* one per object looked at */
	size_t nvictims, victims_cap;
	struct cache_map by_key; /* key -> victim */
	struct cache_evict_block *blocks; /* rows taken */
	size_t nblocks, blocks_cap;
	uint64_t freed;
};

#define CACHE_EVICT_INIT        \
	{                       \
		.victims = NULL \
	}

/*
 * Inside a write transaction on @c, delete the least recently used
 * blocks of unpinned objects until @need bytes are freed; -ENOSPC if
 * they cannot be, unless @partial (then ev->freed says how many were).  Holds LOCK_EX on every object taken, until
 * cache_evict_finish().
 */
int cache_evict_txn(struct hubfs_cache *cache, struct cache_conn *c,
		    uint64_t need, bool partial, struct cache_evict *ev)
	HUBFS_REQUIRES(c->lock);

/*
 * After the transaction ended (@committed: its deletions are durable),
 * punch the taken blocks out of their data files or delete files left
 * without blocks, then drop the locks and free @ev.  Called with no
 * lock held.
 */
void cache_evict_finish(struct hubfs_cache *cache, struct cache_evict *ev,
			bool committed);

/* --- crc32c.c --------------------------------------------------------- */

/* The table-driven CRC-32C, same contract as hubfs_crc32c(). */
uint32_t cache_crc32c_sw(uint32_t crc, const void *data, size_t len);

/* Whether this CPU has the SSE4.2 crc32 instruction. */
bool cache_crc32c_hw_ok(void);

/* The SSE4.2 CRC-32C, or the table one if the CPU lacks the instruction. */
uint32_t cache_crc32c_hw(uint32_t crc, const void *data, size_t len);

#endif /* HUBFS_CACHE_INT_H */
