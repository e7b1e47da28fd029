/* Cancellation (weft.h, "Cancellation"): a request that the task sees as
 * -ECANCELED at its next suspension point and every later one until it
 * returns or withdraws it; forwarded by a join; counted; and the outcome
 * (weft_join, weft_task_cancelled) a task that was cancelled ends with.
 *
 * Tasks that must be suspended when they are cancelled are waited for
 * through weft_all_tasks (state WAITING), not with sleeps. Each test makes
 * its own runtime: Check forks every test.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

static void *add_one(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

static void wait_flag(weft_runtime *rt, atomic_int *flag)
{
    while (!atomic_load(flag)) {
        if (rt)
            sched_yield();
        else
            tu_yield();
    }
}

/* ------------------------------------------------------------------------
 * Cancelling a task in each place it can be */

struct sleeper {
    atomic_int started;
    int rc;       /* what the sleep returned */
    int later_rc; /* what the next suspension point returned */
};

static void *sleep_forever(void *arg)
{
    struct sleeper *s = arg;
    atomic_store(&s->started, 1);
    s->rc = weft_sleep(WEFT_FOREVER);
    s->later_rc = weft_yield();
    return (void *)7;
}

/* Cancel a sleeping task and join it; from a task (rt NULL) or a plain
 * thread. */
static void cancel_a_sleeper(weft_runtime *rt)
{
    struct sleeper s = {0};
    weft_task *t = weft_spawn_ex(rt, sleep_forever, &s, NULL);
    ck_assert_ptr_nonnull(t);
    wait_flag(rt, &s.started);
    tu_wait_until_waiting(rt, t);
    ck_assert(!weft_task_done(t));
    ck_assert_int_eq(weft_cancelling(t), 0);
    double t0 = weft_now();
    ck_assert_int_eq(weft_cancel(t), 0);
    ck_assert_int_eq(weft_cancelling(t), 1);
    while (!weft_task_done(t)) {
        if (rt)
            sched_yield();
        else
            tu_yield();
    }
    ck_assert_msg(weft_now() - t0 < TU_SLACK,
                  "the cancelled sleep woke after %.3f s", weft_now() - t0);
    ck_assert(weft_task_cancelled(t));
    ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    ck_assert_int_eq(s.rc, -ECANCELED);
    ck_assert_int_eq(s.later_rc, -ECANCELED);
}

static void *cancel_sleeper_main(void *arg)
{
    (void)arg;
    cancel_a_sleeper(NULL);
    return NULL;
}

START_TEST(cancel_while_sleeping_wakes_the_sleep_with_ecanceled)
{
    if (_i == 0) {
        tu_run_in(2, cancel_sleeper_main, NULL); /* a task cancels */
        return;
    }
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2});
    ck_assert_ptr_nonnull(rt);
    cancel_a_sleeper(rt); /* a plain thread cancels */
    weft_runtime_free(rt);
}
END_TEST

struct join_pair {
    bool start_inner_first;
    atomic_int inner_started, outer_joining;
    weft_task *inner;
    int inner_rc, join_rc, after_rc;
};

static void *inner_sleeper(void *arg)
{
    struct join_pair *jp = arg;
    atomic_store(&jp->inner_started, 1);
    jp->inner_rc = weft_sleep(WEFT_FOREVER);
    return (void *)5;
}

static void *outer_joiner(void *arg)
{
    struct join_pair *jp = arg;
    jp->inner = weft_spawn(inner_sleeper, jp);
    TU_ASSERT(jp->inner != NULL);
    if (jp->start_inner_first)
        wait_flag(NULL, &jp->inner_started);
    atomic_store(&jp->outer_joining, 1);
    /* Not started yet, the inner task may run inline on this stack. */
    jp->join_rc = weft_join(jp->inner, NULL);
    jp->after_rc = weft_yield();
    return (void *)6;
}

static void *cancel_joiner_main(void *arg)
{
    struct join_pair *jp = arg;
    weft_task *outer = weft_spawn(outer_joiner, jp);
    ck_assert_ptr_nonnull(outer);
    wait_flag(NULL, &jp->outer_joining);
    wait_flag(NULL, &jp->inner_started);
    tu_wait_until_waiting(NULL, jp->inner);
    if (jp->start_inner_first)
        tu_wait_until_waiting(NULL, outer);
    ck_assert_int_eq(weft_cancel(outer), 0);
    ck_assert_int_eq(weft_join(outer, NULL), -ECANCELED);
    /* The join forwarded the cancel: the inner task ended cancelled. */
    ck_assert_int_eq(jp->inner_rc, -ECANCELED);
    ck_assert_int_eq(jp->join_rc, -ECANCELED);
    ck_assert_int_eq(jp->after_rc, -ECANCELED);
    return NULL;
}

