/* The targets, computed from the rows of this same run. Issues 3 and 4:
 *
 *   yield, 1 worker            <= 0.4x Go's Gosched with GOMAXPROCS=1
 *                              (one task; two alternating tasks as well)
 *   raw switch                 <= 1.3x Boost.Context's jump_fcontext
 *   spawn+join, 2 workers      <= 0.7x Go (GOMAXPROCS=2), RSS <= 150 MiB
 *   fib(30), no cutoff         <= 90 ns/task at 1 worker, speedup >= 1.85
 *                              at 2 workers, RSS <= 64 MiB
 *   fib(40), cutoff 20         speedup >= 1.95 at 2 workers
 *   idle runtime               < 1 % of a core
 *   100k sleepers of 1 s       wall time <= 1.0x Go's at the same worker
 *                              count, <= 4.5 KiB per sleeper
 *   1 ms sleep, idle runtime   wakes <= 0.2 ms late at p99
 *
 * The sync primitives (pingpong with each primitive, lock at T=4 and
 * T=100):
 *
 *   pingpong, 1 worker         <= 0.5x Go's unbuffered channels with
 *                              GOMAXPROCS=1
 *   pingpong, N workers        <= 1.5x weft's own 1-worker figure
 *   lock, 1 worker             <= 1.0x Go's sync.Mutex with GOMAXPROCS=1
 *   lock, 2 workers            <= 1.0x 2 threads on a pthread_mutex_t
 *   lock, T threads on         <= 1.5x T threads on a pthread_mutex_t
 *   weft_lock
 *
 * TCP echo on loopback, 100 connections with one 64-byte request in
 * flight each (echo.c):
 *
 *   echo, 1 worker             server CPU per request <= 0.9x Go's with
 *                              GOMAXPROCS=1
 *   echo, P workers            req/s >= 1.0x and p99 latency <= 1.0x Go's
 *                              with GOMAXPROCS=P, at each P both ran
 *
 * Observability, in yield and spawn at 1 worker:
 *
 *   hooks off                  <= 1.05x weft-bench-noobs (hooks compiled
 *                              out), i.e. within noise
 *   WEFT_TRACE on              the slowdown, no target
 *
 * A target whose rows are missing (a skipped reference, one CPU) prints
 * n/a and why; it is not a failure of the run.
 */
#include <stdlib.h>
#include <string.h>

#include "bench/driver.h"

/* The sizes the targets are stated for; other sizes (--full)
 * leave those targets n/a. */
#define SPAWN_N    1000000
#define FIB_N      30
#define FIB_CUT_N  40
#define FIB_CUTOFF 20
#define SLEEPERS_N 100000
#define ECHO_CONNS 100
#define ANY        (-1)

/* The passing row of workload and mode with these workers and parties,
 * and this n and cutoff (ANY: whatever). */
static const struct bench_row *find(const struct bench_plan *plan,
                                    const char *workload, const char *mode,
                                    unsigned workers, unsigned parties,
                                    long long n, int cutoff)
{
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (strcmp(r->cell.workload, workload) == 0 &&
            strcmp(r->cell.mode, mode) == 0 && r->cell.workers == workers &&
            r->cell.parties == parties && r->ok &&
            (n == ANY || r->cell.n == (uint64_t)n) &&
            (cutoff == ANY || r->cell.cutoff == (unsigned)cutoff))
            return r;
    }
    return NULL;
}

/* One line: label, the figure and how it was computed, the target, and
 * whether it was reached. */
static void verdict(FILE *f, const char *label, double value, const char *how,
                    const char *cmp, double limit)
{
    bool ok = strcmp(cmp, "<=") == 0   ? value <= limit
              : strcmp(cmp, ">=") == 0 ? value >= limit
                                       : value < limit;
    fprintf(f, "  %-30s %8.2f  (target %s %g)  %s\n      %s\n", label, value,
            cmp, limit, ok ? "reached" : "NOT reached", how);
}

static void missing(FILE *f, const char *label, const char *why)
{
    fprintf(f, "  %-30s      n/a  (%s)\n", label, why);
}

/* The yield target is one task yielding (parties=1); weft may
 * return from weft_yield() without a switch when nothing else is ready, so
 * the two-task row, where every yield switches, is checked against the
 * same bound too. */
