/*
 * Fuzz the header and URL helpers (src/hub/parse.c): Link, Content-Range,
 * Retry-After, RateLimit, dates, path rules and percent-encoding.
 *
 * Input: one header value (up to the first NUL).  Checks: a parsed
 * Content-Range is consistent (first <= last < total); a "next" link is
 * a non-empty substring of the input; a date parses the same twice; the
 * encoders emit only unreserved characters, '%XX' and (for paths) '/',
 * and decode back to the input.  A broken promise aborts.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "hub/hub_int.h"
#include "hubfs/mem.h"

static int unhex(char c)
{
	return isdigit((unsigned char)c) ? c - '0' : c - 'A' + 10;
}

static void check_encoding(const char *in, bool path)
{
	struct hubfs_buf b = HUBFS_BUF_INIT(3 * strlen(in) + 1);
	const char *s;
	size_t j = 0;
	int err = path ? hub_url_put_path(&b, in) : hub_url_put_segment(&b, in);

	if (err) {
		hubfs_buf_free(&b);
		if (err != -ENOMEM)
			abort();
		return;
	}
	s = hubfs_buf_str(&b);
	for (size_t i = 0; s[i]; j++) {
		char c;

		if (s[i] == '%') {
			if (!isxdigit((unsigned char)s[i + 1]) ||
			    !isxdigit((unsigned char)s[i + 2]))
				abort();
			c = (char)(unhex(s[i + 1]) * 16 + unhex(s[i + 2]));
			i += 3;
		} else {
			c = s[i++];
			if (!isalnum((unsigned char)c) && !strchr("-._~", c) &&
			    !(path && c == '/'))
				abort();
		}
		if (in[j] != c)
			abort();
	}
	if (in[j])
		abort();
	hubfs_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *next = NULL;
	struct hub_content_range cr;
	unsigned int secs;
	int64_t t1, t2;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	if (hub_link_next(&next, text) == 0 && next) {
		if (!*next || !strstr(text, next))
			abort();
		hubfs_free(next);
	}
	if (hub_parse_content_range(text, &cr) == 0) {
		if (!cr.unsatisfied && cr.first > cr.last)
			abort();
		if (!cr.unsatisfied && cr.total_known && cr.last >= cr.total)
			abort();
		if (cr.unsatisfied && !cr.total_known)
			abort();
	}
	hub_parse_retry_after(text, &secs);
	hub_parse_ratelimit(text, &secs);
	if (hub_parse_time(text, &t1) == 0 &&
	    (hub_parse_time(text, &t2) != 0 || t1 != t2))
		abort();
	hub_path_invalid(text, size);
	check_encoding(text, false);
	check_encoding(text, true);
	free(text);
	return 0;
}
