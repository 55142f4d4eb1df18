/*
 * Types and functions private to the Hub client (src/hub/).
 *
 * The pure helpers (parsers, encoders, the error table, the wait
 * computation) take plain bytes and return 0 or -errno, so the unit tests
 * and the fuzzers call them directly, without a network.  The request
 * layer (hub.c) is shared by the metadata calls (hub.c), the ranged reads
 * (read.c) and the writes (write.c).
 */
#ifndef HUBFS_HUB_INT_H
#define HUBFS_HUB_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "hubfs/buf.h"
#include "hubfs/hub.h"
#include "hubfs/lock.h"

/* --- Limits --------------------------------------------------------------- */

#define HUB_TREE_PAGE_MAX (64u << 20)	/* one tree page, bytes */
#define HUB_JSON_MAX (1u << 20)		/* any other JSON body */
#define HUB_URL_MAX 16384		/* a URL we build or are sent */
#define HUB_LINK_MAX 8192		/* a Link header */
#define HUB_HDR_MAX 256			/* any other header we keep */
#define HUB_ERRBODY_MAX 4096		/* error body kept for its message */
#define HUB_MAX_HOPS 5			/* same-origin redirects per request */
#define HUB_BACKOFF_CAP_MS 8000
#define HUB_POOL_MAX 16			/* idle curl handles kept */
#define HUB_URLS_MAX 4096		/* signed URLs cached per client */
#define HUB_URL_BUCKETS 1024
#define HUB_LFS_BATCH_MAX (64u << 20)	/* an LFS batch answer, bytes */
#define HUB_WRITE_BATCH 100		/* files per preupload, objects per
					 * LFS batch call */
#define HUB_SAMPLE_MAX 512		/* preupload's content sample */
#define HUB_PARTS_MAX 10000		/* parts of one multipart upload */
#define HUB_ACTION_HEADERS_MAX 64	/* headers of one LFS action */
#define HUB_ACTION_HEADER_MAX 4096	/* one such header line, bytes */
#define HUB_PARALLEL_MAX 16		/* parts in flight per upload */
#define HUB_COMMITS_PAGE 100		/* commits asked for per page */

/* --- The client ----------------------------------------------------------- */

/* One cached signed URL, in a bucket chain of hubfs_hub.urls. */
struct hub_locating {
	struct hub_locating *next;
	char key[65];
};

struct hub_url_entry {
	struct hub_url_entry *next;
	char key[65];			/* the LFS sha256 */
	char *url;
};

struct hub_origin {
	char scheme[8];			/* "http" or "https" */
	char host[256];			/* lowercase */
	long port;
};

struct hubfs_hub {
	struct hubfs_hub_opts opts;	/* string fields point below */
	char *endpoint;			/* no trailing '/' */
	char *token;			/* NULL: anonymous; wiped on free */
	char *auth_header;		/* "Authorization: Bearer ..." */
	char *repo_desc;		/* "models/ns/name", for messages */
	char *api_base;			/* {endpoint}/api/models/ns/name */
	char *file_base;		/* {endpoint}/[datasets/]ns/name */
	struct hub_origin origin;	/* of the endpoint */

	CURLSH *share;
	/* One per curl_lock_data; taken by libcurl only, never nested. */
	struct hubfs_mutex share_locks[CURL_LOCK_DATA_LAST];

	/* Idle easy handles.  A leaf lock: nothing is taken under it. */
	struct hubfs_mutex pool_lock;
	CURL *pool[HUB_POOL_MAX] HUBFS_GUARDED_BY(pool_lock);
	unsigned int pool_len HUBFS_GUARDED_BY(pool_lock);

	/* Signed URLs by content key.  A leaf lock, never held across I/O. */
	struct hubfs_mutex url_lock;
	struct hub_url_entry *urls[HUB_URL_BUCKETS] HUBFS_GUARDED_BY(url_lock);
	unsigned int url_count HUBFS_GUARDED_BY(url_lock);
	/* Keys being located now, so that concurrent misses wait for one
	 * HEAD instead of each sending their own; url_located is signalled
	 * (under url_lock) when one finishes. */
	struct hub_locating *locating HUBFS_GUARDED_BY(url_lock);
	pthread_cond_t url_located;

