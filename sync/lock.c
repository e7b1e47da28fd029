/* weft_lock: asyncio.Lock, shared by tasks and plain threads.
 *
 * One word of state: the holder's identity (self(): the task, or the
 * thread) with the WAITERS bit, or 0 when free. An uncontended acquire
 * is one CAS (0 -> me) and an uncontended release one CAS (me -> 0), which
 * also proves that the caller holds the lock; only a release that finds
 * WAITERS takes the qlock.
 *
 * Fairness. Waiters queue FIFO. A release wakes the first waiter to
 * compete for the lock, and a running acquirer may take it first
 * (barging): handing the lock to a waiter that has yet to be scheduled
 * would leave it idle for a wake-up latency on every release, the convoy
 * that makes strict FIFO locks slow between threads. A waiter that loses
 * goes back to the head of the queue; once it has kept losing for more
 * than STARVING_NS it asks for a hand-off, and the next release gives it
 * the lock directly (the releaser writes the waiter's identity into the
 * word, so nobody can barge in between). So no waiter waits much longer
 * than a millisecond plus the waiters ahead of it. This is Go's sync.Mutex
 * policy (normal and starvation modes).
 *
 * Invariants:
 *  - The owner part: set from 0 by an acquirer's CAS, cleared by the
 *    holder's release, or replaced by the holder at a hand-off. WAITERS:
 *    changed only under the qlock; it is set whenever the queue is
 *    non-empty (a waiter sets it before queuing; a release that empties
 *    the queue clears it), so a release CAS from exactly `me` can never
 *    leave a waiter queued behind a free lock. It may stay set on an empty
 *    queue (an interrupted waiter unlinks itself and leaves it): the next
 *    release then finds nobody and clears it. While the holder has the
 *    qlock, nobody else can change the word.
 *  - A waiter woken to compete either takes the lock, or sees it LOCKED
 *    under the qlock and queues again: the holder's release will wake the
 *    next waiter. So a free lock with waiters always has one of them on
 *    its way (no lost wake-up), also when a woken waiter is interrupted:
 *    an interrupted waiter was never granted (weft__wq_grant lost), and the
 *    releaser went on to the next node.
 *  - A woken task waiter goes where any worker can take it, not into the
 *    releaser's LIFO slot (WEFT__WQ_STEALABLE): a releaser that takes the
 *    lock straight back and never suspends would keep a waiter parked in
 *    its slot forever, and the waiter could never compete, let alone
 *    starve long enough to be handed the lock.
 */
#include "sync/sync.h"

#define WAITERS ((uintptr_t)1) /* identities are at least 2-aligned */

/* Node values: what the waiter asks for, and what the releaser gives. */
#define COMPETE      0 /* woken to take the lock if it can */
#define WANT_HANDOFF 1 /* set by a starving waiter before it queues */
#define HANDED       2 /* set by the releaser: the lock is the waiter's */

#define STARVING_NS 1000000 /* 1 ms, as Go */

struct weft__lock {
    void *state;  /* atomic: owner | WAITERS, as a uintptr_t */
    uint32_t tag; /* WEFT__TAG_LOCK while initialised */
    weft__qlock qlock;
    struct weft__wq waiters; /* under qlock; node->item: the waiter's id */
};

_Static_assert(sizeof(struct weft__lock) <= sizeof(weft_lock),
               "weft_lock too small");

static uintptr_t load(const struct weft__lock *l)
{
    return (uintptr_t)weft__load_rlx_ptr(&l->state);
}

/* Seq CAS (acquire on taking the lock, release on freeing or handing it
 * over is what matters): the critical section sees everything before the
 * release that freed the lock. */
static bool cas(struct weft__lock *l, uintptr_t old, uintptr_t new_)
{
    return weft__cas_seq_ptr(&l->state, (void *)old, (void *)new_);
}

static uintptr_t owner_of(uintptr_t s)
{
    return s & ~WAITERS;
}

/* A thread's identity: the address of a TLS word, 8-aligned as the
 * WAITERS bit needs (a task's is its handle). */
static __thread uint64_t thread_self;

static uintptr_t self(void)
{
    weft_task *t = weft__current();
    return t ? (uintptr_t)t : (uintptr_t)&thread_self;
}

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
    l->state = NULL;
    weft__qlock_init(&l->qlock);
    weft__wq_init(&l->waiters);
    weft__store_rlx_u32(&l->tag, WEFT__TAG_LOCK);
    return 0;
}

/* Take the lock if it has no owner (WAITERS may be set: barging). */
static bool try_take(struct weft__lock *l, uintptr_t me)
{
    for (;;) {
        uintptr_t s = load(l);
        if (owner_of(s))
            return false;
        if (cas(l, s, s | me))
            return true;
    }
}

/* Under the qlock: take the lock, or mark that a waiter is about to
 * queue (so the holder's release comes to the queue). */
static bool take_or_mark_locked(struct weft__lock *l, uintptr_t me)
{
    for (;;) {
        uintptr_t s = load(l);
        if (!owner_of(s)) {
            if (cas(l, s, s | me))
                return true;
        } else if ((s & WAITERS) || cas(l, s, s | WAITERS)) {
            return false;
        }
    }
}

