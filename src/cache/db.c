/*
 * The cache index's SQLite connections.
 *
 * DESIGN
 *
 * What it owns.  cache_dir/index.db and the connections a cache handle
 * keeps on it, each with its own statement cache and its own mutex:
 *
 *   CONN_BLOCKS  blocks, objects, the usage row: the read path
 *   CONN_INDEX   trees and refs: storing a 50,000-entry tree holds this
 *                one for a while, and must not stall block reads
 *   CONN_CKPT    WAL checkpoints, and nothing else
 *
 * A connection is used only with its conn.lock held (the connections are
 * opened SQLITE_OPEN_NOMUTEX: the lock is ours, not SQLite's), and a
 * thread holds at most one conn.lock.  Statements are prepared on first
 * use and kept until close (SQLITE_PREPARE_PERSISTENT).
 *
 * Durability.  WAL mode with synchronous=NORMAL: a COMMIT appends to the
 * WAL and does not sync; only a checkpoint syncs.  Losing the last
 * commits in a power cut is harmless here (a lost block row means a
 * refetch, and a block row whose bytes were lost fails its CRC check), so
 * no commit waits for the disk.  Automatic checkpoints are turned off
 * because SQLite would run them inside COMMIT, i.e. with a conn.lock held
 * across an fsync.  Instead the WAL hook raises ckpt_wanted once the WAL
 * passes CKPT_PAGES pages, and cache_conn_unlock() runs a PASSIVE
 * checkpoint on CONN_CKPT after releasing the caller's lock.  A passive
 * checkpoint never blocks writers, readers, or other processes.
 *
 * Several processes may share index.db.  Writers take the database's
 * write lock at BEGIN IMMEDIATE, waiting up to BUSY_TIMEOUT_MS, so a
 * transaction never fails half-way to upgrade from reader to writer.
 *
 * Schema.  PRAGMA user_version holds CACHE_SCHEMA_VERSION.  0 means a
 * new file: the schema is created in one transaction (whose first step,
 * BEGIN IMMEDIATE, also settles a race between two processes creating
 * it).  A larger version was written by a newer hubfs: -ENOTSUP.
 * Version 1 stored blocks of another size, at other offsets: opening it
 * deletes every block and objects row in the same transaction that
 * raises the version (trees and refs stay), and the caller sweeps the
 * data files the rows described.  A process of the old version still
 * running on the directory can only add rows whose length or CRC will
 * not match, and such a block is deleted when first used.  Version 2
 * had no page CRCs: opening it adds the column, and its rows, whose
 * pages are NULL, are checked as whole blocks.  A version-2 process
 * still running may write such rows too, or (re-fetching a block) keep
 * a row's pages, which describe the same content.
 *
 * The usage row (bytes, blocks) is kept by triggers on blocks, so it
 * changes in the same transaction as every insert, delete or length
 * change of a block, and is never recomputed by scanning.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cache_int.h"
#include "hubfs/err.h"

#define BUSY_TIMEOUT_MS 5000
/* WAL size (in pages of 4 KiB) that asks for a checkpoint: SQLite's own
 * autocheckpoint default. */
#define CKPT_PAGES 1000

#define STR_(x) #x
#define STR(x) STR_(x)

static const char schema_sql[] =
	"CREATE TABLE blocks ("
	" key TEXT NOT NULL, idx INTEGER NOT NULL, len INTEGER NOT NULL,"
	" crc INTEGER NOT NULL, atime INTEGER NOT NULL, pages BLOB,"
	" PRIMARY KEY (key, idx)) WITHOUT ROWID;"
	"CREATE INDEX blocks_lru ON blocks (atime, key, idx, len);"
	"CREATE TABLE objects ("
	" key TEXT NOT NULL PRIMARY KEY, size INTEGER NOT NULL,"
	" verified INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
	"CREATE TABLE usage ("
	" id INTEGER PRIMARY KEY CHECK (id = 0),"
	" bytes INTEGER NOT NULL, blocks INTEGER NOT NULL);"
	"INSERT INTO usage (id, bytes, blocks) VALUES (0, 0, 0);"
	"CREATE TRIGGER blocks_ins AFTER INSERT ON blocks BEGIN"
	" UPDATE usage SET bytes = bytes + NEW.len, blocks = blocks + 1"
	" WHERE id = 0; END;"
	"CREATE TRIGGER blocks_del AFTER DELETE ON blocks BEGIN"
	" UPDATE usage SET bytes = bytes - OLD.len, blocks = blocks - 1"
	" WHERE id = 0; END;"
	"CREATE TRIGGER blocks_len AFTER UPDATE OF len ON blocks BEGIN"
	" UPDATE usage SET bytes = bytes - OLD.len + NEW.len WHERE id = 0;"
	" END;"
	"CREATE TABLE trees ("
	" repo TEXT NOT NULL, commit_id TEXT NOT NULL, time INTEGER NOT NULL,"
	" PRIMARY KEY (repo, commit_id)) WITHOUT ROWID;"
	"CREATE TABLE entries ("
	" repo TEXT NOT NULL, commit_id TEXT NOT NULL, seq INTEGER NOT NULL,"
	" type INTEGER NOT NULL, path TEXT NOT NULL, oid TEXT NOT NULL,"
	" size INTEGER NOT NULL, lfs INTEGER NOT NULL, sha256 TEXT NOT NULL,"
	" PRIMARY KEY (repo, commit_id, seq)) WITHOUT ROWID;"
	"CREATE TABLE refs ("
	" repo TEXT NOT NULL, name TEXT NOT NULL, commit_id TEXT NOT NULL,"
	" time INTEGER NOT NULL, updated INTEGER NOT NULL,"
	" PRIMARY KEY (repo, name)) WITHOUT ROWID;";

