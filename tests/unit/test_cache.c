/*
 * Unit tests for src/cache: blocks, objects, eviction, pinning across
 * handles and processes, the metadata index, CRC-32C.
 *
 * Blocks are HUBFS_CACHE_BLOCK_SIZE (BS), so limits below are counted
 * in blocks (BS).  Rows are inspected with a separate SQLite connection,
 * as another process would see them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "hubfs/cache.h"
#include "hubfs/mem.h"
#include "../../src/cache/cache_int.h"

#define BS ((uint64_t)HUBFS_CACHE_BLOCK_SIZE)
#define REPO "https://huggingface.co models/org/name"
#define COMMIT_A "0123456789abcdef0123456789abcdef01234567"
#define COMMIT_B "89abcdef0123456789abcdef0123456789abcdef"

/* ---- helpers ------------------------------------------------------------- */

/* A 64-digit key for @n, spread over the data/AB directories. */
static void make_key(char key[65], unsigned n)
{
	snprintf(key, 65, "%08x%056x", n * 2654435761u, n);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* The content of byte @off of the object with seed @seed. */
static unsigned char pattern(unsigned seed, uint64_t off)
{
	return (unsigned char)(off * 131 + seed * 7 + (off >> 12));
}

static void fill(unsigned char *buf, size_t len, unsigned seed, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern(seed, off + i);
}

static uint64_t blen(uint64_t size, uint64_t idx)
{
	return size - idx * BS < BS ? size - idx * BS : BS;
}

/* Commit block @idx of @obj with the sums of @len bytes at @buf. */
static int commit_bytes(struct hubfs_cache_obj *obj, uint64_t idx,
			const void *buf, size_t len)
{
	struct hubfs_cache_sum sum = { .len = 0 };

	hubfs_cache_sum_add(&sum, buf, len);
	return hubfs_cache_block_commit(obj, idx, &sum);
}

/* Write and commit block @idx of @obj (size @size) with seed @seed. */
static int put_block(struct hubfs_cache_obj *obj, uint64_t size, uint64_t idx,
		     unsigned seed)
{
	uint64_t len = blen(size, idx);
	unsigned char *buf = malloc(len);
	int err;

	if (!buf)
		return -ENOMEM;
	fill(buf, len, seed, idx * BS);
	err = hubfs_cache_obj_pwrite(obj, buf, len, idx * BS);
	if (!err)
		err = commit_bytes(obj, idx, buf, len);
	free(buf);
	return err;
}

/* Write, commit and close every block of a new object @key. */
static int put_object(struct hubfs_cache *cache, const char *key, uint64_t size,
		      unsigned seed)
{
	struct hubfs_cache_obj *obj;
	int err = hubfs_cache_obj_open(&obj, cache, key, size);

	for (uint64_t i = 0; !err && i * BS < size; i++)
		err = put_block(obj, size, i, seed);
	hubfs_cache_obj_close(obj);
	return err;
}

/* Whether [off, off + len) of @obj holds the pattern: 0, or -1. */
static int check_range(struct hubfs_cache_obj *obj, uint64_t off, size_t len,
		       unsigned seed)
{
	unsigned char *buf = malloc(len ? len : 1);
	ssize_t n = hubfs_cache_obj_pread(obj, buf, len, off);
	int ret = n == (ssize_t)len ? 0 : -1;

	for (size_t i = 0; ret == 0 && i < len; i++)
		if (buf[i] != pattern(seed, off + i))
			ret = -1;
	free(buf);
	return ret;
}

/* The first column of the first row of @sql on @dir's index, or -1. */
static long long db_value(const char *dir, const char *sql)
{
	char path[512];
	sqlite3 *db;
	sqlite3_stmt *st;
	long long v = -1;

	snprintf(path, sizeof(path), "%s/index.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
out:
	sqlite3_close(db);
	return v;
}

/* Run @sql on @dir's index behind the cache's back: 0 or -1. */
static int db_exec(const char *dir, const char *sql)
{
	char path[512];
	sqlite3 *db;
	int rc;

	snprintf(path, sizeof(path), "%s/index.db", dir);
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

static long long rows_of(const char *dir, const char *key)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM blocks WHERE key = '%s'", key);
	return db_value(dir, sql);
}

static long long atime_of(const char *dir, const char *key, uint64_t idx)
{
	char sql[200];

	snprintf(sql, sizeof(sql),
		 "SELECT atime FROM blocks WHERE key = '%s' AND idx = %llu",
		 key, (unsigned long long)idx);
	return db_value(dir, sql);
}

static void data_path(char *out, size_t n, const char *dir, const char *key)
{
	snprintf(out, n, "%s/data/%.2s/%s", dir, key, key);
}

static bool file_exists(const char *dir, const char *key)
{
	char path[512];

	data_path(path, sizeof(path), dir, key);
	return access(path, F_OK) == 0;
}

/* Overwrite @len bytes at @off of @key's data file behind the cache. */
static int scribble(const char *dir, const char *key, uint64_t off, size_t len)
{
	char path[512];
	unsigned char junk[64];
	int fd, ok;

	memset(junk, 0x5a, sizeof(junk));
	data_path(path, sizeof(path), dir, key);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ok = pwrite(fd, junk, len, (off_t)off) == (ssize_t)len;
	close(fd);
	return ok ? 0 : -1;
}

static uint64_t used_bytes(struct hubfs_cache *cache)
{
	struct hubfs_cache_stats st;

	hubfs_cache_get_stats(cache, &st);
	return st.used_bytes;
}

/* ---- open, persistence, blocks ------------------------------------------- */

static void test_cache__open_close_reopen(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache = NULL;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char key[65], commit[41];
	int64_t t = 0;

	make_key(key, 1);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	CHECK_INT(put_object(cache, key, 2 * BS + 10, 1), 0);
	CHECK_INT(hubfs_cache_ref_set(cache, REPO, "main", COMMIT_A, 1700), 0);
	hubfs_cache_close(cache);

	CHECK_INT(db_value(dir, "PRAGMA user_version"), CACHE_SCHEMA_VERSION);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.used_bytes, 2 * BS + 10);
	CHECK_UINT(st.blocks, 3);
	CHECK_UINT(st.max_bytes, 8 * BS);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS + 10), 0);
	for (uint64_t i = 0; i < 3; i++)
		CHECK_INT(hubfs_cache_block_present(obj, i), 1);
	CHECK_INT(check_range(obj, 0, 2 * BS + 10, 1), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_ref_get(cache, REPO, "main", commit, &t), 0);
	CHECK_STR(commit, COMMIT_A);
	CHECK_INT(t, 1700);
	hubfs_cache_close(cache);
	hubfs_cache_close(NULL);
}

/* A cache of schema 1 (1 MiB blocks): its blocks and their files go,
 * its refs stay; a version from the future is refused. */
static void test_cache__old_block_layout_is_dropped(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache = NULL;
	struct hubfs_cache_stats st;
	char key[65], commit[41];
	int64_t t = 0;

	make_key(key, 2);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	CHECK_INT(put_object(cache, key, 2 * BS, 2), 0);
	CHECK_INT(hubfs_cache_ref_set(cache, REPO, "main", COMMIT_A, 1700), 0);
	hubfs_cache_close(cache);
	CHECK(file_exists(dir, key));

	CHECK_INT(db_exec(dir, "ALTER TABLE blocks DROP COLUMN pages;"
			       "PRAGMA user_version = 1"),
		  0);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.used_bytes, 0);
	CHECK_UINT(st.blocks, 0);
	CHECK_INT(rows_of(dir, key), 0);
	CHECK_INT(db_value(dir, "SELECT count(*) FROM objects"), 0);
	CHECK(!file_exists(dir, key));
	CHECK_INT(hubfs_cache_ref_get(cache, REPO, "main", commit, &t), 0);
	CHECK_STR(commit, COMMIT_A);
	hubfs_cache_close(cache);
	CHECK_INT(db_value(dir, "PRAGMA user_version"), CACHE_SCHEMA_VERSION);

	CHECK_INT(db_exec(dir, "PRAGMA user_version = 99"), 0);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), -ENOTSUP);
}

static void test_cache__open_bad_dir(void)
{
	struct hubfs_cache *cache = (struct hubfs_cache *)1;

	check_file("f", "x", 1, 0600);
	CHECK_INT(hubfs_cache_open(&cache, check_path("f"), BS), -ENOTDIR);
	CHECK(cache == (struct hubfs_cache *)1);
	CHECK_INT(hubfs_cache_open(&cache, check_path("no/such"), BS), -ENOENT);
}

static void test_cache__write_read_blocks(void)
{
	const char *dir = check_path("c");
	uint64_t size = 3 * BS + BS / 2;
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char key[65], byte;

	make_key(key, 2);
	CHECK_INT(hubfs_cache_open(&cache, dir, 16 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, size), 0);
	CHECK_UINT(hubfs_cache_obj_nblocks(obj), 4);
	CHECK(hubfs_cache_obj_fd(obj) >= 0);
	for (uint64_t i = 0; i < 4; i++)
		CHECK_INT(hubfs_cache_block_present(obj, i), 0);
	for (uint64_t i = 0; i < 4; i++)
		CHECK_INT(put_block(obj, size, i, 2), 0);
	for (uint64_t i = 0; i < 4; i++)
		CHECK_INT(hubfs_cache_block_present(obj, i), 1);
	CHECK_INT(check_range(obj, 0, size, 2), 0);
	CHECK_INT(check_range(obj, BS - 7, 100, 2), 0); /* across blocks */
	/* Reads stop at the end of the object. */
	CHECK_INT(hubfs_cache_obj_pread(obj, &byte, 1, size), 0);
	{
		unsigned char tail[64];

		CHECK_INT(hubfs_cache_obj_pread(obj, tail, sizeof(tail),
						size - 10),
			  10);
		CHECK_INT(tail[9], pattern(2, size - 1));
	}
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.misses, 4);
	CHECK_UINT(st.hits, 4);
	CHECK_UINT(st.used_bytes, size);
	CHECK_UINT(st.blocks, 4);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

static void test_cache__last_block_short(void)
{
	const char *dir = check_path("c");
	uint64_t size = BS + 100;
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	char key[65];

	make_key(key, 3);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, size), 0);
	CHECK_UINT(hubfs_cache_obj_nblocks(obj), 2);
	CHECK_INT(put_block(obj, size, 1, 3), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 1);
	CHECK_INT(check_range(obj, BS, 100, 3), 0);
	CHECK_UINT(used_bytes(cache), 100);
	CHECK_INT(db_value(dir, "SELECT len FROM blocks"), 100);
	CHECK_INT(hubfs_cache_block_present(obj, 2), -EINVAL);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

