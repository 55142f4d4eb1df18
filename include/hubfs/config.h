/*
 * hubfs mount configuration.
 *
 * struct hubfs_config is everything a mount is told: which repository and
 * revision, which Hub, which credentials, where to cache, and the mount
 * flags.  It is filled in three steps, in any order for the first two:
 *
 *	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
 *	struct hubfs_env env;
 *
 *	err = hubfs_config_parse_source(&cfg, "datasets/org/name@v1");
 *	err = hubfs_config_parse_opts(&cfg, "ro,cache_size=20G");
 *	hubfs_config_env_read(&env);
 *	err = hubfs_config_resolve_env(&cfg, &env);
 *	...
 *	hubfs_config_free(&cfg);
 *
 * Every function returns 0 or -errno and, on error, sets a one-line detail
 * (hubfs_err_get()) and leaves the configuration exactly as it was.  The
 * struct is transparent; strings in it are owned by it and freed by
 * hubfs_config_free().  It is not locked: fill it before any thread
 * starts, then treat it as read-only.
 */
#ifndef HUBFS_CONFIG_H
#define HUBFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum hubfs_repo_type {
	HUBFS_REPO_MODEL,
	HUBFS_REPO_DATASET,
	HUBFS_REPO_SPACE,
};

/* Defaults that HUBFS_CONFIG_INIT and hubfs_config_resolve_env() apply. */
#define HUBFS_CONFIG_ENDPOINT_DEFAULT "https://huggingface.co"
#define HUBFS_CONFIG_CACHE_SIZE_DEFAULT (10ULL << 30)	/* 10 GiB */
#define HUBFS_CONFIG_REFRESH_DEFAULT 30			/* seconds */
#define HUBFS_CONFIG_REFRESH_MAX 86400			/* one day */
#define HUBFS_CONFIG_TOKEN_FILE_MAX 4096		/* bytes */
#define HUBFS_CONFIG_SEGMENT_MAX 96	/* namespace and name, each */

struct hubfs_config {
	/* The repository, from hubfs_config_parse_source(). */
	enum hubfs_repo_type repo_type;
	char *repo_namespace;
	char *repo_name;
	char *revision;		/* decoded; NULL = the default branch */

	/* The Hub.  After resolve: no trailing '/', http:// or https://. */
	char *endpoint;

	/*
	 * Credentials.  token lives only in memory: it is never printed or
	 * logged, and hubfs_config_free() wipes it.  token_source says where
	 * it came from in words fit for a message ("token file /x",
	 * "environment variable HF_TOKEN", "none"), never the token itself.
	 * token_file is the token_file= option as given.  token_file_exposed
	 * is true when the token came from a regular file that its group or
	 * others may read, so the caller can warn.
	 */
	char *token;
	char *token_source;
	char *token_file;
	bool token_file_exposed;

	/* The block cache. */
	char *cache_dir;	/* absolute; set by resolve if not given */
	uint64_t cache_size;	/* bytes */

	/* Mount behaviour. */
	bool ro;
	bool allow_other;
	uid_t uid;		/* owner shown for files, if uid_set */
	bool uid_set;
	gid_t gid;		/* group shown for files, if gid_set */
	bool gid_set;
	unsigned int refresh;	/* seconds between re-resolves; 0 = never */
	char *commit_message;	/* commit summary template, or NULL */
	unsigned int commit_quiet_ms;	/* commit after this long quiet */
	unsigned int commit_max_delay_ms; /* ... or pending this long */
	bool no_upload_at_close;	/* wait for the commit to upload */
	bool debug;
	bool foreground;
	char *mountpoint;	/* as given on the command line */

	/* Operation. */
	int log_level;		/* LOG_ERR..LOG_DEBUG; -1: by debug */
	char *metrics_file;	/* absolute path, or NULL */

	/*
	 * Options hubfs does not interpret but hands to libfuse, comma
	 * separated in the order given ("max_read=131072,default_permissions");
	 * NULL if none.  max_read repeats the max_read= value (0 = not set),
	 * because libfuse 3.14 also needs it in conn->max_read at init.
	 */
	char *fuse_opts;
	unsigned int max_read;
};

#define HUBFS_CONFIG_INIT                                                  \
	{                                                                  \
		.repo_type = HUBFS_REPO_MODEL,                             \
		.cache_size = HUBFS_CONFIG_CACHE_SIZE_DEFAULT,             \
		.refresh = HUBFS_CONFIG_REFRESH_DEFAULT,                   \
		.commit_quiet_ms = 2000, .commit_max_delay_ms = 30000,     \
		.log_level = -1,                                           \
	}

/*
 * The environment that hubfs_config_resolve_env() consults.  Each string
 * is the variable's value or NULL when unset; they are borrowed.  Tests
 * fill this by hand; hubfs_config_env_read() fills it from the process.
 */
struct hubfs_env {
	const char *hf_endpoint;	/* HF_ENDPOINT */
	const char *hf_token;		/* HF_TOKEN */
	const char *hf_token_path;	/* HF_TOKEN_PATH */
	const char *hf_home;		/* HF_HOME */
	const char *xdg_cache_home;	/* XDG_CACHE_HOME */
	const char *home;		/* HOME */
	uid_t euid;			/* 0 picks system-wide paths */
};

