/*
 * The Hub client: the client object, the request layer, and the metadata
 * calls (revision, refs, tree).  Ranged reads are in read.c, writes in
 * write.c.
 *
 * DESIGN
 *
 * What a client owns.  A struct hubfs_hub is bound to one repository on
 * one endpoint.  It owns copies of every string it was given, the token
 * (wiped on free), a CURLSH that shares DNS answers, TLS sessions and
 * live connections between its easy handles, a pool of idle easy handles,
 * the signed-URL cache (read.c) and the counters.
 *
 * Threads.  Any number of threads may call in at once.  Each request
 * borrows an easy handle from the pool (or makes one) for its duration,
 * so a handle is used by one thread at a time (libcurl-thread.3).  The
 * share is protected by one mutex per curl_lock_data, taken and released
 * by libcurl through share_lock()/share_unlock().  pool_lock and url_lock
 * are leaf locks held for a few instructions; no lock of ours is held
 * while a request runs.  The counters are atomics.  CURLOPT_NOSIGNAL is
 * set on every handle; curl_global_init() is the program's job (main.c,
 * or a test's main), before any thread starts.
 *
 * One request, hub_exchange().  Builds the headers, runs the transfer
 * and classifies the outcome, whatever the status:
 *   - the token is attached here and only here, and only when the URL's
 *     origin (scheme, host, port) is the endpoint's: a signed CDN URL or a
 *     redirect to another host never sees it, whatever the caller asked;
 *   - redirects are never followed by libcurl; the absolute target
 *     (CURLINFO_REDIRECT_URL) is handed back so the caller decides;
 *   - the header callback keeps the few headers the client uses, each
 *     cut to a fixed size, and calls the request's on_headers hook once
 *     the headers of the final response are in, so the read path can
 *     refuse a response before a single body byte is accepted;
 *   - a 2xx body goes to on_data or to a capped buffer (-EFBIG past the
 *     cap); any other body is kept, cut at 4 KiB, for its message;
 *   - a request body (POST, PUT) comes from memory or from a stream read
 *     through CURLOPT_READFUNCTION as libcurl sends it, so an upload
 *     never sits in memory whole.  The stream is rewound before every
 *     exchange, and on libcurl's own request (CURLOPT_SEEKFUNCTION, when
 *     it resends on a fresh connection), so every attempt sends the whole
 *     body.  A stream that ends before or after its announced size fails
 *     the exchange rather than let a short body look like a whole one.
 *     No "Expect: 100-continue" is sent, as huggingface_hub (httpx) sends
 *     none: a server that ignores it would cost a second per request;
 *   - every transfer has a connect timeout and a low-speed limit (below
 *     1 byte/s for low_speed_timeout_s aborts it), so none hangs; a zero
 *     in the options means the default, never "no limit".
 *
 * The retry policy, hub_call() and hub_retry_wait().  A failure is
 * retried when the error table (errmap.c) says so: 5xx, 408, 429, resets,
 * timeouts, short bodies.  The wait before retry n (from 0) is
 * backoff_ms * 2^n, capped at 8 s, scaled by a random factor in
 * [0.75, 1.25); for a 429 it is what "RateLimit: ...;r=0;t=N" (N + 1 s)
 * or else "Retry-After: N" asks for, capped at max_wait_s.  A connection
 * to the endpoint's origin that cannot be made (refused, no route) is
 * retried like the rest until one request has used up its retries; the
 * Hub then counts as unreachable, and such failures are not retried
 * until it answers again or HUB_UNREACHABLE_HOLD_MS after the last of
 * them.  Offline, every lookup would otherwise wait out the whole
 * backoff (about 15 s) before the caller may fall back on what the cache
 * remembers; each request still makes one attempt, so a Hub that comes
 * back is found by the first one after.  Other origins (the CDN, upload
 * URLs) keep their retries.
 *
 * hub_call() also follows redirects to the endpoint's own origin (renamed
 * repos, /api/resolve-cache/), keeping the token, at most HUB_MAX_HOPS of
 * them; it stops at a redirect to another origin and returns it.  A
 * request with a body follows only 307 and 308: the others turn a POST
 * into a GET in browsers and in libcurl, so what the server meant is
 * unclear.
 *
 * Tracing.  With opts.trace every exchange is logged at LOG_DEBUG after
 * the transfer: method, URL through hubfs_log_redact() (which drops query
 * strings, hence signatures and cursors), range, status, bytes, time, and
 * whether the token was sent.  The token itself is never formatted
 * anywhere.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "hub_int.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

#define HUB_USER_AGENT "hubfs"
#define HUB_BUFFER_SIZE (256L * 1024)
/*
 * Idle connections kept in the share.  curl_easy_perform() applies each
 * handle's CURLOPT_MAXCONNECTS (default 5) to the shared cache: with more
 * transfers than that at once (fetch workers, FUSE threads, uploads) every
 * finished transfer closed an idle connection and the next one opened a
 * new one, so a cold sequential read made one TCP (and TLS) handshake per
 * range request.
 */
#define HUB_MAX_CONNECTS 64L

/* --- Small helpers -------------------------------------------------------- */

