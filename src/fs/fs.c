/*
 * The FUSE layer: inodes, revisions, and the low-level operations.
 *
 * DESIGN
 *
 * Revisions.  A struct fs_rev is one revision the mount shows: the mount
 * root's (fs->main) and each one reached under .revisions.  A revision
 * holds the tree of the commit it currently resolves to.  Commit ids and
 * tags are immutable: resolved once, and the kernel may cache their
 * entries, attributes and pages indefinitely.  Branches and refs/pr/N are
 * re-resolved at most every `refresh` seconds, by the request that finds
 * the resolution stale (the others keep using the current tree meanwhile);
 * when the commit changed, the new tree replaces the old one for new
 * lookups.
 *
 * Trees.  A commit's tree is listed once per cache lifetime: it is stored
 * in the cache's index the first time and loaded from there afterwards,
 * also when the Hub cannot be reached.  The last commit of every
 * revision is remembered too, so a branch can be served offline.
 *
 * Inodes.  A node's inode number is a hash of the revision's name, the
 * node's path and its git id, so it is stable across mounts, and it
 * changes exactly when the content does (a directory's git id changes
 * when anything below it does).  The kernel therefore never mixes pages
 * of two contents under one inode, a file opened at one commit keeps
 * reading that commit's content to the end after its branch moved (its
 * inode holds a reference to its tree), and unchanged files keep their
 * cached pages across a branch move.  Fixed inodes: 1 the mount root,
 * 2 .revisions; each revision's root has one fixed inode too.
 *
 * Locks: fs->itab_lock guards the inode table and lookup counts;
 * fs->revs_lock the revision list; rev->lock a revision's tree and
 * refresh state; fs->refs_lock the cached ref listing; file->lock a file
 * handle's readahead state.  None is held across an HTTP request or a
 * FUSE reply.  The only nestings: revs_lock before rev->lock (to look
 * for a tree some revision already holds), itab_lock before the
 * working tree's lock (to find the inodes of a content), and file->lock
 * before the reader's locks (read.c: an object's reference count, its
 * ledger and sweep, taken while the handle's object is advised).
 */
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_int.h"
#include "hubfs/journal.h"
#include "hubfs/buf.h"
#include "hubfs/err.h"
#include "hubfs/fs.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"
#include "hubfs/report.h"

#define INO_REVS 2
#define INO_DYNAMIC 16		/* hashed inode numbers start here */
#define ITAB_MIN 4096		/* inode table buckets at first; doubles */
#define FOREVER (86400.0 * 365)	/* kernel cache timeout for immutable data */
#define REVS_NAME ".revisions"

enum ino_kind {
	K_REV_ROOT,	/* a revision's root directory */
	K_REVS_DIR,	/* .revisions */
	K_NODE,		/* a file or directory below a revision's root */
	K_WNODE,	/* a node of the writable revision's working tree */
};

struct fs_rev {
	char *name;		/* decoded; NULL: the default branch */
	char *dirname;		/* its name under .revisions; "" for main */
	const char *ref_key;	/* name remembered in the index */
	bool immutable;
	fuse_ino_t ino;
	pthread_mutex_t lock;
	struct fs_tree *tree;	/* lock */
	time_t checked;		/* lock: when last resolved */
	bool refreshing;	/* lock */
	bool offline;		/* lock: serving a remembered commit */
	bool gated;		/* the Hub said so when last resolved */
	struct fs_rev *next;	/* fs->revs_lock */
};

struct fs_inode {
	fuse_ino_t ino;
	enum ino_kind kind;
	uint64_t nlookup;	/* fs->itab_lock */
	struct fs_rev *rev;
	struct fs_tree *tree;	/* K_NODE: a reference */
	struct fs_node *node;	/* K_NODE */
	struct fs_wnode *w;	/* K_WNODE: a reference */
	struct fs_inode *hnext;	/* fs->itab_lock */
};

struct ref_item {
	char *dirname;
	enum hubfs_ref_kind kind;
	char commit[41];
};

struct ref_list {
	size_t n;
	struct ref_item *items;
	unsigned int refs;	/* fs->refs_lock */
};

/* Open handles are listed, so that those the kernel never released (it
 * drops pending releases when a mount goes away) are freed at exit. */
struct fs_handle {
	struct fs_handle *prev, *next;	/* fs->handles_lock */
	bool dir;
};

struct hubfs_fs {
	const struct hubfs_config *cfg;
	struct hubfs_hub *hub;
	struct hubfs_cache *cache;
	char *repo_key;		/* index key: endpoint and repository */
	char *repo_label;	/* "models/org/name", for messages */
	uid_t uid;
	gid_t gid;
	struct fuse_session *se;
	bool mounted;
	bool signals;
	struct fs_reader *reader;
	atomic_uint invalidating;	/* threads dropping bad pages */

	struct fs_rev *main;
	pthread_mutex_t revs_lock;
	struct fs_rev *revs;		/* revs_lock */

	pthread_mutex_t itab_lock;
	/* A chained hash table that doubles with its count, so a lookup
	 * costs the same at 500 inodes as at 500,000. */
	struct fs_inode **itab;		/* itab_lock */
	size_t itab_size;		/* itab_lock; a power of two */
	size_t itab_count;		/* itab_lock */
	struct fs_inode root_inode, revs_inode;

	pthread_mutex_t refs_lock;
	struct ref_list *refs;		/* refs_lock */
	time_t refs_at;			/* refs_lock */

	/* The writable revision (the mount's own, when it is a branch). */
	struct hubfs_journal *journal;
	struct fs_work *work;
	struct fs_tree *work_base;	/* until the working tree is built */
	int write_err;			/* 0, or why writes are refused */
	bool direct_writes;		/* set once, at init */

	pthread_mutex_t handles_lock;
	struct fs_handle handles;	/* handles_lock: list head */
	uint64_t next_wino;		/* itab_lock */

	/* What applications asked of the mount, for the reports. */
	int64_t started;		/* set once, before the loop */
	atomic_uint_fast64_t reads, read_bytes, writes, write_bytes;

	/* The metrics file writer (metrics_file=). */
	pthread_t metrics_thread;
	bool metrics_started;
	pthread_mutex_t metrics_lock;
	pthread_cond_t metrics_cond;
	bool metrics_stop;		/* metrics_lock */
};

struct fs_file {
	struct fs_handle h;	/* first */
	struct fs_tree *tree;	/* a reference: keeps node alive */
	struct fs_node *node;
	struct fs_wnode *w;	/* K_WNODE: a reference */
	bool writer;		/* K_WNODE opened for writing */
	struct fs_object *obj;
	pthread_mutex_t lock;
	struct fs_stream stream;	/* lock */
};

struct dir_handle {
	struct fs_handle h;	/* first */
	struct fs_tree *tree;	/* a reference, or NULL for .revisions */
	struct fs_node *node;
	struct fs_rev *rev;
	bool is_mount_root;
	struct ref_list *refs;	/* .revisions: a reference */
	struct fs_wnode *wdir;	/* K_WNODE: a reference */
};

static void handle_add(struct hubfs_fs *fs, struct fs_handle *h, bool dir)
{
	h->dir = dir;
	pthread_mutex_lock(&fs->handles_lock);
	h->next = fs->handles.next;
	h->prev = &fs->handles;
	h->next->prev = h;
	fs->handles.next = h;
	pthread_mutex_unlock(&fs->handles_lock);
}

