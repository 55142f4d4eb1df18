/*
 * Pure encoders and parsers for the write path: the JSON bodies hubfs
 * sends (preupload, LFS batch, multipart completion, verify), and the
 * answers it reads back (preupload, LFS batch, commit, commit listing).
 *
 * DESIGN
 *
 * Bodies are built by hand into capped buffers rather than through
 * jansson, so that one escaper (hub_json_put_string()) decides how every
 * string hubfs sends is written, and so that the commit body (write.c)
 * can be streamed with exactly the same escaping.  That escaper refuses
 * what JSON cannot carry: bytes that are not UTF-8, and NUL, which no
 * repo path or commit message may hold anyway.
 *
 * Answers are checked the way huggingface_hub checks them
 * (_commit_api.py _validate_preupload_info, lfs.py
 * _validate_batch_actions, _validate_lfs_action, _get_sorted_parts_urls)
 * and then some, because every URL and header in an LFS answer is used
 * to send data:
 *   - the whole answer fails (-EIO) when its shape is wrong, when an
 *     object or file asked about is not answered, or when an answer is
 *     inconsistent (another size, a part number out of range or twice),
 *     because acting on part of it could store the wrong bytes or commit
 *     a file the Hub never accepted;
 *   - a per-object "error" fails the call and names the object, as
 *     huggingface_hub's _validate_batch_error does;
 *   - URLs must be absolute http(s) with no space or control character,
 *     header names RFC 9110 tokens and values printable ASCII, so nothing
 *     from the answer can add a header line of its own; an
 *     "Authorization" entry is dropped, since the token is only ever
 *     added by the request layer, for the Hub's own origin, and so are
 *     the headers that frame the request (Content-Length,
 *     Transfer-Encoding, Host, Connection, Expect), which libcurl sets;
 *   - a multipart answer ("chunk_size" in the upload header) must number
 *     its parts 1 to ceil(size / chunk_size), each once: more or fewer
 *     parts would assemble an object of another size.
 * Outputs are written only on success.  The commit listing, like the
 * tree listing, skips an entry that is merely wrong with a warning.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "hub_int.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

/* --- base64 and JSON strings ---------------------------------------------- */