static const char *const type_plural[] = {
	[HUBFS_REPO_MODEL] = "models",
	[HUBFS_REPO_DATASET] = "datasets",
	[HUBFS_REPO_SPACE] = "spaces",
};

/* The prefix of file URLs (/resolve/): none for models. */
static const char *const type_prefix[] = {
	[HUBFS_REPO_MODEL] = "",
	[HUBFS_REPO_DATASET] = "datasets/",
	[HUBFS_REPO_SPACE] = "spaces/",
};

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Sleep @ms, or less once *@cancel is set (looked at every 50 ms). */
static void sleep_unless(unsigned int ms, const atomic_bool *cancel)
{
	while (ms > 0 && !(cancel && atomic_load(cancel))) {
		unsigned int step = !cancel || ms < 50 ? ms : 50;

		sleep_ms(step);
		ms -= step;
	}
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A per-thread xorshift generator for jitter; not for secrets. */
static uint32_t jitter_random(void)
{
	static _Thread_local uint32_t state;
	uint32_t x = state;

	if (x == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint32_t)ts.tv_nsec ^ (uint32_t)(uintptr_t)&state ^
		    (uint32_t)getpid();
		if (x == 0)
			x = 0x9e3779b9u;
	}
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	state = x;
	return x;
}

/* A namespace or name: 1 to 96 of [A-Za-z0-9_.-], no "..". */
static bool repo_segment_ok(const char *s)
{
	size_t len = s ? strlen(s) : 0;

	if (len == 0 || len > 96 || strstr(s, ".."))
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz"
			 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == len;
}

/* A token fit for a header: printable ASCII, no spaces. */
static bool token_ok(const char *t)
{
	size_t len = strlen(t);

	if (len == 0 || len > 4096)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (t[i] <= 0x20 || t[i] >= 0x7f)
			return false;
	}
	return true;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		hubfs_free(s);
	}
}

/* --- Origins -------------------------------------------------------------- */

int hub_origin_parse(struct hub_origin *out, const char *url)
{
	struct hub_origin o = { 0 };
	char *scheme = NULL, *host = NULL, *port = NULL;
	CURLU *u = curl_url();
	int err = -EINVAL;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
		    CURLUE_OK)
		goto out;
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
		goto out;
	if (!*host || strlen(host) >= sizeof(o.host))
		goto out;
	for (size_t i = 0; scheme[i]; i++)
		o.scheme[i] = (char)tolower((unsigned char)scheme[i]);
	for (size_t i = 0; host[i]; i++)
		o.host[i] = (char)tolower((unsigned char)host[i]);
	o.port = strtol(port, NULL, 10);
	*out = o;
	err = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return err;
}

bool hub_same_origin(const struct hubfs_hub *hub, const char *url)
{
	struct hub_origin o;

	if (hub_origin_parse(&o, url) != 0)
		return false;
	return strcmp(o.scheme, hub->origin.scheme) == 0 &&
	       strcmp(o.host, hub->origin.host) == 0 &&
	       o.port == hub->origin.port;
}

/* --- The share and the handle pool ---------------------------------------- */

static void share_lock(CURL *handle, curl_lock_data data,
		       curl_lock_access access, void *p)
	HUBFS_NO_THREAD_SAFETY_ANALYSIS
{
	struct hubfs_hub *hub = p;

	(void)handle;
	(void)access;
	assert(data < CURL_LOCK_DATA_LAST);
	hubfs_mutex_lock(&hub->share_locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *p)
	HUBFS_NO_THREAD_SAFETY_ANALYSIS
{
	struct hubfs_hub *hub = p;

	(void)handle;
	hubfs_mutex_unlock(&hub->share_locks[data]);
}

static CURL *handle_get(struct hubfs_hub *hub)
{
	CURL *c = NULL;

	hubfs_mutex_lock(&hub->pool_lock);
	if (hub->pool_len)
		c = hub->pool[--hub->pool_len];
	hubfs_mutex_unlock(&hub->pool_lock);
	return c ? c : curl_easy_init();
}

static void handle_put(struct hubfs_hub *hub, CURL *c)
{
	/*
	 * Drop the options now: they point at the finished request's stack
	 * (error buffer, callbacks' data) and header list.  A reset keeps
	 * the handle's live connections and caches.
	 */
	curl_easy_reset(c);
	hubfs_mutex_lock(&hub->pool_lock);
	if (hub->pool_len < HUB_POOL_MAX) {
		hub->pool[hub->pool_len++] = c;
		c = NULL;
	}
	hubfs_mutex_unlock(&hub->pool_lock);
	curl_easy_cleanup(c);
}

/* --- One exchange --------------------------------------------------------- */

struct xfer {
	struct hubfs_hub *hub;
	const struct hub_req *req;
	struct hub_resp *resp;
	int cb_err;		/* why a callback aborted, or 0 */
	bool final;		/* the final response's headers are in */
	uint64_t sent;		/* request body bytes handed to libcurl */
};

static void resp_clear_headers(struct hub_resp *r)
{
	r->status = 0;
	r->link_bad = false;
	r->location[0] = r->link[0] = r->content_range[0] = '\0';
	r->error_code[0] = r->error_message[0] = '\0';
	r->retry_after[0] = r->ratelimit[0] = '\0';
	r->etag[0] = '\0';
	r->etag_bad = false;
	r->errbody_len = 0;
	r->errbody[0] = '\0';
}

/* "HTTP/1.1 206 Partial Content" or "HTTP/2 206": the status, or 0. */
static long status_of(const char *line, size_t n)
{
	const char *sp = memchr(line, ' ', n);
	size_t i;
	long v = 0;

	if (!sp)
		return 0;
	i = (size_t)(sp - line) + 1;
	if (i + 3 > n)
		return 0;
	for (size_t k = i; k < i + 3; k++) {
		if (line[k] < '0' || line[k] > '9')
			return 0;
		v = v * 10 + (line[k] - '0');
	}
	return v;
}

static void keep_header(char *dst, size_t n, const char *v, size_t len)
{
	hub_printable(dst, n, v, len);
}

/*
 * Keep an ETag verbatim: it goes back to the server in a multipart
 * completion, where an escaped or cut copy would not match.  One that
 * does not fit or is not plain text is marked bad instead.
 */
static void keep_etag(struct hub_resp *r, const char *v, size_t len)
{
	r->etag_bad = len >= sizeof(r->etag);
	for (size_t i = 0; i < len && !r->etag_bad; i++) {
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f)
			r->etag_bad = true;
	}
	if (r->etag_bad) {
		r->etag[0] = '\0';
		return;
	}
	memcpy(r->etag, v, len);
	r->etag[len] = '\0';
}

