/*
 * Pure parsers and encoders for the Hub client.
 *
 * DESIGN
 *
 * Everything here turns bytes from the Hub (JSON bodies, header values)
 * into checked values, or builds URL pieces, and does no I/O.  Each
 * function takes a length or a NUL-terminated string, assumes nothing
 * about what it is given, and fails with -EIO (a malformed answer) or
 * -EINVAL (a malformed value) rather than guessing; the fuzzers in
 * tests/fuzz/ feed them arbitrary bytes.
 *
 * Trust boundaries:
 *   - A tree page that is not a JSON array fails as a whole, because
 *     nothing in it can be trusted; an entry that is merely wrong (a bad
 *     path, id or size) is skipped with a warning so that one odd file
 *     does not hide a whole repository.  JSON is parsed with
 *     JSON_ALLOW_NUL so that a "\u0000" in a path reaches the path check
 *     and is skipped rather than failing the page; every string is then
 *     compared by its JSON length, never by strlen() alone.
 *   - Paths are checked once, here, against the rules in hub.h; whatever
 *     reaches a callback needs no further checking by the fs layer.
 *   - Header values are parsed strictly: Content-Range must be exactly
 *     "bytes a-b/n" with numbers that fit, because the read path compares
 *     it field by field with what it asked for.
 *
 * Percent-encoding keeps only RFC 3986 unreserved characters; a revision
 * is always one segment ("refs/pr/1" becomes "refs%2Fpr%2F1"), a file
 * path keeps its '/' separators, as huggingface_hub's hf_hub_url does.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "hub_int.h"
#include "hubfs/err.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"

/* --- URL encoding --------------------------------------------------------- */

static bool url_unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int put_encoded(struct hubfs_buf *out, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0, i, j = 0;
	char *tmp;
	int err;

	for (i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		n += url_unreserved(c) || (keep_slash && c == '/') ? 1 : 3;
	}
	if (n == 0)
		return 0;
	tmp = hubfs_malloc(n);
	if (!tmp)
		return -ENOMEM;
	for (i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (url_unreserved(c) || (keep_slash && c == '/')) {
			tmp[j++] = (char)c;
		} else {
			tmp[j++] = '%';
			tmp[j++] = hex[c >> 4];
			tmp[j++] = hex[c & 15];
		}
	}
	err = hubfs_buf_append(out, tmp, n);
	hubfs_free(tmp);
	return err;
}

int hub_url_put_segment(struct hubfs_buf *out, const char *s)
{
	return put_encoded(out, s, false);
}

int hub_url_put_path(struct hubfs_buf *out, const char *path)
{
	return put_encoded(out, path, true);
}

/* --- Small checks --------------------------------------------------------- */

bool hub_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return false;
	}
	return s[n] == '\0';
}

/* Copy @n hex digits lowercased, NUL-terminated. */
static void copy_hex(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[n] = '\0';
}

const char *hub_path_invalid(const char *p, size_t len)
{
	size_t start = 0;

	if (len == 0)
		return "empty path";
	if (memchr(p, '\0', len))
		return "NUL in path";
	if (len > HUBFS_PATH_MAX)
		return "path longer than HUBFS_PATH_MAX";
	if (p[0] == '/')
		return "absolute path";
	for (size_t i = 0; i <= len; i++) {
		size_t c;

		if (i < len && p[i] != '/')
			continue;
		c = i - start;
		if (c == 0)
			return "empty path component";
		if (c == 1 && p[start] == '.')
			return "\".\" component";
		if (c == 2 && p[start] == '.' && p[start + 1] == '.')
			return "\"..\" component";
		if (c > HUBFS_NAME_MAX)
			return "path component longer than HUBFS_NAME_MAX";
		start = i + 1;
	}
	return NULL;
}

void hub_printable(char *dst, size_t n, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t j = 0;

	if (n == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			if (j + 1 >= n)
				break;
			dst[j++] = (char)c;
		} else {
			if (j + 4 >= n)
				break;
			dst[j++] = '\\';
			dst[j++] = 'x';
			dst[j++] = hex[c >> 4];
			dst[j++] = hex[c & 15];
		}
	}
	dst[j] = '\0';
}

/* --- Time ----------------------------------------------------------------- */

