/* Semaphore (weft.h, "Synchronisation"): weft_sem and its bounded form,
 * shared by tasks on any worker and by plain threads: permits counted
 * exactly, -EOVERFLOW past the bound, -EAGAIN from the nowait form,
 * -EINVAL for bad objects and arguments, -EBUSY from destroy while waited
 * on, FIFO service with no permit taken ahead of an earlier waiter, waits
 * ended by cancellation, timeout scopes and the _timeout bound, and the
 * races between a grant and an interrupt, in which a permit must be
 * neither lost nor given twice.
 *
 * A waiter is known to be waiting when its task shows as WAITING, or when
 * its thread sleeps in the kernel; never after a sleep. Each test makes
 * its own runtime: Check forks every test.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sched/alloc.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * A waiter: one acquire, with or without a bound */

struct waiter {
    weft_sem *sem;
    double timeout; /* < 0: weft_sem_acquire; else the _timeout form */
    int id;
    int *order; /* when set: ids appended in the order they got a permit */
    atomic_int *norder;
    int rc;
    double waited;
};

static void *acquire_once(void *arg)
{
    struct waiter *w = arg;
    double t0 = weft_now();
    w->rc = w->timeout < 0 ? weft_sem_acquire(w->sem)
                           : weft_sem_acquire_timeout(w->sem, w->timeout);
    w->waited = weft_now() - t0;
    if (w->order && w->rc == 0)
        w->order[atomic_fetch_add(w->norder, 1)] = w->id;
    return NULL;
}

/* ------------------------------------------------------------------------
 * Initialisation and bad input */

START_TEST(sem_init_sets_the_value_and_rejects_a_negative_one)
{
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    ck_assert_int_eq(weft_sem_init(&s, 5), 0);
    ck_assert_int_eq(weft_sem_value(&s), 5);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    ck_assert_int_eq(weft_sem_init_bounded(&s, 2), 0);
    ck_assert_int_eq(weft_sem_value(&s), 2);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);

    ck_assert_int_eq(weft_sem_init(&s, -1), -EINVAL);
    ck_assert_int_eq(weft_sem_value(&s), -EINVAL); /* left uninitialised */
    ck_assert_int_eq(weft_sem_init_bounded(&s, -1), -EINVAL);
    ck_assert_int_eq(weft_sem_init(&s, -1000000), -EINVAL);
    ck_assert_int_eq(weft_sem_value(&s), -EINVAL);
}
END_TEST

START_TEST(sem_calls_on_null_return_einval)
{
    ck_assert_int_eq(weft_sem_init(NULL, 1), -EINVAL);
    ck_assert_int_eq(weft_sem_init_bounded(NULL, 1), -EINVAL);
    ck_assert_int_eq(weft_sem_acquire(NULL), -EINVAL);
    ck_assert_int_eq(weft_sem_acquire_timeout(NULL, 1.0), -EINVAL);
    ck_assert_int_eq(weft_sem_acquire_nowait(NULL), -EINVAL);
    ck_assert_int_eq(weft_sem_release(NULL), -EINVAL);
    ck_assert_int_eq(weft_sem_value(NULL), -EINVAL);
    ck_assert_int_eq(weft_sem_destroy(NULL), -EINVAL);
}
END_TEST

static void check_invalid_sem(weft_sem *s)
{
    ck_assert_int_eq(weft_sem_acquire(s), -EINVAL);
    ck_assert_int_eq(weft_sem_acquire_timeout(s, 1.0), -EINVAL);
    ck_assert_int_eq(weft_sem_acquire_timeout(s, 0), -EINVAL);
    ck_assert_int_eq(weft_sem_acquire_nowait(s), -EINVAL);
    ck_assert_int_eq(weft_sem_release(s), -EINVAL);
    ck_assert_int_eq(weft_sem_value(s), -EINVAL);
    ck_assert_int_eq(weft_sem_destroy(s), -EINVAL);
}

static void *invalid_sem_main(void *arg)
{
    check_invalid_sem(arg);
    return (void *)1;
}