/*
 * Add one Link header to what is kept, comma-separated.  A header that
 * does not fit, or holds a byte no URL may hold, spoils the lot: a cut
 * or rewritten URL could still look valid.
 */
static void keep_link(struct hub_resp *r, const char *v, size_t len)
{
	size_t have = strlen(r->link);

	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f)
			r->link_bad = true;
	}
	if (have + len + 3 > sizeof(r->link))
		r->link_bad = true;
	if (r->link_bad)
		return;
	if (have) {
		memcpy(r->link + have, ", ", 2);
		have += 2;
	}
	memcpy(r->link + have, v, len);
	r->link[have + len] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nitems, void *p)
{
	struct xfer *x = p;
	struct hub_resp *r = x->resp;
	size_t len = size * nitems, n = len, name_len, vlen;
	const char *colon, *v;

	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		resp_clear_headers(r);
		r->status = status_of(line, n);
		x->final = false;
		return len;
	}
	if (n == 0) {
		/* The end of a header block; 1xx blocks do not count. */
		if (r->status >= 200 && !x->final) {
			x->final = true;
			if (x->req->on_headers) {
				x->cb_err = x->req->on_headers(x->req->arg, r);
				if (x->cb_err)
					return 0;
			}
		}
		return len;
	}
	colon = memchr(line, ':', n);
	if (!colon)
		return len;
	name_len = (size_t)(colon - line);
	v = colon + 1;
	while (v < line + n && (*v == ' ' || *v == '\t'))
		v++;
	vlen = (size_t)(line + n - v);
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
#define IS(h) (name_len == strlen(h) && strncasecmp(line, h, name_len) == 0)
	if (IS("content-range"))
		keep_header(r->content_range, sizeof(r->content_range), v,
			    vlen);
	else if (IS("link"))
		keep_link(r, v, vlen);
	else if (IS("x-error-code"))
		keep_header(r->error_code, sizeof(r->error_code), v, vlen);
	else if (IS("x-error-message"))
		keep_header(r->error_message, sizeof(r->error_message), v,
			    vlen);
	else if (IS("retry-after"))
		keep_header(r->retry_after, sizeof(r->retry_after), v, vlen);
	else if (IS("ratelimit"))
		keep_header(r->ratelimit, sizeof(r->ratelimit), v, vlen);
	else if (IS("etag"))
		keep_etag(r, v, vlen);
#undef IS
	return len;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *p)
{
	struct xfer *x = p;
	struct hub_resp *r = x->resp;
	const struct hub_req *req = x->req;
	size_t len = size * nmemb;
	int err = 0;

	atomic_fetch_add(&x->hub->stats.bytes, len);
	r->body_bytes += len;
	if (r->status >= 200 && r->status < 300) {
		if (req->on_data) {
			err = req->on_data(req->arg, r, data, len);
		} else if (req->body) {
			err = hubfs_buf_append(req->body, data, len);
			if (err == -EFBIG)
				hubfs_err_set("answer from the Hub is larger "
					      "than %zu bytes", req->body->cap);
			r->retry = false;
		}
	} else if (r->errbody_len < sizeof(r->errbody) - 1) {
		size_t room = sizeof(r->errbody) - 1 - r->errbody_len;
		size_t k = len < room ? len : room;

		memcpy(r->errbody + r->errbody_len, data, k);
		r->errbody_len += k;
		r->errbody[r->errbody_len] = '\0';
	}
	if (err) {
		x->cb_err = err;
		return CURL_WRITEFUNC_ERROR;
	}
	return len;
}

static bool has_body(const struct hub_req *req)
{
	return strcmp(req->method, "POST") == 0 ||
	       strcmp(req->method, "PUT") == 0;
}

