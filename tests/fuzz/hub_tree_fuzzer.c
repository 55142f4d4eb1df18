/*
 * Fuzz the tree page parser (src/hub/parse.c: hub_parse_tree).
 *
 * Input: one tree page, as the Hub's /tree/ route would send it.  The
 * callback checks the parser's promise for every entry it passes on: the
 * path obeys every rule of hub.h (checked again here, independently, by
 * its length and components), the ids are lowercase hex of the right
 * length, the size is at most HUBFS_SIZE_MAX.  A broken promise aborts,
 * which is the failure the fuzzer reports.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "hub/hub_int.h"
#include "hubfs/log.h"

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

static void check_path(const char *p)
{
	size_t len = strlen(p), start = 0;

	if (len == 0 || len > HUBFS_PATH_MAX || p[0] == '/')
		abort();
	for (size_t i = 0; i <= len; i++) {
		if (i < len && p[i] != '/')
			continue;
		if (i == start || i - start > HUBFS_NAME_MAX ||
		    (i - start == 1 && p[start] == '.') ||
		    (i - start == 2 && p[start] == '.' && p[start + 1] == '.'))
			abort();
		start = i + 1;
	}
}

static int check_entry(void *arg, const struct hubfs_hub_entry *e)
{
	size_t *count = arg;

	check_path(e->path);
	check_hex(e->oid, 40);
	if (e->type != HUBFS_ENTRY_FILE && e->type != HUBFS_ENTRY_DIR)
		abort();
	if (e->size > HUBFS_SIZE_MAX)
		abort();
	if (e->lfs)
		check_hex(e->sha256, 64);
	else if (e->sha256[0])
		abort();
	if (e->type == HUBFS_ENTRY_DIR && (e->lfs || e->size))
		abort();
	(*count)++;
	/* Stop early now and then, as a caller may. */
	return *count == 1000 ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t count = 0, skipped = 0;
	int err;

	hubfs_log_set_level(LOG_ERR);	/* skipped entries are warnings */
	err = hub_parse_tree((const char *)data, size, check_entry, &count,
			     &skipped);
	if (err != 0 && err != 1 && err != -EIO)
		abort();
	return 0;
}
