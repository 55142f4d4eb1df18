/*
 * The working tree's private types, shared by work.c (the tree and the
 * local bytes) and commit.c (turning its changes into Hub commits).
 */
#ifndef HUBFS_WORK_INT_H
#define HUBFS_WORK_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <openssl/evp.h>

#include "fs_int.h"
#include "hubfs/journal.h"

/*
 * The unit of a stage's filled bitmap, which the journal keeps: fixed, so
 * that a journal written by one hubfs reads the same in the next, whatever
 * the block cache's block size.
 */
#define WBS (1u << 20)

/*
 * A file's local bytes: the staged file cache_dir/staging/.../NAME, of
 * the file's current size.  A block below base_len whose filled bit is
 * clear has never been written here and still reads from base; every
 * other byte reads from the staged file.
 */
struct fs_stage {
	char name[33];
	int fd;
	uint64_t size;			/* work lock */
	struct fs_content base;		/* work lock */
	uint64_t base_len;		/* work lock */
	uint8_t *filled;		/* work lock */
	uint32_t filled_len;		/* work lock: bytes of filled */
	unsigned int busy;		/* work lock: commits reading it */
	unsigned int refs;		/* work lock */
	bool orphan;			/* work lock: no journal row names it */
	bool jdirty;			/* work lock: base_len or filled not
					 * journaled yet */
	/* work lock: an upload at close reads it (upload.c); writers wait
	 * for it to end, and set upload_cancel to end it sooner. */
	bool uploading;
	atomic_bool upload_cancel;
	/* Serialises the writers of one file (fill, write, truncate), so a
	 * block being filled from its base never overwrites new bytes. */
	pthread_mutex_t io;
	/* The sha256 of bytes [0, sha_len), kept while a file with no base
	 * bytes is written front to back, so that a commit need not read
	 * it all again to hash it; NULL once a write or a cut went below
	 * sha_end.  A write claims its bytes [sha_end, +len) under io and
	 * hashes them after it was answered, without io, once sha_len has
	 * reached its offset: claims are hashed in order, and the claimant
	 * whose turn it is (sha_len == its offset) uses sha alone.  sha is
	 * freed or restarted only with no claim outstanding (sha_len ==
	 * sha_end).  sha_lock is a leaf, taken after io if at all. */
	pthread_mutex_t sha_lock;
	pthread_cond_t sha_cond;	/* sha_len moved */
	EVP_MD_CTX *sha;		/* sha_lock, and the claimant's turn */
	uint64_t sha_len;		/* sha_lock */
	uint64_t sha_end;		/* sha_lock; changed under io too */
	bool sha_failed;		/* sha_lock: an update failed */
};

struct fs_commit_state;
struct fs_upload_state;

/* A journal row that replay could not show (its staged copy lost, a
 * clash with the tree), named as it was then. */
struct fs_unshown {
	char *path;
	char stage[33];		/* the row's staged file, or "" */
	char key[65];		/* the row's content key when no stage */
};

struct fs_work {
	pthread_mutex_t lock;
	/* Signalled (under lock) when a stage stops being busy, and when a
	 * commit finishes. */
	pthread_cond_t cond;
	struct hubfs_journal *journal;	/* lock */
	struct fs_reader *reader;
	const char *label;
	int (*load_tree)(void *arg, const char *commit, struct fs_tree **out);
	void *arg;
	struct fs_tree *base;		/* lock: the commit changes apply to */
	struct fs_wnode *root;		/* lock */
	uint64_t changes;		/* lock: count of changes ever made */
	bool attempting;		/* lock: a commit is being sent */
	/* lock: the rows replay could not show; "resolve theirs" drops
	 * those still as they were (fs_commit_resolve()). */
	struct fs_unshown *unshown;
	size_t nunshown;
	struct fs_commit_state *commit;	/* commit.c's state */
	struct fs_upload_state *upload;	/* lock: upload.c's state, or NULL */
	/* lock: counters kept here, not in the states above, so that the
	 * metrics written after the committer stopped still hold them. */
	uint64_t rounds_failed;		/* commit rounds that failed */
	uint64_t uploads_done;		/* LFS objects uploaded at close */
	uint64_t upload_bytes;		/* their bytes */
	uint64_t uploads_stopped;	/* uploads at close stopped or failed */
};

