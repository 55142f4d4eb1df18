/*
 * HTTP answers and transport failures to errno: the one table.
 *
 * DESIGN
 *
 * Every failure the Hub client reports goes through one of the two
 * tables below, which give the errno, whether the failure is worth a
 * retry, and the sentence the user sees (hubfs_err_get()).  Nothing else
 * in hubfs maps an HTTP status; a new case is a new row.
 *
 * Rows are tried in order and the first match wins, so specific rows (an
 * X-Error-Code, an exact X-Error-Message, an answer from a CDN) come
 * before the plain status rows.  The order follows huggingface_hub's
 * hf_raise_for_status (utils/_http.py):
 *   - a 401 saying "Invalid credentials in Authorization header" is a
 *     refused token, whatever else it says;
 *   - RepoNotFound, GatedRepo, RevisionNotFound and EntryNotFound are
 *     matched on the code whatever the status;
 *   - on a write (preupload, LFS batch, commit), any other 401 or 403
 *     means the token may not write there: the repository was found, or
 *     the code above would have said otherwise;
 *   - any other 401 means "not found, or private and you are not allowed":
 *     the Hub does not tell these apart, and neither do we;
 *   - a signed CDN URL that is refused (expired) or gone is -EACCES or
 *     -ENOENT; the read path re-locates once before it gets here, an
 *     upload fails.
 * Statuses not in the table: other 5xx are retried server errors
 * (-EIO); anything else is a final -EIO.
 *
 * Text from the server is shown only after hub_printable() and
 * hubfs_log_redact(), so neither control characters nor anything that
 * looks like a token or a signed query string reaches a message.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hub_int.h"
#include "hubfs/err.h"
#include "hubfs/log.h"

enum hub_msg {
	MSG_TOKEN,
	MSG_REPO,
	MSG_GATED,
	MSG_REVISION,
	MSG_ENTRY,
	MSG_DISABLED,
	MSG_CDN_REFUSED,
	MSG_CDN_MISSING,
	MSG_BAD_REQUEST,
	MSG_DENIED,
	MSG_NO_WRITE,
	MSG_NOT_FOUND,
	MSG_TIMEOUT,
	MSG_CONFLICT,
	MSG_STALE,
	MSG_TOO_LARGE,
	MSG_RANGE,
	MSG_RATE,
	MSG_SERVER,
	MSG_OTHER,
};

enum hub_from {
	FROM_ANY,
	FROM_HUB,	/* only an answer from the endpoint's origin */
	FROM_CDN,	/* only an answer from another origin */
	FROM_HUB_WRITE,	/* only the endpoint's answer to a write */
};

static const struct hub_errmap {
	long status;		/* 0: any status */
	const char *code;	/* X-Error-Code; NULL: any */
	const char *message;	/* X-Error-Message, exactly; NULL: any */
	enum hub_from from;
	int err;
	bool retry;
	enum hub_msg msg;
} hub_errmap[] = {
	{ 401, NULL, "Invalid credentials in Authorization header", FROM_HUB,
	  -EACCES, false, MSG_TOKEN },
	{ 0, "RepoNotFound", NULL, FROM_HUB, -ENOENT, false, MSG_REPO },
	{ 0, "GatedRepo", NULL, FROM_HUB, -EACCES, false, MSG_GATED },
	{ 0, "RevisionNotFound", NULL, FROM_HUB, -ENOENT, false,
	  MSG_REVISION },
	{ 0, "EntryNotFound", NULL, FROM_HUB, -ENOENT, false, MSG_ENTRY },
	{ 403, NULL, "Access to this resource is disabled.", FROM_HUB,
	  -EACCES, false, MSG_DISABLED },
	{ 401, NULL, NULL, FROM_CDN, -EACCES, false, MSG_CDN_REFUSED },
	{ 403, NULL, NULL, FROM_CDN, -EACCES, false, MSG_CDN_REFUSED },
	{ 404, NULL, NULL, FROM_CDN, -ENOENT, false, MSG_CDN_MISSING },
	{ 410, NULL, NULL, FROM_CDN, -ENOENT, false, MSG_CDN_MISSING },
	{ 400, NULL, NULL, FROM_ANY, -EINVAL, false, MSG_BAD_REQUEST },
	{ 401, NULL, NULL, FROM_HUB_WRITE, -EACCES, false, MSG_NO_WRITE },
	{ 403, NULL, NULL, FROM_HUB_WRITE, -EACCES, false, MSG_NO_WRITE },
	{ 401, NULL, NULL, FROM_HUB, -ENOENT, false, MSG_REPO },
	{ 403, NULL, NULL, FROM_HUB, -EACCES, false, MSG_DENIED },
	{ 404, NULL, NULL, FROM_HUB, -ENOENT, false, MSG_NOT_FOUND },
	{ 408, NULL, NULL, FROM_ANY, -ETIMEDOUT, true, MSG_TIMEOUT },
	{ 409, NULL, NULL, FROM_ANY, -EEXIST, false, MSG_CONFLICT },
	{ 410, NULL, NULL, FROM_HUB, -ENOENT, false, MSG_NOT_FOUND },
	{ 412, NULL, NULL, FROM_ANY, -ESTALE, false, MSG_STALE },
	{ 413, NULL, NULL, FROM_ANY, -EFBIG, false, MSG_TOO_LARGE },
	{ 416, NULL, NULL, FROM_ANY, -EIO, false, MSG_RANGE },
	{ 429, NULL, NULL, FROM_ANY, -EAGAIN, true, MSG_RATE },
	{ 500, NULL, NULL, FROM_ANY, -EIO, true, MSG_SERVER },
	{ 502, NULL, NULL, FROM_ANY, -EIO, true, MSG_SERVER },
	{ 503, NULL, NULL, FROM_ANY, -EIO, true, MSG_SERVER },
	{ 504, NULL, NULL, FROM_ANY, -ETIMEDOUT, true, MSG_TIMEOUT },
};