static void handle_del(struct hubfs_fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(&fs->handles_lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
}

static const char *const repo_type_plural[] = {
	[HUBFS_REPO_MODEL] = "models",
	[HUBFS_REPO_DATASET] = "datasets",
	[HUBFS_REPO_SPACE] = "spaces",
};

/* --- names of revisions ------------------------------------------------ */

/* '/' -> "%2F", '%' -> "%25"; the only escapes a revision name gets. */
static char *rev_encode(const char *name)
{
	size_t n = 0;
	const char *p;
	char *out, *q;

	for (p = name; *p; p++)
		n += (*p == '/' || *p == '%') ? 3 : 1;
	out = hubfs_malloc(n + 1);
	if (!out)
		return NULL;
	for (p = name, q = out; *p; p++) {
		if (*p == '/' || *p == '%') {
			q += sprintf(q, "%%%02X", (unsigned char)*p);
		} else {
			*q++ = *p;
		}
	}
	*q = '\0';
	return out;
}

/* Decode a name under .revisions; NULL unless it is the canonical form. */
static char *rev_decode(const char *dirname)
{
	char *out = hubfs_malloc(strlen(dirname) + 1), *q = out, *check;
	const char *p;

	if (!out)
		return NULL;
	for (p = dirname; *p; p++) {
		if (*p == '%') {
			if (strncmp(p, "%2F", 3) == 0)
				*q++ = '/';
			else if (strncmp(p, "%25", 3) == 0)
				*q++ = '%';
			else
				goto out_invalid;
			p += 2;
		} else {
			*q++ = *p;
		}
	}
	*q = '\0';
	check = rev_encode(out);
	if (!check || strcmp(check, dirname) != 0) {
		hubfs_free(check);
		goto out_invalid;
	}
	hubfs_free(check);
	if (out[0] == '\0')
		goto out_invalid;
	return out;

out_invalid:
	hubfs_free(out);
	return NULL;
}

static bool is_commit_id(const char *s)
{
	size_t i;

	for (i = 0; i < 40; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[40] == '\0';
}

/* Failures that mean "the Hub could not answer", as opposed to answers. */
static bool is_unreachable(int err)
{
	return err == -EHOSTUNREACH || err == -ETIMEDOUT || err == -EIO ||
	       err == -EAGAIN || err == -ECONNREFUSED || err == -ENETUNREACH;
}

/* --- trees --------------------------------------------------------------- */

struct entry_vec {
	struct hubfs_hub_entry *v;
	size_t n, cap;
};

static int collect_entry(void *arg, const struct hubfs_hub_entry *e)
{
	struct entry_vec *ev = arg;

	if (ev->n == ev->cap) {
		size_t cap = ev->cap ? ev->cap * 2 : 256;
		struct hubfs_hub_entry *v = hubfs_realloc(ev->v,
							  cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ev->v = v;
		ev->cap = cap;
	}
	ev->v[ev->n] = *e;
	ev->v[ev->n].path = hubfs_strdup(e->path);
	if (!ev->v[ev->n].path)
		return -ENOMEM;
	ev->n++;
	return 0;
}

static void entry_vec_free(struct entry_vec *ev)
{
	size_t i;

	for (i = 0; i < ev->n; i++)
		hubfs_free((char *)ev->v[i].path);
	hubfs_free(ev->v);
}

/* A tree some revision already holds, with a new reference, or NULL. */
static struct fs_tree *tree_in_use(struct hubfs_fs *fs, const char *commit)
{
	struct fs_tree *found = NULL;
	struct fs_rev *rev;

	pthread_mutex_lock(&fs->revs_lock);
	for (rev = fs->revs; rev && !found; rev = rev->next) {
		pthread_mutex_lock(&rev->lock);
		if (rev->tree && strcmp(rev->tree->commit, commit) == 0) {
			found = rev->tree;
			fs_tree_get(found);
		}
		pthread_mutex_unlock(&rev->lock);
	}
	pthread_mutex_unlock(&fs->revs_lock);
	return found;
}

static bool tree_in_use_peek(struct hubfs_fs *fs, const char *commit)
{
	struct fs_tree *t = tree_in_use(fs, commit);

	fs_tree_put(t);
	return t != NULL;
}

/*
 * The tree of @commit: from memory, from the index, or listed from the
 * Hub (and then stored in the index).
 */
static int load_tree(struct hubfs_fs *fs, const char *commit, int64_t time,
		     struct fs_tree **out)
{
	struct entry_vec ev = { 0 };
	int64_t stored_time = 0;
	int err;

	*out = tree_in_use(fs, commit);
	if (*out)
		return 0;
	err = hubfs_cache_tree_has(fs->cache, fs->repo_key, commit,
				   &stored_time);
	if (err == 1) {
		err = hubfs_cache_tree_load(fs->cache, fs->repo_key, commit,
					    collect_entry, &ev);
		time = stored_time;
	} else if (err == 0) {
		err = hubfs_hub_list_tree(fs->hub, commit, collect_entry, &ev);
		if (!err)
			err = hubfs_cache_tree_store(fs->cache, fs->repo_key,
						     commit, time, ev.v, ev.n);
	}
	if (!err)
		err = fs_tree_build(out, commit, time, ev.v, ev.n);
	entry_vec_free(&ev);
	return err;
}

/* --- revisions ------------------------------------------------------------ */

static int refs_fetch(struct hubfs_fs *fs, struct ref_list **out);
static void refs_put(struct hubfs_fs *fs, struct ref_list *refs);

/* The kind of ref @name is, from the (cached) ref listing; -ENOENT if it
 * is not a branch or tag. */
static int ref_kind(struct hubfs_fs *fs, const char *name,
		    enum hubfs_ref_kind *kind)
{
	struct ref_list *refs;
	char *dirname = rev_encode(name);
	size_t i;
	int err;

	if (!dirname)
		return -ENOMEM;
	err = refs_fetch(fs, &refs);
	if (err) {
		hubfs_free(dirname);
		return err;
	}
	err = -ENOENT;
	for (i = 0; i < refs->n; i++) {
		if (strcmp(refs->items[i].dirname, dirname) == 0) {
			*kind = refs->items[i].kind;
			err = 0;
			break;
		}
	}
	refs_put(fs, refs);
	hubfs_free(dirname);
	return err;
}

/*
 * Resolve a revision to a commit and its tree, falling back to the last
 * commit remembered for it when the Hub cannot be reached.
 */
static int rev_resolve(struct hubfs_fs *fs, struct fs_rev *rev,
		       struct fs_tree **tree, bool *offline)
{
	struct hubfs_hub_revision info;
	char detail[HUBFS_ERR_MAX];
	int err;

	*offline = false;
	err = hubfs_hub_get_revision(fs->hub, rev->name, &info);
	if (!err) {
		rev->gated = info.gated;
		err = load_tree(fs, info.commit, info.time, tree);
		if (!err)
			hubfs_cache_ref_set(fs->cache, fs->repo_key,
					    rev->ref_key, info.commit,
					    info.time);
		return err;
	}
	if (!is_unreachable(err))
		return err;
	/* Look for a remembered commit, keeping the Hub's error for the
	 * user if there is none. */
	snprintf(detail, sizeof(detail), "%s", hubfs_err_or(""));
	if (rev->name && is_commit_id(rev->name)) {
		snprintf(info.commit, sizeof(info.commit), "%s", rev->name);
		info.time = 0;
	} else if (hubfs_cache_ref_get(fs->cache, fs->repo_key, rev->ref_key,
				       info.commit, &info.time) != 0) {
		goto out_unreachable;
	}
	if (hubfs_cache_tree_has(fs->cache, fs->repo_key, info.commit,
				 NULL) != 1)
		goto out_unreachable;
	*offline = true;
	return load_tree(fs, info.commit, info.time, tree);

out_unreachable:
	hubfs_err_set("%s", detail);
	return err;
}

static void rev_free(struct fs_rev *rev)
{
	if (!rev)
		return;
	fs_tree_put(rev->tree);
	pthread_mutex_destroy(&rev->lock);
	hubfs_free(rev->name);
	hubfs_free(rev->dirname);
	hubfs_free(rev);
}

static uint64_t hash64(const char *a, const char *b, const char *c)
{
	const char *parts[3] = { a, b, c };
	uint64_t h = 1469598103934665603ULL;
	int i;

	for (i = 0; i < 3; i++) {
		const char *p;

		for (p = parts[i]; *p; p++) {
			h ^= (unsigned char)*p;
			h *= 1099511628211ULL;
		}
		h ^= 0xff;	/* separator */
		h *= 1099511628211ULL;
	}
	return h;
}

/* Create a revision object for @name (NULL: the default branch). */
static int rev_new(struct hubfs_fs *fs, const char *name, struct fs_rev **out)
{
	struct fs_rev *rev = hubfs_calloc(1, sizeof(*rev));
	enum hubfs_ref_kind kind = HUBFS_REF_BRANCH;
	bool offline;
	int err = -ENOMEM;

	if (!rev)
		return -ENOMEM;
	pthread_mutex_init(&rev->lock, NULL);
	if (name) {
		rev->name = hubfs_strdup(name);
		rev->dirname = rev_encode(name);
	} else {
		rev->dirname = hubfs_strdup("");
	}
	if ((name && !rev->name) || !rev->dirname)
		goto out_free;
	rev->ref_key = name ? rev->name : "HEAD";
	if (name && is_commit_id(name)) {
		rev->immutable = true;
	} else if (name && strncmp(name, "refs/", 5) != 0) {
		err = ref_kind(fs, name, &kind);
		if (err == 0)
			rev->immutable = kind == HUBFS_REF_TAG;
		else if (err != -ENOENT && !is_unreachable(err))
			goto out_free;
	}
	err = rev_resolve(fs, rev, &rev->tree, &offline);
	if (err)
		goto out_free;
	rev->offline = offline;
	rev->checked = time(NULL);
	if (offline)
		hlog(LOG_WARNING, "%s: the Hub cannot be reached; revision %s "
		     "serves its last known commit %s", fs->repo_label,
		     name ? name : "(default branch)", rev->tree->commit);
	rev->ino = name ? (hash64("rev", rev->dirname, "") | (1ULL << 63))
			: FUSE_ROOT_ID;
	*out = rev;
	return 0;

out_free:
	rev_free(rev);
	return err;
}

/* The revision named @dirname under .revisions, created on first use. */
static int rev_get(struct hubfs_fs *fs, const char *dirname,
		   struct fs_rev **out)
{
	struct fs_rev *rev, *fresh;
	char *name;
	int err;

	pthread_mutex_lock(&fs->revs_lock);
	for (rev = fs->revs; rev; rev = rev->next) {
		if (rev != fs->main && strcmp(rev->dirname, dirname) == 0)
			break;
	}
	pthread_mutex_unlock(&fs->revs_lock);
	if (rev) {
		*out = rev;
		return 0;
	}
	name = rev_decode(dirname);
	if (!name)
		return -ENOENT;
	err = rev_new(fs, name, &fresh);
	hubfs_free(name);
	if (err)
		return err;
	pthread_mutex_lock(&fs->revs_lock);
	for (rev = fs->revs; rev; rev = rev->next) {
		if (rev != fs->main && strcmp(rev->dirname, dirname) == 0)
			break;
	}
	if (!rev) {
		fresh->next = fs->revs;
		fs->revs = fresh;
		rev = fresh;
		fresh = NULL;
	}
	pthread_mutex_unlock(&fs->revs_lock);
	rev_free(fresh);
	*out = rev;
	return 0;
}

/* Re-resolve a mutable revision if its resolution is older than refresh. */
static void rev_refresh(struct hubfs_fs *fs, struct fs_rev *rev)
{
	struct fs_tree *tree = NULL, *old = NULL;
	time_t now = time(NULL);
	bool offline;
	int err;

	if (rev->immutable || fs->cfg->refresh == 0)
		return;
	pthread_mutex_lock(&rev->lock);
	if (rev->refreshing || now - rev->checked < (time_t)fs->cfg->refresh) {
		pthread_mutex_unlock(&rev->lock);
		return;
	}
	rev->refreshing = true;
	pthread_mutex_unlock(&rev->lock);

	err = rev_resolve(fs, rev, &tree, &offline);

	pthread_mutex_lock(&rev->lock);
	rev->refreshing = false;
	rev->checked = time(NULL);
	if (err) {
		if (!rev->offline)
			hlog(LOG_WARNING, "%s: cannot re-resolve revision %s "
			     "(%s); it keeps serving commit %s",
			     fs->repo_label,
			     rev->name ? rev->name : "(default branch)",
			     hubfs_err_or(strerror(-err)), rev->tree->commit);
		rev->offline = true;
	} else if (strcmp(tree->commit, rev->tree->commit) != 0) {
		hlog(LOG_NOTICE, "%s: revision %s moved from %.12s to %.12s",
		     fs->repo_label, rev->name ? rev->name : "(default branch)",
		     rev->tree->commit, tree->commit);
		old = rev->tree;
		rev->tree = tree;
		tree = NULL;
		rev->offline = offline;
	} else {
		if (rev->offline && !offline)
			hlog(LOG_NOTICE, "%s: the Hub is reachable again",
			     fs->repo_label);
		rev->offline = offline;
	}
	pthread_mutex_unlock(&rev->lock);
	fs_tree_put(tree);
	fs_tree_put(old);
}

/* The revision's current tree, with a reference. */
static struct fs_tree *rev_tree(struct hubfs_fs *fs, struct fs_rev *rev)
{
	struct fs_tree *tree;

	rev_refresh(fs, rev);
	pthread_mutex_lock(&rev->lock);
	tree = rev->tree;
	fs_tree_get(tree);
	pthread_mutex_unlock(&rev->lock);
	return tree;
}

static double rev_timeout(struct hubfs_fs *fs, const struct fs_rev *rev)
{
	if (rev->immutable || fs->cfg->refresh == 0)
		return FOREVER;
	return fs->cfg->refresh;
}

/*
 * How long the names in directory @node of @rev keep their meaning.  A
 * directory with a tree id is content-addressed: its inode number comes
 * from that id and its lookups answer from its own node, so its names
 * never change; a change upstream shows as another directory inode.
 */
static double dir_timeout(struct hubfs_fs *fs, const struct fs_rev *rev,
			  const struct fs_node *node)
{
	return node->oid[0] ? FOREVER : rev_timeout(fs, rev);
}

/* --- the ref listing (.revisions) ---------------------------------------- */

static void refs_free(struct ref_list *refs)
{
	size_t i;

	if (!refs)
		return;
	for (i = 0; i < refs->n; i++)
		hubfs_free(refs->items[i].dirname);
	hubfs_free(refs->items);
	hubfs_free(refs);
}

static void refs_put(struct hubfs_fs *fs, struct ref_list *refs)
{
	bool last;

	if (!refs)
		return;
	pthread_mutex_lock(&fs->refs_lock);
	last = --refs->refs == 0;
	pthread_mutex_unlock(&fs->refs_lock);
	if (last)
		refs_free(refs);
}

static int collect_ref(void *arg, const struct hubfs_hub_ref *ref)
{
	struct ref_list *refs = arg;
	struct ref_item *items;

	if (ref->kind != HUBFS_REF_BRANCH && ref->kind != HUBFS_REF_TAG)
		return 0;
	items = hubfs_realloc(refs->items, (refs->n + 1) * sizeof(*items));
	if (!items)
		return -ENOMEM;
	refs->items = items;
	items[refs->n].dirname = rev_encode(ref->name);
	if (!items[refs->n].dirname)
		return -ENOMEM;
	items[refs->n].kind = ref->kind;
	memcpy(items[refs->n].commit, ref->commit, 41);
	refs->n++;
	return 0;
}

/* The branches and tags, listed at most every refresh seconds. */
static int refs_fetch(struct hubfs_fs *fs, struct ref_list **out)
{
	struct ref_list *refs;
	time_t now = time(NULL);
	unsigned int ttl = fs->cfg->refresh ? fs->cfg->refresh : 60;
	int err;

	pthread_mutex_lock(&fs->refs_lock);
	if (fs->refs && now - fs->refs_at < (time_t)ttl) {
		refs = fs->refs;
		refs->refs++;
		pthread_mutex_unlock(&fs->refs_lock);
		*out = refs;
		return 0;
	}
	pthread_mutex_unlock(&fs->refs_lock);

	refs = hubfs_calloc(1, sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	refs->refs = 1;
	err = hubfs_hub_list_refs(fs->hub, false, collect_ref, refs);
	if (err) {
		refs_free(refs);
		pthread_mutex_lock(&fs->refs_lock);
		refs = fs->refs;	/* serve the last listing if any */
		if (refs)
			refs->refs++;
		pthread_mutex_unlock(&fs->refs_lock);
		if (!refs)
			return err;
		*out = refs;
		return 0;
	}
	pthread_mutex_lock(&fs->refs_lock);
	if (fs->refs && --fs->refs->refs == 0)
		refs_free(fs->refs);
	fs->refs = refs;
	fs->refs_at = now;
	refs->refs += 1;	/* the caller's */
	pthread_mutex_unlock(&fs->refs_lock);
	*out = refs;
	return 0;
}

/* --- inodes ---------------------------------------------------------------- */

static struct hubfs_fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Inode numbers are FNV hashes whose low bits mix poorly: take the
 * bucket from the high bits of a Fibonacci multiplication. */
static size_t itab_slot(size_t size, fuse_ino_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ULL) >>
			(64 - __builtin_ctzll(size)));
}

static struct fs_inode *itab_find(struct hubfs_fs *fs, fuse_ino_t ino)
{
	struct fs_inode *in;

	for (in = fs->itab[itab_slot(fs->itab_size, ino)]; in; in = in->hnext)
		if (in->ino == ino)
			return in;
	return NULL;
}

/* Double the table; on allocation failure the chains just grow longer. */
static void itab_grow(struct hubfs_fs *fs)
{
	size_t size = fs->itab_size * 2, i;
	struct fs_inode **t = hubfs_calloc(size, sizeof(*t));

	if (!t)
		return;
	for (i = 0; i < fs->itab_size; i++) {
		struct fs_inode *in = fs->itab[i], *nx;

		for (; in; in = nx) {
			struct fs_inode **head = &t[itab_slot(size, in->ino)];

			nx = in->hnext;
			in->hnext = *head;
			*head = in;
		}
	}
	hubfs_free(fs->itab);
	fs->itab = t;
	fs->itab_size = size;
}

static void itab_insert(struct hubfs_fs *fs, struct fs_inode *in)
{
	struct fs_inode **head;

	if (fs->itab_count >= fs->itab_size)
		itab_grow(fs);
	head = &fs->itab[itab_slot(fs->itab_size, in->ino)];
	in->hnext = *head;
	*head = in;
	fs->itab_count++;
}

static void itab_remove(struct hubfs_fs *fs, struct fs_inode *in)
{
	struct fs_inode **p;

	for (p = &fs->itab[itab_slot(fs->itab_size, in->ino)]; *p;
	     p = &(*p)->hnext) {
		if (*p == in) {
			*p = in->hnext;
			fs->itab_count--;
			return;
		}
	}
}

/* The inode for @ino, or NULL if the kernel named one we do not know. */
static struct fs_inode *inode_get(struct hubfs_fs *fs, fuse_ino_t ino)
{
	struct fs_inode *in;

	if (ino == FUSE_ROOT_ID)
		return &fs->root_inode;
	if (ino == INO_REVS)
		return &fs->revs_inode;
	pthread_mutex_lock(&fs->itab_lock);
	in = itab_find(fs, ino);
	pthread_mutex_unlock(&fs->itab_lock);
	return in;
}

/* The inode number of @node of @rev, before probing past a collision. */
static fuse_ino_t node_ino(const struct fs_rev *rev, const struct fs_node *node)
{
	uint64_t h = hash64(rev->dirname, node->path, node->oid);

	return (h & ~(1ULL << 63)) | INO_DYNAMIC;
}

/* Count one more kernel reference to the inode of @node in @tree. */
static struct fs_inode *inode_for_node(struct hubfs_fs *fs,
				       struct fs_rev *rev,
				       struct fs_tree *tree,
				       struct fs_node *node)
{
	fuse_ino_t ino = node_ino(rev, node);
	struct fs_inode *in;

	pthread_mutex_lock(&fs->itab_lock);
	for (;; ino = ((ino + 1) & ~(1ULL << 63)) | INO_DYNAMIC) {
		in = itab_find(fs, ino);
		if (!in)
			break;
		if (in->kind == K_NODE && in->rev == rev &&
		    strcmp(in->node->path, node->path) == 0 &&
		    strcmp(in->node->oid, node->oid) == 0) {
			in->nlookup++;
			pthread_mutex_unlock(&fs->itab_lock);
			return in;
		}
	}
	in = hubfs_calloc(1, sizeof(*in));
	if (in) {
		in->ino = ino;
		in->kind = K_NODE;
		in->nlookup = 1;
		in->rev = rev;
		in->tree = tree;
		in->node = node;
		fs_tree_get(tree);
		itab_insert(fs, in);
	}
	pthread_mutex_unlock(&fs->itab_lock);
	return in;
}

/* Count one more kernel reference to a revision's root inode. */
static struct fs_inode *inode_for_rev(struct hubfs_fs *fs, struct fs_rev *rev)
{
	struct fs_inode *in;

	if (rev == fs->main)
		return &fs->root_inode;
	pthread_mutex_lock(&fs->itab_lock);
	in = itab_find(fs, rev->ino);
	if (in) {
		in->nlookup++;
	} else {
		in = hubfs_calloc(1, sizeof(*in));
		if (in) {
			in->ino = rev->ino;
			in->kind = K_REV_ROOT;
			in->nlookup = 1;
			in->rev = rev;
			itab_insert(fs, in);
		}
	}
	pthread_mutex_unlock(&fs->itab_lock);
	return in;
}

/*
 * Count one more kernel reference to the inode of working-tree node @n;
 * the caller's reference to @n passes to the inode.  A wnode keeps its
 * inode number for as long as the kernel knows it (across renames, as
 * POSIX wants); wnode->ino is guarded by itab_lock.
 */
static struct fs_inode *inode_for_wnode(struct hubfs_fs *fs,
					struct fs_wnode *n)
{
	struct fs_inode *in;
	fuse_ino_t ino;

	if (n == fs_work_root(fs->work)) {
		fs_wnode_put(fs->work, n);
		return &fs->root_inode;
	}
	pthread_mutex_lock(&fs->itab_lock);
	in = n->ino ? itab_find(fs, n->ino) : NULL;
	if (in && in->kind == K_WNODE && in->w == n) {
		in->nlookup++;
		pthread_mutex_unlock(&fs->itab_lock);
		fs_wnode_put(fs->work, n);
		return in;
	}
	do {
		ino = (++fs->next_wino & ~(1ULL << 63)) | (1ULL << 62);
	} while (itab_find(fs, ino));
	in = hubfs_calloc(1, sizeof(*in));
	if (in) {
		in->ino = ino;
		in->kind = K_WNODE;
		in->nlookup = 1;
		in->rev = fs->main;
		in->w = n;
		n->ino = ino;
		itab_insert(fs, in);
	}
	pthread_mutex_unlock(&fs->itab_lock);
	if (!in)
		fs_wnode_put(fs->work, n);
	return in;
}

static void inode_forget(struct hubfs_fs *fs, fuse_ino_t ino, uint64_t n)
{
	struct fs_inode *in;
	struct fs_tree *tree = NULL;

	if (ino == FUSE_ROOT_ID || ino == INO_REVS)
		return;
	pthread_mutex_lock(&fs->itab_lock);
	in = itab_find(fs, ino);
	if (in && in->nlookup <= n) {
		itab_remove(fs, in);
		tree = in->tree;
	} else if (in) {
		in->nlookup -= n;
		in = NULL;
	}
	pthread_mutex_unlock(&fs->itab_lock);
	if (in) {
		if (in->kind == K_WNODE)
			fs_wnode_put(fs->work, in->w);
		hubfs_free(in);
		fs_tree_put(tree);
	}
}

/* --- attributes ------------------------------------------------------------ */

static void fill_stat(struct hubfs_fs *fs, struct stat *st, fuse_ino_t ino,
		      const struct fs_node *node, int64_t mtime)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_mtim.tv_sec = mtime;
	st->st_ctim.tv_sec = mtime;
	st->st_atim.tv_sec = mtime;
	st->st_blksize = HUBFS_CACHE_BLOCK_SIZE;
	if (!node || node->type == HUBFS_ENTRY_DIR) {
		uint32_t i, subdirs = 0;

		for (i = 0; node && i < node->nchildren; i++)
			subdirs += node->children[i]->type == HUBFS_ENTRY_DIR;
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2 + subdirs;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)node->size;
		st->st_blocks = (blkcnt_t)((node->size + 511) / 512);
	}
}

