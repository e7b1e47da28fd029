/* A bounded Chase–Lev work-stealing deque of pointers.
 *
 * The owner pushes and pops at the bottom (LIFO, so the task spawned last
 * runs first and its data is still in cache); any thread steals at the top
 * (FIFO, so thieves take the oldest, typically largest, work). Memory
 * orders follow Lê, Pop, Cohen and Zappa Nardelli, "Correct and Efficient
 * Work-Stealing for Weak Memory Models" (PPoPP 2013).
 *
 * Bounded, not growable: a full push fails and the worker moves half the
 * deque to the injection queue in one batch (what Go and Tokio do). That
 * keeps a worker's memory fixed, needs no reclamation of old buffers under
 * concurrent thieves, and hands a burst of spawns to idle workers at once.
 */
#ifndef WEFT_SCHED_DEQUE_H
#define WEFT_SCHED_DEQUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Capacity of a worker's deque (Go and Tokio use 256 too). Tests reach the
 * overflow path by spawning more than this from one task. */
#define WEFT__DEQUE_CAP 256u

struct weft__deque {
    /* Next slot a thief takes. Any thread, advanced only by CAS. */
    uint64_t top __attribute__((aligned(64)));
    /* Next slot the owner fills. Written by the owner only; read by
     * thieves. Its own cache line: the owner writes it on every push. */
    uint64_t bottom __attribute__((aligned(64)));
    uint64_t mask; /* capacity - 1; immutable after init */
    void **buf;    /* slots; each accessed atomically (relaxed) */
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

/* Owner only. Returns the newest item, or NULL when empty. */
void *weft__deque_pop(struct weft__deque *d);

/* Any thread. Returns the oldest item, WEFT__STEAL_EMPTY, or
 * WEFT__STEAL_RETRY when it lost a race (the deque may still hold items). */
void *weft__deque_steal(struct weft__deque *d);

/* Any thread; approximate unless called by the owner with no thieves. */
size_t weft__deque_len(const struct weft__deque *d);

#endif /* WEFT_SCHED_DEQUE_H */
