/* Cancellation, and the interruptible waits every suspension point uses.
 *
 * A task's pending interrupt is its cancellation count (t->cancel, any
 * thread adds to it) or an expired timeout scope (timeout.c). The task
 * reads both itself at each suspension point; what needs care is a task
 * that is already parked when the interrupt arrives. Such a task has
 * published its wait in t->wait under t->lock; an interrupter first makes
 * the interrupt visible (the count, or the scope's flag), then takes
 * t->lock and interrupts t->wait. The task publishes t->wait and then reads
 * its interrupt state, both under t->lock. Either the interrupter's
 * critical section comes first (the task then sees the count) or the
 * task's does (the interrupter then sees the wait): no interrupt is lost.
 *
 * Interrupting a wait means completing it with the code (the waiter wakes
 * up and returns it), or calling its hook: a join forwards the
 * cancellation to the task it joins and keeps waiting. Hooks run under
 * t->lock and may cancel other tasks, so locks nest from a waiting task to
 * the tasks it waits for; a join graph has no cycles (a cycle would be a
 * deadlock of its own), so neither do these locks. A hook never takes a
 * registry shard lock, which weft__runtime_cancel_all holds around
 * weft_cancel.
 *
 * Tasks run inline on their joiner's stack (worker.c) take part too, so
 * that each interrupt of the joiner reaches the child as one request, as
 * weft_join's hook would forward it had the child run on its own stack.
 * Every interrupt bumps the task's EPOCH; the child records in SEEN the
 * joiner's EPOCH up to which it has been forwarded (forward_to). While the
 * child is parked, the joiner's t->wait holds it, tagged with the low bit,
 * and the joiner's interrupter forwards at once; while the child runs, it
 * catches up at its next suspension point (sync_parents). Publishing the
 * child on every inline run instead would put two atomics on the
 * fork-join path.
 */
#include <errno.h>
#include <stddef.h>

#include "sched/internal.h"

#define INLINE_TAG ((uintptr_t)1)

/* --------------------------------------------------------------------------
 * The interrupt state of the calling task
 */

static uint32_t epoch_of(uint32_t c)
{
    return (c >> WEFT__CANCEL_EPOCH_SHIFT) & 0xffu;
}

/* c after one more interrupt: EPOCH + 1, mod 256 (no carry into SEEN). */
static uint32_t with_interrupt(uint32_t c)
{
    uint32_t e = (epoch_of(c) + 1) & 0xffu;
    return (c & ~(0xffu << WEFT__CANCEL_EPOCH_SHIFT)) |
           (e << WEFT__CANCEL_EPOCH_SHIFT);
}

/* c after one more cancellation request (the count saturates). */
static uint32_t with_request(uint32_t c)
{
    if ((c & WEFT__CANCEL_COUNT) != WEFT__CANCEL_COUNT)
        c++;
    return with_interrupt(c);
}

/* Replace t->cancel by f(t->cancel). Seq CAS: cancellers, interrupters
 * and the task itself change the word concurrently. */
static void update(weft_task *t, uint32_t (*f)(uint32_t))
{
    for (;;) {
        uint32_t c = weft__load_rlx_u32(&t->cancel);
        if (weft__cas_seq_u32(&t->cancel, c, f(c)))
            return;
    }
}

/* c with SEEN set to e. */
static uint32_t with_seen(uint32_t c, uint32_t e)
{
    return (c & ~(0xffu << WEFT__CANCEL_SEEN_SHIFT)) |
           (e << WEFT__CANCEL_SEEN_SHIFT);
}

/* Forward to t, as one request, the interrupts of its inline parent up to
 * the parent's EPOCH e, unless t has them already (SEEN == e). Returns
 * whether it did. Each interrupt of the parent is forwarded once, whether
 * the parent's interrupter does it (t parked: weft__task_interrupt) or t
 * itself at a suspension point (sync_parents), as weft_join's hook would
 * forward each one had t run on its own stack. */
static bool forward_to(weft_task *t, uint32_t e)
{
    for (;;) {
        uint32_t c = weft__load_rlx_u32(&t->cancel);
        if ((c >> WEFT__CANCEL_SEEN_SHIFT) == e)
            return false;
        if (weft__cas_seq_u32(&t->cancel, c, with_seen(with_request(c), e)))
            return true;
    }
}

/* Bring t up to date with the interrupts of its inline parents, the
 * outermost first. The parents are suspended in run_inline below t on the
 * same stack, so the chain is stable while t runs. */
static void sync_parents(weft_task *t)
{
    weft_task *p = t->parent;
    if (!p)
        return;
    sync_parents(p);
    forward_to(t, epoch_of(weft__load_rlx_u32(&p->cancel)));
}

