/*
 * Fuzz the mount configuration parsers.
 *
 * Input: a source argument, then optionally a newline and an -o option
 * string.  Both go through the parsers in both orders; whatever is
 * accepted is then resolved against an environment that names no files,
 * described, and redacted.  The target checks the parsers' contract:
 * no crash, no leak, and a failed step leaves the configuration as it
 * was (compared through hubfs_config_describe()).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "hubfs/config.h"
#include "hubfs/log.h"

/* Run one parse step and abort if a failure changed the config. */
static void step(struct hubfs_config *cfg, int (*parse)(struct hubfs_config *,
							const char *),
		 const char *arg)
{
	char before[1024], after[1024];

	hubfs_config_describe(before, sizeof(before), cfg);
	if (parse(cfg, arg) != 0) {
		hubfs_config_describe(after, sizeof(after), cfg);
		if (strcmp(before, after) != 0)
			abort();
	}
}

static void run(const char *source, const char *opts, bool opts_first)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	const struct hubfs_env env = { .hf_endpoint = "http://127.0.0.1:1/",
				       .euid = 0 };
	char line[1024];

	if (opts_first && opts)
		step(&cfg, hubfs_config_parse_opts, opts);
	step(&cfg, hubfs_config_parse_source, source);
	if (!opts_first && opts)
		step(&cfg, hubfs_config_parse_opts, opts);
	/* A token_file= would make the fuzzer read arbitrary files. */
	if (!cfg.token_file)
		hubfs_config_resolve_env(&cfg, &env);
	hubfs_config_describe(line, sizeof(line), &cfg);
	hubfs_log_redact(line, sizeof(line), source);
	hubfs_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	char *opts;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	opts = strchr(text, '\n');
	if (opts)
		*opts++ = '\0';
	run(text, opts, false);
	run(text, opts, true);
	free(text);
	return 0;
}
