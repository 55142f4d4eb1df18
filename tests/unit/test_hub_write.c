/*
 * Unit tests for the Hub client's write path (src/hub/parse_write.c, the
 * write rows of src/hub/errmap.c, the argument checks of src/hub/write.c):
 * request bodies, preupload, LFS batch, commit and commit-listing
 * answers.  No network.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "check.h"
#include "hub/hub_int.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

#define SHA_A "0123456789abcdef0123456789abcdef01234567"
#define SHA_B "89abcdef0123456789abcdef0123456789abcdef"
#define OID_A "d343fd56b45340c155c28562421db2fbb6631ae3874c5d424d18c43b5eff4b34"
#define OID_B "0000000000000000000000000000000000000000000000000000000000000bbb"
#define OID_B_UPPER \
	"0000000000000000000000000000000000000000000000000000000000000BBB"
#define CDN "http://cdn.example:9000"

/* ---- helpers ------------------------------------------------------------- */

static bool detail_has(const char *needle)
{
	const char *d = hubfs_err_get();

	if (d && strstr(d, needle))
		return true;
	fprintf(stderr, "  detail \"%s\" lacks \"%s\"\n", d ? d : "(none)",
		needle);
	return false;
}

/*
 * The helpers below return static text, valid until their next call:
 * check_strf() keeps only a few dozen strings per test.
 */
static const char *b64(const char *s, size_t n)
{
	static char out[256];

	hub_base64_encode(out, s, n);
	out[hub_base64_len(n)] = '\0';
	return out;
}

static const char *json_str(const char *s, size_t n, int *err)
{
	static char out[4096];
	struct hubfs_buf b = HUBFS_BUF_INIT(sizeof(out) - 1);

	*err = hub_json_put_string(&b, s, n);
	snprintf(out, sizeof(out), "%s", hubfs_buf_str(&b));
	hubfs_buf_free(&b);
	return out;
}

static int src_never(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	(void)off;
	(void)buf;
	(void)len;
	return -EPERM;
}

static struct hubfs_hub_lfs_object object(const char *oid, uint64_t size)
{
	struct hubfs_hub_lfs_object o = { .size = size, .read = src_never };

	snprintf(o.sha256, sizeof(o.sha256), "%s", oid);
	return o;
}

/* Parse @json as the batch answer for one object of @size; -errno. */
static int batch1(const char *json, uint64_t size,
		  struct hub_lfs_action **out)
{
	struct hubfs_hub_lfs_object o = object(OID_A, size);

	*out = NULL;
	hubfs_err_clear();
	return hub_parse_lfs_batch(out, json, strlen(json), &o, 1);
}

/* A batch answer for OID_A with @upload as its upload action. */
static const char *answer_with(const char *upload)
{
	static char out[64 * 1024];

	snprintf(out, sizeof(out), "{\"transfer\":\"basic\",\"objects\":[{"
		 "\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		 "%s}}]}", upload);
	return out;
}

/* A multipart upload action with @header as its header object. */
static const char *multipart_with(const char *header)
{
	static char out[8192];

	snprintf(out, sizeof(out), "{\"href\":\"http://hub.example/c\","
		 "\"header\":%s}", header);
	return answer_with(out);
}

/* ---- base64 and JSON strings -------------------------------------------- */

static void test_hub_write__base64(void)
{
	/* RFC 4648 section 10. */
	CHECK_STR(b64("", 0), "");
	CHECK_STR(b64("f", 1), "Zg==");
	CHECK_STR(b64("fo", 2), "Zm8=");
	CHECK_STR(b64("foo", 3), "Zm9v");
	CHECK_STR(b64("foob", 4), "Zm9vYg==");
	CHECK_STR(b64("fooba", 5), "Zm9vYmE=");
	CHECK_STR(b64("foobar", 6), "Zm9vYmFy");
	CHECK_STR(b64("\xff\xfe\x00\x01", 4), "//4AAQ==");
	CHECK_UINT(hub_base64_len(0), 0);
	CHECK_UINT(hub_base64_len(1), 4);
	CHECK_UINT(hub_base64_len(3), 4);
	CHECK_UINT(hub_base64_len(4), 8);
	CHECK_UINT(hub_base64_len(512), 684);
}

static void test_hub_write__json_string(void)
{
	int err;

	CHECK_STR(json_str("a b#%.txt", 9, &err), "\"a b#%.txt\"");
	CHECK_INT(err, 0);
	CHECK_STR(json_str("q\"b\\s/", 6, &err), "\"q\\\"b\\\\s/\"");
	CHECK_STR(json_str("\n\t\r\b\f\x01\x1f\x7f", 8, &err),
		  "\"\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\"");
	CHECK_INT(err, 0);
	/* UTF-8 goes through as it is: 2, 3 and 4 bytes. */
	CHECK_STR(json_str("d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5/\xf0\x9f\x98\x80",
			   15, &err),
		  "\"d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5/\xf0\x9f\x98\x80\"");
	CHECK_INT(err, 0);
	CHECK_STR(json_str("", 0, &err), "\"\"");
	/* What JSON cannot carry, nothing appended. */
	CHECK_STR(json_str("a\0b", 3, &err), "");
	CHECK_INT(err, -EINVAL);
	CHECK_STR(json_str("\xc0\x80", 2, &err), "");	/* overlong NUL */
	CHECK_INT(err, -EINVAL);
	json_str("\xe0\x80\xaf", 3, &err);		/* overlong '/' */
	CHECK_INT(err, -EINVAL);
	json_str("\xed\xa0\x80", 3, &err);		/* a surrogate */
	CHECK_INT(err, -EINVAL);
	json_str("\xf4\x90\x80\x80", 4, &err);		/* past U+10FFFF */
	CHECK_INT(err, -EINVAL);
	json_str("\xf5\x80\x80\x80", 4, &err);
	CHECK_INT(err, -EINVAL);
	json_str("ab\xc3", 3, &err);			/* cut short */
	CHECK_INT(err, -EINVAL);
	json_str("\xe6\x97", 2, &err);
	CHECK_INT(err, -EINVAL);
	json_str("\x80", 1, &err);			/* a lone tail */
	CHECK_INT(err, -EINVAL);
	json_str("\xfe", 1, &err);
	CHECK_INT(err, -EINVAL);
}