static void test_cache__size_zero(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	char key[65], byte;

	make_key(key, 4);
	CHECK_INT(hubfs_cache_open(&cache, dir, BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 0), 0);
	CHECK_UINT(hubfs_cache_obj_nblocks(obj), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), -EINVAL);
	CHECK_INT(commit_bytes(obj, 0, "", 0), -EINVAL);
	CHECK_INT(hubfs_cache_span_present(obj, 0, 1), -EINVAL);
	CHECK(!hubfs_cache_span_known(obj, 0, 1));
	CHECK_INT(hubfs_cache_obj_pread(obj, &byte, 1, 0), 0);
	CHECK_INT(hubfs_cache_obj_pwrite(obj, "", 0, 0), 0);
	CHECK_INT(hubfs_cache_obj_pwrite(obj, "x", 1, 0), -EINVAL);
	CHECK_INT(hubfs_cache_reserve(cache, 0), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 0);
	CHECK_INT(hubfs_cache_obj_set_verified(obj), 0);
	CHECK_INT(hubfs_cache_obj_drop(obj), 0);
	CHECK_INT(hubfs_cache_obj_set_verified(obj), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 0), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 1);
	hubfs_cache_obj_close(obj);
	CHECK_UINT(used_bytes(cache), 0);
	hubfs_cache_close(cache);
}

/* ---- damage -------------------------------------------------------------- */

/* Two committed blocks of @key in a new cache at @dir, object closed. */
static int two_blocks(struct hubfs_cache **cache, const char *dir,
		      const char *key)
{
	struct hubfs_cache_obj *obj;
	int err = hubfs_cache_open(cache, dir, 8 * BS);

	if (err)
		return err;
	err = put_object(*cache, key, 2 * BS, 5);
	if (!err)
		err = hubfs_cache_obj_open(&obj, *cache, key, 2 * BS);
	if (!err) {
		err = hubfs_cache_obj_set_verified(obj);
		hubfs_cache_obj_close(obj);
	}
	return err;
}

/*
 * Close and open @dir's cache again, as another process would: the memos
 * of what this one checked are gone (damage shows only to an opener that
 * did not check the block itself, see test_cache__memo_*).
 */
static int reopen(struct hubfs_cache **cache, const char *dir)
{
	hubfs_cache_close(*cache);
	return hubfs_cache_open(cache, dir, 8 * BS);
}

/* After the damage: block 0 fine, block 1 gone, counted, unverified. */
static void expect_block1_damaged(struct hubfs_cache *cache, const char *dir,
				  const char *key)
{
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;

	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 1);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 0);
	CHECK_INT(rows_of(dir, key), 1);
	CHECK_INT(hubfs_cache_obj_verified(obj), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.corrupt, 1);
	CHECK_UINT(st.used_bytes, BS);
	/* Fetched again, it is served again. */
	CHECK_INT(put_block(obj, 2 * BS, 1, 5), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 1);
	CHECK_INT(check_range(obj, 0, 2 * BS, 5), 0);
	hubfs_cache_obj_close(obj);
}

static void test_cache__corrupt_overwritten(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	char key[65];

	make_key(key, 5);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(scribble(dir, key, BS + 1000, 3), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	hubfs_cache_obj_close(obj);
	expect_block1_damaged(cache, dir, key);
	hubfs_cache_close(cache);
}

static void test_cache__corrupt_truncated(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	char key[65], path[512];

	make_key(key, 6);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	data_path(path, sizeof(path), dir, key);
	CHECK_INT(truncate(path, (off_t)(BS + BS / 2)), 0);
	expect_block1_damaged(cache, dir, key);
	hubfs_cache_close(cache);
}

/* stored: a row is enough, no bytes are read, and the check still decides. */
static void test_cache__stored_reads_no_data(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char key[65], other[65];

	make_key(key, 11);
	make_key(other, 12);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(scribble(dir, key, BS + 10, 3), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, other, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_stored(obj, 0), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK(!hubfs_cache_block_known(obj, 1));
	CHECK_INT(hubfs_cache_block_stored(obj, 1), 1);
	CHECK_INT(hubfs_cache_block_stored(obj, 2), -EINVAL);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.corrupt, 0);
	/* The damage shows at the check, and the row goes with it. */
	CHECK_INT(hubfs_cache_block_present(obj, 1), 0);
	CHECK_INT(hubfs_cache_block_stored(obj, 1), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	CHECK(hubfs_cache_block_known(obj, 0));
	CHECK_INT(hubfs_cache_block_stored(obj, 0), 1);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

#define PG HUBFS_CACHE_PAGE_SIZE

/* A read checks only the pages it needs: damage elsewhere in the block
 * does not fail it, damage in them does, pages checked one span at a
 * time add up to the block, and pages checked before the damage was
 * found stay in use (their bytes are not released under a reader). */
static void test_cache__span_checks_its_pages(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char key[65];

	make_key(key, 15);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(scribble(dir, key, BS + 5 * PG + 10, 3), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK(!hubfs_cache_span_known(obj, BS, 1));
	CHECK_INT(hubfs_cache_span_present(obj, BS + 100, 4096), 1);
	CHECK(hubfs_cache_span_known(obj, BS, PG));
	CHECK(!hubfs_cache_span_known(obj, BS, PG + 1));
	CHECK(!hubfs_cache_block_known(obj, 1));
	CHECK_INT(hubfs_cache_span_present(obj, BS + 6 * PG, BS - 6 * PG), 1);
	CHECK_INT(hubfs_cache_span_present(obj, BS + PG, 4 * PG), 1);
	CHECK(!hubfs_cache_block_known(obj, 1));
	CHECK_UINT(hubfs_cache_obj_known(obj), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.corrupt, 0);
	CHECK_INT(check_range(obj, BS, 5 * PG, 5), 0);
	/* Block 0, page by page, becomes known whole. */
	for (unsigned i = 0; i < HUBFS_CACHE_PAGES; i++)
		CHECK_INT(hubfs_cache_span_present(obj, i * PG + 7, 1), 1);
	CHECK(hubfs_cache_block_known(obj, 0));
	CHECK_UINT(hubfs_cache_obj_known(obj), 1);
	/* The damaged page. */
	CHECK_INT(hubfs_cache_span_present(obj, BS + 5 * PG + 4000, 1), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.corrupt, 1);
	CHECK_INT(rows_of(dir, key), 1);
	CHECK(hubfs_cache_span_known(obj, BS, 5 * PG));
	CHECK_INT(hubfs_cache_block_stored(obj, 1), 1);
	CHECK_INT(check_range(obj, BS, 5 * PG, 5), 0);
	/* Fetched again, the whole block is served. */
	CHECK_INT(put_block(obj, 2 * BS, 1, 5), 0);
	CHECK(hubfs_cache_block_known(obj, 1));
	CHECK_UINT(hubfs_cache_obj_known(obj), 2);
	CHECK_INT(check_range(obj, 0, 2 * BS, 5), 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

/* Rows of a schema-2 cache have no page CRCs and rows whose pages do not
 * add up to their CRC are not trusted: both are checked whole. */
static void test_cache__rows_without_pages_are_checked_whole(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	char key[65], other[65], sql[200];

	make_key(key, 16);
	make_key(other, 17);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(put_object(cache, other, BS, 17), 0);
	hubfs_cache_close(cache);
	CHECK_INT(db_exec(dir, "ALTER TABLE blocks DROP COLUMN pages;"
			       "PRAGMA user_version = 2"),
		  0);
	/* The upgrade keeps the blocks. */
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	CHECK_INT(db_value(dir, "PRAGMA user_version"), CACHE_SCHEMA_VERSION);
	CHECK_UINT(used_bytes(cache), 3 * BS);
	CHECK_INT(db_value(dir, "SELECT count(*) FROM blocks"
				" WHERE pages IS NULL"),
		  3);
	snprintf(sql, sizeof(sql),
		 "UPDATE blocks SET pages = zeroblob(%u) WHERE key = '%s'",
		 4 * HUBFS_CACHE_PAGES, other);
	CHECK_INT(db_exec(dir, sql), 0);
	CHECK_INT(scribble(dir, key, BS + 5 * PG, 3), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_span_present(obj, 100, 10), 1);
	CHECK(hubfs_cache_block_known(obj, 0));
	/* The damage is in another page than the read's. */
	CHECK_INT(hubfs_cache_span_present(obj, BS, 10), 0);
	CHECK_INT(rows_of(dir, key), 1);
	CHECK_INT(put_block(obj, 2 * BS, 1, 5), 0);
	snprintf(sql, sizeof(sql),
		 "SELECT length(pages) FROM blocks WHERE key = '%s'"
		 " AND idx = 1", key);
	CHECK_INT(db_value(dir, sql), 4 * HUBFS_CACHE_PAGES);
	hubfs_cache_obj_close(obj);
	/* Zero page CRCs: a page check would fail the intact block. */
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, other, BS), 0);
	CHECK_INT(hubfs_cache_span_present(obj, 0, 10), 1);
	CHECK(hubfs_cache_block_known(obj, 0));
	CHECK_INT(check_range(obj, 0, BS, 17), 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

/* Sums: pieces of any size make the same page CRCs, the row keeps the
 * block's own CRC and its pages', and a wrong length is refused. */
static void test_cache__sums_and_rows(void)
{
	const char *dir = check_path("c");
	const uint64_t size = BS + 20000;	/* block 1: 2 pages */
	size_t pieces[] = { 1, 4095, PG + 1, 3, 2 * PG - 7 };
	struct hubfs_cache_sum whole = { .len = 0 }, cut = { .len = 0 };
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	unsigned char *buf = malloc(BS);
	char key[65], sql[200];
	size_t off = 0;

	CHECK(buf != NULL);
	fill(buf, BS, 18, 0);
	hubfs_cache_sum_add(&whole, buf, BS);
	CHECK_UINT(whole.len, BS);
	for (size_t i = 0; off < BS; i++) {
		size_t n = i < 5 ? pieces[i] : BS - off;

		hubfs_cache_sum_add(&cut, buf + off, n);
		off += n;
	}
	CHECK(memcmp(&whole, &cut, sizeof(whole)) == 0);
	for (unsigned i = 0; i < HUBFS_CACHE_PAGES; i++)
		CHECK_UINT(whole.page[i], hubfs_crc32c(0, buf + i * PG, PG));
	hubfs_cache_sum_add(&cut, buf, 1);
	CHECK_UINT(cut.len, BS + 1);
	CHECK(memcmp(whole.page, cut.page, sizeof(whole.page)) == 0);

	make_key(key, 18);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, size), 0);
	CHECK_INT(hubfs_cache_obj_pwrite(obj, buf, BS, 0), 0);
	CHECK_INT(hubfs_cache_block_commit(obj, 0, &cut), -EINVAL);
	CHECK_INT(hubfs_cache_block_commit(obj, 0, &whole), 0);
	fill(buf, 20000, 18, BS);
	CHECK_INT(hubfs_cache_obj_pwrite(obj, buf, 20000, BS), 0);
	CHECK_INT(commit_bytes(obj, 1, buf, 19999), -EINVAL);
	CHECK_INT(commit_bytes(obj, 1, buf, 20000), 0);
	snprintf(sql, sizeof(sql),
		 "SELECT crc FROM blocks WHERE key = '%s' AND idx = 1", key);
	CHECK_UINT(db_value(dir, sql), hubfs_crc32c(0, buf, 20000));
	snprintf(sql, sizeof(sql),
		 "SELECT length(pages) FROM blocks WHERE key = '%s'"
		 " AND idx = 1", key);
	CHECK_INT(db_value(dir, sql), 8);
	hubfs_cache_obj_close(obj);
	/* Another process checks the short last page against its CRC. */
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, size), 0);
	CHECK_INT(hubfs_cache_span_present(obj, BS + 19999, 1), 1);
	CHECK(!hubfs_cache_block_known(obj, 1));
	CHECK_INT(hubfs_cache_span_present(obj, BS, 1), 1);
	CHECK(hubfs_cache_block_known(obj, 1));
	CHECK_INT(check_range(obj, 0, size, 18), 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
	free(buf);
}

/* Several blocks in one transaction: all recorded, or none when one of
 * the sums is wrong; each one then needs no check in this process and
 * passes the check of another. */
static void test_cache__blocks_commit_all_or_none(void)
{
	const char *dir = check_path("c");
	uint64_t size = 3 * BS + 500, idx[3] = { 0, 2, 3 };
	struct hubfs_cache_sum sums[3];
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	unsigned char *buf = malloc(BS);
	char key[65];

	CHECK(buf != NULL);
	make_key(key, 31);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, size), 0);
	CHECK_INT(hubfs_cache_blocks_commit(obj, idx, sums, 0), 0);
	for (size_t k = 0; k < 3; k++) {
		size_t len = (size_t)blen(size, idx[k]);

		fill(buf, len, 31, idx[k] * BS);
		CHECK_INT(hubfs_cache_obj_pwrite(obj, buf, len, idx[k] * BS), 0);
		memset(&sums[k], 0, sizeof(sums[k]));
		/* The last sum is one byte short at first. */
		hubfs_cache_sum_add(&sums[k], buf, k == 2 ? len - 1 : len);
	}
	CHECK_INT(hubfs_cache_blocks_commit(obj, idx, sums, 3), -EINVAL);
	CHECK_INT(rows_of(dir, key), 0);
	CHECK(!hubfs_cache_block_known(obj, 0));
	hubfs_cache_sum_add(&sums[2], buf + blen(size, 3) - 1, 1);
	CHECK_INT(hubfs_cache_blocks_commit(obj, idx, sums, 3), 0);
	CHECK_INT(rows_of(dir, key), 3);
	CHECK_UINT(used_bytes(cache), 2 * BS + 500);
	CHECK(hubfs_cache_block_known(obj, 0));
	CHECK(!hubfs_cache_block_known(obj, 1));
	CHECK(hubfs_cache_block_known(obj, 3));
	hubfs_cache_obj_close(obj);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, size), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 0);
	for (size_t k = 0; k < 3; k++) {
		CHECK_INT(hubfs_cache_block_present(obj, idx[k]), 1);
		CHECK_INT(check_range(obj, idx[k] * BS, blen(size, idx[k]), 31),
			  0);
	}
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
	free(buf);
}

