/*
 * Unit tests for src/core: buf, err, log, mem.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "hubfs/buf.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

/* ---- buf --------------------------------------------------------------- */

static void test_buf__append_within_cap(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(16);

	CHECK_STR(hubfs_buf_str(&b), "");
	CHECK_INT(hubfs_buf_append(&b, "hello", 5), 0);
	CHECK_INT(hubfs_buf_puts(&b, " world"), 0);
	CHECK_UINT(b.len, 11);
	CHECK_STR(hubfs_buf_str(&b), "hello world");
	hubfs_buf_free(&b);
	CHECK(b.data == NULL);
	CHECK_UINT(b.len, 0);
}

static void test_buf__append_past_cap_is_efbig(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(8);

	CHECK_INT(hubfs_buf_append(&b, "12345", 5), 0);
	CHECK_INT(hubfs_buf_append(&b, "6789", 4), -EFBIG);
	CHECK_UINT(b.len, 5);
	CHECK_STR(hubfs_buf_str(&b), "12345");
	hubfs_buf_free(&b);
}

static void test_buf__fills_exactly_to_cap(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(200);
	char block[100];

	memset(block, 'x', sizeof(block));
	CHECK_INT(hubfs_buf_append(&b, block, 100), 0);
	CHECK_INT(hubfs_buf_append(&b, block, 100), 0);
	CHECK_UINT(b.len, 200);
	CHECK_UINT(b.alloc, 201);	/* never more than cap + NUL */
	CHECK_INT(hubfs_buf_append(&b, "y", 1), -EFBIG);
	CHECK_INT(hubfs_buf_append(&b, "", 0), 0);
	CHECK_UINT(b.len, 200);
	CHECK_INT(b.data[200], '\0');
	hubfs_buf_free(&b);
}

static void test_buf__huge_append_does_not_overflow(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(SIZE_MAX);

	CHECK_INT(hubfs_buf_append(&b, "ab", 2), 0);
	CHECK_INT(hubfs_buf_append(&b, "x", SIZE_MAX - 1), -EFBIG);
	CHECK_STR(hubfs_buf_str(&b), "ab");
	hubfs_buf_free(&b);
}

static void test_buf__zero_cap(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(0);

	CHECK_INT(hubfs_buf_append(&b, "a", 1), -EFBIG);
	CHECK_INT(hubfs_buf_append(&b, "", 0), 0);
	CHECK_STR(hubfs_buf_str(&b), "");
	hubfs_buf_free(&b);
}

static void test_buf__printf(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(12);

	CHECK_INT(hubfs_buf_printf(&b, "%s=%d", "uid", 1000), 0);
	CHECK_STR(hubfs_buf_str(&b), "uid=1000");
	CHECK_INT(hubfs_buf_printf(&b, ",%s", "gid=10"), -EFBIG);
	CHECK_STR(hubfs_buf_str(&b), "uid=1000");
	CHECK_INT(hubfs_buf_printf(&b, ",ro"), 0);
	CHECK_STR(hubfs_buf_str(&b), "uid=1000,ro");
	hubfs_buf_free(&b);
}

static void test_buf__reset_keeps_cap(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(4);

	CHECK_INT(hubfs_buf_puts(&b, "abcd"), 0);
	hubfs_buf_reset(&b);
	CHECK_STR(hubfs_buf_str(&b), "");
	CHECK_INT(hubfs_buf_puts(&b, "wxyz"), 0);
	CHECK_INT(hubfs_buf_puts(&b, "!"), -EFBIG);
	CHECK_STR(hubfs_buf_str(&b), "wxyz");
	hubfs_buf_free(&b);
}

static void test_buf__detach(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(64);
	char *s = NULL;

	CHECK_INT(hubfs_buf_detach(&s, &b), 0);
	CHECK_STR(s, "");
	hubfs_free(s);
	CHECK_INT(hubfs_buf_puts(&b, "kept"), 0);
	CHECK_INT(hubfs_buf_detach(&s, &b), 0);
	CHECK_STR(s, "kept");
	CHECK(b.data == NULL);
	CHECK_UINT(b.len, 0);
	hubfs_free(s);
	hubfs_buf_free(&b);
}

static void test_buf__enomem_leaves_buffer_unchanged(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(1 << 20);
	char big[200];
	char *s = (char *)"unset";

	memset(big, 'b', sizeof(big));
	CHECK_INT(hubfs_buf_puts(&b, "start"), 0);
	hubfs_mem_fail_nth(1);
	CHECK_INT(hubfs_buf_append(&b, big, sizeof(big)), -ENOMEM);
	CHECK_STR(hubfs_buf_str(&b), "start");
	hubfs_buf_reset(&b);
	hubfs_mem_fail_nth(1);
	CHECK_INT(hubfs_buf_detach(&s, &(struct hubfs_buf)HUBFS_BUF_INIT(1)),
		  -ENOMEM);
	CHECK_STR(s, "unset");
	hubfs_buf_free(&b);
}

