/*
 * Reports on a running mount, from a hubfs_fs_stats snapshot: the status
 * text a person reads (`hubfs status`) and the Prometheus text exposition
 * format (`hubfs metrics`, metrics_file=).  Pure functions: they format
 * what they are given and touch nothing else.
 */
#ifndef HUBFS_REPORT_H
#define HUBFS_REPORT_H

#include <stdint.h>

#include "hubfs/buf.h"
#include "hubfs/fs.h"

/*
 * Append the status of @st to @out as "key: value" lines.  @now is the
 * current Unix time (for the uptime).  0, -EFBIG or -ENOMEM.
 */
int hubfs_report_status(struct hubfs_buf *out,
			const struct hubfs_fs_stats *st, int64_t now);

/*
 * Append @st as Prometheus text (version 0.0.4): every metric with its
 * HELP and TYPE lines, names prefixed "hubfs_".  @version is hubfs's.
 * 0, -EFBIG or -ENOMEM.
 */
int hubfs_report_metrics(struct hubfs_buf *out,
			 const struct hubfs_fs_stats *st,
			 const char *version);

/* @bytes as "1.5 GiB", "12 KiB" or "512 B", into @buf of @n bytes. */
void hubfs_report_size(char *buf, size_t n, uint64_t bytes);

#endif /* HUBFS_REPORT_H */
