/*
 * The working tree of a writable revision, and the local bytes of the
 * files changed in it.
 *
 * DESIGN
 *
 * What it owns.  The tree of wnodes that the mount shows for its (only)
 * writable revision; the stages (local bytes) of changed files; and the
 * journal rows that record, durably, how the tree differs from its base
 * commit.  Every change to the tree writes its journal rows before it
 * returns, in one journal transaction, so that after a crash replaying
 * the rows over the base gives back the same tree (empty directories
 * excepted: git cannot hold them, and they are not journaled).
 *
 * Invariants (under the lock):
 * - tree = base + journal rows (+ empty local directories).
 * - A file wnode is dirty exactly when a row gives its path content.  A
 *   clean file reads base; a file with a stage reads the stage.
 * - A directory not materialized has no state of its own: its children
 *   are those of its base directory.  Materializing creates a wnode per
 *   child.  Anything that changes a directory materializes it first.
 * - A stage's filled bits and base_len are journaled with it, so that a
 *   restart knows which blocks are local and which still come from base.
 * - A stage's running sha256, when it has one, is of exactly its bytes
 *   [0, sha_len) once the writes that claimed [sha_len, sha_end) have
 *   hashed them: every write or cut below sha_end drops it, and only a
 *   write starting at sha_end extends it.  A write is answered before it
 *   hashes its bytes, so that the writer's next write reaches the stage
 *   meanwhile.  It is not journaled: after a restart the commit hashes
 *   the file by reading it.
 *
 * States of a file: clean (base only) -> dirty (row, maybe stage) ->
 * clean again when a commit with its content lands (the stage is kept
 * while handles are open, then dropped).  Unlinked wnodes live on, out
 * of the tree, until their last reference goes.
 *
 * Locks.  w->lock guards the tree, every wnode and stage field but the
 * running hash (stage->sha_lock, claims under stage->io: work_int.h),
 * and the journal handle.  It is never held across an HTTP request or a
 * wait for one: filling a block from base fetches first, unlocked, then
 * writes under the stage's io lock.  stage->io is taken before w->lock,
 * never the other way round; stage->sha_lock is a leaf.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"
#include "work_int.h"

static struct fs_wnode *wnode_new(const char *name, enum hubfs_entry_type t)
{
	struct fs_wnode *n = hubfs_calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->name = hubfs_strdup(name);
	if (!n->name) {
		hubfs_free(n);
		return NULL;
	}
	n->type = t;
	n->refs = 1;
	return n;
}

static void content_set(struct fs_content *c, struct fs_tree *tree,
			struct fs_node *node)
{
	if (tree)
		fs_tree_get(tree);
	if (c->tree)
		fs_tree_put(c->tree);
	c->tree = tree;
	c->node = node;
}

/* Free @st, whose locks are initialised, and close its file. */
static void stage_free(struct fs_stage *st)
{
	if (st->fd >= 0)
		close(st->fd);
	content_set(&st->base, NULL, NULL);
	hubfs_free(st->filled);
	EVP_MD_CTX_free(st->sha);
	pthread_mutex_destroy(&st->io);
	pthread_mutex_destroy(&st->sha_lock);
	pthread_cond_destroy(&st->sha_cond);
	hubfs_free(st);
}

void fs_stage_put(struct fs_work *w, struct fs_stage *st)
{
	if (!st || --st->refs > 0)
		return;
	if (st->orphan)
		hubfs_journal_stage_unlink(w->journal, st->name);
	stage_free(st);
}

/* The locks of a new stage @st. */
static void stage_init_locks(struct fs_stage *st)
{
	pthread_mutex_init(&st->io, NULL);
	pthread_mutex_init(&st->sha_lock, NULL);
	pthread_cond_init(&st->sha_cond, NULL);
}

static void wnode_free(struct fs_work *w, struct fs_wnode *n);

static void wnode_put_locked(struct fs_work *w, struct fs_wnode *n)
{
	if (n && --n->refs == 0)
		wnode_free(w, n);
}

static void wnode_free(struct fs_work *w, struct fs_wnode *n)
{
	uint32_t i;

	for (i = 0; i < n->nkids; i++) {
		n->kids[i]->parent = NULL;
		wnode_put_locked(w, n->kids[i]);
	}
	hubfs_free(n->kids);
	content_set(&n->base, NULL, NULL);
	if (n->stage)
		fs_stage_put(w, n->stage);
	hubfs_free(n->name);
	hubfs_free(n);
}


void fs_wnode_get(struct fs_work *w, struct fs_wnode *n)
{
	pthread_mutex_lock(&w->lock);
	n->refs++;
	pthread_mutex_unlock(&w->lock);
}

void fs_wnode_put(struct fs_work *w, struct fs_wnode *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&w->lock);
	wnode_put_locked(w, n);
	pthread_mutex_unlock(&w->lock);
}

char *fs_wnode_path(const struct fs_wnode *n)
{
	const struct fs_wnode *p;
	size_t len = 0;
	char *out, *end;

	for (p = n; p && p->parent; p = p->parent)
		len += strlen(p->name) + 1;
	out = hubfs_malloc(len + 1);
	if (!out)
		return NULL;
	end = out + (len ? len - 1 : 0);
	*end = '\0';
	for (p = n; p && p->parent; p = p->parent) {
		size_t l = strlen(p->name);

		end -= l;
		memcpy(end, p->name, l);
		if (end > out)
			*--end = '/';
	}
	return out;
}

/*
 * Whether @n is in the tree: the paths of the nodes that are not (an
 * unlinked file still open, what was below a removed directory) mean
 * nothing and must never reach the journal.
 */
static bool attached(const struct fs_work *w, const struct fs_wnode *n)
{
	while (n->parent)
		n = n->parent;
	return n == w->root;
}

/* --- directories ------------------------------------------------------------ */

