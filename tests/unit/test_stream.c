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
		       FS_STREAM_SLACK == MiB && FS_SPENT_CHUNK == 2 * MiB &&
		       FS_SPENT_LAG == 2 && FS_SPENT_RANGES == 4,
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

/* --- the ledger -------------------------------------------------------- */

#define CHUNKS 128

enum { KEPT, WRITTEN, GIVEN_BACK };

/* What a ledger has named so far, chunk by chunk. */
struct said {
	uint64_t size;
	unsigned char state[CHUNKS];
	unsigned int nwritten, ndropped, calls_naming;
	uint64_t last_written;	/* the chunk written back last */
};

/* Take in what one fs_ledger_spent() named, with the content before
 * @checked hashed: whole chunks, each hashed and written back before it
 * is given back, once each time it is read. */
static void take(struct said *said, const struct fs_spent *sp,
		 uint64_t checked)
{
	unsigned int i;
	uint64_t c;

	CHECK(sp->nwrite <= FS_SPENT_RANGES && sp->ndrop <= FS_SPENT_RANGES);
	if (sp->nwrite || sp->ndrop)
		said->calls_naming++;
	for (i = 0; i < sp->nwrite; i++) {
		const struct fs_range *r = &sp->write[i];

		CHECK(r->from < r->to && r->to <= checked);
		CHECK_UINT(r->from % FS_SPENT_CHUNK, 0);
		CHECK(r->to % FS_SPENT_CHUNK == 0 || r->to == said->size);
		for (c = r->from / FS_SPENT_CHUNK; c * FS_SPENT_CHUNK < r->to;
		     c++) {
			CHECK(said->state[c] != WRITTEN);
			said->state[c] = WRITTEN;
			said->nwritten++;
			said->last_written = c;
		}
	}
	for (i = 0; i < sp->ndrop; i++) {
		const struct fs_range *r = &sp->drop[i];

		CHECK(r->from < r->to);
		CHECK_UINT(r->from % FS_SPENT_CHUNK, 0);
		CHECK(r->to % FS_SPENT_CHUNK == 0 || r->to == said->size);
		for (c = r->from / FS_SPENT_CHUNK; c * FS_SPENT_CHUNK < r->to;
		     c++) {
			CHECK_UINT(said->state[c], WRITTEN);
			said->state[c] = GIVEN_BACK;
			said->ndropped++;
		}
	}
}

static unsigned int count_state(const struct said *said, int state)
{
	unsigned int c, n = 0;

	for (c = 0; c < CHUNKS; c++)
		n += said->state[c] == state;
	return n;
}

/* A read as fs_reader_release() does it, after its reply: count, then
 * ask. */
static void ledger_read(struct fs_ledger *l, struct said *said, uint64_t off,
			uint64_t len, uint64_t checked)
{
	struct fs_spent sp;
	unsigned int i, j;
	bool pending;

	pending = fs_ledger_read(l, off, len, false);
	fs_ledger_spent(l, checked, false, &sp);
	take(said, &sp, checked);
	/* Not pending: nothing to ask for, so the reader need not ask. */
	CHECK(pending || (sp.nwrite == 0 && sp.ndrop == 0));
	/* Given back by a later call than wrote it back, and FS_SPENT_LAG
	 * chunks later. */
	for (i = 0; i < sp.nwrite; i++)
		for (j = 0; j < sp.ndrop; j++)
			CHECK(sp.write[i].to <= sp.drop[j].from ||
			      sp.drop[j].to <= sp.write[i].from);
	CHECK(sp.ndrop == 0 || count_state(said, WRITTEN) >= FS_SPENT_LAG);
}

/* A handle's close: all it can, without the lag. */
static void ledger_close(struct fs_ledger *l, struct said *said,
			 uint64_t checked)
{
	struct fs_spent sp;

	do {
		fs_ledger_spent(l, checked, true, &sp);
		take(said, &sp, checked);
	} while (sp.nwrite || sp.ndrop);
}

static void ledger_new(struct fs_ledger *l, struct said *said, uint64_t size)
{
	CHECK_INT(fs_ledger_init(l, size), 0);
	*said = (struct said){ .size = size };
}

static void test_ledger__a_sequential_reader_spends_what_it_read(void)
{
	struct fs_ledger l;
	struct said said;
	uint64_t off;

	ledger_new(&l, &said, 64 * MiB);
	for (off = 0; off < 40 * MiB; off += KB128) {
		ledger_read(&l, &said, off, KB128, UINT64_MAX);
		/* Never a chunk the reader has not finished, and in order. */
		CHECK(said.nwritten * FS_SPENT_CHUNK <= off + KB128);
		CHECK(said.nwritten == 0 || said.last_written == said.nwritten - 1);
	}
	/* As it goes: every chunk read is written back, and all but the
	 * last two (the lag) given back. */
	CHECK_UINT(said.nwritten, 20);
	CHECK_UINT(said.ndropped, 18);
	CHECK(said.calls_naming >= 19);
	CHECK_UINT(said.state[17], GIVEN_BACK);
	CHECK_UINT(said.state[18], WRITTEN);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.ndropped, 20);
	CHECK_UINT(said.state[20], KEPT);
	fs_ledger_fini(&l);
}

