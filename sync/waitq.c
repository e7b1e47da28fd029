/* The wait queue under every sync primitive.
 *
 * A waiter is a task (it parks) or a plain thread (it blocks on a futex):
 * struct weft__wait (sched/sched.h) hides the difference. Waiters queue in
 * FIFO order under the primitive's qlock; a granter pops the first node,
 * writes into it what it hands over (an item, an index, a status) and
 * grants it, all under the qlock.
 *
 * Why an interrupted waiter never swallows a wake-up. A node's wait has
 * exactly one completer, chosen by a CAS (weft__wait_claim): the
 * granter (result 0), an interrupter (-ECANCELED / -ETIMEDOUT of a scope)
 * or the wait's own deadline. So when a granter and an interrupt race:
 *  - the granter wins: the waiter returns 0 and has what was handed over;
 *    the interrupt is not lost either, it stays pending for the task's
 *    next suspension point (cancellation is sticky);
 *  - the interrupt wins: weft__wq_grant returns false, and the granter,
 *    which has popped the node and still holds the qlock, hands the same
 *    permit, lock or item to the next node, or keeps it in the primitive
 *    (weft__wq_grant_first). The waiter returns the interrupt and has
 *    nothing.
 * There is no third outcome, so every grant is either accepted by exactly
 * one waiter or kept. An interrupted waiter takes the qlock before it
 * returns, to unlink its node if no granter popped it; that also waits out
 * a granter that popped the node and is still writing into it, so the node
 * (on the waiter's stack) is never touched after the waiter returns.
 *
 * A granted node is off the queue before the grant, so a waiter that
 * returns 0 needs no lock on the way out: one qlock round trip per wait.
 * The grant claims the node under the qlock; the wake comes after the
 * qlock is released (a claimed waiter cannot return before it).
 */
#include "sync/sync.h"

#define QLOCK_SPINS 100

void weft__qlock_acquire_slow(weft__qlock *l)
{
    for (int i = 0; i < QLOCK_SPINS; i++) {
        weft__cpu_relax();
        if (weft__load_rlx_u32(l) == 0 && weft__cas_seq_u32(l, 0, 1))
            return;
    }
    /* Mark the lock contended (2) whenever we take it from here on: we
     * cannot know whether other sleepers remain, so the release wakes
     * one to find out. Seq exchange: acquires the lock when it was 0. */
    while (weft__xchg_seq_u32(l, 2) != 0)
        weft__futex_wait(l, 2);
}

static void link_node(struct weft__wq *q, struct weft__wq_node *n, bool at_head)
{
    n->queued = true;
    if (at_head) {
        n->prev = NULL;
        n->next = q->head;
        if (q->head)
            q->head->prev = n;
        else
            q->tail = n;
        q->head = n;
        return;
    }
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
}

static void unlink_node(struct weft__wq *q, struct weft__wq_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->queued = false;
}

size_t weft__wq_count_live(const struct weft__wq *q)
{
    size_t n = 0;
    for (const struct weft__wq_node *x = q->head; x; x = x->next)
        n += weft__wq_is_live(x);
    return n;
}

struct weft__wq_node *weft__wq_pop(struct weft__wq *q)
{
    struct weft__wq_node *n = q->head;
    if (n)
        unlink_node(q, n);
    return n;
}

struct weft__wq_node *weft__wq_grant_first(struct weft__wq *q,
                                           void (*fill)(struct weft__wq_node *,
                                                        void *),
                                           void *arg, struct weft__wq_wakes *wk)
{
    struct weft__wq_node *n;
    while ((n = weft__wq_pop(q))) {
        if (fill)
            fill(n, arg);
        if (weft__wq_grant(n, wk))
            return n;
    }
    return NULL;
}

void weft__wq_grant_all(struct weft__wq *q,
                        void (*fill)(struct weft__wq_node *, void *), void *arg,
                        struct weft__wq_wakes *wk)
{
    while (weft__wq_grant_first(q, fill, arg, wk))
        ;
}

void weft__wq_wake_all(struct weft__wq_node *head)
{
    for (struct weft__wq_node *n = head, *next; n; n = next) {
        next = n->next; /* read first: the wake hands n back */
        weft__wait_wake(&n->wait);
    }
}

/* The hook of a WEFT__WQ_NO_INTERRUPT wait. An interrupter that finds the
 * wait in t->wait calls it instead of completing the wait, so only a
 * grant ends it; the interrupt stays pending for the task's next
 * suspension point (cancellation is sticky, and nothing recorded it as
 * delivered). With a hook, weft__wait_arm publishes the wait, so the dump
 * can say what it waits on, and never returns an interrupt. */
static void ignore_interrupt(struct weft__wait *w, int code)
{
    (void)w;
    (void)code;
}

int weft__wq_enqueue(struct weft__wq *q, struct weft__wq_node *n,
                     enum weft__wait_kind kind, const void *obj, unsigned flags)
{
    weft__wait_init(&n->wait,
                    (flags & WEFT__WQ_NO_INTERRUPT) ? ignore_interrupt : NULL,
                    NULL);
    weft__wait_set_kind(&n->wait, kind, (uint64_t)(uintptr_t)obj);
    n->wait.waiter.stealable = flags & WEFT__WQ_STEALABLE;
    int rc = weft__wait_arm(&n->wait);
    if (rc) { /* interrupted already: never queued */
        weft__wait_abandon(&n->wait);
        return rc;
    }
    link_node(q, n, flags & WEFT__WQ_AT_HEAD);
    return 0;
}

int weft__wq_block(struct weft__wq *q, struct weft__wq_node *n, weft__qlock *l,
                   int64_t deadline_ns)
{
    int rc = weft__wait_block_until(&n->wait, deadline_ns);
    if (rc == 0)
        return 0; /* granted: the granter popped n */
    weft__qlock_acquire(l);
    if (n->queued)
        unlink_node(q, n);
    weft__qlock_release(l);
    return rc == WEFT__WAIT_TIMED_OUT ? -ETIMEDOUT : rc;
}

int weft__sync_destroy(uint32_t *tag, weft__qlock *l, const struct weft__wq *q)
{
    weft__qlock_acquire(l);
    bool busy = !weft__wq_is_empty(q);
    if (!busy)
        weft__store_rlx_u32(tag, 0);
    weft__qlock_release(l);
    return busy ? -EBUSY : 0;
}