void hub_base64_encode(char *dst, const void *src, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = src;
	size_t i = 0, j = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
			     p[i + 2];

		dst[j++] = tab[v >> 18];
		dst[j++] = tab[(v >> 12) & 63];
		dst[j++] = tab[(v >> 6) & 63];
		dst[j++] = tab[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;

		dst[j++] = tab[v >> 18];
		dst[j++] = tab[(v >> 12) & 63];
		dst[j++] = '=';
		dst[j++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

		dst[j++] = tab[v >> 18];
		dst[j++] = tab[(v >> 12) & 63];
		dst[j++] = tab[(v >> 6) & 63];
		dst[j++] = '=';
	}
}

/* The length of the UTF-8 sequence at @s (at most @n bytes), or 0 if it
 * is not a valid one (overlong, a surrogate, past U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

int hub_json_put_string(struct hubfs_buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t need = 2, j = 0;
	char *tmp;
	int err;

	for (size_t i = 0; i < len;) {
		size_t k = utf8_seq(u + i, len - i);

		if (k == 0 || u[i] == 0)
			return -EINVAL;
		if (u[i] == '"' || u[i] == '\\' || u[i] == '\b' ||
		    u[i] == '\f' || u[i] == '\n' || u[i] == '\r' ||
		    u[i] == '\t')
			need += 2;
		else if (u[i] < 0x20)
			need += 6;
		else
			need += k;
		i += k;
	}
	tmp = hubfs_malloc(need);
	if (!tmp)
		return -ENOMEM;
	tmp[j++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = u[i];
		char e = c == '"' ? '"' : c == '\\' ? '\\' : c == '\b' ? 'b'
		       : c == '\f' ? 'f' : c == '\n' ? 'n' : c == '\r' ? 'r'
		       : c == '\t' ? 't' : 0;

		if (e) {
			tmp[j++] = '\\';
			tmp[j++] = e;
		} else if (c < 0x20) {
			memcpy(tmp + j, "\\u00", 4);
			tmp[j + 4] = hex[c >> 4];
			tmp[j + 5] = hex[c & 15];
			j += 6;
		} else {
			tmp[j++] = (char)c;
		}
	}
	tmp[j++] = '"';
	err = hubfs_buf_append(out, tmp, j);
	hubfs_free(tmp);
	return err;
}

static int put_str(struct hubfs_buf *out, const char *s)
{
	return hub_json_put_string(out, s, strlen(s));
}

/* An object id lowercased, as the Hub writes them. */
static int put_oid(struct hubfs_buf *out, const char *oid)
{
	char low[65];
	size_t n = strlen(oid);

	if (n >= sizeof(low))
		return -EINVAL;
	for (size_t i = 0; i <= n; i++)
		low[i] = (char)tolower((unsigned char)oid[i]);
	return hubfs_buf_printf(out, "\"%s\"", low);
}

/* --- Request bodies ------------------------------------------------------- */

int hub_preupload_body(struct hubfs_buf *out,
		       const struct hubfs_hub_upload_file *files, size_t n,
		       const char *gitattributes)
{
	char sample[(HUB_SAMPLE_MAX + 2) / 3 * 4 + 1];
	int err = hubfs_buf_puts(out, "{\"files\":[");

	for (size_t i = 0; i < n && !err; i++) {
		size_t k = files[i].size < HUB_SAMPLE_MAX ? files[i].size
							  : HUB_SAMPLE_MAX;

		hub_base64_encode(sample, files[i].sample, k);
		sample[hub_base64_len(k)] = '\0';
		err = hubfs_buf_puts(out, i ? ",{\"path\":" : "{\"path\":");
		err = err ? err : put_str(out, files[i].path);
		err = err ? err : hubfs_buf_printf(out, ",\"size\":%" PRIu64
						   ",\"sample\":\"%s\"}",
						   files[i].size, sample);
	}
	err = err ? err : hubfs_buf_puts(out, "]");
	if (!err && gitattributes) {
		err = hubfs_buf_puts(out, ",\"gitAttributes\":");
		err = err ? err : put_str(out, gitattributes);
	}
	return err ? err : hubfs_buf_puts(out, "}");
}

int hub_lfs_batch_body(struct hubfs_buf *out,
		       const struct hubfs_hub_lfs_object *objs, size_t n,
		       const char *branch)
{
	int err = hubfs_buf_puts(out, "{\"operation\":\"upload\","
				      "\"transfers\":[\"basic\",\"multipart\"],"
				      "\"hash_algo\":\"sha256\",\"objects\":[");

	for (size_t i = 0; i < n && !err; i++) {
		err = hubfs_buf_puts(out, i ? ",{\"oid\":" : "{\"oid\":");
		err = err ? err : put_oid(out, objs[i].sha256);
		err = err ? err : hubfs_buf_printf(out, ",\"size\":%" PRIu64
						   "}", objs[i].size);
	}
	/* The ref's name unencoded (huggingface_hub's lfs.py unquotes it). */
	err = err ? err : hubfs_buf_puts(out, "],\"ref\":{\"name\":");
	err = err ? err : put_str(out, branch);
	return err ? err : hubfs_buf_puts(out, "}}");
}

int hub_lfs_complete_body(struct hubfs_buf *out, const char *oid,
			  char *const *etags, size_t nparts)
{
	int err = hubfs_buf_puts(out, "{\"oid\":");

	err = err ? err : put_oid(out, oid);
	err = err ? err : hubfs_buf_puts(out, ",\"parts\":[");
	for (size_t i = 0; i < nparts && !err; i++) {
		err = hubfs_buf_printf(out, "%s{\"partNumber\":%zu,\"etag\":",
				       i ? "," : "", i + 1);
		err = err ? err : put_str(out, etags[i]);
		err = err ? err : hubfs_buf_puts(out, "}");
	}
	return err ? err : hubfs_buf_puts(out, "]}");
}

int hub_lfs_verify_body(struct hubfs_buf *out, const char *oid,
			uint64_t size)
{
	int err = hubfs_buf_puts(out, "{\"oid\":");

	err = err ? err : put_oid(out, oid);
	return err ? err : hubfs_buf_printf(out, ",\"size\":%" PRIu64 "}",
					    size);
}

/* --- The preupload answer ------------------------------------------------- */

struct preupload_answer {
	bool seen, lfs, ignore;
	char oid[65];
};

/* Why @item is not a valid preupload answer, or NULL with *@a filled. */
static const char *preupload_item(json_t *item, struct preupload_answer *a,
				  const char **path, size_t *path_len)
{
	const char *mode;
	size_t mode_len;
	json_t *v;

	if (!json_is_object(item))
		return "not an object";
	*path = hub_json_str(item, "path", path_len);
	if (!*path)
		return "no path";
	mode = hub_json_str(item, "uploadMode", &mode_len);
	if (mode && mode_len == 3 && strcmp(mode, "lfs") == 0)
		a->lfs = true;
	else if (mode && mode_len == 7 && strcmp(mode, "regular") == 0)
		a->lfs = false;
	else
		return "no valid uploadMode";
	v = json_object_get(item, "shouldIgnore");
	if (v && !json_is_null(v) && !json_is_boolean(v))
		return "shouldIgnore is not a boolean";
	a->ignore = json_is_true(v);
	/* The blob id of a regular file, the sha256 of an LFS one; which
	 * one depends on the file already there, not on uploadMode. */
	a->oid[0] = '\0';
	v = json_object_get(item, "oid");
	if (v && !json_is_null(v) && !hub_json_hex(item, "oid", a->oid, 40) &&
	    !hub_json_hex(item, "oid", a->oid, 64))
		return "oid is not an object id";
	return NULL;
}

int hub_parse_preupload(const char *data, size_t len,
			struct hubfs_hub_upload_file *files, size_t n)
{
	json_t *root = hub_json_load(data, len, JSON_OBJECT,
				     "preupload answer");
	struct preupload_answer *ans = NULL;
	json_t *list, *item;
	char shown[128];
	size_t i;
	int err = -EIO;

	if (!root)
		return -EIO;
	list = json_object_get(root, "files");
	if (!json_is_array(list)) {
		hubfs_err_set("preupload answer from the Hub has no \"files\" "
			      "list");
		goto out;
	}
	if (n) {
		ans = hubfs_calloc(n, sizeof(*ans));
		if (!ans) {
			hubfs_err_set("out of memory");
			err = -ENOMEM;
			goto out;
		}
	}
	json_array_foreach(list, i, item) {
		struct preupload_answer a = { .seen = true };
		const char *path = NULL, *why;
		size_t path_len = 0;

		why = preupload_item(item, &a, &path, &path_len);
		if (why) {
			hub_printable(shown, sizeof(shown), path ? path : "",
				      path ? path_len : 0);
			hubfs_err_set("preupload answer from the Hub: file %zu "
				      "(\"%s\"): %s", i, shown, why);
			goto out;
		}
		for (size_t k = 0; k < n; k++) {
			if (strlen(files[k].path) != path_len ||
			    memcmp(files[k].path, path, path_len) != 0)
				continue;
			if (ans[k].seen) {
				hub_printable(shown, sizeof(shown), path,
					      path_len);
				hubfs_err_set("preupload answer from the Hub "
					      "names %s twice", shown);
				goto out;
			}
			ans[k] = a;
		}
	}
	for (size_t k = 0; k < n; k++) {
		if (!ans[k].seen) {
			hub_printable(shown, sizeof(shown), files[k].path,
				      strlen(files[k].path));
			hubfs_err_set("preupload answer from the Hub says "
				      "nothing about %s", shown);
			goto out;
		}
	}
	for (size_t k = 0; k < n; k++) {
		/* An empty object is refused by S3 (huggingface_hub's
		 * _fetch_upload_modes forces these regular too). */
		files[k].lfs = files[k].size > 0 && ans[k].lfs;
		files[k].ignore = ans[k].ignore;
		memcpy(files[k].remote_oid, ans[k].oid, sizeof(ans[k].oid));
	}
	err = 0;
out:
	hubfs_free(ans);
	json_decref(root);
	return err;
}

/* --- The LFS batch answer ------------------------------------------------- */

static void free_lines(char **v)
{
	if (v) {
		for (size_t i = 0; v[i]; i++)
			hubfs_free(v[i]);
		hubfs_free(v);
	}
}

void hub_lfs_actions_free(struct hub_lfs_action *actions, size_t n)
{
	if (!actions)
		return;
	for (size_t i = 0; i < n; i++) {
		struct hub_lfs_action *a = &actions[i];

		hubfs_free(a->href);
		free_lines(a->headers);
		for (size_t k = 0; a->parts && k < a->nparts; k++)
			hubfs_free(a->parts[k]);
		hubfs_free(a->parts);
		hubfs_free(a->verify);
		free_lines(a->verify_headers);
	}
	hubfs_free(actions);
}

/* An absolute http(s) URL with nothing a request line cannot hold. */
static bool url_ok(const char *s, size_t len)
{
	struct hub_origin o;

	if (len == 0 || len >= HUB_URL_MAX || strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	}
	return hub_origin_parse(&o, s) == 0;
}

/* An RFC 9110 token, as a header name must be. */
static bool token_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > HUB_HDR_MAX)
		return false;
	return strspn(s, "!#$%&'*+-.^_`|~0123456789"
			 "abcdefghijklmnopqrstuvwxyz"
			 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == len;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return false;
	}
	return true;
}

