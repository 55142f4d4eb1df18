/*
 * hubfs memory allocation.
 *
 * Every allocation in hubfs goes through these wrappers.  None of them
 * aborts: each returns NULL on failure and the caller turns that into
 * -ENOMEM.  A daemon that may hold unsynced data must not exit because one
 * request could not get memory.
 */
#ifndef HUBFS_MEM_H
#define HUBFS_MEM_H

#include <stddef.h>

/*
 * Allocate @size bytes, uninitialised.  Returns NULL on failure and also
 * for @size == 0, so a NULL result always means "no memory was handed out".
 */
void *hubfs_malloc(size_t size);

/*
 * Allocate an array of @nmemb elements of @size bytes, zeroed.  Returns
 * NULL on failure, on multiplication overflow, or when the product is 0.
 */
void *hubfs_calloc(size_t nmemb, size_t size);

/*
 * Resize @ptr (which may be NULL) to @size bytes, @size > 0.  On failure
 * returns NULL and leaves @ptr allocated and unchanged.
 */
void *hubfs_realloc(void *ptr, size_t size);

/* Duplicate the string @s.  Returns NULL on failure. */
char *hubfs_strdup(const char *s);

/*
 * Duplicate at most @n bytes of @s and NUL-terminate the copy.  Returns
 * NULL on failure.
 */
char *hubfs_strndup(const char *s, size_t n);

/* Release memory from the functions above.  Accepts NULL. */
void hubfs_free(void *ptr);

/*
 * Fault injection for tests: make the @nth allocation from now fail once
 * (1 = the very next one).  0 turns injection off.  Counting is global
 * across threads.
 */
void hubfs_mem_fail_nth(unsigned long nth);

#endif /* HUBFS_MEM_H */
