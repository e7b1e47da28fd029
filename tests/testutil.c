/* Helpers shared by the Check suites; see testutil.h. */
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

uint64_t tu_seed(const char *test)
{
    uint64_t seed = 0;
    const char *env = getenv("WEFT_TEST_SEED");
    if (env && *env)
        seed = strtoull(env, NULL, 0);
    if (seed == 0) {
        /* splitmix64 of the clock and the pid: distinct seeds that look it */
        uint64_t z = (uint64_t)tu_now_ns() ^ ((uint64_t)getpid() << 32);
        z += 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        seed = z ^ (z >> 31);
    }
    if (seed == 0)
        seed = 1;
    fprintf(stderr,
            "%s: seed %" PRIu64 " (WEFT_TEST_SEED=%" PRIu64
            " repeats it), %s build\n",
            test, seed, seed, TU_BUILD);
    return seed;
}

uint64_t tu_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tu_now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t tu_cpu_ns(void)
{
    return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

void *tu_fib_task(void *arg)
{
    intptr_t n = (intptr_t)arg;
    if (n < 2)
        return (void *)n;
    weft_task *a = weft_spawn(tu_fib_task, (void *)(n - 1));
    TU_ASSERT(a != NULL);
    weft_task *b = weft_spawn(tu_fib_task, (void *)(n - 2));
    TU_ASSERT(b != NULL);
    void *ra = NULL;
    void *rb = NULL;
    TU_ASSERT_INT_EQ(weft_join(a, &ra), 0);
    TU_ASSERT_INT_EQ(weft_join(b, &rb), 0);
    return (void *)((intptr_t)ra + (intptr_t)rb);
}

long tu_fib(int n)
{
    long a = 0;
    long b = 1;
    for (int i = 0; i < n; i++) {
        long c = a + b;
        a = b;
        b = c;
    }
    return a;
}

void *tu_run_in(unsigned workers, weft_fn fn, void *arg)
{
    weft_config cfg = {.workers = workers};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_msg(rt != NULL, "weft_runtime_new(%u workers): errno %d", workers,
                  errno);
    ck_assert_uint_eq(weft_runtime_workers(rt), workers);
    void *result = NULL;
    int rc = weft_runtime_run(rt, fn, arg, &result);
    ck_assert_int_eq(rc, 0);
    weft_runtime_free(rt);
    return result;
}

int tu_current_worker(void)
{
    weft_task *self = weft_current();
    ck_assert_ptr_nonnull(self);
    uint64_t id = weft_task_id(self);
    size_t cap = 64;
    for (;;) {
        weft_task_info *buf = calloc(cap, sizeof *buf);
        ck_assert_ptr_nonnull(buf);
        size_t n = weft_all_tasks(buf, cap);
        if (n > cap) {
            free(buf);
            cap = n + 64;
            continue;
        }
        int worker = -2;
        for (size_t i = 0; i < n; i++)
            if (buf[i].id == id)
                worker = buf[i].worker;
        free(buf);
        ck_assert_msg(worker >= 0,
                      "own task %" PRIu64 " not in weft_all_tasks"
                      " or without a worker (%d)",
                      id, worker);
        return worker;
    }
}

void tu_check_elapsed(double t0, double want, const char *what)
{
    double got = weft_now() - t0;
    ck_assert_msg(got >= want - TU_EARLY_EPS && got <= want + TU_SLACK,
                  "%s: after %.6f s, expected %.6f s (late by at most %.3f)",
                  what, got, want, TU_SLACK);
}

int tu_task_state(weft_runtime *rt, uint64_t id)
{
    size_t cap = 256;
    for (;;) {
        weft_task_info *buf = calloc(cap, sizeof *buf);
        TU_ASSERT(buf != NULL);
        size_t n =
            rt ? weft_runtime_tasks(rt, buf, cap) : weft_all_tasks(buf, cap);
        if (n > cap) {
            free(buf);
            cap = n + 256;
            continue;
        }
        int state = -1;
        for (size_t i = 0; i < n; i++)
            if (buf[i].id == id)
                state = (int)buf[i].state;
        free(buf);
        return state;
    }
}

void tu_wait_until_waiting(weft_runtime *rt, const weft_task *t)
{
    uint64_t id = weft_task_id(t);
    double t0 = weft_now();
    while (tu_task_state(rt, id) != WEFT_TASK_WAITING) {
        ck_assert_msg(weft_now() - t0 < 10.0,
                      "task %llu never showed as WAITING (state %d)",
                      (unsigned long long)id, tu_task_state(rt, id));
        if (rt)
            sched_yield();
        else
            tu_yield();
    }
}

void tu_join_expect(weft_task *t, intptr_t want)
{
    void *r = NULL;
    int rc = weft_join(t, &r);
    TU_ASSERT_INT_EQ(rc, 0);
    TU_ASSERT_INT_EQ((intptr_t)r, want);
}

void tu_wait_idle(weft_runtime *rt)
{
    weft_stats s;
    for (;;) {
        ck_assert_int_eq(weft_stats_get(rt, &s), 0);
        if (s.tasks_alive == 0)
            return;
        usleep(1000);
    }
}

void tu_yield(void)
{
    TU_ASSERT_INT_EQ(weft_yield(), 0);
}

void tu_yield_until(const int *flag)
{
    while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE))
        tu_yield();
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
