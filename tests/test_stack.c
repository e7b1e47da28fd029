/* Task stacks (sched/stack.c): sizes, the overflow diagnosis, many stacks
 * alive at once, and allocation failures.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "sched/deque.h"
#include "sched/internal.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * sizes */

/* Write and read back every 64th byte of a `KIB` KiB frame. */
#define DEFINE_TOUCH(KIB)                                                      \
    static __attribute__((noinline)) long touch_##KIB(void)                    \
    {                                                                          \
        volatile char buf[(KIB)*1024];                                         \
        for (size_t i = 0; i < sizeof buf; i += 64)                            \
            buf[i] = (char)(i >> 6);                                           \
        buf[sizeof buf - 1] = 1;                                               \
        long sum = 0;                                                          \
        for (size_t i = 0; i < sizeof buf; i += 64)                            \
            sum += buf[i] == (char)(i >> 6);                                   \
        return sum + buf[sizeof buf - 1];                                      \
    }
DEFINE_TOUCH(40)
DEFINE_TOUCH(200)
DEFINE_TOUCH(400)

static void *use_40k(void *arg)
{
    (void)arg;
    return (void *)touch_40();
}

static void *use_200k(void *arg)
{
    (void)arg;
    return (void *)touch_200();
}

static void *use_400k(void *arg)
{
    (void)arg;
    return (void *)touch_400();
}

static void *large_stack_main(void *arg)
{
    (void)arg;
    /* A 200 KiB frame in a task given 256 KiB. */
    weft_task_opts o = {.stack_size = 256 * 1024, .name = "big-frame"};
    weft_task *t = weft_spawn_ex(NULL, use_200k, NULL, &o);
    ck_assert_ptr_nonnull(t);
    void *r = NULL;
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, 200 * 1024 / 64 + 1);
    /* The default 64 KiB stack holds a 40 KiB frame. */
    t = weft_spawn(use_40k, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, 40 * 1024 / 64 + 1);
    return NULL;
}

START_TEST(task_with_large_stack_can_use_most_of_it)
{
    ck_assert_int_eq(weft_run(large_stack_main, NULL, NULL), 0);
}
END_TEST

START_TEST(config_stack_size_sets_the_default_for_tasks)
{
    weft_config cfg = {.workers = 2, .stack_size = 512 * 1024};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    void *r = NULL;
    ck_assert_int_eq(weft_runtime_run(rt, use_400k, NULL, &r), 0);
    ck_assert_int_eq((intptr_t)r, 400 * 1024 / 64 + 1);
    weft_task *t = weft_spawn_ex(rt, use_400k, NULL, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, 400 * 1024 / 64 + 1);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * overflow */

/* Never reached; volatile so that the compiler can neither prove the
 * recursion infinite nor turn it into a loop. */
static volatile int recursion_limit = INT_MAX;

static __attribute__((noinline)) int recurse(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    pad[sizeof pad - 1] = (char)depth;
    if (depth == recursion_limit)
        return pad[0];
    return recurse(depth + 1) + pad[sizeof pad - 1];
}

/* Each case overflows a task of `kib` KiB named "deep-recursion", joined
 * from a task (which may run the child inline, on the joiner's stack) or
 * from a plain thread (the child runs on a stack of its own). The default
 * size takes its stack from the shared pool, 48 KiB gets a mapping of its
 * own. */
static const struct overflow_case {
    size_t kib;
    bool joined_from_task;
    bool mprotect_guards; /* the fallback for kernels before 6.13 */
} overflow_cases[] = {
    {WEFT_STACK_DEFAULT / 1024, false, false}, {48, false, false},
    {WEFT_STACK_DEFAULT / 1024, true, false},  {48, true, false},
    {WEFT_STACK_DEFAULT / 1024, true, true},   {48, false, true},
};

static void *deep_recursion(void *arg)
{
    /* Tell the parent our id, then overflow. */
    int idfd = (int)(intptr_t)arg;
    dprintf(idfd, "%" PRIu64, weft_task_id(weft_current()));
    close(idfd);
    return (void *)(intptr_t)recurse(0);
}

/* Spawn the overflowing task into rt (NULL: the caller's) and join it. */
static void overflow_one(weft_runtime *rt, size_t kib, int idfd)
{
    weft_task_opts o = {.stack_size = kib * 1024, .name = "deep-recursion"};
    weft_task *t =
        weft_spawn_ex(rt, deep_recursion, (void *)(intptr_t)idfd, &o);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, NULL), 0);
}

static const struct overflow_case *overflow_now;

static void *overflow_main(void *arg)
{
    overflow_one(NULL, overflow_now->kib, (int)(intptr_t)arg);
    return NULL;
}