/* A file holding @size bytes of the pattern @seed, open for reading. */
static int pattern_file(const char *path, uint64_t size, unsigned seed)
{
	unsigned char buf[4096];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	for (uint64_t off = 0; fd >= 0 && off < size; off += sizeof(buf)) {
		size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);

		fill(buf, n, seed, off);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* adopt: the file itself becomes the data file, recorded block by block,
 * and passes the checks of a process that did not adopt it. */
static void test_cache__adopt_links_the_file(void)
{
	const char *dir = check_path("c");
	uint64_t size = 2 * BS + 1000;
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct stat a, b;
	char key[65], other[65], path[512];
	int fd, fd2, err;

	make_key(key, 21);
	make_key(other, 22);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	fd = pattern_file(check_path("c/stage-a"), size, 9);
	CHECK(fd >= 0);
	CHECK_INT(hubfs_cache_adopt(cache, key, size + 1, fd, true), -EINVAL);
	/* A file that cannot be linked (it has no name left): -EXDEV, and
	 * nothing done, so the caller may copy it. */
	fd2 = pattern_file(check_path("c/stage-x"), size, 9);
	CHECK(fd2 >= 0);
	CHECK_INT(unlink(check_path("c/stage-x")), 0);
	CHECK_INT(hubfs_cache_adopt(cache, key, size, fd2, true), -EXDEV);
	CHECK_INT(rows_of(dir, key), 0);
	close(fd2);
	CHECK_INT(hubfs_cache_adopt(cache, key, size, fd, true), 0);
	data_path(path, sizeof(path), dir, key);
	CHECK_INT(fstat(fd, &a), 0);
	CHECK_INT(stat(path, &b), 0);
	CHECK_UINT(a.st_ino, b.st_ino);
	CHECK_INT(rows_of(dir, key), 3);
	CHECK_UINT(used_bytes(cache), size);
	/* The key has its data file: the next one is copied instead. */
	fd2 = pattern_file(check_path("c/stage-b"), size, 9);
	CHECK_INT(hubfs_cache_adopt(cache, key, size, fd2, true), -EEXIST);
	close(fd2);
	CHECK_INT(unlink(check_path("c/stage-a")), 0);
	close(fd);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, size), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 1);
	for (uint64_t i = 0; i < 3; i++)
		CHECK_INT(hubfs_cache_block_present(obj, i), 1);
	CHECK_INT(check_range(obj, 0, size, 9), 0);
	hubfs_cache_obj_close(obj);
	/* More than the cache may hold: the blocks that fit are kept (the
	 * older object evicted for them), the rest punched out; the error
	 * is not one that lets the caller copy from the punched file. */
	fd = pattern_file(check_path("c/stage-c"), 9 * BS, 4);
	CHECK(fd >= 0);
	err = hubfs_cache_adopt(cache, other, 9 * BS, fd, false);
	CHECK(err < 0 && err != -EEXIST && err != -EXDEV);
	CHECK_INT(rows_of(dir, other), 8);
	CHECK_UINT(used_bytes(cache), 8 * BS);
	CHECK_INT(fstat(fd, &a), 0);
	CHECK((uint64_t)a.st_blocks * 512 <= 8 * BS);
	close(fd);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, other, 9 * BS), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 7), 1);
	CHECK_INT(hubfs_cache_block_present(obj, 8), 0);
	CHECK_INT(check_range(obj, 7 * BS, BS, 4), 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

/* An adopt records its blocks in runs: a file of several runs, the
 * last one short, ends with every block present and checked by another
 * process. */
static void test_cache__adopt_records_every_run(void)
{
	const char *dir = check_path("c");
	uint64_t nblocks = 150, size = nblocks * BS - 7;
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	char key[65];
	int fd;

	make_key(key, 32);
	CHECK_INT(hubfs_cache_open(&cache, dir, 2 * nblocks * BS), 0);
	fd = pattern_file(check_path("c/stage-r"), size, 32);
	CHECK(fd >= 0);
	CHECK_INT(hubfs_cache_adopt(cache, key, size, fd, true), 0);
	close(fd);
	CHECK_INT(unlink(check_path("c/stage-r")), 0);
	hubfs_cache_close(cache);
	CHECK_INT(hubfs_cache_open(&cache, dir, 2 * nblocks * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, size), 0);
	for (uint64_t i = 0; i < nblocks; i++)
		CHECK_INT(hubfs_cache_block_present(obj, i), 1);
	CHECK_INT(check_range(obj, 0, size, 32), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(rows_of(dir, key), (long long)nblocks);
	CHECK_UINT(used_bytes(cache), size);
	hubfs_cache_close(cache);
}

static void test_cache__corrupt_deleted(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char key[65], path[512];

	make_key(key, 7);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	data_path(path, sizeof(path), dir, key);
	CHECK_INT(unlink(path), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 0);
	CHECK_INT(rows_of(dir, key), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.corrupt, 2);
	CHECK_UINT(st.used_bytes, 0);
	hubfs_cache_obj_close(obj);
	/* Nothing left: the close swept the new empty file. */
	CHECK(!file_exists(dir, key));
	hubfs_cache_close(cache);
}

/*
 * Open @dir's cache and in it a new 100-byte object of seed @seed, its
 * block written and committed with the sums of its bytes, or (!@right)
 * of other bytes.
 */
static void small_object(struct hubfs_cache **cache,
			 struct hubfs_cache_obj **obj, const char *dir,
			 char key[65], unsigned seed, bool right)
{
	unsigned char buf[100];

	make_key(key, seed);
	CHECK_INT(hubfs_cache_open(cache, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(obj, *cache, key, sizeof(buf)), 0);
	fill(buf, sizeof(buf), seed, 0);
	CHECK_INT(hubfs_cache_obj_pwrite(*obj, buf, sizeof(buf), 0), 0);
	if (!right)
		buf[99] ^= 1;
	CHECK_INT(commit_bytes(*obj, 0, buf, sizeof(buf)), 0);
}

static void test_cache__wrong_crc_or_length(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	unsigned char buf[100];
	char key[65];

	small_object(&cache, &obj, dir, key, 8, false);
	fill(buf, sizeof(buf), 8, 0);
	/* The committer trusts its own CRC; any other opener checks. */
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 100), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 0);
	CHECK_INT(rows_of(dir, key), 0);
	CHECK_INT(commit_bytes(obj, 0, buf, 99), -EINVAL);
	CHECK_INT(commit_bytes(obj, 0, buf, 100), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 100), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

/* A block committed here is present at once, without a read back. */
static void test_cache__commit_needs_no_check(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats stats;
	char key[65];

	small_object(&cache, &obj, dir, key, 10, true);
	/* Damage after the commit is this process's blind spot by design
	 * (as after a check); it shows to another process. */
	CHECK_INT(scribble(dir, key, 0, 8), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	hubfs_cache_get_stats(cache, &stats);
	CHECK_INT(stats.corrupt, 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 100), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 0);
	hubfs_cache_get_stats(cache, &stats);
	CHECK_INT(stats.corrupt, 1);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

/* A block is checked once per process: later damage shows to another. */
static void test_cache__checked_once_per_process(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *a, *b;
	char key[65];

	make_key(key, 9);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(hubfs_cache_obj_open(&a, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(a, 1), 1);
	CHECK_INT(scribble(dir, key, BS, 8), 0);
	/* A second handle shares the verified map and the descriptor. */
	CHECK_INT(hubfs_cache_obj_open(&b, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_obj_fd(a), hubfs_cache_obj_fd(b));
	CHECK_INT(hubfs_cache_block_present(b, 1), 1);
	CHECK_INT(hubfs_cache_obj_open(&b, cache, key, BS), -EINVAL);
	hubfs_cache_obj_close(b);
	CHECK_INT(hubfs_cache_block_present(a, 1), 1);
	hubfs_cache_obj_close(a);
	/* Reopened here: the memo answers, the row being unchanged. */
	CHECK_INT(hubfs_cache_obj_open(&a, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(a, 1), 1);
	hubfs_cache_obj_close(a);
	/* Another process checks, and finds the damage. */
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(hubfs_cache_obj_open(&a, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(a, 1), 0);
	CHECK_INT(hubfs_cache_block_present(a, 0), 1);
	hubfs_cache_obj_close(a);
	hubfs_cache_close(cache);
}

/*
 * The pages a reader checked are remembered too (a 4 KiB reader never
 * checks a whole block): the next open here trusts them, at once while
 * the index is unchanged, else once their row is found unchanged; pages
 * it did not check are checked, and another process checks them all.
 */
static void test_cache__memo_keeps_pages(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache, *other;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char key[65], key2[65];

	make_key(key, 16);
	make_key(key2, 17);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_span_present(obj, BS + 100, 4096), 1);
	CHECK(!hubfs_cache_block_known(obj, 1));
	hubfs_cache_obj_close(obj);
	/* Damage in the page checked, and in one that was not. */
	CHECK_INT(scribble(dir, key, BS + 200, 3), 0);
	CHECK_INT(scribble(dir, key, BS + 3 * PG + 10, 3), 0);
	/* The index unchanged since: the pages are known at open. */
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK(hubfs_cache_span_known(obj, BS, PG));
	CHECK(!hubfs_cache_span_known(obj, BS + PG, 1));
	CHECK_INT(hubfs_cache_span_present(obj, BS + 100, 4096), 1);
	hubfs_cache_obj_close(obj);
	/* Another process commits: the row is looked up, found unchanged,
	 * and the memo's pages answer without a check. */
	CHECK_INT(hubfs_cache_open(&other, dir, 8 * BS), 0);
	CHECK_INT(put_object(other, key2, BS, 6), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK(!hubfs_cache_span_known(obj, BS, PG));
	CHECK_INT(hubfs_cache_span_present(obj, BS + 100, 4096), 1);
	CHECK(hubfs_cache_span_known(obj, BS, PG));
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.corrupt, 0);
	/* A page the memo does not hold is checked. */
	CHECK_INT(hubfs_cache_span_present(obj, BS + 3 * PG, 1), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.corrupt, 1);
	/* Fetched again and damaged in the same page: another process
	 * checks the page itself. */
	CHECK_INT(put_block(obj, 2 * BS, 1, 5), 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(other);
	CHECK_INT(scribble(dir, key, BS + 200, 3), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_span_present(obj, BS + 100, 4096), 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

/*
 * A memo's pages, like its blocks, hold only while their rows are there:
 * a block evicted by another process after the pages were checked, then
 * an open and close here without a read, and the next open must look
 * the rows up rather than take the pages at once.
 */
static void test_cache__memo_pages_need_the_row(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache, *other;
	struct hubfs_cache_obj *obj;
	uint64_t freed = 0;
	char key[65];

	make_key(key, 18);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_span_present(obj, 100, 4096), 1);
	CHECK_INT(hubfs_cache_span_present(obj, BS + 100, 4096), 1);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_open(&other, dir, 8 * BS), 0);
	CHECK_INT(hubfs_cache_trim(other, BS, &freed), 0);
	CHECK_UINT(freed, BS);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK(!hubfs_cache_span_known(obj, 0, PG));
	CHECK(!hubfs_cache_span_known(obj, BS, PG));
	CHECK_INT(hubfs_cache_span_present(obj, 100, 4096) +
			  hubfs_cache_span_present(obj, BS + 100, 4096),
		  1);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(other);
	hubfs_cache_close(cache);
}

/* Memos are capped in bytes as well as in number: a memo of a very
 * large object pushes the oldest out, not the newer ones.  (Damage made
 * after a check shows only where no memo answers for the block.) */
static void test_cache__memos_capped_in_bytes(void)
{
	const char *dir = check_path("c");
	const uint64_t huge = (uint64_t)1 << 40; /* a memo of 16.5 MiB */
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	char a[65], b[65], c[65];

	make_key(a, 19);
	make_key(b, 20);
	make_key(c, 21);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	CHECK_INT(put_object(cache, c, BS, 7), 0);
	CHECK_INT(scribble(dir, c, 10, 3), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, a, huge), 0);
	CHECK_INT(put_block(obj, huge, 0, 5), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(scribble(dir, a, 10, 3), 0);
	/* c's memo answers, and becomes the newest but one. */
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, c, BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, b, huge), 0);
	CHECK_INT(put_block(obj, huge, 0, 5), 0);
	hubfs_cache_obj_close(obj);
	/* a's went, to stay under the cap (its block is checked, and the
	 * damage found); c's stayed. */
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, a, huge), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, c, BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

/* @evictor evicts one of the two blocks of @key; @cache must see it. */
static void one_block_evicted(struct hubfs_cache *cache,
			      struct hubfs_cache *evictor, const char *key)
{
	struct hubfs_cache_obj *obj;
	uint64_t freed = 0;

	CHECK_INT(hubfs_cache_trim(evictor, BS, &freed), 0);
	CHECK_UINT(freed, BS);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0) +
			  hubfs_cache_block_present(obj, 1),
		  1);
	hubfs_cache_obj_close(obj);
}

/*
 * A memo is trusted only while the row it remembers is there, unchanged:
 * a block evicted meanwhile is absent, and one written again by another
 * process (another row) is checked again.
 */
static void test_cache__memo_needs_the_same_row(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache, *other;
	struct hubfs_cache_obj *obj, *o2;
	uint64_t freed = 0;
	char key[65];

	make_key(key, 12);
	CHECK_INT(two_blocks(&cache, dir, key), 0);
	/* Evicted by this process after it closed the object. */
	one_block_evicted(cache, cache, key);
	CHECK_INT(reopen(&cache, dir), 0);
	CHECK_INT(put_object(cache, key, 2 * BS, 5), 0);
	/* Evicted by another process after this one closed the object. */
	CHECK_INT(hubfs_cache_open(&other, dir, 8 * BS), 0);
	one_block_evicted(cache, other, key);
	/* Evicted by another process, then opened and closed here without a
	 * read: the memo left then must not vouch for the evicted block. */
	CHECK_INT(put_object(cache, key, 2 * BS, 5), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_trim(other, BS, &freed), 0);
	CHECK_UINT(freed, BS);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0) +
			  hubfs_cache_block_present(obj, 1),
		  1);
	hubfs_cache_obj_close(obj);
	/* Rewritten by another process with other bytes, then damaged: the
	 * row's CRC is not the remembered one, so the bytes are checked. */
	CHECK_INT(hubfs_cache_trim(other, 0, &freed), 0);
	CHECK_INT(hubfs_cache_obj_open(&o2, other, key, 2 * BS), 0);
	CHECK_INT(put_block(o2, 2 * BS, 0, 99), 0);
	CHECK_INT(put_block(o2, 2 * BS, 1, 99), 0);
	hubfs_cache_obj_close(o2);
	CHECK_INT(scribble(dir, key, 10, 8), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 1);
	CHECK_INT(check_range(obj, BS, BS, 99), 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(other);
	hubfs_cache_close(cache);
}

/* ---- eviction ------------------------------------------------------------ */

static void test_cache__lru_order(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char a[65], b[65], c[65];

	make_key(a, 10);
	make_key(b, 11);
	make_key(c, 12);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(put_object(cache, a, 2 * BS, 10), 0);
	sleep_ms(3);
	CHECK_INT(put_object(cache, b, 2 * BS, 11), 0);
	sleep_ms(3);
	/* Use a: b is now the least recently used. */
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, a, 2 * BS), 0);
	hubfs_cache_block_touch(obj, 0);
	hubfs_cache_block_touch(obj, 1);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_reserve(cache, BS), 0);
	CHECK_INT(rows_of(dir, a), 2);
	CHECK_INT(rows_of(dir, b), 1); /* only as much as needed */
	CHECK_INT(atime_of(dir, b, 0), -1); /* b's oldest block went */
	CHECK(file_exists(dir, b));
	CHECK_INT(hubfs_cache_reserve(cache, 2 * BS), 0);
	CHECK_INT(rows_of(dir, b), 0);
	CHECK(!file_exists(dir, b)); /* no block left: file deleted */
	CHECK_INT(rows_of(dir, a), 2);
	CHECK_INT(put_object(cache, c, 2 * BS, 12), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.evicted, 2);
	CHECK_UINT(st.used_bytes, 4 * BS);
	CHECK_INT(db_value(dir, "SELECT count(*) FROM objects"), 2);
	hubfs_cache_close(cache);
}

