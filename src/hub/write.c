/*
 * Writing to a repository: preupload, LFS uploads, commits, the commit
 * listing, and the write check.
 *
 * DESIGN
 *
 * The flow a caller drives is huggingface_hub's create_commit
 * (_commit_api.py _fetch_upload_modes, _upload_lfs_files, _send_commit):
 *   1. hubfs_hub_preupload(): per file, the Hub says whether it goes
 *      through LFS, whether to leave it out, and what the path holds now;
 *   2. hubfs_hub_lfs_upload(), for the LFS files: one batch call names
 *      the objects the Hub lacks and hands out presigned URLs; each such
 *      object is PUT there whole (basic) or in parts (multipart), then
 *      the multipart completion and the verify call follow when asked
 *      for;
 *   3. hubfs_hub_commit(): one NDJSON POST naming every change, with
 *      parentCommit.  Nothing shows on the branch before it succeeds.
 *
 * Who gets the token.  Preupload, the batch call, the commit and the
 * verify call are Hub API calls and carry it; the PUTs to presigned URLs
 * and the multipart completion (itself a signed URL) never do, as in
 * huggingface_hub's lfs.py.  hub_exchange() sends it only to the
 * endpoint's origin whatever is asked, and drops any Authorization line
 * a batch answer puts in an action's headers (parse_write.c already
 * does), so a hostile answer cannot make hubfs send it elsewhere.
 *
 * Memory.  Nothing here holds a file's content whole.  A PUT streams its
 * range from the caller's source through libcurl's read callback, a
 * buffer at a time; the commit body is generated as it is sent, inline
 * contents read through their sources and base64-encoded ND_CHUNK bytes
 * at a time.  So an upload costs a few buffers per part in flight,
 * whatever the size of the files.
 *
 * Uploads in parallel.  The PUTs of one batch answer (every part of
 * every multipart object, one per basic object, in that order) go up on
 * at most `parallel` threads (the caller's plus up to parallel - 1
 * started here, each borrowing its own curl handle), taking them from an
 * atomic counter; each is retried on its own by hub_call().  The thread
 * that sends an object's last PUT then completes and verifies it, while
 * the others go on with the next object's parts, so a slow completion
 * does not hold up the uploads behind it.  The first failure stops the
 * others from taking new PUTs and is what the call returns, with its
 * detail carried over from the thread that saw it.  Each part's ETag is
 * kept for the completion.  One call never has more than `parallel`
 * requests in flight.
 *
 * Retries and duplicates.  Every request here is retried like a read
 * (5xx, 408, 429, resets, timeouts), with its body sent again from the
 * start.  That is safe: preupload, batch and verify ask questions; a PUT
 * of the same bytes to the same content-addressed URL stores the same
 * object; completing an assembled object again changes nothing.  An
 * upload server that refuses its signed URL (403: it expired while
 * earlier objects went up) gets a new batch call, which hands out new
 * URLs for the objects not up yet, a few times at most.  The
 * commit is the one request that must not happen twice, and parentCommit
 * sees to it: if a first attempt landed but its answer was lost, the
 * retry names a parent that is no longer the head and gets 412, so the
 * call returns -ESTALE and never makes a second commit.  (huggingface_hub
 * does not retry commits at all; this client does, because a commit that
 * did not land is the common case and parentCommit makes the retry
 * harmless.)  A caller that gets -ESTALE looks for its commit with
 * hubfs_hub_list_commits() before concluding anything.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "hub_int.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

#define JSON_TYPE "application/json"
#define LFS_TYPE "application/vnd.git-lfs+json"
#define NDJSON_TYPE "application/x-ndjson"
#define SEND_MAX (16u << 20)		/* a JSON request body we build */
#define ND_TEXT_MAX (2u << 20)		/* one NDJSON line but content */
#define UPLOAD_REBATCH 3		/* new signed URLs after a refusal */
#define ND_CHUNK (48u * 1024)		/* content encoded at a time; a
					 * multiple of 3, so only the last
					 * chunk of a file is padded */

/* --- Helpers -------------------------------------------------------------- */

static int need_token(const struct hubfs_hub *hub)
{
	if (hub->token)
		return 0;
	hubfs_err_set("no token: writing needs a token with write access");
	return -EACCES;
}

/* Report a failure to build a URL or a request body. */
static int build_error(int err, const char *what)
{
	if (err == -ENOMEM)
		hubfs_err_set("out of memory");
	else if (err == -EINVAL)
		hubfs_err_set("%s: a path or text is not valid UTF-8", what);
	else
		hubfs_err_set("%s: request too large", what);
	return err;
}

static int check_path(const char *path, const char *what)
{
	char shown[128];
	const char *why;

	if (!path) {
		hubfs_err_set("%s: no path", what);
		return -EINVAL;
	}
	why = hub_path_invalid(path, strlen(path));
	if (why) {
		hub_printable(shown, sizeof(shown), path, strlen(path));
		hubfs_err_set("%s: invalid path \"%s\": %s", what, shown, why);
		return -EINVAL;
	}
	return 0;
}

