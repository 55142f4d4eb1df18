/*
 * benchtool: the benchmark suite's data generator, readers and checkers.
 * Built by tests/bench/bench.py with `cc -O2`; it needs only libc.
 *
 *   benchtool gen SEED SIZE
 *       SIZE bytes of deterministic pseudo-random data on stdout
 *       (xoshiro256** seeded through splitmix64).  Every 1 MiB block starts
 *       with its block number, so no two blocks are alike.
 *   benchtool read [-b BS] [-o OFFSET] [-l LENGTH] FILE|-
 *       Read sequentially with BS-byte reads (default 1 MiB) and hash.
 *   benchtool rand [-P] [-D] -b BS -n COUNT -s SEED [-a ALIGN] FILE
 *       COUNT preads of BS bytes at random ALIGN-aligned offsets (default
 *       4096) drawn from SEED; per-read latency percentiles.  -P prints
 *       the offsets, one a line, and reads nothing.  -D first drops the
 *       file's pages from the page cache (POSIX_FADV_DONTNEED), so that
 *       the reads reach the file system.
 *   benchtool model [-r RANK -p NPROC] FILE...
 *       mmap each safetensors file, parse its header (8-byte little-endian
 *       length, then JSON with "data_offsets") and touch every byte of the
 *       tensors whose index modulo NPROC is RANK.  The XOR of the per-
 *       tensor hashes does not depend on how tensors are split between
 *       processes.
 *   benchtool lines FILE|-
 *       Count lines and add up a hash of each: an order-independent digest
 *       of a stream made of whole lines in any order.
 *   benchtool folios [-l LENGTH] FILE
 *       How the page cache holds the first LENGTH bytes of FILE (default
 *       all): pages resident, and how many of them belong to large folios
 *       (compound pages).  It maps the file and touches the pages
 *       already cached (mincore), so it reads nothing.  Needs root
 *       (/proc/kpageflags, page frame numbers in pagemap).
 *   benchtool touch SIZE
 *       Map SIZE bytes of anonymous memory, write one byte in each page,
 *       and free it all: the pages the kernel hands out next are then ones
 *       it has just used.  On a virtual machine that gives freed memory
 *       back to its host (free page reporting), a page touched for the
 *       first time in a while costs a fault on the host; a timed read
 *       right after this one does not pay it.  Prints the time taken.
 *
 * Every command but gen prints one JSON object on stdout.
 * The hash is a 4-lane multiply-rotate hash in the style of XXH64 (not
 * XXH64 itself): fast enough not to bound any read measured here, and
 * independent of how the input is split into reads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1u << 20)

static const uint64_t P1 = 0x9E3779B185EBCA87ULL;
static const uint64_t P2 = 0xC2B2AE3D27D4EB4FULL;
static const uint64_t P3 = 0x165667B19E3779F9ULL;

static void die(const char *what)
{
	fprintf(stderr, "benchtool: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: benchtool gen SEED SIZE\n"
		"       benchtool read [-b BS] [-o OFFSET] [-l LENGTH] FILE|-\n"
		"       benchtool rand [-P] [-D] -b BS -n COUNT -s SEED [-a ALIGN] FILE\n"
		"       benchtool model [-r RANK -p NPROC] FILE...\n"
		"       benchtool lines FILE|-\n"
		"       benchtool folios [-l LENGTH] FILE\n"
		"       benchtool touch SIZE\n");
	exit(2);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t num(const char *s)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		usage();
	switch (*end) {
	case 'K': case 'k': v <<= 10; break;
	case 'M': case 'm': v <<= 20; break;
	case 'G': case 'g': v <<= 30; break;
	case '\0': break;
	default: usage();
	}
	return v;
}

/* --- The hash -------------------------------------------------------------- */

static inline uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t round64(uint64_t acc, uint64_t in)
{
	acc += in * P2;
	acc = rotl(acc, 31);
	return acc * P1;
}

struct hash {
	uint64_t v[4];
	uint64_t total;
	unsigned char pend[32];
	size_t npend;
};