static void test_cache__evict_punches_holes(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	char key[65], path[512];
	struct stat before, after;

	make_key(key, 13);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(put_object(cache, key, 4 * BS, 13), 0);
	sleep_ms(3);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_set_verified(obj), 0);
	hubfs_cache_block_touch(obj, 2);
	hubfs_cache_block_touch(obj, 3);
	hubfs_cache_obj_close(obj);
	data_path(path, sizeof(path), dir, key);
	CHECK_INT(stat(path, &before), 0);
	CHECK_INT(hubfs_cache_reserve(cache, 2 * BS), 0);
	CHECK_INT(stat(path, &after), 0);
	CHECK_INT(after.st_size, before.st_size);
	CHECK((uint64_t)(before.st_blocks - after.st_blocks) * 512 >= 2 * BS);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 4 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 2), 1);
	CHECK_INT(hubfs_cache_block_present(obj, 3), 1);
	CHECK_INT(check_range(obj, 2 * BS, 2 * BS, 13), 0);
	/* Evicted blocks cost the object its verified flag. */
	CHECK_INT(hubfs_cache_obj_verified(obj), 0);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

/* Rows whose key is no content key (a damaged index) are never turned
 * into paths: eviction skips them. */
static void test_cache__damaged_index_rows(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct stat st;
	char key[65], sql[256];

	make_key(key, 14);
	check_file("victim", "keep", 4, 0600);
	CHECK_INT(hubfs_cache_open(&cache, dir, 3 * BS), 0);
	CHECK_INT(put_object(cache, key, BS, 14), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO blocks VALUES ('../../victim', 0, %u, 0, 0, NULL),"
		 " ('0123456789abcdef0123456789abcdef"
		 "0123456789abcdef0123456789abcdef0123', 0, %u, 0, 1, NULL)",
		 HUBFS_CACHE_BLOCK_SIZE, HUBFS_CACHE_BLOCK_SIZE);
	CHECK_INT(db_exec(dir, sql), 0);
	CHECK_UINT(used_bytes(cache), 3 * BS);
	CHECK_INT(hubfs_cache_reserve(cache, BS), 0);
	CHECK_INT(rows_of(dir, key), 0);
	CHECK_INT(hubfs_cache_reserve(cache, BS + 1), -ENOSPC);
	CHECK_INT(db_value(dir, "SELECT count(*) FROM blocks"), 2);
	CHECK_INT(stat(check_path("victim"), &st), 0);
	hubfs_cache_close(cache);
}

