/* Lock (weft.h, "Synchronisation"): weft_lock shared by tasks on any
 * worker and by plain threads: -EBUSY from the nowait form, -EINVAL for
 * bad objects and arguments, -EBUSY from destroy while held or waited on,
 * -EPERM for a release by anyone but the holder (a task or a thread), FIFO
 * hand-over, waits ended by cancellation, timeout scopes and the _timeout
 * bound, fairness against a holder that takes the lock again in a tight
 * loop, an exact count under contention, and the races between a release
 * and an interrupt, in which the lock must be neither lost nor held twice.
 *
 * A waiter is known to be waiting when its task shows as WAITING, or when
 * its thread sleeps in the kernel; never after a sleep. Each test makes
 * its own runtime: Check forks every test.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * Parties: a holder that keeps the lock until told, a waiter that takes it
 * once, a releaser that tries to release it */

struct holder {
    weft_lock *lock;
    atomic_int held, go;
    int acquire_rc, release_rc;
};

static void *hold_until_go(void *arg)
{
    struct holder *h = arg;
    h->acquire_rc = weft_lock_acquire(h->lock);
    atomic_store(&h->held, 1);
    while (!atomic_load(&h->go))
        tu_pause();
    h->release_rc = weft_lock_release(h->lock);
    return NULL;
}

struct waiter {
    weft_lock *lock;
    double timeout; /* < 0: weft_lock_acquire; else the _timeout form */
    int id;
    int *order; /* when set: ids appended in the order they got the lock */
    atomic_int *norder;
    int rc;         /* what the acquire returned */
    int release_rc; /* then a release: 0 if it held the lock, else -EPERM */
    double waited;
};

static void *acquire_once(void *arg)
{
    struct waiter *w = arg;
    double t0 = weft_now();
    w->rc = w->timeout < 0 ? weft_lock_acquire(w->lock)
                           : weft_lock_acquire_timeout(w->lock, w->timeout);
    w->waited = weft_now() - t0;
    if (w->order && w->rc == 0)
        w->order[atomic_fetch_add(w->norder, 1)] = w->id;
    w->release_rc = weft_lock_release(w->lock);
    return NULL;
}

struct releaser {
    weft_lock *lock;
    int rc;
};

