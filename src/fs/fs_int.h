/*
 * Types private to the FUSE layer (src/fs/).
 */
#ifndef HUBFS_FS_INT_H
#define HUBFS_FS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hubfs/cache.h"
#include "hubfs/hub.h"

/* --- tree.c: the immutable tree of one commit ------------------------- */

struct fs_node {
	const char *name;		/* last component; "" for the root */
	const char *path;		/* from the revision root; "" for the root */
	struct fs_node *parent;		/* NULL for the root */
	struct fs_node **children;	/* sorted by strcmp() of name */
	uint32_t nchildren;
	enum hubfs_entry_type type;
	bool lfs;
	uint64_t size;
	char oid[41];			/* git blob or tree id ("" for the root) */
	char sha256[65];		/* LFS content hash, or "" */
};

/*
 * A commit's tree, shared by every inode that points into it and freed
 * when the last reference goes.  Never modified after fs_tree_build().
 */
struct fs_tree {
	char commit[41];
	int64_t time;			/* commit date: every entry's mtime */
	struct fs_node *root;
	size_t nnodes;
	uint64_t nfiles;
	uint64_t total_size;		/* sum of file sizes */
	atomic_uint refs;
	struct fs_node **all;		/* every node, owned */
};

/*
 * Build a tree from a flat listing.  Entries may come in any order; a
 * missing parent directory is created, a duplicate path or an entry below
 * a file is dropped with a warning (a hostile or broken listing must not
 * produce an inconsistent tree).  The tree starts with one reference.
 */
int fs_tree_build(struct fs_tree **out, const char *commit, int64_t time,
		  const struct hubfs_hub_entry *entries, size_t n);

void fs_tree_get(struct fs_tree *tree);
void fs_tree_put(struct fs_tree *tree);

/* The child @name of directory @dir, or NULL. */
struct fs_node *fs_tree_child(const struct fs_node *dir, const char *name);

/* The node at @path ("" for the root), or NULL. */
struct fs_node *fs_tree_find(const struct fs_tree *tree, const char *path);

/* The content key of a file: its sha256 if LFS, else its blob id. */
static inline const char *fs_node_key(const struct fs_node *n)
{
	return n->lfs ? n->sha256 : n->oid;
}

#endif /* HUBFS_FS_INT_H */

/* --- read.c: fetching file content through the block cache ------------ */

struct fs_reader;
struct fs_object;

/* A file handle's sequential-read state (readahead). */
struct fs_stream {
	uint64_t next_off;	/* where a sequential reader reads next */
	uint64_t ra_next;	/* first block readahead has not asked for */
	uint32_t window;	/* readahead window, in blocks */
};

/*
 * Update @stream for a read of bytes [@off, @end) of an object of
 * @nblocks blocks, and say which blocks, [*@from, *@to), readahead should
 * consider (an empty range for a random read).  stream.c explains the
 * policy.
 */
void fs_stream_update(struct fs_stream *stream, uint64_t off, uint64_t end,
		      uint64_t nblocks, uint32_t max_window, uint64_t *from,
		      uint64_t *to);

struct fs_reader_opts {
	unsigned int workers;		/* fetch threads */
	unsigned int max_run_blocks;	/* blocks per range request */
	unsigned int max_window_blocks;	/* largest readahead window */
	unsigned int queue_max;		/* queued readahead runs */
	/*
	 * Called (from any thread, with no lock held) when content fetched
	 * for @key did not match it, so that pages the kernel may hold for
	 * it can be dropped.
	 */
	void (*bad_content)(void *arg, const char *key);
	void *bad_content_arg;
};

#define FS_READER_OPTS_INIT                                                \
	{                                                                  \
		.workers = 8, .max_run_blocks = 8, .max_window_blocks = 64, \
		.queue_max = 64,                                           \
	}

int fs_reader_new(struct fs_reader **out, struct hubfs_hub *hub,
		  struct hubfs_cache *cache, const struct fs_reader_opts *opts);
void fs_reader_free(struct fs_reader *reader);

/*
 * Open the content of file @node of @tree (one shared object per content
 * key; the cache pins it while open).
 */
int fs_reader_open(struct fs_object **out, struct fs_reader *reader,
		   const struct fs_tree *tree, const struct fs_node *node);
void fs_object_put(struct fs_object *obj);

/*
 * Update a file handle's sequential-read state for a read of @size bytes
 * at @off and queue readahead if the stream is sequential.  Never blocks
 * on the network.  The caller serialises calls for one @stream.
 */
void fs_reader_advise(struct fs_object *obj, struct fs_stream *stream,
		      uint64_t off, size_t size);

/*
 * Make bytes [@off, @off + @size) of the object available, fetching what
 * the cache lacks.  On success *@fd is a descriptor to read them from at
 * the same offsets (valid while @obj is open) and *@len how many there
 * are (less than @size only at the end of the file).  -ENOSPC means the
 * cache could not make room: use fs_reader_read_direct().
 */
int fs_reader_prepare(struct fs_object *obj, uint64_t off, size_t size,
		      int *fd, size_t *len);

/* Read bytes straight from the Hub into @buf, bypassing the cache. */
ssize_t fs_reader_read_direct(struct fs_object *obj, void *buf, size_t size,
			      uint64_t off);
