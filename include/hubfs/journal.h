/*
 * The write journal: the changes a writable mount has not committed yet,
 * on local disk, so that no change is lost when hubfs stops or crashes.
 *
 *   cache_dir/journal.db           SQLite, WAL mode: changes and branches
 *   cache_dir/staging/H/           one per repository and branch (H: a
 *                                  hash of both)
 *   cache_dir/staging/H/NAME       the bytes of one staged file
 *   cache_dir/staging/H/LOCK       flock(2)ed by the one process writing
 *                                  that repository and branch
 *   cache_dir/staging/H/RESERVE    4 MiB given back when the disk is
 *                                  full, so that the journal can still
 *                                  record an unlink or a truncate
 *
 * A journal handle is bound to one repository and one branch.  It holds
 * the branch's base (the commit the changes apply to), one change row per
 * path that differs from the base, and the record of a commit attempt
 * whose outcome is not known yet.  A change row says that a path is
 * deleted, or that it holds some content: either a staged file (with,
 * for a file being modified in place, the base content its unwritten
 * blocks still come from) or content some commit of the repository
 * already holds (a renamed or copied file: nothing to upload again).
 *
 * Every row carries a generation, taken from a per-branch counter each
 * time the row is written.  A commit attempt records the counter when it
 * takes its snapshot of the rows; when the attempt lands, exactly the
 * rows not written since (gen <= snap_gen) are done and removed, so a
 * change made while the commit was on its way stays pending.  Attempts
 * whose outcome is unknown (the answer was lost) stay recorded, with the
 * tag their commit message carries, until the branch's history says
 * whether they landed.
 *
 * Durability: WAL with synchronous=NORMAL.  A transaction survives the
 * hubfs process dying at any point; a power cut may lose the last ones,
 * as it may lose any write not yet fsync()ed (fsync through the mount
 * waits for the Hub commit, which is durable).
 *
 * Functions return 0 or -errno with a hubfs_err_set() detail.  A handle
 * is not thread-safe: its user serialises calls.
 */
#ifndef HUBFS_JOURNAL_H
#define HUBFS_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

struct hubfs_journal;

/* Content that a commit of the repository holds. */
struct hubfs_jref {
	char commit[41];	/* "" when there is none */
	const char *path;	/* its path in that commit */
	char key[65];		/* sha256 (LFS) or git blob id */
	bool lfs;
	uint64_t size;
};

struct hubfs_jchange {
	const char *path;
	bool deleted;
	/* When not deleted: the staged file's name, or "" when the content
	 * is @ref itself. */
	char stage[33];
	/* The content (no stage), or the base a staged file fills its
	 * unwritten blocks from (commit "" when none). */
	struct hubfs_jref ref;
	uint64_t base_len;	/* stage: bytes below this may come from ref */
	const uint8_t *filled;	/* stage: one bit per block written locally */
	uint32_t filled_len;	/* bytes of @filled */
	int64_t gen;		/* set by the journal */
	/* Set by hubfs_journal_set_over(), cleared by hubfs_journal_put():
	 * the upstream content the owner chose to overwrite at this path
	 * (its key, "-" for no file), or "". */
	char over[66];
};

typedef int (*hubfs_journal_cb)(void *arg, const struct hubfs_jchange *c);

/*
 * Open the journal in @dir for @branch of @repo (an index key, see
 * cache.h).  -EBUSY when another process already writes that branch
 * with this cache directory.
 */
int hubfs_journal_open(struct hubfs_journal **out, const char *dir,
		       const char *repo, const char *branch);

/* Close.  Accepts NULL. */
void hubfs_journal_close(struct hubfs_journal *j);

/* Group the following calls into one transaction. */
int hubfs_journal_begin(struct hubfs_journal *j);
int hubfs_journal_commit(struct hubfs_journal *j);
void hubfs_journal_rollback(struct hubfs_journal *j);

/* The branch's base commit: -ENOENT when the branch has no journal yet. */
int hubfs_journal_get_base(struct hubfs_journal *j, char base[41]);
int hubfs_journal_set_base(struct hubfs_journal *j, const char *base);

/* Insert or replace the row for c->path, with a new generation. */
int hubfs_journal_put(struct hubfs_journal *j, const struct hubfs_jchange *c);

/* Record which blocks of the staged file at @path are written locally. */
int hubfs_journal_set_filled(struct hubfs_journal *j, const char *path,
			     uint64_t base_len, const uint8_t *filled,
			     uint32_t filled_len);

/* Record @over for the row of @path: -ENOENT when there is none. */
int hubfs_journal_set_over(struct hubfs_journal *j, const char *path,
			   const char *over);

/*
 * Give the row for @path a new generation, as if written now: a commit
 * attempt that left it out does not remove it when it lands.
 */
int hubfs_journal_touch(struct hubfs_journal *j, const char *path);

/* Remove the row for @path (no error if there is none). */
int hubfs_journal_remove(struct hubfs_journal *j, const char *path);

/* The row for @path: 1 and @cb called, 0 if there is none, or -errno. */
int hubfs_journal_get(struct hubfs_journal *j, const char *path,
		      hubfs_journal_cb cb, void *arg);

/* Call @cb for every row, in path order.  Number of rows, or -errno. */
int hubfs_journal_list(struct hubfs_journal *j, hubfs_journal_cb cb,
		       void *arg);

/* --- Staged files ------------------------------------------------------ */

/*
 * Create an empty staged file: its name into @name, an O_RDWR
 * descriptor into *@fd.
 */
int hubfs_journal_stage_create(struct hubfs_journal *j, char name[33],
			       int *fd);

/* Open an existing staged file read-write. */
int hubfs_journal_stage_open(struct hubfs_journal *j, const char *name,
			     int *fd);

/* Delete a staged file (no error if it is gone). */
void hubfs_journal_stage_unlink(struct hubfs_journal *j, const char *name);

/*
 * Delete the branch's staged files that no row names (left by a crash
 * between creating a file and recording it).  Call it before this handle
 * creates any: a file not recorded yet would go too.  Returns how many
 * were deleted.
 */
int hubfs_journal_stage_gc(struct hubfs_journal *j);

/* --- Commit attempts --------------------------------------------------- */

struct hubfs_jattempt {
	char marker[33];	/* the tag in the commit's message */
	char parent[41];	/* the commit it was made on */
	int64_t snap_gen;	/* rows with gen <= this were in it */
};

/*
 * Record an attempt, taking its snapshot generation now: call it in the
 * same critical section as the one that reads the rows to send.
 */
int hubfs_journal_attempt_begin(struct hubfs_journal *j, const char *parent,
				const char *marker);

/* The attempts whose outcome is unknown, oldest first: how many were
 * stored into @out (at most @max), or -errno. */
int hubfs_journal_attempt_list(struct hubfs_journal *j,
			       struct hubfs_jattempt *out, int max);

/*
 * Attempt @a landed as @commit: remove the rows it sent, make @commit
 * the base, forget every attempt.  One transaction.
 */
int hubfs_journal_attempt_done(struct hubfs_journal *j,
			       const struct hubfs_jattempt *a,
			       const char *commit);

/* Attempt @marker did not land (its refusal was definite): forget it. */
int hubfs_journal_attempt_remove(struct hubfs_journal *j, const char *marker);

/* None of the attempts landed or can land any more: forget them. */
int hubfs_journal_attempt_clear(struct hubfs_journal *j);

#endif /* HUBFS_JOURNAL_H */
