/*
 * The block cache and the metadata index, on local disk under cache_dir.
 *
 * Block cache: file content, keyed by content (the sha256 for LFS files,
 * the git blob id otherwise), so a file that is the same in two revisions
 * or two repositories is fetched and stored once.  Several hubfs
 * processes may use one cache_dir at the same time, and it survives
 * restarts.
 *
 *   cache_dir/index.db          SQLite, WAL mode: blocks, objects, trees, refs
 *   cache_dir/data/AB/KEY       one sparse file per object; block i at
 *                               offset i * HUBFS_CACHE_BLOCK_SIZE
 *
 * Invariants:
 * - A block's row exists only once all its bytes are in the data file;
 *   the row holds the block's length, its CRC-32C and the CRC-32C of each
 *   of its pages (HUBFS_CACHE_PAGE_SIZE bytes).
 * - Bytes are served only after they matched those CRCs, checked the
 *   first time they are used through an open object: a whole block, or
 *   only the pages a read needs.  A block that is missing, short or does
 *   not match is deleted and reported absent, so the caller fetches it
 *   again.
 * - The sum of the lengths of all blocks never exceeds max_bytes.  Room
 *   is made by evicting the least recently used blocks of objects that no
 *   process has open: an open object holds a shared flock(2) on its data
 *   file, and the evictor takes the object only with an exclusive one.
 *
 * Metadata index: the tree of every commit hubfs has listed (immutable,
 * so it is listed once per cache lifetime), and the last commit seen for
 * each branch (for offline use).
 *
 * All functions return 0 or -errno (with hubfs_err_set() detail) unless
 * said otherwise, and are thread-safe.  An object handle may be used by
 * several threads at once.
 */
#ifndef HUBFS_CACHE_H
#define HUBFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hubfs/hub.h"

/*
 * 256 KiB: a cold random read fetches and a first read checks one block,
 * and a 1 MiB read at a random offset fetches about 1.25 MiB; a larger
 * block costs random readers, a smaller one costs sequential readers an
 * index row and a commit per block.  The cache's on-disk layout depends
 * on it (see CACHE_SCHEMA_VERSION).
 */
#define HUBFS_CACHE_BLOCK_SIZE (1u << 18)

/*
 * 16 KiB: the unit a stored block is checked in.  After a restart, the
 * first 4 KiB read of a block reads back and checks one page, not the
 * whole block; each page costs 4 bytes in the block's index row.
 */
#define HUBFS_CACHE_PAGE_SIZE (1u << 14)
#define HUBFS_CACHE_PAGES (HUBFS_CACHE_BLOCK_SIZE / HUBFS_CACHE_PAGE_SIZE)

/*
 * The CRC-32Cs of one block's pages, summed as its bytes pass in order:
 * start from all zeros, hubfs_cache_sum_add() every byte, then hand it to
 * hubfs_cache_block_commit().
 */
struct hubfs_cache_sum {
	uint32_t page[HUBFS_CACHE_PAGES];
	uint64_t len;	/* bytes added, counted past a block too */
};

struct hubfs_cache;
struct hubfs_cache_obj;

/*
 * Open (creating if needed) the cache in @dir with a hard limit of
 * @max_bytes of block data.  The limit is this process's; processes
 * sharing a directory should agree on it.
 */
int hubfs_cache_open(struct hubfs_cache **out, const char *dir,
		     uint64_t max_bytes);

/* Close the cache.  All objects must be closed first.  Accepts NULL. */
void hubfs_cache_close(struct hubfs_cache *cache);

/* --- Objects and blocks --------------------------------------------- */

/*
 * Open the object with content key @key (40 or 64 lowercase hex digits)
 * and @size bytes, creating its data file if needed.  While open, no
 * process evicts its blocks.  Opening the same key twice gives two
 * handles sharing one verified-block map.  -EINVAL for a bad key.
 */
int hubfs_cache_obj_open(struct hubfs_cache_obj **out,
			 struct hubfs_cache *cache, const char *key,
			 uint64_t size);

/* Close a handle.  Accepts NULL. */
void hubfs_cache_obj_close(struct hubfs_cache_obj *obj);

/* The number of blocks of the object: ceil(size / block size). */
uint64_t hubfs_cache_obj_nblocks(const struct hubfs_cache_obj *obj);

/*
 * Whether block @idx is present and intact: 1 yes, 0 no (fetch it and
 * commit it), or -errno.  The first call per block checks the CRC; later
 * calls answer from memory.
 */
int hubfs_cache_block_present(struct hubfs_cache_obj *obj, uint64_t idx);

/*
 * Whether bytes [@off, @off + @len) of the object, which lie in one
 * block, are present and intact: hubfs_cache_block_present() for only
 * the pages that hold them.  The first call checks those pages (a block
 * cached by an older hubfs, without page CRCs, is checked whole); later
 * calls answer from memory.  -EINVAL for a span outside one block.
 */
int hubfs_cache_span_present(struct hubfs_cache_obj *obj, uint64_t off,
			     uint64_t len);

