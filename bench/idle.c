/* idle: the CPU a runtime with nothing to do burns. A runtime of P workers
 * runs one trivial task (so every worker has started and gone idle), then
 * the calling thread sleeps n milliseconds while the process's CPU time is
 * measured. ns_per_op is CPU nanoseconds per millisecond of idling;
 * cpu_pct= is the same as a percentage of one core.
 *
 * Threads and processes blocked in the kernel use no CPU by construction,
 * so only weft and the references (Go's runtime, the Python loops) are
 * measured.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"

static void *answer(void *arg)
{
    return arg;
}

static int sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

static int idle_run(const struct bench_cell *c, struct bench_result *res)
{
    if (strcmp(c->mode, "weft") != 0)
        return -ENOTSUP;
    weft_runtime *rt = bench_weft_new(c->workers);
    if (!rt)
        return -ENOMEM;
    void *r = NULL;
    int err = weft_runtime_run(rt, answer, (void *)(uintptr_t)42, &r);
    weft_stats before = {0}, after = {0};
    if (err == 0)
        err = weft_stats_get(rt, &before);
    int64_t cpu0 = bench_cpu_ns(), t0 = bench_now_ns();
    if (err == 0)
        err = sleep_ms(c->n);
    int64_t cpu = bench_cpu_ns() - cpu0, wall = bench_now_ns() - t0;
    if (err == 0)
        err = weft_stats_get(rt, &after);
    weft_runtime_free(rt);
    if (err < 0)
        return err;
    res->ns_per_op = c->n ? (double)cpu / (double)c->n : 0;
    res->ok = (uintptr_t)r == 42;
    bench_extra(
        res, "cpu_pct=%.3f wall_ms=%.1f parks=%llu wakeups=%llu",
        100.0 * (double)cpu / (double)wall, (double)wall / 1e6,
        (unsigned long long)(after.total.parks - before.total.parks),
        (unsigned long long)(after.total.wakeups - before.total.wakeups));
    return 0;
}

static uint64_t idle_default_n(const struct bench_cell *c, bool full)
{
    (void)c;
    return full ? 5000 : 1000;
}

static void idle_plan(struct bench_plan *plan)
{
    const char *group = "runtime idle for n ms";
    bool full = bench_plan_full(plan);
    struct bench_cell c = {.mode = "weft"};
    unsigned w[3], nw = bench_plan_worker_counts(plan, w);
    uint64_t n = idle_default_n(&c, full);
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i], n, 0, 0, NULL);
    bench_plan_add(plan, group, "go", w[nw - 1], n, 0, 0, "time.Sleep");
    bench_plan_add(plan, group, "asyncio", 1, n, 0, 0, "asyncio.sleep");
    bench_plan_add(plan, group, "uvloop", 1, n, 0, 0, "asyncio.sleep");
    bench_plan_note(plan, group,
                    "thread, threadpool, process, processpool: skipped, "
                    "a blocked thread or process uses no CPU by "
                    "construction");
}

const struct bench_workload bench_idle = {
    .name = "idle",
    .op = "CPU ns per ms idle",
    .run = idle_run,
    .default_n = idle_default_n,
    .plan = idle_plan,
};
