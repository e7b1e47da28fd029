/* weft_event: asyncio.Event, for tasks and threads.
 *
 * `set` is written under the qlock together with the queue, so a waiter
 * that finds the event clear under the qlock is queued before any set
 * that could miss it. Waiters granted by a set return 0 even if the event
 * is cleared again before they run, as asyncio's do.
 */
#include "sync/sync.h"

struct weft__event {
    uint32_t tag; /* WEFT__TAG_EVENT while initialised */
    uint32_t set; /* atomic; written under qlock, except by clear */
    weft__qlock qlock;
    struct weft__wq waiters; /* under qlock */
};

_Static_assert(sizeof(struct weft__event) <= sizeof(weft_event),
               "weft_event too small");

static struct weft__event *event_of(const weft_event *ev)
{
    struct weft__event *e = (struct weft__event *)ev;
    return e && weft__tag_ok(&e->tag, WEFT__TAG_EVENT) ? e : NULL;
}

int weft_event_init(weft_event *ev)
{
    if (!ev)
        return -EINVAL;
    struct weft__event *e = (struct weft__event *)ev;
    e->set = 0;
    weft__qlock_init(&e->qlock);
    weft__wq_init(&e->waiters);
    weft__store_rlx_u32(&e->tag, WEFT__TAG_EVENT);
    return 0;
}

int weft_event_set(weft_event *ev)
{
    struct weft__event *e = event_of(ev);
    if (!e)
        return -EINVAL;
    /* Acquire: pairs with the release below; already set means no waiter
     * is queued (a waiter queues only having seen it clear, under the
     * qlock, and this set found it set after that). */
    if (weft__load_acq_u32(&e->set))
        return 0;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&e->qlock);
    /* Release: a waiter that sees the flag without the qlock (the fast
     * path of wait) sees what the setter did before setting it. */
    weft__store_rel_u32(&e->set, 1);
    weft__wq_grant_all(&e->waiters, NULL, NULL, &wk);
    weft__qlock_release_wake(&e->qlock, &wk);
    return 0;
}

int weft_event_clear(weft_event *ev)
{
    struct weft__event *e = event_of(ev);
    if (!e)
        return -EINVAL;
    /* Relaxed, without the qlock: clearing publishes nothing, and a set
     * racing with it either wins (waiters queued before it are granted)
     * or loses (the event ends clear); both are asyncio's outcomes. */
    weft__store_rlx_u32(&e->set, 0);
    return 0;
}

bool weft_event_is_set(const weft_event *ev)
{
    struct weft__event *e = event_of(ev);
    return e && weft__load_acq_u32(&e->set);
}

static int wait(weft_event *ev, int64_t deadline_ns)
{
    struct weft__event *e = event_of(ev);
    if (!e)
        return -EINVAL;
    if (weft__load_acq_u32(&e->set)) /* pairs with the release in set */
        return 0;
    weft__qlock_acquire(&e->qlock);
    /* Relaxed load: clear writes it without the qlock. */
    if (weft__load_rlx_u32(&e->set)) {
        weft__qlock_release(&e->qlock);
        return 0;
    }
    struct weft__wq_node n;
    return weft__wq_wait(&e->waiters, &n, &e->qlock, deadline_ns,
                         WEFT__WAIT_EVENT, e, 0);
}

int weft_event_wait(weft_event *ev)
{
    return wait(ev, WEFT__NEVER);
}

int weft_event_wait_timeout(weft_event *ev, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns : wait(ev, deadline_ns);
}

int weft_event_destroy(weft_event *ev)
{
    struct weft__event *e = event_of(ev);
    return e ? weft__sync_destroy(&e->tag, &e->qlock, &e->waiters) : -EINVAL;
}