/* ---- err --------------------------------------------------------------- */

static void test_err__set_get_clear(void)
{
	CHECK(hubfs_err_get() == NULL);
	hubfs_err_set("uid=%s: out of range", "x");
	CHECK_STR(hubfs_err_get(), "uid=x: out of range");
	hubfs_err_set("second");
	CHECK_STR(hubfs_err_get(), "second");
	hubfs_err_clear();
	CHECK(hubfs_err_get() == NULL);
}

static void test_err__may_wrap_its_own_message(void)
{
	hubfs_err_set("inner %d", 1);
	hubfs_err_set("outer: %s (%s)", hubfs_err_get(), hubfs_err_get());
	CHECK_STR(hubfs_err_get(), "outer: inner 1 (inner 1)");
}

static void test_err__cut_to_max(void)
{
	char longer[HUBFS_ERR_MAX * 2];

	memset(longer, 'e', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	hubfs_err_set("%s", longer);
	CHECK_UINT(strlen(hubfs_err_get()), HUBFS_ERR_MAX - 1);
}

static void test_err__preserves_errno(void)
{
	errno = ERANGE;
	hubfs_err_set("%s", "x");
	CHECK_INT(errno, ERANGE);
}

static void *set_in_thread(void *arg)
{
	(void)arg;
	hubfs_err_set("from the thread");
	return (void *)(hubfs_err_get() ? strdup(hubfs_err_get()) : NULL);
}

static void test_err__is_per_thread(void)
{
	pthread_t t;
	void *seen;

	hubfs_err_set("from main");
	CHECK_INT(pthread_create(&t, NULL, set_in_thread, NULL), 0);
	CHECK_INT(pthread_join(t, &seen), 0);
	CHECK_STR(seen, "from the thread");
	free(seen);
	CHECK_STR(hubfs_err_get(), "from main");
}

/* ---- log --------------------------------------------------------------- */

static void check_redact(const char *in, const char *expected)
{
	char out[512];

	CHECK_INT(hubfs_log_redact(out, sizeof(out), in), 0);
	CHECK_STR(out, expected);
}

static void test_log__redact_query_string(void)
{
	check_redact("https://cdn-lfs.hf.co/repos/ab/cd/f?X-Amz-Signature=abc"
		     "&Expires=1",
		     "https://cdn-lfs.hf.co/repos/ab/cd/f?[redacted]");
	check_redact("GET https://h/x?sig=1#frag 200",
		     "GET https://h/x?[redacted] 200");
	check_redact("what? nothing", "what? nothing");
	check_redact("trailing?", "trailing?");
}

static void test_log__redact_token(void)
{
	check_redact("token hf_abcdefghijklmnopqrstuvwxyz0123456 rejected",
		     "token hf_[redacted] rejected");
	check_redact("hf_AbCdEfGh12", "hf_[redacted]");
	check_redact("Bearer=hf_abcdefgh,next", "Bearer=hf_[redacted],next");
	check_redact("/repos/x/hf_transfer123/y", "/repos/x/hf_[redacted]/y");
}

static void test_log__redact_keeps_short_or_embedded_hf(void)
{
	check_redact("hf_hub_download", "hf_hub_download");
	check_redact("hf_abcdefg", "hf_abcdefg");	/* 7: too short */
	check_redact("myhf_abcdefghijkl", "myhf_abcdefghijkl");
	check_redact("x_hf_abcdefghijkl", "x_hf_abcdefghijkl");
}

static void test_log__redact_userinfo(void)
{
	check_redact("https://user:secret@proxy.example/api/models",
		     "https://[redacted]@proxy.example/api/models");
	check_redact("https://proxy.example/a@b", "https://proxy.example/a@b");
}

static void test_log__redact_plain_text_unchanged(void)
{
	check_redact("", "");
	check_redact("https://huggingface.co/api/models/org/name",
		     "https://huggingface.co/api/models/org/name");
}

static void test_log__redact_cut_never_leaks(void)
{
	const char *in = "abc hf_abcdefghijklmnop";
	char out[12];

	/* "abc " fits, "hf_[redacted]" does not: it is dropped whole. */
	CHECK_INT(hubfs_log_redact(out, sizeof(out), in), -ENOSPC);
	CHECK_STR(out, "abc ");
	CHECK_INT(hubfs_log_redact(out, 1, in), -ENOSPC);
	CHECK_STR(out, "");
	CHECK_INT(hubfs_log_redact(out, 0, in), -ENOSPC);
	CHECK_INT(hubfs_log_redact(out, 5, "abcd"), 0);
	CHECK_STR(out, "abcd");
	CHECK_INT(hubfs_log_redact(out, 4, "abcd"), -ENOSPC);
	CHECK_STR(out, "abc");
}

static int evaluated;

static int count_evaluation(void)
{
	return ++evaluated;
}

/* Run hlog() calls with stderr sent to a file; return what was written. */
static const char *capture_stderr(void (*emit)(void))
{
	static char text[1024];
	const char *path = check_path("stderr.txt");
	FILE *f;
	int saved = dup(2);
	size_t n;

	fflush(stderr);
	if (!freopen(path, "w", stderr))
		abort();
	emit();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fopen(path, "r");
	n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
	text[n] = '\0';
	if (f)
		fclose(f);
	return text;
}

static void emit_at_notice(void)
{
	hubfs_log_set_level(LOG_NOTICE);
	hlog(LOG_DEBUG, "hidden %d", count_evaluation());
	hlog(LOG_INFO, "hidden too %d", count_evaluation());
	hlog(LOG_WARNING, "token file %s is readable\n", "/t");
	hlog(LOG_ERR, "code %d", 5);
}

static int emit_at_debug_line;

static void emit_at_debug(void)
{
	hubfs_log_set_level(LOG_DEBUG);
	emit_at_debug_line = __LINE__ + 1;
	hlog(LOG_DEBUG, "visible %d", 1);
	hubfs_log_set_level(LOG_NOTICE);
}

static void test_log__level_filters_before_formatting(void)
{
	const char *text;

	evaluated = 0;
	text = capture_stderr(emit_at_notice);
	CHECK_INT(evaluated, 0);
	CHECK_STR(text, "hubfs: warning: token file /t is readable\n"
			"hubfs: error: code 5\n");
	CHECK(hubfs_log_enabled(LOG_ERR));
	CHECK(!hubfs_log_enabled(LOG_INFO));
}

static void test_log__debug_shows_location(void)
{
	const char *text = capture_stderr(emit_at_debug);
	char expected[128];

	snprintf(expected, sizeof(expected),
		 "hubfs: debug: visible 1 (test_core.c:%d)\n",
		 emit_at_debug_line);
	CHECK_STR(text, expected);
}

static void test_log__level_is_clamped(void)
{
	hubfs_log_set_level(99);
	CHECK(hubfs_log_enabled(LOG_DEBUG));
	hubfs_log_set_level(-5);
	CHECK(hubfs_log_enabled(LOG_EMERG));
	CHECK(!hubfs_log_enabled(LOG_ALERT));
	hubfs_log_set_level(LOG_NOTICE);
}

/* ---- mem --------------------------------------------------------------- */

static void test_mem__fail_nth_fails_exactly_once(void)
{
	void *a, *b, *c;

	hubfs_mem_fail_nth(2);
	a = hubfs_malloc(8);
	b = hubfs_malloc(8);
	c = hubfs_malloc(8);
	CHECK(a != NULL);
	CHECK(b == NULL);
	CHECK(c != NULL);
	hubfs_free(a);
	hubfs_free(c);
}

static void test_mem__edge_cases(void)
{
	char *s;

	CHECK(hubfs_malloc(0) == NULL);
	CHECK(hubfs_calloc(SIZE_MAX, 2) == NULL);
	CHECK(hubfs_calloc(0, 8) == NULL);
	s = hubfs_strndup("abcdef", 3);
	CHECK_STR(s, "abc");
	hubfs_free(s);
	s = hubfs_strdup("xyz");
	CHECK_STR(s, "xyz");
	hubfs_free(s);
	hubfs_free(NULL);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_buf__append_within_cap),
	CHECK_TEST(test_buf__append_past_cap_is_efbig),
	CHECK_TEST(test_buf__fills_exactly_to_cap),
	CHECK_TEST(test_buf__huge_append_does_not_overflow),
	CHECK_TEST(test_buf__zero_cap),
	CHECK_TEST(test_buf__printf),
	CHECK_TEST(test_buf__reset_keeps_cap),
	CHECK_TEST(test_buf__detach),
	CHECK_TEST(test_buf__enomem_leaves_buffer_unchanged),
	CHECK_TEST(test_err__set_get_clear),
	CHECK_TEST(test_err__may_wrap_its_own_message),
	CHECK_TEST(test_err__cut_to_max),
	CHECK_TEST(test_err__preserves_errno),
	CHECK_TEST(test_err__is_per_thread),
	CHECK_TEST(test_log__redact_query_string),
	CHECK_TEST(test_log__redact_token),
	CHECK_TEST(test_log__redact_keeps_short_or_embedded_hf),
	CHECK_TEST(test_log__redact_userinfo),
	CHECK_TEST(test_log__redact_plain_text_unchanged),
	CHECK_TEST(test_log__redact_cut_never_leaks),
	CHECK_TEST(test_log__level_filters_before_formatting),
	CHECK_TEST(test_log__debug_shows_location),
	CHECK_TEST(test_log__level_is_clamped),
	CHECK_TEST(test_mem__fail_nth_fails_exactly_once),
	CHECK_TEST(test_mem__edge_cases),
};

CHECK_MAIN(tests)