static void test_hub_write__json_string_respects_the_cap(void)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(8);

	CHECK_INT(hubfs_buf_puts(&b, "ab"), 0);
	/* Four characters become six with their quotes, eight escaped. */
	CHECK_INT(hub_json_put_string(&b, "\"\"\"", 3), -EFBIG);
	CHECK_STR(hubfs_buf_str(&b), "ab");
	CHECK_INT(hub_json_put_string(&b, "xyzw", 4), 0);
	CHECK_STR(hubfs_buf_str(&b), "ab\"xyzw\"");
	hubfs_buf_free(&b);
}

/* ---- request bodies ----------------------------------------------------- */

static void test_hub_write__preupload_body(void)
{
	unsigned char big[600];
	struct hubfs_hub_upload_file f[3] = {
		{ .path = "dir/a \"q\".txt", .size = 5, .sample = "hello" },
		{ .path = "w.bin", .size = sizeof(big), .sample = big },
		{ .path = "empty", .size = 0, .sample = NULL },
	};
	struct hubfs_buf b = HUBFS_BUF_INIT(1 << 20);
	char want_sample[700];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)i;
	/* Only the first 512 bytes are sampled. */
	hub_base64_encode(want_sample, big, 512);
	want_sample[684] = '\0';
	CHECK_INT(hub_preupload_body(&b, f, 3, NULL), 0);
	CHECK_STR(hubfs_buf_str(&b),
		  check_strf("{\"files\":[{\"path\":\"dir/a \\\"q\\\".txt\","
			     "\"size\":5,\"sample\":\"aGVsbG8=\"},"
			     "{\"path\":\"w.bin\",\"size\":600,\"sample\":"
			     "\"%s\"},{\"path\":\"empty\",\"size\":0,"
			     "\"sample\":\"\"}]}", want_sample));
	hubfs_buf_reset(&b);
	CHECK_INT(hub_preupload_body(&b, NULL, 0, "*.bin filter=lfs\n"), 0);
	CHECK_STR(hubfs_buf_str(&b), "{\"files\":[],\"gitAttributes\":"
				     "\"*.bin filter=lfs\\n\"}");
	hubfs_buf_reset(&b);
	f[0].path = "bad\xff";
	CHECK_INT(hub_preupload_body(&b, f, 1, NULL), -EINVAL);
	hubfs_buf_free(&b);
}

static void test_hub_write__lfs_bodies(void)
{
	struct hubfs_hub_lfs_object o[2] = { object(OID_A, 10),
					     object(OID_B, 1ULL << 40) };
	struct hubfs_buf b = HUBFS_BUF_INIT(1 << 20);
	char e1[] = "\"e1\"", e2[] = "plain";
	char *etags[] = { e1, e2 };

	/* Upper case in, lower case out: the Hub's oids are lower case. */
	o[1].sha256[63] = 'B';
	CHECK_INT(hub_lfs_batch_body(&b, o, 2, "refs/pr/1"), 0);
	CHECK_STR(hubfs_buf_str(&b),
		  "{\"operation\":\"upload\",\"transfers\":[\"basic\","
		  "\"multipart\"],\"hash_algo\":\"sha256\",\"objects\":["
		  "{\"oid\":\"" OID_A "\",\"size\":10},{\"oid\":\"" OID_B
		  "\",\"size\":1099511627776}],\"ref\":{\"name\":"
		  "\"refs/pr/1\"}}");
	hubfs_buf_reset(&b);
	CHECK_INT(hub_lfs_complete_body(&b, OID_A, etags, 2), 0);
	CHECK_STR(hubfs_buf_str(&b),
		  "{\"oid\":\"" OID_A "\",\"parts\":[{\"partNumber\":1,"
		  "\"etag\":\"\\\"e1\\\"\"},{\"partNumber\":2,\"etag\":"
		  "\"plain\"}]}");
	hubfs_buf_reset(&b);
	CHECK_INT(hub_lfs_verify_body(&b, OID_A, 12345), 0);
	CHECK_STR(hubfs_buf_str(&b),
		  "{\"oid\":\"" OID_A "\",\"size\":12345}");
	hubfs_buf_free(&b);
}

/* ---- preupload answers -------------------------------------------------- */

static void test_hub_write__preupload_answer(void)
{
	struct hubfs_hub_upload_file f[4] = {
		{ .path = "a.txt", .size = 3 },
		{ .path = "w.bin", .size = 100 },
		{ .path = "empty.bin", .size = 0 },
		{ .path = "skip.me", .size = 1 },
	};
	const char *ok =
		"{\"files\":["
		"{\"path\":\"other\",\"uploadMode\":\"lfs\"},"
		"{\"path\":\"w.bin\",\"uploadMode\":\"lfs\","
		"\"shouldIgnore\":false,\"oid\":\"" OID_A "\"},"
		"{\"path\":\"empty.bin\",\"uploadMode\":\"lfs\","
		"\"shouldIgnore\":false},"
		"{\"path\":\"a.txt\",\"uploadMode\":\"regular\","
		"\"shouldIgnore\":false,\"oid\":\"0123456789ABCDEF0123456789"
		"abcdef01234567\"},"
		"{\"path\":\"skip.me\",\"uploadMode\":\"regular\","
		"\"shouldIgnore\":true,\"oid\":null}],"
		"\"commitOid\":\"" SHA_B "\"}";

	CHECK_INT(hub_parse_preupload(ok, strlen(ok), f, 4), 0);
	CHECK(!f[0].lfs && !f[0].ignore);
	CHECK_STR(f[0].remote_oid, SHA_A);	/* lowercased */
	CHECK(f[1].lfs && !f[1].ignore);
	CHECK_STR(f[1].remote_oid, OID_A);
	/* An empty file is regular whatever the Hub says. */
	CHECK(!f[2].lfs && !f[2].ignore);
	CHECK_STR(f[2].remote_oid, "");
	CHECK(!f[3].lfs && f[3].ignore);
	CHECK_STR(f[3].remote_oid, "");
	/* Nothing asked, an empty answer. */
	CHECK_INT(hub_parse_preupload("{\"files\":[]}", 12, NULL, 0), 0);
}

