/*
 * The Hub client: every HTTP request hubfs makes goes through here.
 *
 * A struct hubfs_hub is bound to one repository on one Hub endpoint.  It
 * owns a pool of libcurl handles sharing one connection cache, the token,
 * the table that maps HTTP statuses to errnos (src/hub/errmap.c, the only
 * such table), the retry policy and the cache of signed download URLs.
 *
 * Rules every function here keeps:
 * - The token is sent only to the endpoint's origin (scheme, host and
 *   port), never to a CDN or any other origin a redirect names, and it is
 *   never logged; URLs with signatures are logged only after
 *   hubfs_log_redact().
 * - Revisions are percent-encoded as one path segment (refs/pr/1 becomes
 *   refs%2Fpr%2F1), file paths segment by segment.
 * - Every response body is read into a buffer with a size cap; a larger
 *   body fails with -EFBIG.  Every request has a connect timeout and a
 *   low-speed timeout, so no call blocks forever.
 * - 5xx, 408, connection resets and timeouts are retried with exponential
 *   backoff; 429 is retried after the delay its RateLimit or Retry-After
 *   header asks for (capped).  Other 4xx are final.
 * - Functions return 0 or -errno; on failure they set a one-line detail
 *   (hubfs_err_get()) fit to show a user, and they do not log.  errno
 *   values: -ENOENT (repo, revision or file not found; the detail says
 *   which), -EACCES (bad token, gated repo without access, no write
 *   access), -EHOSTUNREACH / -ETIMEDOUT (the Hub could not be reached),
 *   -EAGAIN (still rate limited after the retries), -EIO (a server error
 *   after the retries, or a response that is malformed or not what was
 *   asked for), -ESTALE (a commit's parent is no longer the branch's
 *   head), -EEXIST (the Hub reports a conflict), -EFBIG, -ENOMEM,
 *   -EINVAL (an invalid argument, or a request the Hub refused as
 *   invalid).
 *
 * All functions are thread-safe: each call borrows a curl handle from the
 * pool for its duration.
 */
#ifndef HUBFS_HUB_H
#define HUBFS_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hubfs/config.h"

struct hubfs_hub;

struct hubfs_hub_opts {
	const char *endpoint;	/* "http(s)://host[:port]", no trailing '/' */
	const char *token;	/* NULL: anonymous.  Copied. */
	enum hubfs_repo_type repo_type;
	const char *repo_namespace;
	const char *repo_name;
	unsigned int connect_timeout_ms;
	unsigned int low_speed_timeout_s; /* abort below 1 byte/s for this long */
	unsigned int retries;		/* attempts after the first */
	unsigned int backoff_ms;	/* first delay; doubles, capped at 8 s */
	unsigned int max_wait_s;	/* cap on a Retry-After / RateLimit wait */
	bool trace;			/* log every request at LOG_DEBUG, redacted */
};

#define HUBFS_HUB_OPTS_INIT                                                \
	{                                                                  \
		.connect_timeout_ms = 10000, .low_speed_timeout_s = 30,    \
		.retries = 5, .backoff_ms = 500, .max_wait_s = 60,         \
	}

/* Create a client; @opts is copied.  -EINVAL for a bad endpoint. */
int hubfs_hub_new(struct hubfs_hub **out, const struct hubfs_hub_opts *opts);

/* Free a client.  Accepts NULL. */
void hubfs_hub_free(struct hubfs_hub *hub);

/* --- Revisions ------------------------------------------------------- */

struct hubfs_hub_revision {
	char commit[41];	/* 40 hex digits, NUL-terminated */
	int64_t time;		/* the commit's date, Unix seconds */
	bool gated;		/* downloads need the owner's approval */
};

/*
 * Resolve @rev (a branch, tag, refs/pr/N, or commit id; NULL for the
 * repository's default branch) to a commit, with
 * GET /api/{type}s/{repo}[/revision/{rev}].  -ENOENT when the repository
 * or the revision does not exist (or is private and no valid token was
 * given: the Hub does not tell these apart), -EACCES for a bad token.
 */