static __attribute__((noinline)) int acquire_slow(struct weft__lock *l,
                                                  uintptr_t me,
                                                  int64_t deadline_ns,
                                                  unsigned flags)
{
    /* Free but with waiters queued (0|WAITERS): barge without the qlock,
     * as a woken waiter does. */
    if (try_take(l, me))
        return 0;
    struct weft__wq_node n;
    n.item = (void *)me; /* the identity a hand-off writes into the word */
    n.value = COMPETE;
    unsigned at_head = 0;
    int64_t since_ns = 0; /* when this waiter was first passed over */
    for (;;) {
        weft__qlock_acquire(&l->qlock);
        if (take_or_mark_locked(l, me)) {
            weft__qlock_release(&l->qlock);
            return 0;
        }
        int rc = weft__wq_wait(&l->waiters, &n, &l->qlock, deadline_ns,
                               WEFT__WAIT_LOCK, l,
                               flags | at_head | WEFT__WQ_STEALABLE);
        if (rc < 0)
            return rc;
        if (n.value == HANDED || try_take(l, me))
            return 0;
        /* Passed over: first in the queue again, and starving once it has
         * lost for longer than STARVING_NS since it was first woken. (Time
         * spent queued behind other waiters is not starvation.) */
        int64_t now = weft__now_ns();
        if (!at_head)
            since_ns = now;
        at_head = WEFT__WQ_AT_HEAD;
        if (now - since_ns > STARVING_NS)
            n.value = WANT_HANDOFF;
    }
}

static inline int acquire(weft_lock *lock, int64_t deadline_ns)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!l)
        return -EINVAL;
    uintptr_t me = self();
    if (WEFT_LIKELY(cas(l, 0, me)))
        return 0;
    return acquire_slow(l, me, deadline_ns, 0);
}

int weft_lock_acquire(weft_lock *lock)
{
    return acquire(lock, WEFT__NEVER);
}

int weft_lock_acquire_timeout(weft_lock *lock, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns : acquire(lock, deadline_ns);
}

int weft_lock_acquire_nowait(weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!l)
        return -EINVAL;
    return try_take(l, self()) ? 0 : -EBUSY;
}

void weft__lock_acquire_uninterruptible(struct weft__lock *l)
{
    uintptr_t me = self();
    if (!cas(l, 0, me))
        (void)acquire_slow(l, me, WEFT__NEVER, WEFT__WQ_NO_INTERRUPT);
}

/* Under the qlock, with WAITERS set, from the holder: hand the lock
 * to the first waiter that accepts it. A starving waiter gets it directly
 * (its identity goes into the word); otherwise the lock is freed first and
 * the waiter competes. */
static void wake_locked(struct weft__lock *l, struct weft__wq_wakes *wk)
{
    bool held = true; /* the lock is still ours to hand over */
    struct weft__wq_node *n;
    while ((n = weft__wq_pop(&l->waiters))) {
        uintptr_t waiters = weft__wq_is_empty(&l->waiters) ? 0 : WAITERS;
        if (held) {
            /* A store, not a CAS: nobody else changes the word while we
             * hold both the lock and the qlock. Release: publishes the
             * critical section to the next holder's CAS (try_take, the
             * fast path) or, at a hand-off, to the waiter through the
             * grant's wake. */
            bool handoff = n->value == WANT_HANDOFF;
            n->value = handoff ? HANDED : COMPETE;
            uintptr_t next = handoff ? (uintptr_t)n->item : 0;
            weft__store_rel_ptr(&l->state, (void *)(next | waiters));
            held = handoff;
        } else if (!waiters) {
            n->value = COMPETE;
            for (uintptr_t s = load(l); !cas(l, s, s & ~WAITERS); s = load(l))
                ;
        } else {
            n->value = COMPETE;
        }
        if (weft__wq_grant(n, wk))
            return;
        /* n was interrupted first: the next waiter, if any. */
    }
    if (held)
        weft__store_rel_ptr(&l->state, NULL);
}

/* The holder's release when WAITERS is set. */
static __attribute__((noinline)) void release_slow(struct weft__lock *l)
{
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&l->qlock);
    wake_locked(l, &wk);
    weft__qlock_release_wake(&l->qlock, &wk);
}

void weft__lock_release_held(struct weft__lock *l)
{
    /* Fails only when WAITERS is set. */
    if (WEFT_UNLIKELY(!cas(l, self(), 0)))
        release_slow(l);
}

bool weft__lock_held_by_me(const struct weft__lock *l)
{
    return owner_of(load(l)) == self();
}

int weft_lock_release(weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!l)
        return -EINVAL;
    uintptr_t me = self();
    if (WEFT_LIKELY(cas(l, me, 0)))
        return 0;
    /* Only the holder can find its own identity in the word. */
    if (owner_of(load(l)) != me)
        return -EPERM;
    release_slow(l);
    return 0;
}

bool weft_lock_locked(const weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of((weft_lock *)lock);
    return l && owner_of(load(l));
}

int weft_lock_destroy(weft_lock *lock)
{
    struct weft__lock *l = weft__lock_of(lock);
    if (!l)
        return -EINVAL;
    weft__qlock_acquire(&l->qlock);
    bool busy = load(l) != 0;
    if (!busy)
        weft__store_rlx_u32(&l->tag, 0);
    weft__qlock_release(&l->qlock);
    return busy ? -EBUSY : 0;
}
