/* spawn: n trivial units of work, all started before the first is joined.
 * Unit i returns i; the joiner sums the results and checks n(n-1)/2.
 * ns_per_op is wall time per unit, start to last join.
 *
 *   weft         weft_spawn() n tasks, then weft_join() each
 *   thread       pthread_create() per unit (64 KiB stacks, like weft's)
 *   threadpool   P threads, a job and a future per unit (pool.c)
 *   process      fork() per unit; the child writes i to a shared pipe
 *   processpool  P forked workers fed ranges of units through pipes
 *
 * thread and process take a smaller n (the driver says so): ten thousand
 * threads or a thousand processes already show the cost per unit.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"

#define THREAD_STACK (64 * 1024)

/* The unit of work. noinline, so that no mode gets it folded away. */
__attribute__((noinline)) static void *unit(void *arg)
{
    __asm__ volatile("" ::: "memory");
    return arg;
}

static uint64_t expected_sum(uint64_t n)
{
    return n % 2 == 0 ? n / 2 * (n - 1) : (n - 1) / 2 * n;
}

/* ---------------------------------------------------------------------------
 * weft */

struct spawn_job {
    uint64_t n;
    uint64_t sum;
    int err;
};

static void *weft_main(void *arg)
{
    struct spawn_job *job = arg;
    weft_task **h = malloc(job->n * sizeof *h);
    if (!h) {
        job->err = -ENOMEM;
        return NULL;
    }
    uint64_t spawned = 0;
    for (; spawned < job->n; spawned++) {
        h[spawned] = weft_spawn(unit, (void *)(uintptr_t)spawned);
        if (!h[spawned]) {
            job->err = -errno;
            break;
        }
    }
    for (uint64_t i = 0; i < spawned; i++) {
        void *r;
        int err = weft_join(h[i], &r);
        if (err < 0)
            job->err = err;
        else
            job->sum += (uintptr_t)r;
    }
    free(h);
    return NULL;
}

/* ---------------------------------------------------------------------------
 * thread */

static int run_threads(struct spawn_job *job)
{
    pthread_t *th = malloc(job->n * sizeof *th);
    if (!th)
        return -ENOMEM;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    uint64_t started = 0;
    for (; started < job->n; started++) {
        int err = pthread_create(&th[started], &attr, unit,
                                 (void *)(uintptr_t)started);
        if (err) {
            job->err = -err;
            break;
        }
    }
    pthread_attr_destroy(&attr);
    for (uint64_t i = 0; i < started; i++) {
        void *r;
        pthread_join(th[i], &r);
        job->sum += (uintptr_t)r;
    }
    free(th);
    return 0;
}

/* ---------------------------------------------------------------------------
 * threadpool */

static void *index_arg(size_t i, const void *ctx)
{
    (void)ctx;
    return (void *)(uintptr_t)i;
}

static int run_threadpool(const struct bench_cell *c, struct spawn_job *job)
{
    return bench_pool_sum(c->workers, job->n, unit, index_arg, NULL, &job->sum);
}

/* ---------------------------------------------------------------------------
 * process: every child writes its 8-byte result to one pipe (writes under
 * PIPE_BUF are atomic). The parent reads all n results before reaping, so
 * a child blocked on a full pipe cannot deadlock it. */

static int run_processes(struct spawn_job *job)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -errno;
    pid_t *pid = malloc(job->n * sizeof *pid);
    if (!pid) {
        close(fds[0]);
        close(fds[1]);
        return -ENOMEM;
    }
    uint64_t started = 0;
    for (; started < job->n; started++) {
        pid[started] = fork();
        if (pid[started] == 0) {
            uint64_t r = (uintptr_t)unit((void *)(uintptr_t)started);
            _exit(bench_write_full(fds[1], &r, sizeof r) < 0 ? 1 : 0);
        }
        if (pid[started] < 0) {
            job->err = -errno;
            break;
        }
    }
    close(fds[1]);
    for (uint64_t i = 0; i < started; i++) {
        uint64_t r;
        int err = bench_read_full(fds[0], &r, sizeof r);
        if (err < 0) {
            job->err = err;
            break;
        }
        job->sum += r;
    }
    for (uint64_t i = 0; i < started; i++) {
        int status;
        if (waitpid(pid[i], &status, 0) < 0 || status != 0)
            job->err = -ECHILD;
    }
    close(fds[0]);
    free(pid);
    return 0;
}

/* ---------------------------------------------------------------------------
 * processpool: a request is a range [lo, hi) of units, the answer the sum
 * of their results. Every range is sent before the first answer is read. */

static uint64_t range_sum(const void *req, size_t len)
{
    uint64_t r[2];
    if (len != sizeof r)
        _exit(4);
    memcpy(r, req, sizeof r);
    uint64_t sum = 0;
    for (uint64_t i = r[0]; i < r[1]; i++)
        sum += (uintptr_t)unit((void *)(uintptr_t)i);
    return sum;
}

