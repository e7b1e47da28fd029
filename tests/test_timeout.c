/* Timeout scopes and weft_wait_for (weft.h, "Timeout scopes",
 * "Combinators"): expiry, nesting in both orders, a real cancel inside a
 * scope, absolute deadlines, rescheduling, bad use, a scope expiring
 * around a gather, and wait_for finishing, timing out, being ignored and
 * racing the task's own end.
 *
 * Timing checks allow an expiry to come late by TU_SLACK, never early.
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
#include <stdlib.h>

#include "sched/alloc.h"
#include "testutil.h"

/* The scope keeps its deadline in nanoseconds: when() gives back the
 * deadline it was given to within that. */
static void check_when(const weft_timeout *s, double deadline)
{
    double when = weft_timeout_when(s);
    ck_assert_msg(fabs(when - deadline) < 1e-6, "when %.9f, deadline %.9f",
                  when, deadline);
}

static void *run_in_task(weft_fn fn)
{
    return tu_run_in(2, fn, NULL);
}

/* ------------------------------------------------------------------------
 * Expiry */

static void *expiry_main(void *arg)
{
    (void)arg;
    weft_timeout s;
    double t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&s, 0.05), 0);
    ck_assert(!weft_timeout_expired(&s));
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.05, "sleep in a 50 ms scope");
    ck_assert(weft_timeout_expired(&s));
    /* Every later suspension point in the scope reports it too. */
    ck_assert_int_eq(weft_yield(), -ETIMEDOUT);
    ck_assert_int_eq(weft_sleep(0.001), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);
    /* Outside the scope the task is not cancelled. */
    ck_assert_int_eq(weft_cancelling(weft_current()), 0);
    ck_assert_int_eq(weft_yield(), 0);
    ck_assert_int_eq(weft_sleep(0.001), 0);
    return NULL;
}

START_TEST(expired_scope_makes_sleep_and_exit_return_etimedout)
{
    run_in_task(expiry_main);
}
END_TEST

static void *no_expiry_main(void *arg)
{
    (void)arg;
    weft_timeout s;
    ck_assert_int_eq(weft_timeout_enter(&s, 1.0), 0);
    ck_assert_int_eq(weft_sleep(0.01), 0);
    ck_assert_int_eq(weft_yield(), 0);
    ck_assert(!weft_timeout_expired(&s));
    ck_assert_int_eq(weft_timeout_exit(&s), 0);
    /* A scope closed before its deadline leaves no timer behind. */
    ck_assert_int_eq(weft_timeout_enter(&s, 0.02), 0);
    ck_assert_int_eq(weft_timeout_exit(&s), 0);
    ck_assert_int_eq(weft_sleep(0.06), 0);
    ck_assert_int_eq(weft_yield(), 0);
    return NULL;
}

START_TEST(scope_exited_in_time_returns_zero)
{
    run_in_task(no_expiry_main);
}
END_TEST

static void *leave_open(void *arg)
{
    (void)arg;
    weft_timeout s;
    TU_ASSERT_INT_EQ(weft_timeout_enter(&s, 0.02), 0);
    return (void *)1; /* a bug the runtime makes harmless */
}

static void *open_scope_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        weft_task *t = weft_spawn(leave_open, NULL);
        ck_assert_ptr_nonnull(t);
        tu_join_expect(t, 1);
    }
    /* The timers would fire now, into stacks that are gone or reused. */
    weft_task *t[20];
    for (int i = 0; i < 20; i++) {
        t[i] = weft_spawn(leave_open, NULL);
        ck_assert_ptr_nonnull(t[i]);
    }
    ck_assert_int_eq(weft_sleep(0.05), 0);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(weft_join(t[i], NULL), 0);
    ck_assert_int_eq(weft_sleep(0.05), 0);
    return NULL;
}

START_TEST(task_returning_with_an_open_scope_has_it_closed)
{
    run_in_task(open_scope_main);
}
END_TEST

/* ------------------------------------------------------------------------
 * Nesting */

