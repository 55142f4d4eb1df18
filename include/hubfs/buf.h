/*
 * hubfs capped byte buffer.
 *
 * A growable buffer whose maximum size is fixed when it is created.  Every
 * buffer that holds data from outside (network bodies, files, options)
 * gets a cap, so a hostile or broken peer fails with -EFBIG instead of
 * exhausting memory.
 *
 *	struct hubfs_buf body = HUBFS_BUF_INIT(64 * 1024);
 *	err = hubfs_buf_append(&body, data, len);
 *	...
 *	hubfs_buf_free(&body);
 *
 * The struct is transparent so it can live on the stack; treat every
 * field as read-only and change it only through these functions.
 */
#ifndef HUBFS_BUF_H
#define HUBFS_BUF_H

#include <stddef.h>

struct hubfs_buf {
	char *data;	/* NULL until the first append; then NUL-terminated */
	size_t len;	/* bytes held, not counting the terminating NUL */
	size_t alloc;	/* bytes allocated for data */
	size_t cap;	/* most bytes len may reach */
};

/* An empty buffer that may grow to @max_bytes bytes. */
#define HUBFS_BUF_INIT(max_bytes) \
	{ .data = NULL, .len = 0, .alloc = 0, .cap = (max_bytes) }

/*
 * Append @n bytes from @data.  Returns 0, -EFBIG if len would exceed the
 * cap, or -ENOMEM.  On error the buffer is unchanged.
 */
int hubfs_buf_append(struct hubfs_buf *buf, const void *data, size_t n);

/* Append the NUL-terminated string @s; errors as hubfs_buf_append(). */
int hubfs_buf_puts(struct hubfs_buf *buf, const char *s);

/*
 * Append printf-style formatted text.  Returns 0, -EFBIG, -ENOMEM, or
 * -EINVAL for a format error.  On error the buffer is unchanged.
 */
int hubfs_buf_printf(struct hubfs_buf *buf, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The contents as a string: "" while empty, never NULL.  Borrowed. */
const char *hubfs_buf_str(const struct hubfs_buf *buf);

/* Empty the buffer, keeping its memory and its cap. */
void hubfs_buf_reset(struct hubfs_buf *buf);

/*
 * Hand the contents to the caller as a NUL-terminated string, which the
 * caller frees with hubfs_free(); the buffer is left empty.  An empty
 * buffer yields an allocated "".  Returns 0 or -ENOMEM; *out is set only
 * on success.
 */
int hubfs_buf_detach(char **out, struct hubfs_buf *buf);

/* Release the memory and leave the buffer empty.  Accepts NULL. */
void hubfs_buf_free(struct hubfs_buf *buf);

#endif /* HUBFS_BUF_H */
