/*
 * The control command (see include/hubfs/ctl.h).
 *
 * DESIGN
 *
 * A subcommand is a short-lived process that talks to a mount only
 * through the file system: extended attributes of the mount root, fsync
 * of it, and reads of files.  That needs no socket, no daemon-side
 * protocol and no permission model of its own, works for mounts made by
 * mount(8), fstab or systemd alike, and a mount that is gone answers
 * with an errno like any other file system.
 *
 * The mount root of a path is found by walking up until the device
 * changes; a root that does not answer user.hubfs.cache_dir is not a
 * hubfs mount.
 *
 * prefetch reads files through the mount, so the bytes take the same
 * path as an application's reads: they are fetched once into the block
 * cache, checked, and also left in the page cache.  Files are read by a
 * few threads at once (-j), each file from start to end, and progress is
 * drawn on stderr when it is a terminal.
 *
 * cache opens the cache directory with the cache module, as a second
 * process would: its flock()s keep objects that any mount has open out
 * of reach, so show, gc and clear are safe while mounts run.  Run as
 * root on a directory owned by another user, it first becomes that user,
 * so that no file in the cache ends up owned by root.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "hubfs/cache.h"
#include "hubfs/config.h"
#include "hubfs/ctl.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"
#include "hubfs/report.h"

#define EXIT_USAGE 2
#define XATTR_MAX 65536
#define PREFETCH_JOBS 4
#define PREFETCH_JOBS_MAX 64
#define READ_CHUNK (1u << 20)

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fputs("hubfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int usage(const char *cmd, const char *synopsis)
{
	fail("usage: hubfs %s %s (see hubfs --help)", cmd, synopsis);
	return EXIT_USAGE;
}

/*
 * The root of the hubfs mount holding @path, into @root (PATH_MAX bytes).
 * Prints why not and returns -errno.
 */
static int find_root(const char *path, char *root)
{
	char buf[PATH_MAX], *slash;
	struct stat st, up;

	if (!realpath(path, buf)) {
		fail("%s: %s", path, strerror(errno));
		return -errno;
	}
	if (stat(buf, &st) != 0) {
		fail("%s: %s", path, strerror(errno));
		return -errno;
	}
	for (;;) {
		slash = strrchr(buf, '/');
		if (!slash || slash == buf) {
			if (stat("/", &up) == 0 && up.st_dev == st.st_dev)
				goto not_hubfs;
			break;
		}
		*slash = '\0';
		if (stat(buf, &up) != 0 || up.st_dev != st.st_dev) {
			*slash = '/';
			break;
		}
	}
	if (getxattr(buf, "user.hubfs.cache_dir", NULL, 0) < 0)
		goto not_hubfs;
	memcpy(root, buf, strlen(buf) + 1);
	return 0;
not_hubfs:
	fail("%s: not in a hubfs mount", path);
	return -ENOTSUP;
}

/* Whether @path is a file or directory of a hubfs mount. */
static bool in_hubfs(const char *path)
{
	return getxattr(path, "user.hubfs.commit", NULL, 0) >= 0 ||
	       errno == ERANGE;
}