/* Whether that span is known present, without any I/O. */
bool hubfs_cache_span_known(const struct hubfs_cache_obj *obj, uint64_t off,
			    uint64_t len);

/*
 * Whether block @idx is already known present (checked or committed
 * since the object was opened), without any I/O: false may still mean
 * present.
 */
bool hubfs_cache_block_known(const struct hubfs_cache_obj *obj,
			     uint64_t idx);

/* How many blocks are known present (hubfs_cache_block_known()). */
uint64_t hubfs_cache_obj_known(const struct hubfs_cache_obj *obj);

/*
 * Whether block @idx's bytes are in the data file, checked or not: 1 if
 * it is known present (wholly or in part) or has a row, 0 if not, or
 * -errno.  Reads no block data; hubfs_cache_block_present() must still
 * confirm the block before it is served.  Bytes of a block that is not
 * stored may be released (punched out).
 */
int hubfs_cache_block_stored(struct hubfs_cache_obj *obj, uint64_t idx);

/*
 * Read @len bytes at @off, all inside blocks hubfs_cache_block_present()
 * has confirmed.  Returns the bytes read (< @len only at end of object)
 * or -errno.
 */
ssize_t hubfs_cache_obj_pread(struct hubfs_cache_obj *obj, void *buf,
			      size_t len, uint64_t off);

/*
 * The data file's descriptor, for zero-copy replies (splice).  Valid
 * while @obj is open; only ranges of confirmed blocks may be read.
 */
int hubfs_cache_obj_fd(const struct hubfs_cache_obj *obj);

/*
 * Make room for @bytes more bytes of block data, evicting if needed.
 * -ENOSPC if it cannot be made (everything left is in use): the caller
 * should wait and retry, or read without caching.
 */
int hubfs_cache_reserve(struct hubfs_cache *cache, uint64_t bytes);

/* Write raw bytes of the object's data file (used while fetching). */
int hubfs_cache_obj_pwrite(struct hubfs_cache_obj *obj, const void *buf,
			   size_t len, uint64_t off);

/*
 * The data file's pages in the kernel's page cache.  writeback starts
 * writing [@off, @off + @len) to disk now, rather than when the kernel
 * gets to it, so that the pages are clean by the time their reader is
 * done with them (a hint).  release_pages waits for writeback of the
 * range still running, then gives back its clean pages (dirty ones stay:
 * the kernel never drops unwritten data, and a later read of a page
 * given back reads the disk).  If a write of the data file has failed
 * (below), it gives back nothing and returns -errno (-EIO while blocks
 * could not be dropped): the caller must not trust what it checked of
 * them.
 */
void hubfs_cache_obj_writeback(struct hubfs_cache_obj *obj, uint64_t off,
			       uint64_t len);
int hubfs_cache_obj_release_pages(struct hubfs_cache_obj *obj, uint64_t off,
				  uint64_t len);

/*
 * Failed writes of the data file.  A page whose write failed is clean, so
 * the kernel may drop it and read the disk's stale bytes in its place,
 * and blocks this process stored are not checked again: bytes may be
 * served from the data file only if no write of it failed since the
 * blocks were looked at.  check_writes asks the kernel (without waiting)
 * and, on a failure, drops every block of the object before anyone else
 * may ask; it returns the count of failures, which changes with each,
 * and is odd while one is acted on, or for good if the blocks could not
 * be dropped.  write_failures returns the count without asking: take it
 * before looking at the blocks, and compare it with what check_writes
 * returns after.
 */
uint64_t hubfs_cache_obj_check_writes(struct hubfs_cache_obj *obj);
uint64_t hubfs_cache_obj_write_failures(struct hubfs_cache_obj *obj);

/* Add @len bytes of a block, in order, to @sum. */
void hubfs_cache_sum_add(struct hubfs_cache_sum *sum, const void *data,
			 size_t len);

/*
 * Record that block @idx is fully written, with @sum of its bytes (its
 * length, which the object's size determines, or -EINVAL).  @sum must be
 * computed over the bytes this process wrote, not read back: this
 * process then serves the block without checking it again.  After this
 * the block is present for every process.  -EAGAIN: the object's blocks
 * were dropped meanwhile (see below); nothing is recorded.
 */
int hubfs_cache_block_commit(struct hubfs_cache_obj *obj, uint64_t idx,
			     const struct hubfs_cache_sum *sum);

/*
 * The same, for bytes written since the object's generation was @gen
 * (hubfs_cache_obj_gen(), taken before the first write): if its blocks
 * were dropped since (a failed write of the data file, perhaps among
 * these bytes), -EAGAIN and nothing is recorded.
 */
uint64_t hubfs_cache_obj_gen(struct hubfs_cache_obj *obj);
int hubfs_cache_block_commit_since(struct hubfs_cache_obj *obj, uint64_t idx,
				   const struct hubfs_cache_sum *sum,
				   uint64_t gen);

/*
 * hubfs_cache_block_commit() of @n blocks, block @idx[k] with @sums[k],
 * in one transaction: all are recorded or none.  For a writer that has
 * many blocks at hand (a file taken in whole); each transaction costs a
 * few tens of microseconds.
 */