static void wnode_stat(struct hubfs_fs *fs, struct fs_inode *in,
		       struct stat *st)
{
	struct fs_wattr a;

	fs_work_attr(fs->work, in->w, &a);
	memset(st, 0, sizeof(*st));
	st->st_ino = in->ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_mtim.tv_sec = a.mtime;
	st->st_ctim.tv_sec = a.mtime;
	st->st_atim.tv_sec = a.mtime;
	st->st_blksize = HUBFS_CACHE_BLOCK_SIZE;
	if (a.type == HUBFS_ENTRY_DIR) {
		st->st_mode = S_IFDIR | (fs->write_err ? 0555 : 0755);
		st->st_nlink = 2 + a.subdirs + (in->ino == FUSE_ROOT_ID);
	} else {
		st->st_mode = S_IFREG | (fs->write_err ? 0444 : 0644);
		st->st_nlink = 1;
		st->st_size = (off_t)a.size;
		st->st_blocks = (blkcnt_t)((a.size + 511) / 512);
	}
}

/*
 * The attributes of @in and how long the kernel may keep them.  For a
 * revision root this may re-resolve the revision.
 */
static void inode_stat(struct hubfs_fs *fs, struct fs_inode *in,
		       struct stat *st, double *timeout)
{
	struct fs_tree *tree;

	switch (in->kind) {
	case K_REVS_DIR:
		tree = rev_tree(fs, fs->main);
		fill_stat(fs, st, in->ino, NULL, tree->time);
		fs_tree_put(tree);
		*timeout = fs->cfg->refresh ? fs->cfg->refresh : 60;
		break;
	case K_REV_ROOT:
		tree = rev_tree(fs, in->rev);
		fill_stat(fs, st, in->ino, tree->root, tree->time);
		if (in->rev == fs->main)
			st->st_nlink++;		/* .revisions */
		fs_tree_put(tree);
		*timeout = rev_timeout(fs, in->rev);
		break;
	case K_NODE:
		/* From the inode's own node and tree: fixed for its life. */
		fill_stat(fs, st, in->ino, in->node, in->tree->time);
		*timeout = FOREVER;
		break;
	case K_WNODE:
		wnode_stat(fs, in, st);
		/* Only this mount changes the working tree; a branch moved
		 * upstream is followed by the committer, which tells the
		 * kernel.  Short timeouts keep that window small. */
		*timeout = 1.0;
		break;
	}
}

static void fill_entry(struct hubfs_fs *fs, struct fs_inode *in,
		       struct fuse_entry_param *e)
{
	double timeout;

