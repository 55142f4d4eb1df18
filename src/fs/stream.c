/*
 * Readahead decisions for one file handle.
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
 * A sequential stream also says which bytes it is done with, so that
 * the reader can give back the cache file's pages under them: the FUSE
 * reply copied them into the file's own page cache, and keeping both
 * copies of a large file doubles its memory (and, where fresh pages are
 * dear, its cost).  Only clean pages can be given back, so the stream
 * first has them written: everything more than FS_STREAM_SLACK behind
 * the read (reads just behind it may still be being answered), in file
 * order (the fetch workers write out of order; writing their pieces back
 * as they came cut the file into many extents).  It gives them back
 * FS_STREAM_DROP_LAG behind that, so that giving back seldom waits for
 * the disk, and only once the reader has hashed them (the hash reads the
 * cache file, and would read given-back pages from disk).  written and
 * spent say how far it has gone.  When the handle is closed, the rest of
 * what it read goes the same way.  The kernel keeps a page cache folio
 * whole when a range cuts it, and its readahead makes folios of up to
 * 2 MiB, so both ranges end on a multiple of FS_STREAM_SPENT_ALIGN
 * (giving back 256 KiB at a time after a remount gave back nothing).
 * A random reader says nothing: what it skipped may be read soon.
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
 * Pure: no I/O, no locks (the caller serialises calls for one stream or
 * sweep), so it is unit tested on its own.
 */
#include "fs_int.h"

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
		st->written = st->spent = off;
	} else {
		if (end > st->next_off)
			st->next_off = end;
		if (st->next_off - st->seq_start > FS_STREAM_MIN_SEQ)
			st->window = window_grow(st->window, max_window);
	}
	window_range(st->ra_next, st->window, last, nblocks, max_window, from,
		     to);
}

/* Name what lies between written and @write_end, then between spent and
 * @drop_end, moving both on; a range already named is empty, and a
 * random stream names nothing. */
static void spend(struct fs_stream *st, uint64_t write_end, uint64_t drop_end,
		  struct fs_spent *sp)
{
	*sp = (struct fs_spent){ 0 };
	if (st->window == 0)
		return;
	if (write_end > st->written) {
		sp->write_from = st->written;
		sp->write_to = write_end;
		st->written = write_end;
	}
	if (drop_end > st->spent) {
		sp->drop_from = st->spent;
		sp->drop_to = drop_end;
		st->spent = drop_end;
	}
}

void fs_stream_spent(struct fs_stream *st, uint64_t off, uint64_t checked,
		     struct fs_spent *sp)
{
	uint64_t write_end = off > FS_STREAM_SLACK ? off - FS_STREAM_SLACK : 0;
	uint64_t drop_end;

	write_end -= write_end % FS_STREAM_SPENT_ALIGN;
	drop_end = write_end > st->written ? write_end : st->written;
	drop_end = drop_end > FS_STREAM_DROP_LAG ? drop_end - FS_STREAM_DROP_LAG
						 : 0;
	if (drop_end > checked)
		drop_end = checked - checked % FS_STREAM_SPENT_ALIGN;
	spend(st, write_end, drop_end, sp);
}

void fs_stream_spent_all(struct fs_stream *st, uint64_t checked,
			 struct fs_spent *sp)
{
	uint64_t end = st->next_off < checked ? st->next_off : checked;

	spend(st, end, end, sp);
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
