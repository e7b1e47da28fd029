/* Offloading (weft.h, "Offloading blocking work"): weft_to_thread returns
 * fn's result; from a task, fn runs on a pool thread that is no worker,
 * with asynchronous signals blocked; from a plain thread (a pool thread
 * included), fn runs inline; -EINVAL for fn NULL, -ENOMEM without memory
 * for the job. Blocking calls from many tasks all complete while the
 * workers stay responsive, and no more than min(32, CPUs + 4) run at once.
 * A caller cancelled, or in a timeout scope that expires, while fn runs
 * returns at once and fn still runs to the end (also when the caller was
 * interrupted before the call, and when its runtime is freed meanwhile).
 * A stress races cancels against completions: every fn runs exactly once,
 * and a call that returns 0 has fn's result. Leaks are LeakSanitizer's to
 * find, in the ASan build.
 *
 * Each test makes its own runtime: Check forks every test, so each also
 * starts with an empty pool.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "testutil.h"

#ifdef WEFT_ASAN
#include <sanitizer/lsan_interface.h>
#endif

static int current_tid(void)
{
    return (int)syscall(SYS_gettid);
}

/* The pool's bound, as weft.h states it. */
static int pool_bound(void)
{
    cpu_set_t set;
    long cpus = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        cpus = CPU_COUNT(&set);
    if (cpus <= 0)
        cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus <= 0)
        cpus = 1;
    return cpus + 4 < 32 ? (int)cpus + 4 : 32;
}

/* Wait, from a task or a plain thread, until *v >= want. Fails the test
 * after 10 s. */
static void wait_at_least(atomic_int *v, int want, const char *what)
{
    double t0 = weft_now();
    while (atomic_load(v) < want) {
        if (weft_now() - t0 > 10.0)
            ck_abort_msg("%s: %d, never reached %d", what, atomic_load(v),
                         want);
        if (weft_current())
            TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
        else
            usleep(1000);
    }
}

/* In the ASan build, fail unless LeakSanitizer finds no leak now. (Check
 * forks each test, and LeakSanitizer's report at the child's exit comes
 * after Check has recorded the result.) A job that its pool thread is
 * about to free is still on that thread's stack, so it does not count. */
static void check_no_leak(void)
{
#ifdef WEFT_ASAN
    ck_assert_msg(__lsan_do_recoverable_leak_check() == 0,
                  "LeakSanitizer found leaks (see above)");
#endif
}

/* ------------------------------------------------------------------------
 * Jobs */

static void *add_one(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

/* Where a job ran. */
struct where {
    int tid;
    bool in_runtime, in_task;
    char name[16];
    bool async_blocked, faults_open; /* the thread's signal mask */
};

static void *where_am_i(void *arg)
{
    struct where *w = arg;
    w->tid = current_tid();
    w->in_runtime = weft_runtime_current() != NULL;
    w->in_task = weft_current() != NULL;
    pthread_getname_np(pthread_self(), w->name, sizeof w->name);
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    w->async_blocked =
        sigismember(&mask, SIGINT) && sigismember(&mask, SIGTERM) &&
        sigismember(&mask, SIGUSR1) && sigismember(&mask, SIGALRM) &&
        sigismember(&mask, SIGPIPE);
    w->faults_open = !sigismember(&mask, SIGSEGV) &&
                     !sigismember(&mask, SIGBUS) && !sigismember(&mask, SIGFPE);
    return w;
}

/* A job that blocks until the test releases it. */
struct slow {
    atomic_int started, release, finished;
};

static void *slow_job(void *arg)
{
    struct slow *s = arg;
    atomic_store(&s->started, 1);
    wait_at_least(&s->release, 1, "the slow job's release");
    atomic_store(&s->finished, 1);
    return (void *)7;
}

/* A caller of weft_to_thread(slow_job), as a task. */
struct slow_call {
    struct slow *slow;
    double scope; /* > 0: call inside a timeout scope of that many seconds */
    int rc, exit_rc;
    void *result;
    double took;
};

static void *call_slow(void *arg)
{
    struct slow_call *c = arg;
    weft_timeout scope;
    double t0 = weft_now(); /* no later than the scope's start */
    if (c->scope > 0)
        TU_ASSERT_INT_EQ(weft_timeout_enter(&scope, c->scope), 0);
    c->result = (void *)-1;
    c->rc = weft_to_thread(slow_job, c->slow, &c->result);
    c->took = weft_now() - t0;
    if (c->scope > 0)
        c->exit_rc = weft_timeout_exit(&scope);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Basics */

static void *result_main(void *arg)
{
    (void)arg;
    void *r = NULL;
    ck_assert_int_eq(weft_to_thread(add_one, (void *)41, &r), 0);
    ck_assert_int_eq((intptr_t)r, 42);
    ck_assert_int_eq(weft_to_thread(add_one, (void *)1, NULL), 0);
    /* One after another, on whichever pool thread is idle. */
    for (intptr_t i = 0; i < 200; i++) {
        TU_ASSERT_INT_EQ(weft_to_thread(add_one, (void *)i, &r), 0);
        TU_ASSERT_INT_EQ((intptr_t)r, i + 1);
    }
    return (void *)1;
}

START_TEST(to_thread_returns_the_result_of_fn)
{
    ck_assert_int_eq((intptr_t)tu_run_in(2, result_main, NULL), 1);
}
END_TEST

/* The kernel ids of rt's workers (threads named weft-w<N>). */
static int worker_tids(int *tids, int cap)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] == '.')
            continue;
        int tid = atoi(e->d_name);
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof comm, f))
            comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, "weft-w", 6) == 0)
            tids[n++] = tid;
    }
    closedir(d);
    return n;
}

