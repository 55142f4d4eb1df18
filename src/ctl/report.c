/*
 * Reports on a running mount: status text and Prometheus metrics.
 *
 * DESIGN
 *
 * Both reports are formatted from one struct hubfs_fs_stats, taken by
 * the filesystem in one pass, so `hubfs status`, `hubfs metrics` and the
 * metrics file always agree.  Nothing here locks or allocates beyond the
 * output buffer, which has a cap set by the caller (an extended
 * attribute's value is at most 64 KiB).
 *
 * Metric names follow Prometheus conventions: a "hubfs_" prefix, base
 * units (bytes, seconds), "_total" on counters; every sample carries a
 * mountpoint label.  A counter counts from
 * the start of the daemon, so a restart shows as a reset, which
 * Prometheus's rate() handles.  Label values are escaped as the text
 * format requires (backslash, double quote, newline).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hubfs/report.h"

void hubfs_report_size(char *buf, size_t n, uint64_t bytes)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB",
					     "PiB" };
	double v = (double)bytes;
	int u = -1;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, n, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, n, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v,
			 units[u]);
}

static void format_duration(char *buf, size_t n, int64_t s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, n, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(buf, n, "%" PRId64 "m %02" PRId64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, n, "%" PRId64 "h %02" PRId64 "m", s / 3600,
			 s / 60 % 60);
	else
		snprintf(buf, n, "%" PRId64 "d %02" PRId64 "h", s / 86400,
			 s / 3600 % 24);
}

static double ratio(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

int hubfs_report_status(struct hubfs_buf *out,
			const struct hubfs_fs_stats *st, int64_t now)
{
	char up[32], rx[32], tx[32], used[32], max[32], rd[32], wr[32];
	uint64_t looked = st->cache.hits + st->cache.misses;
	int err;

	format_duration(up, sizeof(up), now - st->started);
	hubfs_report_size(rx, sizeof(rx), st->hub.bytes);
	hubfs_report_size(tx, sizeof(tx), st->hub.bytes_sent);
	hubfs_report_size(used, sizeof(used), st->cache.used_bytes);
	hubfs_report_size(max, sizeof(max), st->cache.max_bytes);
	hubfs_report_size(rd, sizeof(rd), st->read_bytes);
	hubfs_report_size(wr, sizeof(wr), st->write_bytes);
	err = hubfs_buf_printf(out,
		"repository: %s\n"
		"revision:   %s\n"
		"commit:     %s%s\n"
		"mode:       %s\n"
		"mountpoint: %s\n"
		"endpoint:   %s\n"
		"uptime:     %s\n"
		"hub:        %" PRIu64 " requests, %" PRIu64 " retries, %"
		PRIu64 " throttled (429), %s received, %s sent\n"
		"cache:      %s: %s of %s (%.0f%%), %" PRIu64 " blocks\n"
		"hit ratio:  %.1f%% (%" PRIu64 " hits, %" PRIu64 " misses), %"
		PRIu64 " blocks evicted, %" PRIu64 " found damaged\n"
		"reads:      %" PRIu64 " requests, %s\n",
		st->repo, st->revision ? st->revision : "(default branch)",
		st->commit, st->offline ? " (offline: the commit last seen)"
					: "",
		st->writable ? "read-write" : "read-only", st->mountpoint,
		st->endpoint, up, st->hub.requests, st->hub.retries,
		st->hub.throttled, rx, tx, st->cache_dir, used, max,
		ratio(st->cache.used_bytes, st->cache.max_bytes),
		st->cache.blocks, ratio(st->cache.hits, looked),
		st->cache.hits, st->cache.misses, st->cache.evicted,
		st->cache.corrupt, st->reads, rd);
	if (err || !st->writable)
		return err;
	err = hubfs_buf_printf(out,
		"writes:     %" PRIu64 " requests, %s\n"
		"commits:    %" PRIu64 " made, %" PRIu64 " failed\n"
		"pending:    %" PRIu64 " change%s",
		st->writes, wr, st->hub.commits, st->commit_failed,
		st->pending, st->pending == 1 ? "" : "s");
	if (!err && st->pending) {
		format_duration(up, sizeof(up), (int64_t)st->pending_age_s);
		err = hubfs_buf_printf(out, " for %s", up);
	}
	if (!err && st->conflicts)
		err = hubfs_buf_printf(out, ", %" PRIu64 " in conflict "
				       "(see hubfs pending)", st->conflicts);
	if (!err && st->commit_failing && st->commit_error)
		err = hubfs_buf_printf(out, "; the last %u attempt%s failed: "
				       "%s", st->commit_failing,
				       st->commit_failing == 1 ? "" : "s",
				       strerror(-st->commit_error));
	if (!err)
		err = hubfs_buf_puts(out, "\n");
	return err;
}

/* Append @s as a label value: \ " and newline escaped. */
static int put_label(struct hubfs_buf *out, const char *s)
{
	int err = 0;

	for (; *s && !err; s++) {
		if (*s == '\\')
			err = hubfs_buf_puts(out, "\\\\");
		else if (*s == '"')
			err = hubfs_buf_puts(out, "\\\"");
		else if (*s == '\n')
			err = hubfs_buf_puts(out, "\\n");
		else
			err = hubfs_buf_append(out, s, 1);
	}
	return err;
}

