/* Statistics: counters, the scheduling delay histogram, slow task reports.
 *
 * Counters: each worker writes its own (weft__count, relaxed); readers sum
 * them with relaxed loads, so a reading thread may see a total a moment
 * old, and the workers pay no shared write for being observed. Threads
 * that are not workers count in rt->outside (internal.h says who writes
 * which field).
 *
 * Scheduling delay (internal.h, "Statistics"): about one ready-to-run
 * wait in rt->delay_every (default 256) is timed. Measured on this
 * project's 2-core AMD EPYC VM (clock_gettime ~25 ns, rdtsc ~10 ns; Release
 * weft-bench, 1 worker, medians of interleaved runs): two tasks yielding to
 * each other took 18.0 ns per switch before this file timed anything, 63
 * ns with every wait timed (WEFT_DELAY_SAMPLE=1: two clock reads per
 * switch), and 19.0-19.2 ns sampled (19.0 with no sample taken at all: the
 * flag tests and the compare of the run count, which sampling needs in
 * any form, are most of that nanosecond). Sampling keeps the distribution
 * (the picks follow no period of the workload) but not the exact maximum:
 * max_ns is the longest sampled wait.
 *
 * The histogram is per worker, written by that worker only (it runs the
 * task and reads the clock the second time), so recording a sample takes
 * no atomic RMW. Stamps taken on one thread are read on another; both
 * read CLOCK_MONOTONIC, which is one clock for the whole machine.
 *
 * Slow tasks (WEFT_SLOW_TASK_MS): when on, every change of a worker's
 * running task reads the clock (set_current in worker.c), and a run longer
 * than the threshold is reported by the worker itself as it ends: the
 * task is alive then, so its id and name can be read. A watchdog thread
 * could report without the clock read, but could not name the task
 * safely (it may end and be freed while the watchdog looks) and would
 * wake up periodically in an idle runtime; the mode is a debugging aid
 * (asyncio's debug mode costs far more), so it is off unless asked for
 * and costs one predictable branch per switch then.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/internal.h"

static weft_runtime *resolve(weft_runtime *rt)
{
    return rt ? rt : weft_runtime_current();
}

/* --------------------------------------------------------------------------
 * Scheduling delay
 */

static unsigned bucket_of(uint64_t ns)
{
    if (ns < 2)
        return 0;
    unsigned b = 63u - (unsigned)__builtin_clzll(ns);
    return b < WEFT_DELAY_BUCKETS ? b : WEFT_DELAY_BUCKETS - 1;
}

uint32_t weft__delay_stamp(weft_task *t)
{
    int64_t now = weft__now_ns();
    /* Plain stores: only the party that makes t ready writes these, and
     * the hand-off that gives t to its runner orders them (internal.h). */
    if (t->stack)
        t->ready_ns = now;
    else
        t->spawn_ns = now;
    /* Immutable after weft_runtime_new; the flow starts here (trace.c). */
    if (WEFT_UNLIKELY(t->rt->trace != NULL))
        weft__trace_ready(t, now);
    return WEFT__WHERE_SAMPLED;
}

/* Add SAMPLED t's wait to w's histogram; returns its stamp. */
static int64_t delay_record(struct weft__worker *w, const weft_task *t)
{
    int64_t since = t->stack ? t->ready_ns : t->spawn_ns;
    int64_t d = weft__now_ns() - since;
    uint64_t ns = d > 0 ? (uint64_t)d : 0;
    weft__count(&w->delay.buckets[bucket_of(ns)], 1);
    /* Relaxed: the owner is the only writer; readers take any recent
     * value. */
    if (ns > weft__load_rlx_u64(&w->delay.max_ns))
        weft__store_rlx_u64(&w->delay.max_ns, ns);
    return since;
}

/* Runs from one pick to the next: every/2 .. every/2 + every - 1 (every
 * on average), jittered by a hash of the run count. */
static uint64_t pick_gap(uint32_t every, uint64_t n)
{
    if (every <= 1)
        return 1;
    return every / 2 + ((n * 0x9e3779b97f4a7c15ull) >> 32) % every;
}

/* Set w's next pick after run n (0: the first, from the start). */
static void schedule_pick(struct weft__worker *w, uint64_t n)
{
    uint32_t every = w->rt->delay_every;
    w->next_sample = every ? n + pick_gap(every, n) : UINT64_MAX;
    w->next_observe = w->watch ? 0 : w->next_sample;
}

void weft__stats_worker_init(struct weft__worker *w)
{
    weft_runtime *rt = w->rt;
    w->slow_ns = rt->slow_ns;
    w->trace = weft__trace_buf_of(rt, w->index);
    w->watch = w->slow_ns || w->trace;
    schedule_pick(w, 0);
}