void weft__inline_adopt_slow(weft_task *t, const weft_task *parent)
{
    uint32_t e = epoch_of(weft__load_rlx_u32((uint32_t *)&parent->cancel));
    for (;;) {
        uint32_t c = weft__load_rlx_u32(&t->cancel);
        /* Seq CAS: cancellers add to the same word concurrently. */
        if (weft__cas_seq_u32(&t->cancel, c, with_seen(c, e)))
            return;
    }
}

/* t is the calling task. */
static int pending(weft_task *t)
{
    if (WEFT_UNLIKELY(t->parent))
        sync_parents(t);
    return weft__own_interrupt(t);
}

/* Record that a suspension point reported the cancellation: from now on,
 * returning ends the task cancelled (unless it uncancels). */
static int delivered(weft_task *t, int code)
{
    /* An RMW because cancellers change the same word; it orders nothing:
     * only t itself reads DELIVERED (when it returns). */
    if (code == -ECANCELED &&
        !(weft__load_rlx_u32(&t->cancel) & WEFT__CANCEL_DELIVERED))
        weft__or_seq_u32(&t->cancel, WEFT__CANCEL_DELIVERED);
    return code;
}

int weft__task_interrupt_slow(weft_task *t)
{
    int code = pending(t);
    return code ? delivered(t, code) : 0;
}

int weft__check_interrupt(void)
{
    weft_task *t = weft__current();
    return t ? weft__task_interrupt_slow(t) : 0;
}

int weft__wait_interrupted(int result)
{
    int now = weft__check_interrupt();
    return now ? now : result;
}

bool weft__scopes_expired(const weft_task *t)
{
    for (const struct weft__scope *s = t->scope; s; s = s->parent)
        /* Acquire: pairs with the timer thread's release store. */
        if (weft__load_acq_u32((uint32_t *)&s->expired))
            return true;
    return false;
}

/* --------------------------------------------------------------------------
 * Interruptible waits (sched/sched.h)
 */

void weft__wait_init(struct weft__wait *w,
                     void (*interrupt)(struct weft__wait *, int), void *arg)
{
    weft__waiter_prepare(&w->waiter);
    w->claimed = 0;
    w->result = 0;
    w->interrupt = interrupt;
    w->arg = arg;
    w->kind = WEFT__WAIT_OTHER;
    w->detail = 0;
}

/* Make every inline parent of t point at the child on its way to t, so
 * that cancelling a parent reaches t's wait; or undo that (child NULL). */
static void publish_to_parents(weft_task *t, bool on)
{
    for (weft_task *c = t, *p = t->parent; p; c = p, p = p->parent) {
        weft__spin_lock(&p->lock);
        p->wait = on ? (void *)((uintptr_t)c | INLINE_TAG) : NULL;
        weft__spin_unlock(&p->lock);
    }
}

int weft__wait_arm(struct weft__wait *w)
{
    weft_task *t = w->waiter.task;
    if (!t)
        return 0;
    if (WEFT_UNLIKELY(t->parent))
        publish_to_parents(t, true);
    weft__spin_lock(&t->lock);
    t->wait = w;
    int code = pending(t);
    if (code && w->interrupt) {
        w->interrupt(w, code);
        code = 0; /* the hook took it; the wait stays armed */
    } else if (code) {
        t->wait = NULL;
    }
    weft__spin_unlock(&t->lock);
    if (code) {
        if (t->parent)
            publish_to_parents(t, false);
        return delivered(t, code);
    }
    return 0;
}

static void deadline_fire(struct weft__timer *tm)
{
    struct weft__wait *w =
        (struct weft__wait *)((char *)tm - offsetof(struct weft__wait, timer));
    weft__wait_complete(w, WEFT__WAIT_TIMED_OUT);
}

/* A plain thread's timed wait: the futex timeout plays the timer. */
static int thread_block_until(struct weft__wait *w, int64_t deadline_ns)
{
    if (!weft__waiter_wait_until(&w->waiter, deadline_ns)) {
        /* Timed out. A source may have completed w meanwhile; if so its
         * result stands and its wake is on the way. */
        weft__wait_complete(w, WEFT__WAIT_TIMED_OUT);
        weft__waiter_wait(&w->waiter);
    }
    return w->result;
}

int weft__wait_block_timed(struct weft__wait *w, int64_t deadline_ns)
{
    weft_runtime *rt = w->waiter.task ? w->waiter.task->rt : NULL;
    if (!rt)
        return thread_block_until(w, deadline_ns);
    w->timer.deadline_ns = deadline_ns;
    w->timer.fire = deadline_fire;
    bool timed = weft__timer_add(rt, &w->timer) == 0;
    if (!timed) /* the wait cannot be bounded: end it now, once */
        weft__wait_complete(w, -ENOMEM);
    weft__waiter_wait(&w->waiter);
    weft__wait_disarm(w);
    /* If the timer did not complete w, it may still be in the heap. */
    if (timed && w->result != WEFT__WAIT_TIMED_OUT)
        weft__timer_del(rt, &w->timer);
    return weft__wait_outcome(w->result);
}