	memset(e, 0, sizeof(*e));
	e->ino = in->ino;
	e->generation = 1;
	inode_stat(fs, in, &e->attr, &timeout);
	e->attr_timeout = timeout;
	e->entry_timeout = timeout;
}

/* --- lookup ---------------------------------------------------------------- */

/*
 * Find @name in directory @parent: the child's inode with one more
 * lookup counted, or a negative errno.  *@timeout is how long the
 * kernel may remember the answer, found or not (0: the child's own
 * timeout, and no negative entry).
 */
static int do_lookup(struct hubfs_fs *fs, fuse_ino_t parent, const char *name,
		     struct fs_inode **out, double *timeout)
{
	struct fs_inode *dir = inode_get(fs, parent);
	struct fs_tree *tree;
	struct fs_node *node = NULL;
	struct fs_rev *rev;
	int err;

	*timeout = 0;
	*out = NULL;
	if (!dir)
		return -ESTALE;
	switch (dir->kind) {
	case K_REVS_DIR:
		err = rev_get(fs, name, &rev);
		if (err)
			return err == -ENOENT ? -ENOENT : err;
		*out = inode_for_rev(fs, rev);
		return *out ? 0 : -ENOMEM;
	case K_REV_ROOT:
		if (dir->rev == fs->main && strcmp(name, REVS_NAME) == 0) {
			*out = &fs->revs_inode;
			return 0;
		}
		tree = rev_tree(fs, dir->rev);
		node = fs_tree_child(tree->root, name);
		*timeout = rev_timeout(fs, dir->rev);
		*out = node ? inode_for_node(fs, dir->rev, tree, node) : NULL;
		fs_tree_put(tree);
		break;
	case K_NODE:
		if (dir->node->type != HUBFS_ENTRY_DIR)
			return -ENOTDIR;
		node = fs_tree_child(dir->node, name);
		*timeout = dir_timeout(fs, dir->rev, dir->node);
		*out = node ? inode_for_node(fs, dir->rev, dir->tree, node)
			    : NULL;
		break;
	case K_WNODE: {
		struct fs_wnode *wn;

		if (dir->ino == FUSE_ROOT_ID && strcmp(name, REVS_NAME) == 0) {
			*out = &fs->revs_inode;
			return 0;
		}
		err = fs_work_lookup(fs->work, dir->w, name, &wn);
		if (err)
			return err;
		*out = inode_for_wnode(fs, wn);
		return *out ? 0 : -ENOMEM;
	}
	}
	if (!node)
		return -ENOENT;
	return *out ? 0 : -ENOMEM;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fuse_entry_param e;
	struct fs_inode *in;
	double timeout;
	int err;

