/*
 * Unit tests for hubfs_config_parse_opts().
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "hubfs/config.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

/* Apply @opts to a fresh config, expecting success. */
static int parse(struct hubfs_config *cfg, const char *opts)
{
	int err = hubfs_config_parse_opts(cfg, opts);

	if (err)
		check_fail(__FILE__, __LINE__, "'%s' refused: %s", opts,
			   hubfs_err_get());
	return err;
}

/*
 * Check that @opts is refused with -EINVAL and exactly the detail @why,
 * leaving a config that already holds "ro,uid=7" as it was.
 */
static void opts_bad(const char *opts, const char *why)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(parse(&cfg, "ro,uid=7"), 0);
	CHECK_INT(hubfs_config_parse_opts(&cfg, opts), -EINVAL);
	CHECK_STR(hubfs_err_get(), why);
	CHECK(cfg.ro);
	CHECK(cfg.uid_set);
	CHECK_UINT(cfg.uid, 7);
	CHECK(!cfg.gid_set);
	CHECK(cfg.revision == NULL);
	CHECK_UINT(cfg.cache_size, HUBFS_CONFIG_CACHE_SIZE_DEFAULT);
	CHECK(cfg.fuse_opts == NULL);
	hubfs_config_free(&cfg);
}

/* Parse "cache_size=@value" and check the byte count. */
static void size_ok(const char *value, unsigned long long bytes)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	char opt[128];

	snprintf(opt, sizeof(opt), "cache_size=%s", value);
	CHECK_INT(parse(&cfg, opt), 0);
	CHECK_UINT(cfg.cache_size, bytes);
	hubfs_config_free(&cfg);
}

static void size_bad(const char *value, const char *why)
{
	char opt[128], expected[256];

	snprintf(opt, sizeof(opt), "cache_size=%s", value);
	snprintf(expected, sizeof(expected), "cache_size=%s: %s", value, why);
	opts_bad(opt, expected);
}

/* "@name=@value" must be refused as not a number in [@min, @max]. */
static void number_bad(const char *name, const char *value,
		       unsigned long long min, unsigned long long max)
{
	char opt[128], expected[256];

	snprintf(opt, sizeof(opt), "%s=%s", name, value);
	snprintf(expected, sizeof(expected),
		 "%s: expected a whole number from %llu to %llu", opt, min,
		 max);
	opts_bad(opt, expected);
}

static void test_config__opts_defaults(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(cfg.repo_type, HUBFS_REPO_MODEL);
	CHECK_UINT(cfg.cache_size, 10ULL * 1024 * 1024 * 1024);
	CHECK_UINT(cfg.refresh, 30);
	CHECK(!cfg.ro);
	CHECK(!cfg.allow_other);
	CHECK(!cfg.no_upload_at_close);
	CHECK(!cfg.uid_set);
	CHECK(!cfg.gid_set);
	CHECK(!cfg.debug);
	CHECK(!cfg.foreground);
	CHECK(cfg.endpoint == NULL);
	CHECK(cfg.fuse_opts == NULL);
	CHECK_UINT(cfg.max_read, 0);
}

static void test_config__opts_values(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(parse(&cfg, "revision=v1.2,endpoint=http://127.0.0.1:8080/,"
			      "token_file=tok,cache_dir=/var/tmp/c,"
			      "cache_size=2G,uid=1000,gid=100,refresh=5"),
		  0);
	CHECK_STR(cfg.revision, "v1.2");
	CHECK_STR(cfg.endpoint, "http://127.0.0.1:8080/");
	CHECK_STR(cfg.token_file, "tok");
	CHECK_STR(cfg.cache_dir, "/var/tmp/c");
	CHECK_UINT(cfg.cache_size, 2ULL << 30);
	CHECK(cfg.uid_set);
	CHECK_UINT(cfg.uid, 1000);
	CHECK(cfg.gid_set);
	CHECK_UINT(cfg.gid, 100);
	CHECK_UINT(cfg.refresh, 5);
	hubfs_config_free(&cfg);
}