	/* The endpoint's origin, in CLOCK_MONOTONIC ms: when it was last
	 * found unreachable (hub_retry_wait(); 0: never) and when it last
	 * answered.  The hold is on while the first is the later and less
	 * than HUB_UNREACHABLE_HOLD_MS old; a failure older than the last
	 * answer neither arms nor meets it. */
	atomic_int_fast64_t unreachable_at;
	atomic_int_fast64_t answered_at;

	struct {
		atomic_uint_fast64_t requests, retries, throttled, bytes;
		atomic_uint_fast64_t locates, bytes_sent, commits;
	} stats;
};

/* --- One HTTP exchange (hub.c) -------------------------------------------- */

struct hub_errctx {
	const char *repo;		/* "models/ns/name" */
	const char *rev;		/* the revision asked for, or NULL */
	const char *path;		/* the file asked for, or NULL */
	const char *url;		/* what was asked (shown redacted) */
	bool cdn;			/* the answer is from another origin */
	bool write;			/* a write: 401/403 mean "this token
					 * cannot write" */
};


struct hub_resp;

/*
 * Called once the headers of a final (non-1xx) response are in; a
 * non-zero return aborts the transfer before any body byte is handed on,
 * and is what the exchange returns (set resp->retry to say whether trying
 * again could help).
 */
typedef int (*hub_headers_fn)(void *arg, struct hub_resp *resp);
/* Receives the body of a 2xx response; a non-zero return aborts. */
typedef int (*hub_data_fn)(void *arg, struct hub_resp *resp,
			   const void *data, size_t len);

/*
 * A request body made on demand.  @read fills @buf with up to @len bytes
 * and sets *@got, 0 only at the end; @rewind goes back to the first byte.
 * Both return 0 or -errno with the detail set.  hub_exchange() rewinds
 * before every attempt (and libcurl may rewind within one, when a reused
 * connection turns out dead), so a retried request sends the whole body
 * again.
 */
struct hub_stream {
	int (*read)(void *arg, char *buf, size_t len, size_t *got);
	int (*rewind)(void *arg);
	void *arg;
	int64_t size;			/* bytes; -1: unknown (chunked) */
};

struct hub_req {
	const char *method;		/* "GET", "HEAD", "POST" or "PUT" */
	const char *url;		/* absolute */
	bool auth;			/* send the token, if url is ours */
	bool json;			/* Accept JSON; allow compression */
	bool locate;			/* count as a locate in the stats */
	const char *range;		/* "a-b": Range: bytes=a-b; or NULL */
	const char *accept;		/* Accept, instead of JSON's; or NULL */
	const char *content_type;	/* of the body sent; or NULL */
	/* More "Name: value" lines, NULL-terminated, or NULL.  A line
	 * naming Authorization is dropped: the token is added only by
	 * hub_exchange(), only for the endpoint's origin. */
	const char *const *headers;
	/* The body of a POST or PUT: send_len bytes at send (which may be
	 * NULL when send_len is 0), or stream. */
	const char *send;
	size_t send_len;
	const struct hub_stream *stream;
	struct hubfs_buf *body;		/* a 2xx body, capped; or NULL */
	hub_headers_fn on_headers;	/* or NULL */
	hub_data_fn on_data;		/* a 2xx body, instead of body */
	void *arg;
	/* Or NULL.  Once set (by another thread), hub_call() makes no
	 * further attempt and cuts its wait before one short: -ECANCELED.
	 * A transfer under way is its body source's to stop. */
	const atomic_bool *cancel;
};

struct hub_resp {
	long status;			/* 0 until a status line arrived */
	bool retry;			/* on failure: worth another attempt */
	bool unreachable;		/* on failure: no connection could be
					 * made to the endpoint's origin
					 * (refused, no route) */
	int64_t failed_at;		/* then: when, CLOCK_MONOTONIC ms */
	bool link_bad;			/* a Link header did not fit or was
					 * not plain text */
	char location[HUB_URL_MAX];	/* absolute redirect target, or "" */
	char link[HUB_LINK_MAX];
	char content_range[HUB_HDR_MAX];
	char error_code[HUB_HDR_MAX];	/* X-Error-Code */
	char error_message[HUB_HDR_MAX]; /* X-Error-Message, or body "error" */
	char retry_after[HUB_HDR_MAX];
	char ratelimit[HUB_HDR_MAX];
	char etag[HUB_HDR_MAX];		/* ETag, verbatim, or "" */
	bool etag_bad;			/* an ETag did not fit or was not
					 * plain text */
	char errbody[HUB_ERRBODY_MAX];	/* start of a non-2xx body */
	size_t errbody_len;
	uint64_t body_bytes;		/* body bytes received */
};