	hubfs_err_clear();
	err = do_lookup(fs, parent, name, &in, &timeout);
	if (err == -ENOENT && timeout > 0) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = timeout;	/* a negative entry */
		fuse_reply_entry(req, &e);
		return;
	}
	if (err) {
		if (err != -ENOENT)
			hlog(LOG_ERR, "lookup %s: %s: %s", name, strerror(-err),
			     hubfs_err_or("no detail"));
		fuse_reply_err(req, -err);
		return;
	}
	fill_entry(fs, in, &e);
	if (timeout > 0)
		e.entry_timeout = timeout;
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_forget(req_fs(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		inode_forget(req_fs(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *in = inode_get(fs, ino);
	struct stat st;
	double timeout;

	(void)fi;
	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	inode_stat(fs, in, &st, &timeout);
	fuse_reply_attr(req, &st, timeout);
}

/* --- directories ------------------------------------------------------------ */

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *in = inode_get(fs, ino);
	struct dir_handle *d;
	int err;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if ((in->kind == K_NODE && in->node->type != HUBFS_ENTRY_DIR) ||
	    (in->kind == K_WNODE && in->w->type != HUBFS_ENTRY_DIR)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	d = hubfs_calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	switch (in->kind) {
	case K_REVS_DIR:
		err = refs_fetch(fs, &d->refs);
		if (err) {
			hlog(LOG_ERR, "listing %s: %s: %s", REVS_NAME,
			     strerror(-err), hubfs_err_or("no detail"));
			hubfs_free(d);
			fuse_reply_err(req, -err);
			return;
		}
		break;
	case K_REV_ROOT:
		d->tree = rev_tree(fs, in->rev);
		d->node = d->tree->root;
		d->rev = in->rev;
		d->is_mount_root = in->rev == fs->main;
		break;
	case K_NODE:
		d->tree = in->tree;
		fs_tree_get(d->tree);
		d->node = in->node;
		d->rev = in->rev;
		break;
	case K_WNODE:
		d->wdir = in->w;
		fs_wnode_get(fs->work, d->wdir);
		break;
	}
	handle_add(fs, &d->h, true);
	fi->fh = (uintptr_t)d;
	/* Immutable directories may be cached by the kernel. */
	fi->cache_readdir = d->rev &&
			    dir_timeout(fs, d->rev, d->node) == FOREVER;
	fi->keep_cache = fi->cache_readdir;
	fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi, bool plus)
{
	struct hubfs_fs *fs = req_fs(req);
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	size_t count = d->refs ? d->refs->n : d->wdir ? INT32_MAX
							 : d->node->nchildren;
	char *buf = hubfs_malloc(size);
	size_t used = 0;
	off_t i;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (i = off; i < (off_t)count + 2; i++) {
		struct fuse_entry_param e;
		struct fs_inode *in = NULL;
		const char *name;
		char wname[HUBFS_NAME_MAX + 1];
		size_t n;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			name = i == 0 ? "." : "..";
			e.attr.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else if (d->wdir) {
			struct fs_wnode *k;
			struct fs_wattr a;

			if (fs_work_list(fs->work, d->wdir, (size_t)(i - 2), &k,
					 1) == 0)
				break;
			fs_work_name(fs->work, k, wname, sizeof(wname));
			name = wname;
			if (plus) {
				in = inode_for_wnode(fs, k);
				if (!in)
					break;
				fill_entry(fs, in, &e);
			} else {
				fs_work_attr(fs->work, k, &a);
				e.attr.st_ino = 0;	/* unknown yet */
				e.attr.st_mode = a.type == HUBFS_ENTRY_DIR
							 ? S_IFDIR : S_IFREG;
				fs_wnode_put(fs->work, k);
			}
		} else if (d->refs) {
			name = d->refs->items[i - 2].dirname;
			/* No attributes: each revision resolves on lookup. */
			e.attr.st_ino = hash64("rev", name, "") | (1ULL << 63);
			e.attr.st_mode = S_IFDIR;
		} else {
			struct fs_node *node = d->node->children[i - 2];

			name = node->name;
			if (plus) {
				in = inode_for_node(fs, d->rev, d->tree, node);
				if (!in)
					break;
				fill_entry(fs, in, &e);
				e.entry_timeout = dir_timeout(fs, d->rev,
							      d->node);
			} else {
				/* The number a lookup gives, unless two
				 * nodes' hashes collide. */
				e.attr.st_ino = node_ino(d->rev, node);
				e.attr.st_mode = node->type == HUBFS_ENTRY_DIR
							 ? S_IFDIR : S_IFREG;
			}
		}
		if (plus)
			n = fuse_add_direntry_plus(req, buf + used, size - used,
						   name, &e, i + 1);
		else
			n = fuse_add_direntry(req, buf + used, size - used,
					      name, &e.attr, i + 1);
		if (n > size - used) {
			if (in)	/* it did not fit: the kernel never saw it */
				inode_forget(fs, in->ino, 1);
			break;
		}
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	hubfs_free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void file_free(struct hubfs_fs *fs, struct fs_file *f);

static void dir_free(struct hubfs_fs *fs, struct dir_handle *d)
{
	handle_del(fs, &d->h);
	fs_tree_put(d->tree);
	refs_put(fs, d->refs);
	if (d->wdir)
		fs_wnode_put(fs->work, d->wdir);
	hubfs_free(d);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	(void)ino;
	dir_free(req_fs(req), (struct dir_handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* --- files ------------------------------------------------------------------ */

/* Why this mount refuses writes, logged once per refusal. */
static int write_refused(struct hubfs_fs *fs, const char *what)
{
	if (fs->write_err == -EACCES)
		hlog(LOG_ERR, "%s: %s refused: the token cannot write to %s",
		     fs->repo_label, what, fs->repo_label);
	return fs->write_err;
}

/* @n's name for a log line, copied under the work lock (a rename may
 * free it). */
static const char *wname(struct hubfs_fs *fs, struct fs_wnode *n,
			 char buf[HUBFS_NAME_MAX + 1])
{
	fs_work_name(fs->work, n, buf, HUBFS_NAME_MAX + 1);
	return buf;
}

/* Why a change to @in, not of the working tree, is refused: the mount's
 * own revision without write access, or a read-only one. */
static int change_refused(struct hubfs_fs *fs, const struct fs_inode *in,
			  const char *what)
{
	if (fs->write_err == -EACCES && in->rev == fs->main)
		return write_refused(fs, what);
	return -EROFS;
}

/*
 * A handle opened only for writing bypasses the kernel's page cache
 * (direct_io): written bytes then go from the writer's memory straight
 * to the stage, instead of first being copied into pages of the FUSE
 * file that nobody reads, which doubles the memory a large write fills
 * (half of the write's time in S8, docs/PERFORMANCE.md).  From protocol
 * 7.39 (Linux 6.6) the kernel drops its cached pages of the range a
 * direct write covers, so readers of the file, mappings included, see
 * the new bytes; older kernels do not, and there writes keep going
 * through the page cache.  A write-only descriptor cannot be mapped.
 */
static bool write_direct(const struct hubfs_fs *fs,
			 const struct fuse_file_info *fi)
{
	return fs->direct_writes && (fi->flags & O_ACCMODE) == O_WRONLY;
}

/*
 * A file handle on the working tree.  Reads of a clean file go through
 * the block cache like any other (f->obj, opened lazily because a file
 * can become clean or dirty while open); reads of changed files come
 * from their stage.
 */
static void wnode_open(fuse_req_t req, struct hubfs_fs *fs,
		       struct fs_inode *in, struct fuse_file_info *fi)
{
	bool write = (fi->flags & O_ACCMODE) != O_RDONLY;
	char nbuf[HUBFS_NAME_MAX + 1];
	struct fs_file *f;
	int err;

	if (in->w->type != HUBFS_ENTRY_FILE) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (write && fs->write_err) {
		fuse_reply_err(req, -write_refused(fs, "opening for writing"));
		return;
	}
	f = hubfs_calloc(1, sizeof(*f));
	if (!f) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	hubfs_err_clear();
	if (write) {
		err = fs_work_open_write(fs->work, in->w,
					 (fi->flags & O_TRUNC) != 0);
		if (err) {
			hlog(LOG_ERR, "open %s: %s: %s", wname(fs, in->w, nbuf),
			     strerror(-err), hubfs_err_or("no detail"));
			hubfs_free(f);
			fuse_reply_err(req, -err);
			return;
		}
		fs_commit_writers(fs->work, 1);
	}
	f->w = in->w;
	f->writer = write;
	fs_wnode_get(fs->work, f->w);
	pthread_mutex_init(&f->lock, NULL);
	handle_add(fs, &f->h, false);
	fi->fh = (uintptr_t)f;
	/* The kernel's pages stay right: every change goes through them or
	 * drops them (write_direct()), and a change upstream gives the
	 * file a new inode. */
	fi->keep_cache = 1;
	fi->direct_io = write_direct(fs, fi);
	fuse_reply_open(req, fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *in = inode_get(fs, ino);
	struct fs_file *f;
	int err;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (in->kind == K_WNODE) {
		wnode_open(req, fs, in, fi);
		return;
	}
	if (in->kind != K_NODE || in->node->type != HUBFS_ENTRY_FILE) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, -change_refused(fs, in,
						    "opening for writing"));
		return;
	}
	f = hubfs_calloc(1, sizeof(*f));
	if (!f) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	hubfs_err_clear();
	err = fs_reader_open(&f->obj, fs->reader, in->tree, in->node);
	if (err) {
		hlog(LOG_ERR, "open %s: %s: %s", in->node->path, strerror(-err),
		     hubfs_err_or("no detail"));
		hubfs_free(f);
		fuse_reply_err(req, -err);
		return;
	}
	f->tree = in->tree;
	fs_tree_get(f->tree);
	f->node = in->node;
	pthread_mutex_init(&f->lock, NULL);
	handle_add(fs, &f->h, false);
	fi->fh = (uintptr_t)f;
	fi->keep_cache = 1;	/* the inode number changes with the content */
	fuse_reply_open(req, fi);
}

/*
 * A read through a working-tree handle: served here from the file's
 * stage (and 0 returned: replied), or, for a clean file, 1 after making
 * f->obj the file's committed content for op_read() to serve.
 */
/* A read answered with @n bytes, for the reports. */
static void count_read(struct hubfs_fs *fs, uint64_t n)
{
	atomic_fetch_add(&fs->reads, 1);
	atomic_fetch_add(&fs->read_bytes, n);
}

static int wnode_read_prepare(fuse_req_t req, struct hubfs_fs *fs,
			      struct fs_file *f, size_t size, off_t off)
{
	char nbuf[HUBFS_NAME_MAX + 1];
	struct fs_content c;
	char *buf;
	ssize_t n;
	int err;

	for (;;) {
		buf = hubfs_malloc(size ? size : 1);
		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return 0;
		}
		n = fs_work_read(fs->work, f->w, buf, size, (uint64_t)off);
		if (n != -EAGAIN)
			break;
		hubfs_free(buf);
		err = fs_work_content(fs->work, f->w, &c);
		if (err == -EAGAIN)
			continue;	/* it just got local bytes */
		if (err) {
			fuse_reply_err(req, -err);
			return 0;
		}
		pthread_mutex_lock(&f->lock);
		if (!f->obj || f->node != c.node) {
			struct fs_object *obj = NULL;

			err = fs_reader_open(&obj, fs->reader, c.tree, c.node);
			if (!err) {
				fs_object_put(f->obj);
				fs_tree_put(f->tree);
				f->obj = obj;
				f->tree = c.tree;
				fs_tree_get(f->tree);
				f->node = c.node;
				memset(&f->stream, 0, sizeof(f->stream));
			}
		} else {
			err = 0;
		}
		pthread_mutex_unlock(&f->lock);
		fs_tree_put(c.tree);
		if (err) {
			hlog(LOG_ERR, "read %s: %s: %s", c.node->path,
			     strerror(-err), hubfs_err_or("no detail"));
			fuse_reply_err(req, -err);
			return 0;
		}
		return 1;
	}
	if (n < 0) {
		hlog(LOG_ERR, "read %s at %lld: %s: %s", wname(fs, f->w, nbuf),
		     (long long)off, strerror((int)-n),
		     hubfs_err_or("no detail"));
		fuse_reply_err(req, (int)-n);
	} else {
		count_read(fs, (uint64_t)n);
		fuse_reply_buf(req, buf, (size_t)n);
	}
	hubfs_free(buf);
	return 0;
}

static void reply_early(void *arg, const void *buf, size_t len)
{
	fuse_reply_buf(arg, buf, len);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	const struct fs_early early = { .reply = reply_early, .arg = req };
	struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;
	struct hubfs_fs *fs = req_fs(req);
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
	char nbuf[HUBFS_NAME_MAX + 1];
	struct fs_object *obj;
	size_t len = 0;
	bool hold, release;
	int fd = -1, err;

	(void)ino;
	hubfs_err_clear();
	if (f->w) {
		err = wnode_read_prepare(req, fs, f, size, off);
		if (err <= 0)
			return;	/* replied */
	}
	/* A working-tree file's object may be swapped by another read of
	 * this handle (the file was committed meanwhile): hold this one.
	 * Other handles keep theirs until release. */
	pthread_mutex_lock(&f->lock);
	obj = f->obj;
	hold = f->w != NULL;
	if (hold)
		fs_object_get(obj);
	/* Pages are given back after the reply, which must not wait for
	 * the disk; by then the handle may be gone, so keep the object. */
	release = fs_reader_advise(obj, &f->stream, (uint64_t)off, size);
	if (release && !hold)
		fs_object_get(obj);
	pthread_mutex_unlock(&f->lock);
	err = fs_reader_prepare(obj, (uint64_t)off, size, &fd, &len, &early);
	if (err == 1) {
		/* Answered from the transfer; @f may be gone already. */
		count_read(fs, len);
		goto out_put;
	}
	if (err == -ENOSPC) {
		/* The cache is full of files in use, or its disk fails
		 * writes: read around it. */
		char *buf = hubfs_malloc(size);
		ssize_t n = buf ? fs_reader_read_direct(obj, buf, size,
							(uint64_t)off)
				: -ENOMEM;
		if (n >= 0) {
			count_read(fs, (uint64_t)n);
			fuse_reply_buf(req, buf, (size_t)n);
		}
		hubfs_free(buf);
		err = n >= 0 ? 0 : (int)n;
		if (!err)
			goto out_put;
	}
	if (err) {
		/* A reader that waited for another's fetch has no detail. */
		hlog(LOG_ERR, "read %s at %lld: %s: %s",
		     f->w ? wname(fs, f->w, nbuf) : f->node->path,
		     (long long)off, strerror(-err),
		     hubfs_err_or("fetched by another reader"));
		fuse_reply_err(req, -err);
		goto out_put;
	}
	if (len == 0) {
		fuse_reply_buf(req, NULL, 0);
		goto out_put;
	}
	count_read(fs, len);
	bv.buf[0].size = len;
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fd;
	bv.buf[0].pos = off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
out_put:
	if (release)
		fs_reader_release(obj, (uint64_t)off, size);
	/* Not f->w: once replied to, the handle may be released. */
	if (hold || release)
		fs_object_put(obj);
}

static void file_free(struct hubfs_fs *fs, struct fs_file *f)
{
	handle_del(fs, &f->h);
	if (f->w) {
		if (f->writer) {
			fs_work_close_write(fs->work, f->w);
			fs_commit_writers(fs->work, -1);
		}
		fs_wnode_put(fs->work, f->w);
	}
	fs_object_put(f->obj);
	fs_tree_put(f->tree);
	pthread_mutex_destroy(&f->lock);
	hubfs_free(f);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;

	(void)ino;
	if (f->obj)	/* none for a working-tree file with local bytes */
		fs_reader_close(f->obj);
	file_free(req_fs(req), f);
	fuse_reply_err(req, 0);
}

/* --- extended attributes and statfs ---------------------------------------- */

#define XATTR_COMMIT "user.hubfs.commit"
#define XATTR_OID "user.hubfs.oid"
#define XATTR_SHA256 "user.hubfs.sha256"
#define XATTR_PENDING "user.hubfs.pending"	/* the writable root */
#define XATTR_RESOLVE "user.hubfs.resolve"	/* set only */
/* The mount root's reports, read by `hubfs status` and the like. */
#define XATTR_STATUS "user.hubfs.status"
#define XATTR_METRICS "user.hubfs.metrics"
#define XATTR_CACHE_DIR "user.hubfs.cache_dir"
#define XATTR_VALUE_MAX 65536			/* the kernel's limit */

enum root_report { REPORT_PENDING, REPORT_STATUS, REPORT_METRICS };

static int format_report(struct hubfs_fs *fs, enum root_report what,
			 struct hubfs_buf *b)
{
	struct hubfs_fs_stats st;

	if (what == REPORT_PENDING)
		return fs_commit_pending(fs->work, b);
	hubfs_fs_get_stats(fs, &st);
	if (what == REPORT_STATUS)
		return hubfs_report_status(b, &st, (int64_t)time(NULL));
	return hubfs_report_metrics(b, &st, HUBFS_VERSION);
}

/* A report of the mount root, for getxattr. */
static void reply_report(fuse_req_t req, struct hubfs_fs *fs,
			 enum root_report what, size_t size)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(XATTR_VALUE_MAX);
	int err;

	hubfs_err_clear();
	err = format_report(fs, what, &b);
	if (err == -EFBIG || err == -ENOSPC)
		err = -E2BIG;	/* over the xattr size limit */
	if (err)
		fuse_reply_err(req, -err);
	else if (size == 0)
		fuse_reply_xattr(req, b.len);
	else if (size < b.len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, b.data, b.len);
	hubfs_buf_free(&b);
}

static int xattr_node(const struct fs_node *node, const char *name,
		      char *buf, size_t n)
{
	if (strcmp(name, XATTR_OID) == 0)
		return snprintf(buf, n, "%s", node->oid);
	if (strcmp(name, XATTR_SHA256) == 0 && node->lfs)
		return snprintf(buf, n, "%s", node->sha256);
	return -ENODATA;
}

/*
 * The value of attribute @name of @in into @buf (size @n); returns the
 * length, or -ENODATA.  For a revision root, @tree is its current tree.
 */
static int xattr_value(struct hubfs_fs *fs, struct fs_inode *in,
		       struct fs_tree *tree, const char *name, char *buf,
		       size_t n)
{
	const struct fs_node *node = in->kind == K_NODE ? in->node : NULL;
	struct fs_content c = { 0 };
	int len;

	/* A changed file has no blob id or sha256 until it is committed. */
	if (in->kind == K_WNODE && in->w->type == HUBFS_ENTRY_FILE &&
	    strcmp(name, XATTR_COMMIT) != 0) {
		if (fs_work_content(fs->work, in->w, &c) != 0)
			return -ENODATA;
		node = c.node;
		len = xattr_node(node, name, buf, n);
		fs_tree_put(c.tree);
		return len;
	}

	if (strcmp(name, XATTR_COMMIT) == 0 && tree)
		return snprintf(buf, n, "%s", tree->commit);
	return node ? xattr_node(node, name, buf, n) : -ENODATA;
}

static struct fs_tree *xattr_tree(struct hubfs_fs *fs, struct fs_inode *in)
{
	if (in->kind == K_NODE) {
		fs_tree_get(in->tree);
		return in->tree;
	}
	if (in->kind == K_REV_ROOT)
		return rev_tree(fs, in->rev);
	if (in->kind == K_WNODE)
		return fs_work_base(fs->work);
	return NULL;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *in = inode_get(fs, ino);
	struct fs_tree *tree;
	char value[PATH_MAX];
	int len;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (in == &fs->root_inode && in->kind == K_WNODE &&
	    strcmp(name, XATTR_PENDING) == 0) {
		reply_report(req, fs, REPORT_PENDING, size);
		return;
	}
	if (in == &fs->root_inode && strcmp(name, XATTR_STATUS) == 0) {
		reply_report(req, fs, REPORT_STATUS, size);
		return;
	}
	if (in == &fs->root_inode && strcmp(name, XATTR_METRICS) == 0) {
		reply_report(req, fs, REPORT_METRICS, size);
		return;
	}
	if (in == &fs->root_inode && strcmp(name, XATTR_CACHE_DIR) == 0) {
		len = snprintf(value, sizeof(value), "%s", fs->cfg->cache_dir);
		if ((size_t)len >= sizeof(value))
			len = -E2BIG;
	} else {
		tree = xattr_tree(fs, in);
		len = xattr_value(fs, in, tree, name, value, sizeof(value));
		fs_tree_put(tree);
	}
	if (len < 0)
		fuse_reply_err(req, -len);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)len);
	else if (size < (size_t)len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, (size_t)len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char *const names[] = { XATTR_COMMIT, XATTR_OID,
					      XATTR_SHA256 };
	static const char root_names[] = XATTR_STATUS "\0" XATTR_METRICS
					 "\0" XATTR_CACHE_DIR;
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *in = inode_get(fs, ino);
	struct fs_tree *tree;
	char list[256], value[128];
	size_t used = 0, i;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	tree = xattr_tree(fs, in);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (xattr_value(fs, in, tree, names[i], value,
				sizeof(value)) < 0)
			continue;
		memcpy(list + used, names[i], strlen(names[i]) + 1);
		used += strlen(names[i]) + 1;
	}
	fs_tree_put(tree);
	if (in == &fs->root_inode && in->kind == K_WNODE) {
		memcpy(list + used, XATTR_PENDING, sizeof(XATTR_PENDING));
		used += sizeof(XATTR_PENDING);
	}
	if (in == &fs->root_inode) {
		memcpy(list + used, root_names, sizeof(root_names));
		used += sizeof(root_names);
	}
	if (size == 0)
		fuse_reply_xattr(req, used);
	else if (size < used)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, used);
}

/* user.hubfs.resolve = "ours" | "theirs": settle a conflict. */
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *in = inode_get(fs, ino);
	bool ours = size == 4 && memcmp(value, "ours", 4) == 0;
	int err;

	(void)flags;
	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (strcmp(name, XATTR_RESOLVE) != 0) {
		fuse_reply_err(req, strncmp(name, "user.hubfs.", 11) == 0
					    ? EPERM : ENOTSUP);
		return;
	}
	if (in->kind != K_WNODE) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (!ours && !(size == 6 && memcmp(value, "theirs", 6) == 0)) {
		hlog(LOG_ERR, "%s: %s takes \"ours\" or \"theirs\"",
		     fs->repo_label, XATTR_RESOLVE);
		fuse_reply_err(req, EINVAL);
		return;
	}
	hubfs_err_clear();
	err = fs_commit_resolve(fs->work, in->w, ours);
	if (err)
		hlog(LOG_ERR, "%s: cannot resolve: %s", fs->repo_label,
		     hubfs_err_or(strerror(-err)));
	fuse_reply_err(req, -err);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct hubfs_fs *fs = req_fs(req);
	struct hubfs_cache_stats cs;
	struct fs_tree *tree = rev_tree(fs, fs->main);
	struct statvfs sv;

	(void)ino;
	hubfs_cache_get_stats(fs->cache, &cs);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = cs.max_bytes / 4096;
	sv.f_bfree = cs.used_bytes < cs.max_bytes
			     ? (cs.max_bytes - cs.used_bytes) / 4096 : 0;
	sv.f_bavail = sv.f_bfree;
	sv.f_files = tree->nnodes;
	sv.f_namemax = HUBFS_NAME_MAX;
	fs_tree_put(tree);
	fuse_reply_statfs(req, &sv);
}

/* --- writing ------------------------------------------------------------------ */

/* The working-tree directory @ino, or NULL with @err set. */
static struct fs_inode *wdir_of(struct hubfs_fs *fs, fuse_ino_t ino, int *err)
{
	struct fs_inode *in = inode_get(fs, ino);

	*err = 0;
	if (!in) {
		*err = -ESTALE;
	} else if (in->kind != K_WNODE) {
		/* A mount without write access (the caller logs it), or
		 * .revisions and what is below it */
		*err = fs->write_err == -EACCES && in->rev == fs->main
			       ? -EACCES : -EROFS;
	} else if (in->w->type != HUBFS_ENTRY_DIR) {
		*err = -ENOTDIR;
	} else if (fs->write_err) {
		*err = fs->write_err;
	}
	return *err ? NULL : in;
}

/* Reply to a failed change, logging the ones that are not the caller's
 * own mistake. */
static void reply_change_err(fuse_req_t req, struct hubfs_fs *fs,
			     const char *what, const char *name, int err)
{
	if (err == -EACCES)
		write_refused(fs, what);
	else if (err != -ENOENT && err != -EEXIST && err != -ENOTEMPTY &&
		 err != -ENOTDIR && err != -EISDIR && err != -EROFS)
		hlog(LOG_ERR, "%s %s: %s: %s", what, name, strerror(-err),
		     hubfs_err_or("no detail"));
	fuse_reply_err(req, -err);
}

/* No name check for .revisions: lookup always finds it at the root, so
 * the kernel refuses to make it before asking (EEXIST, EISDIR). */
static int check_name(struct hubfs_fs *fs, struct fs_inode *dir,
		      const char *name)
{
	return fs_work_name_ok(fs->work, dir->w, name);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fuse_entry_param e;
	struct fs_inode *dir, *in;
	struct fs_wnode *n;
	struct fs_file *f;
	int err;

	(void)mode;
	hubfs_err_clear();
	dir = wdir_of(fs, parent, &err);
	if (!err)
		err = check_name(fs, dir, name);
	if (!err)
		err = fs_work_create(fs->work, dir->w, name, &n);
	if (err == -EEXIST && !(fi->flags & O_EXCL))
		err = fs_work_lookup(fs->work, dir->w, name, &n);
	if (err) {
		reply_change_err(req, fs, "create", name, err);
		return;
	}
	in = inode_for_wnode(fs, n);
	f = in ? hubfs_calloc(1, sizeof(*f)) : NULL;
	if (!f) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (in->w->type != HUBFS_ENTRY_FILE) {
		err = -EISDIR;
	} else {
		err = fs_work_open_write(fs->work, in->w,
					 (fi->flags & O_TRUNC) != 0);
	}
	if (err) {
		hubfs_free(f);
		inode_forget(fs, in->ino, 1);
		reply_change_err(req, fs, "create", name, err);
		return;
	}
	fs_commit_writers(fs->work, 1);
	f->w = in->w;
	f->writer = true;
	fs_wnode_get(fs->work, f->w);
	pthread_mutex_init(&f->lock, NULL);
	handle_add(fs, &f->h, false);
	fi->fh = (uintptr_t)f;
	fi->keep_cache = 1;
	fi->direct_io = write_direct(fs, fi);
	fill_entry(fs, in, &e);
	fuse_reply_create(req, &e, fi);
}

/* Reply with the entry of a node just made (the reference passes on). */
static void reply_new_entry(fuse_req_t req, struct hubfs_fs *fs,
			    struct fs_wnode *n)
{
	struct fuse_entry_param e;
	struct fs_inode *in = inode_for_wnode(fs, n);

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fill_entry(fs, in, &e);
	fuse_reply_entry(req, &e);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *dir;
	struct fs_wnode *n;
	int err;

	(void)rdev;
	hubfs_err_clear();
	if (!S_ISREG(mode)) {
		hlog(LOG_ERR, "mknod %s: the Hub stores regular files and "
		     "directories only", name);
		fuse_reply_err(req, EPERM);
		return;
	}
	dir = wdir_of(fs, parent, &err);
	if (!err)
		err = check_name(fs, dir, name);
	if (!err)
		err = fs_work_create(fs->work, dir->w, name, &n);
	if (err) {
		reply_change_err(req, fs, "mknod", name, err);
		return;
	}
	reply_new_entry(req, fs, n);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *dir;
	struct fs_wnode *n;
	int err;

	(void)mode;
	hubfs_err_clear();
	dir = wdir_of(fs, parent, &err);
	if (!err)
		err = check_name(fs, dir, name);
	if (!err)
		err = fs_work_mkdir(fs->work, dir->w, name, &n);
	if (err) {
		reply_change_err(req, fs, "mkdir", name, err);
		return;
	}
	reply_new_entry(req, fs, n);
}

/* unlink or rmdir: @remove is fs_work_unlink or fs_work_rmdir. */
static void do_remove(fuse_req_t req, fuse_ino_t parent, const char *name,
		      const char *what,
		      int (*remove)(struct fs_work *, struct fs_wnode *,
				    const char *))
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *dir;
	int err;

	hubfs_err_clear();
	dir = wdir_of(fs, parent, &err);
	if (!err)
		err = remove(fs->work, dir->w, name);
	if (err)
		reply_change_err(req, fs, what, name, err);
	else
		fuse_reply_err(req, 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, "unlink", fs_work_unlink);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, "rmdir", fs_work_rmdir);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *dir, *ndir = NULL;
	int err;

	hubfs_err_clear();
	if (flags & ~RENAME_NOREPLACE) {
		hlog(LOG_ERR, "rename %s: only plain renames and "
		     "RENAME_NOREPLACE are supported", name);
		fuse_reply_err(req, EINVAL);
		return;
	}
	dir = wdir_of(fs, parent, &err);
	if (!err)
		ndir = wdir_of(fs, newparent, &err);
	if (!err)
		err = check_name(fs, ndir, newname);
	if (!err)
		err = fs_work_rename(fs->work, dir->w, name, ndir->w, newname,
				     flags);
	if (err)
		reply_change_err(req, fs, "rename", name, err);
	else
		fuse_reply_err(req, 0);
}