/* Say what was being done to which object before the current detail. */
static void detail_prefix(const char *doing, const char *oid)
{
	hubfs_err_set("%s LFS object %s: %s", doing, oid,
		      hubfs_err_or("failed"));
}

/*
 * POST @send (of type @type) to @url, the JSON answer into @answer.  A
 * redirect to another origin is an error: the body is not for it.
 * @cancel: as struct hub_req's, or NULL.
 */
static int post_json(struct hubfs_hub *hub, const char *url,
		     const struct hubfs_buf *send, const char *type, bool auth,
		     char *const *headers, const struct hub_errctx *ctx,
		     struct hubfs_buf *answer, const atomic_bool *cancel)
{
	struct hub_req req = {
		.method = "POST", .url = url, .auth = auth, .json = true,
		.accept = type, .content_type = type,
		.headers = (const char *const *)headers,
		.send = send->data, .send_len = send->len, .body = answer,
		.cancel = cancel,
	};
	struct hub_resp *resp = hub_resp_new();
	int err;

	if (!resp)
		return -ENOMEM;
	err = hub_call(hub, &req, ctx, resp, NULL);
	if (!err && (resp->status < 200 || resp->status >= 300)) {
		hubfs_err_set("a write was redirected to another origin "
			      "(HTTP %ld)", resp->status);
		err = -EIO;
	}
	hubfs_free(resp);
	return err;
}

/* --- Preupload and the write check ---------------------------------------- */

static int preupload_url(struct hubfs_hub *hub, const char *branch,
			 struct hubfs_buf *url)
{
	int err = hubfs_buf_printf(url, "%s/preupload/", hub->api_base);

	err = err ? err : hub_url_put_segment(url, branch);
	return err ? build_error(err, "preupload") : 0;
}

/* One preupload call for @n files (at most HUB_WRITE_BATCH). */
static int preupload_batch(struct hubfs_hub *hub, const char *url,
			   const char *branch, const char *gitattributes,
			   struct hubfs_hub_upload_file *files, size_t n)
{
	struct hubfs_buf send = HUBFS_BUF_INIT(SEND_MAX);
	struct hubfs_buf answer = HUBFS_BUF_INIT(HUB_JSON_MAX);
	struct hub_errctx ctx = { .repo = hub->repo_desc, .rev = branch,
				  .write = true };
	int err;

	err = hub_preupload_body(&send, files, n, gitattributes);
	if (err) {
		build_error(err, "preupload");
		goto out;
	}
	err = post_json(hub, url, &send, JSON_TYPE, true, NULL, &ctx,
			&answer, NULL);
	if (!err)
		err = hub_parse_preupload(answer.data, answer.len, files, n);
out:
	hubfs_buf_free(&answer);
	hubfs_buf_free(&send);
	return err;
}

int hubfs_hub_preupload(struct hubfs_hub *hub, const char *branch,
			const char *gitattributes,
			struct hubfs_hub_upload_file *files, size_t n)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hubfs_hub_upload_file *tmp = NULL;
	int err;

	err = need_token(hub);
	err = err ? err : hub_check_rev(branch);
	if (err)
		return err;
	if (n && !files) {
		hubfs_err_set("preupload: no files given");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		err = check_path(files[i].path, "preupload");
		if (err)
			return err;
		if (files[i].size > HUBFS_SIZE_MAX ||
		    (files[i].size && !files[i].sample)) {
			hubfs_err_set("preupload: invalid size or sample for "
				      "file %zu", i);
			return -EINVAL;
		}
	}
	if (n == 0)
		return 0;
	/* The answers go to a copy, so that a failure changes nothing. */
	tmp = hubfs_calloc(n, sizeof(*tmp));
	if (!tmp) {
		hubfs_err_set("out of memory");
		return -ENOMEM;
	}
	memcpy(tmp, files, n * sizeof(*tmp));
	err = preupload_url(hub, branch, &url);
	for (size_t off = 0; !err && off < n; off += HUB_WRITE_BATCH) {
		size_t k = n - off < HUB_WRITE_BATCH ? n - off
						     : HUB_WRITE_BATCH;

		err = preupload_batch(hub, hubfs_buf_str(&url), branch,
				      gitattributes, tmp + off, k);
	}
	if (!err)
		memcpy(files, tmp, n * sizeof(*tmp));
	hubfs_free(tmp);
	hubfs_buf_free(&url);
	return err;
}

int hubfs_hub_check_write(struct hubfs_hub *hub, const char *branch)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	int err;

	err = need_token(hub);
	err = err ? err : hub_check_rev(branch);
	if (err)
		return err;
	/* A preupload of nothing: it needs write access and changes
	 * nothing, and it is the first call of every commit anyway. */
	err = preupload_url(hub, branch, &url);
	err = err ? err : preupload_batch(hub, hubfs_buf_str(&url), branch,
					  NULL, NULL, 0);
	hubfs_buf_free(&url);
	return err;
}

