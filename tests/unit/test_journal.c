/*
 * Unit tests for the write journal (src/commit/journal.c): rows and their
 * generations, what a landed attempt removes, conflict resolutions, the
 * one-writer lock, and staged-file garbage collection.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "hubfs/journal.h"

#define REPO "https://hub.example/models/org/m"
#define C1 "1111111111111111111111111111111111111111"
#define C2 "2222222222222222222222222222222222222222"
#define C3 "3333333333333333333333333333333333333333"

struct rows {
	int n;
	char paths[8][64];
	bool deleted[8];
	int64_t gen[8];
	char over[8][66];
};

static int collect(void *arg, const struct hubfs_jchange *c)
{
	struct rows *r = arg;

	if (r->n < 8) {
		snprintf(r->paths[r->n], sizeof(r->paths[0]), "%s", c->path);
		r->deleted[r->n] = c->deleted;
		r->gen[r->n] = c->gen;
		memcpy(r->over[r->n], c->over, sizeof(r->over[0]));
	}
	r->n++;
	return 0;
}

static struct hubfs_jchange change(const char *path, bool deleted)
{
	struct hubfs_jchange c;

	memset(&c, 0, sizeof(c));
	c.path = path;
	c.deleted = deleted;
	return c;
}

static void test_journal__rows_in_path_order_with_generations(void)
{
	struct hubfs_journal *j;
	struct hubfs_jchange c;
	struct rows r = { 0 };
	char base[41];

	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	CHECK_INT(hubfs_journal_get_base(j, base), -ENOENT);
	CHECK_INT(hubfs_journal_set_base(j, C1), 0);
	CHECK_INT(hubfs_journal_get_base(j, base), 0);
	CHECK_STR(base, C1);
	c = change("b/x.txt", false);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	c = change("a.txt", true);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	CHECK_INT(hubfs_journal_list(j, collect, &r), 2);
	CHECK_STR(r.paths[0], "a.txt");
	CHECK(r.deleted[0]);
	CHECK_STR(r.paths[1], "b/x.txt");
	CHECK(!r.deleted[1]);
	/* Each write takes a new generation. */
	CHECK(r.gen[0] > r.gen[1]);
	CHECK_INT(hubfs_journal_remove(j, "a.txt"), 0);
	CHECK_INT(hubfs_journal_remove(j, "a.txt"), 0);
	memset(&r, 0, sizeof(r));
	CHECK_INT(hubfs_journal_get(j, "b/x.txt", collect, &r), 1);
	CHECK_INT(hubfs_journal_get(j, "a.txt", collect, &r), 0);
	CHECK_INT(r.n, 1);
	hubfs_journal_close(j);
}

static void test_journal__rows_survive_a_reopen_per_branch(void)
{
	struct hubfs_journal *j;
	struct hubfs_jchange c = change("kept.bin", false);
	struct rows r = { 0 };

	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	CHECK_INT(hubfs_journal_set_base(j, C1), 0);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	hubfs_journal_close(j);
	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "dev"), 0);
	CHECK_INT(hubfs_journal_list(j, collect, &r), 0);
	hubfs_journal_close(j);
	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	CHECK_INT(hubfs_journal_list(j, collect, &r), 1);
	CHECK_STR(r.paths[0], "kept.bin");
	hubfs_journal_close(j);
}

static void test_journal__one_writer_per_branch(void)
{
	struct hubfs_journal *j, *k;

	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	k = NULL;
	CHECK_INT(hubfs_journal_open(&k, check_tmpdir(), REPO, "main"),
		  -EBUSY);
	CHECK(k == NULL);
	CHECK_INT(hubfs_journal_open(&k, check_tmpdir(), REPO, "dev"), 0);
	hubfs_journal_close(k);
	hubfs_journal_close(j);
	CHECK_INT(hubfs_journal_open(&k, check_tmpdir(), REPO, "main"), 0);
	hubfs_journal_close(k);
}

/* A landed attempt removes exactly the rows not written since. */
static void test_journal__landed_attempt_keeps_later_changes(void)
{
	struct hubfs_journal *j;
	struct hubfs_jchange c;
	struct hubfs_jattempt a[4];
	struct rows r = { 0 };
	char base[41];

	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	CHECK_INT(hubfs_journal_set_base(j, C1), 0);
	c = change("sent.txt", false);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	c = change("rewritten.txt", false);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	CHECK_INT(hubfs_journal_attempt_begin(j, C1, "m1"), 0);
	CHECK_INT(hubfs_journal_attempt_list(j, a, 4), 1);
	CHECK_STR(a[0].marker, "m1");
	CHECK_STR(a[0].parent, C1);
	/* Written again while the commit was on its way. */
	c = change("rewritten.txt", false);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	c = change("new.txt", false);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	CHECK_INT(hubfs_journal_attempt_done(j, &a[0], C2), 0);
	CHECK_INT(hubfs_journal_get_base(j, base), 0);
	CHECK_STR(base, C2);
	CHECK_INT(hubfs_journal_attempt_list(j, a, 4), 0);
	CHECK_INT(hubfs_journal_list(j, collect, &r), 2);
	CHECK_STR(r.paths[0], "new.txt");
	CHECK_STR(r.paths[1], "rewritten.txt");
	hubfs_journal_close(j);
}