static int64_t body_size(const struct hub_req *req)
{
	return req->stream ? req->stream->size : (int64_t)req->send_len;
}

/* The body of a POST or PUT, as libcurl asks for it. */
static size_t on_send(char *buf, size_t size, size_t nitems, void *p)
{
	struct xfer *x = p;
	const struct hub_req *req = x->req;
	int64_t total = body_size(req);
	size_t room = size * nitems, got = 0;
	int err = 0;

	if (req->stream) {
		err = req->stream->read(req->stream->arg, buf, room, &got);
		assert(err || got <= room);
	} else {
		got = req->send_len - (size_t)x->sent;
		got = got < room ? got : room;
		if (got)
			memcpy(buf, req->send + x->sent, got);
	}
	if (!err && total >= 0 &&
	    (got > (uint64_t)total - x->sent ||
	     (got == 0 && x->sent < (uint64_t)total))) {
		hubfs_err_set("the body of a request was %s than the %" PRId64
			      " bytes announced", got ? "longer" : "shorter",
			      total);
		err = -EIO;
	}
	if (err) {
		x->cb_err = err;
		x->resp->retry = false;
		return CURL_READFUNC_ABORT;
	}
	x->sent += got;
	atomic_fetch_add(&x->hub->stats.bytes_sent, got);
	return got;
}

static int body_rewind(struct xfer *x)
{
	const struct hub_req *req = x->req;
	int err = 0;

	if (req->stream && req->stream->rewind)
		err = req->stream->rewind(req->stream->arg);
	if (!err)
		x->sent = 0;
	return err;
}

/* libcurl rewinds a body only to its start, to send it again whole. */
static int on_seek(void *p, curl_off_t off, int origin)
{
	struct xfer *x = p;
	int err;

	if (origin != SEEK_SET || off != 0)
		return CURL_SEEKFUNC_CANTSEEK;
	err = body_rewind(x);
	if (err) {
		x->cb_err = err;
		x->resp->retry = false;
		return CURL_SEEKFUNC_FAIL;
	}
	return CURL_SEEKFUNC_OK;
}

static bool names_authorization(const char *line)
{
	static const char name[] = "authorization";
	size_t n = sizeof(name) - 1;

	return strncasecmp(line, name, n) == 0 &&
	       (line[n] == ':' || line[n] == ' ' || line[n] == '\t');
}

/* The request headers; NULL with -ENOMEM in *err. */
static struct curl_slist *make_headers(const struct hubfs_hub *hub,
				       const struct hub_req *req, bool auth,
				       int *err)
{
	struct curl_slist *list = NULL, *next;
	char range[80], accept[HUB_HDR_MAX], ctype[HUB_HDR_MAX];
	const char *lines[8];
	size_t n = 0;

	if (auth)
		lines[n++] = hub->auth_header;
	if (req->range) {
		snprintf(range, sizeof(range), "Range: bytes=%s", req->range);
		lines[n++] = range;
		/* A cache that may compress ignores Range (CloudFront does). */
		lines[n++] = "Accept-Encoding: identity";
	}
	if (req->accept) {
		snprintf(accept, sizeof(accept), "Accept: %s", req->accept);
		lines[n++] = accept;
	} else if (req->json) {
		lines[n++] = "Accept: application/json";
	}
	if (has_body(req)) {
		if (req->content_type) {
			snprintf(ctype, sizeof(ctype), "Content-Type: %s",
				 req->content_type);
			lines[n++] = ctype;
		} else {
			/* Not libcurl's form type for a POST. */
			lines[n++] = "Content-Type:";
		}
		lines[n++] = "Expect:";
	}
	for (size_t i = 0; req->headers && req->headers[i]; i++) {
		if (names_authorization(req->headers[i]))
			continue;
		next = curl_slist_append(list, req->headers[i]);
		if (!next)
			goto nomem;
		list = next;
	}
	for (size_t i = 0; i < n; i++) {
		next = curl_slist_append(list, lines[i]);
		if (!next)
			goto nomem;
		list = next;
	}
	*err = 0;
	return list;
nomem:
	curl_slist_free_all(list);
	*err = -ENOMEM;
	return NULL;
}

static void trace(const struct hubfs_hub *hub, const struct xfer *x,
		  bool auth, double ms, int err)
{
	const struct hub_req *req = x->req;
	const struct hub_resp *resp = x->resp;
	char url[512], sent[48] = "";

	if (!hub->opts.trace || !hubfs_log_enabled(LOG_DEBUG))
		return;
	hubfs_log_redact(url, sizeof(url), req->url);
	if (has_body(req))
		snprintf(sent, sizeof(sent), ", %" PRIu64 " sent", x->sent);
	hlog(LOG_DEBUG,
	     "hub: %s %s%s%s -> %ld, %" PRIu64 " bytes%s, %.1f ms%s%s%s",
	     req->method, url, req->range ? " bytes=" : "",
	     req->range ? req->range : "", resp->status, resp->body_bytes,
	     sent, ms, auth ? ", with token" : "", err ? ", failed: " : "",
	     err ? strerror(-err) : "");
}

