/*
 * Fuzz the write path's parsers and the JSON string encoder
 * (src/hub/parse_write.c).
 *
 * Input: any bytes, given to each parser in turn, as the answer to a
 * fixed request: a preupload of three files (one of them empty), an LFS
 * batch for two objects (10 bytes and 1 MiB), a commit, a commit
 * listing.  Checks the promises the write path relies on:
 *   - preupload: an empty file is never LFS, a remote oid is "" or 40 or
 *     64 lowercase hex digits, and a failure changes nothing;
 *   - LFS batch: every upload has an http(s) URL, a multipart one exactly
 *     ceil(size / chunk_size) part URLs, all of them printable without a
 *     space; no header is Authorization or one that frames the request,
 *     and none holds a byte that could start another header line;
 *   - commit and listing: ids are 40 lowercase hex digits, and the
 *     listing never hands on more commits than asked for;
 *   - the encoder: what it accepts is a JSON string that decodes to the
 *     input, byte for byte.
 * A broken promise aborts.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "hub/hub_int.h"
#include "hubfs/log.h"

#define OID_A "d343fd56b45340c155c28562421db2fbb6631ae3874c5d424d18c43b5eff4b34"
#define OID_B "0000000000000000000000000000000000000000000000000000000000000bbb"

static void check_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		abort();
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isxdigit(c) || isupper(c))
			abort();
	}
}

static void check_url(const char *s)
{
	struct hub_origin o;

	if (!s || !*s || strlen(s) >= HUB_URL_MAX ||
	    hub_origin_parse(&o, s) != 0)
		abort();
	for (; *s; s++) {
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			abort();
	}
}

static void check_headers(char **v)
{
	static const char *const owned[] = {
		"authorization:", "content-length:", "transfer-encoding:",
		"host:", "connection:", "expect:",
	};
	size_t n = 0;

	for (; v && v[n]; n++) {
		const char *colon = strchr(v[n], ':');

		if (!colon || colon == v[n] ||
		    strlen(v[n]) > HUB_ACTION_HEADER_MAX)
			abort();
		for (size_t k = 0; k < sizeof(owned) / sizeof(owned[0]); k++) {
			if (strncasecmp(v[n], owned[k], strlen(owned[k])) == 0)
				abort();
		}
		for (const char *p = v[n]; *p; p++) {
			if ((unsigned char)*p < 0x20 ||
			    (unsigned char)*p >= 0x7f)
				abort();
		}
	}
	if (n > HUB_ACTION_HEADERS_MAX)
		abort();
}

static int no_read(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	(void)off;
	(void)buf;
	(void)len;
	return -1;
}

static void fuzz_preupload(const char *text, size_t size)
{
	struct hubfs_hub_upload_file f[3] = {
		{ .path = "a.txt", .size = 3, .remote_oid = "x" },
		{ .path = "w.bin", .size = 100, .lfs = true,
		  .remote_oid = "x" },
		{ .path = "empty.bin", .size = 0, .ignore = true,
		  .remote_oid = "x" },
	};

	if (hub_parse_preupload(text, size, f, 3) != 0) {
		if (f[0].lfs || !f[1].lfs || !f[2].ignore ||
		    strcmp(f[0].remote_oid, "x") != 0)
			abort();
		return;
	}
	if (f[2].lfs)
		abort();
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(f[i].remote_oid);

		if (n)
			check_hex(f[i].remote_oid, n == 40 ? 40 : 64);
	}
}

static void fuzz_lfs_batch(const char *text, size_t size)
{
	struct hubfs_hub_lfs_object o[2] = {
		{ .sha256 = OID_A, .size = 10, .read = no_read },
		{ .sha256 = OID_B, .size = 1 << 20, .read = no_read },
	};
	struct hub_lfs_action *a = NULL;

	if (hub_parse_lfs_batch(&a, text, size, o, 2) != 0) {
		if (a)
			abort();
		return;
	}
	for (size_t i = 0; i < 2; i++) {
		if (!a[i].upload) {
			if (a[i].href || a[i].parts || a[i].verify)
				abort();
			continue;
		}
		check_url(a[i].href);
		check_headers(a[i].headers);
		if (a[i].chunk_size) {
			uint64_t c = a[i].chunk_size;

			if (a[i].nparts != (o[i].size + c - 1) / c)
				abort();
			for (size_t k = 0; k < a[i].nparts; k++)
				check_url(a[i].parts[k]);
		} else if (a[i].parts || a[i].nparts) {
			abort();
		}
		if (a[i].verify)
			check_url(a[i].verify);
		check_headers(a[i].verify_headers);
	}
	hub_lfs_actions_free(a, 2);
}

static int check_commit_info(void *arg, const struct hubfs_hub_commit_info *c)
{
	unsigned int *seen = arg;

	check_hex(c->id, 40);
	if (!c->title || !c->message)
		abort();
	(*seen)++;
	return 0;
}

static void fuzz_commits(const char *text, size_t size)
{
	char oid[41] = "";
	unsigned int left = 3, seen = 0;

	if (hub_parse_commit(text, size, oid) == 0)
		check_hex(oid, 40);
	else if (oid[0])
		abort();
	if (hub_parse_commits(text, size, check_commit_info, &seen, &left,
			      NULL) == 0 &&
	    (seen > 3 || left != 3 - seen))
		abort();
}

static void fuzz_json_string(const char *text, size_t size)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(8 * size + 16);
	json_t *v;

	if (hub_json_put_string(&b, text, size) != 0) {
		if (b.len)
			abort();
		hubfs_buf_free(&b);
		return;
	}
	v = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
	if (!json_is_string(v) || json_string_length(v) != size ||
	    memcmp(json_string_value(v), text, size) != 0)
		abort();
	json_decref(v);
	hubfs_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;

	hubfs_log_set_level(LOG_ERR);
	fuzz_preupload(text, size);
	fuzz_lfs_batch(text, size);
	fuzz_commits(text, size);
	fuzz_json_string(text, size);
	return 0;
}
