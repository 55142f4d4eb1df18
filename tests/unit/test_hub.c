/*
 * Unit tests for src/hub: the parsers, encoders, the error table, the
 * retry delay and the argument checks of the client.  No network beyond
 * the loopback: a refused port, and a listener that answers 404.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "check.h"
#include "hub/hub_int.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

#define SHA_A "0123456789abcdef0123456789abcdef01234567"
#define SHA_B "89abcdef0123456789abcdef0123456789abcdef"
#define LFS_A "d343fd56b45340c155c28562421db2fbb6631ae3874c5d424d18c43b5eff4b34"

/* ---- helpers ------------------------------------------------------------- */

static const char *encoded(int (*put)(struct hubfs_buf *, const char *),
			   const char *s)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(4096);
	const char *r;

	if (put(&b, s) != 0) {
		hubfs_buf_free(&b);
		return "(error)";
	}
	r = check_strf("%s", hubfs_buf_str(&b));
	hubfs_buf_free(&b);
	return r;
}

static bool detail_has(const char *needle)
{
	const char *d = hubfs_err_get();

	if (d && strstr(d, needle))
		return true;
	fprintf(stderr, "  detail \"%s\" lacks \"%s\"\n", d ? d : "(none)",
		needle);
	return false;
}

/* Collects tree entries as "type path oid size lfs sha256" lines. */
struct collect {
	char lines[64][512];
	size_t n;
	int stop_at;		/* return 7 at this entry (1-based); 0: never */
};

static int collect_entry(void *arg, const struct hubfs_hub_entry *e)
{
	struct collect *c = arg;

	if (c->n < 64)
		snprintf(c->lines[c->n], sizeof(c->lines[0]),
			 "%s %s %s %llu %s %s",
			 e->type == HUBFS_ENTRY_DIR ? "dir" : "file", e->path,
			 e->oid, (unsigned long long)e->size,
			 e->lfs ? "lfs" : "-", e->sha256[0] ? e->sha256 : "-");
	c->n++;
	return c->stop_at && (int)c->n == c->stop_at ? 7 : 0;
}

static int parse_tree(const char *json, struct collect *c, size_t *skipped)
{
	return hub_parse_tree(json, strlen(json), collect_entry, c, skipped);
}

static int collect_ref(void *arg, const struct hubfs_hub_ref *r)
{
	static const char *const kinds[] = { "branch", "tag", "pr",
					     "convert" };
	struct collect *c = arg;

	if (c->n < 64)
		snprintf(c->lines[c->n], sizeof(c->lines[0]), "%s %s %s",
			 kinds[r->kind], r->name, r->commit);
	c->n++;
	return 0;
}

/* ---- URL encoding -------------------------------------------------------- */

static void test_hub__encode_revision_as_one_segment(void)
{
	CHECK_STR(encoded(hub_url_put_segment, "refs/pr/1"), "refs%2Fpr%2F1");
	CHECK_STR(encoded(hub_url_put_segment, "feature/x"), "feature%2Fx");
	CHECK_STR(encoded(hub_url_put_segment, "main"), "main");
	CHECK_STR(encoded(hub_url_put_segment, "v1.0-rc_2~x"), "v1.0-rc_2~x");
	CHECK_STR(encoded(hub_url_put_segment, "a b#c?d%e&f+g"),
		  "a%20b%23c%3Fd%25e%26f%2Bg");
	CHECK_STR(encoded(hub_url_put_segment, "caf\xc3\xa9"), "caf%C3%A9");
	CHECK_STR(encoded(hub_url_put_segment, ""), "");
}

static void test_hub__encode_path_keeps_slashes(void)
{
	CHECK_STR(encoded(hub_url_put_path, "notes/changes with spaces #1.md"),
		  "notes/changes%20with%20spaces%20%231.md");
	CHECK_STR(encoded(hub_url_put_path, "a?b/100%/x"),
		  "a%3Fb/100%25/x");
	CHECK_STR(encoded(hub_url_put_path,
			  "d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5.txt"),
		  "d%C3%A9j%C3%A0/%E6%97%A5.txt");
	CHECK_STR(encoded(hub_url_put_path, "model-00001-of-00002.safetensors"),
		  "model-00001-of-00002.safetensors");
}

static void test_hub__encode_respects_the_cap(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(8);

	CHECK_INT(hubfs_buf_puts(&b, "ab"), 0);
	/* 3 characters become 9 bytes: over the cap, nothing appended. */
	CHECK_INT(hub_url_put_segment(&b, "///"), -EFBIG);
	CHECK_STR(hubfs_buf_str(&b), "ab");
	CHECK_INT(hub_url_put_path(&b, "a/b"), 0);
	CHECK_STR(hubfs_buf_str(&b), "aba/b");
	hubfs_buf_free(&b);
}

/* ---- paths and small checks ---------------------------------------------- */

static void test_hub__path_rules(void)
{
	char longname[300], longpath[HUBFS_PATH_MAX + 2];

	CHECK(hub_path_invalid("a", 1) == NULL);
	CHECK(hub_path_invalid("a/b/c.txt", 9) == NULL);
	CHECK(hub_path_invalid("...", 3) == NULL);
	CHECK(hub_path_invalid(".hidden/x", 9) == NULL);
	CHECK(hub_path_invalid("", 0) != NULL);
	CHECK(hub_path_invalid("/abs", 4) != NULL);
	CHECK(hub_path_invalid("a//b", 4) != NULL);
	CHECK(hub_path_invalid("a/", 2) != NULL);
	CHECK(hub_path_invalid("./a", 3) != NULL);
	CHECK(hub_path_invalid("a/../b", 6) != NULL);
	CHECK(hub_path_invalid("..", 2) != NULL);
	CHECK(hub_path_invalid("a\0b", 3) != NULL);
	memset(longname, 'n', 256);
	CHECK(hub_path_invalid(longname, 256) != NULL);
	CHECK(hub_path_invalid(longname, 255) == NULL);
	for (size_t i = 0; i < sizeof(longpath); i++)
		longpath[i] = i % 100 == 99 ? '/' : 'p';
	CHECK(hub_path_invalid(longpath, HUBFS_PATH_MAX) == NULL);
	CHECK(hub_path_invalid(longpath, HUBFS_PATH_MAX + 1) != NULL);
}