uint32_t weft__run_observed(struct weft__worker *w, weft_task *t,
                            uint32_t where, uint64_t n)
{
    if (where & WEFT__WHERE_SAMPLED) {
        int64_t stamp = delay_record(w, t);
        /* The flow its ready event started ends at this run (trace.c). */
        if (w->trace)
            w->next_flow = weft__trace_flow_id(t->id, stamp, !t->stack);
    }
    if (n == 0) /* an inline run (worker.c): its set_current does the rest */
        return 0;
    if (w->watch)
        weft__watch_switch(w, t);
    if (n < w->next_sample)
        return 0;
    schedule_pick(w, n);
    return WEFT__WHERE_STAMP;
}

/* The ns below which a fraction q of h's samples lie, interpolated
 * linearly inside the bucket where that rank falls, at most max_ns. */
static uint64_t percentile(const weft_delay_hist *h, double q)
{
    if (h->samples == 0)
        return 0;
    double rank = q * (double)h->samples;
    uint64_t below = 0;
    for (unsigned b = 0; b < WEFT_DELAY_BUCKETS; b++) {
        uint64_t n = h->buckets[b];
        if (n == 0 || (double)(below + n) < rank) {
            below += n;
            continue;
        }
        double lo = b == 0 ? 0 : (double)(1ull << b);
        double hi = (double)(1ull << (b + 1));
        double v = lo + (hi - lo) * ((rank - (double)below) / (double)n);
        return v < (double)h->max_ns ? (uint64_t)v : h->max_ns;
    }
    return h->max_ns;
}

/* Add w's histogram to h (relaxed loads: a moment old at worst). */
static void add_delay(struct weft__worker *w, weft_delay_hist *h)
{
    for (unsigned b = 0; b < WEFT_DELAY_BUCKETS; b++) {
        uint64_t n = weft__load_rlx_u64(&w->delay.buckets[b]);
        h->buckets[b] += n;
        h->samples += n;
    }
    uint64_t max = weft__load_rlx_u64(&w->delay.max_ns);
    if (max > h->max_ns)
        h->max_ns = max;
}

static void finish_delay(const weft_runtime *rt, weft_delay_hist *h)
{
    h->sample_every = rt->delay_every;
    h->p50_ns = percentile(h, 0.50);
    h->p99_ns = percentile(h, 0.99);
}

int weft_stats_delay(weft_runtime *rt, unsigned worker, weft_delay_hist *h)
{
    rt = resolve(rt);
    if (!rt || !h ||
        (worker >= rt->nworkers && worker != WEFT_STATS_ALL_WORKERS))
        return -EINVAL;
    *h = (weft_delay_hist){0};
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (worker == WEFT_STATS_ALL_WORKERS || worker == i)
            add_delay(rt->workers[i], h);
    finish_delay(rt, h);
    return 0;
}

/* --------------------------------------------------------------------------
 * Slow tasks
 */

static __attribute__((noinline, cold)) void
slow_report(struct weft__worker *w, const weft_task *t, int64_t ns)
{
    char name[32];
    weft__task_name(t, name);
    weft__count(&w->counters.slow_runs, 1);
    fprintf(stderr,
            "weft: slow task %llu%s%s%s ran %.1f ms on worker %u without "
            "suspending (WEFT_SLOW_TASK_MS=%lld)\n",
            (unsigned long long)t->id, name[0] ? " '" : "", name,
            name[0] ? "'" : "", (double)ns / 1e6, w->index,
            (long long)(w->slow_ns / 1000000));
}

void weft__watch_switch(struct weft__worker *w, weft_task *next)
{
    int64_t now = weft__now_ns();
    weft_task *t = w->current;
    if (w->slow_ns && t && now - w->slow_start >= w->slow_ns)
        slow_report(w, t, now - w->slow_start);
    w->slow_start = now;
    if (w->trace) {
        if (t)
            weft__trace_run(w, t, w->run_start, now, w->run_flow);
        w->run_start = now;
        w->run_flow = next ? w->next_flow : 0;
        w->next_flow = 0;
    }
}

void weft__slow_restart(struct weft__worker *w)
{
    int64_t now = weft__now_ns();
    weft_task *t = w->current;
    if (t && now - w->slow_start >= w->slow_ns)
        slow_report(w, t, now - w->slow_start);
    w->slow_start = now;
}

/* --------------------------------------------------------------------------
 * Counting for the other layers (sched/sched.h)
 */

static uint64_t *count_site(weft_runtime *rt, size_t offset, bool *owner)
{
    struct weft__worker *w = weft__tls_worker;
    *owner = w && w->rt == rt;
    weft_counters *c = *owner ? &w->counters : &rt->outside;
    return (uint64_t *)((char *)c + offset);
}