static void test_ledger__it_waits_for_the_hash(void)
{
	struct fs_ledger l;
	struct said said;
	struct fs_spent sp;
	uint64_t off;

	ledger_new(&l, &said, 64 * MiB);
	for (off = 0; off < 20 * MiB; off += KB128)
		ledger_read(&l, &said, off, KB128, 5 * MiB);
	/* Chunks 0 and 1 are hashed; both are kept for the lag. */
	CHECK_UINT(said.nwritten, 2);
	CHECK_UINT(said.ndropped, 0);
	/* The hash moves on: the next call writes back what it passed and
	 * gives back what earlier calls wrote back, less the lag. */
	fs_ledger_spent(&l, 11 * MiB, false, &sp);
	CHECK_UINT(sp.nwrite, 1);
	CHECK_UINT(sp.write[0].from, 4 * MiB);
	CHECK_UINT(sp.write[0].to, 10 * MiB);
	CHECK_UINT(sp.ndrop, 1);
	CHECK_UINT(sp.drop[0].from, 0);
	CHECK_UINT(sp.drop[0].to, 4 * MiB);
	take(&said, &sp, 11 * MiB);
	fs_ledger_spent(&l, 11 * MiB, false, &sp);
	CHECK_UINT(sp.nwrite, 0);
	CHECK_UINT(sp.ndrop, 1);
	CHECK_UINT(sp.drop[0].from, 4 * MiB);
	CHECK_UINT(sp.drop[0].to, 6 * MiB);
	take(&said, &sp, 11 * MiB);
	fs_ledger_spent(&l, 11 * MiB, false, &sp);
	CHECK_UINT(sp.nwrite + sp.ndrop, 0);
	fs_ledger_fini(&l);
}

static void test_ledger__closing_stops_at_what_is_not_hashed(void)
{
	struct fs_ledger l;
	struct said said;
	uint64_t off;

	ledger_new(&l, &said, 64 * MiB);
	for (off = 0; off < 30 * MiB; off += KB128)
		ledger_read(&l, &said, off, KB128, 21 * MiB);
	ledger_close(&l, &said, 21 * MiB);
	/* Chunks up to 20 MiB are given back, the rest is kept. */
	CHECK_UINT(said.ndropped, 10);
	CHECK_UINT(count_state(&said, WRITTEN), 0);
	CHECK_UINT(said.state[10], KEPT);
	/* Once hashed, a later close takes the rest. */
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.ndropped, 15);
	CHECK_UINT(count_state(&said, GIVEN_BACK), 15);
	fs_ledger_fini(&l);
}

static void test_ledger__a_chunk_read_in_part_is_kept(void)
{
	struct fs_ledger l;
	struct said said;
	uint64_t off = 0, i;

	ledger_new(&l, &said, 64 * MiB);
	for (i = 0; i < 200; i++) {
		off = (off + 37 * MiB + 4096 * i) % (64 * MiB);
		ledger_read(&l, &said, off, 4096, UINT64_MAX);
	}
	CHECK_UINT(said.nwritten, 0);
	fs_ledger_fini(&l);
	/* All of a chunk but one page: kept. */
	ledger_new(&l, &said, 64 * MiB);
	for (off = 8 * MiB + 4096; off < 10 * MiB - 4096; off += 4096)
		ledger_read(&l, &said, off, 4096, UINT64_MAX);
	CHECK_UINT(said.nwritten, 0);
	ledger_read(&l, &said, 8 * MiB, 4096, UINT64_MAX);
	CHECK_UINT(said.nwritten, 0);
	ledger_read(&l, &said, 10 * MiB - 4096, 4096, UINT64_MAX);
	CHECK_UINT(said.nwritten, 1);
	CHECK_UINT(said.state[4], WRITTEN);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.ndropped, 1);
	fs_ledger_fini(&l);
}