static void test_cache__hard_limit(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_stats st;
	char key[65];

	CHECK_INT(hubfs_cache_open(&cache, dir, 3 * BS), 0);
	for (unsigned i = 0; i < 12; i++) {
		make_key(key, 100 + i);
		/* Half of the commits come without a reservation. */
		if (i % 2)
			CHECK_INT(hubfs_cache_reserve(cache, BS), 0);
		CHECK_INT(put_object(cache, key, BS - i, i), 0);
		CHECK(used_bytes(cache) <= 3 * BS);
	}
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.blocks, 3);
	CHECK_UINT(st.evicted, 9);
	CHECK_INT(hubfs_cache_reserve(cache, 3 * BS + 1), -ENOSPC);
	hubfs_cache_close(cache);
}

static void test_cache__pinned_objects(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *a, *b, *c;
	char ka[65], kb[65], kc[65];

	make_key(ka, 20);
	make_key(kb, 21);
	make_key(kc, 22);
	CHECK_INT(hubfs_cache_open(&cache, dir, 2 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&a, cache, ka, BS), 0);
	CHECK_INT(put_block(a, BS, 0, 20), 0);
	sleep_ms(3);
	CHECK_INT(hubfs_cache_obj_open(&b, cache, kb, BS), 0);
	CHECK_INT(put_block(b, BS, 0, 21), 0);
	/* Everything is in use: no room, and nothing is taken. */
	CHECK_INT(hubfs_cache_reserve(cache, 1), -ENOSPC);
	CHECK_INT(hubfs_cache_obj_open(&c, cache, kc, BS), 0);
	CHECK_INT(put_block(c, BS, 0, 22), -ENOSPC);
	CHECK_INT(rows_of(dir, kc), 0);
	CHECK_INT(hubfs_cache_block_present(c, 0), 0);
	CHECK_INT(hubfs_cache_block_present(a, 0), 1);
	CHECK_INT(hubfs_cache_block_present(b, 0), 1);
	CHECK_UINT(used_bytes(cache), 2 * BS);
	/* b closed: b goes although a is older, a is pinned. */
	hubfs_cache_obj_close(b);
	CHECK_INT(put_block(c, BS, 0, 22), 0);
	CHECK_INT(rows_of(dir, ka), 1);
	CHECK_INT(rows_of(dir, kb), 0);
	CHECK_INT(check_range(a, 0, BS, 20), 0);
	CHECK_INT(check_range(c, 0, BS, 22), 0);
	hubfs_cache_obj_close(a);
	hubfs_cache_obj_close(c);
	hubfs_cache_close(cache);
}