START_TEST(cancel_while_joining_is_forwarded_to_the_joined_task)
{
    /* _i 0: the inner task runs before the join; 1: the join may run it
     * inline on the joiner's stack. */
    struct join_pair jp = {.start_inner_first = _i == 0};
    tu_run_in(2, cancel_joiner_main, &jp);
}
END_TEST

static atomic_int body_ran;

static void *mark_ran(void *arg)
{
    atomic_store(&body_ran, 1);
    return arg;
}

static void *cancel_before_start_main(void *arg)
{
    int how = (int)(intptr_t)arg;
    /* One worker and no suspension point between spawn and cancel: the
     * task cannot have started. */
    weft_task *t = weft_spawn(mark_ran, (void *)1);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_cancel(t), 0);
    ck_assert_int_eq(weft_cancelling(t), 1);
    if (how == 1) {
        /* Let the worker take it from its queue instead of the join. */
        for (int i = 0; i < 10; i++)
            tu_yield();
        while (!weft_task_done(t))
            tu_yield();
        ck_assert(weft_task_cancelled(t));
        ck_assert_int_eq(weft_cancel(t), -ESRCH);
    }
    ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    ck_assert_int_eq(atomic_load(&body_ran), 0);
    return NULL;
}

struct blocker {
    atomic_int started, go;
};

static void *block_worker(void *arg)
{
    struct blocker *b = arg;
    atomic_store(&b->started, 1);
    while (!atomic_load(&b->go))
        sched_yield(); /* holds the only worker: no suspension point */
    return NULL;
}

START_TEST(cancel_before_start_means_the_body_never_runs)
{
    atomic_store(&body_ran, 0);
    if (_i < 2) {
        /* 0: joined at once (the inline path); 1: left in the queue. */
        tu_run_in(1, cancel_before_start_main, (void *)(intptr_t)_i);
        return;
    }
    /* 2: from a plain thread, while the only worker is kept busy. */
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 1});
    ck_assert_ptr_nonnull(rt);
    struct blocker b = {0};
    weft_task *blk = weft_spawn_ex(rt, block_worker, &b, NULL);
    ck_assert_ptr_nonnull(blk);
    wait_flag(rt, &b.started);
    weft_task *t = weft_spawn_ex(rt, mark_ran, (void *)1, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_cancel(t), 0);
    atomic_store(&b.go, 1);
    ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    ck_assert_int_eq(weft_join(blk, NULL), 0);
    weft_runtime_free(rt);
    ck_assert_int_eq(atomic_load(&body_ran), 0);
}
END_TEST

static void *self_canceller(void *arg)
{
    (void)arg;
    weft_task *self = weft_current();
    ck_assert_int_eq(weft_cancel(self), 0);
    ck_assert_int_eq(weft_cancelling(self), 1);
    ck_assert(!weft_task_cancelled(self)); /* false while it runs */
    ck_assert_int_eq(weft_yield(), -ECANCELED);
    /* A cancelled task's sleep returns at once. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_sleep(10.0), -ECANCELED);
    ck_assert_int_eq(weft_sleep(WEFT_FOREVER), -ECANCELED);
    ck_assert_int_eq(weft_sleep(0), -ECANCELED);
    ck_assert_int_eq(weft_sleep_until(weft_now() + 10.0), -ECANCELED);
    ck_assert_int_eq(weft_sleep_until(0.0), -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "cancelled sleeps took %.3f s",
                  weft_now() - t0);
    return (void *)3;
}

START_TEST(self_cancel_is_seen_at_the_next_suspension_point)
{
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2});
    ck_assert_ptr_nonnull(rt);
    weft_task *t = weft_spawn_ex(rt, self_canceller, NULL, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    weft_runtime_free(rt);
}
END_TEST

static void *self_cancel_and_return(void *arg)
{
    (void)arg;
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    ck_assert_int_eq(weft_yield(), -ECANCELED);
    return NULL;
}

static void *cancel_finished_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(add_one, (void *)1);
    ck_assert_ptr_nonnull(t);
    while (!weft_task_done(t))
        tu_yield();
    ck_assert_int_eq(weft_cancel(t), -ESRCH);
    ck_assert_int_eq(weft_cancelling(t), 0);
    ck_assert(!weft_task_cancelled(t));
    tu_join_expect(t, 2);

    /* A task that ended cancelled has finished too. */
    t = weft_spawn(self_cancel_and_return, NULL);
    ck_assert_ptr_nonnull(t);
    while (!weft_task_done(t))
        tu_yield();
    ck_assert(weft_task_cancelled(t));
    ck_assert_int_eq(weft_cancel(t), -ESRCH);
    ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    return NULL;
}