START_TEST(sem_calls_on_an_uninitialised_or_destroyed_sem_return_einval)
{
    weft_sem s;
    memset(&s, 0, sizeof s);
    check_invalid_sem(&s);
    memset(&s, 0xa5, sizeof s);
    check_invalid_sem(&s);

    ck_assert_int_eq(weft_sem_init(&s, 3), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    check_invalid_sem(&s); /* from a plain thread */
    ck_assert_int_eq((intptr_t)tu_run_in(1, invalid_sem_main, &s), 1);

    /* Initialised again, it works again. */
    ck_assert_int_eq(weft_sem_init(&s, 1), 0);
    ck_assert_int_eq(weft_sem_acquire(&s), 0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
}
END_TEST

static void check_bad_timeouts(weft_sem *s, long value)
{
    static const double bad[] = {-1.0, -1e-9, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(weft_sem_acquire_timeout(s, bad[i]), -EINVAL);
        ck_assert_int_eq(weft_sem_value(s), value); /* nothing taken */
    }
}

static void *bad_timeouts_main(void *arg)
{
    weft_sem *s = arg;
    check_bad_timeouts(s, weft_sem_value(s));
    return (void *)1;
}

START_TEST(sem_acquire_timeout_with_negative_or_nan_seconds_returns_einval)
{
    weft_sem s;
    /* With a permit free (it is not taken) and with none (no wait). */
    for (long v = 1; v >= 0; v--) {
        ck_assert_int_eq(weft_sem_init(&s, v), 0);
        check_bad_timeouts(&s, v);
        ck_assert_int_eq((intptr_t)tu_run_in(1, bad_timeouts_main, &s), 1);
        ck_assert_int_eq(weft_sem_value(&s), v);
        ck_assert_int_eq(weft_sem_destroy(&s), 0);
    }
}
END_TEST

/* ------------------------------------------------------------------------
 * Permits */

static void check_permits(void)
{
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 2), 0);
    ck_assert_int_eq(weft_sem_acquire(&s), 0);
    ck_assert_int_eq(weft_sem_value(&s), 1);
    ck_assert_int_eq(weft_sem_acquire_timeout(&s, 0), 0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_acquire_nowait(&s), -EAGAIN);
    double t0 = weft_now();
    ck_assert_int_eq(weft_sem_acquire_timeout(&s, 0), -ETIMEDOUT);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "a zero bound waited %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_value(&s), 1);
    ck_assert_int_eq(weft_sem_acquire_nowait(&s), 0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_acquire_timeout(&s, WEFT_FOREVER), 0);
    /* Unbounded: releases may take it past its initial value. */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_value(&s), 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(weft_sem_acquire(&s), 0);
    ck_assert_int_eq(weft_sem_acquire_nowait(&s), -EAGAIN);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
}

static void *permits_main(void *arg)
{
    (void)arg;
    check_permits();
    return (void *)1;
}

START_TEST(sem_acquire_takes_a_permit_and_release_gives_it_back)
{
    check_permits(); /* a plain thread */
    ck_assert_int_eq((intptr_t)tu_run_in(2, permits_main, NULL), 1);
}
END_TEST

static void check_bounded(void)
{
    weft_sem s;
    ck_assert_int_eq(weft_sem_init_bounded(&s, 2), 0);
    ck_assert_int_eq(weft_sem_release(&s), -EOVERFLOW);
    ck_assert_int_eq(weft_sem_value(&s), 2); /* nothing changed */
    ck_assert_int_eq(weft_sem_acquire(&s), 0);
    ck_assert_int_eq(weft_sem_acquire(&s), 0);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_release(&s), -EOVERFLOW);
    ck_assert_int_eq(weft_sem_value(&s), 2);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);

    /* Bounded at 0: never a permit to give back. */
    ck_assert_int_eq(weft_sem_init_bounded(&s, 0), 0);
    ck_assert_int_eq(weft_sem_release(&s), -EOVERFLOW);
    ck_assert_int_eq(weft_sem_acquire_nowait(&s), -EAGAIN);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
}

static void *bounded_main(void *arg)
{
    (void)arg;
    check_bounded();
    return (void *)1;
}

START_TEST(sem_bounded_release_past_the_bound_returns_eoverflow)
{
    check_bounded();
    ck_assert_int_eq((intptr_t)tu_run_in(1, bounded_main, NULL), 1);
}
END_TEST

