/*
 * Types and functions private to the Hub client (src/hub/).
 *
 * The pure helpers (parsers, encoders, the error table, the wait
 * computation) take plain bytes and return 0 or -errno, so the unit tests
 * and the fuzzers call them directly, without a network.  The request
 * layer (hub.c) is shared by the metadata calls (hub.c) and the ranged
 * reads (read.c).
 */
#ifndef HUBFS_HUB_INT_H
#define HUBFS_HUB_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

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

	struct {
		atomic_uint_fast64_t requests, retries, throttled, bytes;
		atomic_uint_fast64_t locates;
	} stats;
};

/* --- One HTTP exchange (hub.c) -------------------------------------------- */

struct hub_errctx {
	const char *repo;		/* "models/ns/name" */
	const char *rev;		/* the revision asked for, or NULL */
	const char *path;		/* the file asked for, or NULL */
	const char *url;		/* what was asked (shown redacted) */
	bool cdn;			/* the answer is from another origin */
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

struct hub_req {
	const char *method;		/* "GET" or "HEAD" */
	const char *url;		/* absolute */
	bool auth;			/* send the token, if url is ours */
	bool json;			/* Accept JSON; allow compression */
	bool locate;			/* count as a locate in the stats */
	const char *range;		/* "a-b": Range: bytes=a-b; or NULL */
	struct hubfs_buf *body;		/* a 2xx body, capped; or NULL */
	hub_headers_fn on_headers;	/* or NULL */
	hub_data_fn on_data;		/* a 2xx body, instead of body */
	void *arg;
};

struct hub_resp {
	long status;			/* 0 until a status line arrived */
	bool retry;			/* on failure: worth another attempt */
	bool link_bad;			/* a Link header did not fit or was
					 * not plain text */
	char location[HUB_URL_MAX];	/* absolute redirect target, or "" */
	char link[HUB_LINK_MAX];
	char content_range[HUB_HDR_MAX];
	char error_code[HUB_HDR_MAX];	/* X-Error-Code */
	char error_message[HUB_HDR_MAX]; /* X-Error-Message, or body "error" */
	char retry_after[HUB_HDR_MAX];
	char ratelimit[HUB_HDR_MAX];
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
 * @final_url, if not NULL, receives the URL that gave the answer.
 */
int hub_call(struct hubfs_hub *hub, const struct hub_req *req,
	     const struct hub_errctx *ctx, struct hub_resp *resp,
	     struct hubfs_buf *final_url);

/* A zeroed response on the heap (it is too large for a small stack);
 * free with hubfs_free().  NULL with the detail set if out of memory. */
struct hub_resp *hub_resp_new(void);

struct hub_retry {
	unsigned int attempt;		/* retries made so far */
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

#endif /* HUBFS_HUB_INT_H */