/* The value of attribute @name of @path, NUL-terminated (free it). */
static int get_attr(const char *path, const char *name, char **out)
{
	char *buf = hubfs_malloc(XATTR_MAX + 1);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = getxattr(path, name, buf, XATTR_MAX);
	if (n < 0) {
		int err = -errno;

		hubfs_free(buf);
		return err;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

/* status, metrics and pending: print an attribute of the mount root. */
static int cmd_report(int argc, char **argv, const char *attr)
{
	char root[PATH_MAX], *text = NULL;
	int err;

	if (argc != 2)
		return usage(argv[0], "PATH");
	if (find_root(argv[1], root))
		return EXIT_FAILURE;
	err = get_attr(root, attr, &text);
	if (err == -ENODATA && strcmp(argv[0], "pending") == 0) {
		printf("%s is read-only: nothing is staged\n", root);
		return EXIT_SUCCESS;
	}
	if (err) {
		fail("%s: %s", root, strerror(-err));
		return EXIT_FAILURE;
	}
	if (strcmp(argv[0], "pending") == 0 && !*text)
		printf("nothing pending\n");
	else
		fputs(text, stdout);
	hubfs_free(text);
	return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/*
 * The commit succeeded: unless changes that cannot be restored (their
 * staged copies lost) stay pending, never to be committed.
 */
static int commit_done(const char *root)
{
	unsigned int unshown = 0;
	char *text = NULL, *line, *save = NULL;

	if (get_attr(root, "user.hubfs.pending", &text) == 0) {
		for (line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save))
			unshown += strncmp(line, "unshown ", 8) == 0;
		hubfs_free(text);
	}
	if (unshown) {
		fail("%s: committed, but %u change%s could not be restored "
		     "and cannot be committed; see hubfs pending %s (hubfs "
		     "resolve theirs %s drops them)", root, unshown,
		     unshown == 1 ? "" : "s", root, root);
		return EXIT_FAILURE;
	}
	printf("%s: everything is committed\n", root);
	return EXIT_SUCCESS;
}

static int cmd_commit(int argc, char **argv)
{
	char root[PATH_MAX];
	int fd, err = 0;

	if (argc != 2)
		return usage(argv[0], "PATH");
	if (find_root(argv[1], root))
		return EXIT_FAILURE;
	if (getxattr(root, "user.hubfs.pending", NULL, 0) < 0 &&
	    errno == ENODATA) {
		printf("%s is read-only: nothing to commit\n", root);
		return EXIT_SUCCESS;
	}
	fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		err = errno;
	if (fd >= 0)
		close(fd);
	if (!err)
		return commit_done(root);
	switch (err) {
	case ESTALE:
		fail("%s: a pending change conflicts with a change on the "
		     "Hub; see hubfs pending %s, then hubfs resolve "
		     "ours|theirs", root, root);
		break;
	case EIO:
		fail("%s: the commit failed and the changes stay staged; "
		     "the mount's log says why (hubfs status shows the "
		     "error)", root);
		break;
	default:
		fail("%s: commit: %s", root, strerror(err));
	}
	return EXIT_FAILURE;
}

static int cmd_resolve(int argc, char **argv)
{
	int status = EXIT_SUCCESS;

	if (argc < 3 || (strcmp(argv[1], "ours") != 0 &&
			 strcmp(argv[1], "theirs") != 0))
		return usage(argv[0], "ours|theirs PATH...");
	for (int i = 2; i < argc; i++) {
		char root[PATH_MAX];

		if (find_root(argv[i], root) != 0) {
			status = EXIT_FAILURE;
			continue;
		}
		if (setxattr(argv[i], "user.hubfs.resolve", argv[1],
			     strlen(argv[1]), 0) == 0)
			continue;
		if (errno == EINVAL)
			fail("%s: no conflict there", argv[i]);
		else
			fail("%s: %s", argv[i], strerror(errno));
		status = EXIT_FAILURE;
	}
	return status;
}

/* --- prefetch ----------------------------------------------------------- */

struct pf_file {
	char *path;
	uint64_t size;
};

struct prefetch {
	struct pf_file *files;
	size_t n, cap;
	uint64_t total;
	atomic_size_t next;		/* the next file to take */
	atomic_uint_fast64_t done;	/* bytes read */
	atomic_size_t finished;		/* files read to the end */
	atomic_uint failed;
	pthread_mutex_t out_lock;	/* one message at a time */
};

/* nftw() has no argument for its callback. */
static struct prefetch *pf_walk;
static int pf_walk_err;

static int pf_add(struct prefetch *pf, const char *path, uint64_t size)
{
	if (pf->n == pf->cap) {
		size_t cap = pf->cap ? pf->cap * 2 : 64;
		struct pf_file *f = hubfs_realloc(pf->files,
						  cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		pf->files = f;
		pf->cap = cap;
	}
	pf->files[pf->n].path = hubfs_strdup(path);
	if (!pf->files[pf->n].path)
		return -ENOMEM;
	pf->files[pf->n++].size = size;
	pf->total += size;
	return 0;
}

static int pf_visit(const char *path, const struct stat *st, int type,
		    struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_F && S_ISREG(st->st_mode))
		pf_walk_err = pf_add(pf_walk, path, (uint64_t)st->st_size);
	else if (type == FTW_DNR || type == FTW_NS) {
		fail("%s: cannot read", path);
		pf_walk->failed++;
	}
	return pf_walk_err ? 1 : 0;
}

/* Add @path: a file, or every file below a directory. */
static int pf_collect(struct prefetch *pf, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		fail("%s: %s", path, strerror(errno));
		return -errno;
	}
	if (!in_hubfs(path)) {
		fail("%s: not in a hubfs mount", path);
		return -ENOTSUP;
	}
	if (S_ISREG(st.st_mode))
		return pf_add(pf, path, (uint64_t)st.st_size);
	if (!S_ISDIR(st.st_mode)) {
		fail("%s: not a file or directory", path);
		return -EINVAL;
	}
	pf_walk = pf;
	pf_walk_err = 0;
	if (nftw(path, pf_visit, 16, FTW_PHYS | FTW_MOUNT) < 0 &&
	    !pf_walk_err) {
		fail("%s: %s", path, strerror(errno));
		return -errno;
	}
	return pf_walk_err;
}

static void *pf_worker(void *arg)
{
	struct prefetch *pf = arg;
	char *buf = hubfs_malloc(READ_CHUNK);
	size_t i;

	while (buf && (i = atomic_fetch_add(&pf->next, 1)) < pf->n) {
		const char *path = pf->files[i].path;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		uint64_t got = 0;
		ssize_t n = 0;

		if (fd >= 0) {
			posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
			while ((n = read(fd, buf, READ_CHUNK)) != 0) {
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0)
					break;
				got += (uint64_t)n;
				atomic_fetch_add(&pf->done, (uint64_t)n);
			}
		}
		if (fd < 0 || n < 0) {
			int e = errno;

			pthread_mutex_lock(&pf->out_lock);
			fail("%s%s: %s", isatty(STDERR_FILENO) ? "\r\033[K" : "",
			     path, strerror(e));
			pthread_mutex_unlock(&pf->out_lock);
			atomic_fetch_add(&pf->failed, 1);
		} else {
			atomic_fetch_add(&pf->finished, 1);
		}
		/* The file changed size since it was listed. */
		if (fd >= 0 && n == 0 && got < pf->files[i].size)
			atomic_fetch_add(&pf->done,
					 pf->files[i].size - got);
		if (fd >= 0)
			close(fd);
	}
	hubfs_free(buf);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pf_progress(struct prefetch *pf, double t0, bool last)
{
	uint64_t done = atomic_load(&pf->done);
	double pct = pf->total ? 100.0 * (double)done / (double)pf->total
			       : 100.0;
	double secs = now_s() - t0;
	char d[32], t[32], bar[31];
	int fill = (int)(pct * 30 / 100);

	if (fill > 30)
		fill = 30;
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '.', (size_t)(30 - fill));
	bar[30] = '\0';
	hubfs_report_size(d, sizeof(d), done);
	hubfs_report_size(t, sizeof(t), pf->total);
	pthread_mutex_lock(&pf->out_lock);
	fprintf(stderr, "\r\033[K[%s] %3.0f%%  %s / %s  %.0f MB/s  %zu/%zu "
		"files%s", bar, pct > 100 ? 100 : pct, d, t,
		secs > 0 ? (double)done / secs / 1e6 : 0.0,
		atomic_load(&pf->finished), pf->n, last ? "\n" : "");
	fflush(stderr);
	pthread_mutex_unlock(&pf->out_lock);
}