static int run_processpool(const struct bench_cell *c, struct spawn_job *job)
{
    struct bench_procpool *pp = bench_procpool_new(c->workers, range_sum);
    if (!pp)
        return -EAGAIN;
    /* At most 64 ranges per worker keeps every pipe far from full. */
    uint64_t chunk = job->n / ((uint64_t)c->workers * 64) + 1;
    if (chunk < 1024)
        chunk = 1024;
    uint64_t sent[WEFT_MAX_WORKERS] = {0};
    unsigned w = 0;
    int err = 0;
    for (uint64_t lo = 0; lo < job->n && !err; lo += chunk) {
        uint64_t r[2] = {lo, lo + chunk < job->n ? lo + chunk : job->n};
        err = bench_procpool_send(pp, w, r, sizeof r);
        sent[w]++;
        w = (w + 1) % c->workers;
    }
    for (w = 0; w < c->workers && !err; w++) {
        for (uint64_t i = 0; i < sent[w] && !err; i++) {
            uint64_t answer;
            err = bench_procpool_recv(pp, w, &answer);
            job->sum += answer;
        }
    }
    int err2 = bench_procpool_free(pp);
    job->err = err ? err : err2;
    return 0;
}

/* ---------------------------------------------------------------------------
 * The workload */

static int spawn_run(const struct bench_cell *c, struct bench_result *res)
{
    struct spawn_job job = {.n = c->n};
    int64_t ns = 0;
    int err;
    if (c->workers > WEFT_MAX_WORKERS || c->workers == 0)
        return -EINVAL;
    if (strcmp(c->mode, "weft") == 0) {
        err = bench_weft_run(c->workers, weft_main, &job, NULL, &ns, res);
    } else {
        int64_t t0 = bench_now_ns();
        if (strcmp(c->mode, "thread") == 0)
            err = run_threads(&job);
        else if (strcmp(c->mode, "threadpool") == 0)
            err = run_threadpool(c, &job);
        else if (strcmp(c->mode, "process") == 0)
            err = run_processes(&job);
        else if (strcmp(c->mode, "processpool") == 0)
            err = run_processpool(c, &job);
        else
            return -ENOTSUP;
        ns = bench_now_ns() - t0;
    }
    if (err < 0)
        return err;
    if (job.err < 0)
        bench_perror("spawn", job.err);
    res->ns_per_op = c->n ? (double)ns / (double)c->n : 0;
    res->ok = job.err == 0 && job.sum == expected_sum(c->n);
    bench_extra(res, "sum=%llu", (unsigned long long)job.sum);
    return 0;
}

static uint64_t spawn_default_n(const struct bench_cell *c, bool full)
{
    /* Every thread and unreaped process holds a pid, and pid_max is often
     * 32768: the full sizes stay well below it. */
    if (strcmp(c->mode, "thread") == 0)
        return full ? 20000 : 10000;
    if (strcmp(c->mode, "process") == 0)
        return full ? 5000 : 1000;
    if (strcmp(c->mode, "asyncio") == 0 || strcmp(c->mode, "uvloop") == 0)
        return full ? 2000000 : 200000;
    return full ? 10000000 : 1000000;
}

static void spawn_plan(struct bench_plan *plan)
{
    const char *group = "n trivial tasks, all spawned before the first join";
    bool full = bench_plan_full(plan);
    unsigned w[BENCH_SCALE_MAX], nw = bench_plan_scaling_counts(plan, w);
    unsigned ncpu = w[nw - 1];
    struct bench_cell c = {0};
    static const char *const modes[] = {"thread", "threadpool", "process",
                                        "processpool"};
    static const char *const notes[] = {
        "smaller n: a pthread per unit, 64 KiB stacks",
        "one mutex-protected FIFO",
        "smaller n: a fork per unit, result through a pipe",
        "units sent in ranges, 64 per process: batching, not a per-task "
        "cost"};

    c.mode = "weft";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i], spawn_default_n(&c, full), 0,
                       0, NULL);
    for (unsigned i = 0; i < 4; i++) {
        c.mode = modes[i];
        bool single =
            strcmp(modes[i], "thread") == 0 || strcmp(modes[i], "process") == 0;
        bench_plan_add(plan, group, modes[i], single ? 1 : ncpu,
                       spawn_default_n(&c, full), 0, 0, notes[i]);
    }
    c.mode = "go";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "go", w[i], spawn_default_n(&c, full), 0, 0,
                       "goroutine + WaitGroup");
    c.mode = "asyncio";
    bench_plan_add(plan, group, "asyncio", 1, spawn_default_n(&c, full), 0, 0,
                   "create_task + gather");
    bench_plan_add(plan, group, "uvloop", 1, spawn_default_n(&c, full), 0, 0,
                   "create_task + gather");
    bench_plan_observability(plan, 200000, 0);
}

const struct bench_workload bench_spawn = {
    .name = "spawn",
    .op = "ns per task (spawn + join)",
    .run = spawn_run,
    .default_n = spawn_default_n,
    .plan = spawn_plan,
};
