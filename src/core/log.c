/*
 * Logging: one sink, syslog levels, redaction.
 *
 * DESIGN
 *
 * The threshold is an atomic int read without a lock, because hlog()
 * checks it on every call, including disabled debug lines on hot paths.
 * The sink (stderr or syslog) changes at most once, when the daemon
 * detaches; it is guarded by log_lock, which is also held while a line is
 * written so that lines from different threads never interleave and never
 * go to a sink that is being switched.  A message is formatted into a
 * stack buffer before the lock is taken, so the lock is never held while
 * user formatting runs.
 *
 * Under a service manager whose journal reads stderr ($JOURNAL_STREAM
 * names stderr's device and inode), each line starts with "<N>", the
 * syslog level, which the journal takes as the line's priority.
 *
 * The source location reaches the sink on every call but is shown only
 * when the threshold is LOG_DEBUG: users see clean lines, debug output
 * says where each line came from.
 *
 * Redaction is a single pass over the input with three rules (see
 * hubfs_log_redact() in the header).  It works on any text, so a whole
 * request line can be passed through it, and it copies a secret either
 * wholly replaced or not at all, even when the output is cut short.
 */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hubfs/lock.h"
#include "hubfs/log.h"

#define LOG_LINE_MAX 1024
#define REDACTED "[redacted]"
/* Letters or digits after "hf_" that make a word look like a token. */
#define TOKEN_MIN_TAIL 8

static atomic_int log_level = LOG_NOTICE;
static struct hubfs_mutex log_lock = HUBFS_MUTEX_INIT;
static bool log_syslog HUBFS_GUARDED_BY(log_lock);
static bool log_journal HUBFS_GUARDED_BY(log_lock);

static const char *const level_names[] = {
	[LOG_EMERG] = "emergency", [LOG_ALERT] = "alert",
	[LOG_CRIT] = "critical",   [LOG_ERR] = "error",
	[LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",	   [LOG_DEBUG] = "debug",
};

static int clamp_level(int level)
{
	if (level < LOG_EMERG)
		return LOG_EMERG;
	if (level > LOG_DEBUG)
		return LOG_DEBUG;
	return level;
}

void hubfs_log_set_level(int level)
{
	atomic_store(&log_level, clamp_level(level));
}

bool hubfs_log_enabled(int level)
{
	return level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void hubfs_log_to_syslog(const char *ident)
{
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	hubfs_mutex_lock(&log_lock);
	log_syslog = true;
	hubfs_mutex_unlock(&log_lock);
}

void hubfs_log_detect_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	bool yes;

	yes = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	      fstat(STDERR_FILENO, &st) == 0 &&
	      (unsigned long long)st.st_dev == dev &&
	      (unsigned long long)st.st_ino == ino;
	hubfs_mutex_lock(&log_lock);
	log_journal = yes;
	hubfs_mutex_unlock(&log_lock);
}

void hubfs_log_vwrite(int level, const char *file, int line,
		      const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX], where[128] = "";
	int saved_errno = errno;
	const char *base = strrchr(file, '/');
	size_t len;

	level = clamp_level(level);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	while (len && msg[len - 1] == '\n')
		msg[--len] = '\0';
	if (hubfs_log_enabled(LOG_DEBUG))
		snprintf(where, sizeof(where), " (%s:%d)",
			 base ? base + 1 : file, line);

	hubfs_mutex_lock(&log_lock);
	if (log_syslog)
		syslog(level, "%s%s", msg, where);
	else if (log_journal)
		fprintf(stderr, "<%d>hubfs: %s: %s%s\n", level,
			level_names[level], msg, where);
	else
		fprintf(stderr, "hubfs: %s: %s%s\n", level_names[level], msg,
			where);
	hubfs_mutex_unlock(&log_lock);
	errno = saved_errno;
}

void hubfs_log_write(int level, const char *file, int line,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hubfs_log_vwrite(level, file, line, fmt, ap);
	va_end(ap);
}

/* Bounded output for redaction; remembers whether anything was cut. */
struct out {
	char *dst;
	size_t n, len;
	bool cut;
};

/* Append @len bytes whole, or nothing at all if they do not fit. */
static void out_put(struct out *o, const char *s, size_t len)
{
	if (o->cut || o->n - 1 - o->len < len) {
		o->cut = true;
		return;
	}
	memcpy(o->dst + o->len, s, len);
	o->len += len;
}

static bool is_word_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/*
 * Length of the token at @s ("hf_" and its letters and digits), or 0 if
 * @s does not start one.  @prev is the character before @s, or '\0'.
 */
static size_t token_len(const char *s, char prev)
{
	size_t tail = 0;

	if (strncmp(s, "hf_", 3) != 0 || is_word_char(prev))
		return 0;
	while (isalnum((unsigned char)s[3 + tail]))
		tail++;
	return tail >= TOKEN_MIN_TAIL ? 3 + tail : 0;
}

/*
 * Length of "user:pass@" right after a "://" at @s, or 0 if the authority
 * has no user information.  The authority ends at '/', '?', '#' or
 * whitespace.
 */
static size_t userinfo_len(const char *s)
{
	size_t i;

	for (i = 0; s[i] && !strchr("/?#", s[i]); i++) {
		if (isspace((unsigned char)s[i]))
			break;
		if (s[i] == '@')
			return i + 1;
	}
	return 0;
}

/* Length of the query run starting at the '?' at @s, '?' included. */
static size_t query_len(const char *s)
{
	size_t i = 1;

	while (s[i] && !isspace((unsigned char)s[i]))
		i++;
	return i;
}

int hubfs_log_redact(char *dst, size_t n, const char *url)
{
	struct out o = { .dst = dst, .n = n };
	size_t i = 0, skip;

	if (n == 0)
		return -ENOSPC;
	while (url[i] && !o.cut) {
		if (url[i] == '?' && (skip = query_len(url + i)) > 1) {
			out_put(&o, "?" REDACTED, strlen("?" REDACTED));
		} else if (strncmp(url + i, "://", 3) == 0 &&
			   (skip = userinfo_len(url + i + 3))) {
			out_put(&o, "://" REDACTED "@",
				strlen("://" REDACTED "@"));
			skip += 3;
		} else if ((skip = token_len(url + i, i ? url[i - 1] : '\0'))) {
			out_put(&o, "hf_" REDACTED, strlen("hf_" REDACTED));
		} else {
			skip = 1;
			out_put(&o, url + i, 1);
		}
		i += skip;
	}
	dst[o.len] = '\0';
	return o.cut ? -ENOSPC : 0;
}