int hubfs_hub_get_revision(struct hubfs_hub *hub, const char *rev,
			   struct hubfs_hub_revision *out);

enum hubfs_ref_kind {
	HUBFS_REF_BRANCH,
	HUBFS_REF_TAG,
	HUBFS_REF_PR,		/* name is "refs/pr/N" */
	HUBFS_REF_CONVERT,	/* name is "refs/convert/X" */
};

struct hubfs_hub_ref {
	enum hubfs_ref_kind kind;
	const char *name;	/* "main", "feature/x", "v1.0", "refs/pr/1" */
	char commit[41];
};

/* Called once per ref; a non-zero return stops the listing and is
 * returned by the lister. */
typedef int (*hubfs_hub_ref_cb)(void *arg, const struct hubfs_hub_ref *ref);

/* List branches, tags and (with @include_prs) PR refs. */
int hubfs_hub_list_refs(struct hubfs_hub *hub, bool include_prs,
			hubfs_hub_ref_cb cb, void *arg);

/* --- Trees ------------------------------------------------------------- */

enum hubfs_entry_type {
	HUBFS_ENTRY_FILE,
	HUBFS_ENTRY_DIR,
};

/* Longest path accepted from the Hub, in bytes, and longest component. */
#define HUBFS_PATH_MAX 4096
#define HUBFS_NAME_MAX 255
/* Largest file size accepted from the Hub (1 PiB). */
#define HUBFS_SIZE_MAX (1ULL << 50)

struct hubfs_hub_entry {
	enum hubfs_entry_type type;
	const char *path;	/* full path from the repo root; borrowed */
	char oid[41];		/* git blob or tree id */
	uint64_t size;		/* content size (the LFS size for LFS files) */
	bool lfs;
	char sha256[65];	/* LFS content hash when lfs, else "" */
};

typedef int (*hubfs_hub_entry_cb)(void *arg,
				  const struct hubfs_hub_entry *entry);

/*
 * Every entry of @commit's tree (recursive, all pages, following
 * Link rel="next"), in the Hub's order.  An entry is validated before @cb
 * sees it: a path that is empty, absolute, has an empty, "." or ".."
 * component, a NUL, or is longer than HUBFS_PATH_MAX (a component longer
 * than HUBFS_NAME_MAX), an oid that is not 40 hex digits, an LFS oid that
 * is not 64, or a size above HUBFS_SIZE_MAX, is skipped with a warning in
 * the log.  Malformed JSON fails the whole listing with -EIO.
 */
int hubfs_hub_list_tree(struct hubfs_hub *hub, const char *commit,
			hubfs_hub_entry_cb cb, void *arg);

/* --- Bytes --------------------------------------------------------------- */

/* What identifies one file's content, for a ranged read. */
struct hubfs_hub_file {
	const char *commit;	/* the commit the path is read at */
	const char *path;
	const char *key;	/* sha256 for LFS files, else the blob id */
	bool lfs;
	uint64_t size;		/* the whole file's size */
};

/*
 * Receives the bytes of a ranged read in order: @off is the absolute
 * offset in the file of data[0].  A non-zero return aborts the read and
 * is returned by hubfs_hub_read_range().
 */
typedef int (*hubfs_hub_sink)(void *arg, uint64_t off, const void *data,
			      size_t len);

/*
 * Read bytes [@off, @off + @len) of @file and hand them to @sink.
 *
 * LFS files are read from the signed URL that /resolve/ redirects to;
 * that URL is cached per content key and reused until it expires or the
 * CDN refuses it (403/404/410), then resolved again once.  Regular files
 * are read from /resolve/{commit}/{path} (following the Hub's relative
 * redirects).  The response must be a 206 whose Content-Range is exactly
 * the range asked for and whose total is @file->size; anything else (a
 * 200, another range, another total, a short body) fails after the
 * retries and no byte of it reaches @sink.  When a transfer breaks after
 * some bytes reached @sink, the retry asks only for the rest.
 *
 * @len must be at least 1 and the range inside the file.
 */
