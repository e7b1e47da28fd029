/* timer: how late a 1 ms sleep wakes. One task sleeps 1 ms, n times in a
 * row, reading the monotonic clock around each sleep; its lateness is the
 * time slept minus 1 ms. ns_per_op is the 99th percentile of the lateness;
 * p50_us, p99_us and max_us give the figures in microseconds. The check
 * fails if a sleep returned an error or ended before its millisecond.
 *
 * --parties K makes the runtime busy: K more tasks each run a CPU-bound
 * step (spinning on the clock for STEP_US microseconds) and then yield,
 * over and over until the measurement ends. The plan gives K = 2 per
 * worker, so every worker always has a ready task besides the sleeper: a
 * woken sleeper waits for the step in progress and queues behind the
 * other ready tasks, and with as many workers as CPUs the timer has to
 * fire while every core is busy. busy_steps= counts the steps taken; the
 * check fails if a busy task took none.
 *
 *   weft     weft_sleep(0.001) in a task of a P-worker runtime; the busy
 *            tasks call weft_yield() between steps
 *   thread   clock_nanosleep() of 1 ms in a plain thread: the kernel's
 *            timer slack and wake-up latency, a floor for every runtime
 *            (idle only)
 *
 * Go (time.Sleep, runtime.Gosched) and Python (asyncio.sleep(0.001),
 * asyncio.sleep(0)) are in bench/go/timer.go and bench/py/timer.py.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"

#define SLEEP_NS INT64_C(1000000)
#define STEP_US  20

/* One cell's measurement. */
struct timer_run {
    uint64_t n;
    int64_t *late_ns;   /* n samples, written by the sleeping task only */
    int err;            /* the sleeper's first error */
    unsigned busy;      /* busy tasks */
    int stop;           /* set once the samples are taken; atomic */
    uint64_t steps;     /* steps the busy tasks took; atomic add */
    uint64_t idle_busy; /* busy tasks that took no step; atomic add */
};

/* Take the n samples with sleep_fn, which sleeps SLEEP_NS. */
static void take_samples(struct timer_run *t, int (*sleep_fn)(void))
{
    for (uint64_t i = 0; i < t->n; i++) {
        int64_t t0 = bench_now_ns();
        int err = sleep_fn();
        t->late_ns[i] = bench_now_ns() - t0 - SLEEP_NS;
        if (err < 0) {
            t->err = err;
            return;
        }
    }
}