/* Digits to a number in [1, @max], or 0. */
static uint64_t digits_value(const char *s, size_t len, uint64_t max)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]) ||
		    __builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v))
			return 0;
	}
	return v <= max ? v : 0;
}

/* A copy of the URL @obj has at @key, into *@out. */
static const char *dup_url(json_t *obj, const char *key, char **out,
			   int *err)
{
	size_t len;
	const char *s = hub_json_str(obj, key, &len);

	if (!s || !url_ok(s, len))
		return "an action's href is not an http(s) URL";
	*out = hubfs_strdup(s);
	if (!*out) {
		*err = -ENOMEM;
		return "out of memory";
	}
	return NULL;
}

/* Headers the request layer owns: an answer never sets them. */
static bool owned_header(const char *name)
{
	static const char *const owned[] = {
		"authorization", "content-length", "transfer-encoding",
		"host", "connection", "expect",
	};

	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
		if (strcasecmp(name, owned[i]) == 0)
			return true;
	}
	return false;
}

/* Append "name: value" to the NULL-terminated list *@v of *@n lines. */
static const char *add_line(char ***v, size_t *n, const char *name,
			    json_t *value, int *err)
{
	const char *s;
	size_t len;
	char **grown, *line;

	if (!token_ok(name))
		return "a header name is not a token";
	if (!json_is_string(value))
		return "a header value is not a string";
	s = json_string_value(value);
	len = json_string_length(value);
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return "a header value is not plain text";
	}
	if (owned_header(name))
		return NULL;
	if (*n >= HUB_ACTION_HEADERS_MAX)
		return "too many headers";
	if (strlen(name) + len + 3 > HUB_ACTION_HEADER_MAX)
		return "a header is too long";
	line = hubfs_malloc(strlen(name) + len + 3);
	grown = line ? hubfs_realloc(*v, (*n + 2) * sizeof(**v)) : NULL;
	if (!grown) {
		hubfs_free(line);
		*err = -ENOMEM;
		return "out of memory";
	}
	sprintf(line, "%s: %s", name, s);
	grown[(*n)++] = line;
	grown[*n] = NULL;
	*v = grown;
	return NULL;
}

