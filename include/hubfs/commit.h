/*
 * The commit engine: one set of file changes in, one Hub commit out.
 *
 * hubfs_commit_make() hashes the files to add (sha256, and the git blob
 * id), asks the Hub how each is to be uploaded (preupload), leaves out
 * files the branch already holds with the same content and files the Hub
 * says to ignore, uploads the LFS ones (objects the Hub already has are
 * not sent again) and sends the commit with parentCommit set.  It does
 * not retry a commit refused with -ESTALE (the branch moved): deciding
 * what to do then (rebase, or report a conflict) is the caller's.
 *
 * Content is read through callbacks, in blocks, so memory does not grow
 * with file sizes.
 */
#ifndef HUBFS_COMMIT_H
#define HUBFS_COMMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hubfs/hub.h"

struct hubfs_commit_file {
	const char *path;
	bool deleted;		/* a deletion; the fields below are unused */
	uint64_t size;
	hubfs_hub_source read;	/* the content, unless known_lfs */
	void *arg;
	/* The content is an LFS object the repository already holds (a
	 * renamed or copied LFS file): committed by its sha256, not read. */
	bool known_lfs;
	/* The sha256 was computed as the content was written: it is given,
	 * and the content is read only to be sent. */
	bool hashed;
	/* Its LFS object is being uploaded by someone else (an upload at
	 * close): it is asked for only after the others are sent and
	 * req->wait_uploads() returned, and sent then only if the Hub
	 * still lacks it. */
	bool uploading;
	char sha256[65];	/* known_lfs, hashed: given; else computed */
	char oid[41];		/* computed: the git blob id (inline files only;
				 * "" for LFS ones) */
	bool lfs;		/* set: committed as an LFS file */
	bool skipped;		/* set: left out (unchanged or ignored) */
};

struct hubfs_commit_req {
	const char *branch;
	const char *parent;
	const char *summary;
	const char *description;
	struct hubfs_commit_file *files;
	size_t n;
	unsigned int parallel;	/* LFS parts in flight */
	/* Wait for the uploads of the files marked uploading to end; may
	 * be NULL when none is. */
	void (*wait_uploads)(void *arg);
	void *wait_arg;
	bool sent;		/* set: the commit call itself was made */
};

/*
 * Make the commit.  On success @out holds the new commit, or @parent when
 * nothing was left to commit (every change was already on the branch);
 * *@made says which.  Errors are the Hub client's (-ESTALE: the branch is
 * no longer at @parent) or the sources' (-EIO when a file cannot be
 * read).
 */
int hubfs_commit_make(struct hubfs_hub *hub, struct hubfs_commit_req *req,
		      char out[41], bool *made);

/* The sha256 (unless @sha256 is NULL) and the git blob id (unless @oid is
 * NULL) of @size bytes read through @read; the first min(size, 512) bytes
 * go to @sample if not NULL. */
int hubfs_commit_hash(hubfs_hub_source read, void *arg, uint64_t size,
		      char sha256[65], char oid[41], uint8_t *sample);

#endif /* HUBFS_COMMIT_H */