START_TEST(sem_bounded_release_with_a_waiter_hands_the_permit_over)
{
    /* Bounded at 1 and empty, with a waiter: the release is within the
     * bound and goes to the waiter; one more release would exceed it. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init_bounded(&s, 1), 0);
    ck_assert_int_eq(weft_sem_acquire(&s), 0);
    struct waiter w = {.sem = &s, .timeout = -1};
    struct tu_actor a;
    tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&a);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(tu_actor_join(&a), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_release(&s), 0); /* the waiter's permit */
    ck_assert_int_eq(weft_sem_release(&s), -EOVERFLOW);
    ck_assert_int_eq(weft_sem_value(&s), 1);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(sem_destroy_while_waited_on_returns_ebusy_and_it_stays_usable)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    /* Permits free and nobody waiting: not busy. */
    ck_assert_int_eq(weft_sem_init(&s, 3), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);

    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    struct waiter w = {.sem = &s, .timeout = -1};
    struct tu_actor a;
    tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&a);
    ck_assert_int_eq(weft_sem_destroy(&s), -EBUSY);
    ck_assert_int_eq(weft_sem_value(&s), 0); /* still initialised */
    ck_assert_int_eq(weft_sem_acquire_nowait(&s), -EAGAIN);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(tu_actor_join(&a), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Waiting */

START_TEST(sem_waiters_are_served_in_fifo_order)
{
    /* _i 0: tasks only; 1: tasks and plain threads in turn. Each release
     * must complete the oldest waiter and no other. */
    enum { N = 6 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    int order[N];
    atomic_int norder = 0;
    struct waiter w[N];
    struct tu_actor a[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct waiter){.sem = &s,
                               .timeout = i % 3 == 2 ? 30.0 : -1,
                               .id = i,
                               .order = order,
                               .norder = &norder};
        tu_actor_start(&a[i], rt, _i && i % 2 ? TU_THREAD : TU_TASK,
                       acquire_once, &w[i]);
        tu_actor_wait_blocked(&a[i]);
    }
    for (int k = 0; k < N; k++) {
        ck_assert_int_eq(weft_sem_release(&s), 0);
        tu_actor_wait_done(&a[k]);
        for (int j = k + 1; j < N; j++)
            ck_assert_msg(!atomic_load(&a[j].done),
                          "release %d completed waiter %d", k, j);
        ck_assert_int_eq(tu_actor_join(&a[k]), 0);
        ck_assert_int_eq(w[k].rc, 0);
    }
    ck_assert_int_eq(atomic_load(&norder), N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(order[i], i);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(sem_release_to_a_waiter_is_not_taken_by_a_later_acquirer)
{
    /* The permit goes to the waiter at the release: an acquire right
     * after it, before the waiter has run, finds none. */
    weft_runtime *rt = tu_new_runtime(1);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    struct waiter w = {.sem = &s, .timeout = -1};
    struct tu_actor a;
    tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&a);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_acquire_nowait(&s), -EAGAIN);
    ck_assert_int_eq(weft_sem_acquire_timeout(&s, 0), -ETIMEDOUT);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(tu_actor_join(&a), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

struct releaser {
    weft_sem *sem;
    atomic_int go;
    int rc;
};

static void *release_on_go(void *arg)
{
    struct releaser *r = arg;
    while (!atomic_load(&r->go))
        tu_pause();
    r->rc = weft_sem_release(r->sem);
    return NULL;
}

START_TEST(sem_waiter_gets_the_permit_a_task_or_a_thread_releases)
{
    /* _i: bit 0 the waiter is a thread, bit 1 the releaser is. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    struct waiter w = {.sem = &s, .timeout = -1};
    struct releaser r = {.sem = &s};
    struct tu_actor wa, ra;
    tu_actor_start(&ra, rt, _i & 2 ? TU_THREAD : TU_TASK, release_on_go, &r);
    tu_actor_start(&wa, rt, _i & 1 ? TU_THREAD : TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&wa);
    atomic_store(&r.go, 1);
    ck_assert_int_eq(tu_actor_join(&ra), 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(tu_actor_join(&wa), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(sem_acquire_timeout_returns_etimedout_after_about_the_time)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    static const double bounds[] = {0.0, 0.02, 0.1};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        struct waiter w = {.sem = &s, .timeout = bounds[i]};
        struct tu_actor a;
        tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w);
        ck_assert_int_eq(tu_actor_join(&a), 0);
        ck_assert_int_eq(w.rc, -ETIMEDOUT);
        ck_assert_msg(w.waited >= bounds[i] - TU_EARLY_EPS &&
                          w.waited <= bounds[i] + TU_SLACK,
                      "a %.3f s bound returned after %.6f s", bounds[i],
                      w.waited);
        ck_assert_int_eq(weft_sem_value(&s), 0);
    }
    /* The timed-out waiters left the queue: a permit stays. */
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_value(&s), 1);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(sem_acquire_timeout_returns_zero_when_a_permit_comes_in_time)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    struct waiter w = {.sem = &s, .timeout = 30.0};
    struct tu_actor a;
    tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&a);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(tu_actor_join(&a), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_msg(w.waited < 10.0, "waited %.3f s", w.waited);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *enomem_main(void *arg)
{
    weft_sem *s = arg;
    /* One worker, nothing else running, no timer added yet: the first
     * allocation is the timer heap's, for this wait's deadline. */
    weft__alloc_fail_after(1);
    int rc = weft_sem_acquire_timeout(s, 30.0);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_int_eq(weft_sem_value(s), 0);
    /* It is not left queued: a release goes to the count. */
    ck_assert_int_eq(weft_sem_release(s), 0);
    ck_assert_int_eq(weft_sem_value(s), 1);
    ck_assert_int_eq(weft_sem_acquire_timeout(s, 30.0), 0);
    return (void *)1;
}

START_TEST(sem_acquire_timeout_from_a_task_returns_enomem_without_a_timer)
{
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    ck_assert_int_eq((intptr_t)tu_run_in(1, enomem_main, &s), 1);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Cancellation and timeout scopes */

START_TEST(sem_waiter_cancelled_returns_ecanceled_and_takes_no_permit)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    struct waiter w = {.sem = &s, .timeout = _i ? 30.0 : -1};
    struct tu_actor a;
    tu_actor_start(&a, rt, TU_TASK, acquire_once, &w);
    tu_actor_wait_blocked(&a);
    double t0 = weft_now();
    ck_assert_int_eq(weft_cancel(a.task), 0);
    ck_assert_int_eq(tu_actor_join(&a), -ECANCELED);
    ck_assert_int_eq(w.rc, -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "the cancel took %.3f s",
                  weft_now() - t0);
    /* It left the queue and took nothing. */
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_value(&s), 1);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

struct scoped {
    weft_sem *sem;
    int rc, exit_rc;
    double waited;
};

static void *acquire_in_scope(void *arg)
{
    struct scoped *sc = arg;
    weft_timeout scope;
    double t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_timeout_enter(&scope, 0.05), 0);
    sc->rc = weft_sem_acquire(sc->sem);
    sc->waited = weft_now() - t0;
    sc->exit_rc = weft_timeout_exit(&scope);
    return NULL;
}

START_TEST(sem_waiter_in_an_expired_timeout_scope_returns_etimedout)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    struct scoped sc = {.sem = &s};
    struct tu_actor a;
    tu_actor_start(&a, rt, TU_TASK, acquire_in_scope, &sc);
    ck_assert_int_eq(tu_actor_join(&a), 0); /* a scope is not a cancel */
    ck_assert_int_eq(sc.rc, -ETIMEDOUT);
    ck_assert_int_eq(sc.exit_rc, -ETIMEDOUT);
    ck_assert_msg(sc.waited >= 0.05 - TU_EARLY_EPS &&
                      sc.waited <= 0.05 + TU_SLACK,
                  "a 50 ms scope ended the wait after %.6f s", sc.waited);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_value(&s), 1);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *cancelled_acquirer(void *arg)
{
    weft_sem *s = arg;
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    /* A free permit is taken without suspending: no cancellation. */
    ck_assert_int_eq(weft_sem_acquire(s), 0);
    ck_assert_int_eq(weft_sem_acquire_timeout(s, 1.0), 0);
    ck_assert_int_eq(weft_sem_value(s), 0);
    /* None free: the wait sees the cancel at once. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_sem_acquire(s), -ECANCELED);
    ck_assert_int_eq(weft_sem_acquire_timeout(s, 10.0), -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "cancelled waits took %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(weft_sem_acquire_nowait(s), -EAGAIN);
    ck_assert_int_eq(weft_uncancel(), 0);
    /* In an expired scope, the same. */
    weft_timeout scope;
    ck_assert_int_eq(weft_timeout_enter(&scope, 0), 0);
    ck_assert_int_eq(weft_sem_release(s), 0);
    ck_assert_int_eq(weft_sem_acquire(s), 0);
    ck_assert_int_eq(weft_sem_acquire(s), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_int_eq(weft_sem_release(s), 0);
    ck_assert_int_eq(weft_sem_release(s), 0);
    ck_assert_int_eq(weft_sem_release(s), 0);
    return (void *)1;
}

START_TEST(sem_cancelled_task_takes_a_free_permit_without_waiting)
{
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 2), 0);
    ck_assert_int_eq((intptr_t)tu_run_in(1, cancelled_acquirer, &s), 1);
    ck_assert_int_eq(weft_sem_value(&s), 3);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
}
END_TEST