/* --- LFS uploads ---------------------------------------------------------- */

/* A range of an object's content, as a request body. */
struct src_range {
	const struct hubfs_hub_lfs_object *obj;
	uint64_t off, len;
	uint64_t pos;			/* bytes of the range handed on */
};

static int range_read(void *arg, char *buf, size_t len, size_t *got)
{
	struct src_range *r = arg;
	uint64_t left = r->len - r->pos;
	size_t n = left < len ? (size_t)left : len;
	int err;

	*got = 0;
	if (n == 0)
		return 0;
	hubfs_err_clear();
	err = r->obj->read(r->obj->arg, r->off + r->pos, buf, n);
	if (err) {
		hubfs_err_set("cannot read the content of LFS object %s at "
			      "offset %" PRIu64 ": %s", r->obj->sha256,
			      r->off + r->pos,
			      hubfs_err_or(strerror(err < 0 ? -err : err)));
		return err < 0 ? err : -EIO;
	}
	r->pos += n;
	*got = n;
	return 0;
}

static int range_rewind(void *arg)
{
	struct src_range *r = arg;

	r->pos = 0;
	return 0;
}

/* PUT bytes [@off, @off + @len) of @obj to the presigned @url. */
static int put_range(struct hubfs_hub *hub, const char *url,
		     char *const *headers,
		     const struct hubfs_hub_lfs_object *obj, uint64_t off,
		     uint64_t len, struct hub_resp *resp)
{
	struct src_range r = { .obj = obj, .off = off, .len = len };
	struct hub_stream st = { .read = range_read, .rewind = range_rewind,
				 .arg = &r, .size = (int64_t)len };
	struct hub_req req = { .method = "PUT", .url = url,
			       .headers = (const char *const *)headers,
			       .stream = &st, .cancel = obj->cancel };
	struct hub_errctx ctx = { .repo = hub->repo_desc, .write = true };
	int err;

	err = hub_call(hub, &req, &ctx, resp, NULL);
	if (!err && (resp->status < 200 || resp->status >= 300)) {
		hubfs_err_set("the upload was redirected to another origin "
			      "(HTTP %ld)", resp->status);
		err = -EIO;
	}
	return err;
}

static int verify(struct hubfs_hub *hub, const struct hubfs_hub_lfs_object *obj,
		  const struct hub_lfs_action *act)
{
	struct hubfs_buf send = HUBFS_BUF_INIT(SEND_MAX);
	struct hubfs_buf answer = HUBFS_BUF_INIT(HUB_JSON_MAX);
	struct hub_errctx ctx = { .repo = hub->repo_desc, .write = true };
	int err;

	err = hub_lfs_verify_body(&send, obj->sha256, obj->size);
	if (err) {
		build_error(err, "verify");
		goto out;
	}
	err = post_json(hub, act->verify, &send, LFS_TYPE, true,
			act->verify_headers, &ctx, &answer, obj->cancel);
	if (err)
		detail_prefix("verifying", obj->sha256);
out:
	hubfs_buf_free(&answer);
	hubfs_buf_free(&send);
	return err;
}

/* The multipart completion of @obj, its parts' ETags in @etags. */
static int complete(struct hubfs_hub *hub,
		    const struct hubfs_hub_lfs_object *obj,
		    const struct hub_lfs_action *act, char *const *etags)
{
	struct hubfs_buf send = HUBFS_BUF_INIT(SEND_MAX);
	struct hubfs_buf answer = HUBFS_BUF_INIT(HUB_JSON_MAX);
	struct hub_errctx ctx = { .repo = hub->repo_desc, .write = true };
	int err;

	err = hub_lfs_complete_body(&send, obj->sha256, etags, act->nparts);
	if (err) {
		build_error(err, "multipart completion");
		goto out;
	}
	/* A signed Hub URL: huggingface_hub's lfs.py sends no token. */
	err = post_json(hub, act->href, &send, LFS_TYPE, false, NULL, &ctx,
			&answer, obj->cancel);
	if (err)
		detail_prefix("completing the upload of", obj->sha256);
out:
	hubfs_buf_free(&answer);
	hubfs_buf_free(&send);
	return err;
}

/*
 * The uploads of one batch answer, shared by their threads.  The work is
 * a list of items taken in order from one counter: the parts of the
 * first object to send, then those of the next, a basic upload being one
 * item (its whole PUT).  The thread that sends an object's last item
 * then completes the object (multipart) and verifies it (when asked),
 * while the others go on with the next object's parts: a completion,
 * which the server may take a while over (it joins the parts), does not
 * hold up the uploads behind it.  At most `parallel` requests are in
 * flight.
 */
