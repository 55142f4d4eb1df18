/*
 * The service manager's readiness protocol (sd_notify(3)), spoken
 * directly: one datagram per message to the AF_UNIX socket named by
 * $NOTIFY_SOCKET ("/path" or "@abstract").  Without that variable every
 * call does nothing and returns 0, so callers never need to ask whether
 * they run under a service manager.
 *
 * Messages are newline-separated KEY=VALUE lines: "READY=1",
 * "STOPPING=1", "STATUS=free text", "MAINPID=N", "EXTEND_TIMEOUT_USEC=N".
 */
#ifndef HUBFS_NOTIFY_H
#define HUBFS_NOTIFY_H

/* Send @state.  0, or -errno (nobody needs to act on a failure). */
int hubfs_notify(const char *state);

/* hubfs_notify() of a formatted message, cut at 1 KiB. */
int hubfs_notifyf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#endif /* HUBFS_NOTIFY_H */
