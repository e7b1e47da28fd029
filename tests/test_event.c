/* Event (weft.h, "Synchronisation"): weft_event shared by tasks on any
 * worker and by plain threads: set, clear and is_set, a set that wakes
 * every waiter (also when cleared again at once), -EINVAL for bad objects
 * and arguments, -EBUSY from destroy while waited on, waits ended by
 * cancellation, timeout scopes and the _timeout bound, a ping-pong between
 * a thread and a task, and sets racing cancels and timeouts, where no
 * waiter that was not interrupted may miss a set and none may wake without
 * one.
 *
 * A waiter is known to be waiting when its task shows as WAITING, or when
 * its thread sleeps in the kernel; never after a sleep. Each test makes
 * its own runtime: Check forks every test.
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

/* ------------------------------------------------------------------------
 * A waiter: one wait, with or without a bound */

struct waiter {
    weft_event *ev;
    double timeout; /* < 0: weft_event_wait; else the _timeout form */
    int rc;
    double waited;
};

static void *wait_once(void *arg)
{
    struct waiter *w = arg;
    double t0 = weft_now();
    w->rc = w->timeout < 0 ? weft_event_wait(w->ev)
                           : weft_event_wait_timeout(w->ev, w->timeout);
    w->waited = weft_now() - t0;
    return NULL;
}

struct setter {
    weft_event *ev;
    atomic_int go;
    int rc;
};

static void *set_on_go(void *arg)
{
    struct setter *s = arg;
    while (!atomic_load(&s->go))
        tu_pause();
    s->rc = weft_event_set(s->ev);
    return NULL;
}

/* ------------------------------------------------------------------------
 * State, bad input, destroy */

static void check_state(void)
{
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    ck_assert(!weft_event_is_set(&ev));
    ck_assert_int_eq(weft_event_wait_timeout(&ev, 0), -ETIMEDOUT);
    ck_assert_int_eq(weft_event_set(&ev), 0);
    ck_assert(weft_event_is_set(&ev));
    ck_assert_int_eq(weft_event_set(&ev), 0); /* already set: no change */
    ck_assert(weft_event_is_set(&ev));
    /* Set: every form of wait returns at once. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_event_wait(&ev), 0);
    ck_assert_int_eq(weft_event_wait_timeout(&ev, 0), 0);
    ck_assert_int_eq(weft_event_wait_timeout(&ev, 10.0), 0);
    ck_assert_int_eq(weft_event_wait_timeout(&ev, WEFT_FOREVER), 0);
    ck_assert_msg(weft_now() - t0 < TU_SLACK,
                  "waits on a set event took %.3f s", weft_now() - t0);
    ck_assert(weft_event_is_set(&ev)); /* a wait does not clear it */
    ck_assert_int_eq(weft_event_clear(&ev), 0);
    ck_assert(!weft_event_is_set(&ev));
    ck_assert_int_eq(weft_event_clear(&ev), 0);
    ck_assert(!weft_event_is_set(&ev));
    t0 = weft_now();
    ck_assert_int_eq(weft_event_wait_timeout(&ev, 0), -ETIMEDOUT);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "a zero bound waited %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    /* Set with nobody waiting is not busy. */
    ck_assert_int_eq(weft_event_init(&ev), 0);
    ck_assert_int_eq(weft_event_set(&ev), 0);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
}

static void *state_main(void *arg)
{
    (void)arg;
    check_state();
    return (void *)1;
}

START_TEST(event_starts_clear_and_set_and_clear_change_it)
{
    check_state(); /* a plain thread */
    ck_assert_int_eq((intptr_t)tu_run_in(2, state_main, NULL), 1);
}
END_TEST

START_TEST(event_calls_on_null_return_einval)
{
    ck_assert_int_eq(weft_event_init(NULL), -EINVAL);
    ck_assert_int_eq(weft_event_set(NULL), -EINVAL);
    ck_assert_int_eq(weft_event_clear(NULL), -EINVAL);
    ck_assert(!weft_event_is_set(NULL));
    ck_assert_int_eq(weft_event_wait(NULL), -EINVAL);
    ck_assert_int_eq(weft_event_wait_timeout(NULL, 1.0), -EINVAL);
    ck_assert_int_eq(weft_event_destroy(NULL), -EINVAL);
}
END_TEST

