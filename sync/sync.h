/* The sync layer's private header: the wait queue every primitive is built
 * on (waitq.c), and the lock that guards a primitive's state.
 *
 * A primitive (lock.c, semaphore.c, event.c, condition.c, queue.c,
 * barrier.c) keeps its state and one or more wait queues under one
 * weft__qlock. A party that must wait puts a weft__wq_node on its own
 * stack into a queue and blocks; a party that satisfies it takes the node
 * off the queue, writes what it hands over into the node, and grants it.
 * waitq.c explains why nothing is lost when a waiter is interrupted at the
 * same moment.
 */
#ifndef WEFT_SYNC_SYNC_H
#define WEFT_SYNC_SYNC_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "sched/alloc.h"
#include "sched/atomic.h"
#include "sched/sched.h"

/* --------------------------------------------------------------------------
 * The state lock. Critical sections are a few pointer writes, but plain
 * threads share them, and a thread may be preempted inside one: a
 * spinlock then burns the other threads' time slices (100 threads on a
 * weft_lock spent 80 % of their time in sched_yield with one). So it is a
 * futex lock (Drepper's "Futexes Are Tricky", mutex 3): 0 free, 1 held,
 * 2 held and someone may sleep on it. Acquire is one CAS, release one
 * exchange; a contender spins briefly, then sleeps on the word. Plain
 * atomics (sched/atomic.h), so TSan sees the lock's happens-before.
 */
typedef uint32_t weft__qlock;

void weft__qlock_acquire_slow(weft__qlock *l);

static inline void weft__qlock_init(weft__qlock *l)
{
    *l = 0;
}

static inline void weft__qlock_acquire(weft__qlock *l)
{
    /* Seq CAS (acquire is what matters): the critical section sees what
     * the previous holder did before its release exchange. */
    if (WEFT_UNLIKELY(!weft__cas_seq_u32(l, 0, 1)))
        weft__qlock_acquire_slow(l);
}

static inline void weft__qlock_release(weft__qlock *l)
{
    /* Seq exchange (release is what matters): publishes the critical
     * section; 2 means a contender may be asleep. */
    if (WEFT_UNLIKELY(weft__xchg_seq_u32(l, 0) == 2))
        weft__futex_wake(l, 1);
}

/* --------------------------------------------------------------------------
 * Wait queues. Every field of a queue and of a queued node is under the
 * primitive's qlock, except node->wait, which follows sched.h's protocol.
 */
struct weft__wq_node {
    struct weft__wait wait;
    struct weft__wq_node *next, *prev; /* under the qlock, while queued */
    bool queued;                       /* under the qlock */
    /* Written by the granter before it grants, read by the waiter after:
     * what is handed over (a queue item, a barrier index, a status). A
     * putter's item is written by the putter before it queues. */
    void *item;
    long value;
};

struct weft__wq {
    struct weft__wq_node *head, *tail; /* under the qlock */
};

static inline void weft__wq_init(struct weft__wq *q)
{
    q->head = q->tail = NULL;
}

static inline bool weft__wq_is_empty(const struct weft__wq *q)
{
    return q->head == NULL;
}

/* The nodes of q whose wait is still open: not claimed by an interrupter
 * (or the deadline) that beat the granters, whose waiter has yet to take
 * its node off. Caller holds the qlock. */
size_t weft__wq_count_live(const struct weft__wq *q);

/* Take the first node off q, or NULL. Caller holds the qlock. */
struct weft__wq_node *weft__wq_pop(struct weft__wq *q);

/* Nodes granted under a qlock, to be woken once it is released: a waiter
 * woken inside the critical section (a futex syscall for a thread) would
 * make every contender wait for the syscall. */
struct weft__wq_wakes {
    struct weft__wq_node *head;
};
#define WEFT__WQ_WAKES_INIT                                                    \
    {                                                                          \
        NULL                                                                   \
    }

/* Grant a node taken off its queue with weft__wq_pop: its waiter returns
 * 0 from weft__wq_wait once woken (weft__qlock_release_wake). False if the
 * waiter was interrupted first: it returns its interrupt, and whatever the
 * granter meant to hand over must go to the next waiter or stay. After a
 * true return the node belongs to its waiter: only the wake touches it.
 * Caller holds the qlock. */
static inline bool weft__wq_grant(struct weft__wq_node *n,
                                  struct weft__wq_wakes *wk)
{
    if (!weft__wait_claim(&n->wait, 0))
        return false;
    n->next = wk->head; /* n is off its queue: the link is free */
    wk->head = n;
    return true;
}

/* Pop and grant until one node accepts; the accepted node, or NULL. The
 * granter writes what it hands over into each node it tries through
 * fill(n, arg) (may be NULL), before the grant. Caller holds the qlock. */
struct weft__wq_node *
weft__wq_grant_first(struct weft__wq *q,
                     void (*fill)(struct weft__wq_node *, void *), void *arg,
                     struct weft__wq_wakes *wk);

