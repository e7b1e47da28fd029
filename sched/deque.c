/* The bounded Chase–Lev deque (see sched/deque.h for the interface and the
 * choice of a bounded buffer).
 *
 * Invariants: top <= bottom + 1 at all times, and top <= bottom whenever
 * the owner is not inside pop. Indices are 64-bit and never wrap. Slot
 * i & mask holds item i for top <= i < bottom. The owner overwrites a slot
 * only after top has moved past it (push checks bottom - top < capacity),
 * so a thief that read a slot which was then overwritten fails its CAS on
 * top and discards what it read.
 */
#include "sched/deque.h"

#include <errno.h>

#include "sched/alloc.h"
#include "sched/atomic.h"

int weft__deque_init(struct weft__deque *d, size_t cap)
{
    if (cap == 0 || (cap & (cap - 1)) != 0)
        return -EINVAL;
    d->buf = weft__calloc(cap, sizeof(void *));
    if (!d->buf)
        return -ENOMEM;
    d->mask = cap - 1;
    d->top = 0;
    d->bottom = 0;
    return 0;
}

void weft__deque_destroy(struct weft__deque *d)
{
    weft__free(d->buf);
    d->buf = NULL;
}

bool weft__deque_push(struct weft__deque *d, void *item)
{
    uint64_t b = weft__load_rlx_u64(&d->bottom);
    /* Acquire: slots below this top have been consumed by the thieves'
     * CAS, so they may be overwritten. Pairs with the CAS in steal. */
    uint64_t t = weft__load_acq_u64(&d->top);
    if (b - t > d->mask)
        return false;
    weft__store_rlx_ptr(&d->buf[b & d->mask], item);
    /* Release: the item must be visible before the new bottom that
     * exposes it. Pairs with the acquire load of bottom in steal. */
    weft__store_rel_u64(&d->bottom, b + 1);
    return true;
}

void *weft__deque_pop(struct weft__deque *d)
{
    uint64_t b = weft__load_rlx_u64(&d->bottom);
    /* Fast path: top never passes bottom, so a top equal to bottom (even a
     * stale one: top only grows) proves the deque empty without the fence
     * the full pop needs. */
    if (weft__load_rlx_u64(&d->top) == b)
        return NULL;
    b -= 1;
    weft__store_rlx_u64(&d->bottom, b);
    /* Sequentially consistent: the store of bottom must be ordered before
     * the load of top, against a thief's load of top then bottom (the
     * fence in steal). Without it, owner and thief could both take the
     * last item. */
    weft__fence_seq();
    uint64_t t = weft__load_rlx_u64(&d->top);
    if (t > b) {
        /* Empty: a thief took the last item. Restore bottom. */
        weft__store_rlx_u64(&d->bottom, b + 1);
        return NULL;
    }
    void *item = weft__load_rlx_ptr(&d->buf[b & d->mask]);
    if (t == b) {
        /* The last item: race the thieves for it through top. */
        if (!weft__cas_seq_u64(&d->top, t, t + 1))
            item = NULL;
        weft__store_rlx_u64(&d->bottom, b + 1);
    }
    return item;
}

void *weft__deque_steal(struct weft__deque *d)
{
    /* Acquire top, then a sequentially consistent fence before reading
     * bottom: pairs with the fence in pop, so that owner and thief cannot
     * both miss each other's claim on the last item. */
    uint64_t t = weft__load_acq_u64(&d->top);
    weft__fence_seq();
    /* Acquire: the slot write that preceded this bottom (push's release
     * store) is visible. */
    uint64_t b = weft__load_acq_u64(&d->bottom);
    if (t >= b)
        return WEFT__STEAL_EMPTY;
    void *item = weft__load_rlx_ptr(&d->buf[t & d->mask]);
    /* The CAS claims slot t; if top moved, the item may have been taken
     * (or its slot reused) and what we read is void. */
    if (!weft__cas_seq_u64(&d->top, t, t + 1))
        return WEFT__STEAL_RETRY;
    return item;
}

size_t weft__deque_len(const struct weft__deque *d)
{
    uint64_t b = weft__load_rlx_u64((uint64_t *)&d->bottom);
    uint64_t t = weft__load_rlx_u64((uint64_t *)&d->top);
    return b > t ? (size_t)(b - t) : 0;
}