static void test_hub_write__preupload_answer_errors(void)
{
	static const char *const bad[] = {
		"",
		"{\"files\":",
		"[]",
		"{}",
		"{\"files\":{}}",
		"{\"files\":[\"a.txt\"]}",
		"{\"files\":[{\"uploadMode\":\"regular\"}]}",
		"{\"files\":[{\"path\":1,\"uploadMode\":\"regular\"}]}",
		"{\"files\":[{\"path\":\"a.txt\"}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"xet\"}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"lfsx\"}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":"
		"\"lfs\\u0000\"}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":1}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"lfs\","
		"\"shouldIgnore\":\"no\"}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"lfs\","
		"\"oid\":\"abc\"}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"lfs\","
		"\"oid\":12}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"lfs\","
		"\"oid\":\"" SHA_A "0\"}]}",
		/* a.txt twice; b.txt never */
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"lfs\"},"
		"{\"path\":\"a.txt\",\"uploadMode\":\"regular\"}]}",
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"lfs\"}]}",
		/* a path with a NUL is another path */
		"{\"files\":[{\"path\":\"a.txt\",\"uploadMode\":\"lfs\"},"
		"{\"path\":\"b.txt\\u0000x\",\"uploadMode\":\"lfs\"}]}",
	};
	struct hubfs_hub_upload_file f[2] = {
		{ .path = "a.txt", .size = 3, .lfs = true,
		  .remote_oid = "unchanged" },
		{ .path = "b.txt", .size = 3, .ignore = true,
		  .remote_oid = "unchanged" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hubfs_err_clear();
		CHECK_INT(hub_parse_preupload(bad[i], strlen(bad[i]), f, 2),
			  -EIO);
		CHECK(hubfs_err_get() != NULL);
		CHECK(f[0].lfs && !f[0].ignore && f[1].ignore && !f[1].lfs);
		CHECK_STR(f[0].remote_oid, "unchanged");
		CHECK_STR(f[1].remote_oid, "unchanged");
	}
	hub_parse_preupload(bad[18], strlen(bad[18]), f, 2);
	CHECK(detail_has("says nothing about b.txt"));
	hub_parse_preupload(bad[17], strlen(bad[17]), f, 2);
	CHECK(detail_has("names a.txt twice"));
}

/* ---- LFS batch answers -------------------------------------------------- */

static void test_hub_write__lfs_batch_basic(void)
{
	struct hubfs_hub_lfs_object o[3] = { object(OID_A, 10),
					     object(OID_B, 20),
					     object(OID_A, 30) };
	struct hub_lfs_action *a = NULL;
	const char *json =
		"{\"transfer\":\"basic\",\"objects\":["
		"{\"oid\":\"" OID_B_UPPER "\",\"size\":20,"
		"\"authenticated\":true},"
		"{\"oid\":\"" OID_A "\",\"size\":10,\"actions\":{"
		"\"upload\":{\"href\":\"" CDN "/up/a?X-Sig=s\",\"header\":{"
		"\"x-amz-meta-a\":\"1\",\"Authorization\":\"Bearer stolen\","
		"\"Content-Length\":\"1\",\"transfer-encoding\":\"chunked\","
		"\"Host\":\"evil\",\"Connection\":\"close\",\"Expect\":\"x\","
		"\"00001\":\"kept in basic\"},\"expires_in\":3600},"
		"\"verify\":{\"href\":\"http://hub.example/v\",\"header\":{"
		"\"authorization\":\"x\",\"X-Ok\":\"y z\"}}}},"
		"{\"oid\":\"ffff\",\"error\":{\"code\":1,\"message\":\"x\"}}],"
		"\"hash_algo\":\"sha256\"}";

	/* Upper-case oids in the answer match too. */
	CHECK_INT(hub_parse_lfs_batch(&a, json, strlen(json), o, 2), 0);
	CHECK(a[0].upload);
	CHECK_STR(a[0].href, CDN "/up/a?X-Sig=s");
	CHECK_UINT(a[0].chunk_size, 0);
	CHECK(a[0].parts == NULL);
	CHECK(a[0].headers != NULL);
	CHECK_STR(a[0].headers[0], "x-amz-meta-a: 1");
	CHECK_STR(a[0].headers[1], "00001: kept in basic");
	/* Authorization and the framing headers are dropped. */
	CHECK(a[0].headers[2] == NULL);
	CHECK_STR(a[0].verify, "http://hub.example/v");
	CHECK_STR(a[0].verify_headers[0], "X-Ok: y z");
	CHECK(a[0].verify_headers[1] == NULL);
	/* No actions: already stored. */
	CHECK(!a[1].upload && !a[1].href && !a[1].verify);
	hub_lfs_actions_free(a, 2);

	/* No header at all, no verify; "actions" with nothing to upload. */
	json = "{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
	       "{\"href\":\"https://cdn.example/x\"}}},{\"oid\":\"" OID_B
	       "\",\"size\":20,\"actions\":{}}]}";
	CHECK_INT(hub_parse_lfs_batch(&a, json, strlen(json), o, 2), 0);
	CHECK(a[0].upload && a[0].headers == NULL && a[0].verify == NULL);
	CHECK(!a[1].upload);
	hub_lfs_actions_free(a, 2);
	hub_lfs_actions_free(NULL, 0);

	/* The same oid asked twice: the second is never answered. */
	a = (struct hub_lfs_action *)&a;
	CHECK_INT(hub_parse_lfs_batch(&a, json, strlen(json),
				      (struct hubfs_hub_lfs_object[]){
					      o[0], o[2] }, 2), -EIO);
	CHECK(a == (struct hub_lfs_action *)&a);
}

