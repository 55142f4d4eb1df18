/*
 * Mount configuration: the source argument, -o options, the environment.
 *
 * DESIGN
 *
 * Three public steps fill one struct hubfs_config: parse the source, parse
 * any number of -o strings, then resolve what the environment decides
 * (endpoint, token, cache directory).  They share one rule: a step either
 * succeeds completely or leaves the configuration as it was.  Each step
 * therefore works on a deep copy (config_update()), and only a successful
 * step replaces the caller's struct.  That costs a few string copies at
 * startup and removes every "half-applied option" case from the callers
 * and the tests.
 *
 * Every string in the struct is owned by it.  config_strings[] lists them
 * once, so copying and freeing cannot forget a field.
 *
 * Conflicts.  The revision can be given twice (source "@REV" and
 * "revision="); the steps run in any order, so each one compares against
 * what is already set and refuses a different value.  Every other option
 * simply overrides an earlier one, as mount(8) options do.
 *
 * Source syntax follows the Hub's own clients: repository ids are checked
 * as huggingface_hub's validate_repo_id() does, and "refs/pr/N" and
 * "refs/convert/NAME" are recognised literally, as HfFileSystem's
 * special-refs pattern does.  Any other revision is percent-decoded,
 * because a branch may contain '/' and the source has no other way to
 * tell a branch "a/b" from a future sub-path.
 *
 * Tokens.  The token is read once here and kept only in the struct.  No
 * message built here contains it: errors about a token name where it came
 * from, never its value.  Buffers that held it are wiped before release.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "hubfs/config.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

#define SYSTEM_CACHE_DIR "/var/cache/hubfs"
/* Longest built path or pass-through option list. */
#define STRING_MAX 4096
#define UID_MAX_VALID 4294967294ULL	/* (uid_t)-1 means "no change" */

#define N_ITEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the struct's owned strings ---------------------------------------- */

static const size_t config_strings[] = {
	offsetof(struct hubfs_config, repo_namespace),
	offsetof(struct hubfs_config, repo_name),
	offsetof(struct hubfs_config, revision),
	offsetof(struct hubfs_config, endpoint),
	offsetof(struct hubfs_config, token),
	offsetof(struct hubfs_config, token_source),
	offsetof(struct hubfs_config, token_file),
	offsetof(struct hubfs_config, cache_dir),
	offsetof(struct hubfs_config, mountpoint),
	offsetof(struct hubfs_config, fuse_opts),
	offsetof(struct hubfs_config, commit_message),
	offsetof(struct hubfs_config, metrics_file),
};

static char **config_string(struct hubfs_config *cfg, size_t i)
{
	return (char **)((char *)cfg + config_strings[i]);
}

static const char *config_string_get(const struct hubfs_config *cfg,
				     size_t i)
{
	return *(char *const *)((const char *)cfg + config_strings[i]);
}

/* Free a string that may hold a secret. */
static void free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	hubfs_free(s);
}

void hubfs_config_free(struct hubfs_config *cfg)
{
	struct hubfs_config init = HUBFS_CONFIG_INIT;

	if (!cfg)
		return;
	free_secret(cfg->token);
	cfg->token = NULL;
	for (size_t i = 0; i < N_ITEMS(config_strings); i++)
		hubfs_free(*config_string(cfg, i));
	*cfg = init;
}

/* Deep-copy @src into @dst.  Returns 0 or -ENOMEM (and @dst is empty). */
static int config_clone(struct hubfs_config *dst,
			const struct hubfs_config *src)
{
	*dst = *src;
	for (size_t i = 0; i < N_ITEMS(config_strings); i++)
		*config_string(dst, i) = NULL;
	for (size_t i = 0; i < N_ITEMS(config_strings); i++) {
		const char *s = config_string_get(src, i);

		if (s && !(*config_string(dst, i) = hubfs_strdup(s))) {
			hubfs_config_free(dst);
			hubfs_err_set("out of memory");
			return -ENOMEM;
		}
	}
	return 0;
}

typedef int (*config_step_fn)(struct hubfs_config *cfg, const void *arg);

/* Run @step on a copy of @cfg and keep the copy only if @step succeeds. */
static int config_update(struct hubfs_config *cfg, config_step_fn step,
			 const void *arg)
{
	struct hubfs_config tmp;
	int err;

	err = config_clone(&tmp, cfg);
	if (err)
		return err;
	err = step(&tmp, arg);
	if (err) {
		hubfs_config_free(&tmp);
		return err;
	}
	hubfs_config_free(cfg);
	*cfg = tmp;
	return 0;
}

/* Replace *@field with a copy of @len bytes of @s (which may alias it). */
static int set_string(char **field, const char *s, size_t len)
{
	char *copy = hubfs_strndup(s, len);

	if (!copy) {
		hubfs_err_set("out of memory");
		return -ENOMEM;
	}
	hubfs_free(*field);
	*field = copy;
	return 0;
}

