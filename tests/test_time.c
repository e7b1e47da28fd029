/* Time (weft.h, "Time"): the monotonic clock, weft_sleep and
 * weft_sleep_until from tasks and from plain threads, sleep(0) as a yield,
 * bad input, many sleepers at once, and timers that fire on time while
 * every worker is busy.
 *
 * Timing checks allow a timer to fire late by TU_SLACK (a loaded 2-core VM,
 * and the sanitizers), never early. Each test makes its own runtime: Check
 * forks every test, and worker threads do not survive a fork.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

/* ------------------------------------------------------------------------
 * weft_now */

static void check_now_follows_the_clock(int rounds)
{
    double prev = weft_now();
    for (int i = 0; i < rounds; i++) {
        double before = (double)tu_now_ns() / 1e9;
        double now = weft_now();
        double after = (double)tu_now_ns() / 1e9;
        TU_ASSERT(now >= prev);
        /* CLOCK_MONOTONIC in seconds: between two readings of it. */
        TU_ASSERT(now >= before - TU_EARLY_EPS && now <= after + TU_EARLY_EPS);
        prev = now;
    }
}

static void *now_in_task(void *arg)
{
    check_now_follows_the_clock((int)(intptr_t)arg);
    return (void *)1;
}

START_TEST(now_is_monotonic_and_reads_clock_monotonic)
{
    int rounds = TU_SCALE(200000, 50000, 20000);
    check_now_follows_the_clock(rounds); /* a plain thread */
    ck_assert_int_eq(
        (intptr_t)tu_run_in(2, now_in_task, (void *)(intptr_t)rounds), 1);
}
END_TEST

/* ------------------------------------------------------------------------
 * weft_sleep / weft_sleep_until from a task */

static void *sleep_times_main(void *arg)
{
    (void)arg;
    static const double d[] = {0.001, 0.005, 0.02, 0.05, 0.1};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        double t0 = weft_now();
        ck_assert_int_eq(weft_sleep(d[i]), 0);
        tu_check_elapsed(t0, d[i], "weft_sleep");
    }
    double deadline = weft_now() + 0.03;
    double t0 = weft_now();
    ck_assert_int_eq(weft_sleep_until(deadline), 0);
    ck_assert_msg(weft_now() >= deadline, "woke before the deadline");
    tu_check_elapsed(t0, deadline - t0, "weft_sleep_until");
    return NULL;
}

START_TEST(sleep_sleeps_at_least_the_time_and_not_much_more)
{
    tu_run_in(2, sleep_times_main, NULL);
}
END_TEST

enum { ZLOG = 100 };
static char zlog[2 * ZLOG];
static atomic_int zlen;

static void *zero_sleeper(void *arg)
{
    char who = (char)(intptr_t)arg;
    for (int i = 0; i < ZLOG; i++) {
        zlog[atomic_fetch_add(&zlen, 1)] = who;
        TU_ASSERT_INT_EQ(weft_sleep(0), 0);
    }
    return NULL;
}

static void *sleep_zero_main(void *arg)
{
    (void)arg;
    weft_task *a = weft_spawn(zero_sleeper, (void *)'a');
    weft_task *b = weft_spawn(zero_sleeper, (void *)'b');
    ck_assert(a && b);
    ck_assert_int_eq(weft_join(a, NULL), 0);
    ck_assert_int_eq(weft_join(b, NULL), 0);
    /* With nothing else ready, sleep(0) returns at once. */
    double t0 = weft_now();
    for (int i = 0; i < 1000; i++)
        TU_ASSERT_INT_EQ(weft_sleep(0), 0);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "1000 sleep(0) took %.3f s",
                  weft_now() - t0);
    return NULL;
}