/* The headers of an action, but for chunk_size and, in a multipart one,
 * the part numbers; *@v may stay NULL when there are none. */
static const char *action_headers(json_t *header, bool multipart, char ***v,
				  int *err)
{
	const char *key;
	json_t *value;
	size_t n = 0;

	json_object_foreach(header, key, value) {
		const char *why;

		if (strcmp(key, "chunk_size") == 0 ||
		    (multipart && all_digits(key)))
			continue;
		why = add_line(v, &n, key, value, err);
		if (why)
			return why;
	}
	return NULL;
}

/* The parts of a multipart upload action into @a. */
static const char *action_parts(json_t *header, uint64_t size,
				struct hub_lfs_action *a, int *err)
{
	json_t *cs = json_object_get(header, "chunk_size"), *value;
	const char *key;
	uint64_t expect;

	if (json_is_string(cs))
		a->chunk_size = digits_value(json_string_value(cs),
					     json_string_length(cs),
					     HUBFS_SIZE_MAX);
	else if (json_is_integer(cs) && json_integer_value(cs) > 0 &&
		 (uint64_t)json_integer_value(cs) <= HUBFS_SIZE_MAX)
		a->chunk_size = (uint64_t)json_integer_value(cs);
	if (a->chunk_size == 0)
		return "chunk_size is not a positive number";
	expect = size / a->chunk_size + (size % a->chunk_size != 0);
	if (expect == 0 || expect > HUB_PARTS_MAX)
		return "the number of parts is out of range";
	a->parts = hubfs_calloc(expect, sizeof(*a->parts));
	if (!a->parts) {
		*err = -ENOMEM;
		return "out of memory";
	}
	a->nparts = expect;
	json_object_foreach(header, key, value) {
		uint64_t num;

		if (!all_digits(key))
			continue;
		num = digits_value(key, strlen(key), HUB_PARTS_MAX);
		if (num == 0 || num > expect)
			return "a part number is out of range";
		if (a->parts[num - 1])
			return "a part is numbered twice";
		if (!json_is_string(value) ||
		    !url_ok(json_string_value(value),
			    json_string_length(value)))
			return "a part URL is not an http(s) URL";
		a->parts[num - 1] = hubfs_strdup(json_string_value(value));
		if (!a->parts[num - 1]) {
			*err = -ENOMEM;
			return "out of memory";
		}
	}
	for (size_t i = 0; i < expect; i++) {
		if (!a->parts[i])
			return "parts are missing: their number is not "
			       "ceil(size / chunk_size)";
	}
	return NULL;
}