/* Replace *@field with printf-style text of at most STRING_MAX bytes. */
static int set_stringf(char **field, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int set_stringf(char **field, const char *fmt, ...)
{
	char tmp[STRING_MAX];
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= sizeof(tmp)) {
		hubfs_err_set("string too long: '%.40s...'", tmp);
		return -EINVAL;
	}
	return set_string(field, tmp, (size_t)len);
}

static bool nonempty(const char *s)
{
	return s && *s;
}

/* A byte that may not appear in a revision, token or URL. */
static bool is_space_or_control(unsigned char c)
{
	return c <= 0x20 || c == 0x7f;
}

/* Adopt @rev (@len bytes) as the revision unless another one is set. */
static int set_revision(struct hubfs_config *cfg, const char *rev,
			size_t len)
{
	if (cfg->revision) {
		if (strlen(cfg->revision) == len &&
		    memcmp(cfg->revision, rev, len) == 0)
			return 0;
		hubfs_err_set("conflicting revisions '%s' and '%.*s'",
			      cfg->revision, (int)len, rev);
		return -EINVAL;
	}
	return set_string(&cfg->revision, rev, len);
}

/* ---- source ------------------------------------------------------------ */

static const struct {
	const char *prefix;
	enum hubfs_repo_type type;
} repo_types[] = {
	{ "models", HUBFS_REPO_MODEL },
	{ "datasets", HUBFS_REPO_DATASET },
	{ "spaces", HUBFS_REPO_SPACE },
};

const char *hubfs_config_repo_type_name(enum hubfs_repo_type type)
{
	switch (type) {
	case HUBFS_REPO_DATASET:
		return "dataset";
	case HUBFS_REPO_SPACE:
		return "space";
	case HUBFS_REPO_MODEL:
	default:
		return "model";
	}
}

/* A piece of the source string; not NUL-terminated. */
struct span {
	const char *p;
	size_t len;
};

static bool span_is(struct span s, const char *word)
{
	return s.len == strlen(word) && memcmp(s.p, word, s.len) == 0;
}

static bool span_contains(struct span s, const char *needle)
{
	return memmem(s.p, s.len, needle, strlen(needle)) != NULL;
}

