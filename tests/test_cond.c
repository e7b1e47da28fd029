/* Condition (weft.h, "Synchronisation"): weft_cond over a weft_lock,
 * shared by tasks on any worker and by plain threads: -EINVAL for bad
 * objects and arguments, -EPERM for a wait or a notify without the lock,
 * -EBUSY from destroy while waited on, FIFO wake-ups, notify(n) waking
 * exactly n, wait_for and its bound over the whole wait, waits ended by
 * cancellation, timeout scopes and the _timeout bound that still return
 * with the lock held (also when it must be waited for), a producer and
 * consumer exchange across threads and tasks, and notifies racing cancels
 * and timeouts, where a notify must be neither swallowed nor doubled.
 *
 * A waiter is known to be waiting when its task shows as WAITING, or when
 * its thread sleeps in the kernel, after it said it holds the lock; never
 * after a sleep. Each test makes its own runtime: Check forks every test.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sched/alloc.h"
#include "testutil.h"

/* Wait until nobody waits on cond any more, then leave it destroyed: the
 * only way to see from outside that an interrupted waiter has left the
 * condition's queue (it may still be on its way back to the lock, which
 * does not touch the condition's state). */
static void wait_until_unqueued_and_destroy(weft_cond *cond)
{
    double t0 = weft_now();
    int rc;
    while ((rc = weft_cond_destroy(cond)) == -EBUSY) {
        if (weft_now() - t0 > 10.0)
            ck_abort_msg("the waiter never left the condition's queue");
        tu_pause();
    }
    ck_assert_int_eq(rc, 0);
}

/* ------------------------------------------------------------------------
 * A waiter: takes the lock, waits once, releases the lock */

struct waiter {
    weft_lock *lock;
    weft_cond *cond;
    double timeout; /* < 0: weft_cond_wait; else the _timeout form */
    int id;
    int *order; /* when set: ids appended in the order they woke */
    atomic_int *norder;
    atomic_int in_wait; /* it holds the lock and is about to wait */
    int rc;
    bool locked_after; /* weft_lock_locked right after the wait */
    int release_rc;    /* 0: it held the lock after the wait */
    double waited;
};

static void *wait_once(void *arg)
{
    struct waiter *w = arg;
    TU_ASSERT_INT_EQ(weft_lock_acquire(w->lock), 0);
    atomic_store(&w->in_wait, 1);
    double t0 = weft_now();
    w->rc = w->timeout < 0 ? weft_cond_wait(w->cond)
                           : weft_cond_wait_timeout(w->cond, w->timeout);
    w->waited = weft_now() - t0;
    w->locked_after = weft_lock_locked(w->lock);
    if (w->order && w->rc == 0)
        w->order[atomic_fetch_add(w->norder, 1)] = w->id;
    w->release_rc = weft_lock_release(w->lock);
    return NULL;
}

/* Start a waiter and wait until it waits on the condition. */
static void start_waiter(struct tu_actor *a, weft_runtime *rt,
                         enum tu_kind kind, struct waiter *w)
{
    atomic_store(&w->in_wait, 0);
    tu_actor_start(a, rt, kind, wait_once, w);
    tu_wait_flag(&w->in_wait);
    tu_actor_wait_blocked(a);
}

static void check_woken(struct tu_actor *a, struct waiter *w, int rc, int jrc)
{
    ck_assert_int_eq(tu_actor_join(a), jrc);
    ck_assert_int_eq(w->rc, rc);
    ck_assert(w->locked_after);
    ck_assert_int_eq(w->release_rc, 0); /* the lock was the waiter's */
}

struct notifier {
    weft_lock *lock;
    weft_cond *cond;
    int n;
    atomic_int go;
    int rc;
};

static void *notify_on_go(void *arg)
{
    struct notifier *nt = arg;
    while (!atomic_load(&nt->go))
        tu_pause();
    TU_ASSERT_INT_EQ(weft_lock_acquire(nt->lock), 0);
    nt->rc = weft_cond_notify(nt->cond, nt->n);
    TU_ASSERT_INT_EQ(weft_lock_release(nt->lock), 0);
    return NULL;
}

/* Notify with the lock taken for the occasion. */
static int locked_notify(weft_lock *l, weft_cond *c, int n)
{
    TU_ASSERT_INT_EQ(weft_lock_acquire(l), 0);
    int rc = weft_cond_notify(c, n);
    TU_ASSERT_INT_EQ(weft_lock_release(l), 0);
    return rc;
}

static bool always_true(void *arg)
{
    (void)arg;
    return true;
}

static bool always_false(void *arg)
{
    (void)arg;
    return false;
}

/* ------------------------------------------------------------------------
 * Initialisation, bad input, ownership */

START_TEST(cond_init_rejects_a_null_cond_and_a_bad_lock)
{
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(NULL, &l), -EINVAL);
    ck_assert_int_eq(weft_cond_init(&c, NULL), -EINVAL);
    weft_lock bad;
    memset(&bad, 0, sizeof bad);
    ck_assert_int_eq(weft_cond_init(&c, &bad), -EINVAL);
    ck_assert_int_eq(weft_lock_init(&bad), 0);
    ck_assert_int_eq(weft_lock_destroy(&bad), 0);
    ck_assert_int_eq(weft_cond_init(&c, &bad), -EINVAL);
    ck_assert_int_eq(weft_cond_destroy(&c), -EINVAL); /* never initialised */
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