static void check_invalid_event(weft_event *ev)
{
    ck_assert_int_eq(weft_event_set(ev), -EINVAL);
    ck_assert_int_eq(weft_event_clear(ev), -EINVAL);
    ck_assert(!weft_event_is_set(ev));
    ck_assert_int_eq(weft_event_wait(ev), -EINVAL);
    ck_assert_int_eq(weft_event_wait_timeout(ev, 1.0), -EINVAL);
    ck_assert_int_eq(weft_event_wait_timeout(ev, 0), -EINVAL);
    ck_assert_int_eq(weft_event_destroy(ev), -EINVAL);
}

static void *invalid_event_main(void *arg)
{
    check_invalid_event(arg);
    return (void *)1;
}

START_TEST(event_calls_on_an_uninitialised_or_destroyed_event_return_einval)
{
    weft_event ev;
    memset(&ev, 0, sizeof ev);
    check_invalid_event(&ev);
    memset(&ev, 0xa5, sizeof ev);
    check_invalid_event(&ev);

    /* Destroyed while set: no call sees it set any more. */
    ck_assert_int_eq(weft_event_init(&ev), 0);
    ck_assert_int_eq(weft_event_set(&ev), 0);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    check_invalid_event(&ev); /* from a plain thread */
    ck_assert_int_eq((intptr_t)tu_run_in(1, invalid_event_main, &ev), 1);

    /* Initialised again, it works again, clear. */
    ck_assert_int_eq(weft_event_init(&ev), 0);
    ck_assert(!weft_event_is_set(&ev));
    ck_assert_int_eq(weft_event_set(&ev), 0);
    ck_assert_int_eq(weft_event_wait(&ev), 0);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
}
END_TEST

