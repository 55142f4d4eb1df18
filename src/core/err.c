/*
 * Thread-local error detail.
 *
 * DESIGN
 *
 * The error value is always the -errno a function returns; this module
 * only holds the sentence that explains it ("uid=70000000000: out of
 * range").  Each thread has its own fixed buffer, so setting a message
 * cannot fail, allocate or race with another thread.  A message longer
 * than HUBFS_ERR_MAX - 1 bytes is cut.
 *
 * Deeper layers set the detail and return; they do not log.  The layer
 * that reports the error reads it once (see include/hubfs/err.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hubfs/err.h"

static _Thread_local char err_msg[HUBFS_ERR_MAX];
static _Thread_local bool err_present;

void hubfs_err_set(const char *fmt, ...)
{
	char tmp[HUBFS_ERR_MAX];
	int saved_errno = errno;
	va_list ap;

	/* Format aside first: an argument may be err_msg itself. */
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	memcpy(err_msg, tmp, sizeof(err_msg));
	err_present = true;
	errno = saved_errno;
}

const char *hubfs_err_get(void)
{
	return err_present ? err_msg : NULL;
}

void hubfs_err_clear(void)
{
	err_present = false;
	err_msg[0] = '\0';
}

const char *hubfs_err_or(const char *fallback)
{
	const char *detail = hubfs_err_get();

	return detail ? detail : fallback;
}
