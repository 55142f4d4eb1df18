/*
 * Unit tests for the readahead policy (src/fs/stream.c).
 */
#include "check.h"
#include "fs/fs_int.h"

#define MB ((uint64_t)HUBFS_CACHE_BLOCK_SIZE)
#define KB128 (128 * 1024)

/* A read of [off, off + len) of a 100-block object, window max 16. */
static void read_at(struct fs_stream *st, uint64_t off, uint64_t len,
		    uint64_t *from, uint64_t *to)
{
	fs_stream_update(st, off, off + len, 100, 16, from, to);
}

static void test_stream__sequential_window_doubles_to_the_max(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to, off = 0;
	/* Nothing until more than FS_STREAM_MIN_SEQ (2 blocks) was read. */
	uint32_t want[] = { 0, 0, 2, 4, 8, 16, 16, 16 };

	for (unsigned int i = 0; i < 8; i++) {
		read_at(&st, off, MB, &from, &to);
		CHECK_UINT(st.window, want[i]);
		if (want[i] == 0) {
			CHECK_UINT(from, to);
		} else {
			/* Readahead covers the window past the block just
			 * read. */
			CHECK_UINT(to, off / MB + 1 + want[i]);
			CHECK(from < to);
		}
		st.ra_next = to;	/* as if all were queued */
		off += MB;
	}
}

/* A large random read arrives cut into consecutive pieces: no stream. */
static void test_stream__one_large_read_is_not_a_stream(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to, off = 37 * MB + 12345, i;

	read_at(&st, 3 * MB, 4096, &from, &to);
	for (i = 0; i < 8; i++) {
		read_at(&st, off + i * KB128, KB128, &from, &to);
		CHECK_UINT(st.window, 0);
		CHECK_UINT(from, to);
	}
	/* Reading on past the threshold makes it one. */
	for (; i < 17; i++)
		read_at(&st, off + i * KB128, KB128, &from, &to);
	CHECK_UINT(st.window, 2);
	CHECK(from < to);
}

static void test_stream__each_block_is_considered_once(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to;

	read_at(&st, 0, 2 * MB + KB128, &from, &to);
	CHECK_UINT(from, 3);
	CHECK_UINT(to, 5);
	st.ra_next = to;
	read_at(&st, 2 * MB + KB128, KB128, &from, &to); /* block 2 again */
	CHECK_UINT(from, 5);			/* not 3: already asked */
	CHECK_UINT(to, 7);
}

static void test_stream__random_reads_get_no_readahead(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to;

	read_at(&st, 0, MB, &from, &to);
	st.ra_next = to;
	read_at(&st, 50 * MB, 4096, &from, &to);
	CHECK_UINT(st.window, 0);
	CHECK_UINT(st.ra_next, 0);
	CHECK_UINT(from, to);
	read_at(&st, 7 * MB, 4096, &from, &to);
	CHECK_UINT(from, to);
	/* Reads that follow each other make it sequential again. */
	read_at(&st, 7 * MB + 4096, 2 * MB, &from, &to);
	CHECK_UINT(st.window, 2);
	CHECK_UINT(from, 10);
	CHECK_UINT(to, 12);
}

static void test_stream__first_read_elsewhere_than_zero_is_random(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to;

	read_at(&st, 30 * MB, KB128, &from, &to);
	CHECK_UINT(st.window, 0);
	CHECK_UINT(from, to);
	CHECK_UINT(st.next_off, 30 * MB + KB128);
}

static void test_stream__window_stops_at_the_end(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to, off;

	for (off = 0; off < 98 * MB; off += MB) {
		read_at(&st, off, MB, &from, &to);
		st.ra_next = to;
	}
	CHECK_UINT(to, 100);
	read_at(&st, 98 * MB, 2 * MB, &from, &to);	/* the last two */
	CHECK_UINT(from, 100);
	CHECK_UINT(to, 100);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_stream__sequential_window_doubles_to_the_max),
	CHECK_TEST(test_stream__one_large_read_is_not_a_stream),
	CHECK_TEST(test_stream__each_block_is_considered_once),
	CHECK_TEST(test_stream__random_reads_get_no_readahead),
	CHECK_TEST(test_stream__first_read_elsewhere_than_zero_is_random),
	CHECK_TEST(test_stream__window_stops_at_the_end),
};

CHECK_MAIN(tests)
