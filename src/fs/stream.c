/*
 * Readahead decisions for one file handle.
 *
 * DESIGN
 *
 * A stream is sequential while each read starts where the previous one
 * ended (a first read at offset 0 counts): its window, in blocks, then
 * doubles from 2 up to the maximum, and readahead covers the window's
 * blocks past the current read.  A read anywhere else is random: the
 * window drops to 0, so mmap faults and tensor loads fetch only what they
 * touch.  ra_next remembers how far readahead has already asked, so that
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

	if (off == st->next_off) {
		st->window = st->window ? st->window * 2 : 2;
		if (st->window > max_window)
			st->window = max_window;
	} else {
		st->window = 0;
		st->ra_next = 0;
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