START_TEST(sem_cancelled_waiter_leaves_the_permit_to_the_next_waiter)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    struct waiter w1 = {.sem = &s, .timeout = -1};
    struct waiter w2 = {.sem = &s, .timeout = -1};
    struct tu_actor a1, a2;
    tu_actor_start(&a1, rt, TU_TASK, acquire_once, &w1);
    tu_actor_wait_blocked(&a1);
    tu_actor_start(&a2, rt, _i ? TU_THREAD : TU_TASK, acquire_once, &w2);
    tu_actor_wait_blocked(&a2);
    ck_assert_int_eq(weft_cancel(a1.task), 0);
    ck_assert_int_eq(tu_actor_join(&a1), -ECANCELED);
    ck_assert_int_eq(w1.rc, -ECANCELED);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(tu_actor_join(&a2), 0);
    ck_assert_int_eq(w2.rc, 0);
    ck_assert_int_eq(weft_sem_value(&s), 0);
    ck_assert_int_eq(weft_sem_destroy(&s), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress */

struct admit {
    weft_sem sem;
    long n;
    int iters;
    atomic_int inside, max_inside;
    atomic_long entries;
};

static void admit_once(struct admit *ad, int i, bool task)
{
    int rc;
    switch (i % 3) {
    case 0:
        rc = weft_sem_acquire_nowait(&ad->sem);
        if (rc == -EAGAIN)
            rc = weft_sem_acquire(&ad->sem);
        break;
    case 1:
        rc = weft_sem_acquire_timeout(&ad->sem, WEFT_FOREVER);
        break;
    default:
        rc = weft_sem_acquire(&ad->sem);
        break;
    }
    TU_ASSERT_INT_EQ(rc, 0);
    int in = atomic_fetch_add(&ad->inside, 1) + 1;
    if (in > ad->n)
        ck_abort_msg("%d inside a semaphore of %ld", in, ad->n);
    int max = atomic_load(&ad->max_inside);
    while (in > max && !atomic_compare_exchange_weak(&ad->max_inside, &max, in))
        ;
    atomic_fetch_add(&ad->entries, 1);
    if (task && i % 4 == 0)
        tu_yield(); /* park holding the permit */
    else
        for (volatile int k = 0; k < 50; k++)
            ;
    atomic_fetch_sub(&ad->inside, 1);
    TU_ASSERT_INT_EQ(weft_sem_release(&ad->sem), 0); /* never past n */
}

static void *admit_task(void *arg)
{
    struct admit *ad = arg;
    for (int i = 0; i < ad->iters; i++)
        admit_once(ad, i, true);
    return NULL;
}

static void *admit_thread(void *arg)
{
    struct admit *ad = arg;
    for (int i = 0; i < ad->iters * 4; i++)
        admit_once(ad, i, false);
    return NULL;
}

START_TEST(sem_of_n_never_admits_more_than_n_at_once)
{
    enum { TASKS = 32, THREADS = 4 };
    static struct admit ad;
    ad.n = 3;
    ad.iters = TU_SCALE(1000, 500, 200);
    ck_assert_int_eq(weft_sem_init_bounded(&ad.sem, ad.n), 0);
    weft_runtime *rt = tu_new_runtime(4);
    weft_task *t[TASKS];
    pthread_t th[THREADS];
    for (int i = 0; i < TASKS; i++) {
        t[i] = weft_spawn_ex(rt, admit_task, &ad, NULL);
        ck_assert_ptr_nonnull(t[i]);
    }
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, admit_thread, &ad), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < TASKS; i++)
        ck_assert_int_eq(weft_join(t[i], NULL), 0);
    weft_runtime_free(rt);
    ck_assert_int_le(atomic_load(&ad.max_inside), ad.n);
    ck_assert_int_ge(atomic_load(&ad.max_inside), 1);
    ck_assert_int_eq(atomic_load(&ad.entries),
                     (long)ad.iters * (TASKS + 4 * THREADS));
    ck_assert_int_eq(weft_sem_value(&ad.sem), ad.n);
    ck_assert_int_eq(weft_sem_destroy(&ad.sem), 0);
    fprintf(stderr, "sem_of_n: at most %d of %ld inside at once\n",
            atomic_load(&ad.max_inside), ad.n);
}
END_TEST