static void target_yield_parties(const struct bench_plan *plan, FILE *f,
                                 unsigned parties)
{
    const char *label = parties == 1 ? "yield, 1 worker vs Go"
                                     : "yield x2 tasks, 1 worker vs Go";
    const struct bench_row *w =
        find(plan, "yield", "weft", 1, parties, ANY, ANY);
    const struct bench_row *g = find(plan, "yield", "go", 1, parties, ANY, ANY);
    if (!w || !g) {
        missing(f, label, w ? "no Go row" : "no weft 1-worker row");
        return;
    }
    char how[200], switches[32] = "?";
    bench_line_get(w->line, "switches", switches, sizeof switches);
    snprintf(how, sizeof how,
             "weft_yield %.1f ns / Go runtime.Gosched GOMAXPROCS=1 %.1f ns "
             "(parties=%u; weft switched %s times for %llu yields)",
             w->ns_per_op, g->ns_per_op, parties, switches,
             (unsigned long long)w->cell.n);
    verdict(f, label, w->ns_per_op / g->ns_per_op, how, "<=", 0.4);
}

static void target_yield(const struct bench_plan *plan, FILE *f)
{
    target_yield_parties(plan, f, 1);
    target_yield_parties(plan, f, 2);
}

static void target_switch(const struct bench_plan *plan, FILE *f)
{
    const char *label = "raw switch vs Boost.Context";
    const struct bench_row *w = find(plan, "switch", "weft", 1, 0, ANY, ANY);
    const struct bench_row *b = find(plan, "switch", "boost", 1, 0, ANY, ANY);
    if (!w || !b) {
        missing(f, label, w ? "no boost row" : "no weft row");
        return;
    }
    char how[160];
    snprintf(how, sizeof how,
             "weft__ctx_switch %.2f ns / jump_fcontext %.2f ns per switch",
             w->ns_per_op, b->ns_per_op);
    verdict(f, label, w->ns_per_op / b->ns_per_op, how, "<=", 1.3);
}

static void target_spawn(const struct bench_plan *plan, FILE *f)
{
    const struct bench_row *w = find(plan, "spawn", "weft", 2, 0, SPAWN_N, ANY);
    const struct bench_row *g = find(plan, "spawn", "go", 2, 0, SPAWN_N, ANY);
    char how[160];
    if (!w) {
        missing(f, "spawn+join, 2 workers",
                "no weft 2-worker row with n=1M (the issue's size)");
        return;
    }
    if (g) {
        snprintf(how, sizeof how,
                 "weft %.1f ns/task / Go goroutine+WaitGroup GOMAXPROCS=2 "
                 "%.1f ns/task, n=%llu",
                 w->ns_per_op, g->ns_per_op, (unsigned long long)w->cell.n);
        verdict(f, "spawn+join, 2 workers vs Go", w->ns_per_op / g->ns_per_op,
                how, "<=", 0.7);
    } else {
        missing(f, "spawn+join, 2 workers vs Go", "no Go row");
    }
    snprintf(how, sizeof how, "peak RSS of the weft 2-worker cell, n=%llu",
             (unsigned long long)w->cell.n);
    verdict(f, "spawn+join RSS, MiB", (double)w->rss_kib / 1024.0, how,
            "<=", 150);
}