static void test_ledger__loaders_sharing_out_tensors_spend_together(void)
{
	struct fs_ledger l;
	struct said said;
	uint64_t next[4] = { 0 }, tensor = 512 * 1024, size = 60 * MiB + 4096;
	uint64_t t, pos;
	unsigned int r, step;

	/* Four loaders, loader r touching tensors r, r + 4, ... in 64 KiB
	 * faults, at different paces; the last chunk is short. */
	ledger_new(&l, &said, size);
	for (step = 0; step < 100000; step++) {
		r = step % 4;
		for (unsigned int k = 0; k <= r; k++) {
			t = next[r] / tensor * 4 + r;
			pos = t * tensor + next[r] % tensor;
			if (pos >= size)
				break;
			ledger_read(&l, &said, pos, 64 * 1024, UINT64_MAX);
			next[r] += 64 * 1024;
		}
	}
	for (r = 0; r < 4; r++)
		CHECK(next[r] / tensor * 4 + r >= size / tensor);
	CHECK_UINT(said.nwritten, 31);
	CHECK_UINT(said.ndropped, 29);
	CHECK_UINT(said.state[0], GIVEN_BACK);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.ndropped, 31);
	CHECK_UINT(count_state(&said, GIVEN_BACK), 31);
	fs_ledger_fini(&l);
}

static void test_ledger__chunks_read_out_of_order_take_several_calls(void)
{
	struct fs_ledger l;
	struct said said;
	struct fs_spent sp;
	uint64_t c;

	/* Chunks finished in the order 0, 2, 4, ... 14, then 1, 3, ...: no
	 * two written back together follow each other. */
	ledger_new(&l, &said, 32 * MiB);
	for (c = 0; c < 16; c += 2)
		fs_ledger_read(&l, c * FS_SPENT_CHUNK, FS_SPENT_CHUNK, false);
	fs_ledger_spent(&l, UINT64_MAX, false, &sp);
	CHECK_UINT(sp.nwrite, FS_SPENT_RANGES);
	CHECK_UINT(sp.write[3].from, 6 * FS_SPENT_CHUNK);
	CHECK_UINT(sp.ndrop, 0);
	take(&said, &sp, UINT64_MAX);
	fs_ledger_spent(&l, UINT64_MAX, false, &sp);
	CHECK_UINT(sp.nwrite, 4);
	CHECK_UINT(sp.ndrop, 4);
	take(&said, &sp, UINT64_MAX);
	CHECK_UINT(said.nwritten, 8);
	for (c = 1; c < 16; c += 2)
		ledger_read(&l, &said, c * FS_SPENT_CHUNK, FS_SPENT_CHUNK,
			    UINT64_MAX);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.nwritten, 16);
	CHECK_UINT(said.ndropped, 16);
	fs_ledger_fini(&l);
}

static void test_ledger__a_chunk_read_again_counts_again(void)
{
	struct fs_ledger l;
	struct said said;
	unsigned int pass;
	uint64_t off;

	/* Over a file of 21 chunks, half of it, then all of it twice, so
	 * that the queue's ring goes round with chunks in it: each pass
	 * writes back and gives back every chunk it read. */
	ledger_new(&l, &said, 41 * MiB);
	for (pass = 0; pass < 3; pass++) {
		for (off = 0; off < (pass ? 41 : 22) * MiB; off += MiB)
			ledger_read(&l, &said, off, MiB, UINT64_MAX);
		ledger_close(&l, &said, UINT64_MAX);
		CHECK_UINT(said.nwritten, 11 + 21 * pass);
		CHECK_UINT(said.ndropped, 11 + 21 * pass);
		CHECK_UINT(count_state(&said, GIVEN_BACK), pass ? 21 : 11);
	}
	fs_ledger_fini(&l);
}

static void test_ledger__a_read_says_whether_anything_is_pending(void)
{
	struct fs_ledger l;
	struct said said;
	struct fs_spent sp;
	uint64_t off;

	ledger_new(&l, &said, 64 * MiB);
	/* Pending from the first chunk read in full: it waits to be
	 * written back. */
	for (off = 0; off < 10 * MiB; off += MiB)
		CHECK(fs_ledger_read(&l, off, MiB, false) == (off >= MiB));
	/* Five chunks wait for the hash, then are written back at once;
	 * none goes in the same call. */
	fs_ledger_spent(&l, 0, false, &sp);
	CHECK_UINT(sp.nwrite + sp.ndrop, 0);
	fs_ledger_spent(&l, UINT64_MAX, false, &sp);
	take(&said, &sp, UINT64_MAX);
	CHECK_UINT(said.nwritten, 5);
	CHECK_UINT(said.ndropped, 0);
	/* A read that finishes nothing: three are more than the lag. */
	CHECK(fs_ledger_read(&l, 20 * MiB, 4096, false));
	fs_ledger_spent(&l, UINT64_MAX, false, &sp);
	take(&said, &sp, UINT64_MAX);
	CHECK_UINT(said.ndropped, 3);
	/* The lag is kept: nothing for a call with it, two without. */
	CHECK(!fs_ledger_read(&l, 20 * MiB + 4096, 4096, false));
	fs_ledger_spent(&l, UINT64_MAX, false, &sp);
	CHECK_UINT(sp.nwrite + sp.ndrop, 0);
	CHECK(fs_ledger_read(&l, 20 * MiB + 8192, 4096, true));
	fs_ledger_spent(&l, UINT64_MAX, true, &sp);
	take(&said, &sp, UINT64_MAX);
	CHECK_UINT(said.ndropped, 5);
	CHECK(!fs_ledger_read(&l, 20 * MiB + 12288, 4096, true));
	fs_ledger_spent(&l, UINT64_MAX, true, &sp);
	CHECK_UINT(sp.nwrite + sp.ndrop, 0);
	fs_ledger_fini(&l);
}

