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
		       FS_STREAM_SLACK == MiB &&
		       FS_STREAM_SPENT_ALIGN == 2 * MiB &&
		       FS_STREAM_DROP_LAG == 4 * MiB,
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

/* --- sweeps: an object's readers together ------------------------------- */

/*
 * Loaders sharing out a file's tensors: N processes, process r touching
 * tensors r, r + N, ... of 512 KiB each, in 128 KiB faults, all at the
 * same pace.  Blocks a read or readahead asked for count as present or
 * being fetched, as swept_before() in read.c sees them.
 */
static void test_sweep__interleaved_loaders_get_readahead(void)
{
	enum { N = 4, TENSOR = 2 * B, NT = NBLOCKS * B / TENSOR };
	struct fs_sweep sw = { 0 };
	bool asked[NBLOCKS] = { false };
	unsigned int on_demand = 0, ahead = 0;
	uint64_t from, to, t, r, piece, i;

	for (t = 0; t < NT; t += N) {
		for (piece = 0; piece < TENSOR; piece += KB128) {
			for (r = 0; r < N && t + r < NT; r++) {
				uint64_t off = (t + r) * TENSOR + piece;
				uint64_t b = off / B, last = b;
				bool behind = b >= FS_STREAM_MIN_SEQ / B;

				for (i = behind ? b - FS_STREAM_MIN_SEQ / B : 0;
				     i < b && behind; i++)
					behind = asked[i];
				if (!asked[b]) {
					asked[b] = true;
					on_demand++;
				}
				fs_sweep_update(&sw, behind, last, NBLOCKS,
						MAX_WINDOW, &from, &to);
				for (i = from; i < to; i++) {
					ahead += !asked[i];
					asked[i] = true;
				}
				if (from < to)
					sw.ra_next = to;
			}
		}
	}
	CHECK_UINT(on_demand + ahead, NBLOCKS);
	/* Only the blocks before the first batch was due are read on
	 * demand: 8 behind the first read that had them, and the few
	 * reads in which the window grew to a batch. */
	CHECK(on_demand <= 16);
	CHECK_UINT(sw.window, MAX_WINDOW);
}

/* A random reader has nothing behind its reads: no window at all. */
static void test_sweep__nothing_behind_gets_nothing(void)
{
	struct fs_sweep sw = { 0 };
	uint64_t from, to, i;

	for (i = 0; i < 20; i++) {
		fs_sweep_update(&sw, false, (i * 37) % NBLOCKS, NBLOCKS,
				MAX_WINDOW, &from, &to);
		CHECK_UINT(from, to);
		CHECK_UINT(sw.window, 0);
	}
}

/* A reader behind the others continues the sweep; one more than the
 * largest window behind where it has asked starts a new one. */
static void test_sweep__a_laggard_continues_a_far_read_restarts(void)
{
	struct fs_sweep sw = { 0 };
	uint64_t from, to, last;

	for (last = 100; sw.window < MAX_WINDOW; last++) {
		fs_sweep_update(&sw, true, last, NBLOCKS, MAX_WINDOW, &from,
				&to);
		if (from < to)
			sw.ra_next = to;
	}
	CHECK_UINT(sw.ra_next, last + MAX_WINDOW);
	fs_sweep_update(&sw, true, last - 20, NBLOCKS, MAX_WINDOW, &from,
			&to);
	CHECK_UINT(sw.window, MAX_WINDOW);
	CHECK_UINT(from, to);		/* all asked for already */
	fs_sweep_update(&sw, true, 20, NBLOCKS, MAX_WINDOW, &from, &to);
	CHECK_UINT(sw.window, 2);
	CHECK_UINT(sw.ra_next, 0);
	CHECK_UINT(from, to);		/* no batch due yet */
}

/* What a stream has said it is done with: where each range ended. */
struct said {
	uint64_t written, dropped;
	unsigned int writes, drops;
};

/* Read [@from_off, @to_off) in 128 KiB reads with the content before
 * @checked hashed; what the stream says must follow on from what it
 * said before (@said), in whole aligned pieces, each byte once. */
static void spend_reading(struct fs_stream *st, uint64_t from_off,
			  uint64_t to_off, uint64_t checked,
			  struct said *said)
{
	struct fs_spent sp;
	uint64_t off, rf, rt;

	said->written = st->written;
	said->dropped = st->spent;
	for (off = from_off; off < to_off; off += KB128) {
		read_at(st, off, KB128, &rf, &rt);
		queued(st, rf, rt);
		fs_stream_spent(st, off, checked, &sp);
		if (sp.write_to > sp.write_from) {
			CHECK_UINT(sp.write_from, said->written);
			CHECK_UINT(sp.write_to % FS_STREAM_SPENT_ALIGN, 0);
			/* Behind the read: reads just before it may still be
			 * being answered. */
			CHECK(sp.write_to + FS_STREAM_SLACK <= off);
			said->written = sp.write_to;
			said->writes++;
		} else {
			CHECK_UINT(sp.write_to, sp.write_from);
		}
		if (sp.drop_to > sp.drop_from) {
			CHECK_UINT(sp.drop_from, said->dropped);
			CHECK_UINT(sp.drop_to % FS_STREAM_SPENT_ALIGN, 0);
			/* Written back a while ago, and hashed. */
			CHECK(sp.drop_to + FS_STREAM_DROP_LAG <= said->written);
			CHECK(sp.drop_to <= checked);
			said->dropped = sp.drop_to;
			said->drops++;
		} else {
			CHECK_UINT(sp.drop_to, sp.drop_from);
		}
	}
}

