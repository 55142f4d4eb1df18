/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * every cached block.
 *
 * DESIGN
 *
 * Two implementations with one contract: the SSE4.2 crc32 instruction,
 * eight bytes at a time, and a portable slicing-by-8 table version
 * (eight 256-entry tables, eight bytes per step, on little-endian
 * machines; a byte at a time elsewhere).  The instruction path is built
 * on x86-64 only.  One chain of crc32 instructions waits on each result
 * (three cycles each), so long buffers run three chains over three
 * consecutive spans at once and join them: a CRC is linear, so the CRC of
 * a || b is the CRC of a advanced over len(b) zero bytes, XOR the CRC of
 * b started from zero.  Advancing over a fixed number of zero bytes is a
 * 32x32 matrix over GF(2), applied through four 256-entry tables built
 * once (the method of Mark Adler's crc32c.c).  This made the checksum of
 * a fetched block three times cheaper.  The instruction computes
 * exactly the same function, so the two are interchangeable, and the
 * unit tests check both against the same vectors.
 *
 * The choice is made once, on first use, under pthread_once(): the
 * tables are built and the instruction is used when the CPU reports
 * SSE4.2 (__builtin_cpu_supports).  The hardware function is compiled
 * with a target attribute, so the rest of hubfs needs no -msse4.2 and
 * the binary still runs on CPUs without it.
 *
 * Joining CRCs of arbitrary lengths (hubfs_crc32c_combine(), which makes
 * a block's CRC from its pages') multiplies by x^(8 * len) modulo the
 * polynomial, with x^(2^k) for every k from a table built once (the
 * method of zlib's crc32_combine()).  A page's length, the one joined
 * most (fifteen times for each row read back from the index), has its
 * own zero-byte tables: 4 ns instead of 53.
 *
 * Conventions: the running value is kept inverted inside a call, and
 * every entry point takes and returns the finished (uninverted) CRC, so
 * hubfs_crc32c(hubfs_crc32c(0, a), b) == hubfs_crc32c(0, a || b).
 */
#include <pthread.h>
#include <string.h>

#include "cache_int.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_CRC_INSN 1
#else
#define HAVE_CRC_INSN 0
#endif

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static bool crc_hw;

/* Spans of the three-chain loops, and the tables that advance a CRC over
 * that many zero bytes. */
#define SPAN_LONG 8192
#define SPAN_SHORT 256
static uint32_t zeros_long[4][256];
static uint32_t zeros_short[4][256];
/* And over one cache page: a block's CRC is joined from its pages'. */
static uint32_t zeros_page[4][256];
_Static_assert((HUBFS_CACHE_PAGE_SIZE & (HUBFS_CACHE_PAGE_SIZE - 1)) == 0,
	       "zeros_tables() advances over a power of two bytes");
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
/* x^(2^k) modulo the polynomial, bit-reflected like the CRC, for every k
 * a 64-bit byte count shifted by 3 reaches. */
#define X2N_COUNT (64 + 3)
static uint32_t x2n_table[X2N_COUNT];

/* @a times @b modulo the polynomial (both reflected); @a != 0. */
static uint32_t mult_mod(uint32_t a, uint32_t b)
{
	uint32_t m = 1u << 31, p = 0;

	for (;;) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0)
				break;
		}
		m >>= 1;
		b = b & 1 ? (b >> 1) ^ CRC32C_POLY : b >> 1;
	}
	return p;
}

/* x^(n * 2^k) modulo the polynomial, k <= 3. */
static uint32_t x2n_mod(uint64_t n, unsigned int k)
{
	uint32_t p = 1u << 31;	/* x^0 */

	for (; n; n >>= 1, k++)
		if (n & 1)
			p = mult_mod(x2n_table[k], p);
	return p;
}

/* @mat times @vec over GF(2): the XOR of the columns @vec selects. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	for (; vec; vec >>= 1, mat++)
		if (vec & 1)
			sum ^= *mat;
	return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/* The operator that advances a (raw, uninverted) CRC over @len zero
 * bytes, @len a power of two, as four byte-indexed tables. */
static void zeros_tables(uint32_t tab[4][256], size_t len)
{
	uint32_t odd[32], even[32];
	const uint32_t *op;
	uint32_t row = 1;

	odd[0] = CRC32C_POLY;	/* one zero bit */
	for (int n = 1; n < 32; n++, row <<= 1)
		odd[n] = row;
	gf2_square(even, odd);	/* two zero bits */
	gf2_square(odd, even);	/* four: odd is now one zero byte... */
	/* ...and squaring doubles: even, odd alternate as 2^k bytes. */
	for (;;) {
		gf2_square(even, odd);
		len >>= 1;
		if (len == 0) {
			op = even;
			break;
		}
		gf2_square(odd, even);
		len >>= 1;
		if (len == 0) {
			op = odd;
			break;
		}
	}
	for (uint32_t n = 0; n < 256; n++) {
		tab[0][n] = gf2_times(op, n);
		tab[1][n] = gf2_times(op, n << 8);
		tab[2][n] = gf2_times(op, n << 16);
		tab[3][n] = gf2_times(op, n << 24);
	}
}