static const char *const stmt_sql[STMT_COUNT] = {
	[STMT_BEGIN] = "BEGIN IMMEDIATE",
	[STMT_COMMIT] = "COMMIT",
	[STMT_ROLLBACK] = "ROLLBACK",
	[STMT_USAGE_GET] = "SELECT bytes, blocks FROM usage WHERE id = 0",
	[STMT_DATA_VERSION] = "PRAGMA data_version",
	[STMT_BLOCK_GET] =
		"SELECT len, crc, pages FROM blocks WHERE key = ?1 AND idx = ?2",
	[STMT_BLOCK_PUT] =
		"INSERT INTO blocks (key, idx, len, crc, atime, pages)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key, idx)"
		" DO UPDATE SET len = excluded.len, crc = excluded.crc,"
		" atime = excluded.atime, pages = excluded.pages",
	[STMT_BLOCK_DEL] = "DELETE FROM blocks WHERE key = ?1 AND idx = ?2",
	[STMT_BLOCK_DEL_IF] =
		"DELETE FROM blocks WHERE key = ?1 AND idx = ?2 AND len = ?3"
		" AND crc = ?4",
	[STMT_BLOCK_TOUCH] =
		"UPDATE blocks SET atime = ?3 WHERE key = ?1 AND idx = ?2"
		" AND atime < ?3",
	[STMT_BLOCKS_DEL_OBJ] = "DELETE FROM blocks WHERE key = ?1",
	[STMT_BLOCKS_ANY] =
		"SELECT EXISTS (SELECT 1 FROM blocks WHERE key = ?1)",
	[STMT_BLOCKS_LRU] =
		"SELECT key, idx, len FROM blocks ORDER BY atime, key, idx",
	[STMT_BLOCKS_OF] = "SELECT idx FROM blocks WHERE key = ?1",
	[STMT_OBJ_GET] = "SELECT size, verified FROM objects WHERE key = ?1",
	[STMT_OBJ_PUT] =
		"INSERT INTO objects (key, size, verified) VALUES (?1, ?2, 0)"
		" ON CONFLICT (key) DO UPDATE SET size = excluded.size,"
		" verified = 0",
	[STMT_OBJ_SET_VERIFIED] =
		"INSERT INTO objects (key, size, verified) VALUES (?1, ?2, 1)"
		" ON CONFLICT (key) DO UPDATE SET verified = 1",
	[STMT_OBJ_UNVERIFY] = "UPDATE objects SET verified = 0 WHERE key = ?1",
	[STMT_OBJ_DEL] = "DELETE FROM objects WHERE key = ?1",
	[STMT_TREE_GET] =
		"SELECT time FROM trees WHERE repo = ?1 AND commit_id = ?2",
	[STMT_TREE_PUT] =
		"INSERT INTO trees (repo, commit_id, time) VALUES (?1, ?2, ?3)",
	[STMT_ENTRY_PUT] =
		"INSERT INTO entries (repo, commit_id, seq, type, path, oid,"
		" size, lfs, sha256)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[STMT_ENTRIES_GET] =
		"SELECT seq, type, path, oid, size, lfs, sha256 FROM entries"
		" WHERE repo = ?1 AND commit_id = ?2 AND seq >= ?3"
		" ORDER BY seq LIMIT ?4",
	[STMT_REF_GET] = "SELECT commit_id, time FROM refs"
			 " WHERE repo = ?1 AND name = ?2",
	[STMT_REF_PUT] =
		"INSERT INTO refs (repo, name, commit_id, time, updated)"
		" VALUES (?1, ?2, ?3, ?4, ?5)"
		" ON CONFLICT (repo, name) DO UPDATE"
		" SET commit_id = excluded.commit_id, time = excluded.time,"
		" updated = excluded.updated",
};