static void *inner_shorter_main(void *arg)
{
    (void)arg;
    weft_timeout outer, inner;
    ck_assert_int_eq(weft_timeout_enter(&outer, 10.0), 0);
    double t0 = weft_now(); /* no later than the scope's start */
    ck_assert_int_eq(weft_timeout_enter(&inner, 0.05), 0);
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.05, "the inner 50 ms scope");
    ck_assert(weft_timeout_expired(&inner));
    ck_assert(!weft_timeout_expired(&outer));
    ck_assert_int_eq(weft_timeout_exit(&inner), -ETIMEDOUT);
    /* Back in the outer scope, which has not expired. */
    ck_assert_int_eq(weft_sleep(0.01), 0);
    ck_assert_int_eq(weft_yield(), 0);
    ck_assert_int_eq(weft_timeout_exit(&outer), 0);
    return NULL;
}

START_TEST(nested_inner_shorter_only_the_inner_exit_times_out)
{
    run_in_task(inner_shorter_main);
}
END_TEST

static void *outer_shorter_main(void *arg)
{
    (void)arg;
    weft_timeout outer, inner;
    double t0 = weft_now(); /* no later than the scope's start */
    ck_assert_int_eq(weft_timeout_enter(&outer, 0.05), 0);
    ck_assert_int_eq(weft_timeout_enter(&inner, 10.0), 0);
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.05, "the outer 50 ms scope");
    ck_assert_int_eq(weft_yield(), -ETIMEDOUT);
    ck_assert(weft_timeout_expired(&outer));
    ck_assert(!weft_timeout_expired(&inner));
    /* The inner scope did not expire itself. */
    ck_assert_int_eq(weft_timeout_exit(&inner), 0);
    ck_assert_int_eq(weft_sleep(0.001), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&outer), -ETIMEDOUT);
    ck_assert_int_eq(weft_sleep(0.001), 0);
    return NULL;
}

START_TEST(nested_outer_shorter_times_out_inside_but_only_the_outer_exit)
{
    run_in_task(outer_shorter_main);
}
END_TEST

/* ------------------------------------------------------------------------
 * A real cancel inside a scope */

struct scoped {
    atomic_int in_scope;
    int sleep_rc, exit_rc, after_rc;
};

static void *sleep_in_scope(void *arg)
{
    struct scoped *sc = arg;
    weft_timeout s;
    TU_ASSERT_INT_EQ(weft_timeout_enter(&s, 10.0), 0);
    atomic_store(&sc->in_scope, 1);
    sc->sleep_rc = weft_sleep(WEFT_FOREVER);
    sc->exit_rc = weft_timeout_exit(&s);
    sc->after_rc = weft_yield();
    return NULL;
}

static void *cancel_in_scope_main(void *arg)
{
    (void)arg;
    struct scoped sc = {0};
    weft_task *t = weft_spawn(sleep_in_scope, &sc);
    ck_assert_ptr_nonnull(t);
    while (!atomic_load(&sc.in_scope))
        tu_yield();
    tu_wait_until_waiting(NULL, t);
    ck_assert_int_eq(weft_cancel(t), 0);
    ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    ck_assert_int_eq(sc.sleep_rc, -ECANCELED);
    ck_assert_int_eq(sc.exit_rc, 0);
    ck_assert_int_eq(sc.after_rc, -ECANCELED);

    /* Cancelled and in an expired scope: the cancel wins. */
    weft_timeout s;
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    ck_assert_int_eq(weft_timeout_enter_at(&s, weft_now() - 1.0), 0);
    ck_assert(weft_timeout_expired(&s));
    ck_assert_int_eq(weft_yield(), -ECANCELED);
    ck_assert_int_eq(weft_sleep(1.0), -ECANCELED);
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);
    ck_assert_int_eq(weft_yield(), -ECANCELED);
    ck_assert_int_eq(weft_uncancel(), 0);
    ck_assert_int_eq(weft_yield(), 0);
    return NULL;
}

START_TEST(real_cancel_inside_a_scope_stays_ecanceled)
{
    run_in_task(cancel_in_scope_main);
}
END_TEST

/* ------------------------------------------------------------------------
 * Absolute deadlines, when, expired, reschedule */