static void test_hub__hex_and_printable(void)
{
	char out[16];

	CHECK(hub_is_hex(SHA_A, 40));
	CHECK(!hub_is_hex(SHA_A, 39));
	CHECK(!hub_is_hex("0123456789abcdeg", 16));
	hub_printable(out, sizeof(out), "a\nb\\c", 5);
	CHECK_STR(out, "a\\x0ab\\x5cc");
	hub_printable(out, 6, "abcdefgh", 8);
	CHECK_STR(out, "abcde");
	hub_printable(out, 6, "ab\x01xyz", 6);
	CHECK_STR(out, "ab");	/* an escape is never cut in half */
}

/* ---- time and revision JSON ---------------------------------------------- */

static void test_hub__time_parse(void)
{
	int64_t t = 42;

	CHECK_INT(hub_parse_time("1970-01-01T00:00:00Z", &t), 0);
	CHECK_INT(t, 0);
	CHECK_INT(hub_parse_time("2024-01-01T06:00:00.000Z", &t), 0);
	CHECK_INT(t, 1704088800);
	CHECK_INT(hub_parse_time("2024-02-29T00:00:00+01:00", &t), 0);
	CHECK_INT(t, 1709161200);
	CHECK_INT(hub_parse_time("2024-01-01T00:00:00-0130", &t), 0);
	CHECK_INT(t, 1704067200 + 5400);
	CHECK_INT(hub_parse_time("1969-12-31T23:59:59Z", &t), 0);
	CHECK_INT(t, -1);
	t = 42;
	CHECK_INT(hub_parse_time("2023-02-29T00:00:00Z", &t), -EINVAL);
	CHECK_INT(hub_parse_time("2024-13-01T00:00:00Z", &t), -EINVAL);
	CHECK_INT(hub_parse_time("2024-01-01T24:00:00Z", &t), -EINVAL);
	CHECK_INT(hub_parse_time("2024-01-01T00:00:00", &t), -EINVAL);
	CHECK_INT(hub_parse_time("2024-01-01T00:00:00Zjunk", &t), -EINVAL);
	CHECK_INT(hub_parse_time("2024-01-01T00:00:00.Z", &t), -EINVAL);
	CHECK_INT(hub_parse_time("2024-01-01", &t), -EINVAL);
	CHECK_INT(hub_parse_time("", &t), -EINVAL);
	CHECK_INT(t, 42);
}

static void test_hub__revision_json(void)
{
	struct hubfs_hub_revision r = { .time = 7 };
	const char *ok = "{\"_id\":\"x\",\"id\":\"tester/model1\",\"sha\":\""
			 "0123456789ABCDEF0123456789abcdef01234567\","
			 "\"lastModified\":\"2024-01-01T06:00:00.000Z\"}";

	CHECK_INT(hub_parse_revision(ok, strlen(ok), &r), 0);
	CHECK_STR(r.commit, SHA_A);
	CHECK_INT(r.time, 1704088800);
}

static void test_hub__revision_json_errors(void)
{
	static const char *const bad[] = {
		"",
		"not json",
		"[]",
		"{\"sha\":\"" SHA_A "\"}",
		"{\"lastModified\":\"2024-01-01T06:00:00.000Z\"}",
		"{\"sha\":\"0123\",\"lastModified\":\"2024-01-01T06:00:00Z\"}",
		"{\"sha\":\"" SHA_A "x\",\"lastModified\":"
		"\"2024-01-01T06:00:00Z\"}",
		"{\"sha\":1,\"lastModified\":\"2024-01-01T06:00:00Z\"}",
		"{\"sha\":\"" SHA_A "\",\"lastModified\":\"yesterday\"}",
		"{\"sha\":\"" SHA_A "\",\"lastModified\":"
		"\"2024-01-01T06:00:00Z\"",
	};
	struct hubfs_hub_revision r = { .commit = "unchanged", .time = 7 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hubfs_err_clear();
		CHECK_INT(hub_parse_revision(bad[i], strlen(bad[i]), &r), -EIO);
		CHECK(hubfs_err_get() != NULL);
		CHECK_STR(r.commit, "unchanged");
		CHECK_INT(r.time, 7);
	}
}

/* ---- tree pages ---------------------------------------------------------- */

static void test_hub__tree_page(void)
{
	struct collect c = { 0 };
	size_t skipped = 99;
	const char *page =
		"[{\"type\":\"file\",\"oid\":\"" SHA_A "\",\"size\":1562,"
		"\"path\":\".gitattributes\"},"
		"{\"type\":\"directory\",\"oid\":\"" SHA_B "\",\"size\":0,"
		"\"path\":\"notes\"},"
		"{\"type\":\"file\",\"oid\":\"" SHA_B "\",\"size\":37,"
		"\"path\":\"notes/changes with spaces #1.md\"},"
		"{\"type\":\"file\",\"oid\":\"" SHA_A "\",\"size\":132,"
		"\"path\":\"model.safetensors\",\"lfs\":{\"oid\":\"" LFS_A "\","
		"\"size\":1048576,\"pointerSize\":132},\"xetHash\":\"ab\"},"
		"{\"type\":\"directory\",\"oid\":\"" SHA_B "\","
		"\"path\":\"no-size-dir\"},"
		"{\"type\":\"file\",\"oid\":\"" SHA_A "\",\"size\":0,"
		"\"path\":\"empty\",\"lfs\":null}]";

	CHECK_INT(parse_tree(page, &c, &skipped), 0);
	CHECK_UINT(skipped, 0);
	CHECK_UINT(c.n, 6);
	CHECK_STR(c.lines[0], "file .gitattributes " SHA_A " 1562 - -");
	CHECK_STR(c.lines[1], "dir notes " SHA_B " 0 - -");
	CHECK_STR(c.lines[2], "file notes/changes with spaces #1.md " SHA_B
		  " 37 - -");
	CHECK_STR(c.lines[3], "file model.safetensors " SHA_A
		  " 1048576 lfs " LFS_A);
	CHECK_STR(c.lines[4], "dir no-size-dir " SHA_B " 0 - -");
	CHECK_STR(c.lines[5], "file empty " SHA_A " 0 - -");
	c.n = 0;
	CHECK_INT(parse_tree("[]", &c, NULL), 0);
	CHECK_UINT(c.n, 0);
}