static uint32_t zeros_apply(const uint32_t tab[4][256], uint32_t crc)
{
	return tab[0][crc & 0xff] ^ tab[1][(crc >> 8) & 0xff] ^
	       tab[2][(crc >> 16) & 0xff] ^ tab[3][crc >> 24];
}

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t crc = i;

		for (int bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (CRC32C_POLY & -(crc & 1));
		crc_table[0][i] = crc;
	}
	for (int k = 1; k < 8; k++) {
		for (int i = 0; i < 256; i++) {
			uint32_t prev = crc_table[k - 1][i];

			crc_table[k][i] = (prev >> 8) ^
					  crc_table[0][prev & 0xff];
		}
	}
	x2n_table[0] = 1u << 30;	/* x^1 */
	for (int k = 1; k < X2N_COUNT; k++)
		x2n_table[k] = mult_mod(x2n_table[k - 1], x2n_table[k - 1]);
	zeros_tables(zeros_page, HUBFS_CACHE_PAGE_SIZE);
#if HAVE_CRC_INSN
	crc_hw = __builtin_cpu_supports("sse4.2");
	zeros_tables(zeros_long, SPAN_LONG);
	zeros_tables(zeros_short, SPAN_SHORT);
#endif
}

uint32_t cache_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (len >= 8) {
		uint32_t lo, hi;

		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= crc;
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
#endif
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

bool cache_crc32c_hw_ok(void)
{
	pthread_once(&crc_once, crc_init);
	return crc_hw;
}

#if HAVE_CRC_INSN
/* Three chains over [p, p + 3 * span): returns the raw CRC continued
 * from raw @c0. */
__attribute__((target("sse4.2"))) static uint64_t
crc_insn3(uint64_t c0, const unsigned char *p, size_t span,
	  const uint32_t zeros[4][256])
{
	uint64_t c1 = 0, c2 = 0, w0, w1, w2;

	for (size_t i = 0; i < span; i += 8) {
		memcpy(&w0, p + i, 8);
		memcpy(&w1, p + span + i, 8);
		memcpy(&w2, p + 2 * span + i, 8);
		c0 = _mm_crc32_u64(c0, w0);
		c1 = _mm_crc32_u64(c1, w1);
		c2 = _mm_crc32_u64(c2, w2);
	}
	c0 = zeros_apply(zeros, (uint32_t)c0) ^ (uint32_t)c1;
	return zeros_apply(zeros, (uint32_t)c0) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2"))) static uint32_t
crc_insn(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t wide = ~crc;

	while (len >= 3 * SPAN_LONG) {
		wide = crc_insn3(wide, p, SPAN_LONG, zeros_long);
		p += 3 * SPAN_LONG;
		len -= 3 * SPAN_LONG;
	}
	while (len >= 3 * SPAN_SHORT) {
		wide = crc_insn3(wide, p, SPAN_SHORT, zeros_short);
		p += 3 * SPAN_SHORT;
		len -= 3 * SPAN_SHORT;
	}
	while (len >= 8) {
		uint64_t word;

		memcpy(&word, p, 8);
		wide = _mm_crc32_u64(wide, word);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t)wide;
	while (len--)
		crc = _mm_crc32_u8(crc, *p++);
	return ~crc;
}
#endif

uint32_t cache_crc32c_hw(uint32_t crc, const void *data, size_t len)
{
#if HAVE_CRC_INSN
	if (cache_crc32c_hw_ok())
		return crc_insn(crc, data, len);
#endif
	return cache_crc32c_sw(crc, data, len);
}

uint32_t hubfs_crc32c(uint32_t crc, const void *data, size_t len)
{
	return cache_crc32c_hw(crc, data, len);
}

uint32_t hubfs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	pthread_once(&crc_once, crc_init);
	/* Every page but a block's last: four lookups, not two products. */
	if (len_b == HUBFS_CACHE_PAGE_SIZE)
		return zeros_apply(zeros_page, crc_a) ^ crc_b;
	/* Shifting by 2^3 bits per byte: x2n_mod(len_b, 3). */
	return mult_mod(x2n_mod(len_b, 3), crc_a) ^ crc_b;
}
