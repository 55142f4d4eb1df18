/*
 * hubfs mutex with thread-safety annotations.
 *
 * struct hubfs_mutex wraps a pthread mutex and is declared a clang
 * "capability", so clang's -Wthread-safety can check that annotated data
 * is touched only with its lock held:
 *
 *	static struct hubfs_mutex table_lock = HUBFS_MUTEX_INIT;
 *	static int table_len HUBFS_GUARDED_BY(table_lock);
 *	static void table_grow(void) HUBFS_REQUIRES(table_lock);
 *
 * Other compilers see empty macros.  HUBFS_GUARDED_BY and
 * HUBFS_PT_GUARDED_BY expand only when the build defines HUBFS_TSA_FIELDS,
 * because older clang rejects a struct field naming a sibling lock in C;
 * the function annotations are active on every clang.
 *
 * Locking and unlocking cannot fail on a correctly used default mutex;
 * misuse is a programmer error and is asserted.
 */
#ifndef HUBFS_LOCK_H
#define HUBFS_LOCK_H

#include <assert.h>
#include <pthread.h>

#if defined(__clang__)
#define HUBFS_TSA(x) __attribute__((x))
#else
#define HUBFS_TSA(x)
#endif

#if defined(__clang__) && defined(HUBFS_TSA_FIELDS)
#define HUBFS_GUARDED_BY(x) HUBFS_TSA(guarded_by(x))
#define HUBFS_PT_GUARDED_BY(x) HUBFS_TSA(pt_guarded_by(x))
#else
#define HUBFS_GUARDED_BY(x)
#define HUBFS_PT_GUARDED_BY(x)
#endif

#define HUBFS_CAPABILITY(x) HUBFS_TSA(capability(x))
#define HUBFS_REQUIRES(...) HUBFS_TSA(requires_capability(__VA_ARGS__))
#define HUBFS_ACQUIRE(...) HUBFS_TSA(acquire_capability(__VA_ARGS__))
#define HUBFS_RELEASE(...) HUBFS_TSA(release_capability(__VA_ARGS__))
#define HUBFS_EXCLUDES(...) HUBFS_TSA(locks_excluded(__VA_ARGS__))
#define HUBFS_ACQUIRED_BEFORE(...) HUBFS_TSA(acquired_before(__VA_ARGS__))
#define HUBFS_ACQUIRED_AFTER(...) HUBFS_TSA(acquired_after(__VA_ARGS__))
#define HUBFS_NO_THREAD_SAFETY_ANALYSIS HUBFS_TSA(no_thread_safety_analysis)

struct HUBFS_CAPABILITY("mutex") hubfs_mutex {
	pthread_mutex_t mutex;
};

/* Static initialiser for a struct hubfs_mutex. */
#define HUBFS_MUTEX_INIT { .mutex = PTHREAD_MUTEX_INITIALIZER }

/* Initialise @mu at run time.  Returns 0 or -errno from pthread. */
static inline int hubfs_mutex_init(struct hubfs_mutex *mu)
{
	return -pthread_mutex_init(&mu->mutex, NULL);
}

/* Destroy an unlocked @mu. */
static inline void hubfs_mutex_destroy(struct hubfs_mutex *mu)
{
	int rc = pthread_mutex_destroy(&mu->mutex);

	assert(rc == 0);
	(void)rc;
}

/* Lock @mu; must not already be held by this thread. */
static inline void hubfs_mutex_lock(struct hubfs_mutex *mu)
	HUBFS_ACQUIRE(mu);
static inline void hubfs_mutex_lock(struct hubfs_mutex *mu)
	HUBFS_NO_THREAD_SAFETY_ANALYSIS
{
	int rc = pthread_mutex_lock(&mu->mutex);

	assert(rc == 0);
	(void)rc;
}

/* Unlock @mu, which this thread holds. */
static inline void hubfs_mutex_unlock(struct hubfs_mutex *mu)
	HUBFS_RELEASE(mu);
static inline void hubfs_mutex_unlock(struct hubfs_mutex *mu)
	HUBFS_NO_THREAD_SAFETY_ANALYSIS
{
	int rc = pthread_mutex_unlock(&mu->mutex);

	assert(rc == 0);
	(void)rc;
}

#endif /* HUBFS_LOCK_H */