int hub_exchange(struct hubfs_hub *hub, const struct hub_req *req,
		 struct hub_resp *resp)
{
	struct xfer x = { .hub = hub, .req = req, .resp = resp };
	struct hub_errctx ctx = { .repo = hub->repo_desc, .url = req->url };
	bool hub_origin = hub_same_origin(hub, req->url);
	bool auth = req->auth && hub->auth_header && hub_origin;
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *headers;
	double t0 = now_ms();
	CURLcode rc;
	CURL *c;
	int err;

	resp_clear_headers(resp);
	resp->retry = false;
	resp->unreachable = false;
	resp->body_bytes = 0;
	c = handle_get(hub);
	if (!c) {
		hubfs_err_set("out of memory");
		return -ENOMEM;
	}
	if (has_body(req)) {
		/* Every attempt sends the whole body, from its first byte. */
		err = body_rewind(&x);
		if (err)
			goto out_put;
	}
	headers = make_headers(hub, req, auth, &err);
	if (err) {
		hubfs_err_set("out of memory");
		goto out_put;
	}
	curl_easy_setopt(c, CURLOPT_SHARE, hub->share);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)hub->opts.connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
			 (long)hub->opts.low_speed_timeout_s);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_MAXCONNECTS, HUB_MAX_CONNECTS);
	curl_easy_setopt(c, CURLOPT_USERAGENT, HUB_USER_AGENT);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, HUB_BUFFER_SIZE);
	if (strcmp(req->method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (has_body(req)) {
		curl_off_t size = (curl_off_t)body_size(req);

		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_send);
		curl_easy_setopt(c, CURLOPT_READDATA, &x);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, &x);
		if (strcmp(req->method, "PUT") == 0) {
			curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, size);
		} else {
			curl_easy_setopt(c, CURLOPT_POST, 1L);
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, size);
		}
	}
	if (req->json)		/* bodies are capped after decoding */
		curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
	if (curl_easy_setopt(c, CURLOPT_URL, req->url) != CURLE_OK) {
		hubfs_err_set("URL too long or invalid");
		err = -EINVAL;
		goto out_free_headers;
	}

	rc = curl_easy_perform(c);
	atomic_fetch_add(&hub->stats.requests, 1);
	if (hub_origin && (rc == CURLE_OK || resp->status))
		/* Whatever the answer, the Hub is reachable. */
		atomic_store(&hub->answered_at, (int64_t)now_ms());
	if (req->locate)
		atomic_fetch_add(&hub->stats.locates, 1);
	if (resp->status == 429)
		atomic_fetch_add(&hub->stats.throttled, 1);
	if (x.cb_err) {
		err = x.cb_err;		/* the callback set retry and detail */
	} else if (rc != CURLE_OK) {
		err = hub_errmap_curl(&ctx, rc, errbuf, &resp->retry);
		resp->unreachable = hub_origin && rc == CURLE_COULDNT_CONNECT;
		resp->failed_at = (int64_t)now_ms();
	} else {
		char *loc = NULL;
		long code = 0;

		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		resp->status = code;
		if (code >= 300 && code < 400 &&
		    curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) ==
			    CURLE_OK && loc) {
			if (strlen(loc) >= sizeof(resp->location)) {
				hubfs_err_set("redirect target too long");
				err = -EIO;
				goto out_free_headers;
			}
			strcpy(resp->location, loc);
		}
		if ((code < 200 || code >= 300) && !resp->error_message[0] &&
		    resp->errbody_len)
			hub_parse_error_body(resp->errbody, resp->errbody_len,
					     resp->error_message,
					     sizeof(resp->error_message));
		err = 0;
	}
out_free_headers:
	trace(hub, &x, auth, now_ms() - t0, err);
	curl_slist_free_all(headers);
out_put:
	handle_put(hub, c);
	return err;
}

/* --- Retries -------------------------------------------------------------- */

/* How long a server found unreachable stays so for the retry policy. */
#define HUB_UNREACHABLE_HOLD_MS 60000

bool hub_retry_wait(struct hubfs_hub *hub, struct hub_retry *rt,
		    const struct hub_resp *resp)
{
	unsigned int ms;

	if (resp->unreachable &&
	    resp->failed_at > atomic_load(&hub->answered_at)) {
		int64_t now = (int64_t)now_ms();
		int64_t since = atomic_load(&hub->unreachable_at);
		bool held = since > atomic_load(&hub->answered_at) &&
			    now < since + HUB_UNREACHABLE_HOLD_MS;

		if (held || rt->attempt >= hub->opts.retries) {
			atomic_store(&hub->unreachable_at, now);
			if (hub->opts.trace)
				hlog(LOG_DEBUG, "hub: not retried: the Hub is "
				     "unreachable (%s)",
				     hubfs_err_get() ? hubfs_err_get() : "");
			return false;
		}
	}
	if (rt->attempt >= hub->opts.retries)
		return false;
	ms = hub_wait_ms(&hub->opts, rt->attempt, resp->status,
			 resp->ratelimit[0] ? resp->ratelimit : NULL,
			 resp->retry_after[0] ? resp->retry_after : NULL,
			 jitter_random());
	rt->attempt++;
	atomic_fetch_add(&hub->stats.retries, 1);
	if (hub->opts.trace)
		hlog(LOG_DEBUG, "hub: retry %u of %u in %u ms (%s)",
		     rt->attempt, hub->opts.retries, ms,
		     hubfs_err_get() ? hubfs_err_get() : "");
	sleep_unless(ms, rt->cancel);
	/* Cut short: hub_call() stops before the retry, so none was made. */
	if (rt->cancel && atomic_load(rt->cancel))
		atomic_fetch_sub(&hub->stats.retries, 1);
	return true;
}

