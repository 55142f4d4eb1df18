/*
 * Unit tests for hubfs_config_parse_source().
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "hubfs/config.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

/* Parse @source into a fresh config and check every repository field. */
static void src_ok(const char *source, enum hubfs_repo_type type,
		   const char *ns, const char *name, const char *revision)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	int err = hubfs_config_parse_source(&cfg, source);

	if (err)
		check_fail(__FILE__, __LINE__, "'%s' refused: %s", source,
			   hubfs_err_get());
	CHECK_INT(err, 0);
	CHECK_INT(cfg.repo_type, type);
	CHECK_STR(cfg.repo_namespace, ns);
	CHECK_STR(cfg.repo_name, name);
	CHECK_STR(cfg.revision, revision);
	hubfs_config_free(&cfg);
}

/*
 * Check that @source is refused with -EINVAL and exactly the detail
 * "invalid source '<source>': <why>", and that a config holding an earlier
 * source is left as it was.
 */
static void src_bad(const char *source, const char *why)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	char expected[HUBFS_ERR_MAX];

	CHECK_INT(hubfs_config_parse_source(&cfg, "datasets/keep/me@v1"), 0);
	hubfs_err_clear();
	CHECK_INT(hubfs_config_parse_source(&cfg, source), -EINVAL);
	snprintf(expected, sizeof(expected), "invalid source '%s': %s", source,
		 why);
	CHECK_STR(hubfs_err_get(), expected);
	CHECK_INT(cfg.repo_type, HUBFS_REPO_DATASET);
	CHECK_STR(cfg.repo_namespace, "keep");
	CHECK_STR(cfg.repo_name, "me");
	CHECK_STR(cfg.revision, "v1");
	hubfs_config_free(&cfg);
}

static void test_config__source_plain(void)
{
	src_ok("openai/gpt-oss-20b", HUBFS_REPO_MODEL, "openai", "gpt-oss-20b",
	       NULL);
}

static void test_config__source_type_prefixes(void)
{
	src_ok("models/org/m", HUBFS_REPO_MODEL, "org", "m", NULL);
	src_ok("datasets/org/d", HUBFS_REPO_DATASET, "org", "d", NULL);
	src_ok("spaces/org/s", HUBFS_REPO_SPACE, "org", "s", NULL);
}

static void test_config__source_hf_scheme(void)
{
	src_ok("hf://org/m", HUBFS_REPO_MODEL, "org", "m", NULL);
	src_ok("hf://datasets/org/d@main", HUBFS_REPO_DATASET, "org", "d",
	       "main");
}

static void test_config__source_with_revision(void)
{
	src_ok("org/m@main", HUBFS_REPO_MODEL, "org", "m", "main");
	src_ok("org/m@v1.0", HUBFS_REPO_MODEL, "org", "m", "v1.0");
	src_ok("org/m@0123456789abcdef0123456789abcdef01234567",
	       HUBFS_REPO_MODEL, "org", "m",
	       "0123456789abcdef0123456789abcdef01234567");
	src_ok("org/m@a@b", HUBFS_REPO_MODEL, "org", "m", "a@b");
}

static void test_config__source_special_refs(void)
{
	src_ok("org/m@refs/pr/12", HUBFS_REPO_MODEL, "org", "m", "refs/pr/12");
	src_ok("datasets/org/d@refs/convert/parquet", HUBFS_REPO_DATASET,
	       "org", "d", "refs/convert/parquet");
	src_ok("org/m@refs/convert/duck_db2", HUBFS_REPO_MODEL, "org", "m",
	       "refs/convert/duck_db2");
}

static void test_config__source_encoded_revision(void)
{
	src_ok("org/m@feature%2Fx", HUBFS_REPO_MODEL, "org", "m", "feature/x");
	src_ok("org/m@feature%2fx", HUBFS_REPO_MODEL, "org", "m", "feature/x");
	src_ok("org/m@refs%2Fpr%2F3", HUBFS_REPO_MODEL, "org", "m",
	       "refs/pr/3");
	src_ok("org/m@100%25", HUBFS_REPO_MODEL, "org", "m", "100%");
}

static void test_config__source_name_characters(void)
{
	char name[HUBFS_CONFIG_SEGMENT_MAX + 1];

	src_ok("A-b_c.d/X.y_z-0", HUBFS_REPO_MODEL, "A-b_c.d", "X.y_z-0", NULL);
	src_ok("a/b", HUBFS_REPO_MODEL, "a", "b", NULL);
	src_ok("org/_x_", HUBFS_REPO_MODEL, "org", "_x_", NULL);
	memset(name, 'n', HUBFS_CONFIG_SEGMENT_MAX);
	name[HUBFS_CONFIG_SEGMENT_MAX] = '\0';
	{
		char source[2 * sizeof(name) + 2];

		snprintf(source, sizeof(source), "%s/%s", name, name);
		src_ok(source, HUBFS_REPO_MODEL, name, name, NULL);
	}
}

