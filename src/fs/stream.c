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
 * sequential pass.  Pure: no I/O, no locks (the caller serialises calls
 * for one stream), so it is unit tested on its own.
 */
#include "fs_int.h"

void fs_stream_update(struct fs_stream *st, uint64_t off, uint64_t end,
		      uint64_t nblocks, uint32_t max_window, uint64_t *from,
		      uint64_t *to)
{
	uint64_t last = (end - 1) / HUBFS_CACHE_BLOCK_SIZE, batch;

	if (off < st->seq_start || off > st->next_off + FS_STREAM_SLACK) {
		st->window = 0;
		st->ra_next = 0;
		st->seq_start = off;
		st->next_off = end;
	} else {
		if (end > st->next_off)
			st->next_off = end;
		if (st->next_off - st->seq_start > FS_STREAM_MIN_SEQ) {
			st->window = st->window ? st->window * 2 : 2;
			if (st->window > max_window)
				st->window = max_window;
		}
	}
	*from = *to = 0;
	if (st->window == 0)
		return;
	*from = st->ra_next > last + 1 ? st->ra_next : last + 1;
	*to = last + 1 + st->window < nblocks ? last + 1 + st->window : nblocks;
	if (*from > *to)
		*from = *to;
	batch = FS_STREAM_BATCH < max_window ? FS_STREAM_BATCH : max_window;
	if (*to - *from < batch && *to < nblocks)
		*from = *to;	/* wait until a batch is due */
}