void weft__wait_disarm(struct weft__wait *w)
{
    weft_task *t = w->waiter.task;
    /* t->wait is written only by t itself (or by its inline child while t
     * is suspended below it), under t->lock, so t may read it without the
     * lock. NULL: w was never armed, or arm took it back, and its inline
     * parents were cleared with it: no interrupter can hold w. */
    if (!t || !t->wait)
        return;
    /* After this no interrupter touches w: they reach it only through
     * t->wait, under t->lock. */
    weft__spin_lock(&t->lock);
    t->wait = NULL;
    weft__spin_unlock(&t->lock);
    if (WEFT_UNLIKELY(t->parent))
        publish_to_parents(t, false);
}

void weft__wait_abandon(struct weft__wait *w)
{
    weft__wait_disarm(w);
    weft__waiter_abandon(&w->waiter);
}

bool weft__wait_complete(struct weft__wait *w, int result)
{
    if (!weft__wait_claim(w, result))
        return false;
    weft__waiter_wake(&w->waiter);
    return true;
}

/* --------------------------------------------------------------------------
 * Interrupting a task
 */

/* Interrupt t's published wait, under t->lock. */
static void interrupt_wait(weft_task *t, int code)
{
    struct weft__wait *claimed = NULL;
    weft__spin_lock(&t->lock);
    void *x = t->wait;
    if ((uintptr_t)x & INLINE_TAG) {
        weft_task *child = (weft_task *)((uintptr_t)x & ~INLINE_TAG);
        if (forward_to(child, epoch_of(weft__load_rlx_u32(&t->cancel))))
            interrupt_wait(child, -ECANCELED);
    } else if (x) {
        struct weft__wait *w = x;
        if (w->interrupt)
            w->interrupt(w, code);
        else if (weft__wait_claim(w, code))
            claimed = w;
    }
    weft__spin_unlock(&t->lock);
    /* The wake leaves the lock, which t's disarm takes: a claimed wait's
     * waiter cannot return before it is woken. */
    if (claimed)
        weft__wait_wake(claimed);
}

void weft__task_interrupt(weft_task *t, int code)
{
    /* Counted before taking t->lock: see the top of this file. */
    update(t, code == -ECANCELED ? with_request : with_interrupt);
    interrupt_wait(t, code);
}

int weft_cancel(weft_task *t)
{
    if (!t)
        return -EINVAL;
    /* Acquire: a finished task is reported as such, with its result. */
    if (weft__load_acq_ptr(&t->joiner) == WEFT__JOIN_DONE)
        return -ESRCH;
    weft__task_interrupt(t, -ECANCELED);
    return 0;
}

int weft_uncancel(void)
{
    weft_task *t = weft_current();
    if (!t)
        return -EPERM;
    for (;;) {
        uint32_t c = weft__load_rlx_u32(&t->cancel);
        if (!(c & WEFT__CANCEL_COUNT))
            return 0;
        uint32_t n = c - 1;
        if (!(n & WEFT__CANCEL_COUNT))
            n &= ~WEFT__CANCEL_DELIVERED;
        /* Seq CAS: cancellers add to the same word concurrently. */
        if (weft__cas_seq_u32(&t->cancel, c, n))
            return (int)(n & WEFT__CANCEL_COUNT);
    }
}

int weft_cancelling(const weft_task *t)
{
    if (!t)
        return 0;
    return (int)(weft__load_rlx_u32((uint32_t *)&t->cancel) &
                 WEFT__CANCEL_COUNT);
}

bool weft_task_cancelled(const weft_task *t)
{
    /* ENDED is set before the exchange that publishes DONE. */
    return weft_task_done(t) &&
           (weft__load_rlx_u32((uint32_t *)&t->cancel) & WEFT__CANCEL_ENDED);
}

/* --------------------------------------------------------------------------
 * The ends of a task's life
 */

void weft__task_returned_slow(weft_task *t)
{
    if (t->scope)
        weft__scopes_close_all(t);
    uint32_t c = weft__load_rlx_u32(&t->cancel);
    /* ENDED is published by the exchange that makes the task DONE (its
     * finish comes after this), which joiners read with acquire. */
    if (WEFT_UNLIKELY((c & WEFT__CANCEL_COUNT) && (c & WEFT__CANCEL_DELIVERED)))
        weft__or_seq_u32(&t->cancel, WEFT__CANCEL_ENDED);
}

bool weft__task_cancelled_before_start_slow(weft_task *t)
{
    if (!(weft__load_rlx_u32(&t->cancel) & WEFT__CANCEL_COUNT))
        return false;
    /* Published by the DONE exchange, as in weft__task_returned_slow. */
    weft__or_seq_u32(&t->cancel, WEFT__CANCEL_ENDED);
    t->arg = NULL;
    return true;
}