static int sqlite_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	default:
		return -EIO;
	}
}

int cache_db_err(struct cache_conn *c, int rc, const char *what)
{
	hubfs_err_set("cache index: %s: %s", what,
		      c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
	return sqlite_errno(rc);
}

/* Run a passive checkpoint if no other thread is running one. */
static void
checkpoint(struct hubfs_cache *cache) HUBFS_NO_THREAD_SAFETY_ANALYSIS
{
	struct cache_conn *ck = &cache->conn[CONN_CKPT];

	/* Another thread already checkpointing covers this request. */
	if (pthread_mutex_trylock(&ck->lock.mutex) != 0)
		return;
	/* The result does not matter: a checkpoint that could not finish
	 * (readers still on old frames) is asked for again by the hook. */
	sqlite3_wal_checkpoint_v2(ck->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
				  NULL);
	hubfs_mutex_unlock(&ck->lock);
}

void cache_conn_unlock(struct hubfs_cache *cache, struct cache_conn *c)
{
	hubfs_mutex_unlock(&c->lock);
	if (atomic_exchange(&cache->ckpt_wanted, false))
		checkpoint(cache);
}

/* Called by SQLite after each commit with the WAL's size in pages. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct hubfs_cache *cache = arg;

	(void)db;
	(void)name;
	if (pages >= CKPT_PAGES)
		atomic_store(&cache->ckpt_wanted, true);
	return SQLITE_OK;
}

int cache_stmt(sqlite3_stmt **out, struct cache_conn *c, enum cache_stmt id)
{
	sqlite3_stmt *st = c->stmt[id];
	int rc;

	*out = NULL;	/* set on every path: callers test only the result */
	if (id == STMT_BLOCK_DEL || id == STMT_BLOCK_DEL_IF ||
	    id == STMT_BLOCKS_DEL_OBJ)
		c->deletes++;
	if (st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	} else {
		rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1,
					SQLITE_PREPARE_PERSISTENT, &st, NULL);
		if (rc != SQLITE_OK)
			return cache_db_err(c, rc, "prepare");
		c->stmt[id] = st;
	}
	*out = st;
	return 0;
}

int cache_stmt_text(sqlite3_stmt **out, struct cache_conn *c,
		    enum cache_stmt id, const char *a, const char *b)
{
	int err = cache_stmt(out, c, id);

	if (err)
		return err;
	sqlite3_bind_text(*out, 1, a, -1, SQLITE_STATIC);
	if (b)
		sqlite3_bind_text(*out, 2, b, -1, SQLITE_STATIC);
	return 0;
}

int cache_step(struct cache_conn *c, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	int err;

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	err = cache_db_err(c, rc, "step");
	sqlite3_reset(st);
	return err;
}

int cache_exec(struct cache_conn *c, sqlite3_stmt *st)
{
	int ret = cache_step(c, st);

	if (ret <= 0)
		return ret;
	sqlite3_reset(st);
	return 0;
}

int cache_exec_id(struct cache_conn *c, enum cache_stmt id)
{
	sqlite3_stmt *st = NULL;
	int err = cache_stmt(&st, c, id);

	return err ? err : cache_exec(c, st);
}

int cache_exec_key(struct cache_conn *c, enum cache_stmt id, const char *key)
{
	sqlite3_stmt *st;
	int err = cache_stmt_text(&st, c, id, key, NULL);

	return err ? err : cache_exec(c, st);
}

int cache_has_blocks(struct cache_conn *c, const char *key)
{
	sqlite3_stmt *st;
	int ret = cache_stmt_text(&st, c, STMT_BLOCKS_ANY, key, NULL);

	if (ret)
		return ret;
	ret = cache_step(c, st);
	if (ret == 1) {
		ret = sqlite3_column_int(st, 0) != 0;
		sqlite3_reset(st);
	}
	return ret;
}

int cache_begin(struct cache_conn *c)
{
	return cache_exec_id(c, STMT_BEGIN);
}

int cache_end(struct cache_conn *c, int err)
{
	if (!err) {
		err = cache_exec_id(c, STMT_COMMIT);
		if (!err)
			return 0;
	}
	/* A failed COMMIT can leave the transaction open; close it. */
	if (!sqlite3_get_autocommit(c->db))
		cache_exec_id(c, STMT_ROLLBACK);
	return err;
}

