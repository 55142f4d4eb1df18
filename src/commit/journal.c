/*
 * The write journal (include/hubfs/journal.h).
 *
 * DESIGN
 *
 * What it owns.  cache_dir/journal.db, and cache_dir/staging/H/ for one
 * repository and branch (H hashes the two), which holds that branch's
 * staged files and the file LOCK.  A handle holds an exclusive flock on
 * LOCK for its lifetime, so one process at a time stages changes for a
 * branch in one cache directory, and the staged files in H/ are all its
 * own: that is what makes hubfs_journal_stage_gc() safe.
 *
 * The database is separate from the block cache's index.db: the read
 * path's transactions never wait for the write path's, and removing the
 * block cache (`rm -r cache_dir/data cache_dir/index.db`) never loses a
 * change.
 *
 * Schema (user_version 1):
 *   branches (repo, branch) -> base, gen (the row counter)
 *   changes  (repo, branch, path) -> deleted, stage, ref_*, base_len,
 *            filled, gen
 *   attempts (repo, branch, marker) -> parent, snap_gen
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hubfs/err.h"
#include "hubfs/journal.h"
#include "hubfs/mem.h"

#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 5000
#define RESERVE_BYTES (4u << 20)

static const char schema_sql[] =
	"CREATE TABLE branches ("
	" repo TEXT NOT NULL, branch TEXT NOT NULL, base TEXT NOT NULL,"
	" gen INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (repo, branch)) WITHOUT ROWID;"
	"CREATE TABLE attempts ("
	" repo TEXT NOT NULL, branch TEXT NOT NULL, marker TEXT NOT NULL,"
	" parent TEXT NOT NULL, snap_gen INTEGER NOT NULL,"
	" PRIMARY KEY (repo, branch, marker)) WITHOUT ROWID;"
	"CREATE TABLE changes ("
	" repo TEXT NOT NULL, branch TEXT NOT NULL, path TEXT NOT NULL,"
	" deleted INTEGER NOT NULL, stage TEXT NOT NULL,"
	" ref_commit TEXT NOT NULL, ref_path TEXT NOT NULL,"
	" ref_key TEXT NOT NULL, ref_lfs INTEGER NOT NULL,"
	" ref_size INTEGER NOT NULL, base_len INTEGER NOT NULL,"
	" filled BLOB, gen INTEGER NOT NULL,"
	" over TEXT NOT NULL DEFAULT '',"
	" PRIMARY KEY (repo, branch, path)) WITHOUT ROWID;"
	"PRAGMA user_version = 1;";

enum stmt {
	S_BEGIN, S_COMMIT, S_ROLLBACK,
	S_BASE_GET, S_BASE_SET, S_GEN_NEXT,
	S_PUT, S_FILLED, S_OVER, S_TOUCH, S_REMOVE, S_GET, S_LIST, S_STAGE_USED,
	S_GEN_GET, S_ATT_ADD, S_ATT_LIST, S_ATT_DONE, S_ATT_CLEAR, S_ATT_DEL,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_BASE_GET] = "SELECT base FROM branches WHERE repo = ?1 AND"
		       " branch = ?2",
	[S_BASE_SET] = "INSERT INTO branches (repo, branch, base)"
		       " VALUES (?1, ?2, ?3) ON CONFLICT (repo, branch)"
		       " DO UPDATE SET base = excluded.base",
	[S_GEN_NEXT] = "UPDATE branches SET gen = gen + 1 WHERE repo = ?1"
		       " AND branch = ?2 RETURNING gen",
	[S_PUT] = "INSERT OR REPLACE INTO changes (repo, branch, path,"
		  " deleted, stage, ref_commit, ref_path, ref_key, ref_lfs,"
		  " ref_size, base_len, filled, gen) VALUES"
		  " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
	[S_FILLED] = "UPDATE changes SET base_len = ?4, filled = ?5"
		     " WHERE repo = ?1 AND branch = ?2 AND path = ?3",
	[S_OVER] = "UPDATE changes SET over = ?4"
		   " WHERE repo = ?1 AND branch = ?2 AND path = ?3",
	[S_TOUCH] = "UPDATE changes SET gen = ?4"
		    " WHERE repo = ?1 AND branch = ?2 AND path = ?3",
	[S_REMOVE] = "DELETE FROM changes WHERE repo = ?1 AND branch = ?2"
		     " AND path = ?3",
	[S_GET] = "SELECT path, deleted, stage, ref_commit, ref_path,"
		  " ref_key, ref_lfs, ref_size, base_len, filled, gen,"
		  " over FROM changes WHERE repo = ?1 AND branch = ?2"
		  " AND path = ?3",
	[S_LIST] = "SELECT path, deleted, stage, ref_commit, ref_path,"
		   " ref_key, ref_lfs, ref_size, base_len, filled, gen,"
		   " over FROM changes WHERE repo = ?1 AND branch = ?2"
		   " ORDER BY path",
	[S_STAGE_USED] = "SELECT EXISTS (SELECT 1 FROM changes WHERE"
			 " repo = ?1 AND branch = ?2 AND stage = ?3)",
	[S_GEN_GET] = "SELECT gen FROM branches WHERE repo = ?1 AND"
		      " branch = ?2",
	[S_ATT_ADD] = "INSERT OR REPLACE INTO attempts (repo, branch, marker,"
		      " parent, snap_gen) VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_ATT_LIST] = "SELECT marker, parent, snap_gen FROM attempts WHERE"
		       " repo = ?1 AND branch = ?2 ORDER BY snap_gen",
	[S_ATT_DONE] = "DELETE FROM changes WHERE repo = ?1 AND branch = ?2"
		       " AND gen <= ?3",
	[S_ATT_CLEAR] = "DELETE FROM attempts WHERE repo = ?1 AND"
			" branch = ?2",
	[S_ATT_DEL] = "DELETE FROM attempts WHERE repo = ?1 AND branch = ?2"
		      " AND marker = ?3",
};

struct hubfs_journal {
	sqlite3 *db;
	sqlite3_stmt *stmts[S_COUNT];
	char *repo;
	char *branch;
	char *stage_dir;	/* cache_dir/staging/H */
	int lock_fd;
	unsigned int depth;	/* nested hubfs_journal_begin() */
	bool reserved;		/* the RESERVE file is there */
};

