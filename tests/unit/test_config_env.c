/*
 * Unit tests for hubfs_config_resolve_env() and hubfs_config_describe().
 *
 * Every test builds its own struct hubfs_env over files in a fresh
 * temporary directory, so nothing depends on the real environment.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "hubfs/config.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

/* A non-root uid, for the cache directory rules; tests that do not care
 * about the cache directory use 0, which needs no HOME. */
#define USER_UID 1000

/* A token file at @name (directories created) holding @content. */
static const char *token_at(const char *name, const char *content)
{
	char dir[512];

	for (const char *slash = strchr(name, '/'); slash;
	     slash = strchr(slash + 1, '/')) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - name), name);
		mkdir(check_path(dir), 0700);
	}
	return check_file(name, content, strlen(content), 0600);
}

static int resolve(struct hubfs_config *cfg, const struct hubfs_env *env)
{
	int err = hubfs_config_resolve_env(cfg, env);

	if (err)
		check_fail(__FILE__, __LINE__, "resolve failed (%d): %s", err,
			   hubfs_err_get());
	return err;
}

/* Resolve @env alone and check the token and its source. */
static void token_is(const struct hubfs_env *env, const char *token,
		     const char *source)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(resolve(&cfg, env), 0);
	CHECK_STR(cfg.token, token);
	CHECK_STR(cfg.token_source, source);
	hubfs_config_free(&cfg);
}

/* @a and @b joined, valid for the rest of the test. */
static const char *joined(const char *a, const char *b)
{
	return check_strf("%s%s", a, b);
}

/* ---- endpoint ---------------------------------------------------------- */

/* Resolve with endpoint=@option (unless NULL) and HF_ENDPOINT. */
static int resolve_endpoint(struct hubfs_config *cfg, const char *option,
			    const char *hf_endpoint)
{
	struct hubfs_env env = { .hf_endpoint = hf_endpoint, .euid = 0 };
	int err;

	if (option) {
		err = hubfs_config_parse_opts(cfg, joined("endpoint=", option));
		if (err)
			return err;
	}
	return hubfs_config_resolve_env(cfg, &env);
}

static void endpoint_is(const char *option, const char *hf_endpoint,
			const char *expected)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(resolve_endpoint(&cfg, option, hf_endpoint), 0);
	CHECK_STR(cfg.endpoint, expected);
	hubfs_config_free(&cfg);
}

static void endpoint_bad(const char *option, const char *hf_endpoint,
			 const char *why)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(resolve_endpoint(&cfg, option, hf_endpoint), -EINVAL);
	CHECK_STR(hubfs_err_get(), why);
	CHECK(cfg.token_source == NULL);
	CHECK(cfg.cache_dir == NULL);
	hubfs_config_free(&cfg);
}

static void test_config__env_endpoint_default(void)
{
	endpoint_is(NULL, NULL, "https://huggingface.co");
	endpoint_is(NULL, "", "https://huggingface.co");
}

static void test_config__env_endpoint_precedence(void)
{
	endpoint_is(NULL, "https://mirror.example", "https://mirror.example");
	endpoint_is("http://127.0.0.1:8080", "https://mirror.example",
		    "http://127.0.0.1:8080");
}

static void test_config__env_endpoint_trailing_slash(void)
{
	endpoint_is(NULL, "https://mirror.example/", "https://mirror.example");
	endpoint_is("http://127.0.0.1:8080///", NULL, "http://127.0.0.1:8080");
	endpoint_is("https://proxy.example/hub/", NULL,
		    "https://proxy.example/hub");
	endpoint_is("HTTPS://Hub.Example", NULL, "HTTPS://Hub.Example");
}

static void test_config__env_endpoint_bad_scheme(void)
{
	endpoint_bad("ftp://x", NULL, "endpoint= 'ftp://x': expected an "
		     "http:// or https:// URL with a host");
	endpoint_bad(NULL, "huggingface.co", "HF_ENDPOINT 'huggingface.co': "
		     "expected an http:// or https:// URL with a host");
	endpoint_bad("https://", NULL, "endpoint= 'https://': expected an "
		     "http:// or https:// URL with a host");
	endpoint_bad("https:///", NULL, "endpoint= 'https:///': expected an "
		     "http:// or https:// URL with a host");
	endpoint_bad("httpx://h", NULL, "endpoint= 'httpx://h': expected an "
		     "http:// or https:// URL with a host");
}