static void check_bad_timeouts(weft_event *ev)
{
    static const double bad[] = {-1.0, -1e-9, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(weft_event_wait_timeout(ev, bad[i]), -EINVAL);
}

static void *bad_timeouts_main(void *arg)
{
    check_bad_timeouts(arg);
    return (void *)1;
}

START_TEST(event_wait_timeout_with_negative_or_nan_seconds_returns_einval)
{
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    /* Clear (no wait), then set (the argument is still checked). */
    for (int k = 0; k < 2; k++) {
        check_bad_timeouts(&ev);
        ck_assert_int_eq((intptr_t)tu_run_in(1, bad_timeouts_main, &ev), 1);
        ck_assert(weft_event_is_set(&ev) == (k == 1));
        ck_assert_int_eq(weft_event_set(&ev), 0);
    }
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
}
END_TEST

START_TEST(event_destroy_while_waited_on_returns_ebusy_and_it_stays_usable)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    struct waiter w = {.ev = &ev, .timeout = -1};
    struct tu_actor a;
    tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, wait_once, &w);
    tu_actor_wait_blocked(&a);
    ck_assert_int_eq(weft_event_destroy(&ev), -EBUSY);
    ck_assert(!weft_event_is_set(&ev)); /* still initialised */
    ck_assert_int_eq(weft_event_set(&ev), 0);
    ck_assert_int_eq(tu_actor_join(&a), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Waiting */

START_TEST(event_set_wakes_every_waiter)
{
    /* Tasks and plain threads, bounded and not, all waiting: one set
     * wakes them all. */
    enum { N = 9 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    struct waiter w[N];
    struct tu_actor a[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct waiter){.ev = &ev, .timeout = i % 2 ? 30.0 : -1};
        tu_actor_start(&a[i], rt, i % 3 == 2 ? TU_THREAD : TU_TASK, wait_once,
                       &w[i]);
        tu_actor_wait_blocked(&a[i]);
    }
    ck_assert_int_eq(weft_event_set(&ev), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(tu_actor_join(&a[i]), 0);
        ck_assert_int_eq(w[i].rc, 0);
    }
    ck_assert(weft_event_is_set(&ev));
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(event_waiters_woken_by_a_set_return_zero_even_if_cleared_at_once)
{
    enum { N = 4 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    struct waiter w[N];
    struct tu_actor a[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct waiter){.ev = &ev, .timeout = i % 2 ? 30.0 : -1};
        tu_actor_start(&a[i], rt, i % 2 ? TU_THREAD : TU_TASK, wait_once,
                       &w[i]);
        tu_actor_wait_blocked(&a[i]);
    }
    ck_assert_int_eq(weft_event_set(&ev), 0);
    ck_assert_int_eq(weft_event_clear(&ev), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(tu_actor_join(&a[i]), 0);
        ck_assert_int_eq(w[i].rc, 0);
    }
    ck_assert(!weft_event_is_set(&ev));
    /* A wait after the clear waits again. */
    ck_assert_int_eq(weft_event_wait_timeout(&ev, 0.01), -ETIMEDOUT);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(event_waiter_is_woken_by_a_set_from_a_task_or_a_thread)
{
    /* _i: bit 0 the waiter is a thread, bit 1 the setter is. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    struct waiter w = {.ev = &ev, .timeout = -1};
    struct setter s = {.ev = &ev};
    struct tu_actor wa, sa;
    tu_actor_start(&sa, rt, _i & 2 ? TU_THREAD : TU_TASK, set_on_go, &s);
    tu_actor_start(&wa, rt, _i & 1 ? TU_THREAD : TU_TASK, wait_once, &w);
    tu_actor_wait_blocked(&wa);
    ck_assert(!atomic_load(&wa.done));
    atomic_store(&s.go, 1);
    ck_assert_int_eq(tu_actor_join(&sa), 0);
    ck_assert_int_eq(s.rc, 0);
    ck_assert_int_eq(tu_actor_join(&wa), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(event_wait_timeout_returns_etimedout_after_about_the_time)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    static const double bounds[] = {0.0, 0.02, 0.1};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        struct waiter w = {.ev = &ev, .timeout = bounds[i]};
        struct tu_actor a;
        tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, wait_once, &w);
        ck_assert_int_eq(tu_actor_join(&a), 0);
        ck_assert_int_eq(w.rc, -ETIMEDOUT);
        ck_assert_msg(w.waited >= bounds[i] - TU_EARLY_EPS &&
                          w.waited <= bounds[i] + TU_SLACK,
                      "a %.3f s bound returned after %.6f s", bounds[i],
                      w.waited);
    }
    ck_assert(!weft_event_is_set(&ev));
    ck_assert_int_eq(weft_event_destroy(&ev), 0); /* nobody left queued */
    weft_runtime_free(rt);
}
END_TEST

START_TEST(event_wait_timeout_returns_zero_when_set_in_time)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    struct waiter w = {.ev = &ev, .timeout = 30.0};
    struct tu_actor a;
    tu_actor_start(&a, rt, _i ? TU_THREAD : TU_TASK, wait_once, &w);
    tu_actor_wait_blocked(&a);
    ck_assert_int_eq(weft_event_set(&ev), 0);
    ck_assert_int_eq(tu_actor_join(&a), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_msg(w.waited < 10.0, "waited %.3f s", w.waited);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *enomem_main(void *arg)
{
    weft_event *ev = arg;
    /* One worker, nothing else running, no timer added yet: the first
     * allocation is the timer heap's, for this wait's deadline. */
    weft__alloc_fail_after(1);
    int rc = weft_event_wait_timeout(ev, 30.0);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    return (void *)1;
}

START_TEST(event_wait_timeout_from_a_task_returns_enomem_without_a_timer)
{
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    ck_assert_int_eq((intptr_t)tu_run_in(1, enomem_main, &ev), 1);
    ck_assert_int_eq(weft_event_destroy(&ev), 0); /* it did not stay queued */
}
END_TEST

/* ------------------------------------------------------------------------
 * Cancellation and timeout scopes */

START_TEST(event_waiter_cancelled_returns_ecanceled)
{
    /* _i 0: weft_event_wait; 1: the _timeout form. */
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    struct waiter w = {.ev = &ev, .timeout = _i ? 30.0 : -1};
    struct tu_actor a;
    tu_actor_start(&a, rt, TU_TASK, wait_once, &w);
    tu_actor_wait_blocked(&a);
    double t0 = weft_now();
    ck_assert_int_eq(weft_cancel(a.task), 0);
    ck_assert_int_eq(tu_actor_join(&a), -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "the cancel took %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(w.rc, -ECANCELED);
    ck_assert(!weft_event_is_set(&ev));
    ck_assert_int_eq(weft_event_destroy(&ev), 0); /* it left the queue */
    weft_runtime_free(rt);
}
END_TEST

struct scoped {
    weft_event *ev;
    int rc, exit_rc;
    double waited;
};

static void *wait_in_scope(void *arg)
{
    struct scoped *sc = arg;
    weft_timeout scope;
    double t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_timeout_enter(&scope, 0.05), 0);
    sc->rc = weft_event_wait(sc->ev);
    sc->waited = weft_now() - t0;
    sc->exit_rc = weft_timeout_exit(&scope);
    return NULL;
}

START_TEST(event_waiter_in_an_expired_timeout_scope_returns_etimedout)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    struct scoped sc = {.ev = &ev};
    struct tu_actor a;
    tu_actor_start(&a, rt, TU_TASK, wait_in_scope, &sc);
    ck_assert_int_eq(tu_actor_join(&a), 0); /* a scope is not a cancel */
    ck_assert_int_eq(sc.rc, -ETIMEDOUT);
    ck_assert_int_eq(sc.exit_rc, -ETIMEDOUT);
    ck_assert_msg(sc.waited >= 0.05 - TU_EARLY_EPS &&
                      sc.waited <= 0.05 + TU_SLACK,
                  "a 50 ms scope ended the wait after %.6f s", sc.waited);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *cancelled_waiter(void *arg)
{
    weft_event *ev = arg;
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    /* Clear: the wait sees the cancel at once. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_event_wait(ev), -ECANCELED);
    ck_assert_int_eq(weft_event_wait_timeout(ev, 10.0), -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "cancelled waits took %.3f s",
                  weft_now() - t0);
    /* Set: it returns at once, without looking at cancellation. */
    ck_assert_int_eq(weft_event_set(ev), 0);
    ck_assert_int_eq(weft_event_wait(ev), 0);
    ck_assert_int_eq(weft_event_wait_timeout(ev, 10.0), 0);
    ck_assert_int_eq(weft_uncancel(), 0);
    /* In an expired scope, the same. */
    weft_timeout scope;
    ck_assert_int_eq(weft_timeout_enter(&scope, 0), 0);
    ck_assert_int_eq(weft_event_wait(ev), 0);
    ck_assert_int_eq(weft_event_clear(ev), 0);
    ck_assert_int_eq(weft_event_wait(ev), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    return (void *)1;
}

START_TEST(event_wait_on_a_set_event_ignores_cancellation)
{
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    ck_assert_int_eq((intptr_t)tu_run_in(1, cancelled_waiter, &ev), 1);
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
}
END_TEST

START_TEST(event_cancelled_waiter_does_not_keep_a_set_from_the_others)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_event ev;
    ck_assert_int_eq(weft_event_init(&ev), 0);
    struct waiter w[3];
    struct tu_actor a[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (struct waiter){.ev = &ev, .timeout = -1};
        tu_actor_start(&a[i], rt, i == 2 && _i ? TU_THREAD : TU_TASK, wait_once,
                       &w[i]);
        tu_actor_wait_blocked(&a[i]);
    }
    ck_assert_int_eq(weft_cancel(a[0].task), 0);
    ck_assert_int_eq(tu_actor_join(&a[0]), -ECANCELED);
    ck_assert_int_eq(w[0].rc, -ECANCELED);
    ck_assert_int_eq(weft_event_destroy(&ev), -EBUSY);
    ck_assert_int_eq(weft_event_set(&ev), 0);
    for (int i = 1; i < 3; i++) {
        ck_assert_int_eq(tu_actor_join(&a[i]), 0);
        ck_assert_int_eq(w[i].rc, 0);
    }
    ck_assert_int_eq(weft_event_destroy(&ev), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress */

struct ping_pong {
    weft_event ping, pong;
    int rounds;
    long shared; /* written in turn, published by the events */
};

/* The task side: wait for ping, answer with pong. */
static void *pong_side(void *arg)
{
    struct ping_pong *pp = arg;
    for (int i = 0; i < pp->rounds; i++) {
        int rc = i % 2 ? weft_event_wait_timeout(&pp->ping, 60.0)
                       : weft_event_wait(&pp->ping);
        TU_ASSERT_INT_EQ(rc, 0);
        TU_ASSERT_INT_EQ(weft_event_clear(&pp->ping), 0);
        TU_ASSERT_INT_EQ(pp->shared, 2L * i + 1);
        pp->shared++;
        TU_ASSERT_INT_EQ(weft_event_set(&pp->pong), 0);
    }
    return NULL;
}

/* The thread side: ping, wait for pong. */
static void *ping_side(void *arg)
{
    struct ping_pong *pp = arg;
    for (int i = 0; i < pp->rounds; i++) {
        TU_ASSERT_INT_EQ(pp->shared, 2L * i);
        pp->shared++;
        TU_ASSERT_INT_EQ(weft_event_set(&pp->ping), 0);
        int rc = i % 2 ? weft_event_wait(&pp->pong)
                       : weft_event_wait_timeout(&pp->pong, 60.0);
        TU_ASSERT_INT_EQ(rc, 0);
        TU_ASSERT_INT_EQ(weft_event_clear(&pp->pong), 0);
    }
    return NULL;
}

START_TEST(event_ping_pong_between_a_thread_and_a_task)
{
    /* _i 0: a plain thread pings and a task answers; 1: the other way
     * round. Each side waits for an event the other sets, many times; a
     * lost wake-up hangs, a spurious one breaks the count. */
    static struct ping_pong pp;
    pp.rounds = TU_SCALE(20000, 10000, 5000);
    pp.shared = 0;
    ck_assert_int_eq(weft_event_init(&pp.ping), 0);
    ck_assert_int_eq(weft_event_init(&pp.pong), 0);
    weft_runtime *rt = tu_new_runtime(2);
    struct tu_actor pinger, ponger;
    tu_actor_start(&ponger, rt, _i ? TU_THREAD : TU_TASK, pong_side, &pp);
    tu_actor_start(&pinger, rt, _i ? TU_TASK : TU_THREAD, ping_side, &pp);
    ck_assert_int_eq(tu_actor_join(&pinger), 0);
    ck_assert_int_eq(tu_actor_join(&ponger), 0);
    weft_runtime_free(rt);
    ck_assert_int_eq(pp.shared, 2L * pp.rounds);
    ck_assert(!weft_event_is_set(&pp.ping));
    ck_assert(!weft_event_is_set(&pp.pong));
    ck_assert_int_eq(weft_event_destroy(&pp.ping), 0);
    ck_assert_int_eq(weft_event_destroy(&pp.pong), 0);
}
END_TEST

START_TEST(event_set_racing_cancel_wakes_every_waiter_not_cancelled)
{
    /* Each round three tasks wait; a set and a cancel of the first land
     * at the same moment. The first returns 0 or -ECANCELED, the others 0;
     * nobody is left queued. */
    int rounds = TU_SCALE(2000, 1500, 800);
    uint64_t rng =
        tu_seed("event_set_racing_cancel_wakes_every_waiter_not_cancelled");
    weft_runtime *rt = tu_new_runtime(2);
    struct tu_cancel_race cr;
    int64_t bias = 0;
    struct tu_racer r;
    tu_racer_start(&r, tu_cancel_victim, &cr, tu_rand(&rng), TU_SPIN_NS);
    int woken = 0, cancelled = 0;
    for (int g = 1; g <= rounds; g++) {
        weft_event ev;
        TU_ASSERT_INT_EQ(weft_event_init(&ev), 0);
        struct waiter w[3];
        struct tu_actor a[3];
        for (int i = 0; i < 3; i++) {
            w[i] = (struct waiter){.ev = &ev, .timeout = i ? 10.0 : -1};
            tu_actor_start(&a[i], rt, TU_TASK, wait_once, &w[i]);
            tu_actor_wait_blocked(&a[i]);
        }
        cr.victim = a[0].task;
        cr.delay_ns = bias;
        tu_racer_go(&r, g);
        tu_spin_random(&rng, TU_SPIN_NS);
        tu_spin_for(-bias);
        TU_ASSERT_INT_EQ(weft_event_set(&ev), 0);
        tu_racer_wait(&r, g);
        TU_ASSERT(cr.cancel_rc == 0 || cr.cancel_rc == -ESRCH);
        TU_ASSERT_INT_EQ(tu_actor_join(&a[0]), w[0].rc);
        TU_ASSERT(w[0].rc == 0 || w[0].rc == -ECANCELED);
        if (w[0].rc == 0)
            woken++;
        else
            cancelled++;
        tu_steer(&bias, w[0].rc != 0);
        for (int i = 1; i < 3; i++) {
            TU_ASSERT_INT_EQ(tu_actor_join(&a[i]), 0);
            TU_ASSERT_INT_EQ(w[i].rc, 0);
        }
        TU_ASSERT_INT_EQ(weft_event_destroy(&ev), 0);
    }
    tu_racer_stop(&r);
    weft_runtime_free(rt);
    fprintf(stderr,
            "event cancel race: %d rounds, woken %d, cancelled %d, final bias "
            "%lld ns\n",
            rounds, woken, cancelled, (long long)bias);
    ck_assert_int_eq(woken + cancelled, rounds);
}
END_TEST

struct timeout_race {
    weft_event ev;
    struct tu_racer r;
    int rounds;
    uint64_t rng;
    atomic_int setting; /* the racer is about to set, or has */
    int got, timed_out;
};

static void set_it(void *ctx)
{
    struct timeout_race *tr = ctx;
    atomic_store(&tr->setting, 1);
    TU_ASSERT_INT_EQ(weft_event_set(&tr->ev), 0);
}

static void *timeout_race_rounds(void *arg)
{
    struct timeout_race *tr = arg;
    for (int g = 1; g <= tr->rounds; g++) {
        double bound = (double)(tu_rand(&tr->rng) % 100) * 1e-6;
        atomic_store(&tr->setting, 0);
        tu_racer_go(&tr->r, g);
        int rc = weft_event_wait_timeout(&tr->ev, bound);
        /* 0 only if a set came: wake-ups are not spurious. */
        TU_ASSERT(rc == -ETIMEDOUT || atomic_load(&tr->setting));
        tu_racer_wait(&tr->r, g);
        TU_ASSERT(rc == 0 || rc == -ETIMEDOUT);
        TU_ASSERT(weft_event_is_set(&tr->ev));
        TU_ASSERT_INT_EQ(weft_event_clear(&tr->ev), 0);
        if (rc == 0)
            tr->got++;
        else
            tr->timed_out++;
    }
    return (void *)1;
}

START_TEST(event_timeout_racing_set_returns_zero_only_after_a_set)
{
    /* A waiter with a tiny bound (_i 0: a plain thread, 1: a task) and a
     * set land at about the same moment, many times: the set comes 0 to
     * 200 us after the wait starts, the bound is 0 to 100 us. */
    static struct timeout_race tr;
    tr.rounds = TU_SCALE(3000, 2000, 1000);
    tr.rng = tu_seed("event_timeout_racing_set_returns_zero_only_after_a_set");
    tr.got = tr.timed_out = 0;
    ck_assert_int_eq(weft_event_init(&tr.ev), 0);
    tu_racer_start(&tr.r, set_it, &tr, tu_rand(&tr.rng), 200000);
    if (_i == 0)
        ck_assert_int_eq((intptr_t)timeout_race_rounds(&tr), 1);
    else
        ck_assert_int_eq((intptr_t)tu_run_in(1, timeout_race_rounds, &tr), 1);
    tu_racer_stop(&tr.r);
    fprintf(stderr,
            "event timeout race (%s): %d rounds, woken %d, timed out %d\n",
            _i ? "task" : "thread", tr.rounds, tr.got, tr.timed_out);
    ck_assert_int_eq(tr.got + tr.timed_out, tr.rounds);
    ck_assert_int_eq(weft_event_destroy(&tr.ev), 0);
}
END_TEST

static Suite *event_suite(void)
{
    Suite *s = suite_create("event");

    TCase *tc = tcase_create("basic");
    tcase_add_test(tc, event_starts_clear_and_set_and_clear_change_it);
    tcase_add_test(tc, event_calls_on_null_return_einval);
    tcase_add_test(
        tc, event_calls_on_an_uninitialised_or_destroyed_event_return_einval);
    tcase_add_test(
        tc, event_wait_timeout_with_negative_or_nan_seconds_returns_einval);
    tcase_add_loop_test(
        tc, event_destroy_while_waited_on_returns_ebusy_and_it_stays_usable, 0,
        2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait");
    tcase_add_test(tc, event_set_wakes_every_waiter);
    tcase_add_test(
        tc, event_waiters_woken_by_a_set_return_zero_even_if_cleared_at_once);
    tcase_add_loop_test(
        tc, event_waiter_is_woken_by_a_set_from_a_task_or_a_thread, 0, 4);
    tcase_add_loop_test(
        tc, event_wait_timeout_returns_etimedout_after_about_the_time, 0, 2);
    tcase_add_loop_test(tc, event_wait_timeout_returns_zero_when_set_in_time, 0,
                        2);
    tcase_add_test(
        tc, event_wait_timeout_from_a_task_returns_enomem_without_a_timer);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel");
    tcase_add_loop_test(tc, event_waiter_cancelled_returns_ecanceled, 0, 2);
    tcase_add_test(tc,
                   event_waiter_in_an_expired_timeout_scope_returns_etimedout);
    tcase_add_test(tc, event_wait_on_a_set_event_ignores_cancellation);
    tcase_add_loop_test(
        tc, event_cancelled_waiter_does_not_keep_a_set_from_the_others, 0, 2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_loop_test(tc, event_ping_pong_between_a_thread_and_a_task, 0, 2);
    tcase_add_test(tc,
                   event_set_racing_cancel_wakes_every_waiter_not_cancelled);
    tcase_add_loop_test(
        tc, event_timeout_racing_set_returns_zero_only_after_a_set, 0, 2);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(event_suite());
}
