/* fib: fork-join. fib(n) splits into fib(n-1) and fib(n-2), both started
 * as units of their own and joined, down to n < 2 or, with a cutoff C, down
 * to n <= C, which is computed by plain recursion. The value is checked.
 *
 * ns_per_op is wall time over the calls of that task tree (tasks=: for
 * fib(30) with no cutoff 2692537, for fib(40) cut at 20 35421), whatever
 * a mode actually makes, so that rows with the same n compare wall times.
 * With the same cutoff, rows with a smaller n still compare: about half of
 * the calls are leaves of the same size at any n.
 *
 *   weft         a task per call
 *   thread       a thread per call (64 KiB stacks): a smaller n
 *   process      a fork per call, results through pipes: a smaller n
 *   threadpool   needs a cutoff: the calls at the cutoff are the jobs
 *                (jobs=) of a pool of P threads
 *   processpool  likewise, in 8 batches per process through pipes
 *
 * A plain pool cannot run fork-join without a cutoff: a job that waits for
 * its children holds a pool thread, and once every thread waits, nothing
 * runs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"

#define THREAD_STACK (64 * 1024)
#define FIB_MAX      92 /* fib(92) is the largest that fits in 63 bits */

/* The cell's cutoff; read-only while a cell runs. */
static unsigned cutoff;
/* First error seen by any unit; atomic. */
static int fib_err;

static bool splits(unsigned n)
{
    return n >= 2 && n > cutoff;
}

__attribute__((noinline)) static uint64_t fib_serial(unsigned n)
{
    return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2);
}

static uint64_t fib_value(unsigned n)
{
    uint64_t a = 0, b = 1;
    for (unsigned i = 0; i < n; i++) {
        uint64_t t = a + b;
        a = b;
        b = t;
    }
    return a;
}

/* Units made for fib(n): calls that split, and the calls they make. */
static uint64_t count_units(unsigned n)
{
    return splits(n) ? 1 + count_units(n - 1) + count_units(n - 2) : 1;
}