static void target_fib(const struct bench_plan *plan, FILE *f)
{
    const struct bench_row *w1 = find(plan, "fib", "weft", 1, 0, FIB_N, 0);
    const struct bench_row *w2 = find(plan, "fib", "weft", 2, 0, FIB_N, 0);
    char how[160];
    if (w1) {
        char tasks[32] = "?";
        bench_line_get(w1->line, "tasks", tasks, sizeof tasks);
        snprintf(how, sizeof how, "fib(%llu) no cutoff, %s tasks, 1 worker",
                 (unsigned long long)w1->cell.n, tasks);
        verdict(f, "fib, ns per task at 1 worker", w1->ns_per_op, how,
                "<=", 90);
    } else {
        missing(f, "fib, ns per task at 1 worker",
                "no weft 1-worker fib(30) row (the issue's size)");
    }
    if (w2 && w2->speedup > 0) {
        snprintf(how, sizeof how, "fib(%llu) no cutoff: %.1f ns / %.1f ns",
                 (unsigned long long)w2->cell.n, w1 ? w1->ns_per_op : 0,
                 w2->ns_per_op);
        verdict(f, "fib, speedup at 2 workers", w2->speedup, how, ">=", 1.85);
    } else {
        missing(f, "fib, speedup at 2 workers",
                "needs weft fib(30) rows at 1 and 2 workers (2 CPUs)");
    }
    long rss = 0;
    if (w1)
        rss = w1->rss_kib;
    if (w2 && w2->rss_kib > rss)
        rss = w2->rss_kib;
    if (w1 || w2)
        verdict(f, "fib RSS, MiB", (double)rss / 1024.0,
                "largest peak RSS of the weft fib no-cutoff cells", "<=", 64);
    const struct bench_row *c1 =
        find(plan, "fib", "weft", 1, 0, FIB_CUT_N, FIB_CUTOFF);
    const struct bench_row *c2 =
        find(plan, "fib", "weft", 2, 0, FIB_CUT_N, FIB_CUTOFF);
    if (c1 && c2 && c2->speedup > 0) {
        char ms1[32] = "?", ms2[32] = "?";
        bench_line_get(c1->line, "wall_ms", ms1, sizeof ms1);
        bench_line_get(c2->line, "wall_ms", ms2, sizeof ms2);
        snprintf(how, sizeof how, "fib(%llu) cutoff %u: %s ms / %s ms",
                 (unsigned long long)c2->cell.n, c2->cell.cutoff, ms1, ms2);
        verdict(f, "fib cutoff, speedup at 2 w.", c2->speedup, how, ">=", 1.95);
    } else {
        missing(f, "fib cutoff, speedup at 2 w.",
                "needs weft fib(40) cutoff 20 rows at 1 and 2 workers");
    }
}

static void target_idle(const struct bench_plan *plan, FILE *f)
{
    const struct bench_row *worst = NULL;
    double worst_pct = -1;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        char val[32];
        if (strcmp(r->cell.workload, "idle") != 0 ||
            strcmp(r->cell.mode, "weft") != 0 || !r->ok ||
            !bench_line_get(r->line, "cpu_pct", val, sizeof val))
            continue;
        double pct = strtod(val, NULL);
        if (pct > worst_pct) {
            worst_pct = pct;
            worst = r;
        }
    }
    if (!worst) {
        missing(f, "idle runtime, % of a core", "no weft idle row");
        return;
    }
    char how[160];
    snprintf(how, sizeof how,
             "CPU of the whole process while a %u-worker runtime idles "
             "%llu ms (worst weft row)",
             worst->cell.workers, (unsigned long long)worst->cell.n);
    verdict(f, "idle runtime, % of a core", worst_pct, how, "<", 1.0);
}

/* A figure of row r's RESULT line, or -1. */
static double figure(const struct bench_row *r, const char *key)
{
    char val[32];
    if (!bench_line_get(r->line, key, val, sizeof val))
        return -1;
    return strtod(val, NULL);
}

/* Wall time against Go's at each worker count that has both rows. */
static void target_sleepers_wall(const struct bench_plan *plan, FILE *f)
{
    unsigned compared = 0;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *w = &plan->rows[i];
        if (strcmp(w->cell.workload, "sleepers") != 0 ||
            strcmp(w->cell.mode, "weft") != 0 || !w->ok ||
            w->cell.n != SLEEPERS_N)
            continue;
        const struct bench_row *g =
            find(plan, "sleepers", "go", w->cell.workers, 0, SLEEPERS_N, ANY);
        if (!g)
            continue;
        char label[64], how[200];
        snprintf(label, sizeof label, "sleepers wall, %uw vs Go",
                 w->cell.workers);
        snprintf(how, sizeof how,
                 "weft %.0f ms / Go goroutines+time.Sleep GOMAXPROCS=%u "
                 "%.0f ms, %llu sleepers of 1 s",
                 figure(w, "wall_ms"), g->cell.workers, figure(g, "wall_ms"),
                 (unsigned long long)w->cell.n);
        verdict(f, label, figure(w, "wall_ms") / figure(g, "wall_ms"), how,
                "<=", 1.0);
        compared++;
    }
    if (!compared)
        missing(f, "sleepers wall vs Go",
                "needs weft and Go sleepers rows with n=100k");
}