static int cmd_prefetch(int argc, char **argv)
{
	struct prefetch pf = { .out_lock = PTHREAD_MUTEX_INITIALIZER };
	unsigned long jobs = PREFETCH_JOBS;
	pthread_t threads[PREFETCH_JOBS_MAX];
	bool quiet = false, tty = isatty(STDERR_FILENO);
	size_t started = 0;
	char size[32];
	double t0;
	int i, err = 0, status;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		char *end;

		if (strcmp(argv[i], "-q") == 0) {
			quiet = true;
		} else if (strcmp(argv[i], "-j") == 0 && i + 1 < argc) {
			errno = 0;
			jobs = strtoul(argv[++i], &end, 10);
			if (errno || *end || jobs < 1 ||
			    jobs > PREFETCH_JOBS_MAX)
				return usage(argv[0], "[-j 1-64] [-q] PATH...");
		} else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			return usage(argv[0], "[-j N] [-q] PATH...");
		}
	}
	if (i == argc)
		return usage(argv[0], "[-j N] [-q] PATH...");
	for (; i < argc && err != -ENOMEM; i++) {
		err = pf_collect(&pf, argv[i]);
		if (err)
			pf.failed++;
	}
	if (err == -ENOMEM) {
		fail("out of memory");
		status = EXIT_FAILURE;
		goto out_free;
	}
	t0 = now_s();
	for (; started < jobs && started < pf.n; started++)
		if (pthread_create(&threads[started], NULL, pf_worker,
				   &pf) != 0)
			break;
	if (!started && pf.n) {
		fail("cannot start a reader thread");
		status = EXIT_FAILURE;
		goto out_free;
	}
	while (tty && !quiet && atomic_load(&pf.finished) +
				atomic_load(&pf.failed) < pf.n) {
		pf_progress(&pf, t0, false);
		usleep(250000);
		if (atomic_load(&pf.next) >= pf.n + started)
			break;	/* every worker has taken its last file */
	}
	for (size_t k = 0; k < started; k++)
		pthread_join(threads[k], NULL);
	if (tty && !quiet)
		pf_progress(&pf, t0, true);
	hubfs_report_size(size, sizeof(size), atomic_load(&pf.done));
	if (!quiet)
		printf("prefetched %zu file%s, %s in %.1f s\n",
		       atomic_load(&pf.finished),
		       atomic_load(&pf.finished) == 1 ? "" : "s", size,
		       now_s() - t0);
	status = atomic_load(&pf.failed) ? EXIT_FAILURE : EXIT_SUCCESS;
	if (status)
		fail("%u path%s could not be read", atomic_load(&pf.failed),
		     atomic_load(&pf.failed) == 1 ? "" : "s");