static bool row_matches(const struct hub_errmap *row,
			const struct hub_errctx *ctx, long status,
			const char *code, const char *message)
{
	if (row->status && row->status != status)
		return false;
	if (row->code && strcmp(row->code, code) != 0)
		return false;
	if (row->message && strcmp(row->message, message) != 0)
		return false;
	if ((row->from == FROM_HUB || row->from == FROM_HUB_WRITE) &&
	    ctx->cdn)
		return false;
	if (row->from == FROM_CDN && !ctx->cdn)
		return false;
	if (row->from == FROM_HUB_WRITE && !ctx->write)
		return false;
	return true;
}

static const char *or_default(const char *s, const char *dflt)
{
	return s && *s ? s : dflt;
}

/* Set the detail for @msg; @said is the server's message, cleaned. */
static void set_detail(enum hub_msg msg, const struct hub_errctx *ctx,
		       long status, const char *said)
{
	const char *repo = or_default(ctx->repo, "the repository");
	const char *rev = or_default(ctx->rev, "(default branch)");
	const char *who = !ctx->cdn ? "the Hub"
			  : ctx->write ? "the upload server"
				       : "the download server";
	const char *sep = *said ? ": " : "";

	switch (msg) {
	case MSG_TOKEN:
		hubfs_err_set("the token was refused by the Hub (%s)",
			      or_default(said, "invalid credentials"));
		break;
	case MSG_REPO:
		hubfs_err_set("repository %s not found (or it is private and "
			      "no valid token was given)", repo);
		break;
	case MSG_GATED:
		hubfs_err_set("repository %s is gated: this token has not "
			      "been granted access (or no token was given)",
			      repo);
		break;
	case MSG_REVISION:
		hubfs_err_set("revision %s not found in %s", rev, repo);
		break;
	case MSG_ENTRY:
		if (ctx->path)
			hubfs_err_set("%s not found in %s at revision %s",
				      ctx->path, repo, rev);
		else
			hubfs_err_set("path not found in %s at revision %s",
				      repo, rev);
		break;
	case MSG_DISABLED:
		hubfs_err_set("repository %s is disabled", repo);
		break;
	case MSG_CDN_REFUSED:
		hubfs_err_set("%s refused the signed URL (HTTP %ld%s%s)", who,
			      status, sep, said);
		break;
	case MSG_CDN_MISSING:
		hubfs_err_set("%s has no such object (HTTP %ld%s%s)", who,
			      status, sep, said);
		break;
	case MSG_BAD_REQUEST:
		hubfs_err_set("%s refused the request as invalid "
			      "(HTTP 400%s%s)", who, sep, said);
		break;
	case MSG_DENIED:
		hubfs_err_set("access to %s denied (HTTP 403%s%s)", repo, sep,
			      said);
		break;
	case MSG_NO_WRITE:
		hubfs_err_set("the token cannot write to %s (HTTP %ld%s%s)",
			      repo, status, sep, said);
		break;
	case MSG_NOT_FOUND:
		hubfs_err_set("%s not found in %s (HTTP %ld%s%s)",
			      or_default(ctx->path, "resource"), repo, status,
			      sep, said);
		break;
	case MSG_TIMEOUT:
		hubfs_err_set("%s timed out (HTTP %ld)", who, status);
		break;
	case MSG_CONFLICT:
		hubfs_err_set("%s reports a conflict (HTTP 409%s%s)", who, sep,
			      said);
		break;
	case MSG_STALE:
		hubfs_err_set("%s moved on: the parent commit is no longer "
			      "the head (HTTP 412)", rev);
		break;
	case MSG_TOO_LARGE:
		hubfs_err_set("%s refused the request as too large (HTTP 413)",
			      who);
		break;
	case MSG_RANGE:
		hubfs_err_set("%s says the range asked for is outside %s "
			      "(HTTP 416)", who,
			      or_default(ctx->path, "the file"));
		break;
	case MSG_RATE:
		hubfs_err_set("rate limited by %s (HTTP 429%s%s)", who, sep,
			      said);
		break;
	case MSG_SERVER:
		hubfs_err_set("%s failed (HTTP %ld%s%s)", who, status, sep,
			      said);
		break;
	case MSG_OTHER:
		hubfs_err_set("unexpected answer from %s (HTTP %ld%s%s)", who,
			      status, sep, said);
		break;
	}
}

