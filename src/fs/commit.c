/*
 * Turning the working tree's changes into Hub commits.
 *
 * DESIGN
 *
 * One committer thread per writable mount makes every commit, so
 * commits never race each other.  It starts a round when someone waits
 * for one (fsync, `sync DIR`, unmount) or when changes are pending and
 * the mount has been quiet: no change for `quiet` ms and no file open
 * for writing, or changes pending for `max_delay` ms whatever happens.
 *
 * A round:
 *  1. Settle the attempts whose outcome is unknown (hubfs died, or the
 *     answer to a commit was lost): each commit message carries a tag
 *     (the marker), so the branch's history since the attempt's parent
 *     says whether it landed.  Landed: its rows are done.  Not landed and
 *     the branch moved: it never will (parentCommit), forget it.
 *  2. Snapshot: under the work lock, read every journal row, record the
 *     attempt (its marker and the journal's generation), and mark each
 *     stage in it busy: writers of those files wait until the round ends,
 *     so what is hashed is what is sent.  Rows that change nothing (a
 *     file moved away and back) are removed; rows that cannot be sent
 *     now are given a newer generation, so that they stay pending.
 *  3. Make the commit (src/commit/engine.c).
 *  4. Landed: the rows of the snapshot that did not change since are
 *     removed, the new commit becomes the base, the working tree follows
 *     the new commit's tree, and the committed bytes go into the block
 *     cache (read-your-writes without a download) before the round ends:
 *     a stage nothing refers to any more becomes the cache's data file
 *     (linked, not copied), the others are copied.
 *     -ESTALE (the branch moved, maybe by this very attempt when a retry
 *     followed a lost answer: settling again tells): if the commits
 *     upstream touched none of the paths of any pending change, rebase
 *     (the branch head becomes the base) and go again; otherwise it is a
 *     conflict: the round fails with -ESTALE, everything stays staged
 *     and shown, the conflicting paths are kept for user.hubfs.pending,
 *     and no round runs again on its own until something changes or
 *     fs_commit_resolve() settles a path ("ours": the row records the
 *     upstream content it may overwrite; "theirs": the change is
 *     dropped).
 *
 * A waiter is served by the first round that starts after it asked, and
 * gets that round's result.
 *
 * Between rounds, with nothing pending and no file open for writing, the
 * thread looks at the branch every `refresh` seconds and moves the
 * working tree to a commit someone else pushed (follow()).
 *
 * Locks: the work lock (w->lock) guards everything in struct
 * fs_commit_state; it is never held across the Hub calls of a round.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "hubfs/buf.h"
#include "hubfs/commit.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"
#include "hubfs/notify.h"
#include "work_int.h"

#define TICK_MS 100
#define ROUND_TRIES 5		/* rebases in one round */
#define HISTORY_MAX 200		/* commits searched for a marker */
#define ATTEMPTS_MAX 16
#define DESCRIBE_MAX 50		/* paths named in a commit message */
#define RETRY_MIN_MS 2000
#define RETRY_MAX_MS 300000
/* The block cache's block: a landed stage is copied in block by block. */
#define CBS ((uint64_t)HUBFS_CACHE_BLOCK_SIZE)

