/* weft_lock: asyncio.Lock, shared by tasks and plain threads.
 *
 * One word of state, LOCKED | WAITERS. An uncontended acquire is one CAS
 * (0 -> LOCKED) and an uncontended release one CAS (LOCKED -> 0), as in a
 * futex mutex; only a release that finds WAITERS takes the qlock.
 *
 * Fairness. Waiters queue FIFO. A release wakes the first waiter to
 * compete for the lock, and a running acquirer may take it first
 * (barging): handing the lock to a waiter that has yet to be scheduled
 * would leave it idle for a wake-up latency on every release, the convoy
 * that makes strict FIFO locks slow between threads. A waiter that loses
 * goes back to the head of the queue; once it has kept losing for more
 * than STARVING_NS it asks for a hand-off, and the next release gives it the
 * lock directly (LOCKED stays set, so nobody can barge in between). So no
 * waiter waits much longer than a millisecond plus the waiters ahead of
 * it. This is Go's sync.Mutex policy (normal and starvation modes).
 *
 * Invariants:
 *  - LOCKED: set by the acquirer's CAS, cleared by the releaser's CAS, or
 *    kept across a hand-off. WAITERS: changed only under the qlock; it is
 *    set whenever the queue is non-empty (a waiter sets it before queuing,
 *    and whoever empties the queue clears it), so a release CAS from
 *    exactly LOCKED can never leave a waiter queued behind a free lock.
 *  - A waiter woken to compete either takes the lock, or sees it LOCKED
 *    under the qlock and queues again: the holder's release will wake the
 *    next waiter. So a free lock with waiters always has one of them on
 *    its way (no lost wake-up), also when a woken waiter is interrupted:
 *    an interrupted waiter was never granted (weft__wq_grant lost), and the
 *    releaser went on to the next node.
 */
#include <unistd.h>

#include "sync/sync.h"

#define LOCKED  1u
#define WAITERS 2u

/* Node values: what the waiter asks for, and what the releaser gives. */
#define COMPETE      0 /* woken to take the lock if it can */
#define WANT_HANDOFF 1 /* set by a starving waiter before it queues */
#define HANDED       2 /* set by the releaser: the lock is the waiter's */

#define STARVING_NS 1000000 /* 1 ms, as Go */
#define SPINS       0

struct weft__lock {
    uint32_t state;    /* atomic: LOCKED | WAITERS, see above */
    uint32_t tag;      /* WEFT__TAG_LOCK while initialised */
    const void *owner; /* relaxed atomic: the holder's weft__sync_self(),
                          written by the holder; NULL while free or handed */
    weft__qlock qlock;
    struct weft__wq waiters; /* under qlock */
};

_Static_assert(sizeof(struct weft__lock) <= sizeof(weft_lock),
               "weft_lock too small");

struct weft__lock *weft__lock_of(weft_lock *lock)
{
    struct weft__lock *l = (struct weft__lock *)lock;
    return l && weft__tag_ok(&l->tag, WEFT__TAG_LOCK) ? l : NULL;
}

int weft_lock_init(weft_lock *lock)
{
    if (!lock)
        return -EINVAL;
    struct weft__lock *l = (struct weft__lock *)lock;
    l->state = 0;
    l->owner = NULL;
    weft__qlock_init(&l->qlock);
    weft__wq_init(&l->waiters);
    weft__store_rlx_u32(&l->tag, WEFT__TAG_LOCK);
    return 0;
}

/* Take the lock if LOCKED is clear (WAITERS may be set: barging). Seq CAS
 * (acquire is what matters): the critical section starts after it and
 * sees everything before the release CAS that freed the lock. */
static bool try_take(struct weft__lock *l)
{
    for (;;) {
        uint32_t s = weft__load_rlx_u32(&l->state);
        if (s & LOCKED)
            return false;
        if (weft__cas_seq_u32(&l->state, s, s | LOCKED))
            return true;
    }
}

/* Under the qlock: take the lock, or mark that a waiter is about to
 * queue (so the holder's release comes to the queue). */
static bool take_or_mark_locked(struct weft__lock *l)
{
    for (;;) {
        uint32_t s = weft__load_rlx_u32(&l->state);
        if (!(s & LOCKED)) {
            if (weft__cas_seq_u32(&l->state, s, s | LOCKED))
                return true;
        } else if ((s & WAITERS) ||
                   weft__cas_seq_u32(&l->state, s, s | WAITERS)) {
            return false;
        }
    }
}

/* Spinning pays only when the holder can be running elsewhere: another
 * worker of this task's runtime, or another CPU for a thread. */
static bool spin_useful(void)
{
    weft_runtime *rt = weft_runtime_current();
    if (rt)
        return weft_runtime_workers(rt) > 1;
    static long cpus; /* relaxed: every thread computes the same value */
    long n = (long)weft__load_rlx_u64((uint64_t *)&cpus);
    if (!n) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        weft__store_rlx_u64((uint64_t *)&cpus, (uint64_t)(n > 0 ? n : 1));
    }
    return n > 1;
}