static void test_cache__two_caches_one_dir(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *c1, *c2;
	struct hubfs_cache_obj *a1, *a2;
	char ka[65], kb[65];

	make_key(ka, 30);
	make_key(kb, 31);
	CHECK_INT(hubfs_cache_open(&c1, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_open(&c2, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&a1, c1, ka, 2 * BS), 0);
	CHECK_INT(put_block(a1, 2 * BS, 0, 30), 0);
	CHECK_INT(put_block(a1, 2 * BS, 1, 30), 0);
	sleep_ms(3);
	CHECK_INT(put_object(c2, kb, 2 * BS, 31), 0);
	/* c2 sees c1's blocks... */
	CHECK_INT(hubfs_cache_obj_open(&a2, c2, ka, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(a2, 1), 1);
	CHECK_INT(check_range(a2, 0, 2 * BS, 30), 0);
	hubfs_cache_obj_close(a2);
	/* ...but cannot evict them while c1 holds the object. */
	CHECK_INT(hubfs_cache_reserve(c2, 3 * BS), -ENOSPC);
	CHECK_INT(hubfs_cache_reserve(c2, 2 * BS), 0);
	CHECK_INT(rows_of(dir, kb), 0);
	CHECK_INT(rows_of(dir, ka), 2);
	CHECK_INT(check_range(a1, 0, 2 * BS, 30), 0);
	hubfs_cache_obj_close(a1);
	CHECK_INT(hubfs_cache_reserve(c2, 4 * BS), 0);
	CHECK_INT(rows_of(dir, ka), 0);
	CHECK_UINT(used_bytes(c1), 0);
	hubfs_cache_close(c1);
	hubfs_cache_close(c2);
}

/* Child side of two_processes: hold @key open until told to stop. */
static int child_hold(const char *dir, const char *key, int ready, int done)
{
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	int rc = 1;
	char c = 'f';

	if (hubfs_cache_open(&cache, dir, 4 * BS) != 0)
		goto out;
	if (hubfs_cache_obj_open(&obj, cache, key, 2 * BS) == 0) {
		rc = hubfs_cache_block_present(obj, 0) == 1 ? 0 : 2;
		c = 'r';
		if (write(ready, &c, 1) != 1 || read(done, &c, 1) != 1)
			rc |= 4;
		if (check_range(obj, 0, 2 * BS, 40) != 0)
			rc |= 8;
		hubfs_cache_obj_close(obj);
	}
	hubfs_cache_close(cache);
out:
	if (c == 'f' && write(ready, &c, 1) != 1)
		rc |= 16;
	return rc;
}

static void test_cache__two_processes(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	int ready[2], done[2], status;
	char ka[65], kb[65], c;
	pid_t pid;

	make_key(ka, 40);
	make_key(kb, 41);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(put_object(cache, ka, 2 * BS, 40), 0);
	sleep_ms(3);
	CHECK_INT(put_object(cache, kb, 2 * BS, 41), 0);
	CHECK_INT(pipe(ready), 0);
	CHECK_INT(pipe(done), 0);
	fflush(NULL);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child_hold(dir, ka, ready[1], done[0]));
	CHECK_INT(read(ready[0], &c, 1), 1);
	CHECK_INT(c, 'r');
	/* The child holds a (the oldest): only b can go. */
	CHECK_INT(hubfs_cache_reserve(cache, 3 * BS), -ENOSPC);
	CHECK_INT(hubfs_cache_reserve(cache, 2 * BS), 0);
	CHECK_INT(rows_of(dir, ka), 2);
	CHECK_INT(rows_of(dir, kb), 0);
	CHECK_INT(write(done[1], "d", 1), 1);
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_INT(WEXITSTATUS(status), 0);
	/* The child is gone, and its pin with it. */
	CHECK_INT(hubfs_cache_reserve(cache, 4 * BS), 0);
	CHECK_INT(rows_of(dir, ka), 0);
	for (int i = 0; i < 2; i++) {
		close(ready[i]);
		close(done[i]);
	}
	hubfs_cache_close(cache);
}

/* ---- threads ------------------------------------------------------------- */

/* Run @fn on each of the @n elements of @args (@size bytes each) in its
 * own thread and wait for all; 0 or the first pthread error. */
static int run_threads(void *(*fn)(void *), void *args, size_t size, size_t n)
{
	pthread_t th[8];
	size_t started = 0;
	int err = 0;

	while (started < n && started < 8 && !err) {
		err = pthread_create(&th[started], NULL, fn,
				     (char *)args + started * size);
		started += !err;
	}
	while (started)
		pthread_join(th[--started], NULL);
	return err;
}

#define THREADS 4
#define THREAD_BLOCKS 6

struct thread_arg {
	struct hubfs_cache *cache;
	const char *key;
	unsigned first;
	int err;
};

static void *thread_main(void *p)
{
	struct thread_arg *t = p;
	uint64_t size = THREAD_BLOCKS * BS - 12345;
	struct hubfs_cache_obj *obj;

	t->err = hubfs_cache_obj_open(&obj, t->cache, t->key, size);
	for (unsigned round = 0; !t->err && round < 3; round++) {
		for (unsigned k = 0; !t->err && k < THREAD_BLOCKS; k++) {
			uint64_t i = (t->first + k) % THREAD_BLOCKS;
			int ret = hubfs_cache_block_present(obj, i);

			if (ret == 0)
				t->err = put_block(obj, size, i, 50);
			else if (ret < 0)
				t->err = ret;
			if (!t->err && hubfs_cache_block_present(obj, i) != 1)
				t->err = -EIO;
			if (!t->err &&
			    check_range(obj, i * BS, blen(size, i), 50))
				t->err = -EBADMSG;
			hubfs_cache_block_touch(obj, i);
		}
	}
	hubfs_cache_obj_close(obj);
	return NULL;
}

static void test_cache__threads_same_object(void)
{
	const char *dir = check_path("c");
	struct thread_arg args[THREADS];
	struct hubfs_cache *cache;
	struct hubfs_cache_stats st;
	char key[65];

	make_key(key, 50);
	CHECK_INT(hubfs_cache_open(&cache, dir, 64 * BS), 0);
	for (int i = 0; i < THREADS; i++)
		args[i] = (struct thread_arg){ cache, key, (unsigned)i * 2, 0 };
	CHECK_INT(run_threads(thread_main, args, sizeof(args[0]), THREADS), 0);
	for (int i = 0; i < THREADS; i++)
		CHECK_INT(args[i].err, 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.blocks, THREAD_BLOCKS);
	CHECK_UINT(st.used_bytes, THREAD_BLOCKS * BS - 12345);
	CHECK_UINT(st.corrupt, 0);
	CHECK_INT(db_value(dir, "SELECT count(*) FROM objects"), 1);
	hubfs_cache_close(cache);
}

#define CHURN_ROUNDS 40

struct churn_arg {
	struct hubfs_cache *cache;
	unsigned id;
	int err;
	bool over; /* used_bytes was seen above the limit */
};

/* Fetch-like loop over a few small objects in a cache too small for
 * them: reserve, write, commit, read back, close. */
static void *churn_main(void *p)
{
	struct churn_arg *t = p;
	struct hubfs_cache_obj *obj;
	char key[65];

	for (unsigned r = 0; r < CHURN_ROUNDS && !t->err; r++) {
		unsigned k = (t->id * 7 + r) % 6;
		uint64_t size = BS / 2 + k;
		int ret;

		make_key(key, 200 + k);
		ret = hubfs_cache_obj_open(&obj, t->cache, key, size);
		if (ret) {
			t->err = ret;
			break;
		}
		ret = hubfs_cache_block_present(obj, 0);
		if (ret == 0) {
			ret = hubfs_cache_reserve(t->cache, size);
			if (ret == 0)
				ret = put_block(obj, size, 0, 7);
			if (ret == -ENOSPC) /* all in use: read uncached */
				ret = 0;
		} else if (ret == 1) {
			ret = check_range(obj, 0, (size_t)size, 7) ? -EBADMSG :
								     0;
		}
		hubfs_cache_block_touch(obj, 0);
		hubfs_cache_obj_close(obj);
		t->err = ret < 0 ? ret : 0;
		if (used_bytes(t->cache) > 2 * BS)
			t->over = true;
	}
	return NULL;
}

static void test_cache__threads_churn(void)
{
	struct churn_arg args[THREADS];
	struct hubfs_cache *cache;
	struct hubfs_cache_stats st;

	CHECK_INT(hubfs_cache_open(&cache, check_path("c"), 2 * BS), 0);
	for (unsigned i = 0; i < THREADS; i++)
		args[i] = (struct churn_arg){ cache, i, 0, false };
	CHECK_INT(run_threads(churn_main, args, sizeof(args[0]), THREADS), 0);
	for (int i = 0; i < THREADS; i++) {
		CHECK_INT(args[i].err, 0);
		CHECK(!args[i].over);
	}
	hubfs_cache_get_stats(cache, &st);
	CHECK(st.evicted > 0);
	CHECK_UINT(st.corrupt, 0);
	CHECK(st.used_bytes <= 2 * BS);
	CHECK_UINT(cache->objs.len, 0);
	hubfs_cache_close(cache);
}

struct conflict_arg {
	struct hubfs_cache *cache;
	uint64_t size;
	int err;
};

/* Open one key with this thread's size: the other thread uses another,
 * so every open either works or is refused with -EINVAL. */
static void *conflict_main(void *p)
{
	struct conflict_arg *t = p;
	struct hubfs_cache_obj *obj;
	char key[65];

	make_key(key, 300);
	for (int i = 0; i < 300 && !t->err; i++) {
		int ret = hubfs_cache_obj_open(&obj, t->cache, key, t->size);

		if (ret == 0) {
			ret = hubfs_cache_block_present(obj, 0);
			hubfs_cache_obj_close(obj);
		}
		if (ret < 0 && ret != -EINVAL)
			t->err = ret;
	}
	return NULL;
}

static void test_cache__threads_size_conflict(void)
{
	struct conflict_arg args[2];
	struct hubfs_cache *cache;

	CHECK_INT(hubfs_cache_open(&cache, check_path("c"), 2 * BS), 0);
	for (int i = 0; i < 2; i++)
		args[i] = (struct conflict_arg){ cache, BS + (uint64_t)i, 0 };
	CHECK_INT(run_threads(conflict_main, args, sizeof(args[0]), 2), 0);
	CHECK_INT(args[0].err, 0);
	CHECK_INT(args[1].err, 0);
	CHECK_UINT(cache->objs.len, 0);
	hubfs_cache_close(cache);
}

/* ---- whole objects, stats, touches --------------------------------------- */

static void test_cache__verified_and_drop(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char key[65];

	make_key(key, 60);
	CHECK_INT(hubfs_cache_open(&cache, dir, 8 * BS), 0);
	CHECK_INT(put_object(cache, key, 3 * BS, 60), 0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 3 * BS), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 0);
	CHECK_INT(hubfs_cache_obj_set_verified(obj), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 1);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 3 * BS), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 1); /* persisted */
	/* The memo of the blocks this process committed, taken whole. */
	CHECK_UINT(hubfs_cache_obj_known(obj), 3);
	CHECK_INT(hubfs_cache_block_present(obj, 2), 1);
	CHECK_UINT(hubfs_cache_obj_known(obj), 3);
	CHECK_INT(hubfs_cache_obj_drop(obj), 0);
	CHECK_UINT(hubfs_cache_obj_known(obj), 0);
	CHECK_INT(hubfs_cache_obj_verified(obj), 0);
	for (uint64_t i = 0; i < 3; i++)
		CHECK_INT(hubfs_cache_block_present(obj, i), 0);
	CHECK_INT(rows_of(dir, key), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.used_bytes, 0);
	CHECK_UINT(st.blocks, 0);
	CHECK_INT(put_block(obj, 3 * BS, 2, 60), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 2), 1);
	CHECK_INT(put_block(obj, 3 * BS, 2, 60), 0);
	CHECK_UINT(hubfs_cache_obj_known(obj), 1);
	CHECK_INT(check_range(obj, 2 * BS, BS, 60), 0);
	hubfs_cache_obj_close(obj);
	/* An object opened with another size starts over. */
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 3 * BS - 1), 0);
	CHECK_INT(rows_of(dir, key), 0);
	hubfs_cache_obj_close(obj);
	CHECK(!file_exists(dir, key));
	CHECK_INT(db_value(dir, "SELECT count(*) FROM objects"), 0);
	hubfs_cache_close(cache);
}

static void test_cache__stats(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	struct hubfs_cache_stats st;
	char key[65];

	make_key(key, 61);
	CHECK_INT(hubfs_cache_open(&cache, dir, 2 * BS), 0);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.used_bytes, 0);
	CHECK_UINT(st.max_bytes, 2 * BS);
	CHECK_UINT(st.hits + st.misses + st.evicted + st.corrupt + st.blocks,
		   0);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, 3 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 1), 0);
	CHECK_INT(put_block(obj, 3 * BS, 0, 61), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	CHECK_INT(hubfs_cache_block_present(obj, 0), 1);
	hubfs_cache_get_stats(cache, &st);
	CHECK_UINT(st.hits, 2);
	CHECK_UINT(st.misses, 2);
	CHECK_UINT(st.blocks, 1);
	CHECK_UINT(st.used_bytes, BS);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
}

static void test_cache__touch_is_batched(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	long long before;
	char key[65];

	make_key(key, 62);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(put_object(cache, key, BS, 62), 0);
	before = atime_of(dir, key, 0);
	CHECK(before > 0);
	sleep_ms(5);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, BS), 0);
	for (int i = 0; i < 100; i++)
		hubfs_cache_block_touch(obj, 0);
	/* Nothing written yet: touches wait in memory. */
	CHECK_INT(atime_of(dir, key, 0), before);
	hubfs_cache_obj_close(obj);
	hubfs_cache_close(cache);
	CHECK(atime_of(dir, key, 0) >= before + 5);
}

static void test_cache__close_sweeps_unused_file(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *a, *b;
	char key[65];

	make_key(key, 63);
	CHECK_INT(hubfs_cache_open(&cache, dir, 4 * BS), 0);
	CHECK_INT(hubfs_cache_obj_open(&a, cache, key, 5 * BS), 0);
	CHECK(file_exists(dir, key));
	CHECK_INT(db_value(dir, "SELECT count(*) FROM objects"), 1);
	CHECK_INT(hubfs_cache_obj_open(&b, cache, key, 5 * BS), 0);
	hubfs_cache_obj_close(a);
	CHECK(file_exists(dir, key)); /* still open through b */
	hubfs_cache_obj_close(b);
	CHECK(!file_exists(dir, key));
	CHECK_INT(db_value(dir, "SELECT count(*) FROM objects"), 0);
	hubfs_cache_close(cache);
}

struct open_arg {
	struct hubfs_cache *cache;
	char key[65];
};

static int open_op(void *p)
{
	struct open_arg *arg = p;
	struct hubfs_cache_obj *obj;
	int err = hubfs_cache_obj_open(&obj, arg->cache, arg->key, 2 * BS);

	if (!err) {
		err = hubfs_cache_block_present(obj, 1);
		hubfs_cache_obj_close(obj);
	}
	return err;
}

static void open_unchanged(void *p)
{
	struct open_arg *arg = p;

	CHECK_UINT(arg->cache->objs.len, 0);
}

static void test_cache__open_alloc_failures(void)
{
	struct open_arg arg;
	unsigned long runs;

	make_key(arg.key, 64);
	CHECK_INT(two_blocks(&arg.cache, check_path("c"), arg.key), 0);
	CHECK_INT(check_alloc_failures(open_op, open_unchanged, &arg, &runs),
		  1);
	CHECK(runs >= 3);
	hubfs_cache_close(arg.cache);
}

/* ---- the metadata index -------------------------------------------------- */

struct collect {
	struct hubfs_hub_entry *e;
	char (*paths)[64];
	size_t n, cap;
	size_t stop_at; /* 0: never */
};

