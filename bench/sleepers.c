/* sleepers: n units of work each sleep one second, then end; all are
 * started before the first is waited for. What a sleeping unit costs:
 * the wall time, the time to start them all, and memory.
 *
 * ns_per_op is the wall time beyond the one-second sleep, per sleeper,
 * (wall - 1 s) / n, so that rows of different n compare; wall runs from
 * the first start to the last join. The extra keys:
 *   wall_ms             first start to the last join
 *   spawn_ms            first start until the last start has returned
 *   asleep_ms           first start until the last sleeper went to sleep
 *   bytes_per_sleeper   memory growth over n (below)
 *   late_max_ms         the latest wake-up beyond a sleeper's one second
 *
 * Each sleeper reads the monotonic clock before and after its sleep. The
 * check fails unless all n ended and every one slept at least a second.
 *
 *   weft     weft_spawn() n tasks that weft_sleep(1.0), then weft_join()
 *            each
 *   thread   pthread_create() per sleeper (64 KiB stacks, as in spawn),
 *            each clock_nanosleep()s: a smaller n
 *   process  fork() per sleeper; each clock_nanosleep()s and writes how
 *            long it slept to a shared pipe: a smaller n
 *
 * Memory: for weft and thread, bytes_per_sleeper is (peak RSS - RSS just
 * before the first start) / n, from ru_maxrss and /proc/self/statm. For
 * process it is the growth of the proportional set size (PSS,
 * /proc/PID/smaps_rollup) of the parent and all children, sampled once
 * every child is asleep: RSS would count each child's copy-on-write pages
 * in full. Neither counts the kernel's memory per thread or process (its
 * stack, task struct and page tables).
 *
 * threadpool and processpool are not run: a pool thread that sleeps holds
 * the thread, so a pool of P would sleep n/P seconds in a row.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"

#define SLEEP_S      1.0
#define SLEEP_NS     INT64_C(1000000000)
#define THREAD_STACK (64 * 1024)

/* One cell's sleepers and what they saw. */
struct sleepers {
    uint64_t n;
    uint64_t ended;      /* sleepers that ended; atomic add */
    uint64_t short_;     /* of those, slept under SLEEP_NS; atomic add */
    int64_t late_max_ns; /* the longest sleep beyond SLEEP_NS; atomic max */
    int64_t asleep_ns;   /* the latest start of a sleep; atomic max */
    int err;             /* the first error; atomic */
    /* Written by the thread that starts the sleepers: */
    int64_t t0_ns, spawn_ns, wall_ns;
    long base_kib; /* memory before the first start */
    long peak_kib; /* memory with every sleeper asleep, or peak */
};

/* Sleep ns on the monotonic clock, as a thread or process does. */
static int sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / SLEEP_NS), (long)(ns % SLEEP_NS)};
    int err;
    while ((err = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts)) == EINTR)
        continue;
    return -err;
}

