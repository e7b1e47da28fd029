/* Helpers shared by the Check suites: the stress seed, sizes scaled to the
 * build, clocks, a fork-join fib task and a runtime of a given size.
 *
 * Check forks every test, so no helper keeps state across tests and none
 * starts a runtime by itself: each test makes the runtime it needs.
 */
#ifndef WEFT_TESTS_TESTUTIL_H
#define WEFT_TESTS_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "weft.h"

/* A size for the build: the sanitizers run 5-20 times slower, so stress
 * tests shrink to stay within seconds. */
#if defined(WEFT_TSAN)
#define TU_SCALE(normal, asan, tsan) (tsan)
#define TU_BUILD                     "tsan"
#elif defined(WEFT_ASAN)
#define TU_SCALE(normal, asan, tsan) (asan)
#define TU_BUILD                     "asan"
#else
#define TU_SCALE(normal, asan, tsan) (normal)
#define TU_BUILD                     "normal"
#endif

/* Timeout for stress cases, in seconds: generous, for the sanitizer
 * builds on a 2-core machine. */
#define TU_STRESS_TIMEOUT 60

/* Check's ck_assert_* record the file and line of every check that passes
 * (a write under a lock), which serialises and slows hot loops by orders
 * of magnitude. In loops and in tasks use these: they report a failure
 * the same way and cost nothing otherwise. */
#define TU_ASSERT(expr)                                                        \
    do {                                                                       \
        if (!(expr))                                                           \
            ck_abort_msg("Assertion '%s' failed", #expr);                      \
    } while (0)
#define TU_ASSERT_INT_EQ(X, Y)                                                 \
    do {                                                                       \
        intmax_t x_ = (intmax_t)(X), y_ = (intmax_t)(Y);                       \
        if (x_ != y_)                                                          \
            ck_abort_msg("Assertion '%s == %s' failed: %jd != %jd", #X, #Y,    \
                         x_, y_);                                              \
    } while (0)

/* The seed of a stress test: WEFT_TEST_SEED if set, else the clock.
 * Prints it on stderr with the test's name, so a failure can be replayed. */
uint64_t tu_seed(const char *test);

/* xorshift64*: a small, fast generator; *state must not be 0. */
uint64_t tu_rand(uint64_t *state);

/* Monotonic time and this process's CPU time, in nanoseconds. */
int64_t tu_now_ns(void);
int64_t tu_cpu_ns(void);

/* Fork-join Fibonacci: fib(n) spawns fib(n-1) and fib(n-2) as tasks and
 * joins both. arg and the result are intptr_t. Call it as a task. */
void *tu_fib_task(void *arg);

/* The same, serially, to check against. */
long tu_fib(int n);

/* Make a runtime of `workers` workers, run fn(arg) in it, free it and
 * return fn's result. Fails the test if any step fails. */
void *tu_run_in(unsigned workers, weft_fn fn, void *arg);

/* The worker the calling task runs on, from a weft_all_tasks snapshot.
 * Call it from a task; meant for runtimes with few live tasks. */
int tu_current_worker(void);

/* Timing checks: a timer never fires early (TU_EARLY_EPS covers rounding
 * seconds to nanoseconds) and may fire late by TU_SLACK on a loaded 2-core
 * VM, more under the sanitizers. */
#define TU_SLACK     TU_SCALE(0.050, 0.250, 0.300)
#define TU_EARLY_EPS 1e-6

/* Fail unless weft_now() - t0 is want seconds, within the bounds above. */
void tu_check_elapsed(double t0, double want, const char *what);

/* The state of the task with this id in a snapshot of rt (NULL: the
 * calling task's runtime), or -1 when it is not live. */
int tu_task_state(weft_runtime *rt, uint64_t id);

/* Wait until t is suspended. From a task, pass rt NULL: the caller yields;
 * from a plain thread, pass t's runtime. Fails the test after 10 s. */
void tu_wait_until_waiting(weft_runtime *rt, const weft_task *t);

/* weft_join(t), failing the test unless it returns 0 with result want. */
void tu_join_expect(weft_task *t, intptr_t want);

/* From a plain thread: wait until rt has no live task. */
void tu_wait_idle(weft_runtime *rt);

/* weft_yield(), failing the test unless it returns 0. */
void tu_yield(void);

/* From a task: yield until *flag is non-zero (acquire). */
void tu_yield_until(const int *flag);

/* Run every test of s, print Check's summary line, and return the exit
 * status for main. */
int tu_run_suite(Suite *s);

#endif /* WEFT_TESTS_TESTUTIL_H */
