/* The Chrome trace (sched/trace.c, WEFT_TRACE): the file is valid JSON
 * after weft_runtime_free and after a normal exit that never freed the
 * runtime, it holds one slice per task run named after the task, every
 * flow that starts also ends, the reactor's timers show on its track, and
 * weft_to_thread's jobs on tracks of the blocking pool's threads, also
 * when a job outlives its runtime.
 *
 * JSON is checked with `python3 -m json.tool` when python3 is on PATH,
 * and always by a few structural checks here (one event per line).
 */
#include <check.h>
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no trace file %s", path);
    struct stat st;
    ck_assert_int_eq(fstat(fileno(f), &st), 0);
    char *buf = calloc(1, (size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* The file parses as JSON: by python3 if there is one, and by shape. */
static void check_json(const char *path, const char *text)
{
    if (system("command -v python3 >/dev/null 2>&1") == 0) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "python3 -m json.tool %s >/dev/null", path);
        ck_assert_msg(system(cmd) == 0, "python3 -m json.tool %s failed", path);
    }
    ck_assert_msg(strncmp(text, "{\"displayTimeUnit\":\"ns\"", 23) == 0,
                  "bad start");
    size_t len = strlen(text);
    ck_assert_msg(len > 4 && strcmp(text + len - 4, "\n]}\n") == 0, "bad end");
    /* Each event on a line of its own, an object. */
    const char *line = strchr(text, '\n') + 1;
    while (*line != ']') {
        const char *eol = strchr(line, '\n');
        ck_assert_ptr_nonnull(eol);
        ck_assert_msg(line[0] == '{', "line: %.60s", line);
        ck_assert_msg(eol[-1] == '}' || (eol[-1] == ',' && eol[-2] == '}'),
                      "line: %.60s", line);
        line = eol + 1;
    }
}

static void temp_path(char *path, size_t size)
{
    snprintf(path, size, "/tmp/weft-test-trace-%d.json", (int)getpid());
    unlink(path);
}

/* ------------------------------------------------------------------------
 * A workload: named tasks that yield and sleep once (a timer of the
 * reactor's), joined only once they have started (no inline run, which
 * would split its joiner's slice in two). */

enum { TASKS = 16, YIELDS = 20 };

static atomic_int started;

static void *yield_and_sleep(void *arg)
{
    (void)arg;
    atomic_fetch_add(&started, 1);
    for (int i = 0; i < YIELDS; i++)
        TU_ASSERT_INT_EQ(weft_yield(), 0);
    TU_ASSERT_INT_EQ(weft_sleep(0.002), 0);
    return NULL;
}

static void *spawn_named(void *arg)
{
    (void)arg;
    weft_task *t[TASKS];
    for (int i = 0; i < TASKS; i++) {
        char name[16];
        snprintf(name, sizeof name, "job-%d", i);
        weft_task_opts o = {.name = name};
        t[i] = weft_spawn_ex(NULL, yield_and_sleep, NULL, &o);
        TU_ASSERT(t[i] != NULL);
    }
    while (atomic_load(&started) < TASKS)
        tu_yield();
    for (int i = 0; i < TASKS; i++)
        TU_ASSERT_INT_EQ(weft_join(t[i], NULL), 0);
    return NULL;
}

START_TEST(trace_has_one_slice_per_run_and_parses_after_free)
{
    char path[64];
    temp_path(path, sizeof path);
    setenv("WEFT_TRACE", path, 1);
    weft_runtime *rt = tu_new_runtime(2);
    ck_assert_int_eq(weft_runtime_run(rt, spawn_named, NULL, NULL), 0);
    tu_wait_idle(rt);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(rt, &s), 0);
    weft_runtime_free(rt);

    char *text = read_file(path);
    check_json(path, text);
    ck_assert_msg(strstr(text, "\"dropped_events\":0}"), "events dropped");
    /* One slice per run: run slices carry the task's id in "task". */
    int slices = count(text, "\"args\":{\"task\":");
    ck_assert_int_eq(slices, (int)s.total.runs);
    /* Each named task ran at least twice (its start, after its sleep). */
    for (int i = 0; i < TASKS; i++) {
        char name[32];
        snprintf(name, sizeof name, "\"name\":\"job-%d\"", i);
        ck_assert_int_ge(count(text, name), 2);
    }
    /* Every arrow that starts ends: each ready event led to a run. */
    int starts = count(text, "\"ph\":\"s\""),
        ends = count(text, "\"ph\":\"f\"");
    ck_assert_int_eq(starts, ends);
    ck_assert_int_ge(count(text, "\"ph\":\"s\",\"cat\":\"weft\",\"name\":"
                                 "\"spawn\""),
                     TASKS + 1);
    ck_assert_int_ge(count(text, "\"name\":\"wake\""), TASKS);
    /* The sleeps' timers, on the reactor's track (tid 2 of 2 workers). */
    ck_assert_msg(strstr(text, "\"name\":\"timers\""), "no timers slice");
    ck_assert_msg(strstr(text, "\"args\":{\"name\":\"reactor\"}"),
                  "no reactor track");
    free(text);
    unlink(path);
}
END_TEST