static void test_config__opts_flags(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(parse(&cfg, "ro,allow_other,foreground"), 0);
	CHECK(cfg.ro);
	CHECK(cfg.allow_other);
	CHECK(!cfg.debug);
	CHECK(cfg.foreground);
	hubfs_config_free(&cfg);
	CHECK_INT(parse(&cfg, "debug"), 0);
	CHECK(cfg.debug);
	CHECK(cfg.foreground);
	CHECK_INT(parse(&cfg, "rw"), 0);
	CHECK(!cfg.ro);
	CHECK_INT(parse(&cfg, "rw,ro"), 0);
	CHECK(cfg.ro);
	hubfs_config_free(&cfg);
	CHECK_INT(parse(&cfg, "noupload_at_close"), 0);
	CHECK(cfg.no_upload_at_close);
	CHECK_INT(parse(&cfg, "upload_at_close"), 0);
	CHECK(!cfg.no_upload_at_close);
	CHECK_INT(parse(&cfg, "upload_at_close,noupload_at_close"), 0);
	CHECK(cfg.no_upload_at_close);
	hubfs_config_free(&cfg);
}

static void test_config__opts_later_value_wins(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(parse(&cfg, "cache_size=1G,uid=1"), 0);
	CHECK_INT(parse(&cfg, "cache_size=3M,uid=2,cache_dir=/a,cache_dir=/b"),
		  0);
	CHECK_UINT(cfg.cache_size, 3ULL << 20);
	CHECK_UINT(cfg.uid, 2);
	CHECK_STR(cfg.cache_dir, "/b");
	hubfs_config_free(&cfg);
}

static void test_config__opts_empty_items_skipped(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(parse(&cfg, ""), 0);
	CHECK_INT(parse(&cfg, ",,ro,,"), 0);
	CHECK(cfg.ro);
	hubfs_config_free(&cfg);
}

static void test_config__opts_mount_options_ignored(void)
{
	static const char *const ignored[] = {
		"_netdev", "nofail", "noauto", "auto", "user", "nouser",
		"users", "defaults", "dev", "nodev", "suid", "nosuid", "exec",
		"noexec", "atime", "noatime", "relatime",
		"x-systemd.automount", "x-systemd.mount-timeout=30",
		"x-gvfs-show", "comment=systemd.automount", "comment=",
		"user=alice",
	};
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
		CHECK_INT(parse(&cfg, ignored[i]), 0);
		CHECK(!cfg.ro);
		CHECK(cfg.fuse_opts == NULL);
		CHECK(cfg.revision == NULL);
	}
	CHECK_INT(parse(&cfg, "rw,nosuid,nodev,relatime,_netdev,x-systemd."
			      "requires=network-online.target,ro"),
		  0);
	CHECK(cfg.ro);
	hubfs_config_free(&cfg);
}

static void test_config__opts_fuse_passthrough(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(parse(&cfg, "max_read=131072"), 0);
	CHECK_STR(cfg.fuse_opts, "max_read=131072");
	CHECK_UINT(cfg.max_read, 131072);
	CHECK_INT(parse(&cfg, "default_permissions,ro"), 0);
	CHECK_STR(cfg.fuse_opts, "max_read=131072,default_permissions");
	CHECK_INT(parse(&cfg, "max_read=0065536"), 0);
	CHECK_STR(cfg.fuse_opts,
		  "max_read=131072,default_permissions,max_read=65536");
	CHECK_UINT(cfg.max_read, 65536);
	hubfs_config_free(&cfg);
}

static void test_config__opts_unknown_option(void)
{
	opts_bad("bogus", "unknown mount option 'bogus'");
	opts_bad("ro,bogus=1", "unknown mount option 'bogus=1'");
	opts_bad("RO", "unknown mount option 'RO'");
	opts_bad("allow_root", "unknown mount option 'allow_root'");
	opts_bad("nofail=1", "unknown mount option 'nofail=1'");
	opts_bad("=x", "unknown mount option '=x'");
}

static void test_config__opts_comma_in_value_hint(void)
{
	opts_bad("cache_dir=/a,b", "unknown mount option 'b' (option values "
				   "cannot contain commas)");
	/* After a number or a flag, no hint. */
	opts_bad("uid=1,000", "unknown mount option '000'");
	opts_bad("ro,b", "unknown mount option 'b'");
}