/* Grant every node of q. */
void weft__wq_grant_all(struct weft__wq *q,
                        void (*fill)(struct weft__wq_node *, void *), void *arg,
                        struct weft__wq_wakes *wk);

void weft__wq_wake_all(struct weft__wq_node *head);

/* Release l, then wake the nodes granted under it. */
static inline void weft__qlock_release_wake(weft__qlock *l,
                                            struct weft__wq_wakes *wk)
{
    weft__qlock_release(l);
    if (wk->head)
        weft__wq_wake_all(wk->head);
}

/* weft__wq_wait's flags. */
#define WEFT__WQ_AT_HEAD      1u /* a waiter passed over: first again */
#define WEFT__WQ_NO_INTERRUPT 2u /* cancellation and scopes do not end it */
#define WEFT__WQ_STEALABLE    4u /* a woken task may run on any worker */

/* A wait in two steps, for a caller with something to do between queuing
 * and blocking (the condition releases the user's lock there).
 *
 * weft__wq_enqueue: caller holds the qlock and has found that it must
 * wait. Queues n (at the tail, or at the head with WEFT__WQ_AT_HEAD) and
 * returns 0, or returns the task's pending interrupt with nothing queued.
 * The qlock stays held. `kind` and `obj` say what n waits on, for the
 * task dump (sched.h: weft__wait_set_kind): the primitive's
 * WEFT__WAIT_LOCK ... WEFT__WAIT_BARRIER and its address. They are two
 * stores into n on the way to blocking, nothing on an uncontended path.
 * A WEFT__WQ_NO_INTERRUPT wait is published all the same, with a hook
 * that ignores interrupts, so the dump shows it too (the price: arm's and
 * disarm's round trips on the task's lock, on that rare blocking path).
 *
 * weft__wq_block: the qlock l is not held. Waits until n is granted or the
 * wait is interrupted. Returns 0 when granted (n->item and n->value hold
 * what the granter handed over), or, with n off the queue: -ECANCELED,
 * -ETIMEDOUT (a scope, or deadline_ns passed), -ENOMEM (a task's deadline
 * needed a timer). */
int weft__wq_enqueue(struct weft__wq *q, struct weft__wq_node *n,
                     enum weft__wait_kind kind, const void *obj,
                     unsigned flags);
int weft__wq_block(struct weft__wq *q, struct weft__wq_node *n, weft__qlock *l,
                   int64_t deadline_ns);

/* Both, releasing the qlock in between: the usual wait. Caller holds l;
 * it is not held on return. */
static inline int weft__wq_wait(struct weft__wq *q, struct weft__wq_node *n,
                                weft__qlock *l, int64_t deadline_ns,
                                enum weft__wait_kind kind, const void *obj,
                                unsigned flags)
{
    int rc = weft__wq_enqueue(q, n, kind, obj, flags);
    weft__qlock_release(l);
    return rc ? rc : weft__wq_block(q, n, l, deadline_ns);
}

/* Whether n's wait is still open: not claimed by an interrupter or the
 * deadline that beat the granters. Relaxed: a node claimed right after
 * this read is an interrupt racing the grant, which the grant's own CAS
 * decides. Caller holds the qlock. */
static inline bool weft__wq_is_live(const struct weft__wq_node *n)
{
    return weft__load_rlx_u32((uint32_t *)&n->wait.claimed) == 0;
}

/* destroy for a primitive that is busy exactly while q has waiters: under
 * l, clear *tag unless it is. 0, or -EBUSY (the primitive stays usable). */
int weft__sync_destroy(uint32_t *tag, weft__qlock *l, const struct weft__wq *q);

/* Validity tags: a primitive's tag is written by init and cleared by
 * destroy; calls check it, so use before init or after destroy returns
 * -EINVAL while the storage is not reused. Relaxed: a tag changes only
 * while nobody else may use the object. */
#define WEFT__TAG_LOCK    0x6c6f636bu /* "lock" */
#define WEFT__TAG_SEM     0x73656d61u
#define WEFT__TAG_EVENT   0x65766e74u
#define WEFT__TAG_COND    0x636f6e64u
#define WEFT__TAG_QUEUE   0x71756575u
#define WEFT__TAG_BARRIER 0x62617272u

static inline bool weft__tag_ok(const uint32_t *tag, uint32_t want)
{
    return weft__load_rlx_u32((uint32_t *)tag) == want;
}

/* The lock internals a condition variable needs (lock.c). */
struct weft__lock;
struct weft__lock *weft__lock_of(weft_lock *lock);
bool weft__lock_held_by_me(const struct weft__lock *l);
/* Release, for a holder known to hold it. */
void weft__lock_release_held(struct weft__lock *l);
/* Take the lock, ignoring cancellation and scopes (Condition.wait's
 * re-acquire). */
void weft__lock_acquire_uninterruptible(struct weft__lock *l);

#endif /* WEFT_SYNC_SYNC_H */