static void *enter_at_main(void *arg)
{
    (void)arg;
    weft_timeout s;
    double deadline = weft_now() + 0.05;
    ck_assert_int_eq(weft_timeout_enter_at(&s, deadline), 0);
    check_when(&s, deadline);
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    ck_assert_msg(weft_now() >= deadline, "expired early");
    ck_assert_msg(weft_now() <= deadline + TU_SLACK, "expired %.3f s late",
                  weft_now() - deadline);
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);

    /* A deadline already passed expires at once. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter_at(&s, t0 - 1.0), 0);
    ck_assert(weft_timeout_expired(&s));
    ck_assert_int_eq(weft_sleep(10.0), -ETIMEDOUT);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "took %.3f s", weft_now() - t0);
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);

    /* WEFT_FOREVER never expires. */
    ck_assert_int_eq(weft_timeout_enter_at(&s, WEFT_FOREVER), 0);
    ck_assert(isinf(weft_timeout_when(&s)));
    ck_assert_int_eq(weft_sleep(0.01), 0);
    ck_assert(!weft_timeout_expired(&s));
    ck_assert_int_eq(weft_timeout_exit(&s), 0);
    return NULL;
}

START_TEST(enter_at_expires_at_the_absolute_deadline)
{
    run_in_task(enter_at_main);
}
END_TEST

static void *when_main(void *arg)
{
    (void)arg;
    weft_timeout s;
    ck_assert_int_eq(weft_timeout_enter(&s, WEFT_FOREVER), 0);
    ck_assert(weft_timeout_when(&s) == WEFT_FOREVER);
    ck_assert(!weft_timeout_expired(&s));
    ck_assert_int_eq(weft_timeout_exit(&s), 0);

    double before = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&s, 0.5), 0);
    double after = weft_now();
    double when = weft_timeout_when(&s);
    ck_assert_msg(when >= before + 0.5 - TU_EARLY_EPS &&
                      when <= after + 0.5 + TU_EARLY_EPS,
                  "when %.6f not in [%.6f, %.6f]", when, before + 0.5,
                  after + 0.5);
    ck_assert(!weft_timeout_expired(&s));
    ck_assert_int_eq(weft_timeout_exit(&s), 0);
    return NULL;
}

START_TEST(when_and_expired_report_the_deadline_and_the_state)
{
    run_in_task(when_main);
}
END_TEST

static void *reschedule_main(void *arg)
{
    (void)arg;
    weft_timeout s;
    /* Later. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&s, 0.05), 0);
    double later = t0 + 0.2;
    ck_assert_int_eq(weft_timeout_reschedule(&s, later), 0);
    check_when(&s, later);
    ck_assert_int_eq(weft_sleep(0.1), 0); /* past the first deadline */
    ck_assert(!weft_timeout_expired(&s));
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    ck_assert_msg(weft_now() >= later && weft_now() <= later + TU_SLACK,
                  "expired %.3f s after the moved deadline",
                  weft_now() - later);
    /* An expired scope stays expired. */
    ck_assert_int_eq(weft_timeout_reschedule(&s, weft_now() + 10.0), -EINVAL);
    ck_assert(weft_timeout_expired(&s));
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);

    /* Earlier. */
    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&s, 10.0), 0);
    ck_assert_int_eq(weft_timeout_reschedule(&s, t0 + 0.05), 0);
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.05, "a scope moved to 50 ms");
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);

    /* Into the past: expires at once. */
    ck_assert_int_eq(weft_timeout_enter(&s, 10.0), 0);
    ck_assert_int_eq(weft_timeout_reschedule(&s, weft_now() - 1.0), 0);
    ck_assert_int_eq(weft_yield(), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);

    /* WEFT_FOREVER disarms. */
    ck_assert_int_eq(weft_timeout_enter(&s, 0.05), 0);
    ck_assert_int_eq(weft_timeout_reschedule(&s, WEFT_FOREVER), 0);
    ck_assert(weft_timeout_when(&s) == WEFT_FOREVER);
    ck_assert_int_eq(weft_sleep(0.15), 0);
    ck_assert(!weft_timeout_expired(&s));
    /* ... and can be armed again. */
    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_reschedule(&s, t0 + 0.03), 0);
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.03, "a disarmed scope armed again");
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);

    /* Bad: NaN, a closed scope. */
    ck_assert_int_eq(weft_timeout_enter(&s, 10.0), 0);
    ck_assert_int_eq(weft_timeout_reschedule(&s, NAN), -EINVAL);
    ck_assert_int_eq(weft_timeout_exit(&s), 0);
    ck_assert_int_eq(weft_timeout_reschedule(&s, weft_now() + 1.0), -EINVAL);
    return NULL;
}