int cache_usage(struct cache_conn *c, uint64_t *bytes, uint64_t *blocks)
{
	sqlite3_stmt *st;
	int ret = cache_stmt(&st, c, STMT_USAGE_GET);

	if (ret)
		return ret;
	ret = cache_step(c, st);
	if (ret < 0)
		return ret;
	if (ret == 0) {
		hubfs_err_set("cache index: the usage row is missing");
		return -EIO;
	}
	*bytes = (uint64_t)sqlite3_column_int64(st, 0);
	*blocks = (uint64_t)sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	return 0;
}

/* Run @sql, which returns at most one row, and fetch its first column as
 * text into @val (@n bytes) or as an integer into *@num; either may be
 * NULL. */
static int conn_pragma(struct cache_conn *c, const char *sql, char *val,
		       size_t n, int64_t *num) HUBFS_REQUIRES(c->lock)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	int err = 0;

	if (rc != SQLITE_OK)
		return cache_db_err(c, rc, sql);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *text = sqlite3_column_text(st, 0);

		if (val)
			snprintf(val, n, "%s", text ? (const char *)text : "");
		if (num)
			*num = sqlite3_column_int64(st, 0);
	} else if (rc != SQLITE_DONE) {
		err = cache_db_err(c, rc, sql);
	}
	sqlite3_finalize(st);
	return err;
}

static int conn_open(struct hubfs_cache *cache, struct cache_conn *c,
		     const char *path) HUBFS_REQUIRES(c->lock)
{
	char mode[16];
	int rc, err;

	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK)
		return cache_db_err(c, rc, path);
	sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
	/* journal_mode answers with the mode in force: a file system that
	 * cannot share memory between processes refuses WAL. */
	err = conn_pragma(c, "PRAGMA journal_mode = WAL", mode, sizeof(mode),
			  NULL);
	if (err)
		return err;
	if (strcmp(mode, "wal") != 0) {
		hubfs_err_set("cache index: %s: WAL mode unavailable (%s)",
			      path, mode);
		return -ENOTSUP;
	}
	rc = sqlite3_exec(c->db,
			  "PRAGMA synchronous = NORMAL;"
			  "PRAGMA foreign_keys = OFF;"
			  "PRAGMA wal_autocheckpoint = 0;",
			  NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return cache_db_err(c, rc, "pragma");
	sqlite3_wal_hook(c->db, wal_hook, cache);
	return 0;
}

static int schema_init(struct cache_conn *c, bool *dropped)
	HUBFS_REQUIRES(c->lock)
{
	int64_t version = 0;
	int rc, err;

	err = cache_begin(c);
	if (err)
		return err;
	err = conn_pragma(c, "PRAGMA user_version", NULL, 0, &version);
	if (err)
		goto out;
	if (version == 0) {
		rc = sqlite3_exec(c->db, schema_sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(c->db,
					  "PRAGMA user_version = " STR(
						  CACHE_SCHEMA_VERSION),
					  NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			err = cache_db_err(c, rc, "create schema");
	} else if (version == 1 || version == 2) {
		rc = SQLITE_OK;
		if (version == 1)
			rc = sqlite3_exec(c->db,
					  "DELETE FROM blocks;"
					  "DELETE FROM objects;",
					  NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(c->db,
					  "ALTER TABLE blocks ADD COLUMN pages BLOB;"
					  "PRAGMA user_version = " STR(
						  CACHE_SCHEMA_VERSION),
					  NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			err = cache_db_err(c, rc, "upgrade schema");
		else if (version == 1)
			*dropped = true;
	} else if (version != CACHE_SCHEMA_VERSION) {
		hubfs_err_set("cache index: schema version %lld, this hubfs "
			      "knows %d",
			      (long long)version, CACHE_SCHEMA_VERSION);
		err = -ENOTSUP;
	}
out:
	return cache_end(c, err);
}

int cache_db_open(struct hubfs_cache *cache, const char *path,
		  bool *dropped)
{
	int err = 0;

	for (int i = 0; i < CONN_COUNT && !err; i++) {
		struct cache_conn *c = &cache->conn[i];

		hubfs_mutex_lock(&c->lock);
		err = conn_open(cache, c, path);
		if (!err && i == CONN_BLOCKS)
			err = schema_init(c, dropped);
		hubfs_mutex_unlock(&c->lock);
	}
	return err;
}

void cache_db_close(struct hubfs_cache *cache)
{
	for (int i = 0; i < CONN_COUNT; i++) {
		struct cache_conn *c = &cache->conn[i];

		hubfs_mutex_lock(&c->lock);
		for (int s = 0; s < STMT_COUNT; s++) {
			sqlite3_finalize(c->stmt[s]);
			c->stmt[s] = NULL;
		}
		sqlite3_close_v2(c->db);
		c->db = NULL;
		hubfs_mutex_unlock(&c->lock);
	}
}
