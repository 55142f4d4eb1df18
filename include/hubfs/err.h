/*
 * hubfs error detail.
 *
 * Functions return 0 or -errno; errno is the only value FUSE can carry to
 * a user.  The human-readable reason travels separately, as one line of
 * thread-local text set at the point of failure and read by whoever
 * reports the error (the fs boundary, or main at startup).
 */
#ifndef HUBFS_ERR_H
#define HUBFS_ERR_H

/* Longest detail kept, including the terminating NUL; longer is cut. */
#define HUBFS_ERR_MAX 512

/*
 * Set this thread's detail message from a printf-style format.  Replaces
 * any previous message; the string returned by hubfs_err_get() may itself
 * be passed as an argument.  Never changes errno.
 */
void hubfs_err_set(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/*
 * This thread's detail message, or NULL if none is set.  The string is
 * borrowed: it stays valid until the next hubfs_err_set() or
 * hubfs_err_clear() on this thread.
 */
const char *hubfs_err_get(void);

/* This thread's detail message, or @fallback if none is set. */
const char *hubfs_err_or(const char *fallback);

/* Forget this thread's detail message. */
void hubfs_err_clear(void);

#endif /* HUBFS_ERR_H */