START_TEST(reschedule_moves_the_deadline_later_earlier_or_away)
{
    run_in_task(reschedule_main);
}
END_TEST

/* A reschedule that runs out of memory leaves the scope as it was: same
 * deadline, its timer still armed. One worker, nothing else running: a
 * reschedule to a finite deadline allocates the scope's new node first,
 * then the timer heap grows if it is full (as on its first use). */
static void *reschedule_enomem_main(void *arg)
{
    (void)arg;
    weft_timeout s;
    /* Unarmed, and no timer added yet: the heap cannot grow. */
    ck_assert_int_eq(weft_timeout_enter(&s, WEFT_FOREVER), 0);
    weft__alloc_fail_after(2);
    int rc = weft_timeout_reschedule(&s, weft_now() + 0.03);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert(weft_timeout_when(&s) == WEFT_FOREVER);
    ck_assert_int_eq(weft_sleep(0.06), 0);
    ck_assert(!weft_timeout_expired(&s));
    /* ... and still works. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_timeout_reschedule(&s, t0 + 0.03), 0);
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.03, "a scope armed after a failed reschedule");
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);

    /* Armed: no memory for the new node; the old deadline still fires. */
    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&s, 0.05), 0);
    double when = weft_timeout_when(&s);
    weft__alloc_fail_after(1);
    rc = weft_timeout_reschedule(&s, t0 + 10.0);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert(weft_timeout_when(&s) == when);
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.05, "the deadline kept by a failed reschedule");
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);
    return (void *)1;
}

START_TEST(reschedule_out_of_memory_leaves_the_scope_as_it_was)
{
    ck_assert_int_eq((intptr_t)tu_run_in(1, reschedule_enomem_main, NULL), 1);
}
END_TEST

static void *use_others_scope(void *arg)
{
    weft_timeout *s = arg;
    TU_ASSERT_INT_EQ(weft_timeout_reschedule(s, weft_now() + 0.01), -EINVAL);
    TU_ASSERT_INT_EQ(weft_timeout_exit(s), -EINVAL);
    return (void *)1;
}

static void *others_scope_main(void *arg)
{
    (void)arg;
    weft_timeout s;
    ck_assert_int_eq(weft_timeout_enter(&s, 10.0), 0);
    weft_task *t = weft_spawn(use_others_scope, &s);
    ck_assert_ptr_nonnull(t);
    tu_join_expect(t, 1);
    /* Still open, still 10 s. */
    ck_assert(!weft_timeout_expired(&s));
    ck_assert_int_eq(weft_sleep(0.03), 0);
    ck_assert_int_eq(weft_timeout_exit(&s), 0);
    return NULL;
}

START_TEST(another_task_cannot_reschedule_or_exit_a_scope)
{
    run_in_task(others_scope_main);
}
END_TEST

/* ------------------------------------------------------------------------
 * Bad use */

static void *out_of_order_main(void *arg)
{
    (void)arg;
    weft_timeout a, b;
    ck_assert_int_eq(weft_timeout_enter(&a, 10.0), 0);
    ck_assert_int_eq(weft_timeout_enter(&b, 10.0), 0);
    ck_assert_int_eq(weft_timeout_exit(&a), -EINVAL); /* b is innermost */
    ck_assert_int_eq(weft_timeout_exit(&b), 0);
    ck_assert_int_eq(weft_timeout_exit(&b), -EINVAL); /* closed */
    ck_assert_int_eq(weft_timeout_exit(&a), 0);
    ck_assert_int_eq(weft_timeout_exit(&a), -EINVAL);
    ck_assert_int_eq(weft_yield(), 0);
    return NULL;
}

START_TEST(exit_out_of_order_fails_with_einval)
{
    run_in_task(out_of_order_main);
}
END_TEST

static void *bad_values_main(void *arg)
{
    (void)arg;
    weft_timeout s;
    ck_assert_int_eq(weft_timeout_enter(NULL, 1.0), -EINVAL);
    ck_assert_int_eq(weft_timeout_enter(&s, -1.0), -EINVAL);
    ck_assert_int_eq(weft_timeout_enter(&s, NAN), -EINVAL);
    ck_assert_int_eq(weft_timeout_enter_at(NULL, 1.0), -EINVAL);
    ck_assert_int_eq(weft_timeout_enter_at(&s, NAN), -EINVAL);
    /* None of them opened a scope. */
    ck_assert_int_eq(weft_timeout_exit(&s), -EINVAL);
    ck_assert_int_eq(weft_sleep(0.001), 0);
    return NULL;
}

