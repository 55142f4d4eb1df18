/*
 * Readahead decisions for one file handle.
 *
 * DESIGN
 *
 * A stream is sequential once its reads have followed each other (a
 * first read at offset 0 counts) for more than FS_STREAM_MIN_SEQ bytes:
 * its window, in blocks, then doubles from 2 up to the maximum, and
 * readahead covers the window's blocks past the current read.  The
 * threshold matters: the kernel cuts one large read into several
 * consecutive ones, so a random 1 MiB read would otherwise look like the
 * start of a stream and fetch a window it never uses.  A read anywhere
 * else is random: the window drops to 0, so mmap faults and tensor loads
 * fetch only what they touch.  ra_next remembers how far readahead has already asked, so that
 * each block is considered once per sequential pass.  Pure: no I/O, no
 * locks (the caller serialises calls for one stream), so it is unit
 * tested on its own.
 */
#include "fs_int.h"

void fs_stream_update(struct fs_stream *st, uint64_t off, uint64_t end,
		      uint64_t nblocks, uint32_t max_window, uint64_t *from,
		      uint64_t *to)
{
	uint64_t last = (end - 1) / HUBFS_CACHE_BLOCK_SIZE;

	if (off != st->next_off) {
		st->window = 0;
		st->ra_next = 0;
		st->seq_start = off;
	} else if (end - st->seq_start > FS_STREAM_MIN_SEQ) {
		st->window = st->window ? st->window * 2 : 2;
		if (st->window > max_window)
			st->window = max_window;
	}
	st->next_off = end;
	*from = *to = 0;
	if (st->window == 0)
		return;
	*from = st->ra_next > last + 1 ? st->ra_next : last + 1;
	*to = last + 1 + st->window < nblocks ? last + 1 + st->window : nblocks;
	if (*from > *to)
		*from = *to;
}