#define F(path, rest) "{\"type\":\"file\",\"path\":" path "," rest "}"
#define OID "\"oid\":\"" SHA_A "\""

static void test_hub__tree_page_skips_invalid_entries(void)
{
	char *big = NULL, *page;
	size_t skipped = 0, n;
	struct collect c = { 0 };
	/* Every one of these must be skipped, never passed on. */
	static const char *const bad[] = {
		F("\"..\"", OID ",\"size\":1"),
		F("\"a/../b\"", OID ",\"size\":1"),
		F("\"./a\"", OID ",\"size\":1"),
		F("\"/etc/passwd\"", OID ",\"size\":1"),
		F("\"a//b\"", OID ",\"size\":1"),
		F("\"a/\"", OID ",\"size\":1"),
		F("\"\"", OID ",\"size\":1"),
		F("\"a\\u0000b\"", OID ",\"size\":1"),
		F("\"x\"", "\"oid\":\"0123\",\"size\":1"),
		F("\"x\"", "\"oid\":\"" SHA_A "0\",\"size\":1"),
		F("\"x\"", "\"oid\":\"g123456789abcdef0123456789abcdef"
			   "01234567\",\"size\":1"),
		F("\"x\"", "\"size\":1"),
		F("\"x\"", OID ",\"size\":1125899906842625"),
		F("\"x\"", OID ",\"size\":-1"),
		F("\"x\"", OID ",\"size\":1.5"),
		F("\"x\"", OID ",\"size\":\"1\""),
		F("\"x\"", OID),
		F("\"x\"", OID ",\"size\":1,\"lfs\":{\"oid\":\"abc\","
			   "\"size\":1}"),
		F("\"x\"", OID ",\"size\":1,\"lfs\":{\"oid\":\"" SHA_A "\","
			   "\"size\":1}"),
		F("\"x\"", OID ",\"size\":1,\"lfs\":{\"oid\":\"" LFS_A "\"}"),
		F("\"x\"", OID ",\"size\":1,\"lfs\":{\"oid\":\"" LFS_A "\","
			   "\"size\":1125899906842625}"),
		F("\"x\"", OID ",\"size\":1,\"lfs\":\"yes\""),
		F("1", OID ",\"size\":1"),
		"{\"type\":\"symlink\",\"path\":\"x\"," OID ",\"size\":1}",
		"{\"type\":\"unknown\",\"path\":\"x\"," OID ",\"size\":1}",
		"{\"type\":\"file\\u0000\",\"path\":\"x\"," OID ",\"size\":1}",
		"{\"path\":\"x\"," OID ",\"size\":1}",
		"\"just a string\"",
		"42",
		"null",
		"[]",
	};
	struct hubfs_buf b = HUBFS_BUF_INIT(1 << 20);

	hubfs_log_set_level(LOG_ERR);	/* the skips are logged as warnings */
	n = sizeof(bad) / sizeof(bad[0]);
	CHECK_INT(hubfs_buf_puts(&b, "["), 0);
	for (size_t i = 0; i < n; i++) {
		/* A valid entry between bad ones shows the rest survive. */
		CHECK_INT(hubfs_buf_printf(&b, "%s,", bad[i]), 0);
	}
	CHECK_INT(hubfs_buf_puts(&b, F("\"ok\"", OID ",\"size\":3") "]"), 0);
	CHECK_INT(parse_tree(hubfs_buf_str(&b), &c, &skipped), 0);
	CHECK_UINT(skipped, n);
	CHECK_UINT(c.n, 1);
	CHECK_STR(c.lines[0], "file ok " SHA_A " 3 - -");
	hubfs_buf_free(&b);

	/* Over-long component and over-long path. */
	big = hubfs_malloc(HUBFS_PATH_MAX + 200);
	page = hubfs_malloc(HUBFS_PATH_MAX + 400);
	CHECK(big && page);
	memset(big, 'n', 256);
	big[256] = '\0';
	snprintf(page, HUBFS_PATH_MAX + 400, "[" F("\"%s\"", OID ",\"size\":1")
		 "]", big);
	c.n = 0;
	CHECK_INT(parse_tree(page, &c, &skipped), 0);
	CHECK_UINT(skipped, 1);
	CHECK_UINT(c.n, 0);
	for (size_t i = 0; i < HUBFS_PATH_MAX + 1; i++)
		big[i] = i % 100 == 99 ? '/' : 'p';
	big[HUBFS_PATH_MAX + 1] = '\0';
	snprintf(page, HUBFS_PATH_MAX + 400, "[" F("\"%s\"", OID ",\"size\":1")
		 "]", big);
	CHECK_INT(parse_tree(page, &c, &skipped), 0);
	CHECK_UINT(skipped, 1);
	CHECK_UINT(c.n, 0);
	hubfs_free(big);
	hubfs_free(page);
}

static void test_hub__tree_page_malformed_is_eio(void)
{
	static const char *const bad[] = {
		"", "not json", "{}", "{\"entries\":[]}", "[{", "[1,]",
		"\"[]\"", "[] []", "[\"\xff\"]",
	};
	struct collect c = { 0 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hubfs_err_clear();
		CHECK_INT(parse_tree(bad[i], &c, NULL), -EIO);
		CHECK(hubfs_err_get() != NULL);
	}
	CHECK_UINT(c.n, 0);
}

static void test_hub__tree_callback_stops_listing(void)
{
	struct collect c = { .stop_at = 2 };
	const char *page = "[" F("\"a\"", OID ",\"size\":1") ","
			   F("\"b\"", OID ",\"size\":1") ","
			   F("\"c\"", OID ",\"size\":1") "]";

	CHECK_INT(parse_tree(page, &c, NULL), 7);
	CHECK_UINT(c.n, 2);
}

/* ---- refs ---------------------------------------------------------------- */

