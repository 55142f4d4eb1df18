/*
 * Readahead decisions for file handles and objects, and which bytes an
 * object's readers are done with.
 *
 * DESIGN
 *
 * A stream is a run of reads each of which starts within the stream
 * (from where it began to FS_STREAM_SLACK past its furthest end): the
 * kernel sends its readahead reads several at a time and FUSE threads
 * take them in any order, so a sequential reader's reads arrive slightly
 * shuffled (a first read at offset 0 starts a stream).  Once the stream
 * covers more than FS_STREAM_MIN_SEQ bytes it is sequential: its window,
 * in blocks, then doubles from 2 up to the maximum with each read, and
 * readahead covers the window's blocks past the current read, asked for
 * in batches of FS_STREAM_BATCH blocks (so that a run, one range request,
 * has several blocks rather than one per block the window slides).  The
 * threshold matters: the kernel cuts one large read into several
 * consecutive ones, so a random 1 MiB read would otherwise look like the
 * start of a stream and fetch a window it never uses.  A read anywhere
 * else starts a new stream with no window, so mmap faults and tensor
 * loads fetch only what they touch.  ra_next remembers how far readahead
 * has already asked, so that each block is considered once per
 * sequential pass.
 *
 * A sweep is the same for one object and all its readers together:
 * loaders that share out a checkpoint's tensors (process r of N touching
 * every Nth tensor through mmap) read the file in order between them
 * although no one handle does, so each handle's stream stays random and
 * every block would cost its own request.  The reader tells whether the
 * FS_STREAM_MIN_SEQ bytes before a read are present or being fetched;
 * each read with such bytes behind it doubles the sweep's window, and
 * readahead covers the window past it in batches as for a stream.  The
 * readers do not keep step, so a read behind the others continues the
 * sweep; only one more than the largest window behind the furthest read
 * (where the sweep has asked, less its window) starts a new sweep.  A
 * random reader has that much behind its reads only where the file is
 * already cached, and then little ahead is missing.
 *
 * An object's ledger says which bytes its readers are done with, so
 * that the cache file's pages under them can be given back: the FUSE
 * reply copied them into the file's own page cache, and keeping both
 * copies of a large file doubles its memory (and, where fresh pages are
 * dear, its cost).  It counts the bytes read of each FS_SPENT_CHUNK of
 * the file, whichever handle read them, so one reader in order, loaders
 * sharing out the tensors between them and a random reader that ends
 * up reading everything are served alike; a chunk read in part is kept,
 * as what was skipped may be read soon.  A read is counted once it is
 * answered, and a chunk read in full joins the queue only when no read
 * of it is still being answered (busy): such a read would bring the
 * pages just given back in again, from disk, and nothing would give
 * them back before the close.  The chunks read in full wait in a queue,
 * in that order.  Only clean pages can be
 * given back, so a chunk is first written back, once the object's hash
 * has read it (the hash reads the cache file, and would read given-back
 * pages from disk; hashing in order also means its blocks are in the
 * cache file), and given back by a later call once FS_SPENT_LAG more
 * chunks were written back, so that giving back seldom waits for the
 * disk (the reader writes back again what it gives back: the thread
 * told to write a chunk back may not have done so yet).  When a handle
 * is closed (or, as the caller chooses, once the whole content is
 * hashed), the queue goes the same way at once, up to its first chunk
 * not hashed yet (readers sharing out a file may finish chunks out of
 * order; the hash goes in file order).  The kernel keeps a page cache
 * folio whole when a range cuts it, and its readahead of the cache file
 * makes folios of up to 2 MiB, so chunks are 2 MiB and aligned (giving
 * back 256 KiB at a time after a remount gave back nothing); writing
 * them back in the order they were read keeps the cache file in few
 * extents (writing each fetched piece back as it came cut it into
 * many).  A chunk given back starts its count again, as the kernel may
 * drop the file's pages and read it again.  The count runs ahead of the
 * truth when bytes are read twice before that (or by a read that then
 * failed): a chunk given back too early costs a read from disk, never
 * wrong bytes.
 *
 * Pure: no I/O, no locks (the caller serialises calls for one stream,
 * sweep or ledger), so it is unit tested on its own.
 */
#include <errno.h>

#include "fs_int.h"
#include "hubfs/mem.h"

/* The blocks past @last that a window of @window asks for, given that
 * readahead already asked for those before @ra_next. */
static void window_range(uint64_t ra_next, uint32_t window, uint64_t last,
			 uint64_t nblocks, uint32_t max_window, uint64_t *from,
			 uint64_t *to)
{
	uint64_t batch;

	*from = *to = 0;
	if (window == 0)
		return;
	*from = ra_next > last + 1 ? ra_next : last + 1;
	*to = last + 1 + window < nblocks ? last + 1 + window : nblocks;
	if (*from > *to)
		*from = *to;
	batch = FS_STREAM_BATCH < max_window ? FS_STREAM_BATCH : max_window;
	if (*to - *from < batch && *to < nblocks)
		*from = *to;	/* wait until a batch is due */
}

static uint32_t window_grow(uint32_t window, uint32_t max_window)
{
	window = window ? window * 2 : 2;
	return window > max_window ? max_window : window;
}

void fs_stream_update(struct fs_stream *st, uint64_t off, uint64_t end,
		      uint64_t nblocks, uint32_t max_window, uint64_t *from,
		      uint64_t *to)
{
	uint64_t last = (end - 1) / HUBFS_CACHE_BLOCK_SIZE;

	if (off < st->seq_start || off > st->next_off + FS_STREAM_SLACK) {
		st->window = 0;
		st->ra_next = 0;
		st->seq_start = off;
		st->next_off = end;
	} else {
		if (end > st->next_off)
			st->next_off = end;
		if (st->next_off - st->seq_start > FS_STREAM_MIN_SEQ)
			st->window = window_grow(st->window, max_window);
	}
	window_range(st->ra_next, st->window, last, nblocks, max_window, from,
		     to);
}