static void test_journal__attempts_removed_and_cleared(void)
{
	struct hubfs_journal *j;
	struct hubfs_jattempt a[4];

	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	CHECK_INT(hubfs_journal_set_base(j, C1), 0);
	CHECK_INT(hubfs_journal_attempt_begin(j, C1, "m1"), 0);
	CHECK_INT(hubfs_journal_attempt_begin(j, C1, "m2"), 0);
	CHECK_INT(hubfs_journal_attempt_list(j, a, 4), 2);
	CHECK_STR(a[0].marker, "m1");
	CHECK_INT(hubfs_journal_attempt_list(j, a, 1), 1);
	CHECK_INT(hubfs_journal_attempt_remove(j, "m1"), 0);
	CHECK_INT(hubfs_journal_attempt_list(j, a, 4), 1);
	CHECK_STR(a[0].marker, "m2");
	CHECK_INT(hubfs_journal_attempt_clear(j), 0);
	CHECK_INT(hubfs_journal_attempt_list(j, a, 4), 0);
	hubfs_journal_close(j);
}

/* A conflict resolved "ours" is remembered until the path is written. */
static void test_journal__over_is_kept_until_the_row_is_rewritten(void)
{
	struct hubfs_journal *j;
	struct hubfs_jchange c = change("both.txt", false);
	struct rows r = { 0 };

	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	CHECK_INT(hubfs_journal_set_base(j, C1), 0);
	CHECK_INT(hubfs_journal_set_over(j, "both.txt", C3), -ENOENT);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	CHECK_INT(hubfs_journal_list(j, collect, &r), 1);
	CHECK_STR(r.over[0], "");
	CHECK_INT(hubfs_journal_set_over(j, "both.txt", C3), 0);
	memset(&r, 0, sizeof(r));
	CHECK_INT(hubfs_journal_get(j, "both.txt", collect, &r), 1);
	CHECK_STR(r.over[0], C3);
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	memset(&r, 0, sizeof(r));
	CHECK_INT(hubfs_journal_get(j, "both.txt", collect, &r), 1);
	CHECK_STR(r.over[0], "");
	hubfs_journal_close(j);
}

/* Staged files no row names are collected; named ones are kept. */
static void test_journal__stage_gc_keeps_what_rows_name(void)
{
	struct hubfs_journal *j;
	struct hubfs_jchange c = change("staged.bin", false);
	char kept[33], lost[33];
	int fd;

	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	CHECK_INT(hubfs_journal_set_base(j, C1), 0);
	CHECK_INT(hubfs_journal_stage_create(j, kept, &fd), 0);
	close(fd);
	CHECK_INT(hubfs_journal_stage_create(j, lost, &fd), 0);
	close(fd);
	CHECK(strcmp(kept, lost) != 0);
	memcpy(c.stage, kept, sizeof(c.stage));
	CHECK_INT(hubfs_journal_put(j, &c), 0);
	hubfs_journal_close(j);
	CHECK_INT(hubfs_journal_open(&j, check_tmpdir(), REPO, "main"), 0);
	CHECK_INT(hubfs_journal_stage_gc(j), 1);
	CHECK_INT(hubfs_journal_stage_gc(j), 0);
	CHECK_INT(hubfs_journal_stage_open(j, kept, &fd), 0);
	close(fd);
	CHECK(hubfs_journal_stage_open(j, lost, &fd) < 0);
	hubfs_journal_close(j);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_journal__rows_in_path_order_with_generations),
	CHECK_TEST(test_journal__rows_survive_a_reopen_per_branch),
	CHECK_TEST(test_journal__one_writer_per_branch),
	CHECK_TEST(test_journal__landed_attempt_keeps_later_changes),
	CHECK_TEST(test_journal__attempts_removed_and_cleared),
	CHECK_TEST(test_journal__over_is_kept_until_the_row_is_rewritten),
	CHECK_TEST(test_journal__stage_gc_keeps_what_rows_name),
};

CHECK_MAIN(tests)