static void test_config__source_reject_shape(void)
{
	src_bad("", "expected NAMESPACE/NAME");
	src_bad("gpt2", "expected NAMESPACE/NAME");
	src_bad("hf://", "expected NAMESPACE/NAME");
	src_bad("a/b/c/d", "too many '/': expected [TYPE/]NAMESPACE/NAME");
	src_bad("/org/m", "empty part: expected [TYPE/]NAMESPACE/NAME");
	src_bad("org/m/", "empty part: expected [TYPE/]NAMESPACE/NAME");
	src_bad("org//m", "empty part: expected [TYPE/]NAMESPACE/NAME");
	src_bad("datasets/squad", "expected datasets/NAMESPACE/NAME");
	src_bad("org/m@", "the revision after '@' is empty");
}

static void test_config__source_reject_type(void)
{
	src_bad("dataset/org/d", "use the plural type prefix 'datasets/'");
	src_bad("model/org/m", "use the plural type prefix 'models/'");
	src_bad("space/org/s", "use the plural type prefix 'spaces/'");
	src_bad("kernels/org/k", "unknown repository type 'kernels/' (use "
				 "models/, datasets/ or spaces/)");
	src_bad("Datasets/org/d", "unknown repository type 'Datasets/' (use "
				  "models/, datasets/ or spaces/)");
}

static void test_config__source_reject_characters(void)
{
	const char *chars = "the name may contain only letters, digits, '-', "
			    "'_' and '.'";

	src_bad("org/na me", chars);
	src_bad("org/na+me", chars);
	src_bad("org/n\xc3\xa4me", chars);
	src_bad("or:g/m", "the namespace may contain only letters, digits, "
			  "'-', '_' and '.'");
}

static void test_config__source_reject_edges(void)
{
	src_bad("org/-m", "the name may not start or end with '-' or '.'");
	src_bad("org/m-", "the name may not start or end with '-' or '.'");
	src_bad("org/.m", "the name may not start or end with '-' or '.'");
	src_bad("org/m.", "the name may not start or end with '-' or '.'");
	src_bad("-org/m", "the namespace may not start or end with '-' or '.'");
	src_bad("org/a--b", "the name may not contain '--' or '..'");
	src_bad("org/a..b", "the name may not contain '--' or '..'");
	src_bad("o--rg/m", "the namespace may not contain '--' or '..'");
	src_bad("org/m.git", "the name may not end in '.git'");
	src_bad("org.git/m", "the namespace may not end in '.git'");
}

static void test_config__source_reject_length(void)
{
	char long_name[HUBFS_CONFIG_SEGMENT_MAX + 2];
	char source[2 * sizeof(long_name)];

	memset(long_name, 'n', HUBFS_CONFIG_SEGMENT_MAX + 1);
	long_name[HUBFS_CONFIG_SEGMENT_MAX + 1] = '\0';
	snprintf(source, sizeof(source), "org/%s", long_name);
	src_bad(source, "the name is longer than 96 characters");
	snprintf(source, sizeof(source), "%s/m", long_name);
	src_bad(source, "the namespace is longer than 96 characters");
}

static void test_config__source_reject_revision(void)
{
	const char *slash = "write '/' in a revision as %2F, as in "
			    "'feature%2Fx'";
	const char *pr = "'refs/pr/' must be followed by a pull request number";
	const char *convert = "'refs/convert/' must be followed by a name "
			      "such as 'parquet'";
	const char *escape = "bad percent-escape in the revision";
	const char *space = "the revision may not contain spaces or control "
			    "characters";

	src_bad("org/m@feature/x", slash);
	src_bad("org/m@refs/heads/main", slash);
	src_bad("org/m@refs/pr/", pr);
	src_bad("org/m@refs/pr/x", pr);
	src_bad("org/m@refs/pr/1/2", pr);
	src_bad("org/m@refs/convert/", convert);
	src_bad("org/m@refs/convert/a/b", convert);
	src_bad("org/m@refs/convert/a-b", convert);
	src_bad("org/m@bad%2", escape);
	src_bad("org/m@bad%", escape);
	src_bad("org/m@bad%zz", escape);
	src_bad("org/m@bad%g1", escape);
	src_bad("org/m@nul%00", space);
	src_bad("org/m@line%0Afeed", space);
	src_bad("org/m@my branch", space);
	src_bad("org/m@del\x7f", space);
}

