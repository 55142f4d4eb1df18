/*
 * hubfs: the command line.
 *
 * DESIGN
 *
 * main() is the only place that exits.  It turns argv into a struct
 * hubfs_config, completes it from the environment, and (later) mounts.
 *
 * Argument order.  mount(8) runs a helper as
 *
 *	mount.hubfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]
 *
 * so options may follow the operands.  getopt_long() is asked to return
 * operands in order ('-' at the start of optstring) instead of relying on
 * its permutation, which POSIXLY_CORRECT would turn off.  -o may appear any
 * number of times; each string is applied in order.  -s (sloppy), -n (no
 * mtab), -v (verbose) and -t TYPE come from mount(8) and are accepted and
 * ignored.  -f means foreground, as for every FUSE daemon; mount(8)'s own
 * -f (fake) is handled by mount(8) before any helper runs.
 *
 * Exit status: 0 success, 1 runtime failure (including "cannot mount"),
 * 2 usage error (bad option, bad source, wrong number of operands).  Every
 * error is one line on stderr starting with "hubfs: ".
 *
 * --print-config parses and resolves exactly as a mount would, then prints
 * the result one key=value per line and exits 0.  It never prints the
 * token, only whether there is one and where it came from.
 *
 * Mounting.  The command returns only once the mount is live, or fails
 * with one line saying why.  Unless it runs in the foreground it forks
 * first: the child does all the work (resolving the revision, loading its
 * tree, mounting) and reports "ready" or the error through a pipe, which
 * the parent prints before exiting with the matching status.  Forking
 * before anything else means no thread ever has to survive a fork.
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hubfs/cache.h"
#include "hubfs/config.h"
#include "hubfs/ctl.h"
#include "hubfs/err.h"
#include "hubfs/fs.h"
#include "hubfs/hub.h"
#include "hubfs/log.h"
#include "hubfs/mem.h"
#include "hubfs/notify.h"

#define EXIT_USAGE 2

enum action { ACTION_MOUNT, ACTION_PRINT_CONFIG, ACTION_HELP, ACTION_VERSION };

enum { OPT_PRINT_CONFIG = 256 };

static const struct option long_options[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "print-config", no_argument, NULL, OPT_PRINT_CONFIG },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
	"usage: hubfs [OPTIONS] SOURCE MOUNTPOINT\n"
	"       hubfs --print-config [OPTIONS] SOURCE MOUNTPOINT\n"
	"       hubfs COMMAND [ARGS]     (a running mount; PATH is in it)\n"
	"\n"
	"Mount a Hugging Face Hub repository as a directory.\n"
	"\n"
	"SOURCE:  [hf://][models/|datasets/|spaces/]NAMESPACE/NAME[@REVISION]\n"
	"REVISION is a branch, tag or commit.  refs/pr/N and\n"
	"refs/convert/NAME are written as they are; in any other revision\n"
	"write '/' as %2F (feature%2Fx is the branch feature/x).\n"
	"\n"
	"Options:\n"
	"  -o OPT[,OPT...]      mount options, below; may be repeated\n"
	"  -f                   stay in the foreground\n"
	"  -d                   debug output; implies -f\n"
	"  -h, --help           show this help and exit\n"
	"  -V, --version        show the version and exit\n"
	"  --print-config       print the configuration and exit\n"
	"  -s, -n, -v, -t TYPE  accepted from mount(8), ignored\n"
	"\n"
	"Mount options:\n"
	"  revision=REV         branch, tag or commit\n"
	"                       (default: the default branch)\n"
	"  endpoint=URL         Hub URL (default: $HF_ENDPOINT, or\n"
	"                       " HUBFS_CONFIG_ENDPOINT_DEFAULT ")\n"
	"  token_file=PATH      read the access token from PATH\n"
	"  cache_dir=PATH       absolute cache directory (default:\n"
	"                       ~/.cache/hubfs; /var/cache/hubfs for root)\n"
	"  cache_size=SIZE      cache limit: 512M, 20G, 1TiB (default: 10G)\n"
	"  ro                   mount read-only (a branch is writable\n"
	"                       otherwise, given a token that can write)\n"
	"  rw                   the default\n"
	"  commit_delay=MS      commit closed changes after this long\n"
	"                       without a change (default: 2000)\n"
	"  commit_max_delay=MS  commit pending changes after this long\n"
	"                       whatever happens (default: 30000)\n"
	"  noupload_at_close    upload large files when committing, not\n"
	"                       as soon as they are closed\n"
	"  commit_message=TEXT  commit summary; {count}, {first} and\n"
	"                       {default} are replaced\n"
	"  allow_other          let other users access the mount\n"
	"  uid=N, gid=N         owner and group shown for every file\n"
	"  refresh=SECONDS      re-resolve a branch this often; 0 = never\n"
	"                       (default: 30, at most 86400)\n"
	"  debug                same as -d\n"
	"  log_level=LEVEL      error, warning, notice (default), info or\n"
	"                       debug (debug traces every HTTP request)\n"
	"  metrics_file=PATH    write Prometheus metrics to PATH every 15 s\n"
	"  foreground           same as -f\n"
	"  max_read=N           for FUSE: largest read request, bytes\n"
	"  default_permissions  for FUSE: the kernel checks permissions\n"
	"  _netdev, nofail, auto, noauto, user, user=NAME, nouser,\n"
	"  users, defaults, dev, nodev, suid, nosuid, exec, noexec,\n"
	"  atime, noatime, relatime, comment=..., x-...\n"
	"                       accepted from fstab and mount(8), ignored\n"
	"Option values cannot contain commas; there is no quoting.\n"
	"\n"
	"Token: token_file=, else $HF_TOKEN, else the file named by\n"
	"$HF_TOKEN_PATH, else $HF_HOME/token, else\n"
	"$XDG_CACHE_HOME/huggingface/token, else\n"
	"~/.cache/huggingface/token.  No token means anonymous access.\n"
	"\n"
	"Commands for a running mount:\n"
	"  status PATH          what is mounted, at which commit; counters\n"
	"  metrics PATH         the counters in Prometheus text format\n"
	"  pending PATH         changes staged and not committed yet\n"
	"  commit PATH          commit them now (retries failed ones), wait\n"
	"  resolve ours|theirs PATH...\n"
	"                       settle a conflict at a file, or all at the\n"
	"                       mount root\n"
	"  prefetch [-j N] [-q] PATH...\n"
	"                       read files (directories: every file below)\n"
	"                       into the cache, N at a time (default 4)\n"
	"  cache show|gc|clear [--max SIZE] PATH|CACHE_DIR\n"
	"                       the cache's use; gc releases stray disk\n"
	"                       space and with --max evicts down to SIZE;\n"
	"                       clear evicts every block not in use\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n";

/* Report a usage error; the detail is in hubfs_err_get(). */
static int usage_error(void)
{
	const char *detail = hubfs_err_get();

	fprintf(stderr, "hubfs: %s (see hubfs --help)\n",
		detail ? detail : "invalid arguments");
	return EXIT_USAGE;
}