static void op_refuse_link(fuse_req_t req, const char *what, const char *name)
{
	hlog(LOG_ERR, "%s %s: the Hub stores no links", what, name);
	fuse_reply_err(req, EPERM);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	(void)link, (void)parent;
	op_refuse_link(req, "symlink", name);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	(void)ino, (void)newparent;
	op_refuse_link(req, "link", newname);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *in = inode_get(fs, ino);
	char nbuf[HUBFS_NAME_MAX + 1];
	struct stat st;
	double timeout;
	int err = 0;

	(void)fi;
	hubfs_err_clear();
	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (in->kind != K_WNODE) {
		fuse_reply_err(req, -change_refused(fs, in, "changing "
						    "attributes"));
		return;
	}
	if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    ((to_set & FUSE_SET_ATTR_UID && attr->st_uid != fs->uid) ||
	     (to_set & FUSE_SET_ATTR_GID && attr->st_gid != fs->gid))) {
		hlog(LOG_ERR, "chown %s: the Hub keeps no owners",
		     wname(fs, in->w, nbuf));
		err = -EPERM;
	}
	if (!err && (to_set & FUSE_SET_ATTR_MODE)) {
		/* The commit API writes every file as 0644. */
		mode_t want = in->w->type == HUBFS_ENTRY_DIR ? 0755 : 0644;

		if ((attr->st_mode & 07777) != want) {
			hlog(LOG_ERR, "chmod %s to %04o: the Hub keeps no file "
			     "modes (every file is %04o)",
			     wname(fs, in->w, nbuf),
			     (unsigned int)(attr->st_mode & 07777),
			     (unsigned int)want);
			err = -EPERM;
		}
	}
	if (!err && (to_set & FUSE_SET_ATTR_SIZE)) {
		if (fs->write_err)
			err = write_refused(fs, "truncate");
		else if (in->w->type != HUBFS_ENTRY_FILE)
			err = -EISDIR;
		else
			err = fs_work_truncate(fs->work, in->w,
					       (uint64_t)attr->st_size);
		if (err && err != -EACCES && err != -EROFS)
			hlog(LOG_ERR, "truncate %s: %s: %s",
			     wname(fs, in->w, nbuf), strerror(-err),
			     hubfs_err_or("no detail"));
	}
	/* Times are accepted and not kept: the Hub has none per file. */
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	inode_stat(fs, in, &st, &timeout);
	fuse_reply_attr(req, &st, timeout);
}

struct write_req {
	fuse_req_t req;
	struct hubfs_fs *fs;
	struct fs_wnode *w;
	off_t off;
};

