/*
 * Ranged reads of file content, and the signed-URL cache.
 *
 * DESIGN
 *
 * Where the bytes come from (as huggingface_hub and huggingface.js see it):
 *   - An LFS file is served by a CDN.  HEAD /resolve/{commit}/{path}
 *     (with the token, redirects not followed) answers 302 with an
 *     absolute, signed, content-addressed Location.  That URL is cached
 *     per content key (the sha256) and every read is a GET of it with
 *     Range and without the token; one /resolve/ hit then serves any
 *     number of reads, which matters because /resolve/ is rate limited.
 *     If the Hub answers the HEAD with a 2xx instead (it serves the file
 *     itself), the /resolve/ URL is what gets cached.
 *   - A regular file is read with GET /resolve/{commit}/{path}, Range and
 *     the token.  The Hub may answer with a relative 307 to
 *     /api/resolve-cache/...; redirects are followed by hand, and the
 *     token goes along only while the target is on the endpoint's origin
 *     (hub_exchange() enforces this for every request).
 *
 * What is accepted.  Every response must be a 206 whose Content-Range is
 * exactly "bytes a-b/size" for the range asked for and the file's size.
 * The check runs in the header callback (range_headers()), so a 200 (a
 * cache that dropped the Range), a shifted range or another total aborts
 * the transfer before its first body byte; it is then retried like a
 * server error and, if it persists, fails with -EIO.  Range requests
 * carry "Accept-Encoding: identity", because a cache that may compress
 * ignores Range.
 *
 * Resuming.  The sink sees bytes in order, each once: range_read.next is
 * the next offset it expects, advanced only after the sink took a chunk.
 * When a transfer breaks (reset, clean close before the end, low-speed
 * abort, a 5xx after a redirect), the next attempt asks for [next, end]
 * only.  Progress does not refill the retry budget (huggingface_hub's
 * http_get does refill it): a server that sends a few bytes and then
 * stalls, again and again, must fail the read within retries + 1
 * attempts rather than trickle along for minutes while a FUSE request
 * waits.
 *
 * Expiry.  Signed URLs expire (and a CDN may drop an object).  A 403,
 * 404 or 410 from another origin makes the read forget the URL (only if
 * the cache still holds that same URL: another thread may have replaced
 * it), resolve again and carry on from next; this happens at most once
 * per read, so a CDN that refuses everything fails the read instead of
 * looping.
 *
 * The cache.  A chained hash table of at most HUB_URLS_MAX entries under
 * url_lock; when it is full it is emptied (clear-on-full): an entry costs
 * one HEAD to rebuild, and a bounded table needs no LRU bookkeeping on
 * the read path.  url_lock is a leaf lock held only for the table
 * operation, never across a request.  Two threads that miss the same key
 * at once do not both resolve: the first marks the key as being located
 * (hub->locating) and the others wait on url_located for its answer (and
 * locate themselves only if it failed).  Readahead makes such concurrent
 * misses the rule when a large file is first opened.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hub_int.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

/* --- The signed-URL cache ------------------------------------------------ */

static size_t url_bucket(const char *key)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h % HUB_URL_BUCKETS;
}

static void entry_free(struct hub_url_entry *e)
{
	if (e) {
		hubfs_free(e->url);
		hubfs_free(e);
	}
}

/* Empty the table; @hub->url_lock is held. */
static void urls_empty(struct hubfs_hub *hub) HUBFS_REQUIRES(hub->url_lock)
{
	for (size_t i = 0; i < HUB_URL_BUCKETS; i++) {
		while (hub->urls[i]) {
			struct hub_url_entry *e = hub->urls[i];

			hub->urls[i] = e->next;
			entry_free(e);
		}
	}
	hub->url_count = 0;
}

void hub_urls_clear(struct hubfs_hub *hub)
{
	hubfs_mutex_lock(&hub->url_lock);
	urls_empty(hub);
	hubfs_mutex_unlock(&hub->url_lock);
}