/* In the forked child: overflow, and never return. */
static void overflow_child(int idfd)
{
    alarm(30); /* a hang must not outlive the test */
    weft__stack_test_mprotect_guards = overflow_now->mprotect_guards;
    if (overflow_now->joined_from_task) {
        int rc = weft_run(overflow_main, (void *)(intptr_t)idfd, NULL);
        fprintf(stderr, "weft_run returned %d: no overflow detected\n", rc);
    } else {
        weft_config cfg = {.workers = 1};
        weft_runtime *rt = weft_runtime_new(&cfg);
        ck_assert_ptr_nonnull(rt);
        overflow_one(rt, overflow_now->kib, idfd);
        fprintf(stderr, "weft_join returned: no overflow detected\n");
    }
    _exit(3);
}

static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

START_TEST(stack_overflow_prints_the_task_and_aborts)
{
    overflow_now = &overflow_cases[_i];
    size_t kib = overflow_now->kib;
    int errp[2], idp[2];
    ck_assert_int_eq(pipe(errp), 0);
    ck_assert_int_eq(pipe(idp), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(errp[0]);
        close(idp[0]);
        dup2(errp[1], STDERR_FILENO);
        close(errp[1]);
        overflow_child(idp[1]);
    }
    close(errp[1]);
    close(idp[1]);
    static char msg[1 << 16];
    char id[32];
    read_all(errp[0], msg, sizeof msg);
    read_all(idp[0], id, sizeof id);
    close(errp[0]);
    close(idp[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    fprintf(stderr, "%zu KiB, joined from a %s; child's stderr:\n%s", kib,
            overflow_now->joined_from_task ? "task" : "plain thread", msg);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                  "child did not die of SIGABRT (status %#x): %s", status, msg);
    ck_assert_msg(strstr(msg, "stack overflow") != NULL,
                  "no 'stack overflow'"
                  " in: %s",
                  msg);
    ck_assert_msg(strstr(msg, "deep-recursion") != NULL, "no task name in: %s",
                  msg);
    ck_assert_msg(id[0] != '\0' && strstr(msg, id) != NULL,
                  "no task id %s in: %s", id, msg);
    /* The size the task was given, in bytes or KiB. */
    char bytes[32], kibs[32], kibs2[32];
    snprintf(bytes, sizeof bytes, "%zu", kib * 1024);
    snprintf(kibs, sizeof kibs, "%zu KiB", kib);
    snprintf(kibs2, sizeof kibs2, "%zuKiB", kib);
    ck_assert_msg(strstr(msg, bytes) || strstr(msg, kibs) || strstr(msg, kibs2),
                  "no stack size (%s bytes) in: %s", bytes, msg);
}
END_TEST

/* ------------------------------------------------------------------------
 * A fault that is not an overflow goes to the handler installed before. */

static void one_shot_handler(int sig)
{
    (void)sig;
    static const char msg[] = "previous handler ran\n";
    ssize_t unused = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)unused;
}

static void foreign_fault_child(void)
{
    /* Installed before weft's handler, one-shot, returning: the fault then
     * happens again and, with the default action back, kills the child. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = one_shot_handler;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 1});
    if (!rt)
        _exit(3);
    /* A page that may not be touched (not NULL: UBSan would stop a NULL
     * store before it faults). */
    volatile int *page =
        mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        _exit(5);
    *page = 1;
    _exit(4); /* not reached */
}