/* The runtime the calling thread works for: its worker's, its reactor
 * thread's, or that of the wake-ups it collects; else NULL. */
static weft_runtime *own_runtime(void)
{
    struct weft__worker *w = weft__tls_worker;
    if (w)
        return w->rt;
    if (weft__tls_reactor_of)
        return weft__tls_reactor_of;
    return weft__tls_batch ? weft__tls_batch->rt : NULL;
}

static void count_for(weft_runtime *rt, size_t offset, uint64_t n)
{
    if (!rt && !(rt = own_runtime()))
        return;
    bool owner;
    uint64_t *p = count_site(rt, offset, &owner);
    if (owner)
        weft__count(p, n); /* its worker is the only writer */
    else
        weft__faa_seq_u64(p, n); /* any thread: an RMW; it orders nothing */
}

void weft__stats_io_events(weft_runtime *rt, unsigned n)
{
    count_for(rt, offsetof(weft_counters, io_events), n);
}

void weft__stats_pool_job(weft_runtime *rt)
{
    count_for(rt, offsetof(weft_counters, pool_jobs), 1);
}

/* --------------------------------------------------------------------------
 * Configuration
 */

/* A positive integer from the environment: -1 if name is unset, dflt if
 * it is set but empty, not a number, or not positive. */
static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    if (!v)
        return -1;
    char *end;
    long n = strtol(v, &end, 10);
    return end != v && *end == '\0' && n > 0 ? n : dflt;
}

void weft__stats_configure(weft_runtime *rt)
{
    rt->start_ns = weft__now_ns();
    /* WEFT_DELAY_SAMPLE: 0 (none) is valid here, unlike in env_long. */
    const char *every = getenv("WEFT_DELAY_SAMPLE");
    char *end = NULL;
    long n = every ? strtol(every, &end, 10) : -1;
    if (!every || end == every || *end != '\0' || n < 0 || n > 1000000000)
        n = WEFT__DELAY_EVERY;
    rt->delay_every = (uint32_t)n;
    /* n * phi <= limit for about one n in delay_every; 0 for none (n = 0
     * only, after 2^64 runs). */
    rt->sample_limit = n == 0   ? 0
                       : n == 1 ? UINT64_MAX
                                : UINT64_MAX / (uint64_t)n;
    long slow_ms = env_long("WEFT_SLOW_TASK_MS", 100);
    rt->slow_ns = slow_ms > 0 ? (int64_t)slow_ms * 1000000 : 0;
    /* Ages cost a clock read per spawn (task.c): kept only for a runtime
     * set up to be dumped on a signal. */
    const char *dump = getenv("WEFT_DUMP_ON_SIGNAL");
    rt->track_age = dump && *dump && strcmp(dump, "0") != 0;
}

/* --------------------------------------------------------------------------
 * Reading
 */

static void read_counters(weft_counters *src, weft_counters *c)
{
    uint64_t *from = (uint64_t *)src;
    uint64_t *dst = (uint64_t *)c;
    for (size_t i = 0; i < sizeof(*c) / sizeof(uint64_t); i++)
        dst[i] = weft__load_rlx_u64(&from[i]);
}

static void add_counters(weft_counters *sum, const weft_counters *c)
{
    uint64_t *s = (uint64_t *)sum;
    const uint64_t *add = (const uint64_t *)c;
    for (size_t i = 0; i < sizeof(*c) / sizeof(uint64_t); i++)
        s[i] += add[i];
}

int weft_stats_worker(weft_runtime *rt, unsigned worker, weft_counters *c)
{
    rt = resolve(rt);
    if (!rt || !c || worker >= rt->nworkers)
        return -EINVAL;
    read_counters(&rt->workers[worker]->counters, c);
    return 0;
}

int weft_stats_get(weft_runtime *rt, weft_stats *s)
{
    rt = resolve(rt);
    if (!rt || !s)
        return -EINVAL;
    *s = (weft_stats){0};
    s->workers = rt->nworkers;
    s->tasks_alive = weft__runtime_alive(rt);
    read_counters(&rt->outside, &s->outside);
    s->outside.spawned = weft__load_rlx_u64(&rt->ext_spawned);
    s->total = s->outside;
    for (unsigned w = 0; w < rt->nworkers; w++) {
        weft_counters c;
        read_counters(&rt->workers[w]->counters, &c);
        add_counters(&s->total, &c);
        add_delay(rt->workers[w], &s->delay);
    }
    finish_delay(rt, &s->delay);
    s->inject_len = weft__load_rlx_u64(&rt->inject.len);
    s->uptime = (double)(weft__now_ns() - rt->start_ns) / 1e9;
    return 0;
}
