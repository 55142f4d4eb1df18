/*
 * The metadata index: commit trees and the last commit seen for refs.
 *
 * DESIGN
 *
 * What it owns.  The trees, entries and refs tables of index.db, used
 * only through conn[CONN_INDEX], so that storing a large tree (tens of
 * thousands of rows in one transaction) never holds the connection block
 * reads use.
 *
 * Trees are immutable: a commit id names one tree forever.  A tree is
 * stored whole in one transaction (its trees row and every entry, numbered
 * by seq in the order given) or not at all, and storing a tree that is
 * already there changes nothing.  Nothing deletes a tree while the cache
 * is open, so a load may read it in chunks of LOAD_CHUNK rows, dropping
 * conn.lock between chunks to call the callback: a callback may then use
 * the cache itself, and a slow one stalls nobody.
 *
 * Refs map (repo, name) to the last commit seen, its date and when it was
 * seen (updated, wall-clock seconds), for use when the Hub is out of
 * reach.  Setting a ref overwrites it.
 *
 * Keys.  @repo is any string naming the endpoint and repository, @commit
 * 40 lowercase hex digits (anything else is -EINVAL, so a bad id cannot
 * become a row that no valid lookup ever matches).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cache_int.h"
#include "hubfs/buf.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

/* Entries read per trip to the database while loading a tree. */
#define LOAD_CHUNK 256

/* Whether @commit is a 40-digit commit id; sets the detail if not. */
static bool commit_ok(const char *repo, const char *commit)
{
	if (repo && cache_key_ok(commit) && strlen(commit) == 40)
		return true;
	hubfs_err_set("cache index: bad repo or commit id \"%.80s\"",
		      repo && commit ? commit : "(null)");
	return false;
}

/* Copy text column @col of @st into @dst (@n bytes), cut to fit. */
static void column_copy(char *dst, size_t n, sqlite3_stmt *st, int col)
{
	const unsigned char *text = sqlite3_column_text(st, col);

	snprintf(dst, n, "%s", text ? (const char *)text : "");
}

/* The trees row of @commit: 1 (and *@time), 0, or -errno. */
static int tree_get(struct cache_conn *c, const char *repo, const char *commit,
		    int64_t *time) HUBFS_REQUIRES(c->lock)
{
	sqlite3_stmt *st;
	int ret = cache_stmt_text(&st, c, STMT_TREE_GET, repo, commit);

	if (ret)
		return ret;
	ret = cache_step(c, st);
	if (ret == 1) {
		*time = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	return ret;
}

int hubfs_cache_tree_has(struct hubfs_cache *cache, const char *repo,
			 const char *commit, int64_t *time)
{
	struct cache_conn *c = &cache->conn[CONN_INDEX];
	int64_t t = 0;
	int ret;

	if (!commit_ok(repo, commit))
		return -EINVAL;
	hubfs_mutex_lock(&c->lock);
	ret = tree_get(c, repo, commit, &t);
	cache_conn_unlock(cache, c);
	if (ret == 1 && time)
		*time = t;
	return ret;
}

/* Insert every entry; ?1 and ?2 stay bound across rows. */
static int entries_put(struct cache_conn *c, const char *repo,
		       const char *commit,
		       const struct hubfs_hub_entry *entries, size_t n)
	HUBFS_REQUIRES(c->lock)
{
	sqlite3_stmt *st;
	int err = cache_stmt_text(&st, c, STMT_ENTRY_PUT, repo, commit);

	if (err)
		return err;
	for (size_t i = 0; i < n && !err; i++) {
		const struct hubfs_hub_entry *e = &entries[i];

		sqlite3_bind_int64(st, 3, (sqlite3_int64)i);
		sqlite3_bind_int(st, 4, e->type);
		sqlite3_bind_text(st, 5, e->path, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, e->oid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 7, (sqlite3_int64)e->size);
		sqlite3_bind_int(st, 8, e->lfs);
		sqlite3_bind_text(st, 9, e->lfs ? e->sha256 : "", -1,
				  SQLITE_STATIC);
		err = cache_exec(c, st);
	}
	return err;
}

int hubfs_cache_tree_store(struct hubfs_cache *cache, const char *repo,
			   const char *commit, int64_t time,
			   const struct hubfs_hub_entry *entries, size_t n)
{
	struct cache_conn *c = &cache->conn[CONN_INDEX];
	sqlite3_stmt *st;
	int64_t stored;
	int err;

	if (!commit_ok(repo, commit))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!entries[i].path || (entries[i].type != HUBFS_ENTRY_FILE &&
					 entries[i].type != HUBFS_ENTRY_DIR)) {
			hubfs_err_set("cache index: tree %s: entry %zu is "
				      "malformed",
				      commit, i);
			return -EINVAL;
		}
	}
	hubfs_mutex_lock(&c->lock);
	err = cache_begin(c);
	if (!err)
		err = tree_get(c, repo, commit, &stored);
	if (err == 0) {
		/* Not there yet (1 would mean stored: nothing to do). */
		err = cache_stmt_text(&st, c, STMT_TREE_PUT, repo, commit);
		if (!err) {
			sqlite3_bind_int64(st, 3, time);
			err = cache_exec(c, st);
		}
		if (!err)
			err = entries_put(c, repo, commit, entries, n);
	}
	err = cache_end(c, err < 0 ? err : 0);
	cache_conn_unlock(cache, c);
	return err;
}