struct up_obj {
	const struct hubfs_hub_lfs_object *obj;
	const struct hub_lfs_action *act;
	size_t first;			/* its first item */
	size_t items;			/* its parts, or 1 (basic) */
	atomic_size_t left;		/* items not yet sent */
	char **etags;			/* multipart: [i] set by the thread
					 * that sent part i + 1, read by the
					 * one that took left to 0 */
};

struct up_job {
	struct hubfs_hub *hub;
	struct up_obj *objs;
	size_t nobj, nitems;
	atomic_size_t next;		/* the next item to send */
	atomic_bool failed;
	struct hubfs_mutex lock;	/* a leaf lock */
	int err HUBFS_GUARDED_BY(lock);	/* the first failure */
	bool refused HUBFS_GUARDED_BY(lock);	/* an upload server's 403 */
	char detail[HUBFS_ERR_MAX] HUBFS_GUARDED_BY(lock);
};

/* Send part @p of @o (the whole object for a basic upload). */
static int up_send(struct up_job *j, struct up_obj *o, size_t p,
		   struct hub_resp *resp)
{
	const struct hub_lfs_action *act = o->act;
	uint64_t off = (uint64_t)p * act->chunk_size, len;
	int err;

	if (!act->chunk_size) {
		err = put_range(j->hub, act->href, act->headers, o->obj, 0,
				o->obj->size, resp);
		if (err)
			detail_prefix("uploading", o->obj->sha256);
		return err;
	}
	len = o->obj->size - off < act->chunk_size ? o->obj->size - off
						   : act->chunk_size;
	err = put_range(j->hub, act->parts[p], act->headers, o->obj, off, len,
			resp);
	/* The completion names each part by its ETag (S3's rule). */
	if (!err && (!resp->etag[0] || resp->etag_bad)) {
		hubfs_err_set("the upload server answered without a usable "
			      "ETag");
		err = -EIO;
	}
	if (!err) {
		o->etags[p] = hubfs_strdup(resp->etag);
		if (!o->etags[p]) {
			hubfs_err_set("out of memory");
			err = -ENOMEM;
		}
	}
	if (err)
		hubfs_err_set("uploading part %zu of %zu of LFS object %s: %s",
			      p + 1, act->nparts, o->obj->sha256,
			      hubfs_err_or("failed"));
	return err;
}

/* Keep the first failure; @upload: it came from an upload server (its
 * 403 then means a signed URL expired). */
static void up_failed(struct up_job *j, int err, bool upload)
{
	hubfs_mutex_lock(&j->lock);
	if (!j->err) {
		j->err = err;
		j->refused = upload && err == -EACCES;
		snprintf(j->detail, sizeof(j->detail), "%s",
			 hubfs_err_or("failed"));
	}
	hubfs_mutex_unlock(&j->lock);
	atomic_store(&j->failed, true);
}

static void *up_worker(void *arg)
{
	struct up_job *j = arg;
	struct hub_resp *resp = hub_resp_new();
	size_t k, o = 0;
	int err;

	if (!resp) {
		up_failed(j, -ENOMEM, false);
		return NULL;
	}
	/* A thread's items come in increasing order: its object only
	 * moves forward. */
	while (!atomic_load(&j->failed) &&
	       (k = atomic_fetch_add(&j->next, 1)) < j->nitems) {
		struct up_obj *u;

		while (k >= j->objs[o].first + j->objs[o].items)
			o++;
		u = &j->objs[o];
		err = up_send(j, u, k - u->first, resp);
		if (err) {
			up_failed(j, err, true);
			break;
		}
		if (atomic_fetch_sub(&u->left, 1) != 1)
			continue;
		if (u->act->chunk_size) {
			err = complete(j->hub, u->obj, u->act, u->etags);
			if (err) {
				up_failed(j, err, true);
				break;
			}
		}
		if (u->act->verify) {
			err = verify(j->hub, u->obj, u->act);
			if (err) {
				up_failed(j, err, false);
				break;
			}
		}
	}
	hubfs_free(resp);
	return NULL;
}

/*
 * Upload the objects of @objs whose action asks for it, on up to
 * @parallel threads (the caller's and up to @parallel - 1 started here).
 * *@refused is set when the failure was an upload server refusing its
 * signed URL.
 */