/* Bytes per sleeper: the worst weft row. */
static void target_sleepers_bytes(const struct bench_plan *plan, FILE *f)
{
    const struct bench_row *worst = NULL;
    double worst_bytes = -1;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (strcmp(r->cell.workload, "sleepers") != 0 ||
            strcmp(r->cell.mode, "weft") != 0 || !r->ok ||
            r->cell.n != SLEEPERS_N)
            continue;
        double bytes = figure(r, "bytes_per_sleeper");
        if (bytes > worst_bytes) {
            worst_bytes = bytes;
            worst = r;
        }
    }
    if (!worst) {
        missing(f, "sleepers, KiB per sleeper",
                "no weft sleepers row with n=100k");
        return;
    }
    char how[200], go[48] = "no Go row";
    const struct bench_row *g =
        find(plan, "sleepers", "go", worst->cell.workers, 0, SLEEPERS_N, ANY);
    if (g)
        snprintf(go, sizeof go, "Go: %.0f bytes",
                 figure(g, "bytes_per_sleeper"));
    snprintf(how, sizeof how,
             "peak RSS growth / n of the weft %u-worker cell (worst weft "
             "row), %.0f bytes; %s",
             worst->cell.workers, worst_bytes, go);
    verdict(f, "sleepers, KiB per sleeper", worst_bytes / 1024.0, how,
            "<=", 4.5);
}

/* p99 lateness of a 1 ms sleep on an idle runtime: the worst weft row. */
static void target_timer(const struct bench_plan *plan, FILE *f)
{
    const struct bench_row *worst = NULL;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (strcmp(r->cell.workload, "timer") == 0 &&
            strcmp(r->cell.mode, "weft") == 0 && r->cell.parties == 0 &&
            r->ok && (!worst || r->ns_per_op > worst->ns_per_op))
            worst = r;
    }
    if (!worst) {
        missing(f, "1 ms sleep, p99 late, ms", "no weft idle timer row");
        return;
    }
    char how[200], go[48] = "no Go row";
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *g = &plan->rows[i];
        if (strcmp(g->cell.workload, "timer") == 0 &&
            strcmp(g->cell.mode, "go") == 0 && g->cell.parties == 0 && g->ok)
            snprintf(go, sizeof go, "Go time.Sleep p99 %.0f us",
                     g->ns_per_op / 1e3);
    }
    snprintf(how, sizeof how,
             "weft_sleep(0.001) on an idle %u-worker runtime (worst weft "
             "row), p50 %.0f us, %llu sleeps; %s",
             worst->cell.workers, figure(worst, "p50_us"),
             (unsigned long long)worst->cell.n, go);
    verdict(f, "1 ms sleep, p99 late, ms", worst->ns_per_op / 1e6, how,
            "<=", 0.2);
}

static const char *pingpong_via(unsigned parties)
{
    return parties == 1 ? "events" : "queues";
}

/* Both primitives: against Go at 1 worker, and against weft's own 1-worker
 * figure at the most workers (the CPU count). */
static void target_pingpong(const struct bench_plan *plan, FILE *f)
{
    for (unsigned parties = 1; parties <= 2; parties++) {
        char label[64], how[200];
        const struct bench_row *w1 =
            find(plan, "pingpong", "weft", 1, parties, ANY, ANY);
        const struct bench_row *g =
            find(plan, "pingpong", "go", 1, parties, ANY, ANY);
        snprintf(label, sizeof label, "pingpong %s, 1w vs Go",
                 pingpong_via(parties));
        if (w1 && g) {
            snprintf(how, sizeof how,
                     "weft_%s pair %.1f ns / Go unbuffered channels "
                     "GOMAXPROCS=1 %.1f ns per round trip",
                     parties == 1 ? "event" : "queue (maxsize 1)",
                     w1->ns_per_op, g->ns_per_op);
            verdict(f, label, w1->ns_per_op / g->ns_per_op, how, "<=", 0.5);
        } else {
            missing(f, label, w1 ? "no Go row" : "no weft 1-worker row");
        }
        unsigned ncpu = plan->cpus;
        snprintf(label, sizeof label, "pingpong %s, %uw vs 1w",
                 pingpong_via(parties), ncpu);
        const struct bench_row *wn =
            ncpu > 1 ? find(plan, "pingpong", "weft", ncpu, parties, ANY, ANY)
                     : NULL;
        if (w1 && wn) {
            snprintf(how, sizeof how,
                     "weft %u workers %.1f ns / 1 worker %.1f ns per round "
                     "trip",
                     ncpu, wn->ns_per_op, w1->ns_per_op);
            verdict(f, label, wn->ns_per_op / w1->ns_per_op, how, "<=", 1.5);
        } else {
            missing(f, label,
                    ncpu < 2 ? "one CPU"
                             : "needs weft rows at 1 and N workers");
        }
    }
}