static int collect_cb(void *p, const struct hubfs_hub_entry *e)
{
	struct collect *c = p;

	if (c->stop_at && c->n == c->stop_at)
		return 42;
	if (c->n < c->cap) {
		c->e[c->n] = *e;
		snprintf(c->paths[c->n], sizeof(c->paths[0]), "%s", e->path);
		c->e[c->n].path = c->paths[c->n];
	}
	c->n++;
	return 0;
}

static void test_cache__tree_round_trip(void)
{
	const char *dir = check_path("c");
	struct hubfs_hub_entry in[4] = {
		{ HUBFS_ENTRY_FILE, ".gitattributes",
		  "1111111111111111111111111111111111111111", 1519, false, "" },
		{ HUBFS_ENTRY_DIR, "sub",
		  "2222222222222222222222222222222222222222", 0, false, "" },
		{ HUBFS_ENTRY_FILE, "sub/model.safetensors",
		  "3333333333333333333333333333333333333333", (1ULL << 40) + 7,
		  true,
		  "44444444444444444444444444444444"
		  "44444444444444444444444444444444" },
		{ HUBFS_ENTRY_FILE, "sub/\xc3\xa9t\xc3\xa9 d'un fichier.txt",
		  "5555555555555555555555555555555555555555", 3, false, "" },
	};
	struct hubfs_hub_entry out[4];
	char paths[4][64];
	struct collect col = { out, paths, 0, 4, 0 };
	struct hubfs_cache *cache;
	int64_t t = 0;

	CHECK_INT(hubfs_cache_open(&cache, dir, BS), 0);
	CHECK_INT(hubfs_cache_tree_has(cache, REPO, COMMIT_A, &t), 0);
	CHECK_INT(hubfs_cache_tree_load(cache, REPO, COMMIT_A, collect_cb,
					&col),
		  -ENOENT);
	CHECK_INT(hubfs_cache_tree_store(cache, REPO, COMMIT_A, 1712345678, in,
					 4),
		  0);
	CHECK_INT(hubfs_cache_tree_has(cache, REPO, COMMIT_A, &t), 1);
	CHECK_INT(t, 1712345678);
	CHECK_INT(hubfs_cache_tree_has(cache, REPO, COMMIT_A, NULL), 1);
	CHECK_INT(hubfs_cache_tree_has(cache, "other repo", COMMIT_A, NULL), 0);
	/* Stored again: a commit's tree never changes, nothing happens. */
	CHECK_INT(hubfs_cache_tree_store(cache, REPO, COMMIT_A, 1, in, 2), 0);
	hubfs_cache_close(cache);

	CHECK_INT(hubfs_cache_open(&cache, dir, BS), 0);
	CHECK_INT(hubfs_cache_tree_has(cache, REPO, COMMIT_A, &t), 1);
	CHECK_INT(t, 1712345678);
	CHECK_INT(hubfs_cache_tree_load(cache, REPO, COMMIT_A, collect_cb,
					&col),
		  0);
	CHECK_UINT(col.n, 4);
	for (int i = 0; i < 4; i++) {
		CHECK_INT(out[i].type, in[i].type);
		CHECK_STR(out[i].path, in[i].path);
		CHECK_STR(out[i].oid, in[i].oid);
		CHECK_UINT(out[i].size, in[i].size);
		CHECK_INT(out[i].lfs, in[i].lfs);
		CHECK_STR(out[i].sha256, in[i].sha256);
	}
	/* A callback's non-zero answer stops the load and is returned. */
	col = (struct collect){ out, paths, 0, 4, 2 };
	CHECK_INT(hubfs_cache_tree_load(cache, REPO, COMMIT_A, collect_cb,
					&col),
		  42);
	CHECK_UINT(col.n, 2);
	/* An empty tree is a stored tree. */
	CHECK_INT(hubfs_cache_tree_store(cache, REPO, COMMIT_B, 5, NULL, 0), 0);
	col = (struct collect){ out, paths, 0, 4, 0 };
	CHECK_INT(hubfs_cache_tree_load(cache, REPO, COMMIT_B, collect_cb,
					&col),
		  0);
	CHECK_UINT(col.n, 0);
	hubfs_cache_close(cache);
}

static void test_cache__tree_50k_entries(void)
{
	const size_t n = 50000;
	struct hubfs_hub_entry *in = calloc(n, sizeof(*in));
	char(*names)[48] = calloc(n, sizeof(*names));
	struct hubfs_hub_entry *out = calloc(n, sizeof(*out));
	char(*paths)[64] = calloc(n, sizeof(*paths));
	struct collect col = { out, paths, 0, n, 0 };
	struct hubfs_cache *cache = NULL;
	double t0, t_store, t_load;
	size_t bad = 0;

	CHECK(in && names && out && paths);
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]),
			 "data/shard-%05zu/part.bin", i);
		in[i].type = i % 10 ? HUBFS_ENTRY_FILE : HUBFS_ENTRY_DIR;
		in[i].path = names[i];
		snprintf(in[i].oid, sizeof(in[i].oid), "%040zx", i);
		in[i].size = i * 1000;
		in[i].lfs = i % 3 == 0;
		if (in[i].lfs)
			snprintf(in[i].sha256, sizeof(in[i].sha256), "%064zx",
				 i * 7);
	}
	if (hubfs_cache_open(&cache, check_path("c"), BS) == 0) {
		t0 = now_s();
		CHECK_INT(hubfs_cache_tree_store(cache, REPO, COMMIT_B, 99, in,
						 n),
			  0);
		t_store = now_s() - t0;
		t0 = now_s();
		CHECK_INT(hubfs_cache_tree_load(cache, REPO, COMMIT_B,
						collect_cb, &col),
			  0);
		t_load = now_s() - t0;
		printf("tree of %zu entries: store %.3f s, load %.3f s\n", n,
		       t_store, t_load);
		CHECK_UINT(col.n, n);
		for (size_t i = 0; i < n; i++)
			bad += strcmp(out[i].path, in[i].path) != 0 ||
			       strcmp(out[i].oid, in[i].oid) != 0 ||
			       strcmp(out[i].sha256, in[i].sha256) != 0 ||
			       out[i].size != in[i].size ||
			       out[i].lfs != in[i].lfs ||
			       out[i].type != in[i].type;
		CHECK_UINT(bad, 0);
		CHECK(t_store < 1.0);
	}
	hubfs_cache_close(cache);
	free(in);
	free(names);
	free(out);
	free(paths);
}

static void test_cache__refs(void)
{
	const char *dir = check_path("c");
	struct hubfs_cache *cache;
	char commit[41] = "untouched";
	int64_t t = -1;

	CHECK_INT(hubfs_cache_open(&cache, dir, BS), 0);
	CHECK_INT(hubfs_cache_ref_get(cache, REPO, "main", commit, &t),
		  -ENOENT);
	CHECK_STR(commit, "untouched");
	CHECK_INT(t, -1);
	CHECK_INT(hubfs_cache_ref_set(cache, REPO, "main", COMMIT_A, 10), 0);
	CHECK_INT(hubfs_cache_ref_set(cache, REPO, "refs/pr/1", COMMIT_B, 20),
		  0);
	CHECK_INT(hubfs_cache_ref_set(cache, "other", "main", COMMIT_B, 30), 0);
	CHECK_INT(hubfs_cache_ref_get(cache, REPO, "main", commit, &t), 0);
	CHECK_STR(commit, COMMIT_A);
	CHECK_INT(t, 10);
	CHECK_INT(hubfs_cache_ref_set(cache, REPO, "main", COMMIT_B, 11), 0);
	CHECK_INT(hubfs_cache_ref_get(cache, REPO, "main", commit, &t), 0);
	CHECK_STR(commit, COMMIT_B);
	CHECK_INT(t, 11);
	CHECK_INT(hubfs_cache_ref_get(cache, REPO, "refs/pr/1", commit, NULL),
		  0);
	CHECK_STR(commit, COMMIT_B);
	CHECK_INT(hubfs_cache_ref_get(cache, "other", "main", commit, &t), 0);
	CHECK_INT(t, 30);
	CHECK(db_value(dir, "SELECT max(updated) FROM refs") >
	      (long long)time(NULL) - 60);
	hubfs_cache_close(cache);
}

static void test_cache__bad_arguments(void)
{
	static const char *const bad[] = {
		"",
		"0123456789abcdef0123456789abcdef0123456", /* 39 */
		"0123456789ABCDEF0123456789abcdef01234567", /* upper */
		"0123456789abcdef0123456789abcdef0123456g",
		"0123456789abcdef0123456789abcdef012345670", /* 41 */
		"../../../../../../../../../../../../etc/passwd",
		"0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcde", /* 63 */
		"0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcdef0", /* 65 */
	};
	struct hubfs_cache_obj *obj = (struct hubfs_cache_obj *)1;
	struct hubfs_hub_entry e = { HUBFS_ENTRY_FILE, NULL, "", 0, false, "" };
	struct hubfs_cache *cache;
	char key[65], commit[41];

	CHECK_INT(hubfs_cache_open(&cache, check_path("c"), BS), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_INT(hubfs_cache_obj_open(&obj, cache, bad[i], 1),
			  -EINVAL);
		CHECK_INT(hubfs_cache_tree_has(cache, REPO, bad[i], NULL),
			  -EINVAL);
		CHECK_INT(hubfs_cache_ref_set(cache, REPO, "main", bad[i], 0),
			  -EINVAL);
	}
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, NULL, 1), -EINVAL);
	CHECK(obj == (struct hubfs_cache_obj *)1);
	make_key(key, 70);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, HUBFS_SIZE_MAX + 1),
		  -EINVAL);
	/* 40 digits is a git blob id, also a valid key. */
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, COMMIT_A, 2 * BS), 0);
	CHECK_INT(hubfs_cache_block_present(obj, 2), -EINVAL);
	CHECK_INT(commit_bytes(obj, 2, "", 0), -EINVAL);
	CHECK_INT(hubfs_cache_span_present(obj, 2 * BS, 1), -EINVAL);
	CHECK_INT(hubfs_cache_span_present(obj, BS - 1, 2), -EINVAL);
	CHECK_INT(hubfs_cache_span_present(obj, 0, 0), -EINVAL);
	CHECK(!hubfs_cache_span_known(obj, BS - 1, 2));
	CHECK_INT(hubfs_cache_obj_pwrite(obj, "xy", 2, 2 * BS - 1), -EINVAL);
	CHECK_INT(hubfs_cache_obj_pwrite(obj, "xy", 2, 2 * BS - 2), 0);
	hubfs_cache_obj_close(obj);
	CHECK_INT(hubfs_cache_tree_store(cache, NULL, COMMIT_A, 0, NULL, 0),
		  -EINVAL);
	CHECK_INT(hubfs_cache_tree_store(cache, REPO, COMMIT_A, 0, &e, 1),
		  -EINVAL);
	CHECK_INT(hubfs_cache_tree_has(cache, REPO, COMMIT_A, NULL), 0);
	CHECK_INT(hubfs_cache_ref_set(cache, REPO, NULL, COMMIT_A, 0), -EINVAL);
	CHECK_INT(hubfs_cache_ref_get(cache, NULL, "main", commit, NULL),
		  -EINVAL);
	hubfs_cache_close(cache);
}