out_free:
	for (size_t k = 0; k < pf.n; k++)
		hubfs_free(pf.files[k].path);
	hubfs_free(pf.files);
	return status;
}

/* --- cache ---------------------------------------------------------------- */

/*
 * The cache directory @target names: itself, or its mount's (then @root
 * is the mount root, else "").
 */
static int cache_dir_of(const char *target, char *dir, char *root)
{
	char probe[PATH_MAX], *value = NULL;
	int err;

	root[0] = '\0';
	/* A mount first: a repository may hold a file named index.db. */
	if (!in_hubfs(target) &&
	    snprintf(probe, sizeof(probe), "%s/index.db", target) <
		    (int)sizeof(probe) &&
	    access(probe, F_OK) == 0) {
		if (!realpath(target, dir)) {
			fail("%s: %s", target, strerror(errno));
			return -errno;
		}
		return 0;
	}
	err = find_root(target, root);
	if (err)
		return err;
	err = get_attr(root, "user.hubfs.cache_dir", &value);
	if (err) {
		fail("%s: %s", root, strerror(-err));
		return err;
	}
	snprintf(dir, PATH_MAX, "%s", value);
	hubfs_free(value);
	return 0;
}

/* Run as the owner of @dir, so files made in it stay the owner's. */
static int become_owner(const char *dir)
{
	struct stat st;

	if (geteuid() != 0 || stat(dir, &st) != 0 || st.st_uid == 0)
		return 0;
	if (setgid(st.st_gid) != 0 || setuid(st.st_uid) != 0) {
		fail("%s: cannot act as its owner (uid %u): %s", dir,
		     (unsigned int)st.st_uid, strerror(errno));
		return -errno;
	}
	return 0;
}

/* Print the lines of @status that start with one of the @keys. */
static void print_lines(const char *status, const char *const *keys,
			size_t nkeys)
{
	const char *line = status, *end;

	for (; line && *line; line = end ? end + 1 : NULL) {
		end = strchr(line, '\n');
		for (size_t k = 0; k < nkeys; k++)
			if (strncmp(line, keys[k], strlen(keys[k])) == 0)
				printf("%.*s\n", end ? (int)(end - line)
						     : (int)strlen(line),
				       line);
	}
}