/* target / peer of two rows, or n/a. */
static void lock_ratio(FILE *f, const char *label, const struct bench_row *w,
                       const struct bench_row *peer, const char *w_name,
                       const char *peer_name, double limit)
{
    char how[200];
    if (!w || !peer) {
        snprintf(how, sizeof how, "no %s row", w ? peer_name : w_name);
        missing(f, label, how);
        return;
    }
    snprintf(how, sizeof how, "%s %.1f ns / %s %.1f ns per increment, n=%llu",
             w_name, w->ns_per_op, peer_name, peer->ns_per_op,
             (unsigned long long)w->cell.n);
    verdict(f, label, w->ns_per_op / peer->ns_per_op, how, "<=", limit);
}

static void target_lock(const struct bench_plan *plan, FILE *f)
{
    static const unsigned ts[] = {4, 100};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
        unsigned t = ts[i];
        char label[64], name[64], peer[64];
        snprintf(label, sizeof label, "lock T=%u, 1w vs Go", t);
        snprintf(name, sizeof name, "weft 1 worker, %u tasks", t);
        lock_ratio(f, label, find(plan, "lock", "weft", 1, t, ANY, ANY),
                   find(plan, "lock", "go", 1, t, ANY, ANY), name,
                   "Go sync.Mutex GOMAXPROCS=1", 1.0);
        snprintf(label, sizeof label, "lock T=%u, 2w vs 2 pthreads", t);
        snprintf(name, sizeof name, "weft 2 workers, %u tasks", t);
        lock_ratio(f, label, find(plan, "lock", "weft", 2, t, ANY, ANY),
                   find(plan, "lock", "thread", 2, 2, ANY, ANY), name,
                   "2 threads on pthread_mutex_t", 1.0);
        snprintf(label, sizeof label, "lock T=%u, threads vs pthread", t);
        snprintf(name, sizeof name, "%u threads on weft_lock", t);
        snprintf(peer, sizeof peer, "%u threads on pthread_mutex_t", t);
        lock_ratio(f, label, find(plan, "lock", "thread-weft", t, t, ANY, ANY),
                   find(plan, "lock", "thread", t, t, ANY, ANY), name, peer,
                   1.5);
    }
}

/* A figure of w's over the same figure of g's, with how it was taken. */
static void echo_ratio(FILE *f, const char *label, const struct bench_row *w,
                       const struct bench_row *g, const char *key,
                       const char *unit, const char *cmp, double limit)
{
    char how[200];
    double fw = figure(w, key), fg = figure(g, key);
    if (fw < 0 || fg <= 0) {
        missing(f, label, "a row lacks the figure");
        return;
    }
    snprintf(how, sizeof how,
             "weft %u worker%s %.1f %s / Go GOMAXPROCS=%u %.1f %s, %llu "
             "connections",
             w->cell.workers, w->cell.workers == 1 ? "" : "s", fw, unit,
             g->cell.workers, fg, unit, (unsigned long long)w->cell.n);
    verdict(f, label, fw / fg, how, cmp, limit);
}

/* Server CPU per request at 1 worker; req/s and p99 at every worker count
 * with both a weft and a Go row. */