static bool get_digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : mdays[m - 1];
}

int hub_parse_time(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	const char *p;

	if (!get_digits(s, 4, &y) || s[4] != '-' ||
	    !get_digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !get_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    !get_digits(s + 11, 2, &h) || s[13] != ':' ||
	    !get_digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !get_digits(s + 17, 2, &sec))
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		if (!isdigit((unsigned char)p[1]))
			return -EINVAL;
		for (p++; isdigit((unsigned char)*p); p++)
			;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		if (!get_digits(p + 1, 2, &oh))
			return -EINVAL;
		p += 3;
		if (*p == ':')
			p++;
		if (!get_digits(p, 2, &om))
			return -EINVAL;
		p += 2;
	} else {
		return -EINVAL;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
	    h > 23 || mi > 59 || sec > 60 || oh > 23 || om > 59)
		return -EINVAL;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	       sign * (oh * 3600 + om * 60);
	return 0;
}

/* --- JSON ----------------------------------------------------------------- */

json_t *hub_json_load(const char *data, size_t len, json_type type,
		      const char *what)
{
	json_error_t jerr;
	json_t *root = json_loadb(data ? data : "", len, JSON_ALLOW_NUL, &jerr);

	if (!root) {
		hubfs_err_set("malformed %s from the Hub: %s (line %d)", what,
			      jerr.text, jerr.line);
	} else if (json_typeof(root) != type) {
		hubfs_err_set("%s from the Hub is not a JSON %s", what,
			      type == JSON_ARRAY ? "array" : "object");
		json_decref(root);
		root = NULL;
	}
	return root;
}

const char *hub_json_str(json_t *obj, const char *key, size_t *len)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v))
		return NULL;
	if (len)
		*len = json_string_length(v);
	return json_string_value(v);
}

bool hub_json_hex(json_t *obj, const char *key, char *dst, size_t n)
{
	size_t len;
	const char *s = hub_json_str(obj, key, &len);

	if (!s || len != n || !hub_is_hex(s, n))
		return false;
	copy_hex(dst, s, n);
	return true;
}

bool hub_json_size(json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	json_int_t n;

	if (!json_is_integer(v))
		return false;
	n = json_integer_value(v);
	if (n < 0 || (uint64_t)n > HUBFS_SIZE_MAX)
		return false;
	*out = (uint64_t)n;
	return true;
}

int hub_parse_revision(const char *data, size_t len,
		       struct hubfs_hub_revision *out)
{
	struct hubfs_hub_revision rev;
	json_t *root = hub_json_load(data, len, JSON_OBJECT,
				     "repository info");
	const char *lm;
	size_t lm_len;
	int err = -EIO;

	if (!root)
		return -EIO;
	if (!hub_json_hex(root, "sha", rev.commit, 40)) {
		hubfs_err_set("repository info from the Hub has no valid "
			      "commit id (\"sha\")");
		goto out;
	}
	lm = hub_json_str(root, "lastModified", &lm_len);
	if (!lm || strlen(lm) != lm_len || hub_parse_time(lm, &rev.time)) {
		hubfs_err_set("repository info from the Hub has no valid "
			      "date (\"lastModified\")");
		goto out;
	}
	/* false, or the approval mode ("auto", "manual"); absent: not gated */
	rev.gated = json_is_string(json_object_get(root, "gated")) ||
		    json_is_true(json_object_get(root, "gated"));
	*out = rev;
	err = 0;
out:
	json_decref(root);
	return err;
}

