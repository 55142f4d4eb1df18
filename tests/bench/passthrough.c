/*
 * A minimal libfuse3 passthrough: the FUSE ceiling of a machine.  It
 * mirrors a local directory through the high-level API and answers every
 * read with one pread() on the local file, with libfuse's default options
 * (multi-threaded, no splice, no keep_cache).  Whatever hubfs does, a
 * read through FUSE on this machine is not faster than this.  With
 * -o writable it also creates files and answers every write with one
 * pwrite() and fsync with fsync(): the ceiling of a write through FUSE
 * into a local file.
 *
 * Built by tests/bench/bench.py:
 *   cc -O2 -o passthrough passthrough.c $(pkg-config --cflags --libs fuse3)
 * Usage:
 *   passthrough [FUSE options] MOUNTPOINT -o source=DIR[,writable]
 */
#define FUSE_USE_VERSION 314
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct options {
	const char *source;
	int writable;
} options;

static int src_fd = -1;

static const struct fuse_opt option_spec[] = {
	{ "source=%s", offsetof(struct options, source), 1 },
	{ "writable", offsetof(struct options, writable), 1 },
	FUSE_OPT_END
};

/* A path relative to the source directory ("/" is "."). */
static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

static void *pt_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 1;
	cfg->entry_timeout = 60;
	cfg->attr_timeout = 60;
	return NULL;
}

static int pt_getattr(const char *path, struct stat *st,
		      struct fuse_file_info *fi)
{
	if (fi)
		return fstat((int)fi->fh, st) < 0 ? -errno : 0;
	if (fstatat(src_fd, rel(path), st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

static int pt_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
		      off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	struct dirent *de;
	DIR *d;
	int fd;

	(void)off; (void)fi; (void)flags;
	fd = openat(src_fd, rel(path), O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		memset(&st, 0, sizeof(st));
		st.st_ino = de->d_ino;
		st.st_mode = (mode_t)de->d_type << 12;
		if (fill(buf, de->d_name, &st, 0, 0))
			break;
	}
	closedir(d);
	return 0;
}

static int pt_open(const char *path, struct fuse_file_info *fi)
{
	int fd;

	if ((fi->flags & O_ACCMODE) != O_RDONLY && !options.writable)
		return -EROFS;
	fd = openat(src_fd, rel(path), fi->flags & (O_ACCMODE | O_TRUNC));
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int pt_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	ssize_t n = pread((int)fi->fh, buf, size, off);

	(void)path;
	return n < 0 ? -errno : (int)n;
}

static int pt_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int fd = openat(src_fd, rel(path),
			(fi->flags & (O_ACCMODE | O_TRUNC | O_EXCL)) | O_CREAT,
			mode);

	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int pt_write(const char *path, const char *buf, size_t size,
		    off_t off, struct fuse_file_info *fi)
{
	ssize_t n = pwrite((int)fi->fh, buf, size, off);

	(void)path;
	return n < 0 ? -errno : (int)n;
}

static int pt_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	if (!fi)
		return 0;
	return (datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh)) < 0
	       ? -errno : 0;
}

static int pt_truncate(const char *path, off_t size,
		       struct fuse_file_info *fi)
{
	int fd, err = 0;

	if (fi)
		return ftruncate((int)fi->fh, size) < 0 ? -errno : 0;
	fd = openat(src_fd, rel(path), O_WRONLY);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, size) < 0)
		err = -errno;
	close(fd);
	return err;
}

static int pt_unlink(const char *path)
{
	return unlinkat(src_fd, rel(path), 0) < 0 ? -errno : 0;
}

static int pt_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static int pt_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fstatvfs(src_fd, sv) < 0 ? -errno : 0;
}

static const struct fuse_operations ops = {
	.init = pt_init,
	.getattr = pt_getattr,
	.readdir = pt_readdir,
	.open = pt_open,
	.read = pt_read,
	.release = pt_release,
	.create = pt_create,
	.write = pt_write,
	.fsync = pt_fsync,
	.truncate = pt_truncate,
	.unlink = pt_unlink,
	.statfs = pt_statfs,
};

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	int ret;

	if (fuse_opt_parse(&args, &options, option_spec, NULL) == -1)
		return 1;
	if (!options.source) {
		fprintf(stderr, "usage: %s MOUNTPOINT -o source=DIR "
			"[FUSE options]\n", argv[0]);
		return 2;
	}
	src_fd = open(options.source, O_RDONLY | O_DIRECTORY);
	if (src_fd < 0) {
		perror(options.source);
		return 1;
	}
	if (!options.writable)
		fuse_opt_add_arg(&args, "-oro");
	ret = fuse_main(args.argc, args.argv, &ops, NULL);
	fuse_opt_free_args(&args);
	return ret;
}
