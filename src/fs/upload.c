/*
 * Uploads at close: the LFS object of a file written and closed goes up
 * before any commit asks for it.
 *
 * DESIGN
 *
 * With the LFS protocol nothing can be sent before a file's sha256 is
 * known, so a commit of freshly written files costs the writing plus the
 * whole upload.  A file written front to back has its sha256 when it is
 * closed (work.c keeps it as the bytes arrive); the uploaders send its
 * object then, while the writer goes on with the next file, so that the
 * commit's own LFS batch finds it stored and sends nothing.  Two files go
 * up at once, so that the Hub's completion of one object (it joins and
 * checks the parts) does not leave the link idle.
 * The commit stays the only thing a user sees: an object the Hub holds
 * but no commit names is invisible, so an upload that fails, is stopped,
 * or is of bytes that change again costs only bandwidth.
 *
 * What goes up early: a file larger than the Hub's cap on regular files
 * (10 MiB: above it a file can only be LFS, so no preupload call is
 * needed to know), with no base bytes and a running sha256 covering it
 * whole, when its last handle open for writing is closed.  Smaller files
 * are left to the commit, which sends them in one batch.
 *
 * Invariants:
 * - The bytes sent are the bytes hashed.  While an upload reads a stage
 *   (st->uploading, set and cleared under the work lock) no write or cut
 *   reaches it: a writer that finds it uploading sets upload_cancel and
 *   waits; the upload's next read of the stage fails with -ECANCELED,
 *   which ends the transfer without a retry, and no further request
 *   of it is made or waited for (the object's cancel flag).
 * - A commit round never sends an object an upload is sending: before
 *   its own uploads it waits until none of its stages is uploading
 *   (fs_upload_wait()), and a stage busy in a round is not started.
 * - The queue holds references to wnodes, not to stages, so a queued
 *   file does not keep a landed stage from becoming the cache's data
 *   file (commit.c, landed()).
 *
 * States of a queued file: queued -> uploading -> done, stopped (a
 * writer, an unlink, unmount) or failed; or dropped unsent when it no
 * longer qualifies (written again, being committed, committed), or at
 * once when it is removed (fs_upload_unqueue()), so that its staged
 * bytes go with it.
 *
 * Locks: the work lock guards the queue, current, stop and the counters
 * (kept in struct fs_work, so that they outlive this state).  The
 * UPLOADERS threads of a writable mount upload without it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"
#include "work_int.h"

/* The Hub refuses regular files above 10 MiB: larger ones are LFS. */
#define UPLOAD_MIN ((uint64_t)10 << 20)
#define UPLOAD_PARALLEL 4
/* Uploads at once: while the Hub completes one object (joins and checks
 * its parts, which can take a second per GiB), the next one's parts go
 * up. */
#define UPLOADERS 2

struct fs_upload_state {
	struct fs_work *w;
	struct hubfs_hub *hub;
	char *branch;
	pthread_t threads[UPLOADERS];
	unsigned int nthreads;
	pthread_cond_t cond;		/* the queue or stop changed */
	bool stop;			/* lock */
	struct fs_wnode **queue;	/* lock: closed files, referenced */
	size_t nqueue, cap;		/* lock */
	struct fs_stage *current[UPLOADERS]; /* lock: the stages uploading */
};

/* The stage of queued file @n if it is to go up now, else NULL.  Work
 * lock held. */
static struct fs_stage *eligible(const struct fs_wnode *n)
{
	struct fs_stage *st = n->stage;

	if (!st || n->writers || st->busy || st->uploading ||
	    st->orphan || st->base_len || st->size <= UPLOAD_MIN)
		return NULL;
	return st;
}

static int read_stage(void *arg, uint64_t off, void *buf, size_t len)
{
	struct fs_stage *st = arg;

	/* Called for every few tens of KiB sent.  Between the PUTs (the
	 * batch call, a multipart completion, verify) a writer waits for
	 * the request in flight; o.cancel cuts a wait before a retry. */
	if (atomic_load(&st->upload_cancel))
		return -ECANCELED;
	return fs_stage_pread(st, buf, len, off);
}

/* Send @st's object if its running sha256 covers it whole.  No lock
 * held; @st is referenced and uploading. */
static void upload_one(struct fs_work *w, struct fs_upload_state *us,
		       struct fs_stage *st, const char *path)
{
	struct hubfs_hub_lfs_object o = { .read = read_stage, .arg = st,
					  .cancel = &st->upload_cancel };
	int err;

	if (fs_stage_sha256(w, st, o.sha256) != 1) {
		hlog(LOG_DEBUG, "%s: %s was not written in order; its commit "
		     "uploads it", w->label, path ? path : "a file");
		return;
	}
	/* No write reaches the stage while it uploads: the size the
	 * hash covers holds. */
	pthread_mutex_lock(&w->lock);
	o.size = st->size;
	pthread_mutex_unlock(&w->lock);
	/* A cut with no handle open (truncate(2)) may have come first. */
	if (o.size <= UPLOAD_MIN)
		return;
	hubfs_err_clear();
	err = hubfs_hub_lfs_upload(us->hub, us->branch, &o, 1,
				   UPLOAD_PARALLEL);
	pthread_mutex_lock(&w->lock);
	if (!err) {
		w->uploads_done++;
		w->upload_bytes += o.size;
	} else {
		w->uploads_stopped++;
	}
	pthread_mutex_unlock(&w->lock);
	if (!err)
		hlog(LOG_DEBUG, "%s: uploaded %s (%llu bytes) at close",
		     w->label, path ? path : "a file",
		     (unsigned long long)o.size);
	else if (err == -ECANCELED)
		hlog(LOG_DEBUG, "%s: upload of %s stopped (changed, removed, "
		     "or unmounting)", w->label, path ? path : "a file");
	else
		hlog(LOG_INFO, "%s: upload of %s at close failed (%s: %s); "
		     "the commit sends it", w->label, path ? path : "a file",
		     strerror(-err), hubfs_err_or("no detail"));
}

