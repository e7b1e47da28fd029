/* A bounded Chase–Lev work-stealing deque of pointers.
 *
 * The owner pushes and pops at the bottom (LIFO, so the task spawned last
 * runs first and its data is still in cache); any thread steals at the top
 * (FIFO, so thieves take the oldest, typically largest, work). Memory
 * orders follow Lê, Pop, Cohen and Zappa Nardelli, "Correct and Efficient
 * Work-Stealing for Weak Memory Models" (PPoPP 2013).
 *
 * A push on a full deque fails; the owner then grows it (weft__deque_grow)
 * to twice the size and pushes again. Growable rather than bounded with
 * overflow into the injection queue (Go's and Tokio's choice): measured on
 * a million spawns, the overflow path (taking half the deque back by CAS,
 * walking the intrusive injection list under its lock, re-pushing) was a
 * fifth of the spawn cost, and it puts a spawning worker's tasks behind a
 * shared lock. Old arrays are kept, linked from the new one, until the
 * deque is destroyed, because a thief may still be reading one; they add
 * at most the size of the current array. A deque never shrinks.
 */
#ifndef WEFT_SCHED_DEQUE_H
#define WEFT_SCHED_DEQUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/atomic.h"

/* Initial capacity of a worker's deque. */
#define WEFT__DEQUE_CAP 256u

/* An array of slots and its own mask, so that a thief that loads the array
 * pointer always indexes it with the matching mask. */
struct weft__deque_array {
    uint64_t mask;                   /* capacity - 1; immutable */
    struct weft__deque_array *older; /* retired predecessor, or NULL */
    void *slots[];                   /* each accessed atomically (relaxed) */
};

struct weft__deque {
    /* Next slot a thief takes. Any thread, advanced only by CAS. */
    uint64_t top __attribute__((aligned(64)));
    /* Next slot the owner fills. Written by the owner only; read by
     * thieves. Its own cache line: the owner writes it on every push. */
    uint64_t bottom __attribute__((aligned(64)));
    /* Owner only: a value top had, so a lower bound of it (top only
     * grows). push checks capacity against it and reloads top only when
     * the deque looks full, so pushing does not read the line thieves
     * write. */
    uint64_t top_cache;
    /* The current array. Replaced by the owner only (grow); any thread
     * loads it. */
    struct weft__deque_array *array;
};

/* Steal outcomes other than an item. */
#define WEFT__STEAL_EMPTY ((void *)0)
#define WEFT__STEAL_RETRY ((void *)1)

/* cap must be a power of two. Returns 0 or -ENOMEM. */
int weft__deque_init(struct weft__deque *d, size_t cap);
void weft__deque_destroy(struct weft__deque *d);

/* Owner only. Returns false, changing nothing, when the deque is full.
 * item must not be NULL or WEFT__STEAL_RETRY. */
bool weft__deque_push(struct weft__deque *d, void *item);

/* Owner only. Double the capacity, keeping every item. Returns 0 or
 * -ENOMEM (the deque is unchanged). */
int weft__deque_grow(struct weft__deque *d);

/* Owner only: whether the deque is certainly empty, without the fence a
 * pop needs. top never passes bottom and only grows, so even a stale top
 * equal to bottom proves it. */
static inline bool weft__deque_is_empty_owner(const struct weft__deque *d)
{
    return weft__load_rlx_u64((uint64_t *)&d->top) ==
           weft__load_rlx_u64((uint64_t *)&d->bottom);
}

void *weft__deque_pop_slow(struct weft__deque *d);

/* Owner only. Returns the newest item, or NULL when empty. An empty deque,
 * the common case on the hot paths that poll it, costs two loads and no
 * call. */
static inline void *weft__deque_pop(struct weft__deque *d)
{
    if (weft__deque_is_empty_owner(d))
        return NULL;
    return weft__deque_pop_slow(d);
}

/* Any thread. Returns the oldest item, WEFT__STEAL_EMPTY, or
 * WEFT__STEAL_RETRY when it lost a race (the deque may still hold items). */
void *weft__deque_steal(struct weft__deque *d);

/* Any thread; approximate unless called by the owner with no thieves. */
size_t weft__deque_len(const struct weft__deque *d);

#endif /* WEFT_SCHED_DEQUE_H */