static void hash_init(struct hash *h, uint64_t seed)
{
	h->v[0] = seed + P1 + P2;
	h->v[1] = seed + P2;
	h->v[2] = seed;
	h->v[3] = seed - P1;
	h->total = 0;
	h->npend = 0;
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return w;
}

static void hash_blocks(struct hash *h, const unsigned char *p, size_t n)
{
	uint64_t a = h->v[0], b = h->v[1], c = h->v[2], d = h->v[3];

	for (; n >= 32; n -= 32, p += 32) {
		a = round64(a, load64(p));
		b = round64(b, load64(p + 8));
		c = round64(c, load64(p + 16));
		d = round64(d, load64(p + 24));
	}
	h->v[0] = a; h->v[1] = b; h->v[2] = c; h->v[3] = d;
}

static void hash_update(struct hash *h, const void *data, size_t n)
{
	const unsigned char *p = data;

	h->total += n;
	if (h->npend) {
		size_t take = 32 - h->npend;

		if (take > n)
			take = n;
		memcpy(h->pend + h->npend, p, take);
		h->npend += take;
		p += take;
		n -= take;
		if (h->npend < 32)
			return;
		hash_blocks(h, h->pend, 32);
		h->npend = 0;
	}
	hash_blocks(h, p, n & ~(size_t)31);
	p += n & ~(size_t)31;
	n &= 31;
	memcpy(h->pend, p, n);
	h->npend = n;
}

static uint64_t hash_final(const struct hash *h)
{
	uint64_t acc = rotl(h->v[0], 1) + rotl(h->v[1], 7) +
		       rotl(h->v[2], 12) + rotl(h->v[3], 18);
	size_t i;

	acc ^= h->total * P3;
	for (i = 0; i < h->npend; i++)
		acc = rotl(acc ^ (h->pend[i] * P3), 11) * P1;
	acc ^= acc >> 33;
	acc *= P2;
	acc ^= acc >> 29;
	acc *= P3;
	acc ^= acc >> 32;
	return acc;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
	struct hash h;

	hash_init(&h, seed);
	hash_update(&h, p, n);
	return hash_final(&h);
}

/* --- gen ------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

struct rng {
	uint64_t s[4];
};

static void rng_seed(struct rng *r, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++)
		r->s[i] = splitmix(&seed);
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		p += w;
		n -= (size_t)w;
	}
}

static int cmd_gen(int argc, char **argv)
{
	uint64_t seed, size, block = 0;
	uint64_t *buf;
	struct rng r;

	if (argc != 3)
		usage();
	seed = num(argv[1]);
	size = num(argv[2]);
	rng_seed(&r, seed);
	buf = malloc(MIB);
	if (!buf)
		die("malloc");
	while (size) {
		size_t n = size < MIB ? (size_t)size : MIB, i;

		for (i = 0; i < MIB / 8; i++)
			buf[i] = rng_next(&r);
		buf[0] = block++;
		write_all(1, buf, n);
		size -= n;
	}
	free(buf);
	return 0;
}

/* --- read ------------------------------------------------------------------ */

static int open_in(const char *path)
{
	int fd;

	if (strcmp(path, "-") == 0)
		return 0;
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	return fd;
}

