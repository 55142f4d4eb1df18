/*
 * Fuzz the repo-info, refs and error-body parsers (src/hub/parse.c).
 *
 * Input: any bytes, given to each parser in turn.  Checks: a revision is
 * only returned with a 40-digit lowercase commit id; every ref passed on
 * has a non-empty name without control characters, a valid commit, and
 * the "refs/pr/" or "refs/convert/" prefix its kind requires; an error
 * message is NUL-terminated printable text.  A broken promise aborts.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "hub/hub_int.h"
#include "hubfs/log.h"

static void check_commit(const char *s)
{
	if (strlen(s) != 40)
		abort();
	for (size_t i = 0; i < 40; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isxdigit(c) || isupper(c))
			abort();
	}
}

static int check_ref(void *arg, const struct hubfs_hub_ref *r)
{
	size_t len = strlen(r->name);

	(void)arg;
	if (len == 0 || len > HUBFS_PATH_MAX + 64)
		abort();
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)r->name[i] < 0x20 || r->name[i] == 0x7f)
			abort();
	}
	if (r->kind == HUBFS_REF_PR && strncmp(r->name, "refs/pr/", 8) != 0)
		abort();
	if (r->kind == HUBFS_REF_CONVERT &&
	    strncmp(r->name, "refs/convert/", 13) != 0)
		abort();
	check_commit(r->commit);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct hubfs_hub_revision rev;
	char msg[64];

	hubfs_log_set_level(LOG_ERR);
	if (hub_parse_revision(text, size, &rev) == 0)
		check_commit(rev.commit);
	hub_parse_refs(text, size, true, check_ref, NULL);
	hub_parse_refs(text, size, false, check_ref, NULL);
	if (hub_parse_error_body(text, size, msg, sizeof(msg)) == 0) {
		for (size_t i = 0; msg[i]; i++) {
			if ((unsigned char)msg[i] < 0x20 ||
			    (unsigned char)msg[i] >= 0x7f)
				abort();
		}
	}
	return 0;
}
