/*
 * hub_probe: drive the Hub client (include/hubfs/hub.h) from the command
 * line, so the pytest suite can test it against a real local Hub.
 *
 *	hub_probe [OPTIONS] ENDPOINT TYPE NS/NAME COMMAND [ARGS...]
 *
 * TYPE is model, dataset or space.  Commands:
 *
 *	revision [REV]		"COMMIT TIME" (TIME in Unix seconds)
 *	refs [prs]		"KIND NAME COMMIT" per ref
 *	tree COMMIT		"file|dir OID SIZE lfs|- SHA256|- PATH" each
 *	read COMMIT PATH KEY lfs|regular SIZE OFF LEN [OFF LEN]...
 *				the bytes of each range, in order, on stdout
 *
 * A read checks the client's sink contract as it goes (offsets in order,
 * each byte once, nothing outside the range) and writes to stdout only
 * once every range has been read whole, so a failed read prints nothing.
 *
 * The token is read from the environment variable --token-env names,
 * never from the command line.  Exit status: 0, 1 for a failure (the
 * detail from hubfs_err_get() on stderr), 2 for a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "hubfs/err.h"
#include "hubfs/hub.h"
#include "hubfs/log.h"

#define PROBE_THREADS_MAX 32

static const char usage[] =
	"usage: hub_probe [OPTIONS] ENDPOINT TYPE NS/NAME COMMAND [ARGS...]\n"
	"  TYPE: model, dataset or space\n"
	"  revision [REV] | refs [prs] | tree COMMIT |\n"
	"  read COMMIT PATH KEY lfs|regular SIZE OFF LEN [OFF LEN]...\n"
	"options: --token-env VAR --stats --trace --retries N --backoff-ms N\n"
	"         --connect-timeout-ms N --low-speed-s N --max-wait-s N\n"
	"         --threads N --pause-ms N\n";

struct probe {
	struct hubfs_hub *hub;
	bool stats;
	unsigned int threads;
	unsigned int pause_ms;
};

static int fail(int err, const char *what)
{
	const char *detail = hubfs_err_get();

	fprintf(stderr, "hub_probe: %s: %s (%s)\n", what,
		detail ? detail : "no detail", strerror(-err));
	return 1;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_uint(const char *s, unsigned int *out)
{
	uint64_t v;

	if (!parse_u64(s, &v) || v > UINT32_MAX)
		return false;
	*out = (unsigned int)v;
	return true;
}

/* --- revision, refs, tree ------------------------------------------------- */

static int cmd_revision(struct probe *p, int argc, char **argv)
{
	struct hubfs_hub_revision rev;
	int err;

	if (argc > 1)
		return 2;
	err = hubfs_hub_get_revision(p->hub, argc ? argv[0] : NULL, &rev);
	if (err)
		return fail(err, "revision");
	printf("%s %" PRId64 "\n", rev.commit, rev.time);
	return 0;
}

static int print_ref(void *arg, const struct hubfs_hub_ref *ref)
{
	static const char *const kinds[] = {
		[HUBFS_REF_BRANCH] = "branch", [HUBFS_REF_TAG] = "tag",
		[HUBFS_REF_PR] = "pr", [HUBFS_REF_CONVERT] = "convert",
	};

	(void)arg;
	printf("%s %s %s\n", kinds[ref->kind], ref->name, ref->commit);
	return 0;
}

static int cmd_refs(struct probe *p, int argc, char **argv)
{
	bool prs = argc == 1 && strcmp(argv[0], "prs") == 0;
	int err;

	if (argc > 1 || (argc == 1 && !prs))
		return 2;
	err = hubfs_hub_list_refs(p->hub, prs, print_ref, NULL);
	if (err)
		return fail(err, "refs");
	return 0;
}

static int print_entry(void *arg, const struct hubfs_hub_entry *e)
{
	(void)arg;
	printf("%s %s %" PRIu64 " %s %s %s\n",
	       e->type == HUBFS_ENTRY_DIR ? "dir" : "file", e->oid, e->size,
	       e->lfs ? "lfs" : "-", e->lfs ? e->sha256 : "-", e->path);
	return 0;
}

static int cmd_tree(struct probe *p, int argc, char **argv)
{
	int err;

	if (argc != 1)
		return 2;
	err = hubfs_hub_list_tree(p->hub, argv[0], print_entry, NULL);
	if (err)
		return fail(err, "tree");
	return 0;
}