static void test_hub_write__lfs_batch_errors(void)
{
	static const char *const bad[] = {
		"",
		"{\"objects\":[",
		"[]",
		"{}",
		"{\"objects\":{}}",
		"{\"objects\":[1]}",
		/* not answered (an oid of another length does not count) */
		"{\"objects\":[]}",
		"{\"objects\":[{\"oid\":\"" OID_A "0\"}]}",
		"{\"objects\":[{\"oid\":\"" OID_B "\"}]}",
		/* twice */
		"{\"objects\":[{\"oid\":\"" OID_A "\"},{\"oid\":\"" OID_A
		"\"}]}",
		/* another size */
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":11}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":\"10\"}]}",
		/* refused */
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"error\":{\"code\":"
		"404,\"message\":\"Object does not exist\"}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"error\":\"x\"}]}",
		/* shapes */
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":[]}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"\"" CDN "/x\"}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":7}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"ftp://cdn.example/x\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"/relative/x\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a b\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\\r\\nX-Evil: 1\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\\u0000b\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\",\"header\":[]}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\",\"header\":{\"X-N\":1}}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\",\"header\":{\"X N\":\"1\"}}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\",\"header\":{\"X:N\":\"1\"}}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\",\"header\":{\"\":\"1\"}}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\",\"header\":{\"X-N\":\"a\\r\\nX-E: "
		"1\"}}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\",\"header\":{\"X-N\":\"caf\\u00e9\"}}"
		"}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\"},\"verify\":\"x\"}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\"},\"verify\":{\"href\":\"nope\"}}}]}",
		"{\"objects\":[{\"oid\":\"" OID_A "\",\"actions\":{\"upload\":"
		"{\"href\":\"" CDN "/a\"},\"verify\":{\"href\":\"" CDN "/v\","
		"\"header\":{\"X\":null}}}}]}",
	};
	struct hub_lfs_action *a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int err = batch1(bad[i], 10, &a);

		if (err != -EIO)
			fprintf(stderr, "  case %zu: %s\n", i, bad[i]);
		CHECK_INT(err, -EIO);
		CHECK(a == NULL);
		CHECK(hubfs_err_get() != NULL);
	}
	batch1(bad[12], 10, &a);
	CHECK(detail_has("the Hub refused LFS object " OID_A " (10 bytes): "
			 "Object does not exist (code 404)"));
	batch1(bad[8], 10, &a);
	CHECK(detail_has("says nothing about object " OID_A));
	batch1(bad[10], 10, &a);
	CHECK(detail_has("another size"));
}

static void test_hub_write__lfs_batch_multipart(void)
{
	struct hub_lfs_action *a;
	const char *json = multipart_with(
		"{\"chunk_size\":\"4\",\"00003\":\"" CDN "/p3?s=3\","
		"\"00001\":\"" CDN "/p1?s=1\",\"x-amz-acl\":\"private\","
		"\"2\":\"" CDN "/p2?s=2\",\"authorization\":\"no\"}");

	/* 10 bytes in 4-byte parts: 3 parts, in number order. */
	CHECK_INT(batch1(json, 10, &a), 0);
	CHECK(a[0].upload);
	CHECK_STR(a[0].href, "http://hub.example/c");
	CHECK_UINT(a[0].chunk_size, 4);
	CHECK_UINT(a[0].nparts, 3);
	CHECK_STR(a[0].parts[0], CDN "/p1?s=1");
	CHECK_STR(a[0].parts[1], CDN "/p2?s=2");
	CHECK_STR(a[0].parts[2], CDN "/p3?s=3");
	/* Neither chunk_size nor part numbers nor Authorization are sent. */
	CHECK_STR(a[0].headers[0], "x-amz-acl: private");
	CHECK(a[0].headers[1] == NULL);
	hub_lfs_actions_free(a, 1);

	/* A null chunk_size means basic (as in huggingface_hub). */
	json = multipart_with("{\"chunk_size\":null,\"X-A\":\"a\"}");
	CHECK_INT(batch1(json, 10, &a), 0);
	CHECK_UINT(a[0].chunk_size, 0);
	CHECK(a[0].parts == NULL);
	CHECK_STR(a[0].headers[0], "X-A: a");
	CHECK(a[0].headers[1] == NULL);
	hub_lfs_actions_free(a, 1);

	/* chunk_size as a number; exactly one chunk. */
	json = multipart_with("{\"chunk_size\":10,\"1\":\"" CDN "/p1\"}");
	CHECK_INT(batch1(json, 10, &a), 0);
	CHECK_UINT(a[0].nparts, 1);
	CHECK(a[0].headers == NULL);
	hub_lfs_actions_free(a, 1);
}

