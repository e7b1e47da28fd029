/* Runtimes (weft.h, "Runtime" and "Observability"): weft_run, new/run/free,
 * the current runtime, nested runs, shutdown, idle CPU, and statistics.
 */
#include <check.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static void *add_one(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

static void *return_runtime(void *arg)
{
    (void)arg;
    return weft_runtime_current();
}

/* ------------------------------------------------------------------------
 * weft_run */

START_TEST(run_returns_the_result_of_main)
{
    void *r = NULL;
    ck_assert_int_eq(weft_run(add_one, (void *)41, &r), 0);
    ck_assert_int_eq((intptr_t)r, 42);
    /* A NULL result pointer is allowed. */
    ck_assert_int_eq(weft_run(add_one, NULL, NULL), 0);
    /* Twice in a row from the same thread: each run makes its own
     * runtime. */
    ck_assert_int_eq(weft_run(add_one, (void *)1, &r), 0);
    ck_assert_int_eq((intptr_t)r, 2);
}
END_TEST

START_TEST(run_with_null_main_fails_with_einval)
{
    void *r = (void *)0x55;
    ck_assert_int_eq(weft_run(NULL, NULL, &r), -EINVAL);
    ck_assert_ptr_eq(r, (void *)0x55);
}
END_TEST

static void *run_inside(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_run(add_one, NULL, NULL);
}

START_TEST(run_from_inside_a_task_fails_with_eperm)
{
    void *r = NULL;
    ck_assert_int_eq(weft_run(run_inside, NULL, &r), 0);
    ck_assert_int_eq((intptr_t)r, -EPERM);
}
END_TEST

static atomic_int left_running_started, left_running_done;

/* Yields until cancelled (the shutdown does it), then ends. */
static void *left_running(void *arg)
{
    (void)arg;
    atomic_fetch_add(&left_running_started, 1);
    int rc;
    while ((rc = weft_yield()) == 0)
        ;
    TU_ASSERT_INT_EQ(rc, -ECANCELED);
    atomic_fetch_add(&left_running_done, 1);
    return NULL;
}

static void *leave_tasks_main(void *arg)
{
    for (intptr_t i = 0; i < (intptr_t)arg; i++) {
        weft_task *t = weft_spawn(left_running, NULL);
        ck_assert_ptr_nonnull(t);
        weft_detach(t);
    }
    return NULL;
}

START_TEST(run_cancels_and_reaps_tasks_main_left_running)
{
    atomic_store(&left_running_started, 0);
    atomic_store(&left_running_done, 0);
    ck_assert_int_eq(weft_run(leave_tasks_main, (void *)50, NULL), 0);
    /* Each one either never ran or saw the cancellation and ended. */
    ck_assert_int_le(atomic_load(&left_running_started), 50);
    ck_assert_int_eq(atomic_load(&left_running_done),
                     atomic_load(&left_running_started));
}
END_TEST

/* ------------------------------------------------------------------------
 * weft_runtime_new / weft_runtime_free */