/*
 * Send one request and take in its answer, whatever the status.  The
 * token goes only to the endpoint's origin, whatever req->auth says.
 * Returns 0 once a whole response was read (resp->status may be any
 * status), or -errno for a transport failure or an abort by a callback,
 * with resp->retry set and the detail in hubfs_err_get().
 */
int hub_exchange(struct hubfs_hub *hub, const struct hub_req *req,
		 struct hub_resp *resp);

/*
 * hub_exchange() with the retry policy, same-origin redirects followed
 * (the token kept) and the error table applied.  Returns 0 for a 2xx, or
 * for a 3xx to another origin (resp->location holds it); -errno otherwise.
 * A request with a body follows only 307 and 308, which keep the method
 * and the body; another redirect of it is an error.
 * @final_url, if not NULL, receives the URL that gave the answer.
 */
int hub_call(struct hubfs_hub *hub, const struct hub_req *req,
	     const struct hub_errctx *ctx, struct hub_resp *resp,
	     struct hubfs_buf *final_url);

/*
 * GET @url as JSON into @body; a redirect to another origin is an error.
 * @url_err is the error building @url, if any, reported here once.
 * *@resp is allocated on first use and kept for the caller (its Link
 * header), who frees it with hubfs_free().
 */
int hub_get_json(struct hubfs_hub *hub, const struct hubfs_buf *url,
		 int url_err, const struct hub_errctx *ctx,
		 struct hubfs_buf *body, struct hub_resp **resp);

/*
 * Point @url at the page that the Link header of @resp names, if any;
 * *@more says whether there is one.  -EIO if the link is malformed, on
 * another origin, or names the page itself.
 */
int hub_next_page(struct hubfs_hub *hub, const struct hub_resp *resp,
		  struct hubfs_buf *url, bool *more);

/* A revision or commit fit for a URL segment, else -EINVAL. */
int hub_check_rev(const char *rev);

/* A zeroed response on the heap (it is too large for a small stack);
 * free with hubfs_free().  NULL with the detail set if out of memory. */
struct hub_resp *hub_resp_new(void);

struct hub_retry {
	unsigned int attempt;		/* retries made so far */
	const atomic_bool *cancel;	/* the request's: cuts the wait */
};

/*
 * After a failed attempt answered by @resp (status 0 if none): sleep as
 * the policy says and return true, or return false when the retries are
 * used up.
 */
bool hub_retry_wait(struct hubfs_hub *hub, struct hub_retry *rt,
		    const struct hub_resp *resp);

/* Whether @url is on the endpoint's origin (scheme, host and port). */
bool hub_same_origin(const struct hubfs_hub *hub, const char *url);

/* Parse the origin of an absolute http(s) URL.  -EINVAL if it is not. */
int hub_origin_parse(struct hub_origin *out, const char *url);

/* --- Signed URLs (read.c) ------------------------------------------------- */

/* Forget every cached signed URL.  Takes url_lock. */
void hub_urls_clear(struct hubfs_hub *hub);

/* --- Errors (errmap.c) ---------------------------------------------------- */

/*
 * Map a final HTTP answer to -errno and the retry flag, and set the
 * detail.  @code and @message are X-Error-Code and X-Error-Message (or
 * the body's "error"), "" when absent.  The one table that does this.
 */
int hub_errmap_status(const struct hub_errctx *ctx, long status,
		      const char *code, const char *message, bool *retry);

/* Map a libcurl failure to -errno and the retry flag, and set the
 * detail from @what (curl's error text, may be ""). */
int hub_errmap_curl(const struct hub_errctx *ctx, CURLcode rc,
		    const char *what, bool *retry);

/* --- Pure helpers (parse.c) ----------------------------------------------- */

