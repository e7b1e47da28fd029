/* weft_sem: asyncio.Semaphore and BoundedSemaphore, for tasks and threads.
 *
 * Everything is under the qlock. A release with waiters gives its permit
 * to the first waiter that accepts it (weft__wq_grant_first) instead of
 * adding it to the count, so `value > 0` implies that nobody waits, and
 * an acquire never takes a permit ahead of an earlier waiter (asyncio
 * 3.11's fairness fix). A waiter interrupted as it is granted never
 * accepts, so the permit goes to the next waiter or back to the count.
 */
#include <limits.h>

#include "sync/sync.h"

struct weft__sem {
    uint32_t tag; /* WEFT__TAG_SEM while initialised */
    weft__qlock qlock;
    long value; /* under qlock (relaxed atomic for weft_sem_value) */
    long bound; /* constant: LONG_MAX unless bounded */
    struct weft__wq waiters; /* under qlock */
};

_Static_assert(sizeof(struct weft__sem) <= sizeof(weft_sem),
               "weft_sem too small");

static struct weft__sem *sem_of(const weft_sem *sem)
{
    struct weft__sem *s = (struct weft__sem *)sem;
    return s && weft__tag_ok(&s->tag, WEFT__TAG_SEM) ? s : NULL;
}

static int init(weft_sem *sem, long value, long bound)
{
    if (!sem || value < 0)
        return -EINVAL;
    struct weft__sem *s = (struct weft__sem *)sem;
    weft__qlock_init(&s->qlock);
    s->value = value;
    s->bound = bound;
    weft__wq_init(&s->waiters);
    weft__store_rlx_u32(&s->tag, WEFT__TAG_SEM);
    return 0;
}

int weft_sem_init(weft_sem *sem, long value)
{
    return init(sem, value, LONG_MAX);
}

int weft_sem_init_bounded(weft_sem *sem, long value)
{
    return init(sem, value, value);
}

static void set_value(struct weft__sem *s, long v)
{
    weft__store_rlx_u64((uint64_t *)&s->value, (uint64_t)v);
}

static int acquire(weft_sem *sem, int64_t deadline_ns, bool nowait)
{
    struct weft__sem *s = sem_of(sem);
    if (!s)
        return -EINVAL;
    weft__qlock_acquire(&s->qlock);
    if (s->value > 0) {
        set_value(s, s->value - 1);
        weft__qlock_release(&s->qlock);
        return 0;
    }
    if (nowait) {
        weft__qlock_release(&s->qlock);
        return -EAGAIN;
    }
    struct weft__wq_node n;
    return weft__wq_wait(&s->waiters, &n, &s->qlock, deadline_ns,
                         WEFT__WAIT_SEM, s, 0);
}

int weft_sem_acquire(weft_sem *sem)
{
    return acquire(sem, WEFT__NEVER, false);
}

int weft_sem_acquire_timeout(weft_sem *sem, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns
                           : acquire(sem, deadline_ns, false);
}

int weft_sem_acquire_nowait(weft_sem *sem)
{
    return acquire(sem, WEFT__NEVER, true);
}

int weft_sem_release(weft_sem *sem)
{
    struct weft__sem *s = sem_of(sem);
    if (!s)
        return -EINVAL;
    int rc = 0;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&s->qlock);
    if (s->value >= s->bound)
        rc = -EOVERFLOW;
    else if (!weft__wq_grant_first(&s->waiters, NULL, NULL, &wk))
        set_value(s, s->value + 1);
    weft__qlock_release_wake(&s->qlock, &wk);
    return rc;
}

long weft_sem_value(const weft_sem *sem)
{
    struct weft__sem *s = sem_of(sem);
    return s ? (long)weft__load_rlx_u64((uint64_t *)&s->value) : -EINVAL;
}

int weft_sem_destroy(weft_sem *sem)
{
    struct weft__sem *s = sem_of(sem);
    return s ? weft__sync_destroy(&s->tag, &s->qlock, &s->waiters) : -EINVAL;
}