/* Why @item is not a valid tree entry, or NULL with *@e filled in. */
static const char *tree_entry(json_t *item, struct hubfs_hub_entry *e)
{
	const char *type, *path, *why;
	size_t type_len, path_len;
	json_t *lfs;

	if (!json_is_object(item))
		return "not an object";
	type = hub_json_str(item, "type", &type_len);
	if (!type)
		return "no type";
	if (type_len == 4 && strcmp(type, "file") == 0)
		e->type = HUBFS_ENTRY_FILE;
	else if (type_len == 9 && strcmp(type, "directory") == 0)
		e->type = HUBFS_ENTRY_DIR;
	else
		return "unknown type";
	path = hub_json_str(item, "path", &path_len);
	if (!path)
		return "no path";
	why = hub_path_invalid(path, path_len);
	if (why)
		return why;
	e->path = path;
	if (!hub_json_hex(item, "oid", e->oid, 40))
		return "bad oid";
	e->size = 0;
	e->lfs = false;
	e->sha256[0] = '\0';
	if (e->type == HUBFS_ENTRY_DIR)
		return NULL;		/* a directory's size means nothing */
	if (!hub_json_size(item, "size", &e->size))
		return "bad size";
	lfs = json_object_get(item, "lfs");
	if (!lfs || json_is_null(lfs))
		return NULL;
	if (!json_is_object(lfs))
		return "bad lfs";
	if (!hub_json_hex(lfs, "oid", e->sha256, 64))
		return "bad lfs oid";
	/* The content size; "size" may be the pointer's on some mirrors. */
	if (!hub_json_size(lfs, "size", &e->size))
		return "bad lfs size";
	e->lfs = true;
	return NULL;
}

void hub_warn_skipped(const char *what, size_t i, json_t *item,
		      const char *key, const char *why)
{
	char shown[128] = "";
	size_t len;
	const char *s = json_is_object(item) ? hub_json_str(item, key, &len)
					     : NULL;

	if (s)
		hub_printable(shown, sizeof(shown), s, len);
	hlog(LOG_WARNING, "hub: skipping %s %zu \"%s\": %s", what, i, shown,
	     why);
}

int hub_parse_tree(const char *data, size_t len, hubfs_hub_entry_cb cb,
		   void *arg, size_t *skipped)
{
	json_t *root = hub_json_load(data, len, JSON_ARRAY, "tree listing");
	json_t *item;
	size_t i, n = 0;
	int err = 0;

	if (!root)
		return -EIO;
	json_array_foreach(root, i, item) {
		struct hubfs_hub_entry e;
		const char *why = tree_entry(item, &e);

		if (why) {
			hub_warn_skipped("tree entry", i, item, "path", why);
			n++;
			continue;
		}
		err = cb(arg, &e);
		if (err)
			break;
	}
	if (skipped)
		*skipped = n;
	json_decref(root);
	return err;
}

/* --- Refs ----------------------------------------------------------------- */

static const struct ref_list {
	const char *key;
	enum hubfs_ref_kind kind;
	const char *prefix;	/* what the name must start with, or NULL */
} ref_lists[] = {
	{ "branches", HUBFS_REF_BRANCH, NULL },
	{ "tags", HUBFS_REF_TAG, NULL },
	{ "converts", HUBFS_REF_CONVERT, "refs/convert/" },
	{ "pullRequests", HUBFS_REF_PR, "refs/pr/" },
};

static bool ref_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > HUBFS_PATH_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/*
 * The full name of one ref into @name: as given for branches and tags;
 * "refs/pr/N" and "refs/convert/X" for the others, taken from "ref" or
 * "name" or made from the prefix and "name".  Why not, or NULL.
 */
static const char *ref_entry(json_t *item, const struct ref_list *l,
			     struct hubfs_buf *name, char *commit)
{
	const char *s, *ref;
	size_t len, ref_len = 0, plen;

	if (!json_is_object(item))
		return "not an object";
	s = hub_json_str(item, "name", &len);
	if (!s || !ref_name_ok(s, len))
		return "bad name";
	if (!hub_json_hex(item, "targetCommit", commit, 40))
		return "bad targetCommit";
	hubfs_buf_reset(name);
	if (!l->prefix)
		return hubfs_buf_append(name, s, len) ? "name too long" : NULL;
	plen = strlen(l->prefix);
	ref = hub_json_str(item, "ref", &ref_len);
	if (ref && ref_len > plen && ref_name_ok(ref, ref_len) &&
	    strncmp(ref, l->prefix, plen) == 0) {
		s = ref;
		len = ref_len;
	} else if (!(len > plen && strncmp(s, l->prefix, plen) == 0)) {
		if (hubfs_buf_puts(name, l->prefix))
			return "name too long";
	}
	return hubfs_buf_append(name, s, len) ? "name too long" : NULL;
}

