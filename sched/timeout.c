/* Timeout scopes (asyncio.timeout / timeout_at).
 *
 * A scope is a struct weft__scope, pointed to by the caller's weft_timeout
 * and linked into the task's chain of open scopes (t->scope, innermost first;
 * the task alone reads and writes the chain). A finite deadline puts the
 * scope's timer into the runtime's heap; when it fires, on the timer
 * thread, it sets `expired` and interrupts the task with -ETIMEDOUT
 * (cancel.c). From then on every suspension point of the task returns
 * -ETIMEDOUT (weft__scopes_expired walks the chain), until the scope is
 * exited. Exiting removes the timer under the heap lock, after which the
 * timer thread never touches the scope again, so it may be freed.
 *
 * Rescheduling to a new finite deadline moves the scope to a new node,
 * armed before the old timer is removed, so that a failure (-ENOMEM: no
 * node, or the heap cannot grow) leaves the scope as it was.
 *
 * Unlike asyncio, which implements timeouts by cancelling the task and
 * uncancelling it at the scope's exit, expiry is a state of its own here:
 * it cannot be confused with, or swallow, a real cancellation.
 */
#include <errno.h>
#include <math.h>

#include "sched/alloc.h"
#include "sched/internal.h"

#define SCOPE_OPEN   0x5c09e0e0u
#define SCOPE_CLOSED 0x5c09e0e1u

/* The caller's weft_timeout: the scope itself is on the heap, so that a
 * task that returns with scopes open (the weft_timeout gone with its
 * frame) leaves nothing dangling in the timer heap or in its chain. */
struct scope_handle {
    struct weft__scope *node; /* while open */
    int64_t deadline_ns;      /* once closed */
    uint32_t expired;         /* once closed */
    uint32_t magic;
};

_Static_assert(sizeof(struct scope_handle) <= sizeof(weft_timeout),
               "weft_timeout must hold a struct scope_handle");

static struct scope_handle *handle_of(const weft_timeout *s)
{
    return (struct scope_handle *)s;
}

static void scope_fire(struct weft__timer *tm)
{
    struct weft__scope *s = (struct weft__scope *)tm;
    /* Release: pairs with the acquire loads of `expired` (here and in
     * weft__scopes_expired). The flag carries no data; the interrupt's
     * hand-off to the task goes through t->lock (cancel.c). */
    weft__store_rel_u32(&s->expired, 1);
    weft__task_interrupt(s->task, -ETIMEDOUT);
}

/* A new scope of t that expires at deadline_ns, not linked yet: its timer
 * is in the heap, or it has expired already (a deadline passed), or it has
 * no timer (WEFT__NEVER). NULL when out of memory. */
static struct weft__scope *scope_new(weft_task *t, int64_t deadline_ns)
{
    struct weft__scope *s = weft__malloc(sizeof(*s));
    if (!s)
        return NULL;
    s->task = t;
    s->expired = 0;
    s->timer.fire = scope_fire;
    s->timer.deadline_ns = deadline_ns;
    s->timer.index = WEFT__TIMER_IDLE;
    if (deadline_ns == WEFT__NEVER)
        return s;
    if (deadline_ns <= weft__now_ns()) {
        /* Relaxed: nothing else can see s yet, and the task itself reads
         * the flag at its next suspension point. */
        weft__store_rlx_u32(&s->expired, 1);
        return s;
    }
    if (weft__timer_add(t->rt, &s->timer) < 0) {
        weft__free(s);
        return NULL;
    }
    return s;
}

/* Remove s's timer, then free s; returns whether it expired. */
static bool scope_free(struct weft__scope *s)
{
    weft__timer_del(s->task->rt, &s->timer); /* the timer thread is done */
    /* Acquire: pairs with scope_fire's release store (the heap lock that
     * weft__timer_del took orders them already). */
    bool expired = weft__load_acq_u32(&s->expired);
    weft__free(s);
    return expired;
}

static int enter_ns(weft_timeout *scope, int64_t deadline_ns)
{
    if (!scope)
        return -EINVAL;
    weft_task *t = weft_current();
    if (!t)
        return -EPERM;
    struct weft__scope *s = scope_new(t, deadline_ns);
    if (!s)
        return -ENOMEM;
    s->parent = t->scope;
    t->scope = s;
    *handle_of(scope) = (struct scope_handle){.node = s, .magic = SCOPE_OPEN};
    return 0;
}

