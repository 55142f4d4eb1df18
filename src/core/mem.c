/*
 * Allocation wrappers.
 *
 * DESIGN
 *
 * hubfs never calls malloc(3) and friends directly; it calls the
 * hubfs_*alloc() functions here.  That buys two things:
 *
 *  - one place that defines out-of-memory behaviour: return NULL, never
 *    abort, so a request path can answer -ENOMEM and the mount survives;
 *  - one place to inject failures.  hubfs_mem_fail_nth() arms a countdown
 *    that fails exactly one later allocation.  Unit tests walk N = 1, 2, ...
 *    over an operation until it succeeds, checking at every step that the
 *    error is -ENOMEM, that nothing leaked and that out-parameters were not
 *    touched.
 *
 * The countdown is one atomic word.  When it is zero (the normal case) the
 * cost is a relaxed load per allocation.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hubfs/mem.h"

static atomic_ulong fail_countdown;

/* True when this allocation is the one fault injection should fail. */
static bool inject_failure(void)
{
	unsigned long n = atomic_load_explicit(&fail_countdown,
					       memory_order_relaxed);

	while (n != 0) {
		if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1))
			return n == 1;
	}
	return false;
}

void hubfs_mem_fail_nth(unsigned long nth)
{
	atomic_store(&fail_countdown, nth);
}

void *hubfs_malloc(size_t size)
{
	if (size == 0 || inject_failure())
		return NULL;
	return malloc(size);
}

void *hubfs_calloc(size_t nmemb, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(nmemb, size, &total) || total == 0)
		return NULL;
	if (inject_failure())
		return NULL;
	return calloc(1, total);
}

void *hubfs_realloc(void *ptr, size_t size)
{
	if (size == 0 || inject_failure())
		return NULL;
	return realloc(ptr, size);
}

char *hubfs_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *copy = hubfs_malloc(len + 1);

	if (!copy)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

char *hubfs_strdup(const char *s)
{
	return hubfs_strndup(s, strlen(s));
}

void hubfs_free(void *ptr)
{
	free(ptr);
}