int hub_call(struct hubfs_hub *hub, const struct hub_req *req0,
	     const struct hub_errctx *ctx0, struct hub_resp *resp,
	     struct hubfs_buf *final_url)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hub_req req = *req0;
	struct hub_errctx ctx = *ctx0;
	struct hub_retry rt = { .cancel = req0->cancel };
	unsigned int hops = 0;
	int err;

	err = hubfs_buf_puts(&url, req0->url);
	if (err) {
		hubfs_err_set("URL too long");
		goto out;
	}
	for (;;) {
		if (req.cancel && atomic_load(req.cancel)) {
			hubfs_err_set("stopped");
			err = -ECANCELED;
			break;
		}
		req.url = hubfs_buf_str(&url);
		ctx.url = req.url;
		ctx.cdn = !hub_same_origin(hub, req.url);
		if (req.body)
			hubfs_buf_reset(req.body);
		err = hub_exchange(hub, &req, resp);
		if (!err) {
			long st = resp->status;

			if (st >= 200 && st < 300)
				break;
			if (st >= 300 && st < 400 && resp->location[0] &&
			    (!has_body(&req) || st == 307 || st == 308)) {
				if (!hub_same_origin(hub, resp->location))
					break;	/* the caller's to follow */
				if (++hops > HUB_MAX_HOPS) {
					hubfs_err_set("too many redirects");
					err = -EIO;
					break;
				}
				hubfs_buf_reset(&url);
				err = hubfs_buf_puts(&url, resp->location);
				if (err)
					break;
				continue;
			}
			err = hub_errmap_status(&ctx, st, resp->error_code,
						resp->error_message,
						&resp->retry);
		}
		if (!resp->retry || !hub_retry_wait(hub, &rt, resp))
			break;
	}
	if (!err && final_url)
		err = hubfs_buf_puts(final_url, hubfs_buf_str(&url));
out:
	hubfs_buf_free(&url);
	return err;
}

/* --- The client ----------------------------------------------------------- */

static int check_opts(const struct hubfs_hub_opts *opts)
{
	if (!opts || !opts->endpoint) {
		hubfs_err_set("no Hub endpoint given");
		return -EINVAL;
	}
	if ((unsigned int)opts->repo_type > HUBFS_REPO_SPACE) {
		hubfs_err_set("invalid repository type");
		return -EINVAL;
	}
	if (!repo_segment_ok(opts->repo_namespace) ||
	    !repo_segment_ok(opts->repo_name)) {
		hubfs_err_set("invalid repository name");
		return -EINVAL;
	}
	if (opts->token && !token_ok(opts->token)) {
		hubfs_err_set("the token holds characters a header cannot");
		return -EINVAL;
	}
	if (strpbrk(opts->endpoint, "?#@") || strlen(opts->endpoint) > 1024) {
		hubfs_err_set("invalid Hub endpoint");
		return -EINVAL;
	}
	return 0;
}

/* Build the strings of @hub from @opts. */
static int hub_fill(struct hubfs_hub *hub, const struct hubfs_hub_opts *o)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(HUB_URL_MAX);
	size_t len = strlen(o->endpoint);
	int err;

	while (len && o->endpoint[len - 1] == '/')
		len--;
	hub->endpoint = hubfs_strndup(o->endpoint, len);
	if (!hub->endpoint)
		return -ENOMEM;
	if (hub_origin_parse(&hub->origin, hub->endpoint) != 0) {
		hubfs_err_set("Hub endpoint is not an http(s) URL");
		return -EINVAL;
	}
	err = hubfs_buf_printf(&b, "%s/%s/%s", type_plural[o->repo_type],
			       o->repo_namespace, o->repo_name);
	err = err ? err : hubfs_buf_detach(&hub->repo_desc, &b);
	err = err ? err : hubfs_buf_printf(&b, "%s/api/%s/%s/%s",
					  hub->endpoint,
					  type_plural[o->repo_type],
					  o->repo_namespace, o->repo_name);
	err = err ? err : hubfs_buf_detach(&hub->api_base, &b);
	err = err ? err : hubfs_buf_printf(&b, "%s/%s%s/%s", hub->endpoint,
					  type_prefix[o->repo_type],
					  o->repo_namespace, o->repo_name);
	err = err ? err : hubfs_buf_detach(&hub->file_base, &b);
	if (!err && o->token) {
		hub->token = hubfs_strdup(o->token);
		err = hub->token ? hubfs_buf_printf(&b, "Authorization: "
						    "Bearer %s", o->token)
				 : -ENOMEM;
		err = err ? err : hubfs_buf_detach(&hub->auth_header, &b);
	}
	if (b.data)
		explicit_bzero(b.data, b.alloc);
	hubfs_buf_free(&b);
	if (err)
		hubfs_err_set("out of memory");
	return err;
}