/*
 * Parse argv into @cfg and decide what to do.  Returns 0, -EINVAL with the
 * detail set, or -ENOMEM.
 */
static int parse_args(enum action *action, struct hubfs_config *cfg,
		      int argc, char **argv)
{
	const char *operands[2];
	int nops = 0, c, err;

	*action = ACTION_MOUNT;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "-:o:fdhVsnvt:", long_options,
				NULL)) != -1) {
		switch (c) {
		case 1:
			if (nops == 2) {
				hubfs_err_set("unexpected argument '%s'",
					      optarg);
				return -EINVAL;
			}
			operands[nops++] = optarg;
			break;
		case 'o':
			err = hubfs_config_parse_opts(cfg, optarg);
			if (err)
				return err;
			break;
		case 'd':
			cfg->debug = true;
			__attribute__((fallthrough));	/* -d implies -f */
		case 'f':
			cfg->foreground = true;
			break;
		case 'h':
			*action = ACTION_HELP;
			return 0;
		case 'V':
			*action = ACTION_VERSION;
			return 0;
		case OPT_PRINT_CONFIG:
			*action = ACTION_PRINT_CONFIG;
			break;
		case 's':
		case 'n':
		case 'v':
		case 't':
			break;
		case ':':
			hubfs_err_set("option '-%c' needs an argument", optopt);
			return -EINVAL;
		default:
			/*
			 * optopt is a short option's letter; for a long option
			 * it is 0 or the option's value, and the option ends
			 * its argv element, so optind has moved past it.
			 */
			if (optopt > 0 && optopt < OPT_PRINT_CONFIG)
				hubfs_err_set("unknown option '-%c'", optopt);
			else
				hubfs_err_set("unknown option '%s'",
					      argv[optind - 1]);
			return -EINVAL;
		}
	}
	for (; optind < argc && nops < 2; optind++)
		operands[nops++] = argv[optind];
	if (optind < argc) {
		hubfs_err_set("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (nops < 2) {
		hubfs_err_set(nops ? "missing MOUNTPOINT"
				   : "missing SOURCE and MOUNTPOINT");
		return -EINVAL;
	}
	err = hubfs_config_parse_source(cfg, operands[0]);
	if (err)
		return err;
	cfg->mountpoint = hubfs_strdup(operands[1]);
	if (!cfg->mountpoint) {
		hubfs_err_set("out of memory");
		return -ENOMEM;
	}
	return 0;
}

