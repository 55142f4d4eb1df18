/*
 * The in-memory tree of one commit.
 *
 * DESIGN
 *
 * The Hub lists a commit's tree as a flat array of full paths.  This file
 * turns it into nodes with parent pointers and sorted child arrays, so a
 * FUSE lookup is a binary search in one directory and a readdir walks one
 * array.  A tree is immutable once built and shared by reference count:
 * every inode that points into it holds a reference, so a file opened at
 * one commit keeps its node (and its content key) after the branch has
 * moved on and the mount shows a newer tree.
 *
 * The listing is untrusted: the Hub client has already dropped entries
 * with dangerous paths, but duplicates, a file and a directory at the same
 * path, or entries below a file can still arrive.  The first entry for a
 * path wins; later ones that contradict it are dropped with a warning.
 * Directories that contain entries but are not listed themselves are
 * created.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

/* An open-addressing table from path to node, used only while building. */
struct path_table {
	struct fs_node **slots;
	size_t mask;
};

static uint64_t hash_path(const char *s)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static int table_init(struct path_table *t, size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap <<= 1;
	t->slots = hubfs_calloc(cap, sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	t->mask = cap - 1;
	return 0;
}

static struct fs_node **table_slot(struct path_table *t, const char *path)
{
	size_t i = hash_path(path) & t->mask;

	while (t->slots[i] && strcmp(t->slots[i]->path, path) != 0)
		i = (i + 1) & t->mask;
	return &t->slots[i];
}

struct builder {
	struct fs_tree *tree;
	struct path_table table;
	size_t cap;		/* capacity of tree->all */
};

/* Insert @n, growing the table to keep it at most half full. */
static int table_put(struct builder *b, struct fs_node *n)
{
	struct path_table *t = &b->table;

	if (b->tree->nnodes * 2 > t->mask) {
		struct path_table bigger;
		size_t i;

		if (table_init(&bigger, b->tree->nnodes * 2))
			return -ENOMEM;
		for (i = 0; i < b->tree->nnodes; i++)
			if (b->tree->all[i] != n)
				*table_slot(&bigger, b->tree->all[i]->path) =
					b->tree->all[i];
		hubfs_free(t->slots);
		*t = bigger;
	}
	*table_slot(t, n->path) = n;
	return 0;
}

static struct fs_node *new_node(struct builder *b, const char *path,
				enum hubfs_entry_type type)
{
	struct fs_node *n;
	size_t len = strlen(path);
	char *copy;

	if (b->tree->nnodes == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct fs_node **all = hubfs_realloc(b->tree->all,
						     cap * sizeof(*all));
		if (!all)
			return NULL;
		b->tree->all = all;
		b->cap = cap;
	}
	n = hubfs_calloc(1, sizeof(*n) + len + 1);
	if (!n)
		return NULL;
	copy = (char *)(n + 1);
	memcpy(copy, path, len + 1);
	n->path = copy;
	n->name = strrchr(copy, '/') ? strrchr(copy, '/') + 1 : copy;
	n->type = type;
	b->tree->all[b->tree->nnodes++] = n;
	return n;
}

/* Find or create the directory at @path; NULL if a file is there. */
static struct fs_node *ensure_dir(struct builder *b, const char *path,
				  int *err)
{
	struct fs_node **slot = table_slot(&b->table, path);
	struct fs_node *n, *parent;
	char *ppath, *slash;

	if (*slot)
		return (*slot)->type == HUBFS_ENTRY_DIR ? *slot : NULL;
	ppath = hubfs_strdup(path);
	if (!ppath) {
		*err = -ENOMEM;
		return NULL;
	}
	slash = strrchr(ppath, '/');
	if (slash)
		*slash = '\0';
	parent = ensure_dir(b, slash ? ppath : "", err);
	hubfs_free(ppath);
	if (!parent)
		return NULL;
	n = new_node(b, path, HUBFS_ENTRY_DIR);
	if (!n) {
		*err = -ENOMEM;
		return NULL;
	}
	n->parent = parent;
	*err = table_put(b, n);
	return *err ? NULL : n;
}

static int add_entry(struct builder *b, const struct hubfs_hub_entry *e)
{
	struct fs_node **slot = table_slot(&b->table, e->path);
	struct fs_node *n, *parent;
	char *ppath, *slash;
	int err = 0;

	if (*slot) {
		struct fs_node *old = *slot;

		/* A directory created for its children, then listed. */
		if (old->type == HUBFS_ENTRY_DIR &&
		    e->type == HUBFS_ENTRY_DIR && old->oid[0] == '\0') {
			memcpy(old->oid, e->oid, sizeof(old->oid));
			return 0;
		}
		hlog(LOG_WARNING, "tree %.12s: duplicate entry '%s' dropped",
		     b->tree->commit, e->path);
		return 0;
	}
	ppath = hubfs_strdup(e->path);
	if (!ppath)
		return -ENOMEM;
	slash = strrchr(ppath, '/');
	if (slash)
		*slash = '\0';
	parent = ensure_dir(b, slash ? ppath : "", &err);
	hubfs_free(ppath);
	if (!parent) {
		if (err)
			return err;
		hlog(LOG_WARNING, "tree %.12s: entry '%s' is below a file; "
		     "dropped", b->tree->commit, e->path);
		return 0;
	}
	n = new_node(b, e->path, e->type);
	if (!n)
		return -ENOMEM;
	n->parent = parent;
	n->lfs = e->lfs && e->type == HUBFS_ENTRY_FILE;
	n->size = e->type == HUBFS_ENTRY_FILE ? e->size : 0;
	memcpy(n->oid, e->oid, sizeof(n->oid));
	if (n->lfs)
		memcpy(n->sha256, e->sha256, sizeof(n->sha256));
	return table_put(b, n);
}

static int cmp_child(const void *a, const void *b)
{
	const struct fs_node *x = *(const struct fs_node *const *)a;
	const struct fs_node *y = *(const struct fs_node *const *)b;

	return strcmp(x->name, y->name);
}

/* Give every directory its sorted child array. */
static int link_children(struct fs_tree *tree)
{
	size_t i;

	for (i = 0; i < tree->nnodes; i++) {
		struct fs_node *p = tree->all[i]->parent;

		if (p)
			p->nchildren++;
	}
	for (i = 0; i < tree->nnodes; i++) {
		struct fs_node *n = tree->all[i];

		if (n->type != HUBFS_ENTRY_DIR || n->nchildren == 0)
			continue;
		n->children = hubfs_calloc(n->nchildren, sizeof(*n->children));
		if (!n->children)
			return -ENOMEM;
		n->nchildren = 0;
	}
	for (i = 0; i < tree->nnodes; i++) {
		struct fs_node *n = tree->all[i];

		if (n->parent)
			n->parent->children[n->parent->nchildren++] = n;
		if (n->type == HUBFS_ENTRY_FILE) {
			tree->nfiles++;
			tree->total_size += n->size;
		}
	}
	for (i = 0; i < tree->nnodes; i++) {
		struct fs_node *n = tree->all[i];

		if (n->nchildren > 1)
			qsort(n->children, n->nchildren, sizeof(*n->children),
			      cmp_child);
	}
	return 0;
}

static void tree_free(struct fs_tree *tree)
{
	size_t i;

	if (!tree)
		return;
	for (i = 0; i < tree->nnodes; i++) {
		hubfs_free(tree->all[i]->children);
		hubfs_free(tree->all[i]);
	}
	hubfs_free(tree->all);
	hubfs_free(tree);
}

int fs_tree_build(struct fs_tree **out, const char *commit, int64_t time,
		  const struct hubfs_hub_entry *entries, size_t n)
{
	struct builder b = { 0 };
	size_t i;
	int err;

	b.tree = hubfs_calloc(1, sizeof(*b.tree));
	if (!b.tree)
		return -ENOMEM;
	snprintf(b.tree->commit, sizeof(b.tree->commit), "%s", commit);
	b.tree->time = time;
	atomic_init(&b.tree->refs, 1);
	err = table_init(&b.table, n + 1);
	if (err)
		goto out_free_tree;
	b.tree->root = new_node(&b, "", HUBFS_ENTRY_DIR);
	if (!b.tree->root) {
		err = -ENOMEM;
		goto out_free_table;
	}
	err = table_put(&b, b.tree->root);
	if (err)
		goto out_free_table;
	for (i = 0; i < n; i++) {
		err = add_entry(&b, &entries[i]);
		if (err)
			goto out_free_table;
	}
	err = link_children(b.tree);
	if (err)
		goto out_free_table;
	hubfs_free(b.table.slots);
	*out = b.tree;
	return 0;

out_free_table:
	hubfs_free(b.table.slots);
out_free_tree:
	tree_free(b.tree);
	hubfs_err_set("cannot build the tree of %.12s: %s", commit,
		      strerror(-err));
	return err;
}

void fs_tree_get(struct fs_tree *tree)
{
	atomic_fetch_add(&tree->refs, 1);
}

void fs_tree_put(struct fs_tree *tree)
{
	if (tree && atomic_fetch_sub(&tree->refs, 1) == 1)
		tree_free(tree);
}

struct fs_node *fs_tree_child(const struct fs_node *dir, const char *name)
{
	uint32_t lo = 0, hi = dir->nchildren;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, dir->children[mid]->name);

		if (c == 0)
			return dir->children[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

struct fs_node *fs_tree_find(const struct fs_tree *tree, const char *path)
{
	struct fs_node *n = tree->root;
	char name[HUBFS_NAME_MAX + 1];

	while (n && *path) {
		const char *slash = strchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : strlen(path);

		if (len == 0 || len > HUBFS_NAME_MAX)
			return NULL;
		memcpy(name, path, len);
		name[len] = '\0';
		n = fs_tree_child(n, name);
		path += len + (slash ? 1 : 0);
		if (slash && *path == '\0')
			return NULL;	/* "a/" names nothing */
	}
	return n;
}