START_TEST(sem_cancel_racing_release_never_loses_a_permit)
{
    /* Each round, one release and a cancel of the first waiter land at
     * the same moment. Either the waiter took the permit (0) or it was
     * cancelled (-ECANCELED) and the permit is still there: in the count
     * (odd rounds) or with the second waiter (even rounds), who gets one
     * either way and would time out if a permit were lost. */
    int rounds = TU_SCALE(3000, 2000, 1000);
    uint64_t rng = tu_seed("sem_cancel_racing_release_never_loses_a_permit");
    weft_runtime *rt = tu_new_runtime(2);
    struct tu_cancel_race cr;
    int64_t bias = 0;
    struct tu_racer r;
    tu_racer_start(&r, tu_cancel_victim, &cr, tu_rand(&rng), TU_SPIN_NS);
    int got = 0, cancelled = 0;
    for (int g = 1; g <= rounds; g++) {
        weft_sem s;
        TU_ASSERT_INT_EQ(weft_sem_init(&s, 0), 0);
        bool two = g % 2 == 0;
        struct waiter w1 = {.sem = &s, .timeout = -1};
        struct waiter w2 = {.sem = &s, .timeout = 10.0};
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
        TU_ASSERT_INT_EQ(weft_sem_release(&s), 0);
        tu_racer_wait(&r, g);
        TU_ASSERT(cr.cancel_rc == 0 || cr.cancel_rc == -ESRCH);
        int jrc = tu_actor_join(&a1);
        TU_ASSERT(w1.rc == 0 || w1.rc == -ECANCELED);
        TU_ASSERT_INT_EQ(jrc, w1.rc); /* 0: it finished normally */
        if (w1.rc == 0)
            got++;
        else
            cancelled++;
        tu_steer(&bias, w1.rc != 0);
        if (two) {
            if (w1.rc == 0) /* w2 is still waiting: one more */
                TU_ASSERT_INT_EQ(weft_sem_release(&s), 0);
            TU_ASSERT_INT_EQ(tu_actor_join(&a2), 0);
            TU_ASSERT_INT_EQ(w2.rc, 0);
            TU_ASSERT_INT_EQ(weft_sem_value(&s), 0);
        } else {
            TU_ASSERT_INT_EQ(weft_sem_value(&s), w1.rc == 0 ? 0 : 1);
        }
        TU_ASSERT_INT_EQ(weft_sem_destroy(&s), 0); /* nobody queued */
    }
    tu_racer_stop(&r);
    weft_runtime_free(rt);
    fprintf(stderr,
            "sem cancel race: %d rounds, granted %d, cancelled %d, final bias "
            "%lld ns\n",
            rounds, got, cancelled, (long long)bias);
    ck_assert_int_eq(got + cancelled, rounds);
}
END_TEST

