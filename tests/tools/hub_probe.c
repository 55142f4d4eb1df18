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
 *	preupload BRANCH PATH=LOCALFILE...
 *				"lfs|regular ignore|- OID|- PATH" per file
 *	commit BRANCH PARENT [--add PATH=LOCALFILE]... [--delete PATH]...
 *	       [--delete-folder PATH]... [--summary S] [--description D]
 *	       [--gitattributes LOCALFILE] [--parallel N]
 *				the new commit's id
 *	commits REV [MAX]	"ID TIME TITLE" per commit, newest first
 *	check-write BRANCH	"ok" if the token may commit to BRANCH
 *
 * A read checks the client's sink contract as it goes (offsets in order,
 * each byte once, nothing outside the range) and writes to stdout only
 * once every range has been read whole, so a failed read prints nothing.
 *
 * A commit does what a writer does: preupload for the files added (with
 * the --gitattributes text, if given), the sha256 of each file the Hub
 * wants through LFS, the LFS upload (up to --parallel parts at once),
 * then the commit, with the operations in command-line order; files the
 * Hub says to ignore are left out.  The local files are read through the
 * client's sources with pread(), so the client, not hub_probe, decides
 * how much of a file is in memory at once.  With --stats, maxrss_kb is
 * the process's peak resident size (VmHWM: getrusage() would count the
 * parent's memory too, which Linux carries over an exec).
 *
 * The token is read from the environment variable --token-env names,
 * never from the command line.  Exit status: 0, 1 for a failure (the
 * detail from hubfs_err_get() on stderr), 2 for a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "hubfs/err.h"
#include "hubfs/hub.h"
#include "hubfs/log.h"

#define PROBE_THREADS_MAX 32

static const char usage[] =
	"usage: hub_probe [OPTIONS] ENDPOINT TYPE NS/NAME COMMAND [ARGS...]\n"
	"  TYPE: model, dataset or space\n"
	"  revision [REV] | refs [prs] | tree COMMIT |\n"
	"  read COMMIT PATH KEY lfs|regular SIZE OFF LEN [OFF LEN]... |\n"
	"  preupload BRANCH PATH=LOCALFILE... |\n"
	"  commit BRANCH PARENT [--add PATH=LOCALFILE]... [--delete PATH]...\n"
	"         [--delete-folder PATH]... [--summary S] [--description D]\n"
	"         [--gitattributes LOCALFILE] [--parallel N] |\n"
	"  commits REV [MAX] | check-write BRANCH\n"
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

/* --- preupload, commit -------------------------------------------------- */

/* A local file to upload, read with pread() from any thread. */
struct local {
	const char *repo_path;
	const char *name;
	int fd;
	uint64_t size;
	unsigned char sample[512];
	char sha256[65];
};

static int local_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct local *l = arg;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(l->fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			hubfs_err_set("%s: %s", l->name,
				      n ? strerror(errno) : "file shrank");
			return n ? -errno : -EIO;
		}
		done += (size_t)n;
	}
	return 0;
}

/* "REPO_PATH=LOCALFILE" (split at the last '='): open it. */
static int local_open(struct local *l, char *spec)
{
	char *eq = strrchr(spec, '=');
	struct stat st;
	uint64_t k;

	if (!eq || eq == spec || !eq[1])
		return -EINVAL;
	*eq = '\0';
	l->repo_path = spec;
	l->name = eq + 1;
	l->fd = open(l->name, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0 || fstat(l->fd, &st) != 0) {
		hubfs_err_set("%s: %s", l->name, strerror(errno));
		return -errno;
	}
	l->size = (uint64_t)st.st_size;
	k = l->size < sizeof(l->sample) ? l->size : sizeof(l->sample);
	return k ? local_read(l, 0, l->sample, (size_t)k) : 0;
}

static int local_sha256(struct local *l)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE], *buf = malloc(1 << 20);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int mdlen = 0;
	int err = -ENOMEM;

	if (!buf || !ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	for (uint64_t off = 0; off < l->size;) {
		size_t n = l->size - off < (1 << 20) ? l->size - off : 1 << 20;

		err = local_read(l, off, buf, n);
		if (err)
			goto out;
		EVP_DigestUpdate(ctx, buf, n);
		off += n;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned int i = 0; i < mdlen && i < 32; i++) {
		l->sha256[2 * i] = hex[md[i] >> 4];
		l->sha256[2 * i + 1] = hex[md[i] & 15];
	}
	l->sha256[64] = '\0';
	err = 0;
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return err;
}