static int64_t sorted_at(const int64_t *v, uint64_t n, double q)
{
    /* Nearest rank: the smallest value with at least q of them at or
     * below it. */
    uint64_t rank = (uint64_t)(q * (double)n + 0.999999);
    return v[rank == 0 ? 0 : rank - 1];
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------------------
 * weft */

static int weft_sleep_1ms(void)
{
    return weft_sleep((double)SLEEP_NS / 1e9);
}

/* A busy task: CPU-bound steps of STEP_US, a yield after each. */
static void *busy_task(void *arg)
{
    struct timer_run *t = arg;
    uint64_t steps = 0;
    /* Relaxed: stop only ends the loop; the totals are read after the
     * join, which orders them. */
    while (!__atomic_load_n(&t->stop, __ATOMIC_RELAXED)) {
        int64_t until = bench_now_ns() + STEP_US * 1000;
        while (bench_now_ns() < until)
            continue;
        steps++;
        if (weft_yield() < 0)
            break;
    }
    __atomic_add_fetch(&t->steps, steps, __ATOMIC_RELAXED);
    if (steps == 0)
        __atomic_add_fetch(&t->idle_busy, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void *weft_main(void *arg)
{
    struct timer_run *t = arg;
    weft_task **h = calloc(t->busy ? t->busy : 1, sizeof *h);
    if (!h) {
        t->err = -ENOMEM;
        return NULL;
    }
    unsigned started = 0;
    for (; started < t->busy; started++) {
        h[started] = weft_spawn(busy_task, t);
        if (!h[started]) {
            t->err = -errno;
            break;
        }
    }
    /* Let the busy tasks get going on every worker first. */
    for (int i = 0; i < 10 && t->busy && t->err == 0; i++) {
        int err = weft_sleep_1ms();
        if (err < 0)
            t->err = err;
    }
    if (t->err == 0)
        take_samples(t, weft_sleep_1ms);
    __atomic_store_n(&t->stop, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < started; i++) {
        int err = weft_join(h[i], NULL);
        if (err < 0 && t->err == 0)
            t->err = err;
    }
    free(h);
    return NULL;
}

/* ---------------------------------------------------------------------------
 * thread */

static int os_sleep_1ms(void)
{
    struct timespec ts = {0, SLEEP_NS};
    int err;
    while ((err = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts)) == EINTR)
        continue;
    return -err;
}

/* ---------------------------------------------------------------------------
 * The workload */

static void report(const struct timer_run *t, struct bench_result *res)
{
    int64_t *v = t->late_ns;
    qsort(v, t->n, sizeof *v, compare_i64);
    int64_t p50 = sorted_at(v, t->n, 0.50), p99 = sorted_at(v, t->n, 0.99);
    res->ns_per_op = (double)p99;
    res->ok = t->err == 0 && v[0] >= 0 && t->idle_busy == 0;
    bench_extra(res, "p50_us=%.1f p99_us=%.1f max_us=%.1f min_us=%.1f",
                (double)p50 / 1e3, (double)p99 / 1e3, (double)v[t->n - 1] / 1e3,
                (double)v[0] / 1e3);
    if (t->busy)
        bench_extra(res, "busy_steps=%" PRIu64 " step_us=%d", t->steps,
                    STEP_US);
}

static int timer_run(const struct bench_cell *c, struct bench_result *res)
{
    if (c->workers > WEFT_MAX_WORKERS || c->workers == 0 || c->n == 0)
        return -EINVAL;
    struct timer_run t = {.n = c->n, .busy = c->parties};
    bool weft = strcmp(c->mode, "weft") == 0;
    if (!weft && (strcmp(c->mode, "thread") != 0 || t.busy))
        return -ENOTSUP;
    t.late_ns = calloc(t.n, sizeof *t.late_ns);
    if (!t.late_ns)
        return -ENOMEM;
    int err = 0;
    if (weft)
        err = bench_weft_run(c->workers, weft_main, &t, NULL, NULL, res);
    else
        take_samples(&t, os_sleep_1ms);
    if (err == 0) {
        if (t.err < 0)
            bench_perror("timer", t.err);
        report(&t, res);
    }
    free(t.late_ns);
    return err;
}

static uint64_t timer_default_n(const struct bench_cell *c, bool full)
{
    (void)c;
    return full ? 5000 : 1000;
}

static void plan_group(struct bench_plan *plan, bool busy)
{
    char group[96];
    bool full = bench_plan_full(plan);
    unsigned w[3], nw = bench_plan_worker_counts(plan, w);
    uint64_t n = timer_default_n(NULL, full);
    if (busy)
        snprintf(group, sizeof group,
                 "1 ms sleep, busy: 2 tasks per worker run %d us steps "
                 "and yield",
                 STEP_US);
    else
        snprintf(group, sizeof group, "1 ms sleep, idle runtime");
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i], n, 0, busy ? 2 * w[i] : 0,
                       NULL);
    if (!busy)
        bench_plan_add(plan, group, "thread", 1, n, 0, 0,
                       "clock_nanosleep in a plain thread");
    unsigned wmax = w[nw - 1];
    bench_plan_add(plan, group, "go", wmax, n, 0, busy ? 2 * wmax : 0,
                   busy ? "time.Sleep; runtime.Gosched between steps"
                        : "time.Sleep");
    bench_plan_add(plan, group, "asyncio", 1, n, 0, busy ? 2 : 0,
                   busy ? "asyncio.sleep; sleep(0) between steps"
                        : "asyncio.sleep");
    if (busy)
        bench_plan_note(plan, group,
                        "thread: skipped, it has no runtime to keep busy");
    bench_plan_note(plan, group,
                    "uvloop: left out to keep the run short (weft-bench "
                    "timer --mode uvloop runs it); libuv counts whole "
                    "milliseconds, so its 1 ms sleeps may wake up to 1 ms "
                    "early");
}

static void timer_plan(struct bench_plan *plan)
{
    plan_group(plan, false);
    plan_group(plan, true);
}

const struct bench_workload bench_timer = {
    .name = "timer",
    .op = "ns late at p99, a 1 ms sleep",
    .columns = "p50_us p99_us max_us",
    .run = timer_run,
    .default_n = timer_default_n,
    .plan = timer_plan,
};
