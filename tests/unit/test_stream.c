/*
 * Unit tests for the readahead policy (src/fs/stream.c).
 */
#include "check.h"
#include "fs/fs_int.h"

#define B ((uint64_t)HUBFS_CACHE_BLOCK_SIZE)
#define MiB ((uint64_t)1 << 20)
#define KB128 (128 * 1024)
#define NBLOCKS 400
#define MAX_WINDOW 64

/* The expectations below are worked out for this geometry. */
_Static_assert(HUBFS_CACHE_BLOCK_SIZE == 256 * 1024 &&
		       FS_STREAM_BATCH == 32 && FS_STREAM_MIN_SEQ == 2 * MiB &&
		       FS_STREAM_SLACK == MiB,
	       "recompute the expected windows and batches");

/* A read of [off, off + len) of a NBLOCKS-block object. */
static void read_at(struct fs_stream *st, uint64_t off, uint64_t len,
		    uint64_t *from, uint64_t *to)
{
	fs_stream_update(st, off, off + len, NBLOCKS, MAX_WINDOW, from, to);
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
	uint64_t from, to, i;
	uint32_t want = 0;
	unsigned int batches = 0;

	for (i = 0; i < 48; i++) {
		read_at(&st, i * B, B, &from, &to);
		/* Nothing until more than FS_STREAM_MIN_SEQ was read, then
		 * a window of 2 blocks doubling up to the maximum. */
		if ((i + 1) * B > FS_STREAM_MIN_SEQ)
			want = want ? (want * 2 > MAX_WINDOW ? MAX_WINDOW
							     : want * 2)
				    : 2;
		CHECK_UINT(st.window, want);
		if (want < FS_STREAM_BATCH) {
			CHECK_UINT(from, to);
		} else if (from < to) {
			/* Readahead covers the window past the block just
			 * read, a batch at a time. */
			CHECK_UINT(to, i + 1 + want);
			CHECK(to - from >= FS_STREAM_BATCH);
			batches++;
		}
		queued(&st, from, to);
	}
	/* Blocks 13-44 at window 32 (read 12), 45-77 at window 64, then
	 * 78-109 once 32 more blocks of the window are due (read 45). */
	CHECK_UINT(batches, 3);
}

/* A large random read arrives cut into consecutive pieces: no stream. */
static void test_stream__one_large_read_is_not_a_stream(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to, off = 37 * MiB + 12345, i;

	read_at(&st, 3 * MiB, 4096, &from, &to);
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
	for (; i < 21; i++)
		read_at(&st, off + i * KB128, KB128, &from, &to);
	CHECK_UINT(st.window, 32);
	CHECK_UINT(to - from, 32);
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
	CHECK(st.window >= 32);
	CHECK(any);
	/* A jump past the slack ends the stream. */
	read_at(&st, 40 * MiB, KB128, &from, &to);
	CHECK_UINT(st.window, 0);
	CHECK_UINT(from, to);
}

static void test_stream__each_block_is_considered_once(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to;

	for (uint64_t off = 0; off < 13 * B; off += B) {
		read_at(&st, off, B, &from, &to);
		queued(&st, from, to);
	}
	CHECK_UINT(st.window, 32);
	CHECK_UINT(st.ra_next, 45);		/* blocks 13 to 44 asked */
	read_at(&st, 12 * B, B, &from, &to);	/* block 12 again */
	CHECK_UINT(from, 45);			/* not 13: already asked */
	CHECK_UINT(to, 77);
}

static void test_stream__random_reads_get_no_readahead(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to;

	read_at(&st, 0, MiB, &from, &to);
	st.ra_next = to;
	read_at(&st, 50 * MiB, 4096, &from, &to);
	CHECK_UINT(st.window, 0);
	CHECK_UINT(st.ra_next, 0);
	CHECK_UINT(from, to);
	read_at(&st, 7 * MiB, 4096, &from, &to);
	CHECK_UINT(from, to);
	/* Reads that follow each other make it sequential again. */
	read_at(&st, 7 * MiB + 4096, 2 * MiB, &from, &to);
	CHECK_UINT(st.window, 2);
	CHECK_UINT(from, to);			/* no batch due yet */
	for (uint64_t m = 9; m < 13; m++)
		read_at(&st, m * MiB + 4096, MiB, &from, &to);
	CHECK_UINT(st.window, 32);
	CHECK_UINT(from, 53);			/* past block 52 */
	CHECK_UINT(to, 85);
}

static void test_stream__first_read_elsewhere_than_zero_is_random(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to;

	read_at(&st, 30 * MiB, KB128, &from, &to);
	CHECK_UINT(st.window, 0);
	CHECK_UINT(from, to);
	CHECK_UINT(st.next_off, 30 * MiB + KB128);
}

static void test_stream__window_stops_at_the_end(void)
{
	struct fs_stream st = { 0 };
	uint64_t from, to, off;

	for (off = 0; off < (NBLOCKS - 2) * B; off += B) {
		read_at(&st, off, B, &from, &to);
		queued(&st, from, to);
	}
	CHECK_UINT(to, NBLOCKS);
	read_at(&st, (NBLOCKS - 2) * B, 2 * B, &from, &to); /* the last two */
	CHECK_UINT(from, NBLOCKS);
	CHECK_UINT(to, NBLOCKS);
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