START_TEST(cancel_of_a_finished_task_returns_esrch)
{
    tu_run_in(2, cancel_finished_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * Sticky and counted requests */

static void *sticky_body(void *arg)
{
    (void)arg;
    weft_task *self = weft_current();
    ck_assert_int_eq(weft_cancel(self), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(weft_yield(), -ECANCELED);
        ck_assert_int_eq(weft_sleep(0.001), -ECANCELED);
        ck_assert_int_eq(weft_cancelling(self), 1);
    }
    /* A join while cancelled cancels the joined task: on one worker it
     * has not started, so it never runs. */
    atomic_store(&body_ran, 0);
    weft_task *c = weft_spawn(mark_ran, (void *)1);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(weft_join(c, NULL), -ECANCELED);
    ck_assert_int_eq(atomic_load(&body_ran), 0);
    ck_assert_int_eq(weft_yield(), -ECANCELED);

    ck_assert_int_eq(weft_uncancel(), 0);
    ck_assert_int_eq(weft_cancelling(self), 0);
    ck_assert_int_eq(weft_yield(), 0);
    ck_assert_int_eq(weft_sleep(0.001), 0);
    c = weft_spawn(add_one, (void *)1);
    ck_assert_ptr_nonnull(c);
    tu_join_expect(c, 2);
    return (void *)7;
}

static void *sticky_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(sticky_body, NULL);
    ck_assert_ptr_nonnull(t);
    while (!weft_task_done(t))
        tu_yield();
    /* It withdrew the request before returning: a normal end. */
    ck_assert(!weft_task_cancelled(t));
    tu_join_expect(t, 7);
    return NULL;
}

START_TEST(cancel_is_sticky_until_uncancel)
{
    tu_run_in(1, sticky_main, NULL);
}
END_TEST

struct counted {
    atomic_int started, go;
};

static void *counted_body(void *arg)
{
    struct counted *c = arg;
    weft_task *self = weft_current();
    atomic_store(&c->started, 1);
    while (!atomic_load(&c->go)) {
        int rc = weft_yield();
        TU_ASSERT(rc == 0 || rc == -ECANCELED);
    }
    ck_assert_int_eq(weft_cancelling(self), 2);
    ck_assert_int_eq(weft_yield(), -ECANCELED);
    ck_assert_int_eq(weft_uncancel(), 1);
    ck_assert_int_eq(weft_cancelling(self), 1);
    ck_assert_int_eq(weft_yield(), -ECANCELED); /* one still pending */
    ck_assert_int_eq(weft_sleep(0.001), -ECANCELED);
    ck_assert_int_eq(weft_uncancel(), 0);
    ck_assert_int_eq(weft_cancelling(self), 0);
    ck_assert_int_eq(weft_yield(), 0);
    /* Nothing pending: the count stays at 0 (asyncio's uncancel). */
    ck_assert_int_eq(weft_uncancel(), 0);
    ck_assert_int_eq(weft_cancelling(self), 0);
    ck_assert_int_eq(weft_sleep(0.001), 0);
    return (void *)5;
}

static void *counted_main(void *arg)
{
    (void)arg;
    struct counted c = {0};
    weft_task *t = weft_spawn(counted_body, &c);
    ck_assert_ptr_nonnull(t);
    wait_flag(NULL, &c.started);
    ck_assert_int_eq(weft_cancel(t), 0);
    ck_assert_int_eq(weft_cancel(t), 0);
    ck_assert_int_eq(weft_cancelling(t), 2);
    atomic_store(&c.go, 1);
    tu_join_expect(t, 5);
    return NULL;
}

START_TEST(two_cancels_need_two_uncancels)
{
    tu_run_in(2, counted_main, NULL);
}
END_TEST

START_TEST(uncancel_and_cancelling_outside_a_task)
{
    ck_assert_int_eq(weft_uncancel(), -EPERM);
    ck_assert_int_eq(weft_cancelling(NULL), 0);
    ck_assert_int_eq(weft_cancel(NULL), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------------------
 * How a cancelled task ends */

struct spinner {
    atomic_int started, go;
};

static void *spin_then_return(void *arg)
{
    struct spinner *s = arg;
    atomic_store(&s->started, 1);
    while (!atomic_load(&s->go))
        ; /* no suspension point: the cancel is never seen */
    return (void *)42;
}

START_TEST(task_ignoring_the_cancel_finishes_normally)
{
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2});
    ck_assert_ptr_nonnull(rt);
    struct spinner s = {0};
    weft_task *t = weft_spawn_ex(rt, spin_then_return, &s, NULL);
    ck_assert_ptr_nonnull(t);
    wait_flag(rt, &s.started);
    ck_assert(!weft_task_cancelled(t)); /* running */
    ck_assert_int_eq(weft_cancel(t), 0);
    ck_assert_int_eq(weft_cancelling(t), 1);
    ck_assert(!weft_task_cancelled(t)); /* still running */
    atomic_store(&s.go, 1);
    while (!weft_task_done(t))
        sched_yield();
    ck_assert(!weft_task_cancelled(t));
    tu_join_expect(t, 42);
    weft_runtime_free(rt);
}
END_TEST

static void *catch_and_uncancel(void *arg)
{
    struct sleeper *s = arg;
    atomic_store(&s->started, 1);
    s->rc = weft_sleep(WEFT_FOREVER);
    TU_ASSERT_INT_EQ(weft_uncancel(), 0);
    s->later_rc = weft_sleep(0.001);
    return (void *)11;
}

static void *uncancel_main(void *arg)
{
    (void)arg;
    struct sleeper s = {0};
    weft_task *t = weft_spawn(catch_and_uncancel, &s);
    ck_assert_ptr_nonnull(t);
    wait_flag(NULL, &s.started);
    tu_wait_until_waiting(NULL, t);
    ck_assert_int_eq(weft_cancel(t), 0);
    while (!weft_task_done(t))
        tu_yield();
    ck_assert(!weft_task_cancelled(t));
    tu_join_expect(t, 11);
    ck_assert_int_eq(s.rc, -ECANCELED);
    ck_assert_int_eq(s.later_rc, 0);
    return NULL;
}

START_TEST(task_that_uncancels_and_returns_finishes_normally)
{
    tu_run_in(2, uncancel_main, NULL);
}
END_TEST

struct forwarded {
    bool start_child_first;
    atomic_int child_started;
    weft_task *child, *child_self;
    int child_sleep_rc, child_uncancel_rc, child_later_rc;
    int join_rc, after_rc;
    void *join_result;
};

static void *child_withdraws(void *arg)
{
    struct forwarded *f = arg;
    f->child_self = weft_current();
    atomic_store(&f->child_started, 1);
    f->child_sleep_rc = weft_sleep(WEFT_FOREVER);
    f->child_uncancel_rc = weft_uncancel();
    f->child_later_rc = weft_sleep(0.001);
    return (void *)8;
}

static void *parent_joins_child(void *arg)
{
    struct forwarded *f = arg;
    f->child = weft_spawn(child_withdraws, f);
    TU_ASSERT(f->child != NULL);
    if (f->start_child_first)
        wait_flag(NULL, &f->child_started);
    f->join_rc = weft_join(f->child, &f->join_result);
    f->after_rc = weft_yield(); /* its own request is still pending */
    return NULL;
}

START_TEST(child_that_uncancels_a_forwarded_cancel_finishes_normally)
{
    /* _i 0: the child runs before the join (2 workers); 1: one worker,
     * the join runs the child inline on the parent's stack. The way a
     * join runs the child must not change what the child sees. */
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2 - _i});
    ck_assert_ptr_nonnull(rt);
    struct forwarded f = {.start_child_first = _i == 0};
    weft_task *p = weft_spawn_ex(rt, parent_joins_child, &f, NULL);
    ck_assert_ptr_nonnull(p);
    wait_flag(rt, &f.child_started);
    tu_wait_until_waiting(rt, f.child_self);
    ck_assert_int_eq(weft_cancel(p), 0);
    /* The parent saw -ECANCELED at its yield: it ends cancelled. */
    ck_assert_int_eq(weft_join(p, NULL), -ECANCELED);
    weft_runtime_free(rt);
    ck_assert_int_eq(f.child_sleep_rc, -ECANCELED);
    ck_assert_int_eq(f.child_uncancel_rc, 0);
    ck_assert_int_eq(f.child_later_rc, 0);
    ck_assert_int_eq(f.join_rc, 0);
    ck_assert_int_eq((intptr_t)f.join_result, 8);
    ck_assert_int_eq(f.after_rc, -ECANCELED);
}
END_TEST

