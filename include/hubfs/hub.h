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
 *   asked for), -EFBIG, -ENOMEM, -EINVAL.
 *
 * All functions are thread-safe: each call borrows a curl handle from the
 * pool for its duration.
 */
#ifndef HUBFS_HUB_H
#define HUBFS_HUB_H

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

/* --- Counters ------------------------------------------------------------ */

struct hubfs_hub_stats {
	uint64_t requests;	/* HTTP requests sent, retries included */
	uint64_t retries;
	uint64_t throttled;	/* 429 answers */
	uint64_t bytes;		/* response body bytes received */
	uint64_t locates;	/* /resolve/ requests made to find a URL */
};

/* A snapshot of the counters since hubfs_hub_new(). */
void hubfs_hub_get_stats(struct hubfs_hub *hub, struct hubfs_hub_stats *out);

#endif /* HUBFS_HUB_H */