static __attribute__((noinline)) int
acquire_slow(struct weft__lock *l, int64_t deadline_ns, unsigned flags)
{
    if (spin_useful()) {
        for (int i = 0; i < SPINS; i++) {
            weft__cpu_relax();
            if (!(weft__load_rlx_u32(&l->state) & LOCKED) && try_take(l))
                return 0;
        }
    }
    struct weft__wq_node n;
    n.value = COMPETE;
    unsigned at_head = 0;
    for (;;) {
        weft__qlock_acquire(&l->qlock);
        if (take_or_mark_locked(l)) {
            weft__qlock_release(&l->qlock);
            return 0;
        }
        int rc = weft__wq_wait(&l->waiters, &n, &l->qlock, deadline_ns,
                               flags | at_head);
        if (rc < 0)
            return rc;
        if (n.value == HANDED || try_take(l))
            return 0;
        /* Passed over: first in the queue again, and starving once it has
         * lost for longer than STARVING_NS since it was first woken. (Time
         * spent queued behind other waiters is not starvation.) */
        int64_t now = weft__now_ns();
        if (!at_head)
            n.since_ns = now;
        at_head = WEFT__WQ_AT_HEAD;
        if (now - n.since_ns > STARVING_NS)
            n.value = WANT_HANDOFF;
    }
}

static inline int acquire(weft_lock *lock, int64_t deadline_ns)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!l)
        return -EINVAL;
    /* Seq CAS: see try_take. */
    if (WEFT_UNLIKELY(!weft__cas_seq_u32(&l->state, 0, LOCKED))) {
        int rc = acquire_slow(l, deadline_ns, 0);
        if (rc < 0)
            return rc;
    }
    weft__store_rlx_ptr(&l->owner, weft__sync_self());
    return 0;
}

int weft_lock_acquire(weft_lock *lock)
{
    return acquire(lock, WEFT__NEVER);
}

int weft_lock_acquire_timeout(weft_lock *lock, double seconds)
{
    int64_t deadline_ns;
    int err = weft__sync_deadline(seconds, &deadline_ns);
    return err ? err : acquire(lock, deadline_ns);
}

int weft_lock_acquire_nowait(weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!l)
        return -EINVAL;
    if (!try_take(l))
        return -EBUSY;
    weft__store_rlx_ptr(&l->owner, weft__sync_self());
    return 0;
}

void weft__lock_acquire_uninterruptible(struct weft__lock *l)
{
    if (!weft__cas_seq_u32(&l->state, 0, LOCKED))
        (void)acquire_slow(l, WEFT__NEVER, WEFT__WQ_NO_INTERRUPT);
    weft__store_rlx_ptr(&l->owner, weft__sync_self());
}

/* Under the qlock: hand the lock to the first waiter that accepts it. A
 * starving waiter gets it directly (LOCKED stays set); otherwise LOCKED is
 * cleared first and the waiter competes. */
static void wake_locked(struct weft__lock *l, struct weft__wq_wakes *wk)
{
    bool held = true; /* LOCKED is still ours to hand over */
    struct weft__wq_node *n;
    while ((n = weft__wq_pop(&l->waiters))) {
        bool handoff = held && n->value == WANT_HANDOFF;
        n->value = handoff ? HANDED : COMPETE;
        uint32_t drop = (handoff || !held ? 0 : LOCKED) |
                        (weft__wq_is_empty(&l->waiters) ? WAITERS : 0);
        if (drop) /* seq AND: publishes the critical section, as the CAS */
            weft__and_seq_u32(&l->state, ~drop);
        held = handoff;
        if (weft__wq_grant(n, wk))
            return;
        /* n was interrupted first: the next waiter, if any. */
    }
    weft__and_seq_u32(&l->state, ~(held ? LOCKED | WAITERS : WAITERS));
}

void weft__lock_release_held(struct weft__lock *l)
{
    weft__store_rlx_ptr(&l->owner, NULL);
    /* Seq CAS (release is what matters): publishes the critical section
     * to the next acquirer's CAS. Fails only when WAITERS is set. */
    if (WEFT_LIKELY(weft__cas_seq_u32(&l->state, LOCKED, 0)))
        return;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&l->qlock);
    wake_locked(l, &wk);
    weft__qlock_release_wake(&l->qlock, &wk);
}

bool weft__lock_held_by_me(const struct weft__lock *l)
{
    /* Only the holder can find its own identity here: it wrote it itself,
     * and its own release cleared it. */
    return weft__load_rlx_ptr(&l->owner) == weft__sync_self();
}

int weft_lock_release(weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!l)
        return -EINVAL;
    if (!weft__lock_held_by_me(l))
        return -EPERM;
    weft__lock_release_held(l);
    return 0;
}

bool weft_lock_locked(const weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of((weft_lock *)lock);
    return l && (weft__load_rlx_u32(&l->state) & LOCKED);
}

int weft_lock_destroy(weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!l)
        return -EINVAL;
    weft__qlock_acquire(&l->qlock);
    bool busy = weft__load_rlx_u32(&l->state) != 0;
    if (!busy)
        weft__store_rlx_u32(&l->tag, 0);
    weft__qlock_release(&l->qlock);
    return busy ? -EBUSY : 0;
}