START_TEST(a_task_name_is_escaped_in_the_trace)
{
    char path[64];
    temp_path(path, sizeof path);
    setenv("WEFT_TRACE", path, 1);
    weft_runtime *rt = tu_new_runtime(1);
    weft_task_opts o = {.name = "a \"quoted\"\\name\t"};
    weft_task *t = weft_spawn_ex(rt, yield_and_sleep, NULL, &o);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, NULL), 0);
    weft_runtime_free(rt);
    char *text = read_file(path);
    check_json(path, text);
    ck_assert_msg(strstr(text, "\"name\":\"a \\\"quoted\\\"\\\\name\\u0009\""),
                  "name not escaped");
    free(text);
    unlink(path);
}
END_TEST

/* Reachable from a global, so that LeakSanitizer does not report the
 * runtime the child never frees. */
static weft_runtime *never_freed;

START_TEST(trace_is_written_at_exit_for_a_runtime_never_freed)
{
    char path[64];
    temp_path(path, sizeof path);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("WEFT_TRACE", path, 1);
        never_freed = weft_runtime_new(&(weft_config){.workers = 2});
        if (!never_freed ||
            weft_runtime_run(never_freed, spawn_named, NULL, NULL) != 0)
            _exit(2);
        exit(0); /* no weft_runtime_free: the atexit handler writes it */
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_ne(WEXITSTATUS(status), 2);
    char *text = read_file(path);
    check_json(path, text);
    ck_assert_int_ge(count(text, "\"args\":{\"task\":"), TASKS);
    free(text);
    unlink(path);
}
END_TEST

START_TEST(no_trace_file_unless_asked)
{
    char path[64];
    temp_path(path, sizeof path);
    unsetenv("WEFT_TRACE");
    weft_runtime *rt = tu_new_runtime(1);
    ck_assert_int_eq(weft_runtime_run(rt, spawn_named, NULL, NULL), 0);
    weft_runtime_free(rt);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), -1);
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

/* ------------------------------------------------------------------------
 * The blocking pool's tracks */

enum { OFFLOADERS = 4, OFFLOADS = 3, JOBS = OFFLOADERS * OFFLOADS };
enum { POOL_MAX = 32 }; /* the most pool threads (io/offload.c) */

struct offloader {
    weft_runtime *rt;
    uint64_t caller; /* the task that calls weft_to_thread */
};

/* A job that returns once its caller is suspended, so that the pool
 * thread is the one that wakes it (a "wake" arrow from its track). */
static void *wait_for_caller(void *arg)
{
    struct offloader *o = arg;
    while (tu_task_state(o->rt, o->caller) != WEFT_TASK_WAITING)
        sched_yield();
    return o;
}

static void *offload_some(void *arg)
{
    struct offloader o = {.rt = arg, .caller = weft_task_id(weft_current())};
    for (int i = 0; i < OFFLOADS; i++) {
        void *r = NULL;
        TU_ASSERT_INT_EQ(weft_to_thread(wait_for_caller, &o, &r), 0);
        TU_ASSERT(r == &o);
    }
    return NULL;
}

/* The tid of the event on this line. */
static long tid_of(const char *line)
{
    const char *p = strstr(line, "\"tid\":");
    ck_assert_msg(p != NULL, "no tid: %.80s", line);
    return strtol(p + 6, NULL, 10);
}

/* Whether the line (up to eol) holds what. */
static bool line_has(const char *line, const char *eol, const char *what)
{
    const char *p = strstr(line, what);
    return p && p < eol;
}