static void test_hub__refs_json(void)
{
	struct collect c = { 0 };
	const char *json =
		"{\"branches\":[{\"name\":\"main\",\"ref\":\"refs/heads/main\","
		"\"targetCommit\":\"" SHA_A "\"},{\"name\":\"feature/x\","
		"\"ref\":\"refs/heads/feature/x\",\"targetCommit\":\"" SHA_B
		"\"},{\"name\":\"bad\",\"targetCommit\":\"123\"},"
		"{\"name\":\"a\\nb\",\"targetCommit\":\"" SHA_A "\"},7],"
		"\"tags\":[{\"name\":\"v1.0\",\"ref\":\"refs/tags/v1.0\","
		"\"targetCommit\":\"" SHA_B "\"}],"
		"\"converts\":[{\"name\":\"parquet\",\"ref\":"
		"\"refs/convert/parquet\",\"targetCommit\":\"" SHA_A "\"},"
		"{\"name\":\"duckdb\",\"targetCommit\":\"" SHA_A "\"}],"
		"\"pullRequests\":[{\"name\":\"refs/pr/1\","
		"\"ref\":\"refs/pr/1\","
		"\"targetCommit\":\"" SHA_B "\"},{\"name\":\"2\","
		"\"targetCommit\":\"" SHA_A "\"}]}";

	hubfs_log_set_level(LOG_ERR);
	CHECK_INT(hub_parse_refs(json, strlen(json), true, collect_ref, &c), 0);
	CHECK_UINT(c.n, 7);
	CHECK_STR(c.lines[0], "branch main " SHA_A);
	CHECK_STR(c.lines[1], "branch feature/x " SHA_B);
	CHECK_STR(c.lines[2], "tag v1.0 " SHA_B);
	CHECK_STR(c.lines[3], "convert refs/convert/parquet " SHA_A);
	CHECK_STR(c.lines[4], "convert refs/convert/duckdb " SHA_A);
	CHECK_STR(c.lines[5], "pr refs/pr/1 " SHA_B);
	CHECK_STR(c.lines[6], "pr refs/pr/2 " SHA_A);
	c.n = 0;
	CHECK_INT(hub_parse_refs(json, strlen(json), false, collect_ref, &c),
		  0);
	CHECK_UINT(c.n, 5);
	c.n = 0;
	CHECK_INT(hub_parse_refs("{}", 2, true, collect_ref, &c), 0);
	CHECK_UINT(c.n, 0);
}

