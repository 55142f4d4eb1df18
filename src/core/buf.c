/*
 * Capped byte buffer.
 *
 * DESIGN
 *
 * Invariants, true between calls:
 *   - data == NULL  <=>  alloc == 0, and then len == 0;
 *   - otherwise len < alloc and data[len] == '\0', so the contents can
 *     always be read as a string (the NUL is not counted against cap);
 *   - len <= cap.
 *
 * Growth doubles the allocation, clamped to cap + 1, so a buffer never
 * holds more than one byte of memory beyond its cap.  Every check is
 * written so that no size computation can overflow: a request is compared
 * against the room left (cap - len), never added to len first.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hubfs/buf.h"
#include "hubfs/mem.h"

#define BUF_MIN_ALLOC 64

/* Make room for @n more bytes plus the NUL.  Returns 0, -EFBIG, -ENOMEM. */
static int buf_reserve(struct hubfs_buf *buf, size_t n)
{
	size_t need, want;
	char *data;

	if (n > buf->cap - buf->len)
		return -EFBIG;
	need = buf->len + n + 1;	/* <= cap + 1; cap + 1 checked below */
	if (need == 0)
		return -EFBIG;
	if (need <= buf->alloc)
		return 0;
	want = buf->alloc ? buf->alloc : BUF_MIN_ALLOC;
	while (want < need && want <= SIZE_MAX / 2)
		want *= 2;
	if (want < need)
		want = need;
	if (buf->cap < SIZE_MAX && want > buf->cap + 1)
		want = buf->cap + 1;
	data = hubfs_realloc(buf->data, want);
	if (!data)
		return -ENOMEM;
	if (!buf->data)
		data[0] = '\0';
	buf->data = data;
	buf->alloc = want;
	return 0;
}

int hubfs_buf_append(struct hubfs_buf *buf, const void *data, size_t n)
{
	int err = buf_reserve(buf, n);

	if (err)
		return err;
	if (n)
		memcpy(buf->data + buf->len, data, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
	return 0;
}

int hubfs_buf_puts(struct hubfs_buf *buf, const char *s)
{
	return hubfs_buf_append(buf, s, strlen(s));
}

int hubfs_buf_printf(struct hubfs_buf *buf, const char *fmt, ...)
{
	va_list ap;
	int len, err;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0)
		return -EINVAL;
	err = buf_reserve(buf, (size_t)len);
	if (err)
		return err;
	va_start(ap, fmt);
	vsnprintf(buf->data + buf->len, (size_t)len + 1, fmt, ap);
	va_end(ap);
	buf->len += (size_t)len;
	return 0;
}

const char *hubfs_buf_str(const struct hubfs_buf *buf)
{
	return buf->data ? buf->data : "";
}

void hubfs_buf_reset(struct hubfs_buf *buf)
{
	buf->len = 0;
	if (buf->data)
		buf->data[0] = '\0';
}

int hubfs_buf_detach(char **out, struct hubfs_buf *buf)
{
	char *s = buf->data ? buf->data : hubfs_strdup("");

	if (!s)
		return -ENOMEM;
	*out = s;
	buf->data = NULL;
	buf->len = 0;
	buf->alloc = 0;
	return 0;
}

void hubfs_buf_free(struct hubfs_buf *buf)
{
	if (!buf)
		return;
	hubfs_free(buf->data);
	buf->data = NULL;
	buf->len = 0;
	buf->alloc = 0;
}