static void set_err(int err)
{
    int none = 0;
    __atomic_compare_exchange_n(&fib_err, &none, err, false, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------------------
 * weft */

static void *weft_fib(void *arg)
{
    unsigned n = (unsigned)(uintptr_t)arg;
    if (!splits(n))
        return (void *)(uintptr_t)fib_serial(n);
    weft_task *a = weft_spawn(weft_fib, (void *)(uintptr_t)(n - 1));
    weft_task *b = weft_spawn(weft_fib, (void *)(uintptr_t)(n - 2));
    void *ra = NULL, *rb = NULL;
    if (!a || !b)
        set_err(-ENOMEM);
    if (a && weft_join(a, &ra) < 0)
        set_err(-EIO);
    if (b && weft_join(b, &rb) < 0)
        set_err(-EIO);
    return (void *)((uintptr_t)ra + (uintptr_t)rb);
}

static int run_weft(const struct bench_cell *c, uint64_t *value, int64_t *ns,
                    struct bench_result *res)
{
    void *r = NULL;
    int err = bench_weft_run(c->workers, weft_fib, (void *)(uintptr_t)c->n, &r,
                             ns, res);
    if (err < 0)
        return err;
    *value = (uintptr_t)r;
    return 0;
}

/* ---------------------------------------------------------------------------
 * thread */

static void *thread_fib(void *arg)
{
    unsigned n = (unsigned)(uintptr_t)arg;
    if (!splits(n))
        return (void *)(uintptr_t)fib_serial(n);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    pthread_t a, b;
    void *ra = NULL, *rb = NULL;
    int ea = pthread_create(&a, &attr, thread_fib, (void *)(uintptr_t)(n - 1));
    int eb = pthread_create(&b, &attr, thread_fib, (void *)(uintptr_t)(n - 2));
    pthread_attr_destroy(&attr);
    if (ea || eb)
        set_err(-(ea ? ea : eb));
    if (!ea)
        pthread_join(a, &ra);
    if (!eb)
        pthread_join(b, &rb);
    return (void *)((uintptr_t)ra + (uintptr_t)rb);
}

/* ---------------------------------------------------------------------------
 * process: each call that splits forks two children, which write their
 * values to a pipe it reads. A child that fails exits non-zero. */

static uint64_t fork_fib(unsigned n);

static pid_t fork_child(int fd, unsigned n)
{
    pid_t pid = fork();
    if (pid == 0) {
        fib_err = 0;
        uint64_t v = fork_fib(n);
        if (fib_err || bench_write_full(fd, &v, sizeof v) < 0)
            _exit(1);
        _exit(0);
    }
    if (pid < 0)
        set_err(-errno);
    return pid;
}

static uint64_t fork_fib(unsigned n)
{
    if (!splits(n))
        return fib_serial(n);
    int fds[2];
    if (pipe(fds) < 0) {
        set_err(-errno);
        return 0;
    }
    pid_t pid[2] = {fork_child(fds[1], n - 1), fork_child(fds[1], n - 2)};
    close(fds[1]);
    uint64_t sum = 0;
    for (int i = 0; i < 2; i++) {
        uint64_t v;
        if (pid[i] < 0)
            continue;
        if (bench_read_full(fds[0], &v, sizeof v) < 0)
            set_err(-EPIPE);
        else
            sum += v;
    }
    for (int i = 0; i < 2; i++) {
        int status;
        if (pid[i] > 0 && (waitpid(pid[i], &status, 0) < 0 || status != 0))
            set_err(-ECHILD);
    }
    close(fds[0]);
    return sum;
}

/* ---------------------------------------------------------------------------
 * Pools: the calls at the cutoff, in the order a serial walk meets them. */

struct frontier {
    unsigned char *k;
    size_t len;
};

static void frontier_walk(struct frontier *f, unsigned n)
{
    if (splits(n)) {
        frontier_walk(f, n - 1);
        frontier_walk(f, n - 2);
    } else {
        f->k[f->len++] = (unsigned char)n;
    }
}

static void *job_fib(void *arg)
{
    return (void *)(uintptr_t)fib_serial((unsigned)(uintptr_t)arg);
}

static void *frontier_arg(size_t i, const void *ctx)
{
    const struct frontier *f = ctx;
    return (void *)(uintptr_t)f->k[i];
}

static int run_threadpool(const struct bench_cell *c, struct frontier *f,
                          uint64_t *value)
{
    return bench_pool_sum(c->workers, f->len, job_fib, frontier_arg, f, value);
}

static uint64_t batch_fib(const void *req, size_t len)
{
    const unsigned char *k = req;
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += fib_serial(k[i]);
    return sum;
}

/* Eight batches per process, round robin; all sent before any is read. */
static int run_processpool(const struct bench_cell *c, struct frontier *f,
                           uint64_t *value)
{
    struct bench_procpool *pp = bench_procpool_new(c->workers, batch_fib);
    if (!pp)
        return -EAGAIN;
    size_t nbatch = (size_t)c->workers * 8;
    size_t per = (f->len + nbatch - 1) / nbatch;
    int err = 0;
    size_t sent = 0;
    for (size_t lo = 0; lo < f->len && !err; lo += per, sent++) {
        size_t len = lo + per < f->len ? per : f->len - lo;
        err = bench_procpool_send(pp, sent % c->workers, f->k + lo,
                                  (uint32_t)len);
    }
    for (size_t i = 0; i < sent && !err; i++) {
        uint64_t v;
        err = bench_procpool_recv(pp, i % c->workers, &v);
        *value += v;
    }
    int err2 = bench_procpool_free(pp);
    return err ? err : err2;
}

static int run_pool(const struct bench_cell *c, uint64_t *value,
                    struct bench_result *res)
{
    if (cutoff == 0)
        return -ENOTSUP;
    struct frontier f = {malloc(count_units(c->n)), 0};
    if (!f.k)
        return -ENOMEM;
    frontier_walk(&f, c->n);
    bench_extra(res, "jobs=%zu", f.len);
    int err = strcmp(c->mode, "threadpool") == 0
                  ? run_threadpool(c, &f, value)
                  : run_processpool(c, &f, value);
    free(f.k);
    return err;
}

/* ---------------------------------------------------------------------------
 * The workload */

static int run_mode(const struct bench_cell *c, uint64_t *value, int64_t *ns,
                    struct bench_result *res)
{
    if (strcmp(c->mode, "weft") == 0)
        return run_weft(c, value, ns, res);
    int64_t t0 = bench_now_ns();
    int err = 0;
    if (strcmp(c->mode, "thread") == 0)
        *value = (uintptr_t)thread_fib((void *)(uintptr_t)c->n);
    else if (strcmp(c->mode, "process") == 0)
        *value = fork_fib((unsigned)c->n);
    else if (strcmp(c->mode, "threadpool") == 0 ||
             strcmp(c->mode, "processpool") == 0)
        err = run_pool(c, value, res);
    else
        return -ENOTSUP;
    *ns = bench_now_ns() - t0;
    return err;
}

static int fib_run(const struct bench_cell *c, struct bench_result *res)
{
    if (c->n > FIB_MAX || c->workers == 0 || c->workers > WEFT_MAX_WORKERS)
        return -EINVAL;
    cutoff = c->cutoff;
    fib_err = 0;
    uint64_t value = 0, units = count_units((unsigned)c->n);
    int64_t ns = 0;
    int err = run_mode(c, &value, &ns, res);
    if (err < 0)
        return err;
    if (fib_err < 0)
        bench_perror("fib", fib_err);
    res->ns_per_op = (double)ns / (double)units;
    res->ok = fib_err == 0 && value == fib_value((unsigned)c->n);
    bench_extra(res, "value=%llu tasks=%llu wall_ms=%.1f",
                (unsigned long long)value, (unsigned long long)units,
                (double)ns / 1e6);
    return 0;
}

static uint64_t fib_default_n(const struct bench_cell *c, bool full)
{
    bool one_per_call =
        strcmp(c->mode, "thread") == 0 || strcmp(c->mode, "process") == 0;
    if (c->cutoff)
        return one_per_call ? (full ? 38 : 35) : (full ? 42 : 40);
    if (strcmp(c->mode, "thread") == 0)
        return full ? 21 : 20;
    if (strcmp(c->mode, "process") == 0)
        return full ? 17 : 15;
    if (strcmp(c->mode, "asyncio") == 0 || strcmp(c->mode, "uvloop") == 0)
        return full ? 27 : 22;
    return full ? 32 : 30;
}

static void plan_no_cutoff(struct bench_plan *plan, bool full)
{
    char group[64];
    struct bench_cell c = {.mode = "weft"};
    unsigned w[BENCH_SCALE_MAX], nw = bench_plan_scaling_counts(plan, w);
    snprintf(group, sizeof group, "fib(%u), every call a task (no cutoff)",
             (unsigned)fib_default_n(&c, full));
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i], fib_default_n(&c, full), 0, 0,
                       NULL);
    c.mode = "thread";
    bench_plan_add(plan, group, "thread", 1, fib_default_n(&c, full), 0, 0,
                   full ? "smaller n: a thread per call (35421 threads)"
                        : "smaller n: a thread per call (21891 threads)");
    c.mode = "process";
    bench_plan_add(plan, group, "process", 1, fib_default_n(&c, full), 0, 0,
                   full ? "smaller n: a fork per call (5167 processes)"
                        : "smaller n: a fork per call (1973 processes)");
    bench_plan_note(plan, group,
                    "threadpool, processpool: skipped, a plain pool "
                    "deadlocks on nested joins; see the cutoff table");
    c.mode = "go";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "go", w[i], fib_default_n(&c, full), 0, 0,
                       NULL);
    c.mode = "asyncio";
    const char *py = full ? "smaller n: fib(27)" : "smaller n: fib(22)";
    bench_plan_add(plan, group, "asyncio", 1, fib_default_n(&c, full), 0, 0,
                   py);
    bench_plan_add(plan, group, "uvloop", 1, fib_default_n(&c, full), 0, 0, py);
}