/* Check a namespace or name against the Hub's repository id rules. */
static int check_segment(const char *what, struct span s)
{
	const char *edge = "-.";

	if (s.len == 0) {
		hubfs_err_set("the %s is empty", what);
		return -EINVAL;
	}
	if (s.len > HUBFS_CONFIG_SEGMENT_MAX) {
		hubfs_err_set("the %s is longer than %d characters", what,
			      HUBFS_CONFIG_SEGMENT_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (!isalnum(c) && !strchr("-_.", c)) {
			hubfs_err_set("the %s may contain only letters, "
				      "digits, '-', '_' and '.'", what);
			return -EINVAL;
		}
	}
	if (strchr(edge, s.p[0]) || strchr(edge, s.p[s.len - 1])) {
		hubfs_err_set("the %s may not start or end with '-' or '.'",
			      what);
		return -EINVAL;
	}
	if (span_contains(s, "--") || span_contains(s, "..")) {
		hubfs_err_set("the %s may not contain '--' or '..'", what);
		return -EINVAL;
	}
	if (s.len >= 4 && memcmp(s.p + s.len - 4, ".git", 4) == 0) {
		hubfs_err_set("the %s may not end in '.git'", what);
		return -EINVAL;
	}
	return 0;
}

/* Length of the run of bytes at @s that satisfy @pred. */
static size_t span_of(const char *s, int (*pred)(int c))
{
	size_t n = 0;

	while (s[n] && pred((unsigned char)s[n]))
		n++;
	return n;
}

static int is_word(int c)
{
	return isalnum(c) || c == '_';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * The special refs, matched first and kept literally, as HfFileSystem's
 * pattern does: "refs/pr/N" and "refs/convert/WORD".
 */
static const struct {
	const char *prefix;
	int (*tail_char)(int c);
	const char *tail;
} special_refs[] = {
	{ "refs/pr/", isdigit, "a pull request number" },
	{ "refs/convert/", is_word, "a name such as 'parquet'" },
};

/*
 * Returns 1 if @rev is a special ref, 0 if it does not start like one,
 * -EINVAL if it starts like one but is malformed.
 */
static int special_ref(const char *rev)
{
	for (size_t i = 0; i < N_ITEMS(special_refs); i++) {
		size_t len = strlen(special_refs[i].prefix), n;

		if (strncmp(rev, special_refs[i].prefix, len) != 0)
			continue;
		n = span_of(rev + len, special_refs[i].tail_char);
		if (n == 0 || rev[len + n]) {
			hubfs_err_set("'%s' must be followed by %s",
				      special_refs[i].prefix,
				      special_refs[i].tail);
			return -EINVAL;
		}
		return 1;
	}
	return 0;
}

/* Decode the revision after '@' into @out (strlen(rev) + 1 bytes). */
static int decode_revision(char *out, const char *rev)
{
	size_t o = 0;

	for (const char *p = rev; *p; p++) {
		int hi, lo;
		unsigned char c = (unsigned char)*p;

		if (c == '/') {
			hubfs_err_set("write '/' in a revision as %%2F, as in "
				      "'feature%%2Fx'");
			return -EINVAL;
		}
		if (c == '%') {
			hi = hex_value(p[1]);
			lo = hi < 0 ? -1 : hex_value(p[2]);
			if (lo < 0) {
				hubfs_err_set("bad percent-escape in the "
					      "revision");
				return -EINVAL;
			}
			c = (unsigned char)(hi * 16 + lo);
			p += 2;
		}
		if (is_space_or_control(c)) {
			hubfs_err_set("the revision may not contain spaces or "
				      "control characters");
			return -EINVAL;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

static int parse_revision(struct hubfs_config *cfg, const char *rev)
{
	char *decoded;
	int err;

	if (!*rev) {
		hubfs_err_set("the revision after '@' is empty");
		return -EINVAL;
	}
	err = special_ref(rev);
	if (err < 0)
		return err;
	if (err == 1)
		return set_revision(cfg, rev, strlen(rev));

	decoded = hubfs_malloc(strlen(rev) + 1);
	if (!decoded) {
		hubfs_err_set("out of memory");
		return -ENOMEM;
	}
	err = decode_revision(decoded, rev);
	if (!err)
		err = set_revision(cfg, decoded, strlen(decoded));
	hubfs_free(decoded);
	return err;
}

/* The index in repo_types[] of the prefix @s, or -1. */
static int find_repo_type(struct span s)
{
	for (size_t t = 0; t < N_ITEMS(repo_types); t++)
		if (span_is(s, repo_types[t].prefix))
			return (int)t;
	return -1;
}

/* The type named by the first part of a three-part source. */
static int parse_repo_type(enum hubfs_repo_type *out, struct span s)
{
	int t = find_repo_type(s);

	if (t >= 0) {
		*out = repo_types[t].type;
		return 0;
	}
	if (span_is(s, "model") || span_is(s, "dataset") ||
	    span_is(s, "space"))
		hubfs_err_set("use the plural type prefix '%.*ss/'",
			      (int)s.len, s.p);
	else
		hubfs_err_set("unknown repository type '%.*s/' (use models/, "
			      "datasets/ or spaces/)", (int)s.len, s.p);
	return -EINVAL;
}

/*
 * Split "[type/]namespace/name" into its parts and set the repository
 * fields.  @path is @len bytes, without "hf://" and "@REV".
 */
static int parse_repo_path(struct hubfs_config *cfg, const char *path,
			   size_t len)
{
	struct span seg[3];
	size_t nseg = 0, start = 0;
	enum hubfs_repo_type type = HUBFS_REPO_MODEL;
	int err;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		if (nseg == 3) {
			hubfs_err_set("too many '/': expected "
				      "[TYPE/]NAMESPACE/NAME");
			return -EINVAL;
		}
		seg[nseg].p = path + start;
		seg[nseg++].len = i - start;
		start = i + 1;
	}
	if (nseg < 2) {
		hubfs_err_set("expected NAMESPACE/NAME");
		return -EINVAL;
	}
	for (size_t i = 0; i < nseg; i++) {
		if (seg[i].len == 0) {
			hubfs_err_set("empty part: expected "
				      "[TYPE/]NAMESPACE/NAME");
			return -EINVAL;
		}
	}
	if (nseg == 3) {
		err = parse_repo_type(&type, seg[0]);
		if (err)
			return err;
		seg[0] = seg[1];
		seg[1] = seg[2];
	} else if (find_repo_type(seg[0]) >= 0) {
		hubfs_err_set("expected %.*s/NAMESPACE/NAME", (int)seg[0].len,
			      seg[0].p);
		return -EINVAL;
	}

	err = check_segment("namespace", seg[0]);
	if (!err)
		err = check_segment("name", seg[1]);
	if (!err)
		err = set_string(&cfg->repo_namespace, seg[0].p, seg[0].len);
	if (!err)
		err = set_string(&cfg->repo_name, seg[1].p, seg[1].len);
	if (!err)
		cfg->repo_type = type;
	return err;
}

static int parse_source(struct hubfs_config *cfg, const void *arg)
{
	const char *source = arg, *path = source, *at;
	int err;

	if (strncmp(path, "hf://", 5) == 0)
		path += 5;
	at = strchr(path, '@');
	err = parse_repo_path(cfg, path, at ? (size_t)(at - path)
					    : strlen(path));
	if (!err && at)
		err = parse_revision(cfg, at + 1);
	if (err == -EINVAL)
		hubfs_err_set("invalid source '%s': %s", source,
			      hubfs_err_get());
	return err;
}

int hubfs_config_parse_source(struct hubfs_config *cfg, const char *source)
{
	return config_update(cfg, parse_source, source);
}

/* ---- options ----------------------------------------------------------- */

/*
 * Parse the @len bytes at @s, all decimal digits (no sign, no space), into
 * *@out.  Returns 0, or -EINVAL for anything else or a value above @max.
 */
static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = span_of(s, isdigit);

	if (n == 0 || n < len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v))
			return -EINVAL;
	}
	if (v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Parse "name=value" as a number in [@min, @max]; the error names it. */
static int parse_number(const char *name, const char *value, uint64_t min,
			uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (parse_u64(value, strlen(value), max, &v) || v < min) {
		hubfs_err_set("%s=%s: expected a whole number from %llu to "
			      "%llu", name, value, (unsigned long long)min,
			      (unsigned long long)max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static const struct {
	const char *suffix;
	unsigned int shift;
} size_suffixes[] = {
	{ "", 0 },	{ "k", 10 },   { "m", 20 },   { "g", 30 },
	{ "t", 40 },	{ "kib", 10 }, { "mib", 20 }, { "gib", 30 },
	{ "tib", 40 },
};

/* Parse a byte count with an optional binary suffix into *@out. */
static int parse_size(const char *name, const char *value, uint64_t *out)
{
	size_t n = span_of(value, isdigit);
	uint64_t v;

	if (n == 0) {
		hubfs_err_set("%s=%s: expected a size such as 512M or 20G",
			      name, value);
		return -EINVAL;
	}
	for (size_t i = 0; i < N_ITEMS(size_suffixes); i++) {
		unsigned int shift = size_suffixes[i].shift;

		if (strcasecmp(value + n, size_suffixes[i].suffix) != 0)
			continue;
		if (parse_u64(value, n, UINT64_MAX >> shift, &v)) {
			hubfs_err_set("%s=%s: too large", name, value);
			return -EINVAL;
		}
		if (v == 0) {
			hubfs_err_set("%s=%s: must be more than 0", name,
				      value);
			return -EINVAL;
		}
		*out = v << shift;
		return 0;
	}
	hubfs_err_set("%s=%s: unknown unit '%s' (use K, M, G, T or KiB, MiB,"
		      " GiB, TiB)", name, value, value + n);
	return -EINVAL;
}

static int opt_revision(struct hubfs_config *cfg, const char *value)
{
	for (const char *p = value; *p; p++) {
		if (is_space_or_control((unsigned char)*p)) {
			hubfs_err_set("the revision may not contain spaces or "
				      "control characters");
			return -EINVAL;
		}
	}
	return set_revision(cfg, value, strlen(value));
}

static int opt_endpoint(struct hubfs_config *cfg, const char *value)
{
	return set_string(&cfg->endpoint, value, strlen(value));
}

static int opt_token_file(struct hubfs_config *cfg, const char *value)
{
	return set_string(&cfg->token_file, value, strlen(value));
}

static int opt_cache_dir(struct hubfs_config *cfg, const char *value)
{
	if (value[0] != '/') {
		hubfs_err_set("cache_dir=%s: must be an absolute path", value);
		return -EINVAL;
	}
	return set_string(&cfg->cache_dir, value, strlen(value));
}

static int opt_cache_size(struct hubfs_config *cfg, const char *value)
{
	return parse_size("cache_size", value, &cfg->cache_size);
}

/* Parse a user or group id; uid_t and gid_t are unsigned int on Linux. */
static int parse_id(const char *name, const char *value, unsigned int *id,
		    bool *set)
{
	uint64_t v;
	int err = parse_number(name, value, 0, UID_MAX_VALID, &v);

	if (err)
		return err;
	*id = (unsigned int)v;
	*set = true;
	return 0;
}

static int opt_uid(struct hubfs_config *cfg, const char *value)
{
	return parse_id("uid", value, &cfg->uid, &cfg->uid_set);
}

static int opt_gid(struct hubfs_config *cfg, const char *value)
{
	return parse_id("gid", value, &cfg->gid, &cfg->gid_set);
}

static int opt_refresh(struct hubfs_config *cfg, const char *value)
{
	uint64_t v;
	int err = parse_number("refresh", value, 0, HUBFS_CONFIG_REFRESH_MAX,
			       &v);

	if (!err)
		cfg->refresh = (unsigned int)v;
	return err;
}

static int opt_commit_delay(struct hubfs_config *cfg, const char *value)
{
	uint64_t v;
	int err = parse_number("commit_delay", value, 0, 86400000, &v);

	if (!err)
		cfg->commit_quiet_ms = (unsigned int)v;
	if (!err && cfg->commit_max_delay_ms < v)
		cfg->commit_max_delay_ms = (unsigned int)v;
	return err;
}

static int opt_commit_max_delay(struct hubfs_config *cfg, const char *value)
{
	uint64_t v;
	int err = parse_number("commit_max_delay", value, 0, 86400000, &v);

	if (!err)
		cfg->commit_max_delay_ms = (unsigned int)v;
	return err;
}

static int opt_commit_message(struct hubfs_config *cfg, const char *value)
{
	if (!*value || strchr(value, '\n')) {
		hubfs_err_set("commit_message must be one non-empty line");
		return -EINVAL;
	}
	return set_string(&cfg->commit_message, value, strlen(value));
}

static const char *const level_names[] = {
	[LOG_ERR] = "error", [LOG_WARNING] = "warning",
	[LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

const char *hubfs_config_level_name(int level)
{
	if (level < LOG_ERR || level > LOG_DEBUG)
		return "?";
	return level_names[level];
}

int hubfs_config_log_level(const struct hubfs_config *cfg)
{
	if (cfg->log_level >= 0)
		return cfg->log_level;
	return cfg->debug ? LOG_DEBUG : LOG_NOTICE;
}

static int opt_log_level(struct hubfs_config *cfg, const char *value)
{
	for (int l = LOG_ERR; l <= LOG_DEBUG; l++) {
		if (strcmp(value, level_names[l]) == 0) {
			cfg->log_level = l;
			return 0;
		}
	}
	hubfs_err_set("log_level=%s: must be error, warning, notice, info "
		      "or debug", value);
	return -EINVAL;
}

static int opt_metrics_file(struct hubfs_config *cfg, const char *value)
{
	if (value[0] != '/') {
		hubfs_err_set("metrics_file=%s: must be an absolute path",
			      value);
		return -EINVAL;
	}
	return set_string(&cfg->metrics_file, value, strlen(value));
}

/* Append @opt to the options handed to libfuse. */
static int add_fuse_opt(struct hubfs_config *cfg, const char *opt)
{
	if (cfg->fuse_opts)
		return set_stringf(&cfg->fuse_opts, "%s,%s", cfg->fuse_opts,
				   opt);
	return set_string(&cfg->fuse_opts, opt, strlen(opt));
}

static int opt_max_read(struct hubfs_config *cfg, const char *value)
{
	char opt[32];
	uint64_t v;
	int err = parse_number("max_read", value, 1, UINT_MAX, &v);

	if (err)
		return err;
	snprintf(opt, sizeof(opt), "max_read=%llu", (unsigned long long)v);
	err = add_fuse_opt(cfg, opt);
	if (!err)
		cfg->max_read = (unsigned int)v;
	return err;
}

/* As for every libfuse daemon, debug output implies the foreground. */
static int opt_debug(struct hubfs_config *cfg, const char *value)
{
	(void)value;
	cfg->debug = true;
	cfg->foreground = true;
	return 0;
}

static int opt_default_permissions(struct hubfs_config *cfg,
				   const char *value)
{
	(void)value;
	return add_fuse_opt(cfg, "default_permissions");
}

#define FLAG(field) offsetof(struct hubfs_config, field)

enum opt_kind {
	OPT_FLAG,	/* no value: sets the bool at @flag to @on */
	OPT_ACTION,	/* no value: calls @apply */
	OPT_NUMBER,	/* a value that cannot hold a comma */
	OPT_TEXT,	/* a free-text value, which might hold a comma */
};

static const struct opt_spec {
	const char *name;
	enum opt_kind kind;
	int (*apply)(struct hubfs_config *cfg, const char *value);
	size_t flag;
	bool on;
} opt_specs[] = {
	{ "revision", OPT_TEXT, opt_revision, 0, false },
	{ "endpoint", OPT_TEXT, opt_endpoint, 0, false },
	{ "token_file", OPT_TEXT, opt_token_file, 0, false },
	{ "cache_dir", OPT_TEXT, opt_cache_dir, 0, false },
	{ "cache_size", OPT_NUMBER, opt_cache_size, 0, false },
	{ "uid", OPT_NUMBER, opt_uid, 0, false },
	{ "gid", OPT_NUMBER, opt_gid, 0, false },
	{ "refresh", OPT_NUMBER, opt_refresh, 0, false },
	{ "max_read", OPT_NUMBER, opt_max_read, 0, false },
	{ "commit_delay", OPT_NUMBER, opt_commit_delay, 0, false },
	{ "commit_max_delay", OPT_NUMBER, opt_commit_max_delay, 0, false },
	{ "commit_message", OPT_TEXT, opt_commit_message, 0, false },
	{ "log_level", OPT_NUMBER, opt_log_level, 0, false },
	{ "metrics_file", OPT_TEXT, opt_metrics_file, 0, false },
	{ "default_permissions", OPT_ACTION, opt_default_permissions, 0,
	  false },
	{ "ro", OPT_FLAG, NULL, FLAG(ro), true },
	{ "rw", OPT_FLAG, NULL, FLAG(ro), false },
	{ "allow_other", OPT_FLAG, NULL, FLAG(allow_other), true },
	{ "upload_at_close", OPT_FLAG, NULL, FLAG(no_upload_at_close), false },
	{ "noupload_at_close", OPT_FLAG, NULL, FLAG(no_upload_at_close),
	  true },
	{ "debug", OPT_ACTION, opt_debug, 0, false },
	{ "foreground", OPT_FLAG, NULL, FLAG(foreground), true },
};

/* Options from mount(8), mount.fuse3 or fstab that hubfs has no use for. */
static const char *const ignored_opts[] = {
	"_netdev", "nofail", "noauto", "auto", "user", "nouser", "users",
	"defaults", "dev", "nodev", "suid", "nosuid", "exec", "noexec",
	"atime", "noatime", "relatime",
};

/* Prefixes of the same; "x-" covers x-systemd.* and other x- options. */
static const char *const ignored_prefixes[] = { "x-", "comment=", "user=" };

static bool is_ignored(const char *item)
{
	for (size_t i = 0; i < N_ITEMS(ignored_opts); i++)
		if (strcmp(item, ignored_opts[i]) == 0)
			return true;
	for (size_t i = 0; i < N_ITEMS(ignored_prefixes); i++)
		if (strncmp(item, ignored_prefixes[i],
			    strlen(ignored_prefixes[i])) == 0)
			return true;
	return false;
}

static const struct opt_spec *find_opt(const char *item)
{
	size_t name_len = strcspn(item, "=");

	for (size_t i = 0; i < N_ITEMS(opt_specs); i++)
		if (strlen(opt_specs[i].name) == name_len &&
		    memcmp(item, opt_specs[i].name, name_len) == 0)
			return &opt_specs[i];
	return NULL;
}

/*
 * Apply one option @item ("name" or "name=value"), whose @spec is NULL if
 * unknown.  @after_text says the previous item was a free-text option, so
 * an unknown item may be the tail of a value that contained a comma.
 */
static int apply_opt(struct hubfs_config *cfg, const struct opt_spec *spec,
		     const char *item, bool after_text)
{
	const char *value = strchr(item, '=');
	bool takes_value;

	if (is_ignored(item))
		return 0;
	if (!spec) {
		hubfs_err_set("unknown mount option '%s'%s", item,
			      after_text ? " (option values cannot contain "
					   "commas)" : "");
		return -EINVAL;
	}
	if (value)
		value++;
	takes_value = spec->kind == OPT_NUMBER || spec->kind == OPT_TEXT;
	if (!takes_value && value) {
		hubfs_err_set("option '%s' takes no value", spec->name);
		return -EINVAL;
	}
	if (takes_value && !nonempty(value)) {
		hubfs_err_set("option '%s' needs a value (%s=...)", spec->name,
			      spec->name);
		return -EINVAL;
	}
	if (spec->kind == OPT_FLAG) {
		*(bool *)((char *)cfg + spec->flag) = spec->on;
		return 0;
	}
	return spec->apply(cfg, value);
}

static int parse_opts(struct hubfs_config *cfg, const void *arg)
{
	const char *p = arg;
	bool after_text = false;

	while (*p) {
		size_t len = strcspn(p, ",");
		const struct opt_spec *spec;
		char *item;
		int err;

		if (len) {
			item = hubfs_strndup(p, len);
			if (!item) {
				hubfs_err_set("out of memory");
				return -ENOMEM;
			}
			spec = find_opt(item);
			err = apply_opt(cfg, spec, item, after_text);
			after_text = spec && spec->kind == OPT_TEXT;
			hubfs_free(item);
			if (err)
				return err;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

int hubfs_config_parse_opts(struct hubfs_config *cfg, const char *optstring)
{
	return config_update(cfg, parse_opts, optstring);
}

/* ---- environment ------------------------------------------------------- */

void hubfs_config_env_read(struct hubfs_env *env)
{
	env->hf_endpoint = getenv("HF_ENDPOINT");
	env->hf_token = getenv("HF_TOKEN");
	env->hf_token_path = getenv("HF_TOKEN_PATH");
	env->hf_home = getenv("HF_HOME");
	env->xdg_cache_home = getenv("XDG_CACHE_HOME");
	env->home = getenv("HOME");
	env->euid = geteuid();
}

static int resolve_endpoint(struct hubfs_config *cfg,
			    const struct hubfs_env *env)
{
	const char *url = HUBFS_CONFIG_ENDPOINT_DEFAULT, *what = "endpoint";
	size_t len, scheme;

	if (cfg->endpoint) {
		url = cfg->endpoint;
		what = "endpoint=";
	} else if (nonempty(env->hf_endpoint)) {
		url = env->hf_endpoint;
		what = "HF_ENDPOINT";
	}
	len = strlen(url);
	while (len && url[len - 1] == '/')
		len--;
	if (strncasecmp(url, "https://", 8) == 0)
		scheme = 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		scheme = 7;
	else
		scheme = 0;
	if (scheme == 0 || len <= scheme) {
		hubfs_err_set("%s '%s': expected an http:// or https:// URL "
			      "with a host", what, url);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if (is_space_or_control((unsigned char)url[i]) ||
		    url[i] == '?' || url[i] == '#') {
			hubfs_err_set("%s '%s': the URL may not contain "
				      "spaces, control characters, '?' or '#'",
				      what, url);
			return -EINVAL;
		}
	}
	return set_string(&cfg->endpoint, url, len);
}

/*
 * Turn raw token text into *@out: surrounding whitespace stripped, NULL if
 * nothing is left.  @where names the origin for messages.
 */
static int clean_token(char **out, const char *raw, size_t len,
		       const char *where)
{
	char *token;

	while (len && isspace((unsigned char)raw[len - 1]))
		len--;
	while (len && isspace((unsigned char)*raw)) {
		raw++;
		len--;
	}
	for (size_t i = 0; i < len; i++) {
		if (is_space_or_control((unsigned char)raw[i])) {
			hubfs_err_set("the token in %s contains whitespace or "
				      "control characters", where);
			return -EINVAL;
		}
	}
	token = NULL;
	if (len && !(token = hubfs_strndup(raw, len))) {
		hubfs_err_set("out of memory");
		return -ENOMEM;
	}
	*out = token;
	return 0;
}

/*
 * Read the token file @path into *@out (NULL if it holds no token) and
 * tell whether group or others can read it.  A file that does not exist
 * is -ENOENT.
 */
static int read_token_file(char **out, bool *exposed, const char *path)
{
	char raw[HUBFS_CONFIG_TOKEN_FILE_MAX + 1];
	char where[STRING_MAX];
	size_t len = 0;
	struct stat st;
	ssize_t n;
	int fd, err = 0;

	snprintf(where, sizeof(where), "token file %s", path);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		err = errno == ENOTDIR ? -ENOENT : -errno;
		hubfs_err_set("cannot open %s: %s", where, strerror(-err));
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		hubfs_err_set("cannot stat %s: %s", where, strerror(-err));
		goto out_close;
	}
	while (len < sizeof(raw)) {
		n = read(fd, raw + len, sizeof(raw) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			hubfs_err_set("cannot read %s: %s", where,
				      strerror(-err));
			goto out_wipe;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > HUBFS_CONFIG_TOKEN_FILE_MAX) {
		hubfs_err_set("%s is larger than %d bytes", where,
			      HUBFS_CONFIG_TOKEN_FILE_MAX);
		err = -EFBIG;
		goto out_wipe;
	}
	err = clean_token(out, raw, len, where);
	if (!err)
		*exposed = S_ISREG(st.st_mode) &&
			   (st.st_mode & (S_IRGRP | S_IROTH));
out_wipe:
	explicit_bzero(raw, sizeof(raw));
out_close:
	close(fd);
	return err;
}

/*
 * Join @dir and @leaf into *@out, expanding a leading "~" in @dir with
 * @home when @home is set.
 */
static int join_path(char **out, const char *dir, const char *leaf,
		     const char *home)
{
	const char *prefix = "";
	size_t len;

	if (nonempty(home) && dir[0] == '~' && (!dir[1] || dir[1] == '/')) {
		prefix = home;
		dir++;
	}
	len = strlen(dir);
	while (*leaf && len > 1 && dir[len - 1] == '/')
		len--;
	return set_stringf(out, "%s%.*s%s%s", prefix, (int)len, dir,
			   *leaf ? "/" : "", leaf);
}

/* The one token file the environment names, or NULL (*@out) if none. */
static int default_token_path(char **out, const struct hubfs_env *env)
{
	*out = NULL;
	if (nonempty(env->hf_token_path))
		return join_path(out, env->hf_token_path, "", env->home);
	if (nonempty(env->hf_home))
		return join_path(out, env->hf_home, "token", env->home);
	if (nonempty(env->xdg_cache_home))
		return join_path(out, env->xdg_cache_home, "huggingface/token",
				 NULL);
	if (nonempty(env->home))
		return join_path(out, env->home, ".cache/huggingface/token",
				 NULL);
	return 0;
}

/* Read the token from @path and say so in token_source. */
static int token_from_file(struct hubfs_config *cfg, const char *path)
{
	int err = read_token_file(&cfg->token, &cfg->token_file_exposed, path);

	if (err)
		return err;
	if (!cfg->token)
		return set_stringf(&cfg->token_source,
				   "none (token file %s is empty)", path);
	return set_stringf(&cfg->token_source, "token file %s", path);
}

/* Read the token from the default file, if the environment names one. */
static int token_from_default_file(struct hubfs_config *cfg,
				   const struct hubfs_env *env)
{
	char *path = NULL;
	int err;

	err = default_token_path(&path, env);
	if (err || !path) {
		if (!err)
			err = set_stringf(&cfg->token_source, "none");
		return err;
	}
	err = token_from_file(cfg, path);
	if (err == -ENOENT) {
		hubfs_err_clear();
		err = set_stringf(&cfg->token_source,
				  "none (no token file at %s)", path);
	}
	hubfs_free(path);
	return err;
}

static int resolve_token(struct hubfs_config *cfg,
			 const struct hubfs_env *env)
{
	int err;

	free_secret(cfg->token);
	cfg->token = NULL;
	cfg->token_file_exposed = false;
	if (cfg->token_file) {
		err = token_from_file(cfg, cfg->token_file);
		if (err == -ENOENT)
			hubfs_err_set("token_file=%s: no such file",
				      cfg->token_file);
		return err;
	}
	if (nonempty(env->hf_token)) {
		err = clean_token(&cfg->token, env->hf_token,
				  strlen(env->hf_token),
				  "environment variable HF_TOKEN");
		if (err)
			return err;
		if (cfg->token)
			return set_stringf(&cfg->token_source,
					   "environment variable HF_TOKEN");
	}
	return token_from_default_file(cfg, env);
}

static int resolve_cache_dir(struct hubfs_config *cfg,
			     const struct hubfs_env *env)
{
	if (cfg->cache_dir)
		return 0;
	if (env->euid == 0)
		return set_stringf(&cfg->cache_dir, SYSTEM_CACHE_DIR);
	/* The XDG base directory spec says to ignore a relative path. */
	if (nonempty(env->xdg_cache_home) && env->xdg_cache_home[0] == '/')
		return join_path(&cfg->cache_dir, env->xdg_cache_home, "hubfs",
				 NULL);
	if (nonempty(env->home) && env->home[0] == '/')
		return join_path(&cfg->cache_dir, env->home, ".cache/hubfs",
				 NULL);
	hubfs_err_set("cannot choose a cache directory: HOME is not an "
		      "absolute path; use -o cache_dir=PATH");
	return -EINVAL;
}

static int resolve_env(struct hubfs_config *cfg, const void *arg)
{
	const struct hubfs_env *env = arg;
	int err;

	err = resolve_endpoint(cfg, env);
	if (!err)
		err = resolve_token(cfg, env);
	if (!err)
		err = resolve_cache_dir(cfg, env);
	return err;
}

int hubfs_config_resolve_env(struct hubfs_config *cfg,
			     const struct hubfs_env *env)
{
	return config_update(cfg, resolve_env, env);
}

/* ---- description ------------------------------------------------------- */

/* Print @bytes in the largest binary unit that divides it exactly. */
static void format_size(char *dst, size_t n, uint64_t bytes)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB",
					     "TiB" };
	size_t u = 0;

	while (u + 1 < N_ITEMS(units) && bytes && bytes % 1024 == 0) {
		bytes /= 1024;
		u++;
	}
	snprintf(dst, n, "%llu %s", (unsigned long long)bytes, units[u]);
}

int hubfs_config_describe(char *dst, size_t n,
			  const struct hubfs_config *cfg)
{
	char size[32];
	int len;

	if (n == 0)
		return -ENOSPC;
	format_size(size, sizeof(size), cfg->cache_size);
	len = snprintf(dst, n,
		       "%s %s/%s%s%s at %s, token: %s, cache: %s (%s), %s",
		       hubfs_config_repo_type_name(cfg->repo_type),
		       cfg->repo_namespace ? cfg->repo_namespace : "?",
		       cfg->repo_name ? cfg->repo_name : "?",
		       cfg->revision ? "@" : "",
		       cfg->revision ? cfg->revision : "",
		       cfg->endpoint ? cfg->endpoint : "(unresolved)",
		       cfg->token_source ? cfg->token_source : "(unresolved)",
		       cfg->cache_dir ? cfg->cache_dir : "(unresolved)", size,
		       cfg->ro ? "read-only" : "read-write");
	return len < 0 || (size_t)len >= n ? -ENOSPC : 0;
}