struct timeout_race {
    weft_sem sem;
    struct tu_racer r;
    int rounds;
    unsigned spin_ns, bound_us;
    uint64_t rng;
    int got, timed_out;
};

static void release_one(void *ctx)
{
    struct timeout_race *tr = ctx;
    TU_ASSERT_INT_EQ(weft_sem_release(&tr->sem), 0);
}

static void *timeout_race_rounds(void *arg)
{
    struct timeout_race *tr = arg;
    for (int g = 1; g <= tr->rounds; g++) {
        double bound = (double)(tu_rand(&tr->rng) % tr->bound_us) * 1e-6;
        tu_racer_go(&tr->r, g);
        int rc = weft_sem_acquire_timeout(&tr->sem, bound);
        tu_racer_wait(&tr->r, g);
        TU_ASSERT(rc == 0 || rc == -ETIMEDOUT);
        /* Exactly one of the two holds the released permit. */
        TU_ASSERT_INT_EQ(weft_sem_value(&tr->sem), rc == 0 ? 0 : 1);
        if (rc == 0) {
            tr->got++;
        } else {
            tr->timed_out++;
            TU_ASSERT_INT_EQ(weft_sem_acquire_nowait(&tr->sem), 0);
        }
    }
    return (void *)1;
}

START_TEST(sem_timeout_racing_release_never_loses_a_permit)
{
    /* A waiter with a tiny bound (_i 0: a plain thread, 1: a task) and a
     * release land at the same moment, many times. */
    static struct timeout_race tr;
    tr.rounds = TU_SCALE(3000, 2000, 1000);
    tr.rng = tu_seed("sem_timeout_racing_release_never_loses_a_permit");
    tr.got = tr.timed_out = 0;
    /* The release comes 0 to 200 us after the wait starts, and the bound
     * is 0 to 100 us (a futex or a timer adds 50 us or more to it): about
     * half the rounds time out, and some of them as the release comes. */
    tr.spin_ns = 200000;
    tr.bound_us = 100;
    ck_assert_int_eq(weft_sem_init(&tr.sem, 0), 0);
    tu_racer_start(&tr.r, release_one, &tr, tu_rand(&tr.rng), tr.spin_ns);
    if (_i == 0)
        ck_assert_int_eq((intptr_t)timeout_race_rounds(&tr), 1);
    else
        ck_assert_int_eq((intptr_t)tu_run_in(1, timeout_race_rounds, &tr), 1);
    tu_racer_stop(&tr.r);
    fprintf(stderr,
            "sem timeout race (%s): %d rounds, granted %d, "
            "timed out %d\n",
            _i ? "task" : "thread", tr.rounds, tr.got, tr.timed_out);
    ck_assert_int_eq(tr.got + tr.timed_out, tr.rounds);
    ck_assert_int_eq(weft_sem_value(&tr.sem), 0);
    ck_assert_int_eq(weft_sem_destroy(&tr.sem), 0);
}
END_TEST

