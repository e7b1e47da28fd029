/* Observability (weft.h, "Observability"; sched/stats.c, monitor.c,
 * dump.c): counters that agree with a known workload, the scheduling
 * delay histogram, WEFT_SCHEDTRACE's lines and their period, slow task
 * reports, and the task dump, by call and on SIGUSR1, with what tasks
 * wait on in each sync primitive.
 *
 * The environment is read by weft_runtime_new, so each test sets what it
 * needs before making its runtime: Check forks every test, so the setting
 * dies with the test. What the runtime prints on stderr is captured by
 * pointing fd 2 at a temporary file.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sched/sched.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * Capturing stderr */

struct capture {
    int saved; /* the real fd 2 */
    char path[64];
};

static void capture_start(struct capture *c)
{
    strcpy(c->path, "/tmp/weft-test-stats-XXXXXX");
    int fd = mkstemp(c->path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved, 0);
    ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
}

/* What was written so far (malloc'd, NUL-terminated). */
static char *capture_read(const struct capture *c)
{
    FILE *f = fopen(c->path, "r");
    ck_assert_ptr_nonnull(f);
    struct stat st;
    ck_assert_int_eq(fstat(fileno(f), &st), 0);
    char *buf = calloc(1, (size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Restore stderr and return what was captured. */
static char *capture_stop(struct capture *c)
{
    fflush(stderr);
    ck_assert_int_eq(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    close(c->saved);
    char *out = capture_read(c);
    unlink(c->path);
    return out;
}

static int count_occurrences(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* ------------------------------------------------------------------------
 * Counters */

enum { SPAWNS = 200, SLEEPS = 50 };

static void *sleep_a_little(void *arg)
{
    (void)arg;
    TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
    return NULL;
}

static void *returns_null(void *arg)
{
    (void)arg;
    return NULL;
}

/* SPAWNS children, SLEEPS of which sleep once: each sleep is one timer. */
static void *spawn_join_and_sleep(void *arg)
{
    (void)arg;
    weft_task *t[SPAWNS];
    for (int i = 0; i < SPAWNS; i++) {
        t[i] = weft_spawn(i < SLEEPS ? sleep_a_little : returns_null, NULL);
        TU_ASSERT(t[i] != NULL);
    }
    for (int i = 0; i < SPAWNS; i++)
        TU_ASSERT_INT_EQ(weft_join(t[i], NULL), 0);
    return NULL;
}

START_TEST(counters_agree_with_spawns_joins_and_sleeps)
{
    weft_runtime *rt = tu_new_runtime(2);
    ck_assert_int_eq(weft_runtime_run(rt, spawn_join_and_sleep, NULL, NULL), 0);
    tu_wait_idle(rt);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    /* The run's own task came from this thread; its children from it. */
    ck_assert_uint_eq(s.outside.spawned, 1);
    ck_assert_uint_eq(s.total.spawned, SPAWNS + 1);
    ck_assert_uint_eq(s.total.completed, SPAWNS + 1);
    ck_assert_uint_eq(s.tasks_alive, 0);
    ck_assert_uint_eq(s.outside.timers_fired, SLEEPS);
    ck_assert_uint_eq(s.total.timers_fired, SLEEPS);
    /* Every task ran at least once; the sleepers twice. */
    ck_assert_uint_ge(s.total.runs, SPAWNS + 1 + SLEEPS);
    ck_assert_uint_eq(s.total.io_events, 0);
    ck_assert_uint_eq(s.total.pool_jobs, 0);
    ck_assert_uint_eq(s.total.slow_runs, 0);
    ck_assert_uint_eq(s.inject_len, 0);
    ck_assert(s.uptime > 0 && s.uptime < 60);
    weft_runtime_free(rt);
}
END_TEST

static void *count_io_on_a_worker(void *arg)
{
    weft_runtime *rt = arg;
    weft__stats_io_events(rt, 4);
    weft__stats_io_events(NULL, 1); /* the worker's runtime */
    weft__stats_pool_job(rt);
    weft__stats_pool_job(NULL);
    return NULL;
}

START_TEST(io_and_pool_hooks_count_on_the_worker_or_outside)
{
    weft_runtime *rt = tu_new_runtime(1);
    /* From a plain thread (the reactor thread would be one): outside. */
    weft__stats_io_events(rt, 3);
    weft__stats_pool_job(rt);
    weft__stats_io_events(NULL, 7); /* no runtime of this thread's */
    ck_assert_int_eq(weft_runtime_run(rt, count_io_on_a_worker, rt, NULL), 0);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    ck_assert_uint_eq(s.outside.io_events, 3);
    ck_assert_uint_eq(s.outside.pool_jobs, 1);
    ck_assert_uint_eq(s.total.io_events, 8);
    ck_assert_uint_eq(s.total.pool_jobs, 3);
    weft_counters c;
    ck_assert_int_eq(weft_stats_worker(rt, 0, &c), 0);
    ck_assert_uint_eq(c.io_events, 5);
    ck_assert_uint_eq(c.pool_jobs, 2);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Scheduling delay */

enum { YIELDERS = 20, YIELDS = 50 };

static atomic_int yielders_started;

static void *yield_many(void *arg)
{
    (void)arg;
    atomic_fetch_add(&yielders_started, 1);
    for (int i = 0; i < YIELDS; i++)
        TU_ASSERT_INT_EQ(weft_yield(), 0);
    return NULL;
}

/* Joins only tasks that have started, so that no join runs one inline
 * (inline runs are not picked for samples: worker.c, run_inline). */
static void *spawn_yielders(void *arg)
{
    (void)arg;
    weft_task *t[YIELDERS];
    for (int i = 0; i < YIELDERS; i++) {
        t[i] = weft_spawn(yield_many, NULL);
        TU_ASSERT(t[i] != NULL);
    }
    while (atomic_load(&yielders_started) < YIELDERS)
        tu_yield();
    for (int i = 0; i < YIELDERS; i++)
        TU_ASSERT_INT_EQ(weft_join(t[i], NULL), 0);
    return NULL;
}

START_TEST(every_run_is_a_delay_sample_with_sampling_every_wait)
{
    setenv("WEFT_DELAY_SAMPLE", "1", 1);
    weft_runtime *rt = tu_new_runtime(2);
    ck_assert_int_eq(weft_runtime_run(rt, spawn_yielders, NULL, NULL), 0);
    tu_wait_idle(rt);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    /* Each ran at least once (a yield with nothing else ready on its
     * worker does not switch, so no more is certain). */
    ck_assert_uint_ge(s.total.runs, YIELDERS + 1);
    /* One sample per run: each wait that led to a run was timed. */
    ck_assert_uint_eq(s.delay.samples, s.total.runs);
    ck_assert_uint_eq(s.delay.sample_every, 1);
    ck_assert_uint_le(s.delay.p50_ns, s.delay.p99_ns);
    ck_assert_uint_le(s.delay.p99_ns, s.delay.max_ns);
    ck_assert_uint_gt(s.delay.max_ns, 0);
    /* The per-worker histograms add up to the total. */
    uint64_t sum = 0, bucket_sum = 0;
    for (unsigned w = 0; w < 2; w++) {
        weft_delay_hist h;
        ck_assert_int_eq(weft_stats_delay(rt, w, &h), 0);
        sum += h.samples;
        ck_assert_uint_le(h.max_ns, s.delay.max_ns);
    }
    ck_assert_uint_eq(sum, s.delay.samples);
    weft_delay_hist all;
    ck_assert_int_eq(weft_stats_delay(rt, WEFT_STATS_ALL_WORKERS, &all), 0);
    for (unsigned b = 0; b < WEFT_DELAY_BUCKETS; b++)
        bucket_sum += all.buckets[b];
    ck_assert_uint_eq(bucket_sum, all.samples);
    ck_assert_uint_eq(all.samples, s.delay.samples);
    weft_runtime_free(rt);
}
END_TEST

static void *busy_then_join(void *arg)
{
    int64_t busy_ns = (int64_t)(intptr_t)arg;
    /* Ready from its spawn, it cannot run before this task lets go of the
     * only worker. */
    weft_task *t = weft_spawn(returns_null, NULL);
    TU_ASSERT(t != NULL);
    tu_spin_for(busy_ns);
    TU_ASSERT_INT_EQ(weft_sleep(0.001), 0); /* not inline: a real wait */
    TU_ASSERT_INT_EQ(weft_join(t, NULL), 0);
    return NULL;
}

START_TEST(a_task_ready_behind_a_busy_one_shows_its_wait)
{
    setenv("WEFT_DELAY_SAMPLE", "1", 1);
    enum { BUSY_MS = 20 };
    weft_runtime *rt = tu_new_runtime(1);
    ck_assert_int_eq(weft_runtime_run(rt, busy_then_join,
                                      (void *)(intptr_t)(BUSY_MS * 1000000),
                                      NULL),
                     0);
    weft_delay_hist h;
    ck_assert_int_eq(weft_stats_delay(rt, 0, &h), 0);
    ck_assert_uint_ge(h.max_ns, (uint64_t)BUSY_MS * 1000000);
    /* In the bucket of 2^24 ns (16.8 ms) or above. */
    uint64_t above = 0;
    for (unsigned b = 24; b < WEFT_DELAY_BUCKETS; b++)
        above += h.buckets[b];
    ck_assert_uint_ge(above, 1);
    weft_runtime_free(rt);
}
END_TEST

enum { PAIR_YIELDS = 100000 };

static void *yield_n(void *arg)
{
    for (intptr_t i = 0; i < (intptr_t)arg; i++)
        TU_ASSERT_INT_EQ(weft_yield(), 0);
    return NULL;
}

static void *two_yielders(void *arg)
{
    weft_task *a = weft_spawn(yield_n, arg), *b = weft_spawn(yield_n, arg);
    TU_ASSERT(a && b);
    TU_ASSERT_INT_EQ(weft_join(a, NULL), 0);
    TU_ASSERT_INT_EQ(weft_join(b, NULL), 0);
    return NULL;
}

START_TEST(by_default_about_one_wait_in_256_is_timed)
{
    unsetenv("WEFT_DELAY_SAMPLE");
    weft_runtime *rt = tu_new_runtime(1);
    intptr_t n = TU_SCALE(PAIR_YIELDS, PAIR_YIELDS / 4, PAIR_YIELDS / 10);
    ck_assert_int_eq(weft_runtime_run(rt, two_yielders, (void *)n, NULL), 0);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    ck_assert_uint_eq(s.delay.sample_every, 256);
    double expect = (double)s.total.runs / 256;
    ck_assert_msg(
        s.delay.samples > expect * 0.7 && s.delay.samples < expect * 1.3,
        "%llu samples for %llu runs", (unsigned long long)s.delay.samples,
        (unsigned long long)s.total.runs);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(delay_sample_zero_times_nothing)
{
    setenv("WEFT_DELAY_SAMPLE", "0", 1);
    weft_runtime *rt = tu_new_runtime(1);
    ck_assert_int_eq(
        weft_runtime_run(rt, two_yielders, (void *)(intptr_t)1000, NULL), 0);
    weft_delay_hist h;
    ck_assert_int_eq(weft_stats_delay(rt, 0, &h), 0);
    ck_assert_uint_eq(h.samples, 0);
    ck_assert_uint_eq(h.sample_every, 0);
    ck_assert_uint_eq(h.p50_ns, 0);
    ck_assert_uint_eq(h.max_ns, 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(stats_calls_reject_bad_arguments)
{
    weft_delay_hist h;
    weft_stats s;
    /* Outside a task, NULL names no runtime. */
    ck_assert_int_eq(weft_stats_delay(NULL, 0, &h), -EINVAL);
    ck_assert_int_eq(weft_stats_get(NULL, &s), -EINVAL);
    ck_assert_int_eq(weft_runtime_dump(NULL, STDERR_FILENO), -EINVAL);
    weft_runtime *rt = tu_new_runtime(2);
    ck_assert_int_eq(weft_stats_delay(rt, 2, &h), -EINVAL);
    ck_assert_int_eq(weft_stats_delay(rt, 0, NULL), -EINVAL);
    ck_assert_int_eq(weft_stats_delay(rt, 1, &h), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * WEFT_SCHEDTRACE */

static void *sleep_arg_seconds(void *arg)
{
    double *s = arg;
    TU_ASSERT_INT_EQ(weft_sleep(*s), 0);
    return NULL;
}

START_TEST(schedtrace_prints_one_line_per_period)
{
    enum { PERIOD_MS = 25, LINES = 12 };
    setenv("WEFT_SCHEDTRACE", "25", 1);
    struct capture c;
    capture_start(&c);
    weft_runtime *rt = tu_new_runtime(2);
    double secs = (LINES * PERIOD_MS + PERIOD_MS / 2) / 1000.0;
    ck_assert_int_eq(weft_runtime_run(rt, sleep_arg_seconds, &secs, NULL), 0);
    weft_runtime_free(rt);
    char *out = capture_stop(&c);

    int lines = 0;
    long prev_ms = 0;
    for (char *p = out; (p = strstr(p, "weft schedtrace ")); p++) {
        long ms = strtol(p + strlen("weft schedtrace "), NULL, 10);
        lines++;
        /* At the period asked: line k is due k periods after the start,
         * and comes before the next is due (or that one is skipped). */
        ck_assert_msg(ms >= PERIOD_MS && ms / PERIOD_MS > prev_ms / PERIOD_MS,
                      "line at %ld ms after one at %ld ms", ms, prev_ms);
        prev_ms = ms;
        char *eol = strchr(p, '\n');
        ck_assert_ptr_nonnull(eol);
        *eol = '\0';
        ck_assert_msg(strstr(p, " workers=2 ") && strstr(p, " running=") &&
                          strstr(p, " spinning=") && strstr(p, " parked=") &&
                          strstr(p, " inject=") && strstr(p, " deques=[") &&
                          strstr(p, " alive=") && strstr(p, " steals=") &&
                          strstr(p, " parks=") && strstr(p, " delay_p99="),
                      "line: %s", p);
        *eol = '\n';
    }
    /* The run lasts LINES and a half periods; the lines skip none. */
    ck_assert_msg(lines >= LINES - 3 && lines <= LINES + 1, "%d lines:\n%s",
                  lines, out);
    ck_assert_int_ge(prev_ms, (LINES - 1) * PERIOD_MS);
    free(out);
}
END_TEST

START_TEST(schedtrace_is_silent_unless_asked)
{
    unsetenv("WEFT_SCHEDTRACE");
    struct capture c;
    capture_start(&c);
    weft_runtime *rt = tu_new_runtime(1);
    double secs = 0.05;
    ck_assert_int_eq(weft_runtime_run(rt, sleep_arg_seconds, &secs, NULL), 0);
    weft_runtime_free(rt);
    setenv("WEFT_SCHEDTRACE", "0", 1); /* as Go: 0 is off */
    rt = tu_new_runtime(1);
    ck_assert_int_eq(weft_runtime_run(rt, sleep_arg_seconds, &secs, NULL), 0);
    weft_runtime_free(rt);
    char *out = capture_stop(&c);
    ck_assert_msg(!strstr(out, "schedtrace"), "%s", out);
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------
 * Slow tasks */

enum { SLOW_MS = 100 };

static void *busy_loop(void *arg)
{
    tu_spin_for((int64_t)(intptr_t)arg * 1000000);
    return NULL;
}

static void *yielding_loop(void *arg)
{
    int64_t end = tu_now_ns() + (int64_t)(intptr_t)arg * 1000000;
    while (tu_now_ns() < end) {
        tu_spin_for(1000000);
        TU_ASSERT_INT_EQ(weft_yield(), 0);
    }
    return NULL;
}

/* Run fn(ms) as a task named `name` and join it at once, which runs it
 * inline here; returns its id. */
static void *run_named(const char *name, weft_fn fn, intptr_t ms)
{
    weft_task_opts o = {.name = name};
    weft_task *t = weft_spawn_ex(NULL, fn, (void *)ms, &o);
    TU_ASSERT(t != NULL);
    uint64_t id = weft_task_id(t);
    TU_ASSERT_INT_EQ(weft_join(t, NULL), 0);
    return (void *)(uintptr_t)id;
}

/* A task named "busy" spins 3 * SLOW_MS on its own stack (the spawner
 * sleeps, so it does not run inline). Returns its id. */
static void *start_busy(void *arg)
{
    (void)arg;
    weft_task_opts o = {.name = "busy"};
    weft_task *t =
        weft_spawn_ex(NULL, busy_loop, (void *)(intptr_t)(3 * SLOW_MS), &o);
    TU_ASSERT(t != NULL);
    uint64_t id = weft_task_id(t);
    TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
    TU_ASSERT_INT_EQ(weft_join(t, NULL), 0);
    return (void *)(uintptr_t)id;
}

START_TEST(slow_task_report_names_a_busy_loop)
{
    setenv("WEFT_SLOW_TASK_MS", "", 1); /* empty: the default, 100 ms */
    struct capture c;
    capture_start(&c);
    weft_runtime *rt = tu_new_runtime(1);
    void *id = NULL;
    ck_assert_int_eq(weft_runtime_run(rt, start_busy, NULL, &id), 0);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    weft_runtime_free(rt);
    char *out = capture_stop(&c);
    char want[96];
    snprintf(want, sizeof want, "weft: slow task %llu 'busy' ran ",
             (unsigned long long)(uintptr_t)id);
    char *line = strstr(out, want);
    ck_assert_msg(line != NULL, "no report in:\n%s", out);
    double ms = strtod(line + strlen(want), NULL);
    ck_assert_msg(ms >= 3 * SLOW_MS && ms < 3 * SLOW_MS + 1000, "%s", line);
    ck_assert_msg(strstr(line, "WEFT_SLOW_TASK_MS=100"), "%s", line);
    ck_assert_uint_ge(s.total.slow_runs, 1);
    free(out);
}
END_TEST

/* The only task of its worker but its joiner, so its yields do not even
 * switch: each is still a suspension point, after which it runs anew. */
static void *yield_for(void *arg)
{
    (void)arg;
    return run_named("polite", yielding_loop, 3 * SLOW_MS);
}

START_TEST(slow_task_report_stays_quiet_for_a_yielding_task)
{
    setenv("WEFT_SLOW_TASK_MS", "100", 1);
    struct capture c;
    capture_start(&c);
    weft_runtime *rt = tu_new_runtime(1);
    ck_assert_int_eq(weft_runtime_run(rt, yield_for, NULL, NULL), 0);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    weft_runtime_free(rt);
    char *out = capture_stop(&c);
    ck_assert_msg(!strstr(out, "slow task"), "%s", out);
    ck_assert_uint_eq(s.total.slow_runs, 0);
    free(out);
}
END_TEST

static void *inline_child_busy(void *arg)
{
    (void)arg;
    /* Joined at once: run inline, on this task's stack. */
    return run_named("inline", busy_loop, 2 * SLOW_MS);
}

START_TEST(slow_task_report_covers_a_child_run_inline)
{
    setenv("WEFT_SLOW_TASK_MS", "100", 1);
    struct capture c;
    capture_start(&c);
    weft_runtime *rt = tu_new_runtime(1);
    ck_assert_int_eq(weft_runtime_run(rt, inline_child_busy, NULL, NULL), 0);
    weft_runtime_free(rt);
    char *out = capture_stop(&c);
    ck_assert_msg(strstr(out, "'inline' ran "), "%s", out);
    /* The joiner waited for it, it did not run: one report. */
    ck_assert_int_eq(count_occurrences(out, "slow task"), 1);
    free(out);
}
END_TEST

START_TEST(slow_task_reports_are_off_unless_asked)
{
    unsetenv("WEFT_SLOW_TASK_MS");
    struct capture c;
    capture_start(&c);
    weft_runtime *rt = tu_new_runtime(1);
    ck_assert_int_eq(weft_runtime_run(rt, start_busy, NULL, NULL), 0);
    weft_runtime_free(rt);
    char *out = capture_stop(&c);
    ck_assert_msg(!strstr(out, "slow task"), "%s", out);
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------
 * The task dump */

struct dump_scene {
    weft_event go;
    weft_task *sleeper, *joiner, *waiter, *eventer;
    weft_task *waited[2];
};

static void *sleep_long(void *arg)
{
    (void)arg;
    /* Until weft_runtime_free cancels it. */
    TU_ASSERT_INT_EQ(weft_sleep(30), -ECANCELED);
    return NULL;
}

static void *join_arg(void *arg)
{
    TU_ASSERT_INT_EQ(weft_join(arg, NULL), -ECANCELED);
    return NULL;
}

static void *wait_first(void *arg)
{
    struct dump_scene *sc = arg;
    size_t ndone;
    /* Cancelled, or one of the waited tasks ended first (cancelled). */
    int rc = weft_wait(sc->waited, 2, WEFT_FOREVER, WEFT_WAIT_FIRST_COMPLETED,
                       &ndone);
    TU_ASSERT(rc == 0 || rc == -ECANCELED);
    return NULL;
}

static void *wait_event(void *arg)
{
    struct dump_scene *sc = arg;
    TU_ASSERT_INT_EQ(weft_event_wait(&sc->go), -ECANCELED);
    return NULL;
}

static weft_task *spawn_named(weft_runtime *rt, const char *name, weft_fn fn,
                              void *arg)
{
    weft_task_opts o = {.name = name};
    weft_task *t = weft_spawn_ex(rt, fn, arg, &o);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Set up tasks waiting on a sleep, a join, a weft_wait and an event. */
static void scene_start(struct dump_scene *sc, weft_runtime *rt)
{
    ck_assert_int_eq(weft_event_init(&sc->go), 0);
    sc->sleeper = spawn_named(rt, "sleeper", sleep_long, NULL);
    tu_wait_until_waiting(rt, sc->sleeper);
    sc->joiner = spawn_named(rt, "joiner", join_arg, sc->sleeper);
    sc->waited[0] = spawn_named(rt, "w0", sleep_long, NULL);
    sc->waited[1] = spawn_named(rt, "w1", sleep_long, NULL);
    sc->waiter = spawn_named(rt, "waiter", wait_first, sc);
    sc->eventer = spawn_named(rt, "eventer", wait_event, sc);
    tu_wait_until_waiting(rt, sc->joiner);
    tu_wait_until_waiting(rt, sc->waited[0]);
    tu_wait_until_waiting(rt, sc->waited[1]);
    tu_wait_until_waiting(rt, sc->waiter);
    tu_wait_until_waiting(rt, sc->eventer);
}

static void scene_end(struct dump_scene *sc, weft_runtime *rt)
{
    weft_runtime_free(rt); /* cancels them all and waits for them */
    /* Handles outlive the runtime; the joiner reaped the sleeper. The
     * sleepers ended cancelled; the others may have returned before their
     * own cancellation reached them. */
    int rc = weft_join(sc->joiner, NULL);
    ck_assert(rc == 0 || rc == -ECANCELED);
    rc = weft_join(sc->waiter, NULL);
    ck_assert(rc == 0 || rc == -ECANCELED);
    ck_assert_int_eq(weft_join(sc->waited[0], NULL), -ECANCELED);
    ck_assert_int_eq(weft_join(sc->waited[1], NULL), -ECANCELED);
    ck_assert_int_eq(weft_join(sc->eventer, NULL), -ECANCELED);
    ck_assert_int_eq(weft_event_destroy(&sc->go), 0);
}

/* The line of task `name` in a dump, cut at its newline. */
static char *line_of(char *out, const char *name)
{
    char key[48];
    snprintf(key, sizeof key, " '%s' ", name);
    char *p = strstr(out, key);
    ck_assert_msg(p != NULL, "no %s in:\n%s", name, out);
    while (p > out && p[-1] != '\n')
        p--;
    char *eol = strchr(p, '\n');
    ck_assert_ptr_nonnull(eol);
    *eol = '\0';
    return p;
}

START_TEST(dump_lists_live_tasks_with_what_they_wait_on)
{
    unsetenv("WEFT_DUMP_ON_SIGNAL");
    weft_runtime *rt = tu_new_runtime(2);
    struct dump_scene sc;
    scene_start(&sc, rt);
    struct capture c;
    capture_start(&c);
    int n = weft_runtime_dump(rt, STDERR_FILENO);
    char *out = capture_stop(&c);
    ck_assert_int_eq(n, 6);
    ck_assert_msg(strstr(out, "weft dump: runtime ") &&
                      strstr(out, "2 workers, 6 tasks alive"),
                  "%s", out);
    ck_assert_msg(strstr(out, "  worker 0: ") && strstr(out, "  worker 1: "),
                  "%s", out);
    char *l = line_of(out, "sleeper");
    ck_assert_msg(strstr(l, " waiting on worker ") && strstr(l, ": sleep, ") &&
                      strstr(l, " s left"),
                  "%s", l);
    ck_assert_msg(!strstr(l, "age"), "ages are kept only when asked: %s", l);
    l[strlen(l)] = '\n';
    char want[64];
    snprintf(want, sizeof want, ": join task %llu",
             (unsigned long long)weft_task_id(sc.sleeper));
    l = line_of(out, "joiner");
    ck_assert_msg(strstr(l, want), "%s", l);
    l[strlen(l)] = '\n';
    l = line_of(out, "waiter");
    ck_assert_msg(strstr(l, ": wait for 1 tasks"), "%s", l);
    l[strlen(l)] = '\n';
    l = line_of(out, "eventer");
    ck_assert_msg(strstr(l, " waiting on worker ") && strstr(l, ": event 0x"),
                  "%s", l);
    free(out);
    scene_end(&sc, rt);
}
END_TEST

START_TEST(sigusr1_dumps_every_listed_runtime_with_ages)
{
    setenv("WEFT_DUMP_ON_SIGNAL", "1", 1);
    weft_runtime *rt = tu_new_runtime(2);
    struct dump_scene sc;
    scene_start(&sc, rt);
    struct capture c;
    capture_start(&c);
    ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
    /* The dumper thread writes it soon after. */
    char *out = NULL;
    for (int i = 0; i < 1000; i++) {
        out = capture_read(&c);
        if (strstr(out, "'eventer'"))
            break;
        free(out);
        out = NULL;
        usleep(10000);
    }
    free(capture_stop(&c));
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(strstr(out, "6 tasks alive"), "%s", out);
    char *l = line_of(out, "sleeper");
    ck_assert_msg(strstr(l, ", age "), "%s", l);
    double age = strtod(strstr(l, ", age ") + 6, NULL);
    ck_assert_msg(age >= 0 && age < 10, "%s", l);
    free(out);
    scene_end(&sc, rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * The task dump names the sync primitive each task waits on */

/* rt's dump, written into a memfd and read back (malloc'd). */
static char *dump_to_string(weft_runtime *rt)
{
    int fd = memfd_create("weft-dump", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(weft_runtime_dump(rt, fd), 0);
    off_t len = lseek(fd, 0, SEEK_END);
    ck_assert_int_gt(len, 0);
    char *buf = calloc(1, (size_t)len + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    return buf;
}

/* Fail unless the line of task `name` in `out` says ": <kind> <obj>". */
static void check_waits_on(char *out, const char *name, const char *kind,
                           const void *obj)
{
    char want[64];
    snprintf(want, sizeof want, ": %s %#llx", kind,
             (unsigned long long)(uintptr_t)obj);
    char *l = line_of(out, name);
    ck_assert_msg(strstr(l, " waiting on worker ") && strstr(l, want),
                  "want '%s' in: %s", want, l);
    l[strlen(l)] = '\n'; /* line_of cut it */
}

struct sync_scene {
    weft_lock lock;          /* held by 'holder' */
    weft_event let_go;       /* set: 'holder' releases the lock */
    weft_sem sem;            /* at 0 */
    weft_event ev;           /* unset */
    weft_lock cond_lock;     /* 'condition' waits on cond with it */
    weft_cond cond;          /* nobody notifies it */
    weft_queue empty, full;  /* full: maxsize 1, holding one item */
    weft_barrier barrier;    /* 2 parties, 1 waiting */
    atomic_int cond_woken;   /* 'condition' returned from its wait */
    int item0, item1, item2; /* the queues' items */
};

static void *hold_lock(void *arg)
{
    struct sync_scene *sc = arg;
    TU_ASSERT_INT_EQ(weft_lock_acquire(&sc->lock), 0);
    TU_ASSERT_INT_EQ(weft_event_wait(&sc->let_go), 0);
    TU_ASSERT_INT_EQ(weft_lock_release(&sc->lock), 0);
    return NULL;
}

static void *take_lock(void *arg)
{
    struct sync_scene *sc = arg;
    TU_ASSERT_INT_EQ(weft_lock_acquire(&sc->lock), 0);
    TU_ASSERT_INT_EQ(weft_lock_release(&sc->lock), 0);
    return NULL;
}

static void *take_sem(void *arg)
{
    struct sync_scene *sc = arg;
    TU_ASSERT_INT_EQ(weft_sem_acquire(&sc->sem), 0);
    return NULL;
}

static void *wait_ev(void *arg)
{
    struct sync_scene *sc = arg;
    TU_ASSERT_INT_EQ(weft_event_wait(&sc->ev), 0);
    return NULL;
}

static void *wait_cond(void *arg)
{
    struct sync_scene *sc = arg;
    TU_ASSERT_INT_EQ(weft_lock_acquire(&sc->cond_lock), 0);
    TU_ASSERT_INT_EQ(weft_cond_wait(&sc->cond), 0);
    atomic_store(&sc->cond_woken, 1);
    TU_ASSERT_INT_EQ(weft_lock_release(&sc->cond_lock), 0);
    return NULL;
}

static void *get_item(void *arg)
{
    struct sync_scene *sc = arg;
    void *item = NULL;
    TU_ASSERT_INT_EQ(weft_queue_get(&sc->empty, &item), 0);
    TU_ASSERT(item == &sc->item0);
    return NULL;
}

static void *put_item(void *arg)
{
    struct sync_scene *sc = arg;
    TU_ASSERT_INT_EQ(weft_queue_put(&sc->full, &sc->item2), 0);
    return NULL;
}

static void *cross_barrier(void *arg)
{
    struct sync_scene *sc = arg;
    TU_ASSERT_INT_EQ(weft_barrier_wait(&sc->barrier), 0);
    return NULL;
}

static const struct {
    const char *name;
    weft_fn fn;
} sync_waiters[] = {
    {"holder", hold_lock}, {"locker", take_lock},      {"semaphore", take_sem},
    {"eventer", wait_ev},  {"condition", wait_cond},   {"getter", get_item},
    {"putter", put_item},  {"barrier", cross_barrier},
};
enum { SYNC_WAITERS = sizeof(sync_waiters) / sizeof(sync_waiters[0]) };

static void sync_scene_init(struct sync_scene *sc)
{
    memset(sc, 0, sizeof(*sc));
    ck_assert_int_eq(weft_lock_init(&sc->lock), 0);
    ck_assert_int_eq(weft_event_init(&sc->let_go), 0);
    ck_assert_int_eq(weft_sem_init(&sc->sem, 0), 0);
    ck_assert_int_eq(weft_event_init(&sc->ev), 0);
    ck_assert_int_eq(weft_lock_init(&sc->cond_lock), 0);
    ck_assert_int_eq(weft_cond_init(&sc->cond, &sc->cond_lock), 0);
    ck_assert_int_eq(weft_queue_init(&sc->empty, 0), 0);
    ck_assert_int_eq(weft_queue_init(&sc->full, 1), 0);
    ck_assert_int_eq(weft_queue_put_nowait(&sc->full, &sc->item1), 0);
    ck_assert_int_eq(weft_barrier_init(&sc->barrier, 2), 0);
}

/* Spawn the waiters of sync_waiters, in order, each once the one before
 * is suspended (so the holder holds the lock before the locker asks). */
static void sync_scene_start(struct sync_scene *sc, weft_runtime *rt,
                             weft_task **t)
{
    for (int i = 0; i < SYNC_WAITERS; i++) {
        t[i] = spawn_named(rt, sync_waiters[i].name, sync_waiters[i].fn, sc);
        tu_wait_until_waiting(rt, t[i]);
    }
}

/* Let every waiter go (this thread is the barrier's second party), join
 * them all, and destroy what they waited on: destroy fails while a
 * primitive is waited on, so nothing was left behind. */
static void sync_scene_end(struct sync_scene *sc, weft_runtime *rt,
                           weft_task **t)
{
    ck_assert_int_eq(weft_event_set(&sc->let_go), 0);
    ck_assert_int_eq(weft_sem_release(&sc->sem), 0);
    ck_assert_int_eq(weft_event_set(&sc->ev), 0);
    ck_assert_int_eq(weft_lock_acquire(&sc->cond_lock), 0);
    ck_assert_int_eq(weft_cond_notify(&sc->cond, 1), 1);
    ck_assert_int_eq(weft_lock_release(&sc->cond_lock), 0);
    ck_assert_int_eq(weft_queue_put(&sc->empty, &sc->item0), 0);
    void *item = NULL;
    ck_assert_int_eq(weft_queue_get(&sc->full, &item), 0);
    ck_assert_ptr_eq(item, &sc->item1);
    ck_assert_int_eq(weft_barrier_wait(&sc->barrier), 1);
    for (int i = 0; i < SYNC_WAITERS; i++)
        ck_assert_int_eq(weft_join(t[i], NULL), 0);
    /* The putter's item went in when the get made room. */
    ck_assert_int_eq(weft_queue_get_nowait(&sc->full, &item), 0);
    ck_assert_ptr_eq(item, &sc->item2);
    ck_assert_int_eq(weft_barrier_destroy(&sc->barrier), 0);
    ck_assert_int_eq(weft_queue_destroy(&sc->full), 0);
    ck_assert_int_eq(weft_queue_destroy(&sc->empty), 0);
    ck_assert_int_eq(weft_cond_destroy(&sc->cond), 0);
    ck_assert_int_eq(weft_lock_destroy(&sc->cond_lock), 0);
    ck_assert_int_eq(weft_event_destroy(&sc->ev), 0);
    ck_assert_int_eq(weft_sem_destroy(&sc->sem), 0);
    ck_assert_int_eq(weft_event_destroy(&sc->let_go), 0);
    ck_assert_int_eq(weft_lock_destroy(&sc->lock), 0);
    tu_wait_idle(rt);
    weft_runtime_free(rt);
}

START_TEST(dump_names_the_sync_primitive_each_task_waits_on)
{
    unsetenv("WEFT_DUMP_ON_SIGNAL");
    weft_runtime *rt = tu_new_runtime(2);
    struct sync_scene sc;
    weft_task *t[SYNC_WAITERS];
    sync_scene_init(&sc);
    sync_scene_start(&sc, rt, t);
    char *out = dump_to_string(rt);
    check_waits_on(out, "holder", "event", &sc.let_go);
    check_waits_on(out, "locker", "lock", &sc.lock);
    check_waits_on(out, "semaphore", "semaphore", &sc.sem);
    check_waits_on(out, "eventer", "event", &sc.ev);
    check_waits_on(out, "condition", "condition", &sc.cond);
    check_waits_on(out, "getter", "queue", &sc.empty);
    check_waits_on(out, "putter", "queue", &sc.full);
    check_waits_on(out, "barrier", "barrier", &sc.barrier);
    free(out);
    sync_scene_end(&sc, rt, t);
}
END_TEST

/* The lock a condition waiter takes back after its notify is a wait of
 * its own: uninterruptible, and still shown, as "lock". */
START_TEST(dump_shows_a_notified_condition_waiter_waiting_for_its_lock)
{
    unsetenv("WEFT_DUMP_ON_SIGNAL");
    weft_runtime *rt = tu_new_runtime(2);
    struct sync_scene sc;
    memset(&sc, 0, sizeof(sc));
    ck_assert_int_eq(weft_lock_init(&sc.cond_lock), 0);
    ck_assert_int_eq(weft_cond_init(&sc.cond, &sc.cond_lock), 0);
    weft_task *t = spawn_named(rt, "condition", wait_cond, &sc);
    tu_wait_until_waiting(rt, t);
    /* Notify, and keep the lock: the waiter wakes and waits for it. */
    ck_assert_int_eq(weft_lock_acquire(&sc.cond_lock), 0);
    ck_assert_int_eq(weft_cond_notify(&sc.cond, 1), 1);
    char want[64];
    snprintf(want, sizeof want, ": lock %#llx",
             (unsigned long long)(uintptr_t)&sc.cond_lock);
    /* Its line says "condition" until the wake-up has run and it has
     * queued on the lock; there is no event to wait for in between. */
    char *out = NULL;
    int64_t give_up = tu_now_ns() + 10 * 1000000000LL;
    for (;;) {
        out = dump_to_string(rt);
        char *l = line_of(out, "condition");
        bool there = strstr(l, want) != NULL;
        l[strlen(l)] = '\n'; /* line_of cut it */
        if (there || tu_now_ns() > give_up)
            break;
        free(out);
        usleep(1000);
    }
    check_waits_on(out, "condition", "lock", &sc.cond_lock);
    free(out);
    ck_assert_int_eq(atomic_load(&sc.cond_woken), 0);
    ck_assert_int_eq(weft_lock_release(&sc.cond_lock), 0);
    ck_assert_int_eq(weft_join(t, NULL), 0);
    ck_assert_int_eq(atomic_load(&sc.cond_woken), 1);
    ck_assert_int_eq(weft_cond_destroy(&sc.cond), 0);
    ck_assert_int_eq(weft_lock_destroy(&sc.cond_lock), 0);
    weft_runtime_free(rt);
}
END_TEST

static Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("counters");
    tcase_add_test(tc, counters_agree_with_spawns_joins_and_sleeps);
    tcase_add_test(tc, io_and_pool_hooks_count_on_the_worker_or_outside);
    tcase_add_test(tc, stats_calls_reject_bad_arguments);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("delay");
    tcase_add_test(tc, every_run_is_a_delay_sample_with_sampling_every_wait);
    tcase_add_test(tc, a_task_ready_behind_a_busy_one_shows_its_wait);
    tcase_add_test(tc, by_default_about_one_wait_in_256_is_timed);
    tcase_add_test(tc, delay_sample_zero_times_nothing);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("schedtrace");
    tcase_add_test(tc, schedtrace_prints_one_line_per_period);
    tcase_add_test(tc, schedtrace_is_silent_unless_asked);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("slow_tasks");
    tcase_add_test(tc, slow_task_report_names_a_busy_loop);
    tcase_add_test(tc, slow_task_report_stays_quiet_for_a_yielding_task);
    tcase_add_test(tc, slow_task_report_covers_a_child_run_inline);
    tcase_add_test(tc, slow_task_reports_are_off_unless_asked);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("dump");
    tcase_add_test(tc, dump_lists_live_tasks_with_what_they_wait_on);
    tcase_add_test(tc, sigusr1_dumps_every_listed_runtime_with_ages);
    tcase_add_test(tc, dump_names_the_sync_primitive_each_task_waits_on);
    tcase_add_test(tc,
                   dump_shows_a_notified_condition_waiter_waiting_for_its_lock);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(stats_suite());
}