/* Why @item cannot be acted on for @o, or NULL with *@a filled. */
static const char *lfs_item(json_t *item, const struct hubfs_hub_lfs_object *o,
			    struct hub_lfs_action *a, int *err)
{
	json_t *size = json_object_get(item, "size");
	json_t *actions, *upload, *header, *chunk, *verify, *vheader;
	const char *why;

	if (size && !json_is_null(size) &&
	    (!json_is_integer(size) || json_integer_value(size) < 0 ||
	     (uint64_t)json_integer_value(size) != o->size))
		return "the answer is about another size";
	actions = json_object_get(item, "actions");
	if (!actions || json_is_null(actions))
		return NULL;			/* already stored */
	if (!json_is_object(actions))
		return "\"actions\" is not an object";
	upload = json_object_get(actions, "upload");
	if (!upload || json_is_null(upload))
		return NULL;
	if (!json_is_object(upload))
		return "the upload action is not an object";
	a->upload = true;
	why = dup_url(upload, "href", &a->href, err);
	if (why)
		return why;
	header = json_object_get(upload, "header");
	if (header && !json_is_null(header) && !json_is_object(header))
		return "the upload header is not an object";
	/* Multipart when chunk_size is there (huggingface_hub's lfs_upload:
	 * a null one means basic). */
	chunk = json_is_object(header) ? json_object_get(header, "chunk_size")
				       : NULL;
	if (chunk && !json_is_null(chunk)) {
		why = action_parts(header, o->size, a, err);
		if (why)
			return why;
	}
	if (json_is_object(header)) {
		why = action_headers(header, a->chunk_size != 0, &a->headers,
				     err);
		if (why)
			return why;
	}
	verify = json_object_get(actions, "verify");
	if (!verify || json_is_null(verify))
		return NULL;
	if (!json_is_object(verify))
		return "the verify action is not an object";
	why = dup_url(verify, "href", &a->verify, err);
	if (why)
		return why;
	vheader = json_object_get(verify, "header");
	if (vheader && !json_is_null(vheader) && !json_is_object(vheader))
		return "the verify header is not an object";
	if (json_is_object(vheader))
		return action_headers(vheader, false, &a->verify_headers, err);
	return NULL;
}

/* The object of @objs that @oid (@len bytes) names, or -1. */
static ssize_t find_object(const struct hubfs_hub_lfs_object *objs, size_t n,
			   const char *oid, size_t len)
{
	if (len != 64)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (strncasecmp(objs[i].sha256, oid, 64) == 0 &&
		    objs[i].sha256[64] == '\0')
			return (ssize_t)i;
	}
	return -1;
}

/* A per-object error: fail naming the object, with the Hub's words. */
static void object_refused(const struct hubfs_hub_lfs_object *o,
			   json_t *error)
{
	char said[HUB_HDR_MAX] = "", clean[HUB_HDR_MAX];
	json_t *code = json_is_object(error) ? json_object_get(error, "code")
					     : NULL;
	const char *msg = NULL;
	size_t len = 0;

	if (json_is_object(error))
		msg = hub_json_str(error, "message", &len);
	if (msg) {
		hub_printable(clean, sizeof(clean), msg, len);
		hubfs_log_redact(said, sizeof(said), clean);
	}
	if (json_is_integer(code))
		hubfs_err_set("the Hub refused LFS object %s (%" PRIu64
			      " bytes): %s (code %" JSON_INTEGER_FORMAT ")",
			      o->sha256, o->size, *said ? said : "no reason",
			      json_integer_value(code));
	else
		hubfs_err_set("the Hub refused LFS object %s (%" PRIu64
			      " bytes): %s", o->sha256, o->size,
			      *said ? said : "no reason");
}