static Suite *sem_suite(void)
{
    Suite *s = suite_create("sem");

    TCase *tc = tcase_create("init");
    tcase_add_test(tc, sem_init_sets_the_value_and_rejects_a_negative_one);
    tcase_add_test(tc, sem_calls_on_null_return_einval);
    tcase_add_test(
        tc, sem_calls_on_an_uninitialised_or_destroyed_sem_return_einval);
    tcase_add_test(
        tc, sem_acquire_timeout_with_negative_or_nan_seconds_returns_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("permits");
    tcase_add_test(tc, sem_acquire_takes_a_permit_and_release_gives_it_back);
    tcase_add_test(tc, sem_bounded_release_past_the_bound_returns_eoverflow);
    tcase_add_loop_test(
        tc, sem_bounded_release_with_a_waiter_hands_the_permit_over, 0, 2);
    tcase_add_loop_test(
        tc, sem_destroy_while_waited_on_returns_ebusy_and_it_stays_usable, 0,
        2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait");
    tcase_add_loop_test(tc, sem_waiters_are_served_in_fifo_order, 0, 2);
    tcase_add_loop_test(
        tc, sem_release_to_a_waiter_is_not_taken_by_a_later_acquirer, 0, 2);
    tcase_add_loop_test(
        tc, sem_waiter_gets_the_permit_a_task_or_a_thread_releases, 0, 4);
    tcase_add_loop_test(
        tc, sem_acquire_timeout_returns_etimedout_after_about_the_time, 0, 2);
    tcase_add_loop_test(
        tc, sem_acquire_timeout_returns_zero_when_a_permit_comes_in_time, 0, 2);
    tcase_add_test(
        tc, sem_acquire_timeout_from_a_task_returns_enomem_without_a_timer);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel");
    tcase_add_loop_test(
        tc, sem_waiter_cancelled_returns_ecanceled_and_takes_no_permit, 0, 2);
    tcase_add_test(tc,
                   sem_waiter_in_an_expired_timeout_scope_returns_etimedout);
    tcase_add_test(tc, sem_cancelled_task_takes_a_free_permit_without_waiting);
    tcase_add_loop_test(
        tc, sem_cancelled_waiter_leaves_the_permit_to_the_next_waiter, 0, 2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(tc, sem_of_n_never_admits_more_than_n_at_once);
    tcase_add_test(tc, sem_cancel_racing_release_never_loses_a_permit);
    tcase_add_loop_test(tc, sem_timeout_racing_release_never_loses_a_permit, 0,
                        2);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(sem_suite());
}