/* --- read ----------------------------------------------------------------- */

struct range {
	uint64_t off, len;
	unsigned char *data;
	uint64_t got;		/* bytes the sink has taken */
	int err;
	char detail[HUBFS_ERR_MAX];
};

struct reader {
	struct probe *p;
	struct hubfs_hub_file file;
	struct range *ranges;
	size_t n;
	atomic_size_t next;	/* the next range to read */
};

/* The sink: bytes must come in order, each once, inside the range. */
static int sink(void *arg, uint64_t off, const void *data, size_t len)
{
	struct range *r = arg;

	if (off != r->off + r->got || len > r->len - r->got) {
		hubfs_err_set("sink contract broken: %zu bytes at %" PRIu64
			      ", expected at most %" PRIu64 " at %" PRIu64,
			      len, off, r->len - r->got, r->off + r->got);
		return -EPROTO;
	}
	memcpy(r->data + r->got, data, len);
	r->got += len;
	return 0;
}

static void pause_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void *read_worker(void *arg)
{
	struct reader *rd = arg;
	bool first = true;
	size_t i;

	while ((i = atomic_fetch_add(&rd->next, 1)) < rd->n) {
		struct range *r = &rd->ranges[i];

		if (!first && rd->p->pause_ms)
			pause_ms(rd->p->pause_ms);
		first = false;
		hubfs_err_clear();
		r->err = hubfs_hub_read_range(rd->p->hub, &rd->file, r->off,
					      r->len, sink, r);
		if (!r->err && r->got != r->len) {
			hubfs_err_set("read returned 0 after %" PRIu64 " of %"
				      PRIu64 " bytes", r->got, r->len);
			r->err = -EPROTO;
		}
		if (r->err)
			snprintf(r->detail, sizeof(r->detail), "%s",
				 hubfs_err_get() ? hubfs_err_get() : "");
	}
	return NULL;
}

static int read_all(struct reader *rd)
{
	pthread_t tids[PROBE_THREADS_MAX];
	unsigned int n = rd->p->threads, started = 0;

	for (; started < n; started++) {
		if (pthread_create(&tids[started], NULL, read_worker, rd))
			break;
	}
	if (started == 0)
		read_worker(rd);
	for (unsigned int t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	for (size_t i = 0; i < rd->n; i++) {
		if (rd->ranges[i].err) {
			hubfs_err_set("%s", rd->ranges[i].detail);
			return fail(rd->ranges[i].err, "read");
		}
	}
	for (size_t i = 0; i < rd->n; i++) {
		if (fwrite(rd->ranges[i].data, 1, rd->ranges[i].len, stdout) !=
		    rd->ranges[i].len) {
			perror("hub_probe: stdout");
			return 1;
		}
	}
	return 0;
}

static int cmd_read(struct probe *p, int argc, char **argv)
{
	struct reader rd = { .p = p };
	int rc = 2;

	if (argc < 7 || (argc - 5) % 2 != 0)
		return 2;
	rd.file.commit = argv[0];
	rd.file.path = argv[1];
	rd.file.key = argv[2];
	if (strcmp(argv[3], "lfs") != 0 && strcmp(argv[3], "regular") != 0)
		return 2;
	rd.file.lfs = strcmp(argv[3], "lfs") == 0;
	if (!parse_u64(argv[4], &rd.file.size))
		return 2;
	rd.n = (size_t)(argc - 5) / 2;
	rd.ranges = calloc(rd.n, sizeof(*rd.ranges));
	if (!rd.ranges)
		return fail(-ENOMEM, "read");
	for (size_t i = 0; i < rd.n; i++) {
		struct range *r = &rd.ranges[i];

		if (!parse_u64(argv[5 + 2 * i], &r->off) ||
		    !parse_u64(argv[6 + 2 * i], &r->len) || r->len > (1u << 30))
			goto out;
		/* The client checks the range; room for one byte at least. */
		r->data = malloc(r->len ? r->len : 1);
		if (!r->data) {
			rc = fail(-ENOMEM, "read");
			goto out;
		}
	}
	rc = read_all(&rd);
out:
	for (size_t i = 0; i < rd.n; i++)
		free(rd.ranges[i].data);
	free(rd.ranges);
	return rc;
}

/* --- main ----------------------------------------------------------------- */

static int parse_type(const char *s, enum hubfs_repo_type *out)
{
	if (strcmp(s, "model") == 0)
		*out = HUBFS_REPO_MODEL;
	else if (strcmp(s, "dataset") == 0)
		*out = HUBFS_REPO_DATASET;
	else if (strcmp(s, "space") == 0)
		*out = HUBFS_REPO_SPACE;
	else
		return -EINVAL;
	return 0;
}

/* Parse the options into @o and @p; returns the index of ENDPOINT. */
static int parse_options(int argc, char **argv, struct hubfs_hub_opts *o,
			 struct probe *p)
{
	int i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *opt = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned int *num = NULL;

		if (strcmp(opt, "--stats") == 0) {
			p->stats = true;
			continue;
		}
		if (strcmp(opt, "--trace") == 0) {
			o->trace = true;
			hubfs_log_set_level(LOG_DEBUG);
			continue;
		}
		if (!val)
			return -1;
		i++;
		if (strcmp(opt, "--token-env") == 0) {
			o->token = getenv(val);
			if (!o->token || !*o->token) {
				fprintf(stderr, "hub_probe: %s is not set\n",
					val);
				return -1;
			}
			continue;
		}
		if (strcmp(opt, "--retries") == 0)
			num = &o->retries;
		else if (strcmp(opt, "--backoff-ms") == 0)
			num = &o->backoff_ms;
		else if (strcmp(opt, "--connect-timeout-ms") == 0)
			num = &o->connect_timeout_ms;
		else if (strcmp(opt, "--low-speed-s") == 0)
			num = &o->low_speed_timeout_s;
		else if (strcmp(opt, "--max-wait-s") == 0)
			num = &o->max_wait_s;
		else if (strcmp(opt, "--threads") == 0)
			num = &p->threads;
		else if (strcmp(opt, "--pause-ms") == 0)
			num = &p->pause_ms;
		if (!num || !parse_uint(val, num))
			return -1;
	}
	if (p->threads == 0 || p->threads > PROBE_THREADS_MAX)
		return -1;
	return i;
}