static int cmd_read(int argc, char **argv)
{
	size_t bs = MIB;
	uint64_t off = 0, len = UINT64_MAX, done = 0;
	double t0, tfirst = 0, t1;
	struct hash h;
	char *buf;
	int opt, fd;

	while ((opt = getopt(argc, argv, "b:o:l:")) != -1) {
		switch (opt) {
		case 'b': bs = num(optarg); break;
		case 'o': off = num(optarg); break;
		case 'l': len = num(optarg); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || bs == 0)
		usage();
	fd = open_in(argv[optind]);
	if (off && lseek(fd, (off_t)off, SEEK_SET) < 0)
		die("lseek");
	buf = malloc(bs);
	if (!buf)
		die("malloc");
	hash_init(&h, 0);
	t0 = now();
	while (done < len) {
		size_t want = len - done < bs ? (size_t)(len - done) : bs;
		ssize_t n = read(fd, buf, want);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		if (n == 0)
			break;
		if (!done)
			tfirst = now();
		hash_update(&h, buf, (size_t)n);
		done += (uint64_t)n;
	}
	t1 = now();
	printf("{\"bytes\": %" PRIu64 ", \"hash\": \"%016" PRIx64 "\", "
	       "\"secs\": %.6f, \"first_byte_secs\": %.6f}\n",
	       done, hash_final(&h), t1 - t0, done ? tfirst - t0 : 0.0);
	free(buf);
	return 0;
}

/* --- rand ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmd_rand(int argc, char **argv)
{
	uint64_t bs = 0, count = 0, seed = 0, align = 4096, slots, i, total = 0;
	uint64_t *lat;
	struct hash h;
	struct stat st;
	struct rng r;
	double t0, t1;
	char *buf;
	int opt, fd, print = 0, drop = 0;

	while ((opt = getopt(argc, argv, "PDb:n:s:a:")) != -1) {
		switch (opt) {
		case 'P': print = 1; break;
		case 'D': drop = 1; break;
		case 'b': bs = num(optarg); break;
		case 'n': count = num(optarg); break;
		case 's': seed = num(optarg); break;
		case 'a': align = num(optarg); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || !bs || !count || !align)
		usage();
	fd = open_in(argv[optind]);
	if (fstat(fd, &st) < 0)
		die("fstat");
	if ((uint64_t)st.st_size < bs) {
		fprintf(stderr, "benchtool: file smaller than one read\n");
		return 1;
	}
	slots = ((uint64_t)st.st_size - bs) / align + 1;
	rng_seed(&r, seed);
	if (print) {
		for (i = 0; i < count; i++)
			printf("%" PRIu64 "\n", (rng_next(&r) % slots) * align);
		return 0;
	}
	if (drop) {
		errno = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		if (errno)
			die("posix_fadvise");
	}
	buf = malloc(bs);
	lat = malloc(count * sizeof(*lat));
	if (!buf || !lat)
		die("malloc");
	hash_init(&h, 0);
	t0 = now();
	for (i = 0; i < count; i++) {
		uint64_t o = (rng_next(&r) % slots) * align, got = 0;
		double a = now();

		while (got < bs) {
			ssize_t n = pread(fd, buf + got, bs - got,
					  (off_t)(o + got));

			if (n < 0) {
				if (errno == EINTR)
					continue;
				die("pread");
			}
			if (n == 0)
				break;
			got += (uint64_t)n;
		}
		lat[i] = (uint64_t)((now() - a) * 1e9);
		hash_update(&h, buf, got);
		total += got;
	}
	t1 = now();
	qsort(lat, count, sizeof(*lat), cmp_u64);
	printf("{\"count\": %" PRIu64 ", \"bytes\": %" PRIu64 ", "
	       "\"hash\": \"%016" PRIx64 "\", \"secs\": %.6f, "
	       "\"median_us\": %.3f, \"p99_us\": %.3f, \"max_us\": %.3f}\n",
	       count, total, hash_final(&h), t1 - t0,
	       lat[count / 2] / 1e3,
	       lat[count * 99 / 100 < count ? count * 99 / 100 : count - 1] / 1e3,
	       lat[count - 1] / 1e3);
	free(buf);
	free(lat);
	return 0;
}

/* --- model ----------------------------------------------------------------- */

static int cmd_model(int argc, char **argv)
{
	uint64_t rank = 0, nproc = 1, touched = 0, tensors = 0, combined = 0;
	double t0, t1;
	int opt, fi;

	while ((opt = getopt(argc, argv, "r:p:")) != -1) {
		switch (opt) {
		case 'r': rank = num(optarg); break;
		case 'p': nproc = num(optarg); break;
		default: usage();
		}
	}
	if (optind >= argc || !nproc || rank >= nproc)
		usage();
	t0 = now();
	for (fi = optind; fi < argc; fi++) {
		uint64_t hlen, idx = 0;
		const unsigned char *map;
		const char *p, *end;
		struct stat st;
		char *json;
		int fd = open(argv[fi], O_RDONLY);

		if (fd < 0 || fstat(fd, &st) < 0)
			die(argv[fi]);
		if (st.st_size < 8) {
			fprintf(stderr, "benchtool: %s: not safetensors\n",
				argv[fi]);
			return 1;
		}
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
			   fd, 0);
		if (map == MAP_FAILED)
			die("mmap");
		close(fd);
		memcpy(&hlen, map, 8);	/* little-endian hosts only */
		if (hlen > (uint64_t)st.st_size - 8) {
			fprintf(stderr, "benchtool: %s: bad header length\n",
				argv[fi]);
			return 1;
		}
		json = malloc(hlen + 1);
		if (!json)
			die("malloc");
		memcpy(json, map + 8, hlen);
		json[hlen] = '\0';
		p = json;
		end = json + hlen;
		while ((p = strstr(p, "\"data_offsets\"")) != NULL && p < end) {
			uint64_t a, b;
			char *e;

			p = strchr(p, '[');
			if (!p)
				break;
			a = strtoull(p + 1, &e, 10);
			p = strchr(e, ',');
			if (!p)
				break;
			b = strtoull(p + 1, &e, 10);
			p = e;
			if (b < a || 8 + hlen + b > (uint64_t)st.st_size) {
				fprintf(stderr, "benchtool: %s: bad offsets\n",
					argv[fi]);
				return 1;
			}
			if (idx % nproc == rank) {
				uint64_t seed = ((uint64_t)(fi - optind) << 32) |
						idx;

				combined ^= hash_bytes(map + 8 + hlen + a,
						       (size_t)(b - a), seed);
				touched += b - a;
				tensors++;
			}
			idx++;
		}
		free(json);
		munmap((void *)map, (size_t)st.st_size);
	}
	t1 = now();
	printf("{\"tensors\": %" PRIu64 ", \"bytes\": %" PRIu64 ", "
	       "\"hash\": \"%016" PRIx64 "\", \"secs\": %.6f}\n",
	       tensors, touched, combined, t1 - t0);
	return 0;
}

