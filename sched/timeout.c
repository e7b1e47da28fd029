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
 * timer thread never touches the scope again, so it may leave the stack.
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
    /* Release: pairs with the acquire in weft__scopes_expired. */
    weft__store_rel_u32(&s->expired, 1);
    weft__task_interrupt(s->task, -ETIMEDOUT);
}

/* Arm s for deadline_ns; a deadline already passed expires it now. */
static int scope_arm(struct weft__scope *s, int64_t deadline_ns)
{
    s->timer.deadline_ns = deadline_ns;
    s->timer.index = UINT32_MAX;
    if (deadline_ns == WEFT__NEVER)
        return 0;
    if (deadline_ns <= weft__now_ns()) {
        /* The task itself sets it: its next suspension point sees it. */
        weft__store_rel_u32(&s->expired, 1);
        return 0;
    }
    return weft__timer_add(s->task->rt, &s->timer);
}

static int enter_ns(weft_timeout *scope, int64_t deadline_ns)
{
    if (!scope)
        return -EINVAL;
    weft_task *t = weft_current();
    if (!t)
        return -EPERM;
    struct weft__scope *s = weft__malloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->task = t;
    s->expired = 0;
    s->timer.fire = scope_fire;
    int err = scope_arm(s, deadline_ns);
    if (err < 0) {
        weft__free(s);
        return err;
    }
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
    if (isnan(seconds) || seconds < 0)
        return -EINVAL;
    return enter_ns(scope, weft__after_ns(seconds));
}

/* The open scope of h, if it belongs to the calling task; else NULL. */
static struct weft__scope *callers(const weft_timeout *scope)
{
    const struct scope_handle *h = handle_of(scope);
    if (!h || h->magic != SCOPE_OPEN || h->node->task != weft_current())
        return NULL;
    return h->node;
}

int weft_timeout_reschedule(weft_timeout *scope, double deadline)
{
    struct weft__scope *s = callers(scope);
    if (isnan(deadline) || !s || weft__load_acq_u32(&s->expired))
        return -EINVAL;
    weft__timer_del(s->task->rt, &s->timer);
    /* The timer may have fired just before the delete. */
    if (weft__load_acq_u32(&s->expired))
        return -EINVAL;
    return scope_arm(s, weft__deadline_ns(deadline));
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
    return h->magic == SCOPE_OPEN && weft__load_acq_u32(&h->node->expired);
}

/* Unlink and free t's innermost scope; returns whether it expired. */
static bool scope_close(weft_task *t)
{
    struct weft__scope *s = t->scope;
    weft__timer_del(t->rt, &s->timer); /* the timer thread is done with s */
    t->scope = s->parent;
    bool expired = weft__load_acq_u32(&s->expired);
    weft__free(s);
    return expired;
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
