/* The one place that decides where heap objects come from.
 *
 * Normal builds allocate every heap object (tasks, deques, names) with
 * mimalloc. Sanitizer builds (WEFT_SANITIZER) use libc instead: ASan does
 * not see overflows inside mi_malloc blocks, and TSan and LSan track libc's
 * allocator, not mimalloc's. Stacks are not heap objects (sched/stack.c).
 *
 * Tests force -ENOMEM paths with weft__alloc_fail_after(n): the n-th
 * allocation from then on fails. The check costs one load of a global that
 * is zero outside such tests, a branch that is always predicted.
 */
#ifndef WEFT_SCHED_ALLOC_H
#define WEFT_SCHED_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include "sched/atomic.h"
#include "sched/sched.h"

#ifdef WEFT_SANITIZER
#include <stdlib.h>
#define WEFT__MALLOC(n)     malloc(n)
#define WEFT__CALLOC(n, s)  calloc((n), (s))
#define WEFT__REALLOC(p, n) realloc((p), (n))
#define WEFT__FREE(p)       free(p)
#else
#include <mimalloc.h>
#define WEFT__MALLOC(n)     mi_malloc(n)
#define WEFT__CALLOC(n, s)  mi_calloc((n), (s))
#define WEFT__REALLOC(p, n) mi_realloc((p), (n))
#define WEFT__FREE(p)       mi_free(p)
#endif

/* Allocations left before one fails; 0: never. Any thread, atomic. */
extern uint64_t weft__alloc_countdown;

/* Make the n-th heap allocation from now fail (n = 0: turn off). For the
 * tests, which link the static library; not part of the shared ABI. */
void weft__alloc_fail_after(long n);

__attribute__((noinline)) bool weft__alloc_should_fail_slow(void);

/* Whether this allocation must fail. Relaxed: the countdown publishes no
 * data, and the slow path claims each turn with a CAS. */
static inline bool weft__alloc_should_fail(void)
{
    return WEFT_UNLIKELY(weft__load_rlx_u64(&weft__alloc_countdown) != 0) &&
           weft__alloc_should_fail_slow();
}

static inline void *weft__malloc(size_t n)
{
    if (weft__alloc_should_fail())
        return NULL;
    return WEFT__MALLOC(n);
}

static inline void *weft__calloc(size_t n, size_t size)
{
    if (weft__alloc_should_fail())
        return NULL;
    return WEFT__CALLOC(n, size);
}

/* On failure p is left as it was. */
static inline void *weft__realloc(void *p, size_t n)
{
    if (weft__alloc_should_fail())
        return NULL;
    return WEFT__REALLOC(p, n);
}

/* For structures with cache-line-aligned members. */
static inline void *weft__malloc_aligned(size_t align, size_t n)
{
    if (weft__alloc_should_fail())
        return NULL;
#ifdef WEFT_SANITIZER
    void *p;
    return posix_memalign(&p, align, n) == 0 ? p : NULL;
#else
    return mi_malloc_aligned(n, align);
#endif
}

static inline void weft__free(void *p)
{
    WEFT__FREE(p);
}

#endif /* WEFT_SCHED_ALLOC_H */