START_TEST(sleep_zero_yields_to_the_other_ready_tasks)
{
    /* One worker: the two tasks interleave only if sleep(0) lets the
     * other ready task run, as weft_yield does. */
    atomic_store(&zlen, 0);
    tu_run_in(1, sleep_zero_main, NULL);
    ck_assert_int_eq(atomic_load(&zlen), 2 * ZLOG);
    int longest = 1, run = 1;
    for (int i = 1; i < 2 * ZLOG; i++) {
        run = zlog[i] == zlog[i - 1] ? run + 1 : 1;
        if (run > longest)
            longest = run;
    }
    ck_assert_msg(longest <= 2, "a task ran %d times in a row", longest);
}
END_TEST

static void *past_main(void *arg)
{
    (void)arg;
    double t0 = weft_now();
    ck_assert_int_eq(weft_sleep_until(t0 - 1.0), 0);
    ck_assert_int_eq(weft_sleep_until(0.0), 0);
    ck_assert_int_eq(weft_sleep_until(t0), 0);
    for (int i = 0; i < 1000; i++)
        TU_ASSERT_INT_EQ(weft_sleep_until(t0 - 0.5), 0);
    ck_assert_msg(weft_now() - t0 < TU_SLACK,
                  "sleep_until a past deadline took %.3f s", weft_now() - t0);
    return NULL;
}

START_TEST(sleep_until_a_past_deadline_returns_at_once)
{
    tu_run_in(1, past_main, NULL);
}
END_TEST

static void check_bad_times(void)
{
    ck_assert_int_eq(weft_sleep(-1.0), -EINVAL);
    ck_assert_int_eq(weft_sleep(-1e-9), -EINVAL);
    ck_assert_int_eq(weft_sleep(-WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_sleep(NAN), -EINVAL);
    ck_assert_int_eq(weft_sleep_until(NAN), -EINVAL);
}

static void *bad_main(void *arg)
{
    (void)arg;
    check_bad_times();
    return (void *)1;
}

START_TEST(sleep_with_negative_or_nan_time_fails_with_einval)
{
    ck_assert_int_eq((intptr_t)tu_run_in(1, bad_main, NULL), 1);
    check_bad_times(); /* from a plain thread too */
}
END_TEST

/* ------------------------------------------------------------------------
 * Many sleepers */

static atomic_int sleepers_woken;

static void *random_sleeper(void *arg)
{
    double d = (double)(uintptr_t)arg / 1e6; /* microseconds */
    double t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_sleep(d), 0);
    TU_ASSERT(weft_now() - t0 >= d - TU_EARLY_EPS);
    atomic_fetch_add(&sleepers_woken, 1);
    return arg;
}

static void *many_sleepers_main(void *arg)
{
    long n = (long)(intptr_t)arg;
    uint64_t rng = tu_seed("ten_thousand_concurrent_sleepers_all_wake");
    weft_task **t = calloc((size_t)n, sizeof *t);
    ck_assert_ptr_nonnull(t);
    double t0 = weft_now();
    for (long i = 0; i < n; i++) {
        /* 0..50 ms; every tenth shares one deadline with the others. */
        uintptr_t us = i % 10 == 0 ? 25000 : tu_rand(&rng) % 50000;
        t[i] = weft_spawn(random_sleeper, (void *)us);
        TU_ASSERT(t[i] != NULL);
    }
    for (long i = 0; i < n; i++) {
        void *r = NULL;
        TU_ASSERT_INT_EQ(weft_join(t[i], &r), 0);
        TU_ASSERT((uintptr_t)r < 50000);
    }
    double took = weft_now() - t0;
    free(t);
    /* The longest sleep is 50 ms; spawning and joining take the rest. */
    ck_assert_msg(took < 5.0, "%ld sleepers took %.3f s", n, took);
    return NULL;
}

START_TEST(ten_thousand_concurrent_sleepers_all_wake)
{
    /* Under TSan each parked task is a fiber, and it allows about 8k. */
    long n = TU_SCALE(10000, 4000, 2000);
    atomic_store(&sleepers_woken, 0);
    tu_run_in(2, many_sleepers_main, (void *)(intptr_t)n);
    ck_assert_int_eq(atomic_load(&sleepers_woken), n);
}
END_TEST