static const char *yes_no(bool b)
{
	return b ? "yes" : "no";
}

static const char *or_none(const char *s)
{
	return s ? s : "<none>";
}

/* Print an id that may be unset. */
static void print_id(const char *key, bool set, unsigned int id)
{
	if (set)
		printf("%s=%u\n", key, id);
	else
		printf("%s=<unset>\n", key);
}

/* The --print-config output: one key=value per line, never the token. */
static void print_config(const struct hubfs_config *cfg)
{
	printf("type=%s\n", hubfs_config_repo_type_name(cfg->repo_type));
	printf("namespace=%s\n", cfg->repo_namespace);
	printf("name=%s\n", cfg->repo_name);
	printf("revision=%s\n", cfg->revision ? cfg->revision : "<default>");
	printf("endpoint=%s\n", cfg->endpoint);
	printf("token=%s\n", cfg->token ? "<set>" : "<none>");
	printf("token_source=%s\n", cfg->token_source);
	printf("token_file_exposed=%s\n", yes_no(cfg->token_file_exposed));
	printf("cache_dir=%s\n", cfg->cache_dir);
	printf("cache_size=%llu\n", (unsigned long long)cfg->cache_size);
	printf("ro=%s\n", yes_no(cfg->ro));
	printf("allow_other=%s\n", yes_no(cfg->allow_other));
	print_id("uid", cfg->uid_set, cfg->uid);
	print_id("gid", cfg->gid_set, cfg->gid);
	printf("refresh=%u\n", cfg->refresh);
	printf("debug=%s\n", yes_no(cfg->debug));
	printf("foreground=%s\n", yes_no(cfg->foreground));
	printf("mountpoint=%s\n", cfg->mountpoint);
	printf("fuse_opts=%s\n", or_none(cfg->fuse_opts));
	printf("log_level=%s\n",
	       hubfs_config_level_name(hubfs_config_log_level(cfg)));
	printf("metrics_file=%s\n", or_none(cfg->metrics_file));
}