static void test_config__opts_value_presence(void)
{
	opts_bad("ro=1", "option 'ro' takes no value");
	opts_bad("default_permissions=yes",
		 "option 'default_permissions' takes no value");
	opts_bad("uid", "option 'uid' needs a value (uid=...)");
	opts_bad("revision=", "option 'revision' needs a value (revision=...)");
	opts_bad("endpoint=", "option 'endpoint' needs a value (endpoint=...)");
	opts_bad("token_file=",
		 "option 'token_file' needs a value (token_file=...)");
	opts_bad("cache_dir", "option 'cache_dir' needs a value "
			      "(cache_dir=...)");
}

static void test_config__opts_cache_dir_absolute(void)
{
	opts_bad("cache_dir=relative/c",
		 "cache_dir=relative/c: must be an absolute path");
	opts_bad("cache_dir=~/c", "cache_dir=~/c: must be an absolute path");
}

static void test_config__opts_size_suffixes(void)
{
	size_ok("1", 1);
	size_ok("4096", 4096);
	size_ok("1K", 1024);
	size_ok("1k", 1024);
	size_ok("3KiB", 3 * 1024);
	size_ok("3kib", 3 * 1024);
	size_ok("5M", 5ULL << 20);
	size_ok("5MiB", 5ULL << 20);
	size_ok("5mIb", 5ULL << 20);
	size_ok("7G", 7ULL << 30);
	size_ok("7GiB", 7ULL << 30);
	size_ok("2T", 2ULL << 40);
	size_ok("2TiB", 2ULL << 40);
	size_ok("2tib", 2ULL << 40);
	size_ok("010G", 10ULL << 30);
}

static void test_config__opts_size_limits(void)
{
	size_ok("18446744073709551615", 18446744073709551615ULL);
	size_ok("16777215T", 16777215ULL << 40);
	size_ok("17179869183G", 17179869183ULL << 30);
	size_bad("18446744073709551616", "too large");
	size_bad("16777216T", "too large");
	size_bad("17179869184G", "too large");
	size_bad("99999999999999999999999999999999999999", "too large");
	size_bad("0", "must be more than 0");
	size_bad("0G", "must be more than 0");
}

static void test_config__opts_size_malformed(void)
{
	const char *form = "expected a size such as 512M or 20G";

	size_bad("G", form);
	size_bad("-1", form);
	size_bad("+1", form);
	size_bad(" 1", form);
	size_bad("x1", form);
	size_bad("1KB", "unknown unit 'KB' (use K, M, G, T or KiB, MiB, GiB, "
			"TiB)");
	size_bad("1.5G", "unknown unit '.5G' (use K, M, G, T or KiB, MiB, "
			 "GiB, TiB)");
	size_bad("1 G", "unknown unit ' G' (use K, M, G, T or KiB, MiB, GiB, "
			"TiB)");
	size_bad("1P", "unknown unit 'P' (use K, M, G, T or KiB, MiB, GiB, "
		       "TiB)");
	size_bad("1Gi", "unknown unit 'Gi' (use K, M, G, T or KiB, MiB, GiB, "
			"TiB)");
}

static void test_config__opts_uid_gid_range(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(parse(&cfg, "uid=0,gid=0"), 0);
	CHECK(cfg.uid_set);
	CHECK_UINT(cfg.uid, 0);
	CHECK(cfg.gid_set);
	CHECK_UINT(cfg.gid, 0);
	CHECK_INT(parse(&cfg, "uid=4294967294,gid=4294967294"), 0);
	CHECK_UINT(cfg.uid, 4294967294U);
	CHECK_UINT(cfg.gid, 4294967294U);
	hubfs_config_free(&cfg);
	number_bad("uid", "4294967295", 0, 4294967294U);
	number_bad("gid", "4294967295", 0, 4294967294U);
	number_bad("uid", "-1", 0, 4294967294U);
	number_bad("gid", "abc", 0, 4294967294U);
	number_bad("uid", "99999999999999999999999", 0, 4294967294U);
	/* The exact text once, so the helper itself cannot drift. */
	opts_bad("uid=x", "uid=x: expected a whole number from 0 to "
			  "4294967294");
}