/* --- lines ----------------------------------------------------------------- */

static int cmd_lines(int argc, char **argv)
{
	uint64_t count = 0, bytes = 0, sum = 0;
	size_t cap = MIB, have = 0;
	char *buf;
	int fd;

	if (argc != 2)
		usage();
	fd = open_in(argv[1]);
	buf = malloc(cap);
	if (!buf)
		die("malloc");
	for (;;) {
		ssize_t n;
		char *p, *nl;

		if (have == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				die("realloc");
		}
		n = read(fd, buf + have, cap - have);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		if (n == 0)
			break;
		bytes += (uint64_t)n;
		have += (size_t)n;
		p = buf;
		while ((nl = memchr(p, '\n', have - (size_t)(p - buf)))) {
			sum += hash_bytes(p, (size_t)(nl - p), 0);
			count++;
			p = nl + 1;
		}
		have -= (size_t)(p - buf);
		memmove(buf, p, have);
	}
	if (have) {		/* a last line without a newline */
		sum += hash_bytes(buf, have, 0);
		count++;
	}
	printf("{\"lines\": %" PRIu64 ", \"bytes\": %" PRIu64 ", "
	       "\"hash\": \"%016" PRIx64 "\"}\n", count, bytes, sum);
	free(buf);
	return 0;
}

/* --- folios ---------------------------------------------------------------- */

#define PM_PRESENT (1ULL << 63)
#define PM_PFN_MASK ((1ULL << 55) - 1)
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16