int hubfs_hub_read_range(struct hubfs_hub *hub,
			 const struct hubfs_hub_file *file, uint64_t off,
			 uint64_t len, hubfs_hub_sink sink, void *arg);


/* --- Writing ------------------------------------------------------------- */

/*
 * Content to upload, read on demand: fill @buf with exactly @len bytes
 * at @off of the content, or return -errno (a detail set with
 * hubfs_err_set() is kept).  Called from the calling thread and from
 * upload threads, possibly concurrently for different ranges, and more
 * than once for a range when a request is retried.  @len is at most a
 * few tens of KiB: content is never held whole.
 */
typedef int (*hubfs_hub_source)(void *arg, uint64_t off, void *buf,
				size_t len);

/* One file a commit will add, as preupload sees it. */
struct hubfs_hub_upload_file {
	const char *path;
	uint64_t size;
	const void *sample;	/* the first min(size, 512) bytes */
	/* Set by hubfs_hub_preupload(): */
	bool lfs;		/* upload through LFS ("uploadMode":"lfs") */
	bool ignore;		/* the Hub says leave it out ("shouldIgnore") */
	char remote_oid[65];	/* the path's content on the branch now: its
				 * blob id (regular) or sha256 (LFS); "" if
				 * the path does not exist there */
};

/*
 * Ask the Hub how each of @n files is to be uploaded to @branch
 * (POST /api/{type}s/{repo}/preupload/{branch}, 100 files a call).  A
 * 0-byte file is always regular.  @gitattributes is the .gitattributes
 * text the commit will hold when it changes that file, else NULL (the
 * branch's own is used).  The answers are matched to @files by path; on
 * failure no file is changed.  @n = 0 sends nothing.  -EACCES without a
 * token or without write access, -ENOENT when the branch does not
 * exist, -EINVAL for an invalid path (or one, or @gitattributes, that is
 * not UTF-8), a size above HUBFS_SIZE_MAX or a missing sample, -EIO when
 * the answer is malformed or leaves a file out.
 */
int hubfs_hub_preupload(struct hubfs_hub *hub, const char *branch,
			const char *gitattributes,
			struct hubfs_hub_upload_file *files, size_t n);

/* One LFS object to store. */
struct hubfs_hub_lfs_object {
	char sha256[65];
	uint64_t size;
	hubfs_hub_source read;
	void *arg;
	/* Or NULL.  Once set (by another thread), no further request is
	 * made for this object, nor waited for before a retry: the upload
	 * fails with -ECANCELED if one was left to make, and so do the
	 * other objects' uploads of the same call.  Stopping a PUT under
	 * way is up to read.  The batch call stops for it only when it is
	 * the only object. */
	const atomic_bool *cancel;
};

/*
 * Make sure the Hub's LFS storage holds each of @n objects: the LFS batch
 * API (100 objects a call), then for each object the Hub lacks a basic
 * PUT or a multipart upload (up to @parallel parts in flight, 1 to 16, 0
 * meaning 1; each streamed from its source so memory does not grow with
 * the object), the multipart completion and the verify call when the Hub
 * asks for them.  Objects go one after the other.  Objects the Hub
 * already has are not sent again, nor is an object given twice.
 * Presigned upload URLs never get the token.  A per-object error in the
 * batch answer fails the call (-EIO) with a detail that names the
 * object, as does an answer that is malformed, leaves an object out, or
 * numbers multipart parts other than 1 to ceil(size / chunk_size).
 * -EINVAL for an invalid sha256, a size above HUBFS_SIZE_MAX, no source,
 * or one object given with two sizes.  A failure part-way leaves the
 * objects already stored in place; calling again sends only the rest.
 */
int hubfs_hub_lfs_upload(struct hubfs_hub *hub, const char *branch,
			 const struct hubfs_hub_lfs_object *objs, size_t n,
			 unsigned int parallel);

enum hubfs_hub_op_kind {
	HUBFS_OP_ADD_FILE,	/* inline content ("file", base64) */
	HUBFS_OP_ADD_LFS,	/* an object in LFS storage ("lfsFile") */
	HUBFS_OP_DELETE_FILE,	/* "deletedFile" */
	HUBFS_OP_DELETE_FOLDER,	/* "deletedFolder" (recursive) */
};