static void plan_cutoff(struct bench_plan *plan, bool full)
{
    char group[64];
    const unsigned cut = 20;
    struct bench_cell c = {.mode = "weft", .cutoff = cut};
    unsigned w[BENCH_SCALE_MAX], nw = bench_plan_scaling_counts(plan, w);
    uint64_t n = fib_default_n(&c, full);
    unsigned ncpu = w[nw - 1];
    snprintf(group, sizeof group, "fib(%u), serial at n <= %u (cutoff %u)",
             (unsigned)n, cut, cut);
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i], n, cut, 0, NULL);
    c.mode = "thread";
    bench_plan_add(plan, group, "thread", 1, fib_default_n(&c, full), cut, 0,
                   full ? "smaller n: a thread per call (13529 threads)"
                        : "smaller n: a thread per call (3193 threads)");
    bench_plan_add(plan, group, "threadpool", ncpu, n, cut, 0,
                   "the calls at the cutoff as jobs (jobs=)");
    c.mode = "process";
    bench_plan_add(plan, group, "process", 1, fib_default_n(&c, full), cut, 0,
                   full ? "smaller n: a fork per call (13529 processes)"
                        : "smaller n: a fork per call (3193 processes)");
    bench_plan_add(plan, group, "processpool", ncpu, n, cut, 0,
                   "calls at the cutoff, 8 batches per process");
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "go", w[i], n, cut, 0, NULL);
    bench_plan_note(plan, group,
                    "asyncio, uvloop: skipped, the serial fib(20) leaves "
                    "in Python would measure the interpreter, not the "
                    "scheduler");
}

static void fib_plan(struct bench_plan *plan)
{
    bool full = bench_plan_full(plan);
    plan_no_cutoff(plan, full);
    plan_cutoff(plan, full);
}

const struct bench_workload bench_fib = {
    .name = "fib",
    .op = "ns per call of the task tree (wall / tasks=)",
    .run = fib_run,
    .default_n = fib_default_n,
    .plan = fib_plan,
};