struct fs_commit_state {
	struct hubfs_hub *hub;
	struct hubfs_cache *cache;
	char *branch;
	char *message;			/* summary template, or NULL */
	unsigned int quiet_ms;
	unsigned int max_delay_ms;
	unsigned int refresh_ms;
	double followed_at;		/* committer thread only */
	bool follow_now;		/* lock: look at the branch soon */
	bool follow_failed;		/* committer thread only */
	pthread_t thread;
	bool started;
	bool stop;			/* lock */
	bool stopped;			/* lock: the thread has ended */
	uint64_t requested;		/* lock: rounds asked for */
	uint64_t completed;		/* lock: requests served */
	int result;			/* lock: the last round's */
	uint64_t seen;			/* lock: w->changes last looked at */
	double quiet_since;		/* lock */
	double pending_since;		/* lock: 0 when nothing pending */
	double retry_at;		/* lock */
	unsigned int failures;		/* lock */
	bool conflict;			/* lock: wait for a change */
	struct fs_tree *up;		/* lock: the head that conflicted */
	char **clashes;			/* lock: its paths in conflict */
	size_t nclashes;		/* lock */
	unsigned int writers;		/* lock: handles open for writing */
	uint64_t commits;		/* lock: commits made */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* How the journal names the upstream content at @path of @t. */
static const char *over_key(struct fs_tree *t, const char *path)
{
	struct fs_node *n = fs_tree_find(t, path);

	return n && n->type == HUBFS_ENTRY_FILE ? fs_node_key(n) : "-";
}

static void clashes_clear(struct fs_commit_state *cs)
{
	size_t i;

	for (i = 0; i < cs->nclashes; i++)
		hubfs_free(cs->clashes[i]);
	hubfs_free(cs->clashes);
	cs->clashes = NULL;
	cs->nclashes = 0;
	fs_tree_put(cs->up);
	cs->up = NULL;
}

/* --- the snapshot of one attempt ------------------------------------------- */

struct snap_file {
	struct hubfs_commit_file f;	/* f.path is path */
	char *path;
	struct fs_stage *stage;		/* a busy reference, or NULL */
	bool detached;			/* landed, and the stage is ours alone */
	struct fs_content ref;		/* content without a stage */
	struct fs_work *w;
	char over[66];			/* the row's over */
};

struct snapshot {
	struct fs_work *w;
	struct snap_file *v;
	size_t n, cap;
	char **idle;		/* rows that change nothing, to remove */
	size_t nidle;
	char **kept;		/* rows left out, to keep pending */
	size_t nkept;
	int err;
};

static int read_stage(void *arg, uint64_t off, void *buf, size_t len)
{
	struct snap_file *sf = arg;
	int err = fs_stage_pread(sf->stage, buf, len, off);

	if (err)
		hubfs_err_set("cannot read the staged content of %s: %s",
			      sf->path, hubfs_err_or("no detail"));
	return err;
}

static int read_ref(void *arg, uint64_t off, void *buf, size_t len)
{
	struct snap_file *sf = arg;

	return fs_work_read_content(sf->w, &sf->ref, buf, len, off);
}

static int list_add(char ***list, size_t *n, const char *path)
{
	char **v = hubfs_realloc(*list, (*n + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	*list = v;
	v[*n] = hubfs_strdup(path);
	if (!v[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

static void list_free(char ***list, size_t *n)
{
	size_t i;

	for (i = 0; i < *n; i++)
		hubfs_free((*list)[i]);
	hubfs_free(*list);
	*list = NULL;
	*n = 0;
}

static void snapshot_free(struct fs_work *w, struct snapshot *s)
{
	size_t i;

	pthread_mutex_lock(&w->lock);
	for (i = 0; i < s->n; i++) {
		struct snap_file *sf = &s->v[i];

		if (sf->stage) {
			sf->stage->busy--;
			fs_stage_put(w, sf->stage);
		}
		if (sf->ref.tree)
			fs_tree_put(sf->ref.tree);
		hubfs_free(sf->path);
	}
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	list_free(&s->idle, &s->nidle);
	list_free(&s->kept, &s->nkept);
	hubfs_free(s->v);
	memset(s, 0, sizeof(*s));
}

/* Remember a row that changes nothing (work lock held). */
static int snap_idle(struct snapshot *s, const char *path)
{
	return list_add(&s->idle, &s->nidle, path);
}

/*
 * Remove the rows that change nothing, so that they are not pending
 * forever; a file moved away and back is clean again.  Work lock held.
 */
static void snap_drop_idle(struct snapshot *s)
{
	size_t i;

	for (i = 0; i < s->nidle; i++) {
		struct fs_wnode *n;

		if (hubfs_journal_remove(s->w->journal, s->idle[i]) == 0 &&
		    (n = fs_work_find(s->w, s->idle[i])) != NULL &&
		    n->type == HUBFS_ENTRY_FILE && !n->stage)
			n->dirty = false;
	}
	list_free(&s->idle, &s->nidle);
}

/* One journal row into the snapshot (work lock held). */
static int snap_row(void *arg, const struct hubfs_jchange *c)
{
	struct snapshot *s = arg;
	struct fs_work *w = s->w;
	struct fs_node *b = fs_tree_find(w->base, c->path);
	struct snap_file *sf;
	struct fs_wnode *n = NULL;

	if (c->deleted) {
		/* Nothing to delete, unless an earlier attempt whose fate
		 * is unknown added the file: then keep the row for later. */
		if ((!b || b->type != HUBFS_ENTRY_FILE) && w->attempting)
			return list_add(&s->kept, &s->nkept, c->path);
		if (!b || b->type != HUBFS_ENTRY_FILE)
			return snap_idle(s, c->path);
	} else {
		n = fs_work_find(w, c->path);
		if (!n || n->type != HUBFS_ENTRY_FILE || !n->dirty) {
			hlog(LOG_WARNING, "%s: the change to %s is not in the "
			     "tree; left out of the commit", w->label, c->path);
			return list_add(&s->kept, &s->nkept, c->path);
		}
		if (!n->stage && n->base.tree && b &&
		    b->type == HUBFS_ENTRY_FILE &&
		    strcmp(fs_node_key(b), fs_node_key(n->base.node)) == 0)
			return snap_idle(s, c->path);	/* moved away and back */
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct snap_file *v = hubfs_realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	sf = &s->v[s->n];
	memset(sf, 0, sizeof(*sf));
	sf->w = w;
	sf->path = hubfs_strdup(c->path);
	if (!sf->path)
		return -ENOMEM;
	s->n++;
	sf->f.path = sf->path;
	sf->f.deleted = c->deleted;
	memcpy(sf->over, c->over, sizeof(sf->over));
	if (c->deleted)
		return 0;
	if (n->stage) {
		sf->stage = n->stage;
		sf->stage->refs++;
		sf->stage->busy++;
		sf->f.read = read_stage;
	} else {
		sf->ref = n->base;
		fs_tree_get(sf->ref.tree);
		sf->f.size = sf->ref.node->size;
		if (sf->ref.node->lfs && sf->ref.node->size > 0) {
			sf->f.known_lfs = true;
			memcpy(sf->f.sha256, sf->ref.node->sha256, 65);
		} else {
			sf->f.read = read_ref;
		}
	}
	sf->f.arg = sf;
	return 0;
}

/* --- messages ---------------------------------------------------------------- */

static void random_hex(char *out, size_t bytes)
{
	unsigned char r[32];
	size_t i;

	if (getrandom(r, bytes, 0) != (ssize_t)bytes) {
		uint64_t t = (uint64_t)now_ms() ^ (uint64_t)getpid();

		memcpy(r, &t, sizeof(t) < bytes ? sizeof(t) : bytes);
	}
	for (i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", r[i]);
}

/*
 * The summary: the template with {count}, {first} and {default}
 * replaced, or a default that names the files.
 */
static char *make_summary(const struct fs_commit_state *cs,
			  const struct snapshot *s)
{
	size_t i, adds = 0, dels = 0, first = 0;
	char def[512];
	struct hubfs_buf b = HUBFS_BUF_INIT(4096);
	const char *t;
	char *out = NULL;

	for (i = 0; i < s->n; i++) {
		if (s->v[i].f.skipped)
			continue;
		if (adds + dels == 0)
			first = i;
		if (s->v[i].f.deleted)
			dels++;
		else
			adds++;
	}
	if (adds + dels == 1)
		snprintf(def, sizeof(def), "%s %s", dels ? "Delete" : "Upload",
			 s->v[first].path);
	else if (dels == 0)
		snprintf(def, sizeof(def), "Upload %zu files", adds);
	else if (adds == 0)
		snprintf(def, sizeof(def), "Delete %zu files", dels);
	else
		snprintf(def, sizeof(def), "Update %zu files", adds + dels);
	if (!cs->message)
		return hubfs_strdup(def);
	for (t = cs->message; *t; t++) {
		if (strncmp(t, "{count}", 7) == 0) {
			hubfs_buf_printf(&b, "%zu", adds + dels);
			t += 6;
		} else if (strncmp(t, "{first}", 7) == 0) {
			hubfs_buf_append(&b, s->v[first].path,
					 strlen(s->v[first].path));
			t += 6;
		} else if (strncmp(t, "{default}", 9) == 0) {
			hubfs_buf_append(&b, def, strlen(def));
			t += 8;
		} else {
			hubfs_buf_append(&b, t, 1);
		}
	}
	if (hubfs_buf_detach(&out, &b) != 0)
		out = NULL;
	hubfs_buf_free(&b);
	if (out && !*out) {	/* the Hub refuses an empty summary */
		hubfs_free(out);
		out = hubfs_strdup(def);
	}
	return out;
}

static char *make_description(const struct snapshot *s, const char *marker)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(1u << 20);
	size_t i, named = 0;
	char *out = NULL;

	for (i = 0; i < s->n; i++) {
		if (s->v[i].f.skipped)
			continue;
		if (named++ < DESCRIBE_MAX)
			hubfs_buf_printf(&b, "%s %s\n",
					 s->v[i].f.deleted ? "deleted:" : "updated:",
					 s->v[i].path);
	}
	if (named > DESCRIBE_MAX)
		hubfs_buf_printf(&b, "... and %zu more\n", named - DESCRIBE_MAX);
	hubfs_buf_printf(&b, "\nHubfs-Commit: %s\n", marker);
	if (hubfs_buf_detach(&out, &b) != 0)
		out = NULL;
	hubfs_buf_free(&b);
	return out;
}

/* --- settling attempts ------------------------------------------------------- */

struct marker_search {
	const struct hubfs_jattempt *att;
	int natt;
	const char *stop;	/* the oldest parent: the search ends there */
	int found;		/* index into att, or -1 */
	char commit[41];
};

static int marker_cb(void *arg, const struct hubfs_hub_commit_info *c)
{
	struct marker_search *ms = arg;
	int i;

	for (i = 0; i < ms->natt; i++) {
		char tag[64];

		snprintf(tag, sizeof(tag), "Hubfs-Commit: %s",
			 ms->att[i].marker);
		if (c->message && strstr(c->message, tag)) {
			ms->found = i;
			memcpy(ms->commit, c->id, 41);
			return 1;
		}
	}
	return strcmp(c->id, ms->stop) == 0 ? 1 : 0;
}

/*
 * Put the bytes of a landed stage into the block cache under @key.  A
 * stage nothing else refers to any more (@detached) becomes the key's
 * data file as it is; otherwise, or when that cannot be done, its bytes
 * are copied.  Either way the stage is busy, so its bytes hold still.
 */
static void cache_import(struct fs_commit_state *cs, struct fs_stage *st,
			 const char *key, uint64_t size, bool detached)
{
	struct hubfs_cache_obj *obj;
	char *buf;
	uint64_t i, n = (size + CBS - 1) / CBS;

	if (detached) {
		/* Hashed just now, from these very bytes. */
		int err = hubfs_cache_adopt(cs->cache, key, size, st->fd,
					    true);

		/* Only an adopt that did nothing leaves the stage's bytes
		 * whole: after a later failure, blocks it could not record
		 * are holes, and copying them would cache zeros. */
		if (err != -EEXIST && err != -EXDEV)
			return;
	}
	if (size == 0 || hubfs_cache_obj_open(&obj, cs->cache, key, size) != 0)
		return;
	buf = hubfs_malloc(CBS);
	for (i = 0; buf && i < n; i++) {
		size_t len = i + 1 < n ? CBS : (size_t)(size - i * CBS);
		struct hubfs_cache_sum sum = { .len = 0 };
		uint64_t gen;

		if (hubfs_cache_block_present(obj, i) == 1)
			continue;
		/* Taken before the write: a failed write of the data file
		 * heard of meanwhile refuses the block. */
		gen = hubfs_cache_obj_gen(obj);
		if (hubfs_cache_reserve(cs->cache, len) != 0 ||
		    fs_stage_pread(st, buf, len, i * CBS) != 0 ||
		    hubfs_cache_obj_pwrite(obj, buf, len, i * CBS) != 0)
			break;
		hubfs_cache_sum_add(&sum, buf, len);
		if (hubfs_cache_block_commit_since(obj, i, &sum, gen) != 0)
			break;
	}
	/* Hashed just now, from these very bytes. */
	if (buf && i == n)
		hubfs_cache_obj_set_verified(obj);
	hubfs_free(buf);
	hubfs_cache_obj_close(obj);
}

/*
 * Attempt @a landed as @commit: record it, cache what it committed (when
 * @s is the attempt's snapshot) and follow the new tree.
 */
static int landed(struct fs_work *w, const struct hubfs_jattempt *a,
		  const char *commit, struct snapshot *s)
{
	struct fs_commit_state *cs = w->commit;
	struct fs_tree *tree;
	size_t i;
	int err;

	err = w->load_tree(w->arg, commit, &tree);
	if (err)
		return err;
	pthread_mutex_lock(&w->lock);
	err = hubfs_journal_attempt_done(w->journal, a, commit);
	if (!err) {
		/* Committed files that did not change since are clean now:
		 * their stages go, and their bytes to the cache (below). */
		for (i = 0; s && i < s->n; i++) {
			struct snap_file *sf = &s->v[i];

			if (sf->f.deleted)
				continue;
			fs_work_committed(w, sf->path, sf->stage);
			sf->detached = sf->stage && sf->stage->orphan &&
				       sf->stage->refs == 1;
		}
		fs_work_sync(w, tree);
		w->attempting = false;
		cs->commits++;
		clashes_clear(cs);
	}
	pthread_mutex_unlock(&w->lock);
	fs_tree_put(tree);
	/* Before the round's waiters hear of it, so that a read after
	 * fsync() finds the bytes here.  A read meanwhile fetches them. */
	for (i = 0; s && i < s->n; i++) {
		struct snap_file *sf = &s->v[i];

		if (sf->stage && !sf->f.skipped)
			cache_import(cs, sf->stage,
				     sf->f.lfs ? sf->f.sha256 : sf->f.oid,
				     sf->f.size, sf->detached);
	}
	return err;
}

/*
 * Settle the attempts whose outcome is unknown.  0 when none is left
 * unknown (or the branch still is at their parent: they are retried by
 * the next attempt, and at most one of them can ever land), 1 when the
 * one that landed is @mine (then recorded with its snapshot @s), or
 * -errno when the Hub could not say.
 */
static int settle(struct fs_work *w, struct snapshot *s, const char *mine)
{
	struct fs_commit_state *cs = w->commit;
	struct hubfs_jattempt att[ATTEMPTS_MAX];
	struct hubfs_hub_revision head;
	struct marker_search ms = { 0 };
	int n, err;

	pthread_mutex_lock(&w->lock);
	n = hubfs_journal_attempt_list(w->journal, att, ATTEMPTS_MAX);
	pthread_mutex_unlock(&w->lock);
	if (n <= 0)
		return n;
	err = hubfs_hub_get_revision(cs->hub, cs->branch, &head);
	if (err)
		return err;
	if (strcmp(head.commit, att[0].parent) == 0)
		return 0;
	ms.att = att;
	ms.natt = n;
	ms.stop = att[0].parent;
	ms.found = -1;
	err = hubfs_hub_list_commits(cs->hub, head.commit, HISTORY_MAX,
				     marker_cb, &ms);
	if (err < 0)
		return err;
	if (ms.found >= 0) {
		bool ours = mine && strcmp(att[ms.found].marker, mine) == 0;

		hlog(LOG_NOTICE, "%s: commit %.12s on %s was made by %s attempt "
		     "whose answer was lost", w->label, ms.commit, cs->branch,
		     ours ? "this" : "an earlier");
		err = landed(w, &att[ms.found], ms.commit, ours ? s : NULL);
		return err ? err : ours;
	}
	pthread_mutex_lock(&w->lock);
	err = hubfs_journal_attempt_clear(w->journal);
	w->attempting = false;
	pthread_mutex_unlock(&w->lock);
	return err;
}

/* Whether the files at @path differ between trees @a and @b. */
static bool differs(struct fs_tree *a, struct fs_tree *b, const char *path)
{
	struct fs_node *x = fs_tree_find(a, path), *y = fs_tree_find(b, path);
	bool fx = x && x->type == HUBFS_ENTRY_FILE;
	bool fy = y && y->type == HUBFS_ENTRY_FILE;

	if (fx != fy)
		return true;
	return fx && strcmp(fs_node_key(x), fs_node_key(y)) != 0;
}

/* A pending change, as the rebase check sees it. */
struct row_view {
	char *path;
	bool deleted;
	char over[66];
};

struct row_views {
	struct row_view *v;
	size_t n;
	int err;
};

static int row_view_cb(void *arg, const struct hubfs_jchange *c)
{
	struct row_views *rv = arg;
	struct row_view *v = hubfs_realloc(rv->v, (rv->n + 1) * sizeof(*v));

	if (!v) {
		rv->err = -ENOMEM;
		return 1;
	}
	rv->v = v;
	v[rv->n].path = hubfs_strdup(c->path);
	if (!v[rv->n].path) {
		rv->err = -ENOMEM;
		return 1;
	}
	v[rv->n].deleted = c->deleted;
	memcpy(v[rv->n].over, c->over, sizeof(v[rv->n].over));
	rv->n++;
	return 0;
}

/* Whether committing @r onto @up would overwrite a change made upstream
 * since @base. */
static bool clashes(struct fs_tree *base, struct fs_tree *up,
		    struct row_view *r)
{
	char *p = r->path, *slash;
	struct fs_node *u;
	bool clash = differs(base, up, p);

	/* The owner chose to overwrite exactly this upstream content. */
	if (clash && r->over[0] && strcmp(r->over, over_key(up, p)) == 0)
		clash = false;
	if (clash && r->deleted && !fs_tree_find(up, p))
		clash = false;	/* deleted upstream too */
	/* A file upstream where a directory above this path is. */
	for (slash = strchr(p, '/'); !clash && slash;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		clash = differs(base, up, p);
		*slash = '/';
	}
	/* A directory upstream where a file is to go. */
	u = fs_tree_find(up, p);
	if (!clash && !r->deleted && u && u->type == HUBFS_ENTRY_DIR) {
		struct fs_node *b = fs_tree_find(base, p);

		clash = !(b && b->type == HUBFS_ENTRY_DIR);
	}
	return clash;
}

/*
 * The branch moved from our base to @head.  Rebase when no pending
 * change (those of the attempt, and those made since) is to a path, or
 * below a path, that changed upstream; else it is a conflict: remember
 * its paths for fs_commit_pending() and fs_commit_resolve().
 */
static int rebase(struct fs_work *w, const char *head)
{
	struct fs_commit_state *cs = w->commit;
	struct fs_tree *base, *up;
	struct row_views rows = { 0 };
	char **list = NULL;
	size_t i, n = 0;
	int err = 0;

	err = w->load_tree(w->arg, head, &up);
	if (err)
		return err;
	/* One critical section: no change can slip in between the check
	 * and the new base. */
	pthread_mutex_lock(&w->lock);
	base = w->base;
	fs_tree_get(base);
	err = hubfs_journal_list(w->journal, row_view_cb, &rows);
	err = err < 0 ? err : rows.err;
	for (i = 0; !err && i < rows.n; i++) {
		if (!clashes(base, up, &rows.v[i]))
			continue;
		if (n == 0)
			hubfs_err_set("conflict on %s with commit %.12s",
				      rows.v[i].path, head);
		hlog(LOG_ERR, "%s: cannot commit to %s: %s was changed "
		     "upstream (the branch is now at %.12s); the local change "
		     "stays staged and shown in the mount", w->label,
		     cs->branch, rows.v[i].path, head);
		err = list_add(&list, &n, rows.v[i].path);
	}
	for (i = 0; i < rows.n; i++)
		hubfs_free(rows.v[i].path);
	hubfs_free(rows.v);
	clashes_clear(cs);
	if (n > 0) {
		cs->clashes = list;
		cs->nclashes = n;
		cs->up = up;
		fs_tree_get(up);
		list = NULL;
		n = 0;
		err = -ESTALE;
	} else if (!err) {
		err = hubfs_journal_set_base(w->journal, head);
		if (!err)
			fs_work_sync(w, up);
	}
	pthread_mutex_unlock(&w->lock);
	if (!err)
		hlog(LOG_NOTICE, "%s: %s moved upstream to %.12s, touching none "
		     "of the files being committed: rebased", w->label,
		     cs->branch, head);
	list_free(&list, &n);
	fs_tree_put(base);
	fs_tree_put(up);
	return err;
}

/* hubfs_commit_make() waits for the uploads at close of snapshot @arg. */
static void wait_uploads(void *arg)
{
	struct snapshot *s = arg;
	size_t i;

	pthread_mutex_lock(&s->w->lock);
	for (i = 0; i < s->n; i++)
		if (s->v[i].stage)
			fs_upload_wait(s->w, s->v[i].stage);
	pthread_mutex_unlock(&s->w->lock);
}

/* Whether a failed commit call may still have made the commit. */
static bool outcome_unknown(int err)
{
	switch (err) {
	case -ESTALE: case -EACCES: case -EPERM: case -EINVAL: case -EEXIST:
	case -ENOENT: case -EFBIG: case -EAGAIN: case -ENOMEM:
		return false;
	default:
		return true;
	}
}

/* One attempt: 0, or -errno (-ESTALE: the branch moved). */
static int attempt(struct fs_work *w, bool *rebased)
{
	struct fs_commit_state *cs = w->commit;
	struct snapshot s = { .w = w };
	struct hubfs_jattempt a = { 0 };
	struct hubfs_commit_req req = { 0 };
	struct hubfs_hub_revision head;
	char commit[41], *summary = NULL, *description = NULL;
	bool made = false, sent;
	size_t i;
	int err;

	*rebased = false;
	random_hex(a.marker, 16);
	pthread_mutex_lock(&w->lock);
	snprintf(a.parent, sizeof(a.parent), "%s", w->base->commit);
	err = hubfs_journal_list(w->journal, snap_row, &s);
	if (err >= 0) {
		snap_drop_idle(&s);
		err = 0;
	}
	if (!err && s.n > 0) {
		err = hubfs_journal_attempt_begin(w->journal, a.parent,
						  a.marker);
		if (!err)
			w->attempting = true;
		/* Newer than the attempt: they stay when it lands. */
		for (i = 0; !err && i < s.nkept; i++)
			err = hubfs_journal_touch(w->journal, s.kept[i]);
	}
	pthread_mutex_unlock(&w->lock);
	if (err < 0 || s.n == 0)
		goto out_free;
	{
		struct hubfs_jattempt all[ATTEMPTS_MAX];
		int k, n;

		/* The generation recorded with our marker. */
		pthread_mutex_lock(&w->lock);
		n = hubfs_journal_attempt_list(w->journal, all, ATTEMPTS_MAX);
		pthread_mutex_unlock(&w->lock);
		for (k = 0; k < n; k++)
			if (strcmp(all[k].marker, a.marker) == 0)
				a = all[k];
	}
	for (i = 0; i < s.n && !err; i++) {
		struct snap_file *sf = &s.v[i];

		if (!sf->stage)
			continue;
		err = fs_stage_fill_all(w, sf->stage);
		pthread_mutex_lock(&w->lock);
		sf->f.size = sf->stage->size;
		pthread_mutex_unlock(&w->lock);
		if (!err)
			sf->f.hashed = fs_stage_sha256(w, sf->stage,
						       sf->f.sha256) == 1;
	}
	if (err)
		goto out_forget;
	/* An object being uploaded since its file was closed is asked for
	 * after the others are sent (wait_uploads()), so that it is not
	 * sent twice.  The stages are busy now: no upload starts. */
	pthread_mutex_lock(&w->lock);
	for (i = 0; i < s.n; i++)
		s.v[i].f.uploading = s.v[i].stage && s.v[i].stage->uploading;
	pthread_mutex_unlock(&w->lock);
	/* The summary names files; work it out before knowing which are
	 * skipped, as the same for every attempt. */
	summary = make_summary(cs, &s);
	description = make_description(&s, a.marker);
	if (!summary || !description) {
		err = -ENOMEM;
		goto out_forget;
	}
	req.branch = cs->branch;
	req.parent = a.parent;
	req.summary = summary;
	req.description = description;
	req.n = s.n;
	req.wait_uploads = wait_uploads;
	req.wait_arg = &s;
	req.files = hubfs_calloc(s.n, sizeof(*req.files));
	if (!req.files) {
		err = -ENOMEM;
		goto out_forget;
	}
	for (i = 0; i < s.n; i++)
		req.files[i] = s.v[i].f;
	err = hubfs_commit_make(cs->hub, &req, commit, &made);
	sent = req.sent;
	for (i = 0; i < s.n; i++)
		s.v[i].f = req.files[i];
	if (!err) {
		if (made)
			hlog(LOG_INFO, "%s: committed %s to %s as %.12s",
			     w->label, summary, cs->branch, commit);
		err = landed(w, &a, commit, &s);
		goto out_free;
	}
	if (err == -ESTALE) {
		bool moved;

		/* The branch moved, maybe by this very attempt (a retry
		 * after a lost answer), or by an earlier one. */
		err = settle(w, &s, a.marker);
		if (err > 0) {
			err = 0;
			goto out_free;
		}
		if (!err)
			err = hubfs_hub_get_revision(cs->hub, cs->branch, &head);
		if (err)
			goto out_free;
		pthread_mutex_lock(&w->lock);
		moved = strcmp(head.commit, w->base->commit) != 0;
		pthread_mutex_unlock(&w->lock);
		if (moved)
			err = rebase(w, head.commit);
		if (!err)
			*rebased = true;
		goto out_free;
	}
	if (sent && outcome_unknown(err))
		goto out_free;	/* settled by the next round */
out_forget:
	pthread_mutex_lock(&w->lock);
	hubfs_journal_attempt_remove(w->journal, a.marker);
	w->attempting = hubfs_journal_attempt_list(w->journal, &a, 1) > 0;
	pthread_mutex_unlock(&w->lock);
out_free:
	hubfs_free(req.files);
	hubfs_free(summary);
	hubfs_free(description);
	snapshot_free(w, &s);
	return err;
}

/* Whether the journal holds any change (work lock held). */
static int count_cb(void *arg, const struct hubfs_jchange *c)
{
	(void)arg, (void)c;
	return 1;	/* one is enough */
}

static int count_all_cb(void *arg, const struct hubfs_jchange *c)
{
	(void)c;
	++*(uint64_t *)arg;
	return 0;
}

/* How many changes are staged (journal rows).  Called with the lock. */
static uint64_t pending_count(struct fs_work *w)
{
	uint64_t n = 0;

	hubfs_journal_list(w->journal, count_all_cb, &n);
	return n;
}

static bool pending(struct fs_work *w)
{
	return hubfs_journal_list(w->journal, count_cb, NULL) == 1 ||
	       w->attempting;
}

/* A round: settle, then attempt (rebasing a few times if need be). */
static int round_run(struct fs_work *w)
{
	bool rebased = true;
	int tries, err = 0;

	err = settle(w, NULL, NULL);
	if (err > 0)
		err = 0;
	for (tries = 0; !err && rebased && tries < ROUND_TRIES; tries++)
		err = attempt(w, &rebased);
	if (err && outcome_unknown(err)) {
		bool unknown;

		pthread_mutex_lock(&w->lock);
		unknown = w->attempting;
		pthread_mutex_unlock(&w->lock);
		/* The answer was lost, yet the commit may have landed: the
		 * history says, and then the round succeeded. */
		if (unknown && settle(w, NULL, NULL) >= 0) {
			pthread_mutex_lock(&w->lock);
			if (!pending(w))
				err = 0;
			pthread_mutex_unlock(&w->lock);
		}
	}
	return err;
}

/* --- the committer thread ------------------------------------------------------ */


/*
 * Nothing pending: show the branch where it is now, if someone else
 * moved it.  With changes pending the view moves at their commit
 * (a rebase), so that what is shown is what is committed.  Called
 * without the work lock.
 */
static void follow(struct fs_work *w)
{
	struct fs_commit_state *cs = w->commit;
	struct hubfs_hub_revision head;
	struct fs_tree *tree;
	char shown[41];
	bool moved;
	int err;

	pthread_mutex_lock(&w->lock);
	memcpy(shown, w->base->commit, sizeof(shown));
	pthread_mutex_unlock(&w->lock);
	err = hubfs_hub_get_revision(cs->hub, cs->branch, &head);
	if (err) {
		if (!cs->follow_failed)
			hlog(LOG_WARNING, "%s: cannot see where %s is now (%s); "
			     "the mount keeps showing commit %.12s", w->label,
			     cs->branch, hubfs_err_or(strerror(-err)), shown);
		cs->follow_failed = true;
		return;
	}
	cs->follow_failed = false;
	pthread_mutex_lock(&w->lock);
	moved = strcmp(head.commit, shown) != 0 && !pending(w);
	pthread_mutex_unlock(&w->lock);
	if (!moved || w->load_tree(w->arg, head.commit, &tree) != 0)
		return;
	pthread_mutex_lock(&w->lock);
	/* A change made meanwhile is committed onto the base it was made
	 * on; this poll is skipped. */
	if (!pending(w) &&
	    hubfs_journal_set_base(w->journal, head.commit) == 0) {
		hlog(LOG_NOTICE, "%s: %s moved upstream from %.12s to %.12s",
		     w->label, cs->branch, w->base->commit, head.commit);
		fs_work_sync(w, tree);
	}
	pthread_mutex_unlock(&w->lock);
	fs_tree_put(tree);
}

static void *committer_main(void *arg)
{
	struct fs_work *w = arg;
	struct fs_commit_state *cs = w->commit;

	bool final_tried = false;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		double now = now_ms();
		bool want = cs->requested > cs->completed;
		bool due = false;

		if (w->changes != cs->seen) {
			cs->seen = w->changes;
			cs->quiet_since = now;
			cs->conflict = false;
			/* Some changes leave nothing to commit (a new file
			 * removed again, a dropped conflict). */
			if (!pending(w))
				cs->pending_since = 0;
			else if (cs->pending_since == 0)
				cs->pending_since = now;
		}
		if (!want && cs->pending_since > 0 && !cs->conflict &&
		    now >= cs->retry_at) {
			due = (now - cs->quiet_since >= cs->quiet_ms &&
			       cs->writers == 0) ||
			      now - cs->pending_since >= cs->max_delay_ms;
			if (due && !pending(w)) {
				cs->pending_since = 0;
				due = false;
			}
		}
		if (cs->stop && !want) {
			/* Unmounting: one last round for what is left. */
			if (final_tried || !pending(w) || cs->conflict)
				break;
			final_tried = true;
			due = true;
		}
		if (want || due) {
			uint64_t ticket = cs->requested;
			int err;

			pthread_mutex_unlock(&w->lock);
			hubfs_err_clear();
			err = round_run(w);
			if (err)
				hlog(err == -ESTALE ? LOG_ERR : LOG_WARNING,
				     "%s: commit to %s failed: %s: %s; the "
				     "changes stay staged", w->label,
				     cs->branch, strerror(-err),
				     hubfs_err_or("no detail"));
			pthread_mutex_lock(&w->lock);
			cs->completed = ticket;
			cs->result = err;
			if (err)
				w->rounds_failed++;
			if (!err) {
				cs->failures = 0;
				cs->retry_at = 0;
				cs->pending_since = pending(w) ? now_ms() : 0;
				/* What is left waits a quiet period again, so
				 * a round that cannot take it does not spin. */
				cs->quiet_since = now_ms();
			} else if (err == -ESTALE) {
				cs->conflict = true;
				cs->seen = w->changes;
			} else {
				double delay = RETRY_MIN_MS;
				unsigned int k;

				for (k = 0; k < cs->failures &&
					    delay < RETRY_MAX_MS; k++)
					delay *= 2;
				cs->failures++;
				cs->retry_at = now_ms() +
					(delay < RETRY_MAX_MS ? delay
							      : RETRY_MAX_MS);
			}
			pthread_cond_broadcast(&w->cond);
			continue;
		}
		if (!cs->stop && cs->pending_since == 0 && !w->attempting &&
		    cs->writers == 0 &&
		    (cs->follow_now || (cs->refresh_ms &&
					now - cs->followed_at >=
						cs->refresh_ms))) {
			cs->followed_at = now;
			cs->follow_now = false;
			pthread_mutex_unlock(&w->lock);
			follow(w);
			pthread_mutex_lock(&w->lock);
			continue;
		}
		{
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += TICK_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		}
	}
	cs->stopped = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int fs_commit_start(struct fs_work *w, const struct fs_commit_opts *o)
{
	struct fs_commit_state *cs = hubfs_calloc(1, sizeof(*cs));

	if (!cs)
		return -ENOMEM;
	cs->hub = o->hub;
	cs->cache = o->cache;
	cs->branch = hubfs_strdup(o->branch);
	cs->message = o->message ? hubfs_strdup(o->message) : NULL;
	cs->quiet_ms = o->quiet_ms;
	cs->max_delay_ms = o->max_delay_ms;
	cs->refresh_ms = o->refresh_ms;
	cs->followed_at = now_ms();
	if (!cs->branch || (o->message && !cs->message)) {
		hubfs_free(cs->branch);
		hubfs_free(cs->message);
		hubfs_free(cs);
		return -ENOMEM;
	}
	{
		struct hubfs_jattempt a;

		w->attempting = hubfs_journal_attempt_list(w->journal, &a,
							   1) > 0;
	}
	cs->pending_since = pending(w) ? now_ms() : 0;
	cs->quiet_since = now_ms();
	w->commit = cs;
	if (pthread_create(&cs->thread, NULL, committer_main, w) != 0) {
		w->commit = NULL;
		hubfs_free(cs->branch);
		hubfs_free(cs->message);
		hubfs_free(cs);
		return -EAGAIN;
	}
	cs->started = true;
	if (o->upload_at_close && fs_upload_start(w, o->hub, o->branch) != 0)
		hlog(LOG_WARNING, "%s: cannot start uploading files at close; "
		     "commits send them", w->label);
	return 0;
}

int fs_commit_sync(struct fs_work *w)
{
	struct fs_commit_state *cs = w->commit;
	uint64_t ticket;
	int err;

	if (!cs)
		return 0;
	pthread_mutex_lock(&w->lock);
	if (!pending(w)) {
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	ticket = ++cs->requested;
	pthread_cond_broadcast(&w->cond);
	while (cs->completed < ticket && !cs->stopped)
		pthread_cond_wait(&w->cond, &w->lock);
	err = cs->completed >= ticket ? cs->result : -EIO;
	pthread_mutex_unlock(&w->lock);
	return err;
}

void fs_commit_writers(struct fs_work *w, int delta)
{
	if (!w->commit)
		return;
	pthread_mutex_lock(&w->lock);
	w->commit->writers += (unsigned int)delta;
	pthread_mutex_unlock(&w->lock);
}

int fs_commit_stop(struct fs_work *w)
{
	struct fs_commit_state *cs = w->commit;
	uint64_t n;
	bool left;

	if (!cs)
		return 0;
	pthread_mutex_lock(&w->lock);
	cs->stop = true;
	n = pending_count(w);
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	/* A service manager waiting for the stop shows why it takes time. */
	if (n)
		hubfs_notifyf("STATUS=Committing %llu pending change%s to %s",
			      (unsigned long long)n, n == 1 ? "" : "s",
			      cs->branch);
	if (cs->started)
		pthread_join(cs->thread, NULL);
	/* After the last round, which waited for the uploads it needed. */
	fs_upload_stop(w);
	pthread_mutex_lock(&w->lock);
	n = pending_count(w);
	left = n > 0 || w->attempting;
	pthread_mutex_unlock(&w->lock);
	if (left) {
		hubfs_notifyf("STATUS=%llu change%s left staged: not committed",
			      (unsigned long long)n, n == 1 ? "" : "s");
		hlog(LOG_WARNING, "%s: changes to %s are not committed yet; they "
		     "stay staged and are committed at the next writable "
		     "mount of the branch", w->label, cs->branch);
	} else {
		hubfs_notify("STATUS=All changes committed");
	}
	/* Under the lock: the metrics thread reads it (stats). */
	pthread_mutex_lock(&w->lock);
	w->commit = NULL;
	clashes_clear(cs);
	pthread_mutex_unlock(&w->lock);
	hubfs_free(cs->branch);
	hubfs_free(cs->message);
	hubfs_free(cs);
	return left ? -EIO : 0;
}

struct pending_list {
	struct fs_work *w;
	struct fs_commit_state *cs;
	struct hubfs_buf *out;
	int err;
};

static int pending_line(void *arg, const struct hubfs_jchange *c)
{
	struct pending_list *pl = arg;
	const char *state = c->deleted ? "deleted" : "modified";
	size_t i;

	for (i = 0; pl->cs && i < pl->cs->nclashes; i++)
		if (strcmp(pl->cs->clashes[i], c->path) == 0)
			state = "conflict";
	for (i = 0; i < pl->w->nunshown; i++)
		if (fs_unshown_is(&pl->w->unshown[i], c))
			state = "unshown";
	if (!pl->err)
		pl->err = hubfs_buf_printf(pl->out, "%s %s\n", state, c->path);
	return 0;
}

void fs_commit_get_stats(struct fs_work *w, struct fs_commit_stats *out)
{
	struct fs_commit_state *cs;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&w->lock);
	cs = w->commit;
	out->pending = pending_count(w);
	if (cs) {
		out->failing = cs->failures;
		out->conflicts = cs->nclashes;
		out->last_error = cs->result;
		if (cs->pending_since > 0)
			out->pending_age_s = (now_ms() - cs->pending_since) /
					     1000.0;
	}
	out->failed = w->rounds_failed;
	out->uploads_at_close = w->uploads_done;
	out->uploads_at_close_bytes = w->upload_bytes;
	out->uploads_at_close_stopped = w->uploads_stopped;
	pthread_mutex_unlock(&w->lock);
}

int fs_commit_pending(struct fs_work *w, struct hubfs_buf *out)
{
	struct fs_commit_state *cs = w->commit;
	struct pending_list pl = { .w = w, .cs = cs, .out = out };
	int n;

	pthread_mutex_lock(&w->lock);
	n = hubfs_journal_list(w->journal, pending_line, &pl);
	pthread_mutex_unlock(&w->lock);
	return n < 0 ? n : pl.err;
}

int fs_commit_resolve(struct fs_work *w, struct fs_wnode *n, bool ours)
{
	struct fs_commit_state *cs = w->commit;
	size_t i = 0, done = 0;
	char *path;
	int err = 0;

	if (!cs)
		return -EROFS;
	pthread_mutex_lock(&w->lock);
	path = fs_wnode_path(n);
	if (!path) {
		pthread_mutex_unlock(&w->lock);
		return -ENOMEM;
	}
	if (n != w->root && !*path) {
		hubfs_err_set("%s was removed", n->name);
		err = -ENOENT;
	}
	while (!err && i < cs->nclashes) {
		char *p = cs->clashes[i];

		if (*path && strcmp(p, path) != 0) {
			i++;
			continue;
		}
		err = ours ? hubfs_journal_set_over(w->journal, p,
						    over_key(cs->up, p))
			   : fs_work_discard(w, p);
		if (err)
			break;
		hlog(LOG_NOTICE, "%s: conflict on %s resolved: %s", w->label, p,
		     ours ? "the local content is committed over the "
			    "upstream change"
			  : "the local change is dropped");
		hubfs_free(p);
		cs->clashes[i] = cs->clashes[--cs->nclashes];
		done++;
	}
	/* A change replay could not show (its staged copy lost) can only
	 * be dropped; one written again since is a new change, kept. */
	for (i = 0; !err && !ours && i < w->nunshown;) {
		const struct fs_unshown *u = &w->unshown[i];
		int cur;

		if (*path && strcmp(u->path, path) != 0) {
			i++;
			continue;
		}
		cur = fs_work_unshown_current(w, u);
		if (cur < 0) {
			err = cur;
			break;
		}
		if (cur) {
			err = fs_work_discard(w, u->path);
			if (err)
				break;
			hlog(LOG_NOTICE, "%s: the change to %s that could not "
			     "be restored is dropped", w->label, u->path);
			done++;
		}
		fs_work_unshown_forget(w, i);
	}
	if (done) {
		/* A change: the committer tries again after the quiet
		 * period, or looks at the branch if nothing is left. */
		w->changes++;
		cs->follow_now = true;
		pthread_cond_broadcast(&w->cond);
	} else if (!err) {
		hubfs_err_set("no conflict to resolve at %s",
			      *path ? path : "the mount");
		err = -EINVAL;
	}
	pthread_mutex_unlock(&w->lock);
	hubfs_free(path);
	return err;
}