/* Remember @url for @key.  Failing to remember is not an error. */
static void urls_put(struct hubfs_hub *hub, const char *key, const char *url)
{
	struct hub_url_entry *e = hubfs_calloc(1, sizeof(*e)), **pp;
	struct hub_url_entry *old = NULL;

	if (!e)
		return;
	e->url = hubfs_strdup(url);
	if (!e->url) {
		entry_free(e);
		return;
	}
	snprintf(e->key, sizeof(e->key), "%s", key);
	hubfs_mutex_lock(&hub->url_lock);
	for (pp = &hub->urls[url_bucket(key)]; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->key, key) == 0) {
			old = *pp;
			e->next = old->next;
			*pp = e;
			break;
		}
	}
	if (!old) {
		if (hub->url_count >= HUB_URLS_MAX)
			urls_empty(hub);
		pp = &hub->urls[url_bucket(key)];
		e->next = *pp;
		*pp = e;
		hub->url_count++;
	}
	hubfs_mutex_unlock(&hub->url_lock);
	entry_free(old);
}

/* Forget @key's URL if it is still @url. */
static void urls_drop(struct hubfs_hub *hub, const char *key, const char *url)
{
	struct hub_url_entry **pp, *gone = NULL;

	hubfs_mutex_lock(&hub->url_lock);
	for (pp = &hub->urls[url_bucket(key)]; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->key, key) == 0) {
			if (strcmp((*pp)->url, url) == 0) {
				gone = *pp;
				*pp = gone->next;
				hub->url_count--;
			}
			break;
		}
	}
	hubfs_mutex_unlock(&hub->url_lock);
	entry_free(gone);
}

/*
 * A copy of the URL cached for @key, waiting if another thread is
 * locating it.  NULL means the caller must locate it, and has marked the
 * key as being located: it must call urls_located() afterwards.
 */
static char *urls_get_or_claim(struct hubfs_hub *hub, const char *key,
			       struct hub_locating *claim)
{
	struct hub_url_entry *e;
	struct hub_locating *l;
	char *url = NULL;

	hubfs_mutex_lock(&hub->url_lock);
	for (;;) {
		for (e = hub->urls[url_bucket(key)]; e; e = e->next)
			if (strcmp(e->key, key) == 0)
				break;
		if (e) {
			url = hubfs_strdup(e->url);
			break;
		}
		for (l = hub->locating; l; l = l->next)
			if (strcmp(l->key, key) == 0)
				break;
		if (!l) {
			snprintf(claim->key, sizeof(claim->key), "%s", key);
			claim->next = hub->locating;
			hub->locating = claim;
			break;
		}
		pthread_cond_wait(&hub->url_located, &hub->url_lock.mutex);
	}
	hubfs_mutex_unlock(&hub->url_lock);
	return url;
}

/* The key claimed by urls_get_or_claim() is located (or failed). */
static void urls_located(struct hubfs_hub *hub, struct hub_locating *claim)
{
	struct hub_locating **pp;

	hubfs_mutex_lock(&hub->url_lock);
	for (pp = &hub->locating; *pp; pp = &(*pp)->next) {
		if (*pp == claim) {
			*pp = claim->next;
			break;
		}
	}
	pthread_cond_broadcast(&hub->url_located);
	hubfs_mutex_unlock(&hub->url_lock);
}

/* --- One read ------------------------------------------------------------- */

struct range_read {
	struct hubfs_hub *hub;
	const struct hubfs_hub_file *file;
	uint64_t next;		/* the next offset the sink expects */
	uint64_t end;		/* the last offset asked for, inclusive */
	hubfs_hub_sink sink;
	void *arg;
	char range[48];		/* "next-end" of the request in flight */
};

