/* Helpers shared by the Check suites: the stress seed, sizes scaled to the
 * build, clocks, a fork-join fib task, a runtime of a given size, and for
 * the synchronisation suites actors (a task or a plain thread), ways to
 * tell that they are blocked, and a racer thread for timing races.
 *
 * Check forks every test, so no helper keeps state across tests and none
 * starts a runtime by itself: each test makes the runtime it needs.
 */
#ifndef WEFT_TESTS_TESTUTIL_H
#define WEFT_TESTS_TESTUTIL_H

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
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

/* A new runtime of `workers` workers, failing the test if there is none.
 * The caller frees it. */
weft_runtime *tu_new_runtime(unsigned workers);

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

/* Fail unless a call that took `got` seconds took want seconds, within
 * the bounds above. */
void tu_check_took(double got, double want, const char *what);

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

/* weft_join(t, NULL), failing the test unless it returns want. */
void tu_join_task(weft_task *t, int want);

/* pthread_join(th, NULL), failing the test unless it returns 0. */
void tu_join_thread(pthread_t th);

/* From a plain thread: wait until rt has no live task. */
void tu_wait_idle(weft_runtime *rt);

/* weft_yield(), failing the test unless it returns 0. */
void tu_yield(void);

/* From a task: yield until *flag is non-zero (acquire). */
void tu_yield_until(const int *flag);

/* Give way once: yield from a task, sched_yield from a plain thread. */
void tu_pause(void);

/* From a task or a plain thread: pause until *flag is non-zero. Fails the
 * test after 10 s. */
void tu_wait_flag(atomic_int *flag);

/* The open fds of this process (entries of /proc/self/fd, the directory's
 * own included). */
int tu_count_fds(void);

/* A checked fixture pair for fd leaks: tu_fds_mark remembers the count,
 * tu_fds_check fails the test unless it is the same again. */
void tu_fds_mark(void);
void tu_fds_check(void);

/* Whether thread tid of this process sleeps in the kernel (state S in
 * /proc/self/task/TID/stat), as a thread blocked on its futex does. False
 * when the thread is gone. */
bool tu_thread_asleep(int tid);

/* ------------------------------------------------------------------------
 * Actors, for the synchronisation suites: fn(arg) run as a task or as a
 * plain thread, so that one test body covers both kinds of waiter. */

enum tu_kind { TU_TASK, TU_THREAD };

/* One actor. tu_actor_start sets every field; after that the actor writes
 * tid and done, and anyone may read them. It must stay in place until
 * tu_actor_join. */
struct tu_actor {
    weft_runtime *rt;
    enum tu_kind kind;
    weft_fn fn;
    void *arg;
    pthread_t th;    /* TU_THREAD */
    weft_task *task; /* TU_TASK */
    atomic_int tid;  /* a thread's kernel id, once it runs */
    atomic_int done; /* fn has returned */
};

/* Start fn(arg) as a task of rt (TU_TASK; rt NULL: the calling task's
 * runtime) or as a new plain thread (TU_THREAD). Fails the test if it
 * cannot. */
void tu_actor_start(struct tu_actor *a, weft_runtime *rt, enum tu_kind kind,
                    weft_fn fn, void *arg);

/* Wait for a to finish: weft_join's code for a task, 0 for a thread. */
int tu_actor_join(struct tu_actor *a);

/* Wait until a is blocked in its wait: its task WAITING, its thread
 * asleep. Fails the test if a returns instead, or after 10 s. */
void tu_actor_wait_blocked(struct tu_actor *a);

/* Wait until fn of a has returned, without joining it. Fails the test
 * after 10 s. */
void tu_actor_wait_done(struct tu_actor *a);

/* ------------------------------------------------------------------------
 * A racer: a plain thread that meets the test's thread at each round and
 * then, after a random spin, runs its action, so that the action and the
 * test's own one land at about the same moment. */

struct tu_racer {
    pthread_t th;
    void (*action)(void *ctx);
    void *ctx;
    uint64_t rng;     /* racer thread only */
    unsigned spin_ns; /* the racer spins 0 .. spin_ns - 1 ns before acting */
    /* go: the round the test started (the action may read it); ready and
     * done: the last round the racer saw and finished; stop: quit. */
    atomic_int go, ready, done, stop;
};

/* The spin of a cancel race, for the racer and for the test's thread. */
enum { TU_SPIN_NS = 3000 };

/* Busy-wait a random 0 .. max_ns - 1 nanoseconds. */
void tu_spin_random(uint64_t *rng, unsigned max_ns);

/* Busy-wait ns nanoseconds (nothing if ns <= 0). */
void tu_spin_for(int64_t ns);

/* Start r's thread, which runs action(ctx) once a round. */
void tu_racer_start(struct tu_racer *r, void (*action)(void *), void *ctx,
                    uint64_t seed, unsigned spin_ns);

/* Start round g (1, 2, ...) and wait until the racer has seen it. */
void tu_racer_go(struct tu_racer *r, int g);

/* Wait until the racer has run its action of round g. */
void tu_racer_wait(struct tu_racer *r, int g);

/* Stop r's thread and join it. */
void tu_racer_stop(struct tu_racer *r);

/* A cancel race: a racer whose action is tu_cancel_victim cancels victim
 * after an extra delay_ns, as the test's thread makes its own move. */
struct tu_cancel_race {
    weft_task *victim;
    int64_t delay_ns; /* the canceller's extra delay */
    int cancel_rc;
};

/* A racer's action, ctx a struct tu_cancel_race: spin its delay_ns, then
 * cancel its victim and keep the code. */
void tu_cancel_victim(void *ctx);

/* Steer a cancel race to its tipping point, where it is tightest: each
 * round the cancel won, the next cancel comes a little later, and each
 * round it lost, a little earlier (the other side waits when bias < 0). */
void tu_steer(int64_t *bias, bool cancel_won);

/* ------------------------------------------------------------------------
 * Running a suite */

/* Run every test of s, print Check's summary line, and return the exit
 * status for main. */
int tu_run_suite(Suite *s);

#endif /* WEFT_TESTS_TESTUTIL_H */
