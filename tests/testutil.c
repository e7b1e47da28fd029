/* Helpers shared by the Check suites; see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

weft_runtime *tu_new_runtime(unsigned workers)
{
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = workers});
    ck_assert_ptr_nonnull(rt);
    return rt;
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

void tu_check_took(double got, double want, const char *what)
{
    ck_assert_msg(got >= want - TU_EARLY_EPS && got <= want + TU_SLACK,
                  "%s: after %.6f s, expected %.6f s (late by at most %.3f)",
                  what, got, want, TU_SLACK);
}

void tu_check_elapsed(double t0, double want, const char *what)
{
    tu_check_took(weft_now() - t0, want, what);
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

void tu_join_task(weft_task *t, int want)
{
    ck_assert_int_eq(weft_join(t, NULL), want);
}

void tu_join_thread(pthread_t th)
{
    ck_assert_int_eq(pthread_join(th, NULL), 0);
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

void tu_pause(void)
{
    if (weft_current())
        tu_yield();
    else
        sched_yield();
}

void tu_wait_flag(atomic_int *flag)
{
    double t0 = weft_now();
    while (!atomic_load(flag)) {
        if (weft_now() - t0 > 10.0)
            ck_abort_msg("a flag was never set");
        tu_pause();
    }
}

bool tu_thread_asleep(int tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The state follows the command name, which is in parentheses and may
     * itself hold spaces and parentheses: look after the last ')'. */
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
}

/* ------------------------------------------------------------------------
 * Actors */

static void *actor_body(void *p)
{
    struct tu_actor *a = p;
    if (a->kind == TU_THREAD)
        atomic_store(&a->tid, (int)syscall(SYS_gettid));
    a->fn(a->arg);
    atomic_store(&a->done, 1);
    return NULL;
}

void tu_actor_start(struct tu_actor *a, weft_runtime *rt, enum tu_kind kind,
                    weft_fn fn, void *arg)
{
    a->rt = rt;
    a->kind = kind;
    a->fn = fn;
    a->arg = arg;
    a->task = NULL;
    atomic_store(&a->tid, 0);
    atomic_store(&a->done, 0);
    if (kind == TU_THREAD) {
        TU_ASSERT_INT_EQ(pthread_create(&a->th, NULL, actor_body, a), 0);
        return;
    }
    a->task = weft_spawn_ex(rt, actor_body, a, NULL);
    TU_ASSERT(a->task != NULL);
}

int tu_actor_join(struct tu_actor *a)
{
    if (a->kind == TU_THREAD) {
        TU_ASSERT_INT_EQ(pthread_join(a->th, NULL), 0);
        return 0;
    }
    return weft_join(a->task, NULL);
}

void tu_actor_wait_blocked(struct tu_actor *a)
{
    double t0 = weft_now();
    for (;;) {
        if (atomic_load(&a->done))
            ck_abort_msg("the waiter returned instead of waiting");
        if (a->kind == TU_TASK) {
            /* A snapshot of the caller's runtime from a task, of a's from
             * a plain thread. */
            weft_runtime *rt = weft_current() ? NULL : a->rt;
            if (tu_task_state(rt, weft_task_id(a->task)) == WEFT_TASK_WAITING)
                return;
        } else {
            int tid = atomic_load(&a->tid);
            if (tid && tu_thread_asleep(tid))
                return;
        }
        if (weft_now() - t0 > 10.0)
            ck_abort_msg("the waiter never blocked");
        tu_pause();
    }
}

void tu_actor_wait_done(struct tu_actor *a)
{
    double t0 = weft_now();
    while (!atomic_load(&a->done)) {
        if (weft_now() - t0 > 10.0)
            ck_abort_msg("the waiter never returned");
        tu_pause();
    }
}

/* ------------------------------------------------------------------------
 * The racer */

void tu_spin_random(uint64_t *rng, unsigned max_ns)
{
    if (max_ns == 0)
        return;
    int64_t until = tu_now_ns() + (int64_t)(tu_rand(rng) % max_ns);
    while (tu_now_ns() < until)
        ;
}

void tu_spin_for(int64_t ns)
{
    int64_t until = tu_now_ns() + ns;
    while (tu_now_ns() < until)
        ;
}

static void *racer_main(void *p)
{
    struct tu_racer *r = p;
    int seen = 0;
    for (;;) {
        int g;
        while ((g = atomic_load(&r->go)) == seen) {
            if (atomic_load(&r->stop))
                return NULL;
            sched_yield();
        }
        seen = g;
        atomic_store(&r->ready, g);
        tu_spin_random(&r->rng, r->spin_ns);
        r->action(r->ctx);
        atomic_store(&r->done, g);
    }
}

void tu_racer_start(struct tu_racer *r, void (*action)(void *), void *ctx,
                    uint64_t seed, unsigned spin_ns)
{
    r->action = action;
    r->spin_ns = spin_ns;
    r->ctx = ctx;
    r->rng = seed | 1;
    atomic_store(&r->go, 0);
    atomic_store(&r->ready, 0);
    atomic_store(&r->done, 0);
    atomic_store(&r->stop, 0);
    ck_assert_int_eq(pthread_create(&r->th, NULL, racer_main, r), 0);
}

void tu_racer_go(struct tu_racer *r, int g)
{
    atomic_store(&r->go, g);
    /* Spin before yielding: the racer usually sees the round within
     * microseconds, and both sides should start their spins close
     * together. */
    for (int i = 0; atomic_load(&r->ready) != g; i++)
        if (i > 1000)
            sched_yield();
}

void tu_racer_wait(struct tu_racer *r, int g)
{
    while (atomic_load(&r->done) != g)
        sched_yield();
}

void tu_racer_stop(struct tu_racer *r)
{
    atomic_store(&r->stop, 1);
    ck_assert_int_eq(pthread_join(r->th, NULL), 0);
}

void tu_cancel_victim(void *ctx)
{
    struct tu_cancel_race *cr = ctx;
    tu_spin_for(cr->delay_ns);
    cr->cancel_rc = weft_cancel(cr->victim);
}

void tu_steer(int64_t *bias, bool cancel_won)
{
    *bias += cancel_won ? 100 : -100;
    if (*bias > 100000)
        *bias = 100000;
    if (*bias < -100000)
        *bias = -100000;
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int tu_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int fds_marked;

void tu_fds_mark(void)
{
    fds_marked = tu_count_fds();
}

void tu_fds_check(void)
{
    ck_assert_int_eq(tu_count_fds(), fds_marked);
}