void fs_sweep_update(struct fs_sweep *sw, bool behind, uint64_t last,
		     uint64_t nblocks, uint32_t max_window, uint64_t *from,
		     uint64_t *to)
{
	*from = *to = 0;
	if (!behind)
		return;
	if (last + 1 + (uint64_t)sw->window + max_window < sw->ra_next) {
		sw->window = 0;		/* far behind: a new sweep */
		sw->ra_next = 0;
	}
	sw->window = window_grow(sw->window, max_window);
	window_range(sw->ra_next, sw->window, last, nblocks, max_window, from,
		     to);
}

int fs_ledger_init(struct fs_ledger *l, uint64_t size)
{
	uint64_t n = size / FS_SPENT_CHUNK + (size % FS_SPENT_CHUNK != 0);

	*l = (struct fs_ledger){ .size = size, .nchunks = n };
	if (n == 0)
		return 0;
	if (n > UINT32_MAX || n > SIZE_MAX / sizeof(*l->done))
		return -ENOMEM;
	l->done = hubfs_calloc((size_t)n, sizeof(*l->done));
	l->busy = hubfs_calloc((size_t)n, sizeof(*l->busy));
	l->queue = hubfs_calloc((size_t)n, sizeof(*l->queue));
	if (!l->done || !l->busy || !l->queue) {
		fs_ledger_fini(l);
		return -ENOMEM;
	}
	return 0;
}

void fs_ledger_fini(struct fs_ledger *l)
{
	hubfs_free(l->done);
	hubfs_free(l->busy);
	hubfs_free(l->queue);
	l->done = NULL;
	l->busy = NULL;
	l->queue = NULL;
}

static uint64_t chunk_end(const struct fs_ledger *l, uint64_t c)
{
	uint64_t end = (c + 1) * FS_SPENT_CHUNK;

	return end < l->size ? end : l->size;
}

/* In done[]: the chunk is in the queue.  A chunk is 2 MiB at most. */
#define LEDGER_QUEUED 0x80000000u

void fs_ledger_asked(struct fs_ledger *l, uint64_t off, uint64_t len)
{
	uint64_t end, c;

	if (!l->done || len == 0 || off >= l->size)
		return;
	end = len > l->size - off ? l->size : off + len;
	for (c = off / FS_SPENT_CHUNK; c * FS_SPENT_CHUNK < end; c++)
		l->busy[c]++;	/* at most one per FUSE thread */
}

/* A chunk is in the queue at most once (its count starts again only
 * when it leaves), so the queue never holds more than nchunks. */
bool fs_ledger_read(struct fs_ledger *l, uint64_t off, uint64_t len,
		    bool all)
{
	uint64_t end, c;

	if (!l->done)
		return false;
	if (len == 0 || off >= l->size)
		goto out;
	end = len > l->size - off ? l->size : off + len;
	for (c = off / FS_SPENT_CHUNK; c * FS_SPENT_CHUNK < end; c++) {
		uint64_t from = c * FS_SPENT_CHUNK, to = chunk_end(l, c);
		uint64_t clen = to - from, had = l->done[c], n;

		if (l->busy[c])
			l->busy[c]--;
		if (had & LEDGER_QUEUED)
			continue;
		n = (end < to ? end : to) - (off > from ? off : from);
		l->done[c] = (uint32_t)(had + n < clen ? had + n : clen);
		if (l->done[c] == clen && !l->busy[c]) {
			l->done[c] |= LEDGER_QUEUED;
			l->queue[(l->head + l->len++) % l->nchunks] = (uint32_t)c;
		}
	}
out:
	/* Chunks to write back, or more written back than the lag keeps. */
	return l->written < l->len || l->written > (all ? 0 : FS_SPENT_LAG);
}

/* Add chunk @c to @r's ranges, joining the last one if it follows it;
 * false when no range is left. */
static bool add_chunk(const struct fs_ledger *l, struct fs_range *r,
		      unsigned int *n, uint64_t c)
{
	uint64_t from = c * FS_SPENT_CHUNK;

	if (*n && r[*n - 1].to == from) {
		r[*n - 1].to = chunk_end(l, c);
		return true;
	}
	if (*n == FS_SPENT_RANGES)
		return false;
	r[*n] = (struct fs_range){ from, chunk_end(l, c) };
	(*n)++;
	return true;
}

void fs_ledger_spent(struct fs_ledger *l, uint64_t checked, bool all,
		     struct fs_spent *sp)
{
	uint64_t before = l->written, lag = all ? 0 : FS_SPENT_LAG, gone = 0;

	*sp = (struct fs_spent){ 0 };
	while (l->written < l->len) {
		uint64_t c = l->queue[(l->head + l->written) % l->nchunks];

		if (chunk_end(l, c) > checked ||
		    !add_chunk(l, sp->write, &sp->nwrite, c))
			break;
		l->written++;
	}
	/* What this call has just had written back waits for a later one,
	 * so that giving back seldom waits for the disk; not at a close. */
	while (l->written > lag && (all || gone < before)) {
		uint64_t c = l->queue[l->head];

		/* Read again meanwhile: that read's release gives it back. */
		if (l->busy[c] || !add_chunk(l, sp->drop, &sp->ndrop, c))
			break;
		l->done[c] = 0;		/* read again, it counts again */
		l->head = (l->head + 1) % l->nchunks;
		l->len--;
		l->written--;
		gone++;
	}
}