START_TEST(cond_calls_on_null_return_einval)
{
    ck_assert_int_eq(weft_cond_wait(NULL), -EINVAL);
    ck_assert_int_eq(weft_cond_wait_timeout(NULL, 1.0), -EINVAL);
    ck_assert_int_eq(weft_cond_wait_for(NULL, always_true, NULL), -EINVAL);
    ck_assert_int_eq(weft_cond_wait_for_timeout(NULL, always_true, NULL, 1.0),
                     -EINVAL);
    ck_assert_int_eq(weft_cond_notify(NULL, 1), -EINVAL);
    ck_assert_int_eq(weft_cond_notify_all(NULL), -EINVAL);
    ck_assert_int_eq(weft_cond_destroy(NULL), -EINVAL);
}
END_TEST

static void check_invalid_cond(weft_cond *c, weft_lock *l)
{
    /* With the lock held: -EINVAL, not -EPERM, and the lock stays held. */
    ck_assert_int_eq(weft_lock_acquire(l), 0);
    ck_assert_int_eq(weft_cond_wait(c), -EINVAL);
    ck_assert_int_eq(weft_cond_wait_timeout(c, 1.0), -EINVAL);
    ck_assert_int_eq(weft_cond_wait_for(c, always_false, NULL), -EINVAL);
    ck_assert_int_eq(weft_cond_wait_for_timeout(c, always_false, NULL, 1.0),
                     -EINVAL);
    ck_assert_int_eq(weft_cond_notify(c, 1), -EINVAL);
    ck_assert_int_eq(weft_cond_notify_all(c), -EINVAL);
    ck_assert_int_eq(weft_cond_destroy(c), -EINVAL);
    ck_assert_int_eq(weft_lock_release(l), 0);
}

static void *invalid_cond_main(void *arg)
{
    void **p = arg;
    check_invalid_cond(p[0], p[1]);
    return (void *)1;
}

START_TEST(cond_calls_on_an_uninitialised_or_destroyed_cond_return_einval)
{
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    memset(&c, 0, sizeof c);
    check_invalid_cond(&c, &l);
    memset(&c, 0xa5, sizeof c);
    check_invalid_cond(&c, &l);

    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    check_invalid_cond(&c, &l); /* from a plain thread */
    void *args[2] = {&c, &l};
    ck_assert_int_eq((intptr_t)tu_run_in(1, invalid_cond_main, args), 1);

    /* Initialised again, it works again. */
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_cond_notify(&c, 1), 0);
    ck_assert_int_eq(weft_cond_wait_timeout(&c, 0), -ETIMEDOUT);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

static void check_bad_arguments(weft_cond *c, weft_lock *l)
{
    static const double bad[] = {-1.0, -1e-9, -INFINITY, NAN};
    ck_assert_int_eq(weft_lock_acquire(l), 0);
    ck_assert_int_eq(weft_cond_notify(c, -1), -EINVAL);
    ck_assert_int_eq(weft_cond_notify(c, -1000), -EINVAL);
    ck_assert_int_eq(weft_cond_wait_for(c, NULL, NULL), -EINVAL);
    ck_assert_int_eq(weft_cond_wait_for_timeout(c, NULL, NULL, 1.0), -EINVAL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(weft_cond_wait_timeout(c, bad[i]), -EINVAL);
        ck_assert_int_eq(
            weft_cond_wait_for_timeout(c, always_false, NULL, bad[i]), -EINVAL);
    }
    /* Nothing happened: the lock is still the caller's. */
    ck_assert(weft_lock_locked(l));
    ck_assert_int_eq(weft_lock_release(l), 0);
}

static void *bad_arguments_main(void *arg)
{
    void **p = arg;
    check_bad_arguments(p[0], p[1]);
    return (void *)1;
}

START_TEST(cond_bad_arguments_return_einval_and_keep_the_lock)
{
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    check_bad_arguments(&c, &l);
    void *args[2] = {&c, &l};
    ck_assert_int_eq((intptr_t)tu_run_in(1, bad_arguments_main, args), 1);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

static void check_eperm(weft_cond *c, weft_lock *l)
{
    bool was_locked = weft_lock_locked(l);
    double t0 = weft_now();
    ck_assert_int_eq(weft_cond_wait(c), -EPERM);
    ck_assert_int_eq(weft_cond_wait_timeout(c, 10.0), -EPERM);
    ck_assert_int_eq(weft_cond_wait_for(c, always_false, NULL), -EPERM);
    ck_assert_int_eq(weft_cond_wait_for_timeout(c, always_false, NULL, 10.0),
                     -EPERM);
    ck_assert_int_eq(weft_cond_notify(c, 1), -EPERM);
    ck_assert_int_eq(weft_cond_notify(c, 0), -EPERM);
    ck_assert_int_eq(weft_cond_notify_all(c), -EPERM);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "-EPERM calls took %.3f s",
                  weft_now() - t0);
    /* Nothing happened: the lock is as it was, and still not ours. */
    ck_assert(weft_lock_locked(l) == was_locked);
    ck_assert_int_eq(weft_lock_release(l), -EPERM);
}

static void *eperm_main(void *arg)
{
    void **p = arg;
    check_eperm(p[0], p[1]);
    return (void *)1;
}

struct holder {
    weft_lock *lock;
    atomic_int held, go;
};

static void *hold_until_go(void *arg)
{
    struct holder *h = arg;
    TU_ASSERT_INT_EQ(weft_lock_acquire(h->lock), 0);
    atomic_store(&h->held, 1);
    while (!atomic_load(&h->go))
        tu_pause();
    TU_ASSERT_INT_EQ(weft_lock_release(h->lock), 0);
    return NULL;
}