int hub_parse_refs(const char *data, size_t len, bool include_prs,
		   hubfs_hub_ref_cb cb, void *arg)
{
	struct hubfs_buf name = HUBFS_BUF_INIT(HUBFS_PATH_MAX + 64);
	json_t *root = hub_json_load(data, len, JSON_OBJECT, "ref listing");
	int err = 0;

	if (!root) {
		hubfs_buf_free(&name);
		return -EIO;
	}
	for (size_t k = 0; k < sizeof(ref_lists) / sizeof(ref_lists[0]); k++) {
		const struct ref_list *l = &ref_lists[k];
		json_t *list = json_object_get(root, l->key), *item;
		size_t i;

		if (l->kind == HUBFS_REF_PR && !include_prs)
			continue;
		if (!list || json_is_null(list))
			continue;
		if (!json_is_array(list)) {
			hubfs_err_set("ref listing from the Hub: \"%s\" is "
				      "not an array", l->key);
			err = -EIO;
			goto out;
		}
		json_array_foreach(list, i, item) {
			struct hubfs_hub_ref ref = { .kind = l->kind };
			const char *why = ref_entry(item, l, &name,
						    ref.commit);

			if (why) {
				hub_warn_skipped(l->key, i, item, "name", why);
				continue;
			}
			ref.name = hubfs_buf_str(&name);
			err = cb(arg, &ref);
			if (err)
				goto out;
		}
	}
out:
	hubfs_buf_free(&name);
	json_decref(root);
	return err;
}

int hub_parse_error_body(const char *data, size_t len, char *dst, size_t n)
{
	json_error_t jerr;
	json_t *root = json_loadb(data ? data : "", len, JSON_ALLOW_NUL,
				  &jerr);
	const char *s;
	size_t slen;
	int err = -ENOENT;

	if (!root)
		return -EIO;
	s = json_is_object(root) ? hub_json_str(root, "error", &slen) : NULL;
	if (s) {
		hub_printable(dst, n, s, slen);
		err = 0;
	}
	json_decref(root);
	return err;
}

/* --- Headers -------------------------------------------------------------- */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Whether the space-separated list @v (@n bytes) holds "next". */
static bool rel_has_next(const char *v, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t start;

		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		start = i;
		while (i < n && v[i] != ' ' && v[i] != '\t')
			i++;
		if (i - start == 4 && strncasecmp(v + start, "next", 4) == 0)
			return true;
	}
	return false;
}

/*
 * Parse one ";name=value" parameter of a Link at *@pp.  Sets *@next when
 * it is rel naming "next".  Returns false if malformed.
 */
static bool link_param(const char **pp, bool *next)
{
	const char *p = skip_ws(*pp + 1), *name = p, *val;
	size_t name_len, val_len = 0;

	while (*p && !strchr("=;, \t\"<>", *p))
		p++;
	name_len = (size_t)(p - name);
	if (name_len == 0)
		return false;
	p = skip_ws(p);
	val = p;
	if (*p == '=') {
		p = skip_ws(p + 1);
		if (*p == '"') {
			val = ++p;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (*p != '"')
				return false;
			val_len = (size_t)(p - val);
			p++;
		} else {
			val = p;
			while (*p && !strchr(";, \t\"", *p))
				p++;
			val_len = (size_t)(p - val);
		}
	}
	if (name_len == 3 && strncasecmp(name, "rel", 3) == 0 &&
	    rel_has_next(val, val_len))
		*next = true;
	*pp = skip_ws(p);
	return true;
}

int hub_link_next(char **out, const char *h)
{
	const char *p = h;

	for (;;) {
		const char *url, *end;
		bool next = false;
		char *copy;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		if (*p != '<')
			goto malformed;
		url = p + 1;
		end = strchr(url, '>');
		if (!end)
			goto malformed;
		p = skip_ws(end + 1);
		while (*p == ';') {
			if (!link_param(&p, &next))
				goto malformed;
		}
		if (*p && *p != ',')
			goto malformed;
		if (!next)
			continue;
		if (end == url)
			goto malformed;
		copy = hubfs_strndup(url, (size_t)(end - url));
		if (!copy)
			return -ENOMEM;
		*out = copy;
		return 0;
	}
	*out = NULL;
	return 0;
malformed:
	hubfs_err_set("malformed Link header from the Hub");
	return -EIO;
}