START_TEST(a_fault_that_is_not_an_overflow_reaches_the_previous_handler_once)
{
    int errp[2];
    ck_assert_int_eq(pipe(errp), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(errp[0]);
        dup2(errp[1], STDERR_FILENO);
        close(errp[1]);
        foreign_fault_child();
    }
    close(errp[1]);
    static char msg[1 << 12];
    read_all(errp[0], msg, sizeof msg);
    close(errp[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
                  "child did not die of SIGSEGV (status %#x): %s", status, msg);
    const char *first = strstr(msg, "previous handler ran");
    ck_assert_msg(first != NULL, "the previous handler did not run: %s", msg);
    ck_assert_msg(strstr(first + 1, "previous handler ran") == NULL,
                  "the one-shot handler ran more than once: %s", msg);
    ck_assert_msg(strstr(msg, "stack overflow") == NULL,
                  "reported as an overflow: %s", msg);
}
END_TEST

/* ------------------------------------------------------------------------
 * many stacks at once */

static int many_release;
static atomic_int many_started;

static void *hold_stack(void *arg)
{
    /* Use a little of the stack, so each task really holds one. */
    volatile char pad[2048];
    pad[0] = 1;
    pad[sizeof pad - 1] = 2;
    atomic_fetch_add(&many_started, 1);
    tu_yield_until(&many_release);
    return (void *)((intptr_t)arg + pad[0] + pad[sizeof pad - 1] - 3);
}

static void *many_main(void *arg)
{
    intptr_t n = (intptr_t)arg;
    weft_task **t = calloc((size_t)n, sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (intptr_t i = 0; i < n; i++) {
        t[i] = weft_spawn(hold_stack, (void *)i);
        TU_ASSERT(t[i] != NULL);
    }
    /* All of them started and now wait, each on its own stack. */
    while (atomic_load(&many_started) < n)
        tu_yield();
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(NULL, &s), 0);
    ck_assert_uint_ge(s.tasks_alive, (uint64_t)n);
    ck_assert_uint_ge(weft_all_tasks(NULL, 0), (size_t)n);
    __atomic_store_n(&many_release, 1, __ATOMIC_RELEASE);
    for (intptr_t i = 0; i < n; i++) {
        void *r = NULL;
        TU_ASSERT_INT_EQ(weft_join(t[i], &r), 0);
        TU_ASSERT_INT_EQ((intptr_t)r, i);
    }
    free(t);
    return NULL;
}

START_TEST(many_tasks_alive_at_once_each_hold_a_stack)
{
    /* _i == 1: guards made with mprotect, as on kernels before 6.13. */
    weft__stack_test_mprotect_guards = _i == 1;
    intptr_t n = TU_SCALE(10000, 10000, 2000);
    many_release = 0;
    atomic_store(&many_started, 0);
    int64_t t0 = tu_now_ns();
    tu_run_in(2, many_main, (void *)n);
    fprintf(stderr, "%ld tasks alive at once on 2 workers: %.3f s\n", (long)n,
            (double)(tu_now_ns() - t0) / 1e9);
}
END_TEST

/* ------------------------------------------------------------------------
 * out of memory: weft__alloc_fail_after(n) fails the n-th heap allocation
 * from now. Each test walks n up from 1 until the call succeeds, so every
 * allocation of the call fails once; LeakSanitizer (ASan build) reports
 * anything a failed call leaves half-built. */

enum { MAX_ALLOCS = 10000 };

static void *plus_one(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

START_TEST(runtime_new_out_of_memory_fails_with_enomem)
{
    weft_config cfg = {.workers = 2};
    weft_runtime *rt = NULL;
    long failures = 0;
    for (long n = 1; n <= MAX_ALLOCS && !rt; n++) {
        weft__alloc_fail_after(n);
        errno = 0;
        rt = weft_runtime_new(&cfg);
        int err = errno;
        weft__alloc_fail_after(0);
        if (!rt) {
            ck_assert_msg(err == ENOMEM, "allocation %ld failed: errno %d", n,
                          err);
            failures++;
        }
    }
    ck_assert_ptr_nonnull(rt);
    ck_assert_int_gt(failures, 0);
    /* The runtime that was finally made works. */
    void *r = NULL;
    ck_assert_int_eq(weft_runtime_run(rt, plus_one, (void *)1, &r), 0);
    ck_assert_int_eq((intptr_t)r, 2);
    weft_runtime_free(rt);
    fprintf(stderr, "weft_runtime_new: %ld allocations failed in turn\n",
            failures);
}
END_TEST

/* Spawn plus_one(i), failing each of its allocations in turn first. */
static weft_task *spawn_despite_failures(intptr_t i, long *failures)
{
    for (long n = 1; n <= MAX_ALLOCS; n++) {
        weft__alloc_fail_after(n);
        errno = 0;
        weft_task *t = weft_spawn(plus_one, (void *)i);
        int err = errno;
        weft__alloc_fail_after(0);
        if (t)
            return t;
        TU_ASSERT_INT_EQ(err, ENOMEM);
        (*failures)++;
    }
    ck_abort_msg("weft_spawn never succeeded");
}

static void *spawn_oom_main(void *arg)
{
    /* With one worker the spawned tasks wait in this worker's deque while
     * it fills past its first capacity and the next, so some spawns need
     * the deque to grow, and that allocation fails too: such a spawn may
     * fail with ENOMEM or put the task elsewhere, but never lose it. */
    enum { N = 3 * WEFT__DEQUE_CAP };
    (void)arg;
    weft_task **t = calloc(N, sizeof *t);
    ck_assert_ptr_nonnull(t);
    long failures = 0;
    for (intptr_t i = 0; i < N; i++)
        t[i] = spawn_despite_failures(i, &failures);
    ck_assert_int_ge(failures, N);
    for (intptr_t i = 0; i < N; i++) {
        void *r = NULL;
        TU_ASSERT_INT_EQ(weft_join(t[i], &r), 0);
        TU_ASSERT_INT_EQ((intptr_t)r, i + 1);
    }
    free(t);
    fprintf(stderr, "weft_spawn: %d tasks, %ld allocations failed in turn\n", N,
            failures);
    return NULL;
}

START_TEST(spawn_out_of_memory_fails_with_enomem)
{
    /* One worker and nothing else running: the spawn's allocations are the
     * next ones. */
    tu_run_in(1, spawn_oom_main, NULL);
}
END_TEST

START_TEST(spawn_ex_out_of_memory_fails_with_enomem)
{
    weft_config cfg = {.workers = 1};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    weft_task_opts o = {.name = "named", .stack_size = 128 * 1024};
    weft_task *t = NULL;
    long failures = 0;
    for (long n = 1; n <= MAX_ALLOCS && !t; n++) {
        weft__alloc_fail_after(n);
        errno = 0;
        t = weft_spawn_ex(rt, plus_one, (void *)1, &o);
        int err = errno;
        weft__alloc_fail_after(0);
        if (!t) {
            ck_assert_int_eq(err, ENOMEM);
            failures++;
        }
    }
    ck_assert_ptr_nonnull(t);
    ck_assert_int_gt(failures, 0);
    void *r = NULL;
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, 2);
    weft_runtime_free(rt);
}
END_TEST

static void *disarm_and_add(void *arg)
{
    weft__alloc_fail_after(0);
    return plus_one(arg);
}

START_TEST(run_out_of_memory_fails_with_enomem)
{
    long failures = 0;
    int rc = -ENOMEM;
    for (long n = 1; n <= MAX_ALLOCS && rc != 0; n++) {
        weft__alloc_fail_after(n);
        void *r = NULL;
        rc = weft_run(disarm_and_add, (void *)6, &r);
        weft__alloc_fail_after(0);
        if (rc == 0) {
            ck_assert_int_eq((intptr_t)r, 7);
        } else {
            ck_assert_int_eq(rc, -ENOMEM);
            failures++;
        }
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_gt(failures, 0);
}
END_TEST

START_TEST(runtime_run_out_of_memory_fails_with_enomem)
{
    weft_config cfg = {.workers = 1};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    /* Warm up: the worker now caches a stack, so the runs below allocate
     * only what weft_runtime_run itself needs. */
    void *w = NULL;
    ck_assert_int_eq(weft_runtime_run(rt, plus_one, NULL, &w), 0);
    ck_assert_ptr_eq(w, (void *)1);
    long failures = 0;
    int rc = -ENOMEM;
    for (long n = 1; n <= MAX_ALLOCS && rc != 0; n++) {
        weft__alloc_fail_after(n);
        void *r = NULL;
        rc = weft_runtime_run(rt, disarm_and_add, (void *)8, &r);
        weft__alloc_fail_after(0);
        if (rc == 0) {
            ck_assert_int_eq((intptr_t)r, 9);
        } else {
            ck_assert_int_eq(rc, -ENOMEM);
            failures++;
        }
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_gt(failures, 0);
    weft_runtime_free(rt);
}
END_TEST

static Suite *stack_suite(void)
{
    Suite *s = suite_create("stack");

    TCase *tc = tcase_create("size");
    tcase_add_test(tc, task_with_large_stack_can_use_most_of_it);
    tcase_add_test(tc, config_stack_size_sets_the_default_for_tasks);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("overflow");
    tcase_add_loop_test(tc, stack_overflow_prints_the_task_and_aborts, 0,
                        sizeof overflow_cases / sizeof overflow_cases[0]);
    tcase_set_timeout(tc, 40);
    suite_add_tcase(s, tc);

    tc = tcase_create("foreign_fault");
    tcase_add_test(
        tc, a_fault_that_is_not_an_overflow_reaches_the_previous_handler_once);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("many");
    tcase_add_loop_test(tc, many_tasks_alive_at_once_each_hold_a_stack, 0, 2);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("out_of_memory");
    tcase_add_test(tc, runtime_new_out_of_memory_fails_with_enomem);
    tcase_add_test(tc, spawn_out_of_memory_fails_with_enomem);
    tcase_add_test(tc, spawn_ex_out_of_memory_fails_with_enomem);
    tcase_add_test(tc, run_out_of_memory_fails_with_enomem);
    tcase_add_test(tc, runtime_run_out_of_memory_fails_with_enomem);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(stack_suite());
}
