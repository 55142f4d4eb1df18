/*
 * The filesystem: a repository's revisions as a FUSE mount.
 *
 * The mount root is the tree of the mount's revision (by default the
 * repository's default branch).  Every other revision is reachable under
 * the hidden directory ".revisions" (not listed by readdir of the root):
 * listing it shows the branches and tags; any commit id and any
 * refs/pr/N is reachable by name.  In a revision's name, '/' is written
 * "%2F" and '%' is written "%25" (feature/x is ".revisions/feature%2Fx",
 * refs/pr/1 is ".revisions/refs%2Fpr%2F1"); no other form is accepted, so
 * each revision has exactly one name.
 *
 * Lifecycle, in this order:
 *	hubfs_fs_new()	 resolve the revision and load its tree (the checks
 *			 that decide whether the mount can succeed); starts
 *			 no thread, so the caller may fork afterwards
 *	hubfs_fs_mount() start the workers, create the FUSE session, mount
 *	hubfs_fs_loop()	 serve requests until unmounted or signalled
 *	hubfs_fs_free()	 commit what is staged, stop the workers, unmount
 *			 if mounted, free
 */
#ifndef HUBFS_FS_H
#define HUBFS_FS_H

#include <stdbool.h>
#include <stdint.h>

#include "hubfs/cache.h"
#include "hubfs/config.h"
#include "hubfs/hub.h"

struct hubfs_fs;

/*
 * Prepare a mount of @cfg's repository.  @cfg, @hub and @cache are
 * borrowed and must outlive the filesystem.  Errors are those of
 * hubfs_hub_get_revision() and hubfs_hub_list_tree() (with a detail
 * message fit for the user), except that a Hub that cannot be reached is
 * not an error when the revision can be served from the cache.
 */
int hubfs_fs_new(struct hubfs_fs **out, const struct hubfs_config *cfg,
		 struct hubfs_hub *hub, struct hubfs_cache *cache);

/* Mount at cfg->mountpoint.  After this the mount is live. */
int hubfs_fs_mount(struct hubfs_fs *fs);

/*
 * Serve requests until the filesystem is unmounted or the process gets
 * SIGINT, SIGTERM or SIGHUP.  Returns 0 or -errno.
 */
int hubfs_fs_loop(struct hubfs_fs *fs);

/* What a running mount reports: user.hubfs.status, user.hubfs.metrics. */
struct hubfs_fs_stats {
	const char *repo;		/* "models/org/name" */
	const char *revision;		/* as given, or NULL: the default */
	const char *endpoint;
	const char *mountpoint;
	const char *cache_dir;
	char commit[41];		/* what the mount root shows */
	bool writable;
	bool offline;			/* serving a commit remembered */
	int64_t started;		/* Unix time the mount went live */
	/* Requests from applications, as the kernel sent them. */
	uint64_t reads, read_bytes;
	uint64_t writes, write_bytes;
	struct hubfs_hub_stats hub;
	struct hubfs_cache_stats cache;
	/* Writable mounts only. */
	uint64_t pending;		/* changes staged, not committed */
	double pending_age_s;		/* since the oldest pending change */
	uint64_t commit_failed;		/* commit rounds failed, in total */
	unsigned int commit_failing;	/* failed in a row just now */
	int commit_error;		/* the last round's: 0 or -errno */
	uint64_t conflicts;		/* paths in conflict */
	uint64_t uploads_at_close;	/* LFS objects sent at close */
	uint64_t uploads_at_close_bytes; /* their bytes */
	/* uploads at close stopped or failed */
	uint64_t uploads_at_close_stopped;
};

/* A snapshot of @fs's state and counters.  The strings are borrowed. */
void hubfs_fs_get_stats(struct hubfs_fs *fs, struct hubfs_fs_stats *out);

/* Stop all threads, unmount if mounted, free.  Accepts NULL. */
void hubfs_fs_free(struct hubfs_fs *fs);

#endif /* HUBFS_FS_H */