int hubfs_cache_blocks_commit(struct hubfs_cache_obj *obj,
			      const uint64_t *idx,
			      const struct hubfs_cache_sum *sums, size_t n);

/*
 * Take the file open as @fd, which holds all @size bytes of @key's
 * content and lies on the cache's filesystem, as the key's data file
 * without copying it: it is linked in, and each block recorded with a
 * CRC of its bytes read back.  The caller must never write to @fd again.
 * @verified: the caller hashed these very bytes against @key.  -EEXIST
 * when the key already has a data file, -EXDEV when the file cannot be
 * linked there (any reason): then nothing was done, and the caller may
 * copy the bytes instead.  Any other error may come after the link: the
 * blocks recorded so far stay and the rest are released (punched out of
 * @fd's file), so the caller must not read the content from @fd again.
 */
int hubfs_cache_adopt(struct hubfs_cache *cache, const char *key,
		      uint64_t size, int fd, bool verified);

/* Note a use of block @idx for LRU; cheap, batched. */
void hubfs_cache_block_touch(struct hubfs_cache_obj *obj, uint64_t idx);

/* Whether the whole object's content hash was checked: 1, 0 or -errno. */
int hubfs_cache_obj_verified(struct hubfs_cache_obj *obj);

/* Record that the whole object's content hash matched its key. */
int hubfs_cache_obj_set_verified(struct hubfs_cache_obj *obj);

/* Delete every block of the object (its content did not match, or its
 * data file failed a write).  The blocks count as absent here even when
 * deleting their rows fails (the error is returned). */
int hubfs_cache_obj_drop(struct hubfs_cache_obj *obj);

struct hubfs_cache_stats {
	uint64_t used_bytes;	/* block data stored, all processes */
	uint64_t max_bytes;
	uint64_t blocks;
	uint64_t hits;		/* hubfs_cache_block_present() == 1, this process */
	uint64_t misses;	/* == 0, this process */
	uint64_t evicted;	/* blocks evicted by this process */
	uint64_t corrupt;	/* blocks found damaged by this process */
};

void hubfs_cache_get_stats(struct hubfs_cache *cache,
			   struct hubfs_cache_stats *out);

/*
 * Evict the least recently used blocks of objects that no process has
 * open until at most @max_bytes of block data remain, or nothing more
 * can go (blocks of open objects stay: that is not an error).  0 evicts
 * everything that is not in use.  *@freed: the bytes of block data
 * evicted.
 */
int hubfs_cache_trim(struct hubfs_cache *cache, uint64_t max_bytes,
		     uint64_t *freed);

/*
 * Release disk space that no block row accounts for, in data files no
 * process has open: files of objects without blocks are deleted, and
 * bytes of blocks without a row are punched out.  Such bytes are left by
 * a crash between an eviction and its file work, or by an interrupted
 * fetch.  *@files: files deleted; *@bytes: disk bytes released.
 */
int hubfs_cache_sweep(struct hubfs_cache *cache, uint64_t *files,
		      uint64_t *bytes);

/* CRC-32C (Castagnoli) of @len bytes, continuing from @crc (0 to start). */
uint32_t hubfs_crc32c(uint32_t crc, const void *data, size_t len);

/* The CRC-32C of a || b from @crc_a and @crc_b, where b is @len_b bytes. */
uint32_t hubfs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* --- Metadata index ------------------------------------------------- */

/*
 * Trees and refs are keyed by @repo, a string naming the endpoint and the
 * repository, e.g. "https://huggingface.co models/org/name".
 */

/*
 * Whether the full tree of @commit is stored: 1 (and *@time is set to
 * the commit's date if @time is not NULL), 0, or -errno.
 */
int hubfs_cache_tree_has(struct hubfs_cache *cache, const char *repo,
			 const char *commit, int64_t *time);

/*
 * Store the full tree of @commit (dated @time): @n entries.  Atomic: the
 * tree is either stored whole or not at all.
 */
int hubfs_cache_tree_store(struct hubfs_cache *cache, const char *repo,
			   const char *commit, int64_t time,
			   const struct hubfs_hub_entry *entries, size_t n);

/*
 * Call @cb for every stored entry of @commit's tree, in the order stored.
 * -ENOENT if the tree is not stored.
 */
int hubfs_cache_tree_load(struct hubfs_cache *cache, const char *repo,
			  const char *commit, hubfs_hub_entry_cb cb,
			  void *arg);

/* Remember that ref @name of @repo pointed at @commit (dated @time). */
int hubfs_cache_ref_set(struct hubfs_cache *cache, const char *repo,
			const char *name, const char *commit, int64_t time);

/*
 * The last commit remembered for ref @name: fills @commit (41 bytes) and
 * *@time.  -ENOENT if none.
 */
int hubfs_cache_ref_get(struct hubfs_cache *cache, const char *repo,
			const char *name, char commit[41], int64_t *time);

#endif /* HUBFS_CACHE_H */
