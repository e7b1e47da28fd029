/* weft_cond: asyncio.Condition over a weft_lock, for tasks and threads.
 *
 * A waiter queues on the condition (under its qlock) before it releases
 * the lock, and a notifier must hold the lock: so a notify that follows
 * the waiter's release always finds the waiter queued. The waiter takes
 * the lock again whatever ended its wait, ignoring cancellation while it
 * does (asyncio's Condition.wait does the same), so the caller's critical
 * section always resumes with the lock held. A waiter interrupted as it is
 * notified does not accept the notification, which goes to the next
 * waiter (weft__wq_grant_first): notify(n) wakes n waiters that return 0.
 */
#include "sync/sync.h"

struct weft__cond {
    uint32_t tag; /* WEFT__TAG_COND while initialised */
    weft__qlock qlock;
    struct weft__lock *lock; /* constant */
    struct weft__wq waiters; /* under qlock */
};

_Static_assert(sizeof(struct weft__cond) <= sizeof(weft_cond),
               "weft_cond too small");

static struct weft__cond *cond_of(weft_cond *cond)
{
    struct weft__cond *c = (struct weft__cond *)cond;
    return c && weft__tag_ok(&c->tag, WEFT__TAG_COND) ? c : NULL;
}

int weft_cond_init(weft_cond *cond, weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!cond || !l)
        return -EINVAL;
    struct weft__cond *c = (struct weft__cond *)cond;
    weft__qlock_init(&c->qlock);
    c->lock = l;
    weft__wq_init(&c->waiters);
    weft__store_rlx_u32(&c->tag, WEFT__TAG_COND);
    return 0;
}

/* The caller holds c->lock. The node is queued before the lock is
 * released, so a notify (which needs the lock) that follows the release
 * finds it; the release itself, and the wake it may do, happen outside
 * the condition's qlock. */
static int wait_held(struct weft__cond *c, int64_t deadline_ns)
{
    struct weft__wq_node n;
    weft__qlock_acquire(&c->qlock);
    int rc = weft__wq_enqueue(&c->waiters, &n, WEFT__WAIT_COND, c, 0);
    weft__qlock_release(&c->qlock);
    weft__lock_release_held(c->lock);
    if (rc == 0)
        rc = weft__wq_block(&c->waiters, &n, &c->qlock, deadline_ns);
    weft__lock_acquire_uninterruptible(c->lock);
    return rc;
}

static int wait_for(weft_cond *cond, bool (*pred)(void *), void *arg,
                    int64_t deadline_ns)
{
    struct weft__cond *c = cond_of(cond);
    if (!c)
        return -EINVAL;
    if (!weft__lock_held_by_me(c->lock))
        return -EPERM;
    if (!pred)
        return wait_held(c, deadline_ns);
    int rc = 0;
    while (rc == 0 && !pred(arg))
        rc = wait_held(c, deadline_ns);
    return rc;
}

int weft_cond_wait(weft_cond *cond)
{
    return wait_for(cond, NULL, NULL, WEFT__NEVER);
}

int weft_cond_wait_timeout(weft_cond *cond, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns
                           : wait_for(cond, NULL, NULL, deadline_ns);
}

int weft_cond_wait_for(weft_cond *cond, bool (*pred)(void *), void *arg)
{
    return pred ? wait_for(cond, pred, arg, WEFT__NEVER) : -EINVAL;
}

int weft_cond_wait_for_timeout(weft_cond *cond, bool (*pred)(void *), void *arg,
                               double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    if (deadline_ns < 0 || !pred)
        return deadline_ns < 0 ? (int)deadline_ns : -EINVAL;
    return wait_for(cond, pred, arg, deadline_ns);
}

int weft_cond_notify(weft_cond *cond, int n)
{
    struct weft__cond *c = cond_of(cond);
    if (!c || n < 0)
        return -EINVAL;
    if (!weft__lock_held_by_me(c->lock))
        return -EPERM;
    int woken = 0;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&c->qlock);
    while (woken < n && weft__wq_grant_first(&c->waiters, NULL, NULL, &wk))
        woken++;
    weft__qlock_release_wake(&c->qlock, &wk);
    return woken;
}

int weft_cond_notify_all(weft_cond *cond)
{
    return weft_cond_notify(cond, INT32_MAX);
}

int weft_cond_destroy(weft_cond *cond)
{
    struct weft__cond *c = cond_of(cond);
    return c ? weft__sync_destroy(&c->tag, &c->qlock, &c->waiters) : -EINVAL;
}