START_TEST(trace_draws_to_thread_jobs_on_blocking_tracks)
{
    char path[64];
    temp_path(path, sizeof path);
    setenv("WEFT_TRACE", path, 1);
    enum { WORKERS = 2 };
    weft_runtime *rt = tu_new_runtime(WORKERS);
    weft_task *t[OFFLOADERS];
    for (int i = 0; i < OFFLOADERS; i++) {
        t[i] = weft_spawn_ex(rt, offload_some, rt, NULL);
        ck_assert_ptr_nonnull(t[i]);
    }
    for (int i = 0; i < OFFLOADERS; i++)
        ck_assert_int_eq(weft_join(t[i], NULL), 0);
    weft_runtime_free(rt);

    char *text = read_file(path);
    check_json(path, text);
    ck_assert_msg(strstr(text, "\"dropped_events\":0}"), "events dropped");
    /* The pool's tracks, by name; tids past the workers', the reactor's
     * and the other threads'. */
    bool blocking[WORKERS + 2 + POOL_MAX] = {false};
    int tracks = 0, jobs = 0, marks = 0, wakes = 0;
    for (const char *line = text, *eol; (eol = strchr(line, '\n'));
         line = eol + 1) {
        if (line_has(line, eol, "\"args\":{\"name\":\"blocking ")) {
            long tid = tid_of(line);
            ck_assert_int_ge(tid, WORKERS + 2);
            ck_assert_int_lt(tid, WORKERS + 2 + POOL_MAX);
            blocking[tid] = true;
            tracks++;
        }
    }
    ck_assert_int_ge(tracks, 1);
    for (const char *line = text, *eol; (eol = strchr(line, '\n'));
         line = eol + 1) {
        if (line_has(line, eol,
                     "\"ph\":\"X\",\"cat\":\"weft\",\"name\":"
                     "\"job\"")) {
            long tid = tid_of(line);
            ck_assert_msg(tid < WORKERS + 2 + POOL_MAX && blocking[tid],
                          "a job off the pool's tracks: %.120s", line);
            jobs++;
        } else if (line_has(line, eol,
                            "\"ph\":\"s\",\"cat\":\"weft\",\"name\":"
                            "\"to_thread\"")) {
            /* The arrow starts in the submitter's run. */
            ck_assert_int_lt(tid_of(line), WORKERS);
            marks++;
        } else if (line_has(line, eol,
                            "\"ph\":\"X\",\"cat\":\"weft\",\"name\":"
                            "\"wake\"")) {
            long tid = tid_of(line);
            wakes += tid < WORKERS + 2 + POOL_MAX && blocking[tid];
        }
    }
    /* Every caller waited to the end: every job is drawn, with its arrow
     * from the submitter and its end's wake-up. */
    ck_assert_int_eq(jobs, JOBS);
    ck_assert_int_eq(marks, JOBS);
    ck_assert_int_eq(count(text, "\"ph\":\"f\",\"cat\":\"weft\",\"name\":"
                                 "\"to_thread\""),
                     JOBS);
    ck_assert_int_ge(wakes, 1);
    ck_assert_int_eq(count(text, "\"ph\":\"s\""), count(text, "\"ph\":\"f\""));
    free(text);
    unlink(path);
}
END_TEST

struct outliving {
    atomic_int started, go, done;
    atomic_int tid; /* the pool thread's */
};

static void *run_until_go(void *arg)
{
    struct outliving *o = arg;
    atomic_store(&o->tid, (int)syscall(SYS_gettid));
    atomic_store(&o->started, 1);
    tu_wait_flag(&o->go);
    atomic_store(&o->done, 1);
    return NULL;
}

static void *offload_until_cancelled(void *arg)
{
    TU_ASSERT_INT_EQ(weft_to_thread(run_until_go, arg, NULL), -ECANCELED);
    return NULL;
}

/* The pool thread outlives the runtime: it must not draw the job, whose
 * trace is gone (ASan would see the write), and the file is complete. */
START_TEST(trace_is_valid_when_a_to_thread_job_outlives_its_runtime)
{
    char path[64];
    temp_path(path, sizeof path);
    setenv("WEFT_TRACE", path, 1);
    weft_runtime *rt = tu_new_runtime(1);
    struct outliving o = {0};
    weft_task *t = weft_spawn_ex(rt, offload_until_cancelled, &o, NULL);
    ck_assert_ptr_nonnull(t);
    tu_wait_flag(&o.started);
    weft_runtime_free(rt); /* cancels t: it returns, fn runs on */
    char *text = read_file(path);
    check_json(path, text);
    ck_assert_int_eq(count(text, "\"name\":\"job\""), 0);
    free(text);
    /* Let fn return, and wait until its thread is idle again, asleep
     * for its next job: done with the finished one. */
    atomic_store(&o.go, 1);
    tu_wait_flag(&o.done);
    double t0 = weft_now();
    while (!tu_thread_asleep(atomic_load(&o.tid))) {
        ck_assert_msg(weft_now() - t0 < 10.0, "the pool thread never idled");
        sched_yield();
    }
    ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    /* Nothing touched the file since. */
    text = read_file(path);
    check_json(path, text);
    free(text);
    unlink(path);
}
END_TEST

static Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("chrome_trace");
    tcase_add_test(tc, trace_has_one_slice_per_run_and_parses_after_free);
    tcase_add_test(tc, a_task_name_is_escaped_in_the_trace);
    tcase_add_test(tc, trace_is_written_at_exit_for_a_runtime_never_freed);
    tcase_add_test(tc, no_trace_file_unless_asked);
    tcase_add_test(tc, trace_draws_to_thread_jobs_on_blocking_tracks);
    tcase_add_test(tc,
                   trace_is_valid_when_a_to_thread_job_outlives_its_runtime);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(trace_suite());
}