START_TEST(cond_wait_and_notify_without_the_lock_return_eperm)
{
    /* The lock free, then held by someone else (_i 0: a task, 1: a plain
     * thread); the callers are the test's thread and a task. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    void *args[2] = {&c, &l};
    check_eperm(&c, &l);
    weft_task *t = weft_spawn_ex(rt, eperm_main, args, NULL);
    ck_assert_ptr_nonnull(t);
    tu_join_expect(t, 1);

    struct holder h = {.lock = &l};
    struct tu_actor ha;
    tu_actor_start(&ha, rt, _i ? TU_THREAD : TU_TASK, hold_until_go, &h);
    tu_wait_flag(&h.held);
    check_eperm(&c, &l);
    t = weft_spawn_ex(rt, eperm_main, args, NULL);
    ck_assert_ptr_nonnull(t);
    tu_join_expect(t, 1);
    atomic_store(&h.go, 1);
    ck_assert_int_eq(tu_actor_join(&ha), 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_cond_destroy(&c), 0); /* nobody queued */
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(cond_notify_with_no_waiter_returns_zero)
{
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_cond_notify(&c, 0), 0);
    ck_assert_int_eq(weft_cond_notify(&c, 1), 0);
    ck_assert_int_eq(weft_cond_notify(&c, 1000), 0);
    ck_assert_int_eq(weft_cond_notify_all(&c), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

START_TEST(cond_destroy_while_waited_on_returns_ebusy_and_it_stays_usable)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct waiter w = {.lock = &l, .cond = &c, .timeout = -1};
    struct tu_actor a;
    start_waiter(&a, rt, _i ? TU_THREAD : TU_TASK, &w);
    ck_assert_int_eq(weft_cond_destroy(&c), -EBUSY);
    /* The lock is free while the waiter waits, and not destroyable
     * either way while it is in use. */
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(locked_notify(&l, &c, 1), 1);
    check_woken(&a, &w, 0, 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Waiting and notifying */

START_TEST(cond_wait_returns_zero_with_the_lock_held_after_a_notify)
{
    /* _i: bit 0 the waiter is a thread, bit 1 the notifier is. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct waiter w = {.lock = &l, .cond = &c, .timeout = -1};
    struct notifier nt = {.lock = &l, .cond = &c, .n = 1};
    struct tu_actor wa, na;
    tu_actor_start(&na, rt, _i & 2 ? TU_THREAD : TU_TASK, notify_on_go, &nt);
    start_waiter(&wa, rt, _i & 1 ? TU_THREAD : TU_TASK, &w);
    ck_assert(!atomic_load(&wa.done));
    atomic_store(&nt.go, 1);
    ck_assert_int_eq(tu_actor_join(&na), 0);
    ck_assert_int_eq(nt.rc, 1);
    check_woken(&wa, &w, 0, 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(cond_notify_wakes_the_waiters_in_fifo_order)
{
    /* _i 0: tasks only; 1: tasks and plain threads in turn. Each
     * notify(1) must wake the oldest waiter and no other. */
    enum { N = 6 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    int order[N];
    atomic_int norder = 0;
    struct waiter w[N];
    struct tu_actor a[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct waiter){.lock = &l,
                               .cond = &c,
                               .timeout = i % 3 == 2 ? 30.0 : -1,
                               .id = i,
                               .order = order,
                               .norder = &norder};
        start_waiter(&a[i], rt, _i && i % 2 ? TU_THREAD : TU_TASK, &w[i]);
    }
    for (int k = 0; k < N; k++) {
        ck_assert_int_eq(locked_notify(&l, &c, 1), 1);
        check_woken(&a[k], &w[k], 0, 0);
        for (int j = k + 1; j < N; j++)
            ck_assert_msg(!atomic_load(&a[j].done), "notify %d woke waiter %d",
                          k, j);
    }
    ck_assert_int_eq(atomic_load(&norder), N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(order[i], i);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(cond_notify_n_wakes_exactly_n_waiters)
{
    enum { N = 5 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    int order[N];
    atomic_int norder = 0;
    struct waiter w[N];
    struct tu_actor a[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct waiter){.lock = &l,
                               .cond = &c,
                               .timeout = -1,
                               .id = i,
                               .order = order,
                               .norder = &norder};
        start_waiter(&a[i], rt, i == 1 ? TU_THREAD : TU_TASK, &w[i]);
    }
    ck_assert_int_eq(locked_notify(&l, &c, 2), 2);
    check_woken(&a[0], &w[0], 0, 0);
    check_woken(&a[1], &w[1], 0, 0);
    /* The two oldest, in either order: both woke, then raced for the
     * lock. */
    ck_assert_int_eq(atomic_load(&norder), 2);
    ck_assert_int_eq(order[0] + order[1], 1);
    ck_assert_int_eq(weft_cond_destroy(&c), -EBUSY);
    ck_assert_int_eq(locked_notify(&l, &c, 0), 0);
    /* Exactly the three others are left: more than that is asked. */
    ck_assert_int_eq(locked_notify(&l, &c, 10), 3);
    for (int i = 2; i < N; i++)
        check_woken(&a[i], &w[i], 0, 0);
    ck_assert_int_eq(atomic_load(&norder), N);
    ck_assert_int_eq(locked_notify(&l, &c, 1), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(cond_notify_all_wakes_every_waiter)
{
    enum { N = 8 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct waiter w[N];
    struct tu_actor a[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct waiter){
            .lock = &l, .cond = &c, .timeout = i % 2 ? 30.0 : -1};
        start_waiter(&a[i], rt, i % 3 == 1 ? TU_THREAD : TU_TASK, &w[i]);
    }
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_cond_notify_all(&c), N);
    ck_assert_int_eq(weft_cond_notify_all(&c), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    for (int i = 0; i < N; i++)
        check_woken(&a[i], &w[i], 0, 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

struct pred_state {
    weft_lock *lock;
    int value;         /* under the lock */
    atomic_int evals;  /* predicate evaluations */
    atomic_int unheld; /* evaluations without the lock held */
};

static bool value_at_least_3(void *arg)
{
    struct pred_state *ps = arg;
    atomic_fetch_add(&ps->evals, 1);
    if (!weft_lock_locked(ps->lock))
        atomic_fetch_add(&ps->unheld, 1);
    return ps->value >= 3;
}

static void *cancelled_wait_for(void *arg)
{
    struct pred_state *ps = arg;
    weft_cond c;
    ck_assert_int_eq(weft_cond_init(&c, ps->lock), 0);
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    ck_assert_int_eq(weft_lock_acquire(ps->lock), 0);
    /* True already: no wait, so no cancellation. */
    ck_assert_int_eq(weft_cond_wait_for(&c, value_at_least_3, ps), 0);
    ck_assert_int_eq(weft_cond_wait_for_timeout(&c, value_at_least_3, ps, 0),
                     0);
    ck_assert_int_eq(weft_lock_release(ps->lock), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_uncancel(), 0);
    return (void *)1;
}

START_TEST(cond_wait_for_returns_at_once_when_the_predicate_holds)
{
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct pred_state ps = {.lock = &l, .value = 5};
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    double t0 = weft_now();
    ck_assert_int_eq(weft_cond_wait_for(&c, value_at_least_3, &ps), 0);
    ck_assert_int_eq(weft_cond_wait_for_timeout(&c, value_at_least_3, &ps, 0),
                     0);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "took %.3f s", weft_now() - t0);
    ck_assert_int_eq(atomic_load(&ps.evals), 2);
    ck_assert_int_eq(atomic_load(&ps.unheld), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq((intptr_t)tu_run_in(1, cancelled_wait_for, &ps), 1);
    ck_assert_int_eq(atomic_load(&ps.evals), 4);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

struct pred_waiter {
    weft_cond *cond;
    struct pred_state *ps;
    double timeout; /* < 0: wait_for; else wait_for_timeout */
    int rc, release_rc;
    bool held_true; /* the predicate held on return */
    double waited;
};

static void *wait_for_once(void *arg)
{
    struct pred_waiter *pw = arg;
    TU_ASSERT_INT_EQ(weft_lock_acquire(pw->ps->lock), 0);
    double t0 = weft_now();
    pw->rc = pw->timeout < 0
                 ? weft_cond_wait_for(pw->cond, value_at_least_3, pw->ps)
                 : weft_cond_wait_for_timeout(pw->cond, value_at_least_3,
                                              pw->ps, pw->timeout);
    pw->waited = weft_now() - t0;
    pw->held_true = pw->ps->value >= 3;
    pw->release_rc = weft_lock_release(pw->ps->lock);
    return NULL;
}

/* Wait until the waiter has evaluated the predicate `evals` times and
 * waits again. */
static void wait_evals(struct tu_actor *a, struct pred_state *ps, int evals)
{
    double t0 = weft_now();
    while (atomic_load(&ps->evals) < evals) {
        if (weft_now() - t0 > 10.0)
            ck_abort_msg("the predicate was evaluated %d times, not %d",
                         atomic_load(&ps->evals), evals);
        tu_pause();
    }
    tu_actor_wait_blocked(a);
}

START_TEST(cond_wait_for_waits_until_the_predicate_holds)
{
    /* _i: bit 0 the waiter is a thread, bit 1 it uses the _timeout form.
     * Three notifies, the predicate true only after the third: the waiter
     * evaluates it each time, with the lock held, and returns after the
     * third with it true. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct pred_state ps = {.lock = &l};
    struct pred_waiter pw = {
        .cond = &c, .ps = &ps, .timeout = _i & 2 ? 30.0 : -1};
    struct tu_actor a;
    tu_actor_start(&a, rt, _i & 1 ? TU_THREAD : TU_TASK, wait_for_once, &pw);
    wait_evals(&a, &ps, 1);
    for (int v = 1; v <= 3; v++) {
        ck_assert(!atomic_load(&a.done));
        ck_assert_int_eq(weft_lock_acquire(&l), 0);
        ps.value = v;
        ck_assert_int_eq(weft_cond_notify(&c, 1), 1);
        ck_assert_int_eq(weft_lock_release(&l), 0);
        if (v < 3)
            wait_evals(&a, &ps, v + 1);
    }
    ck_assert_int_eq(tu_actor_join(&a), 0);
    ck_assert_int_eq(pw.rc, 0);
    ck_assert(pw.held_true);
    ck_assert_int_eq(pw.release_rc, 0);
    ck_assert_int_eq(atomic_load(&ps.evals), 4);
    ck_assert_int_eq(atomic_load(&ps.unheld), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

struct ticker {
    weft_lock *lock;
    weft_cond *cond;
    atomic_int stop;
    int ticks;
};

static void *notify_every_few_ms(void *arg)
{
    struct ticker *tk = arg;
    while (!atomic_load(&tk->stop)) {
        locked_notify(tk->lock, tk->cond, 1);
        tk->ticks++;
        TU_ASSERT_INT_EQ(weft_sleep(0.005), 0);
    }
    return NULL;
}

START_TEST(cond_wait_for_timeout_bounds_the_whole_wait)
{
    /* Notified every 5 ms with the predicate false, the waiter (_i 0: a
     * task, 1: a plain thread) waits many times; the bound is over all of
     * them, not each. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct pred_state ps = {.lock = &l};
    struct pred_waiter pw = {.cond = &c, .ps = &ps, .timeout = 0.1};
    struct ticker tk = {.lock = &l, .cond = &c};
    struct tu_actor ta, wa;
    tu_actor_start(&wa, rt, _i ? TU_THREAD : TU_TASK, wait_for_once, &pw);
    tu_actor_start(&ta, rt, TU_TASK, notify_every_few_ms, &tk);
    ck_assert_int_eq(tu_actor_join(&wa), 0);
    atomic_store(&tk.stop, 1);
    ck_assert_int_eq(tu_actor_join(&ta), 0);
    ck_assert_int_eq(pw.rc, -ETIMEDOUT);
    ck_assert_int_eq(pw.release_rc, 0); /* the lock held on -ETIMEDOUT */
    ck_assert_msg(pw.waited >= 0.1 - TU_EARLY_EPS &&
                      pw.waited <= 0.1 + TU_SLACK,
                  "a 100 ms bound returned after %.6f s", pw.waited);
    ck_assert_int_gt(atomic_load(&ps.evals), 2); /* woken and waited again */
    ck_assert_int_eq(atomic_load(&ps.unheld), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(cond_wait_timeout_returns_etimedout_after_about_the_time)
{
    /* _i 0: a task, 1: a plain thread. The lock is held again after the
     * timeout. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    static const double bounds[] = {0.0, 0.02, 0.1};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        struct waiter w = {.lock = &l, .cond = &c, .timeout = bounds[i]};
        struct tu_actor a;
        tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, wait_once, &w);
        check_woken(&a, &w, -ETIMEDOUT, 0);
        ck_assert_msg(w.waited >= bounds[i] - TU_EARLY_EPS &&
                          w.waited <= bounds[i] + TU_SLACK,
                      "a %.3f s bound returned after %.6f s", bounds[i],
                      w.waited);
    }
    ck_assert_int_eq(locked_notify(&l, &c, 1), 0); /* nobody left queued */
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(cond_wait_timeout_returns_zero_when_notified_in_time)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct waiter w = {.lock = &l, .cond = &c, .timeout = 30.0};
    struct tu_actor a;
    start_waiter(&a, rt, _i ? TU_THREAD : TU_TASK, &w);
    ck_assert_int_eq(locked_notify(&l, &c, 1), 1);
    check_woken(&a, &w, 0, 0);
    ck_assert_msg(w.waited < 10.0, "waited %.3f s", w.waited);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(cond_wait_timeout_waits_for_the_lock_before_returning_etimedout)
{
    /* The test's thread holds the lock when the waiter's bound passes:
     * the waiter (_i 0: a task, 1: a plain thread) leaves the condition's
     * queue, then waits for the lock, and returns only with it. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct waiter w = {.lock = &l, .cond = &c, .timeout = 0.05};
    struct tu_actor a;
    start_waiter(&a, rt, _i ? TU_THREAD : TU_TASK, &w);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    wait_until_unqueued_and_destroy(&c);
    tu_actor_wait_blocked(&a); /* on the lock now */
    ck_assert(!atomic_load(&a.done));
    ck_assert_int_eq(weft_lock_release(&l), 0);
    check_woken(&a, &w, -ETIMEDOUT, 0);
    ck_assert(w.waited >= 0.05 - TU_EARLY_EPS);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *enomem_main(void *arg)
{
    void **p = arg;
    weft_cond *c = p[0];
    weft_lock *l = p[1];
    ck_assert_int_eq(weft_lock_acquire(l), 0);
    /* One worker, nothing else running, no timer added yet: the first
     * allocation is the timer heap's, for this wait's deadline. */
    weft__alloc_fail_after(1);
    int rc = weft_cond_wait_timeout(c, 30.0);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_int_eq(weft_lock_release(l), 0); /* held again */
    return (void *)1;
}

START_TEST(cond_wait_timeout_from_a_task_returns_enomem_with_the_lock_held)
{
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    void *args[2] = {&c, &l};
    ck_assert_int_eq((intptr_t)tu_run_in(1, enomem_main, args), 1);
    ck_assert_int_eq(weft_cond_destroy(&c), 0); /* not left queued */
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Cancellation and timeout scopes */

START_TEST(cond_wait_cancelled_returns_ecanceled_with_the_lock_held)
{
    /* The test's thread holds the lock when it cancels the waiter (_i 0:
     * weft_cond_wait, 1: the _timeout form): the waiter leaves the queue,
     * waits for the lock ignoring the cancel, and returns with it. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct waiter w = {.lock = &l, .cond = &c, .timeout = _i ? 30.0 : -1};
    struct tu_actor a;
    start_waiter(&a, rt, TU_TASK, &w);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_cancel(a.task), 0);
    wait_until_unqueued_and_destroy(&c);
    tu_actor_wait_blocked(&a); /* on the lock now */
    ck_assert(!atomic_load(&a.done));
    ck_assert_int_eq(weft_lock_release(&l), 0);
    check_woken(&a, &w, -ECANCELED, -ECANCELED);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

struct scoped {
    weft_lock *lock;
    weft_cond *cond;
    atomic_int in_wait;
    int rc, release_rc, exit_rc;
    double waited;
};

static void *wait_in_scope(void *arg)
{
    struct scoped *sc = arg;
    weft_timeout scope;
    TU_ASSERT_INT_EQ(weft_lock_acquire(sc->lock), 0);
    double t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_timeout_enter(&scope, 0.05), 0);
    atomic_store(&sc->in_wait, 1);
    sc->rc = weft_cond_wait(sc->cond);
    sc->waited = weft_now() - t0;
    sc->release_rc = weft_lock_release(sc->lock);
    sc->exit_rc = weft_timeout_exit(&scope);
    return NULL;
}

START_TEST(cond_wait_in_an_expired_timeout_scope_returns_etimedout_with_lock)
{
    /* The scope expires while the test's thread holds the lock. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct scoped sc = {.lock = &l, .cond = &c};
    struct tu_actor a;
    tu_actor_start(&a, rt, TU_TASK, wait_in_scope, &sc);
    tu_wait_flag(&sc.in_wait);
    tu_actor_wait_blocked(&a);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    wait_until_unqueued_and_destroy(&c);
    tu_actor_wait_blocked(&a);
    ck_assert(!atomic_load(&a.done));
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(tu_actor_join(&a), 0); /* a scope is not a cancel */
    ck_assert_int_eq(sc.rc, -ETIMEDOUT);
    ck_assert_int_eq(sc.release_rc, 0);
    ck_assert_int_eq(sc.exit_rc, -ETIMEDOUT);
    ck_assert(sc.waited >= 0.05 - TU_EARLY_EPS);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *cancelled_waiter(void *arg)
{
    void **p = arg;
    weft_cond *c = p[0];
    weft_lock *l = p[1];
    ck_assert_int_eq(weft_lock_acquire(l), 0);
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    double t0 = weft_now();
    ck_assert_int_eq(weft_cond_wait(c), -ECANCELED);
    ck_assert(weft_lock_locked(l));
    ck_assert_int_eq(weft_cond_wait_timeout(c, 10.0), -ECANCELED);
    ck_assert_int_eq(weft_cond_wait_for(c, always_false, NULL), -ECANCELED);
    ck_assert_int_eq(weft_cond_wait_for_timeout(c, always_false, NULL, 10.0),
                     -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "cancelled waits took %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(weft_lock_release(l), 0); /* held throughout */
    ck_assert_int_eq(weft_uncancel(), 0);
    /* In an expired scope, the same. */
    weft_timeout scope;
    ck_assert_int_eq(weft_timeout_enter(&scope, 0), 0);
    ck_assert_int_eq(weft_lock_acquire(l), 0);
    ck_assert_int_eq(weft_cond_wait(c), -ETIMEDOUT);
    ck_assert_int_eq(weft_lock_release(l), 0);
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    return (void *)1;
}

START_TEST(cond_wait_by_a_cancelled_task_returns_at_once_with_the_lock_held)
{
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    void *args[2] = {&c, &l};
    ck_assert_int_eq((intptr_t)tu_run_in(1, cancelled_waiter, args), 1);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

START_TEST(cond_cancelled_waiter_does_not_swallow_a_notify)
{
    /* The first of two waiters is cancelled before a notify(1): the
     * notify goes to the second (_i 0: a task, 1: a plain thread). */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    weft_cond c;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cond_init(&c, &l), 0);
    struct waiter w1 = {.lock = &l, .cond = &c, .timeout = -1};
    struct waiter w2 = {.lock = &l, .cond = &c, .timeout = -1};
    struct tu_actor a1, a2;
    start_waiter(&a1, rt, TU_TASK, &w1);
    start_waiter(&a2, rt, _i ? TU_THREAD : TU_TASK, &w2);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_cancel(a1.task), 0);
    ck_assert_int_eq(weft_cond_notify(&c, 1), 1);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    check_woken(&a1, &w1, -ECANCELED, -ECANCELED);
    check_woken(&a2, &w2, 0, 0);
    ck_assert_int_eq(locked_notify(&l, &c, 1), 0);
    ck_assert_int_eq(weft_cond_destroy(&c), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress */

enum { PC_CAP = 4 };

struct pc {
    weft_lock lock;
    weft_cond not_full, not_empty;
    long buf[PC_CAP];
    int head, count;  /* under the lock */
    long taken, sum;  /* under the lock */
    long total;       /* items to pass */
    int per_producer; /* items each producer puts */
};

static bool pc_can_put(void *arg)
{
    struct pc *pc = arg;
    return pc->count < PC_CAP;
}

static bool pc_can_get(void *arg)
{
    struct pc *pc = arg;
    return pc->count > 0 || pc->taken == pc->total;
}

static void *pc_producer(void *arg)
{
    struct pc *pc = arg;
    for (int i = 1; i <= pc->per_producer; i++) {
        TU_ASSERT_INT_EQ(weft_lock_acquire(&pc->lock), 0);
        int rc = i % 2 ? weft_cond_wait_for(&pc->not_full, pc_can_put, pc)
                       : weft_cond_wait_for_timeout(&pc->not_full, pc_can_put,
                                                    pc, 60.0);
        TU_ASSERT_INT_EQ(rc, 0);
        pc->buf[(pc->head + pc->count) % PC_CAP] = i;
        pc->count++;
        TU_ASSERT(weft_cond_notify(&pc->not_empty, 1) >= 0);
        TU_ASSERT_INT_EQ(weft_lock_release(&pc->lock), 0);
    }
    return NULL;
}

static void *pc_consumer(void *arg)
{
    struct pc *pc = arg;
    for (int i = 0;; i++) {
        TU_ASSERT_INT_EQ(weft_lock_acquire(&pc->lock), 0);
        int rc = i % 2 ? weft_cond_wait_for(&pc->not_empty, pc_can_get, pc)
                       : weft_cond_wait_for_timeout(&pc->not_empty, pc_can_get,
                                                    pc, 60.0);
        TU_ASSERT_INT_EQ(rc, 0);
        if (pc->count == 0) { /* everything taken */
            TU_ASSERT_INT_EQ(weft_lock_release(&pc->lock), 0);
            return NULL;
        }
        pc->sum += pc->buf[pc->head];
        pc->head = (pc->head + 1) % PC_CAP;
        pc->count--;
        if (++pc->taken == pc->total) /* let every consumer out */
            TU_ASSERT(weft_cond_notify_all(&pc->not_empty) >= 0);
        TU_ASSERT(weft_cond_notify(&pc->not_full, 1) >= 0);
        TU_ASSERT_INT_EQ(weft_lock_release(&pc->lock), 0);
    }
}

START_TEST(cond_producers_and_consumers_across_threads_and_tasks_pass_all)
{
    /* A bounded buffer of 4 under one lock and two conditions; producers
     * and consumers are tasks on 2 workers and plain threads. Every item
     * put is taken once. */
    enum { SIDE_TASKS = 3, SIDE_THREADS = 2, SIDE = SIDE_TASKS + SIDE_THREADS };
    static struct pc pc;
    pc.per_producer = TU_SCALE(4000, 2000, 1000);
    pc.total = (long)SIDE * pc.per_producer;
    ck_assert_int_eq(weft_lock_init(&pc.lock), 0);
    ck_assert_int_eq(weft_cond_init(&pc.not_full, &pc.lock), 0);
    ck_assert_int_eq(weft_cond_init(&pc.not_empty, &pc.lock), 0);
    weft_runtime *rt = tu_new_runtime(2);
    struct tu_actor prod[SIDE], cons[SIDE];
    for (int i = 0; i < SIDE; i++) {
        enum tu_kind k = i < SIDE_TASKS ? TU_TASK : TU_THREAD;
        tu_actor_start(&cons[i], rt, k, pc_consumer, &pc);
        tu_actor_start(&prod[i], rt, k, pc_producer, &pc);
    }
    for (int i = 0; i < SIDE; i++) {
        ck_assert_int_eq(tu_actor_join(&prod[i]), 0);
        ck_assert_int_eq(tu_actor_join(&cons[i]), 0);
    }
    weft_runtime_free(rt);
    ck_assert_int_eq(pc.taken, pc.total);
    ck_assert_int_eq(pc.count, 0);
    ck_assert_int_eq(pc.sum,
                     (long)SIDE * pc.per_producer * (pc.per_producer + 1) / 2);
    ck_assert_int_eq(weft_cond_destroy(&pc.not_full), 0);
    ck_assert_int_eq(weft_cond_destroy(&pc.not_empty), 0);
    ck_assert_int_eq(weft_lock_destroy(&pc.lock), 0);
}
END_TEST

START_TEST(cond_notify_racing_cancel_never_swallows_a_notify)
{
    /* Each round two tasks wait; a notify(1) and a cancel of the first
     * land at the same moment. The notify wakes exactly one waiter that
     * returns 0: the first, or, if the cancel won, the second. A
     * notify_all then finds exactly the waiters the first one did not
     * wake. Every waiter returns with the lock. */
    int rounds = TU_SCALE(2000, 1500, 800);
    uint64_t rng = tu_seed("cond_notify_racing_cancel_never_swallows_a_notify");
    weft_runtime *rt = tu_new_runtime(2);
    struct tu_cancel_race cr;
    int64_t bias = 0;
    struct tu_racer r;
    tu_racer_start(&r, tu_cancel_victim, &cr, tu_rand(&rng), TU_SPIN_NS);
    int first_woken = 0, cancelled = 0;
    for (int g = 1; g <= rounds; g++) {
        weft_lock l;
        weft_cond c;
        TU_ASSERT_INT_EQ(weft_lock_init(&l), 0);
        TU_ASSERT_INT_EQ(weft_cond_init(&c, &l), 0);
        struct waiter w1 = {.lock = &l, .cond = &c, .timeout = -1};
        struct waiter w2 = {.lock = &l, .cond = &c, .timeout = 10.0};
        struct tu_actor a1, a2;
        start_waiter(&a1, rt, TU_TASK, &w1);
        start_waiter(&a2, rt, TU_TASK, &w2);
        cr.victim = a1.task;
        cr.delay_ns = bias;
        TU_ASSERT_INT_EQ(weft_lock_acquire(&l), 0);
        tu_racer_go(&r, g);
        tu_spin_random(&rng, TU_SPIN_NS);
        tu_spin_for(-bias);
        int first = weft_cond_notify(&c, 1);
        TU_ASSERT_INT_EQ(weft_lock_release(&l), 0);
        tu_racer_wait(&r, g);
        TU_ASSERT(cr.cancel_rc == 0 || cr.cancel_rc == -ESRCH);
        TU_ASSERT_INT_EQ(first, 1);
        TU_ASSERT_INT_EQ(tu_actor_join(&a1), w1.rc);
        TU_ASSERT(w1.rc == 0 || w1.rc == -ECANCELED);
        int second = locked_notify(&l, &c, INT32_MAX);
        TU_ASSERT_INT_EQ(tu_actor_join(&a2), 0);
        TU_ASSERT_INT_EQ(w2.rc, 0);
        int zeros = (w1.rc == 0) + (w2.rc == 0);
        TU_ASSERT_INT_EQ(zeros, first + second);
        TU_ASSERT(w1.locked_after && w2.locked_after);
        TU_ASSERT_INT_EQ(w1.release_rc, 0);
        TU_ASSERT_INT_EQ(w2.release_rc, 0);
        if (w1.rc == 0)
            first_woken++;
        else
            cancelled++;
        tu_steer(&bias, w1.rc != 0);
        TU_ASSERT_INT_EQ(weft_cond_destroy(&c), 0);
        TU_ASSERT_INT_EQ(weft_lock_destroy(&l), 0);
    }
    tu_racer_stop(&r);
    weft_runtime_free(rt);
    fprintf(stderr,
            "cond cancel race: %d rounds, first waiter notified %d, "
            "cancelled %d, final bias %lld ns\n",
            rounds, first_woken, cancelled, (long long)bias);
    ck_assert_int_eq(first_woken + cancelled, rounds);
}
END_TEST

struct timeout_race {
    weft_lock lock;
    weft_cond cond;
    struct tu_racer r;
    int rounds;
    uint64_t rng;
    int notified; /* what the racer's notify(1) returned */
    int got, timed_out;
};

static void notify_one(void *ctx)
{
    struct timeout_race *tr = ctx;
    tr->notified = locked_notify(&tr->lock, &tr->cond, 1);
}

static void *timeout_race_rounds(void *arg)
{
    struct timeout_race *tr = arg;
    for (int g = 1; g <= tr->rounds; g++) {
        double bound = (double)(tu_rand(&tr->rng) % 100) * 1e-6;
        TU_ASSERT_INT_EQ(weft_lock_acquire(&tr->lock), 0);
        /* The racer's notify needs the lock, which the wait releases:
         * it always comes after this waiter queued. */
        tu_racer_go(&tr->r, g);
        int rc = weft_cond_wait_timeout(&tr->cond, bound);
        TU_ASSERT(weft_lock_locked(&tr->lock));
        TU_ASSERT_INT_EQ(weft_lock_release(&tr->lock), 0);
        tu_racer_wait(&tr->r, g);
        TU_ASSERT(rc == 0 || rc == -ETIMEDOUT);
        /* Notified exactly when it returned 0. */
        TU_ASSERT_INT_EQ(tr->notified, rc == 0 ? 1 : 0);
        if (rc == 0)
            tr->got++;
        else
            tr->timed_out++;
    }
    return (void *)1;
}

START_TEST(cond_notify_racing_timeout_is_counted_exactly)
{
    /* A waiter with a tiny bound (_i 0: a plain thread, 1: a task) and a
     * notify(1) land at about the same moment, many times: the notify
     * comes 0 to 200 us after the wait starts, the bound is 0 to 100 us.
     * notify's count and the waiter's result always agree. */
    static struct timeout_race tr;
    tr.rounds = TU_SCALE(3000, 2000, 1000);
    tr.rng = tu_seed("cond_notify_racing_timeout_is_counted_exactly");
    tr.got = tr.timed_out = 0;
    ck_assert_int_eq(weft_lock_init(&tr.lock), 0);
    ck_assert_int_eq(weft_cond_init(&tr.cond, &tr.lock), 0);
    tu_racer_start(&tr.r, notify_one, &tr, tu_rand(&tr.rng), 200000);
    if (_i == 0)
        ck_assert_int_eq((intptr_t)timeout_race_rounds(&tr), 1);
    else
        ck_assert_int_eq((intptr_t)tu_run_in(1, timeout_race_rounds, &tr), 1);
    tu_racer_stop(&tr.r);
    fprintf(stderr,
            "cond timeout race (%s): %d rounds, notified %d, timed out %d\n",
            _i ? "task" : "thread", tr.rounds, tr.got, tr.timed_out);
    ck_assert_int_eq(tr.got + tr.timed_out, tr.rounds);
    ck_assert_int_eq(weft_cond_destroy(&tr.cond), 0);
    ck_assert(!weft_lock_locked(&tr.lock));
    ck_assert_int_eq(weft_lock_destroy(&tr.lock), 0);
}
END_TEST

static Suite *cond_suite(void)
{
    Suite *s = suite_create("cond");

    TCase *tc = tcase_create("basic");
    tcase_add_test(tc, cond_init_rejects_a_null_cond_and_a_bad_lock);
    tcase_add_test(tc, cond_calls_on_null_return_einval);
    tcase_add_test(
        tc, cond_calls_on_an_uninitialised_or_destroyed_cond_return_einval);
    tcase_add_test(tc, cond_bad_arguments_return_einval_and_keep_the_lock);
    tcase_add_loop_test(tc, cond_wait_and_notify_without_the_lock_return_eperm,
                        0, 2);
    tcase_add_test(tc, cond_notify_with_no_waiter_returns_zero);
    tcase_add_loop_test(
        tc, cond_destroy_while_waited_on_returns_ebusy_and_it_stays_usable, 0,
        2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait");
    tcase_add_loop_test(
        tc, cond_wait_returns_zero_with_the_lock_held_after_a_notify, 0, 4);
    tcase_add_loop_test(tc, cond_notify_wakes_the_waiters_in_fifo_order, 0, 2);
    tcase_add_test(tc, cond_notify_n_wakes_exactly_n_waiters);
    tcase_add_test(tc, cond_notify_all_wakes_every_waiter);
    tcase_add_loop_test(
        tc, cond_wait_timeout_returns_etimedout_after_about_the_time, 0, 2);
    tcase_add_loop_test(
        tc, cond_wait_timeout_returns_zero_when_notified_in_time, 0, 2);
    tcase_add_loop_test(
        tc, cond_wait_timeout_waits_for_the_lock_before_returning_etimedout, 0,
        2);
    tcase_add_test(
        tc, cond_wait_timeout_from_a_task_returns_enomem_with_the_lock_held);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait_for");
    tcase_add_test(tc, cond_wait_for_returns_at_once_when_the_predicate_holds);
    tcase_add_loop_test(tc, cond_wait_for_waits_until_the_predicate_holds, 0,
                        4);
    tcase_add_loop_test(tc, cond_wait_for_timeout_bounds_the_whole_wait, 0, 2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel");
    tcase_add_loop_test(
        tc, cond_wait_cancelled_returns_ecanceled_with_the_lock_held, 0, 2);
    tcase_add_test(
        tc, cond_wait_in_an_expired_timeout_scope_returns_etimedout_with_lock);
    tcase_add_test(
        tc, cond_wait_by_a_cancelled_task_returns_at_once_with_the_lock_held);
    tcase_add_loop_test(tc, cond_cancelled_waiter_does_not_swallow_a_notify, 0,
                        2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(
        tc, cond_producers_and_consumers_across_threads_and_tasks_pass_all);
    tcase_add_test(tc, cond_notify_racing_cancel_never_swallows_a_notify);
    tcase_add_loop_test(tc, cond_notify_racing_timeout_is_counted_exactly, 0,
                        2);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(cond_suite());
}