static void write_answer(void *arg, ssize_t n)
{
	struct write_req *wr = arg;
	char nbuf[HUBFS_NAME_MAX + 1];

	if (n < 0) {
		if (n != -ENOSPC && n != -EFBIG)
			hlog(LOG_ERR, "write %s at %lld: %s: %s",
			     wname(wr->fs, wr->w, nbuf), (long long)wr->off,
			     strerror((int)-n), hubfs_err_or("no detail"));
		fuse_reply_err(wr->req, (int)-n);
		return;
	}
	atomic_fetch_add(&wr->fs->writes, 1);
	atomic_fetch_add(&wr->fs->write_bytes, (uint64_t)n);
	fuse_reply_write(wr->req, (size_t)n);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino,
			 struct fuse_bufvec *in_buf, off_t off,
			 struct fuse_file_info *fi)
{
	struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;
	struct write_req wr = { req, req_fs(req), f->w, off };

	(void)ino;
	hubfs_err_clear();
	if (!f->w || !f->writer) {
		fuse_reply_err(req, EBADF);
		return;
	}
	/* The bytes are in the request's buffer: hubfs does not ask for
	 * FUSE_CAP_SPLICE_READ, the one way they could be in a pipe.  The
	 * buffer is this thread's until the handler returns, so the write
	 * may hash it after answering. */
	if (in_buf->count != 1 || in_buf->off != 0 ||
	    (in_buf->buf[0].flags & FUSE_BUF_IS_FD)) {
		fuse_reply_err(req, EIO);
		return;
	}
	fs_work_write(wr.fs->work, f->w, in_buf->buf[0].mem,
		      fuse_buf_size(in_buf), (uint64_t)off, write_answer, &wr);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* Closing does not commit: the committer does, after a quiet
	 * period (or at once for fsync). */
	(void)ino, (void)fi;
	fuse_reply_err(req, 0);
}

/* fsync of a file or a directory: wait for a commit of everything. */
static void do_fsync(fuse_req_t req, fuse_ino_t ino)
{
	struct hubfs_fs *fs = req_fs(req);
	struct fs_inode *in = inode_get(fs, ino);
	int err;

	if (!in || in->kind != K_WNODE || !fs->work) {
		fuse_reply_err(req, 0);	/* read-only: nothing to sync */
		return;
	}
	err = fs_commit_sync(fs->work);
	/* The committer logged why; callers expect EIO for a failed sync,
	 * except for a conflict or a refusal, which they may act on. */
	if (err && err != -ESTALE && err != -EACCES && err != -ENOSPC)
		err = -EIO;
	fuse_reply_err(req, -err);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	(void)datasync, (void)fi;
	do_fsync(req, ino);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)datasync, (void)fi;
	do_fsync(req, ino);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct hubfs_fs *fs = userdata;

	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_SPLICE_MOVE)
		conn->want |= FUSE_CAP_SPLICE_MOVE;
	fs->direct_writes = conn->proto_major > 7 ||
			    (conn->proto_major == 7 && conn->proto_minor >= 39);
	/* libfuse 3.14 insists that init agrees with -o max_read. */
	if (fs->cfg->max_read)
		conn->max_read = fs->cfg->max_read;
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.getxattr = op_getxattr,
	.setxattr = op_setxattr,
	.listxattr = op_listxattr,
	.statfs = op_statfs,
	.create = op_create,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.symlink = op_symlink,
	.link = op_link,
	.setattr = op_setattr,
	.write_buf = op_write_buf,
	.flush = op_flush,
	.fsync = op_fsync,
	.fsyncdir = op_fsyncdir,
};

/* --- dropping bad pages --------------------------------------------------------- */

struct inval_job {
	struct hubfs_fs *fs;
	size_t n;
	fuse_ino_t inos[];
};

static void *inval_main(void *arg)
{
	struct inval_job *job = arg;
	size_t i;

	for (i = 0; i < job->n; i++)
		fuse_lowlevel_notify_inval_inode(job->fs->se, job->inos[i], 0, 0);
	atomic_fetch_sub(&job->fs->invalidating, 1);
	hubfs_free(job);
	return NULL;
}

/*
 * Content fetched for @key was wrong and may already sit in the kernel's
 * page cache under every inode with that content: drop those pages.  The
 * kernel may be waiting for a read of one of them right now, so this
 * happens on a thread of its own, never in a request's path.
 */
static void drop_bad_pages(void *arg, const char *key)
{
	struct hubfs_fs *fs = arg;
	struct inval_job *job;
	pthread_attr_t attr;
	pthread_t t;
	size_t i, n = 0, cap = 16;

	job = hubfs_malloc(sizeof(*job) + cap * sizeof(job->inos[0]));
	if (!job)
		return;
	pthread_mutex_lock(&fs->itab_lock);
	for (i = 0; i < fs->itab_size; i++) {
		struct fs_inode *in;

		for (in = fs->itab[i]; in && n < cap; in = in->hnext) {
			struct fs_content c = { 0 };

			if (in->kind == K_NODE &&
			    in->node->type == HUBFS_ENTRY_FILE &&
			    strcmp(fs_node_key(in->node), key) == 0)
				job->inos[n++] = in->ino;
			/* A clean file of the working tree reads the same
			 * content (the work lock nests inside itab_lock). */
			if (in->kind == K_WNODE &&
			    in->w->type == HUBFS_ENTRY_FILE &&
			    fs_work_content(fs->work, in->w, &c) == 0) {
				if (strcmp(fs_node_key(c.node), key) == 0)
					job->inos[n++] = in->ino;
				fs_tree_put(c.tree);
			}
		}
	}
	pthread_mutex_unlock(&fs->itab_lock);
	job->fs = fs;
	job->n = n;
	if (n == 0 || !fs->se) {
		hubfs_free(job);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&fs->invalidating, 1);
	if (pthread_create(&t, &attr, inval_main, job) != 0) {
		atomic_fetch_sub(&fs->invalidating, 1);
		hubfs_free(job);
	}
	pthread_attr_destroy(&attr);
}

/* --- lifecycle ---------------------------------------------------------------- */

static int discard(void *arg, uint64_t off, const void *data, size_t len)
{
	(void)arg, (void)off, (void)data, (void)len;
	return 0;
}

/*
 * A gated repository shows its tree to everyone but its files only to
 * approved users: read one byte of one file so that a mount without
 * access fails now, with a clear message, instead of every read failing
 * later.  The model card and .gitattributes are skipped, as the Hub may
 * serve those to anyone.
 */
static int check_gated_access(struct hubfs_fs *fs)
{
	struct fs_tree *tree = fs->main->tree;
	struct fs_node *probe = NULL;
	size_t i;
	int err;

	for (i = 0; i < tree->nnodes && !probe; i++) {
		struct fs_node *n = tree->all[i];

		if (n->type == HUBFS_ENTRY_FILE && n->size > 0 &&
		    strcmp(n->path, "README.md") != 0 &&
		    strcmp(n->path, ".gitattributes") != 0)
			probe = n;
	}
	if (!probe)
		return 0;
	struct hubfs_hub_file file = {
		.commit = tree->commit, .path = probe->path,
		.key = fs_node_key(probe), .lfs = probe->lfs,
		.size = probe->size,
	};
	err = hubfs_hub_read_range(fs->hub, &file, 0, 1, discard, NULL);
	return err == -EACCES ? err : 0;
}

static int load_tree_cb(void *arg, const char *commit, struct fs_tree **out)
{
	struct hubfs_fs *fs = arg;
	struct hubfs_hub_revision info = { .time = 0 };

	/* A tree listed for the first time needs its commit's date. */
	if (hubfs_cache_tree_has(fs->cache, fs->repo_key, commit, NULL) == 0 &&
	    !tree_in_use_peek(fs, commit))
		hubfs_hub_get_revision(fs->hub, commit, &info);
	return load_tree(fs, commit, info.time, out);
}

static int any_row(void *arg, const struct hubfs_jchange *c)
{
	(void)arg, (void)c;
	return 1;
}

/* The branch the mount writes to: its revision, "main" by default (as
 * the Hub's clients do). */
static const char *write_branch(const struct hubfs_fs *fs)
{
	return fs->cfg->revision ? fs->cfg->revision : "main";
}

/*
 * Decide whether the mount's revision is writable, and open its journal.
 * A revision that cannot be written is mounted read-only (EROFS); one
 * the token may not write to is read-only too, but each write is
 * refused with EACCES and a log line that says why.  (The default
 * branch of a Hub repository is always "main".)
 */
static int write_setup(struct hubfs_fs *fs)
{
	const char *branch = write_branch(fs);
	char base[41];
	int err;

	if (fs->cfg->ro || fs->main->immutable) {
		fs->write_err = -EROFS;
		return 0;
	}
	/* Offline, a named revision may be a tag: only the Hub's ref list
	 * says, and writes to a tag's name must never be staged.  The
	 * default branch is a branch. */
	if (fs->main->offline && fs->cfg->revision) {
		hlog(LOG_NOTICE, "%s: the Hub cannot be reached to tell whether "
		     "%s is a branch; mounting read-only", fs->repo_label,
		     fs->cfg->revision);
		fs->write_err = -EROFS;
		return 0;
	}
	/* Without write access the mount is a plain read-only one (the
	 * read path's inodes and caching), refusing writes with EACCES. */
	if (!fs->main->offline) {
		err = hubfs_hub_check_write(fs->hub, branch);
		if (err == -EACCES) {
			hlog(LOG_NOTICE, "%s: %s; writes will be refused",
			     fs->repo_label, hubfs_err_or("no write access"));
			fs->write_err = -EACCES;
			return 0;
		}
	}
	err = hubfs_journal_open(&fs->journal, fs->cfg->cache_dir,
				 fs->repo_key, branch);
	if (err == -EBUSY) {
		hlog(LOG_WARNING, "%s: %s; mounting read-only", fs->repo_label,
		     hubfs_err_or("the branch is being written elsewhere"));
		fs->write_err = -EROFS;
		return 0;
	}
	if (err)
		return err;
	if (hubfs_journal_get_base(fs->journal, base) == 0 &&
	    strcmp(base, fs->main->tree->commit) != 0 &&
	    hubfs_journal_list(fs->journal, any_row, NULL) != 0) {
		/* Changes are pending on an older commit: show them there;
		 * the committer rebases them. */
		err = load_tree(fs, base, 0, &fs->work_base);
		if (err)
			return err;
	} else {
		err = hubfs_journal_set_base(fs->journal, fs->main->tree->commit);
		if (err)
			return err;
		fs->work_base = fs->main->tree;
		fs_tree_get(fs->work_base);
	}
	hubfs_journal_stage_gc(fs->journal);
	return 0;
}

void hubfs_fs_get_stats(struct hubfs_fs *fs, struct hubfs_fs_stats *out)
{
	const struct hubfs_config *cfg = fs->cfg;
	struct fs_tree *tree;

	memset(out, 0, sizeof(*out));
	out->repo = fs->repo_label;
	out->revision = cfg->revision;
	out->endpoint = cfg->endpoint;
	out->mountpoint = cfg->mountpoint;
	out->cache_dir = cfg->cache_dir;
	out->writable = fs->work != NULL;
	out->started = fs->started;
	tree = fs->work ? fs_work_base(fs->work) : rev_tree(fs, fs->main);
	memcpy(out->commit, tree->commit, sizeof(out->commit));
	fs_tree_put(tree);
	pthread_mutex_lock(&fs->main->lock);
	out->offline = fs->main->offline;
	pthread_mutex_unlock(&fs->main->lock);
	out->reads = atomic_load(&fs->reads);
	out->read_bytes = atomic_load(&fs->read_bytes);
	out->writes = atomic_load(&fs->writes);
	out->write_bytes = atomic_load(&fs->write_bytes);
	hubfs_hub_get_stats(fs->hub, &out->hub);
	hubfs_cache_get_stats(fs->cache, &out->cache);
	if (fs->work) {
		struct fs_commit_stats cs;

		fs_commit_get_stats(fs->work, &cs);
		out->pending = cs.pending;
		out->pending_age_s = cs.pending_age_s;
		out->commit_failed = cs.failed;
		out->commit_failing = cs.failing;
		out->commit_error = cs.last_error;
		out->conflicts = cs.conflicts;
		out->uploads_at_close = cs.uploads_at_close;
		out->uploads_at_close_bytes = cs.uploads_at_close_bytes;
		out->uploads_at_close_stopped = cs.uploads_at_close_stopped;
	}
}