static void test_ledger__a_chunk_being_answered_is_not_spent(void)
{
	struct fs_ledger l;
	struct said said;
	struct fs_spent sp;

	/* Two reads of chunk 0 at once (the kernel's readahead, on two
	 * FUSE threads): the one answered first completes its count, but
	 * the chunk waits for the other, whose reply would bring the pages
	 * given back in again. */
	ledger_new(&l, &said, 8 * MiB);
	fs_ledger_asked(&l, 0, 2 * MiB);
	fs_ledger_asked(&l, MiB, MiB);
	fs_ledger_read(&l, 0, 2 * MiB, true);
	fs_ledger_spent(&l, UINT64_MAX, true, &sp);
	CHECK_UINT(sp.nwrite + sp.ndrop, 0);
	CHECK(fs_ledger_read(&l, MiB, MiB, true));
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.nwritten, 1);
	CHECK_UINT(said.ndropped, 1);
	/* Read again, in two halves answered in the other order. */
	fs_ledger_asked(&l, 0, MiB);
	fs_ledger_asked(&l, MiB, MiB);
	fs_ledger_read(&l, MiB, MiB, true);
	fs_ledger_spent(&l, UINT64_MAX, true, &sp);
	CHECK_UINT(sp.nwrite + sp.ndrop, 0);
	fs_ledger_read(&l, 0, MiB, true);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.ndropped, 2);
	/* Queued, then asked for again (another handle): it is written
	 * back, but given back only once that read is answered. */
	fs_ledger_read(&l, 0, 2 * MiB, false);
	fs_ledger_asked(&l, 4096, 4096);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.nwritten, 3);
	CHECK_UINT(said.ndropped, 2);
	CHECK(fs_ledger_read(&l, 4096, 4096, true));
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.ndropped, 3);
	fs_ledger_fini(&l);
}

static void test_ledger__reads_past_the_end_count_nothing(void)
{
	struct fs_ledger l;
	struct said said;

	ledger_new(&l, &said, 3 * MiB);
	ledger_read(&l, &said, 3 * MiB, MiB, UINT64_MAX);
	ledger_read(&l, &said, 5 * MiB, 4 * MiB, UINT64_MAX);
	ledger_read(&l, &said, 0, 0, UINT64_MAX);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.nwritten, 0);
	/* They counted nothing: a chunk read all but one page is kept. */
	ledger_read(&l, &said, 2 * MiB, MiB - 4096, UINT64_MAX);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.nwritten, 0);
	/* The short last chunk ends with the file. */
	ledger_read(&l, &said, 2 * MiB, 4 * MiB, UINT64_MAX);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.nwritten, 1);
	CHECK_UINT(said.ndropped, 1);
	fs_ledger_fini(&l);
	/* An empty file has no chunks. */
	ledger_new(&l, &said, 0);
	ledger_read(&l, &said, 0, MiB, UINT64_MAX);
	ledger_close(&l, &said, UINT64_MAX);
	CHECK_UINT(said.nwritten + said.ndropped, 0);
	fs_ledger_fini(&l);
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
	CHECK_TEST(test_ledger__a_sequential_reader_spends_what_it_read),
	CHECK_TEST(test_ledger__it_waits_for_the_hash),
	CHECK_TEST(test_ledger__closing_stops_at_what_is_not_hashed),
	CHECK_TEST(test_ledger__a_chunk_read_in_part_is_kept),
	CHECK_TEST(test_ledger__loaders_sharing_out_tensors_spend_together),
	CHECK_TEST(test_ledger__chunks_read_out_of_order_take_several_calls),
	CHECK_TEST(test_ledger__a_chunk_read_again_counts_again),
	CHECK_TEST(test_ledger__a_read_says_whether_anything_is_pending),
	CHECK_TEST(test_ledger__a_chunk_being_answered_is_not_spent),
	CHECK_TEST(test_ledger__reads_past_the_end_count_nothing),
};

CHECK_MAIN(tests)