static void test_config__env_endpoint_bad_characters(void)
{
	endpoint_bad(NULL, "https://h/a b", "HF_ENDPOINT 'https://h/a b': the "
		     "URL may not contain spaces, control characters, '?' or "
		     "'#'");
	endpoint_bad("https://h/?x", NULL, "endpoint= 'https://h/?x': the URL "
		     "may not contain spaces, control characters, '?' or '#'");
	endpoint_bad(NULL, "https://h\r\nX: y", "HF_ENDPOINT 'https://h\r\nX: "
		     "y': the URL may not contain spaces, control characters, "
		     "'?' or '#'");
}

/* ---- token precedence -------------------------------------------------- */

static void test_config__env_token_file_option_wins(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	const char *file = token_at("explicit", "hf_from_option\n");
	struct hubfs_env env = { .hf_token = "hf_from_env",
				 .home = check_tmpdir(), .euid = USER_UID };

	token_at(".cache/huggingface/token", "hf_from_home");
	CHECK_INT(hubfs_config_parse_opts(&cfg, joined("token_file=", file)),
		  0);
	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK_STR(cfg.token, "hf_from_option");
	CHECK_STR(cfg.token_source, joined("token file ", file));
	hubfs_config_free(&cfg);
}

static void test_config__env_hf_token_beats_files(void)
{
	struct hubfs_env env = { .hf_token = " hf_from_env \n",
				 .hf_token_path = token_at("p", "hf_path"),
				 .home = check_tmpdir(), .euid = USER_UID };

	token_is(&env, "hf_from_env", "environment variable HF_TOKEN");
}

static void test_config__env_blank_hf_token_falls_through(void)
{
	const char *path = token_at("p", "hf_path");
	struct hubfs_env env = { .hf_token = " \r\n", .hf_token_path = path,
				 .euid = 0 };

	token_is(&env, "hf_path", joined("token file ", path));
	env.hf_token = "";
	token_is(&env, "hf_path", joined("token file ", path));
}

static void test_config__env_token_path_beats_hf_home(void)
{
	const char *path = token_at("elsewhere/tok", "hf_path");
	struct hubfs_env env = { .hf_token_path = path,
				 .hf_home = check_path("hfhome"),
				 .euid = 0 };

	token_at("hfhome/token", "hf_home");
	token_is(&env, "hf_path", joined("token file ", path));
}

static void test_config__env_token_path_missing_is_anonymous(void)
{
	const char *missing = check_path("missing/token");
	struct hubfs_env env = { .hf_token_path = missing,
				 .hf_home = check_path("hfhome"),
				 .euid = 0 };

	/* HF_TOKEN_PATH names the one file: no fallback to HF_HOME. */
	token_at("hfhome/token", "hf_home");
	token_is(&env, NULL, joined("none (no token file at ", joined(missing,
								      ")")));
}

static void test_config__env_hf_home_beats_xdg(void)
{
	struct hubfs_env env = { .hf_home = check_path("hfhome"),
				 .xdg_cache_home = check_path("xdg"),
				 .home = check_tmpdir(), .euid = USER_UID };
	const char *path = token_at("hfhome/token", "hf_home");

	token_at("xdg/huggingface/token", "hf_xdg");
	token_is(&env, "hf_home", joined("token file ", path));
}

static void test_config__env_xdg_beats_home(void)
{
	struct hubfs_env env = { .xdg_cache_home = check_path("xdg"),
				 .home = check_tmpdir(), .euid = USER_UID };
	const char *path = token_at("xdg/huggingface/token", "hf_xdg");

	token_at(".cache/huggingface/token", "hf_home");
	token_is(&env, "hf_xdg", joined("token file ", path));
}

static void test_config__env_home_default_token(void)
{
	struct hubfs_env env = { .home = check_tmpdir(), .euid = USER_UID };
	const char *path = token_at(".cache/huggingface/token", "hf_home");

	token_is(&env, "hf_home", joined("token file ", path));
}

static void test_config__env_hf_home_tilde(void)
{
	struct hubfs_env env = { .hf_home = "~/hub", .home = check_tmpdir(),
				 .euid = USER_UID };
	const char *path = token_at("hub/token", "hf_tilde");

	token_is(&env, "hf_tilde", joined("token file ", path));
	env.hf_home = NULL;
	env.hf_token_path = "~/hub/token";
	token_is(&env, "hf_tilde", joined("token file ", path));
}