static int share_init(struct hubfs_hub *hub)
{
	CURLSHcode rc;

	hub->share = curl_share_init();
	if (!hub->share)
		return -ENOMEM;
	rc = curl_share_setopt(hub->share, CURLSHOPT_LOCKFUNC, share_lock);
	if (rc == CURLSHE_OK)
		rc = curl_share_setopt(hub->share, CURLSHOPT_UNLOCKFUNC,
				       share_unlock);
	if (rc == CURLSHE_OK)
		rc = curl_share_setopt(hub->share, CURLSHOPT_USERDATA, hub);
	if (rc == CURLSHE_OK)
		rc = curl_share_setopt(hub->share, CURLSHOPT_SHARE,
				       CURL_LOCK_DATA_DNS);
	if (rc == CURLSHE_OK)
		rc = curl_share_setopt(hub->share, CURLSHOPT_SHARE,
				       CURL_LOCK_DATA_SSL_SESSION);
	if (rc == CURLSHE_OK)
		rc = curl_share_setopt(hub->share, CURLSHOPT_SHARE,
				       CURL_LOCK_DATA_CONNECT);
	return rc == CURLSHE_OK ? 0 : -ENOMEM;
}

int hubfs_hub_new(struct hubfs_hub **out, const struct hubfs_hub_opts *opts)
{
	static const struct hubfs_hub_opts dflt = HUBFS_HUB_OPTS_INIT;
	struct hubfs_hub *hub;
	int err;

	err = check_opts(opts);
	if (err)
		return err;
	hub = hubfs_calloc(1, sizeof(*hub));
	if (!hub) {
		hubfs_err_set("out of memory");
		return -ENOMEM;
	}
	hub->pool_lock = (struct hubfs_mutex)HUBFS_MUTEX_INIT;
	hub->url_lock = (struct hubfs_mutex)HUBFS_MUTEX_INIT;
	pthread_cond_init(&hub->url_located, NULL);
	for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
		hub->share_locks[i] = (struct hubfs_mutex)HUBFS_MUTEX_INIT;
	err = hub_fill(hub, opts);
	if (err)
		goto out_free_hub;
	err = share_init(hub);
	if (err) {
		hubfs_err_set("cannot set up the connection cache");
		goto out_free_hub;
	}
	hub->opts = *opts;
	hub->opts.endpoint = hub->endpoint;
	hub->opts.token = NULL;		/* only in hub->token */
	hub->opts.repo_namespace = NULL;	/* only in the URLs */
	hub->opts.repo_name = NULL;
	/* Zero would mean "no limit" to libcurl; nothing may hang. */
	if (!hub->opts.connect_timeout_ms)
		hub->opts.connect_timeout_ms = dflt.connect_timeout_ms;
	if (!hub->opts.low_speed_timeout_s)
		hub->opts.low_speed_timeout_s = dflt.low_speed_timeout_s;
	*out = hub;
	return 0;
out_free_hub:
	hubfs_hub_free(hub);
	return err;
}

void hubfs_hub_free(struct hubfs_hub *hub)
{
	if (!hub)
		return;
	hubfs_mutex_lock(&hub->pool_lock);
	for (unsigned int i = 0; i < hub->pool_len; i++)
		curl_easy_cleanup(hub->pool[i]);
	hub->pool_len = 0;
	hubfs_mutex_unlock(&hub->pool_lock);
	/* After every easy handle that used it. */
	if (hub->share)
		curl_share_cleanup(hub->share);
	hub_urls_clear(hub);
	wipe_free(hub->token);
	wipe_free(hub->auth_header);
	hubfs_free(hub->endpoint);
	hubfs_free(hub->repo_desc);
	hubfs_free(hub->api_base);
	hubfs_free(hub->file_base);
	hubfs_mutex_destroy(&hub->pool_lock);
	hubfs_mutex_destroy(&hub->url_lock);
	pthread_cond_destroy(&hub->url_located);
	for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
		hubfs_mutex_destroy(&hub->share_locks[i]);
	hubfs_free(hub);
}

void hubfs_hub_get_stats(struct hubfs_hub *hub, struct hubfs_hub_stats *out)
{
	struct hubfs_hub_stats s = {
		.requests = atomic_load(&hub->stats.requests),
		.retries = atomic_load(&hub->stats.retries),
		.throttled = atomic_load(&hub->stats.throttled),
		.bytes = atomic_load(&hub->stats.bytes),
		.locates = atomic_load(&hub->stats.locates),
		.bytes_sent = atomic_load(&hub->stats.bytes_sent),
		.commits = atomic_load(&hub->stats.commits),
	};

	*out = s;
}

/* --- Metadata calls ------------------------------------------------------- */

struct hub_resp *hub_resp_new(void)
{
	struct hub_resp *r = hubfs_calloc(1, sizeof(*r));

	if (!r)
		hubfs_err_set("out of memory");
	return r;
}