static int range_headers(void *p, struct hub_resp *r)
{
	struct range_read *rr = p;
	struct hub_content_range cr;

	if (r->status < 200 || r->status >= 300)
		return 0;	/* not data: read_attempt() decides */
	/* A wrong answer may come from one bad cache node: retry it. */
	r->retry = true;
	if (r->status != 206) {
		hubfs_err_set("the server ignored the Range header (HTTP %ld "
			      "instead of 206) reading %s", r->status,
			      rr->file->path);
		return -EIO;
	}
	if (hub_parse_content_range(r->content_range, &cr) != 0 ||
	    cr.unsatisfied || !cr.total_known || cr.first != rr->next ||
	    cr.last != rr->end || cr.total != rr->file->size) {
		hubfs_err_set("the server answered a request for bytes %s/%"
			      PRIu64 " of %s with Content-Range \"%s\"",
			      rr->range, rr->file->size, rr->file->path,
			      r->content_range);
		return -EIO;
	}
	return 0;
}

static int range_data(void *p, struct hub_resp *r, const void *data,
		      size_t len)
{
	struct range_read *rr = p;
	int err;

	if (rr->next > rr->end || len > rr->end - rr->next + 1) {
		hubfs_err_set("the server sent more bytes than its "
			      "Content-Range said reading %s", rr->file->path);
		r->retry = true;
		return -EIO;
	}
	err = rr->sink(rr->arg, rr->next, data, len);
	if (err) {
		r->retry = false;
		return err;
	}
	rr->next += len;
	return 0;
}

/*
 * One attempt at [next, end] from @start_url, following redirects.
 * Returns 0 once the range is complete.  On failure *@cdn says whether the
 * last answer came from another origin; resp->status is its status.
 */
static int read_attempt(struct range_read *rr, const char *start_url,
			struct hub_resp *resp, bool *cdn)
{
	struct hubfs_hub *hub = rr->hub;
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	unsigned int hops = 0;
	int err;

	*cdn = false;
	err = hubfs_buf_puts(&url, start_url);
	if (err) {
		hubfs_err_set("URL too long reading %s", rr->file->path);
		resp->retry = false;
	}
	while (!err) {
		struct hub_req req = {
			.method = "GET", .url = hubfs_buf_str(&url),
			.auth = true, .range = rr->range,
			.on_headers = range_headers, .on_data = range_data,
			.arg = rr,
		};
		struct hub_errctx ctx = {
			.repo = hub->repo_desc, .rev = rr->file->commit,
			.path = rr->file->path, .url = req.url,
			.cdn = !hub_same_origin(hub, req.url),
		};
		long st;

		*cdn = ctx.cdn;
		snprintf(rr->range, sizeof(rr->range), "%" PRIu64 "-%" PRIu64,
			 rr->next, rr->end);
		err = hub_exchange(hub, &req, resp);
		if (err)
			break;
		st = resp->status;
		if (st == 206) {
			if (rr->next <= rr->end) {
				hubfs_err_set("short answer reading %s",
					      rr->file->path);
				resp->retry = true;
				err = -EIO;
			}
			break;
		}
		if (st >= 300 && st < 400 && resp->location[0]) {
			if (++hops > HUB_MAX_HOPS) {
				hubfs_err_set("too many redirects reading %s",
					      rr->file->path);
				err = -EIO;
				break;
			}
			hubfs_buf_reset(&url);
			err = hubfs_buf_puts(&url, resp->location);
			if (err) {
				hubfs_err_set("redirect target too long "
					      "reading %s", rr->file->path);
				resp->retry = false;
			}
			continue;
		}
		err = hub_errmap_status(&ctx, st, resp->error_code,
					resp->error_message, &resp->retry);
	}
	hubfs_buf_free(&url);
	return err;
}

/*
 * Find where @file's bytes are served: HEAD /resolve/ and take the
 * redirect to another origin, or the /resolve/ URL itself if the Hub
 * answers 2xx.  Caches the answer and returns a copy in *@out.
 */