static void test_config__env_default_file_missing_is_anonymous(void)
{
	struct hubfs_env env = { .home = check_tmpdir(), .euid = USER_UID };

	token_is(&env, NULL,
		 joined("none (no token file at ",
			check_path(".cache/huggingface/token)")));
}

static void test_config__env_no_home_no_token(void)
{
	struct hubfs_env env = { .euid = 0 };

	token_is(&env, NULL, "none");
}

static void test_config__env_explicit_token_file_missing(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	const char *missing = check_path("nope");
	struct hubfs_env env = { .hf_token = "hf_env", .euid = USER_UID,
				 .home = check_tmpdir() };

	CHECK_INT(hubfs_config_parse_opts(&cfg, joined("token_file=", missing)),
		  0);
	CHECK_INT(hubfs_config_resolve_env(&cfg, &env), -ENOENT);
	CHECK_STR(hubfs_err_get(),
		  joined(joined("token_file=", missing), ": no such file"));
	CHECK(cfg.token == NULL);
	CHECK(cfg.endpoint == NULL);
	hubfs_config_free(&cfg);
}

static void test_config__env_token_file_is_directory(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env = { .euid = 0 };

	CHECK_INT(hubfs_config_parse_opts(&cfg, joined("token_file=",
						       check_tmpdir())), 0);
	CHECK_INT(hubfs_config_resolve_env(&cfg, &env), -EISDIR);
	CHECK_STR(hubfs_err_get(), joined(joined("cannot read token file ",
						 check_tmpdir()),
					  ": Is a directory"));
	hubfs_config_free(&cfg);
}

/* ---- token content ----------------------------------------------------- */

static void test_config__env_token_whitespace_stripped(void)
{
	struct hubfs_env env = { .hf_token_path = token_at("t", " \t hf_abc "
							  "\r\n\r\n"),
				 .euid = 0 };

	token_is(&env, "hf_abc", joined("token file ", check_path("t")));
}

static void test_config__env_token_empty_file(void)
{
	struct hubfs_env env = { .hf_token_path = token_at("t", "\n"),
				 .euid = 0 };

	token_is(&env, NULL, joined(joined("none (token file ",
					   check_path("t")), " is empty)"));
}

static void test_config__env_token_inner_whitespace_refused(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env = { .hf_token_path = token_at("t", "hf_sec ret\n"),
				 .euid = 0 };

	CHECK_INT(hubfs_config_resolve_env(&cfg, &env), -EINVAL);
	CHECK_STR(hubfs_err_get(),
		  joined(joined("the token in token file ", check_path("t")),
			 " contains whitespace or control characters"));
	CHECK(strstr(hubfs_err_get(), "hf_sec") == NULL);
	env.hf_token = "hf_a\nb";
	CHECK_INT(hubfs_config_resolve_env(&cfg, &env), -EINVAL);
	CHECK_STR(hubfs_err_get(), "the token in environment variable HF_TOKEN "
				   "contains whitespace or control characters");
	hubfs_config_free(&cfg);
}

static void test_config__env_token_file_cap(void)
{
	char content[HUBFS_CONFIG_TOKEN_FILE_MAX + 2];
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env = { .euid = 0 };

	/* Exactly at the cap: accepted. */
	memset(content, '\n', sizeof(content));
	memcpy(content, "hf_capped", 9);
	content[HUBFS_CONFIG_TOKEN_FILE_MAX] = '\0';
	env.hf_token_path = token_at("at_cap", content);
	token_is(&env, "hf_capped", joined("token file ", env.hf_token_path));

	/* One byte more: refused. */
	content[HUBFS_CONFIG_TOKEN_FILE_MAX] = '\n';
	content[HUBFS_CONFIG_TOKEN_FILE_MAX + 1] = '\0';
	env.hf_token_path = token_at("over_cap", content);
	CHECK_INT(hubfs_config_resolve_env(&cfg, &env), -EFBIG);
	CHECK_STR(hubfs_err_get(), joined(joined("token file ",
						 env.hf_token_path),
					  " is larger than 4096 bytes"));
	CHECK(cfg.token == NULL);
	hubfs_config_free(&cfg);
}

static void test_config__env_token_file_exposed(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env = { .hf_token_path = token_at("t", "hf_x"),
				 .euid = 0 };

	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK(!cfg.token_file_exposed);
	CHECK_INT(chmod(env.hf_token_path, 0640), 0);
	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK(cfg.token_file_exposed);
	CHECK_INT(chmod(env.hf_token_path, 0604), 0);
	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK(cfg.token_file_exposed);
	env.hf_token = "hf_env";
	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK(!cfg.token_file_exposed);
	hubfs_config_free(&cfg);
}