int hub_errmap_status(const struct hub_errctx *ctx, long status,
		      const char *code, const char *message, bool *retry)
{
	const struct hub_errmap *row = NULL;
	char clean[HUB_HDR_MAX], said[HUB_HDR_MAX];
	enum hub_msg msg = MSG_OTHER;
	int err = -EIO;
	bool again = false;

	code = code ? code : "";
	message = message ? message : "";
	for (size_t i = 0; i < sizeof(hub_errmap) / sizeof(hub_errmap[0]);
	     i++) {
		if (row_matches(&hub_errmap[i], ctx, status, code, message)) {
			row = &hub_errmap[i];
			break;
		}
	}
	if (row) {
		err = row->err;
		again = row->retry;
		msg = row->msg;
	} else if (status >= 500 && status <= 599) {
		again = true;
		msg = MSG_SERVER;
	}
	hub_printable(clean, sizeof(clean), message, strlen(message));
	hubfs_log_redact(said, sizeof(said), clean);
	set_detail(msg, ctx, status, said);
	*retry = again;
	return err;
}

static const struct hub_curl_errmap {
	CURLcode rc;
	int err;
	bool retry;
} hub_curl_errmap[] = {
	{ CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH, false },
	{ CURLE_COULDNT_RESOLVE_PROXY, -EHOSTUNREACH, false },
	{ CURLE_COULDNT_CONNECT, -EHOSTUNREACH, true },
	{ CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT, true },
	{ CURLE_RECV_ERROR, -EIO, true },
	{ CURLE_SEND_ERROR, -EIO, true },
	{ CURLE_PARTIAL_FILE, -EIO, true },
	{ CURLE_GOT_NOTHING, -EIO, true },
	{ CURLE_HTTP2, -EIO, true },
	{ CURLE_HTTP2_STREAM, -EIO, true },
	{ CURLE_OUT_OF_MEMORY, -ENOMEM, false },
	{ CURLE_URL_MALFORMAT, -EINVAL, false },
};

int hub_errmap_curl(const struct hub_errctx *ctx, CURLcode rc,
		    const char *what, bool *retry)
{
	char clean[HUB_HDR_MAX], said[HUB_HDR_MAX], url[HUB_HDR_MAX];
	int err = -EIO;
	bool again = false;

	for (size_t i = 0;
	     i < sizeof(hub_curl_errmap) / sizeof(hub_curl_errmap[0]); i++) {
		if (hub_curl_errmap[i].rc == rc) {
			err = hub_curl_errmap[i].err;
			again = hub_curl_errmap[i].retry;
			break;
		}
	}
	what = or_default(what, curl_easy_strerror(rc));
	hub_printable(clean, sizeof(clean), what, strlen(what));
	hubfs_log_redact(said, sizeof(said), clean);
	hubfs_log_redact(url, sizeof(url), or_default(ctx->url, "?"));
	if (err == -EHOSTUNREACH) {
		/* Name the server, not the request, and say it in curl's
		 * fixed words (its own buffer adds timings that vary). */
		char *host = strstr(url, "://");

		if (host)
			host[strcspn(host + 3, "/?") + 3] = '\0';
		hubfs_err_set("cannot reach %s: %s", url, curl_easy_strerror(rc));
	}
	else if (err == -ETIMEDOUT)
		hubfs_err_set("%s timed out: %s", url, said);
	else
		hubfs_err_set("request to %s failed: %s", url, said);
	*retry = again;
	return err;
}