/* One chunk of a tree being loaded; paths live in one buffer. */
struct load_chunk {
	struct hubfs_hub_entry e[LOAD_CHUNK];
	size_t path_off[LOAD_CHUNK];
	struct hubfs_buf paths;
	size_t n;
	int64_t next_seq;
};

/* Read the next LOAD_CHUNK entries (fewer at the end) into @ch. */
static int chunk_fill(struct cache_conn *c, const char *repo,
		      const char *commit, struct load_chunk *ch)
	HUBFS_REQUIRES(c->lock)
{
	sqlite3_stmt *st;
	int ret = cache_stmt_text(&st, c, STMT_ENTRIES_GET, repo, commit);

	if (ret)
		return ret;
	sqlite3_bind_int64(st, 3, ch->next_seq);
	sqlite3_bind_int(st, 4, LOAD_CHUNK);
	hubfs_buf_reset(&ch->paths);
	ch->n = 0;
	while ((ret = cache_step(c, st)) == 1) {
		struct hubfs_hub_entry *e = &ch->e[ch->n];
		const void *path = sqlite3_column_text(st, 2);

		memset(e, 0, sizeof(*e));
		ch->path_off[ch->n] = ch->paths.len;
		/* The path with its NUL. */
		ret = hubfs_buf_append(&ch->paths, path ? path : "",
				       (size_t)sqlite3_column_bytes(st, 2) + 1);
		if (ret) {
			sqlite3_reset(st);
			return ret;
		}
		e->type = sqlite3_column_int(st, 1) == HUBFS_ENTRY_DIR ?
				  HUBFS_ENTRY_DIR :
				  HUBFS_ENTRY_FILE;
		column_copy(e->oid, sizeof(e->oid), st, 3);
		e->size = (uint64_t)sqlite3_column_int64(st, 4);
		e->lfs = sqlite3_column_int(st, 5) != 0;
		column_copy(e->sha256, sizeof(e->sha256), st, 6);
		ch->next_seq = sqlite3_column_int64(st, 0) + 1;
		ch->n++;
	}
	/* The buffer may have moved while growing: point at it now. */
	for (size_t i = 0; i < ch->n; i++)
		ch->e[i].path = ch->paths.data + ch->path_off[i];
	return ret;
}

int hubfs_cache_tree_load(struct hubfs_cache *cache, const char *repo,
			  const char *commit, hubfs_hub_entry_cb cb, void *arg)
{
	struct cache_conn *c = &cache->conn[CONN_INDEX];
	struct load_chunk *ch;
	int64_t time;
	int ret;

	if (!commit_ok(repo, commit))
		return -EINVAL;
	hubfs_mutex_lock(&c->lock);
	ret = tree_get(c, repo, commit, &time);
	cache_conn_unlock(cache, c);
	if (ret == 0) {
		hubfs_err_set("cache index: no tree stored for %s", commit);
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	ch = hubfs_calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->paths = (struct hubfs_buf)HUBFS_BUF_INIT((size_t)LOAD_CHUNK *
						     (HUBFS_PATH_MAX + 1));
	ret = 0;
	do {
		hubfs_mutex_lock(&c->lock);
		ret = chunk_fill(c, repo, commit, ch);
		cache_conn_unlock(cache, c);
		for (size_t i = 0; i < ch->n && !ret; i++)
			ret = cb(arg, &ch->e[i]);
	} while (!ret && ch->n == LOAD_CHUNK);
	hubfs_buf_free(&ch->paths);
	hubfs_free(ch);
	return ret;
}

int hubfs_cache_ref_set(struct hubfs_cache *cache, const char *repo,
			const char *name, const char *commit, int64_t time)
{
	struct cache_conn *c = &cache->conn[CONN_INDEX];
	sqlite3_stmt *st;
	int err;

	if (!name) {
		hubfs_err_set("cache index: no ref name");
		return -EINVAL;
	}
	if (!commit_ok(repo, commit))
		return -EINVAL;
	hubfs_mutex_lock(&c->lock);
	err = cache_stmt_text(&st, c, STMT_REF_PUT, repo, name);
	if (!err) {
		sqlite3_bind_text(st, 3, commit, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, time);
		sqlite3_bind_int64(st, 5, cache_now_ms() / 1000);
		err = cache_exec(c, st);
	}
	cache_conn_unlock(cache, c);
	return err;
}

int hubfs_cache_ref_get(struct hubfs_cache *cache, const char *repo,
			const char *name, char commit[41], int64_t *time)
{
	struct cache_conn *c = &cache->conn[CONN_INDEX];
	char id[41];
	int64_t t = 0;
	sqlite3_stmt *st;
	int ret;

	if (!repo || !name) {
		hubfs_err_set("cache index: no repo or ref name");
		return -EINVAL;
	}
	hubfs_mutex_lock(&c->lock);
	ret = cache_stmt_text(&st, c, STMT_REF_GET, repo, name);
	if (!ret) {
		ret = cache_step(c, st);
	}
	if (ret == 1) {
		column_copy(id, sizeof(id), st, 0);
		t = sqlite3_column_int64(st, 1);
		sqlite3_reset(st);
	}
	cache_conn_unlock(cache, c);
	if (ret == 0) {
		hubfs_err_set("cache index: no commit remembered for %s", name);
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	memcpy(commit, id, sizeof(id));
	if (time)
		*time = t;
	return 0;
}