static int upload_all(struct hubfs_hub *hub,
		      const struct hubfs_hub_lfs_object *objs,
		      const struct hub_lfs_action *acts, size_t n,
		      unsigned int parallel, bool *refused)
{
	struct up_job j = { .hub = hub, .lock = HUBFS_MUTEX_INIT };
	pthread_t tids[HUB_PARALLEL_MAX];
	size_t want, started = 0;
	int err = 0;

	j.objs = hubfs_calloc(n ? n : 1, sizeof(*j.objs));
	if (!j.objs) {
		hubfs_err_set("out of memory");
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct up_obj *u = &j.objs[j.nobj];

		if (!acts[i].upload)
			continue;	/* the Hub has it */
		u->obj = &objs[i];
		u->act = &acts[i];
		u->first = j.nitems;
		u->items = acts[i].chunk_size ? acts[i].nparts : 1;
		atomic_init(&u->left, u->items);
		if (acts[i].chunk_size) {
			u->etags = hubfs_calloc(acts[i].nparts,
						sizeof(*u->etags));
			if (!u->etags) {
				hubfs_err_set("out of memory");
				err = -ENOMEM;
				goto out;
			}
		}
		j.nitems += u->items;
		j.nobj++;
	}
	want = j.nitems < parallel ? j.nitems : parallel;
	/* Fewer threads than asked (even none) only means a slower upload. */
	while (started + 1 < want &&
	       pthread_create(&tids[started], NULL, up_worker, &j) == 0)
		started++;
	if (j.nitems)
		up_worker(&j);
	for (size_t t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	hubfs_mutex_lock(&j.lock);
	err = j.err;
	if (err) {
		hubfs_err_set("%s", j.detail);
		*refused = j.refused;
	}
	hubfs_mutex_unlock(&j.lock);
out:
	for (size_t i = 0; j.objs && i < j.nobj; i++) {
		for (size_t p = 0; j.objs[i].etags && p < j.objs[i].items; p++)
			hubfs_free(j.objs[i].etags[p]);
		hubfs_free(j.objs[i].etags);
	}
	hubfs_free(j.objs);
	hubfs_mutex_destroy(&j.lock);
	return err;
}

/*
 * One batch call for @n distinct objects, then their uploads.  *@refused
 * is set when an upload server refused its signed URL (it may have
 * expired while earlier objects went up): a new batch call gives new
 * URLs.
 */
static int lfs_batch(struct hubfs_hub *hub, const char *url,
		     const char *branch,
		     const struct hubfs_hub_lfs_object *objs, size_t n,
		     unsigned int parallel, bool *refused)
{
	struct hubfs_buf send = HUBFS_BUF_INIT(SEND_MAX);
	struct hubfs_buf answer = HUBFS_BUF_INIT(HUB_LFS_BATCH_MAX);
	struct hub_errctx ctx = { .repo = hub->repo_desc, .rev = branch,
				  .write = true };
	struct hub_lfs_action *acts = NULL;
	int err;

	err = hub_lfs_batch_body(&send, objs, n, branch);
	if (err) {
		build_error(err, "LFS batch");
		goto out;
	}
	err = post_json(hub, url, &send, LFS_TYPE, true, NULL, &ctx, &answer,
			n == 1 ? objs[0].cancel : NULL);
	if (!err)
		err = hub_parse_lfs_batch(&acts, answer.data, answer.len, objs,
					  n);
	hubfs_buf_free(&answer);	/* before the uploads, not after */
	if (!err)
		err = upload_all(hub, objs, acts, n, parallel, refused);
out:
	hub_lfs_actions_free(acts, n);
	hubfs_buf_free(&answer);
	hubfs_buf_free(&send);
	return err;
}

static int check_objects(const struct hubfs_hub_lfs_object *objs, size_t n)
{
	if (n && !objs) {
		hubfs_err_set("LFS upload: no objects given");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!hub_is_hex(objs[i].sha256, 64) ||
		    objs[i].size > HUBFS_SIZE_MAX || !objs[i].read) {
			hubfs_err_set("LFS upload: invalid object %zu", i);
			return -EINVAL;
		}
	}
	return 0;
}

int hubfs_hub_lfs_upload(struct hubfs_hub *hub, const char *branch,
			 const struct hubfs_hub_lfs_object *objs, size_t n,
			 unsigned int parallel)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hubfs_hub_lfs_object *uniq = NULL;
	size_t m = 0;
	int err;

	err = need_token(hub);
	err = err ? err : hub_check_rev(branch);
	err = err ? err : check_objects(objs, n);
	if (err || n == 0)
		return err;
	if (parallel == 0)
		parallel = 1;
	if (parallel > HUB_PARALLEL_MAX)
		parallel = HUB_PARALLEL_MAX;
	/* Each object once: the batch answer is matched by oid. */
	uniq = hubfs_calloc(n, sizeof(*uniq));
	if (!uniq) {
		hubfs_err_set("out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && !err; i++) {
		size_t k;

		for (k = 0; k < m; k++) {
			if (strcasecmp(uniq[k].sha256, objs[i].sha256) == 0)
				break;
		}
		if (k < m && uniq[k].size != objs[i].size) {
			hubfs_err_set("LFS upload: object %s given with two "
				      "sizes", objs[i].sha256);
			err = -EINVAL;
		} else if (k == m) {
			uniq[m++] = objs[i];
		}
	}
	if (!err) {
		err = hubfs_buf_printf(&url, "%s.git/info/lfs/objects/batch",
				       hub->file_base);
		if (err)
			build_error(err, "LFS batch");
	}
	for (size_t off = 0, rebatch = 0; !err && off < m;) {
		size_t k = m - off < HUB_WRITE_BATCH ? m - off
						     : HUB_WRITE_BATCH;
		bool refused = false;

		err = lfs_batch(hub, hubfs_buf_str(&url), branch, uniq + off, k,
				parallel, &refused);
		if (err == -EACCES && refused && rebatch++ < UPLOAD_REBATCH) {
			/* The objects already up are not asked for again. */
			err = 0;
			continue;
		}
		off += k;
	}
	hubfs_free(uniq);
	hubfs_buf_free(&url);
	return err;
}

