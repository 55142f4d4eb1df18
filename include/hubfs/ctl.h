/*
 * The control command: `hubfs SUBCOMMAND ...` run against a live mount.
 *
 *	hubfs status PATH		what is mounted, counters
 *	hubfs metrics PATH		the same counters, Prometheus text
 *	hubfs pending PATH		changes staged and not committed
 *	hubfs commit PATH		commit them now and wait
 *	hubfs resolve ours|theirs PATH...	settle conflicts
 *	hubfs prefetch [-j N] [-q] PATH...	read files into the cache
 *	hubfs cache show|gc|clear [--max SIZE] PATH|CACHE_DIR
 *
 * PATH is the mount point or any path inside the mount.  The mount
 * answers through extended attributes of its root (user.hubfs.status,
 * user.hubfs.metrics, user.hubfs.pending, user.hubfs.cache_dir,
 * user.hubfs.resolve) and fsync of its root, so permissions are the
 * kernel's: whoever may read the mount root may ask, whoever may write
 * to it may commit.  Cache maintenance opens the cache directory itself,
 * which the cache's own locking makes safe while mounts use it.
 */
#ifndef HUBFS_CTL_H
#define HUBFS_CTL_H

#include <stdbool.h>

/* Whether @name is a subcommand (argv[1] of hubfs). */
bool hubfs_ctl_is_command(const char *name);

/*
 * Run the subcommand argv[0] with its arguments.  Returns the exit
 * status: 0 success, 1 failure, 2 usage error.  Messages go to stderr,
 * one line each starting with "hubfs: ".
 */
int hubfs_ctl_main(int argc, char **argv);

#endif /* HUBFS_CTL_H */