static void test_hub_write__lfs_batch_multipart_part_sanity(void)
{
	static const char *const bad[] = {
		/* too few, too many, a gap */
		"{\"chunk_size\":\"4\",\"1\":\"" CDN "/1\",\"2\":\"" CDN
		"/2\"}",
		"{\"chunk_size\":\"4\",\"1\":\"" CDN "/1\",\"2\":\"" CDN
		"/2\",\"3\":\"" CDN "/3\",\"4\":\"" CDN "/4\"}",
		"{\"chunk_size\":\"4\",\"1\":\"" CDN "/1\",\"2\":\"" CDN
		"/2\",\"4\":\"" CDN "/4\"}",
		/* numbered from 0; numbered twice */
		"{\"chunk_size\":\"4\",\"0\":\"" CDN "/0\",\"1\":\"" CDN
		"/1\",\"2\":\"" CDN "/2\"}",
		"{\"chunk_size\":\"4\",\"1\":\"" CDN "/1\",\"00001\":\"" CDN
		"/1\",\"2\":\"" CDN "/2\",\"3\":\"" CDN "/3\"}",
		"{\"chunk_size\":\"4\",\"1\":\"" CDN "/1\",\"2\":\"" CDN
		"/2\",\"99999999999999999999999\":\"" CDN "/3\"}",
		/* chunk sizes */
		"{\"chunk_size\":\"0\",\"1\":\"" CDN "/1\"}",
		"{\"chunk_size\":0,\"1\":\"" CDN "/1\"}",
		"{\"chunk_size\":-4,\"1\":\"" CDN "/1\"}",
		"{\"chunk_size\":\"4k\",\"1\":\"" CDN "/1\"}",
		"{\"chunk_size\":\"\",\"1\":\"" CDN "/1\"}",
		"{\"chunk_size\":4.5,\"1\":\"" CDN "/1\"}",
		"{\"chunk_size\":true,\"1\":\"" CDN "/1\"}",
		"{\"chunk_size\":\"99999999999999999999999\",\"1\":\"" CDN
		"/1\"}",
		/* part URLs */
		"{\"chunk_size\":\"10\",\"1\":1}",
		"{\"chunk_size\":\"10\",\"1\":\"file:///etc/passwd\"}",
		"{\"chunk_size\":\"10\",\"1\":\"\"}",
	};
	struct hub_lfs_action *a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int err = batch1(multipart_with(bad[i]), 10, &a);

		if (err != -EIO)
			fprintf(stderr, "  case %zu: %s\n", i, bad[i]);
		CHECK_INT(err, -EIO);
		CHECK(a == NULL);
	}
	batch1(multipart_with(bad[0]), 10, &a);
	CHECK(detail_has("ceil(size / chunk_size)"));
	batch1(multipart_with(bad[4]), 10, &a);
	CHECK(detail_has("numbered twice"));
	/* A 0-byte object has no parts to number. */
	CHECK_INT(batch1(multipart_with("{\"chunk_size\":\"4\"}"), 0, &a),
		  -EIO);
	/* More parts than a multipart upload may have. */
	CHECK_INT(batch1(multipart_with("{\"chunk_size\":\"1\",\"1\":\"" CDN
					"/1\"}"), HUB_PARTS_MAX + 1, &a),
		  -EIO);
	CHECK(detail_has("number of parts is out of range"));
}

static void test_hub_write__lfs_batch_oversize(void)
{
	struct hubfs_buf j = HUBFS_BUF_INIT(1 << 20);
	struct hub_lfs_action *a;
	char *url = malloc(sizeof(CDN) + HUB_URL_MAX + 1);

	CHECK(url != NULL);
	/* A URL too long to use. */
	memcpy(url, CDN "/", sizeof(CDN));
	memset(url + sizeof(CDN), 'u', HUB_URL_MAX);
	url[sizeof(CDN) + HUB_URL_MAX] = '\0';
	CHECK_INT(batch1(answer_with(check_strf("{\"href\":\"%s\"}", url)), 10,
			 &a), -EIO);
	/* Too many headers. */
	CHECK_INT(hubfs_buf_puts(&j, "{\"href\":\"" CDN "/a\",\"header\":{"),
		  0);
	for (int i = 0; i <= HUB_ACTION_HEADERS_MAX; i++)
		CHECK_INT(hubfs_buf_printf(&j, "%s\"X-%d\":\"v\"", i ? "," : "",
					   i), 0);
	CHECK_INT(hubfs_buf_puts(&j, "}}"), 0);
	CHECK_INT(batch1(answer_with(hubfs_buf_str(&j)), 10, &a), -EIO);
	CHECK(detail_has("too many headers"));
	/* One header too long. */
	memset(url, 'v', HUB_ACTION_HEADER_MAX);
	url[HUB_ACTION_HEADER_MAX] = '\0';
	CHECK_INT(batch1(answer_with(check_strf("{\"href\":\"" CDN "/a\","
						"\"header\":{\"X\":\"%s\"}}",
						url)), 10, &a), -EIO);
	CHECK(detail_has("too long"));
	free(url);
	hubfs_buf_free(&j);
}

struct batch_oom {
	struct hub_lfs_action *a;
};

static int batch_oom_op(void *arg)
{
	struct batch_oom *b = arg;
	const char *json = multipart_with(
		"{\"chunk_size\":\"4\",\"1\":\"" CDN "/1\",\"2\":\"" CDN "/2\","
		"\"3\":\"" CDN "/3\",\"X-A\":\"a\",\"X-B\":\"b\"}");
	int err = batch1(json, 10, &b->a);

	if (!err) {
		hub_lfs_actions_free(b->a, 1);
		b->a = NULL;
	}
	return err;
}

static void batch_oom_unchanged(void *arg)
{
	struct batch_oom *b = arg;

	CHECK(b->a == NULL);
	CHECK(detail_has("out of memory"));
}

static void test_hub_write__lfs_batch_out_of_memory(void)
{
	struct batch_oom b = { NULL };
	unsigned long runs = 0;

	/* check_strf() allocates outside hubfs_malloc(): prime it. */
	CHECK_INT(batch_oom_op(&b), 0);
	CHECK_INT(check_alloc_failures(batch_oom_op, batch_oom_unchanged, &b,
				       &runs), 0);
	CHECK(runs >= 8);
}