int hub_parse_lfs_batch(struct hub_lfs_action **out, const char *data,
			size_t len, const struct hubfs_hub_lfs_object *objs,
			size_t n)
{
	json_t *root = hub_json_load(data, len, JSON_OBJECT,
				     "LFS batch answer");
	struct hub_lfs_action *acts = NULL;
	bool *seen = NULL;
	json_t *list, *item;
	size_t i;
	int err = -EIO;

	if (!root)
		return -EIO;
	list = json_object_get(root, "objects");
	if (!json_is_array(list)) {
		hubfs_err_set("LFS batch answer from the Hub has no "
			      "\"objects\" list");
		goto out;
	}
	if (n) {
		acts = hubfs_calloc(n, sizeof(*acts));
		seen = hubfs_calloc(n, sizeof(*seen));
		if (!acts || !seen) {
			hubfs_err_set("out of memory");
			err = -ENOMEM;
			goto out;
		}
	}
	json_array_foreach(list, i, item) {
		const char *oid, *why;
		json_t *error;
		size_t oid_len;
		ssize_t k;

		if (!json_is_object(item)) {
			hubfs_err_set("LFS batch answer from the Hub: object "
				      "%zu is not a JSON object", i);
			goto out;
		}
		oid = hub_json_str(item, "oid", &oid_len);
		k = oid ? find_object(objs, n, oid, oid_len) : -1;
		if (k < 0)
			continue;	/* not asked about */
		if (seen[k]) {
			hubfs_err_set("LFS batch answer from the Hub names "
				      "object %s twice", objs[k].sha256);
			goto out;
		}
		seen[k] = true;
		error = json_object_get(item, "error");
		if (error && !json_is_null(error)) {
			object_refused(&objs[k], error);
			goto out;
		}
		why = lfs_item(item, &objs[k], &acts[k], &err);
		if (why) {
			if (err == -ENOMEM) {
				hubfs_err_set("out of memory");
			} else {
				hubfs_err_set("LFS batch answer from the Hub "
					      "for object %s: %s",
					      objs[k].sha256, why);
				err = -EIO;
			}
			goto out;
		}
	}
	for (size_t k = 0; k < n; k++) {
		if (!seen[k]) {
			hubfs_err_set("LFS batch answer from the Hub says "
				      "nothing about object %s",
				      objs[k].sha256);
			goto out;
		}
	}
	*out = acts;
	acts = NULL;
	err = 0;
out:
	hub_lfs_actions_free(acts, n);
	hubfs_free(seen);
	json_decref(root);
	return err;
}

/* --- Commits -------------------------------------------------------------- */

int hub_parse_commit(const char *data, size_t len, char out[41])
{
	json_t *root = hub_json_load(data, len, JSON_OBJECT, "commit answer");
	char oid[41];
	int err = -EIO;

	if (!root)
		return -EIO;
	if (hub_json_hex(root, "commitOid", oid, 40)) {
		memcpy(out, oid, sizeof(oid));
		err = 0;
	} else {
		hubfs_err_set("commit answer from the Hub has no valid commit "
			      "id (\"commitOid\")");
	}
	json_decref(root);
	return err;
}

/* @key as a string, "" when absent; false if it is something else. */
static bool get_text(json_t *obj, const char *key, const char **out)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		*out = "";
		return true;
	}
	if (!json_is_string(v))
		return false;
	*out = json_string_value(v);
	return true;
}

/* Why @item is not a valid commit, or NULL with *@c filled in. */
static const char *commit_entry(json_t *item, struct hubfs_hub_commit_info *c)
{
	const char *date;
	size_t date_len;

	if (!json_is_object(item))
		return "not an object";
	if (!hub_json_hex(item, "id", c->id, 40))
		return "bad id";
	date = hub_json_str(item, "date", &date_len);
	if (!date || strlen(date) != date_len ||
	    hub_parse_time(date, &c->time) != 0)
		return "bad date";
	if (!get_text(item, "title", &c->title))
		return "bad title";
	if (!get_text(item, "message", &c->message))
		return "bad message";
	return NULL;
}

int hub_parse_commits(const char *data, size_t len, hubfs_hub_commit_cb cb,
		      void *arg, unsigned int *left, size_t *skipped)
{
	json_t *root = hub_json_load(data, len, JSON_ARRAY, "commit listing");
	json_t *item;
	size_t i, n = 0;
	int err = 0;

	if (!root)
		return -EIO;
	json_array_foreach(root, i, item) {
		struct hubfs_hub_commit_info c;
		const char *why;

		if (*left == 0)
			break;
		why = commit_entry(item, &c);
		if (why) {
			hub_warn_skipped("commit", i, item, "id", why);
			n++;
			continue;
		}
		(*left)--;
		err = cb(arg, &c);
		if (err)
			break;
	}
	if (skipped)
		*skipped = n;
	json_decref(root);
	return err;
}