/* Append @s percent-encoded as one path segment ('/' encoded too). */
int hub_url_put_segment(struct hubfs_buf *out, const char *s);
/* Append @path percent-encoded segment by segment ('/' kept). */
int hub_url_put_path(struct hubfs_buf *out, const char *path);

/*
 * Why @path (@len bytes, may hold NULs) is not an acceptable repo path,
 * or NULL if it is: empty, absolute, an empty, "." or ".." component, a
 * NUL, longer than HUBFS_PATH_MAX, a component over HUBFS_NAME_MAX.
 */
const char *hub_path_invalid(const char *path, size_t len);

/* Whether @s is exactly @n hex digits. */
bool hub_is_hex(const char *s, size_t n);

/* "2024-01-01T06:00:00.000Z" (or an offset) to Unix seconds. */
int hub_parse_time(const char *s, int64_t *out);

/* The repo-info JSON's "sha" and "lastModified".  -EIO if malformed. */
int hub_parse_revision(const char *data, size_t len,
		       struct hubfs_hub_revision *out);

/*
 * Hand each valid entry of one tree page to @cb, skipping invalid ones
 * with a warning (counted in *@skipped if not NULL).  -EIO if the page is
 * not a JSON array; @cb's non-zero return stops and is returned.
 */
int hub_parse_tree(const char *data, size_t len, hubfs_hub_entry_cb cb,
		   void *arg, size_t *skipped);

/* Hand each valid ref to @cb (PR refs only with @include_prs). */
int hub_parse_refs(const char *data, size_t len, bool include_prs,
		   hubfs_hub_ref_cb cb, void *arg);

/*
 * The target of the rel="next" link in a Link header, allocated (free
 * with hubfs_free()), or NULL if there is none.  -EIO if the header is
 * malformed, -ENOMEM.
 */
int hub_link_next(char **out, const char *header);

struct hub_content_range {
	bool unsatisfied;		/* "bytes * /total" */
	uint64_t first, last;		/* inclusive, when satisfied */
	bool total_known;		/* false for ".../ *" */
	uint64_t total;
};

/* Parse a Content-Range value.  -EIO if it is not well formed. */
int hub_parse_content_range(const char *value,
			    struct hub_content_range *out);

/* Seconds from "Retry-After: N" (delay form only).  -EINVAL if not. */
int hub_parse_retry_after(const char *value, unsigned int *out);

/*
 * Seconds to wait from a RateLimit header ("api";r=0;t=N): N + 1 when
 * r is 0, else -ENOENT (no wait asked for); -EINVAL if malformed.
 */
int hub_parse_ratelimit(const char *value, unsigned int *out);

/* The "error" string of a JSON error body, copied into @dst. */
int hub_parse_error_body(const char *data, size_t len, char *dst,
			 size_t n);

/*
 * How long to wait before retry number @attempt + 1, in milliseconds:
 * exponential backoff from opts->backoff_ms (capped at 8 s) scaled by a
 * jitter factor taken from @rnd, or for a 429 what RateLimit or
 * Retry-After asks for, capped at opts->max_wait_s.
 */
unsigned int hub_wait_ms(const struct hubfs_hub_opts *opts,
			 unsigned int attempt, long status,
			 const char *ratelimit, const char *retry_after,
			 uint32_t rnd);

/* Copy @len bytes of untrusted text into @dst as printable ASCII,
 * escaping the rest, cut to fit. */
void hub_printable(char *dst, size_t n, const char *s, size_t len);

/* --- JSON helpers (parse.c), shared with parse_write.c ----------------- */

/* Parse @data, which must be a JSON @type; NULL with the detail set. */
json_t *hub_json_load(const char *data, size_t len, json_type type,
		      const char *what);

/* The string value of @key in @obj, with its length, or NULL. */
const char *hub_json_str(json_t *obj, const char *key, size_t *len);

/* @key as exactly @n hex digits, lowercased into @dst (@n + 1 bytes). */
bool hub_json_hex(json_t *obj, const char *key, char *dst, size_t n);

/* @key as a size in [0, HUBFS_SIZE_MAX], or false. */
bool hub_json_size(json_t *obj, const char *key, uint64_t *out);