/* ---- cache directory --------------------------------------------------- */

static void cache_dir_is(const struct hubfs_env *env, const char *expected)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(resolve(&cfg, env), 0);
	CHECK_STR(cfg.cache_dir, expected);
	CHECK_UINT(cfg.cache_size, HUBFS_CONFIG_CACHE_SIZE_DEFAULT);
	hubfs_config_free(&cfg);
}

static void test_config__env_cache_dir_defaults(void)
{
	struct hubfs_env env = { .xdg_cache_home = "/xdg", .home = "/home/u",
				 .euid = USER_UID };

	cache_dir_is(&env, "/xdg/hubfs");
	env.xdg_cache_home = "/xdg/";
	cache_dir_is(&env, "/xdg/hubfs");
	env.xdg_cache_home = NULL;
	cache_dir_is(&env, "/home/u/.cache/hubfs");
	env.xdg_cache_home = "relative";	/* ignored, as XDG says */
	cache_dir_is(&env, "/home/u/.cache/hubfs");
	env.euid = 0;
	cache_dir_is(&env, "/var/cache/hubfs");
}

static void test_config__env_cache_dir_option_kept(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env = { .euid = 0 };

	CHECK_INT(hubfs_config_parse_opts(&cfg, "cache_dir=/srv/c"), 0);
	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK_STR(cfg.cache_dir, "/srv/c");
	hubfs_config_free(&cfg);
}

static void test_config__env_cache_dir_needs_home(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env = { .home = "relative", .euid = USER_UID };

	CHECK_INT(hubfs_config_resolve_env(&cfg, &env), -EINVAL);
	CHECK_STR(hubfs_err_get(), "cannot choose a cache directory: HOME is "
				   "not an absolute path; use -o "
				   "cache_dir=PATH");
	env.home = NULL;
	CHECK_INT(hubfs_config_resolve_env(&cfg, &env), -EINVAL);
	CHECK(cfg.endpoint == NULL);
	hubfs_config_free(&cfg);
}

/* ---- the whole step ---------------------------------------------------- */

static void test_config__env_resolve_twice_is_stable(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env = { .hf_endpoint = "https://m.example//",
				 .hf_token = "hf_tok", .home = "/h",
				 .euid = USER_UID };

	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK_STR(cfg.endpoint, "https://m.example");
	CHECK_STR(cfg.token, "hf_tok");
	CHECK_STR(cfg.cache_dir, "/h/.cache/hubfs");
	hubfs_config_free(&cfg);
}

static struct hubfs_env oom_env;

static int resolve_oom(void *cfg)
{
	return hubfs_config_resolve_env(cfg, &oom_env);
}

static void env_untouched(void *arg)
{
	struct hubfs_config *cfg = arg;

	CHECK(cfg->endpoint == NULL);
	CHECK(cfg->token == NULL);
	CHECK(cfg->token_source == NULL);
	CHECK(cfg->cache_dir == NULL);
	CHECK_STR(cfg->repo_name, "m");
}

static void test_config__env_out_of_memory(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	unsigned long runs;

	oom_env = (struct hubfs_env){ .hf_token_path = token_at("t", "hf_oom"),
				      .home = "/h", .euid = USER_UID };
	CHECK_INT(hubfs_config_parse_source(&cfg, "org/m"), 0);
	CHECK_INT(check_alloc_failures(resolve_oom, env_untouched, &cfg, &runs),
		  0);
	CHECK(runs >= 6);
	CHECK_STR(cfg.token, "hf_oom");
	CHECK_STR(cfg.cache_dir, "/h/.cache/hubfs");
	hubfs_config_free(&cfg);
}

static void test_config__env_read_from_process(void)
{
	struct hubfs_env env;

	setenv("HF_ENDPOINT", "https://e.example", 1);
	setenv("HF_TOKEN", "hf_process", 1);
	setenv("HF_TOKEN_PATH", "/tp", 1);
	setenv("HF_HOME", "/hh", 1);
	setenv("XDG_CACHE_HOME", "/xc", 1);
	setenv("HOME", "/home/p", 1);
	hubfs_config_env_read(&env);
	CHECK_STR(env.hf_endpoint, "https://e.example");
	CHECK_STR(env.hf_token, "hf_process");
	CHECK_STR(env.hf_token_path, "/tp");
	CHECK_STR(env.hf_home, "/hh");
	CHECK_STR(env.xdg_cache_home, "/xc");
	CHECK_STR(env.home, "/home/p");
	CHECK_UINT(env.euid, geteuid());
	unsetenv("HF_TOKEN");
	hubfs_config_env_read(&env);
	CHECK(env.hf_token == NULL);
}

