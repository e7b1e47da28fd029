/* The combinators: gather, wait_for, shield, wait and as_completed.
 *
 * gather and wait_for are joins (task.c): gather first claims every
 * handle (t->joiner: NULL -> WEFT__JOIN_CLAIMED), so nobody else can join
 * or free them while it joins them one by one; its interrupt hook cancels
 * every task it has not reaped yet. wait_for is a join inside a timeout
 * scope, which is asyncio 3.12's definition of it.
 *
 * shield, wait and as_completed may return while tasks are still running,
 * so they cannot leave a listener on the caller's stack. They use a
 * `struct multi` on the heap, shared with the finishing tasks and counted:
 * one reference for the caller and one per listener still registered in a
 * task's joiner field. A finishing task records its index in `order`
 * under the multi's lock, completes the caller's wait when enough tasks
 * are done, and drops its reference; the caller takes its listeners back
 * (a CAS that fails only for a task that has finished and is calling, or
 * has called, its listener) and drops its own. The last one frees it.
 */
#include <errno.h>
#include <stdlib.h>

#include "sched/alloc.h"
#include "sched/internal.h"

/* --------------------------------------------------------------------------
 * Checking the tasks given
 */

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

/* -EINVAL for a NULL array (n > 0), a NULL entry, the calling task, the
 * same task twice or too many tasks (a multi counts 1 + n references in 32
 * bits); -ENOMEM. */
static int check_tasks(weft_task *const *tasks, size_t n)
{
    if (n >= UINT32_MAX || (n && !tasks))
        return -EINVAL;
    weft_task *self = weft_current();
    for (size_t i = 0; i < n; i++)
        if (!tasks[i] || tasks[i] == self)
            return -EINVAL;
    if (n <= 32) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (tasks[i] == tasks[j])
                    return -EINVAL;
        return 0;
    }
    weft_task **sorted = weft__malloc(n * sizeof(*sorted));
    if (!sorted)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        sorted[i] = tasks[i];
    qsort(sorted, n, sizeof(*sorted), cmp_ptr);
    int err = 0;
    for (size_t i = 1; i < n && !err; i++)
        if (sorted[i] == sorted[i - 1])
            err = -EINVAL;
    weft__free(sorted);
    return err;
}

/* --------------------------------------------------------------------------
 * gather and wait_for
 */

struct gather {
    weft_task **tasks;
    size_t next, n; /* tasks[next..n) are not reaped yet */
};

/* Under the caller's lock: cancel everything not reaped yet. */
static void gather_forward(struct weft__wait *w, int code)
{
    (void)code;
    struct gather *g = w->arg;
    for (size_t i = g->next; i < g->n; i++)
        (void)weft_cancel(g->tasks[i]);
}

/* Take tasks[0..n) as the one joiner of each. A task that finishes
 * meanwhile exchanges CLAIMED for DONE, which the joins then see. */
static int claim_all(weft_task **tasks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* Seq CAS: as a joiner's registration (task.c); only the value
         * it saw tells DONE from another waiter. */
        void *seen;
        if (weft__cas_seq_ptr_val(&tasks[i]->joiner, NULL, WEFT__JOIN_CLAIMED,
                                  &seen) ||
            seen == WEFT__JOIN_DONE)
            continue;
        /* Seq CAS: gives the handle back; it fails only for a task that
         * has finished meanwhile (DONE stays, for its next joiner). */
        while (i-- > 0)
            weft__cas_seq_ptr(&tasks[i]->joiner, WEFT__JOIN_CLAIMED, NULL);
        return -EINVAL;
    }
    return 0;
}

int weft_gather(weft_task **tasks, size_t n, void **results, int *errs)
{
    int err = check_tasks(tasks, n);
    if (err < 0 || (err = claim_all(tasks, n)) < 0)
        return err;
    struct gather g = {.tasks = tasks, .n = n};
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        g.next = i; /* read by the hook under our lock, which arm takes */
        void *r = NULL;
        /* Cannot fail with -EINVAL: the claim made us its one joiner (a
         * task DONE before the claim is joined from DONE). */
        int e = weft__join_task(tasks[i], WEFT__JOIN_CLAIMED, gather_forward,
                                &g, &r);
        if (results)
            results[i] = r;
        if (errs)
            errs[i] = e;
        if (e && !first)
            first = e;
    }
    int code = weft__check_interrupt();
    return code ? code : first;
}

int weft_wait_for(weft_task *t, double seconds, void **result)
{
    if (!t)
        return -EINVAL;
    /* -EINVAL (seconds), -EPERM (not a task) or -ENOMEM. */
    weft_timeout scope;
    int err = weft_timeout_enter(&scope, seconds);
    if (err < 0)
        return err;
    /* On expiry the join cancels t and waits for it; its result then
     * says -ETIMEDOUT (the scope), or 0 if t finished normally anyway. */
    int rc = weft_join(t, result);
    (void)weft_timeout_exit(&scope);
    return rc;
}

/* --------------------------------------------------------------------------
 * Waiting for some of many tasks: struct multi
 */