/* --- The commit ----------------------------------------------------------- */

/*
 * The NDJSON body, generated as libcurl asks for it.  It is a sequence
 * of pieces: the header line, then three per operation: the line (for
 * "file", its start up to the opening quote of "content"), the content
 * (base64, "file" only) and the end of the line ("file" only).
 */
struct nd_body {
	const struct hubfs_hub_commit *c;
	size_t piece;			/* the piece being sent */
	size_t pieces;			/* 1 + 3 per operation */
	struct hubfs_buf text;		/* the text piece being sent */
	size_t text_pos;
	uint64_t content_off;		/* content bytes encoded so far */
	unsigned char *raw;		/* ND_CHUNK bytes of content */
	char *enc;			/* their base64 */
	size_t enc_len, enc_pos;
	int64_t size;			/* of the whole body */
};

static const char *const op_keys[] = {
	[HUBFS_OP_ADD_FILE] = "file",
	[HUBFS_OP_ADD_LFS] = "lfsFile",
	[HUBFS_OP_DELETE_FILE] = "deletedFile",
	[HUBFS_OP_DELETE_FOLDER] = "deletedFolder",
};

/* The operation whose content piece is being sent, or NULL. */
static const struct hubfs_hub_commit_op *nd_content_op(const struct nd_body *nd)
{
	const struct hubfs_hub_commit_op *op;

	if (nd->piece == 0 || nd->piece >= nd->pieces ||
	    (nd->piece - 1) % 3 != 1)
		return NULL;
	op = &nd->c->ops[(nd->piece - 1) / 3];
	return op->kind == HUBFS_OP_ADD_FILE ? op : NULL;
}

/* The text of piece @p into @out (nothing for a content piece). */
static int nd_text(const struct hubfs_hub_commit *c, size_t p,
		   struct hubfs_buf *out)
{
	const char *description = c->description ? c->description : "";
	const struct hubfs_hub_commit_op *op;
	size_t part;
	int err;

	if (p == 0) {
		err = hubfs_buf_puts(out, "{\"key\":\"header\",\"value\":"
					  "{\"summary\":");
		err = err ? err : hub_json_put_string(out, c->summary,
						      strlen(c->summary));
		err = err ? err : hubfs_buf_puts(out, ",\"description\":");
		err = err ? err : hub_json_put_string(out, description,
						      strlen(description));
		err = err ? err : hubfs_buf_printf(out, ",\"parentCommit\":"
						   "\"%s\"}}\n", c->parent);
		return err;
	}
	op = &c->ops[(p - 1) / 3];
	part = (p - 1) % 3;
	if (part == 1 || (part == 2 && op->kind != HUBFS_OP_ADD_FILE))
		return 0;
	if (part == 2)
		return hubfs_buf_puts(out, "\"}}\n");
	err = hubfs_buf_printf(out, "{\"key\":\"%s\",\"value\":{\"path\":",
			       op_keys[op->kind]);
	err = err ? err : hub_json_put_string(out, op->path, strlen(op->path));
	if (err)
		return err;
	switch (op->kind) {
	case HUBFS_OP_ADD_FILE:
		return hubfs_buf_puts(out, ",\"encoding\":\"base64\","
					   "\"content\":\"");
	case HUBFS_OP_ADD_LFS: {
		char oid[65];

		for (size_t i = 0; i < sizeof(oid); i++)
			oid[i] = (char)tolower((unsigned char)op->sha256[i]);
		return hubfs_buf_printf(out, ",\"algo\":\"sha256\",\"oid\":"
					"\"%s\",\"size\":%" PRIu64 "}}\n", oid,
					op->size);
	}
	case HUBFS_OP_DELETE_FILE:
	case HUBFS_OP_DELETE_FOLDER:
		break;
	}
	return hubfs_buf_puts(out, "}}\n");
}

/* Start sending piece nd->piece. */
static int nd_enter(struct nd_body *nd)
{
	int err = 0;

	hubfs_buf_reset(&nd->text);
	nd->text_pos = 0;
	nd->enc_len = nd->enc_pos = 0;
	nd->content_off = 0;
	if (nd->piece < nd->pieces)
		err = nd_text(nd->c, nd->piece, &nd->text);
	if (err)
		build_error(err, "commit");
	return err;
}

