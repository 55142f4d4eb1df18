/*
 * Unit tests for the in-memory commit tree (src/fs/tree.c): building it
 * from flat listings, including hostile and broken ones, and lookups.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "fs/fs_int.h"

#define OID_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define OID_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static struct hubfs_hub_entry file(const char *path, uint64_t size)
{
	struct hubfs_hub_entry e = { .type = HUBFS_ENTRY_FILE, .path = path,
				     .oid = OID_A, .size = size };
	return e;
}

static struct hubfs_hub_entry dir(const char *path)
{
	struct hubfs_hub_entry e = { .type = HUBFS_ENTRY_DIR, .path = path,
				     .oid = OID_B };
	return e;
}

static void test_tree__builds_sorted_directories(void)
{
	struct hubfs_hub_entry v[] = {
		file("z.txt", 1), dir("a"), file("a/b.bin", 5),
		file("a/a.txt", 2), file("m.json", 3),
	};
	struct fs_tree *t;

	CHECK_INT(fs_tree_build(&t, OID_A, 7, v, 5), 0);
	CHECK_INT(t->root->nchildren, 3);
	CHECK_STR(t->root->children[0]->name, "a");
	CHECK_STR(t->root->children[1]->name, "m.json");
	CHECK_STR(t->root->children[2]->name, "z.txt");
	CHECK_STR(fs_tree_find(t, "a/b.bin")->path, "a/b.bin");
	CHECK_STR(fs_tree_find(t, "a")->children[0]->name, "a.txt");
	CHECK_STR(fs_tree_find(t, "a")->oid, OID_B);
	CHECK(fs_tree_find(t, "a/c") == NULL);
	CHECK(fs_tree_find(t, "a/") == NULL);
	CHECK(fs_tree_find(t, "/a") == NULL);
	CHECK(fs_tree_find(t, "") == t->root);
	CHECK_UINT(t->nfiles, 4);
	CHECK_UINT(t->total_size, 11);
	CHECK_INT(t->time, 7);
	fs_tree_put(t);
}

static void test_tree__creates_unlisted_parents(void)
{
	struct hubfs_hub_entry v[] = { file("x/y/z/deep.txt", 1) };
	struct fs_tree *t;
	struct fs_node *y;

	CHECK_INT(fs_tree_build(&t, OID_A, 0, v, 1), 0);
	y = fs_tree_find(t, "x/y");
	CHECK(y != NULL && y->type == HUBFS_ENTRY_DIR);
	CHECK_STR(y->oid, "");		/* not listed: no git id known */
	CHECK(fs_tree_find(t, "x/y/z/deep.txt")->parent ==
	      fs_tree_find(t, "x/y/z"));
	fs_tree_put(t);
}

static void test_tree__listed_after_its_children_gets_its_oid(void)
{
	struct hubfs_hub_entry v[] = { file("d/f", 1), dir("d") };
	struct fs_tree *t;

	CHECK_INT(fs_tree_build(&t, OID_A, 0, v, 2), 0);
	CHECK_STR(fs_tree_find(t, "d")->oid, OID_B);
	CHECK_INT(t->root->nchildren, 1);
	fs_tree_put(t);
}

static void test_tree__first_entry_wins_conflicts(void)
{
	struct hubfs_hub_entry v[] = {
		file("same", 1),
		dir("same"),		/* a file and a directory at one path */
		file("same/under", 2),	/* an entry below a file */
		file("dup", 3),
		file("dup", 4),		/* a duplicate */
	};
	struct fs_tree *t;
	struct fs_node *n;

	CHECK_INT(fs_tree_build(&t, OID_A, 0, v, 5), 0);
	n = fs_tree_find(t, "same");
	CHECK(n->type == HUBFS_ENTRY_FILE && n->size == 1);
	CHECK(fs_tree_find(t, "same/under") == NULL);
	CHECK_UINT(fs_tree_find(t, "dup")->size, 3);
	CHECK_INT(t->root->nchildren, 2);
	CHECK_UINT(t->nfiles, 2);
	fs_tree_put(t);
}

static void test_tree__lfs_fields_and_keys(void)
{
	struct hubfs_hub_entry v[] = { file("w.bin", 10), file("c.txt", 1) };
	struct fs_tree *t;

	v[0].lfs = true;
	memcpy(v[0].sha256, SHA, sizeof(SHA));
	CHECK_INT(fs_tree_build(&t, OID_A, 0, v, 2), 0);
	CHECK_STR(fs_node_key(fs_tree_find(t, "w.bin")), SHA);
	CHECK_STR(fs_node_key(fs_tree_find(t, "c.txt")), OID_A);
	fs_tree_put(t);
}

static void test_tree__many_entries_and_references(void)
{
	enum { N = 20000 };
	static struct hubfs_hub_entry v[N];
	static char paths[N][32];
	struct fs_tree *t;
	int i;

	for (i = 0; i < N; i++) {
		snprintf(paths[i], sizeof(paths[i]), "d%03d/f%05d", i % 500, i);
		v[i] = file(paths[i], 1);
	}
	CHECK_INT(fs_tree_build(&t, OID_A, 0, v, N), 0);
	CHECK_INT(t->root->nchildren, 500);
	CHECK_INT(fs_tree_find(t, "d007")->nchildren, 40);
	CHECK_UINT(t->nfiles, N);
	fs_tree_get(t);
	fs_tree_put(t);
	CHECK(fs_tree_find(t, "d499/f19999") != NULL);
	fs_tree_put(t);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_tree__builds_sorted_directories),
	CHECK_TEST(test_tree__creates_unlisted_parents),
	CHECK_TEST(test_tree__listed_after_its_children_gets_its_oid),
	CHECK_TEST(test_tree__first_entry_wins_conflicts),
	CHECK_TEST(test_tree__lfs_fields_and_keys),
	CHECK_TEST(test_tree__many_entries_and_references),
};

CHECK_MAIN(tests)