static int kid_index(const struct fs_wnode *d, const char *name, bool *found)
{
	uint32_t lo = 0, hi = d->nkids;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		int c = strcmp(d->kids[mid]->name, name);

		if (c == 0) {
			*found = true;
			return (int)mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return (int)lo;
}

/* Room for one more child of @d. */
static int kid_reserve(struct fs_wnode *d)
{
	uint32_t cap = d->cap ? d->cap * 2 : 8;
	struct fs_wnode **k;

	if (d->nkids < d->cap)
		return 0;
	k = hubfs_realloc(d->kids, cap * sizeof(*k));
	if (!k)
		return -ENOMEM;
	d->kids = k;
	d->cap = cap;
	return 0;
}

static int kid_insert(struct fs_wnode *d, struct fs_wnode *n)
{
	bool found;
	int i = kid_index(d, n->name, &found);

	if (found)
		return -EEXIST;
	if (kid_reserve(d) != 0)
		return -ENOMEM;
	memmove(&d->kids[i + 1], &d->kids[i],
		(d->nkids - (uint32_t)i) * sizeof(d->kids[0]));
	d->kids[i] = n;
	d->nkids++;
	n->parent = d;
	return 0;
}

/* Unlink @n from its parent; the parent's reference passes to the caller. */
static void kid_remove(struct fs_wnode *n)
{
	struct fs_wnode *d = n->parent;
	bool found;
	int i;

	if (!d)
		return;
	i = kid_index(d, n->name, &found);
	if (found && d->kids[i] == n) {
		memmove(&d->kids[i], &d->kids[i + 1],
			(d->nkids - (uint32_t)i - 1) * sizeof(d->kids[0]));
		d->nkids--;
	}
	n->parent = NULL;
}

/*
 * A directory emptied here stays until rmdir, as on any file system,
 * although the Hub keeps no empty directory: it is the mount's own from
 * now on (until unmount).
 */
static void keep_if_empty(struct fs_wnode *d)
{
	if (d->nkids == 0 && d->parent)
		d->local = true;
}

static struct fs_wnode *wnode_from_node(struct fs_tree *tree,
					struct fs_node *node)
{
	struct fs_wnode *n = wnode_new(node->name, node->type);

	if (!n)
		return NULL;
	content_set(&n->base, tree, node);
	n->mtime = tree->time;
	return n;
}

static int materialize(struct fs_wnode *d)
{
	struct fs_node *bd = d->base.node;
	uint32_t i;

	if (d->materialized)
		return 0;
	if (bd && bd->nchildren) {
		d->kids = hubfs_calloc(bd->nchildren, sizeof(*d->kids));
		if (!d->kids)
			return -ENOMEM;
		d->cap = bd->nchildren;
		for (i = 0; i < bd->nchildren; i++) {
			struct fs_wnode *k = wnode_from_node(d->base.tree,
							     bd->children[i]);

			if (!k)
				return -ENOMEM;	/* the ones made stay */
			k->parent = d;
			d->kids[d->nkids++] = k;
		}
	}
	d->materialized = true;
	return 0;
}

static struct fs_wnode *kid_find(struct fs_wnode *d, const char *name)
{
	bool found;
	int i;

	if (materialize(d) != 0)
		return NULL;
	i = kid_index(d, name, &found);
	return found ? d->kids[i] : NULL;
}

struct fs_wnode *fs_work_find(struct fs_work *w, const char *path)
{
	struct fs_wnode *n = w->root;
	char *copy, *p, *slash;

	if (!*path)
		return n;
	copy = hubfs_strdup(path);
	if (!copy)
		return NULL;
	for (p = copy; n && p; p = slash) {
		slash = strchr(p, '/');
		if (slash)
			*slash++ = '\0';
		if (n->type != HUBFS_ENTRY_DIR) {
			n = NULL;
			break;
		}
		n = kid_find(n, p);
	}
	hubfs_free(copy);
	return n;
}

struct fs_wnode *fs_work_root(struct fs_work *w)
{
	return w->root;
}

/* --- stages ------------------------------------------------------------------ */

static uint64_t nblocks(uint64_t size)
{
	return (size + WBS - 1) / WBS;
}

static bool block_local(const struct fs_stage *st, uint64_t idx)
{
	if (idx * WBS >= st->base_len)
		return true;
	if (idx / 8 >= st->filled_len)
		return false;
	return st->filled[idx / 8] & (1u << (idx % 8));
}

/* Wait until every claimed byte of @st is hashed.  sha_lock held. */
static void sha_quiesce(struct fs_stage *st)
{
	while (st->sha_len != st->sha_end)
		pthread_cond_wait(&st->sha_cond, &st->sha_lock);
}

/* Start the running sha256 of @st over (it is empty now); without
 * memory it is simply not kept.  st->io held, or @st not shared yet. */
static void sha_restart(struct fs_stage *st)
{
	pthread_mutex_lock(&st->sha_lock);
	sha_quiesce(st);
	if (!st->sha)
		st->sha = EVP_MD_CTX_new();
	if (st->sha && !EVP_DigestInit_ex(st->sha, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(st->sha);
		st->sha = NULL;
	}
	st->sha_len = st->sha_end = 0;
	st->sha_failed = false;
	pthread_mutex_unlock(&st->sha_lock);
}

/* Bytes of @st from @off on are about to change (a write or a cut): the
 * running sha256 survives only if they all lie past what was claimed.
 * st->io held. */
static void sha_before_write(struct fs_stage *st, uint64_t off)
{
	pthread_mutex_lock(&st->sha_lock);
	if (st->sha && off < st->sha_end) {
		sha_quiesce(st);
		EVP_MD_CTX_free(st->sha);
		st->sha = NULL;
	}
	pthread_mutex_unlock(&st->sha_lock);
}

/* Whether bytes [@off, +@len), just written, extend the running sha256:
 * if so they are claimed, and sha_hash() must follow.  st->io held. */
static bool sha_claim(struct fs_stage *st, uint64_t off, size_t len)
{
	bool claimed;

	pthread_mutex_lock(&st->sha_lock);
	claimed = st->sha && off == st->sha_end;
	if (claimed)
		st->sha_end += len;
	pthread_mutex_unlock(&st->sha_lock);
	return claimed;
}

/* Hash the claimed bytes @buf at @off, after the claims before them.
 * No lock held: io is not needed, and a claim before this one may be
 * waiting for its own turn without it. */
static void sha_hash(struct fs_stage *st, const void *buf, size_t len,
		     uint64_t off)
{
	bool ok;

	pthread_mutex_lock(&st->sha_lock);
	while (st->sha_len != off)
		pthread_cond_wait(&st->sha_cond, &st->sha_lock);
	ok = !st->sha_failed;
	pthread_mutex_unlock(&st->sha_lock);
	/* Our turn: nobody else touches st->sha until sha_len moves. */
	if (ok)
		ok = EVP_DigestUpdate(st->sha, buf, len) == 1;
	pthread_mutex_lock(&st->sha_lock);
	st->sha_len = off + len;
	if (!ok)
		st->sha_failed = true;
	pthread_cond_broadcast(&st->sha_cond);
	pthread_mutex_unlock(&st->sha_lock);
}

int fs_stage_sha256(struct fs_work *w, struct fs_stage *st, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	EVP_MD_CTX *c = NULL;
	bool whole;
	int ok = 0;

	/* Under io no claim starts, and once the claims made are hashed
	 * st->sha holds still. */
	pthread_mutex_lock(&st->io);
	pthread_mutex_lock(&st->sha_lock);
	sha_quiesce(st);
	whole = st->sha && !st->sha_failed;
	pthread_mutex_unlock(&st->sha_lock);
	pthread_mutex_lock(&w->lock);
	whole = whole && st->base_len == 0 && st->sha_len == st->size;
	pthread_mutex_unlock(&w->lock);
	/* On a copy: writes after this commit go on with the original. */
	if (whole)
		c = EVP_MD_CTX_new();
	if (c && EVP_MD_CTX_copy_ex(c, st->sha) &&
	    EVP_DigestFinal_ex(c, md, &mdlen) && mdlen == 32) {
		for (i = 0; i < mdlen; i++)
			sprintf(out + 2 * i, "%02x", md[i]);
		ok = 1;
	}
	EVP_MD_CTX_free(c);
	pthread_mutex_unlock(&st->io);
	return ok;
}

static int stage_new(struct fs_work *w, struct fs_content *base,
		     uint64_t base_len, struct fs_stage **out)
{
	struct fs_stage *st = hubfs_calloc(1, sizeof(*st));
	int err;

	if (!st)
		return -ENOMEM;
	err = hubfs_journal_stage_create(w->journal, st->name, &st->fd);
	if (err) {
		hubfs_free(st);
		return err;
	}
	if (base_len) {
		st->filled_len = (uint32_t)((nblocks(base_len) + 7) / 8);
		st->filled = hubfs_calloc(1, st->filled_len);
		if (!st->filled ||
		    ftruncate(st->fd, (off_t)base_len) != 0) {
			err = st->filled ? -errno : -ENOMEM;
			hubfs_err_set("cannot size a staged file: %s",
				      strerror(-err));
			hubfs_journal_stage_unlink(w->journal, st->name);
			close(st->fd);
			hubfs_free(st->filled);
			hubfs_free(st);
			return err;
		}
		content_set(&st->base, base->tree, base->node);
	}
	st->size = base_len;
	st->base_len = base_len;
	stage_init_locks(st);
	if (base_len == 0)
		sha_restart(st);
	st->refs = 1;
	st->orphan = true;
	*out = st;
	return 0;
}

/* The row at @path is written anew: what replay could not show there
 * is no longer what "resolve theirs" would drop (work lock held). */
static void unshown_clear(struct fs_work *w, const char *path)
{
	size_t i = 0;

	while (i < w->nunshown) {
		if (strcmp(w->unshown[i].path, path) == 0)
			fs_work_unshown_forget(w, i);
		else
			i++;
	}
}

/* The journal row that gives file @n its current content. */
static int row_put_file(struct fs_work *w, struct fs_wnode *n,
			const char *path)
{
	struct hubfs_jchange c;
	const struct fs_content *ref;
	int err;

	memset(&c, 0, sizeof(c));
	c.path = path;
	if (n->stage) {
		snprintf(c.stage, sizeof(c.stage), "%s", n->stage->name);
		ref = &n->stage->base;
		c.base_len = n->stage->base_len;
		c.filled = n->stage->filled;
		c.filled_len = n->stage->filled_len;
	} else {
		ref = &n->base;
	}
	if (ref->tree) {
		snprintf(c.ref.commit, sizeof(c.ref.commit), "%s",
			 ref->tree->commit);
		c.ref.path = ref->node->path;
		snprintf(c.ref.key, sizeof(c.ref.key), "%s",
			 fs_node_key(ref->node));
		c.ref.lfs = ref->node->lfs;
		c.ref.size = ref->node->size;
	}
	unshown_clear(w, path);
	err = hubfs_journal_put(w->journal, &c);
	if (err)
		return err;
	n->dirty = true;
	if (n->stage)
		n->stage->orphan = false;
	w->changes++;
	return 0;
}

/* Record that nothing is at @path any more. */
static int row_delete(struct fs_work *w, const char *path)
{
	struct fs_node *b = fs_tree_find(w->base, path);
	struct hubfs_jchange c;

	w->changes++;
	unshown_clear(w, path);
	/* While a commit is on its way, the path may be in it: a deletion
	 * must then follow it (a useless one is dropped before the next
	 * commit). */
	if (!w->attempting && (!b || b->type != HUBFS_ENTRY_FILE))
		return hubfs_journal_remove(w->journal, path);
	memset(&c, 0, sizeof(c));
	c.path = path;
	c.deleted = true;
	return hubfs_journal_put(w->journal, &c);
}

/* Give @n (clean or committed) a stage over its current content. */
static int ensure_stage(struct fs_work *w, struct fs_wnode *n)
{
	struct fs_stage *st = NULL;
	bool fresh = false;
	char *path;
	int err;

	if (n->replaced) {
		/* Its handles still read the old content; writing it would
		 * go nowhere. */
		hubfs_err_set("%s changed upstream while open; reopen it",
			      n->name);
		return -ESTALE;
	}
	if (!n->stage) {
		err = stage_new(w, &n->base,
				n->base.tree ? n->base.node->size : 0, &st);
		if (err)
			return err;
		n->stage = st;
		fresh = true;
	}
	/* A row naming other content (a renamed file) must name the stage
	 * now.  A file no longer in the tree (unlinked while open) keeps
	 * its bytes for its open handles only. */
	if ((n->dirty && !fresh) || !attached(w, n))
		return 0;
	path = fs_wnode_path(n);
	if (!path)
		return -ENOMEM;
	err = row_put_file(w, n, path);
	hubfs_free(path);
	return err;
}

/* Read bytes [@off, @off + @len) of committed content.  No lock held. */
int fs_work_read_content(struct fs_work *w, const struct fs_content *base,
			 void *buf, size_t len, uint64_t off)
{
	struct fs_object *obj;
	size_t got = 0;
	int err, fd;

	err = fs_reader_open(&obj, w->reader, base->tree, base->node);
	if (err)
		return err;
	while (got < len) {
		size_t n;
		ssize_t r;

		err = fs_reader_prepare(obj, off + got, len - got, &fd, &n,
					NULL);
		if (err == -ENOSPC) {
			r = fs_reader_read_direct(obj, (char *)buf + got,
						  len - got, off + got);
			if (r <= 0) {
				err = r < 0 ? (int)r : -EIO;
				break;
			}
			got += (size_t)r;
			continue;
		}
		if (err)
			break;
		if (n == 0) {
			err = -EIO;
			hubfs_err_set("the base content ended early");
			break;
		}
		r = pread(fd, (char *)buf + got, n, (off_t)(off + got));
		if (r <= 0) {
			err = r < 0 ? -errno : -EIO;
			hubfs_err_set("cannot read the block cache: %s",
				      strerror(-err));
			break;
		}
		got += (size_t)r;
	}
	fs_object_put(obj);
	return got == len ? 0 : err;
}

/*
 * Make block @idx of @st local, copying it from base if it is not:
 * 1 if it copied, 0 if the block was local already, or -errno.  Called
 * with st->io held and the work lock not held.
 */
/*
 * All of @len bytes, or -errno: a short write is followed up, so that a
 * full disk reports ENOSPC rather than a count.
 */
static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t r = pwrite(fd, buf, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		buf = (const char *)buf + r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int fs_stage_pread(struct fs_stage *st, void *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t r = pread(st->fd, buf, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			hubfs_err_set("%s", r < 0 ? strerror(errno)
						  : "the file is shorter");
			return -EIO;
		}
		buf = (char *)buf + r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int stage_fill(struct fs_work *w, struct fs_stage *st, uint64_t idx)
{
	struct fs_content base = { 0 };
	uint64_t off = idx * WBS, len;
	char *buf;
	int err;

	pthread_mutex_lock(&w->lock);
	if (block_local(st, idx)) {
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	len = st->base_len - off < WBS ? st->base_len - off : WBS;
	content_set(&base, st->base.tree, st->base.node);
	pthread_mutex_unlock(&w->lock);

	buf = hubfs_malloc(len);
	err = buf ? fs_work_read_content(w, &base, buf, len, off) : -ENOMEM;
	if (!err && (err = pwrite_all(st->fd, buf, len, off)) != 0) {
		hubfs_err_set("cannot write a staged file: %s", strerror(-err));
	}
	hubfs_free(buf);
	content_set(&base, NULL, NULL);
	if (err)
		return err;
	pthread_mutex_lock(&w->lock);
	if (idx / 8 < st->filled_len)
		st->filled[idx / 8] |= (uint8_t)(1u << (idx % 8));
	st->jdirty = true;
	pthread_mutex_unlock(&w->lock);
	return 1;
}

/*
 * Journal the filled bits of @n's stage if they changed since they were
 * last journaled.  Until that succeeds the stage stays marked, so that
 * a later write journals them even when it fills no block itself.
 */
static int stage_journal(struct fs_work *w, struct fs_wnode *n)
{
	struct fs_stage *st = n->stage;
	char *path;
	int err;

	if (!st || !st->jdirty || !n->dirty || !attached(w, n))
		return 0;
	path = fs_wnode_path(n);
	if (!path)
		return -ENOMEM;
	err = hubfs_journal_set_filled(w->journal, path, st->base_len,
				       st->filled, st->filled_len);
	hubfs_free(path);
	if (!err)
		st->jdirty = false;
	return err;
}

int fs_stage_fill_all(struct fs_work *w, struct fs_stage *st)
{
	uint64_t i, n;
	int err = 0;

	pthread_mutex_lock(&st->io);
	pthread_mutex_lock(&w->lock);
	n = nblocks(st->base_len);
	pthread_mutex_unlock(&w->lock);
	for (i = 0; i < n && err >= 0; i++)
		err = stage_fill(w, st, i);
	if (err > 0)
		err = 0;
	if (!err) {
		pthread_mutex_lock(&w->lock);
		st->base_len = 0;	/* everything is local now */
		st->jdirty = true;
		content_set(&st->base, NULL, NULL);
		pthread_mutex_unlock(&w->lock);
	}
	pthread_mutex_unlock(&st->io);
	return err;
}

/* --- attributes and listing ------------------------------------------------- */

void fs_work_attr(struct fs_work *w, struct fs_wnode *n, struct fs_wattr *a)
{
	uint32_t i;

	memset(a, 0, sizeof(*a));
	pthread_mutex_lock(&w->lock);
	a->type = n->type;
	a->mtime = n->mtime;
	if (n->type == HUBFS_ENTRY_FILE) {
		a->size = n->stage ? n->stage->size
			: n->base.node ? n->base.node->size : 0;
	} else if (n->materialized) {
		a->nkids = n->nkids;
		for (i = 0; i < n->nkids; i++)
			a->subdirs += n->kids[i]->type == HUBFS_ENTRY_DIR;
	} else if (n->base.node) {
		a->nkids = n->base.node->nchildren;
		for (i = 0; i < n->base.node->nchildren; i++)
			a->subdirs += n->base.node->children[i]->type ==
				      HUBFS_ENTRY_DIR;
	}
	pthread_mutex_unlock(&w->lock);
}

size_t fs_work_list(struct fs_work *w, struct fs_wnode *dir, size_t from,
		    struct fs_wnode **out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&w->lock);
	if (materialize(dir) == 0) {
		for (; from < dir->nkids && n < max; from++) {
			out[n] = dir->kids[from];
			out[n++]->refs++;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return n;
}

void fs_work_name(struct fs_work *w, struct fs_wnode *n, char *buf,
		  size_t size)
{
	pthread_mutex_lock(&w->lock);
	snprintf(buf, size, "%s", n->name);
	pthread_mutex_unlock(&w->lock);
}

int fs_work_lookup(struct fs_work *w, struct fs_wnode *dir, const char *name,
		   struct fs_wnode **out)
{
	struct fs_wnode *n;
	int err = 0;

	pthread_mutex_lock(&w->lock);
	if (dir->type != HUBFS_ENTRY_DIR) {
		err = -ENOTDIR;
	} else if (!dir->parent && dir != w->root) {
		err = -ENOENT;	/* removed */
	} else {
		n = kid_find(dir, name);
		if (n) {
			n->refs++;
			*out = n;
		} else {
			err = dir->materialized ? -ENOENT : -ENOMEM;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return err;
}

int fs_work_content(struct fs_work *w, struct fs_wnode *n,
		    struct fs_content *out)
{
	int err = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&w->lock);
	if (n->stage)
		err = -EAGAIN;
	else if (!n->base.tree)
		err = -ESTALE;	/* dropped from the tree after a commit */
	else
		content_set(out, n->base.tree, n->base.node);
	pthread_mutex_unlock(&w->lock);
	return err;
}

/* --- names ------------------------------------------------------------------ */

int fs_work_name_ok(struct fs_work *w, struct fs_wnode *dir,
		    const char *name)
{
	size_t depth = 0;
	char *path;

	if (strcmp(name, ".git") == 0) {
		hubfs_err_set("the Hub does not accept a path with a .git "
			      "component");
		return -EINVAL;
	}
	if (strlen(name) > HUBFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (strchr(name, '\n') || strchr(name, '\r')) {
		hubfs_err_set("the Hub does not accept line breaks in paths");
		return -EINVAL;
	}
	pthread_mutex_lock(&w->lock);
	path = fs_wnode_path(dir);
	pthread_mutex_unlock(&w->lock);
	if (!path)
		return -ENOMEM;
	depth = strlen(path) + 1 + strlen(name);
	hubfs_free(path);
	if (depth > HUBFS_PATH_MAX) {
		hubfs_err_set("the path would be longer than %d bytes",
			      HUBFS_PATH_MAX);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* A directory that is gone from the tree cannot get children. */
static bool dir_live(struct fs_work *w, struct fs_wnode *d)
{
	return d->type == HUBFS_ENTRY_DIR && attached(w, d);
}

/* --- namespace changes -------------------------------------------------------- */

int fs_work_create(struct fs_work *w, struct fs_wnode *dir, const char *name,
		   struct fs_wnode **out)
{
	struct fs_wnode *n;
	struct fs_content none = { 0 };
	char *path = NULL;
	int err;

	pthread_mutex_lock(&w->lock);
	err = dir_live(w, dir) ? materialize(dir) : -ENOENT;
	if (err)
		goto out_unlock;
	if (kid_find(dir, name)) {
		err = -EEXIST;
		goto out_unlock;
	}
	err = -ENOMEM;
	n = wnode_new(name, HUBFS_ENTRY_FILE);
	if (!n)
		goto out_unlock;
	n->mtime = time(NULL);
	err = stage_new(w, &none, 0, &n->stage);
	if (err)
		goto out_free;
	err = kid_insert(dir, n);
	if (err)
		goto out_free;
	path = fs_wnode_path(n);
	err = path ? row_put_file(w, n, path) : -ENOMEM;
	if (err) {
		kid_remove(n);
		goto out_free;
	}
	n->refs++;	/* the caller's */
	*out = n;
	hubfs_free(path);
	pthread_mutex_unlock(&w->lock);
	return 0;

out_free:
	hubfs_free(path);
	wnode_put_locked(w, n);
out_unlock:
	pthread_mutex_unlock(&w->lock);
	return err;
}

int fs_work_mkdir(struct fs_work *w, struct fs_wnode *dir, const char *name,
		  struct fs_wnode **out)
{
	struct fs_wnode *n;
	int err;

	pthread_mutex_lock(&w->lock);
	err = dir_live(w, dir) ? materialize(dir) : -ENOENT;
	if (!err && kid_find(dir, name))
		err = -EEXIST;
	if (err)
		goto out_unlock;
	err = -ENOMEM;
	n = wnode_new(name, HUBFS_ENTRY_DIR);
	if (!n)
		goto out_unlock;
	n->materialized = true;
	n->local = true;
	n->mtime = time(NULL);
	err = kid_insert(dir, n);
	if (err) {
		wnode_put_locked(w, n);
		goto out_unlock;
	}
	n->refs++;
	*out = n;
out_unlock:
	pthread_mutex_unlock(&w->lock);
	return err;
}

/*
 * An upload at close of @st gives way: to a change of its bytes, or
 * because no commit will name them any more.  Not while a commit round
 * holds @st (busy): that round sends these very bytes, and its writers
 * wait for it anyway.  Work lock held.
 */
static void stage_stop_upload(struct fs_stage *st)
{
	if (st->uploading && !st->busy)
		atomic_store(&st->upload_cancel, true);
}

/*
 * No journal row names file @n's bytes any more: no commit will send
 * them, so an upload at close of them stops, or leaves the queue, where
 * it would keep the staged bytes on disk until an uploader came to it.
 * Work lock held; the caller still holds its reference to @n.
 */
static void file_orphan(struct fs_work *w, struct fs_wnode *n)
{
	if (n->stage) {
		n->stage->orphan = true;
		stage_stop_upload(n->stage);
	}
	if (fs_upload_unqueue(w, n))
		wnode_put_locked(w, n);
}

/* Take file @n out of the tree for good (its path is recorded gone). */
static int drop_file(struct fs_work *w, struct fs_wnode *n, const char *path)
{
	int err = row_delete(w, path);

	if (err)
		return err;
	n->dirty = false;
	file_orphan(w, n);
	return 0;
}

int fs_work_unlink(struct fs_work *w, struct fs_wnode *dir, const char *name)
{
	struct fs_wnode *n;
	char *path = NULL;
	int err;

	pthread_mutex_lock(&w->lock);
	n = dir_live(w, dir) ? kid_find(dir, name) : NULL;
	if (!n) {
		err = -ENOENT;
		goto out_unlock;
	}
	if (n->type == HUBFS_ENTRY_DIR) {
		err = -EISDIR;
		goto out_unlock;
	}
	path = fs_wnode_path(n);
	err = path ? drop_file(w, n, path) : -ENOMEM;
	if (err)
		goto out_unlock;
	kid_remove(n);
	keep_if_empty(dir);
	dir->mtime = time(NULL);
	wnode_put_locked(w, n);
out_unlock:
	pthread_mutex_unlock(&w->lock);
	hubfs_free(path);
	return err;
}

int fs_work_rmdir(struct fs_work *w, struct fs_wnode *dir, const char *name)
{
	struct fs_wnode *n;
	int err = 0;

	pthread_mutex_lock(&w->lock);
	n = dir_live(w, dir) ? kid_find(dir, name) : NULL;
	if (!n)
		err = -ENOENT;
	else if (n->type != HUBFS_ENTRY_DIR)
		err = -ENOTDIR;
	else if (materialize(n) != 0)
		err = -ENOMEM;
	else if (n->nkids)
		err = -ENOTEMPTY;
	if (!err) {
		/* Its files were deleted one by one: nothing to journal. */
		kid_remove(n);
		dir->mtime = time(NULL);
		wnode_put_locked(w, n);
	}
	pthread_mutex_unlock(&w->lock);
	return err;
}

/*
 * Journal the move of @n (and of everything below it) from @old_path to
 * @new_path.  The tree itself is not changed here.
 */
static int journal_moved(struct fs_work *w, struct fs_wnode *n,
			 const char *old_path, const char *new_path)
{
	uint32_t i;
	int err;

	if (n->type == HUBFS_ENTRY_FILE) {
		err = row_delete(w, old_path);
		if (!err && (n->stage || n->base.tree))
			err = row_put_file(w, n, new_path);
		return err;
	}
	err = materialize(n);
	for (i = 0; !err && i < n->nkids; i++) {
		char *o, *p;

		if (asprintf(&o, "%s/%s", old_path, n->kids[i]->name) < 0)
			return -ENOMEM;
		if (asprintf(&p, "%s/%s", new_path, n->kids[i]->name) < 0) {
			free(o);
			return -ENOMEM;
		}
		err = journal_moved(w, n->kids[i], o, p);
		free(o);
		free(p);
	}
	return err;
}

int fs_work_rename(struct fs_work *w, struct fs_wnode *dir, const char *name,
		   struct fs_wnode *ndir, const char *nname,
		   unsigned int flags)
{
	struct fs_wnode *n, *t, *p;
	char *old_path = NULL, *new_dir_path = NULL, *new_path = NULL;
	char *new_name = NULL;
	int err = 0;

	pthread_mutex_lock(&w->lock);
	n = dir_live(w, dir) && dir_live(w, ndir) ? kid_find(dir, name) : NULL;
	if (!n) {
		err = -ENOENT;
		goto out_unlock;
	}
	if (materialize(ndir) != 0) {
		err = -ENOMEM;
		goto out_unlock;
	}
	for (p = ndir; p; p = p->parent)
		if (p == n) {
			err = -EINVAL;	/* into itself */
			goto out_unlock;
		}
	t = kid_find(ndir, nname);
	if (t == n)
		goto out_unlock;
	if (t && (flags & RENAME_NOREPLACE)) {
		err = -EEXIST;
		goto out_unlock;
	}
	if (t && t->type != n->type) {
		err = t->type == HUBFS_ENTRY_DIR ? -EISDIR : -ENOTDIR;
		goto out_unlock;
	}
	if (t && t->type == HUBFS_ENTRY_DIR &&
	    (materialize(t) != 0 || t->nkids)) {
		err = -ENOTEMPTY;
		goto out_unlock;
	}
	old_path = fs_wnode_path(n);
	new_dir_path = fs_wnode_path(ndir);
	new_name = hubfs_strdup(nname);
	if (!old_path || !new_dir_path || !new_name || kid_reserve(ndir) ||
	    asprintf(&new_path, "%s%s%s", new_dir_path,
		     *new_dir_path ? "/" : "", nname) < 0) {
		new_path = NULL;
		err = -ENOMEM;
		goto out_unlock;
	}
	/* The journal first, in one transaction; the tree changes only once
	 * it is committed, so a failure leaves both as they were. */
	err = hubfs_journal_begin(w->journal);
	if (err)
		goto out_unlock;
	if (t && t->type == HUBFS_ENTRY_FILE)
		err = row_delete(w, new_path);
	if (!err)
		err = journal_moved(w, n, old_path, new_path);
	if (!err)
		err = hubfs_journal_commit(w->journal);
	if (err) {
		hubfs_journal_rollback(w->journal);
		goto out_unlock;
	}
	if (t) {
		if (t->type == HUBFS_ENTRY_FILE) {
			t->dirty = false;
			file_orphan(w, t);
		}
		/* As after unlink: handles still open on it keep working
		 * on bytes no one else sees. */
		kid_remove(t);
		wnode_put_locked(w, t);
	}
	kid_remove(n);
	hubfs_free(n->name);
	n->name = new_name;
	new_name = NULL;
	kid_insert(ndir, n);	/* cannot fail: materialized, name free */
	keep_if_empty(dir);
	dir->mtime = ndir->mtime = time(NULL);
out_unlock:
	pthread_mutex_unlock(&w->lock);
	hubfs_free(old_path);
	hubfs_free(new_dir_path);
	hubfs_free(new_path);
	hubfs_free(new_name);
	return err;
}

/* --- file content --------------------------------------------------------------- */

int fs_work_open_write(struct fs_work *w, struct fs_wnode *n, bool trunc)
{
	int err = 0;

	pthread_mutex_lock(&w->lock);
	n->writers++;
	pthread_mutex_unlock(&w->lock);
	if (trunc)
		err = fs_work_truncate(w, n, 0);
	if (err)
		fs_work_close_write(w, n);
	return err;
}

void fs_work_close_write(struct fs_work *w, struct fs_wnode *n)
{
	pthread_mutex_lock(&w->lock);
	n->writers--;
	w->changes++;	/* a close is worth waiting a quiet period for */
	if (n->writers == 0)
		fs_upload_closed(w, n);
	pthread_mutex_unlock(&w->lock);
}

ssize_t fs_work_read(struct fs_work *w, struct fs_wnode *n, void *buf,
		     size_t size, uint64_t off)
{
	struct fs_stage *st;
	struct fs_content base = { 0 };
	size_t done = 0;
	int err = 0;

	pthread_mutex_lock(&w->lock);
	st = n->stage;
	if (!st) {
		pthread_mutex_unlock(&w->lock);
		return -EAGAIN;
	}
	st->refs++;
	if (off >= st->size)
		size = 0;
	else if (size > st->size - off)
		size = (size_t)(st->size - off);
	pthread_mutex_unlock(&w->lock);

	while (done < size && !err) {
		uint64_t pos = off + done, idx = pos / WBS;
		size_t len = (size_t)((idx + 1) * WBS - pos);
		bool local;

		if (len > size - done)
			len = size - done;
		pthread_mutex_lock(&w->lock);
		/* Past the base's end, even in its last block, is the stage's
		 * (zeros unless written). */
		local = block_local(st, idx) || pos >= st->base_len;
		if (!local) {
			content_set(&base, st->base.tree, st->base.node);
			if (pos + len > st->base_len)
				len = (size_t)(st->base_len - pos);
		}
		pthread_mutex_unlock(&w->lock);
		if (local) {
			ssize_t r = pread(st->fd, (char *)buf + done, len,
					  (off_t)pos);

			if (r < 0) {
				err = -errno;
				hubfs_err_set("cannot read a staged file: %s",
					      strerror(errno));
			} else if (r == 0) {
				/* A hole past the written end reads as 0s. */
				memset((char *)buf + done, 0, len);
				done += len;
			} else {
				done += (size_t)r;
			}
		} else {
			err = fs_work_read_content(w, &base, (char *)buf + done, len, pos);
			if (!err)
				done += len;
		}
	}
	content_set(&base, NULL, NULL);
	pthread_mutex_lock(&w->lock);
	fs_stage_put(w, st);
	pthread_mutex_unlock(&w->lock);
	return err ? err : (ssize_t)done;
}

/* Take a reference to @n's stage, creating it, once no commit reads it. */
static int stage_for_write(struct fs_work *w, struct fs_wnode *n,
			   struct fs_stage **out)
{
	int err;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		err = ensure_stage(w, n);
		if (err || (!n->stage->busy && !n->stage->uploading))
			break;
		stage_stop_upload(n->stage);
		/* A commit or an upload at close reads it.  When a commit
		 * lands the stage may go (the file is clean then): look at
		 * n->stage afresh. */
		pthread_cond_wait(&w->cond, &w->lock);
	}
	if (!err) {
		*out = n->stage;
		n->stage->refs++;
	}
	pthread_mutex_unlock(&w->lock);
	return err;
}

/*
 * @n's stage, referenced, with its io lock and the work lock held, once
 * no commit reads it.
 */
static int stage_lock(struct fs_work *w, struct fs_wnode *n,
		      struct fs_stage **out)
{
	struct fs_stage *st;
	int err;

	for (;;) {
		err = stage_for_write(w, n, &st);
		if (err)
			return err;
		pthread_mutex_lock(&st->io);
		pthread_mutex_lock(&w->lock);
		if (n->stage == st && !st->busy && !st->uploading)
			break;
		/* A commit started, or the stage changed: start over. */
		pthread_mutex_unlock(&w->lock);
		pthread_mutex_unlock(&st->io);
		pthread_mutex_lock(&w->lock);
		fs_stage_put(w, st);
		pthread_mutex_unlock(&w->lock);
	}
	*out = st;
	return 0;
}

/*
 * Undo stage_lock() after a write or truncate that ended with @err:
 * journal the filled bits (also after a failure: a block filled before
 * it must be known), release the locks and the reference.  Returns @err,
 * or the journal's error.
 */
static int stage_unlock(struct fs_work *w, struct fs_wnode *n,
			struct fs_stage *st, int err)
{
	int jerr = stage_journal(w, n);

	pthread_mutex_unlock(&w->lock);
	pthread_mutex_unlock(&st->io);
	pthread_mutex_lock(&w->lock);
	fs_stage_put(w, st);
	pthread_mutex_unlock(&w->lock);
	return err ? err : jerr;
}

void fs_work_write(struct fs_work *w, struct fs_wnode *n, const void *buf,
		   size_t size, uint64_t off,
		   void (*answer)(void *arg, ssize_t res), void *arg)
{
	struct fs_stage *st;
	uint64_t end = off + size, first, last, i;
	bool owed = false;
	int err;

	if (size == 0) {
		answer(arg, 0);
		return;
	}
	if (end > HUBFS_SIZE_MAX || end < off) {
		answer(arg, -EFBIG);
		return;
	}
	err = stage_lock(w, n, &st);
	if (err) {
		answer(arg, err);
		return;
	}
	/* Partly written blocks keep the rest of their base bytes. */
	first = off / WBS;
	last = (end - 1) / WBS;
	pthread_mutex_unlock(&w->lock);
	if (off % WBS)
		err = stage_fill(w, st, first);
	if (err >= 0 && end % WBS && (last != first || off % WBS == 0)) {
		int e = stage_fill(w, st, last);

		err = e ? e : err;
	}
	if (err > 0)
		err = 0;
	if (!err) {
		sha_before_write(st, off);
		err = pwrite_all(st->fd, buf, size, off);
		if (!err)
			owed = sha_claim(st, off, size);
		if (err) {
			hubfs_err_set("cannot write a staged file: %s",
				      strerror(-err));
			/* What got past the end must not come back as the
			 * size at replay. */
			if (ftruncate(st->fd, (off_t)st->size) != 0)
				err = -EIO;
		}
	}
	pthread_mutex_lock(&w->lock);
	if (owed)
		st->refs++;	/* for sha_hash(), below */
	if (!err) {
		for (i = first; i <= last && i * WBS < st->base_len; i++) {
			if (!block_local(st, i))
				st->jdirty = true;
			if (i / 8 < st->filled_len)
				st->filled[i / 8] |= (uint8_t)(1u << (i % 8));
		}
		if (end > st->size)
			st->size = end;
		n->mtime = time(NULL);
		w->changes++;
	}
	err = stage_unlock(w, n, st, err);
	answer(arg, err ? err : (ssize_t)size);
	if (owed) {
		sha_hash(st, buf, size, off);
		pthread_mutex_lock(&w->lock);
		fs_stage_put(w, st);
		pthread_mutex_unlock(&w->lock);
	}
}

int fs_work_truncate(struct fs_work *w, struct fs_wnode *n, uint64_t size)
{
	struct fs_stage *st;
	int err;

	if (size > HUBFS_SIZE_MAX)
		return -EFBIG;
	err = stage_lock(w, n, &st);
	if (err)
		return err;
	pthread_mutex_unlock(&w->lock);
	/* The bytes a cut block keeps must be local before the cut. */
	err = size % WBS ? stage_fill(w, st, size / WBS) : 0;
	if (err > 0)
		err = 0;
	if (!err)
		sha_before_write(st, size);
	if (!err && ftruncate(st->fd, (off_t)size) != 0) {
		err = -errno;
		hubfs_err_set("cannot truncate a staged file: %s",
			      strerror(errno));
	}
	pthread_mutex_lock(&w->lock);
	if (!err) {
		if (size < st->base_len) {
			st->base_len = size;
			st->jdirty = true;
		}
		/* Cut to nothing (open with O_TRUNC): written anew from
		 * the start, most likely. */
		if (size == 0)
			sha_restart(st);
		st->size = size;
		n->mtime = time(NULL);
		w->changes++;
	}
	return stage_unlock(w, n, st, err);
}

/* --- building, replaying, following a new base -------------------------------- */

struct replay {
	struct fs_work *w;
	struct fs_tree *tree;	/* the last tree loaded for a reference */
	bool deletions;		/* this pass replays the deletions only */
	unsigned int skipped;
};

/* The content @ref names, as a tree node (a reference to the tree). */
static int replay_ref(struct replay *rp, const struct hubfs_jref *ref,
		      struct fs_content *out)
{
	struct fs_node *node;
	int err;

	if (!rp->tree || strcmp(rp->tree->commit, ref->commit) != 0) {
		struct fs_tree *t;

		err = rp->w->load_tree(rp->w->arg, ref->commit, &t);
		if (err)
			return err;
		fs_tree_put(rp->tree);
		rp->tree = t;
	}
	node = fs_tree_find(rp->tree, ref->path);
	if (!node || node->type != HUBFS_ENTRY_FILE ||
	    strcmp(fs_node_key(node), ref->key) != 0) {
		hubfs_err_set("commit %.12s has no file %s with the content "
			      "the journal names", ref->commit, ref->path);
		return -EIO;
	}
	content_set(out, rp->tree, node);
	return 0;
}

/* The directory that is to hold @path, made (as local) where missing. */
static struct fs_wnode *replay_parent(struct fs_work *w, const char *path,
				      const char **leaf, int *err)
{
	struct fs_wnode *d = w->root, *k;
	char *copy = hubfs_strdup(path), *p, *slash;

	*err = -ENOMEM;
	if (!copy)
		return NULL;
	for (p = copy; (slash = strchr(p, '/')) != NULL; p = slash + 1) {
		*slash = '\0';
		k = kid_find(d, p);
		if (!k) {
			k = wnode_new(p, HUBFS_ENTRY_DIR);
			if (!k)
				break;
			k->materialized = k->local = true;
			k->mtime = time(NULL);
			if (kid_insert(d, k) != 0) {
				wnode_put_locked(w, k);
				k = NULL;
				break;
			}
		}
		if (k->type != HUBFS_ENTRY_DIR) {
			*err = 0;	/* a file on the path: a clash */
			k = NULL;
			break;
		}
		d = k;
	}
	if (slash)
		d = NULL;
	else
		*err = 0;
	*leaf = path + (p - copy);
	hubfs_free(copy);
	return d;
}

/*
 * Keep a row replay could not show for a reason a later mount does not
 * cure by itself (its staged file gone, or a clash with the tree), so
 * that "resolve theirs" can drop it.  A row that may show at a later
 * mount (its base not loadable now, say offline) is not kept: dropping
 * it would lose a change that is still whole.
 */
static int replay_keep_unshown(struct replay *rp,
			       const struct hubfs_jchange *c)
{
	struct fs_work *w = rp->w;
	struct fs_unshown *v, *u;

	v = hubfs_realloc(w->unshown, (w->nunshown + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	w->unshown = v;
	u = &v[w->nunshown];
	u->path = hubfs_strdup(c->path);
	if (!u->path)
		return -ENOMEM;
	snprintf(u->stage, sizeof(u->stage), "%s", c->stage);
	snprintf(u->key, sizeof(u->key), "%s", c->ref.key);
	w->nunshown++;
	return 0;
}

bool fs_unshown_is(const struct fs_unshown *u, const struct hubfs_jchange *c)
{
	return !c->deleted && strcmp(c->path, u->path) == 0 &&
	       strcmp(c->stage, u->stage) == 0 &&
	       (c->stage[0] || strcmp(c->ref.key, u->key) == 0);
}

static int unshown_match(void *arg, const struct hubfs_jchange *c)
{
	const struct fs_unshown **u = arg;

	if (!fs_unshown_is(*u, c))
		*u = NULL;
	return 0;
}

int fs_work_unshown_current(struct fs_work *w, const struct fs_unshown *u)
{
	const struct fs_unshown *m = u;
	int found = hubfs_journal_get(w->journal, u->path, unshown_match, &m);

	if (found < 0)
		return found;
	return found == 1 && m != NULL;
}

void fs_work_unshown_forget(struct fs_work *w, size_t i)
{
	hubfs_free(w->unshown[i].path);
	w->unshown[i] = w->unshown[--w->nunshown];
}

/* A change that cannot be restored is not shown: a file @made for it
 * goes, or it would show as an empty file where the change wrote its
 * bytes (directories made on its path stay, empty).  Its journal row
 * stays, listed as pending. */
static void replay_unmake(struct fs_work *w, struct fs_wnode *n, bool made)
{
	if (made) {
		kid_remove(n);
		wnode_put_locked(w, n);
	}
}

static int replay_row(void *arg, const struct hubfs_jchange *c)
{
	struct replay *rp = arg;
	struct fs_work *w = rp->w;
	struct fs_wnode *n, *d;
	struct fs_stage *st = NULL;
	const char *leaf;
	struct stat sb;
	bool made = false, lost = false;
	int err = 0;

	if (c->deleted != rp->deletions)
		return 0;
	if (c->deleted) {
		n = fs_work_find(w, c->path);
		if (n && n->type == HUBFS_ENTRY_FILE) {
			d = n->parent;
			kid_remove(n);
			wnode_put_locked(w, n);
			if (d)
				keep_if_empty(d);
		}
		return 0;
	}
	d = replay_parent(w, c->path, &leaf, &err);
	if (err)
		return err;
	n = d ? kid_find(d, leaf) : NULL;
	/* A file that took the place of a directory emptied here. */
	if (n && n->type == HUBFS_ENTRY_DIR && materialize(n) == 0 &&
	    n->nkids == 0) {
		kid_remove(n);
		wnode_put_locked(w, n);
		n = NULL;
	}
	if (!d || (n && n->type != HUBFS_ENTRY_FILE)) {
		hlog(LOG_ERR, "%s: the write journal's change to %s clashes "
		     "with the tree; it is kept but not shown", w->label,
		     c->path);
		rp->skipped++;
		return replay_keep_unshown(rp, c);
	}
	if (!n) {
		n = wnode_new(leaf, HUBFS_ENTRY_FILE);
		if (!n || kid_insert(d, n) != 0) {
			if (n)
				wnode_put_locked(w, n);
			return -ENOMEM;
		}
		made = true;
	}
	if (c->stage[0]) {
		st = hubfs_calloc(1, sizeof(*st));
		if (!st)
			return -ENOMEM;
		stage_init_locks(st);
		st->refs = 1;
		st->fd = -1;
		snprintf(st->name, sizeof(st->name), "%s", c->stage);
		err = hubfs_journal_stage_open(w->journal, st->name, &st->fd);
		lost = err == -ENOENT;
		if (!err && fstat(st->fd, &sb) != 0)
			err = -errno;
		if (!err && c->base_len && c->ref.commit[0])
			err = replay_ref(rp, &c->ref, &st->base);
		if (!err && c->base_len) {
			st->filled_len = (uint32_t)((nblocks(c->base_len) + 7) / 8);
			st->filled = hubfs_calloc(1, st->filled_len);
			if (!st->filled)
				err = -ENOMEM;
			else if (c->filled)
				memcpy(st->filled, c->filled,
				       c->filled_len < st->filled_len
					       ? c->filled_len : st->filled_len);
		}
		if (err) {
			hlog(LOG_ERR, "%s: cannot restore the staged content "
			     "of %s: %s", w->label, c->path,
			     hubfs_err_or(strerror(-err)));
			stage_free(st);
			replay_unmake(w, n, made);
			rp->skipped++;
			return lost ? replay_keep_unshown(rp, c) : 0;
		}
		st->size = (uint64_t)sb.st_size;
		st->base_len = st->base.tree ? c->base_len : 0;
		if (n->stage)
			fs_stage_put(w, n->stage);
		n->stage = st;
	} else {
		struct fs_content ref = { 0 };

		err = replay_ref(rp, &c->ref, &ref);
		if (err) {
			hlog(LOG_ERR, "%s: cannot restore the change to %s: %s",
			     w->label, c->path, hubfs_err_or(strerror(-err)));
			replay_unmake(w, n, made);
			rp->skipped++;
			return 0;
		}
		content_set(&n->base, ref.tree, ref.node);
		content_set(&ref, NULL, NULL);
	}
	n->dirty = true;
	n->mtime = time(NULL);
	return 0;
}

int fs_work_new(struct fs_work **out, struct fs_tree *base,
		const struct fs_work_opts *opts)
{
	struct fs_work *w = hubfs_calloc(1, sizeof(*w));
	struct replay rp = { 0 };
	int err;

	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->journal = opts->journal;
	w->reader = opts->reader;
	w->label = opts->label;
	w->load_tree = opts->load_tree;
	w->arg = opts->arg;
	fs_tree_get(base);
	w->base = base;
	w->root = wnode_new("", HUBFS_ENTRY_DIR);
	if (!w->root) {
		fs_work_free(w);
		return -ENOMEM;
	}
	content_set(&w->root->base, base, base->root);
	w->root->mtime = base->time;
	rp.w = w;
	pthread_mutex_lock(&w->lock);
	/* Deletions first: a file may have replaced a deleted directory. */
	rp.deletions = true;
	err = hubfs_journal_list(w->journal, replay_row, &rp);
	if (err >= 0) {
		rp.deletions = false;
		err = hubfs_journal_list(w->journal, replay_row, &rp);
	}
	pthread_mutex_unlock(&w->lock);
	fs_tree_put(rp.tree);
	if (err < 0) {
		fs_work_free(w);
		return err;
	}
	if (err > 0)
		hlog(LOG_NOTICE, "%s: %d change%s not committed yet restored "
		     "from the write journal%s", w->label, err,
		     err == 1 ? "" : "s",
		     rp.skipped ? " (some could not be shown: see above)" : "");
	*out = w;
	return 0;
}

void fs_work_free(struct fs_work *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	wnode_put_locked(w, w->root);
	while (w->nunshown)
		fs_work_unshown_forget(w, 0);
	hubfs_free(w->unshown);
	pthread_mutex_unlock(&w->lock);
	fs_tree_put(w->base);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	hubfs_free(w);
}

/* Whether anything below @n (or @n) is a change not in the base. */
static bool has_local(const struct fs_wnode *n)
{
	uint32_t i;

	if (n->type == HUBFS_ENTRY_FILE)
		return n->dirty;
	if (!n->materialized)
		return false;
	if (n->local)
		return true;
	for (i = 0; i < n->nkids; i++)
		if (has_local(n->kids[i]))
			return true;
	return false;
}

static int row_exists_cb(void *arg, const struct hubfs_jchange *c)
{
	*(bool *)arg = c->deleted;
	return 0;
}

/* 1 if the journal has a row for @path (*@deleted says which kind). */
static int row_lookup(struct fs_work *w, const char *path, bool *deleted)
{
	return hubfs_journal_get(w->journal, path, row_exists_cb, deleted);
}

static void sync_dir(struct fs_work *w, struct fs_wnode *d,
		     struct fs_tree *t, struct fs_node *td);

/* Whether a node of the new tree at @path should appear. */
static bool sync_wanted(struct fs_work *w, struct fs_node *tn)
{
	bool deleted = false;

	if (tn->type != HUBFS_ENTRY_FILE)
		return true;
	return !(row_lookup(w, tn->path, &deleted) == 1 && deleted);
}

static void sync_dir(struct fs_work *w, struct fs_wnode *d,
		     struct fs_tree *t, struct fs_node *td)
{
	struct fs_wnode **kids, **old = d->kids;
	uint32_t i = 0, j = 0, n = 0, nold = d->nkids;
	uint32_t ntd = td ? td->nchildren : 0;

	content_set(&d->base, t, td);
	if (!d->materialized)
		return;
	kids = hubfs_calloc(nold + ntd + 1, sizeof(*kids));
	if (!kids)
		return;	/* keeps the old view; the next sync retries */
	while (i < nold || j < ntd) {
		struct fs_wnode *c = i < nold ? old[i] : NULL;
		struct fs_node *tn = j < ntd ? td->children[j] : NULL;
		int cmp = !c ? 1 : !tn ? -1 : strcmp(c->name, tn->name);
		struct fs_wnode *keep = NULL, *add = NULL;

		/* Only the smaller name is consumed in this step. */
		if (cmp <= 0)
			i++;
		else
			c = NULL;
		if (cmp >= 0)
			j++;
		else
			tn = NULL;
		if (c && c->type == HUBFS_ENTRY_FILE && c->dirty) {
			char *path = fs_wnode_path(c);
			bool deleted;

			/* A change that was committed is clean now. */
			if (path && row_lookup(w, path, &deleted) == 0)
				c->dirty = false;
			hubfs_free(path);
		}
		if (c && has_local(c)) {
			keep = c;
			if (c->type == HUBFS_ENTRY_DIR)
				sync_dir(w, c, t, tn &&
					 tn->type == HUBFS_ENTRY_DIR ? tn : NULL);
		} else if (c && tn && c->type == tn->type &&
			   (c->type == HUBFS_ENTRY_DIR ||
			    strcmp(fs_node_key(c->base.node ? c->base.node : tn),
				   fs_node_key(tn)) == 0)) {
			keep = c;
			if (c->type == HUBFS_ENTRY_DIR) {
				sync_dir(w, c, t, tn);
			} else {
				content_set(&c->base, t, tn);
				c->mtime = t->time;
			}
		} else if (tn && sync_wanted(w, tn)) {
			add = wnode_from_node(t, tn);
		}
		if (c && keep != c) {
			c->replaced = true;
			c->parent = NULL;
			wnode_put_locked(w, c);
		}
		if (keep)
			kids[n++] = keep;
		if (add) {
			add->parent = d;
			kids[n++] = add;
		}
	}
	hubfs_free(old);
	d->kids = kids;
	d->nkids = n;
	d->cap = nold + ntd + 1;
}

void fs_work_sync(struct fs_work *w, struct fs_tree *tree)
{
	sync_dir(w, w->root, tree, tree->root);
	w->root->mtime = tree->time;
	fs_tree_get(tree);
	fs_tree_put(w->base);
	w->base = tree;
}

void fs_work_committed(struct fs_work *w, const char *path,
		       struct fs_stage *st)
{
	struct fs_wnode *n = fs_work_find(w, path);
	bool deleted;

	if (!n || n->type != HUBFS_ENTRY_FILE || n->stage != st ||
	    row_lookup(w, path, &deleted) != 0)
		return;
	n->dirty = false;
	if (st) {
		st->orphan = true;
		n->stage = NULL;
		fs_stage_put(w, st);
	}
	/* fs_work_sync() gives it the new tree's node. */
	content_set(&n->base, NULL, NULL);
}

int fs_work_discard(struct fs_work *w, const char *path)
{
	struct fs_wnode *n;
	int err = hubfs_journal_remove(w->journal, path);

	if (err)
		return err;
	n = fs_work_find(w, path);
	if (n && n->type == HUBFS_ENTRY_FILE && n->dirty && n->parent) {
		/* A new node (and inode) shows the base content: the
		 * kernel's pages of the old one stay with the old one. */
		kid_remove(n);
		n->dirty = false;
		n->replaced = true;
		file_orphan(w, n);
		wnode_put_locked(w, n);
	}
	fs_work_sync(w, w->base);
	return 0;
}

struct fs_tree *fs_work_base(struct fs_work *w)
{
	struct fs_tree *t;

	pthread_mutex_lock(&w->lock);
	t = w->base;
	fs_tree_get(t);
	pthread_mutex_unlock(&w->lock);
	return t;
}