static void *release_once(void *arg)
{
    struct releaser *r = arg;
    r->rc = weft_lock_release(r->lock);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Initialisation, bad input, destroy */

static void check_nowait(void)
{
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_acquire_nowait(&l), 0);
    ck_assert(weft_lock_locked(&l));
    /* Not reentrant: the holder's own nowait fails too. */
    ck_assert_int_eq(weft_lock_acquire_nowait(&l), -EBUSY);
    ck_assert(weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_acquire_nowait(&l), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}

static void *nowait_main(void *arg)
{
    weft_lock *held = arg;
    check_nowait();
    /* Held by the plain thread that runs the runtime. */
    ck_assert_int_eq(weft_lock_acquire_nowait(held), -EBUSY);
    ck_assert(weft_lock_locked(held));
    return (void *)1;
}

START_TEST(lock_nowait_takes_a_free_lock_and_returns_ebusy_on_a_held_one)
{
    check_nowait(); /* a plain thread */
    weft_lock held;
    ck_assert_int_eq(weft_lock_init(&held), 0);
    ck_assert_int_eq(weft_lock_acquire(&held), 0);
    ck_assert_int_eq((intptr_t)tu_run_in(2, nowait_main, &held), 1);
    ck_assert_int_eq(weft_lock_release(&held), 0);
    ck_assert_int_eq(weft_lock_destroy(&held), 0);
}
END_TEST

static void check_free_forms(void)
{
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    double t0 = weft_now();
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert(weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_acquire_timeout(&l, 0), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_acquire_timeout(&l, 1.0), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_acquire_timeout(&l, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "a free lock took %.3f s",
                  weft_now() - t0);
    /* A zero bound on a held lock fails at once. */
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    t0 = weft_now();
    ck_assert_int_eq(weft_lock_acquire_timeout(&l, 0), -ETIMEDOUT);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "a zero bound waited %.3f s",
                  weft_now() - t0);
    ck_assert(weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_release(&l), -EPERM);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}

static void *free_forms_main(void *arg)
{
    (void)arg;
    check_free_forms();
    return (void *)1;
}

START_TEST(lock_acquire_of_a_free_lock_returns_at_once_in_every_form)
{
    check_free_forms();
    ck_assert_int_eq((intptr_t)tu_run_in(2, free_forms_main, NULL), 1);
}
END_TEST

START_TEST(lock_calls_on_null_return_einval)
{
    ck_assert_int_eq(weft_lock_init(NULL), -EINVAL);
    ck_assert_int_eq(weft_lock_acquire(NULL), -EINVAL);
    ck_assert_int_eq(weft_lock_acquire_timeout(NULL, 1.0), -EINVAL);
    ck_assert_int_eq(weft_lock_acquire_nowait(NULL), -EINVAL);
    ck_assert_int_eq(weft_lock_release(NULL), -EINVAL);
    ck_assert(!weft_lock_locked(NULL));
    ck_assert_int_eq(weft_lock_destroy(NULL), -EINVAL);
}
END_TEST

static void check_invalid_lock(weft_lock *l)
{
    ck_assert_int_eq(weft_lock_acquire(l), -EINVAL);
    ck_assert_int_eq(weft_lock_acquire_timeout(l, 1.0), -EINVAL);
    ck_assert_int_eq(weft_lock_acquire_timeout(l, 0), -EINVAL);
    ck_assert_int_eq(weft_lock_acquire_nowait(l), -EINVAL);
    ck_assert_int_eq(weft_lock_release(l), -EINVAL);
    ck_assert(!weft_lock_locked(l));
    ck_assert_int_eq(weft_lock_destroy(l), -EINVAL);
}

static void *invalid_lock_main(void *arg)
{
    check_invalid_lock(arg);
    return (void *)1;
}

START_TEST(lock_calls_on_an_uninitialised_or_destroyed_lock_return_einval)
{
    weft_lock l;
    memset(&l, 0, sizeof l);
    check_invalid_lock(&l);
    memset(&l, 0xa5, sizeof l);
    check_invalid_lock(&l);

    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    check_invalid_lock(&l); /* from a plain thread */
    ck_assert_int_eq((intptr_t)tu_run_in(1, invalid_lock_main, &l), 1);

    /* Initialised again, it works again. */
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

static void check_bad_timeouts(weft_lock *l)
{
    static const double bad[] = {-1.0, -1e-9, -INFINITY, NAN};
    bool was_locked = weft_lock_locked(l);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(weft_lock_acquire_timeout(l, bad[i]), -EINVAL);
        ck_assert(weft_lock_locked(l) == was_locked); /* not taken */
    }
}

static void *bad_timeouts_main(void *arg)
{
    weft_lock *l = arg;
    check_bad_timeouts(l);
    ck_assert_int_eq(weft_lock_release(l), -EPERM);
    return (void *)1;
}

START_TEST(lock_acquire_timeout_with_negative_or_nan_seconds_returns_einval)
{
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    /* Free (it is not taken), then held (no wait). */
    check_bad_timeouts(&l);
    ck_assert_int_eq((intptr_t)tu_run_in(1, bad_timeouts_main, &l), 1);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    check_bad_timeouts(&l);
    ck_assert_int_eq((intptr_t)tu_run_in(1, bad_timeouts_main, &l), 1);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

START_TEST(lock_destroy_while_held_or_waited_on_returns_ebusy)
{
    /* _i 0: the holder and the waiter are tasks; 1: plain threads. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    struct holder h = {.lock = &l};
    struct tu_actor ha;
    tu_actor_start(&ha, rt, _i ? TU_THREAD : TU_TASK, hold_until_go, &h);
    tu_wait_flag(&h.held);
    ck_assert_int_eq(weft_lock_destroy(&l), -EBUSY);
    ck_assert(weft_lock_locked(&l)); /* still usable */

    struct waiter w = {.lock = &l, .timeout = -1};
    struct tu_actor wa;
    tu_actor_start(&wa, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&wa);
    ck_assert_int_eq(weft_lock_destroy(&l), -EBUSY);
    ck_assert_int_eq(weft_lock_acquire_nowait(&l), -EBUSY);

    atomic_store(&h.go, 1);
    ck_assert_int_eq(tu_actor_join(&ha), 0);
    ck_assert_int_eq(h.release_rc, 0);
    ck_assert_int_eq(tu_actor_join(&wa), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.release_rc, 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);

    /* Held by the caller itself: busy too. */
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), -EBUSY);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Ownership */

START_TEST(lock_release_by_non_owner_returns_eperm)
{
    /* _i 0: a task holds the lock; 1: a plain thread does. Nobody else
     * may release it: the test's thread, another thread, another task. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_release(&l), -EPERM); /* free */

    struct holder h = {.lock = &l};
    struct tu_actor owner;
    tu_actor_start(&owner, rt, _i ? TU_THREAD : TU_TASK, hold_until_go, &h);
    tu_wait_flag(&h.held);
    ck_assert_int_eq(h.acquire_rc, 0);
    ck_assert_int_eq(weft_lock_release(&l), -EPERM);
    for (int k = 0; k < 2; k++) {
        struct releaser r = {.lock = &l};
        struct tu_actor other;
        tu_actor_start(&other, rt, k ? TU_THREAD : TU_TASK, release_once, &r);
        ck_assert_int_eq(tu_actor_join(&other), 0);
        ck_assert_int_eq(r.rc, -EPERM);
    }
    ck_assert(weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_acquire_nowait(&l), -EBUSY);

    atomic_store(&h.go, 1);
    ck_assert_int_eq(tu_actor_join(&owner), 0);
    ck_assert_int_eq(h.release_rc, 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_release(&l), -EPERM); /* free again */
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

struct mover {
    weft_lock *lock;
    int workers_seen; /* bit per worker it ran on while holding */
};

static void *hold_across_suspensions(void *arg)
{
    struct mover *m = arg;
    TU_ASSERT_INT_EQ(weft_lock_acquire(m->lock), 0);
    for (int i = 0; i < 200; i++) {
        m->workers_seen |= 1 << tu_current_worker();
        if (i % 50 == 0)
            TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
        else
            tu_yield();
    }
    TU_ASSERT_INT_EQ(weft_lock_release(m->lock), 0);
    return NULL;
}

static void *busy_yielder(void *arg)
{
    atomic_int *stop = arg;
    while (!atomic_load(stop))
        tu_yield();
    return NULL;
}

START_TEST(lock_held_by_a_task_stays_its_own_across_suspensions)
{
    /* The task holds the lock wherever it runs next: other tasks keep the
     * workers busy so that it may move, and it still releases it. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    atomic_int stop = 0;
    weft_task *busy[3];
    for (int i = 0; i < 3; i++) {
        busy[i] = weft_spawn_ex(rt, busy_yielder, &stop, NULL);
        ck_assert_ptr_nonnull(busy[i]);
    }
    struct mover m = {.lock = &l};
    weft_task *t = weft_spawn_ex(rt, hold_across_suspensions, &m, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, NULL), 0);
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(weft_join(busy[i], NULL), 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
    fprintf(stderr, "lock held across suspensions on workers mask %#x\n",
            (unsigned)m.workers_seen);
}
END_TEST

/* ------------------------------------------------------------------------
 * Waiting */

START_TEST(lock_waiters_get_the_lock_in_fifo_order)
{
    /* _i 0: tasks only; 1: tasks and plain threads in turn. The test's
     * thread holds the lock while they queue, then releases it once;
     * each waiter releases it to the next. */
    enum { N = 6 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    int order[N];
    atomic_int norder = 0;
    struct waiter w[N];
    struct tu_actor a[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct waiter){.lock = &l,
                               .timeout = i % 3 == 2 ? 30.0 : -1,
                               .id = i,
                               .order = order,
                               .norder = &norder};
        tu_actor_start(&a[i], rt, _i && i % 2 ? TU_THREAD : TU_TASK,
                       acquire_once, &w[i]);
        tu_actor_wait_blocked(&a[i]);
    }
    ck_assert_int_eq(weft_lock_release(&l), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(tu_actor_join(&a[i]), 0);
        ck_assert_int_eq(w[i].rc, 0);
        ck_assert_int_eq(w[i].release_rc, 0);
    }
    ck_assert_int_eq(atomic_load(&norder), N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(order[i], i);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(lock_waiter_gets_the_lock_a_task_or_a_thread_releases)
{
    /* _i: bit 0 the waiter is a thread, bit 1 the holder is. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    struct holder h = {.lock = &l};
    struct waiter w = {.lock = &l, .timeout = -1};
    struct tu_actor ha, wa;
    tu_actor_start(&ha, rt, _i & 2 ? TU_THREAD : TU_TASK, hold_until_go, &h);
    tu_wait_flag(&h.held);
    tu_actor_start(&wa, rt, _i & 1 ? TU_THREAD : TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&wa);
    ck_assert(!atomic_load(&wa.done));
    atomic_store(&h.go, 1);
    ck_assert_int_eq(tu_actor_join(&ha), 0);
    ck_assert_int_eq(h.release_rc, 0);
    ck_assert_int_eq(tu_actor_join(&wa), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.release_rc, 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(lock_acquire_timeout_returns_etimedout_after_about_the_time)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    static const double bounds[] = {0.0, 0.02, 0.1};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        struct waiter w = {.lock = &l, .timeout = bounds[i]};
        struct tu_actor a;
        tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w);
        ck_assert_int_eq(tu_actor_join(&a), 0);
        ck_assert_int_eq(w.rc, -ETIMEDOUT);
        ck_assert_int_eq(w.release_rc, -EPERM); /* it does not hold it */
        ck_assert_msg(w.waited >= bounds[i] - TU_EARLY_EPS &&
                          w.waited <= bounds[i] + TU_SLACK,
                      "a %.3f s bound returned after %.6f s", bounds[i],
                      w.waited);
        ck_assert(weft_lock_locked(&l));
    }
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(lock_acquire_timeout_returns_zero_when_released_in_time)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    struct waiter w = {.lock = &l, .timeout = 30.0};
    struct tu_actor a;
    tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&a);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(tu_actor_join(&a), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.release_rc, 0);
    ck_assert_msg(w.waited < 10.0, "waited %.3f s", w.waited);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *enomem_main(void *arg)
{
    weft_lock *l = arg;
    /* One worker, nothing else running, no timer added yet: the first
     * allocation is the timer heap's, for this wait's deadline. */
    weft__alloc_fail_after(1);
    int rc = weft_lock_acquire_timeout(l, 30.0);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_int_eq(weft_lock_release(l), -EPERM);
    ck_assert(weft_lock_locked(l));
    return (void *)1;
}

START_TEST(lock_acquire_timeout_from_a_task_returns_enomem_without_a_timer)
{
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq((intptr_t)tu_run_in(1, enomem_main, &l), 1);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Cancellation and timeout scopes */

START_TEST(lock_waiter_cancelled_returns_ecanceled_without_the_lock)
{
    /* _i 0: weft_lock_acquire; 1: the _timeout form. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    struct waiter w = {.lock = &l, .timeout = _i ? 30.0 : -1};
    struct tu_actor a;
    tu_actor_start(&a, rt, TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&a);
    double t0 = weft_now();
    ck_assert_int_eq(weft_cancel(a.task), 0);
    ck_assert_int_eq(tu_actor_join(&a), -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "the cancel took %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(w.rc, -ECANCELED);
    ck_assert_int_eq(w.release_rc, -EPERM);
    ck_assert(weft_lock_locked(&l)); /* still the test's */
    ck_assert_int_eq(weft_lock_destroy(&l), -EBUSY);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0); /* nobody left queued */
    weft_runtime_free(rt);
}
END_TEST

struct scoped {
    weft_lock *lock;
    int rc, release_rc, exit_rc;
    double waited;
};

static void *acquire_in_scope(void *arg)
{
    struct scoped *sc = arg;
    weft_timeout scope;
    double t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_timeout_enter(&scope, 0.05), 0);
    sc->rc = weft_lock_acquire(sc->lock);
    sc->waited = weft_now() - t0;
    sc->release_rc = weft_lock_release(sc->lock);
    sc->exit_rc = weft_timeout_exit(&scope);
    return NULL;
}

START_TEST(lock_waiter_in_an_expired_timeout_scope_returns_etimedout)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    struct scoped sc = {.lock = &l};
    struct tu_actor a;
    tu_actor_start(&a, rt, TU_TASK, acquire_in_scope, &sc);
    ck_assert_int_eq(tu_actor_join(&a), 0); /* a scope is not a cancel */
    ck_assert_int_eq(sc.rc, -ETIMEDOUT);
    ck_assert_int_eq(sc.release_rc, -EPERM);
    ck_assert_int_eq(sc.exit_rc, -ETIMEDOUT);
    ck_assert_msg(sc.waited >= 0.05 - TU_EARLY_EPS &&
                      sc.waited <= 0.05 + TU_SLACK,
                  "a 50 ms scope ended the wait after %.6f s", sc.waited);
    ck_assert(weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *cancelled_acquirer(void *arg)
{
    weft_lock *held = arg; /* held by the test's thread */
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    /* A free lock is taken without suspending: no cancellation. */
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_acquire_timeout(&l, 1.0), 0);
    /* Held (here by the task itself): the wait sees the cancel at once. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_lock_acquire(held), -ECANCELED);
    ck_assert_int_eq(weft_lock_acquire_timeout(held, 10.0), -ECANCELED);
    ck_assert_int_eq(weft_lock_acquire(&l), -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "cancelled waits took %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_uncancel(), 0);
    /* In an expired scope, the same. */
    weft_timeout scope;
    ck_assert_int_eq(weft_timeout_enter(&scope, 0), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(held), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(weft_lock_release(held), -EPERM);
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    return (void *)1;
}

START_TEST(lock_cancelled_task_takes_a_free_lock_without_waiting)
{
    weft_lock held;
    ck_assert_int_eq(weft_lock_init(&held), 0);
    ck_assert_int_eq(weft_lock_acquire(&held), 0);
    ck_assert_int_eq((intptr_t)tu_run_in(1, cancelled_acquirer, &held), 1);
    ck_assert_int_eq(weft_lock_release(&held), 0);
    ck_assert_int_eq(weft_lock_destroy(&held), 0);
}
END_TEST

START_TEST(lock_cancelled_waiter_leaves_the_lock_to_the_next_waiter)
{
    /* _i: the second waiter is a task (0) or a plain thread (1). */
    weft_runtime *rt = tu_new_runtime(2);
    weft_lock l;
    ck_assert_int_eq(weft_lock_init(&l), 0);
    ck_assert_int_eq(weft_lock_acquire(&l), 0);
    struct waiter w1 = {.lock = &l, .timeout = -1};
    struct waiter w2 = {.lock = &l, .timeout = -1};
    struct tu_actor a1, a2;
    tu_actor_start(&a1, rt, TU_TASK, acquire_once, &w1);
    tu_actor_wait_blocked(&a1);
    tu_actor_start(&a2, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w2);
    tu_actor_wait_blocked(&a2);
    ck_assert_int_eq(weft_cancel(a1.task), 0);
    ck_assert_int_eq(tu_actor_join(&a1), -ECANCELED);
    ck_assert_int_eq(w1.rc, -ECANCELED);
    ck_assert_int_eq(w1.release_rc, -EPERM);
    ck_assert_int_eq(weft_lock_release(&l), 0);
    ck_assert_int_eq(tu_actor_join(&a2), 0);
    ck_assert_int_eq(w2.rc, 0);
    ck_assert_int_eq(w2.release_rc, 0);
    ck_assert(!weft_lock_locked(&l));
    ck_assert_int_eq(weft_lock_destroy(&l), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Fairness */

struct hammer {
    weft_lock lock;
    atomic_int stop;
    atomic_long iters; /* the hammer's acquisitions */
    long shared;       /* under the lock */
};

static void *hammer_loop(void *arg)
{
    struct hammer *h = arg;
    while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
        TU_ASSERT_INT_EQ(weft_lock_acquire(&h->lock), 0);
        h->shared++;
        atomic_fetch_add_explicit(&h->iters, 1, memory_order_relaxed);
        TU_ASSERT_INT_EQ(weft_lock_release(&h->lock), 0);
    }
    return NULL;
}

struct starved {
    struct hammer *h;
    int rounds;
    bool yield; /* a task waiter waits between rounds with weft_yield */
    double max_wait, total_wait;
    long hammered; /* hammer acquisitions while the waiter waited */
    atomic_int done_rounds;
};

/* Wait for the hammer to take the lock `more` times: with weft_yield if
 * `yield` and the caller is a task, else without suspending. */
static void wait_for_hammering(struct hammer *h, long more, bool yield)
{
    long from = atomic_load(&h->iters);
    double t0 = weft_now();
    while (atomic_load(&h->iters) < from + more) {
        if (weft_now() - t0 > 10.0)
            ck_abort_msg("the hammer stopped hammering");
        if (yield && weft_current())
            tu_yield();
        else
            sched_yield();
    }
}

static void *starved_waiter(void *arg)
{
    struct starved *s = arg;
    for (int r = 0; r < s->rounds; r++) {
        wait_for_hammering(s->h, 100, s->yield);
        long before = atomic_load(&s->h->iters);
        double t0 = weft_now();
        TU_ASSERT_INT_EQ(weft_lock_acquire(&s->h->lock), 0);
        double waited = weft_now() - t0;
        s->hammered += atomic_load(&s->h->iters) - before;
        s->h->shared++;
        TU_ASSERT_INT_EQ(weft_lock_release(&s->h->lock), 0);
        s->total_wait += waited;
        if (waited > s->max_wait)
            s->max_wait = waited;
        atomic_store(&s->done_rounds, r + 1);
    }
    /* The hammer goes on once the waiter is done with the lock. */
    wait_for_hammering(s->h, 100, s->yield);
    return NULL;
}

static void check_not_starved(int how, bool yield)
{
    /* how: bit 0 the waiter is a thread, bit 1 the hammer is. The hammer
     * releases and takes the lock again at once, forever; a waiter passed
     * over for more than a millisecond is handed the lock, so each of its
     * acquisitions ends within a bound, however long the hammer goes on.
     * Between its acquisitions the waiter waits for the hammer to go on,
     * without suspending, or (yield) with weft_yield. */
    static struct hammer h;
    ck_assert_int_eq(weft_lock_init(&h.lock), 0);
    weft_runtime *rt = tu_new_runtime(2);
    struct starved s = {
        .h = &h, .rounds = TU_SCALE(50, 30, 20), .yield = yield};
    struct tu_actor ha, wa;
    tu_actor_start(&ha, rt, how & 2 ? TU_THREAD : TU_TASK, hammer_loop, &h);
    tu_actor_start(&wa, rt, how & 1 ? TU_THREAD : TU_TASK, starved_waiter, &s);
    /* Watched from here, so that a starved waiter fails the test rather
     * than hang it. */
    double t0 = weft_now();
    while (!atomic_load(&wa.done)) {
        if (weft_now() - t0 > 5.0)
            ck_abort_msg(
                "the waiter is starved: %d of %d acquisitions in "
                "5 s, while the hammer took the lock %ld times "
                "(waiter task state %d; 1 = READY)",
                atomic_load(&s.done_rounds), s.rounds, atomic_load(&h.iters),
                wa.kind == TU_TASK ? tu_task_state(rt, weft_task_id(wa.task))
                                   : -1);
        usleep(1000);
    }
    ck_assert_int_eq(tu_actor_join(&wa), 0);
    atomic_store(&h.stop, 1);
    ck_assert_int_eq(tu_actor_join(&ha), 0);
    weft_runtime_free(rt);
    fprintf(stderr,
            "lock fairness (%s waiter, %s hammer): %d acquisitions, "
            "longest wait %.3f ms, mean %.3f ms, %ld hammer acquisitions "
            "meanwhile\n",
            how & 1 ? "thread" : "task", how & 2 ? "thread" : "task", s.rounds,
            s.max_wait * 1e3, s.total_wait / s.rounds * 1e3, s.hammered);
    double bound = TU_SCALE(0.25, 1.0, 1.5);
    ck_assert_msg(s.max_wait < bound,
                  "a waiter waited %.3f s for a lock released every few "
                  "ns (bound %.3f s)",
                  s.max_wait, bound);
    ck_assert_int_eq(h.shared, atomic_load(&h.iters) + s.rounds);
    ck_assert(!weft_lock_locked(&h.lock));
    ck_assert_int_eq(weft_lock_destroy(&h.lock), 0);
}

START_TEST(lock_waiter_is_not_starved_by_a_holder_that_reacquires_in_a_loop)
{
    /* _i 0: tasks on 2 workers (the hammer never suspends, so the waiter
     * runs on the other worker); 1: a thread waits, a task hammers; 2:
     * the reverse; 3: threads. */
    check_not_starved(_i, false);
}
END_TEST

START_TEST(lock_yielding_waiter_task_is_not_starved_by_a_hammering_task)
{
    /* As above with tasks, but the waiter calls weft_yield between its
     * acquisitions: a yield on the worker where the hammer then runs
     * must not leave it there while the other worker idles. */
    check_not_starved(0, true);
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress */

struct counter {
    weft_lock lock;
    long value; /* under the lock */
    int task_iters, thread_iters;
};

static void take(weft_lock *l, int i)
{
    int rc;
    switch (i % 4) {
    case 1:
        rc = weft_lock_acquire_timeout(l, WEFT_FOREVER);
        break;
    case 2:
        rc = weft_lock_acquire_nowait(l);
        if (rc == -EBUSY)
            rc = weft_lock_acquire(l);
        break;
    case 3:
        rc = weft_lock_acquire_timeout(l, 60.0);
        break;
    default:
        rc = weft_lock_acquire(l);
        break;
    }
    TU_ASSERT_INT_EQ(rc, 0);
}

static void *count_task(void *arg)
{
    struct counter *c = arg;
    for (int i = 0; i < c->task_iters; i++) {
        take(&c->lock, i);
        long v = c->value;
        if (i % 16 == 0)
            tu_yield(); /* hold it across a suspension */
        c->value = v + 1;
        TU_ASSERT_INT_EQ(weft_lock_release(&c->lock), 0);
    }
    return NULL;
}

static void *count_thread(void *arg)
{
    struct counter *c = arg;
    for (int i = 0; i < c->thread_iters; i++) {
        take(&c->lock, i);
        long v = c->value;
        if (i % 64 == 0)
            sched_yield(); /* be preempted holding it */
        c->value = v + 1;
        TU_ASSERT_INT_EQ(weft_lock_release(&c->lock), 0);
    }
    return NULL;
}

START_TEST(lock_counter_under_threads_and_tasks_is_exact)
{
    /* 4 plain threads and 100 tasks on 2 workers add to one counter under
     * one lock, read-modify-write with a suspension or a yield in the
     * middle now and then: the total is exact. */
    enum { TASKS = 100, THREADS = 4 };
    static struct counter c;
    c.task_iters = TU_SCALE(500, 300, 150);
    c.thread_iters = TU_SCALE(20000, 8000, 4000);
    ck_assert_int_eq(weft_lock_init(&c.lock), 0);
    weft_runtime *rt = tu_new_runtime(2);
    weft_task *t[TASKS];
    pthread_t th[THREADS];
    for (int i = 0; i < TASKS; i++) {
        t[i] = weft_spawn_ex(rt, count_task, &c, NULL);
        ck_assert_ptr_nonnull(t[i]);
    }
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, count_thread, &c), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < TASKS; i++)
        ck_assert_int_eq(weft_join(t[i], NULL), 0);
    weft_runtime_free(rt);
    ck_assert_int_eq(c.value, (long)TASKS * c.task_iters +
                                  (long)THREADS * c.thread_iters);
    ck_assert(!weft_lock_locked(&c.lock));
    ck_assert_int_eq(weft_lock_destroy(&c.lock), 0);
}
END_TEST

START_TEST(lock_cancel_racing_release_never_loses_the_lock)
{
    /* Each round the test's thread holds the lock with one task (odd
     * rounds) or two (even rounds) queued; it releases as a racer cancels
     * the first. The first either got the lock (0, and released it) or was
     * cancelled without it; the second gets it either way (it would time
     * out if the lock were lost); the lock ends free with nobody queued. */
    int rounds = TU_SCALE(3000, 2000, 1000);
    uint64_t rng = tu_seed("lock_cancel_racing_release_never_loses_the_lock");
    weft_runtime *rt = tu_new_runtime(2);
    struct tu_cancel_race cr;
    int64_t bias = 0;
    struct tu_racer r;
    tu_racer_start(&r, tu_cancel_victim, &cr, tu_rand(&rng), TU_SPIN_NS);
    int got = 0, cancelled = 0;
    for (int g = 1; g <= rounds; g++) {
        weft_lock l;
        TU_ASSERT_INT_EQ(weft_lock_init(&l), 0);
        TU_ASSERT_INT_EQ(weft_lock_acquire(&l), 0);
        bool two = g % 2 == 0;
        struct waiter w1 = {.lock = &l, .timeout = -1};
        struct waiter w2 = {.lock = &l, .timeout = 10.0};
        struct tu_actor a1, a2;
        tu_actor_start(&a1, rt, TU_TASK, acquire_once, &w1);
        tu_actor_wait_blocked(&a1);
        if (two) {
            tu_actor_start(&a2, rt, TU_TASK, acquire_once, &w2);
            tu_actor_wait_blocked(&a2);
        }
        cr.victim = a1.task;
        cr.delay_ns = bias;
        tu_racer_go(&r, g);
        tu_spin_random(&rng, TU_SPIN_NS);
        tu_spin_for(-bias);
        TU_ASSERT_INT_EQ(weft_lock_release(&l), 0);
        tu_racer_wait(&r, g);
        TU_ASSERT(cr.cancel_rc == 0 || cr.cancel_rc == -ESRCH);
        int jrc = tu_actor_join(&a1);
        TU_ASSERT(w1.rc == 0 || w1.rc == -ECANCELED);
        TU_ASSERT_INT_EQ(jrc, w1.rc);
        TU_ASSERT_INT_EQ(w1.release_rc, w1.rc == 0 ? 0 : -EPERM);
        if (w1.rc == 0)
            got++;
        else
            cancelled++;
        tu_steer(&bias, w1.rc != 0);
        if (two) {
            TU_ASSERT_INT_EQ(tu_actor_join(&a2), 0);
            TU_ASSERT_INT_EQ(w2.rc, 0);
            TU_ASSERT_INT_EQ(w2.release_rc, 0);
        }
        TU_ASSERT(!weft_lock_locked(&l));
        TU_ASSERT_INT_EQ(weft_lock_destroy(&l), 0);
    }
    tu_racer_stop(&r);
    weft_runtime_free(rt);
    fprintf(stderr,
            "lock cancel race: %d rounds, granted %d, cancelled %d, final bias "
            "%lld ns\n",
            rounds, got, cancelled, (long long)bias);
    ck_assert_int_eq(got + cancelled, rounds);
}
END_TEST

struct timeout_race {
    weft_lock lock;
    struct tu_racer r;
    int rounds;
    uint64_t rng;
    int got, timed_out;
    int racer_rc[2]; /* the racer's last acquire and release */
};

/* The racer holds the lock: odd rounds it takes it, even ones it gives it
 * back. */
static void take_or_give(void *ctx)
{
    struct timeout_race *tr = ctx;
    if (atomic_load(&tr->r.go) % 2)
        tr->racer_rc[0] = weft_lock_acquire(&tr->lock);
    else
        tr->racer_rc[1] = weft_lock_release(&tr->lock);
}

static void *timeout_race_rounds(void *arg)
{
    struct timeout_race *tr = arg;
    for (int k = 1; k <= tr->rounds; k++) {
        tu_racer_go(&tr->r, 2 * k - 1);
        tu_racer_wait(&tr->r, 2 * k - 1);
        TU_ASSERT_INT_EQ(tr->racer_rc[0], 0);
        double bound = (double)(tu_rand(&tr->rng) % 100) * 1e-6;
        tu_racer_go(&tr->r, 2 * k);
        int rc = weft_lock_acquire_timeout(&tr->lock, bound);
        tu_racer_wait(&tr->r, 2 * k);
        TU_ASSERT_INT_EQ(tr->racer_rc[1], 0);
        TU_ASSERT(rc == 0 || rc == -ETIMEDOUT);
        /* The lock is this waiter's exactly when it said 0. */
        TU_ASSERT(weft_lock_locked(&tr->lock) == (rc == 0));
        TU_ASSERT_INT_EQ(weft_lock_release(&tr->lock), rc == 0 ? 0 : -EPERM);
        TU_ASSERT(!weft_lock_locked(&tr->lock));
        if (rc == 0)
            tr->got++;
        else
            tr->timed_out++;
    }
    return (void *)1;
}

START_TEST(lock_timeout_racing_release_never_loses_the_lock)
{
    /* A waiter with a tiny bound (_i 0: a plain thread, 1: a task) and the
     * holder's release land at about the same moment, many times. The
     * release comes 0 to 200 us after the wait starts, the bound is 0 to
     * 100 us (a futex or a timer adds 50 us or more to it). */
    static struct timeout_race tr;
    tr.rounds = TU_SCALE(3000, 2000, 1000);
    tr.rng = tu_seed("lock_timeout_racing_release_never_loses_the_lock");
    tr.got = tr.timed_out = 0;
    ck_assert_int_eq(weft_lock_init(&tr.lock), 0);
    tu_racer_start(&tr.r, take_or_give, &tr, tu_rand(&tr.rng), 200000);
    if (_i == 0)
        ck_assert_int_eq((intptr_t)timeout_race_rounds(&tr), 1);
    else
        ck_assert_int_eq((intptr_t)tu_run_in(1, timeout_race_rounds, &tr), 1);
    tu_racer_stop(&tr.r);
    fprintf(stderr,
            "lock timeout race (%s): %d rounds, granted %d, timed out %d\n",
            _i ? "task" : "thread", tr.rounds, tr.got, tr.timed_out);
    ck_assert_int_eq(tr.got + tr.timed_out, tr.rounds);
    ck_assert(!weft_lock_locked(&tr.lock));
    ck_assert_int_eq(weft_lock_destroy(&tr.lock), 0);
}
END_TEST

static Suite *lock_suite(void)
{
    Suite *s = suite_create("lock");

    TCase *tc = tcase_create("basic");
    tcase_add_test(
        tc, lock_nowait_takes_a_free_lock_and_returns_ebusy_on_a_held_one);
    tcase_add_test(tc,
                   lock_acquire_of_a_free_lock_returns_at_once_in_every_form);
    tcase_add_test(tc, lock_calls_on_null_return_einval);
    tcase_add_test(
        tc, lock_calls_on_an_uninitialised_or_destroyed_lock_return_einval);
    tcase_add_test(
        tc, lock_acquire_timeout_with_negative_or_nan_seconds_returns_einval);
    tcase_add_loop_test(tc, lock_destroy_while_held_or_waited_on_returns_ebusy,
                        0, 2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("ownership");
    tcase_add_loop_test(tc, lock_release_by_non_owner_returns_eperm, 0, 2);
    tcase_add_test(tc, lock_held_by_a_task_stays_its_own_across_suspensions);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait");
    tcase_add_loop_test(tc, lock_waiters_get_the_lock_in_fifo_order, 0, 2);
    tcase_add_loop_test(
        tc, lock_waiter_gets_the_lock_a_task_or_a_thread_releases, 0, 4);
    tcase_add_loop_test(
        tc, lock_acquire_timeout_returns_etimedout_after_about_the_time, 0, 2);
    tcase_add_loop_test(
        tc, lock_acquire_timeout_returns_zero_when_released_in_time, 0, 2);
    tcase_add_test(
        tc, lock_acquire_timeout_from_a_task_returns_enomem_without_a_timer);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel");
    tcase_add_loop_test(
        tc, lock_waiter_cancelled_returns_ecanceled_without_the_lock, 0, 2);
    tcase_add_test(tc,
                   lock_waiter_in_an_expired_timeout_scope_returns_etimedout);
    tcase_add_test(tc, lock_cancelled_task_takes_a_free_lock_without_waiting);
    tcase_add_loop_test(
        tc, lock_cancelled_waiter_leaves_the_lock_to_the_next_waiter, 0, 2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("fairness");
    tcase_add_loop_test(
        tc, lock_waiter_is_not_starved_by_a_holder_that_reacquires_in_a_loop, 0,
        4);
    tcase_add_test(
        tc, lock_yielding_waiter_task_is_not_starved_by_a_hammering_task);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(tc, lock_counter_under_threads_and_tasks_is_exact);
    tcase_add_test(tc, lock_cancel_racing_release_never_loses_the_lock);
    tcase_add_loop_test(tc, lock_timeout_racing_release_never_loses_the_lock, 0,
                        2);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(lock_suite());
}