static int db_err(struct hubfs_journal *j, const char *what)
{
	int rc = sqlite3_errcode(j->db);

	hubfs_err_set("the write journal: %s: %s", what, sqlite3_errmsg(j->db));
	if (rc == SQLITE_FULL)
		return -ENOSPC;
	if (rc == SQLITE_NOMEM)
		return -ENOMEM;
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return -EBUSY;
	return -EIO;
}

/* A statement with the branch's key bound as ?1 and ?2. */
static sqlite3_stmt *stmt(struct hubfs_journal *j, enum stmt s)
{
	sqlite3_stmt *st = j->stmts[s];

	if (!st) {
		if (sqlite3_prepare_v3(j->db, stmt_sql[s], -1,
				       SQLITE_PREPARE_PERSISTENT, &st,
				       NULL) != SQLITE_OK)
			return NULL;
		j->stmts[s] = st;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (s >= S_BASE_GET) {
		sqlite3_bind_text(st, 1, j->repo, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, j->branch, -1, SQLITE_STATIC);
	}
	return st;
}

/* Run a statement that returns no rows. */
/*
 * The reserve: a few MiB held in the staging directory, given back when
 * the disk is full so that the journal can still record what frees
 * space (an unlink, a truncate, a commit that lands).  Made again once
 * there is room.
 */
static void reserve_make(struct hubfs_journal *j)
{
	char *path;
	int fd;

	if (j->reserved || asprintf(&path, "%s/RESERVE", j->stage_dir) < 0)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0 && posix_fallocate(fd, 0, RESERVE_BYTES) == 0)
		j->reserved = true;
	else if (fd >= 0)
		unlink(path);
	if (fd >= 0)
		close(fd);
	free(path);
}

static bool reserve_release(struct hubfs_journal *j)
{
	char *path;

	if (!j->reserved || asprintf(&path, "%s/RESERVE", j->stage_dir) < 0)
		return false;
	unlink(path);
	free(path);
	j->reserved = false;
	return true;
}