struct hubfs_hub_commit_op {
	enum hubfs_hub_op_kind kind;
	const char *path;	/* UTF-8 */
	uint64_t size;		/* ADD_FILE, ADD_LFS */
	hubfs_hub_source read;	/* ADD_FILE: read while the body is sent;
				 * may be NULL when size is 0 */
	void *arg;
	const char *sha256;	/* ADD_LFS: 64 hex digits */
};

struct hubfs_hub_commit {
	const char *branch;	/* a branch or refs/pr/N */
	const char *parent;	/* required: the commit the changes apply to,
				 * 40 hex digits */
	const char *summary;	/* the first line of the message; not empty */
	const char *description; /* the rest; may be "" or NULL */
	const struct hubfs_hub_commit_op *ops;	/* sent in this order */
	size_t n;
};

/*
 * Create a commit (POST /api/{type}s/{repo}/commit/{branch}, NDJSON with
 * parentCommit).  The body is streamed: inline contents are read through
 * their sources and encoded as they are sent, so memory does not grow
 * with the commit.  On success @out receives the new commit id.
 * -ESTALE (HTTP 412) when the branch's head is no longer @parent.  The
 * call is retried like any other: since parentCommit is always sent, a
 * retry after a commit that did land gets -ESTALE rather than making a
 * second commit, so the caller must then look for its commit
 * (hubfs_hub_list_commits()) before concluding anything.  Other errors:
 * -EACCES (no token, or no write access), -ENOENT (no such branch, or a
 * file or folder to delete that is not there), -EINVAL (an invalid
 * argument, text that is not UTF-8, or HTTP 400: the Hub refused the
 * commit, e.g. an inline file over 10 MiB or an LFS object it does not
 * hold), -EIO (the answer names no valid commit).  Everything is checked
 * before the first byte is sent.
 */
int hubfs_hub_commit(struct hubfs_hub *hub,
		     const struct hubfs_hub_commit *commit, char out[41]);

struct hubfs_hub_commit_info {
	char id[41];
	const char *title;	/* borrowed for the callback's duration */
	const char *message;	/* the whole message */
	int64_t time;		/* Unix seconds */
};

typedef int (*hubfs_hub_commit_cb)(void *arg,
				   const struct hubfs_hub_commit_info *c);

/*
 * The commits reachable from @rev, newest first, at most @max of them
 * (GET /api/{type}s/{repo}/commits/{rev}, pages of up to 100, following
 * Link rel="next"; @max 0 sends nothing).  An entry without a valid id
 * or date is skipped with a warning in the log; a missing title or
 * message is "".  A non-zero return from @cb stops the listing and is
 * returned.
 */
int hubfs_hub_list_commits(struct hubfs_hub *hub, const char *rev,
			   unsigned int max, hubfs_hub_commit_cb cb,
			   void *arg);

/*
 * Whether the token may commit to @branch (a preupload of no file): 0,
 * -EACCES (no token, a read-only token, or no write access to the
 * repository; the detail says which), -ENOENT when the repository or the
 * branch does not exist, or another -errno when the Hub could not
 * answer.
 */
int hubfs_hub_check_write(struct hubfs_hub *hub, const char *branch);

/* --- Counters ------------------------------------------------------------ */

struct hubfs_hub_stats {
	uint64_t requests;	/* HTTP requests sent, retries included */
	uint64_t retries;
	uint64_t throttled;	/* 429 answers */
	uint64_t bytes;		/* response body bytes received */
	uint64_t locates;	/* /resolve/ requests made to find a URL */
	uint64_t bytes_sent;	/* request body bytes sent */
	uint64_t commits;	/* commits created */
};

/* A snapshot of the counters since hubfs_hub_new(). */
void hubfs_hub_get_stats(struct hubfs_hub *hub, struct hubfs_hub_stats *out);

#endif /* HUBFS_HUB_H */
