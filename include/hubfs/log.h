/*
 * hubfs logging.
 *
 * Levels are the syslog(3) levels, LOG_EMERG (0) to LOG_DEBUG (7).  There
 * is one sink: stderr while hubfs runs in the foreground, syslog once
 * hubfs_log_to_syslog() has been called.  All functions are thread-safe.
 *
 * Log an error once, where it is reported, with its errno and the detail
 * from hubfs_err_get(); deeper layers set detail and do not log.  Never
 * log a token or a signed URL: pass URLs through hubfs_log_redact().
 */
#ifndef HUBFS_LOG_H
#define HUBFS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

/*
 * Log a printf-style message at @level.  The level is checked before the
 * arguments are evaluated, so a disabled debug line costs one call and
 * formats nothing.  The source file and line are passed to the sink.
 */
#define hlog(level, ...)                                                   \
	do {                                                               \
		if (hubfs_log_enabled(level))                              \
			hubfs_log_write((level), __FILE__, __LINE__,       \
					__VA_ARGS__);                      \
	} while (0)

/*
 * Show messages up to and including @level (LOG_EMERG..LOG_DEBUG; values
 * outside are clamped).  The default is LOG_NOTICE.
 */
void hubfs_log_set_level(int level);

/* True if a message at @level would be written. */
bool hubfs_log_enabled(int level);

/*
 * Send all further messages to syslog(3) with identity @ident and facility
 * LOG_DAEMON instead of stderr.  @ident is borrowed for the life of the
 * process (pass a string literal).
 */
void hubfs_log_to_syslog(const char *ident);

/*
 * If stderr is the journal's stream ($JOURNAL_STREAM matches it), start
 * every stderr line with "<LEVEL>" so the journal records its priority.
 */
void hubfs_log_detect_journal(void);

/*
 * Write one message unconditionally; use hlog() instead.  @file may be a
 * full path; only its last component is shown.  A message is cut at about
 * 1 KiB.  errno is preserved.
 */
void hubfs_log_write(int level, const char *file, int line,
		     const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* hubfs_log_write() taking a va_list. */
void hubfs_log_vwrite(int level, const char *file, int line,
		      const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/*
 * Copy @url into @dst (@n bytes) with secrets removed: a query string
 * (everything from '?' to the next whitespace) becomes "?[redacted]",
 * user information in "scheme://user:pass@host" becomes "[redacted]@",
 * and a Hub token ("hf_" plus at least 8 letters or digits, not preceded
 * by a letter, digit or '_') becomes "hf_[redacted]".  @url may be any
 * text, not only a single URL.
 *
 * Returns 0, or -ENOSPC if the result was cut to fit.  Unlike other hubfs
 * functions, @dst holds a NUL-terminated string even on -ENOSPC (for
 * @n > 0), so a truncated line can still be logged; no secret is ever
 * partly copied.
 */
int hubfs_log_redact(char *dst, size_t n, const char *url);

#endif /* HUBFS_LOG_H */