static void locals_close(struct local *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (l[i].fd >= 0)
			close(l[i].fd);
	}
	free(l);
}

static int cmd_preupload(struct probe *p, int argc, char **argv)
{
	struct hubfs_hub_upload_file *files;
	struct local *l;
	size_t n;
	int err = 0, rc = 1;

	if (argc < 2)
		return 2;
	n = (size_t)argc - 1;
	l = calloc(n, sizeof(*l));
	files = calloc(n, sizeof(*files));
	if (!l || !files) {
		free(l);
		free(files);
		return fail(-ENOMEM, "preupload");
	}
	for (size_t i = 0; i < n; i++)
		l[i].fd = -1;
	for (size_t i = 0; i < n && !err; i++) {
		err = local_open(&l[i], argv[1 + i]);
		if (err == -EINVAL) {
			rc = 2;
			goto out;
		}
		files[i] = (struct hubfs_hub_upload_file){
			.path = l[i].repo_path, .size = l[i].size,
			.sample = l[i].sample };
	}
	err = err ? err : hubfs_hub_preupload(p->hub, argv[0], NULL, files, n);
	if (err) {
		rc = fail(err, "preupload");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		printf("%s %s %s %s\n", files[i].lfs ? "lfs" : "regular",
		       files[i].ignore ? "ignore" : "-",
		       files[i].remote_oid[0] ? files[i].remote_oid : "-",
		       files[i].path);
	rc = 0;
out:
	free(files);
	locals_close(l, n);
	return rc;
}

/* Read a whole small local file as text. */
static char *slurp(const char *name)
{
	FILE *f = fopen(name, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    n < (1 << 20) && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = calloc(1, (size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

struct commit_args {
	struct hubfs_hub_commit c;
	struct hubfs_hub_commit_op *ops;
	struct local *locals;		/* one per op; fd -1 if none */
	char *gitattributes;
	unsigned int parallel;
};

static int commit_parse(struct commit_args *a, int argc, char **argv)
{
	a->c.branch = argv[0];
	a->c.parent = argv[1];
	a->c.summary = "hub_probe commit";
	a->c.description = "";
	a->parallel = 1;
	for (int i = 2; i < argc; i += 2) {
		struct hubfs_hub_commit_op *op = &a->ops[a->c.n];
		const char *opt = argv[i], *val = argv[i + 1];
		int err;

		if (strcmp(opt, "--summary") == 0) {
			a->c.summary = val;
		} else if (strcmp(opt, "--description") == 0) {
			a->c.description = val;
		} else if (strcmp(opt, "--parallel") == 0) {
			if (!parse_uint(val, &a->parallel))
				return -EINVAL;
		} else if (strcmp(opt, "--gitattributes") == 0) {
			free(a->gitattributes);
			a->gitattributes = slurp(val);
			if (!a->gitattributes) {
				hubfs_err_set("%s: cannot read it", val);
				return -EIO;
			}
		} else if (strcmp(opt, "--delete") == 0 ||
			   strcmp(opt, "--delete-folder") == 0) {
			op->kind = strcmp(opt, "--delete") == 0
					   ? HUBFS_OP_DELETE_FILE
					   : HUBFS_OP_DELETE_FOLDER;
			op->path = val;
			a->c.n++;
		} else if (strcmp(opt, "--add") == 0) {
			err = local_open(&a->locals[a->c.n], argv[i + 1]);
			if (err)
				return err;
			op->path = a->locals[a->c.n].repo_path;
			op->size = a->locals[a->c.n].size;
			a->c.n++;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

/* Preupload the added files, upload those that go through LFS, and turn
 * each add into the operation the Hub asked for. */
static int commit_uploads(struct probe *p, struct commit_args *a)
{
	struct hubfs_hub_upload_file *files = calloc(a->c.n + 1,
						     sizeof(*files));
	struct hubfs_hub_lfs_object *objs = calloc(a->c.n + 1, sizeof(*objs));
	size_t nfiles = 0, nobjs = 0;
	size_t *which = calloc(a->c.n + 1, sizeof(*which));
	int err = -ENOMEM;

	if (!files || !objs || !which) {
		hubfs_err_set("out of memory");
		goto out;
	}
	for (size_t i = 0; i < a->c.n; i++) {
		if (a->locals[i].fd < 0)
			continue;
		which[nfiles] = i;
		files[nfiles++] = (struct hubfs_hub_upload_file){
			.path = a->locals[i].repo_path,
			.size = a->locals[i].size,
			.sample = a->locals[i].sample };
	}
	err = hubfs_hub_preupload(p->hub, a->c.branch, a->gitattributes,
				  files, nfiles);
	for (size_t f = 0; !err && f < nfiles; f++) {
		struct hubfs_hub_commit_op *op = &a->ops[which[f]];
		struct local *l = &a->locals[which[f]];

		if (files[f].ignore) {
			op->path = NULL;	/* left out below */
		} else if (files[f].lfs) {
			err = local_sha256(l);
			op->kind = HUBFS_OP_ADD_LFS;
			op->sha256 = l->sha256;
			objs[nobjs] = (struct hubfs_hub_lfs_object){
				.size = l->size, .read = local_read, .arg = l };
			memcpy(objs[nobjs++].sha256, l->sha256, 65);
		} else {
			op->kind = HUBFS_OP_ADD_FILE;
			op->read = local_read;
			op->arg = l;
		}
	}
	if (!err && nobjs)
		err = hubfs_hub_lfs_upload(p->hub, a->c.branch, objs, nobjs,
					   a->parallel);
out:
	free(which);
	free(objs);
	free(files);
	return err;
}

static int cmd_commit(struct probe *p, int argc, char **argv)
{
	struct commit_args a = { 0 };
	size_t kept = 0, nops = (size_t)argc / 2 + 1;
	char id[41];
	int err, rc = 1;

	if (argc < 2 || argc % 2 != 0)
		return 2;
	a.ops = calloc(nops, sizeof(*a.ops));
	a.locals = calloc(nops, sizeof(*a.locals));
	if (!a.ops || !a.locals) {
		free(a.ops);
		free(a.locals);
		return fail(-ENOMEM, "commit");
	}
	for (size_t i = 0; i < nops; i++)
		a.locals[i].fd = -1;
	err = commit_parse(&a, argc, argv);
	if (err == -EINVAL) {
		rc = 2;
		goto out;
	}
	err = err ? err : commit_uploads(p, &a);
	for (size_t i = 0; !err && i < a.c.n; i++) {
		if (a.ops[i].path)
			a.ops[kept++] = a.ops[i];
	}
	a.c.n = kept;
	a.c.ops = a.ops;
	err = err ? err : hubfs_hub_commit(p->hub, &a.c, id);
	if (err) {
		rc = fail(err, "commit");
		goto out;
	}
	printf("%s\n", id);
	rc = 0;
out:
	free(a.gitattributes);
	free(a.ops);
	locals_close(a.locals, nops);
	return rc;
}

static int print_commit(void *arg, const struct hubfs_hub_commit_info *c)
{
	(void)arg;
	printf("%s %" PRId64 " %s\n", c->id, c->time, c->title);
	return 0;
}

static int cmd_commits(struct probe *p, int argc, char **argv)
{
	unsigned int max = 1000;
	int err;

	if (argc < 1 || argc > 2 || (argc == 2 && !parse_uint(argv[1], &max)))
		return 2;
	err = hubfs_hub_list_commits(p->hub, argv[0], max, print_commit, NULL);
	if (err)
		return fail(err, "commits");
	return 0;
}

static int cmd_check_write(struct probe *p, int argc, char **argv)
{
	int err;

	if (argc != 1)
		return 2;
	err = hubfs_hub_check_write(p->hub, argv[0]);
	if (err)
		return fail(err, "check-write");
	printf("ok\n");
	return 0;
}

/* --- main ----------------------------------------------------------------- */

/* The peak resident size of this process image, in KiB, or -1. */
static long peak_rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

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
	if (strcmp(cmd, "preupload") == 0)
		return cmd_preupload(p, argc, argv);
	if (strcmp(cmd, "commit") == 0)
		return cmd_commit(p, argc, argv);
	if (strcmp(cmd, "commits") == 0)
		return cmd_commits(p, argc, argv);
	if (strcmp(cmd, "check-write") == 0)
		return cmd_check_write(p, argc, argv);
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
			" locates=%" PRIu64 " bytes_sent=%" PRIu64
			" commits=%" PRIu64 " maxrss_kb=%ld\n", st.requests,
			st.retries, st.throttled, st.bytes, st.locates,
			st.bytes_sent, st.commits, peak_rss_kb());
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