/* ---- describe ---------------------------------------------------------- */

static void test_config__describe_never_shows_token(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env = { .hf_token = "hf_secretsecret", .euid = 0 };
	char line[512];

	CHECK_INT(hubfs_config_parse_source(&cfg, "datasets/org/d@v1"), 0);
	CHECK_INT(hubfs_config_parse_opts(&cfg, "ro,cache_size=512M"), 0);
	CHECK_INT(resolve(&cfg, &env), 0);
	CHECK_INT(hubfs_config_describe(line, sizeof(line), &cfg), 0);
	CHECK_STR(line, "dataset org/d@v1 at https://huggingface.co, token: "
			"environment variable HF_TOKEN, cache: "
			"/var/cache/hubfs (512 MiB), read-only");
	CHECK(strstr(line, "secret") == NULL);
	hubfs_config_free(&cfg);
}

static void test_config__describe_unresolved_and_cut(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	char line[512];

	CHECK_INT(hubfs_config_parse_opts(&cfg, "cache_size=1000"), 0);
	CHECK_INT(hubfs_config_describe(line, sizeof(line), &cfg), 0);
	CHECK_STR(line, "model ?/? at (unresolved), token: (unresolved), "
			"cache: (unresolved) (1000 bytes), read-write");
	CHECK_INT(hubfs_config_describe(line, 10, &cfg), -ENOSPC);
	CHECK_STR(line, "model ?/?");
	CHECK_INT(hubfs_config_describe(line, 0, &cfg), -ENOSPC);
	hubfs_config_free(&cfg);
}

static void test_config__free_resets(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(hubfs_config_parse_opts(&cfg, "ro,cache_size=1G,uid=3"), 0);
	hubfs_config_free(&cfg);
	CHECK(!cfg.ro);
	CHECK(!cfg.uid_set);
	CHECK_UINT(cfg.cache_size, HUBFS_CONFIG_CACHE_SIZE_DEFAULT);
	hubfs_config_free(&cfg);
	hubfs_config_free(NULL);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_config__env_endpoint_default),
	CHECK_TEST(test_config__env_endpoint_precedence),
	CHECK_TEST(test_config__env_endpoint_trailing_slash),
	CHECK_TEST(test_config__env_endpoint_bad_scheme),
	CHECK_TEST(test_config__env_endpoint_bad_characters),
	CHECK_TEST(test_config__env_token_file_option_wins),
	CHECK_TEST(test_config__env_hf_token_beats_files),
	CHECK_TEST(test_config__env_blank_hf_token_falls_through),
	CHECK_TEST(test_config__env_token_path_beats_hf_home),
	CHECK_TEST(test_config__env_token_path_missing_is_anonymous),
	CHECK_TEST(test_config__env_hf_home_beats_xdg),
	CHECK_TEST(test_config__env_xdg_beats_home),
	CHECK_TEST(test_config__env_home_default_token),
	CHECK_TEST(test_config__env_hf_home_tilde),
	CHECK_TEST(test_config__env_default_file_missing_is_anonymous),
	CHECK_TEST(test_config__env_no_home_no_token),
	CHECK_TEST(test_config__env_explicit_token_file_missing),
	CHECK_TEST(test_config__env_token_file_is_directory),
	CHECK_TEST(test_config__env_token_whitespace_stripped),
	CHECK_TEST(test_config__env_token_empty_file),
	CHECK_TEST(test_config__env_token_inner_whitespace_refused),
	CHECK_TEST(test_config__env_token_file_cap),
	CHECK_TEST(test_config__env_token_file_exposed),
	CHECK_TEST(test_config__env_cache_dir_defaults),
	CHECK_TEST(test_config__env_cache_dir_option_kept),
	CHECK_TEST(test_config__env_cache_dir_needs_home),
	CHECK_TEST(test_config__env_resolve_twice_is_stable),
	CHECK_TEST(test_config__env_out_of_memory),
	CHECK_TEST(test_config__env_read_from_process),
	CHECK_TEST(test_config__describe_never_shows_token),
	CHECK_TEST(test_config__describe_unresolved_and_cut),
	CHECK_TEST(test_config__free_resets),
};

CHECK_MAIN(tests)
