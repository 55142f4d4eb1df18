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

/* What fs_reader_advise() does with [from, to): queue it all. */
static void queued(struct fs_stream *st, uint64_t from, uint64_t to)
{
	if (from < to)
		st->ra_next = to;
}

static void test_stream__sequential_window_doubles_to_the_max(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to, off = 0;
	/* Nothing until more than FS_STREAM_MIN_SEQ (2 blocks) was read. */
	uint32_t want[] = { 0, 0, 2, 4, 8, 16, 16, 16, 16, 16, 16, 16, 16, 16 };
	unsigned int batches = 0;

	for (unsigned int i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		read_at(&st, off, MB, &from, &to);
		CHECK_UINT(st.window, want[i]);
		if (want[i] < FS_STREAM_BATCH) {
			CHECK_UINT(from, to);
		} else if (from < to) {
			/* Readahead covers the window past the block just
			 * read, a batch at a time. */
			CHECK_UINT(to, off / MB + 1 + want[i]);
			CHECK(to - from >= FS_STREAM_BATCH);
			batches++;
		}
		queued(&st, from, to);
		off += MB;
	}
	/* Blocks 5-12 and 13-21 at windows 8 and 16, then 22-29 once 8 more
	 * blocks of the window are due. */
	CHECK_UINT(batches, 3);
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
	/* Reading on past the threshold makes it one, and its first batch
	 * of readahead comes once the window has grown to a batch. */
	for (; i < 17; i++)
		read_at(&st, off + i * KB128, KB128, &from, &to);
	CHECK_UINT(st.window, 2);
	CHECK_UINT(from, to);
	for (; i < 19; i++)
		read_at(&st, off + i * KB128, KB128, &from, &to);
	CHECK_UINT(st.window, 8);
	CHECK_UINT(to - from, 8);
}

/* The kernel's readahead reads reach hubfs slightly out of order: a
 * sequential reader is still one. */
static void test_stream__shuffled_reads_are_still_sequential(void)
{
	struct fs_stream st = { 0 };
	uint64_t from = 0, to = 0;
	const unsigned int order[] = { 0, 2, 1, 3, 5, 4, 7, 6, 9, 8, 11, 10,
				 13, 12, 15, 14, 17, 16, 19, 18, 21, 20 };

	bool any = false;

	for (unsigned int i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		read_at(&st, order[i] * KB128, KB128, &from, &to);
		any |= from < to;
		queued(&st, from, to);
	}
	CHECK(st.window >= 8);
	CHECK(any);
	/* A jump past the slack ends the stream. */
	read_at(&st, 40 * MB, KB128, &from, &to);
	CHECK_UINT(st.window, 0);
	CHECK_UINT(from, to);
}

static void test_stream__each_block_is_considered_once(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to;

	for (uint64_t off = 0; off < 5 * MB; off += MB) {
		read_at(&st, off, MB, &from, &to);
		queued(&st, from, to);
	}
	CHECK_UINT(st.window, 8);
	CHECK_UINT(st.ra_next, 13);		/* blocks 5 to 12 asked */
	read_at(&st, 4 * MB, MB, &from, &to);	/* block 4 again */
	CHECK_UINT(from, 13);			/* not 5: already asked */
	CHECK_UINT(to, 21);
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
	CHECK_UINT(from, to);			/* no batch due yet */
	read_at(&st, 9 * MB + 4096, MB, &from, &to);
	read_at(&st, 10 * MB + 4096, MB, &from, &to);
	CHECK_UINT(st.window, 8);
	CHECK_UINT(from, 12);
	CHECK_UINT(to, 20);
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
		queued(&st, from, to);
	}
	CHECK_UINT(to, 100);
	read_at(&st, 98 * MB, 2 * MB, &from, &to);	/* the last two */
	CHECK_UINT(from, 100);
	CHECK_UINT(to, 100);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_stream__sequential_window_doubles_to_the_max),
	CHECK_TEST(test_stream__one_large_read_is_not_a_stream),
	CHECK_TEST(test_stream__shuffled_reads_are_still_sequential),
	CHECK_TEST(test_stream__each_block_is_considered_once),
	CHECK_TEST(test_stream__random_reads_get_no_readahead),
	CHECK_TEST(test_stream__first_read_elsewhere_than_zero_is_random),
	CHECK_TEST(test_stream__window_stops_at_the_end),
};

CHECK_MAIN(tests)