static int run(struct hubfs_journal *j, sqlite3_stmt *st, const char *what)
{
	int rc;

	if (!st)
		return db_err(j, what);
	rc = sqlite3_step(st);
	if (rc == SQLITE_FULL && reserve_release(j)) {
		sqlite3_reset(st);
		rc = sqlite3_step(st);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_err(j, what);
	return 0;
}

int hubfs_journal_begin(struct hubfs_journal *j)
{
	int err;

	if (j->depth++ > 0)
		return 0;
	err = run(j, stmt(j, S_BEGIN), "begin");
	if (err)
		j->depth = 0;
	return err;
}

int hubfs_journal_commit(struct hubfs_journal *j)
{
	int err;

	if (j->depth == 0 || --j->depth > 0)
		return 0;
	err = run(j, stmt(j, S_COMMIT), "commit");
	if (err)
		run(j, stmt(j, S_ROLLBACK), "rollback");
	return err;
}

void hubfs_journal_rollback(struct hubfs_journal *j)
{
	if (j->depth == 0)
		return;
	j->depth = 0;
	run(j, stmt(j, S_ROLLBACK), "rollback");
}

static uint64_t fnv64(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ULL;
	const char *p;

	for (p = a; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (p = b; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		int err = -errno;

		hubfs_err_set("cannot create %s: %s", path, strerror(errno));
		return err;
	}
	return 0;
}

static int open_db(struct hubfs_journal *j, const char *dir)
{
	char *path = NULL;
	int version = -1, err;
	sqlite3_stmt *st;

	if (asprintf(&path, "%s/journal.db", dir) < 0)
		return -ENOMEM;
	if (sqlite3_open_v2(path, &j->db, SQLITE_OPEN_READWRITE |
			    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		hubfs_err_set("cannot open %s: %s", path,
			      j->db ? sqlite3_errmsg(j->db) : "out of memory");
		free(path);
		return -EIO;
	}
	free(path);
	sqlite3_busy_timeout(j->db, BUSY_TIMEOUT_MS);
	if (sqlite3_exec(j->db, "PRAGMA journal_mode = WAL;"
			 "PRAGMA synchronous = NORMAL;", NULL, NULL,
			 NULL) != SQLITE_OK)
		return db_err(j, "setting up");
	if (sqlite3_exec(j->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return db_err(j, "opening");
	if (sqlite3_prepare_v2(j->db, "PRAGMA user_version", -1, &st,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			version = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	if (version == 0 &&
	    sqlite3_exec(j->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
		err = db_err(j, "creating the schema");
		sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
		return err;
	}
	if (sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(j, "opening");
	if (version > SCHEMA_VERSION) {
		hubfs_err_set("the write journal was written by a newer hubfs "
			      "(schema %d)", version);
		return -ENOTSUP;
	}
	if (version < 0)
		return db_err(j, "reading the schema version");
	return 0;
}

int hubfs_journal_open(struct hubfs_journal **out, const char *dir,
		       const char *repo, const char *branch)
{
	struct hubfs_journal *j = hubfs_calloc(1, sizeof(*j));
	char *staging = NULL, *lock = NULL;
	int err = -ENOMEM;

	if (!j)
		return -ENOMEM;
	j->lock_fd = -1;
	j->repo = hubfs_strdup(repo);
	j->branch = hubfs_strdup(branch);
	if (!j->repo || !j->branch ||
	    asprintf(&staging, "%s/staging", dir) < 0)
		goto out_free;
	if (asprintf(&j->stage_dir, "%s/%016" PRIx64, staging,
		     fnv64(repo, branch)) < 0) {
		j->stage_dir = NULL;
		goto out_free;
	}
	err = make_dir(staging);
	if (!err)
		err = make_dir(j->stage_dir);
	if (err)
		goto out_free;
	if (asprintf(&lock, "%s/LOCK", j->stage_dir) < 0) {
		lock = NULL;
		err = -ENOMEM;
		goto out_free;
	}
	j->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->lock_fd < 0) {
		err = -errno;
		hubfs_err_set("cannot open %s: %s", lock, strerror(errno));
		goto out_free;
	}
	if (flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		hubfs_err_set("another hubfs process is writing branch %s of "
			      "this repository with the same cache directory",
			      branch);
		goto out_free;
	}
	err = open_db(j, dir);
	if (err)
		goto out_free;
	reserve_make(j);
	free(staging);
	free(lock);
	*out = j;
	return 0;

out_free:
	free(staging);
	free(lock);
	hubfs_journal_close(j);
	return err;
}

void hubfs_journal_close(struct hubfs_journal *j)
{
	int i;

	if (!j)
		return;
	for (i = 0; i < S_COUNT; i++)
		sqlite3_finalize(j->stmts[i]);
	if (j->db)
		sqlite3_close(j->db);
	if (j->lock_fd >= 0)
		close(j->lock_fd);	/* releases the flock */
	free(j->stage_dir);
	hubfs_free(j->repo);
	hubfs_free(j->branch);
	hubfs_free(j);
}

int hubfs_journal_get_base(struct hubfs_journal *j, char base[41])
{
	sqlite3_stmt *st = stmt(j, S_BASE_GET);
	const unsigned char *v;
	int rc;

	if (!st)
		return db_err(j, "reading the base");
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return -ENOENT;
	}
	if (rc != SQLITE_ROW)
		return db_err(j, "reading the base");
	v = sqlite3_column_text(st, 0);
	snprintf(base, 41, "%s", v ? (const char *)v : "");
	sqlite3_reset(st);
	return 0;
}

int hubfs_journal_set_base(struct hubfs_journal *j, const char *base)
{
	sqlite3_stmt *st = stmt(j, S_BASE_SET);

	if (st)
		sqlite3_bind_text(st, 3, base, -1, SQLITE_TRANSIENT);
	return run(j, st, "setting the base");
}

static int next_gen(struct hubfs_journal *j, int64_t *gen)
{
	sqlite3_stmt *st = stmt(j, S_GEN_NEXT);
	int rc;

	if (!st)
		return db_err(j, "counting");
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		if (rc == SQLITE_DONE) {
			hubfs_err_set("the write journal has no base for this "
				      "branch");
			return -EINVAL;
		}
		return db_err(j, "counting");
	}
	*gen = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

int hubfs_journal_put(struct hubfs_journal *j, const struct hubfs_jchange *c)
{
	sqlite3_stmt *st;
	int64_t gen;
	int err;

	err = next_gen(j, &gen);
	if (err)
		return err;
	st = stmt(j, S_PUT);
	if (st) {
		sqlite3_bind_text(st, 3, c->path, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 4, c->deleted);
		sqlite3_bind_text(st, 5, c->stage, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 6, c->ref.commit, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 7, c->ref.path ? c->ref.path : "", -1,
				  SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 8, c->ref.key, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 9, c->ref.lfs);
		sqlite3_bind_int64(st, 10, (sqlite3_int64)c->ref.size);
		sqlite3_bind_int64(st, 11, (sqlite3_int64)c->base_len);
		if (c->filled && c->filled_len)
			sqlite3_bind_blob(st, 12, c->filled, (int)c->filled_len,
					  SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 13, gen);
	}
	return run(j, st, "recording a change");
}

int hubfs_journal_set_filled(struct hubfs_journal *j, const char *path,
			     uint64_t base_len, const uint8_t *filled,
			     uint32_t filled_len)
{
	sqlite3_stmt *st = stmt(j, S_FILLED);

	if (st) {
		sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)base_len);
		if (filled && filled_len)
			sqlite3_bind_blob(st, 5, filled, (int)filled_len,
					  SQLITE_TRANSIENT);
	}
	return run(j, st, "recording written blocks");
}

int hubfs_journal_set_over(struct hubfs_journal *j, const char *path,
			   const char *over)
{
	sqlite3_stmt *st = stmt(j, S_OVER);
	int err;

	if (st) {
		sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 4, over, -1, SQLITE_TRANSIENT);
	}
	err = run(j, st, "recording a resolved conflict");
	if (!err && sqlite3_changes(j->db) == 0) {
		hubfs_err_set("%s has no pending change", path);
		err = -ENOENT;
	}
	return err;
}

int hubfs_journal_touch(struct hubfs_journal *j, const char *path)
{
	sqlite3_stmt *st;
	int64_t gen;
	int err;

	err = next_gen(j, &gen);
	if (err)
		return err;
	st = stmt(j, S_TOUCH);
	if (st) {
		sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, gen);
	}
	return run(j, st, "recording a change");
}

int hubfs_journal_remove(struct hubfs_journal *j, const char *path)
{
	sqlite3_stmt *st = stmt(j, S_REMOVE);

	if (st)
		sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
	return run(j, st, "removing a change");
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *v = sqlite3_column_text(st, i);

	return v ? (const char *)v : "";
}

/* Hand the row @st is on to @cb. */
static int row_cb(sqlite3_stmt *st, hubfs_journal_cb cb, void *arg)
{
	struct hubfs_jchange c;

	memset(&c, 0, sizeof(c));
	c.path = col_text(st, 0);
	c.deleted = sqlite3_column_int(st, 1) != 0;
	snprintf(c.stage, sizeof(c.stage), "%s", col_text(st, 2));
	snprintf(c.ref.commit, sizeof(c.ref.commit), "%s", col_text(st, 3));
	c.ref.path = col_text(st, 4);
	snprintf(c.ref.key, sizeof(c.ref.key), "%s", col_text(st, 5));
	c.ref.lfs = sqlite3_column_int(st, 6) != 0;
	c.ref.size = (uint64_t)sqlite3_column_int64(st, 7);
	c.base_len = (uint64_t)sqlite3_column_int64(st, 8);
	c.filled = sqlite3_column_blob(st, 9);
	c.filled_len = (uint32_t)sqlite3_column_bytes(st, 9);
	c.gen = sqlite3_column_int64(st, 10);
	snprintf(c.over, sizeof(c.over), "%s", col_text(st, 11));
	return cb(arg, &c);
}

int hubfs_journal_get(struct hubfs_journal *j, const char *path,
		      hubfs_journal_cb cb, void *arg)
{
	sqlite3_stmt *st = stmt(j, S_GET);
	int rc, err;

	if (!st)
		return db_err(j, "reading a change");
	sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	if (rc != SQLITE_ROW)
		return db_err(j, "reading a change");
	err = row_cb(st, cb, arg);
	sqlite3_reset(st);
	return err ? err : 1;
}

int hubfs_journal_list(struct hubfs_journal *j, hubfs_journal_cb cb,
		       void *arg)
{
	sqlite3_stmt *st = stmt(j, S_LIST);
	int rc, n = 0, err = 0;

	if (!st)
		return db_err(j, "listing changes");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		err = row_cb(st, cb, arg);
		if (err)
			break;
		n++;
	}
	if (!err && rc != SQLITE_DONE)
		err = db_err(j, "listing changes");
	sqlite3_reset(st);
	return err ? err : n;
}

/* --- staged files ----------------------------------------------------------- */

static int stage_path(struct hubfs_journal *j, const char *name, char **out)
{
	size_t i, n = strlen(name);

	/* Names come from the journal: never let one leave the directory. */
	if (n == 0 || n > 32)
		goto out_bad;
	for (i = 0; i < n; i++)
		if (!((name[i] >= '0' && name[i] <= '9') ||
		      (name[i] >= 'a' && name[i] <= 'f')))
			goto out_bad;
	if (asprintf(out, "%s/%s", j->stage_dir, name) < 0)
		return -ENOMEM;
	return 0;

out_bad:
	hubfs_err_set("the write journal names a bad staged file");
	return -EIO;
}

int hubfs_journal_stage_create(struct hubfs_journal *j, char name[33],
			       int *fd)
{
	unsigned char rnd[16];
	char *path;
	int i, f, err;

	for (;;) {
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return -EIO;
		for (i = 0; i < 16; i++)
			sprintf(name + 2 * i, "%02x", rnd[i]);
		err = stage_path(j, name, &path);
		if (err)
			return err;
		f = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		err = f < 0 ? -errno : 0;
		if (f < 0 && errno != EEXIST)
			hubfs_err_set("cannot create a staged file in %s: %s",
				      j->stage_dir, strerror(errno));
		free(path);
		if (f >= 0) {
			*fd = f;
			return 0;
		}
		if (err != -EEXIST)
			return err;
	}
}

int hubfs_journal_stage_open(struct hubfs_journal *j, const char *name,
			     int *fd)
{
	char *path;
	int f, err;

	err = stage_path(j, name, &path);
	if (err)
		return err;
	f = open(path, O_RDWR | O_CLOEXEC);
	if (f < 0) {
		err = -errno;
		hubfs_err_set("cannot open staged file %s: %s", path,
			      strerror(errno));
	} else {
		*fd = f;
	}
	free(path);
	return err;
}

void hubfs_journal_stage_unlink(struct hubfs_journal *j, const char *name)
{
	char *path;

	if (stage_path(j, name, &path) == 0) {
		unlink(path);
		free(path);
	}
	reserve_make(j);	/* there may be room again */
}

int hubfs_journal_stage_gc(struct hubfs_journal *j)
{
	DIR *d = opendir(j->stage_dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL) {
		sqlite3_stmt *st;
		int used = 1;

		if (strlen(de->d_name) != 32 || de->d_name[0] == '.')
			continue;
		st = stmt(j, S_STAGE_USED);
		if (!st)
			break;
		sqlite3_bind_text(st, 3, de->d_name, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) == SQLITE_ROW)
			used = sqlite3_column_int(st, 0);
		sqlite3_reset(st);
		if (!used) {
			hubfs_journal_stage_unlink(j, de->d_name);
			n++;
		}
	}
	closedir(d);
	return n;
}

/* --- attempts ---------------------------------------------------------------- */

int hubfs_journal_attempt_begin(struct hubfs_journal *j, const char *parent,
				const char *marker)
{
	sqlite3_stmt *st = stmt(j, S_GEN_GET);
	int64_t gen = -1;

	if (!st)
		return db_err(j, "recording a commit attempt");
	if (sqlite3_step(st) == SQLITE_ROW)
		gen = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (gen < 0)
		return db_err(j, "recording a commit attempt");
	st = stmt(j, S_ATT_ADD);
	if (st) {
		sqlite3_bind_text(st, 3, marker, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 4, parent, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 5, gen);
	}
	return run(j, st, "recording a commit attempt");
}

int hubfs_journal_attempt_list(struct hubfs_journal *j,
			       struct hubfs_jattempt *out, int max)
{
	sqlite3_stmt *st = stmt(j, S_ATT_LIST);
	int rc, n = 0;

	if (!st)
		return db_err(j, "reading commit attempts");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) {
		snprintf(out[n].marker, sizeof(out[n].marker), "%s",
			 col_text(st, 0));
		snprintf(out[n].parent, sizeof(out[n].parent), "%s",
			 col_text(st, 1));
		out[n].snap_gen = sqlite3_column_int64(st, 2);
		n++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		sqlite3_reset(st);
		return db_err(j, "reading commit attempts");
	}
	sqlite3_reset(st);
	return n;
}

int hubfs_journal_attempt_done(struct hubfs_journal *j,
			       const struct hubfs_jattempt *a,
			       const char *commit)
{
	sqlite3_stmt *st;
	int err;

	err = hubfs_journal_begin(j);
	if (err)
		return err;
	st = stmt(j, S_ATT_DONE);
	if (st)
		sqlite3_bind_int64(st, 3, a->snap_gen);
	err = run(j, st, "recording a commit");
	if (!err)
		err = hubfs_journal_set_base(j, commit);
	if (!err)
		err = run(j, stmt(j, S_ATT_CLEAR), "recording a commit");
	if (err) {
		hubfs_journal_rollback(j);
		return err;
	}
	return hubfs_journal_commit(j);
}

int hubfs_journal_attempt_clear(struct hubfs_journal *j)
{
	return run(j, stmt(j, S_ATT_CLEAR), "forgetting commit attempts");
}

int hubfs_journal_attempt_remove(struct hubfs_journal *j, const char *marker)
{
	sqlite3_stmt *st = stmt(j, S_ATT_DEL);

	if (st)
		sqlite3_bind_text(st, 3, marker, -1, SQLITE_TRANSIENT);
	return run(j, st, "forgetting a commit attempt");
}