/* ---- commit answers and the commit listing ------------------------------ */

static void test_hub_write__commit_answer(void)
{
	static const char *const bad[] = {
		"", "{", "[]", "{}", "{\"commitOid\":null}",
		"{\"commitOid\":12}",
		"{\"commitOid\":\"0123456789abcdef0123456789abcdef0123456\"}",
		"{\"commitOid\":\"" SHA_A "0\"}",
		"{\"commitOid\":\"0123456789abcdef0123456789abcdef0123456g\"}",
		"{\"success\":true,\"commitUrl\":\"x\"}",
	};
	const char *ok = "{\"success\":true,\"commitOid\":\"0123456789ABCDEF"
			 "0123456789abcdef01234567\",\"commitUrl\":\"u\"}";
	char out[41] = "unchanged";

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hubfs_err_clear();
		CHECK_INT(hub_parse_commit(bad[i], strlen(bad[i]), out), -EIO);
		CHECK(hubfs_err_get() != NULL);
		CHECK_STR(out, "unchanged");
	}
	CHECK_INT(hub_parse_commit(ok, strlen(ok), out), 0);
	CHECK_STR(out, SHA_A);
}

struct commits {
	char lines[16][256];
	size_t n;
	int stop_at;
};

static int collect_commit(void *arg, const struct hubfs_hub_commit_info *c)
{
	struct commits *cs = arg;

	if (cs->n < 16)
		snprintf(cs->lines[cs->n], sizeof(cs->lines[0]),
			 "%s %lld %s|%s", c->id, (long long)c->time, c->title,
			 c->message);
	cs->n++;
	return cs->stop_at && (int)cs->n == cs->stop_at ? 9 : 0;
}

static void test_hub_write__commits_listing(void)
{
	const char *page =
		"[{\"id\":\"" SHA_A "\",\"title\":\"Update\",\"message\":"
		"\"Update\\n\\nwhy\",\"authors\":[],\"date\":"
		"\"2024-01-01T06:00:00.000Z\"},"
		"{\"id\":\"bad\",\"title\":\"x\",\"date\":"
		"\"2024-01-01T06:00:00Z\"},"
		"{\"id\":\"" SHA_B "\",\"date\":\"never\"},"
		"{\"id\":\"" SHA_B "\",\"title\":5,\"date\":"
		"\"2024-01-01T06:00:00Z\"},"
		"7,"
		"{\"id\":\"" SHA_B "\",\"date\":\"1970-01-01T00:00:01Z\"}]";
	struct commits cs = { .n = 0 };
	unsigned int left = 10;
	size_t skipped = 0;

	CHECK_INT(hub_parse_commits(page, strlen(page), collect_commit, &cs,
				    &left, &skipped), 0);
	CHECK_UINT(cs.n, 2);
	CHECK_STR(cs.lines[0], SHA_A " 1704088800 Update|Update\n\nwhy");
	CHECK_STR(cs.lines[1], SHA_B " 1 |");
	CHECK_UINT(skipped, 4);
	CHECK_UINT(left, 8);
	/* At most *left, then the rest is not even looked at. */
	cs.n = 0;
	left = 1;
	CHECK_INT(hub_parse_commits(page, strlen(page), collect_commit, &cs,
				    &left, &skipped), 0);
	CHECK_UINT(cs.n, 1);
	CHECK_UINT(left, 0);
	CHECK_UINT(skipped, 0);
	/* The callback stops the listing. */
	cs.n = 0;
	cs.stop_at = 1;
	left = 10;
	CHECK_INT(hub_parse_commits(page, strlen(page), collect_commit, &cs,
				    &left, NULL), 9);
	CHECK_INT(hub_parse_commits("[]", 2, collect_commit, &cs, &left,
				    NULL), 0);
	CHECK_INT(hub_parse_commits("{}", 2, collect_commit, &cs, &left,
				    NULL), -EIO);
	CHECK_INT(hub_parse_commits("[{\"id\":", 7, collect_commit, &cs,
				    &left, NULL), -EIO);
	CHECK_INT(hub_parse_commits("", 0, collect_commit, &cs, &left, NULL),
		  -EIO);
}

/* ---- the error table for writes ----------------------------------------- */