/* Every cancel of a joiner reaches the child it runs inline, not only the
 * first: the child withdraws the first one, then gets the second, whether
 * it is parked when it comes (_i == 0) or running (_i == 1). */
static weft_task *twice_child_task;
static atomic_int twice_stage;
static int twice_rc[2];

static void *twice_child(void *arg)
{
    bool running = arg != NULL;
    twice_rc[0] = weft_sleep(WEFT_FOREVER);
    TU_ASSERT_INT_EQ(weft_uncancel(), 0);
    atomic_store(&twice_stage, 1);
    if (running) /* yield while the second cancel comes */
        while (atomic_load(&twice_stage) == 1 && weft_yield() == 0)
            ;
    twice_rc[1] = weft_sleep(WEFT_FOREVER);
    return NULL;
}

static void *twice_joiner(void *arg)
{
    twice_child_task = weft_spawn(twice_child, arg);
    TU_ASSERT(twice_child_task != NULL);
    /* One worker, the child just spawned: the join runs it inline. */
    return (void *)(intptr_t)weft_join(twice_child_task, NULL);
}

static void *twice_main(void *arg)
{
    weft_task *p = weft_spawn(twice_joiner, arg);
    ck_assert_ptr_nonnull(p);
    while (!__atomic_load_n(&twice_child_task, __ATOMIC_ACQUIRE))
        tu_yield();
    tu_wait_until_waiting(NULL, twice_child_task);
    ck_assert_int_eq(weft_cancel(p), 0);
    while (atomic_load(&twice_stage) == 0)
        tu_yield();
    if (!arg)
        tu_wait_until_waiting(NULL, twice_child_task);
    ck_assert_int_eq(weft_cancel(p), 0);
    atomic_store(&twice_stage, 2);
    /* The joiner ends cancelled (its join said so); a lost second cancel
     * would have left it waiting: -ETIMEDOUT. */
    ck_assert_int_eq(weft_wait_for(p, 10.0, NULL), -ECANCELED);
    return NULL;
}