/* ------------------------------------------------------------------------
 * Timers fire on time while every worker is busy */

enum { BUSY_WORKERS = 2 };
static atomic_int busy_stop, busy_started;

static void *busy_yielder(void *arg)
{
    (void)arg;
    atomic_fetch_add(&busy_started, 1);
    long yields = 0;
    while (!atomic_load(&busy_stop)) {
        TU_ASSERT_INT_EQ(weft_yield(), 0);
        yields++;
    }
    return (void *)(intptr_t)yields;
}

static void *busy_main(void *arg)
{
    (void)arg;
    /* One more busy task than workers: every worker always has one. */
    weft_task *t[BUSY_WORKERS + 1];
    for (int i = 0; i < BUSY_WORKERS + 1; i++) {
        t[i] = weft_spawn(busy_yielder, NULL);
        ck_assert_ptr_nonnull(t[i]);
    }
    while (atomic_load(&busy_started) < BUSY_WORKERS + 1)
        tu_yield();
    for (int i = 0; i < 5; i++) {
        double t0 = weft_now();
        ck_assert_int_eq(weft_sleep(0.05), 0);
        tu_check_elapsed(t0, 0.05, "a sleep while every worker is busy");
    }
    atomic_store(&busy_stop, 1);
    for (int i = 0; i < BUSY_WORKERS + 1; i++) {
        void *r = NULL;
        ck_assert_int_eq(weft_join(t[i], &r), 0);
        ck_assert_int_gt((intptr_t)r, 0);
    }
    return NULL;
}

START_TEST(timers_fire_on_time_while_every_worker_is_busy)
{
    atomic_store(&busy_stop, 0);
    atomic_store(&busy_started, 0);
    tu_run_in(BUSY_WORKERS, busy_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * Plain threads */

static void *thread_sleeps(void *arg)
{
    (void)arg;
    double t0 = weft_now();
    ck_assert_int_eq(weft_sleep(0.05), 0);
    tu_check_elapsed(t0, 0.05, "weft_sleep on a plain thread");
    double deadline = weft_now() + 0.03;
    t0 = weft_now();
    ck_assert_int_eq(weft_sleep_until(deadline), 0);
    ck_assert(weft_now() >= deadline);
    tu_check_elapsed(t0, deadline - t0, "weft_sleep_until on a plain thread");
    ck_assert_int_eq(weft_sleep_until(weft_now() - 1.0), 0);
    return (void *)1;
}

START_TEST(plain_thread_sleep_blocks_and_returns_zero)
{
    /* With no runtime at all, and on a second thread while one exists. */
    ck_assert_int_eq((intptr_t)thread_sleeps(NULL), 1);
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 1});
    ck_assert_ptr_nonnull(rt);
    pthread_t th;
    void *r = NULL;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_sleeps, NULL), 0);
    ck_assert_int_eq(pthread_join(th, &r), 0);
    ck_assert_int_eq((intptr_t)r, 1);
    weft_runtime_free(rt);
}
END_TEST

static Suite *time_suite(void)
{
    Suite *s = suite_create("time");

    TCase *tc = tcase_create("now");
    tcase_add_test(tc, now_is_monotonic_and_reads_clock_monotonic);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("sleep");
    tcase_add_test(tc, sleep_sleeps_at_least_the_time_and_not_much_more);
    tcase_add_test(tc, sleep_zero_yields_to_the_other_ready_tasks);
    tcase_add_test(tc, sleep_until_a_past_deadline_returns_at_once);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_add_test(tc, sleep_with_negative_or_nan_time_fails_with_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("scale");
    tcase_add_test(tc, ten_thousand_concurrent_sleepers_all_wake);
    tcase_add_test(tc, timers_fire_on_time_while_every_worker_is_busy);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("plain_thread");
    tcase_add_test(tc, plain_thread_sleep_blocks_and_returns_zero);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(time_suite());
}