/* Put @st in the slot of us->current that holds @old (NULL: a free
 * one).  Work lock held. */
static void current_set(struct fs_upload_state *us, struct fs_stage *old,
			struct fs_stage *st)
{
	unsigned int i;

	for (i = 0; i < UPLOADERS; i++)
		if (us->current[i] == old) {
			us->current[i] = st;
			return;
		}
}

static void *uploader_main(void *arg)
{
	struct fs_upload_state *us = arg;
	struct fs_work *w = us->w;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct fs_wnode *n;
		struct fs_stage *st;
		char *path;

		while (!us->stop && us->nqueue == 0)
			pthread_cond_wait(&us->cond, &w->lock);
		if (us->stop)
			break;
		n = us->queue[0];
		memmove(us->queue, us->queue + 1,
			--us->nqueue * sizeof(*us->queue));
		st = eligible(n);
		if (!st) {
			pthread_mutex_unlock(&w->lock);
			fs_wnode_put(w, n);
			pthread_mutex_lock(&w->lock);
			continue;
		}
		st->refs++;
		st->uploading = true;
		atomic_store(&st->upload_cancel, false);
		current_set(us, NULL, st);
		path = fs_wnode_path(n);
		pthread_mutex_unlock(&w->lock);
		fs_wnode_put(w, n);
		upload_one(w, us, st, path);
		hubfs_free(path);
		pthread_mutex_lock(&w->lock);
		st->uploading = false;
		current_set(us, st, NULL);
		fs_stage_put(w, st);
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int fs_upload_start(struct fs_work *w, struct hubfs_hub *hub,
		    const char *branch)
{
	struct fs_upload_state *us = hubfs_calloc(1, sizeof(*us));

	if (!us)
		return -ENOMEM;
	us->w = w;
	us->hub = hub;
	us->branch = hubfs_strdup(branch);
	if (!us->branch)
		goto out_free;
	pthread_cond_init(&us->cond, NULL);
	pthread_mutex_lock(&w->lock);
	w->upload = us;
	pthread_mutex_unlock(&w->lock);
	while (us->nthreads < UPLOADERS &&
	       pthread_create(&us->threads[us->nthreads], NULL, uploader_main,
			      us) == 0)
		us->nthreads++;
	if (us->nthreads == 0)
		goto out_cond;
	return 0;
out_cond:
	pthread_mutex_lock(&w->lock);
	w->upload = NULL;
	pthread_mutex_unlock(&w->lock);
	pthread_cond_destroy(&us->cond);
out_free:
	hubfs_free(us->branch);
	hubfs_free(us);
	return -EAGAIN;
}

void fs_upload_stop(struct fs_work *w)
{
	struct fs_upload_state *us = w->upload;
	size_t i;

	if (!us)
		return;
	pthread_mutex_lock(&w->lock);
	us->stop = true;
	for (i = 0; i < UPLOADERS; i++)
		if (us->current[i])
			atomic_store(&us->current[i]->upload_cancel, true);
	pthread_cond_broadcast(&us->cond);
	pthread_mutex_unlock(&w->lock);
	for (i = 0; i < us->nthreads; i++)
		pthread_join(us->threads[i], NULL);
	/* From here no removal (fs_upload_unqueue()) sees the queue. */
	pthread_mutex_lock(&w->lock);
	w->upload = NULL;
	pthread_mutex_unlock(&w->lock);
	for (i = 0; i < us->nqueue; i++)
		fs_wnode_put(w, us->queue[i]);
	pthread_cond_destroy(&us->cond);
	hubfs_free(us->queue);
	hubfs_free(us->branch);
	hubfs_free(us);
}

void fs_upload_closed(struct fs_work *w, struct fs_wnode *n)
{
	struct fs_upload_state *us = w->upload;
	size_t i;

	if (!us || us->stop || !eligible(n))
		return;
	for (i = 0; i < us->nqueue; i++)
		if (us->queue[i] == n)
			return;
	if (us->nqueue == us->cap) {
		size_t cap = us->cap ? us->cap * 2 : 16;
		struct fs_wnode **q = hubfs_realloc(us->queue,
						    cap * sizeof(*q));

		if (!q)
			return;		/* the commit sends it */
		us->queue = q;
		us->cap = cap;
	}
	n->refs++;
	us->queue[us->nqueue++] = n;
	pthread_cond_signal(&us->cond);
	if (hubfs_log_enabled(LOG_DEBUG)) {
		char *path = fs_wnode_path(n);

		hlog(LOG_DEBUG, "%s: %s: queued for upload", w->label,
		     path ? path : "a file");
		hubfs_free(path);
	}
}

bool fs_upload_unqueue(struct fs_work *w, struct fs_wnode *n)
{
	struct fs_upload_state *us = w->upload;
	size_t i;

	if (!us)
		return false;
	for (i = 0; i < us->nqueue; i++)
		if (us->queue[i] == n) {
			memmove(us->queue + i, us->queue + i + 1,
				(--us->nqueue - i) * sizeof(*us->queue));
			return true;
		}
	return false;
}

void fs_upload_wait(struct fs_work *w, struct fs_stage *st)
{
	while (st->uploading)
		pthread_cond_wait(&w->cond, &w->lock);
}