/* Create @path and its parents (mode 0700 for new ones). */
static int mkdir_p(const char *path)
{
	char *copy = hubfs_strdup(path), *p;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	for (p = copy + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
				err = -errno;
				break;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
	hubfs_free(copy);
	return err;
}

/*
 * In the foreground: -1.  Otherwise fork; the parent waits for the
 * child's report and exits; the child returns the pipe to report into.
 */
static int daemon_start(void)
{
	int fds[2];
	pid_t pid;
	char msg[1024];
	ssize_t n, got = 0;

	if (pipe(fds) != 0) {
		fprintf(stderr, "hubfs: pipe: %s\n", strerror(errno));
		exit(EXIT_FAILURE);
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "hubfs: fork: %s\n", strerror(errno));
		exit(EXIT_FAILURE);
	}
	if (pid == 0) {
		close(fds[0]);
		setsid();
		return fds[1];
	}
	close(fds[1]);
	while (got < (ssize_t)sizeof(msg) - 1 &&
	       (n = read(fds[0], msg + got, sizeof(msg) - 1 - (size_t)got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		got += n;
	}
	msg[got] = '\0';
	if (strcmp(msg, "ready") == 0)
		exit(EXIT_SUCCESS);
	waitpid(pid, NULL, 0);
	if (got > 0)
		fprintf(stderr, "%s\n", msg);
	else
		fprintf(stderr, "hubfs: the daemon exited before the mount "
			"was ready\n");
	exit(EXIT_FAILURE);
}

/* Tell the parent (or, in the foreground, the terminal) how it went. */
static void report(int fd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void report(int fd, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (fd < 0) {
		if (strcmp(msg, "ready") != 0)
			fprintf(stderr, "%s\n", msg);
		return;
	}
	if (write(fd, msg, strlen(msg)) < 0)
		return;	/* the parent is gone: nobody to tell */
}

/* Stop writing to the terminal the parent had. */
static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

static int run_mount(const struct hubfs_config *cfg)
{
	struct hubfs_hub_opts hopts = HUBFS_HUB_OPTS_INIT;
	struct hubfs_hub *hub = NULL;
	struct hubfs_cache *cache = NULL;
	struct hubfs_fs *fs = NULL;
	int fd = cfg->foreground ? -1 : daemon_start();
	int status = EXIT_FAILURE, err;

	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		report(fd, "hubfs: cannot initialise libcurl");
		goto out;
	}
	hopts.endpoint = cfg->endpoint;
	hopts.token = cfg->token;
	hopts.repo_type = cfg->repo_type;
	hopts.repo_namespace = cfg->repo_namespace;
	hopts.repo_name = cfg->repo_name;
	hopts.trace = hubfs_config_log_level(cfg) == LOG_DEBUG;
	err = hubfs_hub_new(&hub, &hopts);
	if (err) {
		report(fd, "hubfs: %s", hubfs_err_or(strerror(-err)));
		goto out_cleanup_curl;
	}
	err = mkdir_p(cfg->cache_dir);
	if (!err)
		err = hubfs_cache_open(&cache, cfg->cache_dir, cfg->cache_size);
	if (err) {
		report(fd, "hubfs: cache %s: %s", cfg->cache_dir,
		       hubfs_err_or(strerror(-err)));
		goto out_free_hub;
	}
	err = hubfs_fs_new(&fs, cfg, hub, cache);
	if (err) {
		report(fd, "hubfs: %s", hubfs_err_or(strerror(-err)));
		goto out_close_cache;
	}
	err = hubfs_fs_mount(fs);
	if (err) {
		report(fd, "hubfs: %s", hubfs_err_or(strerror(-err)));
		goto out_free_fs;
	}
	report(fd, "ready");
	hubfs_notifyf("READY=1\nMAINPID=%ld\nSTATUS=Mounted %s %s/%s on %s",
		      (long)getpid(), hubfs_config_repo_type_name(cfg->repo_type),
		      cfg->repo_namespace, cfg->repo_name, cfg->mountpoint);
	if (fd >= 0) {
		close(fd);
		fd = -1;
		hubfs_log_to_syslog("hubfs");
		detach_stdio();
	}
	err = hubfs_fs_loop(fs);
	status = err ? EXIT_FAILURE : EXIT_SUCCESS;
	hubfs_notify("STOPPING=1\nSTATUS=Unmounted; stopping");
out_free_fs:
	hubfs_fs_free(fs);
out_close_cache:
	hubfs_cache_close(cache);
out_free_hub:
	hubfs_hub_free(hub);
out_cleanup_curl:
	curl_global_cleanup();
out:
	if (fd >= 0)
		close(fd);
	return status;
}

int main(int argc, char **argv)
{
	struct hubfs_config cfg = HUBFS_CONFIG_INIT;
	struct hubfs_env env;
	enum action action;
	char summary[1024];
	int status = EXIT_FAILURE, err;
	const char *prog = strrchr(argv[0], '/');

	/* mount(8)'s helper names always mean a mount. */
	prog = prog ? prog + 1 : argv[0];
	if (argc >= 2 && strncmp(prog, "mount.", 6) != 0 &&
	    hubfs_ctl_is_command(argv[1]))
		return hubfs_ctl_main(argc - 1, argv + 1);

	err = parse_args(&action, &cfg, argc, argv);
	if (err == -ENOMEM) {
		fprintf(stderr, "hubfs: out of memory\n");
		goto out;
	}
	if (err) {
		status = usage_error();
		goto out;
	}
	if (action == ACTION_HELP) {
		fputs(usage_text, stdout);
		status = EXIT_SUCCESS;
		goto out;
	}
	if (action == ACTION_VERSION) {
		printf("hubfs %s\n", HUBFS_VERSION);
		status = EXIT_SUCCESS;
		goto out;
	}

	hubfs_config_env_read(&env);
	if (hubfs_config_resolve_env(&cfg, &env)) {
		fprintf(stderr, "hubfs: %s\n",
			hubfs_err_or("invalid configuration"));
		goto out;
	}
	if (action == ACTION_PRINT_CONFIG) {
		print_config(&cfg);
		status = fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
		goto out;
	}

	hubfs_log_set_level(hubfs_config_log_level(&cfg));
	hubfs_log_detect_journal();
	if (cfg.token_file_exposed)
		hlog(LOG_WARNING, "%s can be read by other users",
		     cfg.token_source);
	hubfs_config_describe(summary, sizeof(summary), &cfg);
	hlog(LOG_DEBUG, "%s", summary);
	status = run_mount(&cfg);
out:
	hubfs_config_free(&cfg);
	return status;
}