static int cmd_cache(int argc, char **argv)
{
	static const char synopsis[] = "show|gc|clear [--max SIZE] "
				       "PATH|CACHE_DIR";
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_cache *cache = NULL;
	struct hubfs_cache_stats st;
	const char *action, *target = NULL, *max = NULL;
	char dir[PATH_MAX], root[PATH_MAX], a[32], b[32], *status = NULL;
	uint64_t freed = 0, files = 0, bytes = 0;
	int i, err, ret = EXIT_FAILURE;

	if (argc < 3)
		return usage(argv[0], synopsis);
	action = argv[1];
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
			max = argv[++i];
		else if (!target)
			target = argv[i];
		else
			return usage(argv[0], synopsis);
	}
	if (!target || (strcmp(action, "show") != 0 &&
			strcmp(action, "gc") != 0 &&
			strcmp(action, "clear") != 0) ||
	    (max && strcmp(action, "gc") != 0))
		return usage(argv[0], synopsis);
	if (max) {
		char opt[64];

		snprintf(opt, sizeof(opt), "cache_size=%s", max);
		if (hubfs_config_parse_opts(&cfg, opt) != 0) {
			fail("--max %s: not a size (512M, 20G, 1TiB)", max);
			hubfs_config_free(&cfg);
			return EXIT_USAGE;
		}
	}
	if (cache_dir_of(target, dir, root) || become_owner(dir))
		goto out;
	err = hubfs_cache_open(&cache, dir, UINT64_MAX);
	if (err) {
		fail("%s: %s", dir, hubfs_err_or(strerror(-err)));
		goto out;
	}
	if (strcmp(action, "clear") == 0 || max) {
		err = hubfs_cache_trim(cache, max ? cfg.cache_size : 0,
				       &freed);
		if (err) {
			fail("%s: %s", dir, hubfs_err_or(strerror(-err)));
			goto out;
		}
	}
	if (strcmp(action, "show") != 0) {
		err = hubfs_cache_sweep(cache, &files, &bytes);
		if (err) {
			fail("%s: %s", dir, hubfs_err_or(strerror(-err)));
			goto out;
		}
	}
	hubfs_cache_get_stats(cache, &st);
	hubfs_report_size(a, sizeof(a), st.used_bytes);
	printf("cache dir:  %s\n", dir);
	printf("holds:      %s in %" PRIu64 " blocks\n", a, st.blocks);
	if (strcmp(action, "show") != 0) {
		hubfs_report_size(a, sizeof(a), freed);
		hubfs_report_size(b, sizeof(b), bytes);
		printf("evicted:    %s\n", a);
		printf("swept:      %" PRIu64 " stray file%s, %s of disk\n",
		       files, files == 1 ? "" : "s", b);
		if (strcmp(action, "clear") == 0 && st.blocks)
			printf("kept:       blocks of files open now\n");
	}
	/* The mount's own view: its hit ratio, its limit. */
	if (root[0] && get_attr(root, "user.hubfs.status", &status) == 0) {
		static const char *const keys[] = { "cache:", "hit ratio:" };

		print_lines(status, keys, 2);
	}
	ret = EXIT_SUCCESS;
out:
	hubfs_cache_close(cache);
	hubfs_free(status);
	hubfs_config_free(&cfg);
	return ret;
}

/* --- dispatch ---------------------------------------------------------------- */

static const char *const commands[] = {
	"status", "metrics", "pending", "commit", "resolve", "prefetch",
	"cache",
};

bool hubfs_ctl_is_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(name, commands[i]) == 0)
			return true;
	return false;
}

int hubfs_ctl_main(int argc, char **argv)
{
	const char *cmd = argv[0];

	if (strcmp(cmd, "status") == 0)
		return cmd_report(argc, argv, "user.hubfs.status");
	if (strcmp(cmd, "metrics") == 0)
		return cmd_report(argc, argv, "user.hubfs.metrics");
	if (strcmp(cmd, "pending") == 0)
		return cmd_report(argc, argv, "user.hubfs.pending");
	if (strcmp(cmd, "commit") == 0)
		return cmd_commit(argc, argv);
	if (strcmp(cmd, "resolve") == 0)
		return cmd_resolve(argc, argv);
	if (strcmp(cmd, "prefetch") == 0)
		return cmd_prefetch(argc, argv);
	if (strcmp(cmd, "cache") == 0)
		return cmd_cache(argc, argv);
	fail("unknown command '%s'", cmd);
	return EXIT_USAGE;
}