static int cmd_folios(int argc, char **argv)
{
	uint64_t len = UINT64_MAX, pages, resident = 0, large = 0, pfns = 0;
	long psz = sysconf(_SC_PAGESIZE);
	volatile unsigned char sink = 0;
	unsigned char *map, *vec;
	uint64_t *pm;
	struct stat st;
	int opt, fd, pmfd, kfd;

	while ((opt = getopt(argc, argv, "l:")) != -1) {
		switch (opt) {
		case 'l': len = num(optarg); break;
		default: usage();
		}
	}
	if (optind != argc - 1)
		usage();
	fd = open_in(argv[optind]);
	if (fstat(fd, &st) != 0)
		die("fstat");
	if (len > (uint64_t)st.st_size)
		len = (uint64_t)st.st_size;
	pages = (len + (uint64_t)psz - 1) / (uint64_t)psz;
	if (!pages) {
		printf("{\"pages\": 0, \"resident\": 0, \"large\": 0}\n");
		return 0;
	}
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	vec = malloc(pages);
	pm = malloc(pages * sizeof(*pm));
	if (!vec || !pm)
		die("malloc");
	if (mincore(map, len, vec) != 0)
		die("mincore");
	for (uint64_t i = 0; i < pages; i++)	/* mapped, not read */
		if (vec[i] & 1)
			sink += map[i * (uint64_t)psz];
	pmfd = open("/proc/self/pagemap", O_RDONLY);
	kfd = open("/proc/kpageflags", O_RDONLY);
	if (pmfd < 0 || kfd < 0)
		die("/proc/self/pagemap or /proc/kpageflags");
	if (pread(pmfd, pm, pages * sizeof(*pm),
		  (off_t)((uintptr_t)map / (uint64_t)psz * sizeof(*pm))) !=
	    (ssize_t)(pages * sizeof(*pm)))
		die("pagemap");
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t pfn = pm[i] & PM_PFN_MASK, flags;

		if (!(pm[i] & PM_PRESENT))
			continue;
		resident++;
		if (!pfn)
			continue;
		pfns++;
		if (pread(kfd, &flags, sizeof(flags), (off_t)(pfn * sizeof(flags))) !=
		    (ssize_t)sizeof(flags))
			die("kpageflags");
		if (flags & ((1ULL << KPF_COMPOUND_HEAD) | (1ULL << KPF_COMPOUND_TAIL)))
			large++;
	}
	/* Without CAP_SYS_ADMIN pagemap hides the frame numbers. */
	if (resident && !pfns) {
		fprintf(stderr, "benchtool: folios: no page frame numbers "
			"(needs root)\n");
		return 1;
	}
	printf("{\"pages\": %" PRIu64 ", \"resident\": %" PRIu64 ", "
	       "\"large\": %" PRIu64 "}\n", pages, resident, large);
	(void)sink;
	free(vec);
	free(pm);
	munmap(map, len);
	close(pmfd);
	close(kfd);
	return 0;
}

/* --- touch ----------------------------------------------------------------- */

static int cmd_touch(int argc, char **argv)
{
	long psz = sysconf(_SC_PAGESIZE);
	uint64_t size;
	volatile unsigned char *p;
	double t0;

	if (argc != 2)
		usage();
	size = num(argv[1]);
	if (!size) {
		printf("{\"bytes\": 0, \"secs\": 0}\n");
		return 0;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	/* Small pages, as the page cache mostly uses for a FUSE file. */
	(void)madvise((void *)p, size, MADV_NOHUGEPAGE);
	t0 = now();
	for (uint64_t off = 0; off < size; off += (uint64_t)psz)
		p[off] = 1;
	printf("{\"bytes\": %" PRIu64 ", \"secs\": %.3f}\n", size, now() - t0);
	munmap((void *)p, size);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "gen") == 0)
		return cmd_gen(argc - 1, argv + 1);
	if (strcmp(argv[1], "read") == 0)
		return cmd_read(argc - 1, argv + 1);
	if (strcmp(argv[1], "rand") == 0)
		return cmd_rand(argc - 1, argv + 1);
	if (strcmp(argv[1], "model") == 0)
		return cmd_model(argc - 1, argv + 1);
	if (strcmp(argv[1], "lines") == 0)
		return cmd_lines(argc - 1, argv + 1);
	if (strcmp(argv[1], "folios") == 0)
		return cmd_folios(argc - 1, argv + 1);
	if (strcmp(argv[1], "touch") == 0)
		return cmd_touch(argc - 1, argv + 1);
	usage();
	return 2;
}