static void test_config__opts_refresh_range(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(parse(&cfg, "refresh=0"), 0);
	CHECK_UINT(cfg.refresh, 0);
	CHECK_INT(parse(&cfg, "refresh=86400"), 0);
	CHECK_UINT(cfg.refresh, 86400);
	hubfs_config_free(&cfg);
	number_bad("refresh", "86401", 0, 86400);
	number_bad("refresh", "1s", 0, 86400);
}

static void test_config__opts_max_read_range(void)
{
	number_bad("max_read", "0", 1, 4294967295U);
	number_bad("max_read", "4294967296", 1, 4294967295U);
}

static void test_config__opts_revision_conflict(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	opts_bad("revision=a,revision=b", "conflicting revisions 'a' and 'b'");
	CHECK_INT(parse(&cfg, "revision=a,revision=a"), 0);
	CHECK_STR(cfg.revision, "a");
	hubfs_config_free(&cfg);
	CHECK_INT(hubfs_config_parse_source(&cfg, "org/m@dev"), 0);
	CHECK_INT(hubfs_config_parse_opts(&cfg, "revision=main"), -EINVAL);
	CHECK_STR(hubfs_err_get(), "conflicting revisions 'dev' and 'main'");
	CHECK_STR(cfg.revision, "dev");
	hubfs_config_free(&cfg);
}

static void test_config__opts_revision_characters(void)
{
	const char *why = "the revision may not contain spaces or control "
			  "characters";

	opts_bad("revision=a b", why);
	opts_bad("revision=a\tb", why);
	opts_bad("revision=a\x7f", why);
}

static void test_config__opts_failure_leaves_config_unchanged(void)
{
	opts_bad("gid=5,revision=r,max_read=4096,cache_size=1G,nope",
		 "unknown mount option 'nope'");
}

static int parse_oom_opts(void *cfg)
{
	return hubfs_config_parse_opts(cfg, "revision=r,max_read=8192,"
					    "default_permissions,ro");
}

static void opts_untouched(void *arg)
{
	struct hubfs_config *cfg = arg;

	CHECK(cfg->revision == NULL);
	CHECK(cfg->fuse_opts == NULL);
	CHECK(!cfg->ro);
	CHECK_STR(cfg->cache_dir, "/c");
}

static void test_config__opts_out_of_memory(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	unsigned long runs;

	CHECK_INT(parse(&cfg, "cache_dir=/c"), 0);
	CHECK_INT(check_alloc_failures(parse_oom_opts, opts_untouched, &cfg,
				       &runs), 0);
	CHECK(runs >= 6);
	CHECK_STR(cfg.fuse_opts, "max_read=8192,default_permissions");
	hubfs_config_free(&cfg);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_config__opts_defaults),
	CHECK_TEST(test_config__opts_values),
	CHECK_TEST(test_config__opts_flags),
	CHECK_TEST(test_config__opts_later_value_wins),
	CHECK_TEST(test_config__opts_empty_items_skipped),
	CHECK_TEST(test_config__opts_mount_options_ignored),
	CHECK_TEST(test_config__opts_fuse_passthrough),
	CHECK_TEST(test_config__opts_unknown_option),
	CHECK_TEST(test_config__opts_comma_in_value_hint),
	CHECK_TEST(test_config__opts_value_presence),
	CHECK_TEST(test_config__opts_cache_dir_absolute),
	CHECK_TEST(test_config__opts_size_suffixes),
	CHECK_TEST(test_config__opts_size_limits),
	CHECK_TEST(test_config__opts_size_malformed),
	CHECK_TEST(test_config__opts_uid_gid_range),
	CHECK_TEST(test_config__opts_refresh_range),
	CHECK_TEST(test_config__opts_max_read_range),
	CHECK_TEST(test_config__opts_revision_conflict),
	CHECK_TEST(test_config__opts_revision_characters),
	CHECK_TEST(test_config__opts_failure_leaves_config_unchanged),
	CHECK_TEST(test_config__opts_out_of_memory),
};

CHECK_MAIN(tests)