/*
 * Parse the repository argument:
 *
 *	[hf://][models/|datasets/|spaces/]NAMESPACE/NAME[@REVISION]
 *
 * NAMESPACE and NAME are each 1-96 characters of [A-Za-z0-9_.-], with no
 * "--" or "..", not starting or ending with '-' or '.', and NAME does not
 * end in ".git".  REVISION is "refs/pr/N" or "refs/convert/WORD" taken
 * literally, or else a percent-encoded name: a '/' must be written %2F
 * ("feature%2Fx" is the branch feature/x).  A source of three parts
 * must start with one of the three plural type prefixes; a singular one
 * (model/, dataset/, space/) is refused with a hint.  A source without
 * @REVISION keeps the revision @cfg already has (from revision=).
 *
 * Replaces the repository fields of @cfg.  Returns 0, -EINVAL for a bad
 * source or a revision that disagrees with an earlier revision=, or
 * -ENOMEM.
 */
int hubfs_config_parse_source(struct hubfs_config *cfg, const char *source);

/*
 * Apply a comma-separated mount option string (the argument of -o):
 *
 *	revision=REV endpoint=URL token_file=PATH cache_dir=ABSPATH
 *	cache_size=N[K|M|G|T|KiB|MiB|GiB|TiB] ro rw allow_other uid=N gid=N
 *	refresh=SECONDS debug foreground log_level=LEVEL
 *	metrics_file=ABSPATH
 *
 * debug implies foreground, as -d does for libfuse.  LEVEL is error,
 * warning, notice, info or debug.
 * Options mount(8), mount.fuse3 or an fstab line may carry are accepted
 * and ignored (_netdev, nofail, auto, noauto, user, user=NAME, nouser,
 * users, defaults, dev, nodev, suid, nosuid, exec, noexec, atime, noatime,
 * relatime, comment=..., x-...).  max_read=N and default_permissions are
 * recorded in fuse_opts for libfuse.  Empty items are skipped.  There is
 * no quoting: a value cannot contain a comma.  Later options override
 * earlier ones, except that two different revisions are an error.
 *
 * Returns 0, -EINVAL naming the offending option (unknown, malformed, out
 * of range, or a revision that disagrees with the source's @REV), or
 * -ENOMEM.
 */
int hubfs_config_parse_opts(struct hubfs_config *cfg, const char *optstring);

/*
 * The log threshold @cfg asks for: log_level= if given, else LOG_DEBUG
 * with debug, else LOG_NOTICE.
 */
int hubfs_config_log_level(const struct hubfs_config *cfg);

/* The name of syslog level @level ("error", "warning", ...). */
const char *hubfs_config_level_name(int level);

/* Fill @env from the process environment and geteuid(). */
void hubfs_config_env_read(struct hubfs_env *env);

/*
 * Complete @cfg from @env, after all options are parsed:
 *
 *  - endpoint: endpoint= option, else HF_ENDPOINT, else
 *    HUBFS_CONFIG_ENDPOINT_DEFAULT; trailing '/' removed; must be an
 *    http:// or https:// URL with a host and no query, fragment, space
 *    or control character.
 *  - token: token_file= (must exist), else HF_TOKEN, else the one token
 *    file the environment names: HF_TOKEN_PATH, else $HF_HOME/token, else
 *    $XDG_CACHE_HOME/huggingface/token, else ~/.cache/huggingface/token.
 *    A missing default file means no token.  Surrounding whitespace is
 *    stripped and an empty token means none.  A token file is read up to
 *    HUBFS_CONFIG_TOKEN_FILE_MAX bytes.
 *  - cache_dir: cache_dir= option, else /var/cache/hubfs for root, else
 *    $XDG_CACHE_HOME/hubfs, else ~/.cache/hubfs.
 *
 * Returns 0, -EINVAL (bad endpoint, a token with inner whitespace or
 * control characters, no way to choose a cache directory), -ENOENT (the
 * token_file= file does not exist), -EFBIG (token file too large), another
 * -errno from reading a token file, or -ENOMEM.
 */
int hubfs_config_resolve_env(struct hubfs_config *cfg,
			     const struct hubfs_env *env);

/*
 * Write a one-line summary of @cfg into @dst (@n bytes), for example
 * "dataset org/name@v1 from https://huggingface.co, token from environment
 * variable HF_TOKEN, cache /c (10 GiB), read-only".  Never includes the
 * token.  Returns 0, or -ENOSPC if the line was cut to fit (@dst still
 * holds a NUL-terminated string when @n > 0).
 */
int hubfs_config_describe(char *dst, size_t n,
			  const struct hubfs_config *cfg);

/* "model", "dataset" or "space". */
const char *hubfs_config_repo_type_name(enum hubfs_repo_type type);

/*
 * Release every string in @cfg (wiping the token first) and reset it to
 * HUBFS_CONFIG_INIT.  Accepts NULL.
 */
void hubfs_config_free(struct hubfs_config *cfg);

#endif /* HUBFS_CONFIG_H */