/* --- the metrics file ------------------------------------------------------ */

#define METRICS_INTERVAL_S 15

/*
 * Write the metrics to cfg->metrics_file whole: a reader (node_exporter's
 * textfile collector, a script) sees the old file or the new one, never
 * a part.  Errors are logged once until a write works again.
 */
static void metrics_write(struct hubfs_fs *fs, bool *failing)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(XATTR_VALUE_MAX);
	struct hubfs_buf tmp = HUBFS_BUF_INIT(PATH_MAX);
	const char *path = fs->cfg->metrics_file;
	int fd = -1, err;

	err = format_report(fs, REPORT_METRICS, &b);
	if (!err)
		err = hubfs_buf_printf(&tmp, "%s.%ld.tmp", path,
				       (long)getpid());
	if (!err) {
		fd = open(hubfs_buf_str(&tmp),
			  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			err = -errno;
	}
	if (!err && write(fd, b.data, b.len) != (ssize_t)b.len)
		err = errno ? -errno : -EIO;
	if (fd >= 0 && close(fd) != 0 && !err)
		err = -errno;
	if (!err && rename(hubfs_buf_str(&tmp), path) != 0)
		err = -errno;
	if (err && fd >= 0)
		unlink(hubfs_buf_str(&tmp));
	if (err && !*failing)
		hlog(LOG_WARNING, "metrics file %s: %s", path, strerror(-err));
	*failing = err != 0;
	hubfs_buf_free(&tmp);
	hubfs_buf_free(&b);
}

static void *metrics_main(void *arg)
{
	struct hubfs_fs *fs = arg;
	bool failing = false, stop = false;

	while (!stop) {
		struct timespec ts;

		metrics_write(fs, &failing);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += METRICS_INTERVAL_S;
		pthread_mutex_lock(&fs->metrics_lock);
		while (!fs->metrics_stop &&
		       pthread_cond_timedwait(&fs->metrics_cond,
					      &fs->metrics_lock, &ts) == 0)
			;
		stop = fs->metrics_stop;
		pthread_mutex_unlock(&fs->metrics_lock);
	}
	metrics_write(fs, &failing);	/* the final counts */
	return NULL;
}

static void metrics_stop(struct hubfs_fs *fs)
{
	if (!fs->metrics_started)
		return;
	pthread_mutex_lock(&fs->metrics_lock);
	fs->metrics_stop = true;
	pthread_cond_broadcast(&fs->metrics_cond);
	pthread_mutex_unlock(&fs->metrics_lock);
	pthread_join(fs->metrics_thread, NULL);
	fs->metrics_started = false;
}

int hubfs_fs_new(struct hubfs_fs **out, const struct hubfs_config *cfg,
		 struct hubfs_hub *hub, struct hubfs_cache *cache)
{
	struct hubfs_fs *fs = hubfs_calloc(1, sizeof(*fs));
	const char *type;
	size_t n;
	int err = -ENOMEM;

	if (!fs)
		return -ENOMEM;
	fs->cfg = cfg;
	fs->hub = hub;
	fs->cache = cache;
	fs->uid = cfg->uid_set ? cfg->uid : getuid();
	fs->gid = cfg->gid_set ? cfg->gid : getgid();
	pthread_mutex_init(&fs->revs_lock, NULL);
	pthread_mutex_init(&fs->itab_lock, NULL);
	pthread_mutex_init(&fs->refs_lock, NULL);
	pthread_mutex_init(&fs->handles_lock, NULL);
	pthread_mutex_init(&fs->metrics_lock, NULL);
	pthread_cond_init(&fs->metrics_cond, NULL);
	fs->handles.next = fs->handles.prev = &fs->handles;
	type = repo_type_plural[cfg->repo_type];
	n = strlen(cfg->endpoint) + strlen(type) + strlen(cfg->repo_namespace) +
	    strlen(cfg->repo_name) + 4;
	fs->repo_key = hubfs_malloc(n);
	fs->repo_label = hubfs_malloc(n);
	fs->itab = hubfs_calloc(ITAB_MIN, sizeof(*fs->itab));
	if (!fs->repo_key || !fs->repo_label || !fs->itab)
		goto out_free;
	fs->itab_size = ITAB_MIN;
	snprintf(fs->repo_key, n, "%s %s/%s/%s", cfg->endpoint, type,
		 cfg->repo_namespace, cfg->repo_name);
	snprintf(fs->repo_label, n, "%s/%s/%s", type, cfg->repo_namespace,
		 cfg->repo_name);

	err = rev_new(fs, cfg->revision, &fs->main);
	if (err)
		goto out_free;
	fs->revs = fs->main;
	if (fs->main->gated && !fs->main->offline) {
		err = check_gated_access(fs);
		if (err)
			goto out_free;
	}
	err = write_setup(fs);
	if (err)
		goto out_free;
	fs->root_inode.ino = FUSE_ROOT_ID;
	fs->root_inode.kind = K_REV_ROOT;
	fs->root_inode.rev = fs->main;
	fs->revs_inode.ino = INO_REVS;
	fs->revs_inode.kind = K_REVS_DIR;
	*out = fs;
	return 0;

out_free:
	hubfs_fs_free(fs);
	return err;
}

int hubfs_fs_mount(struct hubfs_fs *fs)
{
	const struct hubfs_config *cfg = fs->cfg;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fs_reader_opts ropts = FS_READER_OPTS_INIT;
	char *opts = NULL;
	int err;

	ropts.bad_content = drop_bad_pages;
	ropts.bad_content_arg = fs;
	err = fs_reader_new(&fs->reader, fs->hub, fs->cache, &ropts);
	if (err)
		return err;
	if (fs->journal) {
		struct fs_work_opts wo = {
			.journal = fs->journal, .reader = fs->reader,
			.label = fs->repo_label, .load_tree = load_tree_cb,
			.arg = fs,
		};
		struct fs_commit_opts co = {
			.hub = fs->hub, .cache = fs->cache,
			.branch = write_branch(fs),
			.message = cfg->commit_message,
			.quiet_ms = cfg->commit_quiet_ms,
			.max_delay_ms = cfg->commit_max_delay_ms,
			.refresh_ms = cfg->refresh * 1000u,
			.upload_at_close = !cfg->no_upload_at_close,
		};

		err = fs_work_new(&fs->work, fs->work_base, &wo);
		if (!err)
			err = fs_commit_start(fs->work, &co);
		if (err)
			return err;
		fs->root_inode.kind = K_WNODE;
		fs->root_inode.w = fs_work_root(fs->work);
	}
	if (asprintf(&opts, "fsname=hubfs:%s,subtype=hubfs,%s"
		     "default_permissions%s%s%s", fs->repo_label,
		     fs->write_err == -EROFS ? "ro," : "",
		     cfg->allow_other ? ",allow_other" : "",
		     cfg->fuse_opts ? "," : "",
		     cfg->fuse_opts ? cfg->fuse_opts : "") < 0)
		return -ENOMEM;
	if (fuse_opt_add_arg(&args, "hubfs") ||
	    fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, opts)) {
		err = -ENOMEM;
		goto out_free_args;
	}
	if (cfg->debug && fuse_opt_add_arg(&args, "-d")) {
		err = -ENOMEM;
		goto out_free_args;
	}
	fs->se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	if (!fs->se) {
		hubfs_err_set("cannot create the FUSE session (bad mount "
			      "options?)");
		err = -EINVAL;
		goto out_free_args;
	}
	if (fuse_set_signal_handlers(fs->se) == 0)
		fs->signals = true;
	if (fuse_session_mount(fs->se, cfg->mountpoint) != 0) {
		hubfs_err_set("cannot mount on %s", cfg->mountpoint);
		err = -EIO;
		goto out_free_args;
	}
	fs->mounted = true;
	fs->started = (int64_t)time(NULL);
	err = 0;
	if (cfg->metrics_file) {
		if (pthread_create(&fs->metrics_thread, NULL, metrics_main,
				   fs) == 0)
			fs->metrics_started = true;
		else
			hlog(LOG_WARNING, "metrics file %s: cannot start its "
			     "writer", cfg->metrics_file);
	}
out_free_args:
	fuse_opt_free_args(&args);
	free(opts);
	return err;
}

int hubfs_fs_loop(struct hubfs_fs *fs)
{
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	int err;

	if (!lc)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(lc, 0);
	fuse_loop_cfg_set_max_threads(lc, 32);
	fuse_loop_cfg_set_idle_threads(lc, 8);
	err = fuse_session_loop_mt(fs->se, lc);
	fuse_loop_cfg_destroy(lc);
	return err < 0 ? err : 0;
}

void hubfs_fs_free(struct hubfs_fs *fs)
{
	struct fs_rev *rev, *next;
	size_t i;

	if (!fs)
		return;
	/* The reader's workers first: they may still want the session (to
	 * drop bad pages), and so may threads already doing so.  The reader
	 * itself goes last: handles whose release never came (below) still
	 * hold its objects. */
	if (fs->work)
		fs_commit_stop(fs->work);
	/* After the last commit, so the file's final counts include it. */
	metrics_stop(fs);
	fs_reader_stop(fs->reader);
	while (atomic_load(&fs->invalidating) > 0)
		usleep(10000);
	if (fs->se) {
		if (fs->mounted)
			fuse_session_unmount(fs->se);
		if (fs->signals)
			fuse_remove_signal_handlers(fs->se);
		fuse_session_destroy(fs->se);
	}
	/* Handles whose release never came; no FUSE thread runs now. */
	while (fs->handles.next != &fs->handles) {
		struct fs_handle *h = fs->handles.next;

		if (h->dir)
			dir_free(fs, (struct dir_handle *)h);
		else
			file_free(fs, (struct fs_file *)h);
	}
	for (i = 0; i < fs->itab_size; i++) {
		struct fs_inode *in = fs->itab[i], *nx;

		for (; in; in = nx) {
			nx = in->hnext;
			fs_tree_put(in->tree);
			if (in->kind == K_WNODE)
				fs_wnode_put(fs->work, in->w);
			hubfs_free(in);
		}
	}
	fs_reader_free(fs->reader);
	fs_work_free(fs->work);
	hubfs_journal_close(fs->journal);
	fs_tree_put(fs->work_base);
	for (rev = fs->revs; rev; rev = next) {
		next = rev->next;
		rev_free(rev);
	}
	if (fs->refs && --fs->refs->refs == 0)
		refs_free(fs->refs);
	pthread_mutex_destroy(&fs->refs_lock);
	pthread_mutex_destroy(&fs->handles_lock);
	pthread_mutex_destroy(&fs->metrics_lock);
	pthread_cond_destroy(&fs->metrics_cond);
	pthread_mutex_destroy(&fs->itab_lock);
	hubfs_free(fs->itab);
	pthread_mutex_destroy(&fs->revs_lock);
	hubfs_free(fs->repo_key);
	hubfs_free(fs->repo_label);
	hubfs_free(fs);
}