/* Read and encode the next chunk of @op's content. */
static int nd_refill(struct nd_body *nd, const struct hubfs_hub_commit_op *op)
{
	uint64_t left = op->size - nd->content_off;
	size_t k = left < ND_CHUNK ? (size_t)left : ND_CHUNK;
	char shown[128];
	int err;

	hubfs_err_clear();
	err = op->read(op->arg, nd->content_off, nd->raw, k);
	if (err) {
		hub_printable(shown, sizeof(shown), op->path, strlen(op->path));
		hubfs_err_set("cannot read the content of %s at offset %" PRIu64
			      ": %s", shown, nd->content_off,
			      hubfs_err_or(strerror(err < 0 ? -err : err)));
		return err < 0 ? err : -EIO;
	}
	hub_base64_encode(nd->enc, nd->raw, k);
	nd->enc_len = hub_base64_len(k);
	nd->enc_pos = 0;
	nd->content_off += k;
	return 0;
}

static int nd_read(void *arg, char *buf, size_t len, size_t *got)
{
	struct nd_body *nd = arg;
	const struct hubfs_hub_commit_op *op;
	size_t n = 0, k;
	int err;

	*got = 0;
	while (n < len) {
		if (nd->text_pos < nd->text.len) {
			k = nd->text.len - nd->text_pos;
			k = k < len - n ? k : len - n;
			memcpy(buf + n, nd->text.data + nd->text_pos, k);
			nd->text_pos += k;
			n += k;
		} else if (nd->enc_pos < nd->enc_len) {
			k = nd->enc_len - nd->enc_pos;
			k = k < len - n ? k : len - n;
			memcpy(buf + n, nd->enc + nd->enc_pos, k);
			nd->enc_pos += k;
			n += k;
		} else if ((op = nd_content_op(nd)) &&
			   nd->content_off < op->size) {
			err = nd_refill(nd, op);
			if (err)
				return err;
		} else if (nd->piece < nd->pieces) {
			nd->piece++;
			err = nd_enter(nd);
			if (err)
				return err;
		} else {
			break;
		}
	}
	*got = n;
	return 0;
}

static int nd_rewind(void *arg)
{
	struct nd_body *nd = arg;

	nd->piece = 0;
	return nd_enter(nd);
}

/* Check the whole body can be made, and measure it, before sending. */
static int nd_init(struct nd_body *nd, const struct hubfs_hub_commit *c)
{
	uint64_t size = 0;
	bool content = false;
	int err = 0;

	nd->c = c;
	nd->pieces = 1 + 3 * c->n;
	nd->text = (struct hubfs_buf)HUBFS_BUF_INIT(ND_TEXT_MAX);
	for (size_t p = 0; p < nd->pieces && !err; p++) {
		hubfs_buf_reset(&nd->text);
		err = nd_text(c, p, &nd->text);
		size += nd->text.len;
		if (p && (p - 1) % 3 == 1 &&
		    c->ops[(p - 1) / 3].kind == HUBFS_OP_ADD_FILE) {
			size += (c->ops[(p - 1) / 3].size + 2) / 3 * 4;
			content = true;
		}
	}
	if (err)
		return build_error(err, "commit");
	if (size > INT64_MAX) {
		hubfs_err_set("commit: the body would be too large");
		return -EFBIG;
	}
	nd->size = (int64_t)size;
	if (content) {
		nd->raw = hubfs_malloc(ND_CHUNK);
		nd->enc = hubfs_malloc(hub_base64_len(ND_CHUNK));
		if (!nd->raw || !nd->enc) {
			hubfs_err_set("out of memory");
			return -ENOMEM;
		}
	}
	return nd_rewind(nd);
}

static void nd_free(struct nd_body *nd)
{
	hubfs_buf_free(&nd->text);
	hubfs_free(nd->raw);
	hubfs_free(nd->enc);
}