static void test_hub_write__errmap_write(void)
{
	static const struct {
		long status;
		const char *code, *message;
		bool cdn, write;
		int err;
		bool retry;
		const char *detail;
	} cases[] = {
		{ 403, "", "your token is read-only", false, true, -EACCES,
		  false, "the token cannot write to models/x/y (HTTP 403: "
		  "your token is read-only)" },
		{ 401, "", "You must be authenticated", false, true, -EACCES,
		  false, "the token cannot write to models/x/y (HTTP 401" },
		/* Reads keep their meaning. */
		{ 401, "", "", false, false, -ENOENT, false,
		  "or it is private" },
		{ 403, "", "no", false, false, -EACCES, false, "denied" },
		/* More specific rows win on a write too. */
		{ 401, "", "Invalid credentials in Authorization header",
		  false, true, -EACCES, false, "the token was refused" },
		{ 404, "RepoNotFound", "", false, true, -ENOENT, false,
		  "models/x/y not found" },
		{ 401, "RepoNotFound", "", false, true, -ENOENT, false,
		  "models/x/y not found" },
		{ 404, "RevisionNotFound", "", false, true, -ENOENT, false,
		  "revision dev not found" },
		{ 412, "", "updated", false, true, -ESTALE, false,
		  "dev moved on: the parent commit is no longer the head" },
		{ 409, "", "", false, true, -EEXIST, false, "conflict" },
		{ 400, "", "too large", false, true, -EINVAL, false,
		  "HTTP 400: too large" },
		{ 503, "", "", false, true, -EIO, true, "the Hub failed" },
		/* A presigned upload URL. */
		{ 403, "", "Request has expired", true, true, -EACCES, false,
		  "the upload server refused the signed URL (HTTP 403: "
		  "Request has expired)" },
		{ 404, "", "", true, true, -ENOENT, false,
		  "the upload server has no such object" },
		{ 500, "", "", true, true, -EIO, true, "upload server failed" },
		{ 403, "", "", true, false, -EACCES, false,
		  "the download server refused" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hub_errctx ctx = { .repo = "models/x/y", .rev = "dev",
					  .cdn = cases[i].cdn,
					  .write = cases[i].write };
		bool retry = !cases[i].retry;

		hubfs_err_clear();
		CHECK_INT(hub_errmap_status(&ctx, cases[i].status,
					    cases[i].code, cases[i].message,
					    &retry), cases[i].err);
		CHECK_INT(retry, cases[i].retry);
		CHECK(detail_has(cases[i].detail));
	}
}

/* ---- the client's argument checks --------------------------------------- */

static struct hubfs_hub *client(const char *token)
{
	struct hubfs_hub_opts o = HUBFS_HUB_OPTS_INIT;
	struct hubfs_hub *hub = NULL;

	o.endpoint = "http://127.0.0.1:1";
	o.repo_namespace = "tester";
	o.repo_name = "m";
	o.token = token;
	o.retries = 0;
	if (hubfs_hub_new(&hub, &o) != 0)
		return NULL;
	return hub;
}

static void test_hub_write__no_token_no_request(void)
{
	struct hubfs_hub_upload_file f = { .path = "a", .size = 1,
					   .sample = "x" };
	struct hubfs_hub_lfs_object o = object(OID_A, 1);
	struct hubfs_hub_commit c = { .branch = "main", .parent = SHA_A,
				      .summary = "s" };
	struct hubfs_hub_stats st;
	struct hubfs_hub *hub;
	char out[41];

	curl_global_init(CURL_GLOBAL_DEFAULT);
	hub = client(NULL);
	CHECK(hub != NULL);
	CHECK_INT(hubfs_hub_check_write(hub, "main"), -EACCES);
	CHECK(detail_has("no token: writing needs a token with write "
			 "access"));
	CHECK_INT(hubfs_hub_preupload(hub, "main", NULL, &f, 1), -EACCES);
	CHECK_INT(hubfs_hub_lfs_upload(hub, "main", &o, 1, 4), -EACCES);
	CHECK_INT(hubfs_hub_commit(hub, &c, out), -EACCES);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 0);
	hubfs_hub_free(hub);
	curl_global_cleanup();
}

static void test_hub_write__bad_arguments_send_nothing(void)
{
	struct hubfs_hub_upload_file f = { .path = "a", .size = 1,
					   .sample = "x" };
	struct hubfs_hub_lfs_object o[2] = { object(OID_A, 1),
					     object(OID_A, 2) };
	struct hubfs_hub_commit_op op = { .kind = HUBFS_OP_ADD_LFS,
					  .path = "w.bin", .size = 1,
					  .sha256 = OID_A };
	struct hubfs_hub_commit c = { .branch = "main", .parent = SHA_A,
				      .summary = "s", .ops = &op, .n = 1 };
	struct hubfs_hub_commit bad;
	struct hubfs_hub_upload_file fb;
	struct hubfs_hub_commit_op ob;
	struct hubfs_hub_stats st;
	struct hubfs_hub *hub;
	char out[41] = "unchanged";

	curl_global_init(CURL_GLOBAL_DEFAULT);
	hub = client("hf_secret_0123456789");
	CHECK(hub != NULL);
	CHECK_INT(hubfs_hub_check_write(hub, ""), -EINVAL);
	CHECK_INT(hubfs_hub_preupload(hub, NULL, NULL, &f, 1), -EINVAL);
	CHECK_INT(hubfs_hub_preupload(hub, "main", NULL, NULL, 1), -EINVAL);
	CHECK_INT(hubfs_hub_preupload(hub, "main", NULL, &f, 0), 0);
	fb = f;
	fb.path = "../x";
	CHECK_INT(hubfs_hub_preupload(hub, "main", NULL, &fb, 1), -EINVAL);
	CHECK(detail_has("invalid path"));
	fb = f;
	fb.sample = NULL;
	CHECK_INT(hubfs_hub_preupload(hub, "main", NULL, &fb, 1), -EINVAL);
	fb = f;
	fb.size = HUBFS_SIZE_MAX + 1;
	CHECK_INT(hubfs_hub_preupload(hub, "main", NULL, &fb, 1), -EINVAL);

	CHECK_INT(hubfs_hub_lfs_upload(hub, "main", o, 0, 1), 0);
	CHECK_INT(hubfs_hub_lfs_upload(hub, "main", o, 2, 1), -EINVAL);
	CHECK(detail_has("two sizes"));
	o[1] = object("xyz", 1);
	CHECK_INT(hubfs_hub_lfs_upload(hub, "main", o, 2, 1), -EINVAL);
	o[1] = object(OID_B, 1);
	o[1].read = NULL;
	CHECK_INT(hubfs_hub_lfs_upload(hub, "main", o, 2, 1), -EINVAL);

	CHECK_INT(hubfs_hub_commit(hub, NULL, out), -EINVAL);
	bad = c;
	bad.parent = "0123";
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	bad = c;
	bad.parent = NULL;
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	bad = c;
	bad.summary = "";
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	bad = c;
	bad.branch = "";
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	bad = c;
	bad.ops = NULL;
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	bad = c;
	bad.ops = &ob;
	ob = op;
	ob.sha256 = SHA_A;
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	ob = op;
	ob.path = "a//b";
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	ob = op;
	ob.kind = (enum hubfs_hub_op_kind)9;
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	ob = (struct hubfs_hub_commit_op){ .kind = HUBFS_OP_ADD_FILE,
					   .path = "a.txt", .size = 3 };
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	/* What JSON cannot carry is refused before anything is sent. */
	ob = (struct hubfs_hub_commit_op){ .kind = HUBFS_OP_DELETE_FILE,
					   .path = "caf\xe9.txt" };
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	CHECK(detail_has("not valid UTF-8"));
	bad = c;
	bad.summary = "bad \xff summary";
	CHECK_INT(hubfs_hub_commit(hub, &bad, out), -EINVAL);
	CHECK_STR(out, "unchanged");

	CHECK_INT(hubfs_hub_list_commits(hub, "", 10, collect_commit, NULL),
		  -EINVAL);
	CHECK_INT(hubfs_hub_list_commits(hub, "main", 10, NULL, NULL),
		  -EINVAL);
	CHECK_INT(hubfs_hub_list_commits(hub, "main", 0, collect_commit,
					 NULL), 0);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 0);
	CHECK_UINT(st.bytes_sent, 0);
	CHECK_UINT(st.commits, 0);
	hubfs_hub_free(hub);
	curl_global_cleanup();
}