/* Log that item @i of @what was skipped, naming its @key, and why. */
void hub_warn_skipped(const char *what, size_t i, json_t *item,
		      const char *key, const char *why);

/* --- Writing: encoders and parsers (parse_write.c) --------------------- */

/* Characters base64 makes of @n bytes, padding included. */
static inline size_t hub_base64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

/* Encode @n bytes as base64 into @dst: hub_base64_len(@n) characters,
 * no NUL. */
void hub_base64_encode(char *dst, const void *src, size_t n);

/*
 * Append @s (@len bytes) as a JSON string, quotes included.  -EINVAL if
 * it is not valid UTF-8 (JSON text cannot carry such bytes) or holds a
 * NUL; -EFBIG, -ENOMEM as hubfs_buf_append().
 */
int hub_json_put_string(struct hubfs_buf *out, const char *s, size_t len);

/* The preupload request for @n files: paths, sizes, samples, and
 * "gitAttributes" when @gitattributes is not NULL.  -EINVAL as
 * hub_json_put_string(). */
int hub_preupload_body(struct hubfs_buf *out,
		       const struct hubfs_hub_upload_file *files, size_t n,
		       const char *gitattributes);

/*
 * Apply a preupload answer to @files: each file gets the answer whose
 * "path" is its own (answers about other paths are ignored); a 0-byte
 * file is regular whatever the answer says.  -EIO, with nothing changed,
 * if the answer is malformed or leaves a file unanswered.
 */
int hub_parse_preupload(const char *data, size_t len,
			struct hubfs_hub_upload_file *files, size_t n);

/* The LFS batch request: upload of @n objects to @branch. */
int hub_lfs_batch_body(struct hubfs_buf *out,
		       const struct hubfs_hub_lfs_object *objs, size_t n,
		       const char *branch);

/* What the Hub asks for to store one object. */
struct hub_lfs_action {
	bool upload;		/* false: the Hub has it; nothing else set */
	char *href;		/* basic: the PUT URL; multipart: the
				 * completion URL */
	char **headers;		/* "Name: value" lines for each PUT,
				 * NULL-terminated, never Authorization */
	uint64_t chunk_size;	/* multipart part size; 0: basic */
	char **parts;		/* multipart: URL of part i + 1 at [i] */
	size_t nparts;
	char *verify;		/* the verify URL, or NULL */
	char **verify_headers;	/* as headers, for the verify call */
};

/*
 * Match an LFS batch answer to @objs (by oid): *@out receives one action
 * per object, to free with hub_lfs_actions_free(@n).  Checked: every
 * object is answered, with its own size if one is given; a per-object
 * "error" fails the call with a detail naming the object; URLs are
 * absolute http(s); header names are tokens and values printable; a
 * multipart answer ("chunk_size" in the upload header) numbers its parts
 * 1 to ceil(size / chunk_size), each once.  -EIO otherwise, -ENOMEM.
 */
int hub_parse_lfs_batch(struct hub_lfs_action **out, const char *data,
			size_t len, const struct hubfs_hub_lfs_object *objs,
			size_t n);

/* Free @n actions from hub_parse_lfs_batch().  Accepts NULL. */
void hub_lfs_actions_free(struct hub_lfs_action *actions, size_t n);

/* The multipart completion request: @oid and the ETag of each part. */
int hub_lfs_complete_body(struct hubfs_buf *out, const char *oid,
			  char *const *etags, size_t nparts);

/* The verify request. */
int hub_lfs_verify_body(struct hubfs_buf *out, const char *oid,
			uint64_t size);

/* The commit answer's "commitOid", 40 hex digits, lowercased into @out.
 * -EIO if the answer is malformed or has none. */
int hub_parse_commit(const char *data, size_t len, char out[41]);

/*
 * Hand each valid commit of one listing page to @cb, at most *@left of
 * them (decremented for each); invalid entries are skipped with a
 * warning and counted in *@skipped if not NULL.  -EIO if the page is not
 * a JSON array; @cb's non-zero return stops and is returned.
 */
int hub_parse_commits(const char *data, size_t len, hubfs_hub_commit_cb cb,
		      void *arg, unsigned int *left, size_t *skipped);

#endif /* HUBFS_HUB_INT_H */