static int check_commit(const struct hubfs_hub_commit *c)
{
	if (!c) {
		hubfs_err_set("commit: nothing given");
		return -EINVAL;
	}
	if (hub_check_rev(c->branch))
		return -EINVAL;
	if (!c->parent || !hub_is_hex(c->parent, 40)) {
		hubfs_err_set("commit: the parent must be a 40-digit commit "
			      "id");
		return -EINVAL;
	}
	if (!c->summary || !*c->summary) {
		hubfs_err_set("commit: the summary must not be empty");
		return -EINVAL;
	}
	if (c->n && !c->ops) {
		hubfs_err_set("commit: no operations given");
		return -EINVAL;
	}
	for (size_t i = 0; i < c->n; i++) {
		const struct hubfs_hub_commit_op *op = &c->ops[i];
		int err;

		if ((unsigned int)op->kind > HUBFS_OP_DELETE_FOLDER) {
			hubfs_err_set("commit: operation %zu has no valid "
				      "kind", i);
			return -EINVAL;
		}
		err = check_path(op->path, "commit");
		if (err)
			return err;
		if ((op->kind == HUBFS_OP_ADD_FILE ||
		     op->kind == HUBFS_OP_ADD_LFS) &&
		    op->size > HUBFS_SIZE_MAX) {
			hubfs_err_set("commit: operation %zu is too large", i);
			return -EINVAL;
		}
		if (op->kind == HUBFS_OP_ADD_FILE && op->size && !op->read) {
			hubfs_err_set("commit: operation %zu has no source", i);
			return -EINVAL;
		}
		if (op->kind == HUBFS_OP_ADD_LFS &&
		    (!op->sha256 || !hub_is_hex(op->sha256, 64))) {
			hubfs_err_set("commit: operation %zu has no valid "
				      "sha256", i);
			return -EINVAL;
		}
	}
	return 0;
}

/* POST the commit body @st to @c's branch, the answer into @answer. */
static int send_commit(struct hubfs_hub *hub, const struct hubfs_hub_commit *c,
		       const struct hub_stream *st, struct hubfs_buf *answer)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hub_req req = { .method = "POST", .auth = true, .json = true,
			       .content_type = NDJSON_TYPE, .stream = st,
			       .body = answer };
	struct hub_errctx ctx = { .repo = hub->repo_desc, .rev = c->branch,
				  .write = true };
	struct hub_resp *resp = NULL;
	int err;

	err = hubfs_buf_printf(&url, "%s/commit/", hub->api_base);
	err = err ? err : hub_url_put_segment(&url, c->branch);
	if (err) {
		build_error(err, "commit");
		goto out;
	}
	resp = hub_resp_new();
	if (!resp) {
		err = -ENOMEM;
		goto out;
	}
	req.url = hubfs_buf_str(&url);
	err = hub_call(hub, &req, &ctx, resp, NULL);
	if (!err && (resp->status < 200 || resp->status >= 300)) {
		hubfs_err_set("a commit was redirected to another origin "
			      "(HTTP %ld)", resp->status);
		err = -EIO;
	}
out:
	hubfs_free(resp);
	hubfs_buf_free(&url);
	return err;
}

int hubfs_hub_commit(struct hubfs_hub *hub,
		     const struct hubfs_hub_commit *commit, char out[41])
{
	struct hubfs_buf answer = HUBFS_BUF_INIT(HUB_JSON_MAX);
	struct nd_body nd = { 0 };
	struct hub_stream st = { .read = nd_read, .rewind = nd_rewind,
				 .arg = &nd };
	char oid[41];
	int err;

	err = need_token(hub);
	err = err ? err : check_commit(commit);
	if (err)
		return err;
	err = nd_init(&nd, commit);
	if (!err) {
		st.size = nd.size;
		err = send_commit(hub, commit, &st, &answer);
	}
	if (!err)
		err = hub_parse_commit(answer.data, answer.len, oid);
	if (!err) {
		memcpy(out, oid, sizeof(oid));
		atomic_fetch_add(&hub->stats.commits, 1);
	}
	nd_free(&nd);
	hubfs_buf_free(&answer);
	return err;
}

/* --- The commit listing --------------------------------------------------- */

int hubfs_hub_list_commits(struct hubfs_hub *hub, const char *rev,
			   unsigned int max, hubfs_hub_commit_cb cb,
			   void *arg)
{
	struct hubfs_buf url = HUBFS_BUF_INIT(HUB_URL_MAX);
	struct hubfs_buf body = HUBFS_BUF_INIT(HUB_JSON_MAX);
	struct hub_errctx ctx = { .repo = hub->repo_desc, .rev = rev };
	struct hub_resp *resp = NULL;
	unsigned int left = max;
	bool more = true;
	int err;

	err = hub_check_rev(rev);
	if (err)
		return err;
	if (!cb) {
		hubfs_err_set("commit listing: no callback");
		return -EINVAL;
	}
	if (max == 0)
		return 0;
	err = hubfs_buf_printf(&url, "%s/commits/", hub->api_base);
	err = err ? err : hub_url_put_segment(&url, rev);
	err = err ? err : hubfs_buf_printf(&url, "?limit=%u",
					   max < HUB_COMMITS_PAGE
						   ? max
						   : HUB_COMMITS_PAGE);
	while (more && left) {
		err = hub_get_json(hub, &url, err, &ctx, &body, &resp);
		err = err ? err : hub_parse_commits(body.data, body.len, cb,
						    arg, &left, NULL);
		err = err ? err : hub_next_page(hub, resp, &url, &more);
		if (err)
			break;
	}
	hubfs_free(resp);
	hubfs_buf_free(&body);
	hubfs_buf_free(&url);
	return err;
}
