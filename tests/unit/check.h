/*
 * A small assertion and runner kit for hubfs unit tests.
 *
 * A test is a static void function named test_<module>__<case>.  Each
 * test program lists its tests with CHECK_TEST() and ends with
 * CHECK_MAIN(); the build registers every test function it finds in the
 * source as its own ctest case.  The CHECK_* macros compare exact values,
 * report both sides on failure and return from the test.
 *
 * Each test runs with fault injection off and a clear error detail.
 * check_tmpdir() gives it a fresh directory, removed afterwards.
 */
#ifndef HUBFS_TEST_CHECK_H
#define HUBFS_TEST_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct check_test {
	const char *name;
	void (*fn)(void);
};

#define CHECK_TEST(fn) { #fn, fn }

#define CHECK_MAIN(tests)                                                  \
	int main(int argc, char **argv)                                    \
	{                                                                  \
		return check_run(tests, sizeof(tests) / sizeof(tests[0]),  \
				 argc, argv);                              \
	}

/* Run the tests named in argv, or all of them; returns the exit status. */
int check_run(const struct check_test *tests, size_t n, int argc,
	      char **argv);

/* Record a failure of the running test; used by the macros. */
void check_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A directory that exists for the rest of the running test. */
const char *check_tmpdir(void);

/*
 * Create the file @name in check_tmpdir() holding @len bytes of @data,
 * with permissions @mode; returns its path, valid for the rest of the
 * test, or NULL after recording a failure.
 */
const char *check_file(const char *name, const void *data, size_t len,
		       mode_t mode);

/*
 * Run @op(@arg) with the 1st, 2nd, 3rd... allocation failing, until @op
 * returns something other than -ENOMEM, and return that.  After each
 * -ENOMEM, @unchanged(@arg) checks (with CHECK_*) that @op had no effect;
 * the walk stops at its first failure.  *@enomem_runs counts the -ENOMEM
 * runs, so a test can insist that the walk found allocations to fail.
 */
int check_alloc_failures(int (*op)(void *arg), void (*unchanged)(void *arg),
			 void *arg, unsigned long *enomem_runs);

/* Formatted text, valid for the rest of the running test. */
const char *check_strf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* check_tmpdir() joined with @name, valid for the rest of the test. */
const char *check_path(const char *name);

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			check_fail(__FILE__, __LINE__, "%s", #cond);       \
			return;                                            \
		}                                                          \
	} while (0)

#define CHECK_INT(actual, expected)                                        \
	do {                                                               \
		long long check_a_ = (long long)(actual);                  \
		long long check_e_ = (long long)(expected);                \
		if (check_a_ != check_e_) {                                \
			check_fail(__FILE__, __LINE__,                     \
				   "%s == %lld, expected %s == %lld",      \
				   #actual, check_a_, #expected, check_e_);\
			return;                                            \
		}                                                          \
	} while (0)

#define CHECK_UINT(actual, expected)                                       \
	do {                                                               \
		unsigned long long check_a_ = (actual);                    \
		unsigned long long check_e_ = (expected);                  \
		if (check_a_ != check_e_) {                                \
			check_fail(__FILE__, __LINE__,                     \
				   "%s == %llu, expected %llu", #actual,   \
				   check_a_, check_e_);                    \
			return;                                            \
		}                                                          \
	} while (0)

/* Compare strings; NULL equals only NULL. */
#define CHECK_STR(actual, expected)                                        \
	do {                                                               \
		const char *check_a_ = (actual);                           \
		const char *check_e_ = (expected);                         \
		if (!check_str_eq(check_a_, check_e_)) {                   \
			check_fail(__FILE__, __LINE__,                     \
				   "%s == %s%s%s, expected %s%s%s",        \
				   #actual, check_a_ ? "\"" : "",          \
				   check_a_ ? check_a_ : "NULL",           \
				   check_a_ ? "\"" : "",                   \
				   check_e_ ? "\"" : "",                   \
				   check_e_ ? check_e_ : "NULL",           \
				   check_e_ ? "\"" : "");                  \
			return;                                            \
		}                                                          \
	} while (0)

bool check_str_eq(const char *a, const char *b);

#endif /* HUBFS_TEST_CHECK_H */