int weft_timeout_enter_at(weft_timeout *scope, double deadline)
{
    if (isnan(deadline))
        return -EINVAL;
    return enter_ns(scope, weft__deadline_ns(deadline));
}

int weft_timeout_enter(weft_timeout *scope, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns : enter_ns(scope, deadline_ns);
}

/* The open scope of h, if it belongs to the calling task; else NULL. */
static struct weft__scope *callers(const weft_timeout *scope)
{
    const struct scope_handle *h = handle_of(scope);
    if (!h || h->magic != SCOPE_OPEN || h->node->task != weft_current())
        return NULL;
    return h->node;
}

/* Whether s has expired. Acquire: pairs with scope_fire's release
 * store. */
static bool scope_expired(const struct weft__scope *s)
{
    return weft__load_acq_u32((uint32_t *)&s->expired);
}

/* Move h's scope s to a deadline that needs a timer. A timer cannot be
 * moved in place without a risk: once deleted, adding it back may fail
 * (-ENOMEM) and leave the scope with no timer at all. So a new node takes
 * s's place, armed before s is touched: if that fails, s is as it was. */
static int scope_move(struct scope_handle *h, int64_t deadline_ns)
{
    struct weft__scope *s = h->node;
    struct weft__scope *n = scope_new(s->task, deadline_ns);
    if (!n)
        return -ENOMEM;
    weft__timer_del(s->task->rt, &s->timer);
    if (scope_expired(s)) { /* fired just before the delete */
        (void)scope_free(n);
        return -EINVAL;
    }
    /* The chain is the task's own: swap n in where s is. */
    struct weft__scope **link = &s->task->scope;
    while (*link != s)
        link = &(*link)->parent;
    n->parent = s->parent;
    *link = n;
    h->node = n;
    weft__free(s); /* its timer is gone */
    return 0;
}

int weft_timeout_reschedule(weft_timeout *scope, double deadline)
{
    struct weft__scope *s = callers(scope);
    if (isnan(deadline) || !s || scope_expired(s))
        return -EINVAL;
    int64_t deadline_ns = weft__deadline_ns(deadline);
    if (deadline_ns != WEFT__NEVER && deadline_ns > weft__now_ns())
        return scope_move(handle_of(scope), deadline_ns);
    /* Never, or passed already: no timer is needed, so s changes in place
     * (it cannot fail). */
    weft__timer_del(s->task->rt, &s->timer);
    if (scope_expired(s)) /* fired just before the delete */
        return -EINVAL;
    s->timer.deadline_ns = deadline_ns;
    if (deadline_ns != WEFT__NEVER)
        /* Relaxed: as in scope_new, the task reads it itself. */
        weft__store_rlx_u32(&s->expired, 1);
    return 0;
}

double weft_timeout_when(const weft_timeout *scope)
{
    const struct scope_handle *h = handle_of(scope);
    if (!h || (h->magic != SCOPE_OPEN && h->magic != SCOPE_CLOSED))
        return WEFT_FOREVER;
    int64_t d =
        h->magic == SCOPE_OPEN ? h->node->timer.deadline_ns : h->deadline_ns;
    return d == WEFT__NEVER ? WEFT_FOREVER : (double)d / 1e9;
}

bool weft_timeout_expired(const weft_timeout *scope)
{
    const struct scope_handle *h = handle_of(scope);
    if (!h)
        return false;
    if (h->magic == SCOPE_CLOSED)
        return h->expired;
    return h->magic == SCOPE_OPEN && scope_expired(h->node);
}

/* Unlink and free t's innermost scope; returns whether it expired. */
static bool scope_close(weft_task *t)
{
    struct weft__scope *s = t->scope;
    t->scope = s->parent;
    return scope_free(s);
}

int weft_timeout_exit(weft_timeout *scope)
{
    struct weft__scope *s = callers(scope);
    if (!s || s->task->scope != s)
        return -EINVAL;
    struct scope_handle *h = handle_of(scope);
    h->deadline_ns = s->timer.deadline_ns;
    h->expired = scope_close(s->task);
    h->node = NULL;
    h->magic = SCOPE_CLOSED;
    return h->expired ? -ETIMEDOUT : 0;
}

void weft__scopes_close_all(weft_task *t)
{
    while (t->scope)
        (void)scope_close(t);
}