static void test_stream__sequential_reader_spends_what_it_passed(void)
{
	struct fs_stream st = { 0 };
	struct said said = { 0 };

	/* Reading up to 40 MiB: all but the last slack is written back,
	 * to the alignment below it, and given back less the lag. */
	spend_reading(&st, 0, 40 * MiB, UINT64_MAX, &said);
	CHECK_UINT(said.written, 38 * MiB);
	CHECK_UINT(said.dropped, 34 * MiB);
	CHECK(said.writes >= 10 && said.drops >= 10); /* as it goes */
}

static void test_stream__spent_waits_for_the_hash(void)
{
	struct fs_stream st = { 0 };
	struct said said = { 0 };
	struct fs_spent sp;
	uint64_t from, to;

	spend_reading(&st, 0, 20 * MiB, 5 * MiB, &said);
	CHECK_UINT(said.written, 18 * MiB);
	CHECK_UINT(said.dropped, 4 * MiB);
	/* The hash moves on: the next read says so, once. */
	read_at(&st, 20 * MiB, KB128, &from, &to);
	fs_stream_spent(&st, 20 * MiB, 11 * MiB, &sp);
	CHECK_UINT(sp.drop_from, 4 * MiB);
	CHECK_UINT(sp.drop_to, 10 * MiB);
	read_at(&st, 20 * MiB + KB128, KB128, &from, &to);
	fs_stream_spent(&st, 20 * MiB + KB128, 11 * MiB, &sp);
	CHECK_UINT(sp.drop_to, sp.drop_from);
}

static void test_stream__random_reader_spends_nothing(void)
{
	struct fs_stream st = { 0 };
	struct fs_spent sp;
	uint64_t from, to, off = 0, i;

	for (i = 0; i < 200; i++) {
		off = (off + 37 * MiB + 4096 * i) % (NBLOCKS * B);
		read_at(&st, off, 4096, &from, &to);
		fs_stream_spent(&st, off, UINT64_MAX, &sp);
		CHECK_UINT(sp.write_to, sp.write_from);
		CHECK_UINT(sp.drop_to, sp.drop_from);
	}
}

static void test_stream__a_new_stream_spends_from_its_start(void)
{
	struct fs_stream st = { 0 };
	struct said said = { 0 };
	uint64_t start = 50 * MiB + 12345, from, to;

	spend_reading(&st, 0, 30 * MiB, UINT64_MAX, &said);
	CHECK_UINT(said.written, 28 * MiB);
	/* Reads behind it are still the stream's: nothing named twice. */
	said = (struct said){ 0 };
	spend_reading(&st, 0, 10 * MiB, UINT64_MAX, &said);
	CHECK_UINT(said.writes + said.drops, 0);
	CHECK_UINT(st.written, 28 * MiB);
	CHECK_UINT(st.spent, 24 * MiB);
	/* Elsewhere: from where that stream began, not before. */
	read_at(&st, start, KB128, &from, &to);
	CHECK_UINT(st.written, start);
	CHECK_UINT(st.spent, start);
	spend_reading(&st, start + KB128, start + 20 * MiB, UINT64_MAX, &said);
	CHECK_UINT(said.written, 68 * MiB);
	CHECK_UINT(said.dropped, 64 * MiB);
}

static void test_stream__closing_spends_the_rest_as_far_as_hashed(void)
{
	struct fs_stream st = { 0 }, rnd = { 0 };
	struct said said = { 0 };
	struct fs_spent sp;
	uint64_t from, to;

	spend_reading(&st, 0, 30 * MiB, 29 * MiB, &said);
	fs_stream_spent_all(&st, 29 * MiB, &sp);
	CHECK_UINT(sp.write_from, 28 * MiB);
	CHECK_UINT(sp.write_to, 29 * MiB);	/* no alignment at the end */
	CHECK_UINT(sp.drop_from, 24 * MiB);
	CHECK_UINT(sp.drop_to, 29 * MiB);
	/* The hash is done: the rest of what was read, and no more. */
	fs_stream_spent_all(&st, UINT64_MAX, &sp);
	CHECK_UINT(sp.write_from, 29 * MiB);
	CHECK_UINT(sp.write_to, 30 * MiB);
	CHECK_UINT(sp.drop_from, 29 * MiB);
	CHECK_UINT(sp.drop_to, 30 * MiB);
	fs_stream_spent_all(&st, UINT64_MAX, &sp);
	CHECK_UINT(sp.write_to + sp.drop_to, 0);
	/* A random reader's close says nothing. */
	read_at(&rnd, 7 * MiB, KB128, &from, &to);
	fs_stream_spent_all(&rnd, UINT64_MAX, &sp);
	CHECK_UINT(sp.write_to + sp.drop_to, 0);
}

static const struct check_test tests[] = {
	CHECK_TEST(test_stream__sequential_window_doubles_to_the_max),
	CHECK_TEST(test_stream__one_large_read_is_not_a_stream),
	CHECK_TEST(test_stream__shuffled_reads_are_still_sequential),
	CHECK_TEST(test_stream__each_block_is_considered_once),
	CHECK_TEST(test_stream__random_reads_get_no_readahead),
	CHECK_TEST(test_stream__first_read_elsewhere_than_zero_is_random),
	CHECK_TEST(test_stream__window_stops_at_the_end),
	CHECK_TEST(test_sweep__interleaved_loaders_get_readahead),
	CHECK_TEST(test_sweep__nothing_behind_gets_nothing),
	CHECK_TEST(test_sweep__a_laggard_continues_a_far_read_restarts),
	CHECK_TEST(test_stream__sequential_reader_spends_what_it_passed),
	CHECK_TEST(test_stream__spent_waits_for_the_hash),
	CHECK_TEST(test_stream__random_reader_spends_nothing),
	CHECK_TEST(test_stream__a_new_stream_spends_from_its_start),
	CHECK_TEST(test_stream__closing_spends_the_rest_as_far_as_hashed),
};

CHECK_MAIN(tests)