static void test_hub__refs_json_malformed_is_eio(void)
{
	static const char *const bad[] = {
		"", "[]", "{\"branches\":{}}", "{\"tags\":\"v1\"}", "{",
	};
	struct collect c = { 0 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(hub_parse_refs(bad[i], strlen(bad[i]), true,
					 collect_ref, &c), -EIO);
	CHECK_UINT(c.n, 0);
}

/* ---- headers ------------------------------------------------------------- */

static const char *next_of(const char *h)
{
	char *url = (char *)"unset";
	const char *r;
	int err = hub_link_next(&url, h);

	if (err)
		return check_strf("error %d", err);
	if (!url)
		return "(none)";
	r = check_strf("%s", url);
	hubfs_free(url);
	return r;
}

static void test_hub__link_header(void)
{
	CHECK_STR(next_of("<http://h/api/x?cursor=abc>; rel=\"next\""),
		  "http://h/api/x?cursor=abc");
	CHECK_STR(next_of("<http://h/p1>; rel=\"prev\", <http://h/p3>; "
			  "rel=\"next\""), "http://h/p3");
	CHECK_STR(next_of("<http://h/p3>;rel=next"), "http://h/p3");
	CHECK_STR(next_of("<http://h/a,b;c>; title=\"x, y; z\"; "
			  "rel=\"last next\""), "http://h/a,b;c");
	CHECK_STR(next_of("<http://h/p0>; rel=\"first\", <http://h/p9>; "
			  "REL=\"NEXT\"; type=\"x\""), "http://h/p9");
	CHECK_STR(next_of("<http://h/p1>; rel=\"prev\""), "(none)");
	CHECK_STR(next_of("<http://h/p1>; rel=\"nextish\""), "(none)");
	CHECK_STR(next_of(""), "(none)");
	CHECK_STR(next_of("http://h/p1; rel=next"), check_strf("error %d",
							       -EIO));
	CHECK_STR(next_of("<http://h/p1; rel=next"), check_strf("error %d",
								-EIO));
	CHECK_STR(next_of("<>; rel=next"), check_strf("error %d", -EIO));
	CHECK_STR(next_of("<http://h/p1>; rel=\"next"), check_strf("error %d",
								  -EIO));
	CHECK_STR(next_of("<http://h/p1> junk"), check_strf("error %d", -EIO));
}

static void test_hub__content_range(void)
{
	struct hub_content_range cr = { .first = 99 };

	CHECK_INT(hub_parse_content_range("bytes 0-99/1000", &cr), 0);
	CHECK(!cr.unsatisfied && cr.total_known);
	CHECK_UINT(cr.first, 0);
	CHECK_UINT(cr.last, 99);
	CHECK_UINT(cr.total, 1000);
	CHECK_INT(hub_parse_content_range("bytes 999-999/1000", &cr), 0);
	CHECK_INT(hub_parse_content_range("Bytes 5-9/*", &cr), 0);
	CHECK(!cr.total_known);
	CHECK_UINT(cr.first, 5);
	CHECK_INT(hub_parse_content_range("bytes */1000", &cr), 0);
	CHECK(cr.unsatisfied && cr.total_known);
	CHECK_UINT(cr.total, 1000);
	CHECK_INT(hub_parse_content_range(
			  "bytes 0-18446744073709551614/18446744073709551615",
			  &cr), 0);
	CHECK_UINT(cr.last, 18446744073709551614ull);

	cr.first = 1234;
	CHECK_INT(hub_parse_content_range("bytes 0-18446744073709551616/1",
					  &cr), -EIO);
	CHECK_INT(hub_parse_content_range(
			  "bytes 0-1/99999999999999999999999", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("bytes 0-1000/1000", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("bytes 9-5/1000", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("bytes */*", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("bytes 0-9", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("bytes -1-9/10", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("bytes 0-9/10 x", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("bytes 0-9/10,11-12/20", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("items 0-9/10", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("bytes=0-9/10", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("", &cr), -EIO);
	CHECK_INT(hub_parse_content_range("garbage", &cr), -EIO);
	CHECK_UINT(cr.first, 1234);	/* untouched on failure */
}

static void test_hub__retry_after_and_ratelimit(void)
{
	unsigned int s = 77;

	CHECK_INT(hub_parse_retry_after("2", &s), 0);
	CHECK_UINT(s, 2);
	CHECK_INT(hub_parse_retry_after(" 120 ", &s), 0);
	CHECK_UINT(s, 120);
	CHECK_INT(hub_parse_retry_after("99999999999", &s), 0);
	CHECK_UINT(s, UINT32_MAX);
	s = 77;
	CHECK_INT(hub_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", &s),
		  -EINVAL);
	CHECK_INT(hub_parse_retry_after("-1", &s), -EINVAL);
	CHECK_INT(hub_parse_retry_after("", &s), -EINVAL);
	CHECK_UINT(s, 77);

	CHECK_INT(hub_parse_ratelimit("\"api\";r=0;t=120", &s), 0);
	CHECK_UINT(s, 121);
	CHECK_INT(hub_parse_ratelimit("\"resolvers\"; t=5; r=0", &s), 0);
	CHECK_UINT(s, 6);
	CHECK_INT(hub_parse_ratelimit("api;r=0;t=0", &s), 0);
	CHECK_UINT(s, 1);
	s = 77;
	CHECK_INT(hub_parse_ratelimit("\"api\";r=12;t=120", &s), -ENOENT);
	CHECK_INT(hub_parse_ratelimit("\"api\";r=0", &s), -EINVAL);
	CHECK_INT(hub_parse_ratelimit("\"api\";r=x;t=3", &s), -EINVAL);
	CHECK_INT(hub_parse_ratelimit("\"api;r=0;t=3", &s), -EINVAL);
	CHECK_INT(hub_parse_ratelimit("", &s), -EINVAL);
	CHECK_UINT(s, 77);
}

static void test_hub__wait_ms(void)
{
	struct hubfs_hub_opts o = HUBFS_HUB_OPTS_INIT;
	const uint32_t mid = 1u << 31;

	o.backoff_ms = 500;
	o.max_wait_s = 60;
	/* rnd at the middle of its range: factor 1.0. */
	CHECK_UINT(hub_wait_ms(&o, 0, 503, NULL, NULL, mid), 500);
	CHECK_UINT(hub_wait_ms(&o, 1, 503, NULL, NULL, mid), 1000);
	CHECK_UINT(hub_wait_ms(&o, 3, 0, NULL, NULL, mid), 4000);
	CHECK_UINT(hub_wait_ms(&o, 4, 0, NULL, NULL, mid), 8000);
	CHECK_UINT(hub_wait_ms(&o, 40, 0, NULL, NULL, mid), 8000);
	/* Jitter spans [0.75, 1.25) and never passes the cap. */
	CHECK_UINT(hub_wait_ms(&o, 0, 503, NULL, NULL, 0), 375);
	CHECK_UINT(hub_wait_ms(&o, 0, 503, NULL, NULL, UINT32_MAX), 624);
	CHECK_UINT(hub_wait_ms(&o, 9, 503, NULL, NULL, UINT32_MAX), 8000);
	/* 429: RateLimit r=0 first (t + 1), else Retry-After, capped. */
	CHECK_UINT(hub_wait_ms(&o, 0, 429, "\"api\";r=0;t=3", "10", mid), 4000);
	CHECK_UINT(hub_wait_ms(&o, 0, 429, "\"api\";r=5;t=3", "10", mid),
		   10000);
	CHECK_UINT(hub_wait_ms(&o, 0, 429, NULL, "2", mid), 2000);
	CHECK_UINT(hub_wait_ms(&o, 0, 429, NULL, "3600", mid), 60000);
	CHECK_UINT(hub_wait_ms(&o, 0, 429, NULL, "soon", mid), 500);
	/* Retry-After on another status is not a rate limit. */
	CHECK_UINT(hub_wait_ms(&o, 0, 503, NULL, "30", mid), 500);
	o.max_wait_s = 1;
	CHECK_UINT(hub_wait_ms(&o, 0, 429, "\"api\";r=0;t=300", NULL, mid),
		   1000);
}

static int error_body(const char *json, char *msg, size_t n)
{
	return hub_parse_error_body(json, strlen(json), msg, n);
}

static void test_hub__error_body(void)
{
	char msg[32] = "x";

	CHECK_INT(error_body("{\"error\":\"Invalid rev id: x\"}", msg,
			     sizeof(msg)), 0);
	CHECK_STR(msg, "Invalid rev id: x");
	CHECK_INT(error_body("{\"error\":\"a\\nb\"}", msg, sizeof(msg)), 0);
	CHECK_STR(msg, "a\\x0ab");
	CHECK_INT(error_body("{\"message\":\"x\"}", msg, sizeof(msg)),
		  -ENOENT);
	CHECK_INT(error_body("<html>", msg, sizeof(msg)), -EIO);
}

/* ---- the error table ----------------------------------------------------- */

struct errcase {
	long status;
	const char *code, *message;
	bool cdn;
	int err;
	bool retry;
	const char *detail;	/* a part of the detail */
};

static void test_hub__errmap_status(void)
{
	static const struct errcase cases[] = {
		{ 404, "RepoNotFound", "Repository Not Found", false, -ENOENT,
		  false, "repository models/x/y not found (or it is private "
		  "and no valid token was given)" },
		{ 401, "RepoNotFound", "", false, -ENOENT, false,
		  "models/x/y not found" },
		{ 401, "", "", false, -ENOENT, false, "or it is private" },
		{ 401, "", "Invalid credentials in Authorization header", false,
		  -EACCES, false, "the token was refused" },
		{ 401, "RepoNotFound",
		  "Invalid credentials in Authorization header", false,
		  -EACCES, false, "the token was refused" },
		{ 403, "GatedRepo", "restricted", false, -EACCES, false,
		  "models/x/y is gated" },
		{ 401, "GatedRepo", "", false, -EACCES, false, "gated" },
		{ 404, "RevisionNotFound", "Invalid rev id: dev", false,
		  -ENOENT, false, "revision dev not found in models/x/y" },
		{ 404, "EntryNotFound", "", false, -ENOENT, false,
		  "a/b.bin not found" },
		{ 403, "", "Access to this resource is disabled.", false,
		  -EACCES, false, "disabled" },
		{ 403, "", "read-only token", false, -EACCES, false,
		  "read-only token" },
		{ 404, "", "", false, -ENOENT, false, "not found" },
		{ 403, "", "Request has expired", true, -EACCES, false,
		  "refused the signed URL (HTTP 403: Request has expired)" },
		{ 404, "", "", true, -ENOENT, false, "no such object" },
		{ 410, "", "", true, -ENOENT, false, "no such object" },
		{ 400, "", "bad", false, -EINVAL, false, "HTTP 400" },
		{ 408, "", "", false, -ETIMEDOUT, true, "timed out" },
		{ 409, "", "", false, -EEXIST, false, "conflict" },
		{ 412, "", "", false, -ESTALE, false, "HTTP 412" },
		{ 413, "", "", false, -EFBIG, false, "too large" },
		{ 416, "", "", false, -EIO, false, "HTTP 416" },
		{ 429, "", "slow down", false, -EAGAIN, true, "rate limited" },
		{ 500, "", "", false, -EIO, true, "HTTP 500" },
		{ 502, "", "", true, -EIO, true, "download server failed" },
		{ 503, "", "Injected fault", false, -EIO, true,
		  "the Hub failed (HTTP 503: Injected fault)" },
		{ 504, "", "", false, -ETIMEDOUT, true, "HTTP 504" },
		{ 599, "", "", false, -EIO, true, "HTTP 599" },
		{ 418, "", "", false, -EIO, false, "unexpected" },
		{ 302, "", "", false, -EIO, false, "HTTP 302" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct errcase *c = &cases[i];
		struct hub_errctx ctx = { .repo = "models/x/y", .rev = "dev",
					  .path = "a/b.bin", .cdn = c->cdn };
		bool retry = !c->retry;

		hubfs_err_clear();
		CHECK_INT(hub_errmap_status(&ctx, c->status, c->code,
					    c->message, &retry), c->err);
		CHECK_INT(retry, c->retry);
		CHECK(detail_has(c->detail));
	}
}

static void test_hub__errmap_message_is_cleaned(void)
{
	struct hub_errctx ctx = { .repo = "models/x/y" };
	bool retry;

	hub_errmap_status(&ctx, 500, "", "boom hf_abcdefghijklmnop\x1b[31m",
			  &retry);
	CHECK(detail_has("hf_[redacted]"));
	CHECK(strstr(hubfs_err_get(), "abcdefghijklmnop") == NULL);
	CHECK(strchr(hubfs_err_get(), '\x1b') == NULL);
}

static void test_hub__errmap_curl(void)
{
	static const struct {
		CURLcode rc;
		int err;
		bool retry;
	} cases[] = {
		{ CURLE_COULDNT_CONNECT, -EHOSTUNREACH, true },
		{ CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH, false },
		{ CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT, true },
		{ CURLE_RECV_ERROR, -EIO, true },
		{ CURLE_SEND_ERROR, -EIO, true },
		{ CURLE_PARTIAL_FILE, -EIO, true },
		{ CURLE_GOT_NOTHING, -EIO, true },
		{ CURLE_OUT_OF_MEMORY, -ENOMEM, false },
		{ CURLE_SSL_CACERT_BADFILE, -EIO, false },
		{ CURLE_PEER_FAILED_VERIFICATION, -EIO, false },
	};
	struct hub_errctx ctx = { .url = "https://cdn.example/x?X-Sig=secret" };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool retry = !cases[i].retry;

		hubfs_err_clear();
		CHECK_INT(hub_errmap_curl(&ctx, cases[i].rc, "", &retry),
			  cases[i].err);
		CHECK_INT(retry, cases[i].retry);
		/* "Cannot reach" names the server; other failures the URL. */
		if (cases[i].err == -EHOSTUNREACH)
			CHECK(detail_has("cannot reach https://cdn.example: "));
		else
			CHECK(detail_has("https://cdn.example/x"));
		CHECK(strstr(hubfs_err_get(), "secret") == NULL);
	}
}

/* ---- the client's argument checks ---------------------------------------- */

static struct hubfs_hub_opts opts_for(const char *endpoint)
{
	struct hubfs_hub_opts o = HUBFS_HUB_OPTS_INIT;

	o.endpoint = endpoint;
	o.repo_type = HUBFS_REPO_DATASET;
	o.repo_namespace = "tester";
	o.repo_name = "ds1";
	return o;
}

static void test_hub__new_builds_urls(void)
{
	struct hubfs_hub_opts o = opts_for("http://127.0.0.1:8080/");
	struct hubfs_hub *hub = NULL;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	o.token = "hf_secret_0123456789";
	CHECK_INT(hubfs_hub_new(&hub, &o), 0);
	CHECK_STR(hub->endpoint, "http://127.0.0.1:8080");
	CHECK_STR(hub->repo_desc, "datasets/tester/ds1");
	CHECK_STR(hub->api_base,
		  "http://127.0.0.1:8080/api/datasets/tester/ds1");
	CHECK_STR(hub->file_base, "http://127.0.0.1:8080/datasets/tester/ds1");
	CHECK_STR(hub->auth_header,
		  "Authorization: Bearer hf_secret_0123456789");
	CHECK(hub_same_origin(hub, "http://127.0.0.1:8080/api/x?cursor=1"));
	CHECK(hub_same_origin(hub, "HTTP://127.0.0.1:8080"));
	CHECK(!hub_same_origin(hub, "http://127.0.0.1:8081/api/x"));
	CHECK(!hub_same_origin(hub, "https://127.0.0.1:8080/api/x"));
	CHECK(!hub_same_origin(hub, "http://localhost:8080/api/x"));
	CHECK(!hub_same_origin(hub, "http://127.0.0.1:8080@evil/x"));
	CHECK(!hub_same_origin(hub, "/api/x"));
	CHECK(!hub_same_origin(hub, "file:///etc/passwd"));
	hubfs_hub_free(hub);

	o = opts_for("https://huggingface.co");
	o.repo_type = HUBFS_REPO_MODEL;
	CHECK_INT(hubfs_hub_new(&hub, &o), 0);
	CHECK_STR(hub->file_base, "https://huggingface.co/tester/ds1");
	CHECK(hub->auth_header == NULL);
	CHECK(hub_same_origin(hub, "https://HuggingFace.co:443/x"));
	CHECK(!hub_same_origin(hub, "https://cdn-lfs.hf.co/x"));
	hubfs_hub_free(hub);
	hubfs_hub_free(NULL);
	curl_global_cleanup();
}

static void test_hub__new_rejects_bad_options(void)
{
	static const char *const endpoints[] = {
		"ftp://h", "h:80", "", "http://", "http://h/?q=1",
		"http://h/#f", "http://u:p@h",
	};
	struct hubfs_hub *hub = (struct hubfs_hub *)&hub;
	struct hubfs_hub_opts o;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		o = opts_for(endpoints[i]);
		CHECK_INT(hubfs_hub_new(&hub, &o), -EINVAL);
	}
	o = opts_for("http://h");
	o.repo_namespace = "a/b";
	CHECK_INT(hubfs_hub_new(&hub, &o), -EINVAL);
	o.repo_namespace = "..";
	CHECK_INT(hubfs_hub_new(&hub, &o), -EINVAL);
	o.repo_namespace = "";
	CHECK_INT(hubfs_hub_new(&hub, &o), -EINVAL);
	o.repo_namespace = "ns";
	o.repo_name = NULL;
	CHECK_INT(hubfs_hub_new(&hub, &o), -EINVAL);
	o.repo_name = "n";
	o.token = "hf_abc\r\nX-Evil: 1";
	CHECK_INT(hubfs_hub_new(&hub, &o), -EINVAL);
	o.token = "";
	CHECK_INT(hubfs_hub_new(&hub, &o), -EINVAL);
	o.token = NULL;
	o.repo_type = (enum hubfs_repo_type)7;
	CHECK_INT(hubfs_hub_new(&hub, &o), -EINVAL);
	CHECK_INT(hubfs_hub_new(&hub, NULL), -EINVAL);
	CHECK(hub == (struct hubfs_hub *)&hub);	/* never set on failure */
	curl_global_cleanup();
}

static int new_op(void *arg)
{
	struct hubfs_hub **out = arg;
	struct hubfs_hub_opts o = opts_for("http://127.0.0.1:1");
	int err;

	o.token = "hf_secret_0123456789";
	err = hubfs_hub_new(out, &o);
	if (!err) {
		hubfs_hub_free(*out);
		*out = NULL;
	}
	return err;
}

static void new_unchanged(void *arg)
{
	struct hubfs_hub **out = arg;

	CHECK(*out == NULL);
}

static void test_hub__new_out_of_memory(void)
{
	struct hubfs_hub *hub = NULL;
	unsigned long runs = 0;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	CHECK_INT(check_alloc_failures(new_op, new_unchanged, &hub, &runs), 0);
	CHECK(runs >= 5);
	curl_global_cleanup();
}

static int never_sink(void *arg, uint64_t off, const void *data, size_t len)
{
	(void)arg;
	(void)off;
	(void)data;
	(void)len;
	return -EPERM;
}

static void test_hub__read_range_rejects_bad_arguments(void)
{
	struct hubfs_hub_opts o = opts_for("http://127.0.0.1:1");
	struct hubfs_hub_stats st;
	struct hubfs_hub *hub;
	struct hubfs_hub_file f = { .commit = SHA_A, .path = "a/b.bin",
				    .key = LFS_A, .lfs = true, .size = 100 };
	struct hubfs_hub_file bad;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	CHECK_INT(hubfs_hub_new(&hub, &o), 0);
	CHECK_INT(hubfs_hub_read_range(hub, &f, 0, 0, never_sink, NULL),
		  -EINVAL);
	CHECK_INT(hubfs_hub_read_range(hub, &f, 100, 1, never_sink, NULL),
		  -EINVAL);
	CHECK_INT(hubfs_hub_read_range(hub, &f, 50, 51, never_sink, NULL),
		  -EINVAL);
	CHECK_INT(hubfs_hub_read_range(hub, &f, 1, UINT64_MAX, never_sink,
				       NULL), -EINVAL);
	CHECK_INT(hubfs_hub_read_range(hub, &f, 0, 1, NULL, NULL), -EINVAL);
	bad = f;
	bad.key = SHA_A;		/* an LFS key is a sha256 */
	CHECK_INT(hubfs_hub_read_range(hub, &bad, 0, 1, never_sink, NULL),
		  -EINVAL);
	bad = f;
	bad.path = "a/../../etc/passwd";
	CHECK_INT(hubfs_hub_read_range(hub, &bad, 0, 1, never_sink, NULL),
		  -EINVAL);
	bad = f;
	bad.commit = "";
	CHECK_INT(hubfs_hub_read_range(hub, &bad, 0, 1, never_sink, NULL),
		  -EINVAL);
	CHECK_INT(hubfs_hub_read_range(hub, NULL, 0, 1, never_sink, NULL),
		  -EINVAL);
	CHECK_INT(hubfs_hub_get_revision(hub, "", NULL), -EINVAL);
	CHECK_INT(hubfs_hub_list_tree(hub, "", NULL, NULL), -EINVAL);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 0);	/* nothing was sent */
	hubfs_hub_free(hub);
	curl_global_cleanup();
}

static void test_hub__unreachable_hub_fails_fast(void)
{
	struct hubfs_hub_opts o = opts_for("http://127.0.0.1:1");
	struct hubfs_hub_revision rev = { .time = 5 };
	struct hubfs_hub_stats st;
	struct hubfs_hub *hub;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	o.retries = 2;
	o.backoff_ms = 1;
	CHECK_INT(hubfs_hub_new(&hub, &o), 0);
	CHECK_INT(hubfs_hub_get_revision(hub, "main", &rev), -EHOSTUNREACH);
	CHECK(detail_has("cannot reach http://127.0.0.1:1: Couldn't connect "
			 "to server"));
	CHECK_INT(rev.time, 5);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 3);
	CHECK_UINT(st.retries, 2);
	hubfs_hub_free(hub);
	curl_global_cleanup();
}

/*
 * A port on the loopback that refuses connections while it is only
 * bound, and answers every request with a 404 while it listens.  The
 * socket stays bound throughout, so the port cannot change hands.
 */
struct answerer {
	int fd;
	unsigned short port;
	pthread_t thread;
};

static void *answer_404(void *arg)
{
	static const char reply[] = "HTTP/1.1 404 Not Found\r\n"
				    "Content-Length: 0\r\n"
				    "Connection: close\r\n\r\n";
	struct answerer *a = arg;
	int c;

	/* Ends when answerer_stop() shuts the socket down. */
	while ((c = accept(a->fd, NULL, NULL)) >= 0) {
		char req[8192];
		size_t got = 0;
		ssize_t n;

		/* The whole request head, so that closing sends no reset. */
		while (got < sizeof(req) - 1 &&
		       (n = read(c, req + got, sizeof(req) - 1 - got)) > 0) {
			got += (size_t)n;
			req[got] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		if (send(c, reply, sizeof(reply) - 1, MSG_NOSIGNAL) < 0)
			perror("answer_404: send");
		close(c);
	}
	return NULL;
}

static int answerer_bind(struct answerer *a)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (a->fd < 0 || bind(a->fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(a->fd, (struct sockaddr *)&sa, &len))
		return -1;
	a->port = ntohs(sa.sin_port);
	return 0;
}

static int answerer_start(struct answerer *a)
{
	if (listen(a->fd, 16) ||
	    pthread_create(&a->thread, NULL, answer_404, a))
		return -1;
	return 0;
}

/* Back to refusing connections: a listener shut down stays bound. */
static void answerer_stop(struct answerer *a)
{
	shutdown(a->fd, SHUT_RDWR);
	pthread_join(a->thread, NULL);
}

/*
 * A Hub that refused connections through all the retries of one request
 * is not retried again until it answers: offline, each lookup fails at
 * once and the caller falls back on the cache.  Other failures are still
 * retried meanwhile, and so is a refusal older than the last answer.
 */
static void test_hub__unreachable_hub_is_not_retried_until_it_answers(void)
{
	struct hubfs_hub_revision rev;
	struct hubfs_hub_stats st;
	struct hub_retry rt = { 0 };
	struct hub_resp *resp;
	struct answerer a;
	char url[64];
	struct hubfs_hub_opts o;
	struct hubfs_hub *hub;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	CHECK_INT(answerer_bind(&a), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", a.port);
	o = opts_for(url);
	o.retries = 2;
	o.backoff_ms = 1;
	CHECK_INT(hubfs_hub_new(&hub, &o), 0);
	resp = hubfs_calloc(1, sizeof(*resp));
	CHECK(resp != NULL);

	CHECK_INT(hubfs_hub_get_revision(hub, "main", &rev), -EHOSTUNREACH);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 3);
	CHECK_UINT(st.retries, 2);
	/* Held: one attempt, no retry, the same error. */
	CHECK_INT(hubfs_hub_get_revision(hub, "main", &rev), -EHOSTUNREACH);
	CHECK(detail_has("cannot reach http://127.0.0.1:"));
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 4);
	CHECK_UINT(st.retries, 2);
	/* A server error is still worth a retry. */
	resp->status = 503;
	CHECK(hub_retry_wait(hub, &rt, resp));

	/* The Hub answers (404): the hold ends with that answer. */
	CHECK_INT(answerer_start(&a), 0);
	CHECK_INT(hubfs_hub_get_revision(hub, "main", &rev), -ENOENT);
	answerer_stop(&a);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 5);
	CHECK_UINT(st.retries, 3);

	/* Gone again: retried in full once more, then held again. */
	CHECK_INT(hubfs_hub_get_revision(hub, "main", &rev), -EHOSTUNREACH);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 8);
	CHECK_UINT(st.retries, 5);
	/* A refusal from before the 404 (a request still in flight then)
	 * is retried; one from now is held. */
	memset(&rt, 0, sizeof(rt));
	resp->status = 0;
	resp->unreachable = true;
	resp->failed_at = 1;
	CHECK(hub_retry_wait(hub, &rt, resp));
	resp->failed_at = INT64_MAX;
	CHECK(!hub_retry_wait(hub, &rt, resp));

	hubfs_free(resp);
	hubfs_hub_free(hub);
	close(a.fd);
	curl_global_cleanup();
}

static const struct check_test tests[] = {
	CHECK_TEST(test_hub__encode_revision_as_one_segment),
	CHECK_TEST(test_hub__encode_path_keeps_slashes),
	CHECK_TEST(test_hub__encode_respects_the_cap),
	CHECK_TEST(test_hub__path_rules),
	CHECK_TEST(test_hub__hex_and_printable),
	CHECK_TEST(test_hub__time_parse),
	CHECK_TEST(test_hub__revision_json),
	CHECK_TEST(test_hub__revision_json_errors),
	CHECK_TEST(test_hub__tree_page),
	CHECK_TEST(test_hub__tree_page_skips_invalid_entries),
	CHECK_TEST(test_hub__tree_page_malformed_is_eio),
	CHECK_TEST(test_hub__tree_callback_stops_listing),
	CHECK_TEST(test_hub__refs_json),
	CHECK_TEST(test_hub__refs_json_malformed_is_eio),
	CHECK_TEST(test_hub__link_header),
	CHECK_TEST(test_hub__content_range),
	CHECK_TEST(test_hub__retry_after_and_ratelimit),
	CHECK_TEST(test_hub__wait_ms),
	CHECK_TEST(test_hub__error_body),
	CHECK_TEST(test_hub__errmap_status),
	CHECK_TEST(test_hub__errmap_message_is_cleaned),
	CHECK_TEST(test_hub__errmap_curl),
	CHECK_TEST(test_hub__new_builds_urls),
	CHECK_TEST(test_hub__new_rejects_bad_options),
	CHECK_TEST(test_hub__new_out_of_memory),
	CHECK_TEST(test_hub__read_range_rejects_bad_arguments),
	CHECK_TEST(test_hub__unreachable_hub_fails_fast),
	CHECK_TEST(test_hub__unreachable_hub_is_not_retried_until_it_answers),
};

CHECK_MAIN(tests)