/* A decimal number of at most 20 digits that fits in 64 bits. */
static bool parse_u64(const char **pp, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*p))
		return false;
	for (; isdigit((unsigned char)*p); p++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return false;
	}
	*pp = p;
	*out = v;
	return true;
}

int hub_parse_content_range(const char *v, struct hub_content_range *out)
{
	struct hub_content_range cr = { 0 };
	const char *p;

	if (strncasecmp(v, "bytes", 5) != 0 || (v[5] != ' ' && v[5] != '\t'))
		return -EIO;
	p = skip_ws(v + 5);
	if (*p == '*') {
		cr.unsatisfied = true;
		p++;
	} else if (!parse_u64(&p, &cr.first) || *p++ != '-' ||
		   !parse_u64(&p, &cr.last) || cr.last < cr.first) {
		return -EIO;
	}
	if (*p++ != '/')
		return -EIO;
	if (*p == '*') {
		if (cr.unsatisfied)
			return -EIO;
		p++;
	} else {
		if (!parse_u64(&p, &cr.total))
			return -EIO;
		cr.total_known = true;
		if (!cr.unsatisfied && cr.last >= cr.total)
			return -EIO;
	}
	if (*skip_ws(p))
		return -EIO;
	*out = cr;
	return 0;
}

int hub_parse_retry_after(const char *value, unsigned int *out)
{
	const char *p = skip_ws(value);
	uint64_t v;

	if (!parse_u64(&p, &v) || *skip_ws(p))
		return -EINVAL;
	*out = v > UINT32_MAX ? UINT32_MAX : (unsigned int)v;
	return 0;
}

int hub_parse_ratelimit(const char *value, unsigned int *out)
{
	const char *p = skip_ws(value);
	uint64_t r = 0, t = 0;
	bool have_r = false, have_t = false;

	/* The policy name: a quoted string or a token. */
	if (*p == '"') {
		p = strchr(p + 1, '"');
		if (!p)
			return -EINVAL;
		p++;
	} else {
		while (*p && *p != ';' && *p != ',')
			p++;
	}
	for (p = skip_ws(p); *p == ';'; p = skip_ws(p)) {
		const char *key = skip_ws(p + 1);
		uint64_t *dst = NULL;

		p = key;
		while (*p && *p != '=' && *p != ';' && *p != ',')
			p++;
		if (p - key == 1 && *key == 'r')
			dst = &r, have_r = true;
		else if (p - key == 1 && *key == 't')
			dst = &t, have_t = true;
		if (*p != '=')
			continue;
		p = skip_ws(p + 1);
		if (dst) {
			if (!parse_u64(&p, dst))
				return -EINVAL;
		} else {
			while (*p && *p != ';' && *p != ',')
				p++;
		}
	}
	if (*p && *p != ',')
		return -EINVAL;
	if (!have_r || !have_t)
		return -EINVAL;
	if (r != 0)
		return -ENOENT;
	*out = t >= UINT32_MAX - 1 ? UINT32_MAX : (unsigned int)t + 1;
	return 0;
}

/* --- Retry delay ---------------------------------------------------------- */

unsigned int hub_wait_ms(const struct hubfs_hub_opts *opts,
			 unsigned int attempt, long status,
			 const char *ratelimit, const char *retry_after,
			 uint32_t rnd)
{
	unsigned int s;
	uint64_t d;

	if (status == 429 &&
	    ((ratelimit && hub_parse_ratelimit(ratelimit, &s) == 0) ||
	     (retry_after && hub_parse_retry_after(retry_after, &s) == 0))) {
		if (s > opts->max_wait_s)
			s = opts->max_wait_s;
		return s > UINT32_MAX / 1000 ? UINT32_MAX : s * 1000u;
	}
	d = opts->backoff_ms;
	for (unsigned int i = 0; i < attempt && d < HUB_BACKOFF_CAP_MS; i++)
		d *= 2;
	if (d > HUB_BACKOFF_CAP_MS)
		d = HUB_BACKOFF_CAP_MS;
	/* Jitter: scale by a factor in [0.75, 1.25), then cap again. */
	d = d - d / 4 + ((d / 2) * rnd >> 32);
	if (d > HUB_BACKOFF_CAP_MS)
		d = HUB_BACKOFF_CAP_MS;
	return (unsigned int)d;
}