struct off_worker {
    struct where job;
    int caller_tid;
    void *result;
    int rc;
};

static void *off_worker_main(void *arg)
{
    struct off_worker *o = arg;
    o->caller_tid = current_tid();
    o->rc = weft_to_thread(where_am_i, &o->job, &o->result);
    return NULL;
}

START_TEST(to_thread_runs_fn_on_a_pool_thread_that_is_no_worker)
{
    weft_runtime *rt = tu_new_runtime(2);
    struct off_worker o = {0};
    weft_task *t = weft_spawn_ex(rt, off_worker_main, &o, NULL);
    ck_assert_ptr_nonnull(t);
    tu_join_task(t, 0);
    ck_assert_int_eq(o.rc, 0);
    ck_assert_ptr_eq(o.result, &o.job);
    ck_assert(!o.job.in_runtime);
    ck_assert(!o.job.in_task);
    ck_assert_str_eq(o.job.name, "weft-blocking");
    ck_assert(o.job.async_blocked);
    ck_assert(o.job.faults_open);
    ck_assert_int_ne(o.job.tid, o.caller_tid);
    ck_assert_int_ne(o.job.tid, current_tid());
    int tids[64];
    int n = worker_tids(tids, 64);
    ck_assert_int_eq(n, 2);
    for (int i = 0; i < n; i++)
        ck_assert_int_ne(o.job.tid, tids[i]);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(to_thread_from_a_plain_thread_runs_fn_inline)
{
    struct where w = {0};
    void *r = NULL;
    ck_assert_int_eq(weft_to_thread(where_am_i, &w, &r), 0);
    ck_assert_ptr_eq(r, &w);
    ck_assert_int_eq(w.tid, current_tid());
    ck_assert_str_ne(w.name, "weft-blocking");
    ck_assert_int_eq(weft_to_thread(add_one, (void *)1, NULL), 0);
}
END_TEST

/* fn on a pool thread calls weft_to_thread: a plain thread, so inline. */
static void *nested_job(void *arg)
{
    struct where *outer = arg;
    where_am_i(outer);
    struct where inner = {0};
    void *r = NULL;
    TU_ASSERT_INT_EQ(weft_to_thread(where_am_i, &inner, &r), 0);
    TU_ASSERT(r == &inner);
    TU_ASSERT_INT_EQ(inner.tid, outer->tid);
    return (void *)1;
}

static void *nested_main(void *arg)
{
    struct where w = {0};
    void *r = NULL;
    (void)arg;
    ck_assert_int_eq(weft_to_thread(nested_job, &w, &r), 0);
    ck_assert_int_eq((intptr_t)r, 1);
    ck_assert_str_eq(w.name, "weft-blocking");
    return (void *)1;
}

START_TEST(to_thread_called_by_fn_on_a_pool_thread_runs_inline)
{
    ck_assert_int_eq((intptr_t)tu_run_in(1, nested_main, NULL), 1);
}
END_TEST

static void *einval_main(void *arg)
{
    (void)arg;
    void *r = (void *)5;
    ck_assert_int_eq(weft_to_thread(NULL, NULL, &r), -EINVAL);
    ck_assert_int_eq(weft_to_thread(NULL, NULL, NULL), -EINVAL);
    ck_assert_ptr_eq(r, (void *)5);
    return (void *)1;
}

START_TEST(to_thread_with_fn_null_returns_einval)
{
    ck_assert_int_eq((intptr_t)einval_main(NULL), 1); /* a plain thread */
    ck_assert_int_eq((intptr_t)tu_run_in(1, einval_main, NULL), 1);
}
END_TEST

static void *count_run(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    return arg;
}

static void *enomem_main(void *arg)
{
    atomic_int *ran = arg;
    void *r = (void *)5;
    /* One worker and nothing else running: the first allocation is the
     * job's. */
    weft__alloc_fail_after(1);
    int rc = weft_to_thread(count_run, ran, &r);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_ptr_eq(r, (void *)5);
    /* Memory again: it works. */
    ck_assert_int_eq(weft_to_thread(count_run, ran, &r), 0);
    ck_assert_ptr_eq(r, ran);
    return (void *)1;
}

START_TEST(to_thread_returns_enomem_when_the_job_cannot_be_allocated)
{
    atomic_int ran = 0;
    ck_assert_int_eq((intptr_t)tu_run_in(1, enomem_main, &ran), 1);
    ck_assert_int_eq(atomic_load(&ran), 1); /* the failed call ran nothing */
}
END_TEST

/* ------------------------------------------------------------------------
 * Concurrency */

enum { BURST = 100 };

struct burst {
    int pipe[2];             /* _i 1: jobs block reading a byte from it */
    atomic_int done;         /* callers whose call returned */
    atomic_int ticks;        /* the ticker's sleeps */
    int late;                /* those that took over 10 ms + TU_SLACK */
    double ticker_worst;     /* the ticker's longest 10 ms sleep */
    intptr_t got[BURST + 1]; /* each caller's result */
};

static struct burst *the_burst;

static void *nap_job(void *arg)
{
    usleep(50 * 1000);
    return arg;
}

static void *pipe_job(void *arg)
{
    char c;
    TU_ASSERT_INT_EQ(read(the_burst->pipe[0], &c, 1), 1);
    return arg;
}

static void *burst_caller(void *arg)
{
    intptr_t i = (intptr_t)arg;
    void *r = NULL;
    weft_fn job = the_burst->pipe[0] >= 0 ? pipe_job : nap_job;
    TU_ASSERT_INT_EQ(weft_to_thread(job, (void *)i, &r), 0);
    the_burst->got[i] = (intptr_t)r;
    atomic_fetch_add(&the_burst->done, 1);
    return NULL;
}

/* Sleeps 10 ms at a time while the callers wait, measuring each sleep. */
static void *ticker(void *arg)
{
    struct burst *b = arg;
    while (atomic_load(&b->done) < BURST) {
        double t0 = weft_now();
        TU_ASSERT_INT_EQ(weft_sleep(0.01), 0);
        double took = weft_now() - t0;
        if (took > b->ticker_worst)
            b->ticker_worst = took;
        if (took > 0.01 + TU_SLACK)
            b->late++;
        atomic_fetch_add(&b->ticks, 1);
    }
    return NULL;
}

/* Feeds the pipe a byte every 2 ms, BURST in all. */
static void *feeder(void *arg)
{
    struct burst *b = arg;
    for (int i = 0; i < BURST; i++) {
        usleep(2000);
        TU_ASSERT_INT_EQ(write(b->pipe[1], "x", 1), 1);
    }
    return NULL;
}

START_TEST(
    to_thread_blocking_calls_from_100_tasks_complete_while_workers_respond)
{
    /* _i 0: each job sleeps 50 ms; 1: each reads a byte from a pipe that
     * a plain thread feeds slowly. Two workers, 100 callers, a pool of at
     * most min(32, CPUs + 4): the callers park, and a ticker task's 10 ms
     * sleeps keep their time meanwhile. */
    static struct burst b;
    memset(&b, 0, sizeof b);
    b.pipe[0] = b.pipe[1] = -1;
    the_burst = &b;
    if (_i)
        ck_assert_int_eq(pipe(b.pipe), 0);
    weft_runtime *rt = tu_new_runtime(2);
    double t0 = weft_now();
    weft_task *tick = weft_spawn_ex(rt, ticker, &b, NULL);
    ck_assert_ptr_nonnull(tick);
    weft_task *callers[BURST];
    for (intptr_t i = 0; i < BURST; i++) {
        callers[i] = weft_spawn_ex(rt, burst_caller, (void *)(i + 1), NULL);
        ck_assert_ptr_nonnull(callers[i]);
    }
    pthread_t feed;
    if (_i)
        ck_assert_int_eq(pthread_create(&feed, NULL, feeder, &b), 0);
    for (int i = 0; i < BURST; i++)
        tu_join_task(callers[i], 0);
    double took = weft_now() - t0;
    tu_join_task(tick, 0);
    if (_i)
        tu_join_thread(feed);
    weft_runtime_free(rt);
    for (intptr_t i = 1; i <= BURST; i++)
        ck_assert_int_eq(b.got[i], i);
    /* In parallel: 100 naps of 50 ms one after another take 5 s. */
    if (!_i)
        ck_assert_msg(took < BURST * 0.05 / 2, "100 naps took %.3f s", took);
    ck_assert_msg(atomic_load(&b.ticks) >= 5, "the ticker ran %d times",
                  atomic_load(&b.ticks));
    /* A worker held up by the pool would be late for a whole 50 ms job,
     * again and again; a loaded machine may make a sleep late now and
     * then. */
    ck_assert_msg(b.late * 10 <= atomic_load(&b.ticks),
                  "%d of %d 10 ms sleeps were late by over %.3f s while the "
                  "pool was busy (the worst took %.3f s)",
                  b.late, atomic_load(&b.ticks), TU_SLACK, b.ticker_worst);
    if (_i) {
        close(b.pipe[0]);
        close(b.pipe[1]);
    }
    check_no_leak();
}
END_TEST

struct gate {
    atomic_int running, max, entered, open;
};

static void *gated_job(void *arg)
{
    struct gate *g = arg;
    int now = atomic_fetch_add(&g->running, 1) + 1;
    int seen = atomic_load(&g->max);
    while (now > seen && !atomic_compare_exchange_weak(&g->max, &seen, now))
        ;
    atomic_fetch_add(&g->entered, 1);
    wait_at_least(&g->open, 1, "the gate");
    atomic_fetch_sub(&g->running, 1);
    return NULL;
}

static void *gated_caller(void *arg)
{
    TU_ASSERT_INT_EQ(weft_to_thread(gated_job, arg, NULL), 0);
    return NULL;
}

START_TEST(to_thread_runs_at_most_the_pool_bound_at_once)
{
    /* Three times the bound of callers, their jobs held at a gate: the
     * pool fills up to its bound and no further. */
    int bound = pool_bound();
    int n = 3 * bound;
    struct gate g = {0};
    weft_runtime *rt = tu_new_runtime(2);
    weft_task **t = calloc((size_t)n, sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < n; i++) {
        t[i] = weft_spawn_ex(rt, gated_caller, &g, NULL);
        ck_assert_ptr_nonnull(t[i]);
    }
    wait_at_least(&g.running, bound, "jobs running at once");
    /* Give an extra thread, if the pool made one, time to show. */
    usleep(100 * 1000);
    ck_assert_int_eq(atomic_load(&g.running), bound);
    ck_assert_int_eq(atomic_load(&g.max), bound);
    atomic_store(&g.open, 1);
    for (int i = 0; i < n; i++)
        tu_join_task(t[i], 0);
    ck_assert_int_eq(atomic_load(&g.entered), n);
    ck_assert_int_eq(atomic_load(&g.max), bound);
    free(t);
    weft_runtime_free(rt);
    check_no_leak();
}
END_TEST

/* ------------------------------------------------------------------------
 * Cancellation and timeout scopes */

START_TEST(to_thread_cancelled_while_fn_runs_returns_ecanceled_at_once)
{
    /* _i 0: weft_cancel; 1: weft_runtime_free cancels the caller, and
     * fn ends after the runtime is gone. */
    static struct slow s;
    memset(&s, 0, sizeof s);
    struct slow_call c = {.slow = &s};
    weft_runtime *rt = tu_new_runtime(2);
    weft_task *t = weft_spawn_ex(rt, call_slow, &c, NULL);
    ck_assert_ptr_nonnull(t);
    wait_at_least(&s.started, 1, "the slow job's start");
    tu_wait_until_waiting(rt, t);
    double t0 = weft_now();
    if (_i) {
        weft_runtime_free(rt);
        ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    } else {
        ck_assert_int_eq(weft_cancel(t), 0);
        ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    }
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "the cancel took %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(c.rc, -ECANCELED);
    ck_assert_ptr_eq(c.result, (void *)-1); /* fn's result is dropped */
    ck_assert_int_eq(atomic_load(&s.finished), 0);
    /* fn runs to the end all the same. */
    atomic_store(&s.release, 1);
    wait_at_least(&s.finished, 1, "the slow job's end");
    if (!_i)
        weft_runtime_free(rt);
    check_no_leak();
}
END_TEST

START_TEST(to_thread_in_a_timeout_scope_that_expires_returns_etimedout)
{
    static struct slow s;
    memset(&s, 0, sizeof s);
    struct slow_call c = {.slow = &s, .scope = 0.05};
    weft_runtime *rt = tu_new_runtime(2);
    weft_task *t = weft_spawn_ex(rt, call_slow, &c, NULL);
    ck_assert_ptr_nonnull(t);
    tu_join_task(t, 0); /* a scope is not a cancel */
    ck_assert_int_eq(c.rc, -ETIMEDOUT);
    ck_assert_int_eq(c.exit_rc, -ETIMEDOUT);
    tu_check_took(c.took, 0.05, "to_thread in a 50 ms scope");
    ck_assert_ptr_eq(c.result, (void *)-1);
    ck_assert_int_eq(atomic_load(&s.started), 1);
    ck_assert_int_eq(atomic_load(&s.finished), 0);
    atomic_store(&s.release, 1);
    wait_at_least(&s.finished, 1, "the slow job's end");
    weft_runtime_free(rt);
    check_no_leak();
}
END_TEST

static void *interrupted_before_main(void *arg)
{
    atomic_int *ran = arg;
    void *r = (void *)5;
    /* Cancelled before the call: fn runs all the same, unwatched. */
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    double t0 = weft_now();
    ck_assert_int_eq(weft_to_thread(count_run, ran, &r), -ECANCELED);
    ck_assert_ptr_eq(r, (void *)5);
    ck_assert_int_eq(weft_uncancel(), 0);
    wait_at_least(ran, 1, "the job of a cancelled caller");
    /* In an expired scope, the same. */
    weft_timeout scope;
    ck_assert_int_eq(weft_timeout_enter(&scope, 0), 0);
    ck_assert_int_eq(weft_to_thread(count_run, ran, &r), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "the calls took %.3f s",
                  weft_now() - t0);
    ck_assert_ptr_eq(r, (void *)5);
    wait_at_least(ran, 2, "the job of a caller in an expired scope");
    return (void *)1;
}

START_TEST(to_thread_called_while_interrupted_returns_at_once_and_fn_runs)
{
    atomic_int ran = 0;
    ck_assert_int_eq((intptr_t)tu_run_in(2, interrupted_before_main, &ran), 1);
    ck_assert_int_eq(atomic_load(&ran), 2);
    check_no_leak();
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress */

enum { STRESS_TASKS = 8, STRESS_CALLS = 4 };

struct slot {
    atomic_int called, runs;
    unsigned spin_ns; /* how long the job spins */
};

struct stress {
    struct slot slots[STRESS_TASKS][STRESS_CALLS];
    atomic_int calls, jobs_done, returned_zero, returned_cancelled;
};

static struct stress *the_stress;

static void *stress_job(void *arg)
{
    struct slot *s = arg;
    tu_spin_for(s->spin_ns);
    TU_ASSERT_INT_EQ(atomic_fetch_add(&s->runs, 1), 0);
    atomic_fetch_add(&the_stress->jobs_done, 1);
    return s;
}

static void *stress_caller(void *arg)
{
    struct slot *row = arg;
    for (int k = 0; k < STRESS_CALLS; k++) {
        void *r = NULL;
        atomic_store(&row[k].called, 1);
        atomic_fetch_add(&the_stress->calls, 1);
        int rc = weft_to_thread(stress_job, &row[k], &r);
        if (rc == 0) {
            /* fn returned before the call did, with its result. */
            TU_ASSERT(r == &row[k]);
            TU_ASSERT_INT_EQ(atomic_load(&row[k].runs), 1);
            atomic_fetch_add(&the_stress->returned_zero, 1);
        } else {
            TU_ASSERT_INT_EQ(rc, -ECANCELED);
            TU_ASSERT(r == NULL);
            atomic_fetch_add(&the_stress->returned_cancelled, 1);
        }
    }
    return NULL;
}

START_TEST(to_thread_cancels_racing_completions_run_every_fn_exactly_once)
{
    /* Rounds of 8 tasks on 4 workers, 4 short offloaded calls each; the
     * test's thread cancels a random half of them at random moments, so
     * that cancels land before, during and after the jobs. Every call
     * returns 0 with its result or -ECANCELED, and every job whose call
     * was made runs exactly once. */
    int rounds = TU_SCALE(400, 150, 80);
    uint64_t rng =
        tu_seed("to_thread_cancels_racing_completions_run_every_fn_exactly_"
                "once");
    static struct stress st;
    the_stress = &st;
    weft_runtime *rt = tu_new_runtime(4);
    long total_calls = 0, total_zero = 0, total_cancelled = 0;
    for (int g = 0; g < rounds; g++) {
        memset(&st, 0, sizeof st);
        for (int i = 0; i < STRESS_TASKS; i++)
            for (int k = 0; k < STRESS_CALLS; k++)
                st.slots[i][k].spin_ns = (unsigned)(tu_rand(&rng) % 20000);
        weft_task *t[STRESS_TASKS];
        for (int i = 0; i < STRESS_TASKS; i++) {
            t[i] = weft_spawn_ex(rt, stress_caller, st.slots[i], NULL);
            TU_ASSERT(t[i] != NULL);
        }
        for (int i = 0; i < STRESS_TASKS; i++) {
            tu_spin_random(&rng, 40000);
            if (tu_rand(&rng) % 2) {
                int rc = weft_cancel(t[i]);
                TU_ASSERT(rc == 0 || rc == -ESRCH);
            }
        }
        for (int i = 0; i < STRESS_TASKS; i++) {
            int rc = weft_join(t[i], NULL);
            TU_ASSERT(rc == 0 || rc == -ECANCELED);
        }
        /* Calls interrupted while their job ran: wait for the jobs. */
        wait_at_least(&st.jobs_done, atomic_load(&st.calls), "jobs done");
        TU_ASSERT_INT_EQ(atomic_load(&st.returned_zero) +
                             atomic_load(&st.returned_cancelled),
                         atomic_load(&st.calls));
        for (int i = 0; i < STRESS_TASKS; i++)
            for (int k = 0; k < STRESS_CALLS; k++)
                TU_ASSERT_INT_EQ(atomic_load(&st.slots[i][k].runs),
                                 atomic_load(&st.slots[i][k].called));
        total_calls += atomic_load(&st.calls);
        total_zero += atomic_load(&st.returned_zero);
        total_cancelled += atomic_load(&st.returned_cancelled);
    }
    weft_runtime_free(rt);
    fprintf(stderr,
            "to_thread cancel race: %d rounds, %ld calls, %ld returned 0, "
            "%ld -ECANCELED\n",
            rounds, total_calls, total_zero, total_cancelled);
    ck_assert_int_gt(total_zero, 0);
    ck_assert_int_gt(total_cancelled, 0);
    check_no_leak();
}
END_TEST

static Suite *offload_suite(void)
{
    Suite *s = suite_create("offload");

    TCase *tc = tcase_create("basics");
    tcase_add_test(tc, to_thread_returns_the_result_of_fn);
    tcase_add_test(tc, to_thread_runs_fn_on_a_pool_thread_that_is_no_worker);
    tcase_add_test(tc, to_thread_from_a_plain_thread_runs_fn_inline);
    tcase_add_test(tc, to_thread_called_by_fn_on_a_pool_thread_runs_inline);
    tcase_add_test(tc, to_thread_with_fn_null_returns_einval);
    tcase_add_test(tc,
                   to_thread_returns_enomem_when_the_job_cannot_be_allocated);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_loop_test(
        tc,
        to_thread_blocking_calls_from_100_tasks_complete_while_workers_respond,
        0, 2);
    tcase_add_test(tc, to_thread_runs_at_most_the_pool_bound_at_once);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("interrupt");
    tcase_add_loop_test(
        tc, to_thread_cancelled_while_fn_runs_returns_ecanceled_at_once, 0, 2);
    tcase_add_test(tc,
                   to_thread_in_a_timeout_scope_that_expires_returns_etimedout);
    tcase_add_test(
        tc, to_thread_called_while_interrupted_returns_at_once_and_fn_runs);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(
        tc, to_thread_cancels_racing_completions_run_every_fn_exactly_once);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(offload_suite());
}
