/*
 * Runner and helpers for the unit tests (see check.h).
 *
 * Tests run one after another in one process.  Between tests the runner
 * resets everything a test may leave behind: fault injection, the error
 * detail, the temporary directory and the paths handed out for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

#define MAX_PATHS 64

static bool failed;
static char tmpdir[256];
static char *paths[MAX_PATHS];
static size_t npaths;

bool check_str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

void check_fail(const char *file, int line, const char *fmt, ...)
{
	const char *base = strrchr(file, '/');
	va_list ap;

	fprintf(stderr, "  %s:%d: ", base ? base + 1 : file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failed = true;
}

const char *check_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	if (tmpdir[0])
		return tmpdir;
	snprintf(tmpdir, sizeof(tmpdir), "%s/hubfs-test-XXXXXX",
		 base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
		exit(1);
	}
	return tmpdir;
}

const char *check_strf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int len;

	va_start(ap, fmt);
	len = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (npaths == MAX_PATHS || len < 0) {
		fprintf(stderr, "check_strf: out of room\n");
		exit(1);
	}
	paths[npaths++] = s;
	return s;
}

const char *check_path(const char *name)
{
	return check_strf("%s/%s", check_tmpdir(), name);
}

const char *check_file(const char *name, const void *data, size_t len,
		       mode_t mode)
{
	const char *path = check_path(name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len ||
	    fchmod(fd, mode) < 0) {
		check_fail(__FILE__, __LINE__, "cannot write %s: %s", path,
			   strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	return path;
}

int check_alloc_failures(int (*op)(void *arg), void (*unchanged)(void *arg),
			 void *arg, unsigned long *enomem_runs)
{
	unsigned long nth;
	int err = -ENOMEM;

	for (nth = 1; err == -ENOMEM && !failed; nth++) {
		hubfs_mem_fail_nth(nth);
		err = op(arg);
		hubfs_mem_fail_nth(0);
		if (err == -ENOMEM)
			unchanged(arg);
	}
	*enomem_runs = nth - 2;
	return err;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void reset(void)
{
	hubfs_mem_fail_nth(0);
	hubfs_err_clear();
	hubfs_log_set_level(LOG_NOTICE);
	if (tmpdir[0])
		nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
	while (npaths)
		free(paths[--npaths]);
	failed = false;
}

static bool run_one(const struct check_test *t)
{
	bool ok;

	reset();
	t->fn();
	ok = !failed;
	reset();
	printf("%s %s\n", ok ? "ok  " : "FAIL", t->name);
	return ok;
}

int check_run(const struct check_test *tests, size_t n, int argc,
	      char **argv)
{
	int failures = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		for (size_t i = 0; i < n; i++)
			failures += !run_one(&tests[i]);
	}
	for (int a = 1; a < argc; a++) {
		size_t i;

		for (i = 0; i < n; i++)
			if (strcmp(argv[a], tests[i].name) == 0)
				break;
		if (i == n) {
			fprintf(stderr, "no test named %s\n", argv[a]);
			failures++;
			continue;
		}
		failures += !run_one(&tests[i]);
	}
	return failures ? 1 : 0;
}