static int run(struct probe *p, const char *cmd, int argc, char **argv)
{
	if (strcmp(cmd, "revision") == 0)
		return cmd_revision(p, argc, argv);
	if (strcmp(cmd, "refs") == 0)
		return cmd_refs(p, argc, argv);
	if (strcmp(cmd, "tree") == 0)
		return cmd_tree(p, argc, argv);
	if (strcmp(cmd, "read") == 0)
		return cmd_read(p, argc, argv);
	return 2;
}

int main(int argc, char **argv)
{
	struct hubfs_hub_opts o = HUBFS_HUB_OPTS_INIT;
	struct probe p = { .threads = 1 };
	struct hubfs_hub_stats st;
	char *repo, *slash;
	int i, err, rc;

	i = parse_options(argc, argv, &o, &p);
	if (i < 0 || argc - i < 4)
		goto usage;
	o.endpoint = argv[i];
	if (parse_type(argv[i + 1], &o.repo_type))
		goto usage;
	repo = argv[i + 2];
	slash = strchr(repo, '/');
	if (!slash)
		goto usage;
	*slash = '\0';
	o.repo_namespace = repo;
	o.repo_name = slash + 1;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "hub_probe: curl_global_init failed\n");
		return 1;
	}
	err = hubfs_hub_new(&p.hub, &o);
	if (err) {
		rc = fail(err, "client");
		goto out;
	}
	rc = run(&p, argv[i + 3], argc - i - 4, argv + i + 4);
	if (p.stats) {
		hubfs_hub_get_stats(p.hub, &st);
		fprintf(stderr, "stats: requests=%" PRIu64 " retries=%" PRIu64
			" throttled=%" PRIu64 " bytes=%" PRIu64
			" locates=%" PRIu64 "\n", st.requests, st.retries,
			st.throttled, st.bytes, st.locates);
	}
	hubfs_hub_free(p.hub);
out:
	curl_global_cleanup();
	if (fflush(stdout) != 0)
		rc = 1;
	if (rc == 2)
		fputs(usage, stderr);
	return rc;
usage:
	fputs(usage, stderr);
	return 2;
}