/* ---- CRC-32C ------------------------------------------------------------- */

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

/* RFC 3720 B.4 and the "123456789" check value. */
static void check_vectors(crc_fn crc)
{
	unsigned char buf[32];

	CHECK_UINT(crc(0, "123456789", 9), 0xE3069283);
	CHECK_UINT(crc(0, "", 0), 0);
	memset(buf, 0, sizeof(buf));
	CHECK_UINT(crc(0, buf, 32), 0x8A9136AA);
	memset(buf, 0xff, sizeof(buf));
	CHECK_UINT(crc(0, buf, 32), 0x62A8AB43);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	CHECK_UINT(crc(0, buf, 32), 0x46DD794E);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)(31 - i);
	CHECK_UINT(crc(0, buf, 32), 0x113FDB5C);
	/* Continuing from a previous value is the same as one pass. */
	CHECK_UINT(crc(crc(0, "1234", 4), "56789", 5), 0xE3069283);
}

static void test_cache__crc32c_table(void)
{
	check_vectors(cache_crc32c_sw);
}

static void test_cache__crc32c_sse42(void)
{
	if (!cache_crc32c_hw_ok()) {
		printf("no SSE4.2 on this CPU: instruction path not run\n");
		return;
	}
	check_vectors(cache_crc32c_hw);
}

static void test_cache__crc32c_paths_agree(void)
{
	unsigned char *buf = malloc(4096 + 16);
	unsigned seed = 12345;

	CHECK(buf != NULL);
	for (size_t i = 0; i < 4096 + 16; i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = (unsigned char)(seed >> 16);
	}
	/* Every alignment and many lengths, including the tails. */
	for (size_t off = 0; off < 16; off++) {
		for (size_t len = 0; len < 4096; len += 1 + len / 3)
			CHECK_UINT(cache_crc32c_sw(7, buf + off, len),
				   cache_crc32c_hw(7, buf + off, len));
	}
	CHECK_UINT(hubfs_crc32c(0, buf, 4096), cache_crc32c_sw(0, buf, 4096));
	free(buf);
}

/* Long buffers take the three-chain loops (spans of 8 KiB and 256 B):
 * every length around their edges, and a whole block, split or not. */
static void test_cache__crc32c_long_paths_agree(void)
{
	const size_t big = 3 * 8192 * 2 + 3 * 256 * 3 + 64;
	unsigned char *buf = malloc(BS + 16);
	unsigned seed = 777;
	size_t edges[] = { 767, 768, 769, 775, 776, 3 * 8192 - 1, 3 * 8192,
			   3 * 8192 + 1, 3 * 8192 + 768, 3 * 8192 + 775,
			   6 * 8192, big };

	CHECK(buf != NULL);
	for (size_t i = 0; i < BS + 16; i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = (unsigned char)(seed >> 16);
	}
	for (size_t off = 0; off < 9; off++) {
		for (size_t e = 0; e < sizeof(edges) / sizeof(edges[0]); e++)
			CHECK_UINT(cache_crc32c_sw(~0u, buf + off, edges[e]),
				   cache_crc32c_hw(~0u, buf + off, edges[e]));
		for (size_t len = 700; len < big; len += 997)
			CHECK_UINT(cache_crc32c_sw(3, buf + off, len),
				   cache_crc32c_hw(3, buf + off, len));
	}
	CHECK_UINT(cache_crc32c_hw(0, buf, BS), cache_crc32c_sw(0, buf, BS));
	CHECK_UINT(cache_crc32c_hw(cache_crc32c_hw(0, buf, 100000),
				   buf + 100000, BS - 100000),
		   cache_crc32c_sw(0, buf, BS));
	memset(buf, 0, BS);
	CHECK_UINT(cache_crc32c_hw(0, buf, BS), cache_crc32c_sw(0, buf, BS));
	free(buf);
}

/* The CRC of a || b from the CRCs of a and b, at every kind of split. */
static void test_cache__crc32c_combine(void)
{
	const size_t n = 3 * BS - 3;
	size_t splits[] = { 0, 1, 7, 100, PG - 1, PG, PG + 1, BS - 1, BS,
			    2 * BS + 5, n - PG - 1, n - PG, n - PG + 1, n };
	unsigned char *buf = malloc(n);
	unsigned seed = 99;

	CHECK(buf != NULL);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = (unsigned char)(seed >> 16);
	}
	for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
		size_t a = splits[i];

		CHECK_UINT(hubfs_crc32c_combine(hubfs_crc32c(0, buf, a),
						hubfs_crc32c(0, buf + a, n - a),
						n - a),
			   hubfs_crc32c(0, buf, n));
	}
	memset(buf, 0, n);
	CHECK_UINT(hubfs_crc32c_combine(hubfs_crc32c(0, "x", 1),
					hubfs_crc32c(0, buf, n), n),
		   hubfs_crc32c(hubfs_crc32c(0, "x", 1), buf, n));
	free(buf);
}

/* ---- throughput ---------------------------------------------------------- */

static void test_cache__commit_rate(void)
{
	const unsigned n = 5000, m = 64;
	const struct hubfs_cache_sum sparse = { .len = BS };
	uint64_t big = (uint64_t)n * BS;
	struct hubfs_cache *cache;
	struct hubfs_cache_obj *obj;
	double t0, rows_s, data_s;
	char key[65];

	make_key(key, 80);
	CHECK_INT(hubfs_cache_open(&cache, check_path("c"), big), 0);
	/* Index cost alone: rows for blocks never written (a sparse
	 * object), so only the transaction per commit is timed. */
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, big), 0);
	t0 = now_s();
	for (unsigned i = 0; i < n; i++)
		CHECK_INT(hubfs_cache_block_commit(obj, i, &sparse), 0);
	rows_s = now_s() - t0;
	CHECK_INT(hubfs_cache_obj_drop(obj), 0);
	hubfs_cache_obj_close(obj);
	/* With the data: pwrite of 1 MiB, CRC, commit. */
	make_key(key, 81);
	CHECK_INT(hubfs_cache_obj_open(&obj, cache, key, m * BS), 0);
	t0 = now_s();
	for (unsigned i = 0; i < m; i++)
		CHECK_INT(put_block(obj, m * BS, i, 81), 0);
	data_s = now_s() - t0;
	hubfs_cache_obj_close(obj);
	printf("block commit: %.0f commits/s (index only), %.0f MiB/s "
	       "(pattern fill + pwrite + CRC + commit)\n",
	       n / rows_s, m / data_s);
	CHECK(n / rows_s > 1000);
	/* Checkpoints ran (outside the locks): the WAL was reused, not
	 * grown by every one of the thousands of commits. */
	{
		struct stat wal;

		CHECK_INT(stat(check_path("c/index.db-wal"), &wal), 0);
		CHECK(wal.st_size < 16 * 1024 * 1024);
	}
	hubfs_cache_close(cache);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_cache__open_close_reopen),
	CHECK_TEST(test_cache__old_block_layout_is_dropped),
	CHECK_TEST(test_cache__open_bad_dir),
	CHECK_TEST(test_cache__write_read_blocks),
	CHECK_TEST(test_cache__last_block_short),
	CHECK_TEST(test_cache__size_zero),
	CHECK_TEST(test_cache__corrupt_overwritten),
	CHECK_TEST(test_cache__corrupt_truncated),
	CHECK_TEST(test_cache__stored_reads_no_data),
	CHECK_TEST(test_cache__span_checks_its_pages),
	CHECK_TEST(test_cache__rows_without_pages_are_checked_whole),
	CHECK_TEST(test_cache__sums_and_rows),
	CHECK_TEST(test_cache__adopt_links_the_file),
	CHECK_TEST(test_cache__adopt_records_every_run),
	CHECK_TEST(test_cache__blocks_commit_all_or_none),
	CHECK_TEST(test_cache__corrupt_deleted),
	CHECK_TEST(test_cache__wrong_crc_or_length),
	CHECK_TEST(test_cache__commit_needs_no_check),
	CHECK_TEST(test_cache__checked_once_per_process),
	CHECK_TEST(test_cache__memo_needs_the_same_row),
	CHECK_TEST(test_cache__memo_keeps_pages),
	CHECK_TEST(test_cache__memo_pages_need_the_row),
	CHECK_TEST(test_cache__memos_capped_in_bytes),
	CHECK_TEST(test_cache__lru_order),
	CHECK_TEST(test_cache__evict_punches_holes),
	CHECK_TEST(test_cache__damaged_index_rows),
	CHECK_TEST(test_cache__hard_limit),
	CHECK_TEST(test_cache__pinned_objects),
	CHECK_TEST(test_cache__two_caches_one_dir),
	CHECK_TEST(test_cache__two_processes),
	CHECK_TEST(test_cache__threads_same_object),
	CHECK_TEST(test_cache__threads_churn),
	CHECK_TEST(test_cache__threads_size_conflict),
	CHECK_TEST(test_cache__verified_and_drop),
	CHECK_TEST(test_cache__stats),
	CHECK_TEST(test_cache__touch_is_batched),
	CHECK_TEST(test_cache__close_sweeps_unused_file),
	CHECK_TEST(test_cache__open_alloc_failures),
	CHECK_TEST(test_cache__tree_round_trip),
	CHECK_TEST(test_cache__tree_50k_entries),
	CHECK_TEST(test_cache__refs),
	CHECK_TEST(test_cache__bad_arguments),
	CHECK_TEST(test_cache__crc32c_table),
	CHECK_TEST(test_cache__crc32c_sse42),
	CHECK_TEST(test_cache__crc32c_paths_agree),
	CHECK_TEST(test_cache__crc32c_long_paths_agree),
	CHECK_TEST(test_cache__crc32c_combine),
	CHECK_TEST(test_cache__commit_rate),
};

CHECK_MAIN(tests)