START_TEST(enter_with_nan_or_negative_time_fails_with_einval)
{
    run_in_task(bad_values_main);
}
END_TEST

START_TEST(enter_from_a_plain_thread_fails_with_eperm)
{
    weft_timeout s;
    ck_assert_int_eq(weft_timeout_enter(&s, 1.0), -EPERM);
    ck_assert_int_eq(weft_timeout_enter_at(&s, weft_now() + 1.0), -EPERM);
}
END_TEST

/* ------------------------------------------------------------------------
 * A scope expiring around a gather */

static atomic_int g_started, g_exited;
static int g_child_rc[3];

static void *gather_child(void *arg)
{
    intptr_t i = (intptr_t)arg;
    atomic_fetch_add(&g_started, 1);
    g_child_rc[i] = weft_sleep(i == 0 ? 0.001 : WEFT_FOREVER);
    atomic_fetch_add(&g_exited, 1);
    return (void *)(i + 100);
}

static void *gather_expiry_main(void *arg)
{
    (void)arg;
    weft_task *t[3];
    for (intptr_t i = 0; i < 3; i++) {
        t[i] = weft_spawn(gather_child, (void *)i);
        ck_assert_ptr_nonnull(t[i]);
    }
    weft_timeout s;
    double t0 = weft_now(); /* no later than the scope's start */
    ck_assert_int_eq(weft_timeout_enter(&s, 0.05), 0);
    void *res[3] = {(void *)1, (void *)1, (void *)1};
    int errs[3] = {1, 1, 1};
    ck_assert_int_eq(weft_gather(t, 3, res, errs), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.05, "gather in a 50 ms scope");
    /* Every child was reaped before gather returned. */
    ck_assert_int_eq(atomic_load(&g_exited), atomic_load(&g_started));
    ck_assert_int_eq(atomic_load(&g_exited), 3);
    ck_assert_int_eq(errs[0], 0);
    ck_assert_int_eq((intptr_t)res[0], 100);
    ck_assert_int_eq(g_child_rc[0], 0);
    for (int i = 1; i < 3; i++) {
        /* Cancelled because the caller's scope expired (weft_join). */
        ck_assert_int_eq(errs[i], -ETIMEDOUT);
        ck_assert_ptr_null(res[i]);
        ck_assert_int_eq(g_child_rc[i], -ECANCELED);
    }
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);
    ck_assert_int_eq(weft_cancelling(weft_current()), 0);
    ck_assert_int_eq(weft_yield(), 0);
    return NULL;
}

START_TEST(scope_expiring_in_gather_cancels_and_reaps_the_children)
{
    atomic_store(&g_started, 0);
    atomic_store(&g_exited, 0);
    run_in_task(gather_expiry_main);
}
END_TEST

/* ------------------------------------------------------------------------
 * weft_wait_for */

static void *sleep_then_return(void *arg)
{
    int rc = weft_sleep(0.01);
    return rc == 0 ? arg : NULL;
}

static void *wait_for_in_time_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(sleep_then_return, (void *)5);
    ck_assert_ptr_nonnull(t);
    void *r = NULL;
    double t0 = weft_now();
    ck_assert_int_eq(weft_wait_for(t, 1.0, &r), 0);
    ck_assert_int_eq((intptr_t)r, 5);
    ck_assert_msg(weft_now() - t0 < 0.01 + TU_SLACK, "took %.3f s",
                  weft_now() - t0);
    /* A finished task with no time left: its result all the same. */
    t = weft_spawn(sleep_then_return, (void *)6);
    ck_assert_ptr_nonnull(t);
    while (!weft_task_done(t))
        tu_yield();
    ck_assert_int_eq(weft_wait_for(t, 0, &r), 0);
    ck_assert_int_eq((intptr_t)r, 6);
    return NULL;
}

START_TEST(wait_for_returns_the_result_of_a_task_that_finishes_in_time)
{
    run_in_task(wait_for_in_time_main);
}
END_TEST

static atomic_int wf_exited;
static int wf_rc;