START_TEST(every_cancel_of_a_joiner_reaches_the_child_it_runs_inline)
{
    twice_child_task = NULL;
    atomic_store(&twice_stage, 0);
    tu_run_in(1, twice_main, _i ? (void *)1 : NULL);
    ck_assert_int_eq(twice_rc[0], -ECANCELED);
    ck_assert_int_eq(twice_rc[1], -ECANCELED);
}
END_TEST

static Suite *cancel_suite(void)
{
    Suite *s = suite_create("cancel");

    TCase *tc = tcase_create("cancel");
    tcase_add_loop_test(
        tc, cancel_while_sleeping_wakes_the_sleep_with_ecanceled, 0, 2);
    tcase_add_loop_test(
        tc, cancel_while_joining_is_forwarded_to_the_joined_task, 0, 2);
    tcase_add_loop_test(tc, cancel_before_start_means_the_body_never_runs, 0,
                        3);
    tcase_add_test(tc, self_cancel_is_seen_at_the_next_suspension_point);
    tcase_add_test(tc, cancel_of_a_finished_task_returns_esrch);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("sticky");
    tcase_add_test(tc, cancel_is_sticky_until_uncancel);
    tcase_add_test(tc, two_cancels_need_two_uncancels);
    tcase_add_test(tc, uncancel_and_cancelling_outside_a_task);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("outcome");
    tcase_add_test(tc, task_ignoring_the_cancel_finishes_normally);
    tcase_add_test(tc, task_that_uncancels_and_returns_finishes_normally);
    tcase_add_loop_test(
        tc, child_that_uncancels_a_forwarded_cancel_finishes_normally, 0, 2);
    tcase_add_loop_test(
        tc, every_cancel_of_a_joiner_reaches_the_child_it_runs_inline, 0, 2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(cancel_suite());
}