static void test_config__source_revision_conflict(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(hubfs_config_parse_opts(&cfg, "revision=main"), 0);
	CHECK_INT(hubfs_config_parse_source(&cfg, "org/m@dev"), -EINVAL);
	CHECK_STR(hubfs_err_get(), "invalid source 'org/m@dev': conflicting "
				   "revisions 'main' and 'dev'");
	CHECK(cfg.repo_name == NULL);
	CHECK_STR(cfg.revision, "main");
	CHECK_INT(hubfs_config_parse_source(&cfg, "org/m@main"), 0);
	CHECK_STR(cfg.revision, "main");
	hubfs_config_free(&cfg);
}

/* After the options @opts, @source must give the revision @expected. */
static void revision_after_opts(const char *opts, const char *source,
				const char *expected)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(hubfs_config_parse_opts(&cfg, opts), 0);
	CHECK_INT(hubfs_config_parse_source(&cfg, source), 0);
	CHECK_STR(cfg.revision, expected);
	hubfs_config_free(&cfg);
}

static void test_config__source_encoded_revision_matches_option(void)
{
	revision_after_opts("revision=feature/x", "org/m@feature%2Fx",
			    "feature/x");
	revision_after_opts("revision=main", "org/m@main", "main");
}

static void test_config__source_without_revision_keeps_option(void)
{
	revision_after_opts("revision=v2", "spaces/org/s", "v2");
}

static void test_config__source_parsed_twice_replaces(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;

	CHECK_INT(hubfs_config_parse_source(&cfg, "datasets/a/b"), 0);
	CHECK_INT(hubfs_config_parse_source(&cfg, "c/d"), 0);
	CHECK_INT(cfg.repo_type, HUBFS_REPO_MODEL);
	CHECK_STR(cfg.repo_namespace, "c");
	CHECK_STR(cfg.repo_name, "d");
	hubfs_config_free(&cfg);
}

/*
 * Fail each allocation in turn: every failure must be -ENOMEM with the
 * config untouched, and the walk must end in success.
 */
static int parse_oom_source(void *cfg)
{
	return hubfs_config_parse_source(cfg, "datasets/o/n@a%2Fb");
}

static void source_untouched(void *arg)
{
	struct hubfs_config *cfg = arg;

	CHECK(cfg->repo_name == NULL);
	CHECK(cfg->revision == NULL);
	CHECK_STR(cfg->cache_dir, "/c");
}

static void test_config__source_out_of_memory(void)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	unsigned long runs;

	CHECK_INT(hubfs_config_parse_opts(&cfg, "ro,cache_dir=/c"), 0);
	CHECK_INT(check_alloc_failures(parse_oom_source, source_untouched, &cfg,
				       &runs), 0);
	CHECK(runs >= 4);
	CHECK_STR(cfg.revision, "a/b");
	CHECK(cfg.ro);
	hubfs_config_free(&cfg);
}

static void test_config__repo_type_names(void)
{
	CHECK_STR(hubfs_config_repo_type_name(HUBFS_REPO_MODEL), "model");
	CHECK_STR(hubfs_config_repo_type_name(HUBFS_REPO_DATASET), "dataset");
	CHECK_STR(hubfs_config_repo_type_name(HUBFS_REPO_SPACE), "space");
}

static const struct check_test tests[] = {
	CHECK_TEST(test_config__source_plain),
	CHECK_TEST(test_config__source_type_prefixes),
	CHECK_TEST(test_config__source_hf_scheme),
	CHECK_TEST(test_config__source_with_revision),
	CHECK_TEST(test_config__source_special_refs),
	CHECK_TEST(test_config__source_encoded_revision),
	CHECK_TEST(test_config__source_name_characters),
	CHECK_TEST(test_config__source_reject_shape),
	CHECK_TEST(test_config__source_reject_type),
	CHECK_TEST(test_config__source_reject_characters),
	CHECK_TEST(test_config__source_reject_edges),
	CHECK_TEST(test_config__source_reject_length),
	CHECK_TEST(test_config__source_reject_revision),
	CHECK_TEST(test_config__source_revision_conflict),
	CHECK_TEST(test_config__source_encoded_revision_matches_option),
	CHECK_TEST(test_config__source_without_revision_keeps_option),
	CHECK_TEST(test_config__source_parsed_twice_replaces),
	CHECK_TEST(test_config__source_out_of_memory),
	CHECK_TEST(test_config__repo_type_names),
};

CHECK_MAIN(tests)