static void set_err(struct sleepers *s, int err)
{
    int none = 0;
    /* Relaxed: the value is read after every sleeper was joined, which
     * orders it. */
    __atomic_compare_exchange_n(&s->err, &none, err, false, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
}

/* *at = max(*at, v). Relaxed: the value is read after every sleeper was
 * joined, which orders it. */
static void store_max(int64_t *at, int64_t v)
{
    int64_t max = __atomic_load_n(at, __ATOMIC_RELAXED);
    while (v > max &&
           !__atomic_compare_exchange_n(at, &max, v, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        continue;
}

/* Record one sleeper that went to sleep at t0 (monotonic ns) and slept
 * slept_ns, or failed with err. Relaxed atomics: the totals are read after
 * every sleeper was joined. */
static void record(struct sleepers *s, int64_t t0, int64_t slept_ns, int err)
{
    if (err < 0) {
        set_err(s, err);
        return;
    }
    if (slept_ns < SLEEP_NS)
        __atomic_add_fetch(&s->short_, 1, __ATOMIC_RELAXED);
    store_max(&s->late_max_ns, slept_ns - SLEEP_NS);
    store_max(&s->asleep_ns, t0);
    __atomic_add_fetch(&s->ended, 1, __ATOMIC_RELAXED);
}

/* Resident memory of this process now, KiB (/proc/self/statm). */
static long rss_now_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Peak resident memory of this process, KiB. */
static long rss_peak_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* ---------------------------------------------------------------------------
 * weft */

static void *weft_sleeper(void *arg)
{
    int64_t t0 = bench_now_ns();
    int err = weft_sleep(SLEEP_S);
    record(arg, t0, bench_now_ns() - t0, err);
    return NULL;
}

static void *weft_main(void *arg)
{
    struct sleepers *s = arg;
    weft_task **h = malloc(s->n * sizeof *h);
    if (!h) {
        set_err(s, -ENOMEM);
        return NULL;
    }
    s->base_kib = rss_now_kib();
    int64_t t0 = s->t0_ns = bench_now_ns();
    uint64_t spawned = 0;
    for (; spawned < s->n; spawned++) {
        h[spawned] = weft_spawn(weft_sleeper, s);
        if (!h[spawned]) {
            set_err(s, -errno);
            break;
        }
    }
    s->spawn_ns = bench_now_ns() - t0;
    for (uint64_t i = 0; i < spawned; i++) {
        int err = weft_join(h[i], NULL);
        if (err < 0)
            set_err(s, err);
    }
    s->wall_ns = bench_now_ns() - t0;
    s->peak_kib = rss_peak_kib();
    free(h);
    return NULL;
}

/* ---------------------------------------------------------------------------
 * thread */

static void *thread_sleeper(void *arg)
{
    int64_t t0 = bench_now_ns();
    int err = sleep_ns(SLEEP_NS);
    record(arg, t0, bench_now_ns() - t0, err);
    return NULL;
}

static int run_threads(struct sleepers *s)
{
    pthread_t *th = malloc(s->n * sizeof *th);
    if (!th)
        return -ENOMEM;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    s->base_kib = rss_now_kib();
    int64_t t0 = s->t0_ns = bench_now_ns();
    uint64_t started = 0;
    for (; started < s->n; started++) {
        int err = pthread_create(&th[started], &attr, thread_sleeper, s);
        if (err) {
            set_err(s, -err);
            break;
        }
    }
    s->spawn_ns = bench_now_ns() - t0;
    pthread_attr_destroy(&attr);
    for (uint64_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    s->wall_ns = bench_now_ns() - t0;
    s->peak_kib = rss_peak_kib();
    free(th);
    return 0;
}

/* ---------------------------------------------------------------------------
 * process */

/* The proportional set size of process pid, KiB, or -1. */
static long pss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (kib < 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "Pss: %ld kB", &kib) != 1)
            kib = -1;
    fclose(f);
    return kib;
}

/* PSS of this process and the first k of pid, KiB; -1 if one is
 * missing (a child already gone). */
static long pss_total_kib(const pid_t *pid, uint64_t k)
{
    long total = pss_kib(getpid());
    for (uint64_t i = 0; i < k && total >= 0; i++) {
        long one = pss_kib(pid[i]);
        total = one < 0 ? -1 : total + one;
    }
    return total;
}

/* The child: sleep, then write when it began and how long it slept to
 * fd (-1: the sleep failed). */
static void process_sleeper(int fd)
{
    int64_t t0 = bench_now_ns();
    int err = sleep_ns(SLEEP_NS);
    int64_t report[2] = {t0, err < 0 ? -1 : bench_now_ns() - t0};
    _exit(bench_write_full(fd, report, sizeof report) < 0 ? 1 : 0);
}

static void fork_all(struct sleepers *s, int fd, pid_t *pid, uint64_t *started)
{
    for (*started = 0; *started < s->n; ++*started) {
        pid[*started] = fork();
        if (pid[*started] == 0)
            process_sleeper(fd);
        if (pid[*started] < 0) {
            set_err(s, -errno);
            break;
        }
    }
}

/* Read every child's report (writes of up to PIPE_BUF bytes to a pipe
 * are atomic), then reap them all. */
static void collect(struct sleepers *s, int fd, const pid_t *pid,
                    uint64_t started)
{
    for (uint64_t i = 0; i < started; i++) {
        int64_t report[2];
        int err = bench_read_full(fd, report, sizeof report);
        if (err < 0) {
            set_err(s, err);
            break;
        }
        /* A child whose sleep failed reports -1 (its errno is gone). */
        record(s, report[0], report[1], report[1] < 0 ? -EIO : 0);
    }
    for (uint64_t i = 0; i < started; i++) {
        int status;
        if (waitpid(pid[i], &status, 0) < 0 || status != 0)
            set_err(s, -ECHILD);
    }
}

static int run_processes(struct sleepers *s)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -errno;
    pid_t *pid = malloc(s->n * sizeof *pid);
    if (!pid) {
        close(fds[0]);
        close(fds[1]);
        return -ENOMEM;
    }
    s->base_kib = pss_kib(getpid());
    int64_t t0 = s->t0_ns = bench_now_ns();
    uint64_t started;
    fork_all(s, fds[1], pid, &started);
    s->spawn_ns = bench_now_ns() - t0;
    close(fds[1]);
    /* Every child is asleep until the first one's second is up. */
    s->peak_kib = pss_total_kib(pid, started);
    if (bench_now_ns() - t0 >= SLEEP_NS) {
        fprintf(stderr, "weft-bench: sleepers: the memory sample ended after "
                        "the first child woke; bytes_per_sleeper is low\n");
    }
    collect(s, fds[0], pid, started);
    s->wall_ns = bench_now_ns() - t0;
    close(fds[0]);
    free(pid);
    return 0;
}

/* ---------------------------------------------------------------------------
 * The workload */

static int sleepers_run(const struct bench_cell *c, struct bench_result *res)
{
    struct sleepers s = {.n = c->n, .asleep_ns = INT64_MIN};
    int err;
    if (c->workers > WEFT_MAX_WORKERS || c->workers == 0 || c->n == 0)
        return -EINVAL;
    if (strcmp(c->mode, "weft") == 0)
        err = bench_weft_run(c->workers, weft_main, &s, NULL, NULL, res);
    else if (strcmp(c->mode, "thread") == 0)
        err = run_threads(&s);
    else if (strcmp(c->mode, "process") == 0)
        err = run_processes(&s);
    else
        return -ENOTSUP;
    if (err < 0)
        return err;
    if (s.err < 0)
        bench_perror("sleepers", s.err);
    if (s.short_ > 0)
        fprintf(stderr, "weft-bench: sleepers: %" PRIu64 " slept under 1 s\n",
                s.short_);
    res->ok =
        s.err == 0 && s.ended == s.n && s.short_ == 0 && s.wall_ns >= SLEEP_NS;
    res->ns_per_op = (double)(s.wall_ns - SLEEP_NS) / (double)s.n;
    double bytes =
        s.base_kib < 0 || s.peak_kib < 0
            ? -1
            : (double)(s.peak_kib - s.base_kib) * 1024.0 / (double)s.n;
    bench_extra(res,
                "wall_ms=%.1f spawn_ms=%.1f asleep_ms=%.1f "
                "bytes_per_sleeper=%.0f late_max_ms=%.2f ended=%" PRIu64
                " base_kib=%ld",
                (double)s.wall_ns / 1e6, (double)s.spawn_ns / 1e6,
                s.ended ? (double)(s.asleep_ns - s.t0_ns) / 1e6 : 0.0, bytes,
                (double)s.late_max_ns / 1e6, s.ended, s.base_kib);
    return 0;
}

static uint64_t sleepers_default_n(const struct bench_cell *c, bool full)
{
    /* Every thread and unreaped process holds a pid (pid_max is often
     * 32768), and the process cell must fork all before the first wakes. */
    if (strcmp(c->mode, "thread") == 0)
        return full ? 20000 : 10000;
    if (strcmp(c->mode, "process") == 0)
        return full ? 2000 : 1000;
    return full ? 1000000 : 100000;
}

static void sleepers_plan(struct bench_plan *plan)
{
    const char *group = "n tasks each sleep 1 s, all started before the "
                        "first join";
    bool full = bench_plan_full(plan);
    unsigned w[3], nw = bench_plan_worker_counts(plan, w);
    struct bench_cell c = {.mode = "weft"};
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i], sleepers_default_n(&c, full),
                       0, 0, NULL);
    c.mode = "thread";
    bench_plan_add(plan, group, "thread", 1, sleepers_default_n(&c, full), 0, 0,
                   "smaller n: a pthread per sleeper, 64 KiB stacks");
    c.mode = "process";
    bench_plan_add(plan, group, "process", 1, sleepers_default_n(&c, full), 0,
                   0, "smaller n: a fork per sleeper; bytes from PSS");
    c.mode = "go";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "go", w[i], sleepers_default_n(&c, full), 0,
                       0, "goroutine + time.Sleep + WaitGroup");
    c.mode = "asyncio";
    bench_plan_add(plan, group, "asyncio", 1, sleepers_default_n(&c, full), 0,
                   0, "create_task + asyncio.sleep + gather");
    bench_plan_add(plan, group, "uvloop", 1, sleepers_default_n(&c, full), 0, 0,
                   "create_task + asyncio.sleep + gather");
    bench_plan_note(plan, group,
                    "bytes/sleeper: peak RSS growth / n (process: PSS of "
                    "all processes); kernel memory per thread or process "
                    "is not counted");
    bench_plan_note(plan, group,
                    "threadpool, processpool: skipped, a sleeping job holds "
                    "its pool thread or process");
}

const struct bench_workload bench_sleepers = {
    .name = "sleepers",
    .op = "ns per sleeper beyond the 1 s sleep ((wall - 1 s) / n)",
    .columns = "wall_ms spawn_ms bytes_per_sleeper",
    .run = sleepers_run,
    .default_n = sleepers_default_n,
    .plan = sleepers_plan,
};