static void target_echo(const struct bench_plan *plan, FILE *f)
{
    char label[64];
    const struct bench_row *w1 =
        find(plan, "echo", "weft", 1, 0, ECHO_CONNS, ANY);
    const struct bench_row *g1 =
        find(plan, "echo", "go", 1, 0, ECHO_CONNS, ANY);
    if (w1 && g1)
        echo_ratio(f, "echo CPU/request, 1w vs Go", w1, g1, "cpu_us_per_req",
                   "us", "<=", 0.9);
    else
        missing(f, "echo CPU/request, 1w vs Go",
                w1 ? "no Go row" : "no weft 1-worker row with 100 conns");
    unsigned compared = 0;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *w = &plan->rows[i];
        if (strcmp(w->cell.workload, "echo") != 0 ||
            strcmp(w->cell.mode, "weft") != 0 || !w->ok ||
            w->cell.n != ECHO_CONNS)
            continue;
        const struct bench_row *g =
            find(plan, "echo", "go", w->cell.workers, 0, ECHO_CONNS, ANY);
        if (!g)
            continue;
        snprintf(label, sizeof label, "echo req/s, %uw vs Go", w->cell.workers);
        echo_ratio(f, label, w, g, "req_s", "req/s", ">=", 1.0);
        snprintf(label, sizeof label, "echo p99, %uw vs Go", w->cell.workers);
        echo_ratio(f, label, w, g, "p99_us", "us", "<=", 1.0);
        compared++;
    }
    if (!compared)
        missing(f, "echo req/s and p99 vs Go",
                "needs weft and Go echo rows with 100 connections");
}

/* The passing row of workload and mode in the observability group. */
static const struct bench_row *observe_row(const struct bench_plan *plan,
                                           const char *workload,
                                           const char *mode)
{
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (strcmp(r->cell.workload, workload) == 0 &&
            strcmp(r->cell.mode, mode) == 0 && r->ok &&
            strcmp(r->group, BENCH_OBS_GROUP) == 0)
            return r;
    }
    return NULL;
}

/* Issue 7: with the hooks off, weft within noise (5 %, about what two
 * runs of one build differ by here) of weft-bench-noobs, where they are
 * compiled out; with WEFT_TRACE on, the slowdown, which has no target. */
static void target_observe(const struct bench_plan *plan, FILE *f,
                           const char *workload)
{
    char label[64], how[200];
    const struct bench_row *off = observe_row(plan, workload, "weft");
    const struct bench_row *out = observe_row(plan, workload, "weft-noobs");
    const struct bench_row *on = observe_row(plan, workload, "weft-trace");
    snprintf(label, sizeof label, "%s, hooks off vs compiled out", workload);
    if (!off || !out) {
        missing(f, label,
                "needs the weft and weft-noobs rows of its "
                "observability table");
        return;
    }
    snprintf(how, sizeof how, "weft %.1f ns / weft-noobs %.1f ns (1 worker)",
             off->ns_per_op, out->ns_per_op);
    verdict(f, label, off->ns_per_op / out->ns_per_op, how, "<=", 1.05);
    if (!on)
        return;
    snprintf(label, sizeof label, "%s, WEFT_TRACE on vs off", workload);
    fprintf(
        f,
        "  %-30s %8.2f  (a slowdown, no target)\n      weft-trace %.1f ns / "
        "weft %.1f ns\n",
        label, on->ns_per_op / off->ns_per_op, on->ns_per_op, off->ns_per_op);
}

static void target_observe_yield(const struct bench_plan *plan, FILE *f)
{
    target_observe(plan, f, "yield");
}

static void target_observe_spawn(const struct bench_plan *plan, FILE *f)
{
    target_observe(plan, f, "spawn");
}

/* Whether the run has rows of workload (--only may leave it out). */
static bool planned(const struct bench_plan *plan, const char *workload)
{
    for (size_t i = 0; i < plan->nrows; i++)
        if (strcmp(plan->rows[i].cell.workload, workload) == 0)
            return true;
    return false;
}

void bench_targets_print(const struct bench_plan *plan, FILE *f)
{
    static const struct {
        const char *workload;
        void (*print)(const struct bench_plan *plan, FILE *f);
    } targets[] = {
        {"yield", target_yield},
        {"switch", target_switch},
        {"spawn", target_spawn},
        {"fib", target_fib},
        {"idle", target_idle},
        {"sleepers", target_sleepers_wall},
        {"sleepers", target_sleepers_bytes},
        {"timer", target_timer},
        {"pingpong", target_pingpong},
        {"lock", target_lock},
        {"echo", target_echo},
        {"yield", target_observe_yield},
        {"spawn", target_observe_spawn},
    };
    fprintf(f, "== targets, from the rows of this run ==\n");
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++)
        if (planned(plan, targets[i].workload))
            targets[i].print(plan, f);
}