/* Whether journal row @c is the row @u names. */
bool fs_unshown_is(const struct fs_unshown *u, const struct hubfs_jchange *c);

/*
 * Whether the journal row at @u's path is still the one replay could not
 * show: 1, 0 (gone or replaced since), or -errno.  Work lock held.
 */
int fs_work_unshown_current(struct fs_work *w, const struct fs_unshown *u);

/* Forget unshown row @i (work lock held). */
void fs_work_unshown_forget(struct fs_work *w, size_t i);

/*
 * Read bytes [@off, @off + @len) of committed content @base through the
 * block cache, all of them or -errno.  No lock held.
 */
int fs_work_read_content(struct fs_work *w, const struct fs_content *base,
			 void *buf, size_t len, uint64_t off);

/* The path of @n from the root (malloc'ed), NULL without memory. */
char *fs_wnode_path(const struct fs_wnode *n);

/* Read exactly @len bytes at @off of staged file @st: 0, or -EIO with
 * the reason as detail.  No lock needed. */
int fs_stage_pread(struct fs_stage *st, void *buf, size_t len, uint64_t off);

/* Drop a reference to a stage (work lock held). */
void fs_stage_put(struct fs_work *w, struct fs_stage *st);

/*
 * Fill every block of @st still read from its base, so that the staged
 * file holds the whole content.  Called without the work lock.
 */
int fs_stage_fill_all(struct fs_work *w, struct fs_stage *st);

/* The sha256 of @st's whole content, as hex, if it was computed as the
 * bytes were written: 1 (and @out set), or 0. */
int fs_stage_sha256(struct fs_work *w, struct fs_stage *st, char out[65]);

/*
 * Make the working tree match @tree (a new base) everywhere it has no
 * change of its own.  Work lock held.
 */
void fs_work_sync(struct fs_work *w, struct fs_tree *tree);

/*
 * A commit with the content of stage @st (NULL: of the file's row, a
 * renamed file) at @path landed: unless the file changed since, it is
 * clean and reads from the new base (the block cache) from now on, and
 * keeps its node (and inode) although the Hub may now store it
 * differently (LFS or not).  Work lock held; call before fs_work_sync().
 */
void fs_work_committed(struct fs_work *w, const char *path,
		       struct fs_stage *st);

/*
 * Forget the change at @path: the file shows its base content again (or
 * is gone, if the base has none).  Work lock held.
 */
int fs_work_discard(struct fs_work *w, const char *path);

/* The wnode at @path, or NULL (work lock held; materializes as needed). */
struct fs_wnode *fs_work_find(struct fs_work *w, const char *path);

/* --- uploads at close (upload.c) --- */

/* Start uploading the LFS objects of files as they are closed, to
 * @branch of @hub. */
int fs_upload_start(struct fs_work *w, struct hubfs_hub *hub,
		    const char *branch);

/* Stop the upload in flight, forget the queue, end the thread. */
void fs_upload_stop(struct fs_work *w);

/* The last handle open for writing on file @n closed (work lock held):
 * queue its upload if it qualifies. */
void fs_upload_closed(struct fs_work *w, struct fs_wnode *n);

/* File @n is removed (work lock held): if its upload is queued, take it
 * out and return true; the caller then drops the queue's reference. */
bool fs_upload_unqueue(struct fs_work *w, struct fs_wnode *n);

/* Wait until no upload at close reads @st (work lock held). */
void fs_upload_wait(struct fs_work *w, struct fs_stage *st);

#endif /* HUBFS_WORK_INT_H */
