/*
 * Standalone driver for fuzz targets built without libFuzzer.
 *
 * Usage: TARGET PATH...  Each PATH is a file, or a directory whose
 * regular files are each one input; entries are run in sorted order so a
 * failure is reproducible.  Exits 0 after running at least one input, 1
 * if an input could not be read or none was found.  A crash in the target
 * is the failure the sanitizers report.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define INPUT_MAX (1 << 20)

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data;
	size_t n;

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	data = malloc(INPUT_MAX);
	if (!data) {
		fclose(f);
		return -1;
	}
	n = fread(data, 1, INPUT_MAX, f);
	fclose(f);
	LLVMFuzzerTestOneInput(data, n);
	free(data);
	return 0;
}

static int run_dir(const char *dir, unsigned int *count)
{
	struct dirent **names;
	char path[4096];
	struct stat st;
	int n, err = 0;

	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) < 0)
				err = -1;
			else
				(*count)++;
		}
		free(names[i]);
	}
	free(names);
	return err;
}

int main(int argc, char **argv)
{
	unsigned int count = 0;
	struct stat st;
	int err = 0;

	for (int i = 1; i < argc; i++) {
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (run_dir(argv[i], &count) < 0)
				err = 1;
		} else if (run_file(argv[i]) < 0) {
			err = 1;
		} else {
			count++;
		}
	}
	printf("ran %u inputs\n", count);
	if (count == 0) {
		fprintf(stderr, "no inputs found\n");
		return 1;
	}
	return err;
}