static void *wf_sleep_forever(void *arg)
{
    wf_rc = weft_sleep(WEFT_FOREVER);
    atomic_fetch_add(&wf_exited, 1);
    return arg;
}

static void *wait_for_timeout_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(wf_sleep_forever, (void *)5);
    ck_assert_ptr_nonnull(t);
    void *r = NULL;
    double t0 = weft_now();
    ck_assert_int_eq(weft_wait_for(t, 0.05, &r), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.05, "wait_for of 50 ms");
    /* The task was cancelled and has ended. */
    ck_assert_int_eq(atomic_load(&wf_exited), 1);
    ck_assert_int_eq(wf_rc, -ECANCELED);
    /* The caller is not cancelled. */
    ck_assert_int_eq(weft_cancelling(weft_current()), 0);
    ck_assert_int_eq(weft_yield(), 0);
    return NULL;
}

START_TEST(wait_for_timing_out_cancels_the_task)
{
    atomic_store(&wf_exited, 0);
    run_in_task(wait_for_timeout_main);
}
END_TEST

static atomic_int uf_started;

static void *uncancel_and_finish(void *arg)
{
    atomic_store(&uf_started, 1);
    int rc = weft_sleep(WEFT_FOREVER);
    TU_ASSERT_INT_EQ(rc, -ECANCELED);
    TU_ASSERT_INT_EQ(weft_uncancel(), 0);
    TU_ASSERT_INT_EQ(weft_sleep(0.01), 0);
    return arg;
}

static void *busy_then_return(void *arg)
{
    double t0 = weft_now();
    while (weft_now() - t0 < 0.1)
        ; /* no suspension point: never sees the cancel */
    return arg;
}

static void *wait_for_ignored_main(void *arg)
{
    bool started_first = arg != NULL;
    void *r = NULL;
    atomic_store(&uf_started, 0);
    weft_task *t = weft_spawn(uncancel_and_finish, (void *)8);
    ck_assert_ptr_nonnull(t);
    if (started_first)
        while (!atomic_load(&uf_started))
            tu_yield();
    ck_assert_int_eq(weft_wait_for(t, 0.02, &r), 0);
    ck_assert_int_eq((intptr_t)r, 8);

    double t0 = weft_now(); /* before it starts its 100 ms */
    t = weft_spawn(busy_then_return, (void *)9);
    ck_assert_ptr_nonnull(t);
    r = NULL;
    ck_assert_int_eq(weft_wait_for(t, 0.02, &r), 0);
    ck_assert_int_eq((intptr_t)r, 9);
    ck_assert(weft_now() - t0 >= 0.1 - TU_EARLY_EPS);
    return NULL;
}

START_TEST(wait_for_returns_the_result_of_a_task_that_ignores_the_cancel)
{
    /* _i 0: the task runs before the wait (2 workers); 1: one worker, so
     * the wait may run it inline on the caller's stack. */
    if (_i == 0)
        tu_run_in(2, wait_for_ignored_main, (void *)1);
    else
        tu_run_in(1, wait_for_ignored_main, NULL);
}
END_TEST

struct race {
    atomic_int entered, exited;
    int sleep_rc;
};

static void *race_child(void *arg)
{
    struct race *rc = arg;
    atomic_fetch_add(&rc->entered, 1);
    rc->sleep_rc = weft_sleep(0.001);
    atomic_fetch_add(&rc->exited, 1);
    return (void *)0x5a;
}

