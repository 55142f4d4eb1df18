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

struct hubfs_buf;

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


/* --- read.c: fetching file content through the block cache ------------ */

struct fs_reader;
struct fs_object;

/*
 * Bytes a stream must cover before readahead starts: more than any one
 * read a random reader makes (the kernel splits a 1 MiB read into several
 * that follow each other) or a loader's header read.
 */
#define FS_STREAM_MIN_SEQ ((uint64_t)2 << 20)
/*
 * How far past the stream's end a read may start and still continue it:
 * the kernel's readahead sends several reads at once, and FUSE threads
 * take them in any order.
 */
#define FS_STREAM_SLACK ((uint64_t)1 << 20)
/*
 * Readahead is asked for in batches of at least this many blocks, 8 MiB
 * (or up to the end of the file): asking block by block as the window slid
 * made one range request per block.
 */
#define FS_STREAM_BATCH ((8u << 20) / HUBFS_CACHE_BLOCK_SIZE)

/* A file handle's sequential-read state (readahead). */
struct fs_stream {
	uint64_t next_off;	/* the end of the furthest read of the stream */
	uint64_t seq_start;	/* where the stream began */
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

/* The cache file's pages are given back in chunks of this many bytes,
 * FS_SPENT_LAG chunks after they were written back (stream.c). */
#define FS_SPENT_CHUNK ((uint64_t)2 << 20)
#define FS_SPENT_LAG 2u
/* Ranges of each kind that one fs_ledger_spent() names, at most. */
#define FS_SPENT_RANGES 4u

struct fs_range {
	uint64_t from, to;
};

/* What an object's readers are done with: the cache file's bytes whose
 * pages to write back now, and those whose pages to give back. */
struct fs_spent {
	unsigned int nwrite, ndrop;
	struct fs_range write[FS_SPENT_RANGES];
	struct fs_range drop[FS_SPENT_RANGES];
};

/* Which chunks of an object its readers have read in full (stream.c). */
struct fs_ledger {
	uint64_t size;
	uint64_t nchunks;
	uint32_t *done;		/* bytes read of each chunk, up to its length;
				 * LEDGER_QUEUED once in the queue */
	uint16_t *busy;		/* reads of each chunk asked, not answered */
	uint32_t *queue;	/* a ring of the chunks read in full, in order */
	uint64_t head, len;	/* ... its first entry and its length */
	uint64_t written;	/* its first @written are written back */
};

/* A ledger for an object of @size bytes; 0 or -ENOMEM. */
int fs_ledger_init(struct fs_ledger *ledger, uint64_t size);
void fs_ledger_fini(struct fs_ledger *ledger);
/* A read of [@off, @off + @len) is being answered: its chunks are not
 * spent before fs_ledger_read() counts it. */
void fs_ledger_asked(struct fs_ledger *ledger, uint64_t off, uint64_t len);
/* Count a read of [@off, @off + @len), answered (after
 * fs_ledger_asked(), if that was called for it); true if
 * fs_ledger_spent() with @all may now name something. */
bool fs_ledger_read(struct fs_ledger *ledger, uint64_t off, uint64_t len,
		    bool all);
/*
 * With the content before @checked hashed, what the readers are done
 * with (@all: without the lag, when a handle is closed or once the
 * whole content is hashed).  A chunk is
 * named once in each kind of range each time it is read in full.  With
 * @all, call again while @sp names something to have all of it.
 */
void fs_ledger_spent(struct fs_ledger *ledger, uint64_t checked, bool all,
		     struct fs_spent *sp);

/* An object's readahead for its readers together (stream.c). */
struct fs_sweep {
	uint64_t ra_next;	/* first block readahead has not asked for */
	uint32_t window;	/* readahead window, in blocks */
};

/*
 * Update @sweep for a read whose last block is @last, where @behind says
 * whether the FS_STREAM_MIN_SEQ bytes before the read are present or
 * being fetched, and say which blocks [*@from, *@to) readahead should
 * consider.
 */
void fs_sweep_update(struct fs_sweep *sweep, bool behind, uint64_t last,
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
		.workers = 8,                                              \
		.max_run_blocks = (8u << 20) / HUBFS_CACHE_BLOCK_SIZE,     \
		.max_window_blocks = (64u << 20) / HUBFS_CACHE_BLOCK_SIZE, \
		.queue_max = 64,                                           \
	}

int fs_reader_new(struct fs_reader **out, struct hubfs_hub *hub,
		  struct hubfs_cache *cache, const struct fs_reader_opts *opts);
/* Stop and join the fetch workers (queued readahead is cancelled); open
 * objects stay usable for their last fs_object_put().  Idempotent. */
void fs_reader_stop(struct fs_reader *reader);
/* Stop, then free the reader and any object still open. */
void fs_reader_free(struct fs_reader *reader);

/*
 * Open the content of file @node of @tree (one shared object per content
 * key; the cache pins it while open).
 */
int fs_reader_open(struct fs_object **out, struct fs_reader *reader,
		   const struct fs_tree *tree, const struct fs_node *node);
void fs_object_get(struct fs_object *obj);
void fs_object_put(struct fs_object *obj);

/*
 * Update a file handle's sequential-read state for a read of @size bytes
 * at @off and queue readahead if the stream is sequential.  Never blocks
 * on the network.  The caller serialises calls for one @stream, and
 * answers the read.  True if the object's ledger counts the read: then
 * call fs_reader_release() once the read is answered (or failed).
 */
bool fs_reader_advise(struct fs_object *obj, struct fs_stream *stream,
		      uint64_t off, size_t size);
/* Count the read of @size bytes at @off as answered, and write back and
 * give back the cache file's pages the readers are done with; may wait
 * for the disk. */
void fs_reader_release(struct fs_object *obj, uint64_t off, size_t size);
/* The same without the lag, when a handle of @obj is closed. */
void fs_reader_close(struct fs_object *obj);

/*
 * A way to hand the bytes of a read over as soon as they arrive: when the
 * read's bytes all come from one range request made for it, reply() gets
 * them from the transfer, before the rest of the blocks arrive and are
 * stored.  Called at most once, from the reading thread, with no lock
 * held.
 */
struct fs_early {
	void (*reply)(void *arg, const void *buf, size_t len);
	void *arg;
};

/*
 * Make bytes [@off, @off + @size) of the object available, fetching what
 * the cache lacks.  On success (0) *@fd is a descriptor to read them from
 * at the same offsets (valid while @obj is open) and *@len how many there
 * are (less than @size only at the end of the file).  1: @early (if not
 * NULL) got the *@len bytes already; the caller must not use @obj again
 * unless it holds a reference of its own.  -ENOSPC means the cache could
 * not make room, or cannot keep what it stores (writes of its data file
 * fail): use fs_reader_read_direct().
 */
int fs_reader_prepare(struct fs_object *obj, uint64_t off, size_t size,
		      int *fd, size_t *len, const struct fs_early *early);

/* Read bytes straight from the Hub into @buf, bypassing the cache. */
ssize_t fs_reader_read_direct(struct fs_object *obj, void *buf, size_t size,
			      uint64_t off);

/* --- work.c: the working tree of the writable revision ------------------ */

struct fs_work;
struct hubfs_journal;

/*
 * Content that some commit holds: a file node of a tree (the tree is a
 * reference).  Unset when tree is NULL.
 */
struct fs_content {
	struct fs_tree *tree;
	struct fs_node *node;
};

/* A file's local bytes (work.c). */
struct fs_stage;

/*
 * A node of the working tree: the revision as this mount shows it, with
 * the changes not committed yet.  Every field is guarded by the working
 * tree's lock.
 */
struct fs_wnode {
	char *name;
	struct fs_wnode *parent;	/* NULL for the root and when unlinked */
	enum hubfs_entry_type type;
	/* Directories. */
	struct fs_wnode **kids;		/* sorted by strcmp() of name */
	uint32_t nkids, cap;
	bool materialized;		/* kids built from base.node's */
	bool local;			/* made or emptied here: kept even when
					 * the base has no such directory */
	bool replaced;			/* dropped for a newer commit's node */
	/* Files: committed content (or, for a directory not materialized,
	 * its base directory). */
	struct fs_content base;
	struct fs_stage *stage;		/* files: local bytes, or NULL */
	bool dirty;			/* the journal has a row for its path */
	int64_t mtime;
	uint64_t ino;			/* 0 until the kernel was told */
	unsigned int refs;		/* parent's link, inode, handles */
	unsigned int writers;		/* handles open for writing */
};

struct fs_work_opts {
	struct hubfs_journal *journal;	/* borrowed */
	struct fs_reader *reader;	/* borrowed */
	const char *label;		/* "models/ns/name", for messages */
	/* The tree of a commit, with a reference (fs.c's load_tree). */
	int (*load_tree)(void *arg, const char *commit, struct fs_tree **out);
	void *arg;
};

/*
 * Build the working tree over @base (a reference is taken) and replay
 * the journal's rows on it.
 */
int fs_work_new(struct fs_work **out, struct fs_tree *base,
		const struct fs_work_opts *opts);
void fs_work_free(struct fs_work *w);

struct fs_wnode *fs_work_root(struct fs_work *w);

/* The commit the working tree is based on, with a reference. */
struct fs_tree *fs_work_base(struct fs_work *w);
void fs_wnode_get(struct fs_work *w, struct fs_wnode *n);
void fs_wnode_put(struct fs_work *w, struct fs_wnode *n);

/* The child @name of directory @dir with a reference, or -errno. */
int fs_work_lookup(struct fs_work *w, struct fs_wnode *dir, const char *name,
		   struct fs_wnode **out);

struct fs_wattr {
	enum hubfs_entry_type type;
	uint64_t size;
	int64_t mtime;
	uint32_t subdirs;
	uint32_t nkids;
};

void fs_work_attr(struct fs_work *w, struct fs_wnode *n, struct fs_wattr *a);

/*
 * The children of @dir from index @from on: up to @max, with a reference
 * each, into @out.  Returns how many.
 */
size_t fs_work_list(struct fs_work *w, struct fs_wnode *dir, size_t from,
		    struct fs_wnode **out, size_t max);

/* The name of @n (copied into @buf of @n bytes). */
void fs_work_name(struct fs_work *w, struct fs_wnode *n, char *buf,
		  size_t size);

/* The committed content of a clean file, with a tree reference; -EAGAIN
 * when the file has local bytes (read it with fs_work_read()), -ESTALE
 * when it has neither (it left the tree). */
int fs_work_content(struct fs_work *w, struct fs_wnode *n,
		    struct fs_content *out);

int fs_work_create(struct fs_work *w, struct fs_wnode *dir, const char *name,
		   struct fs_wnode **out);
int fs_work_mkdir(struct fs_work *w, struct fs_wnode *dir, const char *name,
		  struct fs_wnode **out);
int fs_work_unlink(struct fs_work *w, struct fs_wnode *dir, const char *name);
int fs_work_rmdir(struct fs_work *w, struct fs_wnode *dir, const char *name);
/* @flags: RENAME_NOREPLACE or 0. */
int fs_work_rename(struct fs_work *w, struct fs_wnode *dir, const char *name,
		   struct fs_wnode *ndir, const char *nname,
		   unsigned int flags);

/* Open for writing (counts a writer); @trunc empties the file. */
int fs_work_open_write(struct fs_work *w, struct fs_wnode *n, bool trunc);
void fs_work_close_write(struct fs_work *w, struct fs_wnode *n);

ssize_t fs_work_read(struct fs_work *w, struct fs_wnode *n, void *buf,
		     size_t size, uint64_t off);
/*
 * Write @size bytes of @buf at @off.  The result, the count written or
 * -errno, goes to @answer (once) as soon as the bytes are in the stage;
 * they are then added to the file's running sha256 before the call
 * returns, so @buf must stay valid until then.  Answering first lets the
 * writer's next write reach the stage, on another thread, while this
 * one hashes.
 */
void fs_work_write(struct fs_work *w, struct fs_wnode *n, const void *buf,
		   size_t size, uint64_t off,
		   void (*answer)(void *arg, ssize_t res), void *arg);
int fs_work_truncate(struct fs_work *w, struct fs_wnode *n, uint64_t size);

/*
 * Whether @name may be created in @dir: 0 or -errno (the Hub refuses a
 * ".git" component, names that are too long, and so on).
 */
int fs_work_name_ok(struct fs_work *w, struct fs_wnode *dir,
		    const char *name);

/* --- commit.c: committing the working tree's changes ------------------- */

struct fs_commit_opts {
	struct hubfs_hub *hub;
	struct hubfs_cache *cache;
	const char *branch;
	const char *message;		/* summary template, or NULL */
	unsigned int quiet_ms;		/* no change for this long: commit */
	unsigned int max_delay_ms;	/* pending this long: commit anyway */
	unsigned int refresh_ms;	/* idle: look for upstream commits; 0 never */
	bool upload_at_close;		/* send LFS objects as files close */
};

/* Start the committer thread of @w. */
int fs_commit_start(struct fs_work *w, const struct fs_commit_opts *opts);

/*
 * Wait for a commit of everything pending now: 0 once it is on the
 * branch (or nothing was pending), -ESTALE on a conflict, or the error
 * that stopped it (the changes stay staged).
 */
int fs_commit_sync(struct fs_work *w);

/* Count handles open for writing (+1 at open, -1 at release). */
void fs_commit_writers(struct fs_work *w, int delta);

/*
 * Commit what is pending (one round), then stop the thread.  -EIO when
 * changes are left staged.
 */
int fs_commit_stop(struct fs_work *w);

struct fs_commit_stats {
	uint64_t pending;	/* changes staged */
	uint64_t failed;	/* commit rounds that failed, in total */
	unsigned int failing;	/* rounds failed in a row (0: the last worked) */
	uint64_t conflicts;	/* paths in conflict */
	double pending_age_s;	/* how long changes have been pending */
	int last_error;		/* the last round's result: 0 or -errno */
	uint64_t uploads_at_close;	/* LFS objects uploaded at close */
	uint64_t uploads_at_close_bytes; /* their bytes */
	/* uploads at close stopped or failed */
	uint64_t uploads_at_close_stopped;
};

void fs_commit_get_stats(struct fs_work *w, struct fs_commit_stats *out);

/*
 * The pending changes, one line each: "modified PATH", "deleted PATH"
 * or "conflict PATH" (the last commit failed on it: changed upstream).
 */
int fs_commit_pending(struct fs_work *w, struct hubfs_buf *out);

/*
 * Resolve the conflict at file @n (the root: every conflict): @ours
 * commits the local content over the upstream change, else the local
 * change is dropped.  -EINVAL when there is no conflict there.
 */
int fs_commit_resolve(struct fs_work *w, struct fs_wnode *n, bool ours);

#endif /* HUBFS_FS_INT_H */