struct listener {
    struct weft__done done; /* first: t->joiner points here */
    struct multi *m;
    uint32_t index;
    /* The caller only: the listener may still be in its task's joiner
     * field (false once the caller knows the task is done). */
    bool registered;
};

struct multi {
    uint32_t refs; /* atomic */
    weft__spinlock lock;
    struct weft__wait *wait; /* under lock: the caller's, while it waits */
    uint32_t threshold;      /* under lock: complete wait at this ndone */
    uint32_t ndone;          /* under lock */
    uint32_t n;
    uint32_t *order;   /* under lock: indices in the order they finished */
    weft_task **tasks; /* the caller's copy */
    struct listener l[];
};

/* Drop n references to m. */
static void multi_put_n(struct multi *m, uint32_t n)
{
    /* Seq RMW: every user's last access comes before the free. */
    if (weft__faa_seq_u32(&m->refs, -n) == n)
        weft__free(m);
}

static void multi_put(struct multi *m)
{
    multi_put_n(m, 1);
}

static void listener_done(struct weft__done *d)
{
    struct listener *l = (struct listener *)d;
    struct multi *m = l->m;
    struct weft__wait *w = NULL;
    weft__spin_lock(&m->lock);
    m->order[m->ndone++] = l->index;
    if (m->wait && m->ndone >= m->threshold) {
        /* Claimed, the wait stays valid until its wake: its waiter cannot
         * return before, so the wake may leave the lock. If another party
         * completed it first, that party wakes it. */
        if (weft__wait_claim(m->wait, 0))
            w = m->wait;
        m->wait = NULL;
    }
    weft__spin_unlock(&m->lock);
    if (w)
        weft__wait_wake(w);
    multi_put(m);
}

/* Take back the listeners registered in tasks[0..n) and drop the
 * references they held, if they have not been called. */
static void multi_unregister(struct multi *m, weft_task *const *tasks,
                             uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        /* Seq CAS: fails only for a task that has finished and calls, or
         * has called, the listener (which drops its own reference); on
         * success, the task's exchange will never see the listener. */
        if (m->l[i].registered &&
            weft__cas_seq_ptr(&tasks[i]->joiner, &m->l[i].done, NULL))
            multi_put(m);
}

/* Listen on every task; -EINVAL if another party waits for one. */
static struct multi *multi_new(weft_task **tasks, size_t n, int *err)
{
    if ((*err = check_tasks(tasks, n)) < 0)
        return NULL;
    size_t size = sizeof(struct multi) + n * sizeof(struct listener) +
                  n * sizeof(weft_task *) + n * sizeof(uint32_t);
    struct multi *m = weft__malloc(size);
    if (!m) {
        *err = -ENOMEM;
        return NULL;
    }
    /* The caller's reference and one per listener, before any listener is
     * published (by the first CAS below, which releases this store); those
     * of listeners not registered are dropped at the end. */
    m->refs = 1 + (uint32_t)n;
    weft__spin_init(&m->lock);
    m->wait = NULL;
    m->threshold = m->ndone = 0;
    m->n = (uint32_t)n;
    m->tasks = (weft_task **)&m->l[n];
    m->order = (uint32_t *)&m->tasks[n];
    uint32_t i, unused = 0; /* references of listeners not registered */
    for (i = 0; i < n; i++) {
        struct listener *l = &m->l[i];
        *l = (struct listener){.done.fn = listener_done, .m = m, .index = i};
        m->tasks[i] = tasks[i];
        /* Seq CAS: publishes the listener to the finishing exchange. */
        void *seen;
        if (weft__cas_seq_ptr_val(&tasks[i]->joiner, NULL, &l->done, &seen)) {
            l->registered = true;
            continue;
        }
        unused++;
        if (seen != WEFT__JOIN_DONE) {
            *err = -EINVAL; /* joined, waited for or detached elsewhere */
            break;
        }
        weft__spin_lock(&m->lock);
        m->order[m->ndone++] = i;
        weft__spin_unlock(&m->lock);
    }
    if (*err == 0) {
        /* Never the last reference: the caller's stays. */
        if (unused)
            multi_put_n(m, unused);
        return m;
    }
    /* Take back what was registered: listeners [0, i) only, the rest were
     * never set up; then drop the caller's reference and those of the
     * listeners not registered (tasks [i + 1, n) and i). */
    multi_unregister(m, tasks, i);
    multi_put_n(m, 1 + unused + ((uint32_t)n - i - 1));
    return NULL;
}

/* The caller is done with m: take back the listeners not called yet.
 * Tasks whose listener has run may have been joined and freed already
 * (as_completed hands them out): they are not touched. */
static void multi_release(struct multi *m)
{
    weft__spin_lock(&m->lock);
    for (uint32_t i = 0; i < m->ndone; i++)
        m->l[m->order[i]].registered = false;
    weft__spin_unlock(&m->lock);
    multi_unregister(m, m->tasks, m->n);
    multi_put(m);
}

static uint32_t multi_ndone(struct multi *m)
{
    weft__spin_lock(&m->lock);
    uint32_t n = m->ndone;
    weft__spin_unlock(&m->lock);
    return n;
}

#define TIMED_OUT WEFT__WAIT_TIMED_OUT

