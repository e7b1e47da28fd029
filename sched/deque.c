/* The Chase–Lev deque (see sched/deque.h for the interface and the choice
 * of a growable array).
 *
 * Invariants: top <= bottom + 1 at all times, and top <= bottom whenever
 * the owner is not inside pop. Indices are 64-bit and never wrap. In the
 * current array, slot i & mask holds item i for top <= i < bottom. The owner
 * overwrites a slot only after top has moved past it (push checks
 * bottom - top <= mask), so a thief that read a slot which was then
 * overwritten fails its CAS on top and discards what it read. A thief that
 * loaded an older array reads an item that was copied, unchanged, into the
 * newer one; the older array stays allocated until destroy.
 */
#include "sched/deque.h"

#include <errno.h>

#include "sched/alloc.h"
#include "sched/atomic.h"

#ifdef WEFT_TSAN
uint64_t weft__tsan_fence_word; /* see weft__fence_seq in sched/atomic.h */
#endif

static struct weft__deque_array *array_new(uint64_t cap)
{
    struct weft__deque_array *a =
        weft__calloc(1, sizeof(*a) + cap * sizeof(void *));
    if (a)
        a->mask = cap - 1;
    return a;
}

int weft__deque_init(struct weft__deque *d, size_t cap)
{
    if (cap == 0 || (cap & (cap - 1)) != 0)
        return -EINVAL;
    d->array = array_new(cap);
    if (!d->array)
        return -ENOMEM;
    d->top = 0;
    d->bottom = 0;
    d->top_cache = 0;
    return 0;
}

void weft__deque_destroy(struct weft__deque *d)
{
    for (struct weft__deque_array *a = d->array, *older; a; a = older) {
        older = a->older;
        weft__free(a);
    }
    d->array = NULL;
}

int weft__deque_grow(struct weft__deque *d)
{
    struct weft__deque_array *a = d->array; /* owner: no race on its own */
    struct weft__deque_array *n = array_new(2 * (a->mask + 1));
    if (!n)
        return -ENOMEM;
    n->older = a;
    uint64_t b = weft__load_rlx_u64(&d->bottom);
    for (uint64_t i = weft__load_rlx_u64(&d->top); i < b; i++)
        weft__store_rlx_ptr(&n->slots[i & n->mask],
                            weft__load_rlx_ptr(&a->slots[i & a->mask]));
    /* Release: a thief that loads the new array sees the copied slots.
     * Pairs with the acquire load of array in steal. */
    weft__store_rel_ptr(&d->array, n);
    return 0;
}

bool weft__deque_push(struct weft__deque *d, void *item)
{
    uint64_t b = weft__load_rlx_u64(&d->bottom);
    struct weft__deque_array *a = d->array;
    if (b - d->top_cache > a->mask) {
        /* Looks full against the cached bound: read the real top.
         * Acquire: slots below it have been consumed by the thieves' CAS,
         * so they may be overwritten. Pairs with the CAS in steal. */
        d->top_cache = weft__load_acq_u64(&d->top);
        if (b - d->top_cache > a->mask)
            return false;
    }
    weft__store_rlx_ptr(&a->slots[b & a->mask], item);
    /* Release: the item must be visible before the new bottom that
     * exposes it. Pairs with the acquire load of bottom in steal. */
    weft__store_rel_u64(&d->bottom, b + 1);
    return true;
}

/* Called only when the deque did not look empty (weft__deque_pop), so
 * bottom > top >= 0 and b below cannot wrap. */
void *weft__deque_pop_slow(struct weft__deque *d)
{
    uint64_t b = weft__load_rlx_u64(&d->bottom) - 1;
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
    struct weft__deque_array *a = d->array;
    void *item = weft__load_rlx_ptr(&a->slots[b & a->mask]);
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
    /* Acquire: pairs with the release store in grow. */
    struct weft__deque_array *a = weft__load_acq_ptr(&d->array);
    void *item = weft__load_rlx_ptr(&a->slots[t & a->mask]);
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