static int put_info(struct hubfs_buf *out, const struct hubfs_fs_stats *st,
		    const char *version)
{
	const char *labels[][2] = {
		{ "repo", st->repo },
		{ "revision", st->revision ? st->revision : "" },
		{ "commit", st->commit },
		{ "mountpoint", st->mountpoint },
		{ "version", version },
	};
	int err = hubfs_buf_puts(out,
		"# HELP hubfs_info The mounted repository; the value is 1.\n"
		"# TYPE hubfs_info gauge\n"
		"hubfs_info{");

	for (size_t i = 0; !err && i < sizeof(labels) / sizeof(labels[0]);
	     i++) {
		err = hubfs_buf_printf(out, "%s%s=\"", i ? "," : "",
				       labels[i][0]);
		if (!err)
			err = put_label(out, labels[i][1]);
		if (!err)
			err = hubfs_buf_puts(out, "\"");
	}
	return err ? err : hubfs_buf_puts(out, "} 1\n");
}

struct metric {
	const char *name;
	const char *type;	/* "counter" or "gauge" */
	const char *help;
	double value;
};

int hubfs_report_metrics(struct hubfs_buf *out,
			 const struct hubfs_fs_stats *st,
			 const char *version)
{
	const struct metric m[] = {
		{ "start_time_seconds", "gauge",
		  "Unix time the mount went live.", (double)st->started },
		{ "writable", "gauge", "1 if the mount takes writes.",
		  st->writable },
		{ "offline", "gauge",
		  "1 while the Hub cannot be reached and a remembered commit "
		  "is shown.", st->offline },
		{ "hub_requests_total", "counter",
		  "HTTP requests sent to the Hub, retries included.",
		  (double)st->hub.requests },
		{ "hub_retries_total", "counter",
		  "HTTP requests retried.", (double)st->hub.retries },
		{ "hub_throttled_total", "counter",
		  "HTTP 429 answers from the Hub.",
		  (double)st->hub.throttled },
		{ "hub_url_lookups_total", "counter",
		  "Requests made to find where a file's bytes are.",
		  (double)st->hub.locates },
		{ "hub_received_bytes_total", "counter",
		  "Response body bytes received.", (double)st->hub.bytes },
		{ "hub_sent_bytes_total", "counter",
		  "Request body bytes sent.", (double)st->hub.bytes_sent },
		{ "cache_used_bytes", "gauge",
		  "Block data in the cache directory, all processes.",
		  (double)st->cache.used_bytes },
		{ "cache_limit_bytes", "gauge", "The cache's size limit.",
		  (double)st->cache.max_bytes },
		{ "cache_blocks", "gauge", "Blocks in the cache directory.",
		  (double)st->cache.blocks },
		{ "cache_hits_total", "counter",
		  "Block lookups answered from the cache.",
		  (double)st->cache.hits },
		{ "cache_misses_total", "counter",
		  "Block lookups that had to fetch.",
		  (double)st->cache.misses },
		{ "cache_evicted_blocks_total", "counter",
		  "Blocks evicted by this mount.",
		  (double)st->cache.evicted },
		{ "cache_damaged_blocks_total", "counter",
		  "Cached blocks found damaged and fetched again.",
		  (double)st->cache.corrupt },
		{ "read_requests_total", "counter",
		  "Read requests from applications.", (double)st->reads },
		{ "read_bytes_total", "counter",
		  "Bytes returned to applications' reads.",
		  (double)st->read_bytes },
		{ "write_requests_total", "counter",
		  "Write requests from applications.", (double)st->writes },
		{ "write_bytes_total", "counter",
		  "Bytes written by applications.",
		  (double)st->write_bytes },
		{ "commits_total", "counter", "Commits made on the Hub.",
		  (double)st->hub.commits },
		{ "commit_failures_total", "counter",
		  "Commit attempts that failed (the changes stay staged).",
		  (double)st->commit_failed },
		{ "pending_changes", "gauge",
		  "Changes staged and not committed yet.",
		  (double)st->pending },
		{ "pending_age_seconds", "gauge",
		  "How long changes have been pending; 0 when none are.",
		  st->pending_age_s },
		{ "conflicts", "gauge",
		  "Paths whose commit conflicts with an upstream change.",
		  (double)st->conflicts },
		{ "uploads_at_close_total", "counter",
		  "LFS objects uploaded when their file was closed.",
		  (double)st->uploads_at_close },
		{ "uploads_at_close_bytes_total", "counter",
		  "Bytes of the LFS objects uploaded at close.",
		  (double)st->uploads_at_close_bytes },
		{ "uploads_at_close_stopped_total", "counter",
		  "Uploads at close stopped by a change, or failed (the "
		  "commit sends those files).",
		  (double)st->uploads_at_close_stopped },
	};
	int err = put_info(out, st, version);

	/* Every sample names its mount, so the files of several mounts can
	 * sit side by side in one textfile collector directory. */
	for (size_t i = 0; !err && i < sizeof(m) / sizeof(m[0]); i++) {
		err = hubfs_buf_printf(out,
				       "# HELP hubfs_%s %s\n"
				       "# TYPE hubfs_%s %s\n"
				       "hubfs_%s{mountpoint=\"",
				       m[i].name, m[i].help, m[i].name,
				       m[i].type, m[i].name);
		if (!err)
			err = put_label(out, st->mountpoint);
		if (!err)
			err = hubfs_buf_printf(out, "\"} %.15g\n", m[i].value);
	}
	return err;
}