int hub_get_json(struct hubfs_hub *hub, const struct hubfs_buf *url,
		 int url_err, const struct hub_errctx *ctx,
		 struct hubfs_buf *body, struct hub_resp **resp)
{
	struct hub_req req = { .method = "GET", .url = hubfs_buf_str(url),
			       .auth = true, .json = true, .body = body };
	int err;

	if (url_err) {
		hubfs_err_set(url_err == -ENOMEM ? "out of memory"
						 : "request URL too long");
		return url_err;
	}
	if (!*resp) {
		*resp = hub_resp_new();
		if (!*resp)
			return -ENOMEM;
	}
	err = hub_call(hub, &req, ctx, *resp, NULL);
	if (!err && ((*resp)->status < 200 || (*resp)->status >= 300)) {
		hubfs_err_set("the Hub redirected an API call to another "
			      "origin (HTTP %ld)", (*resp)->status);
		err = -EIO;
	}
	return err;
}

int hub_check_rev(const char *rev)
{
	if (!rev || !*rev || strlen(rev) > HUBFS_PATH_MAX) {
		hubfs_err_set("invalid revision");
		return -EINVAL;
	}
	return 0;
}

int hubfs_hub_get_revision(struct hubfs_hub *hub, const char *rev,
			   struct hubfs_hub_revision *out)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hubfs_buf body = HUBFS_BUF_INIT(HUB_JSON_MAX);
	struct hub_errctx ctx = { .repo = hub->repo_desc, .rev = rev };
	struct hub_resp *resp = NULL;
	int err;

	if (rev && hub_check_rev(rev))
		return -EINVAL;
	err = hubfs_buf_puts(&url, hub->api_base);
	if (!err && rev) {
		err = hubfs_buf_puts(&url, "/revision/");
		err = err ? err : hub_url_put_segment(&url, rev);
	}
	/* Only what we use: the sha and its date, not the file list. */
	err = err ? err : hubfs_buf_puts(&url, "?expand=sha"
					      "&expand=lastModified"
					      "&expand=gated");
	err = hub_get_json(hub, &url, err, &ctx, &body, &resp);
	if (!err)
		err = hub_parse_revision(body.data, body.len, out);
	hubfs_free(resp);
	hubfs_buf_free(&body);
	hubfs_buf_free(&url);
	return err;
}

int hubfs_hub_list_refs(struct hubfs_hub *hub, bool include_prs,
			hubfs_hub_ref_cb cb, void *arg)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hubfs_buf body = HUBFS_BUF_INIT(HUB_JSON_MAX);
	struct hub_errctx ctx = { .repo = hub->repo_desc };
	struct hub_resp *resp = NULL;
	int err;

	err = hubfs_buf_printf(&url, "%s/refs%s", hub->api_base,
			       include_prs ? "?include_prs=1" : "");
	err = hub_get_json(hub, &url, err, &ctx, &body, &resp);
	if (!err)
		err = hub_parse_refs(body.data, body.len, include_prs, cb, arg);
	hubfs_free(resp);
	hubfs_buf_free(&body);
	hubfs_buf_free(&url);
	return err;
}

int hub_next_page(struct hubfs_hub *hub, const struct hub_resp *resp,
		  struct hubfs_buf *url, bool *more)
{
	char *next = NULL;
	int err;

	if (resp->link_bad) {
		hubfs_err_set("Link header from the Hub too long or "
			      "not plain text");
		return -EIO;
	}
	err = hub_link_next(&next, resp->link);
	if (err)
		return err;
	*more = next != NULL;
	if (!next)
		return 0;
	if (!hub_same_origin(hub, next)) {
		hubfs_err_set("the next page of a listing is not on the "
			      "Hub's origin");
		err = -EIO;
	} else if (strcmp(next, hubfs_buf_str(url)) == 0) {
		hubfs_err_set("a listing links a page to itself");
		err = -EIO;
	} else {
		hubfs_buf_reset(url);
		err = hubfs_buf_puts(url, next);
		if (err)
			hubfs_err_set("next page URL too long");
	}
	hubfs_free(next);
	return err;
}

int hubfs_hub_list_tree(struct hubfs_hub *hub, const char *commit,
			hubfs_hub_entry_cb cb, void *arg)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hubfs_buf body = HUBFS_BUF_INIT(HUB_TREE_PAGE_MAX);
	struct hub_errctx ctx = { .repo = hub->repo_desc, .rev = commit };
	struct hub_resp *resp = NULL;
	bool more = true;
	int err;

	err = hub_check_rev(commit);
	if (err)
		return err;
	err = hubfs_buf_printf(&url, "%s/tree/", hub->api_base);
	err = err ? err : hub_url_put_segment(&url, commit);
	err = err ? err : hubfs_buf_puts(&url, "?recursive=true&expand=false"
					      "&limit=1000");
	while (more) {
		err = hub_get_json(hub, &url, err, &ctx, &body, &resp);
		err = err ? err : hub_parse_tree(body.data, body.len, cb, arg,
						 NULL);
		err = err ? err : hub_next_page(hub, resp, &url, &more);
		if (err)
			break;
	}
	hubfs_free(resp);
	hubfs_buf_free(&body);
	hubfs_buf_free(&url);
	return err;
}
