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
 * on x86-64 only.  The instruction computes
 * exactly the same function, so the two are interchangeable, and the
 * unit tests check both against the same vectors.
 *
 * The choice is made once, on first use, under pthread_once(): the
 * tables are built and the instruction is used when the CPU reports
 * SSE4.2 (__builtin_cpu_supports).  The hardware function is compiled
 * with a target attribute, so the rest of hubfs needs no -msse4.2 and
 * the binary still runs on CPUs without it.
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
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

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
#if HAVE_CRC_INSN
	crc_hw = __builtin_cpu_supports("sse4.2");
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
__attribute__((target("sse4.2"))) static uint32_t
crc_insn(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t wide = ~crc;

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