static void test_hub_write__unreachable_hub(void)
{
	struct hubfs_hub_commit_op op = { .kind = HUBFS_OP_DELETE_FOLDER,
					  .path = "dir" };
	struct hubfs_hub_commit c = { .branch = "main", .parent = SHA_A,
				      .summary = "s", .ops = &op, .n = 1 };
	struct hubfs_hub_stats st;
	struct hubfs_hub *hub;
	char out[41] = "unchanged";

	curl_global_init(CURL_GLOBAL_DEFAULT);
	hub = client("hf_secret_0123456789");
	CHECK(hub != NULL);
	CHECK_INT(hubfs_hub_commit(hub, &c, out), -EHOSTUNREACH);
	CHECK(detail_has("cannot reach http://127.0.0.1:1"));
	CHECK_STR(out, "unchanged");
	CHECK_INT(hubfs_hub_check_write(hub, "main"), -EHOSTUNREACH);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 2);
	CHECK_UINT(st.commits, 0);
	hubfs_hub_free(hub);
	curl_global_cleanup();
}

static void *cancel_soon(void *arg)
{
	struct timespec ts = { .tv_nsec = 200 * 1000000L };

	nanosleep(&ts, NULL);
	atomic_store((atomic_bool *)arg, true);
	return NULL;
}

static void test_hub_write__cancel_stops_an_upload_and_its_waits(void)
{
	struct hubfs_hub_opts opts = HUBFS_HUB_OPTS_INIT;
	struct hubfs_hub_lfs_object o = object(OID_A, 1);
	atomic_bool cancel = true;
	struct hubfs_hub_stats st;
	struct hubfs_hub *hub = NULL;
	struct timespec t0, t1;
	pthread_t t;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	opts.endpoint = "http://127.0.0.1:1";
	opts.repo_namespace = "tester";
	opts.repo_name = "m";
	opts.token = "hf_secret_0123456789";
	opts.retries = 3;
	opts.backoff_ms = 4000;
	CHECK_INT(hubfs_hub_new(&hub, &opts), 0);
	o.cancel = &cancel;
	/* Set before the call: no request at all. */
	CHECK_INT(hubfs_hub_lfs_upload(hub, "main", &o, 1, 1), -ECANCELED);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 0);
	/* Set while the call waits 3 to 5 s before its first retry (the
	 * connection is refused): the wait ends, and no retry is made or
	 * counted. */
	atomic_store(&cancel, false);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_INT(pthread_create(&t, NULL, cancel_soon, &cancel), 0);
	CHECK_INT(hubfs_hub_lfs_upload(hub, "main", &o, 1, 1), -ECANCELED);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(t, NULL);
	CHECK((t1.tv_sec - t0.tv_sec) * 1000 +
	      (t1.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
	hubfs_hub_get_stats(hub, &st);
	CHECK_UINT(st.requests, 1);
	CHECK_UINT(st.retries, 0);
	hubfs_hub_free(hub);
	curl_global_cleanup();
}

static const struct check_test tests[] = {
	CHECK_TEST(test_hub_write__base64),
	CHECK_TEST(test_hub_write__json_string),
	CHECK_TEST(test_hub_write__json_string_respects_the_cap),
	CHECK_TEST(test_hub_write__preupload_body),
	CHECK_TEST(test_hub_write__lfs_bodies),
	CHECK_TEST(test_hub_write__preupload_answer),
	CHECK_TEST(test_hub_write__preupload_answer_errors),
	CHECK_TEST(test_hub_write__lfs_batch_basic),
	CHECK_TEST(test_hub_write__lfs_batch_errors),
	CHECK_TEST(test_hub_write__lfs_batch_multipart),
	CHECK_TEST(test_hub_write__lfs_batch_multipart_part_sanity),
	CHECK_TEST(test_hub_write__lfs_batch_oversize),
	CHECK_TEST(test_hub_write__lfs_batch_out_of_memory),
	CHECK_TEST(test_hub_write__commit_answer),
	CHECK_TEST(test_hub_write__commits_listing),
	CHECK_TEST(test_hub_write__errmap_write),
	CHECK_TEST(test_hub_write__no_token_no_request),
	CHECK_TEST(test_hub_write__bad_arguments_send_nothing),
	CHECK_TEST(test_hub_write__unreachable_hub),
	CHECK_TEST(test_hub_write__cancel_stops_an_upload_and_its_waits),
};

CHECK_MAIN(tests)