static int locate(struct hubfs_hub *hub, const struct hubfs_hub_file *file,
		  const char *resolve_url, struct hub_resp *resp, char **out)
{
	struct hubfs_buf final_url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hub_req req = { .method = "HEAD", .url = resolve_url,
			       .auth = true, .locate = true };
	struct hub_errctx ctx = { .repo = hub->repo_desc, .rev = file->commit,
				  .path = file->path };
	struct hub_origin o;
	const char *url;
	char *copy;
	int err;

	err = hub_call(hub, &req, &ctx, resp, &final_url);
	if (err)
		goto out;
	url = resp->status >= 300 ? resp->location : hubfs_buf_str(&final_url);
	if (hub_origin_parse(&o, url) != 0) {
		hubfs_err_set("the Hub sent %s to a URL hubfs cannot use",
			      file->path);
		err = -EIO;
		goto out;
	}
	copy = hubfs_strdup(url);
	if (!copy) {
		hubfs_err_set("out of memory");
		err = -ENOMEM;
		goto out;
	}
	urls_put(hub, file->key, copy);
	*out = copy;
out:
	hubfs_buf_free(&final_url);
	return err;
}

static int check_file(const struct hubfs_hub_file *f, uint64_t off,
		      uint64_t len, hubfs_hub_sink sink)
{
	if (!f || !f->commit || !*f->commit ||
	    strlen(f->commit) > HUBFS_PATH_MAX || !f->path || !f->key ||
	    !sink || hub_path_invalid(f->path, strlen(f->path))) {
		hubfs_err_set("invalid file to read");
		return -EINVAL;
	}
	if (f->lfs && !hub_is_hex(f->key, 64)) {
		hubfs_err_set("invalid content key for %s", f->path);
		return -EINVAL;
	}
	if (len == 0 || f->size > HUBFS_SIZE_MAX || off >= f->size ||
	    len > f->size - off) {
		hubfs_err_set("invalid range %" PRIu64 "+%" PRIu64
			      " of %s (%" PRIu64 " bytes)", off, len, f->path,
			      f->size);
		return -EINVAL;
	}
	return 0;
}

int hubfs_hub_read_range(struct hubfs_hub *hub,
			 const struct hubfs_hub_file *file, uint64_t off,
			 uint64_t len, hubfs_hub_sink sink, void *arg)
{
	struct range_read rr = { .hub = hub, .file = file, .next = off,
				 .sink = sink, .arg = arg };
	struct hubfs_buf resolve = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hub_retry rt = { 0 };
	struct hub_resp *resp = NULL;
	bool relocated = false, cdn = false;
	char *url = NULL;
	int err;

	err = check_file(file, off, len, sink);
	if (err)
		return err;
	rr.end = off + len - 1;
	err = hubfs_buf_printf(&resolve, "%s/resolve/", hub->file_base);
	err = err ? err : hub_url_put_segment(&resolve, file->commit);
	err = err ? err : hubfs_buf_puts(&resolve, "/");
	err = err ? err : hub_url_put_path(&resolve, file->path);
	if (err == -ENOMEM) {
		hubfs_err_set("out of memory");
		goto out;
	} else if (err) {
		hubfs_err_set("URL too long for %s", file->path);
		goto out;
	}
	resp = hub_resp_new();
	if (!resp) {
		err = -ENOMEM;
		goto out;
	}
	if (file->lfs) {
		struct hub_locating claim;

		url = urls_get_or_claim(hub, file->key, &claim);
		if (!url) {
			err = locate(hub, file, hubfs_buf_str(&resolve), resp,
				     &url);
			urls_located(hub, &claim);
		}
	} else {
		url = hubfs_strdup(hubfs_buf_str(&resolve));
		if (!url) {
			hubfs_err_set("out of memory");
			err = -ENOMEM;
		}
	}
	while (!err) {
		long st;

		err = read_attempt(&rr, url, resp, &cdn);
		if (!err)
			break;
		st = resp->status;
		if (file->lfs && cdn && !relocated &&
		    (st == 403 || st == 404 || st == 410)) {
			/* Expired or gone: resolve again, once. */
			relocated = true;
			urls_drop(hub, file->key, url);
			hubfs_free(url);
			url = NULL;
			err = locate(hub, file, hubfs_buf_str(&resolve), resp,
				     &url);
			continue;
		}
		if (!resp->retry || !hub_retry_wait(hub, &rt, resp))
			break;
		err = 0;
	}
out:
	hubfs_free(url);
	hubfs_free(resp);
	hubfs_buf_free(&resolve);
	return err;
}