/* Stop publishing w in m; after this no finisher touches it. */
static void multi_unpublish(struct multi *m, struct weft__wait *w)
{
    weft__spin_lock(&m->lock);
    if (m->wait == w)
        m->wait = NULL;
    weft__spin_unlock(&m->lock);
}

/* Wait until `threshold` tasks of m have finished. Returns 0, TIMED_OUT
 * at deadline_ns, -ENOMEM, or the caller's -ECANCELED / -ETIMEDOUT. */
static int multi_wait(struct multi *m, uint32_t threshold, int64_t deadline_ns)
{
    if (multi_ndone(m) >= threshold)
        return 0;
    if (deadline_ns != WEFT__NEVER && deadline_ns <= weft__now_ns())
        return TIMED_OUT;
    struct weft__wait w;
    weft__wait_init(&w, NULL, NULL);
    weft__wait_set_kind(&w, WEFT__WAIT_TASKS, threshold);
    int rc = weft__wait_arm(&w);
    if (rc) {
        weft__wait_abandon(&w);
        return rc;
    }
    weft__spin_lock(&m->lock);
    bool ready = m->ndone >= threshold;
    if (!ready) {
        m->wait = &w;
        m->threshold = threshold;
    }
    weft__spin_unlock(&m->lock);
    if (ready) {
        weft__wait_abandon(&w);
        return 0;
    }
    rc = weft__wait_block_until(&w, deadline_ns);
    multi_unpublish(m, &w);
    return rc;
}

/* --------------------------------------------------------------------------
 * shield, wait, as_completed
 */

int weft_shield(weft_task *t, void **result)
{
    if (!t || t == weft_current())
        return -EINVAL;
    if (!weft_current())
        return -EPERM;
    int err = weft__check_interrupt();
    if (err)
        return err;
    struct multi *m = multi_new(&t, 1, &err);
    if (!m)
        return err;
    err = multi_wait(m, 1, WEFT__NEVER);
    multi_release(m);
    /* Interrupted: t runs on, and the handle stays the caller's. */
    return err ? err : weft__join_reap(t, result);
}

int weft_wait(weft_task **tasks, size_t n, double timeout, int return_when,
              size_t *ndone)
{
    int64_t deadline_ns = weft__timeout_ns(timeout);
    if (deadline_ns < 0 || (return_when != WEFT_WAIT_FIRST_COMPLETED &&
                            return_when != WEFT_WAIT_ALL_COMPLETED))
        return -EINVAL;
    if (!weft_current())
        return -EPERM;
    int err;
    struct multi *m = multi_new(tasks, n, &err);
    if (!m)
        return err;
    uint32_t want = return_when == WEFT_WAIT_ALL_COMPLETED || n == 0 ? m->n : 1;
    err = multi_wait(m, want, deadline_ns);
    /* Done tasks first, in the order they finished; then the rest (still
     * registered) in their order. m->tasks keeps the original order for
     * multi_release. */
    weft__spin_lock(&m->lock);
    uint32_t k = m->ndone;
    for (uint32_t i = 0; i < k; i++) {
        tasks[i] = m->tasks[m->order[i]];
        m->l[m->order[i]].registered = false;
    }
    weft__spin_unlock(&m->lock);
    for (uint32_t i = 0, j = k; i < m->n; i++)
        if (m->l[i].registered)
            tasks[j++] = m->tasks[i];
    multi_release(m);
    if (ndone)
        *ndone = k;
    return err == TIMED_OUT ? 0 : err;
}

struct weft_as_completed {
    struct multi *m;
    uint32_t next; /* order[next] is the next to hand out */
    int64_t deadline_ns;
};

weft_as_completed *weft_as_completed_new(weft_task **tasks, size_t n,
                                         double timeout)
{
    int64_t deadline_ns = weft__timeout_ns(timeout);
    if (deadline_ns < 0) {
        errno = EINVAL;
        return NULL;
    }
    if (!weft_current()) {
        errno = EPERM;
        return NULL;
    }
    weft_as_completed *it = weft__malloc(sizeof(*it));
    if (!it) {
        errno = ENOMEM;
        return NULL;
    }
    int err;
    if (!(it->m = multi_new(tasks, n, &err))) {
        weft__free(it);
        errno = -err;
        return NULL;
    }
    it->next = 0;
    it->deadline_ns = deadline_ns;
    return it;
}

int weft_as_completed_next(weft_as_completed *it, weft_task **task)
{
    if (!it || !task)
        return -EINVAL;
    struct multi *m = it->m;
    while (it->next < m->n) {
        weft__spin_lock(&m->lock);
        bool ready = it->next < m->ndone;
        if (ready)
            *task = m->tasks[m->order[it->next++]];
        weft__spin_unlock(&m->lock);
        if (ready)
            return 1;
        int rc = multi_wait(m, it->next + 1, it->deadline_ns);
        if (rc)
            return rc == TIMED_OUT ? -ETIMEDOUT : rc;
    }
    return 0;
}

void weft_as_completed_free(weft_as_completed *it)
{
    if (!it)
        return;
    multi_release(it->m);
    weft__free(it);
}