START_TEST(runtime_new_with_too_many_workers_fails_with_einval)
{
    weft_config cfg = {.workers = WEFT_MAX_WORKERS + 1};
    errno = 0;
    ck_assert_ptr_null(weft_runtime_new(&cfg));
    ck_assert_int_eq(errno, EINVAL);
    cfg.workers = (unsigned)-1;
    errno = 0;
    ck_assert_ptr_null(weft_runtime_new(&cfg));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(runtime_new_defaults_to_one_worker_per_cpu)
{
    /* The CPUs this thread may run on, as weft.h documents. */
    cpu_set_t set;
    ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    long cpus = CPU_COUNT(&set);
    weft_runtime *rt = weft_runtime_new(NULL);
    ck_assert_ptr_nonnull(rt);
    ck_assert_uint_eq(weft_runtime_workers(rt), (unsigned)cpus);
    weft_runtime_free(rt);
    weft_config zero;
    memset(&zero, 0, sizeof zero);
    rt = weft_runtime_new(&zero);
    ck_assert_ptr_nonnull(rt);
    ck_assert_uint_eq(weft_runtime_workers(rt), (unsigned)cpus);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(runtime_new_starts_the_workers_asked_for)
{
    static const unsigned n[] = {1, 3, 16};
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) {
        weft_config cfg = {.workers = n[i]};
        weft_runtime *rt = weft_runtime_new(&cfg);
        ck_assert_ptr_nonnull(rt);
        ck_assert_uint_eq(weft_runtime_workers(rt), n[i]);
        weft_stats s;
        ck_assert_int_eq(weft_stats_get(rt, &s), 0);
        ck_assert_uint_eq(s.workers, n[i]);
        weft_runtime_free(rt);
    }
    ck_assert_uint_eq(weft_runtime_workers(NULL), 0);
    weft_runtime_free(NULL); /* a no-op */
}
END_TEST

static atomic_int free_started, free_done;

static void *slow_detached(void *arg)
{
    atomic_fetch_add(&free_started, 1);
    intptr_t depth = (intptr_t)arg;
    /* Some of them leave children of their own behind. */
    if (depth > 0) {
        weft_task *c = weft_spawn(slow_detached, (void *)(depth - 1));
        ck_assert_ptr_nonnull(c);
        weft_detach(c);
    }
    for (int i = 0; i < 200 && weft_yield() == 0; i++)
        ;
    atomic_fetch_add(&free_done, 1);
    return NULL;
}

START_TEST(runtime_free_cancels_and_reaps_running_detached_tasks)
{
    enum { N = 100, DEPTH = 2 };
    atomic_store(&free_started, 0);
    atomic_store(&free_done, 0);
    weft_config cfg = {.workers = 2};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    for (int i = 0; i < N; i++) {
        weft_task *t = weft_spawn_ex(rt, slow_detached, (void *)DEPTH, NULL);
        ck_assert_ptr_nonnull(t);
        weft_detach(t);
    }
    weft_runtime_free(rt);
    /* Every task that started has ended, and none is left. */
    ck_assert_int_le(atomic_load(&free_started), N * (DEPTH + 1));
    ck_assert_int_eq(atomic_load(&free_done), atomic_load(&free_started));
}
END_TEST

static void *free_own_runtime(void *arg)
{
    weft_runtime_free(arg); /* aborts: it would wait for itself */
    return NULL;
}

START_TEST(runtime_free_from_its_own_task_aborts)
{
    weft_config cfg = {.workers = 1};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    void *r = NULL;
    int rc = weft_runtime_run(rt, free_own_runtime, rt, &r);
    ck_abort_msg("weft_runtime_free from a task of rt returned (run: %d)", rc);
}
END_TEST

/* ------------------------------------------------------------------------
 * weft_runtime_run and the current runtime */

START_TEST(runtime_run_with_null_fails_with_einval)
{
    ck_assert_int_eq(weft_runtime_run(NULL, add_one, NULL, NULL), -EINVAL);
    weft_runtime *rt = weft_runtime_new(NULL);
    ck_assert_ptr_nonnull(rt);
    ck_assert_int_eq(weft_runtime_run(rt, NULL, NULL, NULL), -EINVAL);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(runtime_run_returns_the_result_each_time)
{
    weft_config cfg = {.workers = 2};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    for (intptr_t i = 0; i < 100; i++) {
        void *r = NULL;
        ck_assert_int_eq(weft_runtime_run(rt, add_one, (void *)i, &r), 0);
        ck_assert_int_eq((intptr_t)r, i + 1);
    }
    weft_runtime_free(rt);
}
END_TEST

START_TEST(runtime_current_is_null_outside_and_rt_inside)
{
    ck_assert_ptr_null(weft_runtime_current());
    weft_runtime *rt = weft_runtime_new(NULL);
    ck_assert_ptr_nonnull(rt);
    ck_assert_ptr_null(weft_runtime_current());
    void *r = NULL;
    ck_assert_int_eq(weft_runtime_run(rt, return_runtime, NULL, &r), 0);
    ck_assert_ptr_eq(r, rt);
    /* A task spawned from this plain thread sees rt too. */
    weft_task *t = weft_spawn_ex(rt, return_runtime, NULL, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_ptr_eq(r, rt);
    ck_assert_ptr_null(weft_runtime_current());
    weft_runtime_free(rt);
}
END_TEST

/* A nested run of the caller's own runtime, `depth` runs deep. With one
 * worker the caller must suspend, not block its worker, or the inner task
 * never runs. */
struct nest {
    weft_runtime *rt;
    int depth;
};

static void *nested_same(void *arg)
{
    const struct nest *n = arg;
    ck_assert_ptr_eq(weft_runtime_current(), n->rt);
    if (n->depth == 0) {
        for (int i = 0; i < 10; i++)
            tu_yield();
        return (void *)0x77;
    }
    struct nest inner = {n->rt, n->depth - 1};
    void *r = NULL;
    ck_assert_int_eq(weft_runtime_run(n->rt, nested_same, &inner, &r), 0);
    ck_assert_ptr_eq(r, (void *)0x77);
    ck_assert_ptr_eq(weft_runtime_current(), n->rt);
    return r;
}

START_TEST(nested_run_of_the_same_runtime_from_a_task_works)
{
    static const unsigned workers[] = {1, 2};
    weft_config cfg = {.workers = workers[_i]};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    for (int depth = 1; depth <= 3; depth++) {
        struct nest n = {rt, depth};
        void *r = NULL;
        ck_assert_int_eq(weft_runtime_run(rt, nested_same, &n, &r), 0);
        ck_assert_ptr_eq(r, (void *)0x77);
    }
    weft_runtime_free(rt);
}
END_TEST

struct two {
    weft_runtime *outer, *inner;
    int flag; /* set by a task of `outer` while the nested run waits */
};

static void *in_inner(void *arg)
{
    struct two *t = arg;
    ck_assert_ptr_eq(weft_runtime_current(), t->inner);
    /* Wait for a task of the outer runtime: it can only run if the nested
     * run suspended its caller instead of blocking the outer worker. */
    tu_yield_until(&t->flag);
    return (void *)0x88;
}

static void *set_flag(void *arg)
{
    struct two *t = arg;
    ck_assert_ptr_eq(weft_runtime_current(), t->outer);
    __atomic_store_n(&t->flag, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *in_outer(void *arg)
{
    struct two *t = arg;
    ck_assert_ptr_eq(weft_runtime_current(), t->outer);
    weft_task *sib = weft_spawn(set_flag, t);
    ck_assert_ptr_nonnull(sib);
    void *r = NULL;
    ck_assert_int_eq(weft_runtime_run(t->inner, in_inner, t, &r), 0);
    ck_assert_ptr_eq(r, (void *)0x88);
    ck_assert_ptr_eq(weft_runtime_current(), t->outer);
    ck_assert_int_eq(weft_join(sib, NULL), 0);
    return r;
}

START_TEST(nested_run_of_another_runtime_suspends_the_caller)
{
    weft_config one = {.workers = 1};
    struct two t = {weft_runtime_new(&one), weft_runtime_new(&one), 0};
    ck_assert_ptr_nonnull(t.outer);
    ck_assert_ptr_nonnull(t.inner);
    void *r = NULL;
    ck_assert_int_eq(weft_runtime_run(t.outer, in_outer, &t, &r), 0);
    ck_assert_ptr_eq(r, (void *)0x88);
    weft_runtime_free(t.inner);
    weft_runtime_free(t.outer);
}
END_TEST

/* ------------------------------------------------------------------------
 * idle CPU */

static void *spawn_some(void *arg)
{
    enum { N = 1000 };
    (void)arg;
    weft_task *t[N];
    for (int i = 0; i < N; i++) {
        t[i] = weft_spawn(add_one, (void *)(intptr_t)i);
        ck_assert_ptr_nonnull(t[i]);
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(weft_join(t[i], NULL), 0);
    return NULL;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Process CPU over `ns` of wall time, in percent of one core. */
static double idle_cpu_percent(int64_t ns)
{
    int64_t c0 = tu_cpu_ns(), t0 = tu_now_ns();
    sleep_ns(ns);
    int64_t c1 = tu_cpu_ns(), t1 = tu_now_ns();
    return 100.0 * (double)(c1 - c0) / (double)(t1 - t0);
}

START_TEST(idle_runtime_uses_almost_no_cpu)
{
    /* A tolerance, not a benchmark: 5% of one core over half a second,
     * with more workers than CPUs so that any busy-waiting shows. */
    weft_config cfg = {.workers = 4};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    double fresh = idle_cpu_percent(500000000);

    /* After work: the workers spin a while, then must park. */
    ck_assert_int_eq(weft_runtime_run(rt, spawn_some, NULL, NULL), 0);
    sleep_ns(100000000);
    double after = idle_cpu_percent(500000000);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    fprintf(stderr,
            "idle runtime, 4 workers: %.2f%% of a core fresh, %.2f%% after "
            "work (parks %llu)\n",
            fresh, after, (unsigned long long)s.total.parks);
    ck_assert_msg(fresh < 5.0, "fresh idle runtime uses %.2f%% CPU", fresh);
    ck_assert_msg(after < 5.0, "idle runtime uses %.2f%% CPU after work",
                  after);
    ck_assert_uint_gt(s.total.parks, 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * statistics */

static void *stats_main(void *arg)
{
    intptr_t n = (intptr_t)arg;
    weft_task **t = calloc((size_t)n, sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (intptr_t i = 0; i < n; i++) {
        t[i] = weft_spawn(add_one, (void *)i);
        ck_assert_ptr_nonnull(t[i]);
    }
    /* Inside a task, NULL means the calling task's runtime. */
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(NULL, &s), 0);
    ck_assert_uint_ge(s.total.spawned, (uint64_t)n);
    ck_assert_uint_ge(s.tasks_alive, 1); /* this task, at least */
    for (intptr_t i = 0; i < n; i++)
        ck_assert_int_eq(weft_join(t[i], NULL), 0);
    free(t);
    return NULL;
}

START_TEST(stats_count_spawns_completions_and_runs)
{
    enum { N = 1000, WORKERS = 2 };
    weft_config cfg = {.workers = WORKERS};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    ck_assert_uint_eq(s.workers, WORKERS);
    ck_assert_uint_eq(s.total.spawned, 0);
    ck_assert_uint_eq(s.tasks_alive, 0);

    ck_assert_int_eq(weft_runtime_run(rt, stats_main, (void *)N, NULL), 0);
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    ck_assert_uint_ge(s.total.spawned, N);
    ck_assert_uint_ge(s.total.completed, N);
    ck_assert_uint_ge(s.total.runs, N);
    /* A join may run an unstarted child inline, without a switch; the
     * run's own task still switched in and out. */
    ck_assert_uint_ge(s.total.switches, 2);

    /* Every task has finished (the run returned after joining them all);
     * the count of live ones falls to 0, at once or very soon after. */
    int64_t deadline = tu_now_ns() + 2000000000;
    while (s.tasks_alive != 0 && tu_now_ns() < deadline) {
        sched_yield();
        ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    }
    ck_assert_uint_eq(s.tasks_alive, 0);

    /* The totals are the sums of the workers' counters (these do not move
     * once the runtime is quiet). */
    weft_counters sum = {0};
    for (unsigned w = 0; w < WORKERS; w++) {
        weft_counters c;
        ck_assert_int_eq(weft_stats_worker(rt, w, &c), 0);
        sum.spawned += c.spawned;
        sum.runs += c.runs;
        sum.completed += c.completed;
    }
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    /* Spawns from this plain thread (the run's own task) may be counted
     * apart from any worker. */
    ck_assert_uint_ge(sum.spawned, N);
    ck_assert_uint_le(sum.spawned, s.total.spawned);
    ck_assert_uint_eq(sum.runs, s.total.runs);
    ck_assert_uint_eq(sum.completed, s.total.completed);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(stats_worker_past_the_last_fails_with_einval)
{
    weft_config cfg = {.workers = 2};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    weft_counters c;
    ck_assert_int_eq(weft_stats_worker(rt, 0, &c), 0);
    ck_assert_int_eq(weft_stats_worker(rt, 1, &c), 0);
    ck_assert_int_eq(weft_stats_worker(rt, 2, &c), -EINVAL);
    ck_assert_int_eq(weft_stats_worker(rt, (unsigned)-1, &c), -EINVAL);
    ck_assert_int_eq(weft_stats_worker(rt, 0, NULL), -EINVAL);
    /* No runtime: NULL outside a task. */
    ck_assert_int_eq(weft_stats_worker(NULL, 0, &c), -EINVAL);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(NULL, &s), -EINVAL);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * weft_strerror */

START_TEST(strerror_names_every_code_weft_returns)
{
    static const int codes[] = {EINVAL,    EPERM,     ENOMEM, EAGAIN,
                                ECANCELED, ETIMEDOUT, EPIPE,  ECONNRESET};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *m = weft_strerror(-codes[i]);
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_gt(strlen(m), 0);
        /* Not the text of another code. */
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(m, weft_strerror(-codes[j]));
    }
    /* Never NULL, even for codes nobody returns. */
    ck_assert_ptr_nonnull(weft_strerror(0));
    ck_assert_ptr_nonnull(weft_strerror(-99999));
    ck_assert_ptr_nonnull(weft_strerror(99999));
    ck_assert_ptr_nonnull(weft_strerror(EINVAL));
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");

    TCase *tc = tcase_create("run");
    tcase_add_test(tc, run_returns_the_result_of_main);
    tcase_add_test(tc, run_with_null_main_fails_with_einval);
    tcase_add_test(tc, run_from_inside_a_task_fails_with_eperm);
    tcase_add_test(tc, run_cancels_and_reaps_tasks_main_left_running);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("new_free");
    tcase_add_test(tc, runtime_new_with_too_many_workers_fails_with_einval);
    tcase_add_test(tc, runtime_new_defaults_to_one_worker_per_cpu);
    tcase_add_test(tc, runtime_new_starts_the_workers_asked_for);
    tcase_add_test(tc, runtime_free_cancels_and_reaps_running_detached_tasks);
    tcase_add_test_raise_signal(tc, runtime_free_from_its_own_task_aborts,
                                SIGABRT);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("runtime_run");
    tcase_add_test(tc, runtime_run_with_null_fails_with_einval);
    tcase_add_test(tc, runtime_run_returns_the_result_each_time);
    tcase_add_test(tc, runtime_current_is_null_outside_and_rt_inside);
    tcase_add_loop_test(tc, nested_run_of_the_same_runtime_from_a_task_works, 0,
                        2);
    tcase_add_test(tc, nested_run_of_another_runtime_suspends_the_caller);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("idle");
    tcase_add_test(tc, idle_runtime_uses_almost_no_cpu);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("stats");
    tcase_add_test(tc, stats_count_spawns_completions_and_runs);
    tcase_add_test(tc, stats_worker_past_the_last_fails_with_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, strerror_names_every_code_weft_returns);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(runtime_suite());
}