static void *wait_for_race_main(void *arg)
{
    long iters = (long)(intptr_t)arg;
    uint64_t rng =
        tu_seed("wait_for_racing_the_task_end_returns_0_or_etimedout");
    long ok = 0, timed_out = 0;
    for (long i = 0; i < iters; i++) {
        struct race rc = {.sleep_rc = 1};
        weft_task *t = weft_spawn(race_child, &rc);
        TU_ASSERT(t != NULL);
        /* 0.5 to 1.5 ms around the child's 1 ms sleep. */
        double limit = (double)(500 + tu_rand(&rng) % 1000) / 1e6;
        void *r = NULL;
        int err = weft_wait_for(t, limit, &r);
        TU_ASSERT(err == 0 || err == -ETIMEDOUT);
        TU_ASSERT_INT_EQ(atomic_load(&rc.exited), atomic_load(&rc.entered));
        if (err == 0) {
            TU_ASSERT((intptr_t)r == 0x5a);
            /* It finished normally: its sleep was not cancelled. */
            TU_ASSERT_INT_EQ(rc.sleep_rc, 0);
            ok++;
        } else {
            /* It ended cancelled: never ran, or its sleep said so. */
            TU_ASSERT(atomic_load(&rc.entered) == 0 ||
                      rc.sleep_rc == -ECANCELED);
            timed_out++;
        }
    }
    printf("wait_for race: %ld in time, %ld timed out\n", ok, timed_out);
    /* Nothing left behind: the live count falls to this task alone, at
     * once or very soon after the last join. */
    weft_stats st;
    double t0 = weft_now();
    do {
        ck_assert_int_eq(weft_stats_get(NULL, &st), 0);
        if (st.tasks_alive != 1)
            tu_yield();
    } while (st.tasks_alive != 1 && weft_now() - t0 < 2.0);
    ck_assert_uint_eq(st.tasks_alive, 1);
    ck_assert_int_eq(weft_cancelling(weft_current()), 0);
    return NULL;
}

START_TEST(wait_for_racing_the_task_end_returns_0_or_etimedout)
{
    long iters = TU_SCALE(1000, 400, 300);
    tu_run_in(2, wait_for_race_main, (void *)(intptr_t)iters);
}
END_TEST

static void *wait_for_bad_main(void *arg)
{
    (void)arg;
    ck_assert_int_eq(weft_wait_for(NULL, 1.0, NULL), -EINVAL);
    weft_task *self = weft_current();
    ck_assert_int_eq(weft_wait_for(self, 1.0, NULL), -EINVAL);
    weft_task *t = weft_spawn(sleep_then_return, (void *)4);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_wait_for(t, -1.0, NULL), -EINVAL);
    ck_assert_int_eq(weft_wait_for(t, NAN, NULL), -EINVAL);
    /* Refused before waiting, as a bad weft_join is: the handle is kept. */
    tu_join_expect(t, 4);
    return NULL;
}

START_TEST(wait_for_with_bad_input_fails_with_einval)
{
    run_in_task(wait_for_bad_main);
}
END_TEST

static Suite *timeout_suite(void)
{
    Suite *s = suite_create("timeout");

    TCase *tc = tcase_create("expiry");
    tcase_add_test(tc, expired_scope_makes_sleep_and_exit_return_etimedout);
    tcase_add_test(tc, scope_exited_in_time_returns_zero);
    tcase_add_test(tc, task_returning_with_an_open_scope_has_it_closed);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("nesting");
    tcase_add_test(tc, nested_inner_shorter_only_the_inner_exit_times_out);
    tcase_add_test(
        tc, nested_outer_shorter_times_out_inside_but_only_the_outer_exit);
    tcase_add_test(tc, real_cancel_inside_a_scope_stays_ecanceled);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("deadline");
    tcase_add_test(tc, enter_at_expires_at_the_absolute_deadline);
    tcase_add_test(tc, when_and_expired_report_the_deadline_and_the_state);
    tcase_add_test(tc, reschedule_moves_the_deadline_later_earlier_or_away);
    tcase_add_test(tc, reschedule_out_of_memory_leaves_the_scope_as_it_was);
    tcase_add_test(tc, another_task_cannot_reschedule_or_exit_a_scope);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_add_test(tc, exit_out_of_order_fails_with_einval);
    tcase_add_test(tc, enter_with_nan_or_negative_time_fails_with_einval);
    tcase_add_test(tc, enter_from_a_plain_thread_fails_with_eperm);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("gather");
    tcase_add_test(tc, scope_expiring_in_gather_cancels_and_reaps_the_children);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait_for");
    tcase_add_test(tc,
                   wait_for_returns_the_result_of_a_task_that_finishes_in_time);
    tcase_add_test(tc, wait_for_timing_out_cancels_the_task);
    tcase_add_loop_test(
        tc, wait_for_returns_the_result_of_a_task_that_ignores_the_cancel, 0,
        2);
    tcase_add_test(tc, wait_for_with_bad_input_fails_with_einval);
    tcase_add_loop_test(tc, wait_for_racing_the_task_end_returns_0_or_etimedout,
                        0, 3);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(timeout_suite());
}
